//! A controller node: the async shell around one Raft member and, while it is the active
//! controller, the controller's decisions.

use crate::storage::Storage;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything a controller node needs to start. Settings by Kafka name via `apply_one`.
#[derive(Debug, Clone)]
pub struct ControllerNodeConfig {
    /// `node.id`
    pub node_id: i32,
    /// `listeners`
    pub listen: SocketAddr,
    /// `controller.quorum.voters`
    pub voters: Vec<(i32, SocketAddr)>,
    /// `metadata.log.dir`
    pub data_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerStartError {
    #[error("not built yet")]
    NotBuilt,
}

pub struct ControllerNode {}

/// Fault injection and inspection from outside the node (the lab).
#[derive(Clone)]
pub struct ControllerControl {}

impl ControllerNode {
    pub async fn start(
        _config: ControllerNodeConfig,
        _storage: Arc<dyn Storage>,
    ) -> Result<ControllerNode, ControllerStartError> {
        Err(ControllerStartError::NotBuilt)
    }

    pub fn control(&self) -> ControllerControl {
        ControllerControl {}
    }
}

impl ControllerControl {
    /// Whether this node is the active controller now.
    pub fn is_active(&self) -> bool {
        false
    }

    /// Skew the node's wall clock (its timers use the monotonic clock, as Kafka's do).
    pub fn set_clock_offset_ms(&self, _offset_ms: i64) {}
}
