//! Faults on the timeline, applied and healed: through madsim (kill and restart, pause,
//! clogged links, network latency and loss), through the simulated disk (torn writes,
//! corruption, a full disk, slow fsync) and through the control handles the harness keeps
//! on nodes (connection resets, clean stops, clock offsets). Names and roles are resolved
//! to nodes when a fault fires (`roles`); every fault leaves `fault-start`, `fault-end` or
//! `fault-skipped` on the timeline.

use super::cluster::Cluster;
use super::nemesis::{PlanRng, PlannedFault};
use super::recorder::{event, Shared};
use super::roles::{resolve_groups, resolve_node, resolve_nodes};
use super::sleep_until;
use crate::scenario::FaultKind;
use faultline::storage::{Fill, SimDisk, TornTail};
use madsim::net::NetSim;
use madsim::runtime::Handle;
use madsim::task::NodeId;
use madsim::time::{sleep, Instant};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long the `stop` fault waits for a clean shutdown before killing the broker anyway
/// (simulated time: polls of `STOP_WAIT_POLL`).
const STOP_WAIT_POLLS_MAX: u32 = 3_000;
const STOP_WAIT_POLL: Duration = Duration::from_millis(10);

/// Play the plan against the cluster in simulated time (`start` is time zero): each fault
/// at its time, each healed at its end; faults still on at the end of the safety phase
/// (`run_duration`) heal then.
pub(super) async fn run_timeline(
    plan: Vec<PlannedFault>,
    cluster: &Cluster,
    rec: &Shared,
    seed: u64,
    start: Instant,
    run_duration: Duration,
) {
    // (end, stagger, what to undo)
    let mut active: Vec<(Duration, Duration, Applied)> = Vec::new();
    for mut f in plan {
        // End faults due before this one starts.
        active.sort_by_key(|(end, _, _)| *end);
        while active.first().is_some_and(|(end, _, _)| *end <= f.at) {
            let (end, _, applied) = active.remove(0);
            sleep_until(start, end).await;
            heal(&applied, rec, cluster);
        }
        sleep_until(start, f.at).await;
        if let Some(probe) = f.after.clone() {
            // Triggered: wait (healing what falls due meanwhile) until a node reaches the
            // probe; faults later in the timeline wait with this one.
            match wait_for_probe(&probe, &mut active, cluster, rec, start, run_duration).await {
                Some(at) => f.at = at,
                None => {
                    event(
                        rec,
                        "fault-skipped",
                        f.kind.name(),
                        &format!("after {probe}"),
                        f.source,
                    );
                    continue;
                }
            }
        }
        for (stagger, one) in singles(&f, cluster, rec).await {
            let applied = apply(&one, cluster, rec, seed).await;
            let end = f.duration.map_or(run_duration, |d| f.at + d);
            if let Some(applied) = applied {
                active.push((end + stagger, stagger, applied));
            }
        }
    }
    active.sort_by_key(|(end, _, _)| *end);
    for (end, stagger, applied) in active.drain(..) {
        // Faults still on at the end of the safety phase heal then (a staggered restart
        // keeps its stagger, and may run into the liveness phase).
        sleep_until(start, end.min(run_duration + stagger)).await;
        heal(&applied, rec, cluster);
    }
}

