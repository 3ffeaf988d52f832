//! One group's state: its members, generation, protocol and committed offsets, the rules
//! that only look at one group (protocol support and selection, leader choice, subscribed
//! topics), and its invariants. The coordinator (`mod.rs`) drives the transitions.

use super::records::MemberRecord;
use super::RequestToken;
use std::collections::{BTreeMap, BTreeSet};

/// Kafka's classic group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupState {
    /// No members; may hold committed offsets.
    Empty,
    /// A join phase is running: members must (re)join before it completes.
    PreparingRebalance,
    /// The join phase completed; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment for the current generation.
    Stable,
    /// Being deleted or unloaded: no request is served.
    Dead,
}

impl GroupState {
    /// Kafka's name of the state (ListGroups, DescribeGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// The state of a name (case-insensitive, as Kafka's ListGroups filter).
    pub fn parse(name: &str) -> Option<GroupState> {
        [
            GroupState::Empty,
            GroupState::PreparingRebalance,
            GroupState::CompletingRebalance,
            GroupState::Stable,
            GroupState::Dead,
        ]
        .into_iter()
        .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

/// A protocol a member supports, with its metadata (for consumers, the subscription).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Vec<u8>,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// In the member's order of preference.
    pub protocols: Vec<Protocol>,
    /// Set by the leader's SyncGroup for the current generation; None before.
    pub assignment: Option<Vec<u8>>,
    /// The member's JoinGroup waiting for the join phase to complete.
    pub join_parked: Option<RequestToken>,
    /// The member's SyncGroup waiting for the leader's assignment.
    pub sync_parked: Option<RequestToken>,
    /// When the member's session expires unless it is heard from.
    pub session_deadline_ms: i64,
    /// Joined during the current join phase and never completed one: a parked JoinGroup
    /// does not keep it alive (Kafka's `isNew`).
    pub is_new: bool,
}

impl Member {
    /// The member's metadata for `protocol` (empty if it does not support it).
    pub fn metadata(&self, protocol: &str) -> Vec<u8> {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    /// Does the member support exactly these protocols with this metadata?
    pub fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    /// A parked JoinGroup or SyncGroup keeps an established member alive (Kafka 3.x).
    pub fn kept_alive(&self) -> bool {
        !self.is_new && (self.join_parked.is_some() || self.sync_parked.is_some())
    }

    /// The member's first protocol among `candidates`.
    fn vote(&self, candidates: &BTreeSet<String>) -> Option<&str> {
        self.protocols
            .iter()
            .map(|p| p.name.as_str())
            .find(|name| candidates.contains(*name))
    }
}

/// A committed offset as the group holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// How the current join phase ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JoinPhase {
    /// Completes when every member has rejoined, or at `deadline_ms` (rebalance timeout).
    Normal { deadline_ms: i64 },
    /// `group.initial.rebalance.delay.ms` for a group that was Empty: never completes
    /// early; at `deadline_ms`, if a member joined meanwhile and time remains, waits again.
    InitialDelay {
        deadline_ms: i64,
        remaining_ms: i64,
        new_member_added: bool,
    },
}

impl JoinPhase {
    pub fn deadline_ms(self) -> i64 {
        match self {
            JoinPhase::Normal { deadline_ms } | JoinPhase::InitialDelay { deadline_ms, .. } => {
                deadline_ms
            }
        }
    }
}

/// One consumer group.
#[derive(Debug, Clone)]
pub(super) struct Group {
    pub group_id: String,
    pub state: GroupState,
    /// When `state` was entered.
    pub state_since_ms: i64,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id -> member id, for static members.
    pub static_members: BTreeMap<String, String>,
    /// KIP-394: member ids handed out with MEMBER_ID_REQUIRED, with their deadline.
    pub pending_members: BTreeMap<String, i64>,
    /// Set while `state` is PreparingRebalance.
    pub join_phase: Option<JoinPhase>,
    /// Members of the current generation that have not sent SyncGroup yet, and when they
    /// are removed for it (the rebalance timeout after the join phase completed).
    pub pending_sync: BTreeSet<String>,
    pub sync_deadline_ms: Option<i64>,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// Offset commits written but not yet committed: such partitions never expire.
    pub offsets_pending: BTreeMap<(String, i32), usize>,
    /// Set for a consumer group (KIP-848): the group then has no classic members.
    pub consumer: Option<Box<super::consumer::ConsumerGroup>>,
}

impl Group {
    pub fn new(group_id: &str, now_ms: i64) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            state_since_ms: now_ms,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            join_phase: None,
            pending_sync: BTreeSet::new(),
            sync_deadline_ms: None,
            offsets: BTreeMap::new(),
            offsets_pending: BTreeMap::new(),
            consumer: None,
        }
    }

    pub fn is(&self, state: GroupState) -> bool {
        self.state == state
    }

    pub fn transition(&mut self, state: GroupState, now_ms: i64) {
        if self.state != state {
            self.state = state;
            self.state_since_ms = now_ms;
        }
        if state != GroupState::PreparingRebalance {
            self.join_phase = None;
        }
    }

    /// The longest rebalance timeout of the members bounds a join phase.
    pub fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Could a member of this protocol type with these protocols be in the group? An
    /// empty group takes any non-empty type and protocol list; otherwise the type must be
    /// the group's and one protocol must be supported by every member.
    pub fn supports(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.is(GroupState::Empty) {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|p| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|q| q.name == p.name))
            })
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> BTreeSet<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return BTreeSet::new();
        };
        let mut candidates: BTreeSet<String> =
            first.protocols.iter().map(|p| p.name.clone()).collect();
        for member in members {
            candidates.retain(|c| member.protocols.iter().any(|p| &p.name == c));
        }
        candidates
    }

    /// Kafka's protocol selection: each member votes for its first protocol that every
    /// member supports; the most votes wins. Kafka breaks ties by hash-map order (in
    /// effect arbitrary); here the name that sorts first wins, so the choice is
    /// deterministic. None when no protocol is supported by all (never, for members the
    /// group admitted).
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(vote) = member.vote(&candidates) {
                *votes.entry(vote).or_default() += 1;
            }
        }
        let most = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, count)| *count == most)
            .map(|(name, _)| name.to_string())
    }

    /// Has every member rejoined, and no KIP-394 pending member is still expected?
    pub fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.join_parked.is_some())
    }

    /// Is `member_id` not the member registered under `instance_id`? (A request naming a
    /// known instance id with another member id comes from a fenced, replaced member.)
    pub fn static_member_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|i| self.static_members.get(i))
            .is_some_and(|current| current != member_id)
    }

    pub fn add_member(&mut self, member: Member) {
        if self.leader.is_none() {
            self.leader = Some(member.member_id.clone());
        }
        if let Some(instance) = &member.group_instance_id {
            self.static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        self.members.insert(member.member_id.clone(), member);
    }

    /// Removes a member; a new leader is the first remaining member. Returns it (its
    /// parked requests are the caller's to answer).
    pub fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let member = self.members.remove(member_id)?;
        if let Some(instance) = &member.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        self.pending_sync.remove(member_id);
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        Some(member)
    }

    /// The topics the members subscribe to, when the group is a consumer group whose every
    /// member's subscription parses; None when unknown.
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            topics.extend(consumer_subscription_topics(&member.metadata(protocol))?);
        }
        Some(topics)
    }

    /// Is some member consuming `topic`? Unknown subscriptions count as yes (Kafka).
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        self.subscribed_topics().is_none_or(|t| t.contains(topic))
    }

    pub fn member_record(&self, member: &Member) -> MemberRecord {
        let protocol = self.protocol_name.as_deref().unwrap_or("");
        MemberRecord {
            member_id: member.member_id.clone(),
            group_instance_id: member.group_instance_id.clone(),
            client_id: member.client_id.clone(),
            client_host: member.client_host.clone(),
            session_timeout_ms: member.session_timeout_ms,
            rebalance_timeout_ms: member.rebalance_timeout_ms,
            subscription: member.metadata(protocol),
            assignment: member.assignment.clone().unwrap_or_default(),
        }
    }

    /// The rules that hold after every change. A violation is a bug in the coordinator.
    pub fn check_invariants(&self) {
        let id = &self.group_id;
        assert!(self.generation >= 0, "{id}: negative generation");
        if let Some(consumer) = &self.consumer {
            assert!(
                self.members.is_empty()
                    && matches!(self.state, GroupState::Empty | GroupState::Dead),
                "{id}: a consumer group with classic members"
            );
            consumer.check_invariants(id);
        }
        for (member_id, member) in &self.members {
            assert_eq!(
                member_id, &member.member_id,
                "{id}: member keyed by another id"
            );
            assert!(
                !self.pending_members.contains_key(member_id),
                "{id}: {member_id} both member and pending"
            );
            if let Some(instance) = &member.group_instance_id {
                assert_eq!(
                    self.static_members.get(instance),
                    Some(member_id),
                    "{id}: static member {instance} not mapped to {member_id}"
                );
            }
            if member.join_parked.is_some() {
                assert!(
                    self.is(GroupState::PreparingRebalance),
                    "{id}: join parked in {:?}",
                    self.state
                );
            }
            if member.sync_parked.is_some() {
                assert!(
                    self.is(GroupState::CompletingRebalance),
                    "{id}: sync parked in {:?}",
                    self.state
                );
            }
        }
        for (instance, member_id) in &self.static_members {
            let member = self.members.get(member_id);
            assert!(
                member.is_some_and(|m| m.group_instance_id.as_deref() == Some(instance)),
                "{id}: instance {instance} maps to {member_id}, not a member with that instance id"
            );
        }
        assert!(self
            .pending_sync
            .iter()
            .all(|m| self.members.contains_key(m)));
        assert_eq!(
            self.join_phase.is_some(),
            self.is(GroupState::PreparingRebalance),
            "{id}: a join phase exactly while preparing a rebalance"
        );
        match self.state {
            GroupState::Empty | GroupState::Dead => {
                assert!(
                    self.members.is_empty(),
                    "{id}: {:?} with members",
                    self.state
                );
            }
            GroupState::PreparingRebalance => {}
            GroupState::CompletingRebalance | GroupState::Stable => {
                assert!(self.generation > 0, "{id}: a generation completed");
                assert!(self.protocol_name.is_some(), "{id}: no protocol selected");
                let leader = self
                    .leader
                    .as_ref()
                    .expect("a completed generation has a leader");
                assert!(
                    self.members.contains_key(leader),
                    "{id}: leader {leader} not a member"
                );
            }
        }
        if self.is(GroupState::Stable) {
            for member in self.members.values() {
                assert!(
                    member.assignment.is_some(),
                    "{id}: Stable but {} has no assignment",
                    member.member_id
                );
            }
        }
        if let Some(leader) = &self.leader {
            assert!(
                self.members.contains_key(leader),
                "{id}: leader {leader} not a member"
            );
        } else {
            assert!(self.members.is_empty(), "{id}: members without a leader");
        }
    }
}

