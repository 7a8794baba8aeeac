use std::path::Path;

use serde_json::json;

use super::*;
use crate::import::Stop;

fn conv(v: &serde_json::Value, text: &str) -> Conversion {
    convert(Path::new("ecosystem.json"), text, v, 8)
}

fn argv(p: &Program) -> Vec<&str> {
    p.command.iter().map(String::as_str).collect()
}

#[test]
fn commands() {
    // (app, argv)
    let table: Vec<(serde_json::Value, Vec<&str>)> = vec![
        (json!({"script": "server.js"}), vec!["node", "server.js"]),
        (
            json!({"script": "app.py", "args": "--port 80"}),
            vec!["python3", "app.py", "--port", "80"],
        ),
        (
            json!({"script": "run.sh", "args": ["a b", 1]}),
            vec!["bash", "run.sh", "a b", "1"],
        ),
        (json!({"script": "./bin/server"}), vec!["./bin/server"]),
        (
            json!({"script": "npm", "args": "run start"}),
            vec!["npm", "run", "start"],
        ),
        (
            json!({"script": "npm run start"}),
            vec!["npm", "run", "start"],
        ),
        (
            json!({"script": "app.js", "node_args": "--max-old-space-size=512", "interpreter_args": ["--inspect"]}),
            vec!["node", "--inspect", "--max-old-space-size=512", "app.js"],
        ),
        (
            json!({"script": "app.py", "interpreter": "/usr/bin/python3", "interpreter_args": "-u"}),
            vec!["/usr/bin/python3", "-u", "app.py"],
        ),
        (
            json!({"script": "x.js", "interpreter": "none"}),
            vec!["x.js"],
        ),
        (
            json!({"script": "x.js", "exec_interpreter": "bun"}),
            vec!["bun", "x.js"],
        ),
    ];
    for (app, want) in table {
        let c = conv(&json!({ "apps": [app.clone()] }), "");
        assert_eq!(argv(&c.programs[0]), want, "{app}");
    }
}

#[test]
fn keys_to_settings() {
    let app = json!({
        "name": "api", "script": "api.js", "cwd": "/srv/api", "instances": 4,
        "env": {"PORT": 3000, "DEBUG": false, "NAME": "x"}, "increment_var": "PORT",
        "instance_var": "INSTANCE_ID", "autorestart": true, "max_restarts": 10,
        "kill_timeout": 3000, "max_memory_restart": "300M", "user": "app", "gid": "staff",
        "restart_delay": 4000, "exec_mode": "fork", "watch": false, "merge_logs": false
    });
    let c = conv(&json!({ "apps": [app] }), "");
    let p = &c.programs[0];
    assert_eq!(
        p,
        &Program {
            name: "api".into(),
            command: vec!["node".into(), "api.js".into()],
            cwd: Some("/srv/api".into()),
            env: vec![
                ("DEBUG".into(), "false".into()),
                ("NAME".into(), "x".into()),
                ("INSTANCE_ID".into(), "{instance}".into()),
                ("PORT".into(), "{3000 + instance}".into()),
            ],
            user: Some("app".into()),
            group: Some("staff".into()),
            replicas: 4,
            restart: Some("always"),
            stop: Stop {
                grace: Some("3000ms".into()),
                ..Stop::default()
            },
            intensity_max: Some(10),
            backoff: Some(Backoff {
                first: "4000ms".into(),
                max: "4000ms".into(),
                factor: "1.0"
            }),
            memory_max: Some("300MiB".into()),
            essential: Some(false),
            ..Program::default()
        }
    );
    let keys: Vec<&str> = c.notes.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(keys, ["apps[0].max_restarts"]);
}

