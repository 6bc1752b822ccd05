//! `access_after_sensitive_entry`: the record read soon after a sensitive entry appeared, from a device or at an
//! hour unusual for the patient.

use super::{not_the_holder, EvidenceKind, Needs, RuleMeta};
use crate::detect::{short_device, Context, Finding, PatientView, Session};
use std::collections::BTreeMap;

pub const ID: &str = "access_after_sensitive_entry";
const HOUR: i64 = 3_600_000_000;

pub const META: RuleMeta = RuleMeta {
    id: ID,
    title: "Read soon after a sensitive entry appeared",
    severity: "medium",
    detects: "Soon after an entry about domestic abuse, safeguarding, mental health, self-harm, sexual health, \
              contraception, pregnancy, an injury or another agency's letter became visible online, the record was \
              read from a device that is not the patient's own, or from their own device in the middle of their \
              night.",
    benign_lookalikes: &[
        "a patient who reads every new entry from their own phone at their usual times (not flagged)",
        "a formal proxy acting within their recorded access (not flagged)",
    ],
    guide: "Read the entry and consider what someone checking on the patient would learn from it. Consider \
            redacting it from online view, adding the 104 code, and talking to the patient alone about who can see \
            their phone and their NHS login.",
    kind: EvidenceKind::Timing,
    needs: Needs::Nothing,
};

pub fn detect(ctx: &Context, p: &PatientView) -> Vec<Finding> {
    let cfg = &ctx.cfg.access_after_sensitive_entry;
    let Some(entries) = ctx.sensitive.get(p.nhs) else {
        return Vec::new();
    };
    if !cfg.enabled {
        return Vec::new();
    }
    // Per device: the entries it followed, each with the first session after it and how it was not the holder.
    let mut followed: BTreeMap<&str, Vec<(&crate::detect::SensitiveEntry, &Session, &str)>> =
        BTreeMap::new();
    for e in entries {
        let until = e.visible_from + cfg.within_hours * HOUR;
        let mut seen = std::collections::BTreeSet::new();
        for s in p
            .sessions
            .iter()
            .filter(|s| s.start >= e.visible_from && s.start <= until)
        {
            if let Some(how) = not_the_holder(ctx, p, s) {
                if seen.insert(s.device.as_ref()) {
                    followed
                        .entry(s.device.as_ref())
                        .or_default()
                        .push((e, s, how));
                }
            }
        }
    }
    let mut out = Vec::new();
    for (device, hits) in followed {
        let own = p.baseline.is_holders(device);
        let base = if own {
            cfg.night_own_device_score
        } else {
            cfg.unfamiliar_device_score
        };
        let score = (base + cfg.per_entry * (hits.len() as f64 - 1.0)).min(cfg.max_score);
        let mut text: Vec<String> = hits
            .iter()
            .take(4)
            .map(|(e, s, how)| {
                let delay_min = (s.start - e.visible_from) / 60_000_000;
                format!(
                    "{} after an entry about {} became visible online ({}), the record was opened {} ({}).",
                    if delay_min < 120 {
                        format!("{delay_min} minutes")
                    } else {
                        format!("{} hours", delay_min / 60)
                    },
                    e.category.plain(),
                    ctx.when(e.visible_from),
                    how,
                    short_device(device),
                )
            })
            .collect();
        if hits.len() > 4 {
            text.push(format!(
                "The same happened after {} more entries.",
                hits.len() - 4
            ));
        }
        text.push("Someone may be checking what the patient tells the practice.".into());
        let sessions: Vec<&Session> = hits.iter().map(|h| h.1).collect();
        let mut f = Finding::new(p.nhs, ID, score, &sessions, Some(device), text.join(" "));
        f.on_holders_hours = own && crate::detect::is_known_device(device);
        out.push(f);
    }
    out
}
