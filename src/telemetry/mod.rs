//! What camhub counts about itself: latency histograms (`metrics`), per-camera
//! counters (`stats`) and memory accounting with budgets (`memory`). Plain data
//! that every floor above may bump; `api::metrics` renders it.

pub mod memory;
pub mod metrics;
pub mod stats;
