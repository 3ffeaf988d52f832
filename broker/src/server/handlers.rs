//! Request handlers: decode a Kafka request, apply it to `BrokerState`, encode the
//! response. One function per API, in the order of `protocol::SUPPORTED_APIS`.
//!
//! Protocol-level failures inside a well-formed request become error codes in the
//! response. A request that cannot be decoded at all (unknown API, unsupported version,
//! garbage) closes the connection, as Kafka does, because no valid response can be
//! encoded for it.

use super::Shared;
use crate::config::{FETCH_RESPONSE_BYTES_MAX, FETCH_WAIT_MS_MAX};
use crate::protocol::{supported_range, RequestPrefix, SUPPORTED_APIS};
use crate::state::{validate_topic_name, BrokerState, Refusal};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::time::Duration;

/// Handle one request frame. `Ok(None)`: no response is due (acks=0).
/// `Err`: the request is malformed and the connection must close.
pub(super) async fn handle(shared: &Shared, frame: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let prefix = RequestPrefix::parse(frame).ok_or("request shorter than its header")?;
    let api_key = ApiKey::try_from(prefix.api_key)
        .map_err(|_| format!("unknown API key {}", prefix.api_key))?;
    let version = prefix.api_version;
    let Some((min, max)) = supported_range(api_key) else {
        return Err(format!("{api_key:?} is not served by this broker"));
    };
    if version < min || version > max {
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer in v0 with UNSUPPORTED_VERSION and our range, so the client
            // can retry with a version we know.
            let mut body = api_versions_body();
            body.error_code = ResponseError::UnsupportedVersion.code();
            return encode(prefix.correlation_id, 0, 0, &body).map(Some);
        }
        return Err(format!(
            "{api_key:?} v{version} is outside the served range {min}..={max}"
        ));
    }
    let mut buf = Bytes::copy_from_slice(frame);
    let header = RequestHeader::decode(&mut buf, api_key.request_header_version(version))
        .map_err(|e| format!("bad {api_key:?} header: {e}"))?;
    let response_header_version = api_key.response_header_version(version);
    let correlation_id = header.correlation_id;
    macro_rules! decode {
        ($t:ty) => {
            <$t>::decode(&mut buf, version)
                .map_err(|e| format!("bad {api_key:?} v{version} body: {e}"))?
        };
    }
    match api_key {
        ApiKey::ApiVersions => {
            // The ApiVersions response header is always v0 (KIP-511).
            let _ = decode!(ApiVersionsRequest);
            encode(correlation_id, 0, version, &api_versions_body()).map(Some)
        }
        ApiKey::Metadata => {
            let req = decode!(MetadataRequest);
            let resp = metadata(shared, &req, version);
            encode(correlation_id, response_header_version, version, &resp).map(Some)
        }
        ApiKey::Produce => {
            let req = decode!(ProduceRequest);
            let acks = req.acks;
            let resp = produce(shared, req);
            // Acknowledged only after the fsyncs it caused, however long they take.
            shared.wait_for_sync_cost().await;
            if acks == 0 {
                return Ok(None);
            }
            encode(correlation_id, response_header_version, version, &resp).map(Some)
        }
        ApiKey::Fetch => {
            let req = decode!(FetchRequest);
            let resp = fetch(shared, &req, version).await;
            encode(correlation_id, response_header_version, version, &resp).map(Some)
        }
        ApiKey::ListOffsets => {
            let req = decode!(ListOffsetsRequest);
            let resp = list_offsets(shared, &req, version);
            encode(correlation_id, response_header_version, version, &resp).map(Some)
        }
        ApiKey::CreateTopics => {
            let req = decode!(CreateTopicsRequest);
            let resp = create_topics(shared, &req);
            encode(correlation_id, response_header_version, version, &resp).map(Some)
        }
        ApiKey::DeleteTopics => {
            let req = decode!(DeleteTopicsRequest);
            let resp = delete_topics(shared, &req);
            encode(correlation_id, response_header_version, version, &resp).map(Some)
        }
        ApiKey::InitProducerId => {
            let req = decode!(InitProducerIdRequest);
            let resp = init_producer_id(shared, &req);
            encode(correlation_id, response_header_version, version, &resp).map(Some)
        }
        ApiKey::OffsetForLeaderEpoch => {
            let req = decode!(OffsetForLeaderEpochRequest);
            let resp = offset_for_leader_epoch(shared, &req);
            encode(correlation_id, response_header_version, version, &resp).map(Some)
        }
        other => Err(format!("{other:?} is not served by this broker")),
    }
}

