//! Per-instance expansion: `{8000 + instance}` gives each replica its own port, in a config and
//! in single-command mode, where braces that are no template (`{}`, JSON) stay as written; a bad
//! template in a config is refused with its line.

mod common;

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::{example, refused, status_json, unique, wait_until, ProgramGuard, Sup};

/// A port such that it and the three after it are free now.
fn four_free_ports() -> u16 {
    for _ in 0..50 {
        let base = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        if base > 65_000 {
            continue;
        }
        if (0..4).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no four free ports in a row");
}

fn answers(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

#[test]
fn each_replica_listens_on_its_own_port_from_a_config() {
    let name = unique("xport");
    let _guard = ProgramGuard(name.clone());
    let base = four_free_ports();
    let sup = Sup::with_config(&format!(
        "[program.{name}]\ncommand = [\"{}\", \"--port\", \"{{{base} + instance}}\"]\n\
         replicas = 4\nenv = {{ PORT = \"{{{base} + instance}}\", WHO = \"{{name}}/{{instance}}\", \
         JSON = \"{{{{\\\"a\\\": 1}}}}\" }}\n",
        example("probe_target")
    ));
    sup.wait_socket(Duration::from_secs(5));
    assert!(
        wait_until(Duration::from_secs(20), || (0..4)
            .all(|i| answers(base + i))),
        "ports {base}..{} not all answered\n{}",
        base + 3,
        sup.dump()
    );
    let workers = status_json(&sup.socket());
    assert_eq!(workers.len(), 4);
    for w in &workers {
        let i = w["instance"].as_u64().expect("instance");
        let argv = w["argv"].as_array().expect("argv");
        assert_eq!(argv[2], (u64::from(base) + i).to_string(), "{w}");
        // And its environment, from /proc.
        let pid = w["pid"].as_i64().expect("pid");
        let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
        let vars: Vec<String> = environ
            .split(|&b| b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        assert!(
            vars.contains(&format!("PORT={}", u64::from(base) + i)),
            "{vars:?}"
        );
        assert!(vars.contains(&format!("WHO={name}/{i}")), "{vars:?}");
        assert!(vars.contains(&"JSON={\"a\": 1}".to_owned()), "{vars:?}");
    }
    // The `started` events carry the expanded argv too.
    let started = sup.of("started");
    assert!(started
        .iter()
        .any(|e| e["command"][2].as_str() == Some((base + 3).to_string().as_str())));
}

#[test]
fn single_command_mode_expands_templates_and_leaves_other_braces() {
    let base = four_free_ports();
    let port = format!("{{{base} + instance}}");
    let probe = example("probe_target");
    let sup = Sup::start(&["--replicas", "2", "--", &probe, "--port", &port]);
    assert!(
        wait_until(Duration::from_secs(20), || answers(base)
            && answers(base + 1)),
        "{}",
        sup.dump()
    );
    drop(sup);
    let leaky = example("leaky");
    let sup = Sup::start(&[
        "--replicas",
        "2",
        "--",
        &leaky,
        "--rate",
        "0",
        "--say",
        "said {} {\"a\": {instance}} {name} {{instance}} {x}",
    ]);
    sup.wait_stdout(
        "said {} {\"a\": 1} leaky {instance} {x}",
        1,
        Duration::from_secs(20),
    );
    sup.wait_stdout(
        "said {} {\"a\": 0} leaky {instance} {x}",
        1,
        Duration::from_secs(20),
    );
}

#[test]
fn a_bad_template_is_refused_with_its_line() {
    let (path, err) = refused(
        "[program.a]\ncommand = [\"touch\", \"MARKER\"]\n[program.b]\nreplicas = 2\n\
         command = [\"touch\", \"MARKER\", \"{port}\"]\n",
    );
    assert!(
        err.contains(&format!("{path}:5: program.b.command: "))
            && err.contains("unknown name `port`"),
        "{err}"
    );
    let (path, err) =
        refused("[program.a]\ncommand = [\"touch\", \"MARKER\"]\nenv = { X = \"{\" }\n");
    assert!(
        err.contains(&format!("{path}:3: program.a.env: ")) && err.contains("{{ or }}"),
        "{err}"
    );
    let (path, err) =
        refused("[program.a]\ncommand = [\"touch\", \"MARKER\"]\ncwd = \"/srv/{instance * }\"\n");
    assert!(err.contains(&format!("{path}:3: program.a.cwd: ")), "{err}");
}
