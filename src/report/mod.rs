//! Usage reports from keys.db's history: what each student spent between two moments.
//! Pure computation only; `commands/report` reads keys.db, prints and writes files, and
//! `html` turns a [`Report`] into one self-contained page.
//!
//! Why it works the way it does:
//!
//! * **Usage is cumulative per key.** OpenRouter reports a key's total spend since it was made,
//!   and every run that looks at the account (check, provision, update, rotate, …) stores one
//!   observation per key, stamped with the run's time to the second. Spend in a window is
//!   therefore a difference of two observations, never a sum of rows.
//! * **End of the window.** A key's usage at the end is its last observation at or before
//!   `until` (without `until`: its last observation). A key never observed by then spent nothing.
//! * **Baseline.** Its last observation at or before `since`. A check at exactly `since` is the
//!   baseline and one at exactly `until` is the end, so `--since A --until B` with two snapshots
//!   counts what was spent after A's check and up to B's. When the key has no observation by
//!   `since`: the baseline is 0 if the key was made at or after `since` (or there is no `since`)
//!   — it spent everything inside the window; otherwise (made earlier, or its creation time is
//!   unknown, as for some databases of the Python tool) it is the key's first observation inside
//!   the window, because what it spent before that first look cannot be placed in time.
//! * **Spent** = end − baseline, never negative (a usage that went down is not a refund).
//! * **A student is everything under their email** (compared without case): a rotated student
//!   has two keys, and both spends count. Deleted keys stay in the history and count too; they
//!   are marked.
//! * **Usage now** is each key's latest observation, whatever the window.
//! * **Limit and share** are the student's budget: the limits of the keys that can still spend
//!   (those not deleted, or all of them when every key is deleted) plus what the deleted keys
//!   spent. A rotation gives the new key what the old one had left, so a student rotated from a
//!   $2.00 key that spent $1.50 has a $0.50 key and still a $2.00 budget. One unlimited key makes
//!   the student unlimited (no share). Share = usage now (every key) / budget.
//! * **A zero limit is fully used**: share 100% and `at_limit`, whatever the usage, since the key
//!   can spend nothing (dividing by zero would say nothing useful).
//! * **Flags**: `at_limit` when usage ≥ limit; `over_80` when the share is at least 80% but the
//!   student is not at the limit; `never_used` when usage now is 0 on every key.
//! * Times are UTC inside; people see local time. A snapshot file's name is the local time of
//!   the run that wrote it, so it converts back to the run's exact instant on the same machine
//!   (or one in the same time zone); two runs in one second share one instant.

pub mod by_model;
pub mod html;

use std::collections::BTreeMap;

use chrono::{DateTime, Local, LocalResult, NaiveDateTime, TimeZone, Utc};
use serde::Serialize;

use crate::files::email_key;
use crate::store::{KeyInfo, UsagePoint};

/// Amounts closer than this are equal: OpenRouter reports usage to well under a millionth of a dollar.
const EPS: f64 = 1e-9;
/// The share from which a student is flagged as close to the limit.
pub const NEAR_LIMIT: f64 = crate::domain::NEAR_LIMIT_PERCENT as f64 / 100.0;

/// The two moments of a report. `None`: the beginning of the history, or its end (now).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl Window {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u)
    }
}

/// One key's figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyFigures {
    pub hash: String,
    pub key_name: String,
    /// Spent inside the window.
    pub spent: f64,
    /// Usage at the end of the window (0 when the key was not yet observed).
    pub usage_at_end: f64,
    /// Latest observation overall.
    pub usage_now: f64,
    pub limit: Option<f64>,
    pub disabled: bool,
    pub deleted: bool,
    /// How many observations keys.db holds for this key.
    pub observations: usize,
}

/// One student: the sum over their keys, and the flags.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StudentReport {
    pub email: String,
    pub name: String,
    pub spent: f64,
    pub usage_at_end: f64,
    pub usage_now: f64,
    /// `None`: unlimited.
    pub limit: Option<f64>,
    /// Usage now of the keys that can still spend / their limit; `None` when unlimited.
    pub share: Option<f64>,
    pub over_80: bool,
    pub at_limit: bool,
    pub never_used: bool,
    /// Every key that can still spend is disabled.
    pub disabled: bool,
    /// How many of the student's keys are deleted.
    pub deleted_keys: usize,
    pub keys: Vec<KeyFigures>,
}

