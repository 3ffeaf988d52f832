//! Topic-level settings by their Kafka names, and the broker-wide `log.*` defaults for them.
//!
//! [`TOPIC_SETTINGS`] is Kafka's whole list of topic settings (3.9 and later), each with its
//! type, Kafka's default, the broker setting that supplies its default, its check, and what
//! this broker does with it: enforced, or stored and reported by DescribeConfigs until the
//! feature it belongs to exists. A topic's settings are the broker defaults overlaid with
//! the overrides given at creation; a name Kafka does not have, or a value Kafka would
//! refuse, is refused with INVALID_CONFIG rather than stored and silently ignored.

use crate::log::LogConfig;
use std::collections::BTreeMap;

/// One topic setting as Kafka defines it.
#[derive(Debug, Clone, Copy)]
pub struct TopicSetting {
    pub name: &'static str,
    /// Kafka's default, as DescribeConfigs shows it.
    pub default: &'static str,
    /// The broker setting whose value is the default for topics without an override.
    pub broker_setting: Option<&'static str>,
    pub check: Check,
    /// Whether this broker acts on the setting; otherwise it is only stored and reported.
    pub enforced: bool,
    /// What the broker does with it (for DescribeConfigs' documentation and the README).
    pub effect: &'static str,
}

/// How a value is checked, which is also its Kafka config type.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// A LONG at least `min`.
    Long {
        min: i64,
    },
    /// An INT in `min..=max`.
    Int {
        min: i64,
        max: i64,
    },
    Boolean,
    /// A DOUBLE in 0..=1.
    Ratio,
    /// A STRING, one of these.
    OneOf(&'static [&'static str]),
    /// A LIST, each element one of these (case-insensitive, as Kafka).
    ListOf(&'static [&'static str]),
    /// A LIST of `partition:broker` pairs, or `*`, or empty (replication throttling).
    ThrottledReplicas,
    /// A STRING naming a Kafka message format version (`3.0-IV1`), deprecated by Kafka.
    Version,
}

/// Kafka's config type codes (DescribeConfigs v3+).
pub mod config_type {
    pub const BOOLEAN: i8 = 1;
    pub const STRING: i8 = 2;
    pub const INT: i8 = 3;
    pub const LONG: i8 = 5;
    pub const DOUBLE: i8 = 6;
    pub const LIST: i8 = 7;
}

/// Kafka's config source codes (DescribeConfigs v1+).
pub mod config_source {
    pub const TOPIC_CONFIG: i8 = 1;
    pub const STATIC_BROKER_CONFIG: i8 = 4;
    pub const DEFAULT_CONFIG: i8 = 5;
}

impl Check {
    pub fn config_type(&self) -> i8 {
        match self {
            Check::Long { .. } => config_type::LONG,
            Check::Int { .. } => config_type::INT,
            Check::Boolean => config_type::BOOLEAN,
            Check::Ratio => config_type::DOUBLE,
            Check::OneOf(_) | Check::Version => config_type::STRING,
            Check::ListOf(_) | Check::ThrottledReplicas => config_type::LIST,
        }
    }

    fn check(&self, value: &str) -> Result<(), String> {
        match *self {
            Check::Long { min } => parse_num(value, min, i64::MAX).map(drop),
            Check::Int { min, max } => parse_num(value, min, max).map(drop),
            Check::Boolean => parse_bool(value).map(drop),
            Check::Ratio => match value.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(()),
                _ => Err(format!("expected a number from 0 to 1, got {value:?}")),
            },
            Check::OneOf(allowed) => {
                if allowed.contains(&value) {
                    Ok(())
                } else {
                    Err(format!("expected one of {allowed:?}, got {value:?}"))
                }
            }
            Check::ListOf(allowed) => {
                for item in value.split(',').map(str::trim) {
                    if !allowed.iter().any(|a| a.eq_ignore_ascii_case(item)) {
                        return Err(format!("expected a list of {allowed:?}, got {value:?}"));
                    }
                }
                Ok(())
            }
            Check::ThrottledReplicas => {
                let value = value.trim();
                let pair = |s: &str| {
                    s.trim()
                        .split_once(':')
                        .is_some_and(|(p, b)| p.parse::<u32>().is_ok() && b.parse::<u32>().is_ok())
                };
                if value.is_empty() || value == "*" || value.split(',').all(pair) {
                    Ok(())
                } else {
                    Err(format!(
                        "expected *, or partition:broker pairs separated by commas, got {value:?}"
                    ))
                }
            }
            Check::Version => {
                let numeric = value.split('-').next().unwrap_or("");
                if !numeric.is_empty()
                    && numeric.split('.').all(|n| n.parse::<u32>().is_ok())
                    && value
                        .split('-')
                        .nth(1)
                        .is_none_or(|iv| iv.starts_with("IV"))
                {
                    Ok(())
                } else {
                    Err(format!(
                        "expected a Kafka version such as 3.0-IV1, got {value:?}"
                    ))
                }
            }
        }
    }
}

