//! Who the account holder is, in their use of the record: which of a patient's devices are theirs, the hours they
//! keep, their addresses and pace; and, across patients, whose records each device has been used on.
//!
//! The model reads the whole look-back, not only the time before the recent window: a watcher who was there before
//! the window opened is in that history too, and must not be learned as the holder. So the holder is recognised by
//! what they do, not by who came first or who is most frequent:
//! - a device is the holder's when it manages the patient's care: books or cancels appointments, orders repeat
//!   prescriptions, sends messages, or reads the sections a watcher has little use for ([`CARE_SECTIONS`]). A
//!   device that only ever reads is not recognised as the holder's, however long it has been there, and nor, by its
//!   reading, is one timed to the sensitive entries as they appear when the main device is not
//!   ([`chases_sensitive_entries`]);
//! - the holder's hours are learned from their own sessions of that kind on their own devices, shrunk towards the
//!   practice's hours, with a core that a recurring minority cannot move and a check of how often each hour's
//!   visits manage care (see [`PatientBaseline::foreign_hour`]);
//! - the middle of the night is the holder's only when their devices show them awake then: an order, a booking or a
//!   message, or a night visit from an address their devices never use by day (see
//!   [`PatientBaseline::asleep_at_night`]). Reading is what someone who takes the phone while its owner sleeps does
//!   too, and when they read more often than the owner does, their nights would otherwise be learned as the owner's.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;

use super::context::Context;
use super::model::*;
use super::stats::{
    binomial_tail, hypergeometric_lower_tail, hypergeometric_upper_tail, poisson_binomial_tail,
    surprise, MIN_RATE,
};

const DAY: i64 = 86_400_000_000;

/// One device's use on one patient's record.
#[derive(Debug, Clone, Default)]
pub struct DeviceUse {
    /// Sessions over the whole look-back.
    pub sessions: usize,
    pub baseline_sessions: usize,
    pub first: i64,
    /// The start of its last session.
    pub last: i64,
    /// Sessions that manage the patient's care (see [`Session::holder_like`]).
    pub holder_sessions: usize,
    /// Sessions with a booking, an order or a message.
    pub owner_action_sessions: usize,
    /// Sessions that only read the sections where disclosures are found.
    pub watcher_sessions: usize,
    /// Reads of [`CARE_SECTIONS`] and of the sections where disclosures are found, over the sessions that read.
    pub care_reads: u32,
    pub prying_reads: u32,
    /// Sessions that read without booking, ordering or writing, by how many reads they made (the last counts that
    /// many or more): a short visit misses the care sections more often, whoever makes it.
    pub reading_by_length: [u16; READ_LENGTHS],
    /// Local days with a session.
    pub days: usize,
    /// Sessions not made by a formal proxy within a recorded link (in the run's device histories).
    pub non_proxy_sessions: usize,
    /// Addresses the device used on this record, the first [`MAX_IPS`] distinct ones (in the run's device
    /// histories). A short list, not a set: most devices use one or two addresses on a record, and a run keeps one
    /// of these for every device and record.
    pub ips: Vec<Text>,
}

impl DeviceUse {
    /// Share of the device's reading sessions that only read what a watcher reads.
    /// Sessions that read the record, managing care or not.
    pub fn reading_sessions(&self) -> usize {
        self.holder_sessions + self.watcher_sessions
    }

    pub fn watcher_share(&self) -> f64 {
        let reading = self.reading_sessions();
        if reading == 0 {
            0.0
        } else {
            self.watcher_sessions as f64 / reading as f64
        }
    }
}

/// Addresses kept per device and record: enough to recognise a household's connection, bounded for a device seen
/// from hundreds of mobile addresses.
pub const MAX_IPS: usize = 16;

/// Whose records a device has been used on: (NHS number, use), in NHS number order once pass one is done (see
/// [`finish_device_histories`]).
///
/// A sorted list rather than a map: nearly every device is used on one record, and a run keeps one of these for every
/// device in the practice (a million at 100M events). A `BTreeMap` allocates a node for eleven entries however few it
/// holds, about 1.3 KB for a device on one record; the list holds what it holds.
#[derive(Debug, Clone, Default)]
pub struct DeviceHistory {
    pub on: Vec<(Text, DeviceUse)>,
}

/// Puts every device's records in NHS number order, once all batches have been added: the order the rules read them
/// in, whatever order the batches came in.
pub fn finish_device_histories(devices: &mut FastMap<String, DeviceHistory>) {
    for h in devices.values_mut() {
        h.on.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        h.on.shrink_to_fit();
    }
}

