//! `accesswatch detect` and `accesswatch rules` through the real binary: the run folder's files exactly as the
//! data contract names them, deterministic re-runs, and the rule catalogue's text.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

/// `accesswatch [--config FILE] detect` for the sample's as-of day into `out`, with extra arguments and environment.
fn detect_day(
    store: &std::path::Path,
    out: &std::path::Path,
    config: Option<&std::path::Path>,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let mut args = Vec::new();
    if let Some(c) = config {
        args.extend(["--config", c.to_str().unwrap()]);
    }
    args.extend([
        "detect",
        "--store",
        store.to_str().unwrap(),
        "--as-of",
        "2026-11-22",
        "--out",
        out.to_str().unwrap(),
    ]);
    args.extend_from_slice(extra);
    run_env(&args, env)
}

fn read_csv(path: &std::path::Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let h = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(str::to_string).collect())
        .collect();
    (h, rows)
}

#[test]
fn detect_writes_the_contracts_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = sample_store(dir.path());
    let out = dir.path().join("reports");
    let r = detect_day(&store, &out, None, &[], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let run_dir = out.join("2026-11-22");
    assert!(
        r.stdout.contains("patients analysed")
            && r.stdout.contains(&format!("report: {}", run_dir.display())),
        "{}",
        r.stdout
    );

    let (h, patients) = read_csv(&run_dir.join("patients.csv"));
    assert_eq!(
        h,
        [
            "nhs_number",
            "risk_score",
            "risk_level",
            "rules",
            "summary",
            "case_id",
            "case_status",
            "first_flagged"
        ]
    );
    assert!(!patients.is_empty());
    let scores: Vec<u32> = patients.iter().map(|p| p[1].parse().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "most urgent first");
    for p in &patients {
        assert!(["high", "medium", "low"].contains(&p[2].as_str()));
        assert!(
            !p[4].is_empty() && p[4].ends_with('.'),
            "every patient has a plain summary"
        );
        assert!(accesswatch::ingest::validate::nhs_number(&p[0]).is_ok());
        // The first night the store has seen: every flagged patient opens a new case; low risk opens none.
        let flagged = p[2] != "low";
        assert_eq!(
            !p[5].is_empty(),
            flagged,
            "a case for each flagged patient: {p:?}"
        );
        if flagged {
            assert_eq!(
                (p[6].as_str(), p[7].as_str()),
                ("new", "2026-11-22"),
                "{p:?}"
            );
        } else {
            assert_eq!((p[6].as_str(), p[7].as_str()), ("", ""), "{p:?}");
        }
    }
    let (h, findings) = read_csv(&run_dir.join("findings.csv"));
    assert_eq!(
        h,
        [
            "finding_id",
            "nhs_number",
            "rule_id",
            "severity",
            "score",
            "first_at",
            "last_at",
            "device_id",
            "event_count",
            "explanation"
        ]
    );
    let rule_ids: Vec<&str> = accesswatch::detect::rules::CATALOGUE
        .iter()
        .map(|r| r.meta.id)
        .collect();
    for f in &findings {
        assert!(rule_ids.contains(&f[2].as_str()), "{}", f[2]);
        assert!(f[5].ends_with('Z') && f[6].ends_with('Z'));
        assert!(
            f[9].len() > 60,
            "every finding is explained in a sentence: {}",
            f[9]
        );
        assert!(patients
            .iter()
            .any(|p| p[0] == f[1] && p[3].split(';').any(|r| r == f[2])));
    }
    // The patients flagged in the sample are mostly the monitored ones.
    let (_, truth) = read_csv(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sample_data.truth.csv"
    )));
    let flagged: Vec<&Vec<String>> = patients.iter().filter(|p| p[2] != "low").collect();
    let monitored = |n: &str| truth.iter().any(|t| t[0] == n && t[1] == "monitored");
    let hits = flagged.iter().filter(|p| monitored(&p[0])).count();
    assert!(
        hits * 10 >= flagged.len() * 8,
        "precision on the sample: {hits}/{}",
        flagged.len()
    );

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("summary.json")).unwrap()).unwrap();
    for key in [
        "version",
        "config_hash",
        "as_of",
        "input",
        "detection",
        "patients_flagged",
        "findings_per_rule",
        "seconds",
    ] {
        assert!(summary.get(key).is_some(), "summary.json lacks {key}");
    }
    assert_eq!(summary["input"]["quarantined"], 9);
    assert_eq!(summary["findings_per_rule"].as_object().unwrap().len(), 9);
    assert_eq!(
        summary["findings_per_rule"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        findings.len() as u64
    );
    assert!(summary["seconds"]["detect"].is_number());

    // findings.parquet holds the same rows, readable by an independent reader.
    let py = std::process::Command::new("python3")
        .args(["-c", "import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); print(t.num_rows, t.schema.field('first_at').type)", run_dir.join("findings.parquet").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&py.stdout).trim(),
        format!("{} timestamp[us, tz=UTC]", findings.len())
    );

    for name in [
        "patients.csv",
        "findings.csv",
        "findings.parquet",
        "summary.json",
    ] {
        let mode = std::fs::metadata(run_dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    assert_eq!(
        std::fs::metadata(&run_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn re_running_a_day_gives_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = sample_store(dir.path());
    let out = dir.path().join("reports");
    assert_eq!(detect_day(&store, &out, None, &[], &[]).code, 0);
    let first: Vec<_> = tree(&out.join("2026-11-22"))
        .into_iter()
        .filter(|(p, _)| p != "summary.json")
        .collect();
    assert_eq!(detect_day(&store, &out, None, &[], &[]).code, 0);
    let second: Vec<_> = tree(&out.join("2026-11-22"))
        .into_iter()
        .filter(|(p, _)| p != "summary.json")
        .collect();
    assert_eq!(first, second);
    // Nothing is left beside the run folder.
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["2026-11-22"]);
}

#[test]
fn an_empty_store_gives_an_empty_run_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("reports");
    let r = run(&[
        "detect",
        "--store",
        dir.path().join("none").to_str().unwrap(),
        "--as-of",
        "2026-11-22",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (_, rows) = read_csv(&out.join("2026-11-22/patients.csv"));
    assert!(rows.is_empty());
    let r = run(&[
        "detect",
        "--store",
        "x",
        "--lookback-days",
        "7",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("--lookback-days"), "{}", r.stderr);
}

#[test]
fn the_rule_catalogue_lists_and_explains_every_rule() {
    let r = run(&["rules"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout.lines().count(), 9);
    for rule in accesswatch::detect::rules::CATALOGUE.iter() {
        assert!(r.stdout.contains(rule.meta.id));
        let e = run(&["rules", "--explain", rule.meta.id]);
        assert_eq!(e.code, 0);
        assert!(
            e.stdout.contains("What it looks for")
                && e.stdout.contains("Known benign look-alikes")
                && e.stdout.contains("What to do")
        );
        assert!(!rule.meta.benign_lookalikes.is_empty());
    }
    let e = run(&["rules", "--explain", "nope"]);
    assert_eq!(e.code, 1);
    assert!(e.stderr.contains("no rule 'nope'"));
    assert_golden(
        "rules_explain_unusual_hour.txt",
        &run(&["rules", "--explain", "unusual_hour"]).stdout,
    );
}

#[test]
fn detect_exports_can_be_pseudonymised_and_the_leads_page_keeps_real_identifiers() {
    let dir = tempfile::tempdir().unwrap();
    let store = sample_store(dir.path());
    let plain_out = dir.path().join("plain");
    let pseudo_out = dir.path().join("pseudo");
    let detect = |out: &std::path::Path, extra: &[&str], env: &[(&str, &str)]| {
        detect_day(&store, out, None, extra, env)
    };
    // No key: refused before anything is written.
    let r = detect(
        &pseudo_out,
        &["--pseudonymise"],
        &[("ACCESSWATCH_KEY_FILE", "")],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("ACCESSWATCH_KEY_FILE"), "{}", r.stderr);
    assert!(!pseudo_out.join("2026-11-22").exists());

    let key = write(dir.path(), "key", "a-practice-secret-of-32-bytes-aa");
    let env = [("ACCESSWATCH_KEY_FILE", key.to_str().unwrap())];
    assert_eq!(detect(&plain_out, &[], &[]).code, 0);
    let r = detect(&pseudo_out, &["--pseudonymise"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plain = plain_out.join("2026-11-22");
    let pseudo = pseudo_out.join("2026-11-22");

    // Every identifier in the store, and the short form the explanations use for devices.
    let audit = read_kind(&store, "audit");
    let mut secrets: Vec<String> = Vec::new();
    for col in ["nhs_number", "device_id", "account_id", "ip_address"] {
        secrets.extend(strings(&audit, col).into_iter().flatten());
    }
    let devices: Vec<String> = strings(&audit, "device_id").into_iter().flatten().collect();
    secrets.extend(
        devices
            .iter()
            .map(|d| d.chars().take(12).collect::<String>()),
    );
    secrets.sort();
    secrets.dedup();
    let parquet = std::fs::read(pseudo.join("findings.parquet")).unwrap();
    use polars::prelude::SerReader;
    let findings_frame = polars::prelude::ParquetReader::new(std::io::Cursor::new(parquet))
        .finish()
        .unwrap();
    let mut parquet_text = String::new();
    for col in ["finding_id", "nhs_number", "device_id", "explanation"] {
        for v in strings(&findings_frame, col).into_iter().flatten() {
            parquet_text.push_str(&v);
            parquet_text.push('\n');
        }
    }
    for (name, text) in [
        (
            "patients.csv",
            std::fs::read_to_string(pseudo.join("patients.csv")).unwrap(),
        ),
        (
            "findings.csv",
            std::fs::read_to_string(pseudo.join("findings.csv")).unwrap(),
        ),
        ("findings.parquet", parquet_text),
    ] {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{name} leaks an identifier"
            );
        }
    }

    // The same patients, scores, rules and finding counts; only the identifiers differ.
    let (ph, prows) = read_csv(&plain.join("patients.csv"));
    let (qh, qrows) = read_csv(&pseudo.join("patients.csv"));
    assert_eq!(ph, qh);
    assert_eq!(prows.len(), qrows.len());
    assert!(!qrows.is_empty());
    for (p, q) in prows.iter().zip(&qrows) {
        assert_eq!(p[1..], q[1..]);
        assert!(q[0].starts_with("nhs-") && q[0].len() == 28, "{}", q[0]);
    }
    let (_, pf) = read_csv(&plain.join("findings.csv"));
    let (_, qf) = read_csv(&pseudo.join("findings.csv"));
    assert_eq!(pf.len(), qf.len());
    assert!(
        qf.iter().any(|f| f[9].contains("(dev-")),
        "an explanation names a pseudonymised device"
    );

    // The lead's page and the summary.
    let html = std::fs::read_to_string(pseudo.join("report.html")).unwrap();
    let first = &prows[0][0];
    assert!(html.contains(&format!("{} {} {}", &first[..3], &first[3..6], &first[6..])));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pseudo.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["pseudonymised"], true);

    // The same key gives the same files.
    let again = dir.path().join("again");
    assert_eq!(detect(&again, &["--pseudonymise"], &env).code, 0);
    for f in ["patients.csv", "findings.csv", "findings.parquet"] {
        assert_eq!(
            std::fs::read(pseudo.join(f)).unwrap(),
            std::fs::read(again.join("2026-11-22").join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn detection_in_batches_of_patients_gives_the_same_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = sample_store(dir.path());
    let detect = |name: &str, batch_events: u64| {
        let cfg = write(
            dir.path(),
            &format!("{name}.toml"),
            &format!("[detect]\nbatch_events = {batch_events}\n"),
        );
        let out = dir.path().join(name);
        let r = detect_day(&store, &out, Some(&cfg), &[], &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        out.join("2026-11-22")
    };
    let whole = detect("whole", 10_000_000);
    // The sample's look-back holds about 15,000 events: 1,000 a batch reads it in 15 batches of patients.
    let batched = detect("batched", 1_000);
    for f in [
        "patients.csv",
        "findings.csv",
        "findings.parquet",
        "report.html",
    ] {
        assert_eq!(
            std::fs::read(whole.join(f)).unwrap(),
            std::fs::read(batched.join(f)).unwrap(),
            "{f} differs when patients are read in batches"
        );
    }
    let summary = |d: &std::path::Path| {
        let mut j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap())
                .unwrap();
        j["seconds"] = serde_json::Value::Null;
        j["config_hash"] = serde_json::Value::Null;
        let batches = j["detection"]["batches"].as_u64().unwrap();
        let events = j["detection"]["coverage"]["events"].as_u64().unwrap();
        j["detection"]["batches"] = serde_json::Value::Null;
        (j, (batches, events))
    };
    // The spilled sessions of the batched run are gone with it.
    let left: Vec<_> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".detect-spill"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let (a, (one, events)) = summary(&whole);
    let (b, (many, _)) = summary(&batched);
    assert_eq!(a, b);
    // One batch under 10M events; with 1,000 a batch, the window's events over 1,000 (at most 100 batches).
    assert_eq!(one, 1);
    assert_eq!(many, events.div_ceil(1_000).min(100), "{events} events");
    assert!(many > 1);
}
