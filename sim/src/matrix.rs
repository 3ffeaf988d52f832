//! The guarantees matrix (`cargo lab matrix`): Kafka's durability promise, cell by cell,
//! against what the lab finds. A cell is one configuration (acks x min.insync.replicas x
//! unclean.leader.election.enable) under one fault sequence, on 3 brokers, 3 controllers
//! and one topic of replication factor 3. Each cell becomes a scenario file
//! (`reports/matrix/<cell>.toml`, so any seed can be replayed with `cargo lab repro`), runs
//! over a few seeds, and is judged here: a forbidden cell must never lose an acknowledged
//! record, an expected one must lose some in at least one seed, an allowed one is reported.
//!
//! Pure: cells, the promise table, the scenario text, the verdicts and the report. The
//! runs themselves happen in `bin/lab.rs` (simulated build only).

use crate::scenario::AcksSpec;
use std::fmt::Write as _;

/// Seeds per cell when the command line does not say.
pub const SEEDS_DEFAULT: u64 = 3;
/// `replica.lag.time.max.ms` in every cell: low, so the ISR shrinks within a run.
pub const REPLICA_LAG_TIME_MAX_MS: u64 = 2000;

/// A fault sequence of the matrix (the timelines are in [`Fault::faults_toml`] and
/// `scenarios/README.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    LeaderCrash,
    LeaderPartitioned,
    LaggingFollowerThenLeaderCrash,
    CorrelatedPowerLoss,
}

impl Fault {
    pub const ALL: [Fault; 4] = [
        Fault::LeaderCrash,
        Fault::LeaderPartitioned,
        Fault::LaggingFollowerThenLeaderCrash,
        Fault::CorrelatedPowerLoss,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::LeaderCrash => "leader-crash",
            Fault::LeaderPartitioned => "leader-partitioned",
            Fault::LaggingFollowerThenLeaderCrash => "lagging-follower-then-leader-crash",
            Fault::CorrelatedPowerLoss => "correlated-power-loss",
        }
    }

    /// The fault sequence as `[[fault]]` tables. The producer runs from 0 s to the end of
    /// the 40 s safety phase.
    pub fn faults_toml(self) -> &'static str {
        match self {
            // A process crash (page cache survives) of the leader; a follower in the ISR
            // takes over; the old leader restarts 8 s later as a follower.
            Fault::LeaderCrash => {
                r#"[[fault]]
at = "10s"
for = "8s"
kind = "crash"
node = "leader:t/0"
"#
            }
            // The leader and the producer on one side, everyone else (followers,
            // controllers, consumer) on the other, for 15 s: longer than the controller's
            // 9 s broker session timeout, so the majority side elects a new leader while
            // the old one may still acknowledge what needs no follower.
            Fault::LeaderPartitioned => {
                r#"[[fault]]
at = "10s"
for = "15s"
kind = "partition"
groups = [["leader:t/0", "p1"], ["others"]]
"#
            }
            // Both followers lose the leader (the leader still reaches the controllers and
            // the clients) from 8 s to 22 s: after replica.lag.time.max.ms (2 s) the leader
            // shrinks the ISR to itself, and keeps acknowledging if min.insync.replicas
            // allows. At 16 s, the followers still behind, the leader crashes; the links
            // heal at 22 s; the leader restarts only at 28 s. Meanwhile the controller
            // either waits for it (clean) or elects a stale follower (unclean).
            Fault::LaggingFollowerThenLeaderCrash => {
                r#"[[fault]]
at = "8s"
for = "14s"
kind = "partition"
groups = [["leader:t/0"], ["followers:t/0"]]

[[fault]]
at = "16s"
for = "12s"
kind = "crash"
node = "leader:t/0"
"#
            }
            // Power loss of all three replicas at once (unsynced writes lost: Kafka's
            // default flush policy never forces a sync), restarts 3 s apart, followers
            // first and the leader last.
            Fault::CorrelatedPowerLoss => {
                r#"[[fault]]
at = "10s"
for = "5s"
kind = "kill"
nodes = ["replicas:t/0"]
restart_stagger = "3s"
"#
            }
        }
    }
}

/// What Kafka promises about acknowledged records in a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promise {
    /// No acknowledged record may be lost.
    Forbidden,
    /// The fault sequence makes loss certain for this configuration: the lab must see it.
    Expected,
    /// Kafka promises nothing; the lab reports what it saw.
    Allowed,
}

