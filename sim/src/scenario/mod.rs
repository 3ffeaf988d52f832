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
    parse_duration, AcksSpec, ClusterSpec, ConsumerSpec, Dur, Expectation, FaultKind, FaultSpec,
    NemesisSpec, ProducerSpec, Setting, SignedDur, TopicSpec,
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
}

impl Scenario {
    /// The configuration swarm: every setting given as a list takes one of its values,
    /// drawn from the seed alone (in the file's order), so each seed runs its own point of
    /// the settings space. Returns the scenario with every list resolved and what was
    /// drawn ("cluster.config.KEY = VALUE", "topic.NAME.config.KEY = VALUE"); a scenario
    /// without lists comes back as it was, with nothing drawn.
    pub fn draw(&self, seed: u64) -> (Scenario, Vec<String>) {
        let mut rng = faultline::mix::SplitMix64::new(seed ^ 0x5357_4152_4d00_0001);
        let mut drawn = Vec::new();
        let mut scenario = self.clone();
        let mut pick = |what: String, setting: &mut toml::Spanned<Setting>| {
            if let Setting::Choice(values) = setting.get_ref() {
                let value = values[rng.below(values.len() as u64) as usize].clone();
                drawn.push(format!("{what} = {value}"));
                *setting = toml::Spanned::new(setting.span(), Setting::One(value));
            }
        };
        for (key, setting) in scenario.cluster.config.iter_mut() {
            pick(format!("cluster.config.{key}"), setting);
        }
        for topic in scenario.topics.iter_mut() {
            let name = topic.name.get_ref().clone();
            for (key, setting) in topic.config.iter_mut() {
                pick(format!("topic.{name}.config.{key}"), setting);
            }
        }
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
