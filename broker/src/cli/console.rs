//! Console tools in the manner of kafka-topics.sh, kafka-console-producer.sh and
//! kafka-console-consumer.sh, built on the project's client.

use super::UsageError;
use bytes::Bytes;
use faultline::client::group::{GroupConsumer, GroupConsumerConfig};
use faultline::client::{
    Acks, Client, Consumer, ConsumerConfig, NewTopic, OffsetReset, Producer, ProducerConfig,
};
use faultline::record::codec::{Compression, NewRecord};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::Duration;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(clap::Args)]
pub struct TopicsArgs {
    #[arg(long, default_value = "127.0.0.1:9092", global = true)]
    bootstrap_server: String,
    #[command(subcommand)]
    action: TopicsAction,
}

#[derive(clap::Subcommand)]
enum TopicsAction {
    /// Create a topic.
    Create {
        #[arg(long)]
        topic: String,
        /// Default: the broker's num.partitions.
        #[arg(long, default_value_t = -1)]
        partitions: i32,
        /// Default: the broker's default.replication.factor.
        #[arg(long, default_value_t = -1)]
        replication_factor: i16,
        /// Topic setting by its Kafka name, e.g. --config min.insync.replicas=2.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topic names.
    List,
    /// Describe topics (all, or the one named).
    Describe {
        #[arg(long)]
        topic: Option<String>,
    },
    /// Delete a topic.
    Delete {
        #[arg(long)]
        topic: String,
    },
}

pub async fn topics(args: TopicsArgs) -> anyhow::Result<()> {
    let mut client = Client::new(&args.bootstrap_server, "faultline-topics", CLIENT_TIMEOUT);
    match args.action {
        TopicsAction::Create {
            topic,
            partitions,
            replication_factor,
            configs,
        } => {
            let mut parsed = BTreeMap::new();
            for c in configs {
                let (k, v) = c
                    .split_once('=')
                    .ok_or_else(|| UsageError(format!("--config {c:?}: expected KEY=VALUE")))?;
                parsed.insert(k.trim().to_string(), v.trim().to_string());
            }
            let results = client
                .create_topics(&[NewTopic {
                    name: topic.clone(),
                    partitions,
                    replication_factor,
                    configs: parsed,
                }])
                .await?;
            for (name, result) in results {
                result.map_err(|e| anyhow::anyhow!("creating topic {name}: {e}"))?;
                println!("Created topic {name}.");
            }
        }
        TopicsAction::List => {
            for t in client.refresh_metadata(None, false).await? {
                println!("{}", t.name);
            }
        }
        TopicsAction::Describe { topic } => {
            let names: Vec<&str> = topic.iter().map(|s| s.as_str()).collect();
            let topics = client
                .refresh_metadata(topic.as_ref().map(|_| names.as_slice()), false)
                .await?;
            for t in topics {
                let rf = t.partitions.first().map_or(0, |p| p.replicas.len());
                println!(
                    "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}",
                    t.name,
                    uuid::Uuid::from_u128(t.id),
                    t.partitions.len(),
                    rf
                );
                for p in &t.partitions {
                    let join = |v: &[i32]| {
                        v.iter()
                            .map(|n| n.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    println!(
                        "\tTopic: {}\tPartition: {}\tLeader: {}\tLeaderEpoch: {}\tReplicas: {}\tIsr: {}",
                        t.name,
                        p.partition,
                        p.leader,
                        p.leader_epoch,
                        join(&p.replicas),
                        join(&p.isr)
                    );
                }
            }
        }
        TopicsAction::Delete { topic } => {
            for (name, result) in client.delete_topics(&[&topic]).await? {
                result.map_err(|e| anyhow::anyhow!("deleting topic {name}: {e}"))?;
                println!("Deleted topic {name}.");
            }
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct ProduceArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap_server: String,
    #[arg(long)]
    topic: String,
    /// Send every record to this partition (default: by key, or round robin).
    #[arg(long)]
    partition: Option<i32>,
    /// Split each line into key and value at the first occurrence of this string.
    #[arg(long)]
    key_separator: Option<String>,
    /// 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Kafka's enable.idempotence (default true with acks=all, as in Kafka 3+).
    #[arg(long)]
    idempotence: Option<bool>,
    /// Lines sent per request round.
    #[arg(long, default_value_t = 1000)]
    batch_lines: usize,
}

pub async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    let acks = Acks::parse(&args.acks)
        .ok_or_else(|| UsageError(format!("--acks {:?}: expected 0, 1 or all", args.acks)))?;
    let compression = Compression::from_name(&args.compression).ok_or_else(|| {
        UsageError(format!(
            "--compression {:?}: expected none, gzip, snappy, lz4 or zstd",
            args.compression
        ))
    })?;
    let idempotence = args.idempotence.unwrap_or(acks == Acks::All);
    let client = Client::new(
        &args.bootstrap_server,
        "faultline-console-producer",
        CLIENT_TIMEOUT,
    );
    let config = ProducerConfig {
        acks,
        idempotence,
        compression,
        ..Default::default()
    };
    let mut producer = Producer::new(client, config).await?;
    let stdin = std::io::stdin();
    let mut failures = 0usize;
    let mut lines = stdin.lock().lines();
    loop {
        let mut eof = false;
        for _ in 0..args.batch_lines.max(1) {
            let Some(line) = lines.next() else {
                eof = true;
                break;
            };
            let line = line?;
            let (key, value) = match &args.key_separator {
                Some(sep) => match line.split_once(sep.as_str()) {
                    Some((k, v)) => (Some(Bytes::from(k.to_string())), v.to_string()),
                    None => {
                        return Err(UsageError(format!(
                            "line {line:?} has no key separator {sep:?}"
                        ))
                        .into())
                    }
                },
                None => (None, line),
            };
            let record = NewRecord {
                timestamp: faultline::server::now_ms(),
                key,
                value: Some(Bytes::from(value)),
                headers: Vec::new(),
            };
            producer.send(&args.topic, args.partition, record).await?;
        }
        for result in producer.flush().await? {
            if let Some(e) = result.error {
                failures += result.record_count;
                eprintln!(
                    "error: {} records to {}-{} failed: {e}",
                    result.record_count, result.topic, result.partition
                );
            }
        }
        if eof {
            break;
        }
    }
    if failures > 0 {
        anyhow::bail!("{failures} records were not acknowledged");
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct ConsumeArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap_server: String,
    #[arg(long)]
    topic: String,
    /// Read only this partition (default: all).
    #[arg(long)]
    partition: Option<i32>,
    /// Start at this offset, or earliest / latest (needs --partition for a number).
    #[arg(long)]
    offset: Option<String>,
    /// Start at the earliest offset instead of the latest (with --group: where the
    /// group has no committed offset).
    #[arg(long)]
    from_beginning: bool,
    /// Consume as a member of this consumer group (subscribe, auto-commit, commit on exit).
    #[arg(long)]
    group: Option<String>,
    /// Exit after this many records.
    #[arg(long)]
    max_messages: Option<usize>,
    /// Exit when no record arrives for this long.
    #[arg(long)]
    timeout_ms: Option<u64>,
    #[arg(long)]
    print_key: bool,
    #[arg(long)]
    print_offset: bool,
    #[arg(long)]
    print_headers: bool,
    /// Between key and value when --print-key is given.
    #[arg(long, default_value = "\t")]
    key_separator: String,
}

pub async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let mut start: Option<i64> = None;
    let mut reset = if args.from_beginning {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    };
    match args.offset.as_deref() {
        None => {}
        Some("earliest") => reset = OffsetReset::Earliest,
        Some("latest") => reset = OffsetReset::Latest,
        Some(n) => {
            if args.partition.is_none() {
                return Err(UsageError("--offset with a number needs --partition".into()).into());
            }
            start = Some(n.parse().map_err(|_| {
                UsageError(format!(
                    "--offset {n:?}: expected a number, earliest or latest"
                ))
            })?);
        }
    }
    if let Some(group) = args.group.clone() {
        if args.partition.is_some() || start.is_some() {
            return Err(
                UsageError("--group takes no --partition and no --offset number".into()).into(),
            );
        }
        return consume_group(args, group, reset).await;
    }
    let mut client = Client::new(
        &args.bootstrap_server,
        "faultline-console-consumer",
        CLIENT_TIMEOUT,
    );
    let info = client.topic(&args.topic).await?;
    let config = ConsumerConfig {
        offset_reset: reset,
        ..Default::default()
    };
    let mut consumer = Consumer::new(client, config);
    match args.partition {
        Some(p) => {
            if !info.partitions.iter().any(|i| i.partition == p) {
                return Err(
                    UsageError(format!("topic {} has no partition {p}", args.topic)).into(),
                );
            }
            consumer.assign(&args.topic, p, start)
        }
        None => {
            for p in &info.partitions {
                consumer.assign(&args.topic, p.partition, None);
            }
        }
    }
    let mut printed = 0usize;
    let mut last_record = tokio::time::Instant::now();
    let stdout = std::io::stdout();
    loop {
        let records = consumer.poll().await?;
        let mut out = stdout.lock();
        if !records.is_empty() {
            last_record = tokio::time::Instant::now();
        }
        for r in records {
            write_record(&mut out, &args, &r)?;
            printed += 1;
            if args.max_messages.is_some_and(|m| printed >= m) {
                out.flush()?;
                return Ok(());
            }
        }
        out.flush()?;
        if let Some(ms) = args.timeout_ms {
            if last_record.elapsed() >= Duration::from_millis(ms) {
                eprintln!("Processed a total of {printed} messages");
                return Ok(());
            }
        }
    }
}

/// One record as kafka-console-consumer prints it, with the --print-* options.
fn write_record(
    out: &mut impl Write,
    args: &ConsumeArgs,
    r: &faultline::client::ConsumedRecord,
) -> std::io::Result<()> {
    if args.print_offset {
        write!(out, "{}:{}\t", r.partition, r.record.offset)?;
    }
    if args.print_headers {
        let headers: Vec<String> = r
            .record
            .headers
            .iter()
            .map(|h| {
                format!(
                    "{}:{}",
                    h.key,
                    h.value
                        .as_ref()
                        .map_or("NULL".into(), |v| String::from_utf8_lossy(v).into_owned())
                )
            })
            .collect();
        write!(
            out,
            "{}\t",
            if headers.is_empty() {
                "NO_HEADERS".to_string()
            } else {
                headers.join(",")
            }
        )?;
    }
    if args.print_key {
        let key = r
            .record
            .key
            .as_ref()
            .map_or("null".into(), |k| String::from_utf8_lossy(k).into_owned());
        write!(out, "{key}{}", args.key_separator)?;
    }
    let value = r
        .record
        .value
        .as_ref()
        .map_or("null".into(), |v| String::from_utf8_lossy(v).into_owned());
    writeln!(out, "{value}")?;
    Ok(())
}

/// `consume --group`: a group member subscribed to the topic, auto-commit on, the final
/// positions committed when it exits (after --max-messages or --timeout-ms).
async fn consume_group(args: ConsumeArgs, group: String, reset: OffsetReset) -> anyhow::Result<()> {
    let client = Client::new(
        &args.bootstrap_server,
        "faultline-console-consumer",
        CLIENT_TIMEOUT,
    );
    let mut config = GroupConsumerConfig::new(&group, &[args.topic.as_str()]);
    config.auto_offset_reset = reset;
    let mut consumer = GroupConsumer::new(client, config);
    let mut printed = 0usize;
    let mut last_record = tokio::time::Instant::now();
    let stdout = std::io::stdout();
    let result = loop {
        let polled = match consumer.poll(Duration::from_millis(500)).await {
            Ok(polled) => polled,
            Err(e) => break Err(e.into()),
        };
        let mut out = stdout.lock();
        if !polled.records.is_empty() {
            last_record = tokio::time::Instant::now();
        }
        let wanted = args.max_messages.map_or(usize::MAX, |m| m - printed);
        for r in polled.records.iter().take(wanted) {
            write_record(&mut out, &args, r)?;
            printed += 1;
        }
        out.flush()?;
        if args.max_messages.is_some_and(|m| printed >= m) {
            // Rewind to the first record not printed: close commits what was printed.
            for r in polled.records.iter().skip(wanted).rev() {
                consumer.seek(&r.topic, r.partition, r.record.offset);
            }
            break Ok(());
        }
        if args
            .timeout_ms
            .is_some_and(|ms| last_record.elapsed() >= Duration::from_millis(ms))
        {
            eprintln!("Processed a total of {printed} messages");
            break Ok(());
        }
    };
    consumer.close().await;
    result
}