/// Adds a batch of patients' sessions to the run's device histories. Real device ids are tracked; a user agent alone
/// stands for many people's devices, so without an id it is tracked only together with the address it was seen from
/// (see [`agent_at_address`]).
pub fn add_device_histories(
    out: &mut FastMap<String, DeviceHistory>,
    sessions: &BTreeMap<String, Vec<Session>>,
    recent_start: i64,
    is_formal_proxy: impl Fn(&Session) -> bool,
) {
    for list in sessions.values() {
        for s in list {
            // A real device id; without one, a user agent from one address (see `agent_at_address`).
            let key = if is_identified_device(&s.device) {
                s.device.to_string()
            } else if let (true, Some(ip)) = (s.device.starts_with(UA_KEY), &s.ip) {
                agent_at_address(&s.device, ip)
            } else {
                continue;
            };
            let on = &mut out.entry(key).or_default().on;
            // A patient's sessions all come before the next patient's, and each patient is in one batch only: a
            // record already on this device's list is its last.
            if on.last().is_none_or(|(n, _)| *n != s.nhs_number) {
                on.push((
                    s.nhs_number.clone(),
                    DeviceUse {
                        first: s.start,
                        ..Default::default()
                    },
                ));
            }
            let Some((_, u)) = on.last_mut() else {
                continue;
            };
            count_session(u, s, recent_start);
            if !is_formal_proxy(s) {
                u.non_proxy_sessions += 1;
            }
            if let Some(ip) = &s.ip {
                if u.ips.len() < MAX_IPS && !u.ips.contains(ip) {
                    u.ips.push(ip.clone());
                }
            }
        }
    }
}

fn count_session(u: &mut DeviceUse, s: &Session, recent_start: i64) {
    u.sessions += 1;
    u.baseline_sessions += usize::from(s.start < recent_start);
    u.first = u.first.min(s.start);
    u.last = u.last.max(s.start);
    u.holder_sessions += usize::from(s.holder_like());
    u.owner_action_sessions += usize::from(s.owner_actions > 0);
    u.watcher_sessions += usize::from(s.watcher_like());
    u.care_reads += s.broad_reads;
    u.prying_reads += s.prying_reads;
    let reads = (s.broad_reads + s.prying_reads) as usize;
    if s.owner_actions == 0 && reads > 0 {
        let i = reads.min(READ_LENGTHS) - 1;
        u.reading_by_length[i] = u.reading_by_length[i].saturating_add(1);
    }
}

/// The share of the holder's sessions their core hours hold.
pub const CORE_SHARE: f64 = 0.8;
/// The middle of the night, local hours: when most people sleep.
pub const NIGHT_HOURS: std::ops::Range<u32> = 0..5;
/// Sessions that manage care needed before the holder's hours are learned from them alone.
pub const MIN_CARE_SESSIONS: f64 = 6.0;
/// Visits (in an hour and its neighbours) before that hour's share of care is judged.
pub const MIN_LOW_CARE_VISITS: f64 = 4.0;
/// An hour whose visits manage care at under this fraction of the rate at the holder's other hours (or overall, if
/// higher) is not the holder's...
pub const LOW_CARE_RATIO: f64 = 0.35;
/// ...when chance would also put so few care visits in that hour less than once in this many (Fisher's exact test).
pub const LOW_CARE_ODDS: f64 = 50.0;
/// A device reads like a watcher when at least this share of its reading sessions only read prying sections...
pub const WATCHER_SHARE: f64 = 0.8;
/// ...and this much more than the holder's own main device does.
pub const WATCHER_MARGIN: f64 = 0.35;
/// ...and its visits read that way more often than the holder's reading would by chance less than once in this many
/// devices: a margin alone lets a few visits of the holder's own tablet read "like a watcher" by luck.
pub const WATCHER_ODDS: f64 = 50.0;
/// ...and Fisher's exact test of its visits against the holder's main device's says the two would differ this much by
/// chance less than once in this many: the holder's rate is itself learned, from a few visits for a light user.
pub const WATCHER_VISITS_ODDS: f64 = 20.0;
/// A device that reads care sections in two visits or more is the holder's unless it reads like a watcher more than
/// this beyond the holder's own main device (and beyond one visit in two).
pub const HOLDER_MIX_MARGIN: f64 = 0.1;
/// Visit lengths (reads in a session) told apart when a device's reading is weighed against the holder's: longer
/// visits are counted with the longest.
pub const READ_LENGTHS: usize = 8;
/// Reading sessions a device needs before it is judged to read like a watcher.
pub const MIN_READS_TO_JUDGE: usize = 4;
/// Sessions needed before core hours are learned.
pub const MIN_CORE_SESSIONS: f64 = 8.0;
/// The least chance the holder's model gives one of their visits of falling at an hour they do not keep.
pub const MIN_FOREIGN_SHARE: f64 = 0.05;

/// A visit this soon after a sensitive entry became visible reads it at once (microseconds: two hours)...
pub const CHASE_WINDOW: i64 = 2 * 3_600_000_000;
/// ...and a device that read at least this many sensitive entries at once...
pub const MIN_CHASED: usize = 2;
/// ...more often than its own pace of visits would by chance less than once in this many chases them.
pub const CHASE_ODDS: f64 = 50.0;

/// The visits (`starts`, in time order) read sensitive entries (`visible`) at once ([`CHASE_WINDOW`]) at least
/// [`MIN_CHASED`] times, more often than visits at their own pace, at random, would less than once in
/// [`CHASE_ODDS`]: they are timed to what appears on the record. Only entries from shortly before the first visit to
/// the last count, and the pace is the visits over that span (at least a day).
pub fn chases_sensitive_entries(starts: &[i64], visible: &[i64]) -> bool {
    let (Some(&first), Some(&last)) = (starts.first(), starts.last()) else {
        return false;
    };
    let during: Vec<i64> = visible
        .iter()
        .copied()
        .filter(|t| *t >= first - CHASE_WINDOW && *t <= last)
        .collect();
    let chased = during
        .iter()
        .filter(|t| {
            let i = starts.partition_point(|s| s < t);
            starts.get(i).is_some_and(|s| *s <= **t + CHASE_WINDOW)
        })
        .count();
    if chased < MIN_CHASED {
        return false;
    }
    let span = ((last - first) as f64 / DAY as f64).max(1.0);
    let per_window = starts.len() as f64 / span * CHASE_WINDOW as f64 / DAY as f64;
    let p = 1.0 - (-per_window).exp();
    binomial_tail(during.len(), chased, p) <= 1.0 / CHASE_ODDS
}

