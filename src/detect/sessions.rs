//! From audit events to sessions: one lazy polars plan per batch of patients that collapses the look-back's events
//! into one row per login session, and the window's figures (how many events, how much of each optional field).
//!
//! A session is rebuilt from the events of one patient, device and account: a login, or a gap of more than
//! [`SESSION_GAP_MINUTES`] without activity, starts a new one. The source's `session_id` is not used, even where an
//! export carries one: many exports do not (core FHIR has no session id at all), and the same practice must give
//! the same findings whichever way it was sent. Clock-aligned half hours, the old fallback, split one visit in two
//! and joined two visits into one.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Duration, NaiveDate};
use polars::prelude::*;

use super::model::*;
use crate::schema::*;
use crate::store::scan::scan_kind;

/// Inactivity that ends a rebuilt session.
pub const SESSION_GAP_MINUTES: i64 = 30;

fn utc_day(t: i64) -> NaiveDate {
    DateTime::from_timestamp_micros(t)
        .unwrap_or_default()
        .date_naive()
}

/// The store's date partitions that can hold events in [start, end).
pub fn partition_window(start: i64, end: i64) -> Expr {
    col(PARTITION_DATE)
        .gt_eq(lit(utc_day(start) - Duration::days(1)))
        .and(col(PARTITION_DATE).lt_eq(lit(utc_day(end))))
}

fn time() -> Expr {
    col(OCCURRED_AT).cast(DataType::Int64)
}

fn in_window(start: i64, end: i64) -> Expr {
    time().gt_eq(lit(start)).and(time().lt(lit(end)))
}

/// The window's audit events and the share of them carrying each optional field, in one scan.
pub fn window_figures(store: &Path, start: i64, end: i64) -> PolarsResult<FieldCoverage> {
    let present = |c: &str| col(c).is_not_null().cast(DataType::UInt64).sum().alias(c);
    let df = scan_kind(store, Kind::Audit)?
        .filter(partition_window(start, end))
        .filter(in_window(start, end))
        .select([
            len().cast(DataType::UInt64).alias("events"),
            present(DEVICE_ID),
            present(USER_AGENT),
            present(IP_ADDRESS),
            present(SESSION_ID),
            present(ACCOUNT_ID),
        ])
        .collect()?;
    let get = |c: &str| -> u64 {
        df.column(c)
            .ok()
            .and_then(|c| c.get(0).ok())
            .and_then(|v| v.extract::<u64>())
            .unwrap_or(0)
    };
    let events = get("events");
    let share = |c: &str| {
        if events == 0 {
            0.0
        } else {
            get(c) as f64 / events as f64
        }
    };
    Ok(FieldCoverage {
        events,
        device_id: share(DEVICE_ID),
        user_agent: share(USER_AGENT),
        ip_address: share(IP_ADDRESS),
        session_id: share(SESSION_ID),
        account_id: share(ACCOUNT_ID),
    })
}

fn one_of(c: &str, name: &str, values: &[&str]) -> Expr {
    col(c).is_in(lit(Series::new(name.into(), values)).implode(false), false)
}

