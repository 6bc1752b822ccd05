//! `account_change_then_new_device`: contact details or password changed, then a new device appears.

use super::{counts, times, watcher_reading, EvidenceKind, Needs, RuleMeta};

use crate::detect::baseline::shortest_arc;
use crate::detect::stats::different_hours;
use crate::detect::{short_device, Context, Finding, PatientView, Session};

pub const ID: &str = "account_change_then_new_device";
const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;

pub const META: RuleMeta = RuleMeta {
    id: ID,
    title: "Login details changed, then a new device",
    severity: "medium",
    detects: "The account's password or contact details were changed, and within days a device never seen on this \
              record before started using it: the pattern of someone taking over a login. Stronger when the phone \
              the patient used most before the change is then refused at sign-in and does not get in: the patient \
              locked out of their own login. A new device that takes over from the old ones is not taken for the \
              patient's replacement phone when it keeps other times of day than they did.",
    benign_lookalikes: &[
        "a patient who resets a forgotten password on a new phone (not flagged once the phone is used for their own \
         care: booking, ordering, reading the summary)",
        "a patient refused once who gets in at the next try, or an old tablet left with the old password (not a \
         lock-out)",
        "a second device set up with a reset and used now and then at home beside the patient's phone (scores \
         lower, once a fortnight has passed since the change)",
    ],
    guide: "Ask the patient, alone, whether they changed their password or contact details, and whether they have a \
            new phone. If not, the login may have been taken over: help them secure it with NHS login and consider \
            the 104 code.",
    kind: EvidenceKind::Device,
    needs: Needs::Device,
};

/// Visits needed on each side of the change before their times of day are compared...
const MIN_VISITS_EACH: usize = 3;
/// ...and the times differ by chance less than once in this many (see [`different_hours`])...
const MOVED_ODDS: f64 = 100.0;
/// ...by at least this many minutes between their mean times of day.
const MIN_SHIFT_MINUTES: u32 = 180;

/// "mostly 21:00-02:59": the shortest run of whole hours holding most of the visits (see [`shortest_arc`]).
fn clock_range(minutes: &[u32]) -> String {
    let mut counts = [0.0; 24];
    for m in minutes {
        counts[(*m / 60 % 24) as usize] += 1.0;
    }
    match shortest_arc(&counts) {
        Some(a) => format!(
            "mostly {:02}:00-{:02}:59",
            a.start,
            (a.start + a.len - 1) % 24
        ),
        None => "no usual hours".into(),
    }
}

