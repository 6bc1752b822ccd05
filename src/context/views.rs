//! The derived views every rule reads, each a polars LazyFrame over the store with a fixed schema, and each
//! registered for SQL under the same name.
//!
//! | view | columns | what it holds |
//! |---|---|---|
//! | `sensitive_entries` | entry_id, nhs_number, recorded_at, visible_from, code, term, section, category, matched_by | entries in a sensitive category that a patient's online account can see: the latest version of each entry, redacted ones (`visible_online = false`) left out. `visible_from` is when it became visible online: `recorded_at`, or for an entry recorded while a 104 restriction was in force, the moment the restriction was lifted (an entry recorded under a restriction still in force is not visible and is left out). `category` is the highest-concern category; `matched_by` is `code` (a listed code) or `keyword` (the term). |
//! | `restrictions` | nhs_number, restricted_from, restricted_until, started_by, lifted_by | periods when a 104 code restricted online access to new entries: from a 104 until the next 106 (`restricted_until` null while in force). A 104 during a restriction does not start another; a 106 with no restriction in force does nothing. |
//! | `proxy_links` | nhs_number, proxy_account_id, proxy_nhs_number, relationship, valid_from, valid_until | formal proxy access over time; overlapping or touching grants of the same account to the same patient are merged into one period (`valid_until` null while in force). |
//! | `face_to_face_visits` | appointment_id, nhs_number, starts_at, ends_at | attended face-to-face appointments (the latest version of each), when the patient was at the surgery. Appointments with no end time never reach the store: the contract requires `ends_at`, so ingest quarantines them. |
//! | `sensitive_codes` | code, term, category, source | the catalogue in force |
//!
//! Control codes (104, 106, 103) are never sensitive entries themselves. A 104 code counts even when the entry is
//! marked not visible online: it is an instruction to the system, not content.

use std::collections::BTreeMap;
use std::path::Path;

use polars::prelude::*;
use polars::sql::SQLContext;

use super::catalogue::{Category, SensitiveCatalogue};
use super::{CODE_103, CODE_104, CODE_106};
use crate::records::{instants, text};
use crate::schema::*;
use crate::store::scan::{scan_kind, scan_quarantine};

pub const SENSITIVE_ENTRIES: &str = "sensitive_entries";
pub const RESTRICTIONS: &str = "restrictions";
pub const PROXY_LINKS: &str = "proxy_links";
pub const FACE_TO_FACE_VISITS: &str = "face_to_face_visits";
pub const SENSITIVE_CODES: &str = "sensitive_codes";

pub const VISIBLE_FROM: &str = "visible_from";
pub const CATEGORY: &str = "category";
pub const MATCHED_BY: &str = "matched_by";
pub const RESTRICTED_FROM: &str = "restricted_from";
pub const RESTRICTED_UNTIL: &str = "restricted_until";
pub const STARTED_BY: &str = "started_by";
pub const LIFTED_BY: &str = "lifted_by";
pub const VALID_FROM: &str = "valid_from";
pub const VALID_UNTIL: &str = "valid_until";

/// Keeps the latest version of each row with the same identity: the one from the file ingested last, and within
/// a file the one on the later line.
fn latest(lf: LazyFrame, identity: &[&str]) -> LazyFrame {
    let mut order: Vec<Expr> = identity.iter().map(|c| col(*c)).collect();
    order.extend([col(INGEST_SEQ), col(SOURCE_LINE)]);
    lf.sort_by_exprs(order, SortMultipleOptions::default())
        .unique_stable_generic(
            Some(identity.iter().map(|c| col(*c)).collect()),
            UniqueKeepStrategy::Last,
        )
}

/// The latest version of every record entry.
pub fn latest_entries(store: &Path) -> PolarsResult<LazyFrame> {
    Ok(latest(
        scan_kind(store, Kind::Entries)?,
        &[NHS_NUMBER, ENTRY_ID],
    ))
}

