//! `accesswatch compact`: rewrite partitions that many batches wrote to as one sorted file each (see
//! [`crate::store::compact`]). Ingest does this itself for partitions with `ingest.compact_at_files` files; this
//! command does it on demand, down to any number of files.

use std::path::{Path, PathBuf};

use super::{config_with_store, print, Exit};
use crate::store::{compact, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store folder (overrides the config's `store`).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Compact partitions that hold at least this many data files (and, whatever their number, those holding rows
    /// of files that were never committed: a killed or failed ingest's leftovers).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u64).range(2..))]
    pub min_files: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(config_file: Option<&Path>, args: Args) -> anyhow::Result<Exit> {
    let config = config_with_store(config_file, args.store.clone())?;
    anyhow::ensure!(
        config.store.is_dir(),
        "{}: no store there (ingest creates one)",
        config.store.display()
    );
    // The nightly run's lock too, so a compaction never runs beside a night's detection.
    let _run = crate::pipeline::RunLock::acquire(&config.store)?;
    let store = Store::open_for_write(&config.store)?;
    let min_files = usize::try_from(args.min_files).unwrap_or(usize::MAX);
    let r = compact::compact(
        &store,
        compact::Which {
            min_files,
            invisible: true,
        },
    )?;
    if args.json {
        print(&(serde_json::to_string_pretty(&r)? + "\n"))?;
    } else {
        print(&format!(
            "compacted {} partition(s): {} file(s) into {}; {} row(s) kept, {} invisible row(s) of uncommitted files \
             removed\n",
            r.partitions, r.files_before, r.files_after, r.rows, r.invisible_rows_removed
        ))?;
    }
    Ok(Exit::Success)
}
