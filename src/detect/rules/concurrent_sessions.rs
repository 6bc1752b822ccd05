//! `concurrent_sessions`: one account active from two devices at nearly the same time.

use super::{counts, EvidenceKind, Needs, RuleMeta};
use crate::detect::{short_device, Context, Finding, PatientView, Session};

pub const ID: &str = "concurrent_sessions";

pub const META: RuleMeta = RuleMeta {
    id: ID,
    title: "One login used on two devices at once",
    severity: "medium",
    detects: "The same online account was active on two different devices within a few minutes of each other.",
    benign_lookalikes: &[
        "a patient who moves from phone to computer (scores as one pair; the sessions are usually not overlapping)",
        "a couple's shared tablet with separate logins (not flagged: different accounts)",
    ],
    guide: "Two people are probably using one NHS login. Ask the patient, alone, who else knows their login or \
            has their phone. Consider a new password and reviewing which devices are signed in.",
    kind: EvidenceKind::Device,
    needs: Needs::Device,
};

pub fn detect(ctx: &Context, p: &PatientView) -> Vec<Finding> {
    let cfg = &ctx.cfg.concurrent_sessions;
    if !cfg.enabled {
        return Vec::new();
    }
    let near = cfg.within_minutes * 60_000_000;
    let recent: Vec<&Session> = p
        .sessions
        .iter()
        .filter(|s| {
            counts(ctx, s) && &*s.account != "-" && crate::detect::is_known_device(&s.device)
        })
        .collect();
    let mut pairs: Vec<(&Session, &Session)> = Vec::new();
    for (i, a) in recent.iter().enumerate() {
        for b in recent[i + 1..]
            .iter()
            .take_while(|b| b.start <= a.end + near)
        {
            // Both sessions open at once (give or take `within_minutes`), on two devices.
            if a.account == b.account
                && a.device != b.device
                && b.start <= a.end + near
                && a.start <= b.end + near
            {
                pairs.push((a, b));
            }
        }
    }
    let Some((a, b)) = pairs.first().copied() else {
        return Vec::new();
    };
    // A patient moving between two devices of their own is less telling than a device they do not use, and so is
    // a pair in which neither device reads the way a watcher does (a phone and a tablet picked up together).
    let both_own = pairs
        .iter()
        .all(|(a, b)| p.baseline.is_holders(&a.device) && p.baseline.is_holders(&b.device));
    // A device too new to judge as a whole is judged by what it read while the other was open.
    let reads_otherwise = |s: &Session| {
        p.baseline.reads_like_watcher(&s.device)
            || (!p.baseline.is_holders(&s.device) && s.watcher_like())
    };
    let prying = pairs
        .iter()
        .any(|(a, b)| reads_otherwise(a) || reads_otherwise(b));
    let mut score = (cfg.base_score + 5.0 * (pairs.len() as f64 - 1.0)).min(cfg.max_score);
    if both_own || !prying {
        score *= cfg.own_devices_factor;
    }
    let sessions: Vec<&Session> = pairs.iter().flat_map(|(a, b)| [*a, *b]).collect();
    let explanation = format!(
        "The patient's online account was in use on two devices at the same time ({} on {} and {} on {}){}. One \
         person rarely does this; two people sharing one login do.",
        ctx.when(a.start),
        short_device(&a.device),
        ctx.local(b.start).format("%H:%M"),
        short_device(&b.device),
        if pairs.len() > 1 { format!(", and {} more times", pairs.len() - 1) } else { String::new() },
    );
    // The finding is about the device that is not the holder's (the later one when both or neither are): two at
    // once is one more thing that device does, and it joins that device's evidence group.
    let other = if p.baseline.is_holders(&b.device) && !p.baseline.is_holders(&a.device) {
        &a.device
    } else {
        &b.device
    };
    vec![Finding::new(
        p.nhs,
        ID,
        score,
        &sessions,
        Some(other),
        explanation,
    )]
}
