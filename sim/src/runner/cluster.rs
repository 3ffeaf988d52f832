//! The simulated cluster: one node per controller (ids 1001..) and per broker, both made by
//! one builder, [`server_node`], whose `init` reruns on every restart (so all node state
//! lives inside it); the admin node and the scenario's topics; and [`Cluster`], the
//! harness's handles on every node (ids, control handles, clocks, which nodes are down)
//! that faults, restarts and the end-of-run checks act through.

use super::CLIENT_TIMEOUT;
use crate::invariants::CONTROLLER_ID_BASE;
use crate::scenario::Scenario;
use faultline::client::{Client, ClientError, NewTopic};
use faultline::config::BrokerConfig;
use faultline::controller::{ControllerControl, ControllerNode, ControllerNodeConfig};
use faultline::server::{Broker, BrokerControl};
use faultline::storage::SimStorage;
use madsim::runtime::{Handle, NodeHandle};
use madsim::task::NodeId;
use madsim::time::sleep;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Broker port on every broker node.
const BROKER_PORT: u16 = 9092;
/// Controller port on every controller node (each controller has its own IP).
const CONTROLLER_PORT: u16 = 9093;

/// The running incarnation's control handle: none while the node starts or is down.
type ControlSlot<C> = Arc<Mutex<Option<C>>>;
/// Each broker's control slot, by node id.
pub(super) type Controls = BTreeMap<NodeId, ControlSlot<BrokerControl>>;
/// The running incarnation's control handle of each controller, in controller order.
pub(super) type ControllerControls = Vec<(String, NodeId, ControlSlot<ControllerControl>)>;
/// Injected clock offset per node name (brokers, controllers and producers), in
/// milliseconds. Lives in the harness, so it survives restarts as a machine's clock would.
pub(super) type Clocks = BTreeMap<String, Arc<AtomicI64>>;

/// The run's nodes and the harness's handles on them: what fault injection, restarts and
/// the end-of-run checks need to know.
pub(super) struct Cluster {
    /// Every simulated node by scenario name: controllers, brokers and (once the workloads
    /// start) clients; not the admin node.
    nodes: BTreeMap<String, NodeHandle>,
    /// The harness's own client machine: creates the topics, asks for roles, reads back.
    pub(super) admin: NodeHandle,
    /// Every broker's address, for clients.
    pub(super) bootstrap: String,
    /// broker-1 .. broker-N.
    pub(super) brokers: Vec<String>,
    pub(super) controls: Controls,
    pub(super) controllers: ControllerControls,
    pub(super) clocks: Clocks,
    /// Nodes the harness has killed and not yet restarted: overlapping faults must not
    /// kill a dead node or restart a live one.
    pub(super) down: Mutex<BTreeSet<NodeId>>,
}

impl Cluster {
    /// Controllers first (brokers register with them), then brokers, then the admin node.
    pub(super) fn build(handle: &Handle, scenario: &Scenario) -> Cluster {
        let voters = controller_voters(scenario.controllers);
        let mut nodes: BTreeMap<String, NodeHandle> = BTreeMap::new();
        let mut clocks: Clocks = BTreeMap::new();
        let mut controllers: ControllerControls = Vec::new();
        for (k, name) in scenario.controller_names().into_iter().enumerate() {
            let config = controller_config(scenario, k, &voters);
            let node = server_node::<ControllerNode>(handle, &name, controller_ip(k + 1), config);
            clocks.insert(name.clone(), node.clock);
            controllers.push((name.clone(), node.handle.id(), node.control));
            nodes.insert(name, node.handle);
        }
        let bootstrap: String = (1..=scenario.broker_names().len())
            .map(|i| format!("{}:{BROKER_PORT}", broker_ip(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut controls: Controls = BTreeMap::new();
        for (i, name) in scenario.broker_names().into_iter().enumerate() {
            let config = broker_config(scenario, i, &voters);
            let node = server_node::<Broker>(handle, &name, broker_ip(i + 1), config);
            clocks.insert(name.clone(), node.clock);
            controls.insert(node.handle.id(), node.control);
            nodes.insert(name, node.handle);
        }
        let admin = handle
            .create_node()
            .name("admin")
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 3, 1)))
            .build();
        Cluster {
            nodes,
            admin,
            bootstrap,
            brokers: scenario.broker_names(),
            controls,
            controllers,
            clocks,
            down: Mutex::new(BTreeSet::new()),
        }
    }

