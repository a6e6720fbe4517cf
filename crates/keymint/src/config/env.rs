//! `KEYMINT_*` environment overrides and `*_FILE` secrets, applied to
//! the TOML table before it is read.

/// Environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "KEYMINT_";
/// Environment variables that are not config keys.
const ENV_RESERVED: &[&str] = &["KEYMINT_CONFIG", "KEYMINT_LOG"];
/// Prefix of variables used by keymint's own test suite, not config keys.
const ENV_TEST_PREFIX: &str = "KEYMINT_TEST_";
/// Keys whose value may be read from a file named by `<key>_file` in the
/// TOML, or `KEYMINT_..._FILE` in the environment.
const SECRET_KEYS: &[&str] = &[
    "secrets",
    "server_token",
    "password",
    "url",
    "secret_key",
    "api_key",
];

/// Applies `KEYMINT_SECTION__KEY=value` overrides. Path segments are
/// separated by `__`; an array of tables is indexed by position or by the
/// element's `name`/`id` (`KEYMINT_ENDPOINTS__GUMROAD__SECRETS`). A value
/// that parses as a TOML value is used as such, otherwise as a string. A
/// name ending in `_FILE` reads the value from that file.
pub(super) fn apply_env(
    root: &mut toml::Table,
    env: &[(String, String)],
    problems: &mut Vec<String>,
) {
    let mut vars: Vec<&(String, String)> = env
        .iter()
        .filter(|(k, _)| {
            k.starts_with(ENV_PREFIX)
                && !k.starts_with(ENV_TEST_PREFIX)
                && !ENV_RESERVED.contains(&k.as_str())
        })
        .collect();
    vars.sort();
    for (name, raw) in vars {
        let mut path: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let mut raw = raw.clone();
        let last = path.last_mut().expect("split yields one part");
        if let Some(stripped) = last.strip_suffix("_file") {
            *last = stripped.to_string();
            match std::fs::read_to_string(&raw) {
                Ok(text) => raw = text.trim_end_matches(['\n', '\r']).to_string(),
                Err(e) => {
                    problems.push(format!("{name}: cannot read {raw}: {e}"));
                    continue;
                }
            }
        }
        let value = match env_value(&raw, path.last().map(String::as_str)) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                continue;
            }
        };
        if let Err(e) = set_path(root, &path, value) {
            problems.push(format!("{name}: {e}"));
        }
    }
}

/// The value of an override or a secrets file. A list is written as TOML
/// (`["s1", "s2"]`, as documented); `secrets` also takes one secret per
/// line, so a mounted secrets file can list several. Other secrets are
/// taken as text, so a secret that looks like a number stays a string.
/// A value that starts like a list or a table but does not parse is an
/// error, never a string by accident.
pub(super) fn env_value(raw: &str, key: Option<&str>) -> Result<toml::Value, String> {
    let trimmed = raw.trim_start();
    let structured = trimmed.starts_with('[') || trimmed.starts_with('{');
    if key == Some("secrets") && !structured {
        return Ok(toml::Value::Array(
            raw.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| toml::Value::String(l.to_string()))
                .collect(),
        ));
    }
    let text_secret = key.is_some_and(|k| k != "secrets" && SECRET_KEYS.contains(&k));
    if text_secret {
        return Ok(toml::Value::String(raw.to_string()));
    }
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => Ok(t.remove("v").expect("the key just written")),
        Err(e) if structured => Err(format!(
            "{raw:?} starts like a TOML list or table but does not parse ({}); write a list as [\"a\", \"b\"]",
            e.message()
        )),
        Err(_) => Ok(toml::Value::String(raw.to_string())),
    }
}

pub(super) fn set_path(
    table: &mut toml::Table,
    path: &[String],
    value: toml::Value,
) -> Result<(), String> {
    let (head, rest) = path.split_first().ok_or("empty key")?;
    if rest.is_empty() {
        table.insert(head.clone(), value);
        return Ok(());
    }
    let entry = table
        .entry(head.clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match entry {
        toml::Value::Table(t) => set_path(t, rest, value),
        toml::Value::Array(items) => {
            let (sel, rest) = rest.split_first().ok_or("missing element")?;
            let item = if let Ok(index) = sel.parse::<usize>() {
                items.get_mut(index)
            } else {
                items.iter_mut().find(|v| {
                    ["name", "id"].iter().any(|k| {
                        v.get(k).and_then(toml::Value::as_str).is_some_and(|n| {
                            n.eq_ignore_ascii_case(sel)
                                || n.replace('-', "_").eq_ignore_ascii_case(sel)
                        })
                    })
                })
            };
            match item {
                Some(toml::Value::Table(t)) if !rest.is_empty() => set_path(t, rest, value),
                _ => Err(format!("no element {sel:?} in `{head}` to override")),
            }
        }
        _ => Err(format!("`{head}` is not a table")),
    }
}

/// Replaces `<key>_file = "/path"` with `<key> = <contents>` for secret keys.
pub(super) fn resolve_secret_files(
    table: &mut toml::Table,
    prefix: &str,
    problems: &mut Vec<String>,
) {
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        if let Some(base) = key.strip_suffix("_file")
            && SECRET_KEYS.contains(&base)
        {
            let Some(toml::Value::String(path)) = table.remove(&key) else {
                problems.push(format!("`{prefix}{key}` must be a file path"));
                continue;
            };
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let text = text.trim_end_matches(['\n', '\r']);
                    match env_value(text, Some(base)) {
                        Ok(v) => {
                            table.insert(base.to_string(), v);
                        }
                        Err(e) => problems.push(format!("`{prefix}{key}`: {path}: {e}")),
                    }
                }
                Err(e) => problems.push(format!("`{prefix}{key}`: cannot read {path}: {e}")),
            }
            continue;
        }
        match table.get_mut(&key) {
            Some(toml::Value::Table(t)) => {
                resolve_secret_files(t, &format!("{prefix}{key}."), problems)
            }
            Some(toml::Value::Array(items)) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if let toml::Value::Table(t) = item {
                        resolve_secret_files(t, &format!("{prefix}{key}[{i}]."), problems);
                    }
                }
            }
            _ => {}
        }
    }
}
