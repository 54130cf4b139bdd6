//! `send-keys`: mail each student their own key. Every message is written before anything is
//! sent (a template error stops the run with nothing sent); each one the server accepts is
//! recorded as a `key_sent` changelog row before the next goes, so a run after a crash sends
//! only what is missing.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use lettre::address::Envelope;
use lettre::message::{Mailbox, Message, header::ContentType};
use serde::Serialize;

use super::class::{Class, Failed, limit_text, open_store, sandbox_tag};
use super::toggle::check_emails;
use crate::cli::SendKeysArgs;
use crate::context::Ctx;
use crate::domain::Change;
use crate::error::{Exit, input};
use crate::files::config::{ClassConfig, MailSettings};
use crate::files::mail_txt::{Template, Vars};
use crate::files::roster::Roster;
use crate::files::{SECRET_MODE, email_key, write_atomic};
use crate::mail::{Mailer, PASSWORD_VAR, Refused};

/// The folder `--dry-run` writes the messages to.
const OUTBOX: &str = "outbox";

#[derive(Serialize)]
struct Report<'a> {
    dry_run: bool,
    sent: &'a [Sent],
    skipped: &'a [Skipped],
    failed: &'a [Failed],
    /// With --dry-run: where the messages are.
    outbox: Option<String>,
}

#[derive(Serialize, Clone)]
struct Sent {
    email: String,
    name: String,
    key_name: String,
    hash: String,
    /// With --dry-run: the message's file.
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
}

#[derive(Serialize)]
struct Skipped {
    email: String,
    reason: String,
}

/// One message, ready to go.
struct Letter {
    to: Sent,
    envelope: Envelope,
    bytes: Vec<u8>,
}

