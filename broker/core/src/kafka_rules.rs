//! Kafka's rules, limits and error codes that more than one part of the broker applies: the
//! broker's state, the controller's decisions and the replica logic all use these, so a
//! rule is written once. Pure data and checks: no I/O, no protocol types (the deciding
//! modules answer with plain codes; the request handlers turn them into responses).

/// Kafka's limit on topic name length (a name is also a directory name with a partition
/// suffix, which must fit in 255 bytes).
pub const TOPIC_NAME_LENGTH_MAX: usize = 249;

/// The most partitions one topic may have here (Kafka's own limit is higher; this bounds
/// the work and the metadata records of one CreateTopics entry, and a typo's damage).
pub const TOPIC_PARTITIONS_MAX: i32 = 10_000;

/// Kafka's default `replica.lag.time.max.ms`: how long an ISR member may go without
/// catching up before the leader proposes to remove it.
pub const REPLICA_LAG_TIME_MAX_MS_DEFAULT: i64 = 30_000;

/// Kafka's default `min.insync.replicas`.
pub const MIN_INSYNC_REPLICAS_DEFAULT: i32 = 1;

/// Kafka's default `broker.session.timeout.ms`.
pub const BROKER_SESSION_TIMEOUT_MS_DEFAULT: i64 = 9_000;

/// Why `name` is not a legal Kafka topic name, if it is not: 1 to 249 of ASCII letters,
/// digits, `.`, `_` and `-`, and not `.` or `..`.
pub fn topic_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty")
    } else if name == "." || name == ".." {
        Some("reserved")
    } else if name.len() > TOPIC_NAME_LENGTH_MAX {
        Some("longer than 249 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("only ASCII letters, digits, '.', '_' and '-' are allowed")
    } else {
        None
    }
}

/// A topic name Kafka would refuse (INVALID_TOPIC_EXCEPTION), with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidTopicName {
    pub message: String,
}

/// Kafka's legal topic names, the one check broker state, controller and lab use.
pub fn validate_topic_name(name: &str) -> Result<(), InvalidTopicName> {
    match topic_name_problem(name) {
        None => Ok(()),
        Some(why) => Err(InvalidTopicName {
            message: format!("invalid topic name {name:?}: {why}"),
        }),
    }
}

/// Kafka's error codes as the deciding modules answer with them (the request handlers
/// use `kafka_protocol::ResponseError`; a test keeps the two in agreement).
pub mod error_code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const INVALID_REQUEST: i16 = 42;
    pub const OPERATION_NOT_ATTEMPTED: i16 = 55;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
    pub const STALE_BROKER_EPOCH: i16 = 77;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
    pub const INVALID_UPDATE_VERSION: i16 = 95;
    pub const INELIGIBLE_REPLICA: i16 = 107;
    pub const NEW_LEADER_ELECTED: i16 = 108;
    pub const FENCED_MEMBER_EPOCH: i16 = 110;
    pub const UNRELEASED_INSTANCE_ID: i16 = 111;
    pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
    pub const STALE_MEMBER_EPOCH: i16 = 113;
    pub const INVALID_REGULAR_EXPRESSION: i16 = 128;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::ResponseError as E;

    #[test]
    fn error_codes_are_kafkas() {
        use error_code::*;
        for (ours, kafka) in [
            (OFFSET_OUT_OF_RANGE, E::OffsetOutOfRange),
            (OFFSET_METADATA_TOO_LARGE, E::OffsetMetadataTooLarge),
            (COORDINATOR_NOT_AVAILABLE, E::CoordinatorNotAvailable),
            (NOT_COORDINATOR, E::NotCoordinator),
            (ILLEGAL_GENERATION, E::IllegalGeneration),
            (INCONSISTENT_GROUP_PROTOCOL, E::InconsistentGroupProtocol),
            (INVALID_GROUP_ID, E::InvalidGroupId),
            (UNKNOWN_MEMBER_ID, E::UnknownMemberId),
            (INVALID_SESSION_TIMEOUT, E::InvalidSessionTimeout),
            (REBALANCE_IN_PROGRESS, E::RebalanceInProgress),
            (UNSUPPORTED_VERSION, E::UnsupportedVersion),
            (NON_EMPTY_GROUP, E::NonEmptyGroup),
            (GROUP_ID_NOT_FOUND, E::GroupIdNotFound),
            (MEMBER_ID_REQUIRED, E::MemberIdRequired),
            (GROUP_MAX_SIZE_REACHED, E::GroupMaxSizeReached),
            (FENCED_INSTANCE_ID, E::FencedInstanceId),
            (GROUP_SUBSCRIBED_TO_TOPIC, E::GroupSubscribedToTopic),
            (UNKNOWN_TOPIC_OR_PARTITION, E::UnknownTopicOrPartition),
            (NOT_LEADER_OR_FOLLOWER, E::NotLeaderOrFollower),
            (INVALID_TOPIC_EXCEPTION, E::InvalidTopicException),
            (NOT_ENOUGH_REPLICAS, E::NotEnoughReplicas),
            (
                NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                E::NotEnoughReplicasAfterAppend,
            ),
            (TOPIC_ALREADY_EXISTS, E::TopicAlreadyExists),
            (INVALID_PARTITIONS, E::InvalidPartitions),
            (INVALID_REPLICATION_FACTOR, E::InvalidReplicationFactor),
            (INVALID_REPLICA_ASSIGNMENT, E::InvalidReplicaAssignment),
            (INVALID_REQUEST, E::InvalidRequest),
            (OPERATION_NOT_ATTEMPTED, E::OperationNotAttempted),
            (FENCED_LEADER_EPOCH, E::FencedLeaderEpoch),
            (UNKNOWN_LEADER_EPOCH, E::UnknownLeaderEpoch),
            (STALE_BROKER_EPOCH, E::StaleBrokerEpoch),
            (NEW_LEADER_ELECTED, E::NewLeaderElected),
            (FENCED_MEMBER_EPOCH, E::FencedMemberEpoch),
            (UNRELEASED_INSTANCE_ID, E::UnreleasedInstanceId),
            (UNSUPPORTED_ASSIGNOR, E::UnsupportedAssignor),
            (STALE_MEMBER_EPOCH, E::StaleMemberEpoch),
            (INVALID_REGULAR_EXPRESSION, E::InvalidRegularExpression),
            (INELIGIBLE_REPLICA, E::IneligibleReplica),
            (INVALID_UPDATE_VERSION, E::InvalidUpdateVersion),
        ] {
            assert_eq!(ours, kafka.code(), "{kafka:?}");
        }
    }

    #[test]
    fn topic_names() {
        for good in ["a", "orders.v2", "A_b-9", &"x".repeat(249)] {
            assert_eq!(topic_name_problem(good), None, "{good}");
        }
        for bad in ["", ".", "..", "a b", "ü", "a/b", &"x".repeat(250)] {
            assert!(topic_name_problem(bad).is_some(), "{bad:?}");
        }
    }
}
