//! The consensus state machine of one quorum member: roles, elections with pre-vote, pull
//! replication, commit. Pure: inputs are `handle`, `tick` and `propose` with time and
//! randomness as arguments; outputs are drained with the `poll_*` calls in the order the
//! crate docs give.

use super::config::{Config, InitError};
use super::message::{Envelope, FetchResult, Message};
use super::persist::{Entry, EntryKind, HardState, LogWrite, PersistRequest, PersistentState};
use super::NodeId;
use crate::probe;
use std::collections::{BTreeMap, BTreeSet};

/// What a node is doing in its current term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Fetches from the leader when it knows one; otherwise waits for its election timeout.
    Follower,
    /// Asks for pre-votes without changing its term (KIP-996's "prospective" state).
    PreCandidate,
    /// Has incremented its term, voted for itself and asks for votes.
    Candidate,
    Leader,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader; leader hint: {leader_hint:?}")]
    NotLeader { leader_hint: Option<NodeId> },
    /// `Config::uncommitted_entries_max` entries are waiting to commit. Retry after some commit
    /// (or after this node lost leadership, then elsewhere).
    #[error("{uncommitted} entries are waiting to commit")]
    TooManyUncommitted { uncommitted: u64 },
}

/// One member of the quorum. See the crate docs for how a shell drives it.
#[derive(Debug)]
pub struct Raft {
    config: Config,
    voters: BTreeSet<NodeId>,

    // Persistent state: the in-memory copy, ahead of the disk until drained by `poll_persist`.
    term: u64,
    voted_for: Option<NodeId>,
    log: Vec<Entry>,

    // Volatile state.
    role: RoleState,
    /// The leader of `term`, once known. Only ever set to the one node that won `term`.
    leader: Option<NodeId>,
    /// Highest index known committed (Kafka: high watermark). Not persisted: after a restart
    /// it is learned again from the leader.
    commit_index: u64,
    /// Highest index handed out by `poll_committed`.
    applied_index: u64,
    /// Latest time seen; time given to the node never moves backwards.
    now_ms: u64,
    election_deadline_ms: u64,
    /// When this node last heard from `leader`: while recent, it refuses pre-votes.
    leader_contact_ms: Option<u64>,

    // Outputs.
    messages: Vec<Envelope>,
    hard_state_dirty: bool,
    /// Lowest log index that may differ from the shell's copy.
    log_dirty_from: Option<u64>,

    /// A deliberate bug, switched on by negative tests to prove the simulator catches it.
    #[cfg(test)]
    pub(crate) mutation: Option<Mutation>,
}

/// Deliberate bugs for negative tests (FoundationDB style: checkers must catch what they
/// claim to). Compiled to nothing outside tests.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mutation {
    /// Grant votes regardless of the candidate's log.
    NoElectionRestriction,
    /// Commit the quorum's match index even when that entry is from an older term.
    CommitOldTermByCounting,
    /// Persist the term but not the vote, so a restart can vote twice in one term.
    ForgetVote,
}

#[derive(Debug)]
enum RoleState {
    Follower {
        /// The fetch now outstanding, if any.
        fetch: Option<FetchSent>,
    },
    PreCandidate {
        granted: BTreeSet<NodeId>,
    },
    Candidate {
        granted: BTreeSet<NodeId>,
    },
    Leader(LeaderState),
}

/// A follower's outstanding fetch. Only the response to it (matched by its position) leads to
/// the next fetch at once; other responses are applied but send nothing, so a duplicating
/// network cannot multiply fetch/response chains.
#[derive(Debug, Clone, Copy)]
struct FetchSent {
    sent_ms: u64,
    last_index: u64,
    last_term: u64,
}

#[derive(Debug)]
struct LeaderState {
    /// One per other voter.
    progress: BTreeMap<NodeId, Progress>,
    /// When to check that a quorum still fetches from this leader.
    quorum_check_ms: u64,
}

#[derive(Debug)]
struct Progress {
    /// Highest index known to be durable and matching on that voter.
    match_index: u64,
    fetch_received_ms: Option<u64>,
    begin_quorum_epoch_sent_ms: u64,
    /// At most one parked fetch per voter: a newer fetch replaces it, which bounds the
    /// fetch/response pairs a duplicating network can multiply.
    parked: Option<ParkedFetch>,
}

