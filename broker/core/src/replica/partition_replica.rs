//! The leader's view of one partition's replicas: where each follower is, which replicas
//! are in sync (the ISR) and how changes to that set are confirmed by the controller, the
//! high watermark, `min.insync.replicas` and the completion of `acks=all` produces.
//!
//! One [`PartitionReplica`] lives for one leader epoch of one partition on its leader. The
//! broker creates it with [`PartitionReplica::become_leader`] and drops it when it stops
//! leading or a new leader epoch begins (then it creates a new one). Everything is pure:
//! time comes in as `now_ms`, the leader's log offsets and epoch cache come in as
//! arguments, and the AlterPartition request to send comes out as a value.
//!
//! # The rules, as Kafka has them
//! - **Fencing (KIP-320).** A follower fetch names the leader epoch it believes in. Older
//!   than ours: `FENCED_LEADER_EPOCH` (the follower is stale). Newer: `UNKNOWN_LEADER_EPOCH`
//!   (we are stale). Absent (old request versions): not checked. A replica outside the
//!   assignment gets `UNKNOWN_LEADER_EPOCH` if it named an epoch, else
//!   `NOT_LEADER_OR_FOLLOWER`.
//! - **Divergence.** A fetch that carries the follower's last fetched epoch is checked
//!   against the leader's epoch cache before anything is read: if the leader's history for
//!   that epoch ends before the fetch offset, or the leader never had that epoch, the answer
//!   is the diverging epoch and its end offset, no records, and no change to the follower's
//!   recorded position (the follower truncates and fetches again). An epoch the leader
//!   cannot place at all is `OFFSET_OUT_OF_RANGE`.
//! - **Follower position.** An accepted fetch at offset `f` means the follower has every
//!   offset below `f`: `f` becomes its log end offset (it may go down after the follower
//!   truncated). `last_caught_up_ms` (Kafka's `lastCaughtUpTimeMs`) becomes the fetch time
//!   if `f` reached the leader's log end offset as of this fetch; otherwise, if `f` reached
//!   the leader's log end offset as of the follower's *previous* fetch, it becomes the
//!   previous fetch's time; otherwise it stays. It never goes back. The second case is what
//!   lets a follower stay in sync under a steady stream of small produces, where every fetch
//!   is a little behind the leader's end but each one catches up with what the leader had
//!   one fetch earlier.
//! - **Caught up.** A follower is caught up at `now_ms` if its log end offset equals the
//!   leader's, or `now_ms - last_caught_up_ms <= replica_lag_time_max_ms`.
//! - **Shrink.** ISR members (never the leader) that are not caught up are proposed out.
//! - **Expand.** A follower outside the ISR is proposed in when its log end offset is at
//!   least the high watermark *and* at least the offset at which this leader epoch began:
//!   a replica that has not fetched anything of the current epoch could otherwise join, be
//!   elected, and lose committed data between the old high watermark and the epoch start.
//!   Fenced or shutting-down brokers (the shell tells us, KIP-841) are not proposed.
//! - **Controller confirmation (KIP-497, AlterPartition).** A proposal is sent and stays
//!   pending until the controller's answer or a metadata update arrives; one at a time.
//!   While it is pending the leader uses the *maximal ISR* = committed ISR ∪ proposed ISR:
//!   a proposed addition counts at once (waiting for one more replica is always safe), a
//!   proposed removal does not count until committed (advancing the high watermark past a
//!   replica the controller may keep in the ISR would be unsafe).
//! - **High watermark.** Only moves forward. It is recomputed on every accepted fetch,
//!   leader append and ISR commit: the minimum log end offset over the leader, every member
//!   of the maximal ISR, and every follower outside it that is caught up and eligible (Kafka
//!   waits for such a follower so that it can reach the high watermark and join; this only
//!   ever lowers the candidate). A member whose position is not yet known in this epoch
//!   holds it where it is. And (KIP-966) it does not advance at all while the committed ISR
//!   is smaller than the effective `min.insync.replicas` = min(configured, replicas).
//! - **acks=all.** Before appending: `NOT_ENOUGH_REPLICAS` if the committed ISR is smaller
//!   than the effective `min.insync.replicas`. After appending: the produce completes when
//!   the high watermark passes its last offset; if the maximal ISR is then below the
//!   effective `min.insync.replicas`, it completes with `NOT_ENOUGH_REPLICAS_AFTER_APPEND`
//!   (the records are written but fewer replicas than required hold them).
//!
//! **Architecture invariant:** the high watermark never moves backwards within a leader
//! epoch, never exceeds the leader's log end offset, and at the moment it advances every
//! member of the maximal ISR is known to hold every offset below it. These are asserted.
//! This module does not know the network, the controller or the log; it does not decide
//! leadership (the controller does) and it does not run the follower's fetcher.

use crate::probe;
use crate::replica::epoch_cache::{
    AssignOutcome, EpochCacheError, EpochEndOffset, LeaderEpochCache,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub use crate::kafka_rules::{
    error_code, MIN_INSYNC_REPLICAS_DEFAULT, REPLICA_LAG_TIME_MAX_MS_DEFAULT,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaConfig {
    /// `replica.lag.time.max.ms`; must be positive.
    pub replica_lag_time_max_ms: i64,
    /// The topic's `min.insync.replicas`; must be at least 1.
    pub min_insync_replicas: i32,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            replica_lag_time_max_ms: REPLICA_LAG_TIME_MAX_MS_DEFAULT,
            min_insync_replicas: MIN_INSYNC_REPLICAS_DEFAULT,
        }
    }
}

/// The controller's decision for the partition, as this broker learned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderAndIsr {
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// The assignment, leader included.
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// The leader's log offsets at the moment of a call (before any read it serves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderLog {
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// The partition-level fields of a follower's Fetch request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowerFetch {
    pub replica_id: i32,
    pub fetch_offset: i64,
    /// `current_leader_epoch` (KIP-320); None for -1 (not sent).
    pub current_leader_epoch: Option<i32>,
    /// `last_fetched_epoch` (Fetch v12+): the follower's latest epoch; None for -1.
    pub last_fetched_epoch: Option<i32>,
}

/// What to answer a follower's fetch with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchDecision {
    /// Serve records from the fetch offset. The follower's position was recorded;
    /// `high_watermark` is the value after that, to send in the response. Kafka sends the
    /// value from before the update, one round older; a fresher one is never less safe,
    /// because the follower caps its own high watermark at its log end offset either way.
    Read {
        high_watermark: i64,
        high_watermark_advanced: bool,
    },
    /// The follower's log diverges from ours: answer with this epoch and end offset and no
    /// records. Nothing was recorded.
    Diverging(EpochEndOffset),
    /// An error response for this partition. Nothing was recorded.
    Refused(FetchRefusal),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchRefusal {
    #[error("leader epoch {requested} in the request is older than the current {current}")]
    FencedLeaderEpoch { requested: i32, current: i32 },
    #[error("leader epoch {requested} in the request is newer than the current {current}")]
    UnknownLeaderEpoch { requested: i32, current: i32 },
    #[error(
        "replica {replica_id} is not a follower of this partition in leader epoch {leader_epoch}"
    )]
    UnknownReplica {
        replica_id: i32,
        leader_epoch: i32,
        /// Whether the request named a leader epoch; decides the error code.
        epoch_in_request: bool,
    },
    #[error(
        "fetch offset {fetch_offset} is outside the log {log_start_offset}..={log_end_offset}"
    )]
    OffsetOutOfRange {
        fetch_offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error("the leader cannot place last fetched epoch {last_fetched_epoch} in its history")]
    UnknownLastFetchedEpoch { last_fetched_epoch: i32 },
}

impl FetchRefusal {
    pub fn error_code(&self) -> i16 {
        match self {
            FetchRefusal::FencedLeaderEpoch { .. } => error_code::FENCED_LEADER_EPOCH,
            FetchRefusal::UnknownLeaderEpoch { .. } => error_code::UNKNOWN_LEADER_EPOCH,
            FetchRefusal::UnknownReplica {
                epoch_in_request: true,
                ..
            } => error_code::UNKNOWN_LEADER_EPOCH,
            FetchRefusal::UnknownReplica {
                epoch_in_request: false,
                ..
            } => error_code::NOT_LEADER_OR_FOLLOWER,
            FetchRefusal::OffsetOutOfRange { .. }
            | FetchRefusal::UnknownLastFetchedEpoch { .. } => error_code::OFFSET_OUT_OF_RANGE,
        }
    }
}

/// `NOT_ENOUGH_REPLICAS`: an `acks=all` produce refused before anything was appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the ISR has {isr_size} replicas, fewer than min.insync.replicas {min_insync_replicas}")]
pub struct NotEnoughReplicas {
    pub isr_size: usize,
    pub min_insync_replicas: usize,
}

impl NotEnoughReplicas {
    pub fn error_code(&self) -> i16 {
        error_code::NOT_ENOUGH_REPLICAS
    }
}

/// Where an appended `acks=all` produce stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckStatus {
    /// The high watermark has not passed the produce's last offset yet.
    Waiting,
    /// Every member of the maximal ISR holds the records; answer success.
    Acked,
    /// The records are below the high watermark but the maximal ISR shrank below
    /// `min.insync.replicas` meanwhile: answer `NOT_ENOUGH_REPLICAS_AFTER_APPEND`.
    NotEnoughReplicasAfterAppend {
        isr_size: usize,
        min_insync_replicas: usize,
    },
}

