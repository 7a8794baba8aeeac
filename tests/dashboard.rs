//! The dashboard over HTTP: its safety rules each against the rule's breach (a request that
//! must change nothing, and the restart count that proves it did not), and its live stream.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{example, status_json, unique, wait_until, ProgramGuard, Sup};

const LONG: Duration = Duration::from_secs(15);
/// What a worker of these tests prints first: markup, which the page must show as text.
const SAID: &str = "<script>document.title='pwned'</script><img src=x onerror=\"window.pwned=1\">";

/// A supervisor serving the dashboard, with one program of two instances that prints [`SAID`];
/// `token` is written to a file and given as `http_token` when set.
struct Dash {
    sup: Sup,
    addr: String,
    name: String,
    token: Option<String>,
    _guard: ProgramGuard,
}

impl Dash {
    fn start(token: Option<&str>) -> Self {
        let name = unique("dash");
        let guard = ProgramGuard(name.clone());
        let dir = tempfile::tempdir().expect("tempdir");
        let token_line = token.map_or_else(String::new, |t| {
            let path = dir.path().join("token");
            std::fs::write(&path, format!("{t}\n")).expect("token file");
            format!("http_token = \"{}\"\n", path.display())
        });
        let sup = Sup::with_config(&format!(
            "metrics = \"127.0.0.1:0\"\n{token_line}\
             [program.{name}]\ncommand = [\"{leaky}\", \"--rate\", \"0\", \"--say\", {said}]\nreplicas = 2\n",
            leaky = example("leaky"),
            said = serde_json::to_string(SAID).expect("json"),
        ));
        // The token file is read at start: it may go once the supervisor is up.
        let listening = sup.wait_event("listening", LONG);
        drop(dir);
        sup.wait_nth(2, LONG, "two starts", |e| e["event"] == "started");
        Dash {
            addr: listening["addr"].as_str().expect("addr").to_owned(),
            sup,
            name,
            token: token.map(str::to_owned),
            _guard: guard,
        }
    }

    /// One request with these header lines (and a `Host`, unless given), its answer as
    /// (status, head, body).
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &str,
    ) -> (u16, String, String) {
        let mut s = TcpStream::connect(&self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut req = format!("{method} {path} HTTP/1.1\r\n");
        if !headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("host:"))
        {
            req.push_str(&format!("Host: {}\r\n", self.addr));
        }
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        if !body.is_empty() {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        req.push_str(body);
        s.write_all(req.as_bytes()).expect("write");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let code = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {text:?}"));
        (code, head.to_owned(), body.to_owned())
    }

    /// A POST of a JSON action with the headers given.
    fn act(&self, path: &str, headers: &[&str], body: &str) -> (u16, String, String) {
        self.send("POST", path, headers, body)
    }

    fn bearer(&self) -> String {
        format!(
            "Authorization: Bearer {}",
            self.token.as_deref().expect("a token")
        )
    }

    fn restarts(&self) -> u64 {
        status_json(&self.sup.socket())
            .iter()
            .map(|w| w["restarts"].as_u64().expect("restarts"))
            .sum()
    }

    fn restart_body(&self) -> String {
        format!("{{\"program\":\"{}\",\"instance\":0}}", self.name)
    }
}

const JSON: &str = "Content-Type: application/json";

#[test]
fn read_only_unless_a_token_is_given() {
    let d = Dash::start(None);
    let (code, head, body) = d.send("GET", "/api/info", &[], "");
    assert_eq!(code, 200, "{head}");
    assert!(body.contains("\"actions\":false"), "{body}");
    for token in [
        "Authorization: Bearer anything-at-all-0123456789",
        "X-Nothing: 1",
    ] {
        let (code, _, body) = d.act("/api/restart", &[JSON, token], &d.restart_body());
        assert_eq!(code, 403, "{body}");
        assert!(body.contains("read-only"), "{body}");
    }
    // Nothing was restarted.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.restarts(), 0);
    assert!(d.sup.of("restarting").is_empty());
}

