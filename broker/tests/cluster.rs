//! A real cluster in one process: 3 controllers and 3 brokers on loopback, each with its own
//! in-memory disk (so killing a node can drop its unsynced writes, as power loss does).
#![cfg(not(madsim))]

use bytes::Bytes;
use faultline::client::{
    Acks, Client, Consumer, ConsumerConfig, NewTopic, Producer, ProducerConfig,
};
use faultline::config::BrokerConfig;
use faultline::controller::{ControllerNode, ControllerNodeConfig};
use faultline::record::codec::NewRecord;
use faultline::server::Broker;
use faultline::storage::MemStorage;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Cluster {
    voters: Vec<(i32, SocketAddr)>,
    controllers: Vec<Option<ControllerNode>>,
    brokers: Vec<Option<Broker>>,
    broker_disks: Vec<MemStorage>,
    broker_addrs: Vec<SocketAddr>,
}

impl Cluster {
    /// Three controllers and three brokers on free ports. A port found free can be taken by
    /// another test process before the node binds it (nextest runs test binaries in
    /// parallel): then the whole cluster starts again on new ports.
    async fn start() -> Cluster {
        let mut last_error = String::new();
        for _ in 0..5 {
            match Cluster::try_start().await {
                Ok(cluster) => return cluster,
                Err(e) => last_error = e,
            }
        }
        panic!("the cluster did not start in 5 attempts: {last_error}");
    }

