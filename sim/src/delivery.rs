//! The delivery-semantics matrix (`cargo lab matrix`, beside the guarantees matrix): what a
//! consumer group's commit policy promises the application under a fault, cell by cell,
//! against what the lab finds. A cell is one commit policy (before processing, auto-commit,
//! sync after processing) under one fault (a member crash, a member stalled past
//! `max.poll.interval.ms`, the group coordinator failing over, the partition leader
//! crashing), on 3 brokers and 3 controllers, one topic of 2 partitions and replication
//! factor 3 (min.insync.replicas 2, acks=all idempotent producer), and a group of two
//! members. Each cell becomes a scenario file (`reports/delivery/<cell>.toml`) so any seed
//! replays with `cargo lab repro`.
//!
//! Kafka's promises: committing before processing is at-most-once (records may be skipped,
//! never processed twice); committing after processing, by hand or by auto-commit, is
//! at-least-once (never skipped, possibly processed twice).
//!
//! Pure: cells, promises, scenario text, verdicts and the report; the runs happen in
//! `bin/lab.rs`.

use crate::scenario::CommitPolicy;
use std::fmt::Write as _;

/// A fault of the delivery matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    MemberCrash,
    MemberStall,
    CoordinatorFailover,
    PartitionLeaderCrash,
}

impl Fault {
    pub const ALL: [Fault; 4] = [
        Fault::MemberCrash,
        Fault::MemberStall,
        Fault::CoordinatorFailover,
        Fault::PartitionLeaderCrash,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::MemberCrash => "member-crash",
            Fault::MemberStall => "member-stall",
            Fault::CoordinatorFailover => "coordinator-failover",
            Fault::PartitionLeaderCrash => "partition-leader-crash",
        }
    }

    /// The fault as `[[fault]]` tables (a stall is the member's own `pause_every`).
    fn faults_toml(self) -> &'static str {
        match self {
            Fault::MemberCrash => {
                "[[fault]]\nat = \"10s\"\nfor = \"3s\"\nkind = \"kill\"\nnode = \"m1\"\n\n\
                 [[fault]]\nat = \"20s\"\nfor = \"3s\"\nkind = \"kill\"\nnode = \"m2\"\n"
            }
            Fault::MemberStall => "",
            Fault::CoordinatorFailover => {
                "[[fault]]\nat = \"10s\"\nfor = \"5s\"\nkind = \"kill\"\nnode = \"coordinator:g\"\n\n\
                 [[fault]]\nat = \"20s\"\nfor = \"6s\"\nkind = \"isolate\"\nnode = \"coordinator:g\"\n"
            }
            Fault::PartitionLeaderCrash => {
                "[[fault]]\nat = \"10s\"\nfor = \"5s\"\nkind = \"crash\"\nnode = \"leader:t/0\"\n\n\
                 [[fault]]\nat = \"20s\"\nfor = \"5s\"\nkind = \"crash\"\nnode = \"leader:t/1\"\n"
            }
        }
    }
}

/// What Kafka promises about one anomaly in a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promise {
    /// Must never happen.
    Forbidden,
    /// May happen; the lab reports what it saw.
    Allowed,
}

impl Promise {
    pub fn name(self) -> &'static str {
        match self {
            Promise::Forbidden => "none",
            Promise::Allowed => "allowed",
        }
    }

    fn expectation(self) -> &'static str {
        match self {
            Promise::Forbidden => "forbidden",
            Promise::Allowed => "allowed",
        }
    }
}

/// One cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub policy: CommitPolicy,
    pub fault: Fault,
}

/// The policies of the matrix, in the issue's order.
pub const POLICIES: [CommitPolicy; 3] = [
    CommitPolicy::BeforeProcessing,
    CommitPolicy::Auto,
    CommitPolicy::SyncAfterProcessing,
];

/// Every cell: policy x fault.
pub fn cells() -> Vec<Cell> {
    POLICIES
        .iter()
        .flat_map(|&policy| Fault::ALL.iter().map(move |&fault| Cell { policy, fault }))
        .collect()
}

