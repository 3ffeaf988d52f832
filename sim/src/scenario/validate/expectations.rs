//! `[expect]` and `must_see`: what the run may, must not and must show. Every key of
//! `[expect]` is an anomaly the checkers know or `invariant`; every `must_see` entry names
//! event kinds the run records.

use super::Err;
use crate::history::Anomaly;
use crate::scenario::{Expectation, ScenarioError, INVARIANT, LIVENESS, MUST_SEE_KINDS};
use std::collections::BTreeMap;
use toml::Spanned;

/// What `[expect]` says: each anomaly named, broken invariants, a liveness failure.
pub(super) struct Expectations {
    pub(super) anomalies: BTreeMap<Anomaly, Expectation>,
    pub(super) invariant: Expectation,
    pub(super) liveness: Expectation,
}

/// `[expect]`: the expectation of each anomaly named, of broken invariants and of a
/// liveness failure (both forbidden unless the file says otherwise).
pub(super) fn expect(
    expect: &BTreeMap<String, Spanned<Expectation>>,
    err: Err,
) -> Result<Expectations, ScenarioError> {
    let mut anomalies = BTreeMap::new();
    let mut invariant_expectation = Expectation::Forbidden;
    let mut liveness_expectation = Expectation::Forbidden;
    for (key, value) in expect {
        if key == INVARIANT {
            invariant_expectation = *value.get_ref();
            continue;
        }
        if key == LIVENESS {
            liveness_expectation = *value.get_ref();
            continue;
        }
        let anomaly = Anomaly::ALL
            .into_iter()
            .find(|a| a.name() == key)
            .ok_or_else(|| {
                let mut known: Vec<&str> = Anomaly::ALL.iter().map(|a| a.name()).collect();
                known.push(INVARIANT);
                known.push(LIVENESS);
                err(
                    value.span(),
                    format!("expect.{key}"),
                    format!("unknown anomaly (known: {})", known.join(", ")),
                )
            })?;
        anomalies.insert(anomaly, *value.get_ref());
    }
    Ok(Expectations {
        anomalies,
        invariant: invariant_expectation,
        liveness: liveness_expectation,
    })
}

/// `must_see`: every alternative of every entry starts with a known event kind.
pub(super) fn must_see(entries: &[Spanned<String>], err: Err) -> Result<(), ScenarioError> {
    for (i, entry) in entries.iter().enumerate() {
        for alternative in entry.get_ref().split(" | ") {
            let kind = alternative.split(':').next().unwrap_or("").trim();
            if !MUST_SEE_KINDS.contains(&kind) {
                return Err(err(
                    entry.span(),
                    format!("must_see[{i}]"),
                    format!(
                        "unknown event kind {kind:?} (known: {})",
                        MUST_SEE_KINDS.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}
