//! The catalog: products from the config and which provider product ids
//! sell them, per endpoint.

use crate::config::{Config, ProductConfig};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    products: Vec<Arc<ProductConfig>>,
    /// (endpoint name, provider product id) -> index into `products`.
    by_provider_id: HashMap<(String, String), usize>,
}

impl Catalog {
    pub fn from_config(config: &Config) -> Self {
        let products: Vec<Arc<ProductConfig>> =
            config.products.iter().cloned().map(Arc::new).collect();
        let mut by_provider_id = HashMap::new();
        for (i, p) in products.iter().enumerate() {
            for (endpoint, ids) in &p.map {
                for id in ids {
                    by_provider_id.insert((endpoint.clone(), id.clone()), i);
                }
            }
        }
        Self {
            products,
            by_provider_id,
        }
    }

    /// The product a provider's product id sells through this endpoint.
    pub fn lookup(&self, endpoint: &str, provider_product_id: &str) -> Option<&Arc<ProductConfig>> {
        self.by_provider_id
            .get(&(endpoint.to_string(), provider_product_id.to_string()))
            .map(|&i| &self.products[i])
    }

    /// A product by its catalog id.
    pub fn product(&self, id: &str) -> Option<&Arc<ProductConfig>> {
        self.products.iter().find(|p| p.id == id)
    }
}
