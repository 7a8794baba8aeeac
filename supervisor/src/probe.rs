//! What the kernel says about workers: per-process /proc files ([`proc`]) and whole process trees
//! ([`tree`]), looked at on one shared grid of instants (`grid`).

pub(crate) mod grid;
pub(crate) mod parse;
pub mod proc;
pub mod tree;
