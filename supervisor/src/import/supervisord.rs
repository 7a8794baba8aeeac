//! supervisord's INI config to supervise's programs: `[program:x]` sections (with `numprocs`,
//! the `%(…)s` expansions and `environment=`), `[include]` (globs, relative to the including
//! file), `[group:x]` and `[supervisord]`, the rest as notes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ini::{Entry, Section};
use super::{Conversion, ImportError, Log, Note, NoteKind, Program, Stop};

mod include;
mod values;

use include::load;
#[cfg(test)]
use include::normal;
pub use include::{read_files, File, ReadFiles};
use values::{boolean, dest, env_pairs, expand, size, unescape, Cx, Dest, SPACE_IN_TEMPLATE};

/// A note's adder: (line, key, why, kind).
type Add<'a> = dyn FnMut(Option<usize>, &str, String, NoteKind) + 'a;

/// Reads each of `roots` (a path and its text) and the files their `[include]` sections name,
/// then converts them all as one config, as supervisord reads its includes.
pub fn import(
    roots: &[(PathBuf, String)],
    read: &ReadFiles,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Conversion, ImportError> {
    let mut files = Vec::new();
    let mut notes = Vec::new();
    for (path, text) in roots {
        let mut stack = Vec::new();
        load(path, text, read, &mut stack, &mut files, &mut notes)?;
    }
    let mut c = convert(&files, env);
    c.sources = roots.iter().map(|(p, _)| p.clone()).collect();
    notes.append(&mut c.notes);
    c.notes = notes;
    Ok(c)
}

/// Why a key of `[supervisord]` has no counterpart.
fn supervisord_why(key: &str) -> &'static str {
    match key {
        "nodaemon" => "supervise always runs in the foreground; run it as a service under systemd or as a container's entrypoint",
        "logfile" | "logfile_maxbytes" | "logfile_backups" | "loglevel" | "silent" => {
            "supervise's own lines go to its stderr, its events to --events FILE"
        }
        "pidfile" => "supervise writes no pid file; its control socket is --admin PATH",
        "user" => "supervise runs as the user who starts it; `user` is set per program",
        "minfds" | "minprocs" => "supervise raises its own open-file limit; a worker's limits are `rlimits`",
        "childlogdir" => "AUTO log files have no counterpart: supervise writes output files only with [log] dir, named NAME.INSTANCE.stdout.log",
        _ => "no counterpart in supervise",
    }
}

/// The keys of a `[program:x]` section that have no counterpart, and why.
fn program_why(key: &str) -> Option<&'static str> {
    Some(match key {
        "autostart" => "supervise starts every program of its config; `supervise stop NAME` keeps one stopped",
        "startsecs" => "supervise has no start period: a restart counts toward intensity (max within 60s) whatever the uptime; a readiness rule (ready.*) says when an instance is up",
        "serverurl" => "supervise's control socket is not supervisord's XML-RPC",
        "stdout_capture_maxbytes" | "stderr_capture_maxbytes" | "stdout_events_enabled"
        | "stderr_events_enabled" => "supervise has no process communication events",
        "stdout_syslog" | "stderr_syslog" => "supervise does not write to syslog; its output goes to stderr (journald under systemd)",
        _ => return None,
    })
}

/// A converted program and what the conversion needs of it later.
struct Converted {
    program: Program,
    /// The file its section is in.
    file: PathBuf,
    priority: i64,
    /// Log file keys naming a file: (entry, directory).
    files: Vec<(Entry, String)>,
    /// `*_logfile_maxbytes` and `*_logfile_backups`.
    rotation: Vec<Entry>,
}

