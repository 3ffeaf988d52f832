//! Consumer-group members: one node per `[[consumer]]` with a `group`, running the
//! project's group consumer. A killed member's node restarts as a new process (a new
//! member, or the same static member). Every group event goes to the history: joins and
//! assignments with their generation, revocations and losses, positions, commits (invoke,
//! then ok / fail / info) and which records the application processed.
//!
//! After healing, `settle` waits until every group has consumed to the end (its committed
//! offsets, or what it processed when it never commits, reach each partition's log end);
//! then the members close and the final read runs.

use super::cluster::Cluster;
use super::recorder::{op, record, Shared};
use super::CLIENT_TIMEOUT;
use crate::history::{Op, OpKind, Phase};
use crate::scenario::{CommitPolicy, ConsumerSpec, GroupProtocolSpec, OffsetResetSpec, Scenario};
use faultline::client::group::{
    Assignor, CommitResult, GroupConsumer, GroupConsumerConfig, GroupEvent, GroupListener,
    TopicPartition,
};
use faultline::client::{Client, ConsumedRecord, OffsetReset};
use madsim::time::{sleep, Instant};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one poll waits for records.
const POLL_TIMEOUT: Duration = Duration::from_millis(200);

/// What a member's loop runs with (cloned into each incarnation of its node).
#[derive(Clone)]
pub(super) struct MemberRun {
    pub(super) name: String,
    pub(super) bootstrap: String,
    pub(super) rec: Shared,
    /// Time zero of the run.
    pub(super) start: Instant,
    /// Set once every group consumed to the end after healing: members close.
    pub(super) done: Arc<AtomicBool>,
    pub(super) spec: ConsumerSpec,
}

/// The group consumer's settings from the scenario, Kafka's defaults elsewhere.
fn member_config(
    spec: &ConsumerSpec,
    fetch: faultline::client::ConsumerConfig,
) -> GroupConsumerConfig {
    let group = spec.group.as_ref().expect("a group member").get_ref();
    let mut config = GroupConsumerConfig::new(group, &[spec.topic.get_ref().as_str()]);
    if let Some(a) = &spec.assignor {
        config.assignors = a
            .get_ref()
            .names()
            .iter()
            .filter_map(|n| Assignor::from_name(n))
            .collect();
    }
    let ms = |d: &Option<toml::Spanned<crate::scenario::Dur>>| {
        d.as_ref().map(|d| d.get_ref().0.as_millis() as u64)
    };
    if let Some(v) = ms(&spec.session_timeout) {
        config.session_timeout_ms = v as i32;
    }
    if let Some(v) = ms(&spec.heartbeat_interval) {
        config.heartbeat_interval_ms = v;
    }
    if let Some(v) = ms(&spec.max_poll_interval) {
        config.max_poll_interval_ms = v.min(i32::MAX as u64) as i32;
    }
    if let Some(v) = ms(&spec.auto_commit_interval) {
        config.auto_commit_interval_ms = v;
    }
    if let Some(n) = &spec.max_poll_records {
        config.max_poll_records = n.get_ref().get() as usize;
    }
    config.group_instance_id = spec.static_id.as_ref().map(|s| s.get_ref().clone());
    config.auto_offset_reset = match spec.auto_offset_reset.as_ref().map(|r| *r.get_ref()) {
        Some(OffsetResetSpec::Earliest) => OffsetReset::Earliest,
        Some(OffsetResetSpec::None) => OffsetReset::None,
        Some(OffsetResetSpec::Latest) | None => OffsetReset::Latest,
    };
    config.enable_auto_commit = policy(spec) == CommitPolicy::Auto;
    if spec.group_protocol.as_ref().map(|p| *p.get_ref()) == Some(GroupProtocolSpec::Consumer) {
        config.group_protocol = faultline::client::group::GroupProtocol::Consumer;
    }
    config.fetch = fetch;
    config
}

/// The member's commit policy (default `auto`).
pub(super) fn policy(spec: &ConsumerSpec) -> CommitPolicy {
    spec.commit
        .as_ref()
        .map_or(CommitPolicy::Auto, |c| *c.get_ref())
}

