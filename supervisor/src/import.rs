//! `supervise import FILE…`: supervisord, PM2 and Procfile configs to a `supervise.toml`.
//!
//! Each format has a pure reader ([`supervisord`], [`pm2`], [`procfile`]) from the files' text
//! to [`Program`]s and [`Note`]s; [`render`] writes the programs as TOML with the keys the config
//! loader reads, and the notes say, with the file and the line, each source key that has no
//! counterpart (or only an approximate one) and why. Nothing is invented: a key supervise lacks
//! is a note, never a guess. Where the source varies a value per process (supervisord's
//! `%(process_num)d`, PM2's `increment_var`) the value is written with the per-instance syntax
//! `{instance}` or `{N + instance}`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub mod ini;
pub mod pm2;
pub mod procfile;
pub mod supervisord;
pub mod words;
pub mod yaml;

/// The largest file read: configs of this kind are a few KiB.
pub const MAX_FILE: u64 = 1 << 20;

/// One program as supervise's config says it; `None` or empty leaves supervise's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Program {
    pub name: String,
    pub command: Vec<String>,
    pub cwd: Option<String>,
    pub env: Vec<(String, String)>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub umask: Option<String>,
    pub replicas: u32,
    /// `always`, `on-failure` or `never`.
    pub restart: Option<&'static str>,
    pub after: Vec<String>,
    pub stop: Stop,
    pub intensity_max: Option<u32>,
    pub backoff: Option<Backoff>,
    /// A size as the loader reads it (`150MiB`).
    pub memory_max: Option<String>,
    /// `essential = …`: supervisord and PM2 stay up when a program gives up, so what comes
    /// from them says `false`; `None` leaves supervise's default (`true`).
    pub essential: Option<bool>,
}

/// `stop = { … }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stop {
    pub signal: Option<String>,
    /// A duration as the loader reads it (`30s`, `1600ms`).
    pub grace: Option<String>,
    /// `group` or `main`.
    pub mode: Option<&'static str>,
}

/// `backoff = { … }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    pub first: String,
    pub max: String,
    /// As written (`1.0`, `1.5`).
    pub factor: &'static str,
}

/// `[log]`: where worker output files go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Log {
    pub dir: String,
    pub max: Option<String>,
    pub keep: Option<u32>,
}

/// A source key that was not mapped, or mapped only approximately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// The key as the source names it (`program:web stopwaitsecs`, `apps[0].watch`).
    pub key: String,
    pub why: String,
    pub kind: NoteKind,
}

/// What a [`Note`] says about its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    /// Nothing in the output stands for it.
    Unmapped,
    /// Mapped, but supervise's meaning differs in a way the note says.
    Approximate,
}

/// What the files converted to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversion {
    pub programs: Vec<Program>,
    pub log: Option<Log>,
    pub notes: Vec<Note>,
    pub sources: Vec<PathBuf>,
}

/// Why a file could not be converted at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ImportError {}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        let what = match self.kind {
            NoteKind::Unmapped => "not mapped",
            NoteKind::Approximate => "mapped approximately",
        };
        write!(f, ": {}: {what}: {}", self.key, self.why)
    }
}

/// The kinds of file read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Supervisord,
    Pm2Json,
    Pm2Yaml,
    /// `ecosystem.config.js`: a module evaluated by `node`.
    Pm2Js,
    Procfile,
}

impl Format {
    /// The format of `path`, by its name, else by its first meaningful line: a `[section]`
    /// is supervisord's, `{` or `[` JSON, `NAME: command` lines a Procfile.
    #[must_use]
    pub fn of(path: &Path, text: &str) -> Option<Format> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if name.starts_with("procfile") {
            return Some(Format::Procfile);
        }
        let ext = |e: &str| name.ends_with(e);
        if ext(".conf") || ext(".ini") {
            return Some(Format::Supervisord);
        }
        if ext(".json") {
            return Some(Format::Pm2Json);
        }
        if ext(".yaml") || ext(".yml") {
            return Some(Format::Pm2Yaml);
        }
        if ext(".js") || ext(".cjs") || ext(".mjs") {
            return Some(Format::Pm2Js);
        }
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))?;
        if first.starts_with('[') && first.ends_with(']') {
            Some(Format::Supervisord)
        } else if first.starts_with('{') || first.starts_with('[') {
            Some(Format::Pm2Json)
        } else if first.starts_with("apps:") {
            Some(Format::Pm2Yaml)
        } else if first.split_once(':').is_some() {
            Some(Format::Procfile)
        } else {
            None
        }
    }
}

