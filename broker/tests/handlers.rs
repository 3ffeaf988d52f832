//! Request handlers end to end over real loopback sockets, on an in-process broker whose
//! disk is the in-memory model (so a "crash" can drop unsynced bytes).
#![cfg(not(madsim))]

use bytes::Bytes;
use faultline::client::{
    Acks, Client, ClientError, Connection, Consumer, ConsumerConfig, NewTopic, Producer,
    ProducerConfig,
};
use faultline::config::BrokerConfig;
use faultline::record::batch;
use faultline::record::codec::{encode_batch, BatchOptions, Compression, Header, NewRecord};
use faultline::server::Broker;
use faultline::storage::MemStorage;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(10);

async fn start(storage: &MemStorage, tweak: impl FnOnce(&mut BrokerConfig)) -> Broker {
    let mut config = BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: "/data".into(),
        ..Default::default()
    };
    tweak(&mut config);
    Broker::start(config, Arc::new(storage.clone()))
        .await
        .expect("broker starts")
}

/// A fresh broker on an in-memory disk with one topic: (its disk, the broker, its address).
async fn with_topic(
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> (MemStorage, Broker, String) {
    let storage = MemStorage::default();
    let broker = start(&storage, |_| {}).await;
    let addr = broker.local_addr().to_string();
    create(&addr, topic, partitions, configs).await.unwrap();
    (storage, broker, addr)
}

fn record(i: usize) -> NewRecord {
    NewRecord {
        timestamp: 1_000 + i as i64,
        key: Some(Bytes::from(format!("key-{i}"))),
        value: Some(Bytes::from(format!("value-{i}"))),
        headers: vec![
            Header {
                key: "n".into(),
                value: Some(Bytes::from(i.to_string())),
            },
            Header {
                key: "n".into(),
                value: None,
            },
        ],
    }
}

async fn create(
    addr: &str,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<(), ClientError> {
    let mut client = Client::new(addr, "test-admin", TIMEOUT);
    let topic = NewTopic {
        name: name.into(),
        partitions,
        replication_factor: 1,
        configs: configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    client.create_topics(&[topic]).await?.remove(0).1
}

fn produce_request(topic: &str, partition: i32, acks: i16, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records)),
            ])])
}

async fn produce_raw(conn: &mut Connection, topic: &str, batch: Bytes) -> (i16, i64) {
    let resp = conn
        .request(&produce_request(topic, 0, -1, batch))
        .await
        .unwrap();
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Produce `record(i)` for each `i`, one batch each, without idempotence.
async fn produce_records(conn: &mut Connection, topic: &str, records: std::ops::Range<usize>) {
    for i in records {
        produce_raw(
            conn,
            topic,
            encode_batch(&[record(i)], &BatchOptions::default()).freeze(),
        )
        .await;
    }
}

async fn read_all(
    addr: &str,
    topic: &str,
    partitions: i32,
) -> Vec<(i32, faultline::record::codec::Record)> {
    let mut consumer = Consumer::new(
        Client::new(addr, "test-consumer", TIMEOUT),
        ConsumerConfig {
            fetch_wait_max: Duration::from_millis(50),
            ..Default::default()
        },
    );
    for p in 0..partitions {
        consumer.assign(topic, p, Some(0));
    }
    let mut out = Vec::new();
    for _ in 0..200 {
        out.extend(
            consumer
                .poll()
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.partition, r.record)),
        );
        if consumer.caught_up() {
            break;
        }
    }
    out
}