#[derive(Debug, Clone, Copy)]
struct ParkedFetch {
    last_index: u64,
    last_term: u64,
    commit_index: u64,
    deadline_ms: u64,
}

impl Raft {
    /// Start a node from what it persisted (empty on first start). Fails on an inconsistent
    /// config or persisted state; nothing else can fail here.
    pub fn new(
        config: Config,
        persisted: PersistentState,
        now_ms: u64,
        random: u64,
    ) -> Result<Raft, InitError> {
        let voters = config.validate()?;
        persisted.validate().map_err(InitError::PersistentState)?;
        if let Some(voted_for) = persisted.hard_state.voted_for {
            if !voters.contains(&voted_for) {
                return Err(InitError::PersistentState(format!(
                    "voted for {voted_for}, which is not a voter"
                )));
            }
        }
        let mut raft = Raft {
            config,
            voters,
            term: persisted.hard_state.term,
            voted_for: persisted.hard_state.voted_for,
            log: persisted.log,
            role: RoleState::Follower { fetch: None },
            leader: None,
            commit_index: 0,
            applied_index: 0,
            now_ms,
            election_deadline_ms: 0,
            leader_contact_ms: None,
            messages: Vec::new(),
            hard_state_dirty: false,
            log_dirty_from: None,
            #[cfg(test)]
            mutation: None,
        };
        raft.reset_election_deadline(random);
        raft.check_invariants();
        Ok(raft)
    }

    /// Run timers: elections, fetch retries, parked fetch expiry, leader announcements and
    /// the leader's quorum check. Call at `tick_deadline_ms()` (earlier or extra calls are
    /// harmless).
    pub fn tick(&mut self, now_ms: u64, random: u64) {
        self.advance_clock(now_ms);
        if matches!(self.role, RoleState::Leader(_)) {
            self.leader_tick(random);
        } else if self.now_ms >= self.election_deadline_ms {
            self.start_pre_vote(random);
        } else {
            self.maybe_send_fetch();
        }
        self.check_invariants();
    }

    /// Handle one message. Messages not addressed to this node, from non-voters or from
    /// itself are ignored; stale or absurd content is ignored or answered, never trusted.
    pub fn handle(&mut self, envelope: Envelope, now_ms: u64, random: u64) {
        self.advance_clock(now_ms);
        let Envelope { from, to, message } = envelope;
        if to != self.config.id || from == self.config.id || !self.voters.contains(&from) {
            return;
        }
        match message {
            Message::Vote {
                term,
                last_index,
                last_term,
                pre_vote: true,
            } => self.handle_pre_vote(from, term, last_index, last_term),
            Message::Vote {
                term,
                last_index,
                last_term,
                pre_vote: false,
            } => self.handle_vote(from, term, last_index, last_term, random),
            Message::VoteResponse {
                term,
                granted,
                pre_vote,
            } => self.handle_vote_response(from, term, granted, pre_vote, random),
            Message::BeginQuorumEpoch { term } => {
                self.handle_begin_quorum_epoch(from, term, random)
            }
            Message::BeginQuorumEpochResponse { term } => {
                if term > self.term {
                    self.become_follower(term, None, random);
                }
            }
            Message::Fetch {
                term,
                last_index,
                last_term,
                commit_index,
            } => self.handle_fetch(from, term, last_index, last_term, commit_index, random),
            Message::FetchResponse { term, result } => {
                self.handle_fetch_response(from, term, result, random)
            }
        }
        self.check_invariants();
    }

