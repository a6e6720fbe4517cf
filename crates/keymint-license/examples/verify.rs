//! Verify a keymint license token offline.
//!
//! ```text
//! cargo run --release -p keymint-license --example verify -- <k4.public...> <v4.public...>
//! ```
//!
//! Prints the claims (key, name, product, tier, entitlements, and the
//! expiry in RFC 3339) and exits 0 when the token is valid now; prints the
//! reason and exits 1 otherwise.

use keymint_license::{KeySet, LicenseClaims};
use time::format_description::well_known::Rfc3339;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [public_key, token] = args.as_slice() else {
        eprintln!("usage: verify <PASERK k4.public key> <license token>");
        std::process::exit(2);
    };
    let keys = match KeySet::from_paserks([public_key.as_str()]) {
        Ok(keys) => keys,
        Err(e) => {
            eprintln!("bad public key: {e}");
            std::process::exit(2);
        }
    };
    match keys.verify(token) {
        Ok(claims) => match describe(&claims) {
            Ok(text) => print!("{text}"),
            Err(e) => {
                eprintln!("cannot print the expiry: {e}");
                std::process::exit(1);
            }
        },
        Err(e) => {
            eprintln!("invalid: {e}");
            std::process::exit(1);
        }
    }
}

/// What a valid license says, one fact a line; times in RFC 3339.
fn describe(claims: &LicenseClaims) -> Result<String, time::error::Format> {
    let expires = match claims.exp {
        Some(exp) => exp.format(&Rfc3339)?,
        None => "never (perpetual)".to_string(),
    };
    Ok(format!(
        "valid license {} for {}\nproduct: {}\ntier: {}\nentitlements: {}\nexpires: {expires}\n",
        claims.key,
        claims.name,
        claims.product,
        claims.tier,
        claims.entitlements.join(", "),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymint_license::SigningKey;
    use time::OffsetDateTime;

    #[test]
    fn prints_the_tier_and_an_rfc3339_expiry() {
        let key = SigningKey::generate();
        let mut claims = LicenseClaims::example();
        claims.exp = Some(OffsetDateTime::from_unix_timestamp(4_102_444_800).unwrap());
        let token = key.mint(&claims).unwrap();
        let verified = KeySet::from_paserks([key.public_paserk().as_str()])
            .unwrap()
            .verify(&token)
            .unwrap();

        let text = describe(&verified).unwrap();

        assert!(text.contains(&format!("tier: {}\n", claims.tier)), "{text}");
        assert!(text.contains("expires: 2100-01-01T00:00:00Z\n"), "{text}");
    }
}
