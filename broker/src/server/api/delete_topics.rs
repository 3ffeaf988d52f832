//! DeleteTopics: standalone and clustered, by name or topic id.

use super::*;

pub(super) fn delete_topics(shared: &Shared, req: &DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut state = shared.state();
    let names = requested_topics(req, |_| None);
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

pub(super) async fn cluster_delete_topics(
    shared: &Shared,
    req: &DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let image = shared.state().image().cloned().unwrap_or_default();
    let names = requested_topics(req, |id| {
        image
            .topics
            .values()
            .find(|topic| topic.id == id)
            .map(|topic| topic.name.clone())
    });
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

/// The topics a DeleteTopics request names, as (name, topic id): v6 names them in `topics`
/// (by name or id, a name found by `name_of_id` when only the id is given), older versions
/// in `topic_names` (id 0).
fn requested_topics(
    req: &DeleteTopicsRequest,
    name_of_id: impl Fn(u128) -> Option<String>,
) -> Vec<(Option<String>, u128)> {
    let mut names: Vec<(Option<String>, u128)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), 0))
        .collect();
    for t in &req.topics {
        let id = t.topic_id.as_u128();
        let name = t.name.as_ref().map(|n| n.0.to_string());
        names.push((name.or_else(|| name_of_id(id)), id));
    }
    names
}
