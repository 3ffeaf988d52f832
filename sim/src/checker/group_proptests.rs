//! Property tests of the group checkers: random valid consumer-group histories pass every
//! checker, and each group anomaly, planted in one, is always reported.
//!
//! A valid history comes from a model of one group of three members over three
//! partitions: a producer appends records; rebalances form new generations (eager: every
//! owner revokes first; cooperative: kept partitions are assigned again, moving ones are
//! revoked and assigned in a second generation), with members leaving cleanly or being
//! lost, and now and then an operator resetting a partition forward while nobody owns it;
//! an owner polls from its position, processes what it got and commits the next offset
//! (acknowledged, unknown but landed, or refused and retried); a commit sent before a
//! rebalance may be acknowledged after it; a former member's late commit is refused. A
//! final reader reads every partition.
//!
//! KIP-848 hand-overs have their own small model (`kip848_case`): partitions move one at
//! a time, each member with its own epoch, the old owner committing and revoking before
//! the new one is given the partition.

use proptest::prelude::*;
use proptest::strategy::ValueTree;

use crate::history::{Anomaly, History, Op, OpKind, Phase, Violation};

use super::testkit::{assert_report_well_formed, Case, Member};
use super::{check, group_stats};

const GROUP: &str = "g";
const TOPIC: &str = "t";
const PARTITIONS: usize = 3;
const MEMBERS: [&str; 3] = ["c1", "c2", "c3"];
const FINAL_READER: &str = "final-reader";
/// Records a member's poll, or the final reader's, returns at most.
const POLL_RECORDS_MAX: usize = 3;

type Step = (u8, u8, u8);

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(any::<Step>(), 10..120)
}

struct Model {
    case: Case,
    logs: Vec<Vec<String>>,
    next_value: usize,
    /// The current generation (0: none yet).
    generation: i32,
    /// Per partition: the member owning it in the current generation.
    owners: Vec<Option<usize>>,
    /// Per partition: the group's committed offset, which is also the owner's position
    /// (every owner commits what it processed before doing anything else).
    committed: Vec<i64>,
    /// Per member: its member id (a lost member comes back with a new one), and the last
    /// generation it joined.
    ids: Vec<String>,
    incarnations: Vec<usize>,
    joined: Vec<i32>,
}

impl Model {
    fn new() -> Self {
        Model {
            case: Case::new(),
            logs: vec![Vec::new(); PARTITIONS],
            next_value: 0,
            generation: 0,
            owners: vec![None; PARTITIONS],
            committed: vec![0; PARTITIONS],
            ids: (0..MEMBERS.len()).map(|m| format!("m{m}-0")).collect(),
            incarnations: vec![0; MEMBERS.len()],
            joined: vec![0; MEMBERS.len()],
        }
    }

    fn produce(&mut self, partition: usize, count: usize) {
        let values: Vec<String> = (0..count)
            .map(|_| {
                self.next_value += 1;
                format!("v{}", self.next_value)
            })
            .collect();
        let offset = self.logs[partition].len() as i64;
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        self.case
            .send("p1", TOPIC, partition as i32, &refs)
            .ok(offset);
        self.logs[partition].extend(values);
    }

    /// Member `m` joins: invoke now, ok later with [`Model::joined_ok`].
    fn join_invoke(&mut self, m: usize) -> usize {
        let member = Member::new(MEMBERS[m], GROUP, &self.ids[m]);
        self.case.join(member).pending()
    }

    fn give_up(&mut self, m: usize, partition: usize, lost: bool) {
        let generation = self.generation;
        let member = Member::new(MEMBERS[m], GROUP, &self.ids[m]);
        if lost {
            self.case.lose(member, generation, TOPIC, partition as i32);
        } else {
            self.case
                .revoke(member, generation, TOPIC, partition as i32);
        }
    }

