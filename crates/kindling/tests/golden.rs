//! Golden recordings: `kindling replay --json` of every recording in
//! `tests/golden/*.kcap` must print exactly `<name>.expected.jsonl`.
//!
//! The recordings are real traffic (nginx with curl and wrk, redis-benchmark,
//! pgbench, mysqlslap, dig against dnsmasq, python grpcio) recorded by the
//! root tests `requests::golden_*`; replay needs no root, no server and reads
//! nothing from this machine, so this test runs anywhere.
//!
//! When a change of the output is intended, rewrite the expected files with
//! `KINDLING_BLESS=1 cargo test -p kindling --test golden` and review the diff.
//! To record new traffic: `KINDLING_GOLDEN_RECORD=1 cargo test --release -p
//! kindling --test root -- --test-threads=1 requests::golden` (as root).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn expected_path(kcap: &Path) -> PathBuf {
    kcap.with_extension("expected.jsonl")
}

fn replay(kcap: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kindling"))
        .args(["replay", "--json"])
        .arg(kcap)
        .output()
        .expect("running kindling replay");
    assert!(out.status.success(), "replay of {} failed: {}", kcap.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[derive(Debug)]
enum Op<'a> {
    Same,
    Del(&'a str),
    Add(&'a str),
}

/// Line diff (longest common subsequence).
fn diff<'a>(want: &[&'a str], got: &[&'a str]) -> Vec<Op<'a>> {
    let (n, m) = (want.len(), got.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if want[i] == got[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut ops) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && want[i] == got[j] {
            ops.push(Op::Same);
            (i, j) = (i + 1, j + 1);
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push(Op::Add(got[j]));
            j += 1;
        } else {
            ops.push(Op::Del(want[i]));
            i += 1;
        }
    }
    ops
}

/// The fields that differ between two JSON records, `key: want -> got`.
fn field_changes(want: &str, got: &str) -> Option<String> {
    let (Ok(Value::Object(w)), Ok(Value::Object(g))) =
        (serde_json::from_str::<Value>(want), serde_json::from_str::<Value>(got))
    else {
        return None;
    };
    let mut keys: Vec<&String> = w.keys().chain(g.keys()).collect();
    keys.sort();
    keys.dedup();
    let changes: Vec<String> = keys
        .into_iter()
        .filter(|k| w.get(*k) != g.get(*k))
        .map(|k| {
            let show = |v: Option<&Value>| v.map_or("(absent)".to_string(), Value::to_string);
            format!("{k}: {} -> {}", show(w.get(k)), show(g.get(k)))
        })
        .collect();
    Some(changes.join(", "))
}

/// A readable report of how `got` differs from `want` (at most `limit` changes).
fn report(name: &str, want: &str, got: &str, limit: usize) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let ops = diff(&w, &g);
    let mut out = format!(
        "{name}: replay differs from {name}.expected.jsonl ({} expected records, {} replayed; - expected, + replayed)\n",
        w.len(),
        g.len()
    );
    let (mut line_w, mut line_g, mut shown, mut k) = (0, 0, 0, 0);
    while k < ops.len() {
        match ops[k] {
            Op::Same => {
                line_w += 1;
                line_g += 1;
                k += 1;
            }
            _ => {
                // A run of changes: deletions and additions.
                let start = k;
                while k < ops.len() && !matches!(ops[k], Op::Same) {
                    k += 1;
                }
                let dels: Vec<&str> =
                    ops[start..k].iter().filter_map(|o| if let Op::Del(s) = o { Some(*s) } else { None }).collect();
                let adds: Vec<&str> =
                    ops[start..k].iter().filter_map(|o| if let Op::Add(s) = o { Some(*s) } else { None }).collect();
                if shown < limit {
                    out.push_str(&format!("@@ expected line {}, replayed line {}\n", line_w + 1, line_g + 1));
                    for (i, d) in dels.iter().enumerate() {
                        out.push_str(&format!("- {d}\n"));
                        if let Some(changes) = adds.get(i).and_then(|a| field_changes(d, a)) {
                            out.push_str(&format!("    changed: {changes}\n"));
                        }
                    }
                    for a in &adds {
                        out.push_str(&format!("+ {a}\n"));
                    }
                }
                shown += 1;
                line_w += dels.len();
                line_g += adds.len();
            }
        }
    }
    if shown > limit {
        out.push_str(&format!("... and {} more changed runs\n", shown - limit));
    }
    out
}

#[test]
fn replays_match_expected_output() {
    let bless = std::env::var("KINDLING_BLESS").is_ok_and(|v| v == "1");
    let dir = golden_dir();
    let mut kcaps: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kcap"))
        .collect();
    kcaps.sort();
    assert!(!kcaps.is_empty(), "no recordings in {}", dir.display());
    let mut failures = Vec::new();
    for kcap in &kcaps {
        let name = kcap.file_stem().unwrap().to_string_lossy().into_owned();
        let size = std::fs::metadata(kcap).unwrap().len();
        assert!(size < 300_000, "{name}.kcap is {size} bytes: keep golden recordings small");
        let got = replay(kcap);
        assert!(!got.is_empty(), "{name}: the recording gives no request records");
        let path = expected_path(kcap);
        if bless {
            std::fs::write(&path, &got).unwrap();
            eprintln!("blessed {}", path.display());
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(report(&name, &want, &got, 20)),
            Err(e) => failures.push(format!("{name}: {}: {e}", path.display())),
        }
        // Replay is deterministic: a second run prints the same bytes.
        assert_eq!(replay(kcap), got, "{name}: two replays differ");
    }
    // Every expected file has its recording.
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let n = p.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(stem) = n.strip_suffix(".expected.jsonl") {
            assert!(dir.join(format!("{stem}.kcap")).exists(), "{n} has no {stem}.kcap");
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nIf the change is intended: KINDLING_BLESS=1 cargo test -p kindling --test golden, and review the diff.",
        failures.join("\n")
    );
}

#[test]
fn diff_reports_changed_fields_and_positions() {
    let want = "{\"a\":1,\"s\":\"200\"}\n{\"a\":2,\"s\":\"200\"}\n{\"a\":3,\"s\":\"200\"}\n";
    let got = "{\"a\":1,\"s\":\"200\"}\n{\"a\":2,\"s\":\"500\"}\n{\"a\":3,\"s\":\"200\"}\n{\"a\":4,\"s\":\"200\"}\n";
    let r = report("x", want, got, 10);
    assert!(r.contains("@@ expected line 2, replayed line 2"), "{r}");
    assert!(r.contains("changed: s: \"200\" -> \"500\""), "{r}");
    assert!(r.contains("+ {\"a\":4,\"s\":\"200\"}"), "{r}");
    assert!(r.contains("@@ expected line 4, replayed line 4"), "{r}");
}
