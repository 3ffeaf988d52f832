//! Validation: a parsed file becomes a [`Scenario`], or the first error in it. One module
//! per section, called in the order the checks have always run (the first error wins, so
//! this order is what users see): the run's length, the cluster, the topics, the clients,
//! the faults, the nemesis, the expectations, the seeds, `must_see`. Sections that name
//! topics, nodes or times check them against a [`Context`] built from the sections before.

mod clients;
mod cluster;
mod expectations;
mod faults;
mod nemesis;
mod topics;

use super::schema::{ChurnSpec, ChurnSpecToml, Dur, Knob, ScenarioToml, TopicSpec};
use super::{fnv1a, Scenario, ScenarioError, LIVENESS_DEFAULT, SEEDS_DEFAULT};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// Makes the error for a span, a field and a message (the span gives the line).
pub(super) type Err<'a> = &'a dyn Fn(Range<usize>, String, String) -> ScenarioError;

/// Check every section of `raw`, in order, and build the validated model.
pub(super) fn validate(
    path: &Path,
    text: &str,
    raw: ScenarioToml,
    err: Err,
) -> Result<Scenario, ScenarioError> {
    let duration = run_duration(&raw.duration, err)?;
    let shape = cluster::validate(&raw.cluster, err)?;
    let topic_partitions = topics::validate(&raw.topics, shape.brokers, err)?;
    let mut context = Context::new(err, duration, &shape, topic_partitions, &raw.topics);
    clients::validate(&raw.producers, &raw.consumers, &mut context)?;
    faults::validate(&raw.faults, &raw.consumers, &context)?;
    let clients = raw.producers.len() + raw.consumers.len();
    nemesis::validate(raw.nemesis.as_ref(), clients, &context)?;
    let churn = churn(raw.churn.as_ref(), shape.brokers, err)?;
    let expectations = expectations::expect(&raw.expect, err)?;
    seeds(raw.seeds.as_ref(), err)?;
    expectations::must_see(&raw.must_see, err)?;
    if let Some(at) = &raw.groups_stable_after {
        if context.groups.is_empty() || at.get_ref().0 >= duration {
            return Err(err(
                at.span(),
                "groups_stable_after".into(),
                "needs a consumer with a `group`, and a time inside the run's duration".into(),
            ));
        }
    }
    let mut scenario = model(path, text, raw, duration, shape.controllers, expectations);
    scenario.churn = churn;
    Ok(scenario)
}

/// A number, or every value of a list or range the seed may draw, within `allowed`; the
/// least and greatest value it may take. `what` completes "must be" in the error.
pub(super) fn knob<T: Copy + Ord + Into<i64> + TryFrom<i64>>(
    knob: &Spanned<Knob<T>>,
    field: String,
    allowed: std::ops::RangeInclusive<i64>,
    what: &str,
    err: Err,
) -> Result<(T, T), ScenarioError> {
    let Some((least, greatest)) = knob.get_ref().bounds() else {
        return Err(err(
            knob.span(),
            field,
            "a list of values to draw from must not be empty".into(),
        ));
    };
    if least > greatest {
        return Err(err(
            knob.span(),
            field,
            "a range's min must not be above its max".into(),
        ));
    }
    if !allowed.contains(&least.into()) || !allowed.contains(&greatest.into()) {
        return Err(err(knob.span(), field, format!("must be {what}")));
    }
    Ok((least, greatest))
}

/// `[churn]`: an interval, how many topics at once, partitions and a replication factor
/// the cluster can hold.
fn churn(
    raw: Option<&ChurnSpecToml>,
    brokers: usize,
    err: Err,
) -> Result<Option<ChurnSpec>, ScenarioError> {
    let Some(c) = raw else {
        return Ok(None);
    };
    let interval = c.interval.get_ref().0;
    if interval < Duration::from_millis(10) {
        return Err(err(
            c.interval.span(),
            "churn.interval".into(),
            "must be at least 10ms".into(),
        ));
    }
    if !(1..=50).contains(c.topics.get_ref()) {
        return Err(err(
            c.topics.span(),
            "churn.topics".into(),
            "must be 1..=50".into(),
        ));
    }
    if !(1..=100).contains(c.partitions.get_ref()) {
        return Err(err(
            c.partitions.span(),
            "churn.partitions".into(),
            "must be 1..=100".into(),
        ));
    }
    let rf = c
        .replication_factor
        .as_ref()
        .map_or(3.min(brokers as i16), |r| *r.get_ref());
    if rf < 1 || rf as usize > brokers {
        let span = c.replication_factor.as_ref().map_or(0..0, |r| r.span());
        return Err(err(
            span,
            "churn.replication_factor".into(),
            format!("must be 1..={brokers} (the number of brokers)"),
        ));
    }
    Ok(Some(ChurnSpec {
        interval,
        topics: *c.topics.get_ref(),
        partitions: *c.partitions.get_ref(),
        replication_factor: rf,
    }))
}