    /// Forms the next generation with `chosen`: joins, then the Assigns of `assignment`; a
    /// member taking a partition it did not own seeks to the committed offset.
    fn form(&mut self, chosen: &[usize], assignment: &[Option<usize>]) {
        self.generation += 1;
        let generation = self.generation;
        let invokes: Vec<usize> = chosen.iter().map(|&m| self.join_invoke(m)).collect();
        // The leader (the first chosen) hears who is in the generation.
        if let Some(&leader) = chosen.first() {
            let members: Vec<String> = chosen.iter().map(|&m| self.ids[m].clone()).collect();
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            let leader = Member::new(MEMBERS[leader], GROUP, &self.ids[leader]);
            self.case.led(leader, generation, &members);
        }
        for (&m, invoke) in chosen.iter().zip(invokes) {
            self.case
                .complete_group(invoke, Phase::Ok, Some(generation));
            self.joined[m] = generation;
        }
        for (partition, owner) in assignment.iter().enumerate() {
            let Some(m) = *owner else {
                continue;
            };
            let member = Member::new(MEMBERS[m], GROUP, &self.ids[m]);
            self.case
                .assign(member, generation, TOPIC, partition as i32);
            if self.owners[partition] != Some(m) {
                let at = self.committed[partition];
                self.case.seek(MEMBERS[m], TOPIC, partition as i32, at);
            }
        }
        self.owners = assignment.to_vec();
    }

    fn rebalance(&mut self, a: u8, b: u8, c: u8) {
        let chosen: Vec<usize> = (0..MEMBERS.len())
            .filter(|m| (1 + b % 7) & (1 << m) != 0)
            .collect();
        let eager = c.is_multiple_of(2);
        let lose_leavers = (c >> 1).is_multiple_of(4);
        let in_flight = (c >> 5) % 2 == 1;
        let reset = !in_flight && (c >> 3).is_multiple_of(4);
        let reset_partition = a as usize % PARTITIONS;
        let target: Vec<Option<usize>> = (0..PARTITIONS)
            .map(|p| Some(chosen[(p + a as usize) % chosen.len()]))
            .collect();

        // An owner's commit sent before the rebalance, acknowledged after the joins.
        let pending = if in_flight {
            (0..PARTITIONS).find_map(|p| {
                let m = self.owners[p]?;
                let member = Member::new(MEMBERS[m], GROUP, &self.ids[m]);
                let (generation, offset) = (self.generation, self.committed[p]);
                Some(
                    self.case
                        .commit(member, generation, TOPIC, p as i32, offset)
                        .pending(),
                )
            })
        } else {
            None
        };
        let leaves = |owner: usize| !chosen.contains(&owner);
        let mut lost = Vec::new();
        if eager {
            for p in 0..PARTITIONS {
                if let Some(m) = self.owners[p] {
                    let is_lost = lose_leavers && leaves(m);
                    self.give_up(m, p, is_lost);
                    if is_lost {
                        lost.push(m);
                    }
                }
            }
            self.owners = vec![None; PARTITIONS];
            if reset {
                self.reset(reset_partition);
            }
            self.form(&chosen, &target);
        } else {
            // First generation: kept partitions only; the moving ones are revoked.
            let mut kept = vec![None; PARTITIONS];
            for p in 0..PARTITIONS {
                match self.owners[p] {
                    Some(m) if target[p] == Some(m) => kept[p] = Some(m),
                    Some(m) => {
                        let is_lost = lose_leavers && leaves(m);
                        self.give_up(m, p, is_lost);
                        if is_lost {
                            lost.push(m);
                        }
                    }
                    None => {}
                }
            }
            self.owners = (0..PARTITIONS)
                .map(|p| self.owners[p].filter(|_| kept[p].is_some()))
                .collect();
            self.form(&chosen, &kept);
            if reset && kept[reset_partition].is_none() {
                self.reset(reset_partition);
            }
            self.form(&chosen, &target);
        }
        if let Some(invoke) = pending {
            self.case.complete_group(invoke, Phase::Ok, None);
        }
        lost.sort_unstable();
        lost.dedup();
        for m in lost {
            self.incarnations[m] += 1;
            self.ids[m] = format!("m{m}-{}", self.incarnations[m]);
        }
    }

    /// An operator moves the committed offset of `partition` to its end.
    fn reset(&mut self, partition: usize) {
        let end = self.logs[partition].len() as i64;
        self.case
            .reset("operator", GROUP, TOPIC, partition as i32, end)
            .ok();
        self.committed[partition] = end;
    }