/// Reads `path` as text of at most [`MAX_FILE`] bytes, with a clear error.
pub fn read(path: &Path) -> Result<String, ImportError> {
    crate::plan::file::read_text(path, MAX_FILE).map_err(|e| ImportError {
        file: path.to_owned(),
        line: None,
        message: match e {
            crate::plan::file::ReadError::Io(e) => format!("cannot read: {e}"),
            e => format!("the file {e}"),
        },
    })
}

/// Converts every file, in order, into one config: the reading of files (and of `[include]`d
/// ones, and `node` for a `.js` ecosystem file) happens here; the mapping in each format's pure
/// functions. `env` answers supervisord's `%(ENV_X)s`.
pub fn import(
    paths: &[PathBuf],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Conversion, ImportError> {
    let mut out = Conversion::default();
    // supervisord's files are one config, as if each included the next.
    let mut ini = Vec::new();
    let mut others = Vec::new();
    for path in paths {
        let text = read(path)?;
        match Format::of(path, &text) {
            Some(Format::Supervisord) => ini.push((path.clone(), text)),
            format => others.push((path, text, format)),
        }
    }
    if !ini.is_empty() {
        let part = supervisord::import(&ini, &supervisord::read_files, env)?;
        merge(&mut out, part, &ini[0].0);
    }
    for (path, text, format) in others {
        let Some(format) = format else {
            return Err(ImportError {
                file: path.clone(),
                line: None,
                message: "not a supervisord, PM2 or Procfile config that this can tell (name it \
                          *.conf, *.json, *.yaml, *.config.js or Procfile)"
                    .into(),
            });
        };
        let part = match format {
            Format::Supervisord => continue,
            Format::Pm2Json => pm2::from_json(path, &text)?,
            Format::Pm2Yaml => pm2::from_yaml(path, &text)?,
            Format::Pm2Js => pm2::from_js(path)?,
            Format::Procfile => procfile::convert(path, &text),
        };
        merge(&mut out, part, path);
    }
    Ok(out)
}

/// `text` as a literal in a supervise template (`command`, `env`, `cwd`): braces doubled.
#[must_use]
pub fn escape(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

/// Adds `part` to `out`: a program name already taken gets a suffix (and a note).
fn merge(out: &mut Conversion, part: Conversion, path: &Path) {
    let mut taken: std::collections::HashSet<String> =
        out.programs.iter().map(|p| p.name.clone()).collect();
    for mut p in part.programs {
        if taken.contains(&p.name) {
            let mut n = 2;
            while taken.contains(&format!("{}-{n}", p.name)) {
                n += 1;
            }
            let new = format!("{}-{n}", p.name);
            out.notes.push(Note {
                file: path.to_owned(),
                line: None,
                key: p.name.clone(),
                why: format!("a program of this name came from an earlier file; this one is {new}"),
                kind: NoteKind::Approximate,
            });
            p.name = new;
        }
        taken.insert(p.name.clone());
        out.programs.push(p);
    }
    match (&out.log, part.log) {
        (None, Some(l)) => out.log = Some(l),
        (Some(a), Some(b)) if *a != b => out.notes.push(Note {
            file: path.to_owned(),
            line: None,
            key: "log".into(),
            why: format!(
                "this file's log directory {} differs from an earlier file's {}; supervise has one",
                b.dir, a.dir
            ),
            kind: NoteKind::Unmapped,
        }),
        _ => {}
    }
    out.notes.extend(part.notes);
    out.sources.extend(part.sources);
}

/// A valid program name from `raw` (1 to 64 of letters, digits, `-`, `_`, `.`, not starting with
/// `.`): other characters become `-`.
#[must_use]
pub fn program_name(raw: &str) -> String {
    let mut s: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if s.starts_with('.') {
        s.replace_range(0..1, "_");
    }
    if s.is_empty() {
        s.push_str("program");
    }
    s
}

/// A TOML string.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A TOML key: bare when it can be.
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        s.to_owned()
    } else {
        quote(s)
    }
}

