//! Durability: what each write's outcome releases (`Completion`), the records a group
//! writes, and rebuilding groups from the log (`replay`) or dropping them (`unload`).

use super::join::{join_response, rename_member};
use super::membership::{CommittedOffset, Group, GroupState, Member, Protocol};
use super::*;
use crate::probe;

/// What waits on a write.
#[derive(Debug, Clone)]
pub(super) enum Completion {
    /// Nothing waits (a join phase that emptied the group, expired offsets).
    Nothing,
    /// A consumer group's timers changed it (members fenced): nothing waits, but the write
    /// stores the group whole, like a heartbeat's.
    ConsumerTimers { group_id: String },
    /// Offsets to apply and the commit to answer.
    OffsetCommit {
        request: RequestToken,
        group_id: String,
        offsets: Vec<(String, i32, CommittedOffset)>,
        /// The request's partitions with the errors already decided (0 for written ones).
        results: Vec<PartitionError>,
    },
    /// The leader's assignment for `generation`.
    Assignment {
        group_id: String,
        generation: i32,
        assignments: BTreeMap<String, Vec<u8>>,
    },
    /// A static member replaced in a stable group; reverted if the write fails.
    StaticReplace {
        request: RequestToken,
        group_id: String,
        old_member: Box<Member>,
        new_member_id: String,
        leader_before: String,
    },
    OffsetDelete {
        request: RequestToken,
        group_id: String,
        partitions: Vec<(String, i32)>,
        results: Vec<PartitionError>,
    },
    /// A consumer group heartbeat whose change is being written, and the group as it was
    /// before it (restored if the write fails).
    ConsumerHeartbeat {
        request: RequestToken,
        response: Box<consumer::ConsumerHeartbeatResponse>,
        before: Box<consumer::GroupBefore>,
    },
    /// Groups marked Dead, removed when committed; `states` to restore on failure.
    DeleteGroups {
        request: RequestToken,
        results: Vec<(String, i16)>,
        states: Vec<(String, i64)>,
    },
}

impl Completion {
    /// The consumer group (KIP-848) a write stores whole, if it is one.
    fn consumer_group(&self) -> Option<&str> {
        match self {
            Completion::ConsumerHeartbeat { before, .. } => Some(&before.group_id),
            Completion::ConsumerTimers { group_id } => Some(group_id),
            _ => None,
        }
    }
}

/// The group's current generation as a GroupMetadata record.
pub(super) fn group_metadata_record(group: &Group, now_ms: i64) -> GroupRecord {
    GroupRecord::GroupMetadata {
        group: group.group_id.clone(),
        protocol_type: group.protocol_type.clone(),
        protocol: group.protocol_name.clone(),
        generation: group.generation,
        leader: group.leader.clone(),
        state_timestamp_ms: now_ms,
        members: group
            .members
            .values()
            .map(|m| group.member_record(m))
            .collect(),
    }
}

impl GroupCoordinator {
    /// The records of `token` are committed: release what waited on them.
    pub fn records_committed(&mut self, token: WriteToken, now_ms: i64) {
        let before = self.generations();
        if let Some(completion) = self.in_flight.remove(&token) {
            self.complete(completion, now_ms);
        }
        self.check_all(&before);
    }

    /// The records of `token` could not be written: what waited is answered with `error`
    /// and nothing they described takes effect.
    pub fn records_failed(&mut self, token: WriteToken, error: i16, now_ms: i64) {
        let before = self.generations();
        if let Some(completion) = self.in_flight.remove(&token) {
            self.fail(completion, error, now_ms);
        }
        self.check_all(&before);
    }

