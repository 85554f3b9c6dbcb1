//! Each fault on the local flavour (and on netns where it adds something).

use std::time::Duration;

use lifeline_testbeds::{Fault, Flavour, ObjectDamage, TENANT};

use crate::harness::*;

/// Room for a few agent cycles (1 s apart) on a busy 2-core machine.
const CYCLES: Duration = Duration::from_secs(45);

#[test]
fn kill_9_of_the_agent_then_a_restart_loses_no_point() {
    let mut bed = Bed::up(Flavour::Local, |_| {});
    let before = bed.wait_point(2, CYCLES);
    bed.tb.fault(&Fault::KillAgent).unwrap();
    assert!(!bed.tb.is_running("agent"));
    bed.tb.fault(&Fault::RestartAgent).unwrap();
    let last = before.last().unwrap().seq;
    bed.wait_point(last + 2, CYCLES);
    bed.assert_points_kept(&before);
    bed.disaster_check("kill-agent");
}

#[test]
fn kill_9_of_the_receiver_then_a_restart_loses_no_point() {
    let mut bed = Bed::up(Flavour::Local, |_| {});
    let before = bed.wait_point(2, CYCLES);
    let from = bed.log("agent.out").len();
    bed.tb
        .fault(&Fault::KillReceiver {
            site: "secondary".into(),
        })
        .unwrap();
    bed.wait_agent_error(from, "unavailable", CYCLES);
    bed.tb
        .fault(&Fault::RestartReceiver {
            site: "secondary".into(),
        })
        .unwrap();
    let last = bed.points().last().unwrap().seq;
    bed.wait_point(last + 2, CYCLES);
    bed.assert_points_kept(&before);
    bed.disaster_check("kill-receiver");
}

#[test]
fn a_cut_mid_transfer_then_heal_resumes_without_a_full_resend() {
    // 48 MiB of random ballast at 16 MiB/s: the first sync takes about 3 s, and
    // the cut lands once 20 MiB have crossed the link. What reached the
    // receiver stays there (pending until the next upload makes it durable), so
    // the resumed cycle sends only the rest. Bytes are counted twice: by the
    // agent (the cycle's bytes sent, in `lifeline status --json`) and on the
    // link (the proxy's counter).
    let ballast: u64 = 48 << 20;
    let mut bed = Bed::up(Flavour::Local, |s| {
        s.volume_size = 64 << 20;
        s.ballast = ballast;
        s.rate = Some(16 << 20);
    });
    let crossed = poll_until(CYCLES, || bed.proxy().bytes_up >= 20 << 20);
    assert!(crossed, "20 MiB never crossed the link: {:?}", bed.proxy());
    let from = bed.log("agent.out").len();
    let at_cut = bed.tb.fault(&Fault::Cut).unwrap().detail["proxy"]["bytes_up"]
        .as_u64()
        .unwrap();
    assert!(
        bed.points().is_empty(),
        "the first sync ended before the cut: make it slower"
    );
    bed.wait_agent_error(from, "unavailable", CYCLES);
    assert!(bed.points().is_empty(), "a cut cycle committed a point");
    bed.tb.fault(&Fault::Heal).unwrap();
    bed.wait_point(1, CYCLES);
    let resumed = cycle_bytes_sent(&bed.log("agent.out"), 1);
    // The receiver's view of the same cycle, when it is still the last one.
    let st = bed.status();
    if st["last_seq"] == 1 {
        let by_receiver = st["last_bytes_sent"].as_u64().expect("last_bytes_sent");
        assert!(by_receiver.abs_diff(resumed) <= 64 << 10, "{by_receiver} vs {resumed}");
    }
    let total_up = bed.proxy().bytes_up;
    eprintln!(
        "cut: {at_cut} bytes crossed before the cut, the resumed cycle sent {resumed}, {total_up} bytes crossed in all, for {ballast} bytes of ballast"
    );
    // The resumed cycle sends what had not arrived, not the whole volume again.
    assert!(
        resumed + at_cut / 2 <= ballast + (2 << 20),
        "the resumed cycle sent {resumed} bytes after {at_cut} had crossed: a full resend"
    );
    assert!(
        total_up <= ballast + at_cut / 2 + (4 << 20),
        "{total_up} bytes crossed the link for {ballast} bytes of data"
    );
    bed.wait_point(2, CYCLES);
    bed.disaster_check("cut");
}

/// Bytes sent by the cycle that committed point `seq`, from the agent's
/// `--json` cycle object (`{"event":"cycle","seq":N,"bytes_sent":B,…}`).
#[track_caller]
fn cycle_bytes_sent(agent_out: &str, seq: u64) -> u64 {
    agent_out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "cycle" && v["seq"] == seq)
        .and_then(|v| v["bytes_sent"].as_u64())
        .unwrap_or_else(|| panic!("no cycle object for point {seq}:\n{agent_out}"))
}

