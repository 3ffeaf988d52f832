//! Fetch: consumers' reads (with long poll) and followers' replication fetches, bounded
//! by KIP-74's byte limits.

use super::*;

/// Fetch with long poll: answer at once if `min_bytes` are available or an error is to
/// be reported, otherwise park until data arrives or `max_wait_ms` passes.
pub(super) async fn fetch(shared: &Shared, req: &FetchRequest, version: i16) -> FetchResponse {
    let wait_ms = (req.max_wait_ms as i64).clamp(0, FETCH_WAIT_MS_MAX);
    // BUGGIFY: the long poll ends early (fetch.max.wait.ms is an upper bound; an answer
    // with less than fetch.min.bytes after a shorter wait is one a client must handle).
    let wait = faultline_core::buggify_duration!(Duration::from_millis(wait_ms as u64), 0.0, 1.0);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Register interest before reading, so an append between the read and the wait
        // is not missed.
        let appended = shared.appended.notified();
        let (response, bytes, has_error) = fetch_once(shared, req, version);
        let now = tokio::time::Instant::now();
        if bytes >= req.min_bytes.max(0) as usize || has_error || now >= deadline {
            return response;
        }
        let _ = tokio::time::timeout(deadline - now, appended).await;
    }
}

pub(super) fn fetch_once(
    shared: &Shared,
    req: &FetchRequest,
    version: i16,
) -> (FetchResponse, usize, bool) {
    if version < 13 {
        return fetch_by_name(shared, req, version);
    }
    // Topics named by id (replica fetches, KIP-516): each id becomes this broker's name
    // for it, or no name (UNKNOWN_TOPIC_ID) when it holds no topic with that id.
    let mut named = req.clone();
    {
        let state = shared.state();
        for topic in &mut named.topics {
            let id = topic.topic_id.as_u128();
            let name = state.topics().find(|t| t.id == id).map(|t| t.name.clone());
            topic.topic = TopicName(StrBytes::from_string(name.unwrap_or_default()));
        }
    }
    let (mut response, bytes, answer_now) = fetch_by_name(shared, &named, version);
    // Answered as asked: by id (v13 carries no names).
    for (answer, asked) in response.responses.iter_mut().zip(&req.topics) {
        answer.topic_id = asked.topic_id;
        answer.topic = asked.topic.clone();
    }
    (response, bytes, answer_now)
}

fn fetch_by_name(
    shared: &Shared,
    req: &FetchRequest,
    version: i16,
) -> (FetchResponse, usize, bool) {
    if req.replica_id.0 >= 0 && shared.config.is_clustered() {
        return follower_fetch_once(shared, req, version);
    }
    let state = shared.state();
    fetch_response(req, version, |name, part, limit| {
        state.leading_partition(name, part.partition, part.current_leader_epoch)?;
        let read = state.read(name, part.partition, part.fetch_offset, limit)?;
        Ok(PartitionAnswer {
            records: read.records,
            high_watermark: read.high_watermark,
            log_start_offset: read.log_start_offset,
            diverging: None,
        })
    })
}

/// A follower's fetch: served up to the log end, records the follower's position, may move
/// the high watermark (which wakes waiting produces and consumer fetches).
pub(super) fn follower_fetch_once(
    shared: &Shared,
    req: &FetchRequest,
    version: i16,
) -> (FetchResponse, usize, bool) {
    let now = shared.now_ms();
    let mut advanced = false;
    let answer = {
        let mut state = shared.state();
        fetch_response(req, version, |name, part, limit| {
            let fetch = FollowerFetch {
                replica_id: req.replica_id.0,
                fetch_offset: part.fetch_offset,
                current_leader_epoch: (part.current_leader_epoch >= 0)
                    .then_some(part.current_leader_epoch),
                last_fetched_epoch: (version >= 12 && part.last_fetched_epoch >= 0)
                    .then_some(part.last_fetched_epoch),
            };
            let (read, hw_advanced) =
                state.follower_fetch(name, part.partition, &fetch, limit, now)?;
            advanced |= hw_advanced;
            Ok(PartitionAnswer {
                records: read.records,
                high_watermark: read.high_watermark,
                log_start_offset: read.log_start_offset,
                diverging: read.diverging,
            })
        })
    };
    if advanced {
        shared.appended.notify_waiters();
    }
    answer
}

/// One partition's part of a fetch response, for a consumer or a follower.
pub(super) struct PartitionAnswer {
    records: Bytes,
    high_watermark: i64,
    log_start_offset: i64,
    /// Set (for a follower) when its log diverges from the leader's.
    diverging: Option<crate::replica::epoch_cache::EpochEndOffset>,
}

/// Build a fetch response by asking `read` for each requested partition with its byte
/// budget (KIP-74: the first partition with data may exceed the budget by one batch).
/// Returns the response, the bytes in it, and whether an error or a divergence calls for
/// answering at once.
pub(super) fn fetch_response(
    req: &FetchRequest,
    version: i16,
    mut read: impl FnMut(
        &str,
        &fetch_request::FetchPartition,
        ReadLimit,
    ) -> Result<PartitionAnswer, Refusal>,
) -> (FetchResponse, usize, bool) {
    let mut budget = if req.max_bytes <= 0 || version < 3 {
        FETCH_RESPONSE_BYTES_MAX
    } else {
        (req.max_bytes as usize).min(FETCH_RESPONSE_BYTES_MAX)
    };
    let mut total = 0usize;
    let mut answer_now = false;
    let read_committed = req.isolation_level == 1;
    let mut responses = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let name = topic.topic.0.as_str();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for part in &topic.partitions {
            let entry = fetch_response::PartitionData::default()
                .with_partition_index(part.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_aborted_transactions(read_committed.then(Vec::new))
                .with_preferred_read_replica(BrokerId(-1));
            // Both the partition's and the response's limits bound every partition; only
            // the first partition with data gets its first batch whole above them (KIP-74).
            let limit = ReadLimit {
                max_bytes: (part.partition_max_bytes.max(0) as usize).min(budget),
                min_one_batch: total == 0,
            };
            let result = if name.is_empty() {
                // Only a topic id this broker does not hold leaves a topic without a name.
                Err(Refusal::new(
                    ResponseError::UnknownTopicId,
                    "no topic with this id here".to_string(),
                ))
            } else {
                read(name, part, limit)
            };
            answer_now |= result.is_err();
            let resp = answer_partition(entry, result, |resp, answer| {
                resp.high_watermark = answer.high_watermark;
                resp.last_stable_offset = answer.high_watermark;
                resp.log_start_offset = answer.log_start_offset;
                if let Some(end) = answer.diverging {
                    answer_now = true;
                    resp.diverging_epoch = fetch_response::EpochEndOffset::default()
                        .with_epoch(end.epoch)
                        .with_end_offset(end.end_offset);
                }
                total += answer.records.len();
                budget = budget.saturating_sub(answer.records.len());
                resp.records = Some(answer.records);
            });
            partitions.push(resp);
        }
        responses.push(
            fetch_response::FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions),
        );
    }
    // Sessions (KIP-227) are not kept: session id 0 tells clients to send full fetches.
    (
        FetchResponse::default()
            .with_session_id(0)
            .with_responses(responses),
        total,
        answer_now,
    )
}

partitions!(FetchRequest, topics, topic, partitions, partition);
partitions!(FetchResponse, responses, topic, partitions, partition_index);
