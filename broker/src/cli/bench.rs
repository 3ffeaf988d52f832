//! `faultline bench`: produce then consume N records on one real broker over loopback
//! with the project's client, several runs, and print the medians.
//!
//! Without --bootstrap-server it starts a broker in this process on a free loopback port
//! with a fresh data directory (so peak memory covers broker and client together).

use super::UsageError;
use bytes::{BufMut, Bytes, BytesMut};
use faultline::client::{
    Acks, Client, Consumer, ConsumerConfig, NewTopic, OffsetReset, Producer, ProducerConfig,
};
use faultline::config::BrokerConfig;
use faultline::record::codec::{Compression, NewRecord};
use faultline::server::Broker;
use faultline::storage::FileStorage;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Records per run.
    #[arg(long, default_value_t = 2_000_000)]
    records: usize,
    /// Value size of each record.
    #[arg(long, default_value_t = 100)]
    record_bytes: usize,
    /// Producer batch.size.
    #[arg(long, default_value_t = 256 * 1024)]
    batch_bytes: usize,
    /// 0, 1 or all.
    #[arg(long, default_value = "1")]
    acks: String,
    #[arg(long, default_value = "none")]
    compression: String,
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Brokers to start in this process: 1 is a standalone broker; more start 3
    /// controllers too, and topics get one replica per broker.
    #[arg(long, default_value_t = 1)]
    brokers: usize,
    /// Single-record produce requests timed one at a time after the throughput runs, for
    /// the p50/p99 produce latency.
    #[arg(long, default_value_t = 2_000)]
    latency_samples: usize,
    /// Benchmark an already running broker instead of one started here.
    #[arg(long)]
    bootstrap_server: Option<String>,
}

/// Nodes started in this process; dropped (and their directories removed) at the end.
pub(super) struct LocalNodes {
    pub(super) brokers: Vec<Broker>,
    pub(super) controllers: Vec<faultline::controller::ControllerNode>,
    pub(super) dir: std::path::PathBuf,
}

