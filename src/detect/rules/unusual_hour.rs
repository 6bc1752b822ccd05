//! `unusual_hour`: the record opened at hours this patient almost never uses.

use std::collections::BTreeSet;

use super::{counts, list_times, times, EvidenceKind, Needs, RuleMeta};
use crate::detect::baseline::{MIN_CORE_SESSIONS, WATCHER_MARGIN, WATCHER_SHARE};
use crate::detect::stats::{binomial_tail, hypergeometric_upper_tail, surprise};
use crate::detect::{Context, Finding, PatientView, Session};

pub const ID: &str = "unusual_hour";
const HOUR: i64 = 3_600_000_000;
/// A second routine on a record (see `detect`) needs this many foreign-hour visits on this many days...
const RUN_SESSIONS: usize = 5;
const RUN_DAYS: usize = 4;
/// A routine that began lately needs only this many days: its visits crowd into the last days, and those are few.
const NEW_RUN_DAYS: usize = 3;
/// ...its two tests together passed by chance less than once in this many records squared (so one far beyond chance
/// can carry the other)...
const RUN_ODDS: f64 = 200.0;
/// ...and each less than once in this many.
const EACH_ODDS: f64 = 20.0;
/// A routine at hours the record had never been opened at before the recent window needs this many visits: the hours'
/// newness is a stronger witness than the model's foreign hours, which the practice's hours shrink.
const NEW_HOURS_SESSIONS: usize = 4;

pub const META: RuleMeta = RuleMeta {
    id: ID,
    title: "Opened at hours the patient does not use",
    severity: "low",
    detects: "Sessions on several days at local hours the account holder does not keep, on any device (their own \
              included), that manage no care, not explained by a new entry or an appointment just before. The \
              holder's hours are learned from the sessions in which they manage their own care, and from their core \
              hours, so foreign sessions never become usual however long they have recurred. The middle of the night \
              (00:00-05:00) is not the holder's at all when their devices never show them awake then: no booking, \
              order or message, and no night visit from anywhere the phone is not by day. Hours alone score low, \
              except a run of night-time visits while the holder sleeps, a long read-only routine, or a read-only \
              routine that began lately (its visits crowded into the last `recent_days` far beyond the record's \
              other use, at hours the holder's own history hardly ever shows, on three days or more; or four visits \
              or more at hours the record had never been opened at before `recent_days`, beyond the history's own \
              rate of new hours, reading what its history seldom read). For a light \
              user, whose every visit teaches the model, the last `recent_days`' visits that manage no care do not.",
    benign_lookalikes: &[
        "a night-shift worker at their usual night hours (not flagged: those hours are usual for them, their phone \
         is out at work with them, or they manage their care at night)",
        "a patient who reads their record in bed at night and never books, orders or messages then (their nights \
         count as hours they do not keep: low, unless the visits read only what a watcher reads, run on several \
         nights and make up a good share of all use)",
        "a patient abroad in another time zone (scores lower: own device, new addresses)",
        "a patient reading a new result as soon as it appears (not counted: explained by the entry)",
        "a patient whose routine moved lately (a new job, a new baby): not a routine that began lately when their \
         other visits stopped as the new hours began (moved, not added)",
    ],
    guide: "Compare the times with the patient's routine (shift work, a new baby, travel). Night-time use of the \
            patient's own phone can mean someone takes the phone while they sleep. Ask the patient, alone, whether \
            they used the app at those times.",
    kind: EvidenceKind::Device,
    needs: Needs::Nothing,
};

