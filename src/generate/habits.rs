//! How benign people use their own record: their devices, hours, addresses and sessions.

use super::*;

/// One person's habits.
#[derive(Debug, Clone)]
pub(super) struct Habits {
    pub(super) nhs: String,
    pub(super) account: String,
    pub(super) devices: Vec<Device>,
    pub(super) home_ip: String,
    /// (mean local hour, spread in hours, weight)
    pub(super) peaks: Vec<(f64, f64, f64)>,
    pub(super) sessions_per_day: f64,
    /// What each of `devices` is used for, in the same order.
    pub(super) roles: Vec<Role>,
    /// The sections this person reads, as a bag to draw from.
    pub(super) sections: &'static [&'static str],
}

/// What one of a person's own devices is used for.
#[derive(Debug, Clone)]
pub(super) struct Role {
    /// Hours of its own (a tablet in the evening, a work computer in the day), or the person's.
    pub(super) peaks: Option<Vec<(f64, f64, f64)>>,
    /// How often it books, orders or sends messages, relative to the person's main device.
    pub(super) admin: f64,
}

impl Role {
    pub(super) const MAIN: Role = Role {
        peaks: None,
        admin: 1.0,
    };
}

/// How a practice's benign people vary. Drawn per practice from ranges, so that no detector can key on one habit:
/// real holders read results more than appointments, keep a tablet for the evenings, reset a password on a new
/// phone, borrow a computer abroad, and are sometimes awake at 3 a.m.
#[derive(Debug, Clone)]
pub(super) struct HabitSettings {
    /// Share of a person's sessions at any hour of the day or night.
    pub stray_hours: f64,
    /// The chance that a second own device has a role of its own: its own hours and less admin.
    pub device_roles: f64,
    /// How often such a device books, orders or sends messages, relative to the person's phone.
    pub second_device_admin: f64,
    /// Share of people who mostly read results, letters and consultations.
    pub results_readers: f64,
    /// The chance that a phone switcher resets their password or contact details as they set up the new phone.
    pub reset_on_new_phone: f64,
    /// The chance that a traveller reads their record on a borrowed or hotel computer while away.
    pub borrowed_abroad: f64,
    /// The chance that a night-shift worker works rotating blocks of nights rather than permanent nights.
    pub rotating_nights: f64,
}

impl HabitSettings {
    pub fn draw(rng: &mut impl Rng) -> HabitSettings {
        HabitSettings {
            stray_hours: rng.gen_range(0.0..0.06),
            device_roles: rng.gen_range(0.2..0.8),
            second_device_admin: rng.gen_range(0.0..0.6),
            results_readers: rng.gen_range(0.05..0.35),
            reset_on_new_phone: rng.gen_range(0.2..0.8),
            borrowed_abroad: rng.gen_range(0.1..0.6),
            rotating_nights: rng.gen_range(0.2..0.8),
        }
    }
}

/// What someone who mostly follows their results and letters reads: prying sections, now and then the rest.
const READER_SECTIONS: &[&str] = &[
    "test_results",
    "test_results",
    "test_results",
    "letters",
    "letters",
    "consultations",
    "consultations",
    "documents",
    "medications",
    "medications",
    "problems",
    "summary",
    "appointments",
];

const PHONE_UAS: &[&str] = &[
    "NHSApp/2.41.0 (iPhone; iOS 18.1)",
    "NHSApp/2.41.0 (iPhone; iOS 17.6)",
    "NHSApp/2.40.2 (Android 15; Pixel 8)",
    "NHSApp/2.40.2 (Android 14; SM-S918B)",
    "NHSApp/2.39.0 (Android 13; moto g54)",
];
const TABLET_UAS: &[&str] = &[
    "NHSApp/2.41.0 (iPad; iPadOS 18.0)",
    "NHSApp/2.40.2 (Android 14; SM-X210)",
];
const WEB_UAS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Safari/605.1.15",
];

