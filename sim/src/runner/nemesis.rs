//! The fault plan of one seed: the scenario's own timeline plus the faults the nemesis
//! draws. Planned from the seed alone (splitmix64), never from the schedule; pure and
//! synchronous. The runner resolves roles and applies the plan under the simulator.

use crate::scenario::{FaultKind, FaultSpec, NemesisSpec, Scenario};
use faultline::mix::SplitMix64;
use std::time::Duration;

/// A fault planned on the timeline, from the scenario or drawn by the nemesis.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFault {
    pub at: Duration,
    pub duration: Option<Duration>,
    pub kind: FaultKind,
    pub node: Option<String>,
    /// Kill and crash of several nodes at once.
    pub nodes: Vec<String>,
    pub restart_stagger: Duration,
    pub groups: Vec<Vec<String>>,
    pub one_way: bool,
    pub from: Option<String>,
    pub to: Option<String>,
    pub latency: Duration,
    pub jitter: Duration,
    pub rate: f64,
    pub offset_ms: i64,
    /// "scenario" or "nemesis".
    pub source: &'static str,
    /// Fire at the first time a node reaches this coverage probe after `at`, not at `at`.
    pub after: Option<String>,
}

impl PlannedFault {
    /// A `[[fault]]` of the scenario.
    pub fn from_spec(f: &FaultSpec) -> PlannedFault {
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
            after: f.after.as_ref().map(|a| a.get_ref().clone()),
        }
    }

    /// A fault the nemesis drew, before its kind's own fields are filled in.
    fn drawn(at: Duration, duration: Duration, kind: FaultKind) -> PlannedFault {
        PlannedFault {
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
            after: None,
        }
    }
}

/// The nemesis plan comes from the seed alone, not from the schedule.
pub type PlanRng = SplitMix64;

/// Every fault of the seed, in order of time (ties: scenario order, then nemesis).
pub fn plan(scenario: &Scenario, seed: u64) -> Vec<PlannedFault> {
    let mut plan: Vec<PlannedFault> = scenario
        .faults
        .iter()
        .map(PlannedFault::from_spec)
        .collect();
    plan.extend(plan_nemesis(scenario, seed));
    plan.sort_by_key(|f| f.at);
    plan
}

/// The nemesis's faults for this seed: exponential gaps with the configured mean, a kind
/// from the enabled set (in swarm mode the seed first picks which kinds are on), a target,
/// and a duration up to `fault_max`.
pub fn plan_nemesis(scenario: &Scenario, seed: u64) -> Vec<PlannedFault> {
    let Some(n) = &scenario.nemesis else {
        return Vec::new();
    };
    let mut rng = PlanRng::new(seed ^ 0x6e65_6d65_7369_7321);
    let kinds = enabled_kinds(n, &mut rng);
    let cast = Cast::of(scenario, n);
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
        let target = cast.targets[rng.below(cast.targets.len() as u64) as usize].clone();
        let duration = Duration::from_millis(1 + rng.below(fault_max.as_millis().max(1) as u64));
        let f = PlannedFault::drawn(at, duration, kind);
        if let Some(f) = aim(f, target, &cast, &mut rng) {
            plan.push(f);
        }
    }
    plan
}

