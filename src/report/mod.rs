//! The run folder `<reports>/<as-of>/`: `report.html` and `charts/` for the safeguarding lead, `patients.csv`,
//! `findings.csv`, `findings.parquet` and `summary.json` for other tools.
//!
//! The folder is built beside its final name and renamed into place, so a reader (or a re-run) never sees half a
//! run; re-running a day replaces its folder with identical content (ids and order are deterministic).

pub mod chart_data;
pub mod charts;
pub mod html;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, SecondsFormat};
use polars::prelude::*;
use rayon::prelude::*;
use serde::Serialize;

use crate::detect::scoring::PatientRisk;
use crate::detect::{rules, short_device, Detection, DetectionStats, Finding};
use crate::pseudonym::Pseudonymiser;
use crate::records::{instants, text};
use crate::store::{create_private_dir, fault_point, private_file, write_parquet};

pub const PATIENTS_CSV: &str = "patients.csv";
pub const FINDINGS_CSV: &str = "findings.csv";
pub const FINDINGS_PARQUET: &str = "findings.parquet";
pub const SUMMARY_JSON: &str = "summary.json";
pub const REPORT_HTML: &str = "report.html";

/// The figures of a run, as `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub tool: &'static str,
    pub version: &'static str,
    pub as_of: NaiveDate,
    pub config_hash: String,
    pub input: InputFigures,
    pub detection: DetectionStats,
    pub patients_flagged: BTreeMap<&'static str, u64>,
    pub findings_per_rule: BTreeMap<&'static str, u64>,
    /// Flagged patients' cases by status: `new`, `new_evidence`, `continuing`, `reviewed`.
    pub cases: BTreeMap<&'static str, u64>,
    /// The medium and high thresholds the run used.
    #[serde(skip)]
    pub thresholds: (f64, f64),
    pub seconds: BTreeMap<&'static str, f64>,
    /// Whether `patients.csv`, `findings.csv` and `findings.parquet` carry pseudonyms instead of identifiers.
    pub pseudonymised: bool,
}

/// What the store holds, from its manifest.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InputFigures {
    pub files: u64,
    pub rows_read: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub quarantined: u64,
}

