//! Who a worker runs as and what the kernel lets it do (`user`, `group`, `umask`, `nice`,
//! `oom_score_adj`, `rlimits`), and where its environment comes from (`env_file`,
//! `clear_env`): each seen from outside, in the worker's own /proc files.
//!
//! Switching users needs root: those tests say they were skipped when not run as root. The
//! tests about what a non-root supervisor refuses run supervise as `nobody` when run as root,
//! and as whoever runs them otherwise.

mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    example, is_root, nobody, nobodys_dir, pid_of, run_example, runnable_by_others, supervise_bin,
    unique, wait_until, ProgramGuard, Sup,
};

/// `Key:` of /proc/PID/status, white space squeezed (`Uid:\t0\t0\t0\t0` is `0 0 0 0`).
fn status_field(pid: i32, key: &str) -> String {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| panic!("no {key} in {s}"))
}

/// (soft, hard) of a /proc/PID/limits line (`Max open files`).
fn limit(pid: i32, what: &str) -> (String, String) {
    let s = fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = s
        .lines()
        .find(|l| l.starts_with(what))
        .unwrap_or_else(|| panic!("no {what} in {s}"));
    let mut f = line[what.len()..].split_whitespace();
    (
        f.next().expect("soft").to_owned(),
        f.next().expect("hard").to_owned(),
    )
}

/// The nice value: field 19 of /proc/PID/stat.
fn nice(pid: i32) -> i64 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = s.rsplit_once(')').expect("comm").1;
    // Field 3 (state) is the first after the comm.
    after
        .split_whitespace()
        .nth(19 - 3)
        .expect("nice")
        .parse()
        .expect("number")
}

