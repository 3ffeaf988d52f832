//! Roles resolved to nodes when a fault fires: "leader:T/P", "follower:T/P",
//! "followers:T/P", "replicas:T/P" (asked of the cluster through the admin node),
//! "controller" (the active one), "coordinator:GROUP" (the broker coordinating a consumer
//! group), "coordinator-followers:GROUP" (the followers of that group's `__consumer_offsets`
//! partition), partition groups with "others", or plain node names.

use super::cluster::Cluster;
use super::CLIENT_TIMEOUT;
use faultline::client::Client;
use madsim::task::NodeId;
use std::collections::BTreeSet;

/// A topic's partitions as the cluster reports them now (None: no answer).
async fn topic_partitions(
    topic: &str,
    cluster: &Cluster,
) -> Option<Vec<faultline::client::PartitionInfo>> {
    let (topic, bootstrap) = (topic.to_string(), cluster.bootstrap.clone());
    cluster
        .admin
        .spawn(async move {
            let mut client = Client::new(&bootstrap, "nemesis", CLIENT_TIMEOUT);
            Some(client.topic(&topic).await.ok()?.partitions)
        })
        .await
        .ok()?
}

/// A partition's metadata as the cluster reports it now (None: no answer).
async fn partition_info(role: &str, cluster: &Cluster) -> Option<faultline::client::PartitionInfo> {
    let (topic, partition) = role.rsplit_once('/')?;
    let partition = partition.parse::<i32>().ok()?;
    topic_partitions(topic, cluster)
        .await?
        .into_iter()
        .find(|p| p.partition == partition)
}

/// A partition's followers, lowest broker id first: its replicas other than the leader,
/// or, when metadata lists no replicas, every broker other than the leader.
fn followers_of(info: &faultline::client::PartitionInfo, cluster: &Cluster) -> Vec<i32> {
    let mut replicas: Vec<i32> = if info.replicas.is_empty() {
        (1..=cluster.brokers.len() as i32).collect()
    } else {
        info.replicas.clone()
    };
    replicas.sort_unstable();
    replicas.dedup();
    replicas.retain(|r| *r != info.leader);
    replicas
}

/// Resolve a node name or role to the nodes it names now, in a deterministic order:
/// "leader:T/P" (the partition's leader), "follower:T/P" (its follower with the lowest
/// broker id), "followers:T/P" (every follower), "replicas:T/P" (followers, then the leader
/// last, so that a staggered restart brings the leader, likely the longest log, back last),
/// "controller" (the active controller: the first live controller that says it is),
/// or a plain node name.
pub(super) async fn resolve_nodes(name: &str, cluster: &Cluster) -> Vec<(String, NodeId)> {
    if let Some(role) = name.strip_prefix("leader:") {
        // As before roles beyond the leader existed: the client's leader lookup.
        let Some((topic, partition)) = role.rsplit_once('/') else {
            return Vec::new();
        };
        let (topic, Ok(partition), bootstrap) = (
            topic.to_string(),
            partition.parse::<i32>(),
            cluster.bootstrap.clone(),
        ) else {
            return Vec::new();
        };
        let leader = cluster
            .admin
            .spawn(async move {
                let mut client = Client::new(&bootstrap, "nemesis", CLIENT_TIMEOUT);
                client.leader(&topic, partition).await.ok()
            })
            .await
            .ok()
            .flatten();
        return leader.and_then(|l| cluster.broker(l)).into_iter().collect();
    }
    for prefix in ["follower:", "followers:", "replicas:"] {
        let Some(role) = name.strip_prefix(prefix) else {
            continue;
        };
        let Some(info) = partition_info(role, cluster).await else {
            return Vec::new();
        };
        let mut ids = followers_of(&info, cluster);
        match prefix {
            "follower:" => ids.truncate(1),
            "replicas:" if info.leader >= 0 => ids.push(info.leader),
            _ => {}
        }
        return ids.into_iter().filter_map(|b| cluster.broker(b)).collect();
    }
    if let Some(group) = name.strip_prefix("coordinator-followers:") {
        // The group's __consumer_offsets partition (Kafka's hash of the group id over the
        // topic's partition count), then its followers.
        let partitions = topic_partitions(faultline::server::OFFSETS_TOPIC, cluster)
            .await
            .unwrap_or_default();
        let Some(count) = i32::try_from(partitions.len()).ok().filter(|n| *n > 0) else {
            return Vec::new();
        };
        let partition = faultline::server::offsets_partition(group, count);
        let Some(info) = partitions.iter().find(|p| p.partition == partition) else {
            return Vec::new();
        };
        return followers_of(info, cluster)
            .into_iter()
            .filter_map(|b| cluster.broker(b))
            .collect();
    }
    if let Some(group) = name.strip_prefix("coordinator:") {
        return coordinator(group, cluster)
            .await
            .and_then(|id| cluster.broker(id))
            .into_iter()
            .collect();
    }
    if name == "controller" {
        return cluster
            .controllers
            .iter()
            .find(|(_, _, control)| {
                control
                    .lock()
                    .unwrap()
                    .as_ref()
                    .is_some_and(|c| c.is_active())
            })
            .map(|(n, id, _)| (n.clone(), *id))
            .into_iter()
            .collect();
    }
    cluster
        .id(name)
        .map(|id| (name.to_string(), id))
        .into_iter()
        .collect()
}

/// The broker coordinating `group` now, as FindCoordinator answers (asked of each broker
/// in turn until one answers; None when none knows yet).
async fn coordinator(group: &str, cluster: &Cluster) -> Option<i32> {
    let (group, bootstrap) = (group.to_string(), cluster.bootstrap.clone());
    cluster
        .admin
        .spawn(async move {
            use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest};
            use kafka_protocol::protocol::StrBytes;
            for addr in bootstrap.split(',') {
                let Ok(mut conn) =
                    faultline::client::Connection::connect(addr, "nemesis", CLIENT_TIMEOUT).await
                else {
                    continue;
                };
                conn.pin_version(ApiKey::FindCoordinator, 2);
                let req = FindCoordinatorRequest::default()
                    .with_key(StrBytes::from_string(group.clone()));
                if let Ok(resp) = conn.request(&req).await {
                    if resp.error_code == 0 {
                        return Some(resp.node_id.0);
                    }
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
}

pub(super) async fn resolve_node(name: &str, cluster: &Cluster) -> Option<(String, NodeId)> {
    resolve_nodes(name, cluster).await.into_iter().next()
}

/// Resolve a partition's two groups; "others" is every node not in the other group.
pub(super) async fn resolve_groups(groups: &[Vec<String>], cluster: &Cluster) -> Vec<Vec<String>> {
    let mut resolved: Vec<Vec<String>> = Vec::new();
    for group in groups {
        let mut names = Vec::new();
        for n in group {
            if n == "others" {
                names.push(n.clone());
                continue;
            }
            for (name, _) in resolve_nodes(n, cluster).await {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        resolved.push(names);
    }
    for g in 0..resolved.len() {
        if resolved[g].iter().any(|n| n == "others") {
            let other: BTreeSet<String> = resolved
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != g)
                .flat_map(|(_, names)| names.iter().cloned())
                .collect();
            resolved[g] = cluster
                .names()
                .filter(|n| !other.contains(*n))
                .cloned()
                .collect();
        }
    }
    resolved
}
