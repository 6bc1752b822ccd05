//! Detection: who is reading each patient's record, over the whole look-back.
//!
//! For every patient the model of the account holder ([`baseline`]) says which devices are theirs and which hours
//! they keep; the rules ([`rules`]) then look for what a watcher does (another person's device, reads timed to
//! sensitive entries or to the patient's visits, hours the holder does not keep, a schedule, access after a 104
//! code), whenever it began. "New in the last `recent_days`" is one signal among several, not a precondition.
//! Findings are grouped into evidence groups (one device, one kind of evidence) before they are combined into a
//! patient's risk ([`scoring`]), so one device seen through several rules counts once.
//!
//! Layout: [`model`] the types, [`sessions`] building sessions from events, [`context`] what the rules read,
//! [`spill`] sessions kept on disk between the two passes, [`error`] what can fail.

pub mod baseline;
pub mod config;
pub mod context;
pub mod error;
pub mod lineage;
pub mod model;
pub mod rules;
pub mod scoring;
pub mod sessions;
mod spill;
pub mod stats;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use rayon::prelude::*;

use self::baseline::PatientBaseline;
use self::config::{Allowlist, DetectConfig};
pub use self::context::{Context, PatientView};
pub use self::error::{DetectError, Result};
pub use self::model::*;
use self::spill::Spill;
use crate::context::catalogue::SensitiveCatalogue;
use crate::report::chart_data::{patient_charts, RunCharts};

pub struct Detection {
    pub findings: Vec<Finding>,
    pub patients: Vec<scoring::PatientRisk>,
    pub stats: DetectionStats,
    /// What the report draws, gathered while each batch's sessions are at hand (see [`crate::report::chart_data`]).
    pub charts: RunCharts,
}

/// The instant a local day starts.
pub fn local_midnight(tz: Tz, day: NaiveDate) -> i64 {
    let naive = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp_micros())
        .unwrap_or_else(|| Utc.from_utc_datetime(&naive).timestamp_micros())
}

/// What pass one sums up over every batch's sessions.
#[derive(Default)]
struct PassOne {
    hour_counts: [f64; 24],
    per_day: BTreeMap<NaiveDate, u64>,
    devices: FastMap<String, baseline::DeviceHistory>,
    /// Device ids that continue one another on each record (an app reinstalled), with how many records show it.
    shown: FastMap<(Text, Text), (usize, bool)>,
    audit_events: u64,
    sessions: u64,
    proxy_sessions_on_role: u64,
}

impl PassOne {
    /// Adds batch `batch` of `batches` (holding `events` audit events), and spills it for pass two unless it is the
    /// last, which pass two takes from memory.
    fn add(
        &mut self,
        ctx: &Context,
        spill: Option<&Spill>,
        (batch, batches): (u32, u32),
        sessions: &BTreeMap<String, Vec<Session>>,
        events: u64,
    ) -> Result<()> {
        if let Some(spill) = spill {
            if batch + 1 < batches {
                spill.write(batch, &mut sessions::sessions_frame(sessions)?)?;
            }
        }
        self.audit_events += events;
        baseline::add_device_histories(&mut self.devices, sessions, ctx.recent_start, |s| {
            ctx.is_formal_proxy(s)
        });
        baseline::add_practice_hours(&mut self.hour_counts, sessions, |t| ctx.hour(t));
        for (nhs, list) in sessions {
            let refused = ctx.failed_logins.get(nhs).map_or(&[][..], Vec::as_slice);
            for (earlier, later, care) in
                lineage::successions(list, refused, ctx.end, |t| ctx.hour(t))
            {
                let e = self.shown.entry((earlier, later)).or_default();
                e.0 += 1;
                e.1 |= care;
            }
        }
        for s in sessions.values().flatten() {
            self.sessions += 1;
            self.proxy_sessions_on_role +=
                u64::from(ctx.proxy_links.is_empty() && &*s.role == PROXY_ROLE);
            *self
                .per_day
                .entry(ctx.local(s.start).date_naive())
                .or_default() += u64::from(s.events);
        }
        Ok(())
    }
}