    /// A client's node joins the nodes faults may name.
    pub(super) fn add_node(&mut self, name: String, node: NodeHandle) {
        self.nodes.insert(name, node);
    }

    /// The node a scenario name stands for.
    pub(super) fn id(&self, name: &str) -> Option<NodeId> {
        self.nodes.get(name).map(|h| h.id())
    }

    /// Every node name, in order.
    pub(super) fn names(&self) -> impl Iterator<Item = &String> {
        self.nodes.keys()
    }

    pub(super) fn broker(&self, id: i32) -> Option<(String, NodeId)> {
        let name = format!("broker-{id}");
        self.id(&name).map(|n| (name, n))
    }

    /// Broker `name`'s running incarnation, if it has one.
    pub(super) fn broker_control(&self, name: &str) -> Option<BrokerControl> {
        self.id(name)
            .and_then(|id| self.controls.get(&id))
            .and_then(|c| c.lock().unwrap().clone())
    }

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

    /// Restart a node the harness killed: its `init` runs again, on what its disk kept.
    pub(super) fn restart(&self, handle: &Handle, id: NodeId) {
        // Always killed before restarted (madsim keeps a live node's sockets bound).
        self.down.lock().unwrap().remove(&id);
        handle.restart(id);
    }

    /// Stop every node and let the executor drop their tasks: a task parked on a waker
    /// that lives inside the state it owns (a broker's Notify, a channel) is never woken
    /// again, and would otherwise outlive the runtime with everything it holds (a disk's
    /// worth of logs per node, per seed, for the whole sweep).
    pub(super) fn kill_all(&self, handle: &Handle) {
        for node in self.nodes.values().chain(std::iter::once(&self.admin)) {
            handle.kill(node.id());
        }
    }
}

/// Create the scenario's topics from the admin node, retried until the brokers answer.
pub(super) async fn create_topics(cluster: &Cluster, scenario: &Scenario) {
    let topics: Vec<NewTopic> = scenario
        .topics
        .iter()
        .map(|t| NewTopic {
            name: t.name.get_ref().clone(),
            partitions: t.partitions.get_ref().get(),
            replication_factor: t.replication_factor.get_ref().get(),
            configs: t
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.get_ref().value().to_string()))
                .collect(),
        })
        .collect();
    let bootstrap = cluster.bootstrap.clone();
    cluster
        .admin
        .spawn(async move {
            let mut client = Client::new(&bootstrap, "admin", CLIENT_TIMEOUT);
            // An attempt whose answer was lost may have created the topics: a topic that
            // already exists is one the scenario asked for.
            let created = |r: &Result<(), ClientError>| match r {
                Ok(()) => true,
                // Kafka's TOPIC_ALREADY_EXISTS.
                Err(ClientError::Kafka { error, .. }) => error.code() == 36,
                Err(_) => false,
            };
            let mut pending = topics;
            for _ in 0..100 {
                if let Ok(results) = client.create_topics(&pending).await {
                    let done: BTreeSet<String> = results
                        .iter()
                        .filter(|(_, r)| created(r))
                        .map(|(name, _)| name.clone())
                        .collect();
                    pending.retain(|t| !done.contains(&t.name));
                    if pending.is_empty() {
                        return;
                    }
                }
                sleep(Duration::from_millis(100)).await;
            }
            panic!("the cluster never accepted the scenario's topics");
        })
        .await
        .expect("admin task");
}

fn broker_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, i as u8))
}

fn controller_ip(k: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 4, k as u8))
}

/// The lab's view of `controller.quorum.voters`: controller-K is node 1000 + K.
fn controller_voters(controllers: usize) -> Vec<(i32, SocketAddr)> {
    (1..=controllers)
        .map(|k| {
            (
                CONTROLLER_ID_BASE + k as i32,
                SocketAddr::new(controller_ip(k), CONTROLLER_PORT),
            )
        })
        .collect()
}

/// Controller `k` (from 0) with the scenario's controller settings.
fn controller_config(
    scenario: &Scenario,
    k: usize,
    voters: &[(i32, SocketAddr)],
) -> ControllerNodeConfig {
    let mut config = ControllerNodeConfig::new(
        CONTROLLER_ID_BASE + k as i32 + 1,
        SocketAddr::new(controller_ip(k + 1), CONTROLLER_PORT),
        voters.to_vec(),
        "/metadata".into(),
    );
    for (key, value) in &scenario.cluster.controller_config {
        config
            .apply_one(key, value.get_ref().value())
            .expect("validated when the scenario was loaded");
    }
    config
}

