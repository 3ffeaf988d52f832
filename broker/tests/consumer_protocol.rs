//! KIP-848 consumer groups end to end on an in-process standalone broker (in-memory
//! disk): ConsumerGroupHeartbeat with revocation before assignment, OffsetCommit and
//! OffsetFetch v9 checked against the member epoch, ConsumerGroupDescribe, a classic
//! JoinGroup refused, and the group rebuilt from `__consumer_offsets` after a restart.
#![cfg(not(madsim))]

use faultline::client::Connection;
use faultline::server::Broker;
use faultline::storage::MemStorage;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use std::time::Duration;

mod common;
use common::s;
const GROUP: &str = "kip848-group";

async fn start(storage: &MemStorage) -> Broker {
    common::start_broker(storage, 2, true).await
}

async fn connect(addr: &str) -> Connection {
    let versions = [
        (ApiKey::FindCoordinator, 3),
        (ApiKey::ConsumerGroupHeartbeat, 1),
        (ApiKey::ConsumerGroupDescribe, 0),
        (ApiKey::OffsetCommit, 9),
        (ApiKey::OffsetFetch, 9),
        (ApiKey::JoinGroup, 5),
        (ApiKey::Metadata, 12),
    ];
    common::connect_pinned(addr, "kip848-test", &versions).await
}

/// A heartbeat: `owned` None for "unchanged"; a join (epoch 0) subscribes to `t`.
async fn beat(
    conn: &mut Connection,
    member: &str,
    epoch: i32,
    owned: Option<Vec<(uuid::Uuid, Vec<i32>)>>,
) -> ConsumerGroupHeartbeatResponse {
    let joining = epoch == 0;
    let request = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(if joining { 30_000 } else { -1 })
        .with_subscribed_topic_names(joining.then(|| vec![TopicName(s("t"))]))
        .with_topic_partitions(owned.map(|topics| {
            topics
                .into_iter()
                .map(|(id, partitions)| {
                    consumer_group_heartbeat_request::TopicPartitions::default()
                        .with_topic_id(id)
                        .with_partitions(partitions)
                })
                .collect()
        }));
    loop {
        let resp = conn.request(&request).await.unwrap();
        if resp.error_code != ResponseError::CoordinatorLoadInProgress.code() {
            return resp;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn assigned(resp: &ConsumerGroupHeartbeatResponse) -> Option<Vec<(uuid::Uuid, Vec<i32>)>> {
    resp.assignment.as_ref().map(|a| {
        a.topic_partitions
            .iter()
            .map(|t| (t.topic_id, t.partitions.clone()))
            .collect()
    })
}

async fn commit(conn: &mut Connection, member: &str, epoch: i32) -> i16 {
    common::commit_t0(conn, GROUP, member, epoch, 3).await
}

/// OffsetFetch v9 as member `member` in `epoch`: (group error, offset of t-0).
async fn fetch(conn: &mut Connection, member: &str, epoch: i32) -> (i16, i64) {
    let resp = conn
        .request(&OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_member_id(Some(s(member)))
                .with_member_epoch(epoch)
                .with_topics(Some(vec![offset_fetch_request::OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0])])),
        ]))
        .await
        .unwrap();
    let group = &resp.groups[0];
    let offset = group
        .topics
        .first()
        .map_or(-1, |t| t.partitions[0].committed_offset);
    (group.error_code, offset)
}

async fn describe(conn: &mut Connection) -> consumer_group_describe_response::DescribedGroup {
    conn.request(&ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(GROUP))]))
        .await
        .unwrap()
        .groups
        .remove(0)
}

