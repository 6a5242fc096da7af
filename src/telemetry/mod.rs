//! What camhub counts about itself: the metrics registry and its latency
//! histograms (`metrics`), the process's own metrics (`process`), per-camera
//! counters (`stats`) and memory accounting with budgets (`memory`). Plain data
//! that every floor above may bump; the hub owns the registry, `api::metrics` serves it.

pub mod memory;
pub mod metrics;
mod process;
pub mod repeats;
pub mod stats;
