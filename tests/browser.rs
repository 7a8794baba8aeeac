//! The dashboard in a real browser (Debian's headless Chromium, see `common/browser.rs`): the
//! page lists the workers, a restart done with `supervise restart` shows on it while it is
//! open, a worker's markup is shown as text and runs nothing, and a page of another origin can
//! change nothing, with or without the token. Skips, saying so, where there is no Chromium.
//!
//! With `SUPERVISE_SCREENSHOTS=DIR`, the screenshots the docs show are written to DIR:
//! `dashboard.png` here, and `top.png` (`supervise top` through tmux, drawn by the browser).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::browser::Browser;
use common::{example, status_json, unique, wait_until, ProgramGuard, Sup};

const LONG: Duration = Duration::from_secs(20);
/// Markup a worker prints: on the page it must be characters, nothing more.
const SAID: &str = "<script>document.title='pwned';window.pwned=1</script><img src=x onerror=\"window.pwned=2\"><b>bold</b>";
const TOKEN: &str = "5d41402abc4b2a76b9719d911017c592";

/// Where the docs' screenshots go, if asked for.
fn shots() -> Option<PathBuf> {
    std::env::var_os("SUPERVISE_SCREENSHOTS").map(PathBuf::from)
}

/// Serves one page, `html`, at `/` of a new loopback port (another origin than the
/// dashboard's), for as long as the test runs.
fn other_origin(html: String) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
        }
    });
    addr
}

fn restarts_of(socket: &Path, program: &str, instance: u64) -> u64 {
    status_json(socket)
        .iter()
        .find(|w| w["program"] == program && w["instance"] == instance)
        .and_then(|w| w["restarts"].as_u64())
        .expect("the instance")
}

