//! `faultline consumer-groups`: list, describe, reset the offsets of and delete consumer
//! groups, with the flags and the output columns of Kafka's kafka-consumer-groups.sh.
//!
//! Every group operation goes to the group's coordinator, found with FindCoordinator
//! (in a cluster it may be another broker than the bootstrap one).

use super::UsageError;
use faultline::client::admin::{GroupAdmin, GroupDescription};
use faultline::client::ClientError;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Kafka's group states, as ListGroups and DescribeGroups name them.
const GROUP_STATES: &[&str] = &[
    "PreparingRebalance",
    "CompletingRebalance",
    "Stable",
    "Dead",
    "Empty",
];

#[derive(clap::Args)]
pub struct ConsumerGroupsArgs {
    /// The server(s) to connect to: HOST:PORT[,HOST:PORT...].
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap_server: String,
    /// List all consumer groups.
    #[arg(long)]
    list: bool,
    /// Describe consumer group(s): offsets and lag per partition (default), members
    /// (--members) or state (--state).
    #[arg(long)]
    describe: bool,
    /// Delete consumer group(s); only groups without active members can be deleted.
    #[arg(long)]
    delete: bool,
    /// Reset the offsets of consumer group(s); the group must have no active members.
    #[arg(long)]
    reset_offsets: bool,
    /// Delete the offsets of a consumer group for the topics (partitions) given.
    #[arg(long)]
    delete_offsets: bool,
    /// The consumer group (repeatable).
    #[arg(long)]
    group: Vec<String>,
    /// Apply to all consumer groups.
    #[arg(long)]
    all_groups: bool,
    /// With --describe: the group's members.
    #[arg(long)]
    members: bool,
    /// With --describe: offsets and lag per partition (the default).
    #[arg(long)]
    offsets: bool,
    /// With --describe: the group's state. With --list: show each group's state, or, given
    /// STATE[,STATE...], only groups in those states.
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "STATES")]
    state: Option<String>,
    /// With --describe --members: each member's assignment too.
    #[arg(long)]
    verbose: bool,
    /// With --reset-offsets or --delete-offsets: a topic, or TOPIC:P,P,... for some of its
    /// partitions (repeatable).
    #[arg(long)]
    topic: Vec<String>,
    /// With --reset-offsets: every topic the group has committed offsets for.
    #[arg(long)]
    all_topics: bool,
    /// Reset to the earliest offset.
    #[arg(long)]
    to_earliest: bool,
    /// Reset to the latest offset (the log end).
    #[arg(long)]
    to_latest: bool,
    /// Reset to this offset (clamped to the earliest and latest).
    #[arg(long, allow_negative_numbers = true, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// Reset to the first offset whose timestamp is at or after this time:
    /// YYYY-MM-DDTHH:mm:SS.sss, UTC unless followed by Z or +HH:MM / -HH:MM.
    #[arg(long, value_name = "DATETIME")]
    to_datetime: Option<String>,
    /// Move each committed offset by N (negative: back), clamped to the earliest and latest.
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    shift_by: Option<i64>,
    /// Only show what --reset-offsets would do (the default).
    #[arg(long)]
    dry_run: bool,
    /// Do the reset.
    #[arg(long)]
    execute: bool,
    /// How long to wait for each request, in milliseconds.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    timeout: u64,
}

/// How a reset picks each partition's new offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResetTo {
    Earliest,
    Latest,
    Offset(i64),
    Timestamp(i64),
    ShiftBy(i64),
}

fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

