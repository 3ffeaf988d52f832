//! Membership: JoinGroup, SyncGroup, Heartbeat, LeaveGroup and the timers, and the
//! rebalance transitions they drive (prepare, complete the join phase, remove members).

use super::membership::{Group, GroupState, JoinPhase, Member};
use super::persist::Completion;
use super::*;
use crate::probe;

use GroupState::{CompletingRebalance, Dead, Empty, PreparingRebalance, Stable};

/// Why a member is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    Left,
    SessionExpired,
    /// Did not send SyncGroup in time, or refused by group.max.size.
    Dropped,
}

impl GroupCoordinator {
    /// JoinGroup. `Some` when answered at once; `None` when parked until the join phase
    /// completes (or, for a static member replaced in a stable group, until its records
    /// are committed).
    pub fn join_group(
        &mut self,
        token: RequestToken,
        request: &JoinGroupRequest,
        now_ms: i64,
    ) -> Option<JoinGroupResponse> {
        let before = self.generation(&request.group_id);
        let result = self.join(token, request, now_ms);
        self.check(&request.group_id, before);
        if let Err(error) = result {
            return Some(JoinGroupResponse::error(&request.member_id, error));
        }
        match self.take_own(token)? {
            Response::JoinGroup(response) => Some(response),
            other => panic!("a JoinGroup answered with {other:?}"),
        }
    }

    fn join(
        &mut self,
        token: RequestToken,
        request: &JoinGroupRequest,
        now_ms: i64,
    ) -> Result<(), i16> {
        valid_group_id(&request.group_id)?;
        let timeout = request.session_timeout_ms;
        if timeout < self.config.session_timeout_ms_min
            || timeout > self.config.session_timeout_ms_max
        {
            return Err(error_code::INVALID_SESSION_TIMEOUT);
        }
        let new_member = request.member_id.is_empty();
        if new_member {
            self.groups
                .entry(request.group_id.clone())
                .or_insert_with(|| Group::new(&request.group_id, now_ms));
        }
        let size_max = self.config.group_size_max;
        let group = self
            .groups
            .get_mut(&request.group_id)
            .ok_or(error_code::UNKNOWN_MEMBER_ID)?;
        if let Some(consumer) = &group.consumer {
            // KIP-848: a consumer group with members is not joined with the classic
            // protocol; an empty one becomes a classic group.
            if !consumer.members.is_empty() {
                return Err(error_code::INCONSISTENT_GROUP_PROTOCOL);
            }
            group.consumer = None;
            group.protocol_type = None;
        }
        if !accepts_joining_member(group, &request.member_id, size_max) {
            if group.members.contains_key(&request.member_id) {
                self.remove_member(
                    &request.group_id,
                    &request.member_id,
                    Removal::Dropped,
                    now_ms,
                );
            }
            return Err(error_code::GROUP_MAX_SIZE_REACHED);
        }
        if group.is(Dead) {
            return Err(error_code::COORDINATOR_NOT_AVAILABLE);
        }
        if !group.supports(&request.protocol_type, &request.protocols) {
            return Err(error_code::INCONSISTENT_GROUP_PROTOCOL);
        }
        if new_member {
            self.join_new_member(token, request, now_ms)?;
        } else {
            self.join_known_member(token, request, now_ms)?;
        }
        self.maybe_complete_join(&request.group_id, now_ms);
        Ok(())
    }

