//! Shrinking a failing seed to a smaller scenario that fails the same way (`cargo lab
//! shrink FILE --seed N`). The scenario is edited as TOML, step by step, and every step is
//! kept only if the same seed still fails with one of the original failure's kinds:
//!
//! 1. the seed's point of the configuration swarm is fixed (every list or range in the
//!    file becomes the value the seed drew) and the nemesis becomes an explicit timeline
//!    (its faults, exactly as the seed planned them, written as `[[fault]]` entries), so
//!    that later steps can remove them one by one;
//! 2. then, greedily, until no step helps: remove one fault, one producer or consumer, the
//!    nemesis, `must_see`; halve a producer's rate; drop a topic's last partition; end the
//!    run sooner (halve it, or end it a second after the last fault); move the faults
//!    earlier (time windows: less quiet time before and after what fails).
//!
//! Pure: the caller runs each candidate (under the simulator) and says how it failed. What
//! comes out is TOML that `scenario::parse` accepts, so the shrunk scenario replays with
//! `cargo lab repro`.

use crate::outcome::Outcome;
use crate::runner::nemesis::{plan_nemesis, PlannedFault};
use crate::scenario::{Drawn, Scenario};
use std::collections::BTreeSet;
use std::time::Duration;
use toml::Value;

/// The kinds of failure a run shows: anomaly names, `invariant:RULE`, `liveness`, `crash`,
/// `must_see`. Empty for a passing run.
pub fn signature(outcome: &Outcome) -> BTreeSet<String> {
    let mut kinds = BTreeSet::new();
    for failure in &outcome.failures {
        let kind = if let Some(rest) = failure.strip_prefix("forbidden ") {
            rest.split_whitespace().next().unwrap_or("").to_string()
        } else if failure.starts_with("expected ") {
            format!("missed:{}", failure.split_whitespace().nth(1).unwrap_or(""))
        } else {
            failure.split(':').next().unwrap_or("").trim().to_string()
        };
        kinds.insert(kind);
    }
    for v in &outcome.invariants {
        kinds.insert(format!("invariant:{}", v.rule));
    }
    kinds
}

/// A duration as the scenario format writes it, to the microsecond.
fn duration_text(d: Duration) -> String {
    let us = d.as_micros();
    if us.is_multiple_of(1000) {
        format!("{}ms", us / 1000)
    } else {
        format!("{}.{:03}ms", us / 1000, us % 1000)
    }
}

/// One planned fault as a `[[fault]]` table.
fn fault_table(f: &PlannedFault) -> Value {
    let mut t = toml::map::Map::new();
    let s = |v: &str| Value::String(v.to_string());
    t.insert("at".into(), s(&duration_text(f.at)));
    if let Some(d) = f.duration {
        t.insert("for".into(), s(&duration_text(d)));
    }
    t.insert("kind".into(), s(f.kind.name()));
    if let Some(n) = &f.node {
        t.insert("node".into(), s(n));
    }
    if !f.nodes.is_empty() {
        t.insert(
            "nodes".into(),
            Value::Array(f.nodes.iter().map(|n| s(n)).collect()),
        );
    }
    if !f.restart_stagger.is_zero() {
        t.insert(
            "restart_stagger".into(),
            s(&duration_text(f.restart_stagger)),
        );
    }
    if !f.groups.is_empty() {
        let groups = f
            .groups
            .iter()
            .map(|g| Value::Array(g.iter().map(|n| s(n)).collect()))
            .collect();
        t.insert("groups".into(), Value::Array(groups));
    }
    if f.one_way {
        t.insert("one_way".into(), Value::Boolean(true));
    }
    if let Some(v) = &f.from {
        t.insert("from".into(), s(v));
    }
    if let Some(v) = &f.to {
        t.insert("to".into(), s(v));
    }
    if !f.latency.is_zero() {
        t.insert("latency".into(), s(&duration_text(f.latency)));
    }
    if !f.jitter.is_zero() {
        t.insert("jitter".into(), s(&duration_text(f.jitter)));
    }
    if f.rate > 0.0 {
        t.insert("rate".into(), Value::Float(f.rate));
    }
    if f.offset_ms != 0 {
        t.insert("offset".into(), s(&format!("{}ms", f.offset_ms)));
    }
    if let Some(a) = &f.after {
        t.insert("after".into(), s(a));
    }
    Value::Table(t)
}