pub async fn run(args: ConsumerGroupsArgs) -> anyhow::Result<()> {
    validate(&args)?;
    let mut admin = GroupAdmin::new(
        &args.bootstrap_server,
        "faultline-consumer-groups",
        Duration::from_millis(args.timeout.max(1)),
    );
    if args.list {
        return list(&mut admin, &args).await;
    }
    if args.delete_offsets {
        return delete_offsets(&mut admin, &args.group[0], &args.topic).await;
    }
    let groups = if args.all_groups {
        admin
            .list_groups(&[])
            .await?
            .into_iter()
            .filter(|g| is_consumer_group(&g.protocol_type))
            .map(|g| g.group_id)
            .collect()
    } else {
        args.group.clone()
    };
    let mut failures = Vec::new();
    for group in &groups {
        let result = if args.describe {
            describe(&mut admin, &args, group).await
        } else if args.delete {
            admin
                .delete_group(group)
                .await
                .map_err(|e| group_error(group, "could not be deleted", e))
                .map(|()| println!("Deletion of consumer group '{group}' was successful."))
        } else {
            reset_offsets(&mut admin, &args, group).await
        };
        if let Err(e) = result {
            failures.push(format!("{e:#}"));
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(anyhow::anyhow!(failures.remove(0))),
        n => {
            for f in &failures {
                eprintln!("error: {f}");
            }
            anyhow::bail!("{n} of {} consumer groups failed", groups.len())
        }
    }
}

fn is_consumer_group(protocol_type: &str) -> bool {
    protocol_type.is_empty() || protocol_type == "consumer"
}

/// Kafka's wording for a group that does not exist, or the error as the client reports it.
fn group_error(group: &str, what: &str, e: ClientError) -> anyhow::Error {
    match &e {
        ClientError::Kafka { error, .. } if *error == ResponseError::GroupIdNotFound => {
            anyhow::anyhow!("Consumer group '{group}' does not exist.")
        }
        ClientError::Kafka { error, .. } if *error == ResponseError::NonEmptyGroup => {
            anyhow::anyhow!(
                "Consumer group '{group}' {what}: the group is not empty (it has active members)."
            )
        }
        _ => anyhow::anyhow!("Consumer group '{group}' {what}: {e}"),
    }
}

/// The flag combinations kafka-consumer-groups.sh accepts; anything else is a usage error.
fn validate(args: &ConsumerGroupsArgs) -> anyhow::Result<()> {
    let actions = [
        args.list,
        args.describe,
        args.delete,
        args.reset_offsets,
        args.delete_offsets,
    ];
    if actions.iter().filter(|a| **a).count() != 1 {
        return Err(usage(
            "give exactly one action: --list, --describe, --delete, --reset-offsets or --delete-offsets",
        ));
    }
    if !args.group.is_empty() && args.all_groups {
        return Err(usage("--group and --all-groups exclude each other"));
    }
    if args.list && (!args.group.is_empty() || args.all_groups) {
        return Err(usage("--list takes no --group or --all-groups"));
    }
    let needs_groups = args.describe || args.delete || args.reset_offsets;
    if needs_groups && args.group.is_empty() && !args.all_groups {
        return Err(usage(format!(
            "--{} needs --group GROUP or --all-groups",
            action_name(args)
        )));
    }
    if args.group.iter().any(|g| g.is_empty()) {
        return Err(usage("--group needs a non-empty group id"));
    }
    if !args.describe && (args.members || args.offsets || args.verbose) {
        return Err(usage(
            "--members, --offsets and --verbose go with --describe only",
        ));
    }
    if args.state.is_some() && !(args.describe || args.list) {
        return Err(usage("--state goes with --describe or --list only"));
    }
    if args.describe {
        let views = [args.members, args.offsets, args.state.is_some()];
        if views.iter().filter(|v| **v).count() > 1 {
            return Err(usage("--members, --offsets and --state exclude each other"));
        }
        if args.state.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(usage("--describe --state takes no value"));
        }
    }
    if args.delete_offsets {
        if args.group.len() != 1 {
            return Err(usage("--delete-offsets needs exactly one --group"));
        }
        if args.topic.is_empty() {
            return Err(usage("--delete-offsets needs --topic TOPIC[:P,P,...]"));
        }
        if args.all_topics {
            return Err(usage("--delete-offsets takes --topic, not --all-topics"));
        }
    } else if !args.reset_offsets && (!args.topic.is_empty() || args.all_topics) {
        return Err(usage(
            "--topic and --all-topics go with --reset-offsets or --delete-offsets",
        ));
    }
    for t in &args.topic {
        parse_topic(t)?;
    }
    let scenario_given = reset_scenarios(args) > 0;
    if args.reset_offsets {
        if args.topic.is_empty() != args.all_topics {
            return Err(usage(
                "--reset-offsets needs either --topic or --all-topics",
            ));
        }
        if reset_scenarios(args) != 1 {
            return Err(usage(
                "--reset-offsets needs exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime, --shift-by",
            ));
        }
        if args.dry_run && args.execute {
            return Err(usage("--dry-run and --execute exclude each other"));
        }
        if let Some(dt) = &args.to_datetime {
            parse_datetime(dt)?;
        }
    } else if scenario_given || args.dry_run || args.execute {
        return Err(usage(
            "--to-earliest, --to-latest, --to-offset, --to-datetime, --shift-by, --dry-run and --execute go with --reset-offsets only",
        ));
    }
    Ok(())
}