#[tokio::test]
async fn produce_and_consume_round_trip_for_every_acks_and_codec() {
    let storage = MemStorage::default();
    let broker = start(&storage, |_| {}).await;
    let addr = broker.local_addr().to_string();
    for (acks, compression) in [
        (Acks::All, Compression::None),
        (Acks::Leader, Compression::Gzip),
        (Acks::All, Compression::Snappy),
        (Acks::Leader, Compression::Lz4),
        (Acks::All, Compression::Zstd),
        (Acks::None, Compression::None),
    ] {
        let topic = format!("rt-{acks:?}-{compression:?}");
        create(&addr, &topic, 3, &[]).await.unwrap();
        let config = ProducerConfig {
            acks,
            idempotence: acks == Acks::All,
            compression,
            batch_bytes: 512,
            ..Default::default()
        };
        let mut producer = Producer::new(Client::new(&addr, "test-producer", TIMEOUT), config)
            .await
            .unwrap();
        let mut sent: BTreeMap<i32, Vec<NewRecord>> = BTreeMap::new();
        for i in 0..200 {
            let r = record(i);
            let p = producer.send(&topic, None, r.clone()).await.unwrap();
            sent.entry(p).or_default().push(r);
        }
        let results = producer.flush().await.unwrap();
        assert!(results.iter().all(|r| r.error.is_none()), "{results:?}");
        if acks == Acks::None {
            // Nothing acknowledges acks=0: give the broker a moment to take the last request.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let read = read_all(&addr, &topic, 3).await;
        let mut got: BTreeMap<i32, Vec<NewRecord>> = BTreeMap::new();
        let mut last: BTreeMap<i32, i64> = BTreeMap::new();
        for (p, r) in read {
            assert_eq!(
                r.offset,
                last.get(&p).map_or(0, |o| o + 1),
                "offsets are dense per partition"
            );
            last.insert(p, r.offset);
            got.entry(p).or_default().push(NewRecord {
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r.headers,
            });
        }
        assert_eq!(
            got, sent,
            "{acks:?} {compression:?}: every record back, in order per partition"
        );
    }
}

#[tokio::test]
async fn idempotent_retries_are_answered_with_the_original_offset() {
    let (storage, broker, addr) = with_topic("idem", 1, &[]).await;
    let mut conn = Connection::connect(&addr, "raw", TIMEOUT).await.unwrap();
    let batch_at = |seq: i32, epoch: i16, n: usize| {
        let records: Vec<NewRecord> = (0..n).map(record).collect();
        encode_batch(
            &records,
            &BatchOptions {
                producer_id: 5,
                producer_epoch: epoch,
                base_sequence: seq,
                ..Default::default()
            },
        )
        .freeze()
    };
    const OUT_OF_ORDER: i16 = ResponseError::OutOfOrderSequenceNumber.code();
    const FENCED: i16 = ResponseError::InvalidProducerEpoch.code();
    // (base sequence, epoch, records) -> (error code, base offset)
    let before_restart = [
        ((0, 0, 3), (0, 0)),
        ((3, 0, 2), (0, 3)),
        // A retry of either of the last batches: its original offset, nothing appended.
        ((0, 0, 3), (0, 0)),
        ((3, 0, 2), (0, 3)),
        // A gap is refused; the next in-sequence batch is fine.
        ((9, 0, 1), (OUT_OF_ORDER, -1)),
        ((5, 0, 1), (0, 5)),
    ];
    for ((seq, epoch, n), want) in before_restart {
        assert_eq!(
            produce_raw(&mut conn, "idem", batch_at(seq, epoch, n)).await,
            want,
            "seq {seq} epoch {epoch}"
        );
    }
    assert_eq!(read_all(&addr, "idem", 1).await.len(), 6);

    // Producer state is rebuilt from the log after a restart.
    broker.shutdown().await.unwrap();
    let broker = start(&storage, |_| {}).await;
    let mut conn = Connection::connect(&broker.local_addr().to_string(), "raw", TIMEOUT)
        .await
        .unwrap();
    let after_restart = [
        ((5, 0, 1), (0, 5)),
        ((6, 0, 1), (0, 6)),
        // A new epoch starts at sequence 0; the old epoch is fenced from then on.
        ((7, 1, 1), (OUT_OF_ORDER, -1)),
        ((0, 1, 1), (0, 7)),
        ((7, 0, 1), (FENCED, -1)),
    ];
    for ((seq, epoch, n), want) in after_restart {
        assert_eq!(
            produce_raw(&mut conn, "idem", batch_at(seq, epoch, n)).await,
            want,
            "after restart: seq {seq} epoch {epoch}"
        );
    }
}

#[tokio::test]
async fn producer_ids_are_never_reused_across_restarts() {
    let storage = MemStorage::default();
    let broker = start(&storage, |_| {}).await;
    let addr = broker.local_addr().to_string();
    let first = Producer::new(Client::new(&addr, "p", TIMEOUT), ProducerConfig::default())
        .await
        .unwrap()
        .producer_id();
    broker.shutdown().await.unwrap();
    storage.crash();
    let broker = start(&storage, |_| {}).await;
    let addr = broker.local_addr().to_string();
    let second = Producer::new(Client::new(&addr, "p", TIMEOUT), ProducerConfig::default())
        .await
        .unwrap()
        .producer_id();
    assert!(second > first, "{second} after {first}");
}

#[tokio::test]
async fn corrupt_batches_and_bad_acks_are_refused_without_appending() {
    let (_storage, _broker, addr) = with_topic("bad", 1, &[("max.message.bytes", "2000")]).await;
    let mut conn = Connection::connect(&addr, "raw", TIMEOUT).await.unwrap();
    let good = encode_batch(&[record(1)], &BatchOptions::default());
    let mut corrupt = good.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(
        produce_raw(&mut conn, "bad", Bytes::from(corrupt)).await.0,
        ResponseError::CorruptMessage.code()
    );
    let mut truncated = good.to_vec();
    truncated.truncate(good.len() - 3);
    assert_eq!(
        produce_raw(&mut conn, "bad", Bytes::from(truncated))
            .await
            .0,
        ResponseError::CorruptMessage.code()
    );
    let big = encode_batch(
        &[NewRecord {
            value: Some(Bytes::from(vec![7u8; 5000])),
            ..Default::default()
        }],
        &BatchOptions::default(),
    );
    assert_eq!(
        produce_raw(&mut conn, "bad", big.freeze()).await.0,
        ResponseError::MessageTooLarge.code()
    );
    let resp = conn
        .request(&produce_request("bad", 0, 7, good.clone().freeze()))
        .await
        .unwrap();
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code,
        ResponseError::InvalidRequiredAcks.code()
    );
    assert_eq!(
        produce_raw(&mut conn, "nope", good.clone().freeze())
            .await
            .0,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert!(
        read_all(&addr, "bad", 1).await.is_empty(),
        "refused batches left nothing behind"
    );
    assert_eq!(produce_raw(&mut conn, "bad", good.freeze()).await, (0, 0));
}

#[tokio::test]
async fn a_refused_acks_0_produce_closes_the_connection_so_the_producer_learns() {
    let (_storage, _broker, addr) = with_topic("zero", 1, &[]).await;
    let good = encode_batch(&[record(1)], &BatchOptions::default()).freeze();
    let mut conn = Connection::connect(&addr, "raw", TIMEOUT).await.unwrap();
    // Accepted: no answer, and the connection stays usable.
    conn.write_request_no_response(&produce_request("zero", 0, 0, good.clone()))
        .await
        .unwrap();
    assert_eq!(produce_raw(&mut conn, "zero", good.clone()).await.0, 0);
    // Refused (no such partition): the broker closes the connection, as Kafka does.
    conn.write_request_no_response(&produce_request("zero", 7, 0, good.clone()))
        .await
        .unwrap();
    let next = conn
        .request(&produce_request("zero", 0, -1, good.clone()))
        .await;
    assert!(
        next.is_err(),
        "the connection survived a refused acks=0 produce"
    );
    let mut fresh = Connection::connect(&addr, "raw", TIMEOUT).await.unwrap();
    assert_eq!(produce_raw(&mut fresh, "zero", good).await.0, 0);
}

#[tokio::test]
async fn a_timed_out_request_breaks_its_connection_and_the_client_reconnects() {
    let (_storage, _broker, addr) = with_topic("slow", 1, &[]).await;
    // Parks for a second at the broker: longer than the client waits.
    let parked = FetchRequest::default()
        .with_max_wait_ms(1_000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("slow")))
            .with_partitions(vec![
                fetch_request::FetchPartition::default().with_partition_max_bytes(1 << 20)
            ])]);
    let short = Duration::from_millis(200);
    let mut conn = Connection::connect(&addr, "raw", short).await.unwrap();
    assert!(matches!(
        conn.request(&parked).await,
        Err(ClientError::Timeout(_))
    ));
    // The late answer must never be read as the answer to the next request.
    assert!(conn.is_broken());
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(conn.request(&MetadataRequest::default()).await.is_err());
    // A client drops a broken connection and opens a new one.
    let mut client = Client::new(&addr, "c", short);
    client.refresh_metadata(None, false).await.unwrap();
    let node = *client.brokers().keys().next().unwrap();
    let first = client.connection(node).await.unwrap();
    assert!(first.request(&parked).await.is_err());
    let again = client.connection(node).await.unwrap();
    assert!(!again.is_broken());
    again.request(&MetadataRequest::default()).await.unwrap();
}

