//! OffsetFetch (v1-9; v8 asks for several groups at once, KIP-709; v9 names a KIP-848
//! member and its epoch).

use super::*;
use crate::group::{FetchedOffset, OffsetFetchResponse as Fetched};

pub(super) fn offset_fetch(
    shared: &Shared,
    req: &OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                let partitions = g.topics.as_ref().map(|topics| {
                    topics
                        .iter()
                        .flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p)))
                        .collect::<Vec<_>>()
                });
                // v9 (KIP-848): a member's fetch carries its id and epoch, checked for
                // consumer groups.
                let member = g
                    .member_id
                    .as_ref()
                    .filter(|_| version >= 9)
                    .map(|m| (m.as_str(), g.member_epoch));
                let fetched =
                    fetch_member_group(shared, g.group_id.as_str(), member, partitions.as_deref());
                let topics = by_topic(fetched.partitions)
                    .into_iter()
                    .map(|(name, parts)| {
                        offset_fetch_response::OffsetFetchResponseTopics::default()
                            .with_name(TopicName(str_bytes(&name)))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|p| {
                                        offset_fetch_response::OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p.partition)
                                            .with_committed_offset(p.offset)
                                            .with_committed_leader_epoch(p.leader_epoch)
                                            .with_metadata(Some(str_bytes(&p.metadata)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                offset_fetch_response::OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_error_code(fetched.error)
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let partitions = req.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p)))
            .collect::<Vec<_>>()
    });
    let mut fetched = fetch_group(shared, req.group_id.as_str(), partitions.as_deref());
    if fetched.error != 0 && version < 2 {
        // v1 has no top-level error: every partition asked for carries it.
        let error = fetched.error;
        fetched.partitions = partitions
            .unwrap_or_default()
            .into_iter()
            .map(|(topic, partition)| FetchedOffset {
                topic,
                partition,
                offset: -1,
                leader_epoch: -1,
                metadata: String::new(),
            })
            .collect();
        return single_group_response(fetched, error, version);
    }
    single_group_response(fetched, 0, version)
}

/// One group's offsets, or the error that says why this broker cannot give them.
fn fetch_group(shared: &Shared, group_id: &str, partitions: Option<&[(String, i32)]>) -> Fetched {
    shared
        .groups
        .read_group(shared, group_id, |c| c.offset_fetch(group_id, partitions))
        .unwrap_or_else(|error| Fetched {
            error,
            partitions: Vec::new(),
        })
}

/// `fetch_group` for a KIP-848 member (its epoch checked).
fn fetch_member_group(
    shared: &Shared,
    group_id: &str,
    member: Option<(&str, i32)>,
    partitions: Option<&[(String, i32)]>,
) -> Fetched {
    shared
        .groups
        .read_group(shared, group_id, |c| {
            c.offset_fetch_member(group_id, member, partitions)
        })
        .unwrap_or_else(|error| Fetched {
            error,
            partitions: Vec::new(),
        })
}

/// The v1-7 answer; `partition_error` is set on every partition (v1's only error).
fn single_group_response(
    fetched: Fetched,
    partition_error: i16,
    version: i16,
) -> OffsetFetchResponse {
    let topics = by_topic(fetched.partitions)
        .into_iter()
        .map(|(name, parts)| {
            offset_fetch_response::OffsetFetchResponseTopic::default()
                .with_name(TopicName(str_bytes(&name)))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|p| {
                            offset_fetch_response::OffsetFetchResponsePartition::default()
                                .with_partition_index(p.partition)
                                .with_committed_offset(p.offset)
                                .with_committed_leader_epoch(if version >= 5 {
                                    p.leader_epoch
                                } else {
                                    -1
                                })
                                .with_metadata(Some(str_bytes(&p.metadata)))
                                .with_error_code(partition_error)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default()
        .with_error_code(if version >= 2 { fetched.error } else { 0 })
        .with_topics(topics)
}

/// Partitions grouped by topic, topics in the order they first appear.
fn by_topic(partitions: Vec<FetchedOffset>) -> Vec<(String, Vec<FetchedOffset>)> {
    let mut topics: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
    for p in partitions {
        match topics.iter_mut().find(|(name, _)| *name == p.topic) {
            Some((_, parts)) => parts.push(p),
            None => topics.push((p.topic.clone(), vec![p])),
        }
    }
    topics
}