#[test]
fn latency_jitter_stalls_and_a_rate_change_at_run_time() {
    let mut bed = Bed::up(Flavour::Local, |s| {
        s.latency = Duration::from_millis(20);
        s.jitter = Duration::from_millis(10);
        s.stall_every = Some(Duration::from_secs(3));
        s.stall_for = Duration::from_millis(800);
    });
    let before = bed.wait_point(2, CYCLES);
    let st = bed.proxy();
    assert_eq!((st.latency_ms, st.jitter_ms, st.stall_every_ms), (20, 10, Some(3000)));
    bed.tb
        .fault(&Fault::Impair {
            latency: Some(Duration::from_millis(40)),
            jitter: None,
            rate: Some(Some(2 << 20)),
            stall_every: None,
            stall_for: None,
            loss_percent: None,
        })
        .unwrap();
    let st = bed.proxy();
    assert_eq!((st.latency_ms, st.rate_bytes_per_sec), (40, Some(2 << 20)));
    // Loss needs packets: the local flavour refuses it with a reason.
    let e = bed
        .tb
        .fault(&Fault::Impair {
            latency: None,
            jitter: None,
            rate: None,
            stall_every: None,
            stall_for: None,
            loss_percent: Some(1.0),
        })
        .unwrap_err();
    assert!(e.to_string().contains("netns"), "{e}");
    let last = bed.points().last().unwrap().seq;
    bed.wait_point(last + 2, CYCLES);
    bed.assert_points_kept(&before);
    bed.disaster_check("impaired");
}

#[test]
fn a_full_disk_on_the_secondary_fails_cycles_cleanly_and_they_recover() {
    if !lifeline_testbeds::is_root() {
        eprintln!("SKIP disk-full case: needs root to mount the secondary's small tmpfs");
        return;
    }
    let mut bed = Bed::up(Flavour::Local, |_| {});
    let before = bed.wait_point(2, CYCLES);
    let from = bed.log("agent.out").len();
    bed.tb.fault(&Fault::FillDisk).unwrap();
    bed.wait_agent_error(from, "full", CYCLES);
    // Nothing committed is lost while full.
    bed.assert_points_kept(&before);
    bed.tb.fault(&Fault::FreeDisk).unwrap();
    // As an operator would once the disk has room: sync now rather than
    // waiting out the agent's retry back-off (up to 30 s after a long outage).
    // When the disk filled while sled flushed, the catalog refuses every write
    // until reopened: the receiver notices the failed writes and reopens it by
    // itself within a few seconds (no restart). Sync until that has happened.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut sync = bed.sync_now();
    while sync.code != Some(0) && std::time::Instant::now() < deadline {
        eprintln!("sync-now after freeing the disk: {}", sync.stderr.trim());
        std::thread::sleep(std::time::Duration::from_millis(500));
        sync = bed.sync_now();
    }
    let synced = sync.ok().json();
    let last = bed.points().last().unwrap().seq;
    assert!(
        synced["seq"]
            .as_u64()
            .is_some_and(|s| s <= last && s > before.last().unwrap().seq),
        "{synced}"
    );
    bed.wait_point(last + 2, CYCLES);
    bed.assert_points_kept(&before);
    bed.disaster_check("disk-full");
}

#[test]
fn a_corrupted_object_is_found_refused_and_healed_by_repair_and_the_next_cycle() {
    let mut bed = Bed::up(Flavour::Local, |_| {});
    let before = bed.wait_point(2, CYCLES);
    let out = bed.tb.fault(&Fault::CorruptObject(ObjectDamage::FlipBits)).unwrap();
    let id = out.detail["object"]["id"].as_str().unwrap().to_string();
    // The no-key scrub names the object and fails.
    let v = bed.verify().code(1);
    assert!(v.stdout.contains(&id), "verify does not name {id}: {}", v.stdout);
    // A restore refuses the damaged object instead of returning wrong data.
    let bad = bed.dir.path().join("bad.img");
    let r = bed.restore("latest", &bad);
    assert_ne!(
        r.code,
        Some(0),
        "a restore over a damaged object succeeded: {}",
        r.stdout
    );
    // Repair where the repository is (the receiver stopped): it drops the
    // damaged object and the index nodes above it, so the next cycle stores
    // them again. Points committed before keep what they lost (the scrub keeps
    // naming them); every point after is whole.
    bed.tb
        .fault(&Fault::KillReceiver {
            site: "secondary".into(),
        })
        .unwrap();
    let repo = bed.tb.state.sites["secondary"].repo.display().to_string();
    let rep = bed.lifeline(
        "secondary",
        &["verify", "--repo", &repo, "--tenant", TENANT, "--repair"],
    );
    assert!(rep.stdout.contains("repair"), "{}\n{}", rep.stdout, rep.stderr);
    bed.tb
        .fault(&Fault::RestartReceiver {
            site: "secondary".into(),
        })
        .unwrap();
    let damaged_up_to = bed.points().last().unwrap().seq;
    assert!(damaged_up_to >= before.last().unwrap().seq);
    bed.wait_point(damaged_up_to + 2, CYCLES);
    let v = bed.verify();
    for line in v.stdout.lines().filter(|l| l.starts_with("affected point ")) {
        let seq: u64 = line["affected point ".len()..]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(u64::MAX);
        assert!(
            seq <= damaged_up_to,
            "a point made after the repair is affected: {}",
            v.stdout
        );
    }
    bed.disaster_check_with("corrupt-object", false);
}
