//! What supervise says on its own stderr without `--events`: one timestamped line per lifecycle
//! event, none with `--quiet`, no colour codes when stderr is not a terminal, and worker lines
//! stamped with `--timestamps`.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{example, unique, ProgramGuard, Sup};

/// The lines of `text` that mention `name[0]` and contain `what`.
fn lines_with<'a>(text: &'a str, name: &str, what: &str) -> Vec<&'a str> {
    let tag = format!(" {name}[0] ");
    text.lines()
        .filter(|l| l.contains(&tag) && l.contains(what))
        .collect()
}

/// The RFC 3339 time a line starts with, if it does.
fn stamp(line: &str) -> Option<&str> {
    let first = line.split(' ').next()?;
    humantime::parse_rfc3339(first).ok().map(|_| first)
}

/// Runs `supervise ARGS` without `--events`, with a control socket of its own (a busy default
/// socket would add a warning to stderr).
fn quiet_run(args: &[&str], adjust: impl FnOnce(&mut Command, &Path)) -> Sup {
    Sup::without_events(&[], |cmd, dir| {
        cmd.arg("--admin").arg(dir.join("ctl.sock")).args(args);
        adjust(cmd, dir);
    })
}

#[test]
fn a_command_that_cannot_run_says_why() {
    let mut sup = quiet_run(
        &[
            "--max-restarts",
            "1",
            "--backoff-first",
            "10ms",
            "--",
            "/nonexistent/cmd",
        ],
        |_, _| {},
    );
    let status = sup.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(127), "{}", sup.dump());
    let stderr = sup.stderr();
    let why = lines_with(&stderr, "cmd", "cannot run");
    assert_eq!(why.len(), 2, "one line per attempt:\n{stderr}");
    for line in why {
        assert!(stamp(line).is_some(), "{line}");
        assert!(line.contains("/nonexistent/cmd"), "{line}");
        assert!(line.contains("No such file or directory"), "{line}");
    }
    assert_eq!(
        lines_with(&stderr, "cmd", "gave up after 1 restart").len(),
        1,
        "{stderr}"
    );
}

/// Runs a crasher that exits 3 under `--max-restarts 2`, with `flags` added.
fn crash_loop(flags: &[&str]) -> (Sup, String, ProgramGuard) {
    let name = unique("crashlines");
    let guard = ProgramGuard(name.clone());
    let crasher = example("crasher");
    let mut args = vec![
        "--name",
        &name,
        "--max-restarts",
        "2",
        "--backoff-first",
        "10ms",
    ];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--", &crasher, "--code", "3", "--after", "0"]);
    let mut sup = quiet_run(&args, |cmd, _| {
        cmd.env_remove("NO_COLOR");
    });
    let status = sup.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(3), "{}", sup.dump());
    (sup, name, guard)
}

#[test]
fn a_crash_loop_is_told_line_by_line() {
    let (sup, name, _guard) = crash_loop(&[]);
    let stderr = sup.stderr();
    let started = lines_with(&stderr, &name, "started with pid ");
    let exited = lines_with(&stderr, &name, "exited with code 3");
    let restarting = lines_with(&stderr, &name, "restarting in ");
    let fatal = lines_with(&stderr, &name, "gave up after 2 restarts in 60s (fatal)");
    assert_eq!(started.len(), 3, "{stderr}");
    assert_eq!(exited.len(), 3, "{stderr}");
    assert_eq!(restarting.len(), 2, "{stderr}");
    assert!(restarting.iter().all(|l| l.ends_with("(exit)")), "{stderr}");
    assert_eq!(fatal.len(), 1, "{stderr}");
    for line in started
        .iter()
        .chain(&exited)
        .chain(&restarting)
        .chain(&fatal)
    {
        let ts = stamp(line).unwrap_or_else(|| panic!("no timestamp: {line:?}"));
        // Seconds, UTC: `2026-11-28T20:33:49Z`.
        assert_eq!(ts.len(), 20, "{ts}");
        assert!(ts.ends_with('Z'), "{ts}");
    }
    // In order: start, exit, restart, ..., the last exit, then the verdict.
    let order: Vec<&str> = stderr
        .lines()
        .filter_map(|l| {
            let text = l.split_once(&format!(" {name}[0] "))?.1;
            ["started", "exited", "restarting", "gave up"]
                .into_iter()
                .find(|w| text.starts_with(w))
        })
        .collect();
    assert_eq!(
        order,
        [
            "started",
            "exited",
            "restarting",
            "started",
            "exited",
            "restarting",
            "started",
            "exited",
            "gave up"
        ],
        "{stderr}"
    );
}

