//! Runs one seed of one scenario under the simulator: builds the cluster (one madsim node
//! per broker and per client), drives the workloads, applies the scenario's faults and the
//! nemesis, heals everything, runs the final read within the liveness bound, and checks
//! the history. Only in the simulated build.

mod cluster;
mod faults;
mod judge;
mod nemesis;
mod recorder;
mod roles;
mod workloads;

use crate::checker::{self, CheckOptions};
use crate::history::History;
use crate::invariants::{self, InvariantViolation, Invariants, CONTROLLER_ID_BASE};
use crate::outcome::{Counters, Outcome, Verdict};
use crate::scenario::{fnv1a, Fnv1a, Scenario};
use cluster::{
    broker_ip, controller_ip, controller_voters, Clocks, Cluster, ControllerControls, Controls,
    Down, BROKER_PORT, CONTROLLER_PORT,
};
use faultline::client::{Client, ClientError, NewTopic};
use faultline::config::BrokerConfig;
use faultline::controller::{ControllerControl, ControllerNode, ControllerNodeConfig};
use faultline::observe;
use faultline::server::{Broker, BrokerControl};
use faultline::storage::{SimDisk, SimStorage};
use faults::{apply, heal, Applied};
use judge::{count, producer_is_ordered};
use madsim::runtime::{Handle, NodeHandle, Runtime};
use madsim::task::NodeId;
use madsim::time::{sleep, Instant};
use nemesis::PlannedFault;
use recorder::{event, InvariantObserver, Recorder, Shared};
use roles::resolve_nodes;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use workloads::{client_node, consume_loop, final_read, produce_loop};

/// Client request timeout in the lab: long enough for a healthy round trip, short enough
/// that a partitioned client notices within the run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Slack on top of duration + liveness before the harness declares the run hung.
const HANG_MARGIN: Duration = Duration::from_secs(120);

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
        let plan = nemesis::plan(&scenario, seed);
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

async fn sleep_until(start: Instant, at: Duration) {
    let target = start + at;
    let now = Instant::now();
    if target > now {
        sleep(target - now).await;
    }
}