/// Converts the sections of every file.
#[must_use]
pub fn convert(files: &[File], env: &dyn Fn(&str) -> Option<String>) -> Conversion {
    let mut c = Conversion {
        sources: files.iter().take(1).map(|f| f.path.clone()).collect(),
        ..Conversion::default()
    };
    let note = |c: &mut Conversion, file: &Path, line, key: String, why: String, kind| {
        c.notes.push(Note {
            file: file.to_owned(),
            line,
            key,
            why,
            kind,
        });
    };
    // Groups, so that %(group_name)s expands and a group's priority orders its programs.
    let mut group_of: BTreeMap<String, String> = BTreeMap::new();
    let mut group_priority: BTreeMap<String, i64> = BTreeMap::new();
    for f in files {
        for s in &f.sections {
            if let (Some(g), Some(p)) = (s.name.strip_prefix("group:"), s.get("programs")) {
                for name in p.value.split(',') {
                    group_of.insert(name.trim().to_owned(), g.to_owned());
                    if let Some(n) = s.get("priority").and_then(|e| e.value.trim().parse().ok()) {
                        group_priority.insert(name.trim().to_owned(), n);
                    }
                }
            }
        }
    }
    // [supervisord]'s environment reaches every program.
    let mut global_env = Vec::new();
    for f in files {
        for s in f.sections.iter().filter(|s| s.name == "supervisord") {
            for e in &s.entries {
                if e.key == "environment" {
                    let cx = Cx {
                        program: "",
                        group: "",
                        here: f.here.clone(),
                        numprocs: 1,
                        numprocs_start: 0,
                        env,
                    };
                    let mut problems = Vec::new();
                    let v = expand(&e.value, &cx, &mut problems);
                    for (kind, why) in problems {
                        note(
                            &mut c,
                            &f.path,
                            Some(e.line),
                            "supervisord environment".into(),
                            why,
                            kind,
                        );
                    }
                    match env_pairs(&v) {
                        Ok(pairs) => global_env.extend(pairs),
                        Err(m) => note(
                            &mut c,
                            &f.path,
                            Some(e.line),
                            "supervisord environment".into(),
                            m,
                            NoteKind::Unmapped,
                        ),
                    }
                } else {
                    note(
                        &mut c,
                        &f.path,
                        Some(e.line),
                        format!("supervisord {}", e.key),
                        supervisord_why(&e.key).into(),
                        NoteKind::Unmapped,
                    );
                }
            }
        }
    }
    let mut programs: Vec<Converted> = Vec::new();
    for f in files {
        for s in &f.sections {
            let name = s.name.as_str();
            if let Some(prog) = name.strip_prefix("program:") {
                if let Some(mut p) =
                    program(f, s, prog.trim(), &group_of, &global_env, env, &mut c.notes)
                {
                    if s.get("priority").is_none() {
                        if let Some(&n) = group_priority.get(prog.trim()) {
                            p.priority = n;
                        }
                    }
                    programs.push(p);
                }
            } else if let Some(g) = name.strip_prefix("group:") {
                note(
                    &mut c,
                    &f.path,
                    Some(s.line),
                    format!("[{name}]"),
                    format!(
                        "supervise has no groups: the programs of {g} keep their own names (supervisorctl's {g}:NAME is NAME here); its priority orders them (after)"
                    ),
                    NoteKind::Unmapped,
                );
            } else if name == "include" || name == "supervisord" {
                // Read above.
            } else if name == "unix_http_server"
                || name == "inet_http_server"
                || name == "supervisorctl"
                || name.starts_with("rpcinterface:")
            {
                note(
                    &mut c,
                    &f.path,
                    Some(s.line),
                    format!("[{name}]"),
                    "supervise's control socket is --admin PATH (supervise status, restart, stop …), its HTTP server --metrics ADDR".into(),
                    NoteKind::Unmapped,
                );
            } else if name.starts_with("eventlistener:") {
                note(&mut c, &f.path, Some(s.line), format!("[{name}]"),
                    "supervise does not speak the event listener protocol; events go to a command with [alert] exec".into(),
                    NoteKind::Unmapped);
            } else if name.starts_with("fcgi-program:") {
                note(
                    &mut c,
                    &f.path,
                    Some(s.line),
                    format!("[{name}]"),
                    "supervise does not open sockets for its workers (FastCGI)".into(),
                    NoteKind::Unmapped,
                );
            } else {
                note(
                    &mut c,
                    &f.path,
                    Some(s.line),
                    format!("[{name}]"),
                    "not a section supervisord knows".into(),
                    NoteKind::Unmapped,
                );
            }
        }
    }
    order(&mut programs);
    logs(&mut c, &programs);
    c.programs = programs.into_iter().map(|p| p.program).collect();
    c
}

