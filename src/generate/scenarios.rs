//! How a monitored patient is watched: the scenarios, when the watching began (usually long before anyone looks),
//! whether it stopped, and the practice's own settings for how watchers behave.
//!
//! A generator written beside the detector agrees with it by construction. To keep it honest, nothing a detector
//! could key on is a constant: each practice draws its watchers' pace, hours, delays after sensitive entries,
//! polling jitter and reading habits from ranges, and each watcher draws its own within them.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{
    at_local, AppointmentRow, Device, Generator, Persona, BROAD_SECTIONS, PRYING_SECTIONS,
};
use crate::context::CODE_106;

/// How a monitored patient is being watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    AbuserDeviceAfterSensitive,
    AbuserPhoneTwoRecords,
    ViewsDuringAppointment,
    AccountChangeTakeover,
    OddHoursOwnPhone,
    RegularPolling,
    AccessAfter104,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::AbuserDeviceAfterSensitive,
        Scenario::AbuserPhoneTwoRecords,
        Scenario::ViewsDuringAppointment,
        Scenario::AccountChangeTakeover,
        Scenario::OddHoursOwnPhone,
        Scenario::RegularPolling,
        Scenario::AccessAfter104,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::AbuserDeviceAfterSensitive => "abuser_device_after_sensitive",
            Scenario::AbuserPhoneTwoRecords => "abuser_phone_two_records",
            Scenario::ViewsDuringAppointment => "views_during_appointment",
            Scenario::AccountChangeTakeover => "account_change_takeover",
            Scenario::OddHoursOwnPhone => "odd_hours_own_phone",
            Scenario::RegularPolling => "regular_polling",
            Scenario::AccessAfter104 => "access_after_104",
        }
    }
}

/// When the watching began, relative to the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Onset {
    /// Before the first day of data: the common case, watching for months before anyone runs a tool.
    Established,
    /// During the data, before the last fortnight.
    Baseline,
    /// In the last fortnight.
    Recent,
    /// Each watcher draws one: established 60%, baseline 20%, recent 20%.
    Mixed,
}

impl Onset {
    pub fn name(self) -> &'static str {
        match self {
            Onset::Established => "established",
            Onset::Baseline => "baseline",
            Onset::Recent => "recent",
            Onset::Mixed => "mixed",
        }
    }
}

/// How hard a watcher looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Intensity {
    Obvious,
    Subtle,
    /// Alternate obvious and subtle.
    Mixed,
}

/// A practice's watcher settings, drawn once per practice from ranges.
#[derive(Debug, Clone)]
pub(super) struct WatchSettings {
    /// Typical watcher sessions per week (each watcher draws 0.5 to 1.5 times this).
    pub pace: f64,
    /// The longest delay between a sensitive entry appearing and the watcher reading it, in minutes.
    pub max_delay_minutes: i64,
    /// Polling jitter, seconds either side.
    pub jitter_seconds: i64,
    /// The chance that one of a watcher's views is of a section the holder reads (summary, appointments...).
    pub broad_view: f64,
    /// Views per watcher session.
    pub views: (usize, usize),
    /// Share of watchers who stopped before the last day.
    pub stopped: f64,
    /// The chance that an abuser reading from their own phone lives with the patient.
    pub cohabiting: f64,
}

impl WatchSettings {
    pub fn draw(rng: &mut impl Rng) -> WatchSettings {
        let lo = rng.gen_range(1..4);
        WatchSettings {
            pace: rng.gen_range(0.8..5.0),
            max_delay_minutes: rng.gen_range(90..36 * 60),
            jitter_seconds: rng.gen_range(20..900),
            broad_view: rng.gen_range(0.0..0.08),
            views: (lo, lo + rng.gen_range(1..5)),
            stopped: rng.gen_range(0.1..0.35),
            cohabiting: rng.gen_range(0.3..0.8),
        }
    }
}

/// One watcher: from when to when, how often, at which hours.
#[derive(Clone)]
struct Watch {
    from: NaiveDate,
    to: NaiveDate,
    per_week: f64,
    /// (centre hour, spread in hours, weight)
    hours: Vec<(f64, f64, f64)>,
}