    fn complete(&mut self, completion: Completion, now_ms: i64) {
        match completion {
            Completion::Nothing | Completion::ConsumerTimers { .. } => {}
            Completion::ConsumerHeartbeat {
                request, response, ..
            } => {
                self.respond(request, Response::ConsumerGroupHeartbeat(*response));
            }
            Completion::OffsetCommit {
                request,
                group_id,
                offsets,
                results,
            } => {
                if let Some(group) = self.groups.get_mut(&group_id) {
                    for (topic, partition, offset) in offsets {
                        release_pending(group, &topic, partition);
                        if !group.is(GroupState::Dead) {
                            group.offsets.insert((topic, partition), offset);
                        }
                    }
                }
                let response = OffsetCommitResponse {
                    partitions: results,
                };
                self.respond(request, Response::OffsetCommit(response));
            }
            Completion::Assignment {
                group_id,
                generation,
                assignments,
            } => {
                self.assignment_committed(&group_id, generation, &assignments, now_ms);
            }
            Completion::StaticReplace {
                request,
                group_id,
                new_member_id,
                leader_before,
                ..
            } => {
                let response = match self.groups.get(&group_id) {
                    Some(group) if group.members.contains_key(&new_member_id) => {
                        let mut response = join_response(group, &new_member_id, false);
                        response.leader = leader_before;
                        response
                    }
                    _ => JoinGroupResponse::error(&new_member_id, error_code::UNKNOWN_MEMBER_ID),
                };
                self.respond(request, Response::JoinGroup(response));
            }
            Completion::OffsetDelete {
                request,
                group_id,
                partitions,
                results,
            } => {
                if let Some(group) = self.groups.get_mut(&group_id) {
                    for key in partitions {
                        group.offsets.remove(&key);
                    }
                }
                let response = OffsetDeleteResponse {
                    error: error_code::NONE,
                    partitions: results,
                };
                self.respond(request, Response::OffsetDelete(response));
            }
            Completion::DeleteGroups {
                request,
                results,
                states,
            } => {
                for (group_id, _) in states {
                    if self
                        .groups
                        .get(&group_id)
                        .is_some_and(|g| g.is(GroupState::Dead))
                    {
                        self.groups.remove(&group_id);
                    }
                }
                self.respond(
                    request,
                    Response::DeleteGroups(DeleteGroupsResponse { groups: results }),
                );
            }
        }
    }

