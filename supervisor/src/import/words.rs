//! Splitting a command line into words as POSIX `sh` quoting does (Python's `shlex.split`, which
//! supervisord uses), and telling a command that needs a shell from one that does not.

/// Splits `s` into words: blanks separate them; `'…'` keeps everything; `"…"` keeps everything
/// but `\"`, `\\`, `` \` `` and `\$`, which lose their backslash; outside quotes a backslash keeps
/// the next character. `Err` names an unclosed quote or a trailing backslash.
pub fn split(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("a single quote is not closed".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '`' | '$')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("a double quote is not closed".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("a double quote is not closed".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err("the command ends with a backslash".into()),
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Whether `s` means more to a shell than words: operators, redirections, substitutions,
/// variables, globs or a leading assignment. Such a command runs as `sh -c` to keep its meaning.
#[must_use]
pub fn needs_shell(s: &str) -> bool {
    let mut quote = None;
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('\''), _) => {}
            (_, '\\') => escaped = true,
            (Some('"'), '$' | '`') => return true,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '|' | '&' | ';' | '<' | '>' | '(' | ')' | '$' | '`' | '*' | '?' | '[' | '~') => {
                return true
            }
            (None, _) => {}
        }
    }
    // `FOO=1 cmd`: an assignment before the command.
    split(s)
        .ok()
        .and_then(|w| w.first().cloned())
        .is_some_and(|w| {
            w.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            })
        })
}

/// The argv that runs `s` as the shell would: its words when it needs no shell, else
/// `sh -c 'exec …'` for one simple command (so that signals reach the program, not a shell), or
/// `sh -c '…'` for a pipeline or a list.
#[must_use]
pub fn shell_argv(s: &str) -> Vec<String> {
    let s = s.trim();
    if !needs_shell(s) {
        if let Ok(w) = split(s) {
            if !w.is_empty() {
                return w;
            }
        }
    }
    let list = s.contains(['|', '&', ';', '(', ')', '\n', '<', '>', '`']);
    let script = if list || s.starts_with("exec ") {
        s.to_owned()
    } else {
        format!("exec {s}")
    };
    vec!["sh".into(), "-c".into(), script]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_as_shlex() {
        let table: &[(&str, &[&str])] = &[
            ("a b  c", &["a", "b", "c"]),
            ("  lead trail  ", &["lead", "trail"]),
            (
                r#"gunicorn -b "0.0.0.0:80" app:app"#,
                &["gunicorn", "-b", "0.0.0.0:80", "app:app"],
            ),
            (
                "sh -c 'echo $HOME && ls'",
                &["sh", "-c", "echo $HOME && ls"],
            ),
            (r#"echo "a \"q\" \n""#, &["echo", r#"a "q" \n"#]),
            (r"a\ b c", &["a b", "c"]),
            ("''", &[""]),
            ("x''y", &["xy"]),
            ("", &[]),
        ];
        for (input, want) in table {
            assert_eq!(split(input).expect("splits"), *want, "{input:?}");
        }
    }

    #[test]
    fn refuses_unclosed_quotes() {
        for input in ["'open", "\"open", "trail\\", "\"esc\\"] {
            assert!(split(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn tells_shell_syntax() {
        let table = [
            ("node server.js", false),
            ("bundle exec puma -C config/puma.rb", false),
            ("'quoted $x'", false),
            ("rails s -p $PORT", true),
            ("\"${PORT}\"", true),
            ("a && b", true),
            ("a | b", true),
            ("a > log", true),
            ("PORT=1 node x", true),
            ("ls *.txt", true),
            ("echo a\\;b", false),
        ];
        for (input, want) in table {
            assert_eq!(needs_shell(input), want, "{input:?}");
        }
    }

    #[test]
    fn argv_for_a_shell_line() {
        let table: &[(&str, &[&str])] = &[
            ("node server.js", &["node", "server.js"]),
            ("rails s -p $PORT", &["sh", "-c", "exec rails s -p $PORT"]),
            ("a && b", &["sh", "-c", "a && b"]),
            ("exec x $Y", &["sh", "-c", "exec x $Y"]),
        ];
        for (input, want) in table {
            assert_eq!(shell_argv(input), *want, "{input:?}");
        }
    }
}
