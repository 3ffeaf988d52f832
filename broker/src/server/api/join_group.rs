//! JoinGroup (v0-7): a member joins; the answer may wait for the join phase.

use super::*;
use crate::group::{self, Protocol};

pub(super) async fn join_group(
    shared: &Shared,
    req: &JoinGroupRequest,
    version: i16,
    client: &ClientInfo,
) -> JoinGroupResponse {
    let request = group::JoinGroupRequest {
        version,
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: client.client_id.clone(),
        client_host: client.host.clone(),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout serves for both.
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| Protocol {
                name: p.name.to_string(),
                metadata: p.metadata.to_vec(),
            })
            .collect(),
        member_id_suffix: shared.groups.member_id_suffix(),
    };
    let answer = match serve_group(shared, &request.group_id, |c, token, now| {
        c.join_group(token, &request, now)
            .map(group::Response::JoinGroup)
    })
    .await
    {
        Ok(group::Response::JoinGroup(r)) => r,
        Ok(other) => unreachable_answer("JoinGroup", &other),
        Err(code) => group::JoinGroupResponse {
            error: code,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: request.member_id.clone(),
            members: Vec::new(),
        },
    };
    join_group_response(answer, version)
}

/// The wire form: protocol type from v7; before v7 the protocol name is not nullable.
pub(super) fn join_group_response(
    answer: group::JoinGroupResponse,
    version: i16,
) -> JoinGroupResponse {
    let protocol_name = match answer.protocol_name {
        Some(name) => Some(str_bytes(&name)),
        None if version < 7 => Some(str_bytes("")),
        None => None,
    };
    JoinGroupResponse::default()
        .with_error_code(answer.error)
        .with_generation_id(answer.generation_id)
        .with_protocol_type(
            answer
                .protocol_type
                .filter(|_| version >= 7)
                .map(|t| str_bytes(&t)),
        )
        .with_protocol_name(protocol_name)
        .with_leader(str_bytes(&answer.leader))
        .with_member_id(str_bytes(&answer.member_id))
        .with_members(
            answer
                .members
                .into_iter()
                .map(|m| {
                    join_group_response::JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_group_instance_id(
                            m.group_instance_id
                                .filter(|_| version >= 5)
                                .map(|i| str_bytes(&i)),
                        )
                        .with_metadata(Bytes::from(m.metadata))
                })
                .collect(),
        )
}
