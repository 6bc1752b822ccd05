//! From findings to a risk score per patient, counting each piece of evidence once.
//!
//! Findings are first grouped into evidence groups: one kind of evidence (see [`EvidenceKind`]: what a device is and
//! does, another patient's record vouching for whose it is, reads timed to sensitive entries, where the patient was,
//! a restriction ignored) about one device. Several findings in a group
//! restate one observation through several rules (a device that is not the holder's, reads only prying sections
//! and arrived after a password change is one witness with three features), so a group's score is its strongest
//! finding's, with each further finding adding 35% of what it would add on its own:
//! group = 1 - (1 - s1) x (1 - 0.35 s2) x (1 - 0.35 s3) ... (scores as fractions, strongest first).
//! Foreign hours on devices with no other evidence against them form one group for the patient, whatever the
//! device, scored as its strongest finding: they are all judged against one model of the holder's hours, so one
//! mistake in that model would show on every device, and hours alone stay below medium. When a device is judged not
//! the holder's by how it is used (`unfamiliar_device`), those foreign hours join that device's group rather than
//! corroborating it: both come from the same model of the holder. A read on the holder's own device soon after a
//! sensitive entry, found only because it came at an hour the holder does not keep ([`Finding::on_holders_hours`]),
//! rests on that model too: it joins the foreign hours as a further finding. And a device that another patient's
//! record shows to be theirs is, by that fact, not this holder's: what it is and does here joins that witness.
//! Different groups (another device, another kind of evidence) corroborate each other and combine as independent
//! evidence: risk = 100 x (1 - product over groups of (1 - group/100)).
//! Evidence that stopped before the recent window still counts, at `detect.stale_factor` of its score, so a
//! patient whose watching goes on now is listed before one whose watching seems to have stopped. Some evidence can
//! only be seen when the practice's record gives the chance: reads timed to a sensitive entry need an entry, a read
//! during a visit needs a visit. Such evidence has not stopped while the device that gave it still reads the record
//! in the recent window; what a device shows whenever it is used (its hours, its reading, a schedule, two devices
//! at once) shows stopping by its own last date.
//! Levels: `high` at or above `detect.high` (default 70), `medium` at or above `detect.medium` (default 45; medium
//! and high are "flagged"), `low` below.
//!
//! The weights were set on generated practices of every onset, intensity and export variant
//! (`benches/detection_quality.sh --matrix`), not on one practice.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::config::DetectConfig;
use super::rules::{self, EvidenceKind};
use super::{Context, Finding};

/// How much a further finding in the same evidence group adds, relative to what it would add alone.
pub const SAME_GROUP_WEIGHT: f64 = 0.35;
#[derive(Debug, Clone, Serialize)]
pub struct PatientRisk {
    pub nhs_number: String,
    pub risk_score: u32,
    pub risk_level: &'static str,
    pub rules: Vec<&'static str>,
    pub summary: String,
    /// The patient's case across nights, when flagged (filled in by the nightly run, see [`crate::cases`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case: Option<crate::cases::CaseView>,
}

impl PatientRisk {
    pub fn flagged(&self) -> bool {
        self.risk_level != "low"
    }
}

pub fn combine(scores: impl IntoIterator<Item = f64>) -> f64 {
    let miss: f64 = scores
        .into_iter()
        .map(|s| 1.0 - (s / 100.0).clamp(0.0, 1.0))
        .product();
    100.0 * (1.0 - miss)
}

pub fn level(score: f64, cfg: &DetectConfig) -> &'static str {
    if score >= cfg.high {
        "high"
    } else if score >= cfg.medium {
        "medium"
    } else {
        "low"
    }
}

/// The evidence group a finding belongs to: its kind of evidence and its device.
pub fn group_of(f: &Finding) -> (EvidenceKind, String) {
    let kind = rules::find(f.rule_id)
        .map(|r| r.meta.kind)
        .unwrap_or(EvidenceKind::Timing);
    (kind, f.device_id.clone().unwrap_or_default())
}

/// A group's score from its findings' scores: the strongest in full, the rest at [`SAME_GROUP_WEIGHT`].
pub fn group_score(mut scores: Vec<f64>) -> f64 {
    scores.sort_by(|a, b| b.total_cmp(a));
    let mut it = scores.into_iter();
    let Some(first) = it.next() else { return 0.0 };
    combine(std::iter::once(first).chain(it.map(|s| s * SAME_GROUP_WEIGHT)))
}

