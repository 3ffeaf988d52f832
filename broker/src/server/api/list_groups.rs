//! ListGroups (v0-4; v4 filters by state, KIP-518): the groups coordinated here, and
//! COORDINATOR_LOAD_IN_PROGRESS while a partition of them is still loading (as Kafka).

use super::*;

pub(super) fn list_groups(
    shared: &Shared,
    req: &ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let states: Vec<String> = if version >= 4 {
        req.states_filter.iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    };
    let (groups, loading) = shared.groups.list(shared, &states);
    let groups = groups
        .into_iter()
        .map(|g| {
            list_groups_response::ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&g.group_id)))
                .with_protocol_type(str_bytes(&g.protocol_type))
                .with_group_state(str_bytes(match (version >= 4, g.consumer_state) {
                    (false, _) => "",
                    (true, Some(state)) => state,
                    (true, None) => g.state.name(),
                }))
        })
        .collect();
    let error = if loading {
        ResponseError::CoordinatorLoadInProgress.code()
    } else {
        0
    };
    ListGroupsResponse::default()
        .with_error_code(error)
        .with_groups(groups)
}