    /// Append a command to the log if this node is the leader; returns its index. The entry
    /// is committed when `poll_committed` returns it; it may instead be lost if leadership
    /// changes first.
    pub fn propose(&mut self, payload: Vec<u8>) -> Result<u64, ProposeError> {
        if !matches!(self.role, RoleState::Leader(_)) {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader,
            });
        }
        let uncommitted = self.last_index() - self.commit_index;
        if uncommitted >= self.config.uncommitted_entries_max as u64 {
            return Err(ProposeError::TooManyUncommitted { uncommitted });
        }
        let index = self.last_index() + 1;
        self.append(Entry {
            index,
            term: self.term,
            kind: EntryKind::Command,
            payload,
        });
        self.advance_commit();
        self.answer_parked_fetches();
        self.check_invariants();
        Ok(index)
    }

    /// Messages to send, in the order they were produced. Send them only after the
    /// preceding `poll_persist` requests are durable.
    pub fn poll_messages(&mut self) -> Vec<Envelope> {
        std::mem::take(&mut self.messages)
    }

    /// Everything that changed in the term, vote and log since the last call, as one request;
    /// `None` when nothing did. Must be durable before the shell sends messages or acts on
    /// committed entries polled after it.
    pub fn poll_persist(&mut self) -> Option<PersistRequest> {
        let hard_state = self.hard_state_dirty.then(|| HardState {
            term: self.term,
            voted_for: if self.mutated(Mutation::ForgetVote) {
                None
            } else {
                self.voted_for
            },
        });
        self.hard_state_dirty = false;
        let log_write = self.log_dirty_from.take().map(|from| {
            assert!(from >= 1 && from <= self.last_index() + 1);
            LogWrite {
                after_index: from - 1,
                entries: self.log[(from - 1) as usize..].to_vec(),
            }
        });
        if hard_state.is_none() && log_write.is_none() {
            return None;
        }
        Some(PersistRequest {
            hard_state,
            log_write,
        })
    }

    /// Entries committed since the last call, in index order, each once per run of the node
    /// (after a restart they are delivered again from index 1 as the commit index is
    /// relearned).
    pub fn poll_committed(&mut self) -> Vec<Entry> {
        assert!(self.applied_index <= self.commit_index);
        let entries = self.log[self.applied_index as usize..self.commit_index as usize].to_vec();
        self.applied_index = self.commit_index;
        entries
    }

    /// The time at which `tick` next has something to do.
    pub fn tick_deadline_ms(&self) -> u64 {
        match &self.role {
            RoleState::Leader(state) => {
                let resend_ms = self.config.begin_quorum_epoch_resend_ms();
                let mut deadline_ms = state.quorum_check_ms;
                for progress in state.progress.values() {
                    if let Some(parked) = &progress.parked {
                        deadline_ms = deadline_ms.min(parked.deadline_ms);
                    }
                    let heard_ms = progress
                        .fetch_received_ms
                        .unwrap_or(0)
                        .max(progress.begin_quorum_epoch_sent_ms);
                    deadline_ms = deadline_ms.min(heard_ms.saturating_add(resend_ms));
                }
                deadline_ms
            }
            RoleState::Follower { fetch } if self.leader.is_some() => {
                let retry_ms = match fetch {
                    Some(fetch) => fetch.sent_ms.saturating_add(self.config.fetch_retry_ms()),
                    None => self.now_ms,
                };
                retry_ms.min(self.election_deadline_ms)
            }
            _ => self.election_deadline_ms,
        }
    }

    pub fn role(&self) -> Role {
        match self.role {
            RoleState::Follower { .. } => Role::Follower,
            RoleState::PreCandidate { .. } => Role::PreCandidate,
            RoleState::Candidate { .. } => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
        }
    }

    /// Kafka: the leader epoch.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// The leader of the current term, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// Kafka: the high watermark.
    pub fn commit_index(&self) -> u64 {
        self.commit_index
    }

    /// Kafka: the log end offset.
    pub fn last_index(&self) -> u64 {
        self.log.len() as u64
    }

    pub fn last_term(&self) -> u64 {
        self.log.last().map_or(0, |entry| entry.term)
    }

    pub fn id(&self) -> NodeId {
        self.config.id
    }
}

// Elections.
impl Raft {
    fn handle_pre_vote(&mut self, from: NodeId, term: u64, last_index: u64, last_term: u64) {
        // A pre-vote changes nothing here. Refusing while a leader is live keeps a node that
        // was cut off (and so lags) from disturbing a healthy quorum when it comes back.
        let granted = term > self.term
            && !self.leader_is_live()
            && self.log_up_to_date(last_index, last_term);
        let response_term = if granted { term } else { self.term };
        self.send(
            from,
            Message::VoteResponse {
                term: response_term,
                granted,
                pre_vote: true,
            },
        );
    }