const NEVER: &str = "9223372036854775807";
const COMPACTION: &str = "stored; compaction is not built yet";
const RETENTION: &str = "stored; retention is not enforced yet";
const TIERED: &str = "stored; tiered storage is not built";
const TIMESTAMP_BOUNDS: &str = "stored; record timestamps are not bounded yet";

const fn setting(
    name: &'static str,
    default: &'static str,
    broker_setting: Option<&'static str>,
    check: Check,
    enforced: bool,
    effect: &'static str,
) -> TopicSetting {
    TopicSetting {
        name,
        default,
        broker_setting,
        check,
        enforced,
        effect,
    }
}

/// Every topic setting Kafka has, sorted by name.
pub const TOPIC_SETTINGS: &[TopicSetting] = &[
    setting("cleanup.policy", "delete", Some("log.cleanup.policy"), Check::ListOf(&["delete", "compact"]), false, "stored; delete is what happens (without retention, nothing is deleted yet); compaction is not built yet"),
    setting("compression.gzip.level", "-1", None, Check::Int { min: -1, max: 9 }, false, "stored; batches are kept as the producer compressed them"),
    setting("compression.lz4.level", "9", None, Check::Int { min: 1, max: 17 }, false, "stored; batches are kept as the producer compressed them"),
    setting("compression.type", "producer", Some("compression.type"), Check::OneOf(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]), false, "stored; batches are kept as the producer compressed them"),
    setting("compression.zstd.level", "3", None, Check::Int { min: -131_072, max: 22 }, false, "stored; batches are kept as the producer compressed them"),
    setting("delete.retention.ms", "86400000", Some("log.cleaner.delete.retention.ms"), Check::Long { min: 0 }, false, COMPACTION),
    setting("file.delete.delay.ms", "60000", Some("log.segment.delete.delay.ms"), Check::Long { min: 0 }, false, "stored; deleted segments are removed at once"),
    setting("flush.messages", NEVER, Some("log.flush.interval.messages"), Check::Long { min: 1 }, true, "fsync after this many messages (default: never force)"),
    setting("flush.ms", NEVER, Some("log.flush.interval.ms"), Check::Long { min: 0 }, true, "fsync after this long (default: never force)"),
    setting("follower.replication.throttled.replicas", "", None, Check::ThrottledReplicas, false, "stored; replication is not throttled"),
    setting("index.interval.bytes", "4096", Some("log.index.interval.bytes"), Check::Int { min: 0, max: i32::MAX as i64 }, true, "sparse offset index density"),
    setting("leader.replication.throttled.replicas", "", None, Check::ThrottledReplicas, false, "stored; replication is not throttled"),
    setting("local.retention.bytes", "-2", None, Check::Long { min: -2 }, false, TIERED),
    setting("local.retention.ms", "-2", None, Check::Long { min: -2 }, false, TIERED),
    setting("max.compaction.lag.ms", NEVER, Some("log.cleaner.max.compaction.lag.ms"), Check::Long { min: 1 }, false, COMPACTION),
    setting("max.message.bytes", "1048588", Some("message.max.bytes"), Check::Int { min: 0, max: i32::MAX as i64 }, true, "largest record batch accepted"),
    setting("message.downconversion.enable", "true", Some("log.message.downconversion.enable"), Check::Boolean, false, "stored; only magic v2 batches exist here, nothing is down-converted"),
    setting("message.format.version", "3.0-IV1", Some("log.message.format.version"), Check::Version, false, "stored; deprecated by Kafka, batches are always v2"),
    setting("message.timestamp.after.max.ms", NEVER, Some("log.message.timestamp.after.max.ms"), Check::Long { min: 0 }, false, TIMESTAMP_BOUNDS),
    setting("message.timestamp.before.max.ms", NEVER, Some("log.message.timestamp.before.max.ms"), Check::Long { min: 0 }, false, TIMESTAMP_BOUNDS),
    setting("message.timestamp.difference.max.ms", NEVER, Some("log.message.timestamp.difference.max.ms"), Check::Long { min: 0 }, false, TIMESTAMP_BOUNDS),
    setting("message.timestamp.type", "CreateTime", Some("log.message.timestamp.type"), Check::OneOf(&["CreateTime", "LogAppendTime"]), true, "LogAppendTime stamps each appended batch with the leader's clock"),
    setting("min.cleanable.dirty.ratio", "0.5", Some("log.cleaner.min.cleanable.ratio"), Check::Ratio, false, COMPACTION),
    setting("min.compaction.lag.ms", "0", Some("log.cleaner.min.compaction.lag.ms"), Check::Long { min: 0 }, false, COMPACTION),
    setting("min.insync.replicas", "1", Some("min.insync.replicas"), Check::Int { min: 1, max: i16::MAX as i64 }, true, "acks=all needs at least this many in-sync replicas"),
    setting("preallocate", "false", Some("log.preallocate"), Check::Boolean, false, "stored; segment files grow as written"),
    setting("remote.log.copy.disable", "false", None, Check::Boolean, false, TIERED),
    setting("remote.log.delete.on.disable", "false", None, Check::Boolean, false, TIERED),
    setting("remote.storage.enable", "false", None, Check::Boolean, false, TIERED),
    setting("retention.bytes", "-1", Some("log.retention.bytes"), Check::Long { min: i64::MIN }, false, RETENTION),
    setting("retention.ms", "604800000", Some("log.retention.ms"), Check::Long { min: -1 }, false, RETENTION),
    setting("segment.bytes", "1073741824", Some("log.segment.bytes"), Check::Int { min: 14, max: i32::MAX as i64 }, true, "segment roll size"),
    setting("segment.index.bytes", "10485760", Some("log.index.size.max.bytes"), Check::Int { min: 4, max: i32::MAX as i64 }, false, "stored; indexes grow as needed"),
    setting("segment.jitter.ms", "0", Some("log.roll.jitter.ms"), Check::Long { min: 0 }, false, "stored; segments roll at segment.ms exactly"),
    setting("segment.ms", "604800000", Some("log.roll.ms"), Check::Long { min: 1 }, true, "segment roll age"),
    setting("unclean.leader.election.enable", "false", Some("unclean.leader.election.enable"), Check::Boolean, true, "the controller may elect a leader from outside the ISR"),
];