/// A run of local hours, from `start` for `len` hours (wrapping past midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourArc {
    pub start: u32,
    pub len: u32,
}

impl HourArc {
    /// Hours from the arc to `hour` (0 inside it).
    pub fn distance(&self, hour: u32) -> u32 {
        let after = (hour + 24 - self.start) % 24;
        if after < self.len {
            return 0;
        }
        let past_end = after + 1 - self.len;
        let before_start = 24 - after;
        past_end.min(before_start)
    }
}

/// Sessions per local hour.
pub fn hour_counts(ctx: &Context, sessions: &[&Session]) -> [f64; 24] {
    let mut c = [0.0; 24];
    for s in sessions {
        c[ctx.hour(s.start) as usize] += 1.0;
    }
    c
}

/// The shortest run of hours holding at least [`CORE_SHARE`] of the sessions (the earliest start on ties); `None`
/// with fewer than [`MIN_CORE_SESSIONS`].
pub fn core_arc(counts: &[f64; 24]) -> Option<HourArc> {
    if counts.iter().sum::<f64>() < MIN_CORE_SESSIONS {
        return None;
    }
    shortest_arc(counts)
}

/// The shortest run of hours holding at least [`CORE_SHARE`] of the sessions counted per hour (the earliest start on
/// ties), however few; `None` with none.
pub fn shortest_arc(counts: &[f64; 24]) -> Option<HourArc> {
    let total: f64 = counts.iter().sum();
    if total <= 0.0 {
        return None;
    }
    (1..=24u32).find_map(|len| {
        (0..24u32)
            .find(|start| {
                (0..len)
                    .map(|i| counts[((start + i) % 24) as usize])
                    .sum::<f64>()
                    >= CORE_SHARE * total - 1e-9
            })
            .map(|start| HourArc { start, len })
    })
}

/// Shares of sessions per local hour, each session counting half in each neighbouring hour as well.
pub fn smoothed_share(counts: &[f64; 24]) -> [f64; 24] {
    let mut smooth = [0.0; 24];
    for (h, v) in smooth.iter_mut().enumerate() {
        *v = counts[h] + 0.5 * (counts[(h + 23) % 24] + counts[(h + 1) % 24]);
    }
    let total: f64 = smooth.iter().sum();
    if total > 0.0 {
        for v in smooth.iter_mut() {
            *v /= total;
        }
    }
    smooth
}

/// Adds a batch's sessions that manage the patient's care to the practice's counts per local hour.
pub fn add_practice_hours(
    counts: &mut [f64; 24],
    sessions: &BTreeMap<String, Vec<Session>>,
    hour: impl Fn(i64) -> u32,
) {
    for s in sessions.values().flatten().filter(|s| s.holder_like()) {
        counts[hour(s.start) as usize] += 1.0;
    }
}

/// The practice's share of sessions per local hour (flat when there are none).
pub fn practice_hours(counts: &[f64; 24]) -> [f64; 24] {
    if counts.iter().sum::<f64>() == 0.0 {
        return [1.0 / 24.0; 24];
    }
    smoothed_share(counts)
}

/// The account holder as their use of the record shows them, over the whole look-back.
#[derive(Debug, Clone, Default)]
pub struct PatientBaseline {
    /// Sessions on the record over the look-back.
    pub sessions: usize,
    /// Sessions before the recent window.
    pub baseline_sessions: usize,
    /// Enough history to judge hours and pace (see `min_baseline_sessions`, `min_baseline_days`).
    pub enough: bool,
    pub devices: FastMap<String, DeviceUse>,
    /// The devices that manage the patient's care: the holder's own.
    pub holder_devices: FastSet<String>,
    /// The holder's main device: the one they carry.
    pub primary_device: Option<String>,
    /// The holder's sessions per local hour (the evidence the hours are learned from).
    pub hour_counts: [f64; 24],
    /// Share of the holder's sessions per local hour, smoothed and shrunk towards the practice's.
    pub hour_share: [f64; 24],
    /// The holder's core hours (with at least [`MIN_CORE_SESSIONS`] sessions to learn them from).
    pub core: Option<HourArc>,
    /// Hours (with their neighbours) whose visits on the holder's devices manage care at under
    /// [`LOW_CARE_RATIO`] of the rate at the holder's other hours, beyond chance ([`LOW_CARE_ODDS`]).
    pub low_care: [bool; 24],
    /// The holder is asleep in the middle of the night (see [`NIGHT_HOURS`]): their devices are never seen awake then.
    pub asleep_at_night: bool,
    /// Addresses the holder's devices use at the holder's usual hours.
    pub ips: FastSet<String>,
    /// The address the holder's devices use most: the household connection.
    pub home_ip: Option<String>,
    /// How much the holder themself reads like a watcher: the share of their main device's reading sessions that
    /// only read consultations, problems, results, letters or documents. Someone who mostly follows their results
    /// reads that way too, so a device reading that way is only telling against a holder who does not.
    pub holder_prying: f64,
    /// Sessions per day before the recent window.
    pub daily_rate: f64,
    /// Days from the first session to the end of the look-back.
    pub span_days: f64,
    /// The export says what its reads read (see [`Context::read_sections`]).
    pub read_sections: bool,
}

