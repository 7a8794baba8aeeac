//! What a fatal program means for the whole: an essential one (the default) stops the others
//! gracefully and ends supervise with 1 within their stop grace; one that is not essential
//! leaves supervise and the other programs running, `/readyz` ignoring it, and the exit status
//! as it would have been.

mod common;

use std::time::{Duration, Instant};

use common::peers::http;
use common::{example, status_json, unique, wait_until, ProgramGuard, Sup};

const LONG: Duration = Duration::from_secs(30);

/// `crash` (crasher, exit 3 after 100 ms, given up on after its second exit) beside `ok` (idle),
/// with `crash`'s `essential` as given.
fn config(crash: &str, ok: &str, essential: bool) -> String {
    format!(
        "[program.{crash}]\n\
         command = [\"{crasher}\", \"--after\", \"100\", \"--code\", \"3\"]\n\
         restart = \"always\"\n\
         essential = {essential}\n\
         intensity = {{ max = 1, within = \"60s\" }}\n\
         backoff = {{ first = \"10ms\" }}\n\
         [program.{ok}]\n\
         command = [\"{leaky}\", \"--rate\", \"0\"]\n\
         stop = {{ grace = \"3s\" }}\n",
        crasher = example("crasher"),
        leaky = example("leaky"),
    )
}