    /// The leader's assignment is durable: the group becomes Stable, parked syncs get
    /// their member's assignment (unless the generation moved on meanwhile).
    fn assignment_committed(
        &mut self,
        group_id: &str,
        generation: i32,
        assignments: &BTreeMap<String, Vec<u8>>,
        now_ms: i64,
    ) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        if !group.is(GroupState::CompletingRebalance) || group.generation != generation {
            return;
        }
        let mut answers = Vec::new();
        for member in group.members.values_mut() {
            let assignment = assignments
                .get(&member.member_id)
                .cloned()
                .unwrap_or_default();
            member.assignment = Some(assignment.clone());
            if let Some(token) = member.sync_parked.take() {
                answers.push((token, assignment));
            }
        }
        group.transition(GroupState::Stable, now_ms);
        let (protocol_type, protocol_name) =
            (group.protocol_type.clone(), group.protocol_name.clone());
        for (token, assignment) in answers {
            let response = SyncGroupResponse {
                error: error_code::NONE,
                protocol_type: protocol_type.clone(),
                protocol_name: protocol_name.clone(),
                assignment,
            };
            self.respond(token, Response::SyncGroup(response));
        }
    }

    fn fail(&mut self, completion: Completion, error: i16, now_ms: i64) {
        match completion {
            Completion::Nothing | Completion::ConsumerTimers { .. } => {}
            Completion::ConsumerHeartbeat {
                request, before, ..
            } => {
                // Nothing the failed write described takes effect: the group goes back to
                // what it was, unless a later write of it is in flight (each write stores
                // the group whole, so that one carries this change too and decides).
                let later = self
                    .in_flight
                    .values()
                    .any(|c| c.consumer_group() == Some(before.group_id.as_str()));
                if !later {
                    crate::probe!(probe::GROUP_CONSUMER_WRITE_REVERTED);
                    self.restore_consumer_group(*before);
                }
                let response = consumer::ConsumerHeartbeatResponse {
                    error,
                    error_message: None,
                    member_id: None,
                    member_epoch: -1,
                    heartbeat_interval_ms: 0,
                    assignment: None,
                };
                self.respond(request, Response::ConsumerGroupHeartbeat(response));
            }
            Completion::OffsetCommit {
                request,
                group_id,
                offsets,
                results,
            } => {
                if let Some(group) = self.groups.get_mut(&group_id) {
                    for (topic, partition, _) in &offsets {
                        release_pending(group, topic, *partition);
                    }
                }
                let partitions = results
                    .into_iter()
                    .map(|(t, p, e)| (t, p, if e == error_code::NONE { error } else { e }))
                    .collect();
                self.respond(
                    request,
                    Response::OffsetCommit(OffsetCommitResponse { partitions }),
                );
            }
            Completion::Assignment {
                group_id,
                generation,
                ..
            } => {
                let current = self.groups.get(&group_id).filter(|g| {
                    g.is(GroupState::CompletingRebalance) && g.generation == generation
                });
                if current.is_some() {
                    self.reset_assignments(&group_id, error);
                    self.maybe_prepare_rebalance(&group_id, now_ms);
                }
            }
            Completion::StaticReplace {
                request,
                group_id,
                old_member,
                new_member_id,
                leader_before,
            } => {
                self.revert_static_replace(&group_id, &old_member, &new_member_id);
                let mut response = JoinGroupResponse::error("", error);
                if let Some(group) = self.groups.get(&group_id) {
                    response.generation_id = group.generation;
                    response.protocol_type = group.protocol_type.clone();
                    response.protocol_name = group.protocol_name.clone();
                }
                response.leader = leader_before;
                self.respond(request, Response::JoinGroup(response));
            }
            Completion::OffsetDelete {
                request, results, ..
            } => {
                let partitions = results
                    .into_iter()
                    .map(|(t, p, e)| (t, p, if e == error_code::NONE { error } else { e }))
                    .collect();
                let response = OffsetDeleteResponse {
                    error: error_code::NONE,
                    partitions,
                };
                self.respond(request, Response::OffsetDelete(response));
            }
            Completion::DeleteGroups {
                request,
                results,
                states,
            } => {
                for (group_id, since_ms) in &states {
                    if let Some(group) = self
                        .groups
                        .get_mut(group_id)
                        .filter(|g| g.is(GroupState::Dead))
                    {
                        group.state = GroupState::Empty;
                        group.state_since_ms = *since_ms;
                    }
                }
                let deleted: Vec<&String> = states.iter().map(|(g, _)| g).collect();
                let groups = results
                    .into_iter()
                    .map(|(g, e)| {
                        let failed = deleted.contains(&&g);
                        (g, if failed { error } else { e })
                    })
                    .collect();
                self.respond(
                    request,
                    Response::DeleteGroups(DeleteGroupsResponse { groups }),
                );
            }
        }
    }

    /// The static member's old id comes back, as it was before the replacement.
    fn revert_static_replace(&mut self, group_id: &str, old_member: &Member, new_member_id: &str) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        if !group.members.contains_key(new_member_id) {
            return;
        }
        rename_member(group, new_member_id, &old_member.member_id);
        let member = group
            .members
            .get_mut(&old_member.member_id)
            .expect("renamed back");
        member.protocols = old_member.protocols.clone();
        member.session_timeout_ms = old_member.session_timeout_ms;
        member.rebalance_timeout_ms = old_member.rebalance_timeout_ms;
    }

    /// Rebuilds state from one `__consumer_offsets` record, in log order, while loading.
    /// A record that cannot describe a valid group is refused (false); nothing panics.
    pub fn replay(&mut self, record: &GroupRecord, now_ms: i64) -> bool {
        let group_id = record.group().to_string();
        if group_id.is_empty() {
            return false;
        }
        let applied = self.apply(record, now_ms);
        // No generation check: a tombstone and a new group legitimately start again at 0.
        self.check(&group_id, None);
        applied
    }

    fn apply(&mut self, record: &GroupRecord, now_ms: i64) -> bool {
        match record {
            GroupRecord::OffsetCommit {
                group,
                topic,
                partition,
                offset,
                leader_epoch,
                metadata,
                commit_timestamp_ms,
            } => {
                let entry = self
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(group, *commit_timestamp_ms));
                let committed = CommittedOffset {
                    offset: *offset,
                    leader_epoch: *leader_epoch,
                    metadata: metadata.clone(),
                    commit_timestamp_ms: *commit_timestamp_ms,
                };
                entry.offsets.insert((topic.clone(), *partition), committed);
                true
            }
            GroupRecord::OffsetTombstone {
                group,
                topic,
                partition,
            } => {
                if let Some(entry) = self.groups.get_mut(group) {
                    entry.offsets.remove(&(topic.clone(), *partition));
                }
                true
            }
            GroupRecord::GroupMetadata { .. } => self.load_group_metadata(record, now_ms),
            GroupRecord::GroupTombstone { group } => {
                self.drop_group(group);
                true
            }
            GroupRecord::ConsumerGroup { group, state } => {
                let session_ms = self.config.consumer_session_timeout_ms;
                let Some(loaded) = consumer::loaded_consumer_group(state, session_ms, now_ms)
                else {
                    return false;
                };
                let mut entry = Group::new(group, now_ms);
                entry.protocol_type = Some(CONSUMER_PROTOCOL_TYPE.to_string());
                entry.consumer = Some(Box::new(loaded));
                self.replace_loaded_group(group, entry);
                true
            }
        }
    }

    fn load_group_metadata(&mut self, record: &GroupRecord, now_ms: i64) -> bool {
        let GroupRecord::GroupMetadata {
            group,
            protocol_type,
            protocol,
            generation,
            leader,
            state_timestamp_ms,
            members,
        } = record
        else {
            return false;
        };
        let Some(loaded) = group_from_record(
            group,
            protocol_type,
            protocol,
            *generation,
            leader,
            *state_timestamp_ms,
            members,
            now_ms,
        ) else {
            return false;
        };
        self.replace_loaded_group(group, loaded);
        true
    }

    /// A group record replayed: `entry` replaces the group, keeping the offsets replayed
    /// before it (offsets are records of their own).
    fn replace_loaded_group(&mut self, group_id: &str, mut entry: Group) {
        crate::probe!(probe::GROUP_LOADED);
        let offsets = self
            .groups
            .get(group_id)
            .map(|g| g.offsets.clone())
            .unwrap_or_default();
        self.drop_group(group_id);
        entry.offsets = offsets;
        self.groups.insert(group_id.to_string(), entry);
    }

    /// The groups of `group_ids` are served from now on (their partition finished
    /// loading): every member's session starts again at `now_ms`, as Kafka schedules each
    /// loaded member's heartbeat expiration when the load completes. Heartbeats that arrived
    /// during the load were answered without touching the group.
    pub fn loaded(&mut self, group_ids: &[String], now_ms: i64) {
        let consumer_session_ms = self.config.consumer_session_timeout_ms;
        for group_id in group_ids {
            if let Some(group) = self.groups.get_mut(group_id) {
                for member in group.members.values_mut() {
                    member.session_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                }
                // A KIP-848 group's members: sessions and revocation timeouts start again.
                if let Some(consumer) = group.consumer.as_deref_mut() {
                    consumer::restart_timers(consumer, consumer_session_ms, now_ms);
                }
            }
        }
    }

    /// Drops groups this coordinator no longer owns; their parked requests are answered
    /// with NOT_COORDINATOR.
    pub fn unload(&mut self, group_ids: &[String]) {
        for group_id in group_ids {
            self.drop_group(group_id);
        }
    }

    fn drop_group(&mut self, group_id: &str) {
        let Some(group) = self.groups.remove(group_id) else {
            return;
        };
        let error = error_code::NOT_COORDINATOR;
        for member in group.members.values() {
            if let Some(join) = member.join_parked {
                self.respond(
                    join,
                    Response::JoinGroup(JoinGroupResponse::error(&member.member_id, error)),
                );
            }
            if let Some(sync) = member.sync_parked {
                self.respond(sync, Response::SyncGroup(SyncGroupResponse::error(error)));
            }
        }
    }
}

