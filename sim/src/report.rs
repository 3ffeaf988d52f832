//! The files a run leaves behind, under `reports/runs/<suite>/<scenario>/<seed>/` (the
//! suite is the scenario file's folder):
//! `summary.json` (machine-readable verdict and counters), `history.jsonl` (every client
//! operation), `events.jsonl` (faults and phases) and `report.md`, the page a person reads
//! first.

use crate::outcome::{Outcome, Verdict};
use crate::scenario::Scenario;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Cases shown per anomaly in report.md; every case is in the history anyway.
const EXAMPLES_PER_ANOMALY: usize = 3;

/// The command that replays one seed exactly.
pub fn repro_command(scenario: &Scenario, seed: u64) -> String {
    format!("cargo lab repro {} --seed {seed}", scenario.path.display())
}

/// Where a scenario's seeds write their reports: `runs/<suite>/<scenario>/`, the suite
/// being the scenario file's folder (`scenarios/smoke/nemesis-swarm.toml` and
/// `scenarios/cluster/nemesis-swarm.toml` must not share one), or `runs/<scenario>/` for
/// a file with no folder.
pub fn run_dir(root: &Path, scenario: &Scenario) -> PathBuf {
    let runs = root.join("runs");
    match scenario
        .path
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
    {
        Some(suite) => runs.join(suite).join(&scenario.name),
        None => runs.join(&scenario.name),
    }
}

/// Write every file of one seed's report; returns the folder.
pub fn write(
    root: &Path,
    scenario: &Scenario,
    outcome: &Outcome,
    commit: &str,
) -> std::io::Result<PathBuf> {
    write_with(root, scenario, outcome, commit, true)
}

/// As `write`; without `with_history` the seed's `history.jsonl` is left out (large sweeps
/// keep histories of failing seeds only; `cargo lab repro` brings any one back exactly).
pub fn write_with(
    root: &Path,
    scenario: &Scenario,
    outcome: &Outcome,
    commit: &str,
    with_history: bool,
) -> std::io::Result<PathBuf> {
    let dir = run_dir(root, scenario).join(outcome.seed.to_string());
    std::fs::create_dir_all(&dir)?;
    let summary = serde_json::json!({
        "scenario": scenario.name,
        "scenario_file": scenario.path.display().to_string(),
        "scenario_hash": format!("{:016x}", scenario.hash),
        "seed": outcome.seed,
        "commit": commit,
        "verdict": outcome.verdict.name(),
        "failures": outcome.failures,
        "first_violation": outcome.violations.first(),
        "violations": outcome.violations.len(),
        "invariant_violations": outcome.invariants.len(),
        "first_invariant_violation": outcome.invariants.first(),
        "counters": outcome.counters,
        "trace_hash": format!("{:016x}", outcome.trace_hash),
        "simulated_seconds": outcome.simulated_ns as f64 / 1e9,
        "wall_seconds": outcome.wall_ms as f64 / 1e3,
        "repro": repro_command(scenario, outcome.seed),
        "probes": outcome.probes,
        "settings": outcome.settings,
        "buggify": outcome.buggify.iter().map(|(site, (enabled, fired))| {
            (site.clone(), serde_json::json!({"enabled": enabled, "fired": fired}))
        }).collect::<serde_json::Map<String, serde_json::Value>>(),
    });
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary).expect("json") + "\n",
    )?;
    let history_path = dir.join("history.jsonl");
    if with_history {
        let mut history = std::io::BufWriter::new(std::fs::File::create(&history_path)?);
        for op in &outcome.history.ops {
            // A full disk surfaces here as an error (serde wraps the write), not a panic.
            serde_json::to_writer(&mut history, op)?;
            history.write_all(b"\n")?;
        }
        history.flush()?;
    } else if history_path.exists() {
        // An older run's history must not pass for this one's.
        std::fs::remove_file(&history_path)?;
    }
    let mut events = std::io::BufWriter::new(std::fs::File::create(dir.join("events.jsonl"))?);
    for e in &outcome.events {
        serde_json::to_writer(&mut events, e)?;
        events.write_all(b"\n")?;
    }
    events.flush()?;
    std::fs::write(dir.join("report.md"), markdown(scenario, outcome, commit))?;
    Ok(dir)
}