    fn work(&mut self, m: usize, b: u8, c: u8) {
        let owned: Vec<usize> = (0..PARTITIONS)
            .filter(|&p| self.owners[p] == Some(m))
            .collect();
        if owned.is_empty() {
            // A former member's late commit: refused.
            if self.joined[m] > 0 && self.joined[m] < self.generation {
                let generation = self.joined[m];
                let offset = self.committed[0] + 5;
                let id = self.ids[m].clone();
                let member = Member::new(MEMBERS[m], GROUP, &id);
                self.case
                    .commit(member, generation, TOPIC, 0, offset)
                    .fail();
            }
            return;
        }
        let p = owned[c as usize % owned.len()];
        let from = self.committed[p] as usize;
        let end = (from + 1 + b as usize % POLL_RECORDS_MAX).min(self.logs[p].len());
        let records: Vec<(i64, String)> = (from..end)
            .map(|o| (o as i64, self.logs[p][o].clone()))
            .collect();
        let refs: Vec<(i64, &str)> = records.iter().map(|(o, v)| (*o, v.as_str())).collect();
        self.case
            .poll(MEMBERS[m], TOPIC, p as i32, from as i64)
            .ok(&refs);
        let generation = self.generation;
        let id = self.ids[m].clone();
        let member = Member::new(MEMBERS[m], GROUP, &id);
        if !refs.is_empty() {
            self.case
                .process(member, generation, TOPIC, p as i32, &refs);
        }
        let next = end as i64;
        match (c >> 4) % 8 {
            // Unknown outcome, but it landed.
            0 => {
                self.case
                    .commit(member, generation, TOPIC, p as i32, next)
                    .info();
            }
            // A refused commit of a lower offset, then the right one.
            1 => {
                let lower = (next - 2).max(0);
                self.case
                    .commit(member, generation, TOPIC, p as i32, lower)
                    .fail();
                self.case
                    .commit(member, generation, TOPIC, p as i32, next)
                    .ok();
            }
            _ => {
                self.case
                    .commit(member, generation, TOPIC, p as i32, next)
                    .ok();
            }
        }
        self.committed[p] = next;
    }

    fn read_everything(&mut self) {
        for (partition, log) in self.logs.iter().enumerate() {
            self.case.seek(FINAL_READER, TOPIC, partition as i32, 0);
            let mut from = 0;
            loop {
                let end = (from + POLL_RECORDS_MAX).min(log.len());
                let records: Vec<(i64, &str)> =
                    (from..end).map(|o| (o as i64, log[o].as_str())).collect();
                self.case
                    .poll(FINAL_READER, TOPIC, partition as i32, from as i64)
                    .ok(&records);
                if records.is_empty() {
                    break;
                }
                from = end;
            }
        }
    }
}

fn valid_case(steps: &[Step]) -> Case {
    let mut model = Model::new();
    for &(a, b, c) in steps {
        match a % 8 {
            0 | 1 => model.produce(b as usize % PARTITIONS, 1 + c as usize % 3),
            2 => model.rebalance(a / 8, b, c),
            _ => model.work(b as usize % MEMBERS.len(), a / 8, c),
        }
    }
    model.read_everything();
    model.case
}

// ---------------------------------------------------------------------------------------
// Looking things up in a generated history, independently of the checkers.

fn group_ops(history: &History, kind: OpKind, phase: Phase) -> impl Iterator<Item = &Op> {
    history
        .ops
        .iter()
        .filter(move |op| op.kind == kind && op.phase == phase)
}

/// Where the last reset of `partition` is (its last op), if any.
fn last_reset(history: &History, partition: i32) -> Option<usize> {
    history
        .ops
        .iter()
        .filter(|op| op.kind == OpKind::Reset && op.partition == partition)
        .map(|op| op.index)
        .next_back()
}

/// Where the first reset of `partition` starts, if any.
fn first_reset(history: &History, partition: i32) -> Option<usize> {
    history
        .ops
        .iter()
        .find(|op| op.kind == OpKind::Reset && op.partition == partition)
        .map(|op| op.index)
}

/// Appends an acknowledged commit (invoke and ok) at the end of the history.
fn append_commit(
    case: &mut Case,
    member: Member<'_>,
    generation: i32,
    partition: i32,
    offset: i64,
) -> usize {
    case.commit(member, generation, TOPIC, partition, offset)
        .ok()
        .done
}

fn pick<T: Clone>(items: &[T], choice: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[choice % items.len()].clone())
}

/// Checks `case` and asserts that the report has a violation of `anomaly` that `shows`
/// accepts, and nothing else.
fn assert_found(
    case: &Case,
    anomaly: Anomaly,
    shows: impl Fn(&Violation) -> bool,
) -> Result<(), TestCaseError> {
    let found = check(&case.history, &case.options);
    assert_report_well_formed(case, &found);
    prop_assert!(
        found.iter().any(|v| v.anomaly == anomaly && shows(v)),
        "{} not reported: {found:#?}",
        anomaly.name()
    );
    prop_assert!(
        found.iter().all(|v| v.anomaly == anomaly),
        "unexpected anomalies: {found:#?}"
    );
    Ok(())
}

