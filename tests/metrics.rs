//! The metrics server: `--metrics ADDR` serves the Prometheus text format 0.0.4, or OpenMetrics
//! when the scrape's `Accept` asks for it (each checked with a strict parser, with `promtool` and
//! by a real Prometheus scrape where they are installed), `/healthz` and `/readyz`, and survives
//! garbage.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::{example, unique, wait_until, ProgramGuard, Sup};
use openmetrics_parser::{openmetrics::parse_openmetrics, OpenMetricsType, OpenMetricsValue};

/// The `Accept` header Prometheus 2.x scrapes with.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/\
    openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// One HTTP/1.0 exchange: (status code, body); `None` if the connection failed or the answer
/// is not HTTP.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    raw(
        addr,
        format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes(),
    )
}

/// `GET path` with an `Accept` header: (status code, head, body).
fn get_accept(addr: &str, path: &str, accept: &str) -> Option<(u16, String, String)> {
    raw_with_head(
        addr,
        format!("GET {path} HTTP/1.0\r\nHost: test\r\nAccept: {accept}\r\n\r\n").as_bytes(),
    )
}

/// Whether an answer's head has this line (a header, as sent).
fn has_line(head: &str, line: &str) -> bool {
    head.lines().any(|l| l == line)
}

fn raw(addr: &str, request: &[u8]) -> Option<(u16, String)> {
    raw_with_head(addr, request).map(|(code, _, body)| (code, body))
}

fn raw_with_head(addr: &str, request: &[u8]) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    // The server may close (or reset) before it has read everything; what it answered counts.
    let _ = s.write_all(request);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8(out).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    Some((code, head.to_owned(), body.to_owned()))
}

/// The families of an SDK worker's named counters (OpenMetrics' family name, without `_total`)
/// and gauges.
const SDK_COUNTER: &str = "supervise_worker_sdk";
const SDK_GAUGE: &str = "supervise_worker_sdk_value";

type Samples = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

