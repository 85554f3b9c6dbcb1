//! The console's HTML, rendered on the server from the same views the API
//! answers, so every page reads without JavaScript; `/assets/console.js`
//! then keeps the overview and jobs current from the event stream. Every
//! string that reaches the HTML goes through [`esc`].

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::drills::Drill;
use super::views::{DrillSummary, GroupView, JobsView};
use crate::daemon::feed::{JobRecord, JobResult, RpoSample};

/// Escapes text for HTML content and quoted attributes.
pub fn esc(s: &str) -> String {
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

/// A duration in seconds, for people: `42 s`, `3 min 5 s`, `2 h 10 min`.
pub fn human_secs(s: f64) -> String {
    if !s.is_finite() {
        return "—".into();
    }
    let s = s.max(0.0);
    if s < 10.0 {
        return format!("{s:.1} s");
    }
    let t = s.round() as u64;
    match t {
        0..60 => format!("{t} s"),
        60..3600 => format!("{} min {} s", t / 60, t % 60),
        3600..86_400 => format!("{} h {} min", t / 3600, (t % 3600) / 60),
        _ => format!("{} d {} h", t / 86_400, (t % 86_400) / 3600),
    }
}

fn opt_secs(s: Option<f64>) -> String {
    s.map_or_else(|| "—".into(), human_secs)
}

fn time(t: &DateTime<Utc>) -> String {
    format!(
        "<time datetime=\"{}\">{}</time>",
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        t.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

fn opt_time(t: Option<&DateTime<Utc>>) -> String {
    t.map_or_else(|| "—".into(), time)
}

fn page(title: &str, current: &str, body: &str) -> String {
    let nav = [("/", "Groups"), ("/drills", "Drills"), ("/jobs", "Jobs")]
        .iter()
        .map(|(href, label)| {
            let here = if *href == current { " aria-current=\"page\"" } else { "" };
            format!("<a href=\"{href}\"{here}>{label}</a>")
        })
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Lifeline</title>\
         <link rel=\"stylesheet\" href=\"/assets/console.css\">\
         <script src=\"/assets/console.js\" defer></script></head>\
         <body><header><strong>Lifeline</strong> <nav>{nav}</nav>\
         <span id=\"live\" class=\"live\" data-events=\"0\">live updates off</span></header>\
         <main><h1>{title}</h1>{body}</main></body></html>\n",
        title = esc(title)
    )
}

/// An inline SVG sparkline of RPO samples over the last 24 h, with the
/// objective as a line.
pub fn sparkline(samples: &[RpoSample], objective: Option<f64>, now: DateTime<Utc>) -> String {
    const W: f64 = 160.0;
    const H: f64 = 28.0;
    let from = now.timestamp() - 86_400;
    let max = samples
        .iter()
        .map(|s| s.rpo_seconds as f64)
        .chain(objective)
        .fold(1.0f64, f64::max)
        * 1.1;
    let x = |at: i64| ((at - from) as f64 / 86_400.0 * W).clamp(0.0, W);
    let y = |v: f64| H - (v / max * H).clamp(0.0, H);
    // One point per pixel column, the worst RPO in it: the line stays the
    // same size however often the history samples.
    let mut columns: Vec<(i64, f64)> = Vec::new();
    for s in samples.iter().filter(|s| s.at >= from) {
        let col = x(s.at).round() as i64;
        match columns.last_mut() {
            Some((c, v)) if *c == col => *v = v.max(s.rpo_seconds as f64),
            _ => columns.push((col, s.rpo_seconds as f64)),
        }
    }
    let mut path = String::new();
    for (i, (col, v)) in columns.iter().enumerate() {
        let _ = write!(path, "{}{col},{:.1}", if i == 0 { "M" } else { " L" }, y(*v));
    }
    let obj = objective.map_or(String::new(), |o| {
        format!(
            "<line class=\"objective\" x1=\"0\" x2=\"{W}\" y1=\"{0:.1}\" y2=\"{0:.1}\"/>",
            y(o)
        )
    });
    format!(
        "<svg class=\"spark\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" \
         aria-label=\"RPO over the last 24 hours, {} samples\">{obj}<path d=\"{path}\"/></svg>",
        samples.len()
    )
}

fn drill_cell(d: Option<&DrillSummary>) -> String {
    match d {
        None => "never drilled".into(),
        Some(d) => format!(
            "<a href=\"/drills/{id}\" class=\"verdict {v}\">{label}</a><br><small>RPO {rpo} · RTO {rto} · {at}</small>",
            id = esc(&d.id),
            v = serde_json::to_value(d.verdict)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            label = d.verdict.label(),
            rpo = opt_secs(d.achieved_rpo_seconds),
            rto = opt_secs(d.achieved_rto_seconds),
            at = opt_time(d.at.as_ref()),
        ),
    }
}

fn jobs_cell(jobs: &[JobRecord]) -> String {
    if jobs.is_empty() {
        return "—".into();
    }
    jobs.iter()
        .map(|j| format!("{} <small>since {}</small>", esc(&j.job), time(&j.started_at)))
        .collect::<Vec<_>>()
        .join("<br>")
}

/// The RPO cell: now against the objective.
fn rpo_cell(g: &GroupView) -> String {
    format!(
        "{} <small>/ {}</small>",
        opt_secs(g.rpo_seconds),
        g.rpo_objective_seconds
            .map_or_else(|| "no objective".into(), human_secs)
    )
}

/// One overview row; the script replaces rows with the same markup it reads
/// from `/api/v1/groups`, so the cells carry `data-field` names.
fn group_row(g: &GroupView, rpo: &[RpoSample], now: DateTime<Utc>) -> String {
    format!(
        "<tr data-group=\"{name}\"><th scope=\"row\"><a href=\"/groups/{name}\">{name}</a></th>\
         <td data-field=\"state\" data-state=\"{state}\"><span class=\"state {state}\">{text}</span></td>\
         <td data-field=\"rpo\">{rpo_cell}<br>{spark}</td>\
         <td data-field=\"point\">{point}<br><small>window {oldest} → {newest}</small></td>\
         <td data-field=\"drill\">{drill}</td>\
         <td data-field=\"jobs\">{jobs}</td></tr>",
        name = esc(&g.name),
        state = g.state.as_str(),
        text = g.state.text(),
        rpo_cell = rpo_cell(g),
        spark = sparkline(rpo, g.rpo_objective_seconds, now),
        point = g.last_point.as_ref().map_or_else(
            || "no point yet".into(),
            |p| format!(
                "#{} {} <small>{}</small>",
                p.seq,
                time(&p.taken_at),
                esc(&p.consistency)
            )
        ),
        oldest = opt_time(g.retention.oldest.as_ref()),
        newest = opt_time(g.retention.newest.as_ref()),
        drill = drill_cell(g.last_drill.as_ref()),
        jobs = jobs_cell(&g.running_jobs),
    )
}

/// `/`: one row per group.
pub fn overview(groups: &[(GroupView, Vec<RpoSample>)], site: &str, now: DateTime<Utc>) -> String {
    let mut rows = String::new();
    for (g, rpo) in groups {
        rows.push_str(&group_row(g, rpo, now));
    }
    if groups.is_empty() {
        rows.push_str("<tr><td colspan=\"6\">The configuration has no groups.</td></tr>");
    }
    let body = format!(
        "<p>Site <strong>{site}</strong>, as of {now}.</p>\
         <table id=\"groups\"><thead><tr><th>Group</th><th>State</th><th>RPO now / objective, last 24 h</th>\
         <th>Newest point, retention window</th><th>Last drill</th><th>Running</th></tr></thead>\
         <tbody>{rows}</tbody></table>",
        site = esc(site),
        now = time(&now),
    );
    page("Protection groups", "/", &body)
}

/// `/groups/NAME`.
pub fn group(
    g: &GroupView,
    points: Option<&[super::PointSummary]>,
    drills: &[DrillSummary],
    rpo: &[RpoSample],
    now: DateTime<Utc>,
) -> String {
    let mut body = format!(
        "<p class=\"summary\" data-group=\"{name}\"><span class=\"state {state}\">{text}</span> · RPO {rpo_cell} · \
         RTO objective {rto} · replication {repl}{bytes}</p>{spark}",
        name = esc(&g.name),
        state = g.state.as_str(),
        text = g.state.text(),
        rpo_cell = rpo_cell(g),
        rto = opt_secs(g.rto_objective_seconds),
        repl = g.replication.state,
        bytes = if g.replication.bytes_sent > 0 {
            format!(
                ", {} sent",
                lifeline_replicator::units::human_bytes(g.replication.bytes_sent)
            )
        } else {
            String::new()
        },
        spark = sparkline(rpo, g.rpo_objective_seconds, now),
    );
    if g.replication.controllable {
        let (action, label) = if g.replication.state == "paused" {
            ("resume", "Resume replication")
        } else {
            ("pause", "Pause replication")
        };
        let _ = write!(
            body,
            "<p class=\"actions\"><button data-action=\"/api/v1/groups/{n}/{action}\">{label}</button></p>",
            n = esc(&g.name)
        );
    }
    let _ = write!(
        body,
        "<p class=\"actions\"><button data-action=\"/api/v1/groups/{}/drill\">Run a drill now</button> \
         <span class=\"action-result\"></span></p>",
        esc(&g.name)
    );
    body.push_str("<h2>Drills: achieved RPO and RTO</h2>");
    if drills.is_empty() {
        body.push_str("<p>No drill yet.</p>");
    } else {
        body.push_str(&trend(drills));
        body.push_str(&drill_table(drills));
    }
    body.push_str("<h2>Points</h2>");
    match points {
        None => body.push_str("<p>This daemon does not reach the group's repository.</p>"),
        Some([]) => body.push_str("<p>No point yet.</p>"),
        Some(points) => {
            body.push_str(&timeline(points));
            body.push_str("<table><thead><tr><th>Seq</th><th>Taken at</th><th>Consistency</th></tr></thead><tbody>");
            for p in points.iter().rev().take(500) {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    p.seq,
                    time(&p.taken_at),
                    esc(&p.consistency)
                );
            }
            body.push_str("</tbody></table>");
            if points.len() > 500 {
                let _ = write!(
                    body,
                    "<p>{} older points: see <a href=\"/api/v1/groups/{}/points\">the API</a>.</p>",
                    points.len() - 500,
                    esc(&g.name)
                );
            }
        }
    }
    page(&format!("Group {}", g.name), "/", &body)
}

/// The points on a time axis: a tick per point.
fn timeline(points: &[super::PointSummary]) -> String {
    const W: f64 = 640.0;
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return String::new();
    };
    let span = (last.taken_at - first.taken_at).num_milliseconds().max(1) as f64;
    let mut ticks = String::new();
    for p in points {
        let x = 4.0 + (p.taken_at - first.taken_at).num_milliseconds() as f64 / span * (W - 8.0);
        let _ = write!(ticks, "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"4\" y2=\"24\"/>");
    }
    format!(
        "<svg class=\"timeline\" viewBox=\"0 0 {W} 28\" role=\"img\" aria-label=\"{} points from {} to {}\">{ticks}</svg>",
        points.len(),
        first.taken_at.to_rfc3339(),
        last.taken_at.to_rfc3339()
    )
}

