//! Faultline's core: the deciding logic of a Kafka-compatible broker and its controller
//! quorum, as pure state machines. Nothing here opens a socket, reads a clock, draws a
//! random number or spawns a task: time (`now_ms`) and seeds come in as arguments, the disk
//! is the [`storage::Storage`] trait with explicit sync points, and this crate does not
//! depend on tokio or madsim at all, so the compiler keeps it that way
//! (`tests/architecture/measure --check` also rejects `std::net` sockets, `std::fs`,
//! `std::thread` and `Instant::now` / `SystemTime::now` here). The shell crate
//! (`faultline-broker`) owns sockets, clocks, tasks and the real file system, and re-exports
//! these modules under the same names.
//!
//! - [`record`]: the v2 record batch format (header the broker reads, full codec).
//! - [`storage`]: the storage trait and its crashable in-memory model.
//! - [`log`]: a partition's segmented log with indexes and crash recovery.
//! - [`producer_state`]: idempotent producer sequence checks.
//! - [`replica`]: leader epoch cache and leader-side ISR / high watermark state.
//! - [`raft`]: the consensus core of the controller quorum.
//! - [`controller`]: metadata records, the image they build and the active controller's
//!   decisions (`logic`); the controller's durable term, vote and metadata log (`store`).
//! - [`group`]: Kafka's classic consumer-group coordinator (membership, rebalances,
//!   committed offsets) and its `__consumer_offsets` records.
//! - [`state`]: the broker's deciding state (topics, partitions, produce, read, and in a
//!   cluster the role of each replica, follower appends and truncation).
//! - [`config`], [`topic_config`]: settings by Kafka's names, defaults and limits.
//! - [`kafka_rules`]: Kafka's rules, limits and error codes, each written once.
//! - [`observe`], [`mutation`]: the lab's hooks, the one exception to "no thread-locals"
//!   (see `observe`).
//! - [`buggify`]: seeded perturbations where real systems vary, for the lab only.
//! - [`probe`]: coverage probes, named points where a rare mechanism runs, counted by the
//!   lab and compiled away elsewhere.
//! - [`mix`]: splitmix64 and FNV-1a, seeded and stateless.

pub mod buggify;
pub mod config;
pub mod controller;
pub mod group;
pub mod kafka_rules;
pub mod log;
pub mod mix;
pub mod mutation;
pub mod observe;
pub mod probe;
pub mod producer_state;
pub mod raft;
pub mod record;
pub mod replica;
pub mod state;
pub mod storage;
pub mod topic_config;
