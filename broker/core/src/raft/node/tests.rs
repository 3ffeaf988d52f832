//! Single transitions of one node, data driven: each test is a starting state, a list of
//! inputs, and the rendered outputs of every input in the shell's drain order (persist,
//! then send, then commit) followed by the node's state.

use super::*;
use std::fmt::Write as _;

/// An input to the node under test.
enum Step {
    Tick(u64),
    Recv(u64, NodeId, Message),
    Propose(&'static str),
}
use Step::{Propose, Recv, Tick};

/// Node `id` of voters `1..=voters` with this term, vote and log (one entry per term given;
/// the first entry of each term is a leader change, the rest commands `x`).
fn node(id: NodeId, voters: i32, term: u64, voted_for: Option<NodeId>, log_terms: &[u64]) -> Raft {
    let mut config = Config::new(id, (1..=voters).collect());
    config.election_timeout_ms = 1_000;
    config.election_jitter_ms = 100;
    config.heartbeat_interval_ms = 100;
    config.append_entries_max = 2;
    config.uncommitted_entries_max = 3;
    let persisted = PersistentState {
        hard_state: HardState { term, voted_for },
        log: entries(1, log_terms),
    };
    Raft::new(config, persisted, 0, 0).expect("valid test state")
}

/// Entries from `index_first` with these terms.
fn entries(index_first: u64, terms: &[u64]) -> Vec<Entry> {
    let mut previous_term = 0;
    let mut result = Vec::new();
    for (offset, &term) in terms.iter().enumerate() {
        let (kind, payload) = if term != previous_term && index_first == 1 {
            (EntryKind::LeaderChange, Vec::new())
        } else {
            (EntryKind::Command, b"x".to_vec())
        };
        result.push(Entry {
            index: index_first + offset as u64,
            term,
            kind,
            payload,
        });
        previous_term = term;
    }
    result
}

fn check(mut raft: Raft, steps: Vec<Step>, expect: &str) {
    let actual = run(&mut raft, steps);
    let expect: Vec<&str> = expect
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let actual_lines: Vec<&str> = actual.lines().collect();
    assert!(
        expect == actual_lines,
        "\n--- expected\n{}\n--- actual\n{}",
        expect.join("\n"),
        actual
    );
}

fn run(raft: &mut Raft, steps: Vec<Step>) -> String {
    let mut out = String::new();
    let id = raft.id();
    for step in steps {
        match step {
            Tick(now_ms) => {
                writeln!(out, "> tick {now_ms}").unwrap();
                raft.tick(now_ms, 0);
            }
            Recv(now_ms, from, message) => {
                writeln!(out, "> {now_ms} {from}->{id} {}", render_message(&message)).unwrap();
                raft.handle(
                    Envelope {
                        from,
                        to: id,
                        message,
                    },
                    now_ms,
                    0,
                );
            }
            Propose(payload) => {
                let result = raft.propose(payload.as_bytes().to_vec());
                writeln!(out, "> propose {payload}: {result:?}").unwrap();
            }
        }
        while let Some(request) = raft.poll_persist() {
            if let Some(hard_state) = request.hard_state {
                let vote = hard_state
                    .voted_for
                    .map_or("none".to_string(), |v| v.to_string());
                writeln!(out, "persist term={} vote={vote}", hard_state.term).unwrap();
            }
            if let Some(write) = request.log_write {
                let entries = render_entries(&write.entries);
                writeln!(out, "persist log after={} [{entries}]", write.after_index).unwrap();
            }
        }
        for envelope in raft.poll_messages() {
            let message = render_message(&envelope.message);
            writeln!(out, "send {}->{} {message}", envelope.from, envelope.to).unwrap();
        }
        let committed = raft.poll_committed();
        if !committed.is_empty() {
            writeln!(out, "commit [{}]", render_entries(&committed)).unwrap();
        }
        let leader = raft.leader().map_or("none".to_string(), |l| l.to_string());
        writeln!(
            out,
            "state {:?} term={} leader={leader} commit={} last={}@{}",
            raft.role(),
            raft.term(),
            raft.commit_index(),
            raft.last_index(),
            raft.last_term()
        )
        .unwrap();
    }
    out
}

fn render_entries(entries: &[Entry]) -> String {
    let rendered: Vec<String> = entries
        .iter()
        .map(|e| match e.kind {
            EntryKind::LeaderChange => format!("{}@{}:lc", e.index, e.term),
            EntryKind::Command => {
                format!(
                    "{}@{}:{}",
                    e.index,
                    e.term,
                    String::from_utf8_lossy(&e.payload)
                )
            }
        })
        .collect();
    rendered.join(" ")
}

fn render_message(message: &Message) -> String {
    match message {
        Message::Vote {
            term,
            last_index,
            last_term,
            pre_vote,
        } => {
            let pre = if *pre_vote { " pre" } else { "" };
            format!("Vote term={term} last={last_index}@{last_term}{pre}")
        }
        Message::VoteResponse {
            term,
            granted,
            pre_vote,
        } => {
            let verdict = if *granted { "granted" } else { "refused" };
            let pre = if *pre_vote { " pre" } else { "" };
            format!("VoteResponse term={term} {verdict}{pre}")
        }
        Message::BeginQuorumEpoch { term } => format!("BeginQuorumEpoch term={term}"),
        Message::BeginQuorumEpochResponse { term } => {
            format!("BeginQuorumEpochResponse term={term}")
        }
        Message::Fetch {
            term,
            last_index,
            last_term,
            commit_index,
        } => format!("Fetch term={term} last={last_index}@{last_term} commit={commit_index}"),
        Message::FetchResponse { term, result } => {
            let result = match result {
                FetchResult::Entries {
                    prev_index,
                    prev_term,
                    entries,
                    commit_index,
                } => format!(
                    "Entries prev={prev_index}@{prev_term} [{}] commit={commit_index}",
                    render_entries(entries)
                ),
                FetchResult::Diverging {
                    prev_index,
                    prev_term,
                    end_index,
                    end_term,
                } => format!("Diverging prev={prev_index}@{prev_term} end={end_index}@{end_term}"),
                FetchResult::NotLeader { leader_hint } => format!("NotLeader hint={leader_hint:?}"),
            };
            format!("FetchResponse term={term} {result}")
        }
    }
}

// Message constructors, to keep steps short.
fn pre_vote(term: u64, last_index: u64, last_term: u64) -> Message {
    Message::Vote {
        term,
        last_index,
        last_term,
        pre_vote: true,
    }
}
fn vote(term: u64, last_index: u64, last_term: u64) -> Message {
    Message::Vote {
        term,
        last_index,
        last_term,
        pre_vote: false,
    }
}
fn vote_response(term: u64, granted: bool, pre_vote: bool) -> Message {
    Message::VoteResponse {
        term,
        granted,
        pre_vote,
    }
}
fn begin(term: u64) -> Message {
    Message::BeginQuorumEpoch { term }
}
fn fetch(term: u64, last_index: u64, last_term: u64, commit_index: u64) -> Message {
    Message::Fetch {
        term,
        last_index,
        last_term,
        commit_index,
    }
}
fn response(term: u64, result: FetchResult) -> Message {
    Message::FetchResponse { term, result }
}
fn entries_result(prev: (u64, u64), entries: Vec<Entry>, commit_index: u64) -> FetchResult {
    FetchResult::Entries {
        prev_index: prev.0,
        prev_term: prev.1,
        entries,
        commit_index,
    }
}

/// Commands `x` with these terms from `index_first`.
fn commands(index_first: u64, terms: &[u64]) -> Vec<Entry> {
    entries(index_first, terms)
}

/// Node 1 as the leader of term 2 of three voters, after its election (log: 1@1, 2@2 noop),
/// outputs drained.
fn leader_of_term_2() -> Raft {
    let mut raft = node(1, 3, 1, None, &[1]);
    raft.tick(1_000, 0);
    raft.handle(envelope(2, 1, vote_response(2, true, true)), 1_001, 0);
    raft.handle(envelope(2, 1, vote_response(2, true, false)), 1_002, 0);
    assert_eq!(raft.role(), Role::Leader);
    drain(&mut raft);
    raft
}

fn envelope(from: NodeId, to: NodeId, message: Message) -> Envelope {
    Envelope { from, to, message }
}

fn drain(raft: &mut Raft) {
    while raft.poll_persist().is_some() {}
    raft.poll_messages();
    raft.poll_committed();
}

#[test]
fn election_pre_vote_then_vote_then_leader() {
    check(
        node(1, 3, 1, None, &[1]),
        vec![
            Tick(999),
            Tick(1_000),
            Recv(1_001, 2, vote_response(2, true, true)),
            Recv(1_002, 3, vote_response(2, true, true)), // Late: already a candidate.
            Recv(1_003, 3, vote_response(2, true, false)),
        ],
        "
        > tick 999
        state Follower term=1 leader=none commit=0 last=1@1
        > tick 1000
        send 1->2 Vote term=2 last=1@1 pre
        send 1->3 Vote term=2 last=1@1 pre
        state PreCandidate term=1 leader=none commit=0 last=1@1
        > 1001 2->1 VoteResponse term=2 granted pre
        persist term=2 vote=1
        send 1->2 Vote term=2 last=1@1
        send 1->3 Vote term=2 last=1@1
        state Candidate term=2 leader=none commit=0 last=1@1
        > 1002 3->1 VoteResponse term=2 granted pre
        state Candidate term=2 leader=none commit=0 last=1@1
        > 1003 3->1 VoteResponse term=2 granted
        persist log after=1 [2@2:lc]
        send 1->2 BeginQuorumEpoch term=2
        send 1->3 BeginQuorumEpoch term=2
        state Leader term=2 leader=1 commit=0 last=2@2
        ",
    );
}

#[test]
fn election_lost_to_higher_term_and_split_vote_retries() {
    check(
        node(1, 3, 1, None, &[1]),
        vec![
            Tick(1_000),
            Recv(1_001, 2, vote_response(2, true, true)),
            Recv(1_002, 2, vote_response(2, false, false)), // 2 voted for someone else.
            Tick(2_001),                                    // Election timeout: pre-vote again.
            Recv(2_002, 3, vote_response(5, false, true)),  // A higher term: step down.
        ],
        "
        > tick 1000
        send 1->2 Vote term=2 last=1@1 pre
        send 1->3 Vote term=2 last=1@1 pre
        state PreCandidate term=1 leader=none commit=0 last=1@1
        > 1001 2->1 VoteResponse term=2 granted pre
        persist term=2 vote=1
        send 1->2 Vote term=2 last=1@1
        send 1->3 Vote term=2 last=1@1
        state Candidate term=2 leader=none commit=0 last=1@1
        > 1002 2->1 VoteResponse term=2 refused
        state Candidate term=2 leader=none commit=0 last=1@1
        > tick 2001
        send 1->2 Vote term=3 last=1@1 pre
        send 1->3 Vote term=3 last=1@1 pre
        state PreCandidate term=2 leader=none commit=0 last=1@1
        > 2002 3->1 VoteResponse term=5 refused pre
        persist term=5 vote=none
        state Follower term=5 leader=none commit=0 last=1@1
        ",
    );
}

#[test]
fn vote_granted_persisted_before_response_and_only_once_per_term() {
    check(
        node(1, 3, 1, None, &[1]),
        vec![
            Recv(10, 2, vote(2, 1, 1)),
            Recv(11, 2, vote(2, 1, 1)), // Duplicate: same answer, nothing new to persist.
            Recv(12, 3, vote(2, 5, 1)), // Already voted for 2 in term 2.
            Tick(1_010),                // Each grant resets the election timer: the ...
            Tick(1_011),                // ... last, at 11, to 1011.
        ],
        "
        > 10 2->1 Vote term=2 last=1@1
        persist term=2 vote=2
        send 1->2 VoteResponse term=2 granted
        state Follower term=2 leader=none commit=0 last=1@1
        > 11 2->1 Vote term=2 last=1@1
        send 1->2 VoteResponse term=2 granted
        state Follower term=2 leader=none commit=0 last=1@1
        > 12 3->1 Vote term=2 last=5@1
        send 1->3 VoteResponse term=2 refused
        state Follower term=2 leader=none commit=0 last=1@1
        > tick 1010
        state Follower term=2 leader=none commit=0 last=1@1
        > tick 1011
        send 1->2 Vote term=3 last=1@1 pre
        send 1->3 Vote term=3 last=1@1 pre
        state PreCandidate term=2 leader=none commit=0 last=1@1
        ",
    );
}

#[test]
fn vote_refused_for_stale_log_or_stale_term() {
    check(
        node(1, 3, 3, None, &[1, 3, 3]),
        vec![
            Recv(10, 2, vote(4, 9, 2)), // Lower last term, longer log: refused, term adopted.
            Recv(11, 3, vote(4, 2, 3)), // Same last term, shorter log: refused.
            Recv(12, 2, vote(3, 9, 9)), // Stale term: refused with our term.
            Recv(13, 3, vote(5, 3, 3)), // Same log: granted.
        ],
        "
        > 10 2->1 Vote term=4 last=9@2
        persist term=4 vote=none
        send 1->2 VoteResponse term=4 refused
        state Follower term=4 leader=none commit=0 last=3@3
        > 11 3->1 Vote term=4 last=2@3
        send 1->3 VoteResponse term=4 refused
        state Follower term=4 leader=none commit=0 last=3@3
        > 12 2->1 Vote term=3 last=9@9
        send 1->2 VoteResponse term=4 refused
        state Follower term=4 leader=none commit=0 last=3@3
        > 13 3->1 Vote term=5 last=3@3
        persist term=5 vote=3
        send 1->3 VoteResponse term=5 granted
        state Follower term=5 leader=none commit=0 last=3@3
        ",
    );
}

#[test]
fn pre_vote_changes_nothing_and_is_refused_while_leader_is_live() {
    check(
        node(1, 3, 2, Some(2), &[1, 2]),
        vec![
            Recv(10, 3, pre_vote(3, 2, 2)), // No leader known: would vote; nothing persisted.
            Recv(20, 2, begin(2)),          // Leader 2 announces itself: fetch from it.
            Recv(30, 3, pre_vote(3, 2, 2)), // Leader live: refused.
            Tick(1_019),
            Recv(1_100, 3, pre_vote(3, 2, 2)), // Silent for an election timeout: granted.
        ],
        "
        > 10 3->1 Vote term=3 last=2@2 pre
        send 1->3 VoteResponse term=3 granted pre
        state Follower term=2 leader=none commit=0 last=2@2
        > 20 2->1 BeginQuorumEpoch term=2
        send 1->2 Fetch term=2 last=2@2 commit=0
        state Follower term=2 leader=2 commit=0 last=2@2
        > 30 3->1 Vote term=3 last=2@2 pre
        send 1->3 VoteResponse term=2 refused pre
        state Follower term=2 leader=2 commit=0 last=2@2
        > tick 1019
        send 1->2 Fetch term=2 last=2@2 commit=0
        state Follower term=2 leader=2 commit=0 last=2@2
        > 1100 3->1 Vote term=3 last=2@2 pre
        send 1->3 VoteResponse term=3 granted pre
        state Follower term=2 leader=2 commit=0 last=2@2
        ",
    );
}

#[test]
fn leader_steps_down_on_higher_term_vote() {
    check(
        leader_of_term_2(),
        vec![Recv(1_100, 2, vote(3, 2, 2)), Propose("a")],
        "
        > 1100 2->1 Vote term=3 last=2@2
        persist term=3 vote=2
        send 1->2 VoteResponse term=3 granted
        state Follower term=3 leader=none commit=0 last=2@2
        > propose a: Err(NotLeader { leader_hint: None })
        state Follower term=3 leader=none commit=0 last=2@2
        ",
    );
}

#[test]
fn heartbeat_is_a_parked_fetch_answered_after_one_interval() {
    // Leader side: an up-to-date fetch is parked, answered empty at its deadline.
    check(
        leader_of_term_2(),
        vec![
            Recv(1_010, 2, fetch(2, 2, 2, 0)), // Acknowledges 2@2: committed, answered at once.
            Recv(1_020, 2, fetch(2, 2, 2, 2)), // Nothing new: parked until 1120.
            Tick(1_119),
            Tick(1_120),
        ],
        "
        > 1010 2->1 Fetch term=2 last=2@2 commit=0
        send 1->2 FetchResponse term=2 Entries prev=2@2 [] commit=2
        commit [1@1:lc 2@2:lc]
        state Leader term=2 leader=1 commit=2 last=2@2
        > 1020 2->1 Fetch term=2 last=2@2 commit=2
        state Leader term=2 leader=1 commit=2 last=2@2
        > tick 1119
        state Leader term=2 leader=1 commit=2 last=2@2
        > tick 1120
        send 1->2 FetchResponse term=2 Entries prev=2@2 [] commit=2
        state Leader term=2 leader=1 commit=2 last=2@2
        ",
    );
}

#[test]
fn leader_announces_itself_again_to_silent_voters_and_resigns_without_quorum() {
    check(
        leader_of_term_2(),
        vec![
            Tick(1_202), // 200 ms since BeginQuorumEpoch, no fetch yet: announce again.
            Recv(1_300, 2, fetch(2, 2, 2, 0)),
            Tick(2_002), // Quorum check: 2 fetched within the election timeout; 3 announced.
            Tick(3_002), // Quorum check: nobody fetched for 1000 ms: resign.
        ],
        "
        > tick 1202
        send 1->2 BeginQuorumEpoch term=2
        send 1->3 BeginQuorumEpoch term=2
        state Leader term=2 leader=1 commit=0 last=2@2
        > 1300 2->1 Fetch term=2 last=2@2 commit=0
        send 1->2 FetchResponse term=2 Entries prev=2@2 [] commit=2
        commit [1@1:lc 2@2:lc]
        state Leader term=2 leader=1 commit=2 last=2@2
        > tick 2002
        send 1->2 BeginQuorumEpoch term=2
        send 1->3 BeginQuorumEpoch term=2
        state Leader term=2 leader=1 commit=2 last=2@2
        > tick 3002
        state Follower term=2 leader=none commit=2 last=2@2
        ",
    );
}

#[test]
fn follower_fetches_appends_commits_and_retries_lost_fetches() {
    check(
        node(1, 3, 1, None, &[1]),
        vec![
            Recv(10, 2, begin(2)),
            Recv(
                20,
                2,
                response(2, entries_result((1, 1), commands(2, &[2, 2]), 3)),
            ),
            Recv(30, 2, response(2, entries_result((3, 2), vec![], 3))),
            Tick(229), // No answer to the fetch of 30 ...
            Tick(230), // ... for 2 heartbeats: send it again.
        ],
        "
        > 10 2->1 BeginQuorumEpoch term=2
        persist term=2 vote=none
        send 1->2 Fetch term=2 last=1@1 commit=0
        state Follower term=2 leader=2 commit=0 last=1@1
        > 20 2->1 FetchResponse term=2 Entries prev=1@1 [2@2:x 3@2:x] commit=3
        persist log after=1 [2@2:x 3@2:x]
        send 1->2 Fetch term=2 last=3@2 commit=3
        commit [1@1:lc 2@2:x 3@2:x]
        state Follower term=2 leader=2 commit=3 last=3@2
        > 30 2->1 FetchResponse term=2 Entries prev=3@2 [] commit=3
        send 1->2 Fetch term=2 last=3@2 commit=3
        state Follower term=2 leader=2 commit=3 last=3@2
        > tick 229
        state Follower term=2 leader=2 commit=3 last=3@2
        > tick 230
        send 1->2 Fetch term=2 last=3@2 commit=3
        state Follower term=2 leader=2 commit=3 last=3@2
        ",
    );
}

#[test]
fn follower_commit_is_bounded_by_what_it_has_matched() {
    check(
        node(1, 3, 2, None, &[1, 1, 1]),
        vec![
            Recv(10, 2, begin(2)),
            // Answers an older fetch (from 1@1), so it is applied but sends nothing. The
            // leader's commit is 9, but only 1..=2 is known to match: commit 2, not 3.
            Recv(
                20,
                2,
                response(2, entries_result((1, 1), commands(2, &[1]), 9)),
            ),
        ],
        "
        > 10 2->1 BeginQuorumEpoch term=2
        send 1->2 Fetch term=2 last=3@1 commit=0
        state Follower term=2 leader=2 commit=0 last=3@1
        > 20 2->1 FetchResponse term=2 Entries prev=1@1 [2@1:x] commit=9
        commit [1@1:lc 2@1:x]
        state Follower term=2 leader=2 commit=2 last=3@1
        ",
    );
}

#[test]
fn log_conflict_repair_follower_side() {
    // Follower log 1@1 2@2 3@2 4@2; the leader of term 4 has 1@1 2@2 3@3 4@4.
    check(
        node(1, 3, 4, None, &[1, 2, 2, 2]),
        vec![
            Recv(10, 2, begin(4)),
            // The leader has no term 2 entry after index 2: truncate to 2 and fetch again.
            Recv(
                20,
                2,
                response(
                    4,
                    FetchResult::Diverging {
                        prev_index: 4,
                        prev_term: 2,
                        end_index: 2,
                        end_term: 2,
                    },
                ),
            ),
            // A duplicate of that answer is stale now (our log has no 4@2): ignored, and it
            // does not answer the fetch outstanding, so nothing is sent.
            Recv(
                21,
                2,
                response(
                    4,
                    FetchResult::Diverging {
                        prev_index: 4,
                        prev_term: 2,
                        end_index: 2,
                        end_term: 2,
                    },
                ),
            ),
            Recv(
                30,
                2,
                response(4, entries_result((2, 2), commands(3, &[3, 4]), 3)),
            ),
        ],
        "
        > 10 2->1 BeginQuorumEpoch term=4
        send 1->2 Fetch term=4 last=4@2 commit=0
        state Follower term=4 leader=2 commit=0 last=4@2
        > 20 2->1 FetchResponse term=4 Diverging prev=4@2 end=2@2
        persist log after=2 []
        send 1->2 Fetch term=4 last=2@2 commit=0
        state Follower term=4 leader=2 commit=0 last=2@2
        > 21 2->1 FetchResponse term=4 Diverging prev=4@2 end=2@2
        state Follower term=4 leader=2 commit=0 last=2@2
        > 30 2->1 FetchResponse term=4 Entries prev=2@2 [3@3:x 4@4:x] commit=3
        persist log after=2 [3@3:x 4@4:x]
        send 1->2 Fetch term=4 last=4@4 commit=3
        commit [1@1:lc 2@2:lc 3@3:x]
        state Follower term=4 leader=2 commit=3 last=4@4
        ",
    );
}

#[test]
fn log_conflict_overwrite_within_one_response_is_one_persist_request() {
    // Follower 1@1 2@1 3@1 4@1; leader sends 2@2 3@2 after 1@1 (answering an older fetch):
    // 2..4 replaced.
    check(
        node(1, 3, 2, None, &[1, 1, 1, 1]),
        vec![
            Recv(10, 2, begin(2)),
            Recv(
                20,
                2,
                response(2, entries_result((1, 1), commands(2, &[2, 2]), 1)),
            ),
        ],
        "
        > 10 2->1 BeginQuorumEpoch term=2
        send 1->2 Fetch term=2 last=4@1 commit=0
        state Follower term=2 leader=2 commit=0 last=4@1
        > 20 2->1 FetchResponse term=2 Entries prev=1@1 [2@2:x 3@2:x] commit=1
        persist log after=1 [2@2:x 3@2:x]
        commit [1@1:lc]
        state Follower term=2 leader=2 commit=1 last=3@2
        ",
    );
}

#[test]
fn log_conflict_repair_leader_side() {
    // Leader of term 3 with log 1@1 2@2 3@2 4@3 (4@3 its leader change).
    let mut leader = node(1, 3, 2, None, &[1, 2, 2]);
    leader.tick(1_000, 0);
    leader.handle(envelope(2, 1, vote_response(3, true, true)), 1_001, 0);
    leader.handle(envelope(2, 1, vote_response(3, true, false)), 1_002, 0);
    drain(&mut leader);
    check(
        leader,
        vec![
            Recv(1_010, 2, fetch(3, 6, 1, 0)), // No 6: end of terms <= 1 is 1@1.
            Recv(1_011, 2, fetch(3, 3, 1, 0)), // Has 3@2, not 3@1: end of terms <= 1 is 1@1.
            Recv(1_012, 2, fetch(3, 1, 1, 0)), // Matches: entries 2..3 (2 per response).
            Recv(1_013, 3, fetch(3, 5, 2, 0)), // No 5: end of terms <= 2 is 3@2.
            Recv(1_014, 3, fetch(3, 9, 5, 0)), // Beyond our log and term: our last is 4@3.
            Recv(1_015, 3, fetch(3, u64::MAX, u64::MAX, u64::MAX)), // Absurd: answered.
        ],
        "
        > 1010 2->1 Fetch term=3 last=6@1 commit=0
        send 1->2 FetchResponse term=3 Diverging prev=6@1 end=1@1
        state Leader term=3 leader=1 commit=0 last=4@3
        > 1011 2->1 Fetch term=3 last=3@1 commit=0
        send 1->2 FetchResponse term=3 Diverging prev=3@1 end=1@1
        state Leader term=3 leader=1 commit=0 last=4@3
        > 1012 2->1 Fetch term=3 last=1@1 commit=0
        send 1->2 FetchResponse term=3 Entries prev=1@1 [2@2:lc 3@2:x] commit=0
        state Leader term=3 leader=1 commit=0 last=4@3
        > 1013 3->1 Fetch term=3 last=5@2 commit=0
        send 1->3 FetchResponse term=3 Diverging prev=5@2 end=3@2
        state Leader term=3 leader=1 commit=0 last=4@3
        > 1014 3->1 Fetch term=3 last=9@5 commit=0
        send 1->3 FetchResponse term=3 Diverging prev=9@5 end=4@3
        state Leader term=3 leader=1 commit=0 last=4@3
        > 1015 3->1 Fetch term=3 last=18446744073709551615@18446744073709551615 commit=18446744073709551615
        send 1->3 FetchResponse term=3 Diverging prev=18446744073709551615@18446744073709551615 end=4@3
        state Leader term=3 leader=1 commit=0 last=4@3
        ",
    );
}

#[test]
fn older_term_entries_commit_only_with_an_entry_of_the_current_term() {
    // Raft figure 8: the leader of term 3 holds 2@2 from an earlier term. A quorum holding
    // 2@2 does not commit it; a quorum holding 3@3 (its leader change) commits both.
    let mut leader = node(1, 3, 2, None, &[1, 2]);
    leader.tick(1_000, 0);
    leader.handle(envelope(2, 1, vote_response(3, true, true)), 1_001, 0);
    leader.handle(envelope(2, 1, vote_response(3, true, false)), 1_002, 0);
    drain(&mut leader);
    check(
        leader,
        vec![
            Recv(1_010, 2, fetch(3, 2, 2, 0)),
            Recv(1_011, 2, fetch(3, 3, 3, 0)),
        ],
        "
        > 1010 2->1 Fetch term=3 last=2@2 commit=0
        send 1->2 FetchResponse term=3 Entries prev=2@2 [3@3:lc] commit=0
        state Leader term=3 leader=1 commit=0 last=3@3
        > 1011 2->1 Fetch term=3 last=3@3 commit=0
        send 1->2 FetchResponse term=3 Entries prev=3@3 [] commit=3
        commit [1@1:lc 2@2:lc 3@3:lc]
        state Leader term=3 leader=1 commit=3 last=3@3
        ",
    );
}

#[test]
fn propose_appends_persists_wakes_parked_fetches_and_pushes_back() {
    // uncommitted_entries_max is 3 in these tests.
    check(
        leader_of_term_2(),
        vec![
            Recv(1_010, 2, fetch(2, 2, 2, 2)), // Commits 2; then parked: nothing new for 2.
            Propose("a"),                      // Wakes the parked fetch.
            Propose("b"),
            Propose("c"),
            Propose("d"), // 3 entries past the commit index: refused.
            Recv(1_020, 3, fetch(2, 4, 2, 0)),
            Propose("d"),
        ],
        "
        > 1010 2->1 Fetch term=2 last=2@2 commit=2
        commit [1@1:lc 2@2:lc]
        state Leader term=2 leader=1 commit=2 last=2@2
        > propose a: Ok(3)
        persist log after=2 [3@2:a]
        send 1->2 FetchResponse term=2 Entries prev=2@2 [3@2:a] commit=2
        state Leader term=2 leader=1 commit=2 last=3@2
        > propose b: Ok(4)
        persist log after=3 [4@2:b]
        state Leader term=2 leader=1 commit=2 last=4@2
        > propose c: Ok(5)
        persist log after=4 [5@2:c]
        state Leader term=2 leader=1 commit=2 last=5@2
        > propose d: Err(TooManyUncommitted { uncommitted: 3 })
        state Leader term=2 leader=1 commit=2 last=5@2
        > 1020 3->1 Fetch term=2 last=4@2 commit=0
        send 1->3 FetchResponse term=2 Entries prev=4@2 [5@2:c] commit=4
        commit [3@2:a 4@2:b]
        state Leader term=2 leader=1 commit=4 last=5@2
        > propose d: Ok(6)
        persist log after=5 [6@2:d]
        state Leader term=2 leader=1 commit=4 last=6@2
        ",
    );
}

#[test]
fn ignores_messages_not_for_it_from_itself_or_from_strangers() {
    let mut raft = node(1, 3, 1, None, &[1]);
    for (from, to) in [(2, 3), (1, 1), (9, 1), (-1, 1)] {
        raft.handle(envelope(from, to, vote(5, 9, 9)), 10, 0);
    }
    assert_eq!(raft.poll_persist(), None);
    assert!(raft.poll_messages().is_empty());
    assert_eq!(raft.term(), 1);
}

#[test]
fn stale_leader_learns_the_new_term_from_its_own_announcement() {
    check(
        leader_of_term_2(),
        vec![Recv(
            1_100,
            2,
            Message::BeginQuorumEpochResponse { term: 3 },
        )],
        "
        > 1100 2->1 BeginQuorumEpochResponse term=3
        persist term=3 vote=none
        state Follower term=3 leader=none commit=0 last=2@2
        ",
    );
    check(
        node(1, 3, 3, None, &[1]),
        vec![Recv(10, 2, begin(2))],
        "
        > 10 2->1 BeginQuorumEpoch term=2
        send 1->2 BeginQuorumEpochResponse term=3
        state Follower term=3 leader=none commit=0 last=1@1
        ",
    );
}

#[test]
fn fetch_to_a_non_leader_or_with_a_stale_term_is_answered_not_leader() {
    check(
        node(1, 3, 2, None, &[1]),
        vec![
            Recv(10, 3, begin(2)),
            Recv(20, 2, fetch(2, 1, 1, 0)), // I follow 3.
            Recv(30, 2, fetch(1, 1, 1, 0)), // Stale term.
        ],
        "
        > 10 3->1 BeginQuorumEpoch term=2
        send 1->3 Fetch term=2 last=1@1 commit=0
        state Follower term=2 leader=3 commit=0 last=1@1
        > 20 2->1 Fetch term=2 last=1@1 commit=0
        send 1->2 FetchResponse term=2 NotLeader hint=Some(3)
        state Follower term=2 leader=3 commit=0 last=1@1
        > 30 2->1 Fetch term=1 last=1@1 commit=0
        send 1->2 FetchResponse term=2 NotLeader hint=Some(3)
        state Follower term=2 leader=3 commit=0 last=1@1
        ",
    );
    check(
        leader_of_term_2(),
        vec![Recv(1_100, 2, fetch(1, 1, 1, 0))],
        "
        > 1100 2->1 Fetch term=1 last=1@1 commit=0
        send 1->2 FetchResponse term=2 NotLeader hint=Some(1)
        state Leader term=2 leader=1 commit=0 last=2@2
        ",
    );
}

#[test]
fn follower_handles_not_leader_answers() {
    check(
        node(1, 3, 2, None, &[1]),
        vec![
            Recv(10, 2, begin(2)),
            // 2 restarted and no longer leads term 2: stop fetching, let the timer run.
            Recv(
                20,
                2,
                response(2, FetchResult::NotLeader { leader_hint: None }),
            ),
            Tick(500),
            // A newer term whose leader is 3: follow 3.
            Recv(
                600,
                2,
                response(
                    4,
                    FetchResult::NotLeader {
                        leader_hint: Some(3),
                    },
                ),
            ),
        ],
        "
        > 10 2->1 BeginQuorumEpoch term=2
        send 1->2 Fetch term=2 last=1@1 commit=0
        state Follower term=2 leader=2 commit=0 last=1@1
        > 20 2->1 FetchResponse term=2 NotLeader hint=None
        state Follower term=2 leader=none commit=0 last=1@1
        > tick 500
        state Follower term=2 leader=none commit=0 last=1@1
        > 600 2->1 FetchResponse term=4 NotLeader hint=Some(3)
        persist term=4 vote=none
        send 1->3 Fetch term=4 last=1@1 commit=0
        state Follower term=4 leader=3 commit=0 last=1@1
        ",
    );
}

#[test]
fn absurd_fetch_responses_are_ignored() {
    let mut raft = node(1, 3, 2, None, &[1, 2]);
    raft.handle(envelope(2, 1, begin(2)), 10, 0);
    raft.handle(
        envelope(2, 1, response(2, entries_result((2, 2), vec![], 2))),
        20,
        0,
    );
    drain(&mut raft);
    assert_eq!(raft.commit_index(), 2);
    let absurd = [
        // Indexes not following prev.
        entries_result((2, 2), commands(4, &[2]), 2),
        // A term above the response's.
        entries_result((2, 2), commands(3, &[7]), 2),
        // Terms going down.
        entries_result((2, 2), commands(3, &[2, 1]), 2),
        // More entries than a response may carry (append_entries_max is 2).
        entries_result((2, 2), commands(3, &[2, 2, 2]), 2),
        // Rewriting committed entries.
        entries_result((0, 0), commands(1, &[2, 2]), 9),
        // Positions that do not exist.
        entries_result((u64::MAX, 2), vec![], u64::MAX),
        entries_result((u64::MAX - 1, 2), commands(u64::MAX, &[2]), 9),
        // Diverging below the commit index, above prev, or with a newer end term.
        FetchResult::Diverging {
            prev_index: 2,
            prev_term: 2,
            end_index: 0,
            end_term: 0,
        },
        FetchResult::Diverging {
            prev_index: 1,
            prev_term: 1,
            end_index: 5,
            end_term: 1,
        },
        FetchResult::Diverging {
            prev_index: 2,
            prev_term: 2,
            end_index: 1,
            end_term: 3,
        },
    ];
    for result in absurd {
        raft.handle(envelope(2, 1, response(2, result.clone())), 30, 0);
        assert_eq!(raft.poll_persist(), None, "{result:?}");
        assert_eq!(
            (raft.last_index(), raft.commit_index()),
            (2, 2),
            "{result:?}"
        );
    }
}

#[test]
fn single_voter_elects_itself_and_commits_alone() {
    let mut config = Config::new(7, vec![7]);
    config.election_jitter_ms = 0;
    let mut raft = Raft::new(config, PersistentState::default(), 0, 0).unwrap();
    assert_eq!(raft.tick_deadline_ms(), 1_000);
    raft.tick(1_000, 0);
    assert_eq!(raft.role(), Role::Leader);
    assert_eq!(raft.propose(b"a".to_vec()), Ok(2));
    let persist = raft.poll_persist().unwrap();
    assert_eq!(
        persist.hard_state,
        Some(HardState {
            term: 1,
            voted_for: Some(7)
        })
    );
    assert_eq!(persist.log_write.unwrap().entries.len(), 2);
    assert!(raft.poll_messages().is_empty());
    let committed: Vec<u64> = raft.poll_committed().iter().map(|e| e.index).collect();
    assert_eq!(committed, vec![1, 2]);
}

#[test]
fn start_refuses_inconsistent_config_or_state() {
    let ok = || (Config::new(1, vec![1, 2, 3]), PersistentState::default());
    let (config, state) = ok();
    assert!(Raft::new(config, state, 0, 0).is_ok());
    let configs = [
        Config::new(4, vec![1, 2, 3]),
        Config::new(1, vec![1, 1, 2]),
        Config::new(1, vec![]),
        Config::new(1, (1..=10).collect()),
        Config {
            heartbeat_interval_ms: 300,
            ..Config::new(1, vec![1, 2, 3])
        },
        Config {
            heartbeat_interval_ms: 0,
            ..Config::new(1, vec![1, 2, 3])
        },
        Config {
            append_entries_max: 0,
            ..Config::new(1, vec![1, 2, 3])
        },
        Config {
            uncommitted_entries_max: 0,
            ..Config::new(1, vec![1, 2, 3])
        },
    ];
    for config in configs {
        let result = Raft::new(config.clone(), PersistentState::default(), 0, 0);
        assert!(matches!(result, Err(InitError::Config(_))), "{config:?}");
    }
    let states = [
        // Index gap.
        PersistentState {
            hard_state: HardState {
                term: 2,
                voted_for: None,
            },
            log: commands(2, &[1]),
        },
        // Term 0 entry, terms going down, log term above the current term, unknown vote.
        PersistentState {
            hard_state: HardState {
                term: 2,
                voted_for: None,
            },
            log: commands(1, &[0]),
        },
        PersistentState {
            hard_state: HardState {
                term: 2,
                voted_for: None,
            },
            log: commands(1, &[2, 1]),
        },
        PersistentState {
            hard_state: HardState {
                term: 1,
                voted_for: None,
            },
            log: commands(1, &[2]),
        },
        PersistentState {
            hard_state: HardState {
                term: 1,
                voted_for: Some(9),
            },
            log: vec![],
        },
    ];
    for state in states {
        let (config, _) = ok();
        let result = Raft::new(config, state.clone(), 0, 0);
        assert!(
            matches!(result, Err(InitError::PersistentState(_))),
            "{state:?}"
        );
    }
}

mod properties {
    //! Arbitrary messages, however absurd, never crash a node, never break its invariants
    //! (checked inside on every input), and what it asks to persist always rebuilds it.

