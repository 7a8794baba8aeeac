//! Rust source as tokens: identifiers, `::` and single punctuation, with comments, strings,
//! chars and numbers left out, each with its line.

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Colons,
    Punct(char),
}

#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    pub line: usize,
}

pub fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

pub fn tokens(src: &str) -> Vec<Token> {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Skips a quoted string whose opening quote is at `i`; returns the index after it.
    let skip_str = |mut i: usize, line: &mut usize| {
        i += 1;
        while i < c.len() && c[i] != '"' {
            if c[i] == '\\' {
                i += 1;
            }
            if at(i) == '\n' {
                *line += 1;
            }
            i += 1;
        }
        i + 1
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            loop {
                if i >= c.len() {
                    break;
                }
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_str(i, &mut line);
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                // An escaped char: '\n', '\'', '\u{…}'.
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                // A lifetime or a label.
                i += 1;
                while i < c.len() && is_ident_char(c[i]) {
                    i += 1;
                }
            }
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Token {
                tok: Tok::Colons,
                line,
            });
            i += 2;
        } else if ch.is_ascii_digit() {
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
        } else if is_ident_char(ch) {
            let start = i;
            while i < c.len() && is_ident_char(c[i]) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            if (word == "r" || word == "br") && (at(i) == '#' || at(i) == '"') {
                let mut hashes = 0;
                while at(i + hashes) == '#' {
                    hashes += 1;
                }
                if at(i + hashes) == '"' {
                    // A raw string: up to a quote followed by as many hashes.
                    i += hashes + 1;
                    while i < c.len() && !(c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#')) {
                        if c[i] == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                    i += hashes + 1;
                    continue;
                }
                // A raw identifier, r#name.
                i += 1;
                let start = i;
                while i < c.len() && is_ident_char(c[i]) {
                    i += 1;
                }
                let word: String = c[start..i].iter().collect();
                out.push(Token {
                    tok: Tok::Ident(word),
                    line,
                });
                continue;
            }
            if word == "b" && at(i) == '"' {
                i = skip_str(i, &mut line);
                continue;
            }
            out.push(Token {
                tok: Tok::Ident(word),
                line,
            });
        } else {
            out.push(Token {
                tok: Tok::Punct(ch),
                line,
            });
            i += 1;
        }
    }
    out
}

/// The attributes written before the item at `i` (past its visibility), each as its tokens
/// between `#[` and `]`.
pub fn attributes_before(toks: &[Token], i: usize) -> Vec<Vec<Tok>> {
    let mut j = i;
    if j > 0 && toks[j - 1].tok == Tok::Punct(')') {
        // `pub(crate)`, `pub(super)`, `pub(in path)`
        while j > 0 && toks[j - 1].tok != Tok::Punct('(') {
            j -= 1;
        }
        j = j.saturating_sub(1);
    }
    if j > 0 && ident(toks.get(j - 1)) == Some("pub") {
        j -= 1;
    }
    let mut attrs = Vec::new();
    while j >= 3 && toks[j - 1].tok == Tok::Punct(']') {
        let end = j - 1;
        let mut depth = 0;
        let mut k = end;
        loop {
            match toks[k].tok {
                Tok::Punct(']') => depth += 1,
                Tok::Punct('[') => depth -= 1,
                _ => {}
            }
            if depth == 0 || k == 0 {
                break;
            }
            k -= 1;
        }
        if k == 0 || toks[k - 1].tok != Tok::Punct('#') {
            break;
        }
        attrs.push(toks[k + 1..end].iter().map(|t| t.tok.clone()).collect());
        j = k - 1;
    }
    attrs
}

/// Whether one of `attrs` is `cfg(…)`, and whether one is `cfg(test)` exactly.
pub fn cfg_of(attrs: &[Vec<Tok>]) -> (bool, bool) {
    let word = |w: &str| Tok::Ident(w.to_owned());
    let any = attrs.iter().any(|a| a.first() == Some(&word("cfg")));
    let test = attrs
        .iter()
        .any(|a| *a == [word("cfg"), Tok::Punct('('), word("test"), Tok::Punct(')')]);
    (any, test)
}

pub fn ident(t: Option<&Token>) -> Option<&str> {
    match t.map(|t| &t.tok) {
        Some(Tok::Ident(s)) => Some(s),
        _ => None,
    }
}

pub fn is(t: Option<&Token>, want: &Tok) -> bool {
    t.is_some_and(|t| &t.tok == want)
}
