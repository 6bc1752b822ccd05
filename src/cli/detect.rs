//! `accesswatch detect`: run every rule for a day and write the run folder.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{Duration, NaiveDate, Utc};

use super::{load_config, print, Exit};
use crate::config::{Config, Overrides};
use crate::context::catalogue::SensitiveCatalogue;
use crate::detect;
use crate::report::{self, InputFigures};
use crate::store::manifest::Manifest;

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
}

/// The practice's yesterday.
pub fn yesterday(config: &Config) -> NaiveDate {
    Utc::now().with_timezone(&config.timezone).date_naive() - Duration::days(1)
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
    if let Some(n) = args.lookback_days {
        if n <= config.detect.recent_days {
            anyhow::bail!(
                "--lookback-days must be more than detect.recent_days ({})",
                config.detect.recent_days
            );
        }
        config.detect.lookback_days = n;
    }
    let as_of = args.as_of.unwrap_or_else(|| yesterday(&config));
    let (dir, summary) = run_detection(&config, as_of)?;
    if args.json {
        print(&(serde_json::to_string_pretty(&summary)? + "\n"))?;
    } else {
        print(&render_summary(&summary, &dir))?;
    }
    Ok(Exit::Success)
}

/// Detection and the run folder, for `detect` and the nightly `run`.
pub fn run_detection(
    config: &Config,
    as_of: NaiveDate,
) -> anyhow::Result<(PathBuf, report::RunSummary)> {
    let started = Instant::now();
    let catalogue = SensitiveCatalogue::for_config(config)?;
    let d = detect::detect(
        &config.store,
        &config.detect,
        &config.allowlist,
        &catalogue,
        config.timezone,
        as_of,
    )?;
    let detect_secs = started.elapsed().as_secs_f64();
    let manifest = Manifest::load(&config.store)?;
    let input = InputFigures {
        files: manifest.files.len() as u64,
        rows_read: manifest.files.iter().map(|f| f.read).sum(),
        stored: manifest.files.iter().map(|f| f.stored).sum(),
        duplicates: manifest.files.iter().map(|f| f.duplicates).sum(),
        quarantined: manifest.files.iter().map(|f| f.quarantined).sum(),
    };
    let mut seconds = BTreeMap::new();
    seconds.insert("detect", round3(detect_secs));
    let write_started = Instant::now();
    let summary = report::summarise(&d, as_of, &config.hash, input.clone(), seconds.clone());
    let dir = report::write_run(&config.reports, as_of, &d, &summary)?;
    seconds.insert("write", round3(write_started.elapsed().as_secs_f64()));
    let summary = report::summarise(&d, as_of, &config.hash, input, seconds);
    // Rewrite the summary with the write time included (the folder is already in place).
    std::fs::write(
        dir.join(report::SUMMARY_JSON),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    tracing::info!(
        as_of = %as_of,
        patients = d.stats.patients_analysed,
        findings = d.findings.len(),
        "detection done"
    );
    Ok((dir, summary))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
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
