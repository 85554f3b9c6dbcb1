//! A drill's own network namespace (its ports rebound to free ones, its
//! services unreachable from production), removed when the drill ends.

use std::collections::BTreeMap;

/// Free loopback ports for the runbook's ports (nothing collides with production).
pub(super) fn free_ports(names: impl Iterator<Item = String>) -> super::Result<BTreeMap<String, u16>> {
    let mut held = Vec::new();
    let mut out = BTreeMap::new();
    for n in names {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(super::DrillError::FreePort)?;
        out.insert(n, l.local_addr()?.port());
        held.push(l); // hold each until all are chosen, so none repeats
    }
    Ok(out)
}

/// The drill's own network namespace (root and iproute2): its services listen
/// and its checks connect inside it, so nothing collides with production. Removed
/// on drop; a leftover of a crashed drill (its owner PID gone) is removed by the
/// next drill.
pub(super) struct SandboxNetns {
    pub(super) name: String,
}

pub(super) const NETNS_PREFIX: &str = "lldrill-";

pub(super) const NETNS_OWNERS: &str = "/run/lifeline-drills";

pub(super) fn ip(args: &[&str]) -> std::result::Result<(), String> {
    let o = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("run ip: {e} (install iproute2)"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

impl SandboxNetns {
    /// Creates the namespace, or says why the machine does not allow it.
    pub(super) fn create(drill_id: &str) -> std::result::Result<SandboxNetns, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("not root".into());
        }
        // Steps enter the namespace with nsenter (util-linux), not `ip netns
        // exec`, so they keep the drill's shared mount namespace.
        let nsenter = std::process::Command::new("nsenter")
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if !nsenter.is_ok_and(|s| s.success()) {
            return Err("no nsenter (install util-linux)".into());
        }
        Self::remove_leftovers();
        let tail: String = drill_id
            .chars()
            .rev()
            .take(6)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let name = format!("{NETNS_PREFIX}{tail}");
        ip(&["netns", "add", &name])?;
        let ns = SandboxNetns { name };
        let _ = std::fs::create_dir_all(NETNS_OWNERS);
        let _ = std::fs::write(
            std::path::Path::new(NETNS_OWNERS).join(&ns.name),
            std::process::id().to_string(),
        );
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub(super) fn remove_leftovers() {
        let Ok(out) = std::process::Command::new("ip").args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if !name.starts_with(NETNS_PREFIX) {
                continue;
            }
            let owner = std::fs::read_to_string(std::path::Path::new(NETNS_OWNERS).join(name)).unwrap_or_default();
            let alive = owner
                .trim()
                .parse::<i32>()
                .is_ok_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
            if !alive {
                tracing::info!(netns = name, "removing a crashed drill's network namespace");
                let _ = ip(&["netns", "del", name]);
                let _ = std::fs::remove_file(std::path::Path::new(NETNS_OWNERS).join(name));
            }
        }
    }
}

impl Drop for SandboxNetns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
        let _ = std::fs::remove_file(std::path::Path::new(NETNS_OWNERS).join(&self.name));
    }
}
