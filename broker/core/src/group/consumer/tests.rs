//! Tests of the KIP-848 coordinator: scripted transcripts through a small shell that
//! commits every write at once, and a property test with honest clients that may lose
//! answers, where no partition is ever held by two live members.

use super::*;
use error_code::*;
use proptest::prelude::*;

const G: &str = "cg";
const T: TopicId = 0xabc;
const REBALANCE_MS: i32 = 60_000;

struct Shell {
    c: GroupCoordinator,
    token_next: RequestToken,
    log: Vec<GroupRecord>,
    now_ms: i64,
    topics: TopicsMetadata,
}

impl Shell {
    fn new(partitions: i32) -> Shell {
        Shell {
            c: GroupCoordinator::new(GroupConfig::default()),
            token_next: 1,
            log: Vec::new(),
            now_ms: 1_000,
            topics: [("t".to_string(), (T, partitions))].into(),
        }
    }

    fn request(
        &self,
        member: &str,
        epoch: i32,
        owned: Option<Vec<i32>>,
    ) -> ConsumerHeartbeatRequest {
        ConsumerHeartbeatRequest {
            version: 1,
            group_id: G.to_string(),
            member_id: member.to_string(),
            member_epoch: epoch,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: if epoch == 0 { REBALANCE_MS } else { -1 },
            subscribed_topic_names: (epoch == 0).then(|| vec!["t".to_string()]),
            subscribed_topic_regex: None,
            server_assignor: None,
            owned: owned.map(|ps| assignment(&ps)),
            client_id: "c".to_string(),
            client_host: "/h".to_string(),
            member_id_suffix: "generated".to_string(),
            topics: self.topics.clone(),
        }
    }

    /// Sends a heartbeat; writes are committed at once and the parked answer collected.
    fn beat(&mut self, request: &ConsumerHeartbeatRequest) -> ConsumerHeartbeatResponse {
        let token = self.token_next;
        self.token_next += 1;
        let now = self.now_ms;
        let answer = self.c.consumer_heartbeat(token, request, now);
        self.commit_writes();
        answer.unwrap_or_else(|| {
            let mut released = self.c.take_responses();
            let index = released
                .iter()
                .position(|(t, _)| *t == token)
                .expect("released");
            match released.remove(index).1 {
                Response::ConsumerGroupHeartbeat(r) => r,
                other => panic!("{other:?}"),
            }
        })
    }

    fn commit_writes(&mut self) {
        for write in self.c.take_writes() {
            self.log.extend(write.records.clone());
            self.c.records_committed(write.token, self.now_ms);
        }
    }

    fn tick(&mut self, ms: i64) {
        self.now_ms += ms;
        self.c.tick(self.now_ms);
        self.commit_writes();
    }

    fn group(&self) -> &ConsumerGroup {
        self.c.consumer_group_describe(G).expect("a consumer group")
    }

    fn commit(&mut self, member: &str, epoch: i32) -> i16 {
        self.commit_in(G, member, epoch, 9)
    }

    /// OffsetCommit of t-0 at version `api_version`; its error code.
    fn commit_in(&mut self, group: &str, member: &str, epoch: i32, api_version: i16) -> i16 {
        let request = OffsetCommitRequest {
            group_id: group.to_string(),
            generation_id: epoch,
            member_id: member.to_string(),
            group_instance_id: None,
            api_version,
            partitions: vec![CommitPartition {
                topic: "t".to_string(),
                partition: 0,
                offset: 5,
                leader_epoch: -1,
                metadata: String::new(),
            }],
        };
        let token = self.token_next;
        self.token_next += 1;
        let now = self.now_ms;
        if let Some(r) = self.c.offset_commit(token, &request, now) {
            return r.partitions[0].2;
        }
        self.commit_writes();
        match self.c.take_responses().pop() {
            Some((_, Response::OffsetCommit(r))) => r.partitions[0].2,
            other => panic!("{other:?}"),
        }
    }
}

fn assignment(partitions: &[i32]) -> Assignment {
    if partitions.is_empty() {
        return Assignment::new();
    }
    [(T, partitions.iter().copied().collect())].into()
}

