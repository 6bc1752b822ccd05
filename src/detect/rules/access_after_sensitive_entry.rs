//! `access_after_sensitive_entry`: the record read soon after a sensitive entry appeared, from a device or at an
//! hour unusual for the patient.

use super::{counts, only_device, RuleMeta};
use crate::detect::{short_device, Context, Finding, PatientView, Session};

pub const ID: &str = "access_after_sensitive_entry";
const HOUR: i64 = 3_600_000_000;

pub const META: RuleMeta = RuleMeta {
    id: ID,
    title: "Read soon after a sensitive entry appeared",
    severity: "medium",
    detects: "Soon after an entry about domestic abuse, safeguarding, mental health, self-harm, sexual health, \
              contraception, pregnancy, an injury or another agency's letter became visible online, the record was \
              read from a device the patient does not normally use, or from their own device in the middle of \
              their night.",
    benign_lookalikes: &[
        "a patient who reads every new entry from their own phone at their usual times (not flagged)",
        "a formal proxy acting within their recorded access (not flagged)",
    ],
    guide: "Read the entry and consider what someone checking on the patient would learn from it. Consider \
            redacting it from online view, adding the 104 code, and talking to the patient alone about who can see \
            their phone and their NHS login.",
};

pub fn detect(ctx: &Context, p: &PatientView) -> Vec<Finding> {
    let cfg = &ctx.cfg.access_after_sensitive_entry;
    let Some(entries) = ctx.sensitive.get(p.nhs) else {
        return Vec::new();
    };
    if !cfg.enabled {
        return Vec::new();
    }
    let established_elsewhere = |s: &Session| ctx.established_on_another_record(p.nhs, &s.device);
    let mut followed: Vec<(String, f64, Vec<&Session>)> = Vec::new();
    for e in entries {
        let until = e.visible_from + cfg.within_hours * HOUR;
        let reads: Vec<&Session> = p
            .recent(ctx)
            .filter(|s| {
                s.reads > 0 && s.start >= e.visible_from && s.start <= until && counts(ctx, s)
            })
            .collect();
        let unfamiliar: Vec<&Session> = reads
            .iter()
            .copied()
            .filter(|s| {
                (p.baseline.has_history(ctx)
                    && p.baseline.is_new(&s.device)
                    && !ctx.is_replacement(p, &s.device)
                    && !ctx.household_device(p, s))
                    || established_elsewhere(s)
            })
            .collect();
        let night: Vec<&Session> = reads
            .iter()
            .copied()
            .filter(|s| {
                let h = ctx.hour(s.start);
                p.baseline.enough
                    && p.baseline.is_established(&s.device)
                    && !(6..22).contains(&h)
                    && p.baseline.hour_share[h as usize] < ctx.cfg.unusual_hour.rare_share
            })
            .collect();
        let (score, sessions, how) = if !unfamiliar.is_empty() {
            (
                cfg.unfamiliar_device_score,
                unfamiliar,
                format!(
                    "from a device this patient does not normally use ({})",
                    short_device(&reads_device(&reads, true, p))
                ),
            )
        } else if !night.is_empty() {
            (
                cfg.night_own_device_score,
                night,
                "from the patient's own device in the middle of their night".to_string(),
            )
        } else {
            continue;
        };
        let first = sessions[0];
        let delay_min = (first.start - e.visible_from) / 60_000_000;
        let text = format!(
            "{} after an entry about {} became visible online ({}), the record was opened {} and {} read.",
            if delay_min < 120 { format!("{delay_min} minutes") } else { format!("{} hours", delay_min / 60) },
            e.category.plain(),
            ctx.when(e.visible_from),
            how,
            if sessions.iter().any(|s| s.prying_reads > 0) { "consultations, problems or documents were" } else { "the record was" },
        );
        followed.push((text, score, sessions));
    }
    if followed.is_empty() {
        return Vec::new();
    }
    let best = followed.iter().map(|f| f.1).fold(0.0, f64::max);
    let score = (best + cfg.per_entry * (followed.len() as f64 - 1.0)).min(cfg.max_score);
    let sessions: Vec<&Session> = followed.iter().flat_map(|f| f.2.iter().copied()).collect();
    let devices: std::collections::BTreeSet<&str> =
        sessions.iter().map(|s| s.device.as_str()).collect();
    let device = only_device(&devices);
    let mut explanation: Vec<String> = followed.into_iter().map(|f| f.0).collect();
    explanation.push("Someone may be checking what the patient tells the practice.".into());
    vec![Finding::new(
        p.nhs,
        ID,
        score,
        &sessions,
        device,
        explanation.join(" "),
    )]
}

fn reads_device(reads: &[&Session], unfamiliar: bool, p: &PatientView) -> String {
    reads
        .iter()
        .find(|s| !unfamiliar || !p.baseline.is_established(&s.device))
        .or(reads.first())
        .map(|s| s.device.clone())
        .unwrap_or_default()
}
