//! An exec check leaves nothing running: what it forks is killed when its try ends (it exited,
//! or timed out), even what left its process group with `setsid` or double-forked away; a check
//! under way ends with its worker's incarnation (a restart, a stop); the lifeline kills its tree
//! if supervise is SIGKILLed; and none of its processes is ever reported as an `orphan`.
//!
//! The checks are `leaver`, which forks a sleeper that would live forever and records both
//! processes' pids in a directory of the run's temp dir once the sleeper exists. A guard kills
//! what a failed test left: every process whose command line names the run's temp dir.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{alive, ctl, example, lifeline_of, pidfds_of, wait_until, Sup};

const LONG: Duration = Duration::from_secs(20);

/// The pids recorded as `ROLE.<pid>` in `dir`.
fn recorded(dir: &Path, role: &str) -> Vec<i32> {
    let prefix = format!("{role}.");
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix(&prefix)?.parse().ok())
        .collect()
}

fn living(pids: &[i32]) -> Vec<i32> {
    pids.iter().copied().filter(|&p| alive(p)).collect()
}

/// Every living process whose command line holds `needle`.
fn naming(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) {
            if cmdline
                .split(|&b| b == 0)
                .any(|a| a.windows(needle.len()).any(|w| w == needle.as_bytes()))
                && alive(pid)
            {
                out.push(pid);
            }
        }
    }
    out
}

/// Kills every process whose command line names its directory when dropped (after the
/// supervisor, which is declared before it).
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        wait_until(Duration::from_secs(2), || {
            for pid in naming(&self.0) {
                // SAFETY: kill(2) on a process of this test's run (it names the run's dir).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            naming(&self.0).is_empty()
        });
    }
}

/// A run of supervise on a config in which `@DIR:NAME` is the path of a fresh directory
/// `NAME` of the run's temp dir, `@LEAVER` the `leaver` example and `@IDLE` an idle worker's
/// command (`leaky --rate 0`).
struct Run {
    sup: Sup,
    _leftovers: Leftovers,
}