fn environ(pid: i32) -> Vec<(String, String)> {
    let raw = fs::read(format!("/proc/{pid}/environ")).expect("environ");
    raw.split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .filter_map(|v| {
            let s = String::from_utf8_lossy(v);
            let (k, v) = s.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

fn get<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[test]
fn limits_umask_nice_and_oom_score_are_the_workers() {
    // Within what this process has, so that no privilege is needed: a lower hard limit, a
    // higher nice value and OOM score.
    let (_, hard) = common::open_files();
    let hard = hard.min(4096);
    let soft = hard / 2;
    let nofile = format!("nofile={soft}:{hard}");
    let (sup, _name, _guard) = run_example(
        "limits",
        &[
            "--rlimit",
            &nofile,
            "--rlimit",
            "core=0",
            "--umask",
            "027",
            "--nice",
            "5",
            "--oom-score-adj",
            "150",
        ],
        "crasher",
        &["--after", "1000000"],
    );
    let pid = pid_of(&sup.wait_event("started", Duration::from_secs(10)));
    assert_eq!(
        limit(pid, "Max open files"),
        (soft.to_string(), hard.to_string())
    );
    assert_eq!(limit(pid, "Max core file size"), ("0".into(), "0".into()));
    assert_eq!(status_field(pid, "Umask"), "0027");
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    assert_eq!(nice(pid), (nice(me) + 5).min(19));
    assert_eq!(
        fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
            .expect("oom_score_adj")
            .trim(),
        "150"
    );
    // Supervise itself is untouched.
    assert_eq!(nice(sup.pid()), nice(me));
    assert_eq!(
        limit(sup.pid(), "Max core file size"),
        limit(me, "Max core file size")
    );
}

#[test]
fn env_file_and_clear_env_shape_the_environment() {
    let keep = unique("envkeep");
    let clear = unique("envclear");
    let _guards = (ProgramGuard(keep.clone()), ProgramGuard(clear.clone()));
    let crasher = example("crasher");
    let sup = Sup::start_with(&[], |cmd, dir| {
        // Relative to the config's directory.
        fs::write(
            dir.join("app.env"),
            "# the app's settings\nIDT_A=file\nexport IDT_B=\"file\"\n\nIDT_Q='a b $HOME'\n",
        )
        .expect("env file");
        let program = |name: &str, extra: &str| {
            format!(
                "[program.{name}]\ncommand = [{crasher:?}, \"--after\", \"1000000\"]\n\
                 env_file = \"app.env\"\nenv = {{ IDT_B = \"env\" }}\n{extra}"
            )
        };
        let config = program(&keep, "")
            + &program(
                &clear,
                "clear_env = true\n[program.X.heartbeat]\ntimeout = \"1h\"\n",
            )
            .replace("program.X", &format!("program.{clear}"));
        fs::write(dir.join("supervise.toml"), config).expect("config");
        cmd.env("IDT_A", "sup")
            .env("IDT_B", "sup")
            .env("IDT_KEEP", "sup")
            .arg("--admin")
            .arg(dir.join("ctl.sock"))
            .arg("-c")
            .arg(dir.join("supervise.toml"));
    });
    let pid = |name: &str| {
        pid_of(&sup.wait_nth(1, Duration::from_secs(10), name, |e| {
            e["event"] == "started" && e["program"] == name
        }))
    };
    // Supervise's environment < env_file < env.
    let env = environ(pid(&keep));
    assert_eq!(get(&env, "IDT_A"), Some("file"), "{env:?}");
    assert_eq!(get(&env, "IDT_B"), Some("env"), "{env:?}");
    assert_eq!(get(&env, "IDT_Q"), Some("a b $HOME"), "{env:?}");
    assert_eq!(get(&env, "IDT_KEEP"), Some("sup"), "{env:?}");
    // Nothing of supervise's own environment, but what supervise always sets.
    let env = environ(pid(&clear));
    let mut keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    let mut want = vec![
        "IDT_A",
        "IDT_B",
        "IDT_Q",
        "NOTIFY_SOCKET",
        "SUPERVISE_CONTROL_FD",
        "SUPERVISE_INSTANCE",
        "SUPERVISE_NAME",
        "SUPERVISE_SEGMENT_FD",
        "WATCHDOG_USEC",
    ];
    // Where the kernel keeps memory PSI, the memory-pressure watch too (docs/host-pressure.md).
    if Path::new("/proc/pressure/memory").exists() {
        want.extend(["MEMORY_PRESSURE_WATCH", "MEMORY_PRESSURE_WRITE"]);
    }
    want.sort_unstable();
    assert_eq!(keys, want, "{env:?}");
    assert_eq!(get(&env, "IDT_B"), Some("env"));
    assert_eq!(get(&env, "SUPERVISE_NAME"), Some(clear.as_str()));
    assert_eq!(get(&env, "WATCHDOG_USEC"), Some("3600000000"));
}

#[test]
fn config_errors_name_the_file_line_and_key() {
    let fails_with = |config: &str, want: &str| {
        let (path, stderr) = common::refused(config);
        let want = format!("{path}:{want}");
        assert!(stderr.contains(&want), "expected {want:?} in {stderr:?}");
    };
    fails_with(
        "[program.a]\ncommand = [\"touch\", \"MARKER\"]\nuser = \"no-such-user-xq\"\n",
        "3: program.a.user: no user named \"no-such-user-xq\"",
    );
    fails_with(
        "[program.a]\ncommand = [\"touch\", \"MARKER\"]\nrlimits = { nofiles = 10 }\n",
        "3: program.a.rlimits.nofiles: unknown limit \"nofiles\"",
    );
    fails_with(
        "[program.a]\ncommand = [\"touch\", \"MARKER\"]\n[program.a.rlimits]\nnofile = { soft = 20, hard = 10 }\n",
        "4: program.a.rlimits.nofile: the soft limit is above the hard limit (20:10)",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let env_file = dir.path().join("bad.env");
    fs::write(&env_file, "GOOD=1\nexport\n").expect("env file");
    fails_with(
        &format!(
            "[program.a]\ncommand = [\"touch\", \"MARKER\"]\nenv_file = {:?}\n",
            env_file.display().to_string()
        ),
        &format!(
            "3: program.a.env_file: {}:2: expected NAME=VALUE",
            env_file.display()
        ),
    );
}

#[test]
fn a_limit_the_kernel_refuses_fails_the_spawn() {
    // No RLIMIT_NOFILE may exceed fs.nr_open, root's included: the child's setrlimit fails.
    let mut sup = Sup::start(&[
        "--max-restarts",
        "1",
        "--backoff-first",
        "10ms",
        "--rlimit",
        "nofile=unlimited",
        "--",
        &example("crasher"),
        "--after",
        "1000000",
    ]);
    let status = sup.wait_exit(Duration::from_secs(20));
    // Counted as a command that could not be run: 127.
    assert_eq!(status.code(), Some(127), "{}", sup.dump());
    let failed = sup.of("spawn_failed");
    assert_eq!(failed.len(), 2, "{}", sup.dump());
    let error = failed[0]["error"].as_str().expect("error");
    assert!(
        error.starts_with("cannot set rlimit nofile to unlimited: Operation not permitted"),
        "{error}"
    );
    assert!(sup.of("started").is_empty(), "{}", sup.dump());
    assert!(
        sup.stderr().contains(
            "crasher[0] cannot set rlimit nofile to unlimited: Operation not permitted\n"
        ),
        "{}",
        sup.stderr()
    );
}

// ---------------------------------------------------------------------------------------------
// Other users.

/// Runs `supervise ARGS` as nobody (root) or as ourselves, in `dir`, until it exits (killed
/// after 30 s): its exit code and stderr.
fn run_unprivileged(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let bin = if is_root() {
        runnable_by_others(Path::new(supervise_bin()), dir)
    } else {
        PathBuf::from(supervise_bin())
    };
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("stderr")).expect("stderr file"));
    if is_root() {
        let (uid, gid) = nobody();
        cmd.uid(uid).gid(gid);
    }
    let mut child = cmd.spawn().expect("spawn supervise");
    let mut status = None;
    if !wait_until(Duration::from_secs(30), || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    }) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("supervise did not exit within 30 s");
    }
    let stderr = fs::read_to_string(dir.join("stderr")).unwrap_or_default();
    (status.and_then(|s| s.code()), stderr)
}

