//! The workloads: one node per producer and per consumer, each running its loop inside its
//! window of the safety phase, and the liveness phase: clients stop, then the final read
//! reads every partition back within the bound. Every operation goes to the history.

use super::cluster::Cluster;
use super::recorder::{event, op, record, Shared};
use super::{sleep_until, CLIENT_TIMEOUT};
use crate::history::{OpKind, Phase};
use crate::scenario::{AcksSpec, ConsumerSpec, Dur, Knob, ProducerSpec, Scenario};
use bytes::Bytes;
use faultline::client::{
    Acks, Client, ClientError, Consumer, ConsumerConfig, Producer, ProducerConfig, SendResult,
};
use faultline::record::codec::NewRecord;
use madsim::runtime::{Handle, NodeHandle};
use madsim::task::JoinHandle;
use madsim::time::{sleep, Instant};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

/// A node per producer, then per consumer, each running its loop; producers get a clock
/// the faults can move. The handles are what the liveness phase waits for.
pub(super) fn spawn(
    handle: &Handle,
    scenario: &Scenario,
    cluster: &mut Cluster,
    rec: &Shared,
    stop: &Arc<AtomicBool>,
    groups_done: &Arc<AtomicBool>,
    start: Instant,
) -> Vec<JoinHandle<()>> {
    let mut workers = Vec::new();
    let mut client_index = 0;
    let run = |name: &str, cluster: &Cluster| ClientRun {
        name: name.to_string(),
        bootstrap: cluster.bootstrap.clone(),
        rec: rec.clone(),
        stop: stop.clone(),
        start,
        run_duration: scenario.duration,
    };
    for (i, p) in scenario.producers.iter().enumerate() {
        client_index += 1;
        let name = scenario.producer_name(i);
        let node = client_node(handle, &name, client_index);
        let (run, spec) = (run(&name, cluster), p.clone());
        let clock = Arc::new(AtomicI64::new(0));
        cluster.clocks.insert(name.clone(), clock.clone());
        workers.push(node.spawn(produce_loop(run, spec, clock)));
        cluster.add_node(name, node);
    }
    for (i, c) in scenario.consumers.iter().enumerate() {
        client_index += 1;
        let name = scenario.consumer_name(i);
        if c.group.is_some() {
            // A group member restarts as a new process after a kill: its loop is the
            // node's init.
            let member = super::groups::MemberRun {
                name: name.clone(),
                bootstrap: cluster.bootstrap.clone(),
                rec: rec.clone(),
                start,
                done: groups_done.clone(),
                spec: c.clone(),
            };
            let fetch = fetch_config(c);
            let node = handle
                .create_node()
                .name(&name)
                .ip(client_ip(client_index))
                .init(move || super::groups::member_loop(member.clone(), fetch.clone()))
                .build();
            cluster.add_node(name, node);
            continue;
        }
        let node = client_node(handle, &name, client_index);
        let partitions: Vec<i32> = match &c.partitions {
            Some(ps) => ps.get_ref().clone(),
            None => {
                let count = scenario
                    .topics
                    .iter()
                    .find(|t| t.name.get_ref() == c.topic.get_ref())
                    .map_or(1, |t| t.partitions.get_ref().get());
                (0..count).collect()
            }
        };
        let (run, spec) = (run(&name, cluster), c.clone());
        workers.push(node.spawn(consume_loop(run, spec, partitions)));
        cluster.add_node(name, node);
    }
    workers
}

/// The liveness phase: every fault is healed; clients finish; the final read of
/// `partitions` must complete within `bound`. What went wrong, if anything did.
#[allow(clippy::too_many_arguments)]
pub(super) async fn liveness(
    scenario: &Scenario,
    workers: Vec<JoinHandle<()>>,
    stop: &AtomicBool,
    groups_done: &Arc<AtomicBool>,
    cluster: &Cluster,
    rec: &Shared,
    partitions: &[(String, i32)],
    bound: Duration,
) -> Option<String> {
    event(rec, "phase", "liveness", "", "scenario");
    stop.store(true, Ordering::SeqCst);
    let liveness_deadline = Instant::now() + bound;
    let mut liveness_error = None;
    for w in workers {
        let left = liveness_deadline.saturating_duration_since(Instant::now());
        if madsim::time::timeout(left, w).await.is_err() {
            liveness_error = Some("a client did not finish within the liveness bound".to_string());
        }
    }
    // Consumer groups: every group consumes to the end, then its members close.
    if let Some(short) =
        super::groups::settle(scenario, cluster, rec, groups_done, liveness_deadline).await
    {
        liveness_error.get_or_insert(short);
    }
    let reader = {
        let (rec, bootstrap) = (rec.clone(), cluster.bootstrap.clone());
        let partitions = partitions.to_vec();
        cluster
            .admin
            .spawn(async move { final_read(partitions, bootstrap, rec).await })
    };
    let left = liveness_deadline.saturating_duration_since(Instant::now());
    match madsim::time::timeout(left, reader).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => liveness_error = Some(format!("final read failed: {e}")),
        Ok(Err(e)) => liveness_error = Some(format!("final read task failed: {e:?}")),
        Err(_) => {
            liveness_error.get_or_insert_with(|| {
                format!("the final read did not complete within {bound:?} of healing")
            });
        }
    }
    liveness_error
}