/// One incarnation of a member: join, poll, process and commit as its policy says,
/// until the run is done with groups (or its window closes), then close.
pub(super) async fn member_loop(run: MemberRun, fetch: faultline::client::ConsumerConfig) {
    let spec = run.spec.clone();
    let begin = spec
        .start
        .as_ref()
        .map_or(Duration::ZERO, |s| s.get_ref().0);
    super::sleep_until(run.start, begin).await;
    let end = spec.stop.as_ref().map(|s| run.start + s.get_ref().0);
    let client = Client::new(&run.bootstrap, &run.name, CLIENT_TIMEOUT);
    let mut consumer = GroupConsumer::new(client, member_config(&spec, fetch));
    // The history hears every group event when it happens (an auto-commit inside poll,
    // a revoke before the rejoin), not when poll returns.
    let book = Arc::new(Mutex::new(Book::new(&run)));
    consumer.set_listener(Box::new(BookListener(book.clone())));
    let processing = spec
        .processing
        .as_ref()
        .map_or(Duration::ZERO, |d| d.get_ref().0);
    let pause = spec
        .pause_every
        .as_ref()
        .zip(spec.pause_for.as_ref())
        .map(|(e, f)| (e.get_ref().0, f.get_ref().0));
    let mut stall = Stall {
        every_for: pause,
        next: pause.map(|(every, _)| Instant::now() + every),
    };
    while !run.done.load(Ordering::SeqCst) && end.is_none_or(|e| Instant::now() < e) {
        let before = consumer.positions();
        match consumer.poll(POLL_TIMEOUT).await {
            Ok(poll) => {
                book.lock().unwrap().polls(&poll.records, &before);
                let batch = Batch {
                    records: poll.records,
                    processing,
                };
                process(&mut consumer, &book, &spec, batch, &mut stall).await;
            }
            Err(e) => {
                tracing::debug!(member = %run.name, error = %e, "group poll failed");
                consumer.take_events();
                sleep(Duration::from_millis(100)).await;
            }
        }
    }
    consumer.close().await;
}

/// Hands the consumer's events to the member's book.
struct BookListener(Arc<Mutex<Book>>);

impl GroupListener for BookListener {
    fn on_event(&mut self, event: &GroupEvent) {
        self.0.lock().unwrap().event(event);
    }
}

/// `pause_every` / `pause_for`: the application stalls after processing a batch, before
/// committing it (heartbeats go on in the background), as a member stuck past
/// max.poll.interval.ms whose late commit then meets a newer generation.
struct Stall {
    every_for: Option<(Duration, Duration)>,
    next: Option<Instant>,
}

impl Stall {
    async fn maybe(&mut self) {
        if let (Some(at), Some((every, length))) = (self.next, self.every_for) {
            if Instant::now() >= at {
                sleep(length).await;
                self.next = Some(Instant::now() + every);
            }
        }
    }
}

/// One poll's records and the time each takes to process.
struct Batch {
    records: Vec<ConsumedRecord>,
    processing: Duration,
}

/// Process one poll's records as the policy says: commit first (at-most-once; a batch
/// whose commit failed is dropped), or process then commit (sync or async), or let
/// auto-commit take the positions at the next poll.
async fn process(
    consumer: &mut GroupConsumer,
    book: &Mutex<Book>,
    spec: &ConsumerSpec,
    batch: Batch,
    stall: &mut Stall,
) {
    let Batch {
        records,
        processing,
    } = batch;
    if records.is_empty() {
        stall.maybe().await;
        return;
    }
    let next: BTreeMap<TopicPartition, i64> = records
        .iter()
        .map(|r| ((r.topic.clone(), r.partition), r.record.offset + 1))
        .collect();
    let policy = policy(spec);
    if policy == CommitPolicy::BeforeProcessing {
        let result = consumer.commit_sync(next.clone()).await;
        consumer.take_events();
        if result.is_err() {
            return;
        }
    }
    let generation = consumer.generation();
    let member = consumer.member_id().to_string();
    if processing.is_zero() {
        let mut by_partition: BTreeMap<TopicPartition, Vec<(i64, String)>> = BTreeMap::new();
        for r in &records {
            by_partition
                .entry((r.topic.clone(), r.partition))
                .or_default()
                .push((r.record.offset, super::workloads::value_id(&r.record.value)));
        }
        for ((topic, partition), done) in by_partition {
            book.lock()
                .unwrap()
                .processed(&topic, partition, done, generation, &member);
        }
    } else {
        for r in &records {
            sleep(processing).await;
            let done = vec![(r.record.offset, super::workloads::value_id(&r.record.value))];
            book.lock()
                .unwrap()
                .processed(&r.topic, r.partition, done, generation, &member);
        }
    }
    stall.maybe().await;
    match policy {
        CommitPolicy::SyncAfterProcessing => {
            let _ = consumer.commit_sync(next).await;
        }
        CommitPolicy::Async => {
            consumer.commit_async(next).await;
        }
        CommitPolicy::Auto | CommitPolicy::BeforeProcessing | CommitPolicy::None => {}
    }
    consumer.take_events();
}

