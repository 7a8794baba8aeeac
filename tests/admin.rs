//! The control socket: `supervise status|restart|stop|start|reload` against a running supervisor.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::{ctl, example, supervise_bin, unique, wait_until, ProgramGuard, Sup};

#[test]
fn status_restart_stop_start_reload() {
    let name = unique("ctl");
    let _guard = ProgramGuard(name.clone());
    let sup = Sup::with_config(&format!(
        "[program.{name}]\ncommand = [\"{}\", \"--rate\", \"0\"]\nreplicas = 2\n",
        example("leaky")
    ));
    let socket = sup.socket();
    sup.wait_nth(2, Duration::from_secs(10), "two starts", |e| {
        e["event"] == "started"
    });
    // Only the owner may talk to it.
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // Status: one object per instance with the kernel's figures.
    assert!(wait_until(Duration::from_secs(5), || common::status_json(
        &socket
    )
    .iter()
    .all(|w| w["rss_bytes"].as_u64().is_some())));
    let workers = common::status_json(&socket);
    assert_eq!(workers.len(), 2);
    for (i, w) in workers.iter().enumerate() {
        assert_eq!(w["program"], name.as_str());
        assert_eq!(w["instance"], i);
        assert_eq!(w["state"], "running");
        assert!(
            w["pid"].as_i64().is_some()
                && w["threads"].as_u64() >= Some(1)
                && w["fds"].as_u64() >= Some(3)
        );
        for key in [
            "uptime_s",
            "restarts",
            "pss_bytes",
            "cpu_percent",
            "heap_bytes",
            "heartbeat_age_ms",
            "counters",
            "findings",
        ] {
            assert!(w.get(key).is_some(), "{key} missing in {w}");
        }
    }
    let (ok, table) = ctl(&socket, &["status"]);
    // A header, a row per instance, then the supervisor's own lines.
    assert!(
        ok && table.starts_with("PROGRAM")
            && table
                .lines()
                .filter(|l| l.starts_with(name.as_str()))
                .count()
                == 2
            && table
                .lines()
                .nth(3)
                .is_some_and(|l| l.starts_with("closed sockets: ")),
        "{table}"
    );

    // Restart one instance: reason manual, the other untouched.
    let (ok, text) = ctl(&socket, &["restart", &format!("{name}/1")]);
    assert!(ok, "{text}");
    let r = sup.wait_event("restarting", Duration::from_secs(10));
    assert_eq!(
        (r["reason"].as_str(), r["instance"].as_u64()),
        (Some("manual"), Some(1))
    );
    sup.wait_nth(3, Duration::from_secs(10), "restarted", |e| {
        e["event"] == "started"
    });

    // Stop: both instances stop and stay stopped; the supervisor keeps running.
    assert!(ctl(&socket, &["stop", &name]).0);
    sup.wait_nth(2, Duration::from_secs(10), "stopped", |e| {
        e["event"] == "stopped"
    });
    assert!(wait_until(Duration::from_secs(5), || common::status_json(
        &socket
    )
    .iter()
    .all(|w| w["state"] == "stopped")));
    std::thread::sleep(Duration::from_millis(300));
    assert!(common::alive(sup.pid()));

    // Start brings them back.
    assert!(ctl(&socket, &["start", &name]).0);
    sup.wait_nth(5, Duration::from_secs(10), "started again", |e| {
        e["event"] == "started"
    });
    assert!(wait_until(Duration::from_secs(5), || common::status_json(
        &socket
    )
    .iter()
    .all(|w| w["state"] == "running")));

    // Reload with an unchanged file changes nothing; errors are reported, not fatal.
    let (ok, text) = ctl(&socket, &["reload"]);
    assert!(ok, "{text}");
    let (ok, text) = ctl(&socket, &["restart", "nosuchprogram"]);
    assert!(
        !ok && text.contains("no program named nosuchprogram"),
        "{text}"
    );
    let (ok, text) = ctl(&socket, &["stop", "nosuchprogram"]);
    assert!(!ok && text.contains("no program named"), "{text}");
}

#[test]
fn a_second_supervisor_cannot_take_a_live_socket_and_clients_fail_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("ctl.sock");
    let s = socket.to_str().expect("utf-8");
    let (ok, text) = ctl(&socket, &["status"]);
    assert!(!ok && text.contains("cannot reach a supervisor"), "{text}");
    let name = unique("sock");
    let _guard = ProgramGuard(name.clone());
    let leaky = example("leaky");
    let first = Sup::start(&["--admin", s, "--name", &name, "--", &leaky, "--rate", "0"]);
    first.wait_event("started", Duration::from_secs(10));
    let out = Command::new(supervise_bin())
        .args(["--admin", s, "--", &leaky])
        .output()
        .expect("second");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another supervise is running"));
    // A bad request gets an error answer, not a hang.
    let mut raw = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
    std::io::Write::write_all(&mut raw, b"{\"cmd\":\"explode\"}\n").expect("write");
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut raw, &mut answer).expect("read");
    assert!(answer.contains("\"result\":\"error\""), "{answer}");
    drop(first);
    assert!(
        wait_until(Duration::from_secs(5), || !socket.exists()),
        "socket removed on exit"
    );
}

#[test]
fn restarting_a_whole_program_rolls_one_ready_instance_at_a_time() {
    let name = unique("roll");
    let _guard = ProgramGuard(name.clone());
    // Each replacement takes 600 ms to say Ready: the next one must not be touched before.
    let sup = Sup::with_config(&format!(
        "[program.{name}]\ncommand = [\"{}\", \"--ready-after\", \"600\"]\nreplicas = 3\n",
        example("sdk_worker")
    ));
    let socket = sup.socket();
    sup.wait_nth(3, Duration::from_secs(15), "three ready", |e| {
        e["event"] == "ready"
    });
    let (ok, text) = ctl(&socket, &["restart", &name]);
    assert!(ok && text.contains("one instance at a time"), "{text}");
    sup.wait_nth(6, Duration::from_secs(30), "three ready again", |e| {
        e["event"] == "ready"
    });
    // In the event log: restarting 0, ready 0, restarting 1, ready 1, restarting 2, ready 2.
    let seen: Vec<(String, u64)> = sup
        .events()
        .iter()
        .skip_while(|e| e["event"] != "restarting")
        .filter(|e| e["event"] == "restarting" || e["event"] == "ready")
        .map(|e| {
            (
                e["event"].as_str().unwrap_or_default().to_owned(),
                e["instance"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    let expected: Vec<(String, u64)> = (0..3)
        .flat_map(|i| [("restarting".to_owned(), i), ("ready".to_owned(), i)])
        .collect();
    assert_eq!(seen, expected, "{}", sup.dump());
    assert!(sup.of("restarting").iter().all(|e| e["reason"] == "manual"));
}
