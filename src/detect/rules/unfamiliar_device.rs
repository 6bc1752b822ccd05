//! `unfamiliar_device`: a device that is not the account holder's, reading the record alongside the holder's own,
//! whether it appeared this week or was already there when the look-back began.

use super::{counts, list_times, times, watcher_reading, EvidenceKind, Needs, RuleMeta};
use crate::detect::{short_device, Context, Finding, PatientView};

pub const ID: &str = "unfamiliar_device";

pub const META: RuleMeta = RuleMeta {
    id: ID,
    title: "A device that is not the patient's own",
    severity: "low",
    detects: "A device other than the patient's own reads the record while the patient goes on using theirs. The \
              patient's own devices are recognised by what they do (booking, ordering, messages, reading their \
              appointments, allergies or immunisations; a device that reads sensitive entries as they appear, when \
              the patient's main device does not, only by booking, ordering or writing); this one, in nearly all its \
              visits, reads nothing the patient manages their care with, and never books, orders or writes (at the \
              patient's own hours, beyond what its shorter visits would miss by chance). It counts however long it \
              has been there.",
    benign_lookalikes: &[
        "a replacement phone that takes over from the old one (not flagged: it is used the way the patient used the \
         old one)",
        "a patient's own tablet or computer, used for their own care (not flagged)",
        "a patient's own tablet opened for one section at a time at their usual hours (scores low: short visits \
         miss the care sections by chance)",
        "a one-off login from a work or library computer (scores low)",
    ],
    guide: "Look at when the device first appeared and what it read. Ask the patient, somewhere safe and alone, \
            whether they use another phone, tablet or computer. If they do not, someone else may have their login: \
            consider a new password, reviewing proxy access, and the 104 code.",
    kind: EvidenceKind::Device,
    needs: Needs::Device,
};

pub fn detect(ctx: &Context, p: &PatientView) -> Vec<Finding> {
    let cfg = &ctx.cfg.unfamiliar_device;
    if !cfg.enabled || p.baseline.primary_device.is_none() || !p.baseline.has_history(ctx) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (device, sessions) in super::by_device(p, |s| {
        s.reads > 0
            && counts(ctx, s)
            && crate::detect::is_known_device(&s.device)
            && !p.baseline.is_holders(&s.device)
    }) {
        let Some(usage) = p.baseline.devices.get(device) else {
            continue;
        };
        let first = sessions[0].start;
        let last = sessions.iter().map(|s| s.start).max().unwrap_or(first);
        // The holder's own devices still in use after this one appeared: it was joined, not replaced. A device of
        // the holder's first used only after this one's last visit is its successor (the holder's new phone after
        // this old one), not a device alongside it.
        let alongside = p.sessions.iter().any(|s| {
            p.baseline.is_holders(&s.device)
                && s.start > first
                && p.baseline
                    .devices
                    .get(&*s.device)
                    .is_some_and(|u| u.first <= last)
        });
        // At the holder's hours, only how it reads sets it apart from the holder's own second device, and a device of
        // short visits misses the care sections by chance more often: its reading must stand out visit by visit.
        let prying = if sessions
            .iter()
            .any(|s| p.baseline.foreign_hour(ctx, s.start))
        {
            p.baseline.reads_like_watcher(device)
        } else {
            p.baseline.reads_like_watcher_visit_by_visit(device)
        };
        if !alongside && !prying {
            continue;
        }
        let n = sessions.len();
        let mut score = cfg.base_score + cfg.per_session * (n.min(cfg.max_sessions) as f64 - 1.0);
        if prying {
            score += cfg.reads_only_score;
        }
        if p.baseline.is_new(device) && p.baseline.has_history(ctx) {
            score += cfg.new_score;
        }
        score = score.min(if prying {
            cfg.max_score
        } else {
            cfg.holders_reading_max_score
        });
        // Seen on one day only: a borrowed or work computer is as likely as a watcher.
        if usage.days < 2 {
            score = score.min(cfg.base_score);
        }
        // A household tablet or computer a partner already uses is less telling than an outsider's device, and
        // one that reads this record the way the holder does is the family's tablet, not a witness.
        if sessions.iter().all(|s| ctx.household_device(p, s)) {
            if !prying {
                continue;
            }
            score *= ctx.cfg.shared_device.household_factor;
        }
        let explanation = format!(
            "A device that does not behave like the patient's own ({}) opened the record {} on {} days ({}). {}{}",
            short_device(device),
            times(n),
            usage.days,
            list_times(ctx, &sessions),
            if prying {
                format!("{}, unlike the patient's own device. ", watcher_reading(usage))
            } else {
                String::new()
            },
            if alongside {
                "The patient's own device was still in use alongside it: a new phone that simply replaces the old \
                 one would not look like this."
            } else {
                "The patient's own device has not been used since it appeared."
            },
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