fn parse_table(text: &str) -> Result<toml::map::Map<String, Value>, String> {
    match text.parse::<Value>().map_err(|e| e.to_string())? {
        Value::Table(t) => Ok(t),
        _ => Err("a scenario is a TOML table".into()),
    }
}

fn write(table: toml::map::Map<String, Value>) -> String {
    toml::to_string(&Value::Table(table)).expect("a TOML table serializes")
}

/// The scenario as `seed` runs it, written out: every setting and number the seed drew
/// from a list or range fixed to its value (all at once, so the point is exactly the
/// seed's), and the nemesis replaced by the faults it planned, as an explicit timeline.
/// None when there is nothing to write out (no choices and no nemesis).
pub fn explicit_timeline(text: &str, scenario: &Scenario, seed: u64) -> Option<String> {
    let (drawn_scenario, drawn) = scenario.draw(seed);
    if scenario.nemesis.is_none() && drawn.is_empty() {
        return None;
    }
    let mut table = parse_table(text).ok()?;
    for d in &drawn {
        pin(&mut table, d)?;
    }
    if drawn_scenario.nemesis.is_some() {
        table.remove("nemesis");
        let faults = table
            .entry("fault".to_string())
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(faults) = faults else {
            return None;
        };
        faults.extend(plan_nemesis(&drawn_scenario, seed).iter().map(fault_table));
    }
    Some(write(table))
}

/// Fixes one drawn value in the file's table.
fn pin(table: &mut toml::map::Map<String, Value>, d: &Drawn) -> Option<()> {
    fn entry<'a>(
        t: &'a mut toml::map::Map<String, Value>,
        key: &str,
    ) -> Option<&'a mut toml::map::Map<String, Value>> {
        t.get_mut(key)?.as_table_mut()
    }
    fn nth<'a>(
        t: &'a mut toml::map::Map<String, Value>,
        key: &str,
        i: usize,
    ) -> Option<&'a mut toml::map::Map<String, Value>> {
        t.get_mut(key)?.as_array_mut()?.get_mut(i)?.as_table_mut()
    }
    let target = match (d.section, d.index) {
        ("cluster.config", _) => entry(entry(table, "cluster")?, "config")?,
        ("cluster.controller_config", _) => entry(entry(table, "cluster")?, "controller_config")?,
        ("topic.config", Some(i)) => entry(nth(table, "topic", i)?, "config")?,
        (section, Some(i)) => nth(table, section, i)?,
        _ => return None,
    };
    target.insert(d.key.clone(), d.value.clone());
    Some(())
}

