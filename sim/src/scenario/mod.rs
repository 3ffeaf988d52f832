//! Scenario files: a cluster, topics, workloads, faults on a timeline, a nemesis, the run's
//! length and what each anomaly is expected to do. TOML, parsed with serde; every error
//! names the file, the line and the field, and nothing runs until the whole file is valid.
//!
//! - `schema`: the file as written (serde types, their defaults, the spans errors cite).
//! - `validate`: what it means, checked section by section into a [`Scenario`].
//! - here: the public face: [`load`], [`parse`], the validated [`Scenario`], the bounds,
//!   the error type and [`must_see_matches`].
//!
//! The format is documented for users in `scenarios/README.md`.

mod schema;
mod validate;

pub use schema::{
    parse_duration, AcksSpec, Assignors, ChurnSpec, ClusterSpec, CommitPolicy, ConsumerSpec, Dur,
    Expectation, FaultKind, FaultSpec, GroupProtocolSpec, Knob, NemesisSpec, OffsetResetSpec,
    ProducerSpec, Setting, SignedDur, TopicSpec,
};

use crate::history::Anomaly;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Upper bounds that keep a typo from asking for a run that never ends.
pub const BROKERS_MAX: usize = 9;
pub const DURATION_MAX: Duration = Duration::from_secs(24 * 3600);
pub const RATE_MAX: u64 = 1_000_000;
pub const CLIENTS_MAX: usize = 64;
/// Controller quorum sizes the lab builds: none (a standalone broker) or an odd quorum.
pub const CONTROLLER_COUNTS: [usize; 4] = [0, 1, 3, 5];
/// Controllers when the file does not say and there are several brokers.
pub const CONTROLLERS_DEFAULT_CLUSTER: usize = 3;
/// Nodes one fault may name in `nodes`.
pub const FAULT_NODES_MAX: usize = 16;

/// A scenario error: file, line, field, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    pub file: PathBuf,
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.field,
            self.message
        )
    }
}

impl std::error::Error for ScenarioError {}

/// One value the configuration swarm drew for a seed: where it sits in the file
/// (`section`, the entry's index for `[[topic]]`, `[[producer]]` and `[[consumer]]`, the
/// key) and the value. Shown as the field path errors use: `producer[0].in_flight = 3`.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawn {
    /// "cluster.config", "cluster.controller_config", "topic.config", "topic", "producer"
    /// or "consumer".
    pub section: &'static str,
    pub index: Option<usize>,
    pub key: String,
    pub value: toml::Value,
}

impl fmt::Display for Drawn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = match &self.value {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match (self.section, self.index) {
            ("topic.config", Some(i)) => write!(f, "topic[{i}].config.{} = {value}", self.key),
            (section, Some(i)) => write!(f, "{section}[{i}].{} = {value}", self.key),
            (section, None) => write!(f, "{section}.{} = {value}", self.key),
        }
    }
}

/// Draws a knob that varies, fixing it to the value drawn.
fn draw_knob<T: Copy + Ord + Into<i64> + TryFrom<i64>>(
    drawn: &mut Vec<Drawn>,
    section: &'static str,
    index: usize,
    key: &str,
    knob: &mut toml::Spanned<Knob<T>>,
    below: &mut dyn FnMut(u64) -> u64,
) {
    if !knob.get_ref().varies() {
        return;
    }
    let value = knob.get_ref().pick(&mut |n| below(n));
    drawn.push(Drawn {
        section,
        index: Some(index),
        key: key.to_string(),
        value: toml::Value::Integer(value.into()),
    });
    *knob = toml::Spanned::new(knob.span(), Knob::One(value));
}

