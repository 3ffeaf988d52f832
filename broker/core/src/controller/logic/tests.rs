//! Tests of the controller's decisions, driven through a small cluster harness that
//! applies every returned record to the working image, as the shell does.

use super::*;
use proptest::prelude::*;

const TIMEOUT_MS: i64 = BROKER_SESSION_TIMEOUT_MS_DEFAULT;

/// The shell in miniature: a working image, the controller, the next raft index.
struct Cluster {
    image: MetadataImage,
    controller: Controller,
    offset_next: u64,
}

impl Cluster {
    fn new(config: ControllerConfig) -> Cluster {
        let mut controller = Controller::new(config);
        controller.activate(&MetadataImage::default(), 0);
        Cluster {
            image: MetadataImage::default(),
            controller,
            offset_next: 1,
        }
    }

    /// `brokers` registered and unfenced at time 0, racks as given.
    fn with_brokers(config: ControllerConfig, racks: &[Option<&str>]) -> Cluster {
        let mut cluster = Cluster::new(config);
        for (index, rack) in racks.iter().enumerate() {
            let id = index as BrokerId + 1;
            cluster.register(id, 100, rack.map(str::to_string), 0);
        }
        for id in 1..=racks.len() as BrokerId {
            assert!(!cluster.heartbeat(id, 100, 0).fenced);
        }
        cluster
    }

    /// Applies one batch at the next raft index; every record must fit.
    fn apply(&mut self, records: &[MetadataRecord]) {
        let offset = self.offset_next;
        self.offset_next += 1;
        for record in records {
            assert!(self.image.apply(offset, record), "refused {record:?}");
        }
    }

    fn register(&mut self, id: BrokerId, incarnation: u64, rack: Option<String>, now_ms: i64) {
        let request = HeartbeatRequest {
            broker_id: id,
            incarnation,
            host: format!("broker-{id}"),
            port: 9092,
            rack,
            metadata_offset: 0,
        };
        let (reply, records) = self.controller.heartbeat(&self.image, &request, now_ms);
        assert!(reply.fenced);
        assert!(matches!(records[0], MetadataRecord::RegisterBroker { .. }));
        self.apply(&records);
    }

    /// A heartbeat from a broker that has applied everything; returns the reply.
    fn heartbeat(&mut self, id: BrokerId, incarnation: u64, now_ms: i64) -> HeartbeatReply {
        let request = HeartbeatRequest {
            broker_id: id,
            incarnation,
            host: format!("broker-{id}"),
            port: 9092,
            rack: None,
            metadata_offset: self.image.offset,
        };
        let (reply, records) = self.controller.heartbeat(&self.image, &request, now_ms);
        self.apply(&records);
        reply
    }

    fn tick(&mut self, now_ms: i64) -> Vec<MetadataRecord> {
        let records = self.controller.tick(&self.image, now_ms);
        self.apply(&records);
        records
    }

    fn create(&mut self, topic: NewTopic, id: u128) -> Result<(), ControllerError> {
        let name = topic.name.clone();
        let mut results = self.controller.create_topics(&self.image, &[topic], &[id]);
        let (result_name, result) = results.pop().unwrap();
        assert_eq!(result_name, name);
        let records = result?;
        self.apply(&records);
        Ok(())
    }

    fn partition(&self, topic: &str, partition: i32) -> PartitionState {
        self.image.partition(topic, partition).unwrap().clone()
    }

    /// Sets one partition's state directly (a scenario's starting point).
    fn set_partition(&mut self, state: PartitionState) {
        self.apply(&[MetadataRecord::Partition(state)]);
    }
}

fn new_topic(name: &str, partitions: i32, replication_factor: i16) -> NewTopic {
    NewTopic {
        name: name.to_string(),
        partitions,
        replication_factor,
        configs: BTreeMap::new(),
        assignment: None,
    }
}

fn manual_topic(name: &str, assignment: Vec<Vec<BrokerId>>) -> NewTopic {
    NewTopic {
        assignment: Some(assignment),
        ..new_topic(name, -1, -1)
    }
}

fn no_rebalance() -> ControllerConfig {
    ControllerConfig {
        auto_leader_rebalance_enable: false,
        ..ControllerConfig::default()
    }
}

/// Three brokers, topic "t" with one partition on [1, 2, 3], all in sync, led by 1.
fn three_brokers_one_partition(config: ControllerConfig) -> Cluster {
    let mut cluster = Cluster::with_brokers(config, &[None, None, None]);
    cluster
        .create(manual_topic("t", vec![vec![1, 2, 3]]), 7)
        .unwrap();
    let state = cluster.partition("t", 0);
    assert_eq!((state.leader, state.isr.as_slice()), (1, &[1, 2, 3][..]));
    cluster
}

fn partition_records(records: &[MetadataRecord]) -> Vec<&PartitionState> {
    records
        .iter()
        .filter_map(|record| match record {
            MetadataRecord::Partition(state) => Some(state),
            _ => None,
        })
        .collect()
}

