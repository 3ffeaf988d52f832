//! The group coordinator in the shell: one pure `GroupCoordinator` per broker behind a
//! mutex, its durable records appended to `__consumer_offsets`, its parked answers handed
//! to the waiting connection through oneshot channels, and one task for its timers.
//!
//! Ownership: a group belongs to partition `abs(javaHashCode(group_id)) % partitions` of
//! `__consumer_offsets` (Kafka's rule, so a Kafka engineer finds the same partition), and
//! this broker serves a group only while that partition is loaded here.
//!
//! Standalone only for now: in a cluster FindCoordinator answers COORDINATOR_NOT_AVAILABLE
//! and every group request NOT_COORDINATOR.
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
use crate::group::{GroupCoordinator, RequestToken, Response};
use crate::kafka_rules::error_code;
use crate::log::ReadLimit;
use crate::mix::SplitMix64;
use crate::state::Refusal;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// Kafka's internal topic for group offsets and metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Bytes read per step while loading a partition.
const LOAD_READ_BYTES_MAX: usize = 1024 * 1024;

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
    /// Another broker (or none) coordinates the group.
    NotCoordinator,
    /// `__consumer_offsets` does not exist yet (or the coordinator cannot run here).
    NotAvailable,
}

impl Ownership {
    /// The error code a group request answers with, if it is not served.
    pub fn error(self) -> Option<i16> {
        match self {
            Ownership::Serving => None,
            Ownership::Loading => Some(ResponseError::CoordinatorLoadInProgress.code()),
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
}

struct Inner {
    coordinator: GroupCoordinator,
    /// Connections waiting for a parked answer, by request token.
    waiting: BTreeMap<RequestToken, oneshot::Sender<Response>>,
    token_next: RequestToken,
    /// `__consumer_offsets` partitions whose groups are served here.
    loaded: BTreeSet<i32>,
    /// Partitions led here and still being replayed.
    loading: BTreeSet<i32>,
    /// Draws new member ids' suffixes (seeded by the shell: deterministic in the lab).
    ids: SplitMix64,
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
                loaded: BTreeSet::new(),
                loading: BTreeSet::new(),
                ids: SplitMix64::new(seed ^ 0x6772_6f75_7073),
            }),
            deadline_changed: Notify::new(),
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
        if shared.config.is_clustered() {
            return Ownership::NotCoordinator;
        }
        let Some(partitions) = offsets_partitions(shared) else {
            return Ownership::NotAvailable;
        };
        let partition = offsets_partition(group_id, partitions);
        let inner = self.lock();
        if inner.loaded.contains(&partition) {
            Ownership::Serving
        } else if inner.loading.contains(&partition) {
            Ownership::Loading
        } else {
            Ownership::NotCoordinator
        }
    }

    /// Run one request against the coordinator: `call` gets it and a fresh token and
    /// returns the answer if decided at once. Writes are appended and released answers
    /// delivered before this returns.
    pub(crate) fn request<T>(
        &self,
        shared: &Shared,
        call: impl FnOnce(&mut GroupCoordinator, RequestToken, i64) -> Option<T>,
    ) -> Outcome<T> {
        let now_ms = shared.now_ms();
        let mut inner = self.lock();
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
        outcome
    }

    /// A read-only look at the coordinator (OffsetFetch, ListGroups, DescribeGroups).
    pub(crate) fn read<T>(&self, read: impl FnOnce(&GroupCoordinator) -> T) -> T {
        read(&self.lock().coordinator)
    }

    /// `__consumer_offsets` was just created here: its partitions are empty, so every
    /// group of them is served at once.
    pub(crate) fn created(&self, partitions: i32) {
        self.lock().loaded.extend(0..partitions);
    }

    /// Mark every partition of an existing `__consumer_offsets` as loading (at start,
    /// before any connection is served); `load_all` then replays them.
    pub(crate) fn begin_loading(&self, partitions: i32) {
        self.lock().loading.extend(0..partitions);
    }

    /// Replay every partition marked loading, one after the other.
    pub(crate) async fn load_all(&self, shared: &Shared) {
        let partitions: Vec<i32> = self.lock().loading.iter().copied().collect();
        for partition in partitions {
            let loaded = self.load_partition(shared, partition).await;
            {
                let mut inner = self.lock();
                inner.loading.remove(&partition);
                inner.loaded.insert(partition);
            }
            tracing::info!(
                partition,
                records = loaded,
                "loaded {OFFSETS_TOPIC} partition"
            );
            tokio::task::yield_now().await;
        }
        self.deadline_changed.notify_one();
    }

    /// Read one partition from its log start to its high watermark and replay every
    /// record; returns how many were replayed.
    async fn load_partition(&self, shared: &Shared, partition: i32) -> usize {
        let mut offset = match shared.state().partition(OFFSETS_TOPIC, partition) {
            Ok(p) => p.log().log_start_offset(),
            Err(_) => return 0,
        };
        let mut replayed = 0;
        loop {
            let read = shared.state().read(
                OFFSETS_TOPIC,
                partition,
                offset,
                ReadLimit::first_batch_whole(LOAD_READ_BYTES_MAX),
            );
            let batches = match read {
                Ok(read) if !read.records.is_empty() => read.records,
                Ok(_) => return replayed,
                Err(refusal) => {
                    tracing::error!(partition, offset, error = ?refusal.error, "cannot read {OFFSETS_TOPIC}");
                    return replayed;
                }
            };
            let decoded = match decode_batches(&batches) {
                Ok(decoded) if decoded.next_offset > offset => decoded,
                Ok(_) | Err(_) => {
                    tracing::error!(
                        partition,
                        offset,
                        "undecodable {OFFSETS_TOPIC} batch: load stops here"
                    );
                    return replayed;
                }
            };
            offset = decoded.next_offset;
            let now_ms = shared.now_ms();
            {
                let mut inner = self.lock();
                for record in &decoded.records {
                    if inner.coordinator.replay(record, now_ms) {
                        replayed += 1;
                    }
                }
            }
            // Yield between reads so a large partition does not hold the runtime.
            tokio::task::yield_now().await;
        }
    }

    /// The timer task: `tick` at the coordinator's next deadline (re-read whenever a
    /// request may have moved it) and `expire` every `offsets.retention.check.interval.ms`.
    pub(crate) async fn run_timers(&self, shared: &Shared) {
        let check_ms = shared.config.offsets_retention_check_interval_ms;
        let mut expire_at = shared.now_ms().saturating_add(check_ms);
        loop {
            let changed = self.deadline_changed.notified();
            let now_ms = shared.now_ms();
            let next = self.lock().coordinator.next_deadline();
            let wake_at = next.map_or(expire_at, |d| d.min(expire_at));
            // At least 1 ms: a deadline that a tick did not move must not spin the task
            // (under the simulator, time only advances while tasks sleep).
            let wait = Duration::from_millis(wake_at.saturating_sub(now_ms).max(1) as u64);
            // `biased`: select! otherwise draws from an RNG the simulator does not seed.
            tokio::select! {
                biased;
                _ = changed => continue,
                _ = tokio::time::sleep(wait) => {}
            }
            let now_ms = shared.now_ms();
            let mut inner = self.lock();
            inner.coordinator.tick(now_ms);
            if now_ms >= expire_at {
                let expired = inner.coordinator.expire(now_ms);
                if !expired.offsets.is_empty() || !expired.groups.is_empty() {
                    tracing::info!(
                        offsets = expired.offsets.len(),
                        groups = expired.groups.len(),
                        "expired group offsets"
                    );
                }
                expire_at = now_ms.saturating_add(check_ms);
            }
            drain(&mut inner, shared);
        }
    }
}

