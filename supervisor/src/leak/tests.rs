use proptest::prelude::*;

use super::*;

const MIB: u64 = 1 << 20;
const BASE: u64 = 100 * MIB;
const WINDOW: Duration = Duration::from_secs(600);
/// With one sample a second and `/10m`, the first sample whose history spans 80 % of the window.
const FIRST_VERDICT: usize = 480;

/// `64MiB/10m`: 111 848 bytes/s.
fn spec() -> LeakSpec {
    LeakSpec {
        growth: 64 * MIB,
        within: WINDOW,
    }
}

/// A one-minute window, where one-second samples each get their own bucket (the bucket minimum
/// filters nothing: the fit alone must cope).
fn short_spec() -> LeakSpec {
    LeakSpec {
        growth: 16 * MIB,
        within: Duration::from_secs(60),
    }
}

fn rate() -> f64 {
    spec().rate()
}

/// Samples as (offset from the first one, bytes).
type Series = Vec<(Duration, u64)>;

/// One sample a second for `secs` seconds: `f(t)` bytes at `t` seconds.
fn every_second(secs: u64, f: impl Fn(f64) -> f64) -> Series {
    (0..secs)
        .map(|i| (Duration::from_secs(i), f(i as f64) as u64))
        .collect()
}

fn verdicts(spec: LeakSpec, series: &Series) -> Vec<LeakVerdict> {
    let t0 = Instant::now();
    let mut w = LeakWatch::new(spec);
    let out = series.iter().map(|&(d, b)| w.observe(t0 + d, b)).collect();
    assert!(w.points.len() <= BUCKETS as usize);
    out
}

/// The detection delay: index and offset of the first sample judged a leak, and the verdict.
fn first_leak(spec: LeakSpec, series: &Series) -> Option<(usize, Duration, LeakVerdict)> {
    verdicts(spec, series)
        .into_iter()
        .enumerate()
        .find(|(_, v)| matches!(v, LeakVerdict::Leak { .. }))
        .map(|(i, v)| (i, series[i].0, v))
}

/// Asserts the series never fires: `Unknown` for its first `known_from` samples, `NoLeak` for
/// all the others. Returns the `NoLeak` slopes.
fn assert_never_fires(spec: LeakSpec, series: &Series, known_from: usize) -> Vec<f64> {
    let mut slopes = Vec::new();
    for (i, v) in verdicts(spec, series).into_iter().enumerate() {
        match v {
            LeakVerdict::Unknown => assert!(i < known_from, "sample {i}: Unknown"),
            LeakVerdict::NoLeak { slope_bytes_per_s } => {
                assert!(i >= known_from, "sample {i}: judged too early");
                slopes.push(slope_bytes_per_s);
            }
            LeakVerdict::Leak { .. } => panic!("sample {i} at {:?}: {v:?}", series[i].0),
        }
    }
    slopes
}