#[test]
fn registration_fences_until_caught_up_then_unfences() {
    let mut cluster = Cluster::new(ControllerConfig::default());
    cluster.register(1, 100, None, 0);
    let registration_offset = cluster.image.brokers[&1].registration_offset;
    assert!(cluster.image.brokers[&1].fenced);

    let behind = HeartbeatRequest {
        broker_id: 1,
        incarnation: 100,
        host: "broker-1".into(),
        port: 9092,
        rack: None,
        metadata_offset: registration_offset - 1,
    };
    let (reply, records) = cluster.controller.heartbeat(&cluster.image, &behind, 10);
    assert_eq!((reply.fenced, records.len()), (true, 0));

    let caught_up = HeartbeatRequest {
        metadata_offset: registration_offset,
        ..behind
    };
    let (reply, records) = cluster.controller.heartbeat(&cluster.image, &caught_up, 20);
    assert!(!reply.fenced);
    assert_eq!(records, vec![MetadataRecord::UnfenceBroker { id: 1 }]);
    cluster.apply(&records);
    assert!(!cluster.image.brokers[&1].fenced);

    // Unfenced and same incarnation: nothing to propose.
    let (reply, records) = cluster.controller.heartbeat(&cluster.image, &caught_up, 30);
    assert_eq!((reply.fenced, records.len()), (false, 0));
}

#[test]
fn session_expiry_fences_and_moves_leadership_to_next_isr_member() {
    let mut cluster = three_brokers_one_partition(no_rebalance());
    let before = cluster.partition("t", 0);
    assert_eq!(cluster.controller.next_deadline_ms(), Some(TIMEOUT_MS));

    // Brokers 2 and 3 keep heartbeating; broker 1 goes silent.
    cluster.heartbeat(2, 100, 5_000);
    cluster.heartbeat(3, 100, 5_000);
    assert!(
        cluster.tick(TIMEOUT_MS - 1).is_empty(),
        "session still valid"
    );

    let records = cluster.tick(TIMEOUT_MS);
    assert_eq!(records[0], MetadataRecord::FenceBroker { id: 1 });
    let after = cluster.partition("t", 0);
    assert_eq!(after.leader, 2);
    assert_eq!(after.isr, vec![2, 3]);
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert_eq!(after.partition_epoch, before.partition_epoch + 1);
    assert!(cluster.image.brokers[&1].fenced);
    // The expired session is gone; the next deadline is the live brokers'.
    assert_eq!(
        cluster.controller.next_deadline_ms(),
        Some(5_000 + TIMEOUT_MS)
    );
    // Nothing more to do.
    assert!(cluster.tick(TIMEOUT_MS + 1).is_empty());
}

#[test]
fn new_incarnation_fences_the_old_one_and_moves_leadership() {
    let mut cluster = three_brokers_one_partition(no_rebalance());
    let request = HeartbeatRequest {
        broker_id: 1,
        incarnation: 200,
        host: "broker-1".into(),
        port: 9092,
        rack: None,
        metadata_offset: cluster.image.offset,
    };
    let (reply, records) = cluster
        .controller
        .heartbeat(&cluster.image, &request, 1_000);
    assert!(reply.fenced);
    assert!(matches!(
        records[0],
        MetadataRecord::RegisterBroker {
            id: 1,
            incarnation: 200,
            ..
        }
    ));
    let changes = partition_records(&records);
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].leader, changes[0].isr.as_slice()),
        (2, &[2, 3][..])
    );
    assert_eq!(changes[0].leader_epoch, 1);
    cluster.apply(&records);
    assert_eq!(cluster.image.brokers[&1].incarnation, 200);
    assert!(cluster.image.brokers[&1].fenced);

    // The new incarnation catches up and is unfenced; it is not in the ISR until the
    // leader adds it with AlterPartition.
    assert!(!cluster.heartbeat(1, 200, 2_000).fenced);
    assert_eq!(cluster.partition("t", 0).isr, vec![2, 3]);
}

#[test]
fn last_isr_member_fenced_keeps_isr_without_leader_then_is_elected_again() {
    let mut cluster = three_brokers_one_partition(no_rebalance());
    let mut state = cluster.partition("t", 0);
    state.isr = vec![1];
    state.partition_epoch += 1;
    cluster.set_partition(state.clone());

    // Only broker 1 goes silent.
    cluster.heartbeat(2, 100, 5_000);
    cluster.heartbeat(3, 100, 5_000);
    cluster.tick(TIMEOUT_MS);
    let offline = cluster.partition("t", 0);
    assert_eq!(offline.leader, NO_LEADER);
    assert_eq!(offline.isr, vec![1], "the last ISR member is kept");
    assert_eq!(offline.leader_epoch, state.leader_epoch + 1);
    assert_eq!(offline.partition_epoch, state.partition_epoch + 1);
    // Brokers 2 and 3 are alive but out of sync: no clean election, and no change.
    assert!(cluster.tick(TIMEOUT_MS + 1).is_empty());

    // Broker 1 comes back (same process) and is unfenced: its heartbeat elects it.
    assert!(!cluster.heartbeat(1, 100, 12_000).fenced);
    let back = cluster.partition("t", 0);
    assert_eq!((back.leader, back.isr.as_slice()), (1, &[1][..]));
    assert_eq!(back.leader_epoch, offline.leader_epoch + 1);
    assert_eq!(back.partition_epoch, offline.partition_epoch + 1);
}

/// Broker 1 is the only ISR member and is fenced; brokers 2 and 3 are alive.
fn offline_partition(config: ControllerConfig, topic_configs: &[(&str, &str)]) -> Cluster {
    let mut cluster = Cluster::with_brokers(config, &[None, None, None]);
    let topic = NewTopic {
        configs: topic_configs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
        ..manual_topic("t", vec![vec![1, 2, 3]])
    };
    cluster.create(topic, 7).unwrap();
    let mut state = cluster.partition("t", 0);
    state.isr = vec![1];
    state.partition_epoch += 1;
    cluster.set_partition(state);
    cluster.heartbeat(2, 100, 5_000);
    cluster.heartbeat(3, 100, 5_000);
    cluster
}

