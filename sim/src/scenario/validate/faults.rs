//! `[[fault]]`: each fault inside the run, with exactly the fields its kind takes, naming
//! nodes, roles and groups that exist, and only the targets its kind can act on (a clean
//! stop needs a broker, a kill a broker or a controller, and so on).

use super::{Context, ROLE_PREFIXES};
use crate::scenario::{ConsumerSpec, FaultKind, FaultSpec, ScenarioError, FAULT_NODES_MAX};
use std::ops::Range;
use toml::Spanned;

pub(super) fn validate(
    faults: &[FaultSpec],
    consumers: &[ConsumerSpec],
    context: &Context,
) -> Result<(), ScenarioError> {
    for (i, f) in faults.iter().enumerate() {
        let fault = Fault {
            context,
            f,
            what: format!("fault[{i}]"),
            kind: *f.kind.get_ref(),
        };
        fault.timing()?;
        fault.targets()?;
        fault.parameters(consumers)?;
        fault.references()?;
        fault.kind_rules()?;
    }
    Ok(())
}

/// Nodes that can be killed or crashed: brokers, controllers and roles naming them.
fn killable(name: &str) -> bool {
    name.starts_with("broker-")
        || name.starts_with("controller")
        || name.starts_with("coordinator:")
        || name.starts_with("coordinator-followers:")
        || ROLE_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// One `[[fault]]` entry under check.
struct Fault<'a> {
    context: &'a Context<'a>,
    f: &'a FaultSpec,
    /// Its section: "fault[2]".
    what: String,
    kind: FaultKind,
}

