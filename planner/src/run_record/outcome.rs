//! What a step's action produced, typed: the point a promote served, the data
//! a workload check found lost, the pid a service got. The engine stores it in
//! the step's record as measured; reports and the pins a run must release read
//! it from there. The string map `${steps.ID.NAME}` templates read (and events
//! and `lifeline runs` show) is [`Outcome::view`] of it, never parsed back,
//! except once, by [`Outcome::from_view`], for records written before
//! outcomes were typed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Timestamp, format_timestamp, timestamp};
use crate::runbook::actions::Action;

/// One step's outcome; which variant follows from the step's action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// `replication.stop` and `replication.reverse` reached their agent; a
    /// replication step tolerated (or deferred) because it could not, did not.
    Reach { reachable: bool },
    /// `replication.final_sync`: the point the source agent committed.
    Sync {
        seq: u64,
        #[serde(with = "timestamp")]
        taken_at: Timestamp,
    },
    /// `replication.seed`: the point it wrote and the bytes it stored.
    Seed { seq: u64, bytes_stored: u64 },
    /// `volume.promote`.
    Promote(Promoted),
    /// `service.start`: the process started (or found still running).
    Start { pid: i32, log: PathBuf },
    /// `check.tcp`: connected after this long.
    Tcp { elapsed_ms: u64 },
    /// `check.http`: answered this status after this long.
    Http { status: u16, elapsed_ms: u64 },
    /// `check.command`: the attempt that passed.
    Command {
        exit: i32,
        stdout: String,
        attempts: u32,
        elapsed_ms: u64,
    },
    /// `check.volume`: the promoted copy's hash (the point's), and whether it
    /// equals the source (`None`: not compared, as in a drill or failover).
    Volume { hash: String, zero_loss: Option<bool> },
    /// `check.workload`: what the promoted copy's workload lost, measured
    /// against the run's start.
    Workload(WorkloadLoss),
    /// `approval`: who approved it.
    Approval { approved_by: String },
    /// `notify`: the webhook's answer.
    Notify { status: u16 },
    /// An action with no outputs (`service.stop`, `traffic.switch`, `wait`).
    Done,
}

/// What a `volume.promote` made available.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promoted {
    pub seq: u64,
    #[serde(with = "timestamp")]
    pub taken_at: Timestamp,
    pub pin: Pin,
    /// Each volume: where the promoted copy is and the point's hash of it.
    pub volumes: BTreeMap<String, PromotedVolume>,
    /// An instant promote: the point served instead of restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<Served>,
}

/// The lease a promote took on its point, so prune keeps it while the run uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pin {
    /// Held: the run releases it when it ends.
    Held,
    /// Not taken (the receiver refused or was unreachable; a recovery goes on).
    NotTaken,
    /// Held, then released.
    Released,
}

/// One promoted volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotedVolume {
    pub path: PathBuf,
    pub hash: String,
}

/// An instant promote's server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    pub address: String,
    pub overlay: PathBuf,
    /// Volume → the target it hydrates into (empty: hydration off).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hydrating: BTreeMap<String, PathBuf>,
}

/// What `check.workload` found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadLoss {
    pub last_seq: u64,
    /// `None`: unknown (no durable log to compare with).
    pub lost_records: Option<u64>,
    /// Seconds of writes lost, to the millisecond; `None`: unknown.
    pub lost_secs: Option<f64>,
    pub corrupt_records: u64,
    pub clean: bool,
}

