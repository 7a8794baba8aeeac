use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::import::ini;

fn no_env(_: &str) -> Option<String> {
    None
}

fn cx<'a>(numprocs: u32, start: u32, env: &'a dyn Fn(&str) -> Option<String>) -> Cx<'a> {
    Cx {
        program: "web",
        group: "site",
        here: "/etc/sv".into(),
        numprocs,
        numprocs_start: start,
        env,
    }
}

#[test]
fn expansions() {
    let env = |k: &str| (k == "HOME").then(|| "/home/u".to_owned());
    // (input, numprocs, numprocs_start, output, problems)
    let table: &[(&str, u32, u32, &str, usize)] = &[
        ("plain", 1, 0, "plain", 0),
        (
            "awk '{print}' %(process_num)d",
            2,
            0,
            "awk '{{print}}' {instance}",
            0,
        ),
        ("%(ENV_HOME)s{x}", 1, 0, "/home/u{{x}}", 1),
        ("%(program_name)s-%(group_name)s", 1, 0, "web-site", 0),
        ("%(here)s/app.py", 1, 0, "/etc/sv/app.py", 0),
        ("--port=80%(process_num)02d", 1, 0, "--port=8000", 0),
        ("--port=80%(process_num)02d", 1, 7, "--port=8007", 0),
        ("--port=%(process_num)d", 4, 0, "--port={instance}", 0),
        (
            "--port=%(process_num)d",
            4,
            8000,
            "--port={8000\u{1}+\u{1}instance}",
            0,
        ),
        ("--port=80%(process_num)02d", 4, 0, "--port=80{instance}", 1),
        ("%(numprocs)d procs", 3, 0, "3 procs", 0),
        ("%(ENV_HOME)s/x", 1, 0, "/home/u/x", 1),
        ("%(ENV_NOPE)s/x", 1, 0, "/x", 1),
        ("100%% sure", 1, 0, "100% sure", 0),
        ("%(unknown)s", 1, 0, "%(unknown)s", 1),
        ("a % b %(", 1, 0, "a % b %(", 0),
        ("%(program_name)10s|", 1, 0, "       web|", 0),
        ("%(program_name)-5s|", 1, 0, "web  |", 0),
    ];
    for &(input, n, start, want, problems) in table {
        let mut p = Vec::new();
        assert_eq!(expand(input, &cx(n, start, &env), &mut p), want, "{input}");
        assert_eq!(p.len(), problems, "{input}: {p:?}");
    }
}

#[test]
fn environment_pairs() {
    let ok: &[(&str, &[(&str, &str)])] = &[
        ("A=1", &[("A", "1")]),
        (
            "A=\"1,2\",B='x y', C=3",
            &[("A", "1,2"), ("B", "x y"), ("C", "3")],
        ),
        ("PATH=\"/usr/bin:/bin\",", &[("PATH", "/usr/bin:/bin")]),
        ("A=,B=b", &[("A", ""), ("B", "b")]),
        ("", &[]),
    ];
    for (input, want) in ok {
        let got = env_pairs(input).expect("parses");
        let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, *want, "{input}");
    }
    for bad in ["A", "=1", "A=\"open"] {
        assert!(env_pairs(bad).is_err(), "{bad}");
    }
}

#[test]
fn sizes_and_booleans() {
    let sizes = [
        ("50MB", Some((50 << 20, "50MiB"))),
        ("1kb", Some((1024, "1KiB"))),
        ("2GB", Some((2 << 30, "2GiB"))),
        ("1000", Some((1000, "1000"))),
        ("0", Some((0, "0"))),
        ("lots", None),
    ];
    for (input, want) in sizes {
        assert_eq!(
            size(input).as_ref().map(|(b, s)| (*b, s.as_str())),
            want,
            "{input}"
        );
    }
    for (input, want) in [
        ("true", Some(true)),
        ("Yes", Some(true)),
        ("1", Some(true)),
        ("off", Some(false)),
        ("maybe", None),
    ] {
        assert_eq!(boolean(input), want, "{input}");
    }
    for (input, want) in [
        ("AUTO", Dest::Auto),
        ("/dev/stdout", Dest::Console),
        ("/dev/fd/2", Dest::Console),
        ("NONE", Dest::Nowhere),
        ("syslog", Dest::Syslog),
        ("/var/log/x.log", Dest::File("/var/log/x.log".into())),
    ] {
        assert_eq!(dest(input), want, "{input}");
    }
}

/// Converts one file's text.
fn one(text: &str) -> Conversion {
    let file = File {
        path: PathBuf::from("/etc/sv/supervisord.conf"),
        here: "/etc/sv".into(),
        id: PathBuf::from("/etc/sv/supervisord.conf"),
        sections: ini::parse(text).expect("parses"),
    };
    convert(&[file], &no_env)
}