    async fn try_start() -> Result<Cluster, String> {
        let voters: Vec<(i32, SocketAddr)> = (0..3)
            .map(|i| {
                (
                    1001 + i,
                    format!("127.0.0.1:{}", free_port()).parse().unwrap(),
                )
            })
            .collect();
        let mut controllers = Vec::new();
        for (id, addr) in &voters {
            let mut config = ControllerNodeConfig::new(*id, *addr, voters.clone(), "/meta".into());
            config.controller.session_timeout_ms = 3_000;
            config.election_timeout_ms = 500;
            let node = ControllerNode::start(config, Arc::new(MemStorage::default()))
                .await
                .map_err(|e| format!("controller {id} on {addr}: {e}"))?;
            controllers.push(Some(node));
        }
        let mut cluster = Cluster {
            voters,
            controllers,
            brokers: Vec::new(),
            broker_disks: Vec::new(),
            broker_addrs: Vec::new(),
        };
        for i in 0..3 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            cluster.broker_addrs.push(addr);
            cluster.broker_disks.push(MemStorage::default());
            cluster.brokers.push(None);
            cluster.try_start_broker(i).await?;
        }
        Ok(cluster)
    }

    async fn start_broker(&mut self, i: usize) {
        self.try_start_broker(i).await.expect("broker starts");
    }

    async fn try_start_broker(&mut self, i: usize) -> Result<(), String> {
        let config = BrokerConfig {
            node_id: i as i32 + 1,
            listen: self.broker_addrs[i],
            data_dir: "/data".into(),
            controller_quorum_voters: self.voters.clone(),
            broker_heartbeat_interval_ms: 300,
            replica_lag_time_max_ms: 2_000,
            replica_fetch_wait_max_ms: 100,
            offsets_topic_num_partitions: 3,
            ..Default::default()
        };
        let mut config = config;
        config.group.initial_rebalance_delay_ms = 0;
        let listen = config.listen;
        let broker = Broker::start(config, Arc::new(self.broker_disks[i].clone()))
            .await
            .map_err(|e| format!("broker {} on {listen}: {e}", i + 1))?;
        self.brokers[i] = Some(broker);
        Ok(())
    }

    /// Power loss: the process stops and its disk drops unsynced writes.
    async fn power_off_broker(&mut self, i: usize) {
        if let Some(b) = self.brokers[i].take() {
            b.kill().await;
        }
        self.broker_disks[i].crash();
    }

    fn bootstrap(&self) -> String {
        self.broker_addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn value(i: usize) -> NewRecord {
    NewRecord {
        timestamp: 1_000 + i as i64,
        key: None,
        value: Some(Bytes::from(format!("v{i}"))),
        headers: Vec::new(),
    }
}

async fn wait_for_leader(bootstrap: &str, topic: &str) -> i32 {
    for _ in 0..200 {
        let mut client = Client::new(bootstrap, "probe", TIMEOUT);
        if let Ok(topics) = client.refresh_metadata(Some(&[topic]), false).await {
            if let Some(p) = topics.first().and_then(|t| t.partitions.first()) {
                if p.leader >= 0 && p.isr.len() == p.replicas.len() {
                    return p.leader;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader with a full ISR for {topic}");
}

async fn produce(bootstrap: &str, topic: &str, range: std::ops::Range<usize>) -> usize {
    let mut producer = Producer::new(
        Client::new(bootstrap, "producer", TIMEOUT),
        ProducerConfig {
            acks: Acks::All,
            idempotence: true,
            retries: 50,
            retry_backoff: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .await
    .expect("producer");
    let mut acked = 0;
    for i in range {
        producer.send(topic, Some(0), value(i)).await.unwrap();
        for r in producer.flush().await.unwrap() {
            assert!(
                r.error.is_none(),
                "record {i} not acknowledged: {:?}",
                r.error
            );
            acked += r.record_count;
        }
    }
    acked
}

async fn read_values(bootstrap: &str, topic: &str, expected: usize) -> Vec<String> {
    let mut consumer = Consumer::new(
        Client::new(bootstrap, "reader", TIMEOUT),
        ConsumerConfig {
            fetch_wait_max: Duration::from_millis(50),
            ..Default::default()
        },
    );
    consumer.assign(topic, 0, Some(0));
    let mut values = Vec::new();
    for _ in 0..400 {
        match consumer.poll().await {
            Ok(records) => values.extend(records.into_iter().map(|r| {
                String::from_utf8_lossy(r.record.value.as_deref().unwrap_or(b"")).to_string()
            })),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
        if values.len() >= expected {
            break;
        }
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_survives_leader_power_loss_and_the_replica_rejoins() {
    let mut cluster = Cluster::start().await;
    let bootstrap = cluster.bootstrap();
    let mut admin = Client::new(&bootstrap, "admin", TIMEOUT);
    let mut created = false;
    for _ in 0..100 {
        let topic = NewTopic {
            name: "orders".into(),
            partitions: 1,
            replication_factor: 3,
            configs: [("min.insync.replicas".to_string(), "2".to_string())].into(),
        };
        if let Ok(mut results) = admin.create_topics(&[topic]).await {
            if results.remove(0).1.is_ok() {
                created = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(created, "the cluster never created the topic");
    let leader = wait_for_leader(&bootstrap, "orders").await;
    assert_eq!(produce(&bootstrap, "orders", 0..50).await, 50);

    // The leader loses power: whatever it had not synced is gone from its disk.
    cluster.power_off_broker(leader as usize - 1).await;
    assert_eq!(produce(&bootstrap, "orders", 50..100).await, 50);

    // It comes back, truncates to what the new leader has, catches up and rejoins the ISR.
    cluster.start_broker(leader as usize - 1).await;
    let new_leader = wait_for_leader(&bootstrap, "orders").await;
    assert_ne!(new_leader, 0);
    let values = read_values(&bootstrap, "orders", 100).await;
    let expected: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
    assert_eq!(
        values, expected,
        "every acknowledged record, once, in order"
    );

    // Every replica holds the same batches below the high watermark.
    let digests: Vec<_> = cluster
        .brokers
        .iter()
        .map(|b| {
            b.as_ref()
                .unwrap()
                .control()
                .replica_digest("orders", 0)
                .unwrap()
        })
        .collect();
    let leader_digest = digests.iter().find(|d| d.is_leader).expect("a leader");
    let committed: BTreeSet<_> = leader_digest
        .batches
        .iter()
        .filter(|(_, last, _)| *last < leader_digest.high_watermark)
        .collect();
    assert_eq!(committed.len(), 100);
    for d in &digests {
        let held: BTreeSet<_> = d.batches.iter().collect();
        assert!(
            committed.is_subset(&held),
            "a replica lacks committed batches: {d:?}"
        );
    }
    let _ = &cluster.controllers;
}

/// A manual replica assignment reaches the controller and decides placement and
/// preferred leaders; one naming an unregistered broker is refused.
#[tokio::test]
async fn create_topics_with_manual_assignment_places_replicas_as_asked() {
    use faultline::client::Connection;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    let cluster = Cluster::start().await;
    let addr = cluster.broker_addrs[0].to_string();
    let topic = |name: &'static str, assignment: &[&[i32]]| {
        create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(name)))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(
                assignment
                    .iter()
                    .enumerate()
                    .map(|(p, brokers)| {
                        create_topics_request::CreatableReplicaAssignment::default()
                            .with_partition_index(p as i32)
                            .with_broker_ids(brokers.iter().map(|b| BrokerId(*b)).collect())
                    })
                    .collect(),
            )
    };
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            topic("manual", &[&[3, 1], &[2, 3]]),
            topic("manual-bad", &[&[1, 9]]),
        ]);
    let mut conn = None;
    for _ in 0..100 {
        match Connection::connect(&addr, "admin", TIMEOUT).await {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let mut conn = conn.expect("broker answers");
    // The brokers may still be registering: retry until every one is known.
    let mut resp = conn.request(&req).await.unwrap();
    for _ in 0..100 {
        if resp.topics[0].error_code == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        resp = conn.request(&req).await.unwrap();
    }
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0]);
    assert_eq!(
        (
            resp.topics[0].num_partitions,
            resp.topics[0].replication_factor
        ),
        (2, 2)
    );
    assert_eq!(resp.topics[1].error_code, 39, "INVALID_REPLICA_ASSIGNMENT");
    wait_for_leader(&cluster.bootstrap(), "manual").await;
    let mut client = Client::new(&cluster.bootstrap(), "probe", TIMEOUT);
    let topics = client
        .refresh_metadata(Some(&["manual"]), false)
        .await
        .unwrap();
    let replicas: Vec<(Vec<i32>, i32)> = topics[0]
        .partitions
        .iter()
        .map(|p| (p.replicas.clone(), p.leader))
        .collect();
    assert_eq!(replicas, [(vec![3, 1], 3), (vec![2, 3], 2)]);
}

/// A controller takes at most `max.connections` connections: one more is closed at once,
/// and once one closes a new one is served again.
#[tokio::test]
async fn controller_connections_are_bounded() {
    use faultline::controller::rpc::{Request, Response};
    use faultline::controller::ControllerClient;
    use tokio::io::AsyncReadExt;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut config = ControllerNodeConfig::new(1001, addr, vec![(1001, addr)], "/meta".into());
    config.connections_max = 2;
    let _node = ControllerNode::start(config, Arc::new(MemStorage::default()))
        .await
        .expect("controller starts");
    let held: Vec<tokio::net::TcpStream> = vec![
        tokio::net::TcpStream::connect(addr).await.unwrap(),
        tokio::net::TcpStream::connect(addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(TIMEOUT, third.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the connection over the limit was not closed: {read:?}"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut client = ControllerClient::new(vec![(1001, addr)]);
    assert!(matches!(
        client.call(&Request::Describe, TIMEOUT).await,
        Ok(Response::Describe { .. })
    ));
}

#[tokio::test]
async fn controllers_survive_garbage_and_keep_answering() {
    use faultline::controller::rpc::{Request, Response};
    use faultline::controller::ControllerClient;
    use tokio::io::AsyncWriteExt;
    let cluster = Cluster::start().await;
    let (_, addr) = cluster.voters[0];
    let frames: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        // Claims a 4 GiB frame.
        vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        // Well framed, not JSON.
        [&5u32.to_be_bytes()[..], b"hello"].concat(),
        // JSON of the wrong shape.
        [&9u32.to_be_bytes()[..], b"{\"a\": 1}"].concat(),
        // A Raft message from a node that is not a voter, and an absurd heartbeat.
        {
            let body =
                br#"{"Raft":{"from":77,"to":1001,"message":{"BeginQuorumEpoch":{"term":999999}}}}"#;
            [&(body.len() as u32).to_be_bytes()[..], &body[..]].concat()
        },
    ];
    for frame in frames {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = stream.write_all(&frame).await;
        let _ = stream.flush().await;
        drop(stream);
    }
    let mut client = ControllerClient::new(cluster.voters.clone());
    let absurd = Request::Heartbeat(faultline::controller::logic::HeartbeatRequest {
        broker_id: -5,
        incarnation: 0,
        host: String::new(),
        port: 0,
        rack: None,
        metadata_offset: u64::MAX,
    });
    let _ = client.call(&absurd, TIMEOUT).await;
    // Whatever it proposed has committed by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Every controller still answers, and one of them leads in a sane term.
    let mut active = 0;
    for voter in &cluster.voters {
        let mut one = ControllerClient::new(vec![*voter]);
        match one.call(&Request::Describe, TIMEOUT).await.unwrap() {
            Response::Describe {
                term,
                active: a,
                image,
                ..
            } => {
                assert!(term < 1_000, "a non-voter moved the term to {term}");
                assert!(
                    image.brokers.keys().all(|id| *id >= 0),
                    "a heartbeat with a negative broker id registered: {:?}",
                    image.brokers
                );
                active += a as usize;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(active <= 1);
}

fn s(text: &str) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(text.to_string())
}

/// The group's coordinator as the cluster answers FindCoordinator: (node id, address),
/// asking until one is known (the first ask creates `__consumer_offsets`).
async fn find_coordinator(bootstrap: &str, group: &str, not: Option<i32>) -> (i32, String) {
    use kafka_protocol::messages::FindCoordinatorRequest;
    for _ in 0..300 {
        for addr in bootstrap.split(',') {
            let Ok(mut conn) = faultline::client::Connection::connect(addr, "t", TIMEOUT).await
            else {
                continue;
            };
            conn.pin_version(kafka_protocol::messages::ApiKey::FindCoordinator, 2);
            let req = FindCoordinatorRequest::default().with_key(s(group));
            if let Ok(resp) = conn.request(&req).await {
                if resp.error_code == 0 && Some(resp.node_id.0) != not {
                    return (resp.node_id.0, format!("{}:{}", resp.host, resp.port));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no coordinator for {group}");
}

/// One member joins (KIP-394: asked for a member id first) and, as leader, syncs an empty
/// assignment: (member id, generation).
async fn join_and_sync(conn: &mut faultline::client::Connection, group: &str) -> (String, i32) {
    use kafka_protocol::messages::*;
    let mut member_id = String::new();
    for _ in 0..50 {
        let protocol = join_group_request::JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"subscription"));
        let join = conn
            .request(
                &JoinGroupRequest::default()
                    .with_group_id(GroupId(s(group)))
                    .with_session_timeout_ms(10_000)
                    .with_rebalance_timeout_ms(10_000)
                    .with_member_id(s(&member_id))
                    .with_protocol_type(s("consumer"))
                    .with_protocols(vec![protocol]),
            )
            .await
            .unwrap();
        member_id = join.member_id.to_string();
        if join.error_code != 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let sync = conn
            .request(
                &SyncGroupRequest::default()
                    .with_group_id(GroupId(s(group)))
                    .with_member_id(s(&member_id))
                    .with_generation_id(join.generation_id),
            )
            .await
            .unwrap();
        assert_eq!(sync.error_code, 0, "sync");
        return (member_id, join.generation_id);
    }
    panic!("never joined {group}");
}

async fn commit_offset(
    conn: &mut faultline::client::Connection,
    group: &str,
    member: (&str, i32),
    offset: i64,
) -> i16 {
    use kafka_protocol::messages::*;
    let partition = offset_commit_request::OffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(offset)
        .with_committed_leader_epoch(-1);
    let topic = offset_commit_request::OffsetCommitRequestTopic::default()
        .with_name(TopicName(s("orders")))
        .with_partitions(vec![partition]);
    let resp = conn
        .request(
            &OffsetCommitRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_member_id(s(member.0))
                .with_generation_id_or_member_epoch(member.1)
                .with_topics(vec![topic]),
        )
        .await
        .unwrap();
    resp.topics[0].partitions[0].error_code
}

async fn fetch_offset(conn: &mut faultline::client::Connection, group: &str) -> Result<i64, i16> {
    use kafka_protocol::messages::*;
    let topic = offset_fetch_request::OffsetFetchRequestTopic::default()
        .with_name(TopicName(s("orders")))
        .with_partition_indexes(vec![0]);
    let resp = conn
        .request(
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(Some(vec![topic])),
        )
        .await
        .unwrap();
    match resp.error_code {
        0 => Ok(resp.topics[0].partitions[0].committed_offset),
        code => Err(code),
    }
}

/// The coordinator of a group is the leader of its `__consumer_offsets` partition: a
/// commit is answered once replicated, and when that broker loses power the new leader
/// of the partition loads the group and serves the committed offset; the old one,
/// back, no longer coordinates it.
#[tokio::test]
async fn the_group_coordinator_fails_over_with_its_partition() {
    use kafka_protocol::messages::ApiKey;
    let mut cluster = Cluster::start().await;
    let bootstrap = cluster.bootstrap();
    let group = "payments";
    let mut admin = Client::new(&bootstrap, "admin", TIMEOUT);
    for _ in 0..100 {
        let topic = NewTopic {
            name: "orders".into(),
            partitions: 1,
            replication_factor: 3,
            configs: Default::default(),
        };
        if let Ok(mut results) = admin.create_topics(&[topic]).await {
            if results.remove(0).1.is_ok() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_leader(&bootstrap, "orders").await;
    let (first, addr) = find_coordinator(&bootstrap, group, None).await;
    let mut conn = faultline::client::Connection::connect(&addr, "t", TIMEOUT)
        .await
        .unwrap();
    conn.pin_version(ApiKey::JoinGroup, 5);
    conn.pin_version(ApiKey::SyncGroup, 3);
    conn.pin_version(ApiKey::OffsetCommit, 8);
    conn.pin_version(ApiKey::OffsetFetch, 7);
    let (member, generation) = join_and_sync(&mut conn, group).await;
    let mut code = -1;
    for _ in 0..100 {
        code = commit_offset(&mut conn, group, (&member, generation), 42).await;
        if code == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(code, 0, "the commit is acknowledged");
    assert_eq!(fetch_offset(&mut conn, group).await, Ok(42));

    cluster.power_off_broker(first as usize - 1).await;
    let (second, addr) = find_coordinator(&bootstrap, group, Some(first)).await;
    assert_ne!(second, first);
    let mut conn = faultline::client::Connection::connect(&addr, "t", TIMEOUT)
        .await
        .unwrap();
    conn.pin_version(ApiKey::OffsetFetch, 7);
    conn.pin_version(ApiKey::OffsetCommit, 8);
    let mut fetched = Err(-1);
    for _ in 0..100 {
        fetched = fetch_offset(&mut conn, group).await;
        if fetched.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        fetched,
        Ok(42),
        "the new coordinator loaded the committed offset"
    );
    // The loaded group keeps its generation and member (sessions restart at load).
    let mut code = -1;
    for _ in 0..100 {
        code = commit_offset(&mut conn, group, (&member, generation), 43).await;
        if code == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(code, 0, "the member commits to the new coordinator");

    // The old coordinator comes back as a follower and does not serve the group.
    cluster.start_broker(first as usize - 1).await;
    let old = cluster.broker_addrs[first as usize - 1].to_string();
    let mut conn = faultline::client::Connection::connect(&old, "t", TIMEOUT)
        .await
        .unwrap();
    conn.pin_version(ApiKey::OffsetFetch, 7);
    let (now, _) = find_coordinator(&bootstrap, group, None).await;
    if now != first {
        assert_eq!(
            fetch_offset(&mut conn, group).await,
            Err(kafka_protocol::ResponseError::NotCoordinator.code())
        );
    }
}
