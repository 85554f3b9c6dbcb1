//! Fault injection on a running testbed: kill -9 and restart of the agent or a
//! receiver, link cut and heal (proxy cut, plus link down/up in netns),
//! impairments changed at run time (latency, jitter, bandwidth, stalls, loss),
//! the secondary's disk filled and freed, and a stored object damaged (bits
//! flipped, its pack truncated, or its pack deleted). Each returns what it did,
//! as JSON, and updates `testbed.json`.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::{Flavour, TENANT, Testbed, disk, process, restart};
use crate::error::{Result, TestbedError};
use crate::impairment_proxy::ProxyCommand;

/// How to damage a stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectDamage {
    /// Flip bits in the middle of the object (bit rot).
    FlipBits,
    /// Cut its pack file in the middle of the object.
    Truncate,
    /// Delete its pack file.
    Delete,
}

/// A fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Partition the sites: the proxy drops every connection and refuses new
    /// ones; in netns the veth link also goes down.
    Cut,
    Heal,
    /// Reset the connections in flight (the link stays up).
    Reset,
    KillAgent,
    RestartAgent,
    /// kill -9 of a site's receiver (`secondary` by default).
    KillReceiver {
        site: String,
    },
    RestartReceiver {
        site: String,
    },
    /// Fill the secondary's disk (root: a tmpfs) until ENOSPC.
    FillDisk,
    FreeDisk,
    /// Damage one stored object on the secondary.
    CorruptObject(ObjectDamage),
    /// Change impairments; `None` keeps a setting.
    Impair {
        latency: Option<Duration>,
        jitter: Option<Duration>,
        /// `Some(None)` removes the cap.
        rate: Option<Option<u64>>,
        stall_every: Option<Option<Duration>>,
        stall_for: Option<Duration>,
        loss_percent: Option<f64>,
    },
}

/// What a fault did.
#[derive(Debug, Clone, Serialize)]
pub struct FaultOutcome {
    pub fault: String,
    pub detail: serde_json::Value,
}

/// One object in a durable pack, from the pack's footer.
#[derive(Debug, Clone, Serialize)]
pub struct StoredObject {
    pub pack: PathBuf,
    pub id: String,
    pub offset: u64,
    pub len: u64,
    pub kind: u8,
}

/// Pack layout (FORMAT.md, "Pack file").
const PACK_HEADER_LEN: u64 = 8;
const PACK_ENTRY_LEN: u64 = 45;
const PACK_TRAILER_LEN: u64 = 40;
const KIND_CHUNK: u8 = 1;

/// The objects of every durable pack of `tenant` in `repo`, in path and offset order.
pub fn stored_objects(repo: &Path, tenant: &str) -> Result<Vec<StoredObject>> {
    let packs = repo.join("tenants").join(tenant).join("objects/packs");
    let mut files = Vec::new();
    for shard in fs::read_dir(&packs).map_err(|e| TestbedError::io(format!("list {}", packs.display()), e))? {
        let shard = shard.map_err(|e| TestbedError::io(format!("list {}", packs.display()), e))?;
        let name = shard.file_name().to_string_lossy().into_owned();
        if name.len() != 2 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        for f in fs::read_dir(shard.path()).into_iter().flatten().flatten() {
            files.push(f.path());
        }
    }
    files.sort();
    let mut out = Vec::new();
    for pack in files {
        let bad = |why: &str| TestbedError::Invalid(format!("pack {}: {why}", pack.display()));
        let f = File::open(&pack).map_err(|e| TestbedError::io(format!("open {}", pack.display()), e))?;
        let len = f.metadata().map_err(|e| TestbedError::io("stat pack", e))?.len();
        if len < PACK_HEADER_LEN + PACK_TRAILER_LEN {
            return Err(bad("too short"));
        }
        let mut trailer = [0u8; PACK_TRAILER_LEN as usize];
        f.read_exact_at(&mut trailer, len - PACK_TRAILER_LEN)
            .map_err(|e| TestbedError::io("read pack", e))?;
        if &trailer[36..] != b"LLPE" {
            return Err(bad("no end magic"));
        }
        let n = u32::from_le_bytes(trailer[..4].try_into().expect("4")) as u64;
        let footer = n * PACK_ENTRY_LEN + PACK_TRAILER_LEN;
        if footer > len - PACK_HEADER_LEN {
            return Err(bad("footer longer than the pack"));
        }
        let mut entries = vec![0u8; (n * PACK_ENTRY_LEN) as usize];
        f.read_exact_at(&mut entries, len - footer)
            .map_err(|e| TestbedError::io("read pack", e))?;
        let mut objs: Vec<StoredObject> = entries
            .chunks_exact(PACK_ENTRY_LEN as usize)
            .map(|e| StoredObject {
                pack: pack.clone(),
                id: hex::encode(&e[..32]),
                offset: u64::from_le_bytes(e[32..40].try_into().expect("8")),
                len: u32::from_le_bytes(e[40..44].try_into().expect("4")) as u64,
                kind: e[44],
            })
            .collect();
        objs.sort_by_key(|o| o.offset);
        out.extend(objs);
    }
    Ok(out)
}