/// Parses an exposition (panicking with the text if it does not parse) into family -> samples,
/// checking each family's declared type on the way.
fn parse(text: &str) -> Samples {
    let exposition = parse_openmetrics(text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    let mut out = Samples::new();
    for (name, family) in &exposition.families {
        // Counters are the families OpenMetrics names without their `_total` samples' suffix.
        let counter = matches!(
            name.as_str(),
            "supervise_worker_restarts"
                | "supervise_worker_cpu_seconds"
                | SDK_COUNTER
                | "supervise_worker_io_read_bytes"
                | "supervise_worker_io_write_bytes"
                | "supervise_worker_blkio_delay_seconds"
                | "supervise_worker_net_sent_bytes"
                | "supervise_worker_net_received_bytes"
                | "supervise_net_unattributed_sockets"
                | "supervise_net_unattributed_sent_bytes"
                | "supervise_net_unattributed_received_bytes"
                | "supervise_net_destroy_lost"
                | "supervise_net_destroy_malformed"
        );
        assert_eq!(
            family.family_type == OpenMetricsType::Counter,
            counter,
            "{name}"
        );
        if !counter {
            assert_eq!(family.family_type, OpenMetricsType::Gauge, "{name}");
        }
        for s in family.iter_samples() {
            let labels: BTreeMap<String, String> = s
                .get_labelset()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            // Prometheus owns `instance` (the target): ours would become `exported_instance`.
            assert!(!labels.contains_key("instance"), "{name}: {labels:?}");
            let v = match &s.value {
                OpenMetricsValue::Gauge(n) => n.as_f64(),
                OpenMetricsValue::Counter(c) => c.value.as_f64(),
                other => panic!("{name}: unexpected {other:?}"),
            };
            out.entry(name.clone()).or_default().push((labels, v));
        }
    }
    out
}

/// The value of `family` for `program`/`replica` (and `extra` labels).
fn value(
    m: &Samples,
    family: &str,
    program: &str,
    instance: u32,
    extra: &[(&str, &str)],
) -> Option<f64> {
    m.get(family)?
        .iter()
        .find(|(l, _)| {
            l.get("program").map(String::as_str) == Some(program)
                && l.get("replica") == Some(&instance.to_string())
                && extra
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|&(_, v)| v)
}

/// `/metrics` as Prometheus asks for it (OpenMetrics), parsed.
fn metrics(addr: &str) -> Samples {
    let (code, head, body) = get_accept(addr, "/metrics", PROMETHEUS_ACCEPT).expect("GET /metrics");
    assert_eq!(code, 200, "{body}");
    assert!(
        has_line(
            &head,
            "Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8"
        ),
        "{head}"
    );
    parse(&body)
}

fn ctl(socket: &Path, args: &[&str]) {
    let (ok, text) = common::ctl(socket, args);
    assert!(ok, "{text}");
}

#[test]
fn metrics_health_and_readiness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let leaky = unique("mleaky");
    let sdk = unique("msdk");
    let _guards = (ProgramGuard(leaky.clone()), ProgramGuard(sdk.clone()));
    let socket = dir.path().join("ctl.sock");
    let config = dir.path().join("supervise.toml");
    std::fs::write(
        &config,
        format!(
            "[program.{leaky}]\ncommand = [\"{}\", \"--rate\", \"0\"]\nreplicas = 2\n\
             [program.{sdk}]\ncommand = [\"{}\", \"--serve\", \"--ready-after\", \"2000\"]\n",
            example("leaky"),
            example("sdk_worker")
        ),
    )
    .expect("config");
    let sup = Sup::start(&[
        "--admin",
        socket.to_str().expect("utf-8"),
        "--metrics",
        "127.0.0.1:0",
        "--sample-every",
        "200ms",
        "-c",
        config.to_str().expect("utf-8"),
    ]);
    let listening = sup.wait_event("listening", Duration::from_secs(10));
    let addr = listening["addr"].as_str().expect("addr").to_owned();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );

    // Alive at once; not ready while the SDK worker has not said Ready (it waits 2 s).
    let (code, body) = get(&addr, "/healthz").expect("healthz");
    assert_eq!((code, body.trim()), (200, "ok"));
    let (code, body) = get(&addr, "/readyz").expect("readyz");
    assert_eq!(code, 503, "{body}");
    // Then ready, once it is.
    let mut last = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            last = get(&addr, "/readyz");
            last.as_ref().is_some_and(|(c, _)| *c == 200)
        }),
        "never ready: {last:?}\n{}",
        sup.dump()
    );
    sup.wait_event("ready", Duration::from_secs(1));

    // Every family, with the kernel's figures, for every instance.
    let mut m = Samples::new();
    assert!(wait_until(Duration::from_secs(5), || {
        m = metrics(&addr);
        value(&m, "supervise_worker_heap_bytes", &sdk, 0, &[]).is_some()
            && value(&m, "supervise_worker_rss_bytes", &leaky, 1, &[]).is_some()
    }));
    for (program, instance) in [(&leaky, 0), (&leaky, 1), (&sdk, 0)] {
        let v = |family: &str| {
            value(&m, family, program, instance, &[])
                .unwrap_or_else(|| panic!("{family} {program}/{instance}: {m:#?}"))
        };
        assert!(v("supervise_worker_rss_bytes") > 0.0);
        assert!(v("supervise_worker_threads") >= 1.0);
        assert!(v("supervise_worker_fds") >= 3.0);
        assert_eq!(v("supervise_worker_processes"), 1.0);
        assert!(v("supervise_worker_cpu_seconds") >= 0.0);
        assert_eq!(v("supervise_worker_up"), 1.0);
        assert!(v("supervise_worker_uptime_seconds") >= 0.0);
        let running = value(
            &m,
            "supervise_worker_state",
            program,
            instance,
            &[("state", "running")],
        );
        assert_eq!(running, Some(1.0));
        let stopped = value(
            &m,
            "supervise_worker_state",
            program,
            instance,
            &[("state", "stopped")],
        );
        assert_eq!(stopped, Some(0.0));
        for reason in ["exit", "memory", "manual", "hung", "leak"] {
            let r = value(
                &m,
                "supervise_worker_restarts",
                program,
                instance,
                &[("reason", reason)],
            );
            assert_eq!(r, Some(0.0), "{reason}");
        }
    }
    assert!(
        value(&m, "supervise_worker_pss_bytes", &leaky, 0, &[]).is_none(),
        "PSS only when measured"
    );
    assert_eq!(value(&m, "supervise_worker_ready", &sdk, 0, &[]), Some(1.0));
    assert_eq!(
        value(&m, "supervise_worker_speaks", &sdk, 0, &[]),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "supervise_worker_speaks", &leaky, 0, &[]),
        Some(0.0)
    );
    assert!(value(&m, "supervise_worker_heap_bytes", &sdk, 0, &[]).is_some_and(|h| h > 0.0));
    assert!(value(&m, "supervise_worker_heap_bytes", &leaky, 0, &[]).is_none());
    assert!(
        value(&m, "supervise_worker_heartbeat_age_seconds", &sdk, 0, &[]).is_some_and(|a| a < 5.0)
    );
    assert_eq!(
        value(&m, SDK_COUNTER, &sdk, 0, &[("name", "bytes_in")]),
        Some(0.0),
        "{m:#?}"
    );

    // A manual restart through the control socket is counted under its reason.
    ctl(&socket, &["restart", &format!("{leaky}/0")]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let m = metrics(&addr);
            value(
                &m,
                "supervise_worker_restarts",
                &leaky,
                0,
                &[("reason", "manual")],
            ) == Some(1.0)
                && value(&m, "supervise_worker_up", &leaky, 0, &[]) == Some(1.0)
        }),
        "{}",
        sup.dump()
    );
    let m = metrics(&addr);
    assert_eq!(
        value(
            &m,
            "supervise_worker_restarts",
            &leaky,
            1,
            &[("reason", "manual")]
        ),
        Some(0.0)
    );

    // An operator's stop leaves the program out of readiness; it shows as stopped.
    ctl(&socket, &["stop", &leaky]);
    assert!(wait_until(Duration::from_secs(10), || {
        let m = metrics(&addr);
        value(
            &m,
            "supervise_worker_state",
            &leaky,
            1,
            &[("state", "stopped")],
        ) == Some(1.0)
    }));
    assert_eq!(get(&addr, "/readyz").map(|(c, _)| c), Some(200));
}

