//! `report`: what each student spent between two moments, from keys.db's usage history.
//! Reads keys.db only (no lock, no management key, no network), so it can run while a `check`
//! is going and on a laptop without the key. The figures come from `crate::report`, whose
//! module doc says exactly how a window is counted; this file turns the options into a window,
//! prints, and writes the HTML page.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Local, SecondsFormat, Utc};
use serde::Serialize;

use crate::cli::ReportArgs;
use crate::context::Ctx;
use crate::error::{Exit, input};
use crate::files::{PLAIN_MODE, write_atomic};
use crate::report::by_model::{self, ByModel};
use crate::report::{self, Report, Window, html};
use crate::store::Store;

const FORMS: &str = "use an RFC 3339 date-time such as 2026-11-27T09:00:00Z or 2026-11-27T10:00:00+01:00, \
a local date-time such as \"2026-11-27 09:00\", a date such as 2026-11-27 (the start of that local day), or a snapshot file such as snapshot_20261127_090000.csv";

#[derive(Serialize)]
struct Json<'a> {
    #[serde(flatten)]
    report: &'a Report,
    /// `by_model`, `models`, `figures_until`, `warnings` (with `--by-model` only).
    #[serde(flatten)]
    by_model: Option<&'a ByModel>,
    html: Option<String>,
}

pub fn run(ctx: &mut Ctx, args: ReportArgs) -> Result<Exit> {
    // Every option is checked before keys.db is opened.
    let since = resolve(ctx, "--since", args.since.as_deref())?;
    let until = resolve(ctx, "--until", args.until.as_deref())?;
    if let (Some(s), Some(u)) = (since, until)
        && s > u
    {
        return Err(input(format!(
            "--since ({}) is after --until ({}): the window would run backwards; swap them",
            shown(s),
            shown(u)
        )));
    }

    let store = Store::open_read(&args.db.db)?;
    let keys = store
        .key_infos()
        .with_context(|| format!("reading the keys of {}", args.db.db.display()))?;
    let history = store
        .usage_history()
        .with_context(|| format!("reading the usage history of {}", args.db.db.display()))?;
    let report = report::build(&keys, &history, Window { since, until });
    let models = if args.by_model {
        Some(spend_by_model(ctx, &store, &keys, &history, since, until)?)
    } else {
        None
    };

    if let Some(path) = &args.html {
        let page = html::render(
            &report,
            &report::timeline(&history),
            models.as_ref(),
            Utc::now(),
        );
        write_atomic(path, PLAIN_MODE, |w: &mut dyn Write| {
            w.write_all(page.as_bytes())?;
            Ok(())
        })?;
    }

    if ctx.ui.json {
        ctx.ui.json(&Json {
            report: &report,
            by_model: models.as_ref(),
            html: args.html.as_ref().map(|p| p.display().to_string()),
        })?;
    } else {
        table(ctx, &report);
        if let Some(m) = &models {
            model_tables(ctx, m);
        }
    }
    if let Some(m) = &models {
        for w in &m.warnings {
            ctx.ui.warn(format!("analytics: {}", crate::ui::clean(w)));
        }
    }
    if history.is_empty() {
        ctx.ui.note(
            "keys.db holds no usage yet: every `classkeys check` (and provision, update, …) adds one observation per key",
        );
    }
    if let Some(path) = &args.html {
        ctx.ui.say(format!("html: wrote {}", path.display()));
    }
    Ok(Exit::Ok)
}

fn table(ctx: &Ctx, report: &Report) {
    let rows = report
        .students
        .iter()
        .map(|s| {
            vec![
                s.email.clone(),
                s.name.clone(),
                report::money(s.spent),
                report::money(s.usage_now),
                report::limit_text(s.limit),
                report::percent(s.share),
                s.flag_words().join(", "),
            ]
        })
        .collect();
    ctx.ui.table(
        &[
            "Email",
            "Name",
            "Spent",
            "Usage now",
            "Limit",
            "Used %",
            "Flags",
        ],
        rows,
    );
    let t = &report.totals;
    ctx.ui.say(format!(
        "{} ({}): spent {} in the window, usage now {}; {} over 80%, {} at the limit, {} never used",
        super::toggle::plural(t.students, "student"),
        super::toggle::plural(t.keys, "key"),
        report::money(t.spent),
        report::money(t.usage_now),
        t.over_80,
        t.at_limit,
        t.never_used
    ));
    ctx.ui.say(report::window_line(&report.window));
}