impl Outcome {
    /// The outputs later steps read as `${steps.ID.NAME}`, as text.
    pub fn view(&self) -> BTreeMap<String, String> {
        let mut o = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            o.insert(k.to_string(), v);
        };
        match self {
            Outcome::Reach { reachable } => put("reachable", reachable.to_string()),
            Outcome::Sync { seq, taken_at } => {
                put("seq", seq.to_string());
                put("taken_at", format_timestamp(taken_at));
            }
            Outcome::Seed { seq, bytes_stored } => {
                put("seq", seq.to_string());
                put("bytes_stored", bytes_stored.to_string());
            }
            Outcome::Promote(p) => {
                put(
                    "pinned",
                    match p.pin {
                        Pin::Held => "true",
                        Pin::NotTaken => "false",
                        Pin::Released => "released",
                    }
                    .into(),
                );
                put("seq", p.seq.to_string());
                put("taken_at", format_timestamp(&p.taken_at));
                for (name, v) in &p.volumes {
                    put(&format!("path.{name}"), v.path.display().to_string());
                    put(&format!("hash.{name}"), v.hash.clone());
                }
                if let Some(s) = &p.served {
                    put("instant", "true".into());
                    put("served", s.address.clone());
                    put("overlay", s.overlay.display().to_string());
                    for (name, target) in &s.hydrating {
                        put(&format!("hydrate.{name}"), target.display().to_string());
                    }
                }
            }
            Outcome::Start { pid, log } => {
                put("pid", pid.to_string());
                put("log", log.display().to_string());
            }
            Outcome::Tcp { elapsed_ms } => put("elapsed_ms", elapsed_ms.to_string()),
            Outcome::Http { status, elapsed_ms } => {
                put("status", status.to_string());
                put("elapsed_ms", elapsed_ms.to_string());
            }
            Outcome::Command {
                exit,
                stdout,
                attempts,
                elapsed_ms,
            } => {
                put("exit", exit.to_string());
                put("stdout", stdout.clone());
                put("attempts", attempts.to_string());
                put("elapsed_ms", elapsed_ms.to_string());
            }
            Outcome::Volume { hash, zero_loss } => {
                put("hash", hash.clone());
                put(
                    "zero_loss",
                    zero_loss.map(|z| z.to_string()).unwrap_or_else(|| "unknown".into()),
                );
            }
            Outcome::Workload(w) => {
                put("last_seq", w.last_seq.to_string());
                put(
                    "lost_records",
                    w.lost_records
                        .map(|x| x.to_string())
                        .unwrap_or_else(|| "unknown".into()),
                );
                put(
                    "lost_secs",
                    w.lost_secs
                        .map(|x| format!("{x:.3}"))
                        .unwrap_or_else(|| "unknown".into()),
                );
                put("corrupt_records", w.corrupt_records.to_string());
                put("clean", w.clean.to_string());
            }
            Outcome::Approval { approved_by } => put("approved_by", approved_by.clone()),
            Outcome::Notify { status } => put("status", status.to_string()),
            Outcome::Done => {}
        }
        o
    }

    /// The outcome a record written before outcomes were typed implies, from
    /// the outputs it kept and the step's action (`None`: the step had none,
    /// or they do not read as that action's). The one place outputs are
    /// parsed: a migration of old records, so they resume and report as new ones.
    pub fn from_view(action: Action, o: &BTreeMap<String, String>) -> Option<Outcome> {
        if o.is_empty() {
            return None;
        }
        let get = |k: &str| o.get(k).map(String::as_str);
        let num = |k: &str| get(k).and_then(|v| v.parse::<u64>().ok());
        let time = |k: &str| {
            get(k)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
        };
        let tri = |k: &str| get(k).and_then(|v| v.parse::<bool>().ok());
        if get("reachable") == Some("false") {
            return Some(Outcome::Reach { reachable: false });
        }
        Some(match action {
            Action::ReplicationStop | Action::ReplicationReverse => Outcome::Reach {
                reachable: tri("reachable")?,
            },
            Action::ReplicationFinalSync => Outcome::Sync {
                seq: num("seq")?,
                taken_at: time("taken_at")?,
            },
            Action::ReplicationSeed => Outcome::Seed {
                seq: num("seq")?,
                bytes_stored: num("bytes_stored")?,
            },
            Action::VolumePromote => {
                let volumes = o
                    .iter()
                    .filter_map(|(k, path)| {
                        let name = k.strip_prefix("path.")?;
                        Some((
                            name.to_string(),
                            PromotedVolume {
                                path: PathBuf::from(path),
                                hash: get(&format!("hash.{name}")).unwrap_or_default().to_string(),
                            },
                        ))
                    })
                    .collect();
                let served = (get("instant") == Some("true")).then(|| Served {
                    address: get("served").unwrap_or_default().to_string(),
                    overlay: PathBuf::from(get("overlay").unwrap_or_default()),
                    hydrating: o
                        .iter()
                        .filter_map(|(k, v)| Some((k.strip_prefix("hydrate.")?.to_string(), PathBuf::from(v))))
                        .collect(),
                });
                Outcome::Promote(Promoted {
                    seq: num("seq")?,
                    taken_at: time("taken_at")?,
                    pin: match get("pinned") {
                        Some("true") => Pin::Held,
                        Some("released") => Pin::Released,
                        _ => Pin::NotTaken,
                    },
                    volumes,
                    served,
                })
            }
            Action::ServiceStart => Outcome::Start {
                pid: get("pid")?.parse().ok()?,
                log: PathBuf::from(get("log")?),
            },
            Action::CheckTcp => Outcome::Tcp {
                elapsed_ms: num("elapsed_ms")?,
            },
            Action::CheckHttp => Outcome::Http {
                status: get("status")?.parse().ok()?,
                elapsed_ms: num("elapsed_ms")?,
            },
            Action::CheckCommand => Outcome::Command {
                exit: get("exit")?.parse().ok()?,
                stdout: get("stdout").unwrap_or_default().to_string(),
                attempts: get("attempts").and_then(|v| v.parse().ok()).unwrap_or(1),
                elapsed_ms: num("elapsed_ms").unwrap_or(0),
            },
            Action::CheckVolume => Outcome::Volume {
                hash: get("hash")?.to_string(),
                zero_loss: tri("zero_loss"),
            },
            Action::CheckWorkload => Outcome::Workload(WorkloadLoss {
                last_seq: num("last_seq")?,
                lost_records: num("lost_records"),
                lost_secs: get("lost_secs").and_then(|v| v.parse().ok()),
                corrupt_records: num("corrupt_records").unwrap_or(0),
                clean: tri("clean").unwrap_or(false),
            }),
            Action::Approval => Outcome::Approval {
                approved_by: get("approved_by")?.to_string(),
            },
            Action::Notify => Outcome::Notify {
                status: get("status")?.parse().ok()?,
            },
            Action::ServiceStop | Action::TrafficSwitch | Action::Wait => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &str) -> Timestamp {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    pub(crate) fn promoted() -> Outcome {
        Outcome::Promote(Promoted {
            seq: 7,
            taken_at: at("2026-12-05T10:29:58.250Z"),
            pin: Pin::Held,
            volumes: BTreeMap::from([(
                "app".to_string(),
                PromotedVolume {
                    path: "/srv/app.img".into(),
                    hash: "ab".repeat(32),
                },
            )]),
            served: Some(Served {
                address: "127.0.0.1:10809".into(),
                overlay: "/run/x/overlay".into(),
                hydrating: BTreeMap::from([("app".to_string(), PathBuf::from("/srv/app.target"))]),
            }),
        })
    }

    fn every_kind() -> Vec<(Action, Outcome)> {
        vec![
            (Action::ReplicationStop, Outcome::Reach { reachable: true }),
            (
                Action::ReplicationFinalSync,
                Outcome::Sync {
                    seq: 3,
                    taken_at: at("2026-12-05T10:30:00.123Z"),
                },
            ),
            (
                Action::ReplicationSeed,
                Outcome::Seed {
                    seq: 1,
                    bytes_stored: 4096,
                },
            ),
            (Action::VolumePromote, promoted()),
            (
                Action::ServiceStart,
                Outcome::Start {
                    pid: 42,
                    log: "/run/x/app.log".into(),
                },
            ),
            (Action::CheckTcp, Outcome::Tcp { elapsed_ms: 12 }),
            (
                Action::CheckHttp,
                Outcome::Http {
                    status: 200,
                    elapsed_ms: 30,
                },
            ),
            (
                Action::CheckCommand,
                Outcome::Command {
                    exit: 0,
                    stdout: "ok".into(),
                    attempts: 2,
                    elapsed_ms: 1500,
                },
            ),
            (
                Action::CheckVolume,
                Outcome::Volume {
                    hash: "cd".repeat(32),
                    zero_loss: None,
                },
            ),
            (
                Action::CheckWorkload,
                Outcome::Workload(WorkloadLoss {
                    last_seq: 99,
                    lost_records: Some(4),
                    lost_secs: Some(1.25),
                    corrupt_records: 0,
                    clean: true,
                }),
            ),
            (
                Action::Approval,
                Outcome::Approval {
                    approved_by: "alice".into(),
                },
            ),
            (Action::Notify, Outcome::Notify { status: 204 }),
        ]
    }

    #[test]
    fn every_outcome_round_trips_through_json_and_its_view_reads_back_as_itself() {
        for (action, o) in every_kind() {
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), o, "{json}");
            // The migration of old records reads a view back as the outcome.
            assert_eq!(Outcome::from_view(action, &o.view()), Some(o.clone()), "{action:?}");
        }
        assert_eq!(Outcome::Done.view(), BTreeMap::new());
    }

    #[test]
    fn views_are_the_outputs_templates_have_always_read() {
        let v = promoted().view();
        let keys: Vec<&str> = v.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "hash.app",
                "hydrate.app",
                "instant",
                "overlay",
                "path.app",
                "pinned",
                "seq",
                "served",
                "taken_at"
            ]
        );
        assert_eq!(v["taken_at"], "2026-12-05T10:29:58.250Z");
        assert_eq!(v["pinned"], "true");
        let w = Outcome::Workload(WorkloadLoss {
            last_seq: 5,
            lost_records: None,
            lost_secs: Some(0.5),
            corrupt_records: 0,
            clean: false,
        })
        .view();
        assert_eq!(w["lost_records"], "unknown");
        assert_eq!(w["lost_secs"], "0.500");
    }
}
