//! The async shell around `BrokerState`: accepts connections, reads frames, runs the
//! request handlers and writes responses. It owns the clock and the sockets; everything
//! it decides is delegated to `state`.
//!
//! Runs unchanged on real tokio and under madsim (`--cfg madsim`): one task per
//! connection, no threads, no `JoinSet`, no `into_split`, a flush after every write.

mod cluster;

mod api;
mod group;

pub use group::{offsets_partition, OFFSETS_TOPIC};

pub use crate::state::ReplicaDigest;
use crate::wire::{read_frame, write_frame, FrameError};

use crate::config::BrokerConfig;
use crate::state::{BrokerState, StateError};
use crate::storage::Storage;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

/// How often `flush.ms` is checked.
const FLUSH_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Milliseconds since the Unix epoch from the runtime's clock (simulated under madsim).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// State shared by every connection of one broker node.
pub(crate) struct Shared {
    state: Mutex<BrokerState>,
    /// Woken after every append so parked fetches re-check (long poll).
    appended: Notify,
    config: BrokerConfig,
    advertised: (String, u16),
    /// True once the broker is shutting down.
    closing: AtomicBool,
    /// A clean shutdown asked for from outside the node (the lab's `stop` fault), and
    /// whether it has completed.
    shutdown_requested: Notify,
    shut_down: AtomicBool,
    /// Bumped to drop every open connection at once (the lab's connection-reset fault).
    resets: AtomicU64,
    /// Wakes every connection task when `closing` or `resets` change. A `Notify` rather
    /// than a `watch` channel: tokio's watch spreads waiters over shards picked by a
    /// thread-local RNG the simulator does not seed, which made wake-up order differ
    /// between runs of one seed.
    connection_signal: Notify,
    /// The disk, to learn what its syncs cost in simulated time (`take_sync_delay`).
    storage: Arc<dyn Storage>,
    /// Added to the runtime's clock: the lab's clock skew and jump faults. Zero otherwise.
    clock_offset_ms: AtomicI64,
    /// Wakes the task that sends ISR changes to the controller.
    alter_signal: Notify,
    /// Replica fetcher tasks by leader id, started as leaders appear.
    fetchers: Mutex<Vec<(i32, JoinHandle<()>)>>,
    /// The group coordinator of the `__consumer_offsets` partitions led here.
    groups: group::GroupService,
}

impl Shared {
    /// This node's wall clock in milliseconds: the runtime's clock plus any injected skew.
    fn now_ms(&self) -> i64 {
        now_ms() + self.clock_offset_ms.load(Ordering::Relaxed)
    }

    /// Wait out the simulated time the disk's recent syncs cost (zero on a real disk,
    /// where `sync` itself took it).
    async fn wait_for_sync_cost(&self) {
        let delay = self.storage.take_sync_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    fn reset_connections(&self) {
        self.resets.fetch_add(1, Ordering::SeqCst);
        self.connection_signal.notify_waiters();
    }

    fn close_connections(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.connection_signal.notify_waiters();
    }

    fn state(&self) -> MutexGuard<'_, BrokerState> {
        // A poisoned lock means a handler panicked mid-change: an invariant broke, and
        // continuing could serve corrupt state. Crash loudly instead.
        self.state.lock().expect("broker state lock poisoned")
    }
}

/// A running broker node.
pub struct Broker {
    shared: Arc<Shared>,
    local_addr: SocketAddr,

    tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] StateError),
}