    fn join_new_member(
        &mut self,
        token: RequestToken,
        request: &JoinGroupRequest,
        now_ms: i64,
    ) -> Result<(), i16> {
        let member_id = format!("{}-{}", request.client_id, request.member_id_suffix);
        let group = self
            .groups
            .get_mut(&request.group_id)
            .expect("created by join");
        if group.members.contains_key(&member_id) || group.pending_members.contains_key(&member_id)
        {
            // The shell's suffixes are unique (UUIDs); a repeat is bad input, not a bug.
            return Err(error_code::INVALID_REQUEST);
        }
        if let Some(instance) = &request.group_instance_id {
            if let Some(old_member_id) = group.static_members.get(instance).cloned() {
                self.replace_static_member(token, request, &old_member_id, &member_id, now_ms);
                return Ok(());
            }
        } else if request.version >= 4 {
            crate::probe!(probe::GROUP_MEMBER_ID_REQUIRED);
            let deadline_ms = now_ms + i64::from(request.session_timeout_ms);
            group.pending_members.insert(member_id.clone(), deadline_ms);
            let mut response = JoinGroupResponse::error(&member_id, error_code::MEMBER_ID_REQUIRED);
            response.member_id = member_id;
            self.respond(token, Response::JoinGroup(response));
            return Ok(());
        }
        self.add_member_and_rebalance(token, request, &member_id, now_ms);
        Ok(())
    }

    fn join_known_member(
        &mut self,
        token: RequestToken,
        request: &JoinGroupRequest,
        now_ms: i64,
    ) -> Result<(), i16> {
        let group = self
            .groups
            .get_mut(&request.group_id)
            .expect("checked by join");
        let member_id = request.member_id.as_str();
        if group.pending_members.contains_key(member_id) {
            if request.group_instance_id.is_some() {
                // A pending member is always dynamic (KIP-394 ids go to dynamic members).
                return Err(error_code::UNKNOWN_MEMBER_ID);
            }
            self.add_member_and_rebalance(token, request, member_id, now_ms);
            return Ok(());
        }
        let instance = request.group_instance_id.as_deref();
        if group.static_member_fenced(instance, member_id) {
            return Err(error_code::FENCED_INSTANCE_ID);
        }
        let instance_unknown = instance.is_some_and(|i| !group.static_members.contains_key(i));
        let Some(member) = group.members.get(member_id) else {
            return Err(error_code::UNKNOWN_MEMBER_ID);
        };
        if instance_unknown {
            return Err(error_code::UNKNOWN_MEMBER_ID);
        }
        let unchanged = member.matches(&request.protocols);
        let is_leader = group.leader.as_deref() == Some(member_id);
        match group.state {
            PreparingRebalance => self.update_member_and_rebalance(token, request, now_ms),
            CompletingRebalance if unchanged => {
                self.answer_current_generation(token, &request.group_id, member_id, is_leader)
            }
            Stable if unchanged && !is_leader => {
                self.answer_current_generation(token, &request.group_id, member_id, false)
            }
            CompletingRebalance | Stable => {
                self.update_member_and_rebalance(token, request, now_ms)
            }
            Empty | Dead => return Err(error_code::UNKNOWN_MEMBER_ID),
        }
        Ok(())
    }

    /// A known member's join that changes nothing: the current generation at once.
    fn answer_current_generation(
        &mut self,
        token: RequestToken,
        group_id: &str,
        member_id: &str,
        with_members: bool,
    ) {
        let group = &self.groups[group_id];
        let response = join_response(group, member_id, with_members);
        self.respond(token, Response::JoinGroup(response));
    }

    fn add_member_and_rebalance(
        &mut self,
        token: RequestToken,
        request: &JoinGroupRequest,
        member_id: &str,
        now_ms: i64,
    ) {
        let group = self
            .groups
            .get_mut(&request.group_id)
            .expect("checked by join");
        if group.members.is_empty() {
            group.protocol_type = Some(request.protocol_type.clone());
        }
        group.pending_members.remove(member_id);
        group.add_member(Member {
            member_id: member_id.to_string(),
            group_instance_id: request.group_instance_id.clone(),
            client_id: request.client_id.clone(),
            client_host: request.client_host.clone(),
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            protocols: request.protocols.clone(),
            assignment: None,
            join_parked: Some(token),
            sync_parked: None,
            session_deadline_ms: now_ms + self.config.new_member_join_timeout_ms,
            is_new: true,
        });
        if let Some(JoinPhase::InitialDelay {
            new_member_added, ..
        }) = group.join_phase.as_mut()
        {
            *new_member_added = true;
        }
        if !group.is(PreparingRebalance) {
            crate::probe!(probe::GROUP_REBALANCE_NEW_MEMBER);
        }
        self.maybe_prepare_rebalance(&request.group_id, now_ms);
    }

