//! The manual cannot drift from the program: every example in README.md and docs/*.md is run
//! through the real config loader or the real command-line parser, docs/config.md's table names
//! every flag clap knows and every key the config accepts (and nothing else), and every relative
//! link points at a file and a heading that exist.
//!
//! Fences, by their info string:
//! - ```` ```toml ````: a whole config; it must load through `plan::load_config` (written to a
//!   temporary directory, with the env files it names created empty there).
//! - ```` ```toml cargo ````: a Cargo manifest fragment, not a config; it must be valid TOML.
//! - ```` ```sh ````: shell; every `supervise …` command in it (after `VAR=value` words, up to a
//!   redirection, pipe or `&&`) must parse with the real `Cli`. Parsing only: nothing runs.
//! - `bash`, `shell`, `console` fences are refused, so that no example escapes the check; a
//!   synopsis that is not a command goes in a `text` fence.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::{CommandFactory, FromArgMatches};
use supervisor::plan::{load_config, parse_config, Cli};

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the package is in the workspace")
        .to_owned()
}

/// README.md and every docs/*.md, as (path relative to the root, text).
fn manual() -> Vec<(String, String)> {
    let root = root();
    let mut files = vec!["README.md".to_owned()];
    let mut docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| {
            e.expect("a docs/ entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    assert!(
        docs.len() >= 5,
        "docs/ should hold the manual, found {docs:?}"
    );
    files.extend(docs);
    files
        .into_iter()
        .map(|f| {
            let text =
                std::fs::read_to_string(root.join(&f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            (f, text)
        })
        .collect()
}

/// A fenced block: where it starts (1-based line of its fence), its info string and its text.
struct Fence {
    line: usize,
    info: String,
    body: String,
}

fn fences(text: &str) -> Vec<Fence> {
    let mut out = Vec::new();
    let mut open: Option<Fence> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        match &mut open {
            None => {
                if let Some(info) = t.strip_prefix("```") {
                    open = Some(Fence {
                        line: i + 1,
                        info: info.trim().to_owned(),
                        body: String::new(),
                    });
                }
            }
            Some(f) => {
                if t.trim_end() == "```" {
                    out.extend(open.take());
                } else {
                    f.body.push_str(line);
                    f.body.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "a fence is never closed");
    out
}

#[test]
fn no_example_hides_in_an_unchecked_fence() {
    for (file, text) in manual() {
        for f in fences(&text) {
            let lang = f.info.split_whitespace().next().unwrap_or("");
            assert!(
                !["bash", "shell", "console", "shell-session", "zsh"].contains(&lang),
                "{file}:{}: a ```{lang} fence; use ```sh (checked) or ```text (a synopsis)",
                f.line
            );
            if lang == "toml" {
                let kind = f.info.split_whitespace().nth(1);
                assert!(
                    kind.is_none() || kind == Some("cargo"),
                    "{file}:{}: unknown toml fence kind {kind:?} (whole configs only, or `cargo`)",
                    f.line
                );
            }
        }
    }
}

/// Every config example loads as it is shown. Only what depends on this machine may fail: a user
/// or group it lacks, or a switch of user that only root may make.
#[test]
fn every_toml_example_loads() {
    let mut configs = 0;
    for (file, text) in manual() {
        for f in fences(&text) {
            let mut words = f.info.split_whitespace();
            if words.next() != Some("toml") {
                continue;
            }
            let at = format!("{file}:{}", f.line);
            if words.next() == Some("cargo") {
                toml::from_str::<toml::Value>(&f.body)
                    .unwrap_or_else(|e| panic!("{at}: not valid TOML: {e}"));
                continue;
            }
            configs += 1;
            let dir = tempfile::tempdir().expect("tempdir");
            let value: toml::Value =
                toml::from_str(&f.body).unwrap_or_else(|e| panic!("{at}: not valid TOML: {e}"));
            for program in value
                .get("program")
                .and_then(toml::Value::as_table)
                .into_iter()
                .flat_map(|t| t.values())
            {
                if let Some(env) = program.get("env_file").and_then(toml::Value::as_str) {
                    std::fs::write(dir.path().join(env), "").expect("env file");
                }
            }
            let path = dir.path().join("supervise.toml");
            std::fs::write(&path, &f.body).expect("write the example");
            match load_config(&path) {
                Ok(plan) => assert!(!plan.programs.is_empty(), "{at}: no program"),
                Err(e) => {
                    let identity = e.key.ends_with(".user") || e.key.ends_with(".group");
                    let machine = ["only root can", "no user named", "no group named"]
                        .iter()
                        .any(|w| e.message.to_lowercase().contains(w));
                    assert!(identity && machine, "{at}: the example does not load: {e}");
                }
            }
        }
    }
    assert!(configs >= 5, "only {configs} config examples found");
}

/// The words of one shell line, with quotes removed; `None` for a line this test cannot read.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            '#' if !in_word => break,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Whether a shell word is a variable assignment (`DEMO_SECONDS=30`) rather than a command.
fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The `supervise` commands of a shell block, each as its argv.
fn supervise_commands(body: &str) -> Vec<Vec<String>> {
    // Join continued lines first.
    let joined = body.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let words = shell_words(line);
        let mut command: Vec<String> = Vec::new();
        let mut flush = |command: &mut Vec<String>| {
            let start = command
                .iter()
                .position(|w| !is_assignment(w))
                .unwrap_or(command.len());
            if command.get(start).map(String::as_str) == Some("supervise") {
                out.push(command[start..].to_vec());
            }
            command.clear();
        };
        let mut redirected = false;
        for w in words {
            if ["&&", "||", ";", "|", "&"].contains(&w.as_str()) {
                flush(&mut command);
                redirected = false;
            } else if w.starts_with('>') || w.starts_with('<') || w.starts_with("2>") {
                redirected = true;
            } else if !redirected {
                command.push(w);
            }
        }
        flush(&mut command);
    }
    out
}

#[test]
fn shell_words_and_commands_are_read_as_a_shell_reads_them() {
    assert_eq!(
        shell_words(r#"supervise --x 'a b' "c \" d" e\ f  # comment"#),
        ["supervise", "--x", "a b", "c \" d", "e f"]
    );
    assert_eq!(
        supervise_commands(
            "A=1 supervise status --json | jq . && supervise restart api --wait\n\
             supervise completions zsh > \"${fpath[1]}/_supervise\"\n\
             cargo install --path supervisor\n\
             supervise top \\\n  --admin /run/s.sock\n"
        ),
        [
            vec!["supervise", "status", "--json"],
            vec!["supervise", "restart", "api", "--wait"],
            vec!["supervise", "completions", "zsh"],
            vec!["supervise", "top", "--admin", "/run/s.sock"],
        ]
    );
}

/// Every `supervise …` in a sh fence parses with the real command line (nothing is run).
#[test]
fn every_supervise_command_parses() {
    let mut seen = 0;
    for (file, text) in manual() {
        for f in fences(&text) {
            if f.info.split_whitespace().next() != Some("sh") {
                continue;
            }
            for argv in supervise_commands(&f.body) {
                seen += 1;
                let at = format!("{file}:{}: `{}`", f.line, argv.join(" "));
                let matches = Cli::command()
                    .try_get_matches_from(&argv)
                    .unwrap_or_else(|e| panic!("{at} does not parse:\n{e}"));
                Cli::from_arg_matches(&matches)
                    .unwrap_or_else(|e| panic!("{at} does not parse:\n{e}"));
            }
        }
    }
    assert!(seen >= 20, "only {seen} supervise commands found");
}

/// The rows of docs/config.md's tables whose header's first cell is `first`, as cells.
fn table_rows(text: &str, first: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if !line.starts_with('|') {
            inside = false;
            continue;
        }
        let cells: Vec<String> = split_cells(line);
        if cells.first().is_some_and(|c| c == first) && !inside {
            inside = true;
            continue;
        }
        if inside && !line.starts_with("|---") {
            rows.push(cells);
        }
    }
    rows
}

/// A table row's cells; `\|` is a pipe inside a cell.
fn split_cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut cell).trim().to_owned()),
            c => cell.push(c),
        }
    }
    cells.push(cell.trim().to_owned());
    cells
}

