//! `accesswatch query`: every shipped query runs on the sample and matches its expected output; headers,
//! parameters, formats and errors.
//!
//! Expected outputs live in `tests/expected/queries/<name>.csv`. After an intended change to detection or to a
//! query, regenerate them with `ACCESSWATCH_BLESS=1 cargo test --release --test test_query` (the test then fails, asking
//! for a review of the diff) and run it again without it.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sample_data");

/// The sample run through the nightly job, so the store and a past run both exist.
fn sample_practice(dir: &Path) -> PathBuf {
    let cfg = write(
        dir,
        "c.toml",
        &format!("inbox = \"{SAMPLE}\"\nstore = \"store\"\nreports = \"reports\"\n"),
    );
    let r = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "run",
        "--as-of",
        "2026-11-22",
    ]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    cfg
}

/// The patient the timeline query is run for: the most urgent in the sample's run.
fn first_flagged(dir: &Path) -> String {
    let mut r = csv::Reader::from_path(dir.join("reports/2026-11-22/patients.csv")).unwrap();
    r.records().next().unwrap().unwrap()[0].to_string()
}

#[test]
fn every_shipped_query_runs_on_the_sample_and_matches_its_expected_output() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sample_practice(dir.path());
    let c = cfg.to_str().unwrap();
    let list = run(&["query", "--list"]);
    assert_eq!(list.code, 0);
    let names: Vec<String> = list
        .stdout
        .lines()
        .filter(|l| !l.starts_with(' '))
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    let nhs = first_flagged(dir.path());
    for name in &names {
        let mut args = vec!["--config", c, "query", name.as_str(), "--format", "csv"];
        let param = format!("nhs_number={nhs}");
        if name == "patient_timeline" {
            args.extend(["--param", param.as_str()]);
        }
        let r = run(&args);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        assert!(
            r.stdout.lines().count() > 1,
            "{name} returns rows on the sample"
        );
        assert_golden(&format!("queries/{name}.csv"), &r.stdout);
    }
}

