//! The client's group consumer against an in-process standalone broker: partitions split
//! and handed over, commits resumed from, a stalled member's partitions lost and its late
//! commit refused, cooperative rebalances, static members rejoining.
#![cfg(not(madsim))]

use bytes::Bytes;
use faultline::client::group::{
    Assignor, GroupConsumer, GroupConsumerConfig, GroupEvent, PositionSource, TopicPartition,
};
use faultline::client::{Client, OffsetReset, Producer, ProducerConfig};
use faultline::record::codec::NewRecord;
use faultline::server::Broker;
use faultline::storage::MemStorage;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::{create_topic, TIMEOUT};
const POLL: Duration = Duration::from_millis(100);

async fn start() -> Broker {
    common::start_broker(&MemStorage::default(), 2, false).await
}

/// `per_partition` records in each partition of `topic`.
async fn produce(addr: &str, topic: &str, partitions: i32, per_partition: usize) {
    let client = Client::new(addr, "producer", TIMEOUT);
    let mut producer = Producer::new(client, ProducerConfig::default())
        .await
        .unwrap();
    for p in 0..partitions {
        for i in 0..per_partition {
            let record = NewRecord {
                timestamp: 0,
                key: None,
                value: Some(Bytes::from(format!("{p}-{i}"))),
                headers: Vec::new(),
            };
            producer.send(topic, Some(p), record).await.unwrap();
        }
    }
    producer.flush().await.unwrap();
}

fn config(group: &str, topic: &str) -> GroupConsumerConfig {
    let mut config = GroupConsumerConfig::new(group, &[topic]);
    config.session_timeout_ms = 6_000;
    config.heartbeat_interval_ms = 200;
    config.max_poll_interval_ms = 5_000;
    config.auto_offset_reset = OffsetReset::Earliest;
    config.fetch.fetch_wait_max = Duration::from_millis(50);
    config
}

fn member(addr: &str, name: &str, config: GroupConsumerConfig) -> GroupConsumer {
    GroupConsumer::new(Client::new(addr, name, TIMEOUT), config)
}

/// Everything one member saw.
#[derive(Default)]
struct Seen {
    events: Vec<GroupEvent>,
    records: BTreeMap<TopicPartition, BTreeSet<i64>>,
}

async fn poll_into(m: &mut GroupConsumer, seen: &mut Seen) {
    let result = m.poll(POLL).await.expect("poll");
    for r in result.records {
        seen.records
            .entry((r.topic.clone(), r.partition))
            .or_default()
            .insert(r.record.offset);
    }
    seen.events.extend(result.events);
}

/// Poll every member together (a join waits for all members) until `done` or 30 s.
async fn poll_all_until(
    members: &mut [&mut GroupConsumer],
    seen: &mut [Seen],
    done: impl Fn(&[&mut GroupConsumer]) -> bool,
) {
    for _ in 0..100 {
        if done(members) {
            return;
        }
        // Each member keeps polling for the round: one blocked in a join must not keep
        // the others from rejoining.
        let until = tokio::time::Instant::now() + Duration::from_millis(300);
        let polls = members
            .iter_mut()
            .zip(seen.iter_mut())
            .map(|(m, s)| async move {
                poll_into(m, s).await;
                while tokio::time::Instant::now() < until {
                    poll_into(m, s).await;
                }
            });
        futures_join_all(polls).await;
    }
    let owned: Vec<_> = members.iter().map(|m| m.assignment().clone()).collect();
    panic!("not done after 100 rounds: {owned:?}");
}

