//! `accesswatch run`, the nightly job: end to end, repeatable, crash-safe, locked, pruned, with documented exit
//! codes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sample_data");

/// A practice folder: `inbox/` holding a copy of the sample, and a config naming inbox, store and reports
/// relative to itself.
fn practice(dir: &Path, extra: &str) -> PathBuf {
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    for e in std::fs::read_dir(SAMPLE).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, inbox.join(p.file_name().unwrap())).unwrap();
    }
    write(
        dir,
        "accesswatch.toml",
        &format!("inbox = \"inbox\"\nstore = \"store\"\nreports = \"reports\"\n{extra}"),
    )
}

fn nightly(config: &Path, as_of: &str, env: &[(&str, &str)]) -> Run {
    run_env(
        &[
            "--config",
            config.to_str().unwrap(),
            "run",
            "--as-of",
            as_of,
        ],
        env,
    )
}

/// The findings of a run folder, byte for byte (everything but the timings in summary.json).
fn outputs(dir: &Path, as_of: &str) -> Vec<(String, String)> {
    tree(&dir.join("reports").join(as_of))
        .into_iter()
        .filter(|(p, _)| p != "summary.json")
        .collect()
}

fn store_data(dir: &Path) -> Vec<(String, String)> {
    tree(&dir.join("store"))
        .into_iter()
        .filter(|(p, _)| !p.starts_with('_') && !p.starts_with('.'))
        .collect()
}

#[test]
fn a_night_runs_end_to_end_and_a_second_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = practice(dir.path(), "");
    let r = nightly(&cfg, "2026-11-22", &[]);
    assert_eq!(
        r.code, 3,
        "the sample has quarantined rows: {}{}",
        r.stdout, r.stderr
    );
    assert!(
        r.stdout.starts_with("accesswatch run for 2026-11-22\n"),
        "{}",
        r.stdout
    );
    // Rows read are the sample's data rows; nine of them are the broken ones the sample's README line describes
    // (seven in audit-resent.csv, two in appointments-amended.csv), and the rest are stored or duplicates.
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data");
    let read: usize = std::fs::read_dir(&sample)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .map(|p| {
            csv::ReaderBuilder::new()
                .flexible(true)
                .from_path(&p)
                .unwrap()
                .byte_records()
                .count()
        })
        .sum();
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains("rows read"))
        .unwrap_or_default();
    let figures: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect();
    let n = figures.len();
    assert!(n >= 4, "{line}");
    let (rows, stored, dups, quarantined) = (
        figures[n - 4],
        figures[n - 3],
        figures[n - 2],
        figures[n - 1],
    );
    assert_eq!(rows, read as u64, "{line}");
    assert_eq!(rows, stored + dups + quarantined, "{line}");
    assert_eq!(quarantined, 9, "{line}");
    let report_line = r.stdout.lines().last().unwrap();
    assert!(
        report_line.starts_with("report: ") && report_line.contains("reports/2026-11-22"),
        "{report_line}"
    );
    let first_outputs = outputs(dir.path(), "2026-11-22");
    let first_store = store_data(dir.path());
    assert!(first_outputs.iter().any(|(p, _)| p == "patients.csv"));

    let r = nightly(&cfg, "2026-11-22", &[]);
    assert_eq!(r.code, 0, "nothing new tonight: {}", r.stdout);
    assert!(
        r.stdout.contains("0 new file(s), 6 already ingested"),
        "{}",
        r.stdout
    );
    assert_eq!(outputs(dir.path(), "2026-11-22"), first_outputs);
    assert_eq!(store_data(dir.path()), first_store);

    // Every run is recorded, with no identifiers.
    let log = std::fs::read_to_string(dir.path().join("reports/runs.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2);
    assert!(log.lines().all(|l| l.contains("\"status\":\"succeeded\"")));
    let ids = identifiers_in(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sample_data"
    )));
    assert!(ids.len() > 100, "the sample's identifiers: {}", ids.len());
    assert!(
        !ids.iter().any(|id| log.contains(id.as_str())),
        "no NHS numbers or device ids in the run log"
    );
}

#[test]
fn a_new_file_in_the_inbox_is_picked_up_the_next_night() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = practice(dir.path(), "");
    assert_eq!(nightly(&cfg, "2026-11-22", &[]).code, 3);
    let text = std::fs::read_to_string(dir.path().join("inbox/audit.csv")).unwrap();
    let last = text.lines().last().unwrap().to_string();
    let fields: Vec<&str> = last.split(',').collect();
    let mut next_day = format!("{AUDIT_HEADER}\n");
    next_day += &format!("ev-next-1,2026-11-23T19:00:00Z,{}\n", fields[2..].join(","));
    write(&dir.path().join("inbox"), "audit-2026-11-23.csv", &next_day);
    let r = nightly(&cfg, "2026-11-23", &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout.contains("1 new file(s), 6 already ingested") && r.stdout.contains("stored 1 "),
        "{}",
        r.stdout
    );
    assert!(dir.path().join("reports/2026-11-23/patients.csv").exists());
}