#[test]
fn unclean_election_only_when_enabled_and_topic_setting_wins() {
    // Default off, topic silent: stays offline.
    let mut cluster = offline_partition(no_rebalance(), &[]);
    cluster.tick(TIMEOUT_MS);
    assert_eq!(cluster.partition("t", 0).leader, NO_LEADER);

    // Default off, topic on: the first eligible replica leads alone.
    let mut cluster = offline_partition(
        no_rebalance(),
        &[(UNCLEAN_LEADER_ELECTION_ENABLE_CONFIG, "true")],
    );
    cluster.tick(TIMEOUT_MS);
    let state = cluster.partition("t", 0);
    assert_eq!((state.leader, state.isr.as_slice()), (2, &[2][..]));
    assert_eq!(state.leader_epoch, 1);

    // Default on, topic off: stays offline.
    let unclean_default = ControllerConfig {
        unclean_leader_election_enable: true,
        ..no_rebalance()
    };
    let mut cluster = offline_partition(
        unclean_default.clone(),
        &[(UNCLEAN_LEADER_ELECTION_ENABLE_CONFIG, "false")],
    );
    cluster.tick(TIMEOUT_MS);
    assert_eq!(cluster.partition("t", 0).leader, NO_LEADER);

    // Default on, topic silent: elects.
    let mut cluster = offline_partition(unclean_default, &[]);
    cluster.tick(TIMEOUT_MS);
    assert_eq!(cluster.partition("t", 0).leader, 2);
}

#[test]
fn unclean_election_is_not_used_while_an_isr_member_is_eligible() {
    let config = ControllerConfig {
        unclean_leader_election_enable: true,
        ..no_rebalance()
    };
    let mut cluster = three_brokers_one_partition(config);
    let mut state = cluster.partition("t", 0);
    state.isr = vec![1, 3];
    state.partition_epoch += 1;
    cluster.set_partition(state);
    cluster.heartbeat(2, 100, 5_000);
    cluster.heartbeat(3, 100, 5_000);
    cluster.tick(TIMEOUT_MS);
    let state = cluster.partition("t", 0);
    assert_eq!((state.leader, state.isr.as_slice()), (3, &[3][..]));
}

fn alter_request(cluster: &Cluster, new_isr: Vec<BrokerId>) -> AlterPartitionRequest {
    let state = cluster.partition("t", 0);
    AlterPartitionRequest {
        broker_id: state.leader,
        incarnation: 100,
        topic: "t".into(),
        partition: 0,
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        new_isr,
    }
}

#[test]
fn alter_partition_errors_in_order() {
    let mut cluster = three_brokers_one_partition(no_rebalance());
    // Leader epoch 1, partition epoch 2, so that older epochs exist.
    let mut state = cluster.partition("t", 0);
    state.leader_epoch = 1;
    state.partition_epoch = 2;
    cluster.set_partition(state);
    // Broker 4 registered but fenced.
    cluster.register(4, 100, None, 0);
    let mut state = cluster.partition("t", 0);
    state.replicas.push(4);
    state.partition_epoch += 1;
    cluster.set_partition(state);

    let valid = alter_request(&cluster, vec![1, 2]);
    let check = |cluster: &mut Cluster, request: &AlterPartitionRequest, code: i16| {
        let error = cluster
            .controller
            .alter_partition(&cluster.image, request)
            .unwrap_err();
        assert_eq!(error.code, code, "{request:?}: {error}");
    };
    // Each request breaks one rule and every later one, so the order is checked.
    let mut request = AlterPartitionRequest {
        partition: 1,
        incarnation: 999,
        leader_epoch: 0,
        ..valid.clone()
    };
    check(
        &mut cluster,
        &request,
        error_code::UNKNOWN_TOPIC_OR_PARTITION,
    );
    request.partition = 0;
    check(&mut cluster, &request, error_code::STALE_BROKER_EPOCH);
    request.incarnation = 100;
    check(&mut cluster, &request, error_code::FENCED_LEADER_EPOCH);
    let not_leader = AlterPartitionRequest {
        broker_id: 2,
        partition_epoch: 0,
        new_isr: vec![2, 2],
        ..valid.clone()
    };
    check(
        &mut cluster,
        &not_leader,
        error_code::NOT_LEADER_OR_FOLLOWER,
    );
    let newer_epoch = AlterPartitionRequest {
        leader_epoch: valid.leader_epoch + 1,
        ..not_leader.clone()
    };
    check(
        &mut cluster,
        &newer_epoch,
        error_code::NOT_LEADER_OR_FOLLOWER,
    );
    let stale = AlterPartitionRequest {
        broker_id: 1,
        ..not_leader
    };
    check(&mut cluster, &stale, error_code::INVALID_UPDATE_VERSION);
    let malformed = AlterPartitionRequest {
        partition_epoch: valid.partition_epoch,
        ..stale
    };
    check(&mut cluster, &malformed, error_code::INVALID_REQUEST);
    for bad_isr in [vec![2, 3], vec![1, 5], vec![1, 1, 2]] {
        let request = AlterPartitionRequest {
            new_isr: bad_isr,
            ..valid.clone()
        };
        check(&mut cluster, &request, error_code::INVALID_REQUEST);
    }
    let ineligible = AlterPartitionRequest {
        new_isr: vec![1, 2, 3, 4],
        ..valid.clone()
    };
    check(&mut cluster, &ineligible, error_code::INELIGIBLE_REPLICA);
}

