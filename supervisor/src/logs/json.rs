//! `--log-format json`: every line supervise writes on its stderr, and every worker line it
//! forwards, as one JSON object (see "JSON lines" in docs/logs.md).
//!
//! - A worker line: `ts` (when it was read), `program`, `instance`, `stream` (`stdout` or
//!   `stderr`, the stream it came from and is written to), `msg`; `invalid_utf8: true` when
//!   bytes that are not UTF-8 were replaced by U+FFFD; `part` and `parts` (from 1) when it was
//!   split, each part with the same `ts`.
//! - An event's line: `stream` `supervise`, `msg` (its words, as the human line has them),
//!   `severity` (`info`, `warning`, `critical`), and the event's own fields (`ts`, `program`,
//!   `instance`, `pid`, `event`, …, as in the events file).
//! - Supervise's other lines (warnings, errors): `stream` `supervise`, `program` `supervise`,
//!   `severity`, `msg`, and the fields a warning carries.
//!
//! No line is longer than [`MAX_JSON_LINE`], newline included: a worker line whose object would
//! be longer is split into parts at character boundaries (Docker's json-file and the CRI split
//! lines at 16 KiB; a shipper then has to join them back by guessing).

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;

use crate::events::{human, Event};

/// Longest line written, newline included.
pub const MAX_JSON_LINE: usize = 16 * 1024;

#[derive(Serialize)]
struct WorkerLine<'a> {
    ts: &'a str,
    program: &'a str,
    instance: u32,
    stream: &'static str,
    msg: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    invalid_utf8: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    part: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parts: Option<usize>,
}

/// `2026-11-28T20:33:49.123Z`.
#[must_use]
pub fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Bytes `c` takes inside a JSON string as serde_json writes it.
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// A worker line as JSON lines (newlines included), in parts when one would be too long.
#[must_use]
pub fn worker_lines(
    program: &str,
    instance: u32,
    stream: &'static str,
    bytes: &[u8],
    at: SystemTime,
) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let invalid_utf8 = matches!(text, std::borrow::Cow::Owned(_));
    let ts = stamp(at);
    let line = |msg: &str, part: Option<(usize, usize)>| {
        let mut s = serde_json::to_string(&WorkerLine {
            ts: &ts,
            program,
            instance,
            stream,
            msg,
            invalid_utf8,
            part: part.map(|p| p.0),
            parts: part.map(|p| p.1),
        })
        .unwrap_or_default();
        s.push('\n');
        s
    };
    let whole = line(&text, None);
    if whole.len() <= MAX_JSON_LINE {
        return vec![whole];
    }
    // Room for the message in each part: what the object takes with an empty message and the
    // widest numbers a part can have (a line is at most a few hundred KiB: five digits each).
    let frame = line("", Some((99_999, 99_999))).len();
    let room = MAX_JSON_LINE.saturating_sub(frame).max(6);
    let mut chunks: Vec<&str> = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, c) in text.char_indices() {
        let n = escaped_len(c);
        if used + n > room {
            chunks.push(&text[start..i]);
            (start, used) = (i, 0);
        }
        used += n;
    }
    chunks.push(&text[start..]);
    let parts = chunks.len();
    chunks
        .iter()
        .enumerate()
        .map(|(i, msg)| line(msg, Some((i + 1, parts))))
        .collect()
}

#[derive(Serialize)]
struct EventLine<'a, 'e> {
    stream: &'static str,
    severity: &'static str,
    msg: &'a str,
    #[serde(flatten)]
    event: &'a Event<'e>,
}

/// An event's line (newline included); `None` for the events the human lines leave out too.
#[must_use]
pub fn event_line(e: &Event<'_>) -> Option<String> {
    let (severity, msg) = human::words(e)?;
    let mut s = serde_json::to_string(&EventLine {
        stream: "supervise",
        severity,
        msg: &msg,
        event: e,
    })
    .ok()?;
    s.push('\n');
    Some(s)
}

#[derive(Serialize)]
struct OwnLine<'a> {
    ts: &'a str,
    program: &'static str,
    instance: u32,
    stream: &'static str,
    severity: &'a str,
    msg: &'a str,
    #[serde(flatten)]
    fields: &'a serde_json::Map<String, serde_json::Value>,
}

