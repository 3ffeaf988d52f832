//! Tests of the group coordinator, driven through a small shell (`Shell`) that numbers
//! requests, commits writes (at once, or when the test says), and collects released
//! responses by token. Error cases are tables read through one `check` helper.

use super::*;
use error_code::*;
use proptest::prelude::*;

const G: &str = "g";
const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

fn protocols(names: &[&str], topics: &[&str]) -> Vec<Protocol> {
    names
        .iter()
        .map(|n| Protocol {
            name: n.to_string(),
            metadata: consumer_subscription(topics),
        })
        .collect()
}

/// A consumer's JoinGroup (version 5) subscribing to topic `t` with protocol `range`.
fn join_request(member_id: &str, client: &str, instance: Option<&str>) -> JoinGroupRequest {
    JoinGroupRequest {
        version: 5,
        group_id: G.to_string(),
        member_id: member_id.to_string(),
        group_instance_id: instance.map(str::to_string),
        client_id: client.to_string(),
        client_host: "/10.0.0.1".to_string(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: CONSUMER_PROTOCOL_TYPE.to_string(),
        protocols: protocols(&["range"], &["t"]),
        member_id_suffix: "x".to_string(),
    }
}

/// The shell in miniature.
struct Shell {
    c: GroupCoordinator,
    /// Commit every write as soon as it is made (a log that never fails).
    auto_commit: bool,
    /// Writes made and not yet reported (when not committing at once).
    pending: Vec<Write>,
    token_next: RequestToken,
    released: BTreeMap<RequestToken, Response>,
    /// Every record committed, in order (the log, for replay).
    log: Vec<GroupRecord>,
    now_ms: i64,
}

impl Shell {
    fn new(config: GroupConfig) -> Shell {
        Shell {
            c: GroupCoordinator::new(config),
            auto_commit: true,
            pending: Vec::new(),
            token_next: 1,
            released: BTreeMap::new(),
            log: Vec::new(),
            now_ms: 0,
        }
    }

    fn token(&mut self) -> RequestToken {
        self.token_next += 1;
        self.token_next - 1
    }

    /// Drains outputs as the shell does: writes first, then responses.
    fn drain(&mut self) {
        let writes = self.c.take_writes();
        if self.auto_commit {
            for write in writes {
                self.log.extend(write.records.iter().cloned());
                self.c.records_committed(write.token, self.now_ms);
            }
        } else {
            self.pending.extend(writes);
        }
        for (token, response) in self.c.take_responses() {
            assert!(
                self.released.insert(token, response).is_none(),
                "answered twice"
            );
        }
    }

    /// Commits every pending write.
    fn commit_pending(&mut self) {
        for write in std::mem::take(&mut self.pending) {
            self.log.extend(write.records.iter().cloned());
            self.c.records_committed(write.token, self.now_ms);
        }
        self.drain();
    }

    fn at(&mut self, now_ms: i64) -> &mut Shell {
        self.now_ms = now_ms;
        self
    }

    /// A JoinGroup; an answer given at once is also kept under its token for `joined`.
    fn join(&mut self, request: &JoinGroupRequest) -> (RequestToken, Option<JoinGroupResponse>) {
        let token = self.token();
        let response = self.c.join_group(token, request, self.now_ms);
        self.drain();
        if let Some(r) = &response {
            self.released.insert(token, Response::JoinGroup(r.clone()));
        }
        (token, response)
    }

    /// A released JoinGroup response.
    fn joined(&mut self, token: RequestToken) -> JoinGroupResponse {
        match self.released.remove(&token) {
            Some(Response::JoinGroup(r)) => r,
            other => panic!("no JoinGroup response for {token}: {other:?}"),
        }
    }

    fn synced(&mut self, token: RequestToken) -> SyncGroupResponse {
        match self.released.remove(&token) {
            Some(Response::SyncGroup(r)) => r,
            other => panic!("no SyncGroup response for {token}: {other:?}"),
        }
    }

    /// KIP-394's two steps for a new dynamic member; returns its id and parked token.
    fn join_new(&mut self, client: &str) -> (String, RequestToken) {
        let (first_token, first) = self.join(&join_request("", client, None));
        let first = first.expect("answered at once");
        self.released.remove(&first_token);
        assert_eq!(first.error, MEMBER_ID_REQUIRED);
        let (token, _) = self.join(&join_request(&first.member_id, client, None));
        (first.member_id, token)
    }

    fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: &[(&str, &str)],
    ) -> (RequestToken, Option<SyncGroupResponse>) {
        let request = SyncGroupRequest {
            group_id: G.to_string(),
            member_id: member_id.to_string(),
            group_instance_id: None,
            generation_id: generation,
            protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_string()),
            protocol_name: Some("range".to_string()),
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), a.as_bytes().to_vec()))
                .collect(),
        };
        let token = self.token();
        let response = self.c.sync_group(token, &request, self.now_ms);
        self.drain();
        (token, response)
    }

    fn heartbeat(&mut self, member_id: &str, instance: Option<&str>, generation: i32) -> i16 {
        let request = HeartbeatRequest {
            group_id: G.to_string(),
            member_id: member_id.to_string(),
            group_instance_id: instance.map(str::to_string),
            generation_id: generation,
        };
        let error = self.c.heartbeat(&request, self.now_ms);
        self.drain();
        error
    }

    fn tick(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
        self.c.tick(now_ms);
        self.drain();
    }

    fn commit(
        &mut self,
        member_id: &str,
        generation: i32,
        offsets: &[(&str, i32, i64)],
    ) -> (RequestToken, Option<OffsetCommitResponse>) {
        let request = OffsetCommitRequest {
            group_id: G.to_string(),
            generation_id: generation,
            member_id: member_id.to_string(),
            group_instance_id: None,
            api_version: 8,
            partitions: offsets
                .iter()
                .map(|(t, p, o)| CommitPartition {
                    topic: t.to_string(),
                    partition: *p,
                    offset: *o,
                    leader_epoch: -1,
                    metadata: String::new(),
                })
                .collect(),
        };
        let token = self.token();
        let response = self.c.offset_commit(token, &request, self.now_ms);
        self.drain();
        (token, response)
    }

    /// The errors of a commit answered at once or after its records.
    fn commit_errors(
        &mut self,
        member_id: &str,
        generation: i32,
        offsets: &[(&str, i32, i64)],
    ) -> Vec<i16> {
        let (token, response) = self.commit(member_id, generation, offsets);
        let response = response.unwrap_or_else(|| match self.released.remove(&token) {
            Some(Response::OffsetCommit(r)) => r,
            other => panic!("commit not answered: {other:?}"),
        });
        response.partitions.iter().map(|(_, _, e)| *e).collect()
    }

    fn fetched(&self, topic: &str, partition: i32) -> i64 {
        let asked = [(topic.to_string(), partition)];
        self.c.offset_fetch(G, Some(&asked)).partitions[0].offset
    }

    fn state(&self) -> Option<GroupState> {
        self.c.group_state(G)
    }

    /// `clients` (dynamic) joined, assigned and synced: a Stable group; returns their ids
    /// (the first is the leader) and the generation.
    fn stable(&mut self, clients: &[&str]) -> (Vec<String>, i32) {
        let mut members = Vec::new();
        let mut tokens = Vec::new();
        for client in clients {
            let (id, token) = self.join_new(client);
            members.push(id);
            tokens.push(token);
        }
        // Joins after the first started a new join phase: everyone rejoins.
        if self.state() == Some(GroupState::PreparingRebalance) {
            for (id, client) in members.iter().zip(clients) {
                let (token, response) = self.join(&join_request(id, client, None));
                assert!(
                    response.is_none() || self.state() == Some(GroupState::CompletingRebalance)
                );
                tokens.push(token);
            }
        }
        assert_eq!(self.state(), Some(GroupState::CompletingRebalance));
        let generation = self.c.generation(G).unwrap();
        let leader = members[0].clone();
        let assignments: Vec<(&str, &str)> = members.iter().map(|m| (m.as_str(), "a")).collect();
        let (token, response) = self.sync(&leader, generation, &assignments);
        assert!(response.is_none());
        assert_eq!(self.synced(token).error, NONE);
        for follower in &members[1..] {
            let (_, response) = self.sync(follower, generation, &[]);
            assert_eq!(response.unwrap().error, NONE);
        }
        self.released.clear();
        assert_eq!(self.state(), Some(GroupState::Stable));
        (members, generation)
    }
}

