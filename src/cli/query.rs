//! `accesswatch query`: run a shipped query, a `.sql` file or inline SQL over the store, and print or export it.

use anyhow::Context;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use polars::prelude::*;

use super::{load_config, print, Exit};
use crate::config::Overrides;
use crate::query::{self, Query};
use crate::store::private_file;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A shipped query's name (see --list) or a `.sql` file.
    #[arg(value_name = "NAME|FILE.sql", conflicts_with_all = ["sql", "list"])]
    pub query: Option<String>,
    /// SQL given inline instead of a query name or file.
    #[arg(long, value_name = "TEXT", conflicts_with = "list")]
    pub sql: Option<String>,
    /// A query parameter, `KEY=VALUE` (repeatable); unset parameters take their defaults.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write to this file (owner-only) instead of standard output; required for parquet.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub pseudonymise: super::PseudonymiseArgs,
    /// List the shipped queries with their titles and parameters.
    #[arg(long)]
    pub list: bool,
    /// The store folder (overrides the config's `store`).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// The reports folder whose past runs give `findings` and `flagged_patients` (overrides `reports`).
    #[arg(long, value_name = "DIR")]
    pub reports: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Parquet,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("'{s}' is not KEY=VALUE"))
}

pub fn run(config_file: Option<&Path>, args: Args) -> anyhow::Result<Exit> {
    if args.list {
        print(&query::list()?)?;
        return Ok(Exit::Success);
    }
    let q = match (&args.query, &args.sql) {
        (Some(name), None) => query::load(name)?,
        (None, Some(sql)) => Query {
            name: "inline".into(),
            origin: "--sql".into(),
            title: String::new(),
            question: String::new(),
            params: Vec::new(),
            sql: sql.clone(),
        },
        _ => anyhow::bail!("name a query (see --list), a .sql file, or give --sql"),
    };
    if args.format == Format::Parquet && args.output.is_none() {
        anyhow::bail!("--format parquet needs --output FILE");
    }
    let mut config = load_config(
        config_file,
        &Overrides {
            store: args.store.clone(),
            reports: args.reports.clone(),
            ..Default::default()
        },
    )?;
    args.pseudonymise.apply(&mut config);
    let given: BTreeMap<String, String> = args.params.iter().cloned().collect();
    let sql = q.render(&given)?;
    let pseudonymiser = config.pseudonymiser()?;
    let mut ctx = query::context(&config)?;
    let mut df = query::execute(&mut ctx, &q, &sql)?;
    if let Some(p) = &pseudonymiser {
        p.frame(&mut df)?;
    }
    let bytes = encode(&mut df, args.format)?;
    match &args.output {
        Some(path) => {
            let mut f = private_file(path, true)
                .with_context(|| format!("cannot write {}", path.display()))?;
            f.write_all(&bytes)
                .and_then(|_| f.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            print(&format!(
                "{} rows written to {}\n",
                df.height(),
                path.display()
            ))?;
        }
        None => print(&String::from_utf8_lossy(&bytes))?,
    }
    Ok(Exit::Success)
}

pub fn encode(df: &mut DataFrame, format: Format) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    match format {
        Format::Table => {
            // Show every row and whole values: an analyst asked for them.
            std::env::set_var("POLARS_FMT_MAX_ROWS", "200");
            std::env::set_var("POLARS_FMT_MAX_COLS", "30");
            std::env::set_var("POLARS_FMT_STR_LEN", "80");
            out.extend_from_slice(format!("{df}\n").as_bytes());
        }
        Format::Csv => {
            // Text that a spreadsheet would run as a formula is neutralised, as in the run folder's CSV files.
            for name in df.get_column_names_owned() {
                let column = df.column(&name)?;
                if column.dtype() == &DataType::String {
                    let neutral: StringChunked = column
                        .str()?
                        .iter()
                        .map(|v| v.map(crate::report::csv_safe))
                        .collect();
                    df.with_column(neutral.with_name(name).into_column())?;
                }
            }
            CsvWriter::new(&mut out).include_header(true).finish(df)?
        }
        Format::Json => JsonWriter::new(&mut out)
            .with_json_format(JsonFormat::Json)
            .finish(df)?,
        Format::Parquet => {
            ParquetWriter::new(&mut out)
                .with_compression(ParquetCompression::Zstd(None))
                .finish(df)?;
        }
    }
    Ok(out)
}