impl PatientBaseline {
    pub fn build(ctx: &Context, sessions: &[Session]) -> PatientBaseline {
        let mut b = PatientBaseline {
            read_sections: ctx.read_sections,
            ..Default::default()
        };
        let mut days: FastMap<&str, BTreeSet<NaiveDate>> = FastMap::default();
        for s in sessions {
            let u = b
                .devices
                .entry(s.device.to_string())
                .or_insert_with(|| DeviceUse {
                    first: s.start,
                    ..Default::default()
                });
            count_session(u, s, ctx.recent_start);
            days.entry(&s.device)
                .or_default()
                .insert(ctx.local(s.start).date_naive());
            b.sessions += 1;
            b.baseline_sessions += usize::from(s.start < ctx.recent_start);
        }
        for (d, u) in b.devices.iter_mut() {
            u.days = days.get(d.as_str()).map_or(0, BTreeSet::len);
        }
        b.find_holder(
            ctx,
            sessions.first().map(|s| s.nhs_number.as_ref()),
            sessions,
        );
        b.learn_hours(ctx, sessions);
        let first = sessions.iter().map(|s| s.start).min();
        b.span_days = first.map_or(0.0, |f| (ctx.end - f) as f64 / DAY as f64);
        let baseline_span = first.map_or(0.0, |f| (ctx.recent_start - f) as f64 / DAY as f64);
        b.daily_rate = if baseline_span > 0.0 {
            b.baseline_sessions as f64 / baseline_span
        } else {
            0.0
        };
        b.enough = b.sessions >= ctx.cfg.min_baseline_sessions
            && b.span_days >= ctx.cfg.min_baseline_days as f64;
        b
    }

    /// The holder's devices. The main one manages the patient's care most (an order or booking counts three
    /// times a read of the holder's sections); a device that is another patient's own counts a third unless it is
    /// used here for managing care too. With no such use at all, the device used on most days is the holder's.
    fn find_holder(&mut self, ctx: &Context, nhs: Option<&str>, sessions: &[Session]) {
        let weight = |d: &str, u: &DeviceUse| -> f64 {
            let care = 3.0 * u.owner_action_sessions as f64 + u.holder_sessions as f64;
            let elsewhere = nhs.is_some_and(|n| ctx.someone_elses_device(n, d).is_some());
            if elsewhere && u.watcher_share() > 0.5 {
                care / 3.0
            } else {
                care
            }
        };
        // Between devices that manage care equally (most often, not at all), the one a person carries: a phone is
        // personal, a tablet or computer stands in a household, and may be someone else's.
        let household: FastSet<&str> = sessions
            .iter()
            .filter(|s| is_household_class(s.user_agent.as_deref()))
            .map(|s| s.device.as_ref())
            .collect();
        self.primary_device = self
            .devices
            .iter()
            .map(|(d, u)| {
                let personal = !household.contains(d.as_str());
                (weight(d, u), personal, u.days, u.sessions, d)
            })
            .max_by(|a, c| {
                a.0.total_cmp(&c.0)
                    .then(a.1.cmp(&c.1))
                    .then(a.2.cmp(&c.2))
                    .then(a.3.cmp(&c.3))
                    .then(c.4.cmp(a.4))
            })
            .map(|x| x.4.clone());
        // Other devices are the holder's too when they manage the patient's care: a booking, an order or a message;
        // care reads in at least two visits, reading no more like a watcher than the holder's main device does (a
        // household tablet both partners use for their own care); or care reads in some of their visits at the
        // holder's own hours (a tablet at home in the evening); or a device that took over from the main one, at the
        // holder's hours and from where the holder is (a new phone).
        let primary: Vec<&Session> = sessions
            .iter()
            .filter(|s| Some(&*s.device) == self.primary_device.as_deref())
            .collect();
        self.holder_prying = self
            .primary_device
            .as_ref()
            .and_then(|d| self.devices.get(d))
            .map_or(0.0, DeviceUse::watcher_share);
        let arc = core_arc(&hour_counts(ctx, &primary));
        let holder_prying = self.holder_prying;
        // A device that takes over from the main one (first used after the main one's last use, three times or
        // more) at the holder's hours, from where the holder is, is the holder's next phone, whatever it reads,
        // unless it is another patient's own.
        let primary_last = primary.iter().map(|s| s.start).max();
        // Per device, in one pass: its visits in time order, how many of them fall in the main device's core hours,
        // and whether it has addresses at all and one the main device used.
        #[derive(Default)]
        struct Placed {
            starts: Vec<i64>,
            at_core: usize,
            any_ip: bool,
            shared_ip: bool,
        }
        let primary_ips: FastSet<&str> = primary.iter().filter_map(|s| s.ip.as_deref()).collect();
        let mut placed: FastMap<&str, Placed> = FastMap::default();
        for s in sessions {
            let e = placed.entry(s.device.as_ref()).or_default();
            e.starts.push(s.start);
            e.at_core += usize::from(arc.is_none_or(|a| a.distance(ctx.hour(s.start)) == 0));
            if let Some(ip) = s.ip.as_deref() {
                e.any_ip = true;
                e.shared_ip |= primary_ips.contains(ip);
            }
        }
        for e in placed.values_mut() {
            e.starts.sort_unstable();
        }
        // A new phone goes where its owner goes: some visit from an address the main device used (home), unless the
        // export carries no addresses for it.
        let where_the_holder_is = |d: &str| placed.get(d).is_none_or(|e| !e.any_ip || e.shared_ip);
        // A device timed to the sensitive entries as they appear, when the main device is not, is not the holder's
        // for what it reads: the care sections it opens are what a watcher reads too (when the patient will be at the
        // surgery). Only booking, ordering or writing makes it theirs.
        let mut visible: Vec<i64> = nhs
            .and_then(|n| ctx.sensitive.get(n))
            .map(|es| es.iter().map(|e| e.visible_from).collect())
            .unwrap_or_default();
        visible.sort_unstable();
        let chases = |d: &str| {
            !visible.is_empty()
                && placed
                    .get(d)
                    .is_some_and(|e| chases_sensitive_entries(&e.starts, &visible))
        };
        let holder_chases = self.primary_device.as_deref().is_some_and(chases);
        let timed_to_entries = |d: &str| !holder_chases && chases(d);
        self.holder_devices = self
            .devices
            .iter()
            .filter(|(d, u)| {
                let (n, core) = placed
                    .get(d.as_str())
                    .map_or((0, 0), |e| (e.starts.len(), e.at_core));
                let by_what_it_reads = (u.holder_sessions >= 2
                    && u.watcher_share() <= (holder_prying + HOLDER_MIX_MARGIN).max(0.5))
                    || (u.holder_sessions > 0 && u.watcher_share() <= 0.7 && 10 * core >= 7 * n)
                    || (arc.is_some()
                        && primary_last.is_some_and(|last| u.first > last)
                        && u.sessions >= 3
                        && 10 * core >= 7 * n
                        && where_the_holder_is(d)
                        && nhs.is_none_or(|n| ctx.someone_elses_device(n, d).is_none()));
                Some(*d) == self.primary_device.as_ref()
                    || (u.owner_action_sessions > 0 && u.watcher_share() < 0.75)
                    || (by_what_it_reads && !timed_to_entries(d))
            })
            .map(|(d, _)| d.clone())
            .collect();
    }