/// Run futures concurrently on this task (a minimal join_all).
async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let handles: Vec<_> = futures.map(Box::pin).collect();
    let mut handles: Vec<Option<_>> = handles.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for slot in handles.iter_mut() {
            if let Some(f) = slot {
                if f.as_mut().poll(cx).is_pending() {
                    pending = true;
                } else {
                    *slot = None;
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await
}

fn all_partitions(topic: &str, n: i32) -> BTreeSet<TopicPartition> {
    (0..n).map(|p| (topic.to_string(), p)).collect()
}

/// The members split the partitions: disjoint, covering, one generation.
fn split(members: &[&mut GroupConsumer], topic: &str, n: i32) -> bool {
    let mut union = BTreeSet::new();
    let generation = members[0].generation();
    for m in members {
        if m.assignment().is_empty() || m.generation() != generation || generation < 0 {
            return false;
        }
        for tp in m.assignment() {
            if !union.insert(tp.clone()) {
                return false;
            }
        }
    }
    union == all_partitions(topic, n)
}

#[tokio::test]
async fn two_members_split_a_topic_and_one_closing_hands_over() {
    let broker = start().await;
    let addr = broker.local_addr().to_string();
    create_topic(&addr, "t", 4).await;
    produce(&addr, "t", 4, 10).await;
    let mut a = member(&addr, "a", config("g1", "t"));
    let mut b = member(&addr, "b", config("g1", "t"));
    let mut seen = [Seen::default(), Seen::default()];
    poll_all_until(&mut [&mut a, &mut b], &mut seen, |ms| split(ms, "t", 4)).await;
    assert_eq!(
        a.protocol(),
        Some(Assignor::Range),
        "Java's default list picks range"
    );
    assert_eq!(a.assignment().len(), 2);

    let last = b.close().await;
    assert!(
        last.iter().any(|e| matches!(e, GroupEvent::Revoked { .. })),
        "{last:?}"
    );
    let mut seen_a = [std::mem::take(&mut seen[0])];
    poll_all_until(&mut [&mut a], &mut seen_a, |ms| {
        ms[0].assignment() == &all_partitions("t", 4)
            && (0..4).all(|p| ms[0].position("t", p) == Some(10))
    })
    .await;
    let events = &seen_a[0].events;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, GroupEvent::Revoked { .. })),
        "eager revoke"
    );
    let mut assigned = events.iter().filter_map(|e| match e {
        GroupEvent::Assigned { partitions, .. } => Some(partitions.len()),
        _ => None,
    });
    assert_eq!(assigned.next_back(), Some(4));
    a.close().await;
}

#[tokio::test]
async fn a_new_member_resumes_from_the_committed_offsets() {
    let broker = start().await;
    let addr = broker.local_addr().to_string();
    create_topic(&addr, "t", 2).await;
    produce(&addr, "t", 2, 5).await;
    let mut cfg = config("g2", "t");
    cfg.enable_auto_commit = false;
    let mut a = member(&addr, "a", cfg.clone());
    let mut seen = [Seen::default()];
    poll_all_until(&mut [&mut a], &mut seen, |ms| {
        (0..2).all(|p| ms[0].position("t", p) == Some(5))
    })
    .await;
    let mut offsets = a.positions();
    offsets.insert(("t".into(), 0), 3);
    a.commit_sync(offsets).await.unwrap();
    let events = a.close().await;
    assert!(events.iter().any(|e| matches!(
        e,
        GroupEvent::CommitFinished {
            result: faultline::client::group::CommitResult::Ok,
            ..
        }
    )));

    cfg.auto_offset_reset = OffsetReset::Latest;
    let mut b = member(&addr, "b", cfg);
    let mut seen = [Seen::default()];
    poll_all_until(&mut [&mut b], &mut seen, |ms| {
        (0..2).all(|p| ms[0].position("t", p) == Some(5))
    })
    .await;
    assert!(seen[0].events.contains(&GroupEvent::Positioned {
        topic: "t".into(),
        partition: 0,
        offset: 3,
        source: PositionSource::Committed,
    }));
    assert_eq!(
        seen[0].records[&("t".to_string(), 0)],
        BTreeSet::from([3, 4])
    );
    assert!(!seen[0].records.contains_key(&("t".to_string(), 1)));
    b.close().await;
}

