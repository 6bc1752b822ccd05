//! `accesswatch run`: the nightly job, from inbox to report, unattended and safe to repeat.
//!
//! Exit codes: 0 success; 3 success, but rows were quarantined tonight; 4 success, and a patient is at or above
//! `run.fail_on` (or `--fail-on`); 1 failure (a refused or unreadable input file, a store or report that could
//! not be written, a run already in progress). A refused file still lets detection run on what is there.

use std::fmt::Write as _;
use std::path::Path;

use chrono::NaiveDate;

use super::{load_config, print, Exit};
use crate::config::Overrides;
use crate::ingest::FileStatus;
use crate::pipeline::{self, RunOutcome};
use crate::report;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The day to report on (default: the config's `run.as_of`: yesterday in the practice's time zone, or with no
    /// config file, the day of the newest data).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub as_of: Option<NaiveDate>,
    /// Exit with code 4 if any patient is at this level or above (overrides `run.fail_on`).
    #[arg(long, value_name = "LEVEL", value_parser = ["medium", "high"])]
    pub fail_on: Option<String>,
    #[command(flatten)]
    pub pseudonymise: super::PseudonymiseArgs,
}

pub fn run(config_file: Option<&Path>, args: Args) -> anyhow::Result<Exit> {
    let mut config = load_config(config_file, &Overrides::default())?;
    args.pseudonymise.apply(&mut config);
    if args.fail_on.is_some() {
        config.run.fail_on = args.fail_on;
    }
    let outcome = pipeline::nightly(&config, args.as_of)?;
    print(&render(&outcome))?;
    Ok(exit_code(&outcome, config.run.fail_on.as_deref()))
}

pub fn exit_code(o: &RunOutcome, fail_on: Option<&str>) -> Exit {
    let flagged = |level: &str| o.summary.patients_flagged.get(level).copied().unwrap_or(0) > 0;
    if o.ingest.has_problem_files() || !o.ingest.balanced {
        Exit::Failure
    } else if match fail_on {
        Some("high") => flagged("high"),
        Some("medium") => flagged("high") || flagged("medium"),
        _ => false,
    } {
        Exit::Flagged
    } else if o.ingest.totals.quarantined > 0 {
        Exit::Quarantined
    } else {
        Exit::Success
    }
}

pub fn render(o: &RunOutcome) -> String {
    let mut s = String::new();
    let i = &o.ingest;
    let count = |st: FileStatus| i.files.iter().filter(|f| f.status == st).count();
    let _ = writeln!(s, "accesswatch run for {}", o.as_of);
    let _ = writeln!(
        s,
        "  ingest: {} new file(s), {} already ingested, {} skipped, {} refused or failed; rows read {} = stored {} + duplicates {} + quarantined {}",
        count(FileStatus::Ingested),
        count(FileStatus::AlreadyIngested),
        count(FileStatus::Skipped),
        count(FileStatus::Refused) + count(FileStatus::Failed),
        i.totals.read,
        i.totals.stored,
        i.totals.duplicates,
        i.totals.quarantined
    );
    for f in i
        .files
        .iter()
        .filter(|f| matches!(f.status, FileStatus::Refused | FileStatus::Failed))
    {
        let _ = writeln!(
            s,
            "  problem: {}: {}",
            f.path,
            f.message.as_deref().unwrap_or("")
        );
    }
    if let Some(c) = &i.compacted {
        let _ = writeln!(
            s,
            "  compacted {} store partition(s): {} file(s) into {}",
            c.partitions, c.files_before, c.files_after
        );
    }
    let sm = &o.summary;
    let high = sm.patients_flagged.get("high").copied().unwrap_or(0);
    let medium = sm.patients_flagged.get("medium").copied().unwrap_or(0);
    let _ = writeln!(
        s,
        "  detect: {} patients analysed, {} flagged ({high} high, {medium} medium), {} findings",
        sm.detection.patients_analysed,
        high + medium,
        sm.findings_per_rule.values().sum::<u64>()
    );
    if !o.pruned.is_empty() {
        let _ = writeln!(s, "  pruned {} old run folder(s)", o.pruned.len());
    }
    let html = o.run_dir.join(report::REPORT_HTML);
    let _ = writeln!(
        s,
        "report: {}",
        if html.exists() {
            html.display().to_string()
        } else {
            o.run_dir.display().to_string()
        }
    );
    s
}