#[test]
fn actions_need_post_the_token_json_and_the_pages_origin() {
    let token = "0123456789abcdef0123456789abcdef";
    let d = Dash::start(Some(token));
    let body = d.restart_body();
    let bearer = d.bearer();
    let origin = format!("Origin: http://{}", d.addr);
    let refused: Vec<(&str, Vec<&str>, u16)> = vec![
        // No token, another token, a token that only starts like it.
        ("no token", vec![JSON, &origin], 401),
        (
            "wrong token",
            vec![
                JSON,
                "Authorization: Bearer 0123456789abcdef0123456789abcdeX",
            ],
            401,
        ),
        (
            "short token",
            vec![JSON, "Authorization: Bearer 0123456789abcdef"],
            401,
        ),
        (
            "basic",
            vec![JSON, "Authorization: Basic MDEyMzQ1Njc4OWFiY2RlZg=="],
            401,
        ),
        // The right token from another site's page.
        (
            "cross origin",
            vec![JSON, &bearer, "Origin: http://evil.example"],
            403,
        ),
        ("null origin", vec![JSON, &bearer, "Origin: null"], 403),
        (
            "cross site",
            vec![JSON, &bearer, "Sec-Fetch-Site: cross-site"],
            403,
        ),
        // What a cross-site form can send.
        ("form", vec!["Content-Type: text/plain", &bearer], 415),
        (
            "form2",
            vec!["Content-Type: application/x-www-form-urlencoded", &bearer],
            415,
        ),
    ];
    for (what, headers, want) in &refused {
        let (code, head, text) = d.act("/api/restart", headers, &body);
        assert_eq!(code, *want, "{what}: {head}\n{text}");
        if *want == 401 {
            assert!(head.contains("WWW-Authenticate: Bearer"), "{what}: {head}");
        }
    }
    // A GET changes nothing, whatever it carries.
    let (code, head, _) = d.send(
        "GET",
        &format!("/api/restart?program={}&instance=0", d.name),
        &[&bearer],
        "",
    );
    assert_eq!(code, 405, "{head}");
    assert!(head.contains("Allow: POST"), "{head}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.restarts(), 0, "a refused request restarted something");
    assert!(d.sup.of("restarting").is_empty());

    // The page's own request does it.
    let (code, _, text) = d.act(
        "/api/restart",
        &[JSON, &bearer, &origin, "Sec-Fetch-Site: same-origin"],
        &body,
    );
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\"ok\":true"), "{text}");
    let r = d.sup.wait_event("restarting", LONG);
    assert_eq!(
        (r["reason"].as_str(), r["instance"].as_u64()),
        (Some("manual"), Some(0)),
        "{r}"
    );
    // So does a client that is no browser, with the token.
    let (code, _, text) = d.act(
        "/api/signal",
        &[JSON, &bearer],
        &format!(
            "{{\"program\":\"{}\",\"instance\":1,\"signal\":\"CONT\"}}",
            d.name
        ),
    );
    assert_eq!(code, 200, "{text}");
    assert!(
        text.contains("sent SIGCONT to the main process of 1 instance"),
        "{text}"
    );
    // What the engine refuses is said, not done.
    let (code, _, text) = d.act("/api/restart", &[JSON, &bearer], "{\"program\":\"nosuch\"}");
    assert_eq!(code, 409, "{text}");
    assert!(text.contains("no program named nosuch"), "{text}");
    for bad in [
        "{",
        "{\"program\":1}",
        "{\"program\":\"x\",\"cmd\":\"rm -rf /\"}",
    ] {
        let (code, _, text) = d.act("/api/restart", &[JSON, &bearer], bad);
        assert_eq!(code, 400, "{bad}: {text}");
    }
    let (code, _, _) = d.act("/api/restart", &[JSON, &bearer], &"x".repeat(5000));
    assert_eq!(code, 413);
}

