//! FindCoordinator (v0-4; v4 batches keys, KIP-699): the leader of the group's
//! `__consumer_offsets` partition, creating the topic on first use as Kafka does.

use super::*;
use crate::server::group::{offsets_partition, offsets_partitions, OFFSETS_TOPIC};

/// Kafka's `CoordinatorType`.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub(super) async fn find_coordinator(
    shared: &Shared,
    req: &FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    if shared.config.is_clustered()
        && req.key_type == KEY_TYPE_GROUP
        && offsets_partitions(shared).is_none()
    {
        create_clustered_offsets_topic(shared).await;
    }
    let keys: Vec<&StrBytes> = if version >= 4 {
        req.coordinator_keys.iter().collect()
    } else {
        vec![&req.key]
    };
    let answers: Vec<find_coordinator_response::Coordinator> = keys
        .into_iter()
        .map(|key| {
            let entry = find_coordinator_response::Coordinator::default()
                .with_key(key.clone())
                .with_node_id(BrokerId(-1))
                .with_host(str_bytes(""))
                .with_port(-1);
            match coordinator(shared, req.key_type, key.as_str()) {
                Ok((node_id, host, port)) => entry
                    .with_node_id(BrokerId(node_id))
                    .with_host(str_bytes(&host))
                    .with_port(port as i32),
                Err((code, message)) => entry
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(&message))),
            }
        })
        .collect();
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(answers);
    }
    let one = answers.into_iter().next().expect("one key below v4");
    FindCoordinatorResponse::default()
        .with_error_code(one.error_code)
        .with_error_message(one.error_message.filter(|_| version >= 1))
        .with_node_id(one.node_id)
        .with_host(one.host)
        .with_port(one.port)
}

/// The coordinator of one key: (node id, host, port), or the error to answer with.
fn coordinator(
    shared: &Shared,
    key_type: i8,
    key: &str,
) -> Result<(i32, String, u16), (i16, String)> {
    let not_available = |message: &str| {
        Err((
            ResponseError::CoordinatorNotAvailable.code(),
            message.to_string(),
        ))
    };
    match key_type {
        KEY_TYPE_GROUP => {}
        KEY_TYPE_TRANSACTION => return not_available("transactions are not supported yet"),
        other => {
            return Err((
                ResponseError::InvalidRequest.code(),
                format!("unknown coordinator key type {other}"),
            ))
        }
    }
    if key.is_empty() {
        return Err((
            ResponseError::InvalidGroupId.code(),
            "empty group id".into(),
        ));
    }
    if shared.config.is_clustered() {
        return clustered_coordinator(shared, key);
    }
    let partitions = match offsets_partitions(shared) {
        Some(partitions) => partitions,
        None => match create_offsets_topic(shared) {
            Ok(partitions) => partitions,
            Err(message) => return not_available(&message),
        },
    };
    let partition = offsets_partition(key, partitions);
    match shared.groups.ownership(shared, key) {
        crate::server::group::Ownership::NotAvailable => {
            not_available("the group coordinator is not available")
        }
        // Loading, serving: this broker leads the partition (standalone: every one).
        _ => {
            let (host, port) = shared.advertised.clone();
            tracing::debug!(group = key, partition, "coordinator found");
            Ok((shared.config.node_id, host, port))
        }
    }
}

/// Create `__consumer_offsets` on this standalone broker, compacted as Kafka's, with
/// `offsets.topic.num.partitions` partitions and the replication factor capped by the one
/// broker there is. Returns its partition count.
fn create_offsets_topic(shared: &Shared) -> Result<i32, String> {
    let partitions = shared.config.offsets_topic_num_partitions;
    let replication_factor = shared.config.offsets_topic_replication_factor.min(1);
    let overrides = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
    let created = shared.state().create_topic(
        OFFSETS_TOPIC,
        partitions,
        replication_factor,
        &overrides,
        false,
        shared.now_ms(),
    );
    match created {
        Ok(()) => {
            tracing::info!(partitions, "created {OFFSETS_TOPIC}");
            shared.groups.reconcile(shared);
            Ok(partitions)
        }
        Err(r) if r.error == ResponseError::TopicAlreadyExists => {
            offsets_partitions(shared).ok_or_else(|| format!("{OFFSETS_TOPIC} vanished"))
        }
        Err(r) => Err(format!("cannot create {OFFSETS_TOPIC}: {}", r.message)),
    }
}

/// In a cluster: the broker leading the group's partition, from the metadata image.
fn clustered_coordinator(shared: &Shared, key: &str) -> Result<(i32, String, u16), (i16, String)> {
    let not_available =
        |message: String| Err((ResponseError::CoordinatorNotAvailable.code(), message));
    let state = shared.state();
    let Some(image) = state.image() else {
        return not_available("no metadata yet".into());
    };
    let Some(topic) = image.topics.get(OFFSETS_TOPIC) else {
        return not_available(format!("{OFFSETS_TOPIC} is being created"));
    };
    let partition = offsets_partition(key, topic.partitions.len() as i32);
    let leader = topic.partitions[partition as usize].leader;
    match image.brokers.get(&leader) {
        Some(broker) if !broker.fenced => {
            tracing::debug!(group = key, partition, leader, "coordinator found");
            Ok((broker.id, broker.host.clone(), broker.port))
        }
        _ => not_available(format!("{OFFSETS_TOPIC}-{partition} has no leader")),
    }
}

/// Ask the active controller to create `__consumer_offsets` (Kafka creates it on the
/// first FindCoordinator): `offsets.topic.num.partitions` partitions, compacted, the
/// replication factor capped by the brokers registered. The caller answers
/// COORDINATOR_NOT_AVAILABLE until its leaders are known; clients retry.
async fn create_clustered_offsets_topic(shared: &Shared) {
    // Every registered broker counts, fenced or not: a broker briefly fenced at start-up
    // must not leave the topic with fewer replicas for good.
    let brokers = shared
        .state()
        .image()
        .map_or(0, |image| image.brokers.len());
    if brokers == 0 {
        return;
    }
    let replication_factor = (shared.config.offsets_topic_replication_factor as usize).min(brokers);
    let topic = crate::controller::logic::NewTopic {
        name: OFFSETS_TOPIC.to_string(),
        partitions: shared.config.offsets_topic_num_partitions,
        replication_factor: replication_factor as i16,
        configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
        assignment: None,
    };
    for (_, result) in call_topics(shared, ControllerRequest::CreateTopics(vec![topic])).await {
        match result {
            Ok(()) => tracing::info!(replication_factor, "created {OFFSETS_TOPIC}"),
            Err((code, _)) if code == ResponseError::TopicAlreadyExists.code() => {}
            Err((code, message)) => {
                tracing::warn!(code, %message, "cannot create {OFFSETS_TOPIC}")
            }
        }
    }
}
