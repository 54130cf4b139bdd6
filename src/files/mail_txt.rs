//! `mail.txt`: the message `send-keys` mails, as the instructor writes it (first line
//! `Subject: …`, a blank line, then the body; both minijinja templates), or the built-in one.

use std::path::{Path, PathBuf};

use anyhow::Result;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::error::input;

pub const FILE: &str = "mail.txt";

const SUBJECT: &str = "Your OpenRouter API key";
const BODY: &str = "\
Hello {{ name }},

here is your own OpenRouter API key. Keep it to yourself: whoever has it spends your budget.

    {{ key }}

Limit: {{ limit }}{% if limit_reset %}, starting over {{ limit_reset }}{% endif %}
{% if expires_at %}Valid until: {{ expires_at }}
{% endif %}{% if models %}Models you may use: {{ models | join(\", \") }}
{% endif %}
Use it with any OpenAI-compatible client and the base URL https://openrouter.ai/api/v1.

To see what you have used and what is left:

    curl -s https://openrouter.ai/api/v1/key -H \"Authorization: Bearer {{ key }}\"

(Your key is named {{ key_name }} on OpenRouter.)
";

/// What a message may say about its student.
#[derive(Debug, Clone, Serialize)]
pub struct Vars {
    pub name: String,
    pub email: String,
    pub key: String,
    pub key_name: String,
    /// `$2.00` or `unlimited`.
    pub limit: String,
    pub limit_reset: String,
    pub expires_at: String,
    pub models: Vec<String>,
}

/// The subject and body templates, checked when read.
#[derive(Debug, Clone)]
pub struct Template {
    /// `None`: the built-in message.
    pub path: Option<PathBuf>,
    subject: String,
    body: String,
    /// The file's line on which the body starts.
    body_line: usize,
}

impl Template {
    /// `mail.txt` in the class folder, else the built-in message.
    pub fn read(dir: &Path) -> Result<Template> {
        let path = dir.join(FILE);
        let shown = path.display().to_string();
        let text = match std::fs::read(&path) {
            Ok(b) => String::from_utf8(b).map_err(|e| {
                let line = e.as_bytes()[..e.utf8_error().valid_up_to()]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
                    + 1;
                input(format!("{shown}: line {line}: the file is not UTF-8 text"))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Template {
                    path: None,
                    subject: SUBJECT.into(),
                    body: BODY.into(),
                    body_line: 1,
                });
            }
            Err(e) => return Err(input(format!("cannot read {shown}: {e}"))),
        };
        let text = text
            .strip_prefix('\u{feff}')
            .unwrap_or(&text)
            .replace("\r\n", "\n");
        let mut lines = text.splitn(3, '\n');
        let first = lines.next().unwrap_or("");
        let Some(subject) = first
            .strip_prefix("Subject:")
            .or_else(|| first.strip_prefix("subject:"))
        else {
            return Err(input(format!(
                "{shown}: line 1: the first line must be `Subject: …` (then a blank line, then the body)"
            )));
        };
        if lines.next().is_none_or(|l| !l.trim().is_empty()) {
            return Err(input(format!(
                "{shown}: line 2: a blank line must follow the subject (then the body)"
            )));
        }
        let t = Template {
            path: Some(path),
            subject: subject.trim().to_string(),
            body: lines.next().unwrap_or("").to_string(),
            body_line: 3,
        };
        let env = env();
        env.template_from_str(&t.subject)
            .map_err(|e| t.error(&e, true))?;
        env.template_from_str(&t.body)
            .map_err(|e| t.error(&e, false))?;
        // A misspelt variable shows now, before the account is asked anything.
        t.render(&Vars {
            name: "Ada Lovelace".into(),
            email: "ada@uni.edu".into(),
            key: "sk-or-v1-…".into(),
            key_name: "20261201_Ada Lovelace".into(),
            limit: "$2.00".into(),
            limit_reset: "monthly".into(),
            expires_at: "2026-12-31T23:59:59Z".into(),
            models: vec!["openai/gpt-4o-mini".into()],
        })?;
        Ok(t)
    }

    pub fn shown(&self) -> String {
        self.path.as_ref().map_or_else(
            || "the built-in message".into(),
            |p| p.display().to_string(),
        )
    }

    /// Subject (one line) and body for one student.
    pub fn render(&self, vars: &Vars) -> Result<(String, String)> {
        let env = env();
        let subject = env
            .render_str(
                &self.subject,
                minijinja::Value::from(minijinja::value::Serde(vars)),
            )
            .map_err(|e| self.error(&e, true))?;
        let body = env
            .render_str(
                &self.body,
                minijinja::Value::from(minijinja::value::Serde(vars)),
            )
            .map_err(|e| self.error(&e, false))?;
        // A subject is one line, whatever a variable holds.
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        Ok((subject, body))
    }

    fn error(&self, e: &minijinja::Error, subject: bool) -> anyhow::Error {
        let line = if subject {
            1
        } else {
            self.body_line + e.line().unwrap_or(1).saturating_sub(1)
        };
        let what = match e.kind() {
            minijinja::ErrorKind::UndefinedError => format!(
                "{} (the variables are name, email, key, key_name, limit, limit_reset, expires_at, models)",
                e.detail().unwrap_or("undefined variable")
            ),
            _ => e
                .detail()
                .map_or_else(|| e.kind().to_string(), String::from),
        };
        input(format!(
            "{}: line {line}: {what}; nothing was sent",
            self.shown()
        ))
    }
}

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    // A misspelt variable is an error, not an empty hole in 200 mails.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            name: "Ada Lovelace".into(),
            email: "ada@uni.edu".into(),
            key: "sk-or-v1-abc".into(),
            key_name: "20261201_Ada Lovelace".into(),
            limit: "$2.00".into(),
            limit_reset: String::new(),
            expires_at: String::new(),
            models: vec![],
        }
    }

    fn from(text: &str) -> Result<Template> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), text).unwrap();
        Template::read(dir.path())
    }

    #[test]
    fn the_built_in_message_holds_the_key_and_how_to_check_usage() {
        let t = Template::read(tempfile::tempdir().unwrap().path()).unwrap();
        let (subject, body) = t.render(&vars()).unwrap();
        assert_eq!(subject, "Your OpenRouter API key");
        assert!(body.contains("    sk-or-v1-abc\n"), "{body}");
        assert!(body.contains(
            "curl -s https://openrouter.ai/api/v1/key -H \"Authorization: Bearer sk-or-v1-abc\""
        ));
        assert!(body.contains("Limit: $2.00\n"), "{body}");
        assert!(!body.contains("Models"), "{body}");
        let mut v = vars();
        v.models = vec![
            "openai/gpt-4o-mini".into(),
            "google/gemini-2.5-flash".into(),
        ];
        v.limit_reset = "monthly".into();
        let (_, body) = t.render(&v).unwrap();
        assert!(body.contains("Models you may use: openai/gpt-4o-mini, google/gemini-2.5-flash"));
        assert!(
            body.contains("Limit: $2.00, starting over monthly"),
            "{body}"
        );
    }

    #[test]
    fn mail_txt_is_subject_blank_line_body_and_errors_name_the_line() {
        let t = from("Subject: Key for {{ name }}\n\nDear {{ name }},\n{{ key }}\n").unwrap();
        let (s, b) = t.render(&vars()).unwrap();
        assert_eq!(s, "Key for Ada Lovelace");
        assert_eq!(b, "Dear Ada Lovelace,\nsk-or-v1-abc\n");
        let e = from("Hello\n\nbody").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("Subject:"), "{e}");
        let e = from("Subject: x\nbody\n").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = from("Subject: x\n\nline one\n{% if %}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mail.txt: line 4"), "{e}");
        let e = from("Subject: x\n\nok\n{{ nmae }}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4") && e.contains("key_name"), "{e}");
    }
}