#[test]
fn only_root_runs_a_program_as_another_user() {
    let dir = if is_root() {
        nobodys_dir()
    } else {
        tempfile::tempdir().expect("tempdir")
    };
    // SAFETY: geteuid has no preconditions.
    let me = if is_root() {
        nobody().0
    } else {
        unsafe { libc::geteuid() }
    };
    let config = dir.path().join("supervise.toml");
    let marker = dir.path().join("ran");
    fs::write(
        &config,
        format!(
            "[program.a]\ncommand = [\"touch\", {:?}]\nuser = \"root\"\n",
            marker.display().to_string()
        ),
    )
    .expect("config");
    let (code, stderr) = run_unprivileged(dir.path(), &["-c", config.to_str().expect("utf-8")]);
    assert_eq!(code, Some(2), "{stderr}");
    let want = format!(
        "{}:3: program.a.user: only root can run a program as another user: supervise runs as uid {me}, not root (uid 0)",
        config.display()
    );
    assert!(stderr.contains(&want), "expected {want:?} in {stderr:?}");
    assert!(!marker.exists(), "something was spawned");
    // The flag too.
    let (code, stderr) = run_unprivileged(dir.path(), &["--user", "root", "--", "true"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--user: only root can run a program as another user"),
        "{stderr}"
    );
}

#[test]
fn a_negative_nice_value_without_privilege_fails_the_spawn() {
    let dir = if is_root() {
        nobodys_dir()
    } else {
        tempfile::tempdir().expect("tempdir")
    };
    let crasher = if is_root() {
        runnable_by_others(Path::new(&example("crasher")), dir.path())
    } else {
        PathBuf::from(example("crasher"))
    };
    let events = dir.path().join("events.jsonl");
    let name = unique("nice");
    let _guard = ProgramGuard(name.clone());
    let (code, stderr) = run_unprivileged(
        dir.path(),
        &[
            "--events",
            events.to_str().expect("utf-8"),
            "--admin",
            dir.path().join("ctl.sock").to_str().expect("utf-8"),
            "--name",
            &name,
            "--max-restarts",
            "0",
            "--nice",
            "-5",
            "--",
            crasher.to_str().expect("utf-8"),
            "--after",
            "1000000",
        ],
    );
    assert_eq!(code, Some(127), "{stderr}");
    let text = fs::read_to_string(&events).unwrap_or_default();
    let failed: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "spawn_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{text}");
    // setpriority(2): lowering the nice value needs CAP_SYS_NICE.
    assert!(
        failed[0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("cannot set nice to -5: Permission denied")),
        "{text}"
    );
    assert!(
        stderr.contains("cannot set nice to -5: Permission denied\n"),
        "{stderr}"
    );
}

#[test]
fn a_worker_runs_as_nobody_with_its_groups_home_and_limits() {
    if !is_root() {
        eprintln!(
            "skipped: running a worker as another user needs root (this test runs as uid {})",
            // SAFETY: geteuid has no preconditions.
            unsafe { libc::geteuid() }
        );
        return;
    }
    let user = nix::unistd::User::from_name("nobody")
        .expect("user database")
        .expect("a user nobody");
    let groups: Vec<String> = nix::unistd::getgrouplist(c"nobody", user.gid)
        .expect("groups")
        .iter()
        .map(|g| g.as_raw().to_string())
        .collect();
    let name = unique("nobody");
    let _guard = ProgramGuard(name.clone());
    let shared = nobodys_dir();
    let crasher = runnable_by_others(Path::new(&example("crasher")), shared.path());
    let sup = Sup::with_config(&format!(
        "[program.{name}]\ncommand = [{:?}, \"--after\", \"1000000\"]\nuser = \"nobody\"\n\
         rlimits = {{ nofile = 2048 }}\n",
        crasher.display().to_string()
    ));
    let pid = pid_of(&sup.wait_event("started", Duration::from_secs(10)));
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    assert_eq!(status_field(pid, "Uid"), format!("{uid} {uid} {uid} {uid}"));
    assert_eq!(status_field(pid, "Gid"), format!("{gid} {gid} {gid} {gid}"));
    let mut seen: Vec<String> = status_field(pid, "Groups")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mut want = groups.clone();
    seen.sort();
    want.sort();
    assert_eq!(seen, want);
    assert_eq!(limit(pid, "Max open files"), ("2048".into(), "2048".into()));
    let env = environ(pid);
    assert_eq!(get(&env, "USER"), Some("nobody"));
    assert_eq!(get(&env, "LOGNAME"), Some("nobody"));
    assert_eq!(get(&env, "HOME"), user.dir.to_str());
    // It is still supervised: it stops with supervise.
    assert!(common::alive(pid), "{}", sup.dump());
    drop(sup);
    assert!(
        wait_until(Duration::from_secs(10), || !common::alive(pid)),
        "the worker outlived supervise"
    );
}