#[test]
fn bound_to_loopback_it_answers_only_loopback_names() {
    let d = Dash::start(Some("0123456789abcdef0123456789abcdef"));
    let port = d.addr.rsplit(':').next().expect("port");
    for (host, want) in [
        (format!("Host: evil.example:{port}"), 403),
        (format!("Host: 127.0.0.1.evil.example:{port}"), 403),
        (format!("Host: localhost:{port}"), 200),
        (format!("Host: 127.0.0.1:{port}"), 200),
    ] {
        for path in ["/", "/api/state", "/api/logs?program=x", "/api/events"] {
            let (code, _, body) = d.send("GET", path, &[&host], "");
            if want == 403 {
                assert_eq!(code, 403, "{host} {path}: {body}");
            } else {
                assert_ne!(code, 403, "{host} {path}: {body}");
            }
        }
    }
    // A rebinding page cannot act either, token or not.
    let (code, _, _) = d.act(
        "/api/restart",
        &[
            JSON,
            &d.bearer(),
            &format!("Host: evil.example:{port}"),
            &format!("Origin: http://evil.example:{port}"),
        ],
        &d.restart_body(),
    );
    assert_eq!(code, 403);
    // The probes and the metrics answer any name (Kubernetes sends the pod's address).
    let (code, _, _) = d.send("GET", "/healthz", &["Host: 10.1.2.3:9100"], "");
    assert_eq!(code, 200);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.restarts(), 0);
}

#[test]
fn the_page_runs_only_its_own_script_and_worker_text_is_data() {
    let d = Dash::start(None);
    let (code, head, page) = d.send("GET", "/", &[], "");
    assert_eq!(code, 200);
    assert!(head.contains("Content-Type: text/html"), "{head}");
    assert!(
        head.contains("Content-Security-Policy: default-src 'none'; script-src 'self';"),
        "{head}"
    );
    assert!(head.contains("X-Content-Type-Options: nosniff"), "{head}");
    assert!(head.contains("X-Frame-Options: DENY"), "{head}");
    assert!(page.contains("<script src=\"/app.js\""), "{page}");
    // Everything the page loads is here, and small.
    let mut total = page.len();
    for asset in ["/app.js", "/app.css"] {
        let (code, _, body) = d.send("GET", asset, &[], "");
        assert_eq!(code, 200, "{asset}");
        total += body.len();
    }
    assert!(total < 200 * 1024, "{total} bytes");
    // A worker's markup comes back as a JSON string, to be put on the page as text.
    let path = format!("/api/logs?program={}&instance=0", d.name);
    let mut body = String::new();
    assert!(
        wait_until(LONG, || {
            body = d.send("GET", &path, &[], "").2;
            body.contains("<script>")
        }),
        "{body}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["lines"][0]["text"], SAID, "{v}");
}

#[test]
fn no_endpoint_runs_a_command_or_reloads() {
    let d = Dash::start(Some("0123456789abcdef0123456789abcdef"));
    let bearer = d.bearer();
    for path in [
        "/api/exec",
        "/api/run",
        "/api/reload",
        "/RPC2",
        "/api/command",
        "/api/config",
    ] {
        for method in ["GET", "POST"] {
            let (code, _, _) = d.send(method, path, &[JSON, &bearer], "{\"program\":\"x\"}");
            assert!(code == 404 || code == 405, "{method} {path}: {code}");
        }
    }
    let (code, _, _) = d.send("PUT", "/api/restart", &[JSON, &bearer], &d.restart_body());
    assert_eq!(code, 405);
}

/// Reads SSE messages from a stream until `pred` holds for one (its event name and data), or
/// the deadline passes; returns every message read.
fn read_until(
    r: &mut BufReader<TcpStream>,
    deadline: Instant,
    mut pred: impl FnMut(&str, &str) -> bool,
) -> (bool, Vec<(String, String)>) {
    let mut seen = Vec::new();
    let (mut name, mut data) = (String::new(), String::new());
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue
            }
            Err(_) => break,
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if let Some(n) = l.strip_prefix("event: ") {
            name = n.to_owned();
        } else if let Some(d) = l.strip_prefix("data: ") {
            data = d.to_owned();
        } else if l.is_empty() && !name.is_empty() {
            let hit = pred(&name, &data);
            seen.push((std::mem::take(&mut name), std::mem::take(&mut data)));
            if hit {
                return (true, seen);
            }
        }
    }
    (false, seen)
}

