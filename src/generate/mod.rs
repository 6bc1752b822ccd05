//! A synthetic practice in the data contract's formats, with labelled monitoring scenarios, for measuring
//! detectors where no labelled real data exists.
//!
//! Everyone has a daily rhythm in local time, sessions (login, a few views, logout), stable devices, a household
//! address and appointments; entries appear in their records. Benign people who look suspicious to a naive
//! detector are common (see [`Persona`]); a few percent are monitored in one of several [`Scenario`]s, obvious or
//! subtle. Everything is drawn from one seeded generator, so a seed gives the same practice byte for byte.

pub mod write;

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::context::catalogue::{Category, SensitiveCatalogue};
use crate::context::{CODE_104, CODE_106};

/// What the generator is asked for.
#[derive(Debug, Clone)]
pub struct PracticeSpec {
    pub patients: usize,
    pub days: u32,
    pub seed: u64,
    /// The last day of data (inclusive), the day a detection run would look back from.
    pub as_of: NaiveDate,
    pub timezone: Tz,
}

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

#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub user_agent: &'static str,
    pub channel: &'static str,
}

#[derive(Debug, Clone)]
pub struct AuditRow {
    pub event_id: Option<String>,
    pub at: DateTime<Utc>,
    pub nhs_number: String,
    pub account_id: String,
    pub actor_role: &'static str,
    pub device: Device,
    pub ip: String,
    pub session_id: String,
    pub action: &'static str,
    pub section: Option<&'static str>,
    pub outcome: &'static str,
}

#[derive(Debug, Clone)]
pub struct EntryRow {
    pub entry_id: String,
    pub nhs_number: String,
    pub recorded_at: DateTime<Utc>,
    pub code: String,
    pub term: String,
    pub section: &'static str,
    pub visible_online: bool,
}

#[derive(Debug, Clone)]
pub struct AppointmentRow {
    pub appointment_id: String,
    pub nhs_number: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub mode: &'static str,
    pub status: &'static str,
}

#[derive(Debug, Clone)]
pub struct ProxyRow {
    pub nhs_number: String,
    pub proxy_account_id: String,
    pub proxy_nhs_number: Option<String>,
    pub relationship: &'static str,
    pub granted_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct TruthRow {
    pub nhs_number: String,
    pub label: &'static str,
    pub scenario: Option<Scenario>,
    pub persona: Persona,
    /// `obvious` or `subtle` for monitored patients.
    pub intensity: Option<&'static str>,
}

/// A generated practice.
#[derive(Debug, Default)]
pub struct Practice {
    pub audit: Vec<AuditRow>,
    pub entries: Vec<EntryRow>,
    pub appointments: Vec<AppointmentRow>,
    pub proxies: Vec<ProxyRow>,
    pub truth: Vec<TruthRow>,
}

/// One person's habits.
#[derive(Debug, Clone)]
struct Habits {
    nhs: String,
    account: String,
    devices: Vec<Device>,
    home_ip: String,
    /// (mean local hour, spread in hours, weight)
    peaks: Vec<(f64, f64, f64)>,
    sessions_per_day: f64,
}

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
const VIEW_SECTIONS: &[&str] = &[
    "summary",
    "medications",
    "test_results",
    "consultations",
    "problems",
    "appointments",
    "immunisations",
    "allergies",
    "documents",
    "letters",
];
/// Sections someone looking for disclosures reads.
const PRYING_SECTIONS: &[&str] = &[
    "consultations",
    "problems",
    "documents",
    "letters",
    "test_results",
    "medications",
];
const ORDINARY_CODES: &[(&str, &str, &str)] = &[
    ("38341003", "Hypertensive disorder", "problems"),
    ("271649006", "Systolic blood pressure", "test_results"),
    ("27113001", "Body weight", "test_results"),
    ("195967001", "Asthma", "problems"),
    ("44054006", "Type 2 diabetes mellitus", "problems"),
    ("386661006", "Fever", "consultations"),
    ("25064002", "Headache", "consultations"),
    ("162864005", "Body mass index 30+ - obesity", "test_results"),
    (
        "413350009",
        "Finding with explicit context",
        "consultations",
    ),
    ("185317003", "Telephone encounter", "consultations"),
    ("16331000", "Heartburn", "consultations"),
    ("10509002", "Acute bronchitis", "problems"),
    ("68566005", "Urinary tract infectious disease", "problems"),
    ("57676002", "Joint pain", "consultations"),
];
/// Local-coded entries in the categories no shipped code list covers (found by keywords).
const LOCAL_SENSITIVE: &[(&str, &str, &str)] = &[
    (
        "EMISNQCO1",
        "Nexplanon contraceptive implant inserted",
        "consultations",
    ),
    (
        "EMISNQCO2",
        "Emergency contraception supplied",
        "medications",
    ),
    (
        "EMISNQSH1",
        "Chlamydia screening test positive",
        "test_results",
    ),
    (
        "EMISNQSH2",
        "Referred to sexual health clinic",
        "consultations",
    ),
    ("EMISNQPR1", "Termination of pregnancy referral", "letters"),
    ("EMISNQOA1", "MARAC referral letter received", "documents"),
    (
        "EMISNQOA2",
        "Police domestic abuse notification",
        "documents",
    ),
];

struct Generator<'a> {
    rng: ChaCha8Rng,
    spec: &'a PracticeSpec,
    start: NaiveDate,
    practice: Practice,
    sensitive_by_category: BTreeMap<Category, Vec<(String, String)>>,
    next_entry: u64,
    next_appointment: u64,
    next_event: u64,
    next_id: u64,
}

