//! Verify a keymint license token offline.
//!
//! ```text
//! cargo run --release -p keymint-license --example verify -- <k4.public...> <v4.public...>
//! ```
//!
//! Prints the claims (key, name, product, tier, entitlements, and the
//! expiry in RFC 3339) and exits 0 when the token is valid now; prints the
//! reason and exits 1 otherwise.

use keymint_license::KeySet;
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
        Ok(claims) => {
            println!(
                "valid license {} for {} ({}, tier {})",
                claims.key, claims.name, claims.product, claims.tier
            );
            println!("entitlements: {}", claims.entitlements.join(", "));
            match claims.exp.map(|exp| exp.format(&Rfc3339)) {
                Some(Ok(exp)) => println!("expires: {exp}"),
                Some(Err(e)) => {
                    eprintln!("cannot print the expiry: {e}");
                    std::process::exit(1);
                }
                None => println!("expires: never (perpetual)"),
            }
        }
        Err(e) => {
            eprintln!("invalid: {e}");
            std::process::exit(1);
        }
    }
}