#[test]
fn quiet_says_nothing() {
    let (sup, name, _guard) = crash_loop(&["--quiet", "--prefix"]);
    assert_eq!(sup.stderr(), "", "{}", sup.dump());
    // It did run, three times.
    let stdout = fs::read_to_string(sup.path("stdout")).expect("stdout");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with(&format!("{name}[0] crasher exiting code=3")))
            .count(),
        3,
        "{stdout}"
    );
}

#[test]
fn no_colour_codes_when_stderr_is_a_file() {
    // A full events file adds supervise's own warning (the `tracing` kind of line) to the
    // lifecycle lines.
    let dir = tempfile::tempdir().expect("tempdir");
    let events = dir.path().join("events.jsonl");
    std::os::unix::fs::symlink("/dev/full", &events).expect("symlink");
    let (sup, name, _guard) = crash_loop(&["--events", events.to_str().expect("utf-8")]);
    let stderr = fs::read(sup.path("stderr")).expect("stderr");
    let text = String::from_utf8_lossy(&stderr);
    assert!(text.contains("events"), "{text}");
    assert!(!stderr.contains(&0x1b), "escape codes in a file:\n{text:?}");
    assert!(
        !lines_with(&text, &name, "exited with code 3").is_empty(),
        "{text}"
    );
}

#[test]
fn timestamps_prefix_worker_lines() {
    let name = unique("stamped");
    let _guard = ProgramGuard(name.clone());
    let crasher = example("crasher");
    let mut sup = quiet_run(
        &[
            "--name",
            &name,
            "--restart",
            "never",
            "--timestamps",
            "--log-dir",
            "logs",
            "--prefix",
            "--",
            &crasher,
            "--lines",
            "3",
            "--code",
            "0",
            "--after",
            "0",
        ],
        |cmd, dir| {
            cmd.current_dir(dir);
        },
    );
    assert_eq!(sup.wait_exit(Duration::from_secs(20)).code(), Some(0));
    let millis = |line: &str| {
        let ts = stamp(line).unwrap_or_else(|| panic!("no timestamp: {line:?}"));
        // Milliseconds, UTC: `2026-11-28T20:33:49.123Z`.
        assert_eq!(ts.len(), 24, "{ts}");
        assert_eq!(&ts[19..20], ".", "{ts}");
        ts.len() + 1
    };
    let stdout = fs::read_to_string(sup.path("stdout")).expect("stdout");
    let forwarded: Vec<&str> = stdout.lines().collect();
    assert_eq!(forwarded.len(), 5, "{stdout}");
    for line in &forwarded {
        let rest = &line[millis(line)..];
        assert!(rest.starts_with(&format!("{name}[0] ")), "{line}");
    }
    assert!(
        forwarded[3].ends_with(&format!("{name}[0] line 3")),
        "{stdout}"
    );
    let log = fs::read_to_string(sup.path("logs").join(format!("{name}.0.stdout.log")))
        .expect("log file");
    let logged: Vec<&str> = log.lines().collect();
    assert_eq!(logged.len(), 5, "{log}");
    for line in &logged {
        millis(line);
    }
    assert!(logged[4].ends_with(" crasher exiting code=0"), "{log}");
    // The stamps never go backwards.
    let mut stamps: Vec<&str> = logged.iter().filter_map(|l| stamp(l)).collect();
    let read = stamps.clone();
    stamps.sort_unstable();
    assert_eq!(stamps, read);
}

