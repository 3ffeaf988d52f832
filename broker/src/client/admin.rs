//! Group administration, as an admin client does it: find a group's coordinator
//! (FindCoordinator) and ask it, which in a cluster may be another broker than the
//! bootstrap one; list the groups of every broker (ListGroups); describe a group and decode
//! its members' assignments (DescribeGroups, ConsumerProtocolAssignment); read, commit
//! (as an admin, generation -1) and delete its offsets (OffsetFetch, OffsetCommit,
//! OffsetDelete); delete groups (DeleteGroups).
//!
//! The group APIs are negotiated here, on each connection this module opens, so the
//! connection's own table of versions is left as it is.

use super::{Client, ClientError, Connection};
use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Request, StrBytes};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::time::Duration;

/// Highest version of each group API this module speaks. FindCoordinator stays at 3 (one
/// key per request) and OffsetFetch at 7 (one group per request): the shapes used here.
const GROUP_API_VERSIONS: &[(ApiKey, i16)] = &[
    (ApiKey::FindCoordinator, 3),
    (ApiKey::ListGroups, 4),
    (ApiKey::DescribeGroups, 5),
    (ApiKey::OffsetFetch, 7),
    (ApiKey::OffsetCommit, 8),
    (ApiKey::DeleteGroups, 2),
    (ApiKey::OffsetDelete, 0),
];

/// Pause between tries while a coordinator moves or loads its groups.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// A group's coordinator, as FindCoordinator names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinator {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

/// One group as ListGroups reports it (the state is empty from brokers older than v4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: String,
}

/// One member of a group, its assignment decoded when the group is a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    /// (topic, partition) pairs, sorted.
    pub assignment: Vec<(String, i32)>,
}

/// A group as DescribeGroups reports it. A group nobody knows is `Dead`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    /// The assignor the members agreed on (Kafka's ASSIGNMENT-STRATEGY).
    pub protocol: String,
    pub members: Vec<MemberDescription>,
    pub coordinator: Coordinator,
}

impl GroupDescription {
    /// Kafka's tools call a group that does not exist, or no longer does, `Dead`.
    pub fn exists(&self) -> bool {
        self.state != "Dead"
    }
}

