//! `access_despite_restriction`: after a 104 code, the record still watched from somewhere other than the
//! patient's own devices and hours.

use std::collections::BTreeSet;

use super::{
    counts, list_times, not_the_holder, only_device, times, EvidenceKind, Needs, RuleMeta,
};
use crate::detect::stats::{binomial_tail, hypergeometric_upper_tail};
use crate::detect::{short_device, Context, Finding, PatientView, Session};

pub const ID: &str = "access_despite_restriction";
const DAY: i64 = 86_400_000_000;
/// A device first used on the record this many days either side of a 104 code came with the concern.
const NEWCOMER_DAYS: i64 = 30;
/// Night-time visits crowd into the time since the concern arose (from [`NEWCOMER_DAYS`] before the code) more than
/// chance would put them there less than once in this many (a hypergeometric test against all the record's visits).
const LATE_NIGHTS_ODDS: f64 = 20.0;
/// Visits on the record before the concern arose, needed to say that its nights were not read before...
const LATE_NIGHTS_HISTORY: usize = 8;
/// ...and at most one of them, or this share, at night: a device that read at night before, however it took over
/// since, was already someone's habit; one late evening is not.
const LATE_NIGHTS_BEFORE_SHARE: f64 = 0.1;
/// Visits since the concern arose at hours the record's history before it never shows, more of them than that
/// history's own rate of new hours allows by chance less than once in this many.
const NEW_HOURS_ODDS: f64 = 200.0;