impl Broker {
    /// Open the data directory, bind the listener and start serving in background tasks.
    pub async fn start(
        config: BrokerConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<Broker, StartError> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ ((config.node_id as u64) << 32);
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        // Connections are taken while the logs load (as Kafka does): ApiVersions is
        // answered at once, everything else waits until the broker is ready, rather than
        // clients being refused for as long as recovery takes.
        let gate = Arc::new(Gate {
            shared: OnceLock::new(),
            opened: Notify::new(),
            connections: Arc::new(Semaphore::new(config.connections_max)),
            frame_bytes_max: config.socket_request_max_bytes,
        });
        let accept = tokio::spawn(accept_loop(gate.clone(), listener));
        let state = match open_state(storage.clone(), config.clone(), seed).await {
            Ok(state) => state,
            Err(e) => {
                accept.abort();
                return Err(e.into());
            }
        };

        let shared = Arc::new(Shared {
            closing: AtomicBool::new(false),
            shutdown_requested: Notify::new(),
            shut_down: AtomicBool::new(false),
            resets: AtomicU64::new(0),
            connection_signal: Notify::new(),
            storage,
            clock_offset_ms: AtomicI64::new(0),
            alter_signal: Notify::new(),
            fetchers: Mutex::new(Vec::new()),
            groups: group::GroupService::new(&config, seed),
            state: Mutex::new(state),
            appended: Notify::new(),
            advertised: config.advertised_endpoint(local_addr),
            config,
        });
        tracing::info!(node_id = shared.config.node_id, %local_addr, data_dir = %shared.config.data_dir.display(), "broker listening");
        crate::observe::report(crate::observe::Observation::Started {
            node: format!("broker-{}", shared.config.node_id),
        });
        // Groups of an existing `__consumer_offsets` answer COORDINATOR_LOAD_IN_PROGRESS
        // from the first connection until a task has replayed them (in a cluster this
        // waits for the metadata that makes this broker a leader).
        shared.groups.reconcile(&shared);
        let _ = gate.shared.set(shared.clone());
        gate.opened.notify_waiters();
        let mut tasks = vec![
            accept,
            tokio::spawn(flush_loop(shared.clone())),
            tokio::spawn(group_loop(shared.clone())),
        ];
        if shared.config.is_clustered() {
            tasks.extend(cluster::spawn(&shared));
        }
        Ok(Broker {
            shared,
            local_addr,
            tasks,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Close every open client connection at once, as a network reset would; the
    /// listener stays up. A response being prepared when it happens is never sent.
    pub fn reset_connections(&self) {
        self.shared.reset_connections();
        tracing::info!("all connections reset");
    }

    /// A handle that can reset connections later (for a fault injector outside the node).
    pub fn control(&self) -> BrokerControl {
        BrokerControl {
            shared: self.shared.clone(),
        }
    }

    /// Sync every partition log.
    pub fn sync_all(&self) -> Result<(), StateError> {
        self.shared.state().sync_all()
    }

    fn stop_fetchers(&self) {
        let fetchers = std::mem::take(&mut *self.shared.fetchers.lock().expect("fetchers lock"));
        for (_, task) in fetchers {
            task.abort();
        }
    }

    /// Stop at once without syncing anything, as kill -9 would (for in-process tests).
    pub async fn kill(self) {
        self.shared.close_connections();
        self.stop_fetchers();
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Stop accepting, close every connection, sync every log and checkpoint what the
    /// next start would otherwise rebuild (clean shutdown).
    pub async fn shutdown(self) -> Result<(), StateError> {
        self.shared.close_connections();
        self.stop_fetchers();
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        let closed = self.shared.state().close();
        self.shared.shut_down.store(true, Ordering::SeqCst);
        closed
    }

    /// Resolves when a clean shutdown is requested through a `BrokerControl` (the node then
    /// calls `shutdown`, as it would on SIGTERM).
    pub async fn shutdown_requested(&self) {
        self.shared.shutdown_requested.notified().await;
    }
}

/// Fault injection from outside a broker node (the lab): reset its connections.
#[derive(Clone)]
pub struct BrokerControl {
    shared: Arc<Shared>,
}

impl BrokerControl {
    /// Skew this broker's clock: everything it timestamps or times (segment.ms,
    /// flush.ms) sees the runtime's clock plus `offset_ms`.
    pub fn set_clock_offset_ms(&self, offset_ms: i64) {
        self.shared
            .clock_offset_ms
            .store(offset_ms, Ordering::Relaxed);
    }

    pub fn reset_connections(&self) {
        self.shared.reset_connections();
    }

    /// Ask the node to shut down cleanly (it is waiting in `Broker::shutdown_requested`).
    pub fn request_shutdown(&self) {
        // notify_one: the permit is kept if the node is not waiting yet.
        self.shared.shutdown_requested.notify_one();
    }

    /// Whether a clean shutdown has completed (every log closed).
    pub fn is_shut_down(&self) -> bool {
        self.shared.shut_down.load(Ordering::SeqCst)
    }

    /// This broker's replica of a partition, for comparing replicas; None when it holds
    /// none.
    pub fn replica_digest(&self, topic: &str, partition: i32) -> Option<ReplicaDigest> {
        self.shared.state().replica_digest(topic, partition)
    }
}

/// Open the data directory. Recovery is blocking disk work: off the runtime's threads in
/// the real build, so connections are accepted meanwhile; inline in the simulator, whose
/// disk costs no wall time.
async fn open_state(
    storage: Arc<dyn Storage>,
    config: BrokerConfig,
    seed: u64,
) -> Result<BrokerState, StateError> {
    #[cfg(not(madsim))]
    {
        tokio::task::spawn_blocking(move || BrokerState::open(storage, config, now_ms(), seed))
            .await
            .expect("opening the broker state panicked")
    }
    #[cfg(madsim)]
    {
        BrokerState::open(storage, config, now_ms(), seed)
    }
}

/// What a new connection finds: the broker once its logs are loaded, the connection limit
/// from the start.
struct Gate {
    shared: OnceLock<Arc<Shared>>,
    /// Woken once `shared` is set.
    opened: Notify,
    connections: Arc<Semaphore>,
    frame_bytes_max: usize,
}

impl Gate {
    async fn ready(&self) -> Arc<Shared> {
        loop {
            let opened = self.opened.notified();
            if let Some(shared) = self.shared.get() {
                return shared.clone();
            }
            opened.await;
        }
    }
}

async fn accept_loop(gate: Arc<Gate>, listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                // Out of descriptors and the like: back off rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = gate.connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "max.connections reached, closing new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let gate = gate.clone();
        tokio::spawn(async move {
            let stream = BufReader::with_capacity(64 * 1024, stream);
            match gate.shared.get().cloned() {
                Some(shared) => serve_connection(&shared, stream, peer, None).await,
                None => serve_while_opening(&gate, stream, peer).await,
            }
            drop(permit);
        });
    }
}

/// A connection made while the logs load: ApiVersions answered, the first other request
/// held until the broker is ready and then served as usual.
async fn serve_while_opening(gate: &Gate, mut stream: BufReader<TcpStream>, peer: SocketAddr) {
    loop {
        let frame = match read_frame(&mut stream, gate.frame_bytes_max).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "closing connection");
                return;
            }
        };
        if gate.shared.get().is_none() {
            if let Some(answer) = api::answer_without_state(&frame) {
                match answer {
                    Ok(response) if write_frame(&mut stream, &response).await.is_ok() => continue,
                    Ok(_) => return,
                    Err(reason) => {
                        tracing::warn!(%peer, %reason, "closing connection");
                        return;
                    }
                }
            }
        }
        let shared = gate.ready().await;
        return serve_connection(&shared, stream, peer, Some(frame)).await;
    }
}

