use super::*;
use std::time::Duration;

/// Writes `text` to file `name` in a new scratch directory; returns its path.
fn scratch_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("keymint-cfg-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigProblems> {
    let path = scratch_file("keymint.toml", text);
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    Config::load_with_env(Some(&path), &env)
}

/// A configuration that loads: one Gumroad endpoint, one product (kept as
/// TOML beside this file, where it reads as the file an operator writes).
const GOOD: &str = include_str!("test-config.toml");

#[test]
fn no_file_gives_defaults() {
    let c = Config::load_with_env(None, &[]).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(
        c.database_url().expose(),
        "sqlite://keymint-data/keymint.db"
    );
}

#[test]
fn good_config_loads() {
    let c = load(GOOD, &[]).unwrap();
    assert_eq!(
        c.products[0].duration.duration(),
        Some(Duration::from_secs(365 * 86400))
    );
    assert_eq!(c.endpoints[0].secrets[0].expose(), "s1-0123456789abcdef");
}

#[test]
fn every_problem_is_reported() {
    let text = format!(
        "{GOOD}\n[[endpoints]]\nname = \"nosecret\"\nkind = \"gumroad\"\n[[products]]\nid = \"other\"\nname = \"O\"\ntier = \"x\"\nkey_prefix = \"O\"\nbogus = 1\n[products.map]\ngumroad = [\"datatools-core\"]\n"
    );
    let problems = load(&text.replace("[server]", ""), &[]).unwrap_err().0;
    let all = problems.join("\n");
    assert!(all.contains("bogus"), "{all}");
    let problems = load(&text.replace("bogus = 1\n", ""), &[]).unwrap_err().0;
    let all = problems.join("\n");
    assert!(all.contains("\"nosecret\" has no secret"), "{all}");
    assert!(all.contains("mapped twice"), "{all}");
}

#[test]
fn unknown_top_level_keys_are_all_reported() {
    let problems = load(
        "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n[emial]\nx = 1\n",
        &[],
    )
    .unwrap_err()
    .0;
    assert_eq!(problems.len(), 2, "{problems:?}");
}

#[test]
fn env_overrides_and_file_secrets() {
    let secret_file = scratch_file(
        "gumroad",
        "rotated-new-0123456789\nrotated-old-0123456789\n",
    );
    let c = load(
        GOOD,
        &[
            ("KEYMINT_SERVER__LISTEN", "0.0.0.0:9000"),
            ("KEYMINT_EMAIL__MAX_ATTEMPTS", "3"),
            (
                "KEYMINT_ENDPOINTS__GUMROAD__SECRETS_FILE",
                secret_file.to_str().unwrap(),
            ),
            ("KEYMINT_CONFIG", "ignored"),
        ],
    )
    .unwrap();
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(c.email.max_attempts, 3);
    let secrets: Vec<&str> = c.endpoints[0].secrets.iter().map(Secret::expose).collect();
    assert_eq!(
        secrets,
        ["rotated-new-0123456789", "rotated-old-0123456789"]
    );
}

#[test]
fn secrets_are_hidden_from_debug() {
    let c = load(GOOD, &[]).unwrap();
    assert!(!format!("{c:?}").contains("s1-0123456789abcdef"));
}

#[test]
fn unknown_database_scheme_is_refused() {
    let problems = load("[database]\nurl = \"mysql://x\"\n", &[])
        .unwrap_err()
        .0;
    assert!(problems[0].contains("not supported"), "{problems:?}");
}

#[test]
fn config_addresses_follow_the_one_email_rule() {
    let problems = load(
        "[email]\nfrom = \"licenses@localhost\"\nreply_to = \"support at example.com\"\n",
        &[],
    )
    .unwrap_err()
    .0;
    let all = problems.join("\n");
    assert!(
        all.contains("email.from: \"licenses@localhost\" is not an email address"),
        "{all}"
    );
    assert!(
        all.contains("email.reply_to: \"support at example.com\" is not an email address"),
        "{all}"
    );
    let ok = load(
        "[email]\nfrom = \"Licenses@Example.com\"\nreply_to = \"support@example.com\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(ok.email.from, "Licenses@Example.com", "kept as written");
}

#[test]
fn checkout_settings_that_cannot_work_are_refused() {
    let text = format!(
        r#"{GOOD}
[checkout]
allowed_redirect_hosts = ["shop.example.com", "https://bad.example.com/path", "*.example.org", "*.com"]
expire_after = "1m"

[[endpoints]]
name = "stripe"
kind = "stripe"
secrets = ["whsec_0123456789abcdef0123"]

[[endpoints]]
name = "hs"
kind = "hyperswitch"
secrets = ["0123456789abcdef0123"]

[[products]]
id = "no-price"
name = "N"
tier = "n"
key_prefix = "N"
trial_days = 7
[products.checkout]
endpoint = "stripe"

[[products]]
id = "hs-sub"
name = "H"
tier = "h"
key_prefix = "H"
subscription = true
[products.checkout]
endpoint = "hs"

[[products]]
id = "via-gumroad"
name = "G"
tier = "g"
key_prefix = "G"
[products.checkout]
endpoint = "gumroad"

[[products]]
id = "nowhere"
name = "W"
tier = "w"
key_prefix = "W"
trial_days = 3
[products.checkout]
endpoint = "missing"

[[products]]
id = "shapes"
name = "S"
tier = "s"
key_prefix = "S"
consent = "required"
trial_days = 0
[products.checkout]
endpoint = "stripe"
price = "not_a_price"

[[products]]
id = "terms"
name = "T"
tier = "t"
key_prefix = "T"
terms_version = "2026-05"
"#
    );
    let all = load(&text, &[]).unwrap_err().0.join("\n");
    for needle in [
        "checkout.allowed_redirect_hosts[1]: \"https://bad.example.com/path\" is not a host name",
        "checkout.price: no Stripe price (a price_ id) to sell",
        "trial_days: stripe gives trials to subscriptions only",
        "checkout.amount_cents: a positive amount",
        "checkout.currency: a three-letter currency code",
        "a subscription product cannot be sold through it",
        "starts payments with stripe, polar, paddle, lemonsqueezy or hyperswitch endpoints, not gumroad",
        "checkout.endpoint: endpoint \"missing\" is not defined",
        "allowed_redirect_hosts[3]: \"*.com\" would allow every site under .com",
        "checkout.expire_after: must be at least 10m",
        "products[5].checkout.price: \"not_a_price\" is not a Stripe price",
        "products[5].trial_days: 0 gives no trial",
        "products[5].terms_version: consent = \"required\" needs the version",
        "products[6].terms_version: only read with consent = \"required\"",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    assert!(!all.contains("allowed_redirect_hosts[0]"), "{all}");
    assert!(!all.contains("allowed_redirect_hosts[2]"), "{all}");
}

#[test]
fn redirect_hosts_match_exactly_or_as_subdomains() {
    let cfg = CheckoutConfig {
        allowed_redirect_hosts: vec!["shop.example.com".into(), "*.example.org".into()],
        ..CheckoutConfig::default()
    };
    assert!(cfg.allows_host("shop.example.com"));
    assert!(cfg.allows_host("SHOP.Example.com"));
    assert!(!cfg.allows_host("evil-shop.example.com"));
    assert!(!cfg.allows_host("shop.example.com.evil.net"));
    assert!(cfg.allows_host("buy.example.org"));
    assert!(cfg.allows_host("a.b.example.org"));
    assert!(!cfg.allows_host("example.org"));
    assert!(!cfg.allows_host("evilexample.org"));
    assert!(!CheckoutConfig::default().allows_host("shop.example.com"));
}