fn parts(a: &Option<Assignment>) -> Option<Vec<i32>> {
    a.as_ref().map(|a| {
        a.get(&T)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    })
}

#[test]
fn a_partition_moves_only_after_its_owner_revoked_it() {
    let mut s = Shell::new(4);
    let a = s.beat(&s.request("a", 0, None));
    assert_eq!((a.error, a.member_epoch), (NONE, 1));
    assert_eq!(parts(&a.assignment), Some(vec![0, 1, 2, 3]));
    assert_eq!(a.heartbeat_interval_ms, 5_000);
    // b joins: epoch 2; everything is still a's, so b gets nothing yet.
    let b = s.beat(&s.request("b", 0, None));
    assert_eq!((b.error, b.member_epoch), (NONE, 2));
    assert_eq!(parts(&b.assignment), Some(vec![]));
    // a is told to keep two and stays in epoch 1 until it reports the revocation.
    let a = s.beat(&s.request("a", 1, Some(vec![0, 1, 2, 3])));
    assert_eq!(a.member_epoch, 1);
    let kept = parts(&a.assignment).unwrap();
    assert_eq!(kept.len(), 2);
    let b = s.beat(&s.request("b", 2, Some(vec![])));
    assert_eq!((b.member_epoch, b.assignment), (2, None), "still held by a");
    assert_eq!(consumer_group_state(s.group()), "Reconciling");
    let a = s.beat(&s.request("a", 1, Some(kept.clone())));
    assert_eq!(a.member_epoch, 2);
    let b = s.beat(&s.request("b", 2, Some(vec![])));
    let given = parts(&b.assignment).unwrap();
    assert_eq!(given.len(), 2);
    assert!(given.iter().all(|p| !kept.contains(p)));
    let _ = s.beat(&s.request("b", 2, Some(given)));
    assert_eq!(consumer_group_state(s.group()), "Stable");
}

#[test]
fn refusals_in_kafkas_words() {
    let mut s = Shell::new(2);
    s.c.config.consumer_group_size_max = 1;
    let _ = s.beat(&s.request("a", 0, None));
    let cases: Vec<(ConsumerHeartbeatRequest, i16)> = vec![
        (s.request("a", 5, Some(vec![])), FENCED_MEMBER_EPOCH),
        (s.request("nobody", 1, Some(vec![])), UNKNOWN_MEMBER_ID),
        (s.request("b", 0, None), GROUP_MAX_SIZE_REACHED),
        (
            ConsumerHeartbeatRequest {
                rebalance_timeout_ms: -1,
                ..s.request("c", 0, None)
            },
            INVALID_REQUEST,
        ),
        (
            ConsumerHeartbeatRequest {
                subscribed_topic_names: None,
                ..s.request("c", 0, None)
            },
            INVALID_REQUEST,
        ),
        (
            ConsumerHeartbeatRequest {
                subscribed_topic_regex: Some("t(".into()),
                ..s.request("c", 0, None)
            },
            INVALID_REGULAR_EXPRESSION,
        ),
        (s.request("", 0, None), INVALID_REQUEST),
        (
            ConsumerHeartbeatRequest {
                server_assignor: Some("sticky".into()),
                ..s.request("c", 0, None)
            },
            UNSUPPORTED_ASSIGNOR,
        ),
        (
            ConsumerHeartbeatRequest {
                group_id: String::new(),
                ..s.request("c", 0, None)
            },
            INVALID_REQUEST,
        ),
        (
            ConsumerHeartbeatRequest {
                group_id: " \t".into(),
                ..s.request("c", 0, None)
            },
            INVALID_REQUEST,
        ),
        (
            ConsumerHeartbeatRequest {
                instance_id: Some(" ".into()),
                ..s.request("c", 0, None)
            },
            INVALID_REQUEST,
        ),
        (
            ConsumerHeartbeatRequest {
                rack_id: Some(String::new()),
                ..s.request("c", 0, None)
            },
            INVALID_REQUEST,
        ),
    ];
    for (request, expected) in cases {
        let answer = s.beat(&request);
        assert_eq!(answer.error, expected, "{request:?}");
        assert!(answer.error_message.is_some());
    }
    // v0 names a new member itself.
    s.c.config.consumer_group_size_max = 10;
    let v0 = s.beat(&ConsumerHeartbeatRequest {
        version: 0,
        ..s.request("", 0, None)
    });
    assert_eq!(
        (v0.error, v0.member_id.as_deref()),
        (NONE, Some("generated"))
    );
}