#[test]
fn kip_394_two_step_join_then_a_one_member_generation() {
    let mut shell = Shell::new(config());
    let (_, first) = shell.join(&join_request("", "c1", None));
    let first = first.unwrap();
    assert_eq!(
        (first.error, first.member_id.as_str()),
        (MEMBER_ID_REQUIRED, "c1-x")
    );
    assert_eq!(
        shell.state(),
        Some(GroupState::Empty),
        "a pending member is not a member"
    );
    let (_, second) = shell.join(&join_request("c1-x", "c1", None));
    let second = second.expect("the only member: the phase completes at once");
    assert_eq!((second.error, second.generation_id), (NONE, 1));
    assert_eq!(second.leader, "c1-x");
    assert_eq!(second.protocol_name.as_deref(), Some("range"));
    assert_eq!(second.members.len(), 1, "the leader gets the member list");
    assert_eq!(second.members[0].metadata, consumer_subscription(&["t"]));
    // Before version 4 there is no first step.
    let mut old = join_request("", "c2", None);
    old.version = 3;
    let mut shell = Shell::new(config());
    let (_, response) = shell.join(&old);
    assert_eq!(response.unwrap().member_id, "c2-x");
}

#[test]
fn a_pending_member_holds_the_join_phase_until_its_session_timeout() {
    let mut shell = Shell::new(config());
    let (members, _) = shell.stable(&["c1"]);
    shell.at(1_000);
    let (_, first) = shell.join(&join_request("", "c2", None));
    assert_eq!(first.unwrap().error, MEMBER_ID_REQUIRED);
    // The leader rejoins (a rebalance) but c2-x never comes back.
    let (token, response) = shell.join(&join_request(&members[0], "c1", None));
    assert!(response.is_none(), "waits for the pending member");
    assert_eq!(shell.c.next_deadline(), Some(1_000 + i64::from(SESSION_MS)));
    shell.tick(1_000 + i64::from(SESSION_MS));
    assert_eq!(shell.joined(token).generation_id, 2);
}

#[test]
fn three_members_rebalance_and_one_never_rejoins() {
    let mut shell = Shell::new(config());
    let (members, generation) = shell.stable(&["a", "b", "c"]);
    shell.at(100);
    let (d, d_token) = shell.join_new("d");
    assert_eq!(shell.state(), Some(GroupState::PreparingRebalance));
    let (a_token, _) = shell.join(&join_request(&members[0], "a", None));
    let (b_token, _) = shell.join(&join_request(&members[1], "b", None));
    assert!(shell.released.is_empty(), "c has not rejoined");
    // c is alive (its heartbeats say so) but does not rejoin.
    for now_ms in (5_000..=30_000).step_by(5_000) {
        shell.tick(now_ms);
        assert_eq!(
            shell.heartbeat(&members[2], None, generation),
            REBALANCE_IN_PROGRESS
        );
    }
    assert_eq!(shell.c.next_deadline(), Some(100 + i64::from(REBALANCE_MS)));
    shell.tick(100 + i64::from(REBALANCE_MS) - 1);
    assert!(shell.released.is_empty());
    shell.tick(100 + i64::from(REBALANCE_MS));
    let a = shell.joined(a_token);
    assert_eq!(
        (a.generation_id, a.leader.as_str()),
        (generation + 1, members[0].as_str())
    );
    let ids: Vec<&str> = a.members.iter().map(|m| m.member_id.as_str()).collect();
    assert_eq!(ids, [members[0].as_str(), members[1].as_str(), d.as_str()]);
    assert!(
        shell.joined(b_token).members.is_empty(),
        "followers get no member list"
    );
    assert_eq!(shell.joined(d_token).generation_id, generation + 1);
    assert_eq!(
        shell.heartbeat(&members[2], None, generation),
        UNKNOWN_MEMBER_ID
    );
}

#[test]
fn leader_failover_inside_a_generation() {
    let mut shell = Shell::new(config());
    let (members, generation) = shell.stable(&["a", "b", "c"]);
    // A rebalance: everyone rejoins, then the leader dies before its SyncGroup.
    let tokens: Vec<_> = ["a", "b", "c"]
        .iter()
        .zip(&members)
        .map(|(client, id)| shell.join(&join_request(id, client, None)).0)
        .collect();
    assert_eq!(shell.joined(tokens[0]).leader, members[0]);
    let (b_sync, response) = shell.sync(&members[1], generation + 1, &[]);
    assert!(
        response.is_none(),
        "a follower's SyncGroup waits for the leader's"
    );
    let leave = LeaveGroupRequest {
        group_id: G.to_string(),
        members: vec![LeavingMember {
            member_id: members[0].clone(),
            group_instance_id: None,
        }],
    };
    assert_eq!(shell.c.leave_group(&leave, 0).members[0].1, NONE);
    shell.drain();
    assert_eq!(shell.synced(b_sync).error, REBALANCE_IN_PROGRESS);
    assert_eq!(shell.state(), Some(GroupState::PreparingRebalance));
    let (b_token, _) = shell.join(&join_request(&members[1], "b", None));
    let (c_token, _) = shell.join(&join_request(&members[2], "c", None));
    let b = shell.joined(b_token);
    assert_eq!(
        (b.generation_id, b.leader.as_str()),
        (generation + 2, members[1].as_str())
    );
    assert_eq!(b.members.len(), 2, "the new leader gets the member list");
    assert_eq!(shell.joined(c_token).leader, members[1]);
}

