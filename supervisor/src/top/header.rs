//! The header: counts by state, the host's load, memory, swap and pressure, and the
//! supervisor's own footprint, flowed into as few lines as the width allows.

use crate::columns::{bytes, state_word};
use crate::status::{HostStatus, Pressure, WorkerStatus};

/// Most lines the header takes; what does not fit is left out (the least important last).
pub const MAX_LINES: usize = 3;

/// The header's pieces, most important first.
#[must_use]
pub fn chips(workers: &[WorkerStatus], host: Option<&HostStatus>) -> Vec<String> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for w in workers {
        let s = state_word(w);
        match counts.iter_mut().find(|(k, _)| *k == s) {
            Some((_, n)) => *n += 1,
            None => counts.push((s, 1)),
        }
    }
    // Worst news first: what an operator must see.
    let rank = |s: &str| {
        [
            "fatal", "backoff", "stopping", "draining", "starting", "waiting", "stopped",
            "running", "ready",
        ]
        .iter()
        .position(|k| *k == s)
        .unwrap_or(0)
    };
    counts.sort_by_key(|(s, _)| rank(s));
    let by_state = counts
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = vec![format!(
        "{} instance{}{}{by_state}",
        workers.len(),
        if workers.len() == 1 { "" } else { "s" },
        if by_state.is_empty() { "" } else { ": " }
    )];
    let Some(h) = host else {
        return out;
    };
    if let Some([a, b, c]) = h.load {
        out.push(format!("load {a:.2} {b:.2} {c:.2}"));
    }
    if let (Some(avail), Some(total)) = (h.mem_available_bytes, h.mem_total_bytes) {
        out.push(format!("mem avail {} of {}", bytes(avail), bytes(total)));
    }
    match (h.swap_total_bytes, h.swap_free_bytes) {
        (Some(0), _) => out.push("swap none".to_owned()),
        (Some(total), Some(free)) => out.push(format!(
            "swap used {} of {}",
            bytes(total.saturating_sub(free)),
            bytes(total)
        )),
        _ => {}
    }
    let psi = |name: &str, p: Option<Pressure>| {
        p.map(|p| {
            let full = p
                .full_avg10
                .map_or_else(|| "-".to_owned(), |f| format!("{f:.1}"));
            format!("{name} {:.1}/{full}", p.some_avg10)
        })
    };
    let pressures: Vec<String> = [
        psi("mem", h.memory_pressure),
        psi("cpu", h.cpu_pressure),
        psi("io", h.io_pressure),
    ]
    .into_iter()
    .flatten()
    .collect();
    if pressures.is_empty() {
        out.push("pressure: not in this kernel".to_owned());
    } else {
        out.push(format!("psi {}", pressures.join(" ")));
    }
    let o = &h.own;
    let mut own = vec![format!("self: pid {}", o.pid)];
    if let Some(r) = o.rss_bytes {
        own.push(format!("rss {}", bytes(r)));
    }
    if let Some(c) = o.cpu_percent {
        own.push(format!("cpu {c:.1}%"));
    }
    if let Some(f) = o.fds {
        own.push(format!("{f} fds"));
    }
    out.push(own.join(" "));
    out
}

/// `chips` flowed into lines of at most `width` characters, two spaces apart, at most
/// [`MAX_LINES`]; a chip wider than a line is shortened.
#[must_use]
pub fn flow(chips: &[String], width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for chip in chips {
        let n = chip.chars().count();
        let full = lines.len() == MAX_LINES;
        match lines.last_mut() {
            Some(l) if l.chars().count() + 2 + n <= width => {
                l.push_str("  ");
                l.push_str(chip);
            }
            _ if full => {}
            _ => lines.push(crate::columns::pad(chip, width.min(n), false)),
        }
    }
    lines
}
