//! `faultline bench-groups`: consumer-group figures on one real broker over loopback with
//! the project's group consumer: how long a rebalance takes with 1, 10 and 100 members
//! (p50/p99), offset commits per second, and the end-to-end latency from produce to a group
//! member's poll (p50/p99).
//!
//! A rebalance is timed from the moment one more member is created to the moment every
//! member, old and new, has its assignment of the new generation (eager `range` assignor,
//! heartbeats every 100 ms so that members notice the rebalance quickly; Kafka's default is
//! 3 s, which would dominate the figure).

use super::bench::{median, start_nodes};
use super::UsageError;
use bytes::Bytes;
use faultline::client::group::{Assignor, GroupConsumer, GroupConsumerConfig, GroupEvent};
use faultline::client::{Acks, Client, NewTopic, OffsetReset, Producer, ProducerConfig};
use faultline::record::codec::NewRecord;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(clap::Args)]
pub struct BenchGroupsArgs {
    /// Group sizes to time a rebalance at (comma-separated).
    #[arg(long, default_value = "1,10,100", value_delimiter = ',')]
    members: Vec<usize>,
    /// Rebalances timed per group size.
    #[arg(long, default_value_t = 10)]
    rebalances: usize,
    /// Partitions of the benchmark topic.
    #[arg(long, default_value_t = 100)]
    partitions: i32,
    /// Seconds of back-to-back synchronous commits, per run.
    #[arg(long, default_value_t = 2)]
    commit_seconds: u64,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Records timed from produce to a group member's poll.
    #[arg(long, default_value_t = 1_000)]
    latency_samples: usize,
}

const TIMEOUT: Duration = Duration::from_secs(30);
const HEARTBEAT_MS: u64 = 100;
const FETCH_WAIT_MS: u64 = 100;

pub async fn run(args: BenchGroupsArgs) -> anyhow::Result<()> {
    if args.members.is_empty() || args.members.contains(&0) || args.rebalances == 0 {
        return Err(UsageError("--members and --rebalances must be positive".into()).into());
    }
    if args.runs == 0 || args.partitions < 1 || args.latency_samples == 0 {
        return Err(UsageError(
            "--runs, --partitions and --latency-samples must be positive".into(),
        )
        .into());
    }
    let (bootstrap, nodes) = start_nodes(1).await?;
    let topic = "bench-groups";
    let mut admin = Client::new(&bootstrap, "bench-groups", TIMEOUT);
    admin
        .create_topics(&[NewTopic {
            name: topic.into(),
            partitions: args.partitions,
            replication_factor: 1,
            configs: BTreeMap::new(),
        }])
        .await?;
    println!(
        "faultline bench-groups: 1 broker (in this process, loopback), topic of {} partitions, heartbeat.interval.ms {HEARTBEAT_MS}, fetch.max.wait.ms {FETCH_WAIT_MS}",
        args.partitions
    );
    for (i, &n) in args.members.iter().enumerate() {
        let times = rebalances(
            &bootstrap,
            topic,
            &format!("rebalance-{i}"),
            n,
            args.rebalances,
        )
        .await?;
        println!(
            "rebalance, {n} member(s) + 1 joining: p50 {:.0} ms, p99 {:.0} ms ({} rebalances)",
            percentile(&times, 0.50),
            percentile(&times, 0.99),
            times.len()
        );
    }
    let mut commit_rates = Vec::new();
    for run in 0..args.runs {
        commit_rates.push(commits_per_second(&bootstrap, topic, run, args.commit_seconds).await?);
    }
    println!(
        "offset commits (commitSync, one partition, back to back): median {:.0}/s over {} runs",
        median(commit_rates.clone()),
        commit_rates.len()
    );
    let latencies = end_to_end(&bootstrap, topic, args.latency_samples).await?;
    println!(
        "produce (acks=all) -> group member's poll: p50 {:.2} ms, p99 {:.2} ms ({} records)",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.len()
    );
    for broker in nodes.brokers {
        broker.kill().await;
    }
    let _ = std::fs::remove_dir_all(&nodes.dir);
    Ok(())
}

fn member(bootstrap: &str, group: &str, topic: &str, id: usize) -> GroupConsumer {
    let mut config = GroupConsumerConfig::new(group, &[topic]);
    config.assignors = vec![Assignor::Range];
    config.heartbeat_interval_ms = HEARTBEAT_MS;
    config.session_timeout_ms = 10_000;
    config.auto_offset_reset = OffsetReset::Latest;
    config.enable_auto_commit = false;
    // Kafka's fetch.max.wait.ms is 500 ms: a member parked in a fetch notices a rebalance
    // only when it returns.
    config.fetch.fetch_wait_max = Duration::from_millis(FETCH_WAIT_MS);
    let client = Client::new(bootstrap, &format!("bench-member-{id}"), TIMEOUT);
    GroupConsumer::new(client, config)
}

/// A member polling in its own task, reporting each generation it is assigned in.
fn spawn_member(
    consumer: GroupConsumer,
    id: usize,
    assigned: mpsc::UnboundedSender<(usize, i32)>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut consumer = consumer;
        while !*stop.borrow() {
            if let Ok(poll) = consumer.poll(Duration::from_millis(50)).await {
                for e in poll.events {
                    if let GroupEvent::Assigned { generation, .. } = e {
                        let _ = assigned.send((id, generation));
                    }
                }
            }
        }
        consumer.close().await;
    })
}

