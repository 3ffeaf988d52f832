//! Kafka's classic consumer-group coordinator (JoinGroup / SyncGroup / Heartbeat /
//! LeaveGroup, offsets, group administration) as a pure, sans-IO state machine: one
//! [`GroupCoordinator`] holds every group of the `__consumer_offsets` partitions this
//! broker coordinates, keyed by group id.
//!
//! # Driving it (the shell's side)
//! - **Inputs.** Each request is one call with a caller-chosen [`RequestToken`] and the
//!   current time `now_ms`: [`join_group`](GroupCoordinator::join_group),
//!   [`sync_group`](GroupCoordinator::sync_group), [`heartbeat`](GroupCoordinator::heartbeat),
//!   [`leave_group`](GroupCoordinator::leave_group),
//!   [`offset_commit`](GroupCoordinator::offset_commit),
//!   [`offset_fetch`](GroupCoordinator::offset_fetch),
//!   [`offset_delete`](GroupCoordinator::offset_delete),
//!   [`delete_groups`](GroupCoordinator::delete_groups),
//!   [`list_groups`](GroupCoordinator::list_groups),
//!   [`describe_groups`](GroupCoordinator::describe_groups). A call returns its response
//!   when it is decided within the call (`Some`), or `None` when the response is parked
//!   (a JoinGroup waiting for the join phase, a follower's SyncGroup waiting for the
//!   leader's, anything waiting for its records to be committed).
//! - **Timers.** [`next_deadline`](GroupCoordinator::next_deadline) is the earliest time
//!   at which [`tick`](GroupCoordinator::tick) has work (session expiry, a join phase's
//!   rebalance timeout or initial delay, a KIP-394 pending member's timeout, the SyncGroup
//!   timeout). Call `tick(now_ms)` then, or any time later; calling it early is harmless.
//!   [`expire`](GroupCoordinator::expire) removes offsets past `offsets.retention.minutes`;
//!   Kafka runs it every `offsets.retention.check.interval.ms` (10 minutes).
//! - **Durability.** Every durable change leaves as a [`Write`]: records for
//!   `__consumer_offsets` with a [`WriteToken`]. After any call, drain
//!   [`take_writes`](GroupCoordinator::take_writes) and append the records; when they are
//!   committed (replicated to the partition's high watermark) call
//!   [`records_committed`](GroupCoordinator::records_committed), and if the append fails
//!   call [`records_failed`](GroupCoordinator::records_failed) with the error to answer
//!   with. The coordinator never treats a change as durable on its own: offsets become
//!   visible, a group becomes Stable, a group is deleted only at `records_committed`.
//! - **Outputs, in order.** After every call, first [`take_writes`] (in the order the
//!   changes were decided), then [`take_responses`] (parked responses released by the
//!   call, in the order they were decided; a join phase completing answers its members in
//!   member-id order). The caller's own response is never in `take_responses` when the
//!   call returned it.
//! - **Loading.** A coordinator that becomes leader of a `__consumer_offsets` partition
//!   [`replay`](GroupCoordinator::replay)s its records in log order; groups come back
//!   Empty or Stable in their last stored generation, every member's session starting at
//!   the load. [`unload`](GroupCoordinator::unload) drops groups when leadership moves
//!   away; their parked requests are answered with NOT_COORDINATOR.
//!
//! # The rules, as Kafka has them (3.x `GroupCoordinator`, 4.x `ClassicGroup`)
//! - **States.** Empty -> PreparingRebalance -> CompletingRebalance -> Stable, back to
//!   PreparingRebalance on any membership change; Dead while a group is deleted. A join
//!   phase completes when every member has rejoined and no KIP-394 pending member is
//!   outstanding, or at the rebalance timeout (the longest `rebalance_timeout_ms` of the
//!   members), which removes the dynamic members that did not rejoin (static members
//!   stay; if nobody rejoined but static members remain, the phase waits another
//!   rebalance timeout). Completing bumps the generation, selects the protocol (each
//!   member votes for its first protocol that every member supports; most votes wins;
//!   ties go to the name that sorts first, where Kafka's choice is hash-map order) and
//!   keeps the leader if it rejoined, else the first rejoined member (by member id). A
//!   phase that ends with no members leaves the group Empty in a new generation.
//! - **Initial delay.** A rebalance of an Empty group waits
//!   `group.initial.rebalance.delay.ms` and never completes early; each time it ends, if a
//!   new member joined meanwhile and the rebalance timeout is not used up, it waits again
//!   (at most the time remaining).
//! - **JoinGroup.** KIP-394: a new member (empty member id) of a request version >= 4 gets
//!   MEMBER_ID_REQUIRED and the id `client_id-suffix`; it must rejoin with it within its
//!   session timeout, and the join phase waits for it. A known member's join in Stable
//!   triggers a rebalance if it is the leader or its protocols changed, else it is answered
//!   at once with the current generation; in CompletingRebalance an unchanged member is
//!   answered at once too. KIP-345: a new member id under a known `group.instance.id`
//!   replaces the old member id (fenced: FENCED_INSTANCE_ID from then on); in Stable, if
//!   the selected protocol would not change, there is no rebalance: the group is stored
//!   with the new member id and the join answered when that is committed (with the old
//!   leader id, so a restarted leader does not reassign).
//! - **Sessions.** Every member has `session_timeout_ms` from its join; a heartbeat, join,
//!   sync or commit renews it. A member with a parked JoinGroup or SyncGroup is kept
//!   alive, except a member new to this join phase (Kafka's `isNew`: its deadline is
//!   `group.new.member.join.timeout.ms`, 5 minutes). Members that have not sent SyncGroup
//!   within the rebalance timeout after the join phase are removed.
//! - **Offsets.** A commit with a negative generation is accepted for an Empty or
//!   unknown group (simple consumers, admin tools); otherwise it must come from a known
//!   member in the current generation, and is refused with REBALANCE_IN_PROGRESS in
//!   CompletingRebalance (allowed in PreparingRebalance). KIP-211 expiry: in an Empty
//!   group, every offset once the group has been Empty for the retention; in a Stable
//!   consumer group, offsets of topics nobody subscribes to, by commit time; in a group
//!   with no protocol type (offsets only), each offset by its commit time.
//!
//! **Architecture invariant:** no clock, no RNG, no I/O; member id suffixes and time are
//! arguments; only ordered maps are iterated. After every input the touched groups'
//! invariants are asserted (see `membership::Group::check_invariants`) and no generation
//! went back.