#[test]
fn garbage_does_not_hurt_the_server() {
    let (sup, addr, _guard) = common::idle_with_metrics("mgarbage", ":0");
    assert!(
        addr.starts_with("127.0.0.1:"),
        "`:PORT` is loopback: {addr}"
    );

    // A client that connects and says nothing does not hold the server up.
    let idle = TcpStream::connect(&addr).expect("connect");

    // Random bytes, then a close.
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let junk: Vec<u8> = (0..4096)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let answer = raw(&addr, &junk);
    assert!(
        answer.is_none() || answer.as_ref().is_some_and(|(c, _)| *c == 400),
        "{answer:?}"
    );
    // A 1 MiB header: an error answer or a closed connection.
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
    huge.resize(1 << 20, b'a');
    huge.extend_from_slice(b"\r\n\r\n");
    let answer = raw(&addr, &huge);
    assert!(
        answer.is_none() || answer.as_ref().is_some_and(|(c, _)| *c == 431),
        "{answer:?}"
    );
    // Wrong method, wrong path, wrong protocol.
    assert_eq!(
        raw(&addr, b"POST /metrics HTTP/1.1\r\n\r\n").map(|a| a.0),
        Some(405)
    );
    assert_eq!(get(&addr, "/nope").map(|a| a.0), Some(404));
    assert_eq!(
        raw(&addr, b"GET /metrics SPDY/3\r\n\r\n").map(|a| a.0),
        Some(400)
    );
    let (code, body) = raw(&addr, b"HEAD /healthz HTTP/1.1\r\n\r\n").expect("head");
    assert_eq!((code, body.as_str()), (200, ""));

    // Still answering, while the idle client is still connected.
    assert_eq!(get(&addr, "/healthz").map(|a| a.0), Some(200));
    let m = metrics(&addr);
    assert!(m.contains_key("supervise_worker_up"), "{m:#?}");
    drop(idle);
    // The supervisor itself was never at risk.
    assert!(common::alive(sup.pid()));
}

