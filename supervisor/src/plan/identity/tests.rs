use super::*;
use crate::plan::{parse_config, PlanError};
use std::path::Path;

fn root() -> ResolvedUser {
    resolve_user(&Who::Id(0)).expect("uid 0 is in every user database")
}

#[test]
fn umasks() {
    assert_eq!(parse_umask("027"), Ok(0o027));
    assert_eq!(parse_umask("0022"), Ok(0o022));
    assert_eq!(parse_umask("0o077"), Ok(0o077));
    assert_eq!(parse_umask("0"), Ok(0));
    for bad in ["", "8", "1000", "abc", "-1", "0o"] {
        assert!(parse_umask(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn umask_integers_are_taken_only_when_written_in_octal() {
    for (n, written, want) in [
        (0o027, "0o027", Ok(0o027)),
        (0o022, " 0o0_22 ", Ok(0o022)),
        (0, "0", Ok(0)),
        (0o1000, "0o1000", Err("at most 0o777")),
        (27, "27", Err("27 is a decimal number in TOML (0o33 as a umask); write the octal digits as a string: umask = \"027\"")),
        (22, "22", Err("umask = \"022\"")),
        (777, "777", Err("umask = \"777\"")),
        (18, "18", Err("umask = \"027\"")),
        (23, "0x17", Err("0x17 is a decimal number")),
    ] {
        match (raw::umask_int(n, written), want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{written}"),
            (Err(got), Err(want)) => assert!(got.contains(want), "{written}: {got}"),
            (got, want) => panic!("{written}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn rlimit_flags() {
    let r = parse_rlimit_flag("nofile=65536").expect("valid");
    assert_eq!(
        (r.resource, r.soft, r.hard),
        (Resource::RLIMIT_NOFILE, 65536, 65536)
    );
    assert_eq!(r.name(), "nofile");
    assert_eq!(r.value(), "65536");
    let r = parse_rlimit_flag("core=unlimited").expect("valid");
    assert_eq!((r.soft, r.hard), (UNLIMITED, UNLIMITED));
    let r = parse_rlimit_flag("stack=8388608:unlimited").expect("valid");
    assert_eq!((r.soft, r.hard), (8_388_608, UNLIMITED));
    assert_eq!(r.value(), "8388608:unlimited");
    for (bad, why) in [
        ("nofile=10:5", "soft limit is above the hard limit"),
        ("nofiles=1", "unknown limit \"nofiles\""),
        ("nofile", "expected NAME=VALUE"),
        ("nofile=lots", "invalid limit"),
        ("nofile=-1", "invalid limit"),
    ] {
        let e = parse_rlimit_flag(bad).expect_err(bad);
        assert!(e.contains(why), "{bad}: {e}");
    }
    // Every name Linux has.
    for (name, _) in RLIMITS {
        assert!(parse_rlimit_flag(&format!("{name}=1")).is_ok(), "{name}");
    }
}

#[test]
fn only_root_switches() {
    let root = root();
    // A supervisor running as uid 1000 may not become root, or join group 0.
    let (key, m) = credentials(Some(&root), None, 1000, 1000).expect_err("not root");
    assert_eq!(key, Key::User);
    assert!(
        m.contains("only root can run a program as another user"),
        "{m}"
    );
    let (key, _) = credentials(None, Some((0, "root")), 1000, 1000).expect_err("not root");
    assert_eq!(key, Key::Group);
    // Naming itself is fine: nothing to switch, the environment still set.
    let me = ResolvedUser {
        uid: 1000,
        gid: Some(1000),
        given: "me".into(),
        entry: Some(("me".into(), "/home/me".into(), "/bin/sh".into())),
    };
    let Credentials { switch, env } =
        credentials(Some(&me), Some((1000, "me")), 1000, 1000).expect("self");
    assert_eq!(switch, None);
    assert!(env.contains(&("HOME".to_owned(), "/home/me".to_owned())));
    assert!(env.contains(&("LOGNAME".to_owned(), "me".to_owned())));
}

#[test]
fn root_switches_with_the_users_groups() {
    let root = root();
    let Credentials { switch, env } = credentials(Some(&root), None, 0, 0).expect("root");
    let s = switch.expect("a switch");
    assert_eq!((s.uid, s.gid), (Some(0), 0));
    assert!(s.groups.contains(&0), "{:?}", s.groups);
    assert!(
        env.iter().any(|(k, v)| k == "USER" && v == "root"),
        "{env:?}"
    );
    // A uid with no entry needs a group; then it gets that group alone.
    let ghost = resolve_user(&Who::Id(4_000_000_123)).expect("an id need not exist");
    assert_eq!(ghost.entry, None);
    assert!(credentials(Some(&ghost), None, 0, 0).is_err());
    let Credentials { switch: s, env } =
        credentials(Some(&ghost), Some((4_000_000_123, "4000000123")), 0, 0).expect("with a group");
    let s = s.expect("a switch");
    assert_eq!(s.groups, [4_000_000_123]);
    assert!(env.contains(&("HOME".to_owned(), "/".to_owned())));
    // Only a group: the uid stays.
    let c = credentials(None, Some((5, "5")), 0, 0).expect("group");
    assert_eq!(c.switch.map(|s| (s.uid, s.gid)), Some((None, 5)));
}

#[test]
fn unknown_names_are_refused() {
    let e = resolve_user(&Who::Name("no-such-user-xq".into())).expect_err("unknown");
    assert!(e.contains("no user named \"no-such-user-xq\""), "{e}");
    let e = resolve_group(&Who::Name("no-such-group-xq".into())).expect_err("unknown");
    assert!(e.contains("no group named"), "{e}");
    assert_eq!(Who::parse("65534"), Who::Id(65534));
    assert_eq!(Who::parse("nobody"), Who::Name("nobody".into()));
}

fn config(extra: &str) -> Result<crate::plan::Plan, PlanError> {
    parse_config(
        &format!("[program.a]\ncommand = [\"x\"]\n{extra}"),
        Some(Path::new("s.toml")),
    )
}

#[test]
fn config_keys() {
    let plan = config(
        "umask = \"027\"\nnice = 5\noom_score_adj = -100\nclear_env = true\n\
         rlimits = { nofile = 4096, core = 0, stack = { soft = 1024, hard = \"unlimited\" } }\n",
    )
    .expect("valid");
    let id = &plan.programs[0].identity;
    assert_eq!(id.umask, Some(0o027));
    assert_eq!(id.nice, Some(5));
    assert_eq!(id.oom_score_adj, Some(-100));
    assert!(id.clear_env);
    let limits: Vec<(&str, u64, u64)> = id
        .rlimits
        .iter()
        .map(|r| (r.name(), r.soft, r.hard))
        .collect();
    // In the order the TOML reader hands them over (by name); each is set on its own anyway.
    assert_eq!(
        limits,
        [
            ("core", 0, 0),
            ("nofile", 4096, 4096),
            ("stack", 1024, UNLIMITED)
        ]
    );
    // As a table of its own, too; and an integer umask.
    let plan =
        config("umask = 0o022\n[program.a.rlimits]\nnproc = \"unlimited\"\n").expect("valid");
    assert_eq!(plan.programs[0].identity.umask, Some(0o022));
    assert_eq!(plan.programs[0].identity.rlimits[0].name(), "nproc");
}

#[test]
fn config_errors_name_line_and_key() {
    for (extra, want) in [
        (
            "rlimits = { nofiles = 1 }\n",
            "s.toml:3: program.a.rlimits.nofiles: unknown limit \"nofiles\"",
        ),
        (
            "rlimits = { nofile = { soft = 10, hard = 5 } }\n",
            "s.toml:3: program.a.rlimits.nofile: the soft limit is above the hard limit (10:5)",
        ),
        (
            "rlimits = { core = \"lots\" }\n",
            "s.toml:3: program.a.rlimits.core: expected a number",
        ),
        (
            "umask = \"999\"\n",
            "s.toml:3: program.a.umask: invalid umask",
        ),
        (
            "umask = true\n",
            "s.toml:3: program.a.umask: expected octal digits such as \"027\"",
        ),
        (
            "\numask = 27\n",
            "s.toml:4: program.a.umask: 27 is a decimal number in TOML (0o33 as a umask); write \
             the octal digits as a string: umask = \"027\"",
        ),
        (
            "nice = -21\n",
            "s.toml:3: program.a.nice: must be between -20 and 19",
        ),
        (
            "oom_score_adj = 1001\n",
            "s.toml:3: program.a.oom_score_adj: must be between -1000",
        ),
        (
            "user = \"no-such-user-xq\"\n",
            "s.toml:3: program.a.user: no user named",
        ),
        (
            "\ngroup = \"no-such-group-xq\"\n",
            "s.toml:4: program.a.group: no group named",
        ),
    ] {
        let e = config(extra).expect_err(extra).to_string();
        assert!(e.contains(want), "{extra:?}: got {e:?}, want {want:?}");
    }
}

#[test]
fn env_file_and_env() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("app.env"), "A=from-file\nB='b'\n").expect("write");
    let toml = "[program.a]\ncommand = [\"x\"]\nenv_file = \"app.env\"\nenv = { B = \"from-env\", C = \"c\" }\n";
    // Relative to the config's directory.
    let plan = parse_config(toml, Some(&dir.path().join("s.toml"))).expect("valid");
    let env = &plan.programs[0].env;
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("A"), Some("from-file"));
    assert_eq!(get("B"), Some("from-env"), "env wins over env_file");
    assert_eq!(get("C"), Some("c"));
    // A bad line: the env file, its line, the config's line and key.
    std::fs::write(dir.path().join("app.env"), "A=1\nexport\n").expect("write");
    let e = parse_config(toml, Some(&dir.path().join("s.toml")))
        .expect_err("bad env file")
        .to_string();
    let want = format!(
        "s.toml:3: program.a.env_file: {}:2: expected NAME=VALUE",
        dir.path().join("app.env").display()
    );
    assert!(e.contains(&want), "{e}");
    std::fs::remove_file(dir.path().join("app.env")).expect("rm");
    let e = parse_config(toml, Some(&dir.path().join("s.toml")))
        .expect_err("missing env file")
        .to_string();
    assert!(
        e.contains("program.a.env_file:") && e.contains("cannot read the env file"),
        "{e}"
    );
}

fn cli(args: &[&str]) -> Result<crate::plan::Plan, PlanError> {
    use clap::FromArgMatches;
    let matches = <crate::plan::Cli as clap::CommandFactory>::command()
        .try_get_matches_from(args)
        .map_err(|e| PlanError {
            file: None,
            line: None,
            key: "clap".into(),
            message: e.to_string(),
        })?;
    let cli = crate::plan::Cli::from_arg_matches(&matches).expect("matches");
    let explicit =
        |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    cli.into_plan(&explicit)
}

#[test]
fn flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env_file = dir.path().join("app.env");
    std::fs::write(&env_file, "A=1\nexport B=\"two\"\nA=3\n").expect("write");
    let env_path = env_file.to_str().expect("utf-8");
    let plan = cli(&[
        "supervise",
        "--umask",
        "027",
        "--nice",
        "-3",
        "--oom-score-adj",
        "-500",
        "--rlimit",
        "nofile=100:200",
        "--rlimit",
        "core=0",
        "--env-file",
        env_path,
        "--clear-env",
        "--",
        "x",
    ])
    .expect("plan");
    let p = &plan.programs[0];
    let id = &p.identity;
    assert_eq!(
        (id.umask, id.nice, id.oom_score_adj, id.clear_env),
        (Some(0o027), Some(-3), Some(-500), true)
    );
    let limits: Vec<String> = id
        .rlimits
        .iter()
        .map(|r| format!("{}={}", r.name(), r.value()))
        .collect();
    assert_eq!(limits, ["nofile=100:200", "core=0"]);
    // A later line wins, in the place of the first.
    assert_eq!(
        p.env,
        [
            ("A".to_owned(), "3".to_owned()),
            ("B".to_owned(), "two".to_owned())
        ]
    );

    let key = |args: &[&str]| cli(args).expect_err("refused").key;
    assert_eq!(
        key(&[
            "supervise",
            "--rlimit",
            "core=0",
            "--rlimit",
            "core=1",
            "--",
            "x"
        ]),
        "--rlimit"
    );
    assert_eq!(key(&["supervise", "--nice", "20", "--", "x"]), "clap");
    assert_eq!(
        key(&["supervise", "--rlimit", "cores=0", "--", "x"]),
        "clap"
    );
    assert_eq!(
        key(&["supervise", "--user", "no-such-user-xq", "--", "x"]),
        "--user"
    );
    let missing = dir.path().join("missing.env");
    assert_eq!(
        key(&[
            "supervise",
            "--env-file",
            missing.to_str().expect("utf-8"),
            "--",
            "x"
        ]),
        "--env-file"
    );

    // Per-program: refused with -c.
    let config = dir.path().join("s.toml");
    std::fs::write(&config, "[program.a]\ncommand = [\"x\"]\n").expect("write");
    let c = config.to_str().expect("utf-8");
    for flag in [
        &["--user", "root"][..],
        &["--group", "0"],
        &["--umask", "022"],
        &["--nice", "1"],
        &["--oom-score-adj", "1"],
        &["--rlimit", "core=0"],
        &["--env-file", env_path],
        &["--clear-env"],
    ] {
        let mut args = vec!["supervise", "-c", c];
        args.extend_from_slice(flag);
        assert_eq!(key(&args), flag[0], "{flag:?}");
    }
}