/// Ask OpenRouter's analytics what the class's keys spent on each model in the window (the
/// class's whole history without `--since`/`--until`).
fn spend_by_model(
    ctx: &mut Ctx,
    store: &Store,
    keys: &[crate::store::KeyInfo],
    history: &[crate::store::UsagePoint],
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<ByModel> {
    // The query's times are whole seconds: "now" rounds up, so that what was spent this very
    // second counts.
    let end = until.unwrap_or_else(|| Utc::now() + chrono::Duration::seconds(1));
    let start = since.unwrap_or_else(|| {
        keys.iter()
            .filter_map(|k| k.created_at)
            .chain(history.iter().map(|p| p.at))
            .min()
            .unwrap_or(end - chrono::Duration::days(365))
            .min(end - chrono::Duration::minutes(1))
    });
    let queries = by_model::queries(keys, start, end);
    let client = ctx.client()?.in_workspace(store.meta("workspace")?);
    let mut answers = Vec::with_capacity(queries.len());
    for q in queries {
        let a = client.analytics(&q.body).map_err(|e| {
            anyhow::Error::new(e).context("asking OpenRouter's analytics for spend per model")
        })?;
        answers.push((q, a));
    }
    Ok(by_model::collect(keys, &answers, Utc::now()))
}

fn model_tables(ctx: &Ctx, m: &ByModel) {
    ctx.ui.say("\nSpend per model (OpenRouter's analytics):");
    if m.by_model.is_empty() {
        ctx.ui.say("no spend on any model in the window");
    } else {
        let rows = m
            .by_model
            .iter()
            .map(|r| {
                vec![
                    r.email.clone(),
                    r.name.clone(),
                    r.model.clone(),
                    report::money(r.spent),
                    r.requests.to_string(),
                ]
            })
            .collect();
        ctx.ui
            .table(&["Email", "Name", "Model", "Spent", "Requests"], rows);
        let rows = m
            .models
            .iter()
            .map(|t| {
                vec![
                    t.model.clone(),
                    report::money(t.spent),
                    t.requests.to_string(),
                    t.students.to_string(),
                ]
            })
            .collect();
        ctx.ui.say("Class totals per model:");
        ctx.ui
            .table(&["Model", "Spent", "Requests", "Students"], rows);
    }
    if let Some(t) = m.figures_until {
        ctx.ui.say(format!(
            "figures up to {} local (analytics may lag behind the keys' usage by some minutes)",
            report::local(t)
        ));
    }
}

/// `--since`/`--until`: a date-time, or a file whose name holds its run's local time
/// (`snapshot_YYYYMMDD_HHMMSS.csv`); a file with another name stands for its modification time.
pub fn resolve(ctx: &Ctx, option: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>> {
    let Some(value) = value else {
        return Ok(None);
    };
    if let Some(t) = report::parse_date_time(value, &Local) {
        return Ok(Some(t));
    }
    let path = Path::new(value);
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(input(format!(
                "{option} {value:?} is neither a date-time nor an existing file: {FORMS}"
            )));
        }
        Err(e) => {
            return Err(input(format!(
                "{option} {value:?}: cannot read it ({e}): {FORMS}"
            )));
        }
    };
    if !meta.is_file() {
        return Err(input(format!(
            "{option} {value:?} is a folder, not a snapshot file: {FORMS}"
        )));
    }
    let modified = meta.modified().ok().map(DateTime::<Utc>::from);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(t) = report::instant_from_file_name(&name, &Local, modified) {
        return Ok(Some(t));
    }
    let t = modified.ok_or_else(|| {
        input(format!(
            "{option} {value:?}: the name holds no time (snapshot_YYYYMMDD_HHMMSS.csv) and the file \
             has no modification time: {FORMS}"
        ))
    })?;
    ctx.ui.note(format!(
        "{option} {value}: the name holds no snapshot time, so its modification time counts: {}",
        report::local(t)
    ));
    Ok(Some(t))
}

fn shown(t: DateTime<Utc>) -> String {
    format!(
        "{} local, {}",
        report::local(t),
        t.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}
