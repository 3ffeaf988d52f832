//! `faultline consumer-groups` (the binary) against an in-process standalone broker: list,
//! describe (offsets and lag, members, state) while a member made of raw JoinGroup /
//! SyncGroup requests holds part of a topic, resets refused while it is there and done
//! (dry run, then executed) once it has left, offsets deleted, the group deleted, and
//! mistaken flags answered with a usage error.
#![cfg(not(madsim))]

use bytes::{BufMut, Bytes, BytesMut};
use faultline::client::{Client, Connection, Producer, ProducerConfig};
use faultline::record::codec::NewRecord;
use faultline::server::Broker;
use faultline::storage::MemStorage;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Encodable;

mod common;
use common::{s, TIMEOUT};
const GROUP: &str = "cli-group";
/// Records per partition; record i of each partition is stamped BASE_TS + i seconds.
const RECORDS: i64 = 10;
const BASE_TS: i64 = 1_700_000_000_000;

async fn start() -> Broker {
    common::start_broker(&MemStorage::default(), 3, false).await
}

/// Topic `t` with three partitions of RECORDS records each.
async fn topic_with_records(addr: &str) {
    common::create_topic(addr, "t", 3).await;
    let mut producer = Producer::new(
        Client::new(addr, "producer", TIMEOUT),
        ProducerConfig::default(),
    )
    .await
    .unwrap();
    for p in 0..3 {
        for i in 0..RECORDS {
            let record = NewRecord {
                timestamp: BASE_TS + i * 1000,
                key: None,
                value: Some(Bytes::from(format!("{p}-{i}"))),
                headers: Vec::new(),
            };
            producer.send("t", Some(p), record).await.unwrap();
        }
    }
    for result in producer.flush().await.unwrap() {
        assert!(result.error.is_none(), "{result:?}");
    }
}

/// The consumer protocol's framing: a version, then the message in that version.
fn versioned<M: Encodable>(version: i16, message: &M) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    message.encode(&mut buf, version).unwrap();
    buf.freeze()
}

/// A member as a consumer would be: it subscribes to `t`, joins and, as the leader,
/// assigns itself partitions 0 and 1. Returns its connection, member id and generation.
async fn join_member(addr: &str) -> (Connection, String, i32) {
    let mut conn = Connection::connect(addr, "raw-consumer", TIMEOUT)
        .await
        .unwrap();
    for (key, version) in [
        (ApiKey::FindCoordinator, 2),
        (ApiKey::JoinGroup, 5),
        (ApiKey::SyncGroup, 3),
        (ApiKey::LeaveGroup, 1),
        (ApiKey::OffsetCommit, 8),
    ] {
        conn.pin_version(key, version);
    }
    let found = conn
        .request(
            &FindCoordinatorRequest::default()
                .with_key(s(GROUP))
                .with_key_type(0),
        )
        .await
        .unwrap();
    assert_eq!(found.error_code, 0);
    let subscription = ConsumerProtocolSubscription::default().with_topics(vec![s("t")]);
    let join = |member_id: String| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(s(&member_id))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(s("range"))
            .with_metadata(versioned(1, &subscription))])
    };
    let first = conn.request(&join(String::new())).await.unwrap();
    let member_id = first.member_id.to_string();
    let joined = conn.request(&join(member_id.clone())).await.unwrap();
    assert_eq!(joined.error_code, 0);
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
        consumer_protocol_assignment::TopicPartition::default()
            .with_topic(TopicName(s("t")))
            .with_partitions(vec![0, 1]),
    ]);
    let synced = conn
        .request(
            &SyncGroupRequest::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_member_id(s(&member_id))
                .with_generation_id(joined.generation_id)
                .with_protocol_type(Some(s("consumer")))
                .with_protocol_name(Some(s("range")))
                .with_assignments(vec![
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(s(&member_id))
                        .with_assignment(versioned(0, &assignment)),
                ]),
        )
        .await
        .unwrap();
    assert_eq!(synced.error_code, 0);
    (conn, member_id, joined.generation_id)
}

