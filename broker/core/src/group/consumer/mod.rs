//! KIP-848, the consumer group protocol: ConsumerGroupHeartbeat and ConsumerGroupDescribe
//! on the same pure coordinator as the classic protocol. A group is classic or consumer:
//! a consumer group is a classic `Group` entry (it keeps the offsets, which both kinds
//! share) with no classic members and a [`ConsumerGroup`] attached.
//!
//! # The rules (KIP-848, as Kafka 4 has them)
//! - **Epochs.** The group epoch moves on every change of membership, subscriptions or
//!   subscribed topics' partition counts; each bump computes a new target assignment with
//!   the group's assignor (the one most members name in `ServerAssignor`, else `uniform`),
//!   so the assignment epoch always equals the group epoch after an input. A member's
//!   epoch reaches the assignment epoch once it has nothing left to revoke
//!   (`reconcile.rs`); it never goes back (a static member's temporary leave shows -2).
//! - **Reconciliation.** A partition goes to a member only when no other member holds it
//!   (assigned, or pending revocation). A member that must give partitions up is told its
//!   reduced assignment and stays in its epoch until a heartbeat's `TopicPartitions`
//!   shows it no longer owns them; if that takes longer than its rebalance timeout it is
//!   fenced (removed). Members state: stable, unrevoked partitions, unreleased partitions.
//! - **Fencing.** A heartbeat with an epoch above the member's is FENCED_MEMBER_EPOCH; one
//!   below is accepted only if it is the member's previous epoch and what it owns is part
//!   of its assignment (a lost response). Unknown members get UNKNOWN_MEMBER_ID.
//! - **Sessions.** `group.consumer.session.timeout.ms` from the last heartbeat; the
//!   answer tells the client `group.consumer.heartbeat.interval.ms`.
//! - **Static members.** MemberEpoch -2 leaves temporarily: the member keeps its
//!   assignment until a new member with its instance id joins (epoch 0) and takes it over,
//!   or its session expires. Joining under an instance id still held by an active member
//!   is UNRELEASED_INSTANCE_ID; another member id under a known instance id is
//!   FENCED_INSTANCE_ID.
//! - **Classic vs consumer.** ConsumerGroupHeartbeat on a classic group with members is
//!   GROUP_ID_NOT_FOUND; JoinGroup on a consumer group with members is
//!   INCONSISTENT_GROUP_PROTOCOL; SyncGroup / Heartbeat / LeaveGroup on a consumer group
//!   are GROUP_ID_NOT_FOUND. An empty group of either kind converts on the first request of
//!   the other kind; a non-empty one never does (Kafka's online upgrade is not done).
//! - **Regex subscriptions** (`SubscribedTopicRegex`, KIP-848's server-side regex): the
//!   member subscribes to the named topics and every topic whose whole name matches
//!   (RE2 syntax through the `regex` crate, where Kafka uses RE2/J; internal topics,
//!   `__` first, never match), evaluated against the cluster's topics at each heartbeat,
//!   so a new matching topic moves the group epoch. A regex that does not compile is
//!   INVALID_REGULAR_EXPRESSION.
//!
//! # Durability
//! Every change the heartbeat, a leave or a timer makes is written as one
//! [`GroupRecord::ConsumerGroup`]: the whole group (epochs, target, every member with its
//! subscription, epochs and current assignment), under the key `["consumer-group", id]`.
//! A full image per write (rather than Kafka's per-member records) makes every write
//! idempotent: a failed write leaves memory ahead of the log only until the next write of
//! the group, and loading needs only the last record. The heartbeat's answer waits for the
//! write to commit. The price is write size, proportional to members times partitions.

mod assignor;
mod reconcile;
#[cfg(test)]
mod tests;

pub use assignor::ASSIGNORS;

use super::membership::{Group, GroupState};
use super::persist::Completion;
use super::*;
use crate::probe;
use reconcile::{contains, is_subset, pairs, reconcile};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A topic id (KIP-516).
pub type TopicId = u128;

/// Partitions by topic id.
pub type Assignment = BTreeMap<TopicId, BTreeSet<i32>>;

/// The cluster's topics as the heartbeat sees them: name -> (topic id, partition count).
pub type TopicsMetadata = BTreeMap<String, (TopicId, i32)>;

/// The most partitions a topic may have for the assignors (a replayed record claiming
/// more is refused rather than enumerated).
const PARTITIONS_MAX: i32 = 1 << 20;