/// Neutralises a value that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, carriage return).
/// The run folders under `reports` (those named by a date), oldest first; none if the folder cannot be read.
pub fn run_folders(reports: &Path) -> Vec<(NaiveDate, PathBuf)> {
    let mut days: Vec<(NaiveDate, PathBuf)> = fs::read_dir(reports)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    NaiveDate::parse_from_str(&name, "%Y-%m-%d")
                        .ok()
                        .map(|d| (d, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    days.sort();
    days
}

pub fn csv_safe(value: &str) -> String {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value.to_string(),
    }
}

pub fn rfc3339(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn summarise(
    d: &Detection,
    as_of: NaiveDate,
    config_hash: &str,
    input: InputFigures,
    seconds: BTreeMap<&'static str, f64>,
) -> RunSummary {
    let mut flagged: BTreeMap<&'static str, u64> = [("high", 0), ("medium", 0), ("low", 0)]
        .into_iter()
        .collect();
    for p in &d.patients {
        *flagged.entry(p.risk_level).or_default() += 1;
    }
    let mut per_rule: BTreeMap<&'static str, u64> =
        rules::CATALOGUE.iter().map(|r| (r.meta.id, 0)).collect();
    for f in &d.findings {
        *per_rule.entry(f.rule_id).or_default() += 1;
    }
    RunSummary {
        tool: "accesswatch",
        version: env!("CARGO_PKG_VERSION"),
        as_of,
        config_hash: config_hash.to_string(),
        input,
        detection: d.stats.clone(),
        patients_flagged: flagged,
        findings_per_rule: per_rule,
        cases: BTreeMap::new(),
        thresholds: {
            let dc = crate::detect::config::DetectConfig::default();
            (dc.medium, dc.high)
        },
        seconds,
        pseudonymised: false,
    }
}

/// The analyst exports of a run: the patients and findings as written to `patients.csv`, `findings.csv` and
/// `findings.parquet`. With a pseudonymiser, NHS numbers, device ids (also where an explanation names one) and
/// finding ids (a hash of the NHS number) become keyed pseudonyms; `report.html` and the charts always keep the
/// real identifiers, because the safeguarding lead must be able to find the patient.
pub struct Exports<'a> {
    pub patients: Cow<'a, [PatientRisk]>,
    pub findings: Cow<'a, [Finding]>,
}

impl<'a> Exports<'a> {
    /// Without a pseudonymiser the exports are the detection's own rows, borrowed, not copied.
    pub fn new(d: &'a Detection, pseudo: Option<&Pseudonymiser>) -> Exports<'a> {
        let Some(p) = pseudo else {
            return Exports {
                patients: Cow::Borrowed(&d.patients),
                findings: Cow::Borrowed(&d.findings),
            };
        };
        let patients = d
            .patients
            .iter()
            .map(|r| PatientRisk {
                nhs_number: p.pseudonym_once("nhs", &r.nhs_number),
                ..r.clone()
            })
            .collect();
        let findings = d
            .findings
            .iter()
            .map(|f| Finding {
                finding_id: format!("f-{}", &p.pseudonym("fid", &f.finding_id)[4..20]),
                nhs_number: p.pseudonym_once("nhs", &f.nhs_number),
                device_id: f.device_id.as_deref().map(|d| p.pseudonym_once("dev", d)),
                explanation: replace_devices(&f.explanation, &f.devices, |d| {
                    p.pseudonym_once("dev", d)
                }),
                devices: Vec::new(),
                ..f.clone()
            })
            .collect();
        Exports {
            patients: Cow::Owned(patients),
            findings: Cow::Owned(findings),
        }
    }
}

/// Replaces each device's short id in `text` with the short form of `to(device)`, where it stands as a whole word.
fn replace_devices(text: &str, devices: &[String], to: impl Fn(&str) -> String) -> String {
    let mut shorts: Vec<(String, String)> = devices
        .iter()
        .map(|d| (short_device(d), short_device(&to(d))))
        .collect();
    // Longest first, so a device whose short id is a prefix of another's cannot split it.
    shorts.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    let mut out = text.to_string();
    for (from, to) in shorts {
        if from.is_empty() {
            continue;
        }
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(i) = rest.find(&from) {
            let before = rest[..i].chars().next_back();
            let after = rest[i + from.len()..].chars().next();
            let word =
                |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_');
            result.push_str(&rest[..i]);
            if word(before) || word(after) {
                result.push_str(&from);
            } else {
                result.push_str(&to);
            }
            rest = &rest[i + from.len()..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// Writes the run folder atomically; returns its path.
pub fn write_run(
    reports: &Path,
    as_of: NaiveDate,
    d: &Detection,
    exports: &Exports<'_>,
    summary: &RunSummary,
    tz: chrono_tz::Tz,
) -> anyhow::Result<PathBuf> {
    create_private_dir(reports)?;
    let name = as_of.format("%Y-%m-%d").to_string();
    let final_dir = reports.join(&name);
    clear_debris(reports, &name)?;
    let tmp = reports.join(format!(".{name}.tmp-{}", std::process::id()));
    create_private_dir(&tmp)?;
    let fill = || -> anyhow::Result<()> {
        // Every file names its path when it cannot be written (a full disk says only "File too large" otherwise).
        let named = |path: PathBuf, write: &dyn Fn(&Path) -> anyhow::Result<()>| {
            write(&path).with_context(|| format!("cannot write {}", path.display()))
        };
        named(tmp.join(PATIENTS_CSV), &|p| {
            write_patients(p, &exports.patients)
        })?;
        fault_point();
        named(tmp.join(FINDINGS_CSV), &|p| {
            write_findings_csv(p, &exports.findings)
        })?;
        fault_point();
        named(tmp.join(FINDINGS_PARQUET), &|p| {
            write_findings_parquet(p, &exports.findings)
        })?;
        fault_point();
        write_html_and_charts(&tmp, as_of, d, summary, tz)?;
        fault_point();
        let mut text = serde_json::to_string_pretty(summary)?;
        text.push('\n');
        write_text(&tmp.join(SUMMARY_JSON), &text)?;
        sync_tree(&tmp).with_context(|| format!("cannot sync {}", tmp.display()))?;
        Ok(())
    };
    // A folder that could not be filled (a full disk) is removed, not left for the next run to clear.
    if let Err(e) = fill() {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // Swap the new folder in: the old one (a previous run of the same day) moves aside first.
    let old = reports.join(format!(".{name}.old-{}", std::process::id()));
    if final_dir.exists() {
        fs::rename(&final_dir, &old)
            .with_context(|| format!("cannot replace {}", final_dir.display()))?;
    }
    fs::rename(&tmp, &final_dir)
        .with_context(|| format!("cannot create {}", final_dir.display()))?;
    // The folder's contents were made durable before the swap; this makes the swap itself durable, so that a power cut
    // just after a run that reported success cannot bring back the day's previous folder (or none).
    crate::store::sync_dir(reports);
    if old.exists() {
        fs::remove_dir_all(&old)?;
    }
    Ok(final_dir)
}

pub const CHARTS_DIR: &str = "charts";

fn write_text(path: &Path, text: &str) -> anyhow::Result<()> {
    write_file(path, |f| Ok(f.write_all(text.as_bytes())?))
}

/// Writes an owner-only file through a buffer; any failure names the path. It is made durable with the rest of the
/// run folder, by [`sync_tree`] before the folder is swapped in.
fn write_file(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<fs::File>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let write = || -> anyhow::Result<()> {
        let mut f = std::io::BufWriter::new(private_file(path, true)?);
        fill(&mut f)?;
        f.into_inner().map_err(|e| e.into_error())?;
        Ok(())
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

/// Makes everything written under a run folder durable before it is swapped in, so that a power cut after the swap
/// cannot leave the day's folder with a short file. On Linux that is one `syncfs` of the folder's filesystem: a run
/// with many patients listed writes tens of thousands of charts, and a sync per file cost one device flush each
/// (8 of a 200,000-patient practice's 39 seconds of detection, against about 4 to write the same bytes and flush
/// once). It also flushes whatever else is waiting on that filesystem. Elsewhere, each file and folder is synced.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        rustix::fs::syncfs(fs::File::open(dir)?)?;
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                sync_tree(&path)?;
            } else {
                fs::File::open(&path)?.sync_all()?;
            }
        }
        crate::store::sync_dir(dir);
        Ok(())
    }
}

/// Listed patients whose charts are drawn together, in parallel, when the page reaches the first of them.
const CHARTS_AHEAD: usize = 64;

/// Draws every chart, writes them to `charts/` and inlines them in `report.html`.
fn write_html_and_charts(
    dir: &Path,
    as_of: NaiveDate,
    d: &Detection,
    s: &RunSummary,
    tz: chrono_tz::Tz,
) -> anyhow::Result<()> {
    let charts_dir = dir.join(CHARTS_DIR);
    create_private_dir(&charts_dir)?;
    let draw = |r: Result<charts::Chart, Box<dyn std::error::Error>>| {
        r.map_err(|e| anyhow::anyhow!("cannot draw a chart: {e}"))
    };
    // One set of charts per patient listed on the page (flagged, and not a case reviewed as benign), in page order,
    // drawn and filed when the page reaches the patient and dropped once it is written.
    // Chart files are named by rank, never by NHS number.
    let mut chart_data: HashMap<&str, &chart_data::PatientChart> = HashMap::new();
    for c in &d.charts.patients {
        chart_data.entry(c.nhs_number.as_str()).or_insert(c);
    }
    let draw_patient = |i: usize, p: &PatientRisk| -> anyhow::Result<html::PatientCharts> {
        let mut drawn = Vec::new();
        if let Some(c) = chart_data.get(p.nhs_number.as_str()) {
            drawn.push((
                draw(charts::patient_timeline(c, &d.charts, tz))?,
                "timeline",
            ));
            drawn.push((draw(charts::patient_hours(c, tz))?, "hours"));
        }
        if let Some(case) = &p.case {
            drawn.push((
                draw(charts::patient_nights(case, s.thresholds.0, s.thresholds.1))?,
                "nights",
            ));
        }
        let mut named = Vec::new();
        for (chart, what) in drawn {
            let file = format!("patient-{:02}-{what}.svg", i + 1);
            write_text(&charts_dir.join(&file), &chart.svg)?;
            named.push((chart, file));
        }
        Ok(named)
    };
    // Drawing is most of the page's time with many patients listed: the next few patients' charts are drawn on every
    // core when the page reaches the first of them, and handed over one patient at a time (a few dozen patients'
    // charts held at once, not every patient's).
    let listed = html::listed(d);
    let mut ready: HashMap<usize, html::PatientCharts> = HashMap::new();
    let mut patient_charts = |i: usize, p: &PatientRisk| -> anyhow::Result<html::PatientCharts> {
        if let Some(c) = ready.remove(&i) {
            return Ok(c);
        }
        if listed.get(i).is_none_or(|l| l.nhs_number != p.nhs_number) {
            return draw_patient(i, p);
        }
        let ahead = i..(i + CHARTS_AHEAD).min(listed.len());
        let drawn: Vec<anyhow::Result<html::PatientCharts>> = ahead
            .clone()
            .into_par_iter()
            .map(|j| draw_patient(j, listed[j]))
            .collect();
        for (j, c) in ahead.zip(drawn) {
            ready.insert(j, c?);
        }
        ready.remove(&i).map_or_else(|| draw_patient(i, p), Ok)
    };
    let per_rule: Vec<(&str, u64)> = s.findings_per_rule.iter().map(|(k, v)| (*k, *v)).collect();
    let findings_chart = draw(charts::findings_per_rule(&per_rule))?;
    let events_chart = draw(charts::events_per_day(&d.charts))?;
    write_text(
        &charts_dir.join("run-findings-per-rule.svg"),
        &findings_chart.svg,
    )?;
    write_text(
        &charts_dir.join("run-events-per-day.svg"),
        &events_chart.svg,
    )?;
    let mut page = html::PageCharts {
        patient: &mut patient_charts,
        findings_per_rule: &findings_chart,
        events_per_day: &events_chart,
    };
    write_file(&dir.join(REPORT_HTML), |f| {
        html::render(f, d, s, &mut page, tz, as_of)
    })
}

/// Removes what a killed run left beside a day's folder (a half-built `.D.tmp-*`, or a `.D.old-*` it had moved
/// aside). An `.old` folder is put back if the day's folder itself is missing (killed between the two renames).
fn clear_debris(reports: &Path, name: &str) -> anyhow::Result<()> {
    let final_dir = reports.join(name);
    for entry in fs::read_dir(reports)? {
        let path = entry?.path();
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        if file.starts_with(&format!(".{name}.old-")) && !final_dir.exists() {
            fs::rename(&path, &final_dir)?;
        } else if file.starts_with(&format!(".{name}.tmp-"))
            || file.starts_with(&format!(".{name}.old-"))
        {
            fs::remove_dir_all(&path)?;
        }
    }
    Ok(())
}

fn csv_file(path: &Path) -> anyhow::Result<csv::Writer<fs::File>> {
    let f = private_file(path, true)?;
    Ok(csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(f))
}

fn write_patients(path: &Path, patients: &[PatientRisk]) -> anyhow::Result<()> {
    let mut w = csv_file(path)?;
    w.write_record([
        "nhs_number",
        "risk_score",
        "risk_level",
        "rules",
        "summary",
        "case_id",
        "case_status",
        "first_flagged",
    ])?;
    // The contract's order: risk score descending (the page, not this file, follows the case order). The sort is
    // stable, so equal scores keep the case order.
    let mut order: Vec<&PatientRisk> = patients.iter().collect();
    order.sort_by_key(|p| std::cmp::Reverse(p.risk_score));
    for p in order {
        let case = p.case.as_ref();
        w.write_record([
            csv_safe(&p.nhs_number),
            p.risk_score.to_string(),
            p.risk_level.to_string(),
            p.rules.join(";"),
            csv_safe(&p.summary),
            case.map(|c| c.case_id.clone()).unwrap_or_default(),
            case.map(|c| c.status.name().to_string())
                .unwrap_or_default(),
            case.map(|c| c.first_flagged.to_string())
                .unwrap_or_default(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

fn write_findings_csv(path: &Path, findings: &[Finding]) -> anyhow::Result<()> {
    let mut w = csv_file(path)?;
    w.write_record([
        "finding_id",
        "nhs_number",
        "rule_id",
        "severity",
        "score",
        "first_at",
        "last_at",
        "device_id",
        "event_count",
        "explanation",
    ])?;
    for f in findings {
        w.write_record([
            f.finding_id.clone(),
            csv_safe(&f.nhs_number),
            f.rule_id.to_string(),
            f.severity.name().to_string(),
            format!("{}", f.score),
            rfc3339(f.first_at),
            rfc3339(f.last_at),
            f.device_id.as_deref().map(csv_safe).unwrap_or_default(),
            f.event_count.to_string(),
            csv_safe(&f.explanation),
        ])?;
    }
    w.flush()?;
    Ok(())
}

pub fn findings_frame(findings: &[Finding]) -> PolarsResult<DataFrame> {
    DataFrame::new(
        findings.len(),
        vec![
            text(
                "finding_id",
                findings.iter().map(|f| Some(f.finding_id.as_str())),
            ),
            text(
                "nhs_number",
                findings.iter().map(|f| Some(f.nhs_number.as_str())),
            ),
            text("rule_id", findings.iter().map(|f| Some(f.rule_id))),
            text("severity", findings.iter().map(|f| Some(f.severity.name()))),
            Float64Chunked::from_iter_values("score".into(), findings.iter().map(|f| f.score))
                .into_column(),
            instants("first_at", findings.iter().map(|f| Some(f.first_at))),
            instants("last_at", findings.iter().map(|f| Some(f.last_at))),
            text("device_id", findings.iter().map(|f| f.device_id.as_deref())),
            Int64Chunked::from_iter_values(
                "event_count".into(),
                findings.iter().map(|f| f.event_count as i64),
            )
            .into_column(),
            text(
                "explanation",
                findings.iter().map(|f| Some(f.explanation.as_str())),
            ),
        ],
    )
}

fn write_findings_parquet(path: &Path, findings: &[Finding]) -> anyhow::Result<()> {
    let df = findings_frame(findings)?;
    let mut f = private_file(path, true)?;
    write_parquet(&mut f, &df, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_in_explanations_are_replaced_as_whole_words_only() {
        let devices = vec!["phone".to_string(), "a1b2c3d4e5f6a7b8c9".to_string()];
        let text = "From a device (a1b2c3d4e5f6…) and phone, not the smartphone or phone-2.";
        let out = replace_devices(text, &devices, |d| format!("dev-{}", d.len()));
        assert_eq!(
            out,
            "From a device (dev-18) and dev-5, not the smartphone or phone-2."
        );
    }
}