    /// A known member rejoins: new protocols and timeouts, its join parked, a rebalance.
    fn update_member_and_rebalance(
        &mut self,
        token: RequestToken,
        request: &JoinGroupRequest,
        now_ms: i64,
    ) {
        let group = self
            .groups
            .get_mut(&request.group_id)
            .expect("checked by join");
        let member = group
            .members
            .get_mut(&request.member_id)
            .expect("checked by join");
        let superseded = update_member(member, request, token, now_ms);
        self.answer_superseded_join(superseded);
        self.maybe_prepare_rebalance(&request.group_id, now_ms);
    }

    fn answer_superseded_join(&mut self, superseded: Option<RequestToken>) {
        if let Some(old) = superseded {
            let response = JoinGroupResponse::error("", error_code::REBALANCE_IN_PROGRESS);
            self.respond(old, Response::JoinGroup(response));
        }
    }

    /// KIP-345: a static member's new member id takes the old one's place.
    fn replace_static_member(
        &mut self,
        token: RequestToken,
        request: &JoinGroupRequest,
        old_member_id: &str,
        new_member_id: &str,
        now_ms: i64,
    ) {
        crate::probe!(probe::GROUP_STATIC_MEMBER_FENCED);
        let group_id = request.group_id.as_str();
        let group = self.groups.get_mut(group_id).expect("checked by join");
        let leader_before = group.leader.clone().unwrap_or_default();
        let old = rename_member(group, old_member_id, new_member_id);
        self.answer_fenced(&old);
        let group = self.groups.get_mut(group_id).expect("checked by join");
        let member = group.members.get_mut(new_member_id).expect("just renamed");
        match group.state {
            Stable => {
                member.protocols = request.protocols.clone();
                member.rebalance_timeout_ms = request.rebalance_timeout_ms;
                member.session_timeout_ms = request.session_timeout_ms;
                member.session_deadline_ms = now_ms + i64::from(request.session_timeout_ms);
                if group.select_protocol() == group.protocol_name {
                    let records = vec![persist::group_metadata_record(group, now_ms)];
                    let completion = Completion::StaticReplace {
                        request: token,
                        group_id: group_id.to_string(),
                        old_member: Box::new(old),
                        new_member_id: new_member_id.to_string(),
                        leader_before,
                    };
                    self.write(records, completion);
                } else {
                    let member = group.members.get_mut(new_member_id).expect("just renamed");
                    member.join_parked = Some(token);
                    self.maybe_prepare_rebalance(group_id, now_ms);
                }
            }
            CompletingRebalance | PreparingRebalance => {
                update_member(member, request, token, now_ms);
                self.maybe_prepare_rebalance(group_id, now_ms);
            }
            Empty | Dead => unreachable!("a group with a static member has members"),
        }
    }

    /// The parked requests of a replaced static member id learn they are fenced.
    pub(super) fn answer_fenced(&mut self, old: &Member) {
        let fenced = error_code::FENCED_INSTANCE_ID;
        if let Some(join) = old.join_parked {
            let response = JoinGroupResponse::error(&old.member_id, fenced);
            self.respond(join, Response::JoinGroup(response));
        }
        if let Some(sync) = old.sync_parked {
            self.respond(sync, Response::SyncGroup(SyncGroupResponse::error(fenced)));
        }
    }

    /// Starts a rebalance if the group is not already preparing one (or dead).
    pub(super) fn maybe_prepare_rebalance(&mut self, group_id: &str, now_ms: i64) {
        let group = &self.groups[group_id];
        if matches!(group.state, Stable | CompletingRebalance | Empty) {
            self.prepare_rebalance(group_id, now_ms);
        }
    }