    /// The holder's hours, from the sessions on the holder's devices in which they manage their care (every session
    /// on those devices when there are fewer than [`MIN_CARE_SESSIONS`], save the recent window's that manage no
    /// care outside the core hours of the rest, given [`MIN_CORE_SESSIONS`] of the rest): the share per local hour
    /// (smoothed, shrunk towards the practice's hours by `hour_prior_sessions` pseudo-sessions, so a patient with
    /// little history is judged by what is usual for everyone), and the core: the shortest run of hours holding at least
    /// [`CORE_SHARE`] of those sessions. A recurring minority of foreign sessions raises the share of its hours,
    /// but it cannot move the core, so it stays foreign however often it recurs.
    fn learn_hours(&mut self, ctx: &Context, sessions: &[Session]) {
        let own = |s: &&Session| self.holder_devices.contains(&*s.device);
        let all: Vec<&Session> = sessions.iter().filter(own).collect();
        let cared: Vec<&Session> = all.iter().copied().filter(|s| s.holder_like()).collect();
        let (n, care) = (hour_counts(ctx, &all), hour_counts(ctx, &cared));
        let (n_all, care_all): (f64, f64) = (n.iter().sum(), care.iter().sum());
        self.hour_counts = if care_all >= MIN_CARE_SESSIONS {
            care
        } else {
            // A light user's every visit teaches the model, but not the recent window's visits that manage no care
            // at hours the history does not show: those are what the rules test against the history, and a routine
            // that began lately would otherwise teach the model its own hours. Recent visits within the history's
            // core hours teach as before. With too little history before the window, every visit counts.
            let settled = |s: &&Session| s.start < ctx.recent_start || s.holder_like();
            let history: Vec<&Session> = all.iter().copied().filter(settled).collect();
            match core_arc(&hour_counts(ctx, &history)) {
                Some(arc) => {
                    let taught: Vec<&Session> = all
                        .iter()
                        .copied()
                        .filter(|s| settled(s) || arc.distance(ctx.hour(s.start)) == 0)
                        .collect();
                    hour_counts(ctx, &taught)
                }
                None => n,
            }
        };
        self.core = core_arc(&self.hour_counts);
        // Hours whose visits manage care far less often than the holder's visits do: someone else's hours on the
        // holder's own devices, even when they are the majority of all visits. The phone's overall rate of managing
        // care is no precondition: when someone else is most of its use, that rate is theirs (until 2026-12-04 a
        // phone managing care in under a quarter of its visits was not tested at all, which hid the heaviest
        // watchers). Fisher's exact test against the other hours decides, and a holder who hardly ever manages
        // care anywhere gives it nothing to find.
        let rate = if n_all > 0.0 { care_all / n_all } else { 0.0 };
        if care_all >= MIN_CARE_SESSIONS {
            for h in 0..24 {
                let window = |c: &[f64; 24]| c[(h + 23) % 24] + c[h] + c[(h + 1) % 24];
                let (visits, cared) = (window(&n), window(&care));
                // Against the holder's other hours: when someone else's visits are the majority, the overall rate
                // is mostly theirs.
                let (rest, rest_cared) = (n_all - visits, care_all - cared);
                let other = if rest >= MIN_LOW_CARE_VISITS {
                    (rest_cared / rest).max(rate)
                } else {
                    rate
                };
                // Fewer by far, and fewer than chance would put in these hours once in [`LOW_CARE_ODDS`] (Fisher's
                // exact test of these hours against all of the holder's): a few visits of the holder's that happen
                // not to manage care do not make an hour someone else's.
                let count = |x: f64| x.round() as usize;
                self.low_care[h] = visits >= MIN_LOW_CARE_VISITS
                    && cared < visits * other * LOW_CARE_RATIO
                    && hypergeometric_lower_tail(
                        count(n_all),
                        count(care_all),
                        count(visits),
                        count(cared),
                    ) <= 1.0 / LOW_CARE_ODDS;
            }
        }
        let smooth = smoothed_share(&self.hour_counts);
        let n: f64 = self.hour_counts.iter().sum();
        let k = ctx.cfg.hour_prior_sessions;
        for (h, share) in self.hour_share.iter_mut().enumerate() {
            *share = (smooth[h] * n + ctx.practice_hours[h] * k) / (n + k).max(f64::EPSILON);
        }
        let mut ip_counts: FastMap<&str, usize> = FastMap::default();
        for s in &all {
            if let Some(ip) = &s.ip {
                *ip_counts.entry(ip).or_default() += 1;
            }
        }
        self.home_ip = ip_counts
            .into_iter()
            .max_by(|a, c| (a.1, c.0).cmp(&(c.1, a.0)))
            .map(|(ip, _)| ip.to_string());
        // Asleep at night unless the holder's devices show them awake then. Reading shows nothing: it is what someone
        // who takes the phone while its owner sleeps does too, appointments included. An order, a booking or a
        // message shows the holder awake; so does a night visit from an address their devices never use by day (at
        // work, out), since the phone of someone asleep stays where they sleep. With no visits by day there is no
        // such place to compare with, and nothing says the night is not the holder's.
        let night = |s: &Session| NIGHT_HOURS.contains(&ctx.hour(s.start));
        let day_ips: FastSet<&str> = all
            .iter()
            .filter(|s| !night(s))
            .filter_map(|s| s.ip.as_deref())
            .collect();
        let away = |s: &Session| s.ip.as_deref().is_some_and(|ip| !day_ips.contains(ip));
        let by_day = all.iter().any(|s| !night(s));
        let awake = all
            .iter()
            .any(|s| night(s) && (s.owner_actions > 0 || away(s)));
        self.asleep_at_night = by_day && !awake;
        for s in &all {
            if let Some(ip) = &s.ip {
                if !self.foreign_hour(ctx, s.start) {
                    self.ips.insert(ip.to_string());
                }
            }
        }
    }