/// After healing, in a cluster: every partition's ISR must come back to its whole replica
/// set within `bound` (followers catch up and the leader adds them back, within about
/// replica.lag.time.max.ms). What is still short then, if anything: a follower stuck out of
/// the ISR is an availability bug no data checker sees.
pub(super) async fn isr_recovery(
    cluster: &Cluster,
    topics: Vec<String>,
    bound: Duration,
) -> Option<String> {
    let bootstrap = cluster.bootstrap.clone();
    let check = cluster.admin.spawn(async move {
        let deadline = Instant::now() + bound;
        let mut short = String::from("no metadata answer");
        while Instant::now() < deadline {
            let mut client = Client::new(&bootstrap, "isr-check", CLIENT_TIMEOUT);
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            if let Ok(infos) = client.refresh_metadata(Some(&names), false).await {
                let lagging: Vec<String> = infos
                    .iter()
                    .flat_map(|t| {
                        t.partitions.iter().filter_map(move |p| {
                            let isr: BTreeSet<i32> = p.isr.iter().copied().collect();
                            let replicas: BTreeSet<i32> = p.replicas.iter().copied().collect();
                            (isr != replicas).then(|| {
                                format!(
                                    "{}/{} ISR {:?} of replicas {:?}",
                                    t.name, p.partition, p.isr, p.replicas
                                )
                            })
                        })
                    })
                    .collect();
                if lagging.is_empty() {
                    return None;
                }
                short = lagging.join("; ");
            }
            sleep(Duration::from_millis(500)).await;
        }
        Some(short)
    });
    check
        .await
        .unwrap_or(Some("the ISR check task failed".into()))
}

fn client_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 2, i as u8))
}

/// A simulated machine for one producer or consumer, reachable by its scenario name.
fn client_node(handle: &Handle, name: &str, index: usize) -> NodeHandle {
    handle.create_node().name(name).ip(client_ip(index)).build()
}

/// What every client loop runs with.
struct ClientRun {
    /// The client's node name, also its client id and the prefix of its values.
    name: String,
    bootstrap: String,
    rec: Shared,
    /// Set when the safety phase ends.
    stop: Arc<AtomicBool>,
    /// Time zero of the run.
    start: Instant,
    /// The safety phase's length: the default end of a client's window.
    run_duration: Duration,
}

impl ClientRun {
    /// Wait for the window's `start`; its end (`stop`, else the end of the run).
    async fn window(&self, start: &Option<Spanned<Dur>>, stop: &Option<Spanned<Dur>>) -> Duration {
        let begin = start.as_ref().map_or(Duration::ZERO, |s| s.get_ref().0);
        let end = stop.as_ref().map_or(self.run_duration, |s| s.get_ref().0);
        sleep_until(self.start, begin).await;
        end
    }

    /// Not stopped, and the window (ending at `end`) still open.
    fn running(&self, end: Duration) -> bool {
        !self.stop.load(Ordering::SeqCst) && Instant::now() < self.start + end
    }

    fn record(&self, o: crate::history::Op) {
        record(&self.rec, o);
    }
}

async fn produce_loop(run: ClientRun, spec: ProducerSpec, clock: Arc<AtomicI64>) {
    let end = run.window(&spec.start, &spec.stop).await;
    let (acks, config) = producer_config(&spec);
    let topic = spec.topic.get_ref().clone();
    let batch = spec.batch_records.get_ref().get() as usize;
    let round = Duration::from_secs_f64(batch as f64 / spec.rate.get_ref().get() as f64);
    let mut records = Records {
        name: run.name.clone(),
        sequence: 0,
        keys: spec.keys,
        padding: "x".repeat(
            (spec.record_bytes.get_ref().get() as usize).saturating_sub(run.name.len() + 8),
        ),
        clock,
    };
    let Some(mut producer) = connect(&run, config, end).await else {
        return;
    };
    let rate = spec.rate.get_ref().get() as f64;
    let per_batch = spec
        .records_per_batch
        .as_ref()
        .map_or(usize::MAX, |n| n.get_ref().get() as usize);
    let producing_since = Instant::now();
    while run.running(end) {
        let round_start = Instant::now();
        // Open loop: send what the rate says is due by now, so slow acknowledgements do
        // not quietly lower the load; at most ten rounds' worth after a stall.
        let due = (rate * round_start.duration_since(producing_since).as_secs_f64()) as u64;
        let count = (due.saturating_sub(records.sequence) as usize).clamp(1, batch * 10);
        let Some(groups) = send_round(&mut producer, &topic, &mut records, count).await else {
            // No metadata: nothing was sent. Drop the buffer and try again later.
            let _ = producer.flush().await;
            sleep(Duration::from_millis(100)).await;
            continue;
        };
        let batches = batches_of(&groups, per_batch);
        for (p, values) in &batches {
            let mut o = op(&run.name, OpKind::Send, Phase::Invoke, &topic, *p);
            o.values = values.clone();
            run.record(o);
        }
        let results = producer.flush().await;
        record_results(&run, &topic, acks, &batches, &results);
        let elapsed = Instant::now().duration_since(round_start);
        if elapsed < round {
            sleep(round - elapsed).await;
        }
    }
}

