//! The files in contrib/ and the CLI's conventions: they must work as they are shipped.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{example, supervise_bin, unique, wait_until, ProgramGuard, Sup};

fn contrib(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib")
        .join(name)
}

fn tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

#[test]
fn the_systemd_unit_verifies_clean() {
    let Some(analyze) = tool("systemd-analyze") else {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    };
    // The unit as shipped, with its ExecStart pointed at the binary under test (verify checks
    // that the program exists).
    let unit = std::fs::read_to_string(contrib("supervise.service")).expect("unit");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("supervise.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/supervise", supervise_bin()),
    )
    .expect("write");
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Unknown keys are only warned about: there must be none.
    assert!(stderr.trim().is_empty(), "{stderr}");
}

#[test]
fn the_container_files_agree_with_the_config_they_ship() {
    let config = std::fs::read_to_string(contrib("supervise.toml")).expect("config");
    let dockerfile = std::fs::read_to_string(contrib("Dockerfile")).expect("Dockerfile");
    let port = config
        .lines()
        .find_map(|l| l.strip_prefix("metrics = \"0.0.0.0:"))
        .and_then(|rest| rest.split('"').next())
        .expect("the config serves metrics on a port of all interfaces");
    assert!(
        dockerfile.contains(&format!("http://127.0.0.1:{port}/healthz")),
        "the health check asks another port than the config's {port}"
    );
    assert!(dockerfile.contains(&format!("EXPOSE {port}")));
    assert!(dockerfile.contains("COPY contrib/supervise.toml /etc/supervise/supervise.toml"));
    assert!(dockerfile.contains("\"-c\", \"/etc/supervise/supervise.toml\""));
    let Some(python) = tool("python3") else {
        eprintln!("skipped (the Kubernetes part): python3 is not installed");
        return;
    };
    // The Kubernetes example: valid YAML, probes on the config's metrics port.
    let check = r#"
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
c = d["spec"]["template"]["spec"]["containers"][0]
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
assert ports[c["livenessProbe"]["httpGet"]["port"]] == int(sys.argv[2])
ann = d["spec"]["template"]["metadata"]["annotations"]
assert ann["prometheus.io/port"] == sys.argv[2]
print("ok")
"#;
    let out = Command::new(python)
        .args(["-c", check])
        .arg(contrib("kubernetes.yaml"))
        .arg(port)
        .output()
        .expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'yaml'") {
        eprintln!("skipped (the Kubernetes part): PyYAML is not installed");
        return;
    }
    assert!(out.status.success(), "{stderr}");
}

#[test]
fn completions_and_the_manual() {
    for (shell, mark) in [
        ("bash", "_supervise()"),
        ("zsh", "#compdef supervise"),
        ("fish", "complete -c supervise"),
    ] {
        let out = Command::new(supervise_bin())
            .args(["completions", shell])
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shell}");
        assert!(
            text.contains(mark),
            "{shell}: {}",
            &text[..text.len().min(200)]
        );
        for sub in ["status", "restart", "signal", "completions"] {
            assert!(text.contains(sub), "{shell} lacks {sub}");
        }
    }
    let out = Command::new(supervise_bin())
        .arg("man")
        .output()
        .expect("run");
    assert!(out.status.success());
    let roff = String::from_utf8_lossy(&out.stdout);
    assert!(
        roff.contains(".TH supervise 1"),
        "{}",
        &roff[..roff.len().min(200)]
    );
    assert!(
        roff.contains("--memory-max") || roff.contains("\\-\\-memory\\-max"),
        "{roff}"
    );
    let bad = Command::new(supervise_bin())
        .args(["completions", "tcsh"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
}

/// A datagram socket standing in for systemd's notify socket.
struct Manager {
    socket: std::os::unix::net::UnixDatagram,
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Manager {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        Self {
            socket,
            _dir: dir,
            path,
        }
    }

    /// Every datagram received within `for_`.
    fn drain(&self, for_: Duration) -> Vec<String> {
        let end = std::time::Instant::now() + for_;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while std::time::Instant::now() < end {
            if let Ok(n) = self.socket.recv(&mut buf) {
                out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        out
    }
}

#[test]
fn supervise_tells_its_own_service_manager() {
    let manager = Manager::new();
    let name = unique("undersd");
    let _guard = ProgramGuard(name.clone());
    let config = format!(
        "[program.{name}]\ncommand = [\"{}\", \"--after\", \"1000000\"]\nreplicas = 2\n",
        example("crasher")
    );
    let mut sup = Sup::start_with(&[], |cmd, dir| {
        let path = dir.join("supervise.toml");
        std::fs::write(&path, &config).expect("config");
        cmd.env("NOTIFY_SOCKET", &manager.path)
            .env("WATCHDOG_USEC", "200000")
            .arg("--admin")
            .arg(dir.join("ctl.sock"))
            .arg("-c")
            .arg(path);
    });
    let mut said = Vec::new();
    assert!(
        wait_until(Duration::from_secs(15), || {
            said.extend(manager.drain(Duration::from_millis(100)));
            said.iter().any(|m| m.starts_with("READY=1"))
        }),
        "no READY=1: {said:?}\n{}",
        sup.dump()
    );
    let ready = said
        .iter()
        .find(|m| m.starts_with("READY=1"))
        .expect("ready");
    assert!(ready.contains("STATUS=2 instances up"), "{ready}");
    // The watchdog is pinged, about every 100 ms.
    let pings = manager
        .drain(Duration::from_secs(1))
        .iter()
        .filter(|m| *m == "WATCHDOG=1")
        .count();
    assert!((4..=20).contains(&pings), "{pings} pings in a second");
    // The workers get supervise's own notify socket, not its manager's.
    sup.wait_event("started", Duration::from_secs(5));
    let pid = common::pid_of(&sup.of("started")[0]);
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
    let manager_path = format!("NOTIFY_SOCKET={}", manager.path.display());
    assert!(!vars.contains(&manager_path.as_bytes()));
    assert!(vars.iter().any(|v| v.starts_with(b"NOTIFY_SOCKET=")));
    assert!(!vars.iter().any(|v| v.starts_with(b"WATCHDOG_USEC=")));
    sup.signal(libc::SIGTERM);
    sup.wait_exit(Duration::from_secs(15));
    let after = manager.drain(Duration::from_millis(300));
    assert!(after.iter().any(|m| m == "STOPPING=1"), "{after:?}");
}
