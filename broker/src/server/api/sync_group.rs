//! SyncGroup (v0-5): the leader hands out assignments; followers wait for theirs.

use super::*;
use crate::group;

pub(super) async fn sync_group(
    shared: &Shared,
    req: &SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let request = group::SyncGroupRequest {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        generation_id: req.generation_id,
        protocol_type: req.protocol_type.as_ref().map(|s| s.to_string()),
        protocol_name: req.protocol_name.as_ref().map(|s| s.to_string()),
        assignments: req
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.to_vec()))
            .collect(),
    };
    let answer = match serve_group(shared, &request.group_id, |c, token, now| {
        c.sync_group(token, &request, now)
            .map(group::Response::SyncGroup)
    })
    .await
    {
        Ok(group::Response::SyncGroup(r)) => r,
        Ok(other) => unreachable_answer("SyncGroup", &other),
        Err(code) => group::SyncGroupResponse {
            error: code,
            protocol_type: None,
            protocol_name: None,
            assignment: Vec::new(),
        },
    };
    SyncGroupResponse::default()
        .with_error_code(answer.error)
        .with_protocol_type(
            answer
                .protocol_type
                .filter(|_| version >= 5)
                .map(|s| str_bytes(&s)),
        )
        .with_protocol_name(
            answer
                .protocol_name
                .filter(|_| version >= 5)
                .map(|s| str_bytes(&s)),
        )
        .with_assignment(Bytes::from(answer.assignment))
}
