//! `monitoring_cadence`: checking far above the patient's own pace, or machine-regular polling.

use std::collections::{BTreeMap, BTreeSet};

use super::{counts, EvidenceKind, Needs, RuleMeta};
use crate::detect::baseline::WATCHER_SHARE;
use crate::detect::{short_device, Context, Finding, PatientView, Session};

pub const ID: &str = "monitoring_cadence";
const DAY: f64 = 86_400_000_000.0;

pub const META: RuleMeta = RuleMeta {
    id: ID,
    title: "Checked far more often, or on a schedule",
    severity: "medium",
    detects: "The record is opened many times more often than this patient's own pace before, or at intervals so \
              regular (every few hours, or every day at the same minute) that a person rarely keeps them, or by a \
              device that is not the patient's at one time of day on ten days or more, with days skipped, only to \
              read.",
    benign_lookalikes: &[
        "a patient waiting anxiously for a result (a burst, but irregular: scores on pace only)",
        "a night-shift worker or anyone with a steady routine (people are not regular to the minute)",
    ],
    guide: "Look at who could be checking this often and why. Regular polling can be an app or a person checking on \
            the patient. Talk to the patient alone about who can use their login.",
    kind: EvidenceKind::Device,
    needs: Needs::Nothing,
};

/// The longest run of sessions spaced by one period (within `tol(period)`), among periods from ten minutes to a day
/// and a half. Ordinary sessions mixed in do not break it: each session only needs a successor one period later.
/// Returns the period and the indices of the sessions in the run.
///
/// A period is first guessed from two sessions near each other, and a guess a few minutes off would let the chain
/// drift out of its tolerance after a few steps (a twice-daily check at 09:40 and 21:40, first seen at 09:33 and
/// 21:41); so each chain's period is fitted again to its own first and last sessions, and the chain followed again,
/// until it stops growing.
pub fn regular_chain(starts: &[i64], tol: impl Fn(i64) -> i64) -> Option<(i64, Vec<usize>)> {
    debug_assert!(starts.is_sorted(), "session starts in time order");
    const MIN: i64 = 600_000_000;
    const MAX: i64 = 36 * 3_600_000_000;
    /// Refits of one guessed period.
    const REFITS: usize = 3;
    let mut best: Option<(i64, Vec<usize>)> = None;
    let mut tried: Vec<i64> = Vec::new();
    for i in 0..starts.len() {
        for j in i + 1..starts.len().min(i + 4) {
            let guess = starts[j] - starts[i];
            if !(MIN..=MAX).contains(&guess)
                || tried.iter().any(|p| (p - guess).abs() <= tol(guess))
            {
                continue;
            }
            tried.push(guess);
            let mut period = guess;
            let mut found: Option<Vec<usize>> = None;
            for _ in 0..=REFITS {
                let chain = longest_chain(starts, period, tol(period));
                if chain.len() <= found.as_ref().map_or(1, Vec::len) {
                    break;
                }
                let (first, last) = (starts[chain[0]], starts[chain[chain.len() - 1]]);
                let fitted = (last - first) / (chain.len() as i64 - 1);
                if chain.len() > best.as_ref().map_or(1, |b| b.1.len()) {
                    best = Some((period, chain.clone()));
                }
                found = Some(chain);
                if fitted == period || !(MIN..=MAX).contains(&fitted) {
                    break;
                }
                period = fitted;
                tried.push(period);
            }
        }
    }
    best
}

/// The longest chain of sessions each `period` (within `tol`) after the one before, among chains that start at a
/// session with no predecessor; the first such chain (by its first session) when several are as long. `starts` is in
/// time order.
///
/// Each session's successor is the first session at or after `start + period - tol`, if it is at most
/// `start + period + tol` and comes after the session itself. The bound only grows with the session, so one sweep
/// finds every successor, and each chain's length is one more than its successor's: linear in the sessions for each
/// period tried, where following every chain from its start with a binary search per step was not (this ran for
/// every period guessed on every device of every patient). A successor must come later in the list, so a tolerance
/// as wide as the period (allowed by the configuration) cannot make a chain loop back on itself.
fn longest_chain(starts: &[i64], period: i64, tol: i64) -> Vec<usize> {
    let n = starts.len();
    let mut successor: Vec<Option<usize>> = vec![None; n];
    let mut has_pred = vec![false; n];
    let mut from = 0;
    for k in 0..n {
        let target = starts[k] + period;
        while from < n && starts[from] < target - tol {
            from += 1;
        }
        let next = from.max(k + 1);
        if next < n && starts[next] <= target + tol {
            successor[k] = Some(next);
            has_pred[next] = true;
        }
    }
    let mut length = vec![1usize; n];
    for k in (0..n).rev() {
        if let Some(next) = successor[k] {
            length[k] = 1 + length[next];
        }
    }
    let mut first: Option<usize> = None;
    for k in (0..n).filter(|k| !has_pred[*k]) {
        if first.is_none_or(|b| length[k] > length[b]) {
            first = Some(k);
        }
    }
    let mut chain = Vec::new();
    let mut at = first;
    while let Some(k) = at {
        chain.push(k);
        at = successor[k];
    }
    chain
}