/// One of supervise's own lines (newline included): `severity` `info`, `warning`, `error`…
#[must_use]
pub fn own_line(
    severity: &str,
    msg: &str,
    fields: &serde_json::Map<String, serde_json::Value>,
) -> String {
    let mut s = serde_json::to_string(&OwnLine {
        ts: &stamp(SystemTime::now()),
        program: "supervise",
        instance: 0,
        stream: "supervise",
        severity,
        msg,
        fields,
    })
    .unwrap_or_default();
    s.push('\n');
    s
}

/// `tracing`'s lines as [`own_line`]s: the event's message as `msg`, its other fields beside.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingJson;

/// Collects an event's fields.
struct Fields {
    msg: String,
    rest: serde_json::Map<String, serde_json::Value>,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.msg, "{value:?}");
        } else {
            self.rest
                .insert(field.name().to_owned(), format!("{value:?}").into());
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.msg.push_str(value);
        } else {
            self.rest.insert(field.name().to_owned(), value.into());
        }
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.rest.insert(field.name().to_owned(), value.into());
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.rest.insert(field.name().to_owned(), value.into());
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.rest.insert(field.name().to_owned(), value.into());
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.rest.insert(field.name().to_owned(), value.into());
    }
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for TracingJson
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Fields {
            msg: String::new(),
            rest: serde_json::Map::new(),
        };
        event.record(&mut fields);
        let severity = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        writer.write_str(&own_line(severity, &fields.msg, &fields.rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> serde_json::Value {
        assert!(line.ends_with('\n'), "{line:?}");
        assert!(line.len() <= MAX_JSON_LINE, "{} bytes", line.len());
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    #[test]
    fn lines_of_every_shape() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_500);
        // (bytes, parts, invalid)
        let long_ascii = vec![b'a'; 40 * 1024];
        let long_quotes = vec![b'"'; 20 * 1024];
        let long_controls = vec![1u8; 10 * 1024];
        let long_multibyte = "é€😀".repeat(3000).into_bytes();
        let rows: [(&[u8], usize, bool); 8] = [
            (b"hello", 1, false),
            (b"", 1, false),
            (b"\"quoted\ttab\"", 1, false),
            (b"bad \xff\xfe bytes", 1, true),
            (&long_ascii, 3, false),
            (&long_quotes, 3, false),
            (&long_controls, 4, false),
            (&long_multibyte, 2, false),
        ];
        for (bytes, parts, invalid) in rows {
            let lines = worker_lines("api", 2, "stderr", bytes, at);
            assert_eq!(lines.len(), parts, "{:?}", &bytes[..bytes.len().min(20)]);
            let mut joined = String::new();
            for (i, l) in lines.iter().enumerate() {
                let v = parse(l);
                assert_eq!(v["ts"], "1970-01-01T00:00:01.500Z");
                assert_eq!(v["program"], "api");
                assert_eq!(v["instance"], 2);
                assert_eq!(v["stream"], "stderr");
                assert_eq!(v["invalid_utf8"].as_bool().unwrap_or(false), invalid);
                if parts > 1 {
                    assert_eq!(v["part"], i + 1);
                    assert_eq!(v["parts"], parts);
                } else {
                    assert!(v.get("part").is_none() && v.get("parts").is_none());
                }
                joined.push_str(v["msg"].as_str().expect("msg"));
            }
            assert_eq!(joined, String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn an_event_keeps_its_fields_and_gets_words() {
        let e = Event::now(
            "api",
            1,
            Some(42),
            crate::events::Kind::Exited {
                code: Some(3),
                signal: None,
                uptime_s: 1.2,
                report: None,
            },
        );
        let v = parse(&event_line(&e).expect("a line"));
        assert_eq!(v["event"], "exited");
        assert_eq!(v["code"], 3);
        assert_eq!(v["pid"], 42);
        assert_eq!(v["program"], "api");
        assert_eq!(v["stream"], "supervise");
        assert_eq!(v["severity"], "warning");
        assert_eq!(v["msg"], "exited with code 3 after 1.2s");
        let own = own_line("error", "cannot\tgo on", &serde_json::Map::new());
        let v = parse(&own);
        assert_eq!(
            (&v["program"], &v["msg"], &v["severity"]),
            (
                &serde_json::Value::from("supervise"),
                &serde_json::Value::from("cannot\tgo on"),
                &serde_json::Value::from("error")
            )
        );
    }
}
