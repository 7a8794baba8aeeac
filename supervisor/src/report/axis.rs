//! Axis ticks and labels: round times of day, binary byte sizes, percents; and SVG escaping.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

const SECOND: u64 = 1000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// Tick spacings a time axis may use, ms.
const TIME_STEPS: [u64; 22] = [
    SECOND,
    2 * SECOND,
    5 * SECOND,
    10 * SECOND,
    15 * SECOND,
    30 * SECOND,
    MINUTE,
    2 * MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    2 * DAY,
    7 * DAY,
    14 * DAY,
    28 * DAY,
];

/// `2024-05-01T12:03:04Z` for `unix_ms`.
pub fn rfc3339(unix_ms: u64) -> String {
    let mut s = String::new();
    // humantime refuses years past 9999 with a formatting error, which `to_string` would turn
    // into a panic; the reader never yields such times, but a label must not be able to panic.
    match UNIX_EPOCH.checked_add(Duration::from_millis(unix_ms)) {
        Some(t) if write!(s, "{}", humantime::format_rfc3339_seconds(t)).is_ok() => s,
        _ => "(after 9999)".to_owned(),
    }
}

/// Time ticks for `[t0, t1]`: at most about `max` of them, on round UTC times, with labels.
pub fn time_ticks(t0: u64, t1: u64, max: u64) -> Vec<(u64, String)> {
    let span = t1.saturating_sub(t0).max(1);
    let step = TIME_STEPS
        .iter()
        .copied()
        .find(|s| span / s <= max.max(1))
        .unwrap_or_else(|| span / max.max(1));
    let step = step.max(1);
    let mut out = Vec::new();
    let mut t = t0.div_ceil(step).saturating_mul(step);
    while t <= t1 && out.len() < 64 {
        let full = rfc3339(t);
        // `YYYY-MM-DDTHH:MM:SSZ`: the part that changes at this step.
        let label = if step < MINUTE {
            full.get(11..19)
        } else if step < DAY {
            full.get(11..16)
        } else {
            full.get(5..10)
        };
        out.push((t, label.unwrap_or(&full).to_owned()));
        t = t.saturating_add(step);
    }
    out
}

/// `1 h 5 m`, `42 s`: a duration for people.
pub fn elapsed(ms: u64) -> String {
    let s = ms / SECOND;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} m {} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {} m", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `3 min`, `45 s`, `2 h 5 min`: a duration for a title, rounded to its largest units.
pub fn about(ms: u64) -> String {
    let s = ms.saturating_add(SECOND / 2) / SECOND;
    let m = s.saturating_add(30) / 60;
    let h = s.saturating_add(1800) / 3600;
    if s < 60 {
        format!("{s} s")
    } else if m < 60 {
        format!("{m} min")
    } else if h < 24 {
        match m % 60 {
            0 => format!("{} h", m / 60),
            rest => format!("{} h {rest} min", m / 60),
        }
    } else {
        format!("{} d {} h", h / 24, h % 24)
    }
}

/// A round step near `raw`: 1, 2, 2.5 or 5 times a power of ten.
fn nice(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    let f = raw / p;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 2.5 {
        2.5
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * p
}

/// Byte ticks from 0 to at least `max`: (top of the axis, ticks with labels such as `64 MiB`).
pub fn byte_ticks(max: u64) -> (f64, Vec<(f64, String)>) {
    let max = (max as f64).max(1024.0);
    let (unit, name) = [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        .into_iter()
        .find(|(u, _)| max >= *u as f64)
        .unwrap_or((1 << 10, "KiB"));
    let unit = unit as f64;
    let step = nice(max / unit / 4.0) * unit;
    ticks_to(max, step, |v| format!("{} {name}", number(v / unit)))
}

/// Percent ticks from 0 to at least `max` (and at least 100).
pub fn percent_ticks(max: f64) -> (f64, Vec<(f64, String)>) {
    let max = if max.is_finite() {
        max.max(100.0)
    } else {
        100.0
    };
    let step = nice(max / 2.0);
    ticks_to(max, step, |v| format!("{}%", number(v)))
}

fn ticks_to(max: f64, step: f64, label: impl Fn(f64) -> String) -> (f64, Vec<(f64, String)>) {
    let n = (max / step).ceil().clamp(1.0, 20.0);
    let top = n * step;
    let ticks = (0..=n as u32)
        .map(|i| f64::from(i) * step)
        .map(|v| (v, label(v)))
        .collect();
    (top, ticks)
}

/// `48`, `1.5`, `2.25`: no trailing zeros.
fn number(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `64 MiB`, `1.5 GiB`: a size for a label.
pub fn size(bytes: u64) -> String {
    let b = bytes as f64;
    for (unit, name) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        if bytes >= unit {
            return format!("{} {name}", number((b / unit as f64 * 10.0).round() / 10.0));
        }
    }
    format!("{bytes} B")
}

/// Escapes text for SVG (XML) content and attribute values. Characters XML 1.0 cannot carry
/// at all (most C0 controls, U+FFFE, U+FFFF) become U+FFFD.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}