/// `duration`: the safety phase's length.
fn run_duration(duration: &Spanned<Dur>, err: Err) -> Result<Duration, ScenarioError> {
    let length = duration.get_ref().0;
    if length.is_zero() {
        return Err(err(
            duration.span(),
            "duration".into(),
            "must be longer than 0s".into(),
        ));
    }
    Ok(length)
}

/// `seeds`: the file's default number of seeds.
fn seeds(seeds: Option<&Spanned<u64>>, err: Err) -> Result<(), ScenarioError> {
    if let Some(s) = seeds {
        if *s.get_ref() == 0 {
            return Err(err(s.span(), "seeds".into(), "must be at least 1".into()));
        }
    }
    Ok(())
}

/// The validated model: the file's sections as written, with its defaults filled in.
fn model(
    path: &Path,
    text: &str,
    raw: ScenarioToml,
    duration: Duration,
    controllers: usize,
    expectations: expectations::Expectations,
) -> Scenario {
    let name = raw.name.unwrap_or_else(|| {
        path.file_stem()
            .map_or("scenario".into(), |s| s.to_string_lossy().into_owned())
    });
    Scenario {
        path: path.to_path_buf(),
        name,
        description: raw.description.unwrap_or_default(),
        hash: fnv1a(text.as_bytes()),
        duration,
        liveness: raw.liveness.map_or(LIVENESS_DEFAULT, |l| l.get_ref().0),
        seeds: raw.seeds.map_or(SEEDS_DEFAULT, |s| *s.get_ref()),
        cluster: raw.cluster,
        controllers,
        topics: raw.topics,
        producers: raw.producers,
        consumers: raw.consumers,
        faults: raw.faults,
        nemesis: raw.nemesis,
        churn: None,
        expect: expectations.anomalies,
        invariant_expectation: expectations.invariant,
        liveness_expectation: expectations.liveness,
        must_see: raw.must_see.into_iter().map(|e| e.into_inner()).collect(),
        buggify: raw.buggify,
        groups_stable_after: raw.groups_stable_after.map(|d| d.get_ref().0),
    }
}

/// Role prefixes: a role names the nodes that hold it when a fault fires.
const ROLE_PREFIXES: [&str; 4] = ["leader:", "follower:", "followers:", "replicas:"];

/// What the sections after the cluster and the topics check names and times against.
struct Context<'a> {
    err: Err<'a>,
    /// The run's length: nothing starts after it.
    duration: Duration,
    brokers: usize,
    controllers: usize,
    /// Partitions per topic.
    topic_partitions: BTreeMap<String, i32>,
    /// Replication factor per topic.
    topic_rf: BTreeMap<String, i16>,
    /// Every node name so far, with the span that named it (none for brokers and
    /// controllers); producers and consumers add theirs.
    names: BTreeMap<String, Range<usize>>,
    /// Consumers that are group members (their nodes can be killed and restart as a new
    /// process), and the groups they join (for the role "coordinator:GROUP").
    group_members: std::collections::BTreeSet<String>,
    groups: std::collections::BTreeSet<String>,
}

