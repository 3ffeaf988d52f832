//! A consumer of explicitly assigned partitions: fetches from each partition's leader,
//! decodes batches, skips records before the position (a fetch may start mid-batch), and
//! advances positions. Consumer groups come with the group coordinator.

use super::{Client, ClientError};
use crate::record::codec::{decode_batches, Record};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::time::Duration;

/// Kafka's `auto.offset.reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
    /// Report OFFSET_OUT_OF_RANGE to the caller.
    None,
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `fetch.max.wait.ms`
    pub fetch_wait_max: Duration,
    /// `fetch.min.bytes`
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes`
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes`
    pub partition_fetch_max_bytes: i32,
    pub offset_reset: OffsetReset,
    /// `isolation.level` read_committed
    pub read_committed: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            fetch_wait_max: Duration::from_millis(500),
            fetch_min_bytes: 1,
            fetch_max_bytes: 52_428_800,
            partition_fetch_max_bytes: 1_048_576,
            offset_reset: OffsetReset::Earliest,
            read_committed: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub topic: String,
    pub partition: i32,
    pub record: Record,
}

pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    /// Next offset to read per assigned partition; None until resolved by the reset policy.
    positions: BTreeMap<(String, i32), Option<i64>>,
    high_watermarks: BTreeMap<(String, i32), i64>,
    /// Positions moved by `auto.offset.reset`, not yet taken by `take_resets`.
    resets: Vec<(String, i32, i64)>,
}

impl Consumer {
    pub fn new(client: Client, config: ConsumerConfig) -> Consumer {
        Consumer {
            client,
            config,
            positions: BTreeMap::new(),
            high_watermarks: BTreeMap::new(),
            resets: Vec::new(),
        }
    }

    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Assign a partition, starting at `offset` or, if None, where `auto.offset.reset` says.
    pub fn assign(&mut self, topic: &str, partition: i32, offset: Option<i64>) {
        self.positions
            .insert((topic.to_string(), partition), offset);
    }

