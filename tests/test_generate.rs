//! `accesswatch generate` and `accesswatch evaluate` through the real binary.

mod common;

use std::collections::BTreeSet;

use common::*;

fn generate(dir: &std::path::Path, name: &str, seed: &str) -> std::path::PathBuf {
    generate_with(dir, name, seed, &[])
}

fn generate_with(
    dir: &std::path::Path,
    name: &str,
    seed: &str,
    extra: &[&str],
) -> std::path::PathBuf {
    let out = dir.join(name);
    let mut args = vec![
        "generate",
        "--out",
        out.to_str().unwrap(),
        "--patients",
        "300",
        "--days",
        "42",
        "--seed",
        seed,
        "--as-of",
        "2026-11-22",
    ];
    args.extend_from_slice(extra);
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    out
}

/// The labels of a practice generated to `out`: beside the folder, never in it.
fn truth_of(out: &std::path::Path) -> std::path::PathBuf {
    out.with_file_name(format!(
        "{}.truth.csv",
        out.file_name().unwrap().to_string_lossy()
    ))
}

fn column(path: &std::path::Path, name: &str) -> Vec<String> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let i = r.headers().unwrap().iter().position(|h| h == name).unwrap();
    r.records().map(|x| x.unwrap()[i].to_string()).collect()
}

/// The patients whose truth row has `value` in column `col` (2: the scenario, 3: the persona).
fn labelled(out: &std::path::Path, col: usize, value: &str) -> BTreeSet<String> {
    csv::Reader::from_path(truth_of(out))
        .unwrap()
        .records()
        .map(|r| r.unwrap())
        .filter(|r| &r[col] == value)
        .map(|r| r[0].to_string())
        .collect()
}

/// The audit rows of `patients`, with where occurred_at, nhs_number, device_id and action are in them.
fn audit_of(
    out: &std::path::Path,
    patients: &BTreeSet<String>,
) -> (Vec<csv::StringRecord>, [usize; 4]) {
    let mut audit = csv::Reader::from_path(out.join("audit.csv")).unwrap();
    let h = audit.headers().unwrap().clone();
    let at = |name: &str| h.iter().position(|x| x == name).unwrap();
    let nhs = at("nhs_number");
    let rows = audit
        .records()
        .map(|r| r.unwrap())
        .filter(|r| patients.contains(&r[nhs]))
        .collect();
    (
        rows,
        [at("occurred_at"), nhs, at("device_id"), at("action")],
    )
}

#[test]
fn the_same_seed_gives_the_same_practice_and_another_seed_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let a = generate(dir.path(), "a", "5");
    let b = generate(dir.path(), "b", "5");
    let c = generate(dir.path(), "c", "6");
    assert_eq!(tree(&a), tree(&b));
    assert_ne!(tree(&a), tree(&c));
}

