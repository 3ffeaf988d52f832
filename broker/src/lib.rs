//! Faultline: a Kafka-compatible broker, its client library and console tools.
pub mod record;
