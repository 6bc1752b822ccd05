//! The clinical-context views over crafted records: sensitive entries, restrictions, proxies, face-to-face visits,
//! and the same views through SQL.

mod common;

use std::path::{Path, PathBuf};

use accesswatch::config::{Config, Overrides};
use accesswatch::context::catalogue::SensitiveCatalogue;
use accesswatch::context::views;
use common::*;
use polars::prelude::*;
use polars::sql::SQLContext;

const ENTRIES_HEADER: &str = "entry_id,nhs_number,recorded_at,code,term,section,visible_online\n";

fn store_with(dir: &Path, files: &[(&str, String)]) -> PathBuf {
    let store = dir.join("store");
    let config = Config::load(
        None,
        &Overrides {
            store: Some(store.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    for (name, text) in files {
        let p = write(dir, name, text);
        let report = ingest_in_process(&config, &[p]);
        assert!(report.balanced && !report.has_problem_files(), "{report:?}");
    }
    store
}

fn instants_of(df: &DataFrame, col: &str) -> Vec<Option<String>> {
    df.column(col)
        .unwrap()
        .datetime()
        .unwrap()
        .phys
        .iter()
        .map(|t| {
            t.map(|t| {
                chrono::DateTime::from_timestamp_micros(t)
                    .unwrap()
                    .format("%Y-%m-%d %H:%M")
                    .to_string()
            })
        })
        .collect()
}

#[test]
fn restrictions_follow_104_and_106_codes() {
    let dir = tempfile::tempdir().unwrap();
    let e = format!(
        "{ENTRIES_HEADER}\
         R1,{NHS_A},2026-01-05T09:00:00Z,1364731000000104,Enhanced review indicated,,true\n\
         R2,{NHS_A},2026-01-06T09:00:00Z,1364731000000104,Enhanced review indicated again,,true\n\
         R3,{NHS_A},2026-02-01T09:00:00Z,1364751000000106,Enhanced review not indicated,,true\n\
         R4,{NHS_A},2026-03-01T09:00:00Z,1364731000000104,Enhanced review indicated,,true\n\
         R5,{NHS_B},2026-01-01T09:00:00Z,1364751000000106,106 with no 104 before it,,true\n\
         R6,{NHS_C},2026-01-10T09:00:00Z,1364731000000104,104 not shown online,,false\n"
    );
    let store = store_with(dir.path(), &[("e.csv", e)]);
    let r = views::restrictions(&store).unwrap().collect().unwrap();
    assert_eq!(
        strings(&r, "nhs_number"),
        vec![Some(NHS_C.into()), Some(NHS_A.into()), Some(NHS_A.into())],
        "B's lone 106 restricts nothing"
    );
    assert_eq!(
        instants_of(&r, "restricted_from"),
        vec![
            Some("2026-01-10 09:00".into()),
            Some("2026-01-05 09:00".into()),
            Some("2026-03-01 09:00".into())
        ]
    );
    assert_eq!(
        instants_of(&r, "restricted_until"),
        vec![None, Some("2026-02-01 09:00".into()), None]
    );
    assert_eq!(
        strings(&r, "started_by"),
        vec![Some("R6".into()), Some("R1".into()), Some("R4".into())]
    );
    assert_eq!(
        strings(&r, "lifted_by"),
        vec![None, Some("R3".into()), None]
    );
}

#[test]
fn sensitive_entries_by_code_and_keyword_without_redacted_or_restricted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let first = format!(
        "{ENTRIES_HEADER}\
         S1,{NHS_A},2026-01-02T10:00:00Z,205171000000107,Victim of domestic violence,problems,true\n\
         S2,{NHS_A},2026-01-03T10:00:00Z,EMISLOC1,Nexplanon implant inserted,consultations,true\n\
         S3,{NHS_A},2026-01-04T10:00:00Z,205171000000107,Victim of domestic violence (redacted),problems,false\n\
         S4,{NHS_A},2026-01-05T10:00:00Z,22298006,Myocardial infarction,problems,true\n\
         S5,{NHS_A},2026-01-06T10:00:00Z,1364731000000104,Enhanced review indicated,,true\n\
         S6,{NHS_A},2026-01-07T10:00:00Z,EMISLOC2,MARAC referral letter,documents,true\n\
         S7,{NHS_A},2026-01-20T10:00:00Z,1364751000000106,Enhanced review not indicated,,true\n\
         S8,{NHS_B},2026-01-02T10:00:00Z,1364731000000104,Enhanced review indicated,,true\n\
         S9,{NHS_B},2026-01-03T10:00:00Z,35489007,Depressive disorder,problems,true\n\
         S10,{NHS_C},2026-01-03T10:00:00Z,35489007,Depressive disorder,problems,true\n"
    );
    // A later export redacts S10.
    let second = format!("{ENTRIES_HEADER}S10,{NHS_C},2026-01-03T10:00:00Z,35489007,Depressive disorder,problems,false\n");
    let store = store_with(dir.path(), &[("1.csv", first), ("2.csv", second)]);
    let catalogue = SensitiveCatalogue::default_catalogue().unwrap();
    let s = views::sensitive_entries(&store, &catalogue)
        .unwrap()
        .collect()
        .unwrap();
    assert_eq!(
        strings(&s, "entry_id"),
        vec![Some("S1".into()), Some("S2".into()), Some("S6".into())]
    );
    assert_eq!(
        strings(&s, "category"),
        vec![
            Some("domestic_abuse".into()),
            Some("contraception".into()),
            Some("other_agency_document".into())
        ]
    );
    assert_eq!(
        strings(&s, "matched_by"),
        vec![
            Some("code".into()),
            Some("keyword".into()),
            Some("keyword".into())
        ]
    );
    // S6 was recorded under the restriction S5..S7: it became visible when S7 lifted it. S9 (patient B) is still
    // under restriction, so it is not visible at all.
    assert_eq!(
        instants_of(&s, "visible_from"),
        vec![
            Some("2026-01-02 10:00".into()),
            Some("2026-01-03 10:00".into()),
            Some("2026-01-20 10:00".into())
        ]
    );
    assert_eq!(
        instants_of(&s, "recorded_at")[2],
        Some("2026-01-07 10:00".into())
    );
}

#[test]
fn pregnancy_and_hiv_codes_are_sensitive_in_an_export_without_terms() {
    // Codes only: an export that carries no terms must still show a termination of pregnancy, a miscarriage and
    // an HIV diagnosis, from the shipped public lists rather than from keywords.
    let dir = tempfile::tempdir().unwrap();
    let e = format!(
        "{ENTRIES_HEADER}\
         T1,{NHS_A},2026-01-02T10:00:00Z,176849008,,consultations,true\n\
         T2,{NHS_A},2026-01-03T10:00:00Z,156072005,,problems,true\n\
         T3,{NHS_A},2026-01-04T10:00:00Z,165816005,,problems,true\n\
         T4,{NHS_A},2026-01-05T10:00:00Z,22298006,,problems,true\n"
    );
    let store = store_with(dir.path(), &[("e.csv", e)]);
    let catalogue = SensitiveCatalogue::default_catalogue().unwrap();
    let s = views::sensitive_entries(&store, &catalogue)
        .unwrap()
        .collect()
        .unwrap();
    assert_eq!(
        strings(&s, "entry_id"),
        vec![Some("T1".into()), Some("T2".into()), Some("T3".into())]
    );
    assert_eq!(
        strings(&s, "category"),
        vec![
            Some("pregnancy".into()),
            Some("pregnancy".into()),
            Some("sexual_health".into())
        ]
    );
    assert!(strings(&s, "matched_by")
        .iter()
        .all(|m| m.as_deref() == Some("code")));
}

#[test]
fn practice_lists_and_keywords_extend_the_catalogue() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "local.csv",
        "code,term,category,source\nEMISX99,Local safeguarding code,safeguarding,our practice\n",
    );
    let cfg = write(
        dir.path(),
        "c.toml",
        "[codes]\nlists = [\"local.csv\"]\n[codes.keywords]\nsexual_health = [\"sexual wellbeing clinic\"]\n",
    );
    let config = Config::load(Some(&cfg), &Overrides::default()).unwrap();
    let c = SensitiveCatalogue::for_config(&config).unwrap();
    assert_eq!(
        c.category_of_code("EMISX99").map(|c| c.name()),
        Some("safeguarding")
    );
    assert_eq!(
        c.category_of_term("Seen at Sexual Wellbeing Clinic")
            .map(|c| c.name()),
        Some("sexual_health")
    );
    assert!(c.codes.len() > 3000, "the built-in catalogue stays");
    let only = write(
        dir.path(),
        "d.toml",
        "[codes]\ndefault_catalogue = false\nlists = [\"local.csv\"]\n",
    );
    let c =
        SensitiveCatalogue::for_config(&Config::load(Some(&only), &Overrides::default()).unwrap())
            .unwrap();
    assert_eq!(c.codes.len(), 1);
    assert!(c.keywords.is_empty());
    // A bad practice list is refused with its line.
    write(
        dir.path(),
        "bad.csv",
        "code,term,category,source\n123,x,nope,y\n",
    );
    let bad = write(dir.path(), "e.toml", "[codes]\nlists = [\"bad.csv\"]\n");
    let err =
        SensitiveCatalogue::for_config(&Config::load(Some(&bad), &Overrides::default()).unwrap())
            .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("bad.csv") && msg.contains("line 2"), "{msg}");
}