fn encode<M: Encodable>(
    correlation_id: i32,
    header_version: i16,
    version: i16,
    body: &M,
) -> Result<Vec<u8>, String> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let mut out = BytesMut::new();
    header
        .encode(&mut out, header_version)
        .and_then(|_| body.encode(&mut out, version))
        .map_err(|e| format!("cannot encode response: {e}"))?;
    Ok(out.to_vec())
}

fn api_versions_body() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        SUPPORTED_APIS
            .iter()
            .map(|(key, min, max)| {
                api_versions_response::ApiVersion::default()
                    .with_api_key(*key as i16)
                    .with_min_version(*min)
                    .with_max_version(*max)
            })
            .collect(),
    )
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn uuid(id: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(id)
}

fn refusal_parts(r: &Refusal) -> (i16, Option<StrBytes>) {
    (r.error.code(), Some(str_bytes(&r.message)))
}

fn metadata(shared: &Shared, req: &MetadataRequest, version: i16) -> MetadataResponse {
    let node_id = shared.config.node_id;
    let mut state = shared.state();
    // v0 sends an empty list for "all topics"; v1+ sends null.
    let names: Option<Vec<String>> = match &req.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(
            topics
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                .collect(),
        ),
    };
    let auto_create =
        shared.config.auto_create_topics_enable && (version < 4 || req.allow_auto_topic_creation);
    let names = names.unwrap_or_else(|| state.topics().map(|t| t.name.clone()).collect());
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        if state.topic(&name).is_none() {
            let error = if let Err(r) = validate_topic_name(&name) {
                Some(r.error)
            } else if auto_create {
                match state.create_topic(&name, -1, -1, &BTreeMap::new(), false, shared.now_ms()) {
                    Ok(()) => None,
                    Err(r) if r.error == ResponseError::TopicAlreadyExists => None,
                    Err(r) => Some(r.error),
                }
            } else {
                Some(ResponseError::UnknownTopicOrPartition)
            };
            if let Some(error) = error {
                topics.push(
                    metadata_response::MetadataResponseTopic::default()
                        .with_error_code(error.code())
                        .with_name(Some(TopicName(str_bytes(&name)))),
                );
                continue;
            }
        }
        topics.push(describe_topic(&state, &name, node_id));
    }
    let (host, port) = shared.advertised.clone();
    MetadataResponse::default()
        .with_brokers(vec![metadata_response::MetadataResponseBroker::default()
            .with_node_id(BrokerId(node_id))
            .with_host(str_bytes(&host))
            .with_port(port as i32)])
        .with_cluster_id(Some(str_bytes(&shared.config.cluster_id)))
        .with_controller_id(BrokerId(node_id))
        .with_topics(topics)
}

fn describe_topic(
    state: &BrokerState,
    name: &str,
    node_id: i32,
) -> metadata_response::MetadataResponseTopic {
    let topic = state.topic(name).expect("caller checked the topic exists");
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, p)| {
            metadata_response::MetadataResponsePartition::default()
                .with_partition_index(index as i32)
                .with_leader_id(BrokerId(node_id))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(vec![BrokerId(node_id)])
                .with_isr_nodes(vec![BrokerId(node_id)])
        })
        .collect();
    metadata_response::MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(name))))
        .with_topic_id(uuid(topic.id))
        .with_partitions(partitions)
}

