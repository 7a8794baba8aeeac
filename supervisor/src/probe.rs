//! What the kernel says about workers: per-process /proc files ([`proc`]) and whole process trees
//! ([`tree`]).

pub(crate) mod parse;
pub mod proc;
pub mod tree;
