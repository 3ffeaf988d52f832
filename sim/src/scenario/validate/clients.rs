//! `[[producer]]` and `[[consumer]]`: how many, the topic each uses, rates and sizes within
//! their bounds, Kafka's rule on idempotence, start and stop inside the run, and a node
//! name of its own (it joins the names faults may use).

use super::{knob, Context};
use crate::scenario::{
    AcksSpec, ConsumerSpec, Dur, Knob, ProducerSpec, ScenarioError, CLIENTS_MAX, RATE_MAX,
};
use toml::Spanned;

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
    let rate_max = RATE_MAX as i64;
    knob(
        &p.rate,
        format!("{what}.rate"),
        1..=rate_max,
        &format!("1..={RATE_MAX} records per second"),
        err,
    )?;
    knob(
        &p.retries,
        format!("{what}.retries"),
        0..=i32::MAX as i64,
        "0..=2147483647",
        err,
    )?;
    knob(
        &p.in_flight,
        format!("{what}.in_flight"),
        1..=100,
        "1..=100",
        err,
    )?;
    knob(
        &p.batch_records,
        format!("{what}.batch_records"),
        1..=10_000,
        "1..=10000",
        err,
    )?;
    if let Some(n) = &p.records_per_batch {
        knob(
            n,
            format!("{what}.records_per_batch"),
            1..=10_000,
            "1..=10000",
            err,
        )?;
    }
    knob(
        &p.record_bytes,
        format!("{what}.record_bytes"),
        8..=1_048_576,
        "8..=1048576",
        err,
    )?;
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
    let bytes = |k: &Spanned<Knob<u32>>, field: &str, least: i64| {
        let allowed = least..=i32::MAX as i64;
        knob(
            k,
            format!("{what}.{field}"),
            allowed,
            &format!("{least}..=2147483647"),
            err,
        )
    };
    knob(
        &c.fetch_max_wait_ms,
        format!("{what}.fetch_max_wait_ms"),
        0..=60_000,
        "0..=60000",
        err,
    )?;
    bytes(&c.fetch_min_bytes, "fetch_min_bytes", 0)?;
    bytes(&c.fetch_max_bytes, "fetch_max_bytes", 1)?;
    bytes(&c.max_partition_fetch_bytes, "max_partition_fetch_bytes", 1)?;
    if c.pause_every.is_some() != c.pause_for.is_some() {
        return Err(err(
            c.topic.span(),
            format!("{what}.pause_every"),
            "pause_every and pause_for go together".into(),
        ));
    }
    context.check_window(&c.start, &c.stop, &what)?;
    group_fields(c, &what, err)?;
    if let Some(group) = &c.group {
        context.group_members.insert(c.node_name(i));
        context.groups.insert(group.get_ref().clone());
    }
    let span = c.name.as_ref().map_or(c.topic.span(), |n| n.span());
    context.claim_name(c.node_name(i), span, &what)
}

/// The group member's fields: only with `group`, names Kafka knows, times in range.
fn group_fields(c: &ConsumerSpec, what: &str, err: super::Err) -> Result<(), ScenarioError> {
    let Some(group) = &c.group else {
        let set: [(&str, Option<std::ops::Range<usize>>); 10] = [
            ("assignor", c.assignor.as_ref().map(|f| f.span())),
            ("commit", c.commit.as_ref().map(|f| f.span())),
            (
                "auto_commit_interval",
                c.auto_commit_interval.as_ref().map(|f| f.span()),
            ),
            (
                "session_timeout",
                c.session_timeout.as_ref().map(|f| f.span()),
            ),
            (
                "heartbeat_interval",
                c.heartbeat_interval.as_ref().map(|f| f.span()),
            ),
            (
                "max_poll_interval",
                c.max_poll_interval.as_ref().map(|f| f.span()),
            ),
            (
                "max_poll_records",
                c.max_poll_records.as_ref().map(|f| f.span()),
            ),
            ("static_id", c.static_id.as_ref().map(|f| f.span())),
            (
                "auto_offset_reset",
                c.auto_offset_reset.as_ref().map(|f| f.span()),
            ),
            (
                "group_protocol",
                c.group_protocol.as_ref().map(|f| f.span()),
            ),
        ];
        return match set.into_iter().find_map(|(f, span)| span.map(|s| (f, s))) {
            Some((field, span)) => Err(err(
                span,
                format!("{what}.{field}"),
                "a group member's setting: set `group` too".into(),
            )),
            None => Ok(()),
        };
    };
    if group.get_ref().is_empty() || group.get_ref().len() > 255 {
        return Err(err(
            group.span(),
            format!("{what}.group"),
            "a group id of 1 to 255 characters".into(),
        ));
    }
    if let Some(ps) = &c.partitions {
        return Err(err(
            ps.span(),
            format!("{what}.partitions"),
            "a group member is assigned partitions by its group: drop `partitions` or `group`"
                .into(),
        ));
    }
    if let Some(assignor) = &c.assignor {
        let names = assignor.get_ref().names();
        let known = ["range", "roundrobin", "sticky", "cooperative-sticky"];
        if names.is_empty() {
            return Err(err(
                assignor.span(),
                format!("{what}.assignor"),
                "at least one assignor".into(),
            ));
        }
        if let Some(bad) = names.iter().find(|n| !known.contains(&n.as_str())) {
            return Err(err(
                assignor.span(),
                format!("{what}.assignor"),
                format!("unknown assignor {bad:?}: one of {}", known.join(", ")),
            ));
        }
    }
    let ms = |d: &Option<Spanned<Dur>>| d.as_ref().map(|d| (d.span(), d.get_ref().0.as_millis()));
    for (field, value, range) in [
        (
            "auto_commit_interval",
            ms(&c.auto_commit_interval),
            1..=3_600_000u128,
        ),
        ("session_timeout", ms(&c.session_timeout), 1..=1_800_000),
        ("heartbeat_interval", ms(&c.heartbeat_interval), 1..=600_000),
        (
            "max_poll_interval",
            ms(&c.max_poll_interval),
            1..=i32::MAX as u128,
        ),
    ] {
        if let Some((span, v)) = value {
            if !range.contains(&v) {
                return Err(err(
                    span,
                    format!("{what}.{field}"),
                    format!("between {}ms and {}ms", range.start(), range.end()),
                ));
            }
        }
    }
    let session = c
        .session_timeout
        .as_ref()
        .map_or(45_000, |d| d.get_ref().0.as_millis());
    if let Some(h) = &c.heartbeat_interval {
        if h.get_ref().0.as_millis() >= session {
            return Err(err(
                h.span(),
                format!("{what}.heartbeat_interval"),
                "must be below session_timeout, as Kafka requires".into(),
            ));
        }
    }
    if let Some(n) = &c.max_poll_records {
        knob(
            n,
            format!("{what}.max_poll_records"),
            1..=100_000,
            "1..=100000",
            err,
        )?;
    }
    Ok(())
}
