//! `supervise import` over real configs that no one here wrote (tests/import/, each listed in
//! tests/import/SOURCES.md with where it came from and its licence): each converts (exit 0), the
//! keys it cannot map are listed on stderr with file and line, and the converted config passes
//! `supervise -c OUT --check`, which validates and prints the plan without starting anything.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{supervise_bin, wait_until};

/// tests/import/.
fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the package is in the workspace")
        .join("tests/import")
}

/// Runs `supervise ARGS` in `dir`; it must end within 30 s (else it is killed and the test
/// fails). Returns (exit code, stdout, stderr).
fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = tempfile::tempdir().expect("tempdir");
    let (o, e) = (out.path().join("out"), out.path().join("err"));
    let mut child = Command::new(supervise_bin())
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&o).expect("stdout file"))
        .stderr(fs::File::create(&e).expect("stderr file"))
        .spawn()
        .expect("spawn supervise");
    let mut status = None;
    let ended = wait_until(Duration::from_secs(30), || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = fs::read_to_string(&o).unwrap_or_default();
    let stderr = fs::read_to_string(&e).unwrap_or_default();
    assert!(
        ended,
        "supervise {args:?} still running after 30s\n{stderr}"
    );
    (status.and_then(|s| s.code()), stdout, stderr)
}

/// What `--check` says of a converted config.
enum Check {
    Valid,
    /// The source defines no program (a sample with every program commented out).
    NoProgram,
    /// Valid once its `user` lines are taken out: the source runs programs as a user this
    /// machine does not have.
    UnknownUser(&'static str),
}

struct Case {
    /// Paths under tests/import/, given to one `supervise import`.
    files: &'static [&'static str],
    /// Each must appear on stderr (a key, with its file and line where the text tells).
    noted: &'static [&'static str],
    /// Each must appear in the converted config.
    has: &'static [&'static str],
    check: Check,
}