/// The device's largest set of visits within `tolerance` of one local time of day (around midnight too) that reads the
/// way a watcher does: no booking, order or message, and at least [`WATCHER_SHARE`] of the visits reading nothing the
/// holder manages care with (a watcher glances at appointments now and then). With the time of day it is centred on
/// (minutes after midnight); `None` if there is none.
fn clock_slot<'a>(
    ctx: &Context,
    list: &[&'a Session],
    tolerance: i64,
) -> Option<(i64, Vec<&'a Session>)> {
    const DAY_MINUTES: i64 = 1440;
    let tol = tolerance / 60_000_000;
    let minute = |s: &Session| i64::from(ctx.minute_of_day(s.start));
    let minutes: Vec<i64> = list.iter().map(|s| minute(s)).collect();
    // Visits, watcher-like visits and visits that book or order, per minute of the day, summed over two days so that
    // a band across midnight is one run: each anchor's band is then two lookups, not a pass over the device's visits
    // (a polling app can leave thousands).
    let mut per_minute = vec![[0usize; 3]; DAY_MINUTES as usize];
    for (s, m) in list.iter().zip(&minutes) {
        let c = &mut per_minute[*m as usize];
        c[0] += 1;
        c[1] += usize::from(s.watcher_like());
        c[2] += usize::from(s.owner_actions > 0);
    }
    let mut running = vec![[0usize; 3]; 2 * DAY_MINUTES as usize + 1];
    for i in 0..2 * DAY_MINUTES as usize {
        let c = per_minute[i % DAY_MINUTES as usize];
        running[i + 1] = [
            running[i][0] + c[0],
            running[i][1] + c[1],
            running[i][2] + c[2],
        ];
    }
    // A band `tol` either side of `m0`: minutes m0 - tol to m0 + tol, or the whole day once that is 24 hours or more.
    let band_of = |m0: i64| -> [usize; 3] {
        if 2 * tol + 1 >= DAY_MINUTES {
            return running[DAY_MINUTES as usize];
        }
        let from = (m0 - tol).rem_euclid(DAY_MINUTES) as usize;
        let to = from + (2 * tol + 1) as usize;
        let (a, b) = (running[from], running[to]);
        [b[0] - a[0], b[1] - a[1], b[2] - a[2]]
    };
    let in_band = |m0: i64, m: i64| {
        let d = (m - m0).rem_euclid(DAY_MINUTES);
        d.min(DAY_MINUTES - d) <= tol
    };
    let mut best: Option<(i64, usize)> = None;
    for m0 in &minutes {
        let [visits, prying, owner] = band_of(*m0);
        let reads_like_watcher = owner == 0 && prying as f64 >= WATCHER_SHARE * visits as f64;
        if reads_like_watcher && visits > best.map_or(0, |b| b.1) {
            best = Some((*m0, visits));
        }
    }
    best.map(|(m0, _)| {
        let band = list
            .iter()
            .zip(&minutes)
            .filter(|(_, m)| in_band(m0, **m))
            .map(|(s, _)| *s)
            .collect();
        (m0, band)
    })
}

