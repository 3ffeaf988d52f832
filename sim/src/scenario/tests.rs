//! Parsing and validation of scenario files: errors name the file, the line and the field.

use super::*;

const GOOD: &str = r#"
duration = "30s"

[cluster]
brokers = 1
config = { "log.flush.interval.messages" = "1" }

[[topic]]
name = "orders"
partitions = 3

[[producer]]
name = "p1"
topic = "orders"
rate = 500

[[consumer]]
name = "c1"
topic = "orders"

[[fault]]
at = "10s"
for = "2s"
kind = "kill"
node = "broker-1"

[expect]
duplicate = "allowed"
"#;

/// Data-driven: the text with `from` replaced by `to` must fail with this message.
fn check_error(from: &str, to: &str, want: &str) {
    let text = GOOD.replacen(from, to, 1);
    assert_ne!(text, GOOD, "{from:?} not found in the base scenario");
    let e = parse(Path::new("s.toml"), &text)
        .expect_err(want)
        .to_string();
    assert_eq!(e, want);
}

#[test]
fn a_valid_file_parses() {
    let s = parse(Path::new("scenarios/smoke/kill.toml"), GOOD).unwrap();
    assert_eq!(s.name, "kill");
    assert_eq!(s.duration, Duration::from_secs(30));
    assert_eq!(s.producers.len(), 1);
    assert_eq!(s.expectation(Anomaly::Duplicate), Expectation::Allowed);
    assert_eq!(s.expectation(Anomaly::LostWrite), Expectation::Forbidden);
}

#[test]
fn errors_name_file_line_and_field() {
    check_error("kind = \"kill\"", "kind = \"kil\"", "s.toml:24: fault[0].kind: unknown variant `kil`, expected one of `kill`, `crash`, `stop`, `pause`, `partition`, `isolate`, `clog`, `latency`, `reset`, `disk-torn-write`, `disk-corrupt`, `disk-full`, `disk-slow-fsync`, `loss`, `clock-skew`, `clock-jump`");
    check_error(
        "rate = 500",
        "rate = 0",
        "s.toml:15: producer[0].rate: must be 1..=1000000 records per second",
    );
    check_error("rate = 500", "rat = 500", "s.toml:15: producer[0].rat: unknown field `rat`, expected one of `name`, `topic`, `rate`, `acks`, `idempotence`, `retries`, `in_flight`, `batch_records`, `records_per_batch`, `keys`, `record_bytes`, `start`, `stop`");
    check_error("node = \"broker-1\"", "node = \"broker-7\"", "s.toml:25: fault[0].node: no node is named \"broker-7\" (known: [\"broker-1\", \"c1\", \"p1\"])");
    check_error(
        "topic = \"orders\"\nrate",
        "topic = \"order\"\nrate",
        "s.toml:14: producer[0].topic: no [[topic]] is named \"order\"",
    );
    check_error(
        "at = \"10s\"",
        "at = \"10 parsecs\"",
        "s.toml:22: fault[0].at: unknown unit in \"10 parsecs\": use ms, s, m or h",
    );
    check_error(
        "at = \"10s\"",
        "at = \"40s\"",
        "s.toml:22: fault[0].at: is after the end of the run (duration)",
    );
    check_error("duplicate = \"allowed\"", "duplicates = \"allowed\"", "s.toml:28: expect.duplicates: unknown anomaly (known: lost-write, unseen, duplicate, inconsistent-offsets, nonmonotonic-send, nonmonotonic-poll, poll-skip, aborted-read, failed-visible, corrupt-read, split-ownership, commit-regression, commit-skip, stale-commit, processed-twice, absent-member, invariant, liveness)");
    check_error(
        "\"log.flush.interval.messages\" = \"1\"",
        "\"log.flush.interval.messages\" = \"x\"",
        "s.toml:6: cluster.config.log.flush.interval.messages: expected a whole number, got \"x\"",
    );
    check_error(
        "partitions = 3",
        "partitions = 3\nreplication_factor = 3",
        "s.toml:11: topic[0].replication_factor: must be 1..=1 (the number of brokers)",
    );
    check_error(
        "node = \"broker-1\"",
        "node = \"leader:orders/9\"",
        "s.toml:25: fault[0].node: topic orders has no partition 9",
    );
    check_error(
        "duration = \"30s\"",
        "duration = 30",
        "s.toml:2: duration: invalid type: integer `30`, expected a string",
    );
}

