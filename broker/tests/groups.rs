//! Consumer groups end to end on an in-process standalone broker (in-memory disk): the
//! coordinator APIs over real loopback sockets, `__consumer_offsets` created on first use,
//! and groups and offsets loaded back from it after a restart.
#![cfg(not(madsim))]

use bytes::Bytes;
use faultline::client::Connection;
use faultline::server::{offsets_partition, Broker, OFFSETS_TOPIC};
use faultline::storage::MemStorage;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use std::time::Duration;

mod common;
use common::s;
const GROUP: &str = "my-group";
const OFFSETS_PARTITIONS: i32 = 4;

async fn start(storage: &MemStorage) -> Broker {
    common::start_broker(storage, OFFSETS_PARTITIONS, false).await
}

/// A connection speaking the versions librdkafka and confluent-kafka send.
async fn connect(addr: &str) -> Connection {
    let versions = [
        (ApiKey::FindCoordinator, 2),
        (ApiKey::JoinGroup, 5),
        (ApiKey::SyncGroup, 3),
        (ApiKey::Heartbeat, 3),
        (ApiKey::LeaveGroup, 1),
        (ApiKey::OffsetCommit, 8),
        (ApiKey::OffsetFetch, 7),
        (ApiKey::DescribeGroups, 5),
    ];
    common::connect_pinned(addr, "group-test", &versions).await
}

async fn find_coordinator(conn: &mut Connection, group: &str) -> FindCoordinatorResponse {
    conn.request(
        &FindCoordinatorRequest::default()
            .with_key(s(group))
            .with_key_type(0),
    )
    .await
    .unwrap()
}

async fn join(conn: &mut Connection, member_id: &str) -> JoinGroupResponse {
    let protocol = join_group_request::JoinGroupRequestProtocol::default()
        .with_name(s("range"))
        .with_metadata(Bytes::from_static(b"subscription"));
    conn.request(
        &JoinGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(s(member_id))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![protocol]),
    )
    .await
    .unwrap()
}

async fn heartbeat(conn: &mut Connection, member_id: &str, generation: i32) -> i16 {
    conn.request(
        &HeartbeatRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_member_id(s(member_id))
            .with_generation_id(generation),
    )
    .await
    .unwrap()
    .error_code
}

async fn commit(
    conn: &mut Connection,
    member_id: &str,
    generation: i32,
    offsets: &[(i32, i64)],
) -> Vec<i16> {
    let partitions = offsets
        .iter()
        .map(|(p, o)| {
            offset_commit_request::OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_leader_epoch(-1)
        })
        .collect();
    let resp = conn
        .request(
            &OffsetCommitRequest::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(s(member_id))
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partitions(partitions),
                ]),
        )
        .await
        .unwrap();
    resp.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

/// (top-level error, [(partition, committed offset)]) of topic `t`'s partitions 0 and 1.
async fn fetch_offsets(conn: &mut Connection) -> (i16, Vec<(i32, i64)>) {
    let resp = conn
        .request(
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_indexes(vec![0, 1]),
                ])),
        )
        .await
        .unwrap();
    let offsets = resp
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    (resp.error_code, offsets)
}

