//! Scenario files: a cluster, topics, workloads, faults on a timeline, a nemesis, the run's
//! length and what each anomaly is expected to do. TOML, parsed with serde; every error
//! names the file, the line and the field, and nothing runs until the whole file is valid.
//!
//! The format is documented for users in `scenarios/README.md`.

use crate::history::Anomaly;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

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

/// A length of time written as "250ms", "10s", "2m" or "1h".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number.parse().map_err(|_| {
        format!("expected a duration like \"500ms\", \"10s\" or \"2m\", got {text:?}")
    })?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1e3,
        "m" => n * 60e3,
        "h" => n * 3600e3,
        _ => return Err(format!("unknown unit in {text:?}: use ms, s, m or h")),
    };
    let d = Duration::from_micros((ms * 1e3).round() as u64);
    if d > DURATION_MAX {
        return Err(format!("{text:?} is longer than the 24h limit"));
    }
    Ok(d)
}

/// A signed length of time: "-5s", "250ms".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct SignedDur(pub i64 /* milliseconds */);

impl<'de> Deserialize<'de> for SignedDur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SignedDur, D::Error> {
        let text = String::deserialize(d)?;
        let (sign, rest) = match text.trim().strip_prefix('-') {
            Some(rest) => (-1, rest),
            None => (1, text.trim().strip_prefix('+').unwrap_or(text.trim())),
        };
        let d = parse_duration(rest).map_err(serde::de::Error::custom)?;
        Ok(SignedDur(sign * d.as_millis() as i64))
    }
}

/// Kafka's acks as written in scenarios: "0", "1" or "all".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AcksSpec {
    #[serde(rename = "0")]
    Zero,
    #[serde(rename = "1")]
    One,
    #[serde(rename = "all", alias = "-1")]
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expectation {
    /// Finding it fails the run.
    Forbidden,
    /// Reported, but the run passes.
    Allowed,
    /// The run fails unless it is found: proves the lab can see it.
    Expected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Kill a node by power loss (unsynced disk writes are lost); with `for`, restart it
    /// after.
    Kill,
    /// Crash a node's process (kill -9): the operating system survives, so unsynced writes
    /// in its page cache do too; with `for`, restart it after.
    Crash,
    /// Shut a broker down cleanly (SIGTERM: every log synced and checkpointed), then cut its
    /// power, so only what it synced itself survives; with `for`, restart it after.
    Stop,
    /// Stop a node's tasks without killing it; with `for`, resume after.
    Pause,
    /// Cut the network between `groups` (or only from the first to the second: `one_way`).
    Partition,
    /// Cut one node off from every other.
    Isolate,
    /// Cut the link `from` -> `to` (one direction).
    Clog,
    /// Add `latency` (+ up to `jitter`) to every message on the network.
    Latency,
    /// Close every TCP connection of a node at once.
    Reset,
    /// On kill, keep only part of the unsynced tail of each file (a torn write).
    DiskTornWrite,
    /// Flip one byte of synced data in a segment of the node's disk.
    DiskCorrupt,
    /// The node's disk refuses further writes (ENOSPC).
    DiskFull,
    /// Every fsync of the node's disk takes `latency`.
    DiskSlowFsync,
    /// Every message on the network is lost with probability `rate` (TCP retransmits it
    /// after a backoff, so streams slow down; new connections may be refused).
    Loss,
    /// The node's clock runs `offset` ahead (or behind, if negative); with `for`, it
    /// returns to where it was.
    ClockSkew,
    /// The node's clock steps by `offset` and stays there (a jump, forwards or backwards).
    ClockJump,
}