const CLUSTER: &str = r#"
duration = "30s"

[cluster]
brokers = 3
racks = ["a", "b"]
controller_config = { "controller.quorum.election.timeout.ms" = "1000" }

[[topic]]
name = "t"
replication_factor = 3

[[producer]]
name = "p1"
topic = "t"

[[fault]]
at = "5s"
for = "3s"
kind = "crash"
nodes = ["replicas:t/0"]
restart_stagger = "2s"

[[fault]]
at = "10s"
for = "3s"
kind = "isolate"
node = "controller"

[[fault]]
at = "12s"
for = "3s"
kind = "partition"
groups = [["leader:t/0", "p1"], ["others"]]

[expect]
invariant = "allowed"
"#;

fn check_cluster_error(from: &str, to: &str, want: &str) {
    let text = CLUSTER.replacen(from, to, 1);
    assert_ne!(text, CLUSTER, "{from:?} not found in the cluster scenario");
    let e = parse(Path::new("c.toml"), &text)
        .expect_err(want)
        .to_string();
    assert_eq!(e, want);
}

#[test]
fn a_cluster_scenario_parses_with_its_defaults() {
    let s = parse(Path::new("c.toml"), CLUSTER).unwrap();
    assert_eq!(
        s.controllers, 3,
        "3 controllers by default with several brokers"
    );
    assert_eq!(
        s.controller_names(),
        ["controller-1", "controller-2", "controller-3"]
    );
    assert!(s.node_names().contains(&"controller-2".to_string()));
    assert_eq!(s.rack_of(0).as_deref(), Some("a"));
    assert_eq!(s.rack_of(1).as_deref(), Some("b"));
    assert_eq!(s.rack_of(2).as_deref(), Some("a"));
    assert_eq!(*s.faults[0].kind.get_ref(), FaultKind::Crash);
    assert_eq!(
        s.faults[0].restart_stagger.as_ref().unwrap().get_ref().0,
        Duration::from_secs(2)
    );
    assert_eq!(s.invariant_expectation, Expectation::Allowed);
    assert_eq!(s.cluster.controller_config.len(), 1);
    // One broker: no controllers unless asked.
    let single = parse(Path::new("s.toml"), GOOD).unwrap();
    assert_eq!(single.controllers, 0);
    assert_eq!(single.invariant_expectation, Expectation::Forbidden);
}

#[test]
fn cluster_errors_name_file_line_and_field() {
    check_cluster_error(
        "brokers = 3",
        "brokers = 3\ncontrollers = 2",
        "c.toml:6: cluster.controllers: must be 0, 1, 3 or 5 (a quorum of an odd size, or none)",
    );
    check_cluster_error(
        "brokers = 3",
        "brokers = 3\ncontrollers = 0",
        "c.toml:6: cluster.controllers: several brokers need a controller quorum (1, 3 or 5)",
    );
    check_cluster_error(
        "racks = [\"a\", \"b\"]",
        "racks = []",
        "c.toml:6: cluster.racks: lists at least one rack, none of them empty",
    );
    check_cluster_error(
        "nodes = [\"replicas:t/0\"]",
        "nodes = [\"replicas:t/0\", \"p1\"]",
        "c.toml:21: fault[0].nodes: only brokers and controllers can be killed, not \"p1\"",
    );
    check_cluster_error(
        "nodes = [\"replicas:t/0\"]",
        "nodes = [\"replicas:u/0\"]",
        "c.toml:21: fault[0].nodes: no [[topic]] is named \"u\"",
    );
    check_cluster_error(
        "nodes = [\"replicas:t/0\"]\nrestart_stagger = \"2s\"",
        "node = \"replicas:t/0\"",
        "c.toml:21: fault[0].node: replicas:TOPIC/P names several nodes: use it in `nodes` or `groups`",
    );
    check_cluster_error(
        "nodes = [\"replicas:t/0\"]\nrestart_stagger = \"2s\"",
        "node = \"controller-4\"",
        "c.toml:21: fault[0].node: no node is named \"controller-4\" (known: [\"broker-1\", \"broker-2\", \"broker-3\", \"controller-1\", \"controller-2\", \"controller-3\", \"p1\"])",
    );
    check_cluster_error(
        "nodes = [\"replicas:t/0\"]\nrestart_stagger = \"2s\"",
        "node = \"broker-1\"\nrestart_stagger = \"2s\"",
        "c.toml:22: fault[0].restart_stagger: staggers the restarts of several nodes: name them with nodes",
    );
    check_cluster_error(
        "nodes = [\"replicas:t/0\"]\nrestart_stagger = \"2s\"",
        "restart_stagger = \"2s\"",
        "c.toml:20: fault[0].node: a crash fault needs node (or nodes)",
    );
    check_cluster_error(
        "kind = \"isolate\"\nnode = \"controller\"",
        "kind = \"stop\"\nnode = \"controller-1\"",
        "c.toml:28: fault[1].node: only brokers can be stopped cleanly (a broker name, leader: or follower:)",
    );
    check_cluster_error(
        "kind = \"isolate\"\nnode = \"controller\"",
        "kind = \"pause\"\nnodes = [\"controller\"]",
        "c.toml:28: fault[1].nodes: does not apply to a pause fault",
    );
    check_cluster_error(
        "groups = [[\"leader:t/0\", \"p1\"], [\"others\"]]",
        "groups = [[\"others\"], [\"others\"]]",
        "c.toml:34: fault[2].groups: \"others\" means every node not in the other group: only one group can use it",
    );
}