/// Writes a member's operations to the history, remembering each commit's partitions
/// until it finishes.
struct Book {
    name: String,
    group: String,
    rec: Shared,
    member: String,
    /// A KIP-848 member: its generations are member epochs.
    member_epoch: bool,
    commits: BTreeMap<u64, Vec<Op>>,
    /// Positions set since the last poll was recorded: that poll's records start there.
    positioned: BTreeMap<TopicPartition, i64>,
}

impl Book {
    fn new(run: &MemberRun) -> Book {
        Book {
            name: run.name.clone(),
            group: run.spec.group.as_ref().expect("a member").get_ref().clone(),
            rec: run.rec.clone(),
            member: String::new(),
            member_epoch: run.spec.group_protocol.as_ref().map(|p| *p.get_ref())
                == Some(GroupProtocolSpec::Consumer),
            commits: BTreeMap::new(),
            positioned: BTreeMap::new(),
        }
    }

    fn op(&self, kind: OpKind, phase: Phase, topic: &str, partition: i32, generation: i32) -> Op {
        let mut o = op(&self.name, kind, phase, topic, partition);
        o.group = Some(self.group.clone());
        o.generation = Some(generation);
        o.member = Some(self.member.clone()).filter(|m| !m.is_empty());
        o.member_epoch = self.member_epoch;
        o
    }

    /// Record one group event as it happens.
    fn event(&mut self, event: &GroupEvent) {
        match event {
            GroupEvent::JoinSent {
                member_id,
                generation,
            } => {
                // Join invoke: the member (as sent) asks to join after `generation`.
                let mut o = op(&self.name, OpKind::Join, Phase::Invoke, "", -1);
                o.group = Some(self.group.clone());
                o.generation = Some(*generation);
                o.member = Some(member_id.clone()).filter(|m| !m.is_empty());
                record(&self.rec, o);
            }
            GroupEvent::Led {
                generation,
                members,
            } => {
                let mut o = self.op(OpKind::Join, Phase::Info, "", -1, *generation);
                o.members = members
                    .iter()
                    .filter(|(_, instance)| instance.is_none())
                    .map(|(member, _)| member.clone())
                    .collect();
                record(&self.rec, o);
            }
            GroupEvent::Assigned {
                generation,
                member_id,
                partitions,
            } => {
                self.member = member_id.clone();
                record(
                    &self.rec,
                    self.op(OpKind::Join, Phase::Ok, "", -1, *generation),
                );
                for (t, p) in partitions {
                    record(
                        &self.rec,
                        self.op(OpKind::Assign, Phase::Ok, t, *p, *generation),
                    );
                }
            }
            GroupEvent::Revoked {
                generation,
                partitions,
            } => {
                for (t, p) in partitions {
                    record(
                        &self.rec,
                        self.op(OpKind::Revoke, Phase::Ok, t, *p, *generation),
                    );
                }
            }
            GroupEvent::Lost {
                generation,
                partitions,
            } => {
                for (t, p) in partitions {
                    let mut o = self.op(OpKind::Revoke, Phase::Info, t, *p, *generation);
                    o.error = Some("lost".into());
                    record(&self.rec, o);
                }
            }
            GroupEvent::Positioned {
                topic,
                partition,
                offset,
                ..
            } => {
                let mut o = op(&self.name, OpKind::Seek, Phase::Ok, topic, *partition);
                o.offset = Some(*offset);
                record(&self.rec, o);
                self.positioned.insert((topic.clone(), *partition), *offset);
            }
            GroupEvent::CommitStarted {
                id,
                generation,
                member_id,
                offsets,
            } => {
                let ops: Vec<Op> = offsets
                    .iter()
                    .map(|((t, p), offset)| {
                        let mut o = self.op(OpKind::Commit, Phase::Invoke, t, *p, *generation);
                        o.member = Some(member_id.clone());
                        o.offset = Some(*offset);
                        o
                    })
                    .collect();
                for o in &ops {
                    record(&self.rec, o.clone());
                }
                self.commits.insert(*id, ops);
            }
            GroupEvent::CommitFinished { id, result } => {
                let Some(ops) = self.commits.remove(id) else {
                    return;
                };
                let (phase, error) = match result {
                    CommitResult::Ok => (Phase::Ok, None),
                    CommitResult::Failed { code, message } => {
                        (Phase::Fail, Some(format!("error {code}: {message}")))
                    }
                    CommitResult::Unknown { message } => (Phase::Info, Some(message.clone())),
                    CommitResult::NotSent { message } => (Phase::Fail, Some(message.clone())),
                };
                for mut o in ops {
                    o.phase = phase;
                    o.error = error.clone();
                    record(&self.rec, o);
                }
            }
        }
    }