    /// An hour the holder does not keep: almost never used (`unusual_hour.rare_share`), at least
    /// `unusual_hour.core_distance_hours` from the holder's core hours, or an hour whose visits hardly ever manage
    /// care while the holder's do.
    pub fn foreign_hour(&self, ctx: &Context, at: i64) -> bool {
        self.foreign_local_hour(ctx, ctx.hour(at))
    }

    /// [`PatientBaseline::foreign_hour`] for a local hour (0-23).
    pub fn foreign_local_hour(&self, ctx: &Context, h: u32) -> bool {
        self.hour_share[h as usize] < ctx.cfg.unusual_hour.rare_share
            || self.low_care[h as usize]
            || (self.asleep_at_night && NIGHT_HOURS.contains(&h))
            || self
                .core
                .is_some_and(|c| c.distance(h) >= ctx.cfg.unusual_hour.core_distance_hours)
    }

    /// How likely the holder's model says one of their visits falls at an hour they do not keep: the model's share
    /// of those hours (shrunk towards the practice's hours), and never below [`MIN_FOREIGN_SHARE`], since the
    /// model learns from the visits that manage care and people read at other times now and then.
    pub fn foreign_share(&self, ctx: &Context) -> f64 {
        (0..24u32)
            .filter(|h| self.foreign_local_hour(ctx, *h))
            .map(|h| self.hour_share[h as usize])
            .sum::<f64>()
            .max(MIN_FOREIGN_SHARE)
    }