#[test]
fn a_run_killed_at_any_point_and_re_run_gives_the_same_findings() {
    let clean = tempfile::tempdir().unwrap();
    let cfg = practice(clean.path(), "[ingest]\nbatch_rows = 2000\n");
    assert_eq!(nightly(&cfg, "2026-11-22", &[]).code, 3);
    let want_outputs = outputs(clean.path(), "2026-11-22");
    let want_store = store_data(clean.path());

    // Crashes during ingest (early, middle, late) and at each write of the run folder: every data file in the
    // store is one write, and the run folder's files come after them.
    let store_writes = store_data(clean.path())
        .iter()
        .filter(|(p, _)| p.ends_with(".parquet"))
        .count();
    let points: Vec<String> = [
        1,
        12,
        store_writes / 2,
        store_writes,
        store_writes + 1,
        store_writes + 2,
        store_writes + 3,
        store_writes + 4,
    ]
    .iter()
    .map(|n| n.to_string())
    .collect();
    for point in &points {
        let point = point.as_str();
        let dir = tempfile::tempdir().unwrap();
        let cfg = practice(dir.path(), "[ingest]\nbatch_rows = 2000\n");
        let r = nightly(
            &cfg,
            "2026-11-22",
            &[("ACCESSWATCH_TEST_CRASH_AFTER_WRITES", point)],
        );
        assert_eq!(
            r.code, -1,
            "crash point {point} was reached (the process died by signal)"
        );
        let r = nightly(&cfg, "2026-11-22", &[]);
        assert!(
            r.code == 0 || r.code == 3,
            "re-run after crash {point}: {}{}",
            r.stdout,
            r.stderr
        );
        assert_eq!(
            outputs(dir.path(), "2026-11-22"),
            want_outputs,
            "crash at write {point}"
        );
        assert_eq!(store_data(dir.path()), want_store, "crash at write {point}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("reports"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            leftovers
                .iter()
                .all(|n| !n.to_string_lossy().starts_with('.')),
            "{leftovers:?}"
        );
    }

    // A real SIGKILL part way through: the run pauses right after its N-th durable write (a test-only fault point)
    // and says so with a marker file, so the kill lands mid-run every time, not after a guessed delay.
    for after_writes in [3u32, 12] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = practice(dir.path(), "[ingest]\nbatch_rows = 2000\n");
        let marker = dir.path().join("paused");
        let mut child = Command::new(BIN)
            .args([
                "--config",
                cfg.to_str().unwrap(),
                "run",
                "--as-of",
                "2026-11-22",
            ])
            .env(
                "ACCESSWATCH_TEST_PAUSE_AFTER_WRITES",
                format!("{after_writes}:{}", marker.display()),
            )
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while !marker.exists() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run ended before write {after_writes}"
            );
            assert!(
                started.elapsed().as_secs() < 120,
                "no pause at write {after_writes}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "killed by the signal, mid-run: {status:?}"
        );
        assert!(
            !dir.path().join("reports/2026-11-22/report.html").exists(),
            "the kill landed before the run folder was complete"
        );
        let r = nightly(&cfg, "2026-11-22", &[]);
        assert!(r.code == 0 || r.code == 3, "{}{}", r.stdout, r.stderr);
        assert_eq!(
            outputs(dir.path(), "2026-11-22"),
            want_outputs,
            "SIGKILL after write {after_writes}"
        );
        assert_eq!(
            store_data(dir.path()),
            want_store,
            "SIGKILL after write {after_writes}"
        );
    }
}

#[test]
fn two_runs_cannot_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = practice(dir.path(), "");
    std::fs::create_dir_all(dir.path().join("store")).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.path().join("store/.run.lock"))
        .unwrap();
    lock.lock().unwrap();
    let r = nightly(&cfg, "2026-11-22", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("another accesswatch run is in progress"),
        "{}",
        r.stderr
    );
    // With JSON logs, every line on stderr is JSON, the refusal included.
    let j = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "--log-format",
        "json",
        "run",
        "--as-of",
        "2026-11-22",
    ]);
    assert_eq!(j.code, 1);
    assert!(j.stderr.contains("in progress"), "{}", j.stderr);
    for line in j.stderr.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not a JSON log line: {line}"
        );
    }
    // Both refused runs are in the runs log.
    let log = std::fs::read_to_string(dir.path().join("reports/runs.jsonl")).unwrap();
    let refused: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(refused.len(), 2, "{log}");
    for r in &refused {
        assert_eq!(r["status"], "refused", "{log}");
        assert!(
            r["error"].as_str().unwrap().contains("in progress"),
            "{log}"
        );
    }
    drop(lock);
    assert_eq!(
        nightly(&cfg, "2026-11-22", &[]).code,
        3,
        "a released lock (a run that ended or died) does not block"
    );
}