pub fn sensitive_entries(store: &Path, catalogue: &SensitiveCatalogue) -> PolarsResult<LazyFrame> {
    let code_map = catalogue.code_categories();
    let codes = DataFrame::new(
        code_map.len(),
        vec![
            text(CODE, code_map.keys().map(|c| Some(*c))),
            text("code_category", code_map.values().map(|c| Some(c.name()))),
        ],
    )?;
    // Keyword fallback: the first category in order of concern whose keywords match the term.
    let mut by_keyword = lit(NULL).cast(DataType::String);
    for category in Category::ALL.iter().rev() {
        if let Some(pattern) = catalogue.keyword_pattern(*category) {
            by_keyword = when(col(TERM).str().contains(lit(pattern), true))
                .then(lit(category.name()))
                .otherwise(by_keyword);
        }
    }
    let candidates = latest_entries(store)?
        .filter(
            col(VISIBLE_ONLINE).and(
                col(CODE)
                    .is_in(lit(control_codes()).implode(false), false)
                    .not(),
            ),
        )
        .left_join(codes.lazy(), col(CODE), col(CODE))
        .with_column(by_keyword.alias("keyword_category"))
        .with_columns([
            coalesce(&[col("code_category"), col("keyword_category")]).alias(CATEGORY),
            when(col("code_category").is_not_null())
                .then(lit("code"))
                .otherwise(lit("keyword"))
                .alias(MATCHED_BY),
        ])
        .filter(col(CATEGORY).is_not_null());
    // Entries recorded while a restriction was in force become visible when it is lifted, or never.
    let covering = candidates
        .clone()
        .select([col(NHS_NUMBER), col(ENTRY_ID), col(RECORDED_AT)])
        .inner_join(restrictions(store)?, col(NHS_NUMBER), col(NHS_NUMBER))
        .filter(
            col(RECORDED_AT).gt_eq(col(RESTRICTED_FROM)).and(
                col(RESTRICTED_UNTIL)
                    .is_null()
                    .or(col(RECORDED_AT).lt(col(RESTRICTED_UNTIL))),
            ),
        )
        .select([
            col(NHS_NUMBER),
            col(ENTRY_ID),
            col(RESTRICTED_UNTIL).alias("lifted_at"),
            lit(true).alias("covered"),
        ]);
    Ok(candidates
        .join(
            covering,
            [col(NHS_NUMBER), col(ENTRY_ID)],
            [col(NHS_NUMBER), col(ENTRY_ID)],
            JoinArgs::new(JoinType::Left),
        )
        .filter(col("covered").is_null().or(col("lifted_at").is_not_null()))
        .with_column(
            when(col("covered").is_null())
                .then(col(RECORDED_AT))
                .otherwise(col("lifted_at"))
                .alias(VISIBLE_FROM),
        )
        .select([
            col(ENTRY_ID),
            col(NHS_NUMBER),
            col(RECORDED_AT),
            col(VISIBLE_FROM),
            col(CODE),
            col(TERM),
            col(SECTION),
            col(CATEGORY),
            col(MATCHED_BY),
        ])
        .sort([NHS_NUMBER, VISIBLE_FROM, ENTRY_ID], Default::default()))
}

fn control_codes() -> Series {
    Series::new("control".into(), [CODE_104, CODE_106, CODE_103])
}

/// A period when a 104 code restricted a patient's online access to new entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestrictionPeriod {
    pub nhs_number: String,
    pub from: i64,
    /// `None` while the restriction is in force.
    pub until: Option<i64>,
    pub started_by: String,
    pub lifted_by: Option<String>,
}

/// Restriction periods from 104 and 106 codes (computed eagerly: there are few such codes).
pub fn restrictions(store: &Path) -> PolarsResult<LazyFrame> {
    let codes = latest_entries(store)?
        .filter(col(CODE).is_in(
            lit(Series::new("c".into(), [CODE_104, CODE_106])).implode(false),
            false,
        ))
        .select([col(NHS_NUMBER), col(RECORDED_AT), col(CODE), col(ENTRY_ID)])
        .sort(
            [NHS_NUMBER, RECORDED_AT, CODE, ENTRY_ID],
            Default::default(),
        )
        .collect()?;
    let nhs = codes.column(NHS_NUMBER)?.str()?;
    let at = codes.column(RECORDED_AT)?.datetime()?;
    let code = codes.column(CODE)?.str()?;
    let entry = codes.column(ENTRY_ID)?.str()?;
    let mut periods: Vec<RestrictionPeriod> = Vec::new();
    let mut open: Option<RestrictionPeriod> = None;
    for i in 0..codes.height() {
        let (Some(n), Some(t), Some(c), Some(e)) =
            (nhs.get(i), at.phys.get(i), code.get(i), entry.get(i))
        else {
            continue;
        };
        if open.as_ref().is_some_and(|p| p.nhs_number != n) {
            periods.extend(open.take());
        }
        match (c, open.take()) {
            (CODE_104, None) => {
                open = Some(RestrictionPeriod {
                    nhs_number: n.to_string(),
                    from: t,
                    until: None,
                    started_by: e.to_string(),
                    lifted_by: None,
                })
            }
            // A 104 and 106 at the same instant cancel out.
            (CODE_106, Some(p)) if t == p.from => {}
            (CODE_106, Some(mut p)) => {
                p.until = Some(t);
                p.lifted_by = Some(e.to_string());
                periods.push(p);
            }
            (_, still_open) => open = still_open,
        }
    }
    periods.extend(open);
    let df = DataFrame::new(
        periods.len(),
        vec![
            text(
                NHS_NUMBER,
                periods.iter().map(|p| Some(p.nhs_number.as_str())),
            ),
            instants(RESTRICTED_FROM, periods.iter().map(|p| Some(p.from))),
            instants(RESTRICTED_UNTIL, periods.iter().map(|p| p.until)),
            text(
                STARTED_BY,
                periods.iter().map(|p| Some(p.started_by.as_str())),
            ),
            text(LIFTED_BY, periods.iter().map(|p| p.lifted_by.as_deref())),
        ],
    )?;
    Ok(df.lazy())
}