    fn prepare_rebalance(&mut self, group_id: &str, now_ms: i64) {
        if self.groups[group_id].is(CompletingRebalance) {
            self.reset_assignments(group_id, error_code::REBALANCE_IN_PROGRESS);
        }
        let delay_ms = i64::from(self.config.initial_rebalance_delay_ms);
        let group = self.groups.get_mut(group_id).expect("caller checked");
        let rebalance_timeout_ms = group.rebalance_timeout_ms();
        group.join_phase = Some(if group.is(Empty) && delay_ms > 0 {
            JoinPhase::InitialDelay {
                deadline_ms: now_ms + delay_ms,
                remaining_ms: (rebalance_timeout_ms - delay_ms).max(0),
                new_member_added: false,
            }
        } else {
            JoinPhase::Normal {
                deadline_ms: now_ms + rebalance_timeout_ms,
            }
        });
        group.pending_sync.clear();
        group.sync_deadline_ms = None;
        group.state = PreparingRebalance;
        group.state_since_ms = now_ms;
        self.maybe_complete_join(group_id, now_ms);
    }

    /// CompletingRebalance interrupted or failed: no assignments, parked syncs answered.
    pub(super) fn reset_assignments(&mut self, group_id: &str, error: i16) {
        let group = self.groups.get_mut(group_id).expect("caller checked");
        let mut parked = Vec::new();
        for member in group.members.values_mut() {
            member.assignment = None;
            parked.extend(member.sync_parked.take());
        }
        for token in parked {
            self.respond(token, Response::SyncGroup(SyncGroupResponse::error(error)));
        }
    }

    /// Completes the join phase at once if nobody else is expected.
    pub(super) fn maybe_complete_join(&mut self, group_id: &str, now_ms: i64) {
        let Some(group) = self.groups.get(group_id) else {
            return;
        };
        if matches!(group.join_phase, Some(JoinPhase::Normal { .. })) && group.all_members_joined()
        {
            self.complete_join(group_id, now_ms);
        }
    }