#[test]
fn old_run_folders_are_pruned_and_fail_on_gives_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = practice(dir.path(), "[run]\nkeep_days = 30\nfail_on = \"high\"\n");
    for old in ["2026-09-01", "2026-10-30"] {
        std::fs::create_dir_all(dir.path().join("reports").join(old)).unwrap();
    }
    let r = nightly(&cfg, "2026-11-22", &[]);
    assert_eq!(
        r.code, 4,
        "high-risk patients with fail_on = high: {}",
        r.stdout
    );
    assert!(
        r.stdout.contains("pruned 1 old run folder(s)"),
        "{}",
        r.stdout
    );
    assert!(!dir.path().join("reports/2026-09-01").exists());
    assert!(dir.path().join("reports/2026-10-30").exists());
}

#[test]
fn with_no_config_it_runs_the_sample_from_the_current_folder() {
    let dir = tempfile::tempdir().unwrap();
    practice(dir.path(), "");
    std::fs::rename(dir.path().join("inbox"), dir.path().join("sample_data")).unwrap();
    let r = run_in(dir.path(), &["run"]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.starts_with("accesswatch run for 2026-11-22"),
        "the newest data's day: {}",
        r.stdout
    );
    assert!(dir
        .path()
        .join("accesswatch-out/reports/2026-11-22/patients.csv")
        .exists());
    assert!(dir
        .path()
        .join("accesswatch-out/store/_manifest.json")
        .exists());
}

#[test]
fn a_missing_inbox_fails_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "c.toml",
        "inbox = \"nowhere\"\nstore = \"store\"\nreports = \"reports\"\n",
    );
    let r = nightly(&cfg, "2026-11-22", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("inbox") && r.stderr.contains("nowhere"),
        "{}",
        r.stderr
    );
    let log = std::fs::read_to_string(dir.path().join("reports/runs.jsonl")).unwrap();
    assert!(
        log.contains("\"status\":\"failed\"") && log.contains("not a folder"),
        "{log}"
    );
}

#[test]
fn a_verbose_run_logs_no_identifier_and_warns_about_open_folders() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = practice(dir.path(), "");
    std::fs::create_dir_all(dir.path().join("reports")).unwrap();
    std::fs::set_permissions(
        dir.path().join("reports"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let r = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "-vv",
        "--log-format",
        "json",
        "run",
        "--as-of",
        "2026-11-22",
    ]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("can be read by other users"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.lines().filter(|l| l.starts_with('{')).count() > 5,
        "JSON log lines: {}",
        r.stderr
    );
    // -vv times detection's phases, up to the run folder written.
    for phase in [
        "\"phase\":\"context\"",
        "\"phase\":\"pass one: a batch's sessions built, and the batch before summed up\"",
        "\"phase\":\"pass one: the last batch summed up\"",
        "\"phase\":\"pass two: a batch's rules, scores and charts, and the next batch read\"",
        "run folder written",
    ] {
        assert!(r.stderr.contains(phase), "{phase} in {}", r.stderr);
    }
    // Every NHS number in the inbox, in any spelling, is absent from the logs and the printed summary.
    let mut numbers = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(dir.path().join("inbox")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for field in text.split([',', '\n']) {
            let digits: String = field.chars().filter(char::is_ascii_digit).collect();
            if digits.len() == 10 && accesswatch::ingest::validate::nhs_number(&digits).is_ok() {
                numbers.insert(digits);
            }
        }
    }
    assert!(numbers.len() > 250, "{}", numbers.len());
    for n in &numbers {
        assert!(
            !r.stderr.contains(n.as_str()) && !r.stdout.contains(n.as_str()),
            "an NHS number reached the logs"
        );
    }
    let log = std::fs::read_to_string(dir.path().join("reports/runs.jsonl")).unwrap();
    assert!(numbers.iter().all(|n| !log.contains(n.as_str())));
}

