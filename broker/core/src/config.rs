//! Broker configuration: Kafka's setting names, Kafka's defaults, and the limits that keep a
//! node alive under bad input. Every default and bound lives here, with its reason.
//!
//! The config file uses Kafka's `server.properties` format (`key=value`, `#` comments) so a
//! Kafka engineer can bring the settings they know. Unknown keys are errors, naming the
//! file and line, because a silently ignored typo in a durability setting is worse than a
//! refusal to start.

use crate::group::GroupConfig;
use crate::log::LogConfig;
pub use crate::topic_config::{parse_bool, parse_num};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Kafka's `message.max.bytes` default: the largest record batch a produce may carry.
pub const MESSAGE_MAX_BYTES_DEFAULT: usize = 1_048_588;
/// Kafka's `socket.request.max.bytes` default (100 MiB): a frame larger than this is
/// refused before its body is read, so a bogus size prefix cannot exhaust memory.
pub const SOCKET_REQUEST_MAX_BYTES_DEFAULT: usize = 104_857_600;
/// Kafka's `max.connections` is unbounded by default; a bound keeps file descriptors and
/// per-connection buffers in check on small machines.
pub const CONNECTIONS_MAX_DEFAULT: usize = 1_024;
/// Longest a fetch may park waiting for data, whatever the client asks (Kafka caps it by
/// the client's request timeout; we cap it so a parked fetch cannot pin a connection).
pub const FETCH_WAIT_MS_MAX: i64 = 30_000;
/// Fetch response size cap when a client asks for more (Kafka's `fetch.max.bytes` default).
pub const FETCH_RESPONSE_BYTES_MAX: usize = 55 * 1024 * 1024;
pub use crate::kafka_rules::{TOPIC_NAME_LENGTH_MAX, TOPIC_PARTITIONS_MAX};
/// Producer ids are reserved on disk in blocks of this size, so a restart never reuses one.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1_000;
pub use crate::kafka_rules::REPLICA_LAG_TIME_MAX_MS_DEFAULT;
/// Kafka's `broker.heartbeat.interval.ms` default.
pub const BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT: i64 = 2_000;
/// Kafka's `replica.fetch.wait.max.ms` default.
pub const REPLICA_FETCH_WAIT_MAX_MS_DEFAULT: i64 = 500;
/// Kafka's `offsets.topic.num.partitions` default.
pub const OFFSETS_TOPIC_NUM_PARTITIONS_DEFAULT: i32 = 50;
/// Kafka's `offsets.topic.replication.factor` default (capped by the brokers there are).
pub const OFFSETS_TOPIC_REPLICATION_FACTOR_DEFAULT: i16 = 3;
/// Kafka's `offsets.retention.minutes` default (7 days).
pub const OFFSETS_RETENTION_MINUTES_DEFAULT: i64 = 10_080;
/// Kafka's `offsets.retention.check.interval.ms` default (10 minutes).
pub const OFFSETS_RETENTION_CHECK_INTERVAL_MS_DEFAULT: i64 = 600_000;
/// Kafka's `offsets.commit.timeout.ms`: how long a coordinator write may wait for its
/// replicas before it is answered with an error.
pub const OFFSETS_COMMIT_TIMEOUT_MS_DEFAULT: i64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}:{line}: {field}: {message}")]
    Invalid {
        file: String,
        line: usize,
        field: String,
        message: String,
    },
}

