//! The things detection reasons about: sessions, sensitive entries, visits, findings and their severity, and the
//! figures of a run. Plain data, no I/O.

use std::collections::BTreeSet;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::context::catalogue::Category;

/// Actions that read the record.
pub const READ_ACTIONS: [&str; 2] = ["view", "download"];
/// Actions that change how the account is reached.
pub const ACCOUNT_CHANGES: [&str; 2] = ["change_password", "change_contact_details"];
/// What an account holder does with their own record and a watcher has no reason to: book or cancel an
/// appointment, order a repeat prescription, send the practice a message.
pub const OWNER_ACTIONS: [&str; 4] = [
    "book_appointment",
    "cancel_appointment",
    "order_prescription",
    "send_message",
];
/// Sections where disclosures, injuries and other agencies' letters are found: what a watcher reads.
pub const PRYING_SECTIONS: [&str; 6] = [
    "consultations",
    "problems",
    "documents",
    "letters",
    "test_results",
    "medications",
];

/// Sections the account holder reads to manage their own care and a watcher has little use for. The summary and
/// the record in general are in neither list: anyone who opens the record reads them.
pub const CARE_SECTIONS: [&str; 3] = ["appointments", "allergies", "immunisations"];

/// Device keys for events with no `device_id`: the user agent with its version numbers masked (so an app update is
/// not a new device; versions that take turns on one record are two phones, see
/// [`crate::detect::sessions::agent_devices`]), else nothing. An address is never a device key: a phone moves
/// between Wi-Fi and mobile data, and thousands of people sit behind one address. The rules that follow a device across patients' records use real
/// device ids only.
pub const UA_KEY: &str = "ua:";
pub const UNKNOWN_DEVICE: &str = "unknown device";

/// A device key that came from a real `device_id`.
pub fn is_identified_device(key: &str) -> bool {
    !(key.starts_with(UA_KEY) || key == UNKNOWN_DEVICE)
}

/// Where an export has no device ids: a user agent seen from one address, the key under which such a device is
/// followed across records (see [`agent_at_address`]). Not a device key any session carries.
const AT_ADDRESS: char = '\u{1f}';

/// The cross-record key of a user agent (a [`UA_KEY`] device key) seen from one address: in an export without
/// device ids, the same phone model on the same household connection is as near as the export comes to one device.
pub fn agent_at_address(ua_key: &str, ip: &str) -> String {
    format!("{ua_key}{AT_ADDRESS}{ip}")
}

/// A key made by [`agent_at_address`].
pub fn is_agent_at_address(key: &str) -> bool {
    key.starts_with(UA_KEY) && key.contains(AT_ADDRESS)
}

/// A device key that tells one device from another at all (a real id, or a user agent standing in for one).
pub fn is_known_device(key: &str) -> bool {
    key != UNKNOWN_DEVICE
}

/// Text a batch's sessions share: one allocation per distinct value (a patient's NHS number, a device, a user agent),
/// not one per session, so a batch of millions of sessions holds its strings once.
pub type Text = std::sync::Arc<str>;

/// Hash maps and sets on detection's hot paths (a batch's strings, each patient's model of the holder, the run's
/// device histories): polars' hasher rather than the standard library's SipHash, which resists hash flooding and
/// took 3% of detection's time. Nothing reads them in an order that matters: ties are broken by key.
pub type FastMap<K, V> = polars::prelude::PlHashMap<K, V>;
pub type FastSet<T> = polars::prelude::PlHashSet<T>;

/// Hands out one [`Text`] per distinct value.
#[derive(Default)]
pub struct Interner(FastSet<Text>);

impl Interner {
    pub fn get(&mut self, v: &str) -> Text {
        if let Some(k) = self.0.get(v) {
            return k.clone();
        }
        let k: Text = v.into();
        self.0.insert(k.clone());
        k
    }
}

/// One login session on one record: the unit the rules reason about.
#[derive(Debug, Clone)]
pub struct Session {
    pub nhs_number: Text,
    pub start: i64,
    pub end: i64,
    pub device: Text,
    pub account: Text,
    pub role: Text,
    pub ip: Option<Text>,
    pub user_agent: Option<Text>,
    pub events: u32,
    /// Views and downloads.
    pub reads: u32,
    /// Reads of the sections where disclosures are found, or of the record in general (no section).
    pub prying_reads: u32,
    /// Reads of the sections the holder reads to manage their care ([`CARE_SECTIONS`]).
    pub broad_reads: u32,
    /// Bookings, cancellations, prescription orders and messages.
    pub owner_actions: u32,
    /// When the account's password or contact details were changed in this session.
    pub account_change_at: Option<i64>,
    pub account_change: Option<Text>,
}

impl Session {
    /// The session shows the account holder managing their own care: a booking, an order, a message, or a read of
    /// [`CARE_SECTIONS`].
    pub fn holder_like(&self) -> bool {
        self.owner_actions > 0 || self.broad_reads > 0
    }

    /// The session read a section where disclosures are found ([`PRYING_SECTIONS`]), or the record in general, and
    /// managed no care. A visit that opens only the summary (the app's front page) reads nothing a watcher is after,
    /// and is neither.
    pub fn watcher_like(&self) -> bool {
        self.prying_reads > 0 && !self.holder_like()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }

    pub fn of_score(score: f64) -> Severity {
        if score >= 60.0 {
            Severity::High
        } else if score >= 40.0 {
            Severity::Medium
        } else {
            Severity::Low
        }
    }
}

