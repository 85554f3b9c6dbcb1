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
    let from = bed.log("agent.err").len();
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
    // 48 MiB of ballast at 16 MiB/s: the first sync takes 3 s and fills more
    // than one 16 MiB pack, so a cut can land after a durable pack.
    let ballast: u64 = 48 << 20;
    let mut bed = Bed::up(Flavour::Local, |s| {
        s.volume_size = 64 << 20;
        s.ballast = ballast;
        s.rate = Some(16 << 20);
    });
    let repo = bed.tb.state.sites["secondary"].repo.clone();
    let durable = || {
        lifeline_testbeds::stored_objects(&repo, TENANT)
            .map(|o| o.iter().map(|o| o.len).sum::<u64>())
            .unwrap_or(0)
    };
    assert!(
        poll_until(CYCLES, || durable() > 0 || !bed.points().is_empty()),
        "nothing arrived"
    );
    assert!(
        bed.points().is_empty(),
        "the first sync ended before the cut: make it slower"
    );
    let from = bed.log("agent.err").len();
    bed.tb.fault(&Fault::Cut).unwrap();
    let arrived = durable();
    bed.wait_agent_error(from, "unavailable", CYCLES);
    assert!(bed.points().is_empty(), "a cut cycle committed a point");
    bed.tb.fault(&Fault::Heal).unwrap();
    bed.wait_point(1, CYCLES);
    let st = bed.status();
    let resumed = st["last_bytes_sent"].as_u64().expect("last_bytes_sent");
    let total_up = bed.proxy().bytes_up;
    eprintln!(
        "cut: {arrived} bytes durable at the cut, the resumed cycle sent {resumed}, {total_up} bytes crossed the link in all"
    );
    assert!(
        arrived >= 8 << 20,
        "less than 8 MiB durable at the cut ({arrived}): the case proves nothing"
    );
    // The resumed cycle sends what had not arrived, not the whole volume again.
    assert!(
        resumed + arrived / 2 <= ballast + (1 << 20),
        "the resumed cycle sent {resumed} bytes with {arrived} already durable: a full resend"
    );
    assert!(
        total_up < ballast + arrived / 2 + (16 << 20),
        "{total_up} bytes crossed the link for {ballast} bytes of data"
    );
    bed.wait_point(2, CYCLES);
    bed.disaster_check("cut");
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
    let from = bed.log("agent.err").len();
    bed.tb.fault(&Fault::FillDisk).unwrap();
    bed.wait_agent_error(from, "full", CYCLES);
    // Nothing committed is lost while full.
    bed.assert_points_kept(&before);
    bed.tb.fault(&Fault::FreeDisk).unwrap();
    let last = bed.points().last().unwrap().seq;
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
