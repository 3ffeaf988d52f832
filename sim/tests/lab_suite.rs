//! The lab suite as one test, for the lab-only mutation score (`tests/lab/mutants`):
//! every scenario of smoke, replication and cluster at its own seeds (what `cargo lab
//! run` runs; `FAULTLINE_SUITE_SEEDS=N` runs N each instead) must pass, and each suite must reach the coverage probes it declares.
//! cargo-mutants runs it as the only test, so a mutant counts as caught only when the lab
//! itself sees it (not the unit tests). Compiled only with the `lab-suite-test` feature
//! in the simulated build; CI runs the lab through `cargo lab run` instead.
#![cfg(madsim)]

use faultline_sim::runner::run_seed;
use faultline_sim::scenario;
use faultline_sim::suite::{self, Coverage};
use std::path::{Path, PathBuf};

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
    let mut failures = Vec::new();
    for name in ["smoke", "replication", "cluster"] {
        let dir = root.join(name);
        let declared = suite::load(&dir).unwrap().expect("a suite.toml");
        let mut coverage = Coverage::default();
        for file in files(&dir) {
            let s = scenario::load(&file).unwrap();
            for seed in 1..=seeds_override.unwrap_or(s.seeds) {
                let outcome = run_seed(&s, seed);
                let probes: Vec<String> = outcome.probes.keys().cloned().collect();
                coverage.add(&probes);
                if !outcome.failures.is_empty() {
                    failures.push(format!(
                        "{} seed {seed}: {}",
                        s.name,
                        outcome.failures.join("; ")
                    ));
                }
            }
        }
        let missing = coverage.missing(&declared);
        if !missing.is_empty() {
            failures.push(format!(
                "{name}: probes reached by no seed: {}",
                missing.join(", ")
            ));
        }
    }
    assert!(failures.is_empty(), "the lab saw:\n{}", failures.join("\n"));
}