/// Achieved RPO and RTO across drills, against the objectives: a bar pair per drill.
fn trend(drills: &[DrillSummary]) -> String {
    const H: f64 = 60.0;
    let max = drills
        .iter()
        .flat_map(|d| {
            [
                d.achieved_rpo_seconds,
                d.achieved_rto_seconds,
                d.rpo_objective_seconds,
                d.rto_objective_seconds,
            ]
        })
        .flatten()
        .fold(1.0f64, f64::max);
    let mut bars = String::new();
    for (i, d) in drills.iter().enumerate() {
        let x = 4.0 + i as f64 * 20.0;
        for (j, (v, class)) in [(d.achieved_rpo_seconds, "rpo"), (d.achieved_rto_seconds, "rto")]
            .into_iter()
            .enumerate()
        {
            let h = v.map_or(0.0, |v| v / max * H);
            let _ = write!(
                bars,
                "<rect class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"7\" height=\"{h:.1}\"><title>{} {}</title></rect>",
                x + j as f64 * 8.0,
                H - h,
                class.to_uppercase(),
                opt_secs(v)
            );
        }
    }
    let w = 8.0 + drills.len() as f64 * 20.0;
    format!(
        "<svg class=\"trend\" viewBox=\"0 0 {w} {H}\" width=\"{w}\" height=\"{H}\" role=\"img\" \
         aria-label=\"achieved RPO and RTO of {} drills\">{bars}</svg>",
        drills.len()
    )
}