fn secs(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

/// The human-readable report.
pub fn markdown(scenario: &Scenario, outcome: &Outcome, commit: &str) -> String {
    let mut md = String::new();
    summary(&mut md, scenario, outcome, commit);
    groups(&mut md, outcome);
    timeline(&mut md, outcome);
    invariants(&mut md, scenario, outcome);
    anomalies(&mut md, scenario, outcome);
    coverage(&mut md, outcome);
    md
}

/// The coverage probes this seed reached and what BUGGIFY did.
fn coverage(md: &mut String, outcome: &Outcome) {
    let _ = writeln!(
        md,
        "## Coverage probes reached
"
    );
    if outcome.probes.is_empty() {
        let _ = writeln!(
            md,
            "None.
"
        );
    } else {
        let _ = writeln!(md, "| probe | times |\n|---|---|");
        for (name, n) in &outcome.probes {
            let _ = writeln!(md, "| `{name}` | {n} |");
        }
        let _ = writeln!(md);
    }
    if !outcome.buggify.is_empty() {
        let _ = writeln!(
            md,
            "## BUGGIFY\n\n| site | enabled | fired |\n|---|---|---|"
        );
        for (site, (enabled, fired)) in &outcome.buggify {
            let _ = writeln!(md, "| `{site}` | {enabled} | {fired} |");
        }
        let _ = writeln!(md);
    }
}

/// The title, how to replay, what ran where, the verdict and what ran.
fn summary(md: &mut String, scenario: &Scenario, outcome: &Outcome, commit: &str) {
    let _ = writeln!(
        md,
        "# {} — seed {}: {}\n",
        scenario.name,
        outcome.seed,
        outcome.verdict.name().to_uppercase()
    );
    if !scenario.description.is_empty() {
        let _ = writeln!(md, "{}\n", scenario.description);
    }
    let _ = writeln!(
        md,
        "Replay exactly: `{}`\n",
        repro_command(scenario, outcome.seed)
    );
    let _ = writeln!(
        md,
        "Scenario `{}` (hash {:016x}), commit `{commit}`, trace hash {:016x}, {} simulated in {:.2}s wall.\n",
        scenario.path.display(),
        scenario.hash,
        outcome.trace_hash,
        secs(outcome.simulated_ns),
        outcome.wall_ms as f64 / 1e3
    );
    if !outcome.settings.is_empty() {
        let _ = writeln!(
            md,
            "Settings drawn for this seed: {}.\n",
            outcome.settings.join(", ")
        );
    }
    let _ = writeln!(md, "## Verdict\n");
    if outcome.verdict == Verdict::Pass {
        let _ = writeln!(md, "Every invariant held: no forbidden anomaly, every expected one found, the final read completed in time.\n");
    } else {
        for f in &outcome.failures {
            let _ = writeln!(md, "- {f}");
        }
        md.push('\n');
    }
    let c = &outcome.counters;
    let _ = writeln!(md, "## What ran\n");
    let _ = writeln!(
        md,
        "{} brokers, {} controllers; {} producers, {} consumers. {} sends acknowledged ({} records), {} with unknown outcome; {} polls read {} records; {} faults.\n",
        scenario.cluster.brokers.get_ref(),
        scenario.controllers,
        scenario.producers.len(),
        scenario.consumers.len(),
        c.sends_ok,
        c.records_acknowledged,
        c.sends_unknown,
        c.polls,
        c.records_read,
        c.faults
    );
}

/// Seconds between the columns of a group's lag table.
const LAG_STEP_NS: u64 = 5_000_000_000;

/// Consumer groups: each generation (when its rebalance began, how long it took, its
/// members and partitions) and each partition's lag every 5 s (log end known to producers
/// minus the last acknowledged commit).
fn groups(md: &mut String, outcome: &Outcome) {
    let stats = crate::checker::group_stats(&outcome.history);
    if stats.groups.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Consumer groups
"
    );
    for g in &stats.groups {
        let durations: Vec<u64> = g.rebalances.iter().map(|r| r.duration_ns).collect();
        let longest = durations.iter().max().copied().unwrap_or(0);
        let _ = writeln!(
            md,
            "### {}: {} generations, longest rebalance {}\n",
            g.group,
            g.rebalances.len(),
            secs(longest)
        );
        let _ = writeln!(md, "| generation | began | took | members | partitions |");
        let _ = writeln!(md, "|---|---|---|---|---|");
        for r in &g.rebalances {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                r.generation,
                secs(r.started_ns),
                secs(r.duration_ns),
                r.members.len(),
                r.partitions
            );
        }
        let end = g
            .lag
            .iter()
            .flat_map(|l| l.points.last().map(|p| p.time_ns))
            .max()
            .unwrap_or(0);
        let columns: Vec<u64> = (0..=end / LAG_STEP_NS).map(|k| k * LAG_STEP_NS).collect();
        let _ = writeln!(md, "\nLag (records behind) per partition, every 5 s:\n");
        let header: Vec<String> = columns
            .iter()
            .map(|t| format!("{}s", t / 1_000_000_000))
            .collect();
        let _ = writeln!(md, "| partition | {} |", header.join(" | "));
        let _ = writeln!(md, "|---|{}", "---|".repeat(columns.len()));
        for l in &g.lag {
            let cells: Vec<String> = columns
                .iter()
                .map(|t| {
                    l.points
                        .iter()
                        .take_while(|p| p.time_ns <= *t)
                        .last()
                        .map_or("-".to_string(), |p| p.lag.to_string())
                })
                .collect();
            let _ = writeln!(
                md,
                "| {}/{} | {} |",
                l.topic,
                l.partition,
                cells.join(" | ")
            );
        }
        let _ = writeln!(md);
    }
}