impl Run {
    fn start(config: &str) -> Self {
        let leaver = example("leaver");
        let idle = format!("\"{}\", \"--rate\", \"0\"", example("leaky"));
        let sup = Sup::start_with(&[], |cmd, dir| {
            let mut config = config.replace("@LEAVER", &leaver).replace("@IDLE", &idle);
            while let Some(at) = config.find("@DIR:") {
                let name: String = config[at + 5..]
                    .chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .collect();
                let path = dir.join(&name);
                fs::create_dir_all(&path).expect("record dir");
                config.replace_range(at..at + 5 + name.len(), path.to_str().expect("utf-8"));
            }
            let path = dir.join("supervise.toml");
            fs::write(&path, config).expect("config");
            cmd.arg("--admin")
                .arg(dir.join("ctl.sock"))
                .arg("-c")
                .arg(path);
        });
        let leftovers = Leftovers(sup.dir.path().to_str().expect("utf-8").to_owned());
        Self {
            sup,
            _leftovers: leftovers,
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.sup.path(name)
    }

    /// Waits until `dir` holds at least `n` records of `role`; returns them.
    fn wait_records(&self, dir: &str, role: &str, n: usize) -> Vec<i32> {
        let mut got = Vec::new();
        wait_until(LONG, || {
            got = recorded(&self.dir(dir), role);
            got.len() >= n
        });
        assert!(
            got.len() >= n,
            "{} {role} records in {dir}, waited for {n}\n{}",
            got.len(),
            self.sup.dump()
        );
        got
    }

    /// Waits until at most `most` of the processes recorded in `dir` live: those of the try
    /// under way, if one is.
    fn assert_at_most_living(&self, dir: &str, most: usize, what: &str) {
        let mut left = Vec::new();
        wait_until(LONG, || {
            left = living(
                &[
                    recorded(&self.dir(dir), "root"),
                    recorded(&self.dir(dir), "sleeper"),
                ]
                .concat(),
            );
            left.len() <= most
        });
        assert!(
            left.len() <= most,
            "{what}: {} processes of the checks' tries live ({left:?})\n{}",
            left.len(),
            self.sup.dump()
        );
    }
}

#[test]
fn failed_tries_leave_nothing_running() {
    // The sleeper stays in the check's group (keeping the check's environment, or not); leaves
    // the group and session; or does too after a double fork that had it reparented to
    // supervise at once.
    let run = Run::start(
        "[program.group]\ncommand = [@IDLE]\n\
         [program.group.ready]\nexec = [\"@LEAVER\", \"--record\", \"@DIR:group\"]\nevery = \"100ms\"\ntimeout = \"10s\"\n\
         [program.bare]\ncommand = [@IDLE]\n\
         [program.bare.ready]\nexec = [\"@LEAVER\", \"--record\", \"@DIR:bare\", \"--clear-env\"]\nevery = \"100ms\"\ntimeout = \"10s\"\n\
         [program.session]\ncommand = [@IDLE]\n\
         [program.session.ready]\nexec = [\"@LEAVER\", \"--record\", \"@DIR:session\", \"--setsid\"]\nevery = \"100ms\"\ntimeout = \"10s\"\n\
         [program.away]\ncommand = [@IDLE]\n\
         [program.away.ready]\nexec = [\"@LEAVER\", \"--record\", \"@DIR:away\", \"--setsid\", \"--double-fork\"]\nevery = \"100ms\"\ntimeout = \"10s\"\n",
    );
    for dir in ["group", "bare", "session", "away"] {
        run.wait_records(dir, "root", 4);
    }
    // Each try ended when its command exited 1: one try's pair at most is still under way.
    for dir in ["group", "bare", "session", "away"] {
        run.assert_at_most_living(dir, 2, dir);
    }
    assert!(run.sup.of("ready").is_empty(), "{}", run.sup.dump());
}

#[test]
fn a_timed_out_check_is_killed_with_what_left_its_group() {
    let run = Run::start(
        "[program.session]\ncommand = [@IDLE]\n\
         [program.session.ready]\nexec = [\"@LEAVER\", \"--record\", \"@DIR:session\", \"--setsid\", \"--stay\"]\nevery = \"100ms\"\ntimeout = \"300ms\"\n\
         [program.away]\ncommand = [@IDLE]\n\
         [program.away.ready]\nexec = [\"@LEAVER\", \"--record\", \"@DIR:away\", \"--setsid\", \"--double-fork\", \"--stay\"]\nevery = \"100ms\"\ntimeout = \"300ms\"\n",
    );
    for dir in ["session", "away"] {
        run.wait_records(dir, "root", 3);
    }
    for dir in ["session", "away"] {
        run.assert_at_most_living(dir, 2, dir);
    }
}

#[test]
fn checks_under_way_end_with_their_worker() {
    // A readiness check and a health check (the worker has no readiness rule, so it is ready
    // at once), each running for as long as its timeout lets it.
    let run = Run::start(
        "[program.r]\ncommand = [@IDLE]\n\
         [program.r.ready]\nexec = [\"@LEAVER\", \"--record\", \"@DIR:r\", \"--setsid\", \"--stay\"]\nevery = \"100ms\"\ntimeout = \"60s\"\n\
         [program.h]\ncommand = [@IDLE]\n\
         [program.h.health]\nexec = [\"@LEAVER\", \"--record\", \"@DIR:h\", \"--setsid\", \"--stay\"]\nevery = \"100ms\"\ntimeout = \"60s\"\n",
    );
    run.sup.wait_socket(LONG);
    for p in ["r", "h"] {
        let first = [
            run.wait_records(p, "root", 1),
            run.wait_records(p, "sleeper", 1),
        ]
        .concat();
        let (ok, text) = ctl(&run.sup.socket(), &["restart", p]);
        assert!(ok, "restart {p}: {text}");
        let mut left = Vec::new();
        let gone = wait_until(LONG, || {
            left = living(&first);
            left.is_empty()
        });
        assert!(
            gone,
            "{p}: the check under way outlived its worker's restart: {left:?}\n{}",
            run.sup.dump()
        );
        // The next incarnation's check, then a stop.
        run.wait_records(p, "root", 2);
        let (ok, text) = ctl(&run.sup.socket(), &["stop", p]);
        assert!(ok, "stop {p}: {text}");
        run.assert_at_most_living(p, 0, &format!("{p} after stop"));
    }
}

#[test]
fn a_sigkilled_supervisor_leaves_no_check_process() {
    let mut run = Run::start(
        "[program.r]\ncommand = [@IDLE]\n\
         [program.r.ready]\nexec = [\"@LEAVER\", \"--record\", \"@DIR:r\", \"--setsid\", \"--stay\"]\nevery = \"100ms\"\ntimeout = \"60s\"\n\
         [program.h]\ncommand = [@IDLE]\n\
         [program.h.health]\nexec = [\"@LEAVER\", \"--record\", \"@DIR:h\", \"--setsid\", \"--double-fork\", \"--stay\"]\nevery = \"100ms\"\ntimeout = \"60s\"\n",
    );
    let checks: Vec<i32> = ["r", "h"]
        .iter()
        .flat_map(|p| {
            [
                run.wait_records(p, "root", 1),
                run.wait_records(p, "sleeper", 1),
            ]
            .concat()
        })
        .collect();
    let lifeline = lifeline_of(run.sup.pid()).expect("a lifeline");
    // The lifeline holds each of them once the check's tree (or the orphan scan) found it.
    let mut missing = Vec::new();
    let held = wait_until(LONG, || {
        let pidfds = pidfds_of(lifeline);
        missing = checks
            .iter()
            .copied()
            .filter(|p| !pidfds.contains(p))
            .collect();
        missing.is_empty()
    });
    assert!(
        held,
        "the lifeline never held {missing:?} of the checks' processes {checks:?}\n{}",
        run.sup.dump()
    );
    run.sup.signal(libc::SIGKILL);
    run.sup.wait_exit(LONG);
    let mut left = Vec::new();
    let gone = wait_until(LONG, || {
        left = living(&checks);
        left.is_empty()
    });
    assert!(
        gone,
        "check processes outlived a SIGKILLed supervisor: {left:?}"
    );
}

#[test]
fn check_processes_are_not_orphans() {
    // Each try lives half a second, across orphan scans (every 200 ms, and on orphans' exits),
    // with its sleeper reparented to supervise at once.
    let run = Run::start(
        "[sample]\nevery = \"200ms\"\n\
         [program.p]\ncommand = [@IDLE]\n\
         [program.p.ready]\nexec = [\"@LEAVER\", \"--record\", \"@DIR:p\", \"--setsid\", \"--double-fork\", \"--exit-after\", \"500\"]\nevery = \"100ms\"\ntimeout = \"10s\"\n",
    );
    run.wait_records("p", "root", 4);
    run.assert_at_most_living("p", 2, "p");
    let orphans = run.sup.of("orphan");
    assert!(
        orphans.is_empty(),
        "check processes reported as orphans: {orphans:?}\n{}",
        run.sup.dump()
    );
}
