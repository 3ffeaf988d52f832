//! The lab end to end in the simulated build: a seed replays to the same trace, a
//! negative scenario's expected anomaly is found, a broken broker is caught, and reports
//! carry what a person needs.
#![cfg(madsim)]

use faultline_sim::history::Anomaly;
use faultline_sim::outcome::Verdict;
use faultline_sim::report;
use faultline_sim::runner::run_seed;
use faultline_sim::scenario::{self, Scenario};
use std::path::Path;

fn load(name: &str) -> Scenario {
    scenario::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios/smoke")
            .join(name),
    )
    .expect("valid scenario")
}

fn short(mut s: Scenario) -> Scenario {
    // Keep test runs small: the behaviour is the same, the histories shorter.
    s.duration = s.duration.min(std::time::Duration::from_secs(12));
    s.faults.retain(|f| f.at.get_ref().0 < s.duration);
    s
}

#[test]
fn a_seed_replays_to_the_same_trace_and_another_seed_does_not() {
    let s = short(load("nemesis-swarm.toml"));
    let a = run_seed(&s, 11);
    let b = run_seed(&s, 11);
    assert_eq!(a.trace_hash, b.trace_hash, "seed 11 ran differently twice");
    assert_eq!(a.history, b.history);
    assert_eq!(a.events, b.events);
    let c = run_seed(&s, 12);
    assert_ne!(
        a.trace_hash, c.trace_hash,
        "seeds 11 and 12 gave the same trace"
    );
    assert!(
        a.counters.records_acknowledged > 0 && a.counters.records_read > 0,
        "{:?}",
        a.counters
    );
}

#[test]
fn acks_with_kafkas_default_flush_policy_lose_records_on_power_loss() {
    let s = load("unsynced-acks-lost.toml");
    let outcome = run_seed(&s, 1);
    assert_eq!(outcome.verdict, Verdict::Pass, "{:?}", outcome.failures);
    assert!(
        outcome
            .violations
            .iter()
            .any(|v| v.anomaly == Anomaly::LostWrite),
        "the expected loss was not found"
    );
}

#[test]
fn retries_without_idempotence_duplicate_and_with_it_do_not() {
    let without = run_seed(&short(load("retries-without-idempotence.toml")), 2);
    assert!(
        without
            .violations
            .iter()
            .any(|v| v.anomaly == Anomaly::Duplicate),
        "no duplicate found"
    );
    let with = run_seed(&short(load("idempotent-retries.toml")), 2);
    assert_eq!(with.verdict, Verdict::Pass, "{:?}", with.failures);
    assert!(with.violations.is_empty(), "{:?}", with.violations.first());
}

#[test]
fn an_expected_anomaly_that_does_not_happen_fails_the_run() {
    // The synced, idempotent scenario cannot lose data: expecting a loss must fail.
    let mut s = short(load("broker-kill.toml"));
    s.expect
        .insert(Anomaly::LostWrite, scenario::Expectation::Expected);
    let outcome = run_seed(&s, 3);
    assert_eq!(outcome.verdict, Verdict::Violation);
    assert_eq!(
        outcome.failures,
        vec!["expected lost-write not found".to_string()]
    );
}

