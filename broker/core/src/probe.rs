//! Coverage probes: named points in the broker and controller where a rare mechanism runs
//! (FoundationDB's `CODE_PROBE`, TigerBeetle's coverage marks). The lab counts, per seed,
//! how often each was reached (`cargo lab coverage`), and a suite fails when a probe it
//! declares in `must_reach` was never reached: a scenario that no longer gets where it
//! claims to go is caught, not trusted.
//!
//! `probe!(NAME)` compiles to nothing outside the simulated build (`--cfg madsim`); inside
//! it, it counts in the lab's per-thread slot (`observe::HOOKS`) when the lab asked for
//! counting, and costs one thread-local lookup otherwise. A probe never changes what the
//! code does.
//!
//! Every probe is declared once in [`ALL`] with what reaching it means; the lab's coverage
//! table lists them all, reached or not.

use crate::observe::HOOKS;
use std::collections::BTreeMap;

/// One named point and what reaching it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub name: &'static str,
    pub meaning: &'static str,
}

macro_rules! probes {
    ($($id:ident = $name:literal : $meaning:literal;)*) => {
        $(
            #[doc = $meaning]
            pub const $id: Probe = Probe { name: $name, meaning: $meaning };
        )*
        /// Every probe, in declaration order.
        pub const ALL: &[Probe] = &[$($id),*];
        /// Every probe's identifier in the code, with its name (for the check that each
        /// is placed somewhere).
        pub const IDS: &[(&str, &str)] = &[$((stringify!($id), $name)),*];
    };
}