#[test]
fn a_program_and_its_keys() {
    let c = one(
        "[program:web]\ncommand=gunicorn -b :80%(process_num)02d \"app:create()\"\nnumprocs=2\n\
         directory=/srv\nuser=www-data\nenvironment=A=\"1\"\nautorestart=true\nstartretries=4\n\
         stopsignal=sigquit\nstopwaitsecs=30\nstopasgroup=true\numask=022\n",
    );
    let p = &c.programs[0];
    assert_eq!(
        p,
        &Program {
            name: "web".into(),
            command: vec![
                "gunicorn".into(),
                "-b".into(),
                ":80{instance}".into(),
                "app:create()".into()
            ],
            cwd: Some("/srv".into()),
            env: vec![("A".into(), "1".into())],
            user: Some("www-data".into()),
            umask: Some("022".into()),
            replicas: 2,
            restart: Some("always"),
            stop: Stop {
                signal: Some("QUIT".into()),
                grace: Some("30s".into()),
                mode: None,
            },
            intensity_max: Some(4),
            essential: Some(false),
            ..Program::default()
        }
    );
    let keys: Vec<(&str, NoteKind)> = c.notes.iter().map(|n| (n.key.as_str(), n.kind)).collect();
    assert_eq!(
        keys,
        [
            ("program:web command", NoteKind::Approximate),
            ("program:web startretries", NoteKind::Approximate),
        ]
    );
}

#[test]
fn defaults_and_unmapped_keys() {
    let c = one(
        "[program:w]\ncommand=/bin/cat\nautorestart=unexpected\nautostart=false\nstartsecs=5\n\
         exitcodes=0,2\nredirect_stderr=true\nstdout_logfile=NONE\nbogus=1\nstopsignal=NOPE\nkillasgroup=true\n",
    );
    let p = &c.programs[0];
    assert_eq!(p.restart, None);
    assert_eq!(
        p.stop.mode,
        Some("main"),
        "supervisord signals the main process by default"
    );
    let notes: Vec<(&str, Option<usize>)> =
        c.notes.iter().map(|n| (n.key.as_str(), n.line)).collect();
    assert_eq!(
        notes,
        [
            ("program:w autostart", Some(4)),
            ("program:w startsecs", Some(5)),
            ("program:w exitcodes", Some(6)),
            ("program:w redirect_stderr", Some(7)),
            ("program:w stdout_logfile", Some(8)),
            ("program:w bogus", Some(9)),
            ("program:w stopsignal", Some(10)),
        ]
    );
    assert!(c.notes.iter().all(|n| n.kind == NoteKind::Unmapped));
}

#[test]
fn priority_orders_programs() {
    let c = one(
        "[group:g]\nprograms=cache\npriority=5\n[program:db]\ncommand=db\npriority=1\n[program:cache]\ncommand=cache\n\
         [program:web]\ncommand=web\npriority=10\n[program:worker]\ncommand=worker\npriority=10\n[program:cron]\ncommand=cron\n",
    );
    let after: Vec<(&str, Vec<&str>)> = c
        .programs
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.after.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        after,
        [
            ("db", vec![]),
            ("cache", vec!["db"]),
            ("web", vec!["cache"]),
            ("worker", vec!["cache"]),
            ("cron", vec!["web", "worker"]),
        ]
    );
    // Equal priorities order nothing.
    let c = one("[program:a]\ncommand=a\n[program:b]\ncommand=b\npriority=999\n");
    assert!(c.programs.iter().all(|p| p.after.is_empty()));
}

#[test]
fn log_files_become_one_directory() {
    let c = one(
        "[program:a]\ncommand=a\nstdout_logfile=/var/log/app/a.log\nstdout_logfile_maxbytes=50MB\nstdout_logfile_backups=3\n\
         [program:b]\ncommand=b\nstderr_logfile=/var/log/other/b.err\nstdout_logfile=/dev/stdout\nstdout_logfile_maxbytes=0\n\
         stderr_logfile_maxbytes=10MB\n",
    );
    assert_eq!(
        c.log,
        Some(Log {
            dir: "/var/log/app".into(),
            max: Some("50MiB".into()),
            keep: Some(3),
        })
    );
    let notes: Vec<(&str, NoteKind)> = c.notes.iter().map(|n| (n.key.as_str(), n.kind)).collect();
    assert_eq!(
        notes,
        [
            ("program:a stdout_logfile", NoteKind::Approximate),
            ("program:b stderr_logfile", NoteKind::Unmapped),
            ("program:b stderr_logfile_maxbytes", NoteKind::Unmapped),
        ]
    );
}