#[test]
fn reports_name_the_repro_command_and_the_violation() {
    let s = load("unsynced-acks-lost.toml");
    let outcome = run_seed(&s, 1);
    let dir = std::env::temp_dir().join(format!("faultline-lab-test-{}", std::process::id()));
    let written = report::write(&dir, &s, &outcome, "test").expect("report written");
    let md = std::fs::read_to_string(written.join("report.md")).unwrap();
    assert!(md.contains("cargo lab repro"), "{md}");
    assert!(md.contains("### lost-write"), "{md}");
    assert!(
        md.contains("| 8.000s | fault-start | kill | broker-1 | scenario |"),
        "{md}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(written.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["seed"], 1);
    assert_eq!(summary["verdict"], "pass");
    assert_eq!(summary["first_violation"]["anomaly"], "lost-write");
    let history = std::fs::read_to_string(written.join("history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), outcome.history.ops.len());
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_an_error_from_the_report_writer_not_a_panic() {
    let s = short(load("unsynced-acks-lost.toml"));
    let outcome = run_seed(&s, 1);
    assert!(!outcome.history.ops.is_empty());
    let root = std::env::temp_dir().join(format!("faultline-full-disk-{}", std::process::id()));
    let dir = report::run_dir(&root, &s).join("1");
    std::fs::create_dir_all(&dir).unwrap();
    // Every write to /dev/full fails with ENOSPC, as on a full disk.
    std::os::unix::fs::symlink("/dev/full", dir.join("history.jsonl")).unwrap();
    let error = report::write(&root, &s, &outcome, "test").expect_err("the disk is full");
    assert_eq!(error.raw_os_error(), Some(28), "{error}");
    let _ = std::fs::remove_dir_all(root);
}

/// A scenario from text, as if it were a file under tests/lab/.
fn scenario_from(name: &str, text: &str) -> Scenario {
    scenario::parse(Path::new(&format!("tests/lab/{name}.toml")), text).expect("valid scenario")
}

#[test]
fn a_process_crash_keeps_unsynced_acknowledged_records_where_power_loss_drops_them() {
    // unsynced-acks-lost.toml with the kill made a crash, by `node` and by `nodes` + role.
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/smoke/unsynced-acks-lost.toml"),
    )
    .unwrap();
    let crash = text
        .replace("kind = \"kill\"", "kind = \"crash\"")
        .replace("lost-write = \"expected\"", "lost-write = \"forbidden\"")
        .replace("unseen = \"allowed\"", "unseen = \"forbidden\"");
    for (name, text) in [
        ("crash-node", crash.clone()),
        (
            "crash-replicas",
            crash.replace("node = \"broker-1\"", "nodes = [\"replicas:events/0\"]"),
        ),
    ] {
        let outcome = run_seed(&scenario_from(name, &text), 1);
        assert_eq!(
            outcome.verdict,
            Verdict::Pass,
            "{name}: {:?}",
            outcome.failures
        );
        assert!(
            outcome
                .events
                .iter()
                .any(|e| e.event == "fault-start" && e.what == "crash" && e.target == "broker-1"),
            "{name}: {:?}",
            outcome.events
        );
        assert!(
            outcome
                .events
                .iter()
                .any(|e| e.event == "fault-end" && e.what == "crash"),
            "{name}: the crashed broker was not restarted"
        );
        assert!(outcome.counters.records_acknowledged > 0);
        assert!(outcome.invariants.is_empty(), "{:?}", outcome.invariants);
    }
}

#[test]
fn a_cluster_elects_a_new_leader_after_a_crash_and_replays_exactly() {
    let s = scenario_from(
        "cluster",
        r#"
duration = "20s"
[cluster]
brokers = 3
[[topic]]
name = "t"
replication_factor = 3
config = { "min.insync.replicas" = "2" }
[[producer]]
name = "p1"
topic = "t"
[[consumer]]
name = "c1"
topic = "t"
[[fault]]
at = "5s"
for = "2s"
kind = "crash"
node = "leader:t/0"
"#,
    );
    let a = run_seed(&s, 5);
    assert_eq!(a.verdict, Verdict::Pass, "{:?}", a.failures);
    assert!(a.invariants.is_empty(), "{:?}", a.invariants);
    let leaders: Vec<&str> = a
        .events
        .iter()
        .filter(|e| e.event == "leader")
        .map(|e| e.what.as_str())
        .collect();
    assert!(
        leaders.contains(&"t/0 epoch 0") && leaders.contains(&"t/0 epoch 1"),
        "no election after the crash: {leaders:?}"
    );
    assert!(a.events.iter().any(|e| e.event == "active-controller"));
    assert!(a.counters.records_acknowledged > 0 && a.counters.records_read > 0);
    let b = run_seed(&s, 5);
    assert_eq!(a.trace_hash, b.trace_hash, "seed 5 ran differently twice");
}

#[test]
fn the_matrix_catches_a_leader_that_acknowledges_before_replicating() {
    // The forbidden cell where a leader cut off with its producer must not acknowledge
    // alone; with the deliberate bug it does, and what it acknowledged is lost when the
    // partition heals. Without the bug the same seed passes.
    let cell = faultline_sim::matrix::cells()
        .into_iter()
        .find(|c| c.name() == "acks-all.misr-2.clean.leader-partitioned")
        .expect("the cell exists");
    assert_eq!(
        faultline_sim::matrix::promise(&cell),
        faultline_sim::matrix::Promise::Forbidden
    );
    let s = scenario_from("cell", &cell.scenario_toml());
    let sound = run_seed(&s, 1);
    assert_eq!(sound.verdict, Verdict::Pass, "{:?}", sound.failures);
    let broken = faultline_sim::runner::run_seed_with_mutation(
        &s,
        1,
        Some(faultline::mutation::Mutation::AckBeforeReplication),
    );
    assert_eq!(broken.verdict, Verdict::Violation, "{:?}", broken.failures);
    assert!(
        broken
            .violations
            .iter()
            .any(|v| v.anomaly == Anomaly::LostWrite),
        "the lost acknowledged records were not reported: {:?}",
        broken.failures
    );
}

#[test]
fn a_blind_observer_fails_the_run_instead_of_passing_it_quietly() {
    // With the replicas' batch reports switched off, committed-batches-agree would check
    // nothing and pass; the lab says so instead.
    let s = faultline_sim::scenario::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/cluster/nemesis-power-loss.toml"
    )))
    .unwrap();
    let sound = run_seed(&s, 1);
    assert_eq!(sound.verdict, Verdict::Pass, "{:?}", sound.failures);
    let blind = faultline_sim::runner::run_seed_with_mutation(
        &s,
        1,
        Some(faultline::mutation::Mutation::SilentBatchReports),
    );
    assert!(
        blind
            .invariants
            .iter()
            .any(|v| v.rule == "observer-sees-commits"),
        "{:?}",
        blind.failures
    );
    assert_eq!(blind.verdict, Verdict::Violation, "{:?}", blind.failures);
}