#[tokio::test]
async fn min_insync_replicas_above_the_isr_refuses_acks_all_only() {
    let (_storage, _broker, addr) = with_topic("misr", 1, &[("min.insync.replicas", "2")]).await;
    let mut conn = Connection::connect(&addr, "raw", TIMEOUT).await.unwrap();
    let b = encode_batch(&[record(0)], &BatchOptions::default()).freeze();
    let resp = conn
        .request(&produce_request("misr", 0, -1, b.clone()))
        .await
        .unwrap();
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code,
        ResponseError::NotEnoughReplicas.code()
    );
    let resp = conn
        .request(&produce_request("misr", 0, 1, b))
        .await
        .unwrap();
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
}

#[tokio::test]
async fn list_offsets_earliest_latest_and_by_timestamp() {
    let (_storage, _broker, addr) = with_topic("lo", 1, &[]).await;
    let mut conn = Connection::connect(&addr, "raw", TIMEOUT).await.unwrap();
    // Two batches: timestamps 1000..1004 and 2000..2004.
    for base in [1000, 2000] {
        let records: Vec<NewRecord> = (0..5)
            .map(|i| NewRecord {
                timestamp: base + i,
                value: Some(Bytes::from("v")),
                ..Default::default()
            })
            .collect();
        produce_raw(
            &mut conn,
            "lo",
            encode_batch(&records, &BatchOptions::default()).freeze(),
        )
        .await;
    }
    let mut client = Client::new(&addr, "lo", TIMEOUT);
    for (timestamp, want) in [
        (-2, 0),
        (-1, 10),
        (0, 0),
        (1002, 2),
        (1005, 5),
        (2003, 8),
        (2004, 9),
        (2005, -1),
    ] {
        assert_eq!(
            client.list_offset("lo", 0, timestamp).await.unwrap(),
            want,
            "timestamp {timestamp}"
        );
    }
}

#[tokio::test]
async fn a_parked_fetch_wakes_up_when_data_arrives() {
    let (_storage, _broker, addr) = with_topic("lp", 1, &[]).await;
    let mut consumer = Consumer::new(
        Client::new(&addr, "lp", TIMEOUT),
        ConsumerConfig {
            fetch_wait_max: Duration::from_secs(8),
            ..Default::default()
        },
    );
    consumer.assign("lp", 0, Some(0));
    let fetch = tokio::spawn(async move { consumer.poll().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut conn = Connection::connect(&addr, "raw", TIMEOUT).await.unwrap();
    produce_raw(
        &mut conn,
        "lp",
        encode_batch(&[record(3)], &BatchOptions::default()).freeze(),
    )
    .await;
    let got = fetch.await.unwrap();
    assert_eq!(
        got.len(),
        1,
        "the parked fetch returned the record produced while it waited"
    );
    assert_eq!(got[0].record.value.as_deref(), Some(&b"value-3"[..]));
}

#[tokio::test]
async fn fetch_returns_a_whole_first_batch_even_above_max_bytes() {
    let (_storage, _broker, addr) = with_topic("kip74", 1, &[]).await;
    let mut conn = Connection::connect(&addr, "raw", TIMEOUT).await.unwrap();
    let records: Vec<NewRecord> = (0..50).map(record).collect();
    produce_raw(
        &mut conn,
        "kip74",
        encode_batch(&records, &BatchOptions::default()).freeze(),
    )
    .await;
    produce_raw(
        &mut conn,
        "kip74",
        encode_batch(&records, &BatchOptions::default()).freeze(),
    )
    .await;
    let mut consumer = Consumer::new(
        Client::new(&addr, "c", TIMEOUT),
        ConsumerConfig {
            partition_fetch_max_bytes: 10,
            fetch_max_bytes: 10,
            ..Default::default()
        },
    );
    consumer.assign("kip74", 0, Some(0));
    assert_eq!(
        consumer.poll().await.unwrap().len(),
        50,
        "exactly the first whole batch"
    );
    assert_eq!(consumer.poll().await.unwrap().len(), 50);
}

/// KIP-74: the response's `max_bytes` bounds the first partition too; only one whole
/// batch may exceed it. (A client whose `fetch.max.bytes` is below its
/// `max.partition.fetch.bytes` otherwise gets a response larger than it can receive.)
#[tokio::test]
async fn fetch_max_bytes_bounds_the_first_partition_to_one_batch_over() {
    let (_storage, _broker, addr) = with_topic("kip74-response", 2, &[]).await;
    let mut conn = Connection::connect(&addr, "raw", TIMEOUT).await.unwrap();
    let big = |i: usize| NewRecord {
        value: Some(Bytes::from(vec![b'v'; 900])),
        ..record(i)
    };
    for partition in 0..2 {
        for i in 0..5 {
            let batch = encode_batch(&[big(i)], &BatchOptions::default()).freeze();
            let resp = conn
                .request(&produce_request("kip74-response", partition, -1, batch))
                .await
                .unwrap();
            assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
        }
    }
    let one_batch = encode_batch(&[big(0)], &BatchOptions::default()).len();
    for (max_bytes, batches) in [
        (1_000, 1),
        (2 * one_batch as i32, 2),
        (20 * one_batch as i32, 10),
    ] {
        let partitions = (0..2)
            .map(|p| {
                fetch_request::FetchPartition::default()
                    .with_partition(p)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(20_000_000)
            })
            .collect();
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(max_bytes)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("kip74-response")))
                .with_partitions(partitions)]);
        let resp = conn.request(&req).await.unwrap();
        let sizes: Vec<usize> = resp.responses[0]
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
            .collect();
        assert_eq!(
            sizes.iter().sum::<usize>(),
            batches * one_batch,
            "max_bytes {max_bytes}: partition sizes {sizes:?}"
        );
    }
}

