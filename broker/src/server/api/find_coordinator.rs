//! FindCoordinator (v0-4; v4 batches keys, KIP-699): the leader of the group's
//! `__consumer_offsets` partition, creating the topic on first use as Kafka does.

use super::*;
use crate::server::group::{offsets_partition, offsets_partitions, OFFSETS_TOPIC};

/// Kafka's `CoordinatorType`.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub(super) fn find_coordinator(
    shared: &Shared,
    req: &FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
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
        return not_available("group coordination is not wired for clusters yet");
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
            shared.groups.created(partitions);
            tracing::info!(partitions, "created {OFFSETS_TOPIC}");
            Ok(partitions)
        }
        Err(r) if r.error == ResponseError::TopicAlreadyExists => {
            offsets_partitions(shared).ok_or_else(|| format!("{OFFSETS_TOPIC} vanished"))
        }
        Err(r) => Err(format!("cannot create {OFFSETS_TOPIC}: {}", r.message)),
    }
}
