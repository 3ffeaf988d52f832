//! Offsets and administration: OffsetCommit, OffsetFetch, OffsetDelete, offset expiry
//! (KIP-211), DeleteGroups, ListGroups, DescribeGroups.

use super::membership::{CommittedOffset, Group, GroupState};
use super::persist::Completion;
use super::*;
use crate::probe;

impl GroupCoordinator {
    /// OffsetCommit. `Some` when every partition is refused at once; `None` when the
    /// accepted partitions were written: the answer comes after `records_committed`.
    pub fn offset_commit(
        &mut self,
        token: RequestToken,
        request: &OffsetCommitRequest,
        now_ms: i64,
    ) -> Option<OffsetCommitResponse> {
        let before = self.generation(&request.group_id);
        let refusal = self.commit_refusal(request, now_ms);
        let response = match refusal {
            Err(error) => {
                if error == error_code::ILLEGAL_GENERATION {
                    crate::probe!(probe::GROUP_COMMIT_STALE_GENERATION);
                }
                let partitions = request
                    .partitions
                    .iter()
                    .map(|p| (p.topic.clone(), p.partition, error))
                    .collect();
                Some(OffsetCommitResponse { partitions })
            }
            Ok(()) => self.store_offsets(token, request, now_ms),
        };
        self.check(&request.group_id, before);
        response
    }

    /// Kafka's checks of a commit, in its order; an unknown group is created for a
    /// commit from outside group management (negative generation).
    fn commit_refusal(&mut self, request: &OffsetCommitRequest, now_ms: i64) -> Result<(), i16> {
        valid_group_id(&request.group_id)?;
        if !self.groups.contains_key(&request.group_id) {
            if request.generation_id >= 0 {
                // Kafka keeps ILLEGAL_GENERATION for old versions; v9 clients, of either
                // protocol, are told the group does not exist.
                return Err(if request.api_version >= 9 {
                    error_code::GROUP_ID_NOT_FOUND
                } else {
                    error_code::ILLEGAL_GENERATION
                });
            }
            let group = Group::new(&request.group_id, now_ms);
            self.groups.insert(request.group_id.clone(), group);
        }
        let group = self.groups.get_mut(&request.group_id).expect("present");
        let instance = request.group_instance_id.as_deref();
        if group.is(GroupState::Dead) {
            return Err(error_code::COORDINATOR_NOT_AVAILABLE);
        }
        if group.consumer.is_some() {
            let (member_id, epoch) = (&request.member_id, request.generation_id);
            return match self.consumer_member_check(&request.group_id, member_id, epoch) {
                // A consumer-protocol member commits with v9 or above; Kafka answers an
                // older version's stale epoch UNSUPPORTED_VERSION (no upgrade path).
                Err(error_code::STALE_MEMBER_EPOCH) if request.api_version < 9 => {
                    Err(error_code::UNSUPPORTED_VERSION)
                }
                checked => checked,
            };
        }
        if group.static_member_fenced(instance, &request.member_id) {
            return Err(error_code::FENCED_INSTANCE_ID);
        }
        if request.generation_id < 0 && group.is(GroupState::Empty) {
            return Ok(());
        }
        let Some(member) = group.members.get_mut(&request.member_id) else {
            return Err(error_code::UNKNOWN_MEMBER_ID);
        };
        if request.generation_id != group.generation {
            return Err(error_code::ILLEGAL_GENERATION);
        }
        match group.state {
            GroupState::Stable | GroupState::PreparingRebalance => {
                member.session_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                Ok(())
            }
            GroupState::CompletingRebalance => Err(error_code::REBALANCE_IN_PROGRESS),
            GroupState::Empty | GroupState::Dead => unreachable!("members exist"),
        }
    }