/// `priority` to `after`: each program starts after those of the next lower priority, when the
/// priorities differ.
fn order(programs: &mut [Converted]) {
    let mut levels: Vec<i64> = programs.iter().map(|p| p.priority).collect();
    levels.sort_unstable();
    levels.dedup();
    if levels.len() < 2 {
        return;
    }
    let names: Vec<(i64, String)> = programs
        .iter()
        .map(|p| (p.priority, p.program.name.clone()))
        .collect();
    for p in programs.iter_mut() {
        let Some(k) = levels
            .iter()
            .position(|&l| l == p.priority)
            .filter(|&k| k > 0)
        else {
            continue;
        };
        p.program.after = names
            .iter()
            .filter(|(l, _)| *l == levels[k - 1])
            .map(|(_, n)| n.clone())
            .collect();
    }
}

/// The log directory: the one directory every file-writing program writes to (the first, and
/// notes for the others), with the first rotation settings.
fn logs(c: &mut Conversion, programs: &[Converted]) {
    let mut log: Option<Log> = None;
    for p in programs {
        for (e, dir) in &p.files {
            let file = p.file.clone();
            match &log {
                None => {
                    log = Some(Log {
                        dir: dir.clone(),
                        max: None,
                        keep: None,
                    });
                }
                Some(l) if l.dir != *dir => {
                    c.notes.push(Note {
                        file,
                        line: Some(e.line),
                        key: format!("program:{} {}", p.program.name, e.key),
                        why: format!(
                            "supervise writes every program's output files in one directory, here {}",
                            l.dir
                        ),
                        kind: NoteKind::Unmapped,
                    });
                    continue;
                }
                Some(_) => {}
            }
            let stream = if e.key.starts_with("stdout") {
                "stdout"
            } else {
                "stderr"
            };
            c.notes.push(Note {
                file,
                line: Some(e.line),
                key: format!("program:{} {}", p.program.name, e.key),
                why: format!(
                    "written as {dir}/{}.INSTANCE.{stream}.log ([log] dir), not {}",
                    p.program.name, e.value
                ),
                kind: NoteKind::Approximate,
            });
        }
    }
    for p in programs {
        for e in &p.rotation {
            let file = p.file.clone();
            let key = format!("program:{} {}", p.program.name, e.key);
            let mut unmapped = |why: String| {
                c.notes.push(Note {
                    file: file.clone(),
                    line: Some(e.line),
                    key: key.clone(),
                    why,
                    kind: NoteKind::Unmapped,
                });
            };
            let Some(l) = log.as_mut() else {
                // `maxbytes=0` beside `/dev/stdout` is what supervisord needs; it means nothing here.
                if e.value.trim() != "0" {
                    unmapped("no output file is written (no stdout_logfile names a file)".into());
                }
                continue;
            };
            if e.key.ends_with("maxbytes") {
                match size(&e.value) {
                    Some((0, _)) => unmapped(
                        "0 (never rotate) has no counterpart: log.max is at least 1KiB".into(),
                    ),
                    Some((b, _)) if b < 1024 => unmapped("log.max is at least 1KiB".into()),
                    Some((_, s)) => match &l.max {
                        None => l.max = Some(s),
                        Some(m) if *m == s => {}
                        Some(m) => unmapped(format!(
                            "supervise has one log.max for every program, here {m}"
                        )),
                    },
                    None => unmapped(format!("{:?} is not a size", e.value)),
                }
            } else {
                match e.value.trim().parse::<u32>() {
                    Ok(n) => match l.keep {
                        None => l.keep = Some(n),
                        Some(k) if k == n => {}
                        Some(k) => unmapped(format!(
                            "supervise has one log.keep for every program, here {k}"
                        )),
                    },
                    Err(_) => unmapped(format!("{:?} is not a number", e.value)),
                }
            }
        }
    }
    c.log = log;
}

