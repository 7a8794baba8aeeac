//! Where in the config text an error belongs. Serde reports spans for values only; the lines of
//! map keys and tables are looked for in the text, and only once there is an error to report.

pub(super) fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line where `[program.NAME]` (or a `program.NAME.…` key) first appears, for errors about a
/// program as a whole. Serde reports no span for a map key, so look for the name in the text.
pub(super) fn program_line(src: &str, name: &str) -> Option<usize> {
    let quoted = format!("program.\"{name}\"");
    let bare = format!("program.{name}");
    src.lines()
        .position(|l| {
            let l = l.trim_start().trim_start_matches('[').trim_start();
            l.starts_with(&quoted)
                || l.strip_prefix(&bare)
                    .is_some_and(|rest| rest.starts_with([']', '.', ' ', '=']))
        })
        .map(|i| i + 1)
}

/// The line of `key` of program `name`: `key = …` inside `[program.NAME]`, or the table
/// `[program.NAME.key]`; else the program's own line.
pub(super) fn program_key_line(src: &str, name: &str, key: &str) -> Option<usize> {
    let table = format!("program.{name}");
    let sub = format!("program.{name}.{key}");
    let mut inside = false;
    for (i, l) in src.lines().enumerate() {
        let t = l.trim();
        if let Some(header) = t.strip_prefix('[') {
            let header = header.trim_start_matches('[').trim_end_matches(']').trim();
            if header == sub {
                return Some(i + 1);
            }
            inside = header == table;
            continue;
        }
        if inside
            && t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(['=', '.']))
        {
            return Some(i + 1);
        }
    }
    program_line(src, name)
}

/// The line of a top-level `key = …` (before the first table), for errors about it.
pub(super) fn top_key_line(src: &str, key: &str) -> Option<usize> {
    src.lines()
        .take_while(|l| !l.trim_start().starts_with('['))
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// The line of the `nth` (from 0) section headed `[name]` or `[[name]]`, for errors about
/// its values.
pub(super) fn section_line(src: &str, name: &str, nth: usize) -> Option<usize> {
    src.lines()
        .enumerate()
        .filter(|(_, l)| l.trim().trim_matches(['[', ']']).trim() == name)
        .nth(nth)
        .map(|(i, _)| i + 1)
}

/// `key.sub`, or `key` for an error about the table as a whole.
pub(super) fn sub_key(key: &str, sub: &str) -> String {
    if sub.is_empty() {
        key.to_owned()
    } else {
        format!("{key}.{sub}")
    }
}