/// Rules whose chance to fire is set by the practice's record, not by the device: an entry appearing, the patient
/// attending. Their last date says when the chance last came, not when the watching stopped. (Two devices in use at
/// once is not among them: its chance comes with every use of the devices.)
pub fn episodic(rule_id: &str) -> bool {
    rule_id == rules::access_after_sensitive_entry::ID
        || rule_id == rules::access_during_appointment::ID
}

/// Whether a finding's evidence goes on into the recent window: its own last event does, or it is episodic evidence
/// and its device still reads the record there (`active` holds the devices used on the record since
/// `recent_start`, by real device id).
pub fn current(f: &Finding, recent_start: i64, active: &BTreeSet<&str>) -> bool {
    f.last_at >= recent_start
        || (episodic(f.rule_id) && f.device_id.as_deref().is_some_and(|d| active.contains(d)))
}

/// One patient's risk from their findings: evidence groups scored, then combined as independent witnesses. Evidence
/// that is not [`current`] counts at `stale_factor`.
pub fn patient_risk(
    fs: &[&Finding],
    recent_start: i64,
    active: &BTreeSet<&str>,
    stale_factor: f64,
) -> f64 {
    // Devices with evidence of what they are, beyond their hours.
    let described: BTreeSet<&str> = fs
        .iter()
        .filter(|f| f.rule_id != rules::unusual_hour::ID)
        .filter(|f| group_of(f).0 == EvidenceKind::Device)
        .filter_map(|f| f.device_id.as_deref())
        .collect();
    let mut groups: BTreeMap<(EvidenceKind, String), Vec<(&str, f64)>> = BTreeMap::new();
    // Foreign hours on undescribed devices: one witness, its strongest showing (see the module's notes).
    let mut hours: f64 = 0.0;
    let mut timed_hours: Vec<f64> = Vec::new();
    for f in fs {
        let weight = if current(f, recent_start, active) {
            1.0
        } else {
            stale_factor
        };
        let score = f.score * weight;
        if f.rule_id == rules::unusual_hour::ID
            && !f
                .device_id
                .as_deref()
                .is_some_and(|d| described.contains(d))
        {
            hours = hours.max(score);
        } else if f.on_holders_hours {
            timed_hours.push(score);
        } else {
            groups
                .entry(group_of(f))
                .or_default()
                .push((f.rule_id, score));
        }
    }
    // Another patient's own device is, by that fact, not this holder's: what the device is and does on this record
    // restates that witness rather than adding to it.
    let owned_elsewhere: Vec<String> = groups
        .keys()
        .filter(|(k, d)| *k == EvidenceKind::OtherRecord && !d.is_empty())
        .map(|(_, d)| d.clone())
        .collect();
    for d in owned_elsewhere {
        if let Some(fs) = groups.remove(&(EvidenceKind::Device, d.clone())) {
            groups
                .entry((EvidenceKind::OtherRecord, d))
                .or_default()
                .extend(fs);
        }
    }
    // A device judged not to be the holder's by how it is used, and foreign hours on the others, come from one model
    // of the holder: a person with two devices of their own whose second one the model did not recognise shows both
    // at once (the hours they keep on it are missing from the model). So the hours join the strongest such device's
    // group rather than corroborating it.
    let judged = groups
        .iter_mut()
        .filter(|((kind, _), fs)| {
            *kind == EvidenceKind::Device
                && fs.iter().any(|(r, _)| *r == rules::unfamiliar_device::ID)
        })
        .max_by(|a, b| group_score(scores(a.1)).total_cmp(&group_score(scores(b.1))));
    let hours = if timed_hours.is_empty() {
        hours
    } else {
        group_score(std::iter::once(hours).chain(timed_hours).collect())
    };
    let mut independent_hours = hours;
    if let Some((_, fs)) = judged {
        if hours > 0.0 {
            fs.push((rules::unusual_hour::ID, hours));
            independent_hours = 0.0;
        }
    }
    combine(
        groups
            .into_values()
            .map(|fs| group_score(scores(&fs)))
            .chain(std::iter::once(independent_hours)),
    )
}

fn scores(fs: &[(&str, f64)]) -> Vec<f64> {
    fs.iter().map(|f| f.1).collect()
}

