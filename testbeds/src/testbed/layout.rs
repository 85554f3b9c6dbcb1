//! A testbed's layout: its initial state (sites, processes, ports, files)
//! from a spec, and the lifeline.toml its processes read.

use super::*;

pub(super) fn initial_state(spec: &TestbedSpec, dir: &Path, id: &str, created_dir: bool) -> TestbedState {
    let netns = (spec.flavour == Flavour::Netns).then(|| NetnsLink::for_id(id));
    let site = |name: &str, ns: Option<String>, addr: String, disk: Option<PathBuf>| {
        let sdir = dir.join("sites").join(name);
        let repo = match &disk {
            Some(d) => d.join("repo"),
            None => sdir.join("repo"),
        };
        SiteState {
            namespace: ns,
            address: addr,
            dir: sdir,
            repo,
            receiver_url: String::new(),
            listen: String::new(),
            disk,
        }
    };
    let (pns, sns, paddr, saddr) = match &netns {
        Some(l) => (
            Some(l.primary_ns.clone()),
            Some(l.secondary_ns.clone()),
            l.primary_addr.clone(),
            l.secondary_addr.clone(),
        ),
        None => (None, None, "127.0.0.1".into(), "127.0.0.1".into()),
    };
    let disk = (spec.disk_size.is_some() && is_root()).then(|| dir.join("sites/secondary/disk"));
    let mut sites = BTreeMap::new();
    sites.insert("primary".into(), site("primary", pns, paddr, None));
    sites.insert("secondary".into(), site("secondary", sns, saddr, disk));
    let volume = dir.join("sites/primary/volumes/app.img");
    let owner = spec
        .owner
        .and_then(|pid| process::start_time(pid).map(|start_time| Owner { pid, start_time }));
    TestbedState {
        format: STATE_FORMAT.into(),
        version: STATE_VERSION,
        id: id.into(),
        dir: dir.to_path_buf(),
        flavour: spec.flavour,
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        owner,
        bin: spec.bin.clone(),
        sites,
        link: LinkState {
            state: "up".into(),
            latency_ms: ms(spec.latency),
            jitter_ms: ms(spec.jitter),
            rate_bytes_per_sec: spec.rate,
            stall_every_ms: spec.stall_every.map(ms),
            stall_for_ms: ms(spec.stall_for),
            loss_percent: spec.loss_percent,
            proxy_socket: dir.join("proxy.sock"),
            proxy_url: String::new(),
            netns,
        },
        processes: BTreeMap::new(),
        workload: WorkloadInfo {
            addr: String::new(),
            durable_log: crate::workload::service::default_durable_log(&volume),
            volume,
            size: spec.volume_size,
            write_every_ms: ms(spec.write_every),
        },
        agent: AgentInfo {
            identity: AGENT.into(),
            tenant: TENANT.into(),
            admin: ADMIN.into(),
            group: GROUP.into(),
            volume: VOLUME.into(),
            control: String::new(),
            interval_ms: ms(spec.interval),
        },
        paths: Paths {
            ca_dir: dir.join("ca"),
            tls_dir: dir.join("tls"),
            key_file: dir.join("tenant.key"),
            config: dir.join("lifeline.toml"),
            logs: dir.join("logs"),
            state_dir: dir.join("sites/primary/state"),
            restore_dir: dir.join("sites/secondary/restored"),
        },
        created_paths: [
            "ca",
            "tls",
            "tenant.key",
            "logs",
            "sites",
            "proxy.sock",
            "lifeline.toml",
            STATE_FILE,
        ]
        .iter()
        .map(|p| dir.join(p))
        .collect(),
        created_dir,
    }
}

/// `DIR/lifeline.toml`: the testbed as a deployment every command can use.
pub(super) fn write_config(st: &TestbedState) -> Result<()> {
    let bin = sh_quote(&s(&st.bin));
    let w = &st.workload.addr;
    let mut t = String::new();
    t.push_str(&format!(
        "# Written by `lifeline testbed up` for the testbed in {dir}.\n\
         # Commands against a site run where the site is: in the netns flavour, inside\n\
         # its namespace (`ip netns exec NS lifeline --config {dir}/lifeline.toml ...`).\n\
         # The running agent replicates through the impairment proxy ({proxy}).\n\n",
        dir = s(&st.dir),
        proxy = st.link.proxy_url
    ));
    t.push_str(&format!("state_dir = {}\n", toml_str(&s(&st.paths.state_dir))));
    t.push_str(&format!("key_file = {}\n\n", toml_str(&s(&st.paths.key_file))));
    t.push_str(&format!(
        "[tls]\ndir = {}\nidentity = {}\n\n",
        toml_str(&s(&st.paths.tls_dir)),
        toml_str(AGENT)
    ));
    for (name, site) in &st.sites {
        t.push_str(&format!(
            "[sites.{name}]\nreceiver = {}\nrepo = {}\nlisten = {}\nallow = {{ {AGENT} = [{}] }}\n\n",
            toml_str(&site.receiver_url),
            toml_str(&s(&site.repo)),
            toml_str(&site.listen),
            toml_str(GROUP)
        ));
    }
    t.push_str(&format!(
        "[groups.{GROUP}]\nprimary = \"primary\"\nsecondary = \"secondary\"\nvolumes = {{ {VOLUME} = {} }}\n\
         targets = {{ {VOLUME} = {} }}\nrpo = {}\nrto = \"5m\"\ninterval = \"{}ms\"\nretry_for = \"1h\"\n",
        toml_str(&s(&st.workload.volume)),
        toml_str(&s(&st.paths.restore_dir.join("app.img"))),
        toml_str(&rpo_of(st)),
        st.agent.interval_ms,
    ));
    if !st.agent.control.is_empty() {
        t.push_str(&format!("control = {}\n", toml_str(&st.agent.control)));
    }
    t.push_str(&format!(
        "freeze = {}\nthaw = {}\n",
        toml_str(&format!("{bin} workload pause --addr {w} --lease 30s")),
        toml_str(&format!("{bin} workload resume --addr {w}"))
    ));
    write_atomic(&st.paths.config, t.as_bytes())
}

pub(super) fn rpo_of(st: &TestbedState) -> String {
    // Ten cycles, at least 10 s.
    format!("{}s", (st.agent.interval_ms * 10 / 1000).max(10))
}
