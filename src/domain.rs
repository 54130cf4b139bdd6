//! The words every layer shares: who owns a key, what a journaled change is and where it
//! stands, what kind of account a class lives on, and how the class names its keys.
//! No I/O here; the store persists these, the client and the files convert to and from them.

use std::fmt;

/// Whose a key recorded in keys.db is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Owner {
    /// Made by the class, imported, or adopted by the instructor: the class's.
    #[default]
    Class,
    /// A key nobody knew, listed in roster.csv as a FIXME row; not the class's until adopted.
    Fixme,
    /// A FIXME row the instructor deleted: never listed again.
    Dismissed,
}

impl Owner {
    pub fn as_str(self) -> &'static str {
        match self {
            Owner::Class => "class",
            Owner::Fixme => "fixme",
            Owner::Dismissed => "dismissed",
        }
    }
    pub fn parse(s: &str) -> Owner {
        match s {
            "fixme" => Owner::Fixme,
            "dismissed" => Owner::Dismissed,
            _ => Owner::Class,
        }
    }
}

/// What kind of change to the account an intent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentAction {
    Create,
    Patch,
    Delete,
}

impl IntentAction {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentAction::Create => "create",
            IntentAction::Patch => "patch",
            IntentAction::Delete => "delete",
        }
    }
    pub fn parse(s: &str) -> Option<IntentAction> {
        match s {
            "create" => Some(IntentAction::Create),
            "patch" => Some(IntentAction::Patch),
            "delete" => Some(IntentAction::Delete),
            _ => None,
        }
    }
}

/// How a journaled change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The account shows the change (answered, or found by a later run).
    Landed,
    /// The account does not show it: it was refused, never sent, or never arrived.
    NotLanded,
    /// A create that landed without anyone seeing its secret: the key was deleted.
    Discarded,
}

impl Settled {
    pub fn as_str(self) -> &'static str {
        match self {
            Settled::Landed => "landed",
            Settled::NotLanded => "not_landed",
            Settled::Discarded => "discarded",
        }
    }
}

/// Whether a class lives on a real OpenRouter account or in the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    Real,
    Sandbox,
}

impl AccountKind {
    pub fn of(sandbox: bool) -> AccountKind {
        if sandbox {
            AccountKind::Sandbox
        } else {
            AccountKind::Real
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Real => "real",
            AccountKind::Sandbox => "sandbox",
        }
    }
    pub fn parse(s: &str) -> Option<AccountKind> {
        match s {
            "real" => Some(AccountKind::Real),
            "sandbox" => Some(AccountKind::Sandbox),
            _ => None,
        }
    }
}

impl fmt::Display for AccountKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccountKind::Real => "a real OpenRouter account",
            AccountKind::Sandbox => "the sandbox",
        })
    }
}

/// A class tag: letters, digits and `-`, so that `TAG_` can never be part of a student's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Tag, String> {
        let t = s.trim();
        if t.is_empty() || t.len() > 32 {
            return Err(format!(
                "--class {s:?}: give 1 to 32 letters, digits or `-` (for example CS101-A)"
            ));
        }
        if !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!(
                "--class {s:?}: only letters, digits and `-` (for example CS101-A)"
            ));
        }
        Ok(Tag(t.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `CS101_`: the start of every key name of this class.
    pub fn prefix(&self) -> String {
        format!("{}_", self.0)
    }
}

/// How the class names its keys: `[TAG_]YYYYMMDD_<name>`.
#[derive(Debug, Clone, Default)]
pub struct Naming {
    pub tag: Option<Tag>,
}

impl Naming {
    pub fn key_name(&self, date: &str, student: &str) -> String {
        match &self.tag {
            Some(t) => format!("{}{date}_{student}", t.prefix()),
            None => format!("{date}_{student}"),
        }
    }

    /// The student name a key name of this class carries, if it is one of this class's names:
    /// `CS101_20250907_Alice Smith` -> `Alice Smith` (tagged), `20250907_Alice Smith` (untagged).
    pub fn student_of<'a>(&self, key_name: &'a str) -> Option<&'a str> {
        let rest = match &self.tag {
            Some(t) => key_name.strip_prefix(&t.prefix())?,
            None => key_name,
        };
        dated_name(rest)
    }

    /// Whether an unknown key may be this class's at all: in a tagged class, only `TAG_…` keys.
    pub fn may_be_ours(&self, key_name: &str) -> bool {
        match &self.tag {
            Some(t) => key_name.starts_with(&t.prefix()),
            None => true,
        }
    }
}

/// `20250907_Alice Smith` -> `Alice Smith`.
pub fn dated_name(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    (b.len() > 9 && b[..8].iter().all(u8::is_ascii_digit) && b[8] == b'_').then(|| &s[9..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_names() {
        assert!(Tag::parse("CS101-A").is_ok());
        assert!(Tag::parse("cs 101").is_err());
        assert!(Tag::parse("a_b").is_err());
        assert!(Tag::parse("").is_err());
        let tagged = Naming {
            tag: Some(Tag::parse("CS101").unwrap()),
        };
        assert_eq!(tagged.key_name("20261201", "Ada"), "CS101_20261201_Ada");
        assert_eq!(tagged.student_of("CS101_20261201_Ada"), Some("Ada"));
        assert_eq!(tagged.student_of("20261201_Ada"), None);
        assert!(!tagged.may_be_ours("20261201_Ada"));
        assert!(!tagged.may_be_ours("CS102_20261201_Ada"));
        let plain = Naming::default();
        assert_eq!(plain.key_name("20261201", "Ada"), "20261201_Ada");
        assert_eq!(plain.student_of("20261201_Ada"), Some("Ada"));
        assert_eq!(plain.student_of("My key"), None);
    }
}