impl Cell {
    /// `before-processing.member-crash`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.policy.name(), self.fault.name())
    }

    /// Skips (committed past records no member processed): none at-least-once.
    pub fn skips(&self) -> Promise {
        match self.policy {
            CommitPolicy::BeforeProcessing => Promise::Allowed,
            _ => Promise::Forbidden,
        }
    }

    /// Records processed twice: none at-most-once.
    pub fn duplicates(&self) -> Promise {
        match self.policy {
            CommitPolicy::BeforeProcessing => Promise::Forbidden,
            _ => Promise::Allowed,
        }
    }

    /// The cell's scenario file.
    pub fn scenario_toml(&self) -> String {
        let stall = if self.fault == Fault::MemberStall {
            "pause_every = \"9s\"\npause_for = \"6s\"\n"
        } else {
            ""
        };
        let member = |name: &str, extra: &str| {
            format!(
                "[[consumer]]\nname = \"{name}\"\ntopic = \"t\"\ngroup = \"g\"\ncommit = \"{policy}\"\n\
                 auto_commit_interval = \"1s\"\nauto_offset_reset = \"earliest\"\n\
                 session_timeout = \"6s\"\nheartbeat_interval = \"1s\"\nmax_poll_interval = \"3s\"\n\
                 processing = \"2ms\"\nmax_poll_records = 20\n{extra}\n",
                policy = self.policy.name()
            )
        };
        format!(
            r#"# Generated by `cargo lab matrix` (sim/src/delivery.rs): cell {name}.
name = "delivery.{name}"
description = """Delivery matrix cell: commit {policy}, fault {fault}. Kafka's promise: skips {skips}, records processed twice {duplicates}. \
3 brokers, 3 controllers, topic t with 2 partitions and replication factor 3, a group g of two members."""
duration = "30s"
liveness = "60s"
must_see = ["fault-start"]

[cluster]
brokers = 3
controllers = 3
config = {{ "group.initial.rebalance.delay.ms" = "0", "offsets.topic.num.partitions" = "3" }}

[[topic]]
name = "t"
partitions = 2
replication_factor = 3
config = {{ "min.insync.replicas" = "2" }}

[[producer]]
name = "p1"
topic = "t"
rate = 100
idempotence = true

{m1}{m2}{faults}
[expect]
commit-skip = "{skip_expect}"
processed-twice = "{dup_expect}"
"#,
            name = self.name(),
            policy = self.policy.name(),
            fault = self.fault.name(),
            skips = self.skips().name(),
            duplicates = self.duplicates().name(),
            m1 = member("m1", stall),
            m2 = member("m2", ""),
            faults = self.fault.faults_toml(),
            skip_expect = self.skips().expectation(),
            dup_expect = self.duplicates().expectation(),
        )
        .replace("must_see = [\"fault-start\"]\n", self.must_see())
    }

    /// A stall has no timeline fault: nothing to insist on seeing.
    fn must_see(&self) -> &'static str {
        match self.fault {
            Fault::MemberStall => "",
            _ => "must_see = [\"fault-start\"]\n",
        }
    }
}

/// What one seed of a cell showed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SeedFinding {
    pub seed: u64,
    /// Records committed past without being processed (commit-skip).
    pub skipped: bool,
    /// Records processed more than once (processed-twice).
    pub duplicated: bool,
    /// Everything else that went wrong (crash, liveness, another anomaly, a broken
    /// invariant): any of these fails the matrix.
    pub problems: Vec<String>,
}

/// A cell and what its seeds showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellResult {
    pub cell: Cell,
    pub file: String,
    pub seeds: Vec<SeedFinding>,
}

impl CellResult {
    fn seeds_where(&self, found: impl Fn(&SeedFinding) -> bool) -> Vec<u64> {
        self.seeds
            .iter()
            .filter(|s| found(s))
            .map(|s| s.seed)
            .collect()
    }

    /// Whether the lab's findings keep Kafka's promises, and nothing else broke.
    pub fn agrees(&self) -> bool {
        let holds =
            |promise: Promise, seeds: Vec<u64>| promise == Promise::Allowed || seeds.is_empty();
        holds(self.cell.skips(), self.seeds_where(|s| s.skipped))
            && holds(self.cell.duplicates(), self.seeds_where(|s| s.duplicated))
            && self.seeds.iter().all(|s| s.problems.is_empty())
    }

    /// One anomaly's finding: "none in 3 seeds" or "in 2 of 3 seeds, replay: ...".
    fn finding(&self, seeds: Vec<u64>) -> String {
        match seeds.first() {
            None => format!("none in {} seeds", self.seeds.len()),
            Some(first) => format!(
                "in {} of {} seeds, replay: `cargo lab repro {} --seed {first}`",
                seeds.len(),
                self.seeds.len(),
                self.file
            ),
        }
    }

    pub fn skips_found(&self) -> String {
        self.finding(self.seeds_where(|s| s.skipped))
    }

    pub fn duplicates_found(&self) -> String {
        self.finding(self.seeds_where(|s| s.duplicated))
    }