    fn handle_vote(
        &mut self,
        from: NodeId,
        term: u64,
        last_index: u64,
        last_term: u64,
        random: u64,
    ) {
        if term > self.term {
            self.become_follower(term, None, random);
        }
        let mut granted = false;
        if term == self.term {
            // One vote per term, and none once a leader of the term is known: the vote
            // counts only if the leader could not have won (it could not, but refusing is
            // cheaper than arguing it).
            let can_vote =
                self.voted_for == Some(from) || (self.voted_for.is_none() && self.leader.is_none());
            granted = can_vote && self.log_up_to_date(last_index, last_term);
            if can_vote && !granted {
                crate::probe!(probe::RAFT_VOTE_REFUSED_STALE_LOG);
            }
        }
        if granted {
            if self.voted_for != Some(from) {
                self.voted_for = Some(from);
                self.hard_state_dirty = true;
            }
            if !matches!(self.role, RoleState::Follower { .. }) {
                self.become_follower(self.term, None, random); // A pre-candidate gives up.
            }
            self.reset_election_deadline(random);
        }
        self.send(
            from,
            Message::VoteResponse {
                term: self.term,
                granted,
                pre_vote: false,
            },
        );
    }

    fn handle_vote_response(
        &mut self,
        from: NodeId,
        term: u64,
        granted: bool,
        pre_vote: bool,
        random: u64,
    ) {
        if pre_vote {
            if granted {
                let quorum = self.config.quorum();
                let asked_term = self.term.saturating_add(1);
                if let RoleState::PreCandidate { granted } = &mut self.role {
                    if term == asked_term {
                        granted.insert(from);
                        if granted.len() >= quorum {
                            self.start_election(random);
                        }
                    }
                }
            } else if term > self.term {
                self.become_follower(term, None, random);
            }
            return;
        }
        if term > self.term {
            self.become_follower(term, None, random);
            return;
        }
        if term < self.term || !granted {
            return;
        }
        let quorum = self.config.quorum();
        if let RoleState::Candidate { granted } = &mut self.role {
            granted.insert(from);
            if granted.len() >= quorum {
                self.become_leader();
            }
        }
    }

    fn handle_begin_quorum_epoch(&mut self, from: NodeId, term: u64, random: u64) {
        if term < self.term {
            let term = self.term;
            self.send(from, Message::BeginQuorumEpochResponse { term });
            return;
        }
        if term == self.term {
            let other_leader = self.leader.is_some_and(|leader| leader != from);
            if other_leader || matches!(self.role, RoleState::Leader(_)) {
                return; // Two leaders in one term: cannot happen with honest peers.
            }
        }
        self.become_follower(term, Some(from), random);
    }

    /// Election timeout: ask for pre-votes for `term + 1` without changing the term.
    fn start_pre_vote(&mut self, random: u64) {
        self.role = RoleState::PreCandidate {
            granted: BTreeSet::from([self.config.id]),
        };
        self.leader = None;
        self.reset_election_deadline(random);
        if self.config.quorum() == 1 {
            self.start_election(random);
            return;
        }
        let message = Message::Vote {
            term: self.term.saturating_add(1),
            last_index: self.last_index(),
            last_term: self.last_term(),
            pre_vote: true,
        };
        self.broadcast(message);
    }

    fn start_election(&mut self, random: u64) {
        self.term = self.term.saturating_add(1);
        self.voted_for = Some(self.config.id);
        self.hard_state_dirty = true;
        self.role = RoleState::Candidate {
            granted: BTreeSet::from([self.config.id]),
        };
        self.leader = None;
        self.reset_election_deadline(random);
        if self.config.quorum() == 1 {
            self.become_leader();
            return;
        }
        let message = Message::Vote {
            term: self.term,
            last_index: self.last_index(),
            last_term: self.last_term(),
            pre_vote: false,
        };
        self.broadcast(message);
    }

