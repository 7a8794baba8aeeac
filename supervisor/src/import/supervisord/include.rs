//! `[include]`: the files a config names, read depth first, globs relative to the including
//! file, loops and runaway nesting refused.

use std::path::{Path, PathBuf};

use crate::import::ini::{self, Entry, Section};
use crate::import::{ImportError, Note, NoteKind};

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
    /// What tells it from other files: its canonical path where it exists, else its path with
    /// `.` and `..` resolved.
    pub id: PathBuf,
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
        let text = crate::import::read(&p)?;
        out.push((p, text));
        if out.len() > MAX_FILES {
            return Err(bad(format!("matches more than {MAX_FILES} files")));
        }
    }
    Ok(out)
}

/// Parses one file and, depth first, those it includes.
pub(super) fn load(
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
        id: identity(path),
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
                let id = identity(&p);
                if files.iter().any(|f| f.id == id) {
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

/// What tells a file from others: its canonical path where it exists, else its path with `.` and
/// `..` resolved.
fn identity(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| normal(p))
}

/// Whether two paths name one file: the same canonical path where both exist, else the same
/// text with `.` and `..` resolved.
fn same(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => normal(a) == normal(b),
    }
}

pub(super) fn normal(p: &Path) -> PathBuf {
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
