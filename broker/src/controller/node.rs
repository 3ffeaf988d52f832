//! A controller node: the async shell around one Raft member (`crate::raft`) and, while it
//! is the active controller, the controller's decisions (`super::logic`).
//!
//! One task owns the Raft core, the metadata images and the decisions; connection tasks
//! feed it messages and requests through a channel and wait for its answers. After every
//! input the core is drained in the order the Raft contract demands: persist (and sync),
//! then send, then apply what committed.
//!
//! Two images: `committed` is built only from committed entries and is what brokers get;
//! `working` (on the active controller only) is `committed` plus every record proposed and
//! not yet committed, so that consecutive decisions build on each other. A node becomes
//! active only once the entry that opened its term commits, which makes every earlier
//! entry committed too, so `working` starts as an exact copy of `committed`.
//!
//! Timers use the monotonic clock (as Kafka's do); clock-skew faults move only the wall
//! clock, which this node does not read for decisions.

use super::logic::{
    Controller, ControllerConfig, MetadataImage, MetadataRecord, BROKER_SESSION_TIMEOUT_MS_DEFAULT,
};
use super::rpc::{read_message, write_message, Request, Response};
use super::store::QuorumStore;
use crate::mix::{fnv1a, SplitMix64};
use crate::observe::{self, Observation};
use crate::raft::{self, EntryKind, Envelope, Raft, Role};
use crate::storage::Storage;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio::task::JoinHandle;

/// How long a send to a peer controller may take before the connection is dropped (a
/// clogged simulated stream never fails by itself).
const PEER_WRITE_TIMEOUT: Duration = Duration::from_millis(500);
/// After a failed connect to a peer, messages to it are dropped for this long (Raft
/// resends what matters).
const PEER_RECONNECT_BACKOFF: Duration = Duration::from_millis(200);
/// The core wakes at least this often to run the controller's timers.
const CONTROLLER_TICK: Duration = Duration::from_millis(250);
/// Events waiting for the core: Raft messages beyond this are dropped (Raft resends what
/// matters); a request waits for room, and each connection has one request at a time, so
/// requests queued are bounded by `max.connections`.
const EVENTS_QUEUED_MAX: usize = 4_096;
/// Raft messages waiting to be written to one peer; beyond this they are dropped.
const PEER_MESSAGES_QUEUED_MAX: usize = 1_024;

/// Everything a controller node needs to start. Settings by Kafka name via `apply_one`.
#[derive(Debug, Clone)]
pub struct ControllerNodeConfig {
    /// `node.id`
    pub node_id: i32,
    /// `listeners`
    pub listen: SocketAddr,
    /// `controller.quorum.voters`
    pub voters: Vec<(i32, SocketAddr)>,
    /// `metadata.log.dir`
    pub data_dir: PathBuf,
    /// The active controller's decisions: `broker.session.timeout.ms`,
    /// `default.replication.factor`, `num.partitions`, `unclean.leader.election.enable`,
    /// `auto.leader.rebalance.enable`, `leader.imbalance.check.interval.seconds`.
    pub controller: ControllerConfig,
    /// `controller.quorum.election.timeout.ms`
    pub election_timeout_ms: u64,
    /// `max.connections`: connections beyond it are closed at once (brokers, tools and
    /// peers together).
    pub connections_max: usize,
}

impl ControllerNodeConfig {
    pub fn new(
        node_id: i32,
        listen: SocketAddr,
        voters: Vec<(i32, SocketAddr)>,
        data_dir: PathBuf,
    ) -> ControllerNodeConfig {
        ControllerNodeConfig {
            node_id,
            listen,
            voters,
            data_dir,
            controller: ControllerConfig::default(),
            election_timeout_ms: raft::ELECTION_TIMEOUT_MS_DEFAULT,
            connections_max: crate::config::CONNECTIONS_MAX_DEFAULT,
        }
    }

