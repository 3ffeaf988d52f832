//! Invariants of replication and of the controller quorum, checked while a run goes on (from
//! what nodes report through `faultline::observe`) and once at its end (by comparing the
//! replicas of every partition). Pure: the runner feeds observations and digests in; what
//! comes out is a list of violations, each a sentence naming the node, the partition, the
//! leader epoch and the offsets.
//!
//! **Architecture invariant:** nothing here knows about madsim, sockets or the history;
//! every rule can be tested with a hand-made sequence of observations.
//!
//! The continuous rules:
//! - `one-leader-per-epoch`: at most one broker becomes leader of a partition in one
//!   leader epoch.
//! - `leader-epoch-monotonic`: no broker becomes leader of a partition in an epoch below one
//!   any broker already led it in, restarts included (a restarted broker acting on stale
//!   metadata is exactly what this catches).
//! - `high-watermark-monotonic`: a leader's high watermark never goes back within one
//!   leader epoch (per incarnation too).
//! - `one-active-controller-per-term`: at most one controller is active in one term.
//! - `metadata-log-agrees`: every controller that commits metadata entry `index` commits
//!   the same (term, digest).
//! - `committed-batches-agree` ([`COMMITTED_BATCHES_AGREE`]): once a leader's high
//!   watermark passes a batch, that batch is committed; no replica may ever hold a
//!   different batch at those offsets (checked as every append and replicated append is
//!   reported, not only at the end, so a divergence that lasts a moment is seen too: a
//!   follower admitted to the ISR too early and then elected writes new batches over
//!   committed ones at once). A writer in an older leader epoch than the one that
//!   committed the offsets is exempt: a deposed leader that has not heard of its successor
//!   may still append to its own log, which is truncated when it rejoins, and nothing it
//!   writes there can be committed. Committed data overwritten is acknowledged data lost,
//!   so a scenario that allows lost writes allows this rule too.
//!
//! The end-of-run rule, `replicas-agree`: every member of a partition's ISR (as the leader
//! reports it) holds exactly the leader's batches (base, last, CRC) below the leader's high
//! watermark.

use faultline::observe::Observation;
use faultline::server::ReplicaDigest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Controller node ids in the lab: controller-K is node 1000 + K, so they never clash with
/// broker ids 1..N.
pub const CONTROLLER_ID_BASE: i32 = 1000;

/// The rule that committed batches never change (see the module docs).
pub const COMMITTED_BATCHES_AGREE: &str = "committed-batches-agree";

/// One batch as a replica reported it: last offset and CRC, by base offset.
type BatchMap = BTreeMap<i64, (i64, u32)>;

/// Committed batches by base offset: last offset, CRC, the leader that committed it first
/// and its leader epoch.
type CommittedMap = BTreeMap<i64, (i64, u32, i32, i32)>;

/// Violations kept per run; a broken rule tends to repeat at every report after it.
pub const VIOLATIONS_MAX: usize = 100;

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvariantViolation {
    /// Simulated nanoseconds since the run started (0 for end-of-run checks made before
    /// the clock is read).
    pub time_ns: u64,
    /// The rule's name, e.g. "one-leader-per-epoch".
    pub rule: String,
    /// What was expected and what was seen: node, partition, epoch, offsets.
    pub message: String,
}