/// MemberEpoch of a member leaving for good.
pub const LEAVE_EPOCH: i32 = -1;
/// MemberEpoch of a static member leaving temporarily.
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// ConsumerGroupHeartbeat (v0-1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerHeartbeatRequest {
    pub version: i16,
    pub group_id: String,
    /// v0: empty for a new member (the coordinator names it); v1: chosen by the client.
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1 when unchanged.
    pub rebalance_timeout_ms: i32,
    /// None when unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// What the member owns; None when unchanged.
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
    /// The member id a v0 join without one gets (the shell draws a UUID).
    pub member_id_suffix: String,
    /// The topics of the cluster now.
    pub topics: TopicsMetadata,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerHeartbeatResponse {
    pub error: i16,
    pub error_message: Option<String>,
    pub member_id: Option<String>,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's assignment, when it changed or the request was a full one.
    pub assignment: Option<Assignment>,
}

impl ConsumerHeartbeatResponse {
    fn error(error: i16, message: &str) -> ConsumerHeartbeatResponse {
        ConsumerHeartbeatResponse {
            error,
            error_message: Some(message.to_string()),
            member_id: None,
            member_epoch: -1,
            heartbeat_interval_ms: 0,
            assignment: None,
        }
    }
}

/// A member's reconciliation state (Kafka's MemberState).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    Stable,
    /// Must give partitions up before its epoch moves on.
    UnrevokedPartitions,
    /// In the target epoch, waiting for partitions other members still hold.
    UnreleasedPartitions,
}

/// A group as it was before a consumer group heartbeat changed it (restored if the
/// heartbeat's write fails): None when the heartbeat created it; else its protocol type
/// and consumer state (None: an empty classic group the heartbeat converted).
#[derive(Debug, Clone)]
pub struct GroupBefore {
    pub group_id: String,
    pub existed: Option<(Option<String>, Option<Box<ConsumerGroup>>)>,
}

/// One member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: BTreeSet<String>,
    #[serde(default)]
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: MemberState,
    pub assigned: Assignment,
    /// Partitions the member must give up (still its own until it reports so).
    pub revoking: Assignment,
    /// Not stored: a loaded member's session starts at the load.
    #[serde(skip)]
    pub session_deadline_ms: i64,
    /// Set while revoking: the member is fenced if still revoking then.
    #[serde(skip)]
    pub revocation_deadline_ms: Option<i64>,
}

/// A consumer group's own state (what [`GroupRecord::ConsumerGroup`] stores).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerGroup {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    /// The subscribed topics as of the last group epoch: name -> (id, partitions).
    pub subscribed_topics: TopicsMetadata,
    pub members: BTreeMap<String, ConsumerMember>,
    /// Member id -> target assignment at `assignment_epoch`.
    pub target: BTreeMap<String, Assignment>,
}

/// Kafka's consumer group states (ConsumerGroupDescribe, ListGroups).
pub fn consumer_group_state(group: &ConsumerGroup) -> &'static str {
    if group.members.is_empty() {
        "Empty"
    } else if group.assignment_epoch < group.group_epoch {
        "Assigning"
    } else if group
        .members
        .values()
        .any(|m| m.member_epoch != group.assignment_epoch || m.state != MemberState::Stable)
    {
        "Reconciling"
    } else {
        "Stable"
    }
}

impl ConsumerGroup {
    fn new() -> ConsumerGroup {
        ConsumerGroup {
            group_epoch: 0,
            assignment_epoch: 0,
            assignor: ASSIGNORS[0].to_string(),
            subscribed_topics: TopicsMetadata::new(),
            members: BTreeMap::new(),
            target: BTreeMap::new(),
        }
    }

