//! `accesswatch ingest`: validate export files into the store and account for every row.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::ValueEnum;

use super::{config_with_store, print, Exit};
use crate::ingest::{self, FileStatus, IngestOptions, IngestReport};
use crate::schema::Kind;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store folder (overrides the config's `store`).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// What the files hold; `auto` recognises each file by its header.
    #[arg(long, value_enum, default_value_t = KindArg::Auto)]
    pub kind: KindArg,

    /// Read files again even when the manifest says the same content is already ingested.
    #[arg(long)]
    pub reingest: bool,

    /// Print the report as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Files (`.csv`, `.csv.gz`) or folders to search for them.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Auto,
    Audit,
    Entries,
    Appointments,
    Proxies,
}

impl KindArg {
    fn kind(self) -> Option<Kind> {
        match self {
            KindArg::Auto => None,
            KindArg::Audit => Some(Kind::Audit),
            KindArg::Entries => Some(Kind::Entries),
            KindArg::Appointments => Some(Kind::Appointments),
            KindArg::Proxies => Some(Kind::Proxies),
        }
    }
}

pub fn run(config_file: Option<&Path>, args: Args) -> anyhow::Result<Exit> {
    let config = config_with_store(config_file, args.store.clone())?;
    let opts = IngestOptions {
        kind: args.kind.kind(),
        reingest: args.reingest,
        progress: !args.json && std::io::stderr().is_terminal(),
    };
    let report = ingest::ingest(&config, &args.paths, &opts)?;
    if args.json {
        print(&(serde_json::to_string_pretty(&report)? + "\n"))?;
    } else {
        print(&render_table(&report))?;
    }
    Ok(exit_code(&report))
}

pub fn exit_code(report: &IngestReport) -> Exit {
    if report.has_problem_files() || !report.balanced || report.store_error.is_some() {
        Exit::Failure
    } else if report.totals.quarantined > 0 {
        Exit::Quarantined
    } else {
        Exit::Success
    }
}

/// The human summary: one line per file, the totals, the row identity, and what to do about problems.
pub fn render_table(r: &IngestReport) -> String {
    let mut s = String::new();
    let width = r
        .files
        .iter()
        .map(|f| f.path.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(s, "store: {}", r.store);
    let _ = writeln!(
        s,
        "{:<width$}  {:<12}  {:<16}  {:>10}  {:>10}  {:>10}  {:>11}",
        "file", "kind", "status", "read", "stored", "duplicates", "quarantined"
    );
    for f in &r.files {
        let _ = writeln!(
            s,
            "{:<width$}  {:<12}  {:<16}  {:>10}  {:>10}  {:>10}  {:>11}",
            f.path,
            f.kind.map(Kind::name).unwrap_or("-"),
            status_word(f.status),
            f.counts.read,
            f.counts.stored,
            f.counts.duplicates,
            f.counts.quarantined
        );
    }
    let t = &r.totals;
    let _ = writeln!(
        s,
        "{:<width$}  {:<12}  {:<16}  {:>10}  {:>10}  {:>10}  {:>11}",
        "total", "", "", t.read, t.stored, t.duplicates, t.quarantined
    );
    let _ = writeln!(
        s,
        "rows: read {} = stored {} + duplicates {} + quarantined {} ({})",
        t.read,
        t.stored,
        t.duplicates,
        t.quarantined,
        if r.balanced {
            "every row accounted for"
        } else {
            "DOES NOT BALANCE: please report this"
        }
    );
    if let Some(c) = &r.compacted {
        let _ = writeln!(
            s,
            "compacted: {} partition(s), {} file(s) into {}",
            c.partitions, c.files_before, c.files_after
        );
    }
    if let (Some(e), false) = (&r.store_error, r.has_problem_files()) {
        let _ = writeln!(s, "failed: {e}");
    }
    for f in &r.files {
        if !f.unknown_columns.is_empty() {
            let _ = writeln!(
                s,
                "note: {} has columns that were ignored: {}",
                f.path,
                f.unknown_columns.join(", ")
            );
        }
        if let Some(m) = &f.message {
            let word = match f.status {
                FileStatus::Refused => "refused",
                FileStatus::Failed => "failed",
                FileStatus::Skipped => "skipped",
                _ => "note",
            };
            let _ = writeln!(s, "{word}: {}: {m}", f.path);
        }
    }
    if t.quarantined > 0 {
        let _ = writeln!(
            s,
            "{} row(s) quarantined with file, line, column and reason in {}/quarantine/",
            t.quarantined, r.store
        );
    }
    s
}

fn status_word(s: FileStatus) -> &'static str {
    match s {
        FileStatus::Ingested => "ingested",
        FileStatus::AlreadyIngested => "already ingested",
        FileStatus::Refused => "REFUSED",
        FileStatus::Skipped => "skipped",
        FileStatus::Failed => "FAILED",
    }
}
