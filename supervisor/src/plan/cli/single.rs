//! `supervise [OPTIONS] -- CMD`: the flags of one program to its [`Plan`].

use std::path::Path;

use crate::signals::Sig;

use super::Cli;
use crate::plan::{
    check_name, check_replicas, fd_budget, nofile_limit, Backoff, HeartbeatSpec, Intensity,
    LeakPolicy, MemorySpec, Plan, PlanError, ProgramSpec, StopSpec, DEFAULT_HYSTERESIS,
    DEFAULT_LOG_BUFFER, DEFAULT_SAMPLE_EVERY,
};

impl Cli {
    pub(super) fn single_plan(&self, explicit: &dyn Fn(&str) -> bool) -> Result<Plan, PlanError> {
        let Some(program) = self.command.first() else {
            return Err(PlanError::flag(
                "",
                "nothing to run: give a command after `--` (supervise [OPTIONS] -- CMD [ARGS]...) or a config with -c FILE",
            ));
        };
        let name = match &self.name {
            Some(n) => n.clone(),
            None => Path::new(program)
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "worker".to_owned()),
        };
        check_name(&name).map_err(|m| PlanError::flag("--name", m))?;
        check_replicas(self.replicas.get()).map_err(|m| PlanError::flag("--replicas", m))?;
        fd_budget(u64::from(self.replicas.get()), nofile_limit())
            .map_err(|m| PlanError::flag("--replicas", m))?;
        if self.backoff_max < self.backoff_first {
            return Err(PlanError::flag(
                "--backoff-max",
                "must not be shorter than --backoff-first",
            ));
        }
        if self.within.is_zero() {
            return Err(PlanError::flag("--within", "must be longer than 0"));
        }
        let memory = self.memory_max.map(|max| MemorySpec {
            max,
            measure: self.memory_measure,
            count: self.memory_for.get(),
            hysteresis: DEFAULT_HYSTERESIS,
            warn_at: self.memory_warn_at,
        });
        if self.memory_warn_at.is_some() && memory.is_none() {
            return Err(PlanError::flag("--memory-warn-at", "needs --memory-max"));
        }
        let handling = crate::plan::handling::Given {
            min_uptime: self.memory_min_uptime,
            max_unavailable: self.memory_max_unavailable,
            ceiling: self.memory_ceiling,
            recycle: self.memory_recycle,
            recycle_before: self.recycle_before,
            schedule: crate::plan::Schedule {
                every: self.recycle_every,
                jitter: self.recycle_jitter.unwrap_or_default(),
                requests: self.recycle_requests,
                requests_jitter: self.recycle_requests_jitter.unwrap_or(0),
            },
        }
        .build(memory.map(|m| m.max))
        .map_err(|(key, m)| PlanError::flag(flag_of(key), m))?;
        if self.heartbeat_timeout.is_none()
            && (explicit("heartbeat_signal") || explicit("heartbeat_grace"))
        {
            return Err(PlanError::flag(
                if explicit("heartbeat_signal") {
                    "--heartbeat-signal"
                } else {
                    "--heartbeat-grace"
                },
                "needs --heartbeat-timeout",
            ));
        }
        if self.start_timeout.is_some() && self.ready.is_none() {
            return Err(PlanError::flag("--start-timeout", "needs --ready"));
        }
        if self.heartbeat_timeout.is_some_and(|t| t.is_zero()) {
            return Err(PlanError::flag(
                "--heartbeat-timeout",
                "must be longer than 0",
            ));
        }
        if memory.is_some_and(|m| m.max == 0) {
            return Err(PlanError::flag("--memory-max", "must be more than 0"));
        }
        let mut identity = self.identity()?;
        crate::plan::pressure::never_adj(self.oom, &mut identity, nix::unistd::geteuid().as_raw());
        let mut env = match &self.env_file {
            Some(file) => {
                crate::plan::envfile::load(file).map_err(|m| PlanError::flag("--env-file", m))?
            }
            None => Vec::new(),
        };
        // Taken as they are: escaped, they expand to themselves.
        for (_, v) in &mut env {
            *v = crate::plan::expand::escape(v);
        }
        Ok(Plan {
            programs: vec![ProgramSpec {
                name,
                // `{instance}`, `{name}` and `{8000 + instance}` expand; any other brace (`find
                // -exec {} ;`, JSON) is left as it is (see `plan::expand`).
                command: self
                    .command
                    .iter()
                    .map(|a| crate::plan::expand::lenient(a))
                    .collect(),
                cwd: None,
                env: crate::plan::envfile::dedup_env(env),
                identity,
                replicas: self.replicas.get(),
                restart: self.restart,
                backoff: Backoff {
                    first: self.backoff_first,
                    max: self.backoff_max,
                    ..Backoff::default()
                },
                intensity: Intensity {
                    max: self.max_restarts,
                    within: self.within,
                },
                stop: StopSpec {
                    signal: self.stop_signal.unwrap_or(Sig::TERM),
                    grace: self.grace,
                    mode: self.stop_mode,
                    drain: self.drain,
                },
                memory,
                heartbeat: self.heartbeat_timeout.map(|timeout| HeartbeatSpec {
                    timeout,
                    signal: self.heartbeat_signal,
                    grace: self.heartbeat_grace,
                }),
                leak: self.leak.map(|spec| LeakPolicy {
                    spec,
                    on_leak: self.on_leak,
                }),
                net: None,
                ready: self.ready.clone().map(|how| crate::plan::ReadySpec {
                    how,
                    every: crate::plan::DEFAULT_READY_EVERY,
                    timeout: crate::plan::DEFAULT_READY_TIMEOUT,
                    start_timeout: self.start_timeout,
                }),
                health: self.health.clone().map(|check| crate::plan::HealthSpec {
                    check,
                    every: crate::plan::DEFAULT_HEALTH_EVERY,
                    timeout: crate::plan::DEFAULT_HEALTH_TIMEOUT,
                    failures: crate::plan::DEFAULT_HEALTH_FAILURES,
                }),
                after: Vec::new(),
                handling,
                oom: self.oom,
                // The one program is the run: its giving up ends it.
                essential: true,
                reload: crate::plan::ReloadSpec::default(),
            }],
            sample_every: DEFAULT_SAMPLE_EVERY,
            events: None,
            events_rotation: crate::plan::EventsRotation::default(),
            quiet: false,
            timestamps: false,
            log_format: crate::plan::LogFormat::Human,
            prefix: self.prefix,
            log: None,
            log_buffer: DEFAULT_LOG_BUFFER,
            single: true,
            forward_stop: self.stop_signal.is_none(),
            source: None,
            admin: None,
            metrics: None,
            http_token: None,
            history: None,
            alert: None,
            watch_dirs: Vec::new(),
            deleted_growth: crate::plan::watch::DEFAULT_RATE,
            destroy_events: true,
            pressure: None,
        })
    }

    /// `--user`, `--group`, `--umask`, `--nice`, `--oom-score-adj`, `--rlimit`, `--clear-env`.
    fn identity(&self) -> Result<crate::plan::Identity, PlanError> {
        let user = self
            .user
            .as_deref()
            .map(|u| crate::plan::resolve_user(&crate::plan::Who::parse(u)))
            .transpose()
            .map_err(|m| PlanError::flag("--user", m))?;
        let group = self
            .group
            .as_deref()
            .map(|g| crate::plan::resolve_group(&crate::plan::Who::parse(g)).map(|gid| (gid, g)))
            .transpose()
            .map_err(|m| PlanError::flag("--group", m))?;
        let (euid, egid) = crate::plan::effective_ids();
        let crate::plan::identity::Credentials {
            switch,
            env: user_env,
        } = crate::plan::credentials(user.as_ref(), group, euid, egid)
            .map_err(|(key, m)| PlanError::flag(&format!("--{}", key.name()), m))?;
        let mut rlimits: Vec<crate::plan::Rlimit> = Vec::new();
        for r in &self.rlimit {
            if rlimits.iter().any(|l| l.resource == r.resource) {
                return Err(PlanError::flag(
                    "--rlimit",
                    format!("{} is given twice", r.name()),
                ));
            }
            rlimits.push(*r);
        }
        Ok(crate::plan::Identity {
            switch,
            user_env,
            umask: self.umask,
            nice: self.nice,
            oom_score_adj: self.oom_score_adj,
            rlimits,
            clear_env: self.clear_env,
        })
    }
}

/// The flag that sets a memory-handling key (`memory.ceiling` is `--memory-ceiling`).
fn flag_of(key: &str) -> &'static str {
    match key {
        "memory.min_uptime" => "--memory-min-uptime",
        "memory.max_unavailable" => "--memory-max-unavailable",
        "memory.ceiling" => "--memory-ceiling",
        "memory.recycle_before" => "--recycle-before",
        "recycle.every" => "--recycle-every",
        "recycle.jitter" => "--recycle-jitter",
        "recycle.requests" => "--recycle-requests",
        "recycle.requests_jitter" => "--recycle-requests-jitter",
        _ => "--memory-recycle",
    }
}
