use std::collections::VecDeque;

use super::*;
use crate::plan::Measure;

const S: Duration = Duration::from_secs(1);

fn backoff() -> Backoff {
    Backoff {
        first: Duration::from_millis(100),
        max: Duration::from_secs(2),
        factor: 2.0,
        jitter: 0.0,
    }
}

fn intensity() -> Intensity {
    Intensity {
        max: 3,
        within: Duration::from_secs(10),
    }
}

fn decide(
    mode: RestartMode,
    h: &mut History,
    exit: Exit,
    req: Option<Reason>,
    now: Instant,
) -> AfterExit {
    rules(mode, &backoff(), &intensity()).after_exit(h, exit, req, now, 0.5)
}

fn rules<'a>(mode: RestartMode, backoff: &'a Backoff, intensity: &'a Intensity) -> Rules<'a> {
    Rules {
        mode,
        backoff,
        intensity,
        too_soon: false,
    }
}

#[test]
fn restart_modes() {
    let t = Instant::now();
    for (mode, exit, restarts) in [
        (RestartMode::Always, Exit::Code(0), true),
        (RestartMode::Always, Exit::Code(1), true),
        (RestartMode::Always, Exit::Signal(9), true),
        (RestartMode::OnFailure, Exit::Code(0), false),
        (RestartMode::OnFailure, Exit::Code(3), true),
        (RestartMode::OnFailure, Exit::Signal(15), true),
        (RestartMode::Never, Exit::Code(1), false),
        (RestartMode::Never, Exit::Signal(9), false),
    ] {
        let got = decide(mode, &mut History::default(), exit, None, t);
        assert_eq!(
            matches!(
                got,
                AfterExit::Restart {
                    reason: Reason::Exit,
                    ..
                }
            ),
            restarts,
            "{mode:?} {exit:?}: {got:?}"
        );
        if !restarts {
            assert_eq!(got, AfterExit::Done);
        }
    }
}

#[test]
fn requested_restarts_ignore_the_mode() {
    let t = Instant::now();
    for mode in [
        RestartMode::Always,
        RestartMode::OnFailure,
        RestartMode::Never,
    ] {
        let got = decide(
            mode,
            &mut History::default(),
            Exit::Signal(15),
            Some(Reason::Memory),
            t,
        );
        assert!(
            matches!(
                got,
                AfterExit::Restart {
                    reason: Reason::Memory,
                    ..
                }
            ),
            "{got:?}"
        );
    }
}

#[test]
fn operator_restarts_are_no_failures() {
    let t = Instant::now();
    let mut h = History::default();
    // Any number of manual restarts, even with the intensity spent: each starts at once.
    for k in 0..10 {
        assert_eq!(
            decide(
                RestartMode::Never,
                &mut h,
                Exit::Signal(15),
                Some(Reason::Manual),
                t + S * k
            ),
            AfterExit::Restart {
                reason: Reason::Manual,
                delay: Duration::ZERO
            }
        );
    }
    // ... and they left no trace: the first failure backs off by `first`.
    assert_eq!(h.recent(t + S * 10, intensity().within), 0);
    assert!(matches!(
        decide(RestartMode::Always, &mut h, Exit::Code(1), None, t + S * 10),
        AfterExit::Restart { delay, .. } if delay == Duration::from_millis(100)
    ));
}

