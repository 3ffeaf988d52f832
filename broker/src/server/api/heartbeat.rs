//! Heartbeat (v0-4): renews a member's session; answers whether a rebalance is on.

use super::*;
use crate::group;

pub(super) fn heartbeat(shared: &Shared, req: &HeartbeatRequest) -> HeartbeatResponse {
    let request = group::HeartbeatRequest {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        generation_id: req.generation_id,
    };
    let error = serve_group_now(shared, &request.group_id, |c, _, now| {
        Some(c.heartbeat(&request, now))
    })
    .unwrap_or_else(|code| match code {
        // Kafka's rule: a coordinator still loading the group answers a heartbeat with no
        // error (the member stays, its session is checked once loaded). Clients treat
        // COORDINATOR_LOAD_IN_PROGRESS on a heartbeat as fatal (aiokafka stops).
        code if code == ResponseError::CoordinatorLoadInProgress.code() => 0,
        code => code,
    });
    HeartbeatResponse::default().with_error_code(error)
}
