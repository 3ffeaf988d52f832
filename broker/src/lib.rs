//! Faultline: a Kafka-compatible broker, its client library and console tools, built to
//! run unchanged on real tokio and under the madsim simulator. This crate is the shell
//! (sockets, clocks, tasks, the file system, the wire); the deciding logic is the
//! `faultline-core` crate, re-exported here module by module.
//!
//! - [`record`]: the v2 record batch format (header the broker reads, full codec).
//! - [`storage`]: the one storage trait with explicit sync points, and its backends.
//! - [`log`]: a partition's segmented log with indexes and crash recovery.
//! - [`producer_state`]: idempotent producer sequence checks.
//! - [`state`]: the broker's deciding state (topics, partitions, produce, read, and in a
//!   cluster the role of each replica, follower appends and truncation).
//! - [`server`]: the async shell (sockets, clock, request handlers, a clustered broker's
//!   heartbeats, metadata and replica fetchers).
//! - [`client`]: the project's Kafka client (admin, producer, consumer).
//! - [`wire`]: Kafka's size-prefixed framing, shared by the server and the client.
//! - [`raft`]: the consensus core of the controller quorum (pure).
//! - [`controller`]: controller nodes: metadata records and image, the active controller's
//!   decisions (pure), the node shell, its metadata log, the wire to brokers.
//! - [`replica`]: leader epoch cache and leader-side ISR / high watermark state (pure).
//! - [`observe`]: what nodes report to the lab's invariant checks.
//! - [`config`], [`topic_config`]: settings by Kafka's names, defaults and limits.
//! - [`kafka_rules`]: Kafka's rules, limits and error codes shared by state, controller
//!   and replica logic (each written once).

mod alloc;
pub mod client;
pub mod controller;
pub mod protocol;
pub mod server;
pub mod storage;
pub mod wire;

// The deciding logic lives in the core crate (no sockets, clocks or runtimes); the shell
// re-exports it under the names the rest of the code and the lab use.
pub use faultline_core::{
    buggify, config, group, kafka_rules, log, mix, mutation, observe, probe, producer_state, raft,
    record, replica, state, topic_config,
};