impl Fault<'_> {
    fn error(&self, span: Range<usize>, field: &str, message: String) -> ScenarioError {
        (self.context.err)(span, format!("{}.{field}", self.what), message)
    }

    /// A field this kind of fault takes must be there, and one it does not take must not.
    fn field_present(
        &self,
        name: &str,
        present: bool,
        wanted: bool,
        span: Range<usize>,
    ) -> Result<(), ScenarioError> {
        if present && !wanted {
            return Err(self.error(
                span,
                name,
                format!("does not apply to a {} fault", self.kind.name()),
            ));
        }
        if !present && wanted {
            return Err(self.error(
                self.f.kind.span(),
                name,
                format!("a {} fault needs {name}", self.kind.name()),
            ));
        }
        Ok(())
    }

    /// `at`: inside the run.
    fn timing(&self) -> Result<(), ScenarioError> {
        let f = self.f;
        if f.at.get_ref().0 > self.context.duration {
            return Err(self.error(
                f.at.span(),
                "at",
                "is after the end of the run (duration)".into(),
            ));
        }
        if let Some(after) = &f.after {
            if faultline::probe::by_name(after.get_ref()).is_none() {
                let known: Vec<&str> = faultline::probe::ALL.iter().map(|p| p.name).collect();
                return Err(self.error(
                    after.span(),
                    "after",
                    format!(
                        "unknown probe {:?} (known: {})",
                        after.get_ref(),
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `node`, `nodes` and `restart_stagger`: one node, or several for kill and crash.
    fn targets(&self) -> Result<(), ScenarioError> {
        let (f, kind) = (self.f, self.kind);
        let several = matches!(kind, FaultKind::Kill | FaultKind::Crash);
        if let (Some(_), Some(nodes)) = (&f.node, &f.nodes) {
            return Err(self.error(
                nodes.span(),
                "nodes",
                "name the fault's nodes with node or with nodes, not both".into(),
            ));
        }
        if several && f.node.is_none() && f.nodes.is_none() {
            return Err(self.error(
                f.kind.span(),
                "node",
                format!("a {} fault needs node (or nodes)", kind.name()),
            ));
        }
        self.field_present(
            "nodes",
            f.nodes.is_some(),
            several && f.node.is_none(),
            f.nodes.as_ref().map_or(0..0, |n| n.span()),
        )?;
        self.field_present(
            "node",
            f.node.is_some(),
            kind.takes_node() && f.nodes.is_none(),
            f.node.as_ref().map_or(0..0, |n| n.span()),
        )?;
        if let Some(nodes) = &f.nodes {
            self.several_nodes(nodes)?;
        }
        if let Some(stagger) = &f.restart_stagger {
            if f.nodes.is_none() {
                return Err(self.error(
                    stagger.span(),
                    "restart_stagger",
                    "staggers the restarts of several nodes: name them with nodes".into(),
                ));
            }
        }
        Ok(())
    }

    /// `nodes`: a bounded list of brokers, controllers and roles naming them.
    fn several_nodes(&self, nodes: &Spanned<Vec<String>>) -> Result<(), ScenarioError> {
        if nodes.get_ref().is_empty() || nodes.get_ref().len() > FAULT_NODES_MAX {
            return Err(self.error(
                nodes.span(),
                "nodes",
                format!("names 1..={FAULT_NODES_MAX} nodes"),
            ));
        }
        for name in nodes.get_ref() {
            self.context.check_node_in(
                &Spanned::new(nodes.span(), name.clone()),
                format!("{}.nodes", self.what),
                true,
            )?;
            if !killable(name) {
                return Err(self.error(
                    nodes.span(),
                    "nodes",
                    format!("only brokers and controllers can be killed, not {name:?}"),
                ));
            }
        }
        Ok(())
    }

    /// The kind's own fields: `groups`, `from` and `to`, `latency`, `rate`, `offset`,
    /// `jitter`, `one_way`.
    fn parameters(&self, consumers: &[ConsumerSpec]) -> Result<(), ScenarioError> {
        let (f, kind) = (self.f, self.kind);
        self.field_present(
            "groups",
            f.groups.is_some(),
            kind == FaultKind::Partition,
            f.groups.as_ref().map_or(0..0, |g| g.span()),
        )?;
        // A latency fault acts on one link when it names `from` and `to`, else on the
        // whole network; a clog always names its link.
        if kind == FaultKind::Latency && f.from.is_some() != f.to.is_some() {
            let span = f.from.as_ref().or(f.to.as_ref()).map_or(0..0, |n| n.span());
            return Err(self.error(
                span,
                "from",
                "a latency fault on one link names both from and to".into(),
            ));
        }
        let link = kind == FaultKind::Clog || (kind == FaultKind::Latency && f.from.is_some());
        self.field_present(
            "from",
            f.from.is_some(),
            link,
            f.from.as_ref().map_or(0..0, |g| g.span()),
        )?;
        self.field_present(
            "to",
            f.to.is_some(),
            link,
            f.to.as_ref().map_or(0..0, |g| g.span()),
        )?;
        self.field_present(
            "latency",
            f.latency.is_some(),
            matches!(kind, FaultKind::Latency | FaultKind::DiskSlowFsync),
            f.latency.as_ref().map_or(0..0, |g| g.span()),
        )?;
        self.field_present(
            "rate",
            f.rate.is_some(),
            kind == FaultKind::Loss,
            f.rate.as_ref().map_or(0..0, |g| g.span()),
        )?;
        let clock = matches!(kind, FaultKind::ClockSkew | FaultKind::ClockJump);
        self.field_present(
            "offset",
            f.offset.is_some(),
            clock,
            f.offset.as_ref().map_or(0..0, |g| g.span()),
        )?;
        self.parameter_values(clock, consumers)
    }

    /// The values of the kind's fields: a loss rate, a clock to move, and the fields only
    /// one kind takes.
    fn parameter_values(
        &self,
        clock: bool,
        consumers: &[ConsumerSpec],
    ) -> Result<(), ScenarioError> {
        let (f, kind) = (self.f, self.kind);
        if let Some(rate) = &f.rate {
            if !(*rate.get_ref() > 0.0 && *rate.get_ref() < 1.0) {
                return Err(self.error(
                    rate.span(),
                    "rate",
                    "must be between 0 and 1 (exclusive)".into(),
                ));
            }
        }
        if clock {
            if let Some(n) = &f.node {
                if consumers
                    .iter()
                    .enumerate()
                    .any(|(ci, c)| c.node_name(ci) == *n.get_ref())
                {
                    return Err(self.error(
                        n.span(),
                        "node",
                        "a consumer has no clock that matters: skew a broker or a producer".into(),
                    ));
                }
            }
        }
        if let Some(jitter) = f.jitter.as_ref().filter(|_| kind != FaultKind::Latency) {
            return Err(self.error(
                jitter.span(),
                "jitter",
                format!("does not apply to a {} fault", kind.name()),
            ));
        }
        if f.one_way && kind != FaultKind::Partition {
            return Err(self.error(
                f.kind.span(),
                "one_way",
                "only a partition fault can be one-way".into(),
            ));
        }
        Ok(())
    }

    /// `node`, `from`, `to` and `groups` name nodes or roles that exist.
    fn references(&self) -> Result<(), ScenarioError> {
        let f = self.f;
        for (n, name) in [(&f.node, "node"), (&f.from, "from"), (&f.to, "to")] {
            if let Some(n) = n {
                self.context
                    .check_node(n, format!("{}.{name}", self.what))?;
            }
        }
        let Some(groups) = &f.groups else {
            return Ok(());
        };
        if groups.get_ref().len() != 2 || groups.get_ref().iter().any(|g| g.is_empty()) {
            return Err(self.error(
                groups.span(),
                "groups",
                "a partition has exactly two non-empty groups".into(),
            ));
        }
        for (g, group) in groups.get_ref().iter().enumerate() {
            for name in group {
                if name == "others" {
                    if groups.get_ref()[1 - g].iter().any(|n| n == "others") {
                        return Err(self.error(
                            groups.span(),
                            "groups",
                            "\"others\" means every node not in the other group: only one group can use it".into(),
                        ));
                    }
                    continue;
                }
                self.context.check_node_in(
                    &Spanned::new(groups.span(), name.clone()),
                    format!("{}.groups", self.what),
                    true,
                )?;
            }
        }
        Ok(())
    }

    /// What the kind can act on: a clean stop needs a broker, a kill, crash or torn write
    /// a broker or a controller, and a reset cannot take a controller.
    fn kind_rules(&self) -> Result<(), ScenarioError> {
        let (f, kind) = (self.f, self.kind);
        if kind == FaultKind::Stop {
            if let Some(n) = &f.node {
                let broker = |name: &str| {
                    name.starts_with("broker-")
                        || ["leader:", "follower:", "coordinator:"]
                            .iter()
                            .any(|p| name.starts_with(p))
                };
                if !broker(n.get_ref()) {
                    return Err(self.error(
                        n.span(),
                        "node",
                        "only brokers can be stopped cleanly (a broker name, leader: or follower:)"
                            .into(),
                    ));
                }
            }
        }
        if matches!(
            kind,
            FaultKind::Kill | FaultKind::Crash | FaultKind::DiskTornWrite
        ) {
            if let Some(n) = &f.node {
                let member = self.context.group_members.contains(n.get_ref());
                if member && kind != FaultKind::Kill {
                    return Err(self.error(
                        n.span(),
                        "node",
                        "a group member has no disk: kill it (it restarts as a new process)".into(),
                    ));
                }
                if !killable(n.get_ref()) && !member {
                    return Err(self.error(
                        n.span(),
                        "node",
                        "only brokers, controllers and group members can be killed".into(),
                    ));
                }
            }
        }
        if kind == FaultKind::Reset {
            if let Some(n) = f
                .node
                .as_ref()
                .filter(|n| n.get_ref().starts_with("controller"))
            {
                return Err(self.error(
                    n.span(),
                    "node",
                    "the lab cannot reset a controller's connections without closing its listener: isolate it instead".into(),
                ));
            }
        }
        Ok(())
    }
}
