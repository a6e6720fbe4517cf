//! Email templates: compiled-in defaults, each overridable by a file of the
//! same name in the templates directory. `.html` templates are
//! HTML-escaped automatically; buyer-supplied text can't inject markup.

use minijinja::Environment;
use serde::Serialize;
use std::path::Path;

const DEFAULTS: &[(&str, &str)] = &[
    (
        "license.subject.txt",
        include_str!("../../templates/license.subject.txt"),
    ),
    ("license.txt", include_str!("../../templates/license.txt")),
    ("license.html", include_str!("../../templates/license.html")),
    (
        "portal_link.subject.txt",
        include_str!("../../templates/portal_link.subject.txt"),
    ),
    (
        "portal_link.txt",
        include_str!("../../templates/portal_link.txt"),
    ),
    (
        "portal_link.html",
        include_str!("../../templates/portal_link.html"),
    ),
];

/// An environment of the `defaults` (name, source), each replaced by a
/// file of the same name in `dir` when there is one: the email templates,
/// and the console's and portal's pages (`http/pages.rs`).
pub fn load_env(
    defaults: &[(&'static str, &'static str)],
    dir: Option<&Path>,
) -> Result<Environment<'static>, TemplateError> {
    let mut env = Environment::new();
    for (name, default) in defaults {
        let source = match dir.map(|d| d.join(name)) {
            Some(path) if path.is_file() => {
                std::fs::read_to_string(&path).map_err(|source| TemplateError::Io {
                    path: path.display().to_string(),
                    source,
                })?
            }
            _ => (*default).to_string(),
        };
        env.add_template_owned(*name, source)
            .map_err(|source| TemplateError::Render {
                name: (*name).into(),
                source,
            })?;
    }
    Ok(env)
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// What the license templates can use.
#[derive(Debug, Clone, Serialize)]
pub struct LicenseContext {
    pub name: String,
    pub email: String,
    pub product_id: String,
    pub product_name: String,
    pub tier: String,
    pub key: String,
    pub token: String,
    pub expires_at: Option<String>,
    pub max_machines: Option<i64>,
    pub resend: bool,
    /// A subscription renewed and this is its fresh token.
    pub renewal: bool,
    /// The buyer portal's address, when it is on.
    pub portal_url: Option<String>,
}

/// What the portal sign-in link templates can use.
#[derive(Debug, Clone, Serialize)]
pub struct PortalLinkContext {
    pub email: String,
    /// The sign-in link (it works once).
    pub link: String,
    /// Minutes the link works for.
    pub minutes: u64,
    pub seller_name: Option<String>,
    pub support_email: Option<String>,
}

pub struct Templates {
    env: Environment<'static>,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template {name}: {source}")]
    Render {
        name: String,
        source: minijinja::Error,
    },
    /// An email without a subject is not sent as one.
    #[error("template {0} renders an empty subject")]
    EmptySubject(&'static str),
    #[error("template override {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl Templates {
    /// Loads the defaults, replaced by any file of the same name in `dir`.
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        Ok(Self {
            env: load_env(DEFAULTS, dir)?,
        })
    }

    pub fn render_license(&self, ctx: &LicenseContext) -> Result<Rendered, TemplateError> {
        // The buyer's name is one line wherever it came from: a line break
        // in it would start a line of its own in the email (and in the log
        // of the `log` provider).
        let ctx = &LicenseContext {
            name: crate::text::clean_line(&ctx.name),
            ..ctx.clone()
        };
        self.render_three(["license.subject.txt", "license.txt", "license.html"], ctx)
    }

    pub fn render_portal_link(&self, ctx: &PortalLinkContext) -> Result<Rendered, TemplateError> {
        self.render_three(
            [
                "portal_link.subject.txt",
                "portal_link.txt",
                "portal_link.html",
            ],
            ctx,
        )
    }

    /// The subject, text and HTML templates `[subject, text, html]` with
    /// `ctx`.
    fn render_three(
        &self,
        [subject, text, html]: [&'static str; 3],
        ctx: impl Serialize,
    ) -> Result<Rendered, TemplateError> {
        let render = |name: &str| {
            self.env
                .get_template(name)
                .and_then(|t| t.render(minijinja::value::Serde(&ctx)))
                .map_err(|source| TemplateError::Render {
                    name: name.into(),
                    source,
                })
        };
        let subject = render(subject)?
            .lines()
            .next()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or(TemplateError::EmptySubject(subject))?
            .to_string();
        Ok(Rendered {
            subject,
            text: render(text)?,
            html: render(html)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(name: &str) -> LicenseContext {
        LicenseContext {
            name: name.into(),
            email: "a@b.co".into(),
            product_id: "p".into(),
            product_name: "DataTools <Core>".into(),
            tier: "core".into(),
            key: "DT1-CORE-00000-00000-00000-00000".into(),
            token: "v4.public.x".into(),
            expires_at: None,
            max_machines: Some(3),
            resend: false,
            renewal: false,
            portal_url: None,
        }
    }

    #[test]
    fn html_escapes_buyer_input_and_text_keeps_it() {
        let t = Templates::load(None).unwrap();
        let r = t.render_license(&ctx("<script>alert(1)</script>")).unwrap();
        assert!(r.html.contains("&lt;script&gt;alert(1)"), "{}", r.html);
        assert!(!r.html.contains("<script>"));
        assert!(r.text.contains("<script>alert(1)</script>"));
        assert_eq!(r.subject, "Your DataTools <Core> license");
        assert!(r.text.contains("DT1-CORE-00000-00000-00000-00000"));
    }

    #[test]
    fn the_seat_sentence_says_what_the_licensing_api_enforces() {
        let t = Templates::load(None).unwrap();
        let seats = |max| {
            let r = t
                .render_license(&LicenseContext {
                    max_machines: max,
                    ..ctx("Jo")
                })
                .unwrap();
            (r.text, r.html)
        };
        for (max, want) in [
            (Some(3), "up to 3 machines at a time"),
            (Some(1), "up to one machine at a time"),
        ] {
            let (text, html) = seats(max);
            assert!(text.contains(want) && html.contains(want), "{text}");
            assert!(text.contains("deactivate it on the old one"), "{text}");
        }
        let (text, html) = seats(None);
        assert!(
            !text.contains("machine") && !html.contains("machine"),
            "{text}"
        );
    }

    /// The templates with `license.subject.txt` overridden by `subject`.
    fn with_subject(subject: &str) -> Templates {
        let dir = std::env::temp_dir().join(format!("keymint-tpl-{}", ulid::Ulid::generate()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("license.subject.txt"), subject).unwrap();
        Templates::load(Some(&dir)).unwrap()
    }

    #[test]
    fn overrides_replace_defaults() {
        let t = with_subject("Key for {{ name }}");
        assert_eq!(t.render_license(&ctx("Jo")).unwrap().subject, "Key for Jo");
    }

    #[test]
    fn a_subject_that_renders_empty_is_an_error() {
        let t = with_subject("{{ missing_field }}\n");
        let err = t.render_license(&ctx("Jo")).unwrap_err();
        assert!(matches!(err, TemplateError::EmptySubject(_)), "{err}");
    }
}