pub fn detect(ctx: &Context, p: &PatientView) -> Vec<Finding> {
    let cfg = &ctx.cfg.monitoring_cadence;
    if !cfg.enabled {
        return Vec::new();
    }
    let reading = |s: &&Session| s.reads > 0 && counts(ctx, s);
    let recent: Vec<&Session> = p.recent(ctx).filter(reading).collect();
    let mut reasons = Vec::new();
    let mut score: f64 = 0.0;
    let mut evidence: Vec<&Session> = Vec::new();
    let mut device = None;

    // Machine-regular polling from one device, over the whole look-back.
    let by_device: BTreeMap<&str, Vec<&Session>> = super::by_device(p, |s| reading(&s));
    for (d, list) in &by_device {
        let starts: Vec<i64> = list.iter().map(|s| s.start).collect();
        let tolerance = |period: i64| {
            (cfg.tolerance_minutes * 60_000_000).max((period as f64 * cfg.tolerance_share) as i64)
        };
        let Some((mut period, mut chain)) = regular_chain(&starts, tolerance) else {
            continue;
        };
        // A daily check kept to the minute (within `exact_daily_minutes` from one day to the next, not the share of a
        // day a daily habit is allowed), only reading: people are not that regular, however short the run.
        let mut minute_exact = false;
        if period >= 12 * 3_600_000_000 && chain.len() < cfg.min_regular_days {
            let exact = regular_chain(&starts, |_| cfg.exact_daily_minutes * 60_000_000).filter(
                |(p, c)| {
                    *p >= 20 * 3_600_000_000
                        && c.len() >= cfg.exact_daily_sessions
                        && c.iter().all(|i| list[*i].watcher_like())
                },
            );
            if let Some((p2, c2)) = exact {
                (period, chain, minute_exact) = (p2, c2, true);
            }
        }
        // A daily habit is more common than a machine's hourly poll: a long period needs a longer run, unless the
        // daily check keeps hours the holder does not, and only reads: then it is not the holder's habit.
        let daily = period >= 12 * 3_600_000_000;
        let needed = if daily {
            cfg.min_regular_days
        } else {
            cfg.min_regular_sessions
        };
        let foreign_schedule = daily
            && chain.len() >= cfg.min_regular_sessions
            && p.baseline.has_history(ctx)
            && chain
                .iter()
                .all(|i| list[*i].watcher_like() && p.baseline.foreign_hour(ctx, list[*i].start));
        if chain.len() < needed && !foreign_schedule && !minute_exact {
            continue;
        }
        let hours = period as f64 / 3_600_000_000.0;
        let every = if (23.0..=25.0).contains(&hours) {
            "day at the same time".to_string()
        } else {
            format!("{hours:.1} hours")
        };
        let (points, how, why) = if chain.len() >= needed || minute_exact {
            (
                cfg.regular_score,
                "at regular intervals",
                "a regularity people rarely keep: an app, or someone checking on a schedule.",
            )
        } else {
            (
                cfg.foreign_schedule_score,
                "on a schedule",
                "at hours the patient does not otherwise keep, each time only to read: someone checking on a \
                 schedule of their own.",
            )
        };
        score = score.max(points);
        reasons.push(format!(
            "It was opened {} times from {} {how} (every {every}, to within {} minutes), {why}",
            chain.len(),
            short_device(d),
            tolerance(period) / 60_000_000,
        ));
        evidence.extend(chain.iter().map(|i| list[*i]));
        device = Some(*d);
    }

    // The same time of day on many days, with days skipped (a daily chain breaks at the first day missed): a
    // device that is not the holder's, reading and nothing else, at one clock time. People's own visits wander by
    // hours; a check fitted around someone else's day keeps its slot.
    let day_tolerance = cfg.slot_minutes * 60_000_000;
    for (d, list) in &by_device {
        if device == Some(*d) || p.baseline.is_holders(d) || !crate::detect::is_known_device(d) {
            continue;
        }
        let Some((centre, band)) = clock_slot(ctx, list, day_tolerance) else {
            continue;
        };
        let days: BTreeSet<_> = band
            .iter()
            .map(|s| ctx.local(s.start).date_naive())
            .collect();
        if days.len() < cfg.min_regular_days || 3 * band.len() < 2 * list.len() {
            continue;
        }
        score = score.max(cfg.foreign_schedule_score);
        let at = format!("{:02}:{:02}", centre / 60, centre % 60);
        reasons.push(format!(
            "It was opened on {} different days from {} at about the same time of day (within {} minutes of \
             {at}), with days skipped between, each time only to read: {} of its {} visits. Someone may be \
             checking on a schedule of their own.",
            days.len(),
            short_device(d),
            day_tolerance / 60_000_000,
            band.len(),
            list.len(),
        ));
        evidence.extend(band.iter().copied());
        device = Some(*d);
    }

    // Pace far above the patient's own.
    if p.baseline.enough && !recent.is_empty() {
        let days = ((ctx.end - ctx.recent_start) as f64 / DAY).max(1.0);
        let rate = recent.len() as f64 / days;
        let before = p.baseline.daily_rate.max(0.05);
        if rate >= cfg.min_rate_per_day && rate >= cfg.rate_ratio * before {
            score = if score > 0.0 {
                (score + 10.0).min(cfg.max_score)
            } else {
                cfg.rate_score
            };
            reasons.push(format!(
                "It was opened {} times in the last {} days (about {rate:.1} a day), against about {:.1} a week \
                 before.",
                recent.len(),
                ctx.cfg.recent_days,
                before * 7.0
            ));
            if evidence.is_empty() {
                evidence.extend(recent.iter().copied());
            }
        }
    }
    if reasons.is_empty() {
        return Vec::new();
    }
    evidence.sort_by_key(|s| s.start);

    evidence.dedup_by_key(|s| s.start);
    vec![Finding::new(
        p.nhs,
        ID,
        score.min(cfg.max_score),
        &evidence,
        device,
        reasons.join(" "),
    )]
}

#[cfg(test)]
mod tests {
    use super::{longest_chain, regular_chain};
    use rand::{Rng, SeedableRng};