fn action_name(args: &ConsumerGroupsArgs) -> &'static str {
    if args.describe {
        "describe"
    } else if args.delete {
        "delete"
    } else if args.reset_offsets {
        "reset-offsets"
    } else if args.delete_offsets {
        "delete-offsets"
    } else {
        "list"
    }
}

fn reset_scenarios(args: &ConsumerGroupsArgs) -> usize {
    [
        args.to_earliest,
        args.to_latest,
        args.to_offset.is_some(),
        args.to_datetime.is_some(),
        args.shift_by.is_some(),
    ]
    .iter()
    .filter(|s| **s)
    .count()
}

fn reset_to(args: &ConsumerGroupsArgs) -> anyhow::Result<ResetTo> {
    Ok(if args.to_earliest {
        ResetTo::Earliest
    } else if args.to_latest {
        ResetTo::Latest
    } else if let Some(o) = args.to_offset {
        ResetTo::Offset(o)
    } else if let Some(dt) = &args.to_datetime {
        ResetTo::Timestamp(parse_datetime(dt)?)
    } else if let Some(n) = args.shift_by {
        ResetTo::ShiftBy(n)
    } else {
        return Err(usage("no reset scenario given"));
    })
}

/// `TOPIC` or `TOPIC:P,P,...`: the topic and the partitions named (None: all of them).
fn parse_topic(spec: &str) -> anyhow::Result<(String, Option<Vec<i32>>)> {
    let (topic, partitions) = match spec.split_once(':') {
        None => (spec, None),
        Some((topic, list)) => {
            let parsed: Result<Vec<i32>, _> = list
                .split(',')
                .map(|p| p.trim().parse::<i32>().ok().filter(|p| *p >= 0).ok_or(p))
                .collect();
            match parsed {
                Ok(ps) => (topic, Some(ps)),
                Err(bad) => {
                    return Err(usage(format!(
                        "--topic {spec:?}: partition {bad:?} is not a partition number"
                    )))
                }
            }
        }
    };
    if topic.is_empty() {
        return Err(usage(format!("--topic {spec:?}: no topic name")));
    }
    Ok((topic.to_string(), partitions))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12; // March is 0
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `YYYY-MM-DDTHH:mm:SS[.sss][Z|+HH:MM|-HH:MM]` as milliseconds since the epoch (UTC when
/// no zone is given).
fn parse_datetime(text: &str) -> anyhow::Result<i64> {
    let bad = || {
        usage(format!(
            "--to-datetime {text:?}: expected YYYY-MM-DDTHH:mm:SS.sss (optionally Z or +HH:MM)"
        ))
    };
    let (main, offset_minutes) = if let Some(main) = text.strip_suffix('Z') {
        (main, 0)
    } else if text.len() > 19 && matches!(text.as_bytes()[text.len() - 6], b'+' | b'-') {
        let (main, zone) = text.split_at(text.len() - 6);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':').ok_or_else(bad)?;
        let h: i64 = h.parse().map_err(|_| bad())?;
        let m: i64 = m.parse().map_err(|_| bad())?;
        if h > 23 || m > 59 {
            return Err(bad());
        }
        (main, sign * (h * 60 + m))
    } else {
        (text, 0)
    };
    let (date, time) = main.split_once('T').ok_or_else(bad)?;
    let date: Vec<&str> = date.split('-').collect();
    let (time, millis) = match time.split_once('.') {
        Some((t, ms)) if ms.len() == 3 => (t, ms.parse::<i64>().map_err(|_| bad())?),
        Some(_) => return Err(bad()),
        None => (time, 0),
    };
    let time: Vec<&str> = time.split(':').collect();
    if date.len() != 3 || time.len() != 3 {
        return Err(bad());
    }
    let num = |s: &str, len: usize| -> anyhow::Result<i64> {
        if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let (year, month, day) = (num(date[0], 4)?, num(date[1], 2)?, num(date[2], 2)?);
    let (hour, minute, second) = (num(time[0], 2)?, num(time[1], 2)?, num(time[2], 2)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1000 + millis)
}

/// Left-aligned columns, one space apart, each as wide as its widest cell.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(&format!("{cell:<w$}"));
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(|c| c.as_str()).collect());
    }
}