#[test]
fn a_member_that_does_not_revoke_in_time_is_fenced_and_cannot_commit() {
    let mut s = Shell::new(2);
    let _ = s.beat(&s.request("a", 0, None));
    let _ = s.beat(&s.request("b", 0, None));
    let a = s.beat(&s.request("a", 1, Some(vec![0, 1])));
    assert_eq!(parts(&a.assignment).unwrap().len(), 1);
    assert_eq!(s.commit("a", 1), NONE, "a commits in its epoch");
    assert_eq!(s.commit("a", 0), STALE_MEMBER_EPOCH);
    // Below v9 Kafka answers a consumer-group member's stale epoch UNSUPPORTED_VERSION.
    assert_eq!(s.commit_in(G, "a", 0, 8), UNSUPPORTED_VERSION);
    // a never reports the revocation: fenced after its rebalance timeout.
    s.now_ms += i64::from(REBALANCE_MS) - 1;
    let _ = s.beat(&s.request("b", 2, Some(vec![])));
    s.tick(2);
    assert!(!s.group().members.contains_key("a"));
    assert_eq!(s.commit("a", 1), UNKNOWN_MEMBER_ID);
    let b = s.beat(&s.request("b", 2, Some(vec![])));
    assert_eq!(
        (b.member_epoch, parts(&b.assignment)),
        (3, Some(vec![0, 1]))
    );
    let a = s.beat(&s.request("a", 1, Some(vec![0])));
    assert_eq!(a.error, UNKNOWN_MEMBER_ID);
}

#[test]
fn session_expiry_and_leave_move_partitions_to_the_survivor() {
    let mut s = Shell::new(2);
    let _ = s.beat(&s.request("a", 0, None));
    let _ = s.beat(&s.request("b", 0, None));
    let a = s.beat(&s.request("a", 1, Some(vec![0, 1])));
    let kept = parts(&a.assignment).unwrap();
    let _ = s.beat(&s.request("a", 1, Some(kept)));
    let _ = s.beat(&s.request("b", 2, Some(vec![])));
    // a goes silent: gone after the session timeout; b takes everything.
    s.now_ms += 40_000;
    let _ = s.beat(&s.request("b", 2, None));
    s.tick(6_000);
    let b = s.beat(&s.request("b", 2, None));
    assert_eq!(
        (b.member_epoch, parts(&b.assignment)),
        (3, Some(vec![0, 1]))
    );
    let left = s.beat(&s.request("b", LEAVE_EPOCH, None));
    assert_eq!(left.member_epoch, LEAVE_EPOCH);
    assert_eq!(consumer_group_state(s.group()), "Empty");
}

#[test]
fn metadata_growth_bumps_the_group_epoch_on_the_next_heartbeat() {
    let mut s = Shell::new(1);
    let _ = s.beat(&s.request("a", 0, None));
    s.topics.insert("t".to_string(), (T, 3));
    let a = s.beat(&s.request("a", 1, None));
    assert_eq!(
        (a.member_epoch, parts(&a.assignment)),
        (2, Some(vec![0, 1, 2]))
    );
    assert_eq!(s.group().group_epoch, 2);
}