/// KIP-430: Metadata reports the authorized operation sets a client asks for (librdkafka's
/// DescribeTopics and DescribeCluster read them), and Kafka's "omitted" value otherwise.
#[tokio::test]
async fn metadata_reports_authorized_operations_when_asked() {
    let (_storage, _broker, addr) = with_topic("ops", 1, &[]).await;
    let mut conn = Connection::connect(&addr, "raw", TIMEOUT).await.unwrap();
    // The cluster's set is in Metadata v8 to v10 only.
    for (version, include) in [(10, false), (10, true), (12, true)] {
        conn.pin_version(ApiKey::Metadata, version);
        let req = MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(TopicName(StrBytes::from_static_str("ops"))))]))
            .with_include_topic_authorized_operations(include)
            .with_include_cluster_authorized_operations(include && version <= 10);
        let resp = conn.request(&req).await.unwrap();
        let (topic_ops, cluster_ops) = match (version, include) {
            (10, true) => (0b1101_1111_1000, 0b1_1111_1010_0000),
            (_, true) => (0b1101_1111_1000, i32::MIN),
            (_, false) => (i32::MIN, i32::MIN),
        };
        assert_eq!(resp.topics[0].topic_authorized_operations, topic_ops);
        assert_eq!(resp.cluster_authorized_operations, cluster_ops);
    }
}

/// A CreateTopics entry with a manual replica assignment, for raw requests.
fn assigned_topic(
    name: &'static str,
    counts: (i32, i16),
    assignment: &[(i32, &[i32])],
) -> create_topics_request::CreatableTopic {
    create_topics_request::CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_static_str(name)))
        .with_num_partitions(counts.0)
        .with_replication_factor(counts.1)
        .with_assignments(
            assignment
                .iter()
                .map(|(partition, brokers)| {
                    create_topics_request::CreatableReplicaAssignment::default()
                        .with_partition_index(*partition)
                        .with_broker_ids(brokers.iter().map(|b| BrokerId(*b)).collect())
                })
                .collect(),
        )
}

/// Manual replica assignments are taken as Kafka takes them; on a standalone broker they
/// may name only this broker.
#[tokio::test]
async fn create_topics_takes_manual_replica_assignments() {
    let storage = MemStorage::default();
    let broker = start(&storage, |c| c.node_id = 7).await;
    let addr = broker.local_addr().to_string();
    let mut conn = Connection::connect(&addr, "raw", TIMEOUT).await.unwrap();
    let cases: Vec<(create_topics_request::CreatableTopic, i16)> = vec![
        (
            assigned_topic("placed", (-1, -1), &[(1, &[7]), (0, &[7]), (2, &[7])]),
            0,
        ),
        (
            assigned_topic("unknown-broker", (-1, -1), &[(0, &[7, 8])]),
            ResponseError::InvalidReplicaAssignment.code(),
        ),
        (
            assigned_topic("gap", (-1, -1), &[(0, &[7]), (2, &[7])]),
            ResponseError::InvalidReplicaAssignment.code(),
        ),
        (
            assigned_topic("twice", (-1, -1), &[(0, &[7, 7])]),
            ResponseError::InvalidReplicaAssignment.code(),
        ),
        (
            assigned_topic("with-count", (1, -1), &[(0, &[7])]),
            ResponseError::InvalidRequest.code(),
        ),
    ];
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(cases.iter().map(|(t, _)| t.clone()).collect());
    let resp = conn.request(&req).await.unwrap();
    for ((topic, expected), got) in cases.iter().zip(&resp.topics) {
        assert_eq!(got.name, topic.name);
        assert_eq!(
            got.error_code, *expected,
            "{}: {:?}",
            topic.name.0, got.error_message
        );
    }
    assert_eq!(
        (
            resp.topics[0].num_partitions,
            resp.topics[0].replication_factor
        ),
        (3, 1)
    );
    let mut client = Client::new(&addr, "admin", TIMEOUT);
    let topics = client.refresh_metadata(None, false).await.unwrap();
    let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["placed"], "only the valid topic exists");
    assert!(topics[0].partitions.iter().all(|p| p.replicas == [7]));
}