fn release_pending(group: &mut Group, topic: &str, partition: i32) {
    let key = (topic.to_string(), partition);
    if let Some(count) = group.offsets_pending.get_mut(&key) {
        *count -= 1;
        if *count == 0 {
            group.offsets_pending.remove(&key);
        }
    }
}

/// A group as a GroupMetadata record describes it: Empty without members, else Stable in
/// that generation with every member's session starting now. None for a record no valid
/// group fits (negative generation, members without a protocol, duplicate ids).
#[allow(clippy::too_many_arguments)]
fn group_from_record(
    group_id: &str,
    protocol_type: &Option<String>,
    protocol: &Option<String>,
    generation: i32,
    leader: &Option<String>,
    state_timestamp_ms: i64,
    members: &[MemberRecord],
    now_ms: i64,
) -> Option<Group> {
    if generation < 0 || (!members.is_empty() && (protocol.is_none() || generation == 0)) {
        return None;
    }
    let mut group = Group::new(group_id, state_timestamp_ms);
    group.generation = generation;
    group.protocol_type = protocol_type.clone();
    group.protocol_name = if members.is_empty() {
        None
    } else {
        protocol.clone()
    };
    let protocol_name = protocol.clone().unwrap_or_default();
    for record in members {
        let instance_taken = record
            .group_instance_id
            .as_ref()
            .is_some_and(|i| group.static_members.contains_key(i));
        if group.members.contains_key(&record.member_id) || instance_taken {
            return None;
        }
        group.add_member(Member {
            member_id: record.member_id.clone(),
            group_instance_id: record.group_instance_id.clone(),
            client_id: record.client_id.clone(),
            client_host: record.client_host.clone(),
            session_timeout_ms: record.session_timeout_ms,
            rebalance_timeout_ms: record.rebalance_timeout_ms,
            protocols: vec![Protocol {
                name: protocol_name.clone(),
                metadata: record.subscription.clone(),
            }],
            assignment: Some(record.assignment.clone()),
            join_parked: None,
            sync_parked: None,
            session_deadline_ms: now_ms + i64::from(record.session_timeout_ms),
            is_new: false,
        });
    }
    if let Some(leader) = leader.as_ref().filter(|l| group.members.contains_key(*l)) {
        group.leader = Some(leader.clone());
    }
    if !group.members.is_empty() {
        group.state = GroupState::Stable;
    }
    Some(group)
}
