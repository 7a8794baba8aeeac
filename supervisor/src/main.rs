//! `supervise`: the command line. Parse, build a plan, run it, map the outcome to an exit code.

use std::io::{ErrorKind, Write as _};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};
use supervisor::admin::{self, Request, Response};
use supervisor::logs::Stream;
use supervisor::plan::{Cli, Control, LogFormat};

/// Exit code for bad flags or config: nothing was started.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "__lifeline")
    {
        supervisor::lifeline::serve();
        return ExitCode::SUCCESS;
    }
    if let Err(e) = supervisor::spawn::reserve_low_fds() {
        eprintln!("supervise: cannot open /dev/null: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Some(control) = &cli.control {
        init_tracing(LogFormat::Human);
        return client(control, cli.admin.clone());
    }
    let explicit =
        |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    // A bad flag or config is told to whoever typed the command, in words.
    let plan = match cli.into_plan(&explicit) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("supervise: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let format = plan.log_format;
    init_tracing(format);
    // Run mode only: a supervisor holds a few fds per process it tracks (the workers get the
    // limit back, see `spawn`).
    if let Err(e) = supervisor::spawn::raise_fd_limit() {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
    match supervisor::engine::run(plan) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            let text = format!("{e:#}");
            match format {
                LogFormat::Human => eprintln!("supervise: {text}"),
                LogFormat::Json => eprint!(
                    "{}",
                    supervisor::logs::json::own_line("error", &text, &serde_json::Map::new())
                ),
            }
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// `tracing`'s lines (supervise's warnings), filtered by `SUPERVISE_LOG`, in the format of the
/// other lines on stderr.
fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SUPERVISE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let lines = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(supervisor::logs::TracingLines);
    match format {
        LogFormat::Human => lines
            .with_ansi(supervisor::logs::colour_on_stderr())
            .with_target(false)
            .init(),
        LogFormat::Json => lines
            .with_ansi(false)
            .event_format(supervisor::logs::json::TracingJson)
            .init(),
    }
}

/// `supervise report FILE -o OUT.svg`: draws a history file; no supervisor needed.
fn report(file: &Path, output: &Path, program: Option<&str>) -> ExitCode {
    let series = match supervisor::history::read(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("supervise: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if series.ignored_bytes > 0 {
        eprintln!(
            "supervise: {}: skipped {} bytes (a record torn by a crash, or damage)",
            file.display(),
            series.ignored_bytes
        );
    }
    if series.newer_segments > 0 {
        eprintln!(
            "supervise: {}: skipped {} segments written by a newer supervise",
            file.display(),
            series.newer_segments
        );
    }
    if series.series_dropped > 0 {
        eprintln!(
            "supervise: {}: drawing the first {} instances; {} more left out",
            file.display(),
            series.workers.len(),
            series.series_dropped
        );
    }
    let title = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let svg = match supervisor::report::render(&series, &title, program) {
        Ok(svg) => svg,
        Err(e) => {
            eprintln!("supervise: {}: {e}", file.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let written = if output == Path::new("-") {
        return to_stdout(svg.as_bytes());
    } else {
        std::fs::write(output, svg)
    };
    if let Err(e) = written {
        eprintln!("supervise: {}: {e}", output.display());
        return ExitCode::from(EXIT_USAGE);
    }
    ExitCode::SUCCESS
}

/// `NAME` or `NAME/INSTANCE`; `None` (reported) if the instance is not a number.
fn split_target(target: &str) -> Option<(String, Option<u32>)> {
    match target.split_once('/') {
        None => Some((target.to_owned(), None)),
        Some((p, i)) => match i.parse() {
            Ok(i) => Some((p.to_owned(), Some(i))),
            Err(_) => {
                eprintln!("supervise: {target:?}: expected NAME or NAME/INSTANCE");
                None
            }
        },
    }
}

/// `supervise status|restart|signal|stop|start|reload|logs`: one request to a running supervisor
/// (and `report`, which needs none).
fn client(control: &Control, path: Option<std::path::PathBuf>) -> ExitCode {
    let path = path.unwrap_or_else(admin::default_path);
    let request = match control {
        Control::Status { .. } => Request::Status,
        Control::Restart { target, wait } => {
            let Some((program, instance)) = split_target(target) else {
                return ExitCode::from(EXIT_USAGE);
            };
            Request::Restart {
                program,
                instance,
                wait_ms: wait.wait_ms(),
            }
        }
        Control::Signal {
            target,
            signal,
            group,
        } => {
            let Some((program, instance)) = split_target(target) else {
                return ExitCode::from(EXIT_USAGE);
            };
            Request::Signal {
                program,
                instance,
                signal: signal.raw(),
                group: *group,
            }
        }
        Control::ReloadProgram { target, wait } => {
            let Some((program, instance)) = split_target(target) else {
                return ExitCode::from(EXIT_USAGE);
            };
            Request::ReloadProgram {
                program,
                instance,
                wait_ms: wait.wait_ms(),
            }
        }
        Control::Stop { program, wait } => Request::Stop {
            program: program.clone(),
            wait_ms: wait.wait_ms(),
        },
        Control::Start { program, wait } => Request::Start {
            program: program.clone(),
            wait_ms: wait.wait_ms(),
        },
        Control::Reload { dry_run: false } => Request::Reload,
        Control::Reload { dry_run: true } => Request::ReloadDryRun,
        Control::Logs {
            target,
            lines,
            follow,
        } => {
            let Some((program, instance)) = split_target(target) else {
                return ExitCode::from(EXIT_USAGE);
            };
            return logs(
                &path,
                &Request::Logs {
                    program,
                    instance,
                    lines: *lines,
                    follow: *follow,
                },
            );
        }
        Control::Report {
            file,
            output,
            program,
        } => return report(file, output, program.as_deref()),
        Control::Completions { shell } => {
            // Written whole into memory first: clap_complete panics on a failed write.
            let mut text = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "supervise", &mut text);
            return to_stdout(&text);
        }
        Control::Man => {
            let mut text = Vec::new();
            return match clap_mangen::Man::new(Cli::command()).render(&mut text) {
                Ok(()) => to_stdout(&text),
                Err(e) => {
                    eprintln!("supervise: man: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Control::Top => {
            return match supervisor::top::run(path) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("supervise: top: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    // A waited action is answered once done, or once its wait has run out: the answer is
    // awaited a little longer than that.
    let waited = request.wait();
    let limit = waited.unwrap_or_default() + Duration::from_secs(10);
    match admin::call_within(&path, &request, limit) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            eprintln!(
                "supervise: no answer from the supervisor within {}",
                humantime::format_duration(limit)
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("supervise: {e}");
            ExitCode::FAILURE
        }
        Ok(Response::Error { message }) => {
            eprintln!("supervise: {message}");
            ExitCode::FAILURE
        }
        Ok(Response::Ok { message }) if waited.is_some() => {
            // An older supervisor ignores `wait_ms` and answers at once.
            eprintln!(
                "supervise: {message}\nsupervise: this supervisor does not know --wait (it is older \
                 than this client): the action was taken, its completion not waited for"
            );
            ExitCode::FAILURE
        }
        Ok(Response::Ok { message } | Response::Done { message }) => {
            to_stdout(format!("{message}\n").as_bytes())
        }
        Ok(Response::Status {
            workers,
            supervisor,
        }) => {
            // A reader that goes away early (`| head -1`) ends the output, not the process.
            let mut text = String::new();
            if matches!(control, Control::Status { json: true, .. }) {
                for w in &workers {
                    match serde_json::to_string(w) {
                        Ok(line) => text.push_str(&line),
                        Err(e) => eprintln!("supervise: {e}"),
                    }
                    text.push('\n');
                }
                // Last, under a key of its own: readers of the worker lines skip it by the
                // missing `program`.
                match serde_json::to_string(&serde_json::json!({ "supervisor": supervisor })) {
                    Ok(line) => text.push_str(&line),
                    Err(e) => eprintln!("supervise: {e}"),
                }
                text.push('\n');
            } else {
                let wide = matches!(control, Control::Status { wide: true, .. });
                text.push_str(&admin::table(&workers, table_width(wide)));
                text.push_str(&admin::supervisor_lines(&supervisor));
            }
            to_stdout(text.as_bytes())
        }
        Ok(other) => {
            eprintln!("supervise: unexpected answer: {other:?}");
            ExitCode::FAILURE
        }
    }
}

/// Writes `bytes` to stdout. A reader that went away (`supervise completions zsh | head`)
/// ends the output, not the process: success, with no panic and nothing said.
fn to_stdout(bytes: &[u8]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("supervise: stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The width the `status` table fits: the terminal's, or every column (`None`) with `--wide` or
/// when the output is not a terminal (a script or a pager gets them all).
fn table_width(wide: bool) -> Option<usize> {
    use std::io::IsTerminal as _;
    if wide || !std::io::stdout().is_terminal() {
        return None;
    }
    ratatui::crossterm::terminal::size()
        .ok()
        .map(|(cols, _)| usize::from(cols))
        .filter(|&c| c > 0)
}

/// `supervise logs NAME[/INSTANCE] [-n N] [-f]`: each line as the console shows it, on the
/// stream it was written to, in the order the supervisor read them.
fn logs(path: &Path, request: &Request) -> ExitCode {
    let answers = match admin::logs(path, request) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("supervise: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Without -f the whole answer (a few MiB at most) is read before any of it is printed: a
    // reader that takes its time (`| less`) must not keep the supervisor waiting past its
    // deadline. With -f lines are printed as they come.
    let answers: Box<dyn Iterator<Item = std::io::Result<Response>>> =
        if matches!(request, Request::Logs { follow: true, .. }) {
            Box::new(answers)
        } else {
            Box::new(answers.collect::<Vec<_>>().into_iter())
        };
    // Line-buffered both: each line is written whole and in order with the other stream's.
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    for answer in answers {
        let written = match answer {
            Ok(Response::Line {
                program,
                instance,
                stream,
                text,
                time,
            }) => {
                let stamp = time.map(|t| format!("{t} ")).unwrap_or_default();
                match stream {
                    Stream::Stdout => writeln!(out, "{stamp}{program}[{instance}] {text}"),
                    Stream::Stderr => writeln!(err, "{stamp}{program}[{instance}] {text}"),
                }
            }
            Ok(Response::Skipped { lines }) => writeln!(
                out,
                "… {lines} lines skipped (this client did not read them fast enough)"
            ),
            Ok(Response::End { message }) => {
                if let Some(m) = message {
                    let _ = writeln!(err, "supervise: {m}");
                }
                return ExitCode::SUCCESS;
            }
            Ok(Response::Error { message }) => {
                let _ = writeln!(err, "supervise: {message}");
                return ExitCode::FAILURE;
            }
            Ok(other) => {
                let _ = writeln!(err, "supervise: unexpected answer: {other:?}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                let _ = writeln!(err, "supervise: {e}");
                return ExitCode::FAILURE;
            }
        };
        match written {
            Ok(()) => {}
            // `supervise logs api | head`: the reader has what it wanted.
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return ExitCode::SUCCESS,
            Err(e) => {
                let _ = writeln!(err, "supervise: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let _ = writeln!(
        err,
        "supervise: the connection closed before the end of the answer (the supervisor went \
         away, or closed it to serve other clients)"
    );
    ExitCode::FAILURE
}
