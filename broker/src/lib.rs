//! Faultline: a Kafka-compatible broker, its client library and console tools, built to
//! run unchanged on real tokio and under the madsim simulator.
//!
//! - [`record`]: the v2 record batch format (header the broker reads, full codec).
//! - [`storage`]: the one storage trait with explicit sync points, and its backends.
//! - [`log`]: a partition's segmented log with indexes and crash recovery.
//! - [`producer_state`]: idempotent producer sequence checks.
//! - [`state`]: the broker's deciding state (topics, partitions, produce, read).
//! - [`server`]: the async shell (sockets, clock, request handlers).
//! - [`client`]: the project's Kafka client (admin, producer, consumer).
//! - [`raft`]: the consensus core for the coming controller quorum (pure, not wired yet).
//! - [`replica`]: leader epoch cache and leader-side ISR / high watermark state (pure, not
//!   wired yet).
//! - [`config`], [`topic_config`]: settings by Kafka's names, defaults and limits.

mod alloc;
pub mod client;
pub mod config;
pub mod controller;
pub mod log;
pub mod observe;
pub mod producer_state;
pub mod protocol;
pub mod raft;
pub mod record;
pub mod replica;
pub mod server;
pub mod state;
pub mod storage;
pub mod topic_config;