fn drill_table(drills: &[DrillSummary]) -> String {
    let mut t = String::from(
        "<table><thead><tr><th>Drill</th><th>Group</th><th>Verdict</th><th>RPO achieved / objective</th>\
         <th>RTO achieved / objective</th><th>Signature</th></tr></thead><tbody>",
    );
    for d in drills.iter().rev() {
        let _ = write!(
            t,
            "<tr><td><a href=\"/drills/{id}\">{at}</a></td><td>{group}</td><td>{verdict}</td><td>{rpo} / {rpo_o}</td>\
             <td>{rto} / {rto_o}</td><td>{sig}</td></tr>",
            id = esc(&d.id),
            at = opt_time(d.at.as_ref()),
            group = esc(&d.group),
            verdict = d.verdict.label(),
            rpo = opt_secs(d.achieved_rpo_seconds),
            rpo_o = opt_secs(d.rpo_objective_seconds),
            rto = opt_secs(d.achieved_rto_seconds),
            rto_o = opt_secs(d.rto_objective_seconds),
            sig = if d.signature_verifies {
                "verifies"
            } else {
                "DOES NOT VERIFY"
            },
        );
    }
    t.push_str("</tbody></table>");
    t
}

/// `/drills`.
pub fn drills(drills: &[DrillSummary]) -> String {
    let body = if drills.is_empty() {
        "<p>No drill report yet.</p>".to_string()
    } else {
        drill_table(drills)
    };
    page("Drills", "/drills", &body)
}

