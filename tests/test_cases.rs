//! Cases across nights and the lead's reviews: a generated practice replayed night by night through the binary.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::*;

const LAST_NIGHT: u32 = 14;

fn night(n: u32) -> String {
    format!("2026-11-{n:02}")
}

struct Practice {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: PathBuf,
    reports: PathBuf,
    truth: HashMap<String, String>,
}

/// A generated practice of 600 patients over 90 days to 14 November, ingested.
fn practice() -> Practice {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let data = root.join("practice");
    let r = run(&[
        "generate",
        "--out",
        data.to_str().unwrap(),
        "--patients",
        "600",
        "--days",
        "90",
        "--seed",
        "4",
        "--as-of",
        &night(LAST_NIGHT),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let store = root.join("store");
    let files: Vec<String> = ["audit", "entries", "appointments", "proxies"]
        .iter()
        .map(|k| data.join(format!("{k}.csv")).display().to_string())
        .collect();
    let mut args = vec!["ingest", "--store", store.to_str().unwrap()];
    args.extend(files.iter().map(String::as_str));
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let truth = read_csv_rows(&root.join("practice.truth.csv"))
        .into_iter()
        .map(|row| (row["nhs_number"].clone(), row["label"].clone()))
        .collect();
    Practice {
        reports: root.join("reports"),
        _dir: dir,
        root,
        store,
        truth,
    }
}

impl Practice {
    fn detect(&self, n: u32) -> Vec<HashMap<String, String>> {
        let r = run(&[
            "detect",
            "--store",
            self.store.to_str().unwrap(),
            "--out",
            self.reports.to_str().unwrap(),
            "--as-of",
            &night(n),
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        read_csv_rows(&self.reports.join(night(n)).join("patients.csv"))
    }

    fn review(&self, nhs: &str, outcome: &str, note: &str) -> Run {
        run(&[
            "review",
            nhs,
            "--outcome",
            outcome,
            "--note",
            note,
            "--by",
            "Dr Lead",
            "--store",
            self.store.to_str().unwrap(),
        ])
    }

    fn cases(&self, status: &str) -> Vec<serde_json::Value> {
        let r = run(&[
            "cases",
            "--status",
            status,
            "--json",
            "--store",
            self.store.to_str().unwrap(),
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        json(&r).as_array().unwrap().clone()
    }

    fn case_file(&self, n: u32) -> Vec<u8> {
        std::fs::read(
            self.store
                .join("cases")
                .join(format!("night={}.parquet", night(n))),
        )
        .unwrap()
    }
}

fn row<'a>(rows: &'a [HashMap<String, String>], nhs: &str) -> Option<&'a HashMap<String, String>> {
    rows.iter().find(|r| r["nhs_number"] == nhs)
}

fn case_ids(cases: &[serde_json::Value]) -> Vec<String> {
    cases
        .iter()
        .map(|c| c["case_id"].as_str().unwrap().to_string())
        .collect()
}

/// A new phone for the watcher of `nhs` on night 10: two sessions in the small hours on the patient's own account,
/// reading what a watcher reads. Returns the CSV's path.
fn watchers_new_phone(p: &Practice, nhs: &str) -> PathBuf {
    let audit = std::fs::read_to_string(p.root.join("practice/audit.csv")).unwrap();
    let account = audit
        .lines()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[2] == nhs)
        .map(|f| f[3].to_string())
        .unwrap();
    let mut text = String::from("event_id,occurred_at,nhs_number,account_id,actor_role,device_id,user_agent,ip_address,channel,session_id,action,section,outcome\n");
    let mut id = 0;
    for (session, hour) in [("sess-new-watch-1", "01"), ("sess-new-watch-2", "02")] {
        for (minute, action, section) in [
            ("10", "login", ""),
            ("11", "view", "consultations"),
            ("12", "view", "problems"),
            ("13", "view", "letters"),
            ("14", "view", "test_results"),
            ("15", "logout", ""),
        ] {
            id += 1;
            text += &format!(
                "new-watch-{id},{}T{hour}:{minute}:00Z,{nhs},{account},patient,dev-new-watcher-phone,NHSApp/2.41.0 (Android 15; Galaxy S24),203.0.113.77,nhs_app,{session},{action},{section},success\n",
                night(10)
            );
        }
    }
    write(&p.root, "new-phone.csv", &text)
}

#[test]
fn reviewed_cases_stay_reviewed_new_evidence_reopens_and_a_night_reruns_the_same() {
    let p = practice();
    let mut by_night = HashMap::new();
    for n in 1..=7 {
        by_night.insert(n, p.detect(n));
    }
    let seventh = &by_night[&7];
    // Every flagged patient has a case; the statuses on a night after the first are continuing (or new).
    for r in seventh {
        assert_eq!(
            r["case_id"].is_empty(),
            r["risk_level"] == "low",
            "a case for every flagged patient and only for them: {r:?}"
        );
    }
    let flagged = |label: &str| -> Vec<String> {
        seventh
            .iter()
            .filter(|r| !r["case_id"].is_empty() && p.truth[&r["nhs_number"]] == label)
            .map(|r| r["nhs_number"].clone())
            .collect()
    };
    let benign: Vec<String> = flagged("benign").into_iter().take(2).collect();
    assert_eq!(
        benign.len(),
        2,
        "night 7 flags at least two benign patients"
    );
    let watched = flagged("monitored")[0].clone();

    // Night 7: the lead reviews two benign patients, and (wrongly) one monitored patient, as benign.
    for nhs in &benign {
        let r = p.review(
            nhs,
            "benign",
            "Known second device; confirmed with the patient in person",
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stdout.contains("marked benign by Dr Lead"),
            "{}",
            r.stdout
        );
    }
    let r = p.review(
        &watched,
        "benign",
        "Partner's tablet, patient says it is fine",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let reviewed_ids: Vec<String> = benign
        .iter()
        .map(|n| row(seventh, n).unwrap()["case_id"].clone())
        .collect();
    let open = case_ids(&p.cases("open"));
    for id in &reviewed_ids {
        assert!(!open.contains(id), "{id} reviewed benign is still open");
    }
    assert_eq!(
        case_ids(&p.cases("reviewed")).len(),
        benign.len() + 1,
        "the benign patients' cases and the watched patient's"
    );

    // The watcher's new phone, sent in after night 7, dated night 10.
    let extra = watchers_new_phone(&p, &watched);
    let r = run(&[
        "ingest",
        "--store",
        p.store.to_str().unwrap(),
        extra.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    for n in 8..=LAST_NIGHT {
        let rows = p.detect(n);
        for nhs in &benign {
            if let Some(r) = row(&rows, nhs).filter(|r| !r["case_id"].is_empty()) {
                assert_eq!(r["case_status"], "reviewed", "night {n}: {r:?}");
            }
        }
        let open = case_ids(&p.cases("open"));
        for id in &reviewed_ids {
            assert!(!open.contains(id), "night {n}: {id} is listed as open");
        }
        let html = std::fs::read_to_string(p.reports.join(night(n)).join("report.html")).unwrap();
        for nhs in &benign {
            let spaced = format!("{} {} {}", &nhs[..3], &nhs[3..6], &nhs[6..]);
            assert!(
                !html.contains(&spaced),
                "night {n}: a benign-reviewed patient is listed"
            );
        }
        let w = row(&rows, &watched).unwrap();
        let status = w["case_status"].as_str();
        if n < 10 {
            assert_eq!(status, "reviewed", "night {n}: {w:?}");
        } else {
            assert_eq!(status, "new_evidence", "night {n}: {w:?}");
            assert!(case_ids(&p.cases("open")).contains(&w["case_id"]));
        }
        by_night.insert(n, rows);
    }
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(p.reports.join(night(LAST_NIGHT)).join("summary.json")).unwrap(),
    )
    .unwrap();
    let counted: u64 = ["new", "new_evidence", "continuing", "reviewed"]
        .iter()
        .map(|s| summary["cases"][s].as_u64().unwrap())
        .sum();
    let flagged_last = by_night[&LAST_NIGHT]
        .iter()
        .filter(|r| !r["case_id"].is_empty())
        .count() as u64;
    assert_eq!(counted, flagged_last, "{summary}");
    assert!(summary["cases"]["new_evidence"].as_u64().unwrap() >= 1);

    // Re-running night 12 gives the same patients.csv and the same case file.
    let patients_12 = std::fs::read(p.reports.join(night(12)).join("patients.csv")).unwrap();
    let cases_12 = p.case_file(12);
    p.detect(12);
    assert_eq!(
        std::fs::read(p.reports.join(night(12)).join("patients.csv")).unwrap(),
        patients_12
    );
    assert_eq!(p.case_file(12), cases_12);
}

#[test]
fn a_review_needs_a_case_a_valid_number_and_a_note() {
    let p = practice();
    p.detect(7);
    let rows = read_csv_rows(&p.reports.join(night(7)).join("patients.csv"));
    let unflagged = rows.iter().find(|r| r["case_id"].is_empty()).unwrap();
    let r = p.review(&unflagged["nhs_number"], "benign", "x");
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("has no case"), "{}", r.stderr);
    let r = p.review("9434765918", "benign", "x");
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("Modulus 11"), "{}", r.stderr);
    let flagged = rows.iter().find(|r| !r["case_id"].is_empty()).unwrap();
    let r = p.review(&flagged["nhs_number"], "concern", "  ");
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("needs a note"), "{}", r.stderr);
    // A concern keeps the case open, with the review shown.
    let r = p.review(
        &flagged["nhs_number"],
        "concern",
        "Called the patient safely; watching",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let open = p.cases("open");
    let c = open
        .iter()
        .find(|c| c["case_id"] == flagged["case_id"].as_str())
        .unwrap();
    assert_eq!(c["status"], "reviewed");
    assert_eq!(c["last_review"]["outcome"], "concern");
    assert_eq!(c["last_review"]["by"], "Dr Lead");
    assert_eq!(
        c["last_review"]["score"].as_u64().unwrap().to_string(),
        flagged["risk_score"]
    );
    // Nothing in the review log can be read without the store: the log is owner-only.
    let log = p.store.join("reviews");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&log).unwrap().permissions())
            & 0o077,
        0
    );
}