#[test]
fn alter_partition_success_bumps_partition_epoch_only() {
    let mut cluster = three_brokers_one_partition(no_rebalance());
    let before = cluster.partition("t", 0);

    // Unchanged ISR (in any order): current state, no records.
    let same = alter_request(&cluster, vec![3, 1, 2]);
    let (state, records) = cluster
        .controller
        .alter_partition(&cluster.image, &same)
        .unwrap();
    assert_eq!((state, records.len()), (before.clone(), 0));

    let shrink = alter_request(&cluster, vec![3, 1]);
    let (state, records) = cluster
        .controller
        .alter_partition(&cluster.image, &shrink)
        .unwrap();
    assert_eq!(state.isr, vec![1, 3]);
    assert_eq!(state.partition_epoch, before.partition_epoch + 1);
    assert_eq!(
        (state.leader, state.leader_epoch),
        (before.leader, before.leader_epoch)
    );
    assert_eq!(records, vec![MetadataRecord::Partition(state.clone())]);
    cluster.apply(&records);

    // The old partition epoch is now stale; expanding back with the new one works.
    let stale = AlterPartitionRequest {
        new_isr: vec![1, 2, 3],
        ..shrink
    };
    let error = cluster
        .controller
        .alter_partition(&cluster.image, &stale)
        .unwrap_err();
    assert_eq!(error.code, error_code::INVALID_UPDATE_VERSION);
    let expand = alter_request(&cluster, vec![1, 2, 3]);
    let (state, _) = cluster
        .controller
        .alter_partition(&cluster.image, &expand)
        .unwrap();
    assert_eq!(state.partition_epoch, before.partition_epoch + 2);
}

#[test]
fn placement_spreads_leaders_and_replicas_evenly() {
    for topic_id in [1u128, 2, 3, u128::MAX - 7] {
        let mut cluster = Cluster::with_brokers(ControllerConfig::default(), &[None, None, None]);
        cluster.create(new_topic("t", 6, 3), topic_id).unwrap();
        let mut leaders: BTreeMap<BrokerId, usize> = BTreeMap::new();
        for partition in &cluster.image.topics["t"].partitions {
            let distinct: BTreeSet<&BrokerId> = partition.replicas.iter().collect();
            assert_eq!(distinct.len(), 3);
            assert_eq!(partition.leader, partition.replicas[0]);
            assert_eq!(partition.isr, vec![1, 2, 3]);
            assert_eq!((partition.leader_epoch, partition.partition_epoch), (0, 0));
            *leaders.entry(partition.leader).or_default() += 1;
        }
        assert_eq!(
            leaders,
            BTreeMap::from([(1, 2), (2, 2), (3, 2)]),
            "id {topic_id}"
        );
    }

    // RF 2 over 4 brokers: every broker leads 2 of 8 and follows in 2.
    let mut cluster = Cluster::with_brokers(ControllerConfig::default(), &[None; 4]);
    cluster.create(new_topic("u", 8, 2), 5).unwrap();
    let mut followers: BTreeMap<BrokerId, usize> = BTreeMap::new();
    for partition in &cluster.image.topics["u"].partitions {
        *followers.entry(partition.replicas[1]).or_default() += 1;
    }
    assert_eq!(followers, BTreeMap::from([(1, 2), (2, 2), (3, 2), (4, 2)]));
}

#[test]
fn rack_aware_placement_uses_every_rack() {
    let racks = [
        Some("a"),
        Some("a"),
        Some("b"),
        Some("b"),
        Some("c"),
        Some("c"),
    ];
    let topic_ids = (0..6u128).flat_map(|high| (1..7u128).map(move |low| (high << 64) | low));
    for topic_id in topic_ids {
        let mut cluster = Cluster::with_brokers(ControllerConfig::default(), &racks);
        cluster.create(new_topic("t", 12, 3), topic_id).unwrap();
        let mut leaders: BTreeMap<BrokerId, usize> = BTreeMap::new();
        for partition in &cluster.image.topics["t"].partitions {
            let used: BTreeSet<&Option<String>> = partition
                .replicas
                .iter()
                .map(|id| &cluster.image.brokers[id].rack)
                .collect();
            assert_eq!(used.len(), 3, "{partition:?}");
            *leaders.entry(partition.leader).or_default() += 1;
        }
        assert!(leaders.values().all(|&count| count == 2), "{leaders:?}");
    }
}

#[test]
fn preferred_leader_returns_once_back_in_the_isr() {
    // An imbalance check at every tick.
    let mut cluster = three_brokers_one_partition(ControllerConfig {
        leader_imbalance_check_interval_ms: 1,
        ..ControllerConfig::default()
    });
    cluster.heartbeat(2, 100, 5_000);
    cluster.heartbeat(3, 100, 5_000);
    cluster.tick(TIMEOUT_MS);
    assert_eq!(cluster.partition("t", 0).leader, 2);

    // Broker 1 returns; unfenced but not in the ISR: no preferred election yet.
    assert!(!cluster.heartbeat(1, 100, 10_000).fenced);
    assert!(cluster.tick(10_001).is_empty());
    assert_eq!(cluster.partition("t", 0).leader, 2);

    // The leader adds it back; the next imbalance check moves leadership to replicas[0].
    let expand = alter_request(&cluster, vec![1, 2, 3]);
    let (_, records) = cluster
        .controller
        .alter_partition(&cluster.image, &expand)
        .unwrap();
    cluster.apply(&records);
    let before = cluster.partition("t", 0);
    let records = cluster.tick(10_002);
    assert_eq!(partition_records(&records).len(), 1);
    let after = cluster.partition("t", 0);
    assert_eq!((after.leader, after.isr.as_slice()), (1, &[1, 2, 3][..]));
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert!(cluster.tick(10_003).is_empty());
}

