//! OffsetCommit (v2-9): offsets become visible once their records are committed. For a
//! KIP-848 group `generation_id_or_member_epoch` is the member's epoch (STALE_MEMBER_EPOCH
//! when it is not the current one).

use super::*;
use crate::group::{self, CommitPartition};

pub(super) async fn offset_commit(
    shared: &Shared,
    req: &OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    // Kafka's rule (KafkaApis): a partition the cluster does not have is answered
    // UNKNOWN_TOPIC_OR_PARTITION and not committed; the rest go to the coordinator.
    let known: Vec<bool> = {
        let state = shared.state();
        req.topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.name.as_str(), p.partition_index))
            })
            .map(|(topic, partition)| partition_exists(&state, topic, partition))
            .collect()
    };
    let mut known_flags = known.iter();
    let request = group::OffsetCommitRequest {
        group_id: req.group_id.to_string(),
        generation_id: req.generation_id_or_member_epoch,
        member_id: req.member_id.to_string(),
        group_instance_id: req
            .group_instance_id
            .as_ref()
            .filter(|_| version >= 7)
            .map(|s| s.to_string()),
        partitions: req
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
            .filter(|_| *known_flags.next().expect("one flag per partition"))
            .map(|(t, p)| CommitPartition {
                topic: t.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 6 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            })
            .collect(),
        api_version: version,
    };
    let errors: Vec<i16> = if request.partitions.is_empty() && !known.is_empty() {
        Vec::new()
    } else {
        match serve_group(shared, &request.group_id, |c, token, now| {
            c.offset_commit(token, &request, now)
                .map(group::Response::OffsetCommit)
        })
        .await
        {
            Ok(group::Response::OffsetCommit(r)) => {
                assert_eq!(
                    r.partitions.len(),
                    request.partitions.len(),
                    "OffsetCommit answers every partition"
                );
                r.partitions.into_iter().map(|(_, _, e)| e).collect()
            }
            Ok(other) => unreachable_answer("OffsetCommit", &other),
            Err(code) => vec![code; request.partitions.len()],
        }
    };
    let mut errors = errors.into_iter();
    let mut known = known.into_iter();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            offset_commit_response::OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            offset_commit_response::OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(match known.next().expect("one flag each") {
                                    true => errors.next().expect("one error per known partition"),
                                    false => ResponseError::UnknownTopicOrPartition.code(),
                                })
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// Whether the cluster has `topic`-`partition`: in the metadata image in a cluster, among
/// this broker's topics standalone.
fn partition_exists(state: &crate::state::BrokerState, topic: &str, partition: i32) -> bool {
    let count = match state.image() {
        Some(image) => image.topics.get(topic).map(|t| t.partitions.len()),
        None => state.topic(topic).map(|t| t.partitions.len()),
    };
    count.is_some_and(|n| (0..n as i32).contains(&partition))
}
