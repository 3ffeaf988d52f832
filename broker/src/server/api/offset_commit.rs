//! OffsetCommit (v2-8): offsets become visible once their records are committed.

use super::*;
use crate::group::{self, CommitPartition};

pub(super) async fn offset_commit(
    shared: &Shared,
    req: &OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
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
            .flat_map(|t| {
                t.partitions.iter().map(|p| CommitPartition {
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
            })
            .collect(),
    };
    let errors: Vec<i16> = match serve_group(shared, &request.group_id, |c, token, now| {
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
    };
    let mut errors = errors.into_iter();
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
                                .with_error_code(errors.next().expect("one error per partition"))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