proptest! {
    #[test]
    fn valid_group_histories_pass(steps in steps()) {
        let case = valid_case(&steps);
        let found = check(&case.history, &case.options);
        assert_report_well_formed(&case, &found);
        prop_assert!(found.is_empty(), "{found:#?}");
        // The statistics: one rebalance per generation, none longer than the history,
        // and a group never ahead of what was acknowledged.
        let stats = group_stats(&case.history);
        let generations: std::collections::BTreeSet<i32> =
            group_ops(&case.history, OpKind::Join, Phase::Ok)
                .filter_map(|op| op.generation)
                .collect();
        let rebalances: Vec<i32> = stats
            .groups
            .iter()
            .flat_map(|g| g.rebalances.iter().map(|r| r.generation))
            .collect();
        prop_assert_eq!(rebalances, generations.into_iter().collect::<Vec<_>>());
        for group in &stats.groups {
            for lag in &group.lag {
                prop_assert!(lag.points.iter().all(|p| p.lag >= 0), "{lag:?}");
                prop_assert!(lag.points.windows(2).all(|w| w[0].time_ns < w[1].time_ns));
            }
        }
    }

    /// Another process assigned a partition some member owns, in that member's generation.
    #[test]
    fn a_second_owner_in_a_generation_is_split(steps in steps(), choice: usize) {
        let mut case = valid_case(&steps);
        let assigns: Vec<(i32, i32, usize)> = group_ops(&case.history, OpKind::Assign, Phase::Ok)
            .map(|op| (op.generation.unwrap(), op.partition, op.index))
            .collect();
        let Some((generation, partition, owner)) = pick(&assigns, choice) else {
            return Ok(());
        };
        let planted = case.assign(Member::new("c9", GROUP, "m9"), generation, TOPIC, partition);
        assert_found(&case, Anomaly::SplitOwnership, |v| {
            v.partition == partition && v.ops.contains(&owner) && v.ops.contains(&planted)
        })?;
    }

    /// A commit below the highest acknowledged one since the partition's last reset.
    #[test]
    fn a_commit_below_an_acknowledged_one_regresses(steps in steps(), choice: usize) {
        let mut case = valid_case(&steps);
        let history = &case.history;
        let highest: Vec<(i32, i64)> = (0..PARTITIONS as i32)
            .filter_map(|p| {
                let since = last_reset(history, p).unwrap_or(0);
                let top = group_ops(history, OpKind::Commit, Phase::Ok)
                    .filter(|op| op.partition == p && op.index > since)
                    .filter_map(|op| op.offset)
                    .max()?;
                (top > 0).then_some((p, top))
            })
            .collect();
        let Some((partition, top)) = pick(&highest, choice) else {
            return Ok(());
        };
        let generation = group_ops(history, OpKind::Join, Phase::Ok)
            .filter_map(|op| op.generation)
            .max()
            .unwrap_or(1);
        let planted = append_commit(&mut case, Member::new("c9", GROUP, "m9"), generation, partition, top - 1);
        assert_found(&case, Anomaly::CommitRegression, |v| v.ops[0] == planted)?;
    }

    /// Unprocess an offset below a commit acknowledged before any reset of its partition.
    #[test]
    fn an_unprocessed_record_committed_past_is_a_skip(steps in steps(), choice: usize) {
        let mut case = valid_case(&steps);
        let history = &case.history;
        let mut candidates: Vec<(i32, i64)> = Vec::new();
        for commit in group_ops(history, OpKind::Commit, Phase::Ok) {
            let before = first_reset(history, commit.partition).unwrap_or(usize::MAX);
            if commit.index > before {
                continue;
            }
            let below = commit.offset.unwrap();
            candidates.extend(
                group_ops(history, OpKind::Process, Phase::Ok)
                    .filter(|op| op.partition == commit.partition)
                    .flat_map(|op| op.records.iter().map(|(o, _)| *o))
                    .filter(|o| *o < below)
                    .map(|o| (commit.partition, o)),
            );
        }
        let Some((partition, offset)) = pick(&candidates, choice) else {
            return Ok(());
        };
        for op in case.history.ops.iter_mut().filter(|op| {
            op.kind == OpKind::Process && op.partition == partition
        }) {
            op.records.retain(|(o, _)| *o != offset);
        }
        assert_found(&case, Anomaly::CommitSkip, |v| {
            v.partition == partition && v.message.contains("no member of the group processed")
        })?;
    }

    /// A member of an older generation commits, acknowledged, after a newer one formed.
    #[test]
    fn an_old_generations_acknowledged_commit_is_stale(steps in steps(), choice: usize) {
        let mut case = valid_case(&steps);
        let history = &case.history;
        let newest = group_ops(history, OpKind::Join, Phase::Ok)
            .filter_map(|op| op.generation)
            .max()
            .unwrap_or(0);
        let older: Vec<(String, String, i32, i32)> = group_ops(history, OpKind::Assign, Phase::Ok)
            .filter(|op| op.generation.unwrap() < newest)
            .map(|op| {
                (
                    op.process.clone(),
                    op.member.clone().unwrap(),
                    op.generation.unwrap(),
                    op.partition,
                )
            })
            .collect();
        let Some((process, member, generation, partition)) = pick(&older, choice) else {
            return Ok(());
        };
        // At the offset the partition is committed at: neither back nor past anything.
        let since = last_reset(history, partition);
        let offset = group_ops(history, OpKind::Commit, Phase::Ok)
            .filter(|op| op.partition == partition && since.is_none_or(|r| op.index > r))
            .filter_map(|op| op.offset)
            .max()
            .or_else(|| since.and_then(|r| history.ops[r].offset))
            .unwrap_or(0);
        let planted = append_commit(
            &mut case,
            Member::new(&process, GROUP, &member),
            generation,
            partition,
            offset,
        );
        assert_found(&case, Anomaly::StaleCommit, |v| v.ops[0] == planted)?;
    }

    /// A listed member's JoinGroup for the generation never went out (its invokes since its
    /// previous generation are taken back): the generation holds a member that did not
    /// rejoin.
    #[test]
    fn a_generation_holding_a_member_that_did_not_rejoin_is_absent(
        steps in steps(),
        choice: usize,
    ) {
        let mut case = valid_case(&steps);
        let history = &case.history;
        // (the leader's record, the member, its previous Join ok) for members listed in a
        // generation after one they had joined.
        let mut listed = Vec::new();
        for led in group_ops(history, OpKind::Join, Phase::Info) {
            let generation = led.generation.unwrap();
            for member in &led.members {
                let previous = group_ops(history, OpKind::Join, Phase::Ok)
                    .filter(|op| op.index < led.index && op.member.as_ref() == Some(member))
                    .filter(|op| op.generation.unwrap() < generation)
                    .map(|op| op.index)
                    .last();
                if let Some(previous) = previous {
                    listed.push((led.index, member.clone(), previous));
                }
            }
        }
        let Some((led, member, previous)) = pick(&listed, choice) else {
            return Ok(());
        };
        for op in &mut case.history.ops[previous..led] {
            if op.kind == OpKind::Join && op.phase == Phase::Invoke && op.member.as_ref() == Some(&member) {
                op.member = None;
            }
        }
        assert_found(&case, Anomaly::AbsentMember, |v| v.ops[0] == led)?;
    }

    /// Another process processes a record a member processed.
    #[test]
    fn a_record_processed_again_is_processed_twice(steps in steps(), choice: usize) {
        let mut case = valid_case(&steps);
        let processed: Vec<(i32, i64, String, usize)> =
            group_ops(&case.history, OpKind::Process, Phase::Ok)
                .flat_map(|op| {
                    op.records
                        .iter()
                        .map(move |(o, v)| (op.partition, *o, v.clone(), op.index))
                })
                .collect();
        let Some((partition, offset, value, first)) = pick(&processed, choice) else {
            return Ok(());
        };
        let planted = case.process(
            Member::new("c9", GROUP, "m9"),
            1,
            TOPIC,
            partition,
            &[(offset, value.as_str())],
        );
        assert_found(&case, Anomaly::ProcessedTwice, |v| {
            v.partition == partition && v.ops == [first, planted]
        })?;
    }
}

