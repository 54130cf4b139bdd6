//! `classkeys.toml`: the class's optional settings file. Read strictly: an unknown setting,
//! a wrong type or a value OpenRouter would refuse is an error naming the file and line, and
//! nothing is sent.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Deserialize;
use toml::Spanned;

use crate::domain::{Budget, GuardrailSpec, Interval};
use crate::error::input;

/// The file's name in the class folder.
pub const FILE: &str = "classkeys.toml";
/// No settings file is this big; a bigger one is not read.
const MAX_BYTES: u64 = 1 << 20;

/// The builtin content filters OpenRouter knows (`ContentFilterBuiltinSlug`).
pub const BUILTINS: [&str; 8] = [
    "email",
    "phone",
    "ssn",
    "credit-card",
    "ip-address",
    "person-name",
    "address",
    "regex-prompt-injection",
];

/// The class's settings, as the file gives them (all optional).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClassConfig {
    /// Where they were read from (`None`: there is no file).
    pub path: Option<PathBuf>,
    pub guardrail: Option<GuardrailSpec>,
    pub mail: Option<MailSettings>,
}

/// How `send-keys` reaches the mail server (`[mail]`). The password is never here: it comes
/// from `CLASSKEYS_SMTP_PASSWORD`.
#[derive(Debug, Clone, PartialEq)]
pub struct MailSettings {
    pub from: String,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub security: Security,
    pub username: Option<String>,
    pub bcc: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain connection, then STARTTLS (required), usually port 587.
    Starttls,
    /// TLS from the start, usually port 465.
    Tls,
    /// No encryption: only to a server on this machine.
    None,
}

impl Security {
    pub fn default_port(self) -> u16 {
        match self {
            Security::Starttls => 587,
            Security::Tls => 465,
            Security::None => 25,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    guardrail: Option<RawGuardrail>,
    mail: Option<Spanned<RawMail>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMail {
    from: Option<Spanned<String>>,
    smtp_host: Option<Spanned<String>>,
    smtp_port: Option<Spanned<i64>>,
    security: Option<Spanned<Security>>,
    username: Option<Spanned<String>>,
    bcc: Option<Spanned<String>>,
    /// Refused: a password in a file is a password in backups and shared folders.
    password: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuardrail {
    models: Option<Spanned<Vec<String>>>,
    providers: Option<Spanned<Vec<String>>>,
    daily_limit: Option<Spanned<f64>>,
    weekly_limit: Option<Spanned<f64>>,
    monthly_limit: Option<Spanned<f64>>,
    zero_data_retention: Option<bool>,
    training: Option<bool>,
    redact: Option<Spanned<Vec<String>>>,
}

impl ClassConfig {
    /// Read `classkeys.toml` from the class folder; no file is no settings.
    pub fn read(dir: &Path) -> Result<ClassConfig> {
        let path = dir.join(FILE);
        let shown = path.display().to_string();
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ClassConfig::default()),
            Err(e) => return Err(input(format!("cannot read {shown}: {e}"))),
        };
        if !meta.is_file() {
            return Err(input(format!(
                "{shown} is not a regular file: move it away, or make it the class's settings file"
            )));
        }
        if meta.len() > MAX_BYTES {
            return Err(input(format!(
                "{shown} is {} bytes: a settings file is a few lines; check that it is the right file",
                meta.len()
            )));
        }
        let bytes = std::fs::read(&path).map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    format!("permission denied: make it readable (chmod u+r {shown})")
                }
                _ => e.to_string(),
            };
            input(format!("cannot read {shown}: {why}"))
        })?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            input(format!(
                "{shown}: line {}: the file is not UTF-8 text",
                line_of(&bytes, e.valid_up_to())
            ))
        })?;
        let mut config = parse(text).map_err(|(at, msg)| {
            input(format!(
                "{shown}: line {}: {msg}; nothing was sent",
                line_of(text.as_bytes(), at)
            ))
        })?;
        config.path = Some(path);
        Ok(config)
    }

    pub fn shown(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| FILE.to_string(), |p| p.display().to_string())
    }
}

fn line_of(bytes: &[u8], at: usize) -> usize {
    bytes[..at.min(bytes.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The settings of a file's text, or where (a byte offset) and what is wrong.
pub fn parse(text: &str) -> std::result::Result<ClassConfig, (usize, String)> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        (at, e.message().trim().replace('\n', " "))
    })?;
    let guardrail = raw.guardrail.map(guardrail).transpose()?;
    let mail = raw
        .mail
        .map(|m| {
            let at = m.span().start;
            mail(m.into_inner(), at)
        })
        .transpose()?;
    Ok(ClassConfig {
        path: None,
        guardrail,
        mail,
    })
}