    fn store_offsets(
        &mut self,
        token: RequestToken,
        request: &OffsetCommitRequest,
        now_ms: i64,
    ) -> Option<OffsetCommitResponse> {
        let metadata_max = self.config.offset_metadata_bytes_max;
        let group = self.groups.get_mut(&request.group_id).expect("checked");
        let mut results = Vec::new();
        let mut records = Vec::new();
        let mut offsets = Vec::new();
        for p in &request.partitions {
            if p.metadata.len() > metadata_max {
                results.push((
                    p.topic.clone(),
                    p.partition,
                    error_code::OFFSET_METADATA_TOO_LARGE,
                ));
                continue;
            }
            results.push((p.topic.clone(), p.partition, error_code::NONE));
            records.push(GroupRecord::OffsetCommit {
                group: request.group_id.clone(),
                topic: p.topic.clone(),
                partition: p.partition,
                offset: p.offset,
                leader_epoch: p.leader_epoch,
                metadata: p.metadata.clone(),
                commit_timestamp_ms: now_ms,
            });
            let committed = CommittedOffset {
                offset: p.offset,
                leader_epoch: p.leader_epoch,
                metadata: p.metadata.clone(),
                commit_timestamp_ms: now_ms,
            };
            *group
                .offsets_pending
                .entry((p.topic.clone(), p.partition))
                .or_default() += 1;
            offsets.push((p.topic.clone(), p.partition, committed));
        }
        if records.is_empty() {
            return Some(OffsetCommitResponse {
                partitions: results,
            });
        }
        let completion = Completion::OffsetCommit {
            request: token,
            group_id: request.group_id.clone(),
            offsets,
            results,
        };
        self.write(records, completion);
        None
    }