#[test]
fn preferred_leaders_return_only_at_the_imbalance_check() {
    let mut cluster = three_brokers_one_partition(ControllerConfig::default());
    cluster.controller.activate(&cluster.image, 0);
    let interval = LEADER_IMBALANCE_CHECK_INTERVAL_MS_DEFAULT;
    let mut state = cluster.partition("t", 0);
    state.leader = 2;
    state.leader_epoch += 1;
    state.partition_epoch += 1;
    cluster.set_partition(state);
    for broker in 1..=3 {
        cluster.heartbeat(broker, 100, interval - 10);
    }
    // Broker 1 is back in the ISR, but the check is not due yet.
    assert!(partition_records(&cluster.tick(interval - 1)).is_empty());
    assert_eq!(cluster.partition("t", 0).leader, 2);
    assert_eq!(cluster.controller.next_deadline_ms(), Some(interval));
    let records = cluster.tick(interval);
    assert_eq!(partition_records(&records).len(), 1);
    assert_eq!(cluster.partition("t", 0).leader, 1);
}

#[test]
fn preferred_leader_election_is_off_when_disabled() {
    let check = |config: ControllerConfig| {
        let mut cluster = three_brokers_one_partition(config);
        cluster.controller.activate(&cluster.image, 0);
        let mut state = cluster.partition("t", 0);
        state.leader = 2;
        state.leader_epoch += 1;
        state.partition_epoch += 1;
        cluster.set_partition(state);
        // Well past the default imbalance check, every broker alive and in the ISR.
        let later = 2 * LEADER_IMBALANCE_CHECK_INTERVAL_MS_DEFAULT;
        for broker in 1..=3 {
            cluster.heartbeat(broker, 100, later - 10);
        }
        cluster.tick(later);
        cluster.partition("t", 0).leader
    };
    assert_eq!(check(no_rebalance()), 2, "disabled: leadership stays");
    // The same steps with the check on move it back: the test can fail.
    assert_eq!(
        check(ControllerConfig::default()),
        1,
        "enabled: preferred leader"
    );
}

#[test]
fn activate_gives_every_broker_a_fresh_session() {
    let mut cluster = three_brokers_one_partition(no_rebalance());
    let mut controller = Controller::new(no_rebalance());
    controller.activate(&cluster.image, 50_000);
    assert_eq!(controller.next_deadline_ms(), Some(50_000 + TIMEOUT_MS));
    assert!(controller
        .tick(&cluster.image, 50_000 + TIMEOUT_MS - 1)
        .is_empty());
    let records = controller.tick(&cluster.image, 50_000 + TIMEOUT_MS);
    let fenced = records
        .iter()
        .filter(|record| matches!(record, MetadataRecord::FenceBroker { .. }))
        .count();
    assert_eq!(fenced, 3);
    cluster.apply(&records);
    assert_eq!(controller.next_deadline_ms(), None);
    let state = cluster.partition("t", 0);
    assert_eq!((state.leader, state.isr.as_slice()), (NO_LEADER, &[1][..]));
}

#[test]
fn create_topics_validation() {
    let mut cluster = Cluster::with_brokers(ControllerConfig::default(), &[None, None]);
    cluster.create(new_topic("exists", 1, 1), 1).unwrap();
    cluster.create(new_topic("ex.ists", 1, 1), 2).unwrap();
    let long = "x".repeat(TOPIC_NAME_LENGTH_MAX + 1);
    let cases: Vec<(NewTopic, i16)> = vec![
        (new_topic("", 1, 1), error_code::INVALID_TOPIC_EXCEPTION),
        (new_topic("..", 1, 1), error_code::INVALID_TOPIC_EXCEPTION),
        (new_topic("a/b", 1, 1), error_code::INVALID_TOPIC_EXCEPTION),
        (new_topic(&long, 1, 1), error_code::INVALID_TOPIC_EXCEPTION),
        (new_topic("exists", 1, 1), error_code::TOPIC_ALREADY_EXISTS),
        (
            new_topic("ex_ists", 1, 1),
            error_code::INVALID_TOPIC_EXCEPTION,
        ),
        (new_topic("p0", 0, 1), error_code::INVALID_PARTITIONS),
        (new_topic("p1", 10_001, 1), error_code::INVALID_PARTITIONS),
        (
            new_topic("r0", 1, 0),
            error_code::INVALID_REPLICATION_FACTOR,
        ),
        (
            new_topic("r3", 1, 3),
            error_code::INVALID_REPLICATION_FACTOR,
        ),
        (
            manual_topic("m0", vec![]),
            error_code::INVALID_REPLICA_ASSIGNMENT,
        ),
        (
            manual_topic("m1", vec![vec![1, 1]]),
            error_code::INVALID_REPLICA_ASSIGNMENT,
        ),
        (
            manual_topic("m2", vec![vec![1], vec![1, 2]]),
            error_code::INVALID_REPLICA_ASSIGNMENT,
        ),
        (
            manual_topic("m3", vec![vec![1, 9]]),
            error_code::INVALID_REPLICA_ASSIGNMENT,
        ),
        (
            manual_topic("m4", vec![vec![]]),
            error_code::INVALID_REPLICA_ASSIGNMENT,
        ),
        (
            NewTopic {
                partitions: 1,
                ..manual_topic("m5", vec![vec![1]])
            },
            error_code::INVALID_REQUEST,
        ),
    ];
    for (topic, code) in cases {
        let name = topic.name.clone();
        let result = cluster
            .controller
            .create_topics(&cluster.image, &[topic], &[99]);
        assert_eq!(result[0].1.as_ref().unwrap_err().code, code, "{name}");
    }

    // Defaults, a name given twice, an id in use, and order of results.
    let topics = [
        new_topic("d", -1, -1),
        new_topic("twice", 1, 1),
        new_topic("twice", 1, 1),
        new_topic("taken-id", 1, 1),
        new_topic("e.f", 1, 1),
        new_topic("e_f", 1, 1),
    ];
    let results =
        cluster
            .controller
            .create_topics(&cluster.image, &topics, &[10, 11, 12, 1, 13, 14]);
    let names: Vec<&str> = results.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["d", "twice", "twice", "taken-id", "e.f", "e_f"]);
    let codes: Vec<Option<i16>> = results
        .iter()
        .map(|(_, result)| result.as_ref().err().map(|error| error.code))
        .collect();
    assert_eq!(
        codes,
        [
            None,
            Some(error_code::INVALID_REQUEST),
            Some(error_code::INVALID_REQUEST),
            Some(error_code::INVALID_REQUEST),
            None,
            Some(error_code::INVALID_TOPIC_EXCEPTION),
        ]
    );
    let records = results[0].1.as_ref().unwrap();
    assert_eq!(
        records.len(),
        2,
        "num.partitions 1: a Topic and one Partition"
    );
}

