use super::*;
use proptest::prelude::*;

fn member(id: &str, topics: &[&str], owned: &[(&str, i32)], generation: i32) -> MemberSubscription {
    MemberSubscription {
        member_id: id.to_string(),
        group_instance_id: None,
        topics: topics.iter().map(|t| t.to_string()).collect(),
        owned: owned.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
        generation,
    }
}

fn counts(list: &[(&str, i32)]) -> BTreeMap<String, i32> {
    list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

fn set(list: &[(&str, i32)]) -> BTreeSet<TopicPartition> {
    list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
}

#[test]
fn names_round_trip() {
    for a in [
        Assignor::Range,
        Assignor::RoundRobin,
        Assignor::Sticky,
        Assignor::CooperativeSticky,
    ] {
        assert_eq!(Assignor::from_name(a.name()), Some(a));
    }
    assert_eq!(Assignor::from_name("uniform"), None);
}

#[test]
fn range_gives_contiguous_ranges_extra_to_the_first() {
    let members = [member("b", &["t"], &[], -1), member("a", &["t"], &[], -1)];
    let out = Assignor::Range.assign(&members, &counts(&[("t", 3)]));
    assert_eq!(out["a"], set(&[("t", 0), ("t", 1)]));
    assert_eq!(out["b"], set(&[("t", 2)]));
}

#[test]
fn range_orders_static_members_first() {
    let mut s = member("z", &["t"], &[], -1);
    s.group_instance_id = Some("i".into());
    let members = [member("a", &["t"], &[], -1), s];
    let out = Assignor::Range.assign(&members, &counts(&[("t", 2)]));
    assert_eq!(out["z"], set(&[("t", 0)]));
}

#[test]
fn roundrobin_deals_in_a_circle() {
    let members = [
        member("c0", &["t0", "t1"], &[], -1),
        member("c1", &["t0", "t1"], &[], -1),
    ];
    let out = Assignor::RoundRobin.assign(&members, &counts(&[("t0", 3), ("t1", 3)]));
    assert_eq!(out["c0"], set(&[("t0", 0), ("t0", 2), ("t1", 1)]));
    assert_eq!(out["c1"], set(&[("t0", 1), ("t1", 0), ("t1", 2)]));
}

#[test]
fn sticky_moves_only_what_balance_needs() {
    let all: Vec<(&str, i32)> = (0..6).map(|p| ("t", p)).collect();
    let members = [
        member("a", &["t"], &all[..3], 1),
        member("b", &["t"], &all[3..], 1),
        member("c", &["t"], &[], -1),
    ];
    let out = Assignor::Sticky.assign(&members, &counts(&[("t", 6)]));
    assert_eq!(out["a"].len(), 2);
    assert_eq!(out["b"].len(), 2);
    assert!(out["a"].is_subset(&set(&all[..3])));
    assert!(out["b"].is_subset(&set(&all[3..])));
}

#[test]
fn cooperative_sticky_withholds_then_hands_over() {
    let all: Vec<(&str, i32)> = (0..4).map(|p| ("t", p)).collect();
    let parts = counts(&[("t", 4)]);
    let first = [member("a", &["t"], &all, 1), member("b", &["t"], &[], -1)];
    let out = Assignor::CooperativeSticky.assign(&first, &parts);
    assert_eq!(out["a"].len(), 2);
    assert!(out["b"].is_empty(), "b must wait for a to revoke: {out:?}");
    let kept: Vec<(&str, i32)> = out["a"].iter().map(|(t, p)| (t.as_str(), *p)).collect();
    let second = [member("a", &["t"], &kept, 2), member("b", &["t"], &[], 2)];
    let out = Assignor::CooperativeSticky.assign(&second, &parts);
    assert_eq!(out["a"], set(&kept));
    assert_eq!(out["b"].len(), 2);
}

#[test]
fn higher_generation_wins_a_conflicting_claim() {
    let members = [
        member("a", &["t"], &[("t", 0)], 1),
        member("b", &["t"], &[("t", 0)], 2),
    ];
    let out = Assignor::Sticky.assign(&members, &counts(&[("t", 2)]));
    assert_eq!(out["b"], set(&[("t", 0)]));
    assert_eq!(out["a"], set(&[("t", 1)]));
}

const TOPICS: [&str; 3] = ["t0", "t1", "t2"];

/// (members, partition counts): up to 6 members, each with a non-empty subscription
/// drawn from 3 topics of 0-7 partitions, owning random partitions.
fn group_input(
    equal: bool,
) -> impl Strategy<Value = (Vec<MemberSubscription>, BTreeMap<String, i32>)> {
    (
        prop::collection::vec(0i32..8, 3),
        1usize..7,
        prop::collection::vec(
            (
                1u8..8,
                prop::collection::vec((0usize..3, 0i32..8), 0..6),
                0i32..3,
            ),
            6,
        ),
        1u8..8,
    )
        .prop_map(move |(sizes, n, specs, common)| {
            let partitions: BTreeMap<String, i32> = TOPICS
                .iter()
                .zip(sizes)
                .map(|(t, n)| (t.to_string(), n))
                .collect();
            let members = specs
                .into_iter()
                .take(n)
                .enumerate()
                .map(|(i, (mask, owned, generation))| {
                    let mask = if equal { common } else { mask };
                    MemberSubscription {
                        member_id: format!("m{i}"),
                        group_instance_id: (i % 3 == 1).then(|| format!("s{i}")),
                        topics: (0..3)
                            .filter(|b| mask & (1 << b) != 0)
                            .map(|b| TOPICS[b].to_string())
                            .collect(),
                        owned: owned
                            .into_iter()
                            .map(|(t, p)| (TOPICS[t].to_string(), p))
                            .collect(),
                        generation,
                    }
                })
                .collect();
            (members, partitions)
        })
}

/// Every partition of a subscribed topic is assigned exactly once (at most once when
/// `at_most`), and only to a member subscribed to its topic.
fn check_coverage(
    members: &[MemberSubscription],
    partitions: &BTreeMap<String, i32>,
    out: &GroupAssignment,
    at_most: bool,
) -> Result<(), TestCaseError> {
    let mut seen: BTreeMap<&TopicPartition, usize> = BTreeMap::new();
    for m in members {
        for tp in &out[&m.member_id] {
            prop_assert!(m.topics.contains(&tp.0), "{} got {tp:?}", m.member_id);
            *seen.entry(tp).or_default() += 1;
        }
    }
    prop_assert_eq!(out.len(), members.len());
    let refs: Vec<&MemberSubscription> = members.iter().collect();
    for tp in subscribed_partitions(&refs, partitions) {
        let n = seen.get(&tp).copied().unwrap_or(0);
        if at_most {
            prop_assert!(n <= 1, "{tp:?} assigned {n} times");
        } else {
            prop_assert_eq!(n, 1, "{:?} assigned {} times", tp, n);
        }
    }
    Ok(())
}

fn spread(out: &GroupAssignment) -> usize {
    let lens: Vec<usize> = out.values().map(|s| s.len()).collect();
    lens.iter().max().unwrap_or(&0) - lens.iter().min().unwrap_or(&0)
}

proptest! {
    #[test]
    fn eager_assignors_cover_every_partition_once((members, partitions) in group_input(false)) {
        for a in [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky] {
            let out = a.assign(&members, &partitions);
            check_coverage(&members, &partitions, &out, false)?;
            let mut reversed = members.clone();
            reversed.reverse();
            prop_assert_eq!(&out, &a.assign(&reversed, &partitions), "{:?} depends on order", a);
        }
    }

    #[test]
    fn equal_subscriptions_are_balanced((members, partitions) in group_input(true)) {
        for a in [Assignor::RoundRobin, Assignor::Sticky] {
            let out = a.assign(&members, &partitions);
            prop_assert!(spread(&out) <= 1, "{:?} unbalanced: {:?}", a, out);
        }
        let out = Assignor::Range.assign(&members, &partitions);
        for topic in partitions.keys() {
            let lens: Vec<usize> = out.values().map(|s| s.iter().filter(|tp| &tp.0 == topic).count()).collect();
            let subscribed = members.iter().any(|m| m.topics.contains(topic));
            if subscribed {
                prop_assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1);
            }
        }
    }

    #[test]
    fn sticky_keeps_a_balanced_assignment((members, partitions) in group_input(false)) {
        // Any output of the sticky assignor, fed back as ownership, is kept as it is.
        let first = Assignor::Sticky.assign(&members, &partitions);
        let owning: Vec<MemberSubscription> = members
            .iter()
            .map(|m| MemberSubscription { owned: first[&m.member_id].clone(), generation: 5, ..m.clone() })
            .collect();
        prop_assert_eq!(&Assignor::Sticky.assign(&owning, &partitions), &first);
        prop_assert_eq!(&Assignor::CooperativeSticky.assign(&owning, &partitions), &first);
    }

    #[test]
    fn cooperative_never_hands_over_an_owned_partition((members, partitions) in group_input(false)) {
        let out = Assignor::CooperativeSticky.assign(&members, &partitions);
        check_coverage(&members, &partitions, &out, true)?;
        for (member_id, assigned) in &out {
            for tp in assigned {
                let other_owner = members.iter().any(|m| &m.member_id != member_id && m.owned.contains(tp));
                prop_assert!(!other_owner, "{tp:?} given to {member_id} while another owns it");
            }
        }
        prop_assert_eq!(&out, &Assignor::CooperativeSticky.assign(&members, &partitions));
    }

    #[test]
    fn cooperative_completes_in_the_second_round((members, partitions) in group_input(true)) {
        // Round two: every member owns what round one gave it (revocations done).
        let first = Assignor::CooperativeSticky.assign(&members, &partitions);
        let owning: Vec<MemberSubscription> = members
            .iter()
            .map(|m| MemberSubscription { owned: first[&m.member_id].clone(), generation: 5, ..m.clone() })
            .collect();
        let second = Assignor::CooperativeSticky.assign(&owning, &partitions);
        check_coverage(&members, &partitions, &second, false)?;
        prop_assert!(spread(&second) <= 1, "unbalanced: {:?}", second);
        for (member_id, kept) in &first {
            prop_assert!(kept.is_subset(&second[member_id]), "{member_id} lost a kept partition");
        }
    }
}
