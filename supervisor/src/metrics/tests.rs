use std::collections::{BTreeMap, BTreeSet};

use openmetrics_parser::{openmetrics::parse_openmetrics, OpenMetricsType, OpenMetricsValue};

use super::*;
use crate::status::restarts_by_reason;

fn worker(program: &str, instance: u32) -> WorkerStatus {
    WorkerStatus {
        pid: Some(1234),
        state: Phase::Running,
        ready: true,
        uptime_s: Some(12.5),
        restarts: 3,
        restarts_by_reason: restarts_by_reason(&counts(&[(Reason::Exit, 2), (Reason::Manual, 1)])),
        rss_bytes: Some(10 << 20),
        cpu_percent: Some(1.0),
        cpu_seconds: Some(0.25),
        threads: Some(4),
        fds: Some(9),
        processes: Some(2),
        heap_bytes: Some(1 << 20),
        heartbeat_age_ms: Some(1500),
        speaks: true,
        totals: crate::status::Totals {
            cpu_seconds: 0.25,
            ..crate::status::Totals::default()
        },
        ..WorkerStatus::new(program, instance)
    }
}

/// (value, labels) of every sample of `family`.
fn samples(text: &str, family: &str) -> Vec<(f64, BTreeMap<String, String>)> {
    let exposition = parse_openmetrics(text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    let fam = exposition
        .families
        .get(family)
        .unwrap_or_else(|| panic!("no family {family}\n{text}"));
    fam.iter_samples()
        .map(|s| {
            let labels = s
                .get_labelset()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let v = match &s.value {
                OpenMetricsValue::Gauge(n) | OpenMetricsValue::Unknown(n) => n.as_f64(),
                OpenMetricsValue::Counter(c) => c.value.as_f64(),
                other => panic!("unexpected value {other:?}"),
            };
            (v, labels)
        })
        .collect()
}

#[test]
fn renders_parseable_openmetrics_with_every_family() {
    let mut w = worker("api", 0);
    w.counters = [("bytes_in".to_owned(), 42), ("queue".to_owned(), 7)].into();
    w.gauges = ["queue".to_owned()].into();
    w.totals.counters = [("bytes_in".to_owned(), 42)].into();
    let stopped = WorkerStatus {
        pid: None,
        state: Phase::Stopped,
        rss_bytes: None,
        cpu_seconds: None,
        heap_bytes: None,
        ..worker("api", 1)
    };
    let text = render(&[w, stopped], Format::OpenMetrics);
    assert!(text.ends_with("# EOF\n"), "{text}");
    let exposition = parse_openmetrics(&text).expect("parses");
    let f = &exposition.families;
    assert_eq!(
        f["supervise_worker_cpu_seconds"].family_type,
        OpenMetricsType::Counter
    );
    assert_eq!(
        f["supervise_worker_restarts"].family_type,
        OpenMetricsType::Counter
    );
    assert_eq!(
        f["supervise_worker_rss_bytes"].family_type,
        OpenMetricsType::Gauge
    );
    assert_eq!(f["supervise_worker_rss_bytes"].unit, "bytes");

    let rss = samples(&text, "supervise_worker_rss_bytes");
    assert_eq!(rss.len(), 1, "no sample for an instance without a process");
    assert_eq!(rss[0].0, f64::from(10u32 << 20));
    assert_eq!(rss[0].1["program"], "api");
    assert_eq!(rss[0].1["replica"], "0");
    assert!(
        !text.contains("instance="),
        "`instance` is the scrape target's label: {text}"
    );
    let restarts = samples(&text, "supervise_worker_restarts");
    assert_eq!(restarts.len(), 2 * Reason::ALL.len());
    let manual = restarts
        .iter()
        .find(|(_, l)| l["replica"] == "0" && l["reason"] == "manual")
        .expect("manual");
    assert_eq!(manual.0, 1.0);
    let states = samples(&text, "supervise_worker_state");
    let mut on: Vec<_> = states
        .iter()
        .filter(|(v, _)| *v == 1.0)
        .map(|(_, l)| (l["replica"].clone(), l["state"].clone()))
        .collect();
    on.sort();
    assert_eq!(
        on,
        [
            ("0".into(), "running".into()),
            ("1".into(), "stopped".into())
        ]
    );
    let counter = samples(&text, "supervise_worker_sdk");
    assert_eq!(counter.len(), 1);
    assert_eq!(
        (counter[0].0, counter[0].1["name"].as_str()),
        (42.0, "bytes_in")
    );
    let gauge = samples(&text, "supervise_worker_sdk_value");
    assert_eq!((gauge[0].0, gauge[0].1["name"].as_str()), (7.0, "queue"));
    let hb = samples(&text, "supervise_worker_heartbeat_age_seconds");
    assert_eq!(hb[0].0, 1.5);
    assert!(
        !exposition
            .families
            .contains_key("supervise_worker_pss_bytes")
            || samples(&text, "supervise_worker_pss_bytes").is_empty()
    );
}

#[test]
fn a_fatal_instance_keeps_its_state_and_every_counter() {
    // Given up on: no process, no figures of one, but the state and every count it had.
    let mut fatal = WorkerStatus {
        state: Phase::Fatal,
        restarts: 5,
        restarts_by_reason: restarts_by_reason(&counts(&[(Reason::Exit, 5)])),
        last_exit: Some(crate::status::LastExit::new(
            crate::reaper::Exit::Code(3),
            std::time::SystemTime::now(),
        )),
        ..WorkerStatus::new("crash", 0)
    };
    fatal.totals.cpu_seconds = 0.5;
    fatal.totals.counters = [("jobs".to_owned(), 9)].into();
    // Never ran (a program waiting for what it starts after): no series of counts it never had.
    let never = WorkerStatus::new("later", 0);
    let text = render(&[fatal, never], Format::OpenMetrics);
    let of = |family: &str, program: &str| -> Vec<(f64, BTreeMap<String, String>)> {
        samples(&text, family)
            .into_iter()
            .filter(|(_, l)| l["program"] == program)
            .collect()
    };
    let state = of("supervise_worker_state", "crash");
    let on: Vec<&str> = state
        .iter()
        .filter(|(v, _)| *v == 1.0)
        .map(|(_, l)| l["state"].as_str())
        .collect();
    assert_eq!(on, ["fatal"], "{text}");
    assert_eq!(state.len(), Phase::ALL.len());
    assert_eq!(of("supervise_worker_up", "crash")[0].0, 0.0);
    let exits = of("supervise_worker_restarts", "crash")
        .into_iter()
        .find(|(_, l)| l["reason"] == "exit")
        .expect("exit restarts");
    assert_eq!(exits.0, 5.0);
    assert_eq!(of("supervise_worker_cpu_seconds", "crash")[0].0, 0.5);
    assert_eq!(of("supervise_worker_sdk", "crash")[0].0, 9.0);
    // Its I/O and traffic counters stay too, at zero: a series that vanishes is no counter.
    for family in [
        "supervise_worker_io_read_bytes",
        "supervise_worker_io_write_bytes",
        "supervise_worker_net_sent_bytes",
        "supervise_worker_net_received_bytes",
    ] {
        assert_eq!(
            of(family, "crash")
                .iter()
                .map(|(v, _)| *v)
                .collect::<Vec<_>>(),
            [0.0],
            "{family}\n{text}"
        );
        assert!(of(family, "later").is_empty(), "{family}\n{text}");
    }
    assert!(!text.contains("supervise_worker_rss_bytes{"), "{text}");
}

#[test]
fn hostile_metric_names_cannot_break_the_exposition() {
    let names = [
        "a\"b",
        "back\\slash",
        "new\nline",
        "x\"} 1\n# EOF\n",
        "\\\"\\n",
        "tab\tand\r",
        "nul\0",
        "ünï©ødé",
    ];
    let mut w = worker("api", 0);
    w.counters = names.iter().map(|n| ((*n).to_owned(), 5)).collect();
    w.totals.counters = w.counters.clone();
    let text = render(&[w], Format::OpenMetrics);
    assert_eq!(text.lines().filter(|l| *l == "# EOF").count(), 1, "{text}");
    let got: BTreeSet<String> = samples(&text, "supervise_worker_sdk")
        .into_iter()
        .map(|(_, l)| l["name"].clone())
        .collect();
    let want: BTreeSet<String> = names.iter().map(|n| label_value(n)).collect();
    assert!(want.contains("new\nline") && want.contains("tab\u{fffd}and\u{fffd}"));
    assert_eq!(got, want, "{text}");
}

#[test]
fn request_lines() {
    let ok = |s: &str| {
        parse_request_line(s.as_bytes())
            .ok()
            .map(|(m, p)| (m, p.to_owned()))
    };
    assert_eq!(
        ok("GET /metrics HTTP/1.1\r\nHost: x\r\n"),
        Some((Method::Get, "/metrics".into()))
    );
    assert_eq!(
        ok("HEAD /readyz?x=1 HTTP/1.0"),
        Some((Method::Head, "/readyz?x=1".into()))
    );
    assert_eq!(
        ok("POST /api/restart HTTP/1.1"),
        Some((Method::Post, "/api/restart".into()))
    );
    let status = |s: &[u8]| parse_request_line(s).err().map(|a| a.status);
    assert_eq!(status(b"PUT /metrics HTTP/1.1\r\n"), Some(405));
    assert_eq!(status(b"GET /metrics HTTP/2.0\r\n"), Some(400));
    assert_eq!(status(b"GET metrics HTTP/1.1\r\n"), Some(400));
    assert_eq!(status(b"GET  /metrics HTTP/1.1\r\n"), Some(400));
    assert_eq!(status(b"\xff\xfe\x00garbage"), Some(400));
    assert_eq!(status(b""), Some(400));
    assert_eq!(status(b"get /metrics HTTP/1.1"), Some(400));
}

#[test]
fn end_of_head() {
    assert_eq!(find_end(b"GET / HTTP/1.0\r\n\r\nbody"), Some(14));
    assert_eq!(find_end(b"GET / HTTP/1.0\n\n"), Some(14));
    assert_eq!(find_end(b"GET / HTTP/1.0\r\n"), None);
}

#[test]
fn addresses() {
    use crate::plan::parse_metrics_addr;
    let a = |s: &str| parse_metrics_addr(s).map(|a| a.to_string());
    assert_eq!(a(":9100").as_deref(), Ok("127.0.0.1:9100"));
    assert_eq!(a("0.0.0.0:0").as_deref(), Ok("0.0.0.0:0"));
    assert_eq!(a("[::1]:9100").as_deref(), Ok("[::1]:9100"));
    assert!(a("localhost").is_err());
    assert!(a(":99999").is_err());
}

#[test]
fn health_goes_stale() {
    let h = Health {
        last_tick: Cell::new(Instant::now()),
        stale_after: Duration::from_millis(1),
    };
    std::thread::sleep(Duration::from_millis(5));
    assert!(h.check().is_err());
    h.tick();
    assert!(Health::new(Duration::from_secs(1)).check().is_ok());
}

#[test]
fn sockets_traffic_and_disk_are_exposed_per_worker() {
    let mut a = worker("api", 0);
    a.disk = Some(crate::disk::WorkerDisk {
        deleted_bytes: 50 << 20,
        deleted_files: 1,
        read_bytes: 4096,
        write_bytes: 8192,
        read_bytes_per_s: 0.0,
        write_bytes_per_s: 0.0,
        blkio_delay_s: 0.25,
    });
    // The counters come from the instance's lifetime totals.
    a.totals.read_bytes = 4096;
    a.totals.write_bytes = 8192;
    a.totals.blkio_delay_s = 0.25;
    a.totals.sent_bytes = 1000;
    a.totals.received_bytes = 2000;
    a.net = Some(crate::status::NetStatus {
        listening: 1,
        established: 7,
        other: 2,
        udp: 3,
        sent_bytes: 1000,
        received_bytes: 2000,
        rtt_ms: Some(1.5),
        rtt_max_ms: Some(4.0),
        ..Default::default()
    });
    // A worker not yet probed has no such series at all.
    let b = worker("batch", 0);
    let text = render(&[a, b], Format::OpenMetrics);
    let one = |family: &str| {
        let s = samples(&text, family);
        assert_eq!(s.len(), 1, "{family}: {s:?}");
        assert_eq!(s[0].1["program"], "api");
        s[0].0
    };
    assert_eq!(
        one("supervise_worker_deleted_open_bytes"),
        f64::from(50u32 << 20)
    );
    assert_eq!(one("supervise_worker_io_write_bytes"), 8192.0);
    assert_eq!(one("supervise_worker_blkio_delay_seconds"), 0.25);
    assert_eq!(one("supervise_worker_net_sent_bytes"), 1000.0);
    assert_eq!(one("supervise_worker_net_received_bytes"), 2000.0);
    assert_eq!(one("supervise_worker_net_rtt_seconds"), 0.0015);
    assert_eq!(one("supervise_worker_net_rtt_max_seconds"), 0.004);
    let sockets = samples(&text, "supervise_worker_sockets");
    let by_state: BTreeMap<String, f64> = sockets
        .iter()
        .map(|(v, l)| (l["state"].clone(), *v))
        .collect();
    assert_eq!(
        by_state,
        [
            ("established", 7.0),
            ("listening", 1.0),
            ("other", 2.0),
            ("udp", 3.0)
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .into()
    );
}

type TextFamilies = BTreeMap<String, (String, Vec<(f64, BTreeMap<String, String>)>)>;

/// Parses the Prometheus text format 0.0.4 strictly: the syntax by nom-openmetrics (the whole
/// text, every line), then the rules the format adds, asserted here: every family has exactly one
/// `HELP` and one `TYPE`, before its samples, all named as the family (a counter's `TYPE` name ends
/// in `_total`, like its samples); no `# UNIT`, no `# EOF`, no family twice.
fn parse_text(text: &str) -> TextFamilies {
    use nom_openmetrics::{MetricDescriptor, MetricType};
    let (rest, families) =
        nom_openmetrics::parser::prometheus(text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    assert!(rest.is_empty(), "left over: {rest:?}");
    let mut out = TextFamilies::new();
    for f in families {
        let (mut help, mut kind) = (None, None);
        for d in &f.descriptors {
            match d {
                MetricDescriptor::Help { metric, .. } => {
                    assert!(help.replace(*metric).is_none(), "two HELP for {metric}");
                }
                MetricDescriptor::Type { metric, r#type } => {
                    let t = match r#type {
                        MetricType::Counter => "counter",
                        MetricType::Gauge => "gauge",
                        other => panic!("{metric}: type {other} in our exposition"),
                    };
                    assert!(
                        kind.replace((*metric, t)).is_none(),
                        "two TYPE for {metric}"
                    );
                }
                MetricDescriptor::Unit { metric, .. } => panic!("UNIT for {metric} in 0.0.4"),
            }
        }
        let (name, kind) = kind.expect("every family has a TYPE");
        assert_eq!(help, Some(name), "HELP and TYPE name one family");
        assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
        let samples = f
            .samples
            .iter()
            .map(|s| {
                assert_eq!(s.name(), name, "a sample of {name}");
                let labels = s
                    .labels()
                    .iter()
                    .map(|l| (l.name.to_owned(), l.value.clone()))
                    .collect();
                (s.number(), labels)
            })
            .collect();
        let twice = out.insert(name.to_owned(), (kind.to_owned(), samples));
        assert!(twice.is_none(), "{name} twice");
    }
    out
}

#[test]
fn renders_the_prometheus_text_format() {
    let mut w = worker("api", 0);
    w.counters = [("bytes_in".to_owned(), 42), ("queue".to_owned(), 7)].into();
    w.gauges = ["queue".to_owned()].into();
    w.totals.counters = [("bytes_in".to_owned(), 42)].into();
    let stopped = WorkerStatus {
        pid: None,
        state: Phase::Stopped,
        rss_bytes: None,
        heap_bytes: None,
        ..worker("api", 1)
    };
    let text = render(&[w, stopped], Format::Text);
    assert!(
        !text.contains("# EOF") && !text.contains("# UNIT"),
        "{text}"
    );
    let f = parse_text(&text);
    let kind = |name: &str| f.get(name).map(|(k, _)| k.as_str());
    assert_eq!(kind("supervise_worker_restarts_total"), Some("counter"));
    assert_eq!(kind("supervise_worker_cpu_seconds_total"), Some("counter"));
    assert_eq!(kind("supervise_worker_sdk_total"), Some("counter"));
    assert_eq!(kind("supervise_worker_rss_bytes"), Some("gauge"));
    assert_eq!(kind("supervise_worker_uptime_seconds"), Some("gauge"));
    // Families without a sample are left out, as client_golang does.
    assert_eq!(kind("supervise_worker_pss_bytes"), None, "{text}");
    let rss = &f["supervise_worker_rss_bytes"].1;
    assert_eq!(rss.len(), 1);
    assert_eq!(rss[0].0, f64::from(10u32 << 20));
    assert_eq!(
        (rss[0].1["program"].as_str(), rss[0].1["replica"].as_str()),
        ("api", "0")
    );
    assert!(!rss[0].1.contains_key("instance"));
    let restarts = &f["supervise_worker_restarts_total"].1;
    assert_eq!(restarts.len(), 2 * Reason::ALL.len());
    let manual = restarts
        .iter()
        .find(|(_, l)| l["replica"] == "0" && l["reason"] == "manual")
        .expect("manual");
    assert_eq!(manual.0, 1.0);
    // The same samples as the OpenMetrics rendering, line for line (in a family's own order,
    // which is a hash map's).
    let om = render(&[worker("api", 0)], Format::OpenMetrics);
    let samples = |t: &str| -> BTreeSet<String> {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        samples(&om),
        samples(&render(&[worker("api", 0)], Format::Text))
    );
}

#[test]
fn hostile_metric_names_cannot_break_the_text_format() {
    let names = [
        "a\"b",
        "back\\slash",
        "new\nline",
        "x\"} 1\n# TYPE y counter\n",
        "ünï©ødé",
    ];
    let mut w = worker("api", 0);
    w.counters = names.iter().map(|n| ((*n).to_owned(), 5)).collect();
    w.totals.counters = w.counters.clone();
    let text = render(&[w], Format::Text);
    let got: BTreeSet<String> = parse_text(&text)["supervise_worker_sdk_total"]
        .1
        .iter()
        .map(|(_, l)| l["name"].clone())
        .collect();
    let want: BTreeSet<String> = names.iter().map(|n| label_value(n)).collect();
    assert_eq!(got, want, "{text}");
}

#[test]
fn accept_header() {
    let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nACCEPT: text/plain;q=0.5\r\n\
                 X: y\r\naccept:  application/openmetrics-text \r\n\r\n";
    assert_eq!(
        header(head, "accept").as_deref(),
        Some("text/plain;q=0.5, application/openmetrics-text")
    );
    assert_eq!(header(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n", "accept"), None);
    // The request line is not a header, whatever it holds.
    assert_eq!(
        header(b"GET /accept:x HTTP/1.0\r\n\r\n", "get /accept"),
        None
    );
}

#[test]
fn closed_sockets_and_watched_directories_are_exposed_per_supervisor() {
    use crate::status::{ClosedSockets, SupervisorStatus, WatchedDir};
    let sup = SupervisorStatus {
        closed_sockets: ClosedSockets {
            mode: "events".into(),
            unattributed: 3,
            unattributed_sent_bytes: 150_003,
            unattributed_received_bytes: 17,
            lost: 2,
            ..ClosedSockets::default()
        },
        watched_dirs: vec![
            WatchedDir {
                path: "/var/log/a\"b".into(),
                bytes: Some(10 << 20),
                apparent_bytes: Some(1 << 30),
                partial: false,
                fs_total_bytes: Some(100 << 30),
                fs_available_bytes: Some(40 << 30),
                ..WatchedDir::default()
            },
            // Not measured yet: no samples.
            WatchedDir {
                path: "/srv/new".into(),
                ..WatchedDir::default()
            },
        ],
        host: Some(Box::new(crate::status::HostStatus {
            mem_total_bytes: Some(16 << 30),
            mem_available_bytes: Some(3 << 30),
            memory_pressure: Some(crate::status::Pressure {
                some_avg10: 12.5,
                full_avg10: Some(4.0),
                some_avg60: 3.0,
                full_avg60: Some(1.0),
            }),
            ..crate::status::HostStatus::default()
        })),
    };
    let text = render_all(&[worker("api", 0)], &sup, Format::OpenMetrics);
    let one = |family: &str| {
        let s = samples(&text, family);
        assert_eq!(s.len(), 1, "{family}: {s:?}");
        s[0].clone()
    };
    assert_eq!(one("supervise_net_closed_by_events").0, 1.0);
    assert_eq!(
        one("supervise_host_memory_available_bytes").0,
        f64::from(3u32 << 30)
    );
    let pressure = samples(&text, "supervise_host_memory_pressure_ratio");
    assert_eq!(pressure.len(), 4, "{pressure:?}");
    assert!(pressure
        .iter()
        .any(|(v, l)| (*v - 0.125).abs() < 1e-9 && l["kind"] == "some" && l["window"] == "10s"));
    assert_eq!(one("supervise_net_unattributed_sockets").0, 3.0);
    assert_eq!(one("supervise_net_unattributed_sent_bytes").0, 150_003.0);
    assert_eq!(one("supervise_net_unattributed_received_bytes").0, 17.0);
    assert_eq!(one("supervise_net_destroy_lost").0, 2.0);
    let (bytes, labels) = one("supervise_watched_dir_bytes");
    assert_eq!(bytes, f64::from(10u32 << 20));
    assert_eq!(labels["path"], "/var/log/a\"b");
    assert_eq!(
        one("supervise_watched_dir_apparent_bytes").0,
        f64::from(1u32 << 30)
    );
    assert_eq!(one("supervise_watched_dir_partial").0, 0.0);
    assert_eq!(
        one("supervise_watched_dir_fs_available_bytes").0,
        (40u64 << 30) as f64
    );
    // Sampled only: the gauge says so.
    let sampled = SupervisorStatus {
        closed_sockets: ClosedSockets {
            mode: "sampling".into(),
            ..ClosedSockets::default()
        },
        ..SupervisorStatus::default()
    };
    let text = render_all(&[], &sampled, Format::Text);
    assert!(text.contains("supervise_net_closed_by_events 0"), "{text}");
}

/// Restart counts by reason, every other reason 0.
fn counts(by: &[(Reason, u64)]) -> [u64; Reason::ALL.len()] {
    let mut out = [0; Reason::ALL.len()];
    for &(r, n) in by {
        out[r.index()] = n;
    }
    out
}
