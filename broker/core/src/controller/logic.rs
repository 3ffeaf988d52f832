//! The deciding logic of the active KRaft controller: the metadata records, the metadata
//! image they build, and the decisions (broker sessions, topic creation, AlterPartition,
//! leader election) that turn requests and timers into new records.
//!
//! Everything is pure: time comes in as `now_ms`, topic ids (the only randomness) come in
//! as arguments, and the output is a list of [`MetadataRecord`]s. Consensus is elsewhere:
//! the shell proposes the records to the metadata Raft log, applies them at once to its
//! *working image* (committed records plus records proposed but not yet committed), and
//! applies committed records to every replica's image with [`MetadataImage::apply`].
//!
//! # The rules, as Kafka has them
//! - **Registration and fencing (KIP-631).** A broker registers with an *incarnation*, a
//!   random id chosen at every process start. A registration with a new incarnation
//!   replaces the old one; the broker starts fenced. It is unfenced by a heartbeat that
//!   shows it has applied metadata up to the offset at which its registration was applied
//!   (`metadata_offset >= registration_offset`): it then knows its own registration.
//!   Registration and heartbeat are one request here: a heartbeat naming another
//!   incarnation than the registered one re-registers (Kafka would answer a heartbeat
//!   with a stale broker epoch with `STALE_BROKER_EPOCH`; here the newest process to
//!   speak wins, and a stale process learns it is fenced from the reply).
//! - **Sessions (`broker.session.timeout.ms`, default 9 s).** Every heartbeat renews the
//!   broker's session. A session started at `t` is valid while `now_ms - t <
//!   session_timeout_ms`; the next [`Controller::tick`] at or after `t + session_timeout_ms`
//!   fences the broker. Sessions are volatile: a newly active controller starts one for
//!   every registered broker ([`Controller::activate`]), so a failover never fences a
//!   broker that keeps heartbeating.
//! - **Fenced brokers are not in the ISR (KIP-841).** A fenced broker (and the old
//!   incarnation of a re-registered broker, which is fenced too) is removed from the ISR of
//!   every partition, except that the ISR never becomes empty: when every member is
//!   ineligible, one member is kept (the leader if it was one, else the first member in
//!   assignment order) and the partition has no leader (`NO_LEADER`). A clean election
//!   can then pick that member again when it returns.
//! - **Clean election.** The new leader is the first replica, in assignment order, that is
//!   in the ISR and registered and unfenced.
//! - **Unclean election (`unclean.leader.election.enable`, KIP-704).** Only when the
//!   topic's setting (or, when the topic does not set it, the controller default) is
//!   `true`, and only when no ISR member is eligible: the first eligible replica in
//!   assignment order leads, and the ISR becomes just that leader. Committed records that
//!   only the old ISR held may be lost; that is what the setting accepts.
//! - **Preferred leader (`auto.leader.rebalance.enable`).** When `replicas[0]` is eligible,
//!   in the ISR and not the leader, it becomes the leader again. Kafka checks this every
//!   `leader.imbalance.check.interval.seconds`, past an imbalance threshold; here every
//!   tick does it.
//! - **Epochs.** Any change of leader (including to or from `NO_LEADER`) bumps
//!   `leader_epoch` and `partition_epoch`; an ISR-only change bumps `partition_epoch`.
//!   A decision that changes nothing produces no record.
//! - **AlterPartition (KIP-497).** Only the current leader, in its current leader epoch
//!   and at the current partition epoch, may change the ISR; it may not drop itself, name
//!   brokers outside the assignment, or add fenced or unregistered brokers (KIP-841). The
//!   errors are checked in a fixed order (see [`Controller::alter_partition`]).
//! - **Topic creation.** Legal names are 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`,
//!   and must not collide with an existing name once `.` and `_` are identified.
//!   Partitions 1..=10000 (`num.partitions` when -1), replication factor 1..=unfenced
//!   brokers (`default.replication.factor` when -1). Placement follows Kafka's
//!   rack-aware assignment: brokers interleaved rack by rack, partition `p` led by
//!   position `p + start` of that list (`start` derived from the topic id, so it is
//!   deterministic), followers taken with a per-round shift so that they spread, each
//!   follower from a rack the partition does not use yet while there is one. A new
//!   partition is led by its first eligible replica with every eligible replica in sync
//!   (all of them when the controller placed it; a manual assignment may name fenced
//!   brokers, which stay out of the ISR).
//!
//! **Architecture invariant:** every Partition record this module returns has a
//! non-empty, strictly ascending ISR within the assignment, a leader that is `NO_LEADER`
//! or an ISR member, epochs no lower than the image's, and differs from the image. These
//! are asserted. [`MetadataImage::apply`] never panics and refuses records that would
//! break the same rules, so an image built from any record sequence keeps them too. This
//! module knows no clock, no RNG, no I/O and no Raft; it iterates only ordered maps.

use crate::kafka_rules::validate_topic_name;
use crate::probe;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub type BrokerId = i32;

/// The leader of a partition that has none (it is offline).
pub const NO_LEADER: i32 = -1;

pub use crate::kafka_rules::{
    error_code, BROKER_SESSION_TIMEOUT_MS_DEFAULT, TOPIC_NAME_LENGTH_MAX, TOPIC_PARTITIONS_MAX,
};