/// The protocol type of Kafka's consumers.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// The topics of a consumer's subscription (ConsumerProtocolSubscription, any version:
/// an i16 version, then an i32 count of i16-length-prefixed topic names; what follows is
/// not needed). None when it does not parse.
pub fn consumer_subscription_topics(bytes: &[u8]) -> Option<Vec<String>> {
    let mut rest = bytes;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let _version = i16::from_be_bytes(take(2)?.try_into().ok()?);
    let count = i32::from_be_bytes(take(4)?.try_into().ok()?);
    let count = usize::try_from(count).ok()?;
    // Each name takes at least two bytes: a count beyond that is malformed, not a reason
    // to reserve memory.
    if count > bytes.len() / 2 {
        return None;
    }
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        let length = i16::from_be_bytes(take(2)?.try_into().ok()?);
        let name = take(usize::try_from(length).ok()?)?;
        topics.push(String::from_utf8(name.to_vec()).ok()?);
    }
    Some(topics)
}

/// A consumer subscription to `topics` (version 0), for tests and tools.
pub fn consumer_subscription(topics: &[&str]) -> Vec<u8> {
    let mut bytes = 0i16.to_be_bytes().to_vec();
    bytes.extend((topics.len() as i32).to_be_bytes());
    for topic in topics {
        bytes.extend((topic.len() as i16).to_be_bytes());
        bytes.extend(topic.as_bytes());
    }
    bytes.extend((-1i32).to_be_bytes()); // no user data
    bytes
}
