//! PM2 ecosystem files (`.json`, `.yaml`, or a `.config.js` module evaluated by `node`) to
//! supervise's programs. The mapping ([`convert`]) is a pure function of the file's value; a
//! key's line is found in the file's text.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Backoff, Conversion, ImportError, Log, Note, NoteKind, Program};

/// How long `node` may take to evaluate an ecosystem module.
const NODE_TIMEOUT: Duration = Duration::from_secs(20);

/// A `.json` ecosystem file.
pub fn from_json(path: &Path, text: &str) -> Result<Conversion, ImportError> {
    let v: Value = serde_json::from_str(text).map_err(|e| ImportError {
        file: path.to_owned(),
        line: Some(e.line()),
        message: format!("not JSON: {e}"),
    })?;
    Ok(convert(path, text, &v, cpus()))
}

/// A `.yaml` / `.yml` ecosystem file.
pub fn from_yaml(path: &Path, text: &str) -> Result<Conversion, ImportError> {
    let v = super::yaml::parse(text).map_err(|(line, m)| ImportError {
        file: path.to_owned(),
        line: Some(line),
        message: format!("not YAML: {m}"),
    })?;
    Ok(convert(path, text, &v, cpus()))
}

/// An `ecosystem.config.js`: `node` prints the module's exports as JSON.
pub fn from_js(path: &Path) -> Result<Conversion, ImportError> {
    let err = |message: String| ImportError {
        file: path.to_owned(),
        line: None,
        message,
    };
    let text = super::read(path)?;
    let abs = std::path::absolute(path).map_err(|e| err(format!("cannot resolve: {e}")))?;
    // A dynamic import reads CommonJS and ES modules alike; a CommonJS module's exports are its
    // namespace's `default`.
    let script = "const p = require('url').pathToFileURL(process.argv[1]).href;\
        import(p).then((m) => (m && m.default !== undefined ? m.default : m))\
        .then((m) => (typeof m === 'function' ? m() : m))\
        .then((m) => process.stdout.write(JSON.stringify(m)))\
        .catch((e) => { process.stderr.write(String((e && e.stack) || e)); process.exit(1); });";
    let mut child = match std::process::Command::new("node")
        .arg("-e")
        .arg(script)
        .arg(&abs)
        .current_dir(abs.parent().unwrap_or(Path::new("/")))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(err(
                "a .js ecosystem file is a program: it needs `node`, which is not installed here. \
                 Install Node.js, or print the file as JSON where it is (`node -p \"JSON.stringify(require('./ecosystem.config.js'))\" > ecosystem.json`) and import that"
                    .into(),
            ))
        }
        Err(e) => return Err(err(format!("cannot run node: {e}"))),
    };
    // Read both pipes on threads of their own, bounded, so a chatty module cannot block it.
    let bounded = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(r) = r {
                let _ = r.take(super::MAX_FILE).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = bounded(child.stdout.take().map(|s| Box::new(s) as _));
    let errs = bounded(child.stderr.take().map(|s| Box::new(s) as _));
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > NODE_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err(format!(
                    "node did not finish evaluating it within {}s",
                    NODE_TIMEOUT.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(err(format!("waiting for node: {e}"))),
        }
    };
    let out = out.join().unwrap_or_default();
    let errs = errs.join().unwrap_or_default();
    if !status.success() {
        let first = String::from_utf8_lossy(&errs);
        let first = first.lines().take(3).collect::<Vec<_>>().join(" / ");
        return Err(err(format!(
            "node could not evaluate it ({status}): {first}"
        )));
    }
    let v: Value = serde_json::from_slice(&out)
        .map_err(|e| err(format!("node printed something that is not JSON: {e}")))?;
    Ok(convert(path, &text, &v, cpus()))
}

/// The CPUs here, for `instances: "max"`.
fn cpus() -> u32 {
    std::thread::available_parallelism()
        .ok()
        .and_then(|n| u32::try_from(n.get()).ok())
        .unwrap_or(1)
}