pub(super) async fn start_nodes(brokers: usize) -> anyhow::Result<(String, LocalNodes)> {
    let dir = std::env::temp_dir().join(format!("faultline-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut nodes = LocalNodes {
        brokers: Vec::new(),
        controllers: Vec::new(),
        dir: dir.clone(),
    };
    let mut voters = Vec::new();
    if brokers > 1 {
        for i in 0..3 {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            voters.push((1001 + i, listener.local_addr()?));
        }
        for (id, addr) in &voters {
            let config = faultline::controller::ControllerNodeConfig::new(
                *id,
                *addr,
                voters.clone(),
                dir.join(format!("controller-{id}")),
            );
            nodes.controllers.push(
                faultline::controller::ControllerNode::start(config, Arc::new(FileStorage::new()))
                    .await?,
            );
        }
    }
    for i in 0..brokers {
        let config = BrokerConfig {
            node_id: i as i32 + 1,
            listen: "127.0.0.1:0".parse()?,
            data_dir: dir.join(format!("broker-{}", i + 1)),
            controller_quorum_voters: voters.clone(),
            default_replication_factor: brokers as i16,
            ..Default::default()
        };
        std::fs::create_dir_all(&config.data_dir)?;
        nodes
            .brokers
            .push(Broker::start(config, Arc::new(FileStorage::new())).await?);
    }
    let bootstrap = nodes
        .brokers
        .iter()
        .map(|b| b.local_addr().to_string())
        .collect::<Vec<_>>()
        .join(",");
    if brokers > 1 {
        // Wait until every broker has registered and is unfenced.
        let mut client = Client::new(&bootstrap, "faultline-bench", Duration::from_secs(5));
        for _ in 0..200 {
            if client.refresh_metadata(Some(&[]), false).await.is_ok()
                && client.brokers().len() == brokers
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok((bootstrap, nodes))
}

struct RunFigures {
    produce_records_per_s: f64,
    consume_records_per_s: f64,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let acks = Acks::parse(&args.acks)
        .ok_or_else(|| UsageError(format!("--acks {:?}: expected 0, 1 or all", args.acks)))?;
    let compression = Compression::from_name(&args.compression)
        .ok_or_else(|| UsageError(format!("--compression {:?}", args.compression)))?;
    if args.records == 0 || args.runs == 0 || args.partitions < 1 {
        return Err(
            UsageError("--records, --runs and --partitions must be positive".into()).into(),
        );
    }
    if args.brokers == 0 || args.brokers > 9 {
        return Err(UsageError("--brokers must be in 1..=9".into()).into());
    }
    let (bootstrap, nodes) = match &args.bootstrap_server {
        Some(s) => (s.clone(), None),
        None => {
            let (bootstrap, nodes) = start_nodes(args.brokers).await?;
            (bootstrap, Some(nodes))
        }
    };
    println!(
        "faultline bench: {} records of {} bytes, acks={}, compression={}, batch.size={}, {} partition(s), {} runs, {}",
        args.records, args.record_bytes, args.acks, args.compression, args.batch_bytes, args.partitions, args.runs,
        match (&args.bootstrap_server, args.brokers) {
            (Some(_), _) => "external cluster".to_string(),
            (None, 1) => "in-process standalone broker".to_string(),
            (None, n) => format!("in-process cluster of {n} brokers and 3 controllers, replication factor {n}"),
        }
    );
    let mut figures = Vec::new();
    for run in 0..args.runs {
        let topic = format!("bench-{}-{run}", std::process::id());
        let f = one_run(&args, &bootstrap, &topic, acks, compression).await?;
        println!(
            "run {}: produce {:>10.0} records/s {:>7.1} MB/s | consume {:>10.0} records/s {:>7.1} MB/s",
            run + 1,
            f.produce_records_per_s,
            f.produce_records_per_s * args.record_bytes as f64 / 1e6,
            f.consume_records_per_s,
            f.consume_records_per_s * args.record_bytes as f64 / 1e6
        );
        figures.push(f);
        let mut admin = Client::new(&bootstrap, "faultline-bench", Duration::from_secs(30));
        let _ = admin.delete_topics(&[&topic]).await;
    }
    let produce = median(figures.iter().map(|f| f.produce_records_per_s).collect());
    let consume = median(figures.iter().map(|f| f.consume_records_per_s).collect());
    println!(
        "median produce: {produce:.0} records/s, {:.1} MB/s",
        produce * args.record_bytes as f64 / 1e6
    );
    println!(
        "median consume: {consume:.0} records/s, {:.1} MB/s",
        consume * args.record_bytes as f64 / 1e6
    );
    if args.latency_samples > 0 {
        let topic = format!("bench-{}-latency", std::process::id());
        let mut samples = latency_run(&args, &bootstrap, &topic, acks).await?;
        samples.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        println!(
            "produce latency ({} single-record requests, one at a time): p50 {:.2} ms, p99 {:.2} ms",
            samples.len(),
            at(0.50),
            at(0.99)
        );
        let mut admin = Client::new(&bootstrap, "faultline-bench", Duration::from_secs(30));
        let _ = admin.delete_topics(&[&topic]).await;
    }
    match peak_memory_kib() {
        Some(kib) => println!(
            "peak memory (VmHWM, this process): {:.1} MiB",
            kib as f64 / 1024.0
        ),
        None => println!("peak memory: not available on this platform"),
    }
    if let Some(nodes) = nodes {
        for broker in nodes.brokers {
            broker.kill().await;
        }
        for controller in nodes.controllers {
            controller.shutdown().await;
        }
        let _ = std::fs::remove_dir_all(&nodes.dir);
    }
    Ok(())
}

/// Milliseconds per single-record produce, each waited for before the next is sent.
async fn latency_run(
    args: &BenchArgs,
    bootstrap: &str,
    topic: &str,
    acks: Acks,
) -> anyhow::Result<Vec<f64>> {
    create_topic(bootstrap, topic, 1).await?;
    let mut producer = Producer::new(
        Client::new(
            bootstrap,
            "faultline-bench-latency",
            Duration::from_secs(30),
        ),
        ProducerConfig {
            acks,
            idempotence: acks == Acks::All,
            ..Default::default()
        },
    )
    .await?;
    let value = Bytes::from(vec![b'x'; args.record_bytes]);
    let mut samples = Vec::with_capacity(args.latency_samples);
    // Warm up connections and metadata first.
    for i in 0..args.latency_samples + 20 {
        let record = NewRecord {
            timestamp: faultline::server::now_ms(),
            key: None,
            value: Some(value.clone()),
            headers: Vec::new(),
        };
        let started = Instant::now();
        producer.send(topic, Some(0), record).await?;
        for r in producer.flush().await? {
            if let Some(e) = r.error {
                anyhow::bail!("produce failed: {e}");
            }
        }
        if i >= 20 {
            samples.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(samples)
}

async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let mut admin = Client::new(bootstrap, "faultline-bench", Duration::from_secs(30));
    for (name, result) in admin
        .create_topics(&[NewTopic {
            name: topic.to_string(),
            partitions,
            replication_factor: -1,
            ..Default::default()
        }])
        .await?
    {
        result.map_err(|e| anyhow::anyhow!("creating {name}: {e}"))?;
    }
    // A new topic's leaders take a moment to be known everywhere.
    for _ in 0..100 {
        let ready = admin
            .refresh_metadata(Some(&[topic]), false)
            .await
            .is_ok_and(|t| t.iter().all(|t| t.partitions.iter().all(|p| p.leader >= 0)));
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn one_run(
    args: &BenchArgs,
    bootstrap: &str,
    topic: &str,
    acks: Acks,
    compression: Compression,
) -> anyhow::Result<RunFigures> {
    create_topic(bootstrap, topic, args.partitions).await?;
    let config = ProducerConfig {
        acks,
        idempotence: acks == Acks::All,
        compression,
        batch_bytes: args.batch_bytes,
        in_flight_max: 5,
        ..Default::default()
    };
    let mut producer = Producer::new(
        Client::new(
            bootstrap,
            "faultline-bench-producer",
            Duration::from_secs(30),
        ),
        config,
    )
    .await?;
    let payload = vec![b'x'; args.record_bytes];
    // Flush after this many records so several batches are in flight per round.
    let round = (args.batch_bytes / (args.record_bytes + 16)).max(1) * 8;
    let started = Instant::now();
    let now = faultline::server::now_ms();
    let mut sent = 0usize;
    while sent < args.records {
        let n = round.min(args.records - sent);
        for i in 0..n {
            let mut value = BytesMut::with_capacity(args.record_bytes);
            value.put_slice(&payload);
            let id = ((sent + i) as u64).to_be_bytes();
            let len = id.len().min(value.len());
            value[..len].copy_from_slice(&id[..len]);
            let record = NewRecord {
                timestamp: now,
                key: None,
                value: Some(value.freeze()),
                headers: Vec::new(),
            };
            producer.send(topic, None, record).await?;
        }
        for r in producer.flush().await? {
            if let Some(e) = r.error {
                anyhow::bail!("produce failed: {e}");
            }
        }
        sent += n;
    }
    let produce_secs = started.elapsed().as_secs_f64();

    let mut consumer = Consumer::new(
        Client::new(
            bootstrap,
            "faultline-bench-consumer",
            Duration::from_secs(30),
        ),
        ConsumerConfig {
            offset_reset: OffsetReset::Earliest,
            fetch_max_bytes: 64 * 1024 * 1024,
            partition_fetch_max_bytes: 8 * 1024 * 1024,
            ..Default::default()
        },
    );
    for p in 0..args.partitions {
        consumer.assign(topic, p, Some(0));
    }
    let started = Instant::now();
    let mut received = 0usize;
    let mut bytes_seen = 0usize;
    while received < args.records {
        let records = consumer.poll().await?;
        if records.is_empty() && acks == Acks::None && consumer.caught_up() {
            break; // acks=0 may drop records; stop at the end of the log
        }
        for r in &records {
            bytes_seen += r.record.value.as_ref().map_or(0, Bytes::len);
        }
        received += records.len();
    }
    let consume_secs = started.elapsed().as_secs_f64();
    if received < args.records && acks != Acks::None {
        anyhow::bail!("consumed {received} of {} records", args.records);
    }
    let _ = bytes_seen;
    Ok(RunFigures {
        produce_records_per_s: args.records as f64 / produce_secs,
        consume_records_per_s: received as f64 / consume_secs,
    })
}

pub(super) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn peak_memory_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}