/// A group member's settings: only with `group`, with Kafka's names and bounds; kills of
/// members; the role coordinator:GROUP names a group some consumer joins.
#[test]
fn group_members_errors_name_file_line_and_field() {
    check_error(
        "name = \"c1\"\ntopic = \"orders\"",
        "name = \"c1\"\ntopic = \"orders\"\ncommit = \"auto\"",
        "s.toml:20: consumer[0].commit: a group member's setting: set `group` too",
    );
    check_error(
        "name = \"c1\"\ntopic = \"orders\"",
        "name = \"c1\"\ntopic = \"orders\"\ngroup = \"g\"\ncommit = \"sometimes\"",
        "s.toml:21: consumer[0].commit: unknown variant `sometimes`, expected one of `auto`, `sync-after-processing`, `async`, `before-processing`, `none`",
    );
    check_error(
        "name = \"c1\"\ntopic = \"orders\"",
        "name = \"c1\"\ntopic = \"orders\"\ngroup = \"g\"\nassignor = [\"range\", \"sticky-ish\"]",
        "s.toml:21: consumer[0].assignor: unknown assignor \"sticky-ish\": one of range, roundrobin, sticky, cooperative-sticky",
    );
    check_error(
        "name = \"c1\"\ntopic = \"orders\"",
        "name = \"c1\"\ntopic = \"orders\"\ngroup = \"g\"\npartitions = [0]",
        "s.toml:21: consumer[0].partitions: a group member is assigned partitions by its group: drop `partitions` or `group`",
    );
    check_error(
        "name = \"c1\"\ntopic = \"orders\"",
        "name = \"c1\"\ntopic = \"orders\"\ngroup = \"g\"\nsession_timeout = \"6s\"\nheartbeat_interval = \"6s\"",
        "s.toml:22: consumer[0].heartbeat_interval: must be below session_timeout, as Kafka requires",
    );
    check_error(
        "node = \"broker-1\"",
        "node = \"c1\"",
        "s.toml:25: fault[0].node: only brokers, controllers and group members can be killed",
    );
    check_error(
        "node = \"broker-1\"",
        "node = \"coordinator:nobody\"",
        "s.toml:25: fault[0].node: no consumer joins group \"nobody\" (groups: {})",
    );
    check_error(
        "node = \"broker-1\"",
        "node = \"coordinator-followers:nobody\"",
        "s.toml:25: fault[0].node: coordinator-followers:GROUP names several nodes: use it in `nodes` or `groups`",
    );
    // A member can be killed, and the coordinator of its group named.
    let member = GOOD.replacen(
        "name = \"c1\"\ntopic = \"orders\"",
        "name = \"c1\"\ntopic = \"orders\"\ngroup = \"g\"",
        1,
    );
    parse(
        Path::new("s.toml"),
        &member.replacen("node = \"broker-1\"", "node = \"c1\"", 1),
    )
    .unwrap();
    parse(
        Path::new("s.toml"),
        &member.replacen("node = \"broker-1\"", "node = \"coordinator:g\"", 1),
    )
    .unwrap();
}