/// Every key written in `text` (`key:`, `"key":`, `'key':`) and the 1-based lines it is on, in
/// one pass, so that finding a note's line costs a lookup, not a scan of the file.
fn key_index(text: &str) -> HashMap<&str, Vec<usize>> {
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '$' || c == '-';
    let mut index: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        for (colon, _) in line.match_indices(':') {
            let before = line[..colon].trim_end();
            let before = before.strip_suffix(['"', '\'']).unwrap_or(before);
            let start = before
                .char_indices()
                .rev()
                .take_while(|&(_, c)| word(c))
                .last()
                .map_or(before.len(), |(at, _)| at);
            let key = &before[start..];
            if !key.is_empty() {
                let lines = index.entry(key).or_default();
                if lines.last() != Some(&(i + 1)) {
                    lines.push(i + 1);
                }
            }
        }
    }
    index
}

/// The lines where `key` is written as a key.
fn key_lines<'a>(index: &'a HashMap<&str, Vec<usize>>, key: &str) -> &'a [usize] {
    index.get(key).map_or(&[], Vec::as_slice)
}

/// Where notes about one app point.
struct Lines<'a> {
    index: &'a HashMap<&'a str, Vec<usize>>,
    /// The app's first line, as far as the text tells.
    from: usize,
}

impl Lines<'_> {
    fn of(&self, key: &str) -> Option<usize> {
        // The lines are in order: the first at or after the app's.
        let lines = key_lines(self.index, key);
        lines
            .get(lines.partition_point(|&l| l < self.from))
            .or_else(|| lines.first())
            .copied()
    }
}

/// A value as an environment string.
fn env_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A list of words: a string (split as the shell would) or an array.
fn words(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => super::words::split(s),
        Value::Array(a) => Ok(a.iter().map(env_value).collect()),
        Value::Null => Ok(Vec::new()),
        other => Err(format!("{other} is neither a string nor a list")),
    }
}

/// A PM2 duration in milliseconds (a number, or a string of digits).
fn millis(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `max_memory_restart`: `150M`, `1G`, `500K` (powers of 1024, as PM2 reads them) or bytes.
fn memory(v: &Value) -> Option<String> {
    let s = env_value(v);
    let t = s.trim().to_ascii_uppercase();
    let (num, unit) = match t.chars().last()? {
        'K' => (&t[..t.len() - 1], "KiB"),
        'M' => (&t[..t.len() - 1], "MiB"),
        'G' => (&t[..t.len() - 1], "GiB"),
        _ => (t.as_str(), ""),
    };
    let n: u64 = num.trim().parse().ok().filter(|&n| n > 0)?;
    Some(format!("{n}{unit}"))
}

/// The interpreter PM2 picks for a script by its extension (`None`: runs it directly).
fn default_interpreter(script: &str) -> Option<&'static str> {
    let ext = Path::new(script).extension()?.to_str()?;
    Some(match ext {
        "js" | "mjs" | "cjs" => "node",
        "ts" => "ts-node",
        "py" => "python3",
        "sh" => "bash",
        "rb" => "ruby",
        "php" => "php",
        "pl" => "perl",
        "coffee" => "coffee",
        _ => return None,
    })
}

/// Why an app key has no counterpart.
fn why(key: &str) -> &'static str {
    match key {
        "watch" | "ignore_watch" | "watch_options" | "watch_delay" => {
            "supervise does not restart on file changes; `supervise restart NAME` (or a reload) after a deploy"
        }
        "min_uptime" => "supervise counts restarts within a window (intensity.within), not exits before an uptime",
        "cron_restart" => "supervise has no cron schedule; the nearest is recycle.every, a period",
        "wait_ready" | "listen_timeout" => {
            "PM2's process.send('ready') is not spoken; use a readiness rule: ready.notify, ready.listen or ready.http"
        }
        "shutdown_with_message" => "supervise stops with a signal (or the SDK's Shutdown), not an IPC message",
        "kill_retry_time" => "supervise sends the stop signal once per process, then SIGKILL after stop.grace",
        "merge_logs" | "combine_logs" => "supervise's output files are per instance",
        "log_date_format" | "time" => {
            "supervise's `timestamps = true` stamps lines in RFC 3339 UTC, with no format of choice"
        }
        "log_type" => "supervise's output lines are text; its events are JSON lines (--events)",
        "namespace" => "supervise has no namespaces",
        "vizion" | "automation" | "pmx" | "post_update" | "force" | "append_env_to_name"
        | "source_map_support" | "disable_source_map_support" | "filter_env" | "treekill"
        | "autostart" | "stop_exit_codes" => {
            "no counterpart in supervise"
        }
        _ => "not a PM2 app key this importer knows",
    }
}

