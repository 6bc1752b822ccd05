//! Analyst SQL over the store: the shipped queries in `queries/` (compiled in), the tables they can use, parameter
//! substitution, and errors that name the query file.
//!
//! Tables: `audit` (plus `occurred_local`, the event time in the practice's time zone), `entries`,
//! `appointments`, `proxies`, `quarantine`, the clinical-context views (`sensitive_codes`, `sensitive_entries`,
//! `restrictions`, `proxy_links`, `face_to_face_visits`), and from past detection runs `findings` and
//! `flagged_patients`, each with the run's `run_date`.

use std::collections::BTreeMap;
use std::path::Path;

use polars::prelude::*;
use polars::sql::SQLContext;

use crate::config::Config;
use crate::context::catalogue::SensitiveCatalogue;
use crate::context::views;
use crate::records::text;
use crate::report::{FINDINGS_PARQUET, PATIENTS_CSV};
use crate::schema::{Kind, OCCURRED_AT};
use crate::store::scan::scan_kind;

/// The shipped queries, by name (the file name without `.sql`).
pub const BUILT_IN: &[(&str, &str)] = &[
    (
        "access_after_104",
        include_str!("../queries/access_after_104.sql"),
    ),
    (
        "access_by_day_and_channel",
        include_str!("../queries/access_by_day_and_channel.sql"),
    ),
    (
        "devices_on_several_patients",
        include_str!("../queries/devices_on_several_patients.sql"),
    ),
    (
        "devices_per_patient",
        include_str!("../queries/devices_per_patient.sql"),
    ),
    (
        "findings_per_rule_over_time",
        include_str!("../queries/findings_per_rule_over_time.sql"),
    ),
    (
        "flagged_patients_by_run",
        include_str!("../queries/flagged_patients_by_run.sql"),
    ),
    (
        "hour_of_day_profile",
        include_str!("../queries/hour_of_day_profile.sql"),
    ),
    (
        "new_devices_this_week",
        include_str!("../queries/new_devices_this_week.sql"),
    ),
    (
        "patient_timeline",
        include_str!("../queries/patient_timeline.sql"),
    ),
    (
        "quarantine_by_reason",
        include_str!("../queries/quarantine_by_reason.sql"),
    ),
    (
        "sensitive_entries_by_category",
        include_str!("../queries/sensitive_entries_by_category.sql"),
    ),
    (
        "views_after_sensitive_entries",
        include_str!("../queries/views_after_sensitive_entries.sql"),
    ),
];

