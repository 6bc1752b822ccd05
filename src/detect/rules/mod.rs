//! The rule catalogue: one module per rule, each with its metadata (what it detects, its benign look-alikes, an
//! investigation guide for the safeguarding lead) and its detector. Rule ids are stable: they are in the data
//! contract and in every report.

pub mod access_after_sensitive_entry;
pub mod access_despite_restriction;
pub mod access_during_appointment;
pub mod account_change_then_new_device;
pub mod concurrent_sessions;
pub mod monitoring_cadence;
pub mod shared_device;
pub mod unfamiliar_device;
pub mod unusual_hour;

use super::{Context, FieldCoverage, Finding, PatientView, RuleNotRun, Session};

/// What a rule is, in words a safeguarding lead can use.
#[derive(Debug, Clone, Copy)]
pub struct RuleMeta {
    pub id: &'static str,
    pub title: &'static str,
    /// The usual severity of a finding alone (the score decides each finding's own severity).
    pub severity: &'static str,
    pub detects: &'static str,
    pub benign_lookalikes: &'static [&'static str],
    pub guide: &'static str,
    /// What the evidence is about: findings of one kind on one device are one evidence group.
    pub kind: EvidenceKind,
    /// The audit fields the rule cannot do without.
    pub needs: Needs,
}

/// Kinds of evidence. Findings of one kind about one device restate one observation; different kinds (who the
/// device is, when it reads, where the patient was, a restriction ignored) corroborate each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// What the device is and does: not the holder's, arrived after an account change, hours the holder does not
    /// keep, a schedule, open on the account at the same moment as another device.
    Device,
    /// Another patient's own device: someone else's record vouches for whose it is.
    OtherRecord,
    /// Reads timed to what appears in the record: right after sensitive entries.
    Timing,
    /// Where the patient was: in the surgery. (Two devices open on the account at once was presence evidence
    /// until 2026-12-04; it is one more thing the other device does, see `concurrent_sessions`.)
    Presence,
    /// Reading on after a 104 code.
    Restriction,
}

impl EvidenceKind {
    pub fn name(self) -> &'static str {
        match self {
            EvidenceKind::Device => "device",
            EvidenceKind::OtherRecord => "other_record",
            EvidenceKind::Timing => "timing",
            EvidenceKind::Presence => "presence",
            EvidenceKind::Restriction => "restriction",
        }
    }
}

/// The audit fields a rule needs, in at least [`MIN_COVERAGE`] of the window's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    /// A device id, or a user agent standing in for it.
    Device,
    /// A real device id (a user agent is shared by thousands of people's devices).
    DeviceId,
    /// A real device id, or a user agent with the address it was seen from (one household's phone of that model).
    DeviceIdOrAgentWithAddress,
    /// A device (id or user agent) or an address.
    DeviceOrAddress,
}

/// A field carried by fewer than this share of the window's events is treated as missing from the export.
pub const MIN_COVERAGE: f64 = 0.5;

/// The rules the export cannot support, and why.
pub fn not_runnable(c: &FieldCoverage) -> Vec<RuleNotRun> {
    let device = c.device_id.max(c.user_agent);
    let pct = |x: f64| format!("{:.0}%", 100.0 * x);
    CATALOGUE
        .iter()
        .filter_map(|r| {
            let reason = match r.meta.needs {
                Needs::Nothing => None,
                Needs::Device if device < MIN_COVERAGE => Some(format!(
                    "needs a device id or user agent to tell devices apart; the export carries device ids on {} and \
                     user agents on {} of events",
                    pct(c.device_id),
                    pct(c.user_agent)
                )),
                Needs::DeviceId if c.device_id < MIN_COVERAGE => Some(format!(
                    "needs real device ids to follow a device across records; the export carries them on {} of events",
                    pct(c.device_id)
                )),
                Needs::DeviceIdOrAgentWithAddress
                    if c.device_id < MIN_COVERAGE && c.user_agent.min(c.ip_address) < MIN_COVERAGE =>
                {
                    Some(format!(
                        "needs real device ids, or user agents with addresses, to follow a device across records; the \
                         export carries device ids on {}, user agents on {} and addresses on {} of events",
                        pct(c.device_id),
                        pct(c.user_agent),
                        pct(c.ip_address)
                    ))
                }
                Needs::DeviceOrAddress if device.max(c.ip_address) < MIN_COVERAGE => Some(format!(
                    "needs a device id, user agent or address; the export carries them on {}, {} and {} of events",
                    pct(c.device_id),
                    pct(c.user_agent),
                    pct(c.ip_address)
                )),
                _ => None,
            };
            reason.map(|reason| RuleNotRun {
                rule_id: r.meta.id,
                reason,
            })
        })
        .collect()
}

pub struct Rule {
    pub meta: RuleMeta,
    pub detect: fn(&Context, &PatientView) -> Vec<Finding>,
}

