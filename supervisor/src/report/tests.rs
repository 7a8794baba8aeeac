use super::axis::{about, byte_ticks, esc, percent_ticks, time_ticks};
use super::*;
use crate::history::{FindingMark, Point, RestartMark};

const MIB: u64 = 1 << 20;
const T0: u64 = 1_700_000_000_000;

fn point(t: u64, rss: u64) -> Point {
    Point {
        unix_ms: t,
        samples: 1,
        rss: Some(rss),
        pss: None,
        heap: None,
        cpu_percent: Some(3.0),
        state: None,
        new_process: false,
    }
}

fn worker(program: &str, instance: u32, n: u64) -> WorkerSeries {
    WorkerSeries {
        program: program.to_owned(),
        instance,
        points: (0..n)
            .map(|i| point(T0 + i * 1000, (i % 10 + 1) * MIB))
            .collect(),
        restarts: vec![RestartMark {
            unix_ms: T0 + 9000,
            reason: "memory".into(),
        }],
        restarts_dropped: 0,
        findings: Vec::new(),
        findings_dropped: 0,
        samples: n,
    }
}

fn series(workers: Vec<WorkerSeries>) -> Series {
    Series {
        workers,
        ..Series::default()
    }
}

/// Checks that the SVG is well-formed enough for any XML parser: every tag closed, no raw
/// `<` or `&` in text.
fn assert_balanced(svg: &str) {
    let mut depth = 0i32;
    let mut rest = svg;
    while let Some(i) = rest.find('<') {
        let text = &rest[..i];
        assert!(!text.contains('>'), "stray '>' in text {text:?}");
        for (j, _) in text.match_indices('&') {
            let ent = &text[j..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&#"]
                    .iter()
                    .any(|e| ent.starts_with(e)),
                "raw '&' in {text:?}"
            );
        }
        let end = rest[i..].find('>').expect("tag closes") + i;
        let tag = &rest[i..=end];
        assert!(!tag[1..].contains('<'), "'<' inside tag {tag}");
        if tag.starts_with("</") {
            depth -= 1;
        } else if !tag.ends_with("/>") {
            depth += 1;
        }
        assert!(depth >= 0, "unbalanced at {tag}");
        rest = &rest[end + 1..];
    }
    assert_eq!(depth, 0, "unclosed tags");
}

#[test]
fn draws_a_block_per_program_with_restart_markers() {
    let mut s = series(vec![
        worker("api", 0, 60),
        worker("api", 1, 60),
        worker("db", 0, 60),
    ]);
    s.limits.insert("api".into(), 12 * MIB);
    let svg = render(&s, "history.bin", None).expect("render");
    assert_balanced(&svg);
    assert_eq!(svg.matches(r#"<g class="program">"#).count(), 2);
    assert_eq!(svg.matches("reason-memory").count(), 3);
    assert!(svg.contains("api/1 restarted (memory) at 2023-11-14T22:13:29Z"));
    assert!(svg.contains("limit 12 MiB"));
    assert!(svg.contains("<title>db/0 RSS</title>"));
    assert!(svg.contains("3 restarts (3 memory)"), "{}", &svg[..600]);
}

fn finding(t: u64, kind: &str) -> FindingMark {
    FindingMark {
        unix_ms: t,
        kind: kind.to_owned(),
    }
}

/// The `d` of the path titled `title`.
fn path_data<'a>(svg: &'a str, title: &str) -> &'a str {
    let line = svg
        .lines()
        .find(|l| l.contains(&format!("<title>{title}</title>")))
        .unwrap_or_else(|| panic!("no path {title}"));
    line.split("d=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("d")
}

/// The y of each point of each subpath of `d`.
fn subpaths(d: &str) -> Vec<Vec<f64>> {
    d.split('M')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split(['L', 'h'])
                .filter_map(|xy| xy.split_once(',').and_then(|(_, y)| y.parse::<f64>().ok()))
                .collect()
        })
        .collect()
}

