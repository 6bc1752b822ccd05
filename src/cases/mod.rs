//! Cases across nights, and the safeguarding lead's reviews of them.
//!
//! A patient's **case** opens on the first night they are flagged (medium or high) and stays open while they go on
//! being flagged: a night or a few unflagged in between do not close it, but a patient unflagged for more than
//! `detect.case.gap_days` starts a new case when flagged again. Each night's detection appends one file to the
//! store, `<store>/cases/night=YYYY-MM-DD.parquet`: one row per patient with a finding that night (score, level,
//! rules, evidence groups), and for flagged patients their case id, first flagged night and status. A night's file
//! depends only on that night's detection, the files of the nights before it and the reviews, so re-running a night
//! writes the same file, and nothing else is ever rewritten.
//!
//! A **review** (`accesswatch review`, or the review page of `accesswatch serve`) is one JSON file in
//! `<store>/reviews/`, written beside and renamed into place: the log is append-only, a review never waits for the
//! nightly run's lock, and a review killed half way leaves no file at all. A review records what the lead saw: the
//! case's evidence groups, rules and score on the night it was made.
//!
//! A case's status on a night:
//! - `new`: first flagged tonight;
//! - `continuing`: flagged before, no review (or a `benign` review whose `--suppress-days` ran out);
//! - `reviewed`: the lead has decided, and nothing new has appeared since;
//! - `new_evidence`: reviewed, then an evidence group (a device, or a kind of evidence about one) or a rule the lead
//!   did not see appeared, or the score rose by at least `detect.case.rise` points.
//!
//! A `benign` review takes the case off the report until new evidence appears or its days run out; `concern` and
//! `action_taken` keep it listed, with the review shown.

pub mod ops;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::detect::scoring::PatientRisk;
use crate::detect::{scoring, Finding};

/// `[detect.case]`: how cases continue across nights and what counts as new evidence after a review.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaseConfig {
    /// A flagged patient whose last flagged night is at most this many days ago continues that case; after a longer
    /// gap a new case opens.
    pub gap_days: u32,
    /// After a review, a score at least this many points above the reviewed score is new evidence.
    pub rise: u32,
}

impl Default for CaseConfig {
    fn default() -> Self {
        CaseConfig {
            gap_days: 14,
            rise: 15,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    New,
    NewEvidence,
    Continuing,
    Reviewed,
}

impl CaseStatus {
    pub fn name(self) -> &'static str {
        match self {
            CaseStatus::New => "new",
            CaseStatus::NewEvidence => "new_evidence",
            CaseStatus::Continuing => "continuing",
            CaseStatus::Reviewed => "reviewed",
        }
    }

    pub fn parse(s: &str) -> Option<CaseStatus> {
        [
            CaseStatus::New,
            CaseStatus::NewEvidence,
            CaseStatus::Continuing,
            CaseStatus::Reviewed,
        ]
        .into_iter()
        .find(|c| c.name() == s)
    }

    /// In plain words, for the report.
    pub fn words(self) -> &'static str {
        match self {
            CaseStatus::New => "new tonight",
            CaseStatus::NewEvidence => "reviewed, and new evidence since",
            CaseStatus::Continuing => "flagged before, not yet reviewed",
            CaseStatus::Reviewed => "reviewed, nothing new since",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing of concern: the case leaves the report until new evidence appears.
    Benign,
    /// A concern: the case stays listed, with this review shown.
    Concern,
    /// Something was done (access restricted, the patient contacted safely): stays listed, with this review shown.
    #[value(name = "action_taken", alias = "action-taken")]
    ActionTaken,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Benign, Outcome::Concern, Outcome::ActionTaken];

    /// The outcome with this [`name`](Outcome::name), exactly.
    pub fn from_name(name: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Benign => "benign",
            Outcome::Concern => "concern",
            Outcome::ActionTaken => "action_taken",
        }
    }

    /// The outcome in plain words, for the lead's pages and charts.
    pub fn words(self) -> &'static str {
        match self {
            Outcome::ActionTaken => "action taken",
            o => o.name(),
        }
    }
}

/// One review, as stored in `<store>/reviews/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Review {
    pub review_id: String,
    pub case_id: String,
    pub nhs_number: String,
    pub outcome: Outcome,
    pub note: String,
    pub by: String,
    /// When it was recorded (UTC, RFC 3339).
    pub at: String,
    pub suppress_days: Option<u32>,
    /// What the lead saw: the case's latest night when the review was made, and its evidence that night.
    pub night: NaiveDate,
    pub score: u32,
    pub groups: Vec<String>,
    pub rules: Vec<String>,
}

