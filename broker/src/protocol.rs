//! Which Kafka APIs and versions this broker serves, and the framing of requests.
//!
//! The ranges are chosen so that every client we test against (kcat/librdkafka,
//! confluent-kafka, kafka-python, aiokafka, kafkajs) finds a common version; see
//! `shared/notes/kafka-protocol.md`. Each range is also clipped to what the
//! `kafka-protocol` crate can decode.

use kafka_protocol::messages::ApiKey;

/// (API, lowest version, highest version) advertised in ApiVersions.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    // The classic group protocol. FindCoordinator 4 batches keys (KIP-699); JoinGroup 8+
    // (KIP-800) is not served. OffsetCommit 9 / OffsetFetch 9 carry a KIP-848 member's
    // epoch (OffsetFetch 10 names topics by id: not served).
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // KIP-848, the consumer group protocol (v1: the client names its member id, KIP-1082).
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 0),
];

/// Kafka's ACL operation codes (`AclOperation`), the bit numbers of the authorized
/// operation sets that Metadata (KIP-430), DescribeGroups and DescribeCluster report.
pub mod acl_operation {
    pub const READ: u8 = 3;
    pub const WRITE: u8 = 4;
    pub const CREATE: u8 = 5;
    pub const DELETE: u8 = 6;
    pub const ALTER: u8 = 7;
    pub const DESCRIBE: u8 = 8;
    pub const CLUSTER_ACTION: u8 = 9;
    pub const DESCRIBE_CONFIGS: u8 = 10;
    pub const ALTER_CONFIGS: u8 = 11;
    pub const IDEMPOTENT_WRITE: u8 = 12;

    /// The bit set of `operations`, as the wire carries it.
    pub const fn bits(operations: &[u8]) -> i32 {
        let mut set = 0i32;
        let mut i = 0;
        while i < operations.len() {
            set |= 1 << operations[i];
            i += 1;
        }
        set
    }
}

/// What a client may do to a topic. This broker has no authorizer, so, as Kafka without
/// one, every operation the resource type supports is allowed.
pub const TOPIC_AUTHORIZED_OPERATIONS: i32 = {
    use acl_operation::*;
    bits(&[
        READ,
        WRITE,
        CREATE,
        DELETE,
        ALTER,
        DESCRIBE,
        DESCRIBE_CONFIGS,
        ALTER_CONFIGS,
    ])
};

/// What a client may do to the cluster (no authorizer: everything the type supports).
pub const CLUSTER_AUTHORIZED_OPERATIONS: i32 = {
    use acl_operation::*;
    bits(&[
        CREATE,
        ALTER,
        DESCRIBE,
        CLUSTER_ACTION,
        DESCRIBE_CONFIGS,
        ALTER_CONFIGS,
        IDEMPOTENT_WRITE,
    ])
};

/// Fetch v13 names topics by id (KIP-516). It is served but not advertised: only brokers
/// use it, for replica fetches, so that a follower and a leader that disagree about which
/// topic a name means (one was deleted and created again, and one of them has not learned
/// it yet) never replicate one topic's records into the other. Clients are offered 12.
pub const REPLICA_FETCH_VERSION: i16 = 13;

/// The range of `key` a request may use: the advertised one, and replica Fetch v13.
pub fn served_range(key: ApiKey) -> Option<(i16, i16)> {
    let (min, max) = supported_range(key)?;
    Some((
        min,
        if key == ApiKey::Fetch {
            REPLICA_FETCH_VERSION
        } else {
            max
        },
    ))
}

/// What ApiVersions advertises: every served API, standalone or clustered.
pub fn advertised_apis() -> impl Iterator<Item = &'static (ApiKey, i16, i16)> {
    SUPPORTED_APIS.iter()
}

/// The advertised range of `key`, if it is served at all.
pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

/// The fixed start of every request header: api key, api version, correlation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

impl RequestPrefix {
    pub fn parse(frame: &[u8]) -> Option<RequestPrefix> {
        if frame.len() < 8 {
            return None;
        }
        Some(RequestPrefix {
            api_key: i16::from_be_bytes([frame[0], frame[1]]),
            api_version: i16::from_be_bytes([frame[2], frame[3]]),
            correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorized_operation_sets_match_kafkas_bit_numbers() {
        // READ..ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS: bits 3-8, 10, 11.
        assert_eq!(TOPIC_AUTHORIZED_OPERATIONS, 0b1101_1111_1000);
        // CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS,
        // IDEMPOTENT_WRITE: bits 5, 7-12.
        assert_eq!(CLUSTER_AUTHORIZED_OPERATIONS, 0b1_1111_1010_0000);
    }

    #[test]
    fn advertised_ranges_are_decodable_by_the_codec() {
        for (key, min, max) in SUPPORTED_APIS {
            let valid = key.valid_versions();
            assert!(
                valid.min <= *min && *max <= valid.max,
                "{key:?} {min}..{max} vs {valid}"
            );
        }
    }
}
