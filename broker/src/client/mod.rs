//! The project's own Kafka client: connections, metadata, an admin API, a producer and a
//! consumer. The console tools, the benchmark and the simulation lab use it. It speaks
//! the same wire protocol as every other client, so it can drive any Kafka broker.

pub mod admin;
mod connection;
mod consumer;
pub mod group;
pub mod partitioner;
mod producer;

pub use connection::Connection;
pub use consumer::{ConsumedRecord, Consumer, ConsumerConfig, OffsetReset};
pub use producer::{Acks, Producer, ProducerConfig, SendResult};

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("i/o: {0}")]
    Io(String),
    #[error("timed out {0}")]
    Timeout(String),
    #[error("protocol: {0}")]
    Protocol(String),
    /// A fetched batch failed its checks (CRC, length, magic): the broker served bytes
    /// that are not what a producer wrote. Consumers refuse it, as Kafka's do with
    /// check.crcs (the default).
    #[error("corrupt batch from {topic}-{partition}: {reason}")]
    CorruptBatch {
        topic: String,
        partition: i32,
        reason: String,
    },
    #[error("{error:?}: {message}")]
    Kafka {
        error: ResponseError,
        message: String,
    },
}

impl ClientError {
    pub fn kafka(code: i16, message: impl Into<String>) -> ClientError {
        ClientError::Kafka {
            error: ResponseError::try_from_code(code).unwrap_or(ResponseError::Unknown(code)),
            message: message.into(),
        }
    }

    /// Worth retrying after a metadata refresh or a reconnect.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Io(_) | ClientError::Timeout(_) => true,
            ClientError::Protocol(_) | ClientError::CorruptBatch { .. } => false,
            ClientError::Kafka { error, .. } => error.is_retriable(),
        }
    }
}

/// What the client knows about one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub error_code: i16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub id: u128,
    pub partitions: Vec<PartitionInfo>,
}

/// A topic to create.
#[derive(Debug, Clone, Default)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

/// Connections to a cluster and its metadata.
pub struct Client {
    bootstrap: Vec<String>,
    client_id: String,
    timeout: Duration,
    brokers: BTreeMap<i32, String>,
    connections: BTreeMap<i32, Connection>,
    bootstrap_connection: Option<Connection>,
    topics: BTreeMap<String, TopicInfo>,
}

