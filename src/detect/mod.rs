//! Detection: the rule catalogue over the store and the clinical-context views, per-patient baselines, findings
//! and risk scores.
//!
//! The heavy lifting (reading the look-back window of audit events, collapsing them into sessions) is one lazy
//! polars plan with partition pruning; the rules then work per patient on sessions, which are a fraction of the
//! events. Every rule compares recent behaviour (the last `recent_days`) with the patient's own baseline (the
//! look-back before it) and with the history of the device involved.

pub mod baseline;
pub mod config;
pub mod rules;
pub mod scoring;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use polars::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use self::baseline::{DeviceHistory, PatientBaseline};
use self::config::{Allowlist, DetectConfig};
use crate::context::catalogue::{Category, SensitiveCatalogue};
use crate::context::views::{self, RestrictionPeriod};
use crate::schema::*;
use crate::store::scan::scan_kind;

/// Actions that read the record.
pub const READ_ACTIONS: [&str; 2] = ["view", "download"];
/// Actions that change how the account is reached.
pub const ACCOUNT_CHANGES: [&str; 2] = ["change_password", "change_contact_details"];
/// Sections where disclosures, injuries and other agencies' letters are found.
pub const PRYING_SECTIONS: [&str; 6] = [
    "consultations",
    "problems",
    "documents",
    "letters",
    "test_results",
    "medications",
];

/// Device keys for events with no `device_id`: the user agent, else the address, else nothing. They tell one
/// patient's devices apart well enough, but thousands of people share a user agent or sit behind one address, so
/// the rules that follow a device across patients' records use real device ids only.
pub const UA_KEY: &str = "ua:";
pub const IP_KEY: &str = "ip:";
pub const UNKNOWN_DEVICE: &str = "unknown device";

/// A device key that came from a real `device_id`.
pub fn is_identified_device(key: &str) -> bool {
    !(key.starts_with(UA_KEY) || key.starts_with(IP_KEY) || key == UNKNOWN_DEVICE)
}

/// One login session on one record: the unit the rules reason about.
#[derive(Debug, Clone)]
pub struct Session {
    pub nhs_number: String,
    pub start: i64,
    pub end: i64,
    pub device: String,
    pub account: String,
    pub role: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub events: u32,
    /// Views and downloads.
    pub reads: u32,
    /// Reads of the sections where disclosures are found.
    pub prying_reads: u32,
    /// When the account's password or contact details were changed in this session.
    pub account_change_at: Option<i64>,
    pub account_change: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }

    pub fn of_score(score: f64) -> Severity {
        if score >= 60.0 {
            Severity::High
        } else if score >= 40.0 {
            Severity::Medium
        } else {
            Severity::Low
        }
    }
}

/// One reason to look at a patient's record access.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub finding_id: String,
    pub nhs_number: String,
    pub rule_id: &'static str,
    pub severity: Severity,
    pub score: f64,
    pub first_at: i64,
    pub last_at: i64,
    pub device_id: Option<String>,
    pub event_count: u64,
    pub explanation: String,
    /// Starts of the sessions behind the finding (for the report's charts; not an output column).
    #[serde(skip)]
    pub evidence: Vec<i64>,
    /// Every device the explanation can name (the finding's device and its sessions' devices), so a pseudonymised
    /// export can replace each short device id in the text.
    #[serde(skip)]
    pub devices: Vec<String>,
}

impl Finding {
    /// Builds a finding with a deterministic id (the same evidence gives the same id on every run).
    pub fn new(
        nhs: &str,
        rule_id: &'static str,
        score: f64,
        sessions: &[&Session],
        device: Option<&str>,
        explanation: String,
    ) -> Finding {
        let score = score.clamp(0.0, 100.0).round();
        let first_at = sessions.iter().map(|s| s.start).min().unwrap_or(0);
        let last_at = sessions.iter().map(|s| s.end).max().unwrap_or(0);
        let mut h = Sha256::new();
        h.update(rule_id);
        h.update(nhs);
        h.update(first_at.to_le_bytes());
        h.update(device.unwrap_or(""));
        Finding {
            finding_id: format!("f-{}", &hex::encode(h.finalize())[..16]),
            nhs_number: nhs.to_string(),
            rule_id,
            severity: Severity::of_score(score),
            score,
            first_at,
            last_at,
            device_id: device.map(str::to_string),
            event_count: sessions.iter().map(|s| u64::from(s.events)).sum(),
            explanation,
            evidence: sessions.iter().map(|s| s.start).collect(),
            devices: device
                .into_iter()
                .chain(sessions.iter().map(|s| s.device.as_str()))
                .collect::<std::collections::BTreeSet<&str>>()
                .into_iter()
                .map(str::to_string)
                .collect(),
        }
    }
}

