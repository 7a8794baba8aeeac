//! The two exposition formats of `/metrics`, and which one a scrape gets.
//!
//! Prometheus' text format 0.0.4 and OpenMetrics 1.0 carry the same families and differ in a few
//! rules (see the Prometheus "Exposition formats" page and the OpenMetrics specification):
//!
//! | | OpenMetrics | text 0.0.4 |
//! |---|---|---|
//! | a counter's `HELP`/`TYPE` name | without `_total` | the sample name, with `_total` |
//! | `# UNIT` | the unit, whose name ends the family's | none (the unit is only in the name) |
//! | end of the exposition | `# EOF` | none |
//! | `_created` samples | allowed | none |
//! | a family without samples | allowed | left out (as client_golang does) |
//!
//! `prometheus-client` writes OpenMetrics; [`to_text`] rewrites its output into 0.0.4 line by
//! line. That is safe because every line it writes is one of `# HELP`, `# TYPE`, `# UNIT`,
//! `# EOF` or a sample, and no label value can hold a raw newline (the encoder escapes it).
//!
//! Which one a scrape gets follows client_golang's `NegotiateIncludingOpenMetrics`: the media
//! range of the `Accept` header with the highest `q` among those we can serve, OpenMetrics only
//! when that is `application/openmetrics-text`; anything else (no header, `*/*`, `text/plain`)
//! gets 0.0.4.

/// `Content-Type` of an OpenMetrics `/metrics`.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of a 0.0.4 `/metrics`.
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text, ending in `# EOF`.
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Text,
}

impl Format {
    /// The format for a request with this `Accept` header (`None`: no header).
    #[must_use]
    pub fn negotiate(accept: Option<&str>) -> Format {
        let mut best: Option<(f64, Format)> = None;
        for range in accept.unwrap_or("").split(',') {
            let mut params = range.split(';');
            let media = params.next().unwrap_or("").trim();
            let mut q = 1.0;
            let mut version = None;
            for p in params {
                let Some((key, value)) = p.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    "q" => {
                        q = value
                            .parse::<f64>()
                            .ok()
                            .filter(|q| q.is_finite())
                            .unwrap_or(0.0)
                    }
                    "version" => version = Some(value),
                    _ => {}
                }
            }
            let format = if media.eq_ignore_ascii_case("application/openmetrics-text")
                && matches!(version, None | Some("1.0.0" | "0.0.1"))
            {
                Format::OpenMetrics
            } else if media.eq_ignore_ascii_case("text/plain")
                && matches!(version, None | Some("0.0.4"))
            {
                Format::Text
            } else {
                continue;
            };
            // The first of the highest q wins, as in the sort client_golang does.
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, format));
            }
        }
        best.map_or(Format::Text, |(_, f)| f)
    }

    /// The `Content-Type` of a body in this format.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS,
            Format::Text => TEXT,
        }
    }
}

/// One family as `prometheus-client` writes it.
#[derive(Default)]
struct Family<'a> {
    name: &'a str,
    help: &'a str,
    kind: &'a str,
    samples: Vec<&'a str>,
}

/// The Prometheus text format 0.0.4 of an OpenMetrics text exposition written by
/// `prometheus-client` (see the module's table).
#[must_use]
pub fn to_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut family: Option<Family<'_>> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some(f) = family.take() {
                write_family(&mut out, &f);
            }
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            family = Some(Family {
                name,
                help,
                ..Family::default()
            });
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            match &mut family {
                Some(f) if f.name == name => f.kind = kind,
                _ => {
                    if let Some(f) = family.take() {
                        write_family(&mut out, &f);
                    }
                    family = Some(Family {
                        name,
                        kind,
                        ..Family::default()
                    });
                }
            }
        } else if line.starts_with('#') {
            // `# UNIT`, `# EOF`: OpenMetrics only.
        } else if !line.is_empty() {
            if let Some(f) = &mut family {
                f.samples.push(line);
            }
        }
    }
    if let Some(f) = family.take() {
        write_family(&mut out, &f);
    }
    out
}

