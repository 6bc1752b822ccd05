//! `accesswatch detect`: run every rule for a day and write the run folder.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use super::{load_config, print, Exit};
use crate::config::Overrides;
use crate::pipeline;
use crate::report;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store folder (overrides the config's `store`).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// The day to report on (default: yesterday in the practice's time zone).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub as_of: Option<NaiveDate>,
    /// Days of history to read (overrides `detect.lookback_days`).
    #[arg(long, value_name = "N")]
    pub lookback_days: Option<u32>,
    /// Where run folders go (overrides the config's `reports`); the run writes `<out>/<as-of>/`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the run summary as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub pseudonymise: super::PseudonymiseArgs,
}

pub fn run(config_file: Option<&Path>, args: Args) -> anyhow::Result<Exit> {
    let mut config = load_config(
        config_file,
        &Overrides {
            store: args.store.clone(),
            reports: args.out.clone(),
            ..Default::default()
        },
    )?;
    args.pseudonymise.apply(&mut config);
    if let Some(n) = args.lookback_days {
        if n <= config.detect.recent_days {
            anyhow::bail!(
                "--lookback-days must be more than detect.recent_days ({})",
                config.detect.recent_days
            );
        }
        config.detect.lookback_days = n;
        let problems = config.detect.problems();
        if !problems.is_empty() {
            anyhow::bail!("--lookback-days: {}", problems.join("; "));
        }
    }
    let as_of = match args.as_of {
        Some(d) => d,
        None => config.yesterday(),
    };
    let pseudonymiser = config.pseudonymiser()?;
    let (dir, summary) = pipeline::detect_and_report(&config, as_of, pseudonymiser.as_ref())?;
    if args.json {
        print(&(serde_json::to_string_pretty(&summary)? + "\n"))?;
    } else {
        print(&render_summary(&summary, &dir))?;
    }
    Ok(Exit::Success)
}

pub fn render_summary(s: &report::RunSummary, dir: &Path) -> String {
    let mut out = String::new();
    let high = s.patients_flagged.get("high").copied().unwrap_or(0);
    let medium = s.patients_flagged.get("medium").copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "as of {}: {} patients analysed, {} flagged ({} high, {} medium), {} findings",
        s.as_of,
        s.detection.patients_analysed,
        high + medium,
        high,
        medium,
        s.findings_per_rule.values().sum::<u64>()
    );
    let _ = writeln!(out, "report: {}", dir.display());
    out
}
