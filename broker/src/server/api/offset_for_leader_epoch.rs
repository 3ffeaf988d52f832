//! OffsetForLeaderEpoch (KIP-101/279/320): where a leader epoch ends in the log.

use super::*;

/// OffsetForLeaderEpoch (KIP-101/279/320): where a leader epoch ends in the log, so that a
/// client or follower that saw an older epoch can tell whether the log was truncated
/// under it.
pub(super) fn offset_for_leader_epoch(
    shared: &Shared,
    req: &OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let state = shared.state();
    let topics = req
        .topics
        .iter()
        .map(|topic| {
            let name = topic.topic.0.as_str();
            let partitions = topic
                .partitions
                .iter()
                .map(|part| {
                    let entry = offset_for_leader_epoch_response::EpochEndOffset::default()
                        .with_partition(part.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let result = state
                        .leading_partition(name, part.partition, part.current_leader_epoch)
                        .and_then(|_| {
                            state.end_offset_for_epoch(name, part.partition, part.leader_epoch)
                        });
                    answer_partition(entry, result, |resp, (epoch, end_offset)| {
                        resp.leader_epoch = epoch;
                        resp.end_offset = end_offset;
                    })
                })
                .collect();
            offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

partitions!(
    OffsetForLeaderEpochRequest,
    topics,
    topic,
    partitions,
    partition
);
partitions!(
    OffsetForLeaderEpochResponse,
    topics,
    topic,
    partitions,
    partition
);