#[test]
fn proxy_links_merge_overlapping_grants() {
    let dir = tempfile::tempdir().unwrap();
    let p = format!(
        "nhs_number,proxy_account_id,proxy_nhs_number,relationship,granted_at,revoked_at\n\
         {NHS_A},acct-mum,{NHS_B},parent,2025-01-01T00:00:00Z,2025-06-01T00:00:00Z\n\
         {NHS_A},acct-mum,{NHS_B},parent,2025-05-01T00:00:00Z,2025-09-01T00:00:00Z\n\
         {NHS_A},acct-mum,{NHS_B},parent,2026-01-01T00:00:00Z,\n\
         {NHS_A},acct-dad,,parent,2025-03-01T00:00:00Z,\n"
    );
    // Later, the open dad grant is revoked: a new version of the same grant.
    let revoke = format!(
        "nhs_number,proxy_account_id,proxy_nhs_number,relationship,granted_at,revoked_at\n\
         {NHS_A},acct-dad,,parent,2025-03-01T00:00:00Z,2026-02-01T00:00:00Z\n"
    );
    let store = store_with(dir.path(), &[("p.csv", p), ("r.csv", revoke)]);
    let l = views::proxy_links(&store).unwrap().collect().unwrap();
    assert_eq!(
        strings(&l, "proxy_account_id"),
        vec![
            Some("acct-dad".into()),
            Some("acct-mum".into()),
            Some("acct-mum".into())
        ]
    );
    assert_eq!(
        instants_of(&l, "valid_from"),
        vec![
            Some("2025-03-01 00:00".into()),
            Some("2025-01-01 00:00".into()),
            Some("2026-01-01 00:00".into())
        ]
    );
    assert_eq!(
        instants_of(&l, "valid_until"),
        vec![
            Some("2026-02-01 00:00".into()),
            Some("2025-09-01 00:00".into()),
            None
        ]
    );
    assert_eq!(strings(&l, "proxy_nhs_number")[1].as_deref(), Some(NHS_B));
}