#[tokio::test]
async fn consumer_protocol_reconciles_checks_epochs_and_survives_a_restart() {
    let storage = MemStorage::default();
    let broker = start(&storage).await;
    let addr = broker.local_addr().to_string();
    common::create_topic(&addr, "t", 2).await;
    let mut conn = connect(&addr).await;
    let found = conn
        .request(&FindCoordinatorRequest::default().with_key(s(GROUP)))
        .await
        .unwrap();
    assert_eq!(found.error_code, 0);
    let metadata = conn
        .request(&MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(s("t")))),
        ])))
        .await
        .unwrap();
    let t = metadata.topics[0].topic_id;

    // a joins and gets both partitions, named by topic id.
    let a = beat(&mut conn, "a", 0, Some(vec![])).await;
    assert_eq!((a.error_code, a.member_epoch), (0, 1));
    assert_eq!(a.heartbeat_interval_ms, 5_000);
    assert_eq!(assigned(&a), Some(vec![(t, vec![0, 1])]));
    // b joins in epoch 2 but gets nothing while a still holds everything.
    let b = beat(&mut conn, "b", 0, Some(vec![])).await;
    assert_eq!(
        (b.error_code, b.member_epoch, assigned(&b)),
        (0, 2, Some(vec![]))
    );
    let a = beat(&mut conn, "a", 1, Some(vec![(t, vec![0, 1])])).await;
    assert_eq!(a.member_epoch, 1, "a stays in its epoch until it revokes");
    let kept = assigned(&a).unwrap();
    assert_eq!(kept[0].1.len(), 1);
    assert_eq!(commit(&mut conn, "a", 1).await, 0);
    assert_eq!(
        commit(&mut conn, "a", 2).await,
        ResponseError::StaleMemberEpoch.code()
    );
    assert_eq!(
        commit(&mut conn, "stranger", 1).await,
        ResponseError::UnknownMemberId.code()
    );
    // Kafka's version rules: below v9 a consumer-protocol member's stale epoch is
    // UNSUPPORTED_VERSION; from v9 a group that does not exist is GROUP_ID_NOT_FOUND
    // (ILLEGAL_GENERATION below).
    let mut v8 = common::connect_pinned(&addr, "v8", &[(ApiKey::OffsetCommit, 8)]).await;
    assert_eq!(
        common::commit_t0(&mut v8, GROUP, "a", 2, 3).await,
        ResponseError::UnsupportedVersion.code()
    );
    assert_eq!(
        common::commit_t0(&mut conn, "no-such-group", "m", 1, 3).await,
        ResponseError::GroupIdNotFound.code()
    );
    assert_eq!(
        common::commit_t0(&mut v8, "no-such-group", "m", 1, 3).await,
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(fetch(&mut conn, "a", 1).await, (0, 3));
    assert_eq!(
        fetch(&mut conn, "a", 0).await.0,
        ResponseError::StaleMemberEpoch.code()
    );
    let b = beat(&mut conn, "b", 2, None).await;
    assert_eq!((b.member_epoch, b.assignment.is_none()), (2, true));
    assert_eq!(
        describe(&mut conn).await.group_state.as_str(),
        "Reconciling"
    );
    let a = beat(&mut conn, "a", 1, Some(kept.clone())).await;
    assert_eq!(a.member_epoch, 2);
    let b = beat(&mut conn, "b", 2, None).await;
    let given = assigned(&b).unwrap();
    assert_eq!(given[0].1.len(), 1);
    assert_ne!(given[0].1, kept[0].1);
    let fenced = beat(&mut conn, "a", 7, None).await;
    assert_eq!(fenced.error_code, ResponseError::FencedMemberEpoch.code());

    // Kafka's other checks.
    let classic = conn
        .request(
            &JoinGroupRequest::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_member_id(s("m"))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(s("range"))]),
        )
        .await
        .unwrap();
    assert_eq!(
        classic.error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    let unknown_assignor = conn
        .request(
            &ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_member_id(s("c"))
                .with_rebalance_timeout_ms(1000)
                .with_subscribed_topic_names(Some(vec![TopicName(s("t"))]))
                .with_server_assignor(Some(s("nope"))),
        )
        .await
        .unwrap();
    assert_eq!(
        unknown_assignor.error_code,
        ResponseError::UnsupportedAssignor.code()
    );

    let before = describe(&mut conn).await;
    assert_eq!(before.error_code, 0);
    assert_eq!(before.group_state.as_str(), "Stable");
    assert_eq!((before.group_epoch, before.assignment_epoch), (2, 2));
    assert_eq!(before.assignor_name.as_str(), "uniform");
    assert_eq!(before.members.len(), 2);

    // A new coordinator (the broker restarted) rebuilds the group from its records.
    broker.shutdown().await.unwrap();
    let broker = start(&storage).await;
    let addr = broker.local_addr().to_string();
    let mut conn = connect(&addr).await;
    let b = beat(&mut conn, "b", 2, Some(given.clone())).await;
    assert_eq!((b.error_code, b.member_epoch), (0, 2));
    let after = describe(&mut conn).await;
    assert_eq!(after.group_state.as_str(), "Stable");
    assert_eq!((after.group_epoch, after.members.len()), (2, 2));
    assert_eq!(fetch(&mut conn, "a", 2).await, (0, 3));
    // b leaves for good: a new epoch, a gets everything once it heartbeats.
    let left = beat(&mut conn, "b", -1, None).await;
    assert_eq!(left.member_epoch, -1);
    let a = beat(&mut conn, "a", 2, Some(kept)).await;
    assert_eq!(
        (a.member_epoch, assigned(&a)),
        (3, Some(vec![(t, vec![0, 1])]))
    );
    broker.shutdown().await.unwrap();
}