/// Wait until every member in `members` reported an assignment in a generation above
/// `after`; returns that generation.
async fn settled(
    assigned: &mut mpsc::UnboundedReceiver<(usize, i32)>,
    latest: &mut BTreeMap<usize, i32>,
    members: &[usize],
    after: i32,
) -> anyhow::Result<i32> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let generations: Vec<i32> = members
            .iter()
            .filter_map(|m| latest.get(m).copied())
            .collect();
        if generations.len() == members.len() {
            let lowest = *generations.iter().min().expect("members");
            if lowest > after && generations.iter().all(|g| *g == lowest) {
                return Ok(lowest);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, assigned.recv()).await {
            Ok(Some((id, generation))) => {
                latest.insert(id, generation);
            }
            _ => anyhow::bail!("the group did not settle within {TIMEOUT:?}"),
        }
    }
}

/// Milliseconds per rebalance: `n` members settle, then `count` times one more member
/// joins (timed until all n + 1 hold the new generation's assignment) and leaves again.
async fn rebalances(
    bootstrap: &str,
    topic: &str,
    group: &str,
    n: usize,
    count: usize,
) -> anyhow::Result<Vec<f64>> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for id in 0..n {
        tasks.push(spawn_member(
            member(bootstrap, group, topic, id),
            id,
            tx.clone(),
            stop.clone(),
        ));
    }
    let mut latest = BTreeMap::new();
    let stable: Vec<usize> = (0..n).collect();
    let mut generation = settled(&mut rx, &mut latest, &stable, 0).await?;
    let mut times = Vec::with_capacity(count);
    for k in 0..count {
        let id = n + k;
        let (extra_stop_tx, extra_stop) = tokio::sync::watch::channel(false);
        let started = Instant::now();
        let extra = spawn_member(
            member(bootstrap, group, topic, id),
            id,
            tx.clone(),
            extra_stop,
        );
        let mut everyone = stable.clone();
        everyone.push(id);
        generation = settled(&mut rx, &mut latest, &everyone, generation).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        // The extra member leaves; the others settle again before the next one joins.
        let _ = extra_stop_tx.send(true);
        let _ = extra.await;
        latest.remove(&id);
        generation = settled(&mut rx, &mut latest, &stable, generation).await?;
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(times)
}

/// Synchronous commits of one partition, back to back, for `seconds`: commits per second.
async fn commits_per_second(
    bootstrap: &str,
    topic: &str,
    run: usize,
    seconds: u64,
) -> anyhow::Result<f64> {
    let group = format!("commits-{run}");
    let mut consumer = member(bootstrap, &group, topic, 0);
    let deadline = Instant::now() + TIMEOUT;
    while consumer.generation() < 0 || consumer.assignment().is_empty() {
        consumer.poll(Duration::from_millis(50)).await?;
        anyhow::ensure!(Instant::now() < deadline, "the member was never assigned");
    }
    let started = Instant::now();
    let mut commits = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let offsets = BTreeMap::from([((topic.to_string(), 0), commits as i64 + 1)]);
        consumer.commit_sync(offsets).await?;
        consumer.take_events();
        commits += 1;
    }
    let rate = commits as f64 / started.elapsed().as_secs_f64();
    consumer.close().await;
    Ok(rate)
}

/// Milliseconds from the start of an acks=all send of one record to the moment a group
/// member's poll returns it, one record at a time.
async fn end_to_end(bootstrap: &str, topic: &str, samples: usize) -> anyhow::Result<Vec<f64>> {
    let mut consumer = member(bootstrap, "latency", topic, 0);
    let deadline = Instant::now() + TIMEOUT;
    while consumer.generation() < 0 || consumer.assignment().is_empty() {
        consumer.poll(Duration::from_millis(50)).await?;
        anyhow::ensure!(Instant::now() < deadline, "the member was never assigned");
    }
    // Positions are set (latest) once the first poll after the assignment ran.
    consumer.poll(Duration::from_millis(50)).await?;
    let config = ProducerConfig {
        acks: Acks::All,
        ..Default::default()
    };
    let mut producer =
        Producer::new(Client::new(bootstrap, "bench-producer", TIMEOUT), config).await?;
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let started = Instant::now();
        let record = NewRecord {
            timestamp: 0,
            key: None,
            value: Some(Bytes::from(format!("latency-{i}"))),
            headers: Vec::new(),
        };
        producer.send(topic, Some(0), record).await?;
        producer.flush().await?;
        let wanted = format!("latency-{i}");
        loop {
            let poll = consumer.poll(Duration::from_millis(500)).await?;
            if poll
                .records
                .iter()
                .any(|r| r.record.value.as_deref() == Some(wanted.as_bytes()))
            {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < TIMEOUT,
                "record {i} never reached the member"
            );
        }
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    consumer.close().await;
    Ok(latencies)
}

/// The `q` quantile (nearest rank) of `values`.
fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
