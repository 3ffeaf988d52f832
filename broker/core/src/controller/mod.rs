//! The pure half of the controller quorum: [`logic`] (metadata records, the image they
//! build, the active controller's decisions) and [`store`] (where a controller keeps what
//! Raft asks it to make durable, through the storage trait). The node shell that drives
//! them over sockets is `faultline::controller::node` in the shell crate.

pub mod logic;
pub mod store;

/// Largest controller frame either side accepts (and largest metadata log entry): a full
/// metadata image of a big cluster fits.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;
