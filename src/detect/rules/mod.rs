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

use super::{Context, Finding, PatientView, Session};

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

/// Sessions a rule may hold against a patient: not an allowlisted device, not a formal proxy acting within
/// their recorded access.
pub fn counts(ctx: &Context, s: &Session) -> bool {
    !ctx.allowed(&s.nhs_number, &s.device) && !ctx.is_formal_proxy(s)
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