type TextFamilies = BTreeMap<String, (String, Vec<BTreeMap<String, String>>)>;

/// Parses the Prometheus text format 0.0.4 strictly: the syntax by nom-openmetrics (all of it),
/// then the rules the format adds: one `HELP` and one `TYPE` per family, before its samples,
/// which carry the family's name (a counter's ends in `_total`); no `# UNIT`, no `# EOF`.
fn parse_text(text: &str) -> TextFamilies {
    use nom_openmetrics::{MetricDescriptor, MetricType};
    let (rest, families) =
        nom_openmetrics::parser::prometheus(text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    assert!(rest.is_empty(), "left over: {rest:?}");
    let mut out = TextFamilies::new();
    for f in families {
        let mut help = Vec::new();
        let mut kinds = Vec::new();
        for d in &f.descriptors {
            match d {
                MetricDescriptor::Help { metric, .. } => help.push(*metric),
                MetricDescriptor::Type { metric, r#type } => kinds.push((*metric, r#type)),
                MetricDescriptor::Unit { metric, .. } => panic!("UNIT for {metric} in 0.0.4"),
            }
        }
        let [(name, kind)] = kinds[..] else {
            panic!("not one TYPE: {kinds:?}\n{text}");
        };
        assert_eq!(help, [name], "one HELP for {name}");
        let kind = match kind {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            other => panic!("{name}: {other}"),
        };
        assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
        let samples = f
            .samples
            .iter()
            .map(|s| {
                assert_eq!(s.name(), name);
                s.labels()
                    .iter()
                    .map(|l| (l.name.to_owned(), l.value.clone()))
                    .collect()
            })
            .collect();
        assert!(
            out.insert(name.to_owned(), (kind.into(), samples))
                .is_none(),
            "{name} twice"
        );
    }
    out
}

/// Runs `promtool check metrics` on `body`: success, and what it said.
fn promtool(promtool: &Path, body: &str) -> (bool, String) {
    use std::process::{Command, Stdio};
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn formats_are_negotiated_and_pass_promtool() {
    let (sup, name, _guard) = common::run_example(
        "mformat",
        &["--metrics", ":0", "--sample-every", "200ms"],
        "sdk_worker",
        &["--serve"],
    );
    let listening = sup.wait_event("listening", Duration::from_secs(10));
    let addr = listening["addr"].as_str().expect("addr").to_owned();
    // Wait for a probed worker that has published its named counter (`bytes_in`) and gauge
    // (`leaked_mib`), so that the figures of a live tree and the SDK families are all there.
    let mut m = Samples::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            m = metrics(&addr);
            value(&m, "supervise_worker_rss_bytes", &name, 0, &[]).is_some()
                && value(&m, SDK_COUNTER, &name, 0, &[("name", "bytes_in")]).is_some()
                && value(&m, SDK_GAUGE, &name, 0, &[("name", "leaked_mib")]).is_some()
        }),
        "{m:#?}\n{}",
        sup.dump()
    );

    // No Accept, `*/*`, or text/plain: the Prometheus text format 0.0.4.
    for accept in [None, Some("*/*"), Some("text/plain;version=0.0.4")] {
        let request = match accept {
            None => "GET /metrics HTTP/1.0\r\n\r\n".to_owned(),
            Some(a) => format!("GET /metrics HTTP/1.0\r\nAccept: {a}\r\n\r\n"),
        };
        let (code, head, body) = raw_with_head(&addr, request.as_bytes()).expect("answer");
        assert_eq!(code, 200, "{body}");
        assert!(
            has_line(
                &head,
                "Content-Type: text/plain; version=0.0.4; charset=utf-8"
            ) && has_line(&head, "Vary: Accept"),
            "{accept:?}: {head}"
        );
        let f = parse_text(&body);
        let restarts = &f["supervise_worker_restarts_total"];
        assert_eq!(restarts.0, "counter");
        assert!(restarts
            .1
            .iter()
            .all(|l| l["program"] == name && l["replica"] == "0" && !l.contains_key("instance")));
        assert_eq!(f["supervise_worker_rss_bytes"].0, "gauge");
        assert_eq!(f["supervise_worker_cpu_seconds_total"].0, "counter");
        assert_eq!(f[&format!("{SDK_COUNTER}_total")].0, "counter");
        assert_eq!(f[SDK_GAUGE].0, "gauge");
    }
    // Asked for: OpenMetrics, which the strict parser in `metrics` checks.
    let (_, head, om) = get_accept(&addr, "/metrics", "application/openmetrics-text").expect("om");
    assert!(has_line(&head, "Vary: Accept"), "{head}");
    assert!(om.ends_with("# EOF\n"));
    let m = parse(&om);
    assert!(m.contains_key("supervise_worker_restarts"), "{m:#?}");

    let Some(promtool_bin) = common::peers::tool(
        "formats_are_negotiated_and_pass_promtool (promtool part)",
        &["promtool"],
    ) else {
        return;
    };
    let (_, _, text) = get_accept(&addr, "/metrics", "text/plain").expect("0.0.4");
    let (ok, said) = promtool(&promtool_bin, &text);
    assert!(
        ok && said.trim().is_empty(),
        "promtool on 0.0.4: {said}\n{text}"
    );
    // promtool reads only the 0.0.4 format (prometheus/prometheus#8932): given OpenMetrics, it
    // parses it but takes a counter's `_total` samples for a family of their own, without HELP.
    // That, and nothing else, is what it may say.
    let (_, said) = promtool(&promtool_bin, &om);
    let counters: Vec<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    for line in said.lines() {
        let family = line
            .strip_suffix("_total no help text")
            .unwrap_or_else(|| panic!("promtool on OpenMetrics: {line:?}\n{said}\n{om}"));
        assert!(counters.contains(&family), "{line}: {counters:?}");
    }
}