#[test]
fn replication_factor_counts_only_unfenced_brokers() {
    let mut cluster = Cluster::with_brokers(ControllerConfig::default(), &[None, None]);
    cluster.register(3, 100, None, 0); // registered, still fenced
    let error = cluster.create(new_topic("t", 1, 3), 1).unwrap_err();
    assert_eq!(error.code, error_code::INVALID_REPLICATION_FACTOR);
    cluster.create(new_topic("t", 4, 2), 1).unwrap();
    for partition in &cluster.image.topics["t"].partitions {
        assert!(!partition.replicas.contains(&3));
    }
}

#[test]
fn manual_assignment_leaves_fenced_brokers_out_of_the_isr() {
    let mut cluster = Cluster::with_brokers(ControllerConfig::default(), &[None, None]);
    cluster.register(3, 100, None, 0);
    cluster
        .create(manual_topic("t", vec![vec![3, 1], vec![2, 3]]), 1)
        .unwrap();
    let first = cluster.partition("t", 0);
    assert_eq!((first.leader, first.isr.as_slice()), (1, &[1][..]));
    let second = cluster.partition("t", 1);
    assert_eq!((second.leader, second.isr.as_slice()), (2, &[2][..]));
    let error = cluster
        .create(manual_topic("u", vec![vec![3]]), 2)
        .unwrap_err();
    assert_eq!(error.code, error_code::INVALID_REPLICA_ASSIGNMENT);
}

#[test]
fn delete_topic() {
    let mut cluster = Cluster::with_brokers(ControllerConfig::default(), &[None]);
    cluster.create(new_topic("t", 2, 1), 1).unwrap();
    let error = cluster
        .controller
        .delete_topic(&cluster.image, "nope")
        .unwrap_err();
    assert_eq!(error.code, error_code::UNKNOWN_TOPIC_OR_PARTITION);
    let records = cluster
        .controller
        .delete_topic(&cluster.image, "t")
        .unwrap();
    cluster.apply(&records);
    assert!(cluster.image.topics.is_empty());
    assert!(cluster.image.partition("t", 0).is_none());
}

fn state(
    topic: &str,
    partition: i32,
    replicas: &[i32],
    isr: &[i32],
    leader: i32,
) -> PartitionState {
    PartitionState {
        topic: topic.into(),
        partition,
        replicas: replicas.to_vec(),
        isr: isr.to_vec(),
        leader,
        leader_epoch: 0,
        partition_epoch: 0,
    }
}

#[test]
fn apply_refuses_records_that_do_not_fit() {
    let mut image = MetadataImage::default();
    let topic = MetadataRecord::Topic {
        name: "t".into(),
        id: 1,
        configs: BTreeMap::new(),
    };
    assert!(image.apply(1, &topic));
    assert!(!image.apply(2, &topic), "exists");
    let refused = [
        MetadataRecord::FenceBroker { id: 1 },
        MetadataRecord::UnfenceBroker { id: 1 },
        MetadataRecord::RemoveTopic { name: "u".into() },
        MetadataRecord::Topic {
            name: "u".into(),
            id: 1,
            configs: BTreeMap::new(),
        },
        MetadataRecord::Topic {
            name: "bad name".into(),
            id: 2,
            configs: BTreeMap::new(),
        },
        MetadataRecord::Partition(state("u", 0, &[1], &[1], 1)),
        MetadataRecord::Partition(state("t", 1, &[1], &[1], 1)),
        MetadataRecord::Partition(state("t", -1, &[1], &[1], 1)),
        MetadataRecord::Partition(state("t", 0, &[], &[], NO_LEADER)),
        MetadataRecord::Partition(state("t", 0, &[1], &[], NO_LEADER)),
        MetadataRecord::Partition(state("t", 0, &[1, 1], &[1], 1)),
        MetadataRecord::Partition(state("t", 0, &[1, 2], &[2, 1], 1)),
        MetadataRecord::Partition(state("t", 0, &[1, 2], &[3], NO_LEADER)),
        MetadataRecord::Partition(state("t", 0, &[1, 2], &[2], 1)),
        MetadataRecord::RegisterBroker {
            id: -5,
            incarnation: 1,
            host: "h".into(),
            port: 1,
            rack: None,
        },
    ];
    for record in &refused {
        assert!(!image.apply(3, record), "{record:?}");
    }
    assert!(image.apply(
        3,
        &MetadataRecord::Partition(state("t", 0, &[1, 2], &[1, 2], 1))
    ));
    let mut newer = state("t", 0, &[1, 2], &[1, 2], 2);
    newer.leader_epoch = 1;
    newer.partition_epoch = 1;
    assert!(image.apply(4, &MetadataRecord::Partition(newer.clone())));
    let older = state("t", 0, &[1, 2], &[1], 1);
    assert!(
        !image.apply(5, &MetadataRecord::Partition(older)),
        "epochs went back"
    );
    assert!(!image.apply(4, &topic), "offset before the image's");
    assert_eq!(image.offset, 5);
    assert_eq!(image.partition("t", 0), Some(&newer));
    assert_eq!(image.topics.len(), 1);
    assert!(image.brokers.is_empty());
}

