//! What the report's charts draw, in the report's own terms. Detection gathers it for each batch of patients while
//! that batch's sessions are in memory (they are gone after the batch), by calling [`patient_charts`]; the drawing
//! is in [`super::charts`].

use chrono::NaiveDate;

use crate::context::catalogue::Category;
use crate::detect::baseline::PatientBaseline;
use crate::detect::{scoring, Context, Finding, Text};

/// What the report draws for one flagged patient.
#[derive(Debug, Clone, Default)]
pub struct PatientChart {
    pub nhs_number: String,
    /// (start, device) of every session on the record in the look-back; the device shares the batch's string.
    pub sessions: Vec<(i64, Text)>,
    /// Starts of the sessions behind the findings.
    pub evidence: std::collections::BTreeSet<i64>,
    pub sensitive: Vec<(i64, Category)>,
    pub visits: Vec<(i64, i64)>,
    pub restrictions: Vec<(i64, Option<i64>)>,
    /// The patient's usual share of sessions per local hour (baseline), at the hours the model takes for theirs: an
    /// hour it takes for someone else's (see `PatientBaseline::foreign_hour`) is drawn empty, however often the
    /// record was read then, as the explanations name only the patient's own hours as usual.
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

/// The holder's share of sessions per local hour over the hours the model takes for theirs (summing to one): an hour
/// it takes for someone else's is empty.
fn own_hours_share(ctx: &Context, baseline: &PatientBaseline) -> [f64; 24] {
    let own: [f64; 24] = std::array::from_fn(|h| {
        if baseline.foreign_local_hour(ctx, h as u32) {
            0.0
        } else {
            baseline.hour_share[h]
        }
    });
    let total: f64 = own.iter().sum();
    if total > 0.0 {
        own.map(|s| s / total)
    } else {
        own
    }
}

/// The chart data of a batch's flagged patients, taken while detection holds the batch's sessions.
pub fn patient_charts(
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
                hour_share: own_hours_share(ctx, &baseline),
                usual_hours: baseline.usual_hours(ctx),
            }
        })
        .collect()
}