const CASES: &[Case] = &[
    Case {
        files: &["supervisord/supervisor-sample.conf"],
        noted: &[
            "supervisor-sample.conf:22: [unix_http_server]",
            "supervisor-sample.conf:67: [rpcinterface:supervisor]",
            "supervisord nodaemon",
        ],
        has: &[],
        check: Check::NoProgram,
    },
    Case {
        files: &["supervisord/supervisor-issue-565.conf"],
        noted: &[
            "supervisor-issue-565.conf:18: program:hello stdout_events_enabled: not mapped",
            "supervisor-issue-565.conf:22: [eventlistener:listener]: not mapped",
        ],
        has: &["[program.hello]", "/supervisord/hello.sh\"]", "restart = \"never\""],
        check: Check::Valid,
    },
    Case {
        files: &["supervisord/supervisor-issue-638.conf"],
        noted: &["supervisor-issue-638.conf:9: program:produce-unicode-error startretries"],
        has: &[r#"command = ["bash", "-c", 'echo -e "\x88"']"#],
        check: Check::Valid,
    },
    Case {
        files: &["supervisord/supervisor-issue-835.conf"],
        noted: &["supervisor-issue-835.conf:10: [unix_http_server]"],
        has: &[r#"command = ["/bin/cat"]"#],
        check: Check::Valid,
    },
    Case {
        files: &["supervisord/supervisor-issue-1054.conf"],
        noted: &["supervisor-issue-1054.conf:18: program:cat startsecs: not mapped"],
        has: &["[program.cat]"],
        check: Check::Valid,
    },
    Case {
        files: &["supervisord/supervisor-issue-1298.conf"],
        noted: &["supervisor-issue-1298.conf:10: [supervisorctl]"],
        has: &["/supervisord/spew.py\"]"],
        check: Check::Valid,
    },
    Case {
        files: &["supervisord/supervisor-issue-550.conf"],
        noted: &["supervisor-issue-550.conf:3: supervisord logfile: not mapped"],
        has: &[r#"env = { THIS_SHOULD = "BE_IN_CHILD_ENV" }"#],
        check: Check::Valid,
    },
    Case {
        files: &["supervisord/supervisor-include/include.conf"],
        noted: &[
            "include.conf:5: supervisord logfile",
            "supervisor-include/example/included.conf:2: supervisord childlogdir",
        ],
        has: &[],
        check: Check::NoProgram,
    },
    Case {
        files: &["supervisord/laradock-php-worker/supervisord.conf"],
        noted: &[
            "supervisord.conf:4: [inet_http_server]: not mapped",
            "laravel-worker.conf:8: program:laravel-worker redirect_stderr: not mapped",
        ],
        has: &[
            "[program.laravel-worker]",
            "replicas = 8",
            "[program.laravel-scheduler]",
        ],
        check: Check::UnknownUser("laradock"),
    },
    Case {
        files: &["supervisord/laradock-horizon.conf"],
        noted: &["laradock-horizon.conf:8: program:laravel-horizon stdout_logfile: mapped approximately"],
        has: &["[log]\ndir = \"/var/www/storage/logs\""],
        check: Check::UnknownUser("laradock"),
    },
    Case {
        files: &["supervisord/uwsgi-nginx-debian.conf"],
        noted: &["uwsgi-nginx-debian.conf:24: [eventlistener:quit_on_failure]"],
        has: &[
            r#"command = ["/usr/local/bin/uwsgi", "--ini", "/etc/uwsgi/uwsgi.ini"]"#,
            r#"stop = { signal = "QUIT", mode = "main" }"#,
        ],
        check: Check::Valid,
    },
    Case {
        files: &[
            "supervisord/webdevops/supervisor.conf",
            "supervisord/webdevops/supervisor.d/apache.conf",
            "supervisord/webdevops/supervisor.d/cron.conf",
            "supervisord/webdevops/supervisor.d/postfix.conf",
            "supervisord/webdevops/supervisor.d/ssh.conf",
            "supervisord/webdevops/supervisor.d/syslog.conf",
        ],
        noted: &[
            "supervisor.conf:20: include files: not mapped: /opt/docker/etc/supervisor.d/*.conf matches no file here",
            "cron.conf:1: [group:cron]: not mapped",
            "cron.conf:9: program:crond autostart: not mapped",
        ],
        // The groups' priorities order the programs: syslog (10), apache (20), cron (25).
        has: &["[program.apached]\ncommand = [\"/opt/docker/bin/service.d/httpd.sh\"]\nrestart = \"always\"\nafter = [\"syslogd\"]"],
        check: Check::Valid,
    },
    Case {
        files: &["pm2/ecosystem-file-process.yml"],
        noted: &[
            "ecosystem-file-process.yml:6: apps[0].watch: not mapped",
            "ecosystem-file-process.yml:10: apps[0].env_production: not mapped",
        ],
        has: &["[program.HTTP-API]", "memory = { max = \"260MiB\" }", r#"command = ["bash", "apps/connection_check.sh"]"#],
        check: Check::Valid,
    },
    Case {
        files: &["pm2/run-php-python-ruby-bash.yml"],
        noted: &[],
        has: &[
            r#"command = ["php", "./echo.php"]"#,
            r#"command = ["python3", "./echo.py"]"#,
            r#"command = ["ruby", "./echo.rb"]"#,
        ],
        check: Check::Valid,
    },
    Case {
        files: &["pm2/yaml-configuration-apps.yml"],
        noted: &[],
        has: &[r#"command = ["/usr/bin/python3", "-u", "echo.py"]"#, "replicas = 4"],
        check: Check::Valid,
    },
    Case {
        files: &["pm2/increment-var.json"],
        noted: &[
            "increment-var.json:5: [0].exec_mode: mapped approximately",
            "increment-var.json:7: [0].out_file: not mapped",
        ],
        has: &[
            r#"env = { PORT = "{3000 + instance}" }"#,
            r#"env = { APP_ID = "{instance}" }"#,
        ],
        check: Check::Valid,
    },
    Case {
        files: &["pm2/all.json"],
        noted: &["all.json:9: [1].out_file: mapped approximately"],
        has: &["[log]\ndir = \".\"", "replicas = 4"],
        check: Check::Valid,
    },
    Case {
        files: &["pm2/wait-ready.json"],
        noted: &[
            "wait-ready.json:7: apps[0].wait_ready: not mapped",
            "wait-ready.json:9: apps[0].listen_timeout: not mapped",
        ],
        has: &["stop = { grace = \"2000ms\" }"],
        check: Check::Valid,
    },
    Case {
        files: &["pm2/cron-pm2.json"],
        noted: &["cron-pm2.json:6: [0].cron_restart: not mapped"],
        has: &["[program.echo]"],
        check: Check::Valid,
    },
    Case {
        files: &["pm2/treekill.json"],
        noted: &["treekill.json:3: apps[0].treekill: mapped approximately"],
        has: &["stop = { mode = \"main\" }"],
        check: Check::Valid,
    },
    Case {
        files: &["procfile/heroku-python/Procfile"],
        noted: &[],
        has: &[r#"command = ["gunicorn", "--config", "gunicorn.conf.py", "gettingstarted.wsgi"]"#],
        check: Check::Valid,
    },
    Case {
        files: &["procfile/foreman-example/Procfile"],
        noted: &[],
        has: &[
            r#"command = ["sh", "-c", "exec ruby ./ticker $PORT"]"#,
            r#"env = { PORT = "5000" }"#,
        ],
        check: Check::Valid,
    },
    Case {
        files: &["procfile/foreman-spec/Procfile"],
        noted: &[],
        has: &[r#"command = ["sh", "-c", "exec bin/echo PS env var is $PS"]"#],
        check: Check::Valid,
    },
];

/// Converts one case and checks what it says; returns the converted config's path.
fn convert(case: &Case, out: &Path) -> PathBuf {
    let (code, stdout, stderr) = run(&corpus(), &[&["import"], case.files].concat());
    let what = case.files.join(" ");
    assert_eq!(code, Some(0), "import {what}\n{stderr}");
    for key in case.noted {
        assert!(
            stderr.contains(key),
            "import {what}: {key:?} not on stderr:\n{stderr}"
        );
    }
    // supervisord and PM2 stay up when a program gives up: so does what is converted from them.
    let programs = stdout.matches("\n[program.").count();
    if case.files[0].starts_with("supervisord/") || case.files[0].starts_with("pm2/") {
        assert_eq!(
            stdout.matches("\nessential = false\n").count(),
            programs,
            "import {what}: every program should say essential = false:\n{stdout}"
        );
    }
    for text in case.has {
        assert!(
            stdout.contains(text),
            "import {what}: {text:?} not in:\n{stdout}"
        );
    }
    assert!(
        stderr
            .lines()
            .last()
            .is_some_and(|l| l.contains("converted;")),
        "import {what}: no summary\n{stderr}"
    );
    let path = out.join(format!("{}.toml", case.files[0].replace('/', "_")));
    fs::write(&path, &stdout).expect("write the conversion");
    path
}

/// `--check` on a converted config; its output must name every program.
fn check(path: &Path, expect: &Check) {
    let p = path.to_str().expect("utf-8 path");
    let (code, stdout, stderr) = run(path.parent().expect("dir"), &["-c", p, "--check"]);
    match expect {
        Check::Valid => {
            assert_eq!(
                code,
                Some(0),
                "{p}\n{stderr}\n{}",
                fs::read_to_string(path).unwrap_or_default()
            );
            assert!(stdout.starts_with(&format!("{p}: valid: ")), "{stdout}");
            let text = fs::read_to_string(path).expect("read");
            for table in text.lines().filter_map(|l| l.strip_prefix("[program.")) {
                let name = table.trim_end_matches(']').trim_matches('"');
                assert!(
                    stdout.contains(&format!("program {name} × ")),
                    "{name} not in\n{stdout}"
                );
            }
        }
        Check::NoProgram => {
            assert_eq!(code, Some(2), "{p}: {stdout}");
            assert!(stderr.contains("no program defined"), "{stderr}");
        }
        Check::UnknownUser(user) => {
            assert_eq!(code, Some(2), "{p}: {stdout}");
            assert!(
                stderr.contains(".user: no user named") && stderr.contains(user),
                "{stderr}"
            );
            let text = fs::read_to_string(path).expect("read");
            let without: String = text
                .lines()
                .filter(|l| !l.starts_with("user = "))
                .map(|l| format!("{l}\n"))
                .collect();
            fs::write(path, without).expect("write");
            check(path, &Check::Valid);
        }
    }
}

#[test]
fn real_configs_convert_and_check() {
    let out = tempfile::tempdir().expect("tempdir");
    for case in CASES {
        let path = convert(case, out.path());
        check(&path, &case.check);
    }
}

#[test]
fn an_ecosystem_module_goes_through_node() {
    let file = "pm2/uptime-kuma/ecosystem.config.js";
    let (code, stdout, stderr) = run(&corpus(), &["import", file]);
    let has_node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_node {
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains("needs `node`, which is not installed"),
            "{stderr}"
        );
        eprintln!("skipped the conversion itself: node is not installed");
        return;
    }
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("[program.uptime-kuma]\ncommand = [\"node\", \"./server/server.js\"]"),
        "{stdout}"
    );
    let out = tempfile::tempdir().expect("tempdir");
    let path = out.path().join("kuma.toml");
    fs::write(&path, stdout).expect("write");
    check(&path, &Check::Valid);
    // An ES module, a function's result, and a module that throws.
    let d = out.path();
    fs::write(
        d.join("esm.config.mjs"),
        "export default { apps: [{ name: 'm', script: 'm.js', instances: 2 }] };\n",
    )
    .expect("write");
    fs::write(
        d.join("fn.config.cjs"),
        "module.exports = () => ({ apps: [{ name: 'f', script: './f' }] });\n",
    )
    .expect("write");
    fs::write(
        d.join("bad.config.js"),
        "throw new Error('no config here');\n",
    )
    .expect("write");
    let (code, stdout, stderr) = run(d, &["import", "esm.config.mjs", "fn.config.cjs"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("[program.m]\ncommand = [\"node\", \"m.js\"]\nreplicas = 2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[program.f]\ncommand = [\"./f\"]"),
        "{stdout}"
    );
    let (code, stdout, stderr) = run(d, &["import", "bad.config.js"]);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(
        stderr.contains("node could not evaluate it") && stderr.contains("no config here"),
        "{stderr}"
    );
}

#[test]
fn every_file_of_the_corpus_is_listed_with_its_licence() {
    let sources = fs::read_to_string(corpus().join("SOURCES.md")).expect("SOURCES.md");
    let mut missing = Vec::new();
    let mut stack = vec![corpus()];
    let mut count = 0;
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p
                .strip_prefix(corpus())
                .expect("under")
                .to_string_lossy()
                .into_owned();
            if rel == "SOURCES.md" {
                continue;
            }
            count += 1;
            let line = sources.lines().find(|l| l.contains(&format!("`{rel}`")));
            match line {
                Some(l) if l.matches('|').count() >= 5 => {}
                _ => missing.push(rel),
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in SOURCES.md with repository, path, commit and licence: {missing:?}"
    );
    assert!(
        count >= 20,
        "the corpus should hold at least 20 configs, has {count}"
    );
}

#[test]
fn check_starts_nothing_and_refuses_what_the_loader_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("ran");
    let m = marker.to_str().expect("utf-8");
    let (code, stdout, stderr) = run(
        dir.path(),
        &["--check", "--replicas", "3", "--", "touch", m],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with("the command line: valid: 1 program, 3 instances"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("program touch × 3: [\"touch\",\"{m}\"]")),
        "{stdout}"
    );
    let conf = dir.path().join("s.toml");
    fs::write(
        &conf,
        format!("[program.t]\ncommand = [\"touch\", \"{m}\"]\n[program.u]\ncommand = [\"true\"]\nafter = [\"t\"]\nmemory = {{ max = \"64MiB\" }}\n"),
    )
    .expect("write");
    let (code, stdout, stderr) = run(dir.path(), &["-c", "s.toml", "--check"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("program u × 1: [\"true\"]\n"), "{stdout}");
    assert!(stdout.contains("  after t\n"), "{stdout}");
    assert!(stdout.contains("  memory max 64.0 MiB"), "{stdout}");
    assert!(!marker.exists(), "--check started the command");
    fs::write(
        &conf,
        "[program.t]\ncommand = [\"x\"]\nmemory = { max = \"64 MegaBytes\" }\n",
    )
    .expect("write");
    let (code, _, stderr) = run(dir.path(), &["-c", "s.toml", "--check"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("s.toml:3: program.t.memory.max: invalid size"),
        "{stderr}"
    );
}

#[test]
fn import_refuses_what_it_cannot_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        dir.path().join("loop.conf"),
        "[include]\nfiles = loop.conf\n",
    )
    .expect("write");
    fs::write(dir.path().join("bin.json"), [0x7b, 0xff, 0xfe, 0x00]).expect("write");
    for (file, says) in [
        ("loop.conf", "loop.conf:2: an include loop"),
        ("bin.json", "is not UTF-8 text"),
        ("gone.conf", "cannot read"),
    ] {
        let (code, stdout, stderr) = run(dir.path(), &["import", file]);
        assert_eq!(code, Some(2), "{file}: {stdout}");
        assert!(stdout.is_empty(), "{file}: {stdout}");
        assert!(stderr.contains(says), "{file}: {stderr}");
    }
}

#[test]
fn literal_braces_stay_literal_and_per_instance_values_expand() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        dir.path().join("Procfile"),
        "web: node web.js --port ${PORT}\nstats: awk '{print $1}' access.log\n",
    )
    .expect("write");
    fs::write(
        dir.path().join("workers.conf"),
        "[program:w]\ncommand=./w --id %(process_num)d --json {\"a\":1}\nnumprocs=3\nnumprocs_start=10\n",
    )
    .expect("write");
    let (code, stdout, stderr) = run(dir.path(), &["import", "Procfile", "workers.conf"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(r#""exec node web.js --port ${{PORT}}""#),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#""{10 + instance}", "--json", "{{a:1}}""#),
        "{stdout}"
    );
    assert!(stderr.contains("w vary per instance"), "{stderr}");
    let path = dir.path().join("out.toml");
    fs::write(&path, &stdout).expect("write");
    check(&path, &Check::Valid);
}