impl FaultKind {
    pub const ALL: [FaultKind; 16] = [
        FaultKind::Kill,
        FaultKind::Crash,
        FaultKind::Stop,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Isolate,
        FaultKind::Clog,
        FaultKind::Latency,
        FaultKind::Reset,
        FaultKind::DiskTornWrite,
        FaultKind::DiskCorrupt,
        FaultKind::DiskFull,
        FaultKind::DiskSlowFsync,
        FaultKind::Loss,
        FaultKind::ClockSkew,
        FaultKind::ClockJump,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Crash => "crash",
            FaultKind::Stop => "stop",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Isolate => "isolate",
            FaultKind::Clog => "clog",
            FaultKind::Latency => "latency",
            FaultKind::Reset => "reset",
            FaultKind::DiskTornWrite => "disk-torn-write",
            FaultKind::DiskCorrupt => "disk-corrupt",
            FaultKind::DiskFull => "disk-full",
            FaultKind::DiskSlowFsync => "disk-slow-fsync",
            FaultKind::Loss => "loss",
            FaultKind::ClockSkew => "clock-skew",
            FaultKind::ClockJump => "clock-jump",
        }
    }

    /// Faults that act on one node named by `node` (kill and crash: or on several, named by
    /// `nodes`).
    fn takes_node(self) -> bool {
        matches!(
            self,
            FaultKind::Kill
                | FaultKind::Crash
                | FaultKind::Stop
                | FaultKind::Pause
                | FaultKind::Isolate
                | FaultKind::Reset
                | FaultKind::DiskTornWrite
                | FaultKind::DiskCorrupt
                | FaultKind::DiskFull
                | FaultKind::DiskSlowFsync
                | FaultKind::ClockSkew
                | FaultKind::ClockJump
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Broker nodes, named broker-1 .. broker-N.
    #[serde(default = "one")]
    pub brokers: Spanned<usize>,
    /// Broker settings by their Kafka names, e.g. "log.flush.interval.messages" = "1".
    #[serde(default)]
    pub config: BTreeMap<String, Spanned<String>>,
    /// Controller nodes (a KRaft quorum), named controller-1 .. controller-N: 0, 1, 3 or 5.
    /// Default: 3 with several brokers, else 0 (a standalone broker).
    pub controllers: Option<Spanned<usize>>,
    /// Racks: broker i (from 0) is in racks[i % len] (`broker.rack`).
    pub racks: Option<Spanned<Vec<String>>>,
    /// Controller settings by their Kafka names. Kept for when controllers take settings;
    /// not passed to them yet.
    #[serde(default)]
    pub controller_config: BTreeMap<String, Spanned<String>>,
}

fn one() -> Spanned<usize> {
    Spanned::new(0..0, 1)
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            brokers: one(),
            config: BTreeMap::new(),
            controllers: None,
            racks: None,
            controller_config: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    pub name: Spanned<String>,
    #[serde(default = "one_i32")]
    pub partitions: Spanned<i32>,
    #[serde(default = "one_i16")]
    pub replication_factor: Spanned<i16>,
    /// Topic settings by their Kafka names.
    #[serde(default)]
    pub config: BTreeMap<String, Spanned<String>>,
}

fn one_i32() -> Spanned<i32> {
    Spanned::new(0..0, 1)
}
fn one_i16() -> Spanned<i16> {
    Spanned::new(0..0, 1)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerSpec {
    pub name: Option<Spanned<String>>,
    pub topic: Spanned<String>,
    /// Records per simulated second.
    #[serde(default = "default_rate")]
    pub rate: Spanned<u64>,
    #[serde(default = "default_acks")]
    pub acks: AcksSpec,
    /// Kafka's enable.idempotence; the default follows Kafka 3+: on with acks=all.
    pub idempotence: Option<bool>,
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// max.in.flight.requests.per.connection
    #[serde(default = "default_in_flight")]
    pub in_flight: Spanned<usize>,
    /// Records sent per round (one round every batch_records / rate seconds).
    #[serde(default = "default_batch_records")]
    pub batch_records: Spanned<usize>,
    /// Distinct keys (records are spread over partitions by Kafka's murmur2); 0: no keys,
    /// round robin.
    #[serde(default)]
    pub keys: u64,
    #[serde(default = "default_record_bytes")]
    pub record_bytes: Spanned<usize>,
    #[serde(default)]
    pub start: Option<Spanned<Dur>>,
    pub stop: Option<Spanned<Dur>>,
}

fn default_rate() -> Spanned<u64> {
    Spanned::new(0..0, 100)
}
fn default_acks() -> AcksSpec {
    AcksSpec::All
}
fn default_retries() -> u32 {
    10
}
fn default_in_flight() -> Spanned<usize> {
    Spanned::new(0..0, 5)
}
fn default_batch_records() -> Spanned<usize> {
    Spanned::new(0..0, 10)
}
fn default_record_bytes() -> Spanned<usize> {
    Spanned::new(0..0, 32)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSpec {
    pub name: Option<Spanned<String>>,
    pub topic: Spanned<String>,
    /// Partitions to assign (default: all).
    pub partitions: Option<Spanned<Vec<i32>>>,
    /// Simulated processing time per record: a slow consumer.
    #[serde(default)]
    pub processing: Option<Spanned<Dur>>,
    /// Every `pause_every`, stop polling for `pause_for` (a stalled consumer).
    pub pause_every: Option<Spanned<Dur>>,
    pub pause_for: Option<Spanned<Dur>>,
    #[serde(default)]
    pub start: Option<Spanned<Dur>>,
    pub stop: Option<Spanned<Dur>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub at: Spanned<Dur>,
    #[serde(rename = "for")]
    pub duration: Option<Spanned<Dur>>,
    pub kind: Spanned<FaultKind>,
    /// A node name (broker-1, controller-1, a producer or consumer name) or a role:
    /// "leader:TOPIC/P", "follower:TOPIC/P", "controller".
    pub node: Option<Spanned<String>>,
    /// Kill and crash: several nodes at the same instant (names, roles, or
    /// "replicas:TOPIC/P" for every replica, followers first and the leader last).
    pub nodes: Option<Spanned<Vec<String>>>,
    /// With `nodes`: the k-th node (from 0) restarts k * restart_stagger after the first.
    pub restart_stagger: Option<Spanned<Dur>>,
    pub groups: Option<Spanned<Vec<Vec<String>>>>,
    #[serde(default)]
    pub one_way: bool,
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
    pub latency: Option<Spanned<Dur>>,
    pub jitter: Option<Spanned<Dur>>,
    /// Loss probability, 0 < rate < 1.
    pub rate: Option<Spanned<f64>>,
    /// Clock offset: "5s", "-250ms".
    pub offset: Option<Spanned<SignedDur>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NemesisSpec {
    /// Fault kinds the nemesis may draw (default: kill, pause, isolate, reset, latency).
    pub kinds: Option<Spanned<Vec<FaultKind>>>,
    /// Mean time between faults.
    #[serde(default = "default_nemesis_interval")]
    pub interval: Spanned<Dur>,
    /// Longest a fault lasts (each lasts a random time up to this).
    #[serde(default = "default_nemesis_fault")]
    pub fault_max: Spanned<Dur>,
    /// Nodes the nemesis may target (default: every broker).
    pub targets: Option<Spanned<Vec<String>>>,
    /// Swarm mode: the seed also chooses which of `kinds` are on.
    #[serde(default)]
    pub swarm: bool,
}

fn default_nemesis_interval() -> Spanned<Dur> {
    Spanned::new(0..0, Dur(Duration::from_secs(5)))
}
fn default_nemesis_fault() -> Spanned<Dur> {
    Spanned::new(0..0, Dur(Duration::from_secs(3)))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioToml {
    name: Option<String>,
    description: Option<String>,
    duration: Spanned<Dur>,
    liveness: Option<Spanned<Dur>>,
    seeds: Option<Spanned<u64>>,
    #[serde(default)]
    cluster: ClusterSpec,
    #[serde(default, rename = "topic")]
    topics: Vec<TopicSpec>,
    #[serde(default, rename = "producer")]
    producers: Vec<ProducerSpec>,
    #[serde(default, rename = "consumer")]
    consumers: Vec<ConsumerSpec>,
    #[serde(default, rename = "fault")]
    faults: Vec<FaultSpec>,
    nemesis: Option<NemesisSpec>,
    #[serde(default)]
    expect: BTreeMap<String, Spanned<Expectation>>,
    #[serde(default)]
    must_see: Vec<Spanned<String>>,
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
    pub expect: BTreeMap<Anomaly, Expectation>,
    /// `expect.invariant`: what a broken replication or controller invariant means here
    /// (forbidden by default).
    pub invariant_expectation: Expectation,
    /// Timeline events the run must record (`kind` or `kind: text`): proof that the fault
    /// sequence reached the mechanism the scenario is about.
    pub must_see: Vec<String>,
}

impl Scenario {
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
        self.producers[index].name.as_ref().map_or_else(
            || format!("producer-{}", index + 1),
            |n| n.get_ref().clone(),
        )
    }

    pub fn consumer_name(&self, index: usize) -> String {
        self.consumers[index].name.as_ref().map_or_else(
            || format!("consumer-{}", index + 1),
            |n| n.get_ref().clone(),
        )
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
    let raw: ScenarioToml = serde_path_to_error::deserialize(deserializer).map_err(|e| {
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
    validate(path, text, raw, &err)
}

type Err<'a> = &'a dyn Fn(std::ops::Range<usize>, String, String) -> ScenarioError;

fn validate(
    path: &Path,
    text: &str,
    raw: ScenarioToml,
    err: Err,
) -> Result<Scenario, ScenarioError> {
    let duration = raw.duration.get_ref().0;
    if duration.is_zero() {
        return Err(err(
            raw.duration.span(),
            "duration".into(),
            "must be longer than 0s".into(),
        ));
    }
    let brokers = *raw.cluster.brokers.get_ref();
    if !(1..=BROKERS_MAX).contains(&brokers) {
        return Err(err(
            raw.cluster.brokers.span(),
            "cluster.brokers".into(),
            format!("must be 1..={BROKERS_MAX}"),
        ));
    }
    let controllers = match &raw.cluster.controllers {
        Some(c) => {
            let n = *c.get_ref();
            if !CONTROLLER_COUNTS.contains(&n) {
                return Err(err(
                    c.span(),
                    "cluster.controllers".into(),
                    "must be 0, 1, 3 or 5 (a quorum of an odd size, or none)".into(),
                ));
            }
            if n == 0 && brokers > 1 {
                return Err(err(
                    c.span(),
                    "cluster.controllers".into(),
                    "several brokers need a controller quorum (1, 3 or 5)".into(),
                ));
            }
            n
        }
        None if brokers > 1 => CONTROLLERS_DEFAULT_CLUSTER,
        None => 0,
    };
    if let Some(racks) = &raw.cluster.racks {
        if racks.get_ref().is_empty() || racks.get_ref().iter().any(|r| r.trim().is_empty()) {
            return Err(err(
                racks.span(),
                "cluster.racks".into(),
                "lists at least one rack, none of them empty".into(),
            ));
        }
    }
    for (key, value) in &raw.cluster.controller_config {
        if controllers == 0 {
            return Err(err(
                value.span(),
                format!("cluster.controller_config.{key}"),
                "there are no controllers (cluster.controllers = 0)".into(),
            ));
        }
        let mut config = faultline::controller::ControllerNodeConfig::new(
            1,
            "127.0.0.1:9093".parse().expect("literal address"),
            Vec::new(),
            "/metadata".into(),
        );
        config
            .apply_one(key, value.get_ref())
            .map_err(|m| err(value.span(), format!("cluster.controller_config.{key}"), m))?;
    }
    // Broker settings must be ones the broker knows.
    for (key, value) in &raw.cluster.config {
        let mut config = faultline::config::BrokerConfig::default();
        config
            .apply_one(key, value.get_ref())
            .map_err(|m| err(value.span(), format!("cluster.config.{key}"), m))?;
    }
    let mut topic_partitions = BTreeMap::new();
    for (i, t) in raw.topics.iter().enumerate() {
        let field = |f: &str| format!("topic[{i}].{f}");
        let name = t.name.get_ref();
        faultline::state::validate_topic_name(name)
            .map_err(|r| err(t.name.span(), field("name"), r.message))?;
        if topic_partitions
            .insert(name.clone(), *t.partitions.get_ref())
            .is_some()
        {
            return Err(err(
                t.name.span(),
                field("name"),
                format!("topic {name:?} is defined twice"),
            ));
        }
        if !(1..=1000).contains(t.partitions.get_ref()) {
            return Err(err(
                t.partitions.span(),
                field("partitions"),
                "must be 1..=1000".into(),
            ));
        }
        let rf = *t.replication_factor.get_ref();
        if rf < 1 || rf as usize > brokers {
            return Err(err(
                t.replication_factor.span(),
                field("replication_factor"),
                format!("must be 1..={brokers} (the number of brokers)"),
            ));
        }
        let overrides: BTreeMap<String, String> = t
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.get_ref().clone()))
            .collect();
        if let Err(m) =
            faultline::topic_config::TopicConfig::new(&Default::default(), 1, &overrides)
        {
            let key = m.split(':').next().unwrap_or("").to_string();
            let span = t.config.get(&key).map_or(t.name.span(), |v| v.span());
            return Err(err(span, format!("topic[{i}].config.{key}"), m));
        }
    }
    if raw.producers.len() + raw.consumers.len() > CLIENTS_MAX {
        return Err(err(
            0..0,
            "producer".into(),
            format!("at most {CLIENTS_MAX} producers and consumers"),
        ));
    }
    let check_topic = |t: &Spanned<String>, field: String| -> Result<i32, ScenarioError> {
        topic_partitions.get(t.get_ref()).copied().ok_or_else(|| {
            err(
                t.span(),
                field,
                format!("no [[topic]] is named {:?}", t.get_ref()),
            )
        })
    };
    let check_window = |start: &Option<Spanned<Dur>>,
                        stop: &Option<Spanned<Dur>>,
                        what: &str|
     -> Result<(), ScenarioError> {
        for (w, name) in [(start, "start"), (stop, "stop")] {
            if let Some(w) = w {
                if w.get_ref().0 > duration {
                    return Err(err(
                        w.span(),
                        format!("{what}.{name}"),
                        "is after the end of the run (duration)".into(),
                    ));
                }
            }
        }
        if let (Some(a), Some(b)) = (start, stop) {
            if b.get_ref() <= a.get_ref() {
                return Err(err(
                    b.span(),
                    format!("{what}.stop"),
                    "must be after start".into(),
                ));
            }
        }
        Ok(())
    };
    let mut names = BTreeMap::new();
    for n in (1..=brokers).map(|i| format!("broker-{i}")) {
        names.insert(n, 0..0);
    }
    for n in (1..=controllers).map(|k| format!("controller-{k}")) {
        names.insert(n, 0..0);
    }
    let topic_rf: BTreeMap<String, i16> = raw
        .topics
        .iter()
        .map(|t| (t.name.get_ref().clone(), *t.replication_factor.get_ref()))
        .collect();
    for (i, p) in raw.producers.iter().enumerate() {
        let what = format!("producer[{i}]");
        check_topic(&p.topic, format!("{what}.topic"))?;
        if !(1..=RATE_MAX).contains(p.rate.get_ref()) {
            return Err(err(
                p.rate.span(),
                format!("{what}.rate"),
                format!("must be 1..={RATE_MAX} records per second"),
            ));
        }
        if !(1..=10_000).contains(p.batch_records.get_ref()) {
            return Err(err(
                p.batch_records.span(),
                format!("{what}.batch_records"),
                "must be 1..=10000".into(),
            ));
        }
        if !(1..=100).contains(p.in_flight.get_ref()) {
            return Err(err(
                p.in_flight.span(),
                format!("{what}.in_flight"),
                "must be 1..=100".into(),
            ));
        }
        if !(8..=1_048_576).contains(p.record_bytes.get_ref()) {
            return Err(err(
                p.record_bytes.span(),
                format!("{what}.record_bytes"),
                "must be 8..=1048576".into(),
            ));
        }
        if p.idempotence == Some(true) && p.acks != AcksSpec::All {
            return Err(err(
                p.topic.span(),
                format!("{what}.idempotence"),
                "idempotence requires acks = \"all\", as in Kafka".into(),
            ));
        }
        check_window(&p.start, &p.stop, &what)?;
        let name = p
            .name
            .as_ref()
            .map_or_else(|| format!("producer-{}", i + 1), |n| n.get_ref().clone());
        let span = p.name.as_ref().map_or(p.topic.span(), |n| n.span());
        if names.insert(name.clone(), span.clone()).is_some() {
            return Err(err(
                span,
                format!("{what}.name"),
                format!("the name {name:?} is taken"),
            ));
        }
    }
    for (i, c) in raw.consumers.iter().enumerate() {
        let what = format!("consumer[{i}]");
        let partitions = check_topic(&c.topic, format!("{what}.topic"))?;
        if let Some(ps) = &c.partitions {
            if let Some(bad) = ps.get_ref().iter().find(|p| !(0..partitions).contains(*p)) {
                return Err(err(
                    ps.span(),
                    format!("{what}.partitions"),
                    format!("topic has no partition {bad}"),
                ));
            }
        }
        if c.pause_every.is_some() != c.pause_for.is_some() {
            return Err(err(
                c.topic.span(),
                format!("{what}.pause_every"),
                "pause_every and pause_for go together".into(),
            ));
        }
        check_window(&c.start, &c.stop, &what)?;
        let name = c
            .name
            .as_ref()
            .map_or_else(|| format!("consumer-{}", i + 1), |n| n.get_ref().clone());
        let span = c.name.as_ref().map_or(c.topic.span(), |n| n.span());
        if names.insert(name.clone(), span.clone()).is_some() {
            return Err(err(
                span,
                format!("{what}.name"),
                format!("the name {name:?} is taken"),
            ));
        }
    }
    // `several`: the field may name several nodes at once (replicas:TOPIC/P).
    let check_node_in = |n: &Spanned<String>,
                         field: String,
                         several: bool|
     -> Result<(), ScenarioError> {
        let name = n.get_ref();
        if name == "controller" {
            if controllers == 0 {
                return Err(err(
                    n.span(),
                    field,
                    "the role \"controller\" needs cluster.controllers > 0".into(),
                ));
            }
            return Ok(());
        }
        let role = ["leader:", "follower:", "followers:", "replicas:"]
            .into_iter()
            .find_map(|prefix| name.strip_prefix(prefix).map(|rest| (prefix, rest)));
        if let Some((prefix, role)) = role {
            if matches!(prefix, "replicas:" | "followers:") && !several {
                return Err(err(
                    n.span(),
                    field,
                    format!("{prefix}TOPIC/P names several nodes: use it in `nodes` or `groups`"),
                ));
            }
            let (topic, partition) = role.rsplit_once('/').ok_or_else(|| {
                err(
                    n.span(),
                    field.clone(),
                    format!("a role is written {prefix}TOPIC/PARTITION, got {name:?}"),
                )
            })?;
            if matches!(prefix, "follower:" | "followers:")
                && topic_rf.get(topic).is_some_and(|rf| *rf < 2)
            {
                return Err(err(
                    n.span(),
                    field,
                    format!("topic {topic} has replication factor 1: it has no follower"),
                ));
            }
            let count = topic_partitions.get(topic).ok_or_else(|| {
                err(
                    n.span(),
                    field.clone(),
                    format!("no [[topic]] is named {topic:?}"),
                )
            })?;
            let p: i32 = partition.parse().map_err(|_| {
                err(
                    n.span(),
                    field.clone(),
                    format!("bad partition in {name:?}"),
                )
            })?;
            if !(0..*count).contains(&p) {
                return Err(err(
                    n.span(),
                    field,
                    format!("topic {topic} has no partition {p}"),
                ));
            }
            return Ok(());
        }
        if !names.contains_key(name) {
            let known: Vec<&String> = names.keys().collect();
            return Err(err(
                n.span(),
                field,
                format!("no node is named {name:?} (known: {known:?})"),
            ));
        }
        Ok(())
    };
    let check_node = |n: &Spanned<String>, field: String| -> Result<(), ScenarioError> {
        check_node_in(n, field, false)
    };
    // Nodes that can be killed or crashed: brokers, controllers and roles naming them.
    let killable = |name: &str| {
        name.starts_with("broker-")
            || name.starts_with("controller")
            || ["leader:", "follower:", "followers:", "replicas:"]
                .iter()
                .any(|p| name.starts_with(p))
    };
    for (i, f) in raw.faults.iter().enumerate() {
        let what = format!("fault[{i}]");
        let kind = *f.kind.get_ref();
        let at = f.at.get_ref().0;
        if at > duration {
            return Err(err(
                f.at.span(),
                format!("{what}.at"),
                "is after the end of the run (duration)".into(),
            ));
        }
        let field_present = |name: &str,
                             present: bool,
                             wanted: bool,
                             span: std::ops::Range<usize>|
         -> Result<(), ScenarioError> {
            if present && !wanted {
                return Err(err(
                    span,
                    format!("{what}.{name}"),
                    format!("does not apply to a {} fault", kind.name()),
                ));
            }
            if !present && wanted {
                return Err(err(
                    f.kind.span(),
                    format!("{what}.{name}"),
                    format!("a {} fault needs {name}", kind.name()),
                ));
            }
            Ok(())
        };
        let several = matches!(kind, FaultKind::Kill | FaultKind::Crash);
        if let (Some(_), Some(nodes)) = (&f.node, &f.nodes) {
            return Err(err(
                nodes.span(),
                format!("{what}.nodes"),
                "name the fault's nodes with node or with nodes, not both".into(),
            ));
        }
        if several && f.node.is_none() && f.nodes.is_none() {
            return Err(err(
                f.kind.span(),
                format!("{what}.node"),
                format!("a {} fault needs node (or nodes)", kind.name()),
            ));
        }
        field_present(
            "nodes",
            f.nodes.is_some(),
            several && f.node.is_none(),
            f.nodes.as_ref().map_or(0..0, |n| n.span()),
        )?;
        field_present(
            "node",
            f.node.is_some(),
            kind.takes_node() && f.nodes.is_none(),
            f.node.as_ref().map_or(0..0, |n| n.span()),
        )?;
        if let Some(nodes) = &f.nodes {
            if nodes.get_ref().is_empty() || nodes.get_ref().len() > FAULT_NODES_MAX {
                return Err(err(
                    nodes.span(),
                    format!("{what}.nodes"),
                    format!("names 1..={FAULT_NODES_MAX} nodes"),
                ));
            }
            for name in nodes.get_ref() {
                check_node_in(
                    &Spanned::new(nodes.span(), name.clone()),
                    format!("{what}.nodes"),
                    true,
                )?;
                if !killable(name) {
                    return Err(err(
                        nodes.span(),
                        format!("{what}.nodes"),
                        format!("only brokers and controllers can be killed, not {name:?}"),
                    ));
                }
            }
        }
        if let Some(stagger) = &f.restart_stagger {
            if f.nodes.is_none() {
                return Err(err(
                    stagger.span(),
                    format!("{what}.restart_stagger"),
                    "staggers the restarts of several nodes: name them with nodes".into(),
                ));
            }
        }
        field_present(
            "groups",
            f.groups.is_some(),
            kind == FaultKind::Partition,
            f.groups.as_ref().map_or(0..0, |g| g.span()),
        )?;
        // A latency fault acts on one link when it names `from` and `to`, else on the
        // whole network; a clog always names its link.
        if kind == FaultKind::Latency && f.from.is_some() != f.to.is_some() {
            let span = f.from.as_ref().or(f.to.as_ref()).map_or(0..0, |n| n.span());
            return Err(err(
                span,
                format!("{what}.from"),
                "a latency fault on one link names both from and to".into(),
            ));
        }
        let link = kind == FaultKind::Clog || (kind == FaultKind::Latency && f.from.is_some());
        field_present(
            "from",
            f.from.is_some(),
            link,
            f.from.as_ref().map_or(0..0, |g| g.span()),
        )?;
        field_present(
            "to",
            f.to.is_some(),
            link,
            f.to.as_ref().map_or(0..0, |g| g.span()),
        )?;
        field_present(
            "latency",
            f.latency.is_some(),
            matches!(kind, FaultKind::Latency | FaultKind::DiskSlowFsync),
            f.latency.as_ref().map_or(0..0, |g| g.span()),
        )?;
        field_present(
            "rate",
            f.rate.is_some(),
            kind == FaultKind::Loss,
            f.rate.as_ref().map_or(0..0, |g| g.span()),
        )?;
        let clock = matches!(kind, FaultKind::ClockSkew | FaultKind::ClockJump);
        field_present(
            "offset",
            f.offset.is_some(),
            clock,
            f.offset.as_ref().map_or(0..0, |g| g.span()),
        )?;
        if let Some(rate) = &f.rate {
            if !(*rate.get_ref() > 0.0 && *rate.get_ref() < 1.0) {
                return Err(err(
                    rate.span(),
                    format!("{what}.rate"),
                    "must be between 0 and 1 (exclusive)".into(),
                ));
            }
        }
        if clock {
            if let Some(n) = &f.node {
                if raw.consumers.iter().enumerate().any(|(ci, c)| {
                    c.name
                        .as_ref()
                        .map_or_else(|| format!("consumer-{}", ci + 1), |x| x.get_ref().clone())
                        == *n.get_ref()
                }) {
                    return Err(err(
                        n.span(),
                        format!("{what}.node"),
                        "a consumer has no clock that matters: skew a broker or a producer".into(),
                    ));
                }
            }
        }
        if let Some(jitter) = f.jitter.as_ref().filter(|_| kind != FaultKind::Latency) {
            return Err(err(
                jitter.span(),
                format!("{what}.jitter"),
                format!("does not apply to a {} fault", kind.name()),
            ));
        }
        if f.one_way && kind != FaultKind::Partition {
            return Err(err(
                f.kind.span(),
                format!("{what}.one_way"),
                "only a partition fault can be one-way".into(),
            ));
        }
        for (n, name) in [(&f.node, "node"), (&f.from, "from"), (&f.to, "to")] {
            if let Some(n) = n {
                check_node(n, format!("{what}.{name}"))?;
            }
        }
        if let Some(groups) = &f.groups {
            if groups.get_ref().len() != 2 || groups.get_ref().iter().any(|g| g.is_empty()) {
                return Err(err(
                    groups.span(),
                    format!("{what}.groups"),
                    "a partition has exactly two non-empty groups".into(),
                ));
            }
            for (g, group) in groups.get_ref().iter().enumerate() {
                for name in group {
                    if name == "others" {
                        if groups.get_ref()[1 - g].iter().any(|n| n == "others") {
                            return Err(err(
                                groups.span(),
                                format!("{what}.groups"),
                                "\"others\" means every node not in the other group: only one group can use it".into(),
                            ));
                        }
                        continue;
                    }
                    check_node_in(
                        &Spanned::new(groups.span(), name.clone()),
                        format!("{what}.groups"),
                        true,
                    )?;
                }
            }
        }
        if kind == FaultKind::Stop {
            if let Some(n) = &f.node {
                let broker = |name: &str| {
                    name.starts_with("broker-")
                        || ["leader:", "follower:"].iter().any(|p| name.starts_with(p))
                };
                if !broker(n.get_ref()) {
                    return Err(err(
                        n.span(),
                        format!("{what}.node"),
                        "only brokers can be stopped cleanly (a broker name, leader: or follower:)"
                            .into(),
                    ));
                }
            }
        }
        if matches!(
            kind,
            FaultKind::Kill | FaultKind::Crash | FaultKind::DiskTornWrite
        ) {
            if let Some(n) = &f.node {
                if !killable(n.get_ref()) {
                    return Err(err(
                        n.span(),
                        format!("{what}.node"),
                        "only brokers and controllers can be killed".into(),
                    ));
                }
            }
        }
        if kind == FaultKind::Reset {
            if let Some(n) = f
                .node
                .as_ref()
                .filter(|n| n.get_ref().starts_with("controller"))
            {
                return Err(err(
                    n.span(),
                    format!("{what}.node"),
                    "the lab cannot reset a controller's connections without closing its listener: isolate it instead".into(),
                ));
            }
        }
    }
    if let Some(n) = &raw.nemesis {
        if let Some(kinds) = &n.kinds {
            if kinds.get_ref().is_empty() {
                return Err(err(
                    kinds.span(),
                    "nemesis.kinds".into(),
                    "lists no fault kind".into(),
                ));
            }
            for k in kinds.get_ref() {
                if matches!(k, FaultKind::Partition | FaultKind::Clog)
                    && brokers + raw.producers.len() + raw.consumers.len() < 2
                {
                    return Err(err(
                        kinds.span(),
                        "nemesis.kinds".into(),
                        format!("{} needs two nodes", k.name()),
                    ));
                }
            }
        }
        if let Some(t) = &n.targets {
            for name in t.get_ref() {
                check_node(
                    &Spanned::new(t.span(), name.clone()),
                    "nemesis.targets".into(),
                )?;
            }
        }
        if n.interval.get_ref().0.is_zero() {
            return Err(err(
                n.interval.span(),
                "nemesis.interval".into(),
                "must be longer than 0s".into(),
            ));
        }
    }
    let mut expect = BTreeMap::new();
    let mut invariant_expectation = Expectation::Forbidden;
    for (key, value) in &raw.expect {
        if key == INVARIANT {
            invariant_expectation = *value.get_ref();
            continue;
        }
        let anomaly = Anomaly::ALL
            .into_iter()
            .find(|a| a.name() == key)
            .ok_or_else(|| {
                let mut known: Vec<&str> = Anomaly::ALL.iter().map(|a| a.name()).collect();
                known.push(INVARIANT);
                err(
                    value.span(),
                    format!("expect.{key}"),
                    format!("unknown anomaly (known: {})", known.join(", ")),
                )
            })?;
        expect.insert(anomaly, *value.get_ref());
    }
    if let Some(s) = &raw.seeds {
        if *s.get_ref() == 0 {
            return Err(err(s.span(), "seeds".into(), "must be at least 1".into()));
        }
    }
    for (i, entry) in raw.must_see.iter().enumerate() {
        for alternative in entry.get_ref().split(" | ") {
            let kind = alternative.split(':').next().unwrap_or("").trim();
            if !MUST_SEE_KINDS.contains(&kind) {
                return Err(err(
                    entry.span(),
                    format!("must_see[{i}]"),
                    format!(
                        "unknown event kind {kind:?} (known: {})",
                        MUST_SEE_KINDS.join(", ")
                    ),
                ));
            }
        }
    }
    let name = raw.name.unwrap_or_else(|| {
        path.file_stem()
            .map_or("scenario".into(), |s| s.to_string_lossy().into_owned())
    });
    Ok(Scenario {
        path: path.to_path_buf(),
        name,
        description: raw.description.unwrap_or_default(),
        hash: fnv1a(text.as_bytes()),
        duration,
        liveness: raw.liveness.map_or(LIVENESS_DEFAULT, |l| l.get_ref().0),
        seeds: raw.seeds.map_or(SEEDS_DEFAULT, |s| *s.get_ref()),
        cluster: raw.cluster,
        controllers,
        topics: raw.topics,
        producers: raw.producers,
        consumers: raw.consumers,
        faults: raw.faults,
        nemesis: raw.nemesis,
        expect,
        invariant_expectation,
        must_see: raw.must_see.into_iter().map(|e| e.into_inner()).collect(),
    })
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
mod tests {
    use super::*;

    const GOOD: &str = r#"
duration = "30s"

[cluster]
brokers = 1
config = { "log.flush.interval.messages" = "1" }

[[topic]]
name = "orders"
partitions = 3

[[producer]]
name = "p1"
topic = "orders"
rate = 500

[[consumer]]
name = "c1"
topic = "orders"

[[fault]]
at = "10s"
for = "2s"
kind = "kill"
node = "broker-1"

[expect]
duplicate = "allowed"
"#;

    /// Data-driven: the text with `from` replaced by `to` must fail with this message.
    fn check_error(from: &str, to: &str, want: &str) {
        let text = GOOD.replacen(from, to, 1);
        assert_ne!(text, GOOD, "{from:?} not found in the base scenario");
        let e = parse(Path::new("s.toml"), &text)
            .expect_err(want)
            .to_string();
        assert_eq!(e, want);
    }

    #[test]
    fn a_valid_file_parses() {
        let s = parse(Path::new("scenarios/smoke/kill.toml"), GOOD).unwrap();
        assert_eq!(s.name, "kill");
        assert_eq!(s.duration, Duration::from_secs(30));
        assert_eq!(s.producers.len(), 1);
        assert_eq!(s.expectation(Anomaly::Duplicate), Expectation::Allowed);
        assert_eq!(s.expectation(Anomaly::LostWrite), Expectation::Forbidden);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        check_error("kind = \"kill\"", "kind = \"kil\"", "s.toml:24: fault[0].kind: unknown variant `kil`, expected one of `kill`, `crash`, `stop`, `pause`, `partition`, `isolate`, `clog`, `latency`, `reset`, `disk-torn-write`, `disk-corrupt`, `disk-full`, `disk-slow-fsync`, `loss`, `clock-skew`, `clock-jump`");
        check_error(
            "rate = 500",
            "rate = 0",
            "s.toml:15: producer[0].rate: must be 1..=1000000 records per second",
        );
        check_error("rate = 500", "rat = 500", "s.toml:15: producer[0].rat: unknown field `rat`, expected one of `name`, `topic`, `rate`, `acks`, `idempotence`, `retries`, `in_flight`, `batch_records`, `keys`, `record_bytes`, `start`, `stop`");
        check_error("node = \"broker-1\"", "node = \"broker-7\"", "s.toml:25: fault[0].node: no node is named \"broker-7\" (known: [\"broker-1\", \"c1\", \"p1\"])");
        check_error(
            "topic = \"orders\"\nrate",
            "topic = \"order\"\nrate",
            "s.toml:14: producer[0].topic: no [[topic]] is named \"order\"",
        );
        check_error(
            "at = \"10s\"",
            "at = \"10 parsecs\"",
            "s.toml:22: fault[0].at: unknown unit in \"10 parsecs\": use ms, s, m or h",
        );
        check_error(
            "at = \"10s\"",
            "at = \"40s\"",
            "s.toml:22: fault[0].at: is after the end of the run (duration)",
        );
        check_error("duplicate = \"allowed\"", "duplicates = \"allowed\"", "s.toml:28: expect.duplicates: unknown anomaly (known: lost-write, unseen, duplicate, inconsistent-offsets, nonmonotonic-send, nonmonotonic-poll, poll-skip, aborted-read, invariant)");
        check_error("\"log.flush.interval.messages\" = \"1\"", "\"log.flush.interval.messages\" = \"x\"", "s.toml:6: cluster.config.log.flush.interval.messages: expected a whole number, got \"x\"");
        check_error(
            "partitions = 3",
            "partitions = 3\nreplication_factor = 3",
            "s.toml:11: topic[0].replication_factor: must be 1..=1 (the number of brokers)",
        );
        check_error(
            "node = \"broker-1\"",
            "node = \"leader:orders/9\"",
            "s.toml:25: fault[0].node: topic orders has no partition 9",
        );
        check_error(
            "duration = \"30s\"",
            "duration = 30",
            "s.toml:2: duration: invalid type: integer `30`, expected a string",
        );
    }

    const CLUSTER: &str = r#"
duration = "30s"

[cluster]
brokers = 3
racks = ["a", "b"]
controller_config = { "controller.quorum.election.timeout.ms" = "1000" }

[[topic]]
name = "t"
replication_factor = 3

[[producer]]
name = "p1"
topic = "t"

[[fault]]
at = "5s"
for = "3s"
kind = "crash"
nodes = ["replicas:t/0"]
restart_stagger = "2s"

[[fault]]
at = "10s"
for = "3s"
kind = "isolate"
node = "controller"

[[fault]]
at = "12s"
for = "3s"
kind = "partition"
groups = [["leader:t/0", "p1"], ["others"]]

[expect]
invariant = "allowed"
"#;

    fn check_cluster_error(from: &str, to: &str, want: &str) {
        let text = CLUSTER.replacen(from, to, 1);
        assert_ne!(text, CLUSTER, "{from:?} not found in the cluster scenario");
        let e = parse(Path::new("c.toml"), &text)
            .expect_err(want)
            .to_string();
        assert_eq!(e, want);
    }

    #[test]
    fn a_cluster_scenario_parses_with_its_defaults() {
        let s = parse(Path::new("c.toml"), CLUSTER).unwrap();
        assert_eq!(
            s.controllers, 3,
            "3 controllers by default with several brokers"
        );
        assert_eq!(
            s.controller_names(),
            ["controller-1", "controller-2", "controller-3"]
        );
        assert!(s.node_names().contains(&"controller-2".to_string()));
        assert_eq!(s.rack_of(0).as_deref(), Some("a"));
        assert_eq!(s.rack_of(1).as_deref(), Some("b"));
        assert_eq!(s.rack_of(2).as_deref(), Some("a"));
        assert_eq!(*s.faults[0].kind.get_ref(), FaultKind::Crash);
        assert_eq!(
            s.faults[0].restart_stagger.as_ref().unwrap().get_ref().0,
            Duration::from_secs(2)
        );
        assert_eq!(s.invariant_expectation, Expectation::Allowed);
        assert_eq!(s.cluster.controller_config.len(), 1);
        // One broker: no controllers unless asked.
        let single = parse(Path::new("s.toml"), GOOD).unwrap();
        assert_eq!(single.controllers, 0);
        assert_eq!(single.invariant_expectation, Expectation::Forbidden);
    }

    #[test]
    fn cluster_errors_name_file_line_and_field() {
        check_cluster_error(
            "brokers = 3",
            "brokers = 3\ncontrollers = 2",
            "c.toml:6: cluster.controllers: must be 0, 1, 3 or 5 (a quorum of an odd size, or none)",
        );
        check_cluster_error(
            "brokers = 3",
            "brokers = 3\ncontrollers = 0",
            "c.toml:6: cluster.controllers: several brokers need a controller quorum (1, 3 or 5)",
        );
        check_cluster_error(
            "racks = [\"a\", \"b\"]",
            "racks = []",
            "c.toml:6: cluster.racks: lists at least one rack, none of them empty",
        );
        check_cluster_error(
            "nodes = [\"replicas:t/0\"]",
            "nodes = [\"replicas:t/0\", \"p1\"]",
            "c.toml:21: fault[0].nodes: only brokers and controllers can be killed, not \"p1\"",
        );
        check_cluster_error(
            "nodes = [\"replicas:t/0\"]",
            "nodes = [\"replicas:u/0\"]",
            "c.toml:21: fault[0].nodes: no [[topic]] is named \"u\"",
        );
        check_cluster_error(
            "nodes = [\"replicas:t/0\"]\nrestart_stagger = \"2s\"",
            "node = \"replicas:t/0\"",
            "c.toml:21: fault[0].node: replicas:TOPIC/P names several nodes: use it in `nodes` or `groups`",
        );
        check_cluster_error(
            "nodes = [\"replicas:t/0\"]\nrestart_stagger = \"2s\"",
            "node = \"controller-4\"",
            "c.toml:21: fault[0].node: no node is named \"controller-4\" (known: [\"broker-1\", \"broker-2\", \"broker-3\", \"controller-1\", \"controller-2\", \"controller-3\", \"p1\"])",
        );
        check_cluster_error(
            "nodes = [\"replicas:t/0\"]\nrestart_stagger = \"2s\"",
            "node = \"broker-1\"\nrestart_stagger = \"2s\"",
            "c.toml:22: fault[0].restart_stagger: staggers the restarts of several nodes: name them with nodes",
        );
        check_cluster_error(
            "nodes = [\"replicas:t/0\"]\nrestart_stagger = \"2s\"",
            "restart_stagger = \"2s\"",
            "c.toml:20: fault[0].node: a crash fault needs node (or nodes)",
        );
        check_cluster_error(
            "kind = \"isolate\"\nnode = \"controller\"",
            "kind = \"stop\"\nnode = \"controller-1\"",
            "c.toml:28: fault[1].node: only brokers can be stopped cleanly (a broker name, leader: or follower:)",
        );
        check_cluster_error(
            "kind = \"isolate\"\nnode = \"controller\"",
            "kind = \"pause\"\nnodes = [\"controller\"]",
            "c.toml:28: fault[1].nodes: does not apply to a pause fault",
        );
        check_cluster_error(
            "groups = [[\"leader:t/0\", \"p1\"], [\"others\"]]",
            "groups = [[\"others\"], [\"others\"]]",
            "c.toml:34: fault[2].groups: \"others\" means every node not in the other group: only one group can use it",
        );
    }

    #[test]
    fn roles_need_what_they_name() {
        check_error(
            "node = \"broker-1\"",
            "node = \"controller\"",
            "s.toml:25: fault[0].node: the role \"controller\" needs cluster.controllers > 0",
        );
        check_error(
            "node = \"broker-1\"",
            "node = \"follower:orders/0\"",
            "s.toml:25: fault[0].node: topic orders has replication factor 1: it has no follower",
        );
        check_error(
            "node = \"broker-1\"",
            "node = \"p1\"",
            "s.toml:25: fault[0].node: only brokers and controllers can be killed",
        );
    }

    #[test]
    fn every_example_in_the_scenarios_folder_is_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut seen = 0;
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "toml") {
                    load(&path).unwrap_or_else(|e| panic!("{e}"));
                    seen += 1;
                }
            }
        }
        assert!(seen > 0, "no scenario files found");
    }

    #[test]
    fn must_see_names_event_kinds_and_optional_text() {
        let with = |entry: &str| format!("must_see = [{entry}]\n{GOOD}");
        let text = with(r#""truncate", "leader: t/0 epoch 2""#);
        let s = parse(Path::new("s.toml"), &text).unwrap();
        assert_eq!(s.must_see, vec!["truncate", "leader: t/0 epoch 2"]);
        assert!(must_see_matches(
            "truncate",
            "truncate",
            "t/0 to offset 5",
            "broker-1"
        ));
        assert!(!must_see_matches(
            "truncate",
            "leader",
            "t/0 epoch 2",
            "broker-1"
        ));
        assert!(must_see_matches(
            "leader: epoch 2",
            "leader",
            "t/0 epoch 2",
            "broker-1"
        ));
        assert!(must_see_matches(
            "leader: broker-3",
            "leader",
            "t/0 epoch 2",
            "broker-3"
        ));
        assert!(!must_see_matches(
            "leader: epoch 3",
            "leader",
            "t/0 epoch 2",
            "broker-3"
        ));
        let either = "active-controller: term 2 | leader: epoch 2";
        assert!(must_see_matches(
            either,
            "leader",
            "t/0 epoch 2",
            "broker-3"
        ));
        assert!(must_see_matches(
            either,
            "active-controller",
            "term 2",
            "controller-1"
        ));
        assert!(!must_see_matches(
            either,
            "leader",
            "t/0 epoch 1",
            "broker-3"
        ));
        let e = parse(Path::new("s.toml"), &with(r#""leader | truncated: x""#))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("s.toml:1: must_see[0]: unknown event kind \"truncated\""),
            "{e}"
        );
        let e = parse(Path::new("s.toml"), &with(r#""truncated""#))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("s.toml:1: must_see[0]: unknown event kind \"truncated\""),
            "{e}"
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("25h").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