/// The conversion as a `supervise.toml`.
#[must_use]
pub fn render(c: &Conversion) -> String {
    let mut s = String::new();
    let from: Vec<String> = c
        .sources
        .iter()
        .map(|p| p.display().to_string().replace('\n', " "))
        .collect();
    let _ = writeln!(
        s,
        "# Converted by `supervise import` from {}.",
        from.join(", ")
    );
    let _ = writeln!(
        s,
        "# What could not be mapped was listed on stderr; check it with `supervise -c FILE --check`."
    );
    if let Some(log) = &c.log {
        let _ = writeln!(s, "\n[log]\ndir = {}", quote(&log.dir));
        if let Some(max) = &log.max {
            let _ = writeln!(s, "max = {}", quote(max));
        }
        if let Some(keep) = log.keep {
            let _ = writeln!(s, "keep = {keep}");
        }
    }
    for p in &c.programs {
        let _ = writeln!(s, "\n[program.{}]", key(&p.name));
        let argv: Vec<String> = p.command.iter().map(|w| quote(w)).collect();
        let _ = writeln!(s, "command = [{}]", argv.join(", "));
        if let Some(cwd) = &p.cwd {
            let _ = writeln!(s, "cwd = {}", quote(cwd));
        }
        if !p.env.is_empty() {
            let vars: Vec<String> = p
                .env
                .iter()
                .map(|(k, v)| format!("{} = {}", key(k), quote(v)))
                .collect();
            let _ = writeln!(s, "env = {{ {} }}", vars.join(", "));
        }
        for (k, v) in [("user", &p.user), ("group", &p.group), ("umask", &p.umask)] {
            if let Some(v) = v {
                let _ = writeln!(s, "{k} = {}", quote(v));
            }
        }
        if p.replicas > 1 {
            let _ = writeln!(s, "replicas = {}", p.replicas);
        }
        if let Some(r) = p.restart {
            let _ = writeln!(s, "restart = {}", quote(r));
        }
        if !p.after.is_empty() {
            let names: Vec<String> = p.after.iter().map(|a| quote(a)).collect();
            let _ = writeln!(s, "after = [{}]", names.join(", "));
        }
        let mut stop = Vec::new();
        if let Some(sig) = &p.stop.signal {
            stop.push(format!("signal = {}", quote(sig)));
        }
        if let Some(g) = &p.stop.grace {
            stop.push(format!("grace = {}", quote(g)));
        }
        if let Some(m) = p.stop.mode {
            stop.push(format!("mode = {}", quote(m)));
        }
        if !stop.is_empty() {
            let _ = writeln!(s, "stop = {{ {} }}", stop.join(", "));
        }
        if let Some(max) = p.intensity_max {
            let _ = writeln!(s, "intensity = {{ max = {max} }}");
        }
        if let Some(b) = &p.backoff {
            let _ = writeln!(
                s,
                "backoff = {{ first = {}, max = {}, factor = {} }}",
                quote(&b.first),
                quote(&b.max),
                b.factor
            );
        }
        if let Some(m) = &p.memory_max {
            let _ = writeln!(s, "memory = {{ max = {} }}", quote(m));
        }
        if let Some(e) = p.essential {
            let _ = writeln!(s, "essential = {e}");
        }
    }
    s
}

/// Whether the program varies per instance: its command, env or cwd use `{instance}`.
#[must_use]
pub fn uses_instance(p: &Program) -> bool {
    let has = |s: &str| s.replace("{{", "").contains("instance}");
    p.command.iter().any(|w| has(w))
        || p.env.iter().any(|(_, v)| has(v))
        || p.cwd.as_deref().is_some_and(has)
}

#[cfg(test)]
mod tests;