/// Broker `i` (from 0) with the scenario's broker settings and its rack.
fn broker_config(scenario: &Scenario, i: usize, voters: &[(i32, SocketAddr)]) -> BrokerConfig {
    let mut config = BrokerConfig {
        node_id: i as i32 + 1,
        listen: SocketAddr::new(broker_ip(i + 1), BROKER_PORT),
        data_dir: "/data".into(),
        controller_quorum_voters: voters.to_vec(),
        rack: scenario.rack_of(i),
        ..Default::default()
    };
    for (key, value) in &scenario.cluster.config {
        config
            .apply_one(key, value.get_ref().value())
            .expect("validated when the scenario was loaded");
    }
    config
}

/// A server node as the harness builds and restarts it: a controller or a broker.
trait Server: Sized + 'static {
    type Config: Clone + Send + Sync + 'static;
    type Control: Send + 'static;
    /// Start an incarnation on the node's disk. A server that cannot start ends the run
    /// as a crash with its message (madsim aborts the simulation on a node's panic).
    async fn boot(name: &str, config: Self::Config) -> Self;
    /// A handle on this incarnation, for faults that act inside it.
    fn control_handle(&self) -> Self::Control;
    fn set_clock_offset(control: &Self::Control, offset_ms: i64);
    /// Serve until the node is killed (holding the server keeps it running).
    async fn serve(self);
}

impl Server for ControllerNode {
    type Config = ControllerNodeConfig;
    type Control = ControllerControl;

    async fn boot(name: &str, config: ControllerNodeConfig) -> ControllerNode {
        match ControllerNode::start(config, SimStorage::shared()).await {
            Ok(c) => c,
            Err(e) => panic!("{name} did not start: {e}"),
        }
    }

    fn control_handle(&self) -> ControllerControl {
        self.control()
    }

    fn set_clock_offset(control: &ControllerControl, offset_ms: i64) {
        control.set_clock_offset_ms(offset_ms);
    }

    async fn serve(self) {
        // The controller stays in scope, so the node runs until killed.
        let _controller = self;
        std::future::pending::<()>().await;
    }
}

impl Server for Broker {
    type Config = BrokerConfig;
    type Control = BrokerControl;

    async fn boot(_name: &str, config: BrokerConfig) -> Broker {
        Broker::start(config, SimStorage::shared())
            .await
            .expect("broker starts")
    }

    fn control_handle(&self) -> BrokerControl {
        self.control()
    }

    fn set_clock_offset(control: &BrokerControl, offset_ms: i64) {
        control.set_clock_offset_ms(offset_ms);
    }

    async fn serve(self) {
        // Until the lab's `stop` fault asks for a clean shutdown (SIGTERM); then the node
        // idles until the lab kills and restarts it.
        self.shutdown_requested().await;
        if let Err(e) = self.shutdown().await {
            tracing::error!(error = %e, "clean shutdown failed");
        }
        std::future::pending::<()>().await;
    }
}

/// A built server node and the harness's handles on it.
struct ServerNode<C> {
    handle: NodeHandle,
    /// The running incarnation's control handle, set by each start.
    control: ControlSlot<C>,
    /// The machine's clock offset, applied by each start.
    clock: Arc<AtomicI64>,
}

/// The one node builder for controllers and brokers: a named machine at `ip` whose `init`
/// (rerun on every restart) starts the server, applies the machine's clock offset, hands
/// the harness a control handle and serves until killed.
fn server_node<S: Server>(
    handle: &Handle,
    name: &str,
    ip: IpAddr,
    config: S::Config,
) -> ServerNode<S::Control> {
    let control: ControlSlot<S::Control> = Arc::new(Mutex::new(None));
    let control_in_node = control.clone();
    let node_name = name.to_string();
    let clock = Arc::new(AtomicI64::new(0));
    let clock_in_node = clock.clone();
    let node = handle
        .create_node()
        .name(name)
        .ip(ip)
        .init(move || {
            let config = config.clone();
            let control = control_in_node.clone();
            let node_name = node_name.clone();
            let clock = clock_in_node.clone();
            async move {
                let server = S::boot(&node_name, config).await;
                S::set_clock_offset(&server.control_handle(), clock.load(Ordering::SeqCst));
                *control.lock().unwrap() = Some(server.control_handle());
                server.serve().await;
            }
        })
        .build();
    ServerNode {
        handle: node,
        control,
        clock,
    }
}
