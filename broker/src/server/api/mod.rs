//! Request handlers: decode a Kafka request, apply it to `BrokerState`, encode the
//! response. This module dispatches and holds what the APIs share (encoding, the
//! per-partition answer, calls to the controller); each API has a file of its own, its
//! standalone and clustered forms side by side.
//!
//! Protocol-level failures inside a well-formed request become error codes in the
//! response. A request that cannot be decoded at all (unknown API, unsupported version,
//! garbage) closes the connection, as Kafka does, because no valid response can be
//! encoded for it.

use super::Shared;
use crate::config::{FETCH_RESPONSE_BYTES_MAX, FETCH_WAIT_MS_MAX};
use crate::controller::rpc::{Request as ControllerRequest, Response as ControllerResponse};
use crate::group::{GroupCoordinator, RequestToken, Response as GroupResponse};
use crate::log::ReadLimit;
use crate::protocol::{
    served_range, supported_range, RequestPrefix, CLUSTER_AUTHORIZED_OPERATIONS,
    TOPIC_AUTHORIZED_OPERATIONS,
};
use crate::replica::partition_replica::FollowerFetch;
use crate::server::group::Outcome;
use crate::state::{validate_topic_name, BrokerState, ProduceWait, Refusal};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

mod api_versions;
mod create_topics;
mod delete_topics;
mod describe_configs;
mod fetch;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod offset_for_leader_epoch;
mod produce;

mod consumer_group_describe;
mod consumer_group_heartbeat;
mod delete_groups;
mod describe_groups;
mod find_coordinator;
mod heartbeat;
mod join_group;
mod leave_group;
mod list_groups;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod sync_group;

use api_versions::*;
use create_topics::*;
use delete_topics::*;
use fetch::*;
use init_producer_id::*;
use list_offsets::*;
use metadata::*;
use offset_for_leader_epoch::*;
use produce::*;

use consumer_group_describe::*;
use consumer_group_heartbeat::*;
use delete_groups::*;
use describe_groups::*;
use find_coordinator::*;
use heartbeat::*;
use join_group::*;
use leave_group::*;
use list_groups::*;
use offset_commit::*;
use offset_delete::*;
use offset_fetch::*;
use sync_group::*;

/// The answer to a request that needs nothing of the broker's state (ApiVersions), so it
/// can be given while the logs are still loading; None for any other request.
pub(super) fn answer_without_state(frame: &[u8]) -> Option<Result<Vec<u8>, String>> {
    let prefix = RequestPrefix::parse(frame)?;
    (prefix.api_key == ApiKey::ApiVersions as i16).then(|| api_versions(frame, prefix))
}

/// Handle one request frame. `Ok(None)`: no response is due (acks=0).
/// `Err`: the request is malformed and the connection must close.
pub(super) async fn handle(
    shared: &Shared,
    frame: &[u8],
    peer: SocketAddr,
) -> Result<Option<Vec<u8>>, String> {
    if let Some(answer) = answer_without_state(frame) {
        return answer.map(Some);
    }
    let prefix = RequestPrefix::parse(frame).ok_or("request shorter than its header")?;
    let api_key = ApiKey::try_from(prefix.api_key)
        .map_err(|_| format!("unknown API key {}", prefix.api_key))?;
    let version = prefix.api_version;
    let Some((min, max)) = served_range(api_key) else {
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
            let asked = req.partitions();
            let (mut resp, waits) = produce(shared, req);
            assert_answers_every_partition("Produce", asked, resp.partitions());
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
            assert_answers_every_partition("Fetch", req.partitions(), resp.partitions());
            encode(correlation_id, response_header_version, version, &resp).map(Some)
        }
        ApiKey::ListOffsets => {
            let req = decode!(ListOffsetsRequest);
            let resp = list_offsets(shared, &req, version);
            assert_answers_every_partition("ListOffsets", req.partitions(), resp.partitions());
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
            assert_answers_every_partition(
                "OffsetForLeaderEpoch",
                req.partitions(),
                resp.partitions(),
            );
            encode(correlation_id, response_header_version, version, &resp).map(Some)
        }
        ApiKey::DescribeConfigs => {
            let req = decode!(DescribeConfigsRequest);
            let resp = describe_configs::describe_configs(shared, &req, version);
            encode(correlation_id, response_header_version, version, &resp).map(Some)
        }
        ApiKey::FindCoordinator
        | ApiKey::JoinGroup
        | ApiKey::SyncGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::OffsetCommit
        | ApiKey::OffsetFetch
        | ApiKey::ListGroups
        | ApiKey::DescribeGroups
        | ApiKey::DeleteGroups
        | ApiKey::OffsetDelete
        | ApiKey::ConsumerGroupHeartbeat
        | ApiKey::ConsumerGroupDescribe => {
            let client = ClientInfo {
                client_id: header
                    .client_id
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                host: format!("/{}", peer.ip()),
            };
            let request = GroupRequest {
                api_key,
                version,
                correlation_id,
                response_header_version,
            };
            handle_group(shared, request, &mut buf, &client)
                .await
                .map(Some)
        }
        other => Err(format!("{other:?} is not served by this broker")),
    }
}

