//! The nightly run: inbox -> store -> detection -> run folder, under one lock, with a record of every run.
//!
//! Safe to repeat: files already ingested (by content hash) are skipped, detection is deterministic, and the run
//! folder is replaced atomically, so running a night twice, or re-running after a crash at any point, gives the
//! same store and the same findings.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Utc};
use polars::prelude::*;
use serde::Serialize;

use crate::cases;
use crate::config::Config;
use crate::context::catalogue::SensitiveCatalogue;
use crate::detect;
use crate::ingest::{self, IngestOptions, IngestReport};
use crate::pseudonym::Pseudonymiser;
use crate::report::{self, InputFigures, RunSummary};
use crate::schema::{Kind, OCCURRED_AT};
use crate::store::manifest::Manifest;
use crate::store::scan::scan_kind;
use crate::store::{create_private_dir, private_file};

pub const RUN_LOCK: &str = ".run.lock";
pub const RUNS_LOG: &str = "runs.jsonl";

/// What a nightly run did.
#[derive(Debug)]
pub struct RunOutcome {
    pub as_of: NaiveDate,
    pub ingest: IngestReport,
    pub run_dir: PathBuf,
    pub summary: RunSummary,
    pub pruned: Vec<String>,
}

/// One line of `runs.jsonl`: every run, failed ones included. No identifiers.
#[derive(Debug, Serialize)]
struct RunRecord<'a> {
    started_at: String,
    finished_at: String,
    status: &'a str,
    as_of: Option<NaiveDate>,
    files_read: u64,
    rows_read: u64,
    stored: u64,
    duplicates: u64,
    quarantined: u64,
    patients_flagged: Option<BTreeMap<&'static str, u64>>,
    error: Option<String>,
}

/// Holds the run lock for the duration of a run. The OS releases it if the process dies, so a killed run never
/// leaves a lock that blocks the next night; the file keeps the last holder's pid and start for diagnosis.
pub struct RunLock {
    _file: fs::File,
}

impl RunLock {
    pub fn acquire(store: &Path) -> anyhow::Result<RunLock> {
        create_private_dir(store)?;
        let path = store.join(RUN_LOCK);
        let mut file = private_file(&path, false)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                anyhow::bail!(
                    "another accesswatch run is in progress ({}); try again when it finishes",
                    holder.trim()
                );
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        file.set_len(0)?;
        writeln!(
            file,
            "pid {} since {}",
            std::process::id(),
            Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
        )?;
        Ok(RunLock { _file: file })
    }
}

/// The day of the newest audit event in the store (practice time), if any.
pub fn latest_data_day(config: &Config) -> anyhow::Result<Option<NaiveDate>> {
    let df = scan_kind(&config.store, Kind::Audit)?
        .select([col(OCCURRED_AT).cast(DataType::Int64).max().alias("t")])
        .collect()?;
    let t = df.column("t")?.i64()?.get(0);
    Ok(t.and_then(DateTime::from_timestamp_micros)
        .map(|t| t.with_timezone(&config.timezone).date_naive()))
}

/// Resolves the as-of date: the command line's, else the config's rule.
pub fn resolve_as_of(config: &Config, given: Option<NaiveDate>) -> anyhow::Result<NaiveDate> {
    if let Some(d) = given {
        return Ok(d);
    }
    let yesterday = config.yesterday();
    if config.run.as_of == "latest-data" {
        return Ok(latest_data_day(config)?.unwrap_or(yesterday));
    }
    Ok(yesterday)
}

/// Detection for a day and its run folder (shared by `detect` and `run`).
/// `pseudonymiser` is the config's (`Config::pseudonymiser`), resolved by the caller before any work.
pub fn detect_and_report(
    config: &Config,
    as_of: NaiveDate,
    pseudonymiser: Option<&Pseudonymiser>,
) -> anyhow::Result<(PathBuf, RunSummary)> {
    let started = Instant::now();
    let catalogue = SensitiveCatalogue::for_config(config)?;
    let mut d = detect::detect(
        &config.store,
        &config.detect,
        &config.allowlist,
        &catalogue,
        config.timezone,
        as_of,
    )?;
    let mut seconds = BTreeMap::new();
    seconds.insert("detect", round3(started.elapsed().as_secs_f64()));
    let manifest = Manifest::load(&config.store)?;
    let input = InputFigures {
        files: manifest.files.len() as u64,
        rows_read: manifest.files.iter().map(|f| f.read).sum(),
        stored: manifest.files.iter().map(|f| f.stored).sum(),
        duplicates: manifest.files.iter().map(|f| f.duplicates).sum(),
        quarantined: manifest.files.iter().map(|f| f.quarantined).sum(),
    };
    let case_counts = follow_cases(config, as_of, &mut d)?;
    let mut summary = report::summarise(&d, as_of, &config.hash, input, seconds);
    summary.cases = case_counts;
    summary.thresholds = (config.detect.medium, config.detect.high);
    summary.pseudonymised = pseudonymiser.is_some();
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "detection's cases followed"
    );
    let exports = report::Exports::new(&d, pseudonymiser);
    let dir = report::write_run(
        &config.reports,
        as_of,
        &d,
        &exports,
        &summary,
        config.timezone,
    )?;
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "run folder written"
    );
    tracing::info!(as_of = %as_of, patients = d.stats.patients_analysed, findings = d.findings.len(), "detection done");
    Ok((dir, summary))
}