impl Promise {
    pub fn name(self) -> &'static str {
        match self {
            Promise::Forbidden => "no loss (forbidden)",
            Promise::Expected => "loss expected",
            Promise::Allowed => "no promise (allowed)",
        }
    }
}

/// One cell of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub acks: AcksSpec,
    pub min_insync_replicas: u8,
    pub unclean_leader_election: bool,
    pub fault: Fault,
}

fn acks_name(acks: AcksSpec) -> &'static str {
    match acks {
        AcksSpec::Zero => "0",
        AcksSpec::One => "1",
        AcksSpec::All => "all",
    }
}

impl Cell {
    /// A file-name-safe, greppable name: `acks-all.misr-2.clean.leader-crash`.
    pub fn name(&self) -> String {
        format!(
            "acks-{}.misr-{}.{}.{}",
            acks_name(self.acks),
            self.min_insync_replicas,
            if self.unclean_leader_election {
                "unclean"
            } else {
                "clean"
            },
            self.fault.name()
        )
    }

    /// The configuration in Kafka's words, for the report.
    pub fn configuration(&self) -> String {
        format!(
            "acks={}, min.insync.replicas={}, unclean.leader.election.enable={}",
            acks_name(self.acks),
            self.min_insync_replicas,
            self.unclean_leader_election
        )
    }

    /// Idempotence as Kafka allows it: only with acks=all (on there, as Kafka 3+ does).
    pub fn idempotence(&self) -> bool {
        self.acks == AcksSpec::All
    }