/// Kafka's producer settings for the spec: acks, idempotence (Kafka 3's default: on with
/// acks=all), retries, requests in flight.
fn producer_config(spec: &ProducerSpec) -> (Acks, ProducerConfig) {
    let acks = match spec.acks {
        AcksSpec::Zero => Acks::None,
        AcksSpec::One => Acks::Leader,
        AcksSpec::All => Acks::All,
    };
    let config = ProducerConfig {
        acks,
        idempotence: spec.idempotence.unwrap_or(acks == Acks::All),
        retries: spec.retries.get_ref().get(),
        in_flight_max: spec.in_flight.get_ref().get() as usize,
        // A history op is exactly one batch: by default one per partition per round, or
        // `records_per_batch` records each.
        batch_bytes: usize::MAX,
        batch_records_max: spec
            .records_per_batch
            .as_ref()
            .map_or(0, |n| n.get_ref().get() as usize),
        retry_backoff: Duration::from_millis(100),
        ..Default::default()
    };
    (acks, config)
}

/// A producer, retried until the cluster answers; None if the window closes first.
async fn connect(run: &ClientRun, config: ProducerConfig, end: Duration) -> Option<Producer> {
    loop {
        if run.stop.load(Ordering::SeqCst) || Instant::now() >= run.start + end {
            return None;
        }
        match Producer::new(
            Client::new(&run.bootstrap, &run.name, CLIENT_TIMEOUT),
            config.clone(),
        )
        .await
        {
            Ok(p) => return Some(p),
            Err(_) => sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A producer's records: unique values ("producer-17"), padded to `record_bytes`, with a
/// key drawn from `keys` distinct ones (none when 0), stamped by the producer's clock.
struct Records {
    name: String,
    /// Records made so far.
    sequence: u64,
    keys: u64,
    padding: String,
    /// The producer's clock offset, moved by clock faults.
    clock: Arc<AtomicI64>,
}

impl Records {
    /// The next record and its unique value.
    fn next_record(&mut self) -> (String, NewRecord) {
        let value = format!("{}-{}", self.name, self.sequence);
        self.sequence += 1;
        let key = (self.keys > 0)
            .then(|| Bytes::from(format!("k{}", madsim::rand::random::<u64>() % self.keys)));
        let record = NewRecord {
            // The producer's own clock, skewed if a fault says so.
            timestamp: faultline::server::now_ms() + self.clock.load(Ordering::SeqCst),
            key,
            value: Some(Bytes::from(format!("{value}|{}", self.padding))),
            headers: Vec::new(),
        };
        (value, record)
    }
}

/// Hand `count` records to the producer: the values per partition, or None when one could
/// not be partitioned (no metadata), and nothing was sent.
async fn send_round(
    producer: &mut Producer,
    topic: &str,
    records: &mut Records,
    count: usize,
) -> Option<BTreeMap<i32, Vec<String>>> {
    let mut groups: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for _ in 0..count {
        let (value, record) = records.next_record();
        match producer.send(topic, None, record).await {
            Ok(p) => groups.entry(p).or_default().push(value),
            Err(_) => return None,
        }
    }
    Some(groups)
}

/// A round's records as the producer cuts them into batches: partition by partition (in
/// partition order), each partition's values in `per_batch`-record runs. The position in
/// this list is the batch's index in the flush's results (`SendResult::batch`).
fn batches_of(groups: &BTreeMap<i32, Vec<String>>, per_batch: usize) -> Vec<(i32, Vec<String>)> {
    groups
        .iter()
        .flat_map(|(p, values)| values.chunks(per_batch.max(1)).map(|c| (*p, c.to_vec())))
        .collect()
}

/// What a flush answered, per batch: ok with its offset; fail when the broker definitely
/// did not append it (every attempt refused before the append, or never sent); info
/// otherwise (with retries an earlier attempt may have landed: unknown, not failed).
fn record_results(
    run: &ClientRun,
    topic: &str,
    acks: Acks,
    batches: &[(i32, Vec<String>)],
    results: &Result<Vec<SendResult>, ClientError>,
) {
    let mut answered = BTreeSet::new();
    if let Ok(results) = results {
        for r in results {
            let Some((partition, values)) = batches.get(r.batch) else {
                continue;
            };
            if *partition != r.partition || !answered.insert(r.batch) {
                continue;
            }
            let mut o = op(&run.name, OpKind::Send, Phase::Info, topic, r.partition);
            o.values = values.clone();
            match &r.error {
                None if acks != Acks::None => {
                    o.phase = Phase::Ok;
                    o.offset = Some(r.base_offset);
                }
                None => o.error = Some("acks=0: no acknowledgement".into()),
                Some(e) => {
                    if r.definite {
                        o.phase = Phase::Fail;
                    }
                    o.error = Some(e.to_string());
                }
            }
            run.record(o);
        }
    }
    for (i, (p, values)) in batches.iter().enumerate() {
        if !answered.contains(&i) {
            let mut o = op(&run.name, OpKind::Send, Phase::Info, topic, *p);
            o.values = values.clone();
            o.error = Some(match results {
                Err(e) => e.to_string(),
                Ok(_) => "no result".into(),
            });
            run.record(o);
        }
    }
}

async fn consume_loop(run: ClientRun, spec: ConsumerSpec, partitions: Vec<i32>) {
    let end = run.window(&spec.start, &spec.stop).await;
    let name = &run.name;
    let topic = spec.topic.get_ref().clone();
    let config = fetch_config(&spec);
    let mut consumer = Consumer::new(Client::new(&run.bootstrap, name, CLIENT_TIMEOUT), config);
    for p in &partitions {
        consumer.assign(&topic, *p, Some(0));
        let mut o = op(name, OpKind::Seek, Phase::Ok, &topic, *p);
        o.offset = Some(0);
        run.record(o);
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
    while run.running(end) {
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
            let mut o = op(name, OpKind::Seek, Phase::Ok, &t, p);
            o.offset = Some(offset);
            run.record(o);
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
                    let mut o = op(name, OpKind::Poll, Phase::Ok, &topic, *p);
                    o.offset = positions.get(p).copied().flatten();
                    o.records = by_partition.remove(p).unwrap_or_default();
                    run.record(o);
                }
                if !processing.is_zero() && !records.is_empty() {
                    sleep(processing * records.len() as u32).await;
                }
            }
            Err(e) => {
                for p in &partitions {
                    let mut o = op(name, OpKind::Poll, Phase::Info, &topic, *p);
                    o.error = Some(e.to_string());
                    if corrupt_in(&e, &topic, *p) {
                        // The broker served bytes no producer wrote: a definite outcome.
                        o.phase = Phase::Fail;
                        o.offset = positions.get(p).copied().flatten();
                    }
                    run.record(o);
                }
                sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A consumer's fetch settings from the scenario.
fn fetch_config(spec: &ConsumerSpec) -> ConsumerConfig {
    let bytes = |k: &Spanned<Knob<u32>>| k.get_ref().get().min(i32::MAX as u32) as i32;
    ConsumerConfig {
        fetch_wait_max: Duration::from_millis(spec.fetch_max_wait_ms.get_ref().get().into()),
        fetch_min_bytes: bytes(&spec.fetch_min_bytes),
        fetch_max_bytes: bytes(&spec.fetch_max_bytes),
        partition_fetch_max_bytes: bytes(&spec.max_partition_fetch_bytes),
        ..Default::default()
    }
}

/// The unique part of a record value ("producer-17"), before the padding.
pub(super) fn value_id(value: &Option<Bytes>) -> String {
    let v = value.as_deref().unwrap_or_default();
    let text = String::from_utf8_lossy(v);
    text.split('|').next().unwrap_or_default().to_string()
}

/// Read every partition from the start to its current end, retrying errors until done.
async fn final_read(
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
        let mut corrupt_at = None;
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
                Err(e) => {
                    // A corrupt batch is recorded once per position: the reader keeps
                    // trying (the liveness bound ends it), the report names the batch.
                    if corrupt_in(&e, &topic, partition) && corrupt_at != from {
                        corrupt_at = from;
                        let mut o = op(PROCESS, OpKind::Poll, Phase::Fail, &topic, partition);
                        o.offset = from;
                        o.error = Some(e.to_string());
                        record(&rec, o);
                    }
                    sleep(Duration::from_millis(100)).await
                }
            }
        }
    }
    Ok(())
}

/// Whether `e` is a corrupt batch served for `topic`-`partition`.
fn corrupt_in(e: &ClientError, topic: &str, partition: i32) -> bool {
    matches!(e, ClientError::CorruptBatch { topic: t, partition: p, .. } if t == topic && *p == partition)
}
