//! `keymint-bench verify`: offline verification rate of `keymint-license`
//! against raw Ed25519 verification of a message of the same length.

use serde_json::json;
use std::time::Instant;

/// Runs `f` repeatedly for about `seconds`; returns calls per second.
fn rate_of(seconds: f64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

pub fn verify(seconds: f64, json: bool) -> anyhow::Result<()> {
    use keymint_license::{KeySet, LicenseClaims, SigningKey};
    let key = SigningKey::generate();
    let token = key.mint(&LicenseClaims::example())?;
    let keys = KeySet::from_paserks([key.public_paserk().as_str()])?;
    keys.verify(&token)?;
    // The same amount of signed data as the token's pre-authentication
    // encoding (header + payload + footer + framing), signed raw.
    let raw_pair = ed25519_compact::KeyPair::generate();
    let message = vec![0x42u8; token.len()];
    let signature = raw_pair.sk.sign(&message, None);
    raw_pair.pk.verify(&message, &signature)?;

    // Alternate short rounds and take medians, so drift in the machine's
    // speed (frequency, noisy neighbours) hits both sides alike.
    let rounds = 9;
    let (mut raws, mut ourss) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        raws.push(rate_of(seconds / f64::from(rounds), || {
            raw_pair
                .pk
                .verify(std::hint::black_box(&message), &signature)
                .expect("valid");
        }));
        ourss.push(rate_of(seconds / f64::from(rounds), || {
            keys.verify(std::hint::black_box(&token)).expect("valid");
        }));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (raw, ours) = (median(&mut raws), median(&mut ourss));
    let share = ours / raw * 100.0;
    println!(
        "offline verification, one core: keymint-license {ours:.0}/s, raw Ed25519 {raw:.0}/s ({share:.1}%)"
    );
    if json {
        println!(
            "{}",
            json!({"verify_per_s": ours, "raw_ed25519_per_s": raw, "share_pct": share})
        );
    }
    Ok(())
}