/// A validated scenario, ready to run.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub path: PathBuf,
    pub name: String,
    pub description: String,
    /// FNV-1a of the file's bytes: identifies exactly what ran.
    pub hash: u64,
    pub duration: Duration,
    pub liveness: Duration,
    pub seeds: u64,
    pub cluster: ClusterSpec,
    /// Controller nodes, the file's `cluster.controllers` or its default.
    pub controllers: usize,
    pub topics: Vec<TopicSpec>,
    pub producers: Vec<ProducerSpec>,
    pub consumers: Vec<ConsumerSpec>,
    pub faults: Vec<FaultSpec>,
    pub nemesis: Option<NemesisSpec>,
    /// `[churn]`: topics created and deleted all run long.
    pub churn: Option<ChurnSpec>,
    pub expect: BTreeMap<Anomaly, Expectation>,
    /// `expect.invariant`: what a broken replication or controller invariant means here
    /// (forbidden by default).
    pub invariant_expectation: Expectation,
    /// `expect.liveness`: what a liveness failure means here (forbidden by default; a
    /// scenario whose faults must leave the final read stuck says `expected`).
    pub liveness_expectation: Expectation,
    /// Timeline events the run must record (`kind` or `kind: text`): proof that the fault
    /// sequence reached the mechanism the scenario is about.
    pub must_see: Vec<String>,
    /// Seeded perturbations inside the nodes (`faultline::buggify`) for every run.
    pub buggify: bool,
    /// `groups_stable_after`: from this time on (until the safety phase ends) no consumer
    /// group may form a new generation (static members restarting within their session
    /// timeout must not cause a rebalance); the run fails with rule `group-stable` if one
    /// does.
    pub groups_stable_after: Option<Duration>,
}

impl Scenario {
    /// The configuration swarm: every setting given as a list, and every number given as a
    /// list or a range, takes one of its values, drawn from the seed alone (in the file's
    /// order), so each seed runs its own point of the settings space. Returns the scenario
    /// with every choice resolved and what was drawn; a scenario without choices comes back
    /// as it was, with nothing drawn.
    pub fn draw(&self, seed: u64) -> (Scenario, Vec<Drawn>) {
        let mut rng = faultline::mix::SplitMix64::new(seed ^ 0x5357_4152_4d00_0001);
        let mut below = |n: u64| rng.below(n);
        let mut drawn = Vec::new();
        let mut scenario = self.clone();
        let mut setting = |section: &'static str,
                           index: Option<usize>,
                           key: &str,
                           setting: &mut toml::Spanned<Setting>,
                           below: &mut dyn FnMut(u64) -> u64| {
            if let Setting::Choice(values) = setting.get_ref() {
                let value = values[below(values.len() as u64) as usize].clone();
                drawn.push(Drawn {
                    section,
                    index,
                    key: key.to_string(),
                    value: toml::Value::String(value.clone()),
                });
                *setting = toml::Spanned::new(setting.span(), Setting::One(value));
            }
        };
        for (key, s) in scenario.cluster.config.iter_mut() {
            setting("cluster.config", None, key, s, &mut below);
        }
        for (key, s) in scenario.cluster.controller_config.iter_mut() {
            setting("cluster.controller_config", None, key, s, &mut below);
        }
        for (i, topic) in scenario.topics.iter_mut().enumerate() {
            for (key, s) in topic.config.iter_mut() {
                setting("topic.config", Some(i), key, s, &mut below);
            }
        }
        let mut numbers = Vec::new();
        for (i, t) in scenario.topics.iter_mut().enumerate() {
            draw_knob(
                &mut numbers,
                "topic",
                i,
                "partitions",
                &mut t.partitions,
                &mut below,
            );
            let rf = &mut t.replication_factor;
            draw_knob(
                &mut numbers,
                "topic",
                i,
                "replication_factor",
                rf,
                &mut below,
            );
        }
        for (i, p) in scenario.producers.iter_mut().enumerate() {
            let mut knob = |key: &str, k: &mut toml::Spanned<Knob<u32>>| {
                draw_knob(&mut numbers, "producer", i, key, k, &mut below)
            };
            knob("rate", &mut p.rate);
            knob("retries", &mut p.retries);
            knob("in_flight", &mut p.in_flight);
            knob("batch_records", &mut p.batch_records);
            if let Some(k) = p.records_per_batch.as_mut() {
                knob("records_per_batch", k);
            }
            knob("record_bytes", &mut p.record_bytes);
        }
        for (i, c) in scenario.consumers.iter_mut().enumerate() {
            let mut knob = |key: &str, k: &mut toml::Spanned<Knob<u32>>| {
                draw_knob(&mut numbers, "consumer", i, key, k, &mut below)
            };
            knob("fetch_max_wait_ms", &mut c.fetch_max_wait_ms);
            knob("fetch_min_bytes", &mut c.fetch_min_bytes);
            knob("fetch_max_bytes", &mut c.fetch_max_bytes);
            knob(
                "max_partition_fetch_bytes",
                &mut c.max_partition_fetch_bytes,
            );
            if let Some(k) = c.max_poll_records.as_mut() {
                knob("max_poll_records", k);
            }
        }
        drawn.extend(numbers);
        (scenario, drawn)
    }