/// Every topic setting Kafka has is taken at creation and reported by DescribeConfigs
/// with its value and source; LogAppendTime is enforced: the broker stamps its clock on
/// what it appends and says so in the produce answer.
#[tokio::test]
async fn topic_settings_are_described_and_log_append_time_is_stamped() {
    let (_storage, _broker, addr) = with_topic(
        "configured",
        1,
        &[
            ("delete.retention.ms", "1000"),
            ("min.cleanable.dirty.ratio", "0.25"),
            ("message.timestamp.type", "LogAppendTime"),
        ],
    )
    .await;
    assert!(matches!(
        create(&addr, "bad-setting", 1, &[("retention.millis", "1")]).await,
        Err(ClientError::Kafka {
            error: ResponseError::InvalidConfig,
            ..
        })
    ));
    let mut conn = Connection::connect(&addr, "raw", TIMEOUT).await.unwrap();
    conn.pin_version(ApiKey::DescribeConfigs, 4);
    let resource = |kind: i8, name: &'static str| {
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(StrBytes::from_static_str(name))
    };
    let req = DescribeConfigsRequest::default()
        .with_include_synonyms(true)
        .with_resources(vec![
            resource(2, "configured"),
            resource(2, "missing"),
            resource(4, "1")
                .with_configuration_keys(Some(vec![StrBytes::from_static_str("num.partitions")])),
        ]);
    let resp = conn.request(&req).await.unwrap();
    let topic = &resp.results[0];
    assert_eq!(topic.error_code, 0);
    let get = |name: &str| {
        topic
            .configs
            .iter()
            .find(|c| c.name.as_str() == name)
            .unwrap_or_else(|| panic!("{name} not described"))
    };
    let (retention, segment) = (get("delete.retention.ms"), get("segment.bytes"));
    assert_eq!(
        (retention.value.as_deref(), retention.config_source),
        (Some("1000"), 1),
        "a topic override"
    );
    assert_eq!(retention.synonyms[0].name.as_str(), "delete.retention.ms");
    assert_eq!(
        (segment.value.as_deref(), segment.config_source),
        (Some("1073741824"), 5),
        "Kafka's default"
    );
    assert_eq!(get("min.cleanable.dirty.ratio").config_type, 6, "DOUBLE");
    assert!(topic.configs.len() >= 35, "{}", topic.configs.len());
    assert_eq!(
        resp.results[1].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let broker = &resp.results[2];
    assert_eq!(broker.configs.len(), 1);
    assert_eq!(broker.configs[0].value.as_deref(), Some("1"));

    let batch = encode_batch(&[record(0)], &BatchOptions::default()).freeze();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let resp = conn
        .request(&produce_request("configured", 0, -1, batch))
        .await
        .unwrap();
    let stamped = resp.responses[0].partition_responses[0].log_append_time_ms;
    assert!(stamped >= before, "log_append_time_ms {stamped}");
    let got = read_all(&addr, "configured", 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].1.timestamp, stamped,
        "the record carries the append time"
    );
}

/// A disk whose first directory creation waits until the test opens it: a broker
/// recovering slowly.
struct SlowToOpen {
    inner: MemStorage,
    open: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl faultline::storage::Storage for SlowToOpen {
    fn create_dir_all(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let (lock, cvar) = &*self.open;
        let _open = cvar
            .wait_while(lock.lock().unwrap(), |open| !*open)
            .unwrap();
        self.inner.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &std::path::Path) -> std::io::Result<Vec<String>> {
        self.inner.list_dir(dir)
    }
    fn open(
        &self,
        path: &std::path::Path,
        create: bool,
    ) -> std::io::Result<Box<dyn faultline::storage::StorageFile>> {
        self.inner.open(path, create)
    }
    fn remove_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, dir: &std::path::Path) -> std::io::Result<()> {
        self.inner.remove_dir_all(dir)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn exists(&self, path: &std::path::Path) -> bool {
        self.inner.exists(path)
    }
    fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        self.inner.sync_dir(dir)
    }
}

