//! `supervise logs`: its exchange on the control socket, both sides.
//!
//! The answer to a `logs` request is a stream of JSON lines, each a [`Response`]: a `line` for
//! each of the newest lines kept, oldest first; with `follow`, then each new line as it is read,
//! and a `skipped` count where lines were dropped because the client did not read fast enough;
//! `end` closes the stream (at once without `follow`; with it, when the supervisor exits or the
//! program leaves the config). An unknown program or instance gets one `error`. Every other
//! request keeps its single answer, so older clients are unaffected.
//!
//! The lines kept and the follower are taken in one step on the engine's thread (nothing in
//! between yields), so a follower neither misses nor repeats a line at the seam. Nothing waits
//! for a follower: what it cannot take is counted (see [`crate::logs::Buffers`]); its connection
//! is one of the control socket's, under the same cap.

use std::borrow::Cow;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::{reply, within, Request, Response, EXCHANGE_TIMEOUT};
use crate::logs::{Buffers, Item, RecentLine, Stream};

/// Bytes of answer lines gathered before a write.
const BATCH: usize = 64 * 1024;

/// What a `logs` request asks.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ask<'a> {
    pub program: &'a str,
    pub instance: Option<u32>,
    pub lines: u32,
    pub follow: bool,
}

/// Answers a `logs` request on its connection.
pub(super) async fn serve(
    mut read: OwnedReadHalf,
    mut write: OwnedWriteHalf,
    buffers: &Buffers,
    ask: Ask<'_>,
) -> io::Result<()> {
    let selected = match buffers.select(ask.program, ask.instance) {
        Ok(s) => s,
        Err(message) => {
            return within(
                EXCHANGE_TIMEOUT,
                reply(&mut write, &Response::Error { message }),
            )
            .await
        }
    };
    let recent = Buffers::recent(&selected, ask.lines as usize);
    // Output handed to supervise's terminal never reaches it: the answer says so.
    let unseen = selected.iter().find_map(|b| b.unseen()).map(|why| {
        let who = match ask.instance {
            Some(i) => format!("{}/{i}", ask.program),
            None => ask.program.to_owned(),
        };
        format!("{who}: {why} (`supervise --prefix` passes it through supervise)")
    });
    let follower = ask
        .follow
        .then(|| buffers.follow(ask.program, ask.instance, &selected));
    drop(selected);
    // The lines kept, within the exchange's deadline even when following: a client that does
    // not take them does not hold them for long.
    let deadline = tokio::time::Instant::now() + EXCHANGE_TIMEOUT;
    let mut out = Vec::with_capacity(BATCH);
    by(deadline, async {
        for line in recent {
            encode_line(&mut out, &line)?;
            if out.len() >= BATCH {
                write.write_all(&out).await?;
                out.clear();
            }
        }
        Ok(())
    })
    .await?;
    let Some(f) = follower else {
        let message = (!buffers.keeps())
            .then(|| "this supervisor keeps no lines (--log-buffer 0)".to_owned())
            .or(unseen);
        encode(&mut out, &Response::End { message })?;
        return by(deadline, async {
            write.write_all(&out).await?;
            write.shutdown().await
        })
        .await;
    };
    // Then the new lines, for as long as the client stays: no deadline, and none needed (while
    // this task waits on a client that does not read, new lines are counted, not kept).
    let mut scratch = [0u8; 256];
    loop {
        while out.len() < BATCH {
            match f.pop() {
                Some(Item::Line(line)) => encode_line(&mut out, &line)?,
                Some(Item::Skipped(lines)) => encode(&mut out, &Response::Skipped { lines })?,
                None => break,
            }
        }
        if !out.is_empty() {
            write.write_all(&out).await?;
            out.clear();
            continue;
        }
        if let Some(why) = f.closed() {
            encode(&mut out, &Response::End { message: Some(why) })?;
            write.write_all(&out).await?;
            return write.shutdown().await;
        }
        tokio::select! {
            () = f.changed() => {}
            // The client sends nothing more: end of file (or an error) is its going away.
            got = read.read(&mut scratch) => {
                if !matches!(got, Ok(n) if n > 0) {
                    return Ok(());
                }
            }
        }
    }
}