/// A group API request's framing, for `handle_group`.
struct GroupRequest {
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response_header_version: i16,
}

/// The group coordinator's APIs: decode, serve, encode.
async fn handle_group(
    shared: &Shared,
    request: GroupRequest,
    buf: &mut Bytes,
    client: &ClientInfo,
) -> Result<Vec<u8>, String> {
    let GroupRequest {
        api_key,
        version,
        correlation_id,
        response_header_version,
    } = request;
    macro_rules! decode {
        ($t:ty) => {
            <$t>::decode(buf, version)
                .map_err(|e| format!("bad {api_key:?} v{version} body: {e}"))?
        };
    }
    macro_rules! answer {
        ($resp:expr) => {
            encode(correlation_id, response_header_version, version, &$resp)
        };
    }
    match api_key {
        ApiKey::FindCoordinator => {
            let req = decode!(FindCoordinatorRequest);
            answer!(find_coordinator(shared, &req, version).await)
        }
        ApiKey::JoinGroup => {
            let req = decode!(JoinGroupRequest);
            answer!(join_group(shared, &req, version, client).await)
        }
        ApiKey::SyncGroup => {
            let req = decode!(SyncGroupRequest);
            answer!(sync_group(shared, &req, version).await)
        }
        ApiKey::Heartbeat => answer!(heartbeat(shared, &decode!(HeartbeatRequest))),
        ApiKey::LeaveGroup => {
            let req = decode!(LeaveGroupRequest);
            answer!(leave_group(shared, &req, version))
        }
        ApiKey::OffsetCommit => {
            let req = decode!(OffsetCommitRequest);
            answer!(offset_commit(shared, &req, version).await)
        }
        ApiKey::OffsetFetch => {
            let req = decode!(OffsetFetchRequest);
            let mut ids: Vec<&str> = req.groups.iter().map(|g| g.group_id.as_str()).collect();
            if version < 8 {
                ids.push(req.group_id.as_str());
            }
            shared.groups.until_caught_up(shared, &ids).await;
            answer!(offset_fetch(shared, &req, version))
        }
        ApiKey::ListGroups => {
            let req = decode!(ListGroupsRequest);
            answer!(list_groups(shared, &req, version))
        }
        ApiKey::DescribeGroups => {
            let req = decode!(DescribeGroupsRequest);
            let ids: Vec<&str> = req.groups.iter().map(|g| g.as_str()).collect();
            shared.groups.until_caught_up(shared, &ids).await;
            answer!(describe_groups(shared, &req, version))
        }
        ApiKey::DeleteGroups => answer!(delete_groups(shared, &decode!(DeleteGroupsRequest)).await),
        ApiKey::OffsetDelete => answer!(offset_delete(shared, &decode!(OffsetDeleteRequest)).await),
        ApiKey::ConsumerGroupHeartbeat => {
            let req = decode!(ConsumerGroupHeartbeatRequest);
            answer!(consumer_group_heartbeat(shared, &req, version, client).await)
        }
        ApiKey::ConsumerGroupDescribe => {
            let req = decode!(ConsumerGroupDescribeRequest);
            let ids: Vec<&str> = req.group_ids.iter().map(|g| g.as_str()).collect();
            shared.groups.until_caught_up(shared, &ids).await;
            answer!(consumer_group_describe(shared, &req))
        }
        other => Err(format!("{other:?} is not a group API")),
    }
}

/// Who sent a request, as JoinGroup records it for DescribeGroups.
pub(super) struct ClientInfo {
    client_id: String,
    /// Kafka's form: `/` and the peer's address.
    host: String,
}

/// Serve a group request if its group is coordinated here (else its error code), waiting
/// for an answer the coordinator parks.
async fn serve_group(
    shared: &Shared,
    group_id: &str,
    call: impl FnOnce(&mut GroupCoordinator, RequestToken, i64) -> Option<GroupResponse>,
) -> Result<GroupResponse, i16> {
    shared.groups.until_caught_up(shared, &[group_id]).await;
    let outcome = shared.groups.request(shared, &[group_id], call)?;
    // Acknowledged only after the fsyncs its records caused.
    shared.wait_for_sync_cost().await;
    Ok(await_outcome(outcome).await)
}

