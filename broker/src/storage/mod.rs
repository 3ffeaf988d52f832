//! The storage trait and its model come from the core crate; the shell adds the backends
//! that touch the world: the real file system (`FileStorage`) and, under `--cfg madsim`, a
//! per-node simulated disk (`SimStorage`) with true fsync semantics.

pub use faultline_core::storage::*;

pub mod file;
#[cfg(madsim)]
pub mod sim;

#[cfg(test)]
mod conformance;

pub use file::FileStorage;
#[cfg(madsim)]
pub use sim::{SimDisk, SimStorage};