#[test]
fn serde_round_trip_through_json() {
    let records = vec![
        MetadataRecord::RegisterBroker {
            id: 1,
            incarnation: u64::MAX,
            host: "h".into(),
            port: 9092,
            rack: Some("a".into()),
        },
        MetadataRecord::FenceBroker { id: 1 },
        MetadataRecord::UnfenceBroker { id: 1 },
        MetadataRecord::Topic {
            name: "t".into(),
            id: u128::MAX - 1,
            configs: BTreeMap::from([("k".to_string(), "v".to_string())]),
        },
        MetadataRecord::Partition(state("t", 0, &[1], &[1], 1)),
        MetadataRecord::RemoveTopic { name: "t".into() },
    ];
    let json = serde_json::to_string(&records).unwrap();
    assert!(
        json.contains("\"fffffffffffffffffffffffffffffffe\""),
        "{json}"
    );
    let back: Vec<MetadataRecord> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, records);

    let mut image = MetadataImage::default();
    for record in &records[..5] {
        assert!(image.apply(1, record));
    }
    let json = serde_json::to_string(&image).unwrap();
    assert_eq!(serde_json::from_str::<MetadataImage>(&json).unwrap(), image);

    let short = r#"{"Topic":{"name":"t","id":"ff","configs":{}}}"#;
    assert!(serde_json::from_str::<MetadataRecord>(short).is_err());
    let signed = format!(
        r#"{{"Topic":{{"name":"t","id":"+{}","configs":{{}}}}}}"#,
        "f".repeat(31)
    );
    assert!(serde_json::from_str::<MetadataRecord>(&signed).is_err());
}

/// Every partition of the image keeps the shape rules.
fn assert_image_valid(image: &MetadataImage) {
    assert!(image.is_valid());
    for topic in image.topics.values() {
        for (index, partition) in topic.partitions.iter().enumerate() {
            assert!(partition_state_valid(partition), "{partition:?}");
            assert_eq!(partition.partition as usize, index);
            assert_eq!(partition.topic, topic.name);
        }
    }
}

fn record_strategy() -> impl Strategy<Value = MetadataRecord> {
    let id = -1..4i32;
    let name = prop_oneof![
        Just("t".to_string()),
        Just("u".to_string()),
        Just("".to_string())
    ];
    let ids = proptest::collection::vec(-1..4i32, 0..4);
    prop_oneof![
        (id.clone(), 0..3u64).prop_map(|(id, incarnation)| MetadataRecord::RegisterBroker {
            id,
            incarnation,
            host: "h".into(),
            port: 1,
            rack: None,
        }),
        id.clone().prop_map(|id| MetadataRecord::FenceBroker { id }),
        id.clone()
            .prop_map(|id| MetadataRecord::UnfenceBroker { id }),
        (name.clone(), 0..3u128).prop_map(|(name, id)| MetadataRecord::Topic {
            name,
            id,
            configs: BTreeMap::new(),
        }),
        (
            name.clone(),
            -1..3i32,
            ids.clone(),
            ids,
            id,
            -1..3i32,
            -1..3i32
        )
            .prop_map(
                |(topic, partition, replicas, isr, leader, leader_epoch, partition_epoch)| {
                    MetadataRecord::Partition(PartitionState {
                        topic,
                        partition,
                        replicas,
                        isr,
                        leader,
                        leader_epoch,
                        partition_epoch,
                    })
                }
            ),
        name.prop_map(|name| MetadataRecord::RemoveTopic { name }),
    ]
}