impl StudentReport {
    /// The flags as people read them, in a fixed order.
    pub fn flag_words(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.at_limit {
            out.push("at limit");
        }
        if self.over_80 {
            out.push("over 80%");
        }
        if self.never_used {
            out.push("never used");
        }
        if self.disabled {
            out.push("disabled");
        }
        if self.deleted_keys > 0 {
            out.push(if self.deleted_keys == self.keys.len() {
                "deleted"
            } else {
                "deleted key"
            });
        }
        out
    }
}

/// The class as a whole.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Totals {
    pub students: usize,
    pub keys: usize,
    pub spent: f64,
    pub usage_now: f64,
    /// Students flagged `over_80`, `at_limit`, `never_used`.
    pub over_80: usize,
    pub at_limit: usize,
    pub never_used: usize,
}

/// The window as the report shows it: the moments asked for and the checks that fall in it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowInfo {
    /// `None`: from the beginning of the history.
    pub since: Option<DateTime<Utc>>,
    /// `None`: up to the latest check.
    pub until: Option<DateTime<Utc>>,
    /// Distinct check times with since ≤ t ≤ until.
    pub checks: usize,
    pub first_check: Option<DateTime<Utc>>,
    pub last_check: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub window: WindowInfo,
    pub students: Vec<StudentReport>,
    pub totals: Totals,
}

/// The report of `keys` over `history` (any order) for `window`.
pub fn build(keys: &[KeyInfo], history: &[UsagePoint], window: Window) -> Report {
    let mut by_key: BTreeMap<&str, Vec<&UsagePoint>> = BTreeMap::new();
    for p in history {
        by_key.entry(p.hash.as_str()).or_default().push(p);
    }
    // Stable: observations of one instant keep keys.db's order, the later row winning.
    for points in by_key.values_mut() {
        points.sort_by_key(|p| p.at);
    }

    let mut groups: BTreeMap<String, Vec<(&KeyInfo, KeyFigures)>> = BTreeMap::new();
    for info in keys {
        let points = by_key
            .get(info.hash.as_str())
            .map_or(&[][..], Vec::as_slice);
        // A key keys.db holds without an email is nobody's: it stands alone.
        let group = match email_key(&info.email) {
            e if e.is_empty() => format!("\0{}", info.hash),
            e => e,
        };
        groups
            .entry(group)
            .or_default()
            .push((info, key_figures(info, points, window)));
    }

    let mut students: Vec<StudentReport> = groups.into_values().map(student).collect();
    students
        .sort_by(|a, b| (a.name.to_lowercase(), &a.email).cmp(&(b.name.to_lowercase(), &b.email)));

    let mut totals = Totals {
        students: students.len(),
        ..Totals::default()
    };
    for s in &students {
        totals.keys += s.keys.len();
        totals.spent += s.spent;
        totals.usage_now += s.usage_now;
        totals.over_80 += usize::from(s.over_80);
        totals.at_limit += usize::from(s.at_limit);
        totals.never_used += usize::from(s.never_used);
    }
    totals.spent = tidy(totals.spent);
    totals.usage_now = tidy(totals.usage_now);

    let checks: Vec<DateTime<Utc>> = check_times(history)
        .into_iter()
        .filter(|t| window.contains(*t))
        .collect();
    Report {
        window: WindowInfo {
            since: window.since,
            until: window.until,
            checks: checks.len(),
            first_check: checks.first().copied(),
            last_check: checks.last().copied(),
        },
        students,
        totals,
    }
}

