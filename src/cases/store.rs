//! Where cases and reviews live in the store, and how they are written without a lock: every file is written beside
//! its final name (a dot-name readers skip), synced, and renamed into place.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::NaiveDate;
use polars::prelude::*;

use super::{CaseMark, CaseStatus, NightRow, Review};
use crate::records::text;
use crate::store::{create_private_dir, private_file, write_parquet};

pub const CASES_DIR: &str = "cases";
pub const REVIEWS_DIR: &str = "reviews";

fn night_file(store: &Path, night: NaiveDate) -> PathBuf {
    store
        .join(CASES_DIR)
        .join(format!("night={}.parquet", night.format("%Y-%m-%d")))
}

/// Writes `bytes` (or a frame) to `path` atomically: a hidden file beside it, synced, renamed.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut fs::File, &Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> anyhow::Result<()> {
        let mut f = private_file(&tmp, true)?;
        write(&mut f, &tmp)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        crate::store::sync_dir(dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

fn joined(v: &[String]) -> String {
    v.join(";")
}

fn split(s: Option<&str>) -> Vec<String> {
    s.unwrap_or_default()
        .split(';')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

pub fn rows_frame(rows: &[NightRow]) -> PolarsResult<DataFrame> {
    let day = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
    let nights: Vec<String> = rows.iter().map(|r| day(r.night)).collect();
    let firsts: Vec<Option<String>> = rows
        .iter()
        .map(|r| r.case.as_ref().map(|c| day(c.first_flagged)))
        .collect();
    let rules: Vec<String> = rows.iter().map(|r| joined(&r.rules)).collect();
    let groups: Vec<String> = rows.iter().map(|r| joined(&r.groups)).collect();
    DataFrame::new(
        rows.len(),
        vec![
            text(
                "nhs_number",
                rows.iter().map(|r| Some(r.nhs_number.as_str())),
            ),
            text("night", nights.iter().map(|s| Some(s.as_str()))),
            UInt32Chunked::from_iter_values("risk_score".into(), rows.iter().map(|r| r.risk_score))
                .into_column(),
            text(
                "risk_level",
                rows.iter().map(|r| Some(r.risk_level.as_str())),
            ),
            text("rules", rules.iter().map(|s| Some(s.as_str()))),
            text("evidence_groups", groups.iter().map(|s| Some(s.as_str()))),
            text(
                "case_id",
                rows.iter()
                    .map(|r| r.case.as_ref().map(|c| c.case_id.as_str())),
            ),
            text("first_flagged", firsts.iter().map(|s| s.as_deref())),
            text(
                "case_status",
                rows.iter()
                    .map(|r| r.case.as_ref().map(|c| c.status.name())),
            ),
        ],
    )
}

/// Writes a night's rows, replacing that night's file (a re-run writes the same content).
pub fn write_night(store: &Path, night: NaiveDate, rows: &[NightRow]) -> anyhow::Result<PathBuf> {
    let path = night_file(store, night);
    let df = rows_frame(rows)?;
    write_atomically(&path, |f, tmp| Ok(write_parquet(f, &df, tmp)?))?;
    Ok(path)
}

/// The night files in `[from, to)`, oldest first.
pub fn read_nights(store: &Path, from: NaiveDate, to: NaiveDate) -> anyhow::Result<Vec<NightRow>> {
    let mut out = Vec::new();
    for night in nights_in_store(store)? {
        if night >= from && night < to {
            out.extend(read_night(store, night)?);
        }
    }
    Ok(out)
}

/// The nights that have a case file, oldest first.
pub fn nights_in_store(store: &Path) -> anyhow::Result<Vec<NaiveDate>> {
    let dir = store.join(CASES_DIR);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut nights = Vec::new();
    for e in fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if let Some(d) = name
            .strip_prefix("night=")
            .and_then(|n| n.strip_suffix(".parquet"))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        {
            nights.push(d);
        }
    }
    nights.sort();
    Ok(nights)
}

pub fn read_night(store: &Path, night: NaiveDate) -> anyhow::Result<Vec<NightRow>> {
    let path = night_file(store, night);
    let bad = |what: &str| anyhow::anyhow!("{}: {what}", path.display());
    let file = fs::File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let s = |name: &str| -> anyhow::Result<StringChunked> {
        df.column(name)
            .and_then(|c| c.str().cloned())
            .map_err(|_| anyhow::anyhow!("{}: no text column '{name}'", path.display()))
    };
    let (nhs, nights, levels, rules, groups, ids, firsts, statuses) = (
        s("nhs_number")?,
        s("night")?,
        s("risk_level")?,
        s("rules")?,
        s("evidence_groups")?,
        s("case_id")?,
        s("first_flagged")?,
        s("case_status")?,
    );
    let scores = df
        .column("risk_score")
        .and_then(|c| c.u32().cloned())
        .map_err(|_| anyhow::anyhow!("{}: no risk_score column", path.display()))?;
    let date = |s: Option<&str>| s.and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let case = match (ids.get(i), date(firsts.get(i)), statuses.get(i)) {
            (Some(id), Some(first), Some(st)) => Some(CaseMark {
                case_id: id.to_string(),
                first_flagged: first,
                status: CaseStatus::parse(st).ok_or_else(|| bad("a case_status is not known"))?,
            }),
            (None, None, None) => None,
            _ => {
                return Err(bad(
                    "a case row lacks its case_id, first_flagged or case_status",
                ))
            }
        };
        out.push(NightRow {
            nhs_number: nhs
                .get(i)
                .ok_or_else(|| bad("an nhs_number is empty"))?
                .to_string(),
            night: date(nights.get(i)).ok_or_else(|| bad("a night is not a date"))?,
            risk_score: scores.get(i).unwrap_or(0),
            risk_level: levels.get(i).unwrap_or_default().to_string(),
            rules: split(rules.get(i)),
            groups: split(groups.get(i)),
            case,
        });
    }
    Ok(out)
}

/// Appends one review to the log: its own file, named by time and a random part, written atomically.
pub fn append_review(store: &Path, review: &Review) -> anyhow::Result<PathBuf> {
    let dir = store.join(REVIEWS_DIR);
    let stamp: String = review
        .at
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let path = dir.join(format!("review-{stamp}-{}.json", review.review_id));
    let mut text = serde_json::to_string_pretty(review)?;
    text.push('\n');
    write_atomically(&path, |f, _| {
        f.write_all(text.as_bytes())?;
        // A kill here leaves only a hidden temporary file, which readers skip.
        crate::store::fault_point();
        Ok(())
    })?;
    Ok(path)
}

/// Every review in the log, oldest first. A file that cannot be read is an error naming it (the log is never
/// edited, so that is damage someone must see).
pub fn read_reviews(store: &Path) -> anyhow::Result<Vec<Review>> {
    let dir = store.join(REVIEWS_DIR);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy())
                .is_some_and(|n| n.starts_with("review-") && n.ends_with(".json"))
        })
        .collect();
    paths.sort();
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        let text =
            fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
        let r: Review = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a review record", p.display()))?;
        out.push(r);
    }
    out.sort_by(|a, b| a.at.cmp(&b.at).then(a.review_id.cmp(&b.review_id)));
    Ok(out)
}
