//! The tasks a clustered broker runs besides serving clients: heartbeats and metadata from
//! the controller quorum, ISR changes sent to it, the ISR expiration timer, and one replica
//! fetcher per leader it follows.
//!
//! Each is a loop around `BrokerState` calls; none decides anything itself.

use super::Shared;
use crate::client::Connection;
use crate::controller::logic::HeartbeatRequest;
use crate::controller::rpc::{Request, Response};
use crate::controller::ControllerClient;
use crate::protocol::REPLICA_FETCH_VERSION;
use crate::replica::epoch_cache::EpochEndOffset;
use crate::state::FetchTarget;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How long a controller call may look for an active controller before giving up (the
/// loops then try again).
const CONTROLLER_CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// A metadata long poll parks this long at the controller.
const METADATA_WAIT_MS: u64 = 500;
/// Follower fetch response budget.
const REPLICA_FETCH_MAX_BYTES: i32 = 10 * 1024 * 1024;
const REPLICA_FETCH_PARTITION_MAX_BYTES: i32 = 1024 * 1024;
/// Pause after a failed exchange with a leader or controller.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

pub(super) fn spawn(shared: &Arc<Shared>) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(heartbeat_loop(shared.clone())),
        tokio::spawn(metadata_loop(shared.clone())),
        tokio::spawn(alter_partition_loop(shared.clone())),
        tokio::spawn(isr_expiration_loop(shared.clone())),
    ]
}

fn heartbeat_request(shared: &Shared) -> Request {
    let state = shared.state();
    let (host, port) = shared.advertised.clone();
    Request::Heartbeat(HeartbeatRequest {
        broker_id: shared.config.node_id,
        incarnation: state.incarnation().expect("clustered"),
        host,
        port,
        rack: shared.config.rack.clone(),
        metadata_offset: state.metadata_offset(),
    })
}

