//! The group coordinator in the shell: one pure `GroupCoordinator` per broker behind a
//! mutex, its durable records appended to `__consumer_offsets`, its parked answers handed
//! to the waiting connection through oneshot channels, and one task for its timers.
//!
//! Ownership: a group belongs to partition `abs(javaHashCode(group_id)) % partitions` of
//! `__consumer_offsets` (Kafka's rule, so a Kafka engineer finds the same partition), and
//! this broker serves a group only while that partition is loaded here.
//!
//! In a cluster the coordinator of a group is the leader of its partition: `reconcile`
//! (after every metadata change) loads the partitions this broker came to lead and unloads
//! those it stopped leading; a write is answered once its partition's high watermark
//! passes it (acks=all). A standalone broker takes the same path with one replica, where
//! every append commits at once.
//!
//! The two functions that encode and decode records (`append_group_records`,
//! `load_partition`) handle only the coordinator's own records in its internal topic,
//! never a client's batches; `tests/architecture/measure` allows exactly these two.
//!
//! Lock order: the group lock (`GroupService::inner`) before the broker state lock, never
//! the other way round (loading reads the log under the state lock, releases it, then
//! replays under the group lock).

use super::Shared;
use crate::group::records::{decode_batches, encode_batch};
use crate::group::{GroupCoordinator, ListedGroup, RequestToken, Response, WriteToken};
use crate::kafka_rules::error_code;
use crate::log::ReadLimit;
use crate::mix::SplitMix64;
use crate::probe;
use crate::state::{Appended, ProduceWait, Refusal};
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// Kafka's internal topic for group offsets and metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Bytes read per step while loading a partition.
const LOAD_READ_BYTES_MAX: usize = 1024 * 1024;
/// Pause before a failed load is tried again, and between checks of a loaded partition's
/// high watermark.
const LOAD_RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// Kafka's `Utils.abs(groupId.hashCode()) % groupMetadataTopicPartitionCount`:
/// Java's `String.hashCode` over UTF-16 code units, and `Utils.abs`, which maps
/// `Integer.MIN_VALUE` to 0 (where `Math.abs` would stay negative).
pub fn offsets_partition(group_id: &str, partitions: i32) -> i32 {
    assert!(partitions > 0, "__consumer_offsets has partitions");
    let hash = group_id
        .encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(unit as i32));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions
}

/// Where a group's coordinator stands on this broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Loaded here: requests are served.
    Serving,
    /// This broker leads the partition and is replaying it.
    Loading,
    /// Replayed to its log end; waiting for the high watermark to reach that end before
    /// serving (the followers' next fetch). Requests wait this out (`until_caught_up`).
    CatchingUp,
    /// Another broker (or none) coordinates the group.
    NotCoordinator,
    /// `__consumer_offsets` does not exist yet.
    NotAvailable,
}

impl Ownership {
    /// The error code a group request answers with, if it is not served.
    pub fn error(self) -> Option<i16> {
        match self {
            Ownership::Serving => None,
            Ownership::Loading | Ownership::CatchingUp => {
                Some(ResponseError::CoordinatorLoadInProgress.code())
            }
            Ownership::NotCoordinator => Some(error_code::NOT_COORDINATOR),
            Ownership::NotAvailable => Some(error_code::COORDINATOR_NOT_AVAILABLE),
        }
    }
}

/// The coordinator and what the shell keeps beside it.
pub(crate) struct GroupService {
    inner: Mutex<Inner>,
    /// Woken when a request may have moved the coordinator's next deadline.
    deadline_changed: Notify,
    /// Woken when a partition was marked loading (`run_loader` replays it).
    load_wanted: Notify,
    /// Woken when a partition finished loading or was unloaded.
    load_ended: Notify,
}

struct Inner {
    coordinator: GroupCoordinator,
    /// Connections waiting for a parked answer, by request token.
    waiting: BTreeMap<RequestToken, oneshot::Sender<Response>>,
    token_next: RequestToken,
    /// `__consumer_offsets` partitions whose groups are served here, with the leader
    /// epoch they were loaded in: a partition led again in a later epoch is reloaded.
    loaded: BTreeMap<i32, i32>,
    /// Partitions led here (in that epoch) and still being replayed.
    loading: BTreeMap<i32, i32>,
    /// Of `loading`, those replayed to their log end, waiting for the high watermark.
    catching_up: BTreeSet<i32>,
    /// Writes appended and waiting for their partition's high watermark.
    pending: Vec<PendingWrite>,
    /// Draws new member ids' suffixes (seeded by the shell: deterministic in the lab).
    ids: SplitMix64,
}