impl Generator<'_> {
    pub(super) fn device(&mut self, kind: &str) -> Device {
        let (uas, channel) = match kind {
            "tablet" => (TABLET_UAS, "nhs_app"),
            "web" => (WEB_UAS, "web"),
            _ => (PHONE_UAS, "nhs_app"),
        };
        let ua = uas[self.rng.gen_range(0..uas.len())];
        Device {
            id: self.id("dev"),
            user_agent: ua.into(),
            channel,
        }
    }

    pub(super) fn home_ip(&mut self) -> String {
        let r = &mut self.rng;
        format!(
            "{}.{}.{}.{}",
            [81, 86, 90, 92, 109, 146][r.gen_range(0..6)],
            r.gen_range(1..255),
            r.gen_range(0..256),
            r.gen_range(1..255)
        )
    }

    pub(super) fn mobile_ip(&mut self) -> String {
        let r = &mut self.rng;
        format!(
            "2a01:4c8:{:x}:{:x}::{:x}",
            r.gen_range(0x1000..0xffff),
            r.gen_range(1..0xffff),
            r.gen_range(1..0xffff)
        )
    }

    pub(super) fn habits(&mut self, nhs: String) -> Habits {
        let n_peaks = if self.rng.gen_bool(0.6) { 1 } else { 2 };
        let peaks = (0..n_peaks)
            .map(|_| {
                let centre = *[7.5, 9.0, 12.5, 13.0, 17.5, 19.0, 20.5, 21.5]
                    .choose(&mut self.rng)
                    .unwrap_or(&19.0);
                (
                    centre + self.rng.gen_range(-0.5..0.5),
                    self.rng.gen_range(0.6..1.4),
                    self.rng.gen_range(0.5..1.0),
                )
            })
            .collect();
        let phone = self.device("phone");
        let sections = if self.rng.gen_bool(self.habit.results_readers) {
            READER_SECTIONS
        } else {
            VIEW_SECTIONS
        };
        Habits {
            nhs,
            account: self.id("nhsl"),
            devices: vec![phone],
            home_ip: self.home_ip(),
            peaks,
            sessions_per_day: self.rng.gen_range(0.08..0.45),
            roles: vec![Role::MAIN],
            sections,
        }
    }

    /// Adds one of the person's own devices (a tablet, a computer): with the practice's chance it has a role of its
    /// own, with hours of its own and less admin than the phone.
    pub(super) fn add_own_device(&mut self, h: &mut Habits, device: Device) {
        let role = if self.rng.gen_bool(self.habit.device_roles) {
            let centre = if device.channel == "web" && self.rng.gen_bool(0.5) {
                self.rng.gen_range(9.0..16.5) // a work computer
            } else {
                self.rng.gen_range(18.5..22.5) // the sofa in the evening
            };
            Role {
                peaks: Some(vec![(centre, self.rng.gen_range(0.6..1.5), 1.0)]),
                admin: self.habit.second_device_admin,
            }
        } else {
            Role::MAIN
        };
        h.devices.push(device);
        h.roles.push(role);
    }

    pub(super) fn local_hour(&mut self, peaks: &[(f64, f64, f64)]) -> f64 {
        let total: f64 = peaks.iter().map(|p| p.2).sum();
        let mut pick = self.rng.gen_range(0.0..total);
        let mut chosen = peaks[0];
        for p in peaks {
            if pick < p.2 {
                chosen = *p;
                break;
            }
            pick -= p.2;
        }
        // Box-Muller from two uniforms: a normal around the peak.
        let (u1, u2): (f64, f64) = (self.rng.gen_range(1e-9..1.0), self.rng.gen_range(0.0..1.0));
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        (chosen.0 + z * chosen.1).rem_euclid(24.0)
    }

    /// One session: login, some views from `sections`, sometimes another action, logout. Returns its end.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn session(
        &mut self,
        patient: &str,
        account: &str,
        role: &'static str,
        device: &Device,
        ip: &str,
        start: DateTime<Utc>,
        views: usize,
        sections: &[&'static str],
    ) -> DateTime<Utc> {
        let chosen: Vec<&'static str> = (0..views.max(1))
            .map(|_| sections[self.rng.gen_range(0..sections.len())])
            .collect();
        let admin = self.owner_action;
        self.session_reading(patient, account, role, device, ip, start, &chosen, admin)
    }

    /// One session reading `views` in order; `admin`: the chance that the session also books, orders or sends a
    /// message (0 for anyone but the account holder). Returns its end.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn session_reading(
        &mut self,
        patient: &str,
        account: &str,
        role: &'static str,
        device: &Device,
        ip: &str,
        start: DateTime<Utc>,
        views: &[&'static str],
        admin: f64,
    ) -> DateTime<Utc> {
        let session_id = self.id("sess");
        let first_row = self.practice.audit.len();
        let mut t = start;
        let with_ids = self.rng.gen_bool(0.9);
        let push = |g: &mut Self,
                    t: DateTime<Utc>,
                    action: &'static str,
                    section: Option<&'static str>,
                    outcome: &'static str| {
            g.next_event += 1;
            let event_id = with_ids.then(|| format!("ev-{:08}", g.next_event));
            g.practice.audit.push(AuditRow {
                event_id,
                at: t,
                nhs_number: patient.to_string(),
                account_id: account.to_string(),
                actor_role: role,
                device: device.clone(),
                ip: ip.to_string(),
                session_id: session_id.clone(),
                action,
                section,
                outcome,
            });
        };
        if self.rng.gen_bool(0.02) {
            push(self, t, "login_failed", None, "failure");
            t += Duration::seconds(self.rng.gen_range(15..60));
        }
        push(self, t, "login", None, "success");
        for section in views {
            t += Duration::seconds(self.rng.gen_range(8..150));
            let action = if *section == "documents" && self.rng.gen_bool(0.15) {
                "download"
            } else {
                "view"
            };
            push(self, t, action, Some(section), "success");
        }
        if role == "patient" && admin > 0.0 && self.rng.gen_bool(admin.min(1.0)) {
            t += Duration::seconds(self.rng.gen_range(20..90));
            let action = *["order_prescription", "book_appointment", "send_message"]
                .choose(&mut self.rng)
                .unwrap_or(&"send_message");
            push(self, t, action, None, "success");
        }
        if self.rng.gen_bool(0.7) {
            t += Duration::seconds(self.rng.gen_range(5..60));
            push(self, t, "logout", None, "success");
        }
        self.not_overlapping(
            first_row,
            (device.id.clone(), patient.to_string()),
            start,
            t,
        )
    }

    /// Moves the session just written (audit rows from `first_row`, `start` to `end`) to after any session already on
    /// this device and record that it would overlap, and records it. Returns its (possibly moved) end.
    fn not_overlapping(
        &mut self,
        first_row: usize,
        key: (String, String),
        mut start: DateTime<Utc>,
        mut end: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let taken = self.busy.entry(key).or_default();
        while let Some(&(_, other_end)) = taken.iter().find(|(s, e)| *s <= end && start <= *e) {
            let shift = other_end - start + Duration::seconds(60);
            for row in &mut self.practice.audit[first_row..] {
                row.at += shift;
            }
            start += shift;
            end += shift;
        }
        taken.push((start, end));
        end
    }

    /// One action in a session of its own (an account change).
    pub(super) fn single_action(
        &mut self,
        nhs: &str,
        account: &str,
        device: &Device,
        ip: &str,
        at: DateTime<Utc>,
        action: &'static str,
    ) {
        let session_id = self.id("sess");
        self.next_event += 1;
        self.practice.audit.push(AuditRow {
            event_id: None,
            at,
            nhs_number: nhs.to_string(),
            account_id: account.to_string(),
            actor_role: "patient",
            device: device.clone(),
            ip: ip.to_string(),
            session_id,
            action,
            section: None,
            outcome: "success",
        });
    }

    /// A person's ordinary use of their own record over the period, from `from` to `until` (days).
    pub(super) fn ordinary_use(
        &mut self,
        h: &Habits,
        device_for_day: &dyn Fn(NaiveDate, &mut ChaCha8Rng) -> usize,
        from: NaiveDate,
        until: NaiveDate,
    ) {
        let days: Vec<NaiveDate> = self.days().filter(|d| *d >= from && *d <= until).collect();
        for day in days {
            let weekend = matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
            let rate = h.sessions_per_day * if weekend { 0.8 } else { 1.0 };
            let n = poisson(&mut self.rng, rate);
            for _ in 0..n {
                let k = device_for_day(day, &mut self.rng).min(h.devices.len() - 1);
                let device = h.devices[k].clone();
                let role = h.roles.get(k).cloned().unwrap_or(Role::MAIN);
                let hour = if self.rng.gen_bool(self.habit.stray_hours) {
                    self.rng.gen_range(0.0..24.0)
                } else {
                    self.local_hour(role.peaks.as_deref().unwrap_or(&h.peaks))
                };
                let at = at_local(self.spec.timezone, day, hour);
                let ip = if device.user_agent.contains("iPhone")
                    || device.user_agent.contains("Android")
                {
                    if self.rng.gen_bool(0.7) {
                        h.home_ip.clone()
                    } else {
                        self.mobile_ip()
                    }
                } else {
                    h.home_ip.clone()
                };
                let views: Vec<&'static str> = (0..self.rng.gen_range(1..6))
                    .map(|_| h.sections[self.rng.gen_range(0..h.sections.len())])
                    .collect();
                let admin = self.owner_action * role.admin;
                self.session_reading(
                    &h.nhs, &h.account, "patient", &device, &ip, at, &views, admin,
                );
            }
        }
    }
}
