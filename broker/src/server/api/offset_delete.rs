//! OffsetDelete (v0, KIP-496): drop a group's offsets of topics it no longer consumes.

use super::*;
use crate::group;

pub(super) async fn offset_delete(
    shared: &Shared,
    req: &OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group_id = req.group_id.to_string();
    let partitions: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let answer = match serve_group(shared, &group_id, |c, token, _| {
        c.offset_delete(token, &group_id, &partitions)
            .map(group::Response::OffsetDelete)
    })
    .await
    {
        Ok(group::Response::OffsetDelete(r)) => r,
        Ok(other) => unreachable_answer("OffsetDelete", &other),
        Err(error) => group::OffsetDeleteResponse {
            error,
            partitions: Vec::new(),
        },
    };
    let mut topics: Vec<offset_delete_response::OffsetDeleteResponseTopic> = Vec::new();
    for (topic, partition, error) in answer.partitions {
        let entry = offset_delete_response::OffsetDeleteResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(error);
        match topics
            .iter_mut()
            .find(|t| t.name.as_str() == topic.as_str())
        {
            Some(t) => t.partitions.push(entry),
            None => topics.push(
                offset_delete_response::OffsetDeleteResponseTopic::default()
                    .with_name(TopicName(str_bytes(&topic)))
                    .with_partitions(vec![entry]),
            ),
        }
    }
    OffsetDeleteResponse::default()
        .with_error_code(answer.error)
        .with_topics(topics)
}
