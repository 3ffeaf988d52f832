//! The scenario file as written: the serde types a TOML file deserializes into, with the
//! defaults of every field and the spans (`toml::Spanned`) that errors point at. Nothing
//! here checks more than types; `validate` checks meaning, section by section.

use super::DURATION_MAX;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use toml::Spanned;

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
    pub(super) fn takes_node(self) -> bool {
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

/// A setting's value: one, or a list the seed draws one from (the configuration swarm:
/// each seed runs with its own point of the settings space, printed in its report).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Setting {
    One(String),
    Choice(Vec<String>),
}

impl Setting {
    /// Every value the setting may take.
    pub fn choices(&self) -> Vec<&str> {
        match self {
            Setting::One(v) => vec![v.as_str()],
            Setting::Choice(vs) => vs.iter().map(String::as_str).collect(),
        }
    }

    /// The value of a drawn (or single-valued) setting; the first choice of a list.
    pub fn value(&self) -> &str {
        match self {
            Setting::One(v) => v,
            Setting::Choice(vs) => vs.first().map_or("", String::as_str),
        }
    }
}

/// A number a scenario fixes or leaves to the seed (the configuration swarm): `5`, a list
/// to draw from, `[1, 5]`, or an inclusive range, `{ min = 1, max = 5 }`. Every value it
/// may take is validated; `Scenario::draw` turns it into one value per seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Knob<T> {
    One(T),
    List(Vec<T>),
    Range { min: T, max: T },
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Knob<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Knob<T>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written<T> {
            One(T),
            List(Vec<T>),
            Range { min: T, max: T },
        }
        match Written::deserialize(d) {
            Ok(Written::One(v)) => Ok(Knob::One(v)),
            Ok(Written::List(vs)) => Ok(Knob::List(vs)),
            Ok(Written::Range { min, max }) => Ok(Knob::Range { min, max }),
            Err(_) => Err(serde::de::Error::custom(
                "expected a whole number, a list of them ([1, 5]) or a range ({ min = 1, max = 5 })",
            )),
        }
    }
}

impl<T: Copy + Ord + Into<i64> + TryFrom<i64>> Knob<T> {
    /// The value of a drawn (or fixed) knob; a list's first value, a range's least.
    pub fn get(&self) -> T {
        match self {
            Knob::One(v) => *v,
            Knob::List(vs) => *vs.first().expect("validated: not empty"),
            Knob::Range { min, .. } => *min,
        }
    }

    /// The least and the greatest value it may take (None for an empty list).
    pub fn bounds(&self) -> Option<(T, T)> {
        match self {
            Knob::One(v) => Some((*v, *v)),
            Knob::List(vs) => Some((*vs.iter().min()?, *vs.iter().max()?)),
            Knob::Range { min, max } => Some((*min, *max)),
        }
    }

    /// Whether the seed chooses (a list or a range).
    pub fn varies(&self) -> bool {
        !matches!(self, Knob::One(_))
    }

    /// One value, drawn with `below` (a uniform draw in 0..n).
    pub fn pick(&self, below: &mut impl FnMut(u64) -> u64) -> T {
        match self {
            Knob::One(v) => *v,
            Knob::List(vs) => vs[below(vs.len() as u64) as usize],
            Knob::Range { min, max } => {
                let (lo, hi): (i64, i64) = ((*min).into(), (*max).into());
                let v = lo + below((hi - lo) as u64 + 1) as i64;
                T::try_from(v).unwrap_or(*min)
            }
        }
    }
}

/// A knob fixed to `v`, for defaults.
fn knob<T>(v: T) -> Spanned<Knob<T>> {
    Spanned::new(0..0, Knob::One(v))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Broker nodes, named broker-1 .. broker-N.
    #[serde(default = "one")]
    pub brokers: Spanned<usize>,
    /// Broker settings by their Kafka names, e.g. "log.flush.interval.messages" = "1", or a
    /// list to draw from per seed: "log.segment.bytes" = ["2000", "1048576"].
    #[serde(default)]
    pub config: BTreeMap<String, Spanned<Setting>>,
    /// Controller nodes (a KRaft quorum), named controller-1 .. controller-N: 0, 1, 3 or 5.
    /// Default: 3 with several brokers, else 0 (a standalone broker).
    pub controllers: Option<Spanned<usize>>,
    /// Racks: broker i (from 0) is in racks[i % len] (`broker.rack`).
    pub racks: Option<Spanned<Vec<String>>>,
    /// Controller settings by their Kafka names (e.g. "controller.quorum.election.timeout.ms"),
    /// or a list to draw from per seed.
    #[serde(default)]
    pub controller_config: BTreeMap<String, Spanned<Setting>>,
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
    /// A count, or a list or range the seed draws from.
    #[serde(default = "one_i32")]
    pub partitions: Spanned<Knob<i32>>,
    #[serde(default = "one_i16")]
    pub replication_factor: Spanned<Knob<i16>>,
    /// Topic settings by their Kafka names (a list draws one value per seed).
    #[serde(default)]
    pub config: BTreeMap<String, Spanned<Setting>>,
}