/// A coordinator write appended as leader, answered once committed (acks=all).
struct PendingWrite {
    token: WriteToken,
    /// One batch per `__consumer_offsets` partition the write's records belong to
    /// (DeleteGroups and expiry may cover groups of several).
    parts: Vec<AppendedPart>,
    /// `offsets.commit.timeout.ms` after the append.
    deadline_ms: i64,
}

/// Where one batch of a write landed.
struct AppendedPart {
    partition: i32,
    leader_epoch: i32,
    last_offset: i64,
}

/// A group request's outcome: answered now, or a receiver for the parked answer.
pub(crate) enum Outcome<T> {
    Now(T),
    Parked(oneshot::Receiver<Response>),
}

impl GroupService {
    pub(crate) fn new(config: &crate::config::BrokerConfig, seed: u64) -> GroupService {
        GroupService {
            inner: Mutex::new(Inner {
                coordinator: GroupCoordinator::new(config.group.clone()),
                waiting: BTreeMap::new(),
                token_next: 1,
                loaded: BTreeMap::new(),
                loading: BTreeMap::new(),
                catching_up: BTreeSet::new(),
                pending: Vec::new(),
                ids: SplitMix64::new(seed ^ 0x6772_6f75_7073),
            }),
            deadline_changed: Notify::new(),
            load_wanted: Notify::new(),
            load_ended: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Poisoned: a coordinator invariant broke mid-change; crash loudly.
        self.inner.lock().expect("group coordinator lock poisoned")
    }

    /// A fresh member id suffix (a random UUID, as Kafka's).
    pub(crate) fn member_id_suffix(&self) -> String {
        let mut inner = self.lock();
        let high = inner.ids.next_u64() as u128;
        let low = inner.ids.next_u64() as u128;
        uuid::Uuid::from_u128(high << 64 | low).to_string()
    }

    /// Whether `group_id` is served here, and if not, why.
    pub(crate) fn ownership(&self, shared: &Shared, group_id: &str) -> Ownership {
        let inner = self.lock();
        ownership_locked(&inner, shared, group_id)
    }

    /// Run one request against the coordinator if every group of `group_ids` is served
    /// here (else the error code to answer with): `call` gets it and a fresh token and returns the
    /// answer if decided at once. Writes are appended, and answers their commit released
    /// are delivered, before this returns.
    pub(crate) fn request<T>(
        &self,
        shared: &Shared,
        group_ids: &[&str],
        call: impl FnOnce(&mut GroupCoordinator, RequestToken, i64) -> Option<T>,
    ) -> Result<Outcome<T>, i16> {
        let now_ms = shared.now_ms();
        let mut inner = self.lock();
        // Checked under the same lock as the call: a partition unloaded in between would
        // otherwise get a group this broker no longer owns.
        for group_id in group_ids {
            if let Some(error) = ownership_locked(&inner, shared, group_id).error() {
                return Err(error);
            }
        }
        let token = inner.token_next;
        inner.token_next += 1;
        let outcome = match call(&mut inner.coordinator, token, now_ms) {
            Some(answer) => Outcome::Now(answer),
            None => {
                let (sender, receiver) = oneshot::channel();
                inner.waiting.insert(token, sender);
                Outcome::Parked(receiver)
            }
        };
        drain(&mut inner, shared);
        drop(inner);
        self.deadline_changed.notify_one();
        Ok(outcome)
    }

    /// A read-only look at the coordinator (OffsetFetch, DescribeGroups), if `group_id`
    /// is served here (else the error code to answer with).
    pub(crate) fn read_group<T>(
        &self,
        shared: &Shared,
        group_id: &str,
        read: impl FnOnce(&GroupCoordinator) -> T,
    ) -> Result<T, i16> {
        let inner = self.lock();
        match ownership_locked(&inner, shared, group_id).error() {
            Some(error) => Err(error),
            None => Ok(read(&inner.coordinator)),
        }
    }

    /// ListGroups: the groups in one of `states` (any state when empty) of the partitions
    /// loaded here, and whether a partition is still loading (then Kafka answers
    /// COORDINATOR_LOAD_IN_PROGRESS beside the groups it has).
    pub(crate) fn list(&self, shared: &Shared, states: &[String]) -> (Vec<ListedGroup>, bool) {
        let inner = self.lock();
        let partitions = offsets_partitions(shared);
        let groups = inner
            .coordinator
            .list_groups(states)
            .into_iter()
            .filter(|g| serving(&inner.loaded, partitions, &g.group_id))
            .collect();
        (groups, !inner.loading.is_empty())
    }

    /// Bring what is loaded here in line with what this broker leads: a
    /// `__consumer_offsets` partition no longer led in the epoch it was loaded in is
    /// unloaded (its waiting writes fail with NOT_COORDINATOR, its groups are dropped);
    /// a partition newly led is marked loading and replayed by `run_loader` (an empty one
    /// is served at once). Called at start, when the topic is created, and after every
    /// metadata change.
    pub(crate) fn reconcile(&self, shared: &Shared) {
        let now_ms = shared.now_ms();
        let mut to_load = false;
        {
            let mut inner = self.lock();
            // What this broker leads, read under the group lock (group lock, then state
            // lock): two reconciles cannot apply their views out of order.
            let partitions = offsets_partitions(shared);
            let led = led_partitions(shared, partitions);
            let held: Vec<(i32, i32)> = inner
                .loaded
                .iter()
                .chain(inner.loading.iter())
                .map(|(p, e)| (*p, *e))
                .collect();
            for (partition, epoch) in held {
                if led.get(&partition).map(|l| l.0) != Some(epoch) {
                    unload_partition(&mut inner, partition, partitions, now_ms);
                }
            }
            for (&partition, &(epoch, empty)) in &led {
                if inner.loaded.contains_key(&partition) || inner.loading.contains_key(&partition) {
                    continue;
                }
                if empty {
                    inner.loaded.insert(partition, epoch);
                } else {
                    inner.loading.insert(partition, epoch);
                    to_load = true;
                }
            }
            drain(&mut inner, shared);
        }
        self.deadline_changed.notify_one();
        self.load_ended.notify_waiters();
        if to_load {
            self.load_wanted.notify_one();
        }
    }

    /// Wait, at most `offsets.commit.timeout.ms`, while a group of `group_ids` belongs to a
    /// partition replayed here and waiting for its high watermark: that wait is a follower's
    /// next fetch (up to `replica.fetch.wait.max.ms`), and clients retry
    /// COORDINATOR_LOAD_IN_PROGRESS only a few times (librdkafka fails a commit after two).
    /// Then the request is decided as usual: served, or refused with the error its group's
    /// state asks for. A partition still being read answers COORDINATOR_LOAD_IN_PROGRESS at
    /// once, as Kafka does.
    pub(crate) async fn until_caught_up(&self, shared: &Shared, group_ids: &[&str]) {
        let timeout = Duration::from_millis(shared.config.offsets_commit_timeout_ms.max(0) as u64);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ended = self.load_ended.notified();
            let catching_up = {
                let inner = self.lock();
                group_ids
                    .iter()
                    .any(|g| ownership_locked(&inner, shared, g) == Ownership::CatchingUp)
            };
            if !catching_up {
                return;
            }
            crate::probe!(probe::GROUP_REQUEST_AWAITED_LOAD);
            // madsim has no `timeout_at`: the time left, each round.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || tokio::time::timeout(left, ended).await.is_err() {
                return;
            }
        }
    }

    /// The loader task: replay every partition marked loading, one after the other, each
    /// time `reconcile` marks more. A load that fails (a read error, a batch that does
    /// not decode) drops what it replayed and is tried again: a partition is never served
    /// from part of its log.
    pub(crate) async fn run_loader(&self, shared: &Shared) {
        loop {
            self.load_wanted.notified().await;
            loop {
                let next: Vec<(i32, i32)> =
                    self.lock().loading.iter().map(|(p, e)| (*p, *e)).collect();
                if next.is_empty() {
                    break;
                }
                let mut failed = false;
                for (partition, epoch) in next {
                    if let Err(why) = self.load_partition(shared, partition, epoch).await {
                        tracing::warn!(partition, epoch, %why, "{OFFSETS_TOPIC} load failed: retrying");
                        self.drop_partially_loaded(shared, partition, epoch);
                        failed = true;
                    }
                    tokio::task::yield_now().await;
                }
                if failed {
                    tokio::time::sleep(LOAD_RETRY_BACKOFF).await;
                }
            }
            self.deadline_changed.notify_one();
        }
    }

    /// Forget the groups a failed load of `partition` replayed (still loading in `epoch`).
    fn drop_partially_loaded(&self, shared: &Shared, partition: i32, epoch: i32) {
        let mut inner = self.lock();
        if inner.loading.get(&partition) != Some(&epoch) {
            return;
        }
        inner.catching_up.remove(&partition);
        let partitions = offsets_partitions(shared);
        let groups = groups_of(&inner.coordinator, partition, partitions);
        inner.coordinator.unload(&groups);
        drain(&mut inner, shared);
    }

    /// Replay one partition led in `epoch` from its log start to its log end, wait until
    /// its high watermark reaches that end (a new leader's log past its high watermark is
    /// not committed yet: serving it could hand out a generation or an offset a later
    /// leader never had), then serve its groups. Returns early, fine, if the partition
    /// was unloaded meanwhile (leadership moved); an error if the log could not be read.
    async fn load_partition(
        &self,
        shared: &Shared,
        partition: i32,
        epoch: i32,
    ) -> Result<(), String> {
        let mut offset = match shared.state().partition(OFFSETS_TOPIC, partition) {
            Ok(p) => p.log().log_start_offset(),
            Err(refusal) => return Err(refusal.message),
        };
        let mut replayed = 0;
        loop {
            let (read, log_end) = {
                let state = shared.state();
                let read = state.read_to_log_end(
                    OFFSETS_TOPIC,
                    partition,
                    offset,
                    ReadLimit::first_batch_whole(LOAD_READ_BYTES_MAX),
                );
                let end = state
                    .partition(OFFSETS_TOPIC, partition)
                    .map(|p| p.log().log_end_offset());
                (read, end)
            };
            let log_end = log_end.map_err(|refusal| refusal.message)?;
            if offset >= log_end {
                break;
            }
            let batches = match read {
                Ok(read) if !read.records.is_empty() => read.records,
                Ok(_) => {
                    return Err(format!(
                        "nothing read at {offset}, below the log end {log_end}"
                    ))
                }
                Err(refusal) => {
                    return Err(format!("cannot read at {offset}: {}", refusal.message))
                }
            };
            let decoded = match decode_batches(&batches) {
                Ok(decoded) if decoded.next_offset > offset => decoded,
                Ok(_) | Err(_) => return Err(format!("undecodable batch at {offset}")),
            };
            offset = decoded.next_offset;
            let now_ms = shared.now_ms();
            {
                let mut inner = self.lock();
                if inner.loading.get(&partition) != Some(&epoch) {
                    return Ok(());
                }
                for record in &decoded.records {
                    if inner.coordinator.replay(record, now_ms) {
                        replayed += 1;
                    }
                }
            }
            // Yield between reads so a large partition does not hold the runtime.
            tokio::task::yield_now().await;
            // BUGGIFY: a slow load (a cold disk), so requests meet
            // COORDINATOR_LOAD_IN_PROGRESS and leadership may move mid-load.
            if faultline_core::buggify!(0.5) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        // Serve only committed state: the high watermark catches up once the followers
        // fetch (or the ISR shrinks to this leader). Requests arriving meanwhile wait.
        {
            let mut inner = self.lock();
            if inner.loading.get(&partition) != Some(&epoch) {
                return Ok(());
            }
            inner.catching_up.insert(partition);
        }
        loop {
            let advanced = shared.appended.notified();
            if self.lock().loading.get(&partition) != Some(&epoch) {
                return Ok(());
            }
            let high_watermark = shared
                .state()
                .partition(OFFSETS_TOPIC, partition)
                .map(|p| p.high_watermark())
                .map_err(|refusal| refusal.message)?;
            if high_watermark >= offset {
                break;
            }
            crate::probe!(probe::GROUP_LOAD_AWAITED_HIGH_WATERMARK);
            let _ = tokio::time::timeout(LOAD_RETRY_BACKOFF, advanced).await;
        }
        let mut inner = self.lock();
        if inner.loading.get(&partition) == Some(&epoch) {
            // Served only while still led in that epoch; otherwise the next `reconcile`
            // (after the metadata that moved it) unloads it.
            inner.loading.remove(&partition);
            inner.catching_up.remove(&partition);
            inner.loaded.insert(partition, epoch);
            let groups = groups_of(&inner.coordinator, partition, offsets_partitions(shared));
            inner.coordinator.loaded(&groups, shared.now_ms());
            tracing::info!(
                partition,
                epoch,
                records = replayed,
                "loaded {OFFSETS_TOPIC} partition"
            );
        }
        drop(inner);
        // The loaded groups' timers start now, and requests waiting for them go on.
        self.deadline_changed.notify_one();
        self.load_ended.notify_waiters();
        Ok(())
    }

    /// The timer task: `tick` at the coordinator's next deadline (re-read whenever a
    /// request may have moved it), `expire` every `offsets.retention.check.interval.ms`,
    /// and settle waiting writes whenever a high watermark may have moved.
    pub(crate) async fn run_timers(&self, shared: &Shared) {
        let check_ms = shared.config.offsets_retention_check_interval_ms;
        let mut expire_at = shared.now_ms().saturating_add(check_ms);
        loop {
            let changed = self.deadline_changed.notified();
            let appended = shared.appended.notified();
            let now_ms = shared.now_ms();
            let (next, waiting_writes) = {
                let mut guard = self.lock();
                let inner = &mut *guard;
                // A high watermark that moved before `appended` was registered woke no one
                // here: settle what it committed now, or those writes would wait for the
                // next change (none, on an idle coordinator) or their deadline.
                let waiting = inner.pending.len();
                if waiting > 0 {
                    drain(inner, shared);
                    if inner.pending.len() < waiting {
                        crate::probe!(probe::GROUP_WRITE_SETTLED_BEFORE_WAIT);
                    }
                }
                let partitions = offsets_partitions(shared);
                let write_deadline = inner.pending.iter().map(|w| w.deadline_ms).min();
                let group_deadline = inner
                    .coordinator
                    .next_deadline_where(|g| serving(&inner.loaded, partitions, g));
                let next = [group_deadline, write_deadline].into_iter().flatten().min();
                (next, !inner.pending.is_empty())
            };
            let wake_at = next.map_or(expire_at, |d| d.min(expire_at));
            // At least 1 ms: a deadline that a tick did not move must not spin the task
            // (under the simulator, time only advances while tasks sleep).
            let wait = Duration::from_millis(wake_at.saturating_sub(now_ms).max(1) as u64);
            // BUGGIFY: the coordinator's timers fire late (sessions and rebalance timeouts
            // are bounds a loaded broker overshoots; `tick` decides by `now_ms`).
            let wait = faultline_core::buggify_duration!(wait, 1.0, 1.5);
            // `biased`: select! otherwise draws from an RNG the simulator does not seed.
            // A deadline already passed is not put off by requests arriving (they notify
            // `changed`), so a busy coordinator still expires sessions and join phases.
            let due = wake_at <= now_ms;
            tokio::select! {
                biased;
                _ = changed, if !due => {
                    // BUGGIFY: the task runs late after a request (a busy runtime), so a
                    // write's high watermark can move before the next round listens.
                    if faultline_core::buggify!(0.5) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
                _ = appended, if waiting_writes => {}
                _ = tokio::time::sleep(wait) => {}
            }
            let now_ms = shared.now_ms();
            let mut guard = self.lock();
            let inner = &mut *guard;
            // Only groups of loaded partitions: a loading partition's groups are not served
            // yet, so their timers do not run (they start when the load completes).
            let partitions = offsets_partitions(shared);
            let loaded = &inner.loaded;
            let served = |g: &str| serving(loaded, partitions, g);
            inner.coordinator.tick_where(now_ms, served);
            if now_ms >= expire_at {
                let expired = inner.coordinator.expire_where(now_ms, served);
                if !expired.offsets.is_empty() || !expired.groups.is_empty() {
                    tracing::info!(
                        offsets = expired.offsets.len(),
                        groups = expired.groups.len(),
                        "expired group offsets"
                    );
                }
                expire_at = now_ms.saturating_add(check_ms);
            }
            drain(inner, shared);
        }
    }
}

/// Whether `group_id` is served here: its partition is loaded (not loading, not led
/// elsewhere). `partitions`: the topic's partition count, if it exists.
fn serving(loaded: &BTreeMap<i32, i32>, partitions: Option<i32>, group_id: &str) -> bool {
    partitions.is_some_and(|n| loaded.contains_key(&offsets_partition(group_id, n)))
}

/// `ownership` with the service's lock held.
fn ownership_locked(inner: &Inner, shared: &Shared, group_id: &str) -> Ownership {
    let Some(partitions) = offsets_partitions(shared) else {
        return Ownership::NotAvailable;
    };
    let partition = offsets_partition(group_id, partitions);
    if inner.catching_up.contains(&partition) {
        return Ownership::CatchingUp;
    }
    if inner.loading.contains_key(&partition) {
        return Ownership::Loading;
    }
    // Served when loaded in an epoch this broker still leads in. A change not reconciled
    // yet (the metadata task runs `reconcile` right after applying it) is not served
    // meanwhile: a partition led here but not loaded in that epoch is about to load, so it
    // answers COORDINATOR_LOAD_IN_PROGRESS, which every client retries. NOT_COORDINATOR
    // there would be wrong: FindCoordinator, answered from the same metadata, has just
    // named this broker, and librdkafka does not retry an OffsetFetch refused with it.
    let led = shared
        .state()
        .partition(OFFSETS_TOPIC, partition)
        .ok()
        .and_then(|p| p.led_epoch());
    match (inner.loaded.get(&partition), led) {
        (Some(&epoch), Some(led)) if led == epoch => Ownership::Serving,
        (_, Some(_)) => {
            crate::probe!(probe::GROUP_REQUEST_BEFORE_RECONCILE);
            Ownership::Loading
        }
        (_, None) => Ownership::NotCoordinator,
    }
}

/// The `__consumer_offsets` partitions this broker leads: partition → (leader epoch,
/// whether its log is empty).
fn led_partitions(shared: &Shared, partitions: Option<i32>) -> BTreeMap<i32, (i32, bool)> {
    let Some(partitions) = partitions else {
        return BTreeMap::new();
    };
    let state = shared.state();
    (0..partitions)
        .filter_map(|index| {
            let p = state.partition(OFFSETS_TOPIC, index).ok()?;
            let epoch = p.led_epoch()?;
            let empty = p.log().log_end_offset() == p.log().log_start_offset();
            Some((index, (epoch, empty)))
        })
        .collect()
}

/// Stop serving one partition's groups: its waiting writes fail with NOT_COORDINATOR
/// (they may still commit under the new leader, as in Kafka: the client retries), then
/// its groups are dropped and their parked requests answered NOT_COORDINATOR.
/// `partitions`: the topic's partition count (None: the topic is gone, so every group
/// loaded here goes).
fn unload_partition(inner: &mut Inner, partition: i32, partitions: Option<i32>, now_ms: i64) {
    inner.loaded.remove(&partition);
    inner.loading.remove(&partition);
    inner.catching_up.remove(&partition);
    let (failed, kept): (Vec<PendingWrite>, Vec<PendingWrite>) = std::mem::take(&mut inner.pending)
        .into_iter()
        .partition(|w| w.parts.iter().any(|part| part.partition == partition));
    inner.pending = kept;
    for write in failed {
        crate::probe!(probe::GROUP_WRITE_LEADERSHIP_LOST);
        inner
            .coordinator
            .records_failed(write.token, error_code::NOT_COORDINATOR, now_ms);
    }
    let groups = groups_of(&inner.coordinator, partition, partitions);
    inner.coordinator.unload(&groups);
    crate::probe!(probe::GROUP_PARTITION_UNLOADED);
    tracing::info!(
        partition,
        groups = groups.len(),
        "unloaded {OFFSETS_TOPIC} partition"
    );
}

/// The groups the coordinator holds of `partition` (every group when the topic is gone).
fn groups_of(
    coordinator: &GroupCoordinator,
    partition: i32,
    partitions: Option<i32>,
) -> Vec<String> {
    coordinator
        .group_ids()
        .into_iter()
        .filter(|g| partitions.is_none_or(|n| offsets_partition(g, n) == partition))
        .collect()
}

/// The partition count of `__consumer_offsets`, if it exists: from the metadata image in
/// a cluster (every broker knows it, replica or not), from the local topic standalone.
pub(crate) fn offsets_partitions(shared: &Shared) -> Option<i32> {
    let state = shared.state();
    match state.image() {
        Some(image) => image
            .topics
            .get(OFFSETS_TOPIC)
            .map(|t| t.partitions.len() as i32),
        None => state
            .topic(OFFSETS_TOPIC)
            .map(|t| t.partitions.len() as i32),
    }
}

/// Append every write the coordinator made as leader of its partition, then report the
/// outcome of each once known: committed when the high watermark passes it (at once
/// standalone, where the flush policy's sync is done inside the append), failed when the
/// leadership moved or `offsets.commit.timeout.ms` passed. Then hand released answers to
/// their connections. Repeats while reporting makes new writes.
fn drain(inner: &mut Inner, shared: &Shared) {
    let mut appended = false;
    // Bound: each round reports writes, which release answers and rarely more writes.
    for _ in 0..64 {
        let writes = inner.coordinator.take_writes();
        let now_ms = shared.now_ms();
        appended |= !writes.is_empty();
        for write in writes {
            match append_group_records(shared, &write.records, now_ms) {
                Ok(parts) => inner.pending.push(PendingWrite {
                    token: write.token,
                    parts,
                    deadline_ms: now_ms.saturating_add(shared.config.offsets_commit_timeout_ms),
                }),
                Err(refusal) => {
                    let error = append_error(refusal.error);
                    tracing::warn!(error = ?refusal.error, message = %refusal.message, "{OFFSETS_TOPIC} append failed");
                    inner.coordinator.records_failed(write.token, error, now_ms);
                }
            }
        }
        if !settle(inner, shared, now_ms) {
            break;
        }
    }
    for (token, response) in inner.coordinator.take_responses() {
        // The receiver is gone when its connection closed meanwhile: nothing to do.
        if let Some(sender) = inner.waiting.remove(&token) {
            let _ = sender.send(response);
        }
    }
    // Wake followers' and consumers' long polls. Only on an append: the timer task settles
    // through here before it waits on `appended`, and must not wake itself.
    if appended {
        shared.appended.notify_waiters();
    }
}

/// Report every waiting write whose outcome is known; true if any was reported (which
/// may have made new writes).
fn settle(inner: &mut Inner, shared: &Shared, now_ms: i64) -> bool {
    if inner.pending.is_empty() {
        return false;
    }
    let outcomes: Vec<(WriteToken, Option<i16>)> = {
        let state = shared.state();
        let mut outcomes = Vec::new();
        inner.pending.retain(|w| {
            // A write is committed when every batch of it is; it fails with the first
            // batch that failed.
            let mut waiting = false;
            for part in &w.parts {
                let status = state.produce_status(
                    OFFSETS_TOPIC,
                    part.partition,
                    part.leader_epoch,
                    part.last_offset,
                );
                match status {
                    ProduceWait::Done(0) => {}
                    ProduceWait::Done(code) => {
                        outcomes.push((w.token, Some(code)));
                        return false;
                    }
                    ProduceWait::Waiting => waiting = true,
                }
            }
            if !waiting {
                outcomes.push((w.token, None));
                return false;
            }
            if now_ms >= w.deadline_ms {
                outcomes.push((w.token, Some(ResponseError::RequestTimedOut.code())));
                return false;
            }
            crate::probe!(probe::GROUP_WRITE_AWAITED_REPLICATION);
            true
        });
        outcomes
    };
    let reported = !outcomes.is_empty();
    for (token, error) in outcomes {
        match error {
            None => inner.coordinator.records_committed(token, now_ms),
            Some(code) => {
                let error = ResponseError::try_from_code(code)
                    .map(append_error)
                    .unwrap_or(error_code::COORDINATOR_NOT_AVAILABLE);
                if error == error_code::NOT_COORDINATOR {
                    crate::probe!(probe::GROUP_WRITE_LEADERSHIP_LOST);
                }
                tracing::debug!(code, "{OFFSETS_TOPIC} write not committed");
                inner.coordinator.records_failed(token, error, now_ms);
            }
        }
    }
    reported
}

/// Append one write's records, one batch per partition their groups belong to, in
/// partition order (acks=all: the answer waits for the high watermark of each). Returns
/// where each batch landed; the first refusal fails the write (batches appended before it
/// stay, as a Kafka coordinator's would).
fn append_group_records(
    shared: &Shared,
    records: &[crate::group::GroupRecord],
    now_ms: i64,
) -> Result<Vec<AppendedPart>, Refusal> {
    assert!(!records.is_empty(), "a write has records");
    let partitions = offsets_partitions(shared).ok_or_else(|| {
        Refusal::new(
            ResponseError::UnknownTopicOrPartition,
            format!("{OFFSETS_TOPIC} does not exist"),
        )
    })?;
    let mut by_partition: BTreeMap<i32, Vec<crate::group::GroupRecord>> = BTreeMap::new();
    for record in records {
        by_partition
            .entry(offsets_partition(record.group(), partitions))
            .or_default()
            .push(record.clone());
    }
    let mut parts = Vec::with_capacity(by_partition.len());
    let mut state = shared.state();
    for (partition, records) in by_partition {
        let batch = encode_batch(&records, now_ms);
        let appended: Appended = state.produce(OFFSETS_TOPIC, partition, &batch, -1, now_ms)?;
        parts.push(AppendedPart {
            partition,
            leader_epoch: appended.leader_epoch,
            last_offset: appended.last_offset,
        });
    }
    Ok(parts)
}

/// Kafka's mapping of an append error to a group answer (`GroupMetadataManager`):
/// a missing or moved partition is NOT_COORDINATOR, a replication or storage problem
/// COORDINATOR_NOT_AVAILABLE.
pub fn append_error(error: ResponseError) -> i16 {
    match error {
        ResponseError::UnknownTopicOrPartition
        | ResponseError::NotEnoughReplicas
        | ResponseError::NotEnoughReplicasAfterAppend
        | ResponseError::RequestTimedOut => error_code::COORDINATOR_NOT_AVAILABLE,
        ResponseError::NotLeaderOrFollower | ResponseError::KafkaStorageError => {
            error_code::NOT_COORDINATOR
        }
        _ => error_code::COORDINATOR_NOT_AVAILABLE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hash values computed by hand from Java's rule `h = 31 * h + unit` over UTF-16 code
    /// units (wrapping i32), then `Utils.abs(h) % 50`.
    #[test]
    fn partition_follows_kafkas_java_hash() {
        for (group, partition) in [
            ("", 0),
            // 97 % 50
            ("a", 47),
            // 97 * 31 + 98 = 3105; % 50 = 5
            ("ab", 5),
            // U+00E9 is one UTF-16 unit, 233
            ("é", 33),
            // U+1F600 is two units, 0xD83D 0xDE00: 55357 * 31 + 56832 = 1772899
            ("😀", 49),
            // hashCode -1906497762 (negative): abs 1906497762 % 50 = 12
            ("my-group", 12),
            // hashCode == Integer.MIN_VALUE: Utils.abs gives 0, Math.abs would not
            ("polygenelubricants", 0),
        ] {
            assert_eq!(offsets_partition(group, 50), partition, "{group:?}");
        }
        assert_eq!(offsets_partition("ab", 1), 0);
        assert_eq!(offsets_partition("ab", 7), 3105 % 7);
    }

    #[test]
    fn append_errors_map_as_kafka_maps_them() {
        for (error, code) in [
            (
                ResponseError::UnknownTopicOrPartition,
                error_code::COORDINATOR_NOT_AVAILABLE,
            ),
            (
                ResponseError::NotEnoughReplicas,
                error_code::COORDINATOR_NOT_AVAILABLE,
            ),
            (
                ResponseError::RequestTimedOut,
                error_code::COORDINATOR_NOT_AVAILABLE,
            ),
            (
                ResponseError::NotLeaderOrFollower,
                error_code::NOT_COORDINATOR,
            ),
            (
                ResponseError::KafkaStorageError,
                error_code::NOT_COORDINATOR,
            ),
            (
                ResponseError::MessageTooLarge,
                error_code::COORDINATOR_NOT_AVAILABLE,
            ),
        ] {
            assert_eq!(append_error(error), code, "{error:?}");
        }
    }
}
