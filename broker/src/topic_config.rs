//! Topic-level settings by their Kafka names, and the broker-wide `log.*` defaults for them.
//!
//! A topic's settings are the broker defaults overlaid with the overrides given at
//! creation. Only settings this broker understands are accepted; the others are refused
//! with INVALID_CONFIG rather than stored and silently ignored.

use crate::config::{parse_bool, parse_num};
use crate::log::LogConfig;
use std::collections::BTreeMap;

/// Settings a topic may override, with what this broker does with each.
pub const TOPIC_SETTINGS: &[(&str, &str)] = &[
    ("segment.bytes", "segment roll size"),
    ("segment.ms", "segment roll age"),
    (
        "flush.messages",
        "fsync after this many messages (default: never force)",
    ),
    ("flush.ms", "fsync after this long (default: never force)"),
    ("index.interval.bytes", "sparse offset index density"),
    ("max.message.bytes", "largest record batch accepted"),
    (
        "min.insync.replicas",
        "acks=all needs at least this many in-sync replicas",
    ),
    ("retention.ms", "stored; retention is not enforced yet"),
    ("retention.bytes", "stored; retention is not enforced yet"),
    (
        "cleanup.policy",
        "stored; only delete is understood, compaction is not built yet",
    ),
    (
        "compression.type",
        "stored; batches are kept as the producer compressed them",
    ),
    (
        "unclean.leader.election.enable",
        "stored; matters once replication exists",
    ),
    ("message.timestamp.type", "stored; CreateTime is served"),
];

/// Effective settings of one topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub log: LogConfig,
    pub max_message_bytes: usize,
    pub min_insync_replicas: i32,
    /// The overrides as given, for DescribeConfigs and persistence.
    pub overrides: BTreeMap<String, String>,
}

impl TopicConfig {
    pub fn new(
        defaults: &LogConfig,
        max_message_bytes: usize,
        overrides: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, String> {
        let mut config = TopicConfig {
            log: defaults.clone(),
            max_message_bytes,
            min_insync_replicas: 1,
            overrides: overrides.clone(),
        };
        for (key, value) in overrides {
            config
                .apply(key, value)
                .map_err(|message| format!("{key}: {message}"))?;
        }
        Ok(config)
    }

    fn apply(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "max.message.bytes" => {
                self.max_message_bytes = parse_num(value, 0, i32::MAX as i64)? as usize
            }
            "min.insync.replicas" => {
                self.min_insync_replicas = parse_num(value, 1, i16::MAX as i64)? as i32
            }
            "retention.ms" | "retention.bytes" => {
                parse_num(value, -1, i64::MAX)?;
            }
            "cleanup.policy" => match value {
                "delete" | "compact" | "compact,delete" | "delete,compact" => {}
                _ => return Err(format!("expected delete or compact, got {value:?}")),
            },
            "compression.type" => match value {
                "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => {}
                _ => return Err(format!("unknown compression type {value:?}")),
            },
            "unclean.leader.election.enable" => {
                parse_bool(value)?;
            }
            "message.timestamp.type" => match value {
                "CreateTime" => {}
                "LogAppendTime" => return Err("LogAppendTime is not supported yet".into()),
                _ => return Err(format!("expected CreateTime, got {value:?}")),
            },
            _ => apply_log_setting(&mut self.log, key, value)?,
        }
        Ok(())
    }
}

/// Topic-level names that map onto the partition log's own settings.
pub fn apply_log_setting(log: &mut LogConfig, key: &str, value: &str) -> Result<(), String> {
    match key {
        "segment.bytes" => log.segment_bytes = parse_num(value, 14, i32::MAX as i64)? as u64,
        "segment.ms" => log.segment_ms = parse_num(value, 1, i64::MAX)?,
        "flush.messages" => log.flush_messages = optional_limit(parse_num(value, 1, i64::MAX)?),
        "flush.ms" => {
            log.flush_ms = optional_limit(parse_num(value, 0, i64::MAX)?).map(|v| v as i64)
        }
        "index.interval.bytes" => {
            log.index_interval_bytes = parse_num(value, 0, i32::MAX as i64)? as u64
        }
        other => return Err(format!("unknown setting {other:?}")),
    }
    Ok(())
}

/// Broker-wide defaults: Kafka names them `log.` plus a (sometimes different) word.
pub fn apply_broker_log_setting(log: &mut LogConfig, key: &str, value: &str) -> Result<(), String> {
    let topic_key = match key {
        "log.segment.bytes" => "segment.bytes",
        "log.roll.ms" => "segment.ms",
        "log.roll.hours" => {
            log.segment_ms = parse_num(value, 1, i64::MAX / 3_600_000)? * 3_600_000;
            return Ok(());
        }
        "log.flush.interval.messages" => "flush.messages",
        "log.flush.interval.ms" => "flush.ms",
        "log.index.interval.bytes" => "index.interval.bytes",
        other => return Err(format!("unknown setting {other:?}")),
    };
    apply_log_setting(log, topic_key, value)
}

/// Kafka spells "never" as Long.MAX_VALUE.
fn optional_limit(n: i64) -> Option<u64> {
    (n != i64::MAX).then_some(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn overrides_apply_over_defaults() {
        let config = TopicConfig::new(
            &LogConfig::default(),
            1000,
            &overrides(&[
                ("segment.bytes", "4096"),
                ("min.insync.replicas", "2"),
                ("flush.messages", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(config.log.segment_bytes, 4096);
        assert_eq!(config.log.flush_messages, Some(1));
        assert_eq!(config.min_insync_replicas, 2);
        assert_eq!(config.max_message_bytes, 1000);
    }

    #[test]
    fn unknown_and_bad_values_are_refused() {
        for (key, value) in [
            ("segmnet.bytes", "1"),
            ("segment.bytes", "-5"),
            ("cleanup.policy", "zap"),
        ] {
            assert!(
                TopicConfig::new(&LogConfig::default(), 1, &overrides(&[(key, value)])).is_err(),
                "{key}={value}"
            );
        }
        assert_eq!(
            TopicConfig::new(
                &LogConfig::default(),
                1,
                &overrides(&[("flush.messages", "9223372036854775807")])
            )
            .unwrap()
            .log
            .flush_messages,
            None
        );
    }
}