#[test]
fn a_program_that_is_not_essential_going_fatal_leaves_the_rest_running() {
    let (crash, ok) = (unique("helper"), unique("main"));
    let _g = [ProgramGuard(crash.clone()), ProgramGuard(ok.clone())];
    let mut sup = Sup::start_with(&[], |cmd, dir| {
        let path = dir.join("supervise.toml");
        std::fs::write(&path, config(&crash, &ok, false)).expect("config");
        cmd.arg("--admin")
            .arg(dir.join("ctl.sock"))
            .args(["--metrics", "127.0.0.1:0"])
            .arg("-c")
            .arg(path);
    });
    let addr = sup.wait_event("listening", LONG)["addr"]
        .as_str()
        .expect("addr")
        .to_owned();
    sup.wait_event("fatal", LONG);
    // Well past the moment an essential program's fatal would have ended the run.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert!(
            sup.child.try_wait().expect("try_wait").is_none(),
            "{}",
            sup.dump()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let rows = status_json(&sup.socket());
    let state = |p: &str| {
        rows.iter()
            .find(|w| w["program"] == p)
            .map(|w| w["state"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(state(&ok).as_deref(), Some("running"), "{rows:?}");
    assert_eq!(state(&crash).as_deref(), Some("fatal"), "{rows:?}");
    // `/readyz` leaves the helper out: the run is ready.
    let mut got = None;
    let ready = wait_until(LONG, || {
        got = http(&addr, "GET", "/readyz", None);
        got.as_ref().is_some_and(|(code, _)| *code == 200)
    });
    assert!(ready, "{got:?}\n{}", sup.dump());
    // The exit status a TERM gives, as if the helper had never failed.
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(LONG).code(), Some(0), "{}", sup.dump());
}

#[test]
fn an_essential_program_going_fatal_ends_the_run_with_1_within_the_grace() {
    let (crash, ok) = (unique("core"), unique("other"));
    let _g = [ProgramGuard(crash.clone()), ProgramGuard(ok.clone())];
    let mut sup = Sup::with_config(&config(&crash, &ok, true));
    sup.wait_event("fatal", LONG);
    let fatal_at = Instant::now();
    let status = sup.wait_exit(LONG);
    let took = fatal_at.elapsed();
    assert_eq!(status.code(), Some(1), "{}", sup.dump());
    // `ok` takes TERM at once (leaky does not handle it): far within its 3 s grace.
    assert!(took < Duration::from_secs(3), "{took:?}\n{}", sup.dump());
    // The other program was stopped gracefully, not killed.
    let stopped = sup
        .of("exited")
        .into_iter()
        .filter(|e| e["program"] == ok.as_str())
        .collect::<Vec<_>>();
    assert_eq!(stopped.len(), 1, "{}", sup.dump());
    assert_eq!(stopped[0]["signal"], libc::SIGTERM, "{}", sup.dump());
    assert!(sup.of("killed").is_empty(), "{}", sup.dump());
}

#[test]
fn two_essential_programs_fatal_at_once_end_the_run_once_with_1() {
    let (a, b) = (unique("twina"), unique("twinb"));
    let _g = [ProgramGuard(a.clone()), ProgramGuard(b.clone())];
    let crash = |name: &str| {
        format!(
            "[program.{name}]\n\
             command = [\"{crasher}\", \"--after\", \"100\", \"--code\", \"3\"]\n\
             restart = \"always\"\nessential = true\n\
             intensity = {{ max = 0, within = \"60s\" }}\n",
            crasher = example("crasher"),
        )
    };
    let mut sup = Sup::with_config(&format!("{}{}", crash(&a), crash(&b)));
    assert_eq!(sup.wait_exit(LONG).code(), Some(1), "{}", sup.dump());
    assert!(!sup.of("fatal").is_empty(), "{}", sup.dump());
}

#[test]
fn an_essential_program_going_fatal_during_a_program_reload_ends_both() {
    // `core` crashes once after 1.5 s and is given up on; meanwhile `sigs` is being reloaded
    // with a long settle time: the reload's waiting client is told supervise is stopping, and
    // the run ends with 1.
    let (core, sigs) = (unique("corerl"), unique("sigsrl"));
    let _g = [ProgramGuard(core.clone()), ProgramGuard(sigs.clone())];
    let mut sup = Sup::start_with(&[], |cmd, dir| {
        let path = dir.join("supervise.toml");
        std::fs::write(
            &path,
            format!(
                "[program.{core}]\n\
                 command = [\"{crasher}\", \"--after\", \"1500\", \"--code\", \"3\"]\n\
                 essential = true\n\
                 intensity = {{ max = 0, within = \"60s\" }}\n\
                 [program.{sigs}]\n\
                 command = [\"{sigcount}\", \"--log\", \"{log}\"]\n\
                 replicas = 2\n\
                 essential = true\n\
                 reload = {{ signal = \"USR1\", settle = \"20s\" }}\n",
                crasher = example("crasher"),
                sigcount = example("sigcount"),
                log = dir.join("sig.log").display(),
            ),
        )
        .expect("config");
        cmd.arg("--admin")
            .arg(dir.join("ctl.sock"))
            .arg("-c")
            .arg(path);
    });
    sup.wait_stdout("sigcount ready", 2, LONG);
    let (ok, text) = common::ctl(&sup.socket(), &["reload-program", &sigs, "--wait"]);
    assert!(!ok, "{text}");
    assert!(text.contains("supervise is stopping"), "{text}");
    assert_eq!(sup.wait_exit(LONG).code(), Some(1), "{}", sup.dump());
    let fatal = sup.of("fatal");
    assert_eq!(fatal.len(), 1, "{}", sup.dump());
    assert_eq!(fatal[0]["program"], core.as_str());
}

#[test]
fn an_essential_program_going_fatal_while_a_config_reload_rolls_another_ends_the_run() {
    // `core` crashes after 8 s and is given up on. Meanwhile a config reload rolls `web` (its
    // readiness check changed, which needs new processes), and web's new first instance is never
    // ready, so the roll waits on it: the fatal does not wait for the roll, and the run ends
    // with 1, every process of web stopped gracefully.
    let (core, web) = (unique("corecfg"), unique("webcfg"));
    let _g = [ProgramGuard(core.clone()), ProgramGuard(web.clone())];
    let cfg = |check: &str| {
        format!(
            "[program.{core}]\n\
             command = [\"{crasher}\", \"--after\", \"8000\", \"--code\", \"3\"]\n\
             essential = true\n\
             intensity = {{ max = 0, within = \"60s\" }}\n\
             [program.{web}]\n\
             command = [\"{leaky}\", \"--rate\", \"0\"]\n\
             replicas = 2\n\
             ready = {{ exec = [\"{check}\"], every = \"200ms\" }}\n\
             stop = {{ grace = \"3s\" }}\n",
            crasher = example("crasher"),
            leaky = example("leaky"),
        )
    };
    let mut sup = Sup::start_with(&[], |cmd, dir| {
        let path = dir.join("supervise.toml");
        std::fs::write(&path, cfg("/bin/true")).expect("config");
        cmd.arg("--admin")
            .arg(dir.join("ctl.sock"))
            .arg("-c")
            .arg(path);
    });
    let of_web = |sup: &Sup, kind: &str| {
        sup.of(kind)
            .into_iter()
            .filter(|e| e["program"] == web.as_str())
            .count()
    };
    assert!(
        wait_until(LONG, || of_web(&sup, "ready") >= 2),
        "{}",
        sup.dump()
    );
    assert!(
        sup.of("fatal").is_empty(),
        "too late to test: {}",
        sup.dump()
    );
    std::fs::write(sup.path("supervise.toml"), cfg("/bin/false")).expect("config");
    let (ok, text) = common::ctl(&sup.socket(), &["reload"]);
    assert!(ok, "{text}");
    // The roll is under way: web's first instance was replaced and its new process waits.
    assert!(
        wait_until(LONG, || of_web(&sup, "started") >= 3),
        "{}",
        sup.dump()
    );
    sup.wait_event("fatal", LONG);
    let fatal_at = Instant::now();
    let status = sup.wait_exit(LONG);
    let took = fatal_at.elapsed();
    assert_eq!(status.code(), Some(1), "{}", sup.dump());
    assert!(took < Duration::from_secs(10), "{took:?}\n{}", sup.dump());
    // The roll went no further than its first instance, and nothing had to be killed.
    assert_eq!(of_web(&sup, "started"), 3, "{}", sup.dump());
    assert!(sup.of("killed").is_empty(), "{}", sup.dump());
}
