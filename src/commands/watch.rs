//! `watch`: the class live, full screen, during the hour in front of it. Each tick lists the
//! account once (all pages, as `check`) and redraws; usage is recorded in keys.db at most once a
//! minute. A key press changes a limit or disables a key through the same journal and executor
//! as every other command, holding the class lock only for that change, so `check`, `update`
//! and the rest run beside the view.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::{DateTime, Local};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};
use ratatui::{DefaultTerminal, Frame};

use super::class::{self, Class, limit_text};
use crate::apply::{self, Op};
use crate::cli::WatchArgs;
use crate::context::Ctx;
use crate::domain::{Naming, Standing};
use crate::error::{Exit, input};
use crate::files::limits::LimitsFile;
use crate::files::roster::Roster;
use crate::files::{email_key, parse_money};
use crate::openrouter::{Client, Key, Patch};
use crate::reconcile;
use crate::store::{Store, run_time};

/// Usage rows are written at most this often.
const RECORD_EVERY: Duration = Duration::from_secs(60);
/// The window of the spend rate in the header.
const RATE_WINDOW: Duration = Duration::from_secs(300);
/// How long a change waits for another command's lock before it is dropped.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// One roster student on the screen.
#[derive(Debug, Clone)]
struct Student {
    email: String,
    name: String,
    key: Option<Key>,
    usage: f64,
    since_open: f64,
}

/// What a `d` asks before it acts.
#[derive(Debug, Clone)]
struct Question {
    email: String,
    disable: bool,
}

struct App {
    every: Duration,
    step: f64,
    sandbox: bool,
    tag: Option<String>,
    roster_path: std::path::PathBuf,
    db: std::path::PathBuf,
    limits: std::path::PathBuf,
    client: Option<Client>,
    students: Vec<Student>,
    /// Each key's usage when the view first saw it.
    baseline: HashMap<String, f64>,
    /// (when, the class's total usage), for the spend rate.
    samples: VecDeque<(Instant, f64)>,
    credits: Option<f64>,
    refreshed: Option<DateTime<Local>>,
    refresh_error: Option<String>,
    recorded: Option<Instant>,
    selected: Option<String>,
    question: Option<Question>,
    status: Option<(String, bool)>,
    /// Another command held the class lock when a change was tried (shown in the header).
    busy: Option<String>,
    next_tick: Instant,
}

pub fn run(ctx: &mut Ctx, args: WatchArgs) -> Result<Exit> {
    if ctx.ui.json {
        return Err(input(
            "`watch` is a full-screen view, it has no --json form: for a JSON document of the class use \
             `classkeys check --json`",
        ));
    }
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(input(
            "`classkeys watch` is a full-screen view and needs a terminal: in a script or a pipe use \
             `classkeys check` (or `classkeys check --json`)",
        ));
    }
    let step = match parse_money(&args.step) {
        Ok(Some(s)) if s > 0.0 => s,
        _ => {
            return Err(input(format!(
                "--step {:?}: give a number of dollars above 0, like 1 or 0.50",
                args.step
            )));
        }
    };
    // Everything is read once before the screen changes, so that a bad file is a plain error.
    Roster::read(&args.roster.roster)?;
    let store = Store::open_read(&args.db.db)?;
    class::check_account_kind(ctx, &store, &args.db.db)?;
    let naming = class::naming(&store)?;
    let client = ctx.client()?.in_workspace(store.meta("workspace")?);
    drop(store);
    crate::store::set_patience(LOCK_WAIT, true);

    let mut app = App {
        every: Duration::from_secs(args.every),
        step,
        sandbox: ctx.global.sandbox,
        tag: naming.tag.as_ref().map(|t| t.as_str().to_string()),
        roster_path: args.roster.roster.clone(),
        db: args.db.db.clone(),
        limits: args.limits.limits.clone(),
        client: Some(client),
        students: Vec::new(),
        baseline: HashMap::new(),
        samples: VecDeque::new(),
        credits: None,
        refreshed: None,
        refresh_error: None,
        recorded: None,
        selected: None,
        question: None,
        status: None,
        busy: None,
        next_tick: Instant::now(),
    };
    let mut terminal =
        ratatui::try_init().map_err(|e| anyhow::anyhow!("cannot take over the terminal: {e}"))?;
    // Whatever a command would print on stderr (a retry notice) would scribble on the screen:
    // the header says what matters instead.
    let muted = Muted::stderr();
    let outcome = app.run(ctx, &mut terminal, &naming);
    drop(muted);
    ratatui::restore();
    let _ = ratatui::crossterm::execute!(std::io::stdout(), ratatui::crossterm::cursor::Show);
    outcome
}

