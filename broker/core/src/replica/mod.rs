//! Replication's pure core: the state a partition replica needs to agree with its peers on
//! what is committed. `state::replication` drives it.
//!
//! - [`epoch_cache`]: the leader epoch cache of one partition (KIP-101, KIP-279), its
//!   OffsetForLeaderEpoch answer, the follower's truncation rule and the checkpoint codec.
//! - [`partition_replica`]: the leader's view of one partition: follower positions, the
//!   ISR and its controller-confirmed changes (KIP-497's maximal ISR), the high watermark,
//!   min.insync.replicas and acks=all completion, and the fencing of follower fetches
//!   (KIP-320).
//!
//! Both are pure: no I/O, no clock, no RNG. Time comes in as `now_ms`; the shell persists
//! what they report as changed and sends what they propose.

pub mod epoch_cache;
pub mod partition_replica;