#[test]
fn a_pseudonymising_night_without_its_key_stops_before_ingesting() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = practice(
        dir.path(),
        "pseudonymise = true\npseudonymise_key_file = \"missing-key\"\n",
    );
    let r = nightly(&cfg, "2026-11-22", &[("ACCESSWATCH_KEY_FILE", "")]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("missing-key"), "{}", r.stderr);
    assert!(!dir.path().join("store/audit").exists(), "nothing ingested");
    assert!(!dir.path().join("reports/2026-11-22").exists());
    // With the key in place, the night's exports carry pseudonyms; `--no-pseudonymise` turns it off for one run.
    write(
        dir.path(),
        "missing-key",
        "a-practice-secret-of-32-bytes-aa",
    );
    let r = nightly(&cfg, "2026-11-22", &[("ACCESSWATCH_KEY_FILE", "")]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let patients =
        std::fs::read_to_string(dir.path().join("reports/2026-11-22/patients.csv")).unwrap();
    assert!(
        patients.lines().skip(1).all(|l| l.starts_with("nhs-")),
        "{patients}"
    );
    let r = run_env(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "run",
            "--as-of",
            "2026-11-22",
            "--no-pseudonymise",
        ],
        &[("ACCESSWATCH_KEY_FILE", "")],
    );
    assert_eq!(r.code, 0, "{}", r.stderr); // the files are already in the store: nothing new is quarantined
    let patients =
        std::fs::read_to_string(dir.path().join("reports/2026-11-22/patients.csv")).unwrap();
    assert!(
        patients
            .lines()
            .skip(1)
            .all(|l| l.as_bytes()[0].is_ascii_digit()),
        "{patients}"
    );
}

/// A nightly run whose files may grow to `max_bytes` at most: past it a write fails with EFBIG, as a full disk fails
/// one with ENOSPC (SIGXFSZ is ignored so that the write returns the error rather than killing the process).
fn nightly_on_a_small_disk(config: &Path, max_bytes: u64) -> Run {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_accesswatch"));
    cmd.args([
        "--config",
        config.to_str().unwrap(),
        "run",
        "--as-of",
        "2026-11-22",
    ])
    .env_remove("ACCESSWATCH_CONFIG");
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: max_bytes,
                rlim_max: max_bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn last_run_record(dir: &Path) -> serde_json::Value {
    let log = std::fs::read_to_string(dir.join("reports/runs.jsonl")).unwrap();
    serde_json::from_str(log.lines().last().unwrap()).unwrap()
}

#[test]
fn a_full_disk_stops_the_run_with_the_path_and_leaves_the_last_good_report() {
    let clean = tempfile::tempdir().unwrap();
    let clean_cfg = practice(clean.path(), "");
    assert_eq!(nightly(&clean_cfg, "2026-11-22", &[]).code, 3);

    // 1. The store fills up while the audit file is stored: the run stops before detection, names the file it could
    //    not write, writes no report, and the runs log records the failure with the rows read before it.
    let dir = tempfile::tempdir().unwrap();
    let cfg = practice(dir.path(), "");
    let r = nightly_on_a_small_disk(&cfg, 12_000);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let store = dir.path().join("store").display().to_string();
    assert!(
        r.stderr.contains("the store could not be written")
            && r.stderr
                .contains(&format!("cannot write {store}/_tmp/part-")),
        "{}",
        r.stderr
    );
    assert!(!dir.path().join("reports/2026-11-22").exists());
    let rec = last_run_record(dir.path());
    assert_eq!(rec["status"], "failed", "{rec}");
    assert!(rec["rows_read"].as_u64().unwrap() > 0, "{rec}");
    assert!(rec["error"].as_str().unwrap().contains(&store), "{rec}");

    // 2. With room again, the same night completes and equals a clean run (exit 0: the files with quarantined rows
    //    were stored by the first run, before the disk filled).
    let r = nightly(&cfg, "2026-11-22", &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        outputs(dir.path(), "2026-11-22"),
        outputs(clean.path(), "2026-11-22")
    );

    // 3. The disk fills while the report is written: the error names the report file, the last good report is
    //    untouched, and no half-built folder is left beside it.
    let r = nightly_on_a_small_disk(&cfg, 20_000);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let reports = dir.path().join("reports").display().to_string();
    assert!(
        r.stderr
            .contains(&format!("cannot write {reports}/.2026-11-22.tmp-")),
        "{}",
        r.stderr
    );
    assert_eq!(
        outputs(dir.path(), "2026-11-22"),
        outputs(clean.path(), "2026-11-22")
    );
    let debris: Vec<_> = std::fs::read_dir(dir.path().join("reports"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(debris.is_empty(), "{debris:?}");
    assert_eq!(last_run_record(dir.path())["status"], "failed");
}