    /// Apply one setting by its Kafka name.
    pub fn apply_one(&mut self, key: &str, value: &str) -> Result<(), String> {
        use crate::config::{parse_bool, parse_num, parse_voters};
        match key {
            "node.id" => self.node_id = parse_num(value, 0, i32::MAX as i64)? as i32,
            "listeners" => {
                let mut probe = crate::config::BrokerConfig::default();
                probe.apply_one("listeners", value)?;
                self.listen = probe.listen;
            }
            "controller.quorum.voters" => self.voters = parse_voters(value)?,
            "max.connections" => self.connections_max = parse_num(value, 1, 1_000_000)? as usize,
            "metadata.log.dir" | "log.dirs" | "log.dir" => self.data_dir = PathBuf::from(value),
            "broker.session.timeout.ms" => {
                self.controller.session_timeout_ms = parse_num(value, 1, i32::MAX as i64)?
            }
            "default.replication.factor" => {
                self.controller.default_replication_factor =
                    parse_num(value, 1, i16::MAX as i64)? as i16
            }
            "num.partitions" => {
                self.controller.num_partitions = parse_num(value, 1, 10_000)? as i32
            }
            "unclean.leader.election.enable" => {
                self.controller.unclean_leader_election_enable = parse_bool(value)?
            }
            "auto.leader.rebalance.enable" => {
                self.controller.auto_leader_rebalance_enable = parse_bool(value)?
            }
            "leader.imbalance.check.interval.seconds" => {
                self.controller.leader_imbalance_check_interval_ms =
                    parse_num(value, 1, i32::MAX as i64)? * 1_000
            }
            "controller.quorum.election.timeout.ms" => {
                self.election_timeout_ms = parse_num(value, 10, i32::MAX as i64)? as u64
            }
            other => return Err(format!("unknown controller setting {other:?}")),
        }
        Ok(())
    }