/// A sensitive entry as the rules see it.
#[derive(Debug, Clone)]
pub struct SensitiveEntry {
    pub entry_id: String,
    pub visible_from: i64,
    pub category: Category,
    pub section: Option<String>,
}

/// An attended face-to-face visit.
#[derive(Debug, Clone)]
pub struct Visit {
    pub appointment_id: String,
    pub starts_at: i64,
    pub ends_at: i64,
}

/// Everything the rules read, built once per run.
pub struct Context<'a> {
    pub cfg: &'a DetectConfig,
    pub allowlist: &'a Allowlist,
    pub tz: Tz,
    pub as_of: NaiveDate,
    /// Start of the look-back (UTC micros).
    pub lookback_start: i64,
    /// Start of the recent window.
    pub recent_start: i64,
    /// End of the as-of day, local time (exclusive).
    pub end: i64,
    pub sessions: BTreeMap<String, Vec<Session>>,
    pub devices: HashMap<String, DeviceHistory>,
    pub sensitive: HashMap<String, Vec<SensitiveEntry>>,
    /// When any entry the patient can see appeared (for explaining a session as the patient reading it).
    pub entry_times: HashMap<String, Vec<i64>>,
    pub visits: HashMap<String, Vec<Visit>>,
    /// Ends of attended appointments of every mode.
    pub appointment_ends: HashMap<String, Vec<i64>>,
    pub restrictions: HashMap<String, Vec<RestrictionPeriod>>,
    /// The practice's share of sessions per local hour, the prior for patients with little history.
    pub practice_hours: [f64; 24],
    /// (patient, proxy account) -> periods of formal proxy access.
    pub proxy_links: HashMap<(String, String), Vec<ProxyPeriod>>,
}

/// A formal proxy's access: from, and until (`None` while in force).
pub type ProxyPeriod = (i64, Option<i64>);

/// One patient's sessions and baseline, as each rule receives them.
pub struct PatientView<'a> {
    pub nhs: &'a str,
    pub sessions: &'a [Session],
    pub baseline: PatientBaseline,
}

impl PatientView<'_> {
    pub fn recent<'s>(&'s self, ctx: &'s Context) -> impl Iterator<Item = &'s Session> + 's {
        self.sessions
            .iter()
            .filter(move |s| s.start >= ctx.recent_start)
    }
}