    /// Timeline events every seed of the cell must record (TOML strings): proof that the
    /// fault sequence did what the cell is about, so that a loss cannot count as found (or a
    /// clean run as safe) when the mechanism never ran: the fault fired, and an expected
    /// loss by a leader that acknowledged alone shows as that leader's truncation.
    pub fn must_see(&self) -> Vec<&'static str> {
        let mut events = vec![r#""fault-start""#];
        let truncates = promise(self) == Promise::Expected
            && matches!(
                self.fault,
                Fault::LeaderPartitioned | Fault::LaggingFollowerThenLeaderCrash
            );
        if truncates {
            events.push(r#""truncate""#);
        }
        events
    }

    /// The cell's scenario file.
    pub fn scenario_toml(&self) -> String {
        let promise = promise(self);
        // The matrix judges loss itself (lost-write or unseen, either one); a forbidden
        // cell's file also forbids both, so that `cargo lab repro` of a losing seed fails.
        let loss = if promise == Promise::Forbidden {
            "forbidden"
        } else {
            "allowed"
        };
        // Unclean elections and power loss may overwrite records a reader already saw;
        // without idempotence, retries may duplicate. Everything else stays forbidden.
        let overwrite = if self.unclean_leader_election || self.fault == Fault::CorrelatedPowerLoss
        {
            "allowed"
        } else {
            "forbidden"
        };
        // A producer whose acknowledged records vanished sees its next records land at
        // offsets it was already given, and a consumer that read them reads other records
        // there: both follow from an allowed loss and are judged as that loss.
        let consequence = if promise == Promise::Forbidden {
            "forbidden"
        } else {
            "allowed"
        };
        let duplicate = if self.idempotence() {
            "forbidden"
        } else {
            "allowed"
        };
        format!(
            r#"# Generated by `cargo lab matrix` (sim/src/matrix.rs): cell {name}.
name = "matrix.{name}"
description = """Guarantees matrix cell: {configuration}, fault {fault}. Kafka's promise: {promise}. \
3 brokers, 3 controllers, topic t with 1 partition and replication factor 3, \
replica.lag.time.max.ms={lag}, Kafka's default flush policy (no forced fsync)."""
duration = "40s"
liveness = "60s"
must_see = [{must_see}]

[cluster]
brokers = 3
controllers = 3
config = {{ "replica.lag.time.max.ms" = "{lag}" }}

[[topic]]
name = "t"
partitions = 1
replication_factor = 3
config = {{ "min.insync.replicas" = "{misr}", "unclean.leader.election.enable" = "{unclean}" }}

[[producer]]
name = "p1"
topic = "t"
rate = 200
acks = "{acks}"
idempotence = {idempotence}

[[consumer]]
name = "c1"
topic = "t"

{faults}
[expect]
lost-write = "{loss}"
unseen = "{loss}"
inconsistent-offsets = "{overwrite}"
nonmonotonic-send = "{consequence}"
nonmonotonic-poll = "{consequence}"
duplicate = "{duplicate}"
"#,
            name = self.name(),
            configuration = self.configuration(),
            fault = self.fault.name(),
            promise = promise.name(),
            lag = REPLICA_LAG_TIME_MAX_MS,
            misr = self.min_insync_replicas,
            unclean = self.unclean_leader_election,
            acks = acks_name(self.acks),
            idempotence = self.idempotence(),
            faults = self.fault.faults_toml(),
            consequence = consequence,
            must_see = self.must_see().join(", "),
        )
    }
}

/// Every cell: acks {0, 1, all} x min.insync.replicas {1, 2} x unclean {false, true} x the
/// four faults, in that nesting order.
pub fn cells() -> Vec<Cell> {
    let mut out = Vec::new();
    for acks in [AcksSpec::Zero, AcksSpec::One, AcksSpec::All] {
        for min_insync_replicas in [1, 2] {
            for unclean_leader_election in [false, true] {
                for fault in Fault::ALL {
                    out.push(Cell {
                        acks,
                        min_insync_replicas,
                        unclean_leader_election,
                        fault,
                    });
                }
            }
        }
    }
    out
}

/// Kafka's promise for a cell, from what its documentation says of each setting (in our
/// words):
///
/// - `acks`: with 0 the producer does not wait at all, so nothing is promised; with 1 only
///   the leader has written the record when it answers, so a leader failure before the
///   followers copy it loses the record; with all, the leader answers once every in-sync
///   replica has it, and the record survives as long as one in-sync replica does.
/// - `min.insync.replicas`: together with acks=all it sets how many replicas must hold a
///   write before it is acknowledged; the documented recipe is replication factor 3,
///   min.insync.replicas 2 and acks=all, which refuses writes that a majority did not get.
/// - `unclean.leader.election.enable`: lets a replica outside the ISR become leader as a
///   last resort, which the documentation says may lose data.
/// - Durability rests on replication, not on fsync: by default Kafka never forces a flush
///   (`log.flush.interval.messages` and `log.flush.interval.ms` are unset) and recommends
///   leaving flushing to the operating system, so a power loss of every replica at once
///   may lose acknowledged records whatever acks says.
///
/// Hence: forbidden for acks=all with clean elections under faults that leave a replica's
/// page cache (not under a correlated power loss), with either min.insync.replicas: the
/// setting decides whether a write is taken while the ISR is small, not whether an
/// acknowledged one survives while an ISR member does. Expected
/// where the sequence makes loss certain: acks=1 with the leader partitioned away (it
/// acknowledges alone until fenced, then truncates); acks=1, or acks=all with
/// min.insync.replicas=1, with unclean election after the ISR shrank to the leader and the
/// leader crashed (a stale follower is elected); acks=1 or acks=all under correlated power
/// loss with the default flush policy. Everything else: allowed. acks=0 is never expected:
/// nothing is acknowledged with an offset, so no loss can be attributed to a send.
pub fn promise(cell: &Cell) -> Promise {
    let acked = cell.acks != AcksSpec::Zero;
    let leader_only_acks =
        cell.acks == AcksSpec::One || (cell.acks == AcksSpec::All && cell.min_insync_replicas == 1);
    match cell.fault {
        Fault::CorrelatedPowerLoss if acked => Promise::Expected,
        Fault::CorrelatedPowerLoss => Promise::Allowed,
        // acks=all with clean elections: what was acknowledged is on every replica of the
        // ISR at that moment, and only an ISR member can lead, so it survives as long as
        // one of them does (whatever min.insync.replicas, which only decides whether a write
        // is taken when the ISR is small). Crashes and partitions keep every page cache.
        _ if cell.acks == AcksSpec::All && !cell.unclean_leader_election => Promise::Forbidden,
        Fault::LeaderPartitioned if cell.acks == AcksSpec::One => Promise::Expected,
        Fault::LaggingFollowerThenLeaderCrash
            if leader_only_acks && cell.unclean_leader_election =>
        {
            Promise::Expected
        }
        _ => Promise::Allowed,
    }
}

/// What one seed of a cell showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFinding {
    pub seed: u64,
    /// The run got through its final read (no crash, no liveness failure): only then does
    /// "no loss" mean anything.
    pub completed: bool,
    /// An acknowledged record was lost (lost-write or unseen found).
    pub lost: bool,
    /// acks=0: records sent that no read ever returned (nothing was acknowledged).
    pub unread: u64,
    /// What went wrong besides loss: crash, liveness, broken invariant, another forbidden
    /// anomaly. Any of these fails the matrix.
    pub problems: Vec<String>,
}