/// A deterministic xorshift64* generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [-1, 1).
    fn signed(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn leak_at(factor: f64) -> impl Fn(f64) -> f64 {
    move |t| BASE as f64 + factor * rate() * t
}

#[test]
fn steady_leak_fires_once_the_history_spans_80_percent_of_the_window() {
    for factor in [1.0, 2.0] {
        let series = every_second(3 * 600, leak_at(factor));
        let (i, at, v) = first_leak(spec(), &series).expect("fires");
        eprintln!(
            "steady leak at {factor}x: fires at sample {i}, {at:?} = {:.2} of the window",
            at.as_secs_f64() / WINDOW.as_secs_f64()
        );
        assert_eq!((i, at), (FIRST_VERDICT, Duration::from_secs(480)));
        assert!(at <= WINDOW.mul_f64(1.1));
        let LeakVerdict::Leak {
            slope_bytes_per_s,
            growth_over_window,
            samples,
        } = v
        else {
            unreachable!()
        };
        assert!((slope_bytes_per_s / (factor * rate()) - 1.0).abs() < 1e-3);
        let expected = factor * (64 * MIB) as f64;
        assert!((growth_over_window as f64 / expected - 1.0).abs() < 1e-3);
        assert_eq!(samples, FIRST_VERDICT + 1);
        // Nothing was judged before the span gate.
        assert!(verdicts(spec(), &series[..FIRST_VERDICT].to_vec())
            .iter()
            .all(|v| *v == LeakVerdict::Unknown));
    }
}

#[test]
fn leak_after_a_flat_history_fires_within_a_window_of_its_onset() {
    // Theil–Sen needs leak-to-leak pairs to be the median: about 70 % of the window at 1x; at 2x
    // the flat-to-leak pairs reach the rate sooner.
    for (factor, expected) in [(1.0, 420.0), (2.0, 300.0)] {
        let onset = 600.0;
        let series = every_second(3 * 600, |t| {
            BASE as f64 + factor * rate() * (t - onset).max(0.0)
        });
        let (i, at, _) = first_leak(spec(), &series).expect("fires");
        let delay = at.as_secs_f64() - onset;
        eprintln!(
            "leak at {factor}x after a flat window: fires at sample {i}, {delay} s after onset \
             = {:.2} of the window",
            delay / 600.0
        );
        assert_eq!(delay, expected);
    }
}

#[test]
fn half_rate_leak_never_fires() {
    let slopes = assert_never_fires(spec(), &every_second(3 * 600, leak_at(0.5)), FIRST_VERDICT);
    assert!(slopes.iter().all(|s| (s / rate() - 0.5).abs() < 1e-3));
    // Just under the slack never fires either; just over does.
    assert_never_fires(
        spec(),
        &every_second(3 * 600, leak_at(0.985)),
        FIRST_VERDICT,
    );
    assert!(first_leak(spec(), &every_second(3 * 600, leak_at(0.995))).is_some());
}

#[test]
fn warm_up_that_plateaus_never_fires() {
    let mut rng = Rng(7);
    let noise: Vec<f64> = (0..1800).map(|_| rng.signed() * MIB as f64).collect();
    // 256 MiB (4x the growth) over the first 20 % (20x the rate), then 30 % and 40 % of the
    // window, then flat with ±1 MiB of noise.
    for ramp in [120.0, 180.0, 240.0] {
        let series = every_second(3 * 600, |t| {
            BASE as f64 + (256 * MIB) as f64 * (t / ramp).min(1.0) + noise[t as usize]
        });
        assert_never_fires(spec(), &series, FIRST_VERDICT);
    }
    // Concave (exponential approach) warm-ups of 4x and 16x the growth, settled to 95 % by 20 %
    // and by a third of the window (time constants 40 s and 66 s).
    for (amplitude, settled) in [(256, 120.0), (1024, 120.0), (256, 200.0), (1024, 200.0)] {
        let series = every_second(3 * 600, |t| {
            let reached = 1.0 - (-3.0 * t / settled).exp();
            BASE as f64 + (amplitude * MIB) as f64 * reached + noise[t as usize]
        });
        assert_never_fires(spec(), &series, FIRST_VERDICT);
    }
}

#[test]
fn sawtooth_never_fires() {
    // Grow 10 MiB over 10 s, free it, repeat, on top of a high base: the peaks are 10 MiB above
    // the floor, far beyond the 64 MiB/10m rate (1 MiB/s while growing).
    let tooth = |t: f64| 900.0 * MIB as f64 + ((t as u64 % 10) + 1) as f64 * MIB as f64;
    let slopes = assert_never_fires(spec(), &every_second(3 * 600, tooth), FIRST_VERDICT);
    assert!(slopes.iter().all(|s| s.abs() < 0.05 * rate()), "{slopes:?}");
    // With one-second buckets the minimum filters nothing, and the fit must reject it alone.
    assert_never_fires(short_spec(), &every_second(3 * 60, tooth), 48);
}

#[test]
fn slow_sawtooth_up_to_two_thirds_of_a_window_never_fires() {
    // Accumulate 128 MiB over 5 (then 6⅔) minutes, 4x (3x) the rate, free it, repeat. Each ramp
    // alone is a leak; the drops are what τ_a counts against them.
    for period in [300.0, 400.0] {
        let series = every_second(4 * 600, |t| {
            BASE as f64 + (128 * MIB) as f64 * ((t % period) / period)
        });
        assert_never_fires(spec(), &series, FIRST_VERDICT);
    }
}

#[test]
fn single_spike_never_fires() {
    // A spike just before the first verdict, at it, mid-run and last.
    for (spec, secs, known_from) in [(spec(), 1800, FIRST_VERDICT), (short_spec(), 180, 48)] {
        for spike_at in [known_from - 1, known_from, secs / 2, secs - 1] {
            let series = every_second(secs as u64, |t| {
                if t as usize == spike_at {
                    (BASE + 500 * MIB) as f64
                } else {
                    BASE as f64
                }
            });
            let slopes = assert_never_fires(spec, &series, known_from);
            assert!(slopes.iter().all(|&s| s == 0.0), "{slopes:?}");
        }
    }
}

#[test]
fn flat_noise_never_fires() {
    let mut rng = Rng(42);
    let noise: Vec<f64> = (0..1800).map(|_| 2.0 * rng.signed() * MIB as f64).collect();
    let flat = |t: f64| BASE as f64 + noise[t as usize];
    let slopes = assert_never_fires(spec(), &every_second(1800, flat), FIRST_VERDICT);
    assert!(slopes.iter().all(|s| s.abs() < 0.1 * rate()), "{slopes:?}");
    assert_never_fires(short_spec(), &every_second(1800, flat), 48);
}

#[test]
fn noisy_leak_still_fires() {
    let mut rng = Rng(3);
    // ±10 % of the value, symmetric: the floor's slope reads ~7 % low (module caveats), so
    // 1.5x the rate.
    let noise: Vec<f64> = (0..1800).map(|_| 0.1 * rng.signed()).collect();
    let series = every_second(1800, |t| leak_at(1.5)(t) * (1.0 + noise[t as usize]));
    let (i, _, v) = first_leak(spec(), &series).expect("fires");
    eprintln!("1.5x leak with ±10 % noise: fires at sample {i}: {v:?}");
    assert!((FIRST_VERDICT..=500).contains(&i), "{i}");
    // Churn on top of the live set (up to +10 %, the shape RSS really has): exact rate.
    let churn: Vec<f64> = (0..1800).map(|_| 0.1 * rng.unit()).collect();
    let series = every_second(1800, |t| leak_at(1.0)(t) * (1.0 + churn[t as usize]));
    let (i, _, v) = first_leak(spec(), &series).expect("fires");
    eprintln!("1x leak with up to +10 % churn: fires at sample {i}: {v:?}");
    assert!(i <= 600, "{i}");
}

#[test]
fn step_never_fires() {
    for step_at in [0.0, 60.0, 300.0, 470.0, 480.0, 540.0, 600.0, 660.0, 900.0] {
        let series = every_second(3 * 600, |t| {
            if t < step_at {
                BASE as f64
            } else {
                (BASE + 200 * MIB) as f64
            }
        });
        assert_never_fires(spec(), &series, FIRST_VERDICT);
    }
}

#[test]
fn staircase_that_keeps_climbing_fires() {
    // 16 MiB every 2 minutes (1.25x the rate in five steps a window): growth in chunks, as
    // allocator arenas grow, is still a leak once the steps keep coming.
    let series = every_second(3 * 600, |t| {
        BASE as f64 + (16 * MIB) as f64 * (t / 120.0).floor()
    });
    let (i, _, _) = first_leak(spec(), &series).expect("fires");
    assert!(i <= 600, "{i}");
}

#[test]
fn irregular_sampling_still_behaves() {
    let mut rng = Rng(11);
    let mut series = Series::new();
    let mut noisy_flat = Series::new();
    let mut t = Duration::ZERO;
    while t < 3 * WINDOW {
        let r = rng.unit();
        if r < 0.03 {
            // A burst 20 ms apart, as the sampler does near the memory limit, with churn.
            for _ in 0..50 {
                t += Duration::from_millis(20);
                let churn = 4.0 * rng.unit() * MIB as f64;
                series.push((t, (leak_at(2.0)(t.as_secs_f64()) + churn) as u64));
                noisy_flat.push((t, (BASE as f64 + churn) as u64));
            }
        } else {
            // Jittered period, sometimes a 30 s stall.
            t += if r < 0.05 {
                Duration::from_secs(30)
            } else {
                Duration::from_secs_f64(0.5 + rng.unit())
            };
            let churn = 2.0 * rng.unit() * MIB as f64;
            series.push((t, (leak_at(2.0)(t.as_secs_f64()) + churn) as u64));
            noisy_flat.push((t, (BASE as f64 + churn) as u64));
        }
    }
    let (i, at, _) = first_leak(spec(), &series).expect("fires");
    eprintln!("irregular 2x leak: fires at sample {i}, {at:?}");
    assert!(at <= WINDOW, "{at:?}");
    let vs = verdicts(spec(), &noisy_flat);
    assert!(vs.iter().all(|v| !matches!(v, LeakVerdict::Leak { .. })));
    assert!(vs.iter().any(|v| matches!(v, LeakVerdict::NoLeak { .. })));
}

#[test]
fn gap_longer_than_the_window_starts_over() {
    let t0 = Instant::now();
    let mut w = LeakWatch::new(spec());
    let mut last = LeakVerdict::Unknown;
    for i in 0..600u64 {
        last = w.observe(t0 + Duration::from_secs(i), BASE + i * 2 * MIB);
    }
    assert!(matches!(last, LeakVerdict::Leak { .. }), "{last:?}");
    let later = t0 + Duration::from_secs(2000);
    assert_eq!(w.observe(later, BASE), LeakVerdict::Unknown);
    assert_eq!(w.points.len(), 1);
}

#[test]
fn fast_sampling_keeps_at_most_120_points() {
    let t0 = Instant::now();
    let mut w = LeakWatch::new(spec());
    let mut samples = 0;
    for i in 0..(2 * 600 * 50) {
        let at = t0 + Duration::from_millis(20 * i);
        let v = w.observe(at, BASE + i * 4096);
        assert!(w.points.len() <= BUCKETS as usize);
        if let LeakVerdict::Leak { samples: n, .. } = v {
            samples = n;
        }
    }
    assert_eq!(w.points.len(), BUCKETS as usize);
    // Every raw sample of the retained buckets is counted: 120 buckets of 5 s at 50 a second.
    assert_eq!(samples, 120 * 250);
}

#[test]
fn unknown_until_ten_points_span_80_percent() {
    let t0 = Instant::now();
    let mut w = LeakWatch::new(spec());
    // Nine points a minute apart (one per bucket) span 8 minutes: still too few.
    for i in 0..9u64 {
        let v = w.observe(t0 + Duration::from_secs(60 * i), BASE + i * 16 * MIB);
        assert_eq!(v, LeakVerdict::Unknown);
    }
    let v = w.observe(t0 + Duration::from_secs(540), BASE + 9 * 16 * MIB);
    assert!(matches!(v, LeakVerdict::Leak { samples: 10, .. }), "{v:?}");
}

#[test]
fn window_below_the_minimum_is_raised() {
    let w = LeakWatch::new(LeakSpec {
        growth: MIB,
        within: Duration::ZERO,
    });
    assert_eq!(w.spec().within, MIN_WINDOW);
}

#[test]
fn parse_leak_accepts_size_per_duration() {
    assert_eq!(parse_leak("64MiB/10m"), Ok(spec()));
    assert_eq!(
        parse_leak(" 1GiB / 1h "),
        Ok(LeakSpec {
            growth: 1 << 30,
            within: Duration::from_secs(3600),
        })
    );
    assert_eq!(parse_leak("1GiB/1h").map(|s| s.growth), Ok(1 << 30));
    assert_eq!(
        parse_leak("10MB/10s"),
        Ok(LeakSpec {
            growth: 10_000_000,
            within: MIN_WINDOW,
        })
    );
}

#[test]
fn parse_leak_rejects_malformed_zero_and_short() {
    for (input, needle) in [
        ("64MiB", "no '/'"),
        ("/10m", "missing size"),
        ("64MiB/", "missing duration"),
        ("0MiB/10m", "above zero"),
        ("64MiB/1s", "at least 10s"),
        ("64MiB/0s", "at least 10s"),
        ("lots/10m", "invalid leak size \"lots\""),
        ("64MiB/soon", "invalid leak window \"soon\""),
    ] {
        let e = parse_leak(input).expect_err(input);
        assert!(e.contains(needle), "{input}: {e}");
    }
}

fn gap() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..=50_000_000,
        0u64..=10_000_000_000,
        0u64..=3_600_000_000_000
    ]
}