    fn become_leader(&mut self) {
        assert!(matches!(self.role, RoleState::Candidate { .. }));
        crate::probe!(probe::RAFT_ELECTION_WON);
        assert_eq!(self.voted_for, Some(self.config.id));
        let now_ms = self.now_ms;
        let progress = self
            .voters
            .iter()
            .filter(|&&voter| voter != self.config.id)
            .map(|&voter| {
                let progress = Progress {
                    match_index: 0,
                    fetch_received_ms: None,
                    begin_quorum_epoch_sent_ms: now_ms,
                    parked: None,
                };
                (voter, progress)
            })
            .collect();
        self.role = RoleState::Leader(LeaderState {
            progress,
            quorum_check_ms: now_ms.saturating_add(self.config.election_timeout_ms),
        });
        self.leader = Some(self.config.id);
        self.leader_contact_ms = None;
        // The leader cannot commit earlier terms' entries by counting; committing this one
        // commits them all.
        self.append(Entry {
            index: self.last_index() + 1,
            term: self.term,
            kind: EntryKind::LeaderChange,
            payload: Vec::new(),
        });
        self.broadcast(Message::BeginQuorumEpoch { term: self.term });
        self.advance_commit();
    }

    /// Become (or stay) a follower in `term` (at least the current term), of `leader` if
    /// known; a known leader is fetched from at once.
    fn become_follower(&mut self, term: u64, leader: Option<NodeId>, random: u64) {
        assert!(term >= self.term);
        let term_changed = term > self.term;
        if term_changed {
            self.term = term;
            self.voted_for = None;
            self.hard_state_dirty = true;
        }
        let was_follower = matches!(self.role, RoleState::Follower { .. });
        if matches!(self.role, RoleState::Leader(_)) {
            crate::probe!(probe::RAFT_LEADER_STEPPED_DOWN);
        }
        if !was_follower || term_changed || self.leader != leader {
            self.role = RoleState::Follower { fetch: None };
        }
        if !was_follower {
            self.reset_election_deadline(random);
        }
        self.leader = leader;
        if leader.is_some() {
            self.leader_contact_ms = Some(self.now_ms);
            self.reset_election_deadline(random);
            self.maybe_send_fetch();
        }
    }

    fn leader_is_live(&self) -> bool {
        match self.role {
            RoleState::Leader(_) => true,
            _ => {
                self.leader.is_some()
                    && self.leader_contact_ms.is_some_and(|contact_ms| {
                        self.now_ms < contact_ms.saturating_add(self.config.election_timeout_ms)
                    })
            }
        }
    }

    /// The election restriction: vote only for a log at least as up to date as ours.
    fn log_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        if self.mutated(Mutation::NoElectionRestriction) {
            return true;
        }
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    fn reset_election_deadline(&mut self, random: u64) {
        let jitter_ms = match self.config.election_jitter_ms.checked_add(1) {
            Some(bound) => random % bound,
            None => random,
        };
        self.election_deadline_ms = self
            .now_ms
            .saturating_add(self.config.election_timeout_ms)
            .saturating_add(jitter_ms);
    }
}

// Replication, leader side.
impl Raft {
    fn handle_fetch(
        &mut self,
        from: NodeId,
        term: u64,
        last_index: u64,
        last_term: u64,
        commit_index: u64,
        random: u64,
    ) {
        if term > self.term {
            self.become_follower(term, None, random);
        }
        let now_ms = self.now_ms;
        let park_ms = self.config.fetch_park_ms();
        let consistent = self.term_at(last_index) == Some(last_term);
        let RoleState::Leader(state) = &mut self.role else {
            let leader_hint = self.leader;
            let result = FetchResult::NotLeader { leader_hint };
            self.send(
                from,
                Message::FetchResponse {
                    term: self.term,
                    result,
                },
            );
            return;
        };
        if term < self.term {
            let result = FetchResult::NotLeader {
                leader_hint: Some(self.config.id),
            };
            self.send(
                from,
                Message::FetchResponse {
                    term: self.term,
                    result,
                },
            );
            return;
        }
        let Some(progress) = state.progress.get_mut(&from) else {
            return; // `from` is a voter other than this node, so this cannot happen.
        };
        progress.fetch_received_ms = Some(now_ms);
        if !consistent {
            progress.parked = None;
            self.send_diverging(from, last_index, last_term);
            return;
        }
        // Durable on the follower (it persists before it fetches) and matching ours.
        progress.match_index = progress.match_index.max(last_index);
        progress.parked = Some(ParkedFetch {
            last_index,
            last_term,
            commit_index,
            deadline_ms: now_ms.saturating_add(park_ms),
        });
        self.advance_commit();
        self.answer_parked_fetches();
    }

