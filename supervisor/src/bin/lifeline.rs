//! `supervise-lifeline`: the lifeline as a program of its own (see `supervisor::lifeline`).
//!
//! It is the poll loop over the supervisor's pipe and the pidfds it holds, and nothing else of
//! supervise: no async runtime, no command-line parser, no logging. Its resident memory is a
//! fraction of `supervise __lifeline`'s, which maps the whole supervisor to run the same loop.
//! Its arguments are ignored (supervise passes `__lifeline`, so the process reads the same in
//! `ps` whichever program runs it).

fn main() {
    supervisor::lifeline::serve();
}