#[test]
fn face_to_face_visits_are_attended_face_to_face_appointments() {
    let dir = tempfile::tempdir().unwrap();
    let a = format!(
        "appointment_id,nhs_number,starts_at,ends_at,mode,status\n\
         A1,{NHS_A},2026-01-05 09:00:00,2026-01-05 09:10:00,face_to_face,attended\n\
         A2,{NHS_A},2026-01-06 09:00:00,2026-01-06 09:10:00,telephone,attended\n\
         A3,{NHS_A},2026-01-07 09:00:00,2026-01-07 09:10:00,face_to_face,did_not_attend\n\
         A4,{NHS_A},2026-01-08 09:00:00,2026-01-08 09:10:00,face_to_face,cancelled\n\
         A5,{NHS_A},2026-01-09 09:00:00,2026-01-09 09:10:00,face_to_face,booked\n\
         A6,{NHS_B},2026-01-09 09:00:00,2026-01-09 09:20:00,face_to_face,\n"
    );
    // The next export says A5 was attended.
    let update = format!("appointment_id,nhs_number,starts_at,ends_at,mode,status\nA5,{NHS_A},2026-01-09 09:00:00,2026-01-09 09:10:00,face_to_face,attended\n");
    let store = store_with(dir.path(), &[("a.csv", a), ("b.csv", update)]);
    let v = views::face_to_face_visits(&store)
        .unwrap()
        .collect()
        .unwrap();
    assert_eq!(
        strings(&v, "appointment_id"),
        vec![Some("A6".into()), Some("A1".into()), Some("A5".into())]
    );
    assert_eq!(
        instants_of(&v, "ends_at")[0],
        Some("2026-01-09 09:20".into())
    );
}

