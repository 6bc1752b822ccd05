//! A synthetic practice in the data contract's formats, with labelled monitoring scenarios, for measuring
//! detectors where no labelled real data exists.
//!
//! Everyone has a daily rhythm in local time, sessions (login, a few views, logout), stable devices, a household
//! address and appointments; entries appear in their records. Benign people who look suspicious to a naive
//! detector are common (see [`Persona`]); a few percent are monitored in one of several [`Scenario`]s, obvious or
//! subtle. Everything is drawn from one seeded generator, so a seed gives the same practice byte for byte.

mod habits;
mod personas;
pub mod scenarios;
pub mod write;

pub use personas::Persona;

use habits::HabitSettings;
use scenarios::WatchSettings;
pub use scenarios::{Intensity, Onset, Scenario};

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::context::catalogue::{Category, SensitiveCatalogue};
use crate::context::CODE_104;

/// What the generator is asked for.
#[derive(Debug, Clone)]
pub struct PracticeSpec {
    pub patients: usize,
    pub days: u32,
    pub seed: u64,
    /// The last day of data (inclusive), the day a detection run would look back from.
    pub as_of: NaiveDate,
    pub timezone: Tz,
    /// When watchers began.
    pub onset: Onset,
    /// How hard they look.
    pub intensity: Intensity,
    /// The share of devices (with ten sessions or more) whose app is reinstalled once (see [`reinstall`]).
    pub reinstalls: f64,
}

#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub user_agent: std::borrow::Cow<'static, str>,
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
    /// `established`, `baseline` or `recent`: when the watching began, for monitored patients.
    pub onset: Option<&'static str>,
    /// The day the watching began (the first day a watcher session may fall on), for monitored patients.
    pub watch_from: Option<NaiveDate>,
    /// The watcher's reading visits on the record, for monitored patients.
    pub watcher_visits: Option<usize>,
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
/// Sections the account holder reads to manage their own care.
const BROAD_SECTIONS: &[&str] = &["summary", "appointments", "immunisations", "allergies"];
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

/// When a session began and ended.
type Span = (DateTime<Utc>, DateTime<Utc>);

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
    /// How watchers behave in this practice.
    watch: WatchSettings,
    /// The chance that a holder's session books, orders or sends a message (drawn per practice).
    owner_action: f64,
    /// How benign people vary in this practice.
    habit: HabitSettings,
    /// The current patient's sessions so far, per device: one app on one device holds one session at a time, so a
    /// new session that would overlap one is moved to after it (cleared for each patient, so memory stays small).
    busy: HashMap<(String, String), Vec<Span>>,
    /// The current monitored patient's watcher visits so far (see [`TruthRow::watcher_visits`]).
    watcher_visits: usize,
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
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let watch = WatchSettings::draw(&mut rng);
    let owner_action = rng.gen_range(0.03..0.12);
    let habit = HabitSettings::draw(&mut rng);
    let mut g = Generator {
        habit,
        watch,
        owner_action,
        rng,
        spec,
        start,
        practice: Practice::default(),
        sensitive_by_category,
        next_entry: 0,
        next_appointment: 0,
        watcher_visits: 0,
        next_event: 0,
        busy: HashMap::new(),
        next_id: 0,
    };
    g.run();
    let mut p = g.practice;
    // The export ends at midnight after the last day: a watcher's read a day after an entry, or the tail of a
    // session that runs past midnight, is not in it yet.
    let end = at_local(spec.timezone, spec.as_of + Duration::days(1), 0.0);
    p.audit.retain(|a| a.at < end);
    p.entries.retain(|e| e.recorded_at < end);
    p.audit.sort_by(|a, b| {
        (a.at, &a.nhs_number, &a.session_id).cmp(&(b.at, &b.nhs_number, &b.session_id))
    });
    p.entries
        .sort_by(|a, b| (a.recorded_at, &a.entry_id).cmp(&(b.recorded_at, &b.entry_id)));
    p.appointments
        .sort_by(|a, b| (a.starts_at, &a.appointment_id).cmp(&(b.starts_at, &b.appointment_id)));
    p.truth.sort_by(|a, b| a.nhs_number.cmp(&b.nhs_number));
    if spec.reinstalls > 0.0 {
        reinstall(&mut p, spec.reinstalls, spec.seed);
    }
    p
}

/// Sessions a device needs before its app may be reinstalled.
const REINSTALL_MIN_SESSIONS: usize = 10;