impl AckStatus {
    /// The response error code once complete; None while waiting.
    pub fn error_code(&self) -> Option<i16> {
        match self {
            AckStatus::Waiting => None,
            AckStatus::Acked => Some(0),
            AckStatus::NotEnoughReplicasAfterAppend { .. } => {
                Some(error_code::NOT_ENOUGH_REPLICAS_AFTER_APPEND)
            }
        }
    }
}

/// An AlterPartition request for the controller: the leader's proposed ISR, based on the
/// partition epoch it last saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartition {
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// What [`PartitionReplica::on_isr_committed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IsrUpdate {
    Applied {
        high_watermark_advanced: bool,
    },
    /// Older than what this leader already has; ignored (Kafka does the same).
    IgnoredStale {
        received: i32,
        current: i32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    #[error("invalid replica config: {0}")]
    InvalidConfig(String),
    #[error("invalid partition state: {0}")]
    InvalidState(String),
    #[error("invalid ISR {isr:?}: {reason}")]
    InvalidIsr { isr: Vec<i32>, reason: String },
    #[error("leader epoch {leader_epoch} is older than epoch {cached_epoch} already in the log")]
    StaleLeaderEpoch {
        leader_epoch: i32,
        cached_epoch: i32,
    },
    #[error("an ISR change to {pending:?} is still waiting for the controller")]
    IsrChangeInFlight { pending: Vec<i32> },
    #[error("the proposed ISR is the current one")]
    IsrUnchanged,
    #[error("leader epoch cache: {0}")]
    EpochCache(#[from] EpochCacheError),
}

/// What the leader knows about one follower in this leader epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowerState {
    /// The fetch offset of its last accepted fetch; None before its first in this epoch.
    pub log_end_offset: Option<i64>,
    pub last_fetch_ms: Option<i64>,
    /// The leader's log end offset when that fetch arrived.
    pub last_fetch_leader_log_end_offset: Option<i64>,
    /// Kafka's `lastCaughtUpTimeMs`; None for "never" (Kafka's 0).
    pub last_caught_up_ms: Option<i64>,
    /// False while the broker is fenced or shutting down (KIP-841).
    pub isr_eligible: bool,
}

/// Leader-side replica state of one partition for one leader epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionReplica {
    config: ReplicaConfig,
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    /// The assignment in the controller's order, leader included.
    replicas: Vec<i32>,
    /// The committed ISR; always contains the leader.
    isr: BTreeSet<i32>,
    /// The ISR sent to the controller and not yet confirmed or refused.
    pending_isr: Option<BTreeSet<i32>>,
    /// Every replica but the leader.
    followers: BTreeMap<i32, FollowerState>,
    leader_log_end_offset: i64,
    /// The leader's log end offset when this epoch began.
    leader_epoch_start_offset: i64,
    high_watermark: i64,
}

impl PartitionReplica {
    /// Become the leader of `state.leader_epoch`, with the log at `log` and the high
    /// watermark it had. Records the new epoch at the log end offset in the epoch cache
    /// before anything is written in it (KIP-279); persist the cache if the returned outcome
    /// says it changed. Followers start unknown: ISR members count as caught up now, others
    /// as never, so the high watermark waits for every ISR member's first fetch.
    pub fn become_leader(
        config: ReplicaConfig,
        state: &LeaderAndIsr,
        log: LeaderLog,
        high_watermark: i64,
        epochs: &mut LeaderEpochCache,
        now_ms: i64,
    ) -> Result<(PartitionReplica, AssignOutcome), ReplicaError> {
        if config.replica_lag_time_max_ms <= 0 {
            return Err(ReplicaError::InvalidConfig(format!(
                "replica.lag.time.max.ms must be positive, got {}",
                config.replica_lag_time_max_ms
            )));
        }
        if config.min_insync_replicas < 1 {
            return Err(ReplicaError::InvalidConfig(format!(
                "min.insync.replicas must be at least 1, got {}",
                config.min_insync_replicas
            )));
        }
        if state.leader_epoch < 0 || state.partition_epoch < 0 {
            return Err(ReplicaError::InvalidState(format!(
                "negative epoch: leader epoch {}, partition epoch {}",
                state.leader_epoch, state.partition_epoch
            )));
        }
        let assigned: BTreeSet<i32> = state.replicas.iter().copied().collect();
        if assigned.len() != state.replicas.len() {
            return Err(ReplicaError::InvalidState(format!(
                "replicas {:?} repeat an id",
                state.replicas
            )));
        }
        if !assigned.contains(&state.leader) {
            return Err(ReplicaError::InvalidState(format!(
                "leader {} is not among replicas {:?}",
                state.leader, state.replicas
            )));
        }
        let isr = validate_isr(&state.isr, state.leader, &assigned)?;
        if log.log_start_offset < 0 || log.log_end_offset < log.log_start_offset {
            return Err(ReplicaError::InvalidState(format!(
                "log offsets {}..{} are not a range",
                log.log_start_offset, log.log_end_offset
            )));
        }
        if high_watermark < 0 || high_watermark > log.log_end_offset {
            return Err(ReplicaError::InvalidState(format!(
                "high watermark {high_watermark} is outside 0..={}",
                log.log_end_offset
            )));
        }
        if let Some(latest) = epochs.latest_entry() {
            if latest.epoch > state.leader_epoch {
                return Err(ReplicaError::StaleLeaderEpoch {
                    leader_epoch: state.leader_epoch,
                    cached_epoch: latest.epoch,
                });
            }
            if latest.start_offset > log.log_end_offset {
                return Err(ReplicaError::InvalidState(format!(
                    "epoch cache entry {latest} starts after the log end offset {}",
                    log.log_end_offset
                )));
            }
        }
        let assigned_epoch = epochs.assign(state.leader_epoch, log.log_end_offset)?;
        assert_eq!(epochs.latest_epoch(), Some(state.leader_epoch));

        let followers = state
            .replicas
            .iter()
            .filter(|&&id| id != state.leader)
            .map(|&id| {
                let follower = FollowerState {
                    log_end_offset: None,
                    last_fetch_ms: None,
                    last_fetch_leader_log_end_offset: None,
                    last_caught_up_ms: isr.contains(&id).then_some(now_ms),
                    isr_eligible: true,
                };
                (id, follower)
            })
            .collect();
        let mut replica = PartitionReplica {
            config,
            leader: state.leader,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            replicas: state.replicas.clone(),
            isr,
            pending_isr: None,
            followers,
            leader_log_end_offset: log.log_end_offset,
            leader_epoch_start_offset: log.log_end_offset,
            high_watermark,
        };
        // The ISR may be the leader alone.
        replica.maybe_increment_high_watermark(now_ms);
        replica.assert_invariants();
        Ok((replica, assigned_epoch))
    }

    /// The leader appended to its log; its log end offset is now `log_end_offset`.
    /// Returns whether the high watermark advanced (complete waiting produces and fetches).
    pub fn on_leader_append(&mut self, log_end_offset: i64, now_ms: i64) -> bool {
        self.observe_leader_log_end_offset(log_end_offset);
        let advanced = self.maybe_increment_high_watermark(now_ms);
        self.assert_invariants();
        advanced
    }

    /// A follower's fetch for this partition, checked in Kafka's order: leader epoch,
    /// replica, last fetched epoch against our history, offset range; then the follower's
    /// position is recorded and the high watermark recomputed. `epochs` is this leader's
    /// cache. After a `Read`, call [`maybe_expand_isr`](Self::maybe_expand_isr) for the
    /// follower.
    pub fn on_follower_fetch(
        &mut self,
        fetch: &FollowerFetch,
        log: LeaderLog,
        epochs: &LeaderEpochCache,
        now_ms: i64,
    ) -> FetchDecision {
        assert!(
            log.log_end_offset >= self.leader_log_end_offset,
            "leader log end offset went back from {} to {} while leading",
            self.leader_log_end_offset,
            log.log_end_offset
        );
        assert_eq!(
            epochs.latest_epoch(),
            Some(self.leader_epoch),
            "the leader's epoch cache must end with its own epoch"
        );
        if let Some(requested) = fetch.current_leader_epoch {
            if requested != self.leader_epoch {
                crate::probe!(probe::FOLLOWER_FETCH_FENCED);
            }
            if requested < self.leader_epoch {
                return FetchDecision::Refused(FetchRefusal::FencedLeaderEpoch {
                    requested,
                    current: self.leader_epoch,
                });
            }
            if requested > self.leader_epoch {
                return FetchDecision::Refused(FetchRefusal::UnknownLeaderEpoch {
                    requested,
                    current: self.leader_epoch,
                });
            }
        }
        if !self.followers.contains_key(&fetch.replica_id) {
            return FetchDecision::Refused(FetchRefusal::UnknownReplica {
                replica_id: fetch.replica_id,
                leader_epoch: self.leader_epoch,
                epoch_in_request: fetch.current_leader_epoch.is_some(),
            });
        }
        let out_of_range = FetchRefusal::OffsetOutOfRange {
            fetch_offset: fetch.fetch_offset,
            log_start_offset: log.log_start_offset,
            log_end_offset: log.log_end_offset,
        };
        if let Some(last_fetched_epoch) = fetch.last_fetched_epoch {
            let Some(ours) = epochs.end_offset_for(last_fetched_epoch, log.log_end_offset) else {
                return FetchDecision::Refused(FetchRefusal::UnknownLastFetchedEpoch {
                    last_fetched_epoch,
                });
            };
            // Below the log start is out of range whether or not the epochs diverge.
            if fetch.fetch_offset < log.log_start_offset {
                return FetchDecision::Refused(out_of_range);
            }
            if ours.epoch < last_fetched_epoch || ours.end_offset < fetch.fetch_offset {
                crate::probe!(probe::FOLLOWER_DIVERGING);
                return FetchDecision::Diverging(ours);
            }
        }
        if fetch.fetch_offset < log.log_start_offset || fetch.fetch_offset > log.log_end_offset {
            return FetchDecision::Refused(out_of_range);
        }

        self.observe_leader_log_end_offset(log.log_end_offset);
        let follower = self
            .followers
            .get_mut(&fetch.replica_id)
            .expect("checked above");
        let caught_up_at = if fetch.fetch_offset >= log.log_end_offset {
            Some(now_ms)
        } else {
            match (
                follower.last_fetch_leader_log_end_offset,
                follower.last_fetch_ms,
            ) {
                (Some(previous_end), Some(previous_ms)) if fetch.fetch_offset >= previous_end => {
                    Some(previous_ms)
                }
                _ => None,
            }
        };
        if let Some(at) = caught_up_at {
            follower.last_caught_up_ms = Some(follower.last_caught_up_ms.map_or(at, |t| t.max(at)));
        }
        follower.log_end_offset = Some(fetch.fetch_offset);
        follower.last_fetch_leader_log_end_offset = Some(log.log_end_offset);
        follower.last_fetch_ms = Some(now_ms);

        let advanced = self.maybe_increment_high_watermark(now_ms);
        self.assert_invariants();
        FetchDecision::Read {
            high_watermark: self.high_watermark,
            high_watermark_advanced: advanced,
        }
    }