impl Context<'_> {
    /// Whether a session is a formal proxy acting within a recorded proxy link.
    pub fn is_formal_proxy(&self, s: &Session) -> bool {
        self.proxy_links
            .get(&(s.nhs_number.clone(), s.account.clone()))
            .is_some_and(|periods| {
                periods
                    .iter()
                    .any(|(f, u)| s.start >= *f && u.is_none_or(|u| s.start < u))
            })
    }

    /// A tablet or computer established on another patient's record and used from the same address for both
    /// records (the same household): a shared family device rather than an outsider's phone.
    pub fn household_device(&self, p: &PatientView, s: &Session) -> bool {
        if !is_household_class(s.user_agent.as_deref()) || !is_identified_device(&s.device) {
            return false;
        }
        let Some(here) = s.ip.as_deref().or(p.baseline.home_ip.as_deref()) else {
            return false;
        };
        self.devices.get(&s.device).is_some_and(|h| {
            h.on.iter().any(|(other, u)| {
                other.as_str() != p.nhs
                    && u.baseline_sessions >= self.cfg.established_device_sessions
                    && u.ips.contains(here)
            })
        })
    }

    /// A device new to the patient that has taken over from their usual ones and is used the way they used them
    /// (a replacement phone): on at least three days, mostly at the patient's usual hours, mostly not in the hours
    /// after a sensitive entry, while the usual devices stopped within the grace period after it appeared.
    pub fn is_replacement(&self, p: &PatientView, device: &str) -> bool {
        let mine: Vec<&Session> = p.sessions.iter().filter(|s| s.device == device).collect();
        let Some(first) = mine.first().map(|s| s.start) else {
            return false;
        };
        let days: std::collections::BTreeSet<_> = mine
            .iter()
            .map(|s| self.local(s.start).date_naive())
            .collect();
        let grace = self.cfg.unfamiliar_device.replacement_grace_days * 86_400_000_000;
        let window = self.cfg.access_after_sensitive_entry.within_hours * 3_600_000_000;
        let after_entry = |s: &Session| {
            self.sensitive.get(p.nhs).is_some_and(|es| {
                es.iter()
                    .any(|e| s.start >= e.visible_from && s.start <= e.visible_from + window)
            })
        };
        let usual_hours = mine.iter().filter(|s| {
            p.baseline.hour_share[self.hour(s.start) as usize] >= self.cfg.unusual_hour.rare_share
        });
        days.len() >= 3
            && 2 * usual_hours.count() >= mine.len()
            && 2 * mine.iter().filter(|s| after_entry(s)).count() < mine.len()
            && !p.baseline.established.is_empty()
            && p.sessions
                .iter()
                .filter(|s| p.baseline.is_established(&s.device))
                .all(|s| s.start <= first + grace)
    }

    /// A real device that is established on another patient's record (their own device, used there before the
    /// recent window).
    pub fn established_on_another_record(&self, nhs: &str, device: &str) -> bool {
        is_identified_device(device)
            && self.devices.get(device).is_some_and(|h| {
                h.on.iter().any(|(o, u)| {
                    o.as_str() != nhs && u.baseline_sessions >= self.cfg.established_device_sessions
                })
            })
    }

    pub fn allowed(&self, nhs: &str, device: &str) -> bool {
        self.allowlist.allows(nhs, device, self.as_of)
    }

    pub fn local(&self, micros: i64) -> DateTime<Tz> {
        DateTime::from_timestamp_micros(micros)
            .unwrap_or_default()
            .with_timezone(&self.tz)
    }

    /// "Sat 21 Nov 02:14" in the practice's time zone.
    pub fn when(&self, micros: i64) -> String {
        self.local(micros).format("%a %-d %b %H:%M").to_string()
    }

    pub fn hour(&self, micros: i64) -> u32 {
        use chrono::Timelike;
        self.local(micros).hour()
    }
}

/// Tablets and computers are often shared in a household; phones are personal. Judged from the user agent.
pub fn is_household_class(user_agent: Option<&str>) -> bool {
    let Some(ua) = user_agent else { return false };
    [
        "iPad",
        "Tablet",
        "SM-T",
        "SM-X",
        "Kindle",
        "Silk",
        "Windows NT",
        "Macintosh",
        "X11",
        "CrOS",
    ]
    .iter()
    .any(|k| ua.contains(k))
}

/// A device id short enough to read aloud, long enough to find in the findings file.
pub fn short_device(id: &str) -> String {
    if id.chars().count() > 12 {
        format!("{}…", id.chars().take(12).collect::<String>())
    } else {
        id.to_string()
    }
}

/// The figures of a detection run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DetectionStats {
    pub audit_events: u64,
    pub sessions: u64,
    pub patients_analysed: u64,
    pub patients_with_baseline: u64,
    /// Batches of patients the look-back was read in (`detect.batch_events`).
    pub batches: u32,
}

pub struct Detection {
    pub findings: Vec<Finding>,
    pub patients: Vec<scoring::PatientRisk>,
    pub stats: DetectionStats,
    pub charts: RunCharts,
}

