//! ConsumerGroupHeartbeat (v0-1, KIP-848): a member joins, heartbeats, reconciles and
//! leaves through this one API; the answer waits for the change it made to be committed.

use super::*;
use crate::group::consumer::{Assignment, ConsumerHeartbeatRequest, TopicsMetadata};
use crate::group::{self};

pub(super) async fn consumer_group_heartbeat(
    shared: &Shared,
    req: &ConsumerGroupHeartbeatRequest,
    version: i16,
    client: &ClientInfo,
) -> ConsumerGroupHeartbeatResponse {
    let request = ConsumerHeartbeatRequest {
        version,
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req
            .subscribed_topic_names
            .as_ref()
            .map(|names| names.iter().map(|n| n.0.to_string()).collect()),
        subscribed_topic_regex: req.subscribed_topic_regex.as_ref().map(|s| s.to_string()),
        server_assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
        owned: req.topic_partitions.as_ref().map(|topics| {
            let mut owned = Assignment::new();
            for t in topics {
                owned
                    .entry(t.topic_id.as_u128())
                    .or_default()
                    .extend(t.partitions.iter().copied());
            }
            owned
        }),
        client_id: client.client_id.clone(),
        client_host: client.host.clone(),
        member_id_suffix: shared.groups.member_id_suffix(),
        topics: topics_metadata(shared),
    };
    let answer = match serve_group(shared, &request.group_id, |c, token, now| {
        c.consumer_heartbeat(token, &request, now)
            .map(group::Response::ConsumerGroupHeartbeat)
    })
    .await
    {
        Ok(group::Response::ConsumerGroupHeartbeat(r)) => r,
        Ok(other) => unreachable_answer("ConsumerGroupHeartbeat", &other),
        Err(code) => group::consumer::ConsumerHeartbeatResponse {
            error: code,
            error_message: None,
            member_id: None,
            member_epoch: -1,
            heartbeat_interval_ms: 0,
            assignment: None,
        },
    };
    if answer.error != 0 {
        tracing::debug!(
            group = %request.group_id,
            member = %request.member_id,
            epoch = request.member_epoch,
            error = answer.error,
            message = ?answer.error_message,
            "ConsumerGroupHeartbeat refused"
        );
    }
    let assignment = answer.assignment.map(|a| {
        consumer_group_heartbeat_response::Assignment::default().with_topic_partitions(
            a.into_iter()
                .map(|(id, partitions)| {
                    consumer_group_heartbeat_response::TopicPartitions::default()
                        .with_topic_id(uuid(id))
                        .with_partitions(partitions.into_iter().collect())
                })
                .collect(),
        )
    });
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(answer.error)
        .with_error_message(answer.error_message.map(|m| str_bytes(&m)))
        .with_member_id(answer.member_id.map(|m| str_bytes(&m)))
        .with_member_epoch(answer.member_epoch)
        .with_heartbeat_interval_ms(answer.heartbeat_interval_ms)
        .with_assignment(assignment)
}

/// The cluster's topics now (the metadata image in a cluster, this broker's topics
/// standalone): name -> (topic id, partition count).
pub(super) fn topics_metadata(shared: &Shared) -> TopicsMetadata {
    let state = shared.state();
    match state.image() {
        Some(image) => image
            .topics
            .values()
            .map(|t| (t.name.clone(), (t.id, t.partitions.len() as i32)))
            .collect(),
        None => state
            .topics()
            .map(|t| (t.name.clone(), (t.id, t.partitions.len() as i32)))
            .collect(),
    }
}
