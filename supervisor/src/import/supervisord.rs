//! supervisord's INI config to supervise's programs: `[program:x]` sections (with `numprocs`,
//! the `%(…)s` expansions and `environment=`), `[include]` (globs, relative to the including
//! file), `[group:x]` and `[supervisord]`, the rest as notes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ini::{self, Entry, Section};
use super::{Conversion, ImportError, Log, Note, NoteKind, Program, Stop};

/// Includes nested deeper than this are refused (supervisord has no bound; a loop is refused
/// before it).
const MAX_DEPTH: usize = 16;
/// More files than this in one import are refused.
const MAX_FILES: usize = 1000;

/// One file's sections, its path as read (so `%(here)s` is its directory).
#[derive(Debug, Clone)]
pub struct File {
    pub path: PathBuf,
    /// Its directory, absolute: what `%(here)s` expands to.
    pub here: String,
    pub sections: Vec<Section>,
}

/// What a glob pattern names: the files (in order) and their text. `Ok(empty)` when it matches
/// nothing.
pub type ReadFiles = dyn Fn(&Path) -> Result<Vec<(PathBuf, String)>, ImportError>;

/// The filesystem [`ReadFiles`]: the pattern's matches in sorted order, each read with a bound.
pub fn read_files(pattern: &Path) -> Result<Vec<(PathBuf, String)>, ImportError> {
    let bad = |message: String| ImportError {
        file: pattern.to_owned(),
        line: None,
        message,
    };
    let text = pattern
        .to_str()
        .ok_or_else(|| bad("the include pattern is not UTF-8".into()))?;
    let paths = glob::glob(text).map_err(|e| bad(format!("bad include pattern: {e}")))?;
    let mut out = Vec::new();
    for p in paths {
        let p = p.map_err(|e| bad(e.to_string()))?;
        if p.is_dir() {
            continue;
        }
        let text = super::read(&p)?;
        out.push((p, text));
        if out.len() > MAX_FILES {
            return Err(bad(format!("matches more than {MAX_FILES} files")));
        }
    }
    Ok(out)
}

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

/// Parses one file and, depth first, those it includes.
fn load(
    path: &Path,
    text: &str,
    read: &ReadFiles,
    stack: &mut Vec<PathBuf>,
    files: &mut Vec<File>,
    notes: &mut Vec<Note>,
) -> Result<(), ImportError> {
    let sections = ini::parse(text).map_err(|(line, message)| ImportError {
        file: path.to_owned(),
        line: Some(line),
        message,
    })?;
    if stack.len() >= MAX_DEPTH {
        return Err(ImportError {
            file: path.to_owned(),
            line: None,
            message: format!("includes nested more than {MAX_DEPTH} deep"),
        });
    }
    if files.len() >= MAX_FILES {
        return Err(ImportError {
            file: path.to_owned(),
            line: None,
            message: format!("more than {MAX_FILES} files included"),
        });
    }
    stack.push(path.to_owned());
    let here = path.parent().unwrap_or(Path::new(".")).to_owned();
    let abs_here = std::path::absolute(&here)
        .unwrap_or_else(|_| here.clone())
        .display()
        .to_string();
    let includes: Vec<Entry> = sections
        .iter()
        .filter(|s| s.name == "include")
        .filter_map(|s| s.get("files").cloned())
        .collect();
    files.push(File {
        path: path.to_owned(),
        here: abs_here.clone(),
        sections,
    });
    for entry in includes {
        let value = entry.value.replace("%(here)s", &abs_here);
        for pattern in value.split_whitespace() {
            let full = here.join(pattern);
            let found = read(&full)?;
            if found.is_empty() {
                notes.push(Note {
                    file: path.to_owned(),
                    line: Some(entry.line),
                    key: "include files".into(),
                    why: format!("{} matches no file here", full.display()),
                    kind: NoteKind::Unmapped,
                });
            }
            for (p, text) in found {
                let p = normal(&p);
                if let Some(i) = stack.iter().position(|s| same(s, &p)) {
                    let chain: Vec<String> = stack[i..]
                        .iter()
                        .chain(std::iter::once(&p))
                        .map(|s| s.display().to_string())
                        .collect();
                    return Err(ImportError {
                        file: path.to_owned(),
                        line: Some(entry.line),
                        message: format!("an include loop: {}", chain.join(" includes ")),
                    });
                }
                if files.iter().any(|f| same(&f.path, &p)) {
                    notes.push(Note {
                        file: path.to_owned(),
                        line: Some(entry.line),
                        key: "include files".into(),
                        why: format!("{} is included a second time; read once", p.display()),
                        kind: NoteKind::Approximate,
                    });
                    continue;
                }
                load(&p, &text, read, stack, files, notes)?;
            }
        }
    }
    stack.pop();
    Ok(())
}

/// Whether two paths name one file: the same canonical path where both exist, else the same
/// text with `.` and `..` resolved.
fn same(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => normal(a) == normal(b),
    }
}

fn normal(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// What `%(…)s` expands against in one section.
struct Cx<'a> {
    program: &'a str,
    group: &'a str,
    here: String,
    numprocs: u32,
    numprocs_start: u32,
    env: &'a dyn Fn(&str) -> Option<String>,
}