/// Whether a host name is this machine (where mail may go unencrypted).
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `at`: where the table starts (for what it lacks).
fn mail(raw: RawMail, at: usize) -> std::result::Result<MailSettings, (usize, String)> {
    if let Some(p) = raw.password {
        return Err((
            p.span().start,
            "a password does not belong in classkeys.toml (it would end up in backups and shared folders): \
             remove it and `export CLASSKEYS_SMTP_PASSWORD=…` before `classkeys send-keys`"
                .into(),
        ));
    }
    let address = |name: &str, v: &Spanned<String>| {
        let text = v.get_ref().trim().to_string();
        text.parse::<lettre::message::Mailbox>()
            .map(|_| text.clone())
            .map_err(|e| {
                (
                    v.span().start,
                    format!("`{name} = {text:?}` is not a mail address ({e})"),
                )
            })
    };
    let Some(from) = &raw.from else {
        return Err((
            at,
            "[mail] needs `from`, the address students see the mail come from".into(),
        ));
    };
    let from = address("from", from)?;
    let bcc = raw.bcc.as_ref().map(|b| address("bcc", b)).transpose()?;
    let Some(host) = &raw.smtp_host else {
        return Err((
            at,
            "[mail] needs `smtp_host`, your mail server (e.g. smtp.uni.edu)".into(),
        ));
    };
    let smtp_host = host.get_ref().trim().to_string();
    if smtp_host.is_empty() || smtp_host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err((
            host.span().start,
            format!("`smtp_host = {smtp_host:?}` is not a host name"),
        ));
    }
    let security = raw
        .security
        .as_ref()
        .map_or(Security::Starttls, |s| *s.get_ref());
    if security == Security::None && !is_loopback_host(&smtp_host) {
        let at = raw.security.as_ref().map_or(at, |s| s.span().start);
        return Err((
            at,
            format!(
                "`security = \"none\"` would send the keys unencrypted to {smtp_host}: use \"starttls\" or \"tls\" \
                 (\"none\" is only for a server on this machine)"
            ),
        ));
    }
    let smtp_port = match &raw.smtp_port {
        None => security.default_port(),
        Some(p) => u16::try_from(*p.get_ref())
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                (
                    p.span().start,
                    format!("smtp_port = {}: give a port from 1 to 65535", p.get_ref()),
                )
            })?,
    };
    let username = raw
        .username
        .as_ref()
        .map(|u| u.get_ref().trim().to_string())
        .filter(|u| !u.is_empty());
    Ok(MailSettings {
        from,
        smtp_host,
        smtp_port,
        security,
        username,
        bcc,
    })
}

