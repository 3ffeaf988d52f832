//! Request handlers: decode a Kafka request, apply it to `BrokerState`, encode the
//! response. One function per API, in the order of `protocol::SUPPORTED_APIS`.
//!
//! Protocol-level failures inside a well-formed request become error codes in the
//! response. A request that cannot be decoded at all (unknown API, unsupported version,
//! garbage) closes the connection, as Kafka does, because no valid response can be
//! encoded for it.

use super::Shared;
use crate::config::{FETCH_RESPONSE_BYTES_MAX, FETCH_WAIT_MS_MAX};
use crate::log::ReadLimit;
use crate::protocol::{
    supported_range, RequestPrefix, CLUSTER_AUTHORIZED_OPERATIONS, SUPPORTED_APIS,
    TOPIC_AUTHORIZED_OPERATIONS,
};
use crate::replica::partition_replica::FollowerFetch;
use crate::state::{validate_topic_name, BrokerState, ProduceWait, Refusal};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::time::Duration;

/// The answer to a request that needs nothing of the broker's state (ApiVersions), so it
/// can be given while the logs are still loading; None for any other request.
pub(super) fn answer_without_state(frame: &[u8]) -> Option<Result<Vec<u8>, String>> {
    let prefix = RequestPrefix::parse(frame)?;
    (prefix.api_key == ApiKey::ApiVersions as i16).then(|| api_versions(frame, prefix))
}

/// ApiVersions in any version, answered in v0 with our ranges when the version is unknown
/// (KIP-511) so the client can retry with one we know.
fn api_versions(frame: &[u8], prefix: RequestPrefix) -> Result<Vec<u8>, String> {
    let version = prefix.api_version;
    let (min, max) = supported_range(ApiKey::ApiVersions).expect("ApiVersions is served");
    if version < min || version > max {
        let mut body = api_versions_body();
        body.error_code = ResponseError::UnsupportedVersion.code();
        return encode(prefix.correlation_id, 0, 0, &body);
    }
    let mut buf = Bytes::copy_from_slice(frame);
    let header = RequestHeader::decode(
        &mut buf,
        ApiKey::ApiVersions.request_header_version(version),
    )
    .map_err(|e| format!("bad ApiVersions header: {e}"))?;
    ApiVersionsRequest::decode(&mut buf, version)
        .map_err(|e| format!("bad ApiVersions v{version} body: {e}"))?;
    // The ApiVersions response header is always v0 (KIP-511).
    encode(header.correlation_id, 0, version, &api_versions_body())
}