/// Every one-step reduction of a scenario, each with what it did.
pub fn candidates(text: &str) -> Vec<(String, String)> {
    let Ok(table) = parse_table(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut with = |what: String, edit: &dyn Fn(&mut toml::map::Map<String, Value>) -> bool| {
        let mut t = table.clone();
        if edit(&mut t) {
            out.push((what, write(t)));
        }
    };
    for (key, keep_one) in [("fault", false), ("producer", true), ("consumer", false)] {
        let n = table.get(key).and_then(Value::as_array).map_or(0, Vec::len);
        for i in (0..n).rev() {
            if keep_one && n == 1 {
                continue;
            }
            with(format!("remove {key}[{i}]"), &|t| {
                let Some(Value::Array(list)) = t.get_mut(key) else {
                    return false;
                };
                list.remove(i);
                if list.is_empty() {
                    t.remove(key);
                }
                true
            });
        }
    }
    for key in ["nemesis", "churn", "must_see", "buggify"] {
        if table.contains_key(key) {
            with(format!("remove {key}"), &|t| t.remove(key).is_some());
        }
    }
    with("halve the duration".into(), &|t| {
        halve_duration(t.get_mut("duration"), Duration::from_secs(1))
    });
    with("end the run one second after the last fault".into(), &|t| {
        end_after_last_fault(t)
    });
    with(
        "move every fault earlier by half the first one's time".into(),
        &|t| move_faults_earlier(t),
    );
    let producers = table
        .get("producer")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    for i in 0..producers {
        with(format!("halve producer[{i}]'s rate"), &|t| {
            let Some(Value::Array(list)) = t.get_mut("producer") else {
                return false;
            };
            let Some(Value::Table(p)) = list.get_mut(i) else {
                return false;
            };
            let rate = p.get("rate").and_then(Value::as_integer).unwrap_or(100);
            if rate < 20 {
                return false;
            }
            p.insert("rate".into(), Value::Integer(rate / 2));
            true
        });
    }
    let topics = table
        .get("topic")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    for i in 0..topics {
        with(format!("drop topic[{i}]'s last partition"), &|t| {
            let Some(Value::Array(list)) = t.get_mut("topic") else {
                return false;
            };
            let Some(Value::Table(topic)) = list.get_mut(i) else {
                return false;
            };
            let n = topic
                .get("partitions")
                .and_then(Value::as_integer)
                .unwrap_or(1);
            if n <= 1 {
                return false;
            }
            topic.insert("partitions".into(), Value::Integer(n - 1));
            true
        });
    }
    out
}

/// The `at` and `for` of every `[[fault]]` (absent `for`: zero); None if one is unreadable.
fn fault_times(t: &toml::map::Map<String, Value>) -> Option<Vec<(Duration, Duration)>> {
    let faults = t.get("fault")?.as_array()?;
    let time = |f: &Value, key: &str| -> Option<Duration> {
        match f.get(key) {
            None => Some(Duration::ZERO),
            Some(v) => crate::scenario::parse_duration(v.as_str()?).ok(),
        }
    };
    faults
        .iter()
        .map(|f| Some((time(f, "at")?, time(f, "for")?)))
        .collect()
}

/// A time window: the run ends a second after the last fault ends (a fault that waits for
/// a probe may fire later than its `at`, so the step is only kept if the failure stays).
fn end_after_last_fault(t: &mut toml::map::Map<String, Value>) -> bool {
    let Some(times) = fault_times(t) else {
        return false;
    };
    let Some(last) = times.iter().map(|(at, length)| *at + *length).max() else {
        return false;
    };
    let end = last + Duration::from_secs(1);
    let Some(Value::String(text)) = t.get_mut("duration") else {
        return false;
    };
    match crate::scenario::parse_duration(text) {
        Ok(d) if end < d => {
            *text = duration_text(end);
            true
        }
        _ => false,
    }
}

/// A time window: every fault moves earlier by half of the first fault's `at`, keeping
/// the gaps between them (clients start at zero, so less quiet time comes first).
fn move_faults_earlier(t: &mut toml::map::Map<String, Value>) -> bool {
    let Some(times) = fault_times(t) else {
        return false;
    };
    let Some(first) = times.iter().map(|(at, _)| *at).min() else {
        return false;
    };
    let shift = first / 2;
    if shift < Duration::from_millis(100) {
        return false;
    }
    let Some(Value::Array(faults)) = t.get_mut("fault") else {
        return false;
    };
    for (f, (at, _)) in faults.iter_mut().zip(times) {
        if let Some(f) = f.as_table_mut() {
            f.insert("at".into(), Value::String(duration_text(at - shift)));
        }
    }
    true
}

/// Halve a duration string in place, not below `floor`; false when it cannot shrink.
fn halve_duration(value: Option<&mut Value>, floor: Duration) -> bool {
    let Some(Value::String(text)) = value else {
        return false;
    };
    let Ok(d) = crate::scenario::parse_duration(text) else {
        return false;
    };
    let half = d / 2;
    if half < floor {
        return false;
    }
    *text = duration_text(half);
    true
}

/// The result of a shrink: the smallest scenario found, the steps that got there, and
/// how many candidate runs it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Shrunk {
    pub text: String,
    pub steps: Vec<String>,
    pub runs: usize,
}

