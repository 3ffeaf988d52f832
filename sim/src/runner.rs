//! Runs one seed of one scenario under the simulator: builds the cluster (one madsim node
//! per broker and per client), drives the workloads, applies the scenario's faults and the
//! nemesis, heals everything, runs the final read within the liveness bound, and checks
//! the history. Only in the simulated build.

use crate::checker::{self, CheckOptions};
use crate::history::{History, Op, OpKind, Phase};
use crate::invariants::{self, InvariantViolation, Invariants, CONTROLLER_ID_BASE};
use crate::outcome::{Counters, Event, Outcome, Verdict};
use crate::scenario::{fnv1a, AcksSpec, FaultKind, FaultSpec, Fnv1a, Scenario};
use bytes::Bytes;
use faultline::client::{
    Acks, Client, ClientError, Consumer, ConsumerConfig, NewTopic, Producer, ProducerConfig,
};
use faultline::config::BrokerConfig;
use faultline::controller::{ControllerControl, ControllerNode, ControllerNodeConfig};
use faultline::mix::SplitMix64;
use faultline::observe::{self, Observation, Observer};
use faultline::record::codec::NewRecord;
use faultline::server::{Broker, BrokerControl};
use faultline::storage::{SimDisk, SimStorage};
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle, Runtime};
use madsim::task::NodeId;
use madsim::time::{sleep, Instant};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Client request timeout in the lab: long enough for a healthy round trip, short enough
/// that a partitioned client notices within the run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Broker port on every broker node.
const BROKER_PORT: u16 = 9092;
/// Controller port on every controller node (each controller has its own IP).
const CONTROLLER_PORT: u16 = 9093;
/// Slack on top of duration + liveness before the harness declares the run hung.
const HANG_MARGIN: Duration = Duration::from_secs(120);
/// How long the `stop` fault waits for a clean shutdown before killing the broker anyway
/// (simulated time: polls of `STOP_WAIT_POLL`).
const STOP_WAIT_POLLS_MAX: u32 = 3_000;
const STOP_WAIT_POLL: Duration = Duration::from_millis(10);

/// Records everything clients and faults do, in simulated time.
struct Recorder {
    start: Instant,
    history: History,
    events: Vec<Event>,
}

type Shared = Arc<Mutex<Recorder>>;
type Controls = BTreeMap<NodeId, Arc<Mutex<Option<BrokerControl>>>>;
/// The running incarnation's control handle of each controller, in controller order.
type ControllerControls = Vec<(String, NodeId, Arc<Mutex<Option<ControllerControl>>>)>;
/// Injected clock offset per node name (brokers and producers), in milliseconds. Lives in
/// the harness, so it survives restarts as a machine's clock would.
type Clocks = BTreeMap<String, Arc<AtomicI64>>;
type Down = Mutex<BTreeSet<NodeId>>;

fn record(rec: &Shared, mut op: Op) -> usize {
    let mut r = rec.lock().unwrap();
    op.time_ns = Instant::now().duration_since(r.start).as_nanos() as u64;
    r.history.push(op)
}

fn event(rec: &Shared, event: &str, what: &str, target: &str, source: &str) {
    let mut r = rec.lock().unwrap();
    let time_ns = Instant::now().duration_since(r.start).as_nanos() as u64;
    r.events.push(Event {
        time_ns,
        event: event.into(),
        what: what.into(),
        target: target.into(),
        source: source.into(),
    });
}

fn op(process: &str, kind: OpKind, phase: Phase, topic: &str, partition: i32) -> Op {
    Op {
        index: 0,
        time_ns: 0,
        process: process.into(),
        kind,
        phase,
        topic: topic.into(),
        partition,
        values: Vec::new(),
        offset: None,
        records: Vec::new(),
        error: None,
    }
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

/// Feeds what nodes report to the run's invariant checker, stamped with simulated time.
struct InvariantObserver {
    rec: Shared,
    invariants: Arc<Mutex<Invariants>>,
}

impl Observer for InvariantObserver {
    fn observe(&self, observation: Observation) {
        let time_ns = {
            let r = self.rec.lock().unwrap();
            Instant::now().duration_since(r.start).as_nanos() as u64
        };
        // Elections, controller changes and truncations go on the run's timeline too: a
        // report reader sees when leadership moved relative to the faults.
        match &observation {
            Observation::BecameLeader {
                broker,
                topic,
                partition,
                leader_epoch,
            } => event(
                &self.rec,
                "leader",
                &format!("{topic}/{partition} epoch {leader_epoch}"),
                &format!("broker-{broker}"),
                "cluster",
            ),
            Observation::ControllerActive { node, term } => event(
                &self.rec,
                "active-controller",
                &format!("term {term}"),
                &format!("controller-{}", node - CONTROLLER_ID_BASE),
                "cluster",
            ),
            Observation::Truncated {
                broker,
                topic,
                partition,
                offset,
            } => event(
                &self.rec,
                "truncate",
                &format!("{topic}/{partition} to offset {offset}"),
                &format!("broker-{broker}"),
                "cluster",
            ),
            _ => {}
        }
        self.invariants
            .lock()
            .unwrap()
            .observe(time_ns, &observation);
    }
}

fn client_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 2, i as u8))
}

/// A simulated machine for one producer or consumer, reachable by its scenario name.
fn client_node(handle: &Handle, name: &str, index: usize) -> NodeHandle {
    handle.create_node().name(name).ip(client_ip(index)).build()
}

/// A fault planned on the timeline, from the scenario or drawn by the nemesis.
#[derive(Debug, Clone, PartialEq)]
struct PlannedFault {
    at: Duration,
    duration: Option<Duration>,
    kind: FaultKind,
    node: Option<String>,
    /// Kill and crash of several nodes at once.
    nodes: Vec<String>,
    restart_stagger: Duration,
    groups: Vec<Vec<String>>,
    one_way: bool,
    from: Option<String>,
    to: Option<String>,
    latency: Duration,
    jitter: Duration,
    rate: f64,
    offset_ms: i64,
    source: &'static str,
}

impl PlannedFault {
    fn from_spec(f: &FaultSpec) -> PlannedFault {
        PlannedFault {
            at: f.at.get_ref().0,
            duration: f.duration.as_ref().map(|d| d.get_ref().0),
            kind: *f.kind.get_ref(),
            node: f.node.as_ref().map(|n| n.get_ref().clone()),
            nodes: f
                .nodes
                .as_ref()
                .map(|n| n.get_ref().clone())
                .unwrap_or_default(),
            restart_stagger: f
                .restart_stagger
                .as_ref()
                .map_or(Duration::ZERO, |d| d.get_ref().0),
            groups: f
                .groups
                .as_ref()
                .map(|g| g.get_ref().clone())
                .unwrap_or_default(),
            one_way: f.one_way,
            from: f.from.as_ref().map(|n| n.get_ref().clone()),
            to: f.to.as_ref().map(|n| n.get_ref().clone()),
            latency: f.latency.as_ref().map_or(Duration::ZERO, |d| d.get_ref().0),
            jitter: f.jitter.as_ref().map_or(Duration::ZERO, |d| d.get_ref().0),
            rate: f.rate.as_ref().map_or(0.0, |r| *r.get_ref()),
            offset_ms: f.offset.as_ref().map_or(0, |o| o.get_ref().0),
            source: "scenario",
        }
    }
}

/// The nemesis plan comes from the seed alone, not from the schedule.
type PlanRng = SplitMix64;