fn guardrail(raw: RawGuardrail) -> std::result::Result<GuardrailSpec, (usize, String)> {
    let list = |name: &str, v: Option<Spanned<Vec<String>>>, may_be_empty: bool| match v {
        None => Ok(None),
        Some(v) => {
            let at = v.span().start;
            let items: Vec<String> = v
                .into_inner()
                .iter()
                .map(|s| s.trim().to_string())
                .collect();
            if !may_be_empty && items.is_empty() {
                return Err((
                    at,
                    format!(
                        "`{name} = []` would allow nothing: name at least one, or leave `{name}` out to allow any"
                    ),
                ));
            }
            if let Some(bad) = items
                .iter()
                .find(|s| s.is_empty() || s.chars().any(char::is_whitespace))
            {
                return Err((
                    at,
                    format!("`{name}` holds {bad:?}, which is not a name OpenRouter uses"),
                ));
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(twice) = items.iter().find(|s| !seen.insert(s.to_lowercase())) {
                return Err((at, format!("`{name}` names {twice:?} twice")));
            }
            Ok(Some(items))
        }
    };
    let models = list("models", raw.models, false)?;
    let providers = list("providers", raw.providers, false)?;
    let redact_at = raw.redact.as_ref().map_or(0, |r| r.span().start);
    let redact = list("redact", raw.redact, true)?;
    if let Some(items) = &redact
        && let Some(bad) = items.iter().find(|s| !BUILTINS.contains(&s.as_str()))
    {
        return Err((
            redact_at,
            format!(
                "`redact` holds {bad:?}; OpenRouter's filters are {}",
                BUILTINS.join(", ")
            ),
        ));
    }
    let budgets: Vec<(Interval, Spanned<f64>)> = [
        (Interval::Daily, raw.daily_limit),
        (Interval::Weekly, raw.weekly_limit),
        (Interval::Monthly, raw.monthly_limit),
    ]
    .into_iter()
    .filter_map(|(i, v)| v.map(|v| (i, v)))
    .collect();
    if budgets.len() > 1 {
        let names: Vec<&str> = budgets.iter().map(|(i, _)| i.setting()).collect();
        return Err((
            budgets[1].1.span().start,
            format!(
                "{} are both set: a guardrail has one budget; keep one of them",
                names.join(" and ")
            ),
        ));
    }
    let budget = match budgets.into_iter().next() {
        None => None,
        Some((interval, v)) => {
            let at = v.span().start;
            let dollars = *v.get_ref();
            if !dollars.is_finite() || dollars < 0.0 {
                return Err((
                    at,
                    format!(
                        "{} = {dollars}: give dollars per student, 0 or more (e.g. 1.00)",
                        interval.setting()
                    ),
                ));
            }
            Some(Budget { dollars, interval })
        }
    };
    Ok(GuardrailSpec {
        models,
        providers,
        budget,
        zero_data_retention: raw.zero_data_retention,
        training: raw.training,
        redact,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (usize, String) {
        let (at, msg) = parse(text).unwrap_err();
        (line_of(text.as_bytes(), at), msg)
    }

    #[test]
    fn the_issue_example_reads_whole() {
        let text = r#"
[guardrail]
models = ["openai/gpt-4o-mini", "google/gemini-2.5-flash"]  # allowed_models; absent = any
providers = ["openai", "google-vertex"]
daily_limit = 1.00
zero_data_retention = true
training = false
redact = ["email", "phone", "person-name"]
"#;
        let g = parse(text).unwrap().guardrail.unwrap();
        assert_eq!(
            g.models.as_deref(),
            Some(
                &[
                    "openai/gpt-4o-mini".to_string(),
                    "google/gemini-2.5-flash".into()
                ][..]
            )
        );
        assert_eq!(
            g.budget,
            Some(Budget {
                dollars: 1.0,
                interval: Interval::Daily
            })
        );
        assert_eq!(g.zero_data_retention, Some(true));
        assert_eq!(g.training, Some(false));
        assert_eq!(g.redact.unwrap().len(), 3);
    }

    #[test]
    fn left_out_is_none_and_an_empty_file_sets_nothing() {
        assert_eq!(parse("").unwrap(), ClassConfig::default());
        let g = parse("[guardrail]\nweekly_limit = 2\n")
            .unwrap()
            .guardrail
            .unwrap();
        assert_eq!(g.models, None);
        assert_eq!(g.redact, None);
        assert_eq!(g.budget.unwrap().interval, Interval::Weekly);
        assert_eq!(
            parse("[guardrail]\nredact = []\n")
                .unwrap()
                .guardrail
                .unwrap()
                .redact,
            Some(vec![])
        );
    }

    #[test]
    fn bad_files_name_the_line() {
        let (line, msg) = err("[guardrail]\nmodels = [\"a/b\"]\nmodles = [\"x\"]\n");
        assert_eq!(line, 3);
        assert!(msg.contains("modles"), "{msg}");
        let (line, msg) = err("[guardrail]\ndaily_limit = 1\n\nweekly_limit = 2\n");
        assert_eq!(line, 4);
        assert!(msg.contains("one budget"), "{msg}");
        let (line, msg) = err("[guardrail]\n\ndaily_limit = -1\n");
        assert_eq!(line, 3);
        assert!(msg.contains("0 or more"), "{msg}");
        let (line, _) = err("[guardrail]\ntraining = \"no\"\n");
        assert_eq!(line, 2);
        let (line, msg) = err("[guardrail]\nmodels = []\n");
        assert_eq!(line, 2);
        assert!(msg.contains("allow nothing"), "{msg}");
        let (line, msg) = err("[guardrail]\n\nredact = [\"emails\"]\n");
        assert_eq!(line, 3);
        assert!(msg.contains("person-name"), "{msg}");
        let (line, msg) = err("# the class\n[gardrail]\nmodels = [\"a/b\"]\n");
        assert_eq!(line, 2);
        assert!(msg.contains("gardrail"), "{msg}");
        let (line, _) = err("[guardrail\n");
        assert_eq!(line, 1);
    }

    #[test]
    fn the_mail_table_has_no_password_and_no_plain_text_to_other_hosts() {
        let m = parse("[mail]\nfrom = \"Prof <prof@uni.edu>\"\nsmtp_host = \"smtp.uni.edu\"\nusername = \"prof\"\n")
            .unwrap()
            .mail
            .unwrap();
        assert_eq!((m.smtp_port, m.security), (587, Security::Starttls));
        assert_eq!(m.username.as_deref(), Some("prof"));
        let (line, msg) =
            err("[mail]\nfrom = \"a@b.edu\"\nsmtp_host = \"h\"\npassword = \"hunter2\"\n");
        assert_eq!(line, 4);
        assert!(
            msg.contains("CLASSKEYS_SMTP_PASSWORD") && !msg.contains("hunter2"),
            "{msg}"
        );
        let (line, msg) =
            err("[mail]\nfrom = \"a@b.edu\"\nsmtp_host = \"smtp.uni.edu\"\nsecurity = \"none\"\n");
        assert_eq!(line, 4);
        assert!(msg.contains("unencrypted"), "{msg}");
        assert!(
            parse("[mail]\nfrom = \"a@b.edu\"\nsmtp_host = \"127.0.0.1\"\nsecurity = \"none\"\n")
                .is_ok()
        );
        let (line, _) = err("[mail]\nfrom = \"not an address\"\nsmtp_host = \"h\"\n");
        assert_eq!(line, 2);
        let (line, _) = err("[mail]\nfrom = \"a@b.edu\"\nsmtp_host = \"h\"\nsecurity = \"ssl\"\n");
        assert_eq!(line, 4);
    }
}
