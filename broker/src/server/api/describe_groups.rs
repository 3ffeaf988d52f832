//! DescribeGroups (v0-5): state, protocol and members of each group asked for.

use super::*;
use crate::group::GroupState;

pub(super) fn describe_groups(
    shared: &Shared,
    req: &DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .iter()
        .map(|id| {
            let entry = describe_groups_response::DescribedGroup::default()
                .with_group_id(id.clone())
                .with_group_state(str_bytes(GroupState::Dead.name()));
            let read = shared.groups.read_group(shared, id.as_str(), |c| {
                c.describe_groups(&[id.to_string()])
            });
            let described = match read {
                Err(error) => return entry.with_error_code(error),
                Ok(mut described) => described.pop().expect("one description per group asked"),
            };
            let members = described
                .members
                .into_iter()
                .map(|m| {
                    describe_groups_response::DescribedGroupMember::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_group_instance_id(
                            m.group_instance_id
                                .filter(|_| version >= 4)
                                .map(|i| str_bytes(&i)),
                        )
                        .with_client_id(str_bytes(&m.client_id))
                        .with_client_host(str_bytes(&m.client_host))
                        .with_member_metadata(Bytes::from(m.metadata))
                        .with_member_assignment(Bytes::from(m.assignment))
                })
                .collect();
            let entry = entry
                .with_error_code(described.error)
                .with_group_state(str_bytes(described.state.name()))
                .with_protocol_type(str_bytes(&described.protocol_type))
                .with_protocol_data(str_bytes(&described.protocol))
                .with_members(members);
            if version >= 3 && req.include_authorized_operations {
                // No authorizer: every group operation is allowed (READ, DELETE, DESCRIBE).
                use crate::protocol::acl_operation::*;
                entry.with_authorized_operations(bits(&[READ, DELETE, DESCRIBE]))
            } else {
                entry
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