/// One patient on one night: a row of `<store>/cases/night=…parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct NightRow {
    pub nhs_number: String,
    pub night: NaiveDate,
    pub risk_score: u32,
    pub risk_level: String,
    pub rules: Vec<String>,
    pub groups: Vec<String>,
    /// Set on flagged nights only.
    pub case: Option<CaseMark>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CaseMark {
    pub case_id: String,
    pub first_flagged: NaiveDate,
    pub status: CaseStatus,
}

/// What the report shows about a flagged patient's case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseView {
    pub case_id: String,
    pub status: CaseStatus,
    pub first_flagged: NaiveDate,
    /// Nights flagged in this case, tonight included (as far back as the store's case files go).
    pub nights_flagged: u32,
    pub last_review: Option<Review>,
    /// Benign, reviewed, nothing new: counted, not listed.
    pub suppressed: bool,
    /// Risk score on each of the last 30 nights that have a case file (0 when the patient had no finding).
    pub scores: Vec<(NaiveDate, u32)>,
}

/// The evidence groups of a patient's findings, as stable names: `kind:device` (see [`scoring::group_of`]).
pub fn evidence_groups<'a>(findings: impl IntoIterator<Item = &'a Finding>) -> Vec<String> {
    let set: BTreeSet<String> = findings
        .into_iter()
        .map(|f| {
            let (kind, device) = scoring::group_of(f);
            format!("{}:{}", kind.name(), device)
        })
        .collect();
    set.into_iter().collect()
}

/// The review that decides a case's status on `night`: its latest made on or before that night.
pub fn latest_review<'a>(
    reviews: &'a [Review],
    case_id: &str,
    night: NaiveDate,
) -> Option<&'a Review> {
    reviews
        .iter()
        .filter(|r| r.case_id == case_id && r.night <= night)
        .max_by(|a, b| a.night.cmp(&b.night).then(a.at.cmp(&b.at)))
}

/// Whether tonight's evidence holds something the review did not see.
pub fn is_new_evidence(
    review: &Review,
    score: u32,
    groups: &[String],
    rules: &[String],
    cfg: &CaseConfig,
) -> bool {
    groups.iter().any(|g| !review.groups.contains(g))
        || rules.iter().any(|r| !review.rules.contains(r))
        || score >= review.score.saturating_add(cfg.rise)
}

/// The status of a case that was flagged before tonight, given its latest review (if any).
pub fn status_after_review(
    review: Option<&Review>,
    night: NaiveDate,
    score: u32,
    groups: &[String],
    rules: &[String],
    cfg: &CaseConfig,
) -> CaseStatus {
    let Some(r) = review else {
        return CaseStatus::Continuing;
    };
    if is_new_evidence(r, score, groups, rules, cfg) {
        return CaseStatus::NewEvidence;
    }
    let ran_out = r.outcome == Outcome::Benign
        && r.suppress_days
            .is_some_and(|d| night > r.night + chrono::Duration::days(d as i64));
    if ran_out {
        CaseStatus::Continuing
    } else {
        CaseStatus::Reviewed
    }
}

