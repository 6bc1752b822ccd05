//! `accesswatch codes`: inspect the sensitive code catalogue in force, and lint a practice's own code list.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{load_config, print, Exit};
use crate::config::Overrides;
use crate::context::catalogue::{lint_list, Category, SensitiveCatalogue};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: CodesCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CodesCommand {
    /// List the sensitive categories with how many codes and keywords each has.
    Categories,
    /// Look up a code (exact) or a term (words anywhere in the catalogue's terms, and the keyword rules).
    Lookup {
        /// A SNOMED CT code or local code, or words of a term.
        query: String,
        /// At most this many matching terms.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Check code lists in the catalogue format (code,term,category,source): bad codes, unknown categories,
    /// duplicates. Every problem is named with its line; exit 1 if there is any.
    Lint {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

pub fn run(config_file: Option<&Path>, args: Args) -> anyhow::Result<Exit> {
    if let CodesCommand::Lint { files } = &args.command {
        return lint(files);
    }
    let config = load_config(config_file, &Overrides::default())?;
    let catalogue = SensitiveCatalogue::for_config(&config)?;
    match args.command {
        CodesCommand::Categories => print(&categories(&catalogue))?,
        CodesCommand::Lookup { query, limit } => print(&lookup(&catalogue, &query, limit))?,
        CodesCommand::Lint { .. } => unreachable!("handled above"),
    }
    Ok(Exit::Success)
}

pub fn categories(c: &SensitiveCatalogue) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<22}  {:>6}  {:>8}  {:>7}",
        "category", "codes", "keywords", "lists"
    );
    for cat in Category::ALL {
        let codes: Vec<_> = c.codes.iter().filter(|x| x.category == cat).collect();
        let lists: BTreeSet<&str> = codes.iter().map(|x| x.source.as_str()).collect();
        let words = c.keywords.get(&cat).map(Vec::len).unwrap_or(0);
        let _ = writeln!(
            s,
            "{:<22}  {:>6}  {:>8}  {:>7}",
            cat.name(),
            codes.len(),
            words,
            lists.len()
        );
    }
    let distinct: BTreeSet<&str> = c.codes.iter().map(|x| x.code.as_str()).collect();
    let _ = writeln!(
        s,
        "{} distinct codes in {} (code, category) pairs",
        distinct.len(),
        c.codes.len()
    );
    s
}

pub fn lookup(c: &SensitiveCatalogue, query: &str, limit: usize) -> String {
    let q = query.trim();
    let mut s = String::new();
    let by_code: Vec<_> = c.codes.iter().filter(|x| x.code == q).collect();
    if !by_code.is_empty() {
        for x in by_code {
            let _ = writeln!(
                s,
                "{}  {}  {}  (from {})",
                x.code, x.category, x.term, x.source
            );
        }
        return s;
    }
    let words: Vec<String> = q
        .to_lowercase()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let hits: Vec<_> = c
        .codes
        .iter()
        .filter(|x| {
            let t = x.term.to_lowercase();
            !words.is_empty() && words.iter().all(|w| t.contains(w.as_str()))
        })
        .collect();
    let mut by_term: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for h in &hits {
        by_term
            .entry((h.code.as_str(), h.term.as_str()))
            .or_default()
            .push(h.category.name());
    }
    for ((code, term), cats) in by_term.iter().take(limit) {
        let _ = writeln!(s, "{code}  {}  {term}", cats.join(";"));
    }
    if by_term.len() > limit {
        let _ = writeln!(s, "... and {} more (use --limit)", by_term.len() - limit);
    }
    if by_term.is_empty() {
        let _ = writeln!(s, "no code or term in the catalogue matches '{q}'");
    }
    match c.category_of_term(q) {
        Some(cat) => {
            let _ = writeln!(
                s,
                "an entry with the term '{q}' and an unlisted code would be {cat} (by keyword)"
            );
        }
        None => {
            let _ = writeln!(
                s,
                "an entry with the term '{q}' and an unlisted code matches no keyword"
            );
        }
    }
    s
}

fn lint(files: &[PathBuf]) -> anyhow::Result<Exit> {
    let mut out = String::new();
    let mut any = false;
    for f in files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                let _ = writeln!(out, "{}: cannot read: {e}", f.display());
                any = true;
                continue;
            }
        };
        let (codes, problems) = lint_list(&text);
        for p in &problems {
            let _ = writeln!(out, "{}:{}: {}", f.display(), p.line, p.message);
        }
        let _ = writeln!(
            out,
            "{}: {} codes, {} problem(s)",
            f.display(),
            codes.len(),
            problems.len()
        );
        any |= !problems.is_empty();
    }
    print(&out)?;
    Ok(if any { Exit::Failure } else { Exit::Success })
}
