//! The simulated cluster's machines as the harness sees them: addresses, ports, the
//! controller quorum's voters, and the handles fault injection acts through.

use crate::invariants::CONTROLLER_ID_BASE;
use faultline::controller::ControllerControl;
use faultline::server::BrokerControl;
use madsim::task::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};

/// Broker port on every broker node.
pub(super) const BROKER_PORT: u16 = 9092;
/// Controller port on every controller node (each controller has its own IP).
pub(super) const CONTROLLER_PORT: u16 = 9093;

pub(super) type Controls = BTreeMap<NodeId, Arc<Mutex<Option<BrokerControl>>>>;
/// The running incarnation's control handle of each controller, in controller order.
pub(super) type ControllerControls = Vec<(String, NodeId, Arc<Mutex<Option<ControllerControl>>>)>;
/// Injected clock offset per node name (brokers and producers), in milliseconds. Lives in
/// the harness, so it survives restarts as a machine's clock would.
pub(super) type Clocks = BTreeMap<String, Arc<AtomicI64>>;
pub(super) type Down = Mutex<BTreeSet<NodeId>>;

pub(super) fn broker_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, i as u8))
}

pub(super) fn controller_ip(k: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 4, k as u8))
}

/// The lab's view of `controller.quorum.voters`: controller-K is node 1000 + K.
pub(super) fn controller_voters(controllers: usize) -> Vec<(i32, SocketAddr)> {
    (1..=controllers)
        .map(|k| {
            (
                CONTROLLER_ID_BASE + k as i32,
                SocketAddr::new(controller_ip(k), CONTROLLER_PORT),
            )
        })
        .collect()
}

/// What fault injection needs to know about the cluster's nodes.
pub(super) struct Cluster {
    /// Every simulated node by scenario name (brokers, controllers, clients).
    pub(super) ids: BTreeMap<String, NodeId>,
    /// broker-1 .. broker-N.
    pub(super) brokers: Vec<String>,
    pub(super) controls: Controls,
    pub(super) controllers: ControllerControls,
}

impl Cluster {
    /// A killed node's control handle belongs to a dead incarnation (a dead controller may
    /// still say it is active): drop it until the node's `init` sets a new one.
    pub(super) fn forget_control(&self, id: NodeId) {
        if let Some(c) = self.controls.get(&id) {
            *c.lock().unwrap() = None;
        }
        for (_, c_id, c) in &self.controllers {
            if *c_id == id {
                *c.lock().unwrap() = None;
            }
        }
    }

    pub(super) fn broker(&self, id: i32) -> Option<(String, NodeId)> {
        let name = format!("broker-{id}");
        self.ids.get(&name).map(|n| (name, *n))
    }
}