fn dash_if_empty(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

async fn list(admin: &mut GroupAdmin, args: &ConsumerGroupsArgs) -> anyhow::Result<()> {
    let filter: Vec<String> = match args.state.as_deref() {
        None | Some("") => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|st| {
                GROUP_STATES
                    .iter()
                    .find(|known| known.eq_ignore_ascii_case(st.trim()))
                    .map(|known| known.to_string())
                    .ok_or_else(|| {
                        usage(format!(
                            "--state {st:?}: not a group state (one of {})",
                            GROUP_STATES.join(", ")
                        ))
                    })
            })
            .collect::<anyhow::Result<_>>()?,
    };
    let groups: Vec<_> = admin
        .list_groups(&filter)
        .await?
        .into_iter()
        .filter(|g| is_consumer_group(&g.protocol_type))
        .collect();
    if args.state.is_some() {
        let rows: Vec<Vec<String>> = groups
            .iter()
            .map(|g| vec![g.group_id.clone(), dash_if_empty(&g.state)])
            .collect();
        print_table(&["GROUP", "STATE"], &rows);
    } else {
        for g in groups {
            println!("{}", g.group_id);
        }
    }
    Ok(())
}

/// DescribeGroups for `group`, an error in Kafka's words when it does not exist.
async fn existing_group(admin: &mut GroupAdmin, group: &str) -> anyhow::Result<GroupDescription> {
    let described = admin
        .describe_group(group)
        .await
        .map_err(|e| group_error(group, "could not be described", e))?;
    if !described.exists() {
        anyhow::bail!("Consumer group '{group}' does not exist.");
    }
    Ok(described)
}

fn state_notice(d: &GroupDescription) {
    match d.state.as_str() {
        "PreparingRebalance" | "CompletingRebalance" => {
            println!("\nWarning: Consumer group '{}' is rebalancing.", d.group_id)
        }
        _ if d.members.is_empty() => {
            println!("\nConsumer group '{}' has no active members.", d.group_id)
        }
        _ => {}
    }
}

async fn describe(
    admin: &mut GroupAdmin,
    args: &ConsumerGroupsArgs,
    group: &str,
) -> anyhow::Result<()> {
    let d = existing_group(admin, group).await?;
    if args.state.is_some() {
        let c = &d.coordinator;
        println!();
        print_table(
            &[
                "GROUP",
                "COORDINATOR (ID)",
                "ASSIGNMENT-STRATEGY",
                "STATE",
                "#MEMBERS",
            ],
            &[vec![
                d.group_id.clone(),
                format!("{}:{} ({})", c.host, c.port, c.node_id),
                dash_if_empty(&d.protocol),
                d.state.clone(),
                d.members.len().to_string(),
            ]],
        );
        return Ok(());
    }
    if args.members {
        state_notice(&d);
        let mut header = vec!["GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS"];
        if args.verbose {
            header.push("ASSIGNMENT");
        }
        let rows: Vec<Vec<String>> = d
            .members
            .iter()
            .map(|m| {
                let mut row = vec![
                    d.group_id.clone(),
                    m.member_id.clone(),
                    m.host.clone(),
                    m.client_id.clone(),
                    m.assignment.len().to_string(),
                ];
                if args.verbose {
                    row.push(assignment_text(&m.assignment));
                }
                row
            })
            .collect();
        if !rows.is_empty() {
            println!();
            print_table(&header, &rows);
        }
        return Ok(());
    }
    describe_offsets(admin, &d).await
}

