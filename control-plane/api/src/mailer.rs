//! Sending e-mail over SMTP with lettre: the transport the outbox's sender and the console's
//! invitations share (a module of its own so that the app's state can hold it without
//! depending on the delivery machinery). `TOLLGATE_SMTP_URL` is `smtp://host:port` (no TLS: a
//! local relay or mail catcher), `smtp://…?tls=required` (STARTTLS), or
//! `smtps://user:password@host:port`.

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::{Duration, Instant};
use tollgate_store::outbox::Attempt;

/// How long one SMTP exchange may take (as a webhook's).
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// An e-mail ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(smtp_url: &str, from: &str) -> Result<Mailer, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| format!("TOLLGATE_SMTP_URL: {e}"))?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        let from = from.parse().map_err(|e| format!("TOLLGATE_MAIL_FROM `{from}`: {e}"))?;
        Ok(Mailer { transport, from })
    }

    pub async fn send(&self, to: &str, mail: &Composed, event_id: &str) -> Attempt {
        let started = Instant::now();
        let elapsed = || i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let failed = |error: String| Attempt {
            ok: false,
            status: None,
            latency_ms: elapsed(),
            excerpt: String::new(),
            error: Some(error),
        };
        let to: Mailbox = match to.parse() {
            Ok(t) => t,
            Err(e) => return failed(format!("`{to}` is not an address: {e}")),
        };
        let domain = self.from.email.domain().to_string();
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&mail.subject)
            .message_id(Some(format!("<{event_id}@{domain}>")))
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(mail.text.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(mail.html.clone()),
                    ),
            );
        let message = match message {
            Ok(m) => m,
            Err(e) => return failed(e.to_string()),
        };
        match self.transport.send(message).await {
            Ok(r) => Attempt {
                ok: true,
                status: Some(r.code().into()),
                latency_ms: elapsed(),
                excerpt: r.message().collect::<Vec<_>>().join(" "),
                error: None,
            },
            Err(e) => failed(e.to_string()),
        }
    }
}