/// One step of a cluster's life for the simulation property.
#[derive(Debug, Clone)]
enum Step {
    /// Broker heartbeats; `restart` picks a new incarnation; `caught_up` reports the
    /// image's offset, else 0.
    Heartbeat {
        id: BrokerId,
        restart: bool,
        caught_up: bool,
    },
    /// Time passes, then a tick.
    Tick { elapsed_ms: i64 },
    Create {
        partitions: i32,
        replication_factor: i16,
    },
    /// The leader of a partition asks for an ISR built from the replicas in `members`.
    Alter {
        partition: usize,
        members: Vec<bool>,
    },
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1..5i32, any::<bool>(), any::<bool>()).prop_map(|(id, restart, caught_up)| {
            Step::Heartbeat {
                id,
                restart,
                caught_up,
            }
        }),
        (0..12_000i64).prop_map(|elapsed_ms| Step::Tick { elapsed_ms }),
        (1..5i32, 1..4i16).prop_map(|(partitions, replication_factor)| Step::Create {
            partitions,
            replication_factor,
        }),
        (0..20usize, proptest::collection::vec(any::<bool>(), 4))
            .prop_map(|(partition, members)| Step::Alter { partition, members }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn apply_never_panics_and_keeps_the_image_valid(
        records in proptest::collection::vec((0..3u64, record_strategy()), 0..60)
    ) {
        let mut image = MetadataImage::default();
        let mut offset = 0;
        for (advance, record) in &records {
            offset += advance;
            image.apply(offset, record);
            assert_image_valid(&image);
        }
        let json = serde_json::to_string(&image).unwrap();
        prop_assert_eq!(serde_json::from_str::<MetadataImage>(&json).unwrap(), image);
    }

    /// Every record the controller returns applies, the image stays valid, and no
    /// unfenced broker's session runs past the timeout without a fence.
    #[test]
    fn controller_records_always_apply(
        steps in proptest::collection::vec(step_strategy(), 1..80),
        unclean in any::<bool>(),
        rebalance in any::<bool>(),
    ) {
        let config = ControllerConfig {
            unclean_leader_election_enable: unclean,
            auto_leader_rebalance_enable: rebalance,
            ..ControllerConfig::default()
        };
        let mut cluster = Cluster::new(config);
        let mut incarnations: BTreeMap<BrokerId, u64> = BTreeMap::new();
        let mut now_ms = 0;
        let mut topic_next = 1u128;
        for step in steps {
            match step {
                Step::Heartbeat { id, restart, caught_up } => {
                    let incarnation = incarnations.entry(id).or_insert(1);
                    if restart {
                        *incarnation += 1;
                    }
                    let request = HeartbeatRequest {
                        broker_id: id,
                        incarnation: *incarnation,
                        host: "h".into(),
                        port: 1,
                        rack: Some(format!("rack-{}", id % 2)),
                        metadata_offset: if caught_up { cluster.image.offset } else { 0 },
                    };
                    let (reply, records) =
                        cluster.controller.heartbeat(&cluster.image, &request, now_ms);
                    cluster.apply(&records);
                    prop_assert_eq!(reply.fenced, cluster.image.brokers[&id].fenced);
                }
                Step::Tick { elapsed_ms } => {
                    now_ms += elapsed_ms;
                    cluster.tick(now_ms);
                    // Nothing left to elect or shrink right after a tick.
                    prop_assert!(cluster.controller.tick(&cluster.image, now_ms).is_empty());
                }
                Step::Create { partitions, replication_factor } => {
                    let name = format!("t{topic_next}");
                    let _ = cluster.create(new_topic(&name, partitions, replication_factor), topic_next);
                    topic_next += 1;
                }
                Step::Alter { partition, members } => {
                    let states: Vec<PartitionState> = cluster
                        .image
                        .topics
                        .values()
                        .flat_map(|topic| topic.partitions.iter().cloned())
                        .collect();
                    if let Some(state) = states.get(partition) {
                        if state.leader != NO_LEADER {
                            let new_isr = state
                                .replicas
                                .iter()
                                .zip(&members)
                                .filter(|(&id, &member)| member || id == state.leader)
                                .map(|(&id, _)| id)
                                .collect();
                            let request = AlterPartitionRequest {
                                broker_id: state.leader,
                                incarnation: cluster.image.brokers[&state.leader].incarnation,
                                topic: state.topic.clone(),
                                partition: state.partition,
                                leader_epoch: state.leader_epoch,
                                partition_epoch: state.partition_epoch,
                                new_isr,
                            };
                            if let Ok((_, records)) =
                                cluster.controller.alter_partition(&cluster.image, &request)
                            {
                                cluster.apply(&records);
                            }
                        }
                    }
                }
            }
            assert_image_valid(&cluster.image);
            // KIP-841: a leader is always eligible once a tick has run; an ISR holds a
            // fenced broker only as its last member.
            for topic in cluster.image.topics.values() {
                for state in &topic.partitions {
                    if state.isr.len() > 1 {
                        for id in &state.isr {
                            prop_assert!(cluster.image.broker_eligible(*id), "{:?}", state);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_hand_built_invalid_image_is_left_alone() {
    let mut cluster = three_brokers_one_partition(ControllerConfig::default());
    let topic = cluster.image.topics.get_mut("t").unwrap();
    topic.partitions[0].isr = vec![3, 1]; // not ascending
    assert!(!cluster.image.is_valid());
    let records = cluster.controller.tick(&cluster.image, TIMEOUT_MS);
    assert_eq!(
        records.len(),
        3,
        "three brokers fenced, the partition skipped"
    );
    assert!(partition_records(&records).is_empty());
    let request = alter_request(&cluster, vec![1, 2]);
    let error = cluster
        .controller
        .alter_partition(&cluster.image, &request)
        .unwrap_err();
    assert_eq!(error.code, error_code::INVALID_REQUEST);

    let mut cluster = three_brokers_one_partition(ControllerConfig::default());
    let topic = cluster.image.topics.get_mut("t").unwrap();
    topic.partitions[0].leader_epoch = i32::MAX;
    assert!(cluster.image.is_valid());
    let records = cluster.controller.tick(&cluster.image, TIMEOUT_MS);
    assert!(
        partition_records(&records).is_empty(),
        "no epoch left: no change"
    );
}