    fn static_member(&self, instance_id: &str) -> Option<&ConsumerMember> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance_id))
    }

    /// Does a member other than `member_id` hold `topic`-`partition`?
    fn held_by_other(&self, member_id: &str, topic: TopicId, partition: i32) -> bool {
        self.members.values().any(|m| {
            m.member_id != member_id
                && (contains(&m.assigned, topic, partition)
                    || contains(&m.revoking, topic, partition))
        })
    }

    /// The subscribed topics present in `topics`.
    fn subscribed_metadata(&self, topics: &TopicsMetadata) -> TopicsMetadata {
        let names: BTreeSet<String> = self
            .members
            .values()
            .flat_map(|m| member_topics(m, topics))
            .collect();
        names
            .into_iter()
            .filter_map(|n| topics.get(&n).map(|meta| (n.clone(), *meta)))
            .collect()
    }

    /// A new group epoch and its target assignment, from `topics` (the cluster's topics;
    /// only the subscribed ones are kept).
    fn bump(&mut self, topics: &TopicsMetadata) {
        crate::probe!(probe::GROUP_CONSUMER_ASSIGNMENT_CHANGED);
        self.subscribed_topics = self.subscribed_metadata(topics);
        self.group_epoch += 1;
        self.assignor = self.chosen_assignor();
        let subscriptions = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), member_topics(m, topics)))
            .collect();
        self.target = assignor::assign(
            &self.assignor,
            &subscriptions,
            &self.subscribed_topics,
            &self.target,
        );
        self.assignment_epoch = self.group_epoch;
    }

    /// The assignor most members name (ties: the first in name order), else the default.
    fn chosen_assignor(&self) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for name in self
            .members
            .values()
            .filter_map(|m| m.server_assignor.as_deref())
        {
            *votes.entry(name).or_default() += 1;
        }
        let most = votes.values().copied().max().unwrap_or(0);
        votes
            .into_iter()
            .find(|(_, n)| *n == most)
            .map_or(ASSIGNORS[0].to_string(), |(name, _)| name.to_string())
    }

    /// Reconciles one member toward its target.
    fn reconcile_member(
        &mut self,
        member_id: &str,
        owned: Option<&Assignment>,
        now_ms: i64,
    ) -> bool {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let epoch = self.assignment_epoch;
        let mut member = self.members.remove(member_id).expect("a member");
        let held = |t: TopicId, p: i32| self.held_by_other(member_id, t, p);
        let outcome = reconcile(&mut member, &target, epoch, &held, owned, now_ms);
        self.members.insert(member_id.to_string(), member);
        outcome.changed
    }

    /// Asserted after every input: no partition held by two members, epochs in order,
    /// a target for exactly the members, an instance id once.
    pub fn check_invariants(&self, group_id: &str) {
        if let Some(broken) = self.invariant_broken() {
            panic!("{group_id}: {broken}");
        }
    }

    /// The first invariant this group breaks, if any (loading refuses such a record).
    fn invariant_broken(&self) -> Option<String> {
        if self.assignment_epoch > self.group_epoch {
            return Some("assignment epoch ahead of the group epoch".into());
        }
        // Values a replayed record could carry that later arithmetic cannot take: an epoch
        // with no room to grow, a partition count out of range.
        if self.group_epoch < 0 || self.group_epoch >= i32::MAX / 2 {
            return Some(format!("group epoch {} out of range", self.group_epoch));
        }
        if let Some((name, _)) = self
            .subscribed_topics
            .iter()
            .find(|(_, (_, partitions))| !(0..=PARTITIONS_MAX).contains(partitions))
        {
            return Some(format!("topic {name} with a partition count out of range"));
        }
        let mut held: BTreeSet<(TopicId, i32)> = BTreeSet::new();
        let mut instances: BTreeSet<&String> = BTreeSet::new();
        for (id, member) in &self.members {
            if id != &member.member_id {
                return Some(format!("member {id} keyed by another id"));
            }
            if member.previous_member_epoch > self.assignment_epoch {
                return Some(format!(
                    "{id}'s previous epoch ahead of the assignment epoch"
                ));
            }
            if member.member_epoch > self.assignment_epoch {
                return Some(format!("{id} ahead of the assignment epoch"));
            }
            for key in pairs(&member.assigned)
                .into_iter()
                .chain(pairs(&member.revoking))
            {
                if !held.insert(key) {
                    return Some(format!("{key:?} held by two members"));
                }
            }
            if (member.state == MemberState::UnrevokedPartitions) == member.revoking.is_empty() {
                return Some(format!("{id} revoking outside UnrevokedPartitions"));
            }
            if let Some(instance) = &member.instance_id {
                if !instances.insert(instance) {
                    return Some(format!("instance id {instance} twice"));
                }
            }
        }
        if !self.target.keys().eq(self.members.keys()) {
            return Some("target and members differ".into());
        }
        None
    }
}

/// Equal in what is stored (member deadlines are not).
fn durable_eq(a: &ConsumerGroup, b: &ConsumerGroup) -> bool {
    let strip = |g: &ConsumerGroup| {
        let mut g = g.clone();
        for m in g.members.values_mut() {
            m.session_deadline_ms = 0;
            m.revocation_deadline_ms = None;
        }
        g
    };
    strip(a) == strip(b)
}

/// A subscription regex as Kafka applies it: to the whole topic name.
fn topic_regex(regex: &str) -> Result<regex::Regex, regex::Error> {
    // The pattern must stand alone: wrapped unchecked, `a)|(b` would compile as a
    // different expression.
    regex::Regex::new(regex)?;
    regex::Regex::new(&format!("^(?:{regex})$"))
}

