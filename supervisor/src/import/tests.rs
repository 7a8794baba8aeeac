use std::path::{Path, PathBuf};

use super::*;

#[test]
fn formats_by_name_and_content() {
    let table = [
        ("supervisord.conf", "", Some(Format::Supervisord)),
        ("app.ini", "", Some(Format::Supervisord)),
        ("ecosystem.json", "", Some(Format::Pm2Json)),
        ("process.yml", "", Some(Format::Pm2Yaml)),
        ("ecosystem.config.js", "", Some(Format::Pm2Js)),
        ("ecosystem.config.cjs", "", Some(Format::Pm2Js)),
        ("Procfile", "", Some(Format::Procfile)),
        ("Procfile.dev", "", Some(Format::Procfile)),
        ("noext", "; c\n[program:x]\n", Some(Format::Supervisord)),
        ("noext", "{\"apps\": []}", Some(Format::Pm2Json)),
        ("noext", "apps:\n  - script: a\n", Some(Format::Pm2Yaml)),
        ("noext", "# c\nweb: ./web\n", Some(Format::Procfile)),
        ("noext", "just words\n", None),
        ("noext", "", None),
    ];
    for (name, text, want) in table {
        assert_eq!(Format::of(Path::new(name), text), want, "{name} {text:?}");
    }
}

#[test]
fn names_made_valid() {
    for (raw, want) in [
        ("web", "web"),
        ("my app", "my-app"),
        (".hidden", "_hidden"),
        ("", "program"),
        ("ünï", "-n-"),
        (&"x".repeat(80), &"x".repeat(64)),
    ] {
        assert_eq!(program_name(raw), want, "{raw}");
    }
}

#[test]
fn renders_what_the_loader_reads() {
    let c = Conversion {
        programs: vec![
            Program {
                name: "web".into(),
                command: vec![
                    "gunicorn".into(),
                    "-b".into(),
                    ":{8000 + instance}".into(),
                    "say \"hi\"\n".into(),
                ],
                cwd: Some("/srv".into()),
                env: vec![("A".into(), "1".into()), ("weird key".into(), "v".into())],
                replicas: 2,
                restart: Some("always"),
                after: vec!["db".into()],
                stop: Stop {
                    signal: Some("QUIT".into()),
                    grace: Some("30s".into()),
                    mode: Some("main"),
                },
                intensity_max: Some(3),
                backoff: Some(Backoff {
                    first: "1s".into(),
                    max: "15s".into(),
                    factor: "1.5",
                }),
                memory_max: Some("300MiB".into()),
                umask: Some("022".into()),
                ..Program::default()
            },
            Program {
                name: "db".into(),
                command: vec!["postgres".into()],
                replicas: 1,
                ..Program::default()
            },
        ],
        log: Some(Log {
            dir: "/var/log/app".into(),
            max: Some("50MiB".into()),
            keep: Some(3),
        }),
        notes: Vec::new(),
        sources: vec![PathBuf::from("a.conf")],
    };
    let text = render(&c);
    let plan = crate::plan::parse_config(&text, None).expect("the loader reads it");
    let web = plan.programs.iter().find(|p| p.name == "web").expect("web");
    assert_eq!(web.command[2], ":{8000 + instance}");
    assert_eq!(web.command[3], "say \"hi\"\n");
    assert_eq!(web.replicas, 2);
    assert_eq!(web.after, ["db"]);
    assert_eq!(web.intensity.max, 3);
    assert_eq!(web.stop.grace, std::time::Duration::from_secs(30));
    assert_eq!(web.memory.map(|m| m.max), Some(300 << 20));
    assert!(web.env.contains(&("weird key".to_owned(), "v".to_owned())));
    assert_eq!(plan.log.map(|l| (l.max, l.keep)), Some((50 << 20, 3)));
}

#[test]
fn a_name_taken_by_an_earlier_file_gets_a_suffix() {
    let mut out = Conversion::default();
    let part = |name: &str| Conversion {
        programs: vec![Program {
            name: name.into(),
            command: vec!["x".into()],
            replicas: 1,
            ..Program::default()
        }],
        ..Conversion::default()
    };
    merge(&mut out, part("web"), Path::new("a"));
    merge(&mut out, part("web"), Path::new("b"));
    merge(&mut out, part("web"), Path::new("c"));
    let names: Vec<&str> = out.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["web", "web-2", "web-3"]);
    assert_eq!(out.notes.len(), 2);
}

#[test]
fn hostile_files_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = dir.path().join("x.conf");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x80]).expect("write");
    let huge = dir.path().join("huge.conf");
    std::fs::write(&huge, "[program:a]\n".repeat(100_000)).expect("write");
    let missing = dir.path().join("missing.conf");
    let unknown = dir.path().join("notes.txt");
    std::fs::write(&unknown, "nothing to see\n").expect("write");
    let none = |_: &str| None;
    for (path, says) in [
        (&binary, "not UTF-8"),
        (&huge, "more than"),
        (&missing, "cannot read"),
        (&unknown, "not a supervisord, PM2 or Procfile"),
        (&dir.path().to_owned(), "not a regular file"),
    ] {
        let e = import(std::slice::from_ref(path), &none).expect_err("refused");
        assert!(e.to_string().contains(says), "{path:?}: {e}");
    }
}
