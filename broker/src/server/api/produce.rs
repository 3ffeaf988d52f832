//! Produce: append per partition, acks 0/1/all, waiting for the high watermark on acks=all.

use super::*;

/// An acks=all produce appended by a leader, waiting for its ISR: (topic index, partition
/// index in the response, topic, partition, leader epoch, last offset).
pub(super) type ReplicationWait = (usize, usize, String, i32, i32, i64);

pub(super) fn produce(
    shared: &Shared,
    req: ProduceRequest,
) -> (ProduceResponse, Vec<ReplicationWait>) {
    let now = shared.now_ms();
    let clustered = shared.config.is_clustered();
    let mut waits = Vec::new();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut appended_any = false;
    {
        let mut state = shared.state();
        for topic in &req.topic_data {
            let name = topic.name.0.as_str();
            let mut partitions = Vec::with_capacity(topic.partition_data.len());
            for part in &topic.partition_data {
                let entry = produce_response::PartitionProduceResponse::default()
                    .with_index(part.index)
                    .with_base_offset(-1)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(-1);
                let result = if req.transactional_id.is_some() {
                    Err(Refusal::new(
                        ResponseError::TransactionalIdAuthorizationFailed,
                        "transactions are not supported by this broker yet",
                    ))
                } else if name == crate::server::group::OFFSETS_TOPIC {
                    // Kafka's rule: clients never append to an internal topic (only the
                    // group coordinator writes its records there).
                    Err(Refusal::new(
                        ResponseError::InvalidTopicException,
                        format!("Cannot append to internal topic {name}"),
                    ))
                } else if !matches!(req.acks, -1..=1) {
                    Err(Refusal::new(
                        ResponseError::InvalidRequiredAcks,
                        format!("acks must be -1, 0 or 1, got {}", req.acks),
                    ))
                } else {
                    match &part.records {
                        Some(records) => state.produce(name, part.index, records, req.acks, now),
                        None => Err(Refusal::new(
                            ResponseError::InvalidRecord,
                            "produce without records",
                        )),
                    }
                };
                if let Err(refusal) = &result {
                    tracing::debug!(topic = name, partition = part.index, error = ?refusal.error, message = %refusal.message, "produce refused");
                }
                let resp = answer_partition(entry, result, |resp, appended| {
                    appended_any = true;
                    resp.base_offset = appended.base_offset;
                    resp.log_start_offset = appended.log_start_offset;
                    resp.log_append_time_ms = appended.log_append_time_ms;
                    if clustered && req.acks == -1 {
                        waits.push((
                            responses.len(),
                            partitions.len(),
                            name.to_string(),
                            part.index,
                            appended.leader_epoch,
                            appended.last_offset,
                        ));
                    }
                });
                partitions.push(resp);
            }
            responses.push(
                produce_response::TopicProduceResponse::default()
                    .with_name(topic.name.clone())
                    .with_partition_responses(partitions),
            );
        }
    }
    if appended_any {
        shared.appended.notify_waiters();
    }
    (ProduceResponse::default().with_responses(responses), waits)
}

/// acks=all on a leader: wait until the high watermark passes every appended record, the
/// leader loses the partition, or the request's timeout passes (REQUEST_TIMED_OUT; the
/// records may still commit later, as in Kafka).
pub(super) async fn wait_for_replication(
    shared: &Shared,
    resp: &mut ProduceResponse,
    mut waits: Vec<ReplicationWait>,
    timeout_ms: i32,
) {
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(timeout_ms.clamp(0, 300_000) as u64);
    loop {
        let changed = shared.appended.notified();
        {
            let state = shared.state();
            waits.retain(|(ti, pi, topic, partition, epoch, last_offset)| {
                match state.produce_status(topic, *partition, *epoch, *last_offset) {
                    ProduceWait::Waiting => true,
                    ProduceWait::Done(code) => {
                        let part = &mut resp.responses[*ti].partition_responses[*pi];
                        if code != 0 {
                            part.error_code = code;
                            part.base_offset = -1;
                        }
                        false
                    }
                }
            });
        }
        let now = tokio::time::Instant::now();
        if waits.is_empty() {
            return;
        }
        if now >= deadline {
            for (ti, pi, ..) in waits {
                let part = &mut resp.responses[ti].partition_responses[pi];
                part.error_code = ResponseError::RequestTimedOut.code();
                part.base_offset = -1;
            }
            return;
        }
        let _ = tokio::time::timeout(deadline - now, changed).await;
    }
}

partitions!(ProduceRequest, topic_data, name, partition_data, index);
partitions!(ProduceResponse, responses, name, partition_responses, index);