#[test]
fn roles_need_what_they_name() {
    check_error(
        "node = \"broker-1\"",
        "node = \"controller\"",
        "s.toml:25: fault[0].node: the role \"controller\" needs cluster.controllers > 0",
    );
    check_error(
        "node = \"broker-1\"",
        "node = \"follower:orders/0\"",
        "s.toml:25: fault[0].node: topic orders has replication factor 1: it has no follower",
    );
    check_error(
        "node = \"broker-1\"",
        "node = \"p1\"",
        "s.toml:25: fault[0].node: only brokers, controllers and group members can be killed",
    );
}

#[test]
fn every_example_in_the_scenarios_folder_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut seen = 0;
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .file_name()
                .is_some_and(|n| n == crate::suite::SUITE_FILE)
            {
                // A suite declaration, not a scenario: it must be valid too.
                crate::suite::load(path.parent().unwrap())
                    .unwrap_or_else(|e| panic!("{e}"))
                    .expect("a suite file");
            } else if path.extension().is_some_and(|e| e == "toml") {
                load(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
    }
    assert!(seen > 0, "no scenario files found");
}

#[test]
fn must_see_names_event_kinds_and_optional_text() {
    let with = |entry: &str| format!("must_see = [{entry}]\n{GOOD}");
    let text = with(r#""truncate", "leader: t/0 epoch 2""#);
    let s = parse(Path::new("s.toml"), &text).unwrap();
    assert_eq!(s.must_see, vec!["truncate", "leader: t/0 epoch 2"]);
    assert!(must_see_matches(
        "truncate",
        "truncate",
        "t/0 to offset 5",
        "broker-1"
    ));
    assert!(!must_see_matches(
        "truncate",
        "leader",
        "t/0 epoch 2",
        "broker-1"
    ));
    assert!(must_see_matches(
        "leader: epoch 2",
        "leader",
        "t/0 epoch 2",
        "broker-1"
    ));
    assert!(must_see_matches(
        "leader: broker-3",
        "leader",
        "t/0 epoch 2",
        "broker-3"
    ));
    assert!(!must_see_matches(
        "leader: epoch 3",
        "leader",
        "t/0 epoch 2",
        "broker-3"
    ));
    let either = "active-controller: term 2 | leader: epoch 2";
    assert!(must_see_matches(
        either,
        "leader",
        "t/0 epoch 2",
        "broker-3"
    ));
    assert!(must_see_matches(
        either,
        "active-controller",
        "term 2",
        "controller-1"
    ));
    assert!(!must_see_matches(
        either,
        "leader",
        "t/0 epoch 1",
        "broker-3"
    ));
    let e = parse(Path::new("s.toml"), &with(r#""leader | truncated: x""#))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("s.toml:1: must_see[0]: unknown event kind \"truncated\""),
        "{e}"
    );
    let e = parse(Path::new("s.toml"), &with(r#""truncated""#))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("s.toml:1: must_see[0]: unknown event kind \"truncated\""),
        "{e}"
    );
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert!(parse_duration("25h").is_err());
    assert!(parse_duration("-1s").is_err());
}

#[test]
fn settings_given_as_lists_are_drawn_per_seed() {
    let text = GOOD.replace(
        r#"config = { "log.flush.interval.messages" = "1" }"#,
        r#"config = { "log.flush.interval.messages" = ["1", "10", "100"], "log.segment.bytes" = "4096" }"#,
    );
    let s = parse(Path::new("s.toml"), &text).unwrap();
    let values: std::collections::BTreeSet<String> = (0..40)
        .map(|seed| {
            let (drawn, settings) = s.draw(seed);
            assert_eq!(
                drawn.draw(seed).1,
                Vec::<Drawn>::new(),
                "a drawn scenario has no lists"
            );
            assert_eq!(settings.len(), 1, "only the list is drawn: {settings:?}");
            assert_eq!(s.draw(seed).1, settings, "one seed, one point");
            drawn.cluster.config["log.flush.interval.messages"]
                .get_ref()
                .value()
                .to_string()
        })
        .collect();
    assert_eq!(
        values,
        ["1", "10", "100"].map(String::from).into(),
        "every value drawn"
    );
    // Without lists nothing is drawn and the scenario is as it was.
    let plain = parse(Path::new("s.toml"), GOOD).unwrap();
    assert!(plain.draw(7).1.is_empty());
    // Every value of a list is validated.
    let bad = GOOD.replace(
        r#"config = { "log.flush.interval.messages" = "1" }"#,
        r#"config = { "log.flush.interval.messages" = ["1", "x"] }"#,
    );
    let err = parse(Path::new("s.toml"), &bad).unwrap_err();
    assert_eq!(
        err.field, "cluster.config.log.flush.interval.messages",
        "{err}"
    );
}

#[test]
fn numbers_given_as_lists_or_ranges_are_drawn_per_seed() {
    let text = GOOD
        .replace("partitions = 3", "partitions = { min = 1, max = 4 }")
        .replace(
            "rate = 500",
            "rate = 500\nin_flight = [1, 5]\nrecords_per_batch = { min = 1, max = 3 }",
        )
        .replace(
            "name = \"c1\"\ntopic = \"orders\"",
            "name = \"c1\"\ntopic = \"orders\"\nmax_partition_fetch_bytes = [1, 1048576]",
        );
    let s = parse(Path::new("s.toml"), &text).unwrap();
    let mut partitions = std::collections::BTreeSet::new();
    let mut in_flight = std::collections::BTreeSet::new();
    for seed in 0..60 {
        let (drawn, settings) = s.draw(seed);
        assert_eq!(settings.len(), 4, "{settings:?}");
        assert_eq!(s.draw(seed).1, settings, "one seed, one point");
        assert!(
            drawn.draw(seed).1.is_empty(),
            "a drawn scenario has no choices"
        );
        let n = drawn.topics[0].partitions.get_ref().get();
        assert!((1..=4).contains(&n));
        assert!(settings
            .iter()
            .any(|d| d.to_string() == format!("topic[0].partitions = {n}")));
        partitions.insert(n);
        in_flight.insert(drawn.producers[0].in_flight.get_ref().get());
        let per_batch = drawn.producers[0]
            .records_per_batch
            .as_ref()
            .unwrap()
            .get_ref()
            .get();
        assert!((1..=3).contains(&per_batch));
    }
    assert_eq!(
        partitions,
        (1..=4).collect(),
        "every value of the range drawn"
    );
    assert_eq!(in_flight, [1, 5].into(), "every value of the list drawn");
}

#[test]
fn number_choices_are_validated_value_by_value() {
    check_error(
        "partitions = 3",
        "partitions = [2, 2000]",
        "s.toml:10: topic[0].partitions: must be 1..=1000",
    );
    check_error(
        "partitions = 3",
        "partitions = { min = 3, max = 2 }",
        "s.toml:10: topic[0].partitions: a range's min must not be above its max",
    );
    check_error(
        "partitions = 3",
        "partitions = []",
        "s.toml:10: topic[0].partitions: a list of values to draw from must not be empty",
    );
    check_error(
        "rate = 500",
        "rate = 500\nin_flight = [1, 0]",
        "s.toml:16: producer[0].in_flight: must be 1..=100",
    );
    check_error(
        "name = \"c1\"\ntopic = \"orders\"",
        "name = \"c1\"\ntopic = \"orders\"\nfetch_max_bytes = { min = 0, max = 10 }",
        "s.toml:20: consumer[0].fetch_max_bytes: must be 1..=2147483647",
    );
    check_error(
        "partitions = 3",
        "partitions = \"three\"",
        "s.toml:10: topic[0].partitions: expected a whole number, a list of them ([1, 5]) or a range ({ min = 1, max = 5 })",
    );
    check_error(
        "partitions = 3",
        "partitions = { min = 1, most = 3 }",
        "s.toml:10: topic[0].partitions: expected a whole number, a list of them ([1, 5]) or a range ({ min = 1, max = 5 })",
    );
    // A consumer may only name partitions every draw of the count has.
    let text = GOOD
        .replace("partitions = 3", "partitions = [1, 3]")
        .replace(
            "name = \"c1\"\ntopic = \"orders\"",
            "name = \"c1\"\ntopic = \"orders\"\npartitions = [2]",
        );
    let e = parse(Path::new("s.toml"), &text).unwrap_err().to_string();
    assert!(
        e.starts_with("s.toml:20: consumer[0].partitions: topic has no partition 2"),
        "{e}"
    );
}