/// Converts the ecosystem value `v` read from `path` (whose text is `text`).
#[must_use]
pub fn convert(path: &Path, text: &str, v: &Value, cpus: u32) -> Conversion {
    let mut c = Conversion {
        sources: vec![path.to_owned()],
        ..Conversion::default()
    };
    let index = key_index(text);
    let (apps, prefix): (Vec<&Value>, &str) = match v {
        Value::Array(a) => (a.iter().collect(), ""),
        Value::Object(m) if m.contains_key("apps") => {
            for k in m.keys().filter(|k| *k != "apps") {
                let why = if k == "deploy" {
                    "deployment is not supervision".to_owned()
                } else {
                    "not a key of an ecosystem file this importer knows".to_owned()
                };
                c.notes.push(Note {
                    file: path.to_owned(),
                    line: key_lines(&index, k).first().copied(),
                    key: k.clone(),
                    why,
                    kind: NoteKind::Unmapped,
                });
            }
            match &m["apps"] {
                Value::Array(a) => (a.iter().collect(), "apps"),
                one @ Value::Object(_) => (vec![one], "apps"),
                _ => (Vec::new(), "apps"),
            }
        }
        one @ Value::Object(_) => (vec![one], ""),
        _ => (Vec::new(), ""),
    };
    if apps.is_empty() {
        c.notes.push(Note {
            file: path.to_owned(),
            line: None,
            key: "apps".into(),
            why: "no app found (expected {\"apps\": [...]}, a list of apps or one app)".into(),
            kind: NoteKind::Unmapped,
        });
    }
    // Each app starts where its n-th `name` or `script` key is written, as far as the text tells.
    let starts = {
        let names = key_lines(&index, "name");
        let scripts = key_lines(&index, "script");
        if names.len() >= apps.len() {
            names
        } else {
            scripts
        }
    };
    for (i, app) in apps.iter().enumerate() {
        let lines = Lines {
            index: &index,
            from: starts.get(i).copied().unwrap_or(1),
        };
        let at = if prefix.is_empty() {
            format!("[{i}]")
        } else {
            format!("{prefix}[{i}]")
        };
        if let Some(p) = app_program(path, &lines, &at, app, cpus, &mut c) {
            c.programs.push(p);
        }
    }
    c
}