    /// Check what the node relies on before it starts.
    pub fn validate(&self) -> Result<(), String> {
        if !self.voters.iter().any(|(id, _)| *id == self.node_id) {
            return Err(format!(
                "node.id {} is not in controller.quorum.voters",
                self.node_id
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerStartError {
    #[error("invalid controller config: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("metadata log in {dir}: {message}")]
    Store { dir: PathBuf, message: String },
}

enum Event {
    Raft(Envelope),
    Request(Request, oneshot::Sender<Response>),
}

struct Shared {
    node_id: i32,
    active: AtomicBool,
    /// The committed image, for metadata fetches served by connection tasks.
    image: std::sync::Mutex<Arc<MetadataImage>>,
    image_changed: Notify,
    term: AtomicU64,
    /// Added to the node's monotonic clock: the lab's clock faults (see `Core::now_ms`).
    clock_offset_ms: AtomicI64,
}

/// A running controller node.
pub struct ControllerNode {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

/// Fault injection and inspection from outside the node (the lab).
#[derive(Clone)]
pub struct ControllerControl {
    shared: Arc<Shared>,
}

impl ControllerNode {
    /// Recover the metadata log, bind the listener and start the quorum member.
    pub async fn start(
        config: ControllerNodeConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<ControllerNode, ControllerStartError> {
        config.validate().map_err(ControllerStartError::Config)?;
        let (store, persisted) =
            QuorumStore::open(storage, config.data_dir.clone()).map_err(|message| {
                ControllerStartError::Store {
                    dir: config.data_dir.clone(),
                    message,
                }
            })?;
        let start = Instant::now();
        let mut rng = SplitMix64::new(wall_nanos() ^ ((config.node_id as u64) << 40));
        let mut raft_config = raft::Config::new(
            config.node_id,
            config.voters.iter().map(|(id, _)| *id).collect(),
        );
        raft_config.election_timeout_ms = config.election_timeout_ms;
        raft_config.election_jitter_ms = config.election_timeout_ms;
        let raft = Raft::new(raft_config, persisted, 1, rng.next_u64())
            .map_err(|e| ControllerStartError::Config(e.to_string()))?;
        let listener = TcpListener::bind(config.listen).await.map_err(|source| {
            ControllerStartError::Bind {
                addr: config.listen,
                source,
            }
        })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ControllerStartError::Bind {
                addr: config.listen,
                source,
            })?;
        let shared = Arc::new(Shared {
            node_id: config.node_id,
            active: AtomicBool::new(false),
            image: std::sync::Mutex::new(Arc::new(MetadataImage::default())),
            image_changed: Notify::new(),
            term: AtomicU64::new(raft.term()),
            clock_offset_ms: AtomicI64::new(0),
        });
        let (events_tx, events_rx) = mpsc::channel(EVENTS_QUEUED_MAX);
        let mut tasks = Vec::new();
        let mut peers = BTreeMap::new();
        for (id, addr) in &config.voters {
            if *id == config.node_id {
                continue;
            }
            let (tx, rx) = mpsc::channel(PEER_MESSAGES_QUEUED_MAX);
            peers.insert(*id, tx);
            tasks.push(tokio::spawn(peer_loop(*addr, rx)));
        }
        let core = Core {
            raft,
            store,
            controller: Controller::new(config.controller.clone()),
            controller_config: config.controller.clone(),
            committed: MetadataImage::default(),
            working: None,
            ready_at: None,
            waiters: Vec::new(),
            peers,
            rng,
            start,
            last_now_ms: 0,
            shared: shared.clone(),
            was_active: false,
        };
        tracing::info!(node_id = config.node_id, %local_addr, "controller listening");
        tasks.push(tokio::spawn(core.run(events_rx)));
        tasks.push(tokio::spawn(accept_loop(
            listener,
            events_tx,
            shared.clone(),
            Arc::new(Semaphore::new(config.connections_max)),
        )));
        Ok(ControllerNode {
            shared,
            local_addr,
            tasks,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn control(&self) -> ControllerControl {
        ControllerControl {
            shared: self.shared.clone(),
        }
    }

    /// Stop at once (the metadata log is synced on every write, so nothing is lost).
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

impl ControllerControl {
    /// Whether this node is the active controller now.
    pub fn is_active(&self) -> bool {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// The node's current Raft term (Kafka: the controller epoch).
    pub fn term(&self) -> u64 {
        self.shared.term.load(Ordering::SeqCst)
    }

    pub fn node_id(&self) -> i32 {
        self.shared.node_id
    }

    /// Move the node's clock by `offset_ms` from now on. Its timers (elections, broker
    /// sessions, the imbalance check) run on a monotonic clock, as Kafka's do: a step
    /// forward makes them fire early; a step back holds the clock until real time catches
    /// up (a monotonic clock never goes back), so they fire late.
    pub fn set_clock_offset_ms(&self, offset_ms: i64) {
        self.shared
            .clock_offset_ms
            .store(offset_ms, Ordering::Relaxed);
    }
}

/// A request waiting for the entry that carries its records to commit.
struct Waiter {
    index: u64,
    term: u64,
    reply: oneshot::Sender<Response>,
    response: Response,
}

struct Core {
    raft: Raft,
    store: QuorumStore,
    controller: Controller,
    controller_config: ControllerConfig,
    committed: MetadataImage,
    /// Committed plus proposed records: Some only while active and ready.
    working: Option<MetadataImage>,
    /// While leader but not yet ready: the index of the entry that opened the term.
    ready_at: Option<u64>,
    waiters: Vec<Waiter>,
    peers: BTreeMap<i32, mpsc::Sender<Envelope>>,
    rng: SplitMix64,
    start: Instant,
    /// The last time `now_ms` gave: it never goes back.
    last_now_ms: u64,
    shared: Arc<Shared>,
    /// Whether waiters last heard this node was active (they re-check on a change).
    was_active: bool,
}

impl Core {
    async fn run(mut self, mut events: mpsc::Receiver<Event>) {
        loop {
            let now = self.now_ms();
            let mut deadline = self.raft.tick_deadline_ms();
            if self.working.is_some() {
                deadline = deadline.min(now + CONTROLLER_TICK.as_millis() as u64);
                if let Some(at) = self.controller.next_deadline_ms() {
                    deadline = deadline.min(at.max(0) as u64);
                }
            }
            let wait = Duration::from_millis(deadline.saturating_sub(now));
            tokio::select! {
                biased;
                event = events.recv() => match event {
                    Some(Event::Raft(envelope)) => {
                        let (now, random) = (self.now_ms(), self.rng.next_u64());
                        self.raft.handle(envelope, now, random);
                    }
                    Some(Event::Request(request, reply)) => self.request(request, reply),
                    None => return,
                },
                _ = tokio::time::sleep(wait) => self.tick(),
            }
            self.drain();
        }
    }

    /// Milliseconds on this node's monotonic clock, moved by any injected clock offset and
    /// never going back. Never zero: the Raft core treats time 0 as "never".
    fn now_ms(&mut self) -> u64 {
        let offset = self.shared.clock_offset_ms.load(Ordering::Relaxed);
        let now = (self.start.elapsed().as_millis() as i64).saturating_add(offset);
        self.last_now_ms = self.last_now_ms.max(now.max(0) as u64 + 1);
        self.last_now_ms
    }

    fn tick(&mut self) {
        let (now, random) = (self.now_ms(), self.rng.next_u64());
        self.raft.tick(now, random);
        if let Some(working) = &self.working {
            let records = self.controller.tick(working, now as i64);
            if !records.is_empty() {
                let _ = self.propose(records);
            }
        }
    }

    /// Append records to the metadata log; on success they are applied to the working
    /// image at once and the index is returned.
    fn propose(&mut self, records: Vec<MetadataRecord>) -> Result<u64, Response> {
        let payload = serde_json::to_vec(&records).expect("metadata records serialize");
        match self.raft.propose(payload) {
            Ok(index) => {
                let working = self.working.as_mut().expect("proposals only while active");
                for record in &records {
                    working.apply(index, record);
                }
                Ok(index)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metadata proposal refused");
                Err(Response::NotController {
                    leader_hint: self.raft.leader(),
                })
            }
        }
    }

    fn request(&mut self, request: Request, reply: oneshot::Sender<Response>) {
        let now = self.now_ms() as i64;
        if let Request::Raft(envelope) = request {
            let random = self.rng.next_u64();
            self.raft.handle(envelope, now as u64, random);
            return;
        }
        if let Request::Describe = request {
            let _ = reply.send(Response::Describe {
                node: self.shared.node_id,
                term: self.raft.term(),
                leader: self.raft.leader(),
                active: self.working.is_some(),
                image: self.committed.clone(),
            });
            return;
        }
        let Some(working) = &self.working else {
            let _ = reply.send(Response::NotController {
                leader_hint: self.raft.leader(),
            });
            return;
        };
        // Decide against the working image; the records to propose come back.
        let (records, response) = match request {
            Request::Heartbeat(heartbeat) => {
                let (answer, records) = self.controller.heartbeat(working, &heartbeat, now);
                let image = (self.committed.offset > heartbeat.metadata_offset)
                    .then(|| self.committed.clone());
                let response = Response::Heartbeat {
                    fenced: answer.fenced,
                    image,
                };
                // A heartbeat is answered at once; what it changed reaches the broker
                // through a later image.
                if !records.is_empty() {
                    let _ = self.propose(records);
                }
                let _ = reply.send(response);
                return;
            }
            Request::AlterPartition(alter) => {
                match self.controller.alter_partition(working, &alter) {
                    Ok((state, records)) => (records, Response::AlterPartition(Ok(state))),
                    Err(e) => {
                        let _ = reply.send(Response::AlterPartition(Err(e)));
                        return;
                    }
                }
            }
            Request::CreateTopics(topics) => {
                let ids: Vec<u128> = topics
                    .iter()
                    .map(|_| {
                        let id =
                            ((self.rng.next_u64() as u128) << 64) | self.rng.next_u64() as u128;
                        id.max(1)
                    })
                    .collect();
                let results = self.controller.create_topics(working, &topics, &ids);
                let mut records = Vec::new();
                let mut answers = Vec::new();
                for (name, result) in results {
                    match result {
                        Ok(mut r) => {
                            records.append(&mut r);
                            answers.push((name, Ok(())));
                        }
                        Err(e) => answers.push((name, Err(e))),
                    }
                }
                (records, Response::Topics(answers))
            }
            Request::DeleteTopics(names) => {
                let mut records = Vec::new();
                let mut answers = Vec::new();
                for name in names {
                    match self.controller.delete_topic(working, &name) {
                        Ok(mut r) => {
                            records.append(&mut r);
                            answers.push((name, Ok(())));
                        }
                        Err(e) => answers.push((name, Err(e))),
                    }
                }
                (records, Response::Topics(answers))
            }
            Request::Raft(_) | Request::Describe => unreachable!("handled above"),
            Request::FetchMetadata { .. } => {
                // Served by connection tasks; answer plainly if one arrives here.
                let _ = reply.send(Response::Metadata(Some(self.committed.clone())));
                return;
            }
        };
        if records.is_empty() {
            let _ = reply.send(response);
            return;
        }
        match self.propose(records) {
            Ok(index) => self.waiters.push(Waiter {
                index,
                term: self.raft.term(),
                reply,
                response,
            }),
            Err(refused) => {
                let _ = reply.send(refused);
            }
        }
    }

    /// The Raft contract: persist, then send, then apply.
    fn drain(&mut self) {
        while let Some(request) = self.raft.poll_persist() {
            if let Err(e) = self.store.persist(&request) {
                // The promise behind a vote or a fetch cannot be kept: stop acting at all,
                // as Kafka halts a controller whose metadata log fails.
                tracing::error!(error = %e, "metadata log write failed; controller halts");
                panic!("metadata log write failed: {e}");
            }
        }
        for envelope in self.raft.poll_messages() {
            if let Some(peer) = self.peers.get(&envelope.to) {
                // A full queue means the peer is unreachable or slow: drop, Raft resends.
                let _ = peer.try_send(envelope);
            }
        }
        for entry in self.raft.poll_committed() {
            observe::report(Observation::MetadataCommitted {
                node: self.shared.node_id,
                index: entry.index,
                term: entry.term,
                digest: fnv1a(&entry.payload),
            });
            if entry.kind == EntryKind::Command {
                match serde_json::from_slice::<Vec<MetadataRecord>>(&entry.payload) {
                    Ok(records) => {
                        for record in &records {
                            self.committed.apply(entry.index, record);
                        }
                    }
                    Err(e) => {
                        tracing::error!(index = entry.index, error = %e, "undecodable metadata entry skipped")
                    }
                }
            }
            self.committed.offset = entry.index;
            // Answer the requests whose entry this is, or whose entry was replaced.
            let mut kept = Vec::new();
            for waiter in std::mem::take(&mut self.waiters) {
                if waiter.index > entry.index {
                    kept.push(waiter);
                } else if waiter.index == entry.index && waiter.term == entry.term {
                    let _ = waiter.reply.send(waiter.response);
                } else {
                    let _ = waiter.reply.send(Response::NotController {
                        leader_hint: self.raft.leader(),
                    });
                }
            }
            self.waiters = kept;
        }
        self.shared.term.store(self.raft.term(), Ordering::SeqCst);
        self.update_role();
        let published = self.shared.image.lock().expect("image lock").offset;
        if published != self.committed.offset
            || self.shared.active.load(Ordering::SeqCst) != self.was_active
        {
            *self.shared.image.lock().expect("image lock") = Arc::new(self.committed.clone());
            self.was_active = self.shared.active.load(Ordering::SeqCst);
            self.shared.image_changed.notify_waiters();
        }
    }

    fn update_role(&mut self) {
        if self.raft.role() != Role::Leader {
            if self.working.is_some() || self.ready_at.is_some() {
                tracing::info!(
                    node_id = self.shared.node_id,
                    "no longer the active controller"
                );
            }
            self.working = None;
            self.ready_at = None;
            self.shared.active.store(false, Ordering::SeqCst);
            for waiter in self.waiters.drain(..) {
                let _ = waiter.reply.send(Response::NotController {
                    leader_hint: self.raft.leader(),
                });
            }
            return;
        }
        if self.working.is_some() {
            return;
        }
        let ready_at = *self.ready_at.get_or_insert(self.raft.last_index());
        if self.raft.commit_index() >= ready_at && self.committed.offset >= ready_at {
            let now = self.now_ms() as i64;
            self.controller = Controller::new(self.controller_config.clone());
            self.controller.activate(&self.committed, now);
            self.working = Some(self.committed.clone());
            self.shared.active.store(true, Ordering::SeqCst);
            observe::report(Observation::ControllerActive {
                node: self.shared.node_id,
                term: self.raft.term(),
            });
            tracing::info!(
                node_id = self.shared.node_id,
                term = self.raft.term(),
                "active controller"
            );
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    events: mpsc::Sender<Event>,
    shared: Arc<Shared>,
    connections: Arc<Semaphore>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "max.connections reached, closing new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let events = events.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(stream, events, &shared).await {
                tracing::debug!(%peer, error = %e, "controller connection closed");
            }
            drop(permit);
        });
    }
}

async fn serve(
    stream: TcpStream,
    events: mpsc::Sender<Event>,
    shared: &Shared,
) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    while let Some(request) = read_message::<_, Request>(&mut stream).await? {
        if let Request::Raft(envelope) = request {
            if envelope.to == shared.node_id {
                match events.try_send(Event::Raft(envelope)) {
                    // Full: the core is behind; Raft resends what matters.
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return Ok(()),
                }
            }
            continue;
        }
        if let Request::FetchMetadata { offset, wait_ms } = request {
            let response = fetch_metadata(shared, offset, wait_ms).await;
            write_message(stream.get_mut(), &response).await?;
            continue;
        }
        let (tx, rx) = oneshot::channel();
        if events.send(Event::Request(request, tx)).await.is_err() {
            return Ok(());
        }
        let Ok(response) = rx.await else {
            return Ok(());
        };
        write_message(stream.get_mut(), &response).await?;
    }
    Ok(())
}

/// A broker's metadata long poll, answered from the committed image.
async fn fetch_metadata(shared: &Shared, offset: u64, wait_ms: u64) -> Response {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms.min(30_000));
    loop {
        let changed = shared.image_changed.notified();
        if !shared.active.load(Ordering::SeqCst) {
            return Response::NotController { leader_hint: None };
        }
        let image = shared.image.lock().expect("image lock").clone();
        if image.offset > offset {
            return Response::Metadata(Some((*image).clone()));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Response::Metadata(None);
        }
        let _ = tokio::time::timeout(deadline - now, changed).await;
    }
}

/// Carries Raft messages to one peer over one connection, reconnecting as needed.
/// Messages that cannot be sent are dropped: Raft retries what matters.
async fn peer_loop(addr: SocketAddr, mut messages: mpsc::Receiver<Envelope>) {
    let mut connection: Option<TcpStream> = None;
    let mut retry_at: Option<tokio::time::Instant> = None;
    while let Some(envelope) = messages.recv().await {
        if connection.is_none() {
            if retry_at.is_some_and(|at| tokio::time::Instant::now() < at) {
                continue;
            }
            match tokio::time::timeout(PEER_WRITE_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    connection = Some(stream);
                    retry_at = None;
                }
                _ => {
                    retry_at = Some(tokio::time::Instant::now() + PEER_RECONNECT_BACKOFF);
                    continue;
                }
            }
        }
        let stream = connection.as_mut().expect("connected above");
        let sent = tokio::time::timeout(
            PEER_WRITE_TIMEOUT,
            write_message(stream, &Request::Raft(envelope)),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            connection = None;
        }
    }
}

/// The session timeout every controller uses unless configured.
pub const SESSION_TIMEOUT_MS_DEFAULT: i64 = BROKER_SESSION_TIMEOUT_MS_DEFAULT;

fn wall_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