#[test]
fn the_dashboard_in_a_real_browser() {
    let Some(mut b) = Browser::start(1400, 900) else {
        return;
    };
    let (api, loud) = (unique("api"), unique("loud"));
    let _guards = [ProgramGuard(api.clone()), ProgramGuard(loud.clone())];
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).expect("token");
    let leaky = example("leaky");
    let sup = Sup::with_config(&format!(
        "metrics = \"127.0.0.1:0\"\nhttp_token = \"{token}\"\n\
         [program.{api}]\ncommand = [\"{leaky}\", \"--rate\", \"0.2\", \"--start\", \"4\"]\nreplicas = 2\n\
         memory = {{ max = \"64MiB\" }}\n\
         [program.{loud}]\ncommand = [\"{leaky}\", \"--rate\", \"0\", \"--say\", {said}]\n",
        token = token.display(),
        said = serde_json::to_string(SAID).expect("json"),
    ));
    let addr = sup.wait_event("listening", LONG)["addr"]
        .as_str()
        .expect("addr")
        .to_owned();
    sup.wait_nth(3, LONG, "three starts", |e| e["event"] == "started");
    let socket = sup.socket();
    let page = format!("http://{addr}/");

    // The page lists every instance, kept up to date by its stream.
    b.goto(&page);
    let rows = "document.querySelectorAll('#workers tr.instance').length === 3";
    assert!(
        b.wait_for(rows, LONG),
        "{}",
        b.eval("document.body.innerText")
    );
    for key in [format!("{api}/0"), format!("{api}/1"), format!("{loud}/0")] {
        let found = b.eval(&format!(
            "!!document.querySelector('tr[data-key=\"{key}\"]')"
        ));
        assert_eq!(found, serde_json::json!(true), "{key}");
    }
    assert!(b.wait_for(
        "document.querySelector('#live').textContent === 'live'",
        LONG
    ));
    assert!(b.wait_for("Number(document.body.dataset.updates) >= 2", LONG));

    // A restart done from the command line shows on the open page.
    let shown = |n: u64| {
        format!(
            "document.querySelector('tr[data-key=\"{api}/1\"] .restarts').dataset.restarts === '{n}'"
        )
    };
    assert!(b.wait_for(&shown(0), LONG));
    let (ok, text) = common::ctl(&socket, &["restart", &format!("{api}/1")]);
    assert!(ok, "{text}");
    let asked = Instant::now();
    let expr = shown(1);
    assert!(
        b.wait_for(&expr, LONG),
        "{}",
        b.eval("document.body.innerText")
    );
    let took = asked.elapsed();
    println!("the restart showed on the page {took:?} after `supervise restart` returned");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(
        b.wait_for(
            &format!("[...document.querySelectorAll('#events li')].some(l => l.textContent.includes('{api}/1 restarting'))"),
            LONG
        ),
        "{}",
        b.eval("document.querySelector('#events').innerText")
    );

    // The loud worker's markup is shown as text in its log, and none of it ran.
    b.eval(&format!(
        "document.querySelector('tr[data-key=\"{loud}/0\"]').click()"
    ));
    assert!(
        b.wait_for(
            "document.querySelector('#log').textContent.includes(\"<script>document.title='pwned'\")",
            LONG
        ),
        "{}",
        b.eval("document.querySelector('#log').textContent")
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#log script, #log img, #log b').length"),
        serde_json::json!(0)
    );
    assert_eq!(
        b.eval("typeof window.pwned"),
        serde_json::json!("undefined")
    );
    assert_eq!(b.eval("document.title"), serde_json::json!("supervise"));
    if let Some(out) = shots() {
        b.eval(&format!(
            "document.querySelector('tr[data-key=\"{api}/0\"]').click()"
        ));
        b.wait_for(
            "document.querySelector('#log').textContent.includes('leaky pid=')",
            LONG,
        );
        // More points on the charts.
        std::thread::sleep(Duration::from_secs(20));
        b.screenshot(&out.join("dashboard.png"));
    }

    // From the page itself, an action without the token changes nothing.
    let before = restarts_of(&socket, &api, 0);
    let status = b.eval(&format!(
        "fetch('/api/restart', {{method: 'POST', headers: {{'Content-Type': 'application/json'}}, \
         body: JSON.stringify({{program: '{api}', instance: 0}})}}).then(r => r.status)"
    ));
    assert_eq!(status, serde_json::json!(401));

    // A page of another origin, token or not, changes nothing: its fetch with the token needs
    // a preflight the dashboard never grants; what a form could send is refused by origin.
    let evil = other_origin(format!(
        "<!doctype html><title>evil</title><script>\
         const url = 'http://{addr}/api/restart';\
         const body = JSON.stringify({{program: '{api}', instance: 0}});\
         window.results = [];\
         fetch(url, {{method: 'POST', headers: {{'Content-Type': 'application/json', Authorization: 'Bearer {TOKEN}'}}, body}})\
           .then(r => window.results.push('cors ' + r.status), () => window.results.push('cors blocked'));\
         fetch(url, {{method: 'POST', mode: 'no-cors', headers: {{'Content-Type': 'text/plain'}}, body}})\
           .then(() => window.results.push('no-cors sent'), () => window.results.push('no-cors blocked'));\
         </script>"
    ));
    b.goto(&format!("http://{evil}/"));
    assert!(b.wait_for("window.results && window.results.length === 2", LONG));
    let results = b.eval("window.results.slice().sort().join(',')");
    assert!(
        results.as_str().is_some_and(|r| r.contains("cors blocked")),
        "{results}"
    );
    // Give anything that got through time to act, then look.
    assert!(!wait_until(Duration::from_secs(2), || {
        restarts_of(&socket, &api, 0) != before
    }));
    assert_eq!(restarts_of(&socket, &api, 0), before);
    assert!(sup
        .of("restarting")
        .iter()
        .all(|e| e["program"] != api.as_str() || e["instance"] != 0));
}