    /// OffsetFetch: the committed offsets of `partitions`, or of every partition when
    /// None. Partitions without a committed offset answer offset -1; an unknown group
    /// has none.
    pub fn offset_fetch(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> OffsetFetchResponse {
        if let Err(error) = valid_group_id(group_id) {
            return OffsetFetchResponse {
                error,
                partitions: Vec::new(),
            };
        }
        let offsets = self
            .groups
            .get(group_id)
            .filter(|g| !g.is(GroupState::Dead))
            .map(|g| &g.offsets);
        let fetched = |(topic, partition): &(String, i32), committed: Option<&CommittedOffset>| {
            FetchedOffset {
                topic: topic.clone(),
                partition: *partition,
                offset: committed.map_or(-1, |c| c.offset),
                leader_epoch: committed.map_or(-1, |c| c.leader_epoch),
                metadata: committed.map(|c| c.metadata.clone()).unwrap_or_default(),
            }
        };
        let partitions = match partitions {
            Some(asked) => asked
                .iter()
                .map(|key| fetched(key, offsets.and_then(|o| o.get(key))))
                .collect(),
            None => offsets
                .into_iter()
                .flatten()
                .map(|(key, committed)| fetched(key, Some(committed)))
                .collect(),
        };
        OffsetFetchResponse {
            error: error_code::NONE,
            partitions,
        }
    }

    /// OffsetDelete (KIP-496): `Some` when answered at once; `None` when tombstones were
    /// written: the answer comes after `records_committed`.
    pub fn offset_delete(
        &mut self,
        token: RequestToken,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Option<OffsetDeleteResponse> {
        let whole = |error: i16| {
            Some(OffsetDeleteResponse {
                error,
                partitions: Vec::new(),
            })
        };
        if let Err(error) = valid_group_id(group_id) {
            return whole(error);
        }
        let Some(group) = self
            .groups
            .get(group_id)
            .filter(|g| !g.is(GroupState::Dead))
        else {
            return whole(error_code::GROUP_ID_NOT_FOUND);
        };
        let consumer = group.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE);
        if !group.is(GroupState::Empty) && !consumer {
            return whole(error_code::NON_EMPTY_GROUP);
        }
        let mut results = Vec::new();
        let mut removed = Vec::new();
        let mut records = Vec::new();
        // A KIP-848 group's members subscribe by topic name or regex in their own state.
        let consumer_subscribed = |topic: &str| {
            group
                .consumer
                .as_ref()
                .is_some_and(|c| c.members.values().any(|m| m.subscribes_to(topic)))
        };
        for (topic, partition) in partitions {
            let classic_subscribed = !group.is(GroupState::Empty) && group.is_subscribed_to(topic);
            if classic_subscribed || consumer_subscribed(topic) {
                results.push((
                    topic.clone(),
                    *partition,
                    error_code::GROUP_SUBSCRIBED_TO_TOPIC,
                ));
                continue;
            }
            results.push((topic.clone(), *partition, error_code::NONE));
            let key = (topic.clone(), *partition);
            if group.offsets.contains_key(&key) && !removed.contains(&key) {
                records.push(GroupRecord::OffsetTombstone {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                });
                removed.push(key);
            }
        }
        if records.is_empty() {
            return Some(OffsetDeleteResponse {
                error: error_code::NONE,
                partitions: results,
            });
        }
        let completion = Completion::OffsetDelete {
            request: token,
            group_id: group_id.to_string(),
            partitions: removed,
            results,
        };
        self.write(records, completion);
        None
    }

    /// DeleteGroups: only Empty groups can go (NON_EMPTY_GROUP otherwise, GROUP_ID_NOT_FOUND
    /// for unknown ones). They turn Dead at once and disappear when their tombstones are
    /// committed. `Some` when nothing had to be written.
    pub fn delete_groups(
        &mut self,
        token: RequestToken,
        group_ids: &[String],
        now_ms: i64,
    ) -> Option<DeleteGroupsResponse> {
        let mut results = Vec::new();
        let mut records = Vec::new();
        let mut states = Vec::new();
        for group_id in group_ids {
            let error = match self.groups.get_mut(group_id) {
                _ if group_id.is_empty() => error_code::INVALID_GROUP_ID,
                None => error_code::GROUP_ID_NOT_FOUND,
                Some(group)
                    if group
                        .consumer
                        .as_ref()
                        .is_some_and(|c| !c.members.is_empty()) =>
                {
                    error_code::NON_EMPTY_GROUP
                }
                Some(group) => match group.state {
                    GroupState::Dead => error_code::GROUP_ID_NOT_FOUND,
                    GroupState::Empty => {
                        states.push((group_id.clone(), group.state_since_ms));
                        group.transition(GroupState::Dead, now_ms);
                        records.extend(group.offsets.keys().map(|(topic, partition)| {
                            GroupRecord::OffsetTombstone {
                                group: group_id.clone(),
                                topic: topic.clone(),
                                partition: *partition,
                            }
                        }));
                        records.push(GroupRecord::GroupTombstone {
                            group: group_id.clone(),
                        });
                        error_code::NONE
                    }
                    _ => error_code::NON_EMPTY_GROUP,
                },
            };
            results.push((group_id.clone(), error));
        }
        for (group_id, _) in &states {
            self.check(group_id, None);
        }
        if records.is_empty() {
            return Some(DeleteGroupsResponse { groups: results });
        }
        self.write(
            records,
            Completion::DeleteGroups {
                request: token,
                results,
                states,
            },
        );
        None
    }

    /// ListGroups: every group (not Dead) in one of `states` (every state when empty;
    /// names as Kafka spells them, any case).
    pub fn list_groups(&self, states: &[String]) -> Vec<ListedGroup> {
        let state_name = |g: &Group| match &g.consumer {
            Some(c) => consumer::consumer_group_state(c),
            None => g.state.name(),
        };
        self.groups
            .values()
            .filter(|g| !g.is(GroupState::Dead))
            .filter(|g| {
                states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(state_name(g)))
            })
            .map(|g| ListedGroup {
                group_id: g.group_id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
                consumer_state: g.consumer.as_deref().map(consumer::consumer_group_state),
            })
            .collect()
    }

    /// DescribeGroups, in the request's order. An unknown group is described as Dead with
    /// no error (as Kafka); member metadata and assignments only in Stable.
    pub fn describe_groups(&self, group_ids: &[String]) -> Vec<DescribedGroup> {
        group_ids.iter().map(|id| self.describe(id)).collect()
    }