/// The model must give the plantings something to plant in: most histories have two
/// generations or more, acknowledged commits and processed records, and some have resets,
/// lost members and commits acknowledged across a rebalance.
#[test]
fn the_group_model_gives_plantings_material() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = steps();
    let (mut generations, mut commits, mut resets, mut lost) = (0, 0, 0, 0);
    let runs = 100;
    for _ in 0..runs {
        let steps = strategy.new_tree(&mut runner).unwrap().current();
        let case = valid_case(&steps);
        let history = &case.history;
        generations += usize::from(
            group_ops(history, OpKind::Join, Phase::Ok)
                .filter_map(|op| op.generation)
                .max()
                .unwrap_or(0)
                >= 2,
        );
        commits += usize::from(
            group_ops(history, OpKind::Commit, Phase::Ok).any(|op| op.offset.unwrap() > 0),
        );
        resets += usize::from(
            group_ops(history, OpKind::Reset, Phase::Ok)
                .next()
                .is_some(),
        );
        lost += usize::from(
            group_ops(history, OpKind::Revoke, Phase::Info)
                .next()
                .is_some(),
        );
    }
    assert!(
        generations >= 70,
        "{generations} of {runs} have two generations"
    );
    assert!(
        commits >= 70,
        "{commits} of {runs} have commits past offset 0"
    );
    assert!(resets >= 20, "{resets} of {runs} have resets");
    assert!(lost >= 20, "{lost} of {runs} have lost members");
}

