//! LeaveGroup (v0-5; v3 and later batch members, KIP-345).

use super::*;
use crate::group::{self, LeavingMember};

pub(super) fn leave_group(
    shared: &Shared,
    req: &LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let members: Vec<LeavingMember> = if version >= 3 {
        req.members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: req.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let request = group::LeaveGroupRequest {
        group_id: req.group_id.to_string(),
        members,
    };
    let answer = serve_group_now(shared, &request.group_id, |c, _, now| {
        Some(c.leave_group(&request, now))
    })
    .unwrap_or_else(|code| group::LeaveGroupResponse {
        error: code,
        members: Vec::new(),
    });
    // Before v3 there is one member and only the top-level error.
    let error = if version < 3 && answer.error == 0 {
        answer.members.first().map_or(0, |(_, e)| *e)
    } else {
        answer.error
    };
    let members = if version >= 3 {
        answer
            .members
            .into_iter()
            .map(|(m, e)| {
                leave_group_response::MemberResponse::default()
                    .with_member_id(str_bytes(&m.member_id))
                    .with_group_instance_id(m.group_instance_id.map(|i| str_bytes(&i)))
                    .with_error_code(e)
            })
            .collect()
    } else {
        Vec::new()
    };
    LeaveGroupResponse::default()
        .with_error_code(error)
        .with_members(members)
}