/// Every table a query can name.
pub const TABLES: &[&str] = &[
    "audit",
    "entries",
    "appointments",
    "proxies",
    "quarantine",
    "sensitive_codes",
    "sensitive_entries",
    "restrictions",
    "proxy_links",
    "face_to_face_visits",
    "findings",
    "flagged_patients",
];

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("query {origin}: {message}")]
    Bad { origin: String, message: String },
    #[error("no shipped query is called '{0}' (see `accesswatch query --list`)")]
    Unknown(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Polars(#[from] PolarsError),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub default: String,
    pub help: String,
}

/// A query with its header.
#[derive(Debug, Clone)]
pub struct Query {
    pub name: String,
    pub origin: String,
    pub title: String,
    pub question: String,
    pub params: Vec<Param>,
    pub sql: String,
}

impl Query {
    /// Reads the header: `-- title:`, `-- question:` (both required) and `-- param: name = default  (help)`.
    pub fn parse(name: &str, origin: &str, text: &str) -> Result<Query, QueryError> {
        let bad = |message: String| QueryError::Bad {
            origin: origin.to_string(),
            message,
        };
        let (mut title, mut question, mut params) = (None, None, Vec::new());
        for line in text
            .lines()
            .map(str::trim)
            .take_while(|l| l.starts_with("--"))
        {
            let body = line.trim_start_matches('-').trim();
            if let Some(t) = body.strip_prefix("title:") {
                title = Some(t.trim().to_string());
            } else if let Some(q) = body.strip_prefix("question:") {
                question = Some(q.trim().to_string());
            } else if let Some(p) = body.strip_prefix("param:") {
                let (decl, help) = match p.split_once('(') {
                    Some((d, h)) => (d, h.trim().trim_end_matches(')').to_string()),
                    None => (p, String::new()),
                };
                let (pname, default) = decl.split_once('=').ok_or_else(|| {
                    bad(format!(
                        "the header line '{line}' should read `-- param: name = default`"
                    ))
                })?;
                params.push(Param {
                    name: pname.trim().to_string(),
                    default: default.trim().to_string(),
                    help,
                });
            }
        }
        let title = title.ok_or_else(|| bad("the header has no `-- title:` line".into()))?;
        let question =
            question.ok_or_else(|| bad("the header has no `-- question:` line".into()))?;
        let q = Query {
            name: name.to_string(),
            origin: origin.to_string(),
            title,
            question,
            params,
            sql: text.to_string(),
        };
        for used in q.placeholders() {
            if !q.params.iter().any(|p| p.name == used) {
                return Err(bad(format!(
                    "the SQL uses ${{{used}}} but the header declares no `-- param: {used}`"
                )));
            }
        }
        Ok(q)
    }

    fn placeholders(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = self.sql.as_str();
        while let Some(i) = rest.find("${") {
            let after = &rest[i + 2..];
            let Some(j) = after.find('}') else { break };
            out.push(after[..j].to_string());
            rest = &after[j + 1..];
        }
        out
    }

    /// The SQL with `${name}` replaced by the given value or the default. Values are plain words, numbers and
    /// dates: a quote, semicolon or comment marker is refused, so a parameter cannot change the query's shape.
    pub fn render(&self, given: &BTreeMap<String, String>) -> Result<String, QueryError> {
        let bad = |message: String| QueryError::Bad {
            origin: self.origin.clone(),
            message,
        };
        for k in given.keys() {
            if !self.params.iter().any(|p| &p.name == k) {
                let known: Vec<_> = self.params.iter().map(|p| p.name.as_str()).collect();
                return Err(bad(format!(
                    "no parameter '{k}' (parameters: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            }
        }
        let mut sql = self.sql.clone();
        for p in &self.params {
            let value = given.get(&p.name).unwrap_or(&p.default);
            if !value
                .chars()
                .all(|c| c.is_alphanumeric() || " _.:-+".contains(c))
                || value.contains("--")
            {
                return Err(bad(format!(
                    "parameter {}: only letters, digits, spaces and _ . : - + are allowed",
                    p.name
                )));
            }
            sql = sql.replace(&format!("${{{}}}", p.name), value);
        }
        Ok(sql)
    }
}

pub fn built_in() -> Result<Vec<Query>, QueryError> {
    BUILT_IN
        .iter()
        .map(|(name, text)| Query::parse(name, &format!("queries/{name}.sql"), text))
        .collect()
}

/// A shipped query by name, or a `.sql` file by path.
pub fn load(name_or_file: &str) -> Result<Query, QueryError> {
    if name_or_file.ends_with(".sql") {
        let path = Path::new(name_or_file);
        let text = std::fs::read_to_string(path).map_err(|source| QueryError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        return Query::parse(&name, &path.display().to_string(), &text);
    }
    let (name, text) = BUILT_IN
        .iter()
        .find(|(n, _)| *n == name_or_file)
        .ok_or_else(|| QueryError::Unknown(name_or_file.into()))?;
    Query::parse(name, &format!("queries/{name}.sql"), text)
}

/// Every table, registered lazily: a query over one week reads one week's partitions.
pub fn context(config: &Config) -> Result<SQLContext, QueryError> {
    let catalogue = SensitiveCatalogue::for_config(config).map_err(|e| QueryError::Bad {
        origin: "config".into(),
        message: e.to_string(),
    })?;
    let mut ctx = SQLContext::new();
    views::register_sql(&mut ctx, &config.store, &catalogue)?;
    let tz = TimeZone::opt_try_new(Some(config.timezone.name()))?;
    let audit = scan_kind(&config.store, Kind::Audit)?;
    let audit = match tz {
        Some(tz) => audit.with_column(
            col(OCCURRED_AT)
                .dt()
                .convert_time_zone(tz)
                .alias("occurred_local"),
        ),
        None => audit.with_column(col(OCCURRED_AT).alias("occurred_local")),
    };
    ctx.register("audit", audit);
    let (findings, flagged) = past_runs(&config.reports)?;
    ctx.register("findings", findings);
    ctx.register("flagged_patients", flagged);
    Ok(ctx)
}

/// `findings` and `flagged_patients` from every run folder under `reports`, with their run date.
fn past_runs(reports: &Path) -> PolarsResult<(LazyFrame, LazyFrame)> {
    let days = crate::report::run_folders(reports);
    let mut findings = Vec::new();
    let (mut run_date, mut nhs, mut level, mut score, mut rules) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (day, dir) in &days {
        let f = dir.join(FINDINGS_PARQUET);
        if f.exists() {
            let lf = LazyFrame::scan_parquet(
                PlRefPath::new(f.display().to_string()),
                ScanArgsParquet::default(),
            )?;
            findings.push(lf.with_column(lit(*day).cast(DataType::Date).alias("run_date")));
        }
        if let Ok(mut r) = csv::Reader::from_path(dir.join(PATIENTS_CSV)) {
            for rec in r.records().flatten() {
                if rec.get(2).is_some_and(|l| l == "high" || l == "medium") {
                    run_date.push(*day);
                    nhs.push(rec.get(0).unwrap_or_default().to_string());
                    score.push(rec.get(1).and_then(|s| s.parse::<i64>().ok()));
                    level.push(rec.get(2).unwrap_or_default().to_string());
                    rules.push(rec.get(3).unwrap_or_default().to_string());
                }
            }
        }
    }
    let findings = if findings.is_empty() {
        let mut schema = crate::report::findings_frame(&[])?
            .schema()
            .as_ref()
            .clone();
        schema.with_column("run_date".into(), DataType::Date);
        DataFrame::empty_with_schema(&schema).lazy()
    } else {
        concat(findings, UnionArgs::default())?
    };
    let n = nhs.len();
    let dates = DateChunked::from_naive_date("run_date".into(), run_date).into_column();
    let flagged = DataFrame::new(
        n,
        vec![
            dates,
            text("nhs_number", nhs.iter().map(|s| Some(s.as_str()))),
            Int64Chunked::from_iter_options("risk_score".into(), score.into_iter()).into_column(),
            text("risk_level", level.iter().map(|s| Some(s.as_str()))),
            text("rules", rules.iter().map(|s| Some(s.as_str()))),
        ],
    )?;
    Ok((findings, flagged.lazy()))
}

/// Runs SQL; polars' own errors are reported against the query's file, with the tables listed when one is unknown.
pub fn execute(ctx: &mut SQLContext, q: &Query, sql: &str) -> Result<DataFrame, QueryError> {
    let wrap = |e: PolarsError| {
        let message = e.to_string();
        let message = if message.contains("not found")
            && message.to_lowercase().contains("relation")
            || message.contains("table") && message.contains("not")
        {
            format!("{message} (tables: {})", TABLES.join(", "))
        } else {
            message
        };
        QueryError::Bad {
            origin: q.origin.clone(),
            message,
        }
    };
    ctx.execute(sql).and_then(|lf| lf.collect()).map_err(wrap)
}

/// The shipped queries in `--list` form.
pub fn list() -> Result<String, QueryError> {
    let mut s = String::new();
    for q in built_in()? {
        s.push_str(&format!("{}\n  {}\n  {}\n", q.name, q.title, q.question));
        for p in &q.params {
            s.push_str(&format!("  --param {}={}  {}\n", p.name, p.default, p.help));
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_required_and_parameters_declared() {
        assert!(Query::parse("x", "x.sql", "SELECT 1")
            .unwrap_err()
            .to_string()
            .contains("title"));
        assert!(Query::parse("x", "x.sql", "-- title: t\nSELECT 1")
            .unwrap_err()
            .to_string()
            .contains("question"));
        let e = Query::parse("x", "x.sql", "-- title: t\n-- question: q\nSELECT ${n}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.sql") && e.contains("${n}"), "{e}");
        let q = Query::parse(
            "x",
            "x.sql",
            "-- title: t\n-- question: q\n-- param: n = 3  (how many)\nSELECT ${n}",
        )
        .unwrap();
        assert_eq!(
            q.params,
            vec![Param {
                name: "n".into(),
                default: "3".into(),
                help: "how many".into()
            }]
        );
        assert!(q.render(&BTreeMap::new()).unwrap().ends_with("SELECT 3"));
        let given: BTreeMap<String, String> =
            [("n".to_string(), "5".to_string())].into_iter().collect();
        assert!(q.render(&given).unwrap().ends_with("SELECT 5"));
        let evil: BTreeMap<String, String> = [("n".to_string(), "1; DROP".to_string())]
            .into_iter()
            .collect();
        assert!(q.render(&evil).is_err());
        let quote: BTreeMap<String, String> = [("n".to_string(), "1' OR '1".to_string())]
            .into_iter()
            .collect();
        assert!(q.render(&quote).is_err());
        let unknown: BTreeMap<String, String> =
            [("m".to_string(), "1".to_string())].into_iter().collect();
        assert!(q
            .render(&unknown)
            .unwrap_err()
            .to_string()
            .contains("no parameter 'm'"));
    }

    #[test]
    fn every_shipped_query_has_its_header() {
        let all = built_in().unwrap();
        assert!(all.len() >= 10);
        let on_disk: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/queries"))
                .unwrap()
                .map(|e| {
                    e.unwrap()
                        .file_name()
                        .to_string_lossy()
                        .trim_end_matches(".sql")
                        .to_string()
                })
                .collect();
        for name in &on_disk {
            assert!(
                all.iter().any(|q| &q.name == name),
                "queries/{name}.sql is not compiled in (add it to BUILT_IN)"
            );
        }
        assert_eq!(on_disk.len(), all.len());
    }
}