probes! {
    // The partition log.
    SEGMENT_ROLL = "log.segment-roll":
        "a log rolled to a new segment (segment.bytes or segment.ms)";
    RECOVERY_CUT_TAIL = "log.recovery-cut-tail":
        "recovery cut a log's tail at a torn or corrupt batch";
    RECOVERY_CRC_MISMATCH = "log.recovery-crc-mismatch":
        "recovery found a complete batch whose CRC does not match (not a short tail)";
    FLUSH_BY_POLICY = "log.flush-by-policy":
        "a log was fsynced because flush.messages or flush.ms said so";
    // Producer state and idempotence.
    IDEMPOTENT_DUPLICATE = "producer.duplicate":
        "a retried batch was answered from the idempotence window with its original offset";
    OUT_OF_ORDER_SEQUENCE = "producer.out-of-order-sequence":
        "a batch was refused with OUT_OF_ORDER_SEQUENCE_NUMBER";
    PRODUCER_FENCED = "producer.fenced-epoch":
        "a batch from an older producer epoch was refused with INVALID_PRODUCER_EPOCH";
    PRODUCER_SNAPSHOT_USED = "producer.snapshot-used":
        "a start read producer state from a clean shutdown's snapshot";
    // The leader's replica state.
    ISR_SHRINK = "replica.isr-shrink":
        "a leader proposed removing a lagging follower from the ISR";
    ISR_EXPAND = "replica.isr-expand":
        "a leader proposed adding a caught-up follower to the ISR";
    ISR_CHANGE_COMMITTED = "replica.isr-change-committed":
        "a leader learned that the controller committed its ISR change";
    FOLLOWER_FETCH_FENCED = "replica.follower-fetch-fenced":
        "a leader refused a follower's fetch for its leader epoch (FENCED or UNKNOWN_LEADER_EPOCH)";
    FOLLOWER_DIVERGING = "replica.follower-diverging":
        "a leader told a follower that its log diverges (diverging epoch)";
    NOT_ENOUGH_REPLICAS = "replica.not-enough-replicas":
        "an acks=all produce was refused before append: the ISR is below min.insync.replicas";
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = "replica.not-enough-replicas-after-append":
        "an acks=all produce failed after its append: the ISR shrank below min.insync.replicas";
    // The broker's replicas.
    FOLLOWER_TRUNCATION = "broker.follower-truncation":
        "a follower truncated its log to the leader's epoch end";
    LATE_TRUNCATION_ANSWER_DROPPED = "broker.late-truncation-answer-dropped":
        "a follower dropped a truncation answer from an epoch it no longer follows (KAFKA-18991)";
    FETCH_FOR_OLD_TOPIC_DROPPED = "broker.fetch-for-old-topic-dropped":
        "a follower dropped what it fetched for a topic deleted and created again under its name meanwhile (KIP-516)";
    BECAME_LEADER = "broker.became-leader":
        "a broker became leader of a partition from a metadata image";
    LEADER_TO_FOLLOWER = "broker.leader-to-follower":
        "a leader became a follower of another broker (leadership moved away)";
    CLIENT_EPOCH_FENCED = "broker.client-epoch-fenced":
        "a client request named an older or newer leader epoch than the partition's (KIP-320)";
    TOPIC_DELETED = "broker.topic-deleted":
        "a broker deleted the replicas of a topic gone from the metadata image";
    TOPIC_ID_CHANGED = "broker.topic-id-changed":
        "a broker saw a topic name come back with another id (deleted and created again between two images it saw) and dropped the old logs";
    STALE_PARTITION_DIR = "broker.stale-partition-dir":
        "a broker removed a partition directory left by an earlier topic of the same name";
    OFFSET_NOT_AVAILABLE = "broker.offset-not-available":
        "a new leader answered ListOffsets with OFFSET_NOT_AVAILABLE (KIP-207)";
    // Raft.
    RAFT_ELECTION_WON = "raft.election-won":
        "a controller won an election and became leader of a term";
    RAFT_VOTE_REFUSED_STALE_LOG = "raft.vote-refused-stale-log":
        "a voter refused a candidate whose log is behind its own";
    RAFT_LOG_DIVERGENCE_TRUNCATED = "raft.divergent-log-truncated":
        "a follower cut uncommitted entries that conflict with the leader's log";
    RAFT_LEADER_STEPPED_DOWN = "raft.leader-stepped-down":
        "a leader stepped down (a higher term, or check-quorum lost its majority)";
    RAFT_COMMIT_EARLIER_TERM = "raft.commit-earlier-term":
        "a new leader committed entries of an earlier term through its own term's entry";
    // The controller's decisions.
    BROKER_FENCED = "controller.broker-fenced":
        "the controller fenced a broker whose session expired";
    UNCLEAN_ELECTION = "controller.unclean-election":
        "the controller elected a leader from outside the ISR (unclean.leader.election.enable)";
    PREFERRED_ELECTION = "controller.preferred-election":
        "the controller moved leadership back to a partition's preferred replica";
    ALTER_PARTITION_REFUSED = "controller.alter-partition-refused":
        "the controller refused an AlterPartition (stale epoch, ineligible replica, ...)";
    // The group coordinator.
    GROUP_REBALANCE_NEW_MEMBER = "group.rebalance-new-member":
        "a group began a rebalance because a new member joined";
    GROUP_REBALANCE_MEMBER_LEFT = "group.rebalance-member-left":
        "a group began a rebalance because a member left with LeaveGroup";
    GROUP_REBALANCE_SESSION_EXPIRED = "group.rebalance-session-expired":
        "a group removed a member whose session timed out";
    GROUP_JOIN_TIMEOUT_REMOVED_MEMBERS = "group.join-timeout-removed-members":
        "a join phase completed at the rebalance timeout and removed members that did not rejoin";
    GROUP_STATIC_MEMBER_FENCED = "group.static-member-fenced":
        "a static member rejoined with a new member id and its old member id was fenced";
    GROUP_MEMBER_ID_REQUIRED = "group.member-id-required":
        "a JoinGroup without a member id was answered with MEMBER_ID_REQUIRED (KIP-394)";
    GROUP_COMMIT_STALE_GENERATION = "group.commit-stale-generation":
        "an OffsetCommit was refused with ILLEGAL_GENERATION";
    GROUP_OFFSETS_EXPIRED = "group.offsets-expired":
        "committed offsets expired after offsets.retention.minutes (KIP-211)";
    GROUP_LOADED = "group.loaded":
        "a group was rebuilt from the __consumer_offsets log";
    GROUP_PARTITION_UNLOADED = "group.partition-unloaded":
        "a broker stopped leading a __consumer_offsets partition and dropped its groups";
    GROUP_WRITE_AWAITED_REPLICATION = "group.write-awaited-replication":
        "a coordinator write was answered only once the high watermark passed it";
    GROUP_LOAD_AWAITED_HIGH_WATERMARK = "group.load-awaited-high-watermark":
        "a new coordinator replayed its partition and waited for the high watermark to reach its log end before serving";
    GROUP_REQUEST_AWAITED_LOAD = "group.request-awaited-load":
        "a group request waited for its new coordinator's high watermark to catch up, instead of answering COORDINATOR_LOAD_IN_PROGRESS";
    GROUP_REQUEST_BEFORE_RECONCILE = "group.request-before-reconcile":
        "a group request reached a broker that leads its partition in metadata it has applied but not yet loaded, and was told COORDINATOR_LOAD_IN_PROGRESS";
    GROUP_WRITE_SETTLED_BEFORE_WAIT = "group.write-settled-before-wait":
        "the coordinator's timer task found a write committed before it began waiting for the next high-watermark change (that change's wake-up had come before it listened)";
    GROUP_CONSUMER_WRITE_REVERTED = "group.consumer-write-reverted":
        "a consumer group (KIP-848) went back to its state before a heartbeat whose write failed";
    GROUP_WRITE_LEADERSHIP_LOST = "group.write-leadership-lost":
        "a coordinator write failed because its partition's leader changed before it committed";
    GROUP_CONSUMER_ASSIGNMENT_CHANGED = "group.consumer-assignment-changed":
        "a consumer group (KIP-848) moved to a new group epoch and computed a new target assignment";
    GROUP_CONSUMER_REVOCATION_AWAITED = "group.consumer-revocation-awaited":
        "a consumer group member was told to revoke partitions before its epoch could move on";
    GROUP_CONSUMER_PARTITIONS_UNRELEASED = "group.consumer-partitions-unreleased":
        "a consumer group member waited for partitions another member still held";
    GROUP_CONSUMER_MEMBER_FENCED = "group.consumer-member-fenced":
        "a consumer group member was fenced (stale epoch, session or rebalance timeout)";
    GROUP_CONSUMER_COMMIT_STALE_EPOCH = "group.consumer-commit-stale-epoch":
        "an offset commit or fetch of a consumer group member was refused with STALE_MEMBER_EPOCH";
}