/// A cell and what its seeds showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellResult {
    pub cell: Cell,
    /// The cell's scenario file, for the repro command.
    pub file: String,
    pub seeds: Vec<SeedFinding>,
}

impl CellResult {
    pub fn promise(&self) -> Promise {
        promise(&self.cell)
    }

    pub fn seeds_with_loss(&self) -> Vec<u64> {
        self.seeds
            .iter()
            .filter(|s| s.lost)
            .map(|s| s.seed)
            .collect()
    }

    pub fn problems(&self) -> Vec<(u64, &str)> {
        self.seeds
            .iter()
            .flat_map(|s| s.problems.iter().map(move |p| (s.seed, p.as_str())))
            .collect()
    }

    /// Whether what the lab found agrees with Kafka's promise (and nothing else broke).
    pub fn agrees(&self) -> bool {
        let lost = !self.seeds_with_loss().is_empty();
        let promise_holds = match self.promise() {
            Promise::Forbidden => !lost,
            Promise::Expected => lost,
            Promise::Allowed => true,
        };
        promise_holds && self.problems().is_empty()
    }

    /// "no loss in 3 seeds" / "loss in 2 of 3 seeds, replay: `cargo lab repro ...`", and
    /// any problems.
    pub fn finding(&self) -> String {
        let n = self.seeds.iter().filter(|s| s.completed).count();
        let lost = self.seeds_with_loss();
        let mut text = if self.cell.acks == AcksSpec::Zero {
            let unread: Vec<&SeedFinding> = self.seeds.iter().filter(|s| s.unread > 0).collect();
            match unread.first() {
                None => format!("nothing acknowledged (acks=0); every record sent was read, {n} seeds"),
                Some(first) => format!(
                    "nothing acknowledged (acks=0); records sent but never read in {} of {n} seeds, replay: `cargo lab repro {} --seed {}`",
                    unread.len(),
                    self.file,
                    first.seed
                ),
            }
        } else if lost.is_empty() {
            format!("no loss in {n} seeds")
        } else {
            format!(
                "loss in {} of {n} seeds, replay: `cargo lab repro {} --seed {}`",
                lost.len(),
                self.file,
                lost[0]
            )
        };
        let incomplete = self.seeds.len() - n;
        if incomplete > 0 {
            let _ = write!(
                text,
                " ({incomplete} of {} seeds did not complete)",
                self.seeds.len()
            );
        }
        let problems = self.problems();
        if let Some((seed, first)) = problems.first() {
            let _ = write!(
                text,
                "; {} problem(s), first: seed {seed}: {first} (replay: `cargo lab repro {} --seed {seed}`)",
                problems.len(),
                self.file
            );
        }
        text
    }
}

/// Exit status of `cargo lab matrix`: 1 when any cell disagrees (a forbidden cell lost
/// data, an expected cell never did, or a crash, liveness failure, broken invariant or
/// other forbidden anomaly happened), else 0.
pub fn exit_code(results: &[CellResult]) -> i32 {
    if results.iter().all(CellResult::agrees) {
        0
    } else {
        1
    }
}

/// `reports/guarantees.md`: one row per cell.
pub fn markdown(results: &[CellResult], commit: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Guarantees: Kafka's promise against what the lab found\n"
    );
    let agree = results.iter().filter(|r| r.agrees()).count();
    let _ = writeln!(
        md,
        "Commit `{commit}`. {} cells, {agree} agree, {} DISAGREE. Each cell: 3 brokers, 3 controllers, \
         topic t (1 partition, replication factor 3), one producer at 200 records/s, one consumer, \
         replica.lag.time.max.ms={REPLICA_LAG_TIME_MAX_MS}; fault sequences in `scenarios/README.md`. \
         Loss means an acknowledged record that was lost (lost-write) or never read (unseen).\n",
        results.len(),
        results.len() - agree
    );
    let _ = writeln!(
        md,
        "| cell | configuration | fault | Kafka's promise | the lab found | verdict |\n|---|---|---|---|---|---|"
    );
    for r in results {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | {} | {} |",
            r.cell.name(),
            r.cell.configuration(),
            r.cell.fault.name(),
            r.promise().name(),
            r.finding().replace('|', "\\|"),
            if r.agrees() { "agree" } else { "DISAGREE" }
        );
    }
    md
}