/// The setting named `name`, if Kafka has one.
pub fn topic_setting(name: &str) -> Option<&'static TopicSetting> {
    TOPIC_SETTINGS.iter().find(|s| s.name == name)
}

/// How a topic stamps record timestamps (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's timestamps are kept.
    CreateTime,
    /// The leader stamps every appended batch with its clock.
    LogAppendTime,
}

/// Effective settings of one topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub log: LogConfig,
    pub max_message_bytes: usize,
    pub min_insync_replicas: i32,
    pub timestamp_type: TimestampType,
    /// The overrides as given, for DescribeConfigs and persistence.
    pub overrides: BTreeMap<String, String>,
}

/// One setting as DescribeConfigs reports it.
#[derive(Debug, Clone)]
pub struct DescribedSetting {
    pub setting: &'static TopicSetting,
    pub value: String,
    /// One of [`config_source`].
    pub source: i8,
    /// Where the value could come from, most specific first: (name, value, source).
    pub synonyms: Vec<(String, String, i8)>,
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
            timestamp_type: TimestampType::CreateTime,
            overrides: overrides.clone(),
        };
        for (key, value) in overrides {
            let setting =
                topic_setting(key).ok_or_else(|| format!("unknown topic setting {key:?}"))?;
            setting
                .check
                .check(value)
                .and_then(|()| config.apply(key, value))
                .map_err(|message| format!("{key}: {message}"))?;
        }
        let lag = |name: &str, default: i64| {
            overrides
                .get(name)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(default)
        };
        if lag("min.compaction.lag.ms", 0) > lag("max.compaction.lag.ms", i64::MAX) {
            return Err("min.compaction.lag.ms is larger than max.compaction.lag.ms".into());
        }
        Ok(config)
    }

    /// The settings this broker acts on; the others were checked and are only stored.
    fn apply(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "max.message.bytes" => {
                self.max_message_bytes = parse_num(value, 0, i32::MAX as i64)? as usize
            }
            "min.insync.replicas" => {
                self.min_insync_replicas = parse_num(value, 1, i16::MAX as i64)? as i32
            }
            "message.timestamp.type" => {
                self.timestamp_type = match value {
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => TimestampType::CreateTime,
                }
            }
            "segment.bytes"
            | "segment.ms"
            | "flush.messages"
            | "flush.ms"
            | "index.interval.bytes" => apply_log_setting(&mut self.log, key, value)?,
            _ => {}
        }
        Ok(())
    }

    /// Every topic setting with its value and where it comes from, as DescribeConfigs
    /// reports them: an override is a topic setting; otherwise the broker's value where it
    /// has one that differs from Kafka's default, else Kafka's default.
    pub fn describe(
        &self,
        broker_log: &LogConfig,
        broker_max_message_bytes: usize,
    ) -> Vec<DescribedSetting> {
        TOPIC_SETTINGS
            .iter()
            .map(|setting| {
                let broker_value = broker_value(setting.name, broker_log, broker_max_message_bytes)
                    .filter(|v| v != setting.default);
                let default_name = setting.broker_setting.unwrap_or(setting.name).to_string();
                let mut synonyms = Vec::new();
                if let Some(v) = self.overrides.get(setting.name) {
                    synonyms.push((
                        setting.name.to_string(),
                        v.clone(),
                        config_source::TOPIC_CONFIG,
                    ));
                }
                if let Some(v) = &broker_value {
                    synonyms.push((
                        default_name.clone(),
                        v.clone(),
                        config_source::STATIC_BROKER_CONFIG,
                    ));
                }
                synonyms.push((
                    default_name,
                    setting.default.to_string(),
                    config_source::DEFAULT_CONFIG,
                ));
                let (_, value, source) = synonyms[0].clone();
                DescribedSetting {
                    setting,
                    value,
                    source,
                    synonyms,
                }
            })
            .collect()
    }
}

