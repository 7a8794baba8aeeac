//! Config values that validate themselves while deserializing, so that every error carries the
//! key path and the line: durations, sizes, rates, signals, fractions, the command.

use std::time::Duration;

use serde::{de, Deserialize, Deserializer};

use super::{
    check_events_max, check_factor, check_history_max, check_jitter, check_log_buffer,
    check_replicas, check_sample_every, check_warn_at, parse_duration, parse_metrics_addr,
    parse_signal, parse_size, MAX_REPLICAS,
};

/// A replica count, 1 to [`MAX_REPLICAS`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Replicas(pub(super) u32);

impl Default for Replicas {
    fn default() -> Self {
        Self(1)
    }
}

impl<'de> Deserialize<'de> for Replicas {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        u32::try_from(n)
            .map_err(|_| format!("must be between 1 and {MAX_REPLICAS}, got {n}"))
            .and_then(check_replicas)
            .map(Replicas)
            .map_err(de::Error::custom)
    }
}

/// Declares a newtype deserialized from a string through a validating parser.
macro_rules! parsed_str {
    ($name:ident, $t:ty, $expecting:literal, $parse:expr) => {
        #[derive(Debug, Clone, Copy)]
        pub(super) struct $name(pub(super) $t);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)
                    .map_err(|_| de::Error::custom(concat!("expected ", $expecting)))?;
                let parse: fn(&str) -> Result<$t, String> = $parse;
                parse(&s).map($name).map_err(de::Error::custom)
            }
        }
    };
}

parsed_str!(
    Dur,
    Duration,
    "a duration string such as \"10s\"",
    parse_duration
);
parsed_str!(
    NonZeroDur,
    Duration,
    "a duration string such as \"60s\"",
    |s| {
        parse_duration(s).and_then(|d| {
            if d.is_zero() {
                Err("must be longer than 0".to_owned())
            } else {
                Ok(d)
            }
        })
    }
);
parsed_str!(
    SampleEvery,
    Duration,
    "a duration string such as \"1s\"",
    |s| { parse_duration(s).and_then(check_sample_every) }
);
parsed_str!(
    Rate,
    u64,
    "a rate such as \"256KiB/s\"",
    super::watch::parse_rate
);
parsed_str!(
    Leak,
    crate::leak::LeakSpec,
    "a leak rate such as \"64MiB/10m\"",
    crate::leak::parse_leak
);
parsed_str!(
    MetricsAddr,
    std::net::SocketAddr,
    "an address such as \"127.0.0.1:9100\" or \":9100\"",
    parse_metrics_addr
);
parsed_str!(
    SigName,
    crate::signals::Sig,
    "a signal name such as \"TERM\"",
    parse_signal
);

/// A size given as a string (`"64MiB"`) or a plain integer number of bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Size(pub(super) u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Int(u64),
            Str(String),
        }
        match Either::deserialize(d).map_err(|_| {
            de::Error::custom("expected a size such as \"64MiB\" or a number of bytes")
        })? {
            Either::Int(n) => Ok(Size(n)),
            Either::Str(s) => parse_size(&s).map(Size).map_err(de::Error::custom),
        }
    }
}

/// A memory limit: a non-zero size, refused when written without a unit under 1 MiB
/// (see [`crate::plan::check_memory_size`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct MemSize(pub(super) u64);

impl<'de> Deserialize<'de> for MemSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Int(u64),
            Str(String),
        }
        let n = match Either::deserialize(d)
            .map_err(|_| de::Error::custom("expected a size such as \"512MiB\""))?
        {
            Either::Int(n) => crate::plan::check_memory_size(n, true),
            Either::Str(s) => crate::plan::parse_memory_size(&s),
        }
        .map_err(de::Error::custom)?;
        if n == 0 {
            return Err(de::Error::custom("must be more than 0"));
        }
        Ok(MemSize(n))
    }
}

/// A size (`Size`'s syntax) that `$check` accepts.
macro_rules! checked_size {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub(super) struct $name(pub(super) u64);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let Size(n) = Size::deserialize(d)?;
                $check(n).map($name).map_err(de::Error::custom)
            }
        }
    };
}

checked_size!(
    /// The history file's rotation size: a size of at least 64 KiB.
    HistoryMax,
    check_history_max
);
checked_size!(
    /// A worker's log buffer for `supervise logs`.
    LogBuffer,
    check_log_buffer
);
checked_size!(
    /// The events file's rotation size: 0 (never) or at least 1 KiB.
    EventsMax,
    check_events_max
);

macro_rules! checked_f64 {
    ($name:ident, $check:expr) => {
        #[derive(Debug, Clone, Copy)]
        pub(super) struct $name(pub(super) f64);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let check: fn(f64) -> Result<f64, String> = $check;
                check(f64::deserialize(d)?)
                    .map($name)
                    .map_err(de::Error::custom)
            }
        }
    };
}

checked_f64!(Factor, check_factor);
checked_f64!(Jitter, check_jitter);
checked_f64!(WarnAt, check_warn_at);
checked_f64!(Hysteresis, |h| {
    if (0.0..0.5).contains(&h) {
        Ok(h)
    } else {
        Err(format!(
            "hysteresis must be at least 0.0 and below 0.5, got {h}"
        ))
    }
});

/// A non-empty argv of non-empty strings.
#[derive(Debug, Clone)]
pub(super) struct Command(pub(super) Vec<String>);

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<String>::deserialize(d).map_err(|_| {
            de::Error::custom(
                "expected an array of strings, e.g. [\"./api\", \"--port\", \"8080\"]",
            )
        })?;
        if v.is_empty() || v[0].is_empty() {
            return Err(de::Error::custom("must name a program to run"));
        }
        Ok(Command(v))
    }
}