impl Client {
    /// `bootstrap` is Kafka's `bootstrap.servers`: comma-separated host:port.
    pub fn new(bootstrap: &str, client_id: &str, timeout: Duration) -> Client {
        Client {
            bootstrap: bootstrap
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            client_id: client_id.to_string(),
            timeout,
            brokers: BTreeMap::new(),
            connections: BTreeMap::new(),
            bootstrap_connection: None,
            topics: BTreeMap::new(),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The `client.id` sent with every request.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub(crate) async fn any_connection(&mut self) -> Result<&mut Connection, ClientError> {
        self.connections.retain(|_, c| !c.is_broken());
        if let Some(id) = self.connections.keys().next().copied() {
            return Ok(self.connections.get_mut(&id).expect("key just read"));
        }
        if self
            .bootstrap_connection
            .as_ref()
            .is_some_and(|c| c.is_broken())
        {
            self.bootstrap_connection = None;
        }
        if self.bootstrap_connection.is_none() {
            let mut last = ClientError::Io("no bootstrap servers given".into());
            for addr in self.bootstrap.clone() {
                match Connection::connect(&addr, &self.client_id, self.timeout).await {
                    Ok(conn) => {
                        self.bootstrap_connection = Some(conn);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            if self.bootstrap_connection.is_none() {
                return Err(last);
            }
        }
        Ok(self.bootstrap_connection.as_mut().expect("set above"))
    }

    /// A connection to broker `node_id`, opened on first use (and again after one failed).
    pub async fn connection(&mut self, node_id: i32) -> Result<&mut Connection, ClientError> {
        if self
            .connections
            .get(&node_id)
            .is_some_and(|c| c.is_broken())
        {
            self.connections.remove(&node_id);
        }
        if !self.connections.contains_key(&node_id) {
            let addr = self
                .brokers
                .get(&node_id)
                .cloned()
                .ok_or_else(|| ClientError::Protocol(format!("unknown broker {node_id}")))?;
            let conn = Connection::connect(&addr, &self.client_id, self.timeout).await?;
            self.connections.insert(node_id, conn);
        }
        Ok(self.connections.get_mut(&node_id).expect("inserted above"))
    }

    /// Drop every connection: the next use reconnects from the bootstrap servers.
    pub fn disconnect_all(&mut self) {
        self.connections.clear();
        self.bootstrap_connection = None;
    }

    /// Drop a connection after an error so the next use reconnects.
    pub fn disconnect(&mut self, node_id: i32) {
        self.connections.remove(&node_id);
        self.bootstrap_connection = None;
    }

    /// Refresh metadata for `topics` (None: all topics). Auto-creation follows the broker.
    pub async fn refresh_metadata(
        &mut self,
        topics: Option<&[&str]>,
        allow_auto_create: bool,
    ) -> Result<Vec<TopicInfo>, ClientError> {
        let req = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| {
                        metadata_request::MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.to_string()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(allow_auto_create);
        let result = self.any_connection().await?.request(&req).await;
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                self.connections.clear();
                self.bootstrap_connection = None;
                return Err(e);
            }
        };
        for b in &resp.brokers {
            self.brokers
                .insert(b.node_id.0, format!("{}:{}", b.host, b.port));
        }
        let mut out = Vec::new();
        for t in resp.topics {
            let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
            if t.error_code != 0 {
                return Err(ClientError::kafka(
                    t.error_code,
                    format!("metadata for topic {name}"),
                ));
            }
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            let info = TopicInfo {
                name: name.clone(),
                id: t.topic_id.as_u128(),
                partitions,
            };
            self.topics.insert(name, info.clone());
            out.push(info);
        }
        Ok(out)
    }

    /// Cached metadata of `topic`, fetched (and auto-created, if the broker does) on first use.
    pub async fn topic(&mut self, topic: &str) -> Result<TopicInfo, ClientError> {
        if let Some(t) = self.topics.get(topic) {
            return Ok(t.clone());
        }
        self.refresh_metadata(Some(&[topic]), true).await?;
        self.topics.get(topic).cloned().ok_or_else(|| {
            ClientError::kafka(
                ResponseError::UnknownTopicOrPartition.code(),
                topic.to_string(),
            )
        })
    }

    pub fn forget_topic(&mut self, topic: &str) {
        self.topics.remove(topic);
    }

    /// The leader of a partition, from cached metadata.
    pub async fn leader(&mut self, topic: &str, partition: i32) -> Result<i32, ClientError> {
        let info = self.topic(topic).await?;
        info.partitions
            .iter()
            .find(|p| p.partition == partition)
            .map(|p| p.leader)
            .filter(|l| *l >= 0)
            .ok_or_else(|| {
                ClientError::kafka(
                    ResponseError::LeaderNotAvailable.code(),
                    format!("{topic}-{partition}"),
                )
            })
    }

    pub async fn create_topics(
        &mut self,
        topics: &[NewTopic],
    ) -> Result<Vec<(String, Result<(), ClientError>)>, ClientError> {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(self.timeout.as_millis() as i32)
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        create_topics_request::CreatableTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.name.clone())))
                            .with_num_partitions(t.partitions)
                            .with_replication_factor(t.replication_factor)
                            .with_configs(
                                t.configs
                                    .iter()
                                    .map(|(k, v)| {
                                        create_topics_request::CreatableTopicConfig::default()
                                            .with_name(StrBytes::from_string(k.clone()))
                                            .with_value(Some(StrBytes::from_string(v.clone())))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let resp = self.any_connection().await?.request(&req).await?;
        Ok(resp
            .topics
            .into_iter()
            .map(|t| {
                let result = if t.error_code == 0 {
                    Ok(())
                } else {
                    Err(ClientError::kafka(
                        t.error_code,
                        t.error_message.map(|m| m.to_string()).unwrap_or_default(),
                    ))
                };
                (t.name.0.to_string(), result)
            })
            .collect())
    }

    pub async fn delete_topics(
        &mut self,
        names: &[&str],
    ) -> Result<Vec<(String, Result<(), ClientError>)>, ClientError> {
        let conn = self.any_connection().await?;
        let version = conn.version(ApiKey::DeleteTopics).unwrap_or(0);
        let mut req = DeleteTopicsRequest::default().with_timeout_ms(30_000);
        let names_bytes: Vec<TopicName> = names
            .iter()
            .map(|n| TopicName(StrBytes::from_string(n.to_string())))
            .collect();
        if version >= 6 {
            req.topics = names_bytes
                .into_iter()
                .map(|n| delete_topics_request::DeleteTopicState::default().with_name(Some(n)))
                .collect();
        } else {
            req.topic_names = names_bytes;
        }
        let resp = conn.request(&req).await?;
        for n in names {
            self.topics.remove(*n);
        }
        Ok(resp
            .responses
            .into_iter()
            .map(|r| {
                let result = if r.error_code == 0 {
                    Ok(())
                } else {
                    Err(ClientError::kafka(
                        r.error_code,
                        r.error_message.map(|m| m.to_string()).unwrap_or_default(),
                    ))
                };
                (r.name.map(|n| n.0.to_string()).unwrap_or_default(), result)
            })
            .collect())
    }

    /// ListOffsets for one partition: -2 earliest, -1 latest, or a timestamp.
    pub async fn list_offset(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<i64, ClientError> {
        let leader = self.leader(topic, partition).await?;
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(partition)
                        .with_current_leader_epoch(-1)
                        .with_timestamp(timestamp),
                ])]);
        let resp = self.connection(leader).await?.request(&req).await?;
        let p = resp
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| ClientError::Protocol("empty ListOffsets response".into()))?;
        if p.error_code != 0 {
            return Err(ClientError::kafka(
                p.error_code,
                format!("ListOffsets {topic}-{partition}"),
            ));
        }
        Ok(p.offset)
    }

    /// Known broker addresses by node id.
    pub fn brokers(&self) -> &BTreeMap<i32, String> {
        &self.brokers
    }
}