/// Turns `tmux capture-pane -e` output (SGR escape sequences) into HTML, for a screenshot of a
/// terminal drawn by the browser.
fn ansi_to_html(text: &str) -> String {
    let colours = [
        "#000", "#c23", "#2a2", "#b80", "#36c", "#a3a", "#299", "#ccc",
    ];
    let mut out = String::new();
    let mut open = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            let mut code = String::new();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    if d != 'm' {
                        code.clear();
                    }
                    break;
                }
                code.push(d);
            }
            if open {
                out.push_str("</span>");
                open = false;
            }
            let mut style = String::new();
            for p in code.split(';') {
                match p {
                    "1" => style.push_str("font-weight:bold;"),
                    "2" => style.push_str("opacity:.7;"),
                    "7" => style.push_str("background:#ccc;color:#000;"),
                    p if p.len() == 2 && p.starts_with('3') => {
                        if let Some(col) = p[1..].parse::<usize>().ok().and_then(|i| colours.get(i))
                        {
                            style.push_str(&format!("color:{col};"));
                        }
                    }
                    _ => {}
                }
            }
            if !style.is_empty() {
                out.push_str(&format!("<span style=\"{style}\">"));
                open = true;
            }
            continue;
        }
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    if open {
        out.push_str("</span>");
    }
    format!(
        "<!doctype html><meta charset=utf-8><body style=\"margin:0;background:#1e1e1e;color:#ddd\">\
         <pre style=\"margin:8px;font:14px/1.2 'DejaVu Sans Mono',monospace\">{out}</pre>"
    )
}

/// `supervise top` at 120x36 through tmux, drawn by the browser, for the docs. Only with
/// `SUPERVISE_SCREENSHOTS=DIR` (and tmux and Chromium): it shows, it asserts nothing else.
#[test]
fn top_screenshot_for_the_docs() {
    let Some(out) = shots() else {
        println!("skipped: set SUPERVISE_SCREENSHOTS=DIR to write the docs' screenshots");
        return;
    };
    let Some(mut b) = Browser::start(1240, 800) else {
        return;
    };
    let names = [unique("api"), unique("db"), unique("web")];
    let _guards = names.clone().map(ProgramGuard);
    let leaky = example("leaky");
    let sup = Sup::with_config(&format!(
        "[program.{a}]\ncommand = [\"{leaky}\", \"--rate\", \"0.3\", \"--start\", \"4\"]\nreplicas = 2\n\
         memory = {{ max = \"64MiB\" }}\n\
         [program.{b}]\ncommand = [\"{leaky}\", \"--rate\", \"0\", \"--start\", \"8\"]\nreplicas = 2\n\
         memory = {{ max = \"1GiB\", measure = \"pss\" }}\n\
         [program.{c}]\ncommand = [\"{leaky}\", \"--rate\", \"0\"]\nreplicas = 2\n",
        a = names[0],
        b = names[1],
        c = names[2],
    ));
    sup.wait_nth(6, LONG, "six starts", |e| e["event"] == "started");
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("tmux");
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux")
            .arg("-S")
            .arg(&sock)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux")
    };
    let command = format!(
        "{} --admin {} top",
        common::supervise_bin(),
        sup.socket().display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        "shot",
        "-x",
        "120",
        "-y",
        "36",
        &command,
    ]);
    // A minute of history, then expand the first program.
    std::thread::sleep(Duration::from_secs(20));
    tmux(&["send-keys", "-t", "shot", "Enter"]);
    std::thread::sleep(Duration::from_secs(2));
    let screen = String::from_utf8_lossy(&tmux(&["capture-pane", "-e", "-p", "-t", "shot"]).stdout)
        .into_owned();
    tmux(&["kill-server"]);
    let html = dir.path().join("top.html");
    std::fs::write(&html, ansi_to_html(&screen)).expect("html");
    b.goto(&format!("file://{}", html.display()));
    assert!(b.wait_for("document.readyState === 'complete'", LONG));
    b.screenshot(&out.join("top.png"));
}
