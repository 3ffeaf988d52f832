//! Runs one seed of one scenario under the simulator, as a short sequence of steps: build
//! the cluster, create the topics, start the workloads, play the fault plan (the
//! scenario's timeline and the nemesis), heal, run the liveness phase and the final read,
//! compare replicas, then judge the history.
//!
//! Only in the simulated build, except [`nemesis`]: the fault plan is pure (from the seed
//! alone), so it is built and unit-tested in the normal build too.
//!
//! - `cluster`: the nodes (one builder for controllers and brokers) and the harness's
//!   handles on them, restarts.
//! - [`nemesis`]: the fault plan: the scenario's timeline and the nemesis's draws.
//! - `faults`, `roles`: applying and healing faults; roles resolved to nodes.
//! - `workloads`: producers, consumers, the liveness phase and the final read.
//! - `recorder`: the history and the timeline, in simulated time.
//! - [`churn`]: topics created and deleted all run long, and the final metadata check.
//! - `judge`: the checkers, invariants, counters and the verdict.

pub mod churn;
pub mod nemesis;

#[cfg(madsim)]
mod cluster;
#[cfg(madsim)]
mod faults;
#[cfg(madsim)]
mod groups;
#[cfg(madsim)]
mod judge;
#[cfg(madsim)]
mod recorder;
#[cfg(madsim)]
mod roles;
#[cfg(madsim)]
mod workloads;

#[cfg(madsim)]
use {
    crate::invariants::Invariants,
    crate::outcome::Outcome,
    crate::scenario::Scenario,
    cluster::Cluster,
    faultline::observe,
    faultline::storage::SimDisk,
    madsim::runtime::{Handle, Runtime},
    madsim::time::{sleep, Instant},
    recorder::{event, Recorded},
    std::sync::atomic::AtomicBool,
    std::sync::{Arc, Mutex},
    std::time::Duration,
};

/// How long after the final read every ISR has to be whole again: a few times the lab's
/// usual replica.lag.time.max.ms, and the broker session timeout.
#[cfg(madsim)]
const ISR_RECOVERY_BOUND: Duration = Duration::from_secs(30);
/// Client request timeout in the lab: long enough for a healthy round trip, short enough
/// that a partitioned client notices within the run.
#[cfg(madsim)]
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Mixed into the seed for BUGGIFY's draws, so they do not repeat the nemesis's.
#[cfg(madsim)]
const BUGGIFY_SALT: u64 = 0xb066_1f75_eed0;
/// Slack on top of duration + liveness before the harness declares the run hung.
#[cfg(madsim)]
const HANG_MARGIN: Duration = Duration::from_secs(120);

/// Run one seed. Never panics: a panic inside the simulation becomes a crash verdict.
#[cfg(madsim)]
pub fn run_seed(scenario: &Scenario, seed: u64) -> Outcome {
    run_seed_with_mutation(scenario, seed, None)
}

/// `run_seed` with a deliberate broker bug switched on for the run (negative tests: it only
/// takes effect in builds with the broker's `mutations` feature, see
/// `faultline::mutation`).
#[cfg(madsim)]
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
            judge::crashed(scenario, seed, message, wall_ms)
        }
    }
}

/// One seed in a fresh runtime (seeded: network, clock, scheduling, randomness), judged.
#[cfg(madsim)]
fn simulate(scenario: &Scenario, seed: u64) -> Outcome {
    // The seed's point of the settings space (lists in the file), before anything runs.
    let (scenario, settings) = scenario.draw(seed);
    let scenario = &scenario;
    let mut rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
    rt.add_simulator::<SimDisk>();
    // A run that outlives its own bounds is hung: madsim stops it, and it is reported.
    rt.set_time_limit(scenario.duration + scenario.liveness + HANG_MARGIN);
    let scenario_in_sim = scenario.clone();
    let checker = Arc::new(Mutex::new(Invariants::new()));
    let recorded = rt.block_on(run(scenario_in_sim, seed, checker.clone()));
    let mut outcome = judge::judge(scenario, seed, recorded, &checker);
    outcome.settings = settings.iter().map(ToString::to_string).collect();
    outcome
}