/// The partition count of `__consumer_offsets`, if it exists here.
pub(crate) fn offsets_partitions(shared: &Shared) -> Option<i32> {
    shared
        .state()
        .topic(OFFSETS_TOPIC)
        .map(|t| t.partitions.len() as i32)
}

/// Append every write the coordinator made and report its outcome (standalone: committed
/// once appended, the flush policy's sync done inside the append), then hand released
/// answers to their connections. Repeats while reporting makes new writes.
fn drain(inner: &mut Inner, shared: &Shared) {
    // Bound: each round reports writes, which release answers and rarely more writes.
    for _ in 0..64 {
        let writes = inner.coordinator.take_writes();
        if writes.is_empty() {
            break;
        }
        let now_ms = shared.now_ms();
        for write in writes {
            match append_group_records(shared, &write.records, now_ms) {
                Ok(()) => inner.coordinator.records_committed(write.token, now_ms),
                Err(refusal) => {
                    let error = append_error(refusal.error);
                    tracing::warn!(error = ?refusal.error, message = %refusal.message, "{OFFSETS_TOPIC} append failed");
                    inner.coordinator.records_failed(write.token, error, now_ms);
                }
            }
        }
    }
    for (token, response) in inner.coordinator.take_responses() {
        // The receiver is gone when its connection closed meanwhile: nothing to do.
        if let Some(sender) = inner.waiting.remove(&token) {
            let _ = sender.send(response);
        }
    }
    shared.appended.notify_waiters();
}

/// Append one write's records as one batch to its group's partition.
fn append_group_records(
    shared: &Shared,
    records: &[crate::group::GroupRecord],
    now_ms: i64,
) -> Result<(), Refusal> {
    let first = records.first().expect("a write has records");
    let mut state = shared.state();
    let partitions = state
        .topic(OFFSETS_TOPIC)
        .map(|t| t.partitions.len() as i32)
        .ok_or_else(|| {
            Refusal::new(
                ResponseError::UnknownTopicOrPartition,
                format!("{OFFSETS_TOPIC} does not exist"),
            )
        })?;
    let partition = offsets_partition(first.group(), partitions);
    assert!(
        records
            .iter()
            .all(|r| offsets_partition(r.group(), partitions) == partition),
        "one write's records belong to one partition"
    );
    let batch = encode_batch(records, now_ms);
    state
        .produce(OFFSETS_TOPIC, partition, &batch, -1, now_ms)
        .map(|_| ())
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