/// What the report draws for one flagged patient.
#[derive(Debug, Clone, Default)]
pub struct PatientChart {
    pub nhs_number: String,
    /// (start, device) of every session on the record in the look-back.
    pub sessions: Vec<(i64, String)>,
    /// Starts of the sessions behind the findings.
    pub evidence: std::collections::BTreeSet<i64>,
    pub sensitive: Vec<(i64, Category)>,
    pub visits: Vec<(i64, i64)>,
    pub restrictions: Vec<(i64, Option<i64>)>,
    /// The patient's usual share of sessions per local hour (baseline).
    pub hour_share: [f64; 24],
    pub usual_hours: String,
}

/// What the report draws for the run, and the windows it covers.
#[derive(Debug, Clone, Default)]
pub struct RunCharts {
    pub patients: Vec<PatientChart>,
    /// Audit events per local day over the look-back.
    pub events_per_day: Vec<(NaiveDate, u64)>,
    pub lookback_start: i64,
    pub recent_start: i64,
    pub end: i64,
}

/// The instant a local day starts.
pub fn local_midnight(tz: Tz, day: NaiveDate) -> i64 {
    let naive = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp_micros())
        .unwrap_or_else(|| Utc.from_utc_datetime(&naive).timestamp_micros())
}

/// Runs every rule for the as-of day.
pub fn detect(
    store: &Path,
    cfg: &DetectConfig,
    allowlist: &Allowlist,
    catalogue: &SensitiveCatalogue,
    tz: Tz,
    as_of: NaiveDate,
) -> PolarsResult<Detection> {
    let end = local_midnight(tz, as_of + Duration::days(1));
    let recent_start = local_midnight(
        tz,
        as_of + Duration::days(1) - Duration::days(i64::from(cfg.recent_days)),
    );
    let lookback_start = local_midnight(
        tz,
        as_of + Duration::days(1) - Duration::days(i64::from(cfg.lookback_days)),
    );
    let mut ctx = Context {
        cfg,
        allowlist,
        tz,
        as_of,
        lookback_start,
        recent_start,
        end,
        devices: HashMap::new(),
        sessions: BTreeMap::new(),
        sensitive: HashMap::new(),
        entry_times: HashMap::new(),
        visits: HashMap::new(),
        appointment_ends: HashMap::new(),
        restrictions: HashMap::new(),
        practice_hours: [0.0; 24],
        proxy_links: HashMap::new(),
    };
    load_context(store, catalogue, &mut ctx)?;

    // Pass one: what the rules need to know across patients (which records each device has been used on, the
    // practice's hours) and the run's figures, one batch of patients at a time.
    let batches = batch_count(store, lookback_start, end, cfg.batch_events)?;
    let mut stats = DetectionStats {
        batches,
        ..Default::default()
    };
    let mut hour_counts = [0.0; 24];
    let mut per_day: BTreeMap<NaiveDate, u64> = BTreeMap::new();
    let mut last_batch = None;
    let mut devices = HashMap::new();
    // With several batches, each batch's sessions (about a fifth of its events) are spilled to an owner-only
    // folder in the store, so pass two reads them back instead of reading the look-back again.
    let spill = if batches > 1 {
        Some(Spill::create(store).map_err(|e| PolarsError::IO {
            error: std::sync::Arc::new(e),
            msg: None,
        })?)
    } else {
        None
    };
    for batch in 0..batches {
        let mut frame = session_frame(store, lookback_start, end, (batch, batches))?;
        let (sessions, events) = sessions_from(&frame)?;
        if let Some(spill) = &spill {
            if batch + 1 < batches {
                spill.write(batch, &mut frame)?;
            }
        }
        drop(frame);
        stats.audit_events += events;
        baseline::add_device_histories(&mut devices, &sessions, recent_start, |s| {
            ctx.is_formal_proxy(s)
        });
        baseline::add_practice_hours(&mut hour_counts, &sessions, recent_start, |t| ctx.hour(t));
        for s in sessions.values().flatten() {
            stats.sessions += 1;
            *per_day.entry(ctx.local(s.start).date_naive()).or_default() += u64::from(s.events);
        }
        if batch + 1 == batches {
            last_batch = Some(sessions);
        }
    }
    ctx.practice_hours = baseline::practice_hours(&hour_counts);
    ctx.devices = devices;

    // Pass two: the rules, patient by patient, batch by batch. The last batch of pass one is still in memory, so
    // it goes first and is not read again (with one batch, nothing is read twice).
    let mut findings = Vec::new();
    let mut patients = Vec::new();
    let mut charts = Vec::new();
    for batch in std::iter::once(batches - 1).chain(0..batches - 1) {
        ctx.sessions = match (last_batch.take(), &spill) {
            (Some(sessions), _) => sessions,
            (None, Some(spill)) => sessions_from(&spill.read(batch)?)?.0,
            // One batch is always kept; several are always spilled.
            (None, None) => {
                polars_bail!(ComputeError: "batch {batch} of sessions was neither kept nor spilled")
            }
        };
        let mut batch_findings = Vec::new();
        for (nhs, sessions) in &ctx.sessions {
            if !sessions.iter().any(|s| s.start >= recent_start) {
                continue;
            }
            stats.patients_analysed += 1;
            let view = PatientView {
                nhs,
                sessions,
                baseline: PatientBaseline::build(&ctx, sessions),
            };
            stats.patients_with_baseline += u64::from(view.baseline.enough);
            for rule in rules::CATALOGUE {
                batch_findings.extend((rule.detect)(&ctx, &view));
            }
        }
        let batch_patients = scoring::score_patients(&batch_findings, cfg, &ctx);
        charts.extend(patient_charts(&ctx, &batch_findings, &batch_patients));
        findings.append(&mut batch_findings);
        patients.extend(batch_patients);
    }
    ctx.sessions = BTreeMap::new();
    findings.sort_by(|a, b| {
        (&a.nhs_number, a.rule_id, a.first_at, &a.finding_id).cmp(&(
            &b.nhs_number,
            b.rule_id,
            b.first_at,
            &b.finding_id,
        ))
    });
    patients.sort_by(scoring::most_urgent_first);
    let rank: HashMap<&str, usize> = patients
        .iter()
        .enumerate()
        .map(|(i, p)| (p.nhs_number.as_str(), i))
        .collect();
    charts.sort_by_key(|c| rank.get(c.nhs_number.as_str()).copied());
    Ok(Detection {
        findings,
        patients,
        stats,
        charts: RunCharts {
            patients: charts,
            events_per_day: per_day.into_iter().collect(),
            lookback_start,
            recent_start,
            end,
        },
    })
}

