//! `[nemesis]`: the fault kinds it may draw (a cut needs two nodes), the nodes it may
//! target, and a mean interval longer than zero.

use super::Context;
use crate::scenario::{FaultKind, NemesisSpec, ScenarioError};
use toml::Spanned;

/// `clients`: the scenario's producers and consumers.
pub(super) fn validate(
    nemesis: Option<&NemesisSpec>,
    clients: usize,
    context: &Context,
) -> Result<(), ScenarioError> {
    let err = context.err;
    let Some(n) = nemesis else {
        return Ok(());
    };
    if let Some(kinds) = &n.kinds {
        if kinds.get_ref().is_empty() {
            return Err(err(
                kinds.span(),
                "nemesis.kinds".into(),
                "lists no fault kind".into(),
            ));
        }
        for k in kinds.get_ref() {
            if matches!(k, FaultKind::Partition | FaultKind::Clog) && context.brokers + clients < 2
            {
                return Err(err(
                    kinds.span(),
                    "nemesis.kinds".into(),
                    format!("{} needs two nodes", k.name()),
                ));
            }
        }
    }
    if let Some(t) = &n.targets {
        for name in t.get_ref() {
            context.check_node(
                &Spanned::new(t.span(), name.clone()),
                "nemesis.targets".into(),
            )?;
        }
    }
    if n.interval.get_ref().0.is_zero() {
        return Err(err(
            n.interval.span(),
            "nemesis.interval".into(),
            "must be longer than 0s".into(),
        ));
    }
    Ok(())
}