/// `/drills/ID`: the signed report, embedded, and whether it verifies.
pub fn drill(d: &Drill) -> String {
    let s = DrillSummary::of(d);
    let status = if d.verification.verifies {
        "<p class=\"verification ok\">The report's signature verifies with the planner's public key: \
         <strong>signature verifies</strong>.</p>"
            .to_string()
    } else {
        format!(
            "<p class=\"verification bad\"><strong>The signature does not verify</strong>: {}</p>",
            d.verification
                .problems
                .iter()
                .map(|p| esc(p))
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    let body = format!(
        "{status}<p>Group <a href=\"/groups/{group}\">{group}</a> · verdict <strong>{verdict}</strong> · \
         RPO {rpo} (objective {rpo_o}) · RTO {rto} (objective {rto_o}) · T0 {at}</p>\
         <p><a href=\"/drills/{id}/report.html\">The signed report.html</a> · \
         <a href=\"/api/v1/drills/{id}\">JSON</a></p>\
         <iframe class=\"report\" sandbox src=\"/drills/{id}/report.html\" title=\"Signed drill report\"></iframe>",
        group = esc(&s.group),
        verdict = s.verdict.label(),
        rpo = opt_secs(s.achieved_rpo_seconds),
        rpo_o = opt_secs(s.rpo_objective_seconds),
        rto = opt_secs(s.achieved_rto_seconds),
        rto_o = opt_secs(s.rto_objective_seconds),
        at = opt_time(s.at.as_ref()),
        id = esc(&s.id),
    );
    page(&format!("Drill {}", s.id), "/drills", &body)
}

/// The runs that wait for an approval, each step with its Approve button
/// (the planner refuses anyone but an admin).
fn approvals(runs: &[super::actions::RunView]) -> String {
    let mut rows = String::new();
    for r in runs {
        for w in &r.waiting_for_approval {
            let _ = write!(
                rows,
                "<tr data-run=\"{id}\" data-step=\"{step}\"><td>{id}</td><td>{mode}</td><td>{group}</td><td>{step}</td>\
                 <td>{message}</td><td>{since}</td><td><button data-action=\"{url}\">Approve</button> \
                 <span class=\"action-result\"></span></td></tr>",
                id = esc(&r.id),
                mode = esc(&r.mode),
                group = esc(&r.group),
                step = esc(&w.step),
                message = esc(w.message.as_deref().unwrap_or("")),
                since = opt_time(w.since.as_ref()),
                url = esc(&w.approve),
            );
        }
    }
    if rows.is_empty() {
        return "<h2>Waiting for approval</h2><p id=\"approvals\">No run waits for an approval.</p>".into();
    }
    format!(
        "<h2>Waiting for approval</h2><table id=\"approvals\"><thead><tr><th>Run</th><th>Mode</th><th>Group</th>\
         <th>Step</th><th>What to check</th><th>Waiting since</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
    )
}

/// `/jobs`: the runs waiting for an approval, then the jobs.
pub fn jobs(j: &JobsView, runs: &[super::actions::RunView]) -> String {
    let row = |r: &JobRecord| {
        format!(
            "<tr data-job=\"{id}\"><td>{job}</td><td>{group}</td><td>{start}</td><td>{dur}</td><td class=\"result {class}\">{result}</td><td>{what}</td></tr>",
            id = r.id,
            job = esc(&r.job),
            group = esc(&r.group),
            start = time(&r.started_at),
            dur = opt_secs(r.duration_seconds),
            class = match r.result {
                None => "running",
                Some(JobResult::Ok) => "ok",
                Some(JobResult::Error) => "error",
            },
            result = match r.result {
                None => "running",
                Some(JobResult::Ok) => "ok",
                Some(JobResult::Error) => "failed",
            },
            what = esc(r.error.as_deref().or(r.summary.as_deref()).unwrap_or("")),
        )
    };
    let mut rows = String::new();
    for r in j.running.iter().chain(&j.recent) {
        rows.push_str(&row(r));
    }
    let body = format!(
        "{approvals}<h2>Jobs</h2><table id=\"jobs\"><thead><tr><th>Job</th><th>Group</th><th>Started</th><th>Duration</th><th>Result</th>\
         <th>Summary</th></tr></thead><tbody>{rows}</tbody></table>",
        approvals = approvals(runs)
    );
    page("Jobs", "/jobs", &body)
}

/// `/login`: a token form for browsers (the API takes `Authorization: Bearer`).
pub fn login(message: Option<&str>) -> String {
    let msg = message.map_or(String::new(), |m| {
        format!("<p class=\"verification bad\">{}</p>", esc(m))
    });
    page(
        "Sign in",
        "",
        &format!(
            "{msg}<form method=\"post\" action=\"/login\"><label>Console token \
             <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required></label> \
             <button type=\"submit\">Sign in</button></form>"
        ),
    )
}

/// An error page.
pub fn error(status: u16, message: &str) -> String {
    page(&format!("Error {status}"), "", &format!("<p>{}</p>", esc(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_could_open_markup() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert!(error(404, "<img src=x onerror=1>").contains("&lt;img src=x onerror=1&gt;"));
        assert!(!login(Some("<b>")).contains("<b>"));
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(human_secs(1.25), "1.2 s");
        assert_eq!(human_secs(42.0), "42 s");
        assert_eq!(human_secs(185.0), "3 min 5 s");
        assert_eq!(human_secs(7800.0), "2 h 10 min");
        assert_eq!(human_secs(90_000.0), "1 d 1 h");
    }

    #[test]
    fn the_sparkline_spans_24_hours() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let samples = [
            RpoSample {
                at: now.timestamp() - 86_400,
                rpo_seconds: 10.0,
            },
            RpoSample {
                at: now.timestamp(),
                rpo_seconds: 20.0,
            },
        ];
        let svg = sparkline(&samples, Some(30.0), now);
        assert!(svg.contains("M0,"), "{svg}");
        assert!(svg.contains(" L160,"), "{svg}");
        assert!(svg.contains("class=\"objective\""), "{svg}");
        // A day at one sample a minute is drawn with one point per pixel column.
        let day: Vec<RpoSample> = (0..1440)
            .map(|m| RpoSample {
                at: now.timestamp() - 86_400 + m * 60,
                rpo_seconds: (m % 7) as f32,
            })
            .collect();
        let svg = sparkline(&day, None, now);
        assert!(svg.matches(" L").count() <= 160, "{svg}");
    }
}