fn write_family(out: &mut String, f: &Family<'_>) {
    let (suffix, kind) = match f.kind {
        "counter" => ("_total", "counter"),
        "gauge" | "histogram" | "summary" => ("", f.kind),
        // `unknown`, and the types 0.0.4 does not have (`info`, `stateset`, `gaugehistogram`).
        _ => ("", "untyped"),
    };
    let created = format!("{}_created", f.name);
    let samples: Vec<&str> = f
        .samples
        .iter()
        .copied()
        .filter(|s| {
            let name = s.split(['{', ' ']).next().unwrap_or("");
            name != created
        })
        .collect();
    if samples.is_empty() {
        return;
    }
    let name = format!("{}{suffix}", f.name);
    if !f.help.is_empty() {
        out.push_str(&format!("# HELP {name} {}\n", f.help));
    }
    out.push_str(&format!("# TYPE {name} {kind}\n"));
    for s in samples {
        out.push_str(s);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_accept() {
        let f = |h: &str| Format::negotiate(Some(h));
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(f(""), Format::Text);
        assert_eq!(f("*/*"), Format::Text);
        assert_eq!(f("text/plain"), Format::Text);
        assert_eq!(f("application/json"), Format::Text);
        // What Prometheus 2.x sends.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(f(prometheus), Format::OpenMetrics);
        assert_eq!(f("application/openmetrics-text"), Format::OpenMetrics);
        assert_eq!(
            f("Application/OpenMetrics-Text; Version=\"1.0.0\""),
            Format::OpenMetrics
        );
        assert_eq!(
            f("text/plain;version=0.0.4;q=0.5, application/openmetrics-text;q=0.9"),
            Format::OpenMetrics
        );
        // Asked for, but not preferred, not allowed, or a version we do not write.
        assert_eq!(
            f("text/plain;version=0.0.4, application/openmetrics-text;q=0.5"),
            Format::Text
        );
        assert_eq!(f("application/openmetrics-text;q=0"), Format::Text);
        assert_eq!(
            f("application/openmetrics-text;version=2.0.0"),
            Format::Text
        );
        assert_eq!(f("application/openmetrics-text;q=nope"), Format::Text);
        assert_eq!(
            Format::OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert_eq!(
            Format::Text.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
    }

    #[test]
    fn openmetrics_to_text_rules() {
        let om = "# HELP a_restarts restarts.\n\
                  # TYPE a_restarts counter\n\
                  a_restarts_total{replica=\"0\"} 3\n\
                  a_restarts_created{replica=\"0\"} 1.7e9\n\
                  # HELP a_rss_bytes rss.\n\
                  # TYPE a_rss_bytes gauge\n\
                  # UNIT a_rss_bytes bytes\n\
                  a_rss_bytes{replica=\"0\",name=\"# TYPE x counter\"} 5\n\
                  # HELP a_cpu_seconds cpu.\n\
                  # TYPE a_cpu_seconds counter\n\
                  # UNIT a_cpu_seconds seconds\n\
                  a_cpu_seconds_total 0.5\n\
                  # HELP a_empty nothing yet.\n\
                  # TYPE a_empty gauge\n\
                  # HELP a_odd odd.\n\
                  # TYPE a_odd unknown\n\
                  a_odd 1\n\
                  # EOF\n";
        assert_eq!(
            to_text(om),
            "# HELP a_restarts_total restarts.\n\
             # TYPE a_restarts_total counter\n\
             a_restarts_total{replica=\"0\"} 3\n\
             # HELP a_rss_bytes rss.\n\
             # TYPE a_rss_bytes gauge\n\
             a_rss_bytes{replica=\"0\",name=\"# TYPE x counter\"} 5\n\
             # HELP a_cpu_seconds_total cpu.\n\
             # TYPE a_cpu_seconds_total counter\n\
             a_cpu_seconds_total 0.5\n\
             # HELP a_odd odd.\n\
             # TYPE a_odd untyped\n\
             a_odd 1\n"
        );
        assert_eq!(to_text("# EOF\n"), "");
    }
}