impl App {
    fn run(
        &mut self,
        ctx: &mut Ctx,
        terminal: &mut DefaultTerminal,
        naming: &Naming,
    ) -> Result<Exit> {
        loop {
            if Instant::now() >= self.next_tick {
                terminal.draw(|f| self.draw(f, true))?;
                self.refresh(naming);
                self.next_tick = Instant::now() + self.every;
            }
            terminal.draw(|f| self.draw(f, false))?;
            let wait = self.next_tick.saturating_duration_since(Instant::now());
            if !event::poll(wait.min(Duration::from_millis(500)))? {
                continue;
            }
            let Event::Key(key) = event::read()? else {
                continue;
            };
            if key.kind != KeyEventKind::Press {
                continue;
            }
            if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
                return Ok(Exit::Interrupted);
            }
            if let Some(q) = self.question.take() {
                match key.code {
                    KeyCode::Char('y') | KeyCode::Char('Y') => {
                        terminal.draw(|f| self.draw(f, true))?;
                        self.change(
                            ctx,
                            &q.email,
                            Patch {
                                disabled: Some(q.disable),
                                ..Default::default()
                            },
                        );
                    }
                    _ => self.say("nothing was changed", false),
                }
                continue;
            }
            match key.code {
                KeyCode::Char('q') | KeyCode::Esc => return Ok(Exit::Ok),
                KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
                KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
                KeyCode::Char('r') => self.next_tick = Instant::now(),
                KeyCode::Char('+') | KeyCode::Char('=') => self.bump(ctx, self.step),
                KeyCode::Char('-') | KeyCode::Char('_') => self.bump(ctx, -self.step),
                KeyCode::Char('d') => self.ask_disable(),
                _ => {}
            }
        }
    }

    /// One listing of the account, and (at most once a minute) the usage rows.
    fn refresh(&mut self, naming: &Naming) {
        let Some(client) = self.client.as_ref() else {
            return;
        };
        let loaded = (|| -> Result<(Roster, reconcile::Books, Vec<Key>)> {
            let roster = Roster::read(&self.roster_path)?;
            let store = Store::open_read(&self.db)?;
            let books = class::books(&store)?;
            let account = client.list_keys()?;
            Ok((roster, books, account))
        })();
        let (roster, books, account) = match loaded {
            Ok(l) => l,
            Err(e) => {
                self.refresh_error = Some(format!(
                    "refresh failed at {}: {}; trying again in {} s",
                    Local::now().format("%H:%M:%S"),
                    crate::ui::shown(&format!("{e:#}")),
                    self.every.as_secs()
                ));
                return;
            }
        };
        self.refresh_error = None;
        self.credits = client
            .credits()
            .ok()
            .map(|c| c.total_credits - c.total_usage);
        let view =
            reconcile::match_keys(&roster.students, &books, &account, &HashSet::new(), naming);
        let mut students = Vec::new();
        for e in view.entries.iter().filter(|e| !e.student.is_placeholder()) {
            // A fold from +0.0: the sum of no keys is -0.0, shown as "$-0.00".
            let usage: f64 = e.keys.iter().fold(0.0, |t, k| t + k.usage);
            let since: f64 = e.keys.iter().fold(0.0, |t, k| {
                t + k.usage - *self.baseline.entry(k.hash.clone()).or_insert(k.usage)
            });
            students.push(Student {
                email: e.student.email.clone(),
                name: e.student.name.clone(),
                key: e.key().cloned(),
                usage,
                since_open: since.max(0.0),
            });
        }
        drop(view);
        // Highest usage first; students without a key last.
        students.sort_by(|a, b| {
            b.key
                .is_some()
                .cmp(&a.key.is_some())
                .then(b.usage.total_cmp(&a.usage))
                .then(a.name.cmp(&b.name))
        });
        let total: f64 = students.iter().fold(0.0, |t, s| t + s.usage);
        let now = Instant::now();
        self.samples.push_back((now, total));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW + self.every)
        {
            self.samples.pop_front();
        }
        if self.selected.is_none() {
            self.selected = students.first().map(|s| s.email.clone());
        }
        self.students = students;
        self.refreshed = Some(Local::now());
        if self
            .recorded
            .is_none_or(|t| now.duration_since(t) >= RECORD_EVERY)
        {
            // Usage rows need the lock; another command holding it just means later.
            if self.record(roster, books, account, naming).is_ok() {
                self.recorded = Some(now);
            }
        }
    }

    /// The usage rows of this look at the account, as `check` records them.
    fn record(
        &mut self,
        roster: Roster,
        books: reconcile::Books,
        account: Vec<Key>,
        naming: &Naming,
    ) -> Result<()> {
        let store = Store::open(&self.db)?;
        let Some(client) = self.client.take() else {
            return Ok(());
        };
        let mut class = Class {
            roster,
            store,
            client,
            account,
            books,
            naming: naming.clone(),
            suspects: HashSet::new(),
            settled: Default::default(),
        };
        let result = class.record(run_time());
        self.client = Some(class.client);
        result
    }

    fn selected_index(&self) -> Option<usize> {
        let s = self.selected.as_ref()?;
        self.students.iter().position(|x| &x.email == s)
    }

    fn move_selection(&mut self, by: i64) {
        if self.students.is_empty() {
            return;
        }
        let i = self.selected_index().unwrap_or(0) as i64;
        let j = (i + by).clamp(0, self.students.len() as i64 - 1) as usize;
        self.selected = Some(self.students[j].email.clone());
    }

    fn selected_student(&self) -> Option<&Student> {
        self.selected_index().map(|i| &self.students[i])
    }

    fn say(&mut self, msg: impl Into<String>, bad: bool) {
        self.status = Some((msg.into(), bad));
    }

    fn bump(&mut self, ctx: &mut Ctx, by: f64) {
        let Some(s) = self.selected_student().cloned() else {
            return;
        };
        let Some(key) = &s.key else {
            return self.say(format!("{} has no key: nothing to change", s.email), true);
        };
        if key.limit.is_none() {
            return self.say(
                format!("{}'s key is unlimited: + and - leave it unlimited", s.email),
                true,
            );
        }
        // The same rule as `set-limit --add`: never below $0, to the cent.
        let Some(new) = super::set_limit::Change::Add(by).apply(key) else {
            return self.say(format!("{}'s limit is already $0.00", s.email), true);
        };
        self.change(
            ctx,
            &s.email,
            Patch {
                limit: Some(new),
                ..Default::default()
            },
        );
    }

    fn ask_disable(&mut self) {
        let Some(s) = self.selected_student().cloned() else {
            return;
        };
        match &s.key {
            None => self.say(format!("{} has no key", s.email), true),
            Some(k) => {
                self.question = Some(Question {
                    email: s.email.clone(),
                    disable: !k.disabled,
                })
            }
        }
    }

    /// Send one change through the journal, holding the class lock only meanwhile; limits.csv
    /// is rewritten to agree. The view shows it at the next refresh (made right away).
    fn change(&mut self, ctx: &mut Ctx, email: &str, patch: Patch) {
        let what = describe(&patch);
        self.busy = None;
        match self.apply(ctx, email, patch) {
            Ok(msg) => self.say(msg, false),
            Err(e) => {
                let busy = e
                    .chain()
                    .any(|c| c.downcast_ref::<crate::error::BusyError>().is_some());
                let why = if busy {
                    self.busy = Some(format!(
                        "another classkeys held keys.db at {}: the change was dropped",
                        Local::now().format("%H:%M:%S")
                    ));
                    "another classkeys is working on keys.db; the change was dropped, try again in a moment".to_string()
                } else {
                    crate::ui::shown(&format!("{e:#}"))
                };
                self.say(format!("{email}: {what} not done: {why}"), true);
            }
        }
        self.next_tick = Instant::now();
    }

    fn apply(&mut self, ctx: &mut Ctx, email: &str, patch: Patch) -> Result<String> {
        let what = describe(&patch);
        let store = class::open_store(&self.db)?;
        let roster = Roster::read(&self.roster_path)?;
        let mut limits = LimitsFile::read_or_empty(&self.limits)?;
        let mut class = Class::load(ctx, store, roster, &self.db, false)?;
        let view = class.view();
        let Some(entry) = view
            .entries
            .iter()
            .find(|e| email_key(&e.student.email) == email_key(email))
        else {
            return Ok(format!(
                "{email} is no longer on the roster: nothing was changed"
            ));
        };
        let Some(key) = entry.key().cloned() else {
            return Ok(format!("{email} has no key any more: nothing was changed"));
        };
        drop(view);
        let op = Op::Patch {
            email: email.to_string(),
            before: key,
            patch: patch.clone(),
        };
        let mut applied = apply::execute(ctx, &mut class, vec![op], "changing a key")?;
        if let Some((_, e)) = applied.failure.take() {
            return Err(anyhow::Error::new(e));
        }
        if patch.limit.is_some() {
            super::set_limit::keep_limit_targets(&mut limits, &applied);
        } else {
            super::toggle::keep_targets(&mut limits, &applied);
        }
        // No usage rows here: the refresh writes them, at most once a minute.
        if limits.path.exists() {
            let view = class.view();
            limits.rewrite(view.with_keys())?;
        }
        Ok(format!("{email}: {what}"))
    }

    /// Dollars a minute over the last five minutes of refreshes.
    fn rate(&self) -> Option<f64> {
        spend_rate(&self.samples)
    }

    fn draw(&self, f: &mut Frame, refreshing: bool) {
        let [head, table, foot] = Layout::vertical([
            Constraint::Length(3),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(f.area());

        let total: f64 = self.students.iter().fold(0.0, |t, s| t + s.usage);
        let standing = |w: Standing| {
            self.students
                .iter()
                .filter(|s| s.key.as_ref().is_some_and(|k| k.standing() == w))
                .count()
        };
        let mut title = vec![Span::styled(
            "classkeys watch",
            Style::default().add_modifier(Modifier::BOLD),
        )];
        if let Some(t) = &self.tag {
            title.push(Span::raw(format!(" · {t}")));
        }
        if self.sandbox {
            title.push(Span::styled(
                " · SANDBOX",
                Style::default()
                    .fg(Color::Magenta)
                    .add_modifier(Modifier::BOLD),
            ));
        }
        title.push(Span::raw(match (&self.refreshed, refreshing) {
            (_, true) => "   refreshing…".to_string(),
            (Some(t), _) => format!(
                "   refreshed {} (every {} s)",
                t.format("%H:%M:%S"),
                self.every.as_secs()
            ),
            (None, _) => String::new(),
        }));
        let figures = format!(
            "total {} · {} · credits left {} · {}, {} at the limit, {} at 80%+",
            money(total),
            self.rate().map_or_else(
                || "$–/min (after a minute)".to_string(),
                |r| format!("{}/min over 5 min", money(r))
            ),
            self.credits.map_or_else(|| "?".to_string(), money),
            super::toggle::plural(self.students.len(), "student"),
            standing(Standing::AtLimit),
            standing(Standing::Near)
        );
        let third = match (&self.refresh_error, &self.busy) {
            (Some(e), _) | (None, Some(e)) => {
                Line::styled(e.clone(), Style::default().fg(Color::Red))
            }
            (None, None) => Line::raw(""),
        };
        f.render_widget(
            Paragraph::new(vec![Line::from(title), Line::raw(figures), third]),
            head,
        );

        let rows: Vec<Row> = self
            .students
            .iter()
            .map(|s| {
                let (limit, used, style) = match &s.key {
                    None => (
                        "no key".to_string(),
                        "-".to_string(),
                        Style::default().fg(Color::DarkGray),
                    ),
                    Some(k) => {
                        let style = match k.standing() {
                            Standing::AtLimit => Style::default().fg(Color::Red),
                            Standing::Near => Style::default().fg(Color::Yellow),
                            Standing::Fine => Style::default(),
                        };
                        let mut limit = limit_text(k.limit);
                        if k.disabled {
                            limit.push_str(" (disabled)");
                        }
                        (
                            limit,
                            k.used_percent()
                                .map_or_else(|| "-".into(), |p| format!("{p}%")),
                            style,
                        )
                    }
                };
                Row::new(vec![
                    Cell::from(s.email.clone()),
                    Cell::from(s.name.clone()),
                    Cell::from(money(s.usage)),
                    Cell::from(limit),
                    Cell::from(used),
                    Cell::from(money(s.since_open)),
                ])
                .style(style)
            })
            .collect();
        let widths = [
            Constraint::Fill(3),
            Constraint::Fill(2),
            Constraint::Length(9),
            Constraint::Length(20),
            Constraint::Length(7),
            Constraint::Length(11),
        ];
        let header = Row::new(["Email", "Name", "Usage", "Limit", "Used %", "Since open"])
            .style(Style::default().add_modifier(Modifier::BOLD));
        let mut state = TableState::default().with_selected(self.selected_index());
        f.render_stateful_widget(
            Table::new(rows, widths)
                .header(header)
                .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
                .highlight_symbol("> "),
            table,
            &mut state,
        );

        let footer = if let Some(q) = &self.question {
            Line::styled(
                format!(
                    "{} {}'s key? y/n",
                    if q.disable { "Disable" } else { "Enable" },
                    q.email
                ),
                Style::default()
                    .fg(Color::Yellow)
                    .add_modifier(Modifier::BOLD),
            )
        } else if let Some((msg, bad)) = &self.status {
            Line::styled(
                msg.clone(),
                if *bad {
                    Style::default().fg(Color::Red)
                } else {
                    Style::default().fg(Color::Green)
                },
            )
        } else {
            Line::raw(format!(
                "↑/↓ select   +/- {} limit   d disable/enable   r refresh   q quit",
                money(self.step)
            ))
        };
        f.render_widget(Paragraph::new(footer), foot);
    }
}

/// Dollars a minute over the last five minutes of (time, class total) samples, oldest first;
/// `None` before a minute of history (it says little about a rate).
fn spend_rate(samples: &VecDeque<(Instant, f64)>) -> Option<f64> {
    let (t1, last) = samples.back()?;
    let (t0, first) = samples
        .iter()
        .find(|(t, _)| t1.duration_since(*t) <= RATE_WINDOW)?;
    let minutes = t1.duration_since(*t0).as_secs_f64() / 60.0;
    (minutes >= 1.0).then(|| ((last - first) / minutes).max(0.0))
}

fn describe(patch: &Patch) -> String {
    match (patch.limit, patch.disabled) {
        (Some(l), _) => format!("limit set to {}", limit_text(l)),
        (_, Some(true)) => "key disabled".into(),
        (_, Some(false)) => "key enabled".into(),
        _ => "nothing".into(),
    }
}

fn money(x: f64) -> String {
    crate::report::money(x)
}

/// stderr sent to /dev/null while the view owns the screen, and back after.
struct Muted {
    saved: Option<i32>,
}

impl Muted {
    fn stderr() -> Muted {
        // SAFETY: plain descriptor calls; the saved descriptor is restored in `drop`.
        unsafe {
            let saved = libc::dup(2);
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            if saved < 0 || null < 0 {
                return Muted { saved: None };
            }
            libc::dup2(null, 2);
            libc::close(null);
            Muted { saved: Some(saved) }
        }
    }
}

impl Drop for Muted {
    fn drop(&mut self) {
        if let Some(saved) = self.saved {
            // SAFETY: puts back the descriptor `stderr()` saved.
            unsafe {
                libc::dup2(saved, 2);
                libc::close(saved);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spend_rate_is_over_the_last_five_minutes_once_a_minute_is_seen() {
        let t = Instant::now();
        let at = |secs: u64, total: f64| (t + Duration::from_secs(secs), total);
        let mut samples = VecDeque::from([at(0, 1.0), at(30, 1.5)]);
        assert_eq!(spend_rate(&samples), None, "half a minute says nothing");
        samples.push_back(at(120, 3.0));
        assert_eq!(spend_rate(&samples), Some(1.0), "$2 in 2 minutes");
        // Older than five minutes no longer counts: from 120 s ($3) to 420 s ($6).
        samples.push_back(at(420, 6.0));
        assert_eq!(spend_rate(&samples), Some(0.6));
        // Usage never goes down into a negative rate.
        samples.push_back(at(480, 0.0));
        assert_eq!(spend_rate(&samples), Some(0.0));
    }
}
