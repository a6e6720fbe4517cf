//! Email: templates and the providers that send (log, Postmark, SMTP).
//! Sending is driven by the outbox worker (`workers::outbox`); nothing here
//! touches licenses.

pub mod templates;

use crate::config::{EmailConfig, EmailProvider, SmtpTls};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use std::time::Duration;

/// One email to send.
#[derive(Debug, Clone)]
pub struct Email {
    pub to: String,
    pub to_name: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Why a send failed; `permanent` failures are not retried.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub permanent: bool,
    pub message: String,
}

impl SendError {
    fn transient(message: impl Into<String>) -> Self {
        Self {
            permanent: false,
            message: message.into(),
        }
    }
    fn permanent(message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            message: message.into(),
        }
    }
}

/// The configured provider.
#[derive(Clone)]
pub enum Mailer {
    /// Writes the email to the log: everything works before email is set up.
    Log {
        from: String,
    },
    Postmark(Postmark),
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
        reply_to: Option<Mailbox>,
    },
}

#[derive(Clone)]
pub struct Postmark {
    client: reqwest::Client,
    url: String,
    token: String,
    from: String,
    reply_to: Option<String>,
    stream: String,
}

#[derive(Debug, thiserror::Error)]
#[error("email configuration: {0}")]
pub struct MailerConfigError(String);

fn from_header(cfg: &EmailConfig) -> String {
    match &cfg.from_name {
        Some(name) => format!("{name} <{}>", cfg.from),
        None => cfg.from.clone(),
    }
}

impl Mailer {
    pub fn from_config(cfg: &EmailConfig) -> Result<Self, MailerConfigError> {
        match cfg.provider {
            EmailProvider::Log => Ok(Self::Log {
                from: from_header(cfg),
            }),
            EmailProvider::Postmark => {
                let token =
                    cfg.postmark.server_token.as_ref().ok_or_else(|| {
                        MailerConfigError("postmark.server_token is not set".into())
                    })?;
                let client = reqwest::Client::builder()
                    .timeout(cfg.postmark.timeout)
                    .build()
                    .map_err(|e| MailerConfigError(e.to_string()))?;
                Ok(Self::Postmark(Postmark {
                    client,
                    url: format!("{}/email", cfg.postmark.api_url.trim_end_matches('/')),
                    token: token.expose().to_string(),
                    from: from_header(cfg),
                    reply_to: cfg.reply_to.clone(),
                    stream: cfg.postmark.message_stream.clone(),
                }))
            }
            EmailProvider::Smtp => {
                let smtp = &cfg.smtp;
                let host = smtp
                    .host
                    .as_deref()
                    .ok_or_else(|| MailerConfigError("smtp.host is not set".into()))?;
                let mut builder = match smtp.tls {
                    SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
                    SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
                    SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                        host,
                    )),
                }
                .map_err(|e| MailerConfigError(e.to_string()))?;
                if let Some(port) = smtp.port {
                    builder = builder.port(port);
                }
                if let (Some(user), Some(pass)) = (&smtp.username, &smtp.password) {
                    builder = builder
                        .credentials(Credentials::new(user.clone(), pass.expose().to_string()));
                }
                let transport = builder.timeout(Some(smtp.timeout)).build();
                let from = from_header(cfg)
                    .parse()
                    .map_err(|e| MailerConfigError(format!("email.from: {e}")))?;
                let reply_to = match &cfg.reply_to {
                    Some(r) => Some(
                        r.parse()
                            .map_err(|e| MailerConfigError(format!("email.reply_to: {e}")))?,
                    ),
                    None => None,
                };
                Ok(Self::Smtp {
                    transport,
                    from,
                    reply_to,
                })
            }
        }
    }

    /// Sends one email; returns the provider's message id when it has one.
    pub async fn send(&self, email: &Email) -> Result<Option<String>, SendError> {
        match self {
            Self::Log { from } => {
                tracing::info!(
                    target: "keymint::email",
                    from = %from,
                    to = %email.to,
                    subject = %email.subject,
                    "email (log provider; set email.provider to send for real):\n{}",
                    email.text
                );
                Ok(None)
            }
            Self::Postmark(p) => p.send(email).await,
            Self::Smtp {
                transport,
                from,
                reply_to,
            } => {
                let to: Mailbox = format!(
                    "{} <{}>",
                    email.to_name.replace(['<', '>', '"', '\r', '\n'], ""),
                    email.to
                )
                .parse()
                .or_else(|_| email.to.parse())
                .map_err(|e| SendError::permanent(format!("bad recipient address: {e}")))?;
                let mut builder = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(&email.subject);
                if let Some(r) = reply_to {
                    builder = builder.reply_to(r.clone());
                }
                let message = builder
                    .multipart(MultiPart::alternative_plain_html(
                        email.text.clone(),
                        email.html.clone(),
                    ))
                    .map_err(|e| SendError::permanent(format!("cannot build the message: {e}")))?;
                match transport.send(message).await {
                    Ok(resp) => Ok(resp.message().next().map(str::to_string)),
                    Err(e) if e.is_permanent() => Err(SendError::permanent(format!("smtp: {e}"))),
                    Err(e) => Err(SendError::transient(format!("smtp: {e}"))),
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct PostmarkReply {
    #[serde(rename = "MessageID")]
    message_id: Option<String>,
    #[serde(rename = "ErrorCode", default)]
    error_code: i64,
    #[serde(rename = "Message", default)]
    message: String,
}

impl Postmark {
    async fn send(&self, email: &Email) -> Result<Option<String>, SendError> {
        let body = serde_json::json!({
            "From": self.from,
            "To": email.to,
            "ReplyTo": self.reply_to,
            "Subject": email.subject,
            "TextBody": email.text,
            "HtmlBody": email.html,
            "MessageStream": self.stream,
        });
        let resp = self
            .client
            .post(&self.url)
            .header("Accept", "application/json")
            .header("X-Postmark-Server-Token", &self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                SendError::transient(format!("postmark unreachable: {}", without_url(&e)))
            })?;
        let status = resp.status();
        // Postmark's reply only adds detail (the message id, the error
        // code): the status decides, so a body that does not parse is none.
        let reply: Option<PostmarkReply> = resp.json().await.ok();
        let detail = reply
            .as_ref()
            .map(|r| format!(" (ErrorCode {}: {})", r.error_code, r.message))
            .unwrap_or_default();
        if status.is_success() {
            return Ok(reply.and_then(|r| r.message_id));
        }
        let message = format!("postmark answered {status}{detail}");
        // 429 and 5xx are Postmark's "try again"; other 4xx (bad address,
        // inactive recipient, bad token) will fail the same way again.
        if status.as_u16() == 429 || status.is_server_error() {
            Err(SendError::transient(message))
        } else {
            Err(SendError::permanent(message))
        }
    }
}

fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<postmark>");
    }
    text
}

/// Backoff before attempt `attempt + 1`: full jitter over an exponential
/// ceiling (`base * 2^(attempt-1)`, capped at `max`).
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1u32 << exp).min(max);
    if ceiling.is_zero() {
        return ceiling;
    }
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::random_range(ms / 2..=ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(100);
        for attempt in 1..20 {
            let d = backoff(attempt, base, max);
            let ceiling = base.saturating_mul(1 << (attempt - 1).min(30)).min(max);
            assert!(d <= ceiling && d >= ceiling / 2, "attempt {attempt}: {d:?}");
        }
        assert_eq!(backoff(3, Duration::ZERO, max), Duration::ZERO);
    }
}
