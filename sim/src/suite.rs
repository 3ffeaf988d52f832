//! Suites and coverage. A suite is a folder of scenarios; its `suite.toml` says what the
//! suite is for and which coverage probes (`faultline::probe`) its scenarios must reach
//! between them: a sweep of the suite fails when one of them was reached by no seed, so a
//! scenario that drifts away from the mechanism it was written for is noticed.
//!
//! ```toml
//! description = "Single-broker durability"
//! must_reach = ["log.recovery-cut-tail", "producer.duplicate"]
//! ```
//!
//! [`Coverage`] adds up, per probe, how many seeds reached it (`cargo lab coverage`).

use crate::scenario::ScenarioError;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The file that makes a folder a suite.
pub const SUITE_FILE: &str = "suite.toml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteToml {
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    must_reach: Vec<Spanned<String>>,
}

/// A validated suite declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suite {
    /// The suite's folder: every scenario file below it belongs to it.
    pub dir: PathBuf,
    pub file: PathBuf,
    /// Probe names the suite must reach (each declared in `faultline::probe::ALL`).
    pub must_reach: Vec<String>,
}

/// The suite declared in `dir`, if `dir` has a `suite.toml`.
pub fn load(dir: &Path) -> Result<Option<Suite>, ScenarioError> {
    let file = dir.join(SUITE_FILE);
    if !file.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&file).map_err(|e| ScenarioError {
        file: file.clone(),
        line: 1,
        field: "(file)".into(),
        message: e.to_string(),
    })?;
    parse(dir, &file, &text).map(Some)
}

/// Parse and validate a suite file's text.
pub fn parse(dir: &Path, file: &Path, text: &str) -> Result<Suite, ScenarioError> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let raw: SuiteToml = toml::from_str(text).map_err(|e| ScenarioError {
        file: file.to_path_buf(),
        line: e.span().map_or(1, |s| line_of(s.start)),
        field: "(document)".into(),
        message: e.message().trim().to_string(),
    })?;
    let mut must_reach = Vec::new();
    for (i, name) in raw.must_reach.iter().enumerate() {
        if faultline::probe::by_name(name.get_ref()).is_none() {
            let known: Vec<&str> = faultline::probe::ALL.iter().map(|p| p.name).collect();
            return Err(ScenarioError {
                file: file.to_path_buf(),
                line: line_of(name.span().start),
                field: format!("must_reach[{i}]"),
                message: format!(
                    "unknown probe {:?} (known: {})",
                    name.get_ref(),
                    known.join(", ")
                ),
            });
        }
        must_reach.push(name.get_ref().clone());
    }
    Ok(Suite {
        dir: dir.to_path_buf(),
        file: file.to_path_buf(),
        must_reach,
    })
}

/// Every suite a run covers whole: each folder named on the command line, or below one,
/// that holds a `suite.toml`. A suite's must_reach applies only when all of it runs: one
/// scenario file picked out of a suite is not held to the suite's promise.
pub fn suites_in(paths: &[PathBuf]) -> Result<Vec<Suite>, ScenarioError> {
    let mut dirs = BTreeSet::new();
    for path in paths.iter().filter(|p| p.is_dir()) {
        let mut stack = vec![path.clone()];
        while let Some(dir) = stack.pop() {
            dirs.insert(dir.clone());
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if entry.path().is_dir() {
                        stack.push(entry.path());
                    }
                }
            }
        }
    }
    let mut suites = Vec::new();
    for dir in dirs {
        if let Some(suite) = load(&dir)? {
            suites.push(suite);
        }
    }
    Ok(suites)
}

/// How many seeds reached each probe, over a set of runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    pub seeds: u64,
    /// Probe name -> seeds that reached it at least once.
    pub reached: BTreeMap<String, u64>,
}

impl Coverage {
    /// Count one seed that reached `probes` (names with a count above zero).
    pub fn add<'a>(&mut self, probes: impl IntoIterator<Item = &'a String>) {
        self.seeds += 1;
        for name in probes {
            *self.reached.entry(name.clone()).or_default() += 1;
        }
    }

    /// The probes of `suite.must_reach` that no seed reached.
    pub fn missing<'a>(&self, suite: &'a Suite) -> Vec<&'a str> {
        suite
            .must_reach
            .iter()
            .filter(|p| !self.reached.contains_key(*p))
            .map(|p| p.as_str())
            .collect()
    }

    /// A Markdown table of every declared probe: seeds that reached it, and its meaning.
    pub fn table(&self) -> String {
        let mut out =
            String::from("| probe | seeds reaching it | what it means |\n|---|---|---|\n");
        for probe in faultline::probe::ALL {
            let n = self.reached.get(probe.name).copied().unwrap_or(0);
            out.push_str(&format!(
                "| `{}` | {n} of {} | {} |\n",
                probe.name, self.seeds, probe.meaning
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_probes_are_named_with_their_line() {
        let text =
            "description = \"x\"\nmust_reach = [\n  \"log.segment-roll\",\n  \"log.nope\",\n]\n";
        let err = parse(Path::new("s"), Path::new("s/suite.toml"), text).unwrap_err();
        assert_eq!(err.line, 4);
        assert_eq!(err.field, "must_reach[1]");
        assert!(err.message.contains("unknown probe \"log.nope\""), "{err}");
        let err = parse(
            Path::new("s"),
            Path::new("s/suite.toml"),
            "must_reech = []\n",
        )
        .unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.message.contains("unknown field"), "{err}");
    }

    #[test]
    fn coverage_counts_seeds_and_finds_what_a_suite_missed() {
        let suite = parse(
            Path::new("s"),
            Path::new("s/suite.toml"),
            "must_reach = [\"log.segment-roll\", \"replica.isr-shrink\"]\n",
        )
        .unwrap();
        let mut coverage = Coverage::default();
        coverage.add(&["log.segment-roll".to_string()]);
        coverage.add(&[
            "log.segment-roll".to_string(),
            "raft.election-won".to_string(),
        ]);
        assert_eq!(coverage.seeds, 2);
        assert_eq!(coverage.reached["log.segment-roll"], 2);
        assert_eq!(coverage.missing(&suite), vec!["replica.isr-shrink"]);
        let table = coverage.table();
        assert!(table.contains("| `log.segment-roll` | 2 of 2 |"), "{table}");
        assert!(
            table.contains("| `replica.isr-shrink` | 0 of 2 |"),
            "{table}"
        );
    }
}