/// Count a probe in the lab; nothing outside the simulated build.
#[macro_export]
macro_rules! probe {
    ($probe:expr) => {
        if cfg!(madsim) {
            $crate::probe::hit(&$probe);
        }
    };
}

/// Count `probe` on this thread, if the lab is counting.
pub fn hit(probe: &Probe) {
    HOOKS.with(|h| {
        if let Some(counts) = h.borrow_mut().probes.as_mut() {
            *counts.entry(probe.name).or_default() += 1;
        }
    });
}

/// Start counting probes on this thread (from zero).
pub fn start_counting() {
    HOOKS.with(|h| h.borrow_mut().probes = Some(BTreeMap::new()));
}

/// Stop counting and return how often each probe was reached on this thread.
pub fn take_counts() -> BTreeMap<&'static str, u64> {
    HOOKS.with(|h| h.borrow_mut().probes.take().unwrap_or_default())
}

/// How often the probe named `name` was reached on this thread since counting started
/// (the lab's triggered faults wait on it).
pub fn count(name: &str) -> u64 {
    HOOKS.with(|h| {
        h.borrow()
            .probes
            .as_ref()
            .and_then(|c| c.get(name).copied())
            .unwrap_or(0)
    })
}

/// The probe of a name, if one is declared.
pub fn by_name(name: &str) -> Option<&'static Probe> {
    ALL.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_counting_is_per_thread() {
        let mut names: Vec<_> = ALL.iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "duplicate probe names");
        // Not counting: a hit is dropped.
        hit(&SEGMENT_ROLL);
        assert!(take_counts().is_empty());
        start_counting();
        hit(&SEGMENT_ROLL);
        hit(&SEGMENT_ROLL);
        hit(&ISR_SHRINK);
        let counts = take_counts();
        assert_eq!(counts.get("log.segment-roll"), Some(&2));
        assert_eq!(counts.get("replica.isr-shrink"), Some(&1));
        assert!(take_counts().is_empty(), "taking stops counting");
    }
}