/// While its logs load, a broker already takes connections and answers ApiVersions; other
/// requests wait and are answered once it is ready (not refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_taken_while_the_logs_load() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let open = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let storage = SlowToOpen {
        inner: MemStorage::default(),
        open: open.clone(),
    };
    let config = BrokerConfig {
        listen: addr,
        data_dir: "/data".into(),
        ..Default::default()
    };
    let starting = tokio::spawn(Broker::start(config, Arc::new(storage)));
    // Connect (ApiVersions included) while the broker is still opening its state.
    let mut conn = None;
    for _ in 0..100 {
        if let Ok(c) = Connection::connect(&addr.to_string(), "early", TIMEOUT).await {
            conn = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let still_opening = !starting.is_finished();
    let metadata = conn.map(|mut conn| {
        tokio::spawn(async move {
            let resp = conn.request(&MetadataRequest::default()).await;
            (conn, resp)
        })
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metadata_waited = metadata.as_ref().is_some_and(|m| !m.is_finished());
    // Let the broker finish opening before any assertion, so a failure cannot hang.
    {
        let (lock, cvar) = &*open;
        *lock.lock().unwrap() = true;
        cvar.notify_all();
    }
    let _broker = starting.await.unwrap().expect("broker starts");
    assert!(
        still_opening,
        "the state was opened before the test could connect"
    );
    let metadata = metadata.expect("ApiVersions answered while loading");
    assert!(metadata_waited, "Metadata waits for the state");
    let (_conn, resp) = metadata.await.unwrap();
    assert_eq!(resp.unwrap().brokers.len(), 1, "answered once ready");
}

#[tokio::test]
async fn metadata_auto_creates_and_admin_errors_are_reported() {
    let storage = MemStorage::default();
    let broker = start(&storage, |c| c.num_partitions = 4).await;
    let addr = broker.local_addr().to_string();
    let mut client = Client::new(&addr, "meta", TIMEOUT);
    let info = client.topic("auto").await.unwrap();
    assert_eq!(
        info.partitions.len(),
        4,
        "num.partitions applies to auto-created topics"
    );
    assert!(info
        .partitions
        .iter()
        .all(|p| p.leader == 1 && p.isr == vec![1]));
    let err = client
        .refresh_metadata(Some(&["bad name!"]), true)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Kafka {
                error: ResponseError::InvalidTopicException,
                ..
            }
        ),
        "{err:?}"
    );
    for (topic, want) in [
        (
            NewTopic {
                name: "auto".into(),
                partitions: 1,
                replication_factor: 1,
                ..Default::default()
            },
            ResponseError::TopicAlreadyExists,
        ),
        (
            NewTopic {
                name: "rf3".into(),
                partitions: 1,
                replication_factor: 3,
                ..Default::default()
            },
            ResponseError::InvalidReplicationFactor,
        ),
        (
            NewTopic {
                name: "zero".into(),
                partitions: 0,
                replication_factor: 1,
                ..Default::default()
            },
            ResponseError::InvalidPartitions,
        ),
        (
            NewTopic {
                name: "cfg".into(),
                partitions: 1,
                replication_factor: 1,
                configs: [("segment.bytes".to_string(), "lots".to_string())].into(),
            },
            ResponseError::InvalidConfig,
        ),
    ] {
        let result = client.create_topics(&[topic]).await.unwrap().remove(0).1;
        assert!(
            matches!(result, Err(ClientError::Kafka { error, .. }) if error == want),
            "{result:?} vs {want:?}"
        );
    }
    client
        .delete_topics(&["auto"])
        .await
        .unwrap()
        .remove(0)
        .1
        .unwrap();
    let names: Vec<String> = client
        .refresh_metadata(None, false)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(names.is_empty(), "{names:?}");
    // Topics survive a restart; deleted ones stay deleted.
    create(&addr, "kept", 2, &[]).await.unwrap();
    broker.shutdown().await.unwrap();
    let broker = start(&storage, |_| {}).await;
    let mut client = Client::new(&broker.local_addr().to_string(), "meta", TIMEOUT);
    let names: Vec<String> = client
        .refresh_metadata(None, false)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["kept".to_string()]);
}

#[tokio::test]
async fn oversized_and_garbage_frames_close_only_their_connection() {
    let storage = MemStorage::default();
    let broker = start(&storage, |c| c.socket_request_max_bytes = 4096).await;
    let addr = broker.local_addr().to_string();
    for frame in [
        (1_000_000i32).to_be_bytes().to_vec(),
        [&8i32.to_be_bytes()[..], &[0xff, 0x7f, 0, 0, 0, 0, 0, 1]].concat(),
        [
            &12i32.to_be_bytes()[..],
            &[0, 3, 0, 9, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef],
        ]
        .concat(),
    ] {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(&frame).await.unwrap();
        s.flush().await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(TIMEOUT, s.read(&mut buf))
            .await
            .expect("broker closes the connection")
            .unwrap_or(0);
        assert_eq!(n, 0, "no response to a malformed request, just a close");
    }
    create(&addr, "alive", 1, &[])
        .await
        .expect("the broker still serves");
}

#[tokio::test]
async fn unsynced_records_vanish_on_crash_and_synced_ones_stay() {
    let storage = MemStorage::default();
    let broker = start(&storage, |c| c.log.flush_messages = Some(1)).await;
    let addr = broker.local_addr().to_string();
    create(&addr, "synced", 1, &[]).await.unwrap();
    let mut conn = Connection::connect(&addr, "raw", TIMEOUT).await.unwrap();
    produce_records(&mut conn, "synced", 0..5).await;
    broker.kill().await; // no clean shutdown
    storage.crash();
    let broker = start(&storage, |_| {}).await;
    let addr = broker.local_addr().to_string();
    assert_eq!(
        read_all(&addr, "synced", 1).await.len(),
        5,
        "flush.messages=1: every acknowledged record was synced"
    );
    create(&addr, "unsynced", 1, &[]).await.unwrap();
    let mut conn = Connection::connect(&addr, "raw", TIMEOUT).await.unwrap();
    produce_records(&mut conn, "unsynced", 0..5).await;
    broker.kill().await;
    storage.crash();
    let broker = start(&storage, |_| {}).await;
    let addr = broker.local_addr().to_string();
    assert_eq!(
        read_all(&addr, "unsynced", 1).await.len(),
        0,
        "Kafka's default flush policy never fsyncs: a power loss drops the tail"
    );
    let _ = batch::BATCH_HEADER_BYTES;
}