/// Every reason the supervisor restarts for, handled or not, in time or too soon: handled ones
/// (operator, memory, leak, recycle) start at once and leave no trace in the intensity or the
/// backoff; the others, and a memory restart of an incarnation younger than `min_uptime`, count
/// and back off, and end fatal once the intensity is spent.
#[test]
fn handled_restarts_are_no_failures_unless_too_soon() {
    let t = Instant::now();
    let (b, i) = (backoff(), intensity());
    for reason in Reason::ALL {
        for too_soon in [false, true] {
            let r = Rules {
                too_soon,
                ..rules(RestartMode::Never, &b, &i)
            };
            let mut h = History::default();
            let got: Vec<AfterExit> = (0..5)
                .map(|k| r.after_exit(&mut h, Exit::Signal(15), Some(reason), t + S * k, 0.5))
                .collect();
            let handled = matches!(
                reason,
                Reason::Manual | Reason::Memory | Reason::Leak | Reason::Recycle | Reason::Pressure
            ) && !(too_soon && reason != Reason::Manual);
            let want: Vec<AfterExit> = if handled {
                vec![
                    AfterExit::Restart {
                        reason,
                        delay: Duration::ZERO
                    };
                    5
                ]
            } else {
                vec![
                    AfterExit::Restart {
                        reason,
                        delay: Duration::from_millis(100),
                    },
                    AfterExit::Restart {
                        reason,
                        delay: Duration::from_millis(200),
                    },
                    AfterExit::Restart {
                        reason,
                        delay: Duration::from_millis(400),
                    },
                    AfterExit::Fatal { restarts: 3 },
                    AfterExit::Fatal { restarts: 3 },
                ]
            };
            assert_eq!(got, want, "{reason:?}, too soon: {too_soon}");
            assert_eq!(
                is_handled(reason) && !(too_soon && reason != Reason::Manual),
                handled
            );
        }
    }
}

#[test]
fn backoff_doubles_then_caps_and_intensity_goes_fatal() {
    let t = Instant::now();
    let mut h = History::default();
    let i = Intensity {
        max: 6,
        within: Duration::from_secs(600),
    };
    let delays: Vec<_> = (0..6)
        .map(|k| {
            match rules(RestartMode::Always, &backoff(), &i).after_exit(
                &mut h,
                Exit::Code(1),
                None,
                t + S * k,
                0.5,
            ) {
                AfterExit::Restart { delay, .. } => delay.as_millis(),
                other => panic!("{other:?}"),
            }
        })
        .collect();
    assert_eq!(delays, [100, 200, 400, 800, 1600, 2000]);
    assert_eq!(
        rules(RestartMode::Always, &backoff(), &i).after_exit(
            &mut h,
            Exit::Code(1),
            None,
            t + S * 6,
            0.5
        ),
        AfterExit::Fatal { restarts: 6 }
    );
}