/// How many batches of patients the look-back is read in: its audit rows over `detect.batch_events`, at most 100
/// (the batches are the last two digits of the NHS number).
fn batch_count(store: &Path, start: i64, end: i64, batch_events: u64) -> PolarsResult<u32> {
    let rows = scan_kind(store, Kind::Audit)?
        .filter(partition_window(start, end))
        .select([len()])
        .collect()?;
    let rows = rows
        .columns()
        .first()
        .and_then(|c| c.get(0).ok())
        .and_then(|v| v.extract::<u64>())
        .unwrap_or(0);
    Ok(rows.div_ceil(batch_events.max(1)).clamp(1, 100) as u32)
}

fn utc_day(t: i64) -> NaiveDate {
    DateTime::from_timestamp_micros(t)
        .unwrap_or_default()
        .date_naive()
}

/// The store's date partitions that can hold events in [start, end).
fn partition_window(start: i64, end: i64) -> Expr {
    col(PARTITION_DATE)
        .gt_eq(lit(utc_day(start) - Duration::days(1)))
        .and(col(PARTITION_DATE).lt_eq(lit(utc_day(end))))
}

/// The charts of a batch's flagged patients.
fn patient_charts(
    ctx: &Context,
    findings: &[Finding],
    patients: &[scoring::PatientRisk],
) -> Vec<PatientChart> {
    patients
        .iter()
        .filter(|p| p.flagged())
        .map(|p| {
            let sessions = ctx
                .sessions
                .get(&p.nhs_number)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let baseline = PatientBaseline::build(ctx, sessions);
            PatientChart {
                nhs_number: p.nhs_number.clone(),
                sessions: sessions
                    .iter()
                    .map(|s| (s.start, s.device.clone()))
                    .collect(),
                evidence: findings
                    .iter()
                    .filter(|f| f.nhs_number == p.nhs_number)
                    .flat_map(|f| f.evidence.iter().copied())
                    .collect(),
                sensitive: ctx
                    .sensitive
                    .get(&p.nhs_number)
                    .map(|es| es.iter().map(|e| (e.visible_from, e.category)).collect())
                    .unwrap_or_default(),
                visits: ctx
                    .visits
                    .get(&p.nhs_number)
                    .map(|vs| vs.iter().map(|v| (v.starts_at, v.ends_at)).collect())
                    .unwrap_or_default(),
                restrictions: ctx
                    .restrictions
                    .get(&p.nhs_number)
                    .map(|rs| rs.iter().map(|r| (r.from, r.until)).collect())
                    .unwrap_or_default(),
                hour_share: baseline.hour_share,
                usual_hours: baseline.usual_hours(),
            }
        })
        .collect()
}