/// Runs every rule for the as-of day.
pub fn detect(
    store: &Path,
    cfg: &DetectConfig,
    allowlist: &Allowlist,
    catalogue: &SensitiveCatalogue,
    tz: Tz,
    as_of: NaiveDate,
) -> Result<Detection> {
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
        // A day either side of the look-back: refused logins and context near its edges are asked about too.
        clock: context::LocalClock::new(tz, lookback_start - 86_400_000_000, end + 86_400_000_000),
        as_of,
        lookback_start,
        recent_start,
        end,
        devices: FastMap::default(),
        sessions: BTreeMap::new(),
        sensitive: FastMap::default(),
        entry_times: FastMap::default(),
        visits: FastMap::default(),
        appointment_ends: FastMap::default(),
        restrictions: FastMap::default(),
        practice_hours: [0.0; 24],
        proxy_links: FastMap::default(),
        failed_logins: FastMap::default(),
        read_sections: true,
    };
    let clock = std::time::Instant::now();
    let phase = |name: &str| {
        tracing::debug!(
            phase = name,
            seconds = clock.elapsed().as_secs_f64(),
            "detection phase done"
        )
    };
    context::load_context(store, catalogue, &mut ctx)?;
    phase("context");

    // What the export carries decides how sessions are built and which rules can run.
    let coverage = sessions::window_figures(store, lookback_start, end)?;
    phase("coverage");
    ctx.read_sections = coverage.names_sections();
    // Where events lack device ids, which versions of one model of phone are two phones on one record.
    let agents = if coverage.device_id < 1.0 {
        sessions::agent_devices(store, lookback_start, end)?
    } else {
        polars::prelude::DataFrame::empty()
    };
    phase("devices of one model");
    ctx.failed_logins = sessions::failed_logins(store, lookback_start, end, &agents)?;
    phase("refused logins");
    // Batches of patients: the window's events over `detect.batch_events`, at most 100, as ranges of NHS numbers
    // holding about equal shares of the events.
    let ranges = sessions::batch_ranges(
        store,
        lookback_start,
        end,
        coverage
            .events
            .div_ceil(cfg.batch_events.max(1))
            .clamp(1, 100) as u32,
    )?;
    let batches = ranges.len() as u32;
    phase("batches");
    let mut stats = DetectionStats {
        batches,
        rules_not_run: rules::not_runnable(&coverage),
        coverage,
        ..Default::default()
    };

    // Pass one: what the rules need to know across patients (which records each device has been used on, the
    // practice's hours) and the run's figures, one batch of patients at a time.
    let mut sums = PassOne::default();
    let mut last_batch = None;
    // With several batches, each batch's sessions (about a fifth of its events) are spilled to an owner-only
    // folder in the store, so pass two reads them back instead of reading the look-back again.
    let spill = if batches > 1 {
        Some(Spill::create(store).map_err(|source| DetectError::Spill {
            path: store.to_path_buf(),
            source,
        })?)
    } else {
        None
    };
    // A batch's sessions are summed up (and spilled) on a thread of their own while the next batch's are built, so
    // the summing, which runs on one core, overlaps the next batch's reading. Batches are still summed one after
    // the other in batch order, so the sums do not depend on the scheduling.
    let mut pending: Option<(u32, BTreeMap<String, Vec<Session>>, u64)> = None;
    for batch in 0..batches {
        let (from, until) = &ranges[batch as usize];
        let (ctx_ref, spill_ref, sums_ref) = (&ctx, spill.as_ref(), &mut sums);
        let (built, summed) = std::thread::scope(|scope| {
            let worker = pending.take().map(|(done, sessions, events)| {
                scope.spawn(move || {
                    sums_ref.add(ctx_ref, spill_ref, (done, batches), &sessions, events)
                })
            });
            let built = sessions::batch_sessions(
                store,
                lookback_start,
                end,
                (from.as_deref(), until.as_deref()),
                &agents,
            );
            let summed = match worker.map(|w| w.join()) {
                None => Ok(()),
                Some(Ok(summed)) => summed,
                Some(Err(panic)) => std::panic::resume_unwind(panic),
            };
            (built, summed)
        });
        summed?;
        let (sessions, events) = built?;
        pending = Some((batch, sessions, events));
        phase("pass one: a batch's sessions built, and the batch before summed up");
    }
    if let Some((batch, sessions, events)) = pending.take() {
        sums.add(&ctx, spill.as_ref(), (batch, batches), &sessions, events)?;
        last_batch = Some(sessions);
        phase("pass one: the last batch summed up");
    }
    let PassOne {
        hour_counts,
        per_day,
        mut devices,
        shown,
        audit_events,
        sessions: session_count,
        proxy_sessions_on_role,
    } = sums;
    stats.audit_events = audit_events;
    stats.sessions = session_count;
    stats.proxy_sessions_on_role = proxy_sessions_on_role;
    ctx.practice_hours = baseline::practice_hours(&hour_counts);
    let lines = lineage::Lineage::settle(shown, &mut devices);
    lines.apply_to_refused(&mut ctx.failed_logins);
    stats.reinstalled_devices = lines.len() as u64;
    baseline::finish_device_histories(&mut devices);
    ctx.devices = devices;

    // Pass two: the rules, patient by patient, batch by batch. The last batch of pass one is still in memory, so
    // it goes first and is not read again (with one batch, nothing is read twice).
    let mut findings = Vec::new();
    let mut patients = Vec::new();
    let mut charts = Vec::new();
    let runnable: Vec<&rules::Rule> = rules::CATALOGUE
        .iter()
        .filter(|r| !stats.rules_not_run.iter().any(|n| n.rule_id == r.meta.id))
        .collect();
    let order: Vec<u32> = std::iter::once(batches - 1).chain(0..batches - 1).collect();
    // The next batch's sessions are read back from the spill on a thread of their own while this batch's rules run.
    let mut next = last_batch.take();
    for (i, &batch) in order.iter().enumerate() {
        // One batch is always kept; several are always spilled.
        ctx.sessions = next.take().ok_or(DetectError::LostBatch(batch))?;
        lines.apply(&mut ctx.sessions);
        let (ctx_ref, spill_ref) = (&ctx, spill.as_ref());
        let read = std::thread::scope(|scope| {
            let reader = order.get(i + 1).map(|&following| {
                scope.spawn(move || -> Result<BTreeMap<String, Vec<Session>>> {
                    let spill = spill_ref.ok_or(DetectError::LostBatch(following))?;
                    Ok(sessions::sessions_from(&spill.read(following)?)?.0)
                })
            });
            // Patients are independent of each other once pass one is done: the rules run on both cores, and the
            // findings are gathered in patient order, so the run folder does not depend on the scheduling.
            let per_patient: Vec<(bool, Vec<Finding>)> = ctx_ref
                .sessions
                .par_iter()
                .map(|(nhs, sessions)| {
                    let view = PatientView {
                        nhs,
                        sessions,
                        baseline: PatientBaseline::build(ctx_ref, sessions),
                    };
                    let mut found = Vec::new();
                    for rule in &runnable {
                        for mut f in (rule.detect)(ctx_ref, &view) {
                            if let Some(note) = f.device_id.as_deref().and_then(|d| lines.note(d)) {
                                f.explanation = format!("{} {note}", f.explanation);
                            }
                            f.explanation =
                                format!("{} {}", f.explanation, ctx_ref.since(f.first_at));
                            found.push(f);
                        }
                    }
                    (view.baseline.enough, found)
                })
                .collect();
            let mut batch_findings = Vec::new();
            for (enough, mut found) in per_patient {
                stats.patients_analysed += 1;
                stats.patients_with_baseline += u64::from(enough);
                batch_findings.append(&mut found);
            }
            let batch_patients = scoring::score_patients(&batch_findings, cfg, ctx_ref);
            charts.extend(patient_charts(ctx_ref, &batch_findings, &batch_patients));
            findings.append(&mut batch_findings);
            patients.extend(batch_patients);
            match reader.map(|r| r.join()) {
                None => Ok(None),
                Some(Ok(read)) => read.map(Some),
                Some(Err(panic)) => std::panic::resume_unwind(panic),
            }
        });
        next = read?;
        phase("pass two: a batch's rules, scores and charts, and the next batch read");
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
    let rank: std::collections::HashMap<&str, usize> = patients
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