/// The continuous checker: feed it every observation of a run, in order.
#[derive(Debug, Default)]
pub struct Invariants {
    /// (topic, partition, leader epoch) -> the broker that became its leader.
    leaders: BTreeMap<(String, i32, i32), i32>,
    /// (topic, partition) -> the highest epoch anyone led it in, and who.
    epochs_led: BTreeMap<(String, i32), (i32, i32)>,
    /// (broker, topic, partition, epoch) -> its last high watermark, this incarnation.
    high_watermarks: BTreeMap<(i32, String, i32, i32), i64>,
    /// term -> the controller active in it.
    active_controllers: BTreeMap<u64, i32>,
    /// metadata index -> (term, digest, first controller that committed it).
    committed: BTreeMap<u64, (u64, u64, i32)>,
    /// (broker, topic, partition) -> the batches its replica reported since it started,
    /// less what it truncated, and how far its high watermark has committed them.
    replica_logs: BTreeMap<(i32, String, i32), (BatchMap, i64)>,
    /// (topic, partition) -> committed batches: (last offset, CRC, the leader that
    /// committed it first).
    committed_batches: BTreeMap<(String, i32), CommittedMap>,
    /// (topic name, topic id) -> the incarnation of the name (1 for the first id seen): a
    /// topic deleted and created again is another topic, checked apart from the first.
    incarnations: BTreeMap<(String, u128), usize>,
    /// Batch reports from a broker leading the partition in the batch's epoch.
    leader_batches: u64,
    violations: Vec<InvariantViolation>,
    /// Violations beyond `VIOLATIONS_MAX`, counted only.
    dropped: BTreeMap<String, usize>,
}

impl Invariants {
    pub fn new() -> Invariants {
        Invariants::default()
    }

    /// Check one observation against everything seen before it.
    pub fn observe(&mut self, time_ns: u64, observation: &Observation) {
        let renamed;
        let observation = match self.incarnation_of(observation) {
            Some(o) => {
                renamed = o;
                &renamed
            }
            None => observation,
        };
        match observation {
            Observation::BecameLeader {
                broker,
                topic,
                partition,
                leader_epoch,
                ..
            } => {
                let key = (topic.clone(), *partition, *leader_epoch);
                match self.leaders.get(&key) {
                    Some(other) if other != broker => self.fail(
                        time_ns,
                        "one-leader-per-epoch",
                        format!(
                            "broker {broker} became leader of {topic}/{partition} in leader epoch {leader_epoch}, \
                             which broker {other} already leads"
                        ),
                    ),
                    Some(_) => {}
                    None => {
                        self.leaders.insert(key, *broker);
                    }
                }
                let key = (topic.clone(), *partition);
                match self.epochs_led.get(&key).copied() {
                    Some((before, by)) if *leader_epoch < before => self.fail(
                        time_ns,
                        "leader-epoch-monotonic",
                        format!(
                            "broker {broker} became leader of {topic}/{partition} in leader epoch {leader_epoch} \
                             after broker {by} led it in epoch {before}"
                        ),
                    ),
                    Some((before, _)) if *leader_epoch == before => {}
                    _ => {
                        self.epochs_led.insert(key, (*leader_epoch, *broker));
                    }
                }
            }
            Observation::HighWatermark {
                broker,
                topic,
                partition,
                leader_epoch,
                high_watermark,
                ..
            } => {
                let key = (*broker, topic.clone(), *partition, *leader_epoch);
                match self.high_watermarks.get(&key) {
                    Some(before) if high_watermark < before => self.fail(
                        time_ns,
                        "high-watermark-monotonic",
                        format!(
                            "broker {broker}, leader of {topic}/{partition} in leader epoch {leader_epoch}, \
                             moved its high watermark back from {before} to {high_watermark}"
                        ),
                    ),
                    _ => {
                        self.high_watermarks.insert(key, *high_watermark);
                    }
                }
            }
            Observation::ControllerActive { node, term } => match self.active_controllers.get(term)
            {
                Some(other) if other != node => self.fail(
                    time_ns,
                    "one-active-controller-per-term",
                    format!(
                        "controller {node} became active in term {term}, in which controller {other} \
                         is already active"
                    ),
                ),
                Some(_) => {}
                None => {
                    self.active_controllers.insert(*term, *node);
                }
            },
            Observation::MetadataCommitted {
                node,
                index,
                term,
                digest,
            } => match self.committed.get(index) {
                Some((t, d, first)) if (t, d) != (term, digest) => {
                    let (t, d, first) = (*t, *d, *first);
                    self.fail(
                        time_ns,
                        "metadata-log-agrees",
                        format!(
                            "controller {node} committed metadata index {index} as term {term} digest {digest:016x}; \
                             controller {first} committed it as term {t} digest {d:016x}"
                        ),
                    )
                }
                Some(_) => {}
                None => {
                    self.committed.insert(*index, (*term, *digest, *node));
                }
            },
            Observation::Started { node } => {
                if let Some(id) = node_id_of(node) {
                    self.high_watermarks.retain(|(b, _, _, _), _| *b != id);
                    // What survived on its disk is not reported again; only what it
                    // writes from now on is checked.
                    self.replica_logs.retain(|(b, _, _), _| *b != id);
                }
            }
            Observation::Batch { .. } => self.on_batch(time_ns, observation),
            Observation::Truncated {
                broker,
                topic,
                partition,
                offset,
                ..
            } => self.on_truncated(*broker, topic, *partition, *offset),
        }
        if let Observation::HighWatermark {
            broker,
            topic,
            partition,
            high_watermark,
            leader_epoch,
            ..
        } = observation
        {
            let writer = (*broker, *leader_epoch);
            self.commit(time_ns, writer, topic, *partition, *high_watermark);
        }
    }

