//! Benign people: the ordinary account holder and the habits that look suspicious to a naive detector.

use super::habits::Role;
use super::*;

/// Benign behaviours, including the look-alikes a naive detector would flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Persona {
    Ordinary,
    NoOnlineAccess,
    TwoOwnDevices,
    PhoneReplacement,
    NightShift,
    EntryChecker,
    ProxyParent,
    ProxyChild,
    SharedTabletCouple,
    Traveller,
    PostAppointmentReader,
    RestrictedOwnUse,
    /// Uses their own phone on a partner's record: the device owner in a monitoring scenario (not at risk).
    AbuserOwnRecord,
}

impl Persona {
    pub fn name(self) -> &'static str {
        match self {
            Persona::Ordinary => "ordinary",
            Persona::NoOnlineAccess => "no_online_access",
            Persona::TwoOwnDevices => "two_own_devices",
            Persona::PhoneReplacement => "phone_replacement",
            Persona::NightShift => "night_shift",
            Persona::EntryChecker => "entry_checker",
            Persona::ProxyParent => "proxy_parent",
            Persona::ProxyChild => "proxy_child",
            Persona::SharedTabletCouple => "shared_tablet_couple",
            Persona::Traveller => "traveller",
            Persona::PostAppointmentReader => "post_appointment_reader",
            Persona::RestrictedOwnUse => "restricted_own_use",
            Persona::AbuserOwnRecord => "abuser_own_record",
        }
    }
}