    /// Stop fetching a partition.
    pub fn unassign(&mut self, topic: &str, partition: i32) {
        let key = (topic.to_string(), partition);
        self.positions.remove(&key);
        self.high_watermarks.remove(&key);
        self.resets
            .retain(|(t, p, _)| !(t == topic && *p == partition));
    }

    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) {
        self.positions
            .insert((topic.to_string(), partition), Some(offset));
    }

    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.positions
            .get(&(topic.to_string(), partition))
            .copied()
            .flatten()
    }

    /// Positions that `auto.offset.reset` moved since the last call: (topic, partition, new
    /// position). A history recorder logs these as seeks.
    pub fn take_resets(&mut self) -> Vec<(String, i32, i64)> {
        std::mem::take(&mut self.resets)
    }

    /// High watermark seen in the last fetch of a partition.
    pub fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        self.high_watermarks
            .get(&(topic.to_string(), partition))
            .copied()
    }

    /// True once every assigned partition has been read up to its last known high watermark.
    pub fn caught_up(&self) -> bool {
        self.positions
            .iter()
            .all(|(tp, pos)| match (pos, self.high_watermarks.get(tp)) {
                (Some(p), Some(hw)) => p >= hw,
                _ => false,
            })
    }

    async fn resolve(&mut self, topic: &str, partition: i32) -> Result<i64, ClientError> {
        let timestamp = match self.config.offset_reset {
            OffsetReset::Earliest => -2,
            OffsetReset::Latest => -1,
            OffsetReset::None => {
                return Err(ClientError::kafka(
                    ResponseError::OffsetOutOfRange.code(),
                    format!("{topic}-{partition} has no position"),
                ))
            }
        };
        let offset = self.client.list_offset(topic, partition, timestamp).await?;
        self.positions
            .insert((topic.to_string(), partition), Some(offset));
        self.resets.push((topic.to_string(), partition, offset));
        Ok(offset)
    }

    /// One round of fetches (one request per leader); returns the records in partition
    /// order, each partition's records in offset order. A leader that fails does not cost
    /// the records others returned (their positions have moved past them): the error is
    /// returned only when no record came back.
    pub async fn poll(&mut self) -> Result<Vec<ConsumedRecord>, ClientError> {
        let mut first_error = None;
        let mut by_leader: BTreeMap<i32, Vec<(String, i32, i64)>> = BTreeMap::new();
        let assigned: Vec<(String, i32)> = self.positions.keys().cloned().collect();
        for (topic, partition) in assigned {
            let position = match self.position(&topic, partition) {
                Some(p) => p,
                None => self.resolve(&topic, partition).await?,
            };
            let leader = self.client.leader(&topic, partition).await?;
            by_leader
                .entry(leader)
                .or_default()
                .push((topic, partition, position));
        }
        let mut out = Vec::new();
        for (leader, parts) in by_leader {
            let mut topics: BTreeMap<&str, Vec<fetch_request::FetchPartition>> = BTreeMap::new();
            for (topic, partition, position) in &parts {
                topics.entry(topic.as_str()).or_default().push(
                    fetch_request::FetchPartition::default()
                        .with_partition(*partition)
                        .with_current_leader_epoch(-1)
                        .with_fetch_offset(*position)
                        .with_last_fetched_epoch(-1)
                        .with_log_start_offset(-1)
                        .with_partition_max_bytes(self.config.partition_fetch_max_bytes),
                );
            }
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(self.config.fetch_wait_max.as_millis() as i32)
                .with_min_bytes(self.config.fetch_min_bytes)
                .with_max_bytes(self.config.fetch_max_bytes)
                .with_isolation_level(self.config.read_committed as i8)
                .with_session_epoch(-1)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(t, ps)| {
                            fetch_request::FetchTopic::default()
                                .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                                .with_partitions(ps)
                        })
                        .collect(),
                );
            let result = match self.client.connection(leader).await {
                Ok(conn) => conn.request(&req).await,
                Err(e) => Err(e),
            };
            let resp = match result {
                Ok(r) => r,
                Err(e) => {
                    self.client.disconnect(leader);
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            for topic in resp.responses {
                let name = topic.topic.0.to_string();
                for p in topic.partitions {
                    let key = (name.clone(), p.partition_index);
                    if p.error_code == ResponseError::OffsetOutOfRange.code() {
                        self.positions.insert(key.clone(), None);
                        if let Err(e) = self.resolve(&name, p.partition_index).await {
                            first_error.get_or_insert(e);
                        }
                        continue;
                    }
                    if p.error_code != 0 {
                        let error = ClientError::kafka(
                            p.error_code,
                            format!("fetch {name}-{}", p.partition_index),
                        );
                        if error.is_retriable() {
                            self.client.forget_topic(&name);
                            continue;
                        }
                        first_error.get_or_insert(error);
                        continue;
                    }
                    self.high_watermarks.insert(key.clone(), p.high_watermark);
                    let Some(position) = self.positions.get(&key).copied().flatten() else {
                        continue;
                    };
                    let records = p.records.unwrap_or_default();
                    let mut next = position;
                    let batches = match decode_batches(&records) {
                        Ok(batches) => batches,
                        Err(e) => {
                            first_error.get_or_insert(ClientError::CorruptBatch {
                                topic: name.clone(),
                                partition: p.partition_index,
                                reason: e.to_string(),
                            });
                            continue;
                        }
                    };
                    for (header, recs) in batches {
                        for record in recs {
                            if record.offset >= next {
                                next = record.offset + 1;
                                out.push(ConsumedRecord {
                                    topic: name.clone(),
                                    partition: p.partition_index,
                                    record,
                                });
                            }
                        }
                        // Control batches and compacted gaps still move the position on.
                        next = next.max(header.last_offset() + 1);
                    }
                    self.positions.insert(key, Some(next));
                }
            }
        }
        match first_error {
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }
}