fn finite(v: LeakVerdict) -> bool {
    match v {
        LeakVerdict::Unknown => true,
        LeakVerdict::NoLeak { slope_bytes_per_s } => slope_bytes_per_s.is_finite(),
        LeakVerdict::Leak {
            slope_bytes_per_s,
            samples,
            ..
        } => slope_bytes_per_s.is_finite() && samples > 0,
    }
}

proptest! {
    #[test]
    fn observe_never_panics_nor_returns_non_finite_slopes(
        growth in any::<u64>(),
        within_ms in 0u64..=86_400_000,
        steps in prop::collection::vec((gap(), any::<u64>()), 0..300),
    ) {
        let t0 = Instant::now();
        let mut w = LeakWatch::new(LeakSpec { growth, within: Duration::from_millis(within_ms) });
        let mut t = t0;
        for (gap, bytes) in steps {
            t += Duration::from_nanos(gap);
            let v = w.observe(t, bytes);
            prop_assert!(finite(v), "{:?}", v);
            prop_assert!(w.points.len() <= BUCKETS as usize);
        }
    }
}

proptest! {
    // Each case feeds up to 900 samples: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_steady_leak_at_or_above_the_rate_fires_at_80_percent_of_the_window(
        within_s in 10u64..=900,
        factor in 1.0f64..8.0,
    ) {
        let spec = LeakSpec { growth: 64 * MIB, within: Duration::from_secs(within_s) };
        let series = every_second(within_s + 1, |t| BASE as f64 + factor * spec.rate() * t);
        // As soon as the history spans 80 % of the window (and holds ten points).
        let by = (0.8 * within_s as f64).ceil().max(9.0) + 1.0;
        let fired = first_leak(spec, &series).map(|(_, at, _)| at.as_secs_f64());
        prop_assert!(fired.is_some_and(|at| at <= by), "{:?}: {:?}", spec, fired);
    }
}