/// Formal proxy periods, merged per (patient, proxy account).
pub fn proxy_links(store: &Path) -> PolarsResult<LazyFrame> {
    let rows = latest(
        scan_kind(store, Kind::Proxies)?,
        &[NHS_NUMBER, PROXY_ACCOUNT_ID, GRANTED_AT],
    )
    .sort(
        [NHS_NUMBER, PROXY_ACCOUNT_ID, GRANTED_AT],
        Default::default(),
    )
    .collect()?;
    let nhs = rows.column(NHS_NUMBER)?.str()?;
    let acct = rows.column(PROXY_ACCOUNT_ID)?.str()?;
    let pnhs = rows.column(PROXY_NHS_NUMBER)?.str()?;
    let rel = rows.column(RELATIONSHIP)?.str()?;
    let from = rows.column(GRANTED_AT)?.datetime()?;
    let until = rows.column(REVOKED_AT)?.datetime()?;
    struct Link {
        nhs: String,
        acct: String,
        pnhs: Option<String>,
        rel: Option<String>,
        from: i64,
        until: Option<i64>,
    }
    let mut links: Vec<Link> = Vec::new();
    for i in 0..rows.height() {
        let (Some(n), Some(a), Some(f)) = (nhs.get(i), acct.get(i), from.phys.get(i)) else {
            continue;
        };
        let u = until.phys.get(i);
        if let Some(last) = links.last_mut() {
            let same = last.nhs == n && last.acct == a;
            if same && last.until.is_none_or(|lu| f <= lu) {
                last.until = match (last.until, u) {
                    (Some(x), Some(y)) => Some(x.max(y)),
                    _ => None,
                };
                last.pnhs = pnhs.get(i).map(str::to_string).or(last.pnhs.take());
                last.rel = rel.get(i).map(str::to_string).or(last.rel.take());
                continue;
            }
        }
        links.push(Link {
            nhs: n.to_string(),
            acct: a.to_string(),
            pnhs: pnhs.get(i).map(str::to_string),
            rel: rel.get(i).map(str::to_string),
            from: f,
            until: u,
        });
    }
    let df = DataFrame::new(
        links.len(),
        vec![
            text(NHS_NUMBER, links.iter().map(|l| Some(l.nhs.as_str()))),
            text(
                PROXY_ACCOUNT_ID,
                links.iter().map(|l| Some(l.acct.as_str())),
            ),
            text(PROXY_NHS_NUMBER, links.iter().map(|l| l.pnhs.as_deref())),
            text(RELATIONSHIP, links.iter().map(|l| l.rel.as_deref())),
            instants(VALID_FROM, links.iter().map(|l| Some(l.from))),
            instants(VALID_UNTIL, links.iter().map(|l| l.until)),
        ],
    )?;
    Ok(df.lazy())
}

pub fn face_to_face_visits(store: &Path) -> PolarsResult<LazyFrame> {
    Ok(latest(
        scan_kind(store, Kind::Appointments)?,
        &[NHS_NUMBER, APPOINTMENT_ID],
    )
    .filter(
        col(MODE)
            .eq(lit("face_to_face"))
            .and(col(STATUS).eq(lit("attended"))),
    )
    .select([
        col(APPOINTMENT_ID),
        col(NHS_NUMBER),
        col(STARTS_AT),
        col(ENDS_AT),
    ])
    .sort([NHS_NUMBER, STARTS_AT], Default::default()))
}

pub fn sensitive_codes(catalogue: &SensitiveCatalogue) -> PolarsResult<LazyFrame> {
    let c = &catalogue.codes;
    Ok(DataFrame::new(
        c.len(),
        vec![
            text(CODE, c.iter().map(|x| Some(x.code.as_str()))),
            text(TERM, c.iter().map(|x| Some(x.term.as_str()))),
            text(CATEGORY, c.iter().map(|x| Some(x.category.name()))),
            text("source", c.iter().map(|x| Some(x.source.as_str()))),
        ],
    )?
    .lazy())
}

/// Registers the store's tables and the views under their names for SQL.
pub fn register_sql(
    ctx: &mut SQLContext,
    store: &Path,
    catalogue: &SensitiveCatalogue,
) -> PolarsResult<()> {
    let mut tables: BTreeMap<&str, LazyFrame> = BTreeMap::new();
    for kind in Kind::ALL {
        tables.insert(kind.name(), scan_kind(store, kind)?);
    }
    tables.insert("quarantine", scan_quarantine(store)?);
    tables.insert(SENSITIVE_CODES, sensitive_codes(catalogue)?);
    tables.insert(SENSITIVE_ENTRIES, sensitive_entries(store, catalogue)?);
    tables.insert(RESTRICTIONS, restrictions(store)?);
    tables.insert(PROXY_LINKS, proxy_links(store)?);
    tables.insert(FACE_TO_FACE_VISITS, face_to_face_visits(store)?);
    for (name, lf) in tables {
        ctx.register(name, lf);
    }
    Ok(())
}
