//! `[[producer]]` and `[[consumer]]`: how many, the topic each uses, rates and sizes within
//! their bounds, Kafka's rule on idempotence, start and stop inside the run, and a node
//! name of its own (it joins the names faults may use).

use super::Context;
use crate::scenario::{AcksSpec, ConsumerSpec, ProducerSpec, ScenarioError, CLIENTS_MAX, RATE_MAX};

pub(super) fn validate(
    producers: &[ProducerSpec],
    consumers: &[ConsumerSpec],
    context: &mut Context,
) -> Result<(), ScenarioError> {
    if producers.len() + consumers.len() > CLIENTS_MAX {
        return Err((context.err)(
            0..0,
            "producer".into(),
            format!("at most {CLIENTS_MAX} producers and consumers"),
        ));
    }
    for (i, p) in producers.iter().enumerate() {
        producer(i, p, context)?;
    }
    for (i, c) in consumers.iter().enumerate() {
        consumer(i, c, context)?;
    }
    Ok(())
}

fn producer(i: usize, p: &ProducerSpec, context: &mut Context) -> Result<(), ScenarioError> {
    let err = context.err;
    let what = format!("producer[{i}]");
    context.check_topic(&p.topic, format!("{what}.topic"))?;
    if !(1..=RATE_MAX).contains(p.rate.get_ref()) {
        return Err(err(
            p.rate.span(),
            format!("{what}.rate"),
            format!("must be 1..={RATE_MAX} records per second"),
        ));
    }
    if !(1..=10_000).contains(p.batch_records.get_ref()) {
        return Err(err(
            p.batch_records.span(),
            format!("{what}.batch_records"),
            "must be 1..=10000".into(),
        ));
    }
    if !(1..=100).contains(p.in_flight.get_ref()) {
        return Err(err(
            p.in_flight.span(),
            format!("{what}.in_flight"),
            "must be 1..=100".into(),
        ));
    }
    if !(8..=1_048_576).contains(p.record_bytes.get_ref()) {
        return Err(err(
            p.record_bytes.span(),
            format!("{what}.record_bytes"),
            "must be 8..=1048576".into(),
        ));
    }
    if p.idempotence == Some(true) && p.acks != AcksSpec::All {
        return Err(err(
            p.topic.span(),
            format!("{what}.idempotence"),
            "idempotence requires acks = \"all\", as in Kafka".into(),
        ));
    }
    context.check_window(&p.start, &p.stop, &what)?;
    let span = p.name.as_ref().map_or(p.topic.span(), |n| n.span());
    context.claim_name(p.node_name(i), span, &what)
}

fn consumer(i: usize, c: &ConsumerSpec, context: &mut Context) -> Result<(), ScenarioError> {
    let err = context.err;
    let what = format!("consumer[{i}]");
    let partitions = context.check_topic(&c.topic, format!("{what}.topic"))?;
    if let Some(ps) = &c.partitions {
        if let Some(bad) = ps.get_ref().iter().find(|p| !(0..partitions).contains(*p)) {
            return Err(err(
                ps.span(),
                format!("{what}.partitions"),
                format!("topic has no partition {bad}"),
            ));
        }
    }
    if c.pause_every.is_some() != c.pause_for.is_some() {
        return Err(err(
            c.topic.span(),
            format!("{what}.pause_every"),
            "pause_every and pause_for go together".into(),
        ));
    }
    context.check_window(&c.start, &c.stop, &what)?;
    let span = c.name.as_ref().map_or(c.topic.span(), |n| n.span());
    context.claim_name(c.node_name(i), span, &what)
}
