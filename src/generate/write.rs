//! Writing a generated practice as the contract's CSV files plus `truth.csv`, and the scale mode that streams
//! millions of valid audit rows for benchmarks.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDate, SecondsFormat};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{local_naive, synthetic_nhs_number, Practice, PracticeSpec};
use crate::store::{create_private_dir, private_file};

/// The truth file's name when `generate --truth` is not given: `<out>.truth.csv`, beside the practice's folder.
pub const TRUTH_FILE: &str = "truth.csv";

/// Where the labels of a practice written to `out` go by default: beside the folder, never inside it.
pub fn default_truth_path(out: &Path) -> PathBuf {
    let name = out.file_name().map_or_else(
        || "practice".to_string(),
        |n| n.to_string_lossy().to_string(),
    );
    out.with_file_name(format!("{name}.{TRUTH_FILE}"))
}
/// The extension that carries the session id in the generator's FHIR output. No real feed carries it: a practice
/// that has such an extension names it in the config's `[fhir] session_extension`.
pub const GENERATOR_SESSION_EXTENSION: &str =
    "https://accesswatch.invalid/fhir/StructureDefinition/session-id";

fn csv_writer(
    dir: &Path,
    name: &str,
) -> io::Result<(PathBuf, csv::Writer<BufWriter<std::fs::File>>)> {
    let path = dir.join(name);
    let file = private_file(&path, true)?;
    Ok((
        path,
        csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(BufWriter::new(file)),
    ))
}

/// The audit columns the generator writes, in order.
pub const AUDIT_COLUMNS: [&str; 13] = [
    "event_id",
    "occurred_at",
    "nhs_number",
    "account_id",
    "actor_role",
    "device_id",
    "user_agent",
    "ip_address",
    "channel",
    "session_id",
    "action",
    "section",
    "outcome",
];

/// The optional audit columns an export may lack (`generate --drop-columns`).
pub const DROPPABLE_COLUMNS: [&str; 7] = [
    "event_id",
    "account_id",
    "actor_role",
    "device_id",
    "user_agent",
    "ip_address",
    "session_id",
];

/// Writes the practice's files into `dir`, leaving `drop_columns` out of `audit.csv` (a thin export), and the
/// labels to `truth`, which belongs outside `dir` (labels are not an input); returns their paths.
pub fn write_practice(
    p: &Practice,
    spec: &PracticeSpec,
    dir: &Path,
    drop_columns: &[String],
    truth: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    create_private_dir(dir)?;
    let tz = spec.timezone;
    let mut written = Vec::new();

    let (path, mut w) = csv_writer(dir, "audit.csv")?;
    let keep: Vec<bool> = AUDIT_COLUMNS
        .iter()
        .map(|c| !drop_columns.iter().any(|d| d == c))
        .collect();
    let kept = |row: [&str; 13]| -> Vec<String> {
        row.iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(v, _)| v.to_string())
            .collect()
    };
    w.write_record(kept(AUDIT_COLUMNS))?;
    for a in &p.audit {
        w.write_record(kept([
            a.event_id.as_deref().unwrap_or(""),
            &a.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            &a.nhs_number,
            &a.account_id,
            a.actor_role,
            &a.device.id,
            &a.device.user_agent,
            &a.ip,
            a.device.channel,
            &a.session_id,
            a.action,
            a.section.unwrap_or(""),
            a.outcome,
        ]))?;
    }
    w.flush()?;
    written.push(path);

    let (path, mut w) = csv_writer(dir, "entries.csv")?;
    w.write_record([
        "entry_id",
        "nhs_number",
        "recorded_at",
        "code",
        "term",
        "section",
        "visible_online",
    ])?;
    for e in &p.entries {
        w.write_record([
            e.entry_id.as_str(),
            &e.nhs_number,
            &local_naive(e.recorded_at, tz),
            &e.code,
            &e.term,
            e.section,
            if e.visible_online { "true" } else { "false" },
        ])?;
    }
    w.flush()?;
    written.push(path);

    let (path, mut w) = csv_writer(dir, "appointments.csv")?;
    w.write_record([
        "appointment_id",
        "nhs_number",
        "starts_at",
        "ends_at",
        "mode",
        "status",
    ])?;
    for a in &p.appointments {
        w.write_record([
            a.appointment_id.as_str(),
            &a.nhs_number,
            &local_naive(a.starts_at, tz),
            &local_naive(a.ends_at, tz),
            a.mode,
            a.status,
        ])?;
    }
    w.flush()?;
    written.push(path);

    let (path, mut w) = csv_writer(dir, "proxies.csv")?;
    w.write_record([
        "nhs_number",
        "proxy_account_id",
        "proxy_nhs_number",
        "relationship",
        "granted_at",
        "revoked_at",
    ])?;
    for x in &p.proxies {
        w.write_record([
            x.nhs_number.as_str(),
            &x.proxy_account_id,
            x.proxy_nhs_number.as_deref().unwrap_or(""),
            x.relationship,
            &local_naive(x.granted_at, tz),
            &x.revoked_at.map(|r| local_naive(r, tz)).unwrap_or_default(),
        ])?;
    }
    w.flush()?;
    written.push(path);

    let (path, mut w) = csv_writer(
        truth.parent().unwrap_or(Path::new(".")),
        &truth.file_name().map_or_else(
            || TRUTH_FILE.to_string(),
            |n| n.to_string_lossy().to_string(),
        ),
    )?;
    w.write_record([
        "nhs_number",
        "label",
        "scenario",
        "persona",
        "intensity",
        "onset",
        "watch_from",
        "watcher_visits",
    ])?;
    for t in &p.truth {
        w.write_record([
            t.nhs_number.as_str(),
            t.label,
            t.scenario.map(|s| s.name()).unwrap_or(""),
            t.persona.name(),
            t.intensity.unwrap_or(""),
            t.onset.unwrap_or(""),
            &t.watch_from.map(|d| d.to_string()).unwrap_or_default(),
            &t.watcher_visits.map(|n| n.to_string()).unwrap_or_default(),
        ])?;
    }
    w.flush()?;
    written.push(path);
    Ok(written)
}