#[test]
fn a_regex_subscription_takes_matching_topics_as_they_appear() {
    let mut s = Shell::new(2);
    s.topics.insert("other".to_string(), (0xdef, 1));
    s.topics.insert("__internal".to_string(), (0x111, 1));
    let join = ConsumerHeartbeatRequest {
        subscribed_topic_names: Some(vec![]),
        subscribed_topic_regex: Some("t|t-.*".into()),
        ..s.request("a", 0, None)
    };
    let a = s.beat(&join);
    assert_eq!((a.error, parts(&a.assignment)), (NONE, Some(vec![0, 1])));
    assert_eq!(a.assignment.as_ref().unwrap().len(), 1, "only t matches");
    // A new matching topic: a new epoch at the next heartbeat, its partition assigned.
    s.topics.insert("t-new".to_string(), (0x222, 1));
    let a = s.beat(&s.request("a", 1, None));
    assert_eq!(a.member_epoch, 2);
    assert_eq!(a.assignment.unwrap()[&0x222], [0].into());
    // OffsetDelete counts the regex's topics as subscribed (Kafka's isSubscribedToTopic),
    // names it does not match and internal topics not.
    let topics = ["t-new", "t-later", "other", "__internal"].map(|t| (t.to_string(), 0));
    let deleted = s.c.offset_delete(7, G, &topics).unwrap();
    let errors: Vec<i16> = deleted.partitions.iter().map(|p| p.2).collect();
    assert_eq!(
        errors,
        [
            GROUP_SUBSCRIBED_TO_TOPIC,
            GROUP_SUBSCRIBED_TO_TOPIC,
            NONE,
            NONE
        ]
    );
}

#[test]
fn a_static_takeover_naming_another_members_id_is_refused_not_a_panic() {
    // P (static "i") holds everything at epoch 1 and leaves temporarily; X joins and the
    // group moves on. A join naming X's id with instance "i" must not overwrite X (its
    // epoch would go back: the coordinator's invariant check panicked under its lock).
    let mut s = Shell::new(4);
    let with_instance = |mut r: ConsumerHeartbeatRequest| {
        r.instance_id = Some("i".into());
        r
    };
    let p = s.beat(&with_instance(s.request("p", 0, None)));
    assert_eq!(p.member_epoch, 1);
    let gone = s.beat(&with_instance(s.request("p", STATIC_LEAVE_EPOCH, None)));
    assert_eq!(gone.member_epoch, STATIC_LEAVE_EPOCH);
    let x = s.beat(&s.request("x", 0, None));
    assert_eq!(x.error, NONE);
    let x_epoch = s.group().members["x"].member_epoch;
    let hostile = s.beat(&with_instance(s.request("x", 0, None)));
    assert_eq!(hostile.error, INVALID_REQUEST);
    assert_eq!(s.group().members["x"].member_epoch, x_epoch);
    assert!(s.group().members["x"].instance_id.is_none());
    // The instance itself can still come back under a fresh id.
    let back = s.beat(&with_instance(s.request("p2", 0, None)));
    assert_eq!(back.error, NONE);
}

#[test]
fn an_invalid_regex_is_refused_even_where_anchoring_would_hide_it() {
    let mut s = Shell::new(2);
    let mut join = s.request("a", 0, None);
    join.subscribed_topic_regex = Some("a)|(b".into());
    let refused = s.beat(&join);
    assert_eq!(refused.error, INVALID_REGULAR_EXPRESSION);
}

#[test]
fn static_members_leave_temporarily_and_are_replaced() {
    let mut s = Shell::new(2);
    let with_instance = |mut r: ConsumerHeartbeatRequest| {
        r.instance_id = Some("i".into());
        r
    };
    let a = s.beat(&with_instance(s.request("a", 0, None)));
    assert_eq!(a.member_epoch, 1);
    let taken = s.beat(&with_instance(s.request("a2", 0, None)));
    assert_eq!(taken.error, UNRELEASED_INSTANCE_ID);
    // Another member id under a known instance id is fenced, as in Kafka.
    let fenced = s.beat(&with_instance(s.request("x", 1, Some(vec![]))));
    assert_eq!(fenced.error, FENCED_INSTANCE_ID);
    let gone = s.beat(&with_instance(s.request("a", STATIC_LEAVE_EPOCH, None)));
    assert_eq!(gone.member_epoch, STATIC_LEAVE_EPOCH);
    let epoch_before = s.group().group_epoch;
    let back = s.beat(&with_instance(s.request("a2", 0, None)));
    assert_eq!(
        (back.member_epoch, parts(&back.assignment)),
        (1, Some(vec![0, 1]))
    );
    assert_eq!(s.group().group_epoch, epoch_before, "no rebalance");
    // The replaced copy of the member is fenced (FENCED_INSTANCE_ID), not unknown.
    let old = s.beat(&with_instance(s.request("a", 1, Some(vec![]))));
    assert_eq!(old.error, FENCED_INSTANCE_ID);
    // An instance id no member holds is unknown.
    let wrong = s.beat(&ConsumerHeartbeatRequest {
        instance_id: Some("other".into()),
        ..s.request("a2", 1, Some(vec![0, 1]))
    });
    assert_eq!(wrong.error, UNKNOWN_MEMBER_ID);
}