/// Faults and phases: the run's timeline.
fn timeline(md: &mut String, outcome: &Outcome) {
    let _ = writeln!(md, "## Faults and phases\n");
    if outcome.events.is_empty() {
        let _ = writeln!(md, "None.\n");
    } else {
        let _ = writeln!(
            md,
            "| time | event | what | target | source |\n|---|---|---|---|---|"
        );
        for e in &outcome.events {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                secs(e.time_ns),
                e.event,
                e.what,
                e.target,
                e.source
            );
        }
        md.push('\n');
    }
}

/// Broken replication and controller invariants, the first few of them.
fn invariants(md: &mut String, scenario: &Scenario, outcome: &Outcome) {
    let _ = writeln!(md, "## Invariants\n");
    if outcome.invariants.is_empty() {
        let _ = writeln!(
            md,
            "None broken: one leader per partition and epoch, leader epochs and high watermarks never back, one active controller per term, one committed metadata log, ISR replicas equal below the high watermark (as far as nodes reported them).\n"
        );
    } else {
        let expectation = format!("{:?}", scenario.invariant_expectation).to_lowercase();
        let _ = writeln!(
            md,
            "### invariant ({} broken, {expectation} here)\n",
            outcome.invariants.len()
        );
        for v in outcome.invariants.iter().take(EXAMPLES_PER_ANOMALY * 3) {
            let _ = writeln!(md, "- {} {}: {}", secs(v.time_ns), v.rule, v.message);
        }
        if outcome.invariants.len() > EXAMPLES_PER_ANOMALY * 3 {
            let _ = writeln!(
                md,
                "- ... and {} more.",
                outcome.invariants.len() - EXAMPLES_PER_ANOMALY * 3
            );
        }
        md.push('\n');
    }
}