#[test]
fn a_stalled_stderr_does_not_stall_supervision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flood = unique("flood-stderr");
    let leaky = unique("leaky-lines");
    let _guards = [ProgramGuard(flood.clone()), ProgramGuard(leaky.clone())];
    let config = dir.path().join("supervise.toml");
    fs::write(
        &config,
        format!(
            "[program.{flood}]\ncommand = [\"{}\", \"--stderr\"]\n[program.{leaky}]\ncommand = [\"{}\", \"--rate\", \"40\"]\nmemory = {{ max = \"48MiB\", for = 1 }}\n",
            example("flood"),
            example("leaky")
        ),
    )
    .expect("config");
    // Our stderr is a pipe nobody reads: the flood fills it, and then every line supervise has
    // to say about its neighbour's memory restarts waits; the restarts themselves must not.
    let (reader, writer) = std::io::pipe().expect("pipe");
    let sup = Sup::start_with(&["-c", config.to_str().expect("utf-8")], |cmd, _| {
        cmd.stderr(writer).stdout(std::process::Stdio::null());
    });
    for n in 1..=2 {
        let r = sup.wait_nth(
            n,
            Duration::from_secs(30),
            "neighbour memory restart",
            |e| e["event"] == "restarting" && e["program"] == leaky.as_str(),
        );
        assert_eq!(r["reason"], "memory");
    }
    drop(reader);
}

/// What `supervise -- /nonexistent/cmd` writes on a terminal (a pseudo-terminal's other end),
/// with `NO_COLOR` set or not.
fn on_a_terminal(no_color: bool) -> String {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::fs::OpenOptionsExt;
    // SAFETY: posix_openpt returns a new descriptor (or -1), which we own from here on.
    let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    assert!(master >= 0, "{}", std::io::Error::last_os_error());
    // SAFETY: `master` is a valid descriptor nobody else owns.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: plain calls on our own descriptor; ptsname_r writes at most `name.len()` bytes.
    let ok = unsafe {
        use std::os::fd::AsRawFd;
        libc::grantpt(master.as_raw_fd()) == 0
            && libc::unlockpt(master.as_raw_fd()) == 0
            && libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) == 0
    };
    assert!(ok, "{}", std::io::Error::last_os_error());
    // SAFETY: ptsname_r wrote a NUL-terminated string into `name`.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    let terminal = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(name.to_str().expect("utf-8"))
        .expect("open the terminal");
    let mut sup = quiet_run(
        &["--max-restarts", "0", "--", "/nonexistent/cmd"],
        |cmd, _| {
            cmd.stderr(terminal);
            if no_color {
                cmd.env("NO_COLOR", "1");
            } else {
                cmd.env_remove("NO_COLOR");
            }
        },
    );
    // Read until every writer is gone (EIO), on a thread: a read cannot be given a deadline.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut master = fs::File::from(master);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send(out);
    });
    assert_eq!(sup.wait_exit(Duration::from_secs(20)).code(), Some(127));
    let out = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("terminal output");
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn colours_on_a_terminal_unless_no_color() {
    let coloured = on_a_terminal(false);
    assert!(
        coloured.contains("cmd[0] \x1b[31mcannot run"),
        "{coloured:?}"
    );
    let plain = on_a_terminal(true);
    assert!(plain.contains("cmd[0] cannot run"), "{plain:?}");
    assert!(!plain.contains('\x1b'), "{plain:?}");
}

#[test]
fn events_on_stderr_are_not_told_twice() {
    let (sup, name, _guard) = crash_loop(&["--events", "-"]);
    let stderr = sup.stderr();
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}\n{stderr}")))
        .collect();
    let exited = events
        .iter()
        .filter(|e| e["event"] == "exited" && e["program"] == name.as_str())
        .count();
    assert_eq!(exited, 3, "{stderr}");
}
