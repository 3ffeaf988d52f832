//! `cargo lab`: run seeded fault scenarios through the simulator, replay one seed, run the
//! guarantees matrix, or measure the simulator's speed. Exit status of `run` and `repro`:
//! 0 every invariant held, 1 a violation, 2 bad input, 3 a liveness failure, 4 a crash, 5 a
//! seed that ran differently twice (`--check-determinism`); with several failing seeds the
//! highest code wins. `matrix`: 0 every cell agrees, 1 one does not, 2 bad input.

#[cfg(madsim)]
mod lab {
    use clap::{Parser, Subcommand};
    use faultline_sim::delivery;
    use faultline_sim::history::Anomaly;
    use faultline_sim::matrix::{self, CellResult, SeedFinding};
    use faultline_sim::outcome::{Outcome, Verdict};
    use faultline_sim::report;
    use faultline_sim::runner::run_seed;
    use faultline_sim::scenario::{self, Scenario};
    use faultline_sim::suite;
    use std::collections::VecDeque;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};

    #[derive(Parser)]
    #[command(name = "cargo lab", about = "Faultline's deterministic simulation lab")]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(clap::Args, Clone)]
    struct SeedArgs {
        /// Run seeds 1..=N of each scenario (default: the file's `seeds`, else 10).
        #[arg(long, conflicts_with_all = ["seed", "seed_range"])]
        seeds: Option<u64>,
        /// Run exactly this seed.
        #[arg(long, conflicts_with = "seed_range")]
        seed: Option<u64>,
        /// Run seeds A..B (B excluded).
        #[arg(long, value_name = "A..B")]
        seed_range: Option<String>,
        /// Seeds run at once, each on its own thread.
        #[arg(long, default_value_t = default_jobs())]
        jobs: usize,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Run scenario files or folders (default: every suite: scenarios/smoke,
        /// scenarios/replication, scenarios/cluster). A folder run whole that has a
        /// suite.toml fails the run when no seed reaches a probe it lists in must_reach.
        Run {
            paths: Vec<PathBuf>,
            #[command(flatten)]
            seeds: SeedArgs,
            /// Run every seed twice and fail on any difference in its trace.
            #[arg(long)]
            check_determinism: bool,
            /// Where run reports go.
            #[arg(long, default_value = "reports")]
            reports: PathBuf,
            /// Write history.jsonl for every seed (`all`), or only for seeds that failed or
            /// found an anomaly, expected or not (`failing`, the default: every suite's
            /// histories together are ~400 MB; `repro` rewrites any seed's exactly).
            #[arg(long, value_enum, default_value = "failing")]
            histories: Histories,
            /// Shrink every failing seed afterwards (as `cargo lab shrink`, at most 100
            /// runs each), writing the smallest scenarios to reports/shrunk/.
            #[arg(long)]
            shrink: bool,
        },
        /// Run scenarios like `run` and print, for every coverage probe, how many seeds
        /// reached it (also written to reports/coverage.md); fails like `run`, and when a
        /// suite's must_reach probe was reached by no seed.
        Coverage {
            paths: Vec<PathBuf>,
            #[command(flatten)]
            seeds: SeedArgs,
            #[arg(long, default_value = "reports")]
            reports: PathBuf,
        },
        /// Shrink a failing seed: turn the nemesis into an explicit timeline, then remove
        /// faults, clients, partitions and time and lower rates while the seed still fails
        /// the same way; write the smallest scenario to reports/shrunk/ with its replay
        /// command.
        Shrink {
            file: PathBuf,
            #[arg(long)]
            seed: u64,
            /// Candidate runs at most.
            #[arg(long, default_value_t = 300)]
            runs: usize,
            #[arg(long, default_value = "reports")]
            reports: PathBuf,
        },
        /// Generate whole scenarios from Kafka's durable recipe (faultline_sim::explore),
        /// run each, and shrink a failing one with proptest's shrinking; failing and shrunk
        /// scenarios go to reports/explore/.
        Explore {
            /// How long to explore (wall time), e.g. "10m", "90s".
            #[arg(long, default_value = "10m")]
            budget: String,
            /// Seeds the generator: the same seed draws the same scenarios.
            #[arg(long, default_value_t = 1)]
            seed: u64,
            /// Candidate runs at most while shrinking one failure.
            #[arg(long, default_value_t = 200)]
            shrink_runs: usize,
            #[arg(long, default_value = "reports")]
            reports: PathBuf,
        },
        /// Replay one seed exactly, print its first violation and write its full trace.
        Repro {
            file: PathBuf,
            #[arg(long)]
            seed: u64,
            #[arg(long, default_value = "reports")]
            reports: PathBuf,
        },
        /// Kafka's durability promise against what the lab finds: acks x min.insync.replicas
        /// x unclean.leader.election.enable x four fault sequences; writes
        /// reports/guarantees.md and each cell's scenario to reports/matrix/<cell>.toml.
        Matrix {
            /// Seeds 1..=N per cell.
            #[arg(long, default_value_t = matrix::SEEDS_DEFAULT)]
            seeds: u64,
            /// Only cells whose name contains this (e.g. `acks-all.misr-2`, `power-loss`,
            /// `before-processing`).
            #[arg(long)]
            cell: Option<String>,
            /// Run every seed twice; a cell whose seed ran differently disagrees.
            #[arg(long)]
            check_determinism: bool,
            /// Seeds run at once, each on its own thread.
            #[arg(long, default_value_t = default_jobs())]
            jobs: usize,
            #[arg(long, default_value = "reports")]
            reports: PathBuf,
        },
        /// Measure simulated seconds per wall second and seeds per minute.
        Bench {
            /// Default: scenarios/bench/standard.toml.
            file: Option<PathBuf>,
            #[arg(long, default_value_t = 5)]
            seeds: u64,
            /// Also run the seeds over this many threads to show the speed-up.
            #[arg(long, default_value_t = default_jobs())]
            jobs: usize,
        },
    }

    #[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
    enum Histories {
        All,
        Failing,
    }

    fn default_jobs() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    pub fn main() -> i32 {
        // Node logs only when asked for (RUST_LOG=info, ...): every node of a run writes to
        // stderr, which is for debugging one seed, not for sweeps.
        if std::env::var_os("RUST_LOG").is_some() {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .init();
        }
        let cli = match Cli::try_parse() {
            Ok(cli) => cli,
            Err(e) => {
                let code = if e.use_stderr() { 2 } else { 0 };
                let _ = e.print();
                return code;
            }
        };
        match cli.command {
            Command::Run {
                paths,
                seeds,
                check_determinism,
                reports,
                histories,
                shrink: shrink_failing,
            } => {
                let options = RunOptions {
                    check_determinism,
                    histories,
                    print_coverage: false,
                    shrink_failing,
                };
                run(paths, seeds, &reports, options)
            }
            Command::Coverage {
                paths,
                seeds,
                reports,
            } => {
                let options = RunOptions {
                    check_determinism: false,
                    histories: Histories::Failing,
                    print_coverage: true,
                    shrink_failing: false,
                };
                run(paths, seeds, &reports, options)
            }
            Command::Repro {
                file,
                seed,
                reports,
            } => repro(&file, seed, &reports),
            Command::Shrink {
                file,
                seed,
                runs,
                reports,
            } => shrink(&file, seed, runs, &reports),
            Command::Explore {
                budget,
                seed,
                shrink_runs,
                reports,
            } => explore(&budget, seed, shrink_runs, &reports),
            Command::Matrix {
                seeds,
                cell,
                check_determinism,
                jobs,
                reports,
            } => run_matrix(seeds, cell.as_deref(), check_determinism, jobs, &reports),
            Command::Bench { file, seeds, jobs } => bench(file, seeds, jobs),
        }
    }

    /// What one seed of a matrix cell showed: loss (lost-write or unseen), and everything
    /// else that went wrong.
    /// What `run` keeps of one seed once its report is written.
    struct SeedSummary {
        seed: u64,
        simulated_ns: u64,
        wall_ms: u64,
        passed: bool,
        reasons: Vec<String>,
        /// What the lab exits with for this seed (0 when it passed).
        exit_code: i32,
        /// The coverage probes the seed reached.
        probes: Vec<String>,
        /// Why the seed's report files could not be written (a full disk, say).
        report_error: Option<String>,
    }

    fn finding(outcome: &Outcome) -> SeedFinding {
        let lost = outcome
            .violations
            .iter()
            .any(|v| matches!(v.anomaly, Anomaly::LostWrite | Anomaly::Unseen));
        let problems: Vec<String> = match outcome.verdict {
            Verdict::Crash | Verdict::Liveness => outcome.failures.clone(),
            _ => outcome
                .failures
                .iter()
                // Loss is judged by the matrix itself.
                .filter(|f| !f.contains("lost-write") && !f.contains("unseen"))
                .cloned()
                .collect(),
        };
        // acks=0: nothing is acknowledged; count the records sent that no read returned.
        let mut sent = std::collections::BTreeSet::new();
        let mut read = std::collections::BTreeSet::new();
        for op in &outcome.history.ops {
            use faultline_sim::history::{OpKind, Phase};
            match (op.kind, op.phase) {
                (OpKind::Send, Phase::Info)
                    if op.error.as_deref().is_some_and(|e| e.starts_with("acks=0")) =>
                {
                    sent.extend(op.values.iter().map(String::as_str))
                }
                (OpKind::Poll, Phase::Ok) => {
                    read.extend(op.records.iter().map(|(_, v)| v.as_str()))
                }
                _ => {}
            }
        }
        let unread = sent.difference(&read).count() as u64;
        SeedFinding {
            seed: outcome.seed,
            completed: !matches!(outcome.verdict, Verdict::Crash | Verdict::Liveness),
            lost,
            unread,
            problems,
        }
    }

    /// Both matrices: the guarantees (acks, min.insync.replicas) and the delivery
    /// semantics of consumer groups. `--cell` picks cells of either by name.
    fn run_matrix(
        seeds: u64,
        filter: Option<&str>,
        twice: bool,
        jobs: usize,
        reports: &Path,
    ) -> i32 {
        if seeds == 0 {
            eprintln!("error: --seeds must be at least 1");
            return 2;
        }
        let delivery_cells: Vec<delivery::Cell> = delivery::cells()
            .into_iter()
            .filter(|c| filter.is_none_or(|f| c.name().contains(f)))
            .collect();
        let guarantees_match = matrix::cells()
            .iter()
            .any(|c| filter.is_none_or(|f| c.name().contains(f)));
        let mut code = 0;
        if guarantees_match || delivery_cells.is_empty() {
            code = run_guarantees(seeds, filter, twice, jobs, reports);
            if code == 2 {
                return 2;
            }
        }
        if !delivery_cells.is_empty() {
            code = code.max(run_delivery(seeds, delivery_cells, twice, jobs, reports));
        }
        code
    }

    /// What one seed of a delivery cell showed.
    fn delivery_finding(outcome: &Outcome) -> delivery::SeedFinding {
        let found = |a: Anomaly| outcome.violations.iter().any(|v| v.anomaly == a);
        let problems = outcome
            .failures
            .iter()
            // Skips and records processed twice are judged by the matrix itself.
            .filter(|f| !f.contains("commit-skip") && !f.contains("processed-twice"))
            .cloned()
            .collect();
        delivery::SeedFinding {
            seed: outcome.seed,
            skipped: found(Anomaly::CommitSkip),
            duplicated: found(Anomaly::ProcessedTwice),
            problems,
        }
    }

    /// A second run of a seed that differs from the first: the problem to report.
    fn differs(first: &Outcome, again: Option<Outcome>) -> Option<String> {
        let again = again?;
        (again.trace_hash != first.trace_hash || again.verdict != first.verdict).then(|| {
            format!(
                "nondeterministic: trace {:016x} then {:016x}",
                first.trace_hash, again.trace_hash
            )
        })
    }

    /// Each cell's scenario written to `dir/<name>.toml` (so any seed replays with `cargo
    /// lab repro`) and loaded back; Err(2) after saying why on stderr.
    fn cell_scenarios(dir: &Path, cells: &[(String, String)]) -> Result<Vec<Scenario>, i32> {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("error: {}: {e}", dir.display());
            return Err(2);
        }
        let mut scenarios = Vec::new();
        for (name, toml) in cells {
            let path = dir.join(format!("{name}.toml"));
            if let Err(e) = std::fs::write(&path, toml) {
                eprintln!("error: {}: {e}", path.display());
                return Err(2);
            }
            match scenario::load(&path) {
                Ok(s) => scenarios.push(s),
                Err(e) => {
                    eprintln!("error: generated cell scenario is invalid: {e}");
                    return Err(2);
                }
            }
        }
        Ok(scenarios)
    }

    /// Seeds 1..=`seeds` of every cell scenario (twice each with `twice`), each seed's
    /// report written, and what `judge` makes of each seed (with a nondeterministic second
    /// run added to its problems by `add_problem`), by cell index.
    fn run_cells<T: Send + 'static>(
        scenarios: &[Scenario],
        seeds: u64,
        (jobs, twice): (usize, bool),
        reports: &Path,
        commit: &str,
        judge: fn(&Outcome) -> T,
        add_problem: fn(&mut T, String),
    ) -> Vec<(usize, T)> {
        let work: Vec<(usize, u64)> = (0..scenarios.len())
            .flat_map(|i| (1..=seeds).map(move |seed| (i, seed)))
            .collect();
        let reports_dir = reports.to_path_buf();
        let commit = commit.to_string();
        run_all(scenarios, work, jobs, twice, move |s, outcome, again| {
            let failed = outcome.verdict != Verdict::Pass;
            if let Err(e) = report::write_with(&reports_dir, s, &outcome, &commit, failed) {
                eprintln!("warning: could not write a report: {e}");
            }
            let mut found = judge(&outcome);
            if let Some(problem) = differs(&outcome, again) {
                add_problem(&mut found, problem);
            }
            found
        })
    }

    fn run_delivery(
        seeds: u64,
        cells: Vec<delivery::Cell>,
        twice: bool,
        jobs: usize,
        reports: &Path,
    ) -> i32 {
        let named: Vec<(String, String)> = cells
            .iter()
            .map(|c| (c.name(), c.scenario_toml()))
            .collect();
        let scenarios = match cell_scenarios(&reports.join("delivery"), &named) {
            Ok(scenarios) => scenarios,
            Err(code) => return code,
        };
        println!(
            "lab matrix (delivery semantics): {} cells x {seeds} seeds over {jobs} jobs",
            cells.len()
        );
        let commit = commit();
        let started = std::time::Instant::now();
        let outcomes = run_cells(
            &scenarios,
            seeds,
            (jobs, twice),
            reports,
            &commit,
            delivery_finding,
            |found, problem| found.problems.push(problem),
        );
        let mut results: Vec<delivery::CellResult> = cells
            .iter()
            .zip(&scenarios)
            .map(|(c, s)| delivery::CellResult {
                cell: *c,
                file: s.path.display().to_string(),
                seeds: Vec::new(),
            })
            .collect();
        for (i, found) in outcomes.iter() {
            results[*i].seeds.push(found.clone());
        }
        print!("{}", delivery::table(&results));
        let path = reports.join("delivery.md");
        match std::fs::write(&path, delivery::markdown(&results, &commit)) {
            Ok(()) => println!(
                "{} runs in {:.1}s wall; report: {}",
                outcomes.len(),
                started.elapsed().as_secs_f64(),
                path.display()
            ),
            Err(e) => eprintln!("warning: {}: {e}", path.display()),
        }
        delivery::exit_code(&results)
    }

    fn run_guarantees(
        seeds: u64,
        filter: Option<&str>,
        twice: bool,
        jobs: usize,
        reports: &Path,
    ) -> i32 {
        let cells: Vec<matrix::Cell> = matrix::cells()
            .into_iter()
            .filter(|c| filter.is_none_or(|f| c.name().contains(f)))
            .collect();
        if cells.is_empty() {
            eprintln!(
                "error: --cell {:?} matches no cell (names look like {})",
                filter.unwrap_or_default(),
                matrix::cells()[0].name()
            );
            return 2;
        }
        let named: Vec<(String, String)> = cells
            .iter()
            .map(|c| (c.name(), c.scenario_toml()))
            .collect();
        let scenarios = match cell_scenarios(&reports.join("matrix"), &named) {
            Ok(scenarios) => scenarios,
            Err(code) => return code,
        };
        println!(
            "lab matrix: {} cells x {seeds} seeds over {jobs} jobs",
            cells.len()
        );
        let commit = commit();
        let started = std::time::Instant::now();
        let outcomes = run_cells(
            &scenarios,
            seeds,
            (jobs, twice),
            reports,
            &commit,
            finding,
            |found, problem| found.problems.push(problem),
        );
        let mut results: Vec<CellResult> = cells
            .iter()
            .zip(&scenarios)
            .map(|(c, s)| CellResult {
                cell: *c,
                file: s.path.display().to_string(),
                seeds: Vec::new(),
            })
            .collect();
        for (i, found) in outcomes.iter() {
            results[*i].seeds.push(found.clone());
        }
        print!("{}", matrix::table(&results));
        let path = reports.join("guarantees.md");
        match std::fs::write(&path, matrix::markdown(&results, &commit)) {
            Ok(()) => println!(
                "{} runs in {:.1}s wall; report: {}",
                outcomes.len(),
                started.elapsed().as_secs_f64(),
                path.display()
            ),
            Err(e) => eprintln!("warning: {}: {e}", path.display()),
        }
        matrix::exit_code(&results)
    }

    /// Scenario files named directly or found (recursively, sorted) in folders.
    fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
        let mut files = Vec::new();
        for path in paths {
            if path.is_dir() {
                let mut stack = vec![path.clone()];
                let mut found = Vec::new();
                while let Some(dir) = stack.pop() {
                    let entries =
                        std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                    for entry in entries {
                        let p = entry.map_err(|e| e.to_string())?.path();
                        if p.is_dir() {
                            stack.push(p);
                        } else if p.extension().is_some_and(|e| e == "toml")
                            && p.file_name().is_none_or(|n| n != suite::SUITE_FILE)
                        {
                            found.push(p);
                        }
                    }
                }
                if found.is_empty() {
                    return Err(format!(
                        "{}: no scenario files (*.toml) in this folder",
                        path.display()
                    ));
                }
                found.sort();
                files.extend(found);
            } else if path.exists() {
                files.push(path.clone());
            } else {
                return Err(format!("{}: no such file or folder", path.display()));
            }
        }
        Ok(files)
    }

    fn seeds_for(scenario: &Scenario, args: &SeedArgs) -> Result<Vec<u64>, String> {
        if let Some(s) = args.seed {
            return Ok(vec![s]);
        }
        if let Some(range) = &args.seed_range {
            let (a, b) = range
                .split_once("..")
                .ok_or_else(|| format!("--seed-range {range:?}: expected A..B"))?;
            let (a, b): (u64, u64) = (
                a.parse()
                    .map_err(|_| format!("--seed-range {range:?}: {a:?} is not a seed"))?,
                b.parse()
                    .map_err(|_| format!("--seed-range {range:?}: {b:?} is not a seed"))?,
            );
            if a >= b {
                return Err(format!("--seed-range {range:?}: empty range"));
            }
            return Ok((a..b).collect());
        }
        let n = args.seeds.unwrap_or(scenario.seeds);
        if n == 0 {
            return Err("--seeds must be at least 1".into());
        }
        Ok((1..=n).collect())
    }

    fn commit() -> String {
        std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    }

    /// Run (scenario index, seed) jobs over `jobs` threads; results in job order.
    /// Run every (scenario index, seed) of `work` over `jobs` threads. Each outcome (and its
    /// second run with `twice`) goes to `digest` on the thread that ran it, which writes
    /// what it must and keeps what the caller needs: a history is large, and a sweep of
    /// thousands of seeds must not hold them all.
    fn run_all<T: Send + 'static>(
        scenarios: &[Scenario],
        work: Vec<(usize, u64)>,
        jobs: usize,
        twice: bool,
        digest: impl Fn(&Scenario, Outcome, Option<Outcome>) -> T + Send + Sync + 'static,
    ) -> Vec<(usize, T)> {
        let queue = Arc::new(Mutex::new(
            work.into_iter().enumerate().collect::<VecDeque<_>>(),
        ));
        let results = Arc::new(Mutex::new(Vec::new()));
        let scenarios = Arc::new(scenarios.to_vec());
        let digest = Arc::new(digest);
        let threads: Vec<_> = (0..jobs.max(1))
            .map(|_| {
                let (queue, results, scenarios, digest) = (
                    queue.clone(),
                    results.clone(),
                    scenarios.clone(),
                    digest.clone(),
                );
                std::thread::spawn(move || loop {
                    let Some((order, (index, seed))) = queue.lock().unwrap().pop_front() else {
                        return;
                    };
                    let first = run_seed(&scenarios[index], seed);
                    let second = twice.then(|| run_seed(&scenarios[index], seed));
                    let kept = digest(&scenarios[index], first, second);
                    results.lock().unwrap().push((order, index, kept));
                })
            })
            .collect();
        for t in threads {
            t.join().expect("lab worker thread");
        }
        let mut results = std::mem::take(&mut *results.lock().unwrap());
        results.sort_by_key(|r| r.0);
        results.into_iter().map(|(_, i, kept)| (i, kept)).collect()
    }

    fn load_all(paths: &[PathBuf]) -> Result<Vec<Scenario>, String> {
        let files = collect(paths)?;
        let mut scenarios = Vec::new();
        // Every file is validated before anything runs.
        for f in files {
            scenarios.push(scenario::load(&f).map_err(|e| e.to_string())?);
        }
        Ok(scenarios)
    }

    /// The suites `cargo lab run` runs when given no path: every one a user should trust.
    const DEFAULT_SUITES: [&str; 4] = [
        "scenarios/smoke",
        "scenarios/replication",
        "scenarios/cluster",
        "scenarios/groups",
    ];

    /// How `run` (and `coverage`) treat a sweep.
    struct RunOptions {
        check_determinism: bool,
        histories: Histories,
        print_coverage: bool,
        /// Shrink every failing seed afterwards (at most 100 runs each).
        shrink_failing: bool,
    }

    fn run(paths: Vec<PathBuf>, seeds: SeedArgs, reports: &Path, options: RunOptions) -> i32 {
        let RunOptions {
            check_determinism,
            histories,
            print_coverage,
            shrink_failing,
        } = options;
        let paths = if paths.is_empty() {
            DEFAULT_SUITES.iter().map(PathBuf::from).collect()
        } else {
            paths
        };
        let scenarios = match load_all(&paths) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        };
        let suites = match suite::suites_in(&paths) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        };
        let work = match work_of(&scenarios, &seeds) {
            Ok(work) => work,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        };
        let commit = commit();
        let started = std::time::Instant::now();
        let reports_dir = reports.to_path_buf();
        let results = run_all(
            &scenarios,
            work,
            seeds.jobs,
            check_determinism,
            move |s, outcome, again| {
                seed_summary(s, outcome, again, &reports_dir, &commit, histories)
            },
        );
        let wall = started.elapsed().as_secs_f64();
        print_summary(
            &scenarios,
            &results,
            wall,
            seeds.jobs,
            check_determinism,
            reports,
        );
        let unwritten: Vec<&String> = results
            .iter()
            .filter_map(|(_, seed)| seed.report_error.as_ref())
            .collect();
        if let Some(first) = unwritten.first() {
            // The verdicts above stand (they do not depend on the files), but the run's
            // reports are incomplete: say so, and fail the run.
            eprintln!(
                "error: {} of {} seed reports could not be written (first: {first}); \
                 the verdicts above stand, rerun a seed with `cargo lab repro`",
                unwritten.len(),
                results.len()
            );
        }
        let report_code = if unwritten.is_empty() { 0 } else { 1 };
        let coverage_code = check_coverage(&scenarios, &results, &suites, print_coverage, reports);
        if shrink_failing {
            for (i, seed) in results.iter().filter(|(_, s)| !s.passed) {
                println!();
                shrink(&scenarios[*i].path, seed.seed, 100, reports);
            }
        }
        results
            .iter()
            .map(|(_, seed)| seed.exit_code)
            .chain([coverage_code, report_code])
            .max()
            .unwrap_or(0)
    }

    /// Each suite's coverage against its must_reach (exit code 6 when a probe was reached
    /// by none of its seeds) and, for `coverage`, the table of every probe.
    fn check_coverage(
        scenarios: &[Scenario],
        results: &[(usize, SeedSummary)],
        suites: &[suite::Suite],
        print_table: bool,
        reports: &Path,
    ) -> i32 {
        let mut code = 0;
        for s in suites {
            let mut coverage = suite::Coverage::default();
            for (i, seed) in results {
                if scenarios[*i].path.starts_with(&s.dir) {
                    coverage.add(&seed.probes);
                }
            }
            let missing = coverage.missing(s);
            if !missing.is_empty() {
                code = faultline_sim::outcome::EXIT_COVERAGE;
                println!(
                    "\nCOVERAGE {}: reached by none of {} seeds: {} (declared in {})",
                    s.dir.display(),
                    coverage.seeds,
                    missing.join(", "),
                    s.file.display()
                );
            }
        }
        if print_table {
            let mut coverage = suite::Coverage::default();
            for (_, seed) in results {
                coverage.add(&seed.probes);
            }
            let table = coverage.table();
            println!("\n{table}");
            let never = faultline::probe::ALL.len() - coverage.reached.len();
            println!(
                "{} probes, {never} reached by no seed",
                faultline::probe::ALL.len()
            );
            let path = reports.join("coverage.md");
            let text = format!("# Coverage probes\n\n{} seeds.\n\n{table}", coverage.seeds);
            if let Err(e) =
                std::fs::create_dir_all(reports).and_then(|_| std::fs::write(&path, text))
            {
                eprintln!("warning: {}: {e}", path.display());
            }
        }
        code
    }

    /// Every (scenario, seed) to run, scenario by scenario.
    fn work_of(scenarios: &[Scenario], seeds: &SeedArgs) -> Result<Vec<(usize, u64)>, String> {
        let mut work = Vec::new();
        for (i, s) in scenarios.iter().enumerate() {
            let list = seeds_for(s, seeds)?;
            work.extend(list.into_iter().map(|seed| (i, seed)));
        }
        Ok(work)
    }

    /// One seed's report written (on the thread that ran it) and its summary kept: passed,
    /// or why not, with the exit code it asks for.
    fn seed_summary(
        s: &Scenario,
        outcome: Outcome,
        again: Option<Outcome>,
        reports_dir: &Path,
        commit: &str,
        histories: Histories,
    ) -> SeedSummary {
        let mut reasons = outcome.failures.clone();
        let mut exit_code = outcome.verdict.exit_code();
        if let Some(again) = &again {
            if again.trace_hash != outcome.trace_hash || again.verdict != outcome.verdict {
                reasons.push(format!(
                    "nondeterministic: trace {:016x} then {:016x}",
                    outcome.trace_hash, again.trace_hash
                ));
                exit_code = faultline_sim::outcome::EXIT_NONDETERMINISM;
            }
        }
        let passed = reasons.is_empty() && outcome.verdict == Verdict::Pass;
        let anomalous = !outcome.violations.is_empty() || !outcome.invariants.is_empty();
        let with_history = histories == Histories::All || !passed || anomalous;
        let report_error = report::write_with(reports_dir, s, &outcome, commit, with_history)
            .err()
            .map(|e| {
                let error = format!("{}: {e}", report::run_dir(reports_dir, s).display());
                eprintln!(
                    "error: could not write the report of {} seed {} under {error}",
                    s.name, outcome.seed
                );
                error
            });
        SeedSummary {
            seed: outcome.seed,
            simulated_ns: outcome.simulated_ns,
            wall_ms: outcome.wall_ms,
            passed,
            reasons,
            exit_code,
            probes: outcome.probes.keys().cloned().collect(),
            report_error,
        }
    }

    /// The table of scenarios (seeds, passed, failed, simulated seconds per wall second),
    /// the sweep's totals, and each failing seed with its repro command.
    fn print_summary(
        scenarios: &[Scenario],
        results: &[(usize, SeedSummary)],
        wall: f64,
        jobs: usize,
        check_determinism: bool,
        reports: &Path,
    ) {
        let mut rows: Vec<(u64, u64, u64, u64, u64)> = vec![(0, 0, 0, 0, 0); scenarios.len()];
        let mut failures = Vec::new();
        for (i, seed) in results {
            let s = &scenarios[*i];
            let row = &mut rows[*i];
            row.0 += 1;
            row.3 += seed.simulated_ns;
            row.4 += seed.wall_ms;
            if seed.passed {
                row.1 += 1;
            } else {
                row.2 += 1;
                failures.push((
                    s.name.clone(),
                    seed.seed,
                    seed.reasons.clone(),
                    report::repro_command(s, seed.seed),
                ));
            }
        }
        println!(
            "{:<32} {:>6} {:>7} {:>7} {:>14}",
            "scenario", "seeds", "passed", "failed", "sim s/wall s"
        );
        for (s, (n, passed, failed, sim_ns, wall_ms)) in scenarios.iter().zip(&rows) {
            let speed = if *wall_ms == 0 {
                f64::INFINITY
            } else {
                (*sim_ns as f64 / 1e9) / (*wall_ms as f64 / 1e3)
            };
            println!(
                "{:<32} {:>6} {:>7} {:>7} {:>14.1}",
                s.name, n, passed, failed, speed
            );
        }
        println!(
            "{} seeds in {:.1}s wall over {} jobs{}; reports in {}",
            results.len(),
            wall,
            jobs,
            if check_determinism {
                ", each run twice"
            } else {
                ""
            },
            reports.join("runs").display()
        );
        for (name, seed, reasons, repro) in &failures {
            println!("\nFAIL {name} seed {seed}: {}", reasons.join("; "));
            println!("  {repro}");
        }
    }

    fn explore(budget: &str, seed: u64, shrink_runs: usize, reports: &Path) -> i32 {
        use proptest::strategy::{Strategy, ValueTree};
        use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
        let budget = match scenario::parse_duration(budget) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: --budget: {e}");
                return 2;
            }
        };
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        let mut runner = TestRunner::new_with_rng(
            Config::default(),
            TestRng::from_seed(RngAlgorithm::ChaCha, &key),
        );
        let dir = reports.join("explore");
        let started = std::time::Instant::now();
        let (mut cases, mut failures) = (0u64, 0u64);
        // Runs a generated scenario (seed = its case number); its failure kinds.
        let run = |text: &str, case: u64| -> Option<std::collections::BTreeSet<String>> {
            let s = scenario::parse(Path::new("generated.toml"), text).ok()?;
            Some(faultline_sim::shrink::signature(&run_seed(&s, case)))
        };
        while started.elapsed() < budget {
            let Ok(mut tree) = faultline_sim::explore::scenarios().new_tree(&mut runner) else {
                continue;
            };
            cases += 1;
            let text = tree.current().to_toml();
            let Some(kinds) = run(&text, cases).filter(|k| !k.is_empty()) else {
                continue;
            };
            failures += 1;
            println!(
                "case {cases} fails with {}",
                kinds.iter().cloned().collect::<Vec<_>>().join(", ")
            );
            // proptest's shrinking: simplify while it still fails with a kind of the
            // original, step back (complicate) when it does not.
            let mut smallest = text.clone();
            let mut runs = 0;
            let mut more = tree.simplify();
            while more && runs < shrink_runs {
                runs += 1;
                let candidate = tree.current().to_toml();
                if run(&candidate, cases).is_some_and(|k| !k.is_disjoint(&kinds)) {
                    smallest = candidate;
                    more = tree.simplify();
                } else {
                    more = tree.complicate();
                }
            }
            let failing = dir.join(format!("case-{cases}-failing.toml"));
            let shrunk = dir.join(format!("case-{cases}-shrunk.toml"));
            if let Err(e) = std::fs::create_dir_all(&dir)
                .and_then(|_| std::fs::write(&failing, &text))
                .and_then(|_| std::fs::write(&shrunk, &smallest))
            {
                eprintln!("error: {}: {e}", dir.display());
                return 2;
            }
            println!(
                "  shrunk in {runs} runs: {}\n  cargo lab repro {} --seed {cases}",
                shrunk.display(),
                shrunk.display()
            );
        }
        println!(
            "{cases} generated scenarios in {:.0}s, {failures} failing (generator seed {seed})",
            started.elapsed().as_secs_f64()
        );
        i32::from(failures > 0)
    }

    fn shrink(file: &Path, seed: u64, runs_max: usize, reports: &Path) -> i32 {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {}: {e}", file.display());
                return 2;
            }
        };
        let s = match scenario::parse(file, &text) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        };
        let outcome = run_seed(&s, seed);
        let target = faultline_sim::shrink::signature(&outcome);
        if target.is_empty() {
            println!("{} seed {seed} passes: nothing to shrink", s.name);
            return 0;
        }
        println!(
            "{} seed {seed} fails with {}; shrinking (at most {runs_max} runs)",
            s.name,
            target.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        let mut attempt = |candidate: &str| {
            let c = scenario::parse(file, candidate).ok()?;
            Some(faultline_sim::shrink::signature(&run_seed(&c, seed)))
        };
        let shrunk =
            faultline_sim::shrink::shrink(&text, &s, seed, &target, runs_max, &mut attempt);
        let dir = reports.join("shrunk");
        let out = dir.join(format!("{}-seed-{seed}.toml", s.name));
        let header = format!(
            "# Shrunk by `cargo lab shrink {} --seed {seed}` in {} runs:\n# {}\n",
            file.display(),
            shrunk.runs,
            shrunk.steps.join("; ")
        );
        if let Err(e) = std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(&out, format!("{header}{}", shrunk.text)))
        {
            eprintln!("error: {}: {e}", out.display());
            return 2;
        }
        for step in &shrunk.steps {
            println!("  {step}");
        }
        let last = scenario::parse(&out, &shrunk.text)
            .map(|c| run_seed(&c, seed))
            .map(|o| o.verdict.exit_code())
            .unwrap_or(1);
        println!(
            "{} steps in {} runs; smallest scenario: {}\n  cargo lab repro {} --seed {seed}",
            shrunk.steps.len(),
            shrunk.runs,
            out.display(),
            out.display()
        );
        last.max(1)
    }

    fn repro(file: &Path, seed: u64, reports: &Path) -> i32 {
        let s = match scenario::load(file) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        };
        let outcome = run_seed(&s, seed);
        let dir = match report::write(reports, &s, &outcome, &commit()) {
            Ok(d) => d.display().to_string(),
            Err(e) => format!("(not written: {e})"),
        };
        println!(
            "{} seed {}: {} (trace hash {:016x}, {:.3}s simulated)",
            s.name,
            seed,
            outcome.verdict.name(),
            outcome.trace_hash,
            outcome.simulated_ns as f64 / 1e9
        );
        for f in &outcome.failures {
            println!("  {f}");
        }
        if let Some(v) = outcome.violations.first() {
            println!(
                "\nfirst violation: {} on {}/{}\n  {}",
                v.anomaly.name(),
                v.topic,
                v.partition,
                v.message
            );
            for index in v.ops.iter().take(10) {
                if let Some(op) = outcome.history.ops.get(*index) {
                    println!("  {}", serde_json::to_string(op).expect("op serializes"));
                }
            }
        }
        println!("\nfull trace: {dir}");
        outcome.verdict.exit_code()
    }

    fn bench(file: Option<PathBuf>, seeds: u64, jobs: usize) -> i32 {
        let path = file.unwrap_or_else(|| PathBuf::from("scenarios/bench/standard.toml"));
        let s = match scenario::load(&path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        };
        let seeds = seeds.max(1);
        println!(
            "lab bench: {} ({}), {} seeds",
            s.name,
            path.display(),
            seeds
        );
        // One core: seeds one after another.
        let mut speeds = Vec::new();
        let started = std::time::Instant::now();
        for seed in 1..=seeds {
            let o = run_seed(&s, seed);
            let speed = (o.simulated_ns as f64 / 1e9) / (o.wall_ms.max(1) as f64 / 1e3);
            println!("seed {seed}: {} {:.1}s simulated in {:.2}s wall = {speed:.1} sim s/wall s ({} records acknowledged)", o.verdict.name(), o.simulated_ns as f64 / 1e9, o.wall_ms as f64 / 1e3, o.counters.records_acknowledged);
            speeds.push(speed);
        }
        let one_core_wall = started.elapsed().as_secs_f64();
        speeds.sort_by(|a, b| a.total_cmp(b));
        let median = speeds[speeds.len() / 2];
        println!(
            "one core: median {median:.1} simulated s per wall s; {:.1} seeds per minute",
            seeds as f64 * 60.0 / one_core_wall
        );
        if jobs > 1 {
            let started = std::time::Instant::now();
            let _ = run_all(
                std::slice::from_ref(&s),
                (1..=seeds).map(|seed| (0, seed)).collect(),
                jobs,
                false,
                |_, _, _| (),
            );
            let wall = started.elapsed().as_secs_f64();
            println!(
                "{jobs} jobs: {:.1} seeds per minute, speed-up {:.2}x over one core",
                seeds as f64 * 60.0 / wall,
                one_core_wall / wall
            );
        }
        0
    }
}

#[cfg(madsim)]
fn main() {
    std::process::exit(lab::main());
}

#[cfg(not(madsim))]
fn main() {
    eprintln!(
        "the lab runs in the simulated build: use `cargo lab` (a cargo alias that builds it)"
    );
    std::process::exit(2);
}