    fn describe(&self, group_id: &str) -> DescribedGroup {
        let mut described = DescribedGroup {
            group_id: group_id.to_string(),
            error: error_code::NONE,
            state: GroupState::Dead,
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        };
        if let Err(error) = valid_group_id(group_id) {
            described.error = error;
            return described;
        }
        let Some(group) = self.groups.get(group_id) else {
            return described;
        };
        if group.consumer.is_some() {
            // KIP-848 groups are described by ConsumerGroupDescribe.
            described.error = error_code::GROUP_ID_NOT_FOUND;
            return described;
        }
        let stable = group.is(GroupState::Stable);
        let protocol = group.protocol_name.clone().unwrap_or_default();
        described.state = group.state;
        described.protocol_type = group.protocol_type.clone().unwrap_or_default();
        if stable {
            described.protocol = protocol.clone();
        }
        described.members = group
            .members
            .values()
            .map(|m| DescribedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    m.metadata(&protocol)
                } else {
                    Vec::new()
                },
                assignment: if stable {
                    m.assignment.clone().unwrap_or_default()
                } else {
                    Vec::new()
                },
            })
            .collect();
        described
    }

    /// KIP-211 offset expiry at `now_ms` (see the module documentation). Applied at once;
    /// the tombstones leave as one [`Write`] nothing waits on (if it fails, the offsets
    /// come back at the next load, as in Kafka).
    pub fn expire(&mut self, now_ms: i64) -> Expired {
        self.expire_where(now_ms, |_| true)
    }

    /// As [`expire`](Self::expire), over the groups `serving` accepts only (a partition
    /// still loading may yet replay a newer commit of an offset that looks expired).
    pub fn expire_where(&mut self, now_ms: i64, serving: impl Fn(&str) -> bool) -> Expired {
        let before = self.generations();
        let retention_ms = self.config.offsets_retention_ms;
        let mut expired = Expired::default();
        let mut records = Vec::new();
        for (group_id, group) in self.groups.iter_mut() {
            if !serving(group_id) {
                continue;
            }
            let keys = expired_offsets(group, now_ms, retention_ms);
            if !keys.is_empty() {
                crate::probe!(probe::GROUP_OFFSETS_EXPIRED);
            }
            for (topic, partition) in keys {
                group.offsets.remove(&(topic.clone(), partition));
                records.push(GroupRecord::OffsetTombstone {
                    group: group_id.clone(),
                    topic: topic.clone(),
                    partition,
                });
                expired.offsets.push((group_id.clone(), topic, partition));
            }
            let consumer_active = group
                .consumer
                .as_ref()
                .is_some_and(|c| !c.members.is_empty());
            let idle =
                group.is(GroupState::Empty) && group.pending_members.is_empty() && !consumer_active;
            if idle && group.offsets.is_empty() && group.offsets_pending.is_empty() {
                records.push(GroupRecord::GroupTombstone {
                    group: group_id.clone(),
                });
                expired.groups.push(group_id.clone());
            }
        }
        for group_id in &expired.groups {
            self.groups.remove(group_id);
        }
        if !records.is_empty() {
            self.write(records, Completion::Nothing);
        }
        self.check_all(&before);
        expired
    }
}

/// The offsets of one group past retention at `now_ms` (never one with a commit in flight).
fn expired_offsets(group: &Group, now_ms: i64, retention_ms: i64) -> Vec<(String, i32)> {
    if group
        .consumer
        .as_ref()
        .is_some_and(|c| !c.members.is_empty())
    {
        // A consumer group with members keeps its offsets (Kafka expires by subscription
        // there; not done for KIP-848 groups yet).
        return Vec::new();
    }
    let (base_is_state, subscribed) = match (&group.protocol_type, group.state) {
        (Some(_), GroupState::Empty) => (true, None),
        (Some(t), GroupState::Stable) if t == CONSUMER_PROTOCOL_TYPE => {
            match group.subscribed_topics() {
                Some(topics) => (false, Some(topics)),
                None => return Vec::new(),
            }
        }
        (None, _) => (false, None),
        _ => return Vec::new(),
    };
    group
        .offsets
        .iter()
        .filter(|(key, _)| !group.offsets_pending.contains_key(*key))
        .filter(|((topic, _), _)| subscribed.as_ref().is_none_or(|s| !s.contains(topic)))
        .filter(|(_, committed)| {
            let base_ms = if base_is_state {
                group.state_since_ms
            } else {
                committed.commit_timestamp_ms
            };
            now_ms - base_ms >= retention_ms
        })
        .map(|(key, _)| key.clone())
        .collect()
}