/// Serve requests in order until the peer closes, the request is malformed, or the broker
/// drops its connections; `pending` is a request already read.
async fn serve_connection(
    shared: &Shared,
    mut stream: BufReader<TcpStream>,
    peer: SocketAddr,
    mut pending: Option<Vec<u8>>,
) {
    let resets_at_start = shared.resets.load(Ordering::SeqCst);
    let dropped = || {
        shared.closing.load(Ordering::SeqCst)
            || shared.resets.load(Ordering::SeqCst) != resets_at_start
    };
    loop {
        // Register for the signal before checking, so a change in between is not missed.
        let signal = shared.connection_signal.notified();
        if dropped() {
            return;
        }
        let read = match pending.take() {
            Some(frame) => Ok(Some(frame)),
            None => tokio::select! {
                // `biased`: select! otherwise draws its branch order from a thread-local
                // RNG the simulator does not seed.
                biased;
                read = read_frame(&mut stream, shared.config.socket_request_max_bytes) => read,
                _ = signal => return,
            },
        };
        let frame = match read {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(FrameError::Io(e)) => {
                tracing::debug!(%peer, error = %e, "connection error");
                return;
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection");
                return;
            }
        };
        assert!(
            frame.len() <= shared.config.socket_request_max_bytes,
            "a frame above socket.request.max.bytes reached the handlers"
        );
        let handled = api::handle(shared, &frame, peer).await;
        if dropped() {
            // Reset while the request was being handled: it may have taken effect, but
            // its answer is lost, as with a real connection reset.
            return;
        }
        match handled {
            Ok(Some(response)) => {
                if let Err(e) = write_frame(&mut stream, &response).await {
                    tracing::debug!(%peer, error = %e, "write failed");
                    return;
                }
            }
            Ok(None) => {} // acks=0 produce: no response
            Err(reason) => {
                tracing::warn!(%peer, %reason, "closing connection");
                return;
            }
        }
    }
}

/// Run the group coordinator's loader and timers.
async fn group_loop(shared: Arc<Shared>) {
    tokio::join!(
        shared.groups.run_loader(&shared),
        shared.groups.run_timers(&shared)
    );
}

async fn flush_loop(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(FLUSH_CHECK_INTERVAL);
    loop {
        interval.tick().await;
        if faultline_core::buggify!() {
            // BUGGIFY: the scheduler checks late (log.flush.interval.ms is met by a
            // periodic check, never exactly).
            let late = faultline_core::buggify::between(0.5, 3.0);
            tokio::time::sleep(FLUSH_CHECK_INTERVAL.mul_f64(late)).await;
        }
        if let Err(e) = shared.state().flush_due(shared.now_ms()) {
            tracing::error!(error = %e, "scheduled flush failed");
        }
        shared.wait_for_sync_cost().await;
    }
}
