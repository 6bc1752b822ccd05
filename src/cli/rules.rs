//! `accesswatch rules`: the rule catalogue, and each rule's investigation guide.

use std::fmt::Write as _;

use super::{print, Exit};
use crate::detect::rules::{self, RuleMeta};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one rule in full: what it detects, its benign look-alikes, and what to do.
    #[arg(long, value_name = "RULE_ID")]
    pub explain: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    match args.explain {
        None => {
            let mut s = String::new();
            for r in &rules::CATALOGUE {
                let _ = writeln!(
                    s,
                    "{:<32} {:<7} {}",
                    r.meta.id, r.meta.severity, r.meta.title
                );
            }
            print(&s)?;
        }
        Some(id) => {
            let Some(rule) = rules::find(&id) else {
                let ids: Vec<_> = rules::CATALOGUE.iter().map(|r| r.meta.id).collect();
                anyhow::bail!("no rule '{id}' (rules: {})", ids.join(", "));
            };
            print(&explain(&rule.meta))?;
        }
    }
    Ok(Exit::Success)
}

pub fn explain(m: &RuleMeta) -> String {
    let mut s = format!(
        "{}: {}\nusual severity: {}\n\nWhat it looks for\n  {}\n\nKnown benign look-alikes\n",
        m.id, m.title, m.severity, m.detects
    );
    for l in m.benign_lookalikes {
        let _ = writeln!(s, "  - {l}");
    }
    let _ = write!(s, "\nWhat to do\n  {}\n", m.guide);
    s
}
