//! The controller quorum (KRaft's role): controller nodes replicate the metadata log with
//! the Raft core in `crate::raft`; the active one decides (broker sessions and fencing,
//! leader election, ISR changes, topic creation and placement) in `logic`, and every broker
//! learns the outcome as a metadata image through its heartbeats.
//!
//! - [`logic`] (core crate): pure: metadata records, the image they build, the active
//!   controller's decisions.
//! - [`node`]: the async shell of a controller node (Raft driver, persistence, sockets).
//! - [`store`] (core crate): the node's durable term, vote and metadata log.
//! - [`rpc`]: the frames controllers and brokers exchange.
//! - [`client`]: how brokers and tools reach the active controller.

pub mod client;
pub mod node;
pub mod rpc;

pub use faultline_core::controller::{logic, store};

pub use client::ControllerClient;
pub use node::{ControllerControl, ControllerNode, ControllerNodeConfig};