#[test]
fn classic_and_consumer_groups_do_not_mix() {
    let mut s = Shell::new(2);
    let _ = s.beat(&s.request("a", 0, None));
    let join = JoinGroupRequest {
        version: 5,
        group_id: G.to_string(),
        member_id: "m".to_string(),
        group_instance_id: None,
        client_id: "c".to_string(),
        client_host: "h".to_string(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: CONSUMER_PROTOCOL_TYPE.to_string(),
        protocols: vec![Protocol {
            name: "range".to_string(),
            metadata: consumer_subscription(&["t"]),
        }],
        member_id_suffix: "x".to_string(),
    };
    let answer = s.c.join_group(99, &join, s.now_ms).expect("answered");
    assert_eq!(answer.error, INCONSISTENT_GROUP_PROTOCOL);
    let beat = HeartbeatRequest {
        group_id: G.to_string(),
        member_id: "a".to_string(),
        group_instance_id: None,
        generation_id: 1,
    };
    assert_eq!(s.c.heartbeat(&beat, s.now_ms), GROUP_ID_NOT_FOUND);
    assert_eq!(
        s.c.describe_groups(&[G.to_string()])[0].error,
        GROUP_ID_NOT_FOUND
    );
    let listed = s.c.list_groups(&[]);
    assert_eq!(listed[0].consumer_state, Some("Stable"));
    assert_eq!(
        s.c.delete_groups(100, &[G.to_string()], s.now_ms)
            .unwrap()
            .groups[0]
            .1,
        NON_EMPTY_GROUP
    );
    // OffsetDelete keeps the offsets of a topic a member subscribes to.
    let deleted = s.c.offset_delete(101, G, &[("t".to_string(), 0)]).unwrap();
    assert_eq!(deleted.partitions[0].2, GROUP_SUBSCRIBED_TO_TOPIC);
    // A classic group with members refuses the consumer protocol.
    let mut classic = Shell::new(2);
    let mut join = join.clone();
    join.member_id = String::new();
    join.version = 3;
    let _ = classic.c.join_group(1, &join, classic.now_ms);
    let refused = classic.beat(&classic.request("a", 0, None));
    assert_eq!(refused.error, GROUP_ID_NOT_FOUND);
}

#[test]
fn a_new_coordinator_rebuilds_the_group_from_its_records() {
    let mut s = Shell::new(4);
    let _ = s.beat(&s.request("a", 0, None));
    let _ = s.beat(&s.request("b", 0, None));
    let _ = s.beat(&s.request("a", 1, Some(vec![0, 1, 2, 3])));
    assert_eq!(s.commit("a", 1), NONE);
    let mut loaded = GroupCoordinator::new(GroupConfig::default());
    for record in &s.log {
        let bytes = record.encode();
        let decoded = GroupRecord::decode(&bytes).expect("decodes");
        assert!(loaded.replay(&decoded, 50_000));
    }
    assert!(durable_eq(
        loaded.consumer_group_describe(G).unwrap(),
        s.group()
    ));
    assert_eq!(loaded.offset_fetch(G, None).partitions[0].offset, 5);
    // Sessions start at the load.
    let member = &loaded.consumer_group_describe(G).unwrap().members["a"];
    assert_eq!(member.session_deadline_ms, 50_000 + 45_000);
    assert!(member.revocation_deadline_ms.is_some());
}

/// One step of the property test's clients.
#[derive(Debug, Clone)]
enum Step {
    Join(usize),
    Beat(usize),
    /// The answer to this heartbeat is lost.
    BeatLost(usize),
    Leave(usize),
    Wait(i64),
    Grow,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0..4usize).prop_map(Step::Join),
        8 => (0..4usize).prop_map(Step::Beat),
        2 => (0..4usize).prop_map(Step::BeatLost),
        1 => (0..4usize).prop_map(Step::Leave),
        2 => (1..70_000i64).prop_map(Step::Wait),
        1 => Just(Step::Grow),
    ]
}

