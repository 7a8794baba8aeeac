//! The plan in words, for `--check`: each program, its replicas, its command and the settings
//! that differ from the defaults.

use std::fmt::Write as _;

use super::{Check, Plan, ProgramSpec, ReadyHow, RestartMode, StopMode, StopSpec};

fn duration(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A check as its flag writes it.
fn check(c: &Check) -> String {
    match c {
        Check::Tcp { host, port } => format!("tcp://{host}:{port}"),
        Check::Http { host, port, path } => format!("http://{host}:{port}{path}"),
        Check::Exec(argv) => format!("exec:{}", argv.join(" ")),
        Check::Listen { port } => format!("listen:{port}"),
    }
}

/// One program: a head line with its replicas and argv, then its settings.
fn program(s: &mut String, p: &ProgramSpec) {
    let argv = serde_json::to_string(&p.command).unwrap_or_default();
    let _ = writeln!(s, "program {} × {}: {argv}", p.name, p.replicas);
    let mut set = Vec::new();
    if let Some(cwd) = &p.cwd {
        set.push(format!("cwd {}", cwd.display()));
    }
    if !p.env.is_empty() {
        let vars: Vec<String> = p.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        set.push(format!("env {}", vars.join(" ")));
    }
    if let Some(sw) = &p.identity.switch {
        set.push(format!(
            "user {} (uid {:?}, gid {})",
            sw.user, sw.uid, sw.gid
        ));
    }
    if let Some(u) = p.identity.umask {
        set.push(format!("umask {u:03o}"));
    }
    set.push(format!(
        "restart {}",
        match p.restart {
            RestartMode::Always => "always",
            RestartMode::OnFailure => "on-failure",
            RestartMode::Never => "never",
        }
    ));
    set.push(format!(
        "at most {} restarts within {}",
        p.intensity.max,
        duration(p.intensity.within)
    ));
    let StopSpec {
        signal,
        grace,
        mode,
        drain,
    } = p.stop;
    let mut stop = format!(
        "stop {signal} to the {}, SIGKILL after {}",
        match mode {
            StopMode::Group => "group",
            StopMode::Main => "main process",
        },
        duration(grace)
    );
    if !drain.is_zero() {
        let _ = write!(stop, ", drained {} first", duration(drain));
    }
    set.push(stop);
    if !p.after.is_empty() {
        set.push(format!("after {}", p.after.join(", ")));
    }
    if let Some(m) = &p.memory {
        set.push(format!(
            "memory max {} ({} samples)",
            bytesize::ByteSize(m.max).display().iec(),
            m.count
        ));
    }
    if let Some(l) = &p.leak {
        set.push(format!(
            "leak {}/{}",
            bytesize::ByteSize(l.spec.growth).display().iec(),
            duration(l.spec.within)
        ));
    }
    if let Some(r) = &p.ready {
        let how = match &r.how {
            ReadyHow::Notify => "notify".to_owned(),
            ReadyHow::Fd(n) => format!("fd:{n}"),
            ReadyHow::Check(c) => check(c),
        };
        set.push(format!("ready {how}"));
    }
    if let Some(h) = &p.health {
        set.push(format!("health {}", check(&h.check)));
    }
    if p.heartbeat.is_some() {
        set.push("heartbeat watched".into());
    }
    if p.net.is_some() {
        set.push("network policy".into());
    }
    for line in set {
        let _ = writeln!(s, "  {line}");
    }
}

impl Plan {
    /// What `--check` prints: the source, then every program.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let instances: u64 = self.programs.iter().map(|p| u64::from(p.replicas)).sum();
        let from = self.source.as_ref().map_or_else(
            || "the command line".to_owned(),
            |p| p.display().to_string(),
        );
        let _ = writeln!(
            s,
            "{from}: valid: {} program{}, {instances} instance{}",
            self.programs.len(),
            if self.programs.len() == 1 { "" } else { "s" },
            if instances == 1 { "" } else { "s" },
        );
        for p in &self.programs {
            program(&mut s, p);
        }
        if let Some(log) = &self.log {
            let _ = writeln!(s, "output files in {}", log.dir.display());
        }
        if let Some(m) = self.metrics {
            let _ = writeln!(s, "metrics on http://{m}/metrics");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::parse_config;

    #[test]
    fn describes_each_program() {
        let plan = parse_config(
            "[program.api]\ncommand = [\"./api\", \"--port\", \"8080\"]\nreplicas = 2\nafter = [\"db\"]\n\
             stop = { signal = \"QUIT\", grace = \"30s\", mode = \"main\" }\nmemory = { max = \"512MiB\" }\n\
             env = { A = \"1\" }\nready = { http = \"http://127.0.0.1:8080/ready\" }\n\
             [program.db]\ncommand = [\"postgres\"]\nrestart = \"always\"\nmemory = { leak = \"64MiB/10m\" }\n",
            None,
        )
        .expect("valid");
        let text = plan.describe();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "the command line: valid: 2 programs, 3 instances");
        assert_eq!(lines[1], "program api × 2: [\"./api\",\"--port\",\"8080\"]");
        for want in [
            "  env A=1",
            "  restart on-failure",
            "  stop SIGQUIT to the main process, SIGKILL after 30s",
            "  after db",
            "  memory max 512.0 MiB (3 samples)",
            "program db × 1: [\"postgres\"]",
            "  restart always",
            "  ready http://127.0.0.1:8080/ready",
            "  leak 64.0 MiB/10m",
        ] {
            assert!(lines.contains(&want), "{want:?} in\n{text}");
        }
    }
}
