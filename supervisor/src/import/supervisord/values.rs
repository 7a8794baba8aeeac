//! supervisord's values: the `%(…)s` expansions, booleans, sizes, `environment=` pairs and log
//! destinations.

use crate::import::NoteKind;

/// What `%(…)s` expands against in one section.
pub(super) struct Cx<'a> {
    pub(super) program: &'a str,
    pub(super) group: &'a str,
    pub(super) here: String,
    pub(super) numprocs: u32,
    pub(super) numprocs_start: u32,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
}

/// Expands supervisord's `%(name)s` / `%(name)02d` forms in `v`; `problems` gets what could not
/// be expanded, or only approximately.
/// Stands for a space inside `{N + instance}` until the command is split into words, which must
/// not split the template (a control character that a config's text does not hold).
pub(super) const SPACE_IN_TEMPLATE: char = '\u{1}';

/// `text` as a literal in a supervise template: braces doubled.
pub(super) fn escape(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

/// A literal from [`expand`] back to its text, for keys that are not templates.
pub(super) fn unescape(text: &str) -> String {
    text.replace("{{", "{").replace("}}", "}")
}

/// Expands supervisord's forms; literal braces come out doubled, as supervise's templates
/// (`command`, `env`, `cwd`) read them: [`unescape`] for other keys.
pub(super) fn expand(v: &str, cx: &Cx<'_>, problems: &mut Vec<(NoteKind, String)>) -> String {
    let mut out = String::new();
    let mut rest = v;
    while let Some(i) = rest.find('%') {
        out.push_str(&escape(&rest[..i]));
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
                    // Its spaces are SPACE_IN_TEMPLATE until the command is split into words.
                    format!(
                        "{{{}{SPACE_IN_TEMPLATE}+{SPACE_IN_TEMPLATE}instance}}",
                        cx.numprocs_start
                    )
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
        // The per-instance value is a template; every other text is literal.
        if name == "process_num" && cx.numprocs > 1 {
            out.push_str(&value);
        } else {
            out.push_str(&escape(&value));
        }
    }
    out.push_str(&escape(rest));
    out
}

/// supervisord's booleans.
pub(super) fn boolean(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// supervisord's byte sizes (`50MB` is 50 × 1024²) as supervise writes them.
pub(super) fn size(s: &str) -> Option<(u64, String)> {
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
pub(super) fn env_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
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
pub(super) enum Dest {
    Auto,
    Console,
    Nowhere,
    Syslog,
    File(String),
}

pub(super) fn dest(v: &str) -> Dest {
    match v.trim() {
        "" | "AUTO" | "auto" => Dest::Auto,
        "/dev/stdout" | "/dev/stderr" | "/dev/fd/1" | "/dev/fd/2" | "/proc/self/fd/1"
        | "/proc/self/fd/2" => Dest::Console,
        "NONE" | "none" | "None" => Dest::Nowhere,
        "syslog" => Dest::Syslog,
        p => Dest::File(p.to_owned()),
    }
}
