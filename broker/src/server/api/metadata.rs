//! Metadata: brokers, topics, partitions, leaders, replicas and ISRs (standalone and
//! clustered), auto-creation and KIP-430 authorized operations.

use super::*;

/// The topics a Metadata request names (None: all of them), whether missing ones may be
/// created, and the topic ids asked for (v10+, a topic named by id alone: KIP-848
/// clients look up the ids of their assignment) that no topic has.
pub(super) fn metadata_request_topics(
    shared: &Shared,
    req: &MetadataRequest,
    version: i16,
) -> (Option<Vec<String>>, bool, Vec<u128>) {
    let mut unknown_ids = Vec::new();
    // v0 sends an empty list for "all topics"; v1+ sends null.
    let names = match &req.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => {
            let state = shared.state();
            let name_of = |id: u128| match state.image() {
                Some(image) => image
                    .topics
                    .values()
                    .find(|t| t.id == id)
                    .map(|t| t.name.clone()),
                None => state.topics().find(|t| t.id == id).map(|t| t.name.clone()),
            };
            let mut names = Vec::new();
            for t in topics {
                match &t.name {
                    Some(name) => names.push(name.0.to_string()),
                    None if !t.topic_id.is_nil() => match name_of(t.topic_id.as_u128()) {
                        Some(name) => names.push(name),
                        None => unknown_ids.push(t.topic_id.as_u128()),
                    },
                    None => {}
                }
            }
            Some(names)
        }
    };
    let auto_create =
        shared.config.auto_create_topics_enable && (version < 4 || req.allow_auto_topic_creation);
    (names, auto_create, unknown_ids)
}

/// The answer for topic ids no topic has.
fn unknown_topic_ids(
    ids: &[u128],
) -> impl Iterator<Item = metadata_response::MetadataResponseTopic> + '_ {
    ids.iter().map(|id| {
        metadata_response::MetadataResponseTopic::default()
            .with_error_code(ResponseError::UnknownTopicId.code())
            .with_topic_id(uuid(*id))
    })
}

pub(super) fn metadata(shared: &Shared, req: &MetadataRequest, version: i16) -> MetadataResponse {
    let node_id = shared.config.node_id;
    // Before the state lock: resolving topic ids takes it.
    let (names, auto_create, unknown_ids) = metadata_request_topics(shared, req, version);
    let mut state = shared.state();
    let names = names.unwrap_or_else(|| state.topics().map(|t| t.name.clone()).collect());
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        if state.topic(&name).is_none() {
            let error = if validate_topic_name(&name).is_err() {
                Some(ResponseError::InvalidTopicException)
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
    topics.extend(unknown_topic_ids(&unknown_ids));
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
pub(super) fn report_authorized_operations(
    req: &MetadataRequest,
    version: i16,
    resp: &mut MetadataResponse,
) {
    if version >= 8 && req.include_topic_authorized_operations {
        for topic in resp.topics.iter_mut().filter(|t| t.error_code == 0) {
            topic.topic_authorized_operations = TOPIC_AUTHORIZED_OPERATIONS;
        }
    }
    if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = CLUSTER_AUTHORIZED_OPERATIONS;
    }
}

pub(super) fn describe_topic(
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
                .with_leader_epoch(p.leader_epoch())
                .with_replica_nodes(vec![BrokerId(node_id)])
                .with_isr_nodes(vec![BrokerId(node_id)])
        })
        .collect();
    metadata_response::MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(name))))
        .with_is_internal(name == crate::server::OFFSETS_TOPIC)
        .with_topic_id(uuid(topic.id))
        .with_partitions(partitions)
}

/// Metadata on a clustered broker: brokers, leaders, replicas and ISRs from the latest
/// metadata image. Auto-creation asks the controller and answers LEADER_NOT_AVAILABLE
/// until the topic's leaders are known here, as Kafka does.
pub(super) async fn cluster_metadata(
    shared: &Shared,
    req: &MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let (requested, auto_create, unknown_ids) = metadata_request_topics(shared, req, version);
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
                Err(_) => ResponseError::InvalidTopicException.code(),
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
    topics.extend(unknown_topic_ids(&unknown_ids));
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
