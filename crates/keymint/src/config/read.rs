//! Reading the merged TOML into [`Config`] without stopping at the first
//! problem: each value that cannot be read is reported with its path
//! (`endpoints[2].kind`) and left at its default, so every problem is
//! listed in one run.

use super::*;

/// Where each loaded endpoint and product stood in the file, so problems
/// name `endpoints[2]` even when an earlier element could not be read.
#[derive(Debug, Default)]
pub(super) struct Layout {
    pub(super) endpoints: Vec<usize>,
    pub(super) products: Vec<usize>,
    /// Names of endpoints that could not be read (their problems are
    /// already listed; products mapping them are not blamed again).
    pub(super) unreadable_endpoints: Vec<String>,
}

/// One step of a path in the configuration: a key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    Key(String),
    Index(usize),
}

pub(super) fn path_text(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

pub(super) fn ignored_steps(path: &serde_ignored::Path<'_>, out: &mut Vec<Step>) {
    use serde_ignored::Path as P;
    match path {
        P::Root => {}
        P::Seq { parent, index } => {
            ignored_steps(parent, out);
            out.push(Step::Index(*index));
        }
        P::Map { parent, key } => {
            ignored_steps(parent, out);
            out.push(Step::Key(key.clone()));
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_steps(parent, out)
        }
    }
}

/// Removes the value at `steps`; a bad element of an array removes the
/// whole array (so later indices are not shifted). False if nothing was
/// removed.
pub(super) fn remove_at(value: &mut toml::Value, steps: &[Step]) -> bool {
    let Some((last, parent)) = steps.split_last() else {
        return false;
    };
    if matches!(last, Step::Index(_)) {
        return remove_at(value, parent);
    }
    let mut here = value;
    for step in parent {
        let next = match (step, here) {
            (Step::Key(k), toml::Value::Table(t)) => t.get_mut(k),
            (Step::Index(i), toml::Value::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(v) => here = v,
            None => return false,
        }
    }
    match (last, here) {
        (Step::Key(k), toml::Value::Table(t)) => t.remove(k).is_some(),
        _ => false,
    }
}

/// Passes over one value at most this many times (one per bad value).
pub(super) const MAX_PASSES: usize = 64;

/// Deserializes a `T` from `value`, listing every unknown key and every
/// value of the wrong type with its path under `prefix`: a bad value is
/// reported, taken out (so its default applies) and the rest read again.
/// None when a required value is missing or wrong.
pub(super) fn read_reporting<T: serde::de::DeserializeOwned>(
    mut value: toml::Value,
    prefix: &[Step],
    problems: &mut Vec<String>,
) -> Option<T> {
    let full = |steps: &[Step]| {
        let mut all = prefix.to_vec();
        all.extend_from_slice(steps);
        all
    };
    let mut reported: Vec<Vec<Step>> = Vec::new();
    let mut unknown: Vec<Vec<Step>> = Vec::new();
    let mut result = None;
    for _ in 0..MAX_PASSES {
        let mut seen = Vec::new();
        let mut note = |p: serde_ignored::Path<'_>| {
            let mut steps = Vec::new();
            ignored_steps(&p, &mut steps);
            seen.push(steps);
        };
        let de = serde_ignored::Deserializer::new(value.clone(), &mut note);
        let outcome = serde_path_to_error::deserialize::<_, T>(de);
        for steps in seen {
            if !unknown.contains(&steps) {
                unknown.push(steps);
            }
        }
        match outcome {
            Ok(v) => {
                result = Some(v);
                break;
            }
            Err(e) => {
                let steps: Vec<Step> = e
                    .path()
                    .iter()
                    .map(|s| match s {
                        serde_path_to_error::Segment::Seq { index } => Step::Index(*index),
                        serde_path_to_error::Segment::Map { key }
                        | serde_path_to_error::Segment::Enum { variant: key } => {
                            Step::Key(key.clone())
                        }
                        serde_path_to_error::Segment::Unknown => Step::Key("?".into()),
                    })
                    .collect();
                let mut message = e.into_inner().to_string().trim().replace('\n', " ");
                // toml appends the key, which the path already names.
                if let Some(cut) = message.rfind(" in `")
                    && message.ends_with('`')
                {
                    message.truncate(cut);
                }
                if let Some(field) = message
                    .strip_prefix("missing field `")
                    .and_then(|m| m.split('`').next())
                {
                    let mut missing = full(&steps);
                    missing.push(Step::Key(field.to_string()));
                    if !reported.contains(&missing) {
                        problems.push(format!("{}: missing, and required", path_text(&missing)));
                    }
                    break;
                }
                let at = full(&steps);
                problems.push(format!(
                    "{}: {message}",
                    if at.is_empty() {
                        "(top level)".to_string()
                    } else {
                        path_text(&at)
                    }
                ));
                reported.push(at);
                if !remove_at(&mut value, &steps) {
                    break;
                }
            }
        }
    }
    for steps in unknown {
        problems.push(format!("{}: unknown key", path_text(&full(&steps))));
    }
    result
}

/// Reads the whole configuration, listing every problem of type or name;
/// endpoints and products are read one by one, so one bad element does not
/// hide the others.
pub(super) fn deserialize_config(
    mut root: toml::Table,
    problems: &mut Vec<String>,
) -> (Config, Layout) {
    let endpoints = root.remove("endpoints");
    let products = root.remove("products");
    // Unreadable at the top: its problems are listed, and the defaults let
    // the endpoints and products be checked as well.
    let mut config: Config =
        read_reporting(toml::Value::Table(root), &[], problems).unwrap_or_default();
    let mut layout = Layout::default();
    for (key, items) in [("endpoints", endpoints), ("products", products)] {
        let items = match items {
            None => continue,
            Some(toml::Value::Array(items)) => items,
            Some(other) => {
                problems.push(format!(
                    "{key}: must be a list of tables ([[{key}]]), not a {}",
                    other.type_str()
                ));
                continue;
            }
        };
        for (i, item) in items.into_iter().enumerate() {
            let prefix = [Step::Key(key.to_string()), Step::Index(i)];
            if key == "endpoints" {
                let name = item
                    .get("name")
                    .and_then(toml::Value::as_str)
                    .map(str::to_string);
                match read_reporting::<EndpointConfig>(item, &prefix, problems) {
                    Some(ep) => {
                        config.endpoints.push(ep);
                        layout.endpoints.push(i);
                    }
                    None => layout.unreadable_endpoints.extend(name),
                }
            } else if let Some(p) = read_reporting::<ProductConfig>(item, &prefix, problems) {
                config.products.push(p);
                layout.products.push(i);
            }
        }
    }
    (config, layout)
}
