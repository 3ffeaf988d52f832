//! The server-side assignors of KIP-848 (`uniform`, the default, and `range`): pure
//! functions from the members' subscriptions and the subscribed topics' partition counts
//! to a target assignment. Deterministic: members and topics are visited in order.

use super::{Assignment, TopicId};
use std::collections::{BTreeMap, BTreeSet};

/// The assignors this broker offers, the default first (Kafka's
/// `group.consumer.assignors` default).
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// One member's input: the topic names it subscribes to.
pub type Subscriptions = BTreeMap<String, BTreeSet<String>>;

/// The subscribed topics: name -> (topic id, partition count).
pub type TopicPartitionCounts = BTreeMap<String, (TopicId, i32)>;

/// The target assignment of `assignor` (one of [`ASSIGNORS`]; anything else is `uniform`)
/// for every member of `subscriptions`. `previous` is the last target, kept where still
/// valid by `uniform` (stickiness).
pub fn assign(
    assignor: &str,
    subscriptions: &Subscriptions,
    topics: &TopicPartitionCounts,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let by_name = match assignor {
        "range" => range(subscriptions, topics),
        _ => uniform(subscriptions, topics, previous),
    };
    let mut target: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for (member, partitions) in by_name {
        let assignment = target.get_mut(&member).expect("a subscribed member");
        for (topic, partition) in partitions {
            let (id, _) = topics[&topic];
            assignment.entry(id).or_default().insert(partition);
        }
    }
    target
}

type Owned = BTreeMap<String, BTreeSet<(String, i32)>>;

/// Every partition of the subscribed topics, in (topic, partition) order.
fn all_partitions(topics: &TopicPartitionCounts) -> Vec<(String, i32)> {
    topics
        .iter()
        .flat_map(|(name, (_, count))| (0..*count).map(move |p| (name.clone(), p)))
        .collect()
}

fn subscribes(subscriptions: &Subscriptions, member: &str, topic: &str) -> bool {
    subscriptions
        .get(member)
        .is_some_and(|topics| topics.contains(topic))
}

/// Balanced and sticky: previous owners keep what they may still have, free partitions go
/// to the eligible member with the fewest, then partitions move from a member to an
/// eligible one holding at least two fewer until no such move is left.
fn uniform(
    subscriptions: &Subscriptions,
    topics: &TopicPartitionCounts,
    previous: &BTreeMap<String, Assignment>,
) -> Owned {
    let mut owned: Owned = subscriptions
        .keys()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    let mut taken: BTreeSet<(String, i32)> = BTreeSet::new();
    let name_of: BTreeMap<TopicId, (&String, i32)> = topics
        .iter()
        .map(|(name, (id, count))| (*id, (name, *count)))
        .collect();
    for (member, assignment) in previous {
        if !subscriptions.contains_key(member) {
            continue;
        }
        for (id, partitions) in assignment {
            let Some((name, count)) = name_of.get(id) else {
                continue;
            };
            if !subscribes(subscriptions, member, name) {
                continue;
            }
            for &p in partitions.iter().filter(|p| (0..*count).contains(*p)) {
                let key = ((*name).clone(), p);
                if taken.insert(key.clone()) {
                    owned.get_mut(member).expect("listed").insert(key);
                }
            }
        }
    }
    for key in all_partitions(topics) {
        if taken.contains(&key) {
            continue;
        }
        let fewest = owned
            .iter()
            .filter(|(m, _)| subscribes(subscriptions, m, &key.0))
            .min_by_key(|(m, parts)| (parts.len(), (*m).clone()))
            .map(|(m, _)| m.clone());
        if let Some(member) = fewest {
            taken.insert(key.clone());
            owned.get_mut(&member).expect("listed").insert(key);
        }
    }
    balance(subscriptions, &mut owned, taken.len());
    owned
}