    const MIN: i64 = 60_000_000;

    #[test]
    fn a_schedule_is_found_among_ordinary_sessions() {
        // Every 4 hours (within a minute) from t=0, with irregular sessions mixed in.
        let mut starts: Vec<i64> = (0..8).map(|k| k * 240 * MIN + (k % 3) * MIN).collect();
        starts.extend([37 * MIN, 301 * MIN, 777 * MIN, 1201 * MIN]);
        starts.sort();
        let (period, chain) = regular_chain(&starts, |_| 3 * MIN).unwrap();
        assert!((period - 240 * MIN).abs() <= 3 * MIN);
        assert_eq!(chain.len(), 8);
    }

    #[test]
    fn a_schedule_first_seen_a_few_minutes_off_its_period_is_followed_to_its_end() {
        // Twice a day at about 09:40 and 21:40 for eight days (minutes after the first visit): the first two visits are
        // 12 h 08 min apart, the schedule's period 12 h to within a few minutes.
        let at = |day: i64, h: i64, m: i64| (day * 1440 + h * 60 + m) * MIN;
        let mut starts = vec![at(0, 9, 33), at(0, 21, 41)];
        for (day, (am, pm)) in [
            (38, 41),
            (39, 36),
            (38, 39),
            (38, 34),
            (41, 41),
            (40, 39),
            (40, 40),
        ]
        .into_iter()
        .enumerate()
        {
            let day = day as i64 + 1;
            starts.extend([at(day, 9, am), at(day, 21, pm)]);
        }
        let tol = |period: i64| (3 * MIN).max((period as f64 * 0.015) as i64);
        let (period, chain) = regular_chain(&starts, tol).unwrap();
        assert_eq!(chain.len(), starts.len(), "{period}");
        assert!((period - 720 * MIN).abs() <= 5 * MIN, "{}", period / MIN);
    }

    #[test]
    fn irregular_use_has_no_long_chain() {
        let starts: Vec<i64> = [0, 95, 410, 1300, 1750, 2990, 4100, 5200, 7400]
            .iter()
            .map(|m| m * MIN)
            .collect();
        let best = regular_chain(&starts, |_| 3 * MIN)
            .map(|b| b.1.len())
            .unwrap_or(0);
        assert!(best <= 3, "{best}");
    }

    /// The chain search as first written: from every session with no predecessor, follow successors found by binary
    /// search, and keep the first longest chain.
    fn longest_chain_by_following(starts: &[i64], period: i64, tol: i64) -> Vec<usize> {
        let successor = |k: usize| {
            let target = starts[k] + period;
            let from = starts.partition_point(|t| *t < target - tol);
            (from < starts.len() && starts[from] <= target + tol).then_some(from)
        };
        let mut has_pred = vec![false; starts.len()];
        for k in 0..starts.len() {
            if let Some(n) = successor(k) {
                has_pred[n] = true;
            }
        }
        let mut best = Vec::new();
        for k in (0..starts.len()).filter(|k| !has_pred[*k]) {
            let mut chain = vec![k];
            let mut at = k;
            while let Some(n) = successor(at) {
                chain.push(n);
                at = n;
            }
            if chain.len() > best.len() {
                best = chain;
            }
        }
        best
    }

    #[test]
    fn the_longest_chain_in_one_sweep_is_the_chain_found_by_following_every_start() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261206);
        for case in 0..3000 {
            let n = rng.gen_range(0..60);
            // Sessions on a grid of minutes, some on a schedule and some at random, with repeated times.
            let period = rng.gen_range(10..600) * MIN;
            let tol = rng.gen_range(0..period / MIN) * MIN;
            let mut starts: Vec<i64> = (0..n)
                .map(|k| {
                    if rng.gen_bool(0.5) {
                        k as i64 * period + rng.gen_range(-3..=3) * MIN
                    } else {
                        rng.gen_range(0..(n as i64 + 1) * period / MIN) * MIN
                    }
                })
                .collect();
            starts.sort();
            assert_eq!(
                longest_chain(&starts, period, tol),
                longest_chain_by_following(&starts, period, tol),
                "case {case}: period {period}, tolerance {tol}, starts {starts:?}"
            );
        }
    }

    #[test]
    fn a_tolerance_as_wide_as_the_period_ends() {
        // Allowed by the configuration (tolerance_minutes up to a day): each session's successor must still come later.
        let starts: Vec<i64> = [0, 5, 12, 20, 31, 45].iter().map(|m| m * MIN).collect();
        let chain = longest_chain(&starts, 10 * MIN, 60 * MIN);
        assert_eq!(chain, vec![0, 1, 2, 3, 4, 5]);
        let found = regular_chain(&starts, |_| 24 * 60 * MIN);
        assert!(found.is_some_and(|(_, c)| c.len() == starts.len()));
    }
}