/// Scale mode: `events` valid audit rows (sessions of ordinary use by `patients` people over `days` days up to
/// `as_of`), streamed to `dir/audit.csv` without holding them in memory. For benchmarks, not for evaluation.
pub fn write_scale_audit(
    dir: &Path,
    events: u64,
    patients: usize,
    days: u32,
    seed: u64,
    as_of: NaiveDate,
) -> anyhow::Result<PathBuf> {
    create_private_dir(dir)?;
    let path = dir.join("audit.csv");
    let mut out = BufWriter::with_capacity(1 << 20, private_file(&path, true)?);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let people: Vec<(String, u64, u32)> = (0..patients.max(1))
        .map(|_| {
            (
                synthetic_nhs_number(&mut rng),
                rng.gen::<u64>(),
                rng.gen_range(7..23),
            )
        })
        .collect();
    let start = (as_of - Duration::days(i64::from(days.max(1)) - 1))
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc()
        .timestamp();
    let span = i64::from(days.max(1)) * 86_400;
    writeln!(out, "event_id,occurred_at,nhs_number,account_id,actor_role,device_id,user_agent,ip_address,channel,session_id,action,section,outcome")?;
    const SECTIONS: [&str; 6] = [
        "summary",
        "medications",
        "test_results",
        "consultations",
        "problems",
        "appointments",
    ];
    let mut written = 0u64;
    let mut session = 0u64;
    while written < events {
        let (nhs, salt, hour) = &people[rng.gen_range(0..people.len())];
        let day = rng.gen_range(0..span / 86_400);
        let mut t = start + day * 86_400 + i64::from(*hour) * 3600 + rng.gen_range(-5400..5400);
        t = t.clamp(start, start + span - 1);
        session += 1;
        let n = rng.gen_range(2..7u64).min(events - written);
        for i in 0..n {
            let action = if i == 0 { "login" } else { "view" };
            let section = if i == 0 {
                ""
            } else {
                SECTIONS[rng.gen_range(0..SECTIONS.len())]
            };
            let ts = chrono::DateTime::from_timestamp(t, 0)
                .unwrap_or_default()
                .to_rfc3339_opts(SecondsFormat::Secs, true);
            writeln!(
                out,
                "ev{written},{ts},{nhs},acct-{salt:x},patient,dev-{:x},NHSApp/2.41.0 (iPhone; iOS 18.1),81.{}.{}.{},nhs_app,s{session},{action},{section},success",
                salt >> 16,
                salt % 250 + 1,
                (salt >> 8) % 256,
                (salt >> 24) % 250 + 1
            )?;
            written += 1;
            t += rng.gen_range(5..120);
        }
    }
    out.flush()?;
    Ok(path)
}