/// Tonight's rows, given tonight's patients and findings, the rows of earlier nights (any order, any span) and the
/// reviews. New cases are numbered in tonight's most-urgent-first order: `C-YYYYMMDD-NNN`.
pub fn assign(
    night: NaiveDate,
    patients: &[PatientRisk],
    findings: &[Finding],
    earlier: &[NightRow],
    reviews: &[Review],
    cfg: &CaseConfig,
) -> Vec<NightRow> {
    let mut by_patient: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for f in findings {
        by_patient.entry(&f.nhs_number).or_default().push(f);
    }
    // Each patient's latest flagged night before tonight, within the gap.
    let oldest = night - chrono::Duration::days(cfg.gap_days as i64);
    let mut open: BTreeMap<&str, &NightRow> = BTreeMap::new();
    for r in earlier {
        if r.night >= night || r.night < oldest || r.case.is_none() {
            continue;
        }
        let e = open.entry(r.nhs_number.as_str()).or_insert(r);
        if r.night > e.night {
            *e = r;
        }
    }
    let mut new_cases = 0;
    patients
        .iter()
        .map(|p| {
            let groups = evidence_groups(
                by_patient
                    .get(p.nhs_number.as_str())
                    .into_iter()
                    .flatten()
                    .copied(),
            );
            let rules: Vec<String> = p.rules.iter().map(|r| r.to_string()).collect();
            let case = p.flagged().then(|| {
                match open
                    .get(p.nhs_number.as_str())
                    .and_then(|r| r.case.as_ref())
                {
                    Some(c) => CaseMark {
                        case_id: c.case_id.clone(),
                        first_flagged: c.first_flagged,
                        status: status_after_review(
                            latest_review(reviews, &c.case_id, night),
                            night,
                            p.risk_score,
                            &groups,
                            &rules,
                            cfg,
                        ),
                    },
                    None => {
                        new_cases += 1;
                        let case_id = format!("C-{}-{new_cases:03}", night.format("%Y%m%d"));
                        // Re-running a night after its new case was reviewed: the review counts, as it does for
                        // `accesswatch cases`.
                        let status = match latest_review(reviews, &case_id, night) {
                            Some(r) => status_after_review(
                                Some(r),
                                night,
                                p.risk_score,
                                &groups,
                                &rules,
                                cfg,
                            ),
                            None => CaseStatus::New,
                        };
                        CaseMark {
                            case_id,
                            first_flagged: night,
                            status,
                        }
                    }
                }
            });
            NightRow {
                nhs_number: p.nhs_number.clone(),
                night,
                risk_score: p.risk_score,
                risk_level: p.risk_level.to_string(),
                rules,
                groups,
                case,
            }
        })
        .collect()
}

