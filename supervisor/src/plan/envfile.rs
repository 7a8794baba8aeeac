//! `env_file`: variables for a worker in the dotenv format docker's `--env-file`, systemd's
//! `EnvironmentFile=` and the dotenv libraries share.
//!
//! ```text
//! # a comment, and blank lines, are skipped
//! PORT=8080
//! export RUST_LOG=info          # `export ` is allowed (so the file can be sourced); so is a
//! GREETING='hello $USER'        # comment after white space. Single quotes keep every byte;
//! MOTD="line one\nline \"two\"" # double quotes know \n \t \r \\ \" \$ and \`.
//! ```
//!
//! Nothing is expanded (`$USER` stays as written): a file read by supervise must mean the same
//! whatever supervise's own environment holds. A value spans one line.

use std::path::Path;

use super::file::MAX_ENV_FILE;

/// Reads and parses an env file: a regular file of at most [`MAX_ENV_FILE`] bytes (see
/// [`super::file`]: a FIFO or a device is refused, never waited on). `Err` is `PATH:LINE: what is
/// wrong`, or `PATH: why it cannot be read`.
pub fn load(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = super::file::read_text(path, MAX_ENV_FILE).map_err(|e| match e {
        super::file::ReadError::Io(e) => {
            format!("{}: cannot read the env file: {e}", path.display())
        }
        e => format!("{}: the env file {e}", path.display()),
    })?;
    parse(&text).map_err(|(line, m)| format!("{}:{line}: {m}", path.display()))
}

/// Parses env file text into (name, value) pairs in file order (a later one wins). `Err` is
/// (line, what is wrong).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let t = raw.trim_start_matches('\u{feff}').trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let t = t
            .strip_prefix("export")
            .filter(|rest| rest.starts_with([' ', '\t']))
            .map_or(t, str::trim_start);
        let Some((name, rest)) = t.split_once('=') else {
            return Err((line, format!("expected NAME=VALUE, got {t:?}")));
        };
        let name = name.trim_end();
        if !valid_name(name) {
            return Err((
                line,
                format!(
                    "invalid variable name {name:?}: use letters, digits and '_', not starting \
                     with a digit"
                ),
            ));
        }
        let value = value(rest.trim_start()).map_err(|m| (line, m))?;
        if value.contains('\0') {
            return Err((line, format!("the value of {name} holds a NUL byte")));
        }
        out.push((name.to_owned(), value));
    }
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The value after `=` (leading white space already gone).
fn value(v: &str) -> Result<String, String> {
    if let Some(body) = v.strip_prefix('\'') {
        let end = body
            .find('\'')
            .ok_or("unterminated single quote (a value spans one line)")?;
        after_quote(&body[end + 1..])?;
        return Ok(body[..end].to_owned());
    }
    if let Some(body) = v.strip_prefix('"') {
        let mut out = String::with_capacity(body.len());
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    after_quote(&body[i + 1..])?;
                    return Ok(out);
                }
                '\\' => match chars.next().map(|(_, e)| e) {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some(e @ ('\\' | '"' | '$' | '`')) => out.push(e),
                    // An escape with no meaning keeps its backslash, as the shell does.
                    Some(e) => {
                        out.push('\\');
                        out.push(e);
                    }
                    None => break,
                },
                c => out.push(c),
            }
        }
        return Err("unterminated double quote (a value spans one line)".into());
    }
    // Unquoted: up to a comment that follows white space.
    let end = v
        .char_indices()
        .find(|&(i, c)| c == '#' && i > 0 && v[..i].ends_with([' ', '\t']))
        .map_or(v.len(), |(i, _)| i);
    Ok(v[..end].trim_end().to_owned())
}

/// After a closing quote: nothing, or white space and a comment.
fn after_quote(rest: &str) -> Result<(), String> {
    let r = rest.trim_start();
    if r.is_empty() || r.starts_with('#') {
        Ok(())
    } else {
        Err(format!("unexpected {r:?} after the closing quote"))
    }
}

/// Later assignments of a name replace earlier ones, in place of the first.
pub(super) fn dedup_env(env: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(env.len());
    for (k, v) in env {
        match out.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn the_forms_it_takes() {
        let text = "\u{feff}# comment\n\n  PORT=8080\nexport RUST_LOG=info  # why\n\
                    EMPTY=\nSPACED = a b  \nHASH=a#b\n\
                    SINGLE='keep $HOME \\n \"as is\"' # c\n\
                    DOUBLE=\"l1\\nl2\\t\\\"q\\\" \\$x \\\\ \\z\"\nexported=1\nexport=2\n";
        assert_eq!(
            parse(text),
            Ok(pairs(&[
                ("PORT", "8080"),
                ("RUST_LOG", "info"),
                ("EMPTY", ""),
                ("SPACED", "a b"),
                ("HASH", "a#b"),
                ("SINGLE", "keep $HOME \\n \"as is\""),
                ("DOUBLE", "l1\nl2\t\"q\" $x \\ \\z"),
                ("exported", "1"),
                ("export", "2"),
            ]))
        );
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line, want) in [
            ("A=1\nnot a pair\n", 2, "expected NAME=VALUE"),
            ("1A=x\n", 1, "invalid variable name \"1A\""),
            ("A B=x\n", 1, "invalid variable name"),
            ("=x\n", 1, "invalid variable name"),
            ("\n\nA='open\n", 3, "unterminated single quote"),
            ("A=\"open\\\"\n", 1, "unterminated double quote"),
            ("A=\"x\" y\n", 1, "after the closing quote"),
            ("A=\"x\\\n", 1, "unterminated double quote"),
        ] {
            match parse(text) {
                Err((l, m)) => {
                    assert_eq!(l, line, "{text:?}: {m}");
                    assert!(m.contains(want), "{text:?}: {m}");
                }
                Ok(v) => panic!("{text:?} parsed as {v:?}"),
            }
        }
    }
}