/// The broker's own value for a topic setting it configures, in Kafka's spelling.
fn broker_value(name: &str, log: &LogConfig, max_message_bytes: usize) -> Option<String> {
    let never = |v: Option<u64>| v.map_or(NEVER.to_string(), |v| v.to_string());
    Some(match name {
        "segment.bytes" => log.segment_bytes.to_string(),
        "segment.ms" => log.segment_ms.to_string(),
        "flush.messages" => never(log.flush_messages),
        "flush.ms" => never(log.flush_ms.map(|v| v as u64)),
        "index.interval.bytes" => log.index_interval_bytes.to_string(),
        "max.message.bytes" => max_message_bytes.to_string(),
        _ => return None,
    })
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

/// A Kafka whole-number setting value within `min..=max`.
pub fn parse_num(value: &str, min: i64, max: i64) -> Result<i64, String> {
    let n: i64 = value
        .parse()
        .map_err(|_| format!("expected a whole number, got {value:?}"))?;
    if n < min || n > max {
        return Err(format!("{n} is out of range {min}..={max}"));
    }
    Ok(n)
}

/// A Kafka boolean setting value.
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("expected true or false, got {value:?}")),
    }
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
                ("message.timestamp.type", "LogAppendTime"),
            ]),
        )
        .unwrap();
        assert_eq!(config.log.segment_bytes, 4096);
        assert_eq!(config.log.flush_messages, Some(1));
        assert_eq!(config.min_insync_replicas, 2);
        assert_eq!(config.max_message_bytes, 1000);
        assert_eq!(config.timestamp_type, TimestampType::LogAppendTime);
    }

    #[test]
    fn unknown_and_bad_values_are_refused() {
        for (key, value) in [
            ("segmnet.bytes", "1"),
            ("segment.bytes", "-5"),
            ("cleanup.policy", "zap"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("message.timestamp.type", "WallClock"),
            ("leader.replication.throttled.replicas", "0:x"),
            ("message.format.version", "banana"),
            ("compression.gzip.level", "10"),
            ("preallocate", "yes"),
        ] {
            assert!(
                TopicConfig::new(&LogConfig::default(), 1, &overrides(&[(key, value)])).is_err(),
                "{key}={value}"
            );
        }
        assert!(TopicConfig::new(
            &LogConfig::default(),
            1,
            &overrides(&[
                ("min.compaction.lag.ms", "10"),
                ("max.compaction.lag.ms", "5")
            ])
        )
        .is_err());
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

    /// Every setting Kafka has is known, and its own default passes its check.
    #[test]
    fn every_kafka_topic_setting_is_accepted_with_its_default() {
        for name in [
            "delete.retention.ms",
            "min.cleanable.dirty.ratio",
            "file.delete.delay.ms",
            "max.compaction.lag.ms",
            "min.compaction.lag.ms",
            "segment.index.bytes",
            "segment.jitter.ms",
            "preallocate",
            "message.timestamp.before.max.ms",
            "message.timestamp.after.max.ms",
            "remote.storage.enable",
            "local.retention.ms",
        ] {
            assert!(topic_setting(name).is_some(), "{name}");
        }
        for s in TOPIC_SETTINGS {
            TopicConfig::new(&LogConfig::default(), 1, &overrides(&[(s.name, s.default)]))
                .unwrap_or_else(|e| panic!("{}={}: {e}", s.name, s.default));
        }
        let names: Vec<&str> = TOPIC_SETTINGS.iter().map(|s| s.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted, "sorted, each once");
    }

    #[test]
    fn describe_reports_overrides_broker_values_and_defaults_with_their_sources() {
        let broker_log = LogConfig {
            segment_bytes: 1 << 20,
            ..LogConfig::default()
        };
        let config = TopicConfig::new(
            &broker_log,
            1_048_588,
            &overrides(&[("retention.ms", "1000")]),
        )
        .unwrap();
        let described = config.describe(&broker_log, 1_048_588);
        assert_eq!(described.len(), TOPIC_SETTINGS.len());
        let get = |name: &str| described.iter().find(|d| d.setting.name == name).unwrap();
        let retention = get("retention.ms");
        assert_eq!(
            (retention.value.as_str(), retention.source),
            ("1000", config_source::TOPIC_CONFIG)
        );
        assert_eq!(retention.synonyms.len(), 2);
        assert_eq!(retention.synonyms[1].0, "log.retention.ms");
        let segment = get("segment.bytes");
        assert_eq!(
            (segment.value.as_str(), segment.source),
            ("1048576", config_source::STATIC_BROKER_CONFIG)
        );
        let flush = get("flush.messages");
        assert_eq!(
            (flush.value.as_str(), flush.source),
            (NEVER, config_source::DEFAULT_CONFIG)
        );
    }
}

#[cfg(test)]
mod readme {
    use super::*;

    /// The README's table of topic settings lists every one, enforced or stored as here.
    #[test]
    fn the_readme_lists_every_topic_setting_as_it_is_handled() {
        let readme = include_str!("../../../README.md");
        for s in TOPIC_SETTINGS {
            let default = if s.default.is_empty() {
                "(empty)"
            } else {
                s.default
            };
            let effect = if s.enforced {
                format!("**enforced**: {}", s.effect)
            } else {
                s.effect.to_string()
            };
            let row = format!("| `{}` | {} | {} |", s.name, default, effect);
            assert!(readme.contains(&row), "README.md lacks the row\n{row}");
        }
    }
}