impl ConsumerMember {
    /// The member's subscription regex, compiled: a predicate that takes a topic its
    /// regex matches (never an internal one, `__` first). None without a regex.
    fn regex_matcher(&self) -> Option<impl Fn(&str) -> bool> {
        let regex = topic_regex(self.subscribed_topic_regex.as_deref()?).ok()?;
        Some(move |topic: &str| !topic.starts_with("__") && regex.is_match(topic))
    }

    /// Whether the member subscribes to `topic`: by name, or by its regex, as Kafka counts
    /// a regex's topics among the group's subscribed ones.
    pub fn subscribes_to(&self, topic: &str) -> bool {
        self.subscribed_topic_names.contains(topic)
            || self.regex_matcher().is_some_and(|matches| matches(topic))
    }
}

/// The topics a member subscribes to: its names, and the topics of `topics` its regex
/// matches.
fn member_topics(member: &ConsumerMember, topics: &TopicsMetadata) -> BTreeSet<String> {
    let mut out = member.subscribed_topic_names.clone();
    if let Some(matches) = member.regex_matcher() {
        out.extend(topics.keys().filter(|t| matches(t)).cloned());
    }
    out
}

/// Why a heartbeat is refused: the code and Kafka's kind of message.
type Refusal = (i16, String);

fn refuse<T>(code: i16, message: &str) -> Result<T, Refusal> {
    Err((code, message.to_string()))
}

impl GroupCoordinator {
    /// ConsumerGroupHeartbeat. `Some` when answered at once; `None` when the change it
    /// made is being written (answered at `records_committed`).
    pub fn consumer_heartbeat(
        &mut self,
        token: RequestToken,
        request: &ConsumerHeartbeatRequest,
        now_ms: i64,
    ) -> Option<ConsumerHeartbeatResponse> {
        let before = self.consumer_epochs(&request.group_id);
        // The group as it is (restored if the heartbeat's write fails), and its consumer
        // state as the heartbeat finds it (a new one when the heartbeat creates or converts
        // the group), against which the heartbeat's change is judged.
        let existed = self
            .groups
            .get(&request.group_id)
            .map(|g| (g.protocol_type.clone(), g.consumer.clone()));
        let fresh = ConsumerGroup::new();
        let stored_before = existed
            .as_ref()
            .and_then(|(_, consumer)| consumer.as_deref())
            .unwrap_or(&fresh);
        let result = self.consumer_beat(request, now_ms, stored_before);
        let response = match result {
            Err((code, message)) => Some(ConsumerHeartbeatResponse::error(code, &message)),
            Ok((response, false)) => Some(response),
            Ok((response, true)) => {
                let group = &self.groups[&request.group_id];
                let record = consumer_group_record(group);
                let completion = Completion::ConsumerHeartbeat {
                    request: token,
                    response: Box::new(response),
                    before: Box::new(GroupBefore {
                        group_id: request.group_id.clone(),
                        existed,
                    }),
                };
                self.write(vec![record], completion);
                None
            }
        };
        self.check_consumer(&request.group_id, before);
        response
    }

    /// Put a consumer group back as it was before a heartbeat whose write failed: its
    /// consumer state, or the empty classic group it was converted from, or no group.
    pub(in crate::group) fn restore_consumer_group(&mut self, before: GroupBefore) {
        match before.existed {
            None => {
                // Created by the heartbeat: gone again, unless offsets were committed to
                // it meanwhile (then an empty group keeps them).
                let Some(group) = self.groups.get_mut(&before.group_id) else {
                    return;
                };
                if group.offsets.is_empty() && group.offsets_pending.is_empty() {
                    self.groups.remove(&before.group_id);
                } else {
                    group.protocol_type = None;
                    group.consumer = None;
                }
            }
            Some((protocol_type, mut consumer)) => {
                if let Some(group) = self.groups.get_mut(&before.group_id) {
                    // A session is a timer, not stored state (Kafka's timers are not part
                    // of what a failed write reverts): members keep the deadline their
                    // latest heartbeat gave them.
                    if let (Some(restored), Some(current)) =
                        (consumer.as_mut(), group.consumer.as_ref())
                    {
                        for (id, member) in restored.members.iter_mut() {
                            if let Some(now) = current.members.get(id) {
                                member.session_deadline_ms = now.session_deadline_ms;
                            }
                        }
                    }
                    group.protocol_type = protocol_type;
                    group.consumer = consumer;
                }
            }
        }
    }

