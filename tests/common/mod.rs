//! Helpers shared by the integration tests: run the real binary, write small inputs, read the store back.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use polars::prelude::*;
use sha2::Digest;

pub const BIN: &str = env!("CARGO_BIN_EXE_accesswatch");

/// Valid NHS numbers (Modulus 11), for fixtures.
pub const NHS_A: &str = "9434765919";
pub const NHS_B: &str = "9434765870";
pub const NHS_C: &str = "4010232137";

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(args: &[&str]) -> Run {
    run_env(args, &[])
}

/// Runs in a given working folder, so relative paths in the output are stable.
pub fn run_in(cwd: &Path, args: &[&str]) -> Run {
    run_cmd(Command::new(BIN).current_dir(cwd), args, &[])
}

pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    run_cmd(&mut Command::new(BIN), args, env)
}

fn run_cmd(cmd: &mut Command, args: &[&str], env: &[(&str, &str)]) -> Run {
    cmd.args(args)
        .env_remove("ACCESSWATCH_CONFIG")
        .env_remove("ACCESSWATCH_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out: Output = cmd.output().expect("run accesswatch");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

pub fn json(r: &Run) -> serde_json::Value {
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", r.stdout, r.stderr))
}

/// Every row of one kind in the store, read with polars' hive partitioning, sorted for comparison.
pub fn read_kind(store: &Path, kind: &str) -> DataFrame {
    let dir = store.join(kind);
    if !has_parquet(&dir) {
        return DataFrame::empty();
    }
    let lf = LazyFrame::scan_parquet(
        PlRefPath::new(format!("{}/**/*.parquet", dir.display())),
        ScanArgsParquet::default(),
    )
    .unwrap();
    lf.collect().unwrap()
}

/// Whether a folder holds a Parquet file at any depth (a folder made by a writer killed before its first file
/// holds none).
fn has_parquet(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let path = e.path();
            if path.is_dir() {
                has_parquet(&path)
            } else {
                path.extension().is_some_and(|x| x == "parquet")
            }
        })
    })
}

pub fn read_quarantine(store: &Path) -> DataFrame {
    let dir = store.join("quarantine");
    if !dir.exists() {
        return DataFrame::empty();
    }
    LazyFrame::scan_parquet(
        PlRefPath::new(format!("{}/*.parquet", dir.display())),
        ScanArgsParquet::default(),
    )
    .unwrap()
    .sort(["source_file", "line"], Default::default())
    .collect()
    .unwrap()
}

/// An integer column's values (nulls as `None`).
pub fn ints(df: &DataFrame, col: &str) -> Vec<Option<i64>> {
    df.column(col).unwrap().i64().unwrap().iter().collect()
}

pub fn strings(df: &DataFrame, col: &str) -> Vec<Option<String>> {
    df.column(col)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect()
}

/// Every file under a folder with the SHA-256 of its bytes, relative path first, sorted.
pub fn tree(dir: &Path) -> Vec<(String, String)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push((
                    p.strip_prefix(base).unwrap().display().to_string(),
                    hex::encode(sha2::Sha256::digest(std::fs::read(&p).unwrap())),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

pub const AUDIT_HEADER: &str =
    "event_id,occurred_at,nhs_number,account_id,actor_role,device_id,user_agent,ip_address,channel,session_id,action,section,outcome";

/// Compares `actual` with the golden file `tests/expected/<name>`. With `ACCESSWATCH_BLESS=1` the file is rewritten
/// instead, and the test fails if that changed it, so every blessed change is a diff someone has to review.
pub fn assert_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/expected")
        .join(name);
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    if std::env::var_os("ACCESSWATCH_BLESS").is_some() {
        if want != actual {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).unwrap();
            }
            std::fs::write(&path, actual).unwrap();
            panic!(
                "{} rewritten (ACCESSWATCH_BLESS): review the diff, then run the tests again without it",
                path.display()
            );
        }
        return;
    }
    assert!(
        want == actual,
        "{} differs (after an intended change, ACCESSWATCH_BLESS=1 rewrites it for review)\n--- expected\n{want}\n--- actual\n{actual}",
        path.display()
    );
}

/// Every NHS number and device id in the CSV inputs under `dir` (columns `nhs_number`, `proxy_nhs_number`,
/// `device_id`): what must never appear in a log, a file name or a pseudonymised export.
pub fn identifiers_in(dir: &Path) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "csv") {
            continue;
        }
        let mut r = csv::Reader::from_path(&p).unwrap();
        let headers = r.headers().unwrap().clone();
        let cols: Vec<usize> = headers
            .iter()
            .enumerate()
            .filter(|(_, h)| ["nhs_number", "proxy_nhs_number", "device_id"].contains(h))
            .map(|(i, _)| i)
            .collect();
        for rec in r.records().flatten() {
            for &i in &cols {
                if let Some(v) = rec.get(i).filter(|v| v.len() >= 6) {
                    out.insert(v.to_string());
                }
            }
        }
    }
    out.into_iter().collect()
}

/// A CSV file's rows as column -> value maps.
pub fn read_csv_rows(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// Audit rows a reader sees in a store (`query`, as `COUNT(*)` in CSV: `n` and the count).
pub fn visible_audit_rows(store: &Path) -> String {
    let q = run(&[
        "query",
        "--store",
        store.to_str().unwrap(),
        "--sql",
        "SELECT COUNT(*) AS n FROM audit",
        "--format",
        "csv",
    ]);
    assert_eq!(q.code, 0, "{}", q.stderr);
    q.stdout.trim().to_string()
}

/// Debian's Chromium, for the tests that render pages headless.
pub fn chromium() -> PathBuf {
    for c in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(c).exists() {
            return PathBuf::from(c);
        }
    }
    panic!(
        "Debian's chromium is needed for this test (apt-get install chromium; .ci/run installs it)"
    );
}

/// Headless Chromium with its own profile folder and no network of its own.
pub fn headless(profile: &Path) -> Command {
    let mut c = Command::new(chromium());
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-pdf-header-footer",
        &format!("--user-data-dir={}", profile.display()),
    ]);
    c
}

/// `sample_data/` ingested into `dir/store` (exit 3: the sample has deliberately broken rows); the store's path.
pub fn sample_store(dir: &Path) -> PathBuf {
    let store = dir.join("store");
    let r = run(&[
        "ingest",
        "--store",
        store.to_str().unwrap(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/sample_data"),
    ]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    store
}

/// Ingest in this process. The store's lock is an OS file lock, and another test of this binary that spawns the
/// accesswatch binary at the same moment forks a child that shares this process's open files until it execs; a lock
/// released just before can look held for that instant. Only that refusal is tried again, for at most two seconds.
pub fn ingest_in_process(
    config: &accesswatch::config::Config,
    paths: &[PathBuf],
) -> accesswatch::ingest::IngestReport {
    use accesswatch::ingest::{ingest, IngestError, IngestOptions};
    use accesswatch::store::StoreError;
    for _ in 0..100 {
        match ingest(config, paths, &IngestOptions::default()) {
            Err(IngestError::Store(StoreError::Locked(_))) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other.unwrap(),
        }
    }
    panic!("the test store stayed locked for two seconds")
}
