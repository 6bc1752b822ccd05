//! `accesswatch generate`: a synthetic practice with labelled monitoring scenarios (or, with `--events`, a large
//! audit file for benchmarks).

use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDate, Utc};

use super::{load_config, print, Exit};
use crate::config::Overrides;
use crate::context::catalogue::SensitiveCatalogue;
use crate::generate::{self, write, Intensity, Onset, PracticeSpec};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder to write (created if needed; files in it are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// How many patients.
    #[arg(long, default_value_t = 300)]
    pub patients: usize,
    /// How many days of data, ending on the as-of date.
    #[arg(long, default_value_t = 56)]
    pub days: u32,
    /// The random seed: the same seed (and as-of date) gives the same files byte for byte.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The last day of data (default: yesterday, UTC).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub as_of: Option<NaiveDate>,
    /// Where to write the labels (`nhs_number,label,scenario,persona,intensity,onset`), for `evaluate`. Default:
    /// `<out>.truth.csv` beside the folder, so a run that ingests the folder never sees them.
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,
    /// Also write the audit events as FHIR R4 AuditEvent NDJSON, to `fhir/audit.ndjson` (a folder of its own, so
    /// ingesting the output folder does not read the events twice).
    #[arg(long)]
    pub fhir: bool,
    /// When watchers began: before the data (established), during it, in the last fortnight, or a mix (60% established).
    #[arg(long, value_enum, default_value_t = Onset::Mixed)]
    pub onset: Onset,
    /// How hard watchers look.
    #[arg(long, value_enum, default_value_t = Intensity::Mixed)]
    pub intensity: Intensity,
    /// Leave these optional columns out of `audit.csv`, as a thin export would (comma-separated: event_id,
    /// account_id, actor_role, device_id, user_agent, ip_address, session_id).
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    pub drop_columns: Vec<String>,
    /// The share of devices (with ten sessions or more) whose app is reinstalled once, from a session at random on:
    /// from then on the device carries a new id and the app's next version, as a real installation does.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub reinstalls: f64,
    /// Scale mode: write only `audit.csv` with this many valid rows, streamed, for benchmarks.
    #[arg(long, value_name = "N")]
    pub events: Option<u64>,
}

pub fn run(config_file: Option<&Path>, args: Args) -> anyhow::Result<Exit> {
    let config = load_config(config_file, &Overrides::default())?;
    let as_of = args
        .as_of
        .unwrap_or_else(|| Utc::now().date_naive() - Duration::days(1));
    if let Some(events) = args.events {
        let path = write::write_scale_audit(
            &args.out,
            events,
            args.patients,
            args.days,
            args.seed,
            as_of,
        )?;
        print(&format!(
            "wrote {events} audit rows to {}\n",
            path.display()
        ))?;
        return Ok(Exit::Success);
    }
    if let Some(bad) = args
        .drop_columns
        .iter()
        .find(|c| !write::DROPPABLE_COLUMNS.contains(&c.as_str()))
    {
        super::report_error(&format!(
            "--drop-columns: '{}' is not an optional audit column (one of {})",
            bad.escape_debug(),
            write::DROPPABLE_COLUMNS.join(", ")
        ));
        return Ok(Exit::Usage);
    }
    let spec = PracticeSpec {
        onset: args.onset,
        intensity: args.intensity,
        reinstalls: args.reinstalls,
        patients: args.patients,
        days: args.days,
        seed: args.seed,
        as_of,
        timezone: config.timezone,
    };
    let catalogue = SensitiveCatalogue::for_config(&config)?;
    let practice = generate::generate(&spec, &catalogue);
    let mut files = write::write_practice(
        &practice,
        &spec,
        &args.out,
        &args.drop_columns,
        &args
            .truth
            .clone()
            .unwrap_or_else(|| write::default_truth_path(&args.out)),
    )?;
    if args.fhir {
        files.push(write::write_fhir_audit(&practice, &args.out.join("fhir"))?);
    }
    let monitored = practice
        .truth
        .iter()
        .filter(|t| t.label == "monitored")
        .count();
    let mut out = format!(
        "generated {} patients ({} monitored) over {} days to {as_of}: {} audit events, {} entries, {} appointments, {} proxy links\n",
        practice.truth.len(),
        monitored,
        spec.days,
        practice.audit.len(),
        practice.entries.len(),
        practice.appointments.len(),
        practice.proxies.len()
    );
    for f in files {
        out.push_str(&format!("  {}\n", f.display()));
    }
    print(&out)?;
    Ok(Exit::Success)
}
