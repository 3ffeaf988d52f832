//! ConsumerGroupDescribe (v0, KIP-848): a consumer group's epochs, assignor and members
//! with their current and target assignments (topics named by id and name).

use super::*;
use crate::group::consumer::{consumer_group_state, Assignment, ConsumerGroup};

pub(super) fn consumer_group_describe(
    shared: &Shared,
    req: &ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let names: BTreeMap<u128, String> = consumer_group_heartbeat::topics_metadata(shared)
        .into_iter()
        .map(|(name, (id, _))| (id, name))
        .collect();
    let groups = req
        .group_ids
        .iter()
        .map(|group_id| {
            let described = shared.groups.read_group(shared, group_id.as_str(), |c| {
                c.consumer_group_describe(group_id.as_str()).cloned()
            });
            let base = consumer_group_describe_response::DescribedGroup::default()
                .with_group_id(group_id.clone())
                .with_authorized_operations(i32::MIN);
            match described.and_then(|r| r) {
                Ok(group) => describe(base, &group, &names),
                Err(code) => base
                    .with_error_code(code)
                    .with_group_state(str_bytes("Dead")),
            }
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

fn describe(
    base: consumer_group_describe_response::DescribedGroup,
    group: &ConsumerGroup,
    names: &BTreeMap<u128, String>,
) -> consumer_group_describe_response::DescribedGroup {
    let assignment = |a: &Assignment| {
        consumer_group_describe_response::Assignment::default().with_topic_partitions(
            a.iter()
                .map(|(id, partitions)| {
                    consumer_group_describe_response::TopicPartitions::default()
                        .with_topic_id(uuid(*id))
                        .with_topic_name(TopicName(str_bytes(
                            names.get(id).map_or("", String::as_str),
                        )))
                        .with_partitions(partitions.iter().copied().collect())
                })
                .collect(),
        )
    };
    let members = group
        .members
        .values()
        .map(|m| {
            consumer_group_describe_response::Member::default()
                .with_member_id(str_bytes(&m.member_id))
                .with_instance_id(m.instance_id.as_deref().map(str_bytes))
                .with_rack_id(m.rack_id.as_deref().map(str_bytes))
                .with_member_epoch(m.member_epoch)
                .with_client_id(str_bytes(&m.client_id))
                .with_client_host(str_bytes(&m.client_host))
                .with_subscribed_topic_names(
                    m.subscribed_topic_names
                        .iter()
                        .map(|n| TopicName(str_bytes(n)))
                        .collect(),
                )
                .with_subscribed_topic_regex(m.subscribed_topic_regex.as_deref().map(str_bytes))
                .with_assignment(assignment(&m.assigned))
                .with_target_assignment(assignment(
                    group.target.get(&m.member_id).unwrap_or(&Assignment::new()),
                ))
        })
        .collect();
    base.with_group_state(str_bytes(consumer_group_state(group)))
        .with_group_epoch(group.group_epoch)
        .with_assignment_epoch(group.assignment_epoch)
        .with_assignor_name(str_bytes(&group.assignor))
        .with_members(members)
}