/// One `[program:x]` section; `None` (with a note) when it has no command.
fn program(
    f: &File,
    s: &Section,
    raw_name: &str,
    group_of: &BTreeMap<String, String>,
    global_env: &[(String, String)],
    env: &dyn Fn(&str) -> Option<String>,
    notes: &mut Vec<Note>,
) -> Option<Converted> {
    let name = super::program_name(raw_name);
    let mut add = |line: Option<usize>, key: &str, why: String, kind| {
        notes.push(Note {
            file: f.path.clone(),
            line,
            key: format!("program:{raw_name} {key}"),
            why,
            kind,
        });
    };
    if name != raw_name {
        add(
            Some(s.line),
            "name",
            format!("named {name}: a program name is letters, digits, '-', '_' and '.'"),
            NoteKind::Approximate,
        );
    }
    let num = |key: &str, default: u32, add: &mut Add<'_>| match s.get(key) {
        None => default,
        Some(e) => match e.value.trim().parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                add(
                    Some(e.line),
                    key,
                    format!("{:?} is not a number; {default} used", e.value),
                    NoteKind::Unmapped,
                );
                default
            }
        },
    };
    let mut numprocs = num("numprocs", 1, &mut add);
    if numprocs == 0 {
        numprocs = 1;
    }
    let numprocs_start = num("numprocs_start", 0, &mut add);
    let cx = Cx {
        program: raw_name,
        group: group_of.get(raw_name).map_or(raw_name, String::as_str),
        here: f.here.clone(),
        numprocs,
        numprocs_start,
        env,
    };
    // The last value of each key, in the order keys first appear, expanded.
    let mut keys: Vec<&str> = Vec::new();
    for e in &s.entries {
        if !keys.contains(&e.key.as_str()) {
            keys.push(&e.key);
        }
    }
    let mut values: BTreeMap<&str, Entry> = BTreeMap::new();
    for k in &keys {
        let Some(e) = s.get(k) else { continue };
        let mut problems = Vec::new();
        let mut value = expand(&e.value, &cx, &mut problems);
        // Only these are templates in supervise's config.
        if !matches!(*k, "command" | "directory" | "environment") {
            value = unescape(&value);
        }
        if *k != "command" {
            value = value.replace(SPACE_IN_TEMPLATE, " ");
        }
        // process_name gets a note of its own.
        if *k != "process_name" {
            for (kind, why) in problems {
                add(Some(e.line), k, why, kind);
            }
        }
        values.insert(
            k,
            Entry {
                key: e.key.clone(),
                value,
                line: e.line,
            },
        );
    }
    let Some(command) = values.get("command") else {
        add(
            Some(s.line),
            "command",
            "missing: the program is left out".into(),
            NoteKind::Unmapped,
        );
        return None;
    };
    let command = match super::words::split(&command.value) {
        Ok(w) if !w.is_empty() => w
            .into_iter()
            .map(|w| w.replace(SPACE_IN_TEMPLATE, " "))
            .collect(),
        Ok(_) => {
            add(
                Some(command.line),
                "command",
                "empty: the program is left out".into(),
                NoteKind::Unmapped,
            );
            return None;
        }
        Err(m) => {
            add(
                Some(command.line),
                "command",
                format!("{m}: the program is left out"),
                NoteKind::Unmapped,
            );
            return None;
        }
    };
    let mut p = Program {
        name,
        command,
        replicas: numprocs,
        env: global_env.to_vec(),
        stop: Stop {
            mode: Some("main"),
            ..Stop::default()
        },
        // supervisord stays up when a program goes FATAL.
        essential: Some(false),
        ..Program::default()
    };
    let mut out = Converted {
        program: Program::default(),
        file: f.path.clone(),
        priority: 999,
        files: Vec::new(),
        rotation: Vec::new(),
    };
    for k in keys {
        let Some(e) = values.get(k) else { continue };
        let v = e.value.trim();
        let line = Some(e.line);
        let bad = |what: &str| format!("{v:?} is not {what}");
        match k {
            "command" | "numprocs" | "numprocs_start" | "killasgroup" => {}
            "process_name" => {
                if v != "%(program_name)s" {
                    add(line, k, format!("supervise names the instances {}[0] … [{}] (SUPERVISE_NAME and SUPERVISE_INSTANCE tell each which it is), not {v}", p.name, numprocs - 1), NoteKind::Approximate);
                }
            }
            "priority" => match v.parse::<i64>() {
                Ok(n) => out.priority = n,
                Err(_) => add(line, k, bad("a number"), NoteKind::Unmapped),
            },
            "autorestart" => match v.to_ascii_lowercase().as_str() {
                "unexpected" => {}
                _ => match boolean(v) {
                    Some(true) => p.restart = Some("always"),
                    Some(false) => p.restart = Some("never"),
                    None => add(line, k, bad("true, false or unexpected"), NoteKind::Unmapped),
                },
            },
            "startretries" => match v.parse::<u32>() {
                Ok(n) => {
                    p.intensity_max = Some(n);
                    add(line, k, format!("supervisord gives up after {n} failed starts in a row (before startsecs); supervise after more than {n} restarts within intensity.within (60s), whenever they happen"), NoteKind::Approximate);
                }
                Err(_) => add(line, k, bad("a number"), NoteKind::Unmapped),
            },
            "exitcodes" => {
                let codes: Vec<&str> = v.split(',').map(str::trim).collect();
                if codes != ["0"] {
                    add(line, k, "supervise takes only exit status 0 as success".into(), NoteKind::Unmapped);
                }
            }
            "stopsignal" => match crate::signals::Sig::parse(v) {
                Ok(_) => {
                    let up = v.to_ascii_uppercase();
                    p.stop.signal = Some(up.strip_prefix("SIG").unwrap_or(&up).to_owned());
                }
                Err(m) => add(line, k, m, NoteKind::Unmapped),
            },
            "stopwaitsecs" => match v.parse::<u64>() {
                Ok(n) => p.stop.grace = Some(format!("{n}s")),
                Err(_) => add(line, k, bad("a number of seconds"), NoteKind::Unmapped),
            },
            "stopasgroup" => match boolean(v) {
                Some(true) => p.stop.mode = None,
                Some(false) => {}
                None => add(line, k, bad("true or false"), NoteKind::Unmapped),
            },
            "user" => {
                if v.is_empty() {
                    add(line, k, "empty".into(), NoteKind::Unmapped);
                } else {
                    p.user = Some(v.to_owned());
                }
            }
            "redirect_stderr" => {
                if boolean(v) == Some(true) {
                    add(line, k, "supervise keeps stderr apart: its lines go to supervise's stderr and NAME.INSTANCE.stderr.log".into(), NoteKind::Unmapped);
                }
            }
            "stdout_logfile" | "stderr_logfile" => match dest(v) {
                Dest::Auto | Dest::Console => {}
                Dest::Nowhere => add(line, k, "supervise always forwards output to its stdout and stderr and keeps the last lines for `supervise logs`".into(), NoteKind::Unmapped),
                Dest::Syslog => add(line, k, "supervise does not write to syslog; its output goes to stderr (journald under systemd)".into(), NoteKind::Unmapped),
                Dest::File(path) => {
                    let dir = Path::new(&path).parent().map_or_else(
                        || ".".to_owned(),
                        |d| if d.as_os_str().is_empty() { ".".to_owned() } else { d.display().to_string() },
                    );
                    out.files.push((e.clone(), dir));
                }
            },
            "stdout_logfile_maxbytes" | "stderr_logfile_maxbytes" | "stdout_logfile_backups"
            | "stderr_logfile_backups" => out.rotation.push(e.clone()),
            "environment" => match env_pairs(v) {
                Ok(pairs) => p.env.extend(pairs),
                Err(m) => add(line, k, m, NoteKind::Unmapped),
            },
            "directory" => p.cwd = Some(v.to_owned()),
            "umask" => {
                if !v.is_empty() && v.len() <= 4 && v.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                    p.umask = Some(v.to_owned());
                } else {
                    add(line, k, bad("an octal umask"), NoteKind::Unmapped);
                }
            }
            k => {
                let why = program_why(k).unwrap_or("not a key supervisord knows");
                add(line, k, why.to_owned(), NoteKind::Unmapped);
            }
        }
    }
    // `*_maxbytes=0` for a stream that goes to the console is what supervisord needs there; it
    // means nothing here.
    let files = &out.files;
    out.rotation.retain(|e| {
        let stream = e.key.split('_').next().unwrap_or("");
        e.value.trim() != "0" || files.iter().any(|(f, _)| f.key.starts_with(stream))
    });
    // A later variable wins, as in the loader.
    let mut seen = std::collections::HashSet::new();
    let mut env_out: Vec<(String, String)> = Vec::new();
    for (k, v) in p.env.into_iter().rev() {
        if seen.insert(k.clone()) {
            env_out.push((k, v));
        }
    }
    env_out.reverse();
    p.env = env_out;
    out.program = p;
    Some(out)
}

#[cfg(test)]
#[path = "supervisord/tests.rs"]
mod tests;
