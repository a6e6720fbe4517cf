//! Builds authentic webhook requests the way each provider sends them:
//! a fresh body with a unique order id and a valid signature per request.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Which provider scheme to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Gumroad,
    Stripe,
    Standard,
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Signed {
    /// Path and query, e.g. `/webhooks/gumroad?secret=...`.
    pub path_and_query: String,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// `Stripe-Signature` for `body` at `ts`: HMAC-SHA256 keyed with the whole
/// `whsec_` string over `{ts}.{body}`, hex.
pub fn stripe_header(secret: &str, ts: i64, body: &[u8]) -> String {
    let sig = hmac_sha256(secret.as_bytes(), &[ts.to_string().as_bytes(), b".", body]);
    format!("t={ts},v1={}", hex::encode(sig))
}

/// Standard Webhooks `v1,` signature: HMAC-SHA256 keyed with the
/// base64-decoded part after `whsec_`, over `{id}.{ts}.{body}`, base64.
pub fn standard_signature(
    secret: &str,
    msg_id: &str,
    ts: i64,
    body: &[u8],
) -> anyhow::Result<String> {
    let key = B64.decode(secret.trim_start_matches("whsec_"))?;
    let sig = hmac_sha256(
        &key,
        &[
            msg_id.as_bytes(),
            b".",
            ts.to_string().as_bytes(),
            b".",
            body,
        ],
    );
    Ok(format!("v1,{}", B64.encode(sig)))
}

/// Makes the request for sale number `order` (unique per sale; a
/// duplicate reuses an earlier number).
pub fn sale(
    kind: Kind,
    endpoint: &str,
    secret: &str,
    product: &str,
    order: &str,
    now: i64,
) -> anyhow::Result<Signed> {
    let email = format!("buyer-{order}@example.com");
    Ok(match kind {
        Kind::Gumroad => {
            let body = format!(
                "sale_id={order}&product_id={product}&email={email}&full_name=Bench+Buyer&price=4900&currency=usd"
            );
            Signed {
                path_and_query: format!("/webhooks/{endpoint}?secret={secret}"),
                content_type: "application/x-www-form-urlencoded",
                headers: vec![],
                body: body.into_bytes(),
            }
        }
        Kind::Stripe => {
            let body = serde_json::to_vec(&serde_json::json!({
                "id": format!("evt_{order}"),
                "object": "event",
                "type": "checkout.session.completed",
                "created": now,
                "data": {"object": {
                    "id": format!("cs_{order}"),
                    "object": "checkout.session",
                    "mode": "payment",
                    "payment_status": "paid",
                    "customer_details": {"email": email, "name": "Bench Buyer"},
                    "amount_total": 4900,
                    "currency": "usd",
                    "metadata": {"keymint_product": product}
                }}
            }))?;
            let header = stripe_header(secret, now, &body);
            Signed {
                path_and_query: format!("/webhooks/{endpoint}"),
                content_type: "application/json",
                headers: vec![("stripe-signature", header)],
                body,
            }
        }
        Kind::Standard => {
            let msg_id = format!("msg_{order}");
            let body = serde_json::to_vec(&serde_json::json!({
                "type": "order.paid",
                "timestamp": now,
                "data": {"id": order, "product_id": product, "customer": {"email": email, "name": "Bench Buyer"}}
            }))?;
            let sig = standard_signature(secret, &msg_id, now, &body)?;
            Signed {
                path_and_query: format!("/webhooks/{endpoint}"),
                content_type: "application/json",
                headers: vec![
                    ("webhook-id", msg_id),
                    ("webhook-timestamp", now.to_string()),
                    ("webhook-signature", sig),
                ],
                body,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../crates/keymint/tests/fixtures/signatures.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn stripe_signer_matches_the_shared_vector() {
        let v = &vectors()["stripe"][0];
        let header = stripe_header(
            v["secret"].as_str().unwrap(),
            v["timestamp"].as_i64().unwrap(),
            v["payload"].as_str().unwrap().as_bytes(),
        );
        assert_eq!(header, v["header"].as_str().unwrap());
    }

    #[test]
    fn standard_signer_matches_the_official_vectors() {
        for v in vectors()["standard_webhooks"].as_array().unwrap() {
            let Some(secret) = v["secret"].as_str() else {
                continue;
            };
            let sig = standard_signature(
                secret,
                v["msg_id"].as_str().unwrap(),
                v["timestamp"].as_i64().unwrap(),
                v["payload"].as_str().unwrap().as_bytes(),
            )
            .unwrap();
            assert_eq!(sig, v["signature"].as_str().unwrap());
        }
    }
}