#[test]
fn a_followers_sync_is_parked_until_the_leaders_assignment_is_committed() {
    let mut shell = Shell::new(config());
    shell.auto_commit = false;
    let (a, _) = shell.join_new("a");
    let (b, _) = shell.join_new("b");
    let (a_token, _) = shell.join(&join_request(&a, "a", None));
    let generation = shell.joined(a_token).generation_id;
    shell.released.clear();
    let (b_sync, response) = shell.sync(&b, generation, &[]);
    assert!(response.is_none());
    let (a_sync, response) = shell.sync(&a, generation, &[(&a, "A"), (&b, "B")]);
    assert!(response.is_none());
    assert!(
        shell.released.is_empty(),
        "nothing before the records are committed"
    );
    assert_eq!(shell.state(), Some(GroupState::CompletingRebalance));
    assert_eq!(shell.pending.len(), 1);
    shell.commit_pending();
    assert_eq!(shell.synced(b_sync).assignment, b"B");
    assert_eq!(shell.synced(a_sync).assignment, b"A");
    assert_eq!(shell.state(), Some(GroupState::Stable));
}

#[test]
fn a_failed_assignment_write_answers_the_syncs_and_rebalances() {
    let mut shell = Shell::new(config());
    shell.auto_commit = false;
    let (a, _) = shell.join_new("a");
    let (a_sync, _) = shell.sync(&a, 1, &[(&a, "A")]);
    let write = shell.pending.pop().unwrap();
    shell.c.records_failed(write.token, NOT_COORDINATOR, 0);
    shell.drain();
    assert_eq!(shell.synced(a_sync).error, NOT_COORDINATOR);
    assert_eq!(shell.state(), Some(GroupState::PreparingRebalance));
}

#[test]
fn heartbeats_during_a_rebalance_and_session_expiry() {
    let mut shell = Shell::new(config());
    let (members, generation) = shell.stable(&["a", "b"]);
    shell.at(5_000);
    assert_eq!(shell.heartbeat(&members[0], None, generation), NONE);
    // b is never heard from again: removed at its session timeout (set at its SyncGroup
    // at time 0), which starts a rebalance.
    assert_eq!(shell.c.next_deadline(), Some(i64::from(SESSION_MS)));
    shell.tick(i64::from(SESSION_MS) - 1);
    assert_eq!(shell.state(), Some(GroupState::Stable));
    shell.tick(i64::from(SESSION_MS));
    assert_eq!(shell.state(), Some(GroupState::PreparingRebalance));
    assert_eq!(
        shell.heartbeat(&members[0], None, generation),
        REBALANCE_IN_PROGRESS
    );
    assert_eq!(
        shell.heartbeat(&members[1], None, generation),
        UNKNOWN_MEMBER_ID
    );
    let (token, response) = shell.join(&join_request(&members[0], "a", None));
    let response = response.unwrap_or_else(|| shell.joined(token));
    assert_eq!(response.generation_id, generation + 1);
    assert_eq!(
        shell.heartbeat(&members[0], None, generation),
        ILLEGAL_GENERATION
    );
    assert_eq!(shell.heartbeat(&members[0], None, generation + 1), NONE);
}

/// Static members "ia" and "ib", Stable in generation 1.
fn static_group(shell: &mut Shell) -> (String, String) {
    let mut a = join_request("", "a", Some("ia"));
    a.member_id_suffix = "1".to_string();
    let (a_token, _) = shell.join(&a);
    let mut b = join_request("", "b", Some("ib"));
    b.member_id_suffix = "1".to_string();
    let (b_token, _) = shell.join(&b);
    // The second static member started a rebalance; a rejoins.
    assert_eq!(
        shell.joined(a_token).generation_id,
        1,
        "a alone made generation 1"
    );
    let (a_rejoin, _) = shell.join(&JoinGroupRequest {
        member_id: "a-1".to_string(),
        ..a.clone()
    });
    let leader = shell.joined(a_rejoin);
    assert_eq!((leader.generation_id, leader.leader.as_str()), (2, "a-1"));
    assert_eq!(shell.joined(b_token).generation_id, 2);
    shell.sync("a-1", 2, &[("a-1", "A"), ("b-1", "B")]);
    shell.sync("b-1", 2, &[]);
    shell.released.clear();
    assert_eq!(shell.state(), Some(GroupState::Stable));
    ("a-1".to_string(), "b-1".to_string())
}

#[test]
fn a_static_member_restart_is_no_rebalance_and_fences_the_old_member_id() {
    let mut shell = Shell::new(config());
    let (_, b) = static_group(&mut shell);
    shell.auto_commit = false;
    shell.at(3_000);
    let mut restart = join_request("", "b", Some("ib"));
    restart.member_id_suffix = "2".to_string();
    let (token, response) = shell.join(&restart);
    assert!(
        response.is_none(),
        "answered once the new member id is stored"
    );
    assert_eq!(shell.state(), Some(GroupState::Stable), "no rebalance");
    shell.commit_pending();
    let joined = shell.joined(token);
    assert_eq!(
        (
            joined.error,
            joined.member_id.as_str(),
            joined.generation_id
        ),
        (NONE, "b-2", 2)
    );
    assert_eq!(shell.heartbeat(&b, Some("ib"), 2), FENCED_INSTANCE_ID);
    assert_eq!(shell.heartbeat("b-2", Some("ib"), 2), NONE);
    let (_, sync) = shell.sync("b-2", 2, &[]);
    assert_eq!(
        sync.unwrap().assignment,
        b"B",
        "the old member id's assignment"
    );
    let (_, old_join) = shell.join(&join_request(&b, "b", Some("ib")));
    assert_eq!(old_join.unwrap().error, FENCED_INSTANCE_ID);
    assert_eq!(shell.c.generation(G), Some(2));
}

#[test]
fn a_failed_static_replacement_restores_the_old_member_id() {
    let mut shell = Shell::new(config());
    let (_, b) = static_group(&mut shell);
    shell.auto_commit = false;
    let mut restart = join_request("", "b", Some("ib"));
    restart.member_id_suffix = "2".to_string();
    let (token, _) = shell.join(&restart);
    let write = shell.pending.pop().unwrap();
    shell
        .c
        .records_failed(write.token, COORDINATOR_NOT_AVAILABLE, 0);
    shell.drain();
    assert_eq!(shell.joined(token).error, COORDINATOR_NOT_AVAILABLE);
    assert_eq!(shell.heartbeat(&b, Some("ib"), 2), NONE);
    assert_eq!(
        shell.heartbeat("b-2", Some("ib"), 2),
        FENCED_INSTANCE_ID,
        "ib is b-1 again"
    );
}