fn one_i32() -> Spanned<Knob<i32>> {
    knob(1)
}
fn one_i16() -> Spanned<Knob<i16>> {
    knob(1)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerSpec {
    pub name: Option<Spanned<String>>,
    pub topic: Spanned<String>,
    /// Records per simulated second. This and every number below may be a list or a range
    /// the seed draws from (the configuration swarm).
    #[serde(default = "default_rate")]
    pub rate: Spanned<Knob<u32>>,
    #[serde(default = "default_acks")]
    pub acks: AcksSpec,
    /// Kafka's enable.idempotence; the default follows Kafka 3+: on with acks=all.
    pub idempotence: Option<bool>,
    #[serde(default = "default_retries")]
    pub retries: Spanned<Knob<u32>>,
    /// max.in.flight.requests.per.connection
    #[serde(default = "default_in_flight")]
    pub in_flight: Spanned<Knob<u32>>,
    /// Records sent per round (one round every batch_records / rate seconds).
    #[serde(default = "default_batch_records")]
    pub batch_records: Spanned<Knob<u32>>,
    /// Records per batch at most: a round's records for one partition go out as several
    /// batches, up to `in_flight` of them in flight at once (retried in order). Default:
    /// one batch per partition per round.
    pub records_per_batch: Option<Spanned<Knob<u32>>>,
    /// Distinct keys (records are spread over partitions by Kafka's murmur2); 0: no keys,
    /// round robin.
    #[serde(default)]
    pub keys: u64,
    #[serde(default = "default_record_bytes")]
    pub record_bytes: Spanned<Knob<u32>>,
    #[serde(default)]
    pub start: Option<Spanned<Dur>>,
    pub stop: Option<Spanned<Dur>>,
}

impl ProducerSpec {
    /// The producer's node name: `name`, else producer-N for the N-th `[[producer]]`
    /// (`index` from 0).
    pub fn node_name(&self, index: usize) -> String {
        self.name.as_ref().map_or_else(
            || format!("producer-{}", index + 1),
            |n| n.get_ref().clone(),
        )
    }
}

fn default_rate() -> Spanned<Knob<u32>> {
    knob(100)
}
fn default_acks() -> AcksSpec {
    AcksSpec::All
}
fn default_retries() -> Spanned<Knob<u32>> {
    knob(10)
}
fn default_in_flight() -> Spanned<Knob<u32>> {
    knob(5)
}
fn default_batch_records() -> Spanned<Knob<u32>> {
    knob(10)
}
fn default_record_bytes() -> Spanned<Knob<u32>> {
    knob(32)
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
    /// `fetch.max.wait.ms` (a list or range draws one per seed).
    #[serde(default = "default_fetch_max_wait_ms")]
    pub fetch_max_wait_ms: Spanned<Knob<u32>>,
    /// `fetch.min.bytes`.
    #[serde(default = "default_fetch_min_bytes")]
    pub fetch_min_bytes: Spanned<Knob<u32>>,
    /// `fetch.max.bytes`.
    #[serde(default = "default_fetch_max_bytes")]
    pub fetch_max_bytes: Spanned<Knob<u32>>,
    /// `max.partition.fetch.bytes`: smaller than a batch still returns that batch (KIP-74).
    #[serde(default = "default_max_partition_fetch_bytes")]
    pub max_partition_fetch_bytes: Spanned<Knob<u32>>,
    #[serde(default)]
    pub start: Option<Spanned<Dur>>,
    pub stop: Option<Spanned<Dur>>,
    /// `group.id`: join this consumer group and subscribe to `topic` (the project's
    /// group consumer) instead of assigning partitions. The fields below need it.
    pub group: Option<Spanned<String>>,
    /// `partition.assignment.strategy`: one assignor or a preference list (`range`,
    /// `roundrobin`, `sticky`, `cooperative-sticky`). Default: Kafka's `[range,
    /// cooperative-sticky]`.
    pub assignor: Option<Spanned<Assignors>>,
    /// How the member commits (default `auto`).
    pub commit: Option<Spanned<CommitPolicy>>,
    /// `auto.commit.interval.ms` (default 5 s).
    pub auto_commit_interval: Option<Spanned<Dur>>,
    /// `session.timeout.ms` (default 45 s).
    pub session_timeout: Option<Spanned<Dur>>,
    /// `heartbeat.interval.ms` (default 3 s).
    pub heartbeat_interval: Option<Spanned<Dur>>,
    /// `max.poll.interval.ms` (default 300 s).
    pub max_poll_interval: Option<Spanned<Dur>>,
    /// `max.poll.records` (default 500; a list or range draws one per seed).
    pub max_poll_records: Option<Spanned<Knob<u32>>>,
    /// `group.instance.id`: a static member (KIP-345).
    pub static_id: Option<Spanned<String>>,
    /// `auto.offset.reset` (default Kafka's `latest`).
    pub auto_offset_reset: Option<Spanned<OffsetResetSpec>>,
    /// `group.protocol`: `classic` (default) or `consumer` (KIP-848: the broker assigns;
    /// `assignor`, `session_timeout` and `heartbeat_interval` are then the broker's).
    pub group_protocol: Option<Spanned<GroupProtocolSpec>>,
}

/// `group.protocol` as written in scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupProtocolSpec {
    Classic,
    Consumer,
}