    /// One Poll op per partition that returned records, from where the fetch started.
    fn polls(&mut self, records: &[ConsumedRecord], before: &BTreeMap<TopicPartition, i64>) {
        let positioned = std::mem::take(&mut self.positioned);
        let mut by_partition: BTreeMap<TopicPartition, Vec<(i64, String)>> = BTreeMap::new();
        for r in records {
            by_partition
                .entry((r.topic.clone(), r.partition))
                .or_default()
                .push((r.record.offset, super::workloads::value_id(&r.record.value)));
        }
        for (tp, seen) in by_partition {
            let mut o = op(&self.name, OpKind::Poll, Phase::Ok, &tp.0, tp.1);
            o.offset = positioned
                .get(&tp)
                .or_else(|| before.get(&tp))
                .copied()
                .or_else(|| seen.first().map(|(offset, _)| *offset));
            o.records = seen;
            record(&self.rec, o);
        }
    }

    fn processed(
        &self,
        topic: &str,
        partition: i32,
        records: Vec<(i64, String)>,
        generation: i32,
        member: &str,
    ) {
        let mut o = self.op(OpKind::Process, Phase::Ok, topic, partition, generation);
        o.member = Some(member.to_string()).filter(|m| !m.is_empty());
        o.records = records;
        record(&self.rec, o);
    }
}

/// The groups of a scenario: group → (topic, partitions, whether any member commits).
fn groups_of(scenario: &Scenario) -> BTreeMap<String, (String, i32, bool)> {
    let mut groups: BTreeMap<String, (String, i32, bool)> = BTreeMap::new();
    for c in &scenario.consumers {
        let Some(group) = &c.group else { continue };
        let partitions = scenario
            .topics
            .iter()
            .find(|t| t.name.get_ref() == c.topic.get_ref())
            .map_or(1, |t| t.partitions.get_ref().get());
        let entry = groups
            .entry(group.get_ref().clone())
            .or_insert_with(|| (c.topic.get_ref().clone(), partitions, false));
        entry.2 |= policy(c) != CommitPolicy::None;
    }
    groups
}

/// After healing: wait until every group consumed to the end, that is, for every
/// partition of its topic, its committed offset as the coordinator answers it (or, for a
/// group that never commits, what it processed) reaches the partition's log end. Then the members close.
/// What is still short at `deadline`, if anything.
pub(super) async fn settle(
    scenario: &Scenario,
    cluster: &Cluster,
    rec: &Shared,
    done: &Arc<AtomicBool>,
    deadline: Instant,
) -> Option<String> {
    let groups = groups_of(scenario);
    if groups.is_empty() {
        return None;
    }
    let (bootstrap, rec) = (cluster.bootstrap.clone(), rec.clone());
    let check = cluster.admin.spawn(async move {
        let mut client = Client::new(&bootstrap, "group-settle", CLIENT_TIMEOUT);
        let mut short = String::from("no log end offsets");
        while Instant::now() < deadline {
            match short_of_end(&mut client, &groups, &rec).await {
                Some(Ok(())) => return None,
                Some(Err(what)) => short = what,
                None => client.disconnect_all(),
            }
            sleep(Duration::from_millis(250)).await;
        }
        Some(short)
    });
    let short = check.await.ok().flatten();
    done.store(true, Ordering::SeqCst);
    // Members see `done` at their next poll and leave their groups.
    sleep(POLL_TIMEOUT * 2).await;
    short.map(|what| format!("a group did not consume to the end after healing: {what}"))
}

