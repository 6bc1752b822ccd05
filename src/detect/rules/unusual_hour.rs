//! `unusual_hour`: the record opened at hours this patient almost never uses.

use std::collections::BTreeSet;

use super::{counts, list_times, only_device, times, RuleMeta};
use crate::detect::{Context, Finding, PatientView, Session};

pub const ID: &str = "unusual_hour";
const HOUR: i64 = 3_600_000_000;

pub const META: RuleMeta = RuleMeta {
    id: ID,
    title: "Opened at hours the patient does not use",
    severity: "low",
    detects: "Sessions on several days at local hours that are rare in this patient's own history, not explained by \
              a new entry or an appointment just before.",
    benign_lookalikes: &[
        "a night-shift worker at their usual night hours (not flagged: those hours are usual for them)",
        "a patient abroad in another time zone (scores lower: own device, new addresses)",
        "a patient reading a new result as soon as it appears (not counted: explained by the entry)",
    ],
    guide: "Compare the times with the patient's routine (shift work, a new baby, travel). Night-time use of the \
            patient's own phone can mean someone takes the phone while they sleep. Ask the patient, alone, whether \
            they used the app at those times.",
};

pub fn detect(ctx: &Context, p: &PatientView) -> Vec<Finding> {
    let cfg = &ctx.cfg.unusual_hour;
    if !cfg.enabled || !p.baseline.has_history(ctx) {
        return Vec::new();
    }
    let window = cfg.explained_within_hours * HOUR;
    let explained = |s: &Session| {
        let after = |ts: Option<&Vec<i64>>| {
            ts.is_some_and(|ts| ts.iter().any(|t| s.start >= *t && s.start <= t + window))
        };
        after(ctx.entry_times.get(p.nhs)) || after(ctx.appointment_ends.get(p.nhs))
    };
    let rare: Vec<&Session> = p
        .recent(ctx)
        .filter(|s| counts(ctx, s))
        .filter(|s| p.baseline.hour_share[ctx.hour(s.start) as usize] < cfg.rare_share)
        .filter(|s| !explained(s))
        .collect();
    let days: BTreeSet<_> = rare
        .iter()
        .map(|s| ctx.local(s.start).date_naive())
        .collect();
    if rare.len() < cfg.min_sessions || days.len() < cfg.min_days {
        return Vec::new();
    }
    // Own device over addresses never seen before: most likely the patient away from home.
    let away = rare.iter().all(|s| {
        p.baseline.is_established(&s.device)
            && s.ip.as_ref().is_some_and(|ip| !p.baseline.ips.contains(ip))
    });
    let mut score = (cfg.base_score + cfg.per_session * (rare.len() - cfg.min_sessions) as f64)
        .min(cfg.max_score);
    if away {
        score *= cfg.away_from_home_factor;
    }
    let devices: BTreeSet<&str> = rare.iter().map(|s| s.device.as_str()).collect();
    let own = devices.iter().all(|d| p.baseline.is_established(d));
    let explanation = format!(
        "The record was opened {} on {} different days at hours this patient almost never uses ({}). Before the \
         last {} days they used it {}. {}{}",
        times(rare.len()),
        days.len(),
        list_times(ctx, &rare),
        ctx.cfg.recent_days,
        p.baseline.usual_hours(),
        if own { "It was their own usual device: someone may be using their phone while they sleep or are away from it." } else { "Not all of it was their usual device." },
        if away { " The connections were new addresses, which fits travel abroad." } else { "" },
    );
    let device = only_device(&devices);
    vec![Finding::new(p.nhs, ID, score, &rare, device, explanation)]
}