#[test]
fn prometheus_scrapes_openmetrics_and_keeps_its_instance_label() {
    let Some(prometheus) = common::peers::tool(
        "prometheus_scrapes_openmetrics_and_keeps_its_instance_label",
        &["prometheus"],
    ) else {
        return;
    };
    let (sup, name, _guard) =
        common::run_example("mscrape", &["--metrics", ":0"], "leaky", &["--rate", "0"]);
    let listening = sup.wait_event("listening", Duration::from_secs(10));
    let target = listening["addr"].as_str().expect("addr").to_owned();
    let web = format!("127.0.0.1:{}", common::peers::free_port());
    let mut prom = common::peers::Daemon::start(&prometheus, |dir| {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: supervise\n    static_configs:\n\
                 \x20     - targets: [\"{target}\"]\n"
            ),
        )
        .expect("config");
        vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address={web}"),
            "--log.level=warn".into(),
        ]
    });
    prom.wait_ready(&web, "/-/ready", Duration::from_secs(30));
    // Scraped and stored: the series carries our `replica` and Prometheus' own `instance`.
    let mut series = Vec::new();
    let ok = wait_until(Duration::from_secs(20), || {
        let Some((200, body)) =
            common::peers::http(&web, "GET", "/api/v1/query?query=supervise_worker_up", None)
        else {
            return false;
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        series = v["data"]["result"].as_array().cloned().unwrap_or_default();
        !series.is_empty()
    });
    let targets = common::peers::http(&web, "GET", "/api/v1/targets", None);
    assert!(
        ok,
        "nothing scraped; targets: {targets:?}\n{}",
        prom.output()
    );
    let labels = &series[0]["metric"];
    assert_eq!(labels["program"], name.as_str(), "{labels}");
    assert_eq!(labels["replica"], "0", "{labels}");
    assert_eq!(labels["instance"], target.as_str(), "{labels}");
    assert!(labels.get("exported_instance").is_none(), "{labels}");
    // It was OpenMetrics: only that format tells Prometheus a family's unit.
    let (_, meta) = common::peers::http(
        &web,
        "GET",
        "/api/v1/targets/metadata?metric=supervise_worker_rss_bytes",
        None,
    )
    .expect("metadata");
    let meta: serde_json::Value = serde_json::from_str(&meta).expect("json");
    assert_eq!(meta["data"][0]["unit"], "bytes", "{meta}");
    assert_eq!(meta["data"][0]["type"], "gauge", "{meta}");
}
