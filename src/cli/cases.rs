//! `accesswatch review` (record the lead's decision on a case) and `accesswatch cases` (list cases).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{config_with_store, print, Exit};
use crate::cases::ops::{self, CaseListing, ReviewInput, Subject, Which};
use crate::cases::Outcome;
use crate::report::html::spaced_nhs;

#[derive(Debug, clap::Args)]
pub struct ReviewArgs {
    /// The patient whose case was reviewed.
    #[arg(value_name = "NHS_NUMBER")]
    pub nhs_number: String,
    #[arg(long, value_enum)]
    pub outcome: Outcome,
    /// What was decided and why (kept in the review log; never logged).
    #[arg(long, value_name = "TEXT")]
    pub note: String,
    /// Who reviewed (default: the OS user running the command).
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    /// For a benign outcome: the case comes back after this many days even with nothing new (default: only when
    /// something new appears).
    #[arg(long, value_name = "N")]
    pub suppress_days: Option<u32>,
    /// The store folder (overrides the config's `store`).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct CasesArgs {
    /// Which cases: `open` (on the report), `reviewed` (decided, nothing new since) or `all`.
    #[arg(long, value_enum, default_value_t = Which::Open)]
    pub status: Which,
    /// Print JSON (one array of cases, each with its last review).
    #[arg(long)]
    pub json: bool,
    /// The store folder (overrides the config's `store`).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
}

pub fn review(config_file: Option<&Path>, args: ReviewArgs) -> anyhow::Result<Exit> {
    let config = config_with_store(config_file, args.store)?;
    let nhs = crate::ingest::validate::nhs_number(&args.nhs_number)
        .map_err(|e| anyhow::anyhow!("NHS_NUMBER: {e}"))?;
    if args.suppress_days.is_some() && args.outcome != Outcome::Benign {
        anyhow::bail!("--suppress-days applies to a benign outcome only");
    }
    let r = ops::record(
        &config.store,
        Subject::Patient(&nhs),
        ReviewInput {
            outcome: args.outcome,
            note: args.note,
            by: args.by,
            suppress_days: args.suppress_days,
        },
    )?;
    let effect = match (r.outcome, r.suppress_days) {
        (Outcome::Benign, None) => "It leaves the report until new evidence appears.".to_string(),
        (Outcome::Benign, Some(d)) => {
            format!("It leaves the report until new evidence appears, or for {d} days at most.")
        }
        _ => "It stays on the report, with this review shown.".to_string(),
    };
    print(&format!(
        "review recorded: case {} ({}, score {} on {}) marked {} by {}. {effect}\n",
        r.case_id,
        r.rules.join(", "),
        r.score,
        r.night,
        r.outcome.name(),
        r.by,
    ))?;
    Ok(Exit::Success)
}

pub fn cases(config_file: Option<&Path>, args: CasesArgs) -> anyhow::Result<Exit> {
    let config = config_with_store(config_file, args.store)?;
    let list = ops::list(&config.store, args.status, &config.detect.case)?;
    if args.json {
        print(&(serde_json::to_string_pretty(&list)? + "\n"))?;
    } else {
        print(&render(&list))?;
    }
    Ok(Exit::Success)
}

pub fn render(list: &[CaseListing]) -> String {
    let mut out = String::new();
    if list.is_empty() {
        out.push_str("no cases\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<16} {:<14} {:<13} {:>5}  {:<10} {:<10} last review",
        "case", "nhs_number", "status", "score", "since", "last night"
    );
    for c in list {
        let review = c
            .last_review
            .as_ref()
            .map(|r| format!("{} by {} on {}", r.outcome.name(), r.by, r.night))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<16} {:<14} {:<13} {:>5}  {:<10} {:<10} {}",
            c.case_id,
            spaced_nhs(&c.nhs_number),
            c.status.name(),
            c.risk_score,
            c.first_flagged,
            c.last_flagged,
            crate::ingest::escape_controls(&review),
        );
    }
    out
}