    /// The heartbeat's answer and whether the group changed durably from `stored_before`.
    fn consumer_beat(
        &mut self,
        request: &ConsumerHeartbeatRequest,
        now_ms: i64,
        stored_before: &ConsumerGroup,
    ) -> Result<(ConsumerHeartbeatResponse, bool), Refusal> {
        validate(request)?;
        let member_id = if request.member_id.is_empty() {
            request.member_id_suffix.clone()
        } else {
            request.member_id.clone()
        };
        let size_max = self.config.consumer_group_size_max;
        let session_ms = i64::from(self.config.consumer_session_timeout_ms);
        let interval_ms = self.config.consumer_heartbeat_interval_ms;
        let group = self.consumer_group_for(request, now_ms)?;
        let answer =
            |member_epoch: i32, assignment: Option<Assignment>| ConsumerHeartbeatResponse {
                error: error_code::NONE,
                error_message: None,
                member_id: Some(member_id.clone()),
                member_epoch,
                heartbeat_interval_ms: interval_ms,
                assignment,
            };
        if request.member_epoch < 0 {
            let epoch = leave(group, &member_id, request)?;
            if epoch == LEAVE_EPOCH {
                group.bump(&request.topics);
            }
            let changed = !durable_eq(group, stored_before);
            return Ok((answer(epoch, None), changed));
        }
        let mut bump = join_or_check(group, &member_id, request, size_max)?;
        let member = group
            .members
            .get_mut(&member_id)
            .expect("joined or checked");
        member.session_deadline_ms = now_ms + session_ms;
        bump |= update_member(member, request);
        bump |= group.subscribed_metadata(&request.topics) != group.subscribed_topics;
        if bump {
            group.bump(&request.topics);
        }
        let owned = if request.member_epoch == 0 {
            Some(Assignment::new())
        } else {
            request.owned.clone()
        };
        let reconciled = group.reconcile_member(&member_id, owned.as_ref(), now_ms);
        let member = &group.members[&member_id];
        // Kafka's "full request" (a join, or a client resending everything after an error):
        // the assignment is then sent even if unchanged.
        let full = request.member_epoch == 0
            || (request.rebalance_timeout_ms != -1
                && request.subscribed_topic_names.is_some()
                && request.owned.is_some());
        let assignment = (reconciled || full).then(|| member.assigned.clone());
        let response = answer(member.member_epoch, assignment);
        let changed = !durable_eq(group, stored_before);
        Ok((response, changed))
    }

    /// The consumer group a heartbeat is for, created (or converted from an empty classic
    /// group) by a join.
    fn consumer_group_for(
        &mut self,
        request: &ConsumerHeartbeatRequest,
        now_ms: i64,
    ) -> Result<&mut ConsumerGroup, Refusal> {
        let joining = request.member_epoch == 0;
        let group_id = &request.group_id;
        if !self.groups.contains_key(group_id) {
            if !joining {
                return refuse(error_code::UNKNOWN_MEMBER_ID, "the group does not exist");
            }
            self.groups
                .insert(group_id.clone(), Group::new(group_id, now_ms));
        }
        let group = self.groups.get_mut(group_id).expect("present");
        if group.is(GroupState::Dead) {
            return refuse(
                error_code::COORDINATOR_NOT_AVAILABLE,
                "the group is being deleted",
            );
        }
        if group.consumer.is_none() {
            let empty = group.is(GroupState::Empty) && group.pending_members.is_empty();
            if !empty {
                return refuse(
                    error_code::GROUP_ID_NOT_FOUND,
                    "the group is a classic group",
                );
            }
            if !joining {
                return refuse(
                    error_code::UNKNOWN_MEMBER_ID,
                    "the member is not in the group",
                );
            }
            group.protocol_type = Some(CONSUMER_PROTOCOL_TYPE.to_string());
            group.consumer = Some(Box::new(ConsumerGroup::new()));
        }
        Ok(group.consumer.as_mut().expect("a consumer group"))
    }