/// Expands supervisord's `%(name)s` / `%(name)02d` forms in `v`; `problems` gets what could not
/// be expanded, or only approximately.
fn expand(v: &str, cx: &Cx<'_>, problems: &mut Vec<(NoteKind, String)>) -> String {
    let mut out = String::new();
    let mut rest = v;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('%') {
            out.push('%');
            rest = r;
            continue;
        }
        let Some(inner) = after.strip_prefix('(') else {
            out.push('%');
            rest = after;
            continue;
        };
        let Some(close) = inner.find(')') else {
            out.push('%');
            rest = after;
            continue;
        };
        let name = &inner[..close];
        let spec = &inner[close + 1..];
        // Flags, width, precision, then the conversion.
        let flags_len = spec
            .find(|c: char| !matches!(c, '#' | '0' | '-' | ' ' | '+'))
            .unwrap_or(spec.len());
        let digits = spec[flags_len..]
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .map_or(spec.len(), |d| d + flags_len);
        let Some(conv) = spec[digits..].chars().next() else {
            out.push('%');
            rest = after;
            continue;
        };
        let flags = &spec[..flags_len];
        let width: usize = spec[flags_len..digits]
            .split('.')
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or(0);
        rest = &spec[digits + conv.len_utf8()..];
        let pad = |s: String, zero: bool| {
            if s.len() >= width {
                s
            } else if flags.contains('-') {
                format!("{s:<width$}")
            } else if zero && flags.contains('0') {
                format!("{s:0>width$}")
            } else {
                format!("{s:>width$}")
            }
        };
        let numeric = matches!(conv, 'd' | 'i' | 'u');
        let value = match name {
            "process_num" if cx.numprocs > 1 => {
                if width > 1 {
                    problems.push((
                        NoteKind::Approximate,
                        format!(
                            "%({name}){}{conv} pads the number to {width} digits; {{instance}} does not",
                            &spec[..digits]
                        ),
                    ));
                }
                if cx.numprocs_start == 0 {
                    "{instance}".to_owned()
                } else {
                    format!("{{{} + instance}}", cx.numprocs_start)
                }
            }
            "process_num" => pad(cx.numprocs_start.to_string(), numeric),
            "numprocs" => pad(cx.numprocs.to_string(), numeric),
            "program_name" => pad(cx.program.to_owned(), false),
            "group_name" => pad(cx.group.to_owned(), false),
            "here" => pad(cx.here.clone(), false),
            "host_node_name" => pad(
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_owned())
                    .unwrap_or_default(),
                false,
            ),
            n if n.starts_with("ENV_") => match (cx.env)(&n[4..]) {
                Some(v) => {
                    problems.push((
                        NoteKind::Approximate,
                        format!(
                            "%({n})s is expanded with its value here and now; supervisord reads it when it starts"
                        ),
                    ));
                    pad(v, false)
                }
                None => {
                    problems.push((
                        NoteKind::Unmapped,
                        format!(
                            "%({n})s: {} is not set here (supervisord reads it from its environment when it starts); left empty",
                            &n[4..]
                        ),
                    ));
                    String::new()
                }
            },
            other => {
                problems.push((
                    NoteKind::Unmapped,
                    format!("%({other})s is not an expansion supervisord knows; left as written"),
                ));
                format!("%({other}){}{conv}", &spec[..digits])
            }
        };
        out.push_str(&value);
    }
    out.push_str(rest);
    out
}

/// supervisord's booleans.
fn boolean(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// supervisord's byte sizes (`50MB` is 50 × 1024²) as supervise writes them.
fn size(s: &str) -> Option<(u64, String)> {
    let t = s.trim().to_ascii_uppercase();
    let (num, unit, mult) = if let Some(n) = t.strip_suffix("KB") {
        (n, "KiB", 1u64 << 10)
    } else if let Some(n) = t.strip_suffix("MB") {
        (n, "MiB", 1 << 20)
    } else if let Some(n) = t.strip_suffix("GB") {
        (n, "GiB", 1 << 30)
    } else {
        (t.as_str(), "", 1)
    };
    let n: u64 = num.trim().parse().ok()?;
    Some((n.checked_mul(mult)?, format!("{n}{unit}")))
}

/// `KEY="value",KEY2=value2` (supervisord's `environment=`), commas inside quotes kept.
fn env_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    for c in s.chars() {
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                cur.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            (None, ',') => items.push(std::mem::take(&mut cur)),
            (_, c) => cur.push(c),
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed".into());
    }
    items.push(cur);
    let mut out = Vec::new();
    for item in items {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!("{item:?} is not KEY=VALUE"));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("{item:?} has no name"));
        }
        let v = v.trim();
        let v = match v.as_bytes() {
            [q @ (b'"' | b'\''), .., e] if q == e && v.len() >= 2 => &v[1..v.len() - 1],
            _ => v,
        };
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

/// Where a `stdout_logfile` sends output.
#[derive(Debug, PartialEq, Eq)]
enum Dest {
    Auto,
    Console,
    Nowhere,
    Syslog,
    File(String),
}

fn dest(v: &str) -> Dest {
    match v.trim() {
        "" | "AUTO" | "auto" => Dest::Auto,
        "/dev/stdout" | "/dev/stderr" | "/dev/fd/1" | "/dev/fd/2" | "/proc/self/fd/1"
        | "/proc/self/fd/2" => Dest::Console,
        "NONE" | "none" | "None" => Dest::Nowhere,
        "syslog" => Dest::Syslog,
        p => Dest::File(p.to_owned()),
    }
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
    let num =
        |key: &str, default: u32, add: &mut dyn FnMut(Option<usize>, &str, String, NoteKind)| {
            match s.get(key) {
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
            }
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
        let value = expand(&e.value, &cx, &mut problems);
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
        Ok(w) if !w.is_empty() => w,
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
