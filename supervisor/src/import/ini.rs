//! The INI dialect supervisord reads (Python's `RawConfigParser` with `;` and `#` inline
//! comments): `[section]` headers, `key = value` or `key: value`, keys lowercased, full-line
//! comments starting with `;` or `#`, inline comments after whitespace, and indented lines that
//! continue the value before them. Written by hand because it keeps every key's line, which the
//! notes need, and no kept crate reads continuation lines.

/// One `[section]` and its keys, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub line: usize,
    pub entries: Vec<Entry>,
}

/// `key = value`, at its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

impl Section {
    /// The last value of `key` and its line (a later one wins, as in `RawConfigParser`).
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().rev().find(|e| e.key == key)
    }
}

/// Strips an inline comment: `;` or `#` after whitespace.
fn strip_comment(line: &str) -> &str {
    let b = line.as_bytes();
    for i in 1..b.len() {
        if matches!(b[i], b';' | b'#') && b[i - 1].is_ascii_whitespace() {
            return &line[..i];
        }
    }
    line
}

/// Parses `text`. `Err((line, message))` for a key outside any section or a line that is
/// neither a header, a key nor a continuation.
pub fn parse(text: &str) -> Result<Vec<Section>, (usize, String)> {
    let mut sections: Vec<Section> = Vec::new();
    // Whether the line before was a key (or its continuation): then an indented line continues it.
    let mut open = false;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            continue;
        }
        if trimmed.starts_with(';') || trimmed.starts_with('#') {
            continue;
        }
        let line = strip_comment(raw);
        let indented = raw.starts_with([' ', '\t']);
        if indented && open {
            if let Some(e) = sections.last_mut().and_then(|s| s.entries.last_mut()) {
                let more = line.trim();
                if !more.is_empty() {
                    if !e.value.is_empty() {
                        e.value.push('\n');
                    }
                    e.value.push_str(more);
                }
                continue;
            }
        }
        let t = line.trim();
        if let Some(rest) = t.strip_prefix('[') {
            let Some(end) = rest.rfind(']') else {
                return Err((n, format!("a section header without its `]`: {t:?}")));
            };
            let name = rest[..end].trim();
            if name.is_empty() {
                return Err((n, "an empty section name".into()));
            }
            sections.push(Section {
                name: name.to_owned(),
                line: n,
                entries: Vec::new(),
            });
            open = false;
            continue;
        }
        let at = t.find(['=', ':']);
        let Some(at) = at.filter(|&a| a > 0) else {
            return Err((
                n,
                format!("neither a [section], a key = value nor a continuation: {t:?}"),
            ));
        };
        let Some(section) = sections.last_mut() else {
            return Err((n, "a key before any [section]".into()));
        };
        section.entries.push(Entry {
            key: t[..at].trim().to_ascii_lowercase(),
            value: t[at + 1..].trim().to_owned(),
            line: n,
        });
        open = true;
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(s: &Section) -> Vec<(&str, &str, usize)> {
        s.entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str(), e.line))
            .collect()
    }

    #[test]
    fn reads_the_dialect() {
        let text = "; a comment\n[program:web]\nCommand = gunicorn app ; inline\n\
                    directory: /srv\nenvironment = A=\"1\",\n    B=\"2\"\n# c\nurl=http://x/#frag\n\n[group:g]\nprograms=web\n";
        let s = parse(text).expect("parses");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "program:web");
        assert_eq!(s[0].line, 2);
        assert_eq!(
            kv(&s[0]),
            [
                ("command", "gunicorn app", 3),
                ("directory", "/srv", 4),
                ("environment", "A=\"1\",\nB=\"2\"", 5),
                ("url", "http://x/#frag", 8),
            ]
        );
        assert_eq!(kv(&s[1]), [("programs", "web", 11)]);
    }

    #[test]
    fn errors_name_the_line() {
        let table = [
            ("key = before\n[s]\n", 1),
            ("[s]\njunk line\n", 2),
            ("[s\n", 1),
            ("[]\n", 1),
            ("[s]\n= v\n", 2),
        ];
        for (text, line) in table {
            assert_eq!(parse(text).map_err(|e| e.0), Err(line), "{text:?}");
        }
    }

    #[test]
    fn a_later_key_wins() {
        let s = parse("[s]\na=1\na=2\n").expect("parses");
        assert_eq!(s[0].get("a").map(|e| e.value.as_str()), Some("2"));
    }
}