pub fn detect(ctx: &Context, p: &PatientView) -> Vec<Finding> {
    let cfg = &ctx.cfg.unusual_hour;
    if !cfg.enabled || !p.baseline.enough {
        return Vec::new();
    }
    let window = cfg.explained_within_hours * HOUR;
    let explained = |s: &Session| {
        let after = |ts: Option<&Vec<i64>>| {
            ts.is_some_and(|ts| ts.iter().any(|t| s.start >= *t && s.start <= t + window))
        };
        after(ctx.entry_times.get(p.nhs)) || after(ctx.appointment_ends.get(p.nhs))
    };
    // The holder books, orders or writes to the practice in the small hours themself: they are awake then, and a
    // run of night visits is not someone else's while they sleep.
    let holder_manages_care_at_night = p
        .sessions
        .iter()
        .any(|s| s.owner_actions > 0 && ctx.hour(s.start) < 6 && p.baseline.is_holders(&s.device));
    // The local hours the record was opened at before the recent window, and how often: a routine that began lately
    // may keep hours the model of the holder, shrunk towards the practice's evenings, does not call foreign, yet
    // that this record had never been opened at.
    let hours_before = super::HourHistory::before(ctx, p, ctx.recent_start);
    let (history_hours, history) = (hours_before.seen, hours_before.visits);
    // How the record was read before the recent window: the share of its reading visits that read nothing the holder
    // manages care with. Not selected by hour, so visits at new hours can be tested against it directly.
    let (history_reads, history_prying) = p
        .sessions
        .iter()
        .filter(|s| s.start < ctx.recent_start && s.reads > 0)
        .fold((0usize, 0usize), |(n, k), s| {
            (n + 1, k + usize::from(s.watcher_like()))
        });
    let history_prying = if history_reads == 0 {
        p.baseline.holder_prying
    } else {
        history_prying as f64 / history_reads as f64
    };
    // The chance that a visit of the holder's falls at an hour their history never shows.
    let new_hour_share = hours_before.new_hour_rate();
    let fresh = |s: &Session| {
        history as f64 >= MIN_CORE_SESSIONS
            && s.start >= ctx.recent_start
            && history_hours[ctx.hour(s.start) as usize] == 0
    };
    let record_recent = p
        .sessions
        .iter()
        .filter(|s| s.start >= ctx.recent_start)
        .count();
    let span = p.baseline.span_days.max(1.0);
    let window_share = (f64::from(ctx.cfg.recent_days) / span).min(1.0);
    // Added, not moved: the holder's other visits go on in the recent window at about their pace over the history. A
    // holder whose whole routine moved (a new job, a new baby) stops their old hours as the new ones begin; fewer of
    // their other visits in the window than chance allows once in [`EACH_ODDS`] says so.
    let moved = |these: usize, these_recent: usize| {
        let others = p.sessions.len() - these;
        others > 0
            && 1.0 - binomial_tail(others, record_recent - these_recent + 1, window_share)
                <= 1.0 / EACH_ODDS
    };
    // Visits over addresses the holder's devices do not use at home hours.
    let abroad = |visits: &[&Session]| {
        visits
            .iter()
            .filter(|s| {
                s.ip.as_deref()
                    .is_some_and(|ip| !p.baseline.ips.contains(ip))
            })
            .count()
    };
    let mut out = Vec::new();
    for (device, candidates) in super::by_device(p, |s| {
        counts(ctx, s)
            && s.reads > 0
            && s.owner_actions == 0
            && (p.baseline.foreign_hour(ctx, s.start) || fresh(s))
            && !(explained(s) && p.baseline.is_holders(&s.device))
    }) {
        // A routine at hours new to the record: read-only visits in the recent window at hours the record's history
        // never shows, more of them than the history's own rate of new hours explains (against all the record's
        // visits in the window), and more of them reading nothing the holder manages care with than the record's
        // visits before the window did: the two together by chance less than once in [`RUN_ODDS`] squared, each
        // less than once in [`EACH_ODDS`]; [`NEW_HOURS_SESSIONS`] of them at least, on [`NEW_RUN_DAYS`] days or
        // more, mostly from the holder's addresses, added to the holder's routine, not in place of it. The model's
        // foreign hours are shrunk towards the practice's (most people read in the evening), so a light user's
        // evenings are not foreign to it; this record's own history is the witness here.
        let new_hours: Vec<&Session> = candidates.iter().copied().filter(|s| fresh(s)).collect();
        let new_hours_days: BTreeSet<_> = new_hours
            .iter()
            .map(|s| ctx.local(s.start).date_naive())
            .collect();
        let new_hours_prying = new_hours.iter().filter(|s| s.watcher_like()).count();
        let new_hours_odds = binomial_tail(record_recent, new_hours.len(), new_hour_share);
        let new_hours_content = surprise(new_hours.len(), new_hours_prying, history_prying);
        let at_new_hours = new_hours.len() >= NEW_HOURS_SESSIONS
            && new_hours_days.len() >= NEW_RUN_DAYS
            && new_hours_prying as f64 >= WATCHER_SHARE * new_hours.len() as f64
            && 2 * abroad(&new_hours) < new_hours.len()
            && !moved(new_hours.len(), new_hours.len())
            && new_hours_odds.max(new_hours_content) <= 1.0 / EACH_ODDS
            && new_hours_odds * new_hours_content <= 1.0 / (RUN_ODDS * RUN_ODDS);
        let rare: Vec<&Session> = candidates
            .into_iter()
            .filter(|s| p.baseline.foreign_hour(ctx, s.start) || (at_new_hours && fresh(s)))
            .collect();
        let days: BTreeSet<_> = rare
            .iter()
            .map(|s| ctx.local(s.start).date_naive())
            .collect();
        if rare.len() < cfg.min_sessions || days.len() < cfg.min_days {
            continue;
        }
        let own = p.baseline.is_holders(device);
        // The holder's own device over addresses it does not use at home hours: most likely the patient away.
        let abroad = abroad(&rare);
        let away = own && abroad == rare.len();
        let counted = rare.len().min(cfg.min_sessions + 6);
        // Strong enough alone only in the small hours while the holder sleeps (the guidance's "someone takes the
        // phone while they sleep"), recurring on a good share of all visits: a person's own evenings and early
        // mornings vary too much to flag on hours alone.
        let night = rare.iter().filter(|s| ctx.hour(s.start) < 6).count();
        let prying = rare.iter().filter(|s| s.watcher_like()).count();
        let share = |n: usize| n as f64 >= cfg.minority_share * p.sessions.len() as f64;
        // Where the export cannot tell devices apart, hours are nearly all there is: a run of foreign visits that
        // makes up a good share of all use may stand alone too.
        // Not when the holder books, orders or writes to the practice in the small hours: awake then themself, as a
        // night-shift worker is, and the export has nothing else to tell their nights from someone else's.
        let blind = !crate::detect::is_known_device(device)
            && rare.len() >= 5
            && share(rare.len())
            && !holder_manages_care_at_night;
        // The night run must read the way a watcher does: a night-shift worker manages their care at night too.
        let reads_otherwise = prying as f64 >= WATCHER_SHARE * rare.len() as f64;
        let night_run = 5 * night >= 3 * rare.len()
            && night >= 4
            && share(night)
            && reads_otherwise
            && !holder_manages_care_at_night;
        // A second routine, at any hour: more visits at hours the holder does not keep than the holder's own model
        // allows, and more of them reading nothing the holder manages care with than this device's visits as a
        // whole do: the two together by chance less than once in [`RUN_ODDS`] squared, each less than once in
        // [`EACH_ODDS`] (a routine far beyond chance in its hours needs less from its reading, and the other way
        // round). The holder's strays are few and read the way the holder reads; a night-shift worker manages care
        // at their hours, so those hours are theirs.
        let hours_odds = binomial_tail(p.sessions.len(), rare.len(), p.baseline.foreign_share(ctx));
        // Against every visit on this device, these included: the visits at the holder's own hours are the ones
        // that taught the model those hours, so they manage care more often by selection, and comparing with them
        // alone would make any holder's own non-care visits look foreign.
        let device_prying = p
            .baseline
            .devices
            .get(device)
            .map_or(p.baseline.holder_prying, |u| u.watcher_share());
        let content_odds = surprise(rare.len(), prying, device_prying);
        // Mostly over addresses the holder does not use at home hours: travel is as likely (a watcher with the
        // patient's phone is mostly at home).
        let second_routine = 2 * abroad < rare.len()
            && rare.len() >= RUN_SESSIONS
            && days.len() >= RUN_DAYS
            && hours_odds.max(content_odds) <= 1.0 / EACH_ODDS
            && hours_odds * content_odds <= 1.0 / (RUN_ODDS * RUN_ODDS);
        // A routine that began lately, at any hour: the foreign visits crowd into the recent window far beyond
        // the share of all the record's visits that fall there (Fisher's exact test against the whole record, so a
        // holder who simply uses the app more this fortnight raises the bar too). A holder's strays are spread over
        // their history; someone who has lately started taking the phone is not. "New" is one witness here, with
        // the hours (against the holder's own rate, below) or the reading: the two together by chance less than once
        // in [`RUN_ODDS`] squared, each less than once in [`EACH_ODDS`]; and the visits must read the way a watcher
        // does, as a night run must. [`NEW_RUN_DAYS`] days are enough.
        let recent: Vec<&&Session> = rare
            .iter()
            .filter(|s| s.start >= ctx.recent_start)
            .collect();
        let recent_days: BTreeSet<_> = recent
            .iter()
            .map(|s| ctx.local(s.start).date_naive())
            .collect();
        let recency_odds =
            hypergeometric_upper_tail(p.sessions.len(), record_recent, rare.len(), recent.len());
        // Whether the hours are new is a question about this person: their own rate of visits at these hours,
        // with a light prior, not the practice's (where half the patients may read in the mornings).
        let own_hours_odds = binomial_tail(
            p.sessions.len(),
            rare.len(),
            p.baseline.own_foreign_share(ctx),
        );
        let new_routine = at_new_hours
            || (!moved(rare.len(), recent.len())
                && 2 * abroad < rare.len()
                && recent.len() >= RUN_SESSIONS
                && recent_days.len() >= NEW_RUN_DAYS
                && reads_otherwise
                && recency_odds.max(own_hours_odds.min(content_odds)) <= 1.0 / EACH_ODDS
                && recency_odds * own_hours_odds.min(content_odds) <= 1.0 / (RUN_ODDS * RUN_ODDS));
        // Any of them may stand alone.
        let stands_alone = night_run || second_routine || new_routine;
        let cap = if stands_alone || blind {
            cfg.night_max_score
        } else {
            cfg.max_score
        };
        let mut score = cfg.base_score + cfg.per_session * (counted - cfg.min_sessions) as f64;
        if reads_otherwise {
            score += 5.0;
        }
        if cap > cfg.max_score {
            score += 10.0;
        }
        score = score.min(cap);
        if (rare.len() as f64) < cfg.minority_share * p.sessions.len() as f64
            && !(second_routine || new_routine)
        {
            score = score.min(cfg.minority_max_score);
        }
        if away {
            score *= cfg.away_from_home_factor;
        }
        // Visits that read the way the holder reads are most likely the holder at other hours (a second device kept
        // for the evenings, a late night): weak, unless they are a night run or a second routine. They must read distinctly more like a
        // watcher than the holder does, on this device as a whole or in these visits.
        let prying_beyond_holder =
            prying as f64 / rare.len() as f64 - p.baseline.holder_prying >= WATCHER_MARGIN;
        if !stands_alone && !prying_beyond_holder && !p.baseline.reads_like_watcher(device) {
            score = score.min(cfg.holders_reading_max_score);
        }
        let began_lately = if at_new_hours {
            format!(
                " {} of these visits came in the last {} days at hours the record had never been opened at in the \
                 {} visits before: a routine that began lately.",
                new_hours.len(),
                ctx.cfg.recent_days,
                history
            )
        } else if new_routine {
            format!(
                " {} of these visits came in the last {} days, which hold only {} of the record's {} visits: a \
                 routine that began lately.",
                recent.len(),
                ctx.cfg.recent_days,
                record_recent,
                p.sessions.len()
            )
        } else {
            String::new()
        };
        let explanation = format!(
            "The record was opened {} on {} different days at hours the patient does not keep ({}), only to read \
             it. The patient uses it {}. {}{}{}",
            times(rare.len()),
            days.len(),
            list_times(ctx, &rare),
            p.baseline.usual_hours(ctx),
            if !crate::detect::is_known_device(device) {
                "The export cannot tell devices apart: it may have been the patient's own phone in someone else's \
                 hands, or another device."
            } else if own {
                // Say what fits the hours: the small hours, the day, or both.
                match (night, rare.len() - night) {
                    (_, 0) => "It was the patient's own device: someone may be using their phone while they sleep.",
                    (0, _) => "It was the patient's own device: someone may be using their phone while they are away \
                               from it.",
                    _ => "It was the patient's own device: someone may be using their phone while they sleep or are \
                          away from it.",
                }
            } else {
                "It was a device that is not the patient's own."
            },
            if away { " The connections were new addresses, which fits travel abroad." } else { "" },
            began_lately,
        );
        out.push(Finding::new(
            p.nhs,
            ID,
            score,
            &rare,
            Some(device),
            explanation,
        ));
    }
    out
}