// ---------------------------------------------------------------------------------------
// KIP-848 hand-overs (stale-commit): partitions move one at a time between members, each
// with its own epoch; an owner commits, revokes, and only then is the partition given on.

/// A KIP-848 group history: `moves` are (partition, new owner, commits before the move);
/// returns the case and, per move, (old owner, old owner's epoch) when the partition had one.
fn kip848_case(moves: &[(u8, u8, u8)]) -> (Case, Vec<Option<(usize, i32)>>) {
    let mut case = Case::new();
    let ids: Vec<String> = (0..MEMBERS.len()).map(|m| format!("m{m}")).collect();
    let member = |m: usize| Member::new(MEMBERS[m], GROUP, &ids[m]);
    let mut epochs = [0i32; 3];
    let mut owners: [Option<usize>; PARTITIONS] = [None; PARTITIONS];
    let mut offsets = [0i64; PARTITIONS];
    let mut previous = Vec::new();
    for &(p, to, commits) in moves {
        let (p, to) = (p as usize % PARTITIONS, to as usize % MEMBERS.len());
        let from = owners[p];
        if from == Some(to) {
            previous.push(None);
            continue;
        }
        if let Some(from) = from {
            for _ in 0..commits % 3 {
                offsets[p] += 1;
                case.commit(member(from), epochs[from], TOPIC, p as i32, offsets[p])
                    .ok();
            }
            case.revoke(member(from), epochs[from], TOPIC, p as i32);
            // The revocation reported: the old owner moves to a new epoch.
            epochs[from] += 1;
        }
        previous.push(from.map(|f| (f, epochs[f] - 1)));
        epochs[to] += 1;
        case.assign(member(to), epochs[to], TOPIC, p as i32);
        owners[p] = Some(to);
        offsets[p] += 1;
        case.commit(member(to), epochs[to], TOPIC, p as i32, offsets[p])
            .ok();
    }
    (case, previous)
}

proptest! {
    #[test]
    fn kip848_hand_overs_after_revocation_are_not_stale(
        moves in proptest::collection::vec(any::<(u8, u8, u8)>(), 0..24)
    ) {
        let (mut case, _) = kip848_case(&moves);
        case.kip848();
        let found = super::stale_commits(&case.history);
        prop_assert!(found.is_empty(), "{found:#?}");
    }

    /// The old owner of a partition commits it, acknowledged, after it was given on.
    #[test]
    fn a_kip848_commit_after_the_hand_over_is_stale(
        moves in proptest::collection::vec(any::<(u8, u8, u8)>(), 1..24),
        choice: usize,
    ) {
        let (mut case, previous) = kip848_case(&moves);
        let handed: Vec<(usize, usize, i32)> = previous
            .iter()
            .enumerate()
            .filter_map(|(at, from)| from.map(|(m, epoch)| (at, m, epoch)))
            .collect();
        let Some((at, from, epoch)) = pick(&handed, choice) else {
            return Ok(());
        };
        let partition = (moves[at].0 as usize % PARTITIONS) as i32;
        let id = format!("m{from}");
        let planted = case
            .commit(Member::new(MEMBERS[from], GROUP, &id), epoch, TOPIC, partition, 99)
            .ok()
            .done;
        case.kip848();
        let found = super::stale_commits(&case.history);
        prop_assert!(
            found.iter().any(|v| v.anomaly == Anomaly::StaleCommit && v.ops[0] == planted),
            "not reported: {found:#?}"
        );
    }
}