/// Everything a broker node needs to start.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `node.id`
    pub node_id: i32,
    /// `listeners` (host:port); port 0 picks a free one.
    pub listen: SocketAddr,
    /// `advertised.listeners`: what Metadata tells clients. Defaults to the bound address.
    pub advertised: Option<(String, u16)>,
    /// `log.dirs`
    pub data_dir: PathBuf,
    /// `num.partitions`: partitions of an auto-created topic (Kafka default 1).
    pub num_partitions: i32,
    /// `default.replication.factor` (Kafka default 1).
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable` (Kafka default true).
    pub auto_create_topics_enable: bool,
    /// `message.max.bytes`
    pub message_max_bytes: usize,
    /// `socket.request.max.bytes`
    pub socket_request_max_bytes: usize,
    /// `max.connections`
    pub connections_max: usize,
    /// `log.segment.bytes`, `log.roll.ms`, `log.flush.interval.messages`, `log.flush.interval.ms`,
    /// `log.index.interval.bytes`: the defaults for every partition log.
    pub log: LogConfig,
    /// `cluster.id` as reported in Metadata.
    pub cluster_id: String,
    /// `controller.quorum.voters` (`1@host:port,2@host:port,...`): the controller quorum
    /// this broker registers with. Empty: a standalone broker that is its own controller
    /// and the only replica of every partition.
    pub controller_quorum_voters: Vec<(i32, SocketAddr)>,
    /// `broker.rack`, for rack-aware replica placement.
    pub rack: Option<String>,
    /// `replica.lag.time.max.ms`: how long a follower may go without catching up before
    /// the leader removes it from the ISR.
    pub replica_lag_time_max_ms: i64,
    /// `broker.heartbeat.interval.ms`: how often the broker heartbeats to the controller.
    pub broker_heartbeat_interval_ms: i64,
    /// `replica.fetch.wait.max.ms`: how long a follower's fetch may park at the leader.
    pub replica_fetch_wait_max_ms: i64,
    /// The group coordinator's settings: `group.initial.rebalance.delay.ms`,
    /// `group.min.session.timeout.ms`, `group.max.session.timeout.ms`, `group.max.size`,
    /// `offsets.retention.minutes` (held in milliseconds).
    pub group: GroupConfig,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` when it is created.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor`: its replication factor, capped by the brokers.
    pub offsets_topic_replication_factor: i16,
    /// `offsets.retention.check.interval.ms`: how often expired offsets are removed.
    pub offsets_retention_check_interval_ms: i64,
    /// `offsets.commit.timeout.ms`: how long a coordinator write (an offset commit, a
    /// generation) waits for the high watermark before it is answered with an error.
    pub offsets_commit_timeout_ms: i64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            listen: "127.0.0.1:9092".parse().expect("valid literal address"),
            advertised: None,
            data_dir: PathBuf::from("./data"),
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics_enable: true,
            message_max_bytes: MESSAGE_MAX_BYTES_DEFAULT,
            socket_request_max_bytes: SOCKET_REQUEST_MAX_BYTES_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            log: LogConfig::default(),
            cluster_id: "faultline-cluster".to_string(),
            controller_quorum_voters: Vec::new(),
            rack: None,
            replica_lag_time_max_ms: REPLICA_LAG_TIME_MAX_MS_DEFAULT,
            broker_heartbeat_interval_ms: BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT,
            replica_fetch_wait_max_ms: REPLICA_FETCH_WAIT_MAX_MS_DEFAULT,
            group: GroupConfig::default(),
            offsets_topic_num_partitions: OFFSETS_TOPIC_NUM_PARTITIONS_DEFAULT,
            offsets_topic_replication_factor: OFFSETS_TOPIC_REPLICATION_FACTOR_DEFAULT,
            offsets_retention_check_interval_ms: OFFSETS_RETENTION_CHECK_INTERVAL_MS_DEFAULT,
            offsets_commit_timeout_ms: OFFSETS_COMMIT_TIMEOUT_MS_DEFAULT,
        }
    }
}

impl BrokerConfig {
    /// Apply `key=value` lines; `file` only names the source in error messages.
    pub fn apply_properties(&mut self, file: &str, text: &str) -> Result<(), ConfigError> {
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let invalid = |field: &str, message: String| ConfigError::Invalid {
                file: file.to_string(),
                line: index + 1,
                field: field.to_string(),
                message,
            };
            let Some((key, value)) = line.split_once(['=', ':']) else {
                return Err(invalid(line, "expected key=value".into()));
            };
            let (key, value) = (key.trim(), value.trim());
            self.apply_one(key, value)
                .map_err(|message| invalid(key, message))?;
        }
        Ok(())
    }

    /// Apply one setting by its Kafka name.
    pub fn apply_one(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "node.id" | "broker.id" => self.node_id = parse_num(value, 0, i32::MAX as i64)? as i32,
            "listeners" => self.listen = parse_listener(value)?,
            "advertised.listeners" => {
                let addr = strip_listener_name(value);
                let (host, port) = addr
                    .rsplit_once(':')
                    .ok_or_else(|| format!("expected HOST:PORT, got {value:?}"))?;
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("bad port in {value:?}"))?;
                self.advertised = Some((host.to_string(), port));
            }
            "log.dirs" | "log.dir" => self.data_dir = PathBuf::from(value),
            "num.partitions" => {
                self.num_partitions = parse_num(value, 1, TOPIC_PARTITIONS_MAX as i64)? as i32
            }
            "default.replication.factor" => {
                self.default_replication_factor = parse_num(value, 1, i16::MAX as i64)? as i16
            }
            "auto.create.topics.enable" => self.auto_create_topics_enable = parse_bool(value)?,
            "message.max.bytes" => {
                self.message_max_bytes = parse_num(value, 1, i32::MAX as i64)? as usize
            }
            "socket.request.max.bytes" => {
                self.socket_request_max_bytes = parse_num(value, 1024, i32::MAX as i64)? as usize
            }
            "max.connections" => self.connections_max = parse_num(value, 1, 1_000_000)? as usize,
            "cluster.id" => self.cluster_id = value.to_string(),
            "controller.quorum.voters" => self.controller_quorum_voters = parse_voters(value)?,
            "broker.rack" => self.rack = Some(value.to_string()).filter(|r| !r.is_empty()),
            "replica.lag.time.max.ms" => {
                self.replica_lag_time_max_ms = parse_num(value, 1, i32::MAX as i64)?
            }
            "broker.heartbeat.interval.ms" => {
                self.broker_heartbeat_interval_ms = parse_num(value, 1, i32::MAX as i64)?
            }
            "replica.fetch.wait.max.ms" => {
                self.replica_fetch_wait_max_ms = parse_num(value, 0, FETCH_WAIT_MS_MAX)?
            }
            "group.initial.rebalance.delay.ms" => {
                self.group.initial_rebalance_delay_ms = parse_num(value, 0, i32::MAX as i64)? as i32
            }
            "group.min.session.timeout.ms" => {
                let ms = parse_num(value, 1, i32::MAX as i64)? as i32;
                if ms > self.group.session_timeout_ms_max {
                    return Err(format!(
                        "must not exceed group.max.session.timeout.ms ({})",
                        self.group.session_timeout_ms_max
                    ));
                }
                self.group.session_timeout_ms_min = ms
            }
            "group.max.session.timeout.ms" => {
                let ms = parse_num(value, 1, i32::MAX as i64)? as i32;
                if ms < self.group.session_timeout_ms_min {
                    return Err(format!(
                        "must not be below group.min.session.timeout.ms ({})",
                        self.group.session_timeout_ms_min
                    ));
                }
                self.group.session_timeout_ms_max = ms
            }
            "group.max.size" => {
                self.group.group_size_max = parse_num(value, 1, i32::MAX as i64)? as usize
            }
            "group.consumer.session.timeout.ms" => {
                self.group.consumer_session_timeout_ms =
                    parse_num(value, 1, i32::MAX as i64)? as i32
            }
            "group.consumer.heartbeat.interval.ms" => {
                self.group.consumer_heartbeat_interval_ms =
                    parse_num(value, 1, i32::MAX as i64)? as i32
            }
            "group.consumer.max.size" => {
                self.group.consumer_group_size_max = parse_num(value, 1, i32::MAX as i64)? as usize
            }
            "offsets.topic.num.partitions" => {
                self.offsets_topic_num_partitions =
                    parse_num(value, 1, TOPIC_PARTITIONS_MAX as i64)? as i32
            }
            "offsets.topic.replication.factor" => {
                self.offsets_topic_replication_factor = parse_num(value, 1, i16::MAX as i64)? as i16
            }
            "offsets.retention.minutes" => {
                // Kafka's bound: the retention in milliseconds must fit a long.
                let minutes = parse_num(value, 1, i64::MAX / 60_000)?;
                self.group.offsets_retention_ms = minutes * 60_000
            }
            "offsets.retention.check.interval.ms" => {
                self.offsets_retention_check_interval_ms = parse_num(value, 1, i64::MAX)?
            }
            "offsets.commit.timeout.ms" => {
                self.offsets_commit_timeout_ms = parse_num(value, 1, i32::MAX as i64)?
            }
            other => match other.strip_prefix("log.") {
                // Broker-wide log defaults use `log.` plus the topic-level name, as in Kafka.
                Some(_) => {
                    crate::topic_config::apply_broker_log_setting(&mut self.log, other, value)?
                }
                None => return Err(format!("unknown setting {other:?}")),
            },
        }
        Ok(())
    }

    /// The settings `apply_one` takes, by their Kafka names, with their values now (for
    /// DescribeConfigs of the broker). Settings without a value are left out.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let never = |v: Option<u64>| v.map_or(i64::MAX.to_string(), |v| v.to_string());
        let voters = self
            .controller_quorum_voters
            .iter()
            .map(|(id, addr)| format!("{id}@{addr}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut settings = vec![
            (
                "auto.create.topics.enable",
                self.auto_create_topics_enable.to_string(),
            ),
            (
                "broker.heartbeat.interval.ms",
                self.broker_heartbeat_interval_ms.to_string(),
            ),
            ("cluster.id", self.cluster_id.clone()),
            ("controller.quorum.voters", voters),
            (
                "default.replication.factor",
                self.default_replication_factor.to_string(),
            ),
            ("listeners", format!("PLAINTEXT://{}", self.listen)),
            ("log.dirs", self.data_dir.display().to_string()),
            (
                "log.flush.interval.messages",
                never(self.log.flush_messages),
            ),
            (
                "log.flush.interval.ms",
                never(self.log.flush_ms.map(|v| v as u64)),
            ),
            (
                "log.index.interval.bytes",
                self.log.index_interval_bytes.to_string(),
            ),
            ("log.roll.ms", self.log.segment_ms.to_string()),
            ("log.segment.bytes", self.log.segment_bytes.to_string()),
            ("max.connections", self.connections_max.to_string()),
            ("message.max.bytes", self.message_max_bytes.to_string()),
            ("node.id", self.node_id.to_string()),
            ("num.partitions", self.num_partitions.to_string()),
            (
                "group.initial.rebalance.delay.ms",
                self.group.initial_rebalance_delay_ms.to_string(),
            ),
            (
                "group.min.session.timeout.ms",
                self.group.session_timeout_ms_min.to_string(),
            ),
            (
                "group.max.session.timeout.ms",
                self.group.session_timeout_ms_max.to_string(),
            ),
            ("group.max.size", self.group.group_size_max.to_string()),
            (
                "group.consumer.session.timeout.ms",
                self.group.consumer_session_timeout_ms.to_string(),
            ),
            (
                "group.consumer.heartbeat.interval.ms",
                self.group.consumer_heartbeat_interval_ms.to_string(),
            ),
            (
                "group.consumer.max.size",
                self.group.consumer_group_size_max.to_string(),
            ),
            (
                "offsets.topic.num.partitions",
                self.offsets_topic_num_partitions.to_string(),
            ),
            (
                "offsets.topic.replication.factor",
                self.offsets_topic_replication_factor.to_string(),
            ),
            (
                "offsets.retention.minutes",
                (self.group.offsets_retention_ms / 60_000).to_string(),
            ),
            (
                "offsets.retention.check.interval.ms",
                self.offsets_retention_check_interval_ms.to_string(),
            ),
            (
                "offsets.commit.timeout.ms",
                self.offsets_commit_timeout_ms.to_string(),
            ),
            (
                "replica.fetch.wait.max.ms",
                self.replica_fetch_wait_max_ms.to_string(),
            ),
            (
                "replica.lag.time.max.ms",
                self.replica_lag_time_max_ms.to_string(),
            ),
            (
                "socket.request.max.bytes",
                self.socket_request_max_bytes.to_string(),
            ),
        ];
        if let Some((host, port)) = &self.advertised {
            settings.push(("advertised.listeners", format!("PLAINTEXT://{host}:{port}")));
        }
        if let Some(rack) = &self.rack {
            settings.push(("broker.rack", rack.clone()));
        }
        settings.sort_unstable();
        settings
    }

    /// Whether this broker is part of a cluster run by a controller quorum.
    pub fn is_clustered(&self) -> bool {
        !self.controller_quorum_voters.is_empty()
    }

    /// The host and port Metadata advertises.
    pub fn advertised_endpoint(&self, bound: SocketAddr) -> (String, u16) {
        self.advertised
            .clone()
            .unwrap_or_else(|| (bound.ip().to_string(), bound.port()))
    }
}

/// `controller.quorum.voters`: `id@host:port` separated by commas.
pub fn parse_voters(value: &str) -> Result<Vec<(i32, SocketAddr)>, String> {
    let mut voters = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('@')
            .ok_or_else(|| format!("expected ID@HOST:PORT, got {part:?}"))?;
        let id = parse_num(id, 0, i32::MAX as i64)? as i32;
        let addr = parse_listener(addr)?;
        if voters.iter().any(|(other, _)| *other == id) {
            return Err(format!("voter id {id} appears twice"));
        }
        voters.push((id, addr));
    }
    if voters.is_empty() {
        return Err("expected at least one ID@HOST:PORT".into());
    }
    Ok(voters)
}

fn strip_listener_name(value: &str) -> &str {
    // Kafka writes listeners as NAME://host:port; only one plaintext listener is served.
    value
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(value)
}

fn parse_listener(value: &str) -> Result<SocketAddr, String> {
    let addr = strip_listener_name(value);
    let addr = if let Some(port) = addr.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else if let Some(port) = addr.strip_prefix("localhost:") {
        format!("127.0.0.1:{port}")
    } else {
        addr.to_string()
    };
    addr.parse()
        .map_err(|_| format!("expected HOST:PORT with a numeric IP, got {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_use_kafka_names() {
        let mut config = BrokerConfig::default();
        config
            .apply_properties(
                "server.properties",
                "# comment\nnode.id=3\nlisteners=PLAINTEXT://127.0.0.1:19092\nnum.partitions = 6\nlog.flush.interval.messages=1\nlog.segment.bytes=1048576\n",
            )
            .unwrap();
        assert_eq!(config.node_id, 3);
        assert_eq!(config.listen.port(), 19092);
        assert_eq!(config.num_partitions, 6);
        assert_eq!(config.log.flush_messages, Some(1));
        assert_eq!(config.log.segment_bytes, 1_048_576);
    }

    /// What DescribeConfigs reports of a broker reads back into the same configuration.
    #[test]
    fn described_settings_apply_back_to_the_same_config() {
        let mut config = BrokerConfig::default();
        for (key, value) in [
            ("node.id", "4"),
            ("log.flush.interval.messages", "1"),
            (
                "controller.quorum.voters",
                "1@127.0.0.1:9192,2@127.0.0.1:9193",
            ),
            ("broker.rack", "r1"),
            ("advertised.listeners", "PLAINTEXT://localhost:9000"),
            ("group.initial.rebalance.delay.ms", "0"),
            ("group.min.session.timeout.ms", "1000"),
            ("group.max.session.timeout.ms", "60000"),
            ("group.max.size", "10"),
            ("offsets.topic.num.partitions", "3"),
            ("offsets.topic.replication.factor", "1"),
            ("offsets.retention.minutes", "60"),
            ("offsets.retention.check.interval.ms", "1000"),
        ] {
            config.apply_one(key, value).unwrap();
        }
        let mut again = BrokerConfig::default();
        for (key, value) in config.settings() {
            again
                .apply_one(key, &value)
                .unwrap_or_else(|e| panic!("{key}={value}: {e}"));
        }
        assert_eq!(format!("{again:?}"), format!("{config:?}"));
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let mut config = BrokerConfig::default();
        let err = config
            .apply_properties("server.properties", "node.id=1\n\nnum.partitions=zero\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "server.properties:3: num.partitions: expected a whole number, got \"zero\""
        );
        let err = config
            .apply_properties("a.properties", "log.flush.interval.msgs=1")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("a.properties:1: log.flush.interval.msgs: unknown"),
            "{err}"
        );
    }

    #[test]
    fn group_settings_use_kafka_names_defaults_and_bounds() {
        let mut config = BrokerConfig::default();
        assert_eq!(config.group.initial_rebalance_delay_ms, 3_000);
        assert_eq!(config.offsets_topic_num_partitions, 50);
        assert_eq!(config.offsets_topic_replication_factor, 3);
        assert_eq!(config.group.offsets_retention_ms, 10_080 * 60_000);
        assert_eq!(config.offsets_retention_check_interval_ms, 600_000);
        config
            .apply_properties("s", "offsets.retention.minutes=2\ngroup.max.size=5\n")
            .unwrap();
        assert_eq!(config.group.offsets_retention_ms, 120_000);
        assert_eq!(config.group.group_size_max, 5);
        for bad in [
            "offsets.topic.num.partitions=0",
            "group.max.size=0",
            "group.min.session.timeout.ms=99999999",
            "group.max.session.timeout.ms=1",
            "offsets.retention.minutes=0",
        ] {
            assert!(config.apply_properties("s", bad).is_err(), "{bad}");
        }
    }
}
