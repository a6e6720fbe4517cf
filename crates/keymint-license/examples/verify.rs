//! Verify a keymint license token offline.
//!
//! ```text
//! cargo run -p keymint-license --example verify -- <k4.public...> <v4.public...>
//! ```
//!
//! Prints the claims and exits 0 when the token is valid now; prints the
//! reason and exits 1 otherwise.

use keymint_license::KeySet;

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
                "valid license {} for {} ({})",
                claims.key, claims.name, claims.product
            );
            println!("entitlements: {}", claims.entitlements.join(", "));
            match claims.exp {
                Some(exp) => println!("expires: {exp}"),
                None => println!("perpetual"),
            }
        }
        Err(e) => {
            eprintln!("invalid: {e}");
            std::process::exit(1);
        }
    }
}
