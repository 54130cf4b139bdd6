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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    guardrail: Option<RawGuardrail>,
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
    Ok(ClassConfig {
        path: None,
        guardrail,
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
}
