//! Kafka record batches: the header the broker reads, and the full codec clients use.
pub mod batch;
pub mod codec;