#[tokio::test]
async fn a_group_joins_syncs_commits_and_its_offsets_survive_a_restart() {
    let storage = MemStorage::default();
    let broker = start(&storage).await;
    let addr = broker.local_addr().to_string();
    common::create_topic(&addr, "t", 2).await;
    let mut conn = connect(&addr).await;

    // Before `__consumer_offsets` exists no group is coordinated anywhere.
    assert_eq!(
        heartbeat(&mut conn, "m", 1).await,
        ResponseError::CoordinatorNotAvailable.code()
    );
    let found = find_coordinator(&mut conn, GROUP).await;
    assert_eq!(found.error_code, 0);
    assert_eq!(found.node_id.0, 1);
    assert_eq!(found.port, broker.local_addr().port() as i32);

    // The internal topic now exists, flagged internal, with the configured partitions.
    let metadata = conn
        .request(&MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default()
                .with_name(Some(TopicName(s(OFFSETS_TOPIC)))),
        ])))
        .await
        .unwrap();
    assert!(metadata.topics[0].is_internal);
    assert_eq!(
        metadata.topics[0].partitions.len(),
        OFFSETS_PARTITIONS as usize
    );

    // KIP-394: a new member first gets its id, then joins with it.
    let first = join(&mut conn, "").await;
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    let member_id = first.member_id.to_string();
    assert!(member_id.starts_with("group-test-"), "{member_id}");
    let joined = join(&mut conn, &member_id).await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader.as_str(), member_id);
    assert_eq!(joined.protocol_name.as_ref().unwrap().as_str(), "range");
    assert_eq!(joined.members.len(), 1);

    let synced = conn
        .request(
            &SyncGroupRequest::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_member_id(s(&member_id))
                .with_generation_id(1)
                .with_assignments(vec![
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(s(&member_id))
                        .with_assignment(Bytes::from_static(b"all of t")),
                ]),
        )
        .await
        .unwrap();
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"all of t");

    assert_eq!(heartbeat(&mut conn, &member_id, 1).await, 0);
    assert_eq!(
        heartbeat(&mut conn, "stranger", 1).await,
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        commit(&mut conn, &member_id, 7, &[(0, 1)]).await,
        vec![ResponseError::IllegalGeneration.code()]
    );
    assert_eq!(
        commit(&mut conn, &member_id, 1, &[(0, 5), (1, 7)]).await,
        vec![0, 0]
    );
    assert_eq!(fetch_offsets(&mut conn).await, (0, vec![(0, 5), (1, 7)]));

    // The records went to the group's partition of `__consumer_offsets`.
    let partition = offsets_partition(GROUP, OFFSETS_PARTITIONS);
    let listed = conn
        .request(
            &ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                    .with_name(TopicName(s(OFFSETS_TOPIC)))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(partition)
                            .with_timestamp(-1),
                    ])]),
        )
        .await
        .unwrap();
    let end_offset = listed.topics[0].partitions[0].offset;
    assert!(
        end_offset >= 3,
        "group metadata and two offsets: {end_offset}"
    );

    broker.shutdown().await.unwrap();
    let broker = start(&storage).await;
    let addr = broker.local_addr().to_string();
    let mut conn = connect(&addr).await;
    // The partition is replayed before its groups are served.
    let (error, offsets) = loop {
        let (error, offsets) = fetch_offsets(&mut conn).await;
        if error != ResponseError::CoordinatorLoadInProgress.code() {
            break (error, offsets);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!((error, offsets), (0, vec![(0, 5), (1, 7)]));
    // The group came back Stable in its generation, its member known again.
    assert_eq!(heartbeat(&mut conn, &member_id, 1).await, 0);
    let described = conn
        .request(&DescribeGroupsRequest::default().with_groups(vec![GroupId(s(GROUP))]))
        .await
        .unwrap();
    assert_eq!(described.groups[0].group_state.as_str(), "Stable");
    assert_eq!(described.groups[0].members.len(), 1);
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn find_coordinator_v4_batches_keys_and_refuses_what_it_cannot_serve() {
    let storage = MemStorage::default();
    let broker = start(&storage).await;
    let addr = broker.local_addr().to_string();
    let mut conn = connect(&addr).await;
    conn.pin_version(ApiKey::FindCoordinator, 4);
    let resp: FindCoordinatorResponse = conn
        .request(
            &FindCoordinatorRequest::default()
                .with_key_type(0)
                .with_coordinator_keys(vec![s("a"), s(""), s("b")]),
        )
        .await
        .unwrap();
    let answers: Vec<(String, i16, i32)> = resp
        .coordinators
        .iter()
        .map(|c| (c.key.to_string(), c.error_code, c.node_id.0))
        .collect();
    assert_eq!(
        answers,
        vec![
            ("a".to_string(), 0, 1),
            ("".to_string(), ResponseError::InvalidGroupId.code(), -1),
            ("b".to_string(), 0, 1),
        ]
    );
    // No transaction coordinator yet.
    let resp: FindCoordinatorResponse = conn
        .request(
            &FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_coordinator_keys(vec![s("txn")]),
        )
        .await
        .unwrap();
    assert_eq!(
        resp.coordinators[0].error_code,
        ResponseError::CoordinatorNotAvailable.code()
    );
    // A group API on garbage input answers with an error, and the broker stays up.
    let resp = conn
        .request(
            &JoinGroupRequest::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_session_timeout_ms(1)
                .with_member_id(s(""))
                .with_protocol_type(s("consumer")),
        )
        .await
        .unwrap();
    assert_ne!(resp.error_code, 0);
    assert_eq!(
        heartbeat(&mut conn, "", -1).await,
        ResponseError::UnknownMemberId.code()
    );
    broker.shutdown().await.unwrap();
}

/// A simple (generation -1) commit of offset 7 for partition 0 of topic `t` in `group`.
async fn simple_commit(conn: &mut Connection, group: &str) -> i16 {
    common::commit_t0(conn, group, "", -1, 7).await
}

/// One DeleteGroups naming groups of two `__consumer_offsets` partitions: their tombstones
/// go to both partitions, both groups are deleted, and the coordinator keeps serving
/// (it once asserted that a write's records share one partition, and panicked).
/// Clients may not append to the internal topic themselves.
#[tokio::test]
async fn delete_groups_spanning_two_offsets_partitions_and_no_client_appends() {
    let storage = MemStorage::default();
    let broker = start(&storage).await;
    let addr = broker.local_addr().to_string();
    let mut conn = connect(&addr).await;
    conn.pin_version(ApiKey::DeleteGroups, 2);
    conn.pin_version(ApiKey::ListGroups, 4);
    let (a, b) = ("a", "b");
    assert_ne!(
        offsets_partition(a, OFFSETS_PARTITIONS),
        offsets_partition(b, OFFSETS_PARTITIONS)
    );
    assert_eq!(find_coordinator(&mut conn, a).await.error_code, 0);
    // A commit for a topic the broker does not have is refused per partition, as Kafka
    // does (librdkafka's 0030 checks it).
    let mut code = 0;
    for _ in 0..50 {
        code = simple_commit(&mut conn, a).await;
        if code == ResponseError::UnknownTopicOrPartition.code() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(code, ResponseError::UnknownTopicOrPartition.code());
    common::create_topic(&addr, "t", 1).await;
    // The coordinator serves once the (empty) partitions are loaded.
    let mut code = -1;
    for _ in 0..50 {
        code = simple_commit(&mut conn, a).await;
        if code == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(code, 0);
    assert_eq!(simple_commit(&mut conn, b).await, 0);
    let deleted = conn
        .request(
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(a)), GroupId(s(b))]),
        )
        .await
        .unwrap();
    let codes: Vec<i16> = deleted.results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![0, 0]);
    let listed = conn.request(&ListGroupsRequest::default()).await.unwrap();
    assert_eq!(listed.error_code, 0);
    assert!(listed.groups.is_empty(), "{:?}", listed.groups);

    let batch = faultline::record::codec::encode_batch(
        &[faultline::record::codec::NewRecord {
            timestamp: 0,
            key: None,
            value: Some(Bytes::from_static(b"garbage")),
            headers: Vec::new(),
        }],
        &Default::default(),
    );
    let produced = conn
        .request(
            &ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(TopicName(s(OFFSETS_TOPIC)))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch.freeze())),
                    ])]),
        )
        .await
        .unwrap();
    assert_eq!(
        produced.responses[0].partition_responses[0].error_code,
        ResponseError::InvalidTopicException.code()
    );
}
