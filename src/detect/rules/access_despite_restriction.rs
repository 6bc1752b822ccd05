//! `access_despite_restriction`: after a 104 code, the record still watched from somewhere other than the
//! patient's own devices and hours.

use std::collections::BTreeSet;

use super::{
    counts, list_times, not_the_holder, only_device, times, EvidenceKind, Needs, RuleMeta,
};
use crate::detect::{short_device, Context, Finding, PatientView, Session};

pub const ID: &str = "access_despite_restriction";
const DAY: i64 = 86_400_000_000;
/// A device first used on the record this many days either side of a 104 code came with the concern.
const NEWCOMER_DAYS: i64 = 30;

pub const META: RuleMeta = RuleMeta {
    id: ID,
    title: "Watched after a 104 restriction",
    severity: "high",
    detects: "A 104 code (enhanced review indicated) that no 106 code has lifted is on the record, and the record is \
              still being read from a device that is not the patient's own, or from their own device at hours they \
              do not keep, whether that device first appeared before the restriction or after it. A device that \
              came to the record within 30 days either side of the code, after other devices, and has never booked, \
              ordered or messaged is not taken for the patient's own here, however it reads.",
    benign_lookalikes: &[
        "the patient carrying on with their own phone (not flagged: the 104 code stops new entries, not the patient)",
        "a formal proxy within their recorded access (not flagged)",
        "a new phone of the patient's that arrived around the code (flagged until it books, orders or messages, or \
         is more than 30 days from the code)",
    ],
    guide: "The 104 code was added because of a concern; it does not stop someone who has the login from reading \
            what was already visible. Review what is visible, consider redactions, and talk to the patient alone \
            about a new password and who has access to their devices.",
    kind: EvidenceKind::Restriction,
    needs: Needs::Nothing,
};

pub fn detect(ctx: &Context, p: &PatientView) -> Vec<Finding> {
    let cfg = &ctx.cfg.access_despite_restriction;
    let Some(periods) = ctx.restrictions.get(p.nhs) else {
        return Vec::new();
    };
    if !cfg.enabled {
        return Vec::new();
    }
    let record_first = p.sessions.iter().map(|s| s.start).min().unwrap_or(i64::MAX);
    let mut out = Vec::new();
    for r in periods {
        let until = r.until.unwrap_or(ctx.end);
        // A device the model takes for the holder's but that came to the record only around the concern the code
        // answers ([`NEWCOMER_DAYS`] either side of it), after other devices had been in use, and has never managed
        // the patient's care (no booking, order or message): the model learned it from the weeks in which the concern
        // arose, so it is not yet known to be the patient's.
        let newcomer = |d: &str| {
            crate::detect::is_known_device(d)
                && p.baseline.devices.get(d).is_some_and(|u| {
                    u.owner_action_sessions == 0
                        && u.first > record_first
                        && (u.first - r.from).abs() <= NEWCOMER_DAYS * DAY
                })
        };
        // The holder's own continued use is expected: only reading that is not the holder's counts.
        let watched: Vec<&Session> = p
            .sessions
            .iter()
            .filter(|s| s.start >= r.from && s.start < until)
            .filter(|s| {
                not_the_holder(ctx, p, s).is_some()
                    || (s.reads > 0 && counts(ctx, s) && newcomer(&s.device))
            })
            .collect();
        // The holder's own device at foreign hours needs more than one visit to count here; another device does not.
        let other_device = watched
            .iter()
            .any(|s| !p.baseline.is_holders(&s.device) || newcomer(&s.device));
        let newcomers: BTreeSet<&str> = watched
            .iter()
            .map(|s| s.device.as_str())
            .filter(|d| p.baseline.is_holders(d) && newcomer(d))
            .collect();
        if watched.is_empty() || (!other_device && watched.len() < 2) {
            continue;
        }
        let devices: BTreeSet<&str> = watched.iter().map(|s| s.device.as_str()).collect();
        let mut score = (cfg.base_score + cfg.per_session * (watched.len().min(8) as f64 - 1.0))
            .min(cfg.max_score);
        if !other_device {
            score *= cfg.own_device_factor;
        }
        let explanation = format!(
            "A 104 code has restricted this patient's online access since {}{}, yet the record was opened {} since \
             then ({}) from {} that {} not the patient's own, or at hours the patient does not keep ({}). The 104 code \
             does not stop someone who has the login from reading what was already visible.{}",
            ctx.when(r.from),
            r.until.map(|u| format!(" (lifted {})", ctx.when(u))).unwrap_or_default(),
            times(watched.len()),
            list_times(ctx, &watched),
            if devices.len() == 1 { "a device" } else { "devices" },
            if devices.len() == 1 { "is" } else { "are" },
            devices.iter().map(|d| short_device(d)).collect::<Vec<_>>().join(", "),
            if newcomers.is_empty() {
                String::new()
            } else {
                format!(
                    " {} {} first used on the record within {NEWCOMER_DAYS} days of the restriction, after other \
                     devices, and {} never booked, ordered or messaged: it is not known to be the patient's own.",
                    newcomers.iter().map(|d| short_device(d)).collect::<Vec<_>>().join(", "),
                    if newcomers.len() == 1 { "was" } else { "were" },
                    if newcomers.len() == 1 { "has" } else { "have" },
                )
            },
        );
        let device = only_device(&devices);
        out.push(Finding::new(
            p.nhs,
            ID,
            score,
            &watched,
            device,
            explanation,
        ));
    }
    out
}
