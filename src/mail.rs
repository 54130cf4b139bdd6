//! The SMTP client of `send-keys`: one connection for the batch (made again if the server
//! drops it), STARTTLS or TLS with certificates verified against the system's trust store (and
//! `SSL_CERT_FILE`), AUTH when a username is set, and retries of temporary failures.

use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, SmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

use crate::files::config::{MailSettings, Security};

/// The variable that holds the SMTP password (never the file, never the command line).
pub const PASSWORD_VAR: &str = "CLASSKEYS_SMTP_PASSWORD";
/// Tries of one message after a temporary failure (4xx, a dropped connection).
const RETRIES: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(30);
/// Where Debian, Fedora and Alpine keep the system's trust store.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Why a message was not accepted.
#[derive(Debug)]
pub enum Refused {
    /// The server refused it for good (5xx): the next message goes on.
    Permanent(String),
    /// Still failing after the retries, or the server cannot be reached again: the batch stops.
    Unreachable(String),
}

pub struct Mailer {
    settings: MailSettings,
    credentials: Option<Credentials>,
    tls: Option<TlsParameters>,
    hello: ClientId,
    conn: Option<SmtpConnection>,
    /// Pause before the n-th retry: base × 2ⁿ.
    backoff: Duration,
}

impl Mailer {
    pub fn new(settings: MailSettings, password: Option<String>) -> anyhow::Result<Mailer> {
        let tls = match settings.security {
            Security::None => None,
            Security::Starttls | Security::Tls => Some(tls_parameters(&settings.smtp_host)?),
        };
        let credentials = settings
            .username
            .clone()
            .map(|u| Credentials::new(u, password.unwrap_or_default()));
        Ok(Mailer {
            settings,
            credentials,
            tls,
            hello: ClientId::default(),
            conn: None,
            backoff: Duration::from_millis(500),
        })
    }

    fn server(&self) -> String {
        format!("{}:{}", self.settings.smtp_host, self.settings.smtp_port)
    }

    /// Connect, secure and log in, or say why not (the server's own message).
    pub fn connect(&mut self) -> Result<(), String> {
        let server = self.server();
        let wrapper = match self.settings.security {
            Security::Tls => self.tls.as_ref(),
            _ => None,
        };
        let mut conn = SmtpConnection::connect(
            (self.settings.smtp_host.as_str(), self.settings.smtp_port),
            Some(TIMEOUT),
            &self.hello,
            wrapper,
            None,
        )
        .map_err(|e| format!("cannot connect to the mail server {server}: {}", said(&e)))?;
        if self.settings.security == Security::Starttls {
            let Some(tls) = &self.tls else {
                return Err("STARTTLS without TLS settings".into());
            };
            if !conn.can_starttls() {
                conn.abort();
                return Err(format!(
                    "the mail server {server} does not offer STARTTLS: set `security = \"tls\"` (port 465) if it \
                     speaks TLS from the start; nothing was sent"
                ));
            }
            conn.starttls(tls, &self.hello)
                .map_err(|e| format!("starting TLS with {server} failed: {}", said(&e)))?;
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .map_err(|e| {
                    format!(
                        "logging in to {server} as {} failed: {}",
                        self.settings.username.as_deref().unwrap_or(""),
                        said(&e)
                    )
                })?;
        }
        self.conn = Some(conn);
        Ok(())
    }

    /// Send one message; temporary failures are tried again (on a new connection when the old
    /// one broke) with backoff.
    pub fn send(&mut self, envelope: &Envelope, message: &[u8]) -> Result<(), Refused> {
        let mut last = String::new();
        for attempt in 0..=RETRIES {
            if attempt > 0 {
                std::thread::sleep(self.backoff * 2u32.pow(attempt - 1));
            }
            if self.conn.as_ref().is_none_or(SmtpConnection::has_broken) {
                self.conn = None;
                if let Err(e) = self.connect() {
                    last = e;
                    continue;
                }
            }
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            match conn.send(envelope, message) {
                Ok(_) => return Ok(()),
                Err(e) if e.is_permanent() => {
                    // The transaction is over; the next message starts afresh.
                    self.conn = None;
                    return Err(Refused::Permanent(said(&e)));
                }
                Err(e) => {
                    last = said(&e);
                    self.conn = None;
                }
            }
        }
        Err(Refused::Unreachable(format!(
            "{last} (tried {} times)",
            RETRIES + 1
        )))
    }

    pub fn quit(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            let _ = conn.quit();
        }
    }
}

/// What went wrong, with the server's words where it said any; never a secret.
fn said(e: &lettre::transport::smtp::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    crate::ui::shown(&text)
}

/// The system's trust store; `SSL_CERT_FILE` adds its certificates to it.
fn tls_parameters(host: &str) -> anyhow::Result<TlsParameters> {
    let mut builder = TlsParameters::builder(host.to_string());
    if let Some(file) = std::env::var_os("SSL_CERT_FILE").filter(|f| !f.is_empty()) {
        let pem = std::fs::read(&file).map_err(|e| {
            crate::error::input(format!(
                "SSL_CERT_FILE={}: cannot read it ({e})",
                std::path::Path::new(&file).display()
            ))
        })?;
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            crate::error::input(format!(
                "SSL_CERT_FILE={}: not PEM certificates ({e})",
                std::path::Path::new(&file).display()
            ))
        })?;
        builder = builder.add_root_certificate(cert);
        // With SSL_CERT_FILE set the system store is not read by itself: add it too.
        if let Some(system) = SYSTEM_BUNDLES
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .and_then(|pem| Certificate::from_pem(&pem).ok())
        {
            builder = builder.add_root_certificate(system);
        }
    }
    builder
        .build_rustls()
        .map_err(|e| anyhow::anyhow!("setting up TLS for {host}: {e}"))
}
