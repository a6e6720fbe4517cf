//! keymint: turns payment webhooks into signed, emailed licenses.
//!
//! Data flow (docs/architecture.md, "Data flow"): [`http`] receives a delivery; [`ingest`]
//! records and authenticates it; an [`adapters`] module turns the body into
//! a normalized [`events::Event`]; the [`dispatcher`] applies it in one
//! transaction through [`fulfilment`] and the [`store`]; the outbox worker
//! in [`workers`] sends the email through [`notify`].

pub mod adapters;
pub mod admin;
pub mod app;
pub mod catalog;
pub mod checkout;
pub mod cli;
pub mod config;
pub mod console;
pub mod dispatcher;
pub mod domain;
pub mod events;
pub mod fulfilment;
pub mod http;
pub mod ingest;
pub mod licensing;
pub mod notify;
pub mod portal;
pub mod provider_api;
pub mod rejections;
pub mod signing;
pub mod store;
pub mod subscriptions;
pub mod telemetry;
pub mod text;
pub mod views;
pub mod workers;

pub use app::{AppState, Application};
pub use config::Config;