/// The kinds the nemesis draws from: the file's `kinds` (default: kill, pause, isolate,
/// reset, latency); in swarm mode, the seed's choice among them (at least one).
fn enabled_kinds(n: &NemesisSpec, rng: &mut PlanRng) -> Vec<FaultKind> {
    let kinds: Vec<FaultKind> = n.kinds.as_ref().map_or_else(
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
    if !n.swarm {
        return kinds;
    }
    let chosen: Vec<FaultKind> = kinds
        .iter()
        .copied()
        .filter(|_| rng.below(2) == 0)
        .collect();
    if chosen.is_empty() {
        vec![kinds[rng.below(kinds.len() as u64) as usize]]
    } else {
        chosen
    }
}

/// The nodes the nemesis chooses among.
struct Cast {
    /// broker-1 .. broker-N.
    brokers: Vec<String>,
    /// Who a fault may target: the file's `targets`, else every broker, then every
    /// controller (none without a quorum, so plans of single-broker scenarios are
    /// unchanged).
    targets: Vec<String>,
    /// Producers and consumers.
    clients: Vec<String>,
    /// Every node a fault may name.
    all: Vec<String>,
}

impl Cast {
    fn of(scenario: &Scenario, n: &NemesisSpec) -> Cast {
        let brokers = scenario.broker_names();
        let controllers = scenario.controller_names();
        let targets: Vec<String> = n.targets.as_ref().map_or_else(
            || brokers.iter().chain(&controllers).cloned().collect(),
            |t| t.get_ref().clone(),
        );
        let clients: Vec<String> = scenario
            .node_names()
            .into_iter()
            .filter(|n| !brokers.contains(n) && !controllers.contains(n))
            .collect();
        Cast {
            brokers,
            targets,
            clients,
            all: scenario.node_names(),
        }
    }
}

/// Point a drawn fault at `target`, drawing what its kind needs; None when the kind cannot
/// act on that target (the draw is skipped, not redrawn).
fn aim(
    mut f: PlannedFault,
    target: String,
    cast: &Cast,
    rng: &mut PlanRng,
) -> Option<PlannedFault> {
    // Only brokers shut down cleanly here.
    if f.kind == FaultKind::Stop && !cast.brokers.contains(&target) {
        return None;
    }
    // Controllers take only the faults a controller machine meets: kill, pause,
    // isolation.
    if target.starts_with("controller")
        && !matches!(
            f.kind,
            FaultKind::Kill | FaultKind::Pause | FaultKind::Isolate
        )
    {
        return None;
    }
    match f.kind {
        FaultKind::Partition => {
            let others: Vec<String> = cast.all.iter().filter(|n| **n != target).cloned().collect();
            f.groups = vec![vec![target], others];
            f.one_way = rng.below(4) == 0;
        }
        FaultKind::Clog => {
            let peer = if cast.clients.is_empty() {
                cast.brokers[0].clone()
            } else {
                cast.clients[rng.below(cast.clients.len() as u64) as usize].clone()
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
            if !target.starts_with("broker-") && !cast.clients.contains(&target) {
                return None;
            }
            f.offset_ms = rng.below(120_000) as i64 - 60_000;
            f.node = Some(target);
        }
        FaultKind::Kill | FaultKind::Crash | FaultKind::DiskTornWrite
            if !target.starts_with("broker-") && !target.starts_with("controller") =>
        {
            return None
        }
        _ => f.node = Some(target),
    }
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
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

    /// Three brokers, three controllers, a producer and a consumer, every kind the nemesis
    /// can draw, and `extra` lines in `[nemesis]`.
    fn every_kind(extra: &str) -> Scenario {
        scenario(&format!(
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
[[consumer]]
name = "c1"
topic = "t"
[nemesis]
kinds = ["kill", "crash", "stop", "pause", "partition", "isolate", "clog", "latency", "reset", "disk-torn-write", "disk-corrupt", "disk-full", "disk-slow-fsync", "loss", "clock-skew", "clock-jump"]
interval = "1s"
fault_max = "4s"
{extra}
"#
        ))
    }

    fn kinds_of(plan: &[PlannedFault]) -> BTreeSet<FaultKind> {
        plan.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn the_plan_comes_from_the_seed_alone() {
        let s = every_kind("");
        for seed in 1..=5 {
            assert_eq!(
                plan_nemesis(&s, seed),
                plan_nemesis(&s, seed),
                "seed {seed}"
            );
            assert_eq!(plan(&s, seed), plan(&s, seed), "seed {seed}");
        }
        let plans: BTreeSet<String> = (1..=5)
            .map(|seed| format!("{:?}", plan_nemesis(&s, seed)))
            .collect();
        assert_eq!(plans.len(), 5, "five seeds, five plans");
    }

    #[test]
    fn faults_fall_inside_the_run_in_time_order_and_last_up_to_fault_max() {
        let s = every_kind("");
        for seed in 1..=10 {
            let plan = plan_nemesis(&s, seed);
            assert!(
                plan.len() > 100,
                "600 s at one fault a second: {}",
                plan.len()
            );
            for pair in plan.windows(2) {
                assert!(pair[0].at <= pair[1].at, "{pair:?}");
            }
            for f in &plan {
                assert!(f.at < s.duration, "{f:?}");
                let lasts = f.duration.expect("every nemesis fault ends");
                assert!(lasts >= Duration::from_millis(1), "{f:?}");
                assert!(lasts <= Duration::from_secs(4), "{f:?}");
                assert_eq!(f.source, "nemesis");
                assert!(f.nodes.is_empty() && f.restart_stagger.is_zero(), "{f:?}");
            }
        }
    }

    #[test]
    fn kinds_are_drawn_only_from_those_enabled() {
        let two = scenario(
            r#"
duration = "300s"
[cluster]
brokers = 3
[[topic]]
name = "t"
[nemesis]
kinds = ["pause", "isolate"]
interval = "1s"
"#,
        );
        let default = scenario(
            r#"
duration = "300s"
[cluster]
brokers = 3
[[topic]]
name = "t"
[nemesis]
interval = "1s"
"#,
        );
        let defaults: BTreeSet<FaultKind> = [
            FaultKind::Kill,
            FaultKind::Pause,
            FaultKind::Isolate,
            FaultKind::Reset,
            FaultKind::Latency,
        ]
        .into();
        for seed in 1..=10 {
            let kinds = kinds_of(&plan_nemesis(&two, seed));
            assert_eq!(kinds, [FaultKind::Pause, FaultKind::Isolate].into());
            let kinds = kinds_of(&plan_nemesis(&default, seed));
            assert!(kinds.is_subset(&defaults), "{kinds:?}");
            assert!(kinds.contains(&FaultKind::Kill), "{kinds:?}");
        }
        // Every kind listed is drawn in a long run.
        let all = kinds_of(&plan_nemesis(&every_kind(""), 1));
        assert_eq!(all, FaultKind::ALL.into());
    }

    #[test]
    fn swarm_mode_turns_on_some_of_the_kinds_per_seed() {
        let s = every_kind("swarm = true");
        let mut sizes = BTreeSet::new();
        for seed in 1..=20 {
            let kinds = kinds_of(&plan_nemesis(&s, seed));
            assert!(!kinds.is_empty(), "seed {seed}");
            assert!(kinds.len() < FaultKind::ALL.len(), "seed {seed}: {kinds:?}");
            sizes.insert(kinds.len());
        }
        assert!(
            sizes.len() > 1,
            "every seed turned on as many kinds: {sizes:?}"
        );
    }

    #[test]
    fn each_kind_goes_only_where_it_can_act() {
        let s =
            every_kind("targets = [\"broker-1\", \"broker-2\", \"controller-1\", \"p1\", \"c1\"]");
        let clients = ["p1", "c1"];
        let every_node = s.node_names();
        let ms = Duration::from_millis;
        for seed in 1..=10 {
            for f in plan_nemesis(&s, seed) {
                let node = f.node.as_deref().unwrap_or_default();
                let broker = node.starts_with("broker-");
                let controller = node.starts_with("controller-");
                match f.kind {
                    FaultKind::Stop => assert!(broker, "{f:?}"),
                    FaultKind::Kill | FaultKind::Crash | FaultKind::DiskTornWrite => {
                        assert!(broker || controller, "{f:?}")
                    }
                    FaultKind::Pause | FaultKind::Isolate => assert!(!node.is_empty(), "{f:?}"),
                    FaultKind::ClockSkew | FaultKind::ClockJump => {
                        assert!(broker || clients.contains(&node), "{f:?}");
                        assert!((-60_000..60_000).contains(&f.offset_ms), "{f:?}");
                    }
                    FaultKind::Reset | FaultKind::DiskCorrupt | FaultKind::DiskFull => {
                        assert!(!node.is_empty() && !controller, "{f:?}")
                    }
                    FaultKind::DiskSlowFsync => {
                        assert!(!node.is_empty() && !controller, "{f:?}");
                        assert!(f.latency >= ms(5) && f.latency < ms(505), "{f:?}");
                    }
                    FaultKind::Latency => {
                        assert!(f.node.is_none() && f.from.is_none(), "{f:?}");
                        assert!(f.latency >= ms(10) && f.latency < ms(210), "{f:?}");
                        assert!(f.jitter < ms(100), "{f:?}");
                    }
                    FaultKind::Loss => {
                        assert!(f.node.is_none(), "{f:?}");
                        assert!(f.rate >= 0.05 && f.rate < 0.30, "{f:?}");
                    }
                    FaultKind::Partition => {
                        let [one, others] = &f.groups[..] else {
                            panic!("two groups: {f:?}");
                        };
                        assert_eq!(one.len(), 1, "{f:?}");
                        assert!(!one[0].starts_with("controller-"), "{f:?}");
                        let rest: Vec<&String> =
                            every_node.iter().filter(|n| **n != one[0]).collect();
                        assert_eq!(others.iter().collect::<Vec<_>>(), rest, "{f:?}");
                    }
                    FaultKind::Clog => {
                        let (from, to) = (f.from.as_deref().unwrap(), f.to.as_deref().unwrap());
                        assert!(
                            clients.contains(&from) || clients.contains(&to),
                            "one end is a client: {f:?}"
                        );
                        assert!(!from.starts_with("controller-") && !to.starts_with("controller-"));
                    }
                }
                if controller {
                    assert!(
                        matches!(
                            f.kind,
                            FaultKind::Kill | FaultKind::Pause | FaultKind::Isolate
                        ),
                        "{f:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn targets_are_the_files_or_every_broker_then_every_controller() {
        let named = every_kind("targets = [\"broker-2\", \"controller-3\"]");
        let default = every_kind("");
        for seed in 1..=5 {
            for f in plan_nemesis(&named, seed) {
                if let Some(node) = &f.node {
                    assert!(
                        ["broker-2", "controller-3"].contains(&node.as_str()),
                        "{f:?}"
                    );
                }
            }
            let nodes: BTreeSet<String> = plan_nemesis(&default, seed)
                .into_iter()
                .filter_map(|f| f.node)
                .collect();
            assert!(
                nodes
                    .iter()
                    .all(|n| n.starts_with("broker-") || n.starts_with("controller-")),
                "{nodes:?}"
            );
            assert!(
                nodes.contains("broker-1") && nodes.contains("controller-1"),
                "{nodes:?}"
            );
        }
        // Without clients, a clog's other end is broker-1.
        let no_clients = scenario(
            r#"
duration = "300s"
[cluster]
brokers = 3
[[topic]]
name = "t"
[nemesis]
kinds = ["clog"]
interval = "1s"
"#,
        );
        let plan = plan_nemesis(&no_clients, 3);
        assert!(!plan.is_empty());
        for f in plan {
            let ends = [f.from.unwrap(), f.to.unwrap()];
            assert!(ends.contains(&"broker-1".to_string()), "{ends:?}");
        }
    }

    #[test]
    fn the_timeline_is_the_scenarios_faults_and_the_nemesis_in_time_order() {
        let faults = r#"
duration = "60s"
[cluster]
brokers = 3
[[topic]]
name = "t"
replication_factor = 3
[[fault]]
at = "10s"
for = "2s"
kind = "crash"
nodes = ["replicas:t/0"]
restart_stagger = "1s"
[[fault]]
at = "5s"
kind = "latency"
latency = "50ms"
jitter = "5ms"
"#;
        let s = scenario(faults);
        assert!(plan_nemesis(&s, 1).is_empty(), "no [nemesis], no draws");
        let timeline = plan(&s, 1);
        assert_eq!(timeline.len(), 2);
        assert_eq!(timeline[0].kind, FaultKind::Latency);
        assert_eq!(
            (timeline[0].at, timeline[0].duration),
            (Duration::from_secs(5), None)
        );
        assert_eq!(
            (timeline[0].latency, timeline[0].jitter),
            (Duration::from_millis(50), Duration::from_millis(5))
        );
        assert_eq!(timeline[1].kind, FaultKind::Crash);
        assert_eq!(timeline[1].nodes, ["replicas:t/0"]);
        assert_eq!(timeline[1].restart_stagger, Duration::from_secs(1));
        assert_eq!(timeline[1].duration, Some(Duration::from_secs(2)));
        assert!(timeline.iter().all(|f| f.source == "scenario"));
        // With a nemesis: merged by time; at a tie, the scenario's fault comes first.
        let with_nemesis = scenario(&format!("{faults}[nemesis]\ninterval = \"500ms\"\n"));
        for seed in 1..=5 {
            let merged = plan(&with_nemesis, seed);
            assert_eq!(merged.len(), 2 + plan_nemesis(&with_nemesis, seed).len());
            for pair in merged.windows(2) {
                assert!(pair[0].at <= pair[1].at, "{pair:?}");
                if pair[0].at == pair[1].at {
                    assert!(pair[0].source == "scenario" || pair[1].source == "nemesis");
                }
            }
            let scenario_faults: Vec<&PlannedFault> =
                merged.iter().filter(|f| f.source == "scenario").collect();
            assert_eq!(scenario_faults.len(), 2);
        }
    }
}
