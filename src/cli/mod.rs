//! The command line's own work beside `serve`: `probe` (what a camera sends),
//! the built-in `demo` cameras and what `--version` says.

pub mod demo;
pub mod probe;
pub mod version;
