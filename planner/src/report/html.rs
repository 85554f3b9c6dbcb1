//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, no
//! network) that reads well on screen and on paper: the verdict first, then
//! objectives against achieved, the step timeline as a Gantt chart, the
//! evidence, the replication lag, the environment and the sign-off.

use std::fmt::Write;

use super::{DrillReport, Verdict, xml_escape as esc};

const CSS: &str = r#"
:root { --ok:#1b7f3b; --warn:#a86500; --bad:#b3261e; --ink:#1d1d1f; --muted:#5f6368; --line:#d9dce1; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); margin: 0 auto; max-width: 980px; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.sub { color: var(--muted); margin: 0 0 16px; }
.verdict { border-radius: 8px; padding: 14px 18px; color: #fff; font-size: 20px; font-weight: 700; }
.verdict ul { font-size: 14px; font-weight: 400; margin: 6px 0 0; padding-left: 20px; }
.passed { background: var(--ok); } .passed_with_conditions { background: var(--warn); } .failed { background: var(--bad); }
table { border-collapse: collapse; width: 100%; margin: 6px 0; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #f4f5f7; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td:nth-child(2) code { white-space: nowrap; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; word-break: break-all; }
.ok { color: var(--ok); font-weight: 600; } .bad { color: var(--bad); font-weight: 600; } .muted { color: var(--muted); }
svg text { font: 11px system-ui, sans-serif; fill: var(--ink); }
.signoff td { height: 34px; }
@media print { body { padding: 0; max-width: none; } h2 { break-after: avoid; } table, svg { break-inside: avoid; } .verdict { -webkit-print-color-adjust: exact; print-color-adjust: exact; } }
"#;

fn secs(v: Option<f64>) -> String {
    v.map(|s| format!("{s:.1} s")).unwrap_or_else(|| "—".into())
}

/// Objectives against achieved: one bar per measure, the objective as a mark.
fn objectives_chart(r: &DrillReport) -> String {
    let rows = [
        ("RPO", r.achieved.rpo_secs, r.objectives.rpo_secs),
        ("RTO", r.achieved.rto_secs, r.objectives.rto_secs),
        (
            "data lost (app)",
            r.achieved.data_loss.as_ref().map(|d| d.seconds),
            r.objectives.rpo_secs,
        ),
    ];
    let max = rows
        .iter()
        .flat_map(|(_, a, o)| [*a, *o])
        .flatten()
        .fold(1.0f64, f64::max)
        * 1.1;
    let (w, left, bar_w) = (900.0, 130.0, 640.0);
    let mut s = format!(
        r#"<svg role="img" aria-label="objectives against achieved" viewBox="0 0 {w} {}" width="100%">"#,
        rows.len() * 36 + 20
    );
    for (i, (name, achieved, objective)) in rows.iter().enumerate() {
        let y = 10.0 + i as f64 * 36.0;
        let _ = write!(s, r#"<text x="0" y="{}">{name}</text>"#, y + 15.0);
        let _ = write!(
            s,
            r##"<rect x="{left}" y="{y}" width="{bar_w}" height="20" fill="#f4f5f7"/>"##
        );
        if let Some(a) = achieved {
            let over = objective.is_some_and(|o| *a > o);
            let _ = write!(
                s,
                r#"<rect x="{left}" y="{y}" width="{:.1}" height="20" fill="{}"><title>achieved {a:.1} s</title></rect>"#,
                (a / max * bar_w).max(1.0),
                if over { "#b3261e" } else { "#1b7f3b" }
            );
        }
        if let Some(o) = objective {
            let x = left + o / max * bar_w;
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{}" stroke="#1d1d1f" stroke-width="2" stroke-dasharray="4 2"><title>objective {o:.0} s</title></line>"##,
                y - 3.0,
                y + 23.0
            );
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}">{} / objective {}</text>"#,
            left + bar_w + 10.0,
            y + 15.0,
            secs(*achieved),
            objective.map(|o| format!("{o:.0} s")).unwrap_or_else(|| "none".into())
        );
    }
    s.push_str("</svg>");
    s
}

/// The steps as a Gantt chart over seconds after T0.
fn gantt(r: &DrillReport) -> String {
    let end = r
        .steps
        .iter()
        .filter_map(|s| s.end_secs)
        .fold(r.achieved.rto_secs.unwrap_or(1.0), f64::max)
        .max(0.5)
        * 1.05;
    let (left, width) = (170.0, 700.0);
    let h = r.steps.len() as f64 * 22.0 + 40.0;
    let mut s = format!(r#"<svg role="img" aria-label="step timeline" viewBox="0 0 900 {h}" width="100%">"#);
    for i in 0..=5 {
        let t = end * i as f64 / 5.0;
        let x = left + width * i as f64 / 5.0;
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="0" y2="{}" stroke="#d9dce1"/><text x="{x:.1}" y="{}" text-anchor="middle">{t:.prec$} s</text>"##,
            h - 22.0,
            h - 8.0,
            prec = if end < 5.0 { 2 } else { 1 }
        );
    }
    if let Some(rto) = r.achieved.rto_secs {
        let x = left + rto / end * width;
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="0" y2="{}" stroke="#1b7f3b" stroke-width="2"><title>every check green: RTO {rto:.1} s</title></line>"##,
            h - 22.0
        );
    }
    for (i, st) in r.steps.iter().enumerate() {
        let y = 4.0 + i as f64 * 22.0;
        let _ = write!(s, r#"<text x="0" y="{}">{}</text>"#, y + 13.0, esc(&st.id));
        let color = match st.status.as_str() {
            "succeeded" => "#1b7f3b",
            "tolerated" => "#a86500",
            "skipped" => "#9aa0a6",
            _ => "#b3261e",
        };
        match (st.start_secs, st.end_secs) {
            (Some(a), Some(b)) => {
                let _ = write!(
                    s,
                    r#"<rect x="{:.1}" y="{y}" width="{:.1}" height="16" rx="2" fill="{color}"><title>{} {}: {:.2} s → {:.2} s</title></rect>"#,
                    left + a / end * width,
                    ((b - a) / end * width).max(2.0),
                    esc(&st.id),
                    esc(&st.status),
                    a,
                    b
                );
            }
            _ => {
                let _ = write!(
                    s,
                    r#"<text x="{left}" y="{}" class="muted">{} </text>"#,
                    y + 13.0,
                    esc(&st.status)
                );
            }
        }
    }
    s.push_str("</svg>");
    s
}

pub fn render(r: &DrillReport) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Drill {id} — {verdict}</title><style>{CSS}</style></head><body>"#,
        id = esc(&r.drill_id),
        verdict = r.verdict.label()
    );
    let _ = write!(
        h,
        r#"<h1>Disaster-recovery drill of group {g}</h1><p class="sub">Drill <code>{id}</code> · runbook {rb} · disaster instant (T0) {t0}</p>"#,
        g = esc(&r.group),
        id = esc(&r.drill_id),
        rb = esc(&r.runbook.name),
        t0 = esc(&r.disaster_at)
    );
    let cls = match r.verdict {
        Verdict::Passed => "passed",
        Verdict::PassedWithConditions => "passed_with_conditions",
        Verdict::Failed => "failed",
    };
    let _ = write!(h, r#"<div class="verdict {cls}">{}<ul>"#, r.verdict.label());
    for reason in &r.reasons {
        let _ = write!(h, "<li>{}</li>", esc(reason));
    }
    h.push_str("</ul></div>");

    h.push_str("<h2>Objectives and achieved</h2>");
    h.push_str(&objectives_chart(r));
    h.push_str("<table><tr><th>measure</th><th>objective</th><th>achieved</th><th>how measured</th></tr>");
    let _ = write!(
        h,
        "<tr><td>RPO</td><td class=num>{}</td><td class=num>{}</td><td>T0 − taken_at of point {}</td></tr>",
        secs(r.objectives.rpo_secs),
        secs(r.achieved.rpo_secs),
        r.point
            .as_ref()
            .map(|p| format!("{} ({})", p.seq, esc(&p.taken_at)))
            .unwrap_or_else(|| "—".into())
    );
    let _ = write!(
        h,
        "<tr><td>RTO</td><td class=num>{}</td><td class=num>{}</td><td>T0 → every check green</td></tr>",
        secs(r.objectives.rto_secs),
        secs(r.achieved.rto_secs)
    );
    match &r.achieved.data_loss {
        Some(d) => {
            let _ = write!(
                h,
                "<tr><td>data lost (application)</td><td class=num>{}</td><td class=num>{:.1} s, {} records</td><td>the workload's own records in the recovered volume (last valid record {}, {} corrupt)</td></tr>",
                secs(r.objectives.rpo_secs),
                d.seconds,
                d.records,
                d.last_record.map(|x| x.to_string()).unwrap_or_else(|| "none".into()),
                d.corrupt_records
            );
        }
        None => h.push_str(
            "<tr><td>data lost (application)</td><td class=num>—</td><td class=num>—</td><td class=muted>the service exposes no records to count</td></tr>",
        ),
    }
    if let Some(p) = &r.promote {
        let _ = write!(
            h,
            "<tr><td>promote</td><td class=num>—</td><td class=num>{}</td><td>{}</td></tr>",
            if p.instant { "instant" } else { "full restore" },
            if p.instant {
                format!(
                    "step <code>{}</code> served the point over NBD and attached its volumes at once: services could start at T0 + {}; RTO does not wait for a restore",
                    esc(&p.step),
                    secs(p.service_start_secs)
                )
            } else {
                format!(
                    "step <code>{}</code> restored every byte before the next step (done at T0 + {})",
                    esc(&p.step),
                    secs(p.service_start_secs)
                )
            }
        );
        if p.instant {
            let what = if p.hydration.is_empty() {
                "hydration off (sandbox only)".to_string()
            } else {
                p.hydration
                    .iter()
                    .map(|v| {
                        format!(
                            "{} → {}: {} of {} bytes, {}",
                            esc(&v.volume),
                            esc(&v.target),
                            v.copied,
                            v.size,
                            esc(&v.state)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let _ = write!(
                h,
                "<tr><td>RTO: service start</td><td class=num>—</td><td class=num>{}</td><td>T0 → the instant promote's end</td></tr>\
                 <tr><td>RTO: hydration</td><td class=num>—</td><td class=num>{}</td><td>T0 → the point copied into the targets in the background: {what}</td></tr>",
                secs(p.service_start_secs),
                secs(p.hydration_end_secs)
            );
            if let Some(b) = p.repository_read_bytes {
                let _ = write!(
                    h,
                    "<tr><td>read from the repository</td><td class=num>—</td><td class=num>{:.1} MiB</td><td>{b} sealed bytes the instant promote's server read (index, segments, chunks), as counted</td></tr>",
                    b as f64 / (1u64 << 20) as f64
                );
            }
        }
    }
    h.push_str("</table>");

    h.push_str("<h2>Step timeline</h2>");
    h.push_str(&gantt(r));
    h.push_str("<table><tr><th>step</th><th>action</th><th>status</th><th>start</th><th>end</th><th>output</th></tr>");
    for s in &r.steps {
        let st = match s.status.as_str() {
            "succeeded" => format!("<span class=ok>{}</span>", s.status),
            "skipped" => format!("<span class=muted>{}</span>", s.status),
            other => format!("<span class=bad>{}</span>", esc(other)),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td><td>{st}</td><td class=num>{}</td><td class=num>{}</td><td><code>{}</code></td></tr>",
            esc(&s.id),
            esc(&s.action),
            secs(s.start_secs),
            secs(s.end_secs),
            esc(&s.excerpt)
        );
    }
    h.push_str("</table>");

    h.push_str("<h2>Checks and evidence</h2><table><tr><th>check</th><th>result</th><th>evidence</th></tr>");
    for c in &r.checks {
        let ev: Vec<String> = c
            .evidence
            .iter()
            .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
            .collect();
        let _ = write!(
            h,
            "<tr><td>{} <span class=muted>({})</span></td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&c.step),
            esc(&c.action),
            if c.passed {
                "<span class=ok>pass</span>"
            } else {
                "<span class=bad>fail</span>"
            },
            ev.join(" · ")
        );
    }
    h.push_str(
        "</table><table><tr><th>volume</th><th>restored to (sandbox)</th><th>point's volume hash (matched)</th></tr>",
    );
    for v in &r.volumes {
        let _ = write!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            esc(&v.name),
            esc(&v.path),
            esc(&v.point_hash)
        );
    }
    h.push_str("</table>");

    let l = &r.replication_lag;
    h.push_str("<h2>Replication during the drill</h2>");
    match &l.unavailable {
        Some(why) => {
            let _ = write!(h, "<p class=muted>Not observed: {}</p>", esc(why));
        }
        None => {
            let _ = write!(
                h,
                "<table><tr><th>lag before</th><th>max lag during</th><th>lag after</th><th>points committed during</th><th>RPO objective exceeded</th></tr><tr><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td>{}</td></tr></table>",
                secs(l.before_secs),
                secs(l.max_during_secs),
                secs(l.after_secs),
                l.points_during,
                if l.exceeded_rpo {
                    "<span class=bad>yes</span>"
                } else {
                    "<span class=ok>no</span>"
                }
            );
        }
    }

    let e = &r.environment;
    let _ = write!(
        h,
        "<h2>Environment</h2><table><tr><th>host</th><td>{}</td></tr><tr><th>system</th><td>{}</td></tr><tr><th>lifeline</th><td>{}</td></tr><tr><th>sandbox</th><td><code>{}</code>{}</td></tr><tr><th>teardown</th><td>{}</td></tr><tr><th>ports</th><td>{}</td></tr><tr><th>runbook digest</th><td><code>{}</code></td></tr><tr><th>operator</th><td>{} ({})</td></tr><tr><th>audit head</th><td><code>{}</code></td></tr><tr><th>next drill due</th><td>{}</td></tr></table>",
        esc(&e.host),
        esc(&e.os),
        esc(&e.lifeline_version),
        esc(&e.sandbox),
        e.network_namespace
            .as_ref()
            .map(|n| format!(", network namespace <code>{}</code>", esc(n)))
            .unwrap_or_default(),
        e.teardown
            .iter()
            .chain(e.leftovers.iter())
            .map(|t| esc(t))
            .collect::<Vec<_>>()
            .join("<br>"),
        e.ports
            .iter()
            .map(|(k, v)| format!("{}={v}", esc(k)))
            .collect::<Vec<_>>()
            .join(", "),
        esc(&r.runbook.digest),
        esc(r.operator.as_deref().unwrap_or("—")),
        esc(&r.user),
        r.audit_head
            .as_ref()
            .map(|a| format!("entry {} {}", a.seq, &a.hash))
            .unwrap_or_default(),
        esc(&r.next_drill_due)
    );
    let _ = write!(
        h,
        "<h2>Sign-off</h2><table class=signoff><tr><th>prepared by</th><td>{}</td></tr><tr><th>reviewed by</th><td></td></tr><tr><th>approved by</th><td></td></tr><tr><th>date</th><td></td></tr></table>",
        esc(&r.sign_off.prepared_by)
    );
    h.push_str("<p class=muted>This report is covered by manifest.json, signed with the planner's key: <code>lifeline report verify DIR --pubkey signer.pub</code>.</p></body></html>\n");
    h
}
