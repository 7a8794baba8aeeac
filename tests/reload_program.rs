//! Signals and reloads as operators know them: `supervise signal NAME SIG` reaches each
//! instance's main process (with `--group`, its whole process group), and `supervise
//! reload-program NAME` carries out the program's reload action on one instance at a time, each
//! once the one before is ready again, refusing to run beside a restart or another reload of the
//! same program: gunicorn replicas reloaded under load lose no request.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::peers::{free_port, gunicorn, python};
use common::{
    ctl, example, pid_of, sigcount_log, status_json, unique, wait_until, ProgramGuard, Sup,
};

const LONG: Duration = Duration::from_secs(30);

/// Two replicas of `sigcount` with two children each, logging to the run's `sig.log`, and the
/// `reload` table given; returns the supervisor, the name and the roots' pids by instance.
fn recorders(reload: &str) -> (Sup, String, ProgramGuard, Vec<i32>) {
    let name = unique("sigs");
    let guard = ProgramGuard(name.clone());
    let sup = Sup::start_with(&[], |cmd, dir| {
        let path = dir.join("supervise.toml");
        std::fs::write(
            &path,
            format!(
                "[program.{name}]\ncommand = [\"{}\", \"--children\", \"2\", \"--log\", \"{}\"]\n\
                 replicas = 2\n{reload}",
                example("sigcount"),
                dir.join("sig.log").display()
            ),
        )
        .expect("config");
        cmd.arg("--admin")
            .arg(dir.join("ctl.sock"))
            .arg("-c")
            .arg(path);
    });
    sup.wait_stdout("sigcount ready", 2, LONG);
    let mut roots = vec![0; 2];
    for e in sup.of("started") {
        let i = usize::try_from(e["instance"].as_u64().expect("instance")).expect("small");
        roots[i] = pid_of(&e);
    }
    (sup, name, guard, roots)
}

/// The lines of `sig.log` that recorded `signal`: (pid, role).
fn got(sup: &Sup, signal: &str) -> Vec<(i32, String)> {
    sigcount_log(&sup.path("sig.log"))
        .into_iter()
        .filter(|(_, _, s)| s == signal)
        .map(|(p, r, _)| (p, r))
        .collect()
}

#[test]
fn signal_reaches_each_main_process_and_with_group_the_whole_group() {
    let (sup, name, _g, roots) = recorders("");
    let (ok, text) = ctl(&sup.socket(), &["signal", &name, "HUP"]);
    assert!(ok, "{text}");
    assert!(text.contains("main process"), "{text}");
    assert!(
        wait_until(LONG, || got(&sup, "HUP").len() >= 2),
        "{:?}\n{}",
        sigcount_log(&sup.path("sig.log")),
        sup.dump()
    );
    // Another signal through the group, to know every HUP that was coming has come.
    let (ok, text) = ctl(&sup.socket(), &["signal", &name, "USR1", "--group"]);
    assert!(ok, "{text}");
    // Each root and its two children.
    assert!(
        wait_until(LONG, || got(&sup, "USR1").len() >= 6),
        "{:?}\n{}",
        sigcount_log(&sup.path("sig.log")),
        sup.dump()
    );
    let hup = got(&sup, "HUP");
    let mut pids: Vec<i32> = hup.iter().map(|(p, _)| *p).collect();
    pids.sort_unstable();
    let mut want = roots.clone();
    want.sort_unstable();
    assert_eq!(
        pids, want,
        "HUP reached {hup:?}, not only the roots {roots:?}"
    );
    assert!(hup.iter().all(|(_, r)| r == "root"), "{hup:?}");
    let usr1 = got(&sup, "USR1");
    assert_eq!(
        usr1.iter().filter(|(_, r)| r == "child").count(),
        4,
        "{usr1:?}"
    );
    // Neither was a stop: nothing restarted.
    assert_eq!(sup.of("started").len(), 2, "{}", sup.dump());
}

