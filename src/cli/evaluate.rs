//! `accesswatch evaluate`: score detection against a generator's `truth.csv`, either one run's `patients.csv`
//! (`--report`) or a replay of the last N nights from the store (`--nights`).

use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use super::{config_with_store, print, Exit};
use crate::evaluate;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The truth file (`nhs_number,label,scenario,persona`, and optionally `watch_from`, the day watching began).
    #[arg(long, value_name = "FILE")]
    pub truth: PathBuf,
    /// The run folder holding `patients.csv` (`<reports>/<as-of>/`).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "nights",
        conflicts_with = "nights"
    )]
    pub report: Option<PathBuf>,
    /// Replay detection for each of the last N nights from the store, in memory (the store and the reports are not
    /// written), and report nights to first flag and the review load.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=366))]
    pub nights: Option<u32>,
    /// With `--nights`: the last night (default: the day of the newest audit event in the store).
    #[arg(long, value_name = "YYYY-MM-DD", requires = "nights")]
    pub as_of: Option<NaiveDate>,
    /// With `--nights`: the store folder (overrides the config's `store`).
    #[arg(long, value_name = "DIR", requires = "nights")]
    pub store: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(config_file: Option<&Path>, args: Args) -> anyhow::Result<Exit> {
    let text = match (args.nights, &args.report) {
        (Some(n), _) => {
            let config = config_with_store(config_file, args.store.clone())?;
            let to = match args.as_of {
                Some(d) => d,
                None => crate::pipeline::latest_data_day(&config)?.ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: the store holds no audit events to replay",
                        config.store.display()
                    )
                })?,
            };
            let e = evaluate::replay(&config, &args.truth, to, n)?;
            if args.json {
                serde_json::to_string_pretty(&e)? + "\n"
            } else {
                evaluate::render_nights(&e)
            }
        }
        (None, Some(report)) => {
            let e = evaluate::evaluate(&args.truth, report)?;
            if args.json {
                serde_json::to_string_pretty(&e)? + "\n"
            } else {
                evaluate::render(&e)
            }
        }
        (None, None) => anyhow::bail!("give --report DIR or --nights N"),
    };
    print(&text)?;
    Ok(Exit::Success)
}