/// The nemesis's faults for this seed: exponential gaps with the configured mean, a kind
/// from the enabled set (in swarm mode the seed first picks which kinds are on), a target,
/// and a duration up to `fault_max`.
fn plan_nemesis(scenario: &Scenario, seed: u64) -> Vec<PlannedFault> {
    let Some(n) = &scenario.nemesis else {
        return Vec::new();
    };
    let mut rng = PlanRng::new(seed ^ 0x6e65_6d65_7369_7321);
    let mut kinds: Vec<FaultKind> = n.kinds.as_ref().map_or_else(
        || {
            vec![
                FaultKind::Kill,
                FaultKind::Pause,
                FaultKind::Isolate,
                FaultKind::Reset,
                FaultKind::Latency,
            ]
        },
        |k| k.get_ref().clone(),
    );
    if n.swarm {
        let chosen: Vec<FaultKind> = kinds
            .iter()
            .copied()
            .filter(|_| rng.below(2) == 0)
            .collect();
        kinds = if chosen.is_empty() {
            vec![kinds[rng.below(kinds.len() as u64) as usize]]
        } else {
            chosen
        };
    }
    let brokers = scenario.broker_names();
    let controllers = scenario.controller_names();
    // Default targets: every broker, then every controller (none without a quorum, so
    // plans of single-broker scenarios are unchanged).
    let targets: Vec<String> = n.targets.as_ref().map_or_else(
        || brokers.iter().chain(&controllers).cloned().collect(),
        |t| t.get_ref().clone(),
    );
    let clients: Vec<String> = scenario
        .node_names()
        .into_iter()
        .filter(|n| !brokers.contains(n) && !controllers.contains(n))
        .collect();
    let mean = n.interval.get_ref().0.as_secs_f64();
    let fault_max = n.fault_max.get_ref().0;
    let mut plan = Vec::new();
    let mut t = 0.0;
    loop {
        t += -mean * (1.0 - rng.unit()).ln();
        let at = Duration::from_secs_f64(t);
        if at >= scenario.duration {
            break;
        }
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        let target = targets[rng.below(targets.len() as u64) as usize].clone();
        let duration = Duration::from_millis(1 + rng.below(fault_max.as_millis().max(1) as u64));
        // Only brokers shut down cleanly here.
        if kind == FaultKind::Stop && !brokers.contains(&target) {
            continue;
        }
        // Controllers take only the faults a controller machine meets: kill, pause,
        // isolation.
        if target.starts_with("controller")
            && !matches!(
                kind,
                FaultKind::Kill | FaultKind::Pause | FaultKind::Isolate
            )
        {
            continue;
        }
        let mut f = PlannedFault {
            at,
            duration: Some(duration),
            kind,
            node: None,
            nodes: Vec::new(),
            restart_stagger: Duration::ZERO,
            groups: Vec::new(),
            one_way: false,
            from: None,
            to: None,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            rate: 0.0,
            offset_ms: 0,
            source: "nemesis",
        };
        match kind {
            FaultKind::Partition => {
                let others: Vec<String> = scenario
                    .node_names()
                    .into_iter()
                    .filter(|n| *n != target)
                    .collect();
                f.groups = vec![vec![target], others];
                f.one_way = rng.below(4) == 0;
            }
            FaultKind::Clog => {
                let peer = if clients.is_empty() {
                    brokers[0].clone()
                } else {
                    clients[rng.below(clients.len() as u64) as usize].clone()
                };
                if rng.below(2) == 0 {
                    (f.from, f.to) = (Some(target), Some(peer));
                } else {
                    (f.from, f.to) = (Some(peer), Some(target));
                }
            }
            FaultKind::Latency => {
                f.latency = Duration::from_millis(10 + rng.below(200));
                f.jitter = Duration::from_millis(rng.below(100));
            }
            FaultKind::Loss => f.rate = 0.05 + rng.unit() * 0.25,
            FaultKind::DiskSlowFsync => {
                f.latency = Duration::from_millis(5 + rng.below(500));
                f.node = Some(target);
            }
            FaultKind::ClockSkew | FaultKind::ClockJump => {
                if !target.starts_with("broker-") && !clients.contains(&target) {
                    continue;
                }
                f.offset_ms = rng.below(120_000) as i64 - 60_000;
                f.node = Some(target);
            }
            FaultKind::Kill | FaultKind::Crash | FaultKind::DiskTornWrite
                if !target.starts_with("broker-") && !target.starts_with("controller") =>
            {
                continue
            }
            _ => f.node = Some(target),
        }
        plan.push(f);
    }
    plan
}

/// Run one seed. Never panics: a panic inside the simulation becomes a crash verdict.
pub fn run_seed(scenario: &Scenario, seed: u64) -> Outcome {
    run_seed_with_mutation(scenario, seed, None)
}

/// `run_seed` with a deliberate broker bug switched on for the run (negative tests: it only
/// takes effect in builds with the broker's `mutations` feature, see
/// `faultline::mutation`).
pub fn run_seed_with_mutation(
    scenario: &Scenario,
    seed: u64,
    mutation: Option<faultline::mutation::Mutation>,
) -> Outcome {
    let wall = std::time::Instant::now();
    let scenario_for_run = scenario.clone();
    // A fresh OS thread per run: std's HashMap keys are per thread and advance with every
    // map made, so a second run on the same thread would iterate maps (in madsim and in
    // libraries) in another order. A new thread draws them inside the seeded runtime.
    let result = std::thread::Builder::new()
        .name(format!("seed-{seed}"))
        .spawn(move || {
            faultline::mutation::set(mutation);
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                simulate(&scenario_for_run, seed)
            }))
        })
        .expect("spawn a thread for the run")
        .join()
        .unwrap_or_else(Err);
    let wall_ms = wall.elapsed().as_millis() as u64;
    match result {
        Ok(mut outcome) => {
            outcome.wall_ms = wall_ms;
            outcome
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            Outcome {
                scenario: scenario.name.clone(),
                seed,
                verdict: Verdict::Crash,
                failures: vec![format!("crash: {message}")],
                violations: Vec::new(),
                invariants: Vec::new(),
                counters: Counters::default(),
                history: History::default(),
                events: Vec::new(),
                trace_hash: fnv1a(message.as_bytes()),
                simulated_ns: 0,
                wall_ms,
            }
        }
    }
}

