//! `accesswatch ingest` through the real binary: validation, quarantine, the row identity, idempotence, crashes,
//! column mappings, gzip, time zones, and the store read back by independent readers.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use common::*;
use polars::prelude::*;

fn audit_row(id: &str, at: &str, nhs: &str, action: &str) -> String {
    format!("{id},{at},{nhs},acct-1,patient,dev-1,NHSApp/2.41,81.2.3.4,nhs_app,s-1,{action},summary,success\n")
}

/// An audit CSV of `rows` views of patient A's record, a second apart from midnight on 1 March, ids E0, E1, ...
fn one_patients_views(rows: u64) -> String {
    let mut whole = String::from(
        "event_id,occurred_at,nhs_number,account_id,actor_role,device_id,user_agent,ip_address,channel,session_id,action,section,outcome\n",
    );
    for i in 0..rows {
        let at = format!(
            "2026-03-01T{:02}:{:02}:{:02}Z",
            i / 3600 % 24,
            i / 60 % 60,
            i % 60
        );
        whole.push_str(&audit_row(&format!("E{i}"), &at, NHS_A, "view"));
    }
    whole
}

fn ingest_json(store: &std::path::Path, extra: &[&str]) -> (Run, serde_json::Value) {
    let mut args = vec!["ingest", "--json", "--store", store.to_str().unwrap()];
    args.extend_from_slice(extra);
    let r = run(&args);
    let j = json(&r);
    (r, j)
}

#[test]
fn each_validation_rule_quarantines_its_row_with_line_column_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut text = String::from(AUDIT_HEADER);
    text.push('\n');
    text += &audit_row("ok-1", "2026-03-01T21:14:05Z", NHS_A, "view"); // line 2: good
    text += &audit_row("b1", "2026-03-01T21:14:05Z", "9434765918", "view"); // 3: Modulus 11
    text += &audit_row("b2", "2026-03-01T21:14:05Z", "12345", "view"); // 4: not 10 digits
    text += &audit_row("b3", "2026-03-01T21:14:05Z", "", "view"); // 5: missing NHS number
    text += &audit_row("b4", "1 March 2026", NHS_A, "view"); // 6: bad timestamp
    text += &audit_row("b5", "2026-03-29 01:30:00", NHS_A, "view"); // 7: spring-forward gap
    text += &audit_row("b6", "2026-03-01T21:14:05Z", NHS_A, "peek"); // 8: unknown action
    text += &audit_row("b7", "2026-03-01T21:14:05Z", NHS_A, ""); // 9: missing action
    text += "b8,2026-03-01T21:14:05Z,9434765919,acct-1,stranger,dev-1,ua,81.2.3.4,nhs_app,s-1,view,summary,success\n"; // 10: role
    text += "b9,2026-03-01T21:14:05Z,9434765919,acct-1,patient,dev-1,ua,300.2.3.4,nhs_app,s-1,view,summary,success\n"; // 11: ip
    text += "b10,2026-03-01T21:14:05Z,9434765919,acct-1,patient,dev-1,ua,81.2.3.4,nhs_app,s-1,view,kitchen,success\n"; // 12: section
    text += "b11,2026-03-01T21:14:05Z,9434765919,acct-1,patient,dev-1,ua,81.2.3.4,nhs_app,s-1,view,summary,meh\n"; // 13: outcome
    text += "b12,2026-03-01T21:14:05Z,9434765919\n"; // 14: too few fields
    text += "\"b13\",\"2026-03-01T21:14:05Z\",\"9434765919\",\"a,b\",patient,dev-1,ua,81.2.3.4,nhs_app,s-1,view,summary,success,extra\n"; // 15: too many
    let path = write(dir.path(), "audit.csv", &text);

    let (r, j) = ingest_json(&store, &[path.to_str().unwrap()]);
    assert_eq!(
        r.code, 3,
        "quarantined rows give exit 3; stderr: {}",
        r.stderr
    );
    assert_eq!(j["totals"]["read"], 14);
    assert_eq!(j["totals"]["stored"], 1);
    assert_eq!(j["totals"]["quarantined"], 13);
    assert_eq!(j["balanced"], true);

    let q = read_quarantine(&store);
    let lines: Vec<i64> = q
        .column("line")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(lines, (3..=15).collect::<Vec<_>>());
    let cols = strings(&q, "column");
    let reasons = strings(&q, "reason");
    let expect: [(Option<&str>, &str); 13] = [
        (Some("nhs_number"), "Modulus 11"),
        (Some("nhs_number"), "10 digits"),
        (Some("nhs_number"), "missing"),
        (Some("occurred_at"), "not a timestamp"),
        (Some("occurred_at"), "spring-forward gap"),
        (Some("action"), "not one of the allowed values"),
        (Some("action"), "empty"),
        (Some("actor_role"), "not one of the allowed values"),
        (Some("ip_address"), "not an IPv4 or IPv6"),
        (Some("section"), "not one of the allowed values"),
        (Some("outcome"), "not one of the allowed values"),
        (None, "row has 3 fields but the header has 13"),
        (None, "row has 14 fields but the header has 13"),
    ];
    for (i, (col, reason)) in expect.iter().enumerate() {
        assert_eq!(cols[i].as_deref(), *col, "line {}", lines[i]);
        let got = reasons[i].as_deref().unwrap();
        assert!(
            got.contains(reason),
            "line {}: {got:?} should mention {reason:?}",
            lines[i]
        );
        assert!(
            !got.contains("9434765918"),
            "reasons never repeat identifiers"
        );
    }
    let files = strings(&q, "source_file");
    assert!(files.iter().all(|f| f.as_deref() == Some("audit.csv")));
    let raw = strings(&q, "raw");
    assert_eq!(
        raw[0].as_deref(),
        Some(audit_row("b1", "2026-03-01T21:14:05Z", "9434765918", "view").trim_end())
    );
    assert_eq!(raw[12].as_deref().unwrap(), "b13,2026-03-01T21:14:05Z,9434765919,\"a,b\",patient,dev-1,ua,81.2.3.4,nhs_app,s-1,view,summary,success,extra");
}