fn produce(shared: &Shared, req: ProduceRequest) -> ProduceResponse {
    let now = shared.now_ms();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut appended_any = false;
    {
        let mut state = shared.state();
        for topic in &req.topic_data {
            let name = topic.name.0.as_str();
            let mut partitions = Vec::with_capacity(topic.partition_data.len());
            for part in &topic.partition_data {
                let mut resp = produce_response::PartitionProduceResponse::default()
                    .with_index(part.index)
                    .with_base_offset(-1)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(-1);
                let result = if req.transactional_id.is_some() {
                    Err(Refusal::new(
                        ResponseError::TransactionalIdAuthorizationFailed,
                        "transactions are not supported by this broker yet",
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
                match result {
                    Ok(appended) => {
                        appended_any = true;
                        resp.base_offset = appended.base_offset;
                        resp.log_start_offset = appended.log_start_offset;
                    }
                    Err(refusal) => {
                        tracing::debug!(topic = name, partition = part.index, error = ?refusal.error, message = %refusal.message, "produce refused");
                        (resp.error_code, resp.error_message) = refusal_parts(&refusal);
                    }
                }
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
    ProduceResponse::default().with_responses(responses)
}

/// Fetch with long poll: answer at once if `min_bytes` are available or an error is to
/// be reported, otherwise park until data arrives or `max_wait_ms` passes.
async fn fetch(shared: &Shared, req: &FetchRequest, version: i16) -> FetchResponse {
    let wait_ms = (req.max_wait_ms as i64).clamp(0, FETCH_WAIT_MS_MAX);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms as u64);
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

fn fetch_once(shared: &Shared, req: &FetchRequest, version: i16) -> (FetchResponse, usize, bool) {
    let state = shared.state();
    let mut budget = if req.max_bytes <= 0 || version < 3 {
        FETCH_RESPONSE_BYTES_MAX
    } else {
        (req.max_bytes as usize).min(FETCH_RESPONSE_BYTES_MAX)
    };
    let mut total = 0usize;
    let mut has_error = false;
    let read_committed = req.isolation_level == 1;
    let mut responses = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let name = topic.topic.0.as_str();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for part in &topic.partitions {
            let mut resp = fetch_response::PartitionData::default()
                .with_partition_index(part.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_aborted_transactions(read_committed.then(Vec::new))
                .with_preferred_read_replica(BrokerId(-1));
            let result = state.partition(name, part.partition).and_then(|p| {
                check_leader_epoch(part.current_leader_epoch, p.leader_epoch)?;
                // KIP-74: the first partition with data may exceed the budget by one batch.
                let max_bytes = (part.partition_max_bytes.max(0) as usize).min(if total == 0 {
                    usize::MAX
                } else {
                    budget
                });
                state.read(
                    name,
                    part.partition,
                    part.fetch_offset,
                    max_bytes.max(if total == 0 { 1 } else { 0 }),
                )
            });
            match result {
                Ok(read) => {
                    resp.high_watermark = read.high_watermark;
                    resp.last_stable_offset = read.high_watermark;
                    resp.log_start_offset = read.log_start_offset;
                    total += read.records.len();
                    budget = budget.saturating_sub(read.records.len());
                    resp.records = Some(read.records);
                }
                Err(refusal) => {
                    has_error = true;
                    resp.error_code = refusal.error.code();
                    resp.records = Some(Bytes::new());
                }
            }
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
        has_error,
    )
}

/// KIP-320: a client that knows a newer epoch than ours, or an older one, is told so.
fn check_leader_epoch(requested: i32, current: i32) -> Result<(), Refusal> {
    if requested < 0 || requested == current {
        Ok(())
    } else if requested < current {
        Err(Refusal::new(
            ResponseError::FencedLeaderEpoch,
            format!("epoch {requested} is older than {current}"),
        ))
    } else {
        Err(Refusal::new(
            ResponseError::UnknownLeaderEpoch,
            format!("epoch {requested} is newer than {current}"),
        ))
    }
}

fn list_offsets(shared: &Shared, req: &ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
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
                    let mut resp = list_offsets_response::ListOffsetsPartitionResponse::default()
                        .with_partition_index(part.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    let result = state.partition(name, part.partition_index).and_then(|p| {
                        check_leader_epoch(part.current_leader_epoch, p.leader_epoch)?;
                        let found =
                            state.list_offset(name, part.partition_index, part.timestamp)?;
                        Ok((found, p.leader_epoch))
                    });
                    match result {
                        Ok(((offset, timestamp), epoch)) => {
                            resp.offset = offset;
                            resp.timestamp = timestamp;
                            // The field exists from v4; the codec refuses it set below that.
                            if version >= 4 && offset >= 0 {
                                resp.leader_epoch = epoch;
                            }
                        }
                        Err(refusal) => resp.error_code = refusal.error.code(),
                    }
                    resp
                })
                .collect();
            list_offsets_response::ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

fn create_topics(shared: &Shared, req: &CreateTopicsRequest) -> CreateTopicsResponse {
    let mut state = shared.state();
    let topics = req
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let mut resp = create_topics_response::CreatableTopicResult::default()
                .with_name(topic.name.clone())
                .with_num_partitions(-1)
                .with_replication_factor(-1);
            let overrides: BTreeMap<String, String> = topic
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect();
            let result = if !topic.assignments.is_empty() {
                Err(Refusal::new(
                    ResponseError::InvalidRequest,
                    "manual replica assignment is not supported",
                ))
            } else {
                state.create_topic(
                    name,
                    topic.num_partitions,
                    topic.replication_factor,
                    &overrides,
                    req.validate_only,
                    shared.now_ms(),
                )
            };
            match result {
                Ok(()) => {
                    if let Some(t) = state.topic(name) {
                        resp.topic_id = uuid(t.id);
                        resp.num_partitions = t.partitions.len() as i32;
                        resp.replication_factor = t.replication_factor;
                    }
                }
                Err(refusal) => (resp.error_code, resp.error_message) = refusal_parts(&refusal),
            }
            resp
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

fn delete_topics(shared: &Shared, req: &DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut state = shared.state();
    // v6 names topics in `topics` (by name or id); older versions in `topic_names`.
    let mut names: Vec<(Option<String>, u128)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), 0))
        .collect();
    for t in &req.topics {
        names.push((
            t.name.as_ref().map(|n| n.0.to_string()),
            t.topic_id.as_u128(),
        ));
    }
    let responses = names
        .into_iter()
        .map(|(name, id)| {
            let name = name.or_else(|| state.topics().find(|t| t.id == id).map(|t| t.name.clone()));
            let mut resp = delete_topics_response::DeletableTopicResult::default()
                .with_name(name.as_deref().map(|n| TopicName(str_bytes(n))))
                .with_topic_id(uuid(id));
            let result = match &name {
                Some(n) => state.delete_topic(n),
                None => Err(Refusal::new(
                    ResponseError::UnknownTopicId,
                    "no topic has this id",
                )),
            };
            if let Err(refusal) = result {
                (resp.error_code, resp.error_message) = refusal_parts(&refusal);
            }
            resp
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

fn init_producer_id(shared: &Shared, req: &InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        return resp.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    match shared.state().init_producer_id() {
        Ok((id, epoch)) => resp
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
        Err(refusal) => resp.with_error_code(refusal.error.code()),
    }
}

/// OffsetForLeaderEpoch (KIP-101/279/320): where a leader epoch ends in the log, so that a
/// client or follower that saw an older epoch can tell whether the log was truncated
/// under it.
fn offset_for_leader_epoch(
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
                    let mut resp = offset_for_leader_epoch_response::EpochEndOffset::default()
                        .with_partition(part.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let result = state.partition(name, part.partition).and_then(|p| {
                        check_leader_epoch(part.current_leader_epoch, p.leader_epoch)?;
                        state.end_offset_for_epoch(name, part.partition, part.leader_epoch)
                    });
                    match result {
                        Ok((epoch, end_offset)) => {
                            resp.leader_epoch = epoch;
                            resp.end_offset = end_offset;
                        }
                        Err(refusal) => resp.error_code = refusal.error.code(),
                    }
                    resp
                })
                .collect();
            offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