/// The spans between backticks.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// The long flags (`--name`) written in a cell.
fn long_flags(cell: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for span in code_spans(cell) {
        for word in span.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']') {
            let name: String = word
                .strip_prefix("--")
                .unwrap_or("")
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn longs_of(cmd: &clap::Command) -> BTreeSet<String> {
    cmd.get_arguments()
        .filter_map(clap::Arg::get_long)
        .map(str::to_owned)
        .collect()
}

fn config_md() -> String {
    std::fs::read_to_string(root().join("docs/config.md")).expect("docs/config.md")
}

/// docs/config.md's flag table holds every flag of `supervise` (the run mode), and its commands
/// table every subcommand with each of its flags; neither names a flag that does not exist.
#[test]
fn config_md_documents_every_flag_and_no_other() {
    let text = config_md();
    let cli = Cli::command();
    let rows = table_rows(&text, "flag");
    assert!(rows.len() > 40, "the flag table has {} rows", rows.len());
    let documented: BTreeSet<String> = rows.iter().flat_map(|r| long_flags(&r[0])).collect();
    let known = longs_of(&cli);
    let missing: Vec<_> = known.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&known).collect();
    assert!(
        missing.is_empty(),
        "flags missing from docs/config.md: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "docs/config.md documents flags that do not exist: {unknown:?}"
    );

    let mut per_command: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in table_rows(&text, "command") {
        let usage = code_spans(&row[0])
            .into_iter()
            .find(|s| s.starts_with("supervise "))
            .unwrap_or_else(|| panic!("a commands row without `supervise …`: {row:?}"));
        let name = usage
            .split_whitespace()
            .nth(1)
            .expect("a subcommand")
            .to_owned();
        per_command
            .entry(name)
            .or_default()
            .extend(long_flags(&row[0]));
    }
    let global = longs_of(&cli)
        .into_iter()
        .filter(|l| {
            cli.get_arguments()
                .any(|a| a.get_long() == Some(l) && a.is_global_set())
        })
        .collect::<BTreeSet<_>>();
    for sub in cli.get_subcommands() {
        let name = sub.get_name();
        let documented = per_command.remove(name).unwrap_or_else(|| {
            panic!("`supervise {name}` is missing from docs/config.md's commands table")
        });
        let known = longs_of(sub);
        let missing: Vec<_> = known.difference(&documented).collect();
        let unknown: Vec<_> = documented
            .difference(&known)
            .filter(|l| !global.contains(*l))
            .collect();
        assert!(
            missing.is_empty(),
            "`supervise {name}` flags missing: {missing:?}"
        );
        assert!(
            unknown.is_empty(),
            "`supervise {name}` has no flags {unknown:?}"
        );
    }
    assert!(
        per_command.is_empty(),
        "docs/config.md documents commands that do not exist: {:?}",
        per_command.keys()
    );
}

/// A key no config will ever accept, to make the loader say which keys a table takes.
const PROBE: &str = "zz_not_a_key";

/// TOML that puts `{ PROBE = 0 }` at `path` (`NAME` is any name of a map of tables, `[]` an
/// element of an array of tables), or `PROBE = 0` at the top for an empty path.
fn probe_at(path: &[String]) -> String {
    let mut value = format!("{{ {PROBE} = 0 }}");
    let Some((first, rest)) = path.split_first() else {
        return format!("{PROBE} = 0\n");
    };
    for seg in rest.iter().rev() {
        value = match seg.as_str() {
            "[]" => format!("[{value}]"),
            "NAME" => format!("{{ x = {value} }}"),
            key => format!("{{ {key} = {value} }}"),
        };
    }
    format!("{first} = {value}\n")
}

/// The keys the table at `path` accepts, from the loader's own "unknown field" error, or `None`
/// when `path` is not a table of known keys.
fn accepted_keys(path: &[String]) -> Option<Vec<String>> {
    let e = parse_config(&probe_at(path), None).err()?;
    let rest = e
        .message
        .strip_prefix(&format!("unknown field `{PROBE}`, "))?;
    Some(code_spans(rest).into_iter().map(str::to_owned).collect())
}

/// Every key the config file accepts, as dotted paths (`program.NAME.memory.max`), found by
/// asking the loader itself: tables of known keys are entered, the rest are leaves.
fn config_keys() -> BTreeSet<String> {
    let mut leaves = BTreeSet::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(table) = todo.pop() {
        let keys = accepted_keys(&table)
            .unwrap_or_else(|| panic!("{table:?} should be a table: {}", probe_at(&table)));
        assert!(!keys.is_empty(), "{table:?} takes no key");
        for key in keys {
            let mut path = table.clone();
            path.push(key);
            let mut entered = false;
            for inner in [None, Some("NAME"), Some("[]")] {
                let mut p = path.clone();
                p.extend(inner.map(str::to_owned));
                if accepted_keys(&p).is_some() {
                    todo.push(p);
                    entered = true;
                    break;
                }
            }
            if !entered {
                leaves.insert(
                    path.iter()
                        .filter(|s| *s != "[]")
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("."),
                );
            }
        }
    }
    leaves
}

#[test]
fn the_key_walk_finds_nested_tables() {
    let keys = config_keys();
    for k in [
        "events",
        "sample.every",
        "program.NAME.command",
        "program.NAME.memory.for",
        "program.NAME.ready.listen",
        "watch.dir.path",
        "alert.alertmanager",
    ] {
        assert!(keys.contains(k), "{k} not found in {keys:?}");
    }
    assert!(!keys.iter().any(|k| k.contains(PROBE)));
}

/// docs/config.md's table names every key the config accepts, and only those.
#[test]
fn config_md_documents_every_key_and_no_other() {
    let text = config_md();
    let is_key = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|seg| {
                seg == "NAME"
                    || (!seg.is_empty()
                        && seg
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            })
    };
    let documented: BTreeSet<String> = table_rows(&text, "flag")
        .iter()
        .filter_map(|r| r.get(1))
        .flat_map(|cell| {
            code_spans(cell)
                .into_iter()
                .filter(|s| is_key(s))
                .map(str::to_owned)
        })
        .collect();
    let known = config_keys();
    let missing: Vec<_> = known.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&known).collect();
    assert!(
        missing.is_empty(),
        "keys missing from docs/config.md: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "docs/config.md documents keys that do not exist: {unknown:?}"
    );
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a markdown file's headings (outside fences), with GitHub's `-1`, `-2` for
/// repeated ones.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let n = counts.entry(base.clone()).or_default();
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// The targets of the inline links `[text](target)` of a markdown text, outside fences.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn slugs_are_github_s() {
    assert_eq!(slug("Network, disk and alerts"), "network-disk-and-alerts");
    assert_eq!(
        slug("`--wait` and the control socket"),
        "--wait-and-the-control-socket"
    );
    let a = anchors("# A\n## Events\n```\n# not\n```\n### Events\n");
    assert_eq!(
        a,
        BTreeSet::from(["a".to_owned(), "events".to_owned(), "events-1".to_owned()])
    );
}

/// Pages of the manual that other work brings, linked from the README's map before they land.
/// A link to one is not broken while it is missing; remove it from here once it is in.
const PENDING: &[&str] = &[];

/// Every relative link of the manual, the README, the SDK's README and contrib/ points at a file
/// that exists, and at a heading of it that exists.
#[test]
fn every_relative_link_resolves() {
    let root = root();
    let mut files: Vec<(String, String)> = manual();
    let sdk = "child-sdk/README.md";
    let text = std::fs::read_to_string(root.join(sdk)).expect("child-sdk/README.md");
    files.push((sdk.to_owned(), text));
    let mut broken = Vec::new();
    for (file, text) in &files {
        let dir = Path::new(file).parent().unwrap_or(Path::new(""));
        for target in link_targets(text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                root.join(file)
            } else {
                root.join(dir).join(path)
            };
            if !resolved.exists() && !PENDING.iter().any(|p| resolved == root.join(p)) {
                broken.push(format!("{file}: {target} (no such file)"));
                continue;
            }
            if let Some(anchor) = anchor {
                let body = std::fs::read_to_string(&resolved).unwrap_or_default();
                if !anchors(&body).contains(anchor) {
                    broken.push(format!("{file}: {target} (no such heading)"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
