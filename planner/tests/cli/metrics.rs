//! The daemon's metrics as a scraper reads them: the registry's text read back
//! by the strict parser in `common::exposition`, and the `/metrics` endpoint
//! over a real socket.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lifeline_planner::daemon::metrics::{self, CONTENT_TYPE, DaemonMetrics, JobLabels};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::exposition::{Sample, parse_exposition, sample};

#[test]
fn render_parse_round_trip() {
    let awkward = [
        "",
        "plain",
        "back\\slash",
        "\"quoted\"",
        "new\nline",
        "\\n is not a newline",
        "trailing backslash \\",
        "{braces}, commas, = signs",
        "ünïcødé ✓",
        "\\\"\n\\",
    ];
    let values = [
        0.0,
        -0.0,
        0.1,
        -3.5,
        1e300,
        5e-324,
        f64::MAX,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    let m = DaemonMetrics::new();
    let mut want = Vec::new();
    for (label, value) in awkward.iter().zip(values) {
        m.group_rpo_seconds.get_or_create(&metrics::group(label)).set(value);
        want.push(sample("lifeline_group_rpo_seconds", &[("group", label)], value));
    }
    // The summary is rendered by our code, not the crate's: its escaping too.
    let job = JobLabels {
        group: awkward[9].into(),
        job: "point",
    };
    m.job_duration_seconds.observe(job, 2.0);
    let labels = [("group", awkward[9]), ("job", "point")];
    want.push(sample("lifeline_job_duration_seconds_sum", &labels, 2.0));
    want.push(sample("lifeline_job_duration_seconds_count", &labels, 1.0));
    let mut got = parse_exposition(&m.render()).unwrap();
    let key = |s: &Sample| (s.name.clone(), s.labels.clone().into_iter().collect::<Vec<_>>());
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((&g.name, &g.labels), (&w.name, &w.labels));
        assert!(
            g.value.to_bits() == w.value.to_bits() || (g.value.is_nan() && w.value.is_nan()),
            "{g:?}"
        );
    }
}

proptest::proptest! {
    /// Any label value and any float survive render and parse.
    #[test]
    fn any_label_value_round_trips(value in "(\\PC|\n)*", v in proptest::num::f64::ANY) {
        let m = DaemonMetrics::new();
        m.group_rpo_seconds.get_or_create(&metrics::group(&value)).set(v);
        let got = parse_exposition(&m.render()).unwrap();
        proptest::prop_assert_eq!(got.len(), 1);
        proptest::prop_assert_eq!(&got[0].labels["group"], &value);
        proptest::prop_assert!(got[0].value.to_bits() == v.to_bits() || (v.is_nan() && got[0].value.is_nan()));
    }
}

/// Sends `request` as is and reads until the server closes.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response));
    read.await.expect("the server closes the connection").unwrap();
    String::from_utf8(response).unwrap()
}

/// The status line, the headers (lower-cased names) and the body.
fn split_response(response: &str) -> (&str, BTreeMap<String, String>, &str) {
    let (head, body) = response.split_once("\r\n\r\n").expect("a complete response head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            (k.to_ascii_lowercase(), v.to_owned())
        })
        .collect();
    (status, headers, body)
}

#[tokio::test]
async fn serves_metrics_over_http() {
    let metrics = Arc::new(DaemonMetrics::new());
    let db = metrics::group("d\"b");
    metrics.group_rpo_seconds.get_or_create(&db).set(4.0);
    metrics
        .group_errors_total
        .get_or_create(&metrics::group("db"))
        .inc_by(3);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(metrics::serve(listener, metrics.clone(), async {
        let _ = stopped.await;
    }));

    let response = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n").await;
    let (status, headers, body) = split_response(&response);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(headers["content-type"], CONTENT_TYPE);
    assert_eq!(headers["content-length"], body.len().to_string());
    assert_eq!(headers["connection"], "close");
    assert_eq!(
        parse_exposition(body).unwrap(),
        [
            sample("lifeline_group_errors_total", &[("group", "db")], 3.0),
            sample("lifeline_group_rpo_seconds", &[("group", "d\"b")], 4.0),
        ]
    );

    // The registry is read per request.
    metrics.group_rpo_seconds.get_or_create(&db).set(5.0);
    let response = exchange(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
    assert!(
        split_response(&response)
            .2
            .contains("lifeline_group_rpo_seconds{group=\"d\\\"b\"} 5.0\n")
    );

    let response = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
    let (status, headers, body) = split_response(&response);
    assert_eq!((status, body), ("HTTP/1.1 200 OK", ""));
    assert_eq!(headers["content-length"], metrics.render().len().to_string());
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
}
