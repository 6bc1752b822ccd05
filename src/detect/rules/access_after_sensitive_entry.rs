//! `access_after_sensitive_entry`: the record read soon after a sensitive entry appeared, from a device or at an
//! hour unusual for the patient.

use super::{counts, list_times, not_the_holder, only_device, EvidenceKind, Needs, RuleMeta};
use crate::detect::stats::{binomial_tail, hypergeometric_upper_tail};
use crate::detect::{short_device, Context, Finding, PatientView, Session};
use std::collections::{BTreeMap, BTreeSet};

pub const ID: &str = "access_after_sensitive_entry";
const HOUR: i64 = 3_600_000_000;
/// A read "soon" after an entry: sooner than the record's own pace of reading would bring one by this chance.
const SOON_CHANCE: f64 = 0.1;
/// Sensitive entries read soon this often beyond the record's pace by chance less than once in this many...
const PACE_ODDS: f64 = 20.0;
/// ...and more of them than of its ordinary entries, by chance (Fisher's exact test) less than once in this many.
const SELECTIVE_ODDS: f64 = 5.0;
/// An entry recorded within this many hours after an attended appointment is one the patient knows of: their own
/// prompt look is expected, so such entries are left out of the comparison.
const AFTER_VISIT_HOURS: i64 = 24;

pub const META: RuleMeta = RuleMeta {
    id: ID,
    title: "Read soon after a sensitive entry appeared",
    severity: "medium",
    detects: "Soon after an entry about domestic abuse, safeguarding, mental health, self-harm, sexual health, \
              contraception, pregnancy, an injury or another agency's letter became visible online, the record was \
              read from a device that is not the patient's own, or from their own device in the middle of their \
              night. On any device and at any hour, too, when the record is read soon after sensitive entries far \
              beyond its own pace of reading (twice or more) and not after its ordinary entries: someone watching for \
              what the patient discloses, not for what the record says. That alone scores low: it corroborates \
              other evidence.",
    benign_lookalikes: &[
        "a patient who reads every new entry from their own phone at their usual times (not flagged)",
        "a formal proxy acting within their recorded access (not flagged)",
        "a patient notified of every new entry who reads each one at once, sensitive or not (not flagged: the \
         ordinary entries are read as soon)",
        "a patient reading what was recorded at an appointment they just attended (those entries are left out)",
        "a patient awaiting a sensitive result (a sexual health test) who reads it at once (low alone: the reading \
         soon after sensitive entries only corroborates)",
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
    if out.is_empty() {
        out.extend(selective(ctx, p, entries));
    }
    out
}

/// The record read soon after its sensitive entries appeared, and not after its ordinary ones, on whatever device and
/// at whatever hour: "soon" is within the time in which the record's own pace of reading (its reading visits over the
/// look-back) brings a visit by chance [`SOON_CHANCE`]. At least two sensitive entries read soon, beyond that chance
/// less than once in [`PACE_ODDS`], and a larger share of them than of at least two ordinary entries (Fisher's exact
/// test, [`SELECTIVE_ODDS`]). A patient who reads every new entry at once reads the ordinary ones as soon; entries
/// recorded just after an appointment the patient attended are left out on both sides. The two tests are loose
/// because a record has few entries; so the finding scores low (`night_own_device_score`) and counts only beside
/// other evidence: a patient may await a sensitive result and read it at once themself.
fn selective(
    ctx: &Context,
    p: &PatientView,
    sensitive: &[crate::detect::SensitiveEntry],
) -> Option<Finding> {
    let cfg = &ctx.cfg.access_after_sensitive_entry;
    let mut reads: Vec<&Session> = p
        .sessions
        .iter()
        .filter(|s| s.reads > 0 && s.owner_actions == 0 && counts(ctx, s))
        .collect();
    reads.sort_by_key(|s| s.start);
    let first = reads.first()?.start;
    let span_hours = ((ctx.end - first) as f64 / HOUR as f64).max(24.0);
    let pace = reads.len() as f64 / span_hours;
    let after_visit = |t: i64| {
        ctx.appointment_ends.get(p.nhs).is_some_and(|ends| {
            ends.iter()
                .any(|e| t >= *e && t <= e + AFTER_VISIT_HOURS * HOUR)
        })
    };
    // The first read at or after `t`, if it came soon.
    let soon = |t: i64| -> Option<&Session> {
        let i = reads.partition_point(|s| s.start < t);
        reads.get(i).copied().filter(|s| {
            let hours = (s.start - t) as f64 / HOUR as f64;
            1.0 - (-pace * hours).exp() <= SOON_CHANCE
        })
    };
    let sensitive_times: BTreeSet<i64> = sensitive
        .iter()
        .map(|e| e.visible_from)
        .filter(|t| *t >= first && *t < ctx.end && !after_visit(*t))
        .collect();
    let ordinary: Vec<i64> = ctx
        .entry_times
        .get(p.nhs)
        .map(|ts| {
            ts.iter()
                .copied()
                .filter(|t| *t >= first && *t < ctx.end && !after_visit(*t))
                .filter(|t| {
                    sensitive_times
                        .range(t - 60_000_000..=t + 60_000_000)
                        .next()
                        .is_none()
                })
                .collect()
        })
        .unwrap_or_default();
    let mut sessions: Vec<&Session> = sensitive_times.iter().filter_map(|t| soon(*t)).collect();
    let (k, a) = (sensitive_times.len(), sessions.len());
    let (m, b) = (
        ordinary.len(),
        ordinary.iter().filter(|t| soon(**t).is_some()).count(),
    );
    if a < 2
        || m < 2
        || binomial_tail(k, a, SOON_CHANCE) > 1.0 / PACE_ODDS
        || hypergeometric_upper_tail(k + m, a + b, k, a) > 1.0 / SELECTIVE_ODDS
    {
        return None;
    }
    sessions.dedup_by_key(|s| s.start);
    let devices: BTreeSet<&str> = sessions.iter().map(|s| s.device.as_ref()).collect();
    let explanation = format!(
        "The record was read soon after {a} of its {k} sensitive entries appeared ({}), far sooner than its own pace \
         of reading ({}) explains, while {b} of its {m} ordinary entries were read that soon. Someone may be watching \
         for what the patient tells the practice rather than reading the record.",
        list_times(ctx, &sessions),
        if pace * 24.0 >= 1.0 {
            format!("about {:.0} visits a day", pace * 24.0)
        } else {
            format!("about one visit every {:.0} days", 1.0 / pace / 24.0)
        },
    );
    Some(Finding::new(
        p.nhs,
        ID,
        cfg.night_own_device_score,
        &sessions,
        only_device(&devices),
        explanation,
    ))
}