    use super::*;
    use proptest::prelude::*;

    fn number() -> impl Strategy<Value = u64> {
        prop_oneof![0..8u64, Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()]
    }

    fn entry() -> impl Strategy<Value = Entry> {
        (number(), number(), any::<bool>()).prop_map(|(index, term, command)| Entry {
            index,
            term,
            kind: if command {
                EntryKind::Command
            } else {
                EntryKind::LeaderChange
            },
            payload: vec![1],
        })
    }

    fn result() -> impl Strategy<Value = FetchResult> {
        prop_oneof![
            (
                number(),
                number(),
                prop::collection::vec(entry(), 0..4),
                number()
            )
                .prop_map(|(prev_index, prev_term, entries, commit_index)| {
                    FetchResult::Entries {
                        prev_index,
                        prev_term,
                        entries,
                        commit_index,
                    }
                }),
            (number(), number(), number(), number()).prop_map(
                |(prev_index, prev_term, end_index, end_term)| FetchResult::Diverging {
                    prev_index,
                    prev_term,
                    end_index,
                    end_term,
                }
            ),
            prop::option::of(-1..5i32)
                .prop_map(|leader_hint| FetchResult::NotLeader { leader_hint }),
        ]
    }

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (number(), number(), number(), any::<bool>()).prop_map(
                |(term, last_index, last_term, pre_vote)| Message::Vote {
                    term,
                    last_index,
                    last_term,
                    pre_vote,
                }
            ),
            (number(), any::<bool>(), any::<bool>()).prop_map(|(term, granted, pre_vote)| {
                Message::VoteResponse {
                    term,
                    granted,
                    pre_vote,
                }
            }),
            number().prop_map(|term| Message::BeginQuorumEpoch { term }),
            number().prop_map(|term| Message::BeginQuorumEpochResponse { term }),
            (number(), number(), number(), number()).prop_map(
                |(term, last_index, last_term, commit_index)| Message::Fetch {
                    term,
                    last_index,
                    last_term,
                    commit_index,
                }
            ),
            (number(), result()).prop_map(|(term, result)| Message::FetchResponse { term, result }),
        ]
    }

    /// An input: a message from a sender (0 and 4 are strangers), a tick, or a proposal.
    fn input() -> impl Strategy<Value = (u8, i32, Message, u64)> {
        (0..10u8, 0..5i32, message(), 0..3_000u64)
    }

    fn start(state: u8) -> Raft {
        match state % 3 {
            0 => node(1, 3, 1, None, &[1, 1]),
            1 => leader_of_term_2(),
            _ => node(1, 3, 4, Some(2), &[1, 2, 2, 3]),
        }
    }

    proptest! {
        #[test]
        fn arbitrary_inputs_never_break_a_node(
            state in 0..3u8,
            inputs in prop::collection::vec(input(), 1..40),
        ) {
            let mut raft = start(state);
            let config = raft.config.clone();
            let mut disk = PersistentState {
                hard_state: HardState { term: raft.term, voted_for: raft.voted_for },
                log: raft.log.clone(),
            };
            let mut now_ms = 2_000;
            for (kind, from, message, advance_ms) in inputs {
                now_ms += advance_ms;
                match kind {
                    0 => raft.tick(now_ms, advance_ms),
                    1 => { let _ = raft.propose(vec![2]); }
                    _ => raft.handle(envelope(from, 1, message), now_ms, advance_ms),
                }
                while let Some(request) = raft.poll_persist() {
                    disk.apply(&request);
                }
                let _ = raft.poll_messages();
                let _ = raft.poll_committed();
                prop_assert_eq!(disk.hard_state, HardState { term: raft.term, voted_for: raft.voted_for });
                prop_assert_eq!(&disk.log, &raft.log);
                prop_assert!(Raft::new(config.clone(), disk.clone(), now_ms, 0).is_ok());
            }
        }
    }
}