/// One app; `None` (with a note) when it has no script.
#[allow(clippy::too_many_lines)]
fn app_program(
    path: &Path,
    lines: &Lines<'_>,
    at: &str,
    app: &Value,
    cpus: u32,
    c: &mut Conversion,
) -> Option<Program> {
    let mut notes = Vec::new();
    let mut add = |key: &str, why: String, kind| {
        notes.push(Note {
            file: path.to_owned(),
            line: lines.of(key),
            key: format!("{at}.{key}"),
            why,
            kind,
        });
    };
    let Some(m) = app.as_object() else {
        add(
            "",
            "an app is not an object: left out".into(),
            NoteKind::Unmapped,
        );
        c.notes.append(&mut notes);
        return None;
    };
    let Some(script) = m
        .get("script")
        .map(env_value)
        .filter(|s| !s.trim().is_empty())
    else {
        add(
            "script",
            "missing: the app is left out".into(),
            NoteKind::Unmapped,
        );
        c.notes.append(&mut notes);
        return None;
    };
    let raw_name = m.get("name").map(env_value).unwrap_or_else(|| {
        Path::new(&script)
            .file_stem()
            .map_or_else(|| "app".into(), |s| s.to_string_lossy().into_owned())
    });
    let name = super::program_name(&raw_name);
    if name != raw_name {
        add(
            "name",
            format!("named {name}: a program name is letters, digits, '-', '_' and '.'"),
            NoteKind::Approximate,
        );
    }
    let mut p = Program {
        name,
        replicas: 1,
        restart: Some("always"),
        // PM2's daemon stays up when an app is errored.
        essential: Some(false),
        ..Program::default()
    };
    // The command: interpreter, its arguments, the script, its arguments.
    let interpreter = match m.get("interpreter").or_else(|| m.get("exec_interpreter")) {
        Some(Value::String(s)) if s == "none" => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        _ => default_interpreter(&script).map(str::to_owned),
    };
    let mut command = Vec::new();
    if let Some(i) = &interpreter {
        command.push(i.clone());
        for key in ["interpreter_args", "node_args"] {
            if let Some(v) = m.get(key) {
                match words(v) {
                    Ok(w) => command.extend(w),
                    Err(e) => add(key, e, NoteKind::Unmapped),
                }
            }
        }
        command.push(script.clone());
    } else {
        // A script of several words (`npm run start`) is run as PM2 runs it: its words.
        match super::words::split(&script) {
            Ok(w) if !w.is_empty() => command.extend(w),
            _ => command.push(script.clone()),
        }
    }
    if let Some(v) = m.get("args") {
        match words(v) {
            Ok(w) => command.extend(w),
            Err(e) => add("args", e, NoteKind::Unmapped),
        }
    }
    // Source text is literal in supervise's templates.
    p.command = command.iter().map(|w| super::escape(w)).collect();
    let mut increment = None;
    for (k, v) in m {
        let k = k.as_str();
        match k {
            "name" | "script" | "args" | "interpreter" | "exec_interpreter" | "interpreter_args"
            | "node_args" => {}
            "cwd" => p.cwd = Some(super::escape(&env_value(v))),
            "env" => match v {
                Value::Object(vars) => {
                    for (name, value) in vars {
                        p.env.push((name.clone(), super::escape(&env_value(value))));
                    }
                }
                _ => add(k, "not an object of variables".into(), NoteKind::Unmapped),
            },
            k if k.starts_with("env_") => add(
                k,
                "supervise has one environment per program; PM2's --env picks this set: merge it into env by hand"
                    .into(),
                NoteKind::Unmapped,
            ),
            "instances" => {
                let n = match v {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) if s.trim() == "max" => Some(0),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                };
                let cpu = i64::from(cpus);
                match n {
                    Some(n) if n > 0 => p.replicas = u32::try_from(n).unwrap_or(1),
                    Some(n) => {
                        // 0 and "max": one per CPU; -N: all CPUs but N.
                        let r = if n == 0 { cpu } else { (cpu + n).max(1) };
                        p.replicas = u32::try_from(r).unwrap_or(1);
                        let less = if n == 0 { String::new() } else { format!(" less {}", -n) };
                        add(k, format!("one per CPU{less} is {} on this machine, written as a number", p.replicas), NoteKind::Approximate);
                    }
                    None => add(k, format!("{v} is not a number"), NoteKind::Unmapped),
                }
            }
            "exec_mode" => {
                if env_value(v).starts_with("cluster") {
                    add(k, "PM2's cluster mode shares one listening socket through Node's cluster module; supervise's replicas are separate processes: each needs its own port (increment_var) or SO_REUSEPORT".into(), NoteKind::Approximate);
                }
            }
            "increment_var" => increment = Some(env_value(v)),
            "instance_var" => {
                let var = env_value(v);
                if !var.is_empty() {
                    p.env.push((var, "{instance}".into()));
                }
            }
            "autorestart" => {
                if v == &Value::Bool(false) {
                    p.restart = Some("never");
                }
            }
            "max_restarts" => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => {
                    p.intensity_max = Some(n);
                    add(k, format!("PM2 stops after {n} restarts in a row that ran less than min_uptime; supervise after more than {n} restarts within intensity.within (60s)"), NoteKind::Approximate);
                }
                None => add(k, format!("{v} is not a number"), NoteKind::Unmapped),
            },
            "restart_delay" => match millis(v) {
                Some(0) => {}
                Some(ms) => {
                    p.backoff = Some(Backoff {
                        first: format!("{ms}ms"),
                        max: format!("{ms}ms"),
                        factor: "1.0",
                    });
                }
                None => add(k, format!("{v} is not milliseconds"), NoteKind::Unmapped),
            },
            "exp_backoff_restart_delay" => match millis(v) {
                Some(ms) if ms > 0 && ms <= 15_000 => {
                    p.backoff = Some(Backoff {
                        first: format!("{ms}ms"),
                        max: "15s".into(),
                        factor: "1.5",
                    });
                }
                _ => add(k, format!("{v} is not milliseconds up to 15000"), NoteKind::Unmapped),
            },
            "kill_timeout" => match millis(v) {
                Some(ms) => p.stop.grace = Some(format!("{ms}ms")),
                None => add(k, format!("{v} is not milliseconds"), NoteKind::Unmapped),
            },
            "max_memory_restart" => match memory(v) {
                Some(s) => p.memory_max = Some(s),
                None => add(k, format!("{v} is not a size"), NoteKind::Unmapped),
            },
            "user" | "uid" => p.user = Some(env_value(v)),
            "gid" => p.group = Some(env_value(v)),
            "treekill" if v == &Value::Bool(false) => {
                p.stop.mode = Some("main");
                add(k, "the stop signal goes to the app's own process; supervise then SIGKILLs what is left of its tree, where PM2 leaves it".into(), NoteKind::Approximate);
            }
            "watch" | "autostart" | "treekill" | "vizion" | "merge_logs" | "combine_logs"
                if matches!(v, Value::Bool(b) if *b == matches!(k, "autostart" | "treekill" | "vizion")) => {}
            "out_file" | "error_file" | "log_file" | "output" | "error" | "log" => {
                let file = env_value(v);
                if file == "/dev/null" || file.eq_ignore_ascii_case("null") {
                    add(k, "supervise always forwards output to its stdout and stderr and keeps the last lines for `supervise logs`".into(), NoteKind::Unmapped);
                } else if matches!(k, "log_file" | "log") {
                    add(k, "supervise's output files are per stream: NAME.INSTANCE.stdout.log and .stderr.log".into(), NoteKind::Unmapped);
                } else {
                    let dir = Path::new(&file).parent().map_or_else(
                        || ".".to_owned(),
                        |d| if d.as_os_str().is_empty() { ".".to_owned() } else { d.display().to_string() },
                    );
                    let stream = if matches!(k, "out_file" | "output") { "stdout" } else { "stderr" };
                    match &c.log {
                        None => {
                            c.log = Some(Log { dir: dir.clone(), max: None, keep: None });
                        }
                        Some(l) if l.dir != dir => {
                            add(k, format!("supervise writes every program's output files in one directory, here {}", l.dir), NoteKind::Unmapped);
                            continue;
                        }
                        Some(_) => {}
                    }
                    add(k, format!("written as {dir}/{}.INSTANCE.{stream}.log ([log] dir), not {file}", p.name), NoteKind::Approximate);
                }
            }
            k => add(k, why(k).into(), NoteKind::Unmapped),
        }
    }
    if let Some(var) = increment {
        let base = p
            .env
            .iter()
            .rev()
            .find(|(k, _)| *k == var)
            .and_then(|(_, v)| v.trim().parse::<i64>().ok());
        match base {
            Some(b) => {
                p.env.retain(|(k, _)| *k != var);
                p.env.push((var, format!("{{{b} + instance}}")));
            }
            None => add(
                "increment_var",
                format!("{var} has no number in env to count from"),
                NoteKind::Unmapped,
            ),
        }
    }
    c.notes.append(&mut notes);
    Some(p)
}

#[cfg(test)]
#[path = "pm2/tests.rs"]
mod tests;