/// Every served API and version, encoded validly, then mutated at random (flipped bytes,
/// 2^31 written over a 4-byte field, truncation): whatever comes of each, the broker must
/// still answer the next client.
#[tokio::test]
async fn mutated_requests_never_take_the_broker_down() {
    let storage = MemStorage::default();
    let broker = start(&storage, |_| {}).await;
    let addr = broker.local_addr().to_string();
    create(&addr, "m", 2, &[]).await.unwrap();
    let batch = encode_batch(&[record(1)], &BatchOptions::default()).freeze();
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let topic = || TopicName(StrBytes::from_static_str("m"));
    for (key, min, max) in faultline::protocol::SUPPORTED_APIS {
        for v in *min..=*max {
            frames.push(match key {
                ApiKey::Produce => frame(*key, v, &produce_request("m", 0, 1, batch.clone())),
                ApiKey::Fetch => frame(
                    *key,
                    v,
                    &FetchRequest::default()
                        .with_max_wait_ms(1)
                        .with_topics(vec![fetch_request::FetchTopic::default()
                            .with_topic(topic())
                            .with_partitions(vec![fetch_request::FetchPartition::default()
                                .with_partition_max_bytes(1000)])]),
                ),
                ApiKey::ListOffsets => frame(
                    *key,
                    v,
                    &ListOffsetsRequest::default().with_topics(vec![
                        list_offsets_request::ListOffsetsTopic::default()
                            .with_name(topic())
                            .with_partitions(vec![
                                list_offsets_request::ListOffsetsPartition::default()
                                    .with_timestamp(-1),
                            ]),
                    ]),
                ),
                ApiKey::Metadata => frame(
                    *key,
                    v,
                    &MetadataRequest::default().with_topics(Some(vec![
                        metadata_request::MetadataRequestTopic::default().with_name(Some(topic())),
                    ])),
                ),
                ApiKey::ApiVersions => frame(*key, v, &ApiVersionsRequest::default()),
                ApiKey::CreateTopics => frame(
                    *key,
                    v,
                    &CreateTopicsRequest::default().with_topics(vec![
                        create_topics_request::CreatableTopic::default()
                            .with_name(TopicName(StrBytes::from_static_str("n")))
                            .with_num_partitions(1)
                            .with_replication_factor(1),
                    ]),
                ),
                ApiKey::DeleteTopics if v >= 6 => frame(
                    *key,
                    v,
                    &DeleteTopicsRequest::default()
                        .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                            .with_name(Some(TopicName(StrBytes::from_static_str("x"))))]),
                ),
                ApiKey::DeleteTopics => frame(
                    *key,
                    v,
                    &DeleteTopicsRequest::default()
                        .with_topic_names(vec![TopicName(StrBytes::from_static_str("x"))]),
                ),
                ApiKey::InitProducerId => frame(
                    *key,
                    v,
                    &InitProducerIdRequest::default().with_transactional_id(None),
                ),
                ApiKey::OffsetForLeaderEpoch => frame(
                    *key,
                    v,
                    &OffsetForLeaderEpochRequest::default().with_topics(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                            .with_topic(topic())
                            .with_partitions(vec![
                                offset_for_leader_epoch_request::OffsetForLeaderPartition::default(
                                )
                                .with_current_leader_epoch(-1)
                                .with_leader_epoch(0),
                            ]),
                    ]),
                ),
                ApiKey::DescribeConfigs => frame(
                    *key,
                    v,
                    &DescribeConfigsRequest::default().with_resources(vec![
                        describe_configs_request::DescribeConfigsResource::default()
                            .with_resource_type(2)
                            .with_resource_name(StrBytes::from_static_str("m")),
                        describe_configs_request::DescribeConfigsResource::default()
                            .with_resource_type(4)
                            .with_resource_name(StrBytes::from_static_str("1"))
                            .with_configuration_keys(Some(vec![StrBytes::from_static_str(
                                "node.id",
                            )])),
                    ]),
                ),
                _ => group_sample_frame(*key, v),
            });
        }
    }
    // splitmix64: the mutations are the same on every run.
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut sent = 0;
    for original in &frames {
        for _ in 0..12 {
            let mut f = original.clone();
            match next() % 3 {
                0 => {
                    for _ in 0..1 + next() % 4 {
                        let i = (next() as usize) % f.len();
                        f[i] ^= 1 << (next() % 8);
                    }
                }
                1 if f.len() > 12 => {
                    let i = 8 + (next() as usize) % (f.len() - 11);
                    f[i..i + 4].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
                }
                _ => f.truncate((next() as usize) % f.len()),
            }
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            s.write_all(&(f.len() as i32).to_be_bytes()).await.unwrap();
            s.write_all(&f).await.unwrap();
            s.flush().await.unwrap();
            let mut buf = [0u8; 4096];
            // Whatever the broker answers, or however it closes, is fine: it must not die.
            let _ = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
            sent += 1;
        }
    }
    assert!(sent > 500, "only {sent} mutated requests");
    let mut client = Client::new(&addr, "after", TIMEOUT);
    client
        .refresh_metadata(None, false)
        .await
        .expect("the broker still answers");
}