#[test]
fn roles_and_others_resolve_when_the_fault_fires() {
    let s = scenario_from(
        "roles",
        r#"
duration = "8s"
[cluster]
brokers = 1
[[topic]]
name = "t"
[[producer]]
name = "p1"
topic = "t"
[[consumer]]
name = "c1"
topic = "t"
[[fault]]
at = "3s"
for = "1s"
kind = "partition"
groups = [["leader:t/0", "p1"], ["others"]]
[[fault]]
at = "5s"
for = "500ms"
kind = "clog"
from = "leader:t/0"
to = "c1"
"#,
    );
    let outcome = run_seed(&s, 2);
    assert_eq!(outcome.verdict, Verdict::Pass, "{:?}", outcome.failures);
    let starts: Vec<&str> = outcome
        .events
        .iter()
        .filter(|e| e.event == "fault-start")
        .map(|e| e.target.as_str())
        .collect();
    assert_eq!(
        starts,
        [
            r#"["broker-1", "p1"] -> ["c1"] (both ways)"#,
            r#"["broker-1"] -> ["c1"]"#
        ]
    );
}

#[test]
fn a_coordinator_and_its_followers_resolve_to_the_partitions_replicas() {
    let s = scenario_from(
        "coordinator-roles",
        r#"
duration = "10s"
[cluster]
brokers = 3
controllers = 1
config = { "group.initial.rebalance.delay.ms" = "0" }
[[topic]]
name = "t"
replication_factor = 3
[[consumer]]
name = "m1"
topic = "t"
group = "g"
[[fault]]
at = "6s"
for = "1s"
kind = "partition"
groups = [["coordinator:g"], ["coordinator-followers:g"]]
"#,
    );
    let outcome = run_seed(&s, 1);
    assert_eq!(outcome.verdict, Verdict::Pass, "{:?}", outcome.failures);
    let start = outcome
        .events
        .iter()
        .find(|e| e.event == "fault-start")
        .expect("the partition fired");
    // One broker, the coordinator, against the two others (the replication factor of
    // __consumer_offsets is 3 with three brokers).
    let sides: Vec<&str> = start.target.split(" -> ").collect();
    assert_eq!(sides.len(), 2, "{}", start.target);
    let brokers = |side: &str| side.matches("broker-").count();
    assert_eq!(
        (brokers(sides[0]), brokers(sides[1])),
        (1, 2),
        "{}",
        start.target
    );
    for n in 1..=3 {
        let name = format!("broker-{n}");
        assert_eq!(start.target.matches(&name).count(), 1, "{}", start.target);
    }
}

#[test]
fn a_healthy_cluster_answers_every_group_commit_promptly() {
    // Three brokers, commits replicated to three replicas, BUGGIFY on (among its faults:
    // the coordinator's timer task runs late). A trickle of records, so the cluster is
    // mostly idle between commits: nothing else wakes a task that missed a high-watermark
    // change. A commit is answered once its record is below the high watermark,
    // milliseconds here; a missed wake-up leaves it waiting for the next append or for
    // `offsets.commit.timeout.ms` (5 s).
    let s = scenario_from(
        "healthy-group-commits",
        r#"
duration = "20s"
liveness = "30s"
buggify = true
[cluster]
brokers = 3
controllers = 3
config = { "group.initial.rebalance.delay.ms" = "0", "offsets.topic.num.partitions" = "5" }
[[topic]]
name = "orders"
partitions = 3
replication_factor = 3
[[producer]]
name = "p1"
topic = "orders"
rate = 5
[[consumer]]
name = "m1"
topic = "orders"
group = "payments"
commit = "sync-after-processing"
auto_offset_reset = "earliest"
[[consumer]]
name = "m2"
topic = "orders"
group = "payments"
commit = "sync-after-processing"
auto_offset_reset = "earliest"
"#,
    );
    let (mut commits, mut slowest_ms) = (0, 0);
    for seed in 1..=12 {
        let outcome = run_seed(&s, seed);
        assert_eq!(
            outcome.verdict,
            Verdict::Pass,
            "seed {seed}: {:?}",
            outcome.failures
        );
        // Sync commits: one in flight per member, one op per partition it covers.
        let mut invoked: std::collections::BTreeMap<(&str, &str, i32), u64> = Default::default();
        for op in &outcome.history.ops {
            if op.kind != faultline_sim::history::OpKind::Commit {
                continue;
            }
            let key = (op.process.as_str(), op.topic.as_str(), op.partition);
            if op.phase == faultline_sim::history::Phase::Invoke {
                invoked.insert(key, op.time_ns);
            } else if let Some(at) = invoked.remove(&key) {
                commits += 1;
                let waited_ms = (op.time_ns - at) / 1_000_000;
                slowest_ms = slowest_ms.max(waited_ms);
                assert!(
                    waited_ms < 250,
                    "seed {seed}: {}'s commit (op {}) was answered after {waited_ms} ms",
                    op.process,
                    op.index
                );
            }
        }
    }
    assert!(commits > 50, "only {commits} commits answered");
    eprintln!("{commits} commits, the slowest answered after {slowest_ms} ms");
}