/// A client as the test sees it: in the group at an epoch, owning what it was last told.
#[derive(Debug, Clone, Default)]
struct Client {
    epoch: Option<i32>,
    owned: Vec<i32>,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Honest clients (owning what they were last told, losing some answers): no partition
    /// is ever owned by two clients the coordinator counts as members; member epochs never
    /// go back (asserted inside); a removed member cannot commit.
    #[test]
    fn no_partition_is_owned_by_two_live_members(steps in prop::collection::vec(step(), 1..80)) {
        let mut s = Shell::new(3);
        let mut clients = vec![Client::default(); 4];
        for step in steps {
            match step {
                Step::Join(i) if clients[i].epoch.is_none() => {
                    let r = s.beat(&s.request(&format!("m{i}"), 0, None));
                    if r.error == NONE {
                        clients[i] = Client { epoch: Some(r.member_epoch), owned: parts(&r.assignment).unwrap() };
                    }
                }
                Step::Beat(i) | Step::BeatLost(i) if clients[i].epoch.is_some() => {
                    let c = clients[i].clone();
                    // Always a full request (as a client sends after a lost answer).
                    let r = s.beat(&ConsumerHeartbeatRequest {
                        rebalance_timeout_ms: REBALANCE_MS,
                        subscribed_topic_names: Some(vec!["t".to_string()]),
                        ..s.request(&format!("m{i}"), c.epoch.unwrap(), Some(c.owned.clone()))
                    });
                    if matches!(step, Step::BeatLost(_)) {
                        continue;
                    }
                    if r.error != NONE {
                        // Fenced or unknown: the client drops everything and leaves.
                        prop_assert!(r.error == UNKNOWN_MEMBER_ID || r.error == FENCED_MEMBER_EPOCH, "{r:?}");
                        clients[i] = Client::default();
                        continue;
                    }
                    clients[i].epoch = Some(r.member_epoch);
                    if let Some(p) = parts(&r.assignment) {
                        clients[i].owned = p;
                    }
                }
                Step::Leave(i) if clients[i].epoch.is_some() => {
                    let _ = s.beat(&s.request(&format!("m{i}"), LEAVE_EPOCH, None));
                    clients[i] = Client::default();
                }
                Step::Wait(ms) => s.tick(ms),
                Step::Grow => {
                    let count = s.topics["t"].1;
                    s.topics.insert("t".to_string(), (T, count + 1));
                }
                _ => {}
            }
            let members: BTreeSet<String> = s
                .c
                .consumer_group_describe(G)
                .map(|g| g.members.keys().cloned().collect())
                .unwrap_or_default();
            let mut seen = BTreeSet::new();
            for (i, c) in clients.iter().enumerate() {
                let id = format!("m{i}");
                if !members.contains(&id) {
                    if c.epoch.is_some() {
                        prop_assert_eq!(s.commit(&id, c.epoch.unwrap()), UNKNOWN_MEMBER_ID);
                    }
                    continue;
                }
                for p in &c.owned {
                    prop_assert!(seen.insert(*p), "partition {} owned twice: {:?}", p, clients);
                }
            }
        }
    }
}

#[test]
fn a_replayed_group_with_values_no_coordinator_writes_is_refused() {
    let fine = ConsumerGroup::new();
    assert!(loaded_consumer_group(&fine, 45_000, 0).is_some());
    let mut negative = ConsumerGroup::new();
    negative.subscribed_topics.insert("t".into(), (T, -5));
    assert!(loaded_consumer_group(&negative, 45_000, 0).is_none());
    let mut huge = ConsumerGroup::new();
    huge.subscribed_topics.insert("t".into(), (T, i32::MAX));
    assert!(loaded_consumer_group(&huge, 45_000, 0).is_none());
    let mut no_room = ConsumerGroup::new();
    no_room.group_epoch = i32::MAX;
    assert!(loaded_consumer_group(&no_room, 45_000, 0).is_none());
}