/// Register, then keep the session alive (Kafka: BrokerRegistration and BrokerHeartbeat).
async fn heartbeat_loop(shared: Arc<Shared>) {
    let mut client = ControllerClient::new(shared.config.controller_quorum_voters.clone());
    let interval = Duration::from_millis(shared.config.broker_heartbeat_interval_ms as u64);
    loop {
        let request = heartbeat_request(&shared);
        match client.call(&request, CONTROLLER_CALL_TIMEOUT).await {
            Ok(Response::Heartbeat { image, .. }) => {
                if let Some(image) = image {
                    apply_image(&shared, image).await;
                }
                // BUGGIFY: heartbeats early or late, well inside the session timeout.
                tokio::time::sleep(faultline_core::buggify_duration!(interval, 0.1, 1.5)).await;
            }
            Ok(other) => {
                tracing::warn!(?other, "unexpected heartbeat answer");
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat failed");
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
        }
    }
}

/// Follow the committed metadata as it changes (a long poll on the active controller).
async fn metadata_loop(shared: Arc<Shared>) {
    let mut client = ControllerClient::new(shared.config.controller_quorum_voters.clone());
    loop {
        let offset = shared.state().metadata_offset();
        let request = Request::FetchMetadata {
            offset,
            wait_ms: METADATA_WAIT_MS,
        };
        match client.call(&request, CONTROLLER_CALL_TIMEOUT).await {
            Ok(Response::Metadata(Some(image))) => apply_image(&shared, image).await,
            Ok(Response::Metadata(None)) => {}
            Ok(_) | Err(_) => tokio::time::sleep(RETRY_BACKOFF).await,
        }
    }
}

async fn apply_image(shared: &Arc<Shared>, image: crate::controller::logic::MetadataImage) {
    let now = shared.now_ms();
    let (changed, leaders) = {
        let mut state = shared.state();
        let changed = match state.apply_image(image, now) {
            Ok(changed) => changed,
            Err(e) => {
                tracing::error!(error = %e, "applying metadata failed");
                true
            }
        };
        let leaders = state.followed_leaders();
        (changed, leaders)
    };
    if changed {
        shared.appended.notify_waiters();
        shared.alter_signal.notify_one();
        // BUGGIFY: the groups reconcile a moment after the metadata is applied. On real
        // threads a request can run between the two; one for a partition led here but
        // not loaded yet must meet COORDINATOR_LOAD_IN_PROGRESS, not NOT_COORDINATOR.
        if faultline_core::buggify!(0.5) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Load the `__consumer_offsets` partitions led now, unload those no longer led.
        shared.groups.reconcile(shared);
    }
    let mut fetchers = shared.fetchers.lock().expect("fetchers lock");
    for leader in leaders {
        if fetchers.iter().any(|(id, _)| *id == leader) {
            continue;
        }
        let task = tokio::spawn(fetcher_loop(shared.clone(), leader));
        fetchers.push((leader, task));
    }
}

/// Send ISR changes to the controller and apply its answers (Kafka: AlterPartition).
async fn alter_partition_loop(shared: Arc<Shared>) {
    let mut client = ControllerClient::new(shared.config.controller_quorum_voters.clone());
    let broker_id = shared.config.node_id;
    loop {
        let requests = shared.state().take_alter_requests();
        if requests.is_empty() {
            let signal = shared.alter_signal.notified();
            let _ = tokio::time::timeout(Duration::from_millis(500), signal).await;
            continue;
        }
        for (topic, partition, request) in requests {
            let incarnation = shared.state().incarnation().expect("clustered");
            let call = Request::AlterPartition(crate::controller::logic::AlterPartitionRequest {
                broker_id,
                incarnation,
                topic: topic.clone(),
                partition,
                leader_epoch: request.leader_epoch,
                partition_epoch: request.partition_epoch,
                new_isr: request.new_isr.clone(),
            });
            match client.call(&call, CONTROLLER_CALL_TIMEOUT).await {
                Ok(Response::AlterPartition(result)) => {
                    let now = shared.now_ms();
                    let advanced = shared
                        .state()
                        .alter_partition_done(&topic, partition, &request, result, now);
                    if advanced {
                        shared.appended.notify_waiters();
                    }
                }
                _ => {
                    // No controller now: send it again later, if it is still wanted.
                    shared.state().requeue_alter(&topic, partition, request);
                    // BUGGIFY: a retry sooner or later than the usual backoff.
                    tokio::time::sleep(faultline_core::buggify_duration!(RETRY_BACKOFF, 0.1, 5.0))
                        .await;
                }
            }
        }
    }
}

/// Kafka's isr-expiration task: every half `replica.lag.time.max.ms`.
async fn isr_expiration_loop(shared: Arc<Shared>) {
    let period = Duration::from_millis((shared.config.replica_lag_time_max_ms as u64 / 2).max(1));
    loop {
        // BUGGIFY: the check runs early or late (a lagging follower still leaves the ISR
        // within 1.5 x replica.lag.time.max.ms).
        tokio::time::sleep(faultline_core::buggify_duration!(period, 0.1, 2.0)).await;
        let now = shared.now_ms();
        shared.state().shrink_isrs(now);
        shared.alter_signal.notify_one();
    }
}

/// Replicate every partition this broker follows from `leader`, for as long as the broker
/// runs: truncate by epoch first (OffsetForLeaderEpoch), then fetch.
async fn fetcher_loop(shared: Arc<Shared>, leader: i32) {
    let client_id = format!("replica-fetcher-{}-{leader}", shared.config.node_id);
    let mut connection: Option<Connection> = None;
    loop {
        if shared.closing.load(Ordering::SeqCst) {
            return;
        }
        let changed = shared.appended.notified();
        let (targets, address) = {
            let state = shared.state();
            let targets = state.fetch_targets(leader);
            let address = state
                .image()
                .and_then(|image| image.brokers.get(&leader))
                .map(|b| format!("{}:{}", b.host, b.port));
            (targets, address)
        };
        let Some(address) = address.filter(|_| !targets.is_empty()) else {
            connection = None;
            let _ = tokio::time::timeout(Duration::from_secs(1), changed).await;
            continue;
        };
        if connection.as_ref().is_none_or(|c| c.addr != address) {
            let timeout =
                Duration::from_millis(shared.config.replica_fetch_wait_max_ms as u64 + 5_000);
            match Connection::connect(&address, &client_id, timeout).await {
                Ok(c) => connection = Some(c),
                Err(e) => {
                    tracing::debug!(leader, error = %e, "cannot reach leader");
                    tokio::time::sleep(RETRY_BACKOFF).await;
                    continue;
                }
            }
        }
        let conn = connection.as_mut().expect("connected above");
        let result = fetch_round(&shared, conn, leader, targets).await;
        match result {
            Ok(true) => {}
            Ok(false) => tokio::time::sleep(RETRY_BACKOFF).await,
            Err(e) => {
                tracing::debug!(leader, error = %e, "replica fetch failed");
                connection = None;
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
        }
    }
}

/// One truncation-or-fetch exchange with the leader. `Ok(false)`: nothing useful came back
/// (errors for every partition): back off.
async fn fetch_round(
    shared: &Arc<Shared>,
    conn: &mut Connection,
    leader: i32,
    targets: Vec<FetchTarget>,
) -> Result<bool, crate::client::ClientError> {
    let node_id = shared.config.node_id;
    let (untruncated, ready): (Vec<FetchTarget>, Vec<FetchTarget>) =
        targets.into_iter().partition(|t| !t.truncated);
    if !untruncated.is_empty() {
        let mut asked = Vec::new();
        for t in &untruncated {
            match t.last_fetched_epoch {
                // Nothing to compare: an empty log, or one written without epochs.
                None => {
                    let _ = shared.state().follower_truncate(
                        &t.topic,
                        t.topic_id,
                        t.partition,
                        leader,
                        t.leader_epoch,
                        None,
                    );
                }
                Some(epoch) => asked.push((t, epoch)),
            }
        }
        if asked.is_empty() {
            return Ok(true);
        }
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(node_id))
            .with_topics(
                asked
                    .iter()
                    .map(|(t, epoch)| {
                        offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(t.topic.clone())))
                            .with_partitions(vec![
                                offset_for_leader_epoch_request::OffsetForLeaderPartition::default(
                                )
                                .with_partition(t.partition)
                                .with_current_leader_epoch(t.leader_epoch)
                                .with_leader_epoch(*epoch),
                            ])
                    })
                    .collect(),
            );
        let response = conn.request(&request).await?;
        let mut progressed = false;
        for topic in response.topics {
            for part in topic.partitions {
                let Some((t, _)) = asked.iter().find(|(t, _)| {
                    t.topic == topic.topic.0.as_str() && t.partition == part.partition
                }) else {
                    continue;
                };
                if part.error_code != 0 {
                    continue;
                }
                let answer =
                    (part.leader_epoch >= 0 && part.end_offset >= 0).then_some(EpochEndOffset {
                        epoch: part.leader_epoch,
                        end_offset: part.end_offset,
                    });
                let _ = shared.state().follower_truncate(
                    &t.topic,
                    t.topic_id,
                    t.partition,
                    leader,
                    t.leader_epoch,
                    answer,
                );
                progressed = true;
            }
        }
        return Ok(progressed);
    }

    let mut topics: Vec<fetch_request::FetchTopic> = Vec::new();
    for t in &ready {
        let partition = fetch_request::FetchPartition::default()
            .with_partition(t.partition)
            .with_current_leader_epoch(t.leader_epoch)
            .with_fetch_offset(t.fetch_offset)
            .with_last_fetched_epoch(t.last_fetched_epoch.unwrap_or(-1))
            // BUGGIFY: a tiny budget (one batch per fetch, KIP-74), so followers catch
            // up in many small steps.
            .with_partition_max_bytes(if faultline_core::buggify!() {
                1
            } else {
                REPLICA_FETCH_PARTITION_MAX_BYTES
            });
        let id = Uuid::from_u128(t.topic_id);
        match topics.iter_mut().find(|f| f.topic_id == id) {
            Some(f) => f.partitions.push(partition),
            None => topics.push(
                fetch_request::FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(t.topic.clone())))
                    .with_topic_id(id)
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(node_id))
        .with_max_wait_ms(shared.config.replica_fetch_wait_max_ms as i32)
        .with_min_bytes(1)
        .with_max_bytes(REPLICA_FETCH_MAX_BYTES)
        .with_session_epoch(-1)
        .with_topics(topics);
    // By topic id (KIP-516): the leader answers UNKNOWN_TOPIC_ID for a topic it knows
    // under another id (deleted and created again, learned by one of us only).
    conn.pin_version(ApiKey::Fetch, REPLICA_FETCH_VERSION);
    let response = conn.request(&request).await?;
    let now = shared.now_ms();
    let mut progressed = false;
    {
        let mut state = shared.state();
        for topic in &response.responses {
            for part in &topic.partitions {
                let Some(t) = ready.iter().find(|t| {
                    t.topic_id == topic.topic_id.as_u128() && t.partition == part.partition_index
                }) else {
                    continue;
                };
                if part.error_code != 0 {
                    let error = ResponseError::try_from_code(part.error_code);
                    tracing::debug!(
                        topic = t.topic,
                        partition = t.partition,
                        ?error,
                        "replica fetch refused"
                    );
                    if error == Some(ResponseError::OffsetOutOfRange) {
                        // Our log is ahead of the leader's without a divergence answer: go
                        // through OffsetForLeaderEpoch again.
                        state.restart_truncation(
                            &t.topic,
                            t.topic_id,
                            t.partition,
                            leader,
                            t.leader_epoch,
                        );
                    }
                    continue;
                }
                progressed = true;
                if part.diverging_epoch.epoch >= 0 {
                    let answer = EpochEndOffset {
                        epoch: part.diverging_epoch.epoch,
                        end_offset: part.diverging_epoch.end_offset,
                    };
                    let _ = state.follower_truncate(
                        &t.topic,
                        t.topic_id,
                        t.partition,
                        leader,
                        t.leader_epoch,
                        Some(answer),
                    );
                    continue;
                }
                let records = part.records.as_deref().unwrap_or(&[]);
                if let Err(e) = state.follower_append(
                    &t.topic,
                    t.topic_id,
                    t.partition,
                    leader,
                    t.leader_epoch,
                    records,
                    part.high_watermark,
                    now,
                ) {
                    tracing::warn!(topic = t.topic, partition = t.partition, error = %e.message, "replicated append failed");
                }
            }
        }
    }
    // The fsyncs a replicated append caused (flush.messages) are paid before fetching on.
    shared.wait_for_sync_cost().await;
    Ok(progressed)
}
