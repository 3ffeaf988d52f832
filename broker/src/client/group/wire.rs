//! The group consumer's wire forms: the embedded "consumer" protocol (subscription and
//! assignment, each a big-endian i16 version then the message at that version), the
//! coordinator requests, and how a coordinator error code is handled.

use super::assignor::{MemberSubscription, TopicPartition};
use crate::client::ClientError;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, BTreeSet};

/// Version of the embedded consumer protocol this client writes: 3, as Java clients
/// since 3.5 and librdkafka since 2.3 do (1 added owned partitions, 2 the generation,
/// 3 the rack). Readers take any version, decoding a newer one as 3.
pub const CONSUMER_PROTOCOL_VERSION: i16 = 3;

pub(super) fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// Group partitions by topic, topics and partitions in order.
fn by_topic(partitions: &BTreeSet<TopicPartition>) -> BTreeMap<&str, Vec<i32>> {
    let mut out: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        out.entry(t.as_str()).or_default().push(*p);
    }
    out
}

fn with_version(version: i16, encode: impl FnOnce(&mut BytesMut) -> anyhow::Result<()>) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    encode(&mut buf).expect("a consumer protocol message always encodes");
    buf.freeze()
}

fn read_version(bytes: &mut Bytes, what: &str) -> Result<i16, ClientError> {
    if bytes.remaining() < 2 {
        return Err(ClientError::Protocol(format!("empty {what}")));
    }
    let version = bytes.get_i16();
    if version < 0 {
        return Err(ClientError::Protocol(format!("{what} version {version}")));
    }
    Ok(version.min(CONSUMER_PROTOCOL_VERSION))
}

/// A member's subscription metadata for JoinGroup.
pub fn encode_subscription(
    topics: &BTreeSet<String>,
    owned: &BTreeSet<TopicPartition>,
    generation: i32,
) -> Bytes {
    let msg = ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| s(t)).collect())
        .with_owned_partitions(
            by_topic(owned)
                .into_iter()
                .map(|(t, ps)| {
                    consumer_protocol_subscription::TopicPartition::default()
                        .with_topic(TopicName(s(t)))
                        .with_partitions(ps)
                })
                .collect(),
        )
        .with_generation_id(generation);
    with_version(CONSUMER_PROTOCOL_VERSION, |buf| {
        msg.encode(buf, CONSUMER_PROTOCOL_VERSION)
    })
}

/// A member's subscription as JoinGroup returns it to the leader.
pub fn decode_subscription(
    member_id: &str,
    group_instance_id: Option<String>,
    metadata: &Bytes,
) -> Result<MemberSubscription, ClientError> {
    let mut bytes = metadata.clone();
    let version = read_version(&mut bytes, "subscription")?;
    let msg = ConsumerProtocolSubscription::decode(&mut bytes, version)
        .map_err(|e| ClientError::Protocol(format!("subscription of {member_id}: {e}")))?;
    Ok(MemberSubscription {
        member_id: member_id.to_string(),
        group_instance_id,
        topics: msg.topics.iter().map(|t| t.to_string()).collect(),
        owned: msg
            .owned_partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.to_string(), *p)))
            .collect(),
        generation: if version >= 2 { msg.generation_id } else { -1 },
    })
}

/// An assignment for SyncGroup.
pub fn encode_assignment(partitions: &BTreeSet<TopicPartition>) -> Bytes {
    let msg = ConsumerProtocolAssignment::default().with_assigned_partitions(
        by_topic(partitions)
            .into_iter()
            .map(|(t, ps)| {
                consumer_protocol_assignment::TopicPartition::default()
                    .with_topic(TopicName(s(t)))
                    .with_partitions(ps)
            })
            .collect(),
    );
    with_version(CONSUMER_PROTOCOL_VERSION, |buf| {
        msg.encode(buf, CONSUMER_PROTOCOL_VERSION)
    })
}

/// The assignment SyncGroup returned; empty bytes mean no partitions.
pub fn decode_assignment(bytes: &Bytes) -> Result<BTreeSet<TopicPartition>, ClientError> {
    if bytes.is_empty() {
        return Ok(BTreeSet::new());
    }
    let mut bytes = bytes.clone();
    let version = read_version(&mut bytes, "assignment")?;
    let msg = ConsumerProtocolAssignment::decode(&mut bytes, version)
        .map_err(|e| ClientError::Protocol(format!("assignment: {e}")))?;
    Ok(msg
        .assigned_partitions
        .iter()
        .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.to_string(), *p)))
        .collect())
}

/// LeaveGroup for one member, in the shape of the negotiated version (a member list from v3).
pub fn leave_request(
    version: i16,
    group_id: &str,
    member_id: &str,
    group_instance_id: Option<&str>,
) -> LeaveGroupRequest {
    let req = LeaveGroupRequest::default().with_group_id(GroupId(s(group_id)));
    if version >= 3 {
        req.with_members(vec![leave_group_request::MemberIdentity::default()
            .with_member_id(s(member_id))
            .with_group_instance_id(group_instance_id.map(s))])
    } else {
        req.with_member_id(s(member_id))
    }
}

/// The first error of a LeaveGroup answer, top level or per member.
pub fn leave_error(resp: &LeaveGroupResponse) -> i16 {
    if resp.error_code != 0 {
        return resp.error_code;
    }
    resp.members
        .iter()
        .map(|m| m.error_code)
        .find(|c| *c != 0)
        .unwrap_or(0)
}

/// What a coordinator's error code asks of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    None,
    /// The group is rebalancing: rejoin, keeping the partitions.
    Rejoin,
    /// The generation is gone: partitions lost, rejoin (with a fresh member id when
    /// `reset_member`).
    Lost {
        reset_member: bool,
    },
    /// Find the coordinator again, then retry.
    Rediscover,
    /// Retry after a backoff.
    Retry,
    /// The member cannot go on (fenced static member, bad configuration...).
    Fatal,
}

/// Kafka's Java consumer's handling of a group error code.
pub fn reaction(code: i16) -> Reaction {
    use ResponseError as E;
    if code == 0 {
        return Reaction::None;
    }
    match ResponseError::try_from_code(code) {
        Some(E::RebalanceInProgress) => Reaction::Rejoin,
        Some(E::IllegalGeneration) => Reaction::Lost {
            reset_member: false,
        },
        Some(E::UnknownMemberId) => Reaction::Lost { reset_member: true },
        Some(E::NotCoordinator | E::CoordinatorNotAvailable) => Reaction::Rediscover,
        Some(E::CoordinatorLoadInProgress | E::RequestTimedOut | E::UnstableOffsetCommit) => {
            Reaction::Retry
        }
        _ => Reaction::Fatal,
    }
}