/// `serve_group` for a request the coordinator always answers at once.
fn serve_group_now<T>(
    shared: &Shared,
    group_id: &str,
    call: impl FnOnce(&mut GroupCoordinator, RequestToken, i64) -> Option<T>,
) -> Result<T, i16> {
    match shared.groups.request(shared, &[group_id], call)? {
        Outcome::Now(answer) => Ok(answer),
        Outcome::Parked(_) => panic!("the coordinator parked a request it always answers"),
    }
}

/// The answer now, or when the coordinator releases it.
async fn await_outcome(outcome: Outcome<GroupResponse>) -> GroupResponse {
    match outcome {
        Outcome::Now(answer) => answer,
        // The sender lives in the service until it is answered; it is never dropped
        // unanswered (unload answers NOT_COORDINATOR through `take_responses`).
        Outcome::Parked(receiver) => receiver
            .await
            .expect("a parked group request is always answered"),
    }
}

/// A parked answer of the wrong API: the coordinator broke its contract.
fn unreachable_answer(api: &str, answer: &GroupResponse) -> ! {
    panic!("{api} was answered with {answer:?}")
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

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn uuid(id: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(id)
}

fn refusal_parts(r: &Refusal) -> (i16, Option<StrBytes>) {
    (r.error.code(), Some(str_bytes(&r.message)))
}

/// Request accounting for the per-partition APIs: the response answers every partition
/// the request named, once, in the request's order (clients match answers to requests by
/// position as well as by name). A handler that dropped, added or reordered one would
/// leave a client waiting on an answer that never comes; this fails the request's task
/// instead (its connection closes; in the lab the run stops as a crash, with the cause).
fn assert_answers_every_partition(
    api: &str,
    asked: Vec<(String, i32)>,
    answered: Vec<(String, i32)>,
) {
    assert_eq!(
        asked, answered,
        "{api} response does not answer the request's partitions in order"
    );
}

/// The topic-partitions a per-partition request names or its response answers, in order.
trait Partitions {
    fn partitions(&self) -> Vec<(String, i32)>;
}

/// `Partitions` for a message whose `$topics` list holds topics named `$name`, each with a
/// `$parts` list of partitions indexed by `$index`.
macro_rules! partitions {
    ($message:ty, $topics:ident, $name:ident, $parts:ident, $index:ident) => {
        impl Partitions for $message {
            fn partitions(&self) -> Vec<(String, i32)> {
                self.$topics
                    .iter()
                    .flat_map(|t| {
                        t.$parts
                            .iter()
                            .map(move |p| (t.$name.to_string(), p.$index))
                    })
                    .collect()
            }
        }
    };
}
use partitions;

/// A partition's entry in a response that answers per topic and partition (Produce,
/// Fetch, ListOffsets, OffsetForLeaderEpoch): how it carries a refusal.
trait PartitionEntry {
    fn refuse(&mut self, refusal: &Refusal);
}

impl PartitionEntry for produce_response::PartitionProduceResponse {
    fn refuse(&mut self, refusal: &Refusal) {
        (self.error_code, self.error_message) = refusal_parts(refusal);
    }
}

impl PartitionEntry for fetch_response::PartitionData {
    fn refuse(&mut self, refusal: &Refusal) {
        self.error_code = refusal.error.code();
        self.records = Some(Bytes::new());
    }
}

impl PartitionEntry for list_offsets_response::ListOffsetsPartitionResponse {
    fn refuse(&mut self, refusal: &Refusal) {
        self.error_code = refusal.error.code();
    }
}

impl PartitionEntry for offset_for_leader_epoch_response::EpochEndOffset {
    fn refuse(&mut self, refusal: &Refusal) {
        self.error_code = refusal.error.code();
    }
}

/// The one shape of every per-partition answer: `entry` starts as the API's defaults (the
/// -1s Kafka sends with an error), then takes a successful result's fields through `fill`
/// or the refusal's error code (and message where the API has one), never both.
fn answer_partition<E: PartitionEntry, T>(
    mut entry: E,
    result: Result<T, Refusal>,
    fill: impl FnOnce(&mut E, T),
) -> E {
    match result {
        Ok(value) => fill(&mut entry, value),
        Err(refusal) => entry.refuse(&refusal),
    }
    entry
}

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
