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
    /// Benchmark an already running broker instead of one started here.
    #[arg(long)]
    bootstrap_server: Option<String>,
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
    let mut _data_dir = None;
    let (bootstrap, _broker) = match &args.bootstrap_server {
        Some(s) => (s.clone(), None),
        None => {
            let dir = std::env::temp_dir().join(format!("faultline-bench-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            let config = BrokerConfig {
                listen: "127.0.0.1:0".parse()?,
                data_dir: dir.clone(),
                ..Default::default()
            };
            let broker = Broker::start(config, Arc::new(FileStorage::new())).await?;
            _data_dir = Some(dir);
            (broker.local_addr().to_string(), Some(broker))
        }
    };
    println!(
        "faultline bench: {} records of {} bytes, acks={}, compression={}, batch.size={}, {} partition(s), {} runs, broker {}",
        args.records, args.record_bytes, args.acks, args.compression, args.batch_bytes, args.partitions, args.runs,
        if args.bootstrap_server.is_some() { "external" } else { "in-process" }
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
    match peak_memory_kib() {
        Some(kib) => println!(
            "peak memory (VmHWM, this process): {:.1} MiB",
            kib as f64 / 1024.0
        ),
        None => println!("peak memory: not available on this platform"),
    }
    if let Some(dir) = _data_dir {
        let _ = std::fs::remove_dir_all(dir);
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
    let mut admin = Client::new(bootstrap, "faultline-bench", Duration::from_secs(30));
    for (name, result) in admin
        .create_topics(&[NewTopic {
            name: topic.to_string(),
            partitions: args.partitions,
            replication_factor: -1,
            ..Default::default()
        }])
        .await?
    {
        result.map_err(|e| anyhow::anyhow!("creating {name}: {e}"))?;
    }
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

fn median(mut values: Vec<f64>) -> f64 {
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