#[test]
fn reload_program_goes_one_instance_at_a_time_and_refuses_what_would_overlap() {
    let (sup, name, _g, roots) = recorders("reload = { signal = \"USR2\", settle = \"1500ms\" }\n");
    let socket = sup.socket();
    let asked = Instant::now();
    let (ok, text) = ctl(&socket, &["reload-program", &name]);
    assert!(ok, "{text}");
    assert!(text.contains("one at a time"), "{text}");
    // While it is under way: a restart and a second reload are refused, saying why.
    let (ok, text) = ctl(&socket, &["restart", &name]);
    assert!(!ok && text.contains("is reloading"), "{text}");
    let (ok, text) = ctl(&socket, &["reload-program", &name]);
    assert!(!ok && text.contains("already reloading"), "{text}");
    // One instance got it, not the other, for a while.
    assert!(wait_until(LONG, || !got(&sup, "USR2").is_empty()));
    let first = got(&sup, "USR2");
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0], (roots[0], "root".to_owned()), "{first:?}");
    assert!(
        wait_until(LONG, || got(&sup, "USR2").len() >= 2),
        "{}",
        sup.dump()
    );
    // The second only after the first's settle time.
    assert!(
        asked.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        asked.elapsed()
    );
    let both = got(&sup, "USR2");
    assert_eq!(both[1], (roots[1], "root".to_owned()), "{both:?}");
    // Done: a reload with --wait answers once every instance has reloaded; no restart at all.
    // Refused while the first is still settling on instance 1; taken once it is done.
    let (mut ok, mut text) = (false, String::new());
    wait_until(LONG, || {
        (ok, text) = ctl(&socket, &["reload-program", &format!("{name}/1"), "--wait"]);
        ok || !text.contains("already reloading")
    });
    assert!(ok, "{text}");
    assert!(text.contains("reloaded 1 instance"), "{text}");
    assert_eq!(got(&sup, "USR2").len(), 3);
    // Each turn is in the events: reloading (the signal, the main pid), then reloaded, in order.
    // (The events file is written by a thread of its own: wait for the last line.)
    assert!(
        wait_until(LONG, || sup.of("reloaded").len() >= 3),
        "{}",
        sup.dump()
    );
    let turns: Vec<(String, u64, i64)> = sup
        .events()
        .into_iter()
        .filter(|e| e["event"] == "reloading" || e["event"] == "reloaded")
        .map(|e| {
            (
                e["event"].as_str().unwrap_or("").to_owned(),
                e["instance"].as_u64().unwrap_or(99),
                e["pid"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    let want: Vec<(String, u64, i64)> = [
        (0, "reloading"),
        (0, "reloaded"),
        (1, "reloading"),
        (1, "reloaded"),
        (1, "reloading"),
        (1, "reloaded"),
    ]
    .iter()
    .map(|&(i, e)| (e.to_owned(), i, i64::from(roots[i as usize])))
    .collect();
    assert_eq!(turns, want, "{}", sup.dump());
    let first = sup.of("reloading");
    assert_eq!(first[0]["action"], "SIGUSR2", "{}", sup.dump());
    assert_eq!(sup.of("reloaded")[0]["restarted"], false, "{}", sup.dump());
    assert_eq!(sup.of("started").len(), 2, "{}", sup.dump());
    // A stopped program has nothing to reload.
    let (ok, text) = ctl(&socket, &["stop", &name]);
    assert!(ok, "{text}");
    let (ok, text) = ctl(&socket, &["reload-program", &name]);
    assert!(!ok && text.contains("stopped"), "{text}");
}

#[test]
fn reload_exec_runs_a_command_told_the_main_pid() {
    let (sup, name, _g, roots) = recorders(
        "reload = { exec = [\"/bin/sh\", \"-c\", \"[ -n \\\"$SUPERVISE_PROGRAM\\\" ] && kill -WINCH $SUPERVISE_MAINPID\"], settle = \"100ms\" }\n",
    );
    let (ok, text) = ctl(&sup.socket(), &["reload-program", &name, "--wait"]);
    assert!(ok, "{text}\n{}", sup.dump());
    let winch = got(&sup, "WINCH");
    let mut pids: Vec<i32> = winch.iter().map(|(p, _)| *p).collect();
    pids.sort_unstable();
    let mut want = roots.clone();
    want.sort_unstable();
    assert_eq!(pids, want, "{winch:?}");
}

#[test]
fn a_program_that_says_reloading_is_reloaded_when_it_says_ready_again() {
    // systemd's notify-reload: RELOADING=1, then READY=1 500 ms later. The settle time (20 s)
    // does not apply: each turn ends at the READY=1.
    let name = unique("notifyrl");
    let _g = ProgramGuard(name.clone());
    let sup = Sup::with_config(&format!(
        "[program.{name}]
command = [\"{}\", \"--ping\", \"100\", \"--reload-ms\", \"500\"]
\
         replicas = 2
ready = {{ notify = true }}
reload = {{ settle = \"20s\" }}
",
        example("notifier")
    ));
    sup.wait_stdout("ready", 2, LONG);
    assert!(
        wait_until(LONG, || sup.of("ready").len() >= 2),
        "{}",
        sup.dump()
    );
    let asked = Instant::now();
    let (ok, text) = ctl(&sup.socket(), &["reload-program", &name, "--wait"]);
    let took = asked.elapsed();
    assert!(ok, "{text}\n{}", sup.dump());
    sup.wait_stdout("reloaded", 2, LONG);
    // One after the other (each 500 ms), and long before the settle time.
    assert!(took >= Duration::from_millis(1000), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(sup.of("started").len(), 2, "{}", sup.dump());
}

/// Clients sending one request after another on fresh connections, to each of `ports` in
/// turn, until `stop`: (answered, failed); each failure said on stderr.
fn client_load(ports: [u16; 2], stop: &AtomicBool) -> (u64, u64) {
    let (mut ok, mut failed) = (0, 0);
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let port = ports[n % 2];
        let answered = (|| {
            let mut s =
                TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                .map_err(|e| format!("write: {e}"))?;
            let mut text = String::new();
            s.read_to_string(&mut text)
                .map_err(|e| format!("read: {e}"))?;
            if text.starts_with("HTTP/1.") && text.contains(" 200 ") {
                Ok(())
            } else {
                Err(format!("answer: {:?}", text.lines().next()))
            }
        })();
        match answered {
            Ok(()) => ok += 1,
            Err(e) => {
                eprintln!("request to {port} failed: {e}");
                failed += 1;
            }
        }
    }
    (ok, failed)
}

/// The pids of `program`'s instance `i`'s tree, its root left out (gunicorn's workers).
fn workers_of(socket: &Path, program: &str, i: u64) -> Vec<i64> {
    let rows = status_json(socket);
    let Some(w) = rows
        .iter()
        .find(|w| w["program"] == program && w["instance"] == i)
    else {
        return Vec::new();
    };
    let root = w["pid"].as_i64();
    let mut pids: Vec<i64> = w["members"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m["pid"].as_i64()).collect())
        .unwrap_or_default();
    pids.retain(|p| Some(*p) != root);
    pids.sort_unstable();
    pids
}

#[test]
fn gunicorn_replicas_reloaded_under_load_one_at_a_time_lose_no_request() {
    let test = "gunicorn_replicas_reloaded_under_load_one_at_a_time_lose_no_request";
    let Some(py) = python(test) else { return };
    let Some(gunicorn) = gunicorn(&py, test) else {
        return;
    };
    let ports = [free_port(), free_port()];
    assert_ne!(ports[0], ports[1]);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/gunicorn");
    let name = unique("gunireload");
    let _g = ProgramGuard(name.clone());
    let mut sup = Sup::start_with(&["--sample-every", "200ms"], |cmd, tmp| {
        let path = tmp.join("supervise.toml");
        std::fs::write(
            &path,
            format!(
                "[program.{name}]\n\
                 command = [\"{gunicorn}\", \"-c\", \"{dir}/replica.conf.py\", \
                 \"--chdir\", \"{dir}\", \"hello:app\"]\n\
                 env = {{ APP_PORTS = \"{p0},{p1}\" }}\n\
                 replicas = 2\n\
                 essential = true\n\
                 reload = {{ signal = \"HUP\", settle = \"3s\" }}\n\
                 stop = {{ grace = \"15s\" }}\n",
                gunicorn = gunicorn.display(),
                dir = dir.display(),
                p0 = ports[0],
                p1 = ports[1],
            ),
        )
        .expect("config");
        cmd.arg("--admin")
            .arg(tmp.join("ctl.sock"))
            .arg("-c")
            .arg(path);
    });
    let socket = sup.socket();
    // Both answer.
    assert!(
        wait_until(LONG, || ports.iter().all(|p| TcpStream::connect((
            "127.0.0.1",
            *p
        ))
        .is_ok())),
        "{}",
        sup.dump()
    );
    // Each instance's two workers are in its tree.
    assert!(wait_until(LONG, || {
        workers_of(&socket, &name, 0).len() == 2 && workers_of(&socket, &name, 1).len() == 2
    }));
    let before = [workers_of(&socket, &name, 0), workers_of(&socket, &name, 1)];
    let masters: Vec<i32> = sup.of("started").iter().map(pid_of).collect();
    let stop = AtomicBool::new(false);
    let (answered, failed, seen_one_alone) = std::thread::scope(|scope| {
        let loads: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| client_load(ports, &stop)))
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let reloader = scope.spawn(|| ctl(&socket, &["reload-program", &name, "--wait"]));
        // While it runs: a moment when instance 0 has new workers and instance 1 the old ones.
        let mut one_alone = false;
        while !reloader.is_finished() {
            let now = [workers_of(&socket, &name, 0), workers_of(&socket, &name, 1)];
            if now[0].len() == 2
                && now[0].iter().all(|p| !before[0].contains(p))
                && now[1] == before[1]
            {
                one_alone = true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let (ok, text) = reloader.join().expect("reloader");
        assert!(ok, "{text}\n{}", sup.dump());
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let (mut answered, mut failed) = (0, 0);
        for l in loads {
            let (a, f) = l.join().expect("load");
            answered += a;
            failed += f;
        }
        (answered, failed, one_alone)
    });
    let after = [workers_of(&socket, &name, 0), workers_of(&socket, &name, 1)];
    eprintln!(
        "{test}: {answered} requests answered, {failed} failed; workers {before:?} -> {after:?}"
    );
    assert!(
        seen_one_alone,
        "never saw instance 0 reloaded before instance 1\n{}",
        sup.dump()
    );
    for i in 0..2 {
        assert!(
            after[i].iter().all(|p| !before[i].contains(p)),
            "instance {i}'s workers were not replaced: {before:?} -> {after:?}"
        );
    }
    // Reloaded in place: the masters are the same processes, nothing restarted.
    let now: Vec<i32> = sup.of("started").iter().map(pid_of).collect();
    assert_eq!(now, masters, "{}", sup.dump());
    assert!(answered > 200, "only {answered} requests answered");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed",
        answered + failed
    );
    sup.signal(libc::SIGTERM);
    sup.wait_exit(LONG);
}

#[test]
fn a_reload_that_fails_halts_at_that_instance_and_says_so() {
    let (sup, name, _g, roots) =
        recorders("reload = { exec = [\"/bin/false\"], settle = \"100ms\" }\n");
    let (ok, text) = ctl(&sup.socket(), &["reload-program", &name, "--wait"]);
    assert!(!ok && text.contains("reload.exec failed"), "{text}");
    let halted = sup.wait_event("reload_halted", LONG);
    assert_eq!(halted["instance"], 0, "{}", sup.dump());
    assert!(
        halted["detail"]
            .as_str()
            .is_some_and(|d| d.contains("reload.exec failed")),
        "{halted}"
    );
    // The instance after it was not touched, and nothing was restarted.
    let reloading: Vec<u64> = sup
        .of("reloading")
        .iter()
        .filter_map(|e| e["instance"].as_u64())
        .collect();
    assert_eq!(reloading, vec![0], "{}", sup.dump());
    assert_eq!(sup.of("started").len(), roots.len(), "{}", sup.dump());
}
