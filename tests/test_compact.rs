//! Compaction: partitions written by many batches become one sorted file each, every visible row kept once, the
//! rows of uncommitted files removed, detection unchanged, and a compaction killed at any point harmless.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sample_data");

/// A config with small batches, so that the sample's partitions get many files, and ingest's own compaction at
/// `compact_at` files (0: never).
fn config(dir: &Path, compact_at: usize) -> PathBuf {
    write(
        dir,
        &format!("small-batches-{compact_at}.toml"),
        &format!("[ingest]\nbatch_rows = 60\ncompact_at_files = {compact_at}\n"),
    )
}

fn ingest(cfg: &Path, store: &Path, extra_env: &[(&str, &str)]) -> Run {
    run_env(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "ingest",
            "--json",
            "--store",
            store.to_str().unwrap(),
            SAMPLE,
        ],
        extra_env,
    )
}

/// Data files per partition folder ("audit/date=…" -> count).
fn files_per_partition(store: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (path, _) in tree(store) {
        let parts: Vec<&str> = path.split('/').collect();
        if parts.len() == 3
            && ["audit", "entries", "appointments", "proxies"].contains(&parts[0])
            && parts[2].ends_with(".parquet")
        {
            *out.entry(format!("{}/{}", parts[0], parts[1])).or_default() += 1;
        }
    }
    out
}

/// What a reader sees of each kind, every column, in a fixed order, as CSV.
fn visible(store: &Path) -> String {
    let mut out = String::new();
    for (table, key) in [
        ("audit", "event_id"),
        ("entries", "record_hash"),
        ("appointments", "record_hash"),
        ("proxies", "record_hash"),
    ] {
        let q = run(&[
            "query",
            "--store",
            store.to_str().unwrap(),
            "--sql",
            &format!("SELECT * FROM {table} ORDER BY {key}, ingest_seq"),
            "--format",
            "csv",
        ]);
        assert_eq!(q.code, 0, "{}", q.stderr);
        out.push_str(&q.stdout);
    }
    out
}

fn compact(store: &Path, env: &[(&str, &str)]) -> Run {
    run_env(
        &["compact", "--json", "--store", store.to_str().unwrap()],
        env,
    )
}

fn detect(store: &Path, out: &Path) -> (Vec<u8>, Vec<u8>) {
    let r = run(&[
        "detect",
        "--store",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--as-of",
        "2026-11-22",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let day = out.join("2026-11-22");
    (
        std::fs::read(day.join("patients.csv")).unwrap(),
        std::fs::read(day.join("findings.csv")).unwrap(),
    )
}

/// Rows in the store's data files, and of those, rows of files the manifest commits.
fn rows_on_disk(store: &Path) -> (usize, usize) {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("_manifest.json")).unwrap()).unwrap();
    let seqs: Vec<i64> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["seq"].as_i64().unwrap())
        .collect();
    let (mut all, mut committed) = (0, 0);
    for kind in ["audit", "entries", "appointments", "proxies"] {
        let df = read_kind(store, kind);
        if df.height() == 0 {
            continue;
        }
        all += df.height();
        committed += df
            .column("ingest_seq")
            .unwrap()
            .i64()
            .unwrap()
            .iter()
            .filter(|s| s.is_some_and(|s| seqs.contains(&s)))
            .count();
    }
    (all, committed)
}