fn key_figures(info: &KeyInfo, points: &[&UsagePoint], window: Window) -> KeyFigures {
    let last_by = |t: DateTime<Utc>| points.iter().rev().find(|p| p.at <= t).map(|p| p.usage);
    let end = match window.until {
        Some(u) => last_by(u),
        None => points.last().map(|p| p.usage),
    };
    let spent = match end {
        None => 0.0,
        Some(end) => {
            let baseline = match window.since {
                None => 0.0,
                Some(s) => match last_by(s) {
                    Some(b) => b,
                    None if info.created_at.is_some_and(|c| c >= s) => 0.0,
                    // The first look inside the window; there is one, since `end` exists.
                    None => points.iter().find(|p| p.at > s).map_or(end, |p| p.usage),
                },
            };
            (end - baseline).max(0.0)
        }
    };
    KeyFigures {
        hash: info.hash.clone(),
        key_name: info.key_name.clone(),
        spent: tidy(spent),
        usage_at_end: end.unwrap_or(0.0),
        usage_now: points.last().map_or(0.0, |p| p.usage),
        limit: info.limit,
        disabled: info.disabled,
        deleted: info.deleted,
        observations: points.len(),
    }
}

fn student(keys: Vec<(&KeyInfo, KeyFigures)>) -> StudentReport {
    let email = keys
        .first()
        .map(|(i, _)| i.email.clone())
        .unwrap_or_default();
    let name = keys
        .iter()
        .map(|(i, _)| i.name.trim())
        .find(|n| !n.is_empty())
        .or_else(|| keys.first().map(|(i, _)| i.key_name.as_str()))
        .unwrap_or("")
        .to_string();
    let keys: Vec<KeyFigures> = keys.into_iter().map(|(_, k)| k).collect();
    let live: Vec<&KeyFigures> = keys.iter().filter(|k| !k.deleted).collect();
    let counted: Vec<&KeyFigures> = if live.is_empty() {
        keys.iter().collect()
    } else {
        live
    };
    let spent_elsewhere: f64 = if counted.len() < keys.len() {
        keys.iter().filter(|k| k.deleted).map(|k| k.usage_now).sum()
    } else {
        0.0
    };
    let limit = counted
        .iter()
        .map(|k| k.limit)
        .sum::<Option<f64>>()
        .map(|l| tidy(l + spent_elsewhere));
    let usage_now = tidy(keys.iter().map(|k| k.usage_now).sum());
    let share = limit.map(|l| if l <= EPS { 1.0 } else { tidy(usage_now / l) });
    let at_limit = limit.is_some_and(|l| usage_now >= l - EPS);
    StudentReport {
        email,
        name,
        spent: tidy(keys.iter().map(|k| k.spent).sum()),
        usage_at_end: tidy(keys.iter().map(|k| k.usage_at_end).sum()),
        usage_now,
        limit,
        share,
        over_80: !at_limit && share.is_some_and(|s| s >= NEAR_LIMIT - EPS),
        at_limit,
        never_used: usage_now <= EPS,
        disabled: !counted.is_empty() && counted.iter().all(|k| k.disabled),
        deleted_keys: keys.iter().filter(|k| k.deleted).count(),
        keys,
    }
}

/// Every distinct check time, oldest first.
pub fn check_times(history: &[UsagePoint]) -> Vec<DateTime<Utc>> {
    let mut times: Vec<DateTime<Utc>> = history.iter().map(|p| p.at).collect();
    times.sort();
    times.dedup();
    times
}

/// The class's total usage at each check time: the sum over keys of their latest usage then.
pub fn timeline(history: &[UsagePoint]) -> Vec<(DateTime<Utc>, f64)> {
    let mut points: Vec<&UsagePoint> = history.iter().collect();
    points.sort_by_key(|p| p.at);
    let mut latest: BTreeMap<&str, f64> = BTreeMap::new();
    let mut total = 0.0;
    let mut out: Vec<(DateTime<Utc>, f64)> = Vec::new();
    for p in points {
        let before = latest.insert(p.hash.as_str(), p.usage).unwrap_or(0.0);
        total += p.usage - before;
        match out.last_mut() {
            Some((t, v)) if *t == p.at => *v = tidy(total),
            _ => out.push((p.at, tidy(total))),
        }
    }
    out
}