impl<'a> Context<'a> {
    fn new(
        err: Err<'a>,
        duration: Duration,
        shape: &cluster::Shape,
        topic_partitions: BTreeMap<String, i32>,
        topics: &[TopicSpec],
    ) -> Context<'a> {
        let mut names = BTreeMap::new();
        for n in (1..=shape.brokers).map(|i| format!("broker-{i}")) {
            names.insert(n, 0..0);
        }
        for n in (1..=shape.controllers).map(|k| format!("controller-{k}")) {
            names.insert(n, 0..0);
        }
        let topic_rf: BTreeMap<String, i16> = topics
            .iter()
            .map(|t| {
                (
                    t.name.get_ref().clone(),
                    t.replication_factor.get_ref().get(),
                )
            })
            .collect();
        Context {
            err,
            duration,
            brokers: shape.brokers,
            controllers: shape.controllers,
            topic_partitions,
            topic_rf,
            names,
            group_members: Default::default(),
            groups: Default::default(),
        }
    }

    /// A topic a client names must be a `[[topic]]`: its partition count.
    fn check_topic(&self, t: &Spanned<String>, field: String) -> Result<i32, ScenarioError> {
        self.topic_partitions
            .get(t.get_ref())
            .copied()
            .ok_or_else(|| {
                (self.err)(
                    t.span(),
                    field,
                    format!("no [[topic]] is named {:?}", t.get_ref()),
                )
            })
    }

    /// A client's `start` and `stop`: inside the run, stop after start.
    fn check_window(
        &self,
        start: &Option<Spanned<Dur>>,
        stop: &Option<Spanned<Dur>>,
        what: &str,
    ) -> Result<(), ScenarioError> {
        for (w, name) in [(start, "start"), (stop, "stop")] {
            if let Some(w) = w {
                if w.get_ref().0 > self.duration {
                    return Err((self.err)(
                        w.span(),
                        format!("{what}.{name}"),
                        "is after the end of the run (duration)".into(),
                    ));
                }
            }
        }
        if let (Some(a), Some(b)) = (start, stop) {
            if b.get_ref() <= a.get_ref() {
                return Err((self.err)(
                    b.span(),
                    format!("{what}.stop"),
                    "must be after start".into(),
                ));
            }
        }
        Ok(())
    }

    /// A client's node name must be free; `what` is its section ("producer[0]").
    fn claim_name(
        &mut self,
        name: String,
        span: Range<usize>,
        what: &str,
    ) -> Result<(), ScenarioError> {
        if self.names.insert(name.clone(), span.clone()).is_some() {
            return Err((self.err)(
                span,
                format!("{what}.name"),
                format!("the name {name:?} is taken"),
            ));
        }
        Ok(())
    }

    /// A field that names one node: a node name or a role naming one node.
    fn check_node(&self, n: &Spanned<String>, field: String) -> Result<(), ScenarioError> {
        self.check_node_in(n, field, false)
    }

    /// A node name, "controller" or a role. `several`: the field may name several nodes at
    /// once (replicas:TOPIC/P).
    fn check_node_in(
        &self,
        n: &Spanned<String>,
        field: String,
        several: bool,
    ) -> Result<(), ScenarioError> {
        let err = self.err;
        let name = n.get_ref();
        if name == "controller" {
            if self.controllers == 0 {
                return Err(err(
                    n.span(),
                    field,
                    "the role \"controller\" needs cluster.controllers > 0".into(),
                ));
            }
            return Ok(());
        }
        let role = ROLE_PREFIXES
            .into_iter()
            .find_map(|prefix| name.strip_prefix(prefix).map(|rest| (prefix, rest)));
        if let Some((prefix, role)) = role {
            return self.check_role(n, field, several, prefix, role);
        }
        if name.starts_with("coordinator-followers:") {
            if !several {
                return Err(err(
                    n.span(),
                    field,
                    "coordinator-followers:GROUP names several nodes: use it in `nodes` or `groups`"
                        .into(),
                ));
            }
            if self.brokers < 2 {
                return Err(err(
                    n.span(),
                    field,
                    "one broker: __consumer_offsets has no follower".into(),
                ));
            }
        }
        if let Some(group) = name
            .strip_prefix("coordinator:")
            .or_else(|| name.strip_prefix("coordinator-followers:"))
        {
            if !self.groups.contains(group) {
                return Err(err(
                    n.span(),
                    field,
                    format!(
                        "no consumer joins group {group:?} (groups: {:?})",
                        self.groups
                    ),
                ));
            }
            return Ok(());
        }
        if !self.names.contains_key(name) {
            let known: Vec<&String> = self.names.keys().collect();
            return Err(err(
                n.span(),
                field,
                format!("no node is named {name:?} (known: {known:?})"),
            ));
        }
        Ok(())
    }

    /// A role, `prefix` + `role` ("leader:" + "orders/0"): a topic and a partition it has.
    fn check_role(
        &self,
        n: &Spanned<String>,
        field: String,
        several: bool,
        prefix: &str,
        role: &str,
    ) -> Result<(), ScenarioError> {
        let err = self.err;
        let name = n.get_ref();
        if matches!(prefix, "replicas:" | "followers:") && !several {
            return Err(err(
                n.span(),
                field,
                format!("{prefix}TOPIC/P names several nodes: use it in `nodes` or `groups`"),
            ));
        }
        let (topic, partition) = role.rsplit_once('/').ok_or_else(|| {
            err(
                n.span(),
                field.clone(),
                format!("a role is written {prefix}TOPIC/PARTITION, got {name:?}"),
            )
        })?;
        if matches!(prefix, "follower:" | "followers:")
            && self.topic_rf.get(topic).is_some_and(|rf| *rf < 2)
        {
            return Err(err(
                n.span(),
                field,
                format!("topic {topic} has replication factor 1: it has no follower"),
            ));
        }
        let count = self.topic_partitions.get(topic).ok_or_else(|| {
            err(
                n.span(),
                field.clone(),
                format!("no [[topic]] is named {topic:?}"),
            )
        })?;
        let p: i32 = partition.parse().map_err(|_| {
            err(
                n.span(),
                field.clone(),
                format!("bad partition in {name:?}"),
            )
        })?;
        if !(0..*count).contains(&p) {
            return Err(err(
                n.span(),
                field,
                format!("topic {topic} has no partition {p}"),
            ));
        }
        Ok(())
    }
}