/// Generates a practice. The catalogue supplies real sensitive codes.
pub fn generate(spec: &PracticeSpec, catalogue: &SensitiveCatalogue) -> Practice {
    let mut sensitive_by_category: BTreeMap<Category, Vec<(String, String)>> = BTreeMap::new();
    for c in &catalogue.codes {
        // Numeric SNOMED codes only, with plain terms, so generated entries look like ordinary record entries.
        if c.code.bytes().all(|b| b.is_ascii_digit()) && !c.term.starts_with('[') {
            sensitive_by_category
                .entry(c.category)
                .or_default()
                .push((c.code.clone(), c.term.clone()));
        }
    }
    let start = spec.as_of - Duration::days(i64::from(spec.days.max(1)) - 1);
    let mut g = Generator {
        rng: ChaCha8Rng::seed_from_u64(spec.seed),
        spec,
        start,
        practice: Practice::default(),
        sensitive_by_category,
        next_entry: 0,
        next_appointment: 0,
        next_event: 0,
        next_id: 0,
    };
    g.run();
    let mut p = g.practice;
    p.audit.sort_by(|a, b| {
        (a.at, &a.nhs_number, &a.session_id).cmp(&(b.at, &b.nhs_number, &b.session_id))
    });
    p.entries
        .sort_by(|a, b| (a.recorded_at, &a.entry_id).cmp(&(b.recorded_at, &b.entry_id)));
    p.appointments
        .sort_by(|a, b| (a.starts_at, &a.appointment_id).cmp(&(b.starts_at, &b.appointment_id)));
    p.truth.sort_by(|a, b| a.nhs_number.cmp(&b.nhs_number));
    p
}

/// A valid NHS number in the 999 range (reserved for test data, never issued to a person).
pub fn synthetic_nhs_number(rng: &mut impl Rng) -> String {
    loop {
        let mut digits = vec![9u8, 9, 9];
        digits.extend((0..6).map(|_| rng.gen_range(0..10u8)));
        let sum: u32 = digits
            .iter()
            .zip((2..=10u32).rev())
            .map(|(d, w)| u32::from(*d) * w)
            .sum();
        let check = match 11 - sum % 11 {
            11 => 0,
            10 => continue,
            c => c,
        };
        digits.push(check as u8);
        return digits.iter().map(|d| char::from(b'0' + d)).collect();
    }
}

