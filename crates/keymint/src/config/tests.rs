use super::*;
use std::time::Duration;

fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigProblems> {
    let dir = std::env::temp_dir().join(format!("keymint-cfg-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keymint.toml");
    std::fs::write(&path, text).unwrap();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    Config::load_with_env(Some(&path), &env)
}

const GOOD: &str = r#"
[[endpoints]]
name = "gumroad"
kind = "gumroad"
secrets = ["s1-0123456789abcdef"]
[[products]]
id = "datatools-core"
name = "DataTools Core"
tier = "core"
key_prefix = "DT1"
duration = "365d"
max_machines = 3
entitlements = ["export"]
[products.map]
gumroad = ["datatools-core"]
"#;

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
        c.products[0].validity().unwrap(),
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
    let dir = std::env::temp_dir().join(format!("keymint-sec-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret_file = dir.join("gumroad");
    std::fs::write(
        &secret_file,
        "rotated-new-0123456789\nrotated-old-0123456789\n",
    )
    .unwrap();
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