/// Tonight's cases: appends the night to the store's case table, gives each flagged patient their case, and puts the
/// patients (and their charts) in the report's order; gives the count of cases by status.
fn follow_cases(
    config: &Config,
    as_of: NaiveDate,
    d: &mut detect::Detection,
) -> anyhow::Result<BTreeMap<&'static str, u64>> {
    let cfg = &config.detect.case;
    let reviews = cases::store::read_reviews(&config.store)?;
    // Enough nights for the gap that continues a case and for the 30-night chart.
    let back = Duration::days(i64::from(cfg.gap_days.max(29)) + 1);
    let earlier = cases::store::read_nights(&config.store, as_of - back, as_of)?;
    let tonight = cases::assign(as_of, &d.patients, &d.findings, &earlier, &reviews, cfg);
    cases::store::write_night(&config.store, as_of, &tonight)?;
    crate::store::fault_point();
    let views = cases::views(&tonight, &earlier, &reviews);
    for p in &mut d.patients {
        p.case = views.get(&p.nhs_number).cloned();
    }
    // A stable sort: most urgent first within each status.
    d.patients
        .sort_by_key(|p| cases::report_rank(p.case.as_ref()));
    let rank: std::collections::HashMap<&str, usize> = d
        .patients
        .iter()
        .enumerate()
        .map(|(i, p)| (p.nhs_number.as_str(), i))
        .collect();
    d.charts
        .patients
        .sort_by_key(|c| rank.get(c.nhs_number.as_str()).copied());
    Ok(cases::count_by_status(&views))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The whole nightly job.
pub fn nightly(config: &Config, as_of: Option<NaiveDate>) -> anyhow::Result<RunOutcome> {
    let started = Utc::now();
    // A run refused because another holds the lock is recorded too ("refused"), so the log shows every night.
    // What ingest did, kept for the runs log even when a later step fails.
    let mut ingested = None;
    let (result, locked) = match RunLock::acquire(&config.store) {
        Ok(lock) => {
            let result = nightly_locked(config, as_of, &mut ingested);
            drop(lock);
            (result, true)
        }
        Err(e) => (Err(e), false),
    };
    let (status, record) = match &result {
        Ok(o) => ("succeeded", Some(o)),
        Err(_) if !locked => ("refused", None),
        Err(_) => ("failed", None),
    };
    let ingest_report = record.map(|o| &o.ingest).or(ingested.as_ref());
    let ingest_totals = ingest_report.map(|i| i.totals).unwrap_or_default();
    let rec = RunRecord {
        started_at: started.to_rfc3339_opts(SecondsFormat::Secs, true),
        finished_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        status,
        as_of: record.map(|o| o.as_of).or(as_of),
        files_read: ingest_report
            .map(|i| {
                i.files
                    .iter()
                    .filter(|f| f.status == ingest::FileStatus::Ingested)
                    .count() as u64
            })
            .unwrap_or(0),
        rows_read: ingest_totals.read,
        stored: ingest_totals.stored,
        duplicates: ingest_totals.duplicates,
        quarantined: ingest_totals.quarantined,
        patients_flagged: record.map(|o| o.summary.patients_flagged.clone()),
        error: result.as_ref().err().map(|e| format!("{e:#}")),
    };
    if let Err(e) = append_record(&config.reports, &rec) {
        tracing::warn!(error = %e, "could not append to the runs log");
    }
    result
}

fn nightly_locked(
    config: &Config,
    as_of: Option<NaiveDate>,
    ingested: &mut Option<IngestReport>,
) -> anyhow::Result<RunOutcome> {
    if !config.inbox.is_dir() {
        anyhow::bail!("the inbox {} is not a folder", config.inbox.display());
    }
    // A missing pseudonymisation key stops the run before it ingests anything.
    let pseudonymiser = config.pseudonymiser()?;
    let ingest = ingest::ingest(
        config,
        std::slice::from_ref(&config.inbox),
        &IngestOptions::default(),
    )?;
    *ingested = Some(ingest.clone());
    // A store that could not be written stops the night here: a report on a half-written store would look whole.
    if let Some(e) = &ingest.store_error {
        anyhow::bail!("the store could not be written, so the run stopped before detection: {e}");
    }
    let as_of = resolve_as_of(config, as_of)?;
    let (run_dir, summary) = detect_and_report(config, as_of, pseudonymiser.as_ref())?;
    let pruned = prune(&config.reports, as_of, config.run.keep_days)?;
    Ok(RunOutcome {
        as_of,
        ingest,
        run_dir,
        summary,
        pruned,
    })
}

fn append_record(reports: &Path, rec: &RunRecord) -> anyhow::Result<()> {
    create_private_dir(reports)?;
    let path = reports.join(RUNS_LOG);
    let mut o = OpenOptions::new();
    o.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{}", serde_json::to_string(rec)?)?;
    Ok(())
}

/// Deletes run folders (named by their date) more than `keep_days` before `as_of`.
pub fn prune(reports: &Path, as_of: NaiveDate, keep_days: u32) -> anyhow::Result<Vec<String>> {
    let cutoff = as_of - Duration::days(i64::from(keep_days));
    let mut pruned = Vec::new();
    for entry in fs::read_dir(reports)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if let Ok(day) = NaiveDate::parse_from_str(&name, "%Y-%m-%d") {
            if path.is_dir() && day < cutoff {
                fs::remove_dir_all(&path)?;
                pruned.push(name);
            }
        }
    }
    pruned.sort();
    Ok(pruned)
}