/// `f`, if it completes by `deadline`.
async fn by(
    deadline: tokio::time::Instant,
    f: impl std::future::Future<Output = io::Result<()>>,
) -> io::Result<()> {
    tokio::time::timeout_at(deadline, f)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

/// A `line` answer, serialized straight from the kept line (as [`Response::Line`] reads it).
#[derive(Serialize)]
#[serde(tag = "result", rename = "line")]
struct LineOut<'a> {
    program: &'a str,
    instance: u32,
    stream: Stream,
    text: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
}

fn encode_line(out: &mut Vec<u8>, line: &RecentLine) -> io::Result<()> {
    let time = line.time_ms.map(|ms| {
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
    });
    encode(
        out,
        &LineOut {
            program: &line.program,
            instance: line.instance,
            stream: line.stream,
            text: String::from_utf8_lossy(&line.bytes),
            time,
        },
    )
}

fn encode(out: &mut Vec<u8>, answer: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, answer).map_err(io::Error::other)?;
    out.push(b'\n');
    Ok(())
}

/// The answers to a `logs` request, read as they come (see [`logs`]).
#[derive(Debug)]
pub struct LogLines {
    reader: BufReader<std::os::unix::net::UnixStream>,
    line: String,
    /// An error ended the stream.
    failed: bool,
}

impl Iterator for LogLines {
    type Item = io::Result<Response>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        self.line.clear();
        let answer = match self.reader.read_line(&mut self.line) {
            Ok(0) => return None,
            Ok(_) => serde_json::from_str(&self.line).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("bad answer: {e}"))
            }),
            Err(e) => Err(e),
        };
        self.failed = answer.is_err();
        Some(answer)
    }
}

impl LogLines {
    /// A second handle on the connection, to end a follow from another thread (shut it down:
    /// the iterator then ends).
    ///
    /// # Errors
    /// The socket cannot be duplicated (out of file descriptors).
    pub fn closer(&self) -> io::Result<std::os::unix::net::UnixStream> {
        self.reader.get_ref().try_clone()
    }
}

/// The client side of `logs`: sends the request and returns its answers as they come. Without
/// `follow`, each must come within 10 s; with it, the stream lasts as long as the supervisor
/// keeps it open.
pub fn logs(path: &Path, request: &Request) -> io::Result<LogLines> {
    let follow = matches!(request, Request::Logs { follow: true, .. });
    let mut stream = super::connect(path)?;
    stream.set_read_timeout((!follow).then_some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_vec(request).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    Ok(LogLines {
        reader: BufReader::new(stream),
        line: String::new(),
        failed: false,
    })
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_line_reads_back_as_a_line_answer() {
        let mut out = Vec::new();
        let line = RecentLine {
            program: Rc::from("api"),
            instance: 2,
            stream: Stream::Stderr,
            time_ms: Some(1_764_362_029_123),
            bytes: Arc::from(&b"caf\xc3\xa9 \xff \"quoted\""[..]),
        };
        encode_line(&mut out, &line).expect("encode");
        assert_eq!(out.last(), Some(&b'\n'));
        let back: Response = serde_json::from_slice(&out).expect("decode");
        assert_eq!(
            back,
            Response::Line {
                program: "api".into(),
                instance: 2,
                stream: Stream::Stderr,
                text: "café \u{fffd} \"quoted\"".into(),
                time: Some("2025-11-28T20:33:49.123Z".into()),
            }
        );
    }

    #[test]
    fn requests_of_older_clients_still_parse() {
        let old: Request =
            serde_json::from_str(r#"{"cmd":"restart","program":"api","instance":null}"#)
                .expect("restart");
        assert_eq!(
            old,
            Request::Restart {
                program: "api".into(),
                instance: None,
                wait_ms: None
            }
        );
        assert_eq!(old.wait(), None);
        let logs: Request =
            serde_json::from_str(r#"{"cmd":"logs","program":"api","instance":1}"#).expect("logs");
        assert_eq!(
            logs,
            Request::Logs {
                program: "api".into(),
                instance: Some(1),
                lines: super::super::DEFAULT_LINES,
                follow: false
            }
        );
        // And what a client without --wait sends is what older supervisors understand.
        let plain = serde_json::to_string(&Request::Stop {
            program: "api".into(),
            wait_ms: None,
        })
        .expect("json");
        assert_eq!(plain, r#"{"cmd":"stop","program":"api"}"#);
    }
}
