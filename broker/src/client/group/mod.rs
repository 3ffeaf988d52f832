//! A consumer group member (Kafka's classic group protocol).

pub mod assignor;