fn simulate(scenario: &Scenario, seed: u64) -> Outcome {
    let mut rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
    rt.add_simulator::<SimDisk>();
    // A run that outlives its own bounds is hung: madsim stops it, and it is reported.
    rt.set_time_limit(scenario.duration + scenario.liveness + HANG_MARGIN);
    let scenario_in_sim = scenario.clone();
    let checker = Arc::new(Mutex::new(Invariants::new()));
    let checker_in_sim = checker.clone();
    let (history, events, liveness_error, simulated_ns) = rt.block_on(async move {
        let scenario = scenario_in_sim;
        let rec: Shared = Arc::new(Mutex::new(Recorder {
            start: Instant::now(),
            history: History::default(),
            events: Vec::new(),
        }));
        // One observer per run, on the run's own thread: madsim runs every node of this
        // seed here, and no other seed.
        observe::install(Arc::new(InvariantObserver {
            rec: rec.clone(),
            invariants: checker_in_sim.clone(),
        }));
        let handle = Handle::current();

        // Controllers first (brokers register with them): `init` reruns on restart.
        let voters = controller_voters(scenario.controllers);
        let mut controller_controls: ControllerControls = Vec::new();
        let mut controller_nodes: BTreeMap<String, NodeHandle> = BTreeMap::new();
        let mut controller_clocks: Vec<(String, Arc<AtomicI64>)> = Vec::new();
        for (k, name) in scenario.controller_names().into_iter().enumerate() {
            let mut config = ControllerNodeConfig::new(
                CONTROLLER_ID_BASE + k as i32 + 1,
                SocketAddr::new(controller_ip(k + 1), CONTROLLER_PORT),
                voters.clone(),
                "/metadata".into(),
            );
            for (key, value) in &scenario.cluster.controller_config {
                config
                    .apply_one(key, value.get_ref())
                    .expect("validated when the scenario was loaded");
            }
            let control: Arc<Mutex<Option<ControllerControl>>> = Arc::new(Mutex::new(None));
            let control_in_node = control.clone();
            let node_name = name.clone();
            let clock = Arc::new(AtomicI64::new(0));
            let clock_in_node = clock.clone();
            controller_clocks.push((name.clone(), clock));
            let node = handle
                .create_node()
                .name(name.clone())
                .ip(controller_ip(k + 1))
                .init(move || {
                    let config = config.clone();
                    let control = control_in_node.clone();
                    let node_name = node_name.clone();
                    let clock = clock_in_node.clone();
                    async move {
                        // A controller that cannot start ends the run as a crash with this
                        // message (madsim aborts the simulation on a node's panic).
                        let controller =
                            match ControllerNode::start(config, SimStorage::shared()).await {
                                Ok(c) => c,
                                Err(e) => panic!("{node_name} did not start: {e}"),
                            };
                        controller
                            .control()
                            .set_clock_offset_ms(clock.load(Ordering::SeqCst));
                        *control.lock().unwrap() = Some(controller.control());
                        // `controller` stays in scope, so the node runs until killed.
                        std::future::pending::<()>().await;
                    }
                })
                .build();
            controller_controls.push((name.clone(), node.id(), control));
            controller_nodes.insert(name, node);
        }
        let bootstrap: String = (1..=scenario.broker_names().len())
            .map(|i| format!("{}:{BROKER_PORT}", broker_ip(i)))
            .collect::<Vec<_>>()
            .join(",");

        // Brokers: `init` runs again on every restart, so all node state lives inside it.
        let mut nodes: BTreeMap<String, NodeHandle> = BTreeMap::new();
        let mut controls: Controls = BTreeMap::new();
        let mut clocks: Clocks = BTreeMap::new();
        // Nodes the harness has killed and not yet restarted: overlapping faults must not
        // kill a dead node or restart a live one.
        let down: Down = Mutex::new(BTreeSet::new());
        nodes.extend(controller_nodes);
        clocks.extend(controller_clocks);
        for (i, name) in scenario.broker_names().into_iter().enumerate() {
            let mut config = BrokerConfig {
                node_id: i as i32 + 1,
                listen: SocketAddr::new(broker_ip(i + 1), BROKER_PORT),
                data_dir: "/data".into(),
                controller_quorum_voters: voters.clone(),
                rack: scenario.rack_of(i),
                ..Default::default()
            };
            for (key, value) in &scenario.cluster.config {
                config
                    .apply_one(key, value.get_ref())
                    .expect("validated when the scenario was loaded");
            }
            // The harness keeps a control handle to the running incarnation, for faults
            // that act inside the broker (connection resets).
            let control: Arc<Mutex<Option<BrokerControl>>> = Arc::new(Mutex::new(None));
            let control_in_node = control.clone();
            let clock = Arc::new(AtomicI64::new(0));
            let clock_in_node = clock.clone();
            clocks.insert(name.clone(), clock);
            let node = handle
                .create_node()
                .name(name.clone())
                .ip(broker_ip(i + 1))
                .init(move || {
                    let config = config.clone();
                    let control = control_in_node.clone();
                    let clock = clock_in_node.clone();
                    async move {
                        let broker = Broker::start(config, SimStorage::shared())
                            .await
                            .expect("broker starts");
                        broker
                            .control()
                            .set_clock_offset_ms(clock.load(Ordering::SeqCst));
                        *control.lock().unwrap() = Some(broker.control());
                        // Until the lab's `stop` fault asks for a clean shutdown (SIGTERM);
                        // then the node idles until the lab kills and restarts it.
                        broker.shutdown_requested().await;
                        if let Err(e) = broker.shutdown().await {
                            tracing::error!(error = %e, "clean shutdown failed");
                        }
                        std::future::pending::<()>().await;
                    }
                })
                .build();
            controls.insert(node.id(), control);
            nodes.insert(name, node);
        }
        let admin = handle
            .create_node()
            .name("admin")
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 3, 1)))
            .build();

        // Topics, retried until the brokers answer.
        let topics: Vec<NewTopic> = scenario
            .topics
            .iter()
            .map(|t| NewTopic {
                name: t.name.get_ref().clone(),
                partitions: *t.partitions.get_ref(),
                replication_factor: *t.replication_factor.get_ref(),
                configs: t
                    .config
                    .iter()
                    .map(|(k, v)| (k.clone(), v.get_ref().clone()))
                    .collect(),
            })
            .collect();
        {
            let bootstrap = bootstrap.clone();
            admin
                .spawn(async move {
                    let mut client = Client::new(&bootstrap, "admin", CLIENT_TIMEOUT);
                    // An attempt whose answer was lost may have created the topics: a
                    // topic that already exists is one the scenario asked for.
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
        let start = Instant::now();
        rec.lock().unwrap().start = start;
        event(&rec, "phase", "safety", "", "scenario");

        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        let mut client_index = 0;
        for (i, p) in scenario.producers.iter().enumerate() {
            client_index += 1;
            let name = scenario.producer_name(i);
            let node = client_node(&handle, &name, client_index);
            let spec = p.clone();
            let (rec, stop, bootstrap) = (rec.clone(), stop.clone(), bootstrap.clone());
            let run_duration = scenario.duration;
            let clock = Arc::new(AtomicI64::new(0));
            clocks.insert(name.clone(), clock.clone());
            workers.push(node.spawn(async move {
                produce_loop(name, spec, bootstrap, rec, stop, start, run_duration, clock).await
            }));
            nodes.insert(scenario.producer_name(i), node);
        }
        for (i, c) in scenario.consumers.iter().enumerate() {
            client_index += 1;
            let name = scenario.consumer_name(i);
            let node = client_node(&handle, &name, client_index);
            let partitions: Vec<i32> = match &c.partitions {
                Some(ps) => ps.get_ref().clone(),
                None => {
                    let count = scenario
                        .topics
                        .iter()
                        .find(|t| t.name.get_ref() == c.topic.get_ref())
                        .map_or(1, |t| *t.partitions.get_ref());
                    (0..count).collect()
                }
            };
            let spec = c.clone();
            let (rec, stop, bootstrap) = (rec.clone(), stop.clone(), bootstrap.clone());
            let run_duration = scenario.duration;
            workers.push(node.spawn(async move {
                consume_loop(
                    name,
                    spec,
                    partitions,
                    bootstrap,
                    rec,
                    stop,
                    start,
                    run_duration,
                )
                .await
            }));
            nodes.insert(scenario.consumer_name(i), node);
        }

        // Faults on the timeline, in order of time (ties: scenario order, then nemesis).
        let mut plan: Vec<PlannedFault> = scenario
            .faults
            .iter()
            .map(PlannedFault::from_spec)
            .collect();
        plan.extend(plan_nemesis(&scenario, seed));
        plan.sort_by_key(|f| f.at);
        let ids: BTreeMap<String, NodeId> =
            nodes.iter().map(|(n, h)| (n.clone(), h.id())).collect();
        let cluster = Cluster {
            ids,
            brokers: scenario.broker_names(),
            controls,
            controllers: controller_controls,
        };
        let mut active: Vec<(Duration, Duration, Applied)> = Vec::new();
        for f in plan {
            // End faults due before this one starts.
            active.sort_by_key(|(end, _, _)| *end);
            while active.first().is_some_and(|(end, _, _)| *end <= f.at) {
                let (end, _, applied) = active.remove(0);
                sleep_until(start, end).await;
                heal(&applied, &rec, &clocks, &cluster, &down);
            }
            sleep_until(start, f.at).await;
            // A kill or crash of several nodes: resolve them all first, then kill them at
            // the same instant (no await between the kills); the k-th restarts k * stagger
            // after the first.
            let singles: Vec<(Duration, PlannedFault)> = if f.nodes.is_empty() {
                vec![(Duration::ZERO, f.clone())]
            } else {
                let mut names = Vec::new();
                for n in &f.nodes {
                    for (name, _) in resolve_nodes(n, &cluster, &admin, &bootstrap).await {
                        if !names.contains(&name) {
                            names.push(name);
                        }
                    }
                }
                if names.is_empty() {
                    event(
                        &rec,
                        "fault-skipped",
                        f.kind.name(),
                        &f.nodes.join(", "),
                        f.source,
                    );
                }
                names
                    .into_iter()
                    .enumerate()
                    .map(|(k, name)| {
                        let mut one = f.clone();
                        one.nodes = Vec::new();
                        one.node = Some(name);
                        (f.restart_stagger * k as u32, one)
                    })
                    .collect()
            };
            for (stagger, one) in singles {
                let applied = apply(
                    &one, &cluster, &clocks, &down, &admin, &bootstrap, &rec, seed,
                )
                .await;
                let end = f.duration.map_or(scenario.duration, |d| f.at + d);
                if let Some(applied) = applied {
                    active.push((end + stagger, stagger, applied));
                }
            }
        }
        active.sort_by_key(|(end, _, _)| *end);
        for (end, stagger, applied) in active.drain(..) {
            // Faults still on at the end of the safety phase heal then (a staggered restart
            // keeps its stagger, and may run into the liveness phase).
            sleep_until(start, end.min(scenario.duration + stagger)).await;
            heal(&applied, &rec, &clocks, &cluster, &down);
        }
        sleep_until(start, scenario.duration).await;

        // Liveness phase: every fault is healed; clients finish; the final read must
        // complete within the bound.
        event(&rec, "phase", "liveness", "", "scenario");
        stop.store(true, Ordering::SeqCst);
        let liveness_deadline = Instant::now() + scenario.liveness;
        let mut liveness_error = None;
        for w in workers {
            let left = liveness_deadline.saturating_duration_since(Instant::now());
            if madsim::time::timeout(left, w).await.is_err() {
                liveness_error =
                    Some("a client did not finish within the liveness bound".to_string());
            }
        }
        let partitions: Vec<(String, i32)> = scenario
            .topics
            .iter()
            .flat_map(|t| (0..*t.partitions.get_ref()).map(move |p| (t.name.get_ref().clone(), p)))
            .collect();
        let reader = {
            let (rec, bootstrap, partitions) = (rec.clone(), bootstrap.clone(), partitions.clone());
            admin.spawn(async move { final_read(partitions, bootstrap, rec).await })
        };
        let left = liveness_deadline.saturating_duration_since(Instant::now());
        match madsim::time::timeout(left, reader).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => liveness_error = Some(format!("final read failed: {e}")),
            Ok(Err(e)) => liveness_error = Some(format!("final read task failed: {e:?}")),
            Err(_) => {
                liveness_error.get_or_insert_with(|| {
                    format!(
                        "the final read did not complete within {:?} of healing",
                        scenario.liveness
                    )
                });
            }
        }
        // End of run, before shutdown: every ISR member holds the leader's batches below the
        // leader's high watermark.
        let now_ns = Instant::now().duration_since(start).as_nanos() as u64;
        for (topic, partition) in &partitions {
            let mut digests = BTreeMap::new();
            for (i, name) in cluster.brokers.iter().enumerate() {
                let control = cluster
                    .ids
                    .get(name)
                    .and_then(|id| cluster.controls.get(id))
                    .and_then(|c| c.lock().unwrap().clone());
                // A broker still starting has no handle yet: it says nothing either way.
                if let Some(control) = control {
                    digests.insert(i as i32 + 1, control.replica_digest(topic, *partition));
                }
            }
            let mut checker = checker_in_sim.lock().unwrap();
            for v in invariants::compare_replicas(topic, *partition, &digests, now_ns) {
                checker.push(v);
            }
        }
        observe::uninstall();
        let simulated_ns = Instant::now().duration_since(start).as_nanos() as u64;
        // Stop every node and let the executor drop their tasks: a task parked on a waker
        // that lives inside the state it owns (a broker's Notify, a channel) is never woken
        // again, and would otherwise outlive the runtime with everything it holds (a disk's
        // worth of logs per node, per seed, for the whole sweep).
        for node in nodes.values().chain(std::iter::once(&admin)) {
            handle.kill(node.id());
        }
        sleep(Duration::from_millis(1)).await;
        let mut r = rec.lock().unwrap();
        (
            std::mem::take(&mut r.history),
            std::mem::take(&mut r.events),
            liveness_error,
            simulated_ns,
        )
    });

    let ordered: BTreeSet<String> = (0..scenario.producers.len())
        .filter(|i| producer_is_ordered(&scenario.producers[*i]))
        .map(|i| scenario.producer_name(i))
        .collect();
    let violations = checker::check(
        &history,
        &CheckOptions {
            producers_ordered: ordered,
        },
    );
    let broken: Vec<InvariantViolation> = {
        let checker = checker.lock().unwrap();
        let mut broken = checker.violations().to_vec();
        if checker.dropped() > 0 {
            broken.push(InvariantViolation {
                time_ns: simulated_ns,
                rule: "(more)".into(),
                message: format!("{} more invariant violations not kept", checker.dropped()),
            });
        }
        broken
    };
    let mut failures = Outcome::judge(scenario, &violations);
    failures.extend(Outcome::judge_invariants(scenario, &broken));
    for entry in &scenario.must_see {
        let seen = events
            .iter()
            .any(|e| crate::scenario::must_see_matches(entry, &e.event, &e.what, &e.target));
        if !seen {
            failures.push(format!(
                "must_see: the run never recorded a `{entry}` event, so it did not reach the \
                 mechanism the scenario is about"
            ));
        }
    }
    if let Some(e) = &liveness_error {
        failures.insert(0, format!("liveness: {e}"));
    }
    let verdict = if liveness_error.is_some() {
        Verdict::Liveness
    } else if failures.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Violation
    };
    let counters = count(&history, &events);
    let trace_hash = {
        // Streamed into the hash: no second copy of a large history in memory.
        let mut hasher = Fnv1a::default();
        serde_json::to_writer(&mut hasher, &history).expect("history serializes");
        serde_json::to_writer(&mut hasher, &events).expect("events serialize");
        // Only when there are any: runs without invariant reports keep their old hashes.
        if !broken.is_empty() {
            serde_json::to_writer(&mut hasher, &broken).expect("invariants serialize");
        }
        hasher.finish()
    };
    Outcome {
        scenario: scenario.name.clone(),
        seed,
        verdict,
        failures,
        violations,
        invariants: broken,
        counters,
        history,
        events,
        trace_hash,
        simulated_ns,
        wall_ms: 0,
    }
}