/// Damages the middle chunk of the secondary's repository (deterministic for a
/// given repository), which is typically shared by every point.
pub fn corrupt_object(repo: &Path, tenant: &str, how: ObjectDamage) -> Result<StoredObject> {
    let chunks: Vec<StoredObject> = stored_objects(repo, tenant)?
        .into_iter()
        .filter(|o| o.kind == KIND_CHUNK)
        .collect();
    let Some(o) = chunks.get(chunks.len() / 2).cloned() else {
        return Err(TestbedError::Invalid(format!(
            "no stored chunk in {} yet: wait for a first point",
            repo.display()
        )));
    };
    let ctx = |what: &str| format!("{what} {}", o.pack.display());
    match how {
        ObjectDamage::FlipBits => {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&o.pack)
                .map_err(|e| TestbedError::io(ctx("open"), e))?;
            let at = o.offset + o.len / 2;
            let mut b = [0u8; 4];
            f.read_exact_at(&mut b, at)
                .map_err(|e| TestbedError::io(ctx("read"), e))?;
            for x in &mut b {
                *x ^= 0x55;
            }
            f.write_all_at(&b, at).map_err(|e| TestbedError::io(ctx("write"), e))?;
            f.sync_all().map_err(|e| TestbedError::io(ctx("fsync"), e))?;
        }
        ObjectDamage::Truncate => {
            let f = OpenOptions::new()
                .write(true)
                .open(&o.pack)
                .map_err(|e| TestbedError::io(ctx("open"), e))?;
            f.set_len(o.offset + o.len / 2)
                .map_err(|e| TestbedError::io(ctx("truncate"), e))?;
        }
        ObjectDamage::Delete => fs::remove_file(&o.pack).map_err(|e| TestbedError::io(ctx("delete"), e))?,
    }
    Ok(o)
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl Testbed {
    /// Injects a fault.
    pub fn fault(&mut self, fault: &Fault) -> Result<FaultOutcome> {
        let (name, detail) = match fault {
            Fault::Cut => {
                let proxy = self.proxy(&ProxyCommand::Cut)?;
                if let Some(l) = &self.state.link.netns {
                    l.set_link(false)?;
                }
                self.state.link.state = "cut".into();
                ("cut", serde_json::json!({ "proxy": proxy }))
            }
            Fault::Heal => {
                if let Some(l) = &self.state.link.netns {
                    l.set_link(true)?;
                }
                let proxy = self.proxy(&ProxyCommand::Heal)?;
                self.state.link.state = "up".into();
                ("heal", serde_json::json!({ "proxy": proxy }))
            }
            Fault::Reset => (
                "reset",
                serde_json::json!({ "proxy": self.proxy(&ProxyCommand::Reset)? }),
            ),
            Fault::KillAgent => ("kill-agent", self.kill("agent")?),
            Fault::KillReceiver { site } => ("kill-receiver", self.kill(&format!("receiver-{site}"))?),
            Fault::RestartAgent => ("restart-agent", self.restart("agent")?),
            Fault::RestartReceiver { site } => ("restart-receiver", self.restart(&format!("receiver-{site}"))?),
            Fault::FillDisk => {
                let d = self.disk()?;
                let bytes = disk::fill(&d)?;
                ("fill-disk", serde_json::json!({ "disk": d, "filler_bytes": bytes }))
            }
            Fault::FreeDisk => {
                let d = self.disk()?;
                disk::free(&d)?;
                ("free-disk", serde_json::json!({ "disk": d }))
            }
            Fault::CorruptObject(how) => {
                let repo = self.state.site("secondary")?.repo.clone();
                let o = corrupt_object(&repo, TENANT, *how)?;
                ("corrupt-object", serde_json::json!({ "how": how, "object": o }))
            }
            Fault::Impair {
                latency,
                jitter,
                rate,
                stall_every,
                stall_for,
                loss_percent,
            } => {
                let mut pairs = Vec::new();
                let link = &mut self.state.link;
                if let Some(l) = latency {
                    pairs.push(("latency".to_string(), ms(*l)));
                    link.latency_ms = l.as_millis() as u64;
                }
                if let Some(j) = jitter {
                    pairs.push(("jitter".to_string(), ms(*j)));
                    link.jitter_ms = j.as_millis() as u64;
                }
                if let Some(s) = stall_every {
                    pairs.push(("stall_every".to_string(), s.map(ms).unwrap_or_else(|| "off".into())));
                    link.stall_every_ms = s.map(|d| d.as_millis() as u64);
                }
                if let Some(s) = stall_for {
                    pairs.push(("stall_for".to_string(), ms(*s)));
                    link.stall_for_ms = s.as_millis() as u64;
                }
                if let Some(r) = rate {
                    link.rate_bytes_per_sec = *r;
                    match &link.netns {
                        Some(l) => l.set_rate(*r)?,
                        None => pairs.push((
                            "rate".to_string(),
                            r.map(|b| format!("{b}B")).unwrap_or_else(|| "off".into()),
                        )),
                    }
                }
                if let Some(p) = loss_percent {
                    match &link.netns {
                        Some(l) => l.set_loss(*p)?,
                        None if *p > 0.0 => {
                            return Err(TestbedError::Invalid(
                                "packet loss needs the netns flavour (loopback TCP has no packets to drop)".into(),
                            ));
                        }
                        None => {}
                    }
                    link.loss_percent = *p;
                }
                let proxy = self.proxy(&ProxyCommand::Set(pairs))?;
                ("impair", serde_json::json!({ "link": self.state.link, "proxy": proxy }))
            }
        };
        self.save()?;
        tracing::info!(fault = name, "fault injected");
        Ok(FaultOutcome {
            fault: name.into(),
            detail,
        })
    }

    fn kill(&mut self, name: &str) -> Result<serde_json::Value> {
        let p = self.process(name)?.clone();
        process::kill9(&p)?;
        Ok(serde_json::json!({ "process": name, "pid": p.pid, "signal": "KILL" }))
    }

    fn restart(&mut self, name: &str) -> Result<serde_json::Value> {
        restart(&mut self.state, name)?;
        let p = self.process(name)?;
        Ok(serde_json::json!({ "process": name, "pid": p.pid, "address": p.ready_value }))
    }

    fn disk(&self) -> Result<PathBuf> {
        self.state
            .site("secondary")?
            .disk
            .clone()
            .ok_or_else(|| TestbedError::NeedsRoot {
                what: format!(
                    "fill-disk (the secondary's repository on a small tmpfs; this {} testbed has none)",
                    match self.state.flavour {
                        Flavour::Local => "local",
                        Flavour::Netns => "netns",
                    }
                ),
            })
    }
}