/// A request frame: header (of the version the API's request uses), then the body.
fn frame<R>(key: ApiKey, version: i16, body: &R) -> Vec<u8>
where
    R: kafka_protocol::protocol::Encodable + kafka_protocol::protocol::HeaderVersion,
{
    use kafka_protocol::protocol::Encodable;
    let mut buf = bytes::BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(9)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")))
        .encode(&mut buf, R::header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    buf.to_vec()
}

/// A valid request of a group coordinator API, for the mutation test.
fn group_sample_frame(key: ApiKey, v: i16) -> Vec<u8> {
    let s = |t: &str| StrBytes::from_string(t.to_string());
    let group = || GroupId(s("fuzz-group"));
    let topic = || TopicName(s("m"));
    match key {
        ApiKey::FindCoordinator if v >= 4 => frame(
            key,
            v,
            &FindCoordinatorRequest::default().with_coordinator_keys(vec![s("fuzz-group")]),
        ),
        ApiKey::FindCoordinator => frame(
            key,
            v,
            &FindCoordinatorRequest::default().with_key(s("fuzz-group")),
        ),
        ApiKey::JoinGroup => frame(
            key,
            v,
            &JoinGroupRequest::default()
                .with_group_id(group())
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"\0\0\0\0\0\x01\0\x01m"))]),
        ),
        ApiKey::SyncGroup => frame(
            key,
            v,
            &SyncGroupRequest::default()
                .with_group_id(group())
                .with_member_id(s("m-1"))
                .with_generation_id(1)
                .with_assignments(vec![
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(s("m-1"))
                        .with_assignment(Bytes::from_static(b"a")),
                ]),
        ),
        ApiKey::Heartbeat => frame(
            key,
            v,
            &HeartbeatRequest::default()
                .with_group_id(group())
                .with_member_id(s("m-1"))
                .with_generation_id(1),
        ),
        ApiKey::LeaveGroup if v >= 3 => frame(
            key,
            v,
            &LeaveGroupRequest::default()
                .with_group_id(group())
                .with_members(vec![
                    leave_group_request::MemberIdentity::default().with_member_id(s("m-1"))
                ]),
        ),
        ApiKey::LeaveGroup => frame(
            key,
            v,
            &LeaveGroupRequest::default()
                .with_group_id(group())
                .with_member_id(s("m-1")),
        ),
        ApiKey::OffsetCommit => frame(
            key,
            v,
            &OffsetCommitRequest::default()
                .with_group_id(group())
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(topic())
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_committed_offset(3),
                        ]),
                ]),
        ),
        ApiKey::OffsetFetch if v >= 8 => frame(
            key,
            v,
            &OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(group())
                    .with_topics(None),
            ]),
        ),
        ApiKey::OffsetFetch => frame(
            key,
            v,
            &OffsetFetchRequest::default()
                .with_group_id(group())
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(topic())
                        .with_partition_indexes(vec![0, 1]),
                ])),
        ),
        ApiKey::ListGroups => frame(key, v, &ListGroupsRequest::default()),
        ApiKey::DescribeGroups => frame(
            key,
            v,
            &DescribeGroupsRequest::default().with_groups(vec![group()]),
        ),
        ApiKey::DeleteGroups => frame(
            key,
            v,
            &DeleteGroupsRequest::default().with_groups_names(vec![group()]),
        ),
        ApiKey::OffsetDelete => frame(
            key,
            v,
            &OffsetDeleteRequest::default()
                .with_group_id(group())
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(topic())
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default(),
                        ]),
                ]),
        ),
        ApiKey::ConsumerGroupHeartbeat => frame(
            key,
            v,
            &ConsumerGroupHeartbeatRequest::default()
                .with_group_id(group())
                .with_member_id(s("m-848"))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![topic()]))
                .with_topic_partitions(Some(vec![])),
        ),
        ApiKey::ConsumerGroupDescribe => frame(
            key,
            v,
            &ConsumerGroupDescribeRequest::default().with_group_ids(vec![group()]),
        ),
        other => panic!("no sample request for {other:?}"),
    }
}

/// Each start of the broker is a new leader epoch, stamped on every batch it appends;
/// OffsetForLeaderEpoch tells where each epoch ended; a client still on an older epoch
/// is fenced (KIP-101, KIP-279, KIP-320).
#[tokio::test]
async fn leader_epochs_advance_per_start_and_answer_offset_for_leader_epoch() {
    let (storage, broker, addr) = with_topic("ep", 1, &[]).await;
    let mut conn = Connection::connect(&addr, "raw", TIMEOUT).await.unwrap();
    produce_records(&mut conn, "ep", 0..3).await;
    broker.shutdown().await.unwrap();
    let broker = start(&storage, |_| {}).await;
    let addr = broker.local_addr().to_string();
    let mut conn = Connection::connect(&addr, "raw", TIMEOUT).await.unwrap();
    produce_records(&mut conn, "ep", 3..5).await;
    let mut client = Client::new(&addr, "ep", TIMEOUT);
    let info = client.topic("ep").await.unwrap();
    assert_eq!(
        info.partitions[0].leader_epoch, 1,
        "the second start is epoch 1"
    );

    // Batches carry the epoch of the leader that wrote them.
    let fetch = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("ep")))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_current_leader_epoch(1)
                .with_partition_max_bytes(1 << 20)])]);
    let resp = conn.request(&fetch).await.unwrap();
    let records = resp.responses[0].partitions[0].records.clone().unwrap();
    let epochs: Vec<i32> = batch::split_batches(&records)
        .map(|b| b.unwrap().0.partition_leader_epoch)
        .collect();
    assert_eq!(epochs, vec![0, 0, 0, 1, 1]);

    // Epoch 0 ended at offset 3, epoch 1 is the current one (ends at the log end).
    for (asked, want) in [(0, (0, 3)), (1, (1, 5)), (7, (-1, -1))] {
        let req = OffsetForLeaderEpochRequest::default().with_topics(vec![
            offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("ep")))
                .with_partitions(vec![
                    offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                        .with_current_leader_epoch(1)
                        .with_leader_epoch(asked),
                ]),
        ]);
        let resp = conn.request(&req).await.unwrap();
        let p = &resp.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.leader_epoch, p.end_offset),
            (0, want.0, want.1),
            "epoch {asked}"
        );
    }

    // A consumer that still believes in epoch 0 is fenced and must refresh its metadata.
    let mut stale = fetch.clone();
    stale.topics[0].partitions[0].current_leader_epoch = 0;
    let resp = conn.request(&stale).await.unwrap();
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        ResponseError::FencedLeaderEpoch.code()
    );
}