    /// The holder's own rate of visits at hours they do not keep: from the visits the hours were learned from, with
    /// one visit spread over the practice's hours as the prior (not `hour_prior_sessions`: whether hours are new to
    /// this person is a question about them), never below [`MIN_FOREIGN_SHARE`].
    pub fn own_foreign_share(&self, ctx: &Context) -> f64 {
        let foreign = |h: &u32| self.foreign_local_hour(ctx, *h);
        let n: f64 = self.hour_counts.iter().sum();
        let k: f64 = (0..24u32)
            .filter(foreign)
            .map(|h| self.hour_counts[h as usize])
            .sum();
        let prior: f64 = (0..24u32)
            .filter(foreign)
            .map(|h| ctx.practice_hours[h as usize])
            .sum();
        ((k + prior) / (n + 1.0)).max(MIN_FOREIGN_SHARE)
    }

    /// Some history to compare with: at least two sessions, the first at least `min_baseline_days` before the end.
    pub fn has_history(&self, ctx: &Context) -> bool {
        self.sessions >= 2 && self.span_days >= ctx.cfg.min_baseline_days as f64
    }

    /// Never used on this record before the recent window.
    pub fn is_new(&self, device: &str) -> bool {
        self.devices
            .get(device)
            .is_none_or(|u| u.baseline_sessions == 0)
    }

    /// A device that reads the way a watcher does, distinctly more so than the holder: it (nearly) only reads the
    /// sections where disclosures are found, and the holder's own main device does not; and it never books, orders
    /// or writes to the practice for the patient.
    pub fn reads_like_watcher(&self, device: &str) -> bool {
        // Where the export does not say what was read, every read is "the record in general": how a device reads
        // tells nothing.
        if !self.read_sections {
            return false;
        }
        self.devices.get(device).is_some_and(|u| {
            let share = u.watcher_share();
            // A handful of visits says little about how a device reads: a new phone's first three visits may all
            // happen to be results.
            if u.reading_sessions() < MIN_READS_TO_JUDGE {
                return false;
            }
            // A device that books, orders or writes to the practice for the patient is managing their care, whatever
            // else it reads.
            if u.owner_action_sessions > 0 {
                return false;
            }
            // Beyond chance twice over: against the holder's rate as learned, and (Fisher's exact test) against
            // the holder's main device's own visits, whose rate is itself learned from few visits when the holder
            // is a light user.
            let (n, k) = (u.reading_sessions(), u.watcher_sessions);
            let beyond_holders_visits = || {
                self.main_device_besides(device).is_none_or(|h| {
                    let (hn, hk) = (h.reading_sessions(), h.watcher_sessions);
                    hypergeometric_upper_tail(n + hn, k + hk, n, k) <= 1.0 / WATCHER_VISITS_ODDS
                })
            };
            share >= WATCHER_SHARE
                && share - self.holder_prying >= WATCHER_MARGIN
                && surprise(n, k, self.holder_prying) <= 1.0 / WATCHER_ODDS
                && beyond_holders_visits()
        })
    }

    /// A device that reads like a watcher ([`Self::reads_like_watcher`]) beyond chance visit by visit, too: a device
    /// whose visits open one or two sections misses the care sections more often than the holder's longer visits
    /// do, whoever holds it. A visit of `r` reads misses them all with chance (1 - q)^r, where q is the share of the
    /// holder's main device's reads that are of care sections, and the device's visits that missed them are
    /// tested against those chances (the Poisson binomial tail, under 1 in [`WATCHER_ODDS`]). Where nothing but its
    /// reading sets a device apart from the holder's (it keeps their hours), this is the test it must pass.
    pub fn reads_like_watcher_visit_by_visit(&self, device: &str) -> bool {
        if !self.reads_like_watcher(device) {
            return false;
        }
        let Some(u) = self.devices.get(device) else {
            return false;
        };
        let Some(h) = self.main_device_besides(device) else {
            return true;
        };
        let all = h.care_reads + h.prying_reads;
        if all == 0 {
            return true;
        }
        let q = (f64::from(h.care_reads) / f64::from(all)).clamp(MIN_RATE, 1.0 - MIN_RATE);
        let chances = u
            .reading_by_length
            .iter()
            .enumerate()
            .flat_map(|(i, &visits)| {
                std::iter::repeat_n((1.0 - q).powi(i as i32 + 1), usize::from(visits))
            });
        poisson_binomial_tail(chances, u.watcher_sessions) <= 1.0 / WATCHER_ODDS
    }

    /// The use of the holder's main device, when it is not `device`: what another device's reading is weighed
    /// against.
    fn main_device_besides(&self, device: &str) -> Option<&DeviceUse> {
        self.primary_device
            .as_deref()
            .filter(|d| *d != device)
            .and_then(|d| self.devices.get(d))
    }

    /// One of the holder's own devices.
    pub fn is_holders(&self, device: &str) -> bool {
        self.holder_devices.contains(device)
    }

