//! What the dashboard costs: the size of the page, and the supervisor's idle CPU supervising 20
//! workers (memory limits enforced, 1 s sampling) with no page open, then with one page open in
//! headless Chromium, then with none again, in the same run.
//!
//! Run: `cargo bench -p supervisor --bench dashboard` (about two minutes; needs Debian's
//! `chromium`, or `CHROMIUM=/path`; says so and stops without one). CPU is the kernel's own
//! accounting (schedstat run time of every thread of the supervisor and its lifeline) over
//! fixed windows, so this prints figures rather than criterion estimates.

#[path = "common/own.rs"]
mod own;

// The tests' Chromium driver; the bench uses part of it.
#[allow(dead_code)]
#[path = "../../tests/common/browser.rs"]
mod browser;

use std::time::{Duration, Instant};

use supervisor::admin::{self, Request, Response};

const SUPERVISE: &str = env!("CARGO_BIN_EXE_supervise");
const WORKERS: u32 = 20;
const WINDOW: Duration = Duration::from_secs(30);

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(mut page) = browser::Browser::start(1400, 900) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("s.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let guard = own::start_idle(
        std::path::Path::new(SUPERVISE),
        &socket,
        WORKERS,
        &["--metrics", &addr],
    );
    let pid = guard.0.id();
    let up = own::wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        matches!(admin::call(&socket, &Request::Status),
            Ok(Response::Status { workers, .. }) if workers.iter().filter(|w| w.pid.is_some()).count() == WORKERS as usize)
    });
    assert!(up.is_some(), "workers did not start");
    // Start-up is not idle (the supervisor trims its memory at its third tick).
    std::thread::sleep(Duration::from_secs(5));
    let own = own::own_pids(pid);
    let cpu = || own.iter().map(|&p| own::cpu_ns(p)).sum::<u64>();
    let window = |what: &str| {
        let (t0, c0) = (Instant::now(), cpu());
        std::thread::sleep(WINDOW);
        let percent = (cpu() - c0) as f64 / 1e9 / t0.elapsed().as_secs_f64() * 100.0;
        println!(
            "{what:<28} supervise CPU {percent:.3} % of a core over {}s (load {})",
            WINDOW.as_secs(),
            own::loadavg()
        );
    };

    page.goto(&format!("http://{addr}/"));
    assert!(
        page.wait_for(
            "document.querySelector('#live') && document.querySelector('#live').textContent === 'live'",
            Duration::from_secs(20)
        ),
        "the page did not go live"
    );
    let bytes = page.eval("fetch('/api/info').then(r => r.json()).then(i => i.page_bytes)");
    println!("page: {bytes} bytes (html, script and style; nothing else is loaded)");
    page.goto("about:blank");
    std::thread::sleep(Duration::from_secs(2));
    window("no page open");
    page.goto(&format!("http://{addr}/"));
    assert!(page.wait_for(
        "document.querySelector('#live') && document.querySelector('#live').textContent === 'live'",
        Duration::from_secs(20)
    ));
    // One instance selected: its log is streamed too.
    page.eval("document.querySelector('#workers tr.instance').click()");
    std::thread::sleep(Duration::from_secs(2));
    window("one page open (20 workers)");
    page.goto("about:blank");
    std::thread::sleep(Duration::from_secs(2));
    window("no page open, again");
    drop(guard);
}
