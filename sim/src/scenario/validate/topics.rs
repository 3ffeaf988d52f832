//! `[[topic]]`: valid, distinct names (the broker's own rule), partition counts, a
//! replication factor the cluster can hold, and topic settings the broker accepts.

use super::{knob, Err};
use crate::scenario::{ScenarioError, TopicSpec};
use std::collections::BTreeMap;

/// Every topic checked, in file order: the partition count of each.
pub(super) fn validate(
    topics: &[TopicSpec],
    brokers: usize,
    err: Err,
) -> Result<BTreeMap<String, i32>, ScenarioError> {
    let mut topic_partitions = BTreeMap::new();
    for (i, t) in topics.iter().enumerate() {
        topic(i, t, brokers, &mut topic_partitions, err)?;
    }
    Ok(topic_partitions)
}

/// The `i`-th topic; its partition count joins `topic_partitions`.
fn topic(
    i: usize,
    t: &TopicSpec,
    brokers: usize,
    topic_partitions: &mut BTreeMap<String, i32>,
    err: Err,
) -> Result<(), ScenarioError> {
    let field = |f: &str| format!("topic[{i}].{f}");
    let name = t.name.get_ref();
    faultline::state::validate_topic_name(name)
        .map_err(|r| err(t.name.span(), field("name"), r.message))?;
    if topic_partitions.contains_key(name) {
        return Err(err(
            t.name.span(),
            field("name"),
            format!("topic {name:?} is defined twice"),
        ));
    }
    // With a list or range, clients and faults may name only the partitions every draw has.
    let (fewest, _) = knob(
        &t.partitions,
        field("partitions"),
        1..=1000,
        "1..=1000",
        err,
    )?;
    topic_partitions.insert(name.clone(), fewest);
    knob(
        &t.replication_factor,
        field("replication_factor"),
        1..=brokers as i64,
        &format!("1..={brokers} (the number of brokers)"),
        err,
    )?;
    // Every value a setting may take, each checked as the broker will (one list at a time).
    for (key, value) in &t.config {
        let choices = value.get_ref().choices();
        if choices.is_empty() {
            return Err(err(
                value.span(),
                format!("topic[{i}].config.{key}"),
                "a list of values to draw from must not be empty".into(),
            ));
        }
        for choice in choices {
            let mut overrides: BTreeMap<String, String> = t
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.get_ref().value().to_string()))
                .collect();
            overrides.insert(key.clone(), choice.to_string());
            if let Err(m) =
                faultline::topic_config::TopicConfig::new(&Default::default(), 1, &overrides)
            {
                let bad = m.split(':').next().unwrap_or("").to_string();
                let span = t.config.get(&bad).map_or(t.name.span(), |v| v.span());
                return Err(err(span, format!("topic[{i}].config.{bad}"), m));
            }
        }
    }
    Ok(())
}
