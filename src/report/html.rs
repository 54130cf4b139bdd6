//! The report as one self-contained HTML page: inline CSS and inline SVG, no script, no font,
//! image or style sheet fetched from anywhere, so it opens offline, can be mailed as one file,
//! and prints the same as it shows. Every piece of text from keys.db (names, emails, key names)
//! goes through [`escape`]: a student called `<b>Bo & "Al"</b>` is text, not markup.

use std::fmt::Write as _;

use chrono::{DateTime, Local, Utc};

use super::by_model::ByModel;
use super::{Report, StudentReport, limit_text, local, money, percent, window_line};

/// Width of both charts' coordinate systems; the page scales them to its width.
const W: f64 = 1000.0;
// The charts' colours (the style sheet's --spent, --before … hold the same, for the legend).
const INK: &str = "#1f2933";
const SPENT: &str = "#2563eb";
const BEFORE: &str = "#b6c6dd";
const WARN: &str = "#d97706";
const STOP: &str = "#dc2626";
const WINDOW: &str = "#e8f0fe";

const STYLE: &str = r#"
:root { --ink:#1f2933; --muted:#616e7c; --line:#d9e2ec; --spent:#2563eb; --before:#b6c6dd;
        --warn:#d97706; --stop:#dc2626; --window:#e8f0fe; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); background: #fff; margin: 0 auto; padding: 28px 32px 40px; max-width: 1060px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 30px 0 6px; }
p { margin: 4px 0; }
.muted { color: var(--muted); font-size: 13px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 18px 0 6px; }
.card { flex: 1 1 140px; border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.card b { display: block; font-size: 22px; }
.card span { color: var(--muted); font-size: 13px; }
.card.warn b { color: var(--warn); } .card.stop b { color: var(--stop); }
svg { width: 100%; height: auto; display: block; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: var(--ink); }
svg .axis { stroke: #9aa5b1; stroke-width: 1; }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .tick { font-size: 13px; fill: var(--muted); }
svg .label { font-size: 14px; }
svg .value { font-size: 13px; fill: var(--muted); }
.legend { display: flex; flex-wrap: wrap; gap: 18px; font-size: 13px; color: var(--muted); margin: 4px 0 8px; }
.legend i { display: inline-block; width: 14px; height: 10px; margin-right: 6px; vertical-align: baseline; border-radius: 2px; }
.legend i.limit { width: 3px; height: 14px; background: var(--ink); vertical-align: -2px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; margin-top: 6px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tfoot td { font-weight: 600; border-top: 2px solid var(--ink); border-bottom: none; }
.flag { display: inline-block; font-size: 12px; padding: 0 6px; border-radius: 9px; margin: 0 4px 2px 0;
        border: 1px solid var(--line); color: var(--muted); white-space: nowrap; }
.flag.stop { border-color: var(--stop); color: var(--stop); }
.flag.warn { border-color: var(--warn); color: var(--warn); }
.email { color: var(--muted); }
footer { margin-top: 24px; }
@media print {
  @page { margin: 14mm; }
  body { padding: 0; max-width: none; font-size: 11pt; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  section, .cards, tr { break-inside: avoid; }
  .cards { gap: 8px; flex-wrap: nowrap; }
  .card { flex: 1 1 0; min-width: 0; padding: 6px 8px; }
  .card b { font-size: 15pt; }
  .card span { font-size: 8.5pt; }
  /* The charts shrink to the paper's width: larger type keeps their labels readable. */
  svg .label { font-size: 16px; }
  svg .tick, svg .value { font-size: 15px; }
  h2 { break-after: avoid; }
  table { font-size: 10pt; }
}
"#;

/// The page for `report`, with the class's usage at each check (`super::timeline`).
pub fn render(
    report: &Report,
    timeline: &[(DateTime<Utc>, f64)],
    models: Option<&ByModel>,
    generated: DateTime<Utc>,
) -> String {
    let mut h = String::with_capacity(16_384 + report.students.len() * 1_200);
    let window = window_line(&report.window);
    let window = window.strip_prefix("window: ").unwrap_or(&window);
    let t = &report.totals;
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Class usage report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header>\n<h1>Class usage report</h1>\n<p>Window: {}</p>\n</header>\n",
        escape(window),
        escape(window)
    );
    let card = |h: &mut String, class: &str, value: String, what: &str| {
        let _ = writeln!(
            h,
            "<div class=\"card {class}\"><b>{}</b><span>{}</span></div>",
            escape(&value),
            escape(what)
        );
    };
    h.push_str("<div class=\"cards\">\n");
    card(&mut h, "", money(t.spent), "spent in the window");
    card(&mut h, "", money(t.usage_now), "usage now, all keys");
    card(
        &mut h,
        "",
        t.students.to_string(),
        &format!("students ({} keys)", t.keys),
    );
    card(
        &mut h,
        "warn",
        t.over_80.to_string(),
        "over 80% of their limit",
    );
    card(&mut h, "stop", t.at_limit.to_string(), "at their limit");
    card(&mut h, "", t.never_used.to_string(), "never used their key");
    h.push_str("</div>\n");

    h.push_str("<section>\n<h2>The class's usage over time</h2>\n");
    h.push_str(
        "<p class=\"muted\">Total usage of every key at each check (a key counts with its latest \
         usage then); the shaded band is the report's window.</p>\n",
    );
    usage_chart(&mut h, report, timeline);
    h.push_str("</section>\n");

    h.push_str("<section>\n<h2>Spent in the window, per student</h2>\n");
    h.push_str(
        "<div class=\"legend\"><span><i style=\"background:var(--spent)\"></i>spent in the window</span>\
         <span><i style=\"background:var(--warn)\"></i>… over 80% of the limit</span>\
         <span><i style=\"background:var(--stop)\"></i>… at the limit</span>\
         <span><i style=\"background:var(--before)\"></i>used before the window</span>\
         <span><i class=\"limit\"></i>limit</span></div>\n",
    );
    student_bars(&mut h, &report.students);
    h.push_str("</section>\n");

    if let Some(m) = models {
        h.push_str("<section>\n<h2>Spend per model, per student</h2>\n");
        let until = m
            .figures_until
            .map(|t| format!(" Figures up to {} (local time).", local(t)))
            .unwrap_or_default();
        let _ = writeln!(
            h,
            "<p class=\"muted\">From OpenRouter's analytics for the class's keys in the window.{}</p>",
            escape(&until)
        );
        model_bars(&mut h, m);
        h.push_str("</section>\n");
    }

    h.push_str("<section>\n<h2>Students</h2>\n");
    student_table(&mut h, report);
    h.push_str("</section>\n");

    let _ = write!(
        h,
        "<footer><p class=\"muted\">Made by classkeys {} on {} (local time) from keys.db. Usage is \
         what OpenRouter reported at each check; spend in the window is the difference between the \
         last check at or before its start and the last at or before its end.</p></footer>\n\
         </body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        escape(&local(generated))
    );
    h
}

/// The class's total usage at each check, a dot per check, the window shaded.
fn usage_chart(h: &mut String, report: &Report, timeline: &[(DateTime<Utc>, f64)]) {
    let (height, left, right, top, bottom) = (300.0, 72.0, 24.0, 16.0, 44.0);
    let _ = writeln!(
        h,
        "<svg viewBox=\"0 0 {W} {height}\" role=\"img\" aria-label=\"The class's total usage at each check\">"
    );
    let (Some(first), Some(last)) = (timeline.first(), timeline.last()) else {
        let _ = write!(
            h,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"label\">No checks recorded yet: \
             run classkeys check.</text>\n</svg>\n",
            W / 2.0,
            height / 2.0
        );
        return;
    };
    let (t0, t1) = (first.0.timestamp() as f64, last.0.timestamp() as f64);
    let span = (t1 - t0).max(1.0);
    let plot_w = W - left - right;
    let plot_h = height - top - bottom;
    let x = |t: DateTime<Utc>| {
        if t1 > t0 {
            left + (t.timestamp() as f64 - t0) / span * plot_w
        } else {
            left + plot_w / 2.0
        }
    };
    let max = timeline.iter().map(|p| p.1).fold(0.0, f64::max);
    let (step, top_value) = nice_scale(max, 5);
    let y = |v: f64| top + plot_h - v / top_value * plot_h;

    // The window: shaded band and dashed edges, clamped to the plotted time range.
    let w = &report.window;
    if w.since.is_some() || w.until.is_some() {
        let from = w.since.map_or(left, |s| x(s).clamp(left, left + plot_w));
        let to = w
            .until
            .map_or(left + plot_w, |u| x(u).clamp(left, left + plot_w));
        if to >= from {
            let _ = writeln!(
                h,
                "<rect x=\"{from:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{plot_h}\" fill=\"{WINDOW}\"/>",
                (to - from).max(2.0)
            );
            for (edge, shown, label, anchor) in [
                (from, w.since.is_some(), "start", "start"),
                (to, w.until.is_some(), "end", "end"),
            ] {
                if shown {
                    let dx = if anchor == "start" { 4.0 } else { -4.0 };
                    let _ = write!(
                        h,
                        "<line x1=\"{edge:.1}\" y1=\"{top}\" x2=\"{edge:.1}\" y2=\"{:.1}\" stroke=\"{SPENT}\" \
                         stroke-dasharray=\"4 3\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" \
                         text-anchor=\"{anchor}\">window {label}</text>\n",
                        top + plot_h,
                        edge + dx,
                        top + 14.0
                    );
                }
            }
        }
    }

    // Dollar grid and labels.
    let mut v = 0.0;
    while v <= top_value + step / 2.0 {
        let yy = y(v);
        let _ = write!(
            h,
            "<line x1=\"{left}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" class=\"{}\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>\n",
            left + plot_w,
            if v == 0.0 { "axis" } else { "grid" },
            left - 8.0,
            yy + 4.0,
            escape(&axis_money(v, step))
        );
        v += step;
    }

    // Time labels at round local times (every 15 minutes, hour, day …), at most seven.
    let same_day = local(first.0).get(..10) == local(last.0).get(..10);
    let offset = i64::from(first.0.with_timezone(&Local).offset().local_minus_utc());
    let (step, mut ticks) = time_ticks(first.0.timestamp(), last.0.timestamp(), offset);
    if ticks.len() < 2 {
        ticks = vec![first.0.timestamp(), last.0.timestamp()];
        ticks.dedup();
    }
    for tick in ticks {
        let Some(at) = DateTime::from_timestamp(tick, 0) else {
            continue;
        };
        let lt = at.with_timezone(&Local);
        let format = match (step, same_day) {
            (0, true) => "%H:%M:%S",
            (0, false) => "%b %-d %H:%M:%S",
            (s, _) if s >= 86_400 => "%b %-d",
            (_, true) => "%H:%M",
            (_, false) => "%b %-d %H:%M",
        };
        let xx = x(at);
        let anchor = if xx < left + 20.0 {
            "start"
        } else if xx > left + plot_w - 20.0 {
            "end"
        } else {
            "middle"
        };
        let _ = write!(
            h,
            "<line x1=\"{xx:.1}\" y1=\"{:.1}\" x2=\"{xx:.1}\" y2=\"{:.1}\" class=\"axis\"/>\n\
             <text x=\"{xx:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"{anchor}\">{}</text>\n",
            top + plot_h,
            top + plot_h + 5.0,
            top + plot_h + 22.0,
            escape(&lt.format(format).to_string())
        );
    }
    if same_day {
        let _ = writeln!(
            h,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{} (local time)</text>",
            left + plot_w,
            height - 2.0,
            escape(local(first.0).get(..10).unwrap_or_default())
        );
    }

    // The line and a dot per check, each with its figure as a tooltip.
    let path: Vec<String> = timeline
        .iter()
        .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
        .collect();
    let _ = writeln!(
        h,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"{SPENT}\" stroke-width=\"2.5\" \
         stroke-linejoin=\"round\"/>",
        path.join(" ")
    );
    for (t, v) in timeline {
        let _ = writeln!(
            h,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"#fff\" stroke=\"{SPENT}\" stroke-width=\"2\">\
             <title>{}: {}</title></circle>",
            x(*t),
            y(*v),
            escape(&local(*t)),
            escape(&money(*v))
        );
    }
    // The latest figure, written by the last dot.
    let _ = writeln!(
        h,
        "<text x=\"{:.1}\" y=\"{:.1}\" class=\"label\" text-anchor=\"end\">{}</text>",
        x(last.0) - 6.0,
        (y(last.1) - 10.0).max(top + 28.0),
        escape(&money(last.1))
    );
    h.push_str("</svg>\n");
}

/// One bar per student, biggest spend first: used before the window, spent in it, the limit.
fn student_bars(h: &mut String, students: &[StudentReport]) {
    let (row, top, label_w, value_w) = (26.0, 8.0, 250.0, 190.0);
    let height = top * 2.0 + row * students.len().max(1) as f64;
    let _ = writeln!(
        h,
        "<svg viewBox=\"0 0 {W} {height}\" role=\"img\" aria-label=\"Spent in the window, per student\">"
    );
    if students.is_empty() {
        let _ = write!(
            h,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"label\">No keys in keys.db yet.</text>\n</svg>\n",
            W / 2.0,
            top + 17.0
        );
        return;
    }
    let mut order: Vec<&StudentReport> = students.iter().collect();
    order.sort_by(|a, b| b.spent.total_cmp(&a.spent));
    let scale = students
        .iter()
        .map(|s| s.usage_at_end.max(s.limit.unwrap_or(0.0)))
        .fold(0.0, f64::max);
    let scale = if scale > 0.0 { scale } else { 1.0 };
    let bar_x = label_w + 10.0;
    let bar_w = W - bar_x - value_w;
    let len = |v: f64| (v.max(0.0) / scale * bar_w).min(bar_w);
    for (i, s) in order.iter().enumerate() {
        let y0 = top + row * i as f64;
        let mid = y0 + row / 2.0;
        if i % 2 == 1 {
            let _ = writeln!(
                h,
                "<rect x=\"0\" y=\"{y0:.1}\" width=\"{W}\" height=\"{row}\" fill=\"#f5f7fa\"/>"
            );
        }
        let who = if s.name.is_empty() { &s.email } else { &s.name };
        let _ = writeln!(
            h,
            "<text x=\"{label_w}\" y=\"{:.1}\" class=\"label\" text-anchor=\"end\">{}<title>{} &lt;{}&gt;</title></text>",
            mid + 5.0,
            escape(&shorten(who, 30)),
            escape(&s.name),
            escape(&s.email)
        );
        let before = (s.usage_at_end - s.spent).max(0.0);
        let colour = if s.at_limit {
            STOP
        } else if s.over_80 {
            WARN
        } else {
            SPENT
        };
        let (bh, by) = (14.0, mid - 7.0);
        let _ = writeln!(
            h,
            "<line x1=\"{bar_x}\" y1=\"{mid:.1}\" x2=\"{:.1}\" y2=\"{mid:.1}\" class=\"grid\"/>",
            bar_x + bar_w
        );
        if before > 0.0 {
            let _ = writeln!(
                h,
                "<rect x=\"{bar_x}\" y=\"{by:.1}\" width=\"{:.1}\" height=\"{bh}\" fill=\"{BEFORE}\"/>",
                len(before)
            );
        }
        if s.spent > 0.0 {
            let _ = writeln!(
                h,
                "<rect x=\"{:.1}\" y=\"{by:.1}\" width=\"{:.1}\" height=\"{bh}\" fill=\"{colour}\"/>",
                bar_x + len(before),
                len(s.spent).max(1.5)
            );
        }
        if let Some(limit) = s.limit {
            let lx = bar_x + len(limit);
            let _ = writeln!(
                h,
                "<line x1=\"{lx:.1}\" y1=\"{:.1}\" x2=\"{lx:.1}\" y2=\"{:.1}\" stroke=\"{INK}\" stroke-width=\"2.5\"/>",
                mid - 10.0,
                mid + 10.0
            );
        }
        let value = match s.limit {
            Some(l) => format!("{} · limit {}", money(s.spent), money(l)),
            None => format!("{} · unlimited", money(s.spent)),
        };
        let _ = writeln!(
            h,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"value\">{}</text>",
            bar_x + bar_w + 12.0,
            mid + 5.0,
            escape(&value)
        );
    }
    h.push_str("</svg>\n");
}

/// Colours of the models, in the order of the class's spend on them.
const MODEL_COLOURS: [&str; 8] = [
    "#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#9ca3af",
];

/// One bar per student, stacked by model, with a legend of the models.
fn model_bars(h: &mut String, m: &ByModel) {
    if m.by_model.is_empty() {
        h.push_str("<p>No spend on any model in the window.</p>\n");
        return;
    }
    // The seven models the class spent most on keep their colour; the rest share grey.
    let colour = |model: &str| {
        let i = m
            .models
            .iter()
            .position(|t| t.model == model)
            .unwrap_or(usize::MAX);
        MODEL_COLOURS[i.min(MODEL_COLOURS.len() - 1)]
    };
    h.push_str("<div class=\"legend\">");
    for (i, t) in m.models.iter().enumerate().take(MODEL_COLOURS.len()) {
        let label = if i == MODEL_COLOURS.len() - 1 && m.models.len() > MODEL_COLOURS.len() {
            "other models".to_string()
        } else {
            t.model.clone()
        };
        let _ = write!(
            h,
            "<span><i style=\"background:{}\"></i>{}</span>",
            MODEL_COLOURS[i],
            escape(&label)
        );
    }
    h.push_str("</div>\n");
    let mut students: Vec<(&str, &str, Vec<&super::by_model::ModelRow>)> = Vec::new();
    for r in &m.by_model {
        match students.iter_mut().find(|(e, _, _)| *e == r.email) {
            Some(s) => s.2.push(r),
            None => students.push((&r.email, &r.name, vec![r])),
        }
    }
    let total = |rows: &[&super::by_model::ModelRow]| rows.iter().map(|r| r.spent).sum::<f64>();
    students.sort_by(|a, b| total(&b.2).total_cmp(&total(&a.2)));
    let (row, top, label_w, value_w) = (26.0, 8.0, 250.0, 110.0);
    let height = top * 2.0 + row * students.len() as f64;
    let scale = students.iter().map(|s| total(&s.2)).fold(0.0, f64::max);
    let scale = if scale > 0.0 { scale } else { 1.0 };
    let bar_x = label_w + 10.0;
    let bar_w = W - bar_x - value_w;
    let _ = writeln!(
        h,
        "<svg viewBox=\"0 0 {W} {height}\" role=\"img\" aria-label=\"Spend per model, per student\">"
    );
    for (i, (email, name, rows)) in students.iter().enumerate() {
        let y0 = top + row * i as f64;
        let mid = y0 + row / 2.0;
        let who = if name.is_empty() { email } else { name };
        let _ = writeln!(
            h,
            "<text x=\"{label_w}\" y=\"{:.1}\" class=\"label\" text-anchor=\"end\">{}<title>{} &lt;{}&gt;</title></text>",
            mid + 5.0,
            escape(&shorten(who, 30)),
            escape(name),
            escape(email)
        );
        let mut x = bar_x;
        for r in rows {
            let w = r.spent.max(0.0) / scale * bar_w;
            if w <= 0.0 {
                continue;
            }
            let _ = writeln!(
                h,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"14\" fill=\"{}\"><title>{}: {} ({} requests)</title></rect>",
                mid - 7.0,
                colour(&r.model),
                escape(&r.model),
                escape(&money(r.spent)),
                r.requests
            );
            x += w;
        }
        let _ = writeln!(
            h,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"value\">{}</text>",
            bar_x + bar_w + 12.0,
            mid + 5.0,
            escape(&money(total(rows)))
        );
    }
    h.push_str("</svg>\n");
}

/// The same figures as the terminal's table.
fn student_table(h: &mut String, report: &Report) {
    h.push_str(
        "<table>\n<thead><tr><th>Student</th><th class=\"n\">Spent</th><th class=\"n\">Usage now</th>\
         <th class=\"n\">Limit</th><th class=\"n\">Used</th><th>Flags</th></tr></thead>\n<tbody>\n",
    );
    for s in &report.students {
        let flags: String = s
            .flag_words()
            .iter()
            .map(|f| {
                let class = match *f {
                    "at limit" => " stop",
                    "over 80%" => " warn",
                    _ => "",
                };
                format!("<span class=\"flag{class}\">{}</span>", escape(f))
            })
            .collect();
        let _ = writeln!(
            h,
            "<tr><td>{}<br><span class=\"email\">{}</span></td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{flags}</td></tr>",
            escape(&s.name),
            escape(&s.email),
            escape(&money(s.spent)),
            escape(&money(s.usage_now)),
            escape(&limit_text(s.limit)),
            escape(&percent(s.share)),
        );
    }
    let t = &report.totals;
    let _ = write!(
        h,
        "</tbody>\n<tfoot><tr><td>{} students</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td></td>\
         <td></td><td>{} over 80%, {} at limit, {} never used</td></tr></tfoot>\n</table>\n",
        t.students,
        escape(&money(t.spent)),
        escape(&money(t.usage_now)),
        t.over_80,
        t.at_limit,
        t.never_used
    );
}

/// Text safe inside an element or a quoted attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}

/// Round tick times (unix seconds) between `t0` and `t1`, aligned in local time (`offset`:
/// local minus UTC, in seconds), and their step; step 0 and no ticks when the span is under a
/// minute or so.
fn time_ticks(t0: i64, t1: i64, offset: i64) -> (i64, Vec<i64>) {
    const STEPS: [i64; 15] = [
        60, 300, 600, 900, 1_800, 3_600, 7_200, 10_800, 21_600, 43_200, 86_400, 172_800, 604_800,
        1_209_600, 2_592_000,
    ];
    let span = t1 - t0;
    let Some(step) = STEPS.iter().copied().find(|s| span / s <= 6) else {
        return (0, Vec::new());
    };
    let first = (t0 + offset).div_euclid(step) + i64::from((t0 + offset).rem_euclid(step) != 0);
    let last = (t1 + offset).div_euclid(step);
    let ticks: Vec<i64> = (first..=last).map(|k| k * step - offset).collect();
    if ticks.len() < 2 {
        return (0, Vec::new());
    }
    (step, ticks)
}

/// A round step (1, 2 or 5 × 10ⁿ) giving about `ticks` grid lines up to at least `max`,
/// and the top of the axis.
fn nice_scale(max: f64, ticks: u32) -> (f64, f64) {
    if max <= 0.0 || !max.is_finite() {
        return (0.5, 1.0);
    }
    let raw = max / f64::from(ticks);
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    (step, (max / step).ceil().max(1.0) * step)
}

fn axis_money(v: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("${v:.0}")
    } else if step >= 0.1 {
        format!("${v:.1}")
    } else {
        format!("${v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Window, build, timeline};
    use super::*;
    use crate::store::{KeyInfo, UsagePoint};
    use chrono::TimeZone;

    fn sample(name: &str) -> (Report, Vec<(DateTime<Utc>, f64)>) {
        let t = |h| Utc.with_ymd_and_hms(2026, 11, 27, h, 0, 0).unwrap();
        let keys = vec![
            KeyInfo {
                hash: "a".into(),
                email: "ada@uni.edu".into(),
                name: name.into(),
                key_name: format!("20261127_{name}"),
                limit: Some(2.0),
                disabled: false,
                deleted: false,
                created_at: Some(t(8)),
            },
            KeyInfo {
                hash: "b".into(),
                email: "bo@uni.edu".into(),
                name: "Bo".into(),
                key_name: "20261127_Bo".into(),
                limit: None,
                disabled: false,
                deleted: false,
                created_at: Some(t(8)),
            },
        ];
        let history: Vec<UsagePoint> = [(9, 0.0, 0.1), (10, 1.7, 0.2), (11, 2.0, 0.2)]
            .iter()
            .flat_map(|(h, a, b)| {
                [
                    UsagePoint {
                        hash: "a".into(),
                        usage: *a,
                        at: t(*h),
                    },
                    UsagePoint {
                        hash: "b".into(),
                        usage: *b,
                        at: t(*h),
                    },
                ]
            })
            .collect();
        let window = Window {
            since: Some(t(9)),
            until: Some(t(10)),
        };
        (build(&keys, &history, window), timeline(&history))
    }

    #[test]
    fn one_page_with_two_charts_and_nothing_to_fetch_or_run() {
        let (report, line) = sample("Ada");
        let page = render(&report, &line, None, Utc::now());
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert_eq!(page.matches("<svg").count(), 2);
        assert_eq!(page.matches("</svg>").count(), 2);
        assert!(page.contains("<polyline"));
        assert!(page.contains("@media print"));
        let lower = page.to_lowercase();
        for banned in [
            "<script", "http:", "https:", "//", "src=", "href=", "@import", "url(",
        ] {
            assert!(!lower.contains(banned), "the page contains {banned}");
        }
        assert!(page.contains("$1.70"), "Ada's spend in the window");
    }

    #[test]
    fn names_are_text_not_markup() {
        let (report, line) = sample("<b>Al & \"Bo\"</b> O'Neil");
        let page = render(&report, &line, None, Utc::now());
        assert!(!page.contains("<b>Al"));
        assert!(page.contains("&lt;b&gt;Al &amp; &quot;Bo&quot;&lt;/b&gt; O&#39;Neil"));
    }

    #[test]
    fn empty_class_still_renders() {
        let report = build(&[], &[], Window::default());
        let page = render(&report, &[], None, Utc::now());
        assert!(page.contains("No checks recorded yet"));
        assert!(page.contains("No keys in keys.db yet"));
    }

    #[test]
    fn scales_are_round() {
        assert_eq!(nice_scale(7.3, 5), (2.0, 8.0));
        assert_eq!(nice_scale(0.42, 5), (0.1, 0.5));
        assert_eq!(nice_scale(0.0, 5), (0.5, 1.0));
        assert_eq!(nice_scale(100.0, 5), (20.0, 100.0));
        assert_eq!(shorten("abcdef", 4), "abc…");
        // 08:30 to 13:00 at UTC+1: every hour, on the local hour.
        let t0 = Utc
            .with_ymd_and_hms(2026, 11, 27, 7, 30, 0)
            .unwrap()
            .timestamp();
        let (step, ticks) = time_ticks(t0, t0 + 4 * 3600 + 1800, 3600);
        assert_eq!(step, 3600);
        assert_eq!(ticks.len(), 5, "09:00 to 13:00");
        assert_eq!(ticks[0], t0 + 1800, "09:00 local");
        // Three seconds: no round times; the caller labels the first and last check.
        assert_eq!(time_ticks(t0, t0 + 3, 0), (0, vec![]));
    }
}