pub fn detect(ctx: &Context, p: &PatientView) -> Vec<Finding> {
    let cfg = &ctx.cfg.account_change_then_new_device;
    if !cfg.enabled {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut reported: std::collections::BTreeSet<&str> = Default::default();
    for change in p.sessions.iter().filter(|s| s.account_change_at.is_some()) {
        let at = change.account_change_at.unwrap_or(change.start);
        // Devices whose first use on this record comes at or after the change (from an hour before it, for a
        // change made on the new device itself).
        let mut new_devices: Vec<&str> = p
            .baseline
            .devices
            .iter()
            .filter(|(d, u)| {
                u.first >= at - HOUR
                    && u.first <= at + cfg.within_days * DAY
                    && crate::detect::is_known_device(d)
                    // A new phone on which the patient then books, orders or writes is the patient's own.
                    && u.owner_action_sessions == 0
            })
            .map(|(d, _)| d.as_str())
            .collect();
        new_devices.sort();
        new_devices.retain(|d| !reported.contains(d));
        reported.extend(new_devices.iter().copied());
        let sessions: Vec<&Session> = p
            .sessions
            .iter()
            .filter(|s| {
                new_devices.contains(&s.device.as_ref()) && s.start >= at - HOUR && counts(ctx, s)
            })
            .collect();
        if sessions.is_empty() {
            continue;
        }
        let first = sessions[0];
        let delay_h = (first.start - at).max(0) / HOUR;
        // The devices used before the change (with their sessions), and whether none is used again after it: the
        // patient locked out of their own login.
        let mut before: std::collections::BTreeMap<&str, usize> = Default::default();
        for s in p.sessions.iter().filter(|s| s.start < at - HOUR) {
            *before.entry(s.device.as_ref()).or_default() += 1;
        }
        let locked_out = !before.is_empty()
            && ctx.end - at > 7 * DAY
            && !p
                .sessions
                .iter()
                .any(|s| s.start > at + DAY && before.contains_key(s.device.as_ref()));
        // The device the patient used most before the change, tried after it and refused, without getting in within
        // the hour (someone who mistypes, or types the new password, gets in at the next try): the patient locked
        // out of their own login. Nobody signs in on the phone they have replaced, and an old tablet left with the
        // old password is not their main device.
        // With no use before the change in the look-back, the device the change was made on stands in: whoever
        // changed the password there knows it.
        let used_most = before
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(d, _)| *d);
        let main_before = used_most.unwrap_or(change.device.as_ref());
        let refused: Vec<i64> = ctx
            .failed_logins
            .get(p.nhs)
            .into_iter()
            .flatten()
            .filter(|(t, d)| {
                *t > at
                    && d.as_str() == main_before
                    && !p
                        .sessions
                        .iter()
                        .any(|s| *s.device == **d && s.start >= *t && s.start <= t + HOUR)
            })
            .map(|(t, _)| *t)
            .collect();
        // A new phone used the way the patient used the old one (their sections, their hours) after a reset is
        // most likely their own: it still counts, at `own_phone_factor`. So is a new device that keeps the holder's
        // hours and now and then manages their care (their second device, set up with a reset password, though the
        // model does not count it among theirs), and a new device that takes over from the old ones without reading
        // the way a watcher does (a replacement phone, set up with a new password). None of these holds once the old
        // one has been refused.
        // Its visits that read the record (the reset itself reads nothing, and may come at any hour).
        let visits: Vec<&Session> = sessions.iter().copied().filter(|s| s.reads > 0).collect();
        let at_holders_hours = visits
            .iter()
            .all(|s| !p.baseline.foreign_hour(ctx, s.start));
        let keeps_hours = at_holders_hours
            && new_devices.iter().all(|d| {
                p.baseline
                    .devices
                    .get(*d)
                    .is_some_and(|u| u.holder_sessions > 0)
            });
        // A new device that takes over from the old ones but keeps other times of day than the patient did before
        // the change, beyond chance: people keep their rhythm when they change phones. This too outweighs the signs
        // of a new phone of their own. (Alongside the old phone, other hours are what a second device is for.)
        let minutes = |s: &&Session| ctx.minute_of_day(s.start);
        let earlier: Vec<u32> = p
            .sessions
            .iter()
            .filter(|s| s.start < at - HOUR && counts(ctx, s))
            .map(|s| minutes(&s))
            .collect();
        let later: Vec<u32> = sessions.iter().map(minutes).collect();
        let hours_moved = locked_out
            && earlier.len() >= MIN_VISITS_EACH
            && later.len() >= MIN_VISITS_EACH
            && different_hours(&earlier, &later, MIN_SHIFT_MINUTES) <= 1.0 / MOVED_ODDS;
        // A new device used only over the connections the patient's own devices use at home, or reading only at the
        // hours the patient keeps, no more often than the patient's phone, which goes on being used, over at least
        // the recent window's length since the change: a second device of theirs, set up with a reset password.
        // Someone who has taken the login over reads on it more than the patient does, or from elsewhere at hours of
        // their own. In the first days after a change the two look alike, and the finding stands until the weeks tell
        // them apart.
        let old_after = p
            .sessions
            .iter()
            .filter(|s| {
                s.start > at
                    && s.reads > 0
                    && before.contains_key(s.device.as_ref())
                    && counts(ctx, s)
            })
            .count();
        let home_only = sessions.iter().all(|s| {
            s.ip.as_deref()
                .is_some_and(|ip| p.baseline.ips.contains(ip))
        });
        let weeks_of_use = ctx.end - at >= i64::from(ctx.cfg.recent_days) * DAY;
        let second_device = weeks_of_use
            && (home_only || at_holders_hours)
            && !locked_out
            && refused.is_empty()
            && visits.len() <= old_after;
        let own_phone = !hours_moved
            && (keeps_hours
                || second_device
                || new_devices.iter().all(|d| p.baseline.is_holders(d)));
        let prying_use = new_devices
            .iter()
            .find(|d| p.baseline.reads_like_watcher(d))
            .and_then(|d| p.baseline.devices.get(*d));
        let prying = prying_use.is_some();
        let replacement = locked_out && !prying && !hours_moved;
        let mut score = (cfg.base_score
            + if sessions.len() > 2 { 5.0 } else { 0.0 }
            + if !refused.is_empty() || (locked_out && prying && !own_phone) {
                cfg.locked_out_score
            } else {
                0.0
            })
        .min(cfg.max_score);
        if refused.is_empty() && (own_phone || replacement) {
            score *= cfg.own_phone_factor;
        }
        let what = match change.account_change.as_deref() {
            Some("change_password") => "password",
            _ => "contact details",
        };
        let explanation = format!(
            "The account's {what} {} changed on {}, and {} later a device never seen on this record before ({}) \
             started using it ({} since). {}Someone may have taken over the patient's login.",
            if what == "password" { "was" } else { "were" },
            ctx.when(at),
            if delay_h < 1 { "less than an hour".to_string() } else { format!("{delay_h} hours") },
            short_device(&first.device),
            times(sessions.len()),
            if let Some(t) = refused.first() {
                format!(
                    "Since then the device {} tried to sign in and was refused ({}), and did not get in: the patient \
                     may be locked out of their own login. ",
                    if used_most.is_some() {
                        "the patient used most before the change"
                    } else {
                        "the change was made on"
                    },
                    ctx.when(*t)
                )
            } else if hours_moved {
                format!(
                    "It keeps other times of day than the patient did before the change ({}, against {}): people keep \
                     their rhythm when they change phones. ",
                    clock_range(&later),
                    clock_range(&earlier),
                )
            } else if let (true, Some(u)) = (locked_out, prying_use) {
                format!(
                    "The devices the patient used before the change have not been used since. {}. ",
                    watcher_reading(u)
                )
            } else if locked_out {
                "The devices the patient used before the change have not been used since: this may simply be a new \
                 phone. "
                    .to_string()
            } else {
                String::new()
            },
        );
        out.push(Finding::new(
            p.nhs,
            ID,
            score,
            &sessions,
            Some(&first.device),
            explanation,
        ));
    }
    out
}
