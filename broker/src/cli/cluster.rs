//! `faultline controller`, `faultline cluster` and `faultline metadata-quorum`: run a
//! controller node, run a whole local cluster as child processes (so any node can be
//! killed with kill -9 and restarted with the command it prints), and ask the quorum who
//! leads.

use super::{shutdown_signal, UsageError};
use faultline::config::parse_voters;
use faultline::controller::rpc::{Request, Response};
use faultline::controller::{ControllerClient, ControllerNode, ControllerNodeConfig};
use faultline::storage::FileStorage;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct ControllerArgs {
    /// This controller's id (Kafka's `node.id`); must be one of the voters.
    #[arg(long)]
    node_id: i32,
    /// Address to listen on; defaults to this node's address in the voters list.
    #[arg(long)]
    listen: Option<String>,
    /// Kafka's `controller.quorum.voters`: ID@HOST:PORT,...
    #[arg(long)]
    voters: String,
    /// Where the metadata log lives (Kafka's `metadata.log.dir`).
    #[arg(long, default_value = "./metadata")]
    data_dir: PathBuf,
    /// Any controller setting by its Kafka name, e.g.
    /// --override unclean.leader.election.enable=true.
    #[arg(long = "override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

fn controller_config(args: &ControllerArgs) -> anyhow::Result<ControllerNodeConfig> {
    let voters = parse_voters(&args.voters).map_err(|e| UsageError(format!("--voters: {e}")))?;
    let own = voters
        .iter()
        .find(|(id, _)| *id == args.node_id)
        .map(|(_, addr)| *addr)
        .ok_or_else(|| UsageError(format!("--node-id {} is not in --voters", args.node_id)))?;
    let mut config = ControllerNodeConfig::new(args.node_id, own, voters, args.data_dir.clone());
    if let Some(listen) = &args.listen {
        config
            .apply_one("listeners", listen)
            .map_err(|e| UsageError(format!("--listen: {e}")))?;
    }
    super::apply_overrides(&args.overrides, |key, value| config.apply_one(key, value))?;
    config.validate().map_err(UsageError)?;
    Ok(config)
}

pub async fn run_controller(args: ControllerArgs) -> anyhow::Result<()> {
    let config = controller_config(&args)?;
    std::fs::create_dir_all(&config.data_dir)?;
    let node = ControllerNode::start(config, Arc::new(FileStorage::new())).await?;
    println!("faultline controller listening on {}", node.local_addr());
    shutdown_signal().await;
    node.shutdown().await;
    Ok(())
}

#[derive(clap::Args)]
pub struct MetadataQuorumArgs {
    /// Kafka's `controller.quorum.voters`: ID@HOST:PORT,...
    #[arg(long)]
    voters: String,
}

/// Like `kafka-metadata-quorum.sh describe --status`: each voter's view, and the brokers
/// the committed metadata knows.
pub async fn metadata_quorum(args: MetadataQuorumArgs) -> anyhow::Result<()> {
    let voters = parse_voters(&args.voters).map_err(|e| UsageError(format!("--voters: {e}")))?;
    let mut active = None;
    for (id, addr) in &voters {
        let mut client = ControllerClient::new(vec![(*id, *addr)]);
        match client
            .call(&Request::Describe, Duration::from_secs(2))
            .await
        {
            Ok(Response::Describe {
                node,
                term,
                leader,
                active: is_active,
                image,
            }) => {
                println!(
                    "controller {node}: term {term}, leader {}, active {is_active}, metadata offset {}",
                    leader.map_or("unknown".to_string(), |l| l.to_string()),
                    image.offset
                );
                if is_active {
                    active = Some(image);
                }
            }
            _ => println!("controller {id}: unreachable"),
        }
    }
    match active {
        Some(image) => {
            for b in image.brokers.values() {
                println!(
                    "broker {}: {}:{}{}{}",
                    b.id,
                    b.host,
                    b.port,
                    b.rack
                        .as_ref()
                        .map_or(String::new(), |r| format!(" rack {r}")),
                    if b.fenced { " fenced" } else { "" }
                );
            }
            Ok(())
        }
        None => anyhow::bail!("no active controller"),
    }
}

#[derive(clap::Args)]
pub struct ClusterArgs {
    /// Broker nodes (ids 1..N, ports BASE_PORT..).
    #[arg(long, default_value_t = 3)]
    brokers: u16,
    /// Controller nodes (ids 1001.., ports BASE_PORT+100..): 1, 3 or 5.
    #[arg(long, default_value_t = 3)]
    controllers: u16,
    /// First broker port.
    #[arg(long, default_value_t = 9092)]
    base_port: u16,
    /// Each node gets a directory inside (broker-N, controller-N) with its data and log.
    #[arg(long, default_value = "./cluster")]
    data_dir: PathBuf,
    /// Broker setting for every broker by its Kafka name (repeatable).
    #[arg(long = "override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Controller setting for every controller by its Kafka name (repeatable).
    #[arg(long = "controller-override", value_name = "KEY=VALUE")]
    controller_overrides: Vec<String>,
}

struct NodeProcess {
    name: String,
    args: Vec<String>,
    child: Child,
}

/// Start every node as a child process of this one and supervise nothing: a node killed
/// from outside stays down until restarted with the command printed for it. Ctrl-C or
/// SIGTERM stops them all.
pub async fn run_cluster(args: ClusterArgs) -> anyhow::Result<()> {
    if !matches!(args.controllers, 1 | 3 | 5) {
        return Err(UsageError("--controllers must be 1, 3 or 5".into()).into());
    }
    if args.brokers == 0 || args.brokers > 99 {
        return Err(UsageError("--brokers must be in 1..=99".into()).into());
    }
    let last_port = u32::from(args.base_port) + 100 + u32::from(args.controllers);
    if last_port > u32::from(u16::MAX) {
        return Err(
            UsageError("--base-port leaves no room for the controllers' ports".into()).into(),
        );
    }
    let exe = std::env::current_exe()?;
    let voters: Vec<(i32, SocketAddr)> = (0..args.controllers)
        .map(|i| {
            let addr = SocketAddr::from(([127, 0, 0, 1], args.base_port + 100 + i));
            (1001 + i32::from(i), addr)
        })
        .collect();
    let voters_text = voters
        .iter()
        .map(|(id, addr)| format!("{id}@{addr}"))
        .collect::<Vec<_>>()
        .join(",");
    std::fs::create_dir_all(&args.data_dir)?;
    let mut nodes = Vec::new();
    for (id, _) in &voters {
        let name = format!("controller-{}", id - 1000);
        let dir = args.data_dir.join(&name);
        let mut node_args = vec![
            "controller".to_string(),
            "--node-id".into(),
            id.to_string(),
            "--voters".into(),
            voters_text.clone(),
            "--data-dir".into(),
            dir.join("metadata").display().to_string(),
        ];
        for o in &args.controller_overrides {
            node_args.extend(["--override".to_string(), o.clone()]);
        }
        nodes.push(spawn_node(&exe, &name, &dir, node_args)?);
    }
    for i in 0..args.brokers {
        let name = format!("broker-{}", i + 1);
        let dir = args.data_dir.join(&name);
        let mut node_args = vec![
            "broker".to_string(),
            "--node-id".into(),
            (i + 1).to_string(),
            "--listen".into(),
            format!("127.0.0.1:{}", args.base_port + i),
            "--data-dir".into(),
            dir.join("data").display().to_string(),
            "--override".into(),
            format!("controller.quorum.voters={voters_text}"),
        ];
        for o in &args.overrides {
            node_args.extend(["--override".to_string(), o.clone()]);
        }
        nodes.push(spawn_node(&exe, &name, &dir, node_args)?);
    }
    let bootstrap = (0..args.brokers)
        .map(|i| format!("127.0.0.1:{}", args.base_port + i))
        .collect::<Vec<_>>()
        .join(",");
    let mut table = String::new();
    for node in &nodes {
        table.push_str(&format!(
            "{}\tpid {}\t{} {}\n",
            node.name,
            node.child.id(),
            exe.display(),
            node.args.join(" ")
        ));
    }
    std::fs::write(args.data_dir.join("nodes.txt"), &table)?;
    println!(
        "faultline cluster: {} controllers, {} brokers",
        args.controllers, args.brokers
    );
    println!("bootstrap.servers={bootstrap}");
    println!("controller.quorum.voters={voters_text}");
    println!(
        "nodes (also in {}; logs in each node's directory):",
        args.data_dir.join("nodes.txt").display()
    );
    print!("{table}");
    shutdown_signal().await;
    for node in &mut nodes {
        // SIGTERM: brokers sync their logs on the way out.
        // SAFETY: kill(2) on the pid of a child this process started and has not reaped.
        unsafe {
            libc::kill(node.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }
    for node in &mut nodes {
        let _ = node.child.wait();
    }
    Ok(())
}

fn spawn_node(
    exe: &std::path::Path,
    name: &str,
    dir: &std::path::Path,
    args: Vec<String>,
) -> anyhow::Result<NodeProcess> {
    std::fs::create_dir_all(dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))?;
    let child = Command::new(exe)
        .args(&args)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    Ok(NodeProcess {
        name: name.to_string(),
        args,
        child,
    })
}