#[test]
fn a_commit_with_a_generation_to_an_unknown_group_is_group_id_not_found_from_v9() {
    let mut s = Shell::new(1);
    assert_eq!(s.commit_in("nobody", "m", 3, 9), GROUP_ID_NOT_FOUND);
    assert_eq!(s.commit_in("nobody", "m", 3, 8), ILLEGAL_GENERATION);
    // No group was made by either refusal; a commit from outside group management makes
    // a simple group, at any version.
    assert!(s.c.list_groups(&[]).iter().all(|g| g.group_id != "nobody"));
    assert_eq!(s.commit_in("nobody", "", -1, 9), NONE);
}

#[test]
fn a_failed_write_leaves_the_group_as_it_was() {
    let mut s = Shell::new(2);
    let a = s.beat(&s.request("a", 0, None));
    assert_eq!(a.member_epoch, 1);
    let kept = s.group().clone();
    // b's join changes the group; its write fails: b is not in the group, and a's next
    // heartbeat is answered from the stored state (no new epoch, nothing to revoke).
    let token = s.token_next;
    s.token_next += 1;
    let now = s.now_ms;
    assert!(s
        .c
        .consumer_heartbeat(token, &s.request("b", 0, None), now)
        .is_none());
    for write in s.c.take_writes() {
        s.c.records_failed(write.token, NOT_COORDINATOR, now);
    }
    let refused = s.c.take_responses();
    assert!(matches!(
        &refused[..],
        [(t, Response::ConsumerGroupHeartbeat(r))] if *t == token && r.error == NOT_COORDINATOR
    ));
    assert_eq!(s.group(), &kept);
    // a's own heartbeat that changes the group (a new subscription), its write failing:
    // the subscription goes back, the session a heartbeat renewed stays renewed.
    s.now_ms += 4_000;
    let token = s.token_next;
    s.token_next += 1;
    let now = s.now_ms;
    let resubscribe = ConsumerHeartbeatRequest {
        subscribed_topic_names: Some(vec!["t".into(), "u".into()]),
        ..s.request("a", 1, Some(vec![0, 1]))
    };
    assert!(s.c.consumer_heartbeat(token, &resubscribe, now).is_none());
    for write in s.c.take_writes() {
        s.c.records_failed(write.token, NOT_COORDINATOR, now);
    }
    let _ = s.c.take_responses();
    let a = &s.group().members["a"];
    assert_eq!(
        a.subscribed_topic_names,
        kept.members["a"].subscribed_topic_names
    );
    assert!(a.session_deadline_ms > kept.members["a"].session_deadline_ms);
    let a = s.beat(&s.request("a", 1, Some(vec![0, 1])));
    assert_eq!((a.error, a.member_epoch, a.assignment), (NONE, 1, None));
    // A group the failed heartbeat created is gone again.
    let mut fresh = Shell::new(1);
    let now = fresh.now_ms;
    assert!(fresh
        .c
        .consumer_heartbeat(1, &fresh.request("x", 0, None), now)
        .is_none());
    for write in fresh.c.take_writes() {
        fresh.c.records_failed(write.token, NOT_COORDINATOR, now);
    }
    assert_eq!(
        fresh.c.consumer_group_describe(G).err(),
        Some(GROUP_ID_NOT_FOUND)
    );
}

#[test]
fn a_failed_write_is_not_undone_while_a_timer_write_of_the_group_is_in_flight() {
    // b joins; its write is held. a's session then runs out and the coordinator's timer
    // writes the group whole, b included. b's write failing must not take b back out:
    // the timer's write, still in flight, decides what is stored.
    let mut s = Shell::new(2);
    let _ = s.beat(&s.request("a", 0, None));
    let session = i64::from(s.c.config().consumer_session_timeout_ms);
    let late = s.now_ms + session + 1;
    s.now_ms += session / 2;
    let now = s.now_ms;
    assert!(s
        .c
        .consumer_heartbeat(50, &s.request("b", 0, None), now)
        .is_none());
    let joined = s.c.take_writes();
    s.c.tick(late);
    let timers = s.c.take_writes();
    assert_eq!(timers.len(), 1, "the timer wrote the group");
    for write in joined {
        s.c.records_failed(write.token, NOT_COORDINATOR, late);
    }
    assert!(s.group().members.contains_key("b"));
    assert!(!s.group().members.contains_key("a"));
}