#[test]
fn the_initial_rebalance_delay_waits_and_extends_up_to_the_rebalance_timeout() {
    let mut shell = Shell::new(GroupConfig {
        initial_rebalance_delay_ms: 3_000,
        ..GroupConfig::default()
    });
    let (a, a_token) = shell.join_new("a");
    assert_eq!(
        shell.c.next_deadline(),
        Some(3_000),
        "an Empty group waits the delay"
    );
    assert!(shell.released.is_empty(), "never completes early");
    shell.at(1_000);
    let (b, b_token) = shell.join_new("b");
    shell.tick(3_000);
    assert_eq!(
        shell.c.next_deadline(),
        Some(6_000),
        "a new member joined: wait again"
    );
    shell.tick(6_000);
    let joined = shell.joined(a_token);
    assert_eq!((joined.generation_id, joined.members.len()), (1, 2));
    assert_eq!(shell.joined(b_token).member_id, b);
    assert_ne!(a, b);
}

#[test]
fn the_initial_delay_never_passes_the_rebalance_timeout() {
    let mut shell = Shell::new(GroupConfig {
        initial_rebalance_delay_ms: 3_000,
        ..GroupConfig::default()
    });
    let mut request = join_request("", "a", None);
    request.version = 3;
    request.rebalance_timeout_ms = 4_000;
    shell.join(&request);
    shell.at(100);
    shell.join(&JoinGroupRequest {
        client_id: "b".to_string(),
        ..request.clone()
    });
    shell.tick(3_000);
    assert_eq!(
        shell.c.next_deadline(),
        Some(4_000),
        "1 s of the rebalance timeout was left"
    );
    shell.at(3_500);
    shell.join(&JoinGroupRequest {
        client_id: "c".to_string(),
        ..request.clone()
    });
    shell.tick(4_000);
    assert_eq!(shell.state(), Some(GroupState::CompletingRebalance));
}

#[test]
fn group_max_size() {
    let mut shell = Shell::new(GroupConfig {
        group_size_max: 2,
        ..config()
    });
    shell.stable(&["a", "b"]);
    let (_, response) = shell.join(&join_request("", "c", None));
    assert_eq!(response.unwrap().error, GROUP_MAX_SIZE_REACHED);
}

#[test]
fn a_batched_leave_answers_each_member() {
    let mut shell = Shell::new(config());
    static_group(&mut shell);
    let (dynamic, _) = shell.join_new("d");
    let leave = LeaveGroupRequest {
        group_id: G.to_string(),
        members: vec![
            LeavingMember {
                member_id: dynamic,
                group_instance_id: None,
            },
            LeavingMember {
                member_id: String::new(),
                group_instance_id: Some("ia".into()),
            },
            LeavingMember {
                member_id: "nobody".into(),
                group_instance_id: None,
            },
            LeavingMember {
                member_id: "b-0".into(),
                group_instance_id: Some("ib".into()),
            },
            LeavingMember {
                member_id: String::new(),
                group_instance_id: Some("iz".into()),
            },
        ],
    };
    let response = shell.c.leave_group(&leave, 0);
    let errors: Vec<i16> = response.members.iter().map(|(_, e)| *e).collect();
    assert_eq!(
        errors,
        [
            NONE,
            NONE,
            UNKNOWN_MEMBER_ID,
            FENCED_INSTANCE_ID,
            UNKNOWN_MEMBER_ID
        ]
    );
    let unknown = LeaveGroupRequest {
        group_id: "other".into(),
        ..leave
    };
    assert!(shell
        .c
        .leave_group(&unknown, 0)
        .members
        .iter()
        .all(|(_, e)| *e == UNKNOWN_MEMBER_ID));
}

#[test]
fn the_leader_rejoining_in_stable_rebalances_a_follower_does_not() {
    let mut shell = Shell::new(config());
    let (members, generation) = shell.stable(&["a", "b"]);
    let (_, follower) = shell.join(&join_request(&members[1], "b", None));
    let follower = follower.expect("an unchanged follower is answered at once");
    assert_eq!(follower.generation_id, generation);
    assert_eq!(shell.state(), Some(GroupState::Stable));
    let (_, leader) = shell.join(&join_request(&members[0], "a", None));
    assert!(leader.is_none());
    assert_eq!(shell.state(), Some(GroupState::PreparingRebalance));
    // A follower whose subscription changed rebalances too.
    let mut shell = Shell::new(config());
    let (members, _) = shell.stable(&["a", "b"]);
    let mut changed = join_request(&members[1], "b", None);
    changed.protocols = protocols(&["range"], &["t", "u"]);
    shell.join(&changed);
    assert_eq!(shell.state(), Some(GroupState::PreparingRebalance));
}

