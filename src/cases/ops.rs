//! What `accesswatch review`, `accesswatch cases` and the review page of `accesswatch serve` do: one implementation
//! for the command line and the page.

use std::path::Path;

use chrono::{NaiveDate, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::store::{append_review, nights_in_store, read_night, read_reviews};
use super::{
    latest_review, status_after_review, CaseConfig, CaseStatus, NightRow, Outcome, Review,
};

/// A case as `accesswatch cases` lists it: its latest flagged night, with its status as of now (reviews made since
/// that night's run count).
#[derive(Debug, Clone, Serialize)]
pub struct CaseListing {
    pub case_id: String,
    pub nhs_number: String,
    pub status: CaseStatus,
    pub first_flagged: NaiveDate,
    /// The latest night the case was flagged.
    pub last_flagged: NaiveDate,
    pub risk_score: u32,
    pub risk_level: String,
    pub rules: Vec<String>,
    pub evidence_groups: Vec<String>,
    pub last_review: Option<Review>,
    /// Reviewed as benign with nothing new since: not on the report.
    pub suppressed: bool,
}

/// Which cases to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// Cases on the report: everything but those reviewed as benign with nothing new since.
    Open,
    /// Cases the lead has reviewed and where nothing new has appeared since.
    Reviewed,
    /// Every case.
    All,
}

/// The status of a night's case row as of now.
fn live_status(
    row: &NightRow,
    reviews: &[Review],
    cfg: &CaseConfig,
) -> Option<(CaseStatus, Option<Review>)> {
    let c = row.case.as_ref()?;
    let review = latest_review(reviews, &c.case_id, row.night).cloned();
    let status = match &review {
        Some(_) => status_after_review(
            review.as_ref(),
            row.night,
            row.risk_score,
            &row.groups,
            &row.rules,
            cfg,
        ),
        None => c.status,
    };
    Some((status, review))
}

/// The cases flagged on the store's latest night, most urgent first within the report's order.
pub fn list(store: &Path, which: Which, cfg: &CaseConfig) -> anyhow::Result<Vec<CaseListing>> {
    let Some(latest) = nights_in_store(store)?.last().copied() else {
        return Ok(Vec::new());
    };
    let reviews = read_reviews(store)?;
    let mut out = Vec::new();
    for row in read_night(store, latest)? {
        let Some((status, last_review)) = live_status(&row, &reviews, cfg) else {
            continue;
        };
        let Some(c) = &row.case else { continue };
        let suppressed = status == CaseStatus::Reviewed
            && last_review
                .as_ref()
                .is_some_and(|r| r.outcome == Outcome::Benign);
        let keep = match which {
            Which::Open => !suppressed,
            Which::Reviewed => status == CaseStatus::Reviewed,
            Which::All => true,
        };
        if keep {
            out.push(CaseListing {
                case_id: c.case_id.clone(),
                nhs_number: row.nhs_number.clone(),
                status,
                first_flagged: c.first_flagged,
                last_flagged: row.night,
                risk_score: row.risk_score,
                risk_level: row.risk_level.clone(),
                rules: row.rules.clone(),
                evidence_groups: row.groups.clone(),
                last_review,
                suppressed,
            });
        }
    }
    out.sort_by(|a, b| {
        let rank = |c: &CaseListing| (c.suppressed, c.status);
        rank(a)
            .cmp(&rank(b))
            .then(b.risk_score.cmp(&a.risk_score))
            .then(a.case_id.cmp(&b.case_id))
    });
    Ok(out)
}

/// A patient's latest case row: the newest night on which they were flagged.
fn latest_case_row(
    store: &Path,
    matches: impl Fn(&NightRow) -> bool,
) -> anyhow::Result<Option<NightRow>> {
    for night in nights_in_store(store)?.into_iter().rev() {
        if let Some(row) = read_night(store, night)?
            .into_iter()
            .find(|r| r.case.is_some() && matches(r))
        {
            return Ok(Some(row));
        }
    }
    Ok(None)
}

/// What a review says; who and when are filled in by [`record`].
pub struct ReviewInput {
    pub outcome: Outcome,
    pub note: String,
    pub by: Option<String>,
    pub suppress_days: Option<u32>,
}

/// Whom a review is about: the command line names a patient, the page a case.
pub enum Subject<'a> {
    Patient(&'a str),
    Case(&'a str),
}

/// The OS user running the command, when `--by` is not given.
pub fn os_user() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

/// Records a review of the subject's latest case, with the evidence of that night, in the store's review log.
pub fn record(store: &Path, subject: Subject<'_>, input: ReviewInput) -> anyhow::Result<Review> {
    if !store.is_dir() {
        anyhow::bail!("the store {} does not exist", store.display());
    }
    let row = match subject {
        Subject::Patient(nhs) => {
            latest_case_row(store, |r| r.nhs_number == nhs)?.ok_or_else(|| {
                anyhow::anyhow!(
                    "this patient has no case: a patient gets one when a nightly run flags them"
                )
            })?
        }
        Subject::Case(id) => {
            latest_case_row(store, |r| r.case.as_ref().is_some_and(|c| c.case_id == id))?
                .ok_or_else(|| anyhow::anyhow!("there is no case {id}"))?
        }
    };
    let Some(case) = &row.case else {
        anyhow::bail!("this patient has no case");
    };
    let note = input.note.trim().to_string();
    if note.is_empty() {
        anyhow::bail!("a review needs a note saying what was decided and why");
    }
    let by = input
        .by
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .unwrap_or_else(os_user);
    let at = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    let mut h = Sha256::new();
    h.update(at.as_bytes());
    h.update(case.case_id.as_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(note.as_bytes());
    let review = Review {
        review_id: hex::encode(&h.finalize()[..6]),
        case_id: case.case_id.clone(),
        nhs_number: row.nhs_number.clone(),
        outcome: input.outcome,
        note,
        by,
        at,
        suppress_days: input.suppress_days,
        night: row.night,
        score: row.risk_score,
        groups: row.groups.clone(),
        rules: row.rules.clone(),
    };
    append_review(store, &review)?;
    Ok(review)
}
