//! What the group tests share: a broker on a free port with group settings, and a
//! connection pinned to the API versions a test speaks.
#![allow(dead_code)] // each test file uses its own part

use faultline::client::{Client, Connection, NewTopic};
use faultline::config::BrokerConfig;
use faultline::server::Broker;
use faultline::storage::MemStorage;
use kafka_protocol::messages::{
    offset_commit_request, ApiKey, GroupId, OffsetCommitRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use std::sync::Arc;
use std::time::Duration;

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A standalone broker on `storage` with `__consumer_offsets` of `offsets_partitions`
/// partitions and, unless `delay`, no initial rebalance delay.
pub async fn start_broker(storage: &MemStorage, offsets_partitions: i32, delay: bool) -> Broker {
    let mut config = BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: "/data".into(),
        ..Default::default()
    };
    let mut properties = format!("offsets.topic.num.partitions={offsets_partitions}\n");
    if !delay {
        properties.push_str("group.initial.rebalance.delay.ms=0\n");
    }
    config.apply_properties("test", &properties).unwrap();
    Broker::start(config, Arc::new(storage.clone()))
        .await
        .expect("broker starts")
}

pub fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// A connection as `client`, pinned to `versions`.
pub async fn connect_pinned(addr: &str, client: &str, versions: &[(ApiKey, i16)]) -> Connection {
    let mut conn = Connection::connect(addr, client, TIMEOUT).await.unwrap();
    for (key, version) in versions {
        conn.pin_version(*key, *version);
    }
    conn
}

/// Creates `topic` with `partitions` partitions (one replica); panics if refused.
pub async fn create_topic(addr: &str, topic: &str, partitions: i32) {
    let mut admin = Client::new(addr, "admin", TIMEOUT);
    let new = NewTopic {
        name: topic.into(),
        partitions,
        replication_factor: 1,
        configs: Default::default(),
    };
    admin
        .create_topics(&[new])
        .await
        .unwrap()
        .remove(0)
        .1
        .unwrap();
}

/// An OffsetCommit of `offset` for partition 0 of topic `t` in `group`, as `member` (empty:
/// none) in `generation_or_epoch`; the partition's error code.
pub async fn commit_t0(
    conn: &mut Connection,
    group: &str,
    member: &str,
    generation_or_epoch: i32,
    offset: i64,
) -> i16 {
    let resp = conn
        .request(
            &OffsetCommitRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_generation_id_or_member_epoch(generation_or_epoch)
                .with_member_id(s(member))
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(-1),
                        ]),
                ]),
        )
        .await
        .unwrap();
    resp.topics[0].partitions[0].error_code
}