impl Generator<'_> {
    pub(super) fn benign(
        &mut self,
        nhs: String,
        persona: Persona,
        queue: &mut dyn Iterator<Item = String>,
    ) {
        let mut h = self.habits(nhs.clone());
        self.ordinary_entries(&nhs);
        let appts = self.appointments(&nhs, 0.8);
        if self.rng.gen_bool(0.06) {
            let at = at_local(
                self.spec.timezone,
                self.start
                    + Duration::days(self.rng.gen_range(0..i64::from(self.spec.days.max(1)))),
                11.0,
            );
            self.sensitive_entry(&nhs, at);
        }
        let (first, last) = (self.start, self.spec.as_of);
        match persona {
            Persona::NoOnlineAccess => {}
            Persona::Ordinary => {
                self.ordinary_use(&h, &|_, _| 0, first, last);
                // Now and then a one-off login from a work or library computer.
                if self.rng.gen_bool(0.05) {
                    let web = self.device("web");
                    let day = self.start
                        + Duration::days(self.rng.gen_range(0..i64::from(self.spec.days.max(1))));
                    let at = at_local(self.spec.timezone, day, self.rng.gen_range(9.0..17.0));
                    let ip = self.home_ip();
                    self.session(
                        &nhs,
                        &h.account.clone(),
                        "patient",
                        &web,
                        &ip,
                        at,
                        2,
                        VIEW_SECTIONS,
                    );
                }
            }
            Persona::TwoOwnDevices => {
                let kind = if self.rng.gen_bool(0.5) {
                    "tablet"
                } else {
                    "web"
                };
                let second = self.device(kind);
                self.add_own_device(&mut h, second.clone());
                // Some take the second device up partway through, resetting a forgotten password on it first, and
                // go on using their phone too (the patient's own look-alike of a takeover). Drawn from the patient's
                // side stream.
                let mut side = self.side_stream(&nhs);
                let from = side.gen_bool(0.3).then(|| {
                    let span = i64::from(self.spec.days.max(2));
                    first + Duration::days(side.gen_range(span / 4..span * 3 / 4))
                });
                let starts = from.unwrap_or(first);
                self.ordinary_use(
                    &h,
                    &move |d, r| {
                        let on_second = r.gen_bool(0.35);
                        usize::from(on_second && d >= starts)
                    },
                    first,
                    last,
                );
                if let Some(day) = from {
                    let peak = h.peaks[side.gen_range(0..h.peaks.len())].0;
                    let at = at_local(self.spec.timezone, day, (peak - 0.5).rem_euclid(24.0));
                    self.lone_event(&mut side, &h, &second, at, "change_password", "success");
                }
            }
            Persona::PhoneReplacement => {
                let new_phone = self.device("phone");
                h.devices.push(new_phone.clone());
                h.roles.push(Role::MAIN);
                let switch = self.start
                    + Duration::days(i64::from(self.spec.days) * self.rng.gen_range(50..90) / 100);
                self.ordinary_use(&h, &move |d, _| usize::from(d >= switch), first, last);
                if self.rng.gen_bool(self.habit.reset_on_new_phone) {
                    // Setting up the new phone: a forgotten password or a new number, then a first look.
                    let hour = self.local_hour(&h.peaks);
                    let at = at_local(self.spec.timezone, switch, hour);
                    let action = if self.rng.gen_bool(0.6) {
                        "change_password"
                    } else {
                        "change_contact_details"
                    };
                    let ip = h.home_ip.clone();
                    self.single_action(&nhs, &h.account, &new_phone, &ip, at, action);
                    let views = self.rng.gen_range(1..4);
                    let sections = h.sections;
                    let start = at + Duration::minutes(self.rng.gen_range(1..20));
                    self.session(
                        &nhs, &h.account, "patient", &new_phone, &ip, start, views, sections,
                    );
                }
            }
            Persona::NightShift => {
                let days_habits = h.clone();
                h.peaks = vec![
                    (self.rng.gen_range(1.0..4.0), 0.8, 1.0),
                    (self.rng.gen_range(14.0..16.0), 1.0, 0.4),
                ];
                if self.rng.gen_bool(self.habit.rotating_nights) {
                    // Rotating shifts: a block of nights, then days, then nights again.
                    let nights = self.rng.gen_range(3..8);
                    let block_days = self.rng.gen_range(7..15);
                    let mut from = first + Duration::days(self.rng.gen_range(0..block_days));
                    self.ordinary_use(&days_habits, &|_, _| 0, first, from - Duration::days(1));
                    while from <= last {
                        let to = from + Duration::days(nights - 1);
                        self.ordinary_use(&h, &|_, _| 0, from, to.min(last));
                        let back = to + Duration::days(block_days);
                        self.ordinary_use(
                            &days_habits,
                            &|_, _| 0,
                            to + Duration::days(1),
                            back.min(last),
                        );
                        from = back + Duration::days(1);
                    }
                } else {
                    self.ordinary_use(&h, &|_, _| 0, first, last);
                }
            }
            Persona::EntryChecker => {
                h.sessions_per_day *= 0.5;
                self.ordinary_use(&h, &|_, _| 0, first, last);
                for _ in 0..self.rng.gen_range(1..3) {
                    let at = at_local(
                        self.spec.timezone,
                        self.start
                            + Duration::days(
                                self.rng.gen_range(0..i64::from(self.spec.days.max(1))),
                            ),
                        self.rng.gen_range(9.0..17.0),
                    );
                    self.sensitive_entry(&nhs, at);
                }
                let mine: Vec<DateTime<Utc>> = self
                    .practice
                    .entries
                    .iter()
                    .filter(|e| e.nhs_number == nhs && e.visible_online)
                    .map(|e| e.recorded_at)
                    .collect();
                for at in mine {
                    let when = at + Duration::minutes(self.rng.gen_range(3..60));
                    let phone = h.devices[0].clone();
                    let ip = h.home_ip.clone();
                    self.session(
                        &nhs,
                        &h.account,
                        "patient",
                        &phone,
                        &ip,
                        when,
                        3,
                        PRYING_SECTIONS,
                    );
                }
            }
            Persona::ProxyParent => {
                let tablet = self.device("tablet");
                self.add_own_device(&mut h, tablet.clone());
                self.ordinary_use(&h, &|_, r| usize::from(r.gen_bool(0.5)), first, last);
                let proxy_account = self.id("nhsl");
                for _ in 0..self.rng.gen_range(1..3) {
                    let Some(child) = queue.next() else { break };
                    self.ordinary_entries(&child);
                    self.appointments(&child, 0.5);
                    let granted = at_local(
                        self.spec.timezone,
                        self.start - Duration::days(self.rng.gen_range(60..700)),
                        10.0,
                    );
                    self.practice.proxies.push(ProxyRow {
                        nhs_number: child.clone(),
                        proxy_account_id: proxy_account.clone(),
                        proxy_nhs_number: self.rng.gen_bool(0.5).then(|| nhs.clone()),
                        relationship: "parent",
                        granted_at: granted,
                        revoked_at: None,
                    });
                    let days: Vec<NaiveDate> = self.days().collect();
                    for day in days {
                        if self.rng.gen_bool(0.12) {
                            let hour = self.local_hour(&h.peaks);
                            let at = at_local(self.spec.timezone, day, hour);
                            let dev = if self.rng.gen_bool(0.7) {
                                tablet.clone()
                            } else {
                                h.devices[0].clone()
                            };
                            let ip = h.home_ip.clone();
                            self.session(
                                &child,
                                &proxy_account,
                                "proxy",
                                &dev,
                                &ip,
                                at,
                                2,
                                VIEW_SECTIONS,
                            );
                        }
                    }
                    self.truth(&child, Persona::ProxyChild);
                }
            }
            Persona::SharedTabletCouple => {
                let tablet = self.device("tablet");
                self.add_own_device(&mut h, tablet.clone());
                self.ordinary_use(&h, &|_, r| usize::from(r.gen_bool(0.5)), first, last);
                if let Some(partner) = queue.next() {
                    let mut p = self.habits(partner.clone());
                    p.home_ip = h.home_ip.clone();
                    self.add_own_device(&mut p, tablet);
                    self.ordinary_entries(&partner);
                    self.appointments(&partner, 0.8);
                    self.ordinary_use(&p, &|_, r| usize::from(r.gen_bool(0.5)), first, last);
                    self.truth(&partner, Persona::SharedTabletCouple);
                }
            }
            Persona::Traveller => {
                let away_from = self.start
                    + Duration::days(i64::from(self.spec.days) * self.rng.gen_range(40..80) / 100);
                let away_to = away_from + Duration::days(self.rng.gen_range(5..12));
                let shift = *[1.0, 1.0, -5.0, 7.0].choose(&mut self.rng).unwrap_or(&1.0);
                self.ordinary_use(&h, &|_, _| 0, first, away_from - Duration::days(1));
                let mut away = h.clone();
                away.home_ip = format!("203.0.113.{}", self.rng.gen_range(1..255));
                // Same habits in their own local time abroad: shifted on the practice's clock.
                away.peaks = h
                    .peaks
                    .iter()
                    .map(|p| ((p.0 - shift).rem_euclid(24.0), p.1, p.2))
                    .collect();
                self.ordinary_use(&away, &|_, _| 0, away_from, away_to);
                if self.rng.gen_bool(self.habit.borrowed_abroad) {
                    // A hotel or borrowed computer while away: a look at results or letters, at their hours there.
                    let borrowed = self.device("web");
                    for _ in 0..self.rng.gen_range(1..3) {
                        let day = away_from
                            + Duration::days(
                                self.rng.gen_range(0..=(away_to - away_from).num_days()),
                            );
                        let hour = self.local_hour(&away.peaks);
                        let at = at_local(self.spec.timezone, day, hour);
                        let views: Vec<&'static str> = (0..self.rng.gen_range(1..4))
                            .map(|_| h.sections[self.rng.gen_range(0..h.sections.len())])
                            .collect();
                        let ip = away.home_ip.clone();
                        self.session_reading(
                            &nhs, &h.account, "patient", &borrowed, &ip, at, &views, 0.0,
                        );
                    }
                }
                self.ordinary_use(&h, &|_, _| 0, away_to + Duration::days(1), last);
            }
            Persona::PostAppointmentReader => {
                self.ordinary_use(&h, &|_, _| 0, first, last);
                for a in appts.iter().filter(|a| a.status == "attended") {
                    let phone = h.devices[0].clone();
                    if a.mode == "face_to_face" && self.rng.gen_bool(0.3) {
                        // Checks the app in the waiting room, on their own phone over the mobile network.
                        let ip = self.mobile_ip();
                        self.session(
                            &nhs,
                            &h.account,
                            "patient",
                            &phone,
                            &ip,
                            a.starts_at - Duration::minutes(4),
                            2,
                            &["medications", "appointments"],
                        );
                    }
                    let ip = h.home_ip.clone();
                    let when = a.ends_at + Duration::minutes(self.rng.gen_range(30..240));
                    self.session(
                        &nhs,
                        &h.account,
                        "patient",
                        &phone,
                        &ip,
                        when,
                        3,
                        &["consultations", "test_results", "medications"],
                    );
                }
            }
            Persona::RestrictedOwnUse => {
                let at = at_local(
                    self.spec.timezone,
                    self.start + Duration::days(i64::from(self.spec.days) / 3),
                    10.5,
                );
                self.code_104(&nhs, at);
                self.ordinary_use(&h, &|_, _| 0, first, last);
            }
            Persona::ProxyChild | Persona::AbuserOwnRecord => {}
        }
        if persona != Persona::ProxyChild {
            self.truth(&nhs, persona);
        }
    }
}