/// The store's files but its locks (which name their last holder) and its manifest and `_tmp/`.
fn data_files(store: &Path) -> Vec<(String, String)> {
    tree(store)
        .into_iter()
        .filter(|(p, _)| !p.starts_with('_') && !p.starts_with('.'))
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .args(["-a", from.to_str().unwrap(), to.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn compaction_leaves_one_sorted_file_per_partition_with_every_visible_row_and_the_same_detection() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 0);
    let store = dir.path().join("store");
    assert_eq!(ingest(&cfg, &store, &[]).code, 3);
    let before = files_per_partition(&store);
    let many = before.values().filter(|n| **n >= 2).count();
    assert!(many > 10, "small batches give many files: {before:?}");
    let rows_before = visible(&store);
    let detected_before = detect(&store, &dir.path().join("reports-before"));

    let r = compact(&store, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = json(&r);
    assert_eq!(report["partitions"], many);
    assert_eq!(
        report["files_before"],
        before.values().filter(|n| **n >= 2).sum::<usize>()
    );
    assert_eq!(report["invisible_rows_removed"], 0);
    let after = files_per_partition(&store);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    assert!(after.values().all(|n| *n == 1), "{after:?}");
    assert_eq!(visible(&store), rows_before, "every visible row, once");
    assert_eq!(
        detect(&store, &dir.path().join("reports-after")),
        detected_before,
        "detection reads the same store"
    );

    // Each file is sorted by (nhs_number, time, key), as ingest writes them.
    let audit = read_kind(&store, "audit");
    for (path, _) in tree(&store.join("audit")) {
        use polars::prelude::SerReader;
        let df = polars::prelude::ParquetReader::new(
            std::fs::File::open(store.join("audit").join(&path)).unwrap(),
        )
        .finish()
        .unwrap();
        let nhs = strings(&df, "nhs_number");
        let ids = strings(&df, "event_id");
        let t: Vec<i64> = df
            .column("occurred_at")
            .unwrap()
            .datetime()
            .unwrap()
            .physical()
            .iter()
            .map(|x| x.unwrap())
            .collect();
        let keys: Vec<_> = (0..df.height())
            .map(|i| (nhs[i].clone(), t[i], ids[i].clone()))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{path} is sorted");
    }
    assert!(audit.height() > 0);

    // Nothing left to do: a second compaction changes nothing.
    let settled = data_files(&store);
    let r = compact(&store, &[]);
    assert_eq!(json(&r)["partitions"], 0);
    assert_eq!(data_files(&store), settled);
}

#[test]
fn ingest_compacts_partitions_that_reach_its_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let never = dir.path().join("never");
    assert_eq!(ingest(&config(dir.path(), 0), &never, &[]).code, 3);
    let crowded = files_per_partition(&never)
        .values()
        .filter(|n| **n >= 4)
        .count();
    assert!(
        crowded > 0,
        "without compaction some partitions have 4+ files"
    );

    let store = dir.path().join("store");
    let r = ingest(&config(dir.path(), 4), &store, &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(json(&r)["compacted"]["partitions"], crowded);
    let files = files_per_partition(&store);
    assert!(files.values().all(|n| *n < 4), "{files:?}");
    assert_eq!(visible(&store), visible(&never));
}

#[test]
fn a_compaction_killed_at_any_point_shows_every_row_once_and_the_next_one_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 0);
    let original = dir.path().join("original");
    assert_eq!(ingest(&cfg, &original, &[]).code, 3);
    let rows = visible(&original);
    let partitions = files_per_partition(&original)
        .values()
        .filter(|n| **n >= 2)
        .count();
    let reference = dir.path().join("reference");
    copy_dir(&original, &reference);
    assert_eq!(compact(&reference, &[]).code, 0);

    // Two durable steps per partition (the new folder written, then swapped in): kill after each of the first
    // few, and part way through.
    let mut points: Vec<usize> = (1..=6).collect();
    points.extend([partitions, 2 * partitions - 1]);
    for k in points {
        let store = dir.path().join(format!("killed-{k}"));
        copy_dir(&original, &store);
        let r = compact(
            &store,
            &[("ACCESSWATCH_TEST_CRASH_AFTER_WRITES", &k.to_string())],
        );
        assert_eq!(r.code, -1, "killed after step {k}: {}", r.stderr);
        assert_eq!(visible(&store), rows, "after step {k}, every row once");
        let r = compact(&store, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(data_files(&store), data_files(&reference), "after step {k}");
    }
}

#[test]
fn compaction_removes_an_uncommitted_files_rows_and_its_resend_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 0);
    let clean = dir.path().join("clean");
    assert_eq!(ingest(&cfg, &clean, &[]).code, 3);

    let store = dir.path().join("store");
    // Killed part way through: the rows of the file it was in are on disk, invisible, and uncommitted. (A file
    // larger than a batch is spilled by day before its partitions are written, so the first kill point that leaves
    // such rows is found by trying them in turn.)
    let mut kill_at = 1;
    let (on_disk, committed) = loop {
        let _ = std::fs::remove_dir_all(&store);
        let r = ingest(
            &cfg,
            &store,
            &[("ACCESSWATCH_TEST_CRASH_AFTER_WRITES", &kill_at.to_string())],
        );
        assert_eq!(r.code, -1, "killed at write {kill_at}");
        let (on_disk, committed) = rows_on_disk(&store);
        if on_disk > committed {
            break (on_disk, committed);
        }
        kill_at += 3;
        assert!(kill_at < 1_000, "no kill point left uncommitted rows");
    };
    let r = compact(&store, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(json(&r)["invisible_rows_removed"], on_disk - committed);
    assert_eq!(
        rows_on_disk(&store),
        (committed, committed),
        "the leftovers are gone"
    );
    // The whole sample again: read in full, as a clean ingest.
    assert_eq!(ingest(&cfg, &store, &[]).code, 3);
    assert_eq!(visible(&store), visible(&clean));
}

#[test]
fn compact_needs_a_store_and_refuses_while_a_run_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let r = compact(&dir.path().join("nothing"), &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no store there"), "{}", r.stderr);
    let store = dir.path().join("store");
    assert_eq!(ingest(&config(dir.path(), 0), &store, &[]).code, 3);
    let lock = accesswatch::pipeline::RunLock::acquire(&store).unwrap();
    let r = compact(&store, &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("in progress"), "{}", r.stderr);
    drop(lock);
    assert_eq!(compact(&store, &[]).code, 0);
}

#[test]
fn the_nightly_run_compacts_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "run.toml",
        &format!(
            "inbox = \"{SAMPLE}\"\nstore = \"store\"\nreports = \"reports\"\n[ingest]\nbatch_rows = 60\n\
             compact_at_files = 4\n[run]\nas_of = \"latest-data\"\n"
        ),
    );
    let r = run(&["--config", cfg.to_str().unwrap(), "run"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains("compacted"))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    let files = files_per_partition(&dir.path().join("store"));
    assert!(files.values().all(|n| *n < 4), "{files:?}");
    assert!(
        line.starts_with("  compacted ") && line.contains("store partition(s)"),
        "{line}"
    );
}