    /// Answer every parked fetch that now has entries or a higher commit index to return, or
    /// whose wait is over.
    fn answer_parked_fetches(&mut self) {
        let last_index = self.last_index();
        let commit_index = self.commit_index;
        let now_ms = self.now_ms;
        let RoleState::Leader(state) = &mut self.role else {
            return;
        };
        let mut due = Vec::new();
        for (&voter, progress) in state.progress.iter_mut() {
            let Some(parked) = progress.parked else {
                continue;
            };
            let entries_new = parked.last_index < last_index;
            let commit_new = parked.commit_index < commit_index.min(parked.last_index);
            if entries_new || commit_new || now_ms >= parked.deadline_ms {
                progress.parked = None;
                due.push((voter, parked));
            }
        }
        for (voter, parked) in due {
            self.send_entries(voter, parked.last_index, parked.last_term);
        }
    }

    fn send_entries(&mut self, to: NodeId, prev_index: u64, prev_term: u64) {
        assert_eq!(self.term_at(prev_index), Some(prev_term));
        let end_index = self
            .last_index()
            .min(prev_index.saturating_add(self.config.append_entries_max as u64));
        let entries = self.log[prev_index as usize..end_index as usize].to_vec();
        let result = FetchResult::Entries {
            prev_index,
            prev_term,
            entries,
            commit_index: self.commit_index,
        };
        self.send(
            to,
            Message::FetchResponse {
                term: self.term,
                result,
            },
        );
    }

    fn send_diverging(&mut self, to: NodeId, prev_index: u64, prev_term: u64) {
        let end_index = self.log.partition_point(|entry| entry.term <= prev_term) as u64;
        let end_term = self
            .term_at(end_index)
            .expect("end_index is within the log");
        let result = FetchResult::Diverging {
            prev_index,
            prev_term,
            end_index,
            end_term,
        };
        self.send(
            to,
            Message::FetchResponse {
                term: self.term,
                result,
            },
        );
    }

    /// Commit the highest index a quorum holds, if it is from this term (Raft §5.4.2: an
    /// older term's entry is committed only through a later entry of the leader's term).
    fn advance_commit(&mut self) {
        let RoleState::Leader(state) = &self.role else {
            return;
        };
        // The leader counts its own log: the shell makes it durable before it sends the
        // fetch responses or acts on the commits that follow from this.
        let mut matched: Vec<u64> = state.progress.values().map(|p| p.match_index).collect();
        matched.push(self.last_index());
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let quorum_index = matched[self.config.quorum() - 1];
        if quorum_index <= self.commit_index {
            return;
        }
        let current_term = self.term_at(quorum_index) == Some(self.term);
        if current_term || self.mutated(Mutation::CommitOldTermByCounting) {
            if self.term_at(self.commit_index + 1) != Some(self.term) {
                crate::probe!(probe::RAFT_COMMIT_EARLIER_TERM);
            }
            self.commit_index = quorum_index;
        }
    }

    fn leader_tick(&mut self, random: u64) {
        self.answer_parked_fetches();
        let now_ms = self.now_ms;
        let resend_ms = self.config.begin_quorum_epoch_resend_ms();
        let election_timeout_ms = self.config.election_timeout_ms;
        let quorum = self.config.quorum();
        let RoleState::Leader(state) = &mut self.role else {
            unreachable!("leader_tick is called on a leader");
        };
        let mut silent = Vec::new();
        for (&voter, progress) in state.progress.iter_mut() {
            let heard_ms = progress
                .fetch_received_ms
                .unwrap_or(0)
                .max(progress.begin_quorum_epoch_sent_ms);
            if now_ms >= heard_ms.saturating_add(resend_ms) {
                progress.begin_quorum_epoch_sent_ms = now_ms;
                silent.push(voter);
            }
        }
        let mut step_down = false;
        if now_ms >= state.quorum_check_ms {
            let fetching = state
                .progress
                .values()
                .filter(|progress| {
                    progress.fetch_received_ms.is_some_and(|received_ms| {
                        now_ms < received_ms.saturating_add(election_timeout_ms)
                    })
                })
                .count();
            // Kafka's check-quorum: a leader cut off from its quorum resigns, so that its
            // clients go elsewhere instead of waiting on commits that cannot happen.
            if fetching + 1 < quorum {
                step_down = true;
            } else {
                state.quorum_check_ms = now_ms.saturating_add(election_timeout_ms);
            }
        }
        if step_down {
            self.become_follower(self.term, None, random);
            return;
        }
        let term = self.term;
        for voter in silent {
            self.send(voter, Message::BeginQuorumEpoch { term });
        }
    }
}