/// `topic(0,1),other(2)`, or `-` for none.
fn assignment_text(assignment: &[(String, i32)]) -> String {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in assignment {
        by_topic.entry(t).or_default().push(*p);
    }
    if by_topic.is_empty() {
        return "-".into();
    }
    by_topic
        .iter()
        .map(|(t, ps)| {
            let ps: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
            format!("{t}({})", ps.join(","))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The log end offset of each partition, None where it cannot be read (a deleted topic).
/// Topics are looked up without auto-creating them.
async fn log_end_offsets(
    admin: &mut GroupAdmin,
    partitions: &BTreeSet<(String, i32)>,
) -> BTreeMap<(String, i32), Option<i64>> {
    let topics: BTreeSet<&str> = partitions.iter().map(|(t, _)| t.as_str()).collect();
    let mut known = BTreeSet::new();
    for t in topics {
        if admin
            .client()
            .refresh_metadata(Some(&[t]), false)
            .await
            .is_ok()
        {
            known.insert(t.to_string());
        }
    }
    let mut out = BTreeMap::new();
    for (t, p) in partitions {
        let end = if known.contains(t) {
            admin.client().list_offset(t, *p, -1).await.ok()
        } else {
            None
        };
        out.insert((t.clone(), *p), end);
    }
    out
}

async fn describe_offsets(admin: &mut GroupAdmin, d: &GroupDescription) -> anyhow::Result<()> {
    let committed = admin
        .committed_offsets(&d.group_id)
        .await
        .map_err(|e| group_error(&d.group_id, "offsets could not be read", e))?;
    // (topic, partition) -> (consumer id, host, client id) of the member holding it.
    let mut owners: BTreeMap<(String, i32), (String, String, String)> = BTreeMap::new();
    for m in &d.members {
        for tp in &m.assignment {
            owners.insert(
                tp.clone(),
                (m.member_id.clone(), m.host.clone(), m.client_id.clone()),
            );
        }
    }
    let partitions: BTreeSet<(String, i32)> =
        owners.keys().chain(committed.keys()).cloned().collect();
    let ends = log_end_offsets(admin, &partitions).await;
    state_notice(d);
    if partitions.is_empty() {
        if !d.members.is_empty() {
            println!(
                "\nConsumer group '{}' has no partitions assigned.",
                d.group_id
            );
        }
        return Ok(());
    }
    let show = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    let rows: Vec<Vec<String>> = partitions
        .iter()
        .map(|tp| {
            let current = committed.get(tp).copied();
            let end = ends.get(tp).copied().flatten();
            let lag = current.zip(end).map(|(c, e)| (e - c).max(0));
            let dash = || "-".to_string();
            let (member, host, client) = owners
                .get(tp)
                .cloned()
                .unwrap_or_else(|| (dash(), dash(), dash()));
            vec![
                d.group_id.clone(),
                tp.0.clone(),
                tp.1.to_string(),
                show(current),
                show(end),
                show(lag),
                member,
                host,
                client,
            ]
        })
        .collect();
    println!();
    print_table(
        &[
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID",
        ],
        &rows,
    );
    Ok(())
}

/// The partitions of `--topic` specs: those listed, or every partition of the topic.
async fn topic_partitions(
    admin: &mut GroupAdmin,
    specs: &[String],
) -> anyhow::Result<BTreeSet<(String, i32)>> {
    let mut out = BTreeSet::new();
    for spec in specs {
        let (topic, listed) = parse_topic(spec)?;
        let info = admin
            .client()
            .refresh_metadata(Some(&[topic.as_str()]), false)
            .await
            .map_err(|e| match e {
                ClientError::Kafka {
                    error: ResponseError::UnknownTopicOrPartition,
                    ..
                } => {
                    anyhow::anyhow!("Topic '{topic}' does not exist.")
                }
                e => anyhow::anyhow!("metadata of topic '{topic}': {e}"),
            })?;
        let existing: Vec<i32> = info
            .first()
            .map(|t| t.partitions.iter().map(|p| p.partition).collect())
            .unwrap_or_default();
        match listed {
            None => out.extend(existing.into_iter().map(|p| (topic.clone(), p))),
            Some(ps) => {
                for p in ps {
                    if !existing.contains(&p) {
                        anyhow::bail!("Topic '{topic}' has no partition {p}.");
                    }
                    out.insert((topic.clone(), p));
                }
            }
        }
    }
    Ok(out)
}

async fn reset_offsets(
    admin: &mut GroupAdmin,
    args: &ConsumerGroupsArgs,
    group: &str,
) -> anyhow::Result<()> {
    let to = reset_to(args)?;
    let d = admin
        .describe_group(group)
        .await
        .map_err(|e| group_error(group, "could not be described", e))?;
    if d.state != "Empty" && d.state != "Dead" {
        anyhow::bail!(
            "Assignments can only be reset if the group '{group}' is inactive, but the current state is {}.",
            d.state
        );
    }
    let committed = admin
        .committed_offsets(group)
        .await
        .map_err(|e| group_error(group, "offsets could not be read", e))?;
    let partitions: BTreeSet<(String, i32)> = if args.all_topics {
        committed.keys().cloned().collect()
    } else {
        topic_partitions(admin, &args.topic).await?
    };
    let mut planned: Vec<(String, i32, i64)> = Vec::new();
    for (topic, partition) in &partitions {
        let offset = new_offset(
            admin,
            to,
            topic,
            *partition,
            committed.get(&(topic.clone(), *partition)).copied(),
        )
        .await?;
        planned.push((topic.clone(), *partition, offset));
    }
    if args.execute && !planned.is_empty() {
        let answers = admin
            .commit_offsets(group, &planned)
            .await
            .map_err(|e| group_error(group, "offsets could not be committed", e))?;
        let failed: Vec<String> = answers
            .iter()
            .filter(|(_, _, code)| *code != 0)
            .map(|(t, p, code)| format!("{t}-{p}: {}", error_name(*code)))
            .collect();
        if failed
            .iter()
            .any(|f| f.ends_with("UnknownMemberId") || f.ends_with("IllegalGeneration"))
        {
            anyhow::bail!(
                "Assignments can only be reset if the group '{group}' is inactive: a member joined while resetting ({})",
                failed.join(", ")
            );
        }
        if !failed.is_empty() {
            anyhow::bail!(
                "Consumer group '{group}': offsets not committed: {}",
                failed.join(", ")
            );
        }
    }
    if !args.execute && !args.dry_run {
        eprintln!("note: a dry run, nothing was changed; add --execute to reset the offsets (--dry-run to say so and silence this note)");
    }
    let rows: Vec<Vec<String>> = planned
        .iter()
        .map(|(t, p, o)| vec![group.to_string(), t.clone(), p.to_string(), o.to_string()])
        .collect();
    println!();
    print_table(&["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"], &rows);
    Ok(())
}

fn error_name(code: i16) -> String {
    format!(
        "{:?}",
        ResponseError::try_from_code(code).unwrap_or(ResponseError::Unknown(code))
    )
}

async fn list_offset(
    admin: &mut GroupAdmin,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> anyhow::Result<i64> {
    admin
        .client()
        .list_offset(topic, partition, timestamp)
        .await
        .map_err(|e| anyhow::anyhow!("offsets of {topic}-{partition}: {e}"))
}

/// The offset a reset moves one partition to.
async fn new_offset(
    admin: &mut GroupAdmin,
    to: ResetTo,
    topic: &str,
    partition: i32,
    committed: Option<i64>,
) -> anyhow::Result<i64> {
    let earliest = list_offset(admin, topic, partition, -2).await?;
    let latest = list_offset(admin, topic, partition, -1).await?;
    let clamp = |o: i64| o.clamp(earliest, latest.max(earliest));
    Ok(match to {
        ResetTo::Earliest => earliest,
        ResetTo::Latest => latest,
        ResetTo::Offset(o) => clamp(o),
        ResetTo::ShiftBy(n) => {
            let current = committed.ok_or_else(|| {
                anyhow::anyhow!(
                    "cannot shift the offset of {topic}-{partition}: the group has no committed offset there"
                )
            })?;
            clamp(current.saturating_add(n))
        }
        ResetTo::Timestamp(ts) => match list_offset(admin, topic, partition, ts).await? {
            // No record at or after that time: the log end.
            -1 => latest,
            o => clamp(o),
        },
    })
}

async fn delete_offsets(
    admin: &mut GroupAdmin,
    group: &str,
    topics: &[String],
) -> anyhow::Result<()> {
    let partitions: Vec<(String, i32)> =
        topic_partitions(admin, topics).await?.into_iter().collect();
    let (error, answers) = admin
        .delete_offsets(group, &partitions)
        .await
        .map_err(|e| group_error(group, "offsets could not be deleted", e))?;
    if error == ResponseError::GroupIdNotFound.code() {
        anyhow::bail!("Consumer group '{group}' does not exist.");
    }
    if error != 0 {
        anyhow::bail!(
            "Consumer group '{group}': offsets could not be deleted: {}",
            error_name(error)
        );
    }
    let rows: Vec<Vec<String>> = answers
        .iter()
        .map(|(t, p, code)| {
            vec![
                t.clone(),
                p.to_string(),
                if *code == 0 {
                    "Successful".to_string()
                } else {
                    format!("Error: {}", error_name(*code))
                },
            ]
        })
        .collect();
    print_table(&["TOPIC", "PARTITION", "STATUS"], &rows);
    let failed = answers.iter().filter(|(_, _, code)| *code != 0).count();
    if failed > 0 {
        anyhow::bail!(
            "Consumer group '{group}': {failed} partition offset(s) could not be deleted"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_as_kafka_writes_them() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00.000").unwrap(), 0);
        assert_eq!(
            parse_datetime("2024-03-09T16:00:00.123").unwrap(),
            1_710_000_000_123
        );
        assert_eq!(
            parse_datetime("2024-03-09T16:00:00Z").unwrap(),
            1_710_000_000_000
        );
        assert_eq!(
            parse_datetime("2024-03-09T18:00:00.000+02:00").unwrap(),
            1_710_000_000_000
        );
        assert_eq!(
            parse_datetime("2000-02-29T00:00:00.000").unwrap(),
            951_782_400_000
        );
        for bad in [
            "2024-03-09",
            "2024-13-01T00:00:00.000",
            "2024-03-09T00:00:00.1",
            "x",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topic_specs_name_partitions_or_all() {
        assert_eq!(parse_topic("t").unwrap(), ("t".to_string(), None));
        assert_eq!(
            parse_topic("t:0,2").unwrap(),
            ("t".to_string(), Some(vec![0, 2]))
        );
        assert!(parse_topic("t:a").is_err());
        assert!(parse_topic(":1").is_err());
        assert!(parse_topic("t:-1").is_err());
    }

    #[test]
    fn assignments_print_per_topic() {
        let a = vec![
            ("a".to_string(), 0),
            ("a".to_string(), 2),
            ("b".to_string(), 1),
        ];
        assert_eq!(assignment_text(&a), "a(0,2),b(1)");
        assert_eq!(assignment_text(&[]), "-");
    }
}