/// The run inside the simulator. Steps in this order, each awaited before the next (the
/// order is the schedule: changing it changes every trace).
#[cfg(madsim)]
async fn run(scenario: Scenario, seed: u64, checker: Arc<Mutex<Invariants>>) -> Recorded {
    let rec = recorder::install(&checker);
    faultline::probe::start_counting();
    if scenario.buggify {
        faultline::buggify::enable(seed ^ BUGGIFY_SALT);
    }
    let handle = Handle::current();
    let mut cluster = Cluster::build(&handle, &scenario);
    cluster::create_topics(&cluster, &scenario).await;
    let start = Instant::now();
    rec.lock().unwrap().start = start;
    event(&rec, "phase", "safety", "", "scenario");
    let stop = Arc::new(AtomicBool::new(false));
    let groups_done = Arc::new(AtomicBool::new(false));
    let workers = workloads::spawn(
        &handle,
        &scenario,
        &mut cluster,
        &rec,
        &stop,
        &groups_done,
        start,
    );
    let ledger = Arc::new(Mutex::new(churn::Ledger::default()));
    let churner = scenario.churn.clone().map(|spec| {
        let (bootstrap, rec, stop, ledger) = (
            cluster.bootstrap.clone(),
            rec.clone(),
            stop.clone(),
            ledger.clone(),
        );
        cluster
            .admin
            .spawn(churn::churn_loop(spec, bootstrap, rec, stop, ledger))
    });
    let plan = nemesis::plan(&scenario, seed);
    faults::run_timeline(plan, &cluster, &rec, seed, start, scenario.duration).await;
    sleep_until(start, scenario.duration).await;
    let partitions: Vec<(String, i32)> = scenario
        .topics
        .iter()
        .flat_map(|t| (0..t.partitions.get_ref().get()).map(move |p| (t.name.get_ref().clone(), p)))
        .collect();
    let liveness_error = workloads::liveness(
        &scenario,
        workers,
        &stop,
        &groups_done,
        &cluster,
        &rec,
        &partitions,
        scenario.liveness,
    )
    .await;
    // Availability after healing: every ISR whole again (clusters whose final read
    // finished and whose liveness is not expected to fail).
    if scenario.controllers > 0
        && liveness_error.is_none()
        && scenario.liveness_expectation == crate::scenario::Expectation::Forbidden
    {
        let topics = scenario
            .topics
            .iter()
            .map(|t| t.name.get_ref().clone())
            .collect();
        if let Some(short) = workloads::isr_recovery(&cluster, topics, ISR_RECOVERY_BOUND).await {
            checker
                .lock()
                .unwrap()
                .push_final(crate::invariants::InvariantViolation {
                    time_ns: Instant::now().duration_since(start).as_nanos() as u64,
                    rule: "isr-recovers".into(),
                    message: format!(
                    "{ISR_RECOVERY_BOUND:?} after the final read, a partition's ISR is still short \
                     of its replicas: {short}"
                ),
                });
        }
    }
    if let Some(after) = scenario.groups_stable_after {
        if let Some(message) = groups::rebalanced_after(&rec, after, scenario.duration) {
            checker
                .lock()
                .unwrap()
                .push_final(crate::invariants::InvariantViolation {
                    time_ns: Instant::now().duration_since(start).as_nanos() as u64,
                    rule: "group-stable".into(),
                    message,
                });
        }
    }
    if let Some(churner) = churner {
        // The churn client stops with the others; then what it was told must show.
        let _ = madsim::time::timeout(CLIENT_TIMEOUT * 4, churner).await;
        let brokers: std::collections::BTreeMap<i32, String> = (1..)
            .zip(cluster.bootstrap.split(',').map(str::to_string))
            .collect();
        let (ledger, bootstrap) = (ledger.lock().unwrap().clone(), cluster.bootstrap.clone());
        let check = cluster.admin.spawn(async move {
            let mut found =
                churn::check_final_metadata(&ledger, &brokers, start, Duration::from_secs(10))
                    .await;
            let bound = Duration::from_secs(20);
            found.extend(churn::check_final_records(&ledger, &bootstrap, start, bound).await);
            found
        });
        if let Ok(violations) = check.await {
            let mut checker = checker.lock().unwrap();
            for v in violations {
                checker.push_final(v);
            }
        }
    }
    judge::compare_replicas(&cluster, &partitions, start, &checker);
    observe::uninstall();
    let simulated_ns = Instant::now().duration_since(start).as_nanos() as u64;
    cluster.kill_all(&handle);
    sleep(Duration::from_millis(1)).await;
    let probes = faultline::probe::take_counts();
    let buggify = faultline::buggify::disable();
    let mut r = rec.lock().unwrap();
    Recorded {
        probes: probes
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        buggify: buggify
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        history: std::mem::take(&mut r.history),
        events: std::mem::take(&mut r.events),
        liveness_error,
        simulated_ns,
    }
}

/// Sleep until `at` after `start` (at once if that is past).
#[cfg(madsim)]
async fn sleep_until(start: Instant, at: Duration) {
    let target = start + at;
    let now = Instant::now();
    if target > now {
        sleep(target - now).await;
    }
}