// Replication, follower side.
impl Raft {
    fn maybe_send_fetch(&mut self) {
        let Some(leader) = self.leader else {
            return;
        };
        let now_ms = self.now_ms;
        let retry_ms = self.config.fetch_retry_ms();
        let (last_index, last_term) = (self.last_index(), self.last_term());
        let RoleState::Follower { fetch } = &mut self.role else {
            return;
        };
        if fetch.is_some_and(|fetch| now_ms < fetch.sent_ms.saturating_add(retry_ms)) {
            return;
        }
        *fetch = Some(FetchSent {
            sent_ms: now_ms,
            last_index,
            last_term,
        });
        let message = Message::Fetch {
            term: self.term,
            last_index,
            last_term,
            commit_index: self.commit_index,
        };
        self.send(leader, message);
    }

    fn handle_fetch_response(&mut self, from: NodeId, term: u64, result: FetchResult, random: u64) {
        if term > self.term {
            // Only a NotLeader answer names someone else; trust it only for its own term.
            let leader = match result {
                FetchResult::NotLeader {
                    leader_hint: Some(hint),
                } if hint != self.config.id && self.voters.contains(&hint) => Some(hint),
                _ => None,
            };
            self.become_follower(term, leader, random);
            return;
        }
        let from_leader =
            matches!(self.role, RoleState::Follower { .. }) && self.leader == Some(from);
        if term < self.term || !from_leader {
            return;
        }
        if let FetchResult::NotLeader { .. } = result {
            // Our leader lost leadership without a new term (it resigned or restarted):
            // stop fetching and let the election timer run.
            self.leader = None;
            self.role = RoleState::Follower { fetch: None };
            return;
        }
        self.leader_contact_ms = Some(self.now_ms);
        self.reset_election_deadline(random);
        let echo = match &result {
            FetchResult::Entries {
                prev_index,
                prev_term,
                ..
            }
            | FetchResult::Diverging {
                prev_index,
                prev_term,
                ..
            } => (*prev_index, *prev_term),
            FetchResult::NotLeader { .. } => unreachable!("handled above"),
        };
        if let RoleState::Follower { fetch } = &mut self.role {
            if fetch.is_some_and(|fetch| (fetch.last_index, fetch.last_term) == echo) {
                *fetch = None;
            }
        }
        match result {
            FetchResult::Entries {
                prev_index,
                prev_term,
                entries,
                commit_index,
            } => self.append_from_leader(prev_index, prev_term, entries, commit_index),
            FetchResult::Diverging {
                prev_index,
                prev_term,
                end_index,
                end_term,
            } => self.truncate_diverging(prev_index, prev_term, end_index, end_term),
            FetchResult::NotLeader { .. } => unreachable!("handled above"),
        }
        self.maybe_send_fetch();
    }

    fn append_from_leader(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        leader_commit_index: u64,
    ) {
        if entries.len() > self.config.append_entries_max {
            return;
        }
        let mut index_expected = prev_index;
        let mut term_min = prev_term.max(1);
        for entry in &entries {
            let Some(next) = index_expected.checked_add(1) else {
                return;
            };
            index_expected = next;
            if entry.index != index_expected || entry.term < term_min || entry.term > self.term {
                return;
            }
            term_min = entry.term;
        }
        // The response answers a fetch made from `prev_index`; if our log changed there
        // since, the response is stale.
        if self.term_at(prev_index) != Some(prev_term) {
            return;
        }
        let matched_index = index_expected;
        for entry in entries {
            match self.term_at(entry.index) {
                Some(term) if term == entry.term => continue, // Same index and term: same entry.
                Some(_) => {
                    if entry.index <= self.commit_index {
                        return; // A leader never conflicts with committed entries.
                    }
                    self.truncate_log(entry.index - 1);
                    self.append(entry);
                }
                None => self.append(entry),
            }
        }
        let commit_index = leader_commit_index.min(matched_index);
        if commit_index > self.commit_index {
            self.commit_index = commit_index;
        }
    }