/// Kafka promises per-partition order to a producer that is idempotent, or that keeps one
/// request in flight.
fn producer_is_ordered(p: &crate::scenario::ProducerSpec) -> bool {
    let idempotent = p.idempotence.unwrap_or(p.acks == AcksSpec::All);
    (idempotent || *p.in_flight.get_ref() == 1) && p.acks != AcksSpec::Zero
}

fn count(history: &History, events: &[Event]) -> Counters {
    let mut c = Counters::default();
    for op in &history.ops {
        match (op.kind, op.phase) {
            (OpKind::Send, Phase::Ok) => {
                c.sends_ok += 1;
                c.records_acknowledged += op.values.len() as u64;
            }
            (OpKind::Send, Phase::Info | Phase::Fail) => c.sends_unknown += 1,
            (OpKind::Poll, Phase::Ok) => {
                c.polls += 1;
                c.records_read += op.records.len() as u64;
            }
            _ => {}
        }
    }
    c.faults = events.iter().filter(|e| e.event == "fault-start").count() as u64;
    c
}

async fn sleep_until(start: Instant, at: Duration) {
    let target = start + at;
    let now = Instant::now();
    if target > now {
        sleep(target - now).await;
    }
}

/// What `heal` must undo.
enum Applied {
    /// Restart a killed node; the fault kind that killed it.
    Restart(NodeId, String, &'static str),
    Resume(NodeId, String),
    Unclog(Vec<(NodeId, NodeId)>, String),
    UnclogNode(NodeId, String),
    Latency(String),
    DiskSpace(NodeId, String),
    Loss(String),
    LinkLatency {
        active: Arc<AtomicBool>,
        a: NodeId,
        b: NodeId,
        what: String,
    },
    SlowFsync(NodeId, String),
    /// Put the node's clock offset back to `offset_ms`.
    Clock {
        name: String,
        id: NodeId,
        offset_ms: i64,
    },
    Nothing,
}

/// What fault injection needs to know about the cluster's nodes.
struct Cluster {
    /// Every simulated node by scenario name (brokers, controllers, clients).
    ids: BTreeMap<String, NodeId>,
    /// broker-1 .. broker-N.
    brokers: Vec<String>,
    controls: Controls,
    controllers: ControllerControls,
}

impl Cluster {
    /// A killed node's control handle belongs to a dead incarnation (a dead controller may
    /// still say it is active): drop it until the node's `init` sets a new one.
    fn forget_control(&self, id: NodeId) {
        if let Some(c) = self.controls.get(&id) {
            *c.lock().unwrap() = None;
        }
        for (_, c_id, c) in &self.controllers {
            if *c_id == id {
                *c.lock().unwrap() = None;
            }
        }
    }