    /// An observation of a later incarnation of a topic name, with the topic named
    /// "NAME (incarnation K)" so that its epochs and offsets are checked apart; None for
    /// the first incarnation (named as it is) and for observations without a topic.
    fn incarnation_of(&mut self, observation: &Observation) -> Option<Observation> {
        let (topic, id) = match observation {
            Observation::BecameLeader {
                topic, topic_id, ..
            }
            | Observation::HighWatermark {
                topic, topic_id, ..
            }
            | Observation::Batch {
                topic, topic_id, ..
            }
            | Observation::Truncated {
                topic, topic_id, ..
            } => (topic, *topic_id),
            _ => return None,
        };
        let known = self
            .incarnations
            .range((topic.clone(), 0)..=(topic.clone(), u128::MAX))
            .count();
        let k = *self
            .incarnations
            .entry((topic.clone(), id))
            .or_insert(known + 1);
        if k == 1 {
            return None;
        }
        let mut o = observation.clone();
        match &mut o {
            Observation::BecameLeader { topic, .. }
            | Observation::HighWatermark { topic, .. }
            | Observation::Batch { topic, .. }
            | Observation::Truncated { topic, .. } => *topic = format!("{topic} (incarnation {k})"),
            _ => {}
        }
        Some(o)
    }

    /// A replica reported a batch it appended (as leader) or copied (as follower).
    fn on_batch(&mut self, time_ns: u64, observation: &Observation) {
        let Observation::Batch {
            broker,
            topic,
            partition,
            base_offset,
            last_offset,
            crc,
            leader_epoch,
            ..
        } = observation
        else {
            return;
        };
        let key = (topic.clone(), *partition, *leader_epoch);
        if self.leaders.get(&key) == Some(broker) {
            self.leader_batches += 1;
        }
        self.check_against_committed(
            time_ns,
            (*broker, *leader_epoch),
            topic,
            *partition,
            (*base_offset, *last_offset, *crc),
        );
        let (log, _) = self
            .replica_logs
            .entry((*broker, topic.clone(), *partition))
            .or_default();
        // A re-append replaces whatever the replica held from there on.
        log.retain(|base, (last, _)| *last < *base_offset || *base > *last_offset);
        log.insert(*base_offset, (*last_offset, *crc));
    }

    /// A follower cut its log at `offset`.
    fn on_truncated(&mut self, broker: i32, topic: &str, partition: i32, offset: i64) {
        if let Some((log, committed_to)) =
            self.replica_logs
                .get_mut(&(broker, topic.to_string(), partition))
        {
            log.retain(|_, (last, _)| *last < offset);
            *committed_to = (*committed_to).min(offset);
        }
    }

