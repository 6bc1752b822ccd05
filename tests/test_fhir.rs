//! FHIR AuditEvent ingest: the real HL7 and IHE examples (copied into tests/fixtures/auditevent with their
//! provenance in SOURCES.md), Bundles, NDJSON, XML, R5, the BALP client/server pair, and a generated practice
//! whose CSV and FHIR forms must give the same patients.

mod common;

use std::io::Write;
use std::path::Path;

use common::*;
use polars::prelude::*;
use serde_json::{json, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/auditevent");

fn fixture(rel: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(Path::new(FIXTURES).join(rel)).unwrap()).unwrap()
}

fn nhs_entity(nhs: &str) -> Value {
    json!({
        "what": { "identifier": { "system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs } },
        "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1" }
    })
}

fn with_patient(mut v: Value, nhs: &str) -> Value {
    v["entity"]
        .as_array_mut()
        .map(|a| a.push(nhs_entity(nhs)))
        .unwrap_or_else(|| v["entity"] = json!([nhs_entity(nhs)]));
    v
}

/// Ingests files into a fresh store and returns the JSON report and the stored audit rows.
fn ingest_files(dir: &Path, files: &[std::path::PathBuf]) -> (serde_json::Value, DataFrame) {
    let store = dir.join("store");
    let mut args = vec!["ingest", "--json", "--store", store.to_str().unwrap()];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let r = run(&args);
    assert!(r.code == 0 || r.code == 3, "{}{}", r.stdout, r.stderr);
    (json(&r), read_kind(&store, "audit"))
}

fn one(df: &DataFrame, col: &str) -> Option<String> {
    let c = df.column(col).unwrap();
    match c.dtype() {
        DataType::String => c.str().unwrap().get(0).map(str::to_string),
        _ => c
            .cast(&DataType::String)
            .unwrap()
            .str()
            .unwrap()
            .get(0)
            .map(str::to_string),
    }
}

#[test]
fn every_shared_fixture_is_stored_quarantined_or_passed_over_as_expected() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let r = run(&[
        "ingest",
        "--json",
        "--store",
        store.to_str().unwrap(),
        FIXTURES,
    ]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let report = json(&r);
    assert_eq!(report["balanced"], true);
    let q = read_quarantine(&store);
    let mut got = String::from("file,outcome,column,reason\n");
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let mut files: Vec<&Value> = report["files"].as_array().unwrap().iter().collect();
    files.sort_by_key(|f| f["path"].as_str().unwrap().to_string());
    for f in files {
        let rel = Path::new(f["path"].as_str().unwrap())
            .strip_prefix(FIXTURES)
            .unwrap()
            .display()
            .to_string();
        if rel == "SOURCES.md" {
            continue;
        }
        match f["status"].as_str().unwrap() {
            "skipped" => w
                .write_record([rel.as_str(), "skipped", "", f["message"].as_str().unwrap()])
                .unwrap(),
            _ if f["stored"].as_u64().unwrap() > 0 => {
                w.write_record([rel.as_str(), "stored", "", ""]).unwrap()
            }
            _ => {
                let files = strings(&q, "source_file");
                let i = files
                    .iter()
                    .position(|s| s.as_deref() == Some(rel.as_str()))
                    .unwrap();
                let column = strings(&q, "column")[i].clone().unwrap_or_default();
                let reason = strings(&q, "reason")[i].clone().unwrap();
                w.write_record([
                    rel.as_str(),
                    "quarantined",
                    column.as_str(),
                    reason.as_str(),
                ])
                .unwrap();
            }
        }
    }
    got.push_str(&String::from_utf8(w.into_inner().unwrap()).unwrap());
    assert_golden("fhir_fixtures.csv", &got);
}

#[test]
fn a_bundle_resolves_the_patient_and_a_balp_client_server_pair_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut patient = fixture("ihe-balp-1.1.4/Patient-ex-patient.json");
    patient["identifier"] =
        json!([{ "system": "https://fhir.nhs.uk/Id/nhs-number", "value": NHS_A }]);
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            { "resource": fixture("ihe-balp-1.1.4/AuditEvent-ex-auditBasicReadClient.json") },
            { "resource": fixture("ihe-balp-1.1.4/AuditEvent-ex-auditBasicReadServer.json") },
            { "resource": patient }
        ]
    });
    let path = write(dir.path(), "bundle.json", &bundle.to_string());
    let (report, df) = ingest_files(dir.path(), &[path]);
    assert_eq!(report["files"][0]["kind"], "audit");
    assert_eq!(
        (
            report["totals"]["read"].as_u64(),
            report["totals"]["stored"].as_u64(),
            report["totals"]["duplicates"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(df.height(), 1);
    assert_eq!(one(&df, "nhs_number").as_deref(), Some(NHS_A));
    assert_eq!(one(&df, "action").as_deref(), Some("view"));
    assert_eq!(one(&df, "outcome").as_deref(), Some("success"));
    assert_eq!(one(&df, "actor_role").as_deref(), Some("patient"));
    assert_eq!(
        one(&df, "occurred_at").as_deref(),
        Some("2020-04-29 09:49:00.000000+00:00")
    );
    assert_eq!(
        one(&df, "account_id"),
        None,
        "the requestor has only a display name"
    );
    assert!(one(&df, "event_id").unwrap().starts_with("derived-"));
    let raw: Value = serde_json::from_str(&one(&df, "raw").unwrap()).unwrap();
    assert_eq!(
        raw["resourceType"], "AuditEvent",
        "the whole resource is kept in raw"
    );
}

#[test]
fn json_and_xml_forms_of_one_example_give_identical_rows_and_failures_are_failures() {
    let dir = tempfile::tempdir().unwrap();
    let json_form = with_patient(
        fixture("r4-core-4.0.1/AuditEvent-example-error.json"),
        NHS_A,
    );
    let j = write(dir.path(), "error.json", &json_form.to_string());
    let xml = std::fs::read_to_string(
        Path::new(FIXTURES).join("r4-core-4.0.1-xml/auditevent-example-error.xml"),
    )
    .unwrap();
    let entity = format!(
        "<entity><what><identifier><system value=\"https://fhir.nhs.uk/Id/nhs-number\"/><value value=\"{NHS_A}\"/></identifier></what><role><system value=\"http://terminology.hl7.org/CodeSystem/object-role\"/><code value=\"1\"/></role></entity></AuditEvent>"
    );
    let x = write(
        dir.path(),
        "error.xml",
        &xml.replace("</AuditEvent>", &entity),
    );
    let a = ingest_files(&dir.path().join("a"), &[j]).1;
    let b = ingest_files(&dir.path().join("b"), &[x]).1;
    assert_eq!(a.height(), 1);
    assert_eq!(b.height(), 1);
    for col in [
        "event_id",
        "occurred_at",
        "nhs_number",
        "account_id",
        "actor_role",
        "device_id",
        "ip_address",
        "channel",
        "action",
        "section",
        "outcome",
    ] {
        assert_eq!(one(&a, col), one(&b, col), "{col}");
    }
    assert_eq!(
        one(&a, "outcome").as_deref(),
        Some("failure"),
        "outcome 8 is a failed access"
    );
    assert_eq!(one(&a, "account_id").as_deref(), Some("95"));
}

#[test]
fn r5_shapes_and_ndjson_with_a_broken_line_in_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let r5 = json!({
        "resourceType": "AuditEvent",
        "id": "r5-1",
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest" }] }],
        "code": { "coding": [{ "system": "http://hl7.org/fhir/restful-interaction", "code": "read" }] },
        "action": "R",
        "occurredDateTime": "2026-03-01T21:14:05+00:00",
        "outcome": { "code": { "system": "http://terminology.hl7.org/CodeSystem/issue-severity", "code": "fatal" } },
        "patient": { "identifier": { "system": "https://fhir.nhs.uk/Id/nhs-number", "value": NHS_B } },
        "agent": [{ "who": { "identifier": { "value": "acct-7" } }, "requestor": true, "networkString": "2001:0db8::1" }],
        "source": { "observer": { "display": "NHS App" } },
        "entity": [{ "what": { "reference": "Observation/55" } }]
    });
    let mut ok = r5.clone();
    ok["outcome"] = json!({ "code": { "code": "success" } });
    ok["id"] = json!("r5-2");
    ok["occurredDateTime"] = json!("2026-03-01T21:20:00Z");
    let lines = format!(
        "{r5}\n{{\"resourceType\": \"AuditEvent\", broken\n{ok}\n{}\n",
        json!({"resourceType": "AuditEvent", "entity": [nhs_entity(NHS_B)]})
    );
    let path = dir.path().join("events.ndjson.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(lines.as_bytes()).unwrap();
    enc.finish().unwrap();
    let (report, df) = ingest_files(dir.path(), &[path]);
    assert_eq!(
        (
            report["totals"]["read"].as_u64(),
            report["totals"]["stored"].as_u64(),
            report["totals"]["quarantined"].as_u64()
        ),
        (Some(4), Some(2), Some(2))
    );
    let df = df.sort(["occurred_at"], Default::default()).unwrap();
    assert_eq!(
        strings(&df, "outcome"),
        vec![Some("failure".into()), Some("success".into())]
    );
    assert_eq!(
        strings(&df, "section"),
        vec![Some("test_results".into()), Some("test_results".into())]
    );
    assert_eq!(
        strings(&df, "ip_address")[0].as_deref(),
        Some("2001:db8::1")
    );
    assert_eq!(strings(&df, "channel")[0].as_deref(), Some("nhs_app"));
    assert_eq!(strings(&df, "account_id")[0].as_deref(), Some("acct-7"));
    let q = read_quarantine(&dir.path().join("store"));
    let reasons = strings(&q, "reason");
    assert!(
        reasons
            .iter()
            .any(|r| r.as_deref().unwrap().starts_with("not JSON")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.as_deref().unwrap().contains("no time")),
        "{reasons:?}"
    );
    assert_eq!(ints(&q, "line"), vec![Some(2), Some(4)]);
}

#[test]
fn hostile_nesting_is_refused_without_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let deep = format!("{}1{}", "{\"a\":".repeat(100), "}".repeat(100));
    let lines = format!(
        "{}\n{}\n",
        json!({"resourceType": "AuditEvent"}),
        deep.replace("{\"a\":1", "{\"resourceType\":\"AuditEvent\",\"a\":1")
    );
    let p = write(dir.path(), "deep.ndjson", &lines);
    let (report, _) = ingest_files(dir.path(), &[p]);
    assert_eq!(report["totals"]["quarantined"], 2);
    let q = read_quarantine(&dir.path().join("store"));
    assert!(strings(&q, "reason")
        .iter()
        .any(|r| r.as_deref().unwrap().contains("levels deep")
            || r.as_deref().unwrap().contains("recursion")));
}

/// A generated practice of 56 days in `data`, its audit also as FHIR NDJSON, with further `generate` arguments.
fn generate_with_fhir(data: &Path, args: &[&str]) {
    let mut all = vec![
        "generate",
        "--out",
        data.to_str().unwrap(),
        "--days",
        "56",
        "--fhir",
    ];
    all.extend_from_slice(args);
    let r = run(&all);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn a_generated_practice_gives_the_same_patients_from_csv_and_from_fhir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    generate_with_fhir(
        &data,
        &["--patients", "300", "--seed", "21", "--as-of", "2026-11-22"],
    );
    let shared = ["entries.csv", "appointments.csv", "proxies.csv"].map(|f| data.join(f));
    let csv_files: Vec<_> = shared
        .iter()
        .cloned()
        .chain([data.join("audit.csv")])
        .collect();
    let fhir_files: Vec<_> = shared
        .iter()
        .cloned()
        .chain([data.join("fhir/audit.ndjson")])
        .collect();
    // The same practice sent both ways into one store: one access, one event.
    let both_files: Vec<_> = csv_files
        .iter()
        .cloned()
        .chain([data.join("fhir/audit.ndjson")])
        .collect();
    let mut outputs = Vec::new();
    let mut stored = Vec::new();
    for (name, files) in [
        ("csv", csv_files),
        ("fhir", fhir_files),
        ("both", both_files),
    ] {
        let store = dir.path().join(format!("store-{name}"));
        let reports = dir.path().join(format!("reports-{name}"));
        let mut args = vec!["ingest", "--json", "--store", store.to_str().unwrap()];
        args.extend(files.iter().map(|f| f.to_str().unwrap()));
        let r = run(&args);
        assert_eq!(r.code, 0, "{name}: {}", r.stdout);
        assert_eq!(json(&r)["totals"]["quarantined"], 0);
        let r = run(&[
            "detect",
            "--store",
            store.to_str().unwrap(),
            "--as-of",
            "2026-11-22",
            "--out",
            reports.to_str().unwrap(),
        ]);
        assert_eq!(r.code, 0);
        stored.push(visible_audit_rows(&store));
        outputs.push((
            std::fs::read_to_string(reports.join("2026-11-22/patients.csv")).unwrap(),
            std::fs::read_to_string(reports.join("2026-11-22/findings.csv")).unwrap(),
        ));
    }
    assert!(
        outputs[0].0.lines().count() > 5,
        "the practice has flagged patients"
    );
    assert_eq!(
        outputs[0].0, outputs[1].0,
        "patients.csv from CSV and from FHIR"
    );
    assert_eq!(
        outputs[0].1, outputs[1].1,
        "findings.csv from CSV and from FHIR"
    );
    assert_eq!(stored[0], stored[1], "audit rows from CSV and from FHIR");
    assert_eq!(
        stored[2], stored[0],
        "audit rows from CSV and FHIR together"
    );
    assert_eq!(
        outputs[2].0, outputs[0].0,
        "patients.csv from CSV and FHIR together"
    );
}

#[test]
fn ndjson_read_in_parallel_chunks_keeps_every_line_number_and_the_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("practice");
    generate_with_fhir(&data, &["--patients", "200", "--seed", "11"]);
    let text = std::fs::read_to_string(data.join("fhir/audit.ndjson")).unwrap();
    let mut lines: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
    // Enough lines for several chunks of 4,096, with damage on both sides of the first boundaries.
    assert!(lines.len() > 9000, "{} lines", lines.len());
    let broken = [4096usize, 4097, 8192, 8193];
    lines[4095] = b"{\"resourceType\": \"AuditEvent\", ".to_vec(); // line 4096: cut short
    lines[4096] = b"\xff\xfe not UTF-8".to_vec(); // line 4097
    lines[8191] = b"[1, 2".to_vec(); // line 8192
    lines[8192] = b"not json at all".to_vec(); // line 8193
    lines[5000] = Vec::new(); // line 5001: blank, passed over
    let mut bytes = Vec::new();
    for l in &lines {
        bytes.extend_from_slice(l);
        bytes.push(b'\n');
    }
    let file = dir.path().join("audit.ndjson");
    std::fs::write(&file, &bytes).unwrap();
    let (report, stored) = ingest_files(dir.path(), &[file]);
    let totals = &report["totals"];
    assert_eq!(
        totals["read"],
        lines.len() - 1,
        "every line but the blank one is read"
    );
    assert_eq!(totals["quarantined"], broken.len());
    let q = read_quarantine(&dir.path().join("store"));
    let mut qlines: Vec<i64> = ints(&q, "line").into_iter().map(Option::unwrap).collect();
    qlines.sort();
    assert_eq!(qlines, broken.map(|n| n as i64));
    // Every stored row names the line it came from: its raw resource is that line, parsed.
    let raw = strings(&stored, "raw");
    let at: Vec<i64> = ints(&stored, "source_line")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    assert_eq!(
        stored.height() as u64 + totals["duplicates"].as_u64().unwrap(),
        (lines.len() - 1 - broken.len()) as u64
    );
    for (raw, n) in raw.iter().zip(&at) {
        let from_file: Value = serde_json::from_slice(&lines[(*n - 1) as usize]).unwrap();
        let from_store: Value = serde_json::from_str(raw.as_deref().unwrap()).unwrap();
        assert_eq!(from_store, from_file, "line {n}");
    }
}