#[test]
fn the_views_are_sql_tables() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let config = Config::load(
        None,
        &Overrides {
            store: Some(store.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let sample = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/sample_data"));
    ingest_in_process(&config, std::slice::from_ref(&sample));
    let catalogue = SensitiveCatalogue::default_catalogue().unwrap();
    let mut ctx = SQLContext::new();
    views::register_sql(&mut ctx, &store, &catalogue).unwrap();
    let mut count = |sql: &str| -> i64 {
        let df = ctx.execute(sql).unwrap().collect().unwrap();
        df.column("n")
            .unwrap()
            .cast(&DataType::Int64)
            .unwrap()
            .i64()
            .unwrap()
            .get(0)
            .unwrap()
    };
    // Each table holds what the inputs say it should, counted from the CSV files themselves.
    let rows = |name: &str| read_csv_rows(&sample.join(name));
    let entries = rows("entries.csv");
    let appointments = rows("appointments.csv");
    for (table, want) in [
        ("entries", entries.len()),
        ("proxies", rows("proxies.csv").len()),
        ("appointments", appointments.len()),
        (
            "face_to_face_visits",
            appointments
                .iter()
                .filter(|a| a["mode"] == "face_to_face" && a["status"] == "attended")
                .count(),
        ),
        (
            "restrictions",
            entries
                .iter()
                .filter(|e| e["code"] == "1364731000000104")
                .count(),
        ),
    ] {
        assert_eq!(
            count(&format!("SELECT COUNT(*) AS n FROM {table}")),
            want as i64,
            "{table}"
        );
    }
    for table in ["audit", "quarantine", "sensitive_codes"] {
        assert!(
            count(&format!("SELECT COUNT(*) AS n FROM {table}")) > 0,
            "{table}"
        );
    }
    // Every entry whose code the catalogue lists is a sensitive entry of that category (keywords can only add).
    let mut by_code: std::collections::BTreeMap<String, i64> = Default::default();
    for e in &entries {
        if let Some(c) = catalogue.category_of_code(&e["code"]) {
            *by_code.entry(c.name().to_string()).or_default() += 1;
        }
    }
    assert!(!by_code.is_empty());
    for (category, n) in by_code {
        let got = count(&format!(
            "SELECT COUNT(*) AS n FROM sensitive_entries WHERE category = '{category}'"
        ));
        assert!(
            got >= n,
            "{category}: {got} sensitive entries, {n} by code alone"
        );
    }
}

#[test]
fn codes_commands_list_look_up_and_lint() {
    let r = run(&["codes", "categories"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("category"));
    for cat in [
        "domestic_abuse",
        "other_agency_document",
        "contraception",
        "sexual_health",
        "pregnancy",
        "injury",
    ] {
        assert!(r.stdout.contains(cat), "{cat}");
    }
    let r = run(&["codes", "lookup", "205171000000107"]);
    assert!(
        r.stdout.contains("domestic_abuse") && r.stdout.contains("Victim of domestic violence")
    );
    let r = run(&["codes", "lookup", "coil fitted"]);
    assert!(
        r.stdout.contains("would be contraception (by keyword)"),
        "{}",
        r.stdout
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "list.csv", "code,term,category,source\n205171000000107,a,domestic_abuse,x\n205171000000108,b,domestic_abuse,x\n205171000000107,c,domestic_abuse,x\n22298006,d,heart,x\n");
    let r = run(&["codes", "lint", bad.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    let out = r.stdout.replace(dir.path().to_str().unwrap(), "<tmp>");
    assert_eq!(
        out,
        "<tmp>/list.csv:3: code 205171000000108: not a valid SNOMED CT identifier (partition or Verhoeff check digit)\n\
         <tmp>/list.csv:4: code 205171000000107 is already listed as domestic_abuse at line 2\n\
         <tmp>/list.csv:5: unknown category 'heart' (categories: domestic_abuse, other_agency_document, safeguarding, self_harm, injury, sexual_health, contraception, pregnancy, mental_health, substance_misuse)\n\
         <tmp>/list.csv: 1 codes, 3 problem(s)\n"
    );
    let r = run(&[
        "codes",
        "lint",
        concat!(env!("CARGO_MANIFEST_DIR"), "/codelists/sensitive_codes.csv"),
    ]);
    assert_eq!(r.code, 0, "the shipped catalogue lints clean: {}", r.stdout);
}