    /// The leader `broker`'s batches below `high_watermark`, reported in leader epoch
    /// `epoch`, are committed: each must equal whatever was committed at its offsets before.
    fn commit(
        &mut self,
        time_ns: u64,
        (broker, epoch): (i32, i32),
        topic: &str,
        partition: i32,
        high_watermark: i64,
    ) {
        let key = (broker, topic.to_string(), partition);
        let Some((log, committed_to)) = self.replica_logs.get_mut(&key) else {
            return;
        };
        if high_watermark <= *committed_to {
            return;
        }
        let newly: Vec<(i64, i64, u32)> = log
            .range(*committed_to..)
            .filter(|(_, (last, _))| *last < high_watermark)
            .map(|(base, (last, crc))| (*base, *last, *crc))
            .collect();
        *committed_to = newly.last().map_or(*committed_to, |b| b.1 + 1);
        for batch in newly {
            if self.check_against_committed(time_ns, (broker, epoch), topic, partition, batch) {
                self.committed_batches
                    .entry((topic.to_string(), partition))
                    .or_default()
                    .entry(batch.0)
                    .or_insert((batch.1, batch.2, broker, epoch));
            }
        }
    }

    /// Whether `batch` (base, last, CRC) written by `broker` in leader epoch `epoch` agrees
    /// with what is committed at its offsets: the same batch, nothing committed there, or
    /// committed only in a later leader epoch than the writer's (a deposed leader's own
    /// log, truncated when it rejoins). Records a violation otherwise.
    fn check_against_committed(
        &mut self,
        time_ns: u64,
        (broker, epoch): (i32, i32),
        topic: &str,
        partition: i32,
        (base, last, crc): (i64, i64, u32),
    ) -> bool {
        let Some(committed) = self.committed_batches.get(&(topic.to_string(), partition)) else {
            return true;
        };
        let clash = committed
            .range(..=last)
            .rev()
            .take_while(|(_, c)| c.0 >= base)
            .find(|(c_base, c)| (**c_base, c.0, c.1) != (base, last, crc))
            .map(|(c_base, c)| (*c_base, *c));
        let Some((c_base, (c_last, c_crc, by, c_epoch))) = clash else {
            return true;
        };
        if epoch < c_epoch {
            return false;
        }
        self.fail(
            time_ns,
            COMMITTED_BATCHES_AGREE,
            format!(
                "broker {broker} wrote {topic}/{partition} offsets {base}..={last} (crc {crc:08x}) \
                 in leader epoch {epoch} over the committed batch {c_base}..={c_last} (crc \
                 {c_crc:08x}) that broker {by}'s high watermark had passed in leader epoch \
                 {c_epoch}: acknowledged records at risk"
            ),
        );
        false
    }

    /// Batches leaders reported appending in their own epoch: the continuous checks'
    /// input from the write path (followers' copies are reported apart).
    pub fn leader_batch_count(&self) -> u64 {
        self.leader_batches
    }

    pub fn violations(&self) -> &[InvariantViolation] {
        &self.violations
    }

    /// Violations found beyond the kept ones.
    pub fn dropped(&self) -> usize {
        self.dropped.values().sum()
    }

    /// Violations found beyond the kept ones, per rule.
    pub fn dropped_by_rule(&self) -> &BTreeMap<String, usize> {
        &self.dropped
    }

    /// Add a violation found outside `observe` (the end-of-run comparison).
    pub fn push(&mut self, violation: InvariantViolation) {
        if self.violations.len() < VIOLATIONS_MAX {
            self.violations.push(violation);
        } else {
            *self.dropped.entry(violation.rule).or_default() += 1;
        }
    }

    /// An end-of-run finding: kept whatever the cap (there is at most one per check, and
    /// it must not drown under a continuous rule's repeats).
    pub fn push_final(&mut self, violation: InvariantViolation) {
        self.violations.push(violation);
    }