/// A consumer's assignment (Kafka's ConsumerProtocolAssignment, any version): the
/// (topic, partition) pairs it holds, sorted. Empty bytes are an empty assignment.
pub fn decode_assignment(bytes: &[u8]) -> Result<Vec<(String, i32)>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if bytes.len() < 2 {
        return Err("assignment shorter than its version".into());
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    if version < 0 {
        return Err(format!("assignment of version {version}"));
    }
    // A later version only adds fields at the end: read what this crate knows.
    let mut buf = Bytes::copy_from_slice(&bytes[2..]);
    let decoded = ConsumerProtocolAssignment::decode(&mut buf, version.min(3))
        .map_err(|e| format!("bad assignment: {e}"))?;
    let mut out: Vec<(String, i32)> = decoded
        .assigned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
        .collect();
    out.sort();
    Ok(out)
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn kafka_error(code: i16, message: impl Into<String>) -> ClientError {
    ClientError::kafka(code, message)
}

/// Errors after which the coordinator is looked up again and the request retried.
fn coordinator_moved(code: i16) -> bool {
    code == ResponseError::CoordinatorNotAvailable.code()
        || code == ResponseError::NotCoordinator.code()
        || code == ResponseError::CoordinatorLoadInProgress.code()
}

/// Group administration through a [`Client`] (metadata, bootstrap) and connections of its
/// own to the coordinators and brokers it asks.
pub struct GroupAdmin {
    client: Client,
    client_id: String,
    timeout: Duration,
    /// Connections by broker id, the group APIs negotiated on each.
    nodes: BTreeMap<i32, Connection>,
    /// Where each group was last found.
    coordinators: BTreeMap<String, Coordinator>,
}

impl GroupAdmin {
    pub fn new(bootstrap: &str, client_id: &str, timeout: Duration) -> GroupAdmin {
        GroupAdmin {
            client: Client::new(bootstrap, client_id, timeout),
            client_id: client_id.to_string(),
            timeout,
            nodes: BTreeMap::new(),
            coordinators: BTreeMap::new(),
        }
    }

    /// The underlying client, for metadata and ListOffsets.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Open a connection and pin the group APIs at min(ours, the broker's).
    async fn open(&self, addr: &str) -> Result<Connection, ClientError> {
        let mut conn = Connection::connect(addr, &self.client_id, self.timeout).await?;
        let versions = conn.request(&ApiVersionsRequest::default()).await?;
        for (key, ours) in GROUP_API_VERSIONS {
            if let Some(theirs) = versions.api_keys.iter().find(|k| k.api_key == *key as i16) {
                let version = (*ours).min(theirs.max_version);
                if version >= theirs.min_version {
                    conn.pin_version(*key, version);
                }
            }
        }
        Ok(conn)
    }

    /// The connection to broker `node_id` at `addr`, opened on first use.
    async fn node(&mut self, node_id: i32, addr: &str) -> Result<&mut Connection, ClientError> {
        if self.nodes.get(&node_id).is_some_and(|c| c.is_broken()) {
            self.nodes.remove(&node_id);
        }
        if !self.nodes.contains_key(&node_id) {
            let conn = self.open(addr).await?;
            self.nodes.insert(node_id, conn);
        }
        Ok(self.nodes.get_mut(&node_id).expect("inserted above"))
    }

    /// A connection to any broker of the cluster (learnt from the bootstrap servers).
    async fn any_node(&mut self) -> Result<&mut Connection, ClientError> {
        self.nodes.retain(|_, c| !c.is_broken());
        if self.nodes.is_empty() {
            self.client.refresh_metadata(Some(&[]), false).await?;
            let mut last = ClientError::Io("the cluster named no broker".into());
            for (node_id, addr) in self.client.brokers().clone() {
                match self.node(node_id, &addr).await {
                    Ok(_) => break,
                    Err(e) => last = e,
                }
            }
            if self.nodes.is_empty() {
                return Err(last);
            }
        }
        Ok(self.nodes.values_mut().next().expect("checked above"))
    }

    /// FindCoordinator for `group`, asked of any broker, retried while the coordinator is
    /// not available yet (the offsets topic being created or loaded).
    pub async fn find_coordinator(&mut self, group: &str) -> Result<Coordinator, ClientError> {
        if let Some(c) = self.coordinators.get(group) {
            return Ok(c.clone());
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let req = FindCoordinatorRequest::default()
                .with_key(s(group))
                .with_key_type(0);
            let result = match self.any_node().await {
                Ok(conn) if conn.version(ApiKey::FindCoordinator).is_none() => {
                    // Not worth retrying: a broker that does not serve groups (a cluster's
                    // broker here, for now) will not start to within the timeout.
                    return Err(ClientError::Protocol(format!(
                        "broker {} does not serve consumer groups (its ApiVersions has no FindCoordinator)",
                        conn.addr
                    )));
                }
                Ok(conn) => conn.request(&req).await,
                Err(e) => Err(e),
            };
            let error = match result {
                Ok(resp) if resp.error_code == 0 => {
                    let found = Coordinator {
                        node_id: resp.node_id.0,
                        host: resp.host.to_string(),
                        port: resp.port,
                    };
                    self.coordinators.insert(group.to_string(), found.clone());
                    return Ok(found);
                }
                Ok(resp) => {
                    let message = resp.error_message.map(|m| m.to_string());
                    kafka_error(
                        resp.error_code,
                        message.unwrap_or_else(|| format!("finding the coordinator of {group}")),
                    )
                }
                Err(e) => {
                    self.nodes.clear();
                    self.client.disconnect_all();
                    e
                }
            };
            if !error.is_retriable() || tokio::time::Instant::now() >= deadline {
                return Err(error);
            }
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
    }

    /// Send `req` to `group`'s coordinator; `error_of` reads the response's group-level
    /// error. A moved or loading coordinator, or a failed connection, is retried until the
    /// timeout; the last response (whatever its error) or failure is returned.
    async fn coordinator_request<R: Request>(
        &mut self,
        group: &str,
        req: &R,
        error_of: impl Fn(&R::Response) -> i16,
    ) -> Result<(R::Response, Coordinator), ClientError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let coordinator = self.find_coordinator(group).await?;
            let addr = format!("{}:{}", coordinator.host, coordinator.port);
            let result = match self.node(coordinator.node_id, &addr).await {
                Ok(conn) => conn.request(req).await,
                Err(e) => Err(e),
            };
            let retry = match &result {
                Ok(resp) => coordinator_moved(error_of(resp)),
                Err(e) => e.is_retriable(),
            };
            if !retry || tokio::time::Instant::now() >= deadline {
                return result.map(|resp| (resp, coordinator));
            }
            self.coordinators.remove(group);
            if result.is_err() {
                self.nodes.remove(&coordinator.node_id);
            }
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
    }

    /// ListGroups on every broker of the cluster. `states` filters (Kafka's state names);
    /// empty keeps every group.
    pub async fn list_groups(
        &mut self,
        states: &[String],
    ) -> Result<Vec<ListedGroup>, ClientError> {
        self.client.refresh_metadata(Some(&[]), false).await?;
        let brokers = self.client.brokers().clone();
        let mut out: Vec<ListedGroup> = Vec::new();
        for (node_id, addr) in brokers {
            let req = ListGroupsRequest::default()
                .with_states_filter(states.iter().map(|st| s(st)).collect());
            let deadline = tokio::time::Instant::now() + self.timeout;
            let resp = loop {
                let conn = self.node(node_id, &addr).await?;
                let resp = conn.request(&req).await?;
                if resp.error_code == ResponseError::CoordinatorLoadInProgress.code()
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(RETRY_BACKOFF).await;
                    continue;
                }
                break resp;
            };
            if resp.error_code != 0 {
                return Err(kafka_error(
                    resp.error_code,
                    format!("ListGroups on broker {node_id}"),
                ));
            }
            let version = self.nodes[&node_id].version(ApiKey::ListGroups);
            for g in resp.groups {
                let state = g.group_state.to_string();
                // Before v4 the broker cannot filter: filter here when it reported states.
                if version < Some(4)
                    && !states.is_empty()
                    && !state.is_empty()
                    && !states.iter().any(|st| st.eq_ignore_ascii_case(&state))
                {
                    continue;
                }
                out.push(ListedGroup {
                    group_id: g.group_id.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    state,
                });
            }
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out.dedup_by(|a, b| a.group_id == b.group_id);
        Ok(out)
    }

    /// DescribeGroups for one group, at its coordinator.
    pub async fn describe_group(&mut self, group: &str) -> Result<GroupDescription, ClientError> {
        let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
        let (resp, coordinator) = self
            .coordinator_request(group, &req, |r| {
                r.groups.first().map_or(0, |g| g.error_code)
            })
            .await?;
        let g = resp
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol("DescribeGroups answered no group".into()))?;
        if g.error_code == ResponseError::GroupIdNotFound.code() {
            return Ok(GroupDescription {
                group_id: group.to_string(),
                state: "Dead".into(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
                coordinator,
            });
        }
        if g.error_code != 0 {
            return Err(kafka_error(
                g.error_code,
                format!("describing group {group}"),
            ));
        }
        let consumer = g.protocol_type.is_empty() || g.protocol_type.as_str() == "consumer";
        let mut members = Vec::new();
        for m in g.members {
            let assignment = if consumer {
                decode_assignment(&m.member_assignment).map_err(|e| {
                    ClientError::Protocol(format!("member {} of group {group}: {e}", m.member_id))
                })?
            } else {
                Vec::new()
            };
            members.push(MemberDescription {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.map(|i| i.to_string()),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assignment,
            });
        }
        Ok(GroupDescription {
            group_id: group.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members,
            coordinator,
        })
    }

    /// Every committed offset of `group`: (topic, partition) -> offset.
    pub async fn committed_offsets(
        &mut self,
        group: &str,
    ) -> Result<BTreeMap<(String, i32), i64>, ClientError> {
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(None);
        let (resp, _) = self
            .coordinator_request(group, &req, |r| r.error_code)
            .await?;
        if resp.error_code != 0 {
            return Err(kafka_error(
                resp.error_code,
                format!("fetching the offsets of group {group}"),
            ));
        }
        let mut out = BTreeMap::new();
        for t in resp.topics {
            for p in t.partitions {
                if p.error_code != 0 {
                    return Err(kafka_error(
                        p.error_code,
                        format!("offset of {}-{}", t.name.as_str(), p.partition_index),
                    ));
                }
                if p.committed_offset >= 0 {
                    out.insert((t.name.to_string(), p.partition_index), p.committed_offset);
                }
            }
        }
        Ok(out)
    }

    /// Commit `offsets` ((topic, partition, offset)) for `group` as an admin does: no
    /// member, generation -1, which the coordinator accepts only while the group has no
    /// members. Returns each partition's error code (0: committed).
    pub async fn commit_offsets(
        &mut self,
        group: &str,
        offsets: &[(String, i32, i64)],
    ) -> Result<Vec<(String, i32, i16)>, ClientError> {
        let mut topics: Vec<offset_commit_request::OffsetCommitRequestTopic> = Vec::new();
        for (topic, partition, offset) in offsets {
            let p = offset_commit_request::OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(s("")));
            match topics
                .iter_mut()
                .find(|t| t.name.as_str() == topic.as_str())
            {
                Some(t) => t.partitions.push(p),
                None => topics.push(
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(topic)))
                        .with_partitions(vec![p]),
                ),
            }
        }
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(s(""))
            .with_retention_time_ms(-1)
            .with_topics(topics);
        let (resp, _) = self
            .coordinator_request(group, &req, |r| {
                r.topics
                    .first()
                    .and_then(|t| t.partitions.first())
                    .map_or(0, |p| p.error_code)
            })
            .await?;
        Ok(resp
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.to_string(), p.partition_index, p.error_code))
            })
            .collect())
    }

    /// DeleteGroups for one group, at its coordinator: Ok, or the error that refused it
    /// (a group with members: NonEmptyGroup; an unknown one: GroupIdNotFound).
    pub async fn delete_group(&mut self, group: &str) -> Result<(), ClientError> {
        let req = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]);
        let (resp, _) = self
            .coordinator_request(group, &req, |r| {
                r.results.first().map_or(0, |g| g.error_code)
            })
            .await?;
        let code = resp
            .results
            .first()
            .map_or(ResponseError::UnknownServerError.code(), |g| g.error_code);
        if code != 0 {
            return Err(kafka_error(code, format!("deleting group {group}")));
        }
        Ok(())
    }

    /// OffsetDelete: drop `group`'s offsets of `partitions`. Returns the group-level error
    /// code and each partition's (0: deleted).
    pub async fn delete_offsets(
        &mut self,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<(i16, Vec<(String, i32, i16)>), ClientError> {
        let mut topics: Vec<offset_delete_request::OffsetDeleteRequestTopic> = Vec::new();
        for (topic, partition) in partitions {
            let p = offset_delete_request::OffsetDeleteRequestPartition::default()
                .with_partition_index(*partition);
            match topics
                .iter_mut()
                .find(|t| t.name.as_str() == topic.as_str())
            {
                Some(t) => t.partitions.push(p),
                None => topics.push(
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(s(topic)))
                        .with_partitions(vec![p]),
                ),
            }
        }
        let req = OffsetDeleteRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(topics);
        let (resp, _) = self
            .coordinator_request(group, &req, |r| r.error_code)
            .await?;
        let per_partition = resp
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.to_string(), p.partition_index, p.error_code))
            })
            .collect();
        Ok((resp.error_code, per_partition))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::protocol::Encodable;

    fn encoded(version: i16, assignment: &ConsumerProtocolAssignment) -> Vec<u8> {
        let mut buf = bytes::BytesMut::new();
        buf.put_i16(version);
        assignment.encode(&mut buf, version.min(3)).unwrap();
        buf.to_vec()
    }

    #[test]
    fn assignments_decode_in_every_version_and_garbage_is_an_error() {
        let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            consumer_protocol_assignment::TopicPartition::default()
                .with_topic(TopicName(s("b")))
                .with_partitions(vec![2, 0]),
            consumer_protocol_assignment::TopicPartition::default()
                .with_topic(TopicName(s("a")))
                .with_partitions(vec![1]),
        ]);
        let expected = vec![
            ("a".to_string(), 1),
            ("b".to_string(), 0),
            ("b".to_string(), 2),
        ];
        for version in [0, 1, 3] {
            assert_eq!(
                decode_assignment(&encoded(version, &assignment)),
                Ok(expected.clone())
            );
        }
        assert_eq!(decode_assignment(&[]), Ok(vec![]));
        assert!(decode_assignment(&[0]).is_err());
        assert!(decode_assignment(&[0xff, 0xff, 0]).is_err());
        assert!(decode_assignment(&[0, 0, 0, 0, 0, 9]).is_err());
    }
}
