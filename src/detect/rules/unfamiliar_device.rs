//! `unfamiliar_device`: a device new to this patient, used alongside their usual device.

use std::collections::BTreeMap;

use super::{counts, list_times, times, RuleMeta};
use crate::detect::{short_device, Context, Finding, PatientView, Session};

pub const ID: &str = "unfamiliar_device";
const DAY: i64 = 86_400_000_000;

pub const META: RuleMeta = RuleMeta {
    id: ID,
    title: "A new device used alongside the usual one",
    severity: "low",
    detects: "A device that has never opened this patient's record before is now doing so, while the patient's usual \
              device is still in use: two devices on one login, one of them new.",
    benign_lookalikes: &[
        "a replacement phone that takes over from the old one (not flagged: the old device stops)",
        "a patient who also starts using a tablet or computer of their own",
        "a one-off login from a work or library computer (scores low)",
    ],
    guide: "Look at when the new device appeared and what it read. Ask the patient, somewhere safe and alone, \
            whether they have started using another phone, tablet or computer. If they have not, someone else may \
            have their login: consider a new password, reviewing proxy access, and the 104 code.",
};

pub fn detect(ctx: &Context, p: &PatientView) -> Vec<Finding> {
    let cfg = &ctx.cfg.unfamiliar_device;
    if !cfg.enabled || !p.baseline.has_history(ctx) || p.baseline.established.is_empty() {
        return Vec::new();
    }
    let mut by_device: BTreeMap<&str, Vec<&Session>> = BTreeMap::new();
    for s in p.recent(ctx).filter(|s| counts(ctx, s)) {
        if p.baseline
            .devices
            .get(&s.device)
            .is_some_and(|u| u.baseline_sessions == 0)
        {
            by_device.entry(s.device.as_str()).or_default().push(s);
        }
    }
    let mut out = Vec::new();
    for (device, sessions) in by_device {
        let first = sessions[0].start;
        let usual_after: Vec<i64> = p
            .sessions
            .iter()
            .filter(|s| p.baseline.is_established(&s.device) && s.start > first)
            .map(|s| s.start)
            .collect();
        if usual_after.is_empty() {
            continue; // the usual device stopped: a replacement, or a takeover (see account_change_then_new_device)
        }
        let grace = cfg.replacement_grace_days * DAY;
        if usual_after.iter().all(|t| *t <= first + grace) && ctx.end - first > grace {
            continue; // the old device faded out within the grace period: a replacement phone
        }
        let n = sessions.len();
        let prying = sessions.iter().filter(|s| s.prying_reads > 0).count();
        let mut score = (cfg.base_score + cfg.per_session * (n as f64 - 1.0)).min(cfg.max_score);
        // A household tablet or computer a partner already uses is less telling than an outsider's device.
        if sessions.iter().all(|s| ctx.household_device(p, s)) {
            score *= ctx.cfg.shared_device.household_factor;
        }
        let explanation = format!(
            "A device this patient had not used before ({}) opened the record {} in the last {} days ({}), {}while \
             the patient's usual device was still being used. A new phone that simply replaces the old one would \
             not look like this.",
            short_device(device),
            times(n),
            ctx.cfg.recent_days,
            list_times(ctx, &sessions),
            if prying > 0 { "reading consultations, problems or documents, " } else { "" },
        );
        out.push(Finding::new(
            p.nhs,
            ID,
            score,
            &sessions,
            Some(device),
            explanation,
        ));
    }
    out
}