    fn fail(&mut self, time_ns: u64, rule: &str, message: String) {
        self.push(InvariantViolation {
            time_ns,
            rule: rule.into(),
            message,
        });
    }
}

/// The node id a `Started { node }` report names: "broker-3" -> 3, "controller-2" -> 1002,
/// or a bare id "3".
pub fn node_id_of(node: &str) -> Option<i32> {
    if let Some(n) = node.strip_prefix("broker-") {
        return n.parse().ok();
    }
    if let Some(n) = node.strip_prefix("controller-") {
        return n.parse::<i32>().ok().map(|k| CONTROLLER_ID_BASE + k);
    }
    node.parse().ok()
}

/// End-of-run comparison of one partition's replicas: `digests` holds every running
/// broker's digest (None: it holds no replica; a broker not in the map was not running and
/// is not judged). The leader is the replica that says it leads (the
/// highest leader epoch if several do); every broker in its ISR must hold the leader's
/// batches entirely below the leader's high watermark, identical in base, last offset
/// and CRC, and no others there.
pub fn compare_replicas(
    topic: &str,
    partition: i32,
    digests: &BTreeMap<i32, Option<ReplicaDigest>>,
    time_ns: u64,
) -> Vec<InvariantViolation> {
    let mut out = Vec::new();
    let fail = |out: &mut Vec<InvariantViolation>, message: String| {
        out.push(InvariantViolation {
            time_ns,
            rule: "replicas-agree".into(),
            message,
        })
    };
    let Some((leader, lead)) = digests
        .iter()
        .filter_map(|(b, d)| d.as_ref().filter(|d| d.is_leader).map(|d| (*b, d)))
        .max_by_key(|(b, d)| (d.leader_epoch, -*b))
    else {
        // No leader at the end: nothing to compare against (liveness reports that).
        return out;
    };
    let hw = lead.high_watermark;
    let below = |d: &ReplicaDigest| -> Vec<(i64, i64, u32)> {
        d.batches.iter().copied().filter(|b| b.1 < hw).collect()
    };
    let want = below(lead);
    for member in lead.isr.iter().filter(|m| **m != leader) {
        let replica = match digests.get(member) {
            // Not running at the end (still starting): nothing to compare.
            None => continue,
            Some(replica) => replica,
        };
        let Some(replica) = replica else {
            fail(
                &mut out,
                format!(
                    "{topic}/{partition}: broker {member} is in the ISR of leader {leader} (leader epoch {}), \
                     but holds no replica of it",
                    lead.leader_epoch
                ),
            );
            continue;
        };
        let have = below(replica);
        if have == want {
            continue;
        }
        // Name the first offset where they differ.
        let first = want
            .iter()
            .zip(have.iter())
            .position(|(a, b)| a != b)
            .unwrap_or(want.len().min(have.len()));
        let show = |b: Option<&(i64, i64, u32)>| {
            b.map_or("nothing".to_string(), |(base, last, crc)| {
                format!("batch {base}..={last} crc {crc:08x}")
            })
        };
        fail(
            &mut out,
            format!(
                "{topic}/{partition}: broker {member} (in the ISR) differs from leader {leader} \
                 (leader epoch {}, high watermark {hw}) below the high watermark: the leader has {}, \
                 broker {member} has {}",
                lead.leader_epoch,
                show(want.get(first)),
                show(have.get(first)),
            ),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(broker: i32, epoch: i32) -> Observation {
        Observation::BecameLeader {
            broker,
            topic: "t".into(),
            topic_id: 1,
            partition: 0,
            leader_epoch: epoch,
        }
    }

    fn hw(broker: i32, epoch: i32, high_watermark: i64) -> Observation {
        Observation::HighWatermark {
            broker,
            topic: "t".into(),
            topic_id: 1,
            partition: 0,
            leader_epoch: epoch,
            high_watermark,
        }
    }

    fn committed(node: i32, index: u64, term: u64, digest: u64) -> Observation {
        Observation::MetadataCommitted {
            node,
            index,
            term,
            digest,
        }
    }

    fn started(node: &str) -> Observation {
        Observation::Started { node: node.into() }
    }

    /// Data-driven: the rules broken by a sequence (empty: it is valid), in order.
    fn check(observations: &[Observation], want: &[&str]) {
        let mut inv = Invariants::new();
        for (i, o) in observations.iter().enumerate() {
            inv.observe(i as u64, o);
        }
        let got: Vec<&str> = inv.violations().iter().map(|v| v.rule.as_str()).collect();
        assert_eq!(got, want, "{:#?}", inv.violations());
    }

    /// `o` as an observation of the topic with id `id`.
    fn of_topic(id: u128, mut o: Observation) -> Observation {
        match &mut o {
            Observation::BecameLeader { topic_id, .. }
            | Observation::HighWatermark { topic_id, .. }
            | Observation::Batch { topic_id, .. }
            | Observation::Truncated { topic_id, .. } => *topic_id = id,
            _ => {}
        }
        o
    }

    #[test]
    fn a_topic_created_again_under_its_name_is_checked_apart() {
        // Topic id 1 is led by broker 1 in epoch 0 and commits a batch; deleted, the name
        // comes back as id 2, led by broker 2 in epoch 0 with other bytes at offset 0.
        let again = [
            leader(1, 0),
            batch_in(1, 0, 0, 4, 0xa),
            hw(1, 0, 5),
            of_topic(2, leader(2, 0)),
            of_topic(2, batch_in(2, 0, 0, 4, 0xb)),
            of_topic(2, hw(2, 0, 5)),
        ];
        check(&again, &[]);
        // The same id, though, is the same topic: two leaders of epoch 0.
        let same = [leader(1, 0), leader(2, 0)];
        check(&same, &["one-leader-per-epoch"]);
        // A third incarnation is named as such in what is reported.
        let mut inv = Invariants::new();
        for o in [
            leader(1, 0),
            of_topic(2, leader(1, 0)),
            of_topic(3, leader(1, 0)),
            of_topic(3, leader(2, 0)),
        ] {
            inv.observe(0, &o);
        }
        assert_eq!(inv.violations().len(), 1);
        assert!(
            inv.violations()[0].message.contains("t (incarnation 3)/0"),
            "{:?}",
            inv.violations()
        );
    }

    #[test]
    fn valid_sequences_pass() {
        check(
            &[
                leader(1, 0),
                hw(1, 0, 10),
                hw(1, 0, 10),
                hw(1, 0, 20),
                leader(1, 0), // a repeat by the same broker
                leader(2, 1),
                hw(2, 1, 15), // a new epoch starts from its own high watermark
                leader(1, 2),
                Observation::ControllerActive {
                    node: 1001,
                    term: 1,
                },
                Observation::ControllerActive {
                    node: 1001,
                    term: 1,
                },
                Observation::ControllerActive {
                    node: 1002,
                    term: 2,
                },
                committed(1001, 1, 1, 0xaa),
                committed(1002, 1, 1, 0xaa),
                committed(1003, 2, 2, 0xbb),
            ],
            &[],
        );
    }

    #[test]
    fn two_leaders_in_one_epoch() {
        check(&[leader(1, 3), leader(2, 3)], &["one-leader-per-epoch"]);
    }

    #[test]
    fn leader_epoch_going_back() {
        check(&[leader(1, 5), leader(1, 4)], &["leader-epoch-monotonic"]);
        check(&[leader(1, 5), leader(2, 4)], &["leader-epoch-monotonic"]);
        // A restarted broker leading in an old epoch is the case that matters most.
        check(
            &[leader(1, 5), started("broker-1"), leader(1, 4)],
            &["leader-epoch-monotonic"],
        );
        check(&[leader(1, 5), started("broker-1"), leader(2, 6)], &[]);
    }

    #[test]
    fn high_watermark_going_back_within_an_epoch() {
        check(
            &[leader(1, 0), hw(1, 0, 10), hw(1, 0, 9)],
            &["high-watermark-monotonic"],
        );
        let mut inv = Invariants::new();
        inv.observe(7, &hw(2, 4, 100));
        inv.observe(8, &hw(2, 4, 99));
        let v = &inv.violations()[0];
        assert_eq!(v.time_ns, 8);
        for part in ["broker 2", "t/0", "leader epoch 4", "from 100 to 99"] {
            assert!(v.message.contains(part), "{part:?} not in {:?}", v.message);
        }
    }

    #[test]
    fn two_active_controllers_in_one_term() {
        check(
            &[
                Observation::ControllerActive {
                    node: 1001,
                    term: 7,
                },
                Observation::ControllerActive {
                    node: 1003,
                    term: 7,
                },
            ],
            &["one-active-controller-per-term"],
        );
    }

    #[test]
    fn diverging_metadata_log() {
        check(
            &[committed(1001, 4, 2, 0xaa), committed(1002, 4, 2, 0xab)],
            &["metadata-log-agrees"],
        );
        check(
            &[committed(1001, 4, 2, 0xaa), committed(1002, 4, 3, 0xaa)],
            &["metadata-log-agrees"],
        );
    }

    fn batch(broker: i32, base: i64, last: i64, crc: u32) -> Observation {
        batch_in(broker, 1, base, last, crc)
    }

    fn batch_in(broker: i32, epoch: i32, base: i64, last: i64, crc: u32) -> Observation {
        Observation::Batch {
            broker,
            topic: "t".into(),
            topic_id: 1,
            partition: 0,
            base_offset: base,
            last_offset: last,
            crc,
            leader_epoch: epoch,
        }
    }

    fn truncated(broker: i32, offset: i64) -> Observation {
        Observation::Truncated {
            broker,
            topic: "t".into(),
            topic_id: 1,
            partition: 0,
            offset,
        }
    }

    #[test]
    fn committed_batches_never_change() {
        // Leader 1 writes 0..=4 and 5..=9; its high watermark passes the first only.
        let committed_first = [batch(1, 0, 4, 0xa), batch(1, 5, 9, 0xb), hw(1, 0, 5)];
        // A follower copies the committed batch, then replaces the uncommitted one after a
        // truncation: fine, only committed offsets are fixed.
        let mut fine = committed_first.to_vec();
        fine.extend([
            batch(2, 0, 4, 0xa),
            batch(2, 5, 9, 0xc),
            truncated(2, 5),
            batch(2, 5, 7, 0xd),
        ]);
        fine.extend([leader(2, 1), hw(2, 1, 8)]);
        check(&fine, &[]);
        // A new leader that lacked the committed batch writes its own there.
        let mut overwritten = committed_first.to_vec();
        overwritten.extend([leader(3, 1), batch(3, 0, 2, 0xe)]);
        check(&overwritten, &[COMMITTED_BATCHES_AGREE]);
        // Or commits a different batch at those offsets through its own high watermark.
        let mut recommitted = vec![batch(3, 0, 4, 0xf)];
        recommitted.extend(committed_first.iter().cloned());
        recommitted.extend([leader(3, 1), hw(3, 1, 5)]);
        check(&recommitted, &[COMMITTED_BATCHES_AGREE]);
        // A deposed leader of epoch 0 that has not heard of its successor appends to its
        // own log over offsets the epoch-2 leader committed: it is truncated when it
        // rejoins, and nothing it writes there can be committed.
        let stale = [
            batch_in(3, 2, 0, 4, 0xa),
            hw(3, 2, 5),
            batch_in(1, 0, 0, 2, 0xe),
        ];
        check(&stale, &[]);
        let newer = [
            batch_in(3, 2, 0, 4, 0xa),
            hw(3, 2, 5),
            batch_in(1, 2, 0, 2, 0xe),
        ];
        check(&newer, &[COMMITTED_BATCHES_AGREE]);
    }

    #[test]
    fn node_ids_of_started_reports() {
        assert_eq!(node_id_of("broker-3"), Some(3));
        assert_eq!(node_id_of("controller-2"), Some(1002));
        assert_eq!(node_id_of("7"), Some(7));
        assert_eq!(node_id_of("p1"), None);
    }

    fn digest(
        is_leader: bool,
        epoch: i32,
        hw: i64,
        isr: &[i32],
        batches: &[(i64, i64, u32)],
    ) -> ReplicaDigest {
        ReplicaDigest {
            leader_epoch: epoch,
            is_leader,
            high_watermark: hw,
            log_end_offset: batches.last().map_or(0, |b| b.1 + 1),
            isr: isr.to_vec(),
            batches: batches.to_vec(),
        }
    }

    #[test]
    fn replicas_that_agree_below_the_high_watermark_pass() {
        let batches = [(0, 9, 1), (10, 19, 2), (20, 29, 3)];
        let digests = BTreeMap::from([
            (1, Some(digest(true, 2, 20, &[1, 2, 3], &batches))),
            // A follower may lag above the high watermark, or hold another tail there.
            (2, Some(digest(false, 2, 20, &[], &batches[..2]))),
            (
                3,
                Some(digest(
                    false,
                    2,
                    20,
                    &[],
                    &[(0, 9, 1), (10, 19, 2), (20, 25, 9)],
                )),
            ),
            // Out of the ISR: not compared.
            (4, Some(digest(false, 1, 0, &[], &[(0, 9, 7)]))),
            (5, None),
        ]);
        assert_eq!(compare_replicas("t", 0, &digests, 0), vec![]);
    }

    #[test]
    fn an_isr_member_that_differs_below_the_high_watermark_fails() {
        let digests = BTreeMap::from([
            (
                1,
                Some(digest(true, 2, 20, &[1, 2], &[(0, 9, 1), (10, 19, 2)])),
            ),
            (
                2,
                Some(digest(false, 2, 20, &[], &[(0, 9, 1), (10, 19, 5)])),
            ),
        ]);
        let v = compare_replicas("t", 0, &digests, 5);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].rule, "replicas-agree");
        for part in [
            "t/0",
            "broker 2",
            "leader 1",
            "leader epoch 2",
            "high watermark 20",
            "batch 10..=19 crc 00000002",
            "batch 10..=19 crc 00000005",
        ] {
            assert!(
                v[0].message.contains(part),
                "{part:?} not in {:?}",
                v[0].message
            );
        }
        // Missing a batch below the high watermark.
        let digests = BTreeMap::from([
            (
                1,
                Some(digest(true, 2, 20, &[1, 2], &[(0, 9, 1), (10, 19, 2)])),
            ),
            (2, Some(digest(false, 2, 20, &[], &[(0, 9, 1)]))),
        ]);
        let v = compare_replicas("t", 0, &digests, 5);
        assert!(
            v[0].message.contains("broker 2 has nothing"),
            "{}",
            v[0].message
        );
        // In the ISR without a replica.
        let digests = BTreeMap::from([
            (1, Some(digest(true, 2, 20, &[1, 2], &[(0, 9, 1)]))),
            (2, None),
        ]);
        assert!(compare_replicas("t", 0, &digests, 5)[0]
            .message
            .contains("holds no replica"));
        // In the ISR but not running at the end: not judged.
        let digests = BTreeMap::from([(1, Some(digest(true, 2, 20, &[1, 2], &[(0, 9, 1)])))]);
        assert!(compare_replicas("t", 0, &digests, 5).is_empty());
    }
}