/// The report's view of each flagged patient's case tonight, by NHS number.
pub fn views(
    tonight: &[NightRow],
    earlier: &[NightRow],
    reviews: &[Review],
) -> BTreeMap<String, CaseView> {
    let night = tonight.first().map(|r| r.night);
    let mut out = BTreeMap::new();
    let Some(night) = night else { return out };
    let chart_from = night - chrono::Duration::days(29);
    // Nights that have a file (a night never run is a gap in the chart, not a zero).
    let nights: BTreeSet<NaiveDate> = earlier
        .iter()
        .map(|r| r.night)
        .filter(|n| *n >= chart_from && *n < night)
        .chain(std::iter::once(night))
        .collect();
    let mut history: BTreeMap<&str, Vec<&NightRow>> = BTreeMap::new();
    for r in earlier.iter().filter(|r| r.night < night) {
        history.entry(r.nhs_number.as_str()).or_default().push(r);
    }
    for row in tonight {
        let Some(c) = &row.case else { continue };
        let past = history
            .get(row.nhs_number.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let nights_flagged = 1 + past
            .iter()
            .filter(|r| r.case.as_ref().is_some_and(|m| m.case_id == c.case_id))
            .count() as u32;
        let score_on: BTreeMap<NaiveDate, u32> =
            past.iter().map(|r| (r.night, r.risk_score)).collect();
        let scores = nights
            .iter()
            .map(|n| {
                let s = if *n == night {
                    row.risk_score
                } else {
                    score_on.get(n).copied().unwrap_or(0)
                };
                (*n, s)
            })
            .collect();
        let last_review = latest_review(reviews, &c.case_id, night).cloned();
        let suppressed = c.status == CaseStatus::Reviewed
            && last_review
                .as_ref()
                .is_some_and(|r| r.outcome == Outcome::Benign);
        out.insert(
            row.nhs_number.clone(),
            CaseView {
                case_id: c.case_id.clone(),
                status: c.status,
                first_flagged: c.first_flagged,
                nights_flagged,
                last_review,
                suppressed,
                scores,
            },
        );
    }
    out
}

/// The report's order: new cases, then new evidence, then continuing ones, then reviewed ones kept open; within
/// each, most urgent first. Patients without a case (low risk) come last, as before.
pub fn report_rank(view: Option<&CaseView>) -> u8 {
    match view {
        Some(v) if v.suppressed => 5,
        Some(v) => match v.status {
            CaseStatus::New => 0,
            CaseStatus::NewEvidence => 1,
            CaseStatus::Continuing => 2,
            CaseStatus::Reviewed => 3,
        },
        None => 6,
    }
}

/// Cases counted by status, for `summary.json` (every status present, zero or not).
pub fn count_by_status(views: &BTreeMap<String, CaseView>) -> BTreeMap<&'static str, u64> {
    let mut out: BTreeMap<&'static str, u64> = ["new", "new_evidence", "continuing", "reviewed"]
        .into_iter()
        .map(|s| (s, 0))
        .collect();
    for v in views.values() {
        *out.entry(v.status.name()).or_default() += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap_or_default()
    }

    fn risk(nhs: &str, score: u32) -> PatientRisk {
        PatientRisk {
            nhs_number: nhs.into(),
            risk_score: score,
            risk_level: if score >= 70 {
                "high"
            } else if score >= 45 {
                "medium"
            } else {
                "low"
            },
            rules: vec!["unfamiliar_device"],
            summary: String::new(),
            case: None,
        }
    }

    fn review(
        case_id: &str,
        night: NaiveDate,
        outcome: Outcome,
        score: u32,
        groups: &[&str],
    ) -> Review {
        Review {
            review_id: "r".into(),
            case_id: case_id.into(),
            nhs_number: "a".into(),
            outcome,
            note: String::new(),
            by: "lead".into(),
            at: "2026-11-01T00:00:00Z".into(),
            suppress_days: None,
            night,
            score,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            rules: vec!["unfamiliar_device".into()],
        }
    }

    #[test]
    fn a_case_continues_within_the_gap_and_a_new_one_opens_after_it() {
        let cfg = CaseConfig::default();
        let n1 = assign(
            day(1),
            &[risk("a", 60), risk("b", 80), risk("c", 20)],
            &[],
            &[],
            &[],
            &cfg,
        );
        let ids: Vec<_> = n1
            .iter()
            .map(|r| r.case.as_ref().map(|c| c.case_id.clone()))
            .collect();
        assert_eq!(
            ids,
            vec![
                Some("C-20261101-001".into()),
                Some("C-20261101-002".into()),
                None
            ]
        );
        // Unflagged on the 2nd, flagged again on the 10th: the same case, continuing.
        let n10 = assign(day(10), &[risk("a", 50)], &[], &n1, &[], &cfg);
        let c = n10[0].case.as_ref().unwrap();
        assert_eq!(
            (c.case_id.as_str(), c.first_flagged, c.status),
            ("C-20261101-001", day(1), CaseStatus::Continuing)
        );
        // More than gap_days after the last flagged night: a new case.
        let n20 = assign(day(20), &[risk("a", 50)], &[], &n1, &[], &cfg);
        let c = n20[0].case.as_ref().unwrap();
        assert_eq!(
            (c.case_id.as_str(), c.status),
            ("C-20261120-001", CaseStatus::New)
        );
    }

    #[test]
    fn a_benign_review_holds_until_something_new_or_its_days_run_out() {
        let cfg = CaseConfig::default();
        let groups = vec!["device:phone".to_string()];
        let rules = vec!["unfamiliar_device".to_string()];
        let mut r = review("C", day(7), Outcome::Benign, 60, &["device:phone"]);
        let st = |r: &Review, night, score, groups: &[String], rules: &[String]| {
            status_after_review(Some(r), night, score, groups, rules, &cfg)
        };
        assert_eq!(st(&r, day(8), 60, &groups, &rules), CaseStatus::Reviewed);
        assert_eq!(st(&r, day(8), 74, &groups, &rules), CaseStatus::Reviewed);
        assert_eq!(st(&r, day(8), 75, &groups, &rules), CaseStatus::NewEvidence);
        let more = vec!["device:phone".to_string(), "device:tablet".to_string()];
        assert_eq!(st(&r, day(8), 60, &more, &rules), CaseStatus::NewEvidence);
        let more_rules = vec!["unfamiliar_device".to_string(), "shared_device".to_string()];
        assert_eq!(
            st(&r, day(8), 60, &groups, &more_rules),
            CaseStatus::NewEvidence
        );
        r.suppress_days = Some(3);
        assert_eq!(st(&r, day(10), 60, &groups, &rules), CaseStatus::Reviewed);
        assert_eq!(st(&r, day(11), 60, &groups, &rules), CaseStatus::Continuing);
        assert_eq!(
            status_after_review(None, day(8), 60, &groups, &rules, &cfg),
            CaseStatus::Continuing
        );
    }

    #[test]
    fn the_latest_review_on_or_before_the_night_decides() {
        let a = review("C", day(7), Outcome::Benign, 60, &[]);
        let mut b = review("C", day(9), Outcome::Concern, 60, &[]);
        b.at = "2026-11-09T00:00:00Z".into();
        let reviews = vec![a.clone(), b.clone()];
        assert_eq!(latest_review(&reviews, "C", day(6)), None);
        assert_eq!(latest_review(&reviews, "C", day(8)), Some(&a));
        assert_eq!(latest_review(&reviews, "C", day(9)), Some(&b));
        assert_eq!(latest_review(&reviews, "D", day(9)), None);
    }
}