/// The instant a `snapshot_YYYYMMDD_HHMMSS[-N].csv` name stands for, read in `tz` (the zone of the
/// machine that wrote it). Any `STEM_YYYYMMDD_HHMMSS[-N].EXT` name works, so `api_keys_*.csv`
/// files do too. When a clock change makes the local time happen twice, the one closer to
/// `hint` (the file's modification time) wins. `None`: the name holds no such time.
pub fn instant_from_file_name<Tz: TimeZone>(
    name: &str,
    tz: &Tz,
    hint: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let naive = naive_from_file_name(name)?;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => {
            let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
            Some(match hint {
                Some(h) if (b - h).abs() < (a - h).abs() => b,
                _ => a,
            })
        }
        LocalResult::None => None,
    }
}

fn naive_from_file_name(name: &str) -> Option<NaiveDateTime> {
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    // Drop the `-2`, `-3` … that keeps two runs of one second apart.
    let stem = match stem.rsplit_once('-') {
        Some((s, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => s,
        _ => stem,
    };
    let tail = stem.get(stem.len().checked_sub(16)?..)?;
    let digits = tail.strip_prefix('_')?;
    NaiveDateTime::parse_from_str(digits, "%Y%m%d_%H%M%S").ok()
}

/// A `--since`/`--until` value that is a date-time: RFC 3339 with `Z` or an offset, a local
/// date-time without one (`2026-11-27 09:00`, `2026-11-27T09:00:00`), or a plain date (the start
/// of that local day). `None`: not a date-time.
pub fn parse_date_time<Tz: TimeZone>(s: &str, tz: &Tz) -> Option<DateTime<Utc>> {
    let t = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .and_then(|n| tz.from_local_datetime(&n).earliest())
            .map(|t| t.with_timezone(&Utc));
    }
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
    .and_then(|n| tz.from_local_datetime(&n).earliest())
    .map(|t| t.with_timezone(&Utc))
}

/// Sums and differences of f64 dollars without the float noise (`0.30000000000000004`).
pub fn tidy(x: f64) -> f64 {
    let r = (x * 1e9).round() / 1e9;
    if r == 0.0 { 0.0 } else { r }
}

/// Dollars for people: `$1.25`; an amount above zero but under a cent is `<$0.01`, not `$0.00`.
pub fn money(x: f64) -> String {
    if x > EPS && x < 0.005 {
        "<$0.01".into()
    } else {
        format!("${x:.2}")
    }
}

pub fn limit_text(limit: Option<f64>) -> String {
    limit.map_or_else(|| "unlimited".into(), money)
}

/// `85%`; no share (unlimited) is `-`.
pub fn percent(share: Option<f64>) -> String {
    match share {
        None => "-".into(),
        Some(s) if s > 0.0 && s < 0.005 => "<1%".into(),
        // Halves round up, as from exact cents: $0.85 of $2.00 is 43%, not 42%.
        Some(s) => format!("{}%", (s * 100.0 + 1e-6).round() as i64),
    }
}

/// A local time as people read it: `2026-11-27 09:00:00`.
pub fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// `window: 2026-11-27 09:00:00 → 12:00:00 (local), 3 checks`: the end drops its date when it
/// shares the start's. Without `--since`/`--until` the line shows the first and last checks.
pub fn window_line(w: &WindowInfo) -> String {
    let span = |a: DateTime<Utc>, b: String| {
        let (a, full_b) = (local(a), b);
        let b = match (a.get(..10), full_b.get(..10)) {
            (Some(x), Some(y)) if x == y => full_b.get(11..).unwrap_or_default().to_string(),
            _ => full_b,
        };
        format!("{a} → {b}")
    };
    let checks = match w.checks {
        1 => "1 check".to_string(),
        n => format!("{n} checks"),
    };
    let times = match (w.since, w.until) {
        (None, None) => match (w.first_check, w.last_check) {
            (Some(f), Some(l)) => format!("whole history, {}", span(f, local(l))),
            _ => "whole history".to_string(),
        },
        (Some(s), Some(u)) => span(s, local(u)),
        (Some(s), None) => span(s, "now".into()),
        (None, Some(u)) => format!("beginning → {}", local(u)),
    };
    format!("window: {times} (local), {checks}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, FixedOffset};

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, h, m, 0).unwrap()
    }

    fn key(hash: &str, email: &str, limit: Option<f64>) -> KeyInfo {
        KeyInfo {
            hash: hash.into(),
            email: email.into(),
            name: format!("Name of {email}"),
            key_name: format!("20261127_{email}"),
            limit,
            disabled: false,
            deleted: false,
            created_at: Some(t(8, 0)),
        }
    }

    fn obs(hash: &str, at: DateTime<Utc>, usage: f64) -> UsagePoint {
        UsagePoint {
            hash: hash.into(),
            usage,
            at,
        }
    }

    fn window(since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Window {
        Window { since, until }
    }

    fn one<'a>(r: &'a Report, email: &str) -> &'a StudentReport {
        r.students
            .iter()
            .find(|s| s.email == email)
            .unwrap_or_else(|| panic!("{email} not in the report"))
    }

    /// Ada spends 1.25 between the 09:00 and 10:00 checks, nothing between 10:00 and 11:00.
    fn ada() -> (Vec<KeyInfo>, Vec<UsagePoint>) {
        (
            vec![key("a", "ada@uni.edu", Some(2.0))],
            vec![
                obs("a", t(9, 0), 0.0),
                obs("a", t(10, 0), 1.25),
                obs("a", t(11, 0), 1.25),
            ],
        )
    }

    #[test]
    fn a_spend_between_two_checks_is_in_the_window_that_holds_it_only() {
        let (keys, history) = ada();
        let spent = |since, until| build(&keys, &history, window(since, until)).students[0].spent;
        assert_eq!(spent(Some(t(9, 0)), Some(t(10, 0))), 1.25);
        assert_eq!(spent(Some(t(9, 0)), Some(t(11, 0))), 1.25);
        assert_eq!(
            spent(Some(t(10, 0)), Some(t(11, 0))),
            0.0,
            "after the spend"
        );
        assert_eq!(spent(None, Some(t(9, 0))), 0.0, "ends before the spend");
        assert_eq!(spent(Some(t(9, 30)), Some(t(10, 30))), 1.25);
        assert_eq!(spent(Some(t(9, 0)), Some(t(9, 59))), 0.0);
        assert_eq!(spent(None, None), 1.25, "the whole history");
        assert_eq!(
            spent(Some(t(10, 0)), Some(t(10, 0))),
            0.0,
            "an empty window"
        );
    }

    #[test]
    fn baseline_is_zero_for_a_key_made_inside_the_window() {
        let mut k = key("b", "bo@uni.edu", Some(2.0));
        k.created_at = Some(t(9, 30));
        let history = [obs("b", t(10, 0), 0.5), obs("b", t(11, 0), 0.75)];
        let r = build(&[k.clone()], &history, window(Some(t(9, 0)), None));
        assert_eq!(r.students[0].spent, 0.75);
        // Made exactly at `since` counts as inside.
        k.created_at = Some(t(9, 0));
        let r = build(&[k], &history, window(Some(t(9, 0)), Some(t(10, 0))));
        assert_eq!(r.students[0].spent, 0.5);
    }

    #[test]
    fn baseline_is_the_first_look_for_an_older_key_never_seen_before_since() {
        // Made long ago (or unknown), first checked inside the window: what it had then is not
        // this window's spend.
        for created in [Some(t(1, 0)), None] {
            let mut k = key("c", "cy@uni.edu", None);
            k.created_at = created;
            let history = [obs("c", t(10, 0), 3.0), obs("c", t(11, 0), 3.5)];
            let r = build(&[k], &history, window(Some(t(9, 0)), Some(t(11, 0))));
            assert_eq!(r.students[0].spent, 0.5, "{created:?}");
            // Without `since` the baseline is 0: the whole usage is the history's spend.
            let k = key("c", "cy@uni.edu", None);
            let r = build(&[k], &history, window(None, None));
            assert_eq!(r.students[0].spent, 3.5);
        }
    }

    #[test]
    fn a_key_not_yet_seen_at_the_end_spent_nothing() {
        let mut k = key("d", "di@uni.edu", Some(1.0));
        k.created_at = Some(t(12, 0));
        let history = [obs("d", t(12, 0), 0.0), obs("d", t(13, 0), 0.4)];
        let r = build(&[k], &history, window(Some(t(9, 0)), Some(t(11, 0))));
        let s = &r.students[0];
        assert_eq!((s.spent, s.usage_at_end, s.usage_now), (0.0, 0.0, 0.4));
    }

    #[test]
    fn spent_is_never_negative() {
        let k = key("e", "ed@uni.edu", Some(2.0));
        let history = [obs("e", t(9, 0), 1.0), obs("e", t(10, 0), 0.2)];
        let r = build(&[k], &history, window(Some(t(9, 0)), None));
        assert_eq!(r.students[0].spent, 0.0);
    }

    #[test]
    fn percentages_round_halves_up() {
        assert_eq!(percent(Some(0.85 / 2.0)), "43%");
        assert_eq!(percent(Some(0.76)), "76%");
        assert_eq!(percent(Some(0.004)), "<1%");
        assert_eq!(percent(None), "-");
    }

    #[test]
    fn a_plain_date_is_the_start_of_that_local_day() {
        let tz = chrono::FixedOffset::east_opt(3600).unwrap();
        let t = parse_date_time("2026-12-01", &tz).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-30T23:00:00+00:00");
    }

    #[test]
    fn rotated_student_sums_both_keys_and_the_deleted_one_does_not_eat_the_limit() {
        let mut old = key("old", "ROT@uni.edu", Some(2.0));
        old.deleted = true;
        // Rotated with what the old key had left.
        let mut new = key("new", "rot@uni.edu", Some(0.5));
        new.created_at = Some(t(10, 0));
        let history = [
            obs("old", t(9, 0), 1.0),
            obs("old", t(10, 0), 1.5),
            obs("new", t(10, 0), 0.0),
            obs("new", t(11, 0), 0.2),
        ];
        let r = build(&[old, new], &history, window(Some(t(9, 0)), None));
        assert_eq!(
            r.students.len(),
            1,
            "one student, emails compared without case"
        );
        let s = &r.students[0];
        assert_eq!(s.keys.len(), 2);
        assert_eq!(s.spent, 0.7, "0.5 on the old key, 0.2 on the new one");
        assert_eq!(s.usage_now, 1.7);
        assert_eq!(
            s.limit,
            Some(2.0),
            "the budget: the new key's 0.5 and the old key's 1.5"
        );
        assert_eq!(
            s.share,
            Some(0.85),
            "the share agrees with usage now and the budget"
        );
        assert!(!s.at_limit && s.over_80 && !s.never_used);
        assert_eq!(s.deleted_keys, 1);
        assert_eq!(s.flag_words(), vec!["over 80%", "deleted key"]);
        assert_eq!(r.totals.keys, 2);
    }

    #[test]
    fn deleted_keys_still_count_in_history() {
        let mut k = key("g", "gone@uni.edu", Some(2.0));
        k.deleted = true;
        let history = [obs("g", t(9, 0), 0.5), obs("g", t(10, 0), 1.7)];
        let r = build(&[k], &history, window(Some(t(9, 0)), Some(t(10, 0))));
        let s = &r.students[0];
        assert_eq!(s.spent, 1.2);
        assert_eq!(
            s.limit,
            Some(2.0),
            "every key deleted: their limits still show"
        );
        assert!(s.over_80);
        assert_eq!(s.flag_words(), vec!["over 80%", "deleted"]);
        assert_eq!(r.totals.spent, 1.2);
    }

    #[test]
    fn limits_unlimited_and_zero() {
        let keys = [
            key("u", "u@uni.edu", None),
            key("z", "z@uni.edu", Some(0.0)),
            key("z0", "z0@uni.edu", Some(0.0)),
        ];
        let history = [obs("u", t(9, 0), 50.0), obs("z", t(9, 0), 0.3)];
        let r = build(&keys, &history, window(None, None));
        let u = one(&r, "u@uni.edu");
        assert_eq!((u.limit, u.share), (None, None));
        assert!(!u.at_limit && !u.over_80);
        let z = one(&r, "z@uni.edu");
        assert_eq!((z.limit, z.share), (Some(0.0), Some(1.0)));
        assert!(z.at_limit && !z.over_80 && !z.never_used);
        let z0 = one(&r, "z0@uni.edu");
        assert_eq!(z0.share, Some(1.0), "a zero limit is fully used");
        assert!(z0.at_limit && z0.never_used);
        assert_eq!(z0.keys[0].observations, 0);
        // One unlimited key makes the student unlimited.
        let two = [
            key("a", "x@uni.edu", Some(2.0)),
            key("b", "x@uni.edu", None),
        ];
        let r = build(&two, &[], window(None, None));
        assert_eq!(r.students[0].limit, None);
    }

    #[test]
    fn flags_at_their_edges() {
        let flags = |usage: f64| {
            let r = build(
                &[key("f", "f@uni.edu", Some(2.0))],
                &[obs("f", t(9, 0), usage)],
                window(None, None),
            );
            let s = r.students[0].clone();
            (s.over_80, s.at_limit, s.never_used)
        };
        assert_eq!(flags(0.0), (false, false, true));
        assert_eq!(flags(1.59), (false, false, false));
        assert_eq!(flags(1.6), (true, false, false), "80% exactly");
        assert_eq!(flags(1.9999), (true, false, false));
        assert_eq!(
            flags(2.0),
            (false, true, false),
            "at the limit is not over 80%"
        );
        assert_eq!(flags(2.5), (false, true, false));
    }

    #[test]
    fn totals_count_students_per_flag() {
        let keys = [
            key("a", "a@uni.edu", Some(1.0)),
            key("b", "b@uni.edu", Some(1.0)),
            key("c", "c@uni.edu", Some(1.0)),
            key("d", "d@uni.edu", Some(1.0)),
        ];
        let history = [
            obs("a", t(9, 0), 0.1),
            obs("b", t(9, 0), 0.2),
            obs("c", t(9, 0), 0.0),
            obs("a", t(10, 0), 0.9),
            obs("b", t(10, 0), 1.0),
            obs("c", t(10, 0), 0.0),
        ];
        let r = build(&keys, &history, window(Some(t(9, 0)), None));
        let tot = &r.totals;
        assert_eq!((tot.students, tot.keys), (4, 4));
        assert_eq!((tot.spent, tot.usage_now), (1.6, 1.9));
        assert_eq!((tot.over_80, tot.at_limit, tot.never_used), (1, 1, 2));
        assert_eq!(r.window.checks, 2);
        assert_eq!(r.window.first_check, Some(t(9, 0)));
    }

    #[test]
    fn two_rows_at_one_instant_the_later_wins() {
        // `rotate` records the class twice with one run time.
        let k = key("a", "a@uni.edu", Some(2.0));
        let history = [obs("a", t(9, 0), 0.5), obs("a", t(9, 0), 0.7)];
        let r = build(&[k], &history, window(None, None));
        assert_eq!(r.students[0].usage_now, 0.7);
        assert_eq!(timeline(&history), vec![(t(9, 0), 0.7)]);
    }

    #[test]
    fn students_sorted_by_name_and_named_from_the_student_table() {
        let mut b = key("b", "b@uni.edu", None);
        b.name = "bea".into();
        let mut a = key("a", "a@uni.edu", None);
        a.name = "Zed".into();
        // No name in the student table: the key's name says who it is.
        let mut n = key("n", "n@uni.edu", None);
        n.name = String::new();
        n.key_name = "20261127_Nia".into();
        // Keys without an email are not one student.
        let orphans = [key("o1", "", None), key("o2", " ", None)];
        let r = build(
            &[a, b, n, orphans[0].clone(), orphans[1].clone()],
            &[],
            window(None, None),
        );
        let names: Vec<&str> = r.students.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["20261127_Nia", "bea", "Name of", "Name of", "Zed"]
        );
    }

    #[test]
    fn timeline_sums_each_keys_latest_usage() {
        let history = [
            obs("a", t(9, 0), 0.1),
            obs("b", t(9, 0), 0.2),
            obs("a", t(10, 0), 0.5),
            obs("c", t(10, 30), 1.0),
            obs("b", t(11, 0), 0.2),
        ];
        assert_eq!(
            timeline(&history),
            vec![
                (t(9, 0), 0.3),
                (t(10, 0), 0.7),
                (t(10, 30), 1.7),
                (t(11, 0), 1.7)
            ]
        );
        assert!(timeline(&[]).is_empty());
        assert_eq!(check_times(&history).len(), 4);
    }

    #[test]
    fn snapshot_names_are_local_instants() {
        let paris = FixedOffset::east_opt(3600).unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 5).unwrap();
        for name in [
            "snapshot_20261127_090005.csv",
            "snapshot_20261127_090005-2.csv",
            "snapshot_20261127_090005-13.csv",
            "api_keys_20261127_090005.csv",
        ] {
            assert_eq!(
                instant_from_file_name(name, &paris, None),
                Some(at),
                "{name}"
            );
        }
        assert_eq!(
            instant_from_file_name("snapshot_20261127_090005.csv", &Utc, None),
            Some(at + Duration::hours(1))
        );
        for name in [
            "snapshot.csv",
            "notes.csv",
            "snapshot_2026112_090005.csv",
            "snapshot_20261327_090005.csv",
            "snapshot_20261127-090005.csv",
            "",
            "é",
        ] {
            assert_eq!(instant_from_file_name(name, &paris, None), None, "{name}");
        }
    }

    #[test]
    fn date_times_with_and_without_offsets() {
        let paris = FixedOffset::east_opt(3600).unwrap();
        let nine_utc = Some(t(9, 0));
        assert_eq!(parse_date_time("2026-11-27T09:00:00Z", &paris), nine_utc);
        assert_eq!(parse_date_time("2026-11-27T10:00:00+01:00", &Utc), nine_utc);
        assert_eq!(parse_date_time(" 2026-11-27 10:00 ", &paris), nine_utc);
        assert_eq!(parse_date_time("2026-11-27T10:00:00", &paris), nine_utc);
        // A plain date: the start of that local day.
        assert_eq!(
            parse_date_time("2026-11-27", &paris),
            Some(t(0, 0) - chrono::Duration::hours(1))
        );
        assert_eq!(
            parse_date_time("snapshot_20261127_090000.csv", &paris),
            None
        );
        assert_eq!(parse_date_time("yesterday", &paris), None);
    }

    #[test]
    fn window_lines() {
        let at = |h| {
            Local
                .with_ymd_and_hms(2026, 11, 27, h, 0, 0)
                .unwrap()
                .with_timezone(&Utc)
        };
        let mut w = WindowInfo {
            since: Some(at(9)),
            until: Some(at(12)),
            checks: 3,
            first_check: Some(at(9)),
            last_check: Some(at(12)),
        };
        assert_eq!(
            window_line(&w),
            "window: 2026-11-27 09:00:00 → 12:00:00 (local), 3 checks"
        );
        w.until = None;
        assert_eq!(
            window_line(&w),
            "window: 2026-11-27 09:00:00 → now (local), 3 checks"
        );
        w.since = None;
        w.checks = 1;
        assert_eq!(
            window_line(&w),
            "window: whole history, 2026-11-27 09:00:00 → 12:00:00 (local), 1 check"
        );
        w.until = Some(at(12) + Duration::days(1));
        assert_eq!(
            window_line(&w),
            "window: beginning → 2026-11-28 12:00:00 (local), 1 check"
        );
    }

    #[test]
    fn money_and_percent_for_people() {
        assert_eq!(money(1.25), "$1.25");
        assert_eq!(money(0.0), "$0.00");
        assert_eq!(money(0.0004), "<$0.01");
        assert_eq!(limit_text(None), "unlimited");
        assert_eq!(percent(Some(0.856)), "86%");
        assert_eq!(percent(Some(0.001)), "<1%");
        assert_eq!(percent(None), "-");
        assert_eq!(tidy(0.1 + 0.2), 0.3);
    }
}