/// Apps reinstalled: a device id belongs to an installation, not to the phone. Each device with at least
/// [`REINSTALL_MIN_SESSIONS`] sessions, with probability `share`, carries a new id and the app's next minor version
/// from a session drawn from its last four fifths onwards, on every record it reads. Drawn from a generator of its
/// own, so the rest of the practice is the same as without reinstalls; labels do not change.
fn reinstall(p: &mut Practice, share: f64, seed: u64) {
    // Each device's sessions, by their first event (the audit is in time order).
    let mut sessions: BTreeMap<&str, Vec<(DateTime<Utc>, &str)>> = BTreeMap::new();
    for a in &p.audit {
        let list = sessions.entry(&a.device.id).or_default();
        if !list.iter().any(|(_, s)| *s == a.session_id) {
            list.push((a.at, &a.session_id));
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7265_696e_7374_616c);
    // Device -> (the first session under the new id, the new id).
    let mut from: HashMap<String, (DateTime<Utc>, String)> = HashMap::new();
    for (device, list) in &sessions {
        if list.len() >= REINSTALL_MIN_SESSIONS && rng.gen_bool(share.clamp(0.0, 1.0)) {
            let at = list[rng.gen_range(list.len() / 5..list.len())].0;
            from.insert(
                device.to_string(),
                (at, format!("dev-{:010x}", rng.gen::<u64>() >> 24)),
            );
        }
    }
    let starts: HashMap<(String, String), DateTime<Utc>> = sessions
        .iter()
        .filter(|(d, _)| from.contains_key(**d))
        .flat_map(|(d, list)| {
            list.iter()
                .map(move |(t, s)| ((d.to_string(), s.to_string()), *t))
        })
        .collect();
    for a in &mut p.audit {
        let Some((since, id)) = from.get(&a.device.id) else {
            continue;
        };
        let started = starts
            .get(&(a.device.id.clone(), a.session_id.clone()))
            .copied()
            .unwrap_or(a.at);
        if started >= *since {
            a.device.id = id.clone();
            a.device.user_agent = next_app_version(&a.device.user_agent).into();
        }
    }
}

/// The user agent with the app's minor version one up (`NHSApp/2.41.0` to `NHSApp/2.42.0`); others unchanged.
fn next_app_version(agent: &str) -> String {
    let Some(rest) = agent.strip_prefix("NHSApp/") else {
        return agent.to_string();
    };
    let (version, tail) = rest.split_at(rest.find(' ').unwrap_or(rest.len()));
    let mut parts = version.split('.');
    match (
        parts.next(),
        parts.next().and_then(|m| m.parse::<u32>().ok()),
    ) {
        (Some(major), Some(minor)) => format!("NHSApp/{major}.{}.0{tail}", minor + 1),
        _ => agent.to_string(),
    }
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

    fn days(&self) -> impl Iterator<Item = NaiveDate> {
        let start = self.start;
        (0..self.spec.days.max(1)).map(move |d| start + Duration::days(i64::from(d)))
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

    /// The 104 code: enhanced review before access to new entries.
    fn code_104(&mut self, nhs: &str, at: DateTime<Utc>) {
        self.entry(
            nhs,
            at,
            CODE_104,
            "Enhanced review indicated before granting access to own health record",
            "summary",
            true,
        );
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

    fn truth(&mut self, nhs: &str, persona: Persona) {
        self.practice.truth.push(TruthRow {
            nhs_number: nhs.to_string(),
            label: "benign",
            scenario: None,
            persona,
            intensity: None,
            onset: None,
            watch_from: None,
            watcher_visits: None,
        });
    }

    fn truth_monitored(
        &mut self,
        nhs: &str,
        scenario: Scenario,
        intensity: &'static str,
        onset: &'static str,
        watch_from: NaiveDate,
    ) {
        self.practice.truth.push(TruthRow {
            nhs_number: nhs.to_string(),
            label: "monitored",
            scenario: Some(scenario),
            persona: Persona::Ordinary,
            intensity: Some(intensity),
            onset: Some(onset),
            watch_from: Some(watch_from),
            watcher_visits: Some(self.watcher_visits),
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
            let obvious = match self.spec.intensity {
                Intensity::Obvious => true,
                Intensity::Subtle => false,
                Intensity::Mixed => i % 2 == 0,
            };
            let Some(victim) = queue.next() else { break };
            let abuser = if scenario == Scenario::AbuserPhoneTwoRecords {
                queue.next()
            } else {
                None
            };
            self.monitored(victim, abuser, scenario, obvious, self.spec.onset);
            self.busy.clear();
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
                self.busy.clear();
            }
        }
        for nhs in queue.by_ref() {
            self.benign(nhs, Persona::Ordinary, &mut std::iter::empty());
            self.busy.clear();
        }
    }
}

/// A local wall-clock time on a day, as a UTC instant (a time in the spring-forward gap moves an hour on).
pub(super) fn at_local(tz: Tz, day: NaiveDate, hour: f64) -> DateTime<Utc> {
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

pub(super) fn poisson(rng: &mut impl Rng, lambda: f64) -> usize {
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
