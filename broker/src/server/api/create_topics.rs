//! CreateTopics: standalone (this broker's state) and clustered (through the active
//! controller), with manual replica assignments and topic settings.

use super::*;

pub(super) fn create_topics(shared: &Shared, req: &CreateTopicsRequest) -> CreateTopicsResponse {
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
                        .map_err(Refusal::from)?;
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
pub(super) fn requested_assignment(
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
pub(super) fn topic_overrides(
    topic: &create_topics_request::CreatableTopic,
) -> BTreeMap<String, String> {
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

pub(super) async fn cluster_create_topics(
    shared: &Shared,
    req: &CreateTopicsRequest,
) -> CreateTopicsResponse {
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

pub(super) fn topic_result(
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
