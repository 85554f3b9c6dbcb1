//! A drill's verdict: the word an auditor reads first. Below the report, the
//! audit chain and the planner catalog, which all record it.

use serde::{Deserialize, Serialize};

/// How a drill ended: every check green within the objectives, green but over
/// an objective (or with a caveat), or not recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Passed,
    PassedWithConditions,
    Failed,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Passed => "PASSED",
            Verdict::PassedWithConditions => "PASSED WITH CONDITIONS",
            Verdict::Failed => "FAILED",
        }
    }
}