#[tokio::test]
async fn a_stalled_member_loses_its_partitions_and_its_late_commit_fails() {
    let broker = start().await;
    let addr = broker.local_addr().to_string();
    create_topic(&addr, "t", 4).await;
    let mut cfg = config("g3", "t");
    cfg.max_poll_interval_ms = 1_500;
    cfg.enable_auto_commit = false;
    let mut a = member(&addr, "a", cfg.clone());
    let mut b = member(&addr, "b", cfg);
    let mut seen = [Seen::default(), Seen::default()];
    poll_all_until(&mut [&mut a, &mut b], &mut seen, |ms| split(ms, "t", 4)).await;
    let stale_generation = a.generation();

    // a stops polling: its heartbeat task leaves the group; b takes everything.
    let mut seen_b = [Seen::default()];
    poll_all_until(&mut [&mut b], &mut seen_b, |ms| {
        ms[0].assignment() == &all_partitions("t", 4)
    })
    .await;
    assert!(b.generation() > stale_generation);

    let late = a.commit_sync(a.positions()).await.unwrap_err();
    let code = match late {
        faultline::client::ClientError::Kafka { error, .. } => error,
        other => panic!("{other:?}"),
    };
    assert!(
        code == ResponseError::UnknownMemberId || code == ResponseError::IllegalGeneration,
        "{code:?}"
    );
    let result = a.poll(POLL).await.unwrap();
    assert!(
        result.events.iter().any(
            |e| matches!(e, GroupEvent::Lost { generation, .. } if *generation == stale_generation)
        ),
        "{:?}",
        result.events
    );
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn cooperative_sticky_keeps_partitions_when_a_third_member_joins() {
    let broker = start().await;
    let addr = broker.local_addr().to_string();
    create_topic(&addr, "t", 6).await;
    let mut cfg = config("g4", "t");
    cfg.assignors = vec![Assignor::CooperativeSticky];
    let mut a = member(&addr, "a", cfg.clone());
    let mut b = member(&addr, "b", cfg.clone());
    let mut seen = [Seen::default(), Seen::default(), Seen::default()];
    {
        let (first, _) = seen.split_at_mut(2);
        poll_all_until(&mut [&mut a, &mut b], first, |ms| split(ms, "t", 6)).await;
    }
    let (before_a, before_b) = (a.assignment().clone(), b.assignment().clone());
    let mut c = member(&addr, "c", cfg);
    poll_all_until(&mut [&mut a, &mut b, &mut c], &mut seen, |ms| {
        split(ms, "t", 6) && ms.iter().all(|m| m.assignment().len() == 2)
    })
    .await;
    assert!(a.assignment().is_subset(&before_a));
    assert!(b.assignment().is_subset(&before_b));
    assert!(
        !seen[0]
            .events
            .iter()
            .any(|e| matches!(e, GroupEvent::Lost { .. })),
        "{:?}",
        seen[0].events
    );
    // No partition is owned by two members in one generation.
    let mut by_generation: BTreeMap<i32, Vec<BTreeSet<TopicPartition>>> = BTreeMap::new();
    for s in &seen {
        for e in &s.events {
            if let GroupEvent::Assigned {
                generation,
                partitions,
                ..
            } = e
            {
                let set = partitions.iter().cloned().collect();
                by_generation.entry(*generation).or_default().push(set);
            }
        }
    }
    for (generation, sets) in by_generation {
        let total: usize = sets.iter().map(|s| s.len()).sum();
        let union: BTreeSet<_> = sets.iter().flatten().collect();
        assert_eq!(total, union.len(), "generation {generation}: {sets:?}");
    }
    for m in [a, b, c] {
        m.close().await;
    }
}

#[tokio::test]
async fn a_static_member_restarting_within_the_session_keeps_its_assignment() {
    let broker = start().await;
    let addr = broker.local_addr().to_string();
    create_topic(&addr, "t", 4).await;
    let static_config = |instance: &str| {
        let mut cfg = config("g5", "t");
        cfg.group_instance_id = Some(instance.to_string());
        cfg
    };
    let mut a = member(&addr, "a", static_config("i-a"));
    let mut b = member(&addr, "b", static_config("i-b"));
    let mut seen = [Seen::default(), Seen::default()];
    poll_all_until(&mut [&mut a, &mut b], &mut seen, |ms| split(ms, "t", 4)).await;
    let (generation, owned) = (a.generation(), a.assignment().clone());
    a.close().await;

    let mut a2 = member(&addr, "a2", static_config("i-a"));
    let mut seen = [Seen::default(), Seen::default()];
    poll_all_until(&mut [&mut a2, &mut b], &mut seen, |ms| split(ms, "t", 4)).await;
    assert_eq!(
        a2.generation(),
        generation,
        "no rebalance for a static restart"
    );
    assert_eq!(b.generation(), generation);
    assert_eq!(a2.assignment(), &owned);
    for m in [a2, b] {
        m.close().await;
    }
}

/// Run the `faultline` binary, returning its stdout lines.
async fn faultline_cli(args: Vec<String>) -> Vec<String> {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args(&args)
            .output()
            .expect("faultline runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "stderr of {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_consume_with_a_group_commits_and_resumes() {
    let broker = start().await;
    let addr = broker.local_addr().to_string();
    create_topic(&addr, "c", 1).await;
    produce(&addr, "c", 1, 6).await;
    let args = |extra: &[&str]| {
        let mut v: Vec<String> = ["consume", "--bootstrap-server", &addr, "--topic", "c"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let first = faultline_cli(args(&[
        "--group",
        "cg",
        "--from-beginning",
        "--max-messages",
        "4",
    ]))
    .await;
    assert_eq!(first, ["0-0", "0-1", "0-2", "0-3"]);
    // The same group resumes after the four printed records (committed on exit).
    let second = faultline_cli(args(&[
        "--group",
        "cg",
        "--from-beginning",
        "--timeout-ms",
        "3000",
    ]))
    .await;
    assert_eq!(second, ["0-4", "0-5"]);
}

/// Collects what a `GroupListener` hears.
struct Heard(Arc<std::sync::Mutex<Vec<GroupEvent>>>);

impl faultline::client::group::GroupListener for Heard {
    fn on_event(&mut self, event: &GroupEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

/// The listener hears every event `poll` and `close` return, in the same order, and an
/// auto-commit's start before the poll that made it returns.
#[tokio::test]
async fn the_listener_hears_each_event_as_poll_returns_it() {
    let broker = start().await;
    let addr = broker.local_addr().to_string();
    create_topic(&addr, "t", 2).await;
    produce(&addr, "t", 2, 3).await;
    let mut cfg = config("g-listener", "t");
    cfg.auto_commit_interval_ms = 100;
    let mut a = member(&addr, "a", cfg);
    let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
    a.set_listener(Box::new(Heard(heard.clone())));
    let mut seen = [Seen::default()];
    poll_all_until(&mut [&mut a], &mut seen, |ms| {
        (0..2).all(|p| ms[0].position("t", p) == Some(3))
    })
    .await;
    // Keep polling past the auto-commit interval: its events come with a poll.
    for _ in 0..5 {
        poll_into(&mut a, &mut seen[0]).await;
    }
    let mut returned = std::mem::take(&mut seen[0].events);
    returned.extend(a.close().await);
    let heard = heard.lock().unwrap().clone();
    assert_eq!(heard, returned);
    assert!(heard
        .iter()
        .any(|e| matches!(e, GroupEvent::Assigned { .. })));
    assert!(heard
        .iter()
        .any(|e| matches!(e, GroupEvent::CommitStarted { .. })));
    assert!(heard
        .iter()
        .any(|e| matches!(e, GroupEvent::Revoked { .. })));
}

/// Disjoint assignments covering every partition, whatever each member's epoch (KIP-848
/// members move to new epochs one at a time).
fn covered(members: &[&mut GroupConsumer], topic: &str, n: i32) -> bool {
    let mut union = BTreeSet::new();
    for m in members {
        for tp in m.assignment() {
            if !union.insert(tp.clone()) {
                return false;
            }
        }
    }
    union == all_partitions(topic, n)
}

#[tokio::test]
async fn consumer_protocol_members_split_by_the_brokers_assignor_and_hand_over() {
    let broker = start().await;
    let addr = broker.local_addr().to_string();
    create_topic(&addr, "t848", 4).await;
    produce(&addr, "t848", 4, 10).await;
    let kip848 = || {
        let mut c = config("g848", "t848");
        c.group_protocol = faultline::client::group::GroupProtocol::Consumer;
        c
    };
    let mut a = member(&addr, "a", kip848());
    let mut b = member(&addr, "b", kip848());
    let mut seen = [Seen::default(), Seen::default()];
    poll_all_until(&mut [&mut a, &mut b], &mut seen, |ms| {
        covered(ms, "t848", 4) && ms.iter().all(|m| m.assignment().len() == 2)
    })
    .await;
    assert!(a.generation() >= 1 && b.generation() >= 1);
    let last = b.close().await;
    assert!(
        last.iter().any(|e| matches!(e, GroupEvent::Revoked { .. })),
        "{last:?}"
    );
    let mut seen_a = [std::mem::take(&mut seen[0])];
    poll_all_until(&mut [&mut a], &mut seen_a, |ms| {
        ms[0].assignment() == &all_partitions("t848", 4)
            && (0..4).all(|p| ms[0].position("t848", p) == Some(10))
    })
    .await;
    let assigned = seen_a[0].events.iter().rev().find_map(|e| match e {
        GroupEvent::Assigned { partitions, .. } => Some(partitions.len()),
        _ => None,
    });
    assert_eq!(assigned, Some(4));
    a.close().await;
}