#[test]
fn formats_parameters_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sample_practice(dir.path());
    let c = cfg.to_str().unwrap();

    // The same answer as a table, as JSON, and as Parquet.
    let table = run(&["--config", c, "query", "hour_of_day_profile"]);
    assert_eq!(table.code, 0);
    assert!(table.stdout.contains("hour") && table.stdout.contains("patients"));
    let json = run(&[
        "--config",
        c,
        "query",
        "hour_of_day_profile",
        "--format",
        "json",
    ]);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 24);
    let out = dir.path().join("hours.parquet");
    let r = run(&[
        "--config",
        c,
        "query",
        "hour_of_day_profile",
        "--format",
        "parquet",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("24 rows written"));
    let py = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, pyarrow.parquet as pq; print(pq.read_table(sys.argv[1]).num_rows)",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&py.stdout).trim(), "24");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Parameters change the answer; unknown ones and unsafe values are refused.
    let few = run(&[
        "--config",
        c,
        "query",
        "devices_per_patient",
        "--format",
        "csv",
        "--param",
        "min_devices=3",
    ]);
    let many = run(&[
        "--config",
        c,
        "query",
        "devices_per_patient",
        "--format",
        "csv",
    ]);
    assert!(few.stdout.lines().count() < many.stdout.lines().count());
    let r = run(&[
        "--config",
        c,
        "query",
        "devices_per_patient",
        "--param",
        "colour=red",
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("queries/devices_per_patient.sql")
            && r.stderr.contains("no parameter 'colour'"),
        "{}",
        r.stderr
    );
    let r = run(&[
        "--config",
        c,
        "query",
        "patient_timeline",
        "--param",
        "nhs_number=1' OR '1'='1",
    ]);
    assert_eq!(r.code, 1);

    // Inline SQL, a .sql file, and errors that name the file.
    let r = run(&[
        "--config",
        c,
        "query",
        "--sql",
        "SELECT COUNT(*) AS n FROM quarantine",
        "--format",
        "csv",
    ]);
    assert_eq!(r.stdout, "n\n9\n");
    let bad = write(
        dir.path(),
        "bad.sql",
        "-- title: Bad\n-- question: Does it fail well?\nSELECT nope FROM audit\n",
    );
    let r = run(&["--config", c, "query", bad.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("bad.sql") && r.stderr.contains("nope"),
        "{}",
        r.stderr
    );
    let missing = write(
        dir.path(),
        "missing.sql",
        "-- title: Missing\n-- question: Unknown table?\nSELECT * FROM patients_table\n",
    );
    let r = run(&["--config", c, "query", missing.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("missing.sql") && r.stderr.contains("tables: audit"),
        "{}",
        r.stderr
    );
    let headless = write(dir.path(), "headless.sql", "SELECT 1\n");
    let r = run(&["--config", c, "query", headless.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("headless.sql") && r.stderr.contains("title"),
        "{}",
        r.stderr
    );
    let r = run(&["--config", c, "query", "no_such_query"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("--list"));
}

#[test]
fn exports_can_be_pseudonymised_with_a_key_from_a_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sample_practice(dir.path());
    let c = cfg.to_str().unwrap();
    let args = [
        "--config",
        c,
        "query",
        "devices_on_several_patients",
        "--format",
        "csv",
        "--pseudonymise",
    ];
    // No key: refused, saying how to give one.
    let r = run_env(&args, &[("ACCESSWATCH_KEY_FILE", "")]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("ACCESSWATCH_KEY_FILE"), "{}", r.stderr);
    let key_a = write(dir.path(), "key-a", "a-practice-secret-of-32-bytes-aa");
    let key_b = write(dir.path(), "key-b", "another-practice-secret-32-bytes");
    let short = write(dir.path(), "key-short", "tiny");
    let r = run_env(&args, &[("ACCESSWATCH_KEY_FILE", short.to_str().unwrap())]);
    assert!(
        r.code == 1 && r.stderr.contains("fewer than 16 bytes"),
        "{}",
        r.stderr
    );

    let plain = run(&[
        "--config",
        c,
        "query",
        "devices_on_several_patients",
        "--format",
        "csv",
    ])
    .stdout;
    let a1 = run_env(&args, &[("ACCESSWATCH_KEY_FILE", key_a.to_str().unwrap())]);
    let a2 = run_env(&args, &[("ACCESSWATCH_KEY_FILE", key_a.to_str().unwrap())]);
    let b = run_env(&args, &[("ACCESSWATCH_KEY_FILE", key_b.to_str().unwrap())]);
    assert_eq!(a1.code, 0, "{}", a1.stderr);
    assert_eq!(
        a1.stdout, a2.stdout,
        "the same key gives the same pseudonyms"
    );
    assert_ne!(a1.stdout, b.stdout, "another key gives others");
    let plain_devices: Vec<&str> = plain
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    for d in &plain_devices {
        assert!(!a1.stdout.contains(d), "device {d} leaked");
    }
    assert!(a1
        .stdout
        .lines()
        .skip(1)
        .all(|l| l.starts_with("dev-") && l.split(',').next().unwrap().len() == 28));
    // Counts survive pseudonymisation.
    assert_eq!(plain.lines().count(), a1.stdout.lines().count());

    // A config that pseudonymises by default, and the explicit way out.
    let by_default = write(
        dir.path(),
        "p.toml",
        &format!(
            "{}pseudonymise = true\npseudonymise_key_file = \"key-a\"\n",
            std::fs::read_to_string(&cfg).unwrap()
        ),
    );
    let p = by_default.to_str().unwrap();
    let nhs = first_flagged(dir.path());
    let param = format!("nhs_number={nhs}");
    let r = run(&[
        "--config",
        p,
        "query",
        "flagged_patients_by_run",
        "--format",
        "csv",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains(&nhs) && r.stdout.contains("nhs-"));
    let r = run(&[
        "--config",
        p,
        "query",
        "patient_timeline",
        "--param",
        &param,
        "--format",
        "csv",
        "--no-pseudonymise",
    ]);
    // The patient's real device ids, from the input; a pseudonym would not be one of them.
    let audit = read_csv_rows(&std::path::Path::new(SAMPLE).join("audit.csv"));
    let devices: Vec<&str> = audit
        .iter()
        .filter(|r| r.get("nhs_number").map(String::as_str) == Some(nhs.as_str()))
        .filter_map(|r| r.get("device_id").map(String::as_str))
        .filter(|d| !d.is_empty())
        .collect();
    assert!(!devices.is_empty());
    assert!(
        r.stdout.lines().count() > 1 && devices.iter().any(|d| r.stdout.contains(d)),
        "--no-pseudonymise shows the patient's real devices: {}",
        r.stdout
    );
}
