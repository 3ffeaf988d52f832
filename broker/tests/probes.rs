//! Every coverage probe declared in the core (`faultline::probe::ALL`) is placed somewhere
//! in the core or the shell: a declared probe no code can reach would sit in the lab's
//! coverage table as "never reached" for no reason. (The lab checks the other direction:
//! which placed probes its suites reach.)

use std::path::Path;

fn collect(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("probe.rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}

#[test]
fn every_declared_probe_is_placed_in_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = String::new();
    collect(&root.join("src"), &mut text);
    collect(&root.join("core/src"), &mut text);
    for (id, name) in faultline::probe::IDS {
        assert!(
            text.contains(&format!("probe!(probe::{id})")),
            "probe {id} ({name}) is declared but never placed: write `probe!(probe::{id})` where it happens"
        );
    }
    assert_eq!(faultline::probe::IDS.len(), faultline::probe::ALL.len());
}