#[test]
fn intensity_window_slides() {
    let t = Instant::now();
    let mut h = History::default();
    for k in 0..3 {
        assert!(matches!(
            decide(RestartMode::Always, &mut h, Exit::Code(1), None, t + S * k),
            AfterExit::Restart { .. }
        ));
    }
    // Fourth within 10 s: fatal.
    assert_eq!(
        decide(
            RestartMode::Always,
            &mut h.clone(),
            Exit::Code(1),
            None,
            t + S * 5
        ),
        AfterExit::Fatal { restarts: 3 }
    );
    // At t+10s the first restart has left the window: allowed again, and backoff shrinks with it.
    match decide(RestartMode::Always, &mut h, Exit::Code(1), None, t + S * 10) {
        AfterExit::Restart { delay, .. } => assert_eq!(delay, Duration::from_millis(400)),
        other => panic!("{other:?}"),
    }
    // Long calm: the history empties and backoff starts over.
    match decide(
        RestartMode::Always,
        &mut h,
        Exit::Code(1),
        None,
        t + S * 100,
    ) {
        AfterExit::Restart { delay, .. } => assert_eq!(delay, Duration::from_millis(100)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn zero_max_is_fatal_at_first_restart() {
    let i = Intensity { max: 0, within: S };
    let got = rules(RestartMode::Always, &backoff(), &i).after_exit(
        &mut History::default(),
        Exit::Code(1),
        None,
        Instant::now(),
        0.5,
    );
    assert_eq!(got, AfterExit::Fatal { restarts: 0 });
}

#[test]
fn jitter_stays_within_bounds() {
    let b = Backoff {
        jitter: 0.1,
        ..backoff()
    };
    for r in [0.0, 0.25, 0.5, 0.999] {
        let d = backoff_delay(&b, 1, r).as_secs_f64();
        assert!((0.18..=0.22).contains(&d), "{r}: {d}");
    }
    assert_eq!(
        backoff_delay(&b, 40, 0.999),
        b.max,
        "jitter never exceeds max"
    );
    let zero = Backoff {
        first: Duration::ZERO,
        ..b
    };
    assert_eq!(backoff_delay(&zero, 3, 0.7), Duration::ZERO);
}

#[test]
fn zero_backoff_stays_zero_however_many_restarts() {
    // factor^n overflows to infinity past n = 1023 (2^1024): 0 × ∞ must not become `max`.
    let zero = Backoff {
        first: Duration::ZERO,
        jitter: 0.1,
        ..backoff()
    };
    for n in [1023, 1024, 5000, u32::MAX] {
        assert_eq!(backoff_delay(&zero, n, 0.5), Duration::ZERO, "{n}");
    }
    // A non-zero one is capped at max, never NaN.
    assert_eq!(backoff_delay(&backoff(), u32::MAX, 0.5), backoff().max);
}

fn mem(max: u64, count: u32) -> MemorySpec {
    MemorySpec {
        max,
        measure: Measure::Rss,
        count,
        hysteresis: 0.1,
        warn_at: None,
    }
}

#[test]
fn memory_needs_consecutive_samples() {
    let spec = mem(1000, 3);
    let mut w = MemoryWatch::default();
    assert_eq!(w.observe(&spec, 1001), MemoryVerdict::Over { count: 1 });
    assert_eq!(w.observe(&spec, 1500), MemoryVerdict::Over { count: 2 });
    assert_eq!(w.observe(&spec, 1200), MemoryVerdict::Restart { count: 3 });
}

#[test]
fn memory_hysteresis_band_holds_the_count() {
    let spec = mem(1000, 3);
    let mut w = MemoryWatch::default();
    w.observe(&spec, 1100);
    w.observe(&spec, 1100);
    // 950 is under the limit but above the low-water mark (900): the count holds.
    assert_eq!(w.observe(&spec, 950), MemoryVerdict::Ok);
    assert_eq!(w.count(), 2);
    assert_eq!(w.observe(&spec, 1100), MemoryVerdict::Restart { count: 3 });
    // Below the low-water mark: forgiven.
    let mut w = MemoryWatch::default();
    w.observe(&spec, 1100);
    w.observe(&spec, 899);
    assert_eq!(w.count(), 0);
    assert_eq!(w.observe(&spec, 1100), MemoryVerdict::Over { count: 1 });
    // Exactly at the limit is not over.
    assert_eq!(
        MemoryWatch::default().observe(&spec, 1000),
        MemoryVerdict::Ok
    );
}

#[test]
fn memory_for_one_acts_at_once() {
    assert_eq!(
        MemoryWatch::default().observe(&mem(10, 1), 11),
        MemoryVerdict::Restart { count: 1 }
    );
}

#[test]
fn sampling_speeds_up_near_the_limit() {
    let t = Instant::now();
    let every = S;
    let mib = 1 << 20;
    // No limit, no history, flat or shrinking: the base period.
    assert_eq!(
        next_sample(every, None, Some((t, 0)), (t + S, 10 * mib)),
        every
    );
    assert_eq!(
        next_sample(every, Some(100 * mib), None, (t, 10 * mib)),
        every
    );
    assert_eq!(
        next_sample(
            every,
            Some(100 * mib),
            Some((t, 50 * mib)),
            (t + S, 50 * mib)
        ),
        every
    );
    // 10 MiB/s, 50 MiB to go: 5 s away, a quarter is more than the period.
    assert_eq!(
        next_sample(
            every,
            Some(100 * mib),
            Some((t, 40 * mib)),
            (t + S, 50 * mib)
        ),
        every
    );
    // 10 MiB/s, 4 MiB to go: 0.4 s away -> 100 ms.
    let d = next_sample(
        every,
        Some(100 * mib),
        Some((t, 86 * mib)),
        (t + S, 96 * mib),
    );
    assert!((d.as_secs_f64() - 0.1).abs() < 1e-6, "{d:?}");
    // Almost there: floored at MIN_SAMPLE.
    assert_eq!(
        next_sample(
            every,
            Some(100 * mib),
            Some((t, 89 * mib)),
            (t + S, 100 * mib - 1)
        ),
        MIN_SAMPLE
    );
    // Over the limit: confirmation comes fast, growing or not.
    for before in [99 * mib, 101 * mib, 120 * mib] {
        assert_eq!(
            next_sample(
                every,
                Some(100 * mib),
                Some((t, before)),
                (t + S, 101 * mib)
            ),
            CONFIRM_EVERY
        );
    }
    // ... never slower than the period itself.
    assert_eq!(
        next_sample(
            Duration::from_millis(10),
            Some(100 * mib),
            None,
            (t, 101 * mib)
        ),
        Duration::from_millis(10)
    );
}

/// The sampler and the memory watch together, on a simulated tree that grows at `rate` bytes/s
/// from `start` (with `flat` seconds of no growth first): how long after crossing `limit` the
/// restart comes, and the tree's size then. Samples take no time.
fn simulate(rate: f64, start: u64, flat: f64, limit: u64, count: u32) -> (Duration, u64) {
    let every = Duration::from_secs(1);
    let spec = MemorySpec {
        max: limit,
        measure: crate::plan::Measure::Rss,
        count,
        hysteresis: 0.05,
        warn_at: None,
    };
    let t0 = Instant::now();
    let size = |t: f64| start + (rate * (t - flat).max(0.0)) as u64;
    let crossing = flat + (limit - start) as f64 / rate;
    let mut watch = MemoryWatch::default();
    let mut recent: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut t = 0.0f64;
    loop {
        let now = t0 + Duration::from_secs_f64(t);
        let b = size(t);
        if let MemoryVerdict::Restart { .. } = watch.observe(&spec, b) {
            return (Duration::from_secs_f64((t - crossing).max(0.0)), b);
        }
        while recent
            .front()
            .is_some_and(|&(r, _)| now.duration_since(r) > 2 * every)
        {
            recent.pop_front();
        }
        let d = next_sample(every, Some(limit), recent.front().copied(), (now, b));
        recent.push_back((now, b));
        t += d.as_secs_f64();
        assert!(t < 3600.0, "never restarted");
    }
}

#[test]
fn the_default_for_3_stops_a_steady_leak_within_a_tenth_of_a_second_of_the_limit() {
    let mib = 1u64 << 20;
    let limit = 100 * mib;
    // A steady leak, whatever its phase against the samples: 10 MiB/s from well below.
    for start in [20, 37, 50, 63, 80] {
        let (over, peak) = simulate(10.0 * mib as f64, start * mib, 0.0, limit, 3);
        assert!(over <= Duration::from_millis(150), "{start}: {over:?}");
        assert!(peak <= 102 * mib, "{start}: {} MiB", peak / mib);
    }
    // Faster steady leaks too, as long as one regular sample sees them growing before they cross
    // (R x every < the limit here): then the last stretch is sampled ever closer.
    for rate in [1u64, 10, 50, 80, 99] {
        let (over, _) = simulate((rate * mib) as f64, 0, 0.0, limit, 3);
        assert!(over <= Duration::from_millis(150), "{rate} MiB/s: {over:?}");
    }
}

#[test]
fn what_the_schedule_cannot_see_a_leak_that_starts_right_after_a_sample() {
    let mib = 1u64 << 20;
    let limit = 100 * mib;
    // Flat at 95 MiB, then 20 MiB/s from just after a sample: crossing 0.25 s later, unseen
    // until the next regular sample at 1 s, 15 MiB over (R x every - D), then 2 confirmations.
    let (over, peak) = simulate(20.0 * mib as f64, 95 * mib, 1.001, limit, 3);
    assert!(over >= Duration::from_millis(700), "{over:?}");
    assert!(peak >= 115 * mib, "{} MiB", peak / mib);
    // The same leak starting further below (D > R x every) is seen growing first, and caught.
    let (over, _) = simulate(20.0 * mib as f64, 50 * mib, 1.001, limit, 3);
    assert!(over <= Duration::from_millis(150), "{over:?}");
}

#[test]
fn heartbeat_judgement() {
    let s = 1_000_000_000u64;
    let t = Some(Duration::from_secs(5));
    assert_eq!(
        heartbeat(100 * s, 0, t),
        Heartbeat::Unwatched,
        "never written"
    );
    assert_eq!(
        heartbeat(100 * s, 99 * s, None),
        Heartbeat::Unwatched,
        "not watched"
    );
    assert_eq!(heartbeat(100 * s, 99 * s, t), Heartbeat::Fresh { age: S });
    assert_eq!(
        heartbeat(100 * s, 94 * s, t),
        Heartbeat::Stale { age: 6 * S }
    );
    assert_eq!(
        heartbeat(100 * s, 95 * s, t),
        Heartbeat::Fresh { age: 5 * S },
        "at the timeout is still fresh"
    );
    assert_eq!(
        heartbeat(100 * s, 100 * s + 50_000_000, t),
        Heartbeat::Fresh {
            age: Duration::ZERO
        }
    );
    assert_eq!(
        heartbeat(100 * s, 102 * s, t),
        Heartbeat::Future { ahead: 2 * S }
    );
    assert_eq!(
        heartbeat(100 * s, u64::MAX, t),
        Heartbeat::Future {
            ahead: Duration::from_nanos(u64::MAX - 100 * s)
        }
    );
}

#[test]
fn pressure_warns_once_per_crossing() {
    let spec = MemorySpec {
        warn_at: Some(0.8),
        ..mem(1000, 3)
    };
    let mut w = PressureWatch::default();
    assert!(!w.observe(&spec, 700));
    assert!(w.observe(&spec, 800));
    assert!(!w.observe(&spec, 900), "once");
    assert!(
        !w.observe(&spec, 750),
        "inside the hysteresis band: still warned"
    );
    assert!(!w.observe(&spec, 850));
    assert!(!w.observe(&spec, 700), "below 800 * 0.9 = 720: re-armed");
    assert!(w.observe(&spec, 810));
    let none = mem(1000, 3);
    assert!(
        !PressureWatch::default().observe(&none, 5000),
        "no warn_at, no warning"
    );
}

proptest::proptest! {
    /// However many restarts, however steep the factor: a zero first delay stays zero, a delay
    /// never exceeds `max`, and without jitter it never shrinks as restarts add up.
    #[test]
    fn backoff_saturates(
        n in 0u32..=1_000_000,
        factor in 1.0f64..=100.0,
        first_ms in 0u64..=60_000,
        extra_ms in 0u64..=3_600_000,
        jitter in 0.0f64..=1.0,
        rand in 0.0f64..1.0,
    ) {
        let b = Backoff {
            first: Duration::from_millis(first_ms),
            max: Duration::from_millis(first_ms + extra_ms),
            factor,
            jitter,
        };
        let d = backoff_delay(&b, n, rand);
        proptest::prop_assert!(d <= b.max);
        if first_ms == 0 {
            proptest::prop_assert_eq!(d, Duration::ZERO);
        }
        let steady = Backoff { jitter: 0.0, ..b };
        let (now, next) = (backoff_delay(&steady, n, rand), backoff_delay(&steady, n.saturating_add(1), rand));
        // Rounding of exp(ln(...)) may wobble by a few nanoseconds, never more.
        proptest::prop_assert!(next + Duration::from_nanos(64) >= now, "{now:?} then {next:?}");
    }
}

#[test]
fn zero_backoff_stays_zero_after_any_number_of_restarts() {
    let b = Backoff {
        first: Duration::ZERO,
        ..Backoff::default()
    };
    for n in [0, 1, 1023, 1024, 1025, 100_000, u32::MAX] {
        assert_eq!(backoff_delay(&b, n, 0.5), Duration::ZERO, "{n}");
    }
    let b = Backoff::default();
    for n in [30, 1024, 1025, u32::MAX] {
        let d = backoff_delay(&b, n, 0.5);
        assert_eq!(d, b.max, "{n}");
    }
    // A huge max does not overflow the conversion either.
    let b = Backoff {
        max: Duration::from_secs(u64::MAX),
        ..Backoff::default()
    };
    assert!(backoff_delay(&b, u32::MAX, 0.99) <= b.max);
}

#[test]
fn siblings_count_toward_the_intensity_but_not_toward_the_backoff() {
    let t = Instant::now();
    let i = Intensity {
        max: 100,
        within: Duration::from_secs(60),
    };
    let mut program = History::default();
    // Ten replicas killed at once: each one's first restart waits the first delay, not 2^k of it.
    for _ in 0..10 {
        let mut own = History::default();
        let got = rules(RestartMode::Always, &backoff(), &i).after_exit_of(
            &mut program,
            &mut own,
            Exit::Signal(9),
            None,
            t,
            0.5,
        );
        assert_eq!(
            got,
            AfterExit::Restart {
                reason: Reason::Exit,
                delay: Duration::from_millis(100)
            }
        );
    }
    assert_eq!(program.recent(t, i.within), 10);
    // One instance crash-looping still backs off on its own count.
    let mut own = History::default();
    let delays: Vec<_> = (0..3)
        .map(|k| {
            match rules(RestartMode::Always, &backoff(), &i).after_exit_of(
                &mut program,
                &mut own,
                Exit::Code(1),
                None,
                t + S * k,
                0.5,
            ) {
                AfterExit::Restart { delay, .. } => delay.as_millis(),
                other => panic!("{other:?}"),
            }
        })
        .collect();
    assert_eq!(delays, [100, 200, 400]);
    // And the program's intensity counts everyone.
    let small = Intensity {
        max: 13,
        within: i.within,
    };
    assert_eq!(
        rules(RestartMode::Always, &backoff(), &small).after_exit_of(
            &mut program,
            &mut History::default(),
            Exit::Code(1),
            None,
            t + S * 3,
            0.5
        ),
        AfterExit::Fatal { restarts: 13 }
    );
}

#[test]
fn the_capacity_guard_lets_one_out_at_a_time_and_the_ceiling_through() {
    const M: u64 = 100;
    for (others_out, max_unavailable, bytes, ceiling, want) in [
        (0, 1, 120, Some(150), Capacity::Go),
        (1, 1, 120, Some(150), Capacity::Wait { out: 1 }),
        (3, 1, 149, Some(150), Capacity::Wait { out: 3 }),
        (1, 2, 120, Some(150), Capacity::Go),
        (2, 2, 120, Some(150), Capacity::Wait { out: 2 }),
        // Past the ceiling: at once, however many are out.
        (1, 1, 151, Some(150), Capacity::Ceiling),
        (9, 1, 151, Some(150), Capacity::Ceiling),
        (0, 1, 151, Some(150), Capacity::Ceiling),
        // At the ceiling is not past it.
        (1, 1, 150, Some(150), Capacity::Wait { out: 1 }),
        // No ceiling (a leak without a limit): the guard alone.
        (1, 1, u64::MAX, None, Capacity::Wait { out: 1 }),
        (0, 1, M, None, Capacity::Go),
    ] {
        assert_eq!(
            capacity(others_out, max_unavailable, bytes, ceiling),
            want,
            "{others_out} out of {max_unavailable}, {bytes} bytes, ceiling {ceiling:?}"
        );
    }
}

#[test]
fn the_member_to_recycle_holds_the_growth_and_is_never_the_root() {
    let m = |pid, first: u64, now: u64| MemberGrowth {
        pid,
        rss: now << 20,
        first_rss: first << 20,
    };
    for (members, want, why) in [
        // gunicorn: a master and four workers, one of which leaks.
        (
            vec![
                m(1, 20, 20),
                m(2, 30, 31),
                m(3, 30, 130),
                m(4, 30, 32),
                m(5, 30, 30),
            ],
            Some(3),
            "one worker holds the growth",
        ),
        (
            vec![m(1, 20, 120), m(2, 30, 31), m(3, 30, 40)],
            None,
            "the root grew most: the master leaks",
        ),
        (
            vec![m(1, 20, 20), m(2, 30, 60), m(3, 30, 60), m(4, 30, 62)],
            None,
            "the growth is spread: no member holds half",
        ),
        (
            vec![m(1, 20, 20), m(2, 30, 60), m(3, 30, 60)],
            Some(2),
            "half exactly, a tie: the lower pid",
        ),
        (vec![m(1, 20, 20), m(2, 30, 30)], None, "nothing grew"),
        (
            vec![m(1, 20, 20), m(2, 30, 10), m(3, 5, 15)],
            Some(3),
            "shrinking members add nothing",
        ),
        (vec![], None, "no members"),
        (vec![m(1, 10, 90)], None, "the root alone"),
        (
            vec![m(1, 20, 20), m(7, 0, 50)],
            Some(7),
            "a member that came later, at 0: all of it is growth",
        ),
    ] {
        assert_eq!(member_to_recycle(1, &members), want, "{why}");
    }
}

#[test]
fn the_time_a_trend_takes_to_reach_the_limit() {
    const M: u64 = 100 << 20;
    let mib_s = f64::from(1 << 20);
    for (bytes, slope, want) in [
        (M - (60 << 20), mib_s, Some(Duration::from_secs(60))),
        (M - (10 << 20), 2.0 * mib_s, Some(Duration::from_secs(5))),
        (M, mib_s, Some(Duration::ZERO)),
        (M + 1, 0.0, Some(Duration::ZERO)),
        (M / 2, 0.0, None),
        (M / 2, -mib_s, None),
        (M / 2, f64::NAN, None),
        (M / 2, f64::INFINITY, None),
        (0, f64::MIN_POSITIVE, None),
    ] {
        assert_eq!(time_to_limit(M, bytes, slope), want, "{bytes} at {slope}/s");
    }
}

#[test]
fn scheduled_recycles_are_spread_by_their_jitter() {
    let t = Instant::now();
    let day = Duration::from_secs(86_400);
    let hour = Duration::from_secs(3600);
    assert_eq!(recycle_at(t, day, hour, 0.5), t + day);
    assert_eq!(recycle_at(t, day, hour, 0.0), t + day - hour);
    assert!(recycle_at(t, day, hour, 0.999_999) <= t + day + hour);
    assert_eq!(recycle_at(t, day, Duration::ZERO, 0.9), t + day);
    // Out-of-range randomness is clamped, never a panic.
    assert_eq!(recycle_at(t, day, hour, 7.0), t + day + hour);
    assert_eq!(recycle_after_requests(10_000, 500, 0.5), 10_000);
    assert_eq!(recycle_after_requests(10_000, 500, 0.0), 9_500);
    assert_eq!(recycle_after_requests(10_000, 0, 0.3), 10_000);
    assert_eq!(recycle_after_requests(1, 0, 0.0), 1);
    assert_eq!(recycle_after_requests(u64::MAX, 1, 1.0), u64::MAX);
    // Spread over many draws: within the bounds, and not all the same.
    let draws: Vec<u64> = (0..100)
        .map(|k| recycle_after_requests(1000, 100, f64::from(k) / 100.0))
        .collect();
    assert!(draws.iter().all(|&d| (900..=1100).contains(&d)));
    assert!(draws.iter().min() < draws.iter().max());
}