/// The topic setting that overrides [`ControllerConfig::unclean_leader_election_enable`].
pub const UNCLEAN_LEADER_ELECTION_ENABLE_CONFIG: &str = "unclean.leader.election.enable";

/// One record of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// A broker (re)registered. A new `incarnation` (random per process start, chosen by
    /// the broker) replaces the old registration; the broker is fenced until unfenced.
    RegisterBroker {
        id: BrokerId,
        incarnation: u64,
        host: String,
        port: u16,
        rack: Option<String>,
    },
    FenceBroker {
        id: BrokerId,
    },
    UnfenceBroker {
        id: BrokerId,
    },
    /// Topic created (partitions follow as Partition records in the same batch).
    Topic {
        name: String,
        #[serde(with = "topic_id_hex")]
        id: u128,
        configs: BTreeMap<String, String>,
    },
    /// Full state of one partition: creation or any change.
    Partition(PartitionState),
    RemoveTopic {
        name: String,
    },
}

/// The full state of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub topic: String,
    pub partition: i32,
    /// The assignment; `replicas[0]` is the preferred leader.
    pub replicas: Vec<BrokerId>,
    /// In-sync replicas, strictly ascending.
    pub isr: Vec<BrokerId>,
    /// `NO_LEADER` when offline.
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

/// A registered broker as the image knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub id: BrokerId,
    pub incarnation: u64,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    pub fenced: bool,
    /// Raft index at which this registration (this incarnation) was applied: the broker
    /// is unfenced once it reports having applied metadata up to here.
    #[serde(default)]
    pub registration_offset: u64,
}

/// One topic of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    #[serde(with = "topic_id_hex")]
    pub id: u128,
    pub configs: BTreeMap<String, String>,
    /// Indexed by partition number.
    pub partitions: Vec<PartitionState>,
}

/// The metadata state the log's records build.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MetadataImage {
    /// Raft index of the last applied record batch (0 = empty).
    pub offset: u64,
    pub brokers: BTreeMap<BrokerId, BrokerRegistration>,
    pub topics: BTreeMap<String, TopicImage>,
}

impl MetadataImage {
    /// Apply one committed (or, on the active controller, proposed) record at raft index
    /// `offset`. Never panics: a record that does not fit the image (unknown broker or
    /// topic, a partition state that breaks the rules of the module doc, epochs going
    /// back, a partition index that is neither existing nor the next one, an offset
    /// before the image's) changes nothing but the offset and returns false. Several
    /// records of one batch share an offset.
    pub fn apply(&mut self, offset: u64, record: &MetadataRecord) -> bool {
        if offset < self.offset {
            return false;
        }
        self.offset = offset;
        match record {
            MetadataRecord::RegisterBroker {
                id,
                incarnation,
                host,
                port,
                rack,
            } => {
                if *id < 0 {
                    return false;
                }
                self.brokers.insert(
                    *id,
                    BrokerRegistration {
                        id: *id,
                        incarnation: *incarnation,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        fenced: true,
                        registration_offset: offset,
                    },
                );
                true
            }
            MetadataRecord::FenceBroker { id } | MetadataRecord::UnfenceBroker { id } => {
                match self.brokers.get_mut(id) {
                    Some(broker) => {
                        broker.fenced = matches!(record, MetadataRecord::FenceBroker { .. });
                        true
                    }
                    None => false,
                }
            }
            MetadataRecord::Topic { name, id, configs } => {
                let id_taken = self.topics.values().any(|topic| topic.id == *id);
                if validate_topic_name(name).is_err() || self.topics.contains_key(name) || id_taken
                {
                    return false;
                }
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        name: name.clone(),
                        id: *id,
                        configs: configs.clone(),
                        partitions: Vec::new(),
                    },
                );
                true
            }
            MetadataRecord::Partition(state) => {
                if !partition_state_valid(state) {
                    return false;
                }
                let Some(topic) = self.topics.get_mut(&state.topic) else {
                    return false;
                };
                let index = state.partition as usize; // non-negative: checked above
                if index == topic.partitions.len() {
                    topic.partitions.push(state.clone());
                    return true;
                }
                match topic.partitions.get_mut(index) {
                    Some(current)
                        if state.leader_epoch >= current.leader_epoch
                            && state.partition_epoch >= current.partition_epoch =>
                    {
                        *current = state.clone();
                        true
                    }
                    _ => false,
                }
            }
            MetadataRecord::RemoveTopic { name } => self.topics.remove(name).is_some(),
        }
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get(topic)?.partitions.get(index)
    }

    pub fn unfenced_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|broker| !broker.fenced)
    }

    /// Whether every partition keeps the rules [`MetadataImage::apply`] enforces (for an
    /// image read from a snapshot rather than built by records).
    pub fn is_valid(&self) -> bool {
        self.topics.iter().all(|(name, topic)| {
            topic.name == *name
                && topic.partitions.iter().enumerate().all(|(index, state)| {
                    partition_state_valid(state)
                        && state.topic == *name
                        && state.partition as usize == index
                })
        })
    }

    /// Registered and unfenced: may lead, may be in an ISR.
    pub fn broker_eligible(&self, id: BrokerId) -> bool {
        self.brokers.get(&id).is_some_and(|broker| !broker.fenced)
    }
}