    /// The patient's usual hours in words: the smallest set of the hours they keep holding most of their sessions
    /// there. The hours the model takes for someone else's are left out, however often the record was read then.
    pub fn usual_hours(&self, ctx: &Context) -> String {
        let mut hours: Vec<(usize, f64)> = self
            .hour_counts
            .iter()
            .copied()
            .enumerate()
            .filter(|(h, c)| *c > 0.0 && !self.foreign_local_hour(ctx, *h as u32))
            .collect();
        hours.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let total: f64 = hours.iter().map(|(_, c)| c).sum();
        let mut kept = Vec::new();
        let mut acc = 0.0;
        for (h, c) in hours {
            kept.push(h);
            acc += c;
            if acc >= 0.8 * total || kept.len() >= 6 {
                break;
            }
        }
        kept.sort();
        let parts: Vec<String> = kept.iter().map(|h| format!("{h:02}:00")).collect();
        if parts.is_empty() {
            "at no regular hours yet".into()
        } else {
            format!("mostly in the hours starting {}", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(nhs: &str, device: &str, start: i64, ip: &str) -> Session {
        Session {
            nhs_number: nhs.into(),
            start,
            end: start,
            device: device.into(),
            account: nhs.into(),
            role: "patient".into(),
            ip: Some(ip.into()),
            user_agent: None,
            events: 1,
            reads: 1,
            prying_reads: 1,
            broad_reads: 0,
            owner_actions: 0,
            account_change_at: None,
            account_change: None,
        }
    }

    #[test]
    fn visits_chase_sensitive_entries_only_when_more_of_them_follow_at_once_than_their_pace_explains(
    ) {
        const H: i64 = 3_600_000_000;
        // Six visits over ten days, and three sensitive entries on days 1, 5 and 8 at 10:00.
        let entries = [DAY + 10 * H, 5 * DAY + 10 * H, 8 * DAY + 10 * H];
        let spread = [0, 2 * DAY, 4 * DAY, 6 * DAY, 8 * DAY + 20 * H, 10 * DAY];
        // Two of them read within the hour of an entry (one 40 minutes after): at two visits in ten days, a visit
        // lands in a given two hours once in twenty, and two of three entries that way once in a few hundred.
        let mut timed = spread;
        timed[1] = DAY + 10 * H + H / 2;
        timed[3] = 5 * DAY + 10 * H + 2 * H / 3;
        assert!(chases_sensitive_entries(&timed, &entries));
        // The same visits at other times read none of them at once.
        assert!(!chases_sensitive_entries(&spread, &entries));
        // One entry read at once is not a pattern.
        let mut once = spread;
        once[1] = DAY + 10 * H + H / 2;
        assert!(!chases_sensitive_entries(&once, &entries));
        // However unlikely by pace: two visits in three weeks, one of them just after the only entry.
        let sparse = [DAY + 10 * H + H / 2, 20 * DAY];
        assert!(!chases_sensitive_entries(&sparse, &entries[..1]));
        // Visits every hour of the ten days read every entry at once by their pace alone.
        let hourly: Vec<i64> = (0..240).map(|h| h * H + H / 4).collect();
        assert!(!chases_sensitive_entries(&hourly, &entries));
        // Entries from before the device was first used are not ones it failed to read: ten more a month earlier
        // change nothing.
        let earlier: Vec<i64> = (0..10)
            .map(|i| -30 * DAY + i * DAY)
            .chain(entries)
            .collect();
        assert!(chases_sensitive_entries(&timed, &earlier));
    }

    fn batch(sessions: &[Session]) -> BTreeMap<String, Vec<Session>> {
        let mut out: BTreeMap<String, Vec<Session>> = BTreeMap::new();
        for s in sessions {
            out.entry(s.nhs_number.to_string())
                .or_default()
                .push(s.clone());
        }
        out
    }

    #[test]
    fn a_devices_records_are_in_nhs_number_order_whatever_order_the_batches_came_in() {
        let mut devices = FastMap::default();
        // The second batch holds the lower NHS numbers (batches are ranges in NHS number order today, but the
        // devices' records must not depend on it).
        for b in [
            batch(&[
                session("9000000019", "dev-1", 10, "a"),
                session("9000000027", "dev-1", 20, "b"),
            ]),
            batch(&[
                session("9000000001", "dev-1", 30, "c"),
                session("9000000035", "dev-1", 40, "d"),
            ]),
        ] {
            add_device_histories(&mut devices, &b, 0, |_| false);
        }
        finish_device_histories(&mut devices);
        let on: Vec<&str> = devices["dev-1"]
            .on
            .iter()
            .map(|(n, _)| n.as_ref())
            .collect();
        assert_eq!(on, ["9000000001", "9000000019", "9000000027", "9000000035"]);
    }

    #[test]
    fn a_device_keeps_each_record_once_with_its_first_distinct_addresses_up_to_the_bound() {
        let mut devices = FastMap::default();
        let mut sessions = Vec::new();
        for i in 0..(MAX_IPS as i64 + 5) {
            // Each address twice, then new ones past the bound.
            sessions.push(session(
                "9000000001",
                "dev-1",
                2 * i,
                &format!("10.0.0.{i}"),
            ));
            sessions.push(session(
                "9000000001",
                "dev-1",
                2 * i + 1,
                &format!("10.0.0.{i}"),
            ));
        }
        add_device_histories(&mut devices, &batch(&sessions), 0, |_| false);
        let h = &devices["dev-1"];
        assert_eq!(h.on.len(), 1);
        let u = &h.on[0].1;
        assert_eq!(u.sessions, sessions.len());
        let ips: Vec<&str> = u.ips.iter().map(|ip| ip.as_ref()).collect();
        let first: Vec<String> = (0..MAX_IPS).map(|i| format!("10.0.0.{i}")).collect();
        assert_eq!(ips, first.iter().map(String::as_str).collect::<Vec<_>>());
    }
}
