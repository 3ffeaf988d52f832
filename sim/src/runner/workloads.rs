//! The workloads: a producer and a consumer loop per client node, and the final read that
//! reads every partition back after the faults are healed.

use super::recorder::{op, record, Shared};
use super::{sleep_until, CLIENT_TIMEOUT};
use crate::history::{OpKind, Phase};
use crate::scenario::AcksSpec;
use bytes::Bytes;
use faultline::client::{Acks, Client, Consumer, ConsumerConfig, Producer, ProducerConfig};
use faultline::record::codec::NewRecord;
use madsim::runtime::{Handle, NodeHandle};
use madsim::time::{sleep, Instant};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn client_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 2, i as u8))
}

/// A simulated machine for one producer or consumer, reachable by its scenario name.
pub(super) fn client_node(handle: &Handle, name: &str, index: usize) -> NodeHandle {
    handle.create_node().name(name).ip(client_ip(index)).build()
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn produce_loop(
    name: String,
    spec: crate::scenario::ProducerSpec,
    bootstrap: String,
    rec: Shared,
    stop: Arc<AtomicBool>,
    start: Instant,
    run_duration: Duration,
    clock: Arc<AtomicI64>,
) {
    let begin = spec
        .start
        .as_ref()
        .map_or(Duration::ZERO, |s| s.get_ref().0);
    let end = spec.stop.as_ref().map_or(run_duration, |s| s.get_ref().0);
    sleep_until(start, begin).await;
    let acks = match spec.acks {
        AcksSpec::Zero => Acks::None,
        AcksSpec::One => Acks::Leader,
        AcksSpec::All => Acks::All,
    };
    let config = ProducerConfig {
        acks,
        idempotence: spec.idempotence.unwrap_or(acks == Acks::All),
        retries: spec.retries,
        in_flight_max: *spec.in_flight.get_ref(),
        // One batch per partition per round, so a history op is exactly one batch.
        batch_bytes: usize::MAX,
        retry_backoff: Duration::from_millis(100),
        ..Default::default()
    };
    let topic = spec.topic.get_ref().clone();
    let batch = *spec.batch_records.get_ref();
    let round = Duration::from_secs_f64(batch as f64 / *spec.rate.get_ref() as f64);
    let padding = "x".repeat(spec.record_bytes.get_ref().saturating_sub(name.len() + 8));
    let mut producer = loop {
        if stop.load(Ordering::SeqCst) || Instant::now() >= start + end {
            return;
        }
        match Producer::new(
            Client::new(&bootstrap, &name, CLIENT_TIMEOUT),
            config.clone(),
        )
        .await
        {
            Ok(p) => break p,
            Err(_) => sleep(Duration::from_millis(200)).await,
        }
    };
    let mut sequence: u64 = 0;
    let rate = *spec.rate.get_ref() as f64;
    let producing_since = Instant::now();
    while !stop.load(Ordering::SeqCst) && Instant::now() < start + end {
        let round_start = Instant::now();
        // Open loop: send what the rate says is due by now, so slow acknowledgements do
        // not quietly lower the load; at most ten rounds' worth after a stall.
        let due = (rate * round_start.duration_since(producing_since).as_secs_f64()) as u64;
        let count = (due.saturating_sub(sequence) as usize).clamp(1, batch * 10);
        let mut groups: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        let mut failed_partitioning = false;
        for _ in 0..count {
            let value = format!("{name}-{sequence}");
            sequence += 1;
            let key = (spec.keys > 0)
                .then(|| Bytes::from(format!("k{}", madsim::rand::random::<u64>() % spec.keys)));
            let record = NewRecord {
                // The producer's own clock, skewed if a fault says so.
                timestamp: faultline::server::now_ms() + clock.load(Ordering::SeqCst),
                key,
                value: Some(Bytes::from(format!("{value}|{padding}"))),
                headers: Vec::new(),
            };
            match producer.send(&topic, None, record).await {
                Ok(p) => groups.entry(p).or_default().push(value),
                Err(_) => {
                    failed_partitioning = true;
                    break;
                }
            }
        }
        if failed_partitioning {
            // No metadata: nothing was sent. Drop the buffer and try again later.
            let _ = producer.flush().await;
            sleep(Duration::from_millis(100)).await;
            continue;
        }

        for (p, values) in &groups {
            let mut o = op(&name, OpKind::Send, Phase::Invoke, &topic, *p);
            o.values = values.clone();
            record(&rec, o);
        }
        let results = producer.flush().await;
        let mut answered = BTreeSet::new();
        if let Ok(results) = &results {
            for r in results {
                let Some(values) = groups.get(&r.partition) else {
                    continue;
                };
                if !answered.insert(r.partition) {
                    continue;
                }
                let mut o = op(&name, OpKind::Send, Phase::Info, &topic, r.partition);
                o.values = values.clone();
                match &r.error {
                    None if acks != Acks::None => {
                        o.phase = Phase::Ok;
                        o.offset = Some(r.base_offset);
                    }
                    None => o.error = Some("acks=0: no acknowledgement".into()),
                    // With retries, an earlier attempt may have landed: unknown, not failed.
                    Some(e) => o.error = Some(e.to_string()),
                }
                record(&rec, o);
            }
        }
        for (p, values) in &groups {
            if !answered.contains(p) {
                let mut o = op(&name, OpKind::Send, Phase::Info, &topic, *p);
                o.values = values.clone();
                o.error = Some(match &results {
                    Err(e) => e.to_string(),
                    Ok(_) => "no result".into(),
                });
                record(&rec, o);
            }
        }

        let elapsed = Instant::now().duration_since(round_start);
        if elapsed < round {
            sleep(round - elapsed).await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn consume_loop(
    name: String,
    spec: crate::scenario::ConsumerSpec,
    partitions: Vec<i32>,
    bootstrap: String,
    rec: Shared,
    stop: Arc<AtomicBool>,
    start: Instant,
    run_duration: Duration,
) {
    let begin = spec
        .start
        .as_ref()
        .map_or(Duration::ZERO, |s| s.get_ref().0);
    let end = spec.stop.as_ref().map_or(run_duration, |s| s.get_ref().0);
    sleep_until(start, begin).await;
    let topic = spec.topic.get_ref().clone();
    let config = ConsumerConfig {
        fetch_wait_max: Duration::from_millis(200),
        ..Default::default()
    };
    let mut consumer = Consumer::new(Client::new(&bootstrap, &name, CLIENT_TIMEOUT), config);
    for p in &partitions {
        consumer.assign(&topic, *p, Some(0));
        let mut o = op(&name, OpKind::Seek, Phase::Ok, &topic, *p);
        o.offset = Some(0);
        record(&rec, o);
    }
    let processing = spec
        .processing
        .as_ref()
        .map_or(Duration::ZERO, |d| d.get_ref().0);
    let pause = spec
        .pause_every
        .as_ref()
        .zip(spec.pause_for.as_ref())
        .map(|(e, f)| (e.get_ref().0, f.get_ref().0));
    let mut next_pause = pause.map(|(every, _)| Instant::now() + every);
    while !stop.load(Ordering::SeqCst) && Instant::now() < start + end {
        if let (Some(at), Some((every, length))) = (next_pause, pause) {
            if Instant::now() >= at {
                sleep(length).await;
                next_pause = Some(Instant::now() + every);
            }
        }
        let positions: BTreeMap<i32, Option<i64>> = partitions
            .iter()
            .map(|p| (*p, consumer.position(&topic, *p)))
            .collect();
        let result = consumer.poll().await;
        for (t, p, offset) in consumer.take_resets() {
            let mut o = op(&name, OpKind::Seek, Phase::Ok, &t, p);
            o.offset = Some(offset);
            record(&rec, o);
        }
        match result {
            Ok(records) => {
                let mut by_partition: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
                for r in &records {
                    by_partition
                        .entry(r.partition)
                        .or_default()
                        .push((r.record.offset, value_id(&r.record.value)));
                }
                for p in &partitions {
                    let mut o = op(&name, OpKind::Poll, Phase::Ok, &topic, *p);
                    o.offset = positions.get(p).copied().flatten();
                    o.records = by_partition.remove(p).unwrap_or_default();
                    record(&rec, o);
                }
                if !processing.is_zero() && !records.is_empty() {
                    sleep(processing * records.len() as u32).await;
                }
            }
            Err(e) => {
                for p in &partitions {
                    let mut o = op(&name, OpKind::Poll, Phase::Info, &topic, *p);
                    o.error = Some(e.to_string());
                    record(&rec, o);
                }
                sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The unique part of a record value ("producer-17"), before the padding.
fn value_id(value: &Option<Bytes>) -> String {
    let v = value.as_deref().unwrap_or_default();
    let text = String::from_utf8_lossy(v);
    text.split('|').next().unwrap_or_default().to_string()
}

/// Read every partition from the start to its current end, retrying errors until done.
pub(super) async fn final_read(
    partitions: Vec<(String, i32)>,
    bootstrap: String,
    rec: Shared,
) -> Result<(), String> {
    const PROCESS: &str = "final-reader";
    for (topic, partition) in partitions {
        let mut client = Client::new(&bootstrap, PROCESS, CLIENT_TIMEOUT);
        let end = loop {
            match client.list_offset(&topic, partition, -1).await {
                Ok(end) => break end,
                Err(_) => {
                    client.forget_topic(&topic);
                    sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let mut consumer = Consumer::new(
            client,
            ConsumerConfig {
                fetch_wait_max: Duration::from_millis(100),
                ..Default::default()
            },
        );
        consumer.assign(&topic, partition, Some(0));
        let mut o = op(PROCESS, OpKind::Seek, Phase::Ok, &topic, partition);
        o.offset = Some(0);
        record(&rec, o);
        while consumer.position(&topic, partition).unwrap_or(0) < end {
            let from = consumer.position(&topic, partition);
            let result = consumer.poll().await;
            for (t, p, offset) in consumer.take_resets() {
                let mut o = op(PROCESS, OpKind::Seek, Phase::Ok, &t, p);
                o.offset = Some(offset);
                record(&rec, o);
            }
            match result {
                Ok(records) => {
                    let mut o = op(PROCESS, OpKind::Poll, Phase::Ok, &topic, partition);
                    o.offset = from;
                    o.records = records
                        .iter()
                        .map(|r| (r.record.offset, value_id(&r.record.value)))
                        .collect();
                    record(&rec, o);
                }
                Err(_) => sleep(Duration::from_millis(100)).await,
            }
        }
    }
    Ok(())
}