#[test]
fn other_kinds_validate_their_own_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let entries = write(
        dir.path(),
        "entries.csv",
        &format!(
            "entry_id,nhs_number,recorded_at,code,term,section,visible_online\n\
             E1,{NHS_A},2026-03-01 10:00:00,1364731000000104,Enhanced review,,true\n\
             E2,{NHS_A},2026-03-01 10:00:00,1364731000000105,Bad check digit,,true\n\
             E3,{NHS_A},2026-03-01 10:00:00,EMISNQDO1,Local code,problems,FALSE\n\
             E4,{NHS_A},2026-03-01 10:00:00,22298006,Heart attack,problems,perhaps\n\
             ,{NHS_A},2026-03-01 10:00:00,22298006,No id,problems,true\n"
        ),
    );
    let appts = write(
        dir.path(),
        "appointments.csv",
        &format!(
            "appointment_id,nhs_number,starts_at,ends_at,mode,status\n\
             A1,{NHS_A},2026-03-02 09:00:00,2026-03-02 09:10:00,Face to face,\n\
             A2,{NHS_A},2026-03-02 09:00:00,2026-03-02 08:10:00,video,attended\n\
             A3,{NHS_A},2026-03-02 09:00:00,2026-03-02 09:10:00,carrier pigeon,attended\n\
             A4,{NHS_A},2026-03-02 09:00:00,,telephone,attended\n\
             A5,{NHS_A},2026-03-02 09:00:00,2026-03-02 09:10:00,telephone,maybe\n"
        ),
    );
    let proxies = write(
        dir.path(),
        "proxies.csv",
        &format!(
            "nhs_number,proxy_account_id,proxy_nhs_number,relationship,granted_at,revoked_at\n\
             {NHS_A},acct-p,{NHS_B},parent,2025-01-01 09:00:00,\n\
             {NHS_A},acct-p,1234567890,parent,2025-01-01 09:00:00,\n\
             {NHS_A},acct-p,,parent,2025-01-01 09:00:00,2024-01-01 09:00:00\n\
             {NHS_A},,,parent,2025-01-01 09:00:00,\n"
        ),
    );
    let (r, j) = ingest_json(
        &store,
        &[
            entries.to_str().unwrap(),
            appts.to_str().unwrap(),
            proxies.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    let kinds: Vec<_> = j["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["entries", "appointments", "proxies"]);
    assert_eq!(j["totals"]["stored"], 2 + 1 + 1);
    assert_eq!(j["totals"]["quarantined"], 3 + 4 + 3);

    let q = read_quarantine(&store);
    let got: Vec<(String, i64, Option<String>)> = (0..q.height())
        .map(|i| {
            (
                q.column("kind")
                    .unwrap()
                    .str()
                    .unwrap()
                    .get(i)
                    .unwrap()
                    .to_string(),
                q.column("line").unwrap().i64().unwrap().get(i).unwrap(),
                q.column("column")
                    .unwrap()
                    .str()
                    .unwrap()
                    .get(i)
                    .map(str::to_string),
            )
        })
        .collect();
    let want = [
        ("appointments", 3, "ends_at"),
        ("appointments", 4, "mode"),
        ("appointments", 5, "ends_at"),
        ("appointments", 6, "status"),
        ("entries", 3, "code"),
        ("entries", 5, "visible_online"),
        ("entries", 6, "entry_id"),
        ("proxies", 3, "proxy_nhs_number"),
        ("proxies", 4, "revoked_at"),
        ("proxies", 5, "proxy_account_id"),
    ];
    let mut got_sorted = got.clone();
    got_sorted.sort();
    let want: Vec<_> = want
        .iter()
        .map(|(k, l, c)| (k.to_string(), *l as i64, Some(c.to_string())))
        .collect();
    assert_eq!(got_sorted, want);

    // Normalised values: the mode, the default status, the local code and the boolean.
    let a = read_kind(&store, "appointments");
    assert_eq!(strings(&a, "mode"), vec![Some("face_to_face".to_string())]);
    assert_eq!(strings(&a, "status"), vec![Some("attended".to_string())]);
    let e = read_kind(&store, "entries")
        .sort(["entry_id"], Default::default())
        .unwrap();
    assert_eq!(
        strings(&e, "code"),
        vec![Some("1364731000000104".into()), Some("EMISNQDO1".into())]
    );
    let vis: Vec<_> = e
        .column("visible_online")
        .unwrap()
        .bool()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(vis, vec![Some(true), Some(false)]);
}

#[test]
fn a_file_missing_a_required_column_is_refused_by_name_and_others_still_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let good = write(
        dir.path(),
        "a.csv",
        &(format!("{AUDIT_HEADER}\n") + &audit_row("e1", "2026-03-01T10:00:00Z", NHS_A, "view")),
    );
    let bad = write(
        dir.path(),
        "b.csv",
        "entry_id,nhs_number,code\nE1,9434765919,22298006\n",
    );
    let r = run(&[
        "ingest",
        "--kind",
        "entries",
        "--store",
        store.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("refused")
            && r.stdout.contains("b.csv")
            && r.stdout.contains("'recorded_at'"),
        "{}",
        r.stdout
    );

    let unknown = write(dir.path(), "c.csv", "nhs_number,label\n9434765919,x\n");
    let (r, j) = ingest_json(&store, &[good.to_str().unwrap(), unknown.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert_eq!(j["files"][0]["status"], "ingested");
    assert_eq!(j["files"][0]["stored"], 1);
    assert_eq!(j["files"][1]["status"], "refused");
    assert!(j["files"][1]["message"]
        .as_str()
        .unwrap()
        .contains("--kind"));

    let r = run(&[
        "ingest",
        "--store",
        store.to_str().unwrap(),
        dir.path().join("nope.csv").to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("no such file or folder"));
}

#[test]
fn reingest_and_overlapping_exports_store_no_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut first = format!("{AUDIT_HEADER}\n");
    for i in 0..10 {
        first += &audit_row(
            &format!("e{i}"),
            &format!("2026-03-0{}T10:00:00Z", 1 + i % 3),
            NHS_A,
            "view",
        );
    }
    // Rows without an event_id get a derived id: the same row twice is one event.
    first += ",2026-03-01T11:00:00Z,9434765919,acct-1,patient,dev-1,ua,81.2.3.4,nhs_app,s-1,login,,success\n";
    first +=
        ",2026-03-01T11:00:00Z,943 476 5919,acct-1,PATIENT,dev-1,ua,81.2.3.4,NHS App,s-1,Login,,\n";
    let a = write(dir.path(), "first.csv", &first);
    let (r, j) = ingest_json(&store, &[a.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        (
            j["totals"]["stored"].as_u64(),
            j["totals"]["duplicates"].as_u64()
        ),
        (Some(11), Some(1))
    );
    assert_eq!(read_kind(&store, "audit").height(), 11);

    // The same file again: recognised by its content hash and not read.
    let (r, j) = ingest_json(&store, &[a.to_str().unwrap()]);
    assert_eq!(r.code, 0);
    assert_eq!(j["files"][0]["status"], "already_ingested");
    assert_eq!(j["totals"]["read"], 0);

    // Forced re-read: every row is a duplicate.
    let (_, j) = ingest_json(&store, &["--reingest", a.to_str().unwrap()]);
    assert_eq!(
        (
            j["totals"]["read"].as_u64(),
            j["totals"]["duplicates"].as_u64()
        ),
        (Some(12), Some(12))
    );
    assert_eq!(read_kind(&store, "audit").height(), 11);

    // An overlapping export: five old rows, two new.
    let mut overlap = format!("{AUDIT_HEADER}\n");
    for i in 5..12 {
        overlap += &audit_row(
            &format!("e{i}"),
            &format!("2026-03-0{}T10:00:00Z", 1 + i % 3),
            NHS_A,
            "view",
        );
    }
    let b = write(dir.path(), "second.csv", &overlap);
    let (_, j) = ingest_json(&store, &[b.to_str().unwrap()]);
    assert_eq!(
        (
            j["totals"]["stored"].as_u64(),
            j["totals"]["duplicates"].as_u64()
        ),
        (Some(2), Some(5))
    );
    let df = read_kind(&store, "audit");
    assert_eq!(df.height(), 13);
    assert_eq!(df.column("event_id").unwrap().n_unique().unwrap(), 13);

    // The manifest lists each file read to the end, with its counts.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("_manifest.json")).unwrap()).unwrap();
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    assert_eq!(files[2]["stored"], 2);
    assert_eq!(files[2]["seq"], 3);
    assert_eq!(files[0]["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn a_changed_entry_is_stored_as_a_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let header = "entry_id,nhs_number,recorded_at,code,term,visible_online\n";
    let v1 = write(
        dir.path(),
        "e1.csv",
        &format!("{header}E1,{NHS_A},2026-03-01 10:00:00,22298006,MI,true\n"),
    );
    let v2 = write(dir.path(), "e2.csv", &format!("{header}E1,{NHS_A},2026-03-01 10:00:00,22298006,MI,false\nE1,{NHS_A},2026-03-01 10:00:00,22298006,MI,true\n"));
    ingest_json(&store, &[v1.to_str().unwrap()]);
    let (_, j) = ingest_json(&store, &[v2.to_str().unwrap()]);
    assert_eq!(
        (
            j["totals"]["stored"].as_u64(),
            j["totals"]["duplicates"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let df = read_kind(&store, "entries")
        .sort(["ingest_seq"], Default::default())
        .unwrap();
    let seqs: Vec<_> = df
        .column("ingest_seq")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(
        seqs,
        vec![1, 2],
        "the redaction is a second version, from the later file"
    );
}

#[test]
fn column_mappings_gzip_bom_and_header_case() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let config = write(
        dir.path(),
        "accesswatch.toml",
        "store = \"mapped-store\"\n[columns.audit]\noccurred_at = \"EventDateTime\"\nnhs_number = \"NHS No\"\naction = \"Activity\"\n",
    );
    // Column order free, header case ignored, a byte-order mark, an extra column, gzip under a plain .csv name.
    let text = format!(
        "\u{feff}Activity,Extra,NHS NO,eventdatetime,DEVICE_ID\nview,x,{NHS_A},2026-03-01T10:00:00Z,dev-9\nlogin,y,{NHS_B},2026-03-01T10:00:00Z,dev-9\n"
    );
    let gz = dir.path().join("export.csv");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
    let r = run(&[
        "--config",
        config.to_str().unwrap(),
        "ingest",
        "--json",
        gz.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let j = json(&r);
    assert_eq!(j["files"][0]["kind"], "audit");
    assert_eq!(j["files"][0]["stored"], 2);
    assert_eq!(
        j["files"][0]["unknown_columns"],
        serde_json::json!(["extra"])
    );
    let mapped_store = dir.path().join("mapped-store");
    assert_eq!(
        j["store"],
        mapped_store.to_str().unwrap(),
        "a config path is relative to the config file"
    );
    let df = read_kind(&mapped_store, "audit");
    assert_eq!(
        strings(&df, "device_id"),
        vec![Some("dev-9".into()), Some("dev-9".into())]
    );
    assert!(!store.exists());

    // `.csv.gz` files are found in folders; the command line's --store beats the config's.
    let gz2 = dir.path().join("more").join("audit.csv.gz");
    std::fs::create_dir_all(gz2.parent().unwrap()).unwrap();
    std::fs::copy(&gz, &gz2).unwrap();
    let r = run(&[
        "--config",
        config.to_str().unwrap(),
        "ingest",
        "--json",
        "--store",
        store.to_str().unwrap(),
        gz2.parent().unwrap().to_str().unwrap(),
    ]);
    assert_eq!(json(&r)["files"][0]["stored"], 2);

    // A bad config reports every problem and exits 1.
    let bad = write(
        dir.path(),
        "bad.toml",
        "timezone = \"Nowhere/Land\"\n[columns.audit]\nwhenever = \"x\"\n",
    );
    let r = run(&[
        "--config",
        bad.to_str().unwrap(),
        "ingest",
        gz.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("Nowhere/Land") && r.stderr.contains("columns.audit.whenever"),
        "{}",
        r.stderr
    );
    let typo = write(dir.path(), "typo.toml", "stroe = \"x\"\n");
    let r = run(&[
        "--config",
        typo.to_str().unwrap(),
        "ingest",
        gz.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("unknown field") && r.stderr.contains("stroe"),
        "{}",
        r.stderr
    );
}

#[test]
fn naive_times_use_the_practice_time_zone_through_clock_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut text = format!("{AUDIT_HEADER}\n");
    text += &audit_row("winter", "2026-01-10 23:30:00", NHS_A, "view"); // GMT: same UTC date
    text += &audit_row("summer", "2026-07-10 00:30:00", NHS_A, "view"); // BST: 23:30 UTC the day before
    text += &audit_row("fold", "2026-10-25 01:30:00", NHS_A, "view"); // twice: the earlier, 00:30 UTC
    text += &audit_row("offset", "2026-07-10T00:30:00+01:00", NHS_A, "view");
    let p = write(dir.path(), "t.csv", &text);
    let (r, _) = ingest_json(&store, &[p.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let df = read_kind(&store, "audit")
        .lazy()
        .select([
            col("event_id"),
            col("occurred_at")
                .dt()
                .strftime("%Y-%m-%dT%H:%M:%S%z")
                .alias("t"),
            col("date"),
        ])
        .sort(["event_id"], Default::default())
        .collect()
        .unwrap();
    assert_eq!(
        strings(&df, "t"),
        vec![
            Some("2026-10-25T00:30:00+0000".into()),
            Some("2026-07-09T23:30:00+0000".into()),
            Some("2026-07-09T23:30:00+0000".into()),
            Some("2026-01-10T23:30:00+0000".into()),
        ]
    );
    // Partitions are UTC dates.
    assert!(store.join("audit/date=2026-07-09").is_dir());
    assert!(!store.join("audit/date=2026-07-10").exists());

    // The same local times read in another zone give other instants.
    let other = dir.path().join("store-ny");
    let cfg = write(dir.path(), "ny.toml", "timezone = \"America/New_York\"\n");
    let r = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "ingest",
        "--json",
        "--store",
        other.to_str().unwrap(),
        p.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0);
    let ny = read_kind(&other, "audit")
        .lazy()
        .filter(col("event_id").eq(lit("winter")))
        .collect()
        .unwrap();
    let t = ny
        .column("occurred_at")
        .unwrap()
        .datetime()
        .unwrap()
        .phys
        .get(0)
        .unwrap();
    assert_eq!(
        t, 1_768_105_800_000_000,
        "23:30 EST is 04:30 UTC the next day"
    );
}

#[test]
fn independent_readers_see_a_hive_partitioned_sorted_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let r = run(&[
        "ingest",
        "--json",
        "--store",
        store.to_str().unwrap(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/sample_data"),
    ]);
    assert_eq!(
        r.code, 3,
        "the sample has deliberately bad rows: {}",
        r.stderr
    );
    let j = json(&r);
    assert_eq!(j["balanced"], true);
    let stored = j["totals"]["stored"].as_u64().unwrap();
    let mut per_kind: std::collections::BTreeMap<String, u64> = Default::default();
    for f in j["files"].as_array().unwrap() {
        if let Some(kind) = f["kind"].as_str() {
            *per_kind.entry(kind.to_string()).or_default() += f["stored"].as_u64().unwrap();
        }
    }
    assert_eq!(per_kind.len(), 4);
    let script = r#"
import sys, json, duckdb, pyarrow.parquet as pq, pyarrow.dataset as ds
store = sys.argv[1]
out = {}
for kind in ["audit", "entries", "appointments", "proxies"]:
    con = duckdb.connect()
    n = con.execute(f"select count(*) from read_parquet('{store}/{kind}/**/*.parquet')").fetchone()[0]
    has_date = "date" in [d[0] for d in con.execute(f"describe select * from read_parquet('{store}/{kind}/**/*.parquet')").fetchall()]
    t = pq.read_table(f"{store}/{kind}")
    out[kind] = {"duckdb": n, "duckdb_hive": has_date, "pyarrow": t.num_rows, "pyarrow_date": "date" in t.column_names,
                 "types": {f.name: str(f.type) for f in t.schema}}
# Inside each audit file rows are sorted by (nhs_number, occurred_at); files are zstd with statistics, a page
# index, the sort order recorded, dictionaries where values repeat and none for ids.
sorted_ok, zstd, stats = True, True, True
page_index, sorting_recorded, dictionaries = True, True, True
for frag in ds.dataset(f"{store}/audit", partitioning="hive").get_fragments():
    t = frag.to_table(columns=["nhs_number", "occurred_at"]).to_pylist()
    keys = [(r["nhs_number"], r["occurred_at"]) for r in t]
    sorted_ok &= keys == sorted(keys)
    md = pq.ParquetFile(frag.path).metadata
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    for rg in range(md.num_row_groups):
        c = md.row_group(rg).column(1)
        zstd &= c.compression == "ZSTD"
        stats &= c.statistics is not None and c.statistics.has_min_max
        page_index &= c.has_column_index and c.has_offset_index
        sorting = md.row_group(rg).sorting_columns or ()
        sorting_recorded &= [names[s.column_index] for s in sorting] == ["nhs_number", "occurred_at", "event_id"]
        enc = lambda name: md.row_group(rg).column(names.index(name)).encodings
        dictionaries &= "RLE_DICTIONARY" in enc("action") and "RLE_DICTIONARY" not in enc("event_id")
out["sorted"], out["zstd"], out["stats"] = sorted_ok, zstd, stats
out["page_index"], out["sorting_recorded"], out["dictionaries"] = page_index, sorting_recorded, dictionaries
print(json.dumps(out))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, store.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python readers failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut total = 0;
    for (kind, n) in &per_kind {
        assert_eq!(py[kind]["duckdb"].as_u64(), Some(*n), "{kind} via DuckDB");
        assert_eq!(py[kind]["pyarrow"].as_u64(), Some(*n), "{kind} via pyarrow");
        assert_eq!(py[kind]["duckdb_hive"], true);
        assert_eq!(py[kind]["pyarrow_date"], true);
        assert_eq!(
            read_kind(&store, kind).height() as u64,
            *n,
            "{kind} via polars"
        );
        total += n;
    }
    assert_eq!(total, stored);
    assert_eq!(py["audit"]["types"]["occurred_at"], "timestamp[us, tz=UTC]");
    assert_eq!(
        py["appointments"]["types"]["ends_at"],
        "timestamp[us, tz=UTC]"
    );
    assert_eq!(py["entries"]["types"]["visible_online"], "bool");
    assert_eq!(py["sorted"], true);
    assert_eq!(py["zstd"], true);
    assert_eq!(py["stats"], true);
    assert_eq!(py["page_index"], true);
    assert_eq!(py["sorting_recorded"], true);
    assert_eq!(py["dictionaries"], true);
}

#[test]
fn a_crash_between_writes_leaves_a_readable_store_that_a_rerun_completes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/sample_data/audit.csv");
    // Small batches, so the file is written as many part files across many partitions.
    let cfg = write(dir.path(), "small.toml", "[ingest]\nbatch_rows = 500\n");
    let cfg = cfg.to_str().unwrap();

    let clean = dir.path().join("clean");
    let r = run(&[
        "--config",
        cfg,
        "ingest",
        "--json",
        "--store",
        clean.to_str().unwrap(),
        sample,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let clean_rows = read_kind(&clean, "audit").height();

    let mut readers_checked = 0;
    for crash_after in ["1", "7", "40"] {
        let store = dir.path().join(format!("crashed-{crash_after}"));
        let s = store.to_str().unwrap();
        let r = run_env(
            &["--config", cfg, "ingest", "--json", "--store", s, sample],
            &[("ACCESSWATCH_TEST_CRASH_AFTER_WRITES", crash_after)],
        );
        assert_eq!(r.code, -1, "the injected crash kills the process");
        // What is there reads cleanly and is a subset of the full result.
        let partial = read_kind(&store, "audit");
        assert!(partial.height() < clean_rows);
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store.join("_manifest.json")).unwrap()).unwrap();
        assert_eq!(
            manifest["files"].as_array().map(Vec::len),
            Some(0),
            "the file is not recorded as ingested: {manifest}"
        );
        assert_eq!(
            manifest["pending"][0]["seq"], 1,
            "its sequence is taken: {manifest}"
        );
        // A reader beside the killed ingest sees the committed store (nothing yet), not the half-written file.
        if partial.height() > 0 {
            assert_eq!(
                visible_audit_rows(&store),
                "n\n0",
                "uncommitted rows are not visible"
            );
            readers_checked += 1;
        }
        // The re-run completes it: same files, same bytes, no duplicates.
        let r = run(&["--config", cfg, "ingest", "--json", "--store", s, sample]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let j = json(&r);
        assert_eq!(j["balanced"], true);
        assert_eq!(
            j["totals"]["duplicates"].as_u64().unwrap(),
            partial.height() as u64,
            "rows written before the crash count as duplicates"
        );
        let data = |root: &std::path::Path| -> Vec<(String, String)> {
            tree(root)
                .into_iter()
                .filter(|(p, _)| !p.starts_with('_') && !p.starts_with('.'))
                .collect()
        };
        assert_eq!(
            data(&store),
            data(&clean),
            "crash at write {crash_after} then re-run == uninterrupted run"
        );
    }
    assert!(
        readers_checked > 0,
        "a crash left rows for the reader to ignore"
    );
}

#[test]
fn a_killed_files_sequence_is_never_given_to_the_next_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = concat!(env!("CARGO_MANIFEST_DIR"), "/sample_data/audit.csv");
    // B: another file that repeats A's first 400 rows, which A writes first.
    let text = std::fs::read_to_string(a).unwrap();
    let head: Vec<&str> = text.lines().take(401).collect();
    let b = write(dir.path(), "audit-b.csv", &(head.join("\n") + "\n"));
    let b = b.to_str().unwrap();
    let cfg = write(dir.path(), "small.toml", "[ingest]\nbatch_rows = 500\n");
    let cfg = cfg.to_str().unwrap();
    let ingest = |store: &std::path::Path, file: &str| {
        let r = run(&[
            "--config",
            cfg,
            "ingest",
            "--json",
            "--store",
            store.to_str().unwrap(),
            file,
        ]);
        assert!(r.code == 0 || r.code == 3, "{}", r.stderr);
    };
    // What B alone gives, and what A then B give, uninterrupted.
    let alone = dir.path().join("alone");
    ingest(&alone, b);
    let both = dir.path().join("both");
    ingest(&both, a);
    ingest(&both, b);

    // A is killed part-way through writing its partitions (some of its rows are on disk, uncommitted); then B
    // arrives. A file larger than a batch is spilled by day before any partition is written, so the first kill point
    // that leaves rows behind is found by trying them in turn.
    let store = dir.path().join("store");
    let mut kill_at = 1;
    loop {
        let _ = std::fs::remove_dir_all(&store);
        let r = run_env(
            &[
                "--config",
                cfg,
                "ingest",
                "--json",
                "--store",
                store.to_str().unwrap(),
                a,
            ],
            &[("ACCESSWATCH_TEST_CRASH_AFTER_WRITES", &kill_at.to_string())],
        );
        assert_eq!(
            r.code, -1,
            "the injected crash at write {kill_at} kills the process"
        );
        if read_kind(&store, "audit").height() > 0 {
            break;
        }
        kill_at += 2;
        assert!(kill_at < 400, "no kill point left rows of A behind");
    }
    ingest(&store, b);
    // Readers see B, exactly as B alone: A's leftovers neither show, nor hide B's rows as their duplicates.
    assert_eq!(visible_audit_rows(&store), visible_audit_rows(&alone));
    // A sent again takes its own sequence back and completes: the store reads as A then B.
    ingest(&store, a);
    assert_eq!(visible_audit_rows(&store), visible_audit_rows(&both));
}

#[test]
fn outputs_are_owner_only_and_logs_carry_no_identifiers() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/sample_data");
    let r = run(&["-vv", "ingest", "--store", store.to_str().unwrap(), sample]);
    assert_eq!(r.code, 3);
    assert!(
        r.stderr.contains("file done"),
        "verbose logs are on: {}",
        r.stderr
    );
    // No NHS number from the input appears in stdout or stderr.
    let text = std::fs::read_to_string(format!("{sample}/audit.csv")).unwrap();
    let mut checked = 0;
    for line in text.lines().skip(1) {
        if let Some(n) = line.split(',').nth(2) {
            let digits: String = n.chars().filter(char::is_ascii_digit).collect();
            if digits.len() == 10 {
                assert!(
                    !r.stderr.contains(&digits) && !r.stdout.contains(&digits),
                    "identifier leaked"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 1000);
    for (rel, _) in tree(&store) {
        let p = store.join(&rel);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{rel}");
        let mut d = p.parent().unwrap().to_path_buf();
        while d.starts_with(&store) {
            assert_eq!(
                std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
                0o700,
                "{}",
                d.display()
            );
            d = d.parent().unwrap().to_path_buf();
        }
    }
}

#[test]
fn group_readable_outputs_are_warned_about_and_opened_files_in_the_store_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/sample_data/audit.csv");
    let r = run(&["ingest", "--store", store.to_str().unwrap(), sample]);
    assert!(r.code == 0 || r.code == 3, "{}", r.stderr);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    let chmod = |p: &std::path::Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    // Someone restores the store with their own umask: a part file 0644, its partition 0755, the store 0750.
    let (part, _) = tree(&store)
        .into_iter()
        .find(|(p, _)| p.ends_with(".parquet") && p.starts_with("audit/"))
        .unwrap();
    let part = store.join(part);
    let partition = part.parent().unwrap().to_path_buf();
    chmod(&part, 0o644);
    chmod(&partition, 0o755);
    chmod(&store, 0o750);
    let other = write(dir.path(), "b.csv", &format!(
        "event_id,occurred_at,nhs_number,account_id,actor_role,device_id,user_agent,ip_address,channel,session_id,action,section,outcome\n{}",
        audit_row("NEW-1", "2026-03-01T10:00:00Z", NHS_A, "view")
    ));
    let r = run(&[
        "ingest",
        "--store",
        store.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("can be read by other users of this machine (group or others)"),
        "a group-readable store is warned about: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("2 file(s) or folder(s) inside the store"),
        "{}",
        r.stderr
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&part), 0o600);
    assert_eq!(mode(&partition), 0o700);
    // The store folder itself is the operator's: warned about, left as it is.
    assert_eq!(mode(&store), 0o750);
}

#[test]
fn the_table_output_states_the_row_identity() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.csv",
        &(format!("{AUDIT_HEADER}\n")
            + &audit_row("e1", "2026-03-01T10:00:00Z", NHS_A, "view")
            + &audit_row("e2", "bad", NHS_A, "view")),
    );
    write(dir.path(), "b.csv", "nhs_number,label\n9434765919,x\n");
    let r = run_in(
        dir.path(),
        &["ingest", "--store", "store", "a.csv", "b.csv"],
    );
    assert_eq!(r.code, 1);
    assert_golden("ingest_table.txt", &r.stdout);
}

#[test]
fn usage_errors_exit_2() {
    let r = run(&["ingest"]);
    assert_eq!(r.code, 2);
    let r = run(&["ingest", "--kind", "fhir", "x.csv"]);
    assert_eq!(r.code, 2);
    let r = run(&["--help"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("ingest"));
}

#[test]
fn a_gzip_export_broken_part_way_fails_with_the_rows_read_and_its_intact_resend_is_read_whole() {
    // Rows are read ahead while the rows before them are validated: a read that fails there must still fail the
    // file, saying how far reading got, and not be taken for the end of the file.
    let dir = tempfile::tempdir().unwrap();
    // Many reads' worth of rows (a read is 8,192 rows per core), so the break comes in a read made ahead.
    let rows: u64 = 200_000;
    let whole = one_patients_views(rows);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(whole.as_bytes()).unwrap();
    let gz = enc.finish().unwrap();
    let file = dir.path().join("audit.csv.gz");
    // The compressed stream ends half way: the rows in its first half are readable, then the decoder fails.
    std::fs::write(&file, &gz[..gz.len() / 2]).unwrap();
    let store = dir.path().join("store");
    let (r, j) = ingest_json(&store, &[file.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert_eq!(j["files"][0]["status"], "failed", "{j}");
    let message = j["files"][0]["message"].as_str().unwrap_or_default();
    let got: u64 = message
        .strip_prefix("reading stopped after ")
        .and_then(|m| m.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{message}"));
    assert!(
        got >= rows / 4 && got < rows,
        "reading stopped part way, after a good part of the file: {message}"
    );
    // The intact file is read whole.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(whole.as_bytes()).unwrap();
    std::fs::write(&file, enc.finish().unwrap()).unwrap();
    let (r, j) = ingest_json(&store, &[file.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(j["files"][0]["status"], "ingested", "{j}");
    assert_eq!(visible_audit_rows(&store), format!("n\n{rows}"));
}

#[test]
fn a_file_cut_short_while_it_is_read_is_not_recorded_and_its_whole_resend_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let rows = 150_000;
    let whole = one_patients_views(rows);
    let file = write(dir.path(), "audit.csv", &whole);
    let cfg = write(dir.path(), "small.toml", "[ingest]\nbatch_rows = 1000\n");
    let cfg = cfg.to_str().unwrap();
    let store = dir.path().join("store");
    let marker = dir.path().join("paused");
    // The ingest pauses after its third write, far from the end of the file; the file is cut to half meanwhile.
    let child = std::process::Command::new(BIN)
        .args([
            "--config",
            cfg,
            "ingest",
            "--json",
            "--store",
            store.to_str().unwrap(),
            file.to_str().unwrap(),
        ])
        .env(
            "ACCESSWATCH_TEST_PAUSE_AFTER_WRITES",
            format!("3:{}", marker.display()),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !marker.exists() {
        assert!(started.elapsed().as_secs() < 120, "no pause at write 3");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let cut = whole[..whole.len() / 2].rfind('\n').unwrap() + 1;
    std::fs::write(&file, &whole[..cut]).unwrap();
    std::fs::remove_file(&marker).unwrap();
    let out = child.wait_with_output().unwrap();
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let j = json(&r);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert_eq!(j["files"][0]["status"], "failed", "{j}");
    assert!(
        j["files"][0]["message"]
            .as_str()
            .unwrap()
            .contains("changed while it was being read"),
        "{j}"
    );
    assert_eq!(
        visible_audit_rows(&store),
        "n\n0",
        "nothing of it is visible"
    );

    // The whole file is sent again: it is read (not "already ingested"), and every row is stored.
    std::fs::write(&file, &whole).unwrap();
    let again = run(&[
        "--config",
        cfg,
        "ingest",
        "--json",
        "--store",
        store.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert_eq!(json(&again)["files"][0]["status"], "ingested");
    assert_eq!(visible_audit_rows(&store), format!("n\n{rows}"));
}

#[test]
fn a_store_that_cannot_be_written_is_reported_with_its_path_and_the_files_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let header = "event_id,occurred_at,nhs_number,account_id,actor_role,device_id,user_agent,ip_address,channel,session_id,action,section,outcome\n";
    let a = write(
        dir.path(),
        "a.csv",
        &format!(
            "{header}{}",
            audit_row("A1", "2026-03-01T10:00:00Z", NHS_A, "view")
        ),
    );
    let b = write(
        dir.path(),
        "b.csv",
        &format!(
            "{header}{}",
            audit_row("B1", "2026-03-02T10:00:00Z", NHS_A, "view")
        ),
    );
    // B's partition cannot be made: a file stands where its folder would go (as a full disk or a lost mount
    // would refuse the write; permissions cannot, the tests may run as root).
    std::fs::create_dir_all(store.join("audit")).unwrap();
    std::fs::write(store.join("audit/date=2026-03-02"), b"in the way").unwrap();
    let (r, j) = ingest_json(&store, &[a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(j["files"][0]["status"], "ingested", "{j}");
    assert_eq!(j["files"][1]["status"], "failed", "{j}");
    let msg = j["files"][1]["message"].as_str().unwrap();
    assert!(
        msg.contains("the store could not be written") && msg.contains("date=2026-03-02"),
        "{msg}"
    );

    // query --output into a folder that does not exist names the path.
    let out = dir.path().join("no-such-folder/out.csv");
    let q = run(&[
        "query",
        "--store",
        store.to_str().unwrap(),
        "--sql",
        "SELECT COUNT(*) AS n FROM audit",
        "--format",
        "csv",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(q.code, 1);
    assert!(q.stderr.contains("no-such-folder/out.csv"), "{}", q.stderr);
}

/// Audit rows are read a chunk at a time and validated in parallel pieces, spilled by day a batch at a time and
/// written day by day. Across many chunks and batches, every row is still accounted for: quarantined rows keep their
/// lines in file order, the first copy of a repeated id wins, and each file written holds one slice of its day: the
/// day's valid rows in file order, cut every `batch_rows`, as if they were read one by one.
#[test]
fn audit_rows_validated_in_parallel_chunks_keep_lines_first_copies_and_day_slices() {
    let dir = tempfile::tempdir().unwrap();
    let batch_rows = 7_000usize;
    let cfg = write(
        dir.path(),
        "cfg.toml",
        &format!("[ingest]\nbatch_rows = {batch_rows}\ncompact_at_files = 0\n"),
    );
    let mut csv = String::from("event_id,occurred_at,nhs_number,account_id,actor_role,device_id,user_agent,ip_address,channel,session_id,action,section,outcome\n");
    // Line numbers count the header as line 1.
    let (mut bad_lines, mut valid_lines, mut repeats, mut cross_slice_repeats) =
        (Vec::new(), Vec::new(), 0, 0);
    let mut rows: Vec<String> = Vec::new();
    for i in 0..40_000usize {
        let line = i as i64 + 2;
        let at = format!(
            "2026-11-0{}T{:02}:{:02}:{:02}Z",
            1 + i % 3,
            (i / 7) % 24,
            (i / 3) % 60,
            i % 60
        );
        let row = if i % 1_001 == 500 {
            bad_lines.push(line);
            audit_row(&format!("ev{i}"), &at, "9434765918", "view")
        } else if i == 20_000 {
            bad_lines.push(line);
            format!("ev{i},{at},9434765919,acct-1,patient,dev-1,{},81.2.3.4,nhs_app,s-1,view,summary,success\n", "x".repeat(1_200_000))
        } else if i % 3_333 == 0 && i > 4_998 && valid_lines.contains(&(line - 4_998)) {
            // A row from 4,998 lines before (the same day), again: a later copy of the same event, in another
            // piece of the chunk or another chunk.
            repeats += 1;
            valid_lines.push(line);
            rows[i - 4_998].clone()
        } else if i == 36_000 || i == 39_000 {
            // A row from 30,000 lines before: 10,000 rows earlier on the same day, so its first copy is in an
            // earlier slice of that day than this one (slices are batch_rows = 7,000 of a day's rows).
            assert!(valid_lines.contains(&(line - 30_000)));
            repeats += 1;
            cross_slice_repeats += 1;
            valid_lines.push(line);
            rows[i - 30_000].clone()
        } else {
            valid_lines.push(line);
            audit_row(&format!("ev{i}"), &at, "9434765919", "view")
        };
        csv.push_str(&row);
        rows.push(row);
    }
    assert!(repeats >= 8);
    assert_eq!(cross_slice_repeats, 2);
    let input = write(dir.path(), "audit.csv", &csv);
    let store = dir.path().join("store");
    let r = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "ingest",
        "--json",
        "--store",
        store.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 3, "quarantined rows: {}", r.stderr);
    let j = json(&r);
    let totals = &j["totals"];
    assert_eq!(totals["read"], 40_000);
    assert_eq!(totals["quarantined"], bad_lines.len() as u64);
    assert_eq!(totals["duplicates"], repeats);
    assert_eq!(totals["stored"], (valid_lines.len() - repeats) as u64);

    let q = read_quarantine(&store);
    let q_lines: Vec<i64> = ints(&q, "line").into_iter().flatten().collect();
    assert_eq!(q_lines, bad_lines, "every quarantined row, by its own line");
    let reasons = strings(&q, "reason");
    let long = bad_lines.iter().position(|l| *l == 20_002).unwrap();
    assert!(reasons[long].as_deref().unwrap().contains("longer than"));

    // Each stored row keeps its own line (the id on line n is ev{n-2}): of a repeated event, the first copy.
    let stored = read_kind(&store, "audit");
    let ids = strings(&stored, "event_id");
    let lines = ints(&stored, "source_line");
    for (id, line) in ids.iter().zip(&lines) {
        let n: i64 = id.as_deref().unwrap()[2..].parse().unwrap();
        assert_eq!(line.unwrap(), n + 2, "{id:?}");
    }
    // Every part file holds rows of one slice of its day only: slice k of a day is that day's valid rows
    // [k * batch_rows, (k + 1) * batch_rows) in file order. Line n is on day (n - 2) % 3 (a repeat is a copy of a
    // row 4,998 or 30,000 lines earlier, the same day).
    let mut day_rows = [0usize; 3];
    let batch_of: std::collections::HashMap<i64, (i64, usize)> = valid_lines
        .iter()
        .map(|l| {
            let day = (l - 2) % 3;
            let k = day_rows[day as usize];
            day_rows[day as usize] += 1;
            (*l, (day, k / batch_rows))
        })
        .collect();
    let mut files = 0;
    for (path, _) in tree(&store.join("audit")) {
        let f = std::fs::File::open(store.join("audit").join(&path)).unwrap();
        let part = ParquetReader::new(f).finish().unwrap();
        let batches: std::collections::BTreeSet<(i64, usize)> = ints(&part, "source_line")
            .into_iter()
            .map(|l| batch_of[&l.unwrap()])
            .collect();
        assert_eq!(batches.len(), 1, "{path} mixes slices {batches:?}");
        files += 1;
    }
    let slices: usize = day_rows.iter().map(|n| n.div_ceil(batch_rows)).sum();
    assert!(slices > 3, "some day has more than one slice");
    assert_eq!(files, slices, "one file per slice of a day");
}
