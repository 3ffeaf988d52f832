//! ListOffsets: earliest, latest and by-timestamp offsets, with KIP-320 epoch checks.

use super::*;

pub(super) fn list_offsets(
    shared: &Shared,
    req: &ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let state = shared.state();
    let topics = req
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let partitions = topic
                .partitions
                .iter()
                .map(|part| {
                    let entry = list_offsets_response::ListOffsetsPartitionResponse::default()
                        .with_partition_index(part.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    let result = state
                        .leading_partition(name, part.partition_index, part.current_leader_epoch)
                        .and_then(|p| {
                            let found =
                                state.list_offset(name, part.partition_index, part.timestamp)?;
                            Ok((found, p.leader_epoch()))
                        });
                    answer_partition(entry, result, |resp, ((offset, timestamp), epoch)| {
                        resp.offset = offset;
                        resp.timestamp = timestamp;
                        // The field exists from v4; the codec refuses it set below that.
                        if version >= 4 && offset >= 0 {
                            resp.leader_epoch = epoch;
                        }
                    })
                })
                .collect();
            list_offsets_response::ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

partitions!(
    ListOffsetsRequest,
    topics,
    name,
    partitions,
    partition_index
);
partitions!(
    ListOffsetsResponse,
    topics,
    name,
    partitions,
    partition_index
);