    /// The timers of consumer groups: members past their session or, while revoking, past
    /// their rebalance timeout are removed (fenced) and the group moves to a new epoch.
    pub(super) fn tick_consumer(&mut self, group_id: &str, now_ms: i64) {
        let Some(group) = self
            .groups
            .get_mut(group_id)
            .and_then(|g| g.consumer.as_mut())
        else {
            return;
        };
        let expired: Vec<String> = group
            .members
            .values()
            .filter(|m| {
                m.session_deadline_ms <= now_ms
                    || m.revocation_deadline_ms.is_some_and(|d| d <= now_ms)
            })
            .map(|m| m.member_id.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        for member_id in &expired {
            crate::probe!(probe::GROUP_CONSUMER_MEMBER_FENCED);
            group.members.remove(member_id);
        }
        let topics = group.subscribed_topics.clone();
        group.bump(&topics);
        let record = consumer_group_record(&self.groups[group_id]);
        let completion = Completion::ConsumerTimers {
            group_id: group_id.to_string(),
        };
        self.write(vec![record], completion);
    }

    /// ConsumerGroupDescribe: the group, or GROUP_ID_NOT_FOUND for an unknown or classic one.
    pub fn consumer_group_describe(&self, group_id: &str) -> Result<&ConsumerGroup, i16> {
        valid_group_id(group_id)?;
        self.groups
            .get(group_id)
            .filter(|g| !g.is(GroupState::Dead))
            .and_then(|g| g.consumer.as_deref())
            .ok_or(error_code::GROUP_ID_NOT_FOUND)
    }

    /// OffsetCommit / OffsetFetch v9+ from a consumer group member: Ok when `member_epoch`
    /// is the member's epoch (commits from outside the group, epoch < 0 with an empty
    /// member id, are not checked here). Classic groups: Ok (checked elsewhere).
    pub(super) fn consumer_member_check(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
    ) -> Result<(), i16> {
        let Some(group) = self
            .groups
            .get(group_id)
            .and_then(|g| g.consumer.as_deref())
        else {
            return Ok(());
        };
        if member_epoch < 0 && member_id.is_empty() {
            return if group.members.is_empty() {
                Ok(())
            } else {
                Err(error_code::UNKNOWN_MEMBER_ID)
            };
        }
        let member = group
            .members
            .get(member_id)
            .ok_or(error_code::UNKNOWN_MEMBER_ID)?;
        if member.member_epoch != member_epoch {
            crate::probe!(probe::GROUP_CONSUMER_COMMIT_STALE_EPOCH);
            return Err(error_code::STALE_MEMBER_EPOCH);
        }
        Ok(())
    }

    /// OffsetFetch v9+ with a member id and epoch: the consumer-group check first.
    pub fn offset_fetch_member(
        &self,
        group_id: &str,
        member: Option<(&str, i32)>,
        partitions: Option<&[(String, i32)]>,
    ) -> OffsetFetchResponse {
        if let Some((member_id, epoch)) = member {
            if let Err(error) = self.consumer_member_check(group_id, member_id, epoch) {
                return OffsetFetchResponse {
                    error,
                    partitions: Vec::new(),
                };
            }
        }
        self.offset_fetch(group_id, partitions)
    }

    /// Every member epoch of a consumer group (to check they never go back).
    fn consumer_epochs(&self, group_id: &str) -> BTreeMap<String, i32> {
        self.groups
            .get(group_id)
            .and_then(|g| g.consumer.as_ref())
            .map(|c| {
                c.members
                    .iter()
                    .map(|(id, m)| (id.clone(), m.member_epoch))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn check_consumer(&self, group_id: &str, before: BTreeMap<String, i32>) {
        self.check(group_id, None);
        let Some(group) = self.groups.get(group_id).and_then(|g| g.consumer.as_ref()) else {
            return;
        };
        for (id, epoch) in before {
            if let Some(member) = group.members.get(&id) {
                assert!(
                    member.member_epoch >= epoch || member.member_epoch == STATIC_LEAVE_EPOCH,
                    "{group_id}: {id}'s epoch went back from {epoch} to {}",
                    member.member_epoch
                );
            }
        }
    }
}

/// Kafka's request checks (INVALID_REQUEST, UNSUPPORTED_ASSIGNOR), in its order.
fn validate(request: &ConsumerHeartbeatRequest) -> Result<(), Refusal> {
    // Kafka's "empty": no characters past trimming (Java's `trim`: code points up to ' ').
    let blank = |s: &str| s.trim_matches(|c: char| c <= ' ').is_empty();
    let epoch = request.member_epoch;
    if (request.version >= 1 || epoch > 0 || epoch == LEAVE_EPOCH) && blank(&request.member_id) {
        return refuse(error_code::INVALID_REQUEST, "MemberId can't be empty.");
    }
    if blank(&request.group_id) {
        return refuse(error_code::INVALID_REQUEST, "GroupId can't be empty.");
    }
    if request.instance_id.as_deref().is_some_and(blank) {
        return refuse(error_code::INVALID_REQUEST, "InstanceId can't be empty.");
    }
    if request.rack_id.as_deref().is_some_and(blank) {
        return refuse(error_code::INVALID_REQUEST, "RackId can't be empty.");
    }
    if epoch < STATIC_LEAVE_EPOCH {
        return refuse(error_code::INVALID_REQUEST, "MemberEpoch is invalid.");
    }
    if epoch == STATIC_LEAVE_EPOCH && request.instance_id.is_none() {
        return refuse(
            error_code::INVALID_REQUEST,
            "InstanceId can't be null when MemberEpoch is -2.",
        );
    }
    // An empty regex is "no regex" (librdkafka sends one with its topic names).
    if let Some(regex) = request
        .subscribed_topic_regex
        .as_deref()
        .filter(|r| !r.is_empty())
    {
        if let Err(e) = topic_regex(regex) {
            return refuse(
                error_code::INVALID_REGULAR_EXPRESSION,
                &format!("SubscribedTopicRegex {regex:?} is not a valid regular expression: {e}"),
            );
        }
    }
    if epoch == 0 {
        if request.rebalance_timeout_ms <= 0 {
            return refuse(
                error_code::INVALID_REQUEST,
                "RebalanceTimeoutMs must be provided in first request.",
            );
        }
        if request.subscribed_topic_names.is_none() && request.subscribed_topic_regex.is_none() {
            return refuse(
                error_code::INVALID_REQUEST,
                "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
            );
        }
        if request.owned.as_ref().is_some_and(|o| !o.is_empty()) {
            return refuse(
                error_code::INVALID_REQUEST,
                "TopicPartitions must be empty when (re-)joining.",
            );
        }
    }
    if let Some(name) = &request.server_assignor {
        if !ASSIGNORS.contains(&name.as_str()) {
            return refuse(
                error_code::UNSUPPORTED_ASSIGNOR,
                &format!("ServerAssignor {name} is not supported; supported: {ASSIGNORS:?}."),
            );
        }
    }
    Ok(())
}

/// A leave (MemberEpoch -1, or -2 for a static member): the epoch to answer with.
fn leave(
    group: &mut ConsumerGroup,
    member_id: &str,
    request: &ConsumerHeartbeatRequest,
) -> Result<i32, Refusal> {
    let Some(member) = group.members.get_mut(member_id) else {
        return refuse(
            error_code::UNKNOWN_MEMBER_ID,
            "the member is not in the group",
        );
    };
    if request.instance_id.is_some() && member.instance_id != request.instance_id {
        return refuse(
            error_code::FENCED_INSTANCE_ID,
            "the instance id belongs to another member",
        );
    }
    if request.member_epoch == STATIC_LEAVE_EPOCH && member.instance_id.is_some() {
        if member.member_epoch != STATIC_LEAVE_EPOCH {
            member.previous_member_epoch = member.member_epoch;
            member.member_epoch = STATIC_LEAVE_EPOCH;
        }
        return Ok(STATIC_LEAVE_EPOCH);
    }
    group.members.remove(member_id);
    group.target.remove(member_id);
    Ok(LEAVE_EPOCH)
}

/// Admits a joining member (epoch 0) or checks a known one's epoch and instance id.
/// True when the group epoch must move (a member joined).
fn join_or_check(
    group: &mut ConsumerGroup,
    member_id: &str,
    request: &ConsumerHeartbeatRequest,
    size_max: usize,
) -> Result<bool, Refusal> {
    let instance = request.instance_id.as_deref();
    if request.member_epoch > 0 {
        // A static member is found by its instance id, as Kafka does: a copy that was
        // replaced (its instance now held under another member id) is fenced, not unknown.
        let member = match instance {
            Some(instance) => match group.static_member(instance) {
                None => {
                    return refuse(
                        error_code::UNKNOWN_MEMBER_ID,
                        &format!("instance id {instance} is unknown"),
                    )
                }
                Some(m) if m.member_id != member_id => {
                    return refuse(
                        error_code::FENCED_INSTANCE_ID,
                        "the instance id belongs to another member",
                    )
                }
                Some(m) => m,
            },
            None => match group.members.get(member_id) {
                Some(m) => m,
                None => {
                    return refuse(
                        error_code::UNKNOWN_MEMBER_ID,
                        "the member is not in the group",
                    )
                }
            },
        };
        let epoch = request.member_epoch;
        let lost_answer = epoch == member.previous_member_epoch
            && request
                .owned
                .as_ref()
                .is_some_and(|o| is_subset(o, &member.assigned));
        if epoch > member.member_epoch || (epoch < member.member_epoch && !lost_answer) {
            crate::probe!(probe::GROUP_CONSUMER_MEMBER_FENCED);
            return refuse(
                error_code::FENCED_MEMBER_EPOCH,
                &format!("the member's epoch is {}", member.member_epoch),
            );
        }
        return Ok(false);
    }
    // A join. A static member takes over its instance's assignment if that left
    // temporarily; an active holder of the instance id is not replaced.
    if let Some(previous) = instance.and_then(|i| group.static_member(i)).cloned() {
        if previous.member_epoch != STATIC_LEAVE_EPOCH && previous.member_id != member_id {
            return refuse(
                error_code::UNRELEASED_INSTANCE_ID,
                "the instance id is still held by an active member",
            );
        }
        // The instance's state goes to `member_id`: never over another member's entry.
        if previous.member_id != member_id && group.members.contains_key(member_id) {
            return refuse(
                error_code::INVALID_REQUEST,
                "the member id is used by another member of the group",
            );
        }
        group.members.remove(&previous.member_id);
        let target = group.target.remove(&previous.member_id).unwrap_or_default();
        let mut member = previous;
        if member.member_epoch == STATIC_LEAVE_EPOCH {
            member.member_epoch = member.previous_member_epoch;
        }
        member.member_id = member_id.to_string();
        group.members.insert(member_id.to_string(), member);
        group.target.insert(member_id.to_string(), target);
        return Ok(false);
    }
    // A dynamic member rejoining under its id starts over: what it held is released.
    let rejoin = group.members.remove(member_id).is_some();
    group.target.remove(member_id);
    if !rejoin && group.members.len() >= size_max {
        return refuse(error_code::GROUP_MAX_SIZE_REACHED, "the group is full");
    }
    group.members.insert(
        member_id.to_string(),
        ConsumerMember {
            member_id: member_id.to_string(),
            instance_id: request.instance_id.clone(),
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            subscribed_topic_names: BTreeSet::new(),
            subscribed_topic_regex: None,
            server_assignor: None,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            member_epoch: 0,
            previous_member_epoch: -1,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            revoking: Assignment::new(),
            session_deadline_ms: 0,
            revocation_deadline_ms: None,
        },
    );
    group
        .target
        .insert(member_id.to_string(), Assignment::new());
    Ok(true)
}

/// Takes the request's non-null fields; true when the subscription changed.
fn update_member(member: &mut ConsumerMember, request: &ConsumerHeartbeatRequest) -> bool {
    member.client_id = request.client_id.clone();
    member.client_host = request.client_host.clone();
    if request.rebalance_timeout_ms > 0 {
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
    }
    if request.rack_id.is_some() {
        member.rack_id = request.rack_id.clone();
    }
    let mut changed = false;
    if let Some(names) = &request.subscribed_topic_names {
        let names: BTreeSet<String> = names.iter().cloned().collect();
        changed |= names != member.subscribed_topic_names;
        member.subscribed_topic_names = names;
    }
    if let Some(regex) = &request.subscribed_topic_regex {
        let regex = Some(regex.clone()).filter(|r| !r.is_empty());
        changed |= regex != member.subscribed_topic_regex;
        member.subscribed_topic_regex = regex;
    }
    if request.server_assignor.is_some() && request.server_assignor != member.server_assignor {
        member.server_assignor = request.server_assignor.clone();
        changed = true;
    }
    changed
}

/// The group's consumer state as one record.
pub(super) fn consumer_group_record(group: &Group) -> GroupRecord {
    GroupRecord::ConsumerGroup {
        group: group.group_id.clone(),
        state: Box::new(
            group
                .consumer
                .as_deref()
                .cloned()
                .expect("a consumer group"),
        ),
    }
}

/// The earliest deadline of a consumer group's members.
pub(super) fn consumer_deadline(group: &ConsumerGroup) -> Option<i64> {
    group
        .members
        .values()
        .flat_map(|m| std::iter::once(m.session_deadline_ms).chain(m.revocation_deadline_ms))
        .min()
}

/// A consumer group as loaded: every member's session starting at `now_ms`, members
/// revoking get their rebalance timeout again. None when the record breaks an invariant.
pub(super) fn loaded_consumer_group(
    state: &ConsumerGroup,
    session_ms: i32,
    now_ms: i64,
) -> Option<ConsumerGroup> {
    let mut group = state.clone();
    restart_timers(&mut group, session_ms, now_ms);
    group.invariant_broken().is_none().then_some(group)
}

/// Every member's session, and a revoking member's rebalance timeout, start at `now_ms`
/// (replayed, and again when the load completes and the group is served).
pub(super) fn restart_timers(group: &mut ConsumerGroup, session_ms: i32, now_ms: i64) {
    for member in group.members.values_mut() {
        member.session_deadline_ms = now_ms + i64::from(session_ms);
        member.revocation_deadline_ms = (member.state == MemberState::UnrevokedPartitions)
            .then(|| now_ms + i64::from(member.rebalance_timeout_ms));
    }
}
