//! `accesswatch evaluate`: score a detection run's `patients.csv` against a generator's `truth.csv`.

use std::path::PathBuf;

use super::{print, Exit};
use crate::evaluate;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The truth file (`nhs_number,label,scenario,persona`).
    #[arg(long, value_name = "FILE")]
    pub truth: PathBuf,
    /// The run folder holding `patients.csv` (`<reports>/<as-of>/`).
    #[arg(long, value_name = "DIR")]
    pub report: PathBuf,
    /// Print one JSON object (precision, recall, f1, precision_at_k, average_precision, per_scenario, per_persona).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let e = evaluate::evaluate(&args.truth, &args.report)?;
    if args.json {
        print(&(serde_json::to_string_pretty(&e)? + "\n"))?;
    } else {
        print(&evaluate::render(&e))?;
    }
    Ok(Exit::Success)
}