/// Shrink `text` (a scenario that fails with `target` kinds for `seed`): `attempt` parses
/// and runs a candidate and returns its failure kinds (None when it does not parse).
/// Stops when no one-step reduction keeps a kind of `target`, or after `runs_max` runs.
pub fn shrink(
    text: &str,
    scenario: &Scenario,
    seed: u64,
    target: &BTreeSet<String>,
    runs_max: usize,
    attempt: &mut dyn FnMut(&str) -> Option<BTreeSet<String>>,
) -> Shrunk {
    let keeps = |kinds: &BTreeSet<String>| !kinds.is_disjoint(target);
    let mut current = text.to_string();
    let mut steps = Vec::new();
    let mut runs = 0;
    if let Some(explicit) = explicit_timeline(text, scenario, seed) {
        runs += 1;
        if attempt(&explicit).is_some_and(|k| keeps(&k)) {
            current = explicit;
            steps.push("the seed's draws and nemesis written out as an explicit timeline".into());
        }
    }
    'outer: while runs < runs_max {
        for (what, candidate) in candidates(&current) {
            if runs >= runs_max {
                break 'outer;
            }
            runs += 1;
            if attempt(&candidate).is_some_and(|k| keeps(&k)) {
                current = candidate;
                steps.push(what);
                continue 'outer;
            }
        }
        break;
    }
    Shrunk {
        text: current,
        steps,
        runs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse;
    use std::path::Path;

    const FAILING: &str = r#"
duration = "20s"

[cluster]
brokers = 1

[[topic]]
name = "t"
partitions = 3

[[producer]]
name = "p1"
topic = "t"
rate = 400

[[producer]]
name = "p2"
topic = "t"
rate = 400

[[fault]]
at = "5s"
for = "1s"
kind = "kill"
node = "broker-1"

[[fault]]
at = "9s"
for = "1s"
kind = "pause"
node = "broker-1"

[nemesis]
kinds = ["pause"]
interval = "3s"
"#;

    /// A model of a bug: the run "fails" with lost-write while it still has the kill at 5s
    /// and p1, whatever else is there.
    fn model(text: &str) -> Option<BTreeSet<String>> {
        let s = parse(Path::new("s.toml"), text).ok()?;
        let kill = s.faults.iter().any(|f| f.kind.get_ref().name() == "kill");
        let p1 = s
            .producers
            .iter()
            .any(|p| p.name.as_ref().is_some_and(|n| n.get_ref() == "p1"));
        Some(if kill && p1 {
            ["lost-write".to_string()].into()
        } else {
            BTreeSet::new()
        })
    }

    #[test]
    fn shrinking_keeps_what_the_failure_needs_and_drops_the_rest() {
        let scenario = parse(Path::new("s.toml"), FAILING).unwrap();
        let target: BTreeSet<String> = ["lost-write".to_string()].into();
        let shrunk = shrink(FAILING, &scenario, 3, &target, 500, &mut model);
        let s = parse(Path::new("s.toml"), &shrunk.text).unwrap();
        assert!(s.nemesis.is_none(), "{}", shrunk.text);
        assert_eq!(s.faults.len(), 1, "{}", shrunk.text);
        assert_eq!(s.faults[0].kind.get_ref().name(), "kill");
        assert_eq!(s.producers.len(), 1);
        assert_eq!(s.topics[0].partitions.get_ref().get(), 1);
        assert!(s.producers[0].rate.get_ref().get() < 400);
        assert!(s.duration < Duration::from_secs(20));
        assert!(model(&shrunk.text).unwrap().contains("lost-write"));
        assert!(!shrunk.steps.is_empty());
    }

    #[test]
    fn the_explicit_timeline_is_the_seeds_nemesis_plan() {
        let scenario = parse(Path::new("s.toml"), FAILING).unwrap();
        let text = explicit_timeline(FAILING, &scenario, 7).unwrap();
        let explicit = parse(Path::new("s.toml"), &text).unwrap();
        assert!(explicit.nemesis.is_none());
        let planned = plan_nemesis(&scenario, 7);
        assert_eq!(explicit.faults.len(), 2 + planned.len());
        let ats: BTreeSet<Duration> = explicit.faults.iter().map(|f| f.at.get_ref().0).collect();
        for f in &planned {
            let to_us = Duration::from_micros(f.at.as_micros() as u64);
            assert!(ats.contains(&to_us), "{:?} at {:?}", f.kind, f.at);
        }
    }

    #[test]
    fn the_explicit_form_fixes_the_seeds_draws() {
        let text = FAILING
            .replace("partitions = 3", "partitions = { min = 1, max = 5 }")
            .replacen(
                "rate = 400",
                "rate = [100, 400]\nin_flight = { min = 1, max = 5 }",
                1,
            )
            .replace(
                "brokers = 1",
                "brokers = 1\nconfig = { \"log.segment.bytes\" = [\"2000\", \"1048576\"] }",
            );
        let scenario = parse(Path::new("s.toml"), &text).unwrap();
        for seed in 1..20 {
            let (drawn, settings) = scenario.draw(seed);
            assert_eq!(settings.len(), 4);
            let explicit = explicit_timeline(&text, &scenario, seed).unwrap();
            let pinned = parse(Path::new("s.toml"), &explicit).unwrap();
            assert!(pinned.draw(seed).1.is_empty(), "{explicit}");
            assert_eq!(
                pinned.topics[0].partitions.get_ref(),
                drawn.topics[0].partitions.get_ref()
            );
            assert_eq!(
                pinned.producers[0].rate.get_ref(),
                drawn.producers[0].rate.get_ref()
            );
            assert_eq!(
                pinned.producers[0].in_flight.get_ref(),
                drawn.producers[0].in_flight.get_ref()
            );
            assert_eq!(
                pinned.cluster.config["log.segment.bytes"].get_ref(),
                drawn.cluster.config["log.segment.bytes"].get_ref()
            );
            assert_eq!(
                pinned.faults.len(),
                2 + plan_nemesis(&drawn, seed).len(),
                "the nemesis planned for the drawn point"
            );
        }
    }

    #[test]
    fn time_windows_cut_quiet_time_around_the_faults() {
        let mut t = parse_table(FAILING).unwrap();
        assert!(end_after_last_fault(&mut t));
        assert_eq!(t["duration"].as_str(), Some("11000ms"), "9s + 1s + 1s");
        assert!(!end_after_last_fault(&mut t), "already there");
        assert!(move_faults_earlier(&mut t));
        let ats: Vec<&str> = t["fault"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["at"].as_str().unwrap())
            .collect();
        assert_eq!(
            ats,
            ["2500ms", "6500ms"],
            "shifted by half of 5s, gaps kept"
        );
        let s = parse(Path::new("s.toml"), &write(t)).unwrap();
        assert_eq!(s.faults.len(), 2);
    }

    #[test]
    fn failure_kinds_come_from_failures_and_invariants() {
        let outcome = Outcome {
            failures: vec![
                "liveness: the final read did not complete within 30s of healing".into(),
                "forbidden lost-write found (3)".into(),
                "expected duplicate not found".into(),
            ],
            ..crate::outcome::tests_outcome()
        };
        let kinds = signature(&outcome);
        assert!(kinds.contains("liveness"));
        assert!(kinds.contains("lost-write"));
        assert!(kinds.contains("missed:duplicate"));
    }
}