pub mod consumer;
mod join;
mod membership;
mod offsets;
mod persist;
pub mod records;

pub use membership::{
    consumer_subscription, consumer_subscription_topics, CommittedOffset, GroupState, Protocol,
    CONSUMER_PROTOCOL_TYPE,
};
pub use records::{DecodeError, GroupRecord, MemberRecord};

use crate::kafka_rules::error_code;
use membership::Group;
use persist::Completion;
use std::collections::BTreeMap;

/// The caller's name for a request; responses come back under it.
pub type RequestToken = u64;

/// The coordinator's name for a write of records.
pub type WriteToken = u64;

/// Kafka's group coordinator settings, with Kafka's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`.
    pub session_timeout_ms_min: i32,
    /// `group.max.session.timeout.ms`.
    pub session_timeout_ms_max: i32,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size`.
    pub group_size_max: usize,
    /// `offsets.retention.minutes`, in milliseconds.
    pub offsets_retention_ms: i64,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_bytes_max: usize,
    /// `group.new.member.join.timeout.ms` (not configurable in Kafka: 5 minutes).
    pub new_member_join_timeout_ms: i64,
    /// `group.consumer.session.timeout.ms` (KIP-848 groups).
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`, told to KIP-848 members.
    pub consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`.
    pub consumer_group_size_max: usize,
}

impl Default for GroupConfig {
    fn default() -> GroupConfig {
        GroupConfig {
            session_timeout_ms_min: 6_000,
            session_timeout_ms_max: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            group_size_max: i32::MAX as usize,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offset_metadata_bytes_max: 4096,
            new_member_join_timeout_ms: 300_000,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_group_size_max: i32::MAX as usize,
        }
    }
}

/// JoinGroup (all versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupRequest {
    /// The request's API version: 4 and later take part in KIP-394.
    pub version: i16,
    pub group_id: String,
    /// Empty for a new member.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    /// `max.poll.interval.ms` for consumers (versions before 1: the session timeout).
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// Appended to `client_id-` to make a new member's id (the shell draws a UUID).
    pub member_id_suffix: String,
}

/// A member as the leader's JoinGroup response lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupResponse {
    pub error: i16,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member with its metadata for the selected protocol, for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinGroupResponse {
    fn error(member_id: &str, error: i16) -> JoinGroupResponse {
        JoinGroupResponse {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    /// Version 5 and later.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment (member id, assignment); empty from followers.
    pub assignments: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupResponse {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Vec<u8>,
}

impl SyncGroupResponse {
    fn error(error: i16) -> SyncGroupResponse {
        SyncGroupResponse {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
}

/// One member leaving (LeaveGroup v3+ lists several; earlier versions one member id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeavingMember {
    /// Empty to remove a static member by its instance id (an admin's removal).
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroupRequest {
    pub group_id: String,
    pub members: Vec<LeavingMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroupResponse {
    pub error: i16,
    /// Per member, in the request's order.
    pub members: Vec<(LeavingMember, i16)>,
}

/// One partition's offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPartition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitRequest {
    pub group_id: String,
    /// -1 for a commit from outside group management.
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub partitions: Vec<CommitPartition>,
    /// The request's OffsetCommit version: from v9 an unknown group is GROUP_ID_NOT_FOUND
    /// (ILLEGAL_GENERATION before), and a consumer group (KIP-848) needs v9 or above.
    pub api_version: i16,
}

/// A per-partition result: topic, partition, error code, in the request's order.
pub type PartitionError = (String, i32, i16);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitResponse {
    pub partitions: Vec<PartitionError>,
}

/// One partition of an OffsetFetch answer; offset -1 when nothing is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchResponse {
    pub error: i16,
    pub partitions: Vec<FetchedOffset>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetDeleteResponse {
    pub error: i16,
    pub partitions: Vec<PartitionError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteGroupsResponse {
    /// Group id and error, in the request's order.
    pub groups: Vec<(String, i16)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
    /// For a consumer group (KIP-848): its state's name; `state` is then Empty.
    pub consumer_state: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Only in Stable (empty otherwise, as Kafka).
    pub metadata: Vec<u8>,
    pub assignment: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    pub group_id: String,
    pub error: i16,
    /// Dead for an unknown group.
    pub state: GroupState,
    pub protocol_type: String,
    /// Empty outside Stable.
    pub protocol: String,
    pub members: Vec<DescribedMember>,
}

/// A response released later than its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    JoinGroup(JoinGroupResponse),
    SyncGroup(SyncGroupResponse),
    OffsetCommit(OffsetCommitResponse),
    OffsetDelete(OffsetDeleteResponse),
    DeleteGroups(DeleteGroupsResponse),
    ConsumerGroupHeartbeat(consumer::ConsumerHeartbeatResponse),
}

/// Records to append to `__consumer_offsets`; report the outcome under `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub token: WriteToken,
    pub records: Vec<GroupRecord>,
}

