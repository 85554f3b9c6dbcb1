//! The netns flavour's link: a primary and a secondary network namespace joined
//! by a veth pair, each end with its own address in 198.18.0.0/15 (RFC 2544's
//! benchmarking range, never routed). Names and the /30 subnet derive from the
//! testbed's id, so a leftover of a crashed run of the same directory has the
//! same names and is deleted before they are made again. Partitions are link
//! down/up; bandwidth is `tc … tbf` on both ends (this kernel has no netem);
//! loss is an nftables `numgen random` drop rule in both namespaces.

use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TestbedError};
use crate::units::tc_rate;

/// The two namespaces and the veth pair between them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetnsLink {
    pub primary_ns: String,
    pub secondary_ns: String,
    pub primary_veth: String,
    pub secondary_veth: String,
    pub primary_addr: String,
    pub secondary_addr: String,
}

/// Runs a command; its stderr in the error.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| TestbedError::io(format!("run {program} (is it installed?)"), e))?;
    if !out.status.success() {
        return Err(TestbedError::Command {
            command: format!("{program} {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The nftables table the loss rule lives in.
const NFT_TABLE: &str = "lifeline_testbed";

impl NetnsLink {
    /// Names and addresses for testbed `id` (hex).
    pub fn for_id(id: &str) -> NetnsLink {
        let n = u32::from_str_radix(&id[..id.len().min(8)], 16).unwrap_or(0) % 32768;
        // 198.18.0.0/15 holds 32768 /30 subnets.
        let base = (198u32 << 24) | (18 << 16) | (n * 4);
        let ip = |host: u32| {
            let a = base + host;
            format!("{}.{}.{}.{}", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255)
        };
        let short = &id[..id.len().min(8)];
        NetnsLink {
            primary_ns: format!("lltb-{short}-p"),
            secondary_ns: format!("lltb-{short}-s"),
            primary_veth: format!("lltb{short}p"),
            secondary_veth: format!("lltb{short}s"),
            primary_addr: ip(1),
            secondary_addr: ip(2),
        }
    }

    /// Namespaces whose names start with `lltb-` (ours, maybe leftovers).
    pub fn list_namespaces() -> Vec<String> {
        run("ip", &["netns", "list"])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with("lltb-"))
            .map(String::from)
            .collect()
    }

    /// True when either namespace exists.
    pub fn exists(&self) -> bool {
        let all = Self::list_namespaces();
        all.contains(&self.primary_ns) || all.contains(&self.secondary_ns)
    }

    /// Makes the namespaces and the link (removing a leftover of the same names first).
    pub fn create(&self) -> Result<()> {
        self.delete();
        run("ip", &["netns", "add", &self.primary_ns])?;
        run("ip", &["netns", "add", &self.secondary_ns])?;
        run(
            "ip",
            &[
                "link",
                "add",
                &self.primary_veth,
                "netns",
                &self.primary_ns,
                "type",
                "veth",
                "peer",
                "name",
                &self.secondary_veth,
                "netns",
                &self.secondary_ns,
            ],
        )?;
        for (ns, veth, addr) in self.ends() {
            run("ip", &["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", veth])?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
            run("ip", &["-n", ns, "link", "set", veth, "up"])?;
        }
        Ok(())
    }

    fn ends(&self) -> [(&str, &str, &str); 2] {
        [
            (&self.primary_ns, &self.primary_veth, &self.primary_addr),
            (&self.secondary_ns, &self.secondary_veth, &self.secondary_addr),
        ]
    }

    /// Deletes both namespaces (and with them the veth pair, qdiscs and rules);
    /// missing ones are fine.
    pub fn delete(&self) {
        for ns in [&self.primary_ns, &self.secondary_ns] {
            let _ = run("ip", &["netns", "del", ns]);
        }
    }

    /// Link down (a partition) or up (healed), on both ends.
    pub fn set_link(&self, up: bool) -> Result<()> {
        for (ns, veth, _) in self.ends() {
            run("ip", &["-n", ns, "link", "set", veth, if up { "up" } else { "down" }])?;
        }
        Ok(())
    }

    /// A `tc tbf` rate on both ends, or none.
    pub fn set_rate(&self, bytes_per_sec: Option<u64>) -> Result<()> {
        for (ns, veth, _) in self.ends() {
            let _ = run("ip", &["netns", "exec", ns, "tc", "qdisc", "del", "dev", veth, "root"]);
            if let Some(r) = bytes_per_sec {
                // A burst of at least one 1 ms worth of data (and 32 KiB), a 100 ms queue.
                let burst = (r / 1000).max(32 << 10).to_string();
                run(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        ns,
                        "tc",
                        "qdisc",
                        "add",
                        "dev",
                        veth,
                        "root",
                        "tbf",
                        "rate",
                        &tc_rate(r),
                        "burst",
                        &burst,
                        "latency",
                        "100ms",
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// Drops `percent` of the packets arriving at each end (0 removes the rule).
    pub fn set_loss(&self, percent: f64) -> Result<()> {
        if !(0.0..=100.0).contains(&percent) {
            return Err(TestbedError::Invalid(format!(
                "loss {percent}% is not between 0 and 100"
            )));
        }
        let per_mille = (percent * 10.0).round() as u32;
        for (ns, veth, _) in self.ends() {
            let _ = run(
                "ip",
                &["netns", "exec", ns, "nft", "delete", "table", "inet", NFT_TABLE],
            );
            if per_mille == 0 {
                continue;
            }
            let rules = format!(
                "table inet {NFT_TABLE} {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    iifname \"{veth}\" numgen random mod 1000 < {per_mille} drop\n  }}\n}}\n"
            );
            let file = std::env::temp_dir().join(format!("{ns}.nft"));
            std::fs::write(&file, rules).map_err(|e| TestbedError::io(format!("write {}", file.display()), e))?;
            let r = run(
                "ip",
                &["netns", "exec", ns, "nft", "-f", file.to_str().unwrap_or_default()],
            );
            let _ = std::fs::remove_file(&file);
            r.map_err(|e| match e {
                TestbedError::Io { .. } => {
                    TestbedError::Invalid("packet loss needs nftables (`apt-get install nftables`)".into())
                }
                e => e,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_addresses_stay_in_the_benchmark_range() {
        for id in ["00000000", "ffffffff", "1234abcd"] {
            let l = NetnsLink::for_id(id);
            assert!(l.primary_veth.len() <= 15, "{}", l.primary_veth);
            assert!(l.primary_addr.starts_with("198.18.") || l.primary_addr.starts_with("198.19."));
            assert_ne!(l.primary_addr, l.secondary_addr);
        }
        assert_eq!(NetnsLink::for_id("00000000").primary_addr, "198.18.0.1");
        assert_eq!(NetnsLink::for_id("ffffffff").secondary_addr, "198.19.255.254");
    }
}
