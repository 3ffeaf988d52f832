//! The controller quorum (KRaft's role): controller nodes replicate the metadata log with
//! the Raft core in `crate::raft`, the active one decides (broker sessions and fencing,
//! leader election, ISR changes, topic creation) and every broker learns the outcome.

pub mod node;
pub mod rpc;

pub use node::{ControllerControl, ControllerNode, ControllerNodeConfig};