/// What [`GroupCoordinator::expire`] removed (its tombstones are in a [`Write`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    /// (group, topic, partition) of every expired offset.
    pub offsets: Vec<(String, String, i32)>,
    /// Groups removed because they were Empty with no offsets left.
    pub groups: Vec<String>,
}

/// The coordinator of many groups.
#[derive(Debug)]
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
    responses: Vec<(RequestToken, Response)>,
    writes: Vec<Write>,
    in_flight: BTreeMap<WriteToken, Completion>,
    write_token_next: WriteToken,
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            groups: BTreeMap::new(),
            responses: Vec::new(),
            writes: Vec::new(),
            in_flight: BTreeMap::new(),
            write_token_next: 1,
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// A group's state, if the coordinator holds the group.
    pub fn group_state(&self, group_id: &str) -> Option<GroupState> {
        self.groups.get(group_id).map(|g| g.state)
    }

    /// A group's current generation.
    pub fn generation(&self, group_id: &str) -> Option<i32> {
        self.groups.get(group_id).map(|g| g.generation)
    }

    /// The group ids held, in order.
    pub fn group_ids(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    /// The records written and not yet reported committed or failed.
    pub fn take_writes(&mut self) -> Vec<Write> {
        std::mem::take(&mut self.writes)
    }

    /// Parked responses released since the last call, in the order they were decided.
    pub fn take_responses(&mut self) -> Vec<(RequestToken, Response)> {
        std::mem::take(&mut self.responses)
    }

    /// The earliest time at which [`tick`](Self::tick) has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        self.next_deadline_where(|_| true)
    }

    /// As [`next_deadline`](Self::next_deadline), over the groups `serving` accepts
    /// (a coordinator still loading a partition keeps its groups' timers stopped).
    pub fn next_deadline_where(&self, serving: impl Fn(&str) -> bool) -> Option<i64> {
        self.groups
            .iter()
            .filter(|(group_id, _)| serving(group_id))
            .filter_map(|(_, group)| group_deadline(group))
            .min()
    }

    fn respond(&mut self, token: RequestToken, response: Response) {
        self.responses.push((token, response));
    }

    /// The caller's own response, if it was decided during its call.
    fn take_own(&mut self, token: RequestToken) -> Option<Response> {
        let index = self.responses.iter().position(|(t, _)| *t == token)?;
        Some(self.responses.remove(index).1)
    }

    /// Queues records to write; `completion` says what their outcome releases.
    fn write(&mut self, records: Vec<GroupRecord>, completion: Completion) -> WriteToken {
        assert!(!records.is_empty(), "a write has records");
        let token = self.write_token_next;
        self.write_token_next += 1;
        self.writes.push(Write { token, records });
        self.in_flight.insert(token, completion);
        token
    }

    /// Asserts a touched group's invariants and that its generation did not go back.
    fn check(&self, group_id: &str, generation_before: Option<i32>) {
        if let Some(group) = self.groups.get(group_id) {
            group.check_invariants();
            if let Some(before) = generation_before {
                assert!(
                    group.generation >= before,
                    "{group_id}: generation went back from {before} to {}",
                    group.generation
                );
            }
        }
    }

    fn check_all(&self, generations_before: &BTreeMap<String, i32>) {
        for (group_id, group) in &self.groups {
            group.check_invariants();
            if let Some(&before) = generations_before.get(group_id) {
                assert!(
                    group.generation >= before,
                    "{group_id}: generation went back"
                );
            }
        }
    }

    fn generations(&self) -> BTreeMap<String, i32> {
        self.groups
            .iter()
            .map(|(id, g)| (id.clone(), g.generation))
            .collect()
    }
}

/// The earliest deadline of one group's timers.
fn group_deadline(group: &Group) -> Option<i64> {
    let pending = group.pending_members.values().copied();
    let sessions = group
        .members
        .values()
        .filter(|m| !m.kept_alive())
        .map(|m| m.session_deadline_ms);
    let join = group.join_phase.map(|p| p.deadline_ms());
    let sync = group
        .sync_deadline_ms
        .filter(|_| !group.pending_sync.is_empty());
    let consumer = group
        .consumer
        .as_deref()
        .and_then(consumer::consumer_deadline);
    pending
        .chain(sessions)
        .chain(join)
        .chain(sync)
        .chain(consumer)
        .min()
}

/// Is `group_id` a legal group id? (Kafka refuses only the empty one.)
fn valid_group_id(group_id: &str) -> Result<(), i16> {
    if group_id.is_empty() {
        Err(error_code::INVALID_GROUP_ID)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
