//! Deterministic cluster simulator for the consensus core: N nodes, a lossy, duplicating,
//! reordering network, partitions, crashes that keep only what was persisted, and simulated
//! time, all drawn from one seed. Raft's safety properties are checked after every event;
//! after the faults heal the cluster must elect a leader and commit within a bound.
//!
//! Reproduce a failure with `RAFT_SIM_SEED=<seed> cargo test sim::`; sweep more seeds with
//! `RAFT_SIM_SEEDS=<count>`.

use super::node::Mutation;
use super::{Config, Entry, EntryKind, Envelope, Message, NodeId, PersistentState, Raft, Role};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

/// The simulator's random source: the project's splitmix64 with a per-mille helper.
#[derive(Debug, Clone)]
pub(crate) struct Rng(crate::mix::SplitMix64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(crate::mix::SplitMix64::new(seed))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..bound` (the modulo bias is irrelevant here).
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        self.0.below(bound)
    }

    pub(crate) fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1_000) < per_mille
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub voters: i32,
    /// Simulated time with faults on.
    pub fault_phase_ms: u64,
    /// After healing, a fresh entry must be committed within this ...
    pub liveness_bound_ms: u64,
    /// ... and delivered by every node within this more (lagging nodes catch up at
    /// `append_entries_max` entries per round trip).
    pub catch_up_bound_ms: u64,
    pub append_entries_max: usize,
    /// Small jitter makes concurrent candidacies (split votes) common, which is where a
    /// double vote would show.
    pub election_jitter_ms: u64,
    /// Chance to bounce a node right after it granted a vote (and sent the grant).
    pub bounce_after_vote_per_mille: u64,
    pub drop_per_mille: u64,
    pub duplicate_per_mille: u64,
    /// Each message is delayed uniformly in `1..=delay_ms_max`: this is what reorders.
    pub delay_ms_max: u64,
    /// A nemesis action (crash, restart, partition, heal) every `1..=` this many ms.
    pub nemesis_interval_ms_max: u64,
    /// A client proposal to a random node every `1..=` this many ms.
    pub propose_interval_ms_max: u64,
    pub mutation: Option<Mutation>,
    /// Random crashes, restarts and partitions in the fault phase (off for scripts).
    pub nemesis: bool,
    /// Random client proposals in the fault phase (off for scripts).
    pub client: bool,
}

impl Options {
    pub(crate) fn new(voters: i32) -> Options {
        Options {
            voters,
            fault_phase_ms: 20_000,
            liveness_bound_ms: 15_000,
            catch_up_bound_ms: 60_000,
            append_entries_max: 64,
            election_jitter_ms: 500,
            bounce_after_vote_per_mille: 0,
            drop_per_mille: 50,
            duplicate_per_mille: 30,
            delay_ms_max: 40,
            nemesis_interval_ms_max: 2_000,
            propose_interval_ms_max: 150,
            mutation: None,
            nemesis: true,
            client: true,
        }
    }

    /// A fault profile drawn from the seed, from calm to harsh, so that a sweep covers both
    /// long stable leaderships (long logs, many commits) and constant churn.
    pub(crate) fn for_seed(voters: i32, seed: u64) -> Options {
        let mut rng = Rng::new(seed ^ 0x5EED_F00D);
        let mut pick = |choices: &[u64]| choices[rng.below(choices.len() as u64) as usize];
        Options {
            drop_per_mille: pick(&[0, 20, 100, 300]),
            duplicate_per_mille: pick(&[0, 30, 100]),
            delay_ms_max: pick(&[5, 40, 150]),
            nemesis_interval_ms_max: pick(&[300, 2_000, 8_000]),
            propose_interval_ms_max: pick(&[20, 150]),
            append_entries_max: pick(&[1, 4, 64]) as usize,
            election_jitter_ms: pick(&[500, 500, 20]),
            bounce_after_vote_per_mille: pick(&[0, 100]),
            ..Options::new(voters)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// A node panicked (a broken internal invariant).
    Crash,
    /// A Raft safety property was violated.
    Safety,
    /// No commit within the bound after the faults healed.
    Liveness,
}

#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub seed: u64,
    pub kind: FailureKind,
    pub message: String,
    pub trace: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {} failed ({:?}): {}\nreproduce: RAFT_SIM_SEED={} cargo test sim::\nlast events:",
            self.seed, self.kind, self.message, self.seed
        )?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// What one run did, to show that the faults bite and to compare runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    pub delivered: u64,
    pub dropped: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub terms_with_leader: u64,
    pub committed: u64,
    /// Log writes that removed entries (conflict repair).
    pub truncations: u64,
    /// FNV-1a over every event: equal for equal seeds.
    pub trace_hash: u64,
}

/// Run one seed. Never panics: a panic inside a node is reported as `FailureKind::Crash`.
pub(crate) fn run(seed: u64, options: &Options) -> Result<Stats, Failure> {
    run_script(seed, options, Sim::run)
}

/// Run a scripted scenario instead of the random fault phase.
fn run_script(
    seed: u64,
    options: &Options,
    script: impl FnOnce(&mut Sim) -> Verdict,
) -> Result<Stats, Failure> {
    let mut sim = Sim::new(seed, options.clone());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| script(&mut sim)));
    match result {
        Ok(Ok(())) => Ok(sim.stats),
        Ok(Err((kind, message))) => Err(sim.failure(kind, message)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".to_string());
            Err(sim.failure(FailureKind::Crash, message))
        }
    }
}

type Verdict = Result<(), (FailureKind, String)>;

/// Events kept for the failure report.
const TRACE_EVENTS_MAX: usize = 60;
/// Events at one instant before the simulator declares a livelock (a node whose tick
/// deadline never moves forward).
const EVENTS_PER_INSTANT_MAX: u64 = 10_000;
const LIVENESS_PAYLOAD_PREFIX: &[u8] = b"live-";

struct Slot {
    raft: Option<Raft>,
    disk: PersistentState,
    /// Entries this run of the node has delivered through `poll_committed`.
    applied_index: u64,
    saw_liveness_entry: bool,
}

struct Sim {
    seed: u64,
    options: Options,
    rng: Rng,
    now_ms: u64,
    slots: BTreeMap<NodeId, Slot>,
    /// In-flight messages by delivery time, then send order.
    network: BTreeMap<(u64, u64), Envelope>,
    network_sequence: u64,
    /// Partition group per node; nodes talk only within a group. Empty: fully connected.
    partition: BTreeMap<NodeId, u64>,
    faults: bool,
    nemesis_next_ms: u64,
    /// Nodes to restart, by time: a bounce is a crash and a restart soon after.
    restarts: BTreeMap<(u64, NodeId), ()>,
    propose_next_ms: u64,
    proposals: u64,
    checker: Checker,
    stats: Stats,
    trace: VecDeque<String>,
    instant_events: u64,
}

#[derive(Default)]
struct Checker {
    /// Election Safety: the one leader of each term.
    leaders: BTreeMap<u64, NodeId>,
    /// State Machine Safety: every committed entry, with the term of the leader that
    /// committed it (the first node to report it).
    committed: BTreeMap<u64, (Entry, u64)>,
    /// Log Matching, inductively: an (index, term) pair fixes the entry's content and the
    /// term before it, hence (by induction) the whole prefix.
    entries: BTreeMap<(u64, u64), (EntryKind, Vec<u8>, u64)>,
}

impl Sim {
    fn new(seed: u64, options: Options) -> Sim {
        let mut rng = Rng::new(seed);
        let mut slots = BTreeMap::new();
        for id in 1..=options.voters {
            let raft = Self::start_node(&options, id, PersistentState::default(), 0, &mut rng)
                .expect("a fresh node starts");
            let slot = Slot {
                raft: Some(raft),
                disk: PersistentState::default(),
                applied_index: 0,
                saw_liveness_entry: false,
            };
            slots.insert(id, slot);
        }
        let nemesis_next_ms = 1 + rng.below(options.nemesis_interval_ms_max);
        Sim {
            seed,
            options,
            rng,
            now_ms: 0,
            slots,
            network: BTreeMap::new(),
            network_sequence: 0,
            partition: BTreeMap::new(),
            faults: true,
            nemesis_next_ms,
            restarts: BTreeMap::new(),
            propose_next_ms: 0,
            proposals: 0,
            checker: Checker::default(),
            stats: Stats {
                trace_hash: 0xcbf2_9ce4_8422_2325,
                ..Stats::default()
            },
            trace: VecDeque::new(),
            instant_events: 0,
        }
    }

    fn start_node(
        options: &Options,
        id: NodeId,
        disk: PersistentState,
        now_ms: u64,
        rng: &mut Rng,
    ) -> Result<Raft, String> {
        let mut config = Config::new(id, (1..=options.voters).collect());
        config.election_timeout_ms = 1_000;
        config.election_jitter_ms = options.election_jitter_ms;
        config.heartbeat_interval_ms = 100;
        config.append_entries_max = options.append_entries_max;
        config.uncommitted_entries_max = 64;
        let mut raft =
            Raft::new(config, disk, now_ms, rng.next_u64()).map_err(|e| e.to_string())?;
        raft.mutation = options.mutation;
        Ok(raft)
    }

    fn run(&mut self) -> Verdict {
        while self.now_ms < self.options.fault_phase_ms {
            self.step()?;
        }
        self.converge()
    }

    /// Heal, then a leader must commit a fresh entry within the bound and every node must
    /// deliver it; then compare all logs.
    fn converge(&mut self) -> Verdict {
        self.heal();
        let healed_ms = self.now_ms;
        let commit_deadline_ms = healed_ms + self.options.liveness_bound_ms;
        let catch_up_deadline_ms = commit_deadline_ms + self.options.catch_up_bound_ms;
        while !self.slots.values().all(|slot| slot.saw_liveness_entry) {
            let committed = self.slots.values().any(|slot| slot.saw_liveness_entry);
            if (!committed && self.now_ms >= commit_deadline_ms)
                || self.now_ms >= catch_up_deadline_ms
            {
                let states: Vec<String> =
                    self.slots.iter().map(|(id, s)| describe(*id, s)).collect();
                let what = if committed {
                    "delivered on every node"
                } else {
                    "committed"
                };
                return Err((
                    FailureKind::Liveness,
                    format!(
                        "no entry {what} {} ms after healing: {}",
                        self.now_ms - healed_ms,
                        states.join("; ")
                    ),
                ));
            }
            self.step()?;
        }
        self.check_logs_pairwise()
    }

    /// Process the next event: a delivery, a tick, a nemesis action or a proposal.
    fn step(&mut self) -> Verdict {
        let delivery_ms = self.network.keys().next().map(|&(at_ms, _)| at_ms);
        let tick = self
            .slots
            .iter()
            .filter_map(|(&id, slot)| slot.raft.as_ref().map(|r| (r.tick_deadline_ms(), id)))
            .min();
        let nemesis_ms = if self.faults && self.options.nemesis {
            self.nemesis_next_ms
        } else {
            u64::MAX
        };
        if self.faults && !self.options.client {
            self.propose_next_ms = u64::MAX;
        }
        let restart = self.restarts.keys().next().copied();
        let next_ms = [
            delivery_ms.unwrap_or(u64::MAX),
            tick.map_or(u64::MAX, |(at_ms, _)| at_ms),
            nemesis_ms,
            restart.map_or(u64::MAX, |(at_ms, _)| at_ms),
            self.propose_next_ms,
        ]
        .into_iter()
        .min()
        .expect("five candidates");
        if next_ms > self.now_ms {
            self.now_ms = next_ms;
            self.instant_events = 0;
        }
        self.instant_events += 1;
        if self.instant_events > EVENTS_PER_INSTANT_MAX {
            return Err((
                FailureKind::Liveness,
                "livelock: time does not advance".into(),
            ));
        }
        if delivery_ms.is_some_and(|at_ms| at_ms <= self.now_ms) {
            let (_, envelope) = self.network.pop_first().expect("a delivery is due");
            return self.deliver(envelope);
        }
        if let Some((at_ms, id)) = tick {
            if at_ms <= self.now_ms {
                let random = self.rng.next_u64();
                let now_ms = self.now_ms;
                self.record(format!("tick {id}"));
                self.raft(id).tick(now_ms, random);
                return self.drain(id);
            }
        }
        if let Some((at_ms, id)) = restart {
            if at_ms <= self.now_ms {
                self.restarts.remove(&(at_ms, id));
                if self.slots[&id].raft.is_none() {
                    self.restart(id)?;
                }
                return Ok(());
            }
        }
        if nemesis_ms <= self.now_ms {
            self.nemesis_next_ms =
                self.now_ms + 1 + self.rng.below(self.options.nemesis_interval_ms_max);
            return self.nemesis();
        }
        self.propose_next_ms =
            self.now_ms + 1 + self.rng.below(self.options.propose_interval_ms_max);
        self.propose()
    }

    fn deliver(&mut self, envelope: Envelope) -> Verdict {
        let to = envelope.to;
        let up = self.slots.get(&to).is_some_and(|slot| slot.raft.is_some());
        let connected = self.partition.get(&envelope.from) == self.partition.get(&to);
        if !up || !connected {
            self.stats.dropped += 1;
            return Ok(());
        }
        self.stats.delivered += 1;
        self.record(format!(
            "deliver {}->{} {}",
            envelope.from,
            to,
            summarize(&envelope.message)
        ));
        let random = self.rng.next_u64();
        let now_ms = self.now_ms;
        self.raft(to).handle(envelope, now_ms, random);
        self.drain(to)
    }

    fn propose(&mut self) -> Verdict {
        let up: Vec<NodeId> = self
            .slots
            .iter()
            .filter(|(_, slot)| slot.raft.is_some())
            .map(|(&id, _)| id)
            .collect();
        if up.is_empty() {
            return Ok(());
        }
        // With faults on, clients pick any node (most refuse); after healing, the liveness
        // client goes to a leader of the highest term, as a client following hints would.
        let leaders: Vec<NodeId> = self
            .slots
            .iter()
            .filter(|(_, slot)| slot.raft.as_ref().is_some_and(|r| r.role() == Role::Leader))
            .map(|(&id, _)| id)
            .collect();
        // Half the proposals go to a node that thinks it leads (stale leaders included), so
        // that stale leaders grow logs that must later be repaired.
        let target = if self.faults {
            if !leaders.is_empty() && self.rng.chance(500) {
                leaders[self.rng.below(leaders.len() as u64) as usize]
            } else {
                up[self.rng.below(up.len() as u64) as usize]
            }
        } else {
            let leader = self
                .slots
                .iter()
                .filter_map(|(&id, slot)| slot.raft.as_ref().map(|r| (r, id)))
                .filter(|(r, _)| r.role() == Role::Leader)
                .max_by_key(|(r, _)| r.term())
                .map(|(_, id)| id);
            match leader {
                Some(id) => id,
                None => return Ok(()),
            }
        };
        self.proposals += 1;
        let payload = if self.faults {
            format!("cmd-{}", self.proposals).into_bytes()
        } else {
            let mut payload = LIVENESS_PAYLOAD_PREFIX.to_vec();
            payload.extend_from_slice(self.proposals.to_string().as_bytes());
            payload
        };
        let result = self.raft(target).propose(payload);
        self.record(format!("propose at {target}: {result:?}"));
        self.drain(target)
    }

    fn nemesis(&mut self) -> Verdict {
        let ids: Vec<NodeId> = self.slots.keys().copied().collect();
        match self.rng.below(10) {
            0..=2 => {
                let id = ids[self.rng.below(ids.len() as u64) as usize];
                if self.slots[&id].raft.is_some() {
                    self.crash(id);
                } else {
                    self.restart(id)?;
                }
            }
            3..=5 => {
                let down: Vec<NodeId> = ids
                    .iter()
                    .copied()
                    .filter(|id| self.slots[id].raft.is_none())
                    .collect();
                if let Some(&id) = down.first() {
                    self.restart(id)?;
                }
            }
            6 => {
                // Bounce: the window between persisting and sending is where lost state
                // (an unpersisted vote, say) would show.
                let id = ids[self.rng.below(ids.len() as u64) as usize];
                if self.slots[&id].raft.is_some() {
                    self.crash(id);
                    let at_ms = self.now_ms + 1 + self.rng.below(50);
                    self.restarts.insert((at_ms, id), ());
                }
            }
            7 => {
                self.partition = ids.iter().map(|&id| (id, self.rng.below(2))).collect();
                self.stats.partitions += 1;
                self.record(format!("partition {:?}", self.partition));
            }
            _ => {
                self.partition.clear();
                self.record("partition healed".into());
            }
        }
        Ok(())
    }

    fn crash(&mut self, id: NodeId) {
        let slot = self.slots.get_mut(&id).expect("known node");
        slot.raft = None;
        self.stats.crashes += 1;
        self.record(format!("crash {id}"));
    }

    fn restart(&mut self, id: NodeId) -> Verdict {
        let disk = self.slots[&id].disk.clone();
        let raft =
            Self::start_node(&self.options, id, disk, self.now_ms, &mut self.rng).map_err(|e| {
                (
                    FailureKind::Safety,
                    format!("node {id} cannot restart: {e}"),
                )
            })?;
        let slot = self.slots.get_mut(&id).expect("known node");
        slot.raft = Some(raft);
        slot.applied_index = 0;
        self.record(format!("restart {id}"));
        Ok(())
    }

    /// End of the fault phase: every node up, no partition, no loss or duplication.
    fn heal(&mut self) {
        self.faults = false;
        self.propose_next_ms = self.now_ms;
        self.restarts.clear();
        self.partition.clear();
        let down: Vec<NodeId> = self
            .slots
            .iter()
            .filter(|(_, s)| s.raft.is_none())
            .map(|(&id, _)| id)
            .collect();
        for id in down {
            self.restart(id)
                .expect("restart checked when it was persisted");
        }
        self.record("healed".into());
    }

    /// The shell's side of the contract after every input: persist, then send, then apply,
    /// checking safety on the way.
    fn drain(&mut self, id: NodeId) -> Verdict {
        let slot = self.slots.get_mut(&id).expect("known node");
        let raft = slot.raft.as_mut().expect("drained node is up");
        let mut writes = Vec::new();
        while let Some(request) = raft.poll_persist() {
            writes.push(request);
        }
        let messages = raft.poll_messages();
        let committed = raft.poll_committed();
        let (role, term) = (raft.role(), raft.term());
        let granted_vote = messages.iter().any(|envelope| {
            matches!(
                envelope.message,
                Message::VoteResponse {
                    granted: true,
                    pre_vote: false,
                    ..
                }
            )
        });

        for request in writes {
            if let Some(write) = &request.log_write {
                self.check_write(id, write.after_index)?;
                if (write.after_index as usize) < self.slots[&id].disk.log.len() {
                    self.stats.truncations += 1;
                }
            }
            let slot = self.slots.get_mut(&id).expect("known node");
            slot.disk.apply(&request);
            if let Some(write) = &request.log_write {
                for entry in &write.entries {
                    self.check_log_matching(id, entry)?;
                }
            }
        }
        for envelope in messages {
            self.send(envelope);
        }
        if role == Role::Leader {
            self.check_leader(id, term)?;
        }
        for entry in committed {
            self.check_committed(id, term, entry)?;
        }
        if self.faults && granted_vote && self.rng.chance(self.options.bounce_after_vote_per_mille)
        {
            self.crash(id);
            let at_ms = self.now_ms + 1 + self.rng.below(20);
            self.restarts.insert((at_ms, id), ());
        }
        Ok(())
    }

    fn send(&mut self, envelope: Envelope) {
        if self.faults && self.rng.chance(self.options.drop_per_mille) {
            self.stats.dropped += 1;
            return;
        }
        let copies = if self.faults && self.rng.chance(self.options.duplicate_per_mille) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay_ms = 1 + self.rng.below(self.options.delay_ms_max);
            self.network_sequence += 1;
            self.network.insert(
                (self.now_ms + delay_ms, self.network_sequence),
                envelope.clone(),
            );
        }
    }

    /// Committed entries never leave a log that holds them (truncation repairs only
    /// uncommitted suffixes).
    fn check_write(&self, id: NodeId, after_index: u64) -> Verdict {
        let disk = &self.slots[&id].disk;
        for entry in disk.log.iter().skip(after_index as usize) {
            let Some((committed, _)) = self.checker.committed.get(&entry.index) else {
                break;
            };
            if committed == entry {
                return Err((
                    FailureKind::Safety,
                    format!(
                        "node {id} removed committed entry {}@{}",
                        entry.index, entry.term
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_log_matching(&mut self, id: NodeId, entry: &Entry) -> Verdict {
        let disk = &self.slots[&id].disk;
        let prev_term = match entry.index {
            1 => 0,
            index => disk.log[(index - 2) as usize].term,
        };
        let key = (entry.index, entry.term);
        let value = (entry.kind, entry.payload.clone(), prev_term);
        match self.checker.entries.get(&key) {
            Some(known) if *known != value => Err((
                FailureKind::Safety,
                format!(
                    "log matching: node {id} holds {}@{} as {:?} after term {prev_term}, elsewhere {:?}",
                    entry.index, entry.term, value, known
                ),
            )),
            Some(_) => Ok(()),
            None => {
                self.checker.entries.insert(key, value);
                Ok(())
            }
        }
    }

    /// Election Safety, and Leader Completeness for a leader seen for the first time.
    fn check_leader(&mut self, id: NodeId, term: u64) -> Verdict {
        match self.checker.leaders.get(&term) {
            Some(&leader) if leader != id => {
                return Err((
                    FailureKind::Safety,
                    format!("election safety: nodes {leader} and {id} both lead term {term}"),
                ))
            }
            Some(_) => return Ok(()),
            None => {}
        }
        self.checker.leaders.insert(term, id);
        self.stats.terms_with_leader += 1;
        self.record(format!("{id} leads term {term}"));
        let log = &self.slots[&id].disk.log;
        for (entry, commit_term) in self.checker.committed.values() {
            if *commit_term < term && log.get((entry.index - 1) as usize) != Some(entry) {
                return Err((
                    FailureKind::Safety,
                    format!(
                        "leader completeness: leader {id} of term {term} lacks {}@{} committed in term {commit_term}",
                        entry.index, entry.term
                    ),
                ));
            }
        }
        Ok(())
    }

    /// State Machine Safety and in-order, exactly-once delivery per node run; Leader
    /// Completeness for entries committed while later leaders exist.
    fn check_committed(&mut self, id: NodeId, term: u64, entry: Entry) -> Verdict {
        let slot = self.slots.get_mut(&id).expect("known node");
        if entry.index != slot.applied_index + 1 {
            return Err((
                FailureKind::Safety,
                format!(
                    "node {id} delivered {} after {}",
                    entry.index, slot.applied_index
                ),
            ));
        }
        slot.applied_index = entry.index;
        if !self.faults && entry.payload.starts_with(LIVENESS_PAYLOAD_PREFIX) {
            slot.saw_liveness_entry = true;
        }
        if let Some((known, _)) = self.checker.committed.get(&entry.index) {
            if *known != entry {
                return Err((
                    FailureKind::Safety,
                    format!(
                        "state machine safety: node {id} committed {:?} at {}, another node {:?}",
                        entry, entry.index, known
                    ),
                ));
            }
            return Ok(());
        }
        for (&other, slot) in &self.slots {
            let Some(raft) = &slot.raft else { continue };
            let later_leader = raft.role() == Role::Leader && raft.term() > term;
            if later_leader && slot.disk.log.get((entry.index - 1) as usize) != Some(&entry) {
                return Err((
                    FailureKind::Safety,
                    format!(
                        "leader completeness: leader {other} of term {} lacks {}@{} committed in term {term}",
                        raft.term(),
                        entry.index,
                        entry.term
                    ),
                ));
            }
        }
        self.stats.committed += 1;
        self.checker.committed.insert(entry.index, (entry, term));
        Ok(())
    }

    /// Log Matching directly, at the end: two logs with an equal (index, term) are equal up
    /// to there.
    fn check_logs_pairwise(&self) -> Verdict {
        let logs: Vec<(NodeId, &Vec<Entry>)> = self
            .slots
            .iter()
            .map(|(&id, slot)| (id, &slot.disk.log))
            .collect();
        for (position, &(a, log_a)) in logs.iter().enumerate() {
            for &(b, log_b) in &logs[position + 1..] {
                let common = log_a.len().min(log_b.len());
                let Some(last_equal) = (0..common).rev().find(|&i| log_a[i].term == log_b[i].term)
                else {
                    continue;
                };
                if log_a[..=last_equal] != log_b[..=last_equal] {
                    return Err((
                        FailureKind::Safety,
                        format!(
                            "log matching: logs of {a} and {b} differ before index {}",
                            last_equal + 1
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn raft(&mut self, id: NodeId) -> &mut Raft {
        self.slots
            .get_mut(&id)
            .and_then(|slot| slot.raft.as_mut())
            .expect("node is up")
    }

    fn record(&mut self, event: String) {
        for byte in self.now_ms.to_le_bytes().iter().chain(event.as_bytes()) {
            self.stats.trace_hash ^= u64::from(*byte);
            self.stats.trace_hash = self.stats.trace_hash.wrapping_mul(0x0100_0000_01b3);
        }
        if self.trace.len() == TRACE_EVENTS_MAX {
            self.trace.pop_front();
        }
        self.trace
            .push_back(format!("{:>6} ms  {event}", self.now_ms));
    }

    fn failure(&self, kind: FailureKind, message: String) -> Failure {
        Failure {
            seed: self.seed,
            kind,
            message,
            trace: self.trace.iter().cloned().collect(),
        }
    }
}

fn describe(id: NodeId, slot: &Slot) -> String {
    match &slot.raft {
        None => format!("{id} down"),
        Some(raft) => format!(
            "{id} {:?} term={} leader={:?} commit={} last={}@{}",
            raft.role(),
            raft.term(),
            raft.leader(),
            raft.commit_index(),
            raft.last_index(),
            raft.last_term()
        ),
    }
}

fn summarize(message: &Message) -> String {
    match message {
        Message::FetchResponse { term, result } => match result {
            super::FetchResult::Entries {
                prev_index,
                entries,
                commit_index,
                ..
            } => format!(
                "FetchResponse term={term} prev={prev_index} entries={} commit={commit_index}",
                entries.len()
            ),
            other => format!("FetchResponse term={term} {other:?}"),
        },
        other => format!("{other:?}"),
    }
}

// Scripting, for scenarios that random faults reach too rarely.
impl Sim {
    /// Step until `condition` holds (true) or `timeout_ms` passes (false).
    fn run_until(
        &mut self,
        timeout_ms: u64,
        condition: impl Fn(&Sim) -> bool,
    ) -> Result<bool, (FailureKind, String)> {
        let deadline_ms = self.now_ms + timeout_ms;
        while self.now_ms < deadline_ms {
            if condition(self) {
                return Ok(true);
            }
            self.step()?;
        }
        Ok(condition(self))
    }

    /// Only nodes within one group talk; every node not listed is alone.
    fn isolate(&mut self, groups: &[&[NodeId]]) {
        let ids: Vec<NodeId> = self.slots.keys().copied().collect();
        self.partition = ids.iter().map(|&id| (id, 1_000 + id as u64)).collect();
        for (number, group) in groups.iter().enumerate() {
            for id in group.iter() {
                self.partition.insert(*id, number as u64);
            }
        }
        self.record(format!("partition {:?}", self.partition));
    }

    fn node(&self, id: NodeId) -> Option<&Raft> {
        self.slots.get(&id).and_then(|slot| slot.raft.as_ref())
    }

    /// The leader of the highest term among `ids`, if any.
    fn leader_among(&self, ids: &[NodeId]) -> Option<NodeId> {
        ids.iter()
            .filter_map(|&id| self.node(id).map(|raft| (raft, id)))
            .filter(|(raft, _)| raft.role() == Role::Leader)
            .max_by_key(|(raft, _)| raft.term())
            .map(|(_, id)| id)
    }

    fn propose_to(&mut self, id: NodeId, payload: &[u8]) -> Verdict {
        let result = self.raft(id).propose(payload.to_vec());
        self.record(format!("propose at {id}: {result:?}"));
        self.drain(id)
    }
}

/// Raft's figure 8 with five nodes, driven by partitions: a leader W replicates entries of an
/// older term to a quorum and is cut off before its own term's entry reaches a quorum; a node
/// C holding a newer-term entry at the same index then runs with the rest. Correct code has
/// not committed W's old-term entries, so C may overwrite them; code that commits old-term
/// entries by counting has, and C's election breaks Leader Completeness.
fn figure_8(sim: &mut Sim) -> Verdict {
    let all: Vec<NodeId> = sim.slots.keys().copied().collect();
    let setup_failed = |step: &str| Err((FailureKind::Liveness, format!("figure 8 setup: {step}")));
    // 1. A leader A whose leader change entry is committed.
    let ready = sim.run_until(10_000, |sim| {
        sim.leader_among(&all)
            .and_then(|id| sim.node(id))
            .is_some_and(|raft| raft.commit_index() == raft.last_index())
    })?;
    let Some(a) = sim.leader_among(&all).filter(|_| ready) else {
        return setup_failed("no first leader");
    };
    let rest: Vec<NodeId> = all.iter().copied().filter(|&id| id != a).collect();
    let (b, c_side) = (rest[0], rest[1..].to_vec());
    let prefix_index = sim.node(a).expect("leader is up").last_index();
    // 2. A appends three entries that reach only B.
    sim.isolate(&[&[a, b]]);
    for payload in [b"old-1", b"old-2", b"old-3"] {
        sim.propose_to(a, payload)?;
    }
    if !sim.run_until(900, |sim| {
        sim.node(b)
            .is_some_and(|r| r.last_index() == prefix_index + 3)
    })? {
        return setup_failed("B did not get A's entries");
    }
    // 3. C wins an election among the three others and is cut off at once: its leader change
    // entry (a newer term, at A's first old entry's index) stays on C alone.
    sim.isolate(&[&c_side]);
    if !sim.run_until(10_000, |sim| sim.leader_among(&c_side).is_some())? {
        return setup_failed("no leader among the other three");
    }
    let c = sim.leader_among(&c_side).expect("checked");
    let d_e: Vec<NodeId> = c_side.iter().copied().filter(|&id| id != c).collect();
    sim.isolate(&[&d_e]);
    // 4. A or B (W) wins with D and E and replicates the old entries one per fetch. Once W
    // reports any of them committed, cut W off.
    sim.isolate(&[&[a, b, d_e[0], d_e[1]]]);
    let w_committed = |sim: &Sim| {
        [a, b].iter().any(|&id| {
            sim.node(id)
                .is_some_and(|r| r.role() == Role::Leader && r.commit_index() > prefix_index)
        })
    };
    if !sim.run_until(10_000, w_committed)? {
        return setup_failed("no new leader among A, B, D, E");
    }
    let w = [a, b]
        .into_iter()
        .find(|&id| sim.node(id).is_some_and(|r| r.role() == Role::Leader));
    let other = if w == Some(a) { b } else { a };
    sim.isolate(&[&[c, d_e[0], d_e[1]], &[other]]);
    // 5. C, D and E run on; C may win only if D and E lack W's own term entry.
    sim.run_until(5_000, |_| false)?;
    sim.converge()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeds per sweep by default: sized to keep `cargo test` within its budget on two
    /// cores; raise with RAFT_SIM_SEEDS for a soak.
    const SEEDS_DEFAULT: u64 = 1_000;

    fn seeds() -> Vec<u64> {
        if let Ok(seed) = std::env::var("RAFT_SIM_SEED") {
            return vec![seed.parse().expect("RAFT_SIM_SEED is a number")];
        }
        let count = std::env::var("RAFT_SIM_SEEDS")
            .ok()
            .map(|count| count.parse().expect("RAFT_SIM_SEEDS is a number"))
            .unwrap_or(SEEDS_DEFAULT);
        (0..count).collect()
    }

    fn sweep(voters: i32, seed_base: u64) -> Stats {
        let mut total = Stats::default();
        for seed in seeds() {
            let seed = seed_base + seed;
            match run(seed, &Options::for_seed(voters, seed)) {
                Ok(stats) => {
                    total.delivered += stats.delivered;
                    total.dropped += stats.dropped;
                    total.crashes += stats.crashes;
                    total.partitions += stats.partitions;
                    total.terms_with_leader += stats.terms_with_leader;
                    total.committed += stats.committed;
                    total.truncations += stats.truncations;
                }
                Err(failure) => panic!("{failure}"),
            }
        }
        total
    }

    #[test]
    fn three_nodes_stay_safe_and_recover() {
        let total = sweep(3, 0);
        // The faults must bite, or the sweep proves nothing.
        if std::env::var("RAFT_SIM_SEED").is_err() {
            assert!(total.crashes > 0 && total.partitions > 0, "{total:?}");
            assert!(
                total.terms_with_leader > 2 * SEEDS_DEFAULT.min(10),
                "{total:?}"
            );
            assert!(total.truncations > 0, "{total:?}");
        }
    }

    #[test]
    fn five_nodes_stay_safe_and_recover() {
        let total = sweep(5, 1_000_000);
        if std::env::var("RAFT_SIM_SEED").is_err() {
            assert!(total.crashes > 0 && total.partitions > 0, "{total:?}");
            assert!(total.truncations > 0, "{total:?}");
        }
    }

    fn figure_8_options(mutation: Option<Mutation>) -> Options {
        Options {
            append_entries_max: 1,
            drop_per_mille: 0,
            duplicate_per_mille: 0,
            nemesis: false,
            client: false,
            mutation,
            ..Options::new(5)
        }
    }

    #[test]
    fn figure_8_is_safe() {
        for seed in 0..10 {
            if let Err(failure) = run_script(seed, &figure_8_options(None), figure_8) {
                panic!("{failure}");
            }
        }
    }

    /// Negative: committing an older term's entry by counting replicas is caught.
    #[test]
    fn figure_8_catches_commit_of_old_term_by_counting() {
        for seed in 0..10 {
            let options = figure_8_options(Some(Mutation::CommitOldTermByCounting));
            match run_script(seed, &options, figure_8) {
                Err(failure) if failure.kind == FailureKind::Safety => {}
                other => panic!("seed {seed}: the bug went unnoticed: {other:?}"),
            }
        }
    }

    /// The first seed at or after `seed_base` whose random run fails, within `seeds_max`.
    fn first_failure(
        voters: i32,
        mutation: Mutation,
        seed_base: u64,
        seeds_max: u64,
    ) -> Option<Failure> {
        (seed_base..seed_base + seeds_max).find_map(|seed| {
            let options = Options {
                mutation: Some(mutation),
                ..Options::for_seed(voters, seed)
            };
            run(seed, &options).err()
        })
    }

    /// Negative: voting without the election restriction is caught by random faults (about a
    /// third of seeds fail; the first is 7 at the time of writing).
    #[test]
    fn random_faults_catch_missing_election_restriction() {
        let failure = first_failure(3, Mutation::NoElectionRestriction, 0, 100)
            .expect("no seed caught voting for stale logs");
        assert_eq!(failure.kind, FailureKind::Safety, "{failure}");
    }

    /// Negative: a vote that is not persisted lets a bounced node vote twice in a term. Random
    /// faults catch it in about 1 seed in 200 (the first is 61 at the time of writing); the
    /// search stops at the first. If a change to the simulator moves it past the bound, raise
    /// the bound rather than drop the test.
    #[test]
    fn random_faults_catch_forgotten_vote() {
        let failure =
            first_failure(3, Mutation::ForgetVote, 0, 1_000).expect("no seed caught a double vote");
        assert_eq!(failure.kind, FailureKind::Safety, "{failure}");
        assert!(failure.message.contains("election safety"), "{failure}");
    }

    #[test]
    fn one_seed_one_history() {
        let options = Options::new(3);
        let first = run(7, &options).expect("seed 7 passes");
        let second = run(7, &options).expect("seed 7 passes");
        let other = run(8, &options).expect("seed 8 passes");
        assert_eq!(first, second);
        assert_ne!(first.trace_hash, other.trace_hash);
    }
}
