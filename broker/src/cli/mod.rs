//! Command-line parsing and dispatch. Exit codes: 0 success, 1 failure, 2 bad usage.

mod bench;
mod bench_groups;
mod cluster;
mod console;
mod consumer_groups;

use clap::{Parser, Subcommand};
use faultline::config::BrokerConfig;
use faultline::server::Broker;
use faultline::storage::FileStorage;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "faultline",
    version,
    about = "A Kafka-compatible broker and its deterministic simulation lab"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker node (with --controller-quorum-voters: part of a cluster).
    Broker(BrokerArgs),
    /// Run a controller node of the metadata quorum.
    Controller(cluster::ControllerArgs),
    /// Run a local cluster (controllers and brokers as child processes) until Ctrl-C.
    Cluster(cluster::ClusterArgs),
    /// Show each controller's view of the quorum and the registered brokers.
    MetadataQuorum(cluster::MetadataQuorumArgs),
    /// Create, list, describe and delete topics.
    Topics(console::TopicsArgs),
    /// Produce lines from standard input as records.
    Produce(console::ProduceArgs),
    /// Print records of a topic.
    Consume(console::ConsumeArgs),
    /// List, describe, reset the offsets of and delete consumer groups.
    ConsumerGroups(consumer_groups::ConsumerGroupsArgs),
    /// Produce and consume on one real node over loopback and print the figures.
    Bench(bench::BenchArgs),
    /// Consumer-group figures on one real broker: rebalance time for 1, 10 and 100
    /// members, offset commits per second, produce-to-group-consume latency.
    BenchGroups(bench_groups::BenchGroupsArgs),
}

#[derive(clap::Args)]
struct BrokerArgs {
    /// Address to listen on (Kafka's `listeners`).
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen: String,
    /// Data directory (Kafka's `log.dirs`).
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// This node's id (Kafka's `node.id`).
    #[arg(long, default_value_t = 1)]
    node_id: i32,
    /// Kafka's `controller.quorum.voters` (ID@HOST:PORT,...): join that cluster. Without
    /// it the broker runs alone and is the only replica of everything.
    #[arg(long)]
    controller_quorum_voters: Option<String>,
    /// Kafka's `broker.rack`, for rack-aware replica placement.
    #[arg(long)]
    rack: Option<String>,
    /// A Kafka-style server.properties file; flags given here win over it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Any setting by its Kafka name, e.g. --override log.flush.interval.messages=1.
    #[arg(long = "override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

pub async fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    init_tracing();
    let result = match cli.command {
        Command::Broker(args) => run_broker(args).await,
        Command::Controller(args) => cluster::run_controller(args).await,
        Command::Cluster(args) => cluster::run_cluster(args).await,
        Command::MetadataQuorum(args) => cluster::metadata_quorum(args).await,
        Command::Topics(args) => console::topics(args).await,
        Command::Produce(args) => console::produce(args).await,
        Command::Consume(args) => console::consume(args).await,
        Command::ConsumerGroups(args) => consumer_groups::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::BenchGroups(args) => bench_groups::run(args).await,
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                2
            } else {
                1
            }
        }
    }
}

/// A mistake in how the command was called (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: node logs of `faultline cluster` are files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn broker_config(args: &BrokerArgs) -> anyhow::Result<BrokerConfig> {
    let mut config = BrokerConfig::default();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
        config
            .apply_properties(&path.display().to_string(), &text)
            .map_err(|e| UsageError(e.to_string()))?;
    }
    config
        .apply_one("listeners", &args.listen)
        .map_err(|e| UsageError(format!("--listen: {e}")))?;
    config.data_dir = args.data_dir.clone();
    config.node_id = args.node_id;
    if let Some(voters) = &args.controller_quorum_voters {
        config
            .apply_one("controller.quorum.voters", voters)
            .map_err(|e| UsageError(format!("--controller-quorum-voters: {e}")))?;
    }
    if let Some(rack) = &args.rack {
        config.rack = Some(rack.clone());
    }
    apply_overrides(&args.overrides, |key, value| config.apply_one(key, value))?;
    Ok(config)
}

/// Apply `--override KEY=VALUE` items in order; a malformed item or a refused setting is a
/// usage error naming it.
pub(crate) fn apply_overrides(
    items: &[String],
    mut apply: impl FnMut(&str, &str) -> Result<(), String>,
) -> Result<(), UsageError> {
    for item in items {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| UsageError(format!("--override {item:?}: expected KEY=VALUE")))?;
        apply(key.trim(), value.trim())
            .map_err(|e| UsageError(format!("--override {}: {e}", key.trim())))?;
    }
    Ok(())
}

async fn run_broker(args: BrokerArgs) -> anyhow::Result<()> {
    let config = broker_config(&args)?;
    std::fs::create_dir_all(&config.data_dir)?;
    let broker = Broker::start(config, Arc::new(FileStorage::new())).await?;
    println!("faultline broker listening on {}", broker.local_addr());
    shutdown_signal().await;
    tracing::info!("shutting down: syncing every log");
    broker.shutdown().await?;
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
