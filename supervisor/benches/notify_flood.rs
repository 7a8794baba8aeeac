//! A flood on the notify socket from outside every tree: what it costs supervise, and whether a
//! worker's own pings are still heard.
//!
//! Each run starts `supervise -c` with one worker (`notifier --ping 500`: `READY=1`, then
//! `WATCHDOG=1` every 0.5 s, under `heartbeat.timeout = 3s`, readiness by notify), waits until it
//! is ready, then floods the notify socket with `WATCHDOG=1` from a process of this bench's own
//! (`notifier --flood 15`: blocking sends, as fast as the socket takes them) and measures
//! supervise's CPU (schedstat run time of every thread of supervise and its lifeline) over the
//! flood. A run fails if the pinging worker was found `hung` or restarted.
//!
//! Run: `cargo bench -p supervisor --bench notify_flood` (10 runs of 15 s; `FLOOD_RUNS`,
//! `FLOOD_SECS` to change; with `SUPERVISE_BASELINE=/path/to/an/older/supervise`, that binary is
//! measured too, in the same run). Prints figures, not criterion estimates: CPU over a window is
//! not a timing of one operation.

#[path = "common/mod.rs"]
mod common;
#[path = "common/own.rs"]
mod own;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SUPERVISE: &str = env!("CARGO_BIN_EXE_supervise");

struct Run {
    cpu_percent: f64,
    datagrams: u64,
    secs: f64,
    hung: usize,
}

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn one_run(bin: &Path, notifier: &Path, flood_secs: u64) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("supervise.toml");
    let events = dir.path().join("events.jsonl");
    let socket = dir.path().join("ctl.sock");
    std::fs::write(
        &config,
        format!(
            "[program.pinger]\ncommand = [\"{}\", \"--ping\", \"500\"]\n\
             ready = {{ notify = true }}\nheartbeat = {{ timeout = \"3s\" }}\n",
            notifier.display()
        ),
    )
    .expect("config");
    let child = Command::new(bin)
        .arg("--admin")
        .arg(&socket)
        .arg("--events")
        .arg(&events)
        .arg("--quiet")
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn supervise");
    let pid = child.id();
    let _guard = own::Guard(child);
    let text = || std::fs::read_to_string(&events).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !text().contains("\"event\":\"ready\"") {
        assert!(Instant::now() < deadline, "the pinger never got ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let notify = dir.path().join(format!("supervise-notify.{pid}.sock"));
    let own = own::own_pids(pid);
    let cpu = || own.iter().map(|&p| own::cpu_ns(p)).sum::<u64>();
    let c0 = cpu();
    let t0 = Instant::now();
    let out = Command::new(notifier)
        .args(["--flood", &flood_secs.to_string(), "--socket"])
        .arg(&notify)
        .stdout(Stdio::piped())
        .spawn()
        .expect("flooder");
    let mut flooder = out;
    let line = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(flooder.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        line
    };
    let c1 = cpu();
    let secs = t0.elapsed().as_secs_f64();
    let _ = flooder.kill();
    let _ = flooder.wait();
    // The pinger's heartbeat is judged at each sample: one more timeout's worth of looking.
    std::thread::sleep(Duration::from_secs(4));
    let hung = text()
        .lines()
        .filter(|l| l.contains("\"kind\":\"hung\"") || l.contains("\"event\":\"restarting\""))
        .count();
    Run {
        cpu_percent: (c1 - c0) as f64 / 1e9 / secs * 100.0,
        datagrams: line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        secs,
        hung,
    }
}

fn measure(bin: &Path, label: &str, notifier: &Path) {
    let runs = env_u64("FLOOD_RUNS", 10);
    let secs = env_u64("FLOOD_SECS", 15);
    let mut all = Vec::new();
    for i in 1..=runs {
        let load = own::loadavg();
        let r = one_run(bin, notifier, secs);
        println!(
            "{label} run {i}: {:.0} datagrams/s for {:.1} s, supervise {:.1} % of a core \
             ({:.2} µs a datagram), pinger hung or restarted: {} (load {load})",
            r.datagrams as f64 / r.secs,
            r.secs,
            r.cpu_percent,
            r.cpu_percent / 100.0 * r.secs * 1e6 / r.datagrams.max(1) as f64,
            r.hung,
        );
        all.push(r);
    }
    let mut cpu: Vec<f64> = all.iter().map(|r| r.cpu_percent).collect();
    cpu.sort_by(f64::total_cmp);
    let rate: f64 = all.iter().map(|r| r.datagrams as f64 / r.secs).sum::<f64>() / all.len() as f64;
    println!(
        "{label}: {} of {} runs with the pinger hung or restarted; supervise's CPU during the \
         flood median {:.1} % (worst {:.1} %) of a core at {:.0} datagrams/s on average",
        all.iter().filter(|r| r.hung > 0).count(),
        all.len(),
        cpu[cpu.len() / 2],
        cpu[cpu.len() - 1],
        rate,
    );
}

fn main() {
    // `cargo test --benches` runs benches with no `--bench`: nothing to measure then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let notifier = common::example(SUPERVISE, "notifier");
    measure(Path::new(SUPERVISE), "this build", &notifier);
    if let Some(base) = own::baseline() {
        measure(&base, "baseline", &notifier);
    }
}
