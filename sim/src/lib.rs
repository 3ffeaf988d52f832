//! The Faultline lab: runs seeded fault scenarios against unchanged broker nodes under the
//! madsim simulator, records every client operation and checks the history.
//!
//! - [`scenario`]: the scenario file format, parsed and validated.
//! - [`explore`]: generated scenarios from a declared space (proptest), for `cargo lab explore`.
//! - [`history`]: what the runner records and the checkers read.
//! - [`checker`]: the anomaly checkers over a history.
//! - [`invariants`]: replication and controller invariants, during and at the end of a run.
//! - [`matrix`]: the guarantees matrix (cells, Kafka's promise per cell, its report).
//! - [`runner`]: builds the cluster, drives workloads and faults (simulated build only), from
//!   a fault plan made by [`runner::nemesis`] (pure, in both builds).
//! - [`report`]: the files a run leaves under `reports/runs/`.
//! - [`shrink`]: a failing seed's scenario reduced step by step while it fails the same way.
//! - [`suite`]: suites (folders with a `suite.toml`): the coverage probes they must reach.

pub mod checker;
pub mod delivery;
pub mod explore;
pub mod history;
pub mod invariants;
pub mod matrix;
pub mod outcome;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod shrink;
pub mod suite;
