//! Worker output: prefixed forwarding, log files, last words before death, and a flooding worker
//! that can neither stall sampling nor grow the supervisor's memory.

mod common;

use std::fs;
use std::process::Stdio;
use std::time::Duration;

use common::{example, rss, unique, wait_until, ProgramGuard, Sup, MIB};

#[test]
fn last_lines_before_death_reach_the_log() {
    let name = unique("lastwords");
    let crasher = example("crasher");
    let mut sup = Sup::start_with(
        &[
            "--name",
            &name,
            "--restart",
            "never",
            "--log-dir",
            "logs",
            "--prefix",
            "--",
            &crasher,
            "--lines",
            "5000",
            "--after",
            "0",
            "--code",
            "4",
        ],
        |cmd, dir| {
            cmd.current_dir(dir);
        },
    );
    assert_eq!(sup.wait_exit(Duration::from_secs(20)).code(), Some(4));
    let log = fs::read_to_string(sup.path("logs").join(format!("{name}.0.stdout.log")))
        .expect("log file");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines.first().map(|l| l.starts_with("crasher pid=")),
        Some(true)
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("line ")).count(),
        5000
    );
    assert_eq!(lines.last(), Some(&"crasher exiting code=4"));
    // And the same lines were forwarded with the name[instance] prefix (`--prefix`: one
    // instance of a single command is forwarded without it by default).
    let stdout = fs::read_to_string(sup.path("stdout")).expect("stdout");
    assert!(
        stdout.contains(&format!("{name}[0] line 4999\n")),
        "{}",
        sup.dump()
    );
    assert!(stdout.ends_with(&format!("{name}[0] crasher exiting code=4\n")));
}

#[test]
fn flooding_worker_neither_stalls_sampling_nor_bloats_the_supervisor() {
    let name = unique("flood");
    let _guard = ProgramGuard(name.clone());
    let flood = example("flood");
    // The worker floods output and leaks 30 MiB/s; it must still be restarted for memory on time,
    // the log files must respect their rotation limits, and the supervisor stays small.
    let sup = Sup::start_with(
        &[
            "--name",
            &name,
            "--memory-max",
            "48MiB",
            "--memory-for",
            "1",
            "--log-dir",
            "logs",
            "--log-max",
            "1MiB",
            "--log-keep",
            "2",
            "--",
            &flood,
            "--stderr",
            "--leak-rate",
            "30",
        ],
        |cmd, dir| {
            cmd.current_dir(dir).stdout(Stdio::null());
        },
    );
    for n in 1..=2 {
        let r = sup.wait_nth(n, Duration::from_secs(30), "memory restart", |e| {
            e["event"] == "restarting"
        });
        assert_eq!(r["reason"], "memory", "{}", sup.dump());
    }
    let over = sup.of("memory_over");
    assert!(
        over.iter()
            .all(|e| e["bytes"].as_u64().expect("bytes") < 64 * MIB),
        "{}",
        sup.dump()
    );
    let supervisor_rss = rss(sup.pid()).expect("supervisor alive");
    assert!(
        supervisor_rss < 32 * MIB,
        "supervisor RSS {} MiB",
        supervisor_rss / MIB
    );
    let logs = sup.path("logs");
    let mut total = 0;
    for e in fs::read_dir(&logs).expect("logs").flatten() {
        let len = e.metadata().expect("metadata").len();
        assert!(len <= MIB, "{} is {len} bytes", e.path().display());
        total += len;
    }
    // 2 streams x (live + 2 kept) x 1 MiB at most.
    assert!(total <= 6 * MIB);
    assert!(
        fs::metadata(logs.join(format!("{name}.0.stdout.log.2"))).is_ok(),
        "rotation happened"
    );
}

#[test]
fn stalled_stdout_does_not_stall_supervision_of_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flood = unique("flood-stalled");
    let leaky = unique("leaky-neighbour");
    let _guards = [ProgramGuard(flood.clone()), ProgramGuard(leaky.clone())];
    let config = dir.path().join("supervise.toml");
    fs::write(
        &config,
        format!(
            "[program.{flood}]\ncommand = [\"{}\"]\n[program.{leaky}]\ncommand = [\"{}\", \"--rate\", \"40\"]\nmemory = {{ max = \"48MiB\", for = 1 }}\n",
            example("flood"),
            example("leaky")
        ),
    )
    .expect("config");
    // Our stdout is a pipe nobody reads: the output thread blocks on it, the flooding worker
    // blocks on its own pipe, and the neighbour must still be sampled and restarted.
    let (reader, writer) = std::io::pipe().expect("pipe");
    let sup = Sup::start_with(&["-c", config.to_str().expect("utf-8")], |cmd, _| {
        cmd.stdout(writer);
    });
    let r = sup.wait_nth(
        1,
        Duration::from_secs(30),
        "neighbour memory restart",
        |e| e["event"] == "restarting" && e["program"] == leaky.as_str(),
    );
    assert_eq!(r["reason"], "memory");
    let supervisor_rss = rss(sup.pid()).expect("alive");
    assert!(
        supervisor_rss < 32 * MIB,
        "supervisor RSS {} MiB",
        supervisor_rss / MIB
    );
    assert!(wait_until(Duration::from_secs(1), || true));
    drop(reader);
}