/// The audit events as FHIR R4 AuditEvent NDJSON (`audit.ndjson`), mapped so that the FHIR reader gives back the
/// same canonical rows as `audit.csv` (the session id travels in the `fhir.session_extension` extension).
pub fn write_fhir_audit(p: &Practice, dir: &Path) -> anyhow::Result<PathBuf> {
    use serde_json::json;
    create_private_dir(dir)?;
    let path = dir.join("audit.ndjson");
    let mut out = BufWriter::new(private_file(&path, true)?);
    const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
    const REST: &str = "http://hl7.org/fhir/restful-interaction";
    let coding = |system: &str, code: &str| json!({ "system": system, "code": code });
    for (i, a) in p.audit.iter().enumerate() {
        let rest = |verb: &str| {
            (
                coding(
                    "http://terminology.hl7.org/CodeSystem/audit-event-type",
                    "rest",
                ),
                coding(REST, verb),
            )
        };
        let (kind, sub, verb, target): (serde_json::Value, serde_json::Value, &str, Option<&str>) =
            match a.action {
                "login" | "login_failed" => {
                    (coding(DCM, "110114"), coding(DCM, "110122"), "E", None)
                }
                "logout" => (coding(DCM, "110114"), coding(DCM, "110123"), "E", None),
                "view" => {
                    let (t, s) = rest("read");
                    (t, s, "R", None)
                }
                "download" => (coding(DCM, "110106"), coding(DCM, "110106"), "R", None),
                "book_appointment" => {
                    let (t, s) = rest("create");
                    (t, s, "C", Some("Appointment"))
                }
                "cancel_appointment" => {
                    let (t, s) = rest("delete");
                    (t, s, "D", Some("Appointment"))
                }
                "order_prescription" => {
                    let (t, s) = rest("create");
                    (t, s, "C", Some("MedicationRequest"))
                }
                "send_message" => {
                    let (t, s) = rest("create");
                    (t, s, "C", Some("Communication"))
                }
                "change_contact_details" => {
                    let (t, s) = rest("update");
                    (t, s, "U", Some("Patient"))
                }
                "change_password" => (coding(DCM, "110113"), coding(DCM, "110137"), "E", None),
                "proxy_granted" => (coding(DCM, "110113"), coding(DCM, "110136"), "C", None),
                "proxy_revoked" => (coding(DCM, "110113"), coding(DCM, "110136"), "D", None),
                _ => {
                    let (t, s) = rest("operation");
                    (t, s, "E", None)
                }
            };
        let mut entities = vec![json!({
            "what": { "identifier": { "system": crate::ingest::fhir::NHS_NUMBER_SYSTEM, "value": a.nhs_number } },
            "role": coding("http://terminology.hl7.org/CodeSystem/object-role", "1"),
        })];
        if let Some(t) = target {
            entities.push(json!({ "what": { "reference": format!("{t}/g{i}") }, "role": coding("http://terminology.hl7.org/CodeSystem/object-role", "4") }));
        }
        if let Some(section) = a.section {
            let resource = match section {
                "test_results" => Some("Observation"),
                "documents" => Some("DocumentReference"),
                "consultations" => Some("Encounter"),
                "medications" => Some("MedicationStatement"),
                "problems" => Some("Condition"),
                "allergies" => Some("AllergyIntolerance"),
                "immunisations" => Some("Immunization"),
                "appointments" => Some("Appointment"),
                _ => None,
            };
            entities.push(match resource {
                Some(r) => json!({ "what": { "reference": format!("{r}/g{i}") }, "role": coding("http://terminology.hl7.org/CodeSystem/object-role", "4") }),
                None => json!({ "role": coding("http://terminology.hl7.org/CodeSystem/object-role", "4"), "name": section }),
            });
        }
        let role = if a.actor_role == "proxy" {
            "AGNT"
        } else {
            "PAT"
        };
        let resource = json!({
            "resourceType": "AuditEvent",
            "id": a.event_id.clone().unwrap_or_else(|| format!("gen-{i}")),
            "extension": [{ "url": GENERATOR_SESSION_EXTENSION, "valueString": a.session_id }],
            "type": kind,
            "subtype": [sub],
            "action": verb,
            "recorded": a.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            "outcome": if a.outcome == "success" { "0" } else { "8" },
            "agent": [
                {
                    "type": { "coding": [coding("http://terminology.hl7.org/CodeSystem/v3-RoleClass", role)] },
                    "who": { "identifier": { "value": a.account_id } },
                    "requestor": true,
                    "network": { "address": a.ip, "type": "2" }
                },
                {
                    "type": { "coding": [coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "DEV")] },
                    "who": { "identifier": { "value": a.device.id } },
                    "name": a.device.user_agent,
                    "requestor": false
                }
            ],
            "source": { "observer": { "display": a.device.channel } },
            "entity": entities,
        });
        writeln!(out, "{resource}")?;
    }
    out.flush()?;
    Ok(path)
}