pub fn score_patients(findings: &[Finding], cfg: &DetectConfig, ctx: &Context) -> Vec<PatientRisk> {
    let mut by_patient: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for f in findings {
        by_patient.entry(&f.nhs_number).or_default().push(f);
    }
    let mut out: Vec<PatientRisk> = by_patient
        .into_iter()
        .map(|(nhs, fs)| {
            // The devices still reading this record in the recent window.
            let active: BTreeSet<&str> = ctx
                .sessions
                .get(nhs)
                .into_iter()
                .flatten()
                .filter(|s| s.start >= ctx.recent_start)
                .map(|s| s.device.as_ref())
                // A user agent or no device at all is shared by many devices: it cannot say that one goes on.
                .filter(|d| super::is_identified_device(d))
                .collect();
            let risk = patient_risk(&fs, ctx.recent_start, &active, cfg.stale_factor).round();
            let mut by_rule: BTreeMap<&'static str, (f64, i64)> = BTreeMap::new();
            for f in &fs {
                let e = by_rule.entry(f.rule_id).or_insert((0.0, f.first_at));
                e.0 = e.0.max(f.score);
                e.1 = e.1.min(f.first_at);
            }
            let mut best: Vec<(&'static str, f64, i64)> =
                by_rule.into_iter().map(|(r, (s, t))| (r, s, t)).collect();
            best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
            let summary: Vec<String> = best
                .iter()
                .map(|(rule, _, first)| {
                    let title = rules::find(rule).map(|r| r.meta.title).unwrap_or(rule);
                    format!("{title} (since {})", ctx.day(*first))
                })
                .collect();
            PatientRisk {
                nhs_number: nhs.to_string(),
                risk_score: risk as u32,
                risk_level: level(risk, cfg),
                rules: best.iter().map(|b| b.0).collect(),
                summary: summary.join("; ") + ".",
                case: None,
            }
        })
        .collect();
    out.sort_by(most_urgent_first);
    out
}

/// Highest risk first; ties in NHS number order, so the order never depends on how patients were batched.
pub fn most_urgent_first(a: &PatientRisk, b: &PatientRisk) -> std::cmp::Ordering {
    b.risk_score
        .cmp(&a.risk_score)
        .then(a.nhs_number.cmp(&b.nhs_number))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corroboration_beats_repetition() {
        let one_strong = combine([50.0]);
        let two_medium = combine([40.0, 40.0]);
        let three = combine([40.0, 40.0, 40.0]);
        assert_eq!(one_strong, 50.0);
        assert!((two_medium - 64.0).abs() < 1e-9);
        assert!(three > 78.0 && three < 79.0);
        assert_eq!(combine([]), 0.0);
        let cfg = DetectConfig::default();
        assert_eq!(level(44.9, &cfg), "low");
        assert_eq!(level(45.0, &cfg), "medium");
        assert_eq!(level(70.0, &cfg), "high");
    }

    /// A patient's risk from findings that all go on into the recent window.
    fn risk_now(fs: &[&Finding]) -> f64 {
        patient_risk(fs, 0, &BTreeSet::new(), 1.0)
    }

    fn finding(rule: &'static str, score: f64, device: &str) -> Finding {
        Finding::new("9990000000", rule, score, &[], Some(device), String::new())
    }

    #[test]
    fn foreign_hours_on_several_devices_are_one_witness_with_a_device_the_holder_model_disowns() {
        let hours = rules::unusual_hour::ID;
        let (a, b) = (
            finding(hours, 40.0, "phone"),
            finding(hours, 30.0, "tablet"),
        );
        // Two devices, each with foreign hours and nothing else: one group, below medium.
        let two = risk_now(&[&a, &b]);
        assert!((two - 40.0).abs() < 1e-9, "{two}");
        // Once the tablet is also judged not the holder's by how it is used, its hours belong to that device's
        // witness; the phone's hours come from the same model of the holder (a second device of their own that the
        // model missed shows as both), so they join that witness too instead of corroborating it.
        let u = finding(rules::unfamiliar_device::ID, 35.0, "tablet");
        let three = risk_now(&[&a, &b, &u]);
        let expected = group_score(vec![35.0, 30.0, 40.0]);
        assert!((three - expected).abs() < 1e-9, "{three} vs {expected}");
        assert!(
            three < combine([40.0, group_score(vec![35.0, 30.0])]) - 10.0,
            "{three}"
        );
        // A tablet described by something the holder model does not decide (a schedule) leaves the phone's hours as
        // independent evidence.
        let c = finding(rules::monitoring_cadence::ID, 35.0, "tablet");
        let scheduled = risk_now(&[&a, &b, &c]);
        let expected = combine([40.0, group_score(vec![35.0, 30.0])]);
        assert!(
            (scheduled - expected).abs() < 1e-9,
            "{scheduled} vs {expected}"
        );
    }

    #[test]
    fn one_group_counts_once_and_groups_corroborate() {
        // Three rules about one device: barely more than the strongest alone.
        let one_device = group_score(vec![40.0, 40.0, 40.0]);
        assert!(one_device > 40.0 && one_device < 60.0, "{one_device}");
        // The same three as independent groups: far more.
        let three_groups = combine([40.0, 40.0, 40.0]);
        assert!(three_groups > 78.0, "{three_groups}");
        assert_eq!(group_score(vec![]), 0.0);
        assert!((group_score(vec![30.0]) - 30.0).abs() < 1e-9);
    }

    #[test]
    fn evidence_that_needs_a_visit_or_an_entry_has_not_stopped_while_its_device_still_reads() {
        let recent_start = 1_000;
        let mut visit = finding(rules::access_during_appointment::ID, 50.0, "tablet");
        visit.last_at = 500;
        let mut after_entry = finding(rules::access_after_sensitive_entry::ID, 50.0, "tablet");
        after_entry.last_at = 500;
        let mut hours = finding(rules::unusual_hour::ID, 50.0, "tablet");
        hours.last_at = 500;
        let still_reading = BTreeSet::from(["tablet"]);
        let gone = BTreeSet::from(["phone"]);
        for f in [&visit, &after_entry] {
            // The tablet still reads the record: the visit or entry was simply the last chance to see it.
            assert_eq!(patient_risk(&[f], recent_start, &still_reading, 0.85), 50.0);
            // The tablet has gone quiet: the evidence has stopped.
            assert!((patient_risk(&[f], recent_start, &gone, 0.85) - 42.5).abs() < 1e-9);
        }
        // Hours show whenever the device is used: their own last date says when they stopped.
        assert!((patient_risk(&[&hours], recent_start, &still_reading, 0.85) - 42.5).abs() < 1e-9);
    }

    #[test]
    fn two_devices_at_once_is_one_more_thing_the_other_device_does() {
        // A couple's tablet, the partner's own (another record shows it), open on this patient's account while their
        // phone was: the overlap says the tablet was in other hands then, which is what its being the partner's
        // already says. One witness.
        let at_once = finding(rules::concurrent_sessions::ID, 45.0, "tablet");
        let shared = finding(rules::shared_device::ID, 19.0, "tablet");
        let one = risk_now(&[&at_once, &shared]);
        assert!((one - group_score(vec![45.0, 19.0])).abs() < 1e-9, "{one}");
        assert!(one < 50.0, "{one}");
        // So with a device judged not the holder's by how it is used.
        let unfamiliar = finding(rules::unfamiliar_device::ID, 35.0, "tablet");
        let same = risk_now(&[&at_once, &unfamiliar]);
        assert!(
            (same - group_score(vec![45.0, 35.0])).abs() < 1e-9,
            "{same}"
        );
        // Where the patient was (at the surgery) is another kind of evidence, and corroborates.
        let visit = finding(rules::access_during_appointment::ID, 50.0, "tablet");
        let two = risk_now(&[&at_once, &visit]);
        assert!((two - combine([45.0, 50.0])).abs() < 1e-9, "{two}");
    }

    #[test]
    fn a_device_that_is_someone_elses_is_one_witness_with_what_it_does_here() {
        let shared = finding(rules::shared_device::ID, 38.0, "tablet");
        let unfamiliar = finding(rules::unfamiliar_device::ID, 25.0, "tablet");
        // Another patient's own device is, by that, not this holder's: one witness, not two.
        let one = risk_now(&[&shared, &unfamiliar]);
        assert!((one - group_score(vec![38.0, 25.0])).abs() < 1e-9, "{one}");
        // About another device, the same finding corroborates.
        let phone = finding(rules::unfamiliar_device::ID, 25.0, "phone");
        let two = risk_now(&[&shared, &phone]);
        assert!((two - combine([38.0, 25.0])).abs() < 1e-9, "{two}");
    }
}