/// Moves one partition at a time from a fuller member to an eligible member holding at
/// least two fewer; each move lowers the sum of squared counts, so this ends. Bounded by
/// `partitions * members` moves as a guard.
fn balance(subscriptions: &Subscriptions, owned: &mut Owned, partitions: usize) {
    let moves_max = partitions.saturating_mul(owned.len()).max(1);
    for _ in 0..moves_max {
        let Some((from, key, to)) = find_move(subscriptions, owned) else {
            return;
        };
        owned.get_mut(&from).expect("listed").remove(&key);
        owned.get_mut(&to).expect("listed").insert(key);
    }
}

fn find_move(
    subscriptions: &Subscriptions,
    owned: &Owned,
) -> Option<(String, (String, i32), String)> {
    let mut fullest: Vec<(&String, &BTreeSet<(String, i32)>)> = owned.iter().collect();
    fullest.sort_by_key(|(m, parts)| (std::cmp::Reverse(parts.len()), (*m).clone()));
    for (from, parts) in fullest {
        for key in parts.iter().rev() {
            let target = owned
                .iter()
                .filter(|(m, p)| p.len() + 2 <= parts.len() && subscribes(subscriptions, m, &key.0))
                .min_by_key(|(m, p)| (p.len(), (*m).clone()));
            if let Some((to, _)) = target {
                return Some((from.clone(), key.clone(), to.clone()));
            }
        }
    }
    None
}

/// Per topic, its subscribers in member-id order each take a contiguous range; the first
/// `partitions % subscribers` take one more.
fn range(subscriptions: &Subscriptions, topics: &TopicPartitionCounts) -> Owned {
    let mut owned: Owned = subscriptions
        .keys()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for (name, (_, count)) in topics {
        let subscribers: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, t)| t.contains(name))
            .map(|(m, _)| m)
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        let n = subscribers.len() as i32;
        let (per, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, member) in subscribers.into_iter().enumerate() {
            let take = per + i32::from((i as i32) < extra);
            let parts = owned.get_mut(member).expect("listed");
            for p in next..next + take {
                parts.insert((name.clone(), p));
            }
            next += take;
        }
        assert_eq!(next, *count, "range hands out every partition of {name}");
    }
    owned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(members: &[(&str, &[&str])]) -> Subscriptions {
        members
            .iter()
            .map(|(m, t)| (m.to_string(), t.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn counts(target: &BTreeMap<String, Assignment>) -> Vec<usize> {
        target
            .values()
            .map(|a| a.values().map(BTreeSet::len).sum())
            .collect()
    }

    #[test]
    fn uniform_balances_and_keeps_previous_owners() {
        let topics: TopicPartitionCounts = [("t".to_string(), (7, 6))].into();
        let one = assign(
            "uniform",
            &subs(&[("a", &["t"])]),
            &topics,
            &BTreeMap::new(),
        );
        assert_eq!(counts(&one), vec![6]);
        let two = assign(
            "uniform",
            &subs(&[("a", &["t"]), ("b", &["t"])]),
            &topics,
            &one,
        );
        assert_eq!(counts(&two), vec![3, 3]);
        // a keeps three of the partitions it had; b gets the other three.
        assert!(two["a"][&7].is_subset(&one["a"][&7]));
        let three = assign(
            "uniform",
            &subs(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]),
            &topics,
            &two,
        );
        assert_eq!(counts(&three), vec![2, 2, 2]);
    }

    #[test]
    fn uniform_respects_heterogeneous_subscriptions() {
        let topics: TopicPartitionCounts =
            [("t".to_string(), (1, 4)), ("u".to_string(), (2, 2))].into();
        let target = assign(
            "uniform",
            &subs(&[("a", &["t", "u"]), ("b", &["u"])]),
            &topics,
            &BTreeMap::new(),
        );
        assert!(!target["b"].contains_key(&1), "b never gets t");
        assert_eq!(counts(&target).iter().sum::<usize>(), 6);
    }

    #[test]
    fn range_gives_contiguous_ranges_in_member_order() {
        let topics: TopicPartitionCounts = [("t".to_string(), (9, 5))].into();
        let target = assign(
            "range",
            &subs(&[("a", &["t"]), ("b", &["t"])]),
            &topics,
            &BTreeMap::new(),
        );
        assert_eq!(target["a"][&9], [0, 1, 2].into());
        assert_eq!(target["b"][&9], [3, 4].into());
    }
}
