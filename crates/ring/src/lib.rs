//! camhub's shared-memory frame ring, the parts both sides share: the file's
//! layout (docs/shm.md, "Layout"), and the memory-ordered loads, stores and
//! futex waits on a mapped ring. The hub's writer (`src/output/ring.rs`) and the
//! Python client's reader (`clients/python`, through PyO3) are built from this
//! one crate, so the offsets and the ordering rules are written once.

pub mod layout;
pub mod map;

pub use map::{Mapping, Waited, wait_any};
