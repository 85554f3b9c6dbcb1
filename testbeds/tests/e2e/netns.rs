//! The netns flavour: two namespaces joined by a veth pair, a tc tbf rate,
//! nftables loss, proxy latency, a partition by link down, and kill -9 /
//! restart of the agent and the receiver inside their namespaces.

use std::time::Duration;

use lifeline_testbeds::{Fault, Flavour, NetnsLink};

use crate::harness::*;

const CYCLES: Duration = Duration::from_secs(60);

#[test]
fn netns_rate_loss_latency_a_partition_and_kills() {
    if !netns_possible("netns case") {
        return;
    }
    let loss = if lifeline_testbeds::which("nft") {
        1.0
    } else {
        eprintln!("note: no nft here, the netns case runs without packet loss");
        0.0
    };
    let mut bed = Bed::up(Flavour::Netns, |s| {
        s.latency = Duration::from_millis(5);
        s.rate = Some(50_000_000 / 8);
        s.loss_percent = loss;
    });
    let link = bed.tb.state.link.netns.clone().expect("netns link");
    let names = NetnsLink::list_namespaces();
    assert!(
        names.contains(&link.primary_ns) && names.contains(&link.secondary_ns),
        "{names:?}"
    );
    let before = bed.wait_point(2, CYCLES);
    // The sites are apart: the secondary's receiver is not on the primary's loopback.
    assert!(
        bed.tb.state.sites["secondary"]
            .receiver_url
            .contains(&link.secondary_addr)
    );
    let from = bed.log("agent.err").len();
    bed.tb.fault(&Fault::Cut).unwrap();
    bed.wait_agent_error(from, "unavailable", CYCLES);
    // The partition is real: from the primary the secondary's address is unreachable.
    let url = bed.tb.state.sites["secondary"].receiver_url.clone();
    let tls = bed.tb.state.paths.tls_dir.display().to_string();
    let r = bed.lifeline(
        "primary",
        &["status", "--repo", &url, "--tls-dir", &tls, "--identity", "app"],
    );
    assert_ne!(r.code, Some(0), "the receiver answered across a cut link: {}", r.stdout);
    bed.tb.fault(&Fault::Heal).unwrap();
    let last = bed.points().last().unwrap().seq;
    bed.wait_point(last + 2, CYCLES);
    // kill -9 and restart inside the namespaces: the receiver comes back on its
    // address, the agent resumes.
    bed.tb
        .fault(&Fault::KillReceiver {
            site: "secondary".into(),
        })
        .unwrap();
    bed.tb.fault(&Fault::KillAgent).unwrap();
    bed.tb
        .fault(&Fault::RestartReceiver {
            site: "secondary".into(),
        })
        .unwrap();
    bed.tb.fault(&Fault::RestartAgent).unwrap();
    assert!(bed.tb.is_running("agent") && bed.tb.is_running("receiver-secondary"));
    let last = bed.points().last().unwrap().seq;
    bed.wait_point(last + 2, CYCLES);
    bed.assert_points_kept(&before);
    bed.disaster_check("netns");
    let Bed { tb, dir } = bed;
    tb.down().unwrap();
    drop(dir);
    let names = NetnsLink::list_namespaces();
    assert!(
        !names.contains(&link.primary_ns) && !names.contains(&link.secondary_ns),
        "{names:?}"
    );
}