/// The table printed at the end of a run: one line per cell.
pub fn table(results: &[CellResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<58} {:<22} {:>6} {:>6} {:>9}",
        "cell", "promise", "seeds", "lost", "verdict"
    );
    for r in results {
        let _ = writeln!(
            out,
            "{:<58} {:<22} {:>6} {:>6} {:>9}",
            r.cell.name(),
            r.promise().name(),
            r.seeds.len(),
            r.seeds_with_loss().len(),
            if r.agrees() { "agree" } else { "DISAGREE" }
        );
        for (seed, p) in r.problems().into_iter().take(1) {
            let _ = writeln!(out, "    seed {seed}: {p}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario;
    use std::path::Path;

    fn cell(acks: AcksSpec, misr: u8, unclean: bool, fault: Fault) -> Cell {
        Cell {
            acks,
            min_insync_replicas: misr,
            unclean_leader_election: unclean,
            fault,
        }
    }

    #[test]
    fn there_are_48_cells_with_distinct_names() {
        let cells = cells();
        assert_eq!(cells.len(), 48);
        let names: std::collections::BTreeSet<String> = cells.iter().map(Cell::name).collect();
        assert_eq!(names.len(), 48);
        assert_eq!(
            cells[0].name(),
            "acks-0.misr-1.clean.leader-crash",
            "the first cell"
        );
    }

    #[test]
    fn the_promise_table_follows_kafkas_documentation() {
        use AcksSpec::*;
        use Fault::*;
        use Promise::*;
        let check = |c: Cell, want: Promise| assert_eq!(promise(&c), want, "{}", c.name());
        // acks=all with clean elections, under faults that keep a replica's page cache,
        // whatever min.insync.replicas says.
        for f in [
            LeaderCrash,
            LeaderPartitioned,
            LaggingFollowerThenLeaderCrash,
        ] {
            check(cell(All, 2, false, f), Forbidden);
            check(cell(All, 1, false, f), Forbidden);
        }
        // Durability rests on replication, not fsync: power loss of all replicas loses.
        check(cell(All, 2, false, CorrelatedPowerLoss), Expected);
        check(cell(All, 1, true, CorrelatedPowerLoss), Expected);
        check(cell(One, 1, false, CorrelatedPowerLoss), Expected);
        // acks=1: the partitioned leader acknowledges alone until fenced.
        check(cell(One, 1, false, LeaderPartitioned), Expected);
        check(cell(One, 2, true, LeaderPartitioned), Expected);
        // Unclean election after the ISR shrank to the leader.
        check(cell(All, 1, true, LaggingFollowerThenLeaderCrash), Expected);
        check(cell(One, 2, true, LaggingFollowerThenLeaderCrash), Expected);
        check(cell(All, 2, true, LaggingFollowerThenLeaderCrash), Allowed);
        check(cell(One, 1, false, LeaderCrash), Allowed);
        check(cell(All, 2, true, LeaderCrash), Allowed);
        // acks=0 acknowledges nothing: never forbidden, never expected.
        for c in cells().into_iter().filter(|c| c.acks == Zero) {
            check(c, Allowed);
        }
        let forbidden = cells().iter().filter(|c| promise(c) == Forbidden).count();
        assert_eq!(forbidden, 6);
    }

    #[test]
    fn cells_state_the_events_their_mechanism_must_show() {
        use AcksSpec::*;
        use Fault::*;
        let unclean = cell(All, 1, true, LaggingFollowerThenLeaderCrash);
        assert_eq!(unclean.must_see(), [r#""fault-start""#, r#""truncate""#]);
        let partitioned = cell(One, 1, false, LeaderPartitioned);
        assert!(partitioned.must_see().contains(&r#""truncate""#));
        let forbidden = cell(All, 2, false, LeaderCrash);
        assert_eq!(forbidden.must_see(), [r#""fault-start""#]);
        let text = unclean.scenario_toml();
        assert!(
            text.contains(r#"must_see = ["fault-start", "truncate"]"#),
            "{text}"
        );
    }

    #[test]
    fn every_cell_is_a_valid_scenario() {
        for c in cells() {
            let text = c.scenario_toml();
            let s = scenario::parse(
                Path::new(&format!("reports/matrix/{}.toml", c.name())),
                &text,
            )
            .unwrap_or_else(|e| panic!("{}: {e}\n{text}", c.name()));
            assert_eq!(s.controllers, 3);
            assert_eq!(s.producers[0].idempotence, Some(c.acks == AcksSpec::All));
            let loss = s.expectation(crate::history::Anomaly::LostWrite);
            assert_eq!(
                loss == scenario::Expectation::Forbidden,
                promise(&c) == Promise::Forbidden,
                "{}",
                c.name()
            );
        }
    }

    fn result(c: Cell, seeds: &[(u64, bool, &[&str])]) -> CellResult {
        CellResult {
            cell: c,
            file: format!("reports/matrix/{}.toml", c.name()),
            seeds: seeds
                .iter()
                .map(|(seed, lost, problems)| SeedFinding {
                    seed: *seed,
                    completed: !problems.iter().any(|p| p.starts_with("crash")),
                    lost: *lost,
                    unread: 0,
                    problems: problems.iter().map(|p| p.to_string()).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn verdicts_and_exit_codes() {
        let forbidden = cell(AcksSpec::All, 2, false, Fault::LeaderCrash);
        let expected = cell(AcksSpec::One, 1, false, Fault::LeaderPartitioned);
        let allowed = cell(AcksSpec::One, 1, false, Fault::LeaderCrash);
        let ok = [
            result(forbidden, &[(1, false, &[]), (2, false, &[])]),
            result(expected, &[(1, false, &[]), (2, true, &[])]),
            result(allowed, &[(1, true, &[]), (2, false, &[])]),
        ];
        assert!(ok.iter().all(CellResult::agrees));
        assert_eq!(exit_code(&ok), 0);
        for bad in [
            result(forbidden, &[(1, false, &[]), (2, true, &[])]),
            result(expected, &[(1, false, &[]), (2, false, &[])]),
            result(
                allowed,
                &[(1, false, &["crash: controller-1 did not start"])],
            ),
        ] {
            assert!(!bad.agrees(), "{}", bad.cell.name());
            assert_eq!(exit_code(&[ok[0].clone(), bad]), 1);
        }
    }

    #[test]
    fn the_report_has_one_row_per_cell_with_promise_finding_and_verdict() {
        let forbidden = cell(AcksSpec::All, 2, false, Fault::LeaderCrash);
        let expected = cell(AcksSpec::One, 1, false, Fault::LeaderPartitioned);
        let zero = cell(AcksSpec::Zero, 1, false, Fault::LeaderCrash);
        let mut zero_result = result(zero, &[(1, false, &[]), (2, false, &[])]);
        zero_result.seeds[1].unread = 4;
        let results = [
            result(
                forbidden,
                &[(1, false, &[]), (2, true, &[]), (3, true, &[])],
            ),
            result(
                expected,
                &[
                    (1, false, &[]),
                    (2, false, &[]),
                    (3, false, &["invariant: x"]),
                ],
            ),
            zero_result,
        ];
        let md = markdown(&results, "abc123");
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| `")).collect();
        assert_eq!(rows.len(), 3, "{md}");
        assert!(
            md.contains("Commit `abc123`. 3 cells, 1 agree, 2 DISAGREE"),
            "{md}"
        );
        assert!(rows[0]
            .contains("acks=all, min.insync.replicas=2, unclean.leader.election.enable=false"));
        assert!(rows[0].contains("no loss (forbidden)"));
        assert!(rows[0].contains(
            "loss in 2 of 3 seeds, replay: `cargo lab repro reports/matrix/acks-all.misr-2.clean.leader-crash.toml --seed 2`"
        ), "{}", rows[0]);
        assert!(rows[0].ends_with("| DISAGREE |"));
        assert!(rows[1].contains("loss expected"));
        assert!(
            rows[1].contains("no loss in 3 seeds; 1 problem(s), first: seed 3: invariant: x"),
            "{}",
            rows[1]
        );
        let crashed = result(
            forbidden,
            &[(
                1,
                false,
                &["crash: controller-1 did not start: not built yet"],
            )],
        );
        assert!(crashed.finding().starts_with("no loss in 0 seeds (1 of 1 seeds did not complete); 1 problem(s), first: seed 1: crash: controller-1"), "{}", crashed.finding());
        assert!(rows[1].ends_with("| DISAGREE |"));
        assert!(rows[2].contains("nothing acknowledged (acks=0); records sent but never read in 1 of 2 seeds, replay: `cargo lab repro reports/matrix/acks-0.misr-1.clean.leader-crash.toml --seed 2`"), "{}", rows[2]);
        assert!(rows[2].ends_with("| agree |"));
        let t = table(&results);
        assert_eq!(
            t.lines().filter(|l| l.starts_with("acks-")).count(),
            3,
            "{t}"
        );
        assert!(t.contains("seed 3: invariant: x"));
    }
}