pub const META: RuleMeta = RuleMeta {
    id: ID,
    title: "Watched after a 104 restriction",
    severity: "high",
    detects: "A 104 code (enhanced review indicated) that no 106 code has lifted is on the record, and the record is \
              still being read from a device that is not the patient's own, or from their own device at hours they \
              do not keep, whether that device first appeared before the restriction or after it. A device that \
              came to the record within 30 days either side of the code, after other devices, and has never booked, \
              ordered or messaged is not taken for the patient's own here, however it reads. Nor is night-time reading on the \
              patient's own device that began with the concern: the record's nights hardly ever read before the 30 \
              days before the code, and read since, beyond chance; nor reading at any hour the record was never \
              opened at, nor within an hour of, before those 30 days, twice or more since the code and beyond the \
              record's own rate of new hours.",
    benign_lookalikes: &[
        "the patient carrying on with their own phone (not flagged: the 104 code stops new entries, not the patient)",
        "a formal proxy within their recorded access (not flagged)",
        "a new phone of the patient's that arrived around the code (flagged until it books, orders or messages, or \
         is more than 30 days from the code)",
        "the patient reading at night themself (not flagged when they read at night before the concern arose too)",
        "the patient reading at a new hour now and then, or an hour off their usual ones (not flagged: within the \
         record's own rate of new hours)",
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
        // Night-time reading on the holder's own device that came with the concern: the record's nights were hardly
        // read before the weeks around the code, and since then they are. The model of the holder's hours learns
        // from every visit of a light user, the late ones too, so it can take a new night routine for the holder's.
        let late_nights = late_nights(ctx, p, r.from);
        // Reading at hours the record had never been opened at before the concern arose, at any time of day: someone
        // else's routine that came with the concern, which the model of the holder's hours (shrunk towards the
        // practice's) need not call foreign.
        let new_hours = new_hours(ctx, p, r.from);
        let at_new_hours = |s: &Session| {
            new_hours.is_some_and(|h| h[ctx.hour(s.start) as usize]) && own_read(ctx, s)
        };
        // The holder's own continued use is expected: only reading that is not the holder's counts.
        let watched: Vec<&Session> = p
            .sessions
            .iter()
            .filter(|s| s.start >= r.from && s.start < until)
            .filter(|s| {
                not_the_holder(ctx, p, s).is_some()
                    || (s.reads > 0 && counts(ctx, s) && newcomer(&s.device))
                    || (late_nights && own_night_read(ctx, s))
                    || at_new_hours(s)
            })
            .collect();
        let late: Vec<&Session> = watched
            .iter()
            .copied()
            .filter(|s| {
                late_nights && not_the_holder(ctx, p, s).is_none() && own_night_read(ctx, s)
            })
            .collect();
        let new: Vec<&Session> = watched
            .iter()
            .copied()
            .filter(|s| not_the_holder(ctx, p, s).is_none() && at_new_hours(s))
            .collect();
        // The holder's own device at foreign hours needs more than one visit to count here; another device does not.
        let other_device = watched
            .iter()
            .any(|s| !p.baseline.is_holders(&s.device) || newcomer(&s.device));
        let newcomers: BTreeSet<&str> = watched
            .iter()
            .map(|s| s.device.as_ref())
            .filter(|d| p.baseline.is_holders(d) && newcomer(d))
            .collect();
        if watched.is_empty() || (!other_device && watched.len() < 2) {
            continue;
        }
        let devices: BTreeSet<&str> = watched.iter().map(|s| s.device.as_ref()).collect();
        let mut score = (cfg.base_score + cfg.per_session * (watched.len().min(8) as f64 - 1.0))
            .min(cfg.max_score);
        if !other_device {
            score *= cfg.own_device_factor;
        }
        let explanation = format!(
            "A 104 code has restricted this patient's online access since {}{}, yet the record was opened {} since \
             then ({}) from {} that {} not the patient's own, or at hours the patient does not keep ({}). The 104 code \
             does not stop someone who has the login from reading what was already visible.{}{}{}",
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
            if late.is_empty() {
                String::new()
            } else {
                format!(
                    " {} of these visits {} in the middle of the night, when the record was hardly ever read before \
                     {}: night-time reading that began with the concern.",
                    late.len(),
                    if late.len() == 1 { "was" } else { "were" },
                    ctx.when(r.from - NEWCOMER_DAYS * DAY),
                )
            },
            if new.is_empty() {
                String::new()
            } else {
                format!(
                    " {} of these visits {} at hours the record was never opened at, nor within an hour of, before {}: a reading routine \
                     that began with the concern.",
                    new.len(),
                    if new.len() == 1 { "was" } else { "were" },
                    ctx.when(r.from - NEWCOMER_DAYS * DAY),
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

/// A read that manages no care, by someone the run counts.
fn own_read(ctx: &Context, s: &Session) -> bool {
    s.reads > 0 && s.owner_actions == 0 && counts(ctx, s)
}

/// A read in the middle of the night (22:00-06:00) that manages no care, by someone the run counts.
fn own_night_read(ctx: &Context, s: &Session) -> bool {
    own_read(ctx, s) && !(6..22).contains(&ctx.hour(s.start))
}

/// The local hours the record was never opened at, nor within an hour of, before the concern arose ([`NEWCOMER_DAYS`] before the code
/// `from`), when reading at them since crowds in beyond that history's own rate of new hours ([`NEW_HOURS_ODDS`];
/// Good-Turing: the hours seen once, as a share of the visits, one of each added) after a history of at least
/// [`LATE_NIGHTS_HISTORY`] visits, and at least twice since the code.
fn new_hours(ctx: &Context, p: &PatientView, from: i64) -> Option<[bool; 24]> {
    let since = from - NEWCOMER_DAYS * DAY;
    let history = super::HourHistory::before(ctx, p, since);
    if history.visits < LATE_NIGHTS_HISTORY {
        return None;
    }
    let (seen, rate) = (history.seen, history.new_hour_rate());
    // An hour next to one the history shows is not new: a person's evening varies by an hour either way.
    let new: [bool; 24] = std::array::from_fn(|h| (0..3).all(|d| seen[(h + 23 + d) % 24] == 0));
    // Reads at new hours from `t` on.
    let fresh_from = |t: i64| {
        p.sessions
            .iter()
            .filter(|s| s.start >= t && new[ctx.hour(s.start) as usize] && own_read(ctx, s))
            .count()
    };
    let lately = p.sessions.iter().filter(|s| s.start >= since).count();
    (fresh_from(from) >= 2
        && binomial_tail(lately, fresh_from(since), rate) <= 1.0 / NEW_HOURS_ODDS)
        .then_some(new)
}

/// The record's night-time reading (see [`own_night_read`]) crowds into the time since the concern arose
/// ([`NEWCOMER_DAYS`] before the code `from`) beyond chance ([`LATE_NIGHTS_ODDS`]), after a history of at least
/// [`LATE_NIGHTS_HISTORY`] visits before it that hardly read at night (once, or [`LATE_NIGHTS_BEFORE_SHARE`]), and at least
/// twice since the code: someone else's nights, not the holder's habit.
fn late_nights(ctx: &Context, p: &PatientView, from: i64) -> bool {
    let since = from - NEWCOMER_DAYS * DAY;
    let before = p.sessions.iter().filter(|s| s.start < since).count();
    let nights_before = p
        .sessions
        .iter()
        .filter(|s| s.start < since && own_night_read(ctx, s))
        .count();
    if before < LATE_NIGHTS_HISTORY
        || (nights_before > 1 && nights_before as f64 > LATE_NIGHTS_BEFORE_SHARE * before as f64)
    {
        return false;
    }
    let nights = p.sessions.iter().filter(|s| own_night_read(ctx, s)).count();
    let lately = p.sessions.iter().filter(|s| s.start >= since).count();
    let lately_nights = p
        .sessions
        .iter()
        .filter(|s| s.start >= since && own_night_read(ctx, s))
        .count();
    let after_code = p
        .sessions
        .iter()
        .filter(|s| s.start >= from && own_night_read(ctx, s))
        .count();
    after_code >= 2
        && hypergeometric_upper_tail(p.sessions.len(), nights, lately, lately_nights)
            <= 1.0 / LATE_NIGHTS_ODDS
}