    fn truncate_diverging(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        end_index: u64,
        end_term: u64,
    ) {
        if self.term_at(prev_index) != Some(prev_term) || end_term > prev_term {
            return; // Stale (our log changed since the fetch) or malformed.
        }
        let own_end_index = self.log.partition_point(|entry| entry.term <= end_term) as u64;
        let truncate_index = end_index.min(own_end_index);
        // The entries we share with the leader (committed ones among them) are never cut;
        // anything else is a broken leader, and fetching again is all we can do.
        if truncate_index >= prev_index || truncate_index < self.commit_index {
            return;
        }
        self.truncate_log(truncate_index);
    }
}

// Log and outputs.
impl Raft {
    /// The term of the entry at `index`; 0 for index 0; `None` past the end.
    fn term_at(&self, index: u64) -> Option<u64> {
        if index == 0 {
            return Some(0);
        }
        let position = usize::try_from(index - 1).ok()?;
        self.log.get(position).map(|entry| entry.term)
    }

    fn append(&mut self, entry: Entry) {
        assert_eq!(entry.index, self.last_index() + 1);
        assert!(entry.term >= self.last_term() && entry.term <= self.term);
        let index = entry.index;
        self.log.push(entry);
        self.log_dirty_from = Some(self.log_dirty_from.map_or(index, |from| from.min(index)));
    }

    /// Keep entries `1..=index`.
    fn truncate_log(&mut self, index: u64) {
        assert!(index >= self.commit_index, "truncating committed entries");
        assert!(
            !matches!(self.role, RoleState::Leader(_)),
            "a leader never truncates"
        );
        if index >= self.last_index() {
            return;
        }
        crate::probe!(probe::RAFT_LOG_DIVERGENCE_TRUNCATED);
        self.log.truncate(index as usize);
        let from = index + 1;
        self.log_dirty_from = Some(self.log_dirty_from.map_or(from, |dirty| dirty.min(from)));
    }

    fn send(&mut self, to: NodeId, message: Message) {
        self.messages.push(Envelope {
            from: self.config.id,
            to,
            message,
        });
    }

    fn broadcast(&mut self, message: Message) {
        let others: Vec<NodeId> = self
            .voters
            .iter()
            .copied()
            .filter(|&voter| voter != self.config.id)
            .collect();
        for voter in others {
            self.send(voter, message.clone());
        }
    }

    fn advance_clock(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    #[cfg(test)]
    fn mutated(&self, mutation: Mutation) -> bool {
        self.mutation == Some(mutation)
    }

    #[cfg(not(test))]
    fn mutated(&self, _mutation: Mutation) -> bool {
        false
    }

    /// Cheap checks of what must always hold, after every input.
    fn check_invariants(&self) {
        assert!(self.applied_index <= self.commit_index);
        assert!(self.commit_index <= self.last_index());
        assert!(self.last_term() <= self.term);
        match &self.role {
            RoleState::Leader(state) => {
                assert_eq!(self.leader, Some(self.config.id));
                assert_eq!(self.voted_for, Some(self.config.id));
                assert_eq!(state.progress.len() + 1, self.voters.len());
                assert_eq!(
                    self.last_term(),
                    self.term,
                    "a leader's log ends in its term"
                );
            }
            RoleState::Candidate { granted } => {
                assert_eq!(self.voted_for, Some(self.config.id));
                assert!(granted.len() < self.config.quorum());
            }
            RoleState::PreCandidate { granted } => {
                assert!(granted.len() < self.config.quorum());
            }
            RoleState::Follower { .. } => {
                assert_ne!(self.leader, Some(self.config.id));
            }
        }
        if self.leader.is_some() {
            assert!(!matches!(
                self.role,
                RoleState::Candidate { .. } | RoleState::PreCandidate { .. }
            ));
        }
    }
}

#[cfg(test)]
mod tests;
