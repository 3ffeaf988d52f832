//! BUGGIFY (FoundationDB's name): seeded perturbations at points where real systems vary
//! within what the code must tolerate anyway: a segment rolling at an odd size, a
//! checkpoint or snapshot that a crash would have lost, a small fetch, a timer firing a
//! little early or late within its documented bounds (`buggify_duration!`), files whose
//! unsynced writes reach the platter in another order than they were made (a power loss
//! keeping one file's unsynced tail and losing another's). Each perturbation is legal; the
//! point is to drive the code down paths a tidy simulation never takes.
//!
//! `buggify!()` is `false` outside the simulated build (`--cfg madsim`) and whenever the
//! lab has not switched BUGGIFY on for the run. When it is on, each site (a source
//! location) is enabled for the whole run with probability 1/4, decided the first time the
//! site is reached, and an enabled site fires with probability 1/4 each time (or the
//! probability given: `buggify!(0.05)`). Every draw comes from a generator seeded by the
//! lab from the run's seed, so a run replays exactly; the draws live in the lab's
//! per-thread slot (`observe::HOOKS`).

use crate::mix::SplitMix64;
use crate::observe::HOOKS;
use std::collections::BTreeMap;

/// Per-run BUGGIFY state: which sites are enabled, how often each fired.
pub(crate) struct Buggify {
    rng: SplitMix64,
    sites: BTreeMap<&'static str, Site>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Site {
    enabled: bool,
    fired: u64,
}

/// What a run's BUGGIFY did, per site: enabled, and how often it fired.
pub type Report = BTreeMap<&'static str, (bool, u64)>;

/// Whether to perturb here. False outside the simulated build and when BUGGIFY is off.
#[macro_export]
macro_rules! buggify {
    () => {
        $crate::buggify!(0.25)
    };
    ($probability:expr) => {
        cfg!(madsim) && $crate::buggify::fire(concat!(file!(), ":", line!()), $probability)
    };
}

/// A timer's period or deadline, perturbed within its bounds: when the site fires,
/// `nominal` times a factor drawn in `[low, high]`, else `nominal`. For timers whose
/// contract is a bound ("at most", "about every"), never one that must be exact.
#[macro_export]
macro_rules! buggify_duration {
    ($nominal:expr, $low:expr, $high:expr) => {{
        let nominal: ::std::time::Duration = $nominal;
        if $crate::buggify!() {
            nominal.mul_f64($crate::buggify::between($low, $high))
        } else {
            nominal
        }
    }};
}

/// A number drawn in `[low, high]` from the run's BUGGIFY generator (`low` when off).
pub fn between(low: f64, high: f64) -> f64 {
    debug_assert!(low <= high && low >= 0.0);
    HOOKS.with(|h| {
        h.borrow_mut()
            .buggify
            .as_mut()
            .map_or(low, |state| low + state.rng.unit() * (high - low))
    })
}

/// The decision at `site` (see the module docs).
pub fn fire(site: &'static str, probability: f64) -> bool {
    HOOKS.with(|h| {
        let mut hooks = h.borrow_mut();
        let Some(state) = hooks.buggify.as_mut() else {
            return false;
        };
        let enabled = match state.sites.get(site) {
            Some(s) => s.enabled,
            None => {
                let enabled = state.rng.unit() < 0.25;
                state.sites.insert(site, Site { enabled, fired: 0 });
                enabled
            }
        };
        if !enabled || state.rng.unit() >= probability {
            return false;
        }
        state.sites.get_mut(site).expect("inserted above").fired += 1;
        true
    })
}

/// Switch BUGGIFY on for this thread's run, seeded.
pub fn enable(seed: u64) {
    HOOKS.with(|h| {
        h.borrow_mut().buggify = Some(Buggify {
            rng: SplitMix64::new(seed),
            sites: BTreeMap::new(),
        })
    });
}

/// Switch it off and return what it did.
pub fn disable() -> Report {
    HOOKS.with(|h| {
        h.borrow_mut()
            .buggify
            .take()
            .map(|b| {
                b.sites
                    .into_iter()
                    .map(|(site, s)| (site, (s.enabled, s.fired)))
                    .collect()
            })
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(seed: u64) -> (Vec<bool>, Report) {
        enable(seed);
        let fired = (0..200)
            .map(|i| fire(if i % 2 == 0 { "a" } else { "b" }, 0.5))
            .collect();
        (fired, disable())
    }

    #[test]
    fn off_unless_enabled_and_seeded_when_on() {
        assert!(!fire("a", 1.0), "off by default");
        assert_eq!(draws(3), draws(3), "one seed, one sequence");
        // Over many seeds some sites are enabled and fire, others never do.
        let reports: Vec<Report> = (0..40).map(|s| draws(s).1).collect();
        assert!(reports.iter().any(|r| r["a"].0 && r["a"].1 > 0));
        assert!(reports.iter().any(|r| !r["a"].0 && r["a"].1 == 0));
        assert!(!fire("a", 1.0), "disable switches it off");
    }

    #[test]
    fn perturbed_durations_stay_within_their_bounds() {
        let nominal = std::time::Duration::from_millis(1000);
        assert_eq!(between(0.5, 2.0), 0.5, "off: the low end, no draw");
        let mut draws = Vec::new();
        let mut unchanged = std::collections::BTreeSet::new();
        for seed in 0..40 {
            enable(seed);
            for _ in 0..50 {
                draws.push(between(0.5, 2.0));
                let d = buggify_duration!(nominal, 0.5, 2.0);
                assert!(d >= nominal / 2 && d <= nominal * 2, "{d:?}");
                unchanged.insert(d == nominal);
            }
            disable();
        }
        assert!(draws.iter().all(|x| (0.5..=2.0).contains(x)));
        assert!(draws.iter().any(|x| *x < 0.8) && draws.iter().any(|x| *x > 1.7));
        // The macro perturbs only in the simulated build.
        let want = if cfg!(madsim) { 2 } else { 1 };
        assert_eq!(
            unchanged.len(),
            want,
            "some draws perturb, some do not (lab only)"
        );
    }
}