impl Generator<'_> {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!(
            "{prefix}-{:06x}{:04x}",
            self.rng.gen::<u32>() & 0xff_ffff,
            self.next_id & 0xffff
        )
    }

    fn device(&mut self, kind: &str) -> Device {
        let (uas, channel) = match kind {
            "tablet" => (TABLET_UAS, "nhs_app"),
            "web" => (WEB_UAS, "web"),
            _ => (PHONE_UAS, "nhs_app"),
        };
        let ua = uas[self.rng.gen_range(0..uas.len())];
        Device {
            id: self.id("dev"),
            user_agent: ua,
            channel,
        }
    }

    fn home_ip(&mut self) -> String {
        let r = &mut self.rng;
        format!(
            "{}.{}.{}.{}",
            [81, 86, 90, 92, 109, 146][r.gen_range(0..6)],
            r.gen_range(1..255),
            r.gen_range(0..256),
            r.gen_range(1..255)
        )
    }

    fn mobile_ip(&mut self) -> String {
        let r = &mut self.rng;
        format!(
            "2a01:4c8:{:x}:{:x}::{:x}",
            r.gen_range(0x1000..0xffff),
            r.gen_range(1..0xffff),
            r.gen_range(1..0xffff)
        )
    }

    fn habits(&mut self, nhs: String) -> Habits {
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
        Habits {
            nhs,
            account: self.id("nhsl"),
            devices: vec![phone],
            home_ip: self.home_ip(),
            peaks,
            sessions_per_day: self.rng.gen_range(0.08..0.45),
        }
    }

    fn local_hour(&mut self, peaks: &[(f64, f64, f64)]) -> f64 {
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

    fn days(&self) -> impl Iterator<Item = NaiveDate> {
        let start = self.start;
        (0..self.spec.days.max(1)).map(move |d| start + Duration::days(i64::from(d)))
    }

    /// One session: login, some views, sometimes another action, logout. Returns its end.
    #[allow(clippy::too_many_arguments)]
    fn session(
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
        let session_id = self.id("sess");
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
        for _ in 0..views.max(1) {
            t += Duration::seconds(self.rng.gen_range(8..150));
            let section = sections[self.rng.gen_range(0..sections.len())];
            let action = if section == "documents" && self.rng.gen_bool(0.15) {
                "download"
            } else {
                "view"
            };
            push(self, t, action, Some(section), "success");
        }
        if role == "patient" && self.rng.gen_bool(0.06) {
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
        t
    }

    /// A person's ordinary use of their own record over the period, from `from` to `until` (days).
    fn ordinary_use(
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
                let hour = self.local_hour(&h.peaks);
                let at = at_local(self.spec.timezone, day, hour);
                let k = device_for_day(day, &mut self.rng).min(h.devices.len() - 1);
                let device = h.devices[k].clone();
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
                let views = self.rng.gen_range(1..6);
                self.session(
                    &h.nhs,
                    &h.account,
                    "patient",
                    &device,
                    &ip,
                    at,
                    views,
                    VIEW_SECTIONS,
                );
            }
        }
    }

    fn entry(
        &mut self,
        nhs: &str,
        at: DateTime<Utc>,
        code: &str,
        term: &str,
        section: &'static str,
        visible: bool,
    ) {
        self.next_entry += 1;
        self.practice.entries.push(EntryRow {
            entry_id: format!("E{:07}", self.next_entry),
            nhs_number: nhs.to_string(),
            recorded_at: at,
            code: code.to_string(),
            term: term.to_string(),
            section,
            visible_online: visible,
        });
    }

    fn ordinary_entries(&mut self, nhs: &str) {
        let days: Vec<NaiveDate> = self.days().collect();
        for day in days {
            if day.weekday().number_from_monday() <= 5 && self.rng.gen_bool(0.04) {
                let (code, term, section) =
                    ORDINARY_CODES[self.rng.gen_range(0..ORDINARY_CODES.len())];
                let at = at_local(self.spec.timezone, day, self.rng.gen_range(8.5..18.0));
                let visible = self.rng.gen_bool(0.98);
                self.entry(nhs, at, code, term, section, visible);
            }
        }
    }

    fn sensitive_entry(&mut self, nhs: &str, at: DateTime<Utc>) -> DateTime<Utc> {
        if self.rng.gen_bool(0.3) {
            let (code, term, section) =
                LOCAL_SENSITIVE[self.rng.gen_range(0..LOCAL_SENSITIVE.len())];
            self.entry(nhs, at, code, term, section, true);
        } else {
            let cats = [
                Category::DomesticAbuse,
                Category::MentalHealth,
                Category::SelfHarm,
                Category::Safeguarding,
                Category::Injury,
            ];
            let cat = cats[self.rng.gen_range(0..cats.len())];
            let list = self
                .sensitive_by_category
                .get(&cat)
                .cloned()
                .unwrap_or_default();
            if let Some((code, term)) = list.choose(&mut self.rng) {
                self.entry(nhs, at, code, term, "problems", true);
            }
        }
        at
    }

    fn appointments(&mut self, nhs: &str, per_month: f64) -> Vec<AppointmentRow> {
        let mut made = Vec::new();
        // Appointments already booked for the next two weeks are in the export too.
        let days: Vec<NaiveDate> = self
            .days()
            .chain((1..=14).map(|d| self.spec.as_of + Duration::days(d)))
            .collect();
        for day in days {
            if day.weekday().number_from_monday() > 5
                || !self.rng.gen_bool((per_month / 21.0).min(1.0))
            {
                continue;
            }
            let starts = at_local(
                self.spec.timezone,
                day,
                f64::from(self.rng.gen_range(16..36)) / 2.0,
            );
            let mode = *[
                "face_to_face",
                "face_to_face",
                "face_to_face",
                "telephone",
                "telephone",
                "video",
                "home_visit",
            ]
            .choose(&mut self.rng)
            .unwrap_or(&"face_to_face");
            let status = if day > self.spec.as_of {
                "booked"
            } else {
                *[
                    "attended",
                    "attended",
                    "attended",
                    "attended",
                    "attended",
                    "attended",
                    "did_not_attend",
                    "cancelled",
                ]
                .choose(&mut self.rng)
                .unwrap_or(&"attended")
            };
            self.next_appointment += 1;
            let a = AppointmentRow {
                appointment_id: format!("A{:07}", self.next_appointment),
                nhs_number: nhs.to_string(),
                starts_at: starts,
                ends_at: starts
                    + Duration::minutes(*[10, 10, 15, 20].choose(&mut self.rng).unwrap_or(&10)),
                mode,
                status,
            };
            self.practice.appointments.push(a.clone());
            made.push(a);
        }
        made
    }

    fn truth(&mut self, nhs: &str, persona: Persona, scenario: Option<(Scenario, &'static str)>) {
        self.practice.truth.push(TruthRow {
            nhs_number: nhs.to_string(),
            label: if scenario.is_some() {
                "monitored"
            } else {
                "benign"
            },
            scenario: scenario.map(|s| s.0),
            persona,
            intensity: scenario.map(|s| s.1),
        });
    }

    fn run(&mut self) {
        let n = self.spec.patients.max(1);
        let mut numbers = std::collections::BTreeSet::new();
        while numbers.len() < n {
            numbers.insert(synthetic_nhs_number(&mut self.rng));
        }
        let mut numbers: Vec<String> = numbers.into_iter().collect();
        numbers.shuffle(&mut self.rng);
        let mut queue = numbers.into_iter();

        // About 5% monitored, spread over the scenarios; the rest benign, with many look-alikes.
        let monitored = ((n as f64) * 0.05).round().max(1.0) as usize;
        let mut scenario_cycle = Scenario::ALL.iter().copied().cycle();
        for i in 0..monitored {
            let scenario = scenario_cycle.next().unwrap_or(Scenario::OddHoursOwnPhone);
            let intensity = if i % 2 == 0 { "obvious" } else { "subtle" };
            let Some(victim) = queue.next() else { break };
            let abuser = if scenario == Scenario::AbuserPhoneTwoRecords {
                queue.next()
            } else {
                None
            };
            self.monitored(victim, abuser, scenario, intensity);
        }
        let lookalikes = [
            (Persona::PhoneReplacement, 0.05),
            (Persona::NightShift, 0.04),
            (Persona::EntryChecker, 0.05),
            (Persona::ProxyParent, 0.03),
            (Persona::SharedTabletCouple, 0.04),
            (Persona::Traveller, 0.04),
            (Persona::PostAppointmentReader, 0.05),
            (Persona::TwoOwnDevices, 0.06),
            (Persona::RestrictedOwnUse, 0.015),
            (Persona::NoOnlineAccess, 0.25),
        ];
        for (persona, share) in lookalikes {
            let count = ((n as f64) * share).round() as usize;
            for _ in 0..count {
                let Some(nhs) = queue.next() else { break };
                self.benign(nhs, persona, &mut queue);
            }
        }
        for nhs in queue.by_ref() {
            self.benign(nhs, Persona::Ordinary, &mut std::iter::empty());
        }
    }

    fn benign(&mut self, nhs: String, persona: Persona, queue: &mut dyn Iterator<Item = String>) {
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
                h.devices.push(second);
                self.ordinary_use(&h, &|_, r| usize::from(r.gen_bool(0.35)), first, last);
            }
            Persona::PhoneReplacement => {
                let new_phone = self.device("phone");
                h.devices.push(new_phone);
                let switch = self.start
                    + Duration::days(i64::from(self.spec.days) * self.rng.gen_range(50..90) / 100);
                self.ordinary_use(&h, &move |d, _| usize::from(d >= switch), first, last);
            }
            Persona::NightShift => {
                h.peaks = vec![
                    (self.rng.gen_range(1.0..4.0), 0.8, 1.0),
                    (self.rng.gen_range(14.0..16.0), 1.0, 0.4),
                ];
                self.ordinary_use(&h, &|_, _| 0, first, last);
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
                h.devices.push(tablet.clone());
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
                    self.truth(&child, Persona::ProxyChild, None);
                }
            }
            Persona::SharedTabletCouple => {
                let tablet = self.device("tablet");
                h.devices.push(tablet.clone());
                self.ordinary_use(&h, &|_, r| usize::from(r.gen_bool(0.5)), first, last);
                if let Some(partner) = queue.next() {
                    let mut p = self.habits(partner.clone());
                    p.home_ip = h.home_ip.clone();
                    p.devices.push(tablet);
                    self.ordinary_entries(&partner);
                    self.appointments(&partner, 0.8);
                    self.ordinary_use(&p, &|_, r| usize::from(r.gen_bool(0.5)), first, last);
                    self.truth(&partner, Persona::SharedTabletCouple, None);
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
                self.entry(
                    &nhs,
                    at,
                    CODE_104,
                    "Enhanced review indicated before granting access to own health record",
                    "summary",
                    true,
                );
                self.ordinary_use(&h, &|_, _| 0, first, last);
            }
            Persona::ProxyChild | Persona::AbuserOwnRecord => {}
        }
        if persona != Persona::ProxyChild {
            self.truth(&nhs, persona, None);
        }
    }

    /// A monitored patient: ordinary own use, plus the scenario in the last weeks of the period.
    fn monitored(
        &mut self,
        nhs: String,
        abuser: Option<String>,
        scenario: Scenario,
        intensity: &'static str,
    ) {
        let obvious = intensity == "obvious";
        let h = self.habits(nhs.clone());
        self.ordinary_entries(&nhs);
        let appts = self.appointments(
            &nhs,
            if scenario == Scenario::ViewsDuringAppointment {
                3.0
            } else {
                0.8
            },
        );
        let days = i64::from(self.spec.days.max(1));
        // The watching starts inside the last fortnight (a detection run's default recent window).
        let onset =
            self.spec.as_of - Duration::days(self.rng.gen_range(3..(days / 2).clamp(4, 12)));
        self.ordinary_use(&h, &|_, _| 0, self.start, self.spec.as_of);
        let other_device = if self.rng.gen_bool(0.5) {
            self.device("phone")
        } else {
            self.device("tablet")
        };
        // The watcher usually lives with the patient (same household address); sometimes not.
        let watcher_ip = if self.rng.gen_bool(0.7) {
            h.home_ip.clone()
        } else {
            self.home_ip()
        };
        let account = h.account.clone();
        let prying_hour = |g: &mut Self| g.rng.gen_range(6.0..23.5);
        match scenario {
            Scenario::AbuserDeviceAfterSensitive => {
                let n = if obvious { 3 } else { 1 };
                for k in 0..n {
                    let day = (onset + Duration::days(k * 3)).min(self.spec.as_of);
                    let at = at_local(self.spec.timezone, day, self.rng.gen_range(9.0..16.0));
                    self.sensitive_entry(&nhs, at);
                    let when = at + Duration::minutes(self.rng.gen_range(20..300));
                    self.session(
                        &nhs,
                        &account,
                        "patient",
                        &other_device,
                        &watcher_ip,
                        when,
                        if obvious { 5 } else { 3 },
                        PRYING_SECTIONS,
                    );
                }
                if obvious {
                    let when = at_local(
                        self.spec.timezone,
                        self.spec.as_of - Duration::days(1),
                        prying_hour(self),
                    );
                    self.session(
                        &nhs,
                        &account,
                        "patient",
                        &other_device,
                        &watcher_ip,
                        when,
                        4,
                        PRYING_SECTIONS,
                    );
                }
            }
            Scenario::AbuserPhoneTwoRecords => {
                if let Some(abuser_nhs) = abuser {
                    let a = self.habits(abuser_nhs.clone());
                    self.ordinary_entries(&abuser_nhs);
                    self.appointments(&abuser_nhs, 0.8);
                    self.ordinary_use(&a, &|_, _| 0, self.start, self.spec.as_of);
                    let phone = a.devices[0].clone();
                    let sessions = if obvious { 6 } else { 2 };
                    for _ in 0..sessions {
                        let day = onset
                            + Duration::days(
                                self.rng.gen_range(0..=(self.spec.as_of - onset).num_days()),
                            );
                        let when =
                            at_local(self.spec.timezone, day, self.local_hour(&a.peaks.clone()));
                        let ip = a.home_ip.clone();
                        self.session(
                            &nhs,
                            &account,
                            "patient",
                            &phone,
                            &ip,
                            when,
                            4,
                            PRYING_SECTIONS,
                        );
                    }
                    if obvious {
                        let at = at_local(self.spec.timezone, onset + Duration::days(2), 11.0);
                        self.sensitive_entry(&nhs, at);
                    }
                    self.truth(&abuser_nhs, Persona::AbuserOwnRecord, None);
                }
            }
            Scenario::ViewsDuringAppointment => {
                // Visits after the watching began; make one if the diary has none.
                let mut visits: Vec<AppointmentRow> = appts
                    .iter()
                    .filter(|a| {
                        a.mode == "face_to_face"
                            && a.status == "attended"
                            && a.starts_at.date_naive() >= onset
                    })
                    .cloned()
                    .collect();
                if visits.is_empty() {
                    let mut day = onset + Duration::days(self.rng.gen_range(0..4));
                    while day.weekday().number_from_monday() > 5 {
                        day += Duration::days(1);
                    }
                    let day = day.min(self.spec.as_of);
                    let starts = at_local(
                        self.spec.timezone,
                        day,
                        f64::from(self.rng.gen_range(18..34)) / 2.0,
                    );
                    self.next_appointment += 1;
                    let a = AppointmentRow {
                        appointment_id: format!("A{:07}", self.next_appointment),
                        nhs_number: nhs.clone(),
                        starts_at: starts,
                        ends_at: starts + Duration::minutes(15),
                        mode: "face_to_face",
                        status: "attended",
                    };
                    self.practice.appointments.push(a.clone());
                    visits.push(a);
                }
                let take = if obvious { visits.len().min(3) } else { 1 };
                for a in visits.into_iter().take(take) {
                    let when = a.starts_at + Duration::minutes(self.rng.gen_range(1..8));
                    self.session(
                        &nhs,
                        &account,
                        "patient",
                        &other_device,
                        &watcher_ip,
                        when,
                        3,
                        &["appointments", "consultations", "problems"],
                    );
                }
            }
            Scenario::AccountChangeTakeover => {
                let at = at_local(self.spec.timezone, onset, prying_hour(self));
                let phone = h.devices[0].clone();
                let session = self.id("sess");
                let action = if self.rng.gen_bool(0.5) {
                    "change_password"
                } else {
                    "change_contact_details"
                };
                self.practice.audit.push(AuditRow {
                    event_id: None,
                    at,
                    nhs_number: nhs.clone(),
                    account_id: account.clone(),
                    actor_role: "patient",
                    device: phone,
                    ip: watcher_ip.clone(),
                    session_id: session,
                    action,
                    section: None,
                    outcome: "success",
                });
                let sessions = if obvious { 6 } else { 2 };
                for k in 0..sessions {
                    let when =
                        at + Duration::hours(self.rng.gen_range(2..30)) + Duration::days(k * 2);
                    if when.date_naive() > self.spec.as_of {
                        break;
                    }
                    self.session(
                        &nhs,
                        &account,
                        "patient",
                        &other_device,
                        &watcher_ip,
                        when,
                        3,
                        PRYING_SECTIONS,
                    );
                }
            }
            Scenario::OddHoursOwnPhone => {
                let phone = h.devices[0].clone();
                // Hours the patient never uses: the hour furthest from all their peaks.
                let quiet = (0..24)
                    .map(f64::from)
                    .max_by(|a, b| {
                        let gap = |x: f64| {
                            h.peaks
                                .iter()
                                .map(|p| {
                                    ((x - p.0).rem_euclid(24.0)).min((p.0 - x).rem_euclid(24.0))
                                })
                                .fold(f64::MAX, f64::min)
                        };
                        gap(*a).total_cmp(&gap(*b))
                    })
                    .unwrap_or(3.0);
                let sessions = if obvious { 7 } else { 3 };
                for _ in 0..sessions {
                    let day = onset
                        + Duration::days(
                            self.rng.gen_range(0..=(self.spec.as_of - onset).num_days()),
                        );
                    let when = at_local(
                        self.spec.timezone,
                        day,
                        (quiet + self.rng.gen_range(-1.0..1.0)).rem_euclid(24.0),
                    );
                    let ip = h.home_ip.clone();
                    self.session(
                        &nhs,
                        &account,
                        "patient",
                        &phone,
                        &ip,
                        when,
                        4,
                        PRYING_SECTIONS,
                    );
                }
            }
            Scenario::RegularPolling => {
                let device = if self.rng.gen_bool(0.5) {
                    other_device.clone()
                } else {
                    h.devices[0].clone()
                };
                let every_hours = if obvious { 4 } else { 24 };
                let mut t = at_local(
                    self.spec.timezone,
                    onset,
                    7.0 + self.rng.gen_range(0.0..1.0),
                );
                let end = at_local(self.spec.timezone, self.spec.as_of, 23.9);
                while t < end {
                    let jitter = Duration::seconds(self.rng.gen_range(-90..90));
                    self.session(
                        &nhs,
                        &account,
                        "patient",
                        &device,
                        &watcher_ip,
                        t + jitter,
                        1,
                        &["consultations", "problems"],
                    );
                    t += Duration::hours(every_hours);
                }
            }
            Scenario::AccessAfter104 => {
                let at = at_local(self.spec.timezone, onset, 10.0);
                self.sensitive_entry(&nhs, at - Duration::days(1));
                self.entry(
                    &nhs,
                    at,
                    CODE_104,
                    "Enhanced review indicated before granting access to own health record",
                    "summary",
                    true,
                );
                let sessions = if obvious { 5 } else { 2 };
                for _ in 0..sessions {
                    let when = at
                        + Duration::hours(
                            self.rng
                                .gen_range(3..((self.spec.as_of - onset).num_hours().max(4))),
                        );
                    self.session(
                        &nhs,
                        &account,
                        "patient",
                        &other_device,
                        &watcher_ip,
                        when,
                        4,
                        PRYING_SECTIONS,
                    );
                }
                if !obvious && self.rng.gen_bool(0.3) {
                    let later = at_local(self.spec.timezone, self.spec.as_of, 9.0);
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
        self.truth(&nhs, Persona::Ordinary, Some((scenario, intensity)));
    }
}

/// A local wall-clock time on a day, as a UTC instant (a time in the spring-forward gap moves an hour on).
fn at_local(tz: Tz, day: NaiveDate, hour: f64) -> DateTime<Utc> {
    let secs = (hour * 3600.0) as i64;
    let naive = day.and_hms_opt(0, 0, 0).unwrap_or_default() + Duration::seconds(secs);
    tz.from_local_datetime(&naive)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(naive + Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&naive))
}

fn poisson(rng: &mut impl Rng, lambda: f64) -> usize {
    let l = (-lambda).exp();
    let mut k = 0;
    let mut p = 1.0;
    loop {
        p *= rng.gen_range(0.0..1.0);
        if p <= l || k > 50 {
            return k;
        }
        k += 1;
    }
}

/// `at` in the practice's local time, naive (how GP systems export times).
pub fn local_naive(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz)
        .naive_local()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

pub fn hour_of(at: DateTime<Utc>, tz: Tz) -> u32 {
    at.with_timezone(&tz).hour()
}