#[test]
fn unmapped_keys_are_noted_with_their_line() {
    let text = r#"{
  "apps": [{
    "name": "a",
    "script": "a.js",
    "watch": true
  }, {
    "name": "b",
    "script": "b.js",
    "watch": ["src"],
    "cron_restart": "0 * * * *",
    "env_production": {"X": "1"},
    "exec_mode": "cluster",
    "instances": "max",
    "autorestart": false
  }],
  "deploy": {}
}"#;
    let v: serde_json::Value = serde_json::from_str(text).expect("json");
    let c = conv(&v, text);
    let notes: Vec<(&str, Option<usize>, NoteKind)> = c
        .notes
        .iter()
        .map(|n| (n.key.as_str(), n.line, n.kind))
        .collect();
    assert_eq!(
        notes,
        [
            ("deploy", Some(16), NoteKind::Unmapped),
            ("apps[0].watch", Some(5), NoteKind::Unmapped),
            ("apps[1].cron_restart", Some(10), NoteKind::Unmapped),
            ("apps[1].env_production", Some(11), NoteKind::Unmapped),
            ("apps[1].exec_mode", Some(12), NoteKind::Approximate),
            ("apps[1].instances", Some(13), NoteKind::Approximate),
            ("apps[1].watch", Some(9), NoteKind::Unmapped),
        ]
    );
    assert_eq!(c.programs[1].replicas, 8, "max is one per CPU");
    assert_eq!(c.programs[1].restart, Some("never"));
}

#[test]
fn shapes_of_the_file() {
    for v in [
        json!([{"script": "a.js"}]),
        json!({"script": "a.js"}),
        json!({"apps": {"script": "a.js"}}),
    ] {
        let c = conv(&v, "");
        assert_eq!(c.programs.len(), 1, "{v}");
        assert_eq!(c.programs[0].name, "a", "{v}");
    }
    for v in [
        json!(null),
        json!(3),
        json!({"apps": []}),
        json!({"apps": [1, {"name": "x"}]}),
    ] {
        let c = conv(&v, "");
        assert!(c.programs.is_empty(), "{v}");
        assert!(!c.notes.is_empty(), "{v}");
    }
}

#[test]
fn values_pm2_reads() {
    for (v, want) in [
        (json!("150M"), Some("150MiB")),
        (json!("1G"), Some("1GiB")),
        (json!("512K"), Some("512KiB")),
        (json!(1_048_576), Some("1048576")),
        (json!("lots"), None),
        (json!("0M"), None),
    ] {
        assert_eq!(memory(&v).as_deref(), want, "{v}");
    }
    for (v, want) in [
        (json!({"instances": -1}), 7),
        (json!({"instances": "3"}), 3),
        (json!({"instances": 0}), 8),
        (json!({"instances": -20}), 1),
    ] {
        let mut app = v.clone();
        app["script"] = json!("a.js");
        let c = conv(&app, "");
        assert_eq!(c.programs[0].replicas, want, "{v}");
    }
}

#[test]
fn increment_var_needs_a_base() {
    let c = conv(&json!({"script": "a.js", "increment_var": "PORT"}), "");
    assert!(c.programs[0].env.is_empty());
    assert_eq!(c.notes[0].key, "[0].increment_var");
}

#[test]
fn key_lines_find_keys_not_values() {
    let text = "name: a\nscript: name.js\n  \"name\" : x\nrename: y\nname_x: z\n'name': q\n";
    let index = key_index(text);
    assert_eq!(key_lines(&index, "name"), [1, 3, 6]);
    assert_eq!(key_lines(&index, "script"), [2]);
    assert!(key_lines(&index, "nothing").is_empty());
}

#[test]
fn yaml_and_json_agree() {
    let yaml = "apps:\n  - name: w\n    script: w.js\n    instances: 2\n    env:\n      A: 1\n";
    let json_text =
        r#"{"apps": [{"name": "w", "script": "w.js", "instances": 2, "env": {"A": 1}}]}"#;
    let a = from_yaml(Path::new("e.yaml"), yaml).expect("yaml");
    let b = from_json(Path::new("e.json"), json_text).expect("json");
    assert_eq!(a.programs, b.programs);
    let e = from_json(Path::new("e.json"), "{\"apps\": [").expect_err("bad json");
    assert_eq!(e.line, Some(1));
    let e = from_yaml(Path::new("e.yaml"), "apps:\n  - [\n").expect_err("bad yaml");
    assert!(e.line.is_some());
}