    /// The end of a join phase: a new generation (see the module documentation).
    fn complete_join(&mut self, group_id: &str, now_ms: i64) {
        let group = self.groups.get_mut(group_id).expect("caller checked");
        let absent: Vec<String> = group
            .members
            .values()
            .filter(|m| m.join_parked.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        if !absent.is_empty() {
            crate::probe!(probe::GROUP_JOIN_TIMEOUT_REMOVED_MEMBERS);
        }
        for member_id in &absent {
            group.remove_member(member_id);
        }
        let leader_joined = group
            .leader
            .as_ref()
            .is_some_and(|l| group.members[l].join_parked.is_some());
        if !leader_joined {
            let first_joined = group.members.values().find(|m| m.join_parked.is_some());
            if let Some(first) = first_joined {
                group.leader = Some(first.member_id.clone());
            } else if !group.members.is_empty() {
                // Only static members that did not rejoin: wait another rebalance timeout.
                let deadline_ms = now_ms + group.rebalance_timeout_ms();
                group.join_phase = Some(JoinPhase::Normal { deadline_ms });
                return;
            }
        }
        group.generation += 1;
        if group.members.is_empty() {
            group.protocol_name = None;
            group.transition(Empty, now_ms);
            let records = vec![persist::group_metadata_record(group, now_ms)];
            self.write(records, Completion::Nothing);
            return;
        }
        group.protocol_name = group.select_protocol();
        group.transition(CompletingRebalance, now_ms);
        group.pending_sync = group.members.keys().cloned().collect();
        group.sync_deadline_ms = Some(now_ms + group.rebalance_timeout_ms());
        let mut answers = Vec::new();
        let leader = group.leader.clone().expect("a member leads");
        for member in group.members.values() {
            // A static member that did not rejoin learns the generation when it does.
            let Some(token) = member.join_parked else {
                continue;
            };
            answers.push((
                token,
                join_response(group, &member.member_id, member.member_id == leader),
            ));
        }
        for member in group.members.values_mut() {
            member.join_parked = None;
            member.is_new = false;
            member.session_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
        }
        for (token, response) in answers {
            self.respond(token, Response::JoinGroup(response));
        }
    }

    /// Removes a member and moves the group on: a rebalance from Stable or
    /// CompletingRebalance, maybe the end of a join phase from PreparingRebalance.
    fn remove_member(&mut self, group_id: &str, member_id: &str, why: Removal, now_ms: i64) {
        let group = self.groups.get_mut(group_id).expect("caller checked");
        let Some(member) = group.remove_member(member_id) else {
            return;
        };
        let state = group.state;
        if let Some(join) = member.join_parked {
            let response = JoinGroupResponse::error(member_id, error_code::UNKNOWN_MEMBER_ID);
            self.respond(join, Response::JoinGroup(response));
        }
        if let Some(sync) = member.sync_parked {
            let response = SyncGroupResponse::error(error_code::UNKNOWN_MEMBER_ID);
            self.respond(sync, Response::SyncGroup(response));
        }
        match state {
            Stable | CompletingRebalance => {
                match why {
                    Removal::Left => crate::probe!(probe::GROUP_REBALANCE_MEMBER_LEFT),
                    Removal::SessionExpired | Removal::Dropped => {}
                }
                self.prepare_rebalance(group_id, now_ms);
            }
            PreparingRebalance => self.maybe_complete_join(group_id, now_ms),
            Empty | Dead => {}
        }
    }

    /// SyncGroup. `Some` when answered at once; `None` when parked until the leader's
    /// assignment is committed.
    pub fn sync_group(
        &mut self,
        token: RequestToken,
        request: &SyncGroupRequest,
        now_ms: i64,
    ) -> Option<SyncGroupResponse> {
        let before = self.generation(&request.group_id);
        let result = self.sync(token, request, now_ms);
        self.check(&request.group_id, before);
        match result {
            Err(error) => Some(SyncGroupResponse::error(error)),
            Ok(Some(response)) => Some(response),
            Ok(None) => None,
        }
    }

    fn sync(
        &mut self,
        token: RequestToken,
        request: &SyncGroupRequest,
        now_ms: i64,
    ) -> Result<Option<SyncGroupResponse>, i16> {
        let group = self.checked_member(
            &request.group_id,
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id,
        )?;
        let type_differs =
            request.protocol_type.is_some() && request.protocol_type != group.protocol_type;
        let name_differs =
            request.protocol_name.is_some() && request.protocol_name != group.protocol_name;
        if type_differs || name_differs {
            return Err(error_code::INCONSISTENT_GROUP_PROTOCOL);
        }
        let is_leader = group.leader.as_deref() == Some(request.member_id.as_str());
        let member = group.members.get_mut(&request.member_id).expect("checked");
        match group.state {
            Empty | Dead => Err(error_code::UNKNOWN_MEMBER_ID),
            PreparingRebalance => Err(error_code::REBALANCE_IN_PROGRESS),
            Stable => {
                member.session_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                let assignment = member
                    .assignment
                    .clone()
                    .expect("Stable members are assigned");
                group.pending_sync.remove(&request.member_id);
                Ok(Some(SyncGroupResponse {
                    error: error_code::NONE,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol_name.clone(),
                    assignment,
                }))
            }
            CompletingRebalance => {
                member.session_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                let superseded = member.sync_parked.replace(token);
                group.pending_sync.remove(&request.member_id);
                if let Some(old) = superseded {
                    let response = SyncGroupResponse::error(error_code::REBALANCE_IN_PROGRESS);
                    self.respond(old, Response::SyncGroup(response));
                }
                if is_leader {
                    self.store_assignment(&request.group_id, &request.assignments, now_ms);
                }
                Ok(None)
            }
        }
    }

    /// The leader's assignment: written, applied when committed.
    fn store_assignment(&mut self, group_id: &str, assignments: &[(String, Vec<u8>)], now_ms: i64) {
        let group = &self.groups[group_id];
        let mut assigned: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for member_id in group.members.keys() {
            let assignment = assignments.iter().find(|(m, _)| m == member_id);
            assigned.insert(
                member_id.clone(),
                assignment.map(|(_, a)| a.clone()).unwrap_or_default(),
            );
        }
        let mut stored = group.clone();
        for (member_id, assignment) in &assigned {
            stored
                .members
                .get_mut(member_id)
                .expect("a member")
                .assignment = Some(assignment.clone());
        }
        let records = vec![persist::group_metadata_record(&stored, now_ms)];
        let completion = Completion::Assignment {
            group_id: group_id.to_string(),
            generation: group.generation,
            assignments: assigned,
        };
        self.write(records, completion);
    }

    /// Heartbeat: the error code (0 when all is well).
    pub fn heartbeat(&mut self, request: &HeartbeatRequest, now_ms: i64) -> i16 {
        let before = self.generation(&request.group_id);
        let result = self.beat(request, now_ms);
        self.check(&request.group_id, before);
        result.err().unwrap_or(error_code::NONE)
    }

    /// The group of a member's SyncGroup or Heartbeat, once the member is known and in
    /// the current generation (Kafka's checks, in its order).
    fn checked_member(
        &mut self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<&mut Group, i16> {
        valid_group_id(group_id)?;
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or(error_code::UNKNOWN_MEMBER_ID)?;
        if group.consumer.is_some() {
            return Err(error_code::GROUP_ID_NOT_FOUND);
        }
        check_member(group, member_id, instance_id, generation_id)?;
        Ok(group)
    }

    fn beat(&mut self, request: &HeartbeatRequest, now_ms: i64) -> Result<(), i16> {
        let group = self.checked_member(
            &request.group_id,
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id,
        )?;
        let member = group.members.get_mut(&request.member_id).expect("checked");
        member.session_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
        match group.state {
            Empty | Dead => Err(error_code::UNKNOWN_MEMBER_ID),
            PreparingRebalance => Err(error_code::REBALANCE_IN_PROGRESS),
            CompletingRebalance | Stable => Ok(()),
        }
    }

    /// LeaveGroup: a top-level error and one per member, in the request's order.
    pub fn leave_group(&mut self, request: &LeaveGroupRequest, now_ms: i64) -> LeaveGroupResponse {
        let before = self.generation(&request.group_id);
        let response = self.leave(request, now_ms);
        self.check(&request.group_id, before);
        response
    }

    fn leave(&mut self, request: &LeaveGroupRequest, now_ms: i64) -> LeaveGroupResponse {
        let each = |error: i16| request.members.iter().map(|m| (m.clone(), error)).collect();
        if let Err(error) = valid_group_id(&request.group_id) {
            return LeaveGroupResponse {
                error,
                members: each(error),
            };
        }
        let Some(group) = self.groups.get(&request.group_id) else {
            return LeaveGroupResponse {
                error: error_code::NONE,
                members: each(error_code::UNKNOWN_MEMBER_ID),
            };
        };
        if group.is(Dead) || group.consumer.is_some() {
            let error = if group.consumer.is_some() {
                error_code::GROUP_ID_NOT_FOUND
            } else {
                error_code::COORDINATOR_NOT_AVAILABLE
            };
            return LeaveGroupResponse {
                error,
                members: each(error),
            };
        }
        let mut members = Vec::new();
        for leaving in &request.members {
            let error = self.leave_one(&request.group_id, leaving, now_ms);
            members.push((leaving.clone(), error));
        }
        LeaveGroupResponse {
            error: error_code::NONE,
            members,
        }
    }

    fn leave_one(&mut self, group_id: &str, leaving: &LeavingMember, now_ms: i64) -> i16 {
        let group = self.groups.get_mut(group_id).expect("caller checked");
        let instance = leaving.group_instance_id.as_deref();
        let member_id = if leaving.member_id.is_empty() {
            match instance.and_then(|i| group.static_members.get(i)) {
                Some(current) => current.clone(),
                None => return error_code::UNKNOWN_MEMBER_ID,
            }
        } else if group.pending_members.remove(&leaving.member_id).is_some() {
            self.maybe_complete_join(group_id, now_ms);
            return error_code::NONE;
        } else if group.static_member_fenced(instance, &leaving.member_id) {
            return error_code::FENCED_INSTANCE_ID;
        } else if group.members.contains_key(&leaving.member_id) {
            leaving.member_id.clone()
        } else {
            return error_code::UNKNOWN_MEMBER_ID;
        };
        self.remove_member(group_id, &member_id, Removal::Left, now_ms);
        error_code::NONE
    }

    /// Runs every timer due at `now_ms`: per group, KIP-394 pending members past their
    /// session timeout, then expired member sessions, then the join phase's deadline,
    /// then the SyncGroup deadline.
    pub fn tick(&mut self, now_ms: i64) {
        self.tick_where(now_ms, |_| true)
    }

    /// As [`tick`](Self::tick), for the groups `serving` accepts only: the groups of a
    /// partition still loading are not served yet, so their sessions and join phases do not
    /// run out (Kafka starts their timers when the load completes: [`loaded`](Self::loaded)).
    pub fn tick_where(&mut self, now_ms: i64, serving: impl Fn(&str) -> bool) {
        let before = self.generations();
        let group_ids: Vec<String> = self.groups.keys().filter(|g| serving(g)).cloned().collect();
        for group_id in &group_ids {
            self.expire_pending_members(group_id, now_ms);
            self.expire_sessions(group_id, now_ms);
            self.join_deadline(group_id, now_ms);
            self.sync_deadline(group_id, now_ms);
            self.tick_consumer(group_id, now_ms);
        }
        self.check_all(&before);
    }

    fn expire_pending_members(&mut self, group_id: &str, now_ms: i64) {
        let group = self.groups.get_mut(group_id).expect("listed");
        let before = group.pending_members.len();
        group
            .pending_members
            .retain(|_, deadline_ms| *deadline_ms > now_ms);
        if group.pending_members.len() != before {
            self.maybe_complete_join(group_id, now_ms);
        }
    }

    fn expire_sessions(&mut self, group_id: &str, now_ms: i64) {
        let expired: Vec<String> = self.groups[group_id]
            .members
            .values()
            .filter(|m| !m.kept_alive() && m.session_deadline_ms <= now_ms)
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in expired {
            crate::probe!(probe::GROUP_REBALANCE_SESSION_EXPIRED);
            self.remove_member(group_id, &member_id, Removal::SessionExpired, now_ms);
        }
    }

    fn join_deadline(&mut self, group_id: &str, now_ms: i64) {
        let delay_ms = i64::from(self.config.initial_rebalance_delay_ms);
        let group = self.groups.get_mut(group_id).expect("listed");
        match group.join_phase {
            Some(phase) if phase.deadline_ms() > now_ms => {}
            Some(JoinPhase::InitialDelay {
                remaining_ms,
                new_member_added: true,
                ..
            }) if remaining_ms > 0 => {
                let wait_ms = delay_ms.min(remaining_ms);
                group.join_phase = Some(JoinPhase::InitialDelay {
                    deadline_ms: now_ms + wait_ms,
                    remaining_ms: (remaining_ms - wait_ms).max(0),
                    new_member_added: false,
                });
            }
            Some(_) => self.complete_join(group_id, now_ms),
            None => {}
        }
    }

    fn sync_deadline(&mut self, group_id: &str, now_ms: i64) {
        let group = self.groups.get_mut(group_id).expect("listed");
        let due = group.sync_deadline_ms.is_some_and(|d| d <= now_ms);
        if !due || !matches!(group.state, CompletingRebalance | Stable) {
            return;
        }
        group.sync_deadline_ms = None;
        let late: Vec<String> = std::mem::take(&mut group.pending_sync)
            .into_iter()
            .collect();
        for member_id in late {
            self.remove_member(group_id, &member_id, Removal::Dropped, now_ms);
        }
    }
}

/// Kafka's `acceptJoiningMember`: group.max.size counts members (and, while preparing a
/// rebalance, the members that have rejoined).
fn accepts_joining_member(group: &Group, member_id: &str, size_max: usize) -> bool {
    match group.state {
        Empty | Dead => true,
        PreparingRebalance => {
            let rejoined = group
                .members
                .values()
                .filter(|m| m.join_parked.is_some())
                .count();
            group
                .members
                .get(member_id)
                .is_some_and(|m| m.join_parked.is_some())
                || rejoined < size_max
        }
        CompletingRebalance | Stable => {
            group.members.contains_key(member_id) || group.members.len() < size_max
        }
    }
}

/// The checks SyncGroup and Heartbeat share, in Kafka's order.
fn check_member(
    group: &Group,
    member_id: &str,
    instance: Option<&str>,
    generation: i32,
) -> Result<(), i16> {
    if group.is(Dead) {
        Err(error_code::COORDINATOR_NOT_AVAILABLE)
    } else if group.static_member_fenced(instance, member_id) {
        Err(error_code::FENCED_INSTANCE_ID)
    } else if !group.members.contains_key(member_id) {
        Err(error_code::UNKNOWN_MEMBER_ID)
    } else if generation != group.generation {
        Err(error_code::ILLEGAL_GENERATION)
    } else {
        Ok(())
    }
}

/// A member's rejoin: its request's protocols and timeouts; returns a superseded parked
/// JoinGroup of the same member.
fn update_member(
    member: &mut Member,
    request: &JoinGroupRequest,
    token: RequestToken,
    now_ms: i64,
) -> Option<RequestToken> {
    member.protocols = request.protocols.clone();
    member.rebalance_timeout_ms = request.rebalance_timeout_ms;
    member.session_timeout_ms = request.session_timeout_ms;
    member.session_deadline_ms = now_ms + i64::from(request.session_timeout_ms);
    member.join_parked.replace(token)
}

/// Moves a static member to a new member id (leader, pending sync and instance map
/// follow); returns the old member as it was, parked requests included.
pub(super) fn rename_member(group: &mut Group, old_member_id: &str, new_member_id: &str) -> Member {
    let old = group
        .members
        .remove(old_member_id)
        .expect("a static member");
    let mut member = old.clone();
    member.member_id = new_member_id.to_string();
    member.join_parked = None;
    member.sync_parked = None;
    if let Some(instance) = &member.group_instance_id {
        group
            .static_members
            .insert(instance.clone(), new_member_id.to_string());
    }
    if group.leader.as_deref() == Some(old_member_id) {
        group.leader = Some(new_member_id.to_string());
    }
    if group.pending_sync.remove(old_member_id) {
        group.pending_sync.insert(new_member_id.to_string());
    }
    group.members.insert(new_member_id.to_string(), member);
    old
}

/// The JoinGroup answer of the current generation; the member list for the leader.
pub(super) fn join_response(
    group: &Group,
    member_id: &str,
    with_members: bool,
) -> JoinGroupResponse {
    let protocol = group.protocol_name.clone().unwrap_or_default();
    let members = if with_members {
        group
            .members
            .values()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(&protocol),
            })
            .collect()
    } else {
        Vec::new()
    };
    JoinGroupResponse {
        error: error_code::NONE,
        generation_id: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        leader: group.leader.clone().unwrap_or_default(),
        member_id: member_id.to_string(),
        members,
    }
}
