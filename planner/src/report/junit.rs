//! `report.xml`: JUnit XML for CI pipelines — a testcase per objective and per check.

use super::{DrillReport, xml_escape};

pub fn render(r: &DrillReport) -> String {
    let mut cases = Vec::new();
    let objective = |name: &str, achieved: Option<f64>, objective: Option<f64>| -> (String, Option<String>) {
        let failure = match (achieved, objective) {
            (Some(a), Some(o)) if a > o => Some(format!("achieved {a:.1} s exceeds the objective {o:.0} s")),
            (None, Some(_)) => Some("not measured".to_string()),
            _ => None,
        };
        (
            format!(
                "objective {name}: achieved {} (objective {})",
                achieved.map(|a| format!("{a:.1} s")).unwrap_or("-".into()),
                objective.map(|o| format!("{o:.0} s")).unwrap_or("none".into())
            ),
            failure,
        )
    };
    cases.push((
        "objectives",
        objective("RPO", r.achieved.rpo_secs, r.objectives.rpo_secs),
        0.0,
    ));
    cases.push((
        "objectives",
        objective("RTO", r.achieved.rto_secs, r.objectives.rto_secs),
        0.0,
    ));
    for c in &r.checks {
        let t = r
            .steps
            .iter()
            .find(|s| s.id == c.step)
            .and_then(|s| Some(s.end_secs? - s.start_secs?))
            .unwrap_or(0.0);
        let failure = (!c.passed).then(|| {
            r.steps
                .iter()
                .find(|s| s.id == c.step)
                .map(|s| s.excerpt.clone())
                .unwrap_or_default()
        });
        cases.push(("checks", (format!("{} ({})", c.step, c.action), failure), t));
    }
    let failures = cases.iter().filter(|c| c.1.1.is_some()).count();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites name=\"lifeline drill {}\" tests=\"{}\" failures=\"{failures}\">\n  <testsuite name=\"drill {} of group {}\" tests=\"{}\" failures=\"{failures}\" timestamp=\"{}\">\n",
        xml_escape(&r.drill_id),
        cases.len(),
        xml_escape(&r.runbook.name),
        xml_escape(&r.group),
        cases.len(),
        xml_escape(&r.disaster_at)
    ));
    for (class, (name, failure), time) in &cases {
        x.push_str(&format!(
            "    <testcase classname=\"{class}\" name=\"{}\" time=\"{time:.3}\"",
            xml_escape(name)
        ));
        match failure {
            Some(f) => x.push_str(&format!(
                ">\n      <failure message=\"{}\"/>\n    </testcase>\n",
                xml_escape(f)
            )),
            None => x.push_str("/>\n"),
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}
