//! The command line: one file per subcommand, each holding its clap arguments and its `run`.
//!
//! Exit codes (also in the README):
//! - 0: success.
//! - 1: failure: bad config, a refused or unreadable input file, a store that cannot be written.
//! - 2: the command line itself is wrong (clap's usage errors).
//! - 3: success, but some rows were quarantined: look at the quarantine.
//! - 4: (`run`) success, and a patient is at or above the level named by `run.fail_on` / `--fail-on`.

pub mod cases;
pub mod codes;
pub mod compact;
pub mod detect;
pub mod evaluate;
pub mod generate;
pub mod ingest;
pub mod query;
pub mod rules;
pub mod run;
pub mod serve;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Config, Overrides};

#[derive(Debug, Parser)]
#[command(name = "accesswatch", version, about, long_about = None)]
pub struct Cli {
    /// The TOML config file (store, time zone, column mappings). Built-in defaults apply without one.
    #[arg(long, global = true, env = "ACCESSWATCH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log format on stderr. Logs never contain NHS numbers or other identifiers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log more (-v: progress of each file, -vv: debugging detail).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate CSV exports and add them to the Parquet store; bad rows go to the quarantine.
    Ingest(ingest::Args),
    /// The nightly job: ingest new files from the inbox, detect for the day, write the run folder.
    Run(run::Args),
    /// Run every rule for a day and write the run folder (patients.csv, findings.csv, findings.parquet, summary.json).
    Detect(detect::Args),
    /// List the detection rules, or explain one (`--explain RULE_ID`).
    Rules(rules::Args),
    /// Rewrite store partitions that many batches wrote to as one sorted file each (ingest does this itself past
    /// `ingest.compact_at_files` files).
    Compact(compact::Args),
    /// Run analyst SQL (a shipped query, a .sql file or --sql) over the store and past runs.
    Query(query::Args),
    /// Inspect the sensitive code catalogue and lint a practice's own code lists.
    Codes(codes::Args),
    /// Write a synthetic practice with labelled monitoring scenarios (and its truth file).
    Generate(generate::Args),
    /// Score a detection run against a truth file.
    Evaluate(evaluate::Args),
    /// Record the safeguarding lead's decision on a patient's case (appended to the store's review log).
    Review(cases::ReviewArgs),
    /// List cases: open ones (on the report), reviewed ones, or all, with their last review.
    Cases(cases::CasesArgs),
    /// Serve the latest report and the case list, with a review form per case, on a local address (loopback and a
    /// token by default).
    Serve(serve::Args),
}

/// The documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Failure = 1,
    Usage = 2,
    Quarantined = 3,
    Flagged = 4,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    init_logging(cli.log_format, cli.verbose);
    match cli.command {
        Command::Ingest(args) => ingest::run(cli.config.as_deref(), args),
        Command::Run(args) => run::run(cli.config.as_deref(), args),
        Command::Detect(args) => detect::run(cli.config.as_deref(), args),
        Command::Rules(args) => rules::run(args),
        Command::Query(args) => query::run(cli.config.as_deref(), args),
        Command::Compact(args) => compact::run(cli.config.as_deref(), args),
        Command::Codes(args) => codes::run(cli.config.as_deref(), args),
        Command::Generate(args) => generate::run(cli.config.as_deref(), args),
        Command::Evaluate(args) => evaluate::run(cli.config.as_deref(), args),
        Command::Review(args) => cases::review(cli.config.as_deref(), args),
        Command::Cases(args) => cases::cases(cli.config.as_deref(), args),
        Command::Serve(args) => serve::run(cli.config.as_deref(), args),
    }
}

/// `--pseudonymise` / `--no-pseudonymise`, shared by the commands that write analyst outputs.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct PseudonymiseArgs {
    /// Replace NHS numbers, account ids, device ids and IP addresses in analyst outputs with keyed pseudonyms
    /// (HMAC-SHA256; the key is read from the file named by ACCESSWATCH_KEY_FILE or the config's
    /// pseudonymise_key_file, never from the command line).
    #[arg(long, conflicts_with = "no_pseudonymise")]
    pub pseudonymise: bool,
    /// Write real identifiers even when the config pseudonymises by default.
    #[arg(long)]
    pub no_pseudonymise: bool,
}

impl PseudonymiseArgs {
    pub fn apply(self, config: &mut Config) {
        if self.pseudonymise {
            config.pseudonymise = true;
        } else if self.no_pseudonymise {
            config.pseudonymise = false;
        }
    }
}

/// Loads the config with the subcommand's overrides applied.
pub fn load_config(
    file: Option<&std::path::Path>,
    overrides: &Overrides,
) -> anyhow::Result<Config> {
    let config = Config::load(file, overrides)?;
    for dir in config.open_outputs() {
        warn_user(&format!(
            "{} can be read by other users of this machine (group or others); it will hold special-category health \
             data: make it owner-only (chmod 700)",
            dir.display()
        ));
    }
    Ok(config)
}

/// [`load_config`] with only the store given on the command line (`--store`), as most commands take it.
pub fn config_with_store(
    file: Option<&std::path::Path>,
    store: Option<std::path::PathBuf>,
) -> anyhow::Result<Config> {
    load_config(
        file,
        &Overrides {
            store,
            ..Default::default()
        },
    )
}

static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A warning for the person or job running the command: a plain line on stderr, or with `--log-format json` a JSON
/// log line like every other, so a log collector never meets a line it cannot parse.
pub fn warn_user(message: &str) {
    if JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!("{message}");
    } else {
        eprintln!("accesswatch: warning: {message}");
    }
}

/// The error that ends the command, as [`warn_user`] does warnings.
pub fn report_error(message: &str) {
    if JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::error!("{message}");
    } else {
        eprintln!("accesswatch: error: {message}");
    }
}

fn init_logging(format: LogFormat, verbose: u8) {
    JSON_LOGS.store(
        format == LogFormat::Json,
        std::sync::atomic::Ordering::Relaxed,
    );
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ACCESSWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("accesswatch={default}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    // A second initialisation (tests calling run twice) is harmless: the first subscriber stays.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Writes to stdout; a closed pipe (`accesswatch ... | head`) is not an error.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