/// One request against a Stable group of members a-x and b-x (generation 2), and the error
/// it must get. The table is the rules of every request's checks.
#[derive(Debug)]
enum Probe {
    Join(JoinGroupRequest),
    Sync(&'static str, i32, Option<&'static str>),
    Heartbeat(&'static str, i32),
    Commit(&'static str, i32),
}

fn check(cases: Vec<(&str, Probe, i16)>) {
    for (name, probe, expect) in cases {
        let mut shell = Shell::new(config());
        let (members, generation) = shell.stable(&["a", "b"]);
        assert_eq!(members, ["a-x", "b-x"]);
        assert_eq!(
            generation, 2,
            "a alone made generation 1, b's join generation 2"
        );
        let actual = match probe {
            Probe::Join(request) => shell.join(&request).1.map_or(-1, |r| r.error),
            Probe::Sync(member, generation, protocol) => {
                let request = SyncGroupRequest {
                    group_id: G.into(),
                    member_id: member.into(),
                    group_instance_id: None,
                    generation_id: generation,
                    protocol_type: Some(CONSUMER_PROTOCOL_TYPE.into()),
                    protocol_name: protocol.map(str::to_string),
                    assignments: Vec::new(),
                };
                shell.c.sync_group(99, &request, 0).map_or(-1, |r| r.error)
            }
            Probe::Heartbeat(member, generation) => shell.heartbeat(member, None, generation),
            Probe::Commit(member, generation) => {
                shell.commit_errors(member, generation, &[("t", 0, 5)])[0]
            }
        };
        assert_eq!(actual, expect, "{name}");
    }
}

#[test]
fn request_checks() {
    let join = |f: fn(&mut JoinGroupRequest)| {
        let mut request = join_request("a-x", "a", None);
        f(&mut request);
        Probe::Join(request)
    };
    check(vec![
        (
            "join: unknown member id",
            join(|r| r.member_id = "z".into()),
            UNKNOWN_MEMBER_ID,
        ),
        (
            "join: other protocol type",
            join(|r| r.protocol_type = "connect".into()),
            INCONSISTENT_GROUP_PROTOCOL,
        ),
        (
            "join: no common protocol",
            join(|r| r.protocols = protocols(&["rr"], &["t"])),
            INCONSISTENT_GROUP_PROTOCOL,
        ),
        (
            "join: session too short",
            join(|r| r.session_timeout_ms = 10),
            INVALID_SESSION_TIMEOUT,
        ),
        (
            "join: empty group id",
            join(|r| r.group_id.clear()),
            INVALID_GROUP_ID,
        ),
        (
            "join: unknown instance id",
            join(|r| r.group_instance_id = Some("i".into())),
            UNKNOWN_MEMBER_ID,
        ),
        (
            "sync: ok in Stable",
            Probe::Sync("b-x", 2, Some("range")),
            NONE,
        ),
        (
            "sync: stale generation",
            Probe::Sync("b-x", 1, Some("range")),
            ILLEGAL_GENERATION,
        ),
        (
            "sync: unknown member",
            Probe::Sync("z", 2, Some("range")),
            UNKNOWN_MEMBER_ID,
        ),
        (
            "sync: other protocol",
            Probe::Sync("b-x", 2, Some("rr")),
            INCONSISTENT_GROUP_PROTOCOL,
        ),
        ("heartbeat: ok", Probe::Heartbeat("a-x", 2), NONE),
        (
            "heartbeat: stale generation",
            Probe::Heartbeat("a-x", 1),
            ILLEGAL_GENERATION,
        ),
        (
            "heartbeat: unknown member",
            Probe::Heartbeat("z", 2),
            UNKNOWN_MEMBER_ID,
        ),
        ("commit: ok", Probe::Commit("a-x", 2), NONE),
        (
            "commit: stale generation",
            Probe::Commit("a-x", 1),
            ILLEGAL_GENERATION,
        ),
        (
            "commit: newer generation",
            Probe::Commit("a-x", 3),
            ILLEGAL_GENERATION,
        ),
        (
            "commit: unknown member",
            Probe::Commit("z", 2),
            UNKNOWN_MEMBER_ID,
        ),
        (
            "commit: simple commit to a group with members",
            Probe::Commit("", -1),
            UNKNOWN_MEMBER_ID,
        ),
    ]);
}

#[test]
fn commits_and_syncs_during_each_phase_of_a_rebalance() {
    let mut shell = Shell::new(config());
    let (members, generation) = shell.stable(&["a", "b"]);
    shell.join(&join_request(&members[0], "a", None));
    assert_eq!(shell.state(), Some(GroupState::PreparingRebalance));
    assert_eq!(
        shell.commit_errors(&members[1], generation, &[("t", 0, 1)]),
        [NONE],
        "allowed while preparing"
    );
    assert_eq!(
        shell.sync(&members[1], generation, &[]).1.unwrap().error,
        REBALANCE_IN_PROGRESS
    );
    shell.join(&join_request(&members[1], "b", None));
    assert_eq!(shell.state(), Some(GroupState::CompletingRebalance));
    let next = generation + 1;
    assert_eq!(
        shell.commit_errors(&members[1], next, &[("t", 0, 2)]),
        [REBALANCE_IN_PROGRESS]
    );
    assert_eq!(
        shell.commit_errors(&members[1], generation, &[("t", 0, 2)]),
        [ILLEGAL_GENERATION]
    );
    assert_eq!(shell.fetched("t", 0), 1);
}

#[test]
fn simple_commits_go_to_empty_or_unknown_groups() {
    let mut shell = Shell::new(config());
    assert_eq!(
        shell.commit_errors("", 0, &[("t", 0, 1)]),
        [ILLEGAL_GENERATION],
        "an unknown group with a generation"
    );
    assert_eq!(shell.state(), None);
    assert_eq!(
        shell.commit_errors("", -1, &[("t", 0, 7), ("t", 1, 8)]),
        [NONE, NONE]
    );
    assert_eq!(shell.state(), Some(GroupState::Empty));
    assert_eq!(
        (
            shell.fetched("t", 0),
            shell.fetched("t", 1),
            shell.fetched("t", 2)
        ),
        (7, 8, -1)
    );
    let all = shell.c.offset_fetch(G, None);
    assert_eq!(all.partitions.len(), 2);
    let listed = shell.c.list_groups(&[]);
    assert_eq!(
        (listed[0].protocol_type.as_str(), listed[0].state),
        ("", GroupState::Empty)
    );
    assert_eq!(
        shell.commit_errors("someone", 3, &[("t", 0, 9)]),
        [UNKNOWN_MEMBER_ID]
    );
    let mut too_long = shell.c.config().clone();
    too_long.offset_metadata_bytes_max = 0;
    let mut shell = Shell::new(too_long);
    let request = OffsetCommitRequest {
        group_id: G.into(),
        generation_id: -1,
        member_id: String::new(),
        group_instance_id: None,
        api_version: 8,
        partitions: vec![CommitPartition {
            topic: "t".into(),
            partition: 0,
            offset: 1,
            leader_epoch: 3,
            metadata: "m".into(),
        }],
    };
    let response = shell.c.offset_commit(1, &request, 0).unwrap();
    assert_eq!(response.partitions[0].2, OFFSET_METADATA_TOO_LARGE);
}

#[test]
fn a_commit_is_answered_and_visible_only_once_its_records_are_committed() {
    let mut shell = Shell::new(config());
    shell.auto_commit = false;
    let (token, response) = shell.commit("", -1, &[("t", 0, 42)]);
    assert!(response.is_none());
    assert!(shell.released.is_empty());
    assert_eq!(
        shell.fetched("t", 0),
        -1,
        "not visible before it is durable"
    );
    let write = &shell.pending[0];
    assert!(matches!(
        &write.records[0],
        GroupRecord::OffsetCommit { offset: 42, .. }
    ));
    shell.commit_pending();
    assert!(
        matches!(shell.released.remove(&token), Some(Response::OffsetCommit(r)) if r.partitions[0].2 == NONE)
    );
    assert_eq!(shell.fetched("t", 0), 42);
    // A failed write: the error, and nothing applied.
    let (token, _) = shell.commit("", -1, &[("t", 0, 43)]);
    let write = shell.pending.pop().unwrap();
    shell.c.records_failed(write.token, NOT_COORDINATOR, 0);
    shell.drain();
    assert!(
        matches!(shell.released.remove(&token), Some(Response::OffsetCommit(r)) if r.partitions[0].2 == NOT_COORDINATOR)
    );
    assert_eq!(shell.fetched("t", 0), 42);
}

const RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;

#[test]
fn offsets_expire_by_retention() {
    // An offsets-only group: each offset by its commit time; the group goes with the last.
    let mut shell = Shell::new(config());
    shell.at(0);
    shell.commit_errors("", -1, &[("t", 0, 1)]);
    shell.at(1_000);
    shell.commit_errors("", -1, &[("t", 1, 1)]);
    assert_eq!(shell.c.expire(RETENTION_MS - 1), Expired::default());
    let expired = shell.c.expire(RETENTION_MS);
    assert_eq!(expired.offsets, [(G.to_string(), "t".to_string(), 0)]);
    assert!(expired.groups.is_empty());
    let expired = shell.c.expire(RETENTION_MS + 1_000);
    assert_eq!(expired.groups, [G]);
    assert_eq!(shell.state(), None);
    let tombstones = shell.c.take_writes();
    assert_eq!(tombstones.len(), 2);
    assert!(matches!(
        tombstones[1].records[1],
        GroupRecord::GroupTombstone { .. }
    ));

    // A consumer group: from the time it became Empty, whatever the commit times.
    let mut shell = Shell::new(config());
    let (members, generation) = shell.stable(&["a"]);
    shell.commit_errors(&members[0], generation, &[("t", 0, 5), ("u", 0, 5)]);
    // Stable: only offsets of topics nobody subscribes to (u) expire, by commit time.
    let expired = shell.c.expire(RETENTION_MS);
    assert_eq!(expired.offsets, [(G.to_string(), "u".to_string(), 0)]);
    shell.at(RETENTION_MS + 10);
    let leave = LeaveGroupRequest {
        group_id: G.into(),
        members: vec![LeavingMember {
            member_id: members[0].clone(),
            group_instance_id: None,
        }],
    };
    shell.c.leave_group(&leave, shell.now_ms);
    shell.drain();
    assert_eq!(shell.state(), Some(GroupState::Empty));
    assert!(
        shell.c.expire(2 * RETENTION_MS + 9).offsets.is_empty(),
        "Empty for less than the retention"
    );
    assert_eq!(shell.c.expire(2 * RETENTION_MS + 10).offsets.len(), 1);
}

#[test]
fn offset_delete_refuses_subscribed_topics() {
    let mut shell = Shell::new(config());
    let (members, generation) = shell.stable(&["a"]);
    shell.commit_errors(&members[0], generation, &[("t", 0, 5), ("u", 0, 5)]);
    let asked = [("t".to_string(), 0), ("u".to_string(), 0)];
    assert!(
        shell.c.offset_delete(1, G, &asked).is_none(),
        "tombstones written"
    );
    shell.drain();
    match shell.released.remove(&1) {
        Some(Response::OffsetDelete(r)) => {
            let errors: Vec<i16> = r.partitions.iter().map(|(_, _, e)| *e).collect();
            assert_eq!(errors, [GROUP_SUBSCRIBED_TO_TOPIC, NONE]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!((shell.fetched("t", 0), shell.fetched("u", 0)), (5, -1));
    let unknown = shell.c.offset_delete(2, "nope", &asked).unwrap();
    assert_eq!(unknown.error, GROUP_ID_NOT_FOUND);
}

#[test]
fn delete_groups_only_empty_ones() {
    let mut shell = Shell::new(config());
    shell.auto_commit = false;
    shell.stable_without_commit_check();
    shell.commit_errors("", -1, &[("t", 0, 1)]);
    let simple = OffsetCommitRequest {
        group_id: "simple".into(),
        generation_id: -1,
        member_id: String::new(),
        group_instance_id: None,
        api_version: 8,
        partitions: vec![CommitPartition {
            topic: "t".into(),
            partition: 0,
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
        }],
    };
    shell.c.offset_commit(50, &simple, 0);
    shell.drain();
    shell.commit_pending();
    let ids = ["simple".to_string(), G.to_string(), "nope".to_string()];
    assert!(shell.c.delete_groups(60, &ids, 0).is_none());
    assert_eq!(shell.c.group_state("simple"), Some(GroupState::Dead));
    // A Dead group serves nothing.
    let mut join = join_request("", "c", None);
    join.group_id = "simple".into();
    let (_, refused) = shell.join(&join);
    assert_eq!(refused.unwrap().error, COORDINATOR_NOT_AVAILABLE);
    shell.commit_pending();
    match shell.released.remove(&60) {
        Some(Response::DeleteGroups(r)) => {
            let errors: Vec<i16> = r.groups.iter().map(|(_, e)| *e).collect();
            assert_eq!(errors, [NONE, NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(shell.c.group_state("simple"), None);
}

impl Shell {
    /// One member, Stable, committing as it goes; then manual commits again.
    fn stable_without_commit_check(&mut self) {
        let auto = self.auto_commit;
        self.auto_commit = true;
        self.stable(&["a"]);
        self.auto_commit = auto;
    }
}

#[test]
fn list_and_describe() {
    let mut shell = Shell::new(config());
    let (members, _) = shell.stable(&["a", "b"]);
    shell.commit_errors("", -1, &[]);
    let stable = shell.c.list_groups(&["stable".to_string()]);
    assert_eq!(stable.len(), 1);
    assert!(shell.c.list_groups(&["Empty".to_string()]).is_empty());
    assert!(shell.c.list_groups(&["NoSuchState".to_string()]).is_empty());
    let described = shell
        .c
        .describe_groups(&[G.to_string(), "nope".to_string()]);
    assert_eq!(
        (described[0].state, described[0].protocol.as_str()),
        (GroupState::Stable, "range")
    );
    let member = &described[0].members[0];
    assert_eq!(
        (member.member_id.as_str(), member.client_id.as_str()),
        (members[0].as_str(), "a")
    );
    assert_eq!(
        (member.assignment.as_slice(), member.client_host.as_str()),
        (&b"a"[..], "/10.0.0.1")
    );
    assert_eq!(member.metadata, consumer_subscription(&["t"]));
    assert_eq!(
        (described[1].state, described[1].error),
        (GroupState::Dead, NONE)
    );
    // Outside Stable: no protocol, metadata or assignment.
    shell.join(&join_request(&members[0], "a", None));
    let described = shell.c.describe_groups(&[G.to_string()]);
    assert_eq!(described[0].protocol, "");
    assert!(described[0].members[0].assignment.is_empty());
}

#[test]
fn protocol_selection() {
    // Each case: the members' protocols in preference order, the protocol selected.
    let cases: &[(&[&[&str]], &str)] = &[
        (&[&["range"]], "range"),
        (
            &[&["rr", "range"], &["range", "rr"], &["range", "rr"]],
            "range",
        ),
        (
            &[&["rr", "range"], &["rr", "range"], &["range", "rr"]],
            "rr",
        ),
        // Only "range" is supported by everyone, whatever the preferences.
        (
            &[&["sticky", "range"], &["sticky", "range"], &["range"]],
            "range",
        ),
        // A tie: the name that sorts first.
        (&[&["rr", "range"], &["range", "rr"]], "range"),
    ];
    for (members, expect) in cases {
        let mut group = membership::Group::new(G, 0);
        for (index, names) in members.iter().enumerate() {
            group.add_member(membership::Member {
                member_id: format!("m{index}"),
                group_instance_id: None,
                client_id: String::new(),
                client_host: String::new(),
                session_timeout_ms: 1,
                rebalance_timeout_ms: 1,
                protocols: protocols(names, &[]),
                assignment: None,
                join_parked: None,
                sync_parked: None,
                session_deadline_ms: 0,
                is_new: false,
            });
        }
        assert_eq!(
            group.select_protocol().as_deref(),
            Some(*expect),
            "{members:?}"
        );
    }
}

#[test]
fn records_round_trip_and_garbage_is_refused() {
    let records = vec![
        GroupRecord::OffsetCommit {
            group: G.into(),
            topic: "t".into(),
            partition: 3,
            offset: 9,
            leader_epoch: 2,
            metadata: "m".into(),
            commit_timestamp_ms: 5,
        },
        GroupRecord::OffsetTombstone {
            group: G.into(),
            topic: "t".into(),
            partition: 3,
        },
        GroupRecord::GroupMetadata {
            group: G.into(),
            protocol_type: Some("consumer".into()),
            protocol: Some("range".into()),
            generation: 4,
            leader: Some("a".into()),
            state_timestamp_ms: 77,
            members: vec![MemberRecord {
                member_id: "a".into(),
                group_instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "h".into(),
                session_timeout_ms: 1,
                rebalance_timeout_ms: 2,
                subscription: vec![0, 255],
                assignment: vec![7],
            }],
        },
        GroupRecord::GroupTombstone { group: G.into() },
    ];
    for record in &records {
        assert_eq!(GroupRecord::decode(&record.encode()).as_ref(), Ok(record));
    }
    assert_ne!(records[0].key(), records[2].key());
    assert_eq!(
        records[0].key(),
        records[1].key(),
        "an offset and its tombstone compact together"
    );
    assert_eq!(records[2].key(), records[3].key());
    assert_eq!(GroupRecord::decode(&[]), Err(DecodeError::Empty));
    assert_eq!(
        GroupRecord::decode(&[9, b'{']),
        Err(DecodeError::UnknownFormat(9))
    );
    assert!(matches!(
        GroupRecord::decode(&[1, b'{']),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn replay_reproduces_the_state() {
    let mut shell = Shell::new(config());
    let (_, _) = static_group(&mut shell);
    shell.commit_errors("a-1", 2, &[("t", 0, 11), ("t", 1, 12)]);
    let mut restart = join_request("", "b", Some("ib"));
    restart.member_id_suffix = "2".to_string();
    shell.join(&restart);
    let mut loaded = GroupCoordinator::new(config());
    for record in &shell.log {
        let bytes = record.encode();
        assert!(loaded.replay(&GroupRecord::decode(&bytes).unwrap(), 100));
    }
    let ids = [G.to_string()];
    assert_eq!(loaded.describe_groups(&ids), shell.c.describe_groups(&ids));
    assert_eq!(loaded.offset_fetch(G, None), shell.c.offset_fetch(G, None));
    assert_eq!(
        (loaded.group_state(G), loaded.generation(G)),
        (Some(GroupState::Stable), Some(2))
    );
    // The loaded members' sessions start at the load.
    assert_eq!(loaded.next_deadline(), Some(100 + i64::from(SESSION_MS)));
    let heartbeat = HeartbeatRequest {
        group_id: G.into(),
        member_id: "b-2".into(),
        group_instance_id: Some("ib".into()),
        generation_id: 2,
    };
    assert_eq!(loaded.heartbeat(&heartbeat, 200), NONE);
    // A tombstone removes it; a record no group fits is refused.
    assert!(loaded.replay(&GroupRecord::GroupTombstone { group: G.into() }, 300));
    assert_eq!(loaded.group_state(G), None);
    let bad = GroupRecord::GroupMetadata {
        group: G.into(),
        protocol_type: None,
        protocol: None,
        generation: -3,
        leader: None,
        state_timestamp_ms: 0,
        members: vec![],
    };
    assert!(!loaded.replay(&bad, 0));
}

#[test]
fn a_loading_groups_timers_wait_for_the_load_and_restart_with_it() {
    let mut shell = Shell::new(config());
    let (members, generation) = shell.stable(&["a", "b"]);
    assert_eq!(
        shell.commit_errors(&members[0], generation, &[("t", 0, 5)]),
        [NONE]
    );
    // Replayed slowly: the records at 100, the load done at 100 + 3 sessions.
    let mut loading = GroupCoordinator::new(config());
    for record in &shell.log {
        assert!(loading.replay(record, 100));
    }
    let not_served = |_: &str| false;
    let late = 100 + 3 * i64::from(SESSION_MS);
    assert_eq!(loading.next_deadline_where(not_served), None);
    loading.tick_where(late, not_served);
    let expired = loading.expire_where(i64::MAX / 2, not_served);
    assert!(expired.offsets.is_empty() && expired.groups.is_empty());
    assert!(loading.take_writes().is_empty(), "a loading group wrote");
    assert_eq!(loading.group_state(G), Some(GroupState::Stable));
    // Served from the end of the load: the sessions start there, not at the replay.
    loading.loaded(&[G.to_string()], late);
    assert_eq!(loading.next_deadline(), Some(late + i64::from(SESSION_MS)));
    loading.tick(late + 1);
    assert_eq!(loading.group_state(G), Some(GroupState::Stable));
    // Without the load's restart, the same tick would have expired both members.
    let mut unrestarted = GroupCoordinator::new(config());
    for record in &shell.log {
        assert!(unrestarted.replay(record, 100));
    }
    unrestarted.tick(late + 1);
    assert_ne!(unrestarted.group_state(G), Some(GroupState::Stable));
}

#[test]
fn unload_answers_parked_requests_with_not_coordinator() {
    let mut shell = Shell::new(config());
    let (members, _) = shell.stable(&["a", "b"]);
    let (token, _) = shell.join(&join_request(&members[0], "a", None));
    shell.c.unload(&[G.to_string()]);
    shell.drain();
    assert_eq!(shell.joined(token).error, NOT_COORDINATOR);
    assert_eq!(shell.state(), None);
}

#[test]
fn members_that_never_sync_are_removed_at_the_rebalance_timeout() {
    let mut shell = Shell::new(config());
    let (a, _) = shell.join_new("a");
    shell.join_new("b");
    let (token, _) = shell.join(&join_request(&a, "a", None));
    let generation = shell.joined(token).generation_id;
    assert_eq!(shell.state(), Some(GroupState::CompletingRebalance));
    // Both keep heartbeating; nobody sends SyncGroup.
    for now_ms in (5_000..i64::from(REBALANCE_MS)).step_by(5_000) {
        shell.at(now_ms);
        assert_eq!(shell.heartbeat(&a, None, generation), NONE);
        assert_eq!(shell.heartbeat("b-x", None, generation), NONE);
    }
    shell.tick(i64::from(REBALANCE_MS));
    assert_eq!(
        shell.state(),
        Some(GroupState::Empty),
        "both removed; the group is empty"
    );
    assert_eq!(shell.c.generation(G), Some(generation + 1));
}

#[test]
fn consumer_subscriptions_parse_and_garbage_does_not() {
    assert_eq!(
        consumer_subscription_topics(&consumer_subscription(&["a", "bc"])),
        Some(vec!["a".to_string(), "bc".to_string()])
    );
    for garbage in [
        &[][..],
        &[0],
        &[0, 0, 0, 0, 0, 1],
        &[0, 0, 127, 255, 255, 255],
        &[0, 0, 0, 0, 0, 1, 0, 5, b'a'],
    ] {
        assert_eq!(consumer_subscription_topics(garbage), None, "{garbage:?}");
    }
}

/// One random input for the property test.
#[derive(Debug, Clone)]
enum Op {
    /// A client (0..4) joins: new (two steps) when it has no member id, else rejoins.
    Join(usize, bool),
    /// A client syncs (the leader assigns everyone).
    Sync(usize),
    Heartbeat(usize),
    Leave(usize),
    Commit(usize),
    /// Time passes.
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..4, any::<bool>()).prop_map(|(c, s)| Op::Join(c, s)),
        (0usize..4).prop_map(Op::Sync),
        (0usize..4).prop_map(Op::Heartbeat),
        (0usize..4).prop_map(Op::Leave),
        (0usize..4).prop_map(Op::Commit),
        (0i64..12_000).prop_map(Op::Advance),
    ]
}

/// Drives random sequences; the coordinator asserts its invariants after every input.
/// Here: a member told it is in a generation gets its assignment once the group is
/// Stable in that generation, and every request is answered at most once.
fn run_ops(ops: &[Op], initial_delay_ms: i32) {
    let mut shell = Shell::new(GroupConfig {
        initial_rebalance_delay_ms: initial_delay_ms,
        ..GroupConfig::default()
    });
    let clients = ["a", "b", "c", "d"];
    let mut ids: [Option<String>; 4] = Default::default();
    let mut generation = [0i32; 4];
    let mut joins: BTreeMap<RequestToken, usize> = BTreeMap::new();
    let mut listed: [Vec<String>; 4] = Default::default();
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Join(c, is_static) => {
                let instance = is_static.then(|| format!("i{c}"));
                let mut request = join_request(
                    ids[*c].as_deref().unwrap_or(""),
                    clients[*c],
                    instance.as_deref(),
                );
                request.member_id_suffix = step.to_string();
                let (token, response) = shell.join(&request);
                joins.insert(token, *c);
                if let Some(r) = response {
                    if r.error == MEMBER_ID_REQUIRED || r.error == NONE {
                        ids[*c] = Some(r.member_id.clone());
                    }
                    if r.error == NONE {
                        generation[*c] = r.generation_id;
                        listed[*c] = r.members.iter().map(|m| m.member_id.clone()).collect();
                    }
                }
            }
            Op::Sync(c) => {
                if let Some(id) = ids[*c].clone() {
                    // A leader assigns to the members its JoinGroup response listed.
                    let everyone = listed[*c].clone();
                    let assignments: Vec<(&str, &str)> =
                        everyone.iter().map(|m| (m.as_str(), "p")).collect();
                    shell.sync(&id, generation[*c], &assignments);
                }
            }
            Op::Heartbeat(c) => {
                if let Some(id) = ids[*c].clone() {
                    shell.heartbeat(&id, None, generation[*c]);
                }
            }
            Op::Leave(c) => {
                if let Some(id) = ids[*c].take() {
                    let leave = LeaveGroupRequest {
                        group_id: G.into(),
                        members: vec![LeavingMember {
                            member_id: id,
                            group_instance_id: None,
                        }],
                    };
                    shell.c.leave_group(&leave, shell.now_ms);
                    shell.drain();
                }
            }
            Op::Commit(c) => {
                if let Some(id) = ids[*c].clone() {
                    shell.commit(&id, generation[*c], &[("t", *c as i32, step as i64)]);
                }
            }
            Op::Advance(ms) => {
                let now_ms = shell.now_ms + ms;
                shell.tick(now_ms);
            }
        }
        // Learn generations from released join responses.
        let released = std::mem::take(&mut shell.released);
        for (token, response) in &released {
            if let (Response::JoinGroup(r), Some(&c)) = (response, joins.get(token)) {
                if r.error == NONE {
                    ids[c] = Some(r.member_id.clone());
                    generation[c] = r.generation_id;
                    listed[c] = r.members.iter().map(|m| m.member_id.clone()).collect();
                }
            }
        }
        if shell.state() == Some(GroupState::Stable) {
            let described = &shell.c.describe_groups(&[G.to_string()])[0];
            for member in &described.members {
                assert_eq!(
                    member.assignment, b"p",
                    "{member:?} has the leader's assignment"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn random_membership_keeps_the_invariants(ops in proptest::collection::vec(op(), 1..80), delayed in any::<bool>()) {
        run_ops(&ops, if delayed { 3_000 } else { 0 });
    }
}

#[test]
fn a_static_member_that_does_not_rejoin_stays_through_the_rebalance_timeout() {
    let mut shell = Shell::new(config());
    let (a, b) = static_group(&mut shell);
    let (dynamic, _) = shell.join_new("d");
    shell.join(&join_request(&a, "a", Some("ia")));
    // b heartbeats but does not rejoin; d and a did.
    for now_ms in (5_000..30_000).step_by(5_000) {
        shell.tick(now_ms);
        assert_eq!(shell.heartbeat(&b, Some("ib"), 2), REBALANCE_IN_PROGRESS);
    }
    shell.tick(i64::from(REBALANCE_MS));
    assert_eq!(shell.state(), Some(GroupState::CompletingRebalance));
    let members: Vec<String> = shell.c.describe_groups(&[G.to_string()])[0]
        .members
        .iter()
        .map(|m| m.member_id.clone())
        .collect();
    assert_eq!(members, [a, b, dynamic], "static members are kept");
}

#[test]
fn an_assignment_committed_after_the_group_moved_on_changes_nothing() {
    let mut shell = Shell::new(config());
    shell.auto_commit = false;
    let (a, _) = shell.join_new("a");
    let (b, _) = shell.join_new("b");
    let (token, _) = shell.join(&join_request(&a, "a", None));
    let generation = shell.joined(token).generation_id;
    let (b_sync, _) = shell.sync(&b, generation, &[]);
    shell.sync(&a, generation, &[(&a, "A"), (&b, "B")]);
    // b leaves before the assignment is durable: a rebalance; b's sync is answered.
    let leave = LeaveGroupRequest {
        group_id: G.into(),
        members: vec![LeavingMember {
            member_id: b,
            group_instance_id: None,
        }],
    };
    shell.c.leave_group(&leave, 0);
    shell.drain();
    assert_eq!(shell.synced(b_sync).error, UNKNOWN_MEMBER_ID);
    shell.commit_pending();
    assert_eq!(
        shell.state(),
        Some(GroupState::PreparingRebalance),
        "not Stable"
    );
    assert_eq!(
        shell.c.generation(G),
        Some(generation),
        "a has not rejoined yet"
    );
}