#[test]
fn evaluate_replays_nights_and_counts_nights_to_flag_and_review_load_from_the_nightly_reports() {
    let p = practice();
    // Each night through `detect`, as the nightly job would run it.
    let mut first_flag: HashMap<String, u32> = HashMap::new();
    for n in 1..=LAST_NIGHT {
        for r in p.detect(n) {
            if r["risk_level"] != "low" {
                first_flag.entry(r["nhs_number"].clone()).or_insert(n);
            }
        }
    }
    let before = tree(&p.store);
    let r = run(&[
        "evaluate",
        "--truth",
        p.root.join("practice.truth.csv").to_str().unwrap(),
        "--store",
        p.store.to_str().unwrap(),
        "--nights",
        &LAST_NIGHT.to_string(),
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        tree(&p.store),
        before,
        "a replay writes nothing to the store"
    );
    let e = json(&r);
    assert_eq!(e["nights"], LAST_NIGHT);
    assert_eq!(e["from"], night(1));
    assert_eq!(e["to"], night(LAST_NIGHT));

    // The same figures from the nightly reports and the truth file.
    let truth = read_csv_rows(&p.root.join("practice.truth.csv"));
    let mut delays: HashMap<i64, u64> = HashMap::new();
    let (mut watched, mut flagged) = (0, 0);
    for t in truth.iter().filter(|t| t["label"] == "monitored") {
        let from = chrono::NaiveDate::parse_from_str(&t["watch_from"], "%Y-%m-%d").unwrap();
        let start_night = match from.format("%Y-%m").to_string().as_str() {
            "2026-11" => from.format("%d").to_string().parse::<u32>().unwrap(),
            _ => 1,
        };
        if start_night > LAST_NIGHT {
            continue;
        }
        watched += 1;
        if let Some(&f) = first_flag.get(&t["nhs_number"]) {
            flagged += 1;
            *delays
                .entry(i64::from(f.saturating_sub(start_night)))
                .or_default() += 1;
        }
    }
    assert!(watched > 0 && flagged > 0);
    assert_eq!(e["monitored"], watched);
    assert_eq!(e["monitored_flagged"], flagged);
    assert_eq!(e["watch_from_known"], watched);
    let counts: HashMap<i64, u64> = e["nights_to_flag_counts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(counts, delays);
    let benign = first_flag
        .keys()
        .filter(|n| p.truth.get(*n).is_some_and(|l| l == "benign"))
        .count();
    assert!(benign > 0, "this practice flags some benign patients");
    assert_eq!(e["benign_flagged"], benign);
    // The last night is scored as `evaluate --report` scores it.
    let last = run(&[
        "evaluate",
        "--truth",
        p.root.join("practice.truth.csv").to_str().unwrap(),
        "--report",
        p.reports.join(night(LAST_NIGHT)).to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(last.code, 0, "{}", last.stderr);
    assert_eq!(e["last_night"], json(&last));
}