/// Ok when every group reached every log end; Err naming the first partition short of
/// it; None when an offset could not be read. A committing group's committed offsets are
/// asked of its coordinator (what a restarted member would resume from), not taken from
/// the history.
async fn short_of_end(
    client: &mut Client,
    groups: &BTreeMap<String, (String, i32, bool)>,
    rec: &Shared,
) -> Option<Result<(), String>> {
    for (group, (topic, partitions, commits)) in groups {
        let committed = match commits {
            true => Some(committed_offsets(client, group, topic).await?),
            false => None,
        };
        for partition in 0..*partitions {
            let end = client.list_offset(topic, partition, -1).await.ok()?;
            let reached = match &committed {
                Some(offsets) => offsets
                    .get(&(topic.clone(), partition))
                    .copied()
                    .unwrap_or(0),
                None => processed_end(rec, group, topic, partition),
            };
            if reached < end {
                let what = if *commits { "committed" } else { "processed" };
                return Some(Err(format!(
                    "group {group} {what} {topic}/{partition} up to offset {reached} of {end}"
                )));
            }
        }
    }
    Some(Ok(()))
}

/// The committed offsets of `group` for `topic`, asked of the group's coordinator
/// (FindCoordinator through any broker, then OffsetFetch); None when no answer.
async fn committed_offsets(
    client: &mut Client,
    group: &str,
    topic: &str,
) -> Option<BTreeMap<(String, i32), i64>> {
    use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, GroupId, OffsetFetchRequest};
    use kafka_protocol::protocol::StrBytes;
    let s = |text: &str| StrBytes::from_string(text.to_string());
    if client.brokers().is_empty() {
        client.refresh_metadata(Some(&[]), false).await.ok()?;
    }
    let brokers: Vec<i32> = client.brokers().keys().copied().collect();
    let mut coordinator = None;
    for id in brokers {
        let Ok(conn) = client.connection(id).await else {
            continue;
        };
        conn.pin_version(ApiKey::FindCoordinator, 2);
        let req = FindCoordinatorRequest::default().with_key(s(group));
        if let Ok(resp) = conn.request(&req).await {
            if resp.error_code == 0 {
                coordinator = Some(resp.node_id.0);
                break;
            }
        }
    }
    let conn = client.connection(coordinator?).await.ok()?;
    conn.pin_version(ApiKey::OffsetFetch, 7);
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(None);
    let resp = conn.request(&req).await.ok()?;
    if resp.error_code != 0 {
        return None;
    }
    Some(
        resp.topics
            .iter()
            .filter(|t| t.name.as_str() == topic)
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter(|p| p.error_code == 0 && p.committed_offset >= 0)
                    .map(|p| ((t.name.to_string(), p.partition_index), p.committed_offset))
            })
            .collect(),
    )
}

/// One past the highest offset of a partition a (never committing) group processed.
fn processed_end(rec: &Shared, group: &str, topic: &str, partition: i32) -> i64 {
    let r = rec.lock().unwrap();
    r.history
        .ops
        .iter()
        .filter(|o| {
            o.kind == OpKind::Process
                && o.group.as_deref() == Some(group)
                && o.topic == topic
                && o.partition == partition
        })
        .flat_map(|o| o.records.iter().map(|(offset, _)| offset + 1))
        .max()
        .unwrap_or(0)
}

/// `groups_stable_after`: the first generation a group formed between `after` and the end
/// of the safety phase beyond the newest it had at `after`, as a sentence.
pub(super) fn rebalanced_after(rec: &Shared, after: Duration, until: Duration) -> Option<String> {
    let r = rec.lock().unwrap();
    let (after_ns, until_ns) = (after.as_nanos() as u64, until.as_nanos() as u64);
    let mut newest: BTreeMap<&str, i32> = BTreeMap::new();
    for o in &r.history.ops {
        if o.kind != OpKind::Join || o.phase != Phase::Ok || o.time_ns > until_ns {
            continue;
        }
        let (Some(group), Some(generation)) = (o.group.as_deref(), o.generation) else {
            continue;
        };
        let known = newest.entry(group).or_insert(generation);
        if o.time_ns > after_ns && generation > *known {
            return Some(format!(
                "group {group} formed generation {generation} at {:.3}s, after {after:?} (it had \
                 generation {known} then): a rebalance the scenario says must not happen",
                o.time_ns as f64 / 1e9
            ));
        }
        *known = (*known).max(generation);
    }
    None
}