impl Generator<'_> {
    /// When a watcher began (its first day of data) and stopped, per the spec's onset.
    fn watch_window(&mut self, onset: Onset) -> (NaiveDate, NaiveDate, &'static str) {
        let onset = match onset {
            Onset::Mixed => {
                let r: f64 = self.rng.gen_range(0.0..1.0);
                if r < 0.6 {
                    Onset::Established
                } else if r < 0.8 {
                    Onset::Baseline
                } else {
                    Onset::Recent
                }
            }
            o => o,
        };
        let days = i64::from(self.spec.days.max(1));
        let as_of = self.spec.as_of;
        let from = match onset {
            Onset::Established => self.start,
            Onset::Baseline => {
                self.start + Duration::days(self.rng.gen_range(3..(days - 20).max(4)))
            }
            _ => as_of - Duration::days(self.rng.gen_range(3..(days / 2).clamp(4, 12))),
        };
        let to = if onset != Onset::Recent && self.rng.gen_bool(self.watch.stopped) {
            (as_of - Duration::days(self.rng.gen_range(3..25))).max(from + Duration::days(10))
        } else {
            as_of
        }
        .min(as_of);
        (from, to, onset.name())
    }

    fn watcher(&mut self, onset: Onset, obvious: bool) -> (Watch, &'static str) {
        let (from, to, onset) = self.watch_window(onset);
        let per_week =
            self.watch.pace * self.rng.gen_range(0.5..1.5) * if obvious { 1.6 } else { 0.7 };
        let n = if self.rng.gen_bool(0.7) { 1 } else { 2 };
        let hours = (0..n)
            .map(|_| {
                (
                    self.rng.gen_range(0.0..24.0),
                    self.rng.gen_range(0.5..2.5),
                    self.rng.gen_range(0.5..1.0),
                )
            })
            .collect();
        (
            Watch {
                from,
                to,
                per_week,
                hours,
            },
            onset,
        )
    }

    /// The sections one watcher session reads: mostly where disclosures are, now and then another.
    fn watcher_views(&mut self) -> Vec<&'static str> {
        let n = self.rng.gen_range(self.watch.views.0..=self.watch.views.1);
        (0..n)
            .map(|_| {
                if self.rng.gen_bool(self.watch.broad_view) {
                    BROAD_SECTIONS[self.rng.gen_range(0..BROAD_SECTIONS.len())]
                } else {
                    PRYING_SECTIONS[self.rng.gen_range(0..PRYING_SECTIONS.len())]
                }
            })
            .collect()
    }

    /// A watcher session at a given time.
    fn watcher_session(
        &mut self,
        nhs: &str,
        account: &str,
        device: &Device,
        ip: &str,
        at: DateTime<Utc>,
    ) {
        let views = self.watcher_views();
        self.session_reading(nhs, account, "patient", device, ip, at, &views, 0.0);
        self.watcher_visits += 1;
    }

    /// A watcher's background reading over its window, at its pace and hours.
    ///
    /// A watcher reads at least once: a short, slow watch can draw no visit at all, and a patient labelled monitored
    /// with nothing to find would only measure the generator. That visit comes from the patient's own stream (see
    /// [`Self::side_stream`]), so no other patient of a seeded practice changes.
    fn watch_over(&mut self, w: &Watch, nhs: &str, account: &str, device: &Device, ip: &str) {
        let days: Vec<NaiveDate> = self.days().filter(|d| *d >= w.from && *d <= w.to).collect();
        // One visit on `day` at an hour of the watch.
        let visit = |g: &mut Self, day: NaiveDate| {
            let hour = g.local_hour(&w.hours);
            let at = at_local(g.spec.timezone, day, hour);
            g.watcher_session(nhs, account, device, ip, at);
        };
        let before = self.watcher_visits;
        for day in &days {
            let n = super::poisson(&mut self.rng, w.per_week / 7.0);
            for _ in 0..n {
                visit(self, *day);
            }
        }
        if self.watcher_visits == before && !days.is_empty() {
            let side = self.side_stream(nhs);
            let main = std::mem::replace(&mut self.rng, side);
            let day = days[self.rng.gen_range(0..days.len())];
            visit(self, day);
            self.rng = main;
        }
    }

    /// The same watch moved to the hours the victim keeps least: at night while they sleep (most often), or in the
    /// day while they are apart from their phone.
    fn at_quiet_hours(&mut self, h: &super::habits::Habits, w: &Watch) -> Watch {
        let gap = |x: f64| {
            h.peaks
                .iter()
                .map(|p| ((x - p.0).rem_euclid(24.0)).min((p.0 - x).rem_euclid(24.0)))
                .fold(f64::MAX, f64::min)
        };
        let candidates: Vec<f64> = if self.rng.gen_bool(0.6) {
            (0..6).map(f64::from).collect()
        } else {
            (9..18).map(f64::from).collect()
        };
        let quiet = candidates
            .iter()
            .copied()
            .max_by(|a, b| gap(*a).total_cmp(&gap(*b)))
            .unwrap_or(3.0);
        Watch {
            from: w.from,
            to: w.to,
            per_week: w.per_week,
            hours: vec![(quiet, self.rng.gen_range(0.5..1.5), 1.0)],
        }
    }

    /// A stream of its own for one patient (seeded by the practice's seed and the NHS number), for choices added to
    /// the generator later: drawing them from the main stream would have changed every other patient of a seeded
    /// practice.
    pub(super) fn side_stream(&self, nhs: &str) -> ChaCha8Rng {
        let id: u64 = nhs.parse().unwrap_or(0);
        ChaCha8Rng::seed_from_u64(self.spec.seed ^ id.rotate_left(17))
    }

    /// One lone event of the holder's (a sign-in, a refused sign-in, a password change), its ids drawn from `rng`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn lone_event(
        &mut self,
        rng: &mut ChaCha8Rng,
        h: &super::habits::Habits,
        device: &Device,
        at: DateTime<Utc>,
        action: &'static str,
        outcome: &'static str,
    ) {
        self.next_id += 1;
        let session_id = format!(
            "sess-{:06x}{:04x}",
            rng.gen::<u32>() & 0xff_ffff,
            self.next_id & 0xffff
        );
        self.next_event += 1;
        self.practice.audit.push(super::AuditRow {
            event_id: None,
            at,
            nhs_number: h.nhs.clone(),
            account_id: h.account.clone(),
            actor_role: "patient",
            device: device.clone(),
            ip: h.home_ip.clone(),
            session_id,
            action,
            section: None,
            outcome,
        });
    }

    /// A password changed by someone else may lock the victim out: then their own use after the change is gone, and
    /// in its place their phone tries to sign in, once to three times over the next days, and is refused. Drawn
    /// from the patient's side stream.
    /// `first_row`: where this patient's rows begin in the practice's audit (only those are looked at).
    fn lock_out(&mut self, h: &super::habits::Habits, at: DateTime<Utc>, first_row: usize) {
        let mut rng = self.side_stream(&h.nhs);
        if !rng.gen_bool(0.5) {
            return;
        }
        let own = |r: &super::AuditRow| {
            r.nhs_number == h.nhs && r.at > at && h.devices.iter().any(|d| d.id == r.device.id)
        };
        let mut mine = self.practice.audit.split_off(first_row);
        mine.retain(|r| !own(r));
        self.practice.audit.append(&mut mine);
        let tz = self.spec.timezone;
        for _ in 0..rng.gen_range(1..=3) {
            let day = at.with_timezone(&tz).date_naive() + Duration::days(rng.gen_range(1..10));
            if day > self.spec.as_of {
                continue;
            }
            let peak = h.peaks[rng.gen_range(0..h.peaks.len())].0;
            let when = at_local(tz, day, (peak + rng.gen_range(-1.0..1.0)).rem_euclid(24.0));
            let phone = h.devices[0].clone();
            self.lone_event(&mut rng, h, &phone, when, "login_failed", "failure");
        }
    }

    fn day_in(&mut self, from: NaiveDate, to: NaiveDate) -> NaiveDate {
        from + Duration::days(self.rng.gen_range(0..=(to - from).num_days().max(0)))
    }

    /// A monitored patient: their own use, plus a watcher over its window.
    pub(super) fn monitored(
        &mut self,
        nhs: String,
        abuser: Option<String>,
        scenario: Scenario,
        obvious: bool,
        onset: Onset,
    ) {
        let first_row = self.practice.audit.len();
        self.watcher_visits = 0;
        let mut h = self.habits(nhs.clone());
        // Some victims hardly use the app themselves.
        if self.rng.gen_bool(0.1) {
            h.sessions_per_day *= 0.2;
        }
        self.ordinary_entries(&nhs);
        let appts = self.appointments(
            &nhs,
            if scenario == Scenario::ViewsDuringAppointment {
                3.0
            } else {
                0.8
            },
        );
        self.ordinary_use(&h, &|_, _| 0, self.start, self.spec.as_of);
        let (w, onset_name) = self.watcher(onset, obvious);
        let other_device = match self.rng.gen_range(0..4) {
            0 | 1 => self.device("phone"),
            2 => self.device("tablet"),
            _ => self.device("web"),
        };
        // The watcher usually lives with the patient (same household address); sometimes not.
        let watcher_ip = if self.rng.gen_bool(0.7) {
            h.home_ip.clone()
        } else {
            self.home_ip()
        };
        let account = h.account.clone();
        let tz = self.spec.timezone;
        match scenario {
            Scenario::AbuserDeviceAfterSensitive => {
                self.watch_over(&w, &nhs, &account, &other_device, &watcher_ip);
                let n = if obvious { 3 } else { self.rng.gen_range(1..3) };
                for _ in 0..n {
                    let day = self.day_in(w.from, w.to);
                    let at = at_local(tz, day, self.rng.gen_range(9.0..17.0));
                    self.sensitive_entry(&nhs, at);
                    let delay = self.rng.gen_range(10..self.watch.max_delay_minutes);
                    self.watcher_session(
                        &nhs,
                        &account,
                        &other_device,
                        &watcher_ip,
                        at + Duration::minutes(delay),
                    );
                }
            }
            Scenario::AbuserPhoneTwoRecords => {
                if let Some(abuser_nhs) = abuser {
                    let mut a = self.habits(abuser_nhs.clone());
                    // Often a partner in the same home: one household connection for both records.
                    if self.rng.gen_bool(self.watch.cohabiting) {
                        a.home_ip = h.home_ip.clone();
                    }
                    self.ordinary_entries(&abuser_nhs);
                    self.appointments(&abuser_nhs, 0.8);
                    self.ordinary_use(&a, &|_, _| 0, self.start, self.spec.as_of);
                    let phone = a.devices[0].clone();
                    // The abuser reads the victim's record from their own phone, at their own hours.
                    let own_hours = Watch {
                        hours: a.peaks.clone(),
                        ..w
                    };
                    self.watch_over(&own_hours, &nhs, &account, &phone, &a.home_ip);
                    if obvious || self.rng.gen_bool(0.5) {
                        let day = self.day_in(own_hours.from, own_hours.to);
                        let at = at_local(tz, day, 11.0);
                        self.sensitive_entry(&nhs, at);
                        let delay = self.rng.gen_range(10..self.watch.max_delay_minutes);
                        self.watcher_session(
                            &nhs,
                            &account,
                            &phone,
                            &a.home_ip,
                            at + Duration::minutes(delay),
                        );
                    }
                    self.truth(&abuser_nhs, Persona::AbuserOwnRecord);
                }
            }
            Scenario::ViewsDuringAppointment => {
                self.watch_over(&w, &nhs, &account, &other_device, &watcher_ip);
                let mut visits: Vec<AppointmentRow> = appts
                    .iter()
                    .filter(|a| {
                        a.mode == "face_to_face"
                            && a.status == "attended"
                            && a.starts_at.date_naive() >= w.from
                            && a.starts_at.date_naive() <= w.to
                    })
                    .cloned()
                    .collect();
                if visits.is_empty() {
                    visits.push(self.visit_between(&nhs, w.from, w.to));
                }
                let take = if obvious { visits.len().min(3) } else { 1 };
                for a in visits.into_iter().take(take) {
                    let when = a.starts_at + Duration::minutes(self.rng.gen_range(1..8));
                    self.watcher_session(&nhs, &account, &other_device, &watcher_ip, when);
                }
            }
            Scenario::AccountChangeTakeover => {
                let day = if w.from == self.start {
                    self.start + Duration::days(self.rng.gen_range(0..5))
                } else {
                    w.from
                };
                let at = at_local(tz, day, self.rng.gen_range(7.0..23.0));
                let action = if self.rng.gen_bool(0.5) {
                    "change_password"
                } else {
                    "change_contact_details"
                };
                let phone = h.devices[0].clone();
                self.single_action(&nhs, &account, &phone, &watcher_ip, at, action);
                if action == "change_password" {
                    self.lock_out(&h, at, first_row);
                }
                let after = Watch {
                    from: day + Duration::days(1),
                    ..w
                };
                let first = at + Duration::hours(self.rng.gen_range(2..30));
                self.watcher_session(&nhs, &account, &other_device, &watcher_ip, first);
                self.watch_over(&after, &nhs, &account, &other_device, &watcher_ip);
            }
            Scenario::OddHoursOwnPhone => {
                // The victim's own phone, at hours they do not keep: at night while they sleep, or in the day while
                // they are apart from it.
                let phone = h.devices[0].clone();
                let at_quiet = self.at_quiet_hours(&h, &w);
                let ip = h.home_ip.clone();
                self.watch_over(&at_quiet, &nhs, &account, &phone, &ip);
            }
            Scenario::RegularPolling => {
                let device = if self.rng.gen_bool(0.5) {
                    other_device.clone()
                } else {
                    h.devices[0].clone()
                };
                let every_hours = if obvious {
                    self.rng.gen_range(3..9)
                } else {
                    *[12, 24, 24].choose(&mut self.rng).unwrap_or(&24)
                };
                let mut t = at_local(tz, w.from, self.rng.gen_range(6.0..10.0));
                let end = at_local(tz, w.to, 23.9);
                let jitter = self.watch.jitter_seconds;
                // Half the daily checkers keep their slot only on some days (from their own stream, so no other
                // patient changes): a daily chain breaks at the first day missed, the time of day does not.
                let mut side = self.side_stream(&nhs);
                let keep = if every_hours == 24 && side.gen_bool(0.5) {
                    side.gen_range(0.45..0.85)
                } else {
                    1.0
                };
                while t < end {
                    // A missed day is drawn and then dropped, so the practice's main stream draws what it always did.
                    let missed = keep < 1.0 && !side.gen_bool(keep);
                    let rows = self.practice.audit.len();
                    let j = Duration::seconds(self.rng.gen_range(-jitter..=jitter));
                    let views = vec![PRYING_SECTIONS[self.rng.gen_range(0..2)]];
                    self.session_reading(
                        &nhs,
                        &account,
                        "patient",
                        &device,
                        &watcher_ip,
                        t + j,
                        &views,
                        0.0,
                    );
                    if missed {
                        self.practice.audit.truncate(rows);
                    } else {
                        self.watcher_visits += 1;
                    }
                    t += Duration::hours(every_hours);
                }
            }
            Scenario::AccessAfter104 => {
                // Mostly the watcher's own device; sometimes the victim's phone, at hours the victim does not keep.
                let (w, device, ip) = if self.rng.gen_bool(0.35) {
                    (
                        self.at_quiet_hours(&h, &w),
                        h.devices[0].clone(),
                        h.home_ip.clone(),
                    )
                } else {
                    (w.clone(), other_device.clone(), watcher_ip.clone())
                };
                self.watch_over(&w, &nhs, &account, &device, &ip);
                // The 104 code comes after a concern, often once the watcher is long established.
                // Never after the watching stops (nor after the last day of data): a short, recent watch gets its
                // code a day before it ends.
                let earliest = (w.from + Duration::days(7))
                    .max(self.start + Duration::days(10))
                    .min(w.to - Duration::days(1));
                let latest = (w.to - Duration::days(4)).max(earliest);
                let day = self.day_in(earliest, latest);
                let at = at_local(tz, day, 10.0);
                self.sensitive_entry(&nhs, at - Duration::days(1));
                self.code_104(&nhs, at);
                let sessions = if obvious { 4 } else { 2 };
                let until = at_local(tz, w.to, 23.5);
                for _ in 0..sessions {
                    let span = ((until - at).num_days()).max(1);
                    let day = at.with_timezone(&tz).date_naive()
                        + Duration::days(self.rng.gen_range(1..=span));
                    let when = at_local(tz, day, self.local_hour(&w.hours));
                    self.watcher_session(&nhs, &account, &device, &ip, when);
                }
                if !obvious && self.rng.gen_bool(0.3) {
                    let later = at_local(tz, self.spec.as_of, 9.0);
                    self.entry(
                        &nhs,
                        later,
                        CODE_106,
                        "Enhanced review not indicated",
                        "summary",
                        true,
                    );
                }
            }
        }
        self.truth_monitored(
            &nhs,
            scenario,
            if obvious { "obvious" } else { "subtle" },
            onset_name,
            w.from,
        );
    }

    /// An attended face-to-face visit on a weekday in a window (for a diary that has none there).
    fn visit_between(&mut self, nhs: &str, from: NaiveDate, to: NaiveDate) -> AppointmentRow {
        let mut day = self.day_in(from, to);
        while day.weekday().number_from_monday() > 5 {
            day -= Duration::days(1);
        }
        let starts = at_local(
            self.spec.timezone,
            day,
            f64::from(self.rng.gen_range(18..34)) / 2.0,
        );
        self.next_appointment += 1;
        let a = AppointmentRow {
            appointment_id: format!("A{:07}", self.next_appointment),
            nhs_number: nhs.to_string(),
            starts_at: starts,
            ends_at: starts + Duration::minutes(15),
            mode: "face_to_face",
            status: "attended",
        };
        self.practice.appointments.push(a.clone());
        a
    }
}