/// One assignor name or a preference list of them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Assignors {
    One(String),
    Many(Vec<String>),
}

impl Assignors {
    pub fn names(&self) -> Vec<String> {
        match self {
            Assignors::One(name) => vec![name.clone()],
            Assignors::Many(names) => names.clone(),
        }
    }
}

/// How a group member commits its offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommitPolicy {
    /// `enable.auto.commit`: the client commits consumed positions every
    /// `auto_commit_interval`, inside poll and before a revoke (at-least-once).
    Auto,
    /// Commit synchronously after processing each poll's records (at-least-once).
    SyncAfterProcessing,
    /// Commit asynchronously after processing each poll's records.
    Async,
    /// Commit synchronously right after poll, before processing (at-most-once); a
    /// batch whose commit failed is not processed.
    BeforeProcessing,
    /// Never commit: every generation starts from `auto_offset_reset`.
    None,
}

impl CommitPolicy {
    pub fn name(self) -> &'static str {
        match self {
            CommitPolicy::Auto => "auto",
            CommitPolicy::SyncAfterProcessing => "sync-after-processing",
            CommitPolicy::Async => "async",
            CommitPolicy::BeforeProcessing => "before-processing",
            CommitPolicy::None => "none",
        }
    }
}

/// `auto.offset.reset` as written in scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OffsetResetSpec {
    Earliest,
    Latest,
    None,
}

/// The lab's consumers wait less than Kafka's 500 ms default: runs are short.
fn default_fetch_max_wait_ms() -> Spanned<Knob<u32>> {
    knob(200)
}
fn default_fetch_min_bytes() -> Spanned<Knob<u32>> {
    knob(1)
}
fn default_fetch_max_bytes() -> Spanned<Knob<u32>> {
    knob(52_428_800)
}
fn default_max_partition_fetch_bytes() -> Spanned<Knob<u32>> {
    knob(1_048_576)
}

impl ConsumerSpec {
    /// The consumer's node name: `name`, else consumer-N for the N-th `[[consumer]]`
    /// (`index` from 0).
    pub fn node_name(&self, index: usize) -> String {
        self.name.as_ref().map_or_else(
            || format!("consumer-{}", index + 1),
            |n| n.get_ref().clone(),
        )
    }
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
    /// A coverage probe (`cargo lab coverage` lists them): the fault waits from `at` until
    /// a node reaches it, then fires (e.g. kill the leader right after an ISR change).
    pub after: Option<Spanned<String>>,
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

/// `[churn]`: metadata churn. An admin client creates and deletes topics named
/// `churn-0`, `churn-1`, ... (twice `topics` names, reused) all run long, one operation every
/// `interval`; after healing, every broker's metadata must show exactly what the controller
/// acknowledged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChurnSpecToml {
    #[serde(default = "default_churn_interval")]
    pub interval: Spanned<Dur>,
    /// At most this many churn topics alive at once.
    #[serde(default = "default_churn_topics")]
    pub topics: Spanned<usize>,
    #[serde(default = "default_churn_partitions")]
    pub partitions: Spanned<i32>,
    /// Default: 3, or the number of brokers if fewer.
    pub replication_factor: Option<Spanned<i16>>,
}

fn default_churn_interval() -> Spanned<Dur> {
    Spanned::new(0..0, Dur(Duration::from_millis(500)))
}
fn default_churn_topics() -> Spanned<usize> {
    Spanned::new(0..0, 3)
}
fn default_churn_partitions() -> Spanned<i32> {
    Spanned::new(0..0, 2)
}

/// `[churn]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChurnSpec {
    pub interval: Duration,
    pub topics: usize,
    pub partitions: i32,
    pub replication_factor: i16,
}

/// The whole file, before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScenarioToml {
    pub(super) name: Option<String>,
    pub(super) description: Option<String>,
    pub(super) duration: Spanned<Dur>,
    pub(super) liveness: Option<Spanned<Dur>>,
    pub(super) seeds: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) cluster: ClusterSpec,
    #[serde(default, rename = "topic")]
    pub(super) topics: Vec<TopicSpec>,
    #[serde(default, rename = "producer")]
    pub(super) producers: Vec<ProducerSpec>,
    #[serde(default, rename = "consumer")]
    pub(super) consumers: Vec<ConsumerSpec>,
    #[serde(default, rename = "fault")]
    pub(super) faults: Vec<FaultSpec>,
    pub(super) nemesis: Option<NemesisSpec>,
    pub(super) churn: Option<ChurnSpecToml>,
    #[serde(default)]
    pub(super) expect: BTreeMap<String, Spanned<Expectation>>,
    #[serde(default)]
    pub(super) must_see: Vec<Spanned<String>>,
    /// BUGGIFY on for this scenario's runs (`faultline::buggify`).
    #[serde(default)]
    pub(super) buggify: bool,
    /// No consumer group may form a new generation after this time of the safety phase.
    pub(super) groups_stable_after: Option<Spanned<Dur>>,
}
