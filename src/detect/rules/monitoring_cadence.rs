//! `monitoring_cadence`: checking far above the patient's own pace, or machine-regular polling.

use std::collections::BTreeMap;

use super::{counts, RuleMeta};
use crate::detect::{short_device, Context, Finding, PatientView, Session};

pub const ID: &str = "monitoring_cadence";
const DAY: f64 = 86_400_000_000.0;

pub const META: RuleMeta = RuleMeta {
    id: ID,
    title: "Checked far more often, or on a schedule",
    severity: "medium",
    detects: "The record is opened many times more often than this patient's own pace before, or at intervals so \
              regular (every few hours, or every day at the same minute) that a person rarely keeps them.",
    benign_lookalikes: &[
        "a patient waiting anxiously for a result (a burst, but irregular: scores on pace only)",
        "a night-shift worker or anyone with a steady routine (people are not regular to the minute)",
    ],
    guide: "Look at who could be checking this often and why. Regular polling can be an app or a person checking on \
            the patient. Talk to the patient alone about who can use their login.",
};

pub fn detect(ctx: &Context, p: &PatientView) -> Vec<Finding> {
    let cfg = &ctx.cfg.monitoring_cadence;
    if !cfg.enabled {
        return Vec::new();
    }
    let recent: Vec<&Session> = p
        .recent(ctx)
        .filter(|s| s.reads > 0 && counts(ctx, s))
        .collect();
    if recent.is_empty() {
        return Vec::new();
    }
    let mut reasons = Vec::new();
    let mut score: f64 = 0.0;
    let mut evidence: Vec<&Session> = Vec::new();
    let mut device = None;

    // Machine-regular polling from one device.
    let mut by_device: BTreeMap<&str, Vec<&Session>> = BTreeMap::new();
    for s in &recent {
        by_device.entry(s.device.as_str()).or_default().push(s);
    }
    for (d, list) in &by_device {
        if list.len() < cfg.min_regular_sessions {
            continue;
        }
        let gaps: Vec<f64> = list
            .windows(2)
            .map(|w| (w[1].start - w[0].start) as f64)
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        if mean < 600_000_000.0 {
            continue; // under ten minutes apart: one sitting, not polling
        }
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        let cv = var.sqrt() / mean;
        if cv <= cfg.max_gap_variation {
            score = score.max(cfg.regular_score);
            let hours = mean / 3_600_000_000.0;
            reasons.push(format!(
                "It was opened {} times from {} at almost exactly regular intervals (every {}, varying by under {} \
                 minutes), a regularity people do not keep: an app or someone checking on a schedule.",
                list.len(),
                short_device(d),
                if hours >= 23.0 && hours <= 25.0 { "day at the same time".to_string() } else { format!("{hours:.1} hours") },
                ((var.sqrt() / 60_000_000.0).ceil() as i64).max(1),
            ));
            evidence.extend(list.iter().copied());
            device = Some(*d);
        }
    }

    // Pace far above the patient's own.
    if p.baseline.enough {
        let days = ((ctx.end - ctx.recent_start) as f64 / DAY).max(1.0);
        let rate = recent.len() as f64 / days;
        let before = p.baseline.daily_rate.max(0.05);
        if rate >= cfg.min_rate_per_day && rate >= cfg.rate_ratio * before {
            score = if score > 0.0 {
                (score + 10.0).min(cfg.max_score)
            } else {
                cfg.rate_score
            };
            reasons.push(format!(
                "It was opened {} times in the last {} days (about {rate:.1} a day), against about {:.1} a week \
                 before.",
                recent.len(),
                ctx.cfg.recent_days,
                before * 7.0
            ));
            if evidence.is_empty() {
                evidence.extend(recent.iter().copied());
            }
        }
    }
    if reasons.is_empty() {
        return Vec::new();
    }
    evidence.sort_by_key(|s| s.start);
    evidence.dedup_by_key(|s| s.start);
    vec![Finding::new(
        p.nhs,
        ID,
        score.min(cfg.max_score),
        &evidence,
        device,
        reasons.join(" "),
    )]
}