pub fn run(ctx: &mut Ctx, args: SendKeysArgs) -> Result<Exit> {
    // Everything is checked before keys.db is locked or anything is sent.
    let config = ClassConfig::read(&ctx.dir())?;
    let Some(mail) = config.mail.clone() else {
        return Err(input(format!(
            "{} has no [mail] table: add one with from, smtp_host (and smtp_port, security, username) so \
             classkeys can reach your mail server",
            config.shown()
        )));
    };
    let template = Template::read(&ctx.dir())?;
    let password = if args.dry_run { None } else { password(&mail)? };
    let store = open_store(&args.db.db)?;
    let roster = Roster::read(&args.roster.roster)?;
    check_emails(&roster, &args.emails)?;
    let class = Class::load(ctx, store, roster, &args.db.db, args.dry_run)?;

    let mailed = class.store.mailed()?;
    let models = config
        .guardrail
        .as_ref()
        .and_then(|g| g.models.clone())
        .unwrap_or_default();
    let (letters, skipped) = letters(&class, &args, &mail, &template, &mailed, &models)?;

    if args.dry_run {
        return dry_run(ctx, letters, skipped);
    }
    let mut sent = Vec::new();
    let mut failed = Vec::new();
    if !letters.is_empty() {
        let mut mailer = Mailer::new(mail, password)?;
        mailer
            .connect()
            .map_err(|e| anyhow::anyhow!("{e}; no mail was sent"))?;
        let bar = ctx.ui.progress(letters.len(), "mailing keys");
        let mut store = class.store;
        let mut stopped = None;
        for (i, letter) in letters.iter().enumerate() {
            match mailer.send(&letter.envelope, &letter.bytes) {
                Ok(()) => {
                    // Recorded before the next is sent: a crash mails at most this one twice.
                    store.record_changes(
                        &[],
                        None,
                        &[Change {
                            hash: letter.to.hash.clone(),
                            email: letter.to.email.clone(),
                            action: "key_sent",
                            old: None,
                            new: Some(format!("mailed to {}", letter.to.email)),
                        }],
                    )?;
                    sent.push(letter.to.clone());
                }
                Err(Refused::Permanent(e)) => failed.push(Failed {
                    email: letter.to.email.clone(),
                    error: e,
                }),
                Err(Refused::Unreachable(e)) => {
                    failed.push(Failed {
                        email: letter.to.email.clone(),
                        error: e.clone(),
                    });
                    stopped = Some((i + 1, e));
                    break;
                }
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        mailer.quit();
        if let Some((from, why)) = stopped {
            for letter in &letters[from..] {
                failed.push(Failed {
                    email: letter.to.email.clone(),
                    error: format!("not sent: the mail server could not be reached ({why})"),
                });
            }
        }
    }
    show(ctx, &sent, &skipped, &failed, None)?;
    if !failed.is_empty() {
        return Err(anyhow::anyhow!(format!(
            "{} of {} mail(s) were not sent (listed above); the {} sent are recorded. Fix the cause and run \
             `classkeys send-keys` again: it sends only what is missing",
            failed.len(),
            letters.len(),
            sent.len()
        )));
    }
    Ok(Exit::Ok)
}

/// `CLASSKEYS_SMTP_PASSWORD`, needed when the file names a username.
fn password(mail: &MailSettings) -> Result<Option<String>> {
    let Some(user) = &mail.username else {
        return Ok(None);
    };
    match std::env::var(PASSWORD_VAR) {
        Ok(p) if !p.is_empty() => {
            crate::ui::register_secret(&p);
            Ok(Some(p))
        }
        _ => Err(input(format!(
            "classkeys.toml logs in to {} as {user}, but {PASSWORD_VAR} is not set: `export {PASSWORD_VAR}=…` \
             (the password never goes in a file or on the command line); nothing was sent",
            mail.smtp_host
        ))),
    }
}

/// Who gets a mail (rendered now, so that a template error sends nothing), and who does not.
fn letters(
    class: &Class,
    args: &SendKeysArgs,
    mail: &MailSettings,
    template: &Template,
    mailed: &HashSet<String>,
    models: &[String],
) -> Result<(Vec<Letter>, Vec<Skipped>)> {
    let view = class.view();
    let asked: HashSet<String> = args.emails.iter().map(|e| email_key(e)).collect();
    let from: Mailbox = mail
        .from
        .parse()
        .with_context(|| format!("[mail] from = {:?}", mail.from))?;
    let bcc: Option<Mailbox> = mail.bcc.as_deref().map(str::parse).transpose()?;
    let mut letters = Vec::new();
    let mut skipped = Vec::new();
    for entry in &view.entries {
        let s = entry.student;
        if s.is_placeholder() || (!asked.is_empty() && !asked.contains(&email_key(&s.email))) {
            continue;
        }
        let skip = |reason: &str| Skipped {
            email: s.email.clone(),
            reason: reason.to_string(),
        };
        // The live key: enabled keys come first.
        let Some(key) = entry.key() else {
            skipped.push(skip("no key: run `classkeys provision` first"));
            continue;
        };
        if key.disabled {
            skipped.push(skip("the key is disabled"));
            continue;
        }
        if mailed.contains(&key.hash) && !args.resend {
            skipped.push(skip(
                "already mailed (use --email with --resend to mail it again)",
            ));
            continue;
        }
        let Some(secret) = class.store.secret(&key.hash)? else {
            skipped.push(skip(
                "keys.db does not hold this key's secret (`classkeys rotate` makes a new one you can send)",
            ));
            continue;
        };
        let to_addr = match s.email.trim().parse::<lettre::Address>() {
            Ok(a) => a,
            Err(e) => {
                skipped.push(skip(&format!("not a mail address ({e})")));
                continue;
            }
        };
        let vars = Vars {
            name: s.name.clone(),
            email: s.email.clone(),
            key: secret,
            key_name: key.name.clone(),
            limit: limit_text(key.limit),
            limit_reset: key.limit_reset.clone().unwrap_or_default(),
            expires_at: key.expires_at.clone().unwrap_or_default(),
            models: models.to_vec(),
        };
        let (subject, body) = template.render(&vars)?;
        let to = Mailbox::new(
            Some(s.name.clone()).filter(|n| !n.trim().is_empty()),
            to_addr.clone(),
        );
        // The To: header names the student alone; a bcc is in the envelope only.
        let message = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(plain_body(body))
            .with_context(|| format!("writing the mail to {}", s.email))?;
        let mut rcpt = vec![to_addr];
        if let Some(b) = &bcc {
            rcpt.push(b.email.clone());
        }
        let envelope = Envelope::new(Some(from.email.clone()), rcpt)
            .with_context(|| format!("addressing the mail to {}", s.email))?;
        letters.push(Letter {
            to: Sent {
                email: s.email.clone(),
                name: s.name.clone(),
                key_name: key.name.clone(),
                hash: key.hash.clone(),
                file: None,
            },
            envelope,
            bytes: message.formatted(),
        });
    }
    Ok((letters, skipped))
}

/// The body as it is when it can be (ASCII, lines within SMTP's 998): the key stays on one
/// line, whatever the mail client. Anything else is encoded (quoted-printable or base64).
fn plain_body(body: String) -> lettre::message::Body {
    use lettre::message::{Body, header::ContentTransferEncoding};
    let fits = body.is_ascii()
        && !body.contains('\0')
        && body.lines().all(|l| l.trim_end_matches('\r').len() <= 998);
    if !fits {
        return Body::new(body);
    }
    let crlf = body
        .replace("\r\n", "\n")
        .replace('\r', "\n")
        .replace('\n', "\r\n");
    Body::dangerous_pre_encoded(crlf.into_bytes(), ContentTransferEncoding::SevenBit)
}

/// Each message as `outbox/<email>.eml`, owner-only; nothing is sent.
fn dry_run(ctx: &Ctx, letters: Vec<Letter>, skipped: Vec<Skipped>) -> Result<Exit> {
    let dir = ctx.dir().join(OUTBOX);
    let mut written = Vec::new();
    if !letters.is_empty() {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("making the folder {}", dir.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} owner-only", dir.display()))?;
    }
    for letter in letters {
        let file: PathBuf = dir.join(format!("{}.eml", file_name(&letter.to.email)));
        write_atomic(&file, SECRET_MODE, |w: &mut dyn Write| {
            w.write_all(&letter.bytes)?;
            Ok(())
        })?;
        written.push(Sent {
            file: Some(file.display().to_string()),
            ..letter.to
        });
    }
    show(ctx, &written, &skipped, &[], Some(&dir))?;
    Ok(Exit::Ok)
}

/// An email as a file name: nothing that leaves the folder.
fn file_name(email: &str) -> String {
    email
        .trim()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "@.+-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn show(
    ctx: &Ctx,
    sent: &[Sent],
    skipped: &[Skipped],
    failed: &[Failed],
    outbox: Option<&std::path::Path>,
) -> Result<()> {
    if ctx.ui.json {
        return ctx.ui.json(&Report {
            dry_run: outbox.is_some(),
            sent,
            skipped,
            failed,
            outbox: outbox.map(|d| d.display().to_string()),
        });
    }
    if !sent.is_empty() {
        let rows = sent
            .iter()
            .map(|s| {
                let mut row = vec![s.email.clone(), s.name.clone(), s.key_name.clone()];
                if let Some(f) = &s.file {
                    row.push(f.clone());
                }
                row
            })
            .collect();
        let mut headers = vec!["Email", "Name", "Key name"];
        if outbox.is_some() {
            headers.push("Message");
        }
        ctx.ui.table(&headers, rows);
    }
    for s in skipped {
        ctx.ui.say(format!("skipped {}: {}", s.email, s.reason));
    }
    for f in failed {
        ctx.ui.warn(format!("not sent to {}: {}", f.email, f.error));
    }
    let verb = if outbox.is_some() {
        "dry run: wrote"
    } else {
        "mailed"
    };
    ctx.ui.say(format!(
        "{}{verb} {} key(s); {} skipped; {} failed{}",
        sandbox_tag(ctx),
        sent.len(),
        skipped.len(),
        failed.len(),
        match outbox {
            Some(d) => format!(
                ". Nothing was sent: the messages are in {}/ (owner-only)",
                d.display()
            ),
            None => String::new(),
        }
    ));
    Ok(())
}