    pub fn broker_names(&self) -> Vec<String> {
        (1..=*self.cluster.brokers.get_ref())
            .map(|i| format!("broker-{i}"))
            .collect()
    }

    pub fn controller_names(&self) -> Vec<String> {
        (1..=self.controllers)
            .map(|k| format!("controller-{k}"))
            .collect()
    }

    /// `broker.rack` of broker `index` (from 0): racks[index % len].
    pub fn rack_of(&self, index: usize) -> Option<String> {
        let racks = self.cluster.racks.as_ref()?.get_ref();
        (!racks.is_empty()).then(|| racks[index % racks.len()].clone())
    }

    pub fn producer_name(&self, index: usize) -> String {
        self.producers[index].node_name(index)
    }

    pub fn consumer_name(&self, index: usize) -> String {
        self.consumers[index].node_name(index)
    }

    pub fn expectation(&self, anomaly: Anomaly) -> Expectation {
        self.expect
            .get(&anomaly)
            .copied()
            .unwrap_or(Expectation::Forbidden)
    }

    /// Every node name a fault may name.
    pub fn node_names(&self) -> Vec<String> {
        let mut names = self.broker_names();
        names.extend(self.controller_names());
        names.extend((0..self.producers.len()).map(|i| self.producer_name(i)));
        names.extend((0..self.consumers.len()).map(|i| self.consumer_name(i)));
        names
    }
}

/// The `[expect]` key of broken replication and controller invariants.
pub const INVARIANT: &str = "invariant";
/// The `[expect]` key for a liveness failure (the final read not finishing in time).
pub const LIVENESS: &str = "liveness";

/// Default seeds per scenario when neither the file nor the command line says.
pub const SEEDS_DEFAULT: u64 = 10;
/// Default bound on the liveness phase.
pub const LIVENESS_DEFAULT: Duration = Duration::from_secs(30);

/// Read and validate one scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: path.to_path_buf(),
        line: 0,
        field: "(file)".into(),
        message: e.to_string(),
    })?;
    parse(path, &text)
}

/// Parse and validate scenario text; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let deserializer = toml::Deserializer::new(text);
    let raw: schema::ScenarioToml =
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            // Spanned<T> shows up in serde's path as a private field; users never wrote it.
            let path_text = e
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "");
            let inner = e.into_inner();
            ScenarioError {
                file: path.to_path_buf(),
                line: inner.span().map_or(1, |s| line_of(s.start)),
                field: if path_text == "." {
                    "(document)".into()
                } else {
                    path_text
                },
                message: inner.message().trim().to_string(),
            }
        })?;
    let err = |span: std::ops::Range<usize>, field: String, message: String| ScenarioError {
        file: path.to_path_buf(),
        line: if span == (0..0) {
            1
        } else {
            line_of(span.start)
        },
        field,
        message,
    };
    validate::validate(path, text, raw, &err)
}

/// Event kinds a scenario may require with `must_see`.
pub const MUST_SEE_KINDS: &[&str] = &[
    "leader",
    "active-controller",
    "truncate",
    "fault-start",
    "fault-end",
    "topic-created",
    "topic-deleted",
];

/// Whether `event` is what the `must_see` entry `entry` asks for: the kind, and when the
/// entry has `: text`, that text inside what the event says or whom it targets. An entry
/// may list alternatives separated by ` | ` (one mechanism, reached one way or another).
pub fn must_see_matches(entry: &str, event: &str, what: &str, target: &str) -> bool {
    entry
        .split(" | ")
        .any(|alternative| match alternative.split_once(':') {
            None => alternative.trim() == event,
            Some((kind, text)) => {
                let text = text.trim();
                kind.trim() == event && (what.contains(text) || target.contains(text))
            }
        })
}

/// FNV-1a, 64 bit: a stable hash for scenario files and traces (the project's one
/// implementation, with its streaming writer).
pub use faultline::mix::{fnv1a, Fnv1a};

#[cfg(test)]
mod tests;