/// Poll (every simulated millisecond) until the coverage probe `probe` is reached again,
/// healing active faults as they fall due. The time it was reached, or None when the
/// safety phase ended first.
async fn wait_for_probe(
    probe: &str,
    active: &mut Vec<(Duration, Duration, Applied)>,
    cluster: &Cluster,
    rec: &Shared,
    start: Instant,
    run_duration: Duration,
) -> Option<Duration> {
    let seen = faultline::probe::count(probe);
    loop {
        let now = Instant::now().duration_since(start);
        if faultline::probe::count(probe) > seen {
            return Some(now);
        }
        if now >= run_duration {
            return None;
        }
        active.sort_by_key(|(end, _, _)| *end);
        while active.first().is_some_and(|(end, _, _)| *end <= now) {
            let (_, _, applied) = active.remove(0);
            heal(&applied, rec, cluster);
        }
        madsim::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A fault as faults of one node each, with each one's restart stagger. A kill or crash of
/// several nodes: resolve them all first, then kill them at the same instant (no await
/// between the kills); the k-th restarts k * stagger after the first.
async fn singles(
    f: &PlannedFault,
    cluster: &Cluster,
    rec: &Shared,
) -> Vec<(Duration, PlannedFault)> {
    if f.nodes.is_empty() {
        return vec![(Duration::ZERO, f.clone())];
    }
    let mut names = Vec::new();
    for n in &f.nodes {
        for (name, _) in resolve_nodes(n, cluster).await {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    if names.is_empty() {
        event(
            rec,
            "fault-skipped",
            f.kind.name(),
            &f.nodes.join(", "),
            f.source,
        );
    }
    names
        .into_iter()
        .enumerate()
        .map(|(k, name)| {
            let mut one = f.clone();
            one.nodes = Vec::new();
            one.node = Some(name);
            (f.restart_stagger * k as u32, one)
        })
        .collect()
}

/// What `heal` must undo.
enum Applied {
    /// Restart a killed node; the fault kind that killed it.
    Restart(NodeId, String, &'static str),
    Resume(NodeId, String),
    Unclog(Vec<(NodeId, NodeId)>, String),
    UnclogNode(NodeId, String),
    Latency(String),
    DiskSpace(NodeId, String),
    Loss(String),
    LinkLatency {
        active: Arc<AtomicBool>,
        a: NodeId,
        b: NodeId,
        what: String,
    },
    SlowFsync(NodeId, String),
    /// Put the node's clock offset back to `offset_ms`.
    Clock {
        name: String,
        id: NodeId,
        offset_ms: i64,
    },
    Nothing,
}

/// Apply one fault of at most one node; None when there was nothing to apply it to (the
/// timeline says why) or nothing to undo.
async fn apply(f: &PlannedFault, cluster: &Cluster, rec: &Shared, seed: u64) -> Option<Applied> {
    let node = match &f.node {
        Some(n) => match resolve_node(n, cluster).await {
            Some(found) => Some(found),
            None => {
                event(rec, "fault-skipped", f.kind.name(), n, f.source);
                return None;
            }
        },
        None => None,
    };
    let target = node.as_ref().map(|(n, _)| n.clone()).unwrap_or_default();
    let powers_off = matches!(
        f.kind,
        FaultKind::Kill | FaultKind::Crash | FaultKind::Stop | FaultKind::DiskTornWrite
    );
    if powers_off
        && node
            .as_ref()
            .is_some_and(|(_, id)| cluster.down.lock().unwrap().contains(id))
    {
        event(
            rec,
            "fault-skipped",
            f.kind.name(),
            &format!("{target} is already down"),
            f.source,
        );
        return None;
    }
    let handle = Handle::current();
    let net = NetSim::current();
    // Kinds that return here leave their own `fault-start` on the timeline; the others
    // name their target below.
    let applied = match f.kind {
        FaultKind::Kill | FaultKind::Crash | FaultKind::Stop | FaultKind::DiskTornWrite => {
            let (name, id) = node?;
            power_off(f, name, id, cluster, rec, seed).await?
        }
        FaultKind::Pause => {
            let (name, id) = node?;
            handle.pause(id);
            Applied::Resume(id, name)
        }
        FaultKind::Isolate => {
            let (name, id) = node?;
            net.clog_node(id);
            Applied::UnclogNode(id, name)
        }
        FaultKind::Reset => {
            let (_, id) = node?;
            match cluster.controls.get(&id) {
                // A broker: drop its connections, keep its listener (madsim's own node
                // reset would close the listening socket too).
                Some(control) => {
                    if let Some(c) = control.lock().unwrap().as_ref() {
                        c.reset_connections();
                    }
                }
                None => net.reset_node(id),
            }
            Applied::Nothing
        }
        FaultKind::Partition | FaultKind::Clog => return cut_links(f, cluster, rec).await,
        FaultKind::Latency if f.from.is_some() => return slow_link(f, cluster, rec, seed).await,
        FaultKind::DiskSlowFsync => return Some(slow_fsync(f, node?, rec)),
        FaultKind::Latency => return Some(network_latency(f, rec)),
        FaultKind::DiskCorrupt => return Some(corrupt_disk(f, node?, rec, seed)),
        FaultKind::Loss => return Some(loss(f, rec)),
        FaultKind::ClockSkew | FaultKind::ClockJump => return move_clock(f, node?, cluster, rec),
        FaultKind::DiskFull => {
            let (name, id) = node?;
            let disk = madsim::plugin::simulator::<SimDisk>().disk(id);
            disk.with_disk(|d| {
                let used = d.used_bytes();
                d.set_capacity_bytes(Some(used));
            });
            Applied::DiskSpace(id, name)
        }
    };
    event(rec, "fault-start", f.kind.name(), &target, f.source);
    Some(applied)
}

/// Kill, crash, clean stop or torn write: the node goes down until healed (`Restart`);
/// None when a stop finds no running broker.
async fn power_off(
    f: &PlannedFault,
    name: String,
    id: NodeId,
    cluster: &Cluster,
    rec: &Shared,
    seed: u64,
) -> Option<Applied> {
    let handle = Handle::current();
    let applied = match f.kind {
        FaultKind::Kill => {
            handle.kill(id);
            cluster.forget_control(id);
            cluster.down.lock().unwrap().insert(id);
            Applied::Restart(id, name, "kill")
        }
        FaultKind::Crash => {
            // The process dies, the operating system does not: unsynced writes survive.
            madsim::plugin::simulator::<SimDisk>().keep_page_cache_on_next_kill(id);
            handle.kill(id);
            cluster.forget_control(id);
            cluster.down.lock().unwrap().insert(id);
            Applied::Restart(id, name, "crash")
        }
        FaultKind::Stop => {
            stop_cleanly(f, &name, id, cluster, rec).await?;
            // Then the power goes: only what the broker synced itself survives, so a clean
            // shutdown that left anything unsynced loses acknowledged records here.
            handle.kill(id);
            cluster.forget_control(id);
            cluster.down.lock().unwrap().insert(id);
            Applied::Restart(id, name, "stop")
        }
        FaultKind::DiskTornWrite => {
            cluster.down.lock().unwrap().insert(id);
            // Part of each file's unsynced tail reaches the platter, then power is lost:
            // a clean cut, or a cut followed by zeros or garbage where the size reached
            // the disk but the data did not, or the whole tail with one byte garbled (a
            // complete batch with a bad CRC).
            let mut rng = PlanRng::new(seed ^ f.at.as_nanos() as u64);
            madsim::plugin::simulator::<SimDisk>()
                .disk(id)
                .with_disk(|d| d.crash_torn(&mut |_, unsynced| torn_tail(&mut rng, unsynced)));
            handle.kill(id);
            cluster.forget_control(id);
            Applied::Restart(id, name, "disk-torn-write")
        }
        _ => unreachable!("{} does not power a node off", f.kind.name()),
    };
    Some(applied)
}

/// SIGTERM: the broker closes its logs (synced, recovery points at their ends, producer
/// state saved), then its process ends. None when `name` is not a running broker.
async fn stop_cleanly(
    f: &PlannedFault,
    name: &str,
    id: NodeId,
    cluster: &Cluster,
    rec: &Shared,
) -> Option<()> {
    let control = cluster
        .controls
        .get(&id)
        .and_then(|c| c.lock().unwrap().clone());
    let Some(control) = control else {
        let what = format!("{name} is not a running broker");
        event(rec, "fault-skipped", f.kind.name(), &what, f.source);
        return None;
    };
    control.request_shutdown();
    // A paused or wedged broker never finishes: like an init system, give up after a
    // bound and kill it anyway.
    for _ in 0..STOP_WAIT_POLLS_MAX {
        if control.is_shut_down() {
            break;
        }
        madsim::time::sleep(STOP_WAIT_POLL).await;
    }
    if !control.is_shut_down() {
        event(
            rec,
            "fault-note",
            "stop",
            &format!("{name} did not finish shutting down; killed"),
            f.source,
        );
    }
    Some(())
}

/// A partition (two groups, one way or both) or a clog (one link): every link between the
/// groups, as they resolve now, is cut.
async fn cut_links(f: &PlannedFault, cluster: &Cluster, rec: &Shared) -> Option<Applied> {
    let groups = if f.kind == FaultKind::Clog {
        vec![vec![f.from.clone()?], vec![f.to.clone()?]]
    } else {
        f.groups.clone()
    };
    let mut groups = resolve_groups(&groups, cluster).await;
    let (b, a) = (groups.pop()?, groups.pop()?);
    if a.is_empty() || b.is_empty() {
        // A role named nobody now (no leader, no follower): nothing to cut.
        let what = format!(
            "{:?} | {:?}: a group names no node now",
            f.groups.first(),
            f.groups.get(1)
        );
        event(rec, "fault-skipped", f.kind.name(), &what, f.source);
        return None;
    }
    let both_ways = f.kind == FaultKind::Partition && !f.one_way;
    let mut links = Vec::new();
    for x in &a {
        for y in &b {
            let (Some(x), Some(y)) = (cluster.id(x), cluster.id(y)) else {
                continue;
            };
            links.push((x, y));
            if both_ways {
                links.push((y, x));
            }
        }
    }
    let net = NetSim::current();
    for (x, y) in &links {
        net.clog_link(*x, *y);
    }
    let what = format!(
        "{a:?} -> {b:?}{}",
        if both_ways { " (both ways)" } else { "" }
    );
    event(rec, "fault-start", f.kind.name(), &what, f.source);
    Some(Applied::Unclog(links, what))
}

/// Latency on one link. madsim has one latency for the whole network. A link of its own is
/// slowed by shutting it for `latency` (+ up to `jitter`) and opening it for as long, over
/// and over: a message sent while it is shut waits for a retry that lands while it is open
/// (madsim retries with backoff), from a few to about twice `latency` milliseconds; one
/// sent while it is open goes through as usual.
async fn slow_link(
    f: &PlannedFault,
    cluster: &Cluster,
    rec: &Shared,
    seed: u64,
) -> Option<Applied> {
    let (Some((_, a)), Some((_, b))) = (
        resolve_node(f.from.as_deref()?, cluster).await,
        resolve_node(f.to.as_deref()?, cluster).await,
    ) else {
        return None;
    };
    let active = Arc::new(AtomicBool::new(true));
    let still = active.clone();
    let (latency, jitter) = (f.latency, f.jitter);
    let mut rng = PlanRng::new(seed ^ f.at.as_nanos() as u64 ^ 0x1a7e);
    madsim::task::spawn(async move {
        let net = NetSim::current();
        while still.load(Ordering::SeqCst) {
            net.clog_link(a, b);
            let hold = latency + Duration::from_micros(rng.below(jitter.as_micros() as u64 + 1));
            sleep(hold).await;
            net.unclog_link(a, b);
            // Open as long as it was shut: madsim retries a clogged message with
            // exponential backoff, so a short opening would mostly be missed.
            sleep(hold).await;
        }
    });
    let what = format!(
        "{} -> {}: +{:?} (+ up to {:?})",
        f.from.as_deref().unwrap_or_default(),
        f.to.as_deref().unwrap_or_default(),
        f.latency,
        f.jitter
    );
    event(rec, "fault-start", f.kind.name(), &what, f.source);
    Some(Applied::LinkLatency { active, a, b, what })
}

/// Every message on the network takes `latency` (+ up to `jitter`).
fn network_latency(f: &PlannedFault, rec: &Shared) -> Applied {
    let (low, high) = (f.latency, f.latency + f.jitter + Duration::from_micros(1));
    NetSim::current().update_config(|c| c.send_latency = low..high);
    let what = format!("{:?}..{:?}", low, f.latency + f.jitter);
    event(rec, "fault-start", f.kind.name(), &what, f.source);
    Applied::Latency(what)
}

/// Every message on the network is lost with probability `rate`.
fn loss(f: &PlannedFault, rec: &Shared) -> Applied {
    let rate = f.rate;
    NetSim::current().update_config(|c| c.packet_loss_rate = rate);
    let what = format!("{:.0}% of messages", rate * 100.0);
    event(rec, "fault-start", f.kind.name(), &what, f.source);
    Applied::Loss(what)
}

/// Every fsync of the node's disk takes `latency`.
fn slow_fsync(f: &PlannedFault, (name, id): (String, NodeId), rec: &Shared) -> Applied {
    let latency = f.latency;
    madsim::plugin::simulator::<SimDisk>()
        .disk(id)
        .with_disk(|d| d.set_sync_delay(latency));
    let what = format!("{name}: every fsync takes {latency:?}");
    event(rec, "fault-start", f.kind.name(), &what, f.source);
    Applied::SlowFsync(id, name)
}

/// Flip one byte of synced data in a segment of the node's disk, chosen from the seed.
fn corrupt_disk(
    f: &PlannedFault,
    (name, id): (String, NodeId),
    rec: &Shared,
    seed: u64,
) -> Applied {
    let disk = madsim::plugin::simulator::<SimDisk>().disk(id);
    let mut rng = PlanRng::new(seed ^ f.at.as_nanos() as u64 ^ 0xc0de);
    let detail = disk.with_disk(|d| {
        let segments: Vec<std::path::PathBuf> = d
            .file_paths()
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        let candidates: Vec<(std::path::PathBuf, usize)> = segments
            .into_iter()
            .filter_map(|p| {
                d.durable_bytes(&p)
                    .filter(|b| !b.is_empty())
                    .map(|b| (p, b.len()))
            })
            .collect();
        if candidates.is_empty() {
            return "no synced segment to corrupt".to_string();
        }
        let (path, len) = &candidates[rng.below(candidates.len() as u64) as usize];
        let offset = rng.below(*len as u64);
        let _ = d.corrupt_byte(path, offset);
        format!("{} byte {offset}", path.display())
    });
    event(
        rec,
        "fault-start",
        f.kind.name(),
        &format!("{name}: {detail}"),
        f.source,
    );
    Applied::Nothing
}

/// Clock skew (the offset becomes `offset_ms` until healed) or jump (it moves by
/// `offset_ms` for good). None when the node has no clock the harness keeps.
fn move_clock(
    f: &PlannedFault,
    (name, id): (String, NodeId),
    cluster: &Cluster,
    rec: &Shared,
) -> Option<Applied> {
    let clock = cluster.clocks.get(&name)?;
    let before = clock.load(Ordering::SeqCst);
    let after = if f.kind == FaultKind::ClockSkew {
        f.offset_ms
    } else {
        before + f.offset_ms
    };
    set_clock(&name, id, after, cluster);
    let what = format!("{name}: clock offset {before} ms -> {after} ms");
    event(rec, "fault-start", f.kind.name(), &what, f.source);
    Some(if f.kind == FaultKind::ClockSkew {
        Applied::Clock {
            name,
            id,
            offset_ms: before,
        }
    } else {
        Applied::Nothing
    })
}

/// Set a node's clock offset: remembered by the harness (restarts keep it) and applied to
/// a running broker or controller at once.
fn set_clock(name: &str, id: NodeId, offset_ms: i64, cluster: &Cluster) {
    if let Some(clock) = cluster.clocks.get(name) {
        clock.store(offset_ms, Ordering::SeqCst);
    }
    if let Some(control) = cluster
        .controls
        .get(&id)
        .and_then(|c| c.lock().unwrap().clone())
    {
        control.set_clock_offset_ms(offset_ms);
    }
    if let Some(control) = cluster
        .controllers
        .iter()
        .find(|(_, c, _)| *c == id)
        .and_then(|(_, _, c)| c.lock().unwrap().clone())
    {
        control.set_clock_offset_ms(offset_ms);
    }
}

/// Undo what `apply` did, and say so on the timeline.
fn heal(applied: &Applied, rec: &Shared, cluster: &Cluster) {
    let handle = Handle::current();
    let net = NetSim::current();
    match applied {
        Applied::Restart(id, name, kind) => {
            cluster.restart(&handle, *id);
            // Torn writes kept their old event name ("kill") so old traces hash the same.
            let kind = match *kind {
                "crash" | "stop" => *kind,
                _ => "kill",
            };
            event(rec, "fault-end", kind, name, "heal");
        }
        Applied::Resume(id, name) => {
            handle.resume(*id);
            event(rec, "fault-end", "pause", name, "heal");
        }
        Applied::Unclog(links, what) => {
            for (x, y) in links {
                net.unclog_link(*x, *y);
            }
            event(rec, "fault-end", "partition", what, "heal");
        }
        Applied::UnclogNode(id, name) => {
            net.unclog_node(*id);
            event(rec, "fault-end", "isolate", name, "heal");
        }
        Applied::Latency(what) => {
            net.update_config(|c| c.send_latency = madsim::net::Config::default().send_latency);
            event(rec, "fault-end", "latency", what, "heal");
        }
        Applied::LinkLatency { active, a, b, what } => {
            active.store(false, Ordering::SeqCst);
            net.unclog_link(*a, *b);
            event(rec, "fault-end", "latency", what, "heal");
        }
        Applied::SlowFsync(id, name) => {
            madsim::plugin::simulator::<SimDisk>()
                .disk(*id)
                .with_disk(|d| d.set_sync_delay(Duration::ZERO));
            event(rec, "fault-end", "disk-slow-fsync", name, "heal");
        }
        Applied::DiskSpace(id, name) => {
            madsim::plugin::simulator::<SimDisk>()
                .disk(*id)
                .with_disk(|d| d.set_capacity_bytes(None));
            // A log that failed a write stays fenced until reopened, as a Kafka log dir
            // goes offline: healing the disk means restarting the broker.
            if !cluster.down.lock().unwrap().contains(id) {
                handle.kill(*id);
                handle.restart(*id);
            }
            event(rec, "fault-end", "disk-full", name, "heal");
        }
        Applied::Loss(what) => {
            net.update_config(|c| c.packet_loss_rate = 0.0);
            event(rec, "fault-end", "loss", what, "heal");
        }
        Applied::Clock {
            name,
            id,
            offset_ms,
        } => {
            set_clock(name, *id, *offset_ms, cluster);
            event(
                rec,
                "fault-end",
                "clock-skew",
                &format!("{name}: clock offset back to {offset_ms} ms"),
                "heal",
            );
        }
        Applied::Nothing => {}
    }
}

/// How one file's unsynced tail of `unsynced` bytes tears (see `MemDisk::crash_torn`).
fn torn_tail(rng: &mut PlanRng, unsynced: usize) -> TornTail {
    let cut = rng.below(unsynced as u64 + 1) as usize;
    let rest = unsynced - cut;
    match rng.below(4) {
        0 => TornTail::cut(cut),
        1 => TornTail {
            kept: cut,
            flip: None,
            fill: Fill::Zeros(rng.below(rest as u64 + 1) as usize),
        },
        2 => TornTail {
            kept: cut,
            flip: None,
            fill: Fill::Garbage {
                len: rng.below(rest as u64 + 1) as usize,
                seed: rng.below(u64::MAX),
            },
        },
        _ => TornTail {
            kept: unsynced,
            flip: (unsynced > 0).then(|| rng.below(unsynced as u64) as usize),
            fill: Fill::Nothing,
        },
    }
}
