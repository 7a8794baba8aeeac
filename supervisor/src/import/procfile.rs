//! Procfiles (Heroku, foreman, honcho): `name: command` lines, each a program run by the shell,
//! with `PORT` as foreman gives it (5000, then 5100 for the next process type, …).

use std::path::Path;

use super::{Conversion, Note, NoteKind, Program};

/// foreman's first port, and the step between process types.
const BASE_PORT: u32 = 5000;
const PORT_STEP: u32 = 100;

/// Whether `command` reads the `PORT` variable.
fn reads_port(command: &str) -> bool {
    let b = command.as_bytes();
    command.match_indices("PORT").any(|(i, _)| {
        let after = b.get(i + 4).copied();
        let ends = !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_');
        let starts = command[..i].ends_with('$') || command[..i].ends_with("${");
        ends && starts
    })
}

/// Converts a Procfile's text.
#[must_use]
pub fn convert(path: &Path, text: &str) -> Conversion {
    let mut c = Conversion {
        sources: vec![path.to_owned()],
        ..Conversion::default()
    };
    let mut index = 0;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let mut note = |key: String, why: String, kind| {
            c.notes.push(Note {
                file: path.to_owned(),
                line: Some(n),
                key,
                why,
                kind,
            });
        };
        let Some((raw, command)) = t.split_once(':') else {
            note(
                t.chars().take(40).collect(),
                "not a `name: command` line".into(),
                NoteKind::Unmapped,
            );
            continue;
        };
        let raw = raw.trim();
        let command = command.trim();
        if raw.is_empty() {
            note(
                t.chars().take(40).collect(),
                "no process type before the `:`".into(),
                NoteKind::Unmapped,
            );
            continue;
        }
        if command.is_empty() {
            note(raw.into(), "no command".into(), NoteKind::Unmapped);
            continue;
        }
        if raw == "release" {
            note(
                raw.into(),
                "Heroku's release phase runs once per deploy, not as a service".into(),
                NoteKind::Unmapped,
            );
            continue;
        }
        let name = super::program_name(raw);
        if name != raw {
            note(
                raw.into(),
                format!("named {name}: a program name is letters, digits, '-', '_' and '.'"),
                NoteKind::Approximate,
            );
        }
        let mut p = Program {
            name,
            command: super::words::shell_argv(command)
                .iter()
                .map(|w| super::escape(w))
                .collect(),
            replicas: 1,
            ..Program::default()
        };
        if reads_port(command) {
            p.env
                .push(("PORT".into(), (BASE_PORT + PORT_STEP * index).to_string()));
        }
        index += 1;
        if c.programs.iter().any(|q| q.name == p.name) {
            note(
                raw.into(),
                "a second line of this name: left out".into(),
                NoteKind::Unmapped,
            );
            continue;
        }
        c.programs.push(p);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A program as (name, argv, env).
    type Row<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>);

    #[test]
    fn reads_a_procfile() {
        let text = "# comment\nweb: bundle exec puma -p $PORT\nworker:   bundle exec sidekiq -C config/sidekiq.yml\nrelease: rake db:migrate\n\nclock: ruby clock.rb && echo done\napi: node api.js --port ${PORT}\n";
        let c = convert(Path::new("Procfile"), text);
        let got: Vec<Row<'_>> = c
            .programs
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.command.iter().map(String::as_str).collect(),
                    p.env
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "web",
                    vec!["sh", "-c", "exec bundle exec puma -p $PORT"],
                    vec![("PORT", "5000")]
                ),
                (
                    "worker",
                    vec!["bundle", "exec", "sidekiq", "-C", "config/sidekiq.yml"],
                    vec![]
                ),
                (
                    "clock",
                    vec!["sh", "-c", "ruby clock.rb && echo done"],
                    vec![]
                ),
                (
                    "api",
                    vec!["sh", "-c", "exec node api.js --port ${{PORT}}"],
                    vec![("PORT", "5300")]
                ),
            ]
        );
        let notes: Vec<(Option<usize>, &str)> =
            c.notes.iter().map(|n| (n.line, n.key.as_str())).collect();
        assert_eq!(notes, [(Some(4), "release")]);
    }

    #[test]
    fn odd_lines_are_notes_not_panics() {
        let text = "no colon here\nweb:\n: nameless\nweb: a\nweb: b\nwe b!: c\n\u{0}: x\n";
        let c = convert(Path::new("Procfile"), text);
        let names: Vec<&str> = c.programs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["web", "we-b-", "-"]);
        let lines: Vec<Option<usize>> = c.notes.iter().map(|n| n.line).collect();
        assert_eq!(
            lines,
            [Some(1), Some(2), Some(3), Some(5), Some(6), Some(7)]
        );
    }

    #[test]
    fn port_reads() {
        for (cmd, want) in [
            ("x -p $PORT", true),
            ("x ${PORT}", true),
            ("x $PORTS", false),
            ("x $DB_PORT", false),
            ("x PORT", false),
        ] {
            assert_eq!(reads_port(cmd), want, "{cmd}");
        }
    }
}