/// The controller's defaults, by Kafka setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms`
    pub session_timeout_ms: i64,
    /// `default.replication.factor`
    pub default_replication_factor: i16,
    /// `num.partitions`
    pub num_partitions: i32,
    /// `unclean.leader.election.enable`; a topic's own setting wins.
    pub unclean_leader_election_enable: bool,
    /// `auto.leader.rebalance.enable`
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`, in milliseconds: preferred leader
    /// elections run at most this often (and first this long after activation).
    pub leader_imbalance_check_interval_ms: i64,
}

/// Kafka's `leader.imbalance.check.interval.seconds` default (300 s).
pub const LEADER_IMBALANCE_CHECK_INTERVAL_MS_DEFAULT: i64 = 300_000;

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            session_timeout_ms: BROKER_SESSION_TIMEOUT_MS_DEFAULT,
            default_replication_factor: 1,
            num_partitions: 1,
            unclean_leader_election_enable: false,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_ms: LEADER_IMBALANCE_CHECK_INTERVAL_MS_DEFAULT,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub broker_id: BrokerId,
    pub incarnation: u64,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// Highest metadata offset the broker has applied.
    pub metadata_offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    pub fenced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTopic {
    pub name: String,
    /// -1: `num.partitions`
    pub partitions: i32,
    /// -1: `default.replication.factor`
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
    /// Optional manual assignment, one Vec per partition (then `partitions` and
    /// `replication_factor` must be -1).
    pub assignment: Option<Vec<Vec<BrokerId>>>,
}

/// A refused request: a Kafka error code and a message for the response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct ControllerError {
    pub code: i16,
    pub message: String,
}

impl ControllerError {
    pub fn new(code: i16, message: impl Into<String>) -> ControllerError {
        ControllerError {
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartitionRequest {
    pub broker_id: BrokerId,
    pub incarnation: u64,
    pub topic: String,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<BrokerId>,
}

/// One broker's session: the incarnation that last heartbeat and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Session {
    incarnation: u64,
    heartbeat_last_ms: i64,
}

/// Volatile state of the active controller (sessions). Rebuilt empty when a controller
/// becomes active: every registered broker then gets a fresh session starting at that
/// moment ([`Controller::activate`]).
#[derive(Debug, Clone)]
pub struct Controller {
    config: ControllerConfig,
    sessions: BTreeMap<BrokerId, Session>,
    /// When the next preferred leader election (imbalance check) is due.
    rebalance_due_ms: Option<i64>,
}

impl Controller {
    pub fn new(config: ControllerConfig) -> Controller {
        assert!(
            config.session_timeout_ms > 0,
            "session timeout must be positive"
        );
        assert!(
            config.leader_imbalance_check_interval_ms > 0,
            "leader imbalance check interval must be positive"
        );
        Controller {
            config,
            sessions: BTreeMap::new(),
            rebalance_due_ms: None,
        }
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// Became the active controller at `now_ms`: start a session for every registered
    /// broker.
    pub fn activate(&mut self, image: &MetadataImage, now_ms: i64) {
        self.rebalance_due_ms = self
            .config
            .auto_leader_rebalance_enable
            .then(|| now_ms.saturating_add(self.config.leader_imbalance_check_interval_ms));
        self.sessions = image
            .brokers
            .values()
            .map(|broker| {
                let session = Session {
                    incarnation: broker.incarnation,
                    heartbeat_last_ms: now_ms,
                };
                (broker.id, session)
            })
            .collect();
    }

    /// A broker heartbeat (registration included). `image` is the working image. Returns
    /// the reply (`fenced` as it will be once the records apply) and the records to
    /// propose.
    ///
    /// - Unknown broker or new incarnation: a RegisterBroker record (the broker is fenced)
    ///   and, for partitions that named the broker, the changes fencing it makes (out of
    ///   ISRs, leadership moved).
    /// - Same incarnation: the session is renewed; a fenced broker whose
    ///   `metadata_offset` reached its `registration_offset` is unfenced, and partitions
    ///   without a leader that it can now lead get one.
    pub fn heartbeat(
        &mut self,
        image: &MetadataImage,
        request: &HeartbeatRequest,
        now_ms: i64,
    ) -> (HeartbeatReply, Vec<MetadataRecord>) {
        let id = request.broker_id;
        if id < 0 {
            return (HeartbeatReply { fenced: true }, Vec::new());
        }
        self.sessions.insert(
            id,
            Session {
                incarnation: request.incarnation,
                heartbeat_last_ms: now_ms,
            },
        );
        let mut records = Vec::new();
        match image.brokers.get(&id) {
            Some(broker) if broker.incarnation == request.incarnation => {
                let unfence =
                    broker.fenced && request.metadata_offset >= broker.registration_offset;
                if !unfence {
                    return (
                        HeartbeatReply {
                            fenced: broker.fenced,
                        },
                        records,
                    );
                }
                records.push(MetadataRecord::UnfenceBroker { id });
                let eligibility = Eligibility {
                    image,
                    fenced: BTreeSet::new(),
                    unfenced: Some(id),
                };
                records.extend(self.partition_changes(image, &eligibility, false, |state| {
                    state.leader == NO_LEADER && state.replicas.contains(&id)
                }));
                (HeartbeatReply { fenced: false }, records)
            }
            _ => {
                records.push(MetadataRecord::RegisterBroker {
                    id,
                    incarnation: request.incarnation,
                    host: request.host.clone(),
                    port: request.port,
                    rack: request.rack.clone(),
                });
                let eligibility = Eligibility {
                    image,
                    fenced: BTreeSet::from([id]),
                    unfenced: None,
                };
                records.extend(self.partition_changes(image, &eligibility, false, |state| {
                    state.leader == id || state.isr.contains(&id)
                }));
                (HeartbeatReply { fenced: true }, records)
            }
        }
    }

    /// CreateTopics. One result per topic, in order; `topic_ids[i]` is the id for
    /// `topics[i]` (the shell has the RNG). Checks, in order: legal name
    /// (INVALID_TOPIC_EXCEPTION), name given twice in the request (INVALID_REQUEST),
    /// existing name (TOPIC_ALREADY_EXISTS), name colliding on `.`/`_`
    /// (INVALID_TOPIC_EXCEPTION), id zero or in use (INVALID_REQUEST), then the manual
    /// assignment (INVALID_REQUEST if combined with a count, else
    /// INVALID_REPLICA_ASSIGNMENT) or the counts (INVALID_PARTITIONS,
    /// INVALID_REPLICATION_FACTOR).
    pub fn create_topics(
        &mut self,
        image: &MetadataImage,
        topics: &[NewTopic],
        topic_ids: &[u128],
    ) -> Vec<(String, Result<Vec<MetadataRecord>, ControllerError>)> {
        assert_eq!(topics.len(), topic_ids.len(), "one topic id per topic");
        let mut name_counts: BTreeMap<&str, usize> = BTreeMap::new();
        for topic in topics {
            *name_counts.entry(topic.name.as_str()).or_default() += 1;
        }
        // Names and ids created earlier in this call: not in `image` yet.
        let mut created_names: BTreeSet<String> = BTreeSet::new();
        let mut created_ids: BTreeSet<u128> = BTreeSet::new();
        let mut results = Vec::with_capacity(topics.len());
        for (topic, &topic_id) in topics.iter().zip(topic_ids) {
            let duplicated = name_counts[topic.name.as_str()] > 1;
            let result = self.create_topic(
                image,
                topic,
                topic_id,
                duplicated,
                &created_names,
                &created_ids,
            );
            if result.is_ok() {
                created_names.insert(topic.name.clone());
                created_ids.insert(topic_id);
            }
            results.push((topic.name.clone(), result));
        }
        results
    }

    /// DeleteTopics for one name: a RemoveTopic record, or UNKNOWN_TOPIC_OR_PARTITION.
    pub fn delete_topic(
        &mut self,
        image: &MetadataImage,
        name: &str,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        if !image.topics.contains_key(name) {
            return Err(ControllerError::new(
                error_code::UNKNOWN_TOPIC_OR_PARTITION,
                format!("topic {name} does not exist"),
            ));
        }
        Ok(vec![MetadataRecord::RemoveTopic {
            name: name.to_string(),
        }])
    }

    /// AlterPartition (KIP-497): the leader asks to change the ISR. Checks, in order:
    /// 1. unknown partition: UNKNOWN_TOPIC_OR_PARTITION (a state the image could not
    ///    hold, or at the last epoch: INVALID_REQUEST);
    /// 2. requester not registered with that incarnation: STALE_BROKER_EPOCH;
    /// 3. leader epoch older than the partition's: FENCED_LEADER_EPOCH; requester not the
    ///    leader, or a newer leader epoch: NOT_LEADER_OR_FOLLOWER;
    /// 4. partition epoch not the current one: INVALID_UPDATE_VERSION;
    /// 5. new ISR without the leader, outside the assignment or with duplicates:
    ///    INVALID_REQUEST;
    /// 6. an added member fenced or unregistered: INELIGIBLE_REPLICA.
    ///
    /// An unchanged ISR gives the current state and no records; otherwise one Partition
    /// record with the sorted ISR and `partition_epoch + 1`.
    pub fn alter_partition(
        &mut self,
        image: &MetadataImage,
        request: &AlterPartitionRequest,
    ) -> Result<(PartitionState, Vec<MetadataRecord>), ControllerError> {
        let decided = self.decide_alter_partition(image, request);
        if decided.is_err() {
            crate::probe!(probe::ALTER_PARTITION_REFUSED);
        }
        decided
    }

    fn decide_alter_partition(
        &mut self,
        image: &MetadataImage,
        request: &AlterPartitionRequest,
    ) -> Result<(PartitionState, Vec<MetadataRecord>), ControllerError> {
        let Some(current) = image.partition(&request.topic, request.partition) else {
            return Err(ControllerError::new(
                error_code::UNKNOWN_TOPIC_OR_PARTITION,
                format!("unknown partition {}-{}", request.topic, request.partition),
            ));
        };
        if !partition_state_changeable(current) {
            return Err(ControllerError::new(
                error_code::INVALID_REQUEST,
                format!(
                    "partition {}-{} cannot change",
                    request.topic, request.partition
                ),
            ));
        }
        let registered = image
            .brokers
            .get(&request.broker_id)
            .is_some_and(|broker| broker.incarnation == request.incarnation);
        if !registered {
            return Err(ControllerError::new(
                error_code::STALE_BROKER_EPOCH,
                format!(
                    "broker {} is not registered with incarnation {}",
                    request.broker_id, request.incarnation
                ),
            ));
        }
        if request.leader_epoch < current.leader_epoch {
            return Err(ControllerError::new(
                error_code::FENCED_LEADER_EPOCH,
                format!(
                    "leader epoch {} is older than {}",
                    request.leader_epoch, current.leader_epoch
                ),
            ));
        }
        if request.broker_id != current.leader || request.leader_epoch != current.leader_epoch {
            return Err(ControllerError::new(
                error_code::NOT_LEADER_OR_FOLLOWER,
                format!(
                    "broker {} in epoch {} is not the leader (leader {} in epoch {})",
                    request.broker_id, request.leader_epoch, current.leader, current.leader_epoch
                ),
            ));
        }
        if request.partition_epoch != current.partition_epoch {
            return Err(ControllerError::new(
                error_code::INVALID_UPDATE_VERSION,
                format!(
                    "partition epoch {} is not the current {}",
                    request.partition_epoch, current.partition_epoch
                ),
            ));
        }
        let new_isr: BTreeSet<BrokerId> = request.new_isr.iter().copied().collect();
        let well_formed = new_isr.len() == request.new_isr.len()
            && new_isr.contains(&current.leader)
            && new_isr.iter().all(|id| current.replicas.contains(id));
        if !well_formed {
            return Err(ControllerError::new(
                error_code::INVALID_REQUEST,
                format!(
                    "ISR {:?} must hold the leader {}, only replicas {:?}, no duplicates",
                    request.new_isr, current.leader, current.replicas
                ),
            ));
        }
        let ineligible: Vec<BrokerId> = new_isr
            .iter()
            .copied()
            .filter(|id| !current.isr.contains(id) && !image.broker_eligible(*id))
            .collect();
        if !ineligible.is_empty() {
            return Err(ControllerError::new(
                error_code::INELIGIBLE_REPLICA,
                format!("brokers {ineligible:?} are fenced or not registered"),
            ));
        }
        let new_isr: Vec<BrokerId> = new_isr.into_iter().collect();
        if new_isr == current.isr {
            return Ok((current.clone(), Vec::new()));
        }
        let next = PartitionState {
            isr: new_isr,
            partition_epoch: epoch_next(current.partition_epoch),
            ..current.clone()
        };
        assert_partition_change(current, &next);
        assert_eq!(next.leader_epoch, current.leader_epoch);
        Ok((next.clone(), vec![MetadataRecord::Partition(next)]))
    }

    /// Timers, in order: (1) fence every unfenced broker whose session expired (or whose
    /// session belongs to another incarnation: it restarts now); (2) take fenced and
    /// unregistered brokers out of every ISR, keeping the last member; (3) elect a leader
    /// where there is none or it is ineligible; (4) with `auto.leader.rebalance.enable`,
    /// move leadership back to `replicas[0]`. Expired sessions are dropped. Returns the
    /// records; each Partition record is the full new state.
    pub fn tick(&mut self, image: &MetadataImage, now_ms: i64) -> Vec<MetadataRecord> {
        let timeout_ms = self.config.session_timeout_ms;
        let mut fenced_now = BTreeSet::new();
        for broker in image.unfenced_brokers() {
            match self.sessions.get(&broker.id) {
                Some(session) if session.incarnation == broker.incarnation => {
                    if now_ms - session.heartbeat_last_ms >= timeout_ms {
                        fenced_now.insert(broker.id);
                    }
                }
                // No session for this registration (it was unfenced by records this
                // controller did not decide): give it a full session from now.
                _ => {
                    let session = Session {
                        incarnation: broker.incarnation,
                        heartbeat_last_ms: now_ms,
                    };
                    self.sessions.insert(broker.id, session);
                }
            }
        }
        // A dropped session of a fenced broker comes back with its next heartbeat; keeping
        // it would make next_deadline_ms stay in the past.
        self.sessions
            .retain(|_, session| now_ms - session.heartbeat_last_ms < timeout_ms);

        if !fenced_now.is_empty() {
            crate::probe!(probe::BROKER_FENCED);
        }
        let mut records: Vec<MetadataRecord> = fenced_now
            .iter()
            .map(|&id| MetadataRecord::FenceBroker { id })
            .collect();
        let eligibility = Eligibility {
            image,
            fenced: fenced_now,
            unfenced: None,
        };
        // Kafka's imbalance check: preferred leaders are restored on a timer, not the
        // moment they return (which would add a leader change to every recovery).
        let rebalance = self.config.auto_leader_rebalance_enable
            && self.rebalance_due_ms.is_none_or(|due| now_ms >= due);
        if rebalance {
            self.rebalance_due_ms =
                Some(now_ms.saturating_add(self.config.leader_imbalance_check_interval_ms));
        }
        records.extend(self.partition_changes(image, &eligibility, rebalance, |_| true));
        records
    }

    /// The earliest time at which [`Controller::tick`] may expire a session, or None.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.sessions
            .values()
            .map(|session| session.heartbeat_last_ms + self.config.session_timeout_ms)
            .chain(self.rebalance_due_ms)
            .min()
    }

    /// The Partition records that the election rules produce for partitions that
    /// `select` picks, given who is eligible.
    fn partition_changes(
        &self,
        image: &MetadataImage,
        eligibility: &Eligibility<'_>,
        rebalance: bool,
        select: impl Fn(&PartitionState) -> bool,
    ) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        for topic in image.topics.values() {
            let unclean = self.unclean_leader_election_enable(topic);
            for state in topic.partitions.iter().filter(|state| select(state)) {
                let eligible = |id: BrokerId| eligibility.eligible(id);
                if let Some(next) = elect(state, eligible, unclean, rebalance) {
                    records.push(MetadataRecord::Partition(next));
                }
            }
        }
        records
    }

    /// The topic's `unclean.leader.election.enable` ("true"/"false", any case), else
    /// the controller's.
    fn unclean_leader_election_enable(&self, topic: &TopicImage) -> bool {
        let configured = topic.configs.get(UNCLEAN_LEADER_ELECTION_ENABLE_CONFIG);
        match configured
            .map(|value| value.to_ascii_lowercase())
            .as_deref()
        {
            Some("true") => true,
            Some("false") => false,
            _ => self.config.unclean_leader_election_enable,
        }
    }

    fn create_topic(
        &self,
        image: &MetadataImage,
        topic: &NewTopic,
        topic_id: u128,
        duplicated: bool,
        created_names: &BTreeSet<String>,
        created_ids: &BTreeSet<u128>,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        validate_topic_name(&topic.name)?;
        if duplicated {
            return Err(ControllerError::new(
                error_code::INVALID_REQUEST,
                format!("topic {} is named more than once", topic.name),
            ));
        }
        if image.topics.contains_key(&topic.name) || created_names.contains(&topic.name) {
            return Err(ControllerError::new(
                error_code::TOPIC_ALREADY_EXISTS,
                format!("topic {} already exists", topic.name),
            ));
        }
        let folded = fold_topic_name(&topic.name);
        let collision = image
            .topics
            .keys()
            .chain(created_names.iter())
            .find(|existing| fold_topic_name(existing) == folded);
        if let Some(existing) = collision {
            return Err(ControllerError::new(
                error_code::INVALID_TOPIC_EXCEPTION,
                format!(
                    "topic {} collides with existing topic {existing}",
                    topic.name
                ),
            ));
        }
        let id_taken = topic_id == 0
            || created_ids.contains(&topic_id)
            || image
                .topics
                .values()
                .any(|existing| existing.id == topic_id);
        if id_taken {
            return Err(ControllerError::new(
                error_code::INVALID_REQUEST,
                format!("topic id {topic_id:032x} is zero or in use"),
            ));
        }
        let assignment = match &topic.assignment {
            Some(assignment) => {
                if topic.partitions != -1 || topic.replication_factor != -1 {
                    return Err(ControllerError::new(
                        error_code::INVALID_REQUEST,
                        "a manual assignment needs partitions and replication factor -1",
                    ));
                }
                validate_assignment(
                    assignment,
                    |id| image.brokers.contains_key(&id),
                    |id| image.broker_eligible(id),
                )?;
                assignment.clone()
            }
            None => self.place(image, topic, topic_id)?,
        };

        let mut records = Vec::with_capacity(assignment.len() + 1);
        records.push(MetadataRecord::Topic {
            name: topic.name.clone(),
            id: topic_id,
            configs: topic.configs.clone(),
        });
        for (partition, replicas) in assignment.into_iter().enumerate() {
            // In sync: every assigned broker that is eligible (all of them, when placed
            // by the controller). Never empty: validate_assignment checked.
            let mut isr: Vec<BrokerId> = replicas
                .iter()
                .copied()
                .filter(|&id| image.broker_eligible(id))
                .collect();
            let leader = replicas
                .iter()
                .copied()
                .find(|id| isr.contains(id))
                .expect("an eligible replica");
            isr.sort_unstable();
            let state = PartitionState {
                topic: topic.name.clone(),
                partition: i32::try_from(partition).expect("partition count is bounded"),
                replicas,
                isr,
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
            };
            assert!(
                partition_state_valid(&state),
                "invalid new partition {state:?}"
            );
            records.push(MetadataRecord::Partition(state));
        }
        Ok(records)
    }

    /// Controller-chosen placement: counts validated, then Kafka's rack-aware assignment
    /// over the unfenced brokers.
    fn place(
        &self,
        image: &MetadataImage,
        topic: &NewTopic,
        topic_id: u128,
    ) -> Result<Vec<Vec<BrokerId>>, ControllerError> {
        let partitions = match topic.partitions {
            -1 => self.config.num_partitions,
            n => n,
        };
        if !(1..=TOPIC_PARTITIONS_MAX).contains(&partitions) {
            return Err(ControllerError::new(
                error_code::INVALID_PARTITIONS,
                format!("partitions must be 1..={TOPIC_PARTITIONS_MAX}, got {partitions}"),
            ));
        }
        let replication_factor = match topic.replication_factor {
            -1 => self.config.default_replication_factor,
            n => n,
        };
        let brokers: Vec<&BrokerRegistration> = image.unfenced_brokers().collect();
        if replication_factor < 1 || replication_factor as usize > brokers.len() {
            return Err(ControllerError::new(
                error_code::INVALID_REPLICATION_FACTOR,
                format!(
                    "replication factor {replication_factor} with {} unfenced brokers",
                    brokers.len()
                ),
            ));
        }
        let assignment = place_replicas(
            &brokers,
            partitions as usize,
            replication_factor as usize,
            topic_id,
        );
        for replicas in &assignment {
            let distinct: BTreeSet<&BrokerId> = replicas.iter().collect();
            assert_eq!(distinct.len(), replication_factor as usize, "{replicas:?}");
        }
        Ok(assignment)
    }
}

/// Who may lead or be in an ISR: the image's unfenced registered brokers, minus `fenced`,
/// plus `unfenced` (if registered).
struct Eligibility<'a> {
    image: &'a MetadataImage,
    fenced: BTreeSet<BrokerId>,
    unfenced: Option<BrokerId>,
}

impl Eligibility<'_> {
    fn eligible(&self, id: BrokerId) -> bool {
        if self.fenced.contains(&id) {
            return false;
        }
        if self.unfenced == Some(id) {
            return self.image.brokers.contains_key(&id);
        }
        self.image.broker_eligible(id)
    }
}

/// The partition's next state under the election rules of the module doc, or None if
/// nothing changes.
fn elect(
    state: &PartitionState,
    eligible: impl Fn(BrokerId) -> bool,
    unclean: bool,
    rebalance: bool,
) -> Option<PartitionState> {
    if !partition_state_changeable(state) {
        return None;
    }
    let mut isr: Vec<BrokerId> = state
        .isr
        .iter()
        .copied()
        .filter(|&id| eligible(id))
        .collect();
    if isr.is_empty() {
        // Keep one member so that a clean election can pick it when it returns.
        let kept = if state.isr.contains(&state.leader) {
            state.leader
        } else {
            let first = state.replicas.iter().find(|id| state.isr.contains(id));
            *first.expect("a valid ISR is within the replicas")
        };
        isr = vec![kept];
    }
    let mut leader = state.leader;
    let leader_valid = leader != NO_LEADER && isr.contains(&leader) && eligible(leader);
    if !leader_valid {
        let clean = state
            .replicas
            .iter()
            .copied()
            .find(|&id| isr.contains(&id) && eligible(id));
        leader = clean.unwrap_or(NO_LEADER);
        if leader == NO_LEADER && unclean {
            if let Some(id) = state.replicas.iter().copied().find(|&id| eligible(id)) {
                crate::probe!(probe::UNCLEAN_ELECTION);
                leader = id;
                isr = vec![id];
            }
        }
    }
    if rebalance {
        let preferred = state.replicas[0];
        if preferred != leader && isr.contains(&preferred) && eligible(preferred) {
            crate::probe!(probe::PREFERRED_ELECTION);
            leader = preferred;
        }
    }

    let leader_changed = leader != state.leader;
    if !leader_changed && isr == state.isr {
        return None;
    }
    let next = PartitionState {
        isr,
        leader,
        leader_epoch: if leader_changed {
            epoch_next(state.leader_epoch)
        } else {
            state.leader_epoch
        },
        partition_epoch: epoch_next(state.partition_epoch),
        ..state.clone()
    };
    assert_partition_change(state, &next);
    Some(next)
}

fn epoch_next(epoch: i32) -> i32 {
    epoch.checked_add(1).expect("epoch overflow")
}

/// The invariants of every Partition record this module returns (module doc).
fn assert_partition_change(current: &PartitionState, next: &PartitionState) {
    assert!(
        partition_state_valid(next),
        "invalid partition state {next:?}"
    );
    assert_ne!(current, next, "a Partition record that changes nothing");
    assert!(
        next.leader_epoch >= current.leader_epoch,
        "leader epoch went back"
    );
    assert!(
        next.partition_epoch > current.partition_epoch,
        "partition epoch not bumped"
    );
    assert!(
        next.leader == current.leader || next.leader_epoch > current.leader_epoch,
        "leader changed without a new leader epoch"
    );
    assert_eq!(
        (&next.topic, next.partition),
        (&current.topic, current.partition)
    );
}

/// Valid, with room for one more epoch. An image built by [`MetadataImage::apply`] holds
/// only valid states, but one built by hand or read from a damaged snapshot might not:
/// the controller leaves such a partition alone rather than crash on it.
fn partition_state_changeable(state: &PartitionState) -> bool {
    partition_state_valid(state)
        && state.leader_epoch < i32::MAX
        && state.partition_epoch < i32::MAX
}

/// The shape rules of a partition state: non-negative index and epochs, a non-empty
/// assignment of distinct non-negative ids, a non-empty strictly ascending ISR within it,
/// and a leader that is `NO_LEADER` or in the ISR.
fn partition_state_valid(state: &PartitionState) -> bool {
    let replicas: BTreeSet<&BrokerId> = state.replicas.iter().collect();
    state.partition >= 0
        && state.leader_epoch >= 0
        && state.partition_epoch >= 0
        && !state.replicas.is_empty()
        && replicas.len() == state.replicas.len()
        && state.replicas.iter().all(|&id| id >= 0)
        && !state.isr.is_empty()
        && state.isr.windows(2).all(|pair| pair[0] < pair[1])
        && state.isr.iter().all(|id| replicas.contains(id))
        && (state.leader == NO_LEADER || state.isr.contains(&state.leader))
}

impl From<crate::kafka_rules::InvalidTopicName> for ControllerError {
    fn from(e: crate::kafka_rules::InvalidTopicName) -> ControllerError {
        ControllerError::new(error_code::INVALID_TOPIC_EXCEPTION, e.message)
    }
}

/// Metric names replace `.` with `_`, so Kafka refuses names that differ only there.
fn fold_topic_name(name: &str) -> String {
    name.replace('.', "_")
}

/// A manual assignment: 1..=TOPIC_PARTITIONS_MAX partitions of the same non-zero length,
/// distinct registered brokers, at least one eligible (registered and unfenced) broker per
/// partition. A standalone broker asks the same with itself as the only broker.
pub fn validate_assignment(
    assignment: &[Vec<BrokerId>],
    registered: impl Fn(BrokerId) -> bool,
    eligible: impl Fn(BrokerId) -> bool,
) -> Result<(), ControllerError> {
    let invalid = |message: String| {
        Err(ControllerError::new(
            error_code::INVALID_REPLICA_ASSIGNMENT,
            message,
        ))
    };
    if assignment.is_empty() || assignment.len() > TOPIC_PARTITIONS_MAX as usize {
        return invalid(format!("{} partitions", assignment.len()));
    }
    let replication_factor = assignment[0].len();
    for (partition, replicas) in assignment.iter().enumerate() {
        let distinct: BTreeSet<&BrokerId> = replicas.iter().collect();
        if replicas.is_empty() || replicas.len() != replication_factor {
            return invalid(format!(
                "partition {partition} has {} replicas",
                replicas.len()
            ));
        }
        if distinct.len() != replicas.len() {
            return invalid(format!(
                "partition {partition} repeats a broker: {replicas:?}"
            ));
        }
        if let Some(id) = replicas.iter().find(|&&id| !registered(id)) {
            return invalid(format!(
                "partition {partition}: broker {id} is not registered"
            ));
        }
        if !replicas.iter().any(|&id| eligible(id)) {
            return invalid(format!("partition {partition}: every broker is fenced"));
        }
    }
    Ok(())
}

/// Kafka's rack-aware replica assignment, deterministic in `topic_id`.
///
/// The brokers (sorted by id within each rack, racks sorted, brokers without a rack
/// forming one group) are interleaved rack by rack. Partition `p` is led by position
/// `(p + start) % n`. Its followers are looked for at shifting distances from the leader
/// (`1 + (shift * racks + k) % (n - 1)` for k = 0, 1, ...), the shift growing by one each
/// time the partitions have gone once round the brokers, so that followers of different
/// rounds differ. A candidate is skipped while its rack is already used and some rack is
/// not, or if it already holds a replica.
fn place_replicas(
    brokers: &[&BrokerRegistration],
    partitions: usize,
    replication_factor: usize,
    topic_id: u128,
) -> Vec<Vec<BrokerId>> {
    let n = brokers.len();
    assert!((1..=n).contains(&replication_factor));
    let mut by_rack: BTreeMap<Option<&str>, Vec<BrokerId>> = BTreeMap::new();
    for broker in brokers {
        by_rack
            .entry(broker.rack.as_deref())
            .or_default()
            .push(broker.id);
    }
    let rack_of: BTreeMap<BrokerId, Option<&str>> = brokers
        .iter()
        .map(|broker| (broker.id, broker.rack.as_deref()))
        .collect();
    let racks = by_rack.len();
    let mut list: Vec<BrokerId> = Vec::with_capacity(n);
    for round in 0..n {
        for ids in by_rack.values_mut() {
            ids.sort_unstable();
            if let Some(&id) = ids.get(round) {
                list.push(id);
            }
        }
    }
    assert_eq!(list.len(), n);

    let start = (topic_id % n as u128) as usize;
    let mut shift = ((topic_id >> 64) % n as u128) as usize;
    let mut assignment = Vec::with_capacity(partitions);
    for partition in 0..partitions {
        if partition > 0 && partition % n == 0 {
            shift += 1;
        }
        let first = (partition + start) % n;
        let mut replicas = vec![list[first]];
        let mut racks_used: BTreeSet<Option<&str>> = BTreeSet::from([rack_of[&list[first]]]);
        let mut k = 0;
        while replicas.len() < replication_factor {
            // Every other position comes up within n - 1 steps and one of them is
            // acceptable, so each follower takes at most n - 1 steps.
            assert!(k < replication_factor * n, "placement found no follower");
            let distance = 1 + (shift * racks + k) % (n - 1);
            let candidate = list[(first + distance) % n];
            let rack = rack_of[&candidate];
            let rack_ok = !racks_used.contains(&rack) || racks_used.len() == racks;
            if rack_ok && !replicas.contains(&candidate) {
                replicas.push(candidate);
                racks_used.insert(rack);
            }
            k += 1;
        }
        assignment.push(replicas);
    }
    assignment
}

/// Topic ids as 32 lowercase hex characters: JSON numbers cannot carry a u128 without
/// serde_json's `arbitrary_precision`.
mod topic_id_hex {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &u128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{id:032x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(D::Error::custom(format!(
                "topic id {text:?} is not 32 hex digits"
            )));
        }
        u128::from_str_radix(&text, 16).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests;