async fn commit(conn: &mut Connection, member_id: &str, generation: i32, offsets: &[(i32, i64)]) {
    let partitions = offsets
        .iter()
        .map(|(p, o)| {
            offset_commit_request::OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_leader_epoch(-1)
        })
        .collect();
    let resp = conn
        .request(
            &OffsetCommitRequest::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(s(member_id))
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partitions(partitions),
                ]),
        )
        .await
        .unwrap();
    for p in &resp.topics[0].partitions {
        assert_eq!(p.error_code, 0);
    }
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Output {
    /// The table's rows below its header line (the line starting with `header`), each
    /// split on whitespace.
    fn rows(&self, header: &str) -> Vec<Vec<String>> {
        let mut lines = self.stdout.lines().skip_while(|l| !l.starts_with(header));
        assert!(lines.next().is_some(), "no {header} table in {self:?}");
        lines
            .take_while(|l| !l.trim().is_empty())
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    }
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Run `faultline consumer-groups --bootstrap-server ADDR ARGS...` off the runtime's
/// threads (the broker runs on them).
async fn cli(addr: &str, args: &[&str]) -> Output {
    let mut argv = vec![
        "consumer-groups".to_string(),
        "--bootstrap-server".to_string(),
        addr.to_string(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
            .args(&argv)
            .env("RUST_LOG", "warn")
            .output()
            .expect("the faultline binary runs")
    })
    .await
    .unwrap();
    let out = Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    out
}

fn strs(row: &[&str]) -> Vec<String> {
    row.iter().map(|c| c.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_groups_lists_describes_resets_and_deletes() {
    let broker = start().await;
    let addr = broker.local_addr().to_string();
    topic_with_records(&addr).await;

    // No group yet.
    let out = cli(&addr, &["--list"]).await;
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    let out = cli(&addr, &["--describe", "--group", GROUP]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("Consumer group '{GROUP}' does not exist.")),
        "{out:?}"
    );

    // A member holds partitions 0 and 1; the group committed 0 and 2.
    let (mut conn, member, generation) = join_member(&addr).await;
    commit(&mut conn, &member, generation, &[(0, 3), (2, 4)]).await;

    let out = cli(&addr, &["--list"]).await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "cli-group\n"),
        "{out:?}"
    );
    let out = cli(&addr, &["--list", "--state"]).await;
    assert_eq!(out.rows("GROUP"), vec![strs(&[GROUP, "Stable"])], "{out:?}");
    let out = cli(&addr, &["--list", "--state", "empty,dead"]).await;
    assert!(out.rows("GROUP").is_empty(), "{out:?}");

    let out = cli(&addr, &["--describe", "--group", GROUP]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let host = "/127.0.0.1";
    assert_eq!(
        out.rows("GROUP"),
        vec![
            strs(&[
                GROUP,
                "t",
                "0",
                "3",
                "10",
                "7",
                &member,
                host,
                "raw-consumer"
            ]),
            strs(&[
                GROUP,
                "t",
                "1",
                "-",
                "10",
                "-",
                &member,
                host,
                "raw-consumer"
            ]),
            strs(&[GROUP, "t", "2", "4", "10", "6", "-", "-", "-"]),
        ],
        "{out:?}"
    );
    let header = out.stdout.lines().find(|l| l.starts_with("GROUP")).unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID"
        ]
    );

    let out = cli(&addr, &["--describe", "--group", GROUP, "--members"]).await;
    assert_eq!(
        out.rows("GROUP"),
        vec![strs(&[GROUP, &member, host, "raw-consumer", "2"])],
        "{out:?}"
    );
    let out = cli(
        &addr,
        &["--describe", "--all-groups", "--members", "--verbose"],
    )
    .await;
    assert_eq!(
        out.rows("GROUP"),
        vec![strs(&[GROUP, &member, host, "raw-consumer", "2", "t(0,1)"])],
        "{out:?}"
    );
    let out = cli(&addr, &["--describe", "--group", GROUP, "--state"]).await;
    let coordinator = addr.clone();
    assert_eq!(
        out.rows("GROUP"),
        vec![strs(&[GROUP, &coordinator, "(1)", "range", "Stable", "1"])],
        "{out:?}"
    );

    // Nothing that needs the group inactive is done while the member is there.
    for args in [
        &[
            "--reset-offsets",
            "--group",
            GROUP,
            "--all-topics",
            "--to-earliest",
        ][..],
        &[
            "--reset-offsets",
            "--group",
            GROUP,
            "--topic",
            "t",
            "--to-latest",
            "--execute",
        ],
    ] {
        let out = cli(&addr, args).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert!(
            out.stderr.contains(&format!(
                "Assignments can only be reset if the group '{GROUP}' is inactive, but the current state is Stable."
            )),
            "{out:?}"
        );
    }
    let out = cli(&addr, &["--delete", "--group", GROUP]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("not empty"), "{out:?}");
    let out = cli(
        &addr,
        &["--delete-offsets", "--group", GROUP, "--topic", "t:0"],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.rows("TOPIC"),
        vec![strs(&["t", "0", "Error:", "GroupSubscribedToTopic"])],
        "{out:?}"
    );

    // The member leaves: the group is Empty and its offsets stay.
    let left = conn
        .request(
            &LeaveGroupRequest::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_member_id(s(&member)),
        )
        .await
        .unwrap();
    assert_eq!(left.error_code, 0);
    let out = cli(&addr, &["--describe", "--group", GROUP]).await;
    assert!(
        out.stdout
            .contains(&format!("Consumer group '{GROUP}' has no active members.")),
        "{out:?}"
    );
    assert_eq!(
        out.rows("GROUP"),
        vec![
            strs(&[GROUP, "t", "0", "3", "10", "7", "-", "-", "-"]),
            strs(&[GROUP, "t", "2", "4", "10", "6", "-", "-", "-"]),
        ],
        "{out:?}"
    );
    let out = cli(&addr, &["--describe", "--group", GROUP, "--state"]).await;
    assert_eq!(
        out.rows("GROUP"),
        vec![strs(&[GROUP, &coordinator, "(1)", "-", "Empty", "0"])],
        "{out:?}"
    );

    // A dry run (the default) shows the new offsets and changes nothing.
    let committed = |out: &Output| -> Vec<(String, String)> {
        out.rows("GROUP")
            .into_iter()
            .map(|r| (r[2].clone(), r[3].clone()))
            .collect()
    };
    let before = committed(&cli(&addr, &["--describe", "--group", GROUP]).await);
    for extra in [&[][..], &["--dry-run"]] {
        let mut args = vec![
            "--reset-offsets",
            "--group",
            GROUP,
            "--topic",
            "t",
            "--to-earliest",
        ];
        args.extend_from_slice(extra);
        let out = cli(&addr, &args).await;
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(
            out.rows("GROUP"),
            vec![
                strs(&[GROUP, "t", "0", "0"]),
                strs(&[GROUP, "t", "1", "0"]),
                strs(&[GROUP, "t", "2", "0"]),
            ],
            "{out:?}"
        );
    }
    assert_eq!(
        committed(&cli(&addr, &["--describe", "--group", GROUP]).await),
        before
    );

    // Each scenario, executed, on some partitions.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        (&["--topic", "t:1", "--to-offset", "6"], &[("1", "6")]),
        (&["--topic", "t:1", "--to-offset", "99"], &[("1", "10")]),
        (
            &["--all-topics", "--shift-by", "-2"],
            &[("0", "1"), ("1", "8"), ("2", "2")],
        ),
        (
            &["--topic", "t:0,2", "--shift-by", "-5"],
            &[("0", "0"), ("2", "0")],
        ),
        (&["--topic", "t:2", "--to-latest"], &[("2", "10")]),
        (
            // Record 5 of each partition is stamped BASE_TS + 5 s.
            &["--topic", "t:0", "--to-datetime", "2023-11-14T22:13:25.000"],
            &[("0", "5")],
        ),
    ];
    for (args, expected) in cases {
        let mut argv = vec!["--reset-offsets", "--group", GROUP, "--execute"];
        argv.extend_from_slice(args);
        let out = cli(&addr, &argv).await;
        assert_eq!(out.code, 0, "{out:?}");
        let got: Vec<(String, String)> = out
            .rows("GROUP")
            .into_iter()
            .map(|r| (r[2].clone(), r[3].clone()))
            .collect();
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(p, o)| (p.to_string(), o.to_string()))
            .collect();
        assert_eq!(got, expected, "{args:?}: {out:?}");
    }
    let out = cli(&addr, &["--describe", "--group", GROUP]).await;
    assert_eq!(
        out.rows("GROUP"),
        vec![
            strs(&[GROUP, "t", "0", "5", "10", "5", "-", "-", "-"]),
            strs(&[GROUP, "t", "1", "8", "10", "2", "-", "-", "-"]),
            strs(&[GROUP, "t", "2", "10", "10", "0", "-", "-", "-"]),
        ],
        "{out:?}"
    );

    // Offsets of one partition deleted, then the whole group.
    let out = cli(
        &addr,
        &["--delete-offsets", "--group", GROUP, "--topic", "t:1"],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.rows("TOPIC"), vec![strs(&["t", "1", "Successful"])]);
    let out = cli(&addr, &["--describe", "--group", GROUP]).await;
    let partitions: Vec<String> = out
        .rows("GROUP")
        .into_iter()
        .map(|r| r[2].clone())
        .collect();
    assert_eq!(partitions, ["0", "2"], "{out:?}");
    let out = cli(&addr, &["--delete", "--group", GROUP]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("successful"), "{out:?}");
    let out = cli(&addr, &["--list"]).await;
    assert_eq!(out.stdout, "", "{out:?}");
    let out = cli(&addr, &["--delete", "--group", GROUP]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("Consumer group '{GROUP}' does not exist.")),
        "{out:?}"
    );

    // A reset of a group that does not exist creates its offsets, as Kafka's tool does.
    let out = cli(
        &addr,
        &[
            "--reset-offsets",
            "--group",
            "fresh",
            "--topic",
            "t",
            "--to-offset",
            "2",
            "--execute",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = cli(&addr, &["--describe", "--group", "fresh"]).await;
    let lags: Vec<String> = out
        .rows("GROUP")
        .into_iter()
        .map(|r| r[5].clone())
        .collect();
    assert_eq!(lags, ["8", "8", "8"], "{out:?}");
    let out = cli(
        &addr,
        &[
            "--reset-offsets",
            "--group",
            "fresh",
            "--topic",
            "nosuch",
            "--to-latest",
        ],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("Topic 'nosuch' does not exist."),
        "{out:?}"
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistaken_flags_are_usage_errors_and_an_unreachable_broker_an_error() {
    let broker = start().await;
    let addr = broker.local_addr().to_string();
    let usage: &[(&[&str], &str)] = &[
        (&[], "exactly one action"),
        (&["--list", "--describe"], "exactly one action"),
        (&["--describe"], "--group GROUP or --all-groups"),
        (
            &["--describe", "--group", "g", "--all-groups"],
            "exclude each other",
        ),
        (
            &["--describe", "--group", "g", "--members", "--state"],
            "exclude each other",
        ),
        (
            &["--reset-offsets", "--group", "g", "--to-earliest"],
            "--topic or --all-topics",
        ),
        (
            &["--reset-offsets", "--group", "g", "--topic", "t"],
            "exactly one of --to-earliest",
        ),
        (
            &[
                "--reset-offsets",
                "--group",
                "g",
                "--topic",
                "t",
                "--to-earliest",
                "--to-latest",
            ],
            "exactly one of --to-earliest",
        ),
        (
            &[
                "--reset-offsets",
                "--group",
                "g",
                "--topic",
                "t",
                "--to-earliest",
                "--dry-run",
                "--execute",
            ],
            "exclude each other",
        ),
        (
            &[
                "--reset-offsets",
                "--group",
                "g",
                "--topic",
                "t",
                "--to-datetime",
                "yesterday",
            ],
            "YYYY-MM-DDTHH:mm:SS.sss",
        ),
        (
            &[
                "--reset-offsets",
                "--group",
                "g",
                "--topic",
                "t:x",
                "--to-earliest",
            ],
            "not a partition number",
        ),
        (&["--list", "--to-earliest"], "go with --reset-offsets only"),
        (&["--list", "--state", "Sleeping"], "not a group state"),
        (&["--delete-offsets", "--group", "g"], "needs --topic"),
        (
            &["--describe", "--group", "g", "--topic", "t"],
            "--topic and --all-topics go with",
        ),
        (&["--describe", "--group", "g", "--bogus"], "--bogus"),
    ];
    for (args, message) in usage {
        let out = cli(&addr, args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.contains(message), "{args:?}: {out:?}");
        assert_eq!(out.stdout, "", "{args:?}: {out:?}");
    }
    broker.shutdown().await.unwrap();
    // Nothing listens there any more.
    let out = cli(&addr, &["--list", "--timeout", "2000"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("connecting to"), "{out:?}");
}