fn open_stream(addr: &str, query: &str) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    write!(s, "GET /api/stream{query} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("write");
    BufReader::new(s)
}

#[test]
fn the_stream_carries_status_events_and_the_selected_log() {
    let d = Dash::start(None);
    let mut r = open_stream(&d.addr, &format!("?logs={}/1", d.name));
    let mut head = String::new();
    r.read_line(&mut head).expect("status line");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let end = Instant::now() + LONG;
    let (ok, seen) = read_until(&mut r, end, |n, data| {
        n == "log" && data.contains("leaky pid=")
    });
    assert!(ok, "{seen:?}");
    let (ok, seen) = read_until(&mut r, end, |n, data| {
        n == "status" && data.contains(&format!("\"program\":\"{}\"", d.name))
    });
    assert!(ok, "{seen:?}");
    // The said line is there, as a JSON string.
    let (ok, _) = read_until(
        &mut open_stream(&d.addr, &format!("?logs={}/0", d.name)),
        end,
        |n, data| n == "log" && data.contains("\\\"window.pwned=1\\\""),
    );
    assert!(ok);
    // A restart shows as its events, as they happen.
    let (ok, text) = common::ctl(&d.sup.socket(), &["restart", &format!("{}/1", d.name)]);
    assert!(ok, "{text}");
    let (ok, seen) = read_until(&mut r, Instant::now() + LONG, |n, data| {
        n == "event"
            && data.contains("\"event\":\"restarting\"")
            && data.contains("\"reason\":\"manual\"")
    });
    assert!(ok, "{seen:?}");
}

#[test]
fn live_pages_and_slow_clients_cannot_starve_healthz() {
    let d = Dash::start(None);
    // Every stream the dashboard serves, then one more: refused.
    let mut streams: Vec<BufReader<TcpStream>> =
        (0..16).map(|_| open_stream(&d.addr, "")).collect();
    for s in &mut streams {
        let mut head = String::new();
        s.read_line(&mut head).expect("status line");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    let mut extra = open_stream(&d.addr, "");
    let mut head = String::new();
    extra.read_line(&mut head).expect("status line");
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    // Clients that never send their request, past the server's connection cap.
    let _slow: Vec<TcpStream> = (0..80)
        .filter_map(|_| TcpStream::connect(&d.addr).ok())
        .collect();
    // The probe is answered all the same, each time.
    for _ in 0..5 {
        let started = Instant::now();
        let (code, _, body) = d.send("GET", "/healthz", &[], "");
        assert_eq!(code, 200, "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_token_that_will_not_do_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let short = dir.path().join("short");
    std::fs::write(&short, "hunter2\n").expect("write");
    let spaced = dir.path().join("spaced");
    std::fs::write(&spaced, "0123456789abcdef 0123456789abcdef\n").expect("write");
    let missing = dir.path().join("missing");
    let command = format!("[\"{}\", \"--rate\", \"0\"]", example("leaky"));
    for (file, says) in [
        (&short, "shorter than 16 characters"),
        (&spaced, "whitespace"),
        (&missing, "No such file"),
    ] {
        let (path, stderr) = common::refused(&format!(
            "metrics = \"127.0.0.1:0\"\nhttp_token = \"{}\"\n[program.p]\ncommand = {command}\n\
             [program.m]\ncommand = [\"touch\", \"MARKER\"]\n",
            file.display()
        ));
        assert!(
            stderr.contains(&path) && stderr.contains("http_token") && stderr.contains(says),
            "{stderr}"
        );
    }
    // A token with nowhere to be used.
    std::fs::write(&short, "0123456789abcdef0123456789abcdef").expect("write");
    let out = std::process::Command::new(common::supervise_bin())
        .arg("--http-token")
        .arg(&short)
        .args(["--", "true"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--http-token") && stderr.contains("needs --metrics"),
        "{stderr}"
    );
}