/// One reason to look at a patient's record access.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub finding_id: String,
    pub nhs_number: String,
    pub rule_id: &'static str,
    pub severity: Severity,
    pub score: f64,
    pub first_at: i64,
    pub last_at: i64,
    pub device_id: Option<String>,
    pub event_count: u64,
    pub explanation: String,
    /// Starts of the sessions behind the finding (for the report's charts; not an output column).
    #[serde(skip)]
    pub evidence: Vec<i64>,
    /// Every device the explanation can name (the finding's device and its sessions' devices), so a pseudonymised
    /// export can replace each short device id in the text.
    #[serde(skip)]
    pub devices: Vec<String>,
    /// The finding rests on the holder's model of hours alone (a read on the holder's own device at an hour they do
    /// not keep): scoring counts it with the foreign hours, not as a witness of its own.
    #[serde(skip)]
    pub on_holders_hours: bool,
}

impl Finding {
    /// Builds a finding with a deterministic id (the same evidence gives the same id on every run).
    pub fn new(
        nhs: &str,
        rule_id: &'static str,
        score: f64,
        sessions: &[&Session],
        device: Option<&str>,
        explanation: String,
    ) -> Finding {
        let score = score.clamp(0.0, 100.0).round();
        let first_at = sessions.iter().map(|s| s.start).min().unwrap_or(0);
        let last_at = sessions.iter().map(|s| s.end).max().unwrap_or(0);
        let mut h = Sha256::new();
        h.update(rule_id);
        h.update(nhs);
        h.update(first_at.to_le_bytes());
        h.update(device.unwrap_or(""));
        Finding {
            finding_id: format!("f-{}", &hex::encode(h.finalize())[..16]),
            nhs_number: nhs.to_string(),
            rule_id,
            severity: Severity::of_score(score),
            score,
            first_at,
            last_at,
            device_id: device.map(str::to_string),
            event_count: sessions.iter().map(|s| u64::from(s.events)).sum(),
            explanation,
            evidence: sessions.iter().map(|s| s.start).collect(),
            devices: device
                .into_iter()
                .chain(sessions.iter().map(|s| s.device.as_ref()))
                .collect::<BTreeSet<&str>>()
                .into_iter()
                .map(str::to_string)
                .collect(),
            on_holders_hours: false,
        }
    }
}

/// A sensitive entry as the rules see it.
#[derive(Debug, Clone)]
pub struct SensitiveEntry {
    pub entry_id: String,
    pub visible_from: i64,
    pub category: Category,
    pub section: Option<String>,
}

/// An attended face-to-face visit.
#[derive(Debug, Clone)]
pub struct Visit {
    pub appointment_id: String,
    pub starts_at: i64,
    pub ends_at: i64,
}

/// A formal proxy's access: from, and until (`None` while in force).
pub type ProxyPeriod = (i64, Option<i64>);

/// Tablets and computers are often shared in a household; phones are personal. Judged from the user agent.
pub fn is_household_class(user_agent: Option<&str>) -> bool {
    let Some(ua) = user_agent else { return false };
    [
        "iPad",
        "Tablet",
        "SM-T",
        "SM-X",
        "Kindle",
        "Silk",
        "Windows NT",
        "Macintosh",
        "X11",
        "CrOS",
    ]
    .iter()
    .any(|k| ua.contains(k))
}

/// A device id short enough to read aloud, long enough to find in the findings file.
pub fn short_device(id: &str) -> String {
    if id.chars().count() > 12 {
        format!("{}…", id.chars().take(12).collect::<String>())
    } else {
        id.to_string()
    }
}

/// How much of the window's audit events carry each optional field (0 to 1). Rules that need a field the export
/// does not carry do not run, and the run says so.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FieldCoverage {
    pub events: u64,
    pub device_id: f64,
    pub user_agent: f64,
    pub ip_address: f64,
    pub session_id: f64,
    pub account_id: f64,
    /// The share of reads (views and downloads) that name the part of the record read.
    pub section: f64,
}

impl FieldCoverage {
    /// Most reads name the part of the record they read (or there is nothing to read): how a device reads can be
    /// judged.
    pub fn names_sections(&self) -> bool {
        self.events == 0 || self.section >= crate::detect::rules::MIN_COVERAGE
    }
}

/// A rule that did not run, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RuleNotRun {
    pub rule_id: &'static str,
    pub reason: String,
}

/// The figures of a detection run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DetectionStats {
    pub audit_events: u64,
    pub sessions: u64,
    pub patients_analysed: u64,
    pub patients_with_baseline: u64,
    /// Batches of patients the look-back was read in (`detect.batch_events`).
    pub batches: u32,
    /// Share of the window's audit events carrying each optional field.
    pub coverage: FieldCoverage,
    pub rules_not_run: Vec<RuleNotRun>,
    /// Device ids taken as continuing an earlier id of the same phone (an app reinstalled; see
    /// [`crate::detect::lineage`]).
    pub reinstalled_devices: u64,
    /// Sessions taken for a formal proxy's on the audit log's `actor_role` alone, because no proxy relationships were
    /// supplied to check them against.
    pub proxy_sessions_on_role: u64,
}

/// The `actor_role` of a formal proxy's account.
pub const PROXY_ROLE: &str = "proxy";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interned_value_is_one_allocation_however_often_it_is_asked_for() {
        let mut text = Interner::default();
        let first = text.get("device-1");
        let again = text.get(&String::from("device-1"));
        let other = text.get("device-2");
        assert!(std::sync::Arc::ptr_eq(&first, &again));
        assert!(!std::sync::Arc::ptr_eq(&first, &other));
        assert_eq!((&*first, &*other), ("device-1", "device-2"));
    }
}