    fn problems(&self) -> String {
        self.seeds
            .iter()
            .flat_map(|s| {
                s.problems
                    .iter()
                    .map(move |p| format!("seed {}: {p}", s.seed))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The terminal table.
pub fn table(results: &[CellResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<46} {:>8} {:>8}  {:<28} {:<28}",
        "cell", "skips", "twice", "skips found", "processed twice found"
    );
    for r in results {
        let _ = writeln!(
            out,
            "{:<46} {:>8} {:>8}  {:<28} {:<28}{}",
            r.cell.name(),
            r.cell.skips().name(),
            r.cell.duplicates().name(),
            short(&r.skips_found()),
            short(&r.duplicates_found()),
            if r.agrees() { "" } else { "  DISAGREES" }
        );
    }
    out
}

fn short(text: &str) -> String {
    text.split(", replay").next().unwrap_or(text).to_string()
}

/// `reports/delivery.md`.
pub fn markdown(results: &[CellResult], commit: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Delivery semantics: what a consumer group's commit policy promises\n"
    );
    let _ = writeln!(
        out,
        "Generated by `cargo lab matrix` at commit {commit} (sim/src/delivery.rs). Each cell: a group of \
         two members committing as the row says, under one fault, on 3 brokers and 3 controllers \
         (topic t, 2 partitions, replication factor 3, min.insync.replicas 2, acks=all idempotent \
         producer). Kafka's promise: committing before processing is at-most-once (skips allowed, \
         nothing processed twice); committing after processing, by hand or by auto-commit, is \
         at-least-once (no skips, records may be processed twice). A skip is a committed offset \
         passing records no member processed (`commit-skip`); processed twice is `processed-twice`.\n"
    );
    let _ = writeln!(
        out,
        "| commit policy | fault | promise: skips | promise: processed twice | skips found | processed twice found | agrees |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for r in results {
        let problems = r.problems();
        let agrees = if r.agrees() {
            "yes".to_string()
        } else if problems.is_empty() {
            "**no**".to_string()
        } else {
            format!("**no**: {problems}")
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.cell.policy.name(),
            r.cell.fault.name(),
            r.cell.skips().name(),
            r.cell.duplicates().name(),
            r.skips_found(),
            r.duplicates_found(),
            agrees
        );
    }
    out
}

/// 0 when every cell agrees, 1 otherwise.
pub fn exit_code(results: &[CellResult]) -> i32 {
    if results.iter().all(CellResult::agrees) {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promises_follow_the_commit_policy() {
        let cells = cells();
        assert_eq!(cells.len(), 12);
        for c in &cells {
            let at_most_once = c.policy == CommitPolicy::BeforeProcessing;
            assert_eq!(c.skips() == Promise::Allowed, at_most_once, "{}", c.name());
            assert_eq!(
                c.duplicates() == Promise::Forbidden,
                at_most_once,
                "{}",
                c.name()
            );
        }
    }

    #[test]
    fn every_cell_is_a_valid_scenario() {
        for c in cells() {
            let dir = std::env::temp_dir().join("faultline-delivery-cells");
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("{}.toml", c.name()));
            std::fs::write(&path, c.scenario_toml()).unwrap();
            crate::scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", c.name()));
        }
    }

    #[test]
    fn a_forbidden_finding_disagrees_and_an_allowed_one_does_not() {
        let cell = Cell {
            policy: CommitPolicy::SyncAfterProcessing,
            fault: Fault::MemberCrash,
        };
        let mut result = CellResult {
            cell,
            file: "f.toml".into(),
            seeds: vec![SeedFinding {
                seed: 1,
                duplicated: true,
                ..Default::default()
            }],
        };
        assert!(
            result.agrees(),
            "at-least-once allows records processed twice"
        );
        result.seeds[0].skipped = true;
        assert!(!result.agrees(), "at-least-once forbids skips");
        assert_eq!(exit_code(&[result]), 1);
        let at_most_once = CellResult {
            cell: Cell {
                policy: CommitPolicy::BeforeProcessing,
                fault: Fault::MemberCrash,
            },
            file: "f.toml".into(),
            seeds: vec![SeedFinding {
                seed: 1,
                skipped: true,
                ..Default::default()
            }],
        };
        assert!(at_most_once.agrees());
        let mut twice = at_most_once.clone();
        twice.seeds[0].duplicated = true;
        assert!(
            !twice.agrees(),
            "at-most-once forbids records processed twice"
        );
        assert!(markdown(&[twice], "abc").contains("**no**"));
    }
}