pub const CATALOGUE: [Rule; 9] = [
    Rule {
        meta: access_after_sensitive_entry::META,
        detect: access_after_sensitive_entry::detect,
    },
    Rule {
        meta: unfamiliar_device::META,
        detect: unfamiliar_device::detect,
    },
    Rule {
        meta: shared_device::META,
        detect: shared_device::detect,
    },
    Rule {
        meta: unusual_hour::META,
        detect: unusual_hour::detect,
    },
    Rule {
        meta: access_during_appointment::META,
        detect: access_during_appointment::detect,
    },
    Rule {
        meta: concurrent_sessions::META,
        detect: concurrent_sessions::detect,
    },
    Rule {
        meta: access_despite_restriction::META,
        detect: access_despite_restriction::detect,
    },
    Rule {
        meta: account_change_then_new_device::META,
        detect: account_change_then_new_device::detect,
    },
    Rule {
        meta: monitoring_cadence::META,
        detect: monitoring_cadence::detect,
    },
];

pub fn find(id: &str) -> Option<&'static Rule> {
    CATALOGUE.iter().find(|r| r.meta.id == id)
}

/// How a device that reads like a watcher read, in words a clinician can check against the record: how many of its
/// visits read nothing the patient manages their care with, and that it never booked, ordered or wrote (see
/// [`crate::detect::baseline::PatientBaseline::reads_like_watcher`]).
pub fn watcher_reading(u: &crate::detect::baseline::DeviceUse) -> String {
    let (w, n) = (u.watcher_sessions, u.reading_sessions());
    let visits = if w == n {
        format!("all {n} of its visits")
    } else {
        format!("{w} of its {n} visits")
    };
    format!(
        "In {visits} it read nothing the patient manages their care with (appointments, allergies, immunisations), \
         only consultations, problems, results, letters, documents, medications or the summary, and it never booked, \
         ordered or sent a message"
    )
}

/// Sessions a rule may hold against a patient: not an allowlisted device, not a formal proxy acting within
/// their recorded access.
pub fn counts(ctx: &Context, s: &Session) -> bool {
    !ctx.allowed(&s.nhs_number, &s.device) && !ctx.is_formal_proxy(s)
}

/// A patient's sessions that `keep` accepts, by device, each list in time order.
pub fn by_device<'a>(
    p: &'a PatientView,
    keep: impl Fn(&Session) -> bool,
) -> std::collections::BTreeMap<&'a str, Vec<&'a Session>> {
    let mut out: std::collections::BTreeMap<&str, Vec<&Session>> = Default::default();
    for s in p.sessions.iter().filter(|s| keep(s)) {
        out.entry(s.device.as_ref()).or_default().push(s);
    }
    out
}

/// Why a reading session is not the account holder reading their own record, if it is not: another device, or the
/// holder's own device in the middle of the night at an hour the holder does not keep.
pub fn not_the_holder(ctx: &Context, p: &PatientView, s: &Session) -> Option<&'static str> {
    if s.reads == 0 || !counts(ctx, s) {
        return None;
    }
    if crate::detect::is_known_device(&s.device) && !p.baseline.is_holders(&s.device) {
        return Some("from a device that is not the patient's own");
    }
    // On the holder's own device, only the middle of their night says someone else: reading a new entry on one's
    // own phone at an odd daytime hour is ordinary. Where the export cannot tell devices apart at all, any hour the
    // holder does not keep is the only sign left, and counts.
    let h = ctx.hour(s.start);
    if s.owner_actions == 0 && p.baseline.enough && p.baseline.foreign_hour(ctx, s.start) {
        if !(6..22).contains(&h) {
            return Some("on the patient's own device in the middle of their night");
        }
        if !crate::detect::is_known_device(&s.device) {
            return Some(
                "at an hour the patient does not keep (the export cannot tell devices apart)",
            );
        }
    }
    None
}

/// The local hours a record was opened at before a time, and how often: the record's own witness of its hours.
pub struct HourHistory {
    pub seen: [usize; 24],
    /// Visits before the time.
    pub visits: usize,
}

impl HourHistory {
    pub fn before(ctx: &Context, p: &PatientView, t: i64) -> HourHistory {
        let mut seen = [0usize; 24];
        for s in p.sessions.iter().filter(|s| s.start < t) {
            seen[ctx.hour(s.start) as usize] += 1;
        }
        HourHistory {
            seen,
            visits: seen.iter().sum(),
        }
    }

    /// The chance that a visit falls at an hour the history never shows (Good-Turing: the hours seen once, as a
    /// share of the visits, with one of each added so that it is never nil).
    pub fn new_hour_rate(&self) -> f64 {
        let seen_once = self.seen.iter().filter(|c| **c == 1).count();
        (seen_once + 1) as f64 / (self.visits + 1) as f64
    }
}

/// The device to name on a finding: the one device involved, or none when there were several.
pub fn only_device<'a>(devices: &std::collections::BTreeSet<&'a str>) -> Option<&'a str> {
    let mut it = devices.iter();
    match (it.next(), it.next()) {
        (Some(d), None) => Some(*d),
        _ => None,
    }
}

/// "3 times" / "once".
pub fn times(n: usize) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

/// The local times of some sessions, at most four, for an explanation.
pub fn list_times(ctx: &Context, sessions: &[&Session]) -> String {
    let mut parts: Vec<String> = sessions.iter().take(4).map(|s| ctx.when(s.start)).collect();
    if sessions.len() > 4 {
        parts.push(format!("and {} more", sessions.len() - 4));
    }
    parts.join(", ")
}
