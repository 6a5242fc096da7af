//! The command line's own work beside `serve`: `probe` (what a camera sends)
//! and the built-in `demo` cameras.

pub mod demo;
pub mod probe;