#[test]
fn findings_are_drawn_in_their_own_lane_with_their_kind() {
    let mut api = worker("api", 0, 60);
    // A leak that only warned, and a hang that led to a restart.
    api.findings = vec![finding(T0 + 5000, "leak"), finding(T0 + 9000, "hung")];
    api.restarts[0].reason = "hung".into();
    let mut s = series(vec![api, worker("db", 0, 60)]);
    // The supervisor's own finding is drawn in every block.
    s.findings = vec![finding(T0 + 30_000, "disk")];
    let svg = render(&s, "h", None).expect("render");
    assert_balanced(&svg);
    assert_eq!(svg.matches(r#"class="finding kind-leak""#).count(), 1);
    assert_eq!(svg.matches(r#"class="finding kind-hung""#).count(), 1);
    assert_eq!(svg.matches(r#"class="finding kind-disk""#).count(), 2);
    assert!(svg.contains("<title>api/0: finding leak at 2023-11-14T22:13:25Z</title>"));
    assert!(svg.contains("<title>supervise: finding disk at 2023-11-14T22:13:50Z</title>"));
    assert!(svg.contains(">leak</text>") && svg.contains(">disk (supervise)</text>"));
    assert!(svg.contains(">finding: leak</text>") && svg.contains(">restart: hung</text>"));
    assert!(
        svg.contains("3 findings (1 disk, 1 hung, 1 leak)"),
        "{}",
        &svg[..900]
    );
    // Diamonds sit in their lane, above the restarts' triangles and apart from them.
    let mem_top = geo::HEAD + geo::BLOCK_TITLE + geo::FIND_LANE + geo::MARK_LANE;
    let leak = svg
        .lines()
        .find(|l| l.contains("kind-leak"))
        .expect("leak mark");
    let diamond_y: f64 = leak
        .split("<path d=\"M")
        .nth(1)
        .and_then(|r| r.split(['L', '"']).next())
        .and_then(|xy| xy.split_once(','))
        .and_then(|(_, y)| y.parse().ok())
        .expect("diamond top");
    assert!(
        diamond_y >= mem_top - geo::MARK_LANE - geo::FIND_LANE
            && diamond_y < mem_top - geo::MARK_LANE,
        "diamond at {diamond_y}, lane ends at {}",
        mem_top - geo::MARK_LANE
    );
}

#[test]
fn a_restart_breaks_the_memory_line_instead_of_falling_to_the_next_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h");
    let h = crate::history::History::open(&path, None).expect("open");
    let mut w = crate::status::WorkerStatus::new("api", 0);
    w.state = crate::status::Phase::Running;
    for i in 0..20u64 {
        // The first process grows to 40 MiB; the restart happens between ticks 9 and 10, so
        // no tick sees the instance without a process; the next one starts small.
        if i == 10 {
            w.restarts += 1;
            *w.restarts_by_reason.entry("memory".into()).or_default() += 1;
        }
        let (pid, rss) = if i < 10 {
            (100, 31 + i)
        } else {
            (101, 1 + i % 2)
        };
        w.pid = Some(pid);
        w.rss_bytes = Some(rss * MIB);
        w.cpu_percent = Some(if i < 10 { 90.0 } else { 5.0 });
        h.record(T0 + i * 1000, std::slice::from_ref(&w));
    }
    h.close();
    let s = crate::history::read(&path).expect("read");
    let svg = render(&s, "h", None).expect("render");
    for line in ["api/0 RSS", "api/0 CPU"] {
        let d = path_data(&svg, line);
        let runs = subpaths(d);
        assert_eq!(runs.len(), 2, "{line}: one line per process: {d}");
        // No segment joins the two: every y of the first is above (smaller than) the second's.
        let lowest_first = runs[0].iter().copied().fold(f64::MIN, f64::max);
        let highest_second = runs[1].iter().copied().fold(f64::MAX, f64::min);
        assert!(lowest_first < highest_second, "{line}: {d}");
    }
}

#[test]
fn the_title_names_the_programs_and_the_span() {
    let mut ws = vec![
        worker("ingest", 0, 181),
        worker("api", 0, 181),
        worker("cache", 0, 181),
    ];
    ws[0].restarts.clear();
    let svg = render(&series(ws), "/var/lib/app/history.bin", None).expect("render");
    assert_balanced(&svg);
    // 2023-11-14T22:13:20Z to 22:16:20Z.
    assert!(
        svg.contains(r##"fill="#222">api, cache, ingest <tspan font-weight="normal" fill="#555">— 2023-11-14 22:13–22:16 UTC (3 min)</tspan>"##),
        "{}",
        &svg[..900]
    );
    // The file is named in the smaller line below.
    assert!(svg.contains(r##"font-size="12" fill="#666">/var/lib/app/history.bin · 2023-11-14 22:13:20 → 22:16:20 UTC"##));
    // Many programs: as many names as fit, then how many more.
    let many: Vec<WorkerSeries> = (0..40)
        .map(|i| worker(&format!("program-{i:02}"), 0, 5))
        .collect();
    let svg = render(&series(many), "h", None).expect("render");
    let title = svg
        .lines()
        .find(|l| l.contains(r#"font-size="19""#))
        .expect("title");
    assert!(title.contains("program-00, program-01, "), "{title}");
    assert!(title.contains(" more <tspan"), "{title}");
    assert!(title.contains("22:13:20–22:13:29 UTC (9 s)"), "{title}");
    assert_eq!(about(59_400), "59 s");
    assert_eq!(about(3 * 60_000 + 4000), "3 min");
    assert_eq!(about(3_600_000 + 5 * 60_000), "1 h 5 min");
    assert_eq!(about(2 * 86_400_000 + 3 * 3_600_000), "2 d 3 h");
}

#[test]
fn hostile_names_are_escaped() {
    let evil = r#"x"><script>alert('&')</script><!--"#;
    let mut w = worker(evil, 0, 5);
    w.restarts[0].reason = "<b>\u{1}".into();
    w.findings = vec![finding(T0 + 1000, "<i>&\u{2}")];
    let svg = render(&series(vec![w]), "a<b>&c\u{7}.svg", None).expect("render");
    assert_balanced(&svg);
    assert!(!svg.contains("<script"));
    assert!(!svg.contains("<b>") && !svg.contains("<i>"));
    assert!(svg.contains("&lt;i&gt;&amp;\u{fffd}"));
    assert!(svg.contains("x&quot;&gt;&lt;script&gt;alert(&#39;&amp;&#39;)"));
    assert!(svg.contains("a&lt;b&gt;&amp;c\u{fffd}.svg"));
    assert!(!svg.contains('\u{1}') && !svg.contains('\u{2}') && !svg.contains('\u{7}'));
}

#[test]
fn program_filter_and_empty_history_are_errors_when_nothing_is_left() {
    let s = series(vec![worker("api", 0, 5), worker("db", 0, 5)]);
    let svg = render(&s, "h", Some("db")).expect("render");
    assert!(!svg.contains("api/0"));
    let e = render(&s, "h", Some("nope")).expect_err("no such program");
    assert_eq!(
        e.to_string(),
        "no program \"nope\" in this history; it has: api, db"
    );
    let e = render(&Series::default(), "h", None).expect_err("empty");
    assert!(matches!(e, ReportError::Empty));
}

#[test]
fn lines_break_at_gaps_and_missing_values() {
    let mut w = worker("api", 0, 0);
    w.restarts.clear();
    for i in 0..10 {
        w.points.push(point(T0 + i * 1000, MIB));
    }
    // The worker had no process for a moment, then the supervisor was away for an hour.
    w.points[5].rss = None;
    for i in 0..10 {
        w.points.push(point(T0 + 3_600_000 + i * 1000, MIB));
    }
    let svg = render(&series(vec![w]), "h", None).expect("render");
    let rss = svg
        .lines()
        .find(|l| l.contains("<title>api/0 RSS</title>"))
        .expect("rss path");
    assert_eq!(rss.matches('M').count(), 3, "{rss}");
}

#[test]
fn a_thousand_points_per_pixel_are_thinned_and_keep_the_peak() {
    let mut w = worker("api", 0, 0);
    w.restarts.clear();
    for i in 0..4000 {
        w.points
            .push(point(T0 + i * 100, if i == 1234 { 500 * MIB } else { MIB }));
    }
    let svg = render(&series(vec![w]), "h", None).expect("render");
    let rss = svg
        .lines()
        .find(|l| l.contains("<title>api/0 RSS</title>"))
        .expect("rss path");
    let points = rss.matches('L').count() + 1;
    assert!(points <= 2 * geo::PLOT_W as usize + 2, "{points} points");
    let d = rss
        .split("d=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("d");
    let highest = d
        .split(['M', 'L', 'h'])
        .filter_map(|xy| xy.split_once(',').and_then(|(_, y)| y.parse::<f64>().ok()))
        .fold(f64::MAX, f64::min);
    let (axis, _) = byte_ticks(500 * MIB);
    let bottom = geo::HEAD + geo::BLOCK_TITLE + geo::FIND_LANE + geo::MARK_LANE + geo::MEM_H;
    let peak = bottom - (500 * MIB) as f64 / axis * geo::MEM_H;
    assert!(
        (highest - peak).abs() < 0.1,
        "peak drawn at {highest}, expected {peak}"
    );
}

#[test]
fn ticks_are_round() {
    let (top, ticks) = byte_ticks(100 * MIB);
    assert!(top >= (100 * MIB) as f64);
    let labels: Vec<&str> = ticks.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(labels, ["0 MiB", "25 MiB", "50 MiB", "75 MiB", "100 MiB"]);
    let (_, ticks) = byte_ticks(3 << 30);
    assert_eq!(ticks[1].1, "1 GiB");
    let (top, ticks) = percent_ticks(37.0);
    assert!((top - 100.0).abs() < f64::EPSILON);
    assert_eq!(ticks.last().map(|t| t.1.as_str()), Some("100%"));
    // 2023-11-14T22:13:20Z plus an hour: ticks on round times of day.
    let ticks = time_ticks(T0, T0 + 3_600_000, 12);
    assert_eq!(ticks[0].1, "22:15");
    assert!(ticks.iter().all(|(t, _)| t % 300_000 == 0));
    assert_eq!(esc("a\tb"), "a&#9;b");
    assert_eq!(super::axis::rfc3339(u64::MAX), "(after 9999)");
}

#[test]
fn a_limit_far_above_the_data_is_named_not_drawn() {
    let mut s = series(vec![worker("api", 0, 30)]);
    s.limits.insert("api".into(), 4096 * MIB);
    let svg = render(&s, "h", None).expect("render");
    assert!(svg.contains("limit 4 GiB (off the scale)"));
    assert!(!svg.contains(">limit 4 GiB<"));
    // The lines keep their own scale: 10 MiB of data, not 4 GiB.
    assert!(svg.contains(">10 MiB<"), "axis follows the data");
}