/// Anomalies the checkers found, per anomaly with the first few cases.
fn anomalies(md: &mut String, scenario: &Scenario, outcome: &Outcome) {
    let _ = writeln!(md, "## Anomalies\n");
    if outcome.violations.is_empty() {
        let _ = writeln!(md, "None found.\n");
    }
    // Per anomaly: how many, what the scenario says about it, and the first few cases.
    for anomaly in crate::history::Anomaly::ALL {
        let found: Vec<_> = outcome
            .violations
            .iter()
            .filter(|v| v.anomaly == anomaly)
            .collect();
        if found.is_empty() {
            continue;
        }
        let expectation = format!("{:?}", scenario.expectation(anomaly)).to_lowercase();
        let _ = writeln!(
            md,
            "### {} ({} found, {expectation} here)\n",
            anomaly.name(),
            found.len()
        );
        for v in found.iter().take(EXAMPLES_PER_ANOMALY) {
            // A group-wide anomaly has no partition: its "topic" is the group.
            let place = if v.partition < 0 {
                v.topic.clone()
            } else {
                format!("{}/{}", v.topic, v.partition)
            };
            let _ = writeln!(md, "- {place}: {}\n\n  ```", v.message);
            for index in v.ops.iter().take(10) {
                if let Some(op) = outcome.history.ops.get(*index) {
                    let _ = writeln!(md, "  {}", op_line(op));
                }
            }
            let _ = writeln!(md, "  ```\n");
        }
        if found.len() > EXAMPLES_PER_ANOMALY {
            let _ = writeln!(md, "... and {} more.\n", found.len() - EXAMPLES_PER_ANOMALY);
        }
    }
}

/// One history op as report evidence: its JSON, with long record and value lists cut to
/// their first and last few (a final read can hold thousands; `history.jsonl` has them all).
fn op_line(op: &crate::history::Op) -> String {
    const KEEP: usize = 3;
    let mut value = serde_json::to_value(op).expect("op serializes");
    if let Some(fields) = value.as_object_mut() {
        for key in ["records", "values"] {
            if let Some(serde_json::Value::Array(items)) = fields.get_mut(key) {
                if items.len() > 2 * KEEP + 1 {
                    let cut = items.len() - 2 * KEEP;
                    let tail = items.split_off(items.len() - KEEP);
                    items.truncate(KEEP);
                    items.push(serde_json::Value::String(format!(
                        "... {cut} more (history.jsonl has them) ..."
                    )));
                    items.extend(tail);
                }
            }
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::History;
    use crate::invariants::InvariantViolation;
    use crate::outcome::Counters;

    fn outcome(
        invariants: Vec<InvariantViolation>,
        verdict: Verdict,
        failures: Vec<String>,
    ) -> Outcome {
        Outcome {
            scenario: "c".into(),
            seed: 4,
            verdict,
            failures,
            violations: Vec::new(),
            invariants,
            counters: Counters::default(),
            history: History::default(),
            events: Vec::new(),
            trace_hash: 1,
            simulated_ns: 2_000_000_000,
            wall_ms: 10,
            probes: Default::default(),
            buggify: Default::default(),
            settings: Vec::new(),
        }
    }

    #[test]
    fn the_report_shows_broken_invariants_with_their_category_and_expectation() {
        let scenario = crate::scenario::parse(
            Path::new("scenarios/replication/x.toml"),
            "duration = \"10s\"\n[cluster]\nbrokers = 3\n",
        )
        .unwrap();
        let broken = InvariantViolation {
            time_ns: 1_500_000_000,
            rule: "one-leader-per-epoch".into(),
            message:
                "broker 2 became leader of t/0 in leader epoch 3, which broker 1 already leads"
                    .into(),
        };
        let failures = Outcome::judge_invariants(&scenario, std::slice::from_ref(&broken));
        assert_eq!(failures.len(), 1);
        assert!(failures[0]
            .starts_with("forbidden invariant broken (1): one-leader-per-epoch: broker 2"));
        let md = markdown(
            &scenario,
            &outcome(vec![broken], Verdict::Violation, failures),
            "abc",
        );
        assert!(md.contains("3 brokers, 3 controllers;"), "{md}");
        assert!(
            md.contains("### invariant (1 broken, forbidden here)"),
            "{md}"
        );
        assert!(
            md.contains(
                "- 1.500s one-leader-per-epoch: broker 2 became leader of t/0 in leader epoch 3"
            ),
            "{md}"
        );
        assert!(
            md.contains("Replay exactly: `cargo lab repro scenarios/replication/x.toml --seed 4`")
        );
        let md = markdown(
            &scenario,
            &outcome(Vec::new(), Verdict::Pass, Vec::new()),
            "abc",
        );
        assert!(md.contains("## Invariants\n\nNone broken"), "{md}");
    }
}