#[test]
fn generated_practices_are_valid_consistent_and_labelled() {
    let dir = tempfile::tempdir().unwrap();
    let out = generate(dir.path(), "p", "11");
    let truth: BTreeSet<String> = column(&truth_of(&out), "nhs_number").into_iter().collect();
    assert_eq!(truth.len(), 300, "one truth row per patient");
    for n in &truth {
        assert!(
            n.starts_with("999"),
            "synthetic NHS numbers use the test range"
        );
        assert!(accesswatch::ingest::validate::nhs_number(n).is_ok(), "{n}");
    }
    for (file, col) in [
        ("audit.csv", "nhs_number"),
        ("entries.csv", "nhs_number"),
        ("appointments.csv", "nhs_number"),
        ("proxies.csv", "nhs_number"),
        ("proxies.csv", "proxy_nhs_number"),
    ] {
        for n in column(&out.join(file), col) {
            assert!(
                n.is_empty() && col == "proxy_nhs_number" || truth.contains(&n),
                "{file}.{col} names a patient not in truth"
            );
        }
    }
    let scenarios: BTreeSet<String> = column(&truth_of(&out), "scenario")
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(scenarios.len(), 7, "{scenarios:?}");
    let personas: BTreeSet<String> = column(&truth_of(&out), "persona").into_iter().collect();
    for p in [
        "phone_replacement",
        "night_shift",
        "entry_checker",
        "proxy_parent",
        "shared_tablet_couple",
        "traveller",
        "post_appointment_reader",
    ] {
        assert!(personas.contains(p), "{p} missing from {personas:?}");
    }
    let labels = column(&truth_of(&out), "label");
    let monitored = labels.iter().filter(|l| *l == "monitored").count();
    assert!(
        (9..=24).contains(&monitored),
        "a few percent monitored: {monitored}"
    );
    // Every mode and status appears; sensitive codes come from the catalogue.
    let modes: BTreeSet<String> = column(&out.join("appointments.csv"), "mode")
        .into_iter()
        .collect();
    assert_eq!(modes.len(), 4, "{modes:?}");
    let statuses: BTreeSet<String> = column(&out.join("appointments.csv"), "status")
        .into_iter()
        .collect();
    assert_eq!(statuses.len(), 4, "{statuses:?}");
    let catalogue =
        accesswatch::context::catalogue::SensitiveCatalogue::default_catalogue().unwrap();
    let codes = column(&out.join("entries.csv"), "code");
    assert!(
        codes
            .iter()
            .filter(|c| catalogue.category_of_code(c).is_some())
            .count()
            >= 5
    );

    // The labels are not in the folder a run ingests.
    assert!(!out.join("truth.csv").exists());
    // Everything ingests without a quarantined row.
    let store = dir.path().join("store");
    let r = run(&[
        "ingest",
        "--json",
        "--store",
        store.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let j = json(&r);
    assert_eq!(j["totals"]["quarantined"], 0);
    assert_eq!(j["balanced"], true);
    let statuses: Vec<&str> = j["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["status"].as_str().unwrap())
        .collect();
    assert!(statuses.iter().all(|s| *s == "ingested"), "{statuses:?}");
}

#[test]
fn watchers_begin_when_asked_and_thin_exports_lack_their_columns() {
    let dir = tempfile::tempdir().unwrap();
    // Every watcher established before the data begins: each monitored patient is read by someone on the first
    // days of data already.
    let out = generate_with(dir.path(), "est", "7", &["--onset", "established"]);
    let truth = truth_of(&out);
    let onsets: BTreeSet<String> = column(&truth, "onset")
        .into_iter()
        .filter(|o| !o.is_empty())
        .collect();
    assert_eq!(onsets, BTreeSet::from(["established".to_string()]));
    let out = generate_with(dir.path(), "rec", "7", &["--onset", "recent"]);
    let onsets: BTreeSet<String> = column(&truth_of(&out), "onset")
        .into_iter()
        .filter(|o| !o.is_empty())
        .collect();
    assert_eq!(onsets, BTreeSet::from(["recent".to_string()]));
    // Recent watchers included, nothing is read or recorded after the last day of data (audit times are UTC, the
    // day ends at 23:59 London time, which is UTC in November).
    let last_audit = column(&out.join("audit.csv"), "occurred_at")
        .into_iter()
        .max()
        .unwrap();
    assert!(last_audit.as_str() < "2026-11-23T00:00:00Z", "{last_audit}");
    let last_entry = column(&out.join("entries.csv"), "recorded_at")
        .into_iter()
        .max()
        .unwrap();
    assert!(last_entry.as_str() < "2026-11-23 00:00:00", "{last_entry}");
    // A thin export: the named columns are not written at all.
    let out = generate_with(
        dir.path(),
        "thin",
        "7",
        &["--drop-columns", "device_id,session_id"],
    );
    let header = std::fs::read_to_string(out.join("audit.csv")).unwrap();
    let header = header.lines().next().unwrap();
    assert!(
        !header.contains("device_id") && !header.contains("session_id"),
        "{header}"
    );
    assert!(header.contains("user_agent"), "{header}");
    // A required column cannot be dropped.
    let r = run(&[
        "generate",
        "--out",
        dir.path().join("bad").to_str().unwrap(),
        "--drop-columns",
        "occurred_at",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("occurred_at"), "{}", r.stderr);
}

#[test]
fn scale_mode_streams_the_requested_number_of_valid_rows() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("scale");
    let r = run(&[
        "generate",
        "--out",
        out.to_str().unwrap(),
        "--events",
        "25003",
        "--patients",
        "500",
        "--as-of",
        "2026-11-22",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let store = dir.path().join("store");
    let r = run(&[
        "ingest",
        "--json",
        "--store",
        store.to_str().unwrap(),
        out.join("audit.csv").to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let j = json(&r);
    assert_eq!(j["totals"]["read"], 25003);
    assert_eq!(j["totals"]["stored"], 25003);
}

#[test]
fn evaluate_scores_a_hand_made_report() {
    let dir = tempfile::tempdir().unwrap();
    let truth = write(
        dir.path(),
        "truth.csv",
        "nhs_number,label,scenario,persona\n1,monitored,polling,ordinary\n2,monitored,odd_hours,ordinary\n3,benign,,night_shift\n4,benign,,ordinary\n",
    );
    let run_dir = dir.path().join("2026-11-22");
    std::fs::create_dir_all(&run_dir).unwrap();
    write(
        &run_dir,
        "patients.csv",
        "nhs_number,risk_score,risk_level,rules,summary\n1,88,high,monitoring_cadence;unfamiliar_device,x\n3,60,medium,unusual_hour,y\n2,30,low,unusual_hour,z\n",
    );
    let r = run(&[
        "evaluate",
        "--json",
        "--truth",
        truth.to_str().unwrap(),
        "--report",
        run_dir.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j = json(&r);
    assert_eq!(j["precision"], 0.5);
    assert_eq!(j["recall"], 0.5);
    assert_eq!(j["f1"], 0.5);
    assert_eq!(j["precision_at_k"], 0.5);
    // Monitored at ranks 1 and 3: (1/1 + 2/3) / 2.
    assert!((j["average_precision"].as_f64().unwrap() - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-9);
    assert_eq!(j["per_scenario"]["polling"]["recall"], 1.0);
    assert_eq!(j["per_scenario"]["odd_hours"]["rules"]["unusual_hour"], 1);
    assert_eq!(j["per_persona"]["night_shift"]["false_flag_rate"], 1.0);
    assert_eq!(j["per_persona"]["ordinary"]["false_flag_rate"], 0.0);
    let r = run(&[
        "evaluate",
        "--truth",
        truth.to_str().unwrap(),
        "--report",
        run_dir.to_str().unwrap(),
    ]);
    assert!(
        r.stdout.contains("precision 0.500  recall 0.500"),
        "{}",
        r.stdout
    );
    let r = run(&[
        "evaluate",
        "--truth",
        truth.to_str().unwrap(),
        "--report",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("patients.csv"), "{}", r.stderr);
}

#[test]
fn one_device_holds_one_session_on_a_record_at_a_time() {
    // A watcher on the victim's own phone and the victim's own use of it are drawn separately; an app on one device
    // holds one login at a time, so their sessions never overlap (overlapping sessions that end in the same second
    // would also be one access to a reader that has no session ids).
    let dir = tempfile::tempdir().unwrap();
    let out = generate_with(dir.path(), "p", "21", &["--intensity", "obvious"]);
    let (at, nhs, device, session) = (
        column(&out.join("audit.csv"), "occurred_at"),
        column(&out.join("audit.csv"), "nhs_number"),
        column(&out.join("audit.csv"), "device_id"),
        column(&out.join("audit.csv"), "session_id"),
    );
    let mut spans: std::collections::BTreeMap<(&str, &str, &str), (&str, &str)> =
        Default::default();
    for i in 0..at.len() {
        let e = spans
            .entry((&nhs[i], &device[i], &session[i]))
            .or_insert((&at[i], &at[i]));
        e.0 = e.0.min(&at[i]);
        e.1 = e.1.max(&at[i]);
    }
    let mut by_device: std::collections::BTreeMap<(&str, &str), Vec<(&str, &str)>> =
        Default::default();
    for ((n, d, _), span) in &spans {
        by_device.entry((n, d)).or_default().push(*span);
    }
    let mut sessions = 0;
    for (key, mut list) in by_device {
        list.sort();
        sessions += list.len();
        for w in list.windows(2) {
            assert!(w[0].1 < w[1].0, "{key:?}: {:?} overlaps {:?}", w[0], w[1]);
        }
    }
    assert!(sessions > 1000, "{sessions}");
}

#[test]
fn a_password_takeover_sometimes_locks_the_victim_out_and_their_phone_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p");
    let r = run(&[
        "generate",
        "--out",
        out.to_str().unwrap(),
        "--patients",
        "1500",
        "--days",
        "60",
        "--seed",
        "3",
        "--as-of",
        "2026-11-22",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let takeovers = labelled(&out, 2, "account_change_takeover");
    // Per victim of a takeover: the password change (when, on which device), then that device's refused and
    // successful sign-ins after it.
    let (mut rows, [t, nhs, dev, act]) = audit_of(&out, &takeovers);
    rows.sort_by(|a, b| a[t].cmp(&b[t]));
    let (mut locked_out, mut still_in) = (0, 0);
    for victim in &takeovers {
        let mine: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[nhs] == victim).collect();
        let Some(change) = mine.iter().find(|r| &r[act] == "change_password") else {
            continue;
        };
        let after = |action: &str| {
            mine.iter()
                .filter(|r| r[t] > change[t] && r[dev] == change[dev] && &r[act] == action)
                .count()
        };
        match (after("login_failed"), after("login")) {
            (refused, 0) if refused > 0 => locked_out += 1,
            (_, n) if n > 0 => still_in += 1,
            _ => {}
        }
    }
    assert!(
        locked_out > 0 && still_in > 0,
        "locked out {locked_out}, still in {still_in}"
    );
}

#[test]
fn some_patients_set_up_a_second_device_with_a_password_reset_and_keep_their_phone() {
    let dir = tempfile::tempdir().unwrap();
    let out = generate(dir.path(), "p", "4");
    let two_devices = labelled(&out, 3, "two_own_devices");
    let (rows, [t, nhs, dev, act]) = audit_of(&out, &two_devices);
    // A reset on a device never used on the record before it, after which that device reads and another device of
    // the patient's reads too.
    let set_up = two_devices.iter().filter(|p| {
        let mine: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[nhs] == *p).collect();
        mine.iter().any(|c| {
            &c[act] == "change_password"
                && !mine.iter().any(|r| r[dev] == c[dev] && r[t] < c[t])
                && mine
                    .iter()
                    .any(|r| r[dev] == c[dev] && r[t] > c[t] && &r[act] == "view")
                && mine
                    .iter()
                    .any(|r| r[dev] != c[dev] && r[t] > c[t] && &r[act] == "view")
        })
    });
    assert!(set_up.count() > 0);
}

#[test]
fn every_watcher_reads_at_least_once_however_short_and_slow_the_watch() {
    // Recent, subtle watchers: a few days at a slow pace can draw no visit at all, and a patient labelled monitored
    // with nothing to find would only measure the generator. The truth says how many visits each watcher made, and
    // the audit holds at least that many sign-ins on the record since the watching began.
    let dir = tempfile::tempdir().unwrap();
    let mut watchers = 0;
    for seed in ["1", "2", "3", "4"] {
        let out = generate_with(
            dir.path(),
            &format!("slow-{seed}"),
            seed,
            &["--onset", "recent", "--intensity", "subtle"],
        );
        let truth = truth_of(&out);
        let (nhs, labels, from, visits) = (
            column(&truth, "nhs_number"),
            column(&truth, "label"),
            column(&truth, "watch_from"),
            column(&truth, "watcher_visits"),
        );
        let monitored: BTreeSet<String> = labelled(&out, 1, "monitored");
        let (rows, [at, who, _, action]) = audit_of(&out, &monitored);
        for i in (0..nhs.len()).filter(|i| labels[*i] == "monitored") {
            watchers += 1;
            let n: usize = visits[i].parse().unwrap();
            assert!(
                n >= 1,
                "seed {seed}: {} has a watcher who never read",
                nhs[i]
            );
            let since = rows
                .iter()
                .filter(|r| r[who] == nhs[i] && r[action] == *"login" && r[at][..10] >= *from[i])
                .count();
            assert!(
                since >= n,
                "seed {seed}: {}: {since} sign-ins since {}, {n} visits claimed",
                nhs[i],
                from[i]
            );
        }
    }
    assert!(watchers >= 40, "{watchers}");
}

#[test]
fn reinstalled_apps_give_a_device_a_new_id_and_app_version_from_one_session_on_and_change_nothing_else(
) {
    let dir = tempfile::tempdir().unwrap();
    let plain = generate(dir.path(), "plain", "7");
    let share = "0.5";
    let moved = generate_with(dir.path(), "moved", "7", &["--reinstalls", share]);
    assert_eq!(
        std::fs::read(truth_of(&plain)).unwrap(),
        std::fs::read(truth_of(&moved)).unwrap()
    );
    for f in ["entries.csv", "appointments.csv", "proxies.csv"] {
        assert_eq!(
            std::fs::read(plain.join(f)).unwrap(),
            std::fs::read(moved.join(f)).unwrap(),
            "{f}"
        );
    }
    let read = |out: &std::path::Path| -> Vec<csv::StringRecord> {
        csv::Reader::from_path(out.join("audit.csv"))
            .unwrap()
            .records()
            .map(|r| r.unwrap())
            .collect()
    };
    let (before, after) = (read(&plain), read(&moved));
    assert_eq!(before.len(), after.len());
    // Columns: event_id 0, occurred_at 1, device_id 5, user_agent 6, session_id 9.
    let mut new_id: std::collections::BTreeMap<String, String> = Default::default();
    let mut sessions: std::collections::BTreeMap<&str, BTreeSet<&str>> = Default::default();
    for (b, a) in before.iter().zip(&after) {
        sessions.entry(&b[5]).or_default().insert(&b[9]);
        for i in (0..b.len()).filter(|&i| i != 5 && i != 6) {
            assert_eq!(&b[i], &a[i], "only the device id and user agent change");
        }
        if b[5] != a[5] {
            // One new id per device, the app one minor version on, the phone the same.
            assert_eq!(
                new_id
                    .entry(b[5].to_string())
                    .or_insert_with(|| a[5].to_string()),
                &a[5]
            );
            let (bv, av) = (&b[6]["NHSApp/".len()..], &a[6]["NHSApp/".len()..]);
            let minor = |v: &str| v.split('.').nth(1).unwrap().parse::<u32>().unwrap();
            assert_eq!(minor(av), minor(bv) + 1, "{} -> {}", &b[6], &a[6]);
            assert_eq!(&bv[bv.find(' ').unwrap()..], &av[av.find(' ').unwrap()..]);
        } else {
            assert_eq!(&b[6], &a[6]);
        }
    }
    // A session is on one installation: a reinstall comes between sessions.
    let mut device_of: std::collections::BTreeMap<&str, &str> = Default::default();
    for r in &after {
        assert_eq!(
            *device_of.entry(&r[9]).or_insert(&r[5]),
            &r[5],
            "session {}",
            &r[9]
        );
    }
    // From the first session under the new id on, the old id is not used again, on any record.
    for (old, new) in &new_id {
        let first_new = after.iter().position(|r| &r[5] == new).unwrap();
        assert!(
            !after[first_new..].iter().any(|r| &r[5] == old),
            "{old} after {new}"
        );
        assert!(sessions[old.as_str()].len() >= 10);
        assert!(
            after[..first_new].iter().any(|r| &r[5] == old),
            "part-way: {old} before {new}"
        );
    }
    // About the share asked for, of the devices with ten sessions or more.
    let eligible = sessions.values().filter(|s| s.len() >= 10).count();
    let expected = eligible as f64 * share.parse::<f64>().unwrap();
    assert!(
        (new_id.len() as f64 - expected).abs() < 4.0 * expected.sqrt() + 1.0,
        "{} of {eligible}",
        new_id.len()
    );
}