/// Handle one request frame. `Ok(None)`: no response is due (acks=0).
/// `Err`: the request is malformed and the connection must close.
pub(super) async fn handle(shared: &Shared, frame: &[u8]) -> Result<Option<Vec<u8>>, String> {
    if let Some(answer) = answer_without_state(frame) {
        return answer.map(Some);
    }
    let prefix = RequestPrefix::parse(frame).ok_or("request shorter than its header")?;
    let api_key = ApiKey::try_from(prefix.api_key)
        .map_err(|_| format!("unknown API key {}", prefix.api_key))?;
    let version = prefix.api_version;
    let Some((min, max)) = supported_range(api_key) else {
        return Err(format!("{api_key:?} is not served by this broker"));
    };
    if version < min || version > max {
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
        // Answered by `answer_without_state` before any decoding.
        ApiKey::ApiVersions => Err("ApiVersions reached the state handlers".into()),
        ApiKey::Metadata => {
            let req = decode!(MetadataRequest);
            let mut resp = if shared.config.is_clustered() {
                cluster_metadata(shared, &req, version).await
            } else {
                metadata(shared, &req, version)
            };
            report_authorized_operations(&req, version, &mut resp);
            encode(correlation_id, response_header_version, version, &resp).map(Some)
        }
        ApiKey::Produce => {
            let req = decode!(ProduceRequest);
            let acks = req.acks;
            let timeout_ms = req.timeout_ms;
            let (mut resp, waits) = produce(shared, req);
            // Acknowledged only after the fsyncs it caused, however long they take.
            shared.wait_for_sync_cost().await;
            if !waits.is_empty() {
                wait_for_replication(shared, &mut resp, waits, timeout_ms).await;
            }
            if acks == 0 {
                // No answer can carry an error, so, as Kafka does, a failed acks=0 produce
                // closes the connection: the producer notices and refreshes its metadata
                // (after a leader change it would otherwise write to the old leader forever).
                let failed = resp
                    .responses
                    .iter()
                    .flat_map(|t| t.partition_responses.iter())
                    .find(|p| p.error_code != 0);
                if let Some(p) = failed {
                    return Err(format!(
                        "acks=0 produce refused with error {} on partition {}",
                        p.error_code, p.index
                    ));
                }
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
            let resp = if shared.config.is_clustered() {
                cluster_create_topics(shared, &req).await
            } else {
                create_topics(shared, &req)
            };
            encode(correlation_id, response_header_version, version, &resp).map(Some)
        }
        ApiKey::DeleteTopics => {
            let req = decode!(DeleteTopicsRequest);
            let resp = if shared.config.is_clustered() {
                cluster_delete_topics(shared, &req).await
            } else {
                delete_topics(shared, &req)
            };
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
        ApiKey::DescribeConfigs => {
            let req = decode!(DescribeConfigsRequest);
            let resp = super::describe_configs::describe_configs(shared, &req, version);
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

/// The topics a Metadata request names (None: all of them) and whether missing ones may
/// be created.
fn metadata_request_topics(
    shared: &Shared,
    req: &MetadataRequest,
    version: i16,
) -> (Option<Vec<String>>, bool) {
    // v0 sends an empty list for "all topics"; v1+ sends null.
    let names = match &req.topics {
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
    (names, auto_create)
}

fn metadata(shared: &Shared, req: &MetadataRequest, version: i16) -> MetadataResponse {
    let node_id = shared.config.node_id;
    let mut state = shared.state();
    let (names, auto_create) = metadata_request_topics(shared, req, version);
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

/// KIP-430: the operation sets a Metadata request asked for (v8+; the cluster's only up
/// to v10, where DescribeCluster took it over). Topics that could not be described keep
/// Kafka's "omitted" value.
fn report_authorized_operations(req: &MetadataRequest, version: i16, resp: &mut MetadataResponse) {
    if version >= 8 && req.include_topic_authorized_operations {
        for topic in resp.topics.iter_mut().filter(|t| t.error_code == 0) {
            topic.topic_authorized_operations = TOPIC_AUTHORIZED_OPERATIONS;
        }
    }
    if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = CLUSTER_AUTHORIZED_OPERATIONS;
    }
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

/// An acks=all produce appended by a leader, waiting for its ISR: (topic index, partition
/// index in the response, topic, partition, leader epoch, last offset).
type ReplicationWait = (usize, usize, String, i32, i32, i64);

fn produce(shared: &Shared, req: ProduceRequest) -> (ProduceResponse, Vec<ReplicationWait>) {
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
    (ProduceResponse::default().with_responses(responses), waits)
}

/// acks=all on a leader: wait until the high watermark passes every appended record, the
/// leader loses the partition, or the request's timeout passes (REQUEST_TIMED_OUT; the
/// records may still commit later, as in Kafka).
async fn wait_for_replication(
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
fn follower_fetch_once(
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
struct PartitionAnswer {
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
fn fetch_response(
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
            let mut resp = fetch_response::PartitionData::default()
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
            match read(name, part, limit) {
                Ok(answer) => {
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
                }
                Err(refusal) => {
                    answer_now = true;
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
        answer_now,
    )
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
                    let result = state
                        .leading_partition(name, part.partition_index, part.current_leader_epoch)
                        .and_then(|p| {
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
            let overrides = topic_overrides(topic);
            let node_id = shared.config.node_id;
            let result = requested_assignment(topic).and_then(|assignment| {
                // A manual assignment may name only this broker, the cluster's one.
                let (partitions, replication_factor) = match assignment {
                    None => (topic.num_partitions, topic.replication_factor),
                    Some(assignment) => {
                        crate::controller::logic::validate_assignment(
                            &assignment,
                            |id| id == node_id,
                            |id| id == node_id,
                        )
                        .map_err(|e| {
                            Refusal::new(
                                ResponseError::try_from_code(e.code)
                                    .unwrap_or(ResponseError::Unknown(e.code)),
                                e.message,
                            )
                        })?;
                        (assignment.len() as i32, assignment[0].len() as i16)
                    }
                };
                state.create_topic(
                    name,
                    partitions,
                    replication_factor,
                    &overrides,
                    req.validate_only,
                    shared.now_ms(),
                )
            });
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

/// A CreateTopics entry's manual replica assignment, one broker list per partition in
/// partition order, if it has one. As Kafka: the partition count and replication factor
/// must then be left to the assignment (-1), and the partitions numbered 0, 1, ... once each.
fn requested_assignment(
    topic: &create_topics_request::CreatableTopic,
) -> Result<Option<Vec<Vec<i32>>>, Refusal> {
    if topic.assignments.is_empty() {
        return Ok(None);
    }
    if topic.num_partitions != -1 || topic.replication_factor != -1 {
        return Err(Refusal::new(
            ResponseError::InvalidRequest,
            "a manual replica assignment needs num_partitions and replication_factor -1",
        ));
    }
    let mut by_partition: Vec<_> = topic.assignments.iter().collect();
    by_partition.sort_by_key(|a| a.partition_index);
    for (expected, a) in by_partition.iter().enumerate() {
        if a.partition_index != expected as i32 {
            return Err(Refusal::new(
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "partitions must be numbered 0 to {} once each, found {}",
                    by_partition.len() - 1,
                    a.partition_index
                ),
            ));
        }
    }
    Ok(Some(
        by_partition
            .into_iter()
            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
            .collect(),
    ))
}

/// A CreateTopics entry's settings (`null` values, meaning "the default", are dropped).
fn topic_overrides(topic: &create_topics_request::CreatableTopic) -> BTreeMap<String, String> {
    topic
        .configs
        .iter()
        .filter_map(|c| {
            c.value
                .as_ref()
                .map(|v| (c.name.to_string(), v.to_string()))
        })
        .collect()
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
                    let result = state
                        .leading_partition(name, part.partition, part.current_leader_epoch)
                        .and_then(|_| {
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

/// Metadata on a clustered broker: brokers, leaders, replicas and ISRs from the latest
/// metadata image. Auto-creation asks the controller and answers LEADER_NOT_AVAILABLE
/// until the topic's leaders are known here, as Kafka does.
async fn cluster_metadata(
    shared: &Shared,
    req: &MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let (requested, auto_create) = metadata_request_topics(shared, req, version);
    let image = shared.state().image().cloned().unwrap_or_default();
    let mut created = BTreeMap::new();
    if let (Some(names), true) = (&requested, auto_create) {
        let missing: Vec<crate::controller::logic::NewTopic> = names
            .iter()
            .filter(|n| !image.topics.contains_key(*n) && validate_topic_name(n).is_ok())
            .map(|n| crate::controller::logic::NewTopic {
                name: n.clone(),
                partitions: shared.config.num_partitions,
                replication_factor: shared.config.default_replication_factor,
                configs: BTreeMap::new(),
                assignment: None,
            })
            .collect();
        if !missing.is_empty() {
            for (name, result) in
                call_topics(shared, ControllerRequest::CreateTopics(missing)).await
            {
                let code = match result {
                    Ok(()) => ResponseError::LeaderNotAvailable.code(),
                    Err((code, _)) if code == ResponseError::TopicAlreadyExists.code() => {
                        ResponseError::LeaderNotAvailable.code()
                    }
                    Err((code, _)) => code,
                };
                created.insert(name, code);
            }
        }
    }
    let names = requested.unwrap_or_else(|| image.topics.keys().cloned().collect());
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        let Some(topic) = image.topics.get(&name) else {
            let code = match validate_topic_name(&name) {
                Err(r) => r.error.code(),
                Ok(()) => created
                    .get(&name)
                    .copied()
                    .unwrap_or(ResponseError::UnknownTopicOrPartition.code()),
            };
            topics.push(
                metadata_response::MetadataResponseTopic::default()
                    .with_error_code(code)
                    .with_name(Some(TopicName(str_bytes(&name)))),
            );
            continue;
        };
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let error = if p.leader < 0 {
                    ResponseError::LeaderNotAvailable.code()
                } else {
                    0
                };
                metadata_response::MetadataResponsePartition::default()
                    .with_error_code(error)
                    .with_partition_index(p.partition)
                    .with_leader_id(BrokerId(p.leader))
                    .with_leader_epoch(p.leader_epoch)
                    .with_replica_nodes(p.replicas.iter().map(|r| BrokerId(*r)).collect())
                    .with_isr_nodes(p.isr.iter().map(|r| BrokerId(*r)).collect())
            })
            .collect();
        topics.push(
            metadata_response::MetadataResponseTopic::default()
                .with_name(Some(TopicName(str_bytes(&name))))
                .with_topic_id(uuid(topic.id))
                .with_partitions(partitions),
        );
    }
    let mut brokers: Vec<metadata_response::MetadataResponseBroker> = image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| {
            metadata_response::MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(&b.host))
                .with_port(b.port as i32)
                .with_rack(b.rack.as_deref().map(str_bytes))
        })
        .collect();
    if brokers.is_empty() {
        // Not registered yet: clients still need a node to talk to.
        let (host, port) = shared.advertised.clone();
        brokers.push(
            metadata_response::MetadataResponseBroker::default()
                .with_node_id(BrokerId(shared.config.node_id))
                .with_host(str_bytes(&host))
                .with_port(port as i32),
        );
    }
    // KRaft tells clients a random live broker is the controller (they cannot reach the
    // quorum); the lowest id keeps answers stable.
    let controller = brokers.first().map_or(-1, |b| b.node_id.0);
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(&shared.config.cluster_id)))
        .with_controller_id(BrokerId(controller))
        .with_topics(topics)
}

use crate::controller::rpc::{Request as ControllerRequest, Response as ControllerResponse};

/// Forward topic creation or deletion to the active controller; one result per topic.
async fn call_topics(
    shared: &Shared,
    request: ControllerRequest,
) -> Vec<(String, Result<(), (i16, String)>)> {
    let names: Vec<String> = match &request {
        ControllerRequest::CreateTopics(topics) => topics.iter().map(|t| t.name.clone()).collect(),
        ControllerRequest::DeleteTopics(names) => names.clone(),
        _ => Vec::new(),
    };
    let mut client =
        crate::controller::ControllerClient::new(shared.config.controller_quorum_voters.clone());
    match client.call(&request, Duration::from_secs(10)).await {
        Ok(ControllerResponse::Topics(results)) => results
            .into_iter()
            .map(|(name, r)| (name, r.map_err(|e| (e.code, e.message))))
            .collect(),
        _ => names
            .into_iter()
            .map(|name| {
                (
                    name,
                    Err((
                        ResponseError::RequestTimedOut.code(),
                        "no active controller answered".to_string(),
                    )),
                )
            })
            .collect(),
    }
}

/// Wait (briefly) until this broker's image shows the outcome, so that a client's next
/// Metadata request here sees what it just created or deleted.
async fn await_image(shared: &Shared, names: &[String], present: bool) {
    for _ in 0..50 {
        let done = {
            let state = shared.state();
            let image = state.image();
            names
                .iter()
                .all(|n| image.is_some_and(|i| i.topics.contains_key(n) == present))
        };
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn cluster_create_topics(shared: &Shared, req: &CreateTopicsRequest) -> CreateTopicsResponse {
    // Topic settings and the assignment's shape are checked here; the controller checks
    // the assignment's brokers.
    let mut results: BTreeMap<String, Result<(), (i16, String)>> = BTreeMap::new();
    let mut topics: Vec<crate::controller::logic::NewTopic> = Vec::new();
    for topic in &req.topics {
        let assignment = match requested_assignment(topic) {
            Ok(assignment) => assignment,
            Err(refusal) => {
                results.insert(
                    topic.name.0.to_string(),
                    Err((refusal.error.code(), refusal.message)),
                );
                continue;
            }
        };
        let defaults = assignment.is_none();
        topics.push(crate::controller::logic::NewTopic {
            name: topic.name.0.to_string(),
            partitions: if topic.num_partitions == -1 && defaults {
                shared.config.num_partitions
            } else {
                topic.num_partitions
            },
            replication_factor: if topic.replication_factor == -1 && defaults {
                shared.config.default_replication_factor
            } else {
                topic.replication_factor
            },
            configs: topic_overrides(topic),
            assignment,
        });
    }
    let mut valid = Vec::new();
    for topic in topics {
        match crate::topic_config::TopicConfig::new(
            &shared.config.log,
            shared.config.message_max_bytes,
            &topic.configs,
        ) {
            Err(message) => {
                results.insert(
                    topic.name.clone(),
                    Err((ResponseError::InvalidConfig.code(), message)),
                );
            }
            Ok(_) if req.validate_only => {
                results.insert(topic.name.clone(), Ok(()));
            }
            Ok(_) => valid.push(topic),
        }
    }
    if !valid.is_empty() {
        let sizes: BTreeMap<String, (i32, i16)> = valid
            .iter()
            .map(|t| {
                let size = match &t.assignment {
                    Some(a) => (a.len() as i32, a[0].len() as i16),
                    None => (t.partitions, t.replication_factor),
                };
                (t.name.clone(), size)
            })
            .collect();
        let outcome = call_topics(shared, ControllerRequest::CreateTopics(valid)).await;
        let created: Vec<String> = outcome
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(n, _)| n.clone())
            .collect();
        await_image(shared, &created, true).await;
        for (name, result) in outcome {
            results.insert(name, result);
        }
        let state = shared.state();
        let image = state.image();
        let topics = req
            .topics
            .iter()
            .map(|topic| topic_result(topic, &results, image, &sizes))
            .collect();
        return CreateTopicsResponse::default().with_topics(topics);
    }
    let topics = req
        .topics
        .iter()
        .map(|topic| topic_result(topic, &results, None, &BTreeMap::new()))
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

fn topic_result(
    topic: &create_topics_request::CreatableTopic,
    results: &BTreeMap<String, Result<(), (i16, String)>>,
    image: Option<&crate::controller::logic::MetadataImage>,
    sizes: &BTreeMap<String, (i32, i16)>,
) -> create_topics_response::CreatableTopicResult {
    let name = topic.name.0.to_string();
    let mut resp = create_topics_response::CreatableTopicResult::default()
        .with_name(topic.name.clone())
        .with_num_partitions(-1)
        .with_replication_factor(-1);
    match results.get(&name) {
        Some(Ok(())) => {
            if let Some((partitions, replication_factor)) = sizes.get(&name) {
                resp.num_partitions = *partitions;
                resp.replication_factor = *replication_factor;
            }
            if let Some(t) = image.and_then(|i| i.topics.get(&name)) {
                resp.topic_id = uuid(t.id);
            }
        }
        Some(Err((code, message))) => {
            resp.error_code = *code;
            resp.error_message = Some(str_bytes(message));
        }
        None => resp.error_code = ResponseError::UnknownServerError.code(),
    }
    resp
}

async fn cluster_delete_topics(shared: &Shared, req: &DeleteTopicsRequest) -> DeleteTopicsResponse {
    let image = shared.state().image().cloned().unwrap_or_default();
    let mut names: Vec<(Option<String>, u128)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), 0))
        .collect();
    for t in &req.topics {
        let name = t.name.as_ref().map(|n| n.0.to_string()).or_else(|| {
            image
                .topics
                .values()
                .find(|topic| topic.id == t.topic_id.as_u128())
                .map(|topic| topic.name.clone())
        });
        names.push((name, t.topic_id.as_u128()));
    }
    let known: Vec<String> = names.iter().filter_map(|(n, _)| n.clone()).collect();
    let outcome: BTreeMap<String, Result<(), (i16, String)>> = if known.is_empty() {
        BTreeMap::new()
    } else {
        call_topics(shared, ControllerRequest::DeleteTopics(known))
            .await
            .into_iter()
            .collect()
    };
    let deleted: Vec<String> = outcome
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(n, _)| n.clone())
        .collect();
    await_image(shared, &deleted, false).await;
    let responses = names
        .into_iter()
        .map(|(name, id)| {
            let mut resp = delete_topics_response::DeletableTopicResult::default()
                .with_name(name.as_deref().map(|n| TopicName(str_bytes(n))))
                .with_topic_id(uuid(id));
            match name.as_ref().and_then(|n| outcome.get(n)) {
                Some(Ok(())) => {}
                Some(Err((code, message))) => {
                    resp.error_code = *code;
                    resp.error_message = Some(str_bytes(message));
                }
                None => resp.error_code = ResponseError::UnknownTopicId.code(),
            }
            resp
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