    fn broker(&self, id: i32) -> Option<(String, NodeId)> {
        let name = format!("broker-{id}");
        self.ids.get(&name).map(|n| (name, *n))
    }
}

/// A partition's metadata as the cluster reports it now (None: no answer).
async fn partition_info(
    role: &str,
    admin: &NodeHandle,
    bootstrap: &str,
) -> Option<faultline::client::PartitionInfo> {
    let (topic, partition) = role.rsplit_once('/')?;
    let (topic, partition, bootstrap) = (
        topic.to_string(),
        partition.parse::<i32>().ok()?,
        bootstrap.to_string(),
    );
    admin
        .spawn(async move {
            let mut client = Client::new(&bootstrap, "nemesis", CLIENT_TIMEOUT);
            let info = client.topic(&topic).await.ok()?;
            info.partitions
                .into_iter()
                .find(|p| p.partition == partition)
        })
        .await
        .ok()?
}

/// A partition's followers, lowest broker id first: its replicas other than the leader,
/// or, when metadata lists no replicas, every broker other than the leader.
fn followers_of(info: &faultline::client::PartitionInfo, cluster: &Cluster) -> Vec<i32> {
    let mut replicas: Vec<i32> = if info.replicas.is_empty() {
        (1..=cluster.brokers.len() as i32).collect()
    } else {
        info.replicas.clone()
    };
    replicas.sort_unstable();
    replicas.dedup();
    replicas.retain(|r| *r != info.leader);
    replicas
}

/// Resolve a node name or role to the nodes it names now, in a deterministic order:
/// "leader:T/P" (the partition's leader), "follower:T/P" (its follower with the lowest
/// broker id), "followers:T/P" (every follower), "replicas:T/P" (followers, then the leader
/// last, so that a staggered restart brings the leader, likely the longest log, back last),
/// "controller" (the active controller: the first live controller that says it is),
/// or a plain node name.
async fn resolve_nodes(
    name: &str,
    cluster: &Cluster,
    admin: &NodeHandle,
    bootstrap: &str,
) -> Vec<(String, NodeId)> {
    if let Some(role) = name.strip_prefix("leader:") {
        // As before roles beyond the leader existed: the client's leader lookup.
        let Some((topic, partition)) = role.rsplit_once('/') else {
            return Vec::new();
        };
        let (topic, Ok(partition), bootstrap) = (
            topic.to_string(),
            partition.parse::<i32>(),
            bootstrap.to_string(),
        ) else {
            return Vec::new();
        };
        let leader = admin
            .spawn(async move {
                let mut client = Client::new(&bootstrap, "nemesis", CLIENT_TIMEOUT);
                client.leader(&topic, partition).await.ok()
            })
            .await
            .ok()
            .flatten();
        return leader.and_then(|l| cluster.broker(l)).into_iter().collect();
    }
    for prefix in ["follower:", "followers:", "replicas:"] {
        let Some(role) = name.strip_prefix(prefix) else {
            continue;
        };
        let Some(info) = partition_info(role, admin, bootstrap).await else {
            return Vec::new();
        };
        let mut ids = followers_of(&info, cluster);
        match prefix {
            "follower:" => ids.truncate(1),
            "replicas:" if info.leader >= 0 => ids.push(info.leader),
            _ => {}
        }
        return ids.into_iter().filter_map(|b| cluster.broker(b)).collect();
    }
    if name == "controller" {
        return cluster
            .controllers
            .iter()
            .find(|(_, _, control)| {
                control
                    .lock()
                    .unwrap()
                    .as_ref()
                    .is_some_and(|c| c.is_active())
            })
            .map(|(n, id, _)| (n.clone(), *id))
            .into_iter()
            .collect();
    }
    cluster
        .ids
        .get(name)
        .map(|id| (name.to_string(), *id))
        .into_iter()
        .collect()
}

async fn resolve_node(
    name: &str,
    cluster: &Cluster,
    admin: &NodeHandle,
    bootstrap: &str,
) -> Option<(String, NodeId)> {
    resolve_nodes(name, cluster, admin, bootstrap)
        .await
        .into_iter()
        .next()
}

/// Resolve a partition's two groups; "others" is every node not in the other group.
async fn resolve_groups(
    groups: &[Vec<String>],
    cluster: &Cluster,
    admin: &NodeHandle,
    bootstrap: &str,
) -> Vec<Vec<String>> {
    let mut resolved: Vec<Vec<String>> = Vec::new();
    for group in groups {
        let mut names = Vec::new();
        for n in group {
            if n == "others" {
                names.push(n.clone());
                continue;
            }
            for (name, _) in resolve_nodes(n, cluster, admin, bootstrap).await {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        resolved.push(names);
    }
    for g in 0..resolved.len() {
        if resolved[g].iter().any(|n| n == "others") {
            let other: BTreeSet<String> = resolved
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != g)
                .flat_map(|(_, names)| names.iter().cloned())
                .collect();
            resolved[g] = cluster
                .ids
                .keys()
                .filter(|n| !other.contains(*n))
                .cloned()
                .collect();
        }
    }
    resolved
}

#[allow(clippy::too_many_arguments)]
async fn apply(
    f: &PlannedFault,
    cluster: &Cluster,
    clocks: &Clocks,
    down: &Down,
    admin: &NodeHandle,
    bootstrap: &str,
    rec: &Shared,
    seed: u64,
) -> Option<Applied> {
    let handle = Handle::current();
    let net = NetSim::current();
    let node = match &f.node {
        Some(n) => match resolve_node(n, cluster, admin, bootstrap).await {
            Some(found) => Some(found),
            None => {
                event(rec, "fault-skipped", f.kind.name(), n, f.source);
                return None;
            }
        },
        None => None,
    };
    let target = node.as_ref().map(|(n, _)| n.clone()).unwrap_or_default();
    let applied = match f.kind {
        FaultKind::Kill | FaultKind::Crash | FaultKind::Stop | FaultKind::DiskTornWrite
            if node
                .as_ref()
                .is_some_and(|(_, id)| down.lock().unwrap().contains(id)) =>
        {
            event(
                rec,
                "fault-skipped",
                f.kind.name(),
                &format!("{target} is already down"),
                f.source,
            );
            return None;
        }
        FaultKind::Kill => {
            let (name, id) = node?;
            handle.kill(id);
            cluster.forget_control(id);
            down.lock().unwrap().insert(id);
            Applied::Restart(id, name, "kill")
        }
        FaultKind::Crash => {
            // The process dies, the operating system does not: unsynced writes survive.
            let (name, id) = node?;
            madsim::plugin::simulator::<SimDisk>().keep_page_cache_on_next_kill(id);
            handle.kill(id);
            cluster.forget_control(id);
            down.lock().unwrap().insert(id);
            Applied::Restart(id, name, "crash")
        }
        FaultKind::Stop => {
            // SIGTERM: the broker closes its logs (synced, recovery points at their ends,
            // producer state saved), then its process ends.
            let (name, id) = node?;
            let control = cluster
                .controls
                .get(&id)
                .and_then(|c| c.lock().unwrap().clone());
            let Some(control) = control else {
                let what = format!("{target} is not a running broker");
                event(rec, "fault-skipped", f.kind.name(), &what, f.source);
                return None;
            };
            control.request_shutdown();
            // A paused or wedged broker never finishes: like an init system, give up after a
            // bound and kill it anyway.
            for _ in 0..STOP_WAIT_POLLS_MAX {
                if control.is_shut_down() {
                    break;
                }
                madsim::time::sleep(STOP_WAIT_POLL).await;
            }
            if !control.is_shut_down() {
                event(
                    rec,
                    "fault-note",
                    "stop",
                    &format!("{target} did not finish shutting down; killed"),
                    f.source,
                );
            }
            // Then the power goes: only what the broker synced itself survives, so a clean
            // shutdown that left anything unsynced loses acknowledged records here.
            handle.kill(id);
            cluster.forget_control(id);
            down.lock().unwrap().insert(id);
            Applied::Restart(id, name, "stop")
        }
        FaultKind::DiskTornWrite => {
            let (name, id) = node?;
            down.lock().unwrap().insert(id);
            // Part of each file's unsynced tail reaches the platter, then power is lost.
            let mut rng = PlanRng::new(seed ^ f.at.as_nanos() as u64);
            madsim::plugin::simulator::<SimDisk>()
                .disk(id)
                .with_disk(|d| {
                    d.crash_with(&mut |_, unsynced| rng.below(unsynced as u64 + 1) as usize)
                });
            handle.kill(id);
            cluster.forget_control(id);
            Applied::Restart(id, name, "disk-torn-write")
        }
        FaultKind::Pause => {
            let (name, id) = node?;
            handle.pause(id);
            Applied::Resume(id, name)
        }
        FaultKind::Isolate => {
            let (name, id) = node?;
            net.clog_node(id);
            Applied::UnclogNode(id, name)
        }
        FaultKind::Reset => {
            let (_, id) = node?;
            match cluster.controls.get(&id) {
                // A broker: drop its connections, keep its listener (madsim's own node
                // reset would close the listening socket too).
                Some(control) => {
                    if let Some(c) = control.lock().unwrap().as_ref() {
                        c.reset_connections();
                    }
                }
                None => net.reset_node(id),
            }
            Applied::Nothing
        }
        FaultKind::Partition | FaultKind::Clog => {
            let groups = if f.kind == FaultKind::Clog {
                vec![vec![f.from.clone()?], vec![f.to.clone()?]]
            } else {
                f.groups.clone()
            };
            let mut groups = resolve_groups(&groups, cluster, admin, bootstrap).await;
            let (b, a) = (groups.pop()?, groups.pop()?);
            if a.is_empty() || b.is_empty() {
                // A role named nobody now (no leader, no follower): nothing to cut.
                let what = format!(
                    "{:?} | {:?}: a group names no node now",
                    f.groups.first(),
                    f.groups.get(1)
                );
                event(rec, "fault-skipped", f.kind.name(), &what, f.source);
                return None;
            }
            let ids = &cluster.ids;
            let mut links = Vec::new();
            for x in &a {
                for y in &b {
                    let (Some(x), Some(y)) = (ids.get(x), ids.get(y)) else {
                        continue;
                    };
                    links.push((*x, *y));
                    if f.kind == FaultKind::Partition && !f.one_way {
                        links.push((*y, *x));
                    }
                }
            }
            for (x, y) in &links {
                net.clog_link(*x, *y);
            }
            let what = format!(
                "{a:?} -> {b:?}{}",
                if f.kind == FaultKind::Partition && !f.one_way {
                    " (both ways)"
                } else {
                    ""
                }
            );
            event(rec, "fault-start", f.kind.name(), &what, f.source);
            return Some(Applied::Unclog(links, what));
        }
        FaultKind::Latency if f.from.is_some() => {
            // madsim has one latency for the whole network. A link of its own is slowed by
            // shutting it for `latency` (+ up to `jitter`) and opening it for as long, over
            // and over: a message sent while it is shut waits for a retry that lands while
            // it is open (madsim retries with backoff), from a few to about twice `latency`
            // milliseconds; one sent while it is open goes through as usual.
            let (Some((_, a)), Some((_, b))) = (
                resolve_node(f.from.as_deref()?, cluster, admin, bootstrap).await,
                resolve_node(f.to.as_deref()?, cluster, admin, bootstrap).await,
            ) else {
                return None;
            };
            let active = Arc::new(AtomicBool::new(true));
            let still = active.clone();
            let (latency, jitter) = (f.latency, f.jitter);
            let mut rng = PlanRng::new(seed ^ f.at.as_nanos() as u64 ^ 0x1a7e);
            madsim::task::spawn(async move {
                let net = NetSim::current();
                while still.load(Ordering::SeqCst) {
                    net.clog_link(a, b);
                    let hold =
                        latency + Duration::from_micros(rng.below(jitter.as_micros() as u64 + 1));
                    sleep(hold).await;
                    net.unclog_link(a, b);
                    // Open as long as it was shut: madsim retries a clogged message with
                    // exponential backoff, so a short opening would mostly be missed.
                    sleep(hold).await;
                }
            });
            let what = format!(
                "{} -> {}: +{:?} (+ up to {:?})",
                f.from.as_deref().unwrap_or_default(),
                f.to.as_deref().unwrap_or_default(),
                f.latency,
                f.jitter
            );
            event(rec, "fault-start", f.kind.name(), &what, f.source);
            return Some(Applied::LinkLatency { active, a, b, what });
        }
        FaultKind::DiskSlowFsync => {
            let (name, id) = node?;
            let latency = f.latency;
            madsim::plugin::simulator::<SimDisk>()
                .disk(id)
                .with_disk(|d| d.set_sync_delay(latency));
            let what = format!("{name}: every fsync takes {latency:?}");
            event(rec, "fault-start", f.kind.name(), &what, f.source);
            return Some(Applied::SlowFsync(id, name));
        }
        FaultKind::Latency => {
            let (low, high) = (f.latency, f.latency + f.jitter + Duration::from_micros(1));
            net.update_config(|c| c.send_latency = low..high);
            let what = format!("{:?}..{:?}", low, f.latency + f.jitter);
            event(rec, "fault-start", f.kind.name(), &what, f.source);
            return Some(Applied::Latency(what));
        }
        FaultKind::DiskCorrupt => {
            let (name, id) = node?;
            let disk = madsim::plugin::simulator::<SimDisk>().disk(id);
            let mut rng = PlanRng::new(seed ^ f.at.as_nanos() as u64 ^ 0xc0de);
            let detail = disk.with_disk(|d| {
                let segments: Vec<std::path::PathBuf> = d
                    .file_paths()
                    .into_iter()
                    .filter(|p| p.extension().is_some_and(|e| e == "log"))
                    .collect();
                let candidates: Vec<(std::path::PathBuf, usize)> = segments
                    .into_iter()
                    .filter_map(|p| {
                        d.durable_bytes(&p)
                            .filter(|b| !b.is_empty())
                            .map(|b| (p, b.len()))
                    })
                    .collect();
                if candidates.is_empty() {
                    return "no synced segment to corrupt".to_string();
                }
                let (path, len) = &candidates[rng.below(candidates.len() as u64) as usize];
                let offset = rng.below(*len as u64);
                let _ = d.corrupt_byte(path, offset);
                format!("{} byte {offset}", path.display())
            });
            event(
                rec,
                "fault-start",
                f.kind.name(),
                &format!("{name}: {detail}"),
                f.source,
            );
            return Some(Applied::Nothing);
        }
        FaultKind::Loss => {
            let rate = f.rate;
            net.update_config(|c| c.packet_loss_rate = rate);
            let what = format!("{:.0}% of messages", rate * 100.0);
            event(rec, "fault-start", f.kind.name(), &what, f.source);
            return Some(Applied::Loss(what));
        }
        FaultKind::ClockSkew | FaultKind::ClockJump => {
            let (name, id) = node?;
            let clock = clocks.get(&name)?;
            let before = clock.load(Ordering::SeqCst);
            let after = if f.kind == FaultKind::ClockSkew {
                f.offset_ms
            } else {
                before + f.offset_ms
            };
            set_clock(&name, id, after, clocks, cluster);
            let what = format!("{name}: clock offset {before} ms -> {after} ms");
            event(rec, "fault-start", f.kind.name(), &what, f.source);
            return Some(if f.kind == FaultKind::ClockSkew {
                Applied::Clock {
                    name,
                    id,
                    offset_ms: before,
                }
            } else {
                Applied::Nothing
            });
        }
        FaultKind::DiskFull => {
            let (name, id) = node?;
            let disk = madsim::plugin::simulator::<SimDisk>().disk(id);
            disk.with_disk(|d| {
                let used = d.used_bytes();
                d.set_capacity_bytes(Some(used));
            });
            Applied::DiskSpace(id, name)
        }
    };
    event(rec, "fault-start", f.kind.name(), &target, f.source);
    Some(applied)
}

/// Set a node's clock offset: remembered by the harness (restarts keep it) and applied to
/// a running broker at once.
fn set_clock(name: &str, id: NodeId, offset_ms: i64, clocks: &Clocks, cluster: &Cluster) {
    if let Some(clock) = clocks.get(name) {
        clock.store(offset_ms, Ordering::SeqCst);
    }
    if let Some(control) = cluster
        .controls
        .get(&id)
        .and_then(|c| c.lock().unwrap().clone())
    {
        control.set_clock_offset_ms(offset_ms);
    }
    if let Some(control) = cluster
        .controllers
        .iter()
        .find(|(_, c, _)| *c == id)
        .and_then(|(_, _, c)| c.lock().unwrap().clone())
    {
        control.set_clock_offset_ms(offset_ms);
    }
}

fn heal(applied: &Applied, rec: &Shared, clocks: &Clocks, cluster: &Cluster, down: &Down) {
    let handle = Handle::current();
    let net = NetSim::current();
    match applied {
        Applied::Restart(id, name, kind) => {
            // Always killed before restarted (madsim keeps a live node's sockets bound).
            down.lock().unwrap().remove(id);
            handle.restart(*id);
            // Torn writes kept their old event name ("kill") so old traces hash the same.
            let kind = match *kind {
                "crash" | "stop" => *kind,
                _ => "kill",
            };
            event(rec, "fault-end", kind, name, "heal");
        }
        Applied::Resume(id, name) => {
            handle.resume(*id);
            event(rec, "fault-end", "pause", name, "heal");
        }
        Applied::Unclog(links, what) => {
            for (x, y) in links {
                net.unclog_link(*x, *y);
            }
            event(rec, "fault-end", "partition", what, "heal");
        }
        Applied::UnclogNode(id, name) => {
            net.unclog_node(*id);
            event(rec, "fault-end", "isolate", name, "heal");
        }
        Applied::Latency(what) => {
            net.update_config(|c| c.send_latency = madsim::net::Config::default().send_latency);
            event(rec, "fault-end", "latency", what, "heal");
        }
        Applied::LinkLatency { active, a, b, what } => {
            active.store(false, Ordering::SeqCst);
            net.unclog_link(*a, *b);
            event(rec, "fault-end", "latency", what, "heal");
        }
        Applied::SlowFsync(id, name) => {
            madsim::plugin::simulator::<SimDisk>()
                .disk(*id)
                .with_disk(|d| d.set_sync_delay(Duration::ZERO));
            event(rec, "fault-end", "disk-slow-fsync", name, "heal");
        }
        Applied::DiskSpace(id, name) => {
            madsim::plugin::simulator::<SimDisk>()
                .disk(*id)
                .with_disk(|d| d.set_capacity_bytes(None));
            // A log that failed a write stays fenced until reopened, as a Kafka log dir
            // goes offline: healing the disk means restarting the broker.
            if !down.lock().unwrap().contains(id) {
                handle.kill(*id);
                handle.restart(*id);
            }
            event(rec, "fault-end", "disk-full", name, "heal");
        }
        Applied::Loss(what) => {
            net.update_config(|c| c.packet_loss_rate = 0.0);
            event(rec, "fault-end", "loss", what, "heal");
        }
        Applied::Clock {
            name,
            id,
            offset_ms,
        } => {
            set_clock(name, *id, *offset_ms, clocks, cluster);
            event(
                rec,
                "fault-end",
                "clock-skew",
                &format!("{name}: clock offset back to {offset_ms} ms"),
                "heal",
            );
        }
        Applied::Nothing => {}
    }
}

#[allow(clippy::too_many_arguments)]
async fn produce_loop(
    name: String,
    spec: crate::scenario::ProducerSpec,
    bootstrap: String,
    rec: Shared,
    stop: Arc<AtomicBool>,
    start: Instant,
    run_duration: Duration,
    clock: Arc<AtomicI64>,
) {
    let begin = spec
        .start
        .as_ref()
        .map_or(Duration::ZERO, |s| s.get_ref().0);
    let end = spec.stop.as_ref().map_or(run_duration, |s| s.get_ref().0);
    sleep_until(start, begin).await;
    let acks = match spec.acks {
        AcksSpec::Zero => Acks::None,
        AcksSpec::One => Acks::Leader,
        AcksSpec::All => Acks::All,
    };
    let config = ProducerConfig {
        acks,
        idempotence: spec.idempotence.unwrap_or(acks == Acks::All),
        retries: spec.retries,
        in_flight_max: *spec.in_flight.get_ref(),
        // One batch per partition per round, so a history op is exactly one batch.
        batch_bytes: usize::MAX,
        retry_backoff: Duration::from_millis(100),
        ..Default::default()
    };
    let topic = spec.topic.get_ref().clone();
    let batch = *spec.batch_records.get_ref();
    let round = Duration::from_secs_f64(batch as f64 / *spec.rate.get_ref() as f64);
    let padding = "x".repeat(spec.record_bytes.get_ref().saturating_sub(name.len() + 8));
    let mut producer = loop {
        if stop.load(Ordering::SeqCst) || Instant::now() >= start + end {
            return;
        }
        match Producer::new(
            Client::new(&bootstrap, &name, CLIENT_TIMEOUT),
            config.clone(),
        )
        .await
        {
            Ok(p) => break p,
            Err(_) => sleep(Duration::from_millis(200)).await,
        }
    };
    let mut sequence: u64 = 0;
    let rate = *spec.rate.get_ref() as f64;
    let producing_since = Instant::now();
    while !stop.load(Ordering::SeqCst) && Instant::now() < start + end {
        let round_start = Instant::now();
        // Open loop: send what the rate says is due by now, so slow acknowledgements do
        // not quietly lower the load; at most ten rounds' worth after a stall.
        let due = (rate * round_start.duration_since(producing_since).as_secs_f64()) as u64;
        let count = (due.saturating_sub(sequence) as usize).clamp(1, batch * 10);
        let mut groups: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        let mut failed_partitioning = false;
        for _ in 0..count {
            let value = format!("{name}-{sequence}");
            sequence += 1;
            let key = (spec.keys > 0)
                .then(|| Bytes::from(format!("k{}", madsim::rand::random::<u64>() % spec.keys)));
            let record = NewRecord {
                // The producer's own clock, skewed if a fault says so.
                timestamp: faultline::server::now_ms() + clock.load(Ordering::SeqCst),
                key,
                value: Some(Bytes::from(format!("{value}|{padding}"))),
                headers: Vec::new(),
            };
            match producer.send(&topic, None, record).await {
                Ok(p) => groups.entry(p).or_default().push(value),
                Err(_) => {
                    failed_partitioning = true;
                    break;
                }
            }
        }
        if failed_partitioning {
            // No metadata: nothing was sent. Drop the buffer and try again later.
            let _ = producer.flush().await;
            sleep(Duration::from_millis(100)).await;
            continue;
        }

        for (p, values) in &groups {
            let mut o = op(&name, OpKind::Send, Phase::Invoke, &topic, *p);
            o.values = values.clone();
            record(&rec, o);
        }
        let results = producer.flush().await;
        let mut answered = BTreeSet::new();
        if let Ok(results) = &results {
            for r in results {
                let Some(values) = groups.get(&r.partition) else {
                    continue;
                };
                if !answered.insert(r.partition) {
                    continue;
                }
                let mut o = op(&name, OpKind::Send, Phase::Info, &topic, r.partition);
                o.values = values.clone();
                match &r.error {
                    None if acks != Acks::None => {
                        o.phase = Phase::Ok;
                        o.offset = Some(r.base_offset);
                    }
                    None => o.error = Some("acks=0: no acknowledgement".into()),
                    // With retries, an earlier attempt may have landed: unknown, not failed.
                    Some(e) => o.error = Some(e.to_string()),
                }
                record(&rec, o);
            }
        }
        for (p, values) in &groups {
            if !answered.contains(p) {
                let mut o = op(&name, OpKind::Send, Phase::Info, &topic, *p);
                o.values = values.clone();
                o.error = Some(match &results {
                    Err(e) => e.to_string(),
                    Ok(_) => "no result".into(),
                });
                record(&rec, o);
            }
        }

        let elapsed = Instant::now().duration_since(round_start);
        if elapsed < round {
            sleep(round - elapsed).await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn consume_loop(
    name: String,
    spec: crate::scenario::ConsumerSpec,
    partitions: Vec<i32>,
    bootstrap: String,
    rec: Shared,
    stop: Arc<AtomicBool>,
    start: Instant,
    run_duration: Duration,
) {
    let begin = spec
        .start
        .as_ref()
        .map_or(Duration::ZERO, |s| s.get_ref().0);
    let end = spec.stop.as_ref().map_or(run_duration, |s| s.get_ref().0);
    sleep_until(start, begin).await;
    let topic = spec.topic.get_ref().clone();
    let config = ConsumerConfig {
        fetch_wait_max: Duration::from_millis(200),
        ..Default::default()
    };
    let mut consumer = Consumer::new(Client::new(&bootstrap, &name, CLIENT_TIMEOUT), config);
    for p in &partitions {
        consumer.assign(&topic, *p, Some(0));
        let mut o = op(&name, OpKind::Seek, Phase::Ok, &topic, *p);
        o.offset = Some(0);
        record(&rec, o);
    }
    let processing = spec
        .processing
        .as_ref()
        .map_or(Duration::ZERO, |d| d.get_ref().0);
    let pause = spec
        .pause_every
        .as_ref()
        .zip(spec.pause_for.as_ref())
        .map(|(e, f)| (e.get_ref().0, f.get_ref().0));
    let mut next_pause = pause.map(|(every, _)| Instant::now() + every);
    while !stop.load(Ordering::SeqCst) && Instant::now() < start + end {
        if let (Some(at), Some((every, length))) = (next_pause, pause) {
            if Instant::now() >= at {
                sleep(length).await;
                next_pause = Some(Instant::now() + every);
            }
        }
        let positions: BTreeMap<i32, Option<i64>> = partitions
            .iter()
            .map(|p| (*p, consumer.position(&topic, *p)))
            .collect();
        let result = consumer.poll().await;
        for (t, p, offset) in consumer.take_resets() {
            let mut o = op(&name, OpKind::Seek, Phase::Ok, &t, p);
            o.offset = Some(offset);
            record(&rec, o);
        }
        match result {
            Ok(records) => {
                let mut by_partition: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
                for r in &records {
                    by_partition
                        .entry(r.partition)
                        .or_default()
                        .push((r.record.offset, value_id(&r.record.value)));
                }
                for p in &partitions {
                    let mut o = op(&name, OpKind::Poll, Phase::Ok, &topic, *p);
                    o.offset = positions.get(p).copied().flatten();
                    o.records = by_partition.remove(p).unwrap_or_default();
                    record(&rec, o);
                }
                if !processing.is_zero() && !records.is_empty() {
                    sleep(processing * records.len() as u32).await;
                }
            }
            Err(e) => {
                for p in &partitions {
                    let mut o = op(&name, OpKind::Poll, Phase::Info, &topic, *p);
                    o.error = Some(e.to_string());
                    record(&rec, o);
                }
                sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The unique part of a record value ("producer-17"), before the padding.
fn value_id(value: &Option<Bytes>) -> String {
    let v = value.as_deref().unwrap_or_default();
    let text = String::from_utf8_lossy(v);
    text.split('|').next().unwrap_or_default().to_string()
}

/// Read every partition from the start to its current end, retrying errors until done.
async fn final_read(
    partitions: Vec<(String, i32)>,
    bootstrap: String,
    rec: Shared,
) -> Result<(), String> {
    const PROCESS: &str = "final-reader";
    for (topic, partition) in partitions {
        let mut client = Client::new(&bootstrap, PROCESS, CLIENT_TIMEOUT);
        let end = loop {
            match client.list_offset(&topic, partition, -1).await {
                Ok(end) => break end,
                Err(_) => {
                    client.forget_topic(&topic);
                    sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let mut consumer = Consumer::new(
            client,
            ConsumerConfig {
                fetch_wait_max: Duration::from_millis(100),
                ..Default::default()
            },
        );
        consumer.assign(&topic, partition, Some(0));
        let mut o = op(PROCESS, OpKind::Seek, Phase::Ok, &topic, partition);
        o.offset = Some(0);
        record(&rec, o);
        while consumer.position(&topic, partition).unwrap_or(0) < end {
            let from = consumer.position(&topic, partition);
            let result = consumer.poll().await;
            for (t, p, offset) in consumer.take_resets() {
                let mut o = op(PROCESS, OpKind::Seek, Phase::Ok, &t, p);
                o.offset = Some(offset);
                record(&rec, o);
            }
            match result {
                Ok(records) => {
                    let mut o = op(PROCESS, OpKind::Poll, Phase::Ok, &topic, partition);
                    o.offset = from;
                    o.records = records
                        .iter()
                        .map(|r| (r.record.offset, value_id(&r.record.value)))
                        .collect();
                    record(&rec, o);
                }
                Err(_) => sleep(Duration::from_millis(100)).await,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn scenario(text: &str) -> Scenario {
        crate::scenario::parse(Path::new("n.toml"), text).expect("valid scenario")
    }

    #[test]
    fn the_nemesis_targets_controllers_only_with_kill_pause_and_isolate() {
        let s = scenario(
            r#"
duration = "600s"
[cluster]
brokers = 3
[[topic]]
name = "t"
replication_factor = 3
[[producer]]
name = "p1"
topic = "t"
[nemesis]
kinds = ["kill", "pause", "isolate", "reset", "latency", "clog", "disk-slow-fsync"]
interval = "1s"
"#,
        );
        let plan = plan_nemesis(&s, 7);
        assert_eq!(
            plan,
            plan_nemesis(&s, 7),
            "the plan comes from the seed alone"
        );
        let on_controllers: Vec<&PlannedFault> = plan
            .iter()
            .filter(|f| {
                f.node
                    .as_deref()
                    .is_some_and(|n| n.starts_with("controller-"))
            })
            .collect();
        assert!(
            !on_controllers.is_empty(),
            "no fault on a controller in 600 s"
        );
        for f in &on_controllers {
            assert!(
                matches!(
                    f.kind,
                    FaultKind::Kill | FaultKind::Pause | FaultKind::Isolate
                ),
                "{f:?}"
            );
        }
        for f in plan.iter().filter(|f| f.kind == FaultKind::Clog) {
            for end in [&f.from, &f.to] {
                let end = end.as_deref().unwrap();
                assert!(!end.starts_with("controller-"), "{f:?}");
            }
        }
    }
}