    /// The ISR without its members that are not caught up at `now_ms`, if any are; None
    /// when all are or a change is pending. Call it on a timer (Kafka: every half
    /// `replica.lag.time.max.ms`) and pass the result to [`propose_isr`](Self::propose_isr).
    pub fn maybe_shrink_isr(&self, now_ms: i64) -> Option<Vec<i32>> {
        if self.pending_isr.is_some() {
            return None;
        }
        let out_of_sync: BTreeSet<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|id| *id != self.leader && !self.is_caught_up(&self.followers[id], now_ms))
            .collect();
        if out_of_sync.is_empty() {
            return None;
        }
        let shrunk: Vec<i32> = self.isr.difference(&out_of_sync).copied().collect();
        assert!(shrunk.contains(&self.leader));
        Some(shrunk)
    }

    /// The ISR with `follower` added, if it qualifies: not in the ISR, eligible, its log end
    /// offset at least the high watermark and at least this epoch's start offset, and no
    /// change pending. Pass the result to [`propose_isr`](Self::propose_isr).
    pub fn maybe_expand_isr(&self, follower: i32) -> Option<Vec<i32>> {
        if self.pending_isr.is_some() || self.isr.contains(&follower) {
            return None;
        }
        let state = self.followers.get(&follower)?;
        let log_end_offset = state.log_end_offset?;
        let in_sync = state.isr_eligible
            && log_end_offset >= self.high_watermark
            && log_end_offset >= self.leader_epoch_start_offset;
        in_sync.then(|| {
            let mut expanded = self.isr.clone();
            expanded.insert(follower);
            expanded.into_iter().collect()
        })
    }

    /// Send `new_isr` to the controller: it becomes the pending change (and part of the
    /// maximal ISR) until [`on_isr_committed`](Self::on_isr_committed) or
    /// [`on_alter_partition_rejected`](Self::on_alter_partition_rejected).
    pub fn propose_isr(&mut self, new_isr: &[i32]) -> Result<AlterPartition, ReplicaError> {
        if let Some(pending) = &self.pending_isr {
            return Err(ReplicaError::IsrChangeInFlight {
                pending: pending.iter().copied().collect(),
            });
        }
        let proposed = validate_isr(new_isr, self.leader, &self.assigned())?;
        if proposed == self.isr {
            return Err(ReplicaError::IsrUnchanged);
        }
        if proposed.len() < self.isr.len() {
            crate::probe!(probe::ISR_SHRINK);
        } else {
            crate::probe!(probe::ISR_EXPAND);
        }
        // A replica joins the ISR only holding everything committed and this epoch's start
        // (checked again here, apart from the rule that chose it: an ISR member elected
        // without committed records loses them).
        for joining in proposed.difference(&self.isr) {
            let log_end_offset = self.followers.get(joining).and_then(|f| f.log_end_offset);
            assert!(
                log_end_offset.is_some_and(
                    |end| end >= self.high_watermark && end >= self.leader_epoch_start_offset
                ),
                "replica {joining} proposed for the ISR at log end {log_end_offset:?}, below the \
                 high watermark {} or the epoch start {}",
                self.high_watermark,
                self.leader_epoch_start_offset
            );
        }
        let request = AlterPartition {
            leader: self.leader,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            new_isr: proposed.iter().copied().collect(),
        };
        self.pending_isr = Some(proposed);
        self.assert_invariants();
        Ok(request)
    }

    /// The controller committed `isr` at `partition_epoch` for this leader epoch: from the
    /// AlterPartition response, or from the metadata log (including changes the controller
    /// made on its own, such as removing a fenced broker). Anything at or above our
    /// partition epoch replaces the committed ISR and clears the pending change (equal means
    /// the controller had nothing to change); anything older is ignored, as in Kafka. A
    /// different leader epoch is not an ISR update: build a new `PartitionReplica`.
    pub fn on_isr_committed(
        &mut self,
        isr: &[i32],
        partition_epoch: i32,
        now_ms: i64,
    ) -> Result<IsrUpdate, ReplicaError> {
        let committed = validate_isr(isr, self.leader, &self.assigned())?;
        if partition_epoch < self.partition_epoch {
            return Ok(IsrUpdate::IgnoredStale {
                received: partition_epoch,
                current: self.partition_epoch,
            });
        }
        if committed != self.isr {
            crate::probe!(probe::ISR_CHANGE_COMMITTED);
        }
        self.isr = committed;
        self.partition_epoch = partition_epoch;
        self.pending_isr = None;
        let advanced = self.maybe_increment_high_watermark(now_ms);
        self.assert_invariants();
        Ok(IsrUpdate::Applied {
            high_watermark_advanced: advanced,
        })
    }

    /// The controller refused `request` and says it was not applied (Kafka:
    /// `OPERATION_NOT_ATTEMPTED`, `INELIGIBLE_REPLICA`): drop the pending change if it is
    /// still this one. Returns whether it was dropped. For other errors Kafka keeps the
    /// change pending until metadata arrives (`INVALID_UPDATE_VERSION`,
    /// `FENCED_LEADER_EPOCH`, ...) or resends it (unexpected errors); the shell does that.
    pub fn on_alter_partition_rejected(&mut self, request: &AlterPartition) -> bool {
        let matches = request.leader_epoch == self.leader_epoch
            && request.partition_epoch == self.partition_epoch
            && self
                .pending_isr
                .as_ref()
                .is_some_and(|p| p.iter().copied().eq(request.new_isr.iter().copied()));
        if matches {
            self.pending_isr = None;
        }
        self.assert_invariants();
        matches
    }

    /// Mark a follower's broker as (in)eligible to join the ISR: fenced or in controlled
    /// shutdown means not eligible (KIP-841). Returns false for an unknown follower.
    pub fn set_isr_eligible(&mut self, follower: i32, eligible: bool) -> bool {
        match self.followers.get_mut(&follower) {
            Some(state) => {
                state.isr_eligible = eligible;
                true
            }
            None => false,
        }
    }

    /// Before appending a produce with `acks`: `acks=all` (-1) needs a committed ISR of at
    /// least the effective `min.insync.replicas`. Other values are not checked here.
    pub fn can_append(&self, acks: i16) -> Result<(), NotEnoughReplicas> {
        let min_insync_replicas = self.effective_min_insync_replicas();
        if acks == -1 && self.isr.len() < min_insync_replicas {
            crate::probe!(probe::NOT_ENOUGH_REPLICAS);
            return Err(NotEnoughReplicas {
                isr_size: self.isr.len(),
                min_insync_replicas,
            });
        }
        Ok(())
    }

    /// Where an `acks=all` produce whose last record is at `last_offset` stands. Check it
    /// whenever the high watermark advances or the ISR changes.
    pub fn ack_status(&self, last_offset: i64) -> AckStatus {
        if self.high_watermark <= last_offset {
            return AckStatus::Waiting;
        }
        let min_insync_replicas = self.effective_min_insync_replicas();
        let isr_size = self.maximal_isr_set().len();
        if isr_size < min_insync_replicas {
            crate::probe!(probe::NOT_ENOUGH_REPLICAS_AFTER_APPEND);
            AckStatus::NotEnoughReplicasAfterAppend {
                isr_size,
                min_insync_replicas,
            }
        } else {
            AckStatus::Acked
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn leader(&self) -> i32 {
        self.leader
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }

    pub fn replicas(&self) -> &[i32] {
        &self.replicas
    }

    pub fn config(&self) -> ReplicaConfig {
        self.config
    }

    /// The committed ISR, ascending.
    pub fn isr(&self) -> Vec<i32> {
        self.isr.iter().copied().collect()
    }

    /// The ISR change waiting for the controller, ascending.
    pub fn pending_isr(&self) -> Option<Vec<i32>> {
        self.pending_isr
            .as_ref()
            .map(|p| p.iter().copied().collect())
    }

    /// Committed ∪ pending, ascending: what the high watermark and acks wait for.
    pub fn maximal_isr(&self) -> Vec<i32> {
        self.maximal_isr_set().into_iter().collect()
    }

    pub fn leader_log_end_offset(&self) -> i64 {
        self.leader_log_end_offset
    }

    pub fn leader_epoch_start_offset(&self) -> i64 {
        self.leader_epoch_start_offset
    }

    pub fn follower(&self, id: i32) -> Option<&FollowerState> {
        self.followers.get(&id)
    }

    /// min(`min.insync.replicas`, number of replicas), as Kafka: a topic whose setting
    /// exceeds its replication factor is not refused forever.
    pub fn effective_min_insync_replicas(&self) -> usize {
        (self.config.min_insync_replicas as usize).min(self.replicas.len())
    }

    // ---- details ----

    fn assigned(&self) -> BTreeSet<i32> {
        self.replicas.iter().copied().collect()
    }

    fn maximal_isr_set(&self) -> BTreeSet<i32> {
        match &self.pending_isr {
            Some(pending) => self.isr.union(pending).copied().collect(),
            None => self.isr.clone(),
        }
    }

    fn is_caught_up(&self, follower: &FollowerState, now_ms: i64) -> bool {
        follower.log_end_offset == Some(self.leader_log_end_offset)
            || follower
                .last_caught_up_ms
                .is_some_and(|t| now_ms.saturating_sub(t) <= self.config.replica_lag_time_max_ms)
    }

    fn observe_leader_log_end_offset(&mut self, log_end_offset: i64) {
        assert!(
            log_end_offset >= self.leader_log_end_offset,
            "leader log end offset went back from {} to {log_end_offset} while leading",
            self.leader_log_end_offset
        );
        self.leader_log_end_offset = log_end_offset;
    }

    /// Kafka's `maybeIncrementLeaderHW`, see the module documentation.
    fn maybe_increment_high_watermark(&mut self, now_ms: i64) -> bool {
        if self.isr.len() < self.effective_min_insync_replicas() {
            return false;
        }
        let maximal = self.maximal_isr_set();
        let mut candidate = self.leader_log_end_offset;
        for (id, follower) in &self.followers {
            let counts = maximal.contains(id)
                || (follower.isr_eligible && self.is_caught_up(follower, now_ms));
            if !counts {
                continue;
            }
            match follower.log_end_offset {
                Some(offset) => candidate = candidate.min(offset),
                // Position unknown in this epoch: nothing can be claimed beyond where we are.
                None => return false,
            }
        }
        if candidate <= self.high_watermark {
            return false;
        }
        assert!(candidate <= self.leader_log_end_offset);
        for id in maximal.iter().filter(|id| **id != self.leader) {
            let held = self.followers[id].log_end_offset;
            assert!(
                held.is_some_and(|offset| offset >= candidate),
                "high watermark {candidate} would pass ISR member {id} at {held:?}"
            );
        }
        self.high_watermark = candidate;
        true
    }

    fn assert_invariants(&self) {
        assert!(self.isr.contains(&self.leader), "leader not in its ISR");
        let assigned = self.assigned();
        assert!(self.isr.is_subset(&assigned), "ISR outside the assignment");
        if let Some(pending) = &self.pending_isr {
            assert!(pending.contains(&self.leader) && pending.is_subset(&assigned));
        }
        assert_eq!(self.followers.len() + 1, self.replicas.len());
        assert!(self.high_watermark >= 0);
        assert!(
            self.high_watermark <= self.leader_log_end_offset,
            "high watermark {} beyond the leader's log end offset {}",
            self.high_watermark,
            self.leader_log_end_offset
        );
        assert!(self.leader_epoch_start_offset <= self.leader_log_end_offset);
        for (id, follower) in &self.followers {
            assert!(
                follower
                    .log_end_offset
                    .is_none_or(|offset| offset <= self.leader_log_end_offset),
                "follower {id} is ahead of the leader"
            );
        }
    }
}

/// A valid ISR: no repeats, within the assignment, containing the leader.
fn validate_isr(
    isr: &[i32],
    leader: i32,
    assigned: &BTreeSet<i32>,
) -> Result<BTreeSet<i32>, ReplicaError> {
    let invalid = |reason: String| ReplicaError::InvalidIsr {
        isr: isr.to_vec(),
        reason,
    };
    let set: BTreeSet<i32> = isr.iter().copied().collect();
    if set.len() != isr.len() {
        return Err(invalid("repeats a replica".into()));
    }
    if !set.contains(&leader) {
        return Err(invalid(format!("does not contain the leader {leader}")));
    }
    if let Some(stranger) = set.difference(assigned).next() {
        return Err(invalid(format!("{stranger} is not an assigned replica")));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::epoch_cache::EpochEntry;
    use proptest::prelude::*;

    /// The partition every script starts from, overridable with `key=value` words:
    /// `leader replicas isr epoch pe log_start leo hw min_isr lag epochs at`.
    struct Setup {
        leader: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        leader_epoch: i32,
        partition_epoch: i32,
        log_start: i64,
        leo: i64,
        hw: i64,
        min_isr: i32,
        lag: i64,
        epochs: Vec<EpochEntry>,
        at: i64,
    }

    fn ids(text: &str) -> Vec<i32> {
        text.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("replica id"))
            .collect()
    }

    fn setup(overrides: &str) -> Setup {
        let mut s = Setup {
            leader: 1,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            leader_epoch: 5,
            partition_epoch: 10,
            log_start: 0,
            leo: 100,
            hw: 90,
            min_isr: 2,
            lag: 1000,
            epochs: vec![
                EpochEntry {
                    epoch: 0,
                    start_offset: 0,
                },
                EpochEntry {
                    epoch: 3,
                    start_offset: 50,
                },
            ],
            at: 0,
        };
        for word in overrides.split_whitespace() {
            let (key, value) = word.split_once('=').expect("key=value");
            let n = || value.parse::<i64>().expect("number");
            match key {
                "leader" => s.leader = n() as i32,
                "replicas" => s.replicas = ids(value),
                "isr" => s.isr = ids(value),
                "epoch" => s.leader_epoch = n() as i32,
                "pe" => s.partition_epoch = n() as i32,
                "log_start" => s.log_start = n(),
                "leo" => s.leo = n(),
                "hw" => s.hw = n(),
                "min_isr" => s.min_isr = n() as i32,
                "lag" => s.lag = n(),
                "epochs" => {
                    s.epochs = value
                        .split(',')
                        .filter(|e| !e.is_empty())
                        .map(|e| {
                            let (epoch, start) = e.split_once('@').expect("epoch@offset");
                            EpochEntry {
                                epoch: epoch.parse().unwrap(),
                                start_offset: start.parse().unwrap(),
                            }
                        })
                        .collect()
                }
                "at" => s.at = n(),
                other => panic!("unknown setup key {other}"),
            }
        }
        s
    }

    fn code_name(code: i16) -> &'static str {
        match code {
            error_code::OFFSET_OUT_OF_RANGE => "OFFSET_OUT_OF_RANGE",
            error_code::NOT_LEADER_OR_FOLLOWER => "NOT_LEADER_OR_FOLLOWER",
            error_code::NOT_ENOUGH_REPLICAS => "NOT_ENOUGH_REPLICAS",
            error_code::NOT_ENOUGH_REPLICAS_AFTER_APPEND => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
            error_code::FENCED_LEADER_EPOCH => "FENCED_LEADER_EPOCH",
            error_code::UNKNOWN_LEADER_EPOCH => "UNKNOWN_LEADER_EPOCH",
            _ => "?",
        }
    }

    /// Build the leader from `overrides`, run `steps` (one per line: `<now_ms> <op> args`)
    /// and compare the transcript (each step followed by ` -> result`) with `expected`.
    /// Ops: `append LEO`; `fetch R OFFSET [epoch=E|none] [last=E]`; `shrink`; `expand R`;
    /// `propose IDS`; `commit IDS PARTITION_EPOCH`; `reject` (the last proposal);
    /// `eligible R true|false`; `can_append ACKS`; `ack LAST_OFFSET`; `state`;
    /// `follower R`.
    fn check(overrides: &str, steps: &str, expected: &str) {
        let s = setup(overrides);
        let mut epochs = LeaderEpochCache::from_entries(s.epochs.clone()).unwrap();
        let config = ReplicaConfig {
            replica_lag_time_max_ms: s.lag,
            min_insync_replicas: s.min_isr,
        };
        let state = LeaderAndIsr {
            leader: s.leader,
            leader_epoch: s.leader_epoch,
            partition_epoch: s.partition_epoch,
            replicas: s.replicas.clone(),
            isr: s.isr.clone(),
        };
        let mut log = LeaderLog {
            log_start_offset: s.log_start,
            log_end_offset: s.leo,
        };
        let (mut replica, _) =
            PartitionReplica::become_leader(config, &state, log, s.hw, &mut epochs, s.at)
                .expect("valid setup");
        let mut last_request: Option<AlterPartition> = None;
        let mut transcript = String::new();
        for line in steps.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let now: i64 = words[0].parse().expect("time first");
            let n = |i: usize| -> i64 { words[i].parse().expect("number") };
            let high_watermark_before = replica.high_watermark();
            let result = match words[1] {
                "append" => {
                    log.log_end_offset = n(2);
                    let advanced = replica.on_leader_append(n(2), now);
                    format!(
                        "hw {}{}",
                        replica.high_watermark(),
                        if advanced { " advanced" } else { "" }
                    )
                }
                "fetch" => {
                    let mut fetch = FollowerFetch {
                        replica_id: n(2) as i32,
                        fetch_offset: n(3),
                        current_leader_epoch: Some(replica.leader_epoch()),
                        last_fetched_epoch: None,
                    };
                    for word in &words[4..] {
                        match word.split_once('=') {
                            Some(("epoch", "none")) => fetch.current_leader_epoch = None,
                            Some(("epoch", e)) => fetch.current_leader_epoch = e.parse().ok(),
                            Some(("last", e)) => fetch.last_fetched_epoch = e.parse().ok(),
                            _ => panic!("bad fetch argument {word}"),
                        }
                    }
                    match replica.on_follower_fetch(&fetch, log, &epochs, now) {
                        FetchDecision::Read {
                            high_watermark,
                            high_watermark_advanced,
                        } => format!(
                            "read hw {high_watermark}{}",
                            if high_watermark_advanced {
                                " advanced"
                            } else {
                                ""
                            }
                        ),
                        FetchDecision::Diverging(d) => {
                            format!("diverging {}@{}", d.epoch, d.end_offset)
                        }
                        FetchDecision::Refused(r) => {
                            format!("refused {}", code_name(r.error_code()))
                        }
                    }
                }
                "shrink" => format!("{:?}", replica.maybe_shrink_isr(now)),
                "expand" => format!("{:?}", replica.maybe_expand_isr(n(2) as i32)),
                "propose" => match replica.propose_isr(&ids(words[2])) {
                    Ok(request) => {
                        let text = format!(
                            "sent {:?} at partition epoch {}",
                            request.new_isr, request.partition_epoch
                        );
                        last_request = Some(request);
                        text
                    }
                    Err(e) => format!("error: {e}"),
                },
                "commit" => match replica.on_isr_committed(&ids(words[2]), n(3) as i32, now) {
                    Ok(IsrUpdate::Applied {
                        high_watermark_advanced,
                    }) => format!(
                        "applied{}",
                        if high_watermark_advanced {
                            ", hw advanced"
                        } else {
                            ""
                        }
                    ),
                    Ok(IsrUpdate::IgnoredStale { .. }) => "ignored stale".to_string(),
                    Err(e) => format!("error: {e}"),
                },
                "reject" => {
                    let request = last_request.as_ref().expect("a proposal to reject");
                    if replica.on_alter_partition_rejected(request) {
                        "dropped".to_string()
                    } else {
                        "kept".to_string()
                    }
                }
                "eligible" => format!(
                    "{}",
                    replica.set_isr_eligible(n(2) as i32, words[3] == "true")
                ),
                "can_append" => match replica.can_append(n(2) as i16) {
                    Ok(()) => "ok".to_string(),
                    Err(e) => code_name(e.error_code()).to_string(),
                },
                "ack" => match replica.ack_status(n(2)) {
                    AckStatus::Waiting => "waiting".to_string(),
                    AckStatus::Acked => "acked".to_string(),
                    status @ AckStatus::NotEnoughReplicasAfterAppend { .. } => {
                        code_name(status.error_code().unwrap()).to_string()
                    }
                },
                "state" => format!(
                    "hw={} isr={:?} maximal={:?} pending={:?}",
                    replica.high_watermark(),
                    replica.isr(),
                    replica.maximal_isr(),
                    replica.pending_isr()
                ),
                "follower" => {
                    let f = replica.follower(n(2) as i32).expect("a follower");
                    format!(
                        "leo={:?} caught_up={:?} last_fetch={:?}",
                        f.log_end_offset, f.last_caught_up_ms, f.last_fetch_ms
                    )
                }
                other => panic!("unknown op {other}"),
            };
            assert!(replica.high_watermark() >= high_watermark_before);
            transcript.push_str(&format!("{line} -> {result}\n"));
        }
        let expected: String = expected
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(transcript, expected, "\ntranscript:\n{transcript}");
    }

    #[test]
    fn high_watermark_is_the_minimum_over_the_isr() {
        check(
            "",
            "
            0 state
            10 fetch 2 100
            20 fetch 3 95
            30 fetch 3 100
            40 append 110
            50 fetch 2 110
            60 fetch 3 105
            ",
            "
            0 state -> hw=90 isr=[1, 2, 3] maximal=[1, 2, 3] pending=None
            10 fetch 2 100 -> read hw 90
            20 fetch 3 95 -> read hw 95 advanced
            30 fetch 3 100 -> read hw 100 advanced
            40 append 110 -> hw 100
            50 fetch 2 110 -> read hw 100
            60 fetch 3 105 -> read hw 105 advanced
            ",
        );
    }

    #[test]
    fn high_watermark_never_moves_back_when_a_follower_truncates() {
        check(
            "",
            "
            0 fetch 2 100
            0 fetch 3 100
            10 fetch 3 80
            10 state
            20 append 120
            30 fetch 2 120
            40 fetch 3 110
            ",
            "
            0 fetch 2 100 -> read hw 90
            0 fetch 3 100 -> read hw 100 advanced
            10 fetch 3 80 -> read hw 100
            10 state -> hw=100 isr=[1, 2, 3] maximal=[1, 2, 3] pending=None
            20 append 120 -> hw 100
            30 fetch 2 120 -> read hw 100
            40 fetch 3 110 -> read hw 110 advanced
            ",
        );
    }

    #[test]
    fn a_single_replica_leader_commits_on_append() {
        check(
            "replicas=1 isr=1 min_isr=2",
            "
            0 state
            0 can_append -1
            0 append 105
            0 ack 104
            0 ack 105
            ",
            "
            0 state -> hw=100 isr=[1] maximal=[1] pending=None
            0 can_append -1 -> ok
            0 append 105 -> hw 105 advanced
            0 ack 104 -> acked
            0 ack 105 -> waiting
            ",
        );
    }

    #[test]
    fn fetches_are_fenced_by_leader_epoch_and_replica() {
        check(
            "log_start=20",
            "
            0 fetch 2 100 epoch=4
            0 fetch 2 100 epoch=6
            0 fetch 7 100 epoch=4
            0 fetch 7 100
            0 fetch 7 100 epoch=none
            0 fetch 1 100
            0 fetch 2 101
            0 fetch 2 10
            0 fetch 2 -1
            0 follower 2
            0 fetch 2 100 epoch=none
            0 follower 2
            ",
            "
            0 fetch 2 100 epoch=4 -> refused FENCED_LEADER_EPOCH
            0 fetch 2 100 epoch=6 -> refused UNKNOWN_LEADER_EPOCH
            0 fetch 7 100 epoch=4 -> refused FENCED_LEADER_EPOCH
            0 fetch 7 100 -> refused UNKNOWN_LEADER_EPOCH
            0 fetch 7 100 epoch=none -> refused NOT_LEADER_OR_FOLLOWER
            0 fetch 1 100 -> refused UNKNOWN_LEADER_EPOCH
            0 fetch 2 101 -> refused OFFSET_OUT_OF_RANGE
            0 fetch 2 10 -> refused OFFSET_OUT_OF_RANGE
            0 fetch 2 -1 -> refused OFFSET_OUT_OF_RANGE
            0 follower 2 -> leo=None caught_up=Some(0) last_fetch=None
            0 fetch 2 100 epoch=none -> read hw 90
            0 follower 2 -> leo=Some(100) caught_up=Some(0) last_fetch=Some(0)
            ",
        );
    }

    #[test]
    fn last_fetched_epoch_is_checked_against_the_leaders_history() {
        // The leader's cache is [0@0 3@50 5@100] (5@100 recorded on election).
        check(
            "log_start=20",
            "
            0 fetch 2 60 last=3
            0 fetch 2 100 last=5
            0 fetch 2 100 last=3
            0 fetch 2 101 last=5
            0 fetch 2 70 last=4
            0 fetch 2 55 last=1
            0 fetch 2 45 last=0
            0 fetch 2 60 last=0
            0 fetch 2 100 last=6
            0 fetch 2 10 last=0
            0 fetch 2 10 last=9
            0 follower 2
            ",
            "
            0 fetch 2 60 last=3 -> read hw 90
            0 fetch 2 100 last=5 -> read hw 90
            0 fetch 2 100 last=3 -> read hw 90
            0 fetch 2 101 last=5 -> diverging 5@100
            0 fetch 2 70 last=4 -> diverging 3@100
            0 fetch 2 55 last=1 -> diverging 0@50
            0 fetch 2 45 last=0 -> read hw 90
            0 fetch 2 60 last=0 -> diverging 0@50
            0 fetch 2 100 last=6 -> refused OFFSET_OUT_OF_RANGE
            0 fetch 2 10 last=0 -> refused OFFSET_OUT_OF_RANGE
            0 fetch 2 10 last=9 -> refused OFFSET_OUT_OF_RANGE
            0 follower 2 -> leo=Some(45) caught_up=Some(0) last_fetch=Some(0)
            ",
        );
    }

    #[test]
    fn last_caught_up_follows_the_previous_fetch_rule() {
        check(
            "",
            "
            0 fetch 2 100
            0 fetch 3 100
            100 append 110
            500 fetch 2 105
            500 follower 2
            600 append 120
            900 fetch 2 112
            900 follower 2
            1200 fetch 2 115
            1200 follower 2
            1400 shrink
            1600 shrink
            ",
            "
            0 fetch 2 100 -> read hw 90
            0 fetch 3 100 -> read hw 100 advanced
            100 append 110 -> hw 100
            500 fetch 2 105 -> read hw 100
            500 follower 2 -> leo=Some(105) caught_up=Some(0) last_fetch=Some(500)
            600 append 120 -> hw 100
            900 fetch 2 112 -> read hw 100
            900 follower 2 -> leo=Some(112) caught_up=Some(500) last_fetch=Some(900)
            1200 fetch 2 115 -> read hw 100
            1200 follower 2 -> leo=Some(115) caught_up=Some(500) last_fetch=Some(1200)
            1400 shrink -> Some([1, 2])
            1600 shrink -> Some([1])
            ",
        );
    }

    #[test]
    fn a_follower_at_the_leaders_end_never_lags() {
        check(
            "",
            "
            0 fetch 2 100
            0 fetch 3 100
            100000 shrink
            100000 append 101
            100000 shrink
            ",
            "
            0 fetch 2 100 -> read hw 90
            0 fetch 3 100 -> read hw 100 advanced
            100000 shrink -> None
            100000 append 101 -> hw 100
            100000 shrink -> Some([1])
            ",
        );
    }

    #[test]
    fn a_new_leader_waits_for_isr_members_it_has_not_heard_from() {
        check(
            "",
            "
            999 shrink
            1000 shrink
            1001 shrink
            ",
            "
            999 shrink -> None
            1000 shrink -> None
            1001 shrink -> Some([1])
            ",
        );
    }

    #[test]
    fn shrink_counts_only_once_committed() {
        check(
            "",
            "
            0 fetch 2 100
            0 fetch 3 100
            10 append 120
            500 fetch 2 120
            2000 shrink
            2000 propose 1,2
            2000 shrink
            2000 expand 3
            2000 propose 1,3
            2000 state
            2010 fetch 2 120
            2020 commit 1,2 11
            2020 state
            ",
            "
            0 fetch 2 100 -> read hw 90
            0 fetch 3 100 -> read hw 100 advanced
            10 append 120 -> hw 100
            500 fetch 2 120 -> read hw 100
            2000 shrink -> Some([1, 2])
            2000 propose 1,2 -> sent [1, 2] at partition epoch 10
            2000 shrink -> None
            2000 expand 3 -> None
            2000 propose 1,3 -> error: an ISR change to [1, 2] is still waiting for the controller
            2000 state -> hw=100 isr=[1, 2, 3] maximal=[1, 2, 3] pending=Some([1, 2])
            2010 fetch 2 120 -> read hw 100
            2020 commit 1,2 11 -> applied, hw advanced
            2020 state -> hw=120 isr=[1, 2] maximal=[1, 2] pending=None
            ",
        );
    }

    #[test]
    fn expansion_counts_at_once_and_needs_the_high_watermark() {
        check(
            "isr=1,2",
            "
            0 fetch 2 100
            0 fetch 3 90
            0 expand 3
            2100 fetch 3 95
            2100 expand 3
            2200 fetch 3 100
            2200 expand 3
            2200 propose 1,2,3
            2200 state
            2300 append 130
            2400 fetch 2 130
            2500 fetch 3 130
            2600 commit 1,2,3 11
            2600 state
            ",
            "
            0 fetch 2 100 -> read hw 100 advanced
            0 fetch 3 90 -> read hw 100
            0 expand 3 -> None
            2100 fetch 3 95 -> read hw 100
            2100 expand 3 -> None
            2200 fetch 3 100 -> read hw 100
            2200 expand 3 -> Some([1, 2, 3])
            2200 propose 1,2,3 -> sent [1, 2, 3] at partition epoch 10
            2200 state -> hw=100 isr=[1, 2] maximal=[1, 2, 3] pending=Some([1, 2, 3])
            2300 append 130 -> hw 100
            2400 fetch 2 130 -> read hw 100
            2500 fetch 3 130 -> read hw 130 advanced
            2600 commit 1,2,3 11 -> applied
            2600 state -> hw=130 isr=[1, 2, 3] maximal=[1, 2, 3] pending=None
            ",
        );
    }

    #[test]
    fn expansion_needs_the_current_epochs_start() {
        // hw 90 lags the epoch start 100 until ISR member 2 fetches.
        check(
            "isr=1,2 min_isr=1",
            "
            0 fetch 3 95
            0 expand 3
            0 fetch 3 100
            0 expand 3
            0 expand 2
            0 eligible 3 false
            0 expand 3
            0 eligible 9 false
            ",
            "
            0 fetch 3 95 -> read hw 90
            0 expand 3 -> None
            0 fetch 3 100 -> read hw 90
            0 expand 3 -> Some([1, 2, 3])
            0 expand 2 -> None
            0 eligible 3 false -> true
            0 expand 3 -> None
            0 eligible 9 false -> false
            ",
        );
    }

    #[test]
    fn a_caught_up_follower_outside_the_isr_holds_the_high_watermark() {
        // Kafka waits for it so that it can reach the high watermark and join; a lagging or
        // ineligible one does not count.
        check(
            "isr=1,2 min_isr=1 hw=100",
            "
            0 fetch 2 100
            0 fetch 3 100
            10 append 110
            20 fetch 2 110
            30 eligible 3 false
            40 append 111
            50 eligible 3 true
            900 fetch 2 111
            2000 fetch 2 111
            ",
            "
            0 fetch 2 100 -> read hw 100
            0 fetch 3 100 -> read hw 100
            10 append 110 -> hw 100
            20 fetch 2 110 -> read hw 100
            30 eligible 3 false -> true
            40 append 111 -> hw 110 advanced
            50 eligible 3 true -> true
            900 fetch 2 111 -> read hw 110
            2000 fetch 2 111 -> read hw 111 advanced
            ",
        );
    }

    #[test]
    fn under_min_isr_nothing_commits() {
        // KIP-966: acks=all is refused up front, and the high watermark does not pass data
        // written with acks=1 until the committed ISR is back to min.insync.replicas.
        check(
            "isr=1 hw=100",
            "
            0 can_append -1
            0 can_append 1
            0 append 110
            10 fetch 2 110
            10 expand 2
            10 propose 1,2
            10 can_append -1
            20 fetch 2 110
            20 state
            30 commit 1,2 11
            30 state
            30 can_append -1
            ",
            "
            0 can_append -1 -> NOT_ENOUGH_REPLICAS
            0 can_append 1 -> ok
            0 append 110 -> hw 100
            10 fetch 2 110 -> read hw 100
            10 expand 2 -> Some([1, 2])
            10 propose 1,2 -> sent [1, 2] at partition epoch 10
            10 can_append -1 -> NOT_ENOUGH_REPLICAS
            20 fetch 2 110 -> read hw 100
            20 state -> hw=100 isr=[1] maximal=[1, 2] pending=Some([1, 2])
            30 commit 1,2 11 -> applied, hw advanced
            30 state -> hw=110 isr=[1, 2] maximal=[1, 2] pending=None
            30 can_append -1 -> ok
            ",
        );
    }

    #[test]
    fn acks_all_completes_at_the_high_watermark() {
        check(
            "",
            "
            0 can_append -1
            0 ack 89
            0 ack 90
            0 fetch 2 100
            0 fetch 3 100
            0 ack 99
            10 append 110
            10 ack 105
            20 fetch 2 110
            2000 shrink
            2000 propose 1,2
            2010 commit 1,2 11
            2010 ack 105
            2020 append 120
            3500 shrink
            3500 propose 1
            3510 commit 1 12
            3510 ack 115
            3510 ack 105
            3510 can_append -1
            ",
            "
            0 can_append -1 -> ok
            0 ack 89 -> acked
            0 ack 90 -> waiting
            0 fetch 2 100 -> read hw 90
            0 fetch 3 100 -> read hw 100 advanced
            0 ack 99 -> acked
            10 append 110 -> hw 100
            10 ack 105 -> waiting
            20 fetch 2 110 -> read hw 100
            2000 shrink -> Some([1, 2])
            2000 propose 1,2 -> sent [1, 2] at partition epoch 10
            2010 commit 1,2 11 -> applied, hw advanced
            2010 ack 105 -> acked
            2020 append 120 -> hw 110
            3500 shrink -> Some([1])
            3500 propose 1 -> sent [1] at partition epoch 11
            3510 commit 1 12 -> applied
            3510 ack 115 -> waiting
            3510 ack 105 -> NOT_ENOUGH_REPLICAS_AFTER_APPEND
            3510 can_append -1 -> NOT_ENOUGH_REPLICAS
            ",
        );
    }

    #[test]
    fn isr_commits_rejections_and_bad_proposals() {
        check(
            "",
            "
            0 propose 1,2
            0 reject
            0 state
            0 propose 1,2
            0 commit 1,2,3 9
            0 commit 1,4 11
            0 commit 2,3 11
            0 commit 1,1,2 11
            0 state
            0 commit 1,2 11
            0 reject
            0 commit 1,2 11
            0 propose 1,2
            0 propose 2,3
            0 propose 1,2,3,4
            0 state
            ",
            "
            0 propose 1,2 -> sent [1, 2] at partition epoch 10
            0 reject -> dropped
            0 state -> hw=90 isr=[1, 2, 3] maximal=[1, 2, 3] pending=None
            0 propose 1,2 -> sent [1, 2] at partition epoch 10
            0 commit 1,2,3 9 -> ignored stale
            0 commit 1,4 11 -> error: invalid ISR [1, 4]: 4 is not an assigned replica
            0 commit 2,3 11 -> error: invalid ISR [2, 3]: does not contain the leader 1
            0 commit 1,1,2 11 -> error: invalid ISR [1, 1, 2]: repeats a replica
            0 state -> hw=90 isr=[1, 2, 3] maximal=[1, 2, 3] pending=Some([1, 2])
            0 commit 1,2 11 -> applied
            0 reject -> kept
            0 commit 1,2 11 -> applied
            0 propose 1,2 -> error: the proposed ISR is the current one
            0 propose 2,3 -> error: invalid ISR [2, 3]: does not contain the leader 1
            0 propose 1,2,3,4 -> error: invalid ISR [1, 2, 3, 4]: 4 is not an assigned replica
            0 state -> hw=90 isr=[1, 2] maximal=[1, 2] pending=None
            ",
        );
    }

    fn leader_and_isr(isr: &[i32]) -> LeaderAndIsr {
        LeaderAndIsr {
            leader: 1,
            leader_epoch: 5,
            partition_epoch: 0,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
        }
    }

    const LOG: LeaderLog = LeaderLog {
        log_start_offset: 0,
        log_end_offset: 100,
    };

    #[test]
    fn become_leader_records_its_epoch_at_the_log_end() {
        // KIP-279: the new epoch is in the cache before anything is written in it.
        let mut epochs = LeaderEpochCache::from_entries(vec![EpochEntry {
            epoch: 3,
            start_offset: 50,
        }])
        .unwrap();
        let (replica, outcome) = PartitionReplica::become_leader(
            ReplicaConfig::default(),
            &leader_and_isr(&[1, 2]),
            LOG,
            80,
            &mut epochs,
            0,
        )
        .unwrap();
        assert!(outcome.changed());
        assert_eq!(epochs.to_string(), "[3@50 5@100]");
        assert_eq!(replica.leader_epoch_start_offset(), 100);
        assert_eq!(replica.high_watermark(), 80);
        // The same epoch again (a rebuilt PartitionReplica) leaves the cache alone.
        let (_, outcome) = PartitionReplica::become_leader(
            ReplicaConfig::default(),
            &leader_and_isr(&[1, 2]),
            LOG,
            80,
            &mut epochs,
            0,
        )
        .unwrap();
        assert_eq!(outcome, AssignOutcome::Unchanged);
    }

    #[test]
    fn become_leader_refuses_bad_input() {
        let config = ReplicaConfig::default();
        let attempt = |config: ReplicaConfig, state: LeaderAndIsr, log: LeaderLog, hw: i64| {
            let mut epochs = LeaderEpochCache::from_entries(vec![EpochEntry {
                epoch: 3,
                start_offset: 50,
            }])
            .unwrap();
            let before = epochs.clone();
            let result = PartitionReplica::become_leader(config, &state, log, hw, &mut epochs, 0)
                .map(|_| ());
            assert_eq!(
                epochs, before,
                "a refused election must not touch the cache"
            );
            result.unwrap_err().to_string()
        };
        let cases = [
            (
                attempt(
                    ReplicaConfig {
                        replica_lag_time_max_ms: 0,
                        ..config
                    },
                    leader_and_isr(&[1]),
                    LOG,
                    0,
                ),
                "replica.lag.time.max.ms must be positive",
            ),
            (
                attempt(
                    ReplicaConfig {
                        min_insync_replicas: 0,
                        ..config
                    },
                    leader_and_isr(&[1]),
                    LOG,
                    0,
                ),
                "min.insync.replicas must be at least 1",
            ),
            (
                attempt(config, leader_and_isr(&[2, 3]), LOG, 0),
                "does not contain the leader 1",
            ),
            (
                attempt(config, leader_and_isr(&[1, 4]), LOG, 0),
                "4 is not an assigned replica",
            ),
            (
                attempt(
                    config,
                    LeaderAndIsr {
                        replicas: vec![1, 2, 2],
                        ..leader_and_isr(&[1])
                    },
                    LOG,
                    0,
                ),
                "repeat an id",
            ),
            (
                attempt(
                    config,
                    LeaderAndIsr {
                        leader: 4,
                        ..leader_and_isr(&[1])
                    },
                    LOG,
                    0,
                ),
                "leader 4 is not among replicas",
            ),
            (
                attempt(
                    config,
                    LeaderAndIsr {
                        leader_epoch: 2,
                        ..leader_and_isr(&[1])
                    },
                    LOG,
                    0,
                ),
                "leader epoch 2 is older than epoch 3 already in the log",
            ),
            (
                attempt(config, leader_and_isr(&[1]), LOG, 101),
                "high watermark 101 is outside 0..=100",
            ),
            (
                attempt(
                    config,
                    leader_and_isr(&[1]),
                    LeaderLog {
                        log_start_offset: 0,
                        log_end_offset: 40,
                    },
                    0,
                ),
                "epoch cache entry 3@50 starts after the log end offset 40",
            ),
        ];
        for (got, expected) in cases {
            assert!(got.contains(expected), "got {got:?}, expected {expected:?}");
        }
    }

    // ---- properties ----

    #[derive(Debug, Clone, Copy)]
    enum EpochInRequest {
        Current,
        Absent,
        Stale,
        Future,
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append(i64),
        Tick(i64),
        /// The follower fetches from its log end; the response then delivers `deliver`
        /// percent of what the leader has beyond it.
        Fetch {
            follower: usize,
            deliver: i64,
            epoch: EpochInRequest,
        },
        /// The follower loses its unsynced tail (crash) and will fetch from lower down.
        Truncate {
            follower: usize,
            by: i64,
        },
        Shrink,
        Expand(usize),
        /// The controller answers the pending proposal: commit or refuse.
        Resolve(bool),
        /// The controller removes a follower on its own (say, a fenced broker).
        ControllerRemoves(usize),
        Eligible(usize, bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        let epoch = prop_oneof![
            6 => Just(EpochInRequest::Current),
            1 => Just(EpochInRequest::Absent),
            1 => Just(EpochInRequest::Stale),
            1 => Just(EpochInRequest::Future),
        ];
        prop_oneof![
            4 => (0..5i64).prop_map(Op::Append),
            3 => (0..400i64).prop_map(Op::Tick),
            8 => (0..4usize, 0..=100i64, epoch).prop_map(|(follower, deliver, epoch)| Op::Fetch { follower, deliver, epoch }),
            1 => (0..4usize, 0..10i64).prop_map(|(follower, by)| Op::Truncate { follower, by }),
            2 => Just(Op::Shrink),
            2 => (0..4usize).prop_map(Op::Expand),
            2 => any::<bool>().prop_map(Op::Resolve),
            1 => (0..4usize).prop_map(Op::ControllerRemoves),
            1 => (0..4usize, any::<bool>()).prop_map(|(f, e)| Op::Eligible(f, e)),
        ]
    }

    #[derive(Debug, Clone)]
    struct Start {
        replica_count: i32,
        isr_mask: u8,
        min_isr: i32,
        leo: i64,
        hw: i64,
        follower_leos: Vec<i64>,
    }

    fn start() -> impl Strategy<Value = Start> {
        (1..=4i32, any::<u8>(), 1..=3i32, 0..30i64).prop_flat_map(
            |(replica_count, isr_mask, min_isr, leo)| {
                (
                    Just(replica_count),
                    Just(isr_mask),
                    Just(min_isr),
                    Just(leo),
                    0..=leo,
                    prop::collection::vec(0..=leo, 3),
                )
                    .prop_map(
                        |(replica_count, isr_mask, min_isr, leo, hw, follower_leos)| Start {
                            replica_count,
                            isr_mask,
                            min_isr,
                            leo,
                            hw,
                            follower_leos,
                        },
                    )
            },
        )
    }

    /// The rules restated naively, with state of its own: what the leader should know,
    /// computed without asking the code under test.
    #[derive(Debug, Clone)]
    struct ShadowFollower {
        log_end_offset: Option<i64>,
        /// (time, leader log end offset) of the last accepted fetch.
        last_fetch: Option<(i64, i64)>,
        caught_up_ms: Option<i64>,
        eligible: bool,
    }

    #[derive(Debug, Clone)]
    struct Shadow {
        lag_ms: i64,
        min_isr: usize,
        leader_end: i64,
        epoch_start: i64,
        high_watermark: i64,
        committed: BTreeSet<i32>,
        pending: Option<BTreeSet<i32>>,
        followers: BTreeMap<i32, ShadowFollower>,
    }

    impl Shadow {
        fn maximal(&self) -> BTreeSet<i32> {
            let mut maximal = self.committed.clone();
            maximal.extend(self.pending.iter().flatten());
            maximal
        }

        fn caught_up(&self, f: &ShadowFollower, now: i64) -> bool {
            f.log_end_offset == Some(self.leader_end)
                || f.caught_up_ms.is_some_and(|t| now - t <= self.lag_ms)
        }

        fn fetch(&mut self, id: i32, offset: i64, now: i64) {
            let leader_end = self.leader_end;
            let f = self.followers.get_mut(&id).unwrap();
            let at = if offset >= leader_end {
                Some(now)
            } else {
                f.last_fetch
                    .filter(|(_, end)| offset >= *end)
                    .map(|(t, _)| t)
            };
            if let Some(at) = at {
                f.caught_up_ms = Some(f.caught_up_ms.unwrap_or(at).max(at));
            }
            f.log_end_offset = Some(offset);
            f.last_fetch = Some((now, leader_end));
        }

        fn recompute(&mut self, now: i64) {
            if self.committed.len() < self.min_isr {
                return;
            }
            let maximal = self.maximal();
            let mut offsets = vec![Some(self.leader_end)];
            for (id, f) in &self.followers {
                if maximal.contains(id) || (f.eligible && self.caught_up(f, now)) {
                    offsets.push(f.log_end_offset);
                }
            }
            if let Some(offsets) = offsets.into_iter().collect::<Option<Vec<i64>>>() {
                self.high_watermark = self.high_watermark.max(offsets.into_iter().min().unwrap());
            }
        }

        fn shrink(&self, now: i64) -> Option<Vec<i32>> {
            if self.pending.is_some() {
                return None;
            }
            let kept: Vec<i32> = self
                .committed
                .iter()
                .copied()
                .filter(|id| *id == 1 || self.caught_up(&self.followers[id], now))
                .collect();
            (kept.len() < self.committed.len()).then_some(kept)
        }

        fn expand(&self, id: i32) -> Option<Vec<i32>> {
            let f = &self.followers[&id];
            let leo = f.log_end_offset?;
            let ok = self.pending.is_none()
                && !self.committed.contains(&id)
                && f.eligible
                && leo >= self.high_watermark
                && leo >= self.epoch_start;
            ok.then(|| {
                let mut isr = self.committed.clone();
                isr.insert(id);
                isr.into_iter().collect()
            })
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn replication_keeps_the_high_watermark_safe(start in start(), ops in prop::collection::vec(op(), 0..120)) {
            let replicas: Vec<i32> = (1..=start.replica_count).collect();
            let followers: Vec<i32> = replicas[1..].to_vec();
            let mut isr = vec![1];
            for (i, id) in followers.iter().enumerate() {
                if start.isr_mask & (1 << i) != 0 {
                    isr.push(*id);
                }
            }
            let mut epochs = LeaderEpochCache::from_entries(vec![EpochEntry { epoch: 0, start_offset: 0 }]).unwrap();
            let mut log = LeaderLog { log_start_offset: 0, log_end_offset: start.leo };
            let state = LeaderAndIsr { leader: 1, leader_epoch: 1, partition_epoch: 0, replicas: replicas.clone(), isr: isr.clone() };
            let config = ReplicaConfig { replica_lag_time_max_ms: 500, min_insync_replicas: start.min_isr };
            let (mut replica, _) =
                PartitionReplica::become_leader(config, &state, log, start.hw, &mut epochs, 0).unwrap();
            let mut shadow = Shadow {
                lag_ms: 500,
                min_isr: (start.min_isr as usize).min(replicas.len()),
                leader_end: start.leo,
                epoch_start: start.leo,
                high_watermark: start.hw,
                committed: isr.iter().copied().collect(),
                pending: None,
                followers: followers
                    .iter()
                    .map(|id| (*id, ShadowFollower {
                        log_end_offset: None,
                        last_fetch: None,
                        caught_up_ms: isr.contains(id).then_some(0),
                        eligible: true,
                    }))
                    .collect(),
            };
            shadow.recompute(0);
            prop_assert_eq!(replica.high_watermark(), shadow.high_watermark);
            // What each follower really holds, and whether it lost data since its last fetch.
            let mut held: BTreeMap<i32, i64> =
                followers.iter().zip(&start.follower_leos).map(|(id, leo)| (*id, *leo)).collect();
            let mut truncated: BTreeSet<i32> = BTreeSet::new();
            let mut last_request: Option<AlterPartition> = None;
            let mut partition_epoch = 0;
            let mut now = 0i64;

            for op in ops {
                let before = replica.clone();
                let high_watermark_before = replica.high_watermark();
                match op {
                    Op::Append(count) => {
                        log.log_end_offset += count;
                        replica.on_leader_append(log.log_end_offset, now);
                        shadow.leader_end = log.log_end_offset;
                        shadow.recompute(now);
                    }
                    Op::Tick(ms) => now += ms,
                    Op::Fetch { follower, deliver, epoch } => {
                        let Some(&id) = followers.get(follower) else { continue };
                        let fetch_offset = held[&id];
                        let fetch = FollowerFetch {
                            replica_id: id,
                            fetch_offset,
                            current_leader_epoch: match epoch {
                                EpochInRequest::Current => Some(1),
                                EpochInRequest::Absent => None,
                                EpochInRequest::Stale => Some(0),
                                EpochInRequest::Future => Some(2),
                            },
                            // The follower's latest epoch: 1 once it has data from this epoch.
                            last_fetched_epoch: Some(if fetch_offset > start.leo { 1 } else { 0 }),
                        };
                        match replica.on_follower_fetch(&fetch, log, &epochs, now) {
                            FetchDecision::Read { high_watermark, .. } => {
                                let accepted = matches!(epoch, EpochInRequest::Current | EpochInRequest::Absent);
                                prop_assert!(accepted);
                                shadow.fetch(id, fetch_offset, now);
                                shadow.recompute(now);
                                prop_assert_eq!(high_watermark, shadow.high_watermark);
                                let gap = log.log_end_offset - fetch_offset;
                                held.insert(id, fetch_offset + gap * deliver / 100);
                                truncated.remove(&id);
                            }
                            other => {
                                // No divergence in this history: only stale or future epochs are refused.
                                let refused = matches!(epoch, EpochInRequest::Stale | EpochInRequest::Future);
                                prop_assert!(refused, "{:?}", other);
                                prop_assert_eq!(&replica, &before, "a refused fetch changed state");
                            }
                        }
                    }
                    Op::Truncate { follower, by } => {
                        let Some(&id) = followers.get(follower) else { continue };
                        let leo = held[&id];
                        if by > 0 && leo > 0 {
                            held.insert(id, (leo - by).max(0));
                            truncated.insert(id);
                        }
                    }
                    Op::Shrink => {
                        let proposal = replica.maybe_shrink_isr(now);
                        prop_assert_eq!(&proposal, &shadow.shrink(now));
                        if let Some(proposal) = proposal {
                            let request = replica.propose_isr(&proposal).unwrap();
                            prop_assert_eq!(request.partition_epoch, partition_epoch);
                            shadow.pending = Some(proposal.into_iter().collect());
                            last_request = Some(request);
                        }
                    }
                    Op::Expand(follower) => {
                        let Some(&id) = followers.get(follower) else { continue };
                        let proposal = replica.maybe_expand_isr(id);
                        prop_assert_eq!(&proposal, &shadow.expand(id));
                        if let Some(proposal) = proposal {
                            last_request = Some(replica.propose_isr(&proposal).unwrap());
                            shadow.pending = Some(proposal.into_iter().collect());
                        }
                    }
                    Op::Resolve(commit) => {
                        let Some(request) = last_request.take() else { continue };
                        if shadow.pending.is_none() {
                            continue; // superseded by a controller change; the controller refuses it
                        }
                        if commit {
                            partition_epoch += 1;
                            let update = replica
                                .on_isr_committed(&request.new_isr, partition_epoch, now)
                                .unwrap();
                            let applied = matches!(update, IsrUpdate::Applied { .. });
                            prop_assert!(applied);
                            shadow.committed = request.new_isr.iter().copied().collect();
                            shadow.pending = None;
                            shadow.recompute(now);
                        } else {
                            prop_assert!(replica.on_alter_partition_rejected(&request));
                            shadow.pending = None;
                        }
                    }
                    Op::ControllerRemoves(follower) => {
                        let Some(&id) = followers.get(follower) else { continue };
                        if !shadow.committed.contains(&id) {
                            continue;
                        }
                        shadow.committed.remove(&id);
                        shadow.pending = None;
                        partition_epoch += 1;
                        let isr: Vec<i32> = shadow.committed.iter().copied().collect();
                        replica.on_isr_committed(&isr, partition_epoch, now).unwrap();
                        shadow.recompute(now);
                    }
                    Op::Eligible(follower, eligible) => {
                        let Some(&id) = followers.get(follower) else { continue };
                        prop_assert!(replica.set_isr_eligible(id, eligible));
                        shadow.followers.get_mut(&id).unwrap().eligible = eligible;
                    }
                }

                // The replica agrees with the shadow on everything it knows.
                let high_watermark = replica.high_watermark();
                prop_assert_eq!(high_watermark, shadow.high_watermark, "high watermark differs from the rule");
                prop_assert_eq!(replica.isr(), shadow.committed.iter().copied().collect::<Vec<_>>());
                prop_assert_eq!(replica.pending_isr(), shadow.pending.as_ref().map(|p| p.iter().copied().collect::<Vec<_>>()));
                prop_assert_eq!(replica.partition_epoch(), partition_epoch);
                for (id, f) in &shadow.followers {
                    let state = replica.follower(*id).unwrap();
                    prop_assert_eq!(state.log_end_offset, f.log_end_offset);
                    prop_assert_eq!(state.last_caught_up_ms, f.caught_up_ms);
                }

                // Safety, stated on the shadow's own ISR.
                prop_assert!(high_watermark >= high_watermark_before, "high watermark moved back");
                prop_assert!(high_watermark <= log.log_end_offset);
                if high_watermark > high_watermark_before {
                    // Everything now acknowledged is on every member of the maximal ISR: the
                    // leader knows it, and it is really there unless the member lost data
                    // since it last told the leader.
                    for id in shadow.maximal().into_iter().filter(|id| *id != 1) {
                        let known = shadow.followers[&id].log_end_offset;
                        prop_assert!(known.is_some_and(|o| o >= high_watermark), "member {} known at {:?}", id, known);
                        if !truncated.contains(&id) {
                            prop_assert!(held[&id] >= high_watermark, "member {} holds {}", id, held[&id]);
                        }
                    }
                }
                for offset in [high_watermark - 1, high_watermark, log.log_end_offset - 1] {
                    let expected = if offset >= high_watermark {
                        AckStatus::Waiting
                    } else if shadow.maximal().len() < shadow.min_isr {
                        AckStatus::NotEnoughReplicasAfterAppend {
                            isr_size: shadow.maximal().len(),
                            min_insync_replicas: shadow.min_isr,
                        }
                    } else {
                        AckStatus::Acked
                    };
                    prop_assert_eq!(replica.ack_status(offset), expected);
                }
                prop_assert_eq!(replica.can_append(-1).is_ok(), shadow.committed.len() >= shadow.min_isr);
                prop_assert!(replica.can_append(1).is_ok());
            }
        }
    }
}