/// The plan that collapses a batch's audit events into one row per session, collected.
pub fn session_frame(
    store: &Path,
    start: i64,
    end: i64,
    (batch, batches): (u32, u32),
) -> PolarsResult<DataFrame> {
    let t = time;
    let is_read = one_of(ACTION, "r", &READ_ACTIONS);
    let is_change = one_of(ACTION, "c", &ACCOUNT_CHANGES);
    let is_owner = one_of(ACTION, "o", &OWNER_ACTIONS);
    let is_prying = is_read
        .clone()
        .and(one_of(SECTION, "p", &PRYING_SECTIONS).fill_null(lit(false)));
    let is_broad = is_read
        .clone()
        .and(one_of(SECTION, "b", &CARE_SECTIONS).fill_null(lit(false)));
    let mut scan = scan_kind(store, Kind::Audit)?.filter(partition_window(start, end));
    if batches > 1 {
        // NHS numbers are stored as 10 validated digits: the last two pick the batch.
        let last_two = col(NHS_NUMBER)
            .str()
            .slice(lit(8), lit(2))
            .cast(DataType::UInt32);
        scan = scan.filter((last_two % lit(batches)).eq(lit(batch)));
    }
    let keyed = scan
        .filter(in_window(start, end))
        // A failed login is not access to the record.
        .filter(col(OUTCOME).eq(lit("success")))
        .with_columns([
            coalesce(&[
                col(DEVICE_ID),
                concat_str(
                    [
                        lit(UA_KEY),
                        col(USER_AGENT)
                            .str()
                            .replace_all(lit(r"[0-9]+"), lit("#"), false),
                    ],
                    "",
                    false,
                ),
                lit(UNKNOWN_DEVICE),
            ])
            .alias("device_key"),
            col(ACCOUNT_ID).fill_null(lit("-")).alias("account_key"),
        ]);
    // Sorted by patient, device, account and time, a session starts where any key changes, at a login, or after a
    // gap: plain shifts over the sorted frame (a window function per group costs several times more).
    let gap = lit(SESSION_GAP_MINUTES * 60_000_000);
    let changed = |c: &str| col(c).neq_missing(col(c).shift(lit(1)));
    let starts = changed(NHS_NUMBER)
        .or(changed("device_key"))
        .or(changed("account_key"))
        .or((t() - t().shift(lit(1))).gt(gap).fill_null(lit(true)))
        .or(col(ACTION).eq(lit("login")));
    let keyed = keyed
        .sort(
            [NHS_NUMBER, "device_key", "account_key", OCCURRED_AT],
            Default::default(),
        )
        .with_column(
            starts
                .cast(DataType::UInt64)
                .cum_sum(false)
                .alias("session_key"),
        );
    let df = keyed
        .group_by([
            col(NHS_NUMBER),
            col("session_key"),
            col("device_key"),
            col("account_key"),
        ])
        .agg([
            t().min().alias("start"),
            t().max().alias("end"),
            col(ACTOR_ROLE).first().alias("role"),
            col(IP_ADDRESS).drop_nulls().first().alias("ip"),
            col(USER_AGENT).drop_nulls().first().alias("ua"),
            len().alias("events"),
            is_read.cast(DataType::UInt32).sum().alias("reads"),
            is_prying.cast(DataType::UInt32).sum().alias("prying"),
            is_broad.cast(DataType::UInt32).sum().alias("broad"),
            is_owner.cast(DataType::UInt32).sum().alias("owner"),
            t().filter(is_change.clone()).min().alias("change_at"),
            col(ACTION).filter(is_change).first().alias("change"),
        ])
        .sort(["nhs_number", "start", "session_key"], Default::default());
    // The streaming engine holds less of the look-back at once (about a quarter less at 1M events).
    // One plan with one sink always gives a single frame, so this cannot panic on any input.
    Ok(df.collect_with_engine(Engine::Streaming)?.unwrap_single())
}

pub(crate) fn micros(c: &Column) -> PolarsResult<Vec<Option<i64>>> {
    Ok(c.cast(&DataType::Int64)?.i64()?.iter().collect())
}

pub(crate) fn strs(c: &Column) -> PolarsResult<Vec<Option<String>>> {
    Ok(c.str()?.iter().map(|s| s.map(str::to_string)).collect())
}

fn counts(df: &DataFrame, name: &str) -> PolarsResult<Vec<u32>> {
    Ok(df
        .column(name)?
        .cast(&DataType::UInt32)?
        .u32()?
        .iter()
        .map(|v| v.unwrap_or(0))
        .collect())
}

/// Sessions per patient, in time order, from a session frame; and the audit events they hold.
pub fn sessions_from(df: &DataFrame) -> PolarsResult<(BTreeMap<String, Vec<Session>>, u64)> {
    let nhs = strs(df.column(NHS_NUMBER)?)?;
    let device = strs(df.column("device_key")?)?;
    let account = strs(df.column("account_key")?)?;
    let start_v = micros(df.column("start")?)?;
    let end_v = micros(df.column("end")?)?;
    let role = strs(df.column("role")?)?;
    let ip = strs(df.column("ip")?)?;
    let ua = strs(df.column("ua")?)?;
    let events = counts(df, "events")?;
    let reads = counts(df, "reads")?;
    let prying = counts(df, "prying")?;
    let broad = counts(df, "broad")?;
    let owner = counts(df, "owner")?;
    let change_at = micros(df.column("change_at")?)?;
    let change = strs(df.column("change")?)?;
    let mut out: BTreeMap<String, Vec<Session>> = BTreeMap::new();
    let mut total = 0u64;
    for i in 0..df.height() {
        let (Some(n), Some(s), Some(e)) = (nhs[i].clone(), start_v[i], end_v[i]) else {
            continue;
        };
        total += u64::from(events[i]);
        out.entry(n.clone()).or_default().push(Session {
            nhs_number: n,
            start: s,
            end: e,
            device: device[i].clone().unwrap_or_default(),
            account: account[i].clone().unwrap_or_default(),
            role: role[i].clone().unwrap_or_else(|| "patient".into()),
            ip: ip[i].clone(),
            user_agent: ua[i].clone(),
            events: events[i],
            reads: reads[i],
            prying_reads: prying[i],
            broad_reads: broad[i],
            owner_actions: owner[i],
            account_change_at: change_at[i],
            account_change: change[i].clone(),
        });
    }
    Ok((out, total))
}
