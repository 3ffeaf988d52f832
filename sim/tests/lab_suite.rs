//! The lab suite as one test, for the lab-only mutation score (`tests/lab/mutants`):
//! every scenario of smoke, replication, cluster and groups at its own seeds (what `cargo
//! lab run` runs; `FAULTLINE_SUITES=groups` picks suites; `FAULTLINE_SUITE_SEEDS=N` runs N each instead) must pass, and each suite
//! must reach the coverage probes it declares. cargo-mutants runs it as the only test, so a
//! mutant counts as caught only when the lab itself sees it (not the unit tests).
//! Seeds run on every core; the first failure stops the rest (a caught mutant need not
//! pay for the whole suite). Compiled only with the `lab-suite-test` feature in the
//! simulated build; CI runs the lab through `cargo lab run` instead.
#![cfg(madsim)]

use faultline_sim::runner::run_seed;
use faultline_sim::scenario::{self, Scenario};
use faultline_sim::suite::{self, Coverage};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// The suites `cargo lab run` runs; `FAULTLINE_SUITES=groups` (comma-separated) picks some.
const SUITES: [&str; 4] = ["smoke", "replication", "cluster", "groups"];

fn suites() -> Vec<String> {
    match std::env::var("FAULTLINE_SUITES") {
        Ok(list) => list.split(',').map(str::to_string).collect(),
        Err(_) => SUITES.iter().map(|s| s.to_string()).collect(),
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "toml")
                && p.file_name().is_some_and(|n| n != suite::SUITE_FILE)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_suite_passes_and_reaches_its_probes() {
    let seeds_override: Option<u64> = std::env::var("FAULTLINE_SUITE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    // (suite index, scenario) for every file, then one work item per seed.
    let mut scenarios: Vec<(usize, Scenario)> = Vec::new();
    let suites = suites();
    for (i, name) in suites.iter().enumerate() {
        for file in files(&root.join(name)) {
            scenarios.push((i, scenario::load(&file).unwrap()));
        }
    }
    let work: Vec<(usize, u64)> = scenarios
        .iter()
        .enumerate()
        .flat_map(|(k, (_, s))| (1..=seeds_override.unwrap_or(s.seeds)).map(move |seed| (k, seed)))
        .collect();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failures = Mutex::new(Vec::new());
    let coverage: Mutex<Vec<Coverage>> =
        Mutex::new(suites.iter().map(|_| Coverage::default()).collect());
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let Some(&(k, seed)) = work.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return;
                    };
                    let (suite_index, s) = &scenarios[k];
                    let outcome = run_seed(s, seed);
                    let probes: Vec<String> = outcome.probes.keys().cloned().collect();
                    coverage.lock().unwrap()[*suite_index].add(&probes);
                    if !outcome.failures.is_empty() {
                        stop.store(true, Ordering::Relaxed);
                        failures.lock().unwrap().push(format!(
                            "{} seed {seed}: {}",
                            s.name,
                            outcome.failures.join("; ")
                        ));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    if failures.is_empty() {
        let coverage = coverage.into_inner().unwrap();
        for (name, covered) in suites.iter().zip(&coverage) {
            let declared = suite::load(&root.join(name))
                .unwrap()
                .expect("a suite.toml");
            let missing = covered.missing(&declared);
            if !missing.is_empty() {
                failures.push(format!(
                    "{name}: probes reached by no seed: {}",
                    missing.join(", ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "the lab saw:\n{}", failures.join("\n"));
}