fn micros(c: &Column) -> PolarsResult<Vec<Option<i64>>> {
    Ok(c.cast(&DataType::Int64)?.i64()?.iter().collect())
}

fn strs(c: &Column) -> PolarsResult<Vec<Option<String>>> {
    Ok(c.str()?.iter().map(|s| s.map(str::to_string)).collect())
}

/// A batch's sessions spilled between detection's two passes: `<store>/.detect-spill-<pid>/batch-N.parquet`,
/// owner-only, removed when the run ends; a folder left by a killed run (its process gone) is removed by the next.
struct Spill {
    dir: std::path::PathBuf,
}

impl Spill {
    fn create(store: &Path) -> std::io::Result<Spill> {
        if let Ok(entries) = std::fs::read_dir(store) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if let Some(pid) = name.strip_prefix(".detect-spill-") {
                    if !Path::new("/proc").join(pid).exists() {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                }
            }
        }
        let dir = store.join(format!(".detect-spill-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        crate::store::create_private_dir(&dir).map_err(std::io::Error::other)?;
        Ok(Spill { dir })
    }

    fn path(&self, batch: u32) -> std::path::PathBuf {
        self.dir.join(format!("batch-{batch}.parquet"))
    }

    fn write(&self, batch: u32, frame: &mut DataFrame) -> PolarsResult<()> {
        let mut f = crate::store::private_file(&self.path(batch), true)?;
        crate::store::parquet_writer(&mut f).finish(frame)?;
        Ok(())
    }

    fn read(&self, batch: u32) -> PolarsResult<DataFrame> {
        ParquetReader::new(std::fs::File::open(self.path(batch))?).finish()
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The plan that collapses a batch's audit events into one row per session, collected.
fn session_frame(
    store: &Path,
    start: i64,
    end: i64,
    (batch, batches): (u32, u32),
) -> PolarsResult<DataFrame> {
    let t = || col(OCCURRED_AT).cast(DataType::Int64);
    let is_read = col(ACTION).is_in(
        lit(Series::new("r".into(), READ_ACTIONS)).implode(false),
        false,
    );
    let is_change = col(ACTION).is_in(
        lit(Series::new("c".into(), ACCOUNT_CHANGES)).implode(false),
        false,
    );
    let is_prying = is_read.clone().and(col(SECTION).is_in(
        lit(Series::new("p".into(), PRYING_SECTIONS)).implode(false),
        false,
    ));
    let mut scan = scan_kind(store, Kind::Audit)?.filter(partition_window(start, end));
    if batches > 1 {
        // NHS numbers are stored as 10 validated digits: the last two pick the batch.
        let last_two = col(NHS_NUMBER)
            .str()
            .slice(lit(8), lit(2))
            .cast(DataType::UInt32);
        scan = scan.filter((last_two % lit(batches)).eq(lit(batch)));
    }
    let df = scan
        .filter(t().gt_eq(lit(start)).and(t().lt(lit(end))))
        // A failed login is not access to the record.
        .filter(col(OUTCOME).eq(lit("success")))
        .with_columns([
            coalesce(&[
                col(DEVICE_ID),
                concat_str([lit(UA_KEY), col(USER_AGENT)], "", false),
                concat_str([lit(IP_KEY), col(IP_ADDRESS)], "", false),
                lit(UNKNOWN_DEVICE),
            ])
            .alias("device_key"),
            col(ACCOUNT_ID).fill_null(lit("-")).alias("account_key"),
        ])
        .with_column(
            coalesce(&[
                col(SESSION_ID),
                concat_str(
                    [
                        col("device_key"),
                        col("account_key"),
                        (t() / lit(1_800_000_000i64)).cast(DataType::String),
                    ],
                    "|",
                    false,
                ),
            ])
            .alias("session_key"),
        )
        .group_by([
            col(NHS_NUMBER),
            col("session_key"),
            col("device_key"),
            col("account_key"),
        ])
        .agg([
            t().min().alias("start"),
            t().max().alias("end"),
            col(ACTOR_ROLE).first().alias("role"),
            col(IP_ADDRESS).drop_nulls().first().alias("ip"),
            col(USER_AGENT).drop_nulls().first().alias("ua"),
            len().alias("events"),
            is_read.cast(DataType::UInt32).sum().alias("reads"),
            is_prying.cast(DataType::UInt32).sum().alias("prying"),
            t().filter(is_change.clone()).min().alias("change_at"),
            col(ACTION).filter(is_change).first().alias("change"),
        ])
        .sort(["nhs_number", "start", "session_key"], Default::default());
    // The streaming engine holds less of the look-back at once (about a quarter less at 1M events).
    // One plan with one sink always gives a single frame, so this cannot panic on any input.
    Ok(df.collect_with_engine(Engine::Streaming)?.unwrap_single())
}

/// Sessions per patient, in time order, from a session frame; and the audit events they hold.
fn sessions_from(df: &DataFrame) -> PolarsResult<(BTreeMap<String, Vec<Session>>, u64)> {
    let nhs = strs(df.column(NHS_NUMBER)?)?;
    let device = strs(df.column("device_key")?)?;
    let account = strs(df.column("account_key")?)?;
    let start_v = micros(df.column("start")?)?;
    let end_v = micros(df.column("end")?)?;
    let role = strs(df.column("role")?)?;
    let ip = strs(df.column("ip")?)?;
    let ua = strs(df.column("ua")?)?;
    let events: Vec<Option<u32>> = df
        .column("events")?
        .cast(&DataType::UInt32)?
        .u32()?
        .iter()
        .collect();
    let reads: Vec<Option<u32>> = df
        .column("reads")?
        .cast(&DataType::UInt32)?
        .u32()?
        .iter()
        .collect();
    let prying: Vec<Option<u32>> = df
        .column("prying")?
        .cast(&DataType::UInt32)?
        .u32()?
        .iter()
        .collect();
    let change_at = micros(df.column("change_at")?)?;
    let change = strs(df.column("change")?)?;
    let mut out: BTreeMap<String, Vec<Session>> = BTreeMap::new();
    let mut total = 0u64;
    for i in 0..df.height() {
        let (Some(n), Some(s), Some(e)) = (nhs[i].clone(), start_v[i], end_v[i]) else {
            continue;
        };
        let ev = events[i].unwrap_or(0);
        total += u64::from(ev);
        out.entry(n.clone()).or_default().push(Session {
            nhs_number: n,
            start: s,
            end: e,
            device: device[i].clone().unwrap_or_default(),
            account: account[i].clone().unwrap_or_default(),
            role: role[i].clone().unwrap_or_else(|| "patient".into()),
            ip: ip[i].clone(),
            user_agent: ua[i].clone(),
            events: ev,
            reads: reads[i].unwrap_or(0),
            prying_reads: prying[i].unwrap_or(0),
            account_change_at: change_at[i],
            account_change: change[i].clone(),
        });
    }
    Ok((out, total))
}

/// Sensitive entries, entry times, visits, restrictions and proxy links from the clinical-context views.
fn load_context(
    store: &Path,
    catalogue: &SensitiveCatalogue,
    ctx: &mut Context,
) -> PolarsResult<()> {
    let s = views::sensitive_entries(store, catalogue)?.collect()?;
    let (nhs, id, vis, cat, sec) = (
        strs(s.column(NHS_NUMBER)?)?,
        strs(s.column(ENTRY_ID)?)?,
        micros(s.column(views::VISIBLE_FROM)?)?,
        strs(s.column(views::CATEGORY)?)?,
        strs(s.column(SECTION)?)?,
    );
    for i in 0..s.height() {
        let (Some(n), Some(e), Some(v), Some(c)) = (
            nhs[i].clone(),
            id[i].clone(),
            vis[i],
            cat[i].as_deref().and_then(Category::from_name),
        ) else {
            continue;
        };
        ctx.sensitive.entry(n).or_default().push(SensitiveEntry {
            entry_id: e,
            visible_from: v,
            category: c,
            section: sec[i].clone(),
        });
    }
    let e = views::latest_entries(store)?
        .filter(col(VISIBLE_ONLINE))
        .select([col(NHS_NUMBER), col(RECORDED_AT)])
        .collect()?;
    for (n, t) in strs(e.column(NHS_NUMBER)?)?
        .into_iter()
        .zip(micros(e.column(RECORDED_AT)?)?)
    {
        if let (Some(n), Some(t)) = (n, t) {
            ctx.entry_times.entry(n).or_default().push(t);
        }
    }
    let v = views::face_to_face_visits(store)?.collect()?;
    let (nhs, id, st, en) = (
        strs(v.column(NHS_NUMBER)?)?,
        strs(v.column(APPOINTMENT_ID)?)?,
        micros(v.column(STARTS_AT)?)?,
        micros(v.column(ENDS_AT)?)?,
    );
    for i in 0..v.height() {
        if let (Some(n), Some(a), Some(s), Some(e)) = (nhs[i].clone(), id[i].clone(), st[i], en[i])
        {
            ctx.visits.entry(n).or_default().push(Visit {
                appointment_id: a,
                starts_at: s,
                ends_at: e,
            });
        }
    }
    let a = scan_kind(store, Kind::Appointments)?
        .filter(col(STATUS).eq(lit("attended")))
        .select([col(NHS_NUMBER), col(ENDS_AT)])
        .collect()?;
    for (n, t) in strs(a.column(NHS_NUMBER)?)?
        .into_iter()
        .zip(micros(a.column(ENDS_AT)?)?)
    {
        if let (Some(n), Some(t)) = (n, t) {
            ctx.appointment_ends.entry(n).or_default().push(t);
        }
    }
    let r = views::restrictions(store)?.collect()?;
    let (nhs, from, until, by, lifted) = (
        strs(r.column(NHS_NUMBER)?)?,
        micros(r.column(views::RESTRICTED_FROM)?)?,
        micros(r.column(views::RESTRICTED_UNTIL)?)?,
        strs(r.column(views::STARTED_BY)?)?,
        strs(r.column(views::LIFTED_BY)?)?,
    );
    for i in 0..r.height() {
        if let (Some(n), Some(f)) = (nhs[i].clone(), from[i]) {
            ctx.restrictions
                .entry(n.clone())
                .or_default()
                .push(RestrictionPeriod {
                    nhs_number: n,
                    from: f,
                    until: until[i],
                    started_by: by[i].clone().unwrap_or_default(),
                    lifted_by: lifted[i].clone(),
                });
        }
    }
    let p = views::proxy_links(store)?.collect()?;
    let (nhs, acct, from, until) = (
        strs(p.column(NHS_NUMBER)?)?,
        strs(p.column(PROXY_ACCOUNT_ID)?)?,
        micros(p.column(views::VALID_FROM)?)?,
        micros(p.column(views::VALID_UNTIL)?)?,
    );
    for i in 0..p.height() {
        if let (Some(n), Some(a), Some(f)) = (nhs[i].clone(), acct[i].clone(), from[i]) {
            ctx.proxy_links
                .entry((n, a))
                .or_default()
                .push((f, until[i]));
        }
    }
    Ok(())
}
