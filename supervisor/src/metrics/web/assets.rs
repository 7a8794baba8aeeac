//! The page, its script and its style, built into the binary: nothing is fetched from anywhere
//! else, and nothing needs building.

use crate::metrics::Answer;

const PAGE: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// Bytes of everything the page loads.
pub const TOTAL_BYTES: usize = PAGE.len() + SCRIPT.len() + STYLE.len();

// The page stays small: no framework, no bundle.
const _: () = assert!(
    TOTAL_BYTES < 200 * 1024,
    "the dashboard must stay under 200 KiB"
);

fn asset(content_type: &'static str, body: &'static str) -> Answer {
    Answer {
        status: 200,
        content_type,
        body: body.as_bytes().into(),
        head_only: false,
        varies: false,
        headers: Vec::new(),
    }
}

pub(super) fn page() -> Answer {
    asset("text/html; charset=utf-8", PAGE)
}

pub(super) fn script() -> Answer {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub(super) fn style() -> Answer {
    asset("text/css; charset=utf-8", STYLE)
}