#[test]
fn sections_other_than_programs() {
    let c = one(
        "[supervisord]\nnodaemon=true\nenvironment=LANG=C,TZ=UTC\n[unix_http_server]\nfile=/tmp/s.sock\n\
         [eventlistener:x]\ncommand=x\n[fcgi-program:f]\ncommand=f\n[weird]\na=1\n[program:p]\ncommand=p\nenvironment=TZ=CET\n",
    );
    assert_eq!(
        c.programs[0].env,
        [
            ("LANG".to_owned(), "C".to_owned()),
            ("TZ".to_owned(), "CET".to_owned())
        ]
    );
    let keys: Vec<&str> = c.notes.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "supervisord nodaemon",
            "[unix_http_server]",
            "[eventlistener:x]",
            "[fcgi-program:f]",
            "[weird]"
        ]
    );
}

#[test]
fn a_program_without_a_usable_command_is_left_out() {
    for text in [
        "[program:a]\ndirectory=/\n",
        "[program:a]\ncommand=\n",
        "[program:a]\ncommand='open\n",
    ] {
        let c = one(text);
        assert!(c.programs.is_empty(), "{text}");
        assert_eq!(c.notes.len(), 1, "{text}");
        assert!(c.notes[0].why.contains("left out"), "{text}");
    }
    let c = one("[program:my app!]\ncommand=x\n");
    assert_eq!(c.programs[0].name, "my-app-");
}

/// A fake file system for includes: a glob is a literal path, or `DIR/*.conf`.
fn fake(files: &[(&str, &str)]) -> impl Fn(&Path) -> Result<Vec<(PathBuf, String)>, ImportError> {
    let map: HashMap<PathBuf, String> = files
        .iter()
        .map(|(p, t)| (normal(Path::new(p)), (*t).to_owned()))
        .collect();
    move |pattern: &Path| {
        let pattern = normal(pattern);
        let text = pattern.to_string_lossy().into_owned();
        let mut out: Vec<(PathBuf, String)> = if let Some(dir) = text.strip_suffix("/*.conf") {
            map.iter()
                .filter(|(p, _)| {
                    p.parent() == Some(Path::new(dir)) && p.extension().is_some_and(|e| e == "conf")
                })
                .map(|(p, t)| (p.clone(), t.clone()))
                .collect()
        } else {
            map.get(&pattern)
                .map(|t| vec![(pattern.clone(), t.clone())])
                .unwrap_or_default()
        };
        out.sort();
        Ok(out)
    }
}

#[test]
fn includes_relative_to_the_including_file() {
    let read = fake(&[
        (
            "/etc/sv/conf.d/a.conf",
            "[program:a]\ncommand=a\n[include]\nfiles=../more/b.conf\n",
        ),
        ("/etc/sv/more/b.conf", "[program:b]\ncommand=b\n"),
        ("/etc/sv/conf.d/c.conf", "[program:c]\ncommand=c\n"),
    ]);
    let root = (
        PathBuf::from("/etc/sv/main.conf"),
        "[include]\nfiles = conf.d/*.conf nothing/*.conf\n".to_owned(),
    );
    let c = import(&[root], &read, &no_env).expect("imports");
    let names: Vec<&str> = c.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(c.notes.len(), 1);
    assert_eq!(c.notes[0].line, Some(2));
    assert!(
        c.notes[0].why.contains("matches no file"),
        "{:?}",
        c.notes[0]
    );
}

#[test]
fn include_loops_are_refused() {
    let read = fake(&[
        ("/etc/sv/a.conf", "[include]\nfiles=b.conf\n"),
        (
            "/etc/sv/b.conf",
            "[program:b]\ncommand=b\n[include]\nfiles=a.conf\n",
        ),
    ]);
    let root = (
        PathBuf::from("/etc/sv/a.conf"),
        "[include]\nfiles=b.conf\n".to_owned(),
    );
    let e = import(&[root], &read, &no_env).expect_err("a loop");
    assert!(e.message.contains("include loop"), "{e}");
    assert_eq!(e.file, PathBuf::from("/etc/sv/b.conf"));
    assert_eq!(e.line, Some(4));
    // A file including itself.
    let read = fake(&[("/x/self.conf", "[include]\nfiles=self.conf\n")]);
    let root = (
        PathBuf::from("/x/self.conf"),
        "[include]\nfiles=self.conf\n".to_owned(),
    );
    assert!(import(&[root], &read, &no_env).is_err());
}

#[test]
fn a_parse_error_names_file_and_line() {
    let read = fake(&[]);
    let root = (
        PathBuf::from("/x/bad.conf"),
        "[program:a]\ncommand=a\n???\n".to_owned(),
    );
    let e = import(&[root], &read, &no_env).expect_err("bad");
    assert_eq!(
        (e.file.as_path(), e.line),
        (Path::new("/x/bad.conf"), Some(3))
    );
}
