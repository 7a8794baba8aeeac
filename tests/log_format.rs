//! `--log-format json`: every line supervise writes, on stderr and stdout, parses as one JSON
//! object with the fields docs/logs.md promises, whatever the worker writes: long lines, bytes
//! that are not UTF-8, quotes and tabs.

mod common;

use std::process::{Command, Stdio};

use common::supervise_bin;
use serde_json::Value;

/// Every line of `text`, parsed; none longer than 16 KiB with its newline.
fn objects(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| {
            assert!(l.len() < 16 * 1024, "a line of {} bytes", l.len());
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"))
        })
        .collect()
}

fn stamp_ok(v: &Value) {
    let ts = v["ts"].as_str().unwrap_or_else(|| panic!("no ts: {v}"));
    assert!(humantime::parse_rfc3339(ts).is_ok(), "{ts}");
    // Milliseconds, UTC: `2026-11-28T20:33:49.123Z`.
    assert_eq!((ts.len(), &ts[19..20]), (24, "."), "{ts}");
}

#[test]
fn every_line_is_one_json_object() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Each incarnation writes a line, one of 40 KiB, one with bytes that are not UTF-8, one with
    // quotes and a tab on stderr, and exits 3: restarted once, then given up on.
    let script = "printf 'normal\\n'; head -c 40960 /dev/zero | tr '\\0' a; echo; \
                  printf 'bad \\377\\376 bytes\\n'; printf '\"quoted\\ttab\"\\n' >&2; exit 3";
    let out = Command::new(supervise_bin())
        .args(["--log-format", "json", "--name", "printer", "--admin"])
        .arg(dir.path().join("ctl.sock"))
        .args([
            "--max-restarts",
            "1",
            "--backoff-first",
            "10ms",
            "--metrics",
            "127.0.0.1:0",
            "--",
            "sh",
            "-c",
            script,
        ])
        .env("SUPERVISE_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("supervise");
    assert_eq!(out.status.code(), Some(3));
    let stdout = objects(&String::from_utf8_lossy(&out.stdout));
    let stderr = objects(&String::from_utf8_lossy(&out.stderr));
    for v in stdout.iter().chain(&stderr) {
        stamp_ok(v);
        assert!(v["program"].is_string() && v["instance"].is_u64(), "{v}");
        assert!(v["msg"].is_string(), "{v}");
    }
    // The worker's stdout: two incarnations of normal, long in three parts, and bad.
    assert!(stdout
        .iter()
        .all(|v| v["stream"] == "stdout" && v["program"] == "printer" && v["instance"] == 0));
    let msgs: Vec<&str> = stdout.iter().filter_map(|v| v["msg"].as_str()).collect();
    assert_eq!(
        msgs.iter().filter(|m| **m == "normal").count(),
        2,
        "{msgs:?}"
    );
    let parts: Vec<&Value> = stdout.iter().filter(|v| v.get("part").is_some()).collect();
    assert_eq!(parts.len(), 6, "{parts:?}");
    for run in parts.chunks(3) {
        let numbers: Vec<u64> = run.iter().filter_map(|v| v["part"].as_u64()).collect();
        assert_eq!(numbers, [1, 2, 3]);
        assert!(run
            .iter()
            .all(|v| v["parts"] == 3 && v["ts"] == run[0]["ts"]));
        let joined: String = run.iter().filter_map(|v| v["msg"].as_str()).collect();
        assert_eq!(joined, "a".repeat(40960));
    }
    let bad: Vec<&Value> = stdout
        .iter()
        .filter(|v| v["invalid_utf8"] == true)
        .collect();
    assert_eq!(bad.len(), 2, "{stdout:?}");
    assert_eq!(bad[0]["msg"], "bad \u{fffd}\u{fffd} bytes");
    assert!(stdout
        .iter()
        .filter(|v| v["invalid_utf8"] != true)
        .all(|v| v.get("invalid_utf8").is_none()));
    // Its stderr line, as written.
    let worker_err: Vec<&Value> = stderr.iter().filter(|v| v["stream"] == "stderr").collect();
    assert_eq!(worker_err.len(), 2, "{stderr:?}");
    assert!(worker_err.iter().all(|v| v["msg"] == "\"quoted\ttab\""));
    // Supervise's lines: each event with its fields and words, and tracing's.
    let own: Vec<&Value> = stderr
        .iter()
        .filter(|v| v["stream"] == "supervise")
        .collect();
    assert_eq!(own.len() + worker_err.len(), stderr.len());
    let events = |kind: &str| own.iter().filter(|v| v["event"] == kind).count();
    assert_eq!(
        (
            events("started"),
            events("exited"),
            events("restarting"),
            events("fatal")
        ),
        (2, 2, 1, 1),
        "{own:?}"
    );
    for v in own.iter().filter(|v| v["event"] == "exited") {
        assert_eq!(
            (&v["code"], &v["severity"]),
            (&Value::from(3), &Value::from("warning"))
        );
        assert!(v["msg"]
            .as_str()
            .is_some_and(|m| m.starts_with("exited with code 3")));
        assert!(v["pid"].is_i64());
    }
    let fatal = own.iter().find(|v| v["event"] == "fatal").expect("fatal");
    assert_eq!(fatal["severity"], "critical");
    let listening = own
        .iter()
        .find(|v| v["event"] == "listening")
        .expect("listening");
    assert_eq!(listening["program"], "supervise");
    // tracing's own line about the same (SUPERVISE_LOG=info), with its fields.
    let traced = own
        .iter()
        .find(|v| {
            v["event"].is_null() && v["msg"].as_str().is_some_and(|m| m.starts_with("serving"))
        })
        .unwrap_or_else(|| panic!("no tracing line: {own:?}"));
    assert_eq!(
        (&traced["program"], &traced["severity"]),
        (&Value::from("supervise"), &Value::from("info"))
    );
    assert!(
        traced["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{traced}"
    );
    // No colour, whatever the terminal: nothing but the objects.
    assert!(!String::from_utf8_lossy(&out.stderr).contains('\x1b'));
}

#[test]
fn human_stays_the_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(supervise_bin())
        .args(["--name", "plain", "--restart", "never", "--admin"])
        .arg(dir.path().join("ctl.sock"))
        .args(["--", "echo", "hello"])
        .stdin(Stdio::null())
        .output()
        .expect("supervise");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l.contains(" plain[0] exited with code 0 after")),
        "{err}"
    );
    assert!(
        err.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_err()),
        "{err}"
    );
}
