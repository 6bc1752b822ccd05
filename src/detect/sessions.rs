//! From audit events to sessions: one lazy polars plan per batch of patients decodes the look-back's events with
//! what a session sums up, and one pass over them, sorted by (patient, device, account) and time, cuts them into
//! login sessions (see [`batch_sessions`]); and the window's figures (how many events, how much of each optional
//! field).
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
use rayon::slice::ParallelSliceMut;

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

/// Collects a plan on polars' streaming engine: an aggregate over the whole look-back is computed chunk by chunk
/// instead of decoding every row of its columns first (at 100M events the in-memory engine held 10.8 GB for the
/// coverage figures below, the run's peak).
fn collect_streaming(plan: LazyFrame) -> PolarsResult<DataFrame> {
    // A plan with one root, as every plan here is, returns one frame: several come only from `collect_all`'s
    // several sinks (polars does not re-export the result type to match on).
    Ok(plan.collect_with_engine(Engine::Streaming)?.unwrap_single())
}

/// The window's audit events and the share of them carrying each optional field, in one streaming scan.
pub fn window_figures(store: &Path, start: i64, end: i64) -> PolarsResult<FieldCoverage> {
    let present = |c: &str| col(c).is_not_null().cast(DataType::UInt64).sum().alias(c);
    let df = collect_streaming(
        scan_kind(store, Kind::Audit)?
            .filter(partition_window(start, end))
            .filter(in_window(start, end))
            .select([
                len().cast(DataType::UInt64).alias("events"),
                present(DEVICE_ID),
                present(USER_AGENT),
                present(IP_ADDRESS),
                present(SESSION_ID),
                present(ACCOUNT_ID),
                one_of(ACTION, &READ_ACTIONS)
                    .cast(DataType::UInt64)
                    .sum()
                    .alias("reads"),
                one_of(ACTION, &READ_ACTIONS)
                    .and(col(SECTION).is_not_null())
                    .cast(DataType::UInt64)
                    .sum()
                    .alias(SECTION),
            ]),
    )?;
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
        // Of the reads: with none, there is nothing a missing section could hide.
        section: match get("reads") {
            0 => 1.0,
            reads => get(SECTION) as f64 / reads as f64,
        },
    })
}

/// The column of [`agent_devices`] that names a user agent's device.
const AGENT_KEY: &str = "agent_key";

/// Where an export has no device ids, a user agent with its version numbers masked stands for a device, so that an
/// app or system update is not a new device. But one device runs one version at a time, and an update never goes
/// back: two versions of one masked user agent that take turns on one record (the second first seen before the
/// first is last seen) are two devices of one model, such as a couple's phones. For such a patient and masked user
/// agent, the versions are chained into devices in time order (each version continues the device whose last use
/// came latest before its first, or starts another), and each version's device is keyed by the user agent the
/// chain began with. Everything else keeps the masked key. Returns (patient, user agent, device key) for the
/// versions that are split.
pub fn agent_devices(store: &Path, start: i64, end: i64) -> PolarsResult<DataFrame> {
    let spans = collect_streaming(
        scan_kind(store, Kind::Audit)?
            .filter(partition_window(start, end))
            .filter(in_window(start, end))
            .filter(col(DEVICE_ID).is_null().and(col(USER_AGENT).is_not_null()))
            .group_by([col(NHS_NUMBER), col(USER_AGENT)])
            .agg([time().min().alias("first"), time().max().alias("last")]),
    )?;
    let (nhs, ua) = (
        spans.column(NHS_NUMBER)?.str()?,
        spans.column(USER_AGENT)?.str()?,
    );
    let (first, last) = (spans.column("first")?.i64()?, spans.column("last")?.i64()?);
    // (patient, masked agent) -> its versions as (first, last, agent).
    type Versions<'a> = Vec<(i64, i64, &'a str)>;
    let mut groups: BTreeMap<(&str, String), Versions> = BTreeMap::new();
    for i in 0..spans.height() {
        if let (Some(n), Some(u), Some(f), Some(l)) =
            (nhs.get(i), ua.get(i), first.get(i), last.get(i))
        {
            groups
                .entry((n, mask_digits(u)))
                .or_default()
                .push((f, l, u));
        }
    }
    let (mut out_nhs, mut out_ua, mut out_key) = (Vec::new(), Vec::new(), Vec::new());
    for ((n, _), mut versions) in groups {
        versions.sort();
        let mut seen_until = i64::MIN;
        let mut takes_turns = false;
        for &(f, l, _) in &versions {
            takes_turns |= f < seen_until;
            seen_until = seen_until.max(l);
        }
        if !takes_turns {
            continue;
        }
        // Chains: (last use, the user agent it began with).
        let mut chains: Vec<(i64, &str)> = Vec::new();
        for &(f, l, u) in &versions {
            let before = chains
                .iter_mut()
                .filter(|(until, _)| *until < f)
                .max_by_key(|(until, _)| *until);
            let began = match before {
                Some(chain) => {
                    chain.0 = l;
                    chain.1
                }
                None => {
                    chains.push((l, u));
                    u
                }
            };
            out_nhs.push(n);
            out_ua.push(u);
            out_key.push(format!("{UA_KEY}{began}"));
        }
    }
    DataFrame::new(
        out_nhs.len(),
        vec![
            Column::new(NHS_NUMBER.into(), out_nhs),
            Column::new(USER_AGENT.into(), out_ua),
            Column::new(AGENT_KEY.into(), out_key),
        ],
    )
}

/// The look-back's refused logins (`login_failed`), per patient in time order, with the device key each came from.
/// They are not access to the record, so no session holds them; they are few, and they tell a patient locked out
/// of their own login after someone else changed the password.
pub fn failed_logins(
    store: &Path,
    start: i64,
    end: i64,
    agents: &DataFrame,
) -> PolarsResult<FastMap<String, Vec<(i64, String)>>> {
    // The refused logins are picked out on the streaming engine, chunk by chunk, with only the columns a device key
    // needs, so memory holds them rather than the look-back's columns.
    let refused = collect_streaming(
        scan_kind(store, Kind::Audit)?
            .filter(partition_window(start, end))
            .filter(in_window(start, end))
            .filter(col(ACTION).eq(lit("login_failed")))
            .select([
                col(NHS_NUMBER),
                col(OCCURRED_AT),
                col(DEVICE_ID),
                col(USER_AGENT),
            ]),
    )?;
    let (nhs, device, ua) = (
        refused.column(NHS_NUMBER)?.str()?,
        refused.column(DEVICE_ID)?.str()?,
        refused.column(USER_AGENT)?.str()?,
    );
    let t = micros(refused.column(OCCURRED_AT)?)?;
    let keys = DeviceKeys::new(agents, device, ua)?;
    let mut out: FastMap<String, Vec<(i64, String)>> = Default::default();
    for (i, t) in t.into_iter().enumerate() {
        if let (Some(n), Some(t)) = (nhs.get(i), t) {
            let key = keys.key(n, device.get(i), ua.get(i));
            out.entry(n.to_string())
                .or_default()
                .push((t, key.to_string()));
        }
    }
    for list in out.values_mut() {
        list.sort();
    }
    Ok(out)
}

/// Whether a text column holds one of `values` (null where it is null), as a chain of comparisons: polars' streaming
/// engine (0.55) runs those chunk by chunk, but a list lookup (`is_in` of a literal list) made it gather every row of
/// the plan's columns in memory first. On a 200,000-patient practice that was detection's peak, 2.4 GB, for a count
/// of the look-back's events; with comparisons the count takes half the time and the peak is elsewhere.
fn one_of(c: &str, values: &[&str]) -> Expr {
    values
        .iter()
        .map(|v| col(c).eq(lit(*v)))
        .reduce(Expr::or)
        .unwrap_or_else(|| lit(false))
}

/// Batches of patients for detection's passes: at most `batches` ranges of NHS numbers, each `[from, until)`
/// (open at the ends), holding about equal shares of the window's events. Each batch's scan then keeps one range:
/// two comparisons, where a split by the NHS number's last digits had to slice and parse every row's number (and a
/// range is what a Parquet reader can check against row groups' statistics, the store's files being sorted by NHS
/// number).
/// A patient is never cut in two, so a patient with a large share of the events gives fewer batches.
pub fn batch_ranges(
    store: &Path,
    start: i64,
    end: i64,
    batches: u32,
) -> PolarsResult<Vec<(Option<String>, Option<String>)>> {
    if batches <= 1 {
        return Ok(vec![(None, None)]);
    }
    let per_patient = collect_streaming(
        scan_kind(store, Kind::Audit)?
            .filter(partition_window(start, end))
            .filter(in_window(start, end))
            .group_by([col(NHS_NUMBER)])
            .agg([len().cast(DataType::UInt64).alias("events")]),
    )?;
    let (nhs, events) = (
        per_patient.column(NHS_NUMBER)?.str()?,
        per_patient.column("events")?.u64()?,
    );
    let patients: Vec<(&str, u64)> = nhs
        .iter()
        .zip(events.iter())
        .filter_map(|(n, e)| Some((n?, e.unwrap_or(0))))
        .collect();
    Ok(ranges_of(patients, batches))
}

/// Cuts patients, with their events, into at most `batches` ranges `[from, until)` of about equal events: a range
/// ends before the first patient whose running total has reached its share.
fn ranges_of(
    mut patients: Vec<(&str, u64)>,
    batches: u32,
) -> Vec<(Option<String>, Option<String>)> {
    patients.sort_unstable();
    let total: u64 = patients.iter().map(|p| p.1).sum();
    let mut starts: Vec<&str> = Vec::new();
    let mut seen = 0u64;
    for (n, e) in patients {
        let next = starts.len() as u64 + 1;
        if next < u64::from(batches) && seen >= total * next / u64::from(batches) {
            starts.push(n);
        }
        seen += e;
    }
    let mut ranges = Vec::with_capacity(starts.len() + 1);
    let mut from: Option<String> = None;
    for s in starts {
        ranges.push((from.take(), Some(s.to_string())));
        from = Some(s.to_string());
    }
    ranges.push((from, None));
    ranges
}

/// A batch's sessions, per patient in time order, and the audit events they hold.
///
/// One lazy plan decodes the batch's events with what a session sums up (keys, flags, time); the sessions are then
/// cut in one pass over the events sorted by (patient, device, account) number and time, and summed straight into
/// [`Session`]s. Only those three keys and the time are sorted; every other column is read in place by row, so no
/// string column is ever reordered or grouped.
pub fn batch_sessions(
    store: &Path,
    start: i64,
    end: i64,
    (from, until): (Option<&str>, Option<&str>),
    agents: &DataFrame,
) -> PolarsResult<(BTreeMap<String, Vec<Session>>, u64)> {
    let t = time;
    let is_read = one_of(ACTION, &READ_ACTIONS);
    let is_change = one_of(ACTION, &ACCOUNT_CHANGES);
    let is_owner = one_of(ACTION, &OWNER_ACTIONS);
    // A read with no section is of the record in general, disclosures included (an export may carry no sections).
    let is_prying = is_read
        .clone()
        .and(one_of(SECTION, &PRYING_SECTIONS).fill_null(lit(true)));
    let is_broad = is_read
        .clone()
        .and(one_of(SECTION, &CARE_SECTIONS).fill_null(lit(false)));
    let mut scan = scan_kind(store, Kind::Audit)?.filter(partition_window(start, end));
    // NHS numbers are stored as 10 validated digits, so their text order is their numeric order.
    if let Some(first) = from {
        scan = scan.filter(col(NHS_NUMBER).gt_eq(lit(first)));
    }
    if let Some(past) = until {
        scan = scan.filter(col(NHS_NUMBER).lt(lit(past)));
    }
    let base = scan
        .filter(in_window(start, end))
        // A failed login is not access to the record.
        .filter(col(OUTCOME).eq(lit("success")))
        .with_column(col(ACCOUNT_ID).fill_null(lit("-")).alias("account_key"));
    // Per event, only what a session sums up (the device key is made in the pass over them, by [`DeviceKeys`]).
    let mut events = base
        .select([
            col(NHS_NUMBER),
            col(DEVICE_ID),
            col("account_key"),
            t().alias("t"),
            col(ACTION).eq(lit("login")).alias("is_login"),
            col(ACTOR_ROLE),
            col(IP_ADDRESS),
            col(USER_AGENT),
            is_read.cast(DataType::UInt32).alias("is_read"),
            is_prying.cast(DataType::UInt32).alias("is_prying"),
            is_broad.cast(DataType::UInt32).alias("is_broad"),
            is_owner.cast(DataType::UInt32).alias("is_owner"),
            when(is_change.clone())
                .then(t())
                .otherwise(lit(NULL).cast(DataType::Int64))
                .alias("change_t"),
            when(is_change)
                .then(col(ACTION))
                .otherwise(lit(NULL).cast(DataType::String))
                .alias("change_action"),
        ])
        .collect()?;
    events.rechunk_mut_par();
    let text = |c: &str| -> PolarsResult<&StringChunked> { events.column(c)?.str() };
    let (nhs, device, account) = (text(NHS_NUMBER)?, text(DEVICE_ID)?, text("account_key")?);
    let (role, ip, ua, change) = (
        text(ACTOR_ROLE)?,
        text(IP_ADDRESS)?,
        text(USER_AGENT)?,
        text("change_action")?,
    );
    let times = events.column("t")?.i64()?;
    let change_t = events.column("change_t")?.i64()?;
    let login = events.column("is_login")?.bool()?;
    let flag = |c: &str| -> PolarsResult<&UInt32Chunked> { events.column(c)?.u32() };
    let (read, prying, broad, owner) = (
        flag("is_read")?,
        flag("is_prying")?,
        flag("is_broad")?,
        flag("is_owner")?,
    );

    let device_keys = DeviceKeys::new(agents, device, ua)?;
    // Each (patient, device, account) gets a number (two halves of the rows at once, see `number_events`); the
    // events, as (number, time, row), are then sorted on both cores.
    let all = KeyColumns {
        nhs: nhs.clone(),
        device: device.clone(),
        account: account.clone(),
        times: times.clone(),
        ua: ua.clone(),
    };
    let half = events.height() / 2;
    let (head, tail) = (all.slice(0, half), all.slice(half, events.height() - half));
    let (keys, mut order) = number_events(&head, &tail, &device_keys);
    order.par_sort_unstable();

    // One pass over each half of the sorted events (split where a number ends, so no session is cut), on both cores:
    // a session starts where the number changes, at a login, or after a gap. A patient's sessions from the two halves
    // are put together and sorted below, so the halves change nothing but the time taken.
    let mut split = order.len() / 2;
    while split > 0 && split < order.len() && order[split].0 == order[split - 1].0 {
        split += 1;
    }
    let columns = CutColumns {
        keys: &keys,
        login,
        role,
        ip,
        ua,
        change,
        change_t,
        read,
        prying,
        broad,
        owner,
    };
    let ((mut out, mut total), (rest, rest_total)) = rayon::join(
        || cut_sessions(&order[..split], &columns),
        || cut_sessions(&order[split..], &columns),
    );
    total += rest_total;
    for (nhs, list) in rest {
        out.entry(nhs).or_default().extend(list);
    }
    for list in out.values_mut() {
        list.sort_by(|a, b| {
            (a.start, &a.device, &a.account, a.end).cmp(&(b.start, &b.device, &b.account, b.end))
        });
    }
    Ok((out, total))
}

/// A (patient, device key, account) of a batch's events.
type Key<'a> = (&'a str, &'a str, &'a str);

/// The columns [`number_keys`] reads: a batch's events, or a run of them.
struct KeyColumns {
    nhs: StringChunked,
    device: StringChunked,
    account: StringChunked,
    times: Int64Chunked,
    ua: StringChunked,
}

impl KeyColumns {
    fn slice(&self, offset: usize, len: usize) -> KeyColumns {
        let o = offset as i64;
        KeyColumns {
            nhs: self.nhs.slice(o, len),
            device: self.device.slice(o, len),
            account: self.account.slice(o, len),
            times: self.times.slice(o, len),
            ua: self.ua.slice(o, len),
        }
    }
}

/// Numbers each (patient, device key, account) of a run of events that starts at row `first_row`, in the order of
/// its first event: the numbers, the keys by number, and each event with a patient and a time as (number, time,
/// row). `capacity` is room to reserve for the events, for a caller that adds more.
#[allow(clippy::type_complexity)]
fn number_keys<'a>(
    c: &'a KeyColumns,
    device_keys: &'a DeviceKeys<'a>,
    first_row: usize,
    capacity: usize,
) -> (PlHashMap<Key<'a>, u32>, Vec<Key<'a>>, Vec<(u32, i64, u32)>) {
    let mut key_of: PlHashMap<Key<'a>, u32> = PlHashMap::new();
    let mut keys: Vec<Key<'a>> = Vec::new();
    let mut order: Vec<(u32, i64, u32)> = Vec::with_capacity(capacity.max(c.nhs.len()));
    for (i, (((n, d), a), t)) in c
        .nhs
        .iter()
        .zip(c.device.iter())
        .zip(c.account.iter())
        .zip(c.times.iter())
        .enumerate()
    {
        let (Some(n), Some(t)) = (n, t) else { continue };
        let key = (n, device_keys.key(n, d, c.ua.get(i)), a.unwrap_or("-"));
        let id = *key_of.entry(key).or_insert_with(|| {
            keys.push(key);
            (keys.len() - 1) as u32
        });
        order.push((id, t, (first_row + i) as u32));
    }
    (key_of, keys, order)
}

/// Numbers each (patient, device key, account) of a batch's events, split in two runs of rows (`head`, then `tail`),
/// in the order of its first event, on both cores: the keys by number, and each event with a patient and a time as
/// (number, time, row). The tail's numbers are renumbered to follow the head's: a key the head has keeps its number,
/// and the tail's new keys follow in the order of their first events, as one pass over all the rows would number
/// them.
#[allow(clippy::type_complexity)]
fn number_events<'a>(
    head: &'a KeyColumns,
    tail: &'a KeyColumns,
    device_keys: &'a DeviceKeys<'a>,
) -> (Vec<Key<'a>>, Vec<(u32, i64, u32)>) {
    let rows = head.nhs.len() + tail.nhs.len();
    let ((mut key_of, mut keys, mut order), (_, tail_keys, tail_order)) = rayon::join(
        || number_keys(head, device_keys, 0, rows),
        || number_keys(tail, device_keys, head.nhs.len(), 0),
    );
    let renumbered: Vec<u32> = tail_keys
        .iter()
        .map(|&key| {
            *key_of.entry(key).or_insert_with(|| {
                keys.push(key);
                (keys.len() - 1) as u32
            })
        })
        .collect();
    order.extend(
        tail_order
            .into_iter()
            .map(|(id, t, row)| (renumbered[id as usize], t, row)),
    );
    (keys, order)
}

/// The columns [`cut_sessions`] reads, by row.
struct CutColumns<'a> {
    keys: &'a [(&'a str, &'a str, &'a str)],
    login: &'a BooleanChunked,
    role: &'a StringChunked,
    ip: &'a StringChunked,
    ua: &'a StringChunked,
    change: &'a StringChunked,
    change_t: &'a Int64Chunked,
    read: &'a UInt32Chunked,
    prying: &'a UInt32Chunked,
    broad: &'a UInt32Chunked,
    owner: &'a UInt32Chunked,
}

/// Sessions of events sorted by (number, time, row), each number's events all in `order`: per patient, with how many
/// events they hold.
fn cut_sessions(
    order: &[(u32, i64, u32)],
    c: &CutColumns,
) -> (BTreeMap<String, Vec<Session>>, u64) {
    let gap = SESSION_GAP_MINUTES * 60_000_000;
    let mut out: BTreeMap<String, Vec<Session>> = BTreeMap::new();
    let mut total = 0u64;
    let mut current: Option<(u32, Session)> = None;
    let mut text = Interner::default();
    // The current number's three texts, interned once for all its sessions (a number's events are together).
    let mut key_text: Option<(u32, (Text, Text, Text))> = None;
    for &(id, t, row) in order {
        let r = row as usize;
        let starts = match &current {
            None => true,
            Some((cid, s)) => *cid != id || t - s.end > gap || c.login.get(r).unwrap_or(false),
        };
        if starts {
            if let Some((_, s)) = current.take() {
                push_session(&mut out, s);
            }
            let (n, d, a) = match &key_text {
                Some((k, texts)) if *k == id => texts.clone(),
                _ => {
                    let (n, d, a) = c.keys[id as usize];
                    let texts = (text.get(n), text.get(d), text.get(a));
                    key_text = Some((id, texts.clone()));
                    texts
                }
            };
            current = Some((
                id,
                Session {
                    nhs_number: n,
                    start: t,
                    end: t,
                    device: d,
                    account: a,
                    role: text.get(c.role.get(r).unwrap_or("patient")),
                    ip: None,
                    user_agent: None,
                    events: 0,
                    reads: 0,
                    prying_reads: 0,
                    broad_reads: 0,
                    owner_actions: 0,
                    account_change_at: None,
                    account_change: None,
                },
            ));
        }
        if let Some((_, s)) = current.as_mut() {
            // The session's address and user agent: the first its events carry; its account change: the first.
            s.end = t;
            s.events += 1;
            total += 1;
            s.reads += c.read.get(r).unwrap_or(0);
            s.prying_reads += c.prying.get(r).unwrap_or(0);
            s.broad_reads += c.broad.get(r).unwrap_or(0);
            s.owner_actions += c.owner.get(r).unwrap_or(0);
            if s.ip.is_none() {
                s.ip = c.ip.get(r).map(|v| text.get(v));
            }
            if s.user_agent.is_none() {
                s.user_agent = c.ua.get(r).map(|v| text.get(v));
            }
            if s.account_change_at.is_none() {
                if let Some(at) = c.change_t.get(r) {
                    s.account_change_at = Some(at);
                    s.account_change = c.change.get(r).map(|v| text.get(v));
                }
            }
        }
    }
    if let Some((_, s)) = current.take() {
        push_session(&mut out, s);
    }
    (out, total)
}

/// The device key of each event: the device id; without one, the device [`agent_devices`] found for the patient and
/// user agent, else the user agent with its version numbers masked (so an app update is not a new device), else the
/// unknown device. The masked keys are made once per distinct user agent of the events that need them (a practice
/// has a few hundred), before any key is handed out, so every key borrows from the events or from here. (Made in the
/// pass over the events rather than in the plan: a plan that split the events into those with and without a device
/// id, to run the mask only where it was needed, read the look-back twice.)
struct DeviceKeys<'a> {
    split: PlHashMap<(&'a str, &'a str), &'a str>,
    masked: PlHashMap<&'a str, String>,
}

impl<'a> DeviceKeys<'a> {
    fn new(
        agents: &'a DataFrame,
        device: &'a StringChunked,
        ua: &'a StringChunked,
    ) -> PolarsResult<Self> {
        let mut split = PlHashMap::new();
        if agents.height() > 0 {
            let (n, u, k) = (
                agents.column(NHS_NUMBER)?.str()?,
                agents.column(USER_AGENT)?.str()?,
                agents.column(AGENT_KEY)?.str()?,
            );
            for ((n, u), k) in n.iter().zip(u.iter()).zip(k.iter()) {
                if let (Some(n), Some(u), Some(k)) = (n, u, k) {
                    split.insert((n, u), k);
                }
            }
        }
        let mut masked = PlHashMap::new();
        for (d, u) in device.iter().zip(ua.iter()) {
            if let (None, Some(u)) = (d, u) {
                masked
                    .entry(u)
                    .or_insert_with(|| format!("{UA_KEY}{}", mask_digits(u)));
            }
        }
        Ok(DeviceKeys { split, masked })
    }

    fn key(&self, nhs: &'a str, device: Option<&'a str>, ua: Option<&'a str>) -> &str {
        match (device, ua) {
            (Some(d), _) => d,
            (None, Some(u)) => self
                .split
                .get(&(nhs, u))
                .copied()
                .or_else(|| self.masked.get(u).map(String::as_str))
                .unwrap_or(UNKNOWN_DEVICE),
            (None, None) => UNKNOWN_DEVICE,
        }
    }
}

/// A user agent with each run of ASCII digits (version numbers) replaced by `#`.
fn mask_digits(ua: &str) -> String {
    let mut out = String::with_capacity(ua.len());
    let mut in_digits = false;
    for c in ua.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// Sessions as a frame, for the spill between detection's passes ([`sessions_from`] reads it back).
pub fn sessions_frame(sessions: &BTreeMap<String, Vec<Session>>) -> PolarsResult<DataFrame> {
    let all: Vec<&Session> = sessions.values().flatten().collect();
    let height = all.len();
    let s = |name: &str, v: Vec<Option<&str>>| Column::new(name.into(), v);
    let n = |name: &str, v: Vec<u32>| Column::new(name.into(), v);
    DataFrame::new(
        height,
        vec![
            s(
                NHS_NUMBER,
                all.iter().map(|x| Some(x.nhs_number.as_ref())).collect(),
            ),
            s(
                "device_key",
                all.iter().map(|x| Some(x.device.as_ref())).collect(),
            ),
            s(
                "account_key",
                all.iter().map(|x| Some(x.account.as_ref())).collect(),
            ),
            Column::new(
                "start".into(),
                all.iter().map(|x| x.start).collect::<Vec<i64>>(),
            ),
            Column::new(
                "end".into(),
                all.iter().map(|x| x.end).collect::<Vec<i64>>(),
            ),
            s("role", all.iter().map(|x| Some(x.role.as_ref())).collect()),
            s("ip", all.iter().map(|x| x.ip.as_deref()).collect()),
            s("ua", all.iter().map(|x| x.user_agent.as_deref()).collect()),
            n("events", all.iter().map(|x| x.events).collect()),
            n("reads", all.iter().map(|x| x.reads).collect()),
            n("prying", all.iter().map(|x| x.prying_reads).collect()),
            n("broad", all.iter().map(|x| x.broad_reads).collect()),
            n("owner", all.iter().map(|x| x.owner_actions).collect()),
            Column::new(
                "change_at".into(),
                all.iter()
                    .map(|x| x.account_change_at)
                    .collect::<Vec<Option<i64>>>(),
            ),
            s(
                "change",
                all.iter().map(|x| x.account_change.as_deref()).collect(),
            ),
        ],
    )
}

/// Files a session under its patient (one key string per patient, not per session).
fn push_session(out: &mut BTreeMap<String, Vec<Session>>, s: Session) {
    match out.get_mut(&*s.nhs_number) {
        Some(list) => list.push(s),
        None => {
            out.insert(s.nhs_number.to_string(), vec![s]);
        }
    }
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
    let text = |c: &str| -> PolarsResult<&StringChunked> { df.column(c)?.str() };
    let (nhs, device, account) = (text(NHS_NUMBER)?, text("device_key")?, text("account_key")?);
    let start_v = micros(df.column("start")?)?;
    let end_v = micros(df.column("end")?)?;
    let (role, ip, ua, change) = (text("role")?, text("ip")?, text("ua")?, text("change")?);
    let events = counts(df, "events")?;
    let reads = counts(df, "reads")?;
    let prying = counts(df, "prying")?;
    let broad = counts(df, "broad")?;
    let owner = counts(df, "owner")?;
    let change_at = micros(df.column("change_at")?)?;
    let mut out: BTreeMap<String, Vec<Session>> = BTreeMap::new();
    let mut total = 0u64;
    let mut interned = Interner::default();
    let mut t = |c: &StringChunked, i: usize| c.get(i).map(|v| interned.get(v));
    for i in 0..df.height() {
        let (Some(n), Some(s), Some(e)) = (t(nhs, i), start_v[i], end_v[i]) else {
            continue;
        };
        total += u64::from(events[i]);
        push_session(
            &mut out,
            Session {
                nhs_number: n,
                start: s,
                end: e,
                device: t(device, i).unwrap_or_else(|| "".into()),
                account: t(account, i).unwrap_or_else(|| "".into()),
                role: t(role, i).unwrap_or_else(|| "patient".into()),
                ip: t(ip, i),
                user_agent: t(ua, i),
                events: events[i],
                reads: reads[i],
                prying_reads: prying[i],
                broad_reads: broad[i],
                owner_actions: owner[i],
                account_change_at: change_at[i],
                account_change: t(change, i),
            },
        );
    }
    Ok((out, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_numbered_in_two_halves_are_numbered_as_one_pass_would_number_them() {
        let (a, b, c) = ("9434765919", "4010232137", "9000000009");
        let nhs = [
            Some(a),
            Some(b),
            Some(a),
            None,
            Some(c),
            Some(b),
            Some(a),
            Some(c),
        ];
        let device = [
            Some("p1"),
            Some("p2"),
            Some("p1"),
            Some("p9"),
            Some("p3"),
            Some("p2"),
            Some("p4"),
            None,
        ];
        let account = [
            Some("x"),
            Some("y"),
            Some("x"),
            Some("x"),
            Some("z"),
            None,
            Some("x"),
            Some("z"),
        ];
        let ua = [None, None, None, None, None, None, None, Some("App/2.1")];
        let times = [
            Some(1i64),
            Some(2),
            Some(3),
            Some(4),
            Some(5),
            Some(6),
            None,
            Some(8),
        ];
        let all = KeyColumns {
            nhs: StringChunked::from_iter_options("n".into(), nhs.into_iter()),
            device: StringChunked::from_iter_options("d".into(), device.into_iter()),
            account: StringChunked::from_iter_options("a".into(), account.into_iter()),
            times: Int64Chunked::from_iter_options("t".into(), times.into_iter()),
            ua: StringChunked::from_iter_options("u".into(), ua.into_iter()),
        };
        let agents = DataFrame::empty();
        let device_keys = DeviceKeys::new(&agents, &all.device, &all.ua).unwrap();
        // One pass over every row, as the numbering was before it ran in halves.
        let mut expected_keys: Vec<Key> = Vec::new();
        let mut expected_order = Vec::new();
        for row in 0..nhs.len() {
            let (Some(n), Some(t)) = (nhs[row], times[row]) else {
                continue;
            };
            let key = (
                n,
                device_keys.key(n, device[row], ua[row]),
                account[row].unwrap_or("-"),
            );
            let id = match expected_keys.iter().position(|k| *k == key) {
                Some(id) => id,
                None => {
                    expected_keys.push(key);
                    expected_keys.len() - 1
                }
            };
            expected_order.push((id as u32, t, row as u32));
        }
        for half in 0..=nhs.len() {
            let (head, tail) = (all.slice(0, half), all.slice(half, nhs.len() - half));
            let (keys, order) = number_events(&head, &tail, &device_keys);
            assert_eq!(keys, expected_keys, "split after {half} rows");
            assert_eq!(order, expected_order, "split after {half} rows");
        }
        // The key that recurs in the second half keeps its number, and a masked agent stands for a missing device.
        assert_eq!(expected_keys.len(), 5);
        assert_eq!(expected_keys[4], (c, "ua:App/#.#", "z"));
    }

    #[test]
    fn a_device_key_is_the_id_else_the_split_model_else_the_masked_agent_else_unknown() {
        let (phone, other) = ("9434765919", "4010232137");
        let agent = "App/2.1 (iOS 17.4)";
        let agents = df!(
            NHS_NUMBER => [phone],
            USER_AGENT => [agent],
            AGENT_KEY => ["ua:App/2.0 (iOS 17.4)"]
        )
        .unwrap();
        let nhs = [phone, phone, other, other, other];
        let device = StringChunked::new("d".into(), [Some("dev-1"), None, None, None, None]);
        let ua = StringChunked::new(
            "u".into(),
            [
                Some(agent),
                Some(agent),
                Some(agent),
                Some("App/10.22.3b"),
                None,
            ],
        );
        let keys = DeviceKeys::new(&agents, &device, &ua).unwrap();
        let got: Vec<&str> = (0..nhs.len())
            .map(|i| keys.key(nhs[i], device.get(i), ua.get(i)))
            .collect();
        assert_eq!(
            got,
            [
                "dev-1",
                "ua:App/2.0 (iOS 17.4)",
                "ua:App/#.# (iOS #.#)",
                "ua:App/#.#.#b",
                UNKNOWN_DEVICE
            ]
        );
    }

    #[test]
    fn batches_are_ranges_that_hold_every_patient_once_in_about_equal_shares() {
        let in_range = |n: &str, (from, until): &(Option<String>, Option<String>)| {
            from.as_deref().is_none_or(|f| n >= f) && until.as_deref().is_none_or(|u| n < u)
        };
        // 1,000 patients with 1 to 20 events each, given out of order.
        let numbers: Vec<String> = (0..1000u64)
            .map(|i| format!("{:010}", 9_000_000_000 + (i * 7919) % 1000))
            .collect();
        let patients: Vec<(&str, u64)> = numbers
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), 1 + (i as u64 * 13) % 20))
            .collect();
        let total: u64 = patients.iter().map(|p| p.1).sum();
        let ranges = ranges_of(patients.clone(), 8);
        assert_eq!(ranges.len(), 8);
        let mut held = vec![0u64; ranges.len()];
        for (n, e) in &patients {
            let owners: Vec<usize> = (0..ranges.len())
                .filter(|&k| in_range(n, &ranges[k]))
                .collect();
            assert_eq!(owners.len(), 1, "{n} is in {owners:?}");
            held[owners[0]] += e;
        }
        for h in &held {
            // Each share within the largest patient (20 events) of an eighth.
            assert!(h.abs_diff(total / 8) <= 20, "{held:?} of {total}");
        }
        // One patient holding most of the events is one batch; the ranges still hold everyone once.
        let mut lumpy = patients[..10].to_vec();
        lumpy[3].1 = 10_000;
        let ranges = ranges_of(lumpy.clone(), 8);
        assert!(ranges.len() <= 8);
        for (n, _) in &lumpy {
            assert_eq!(ranges.iter().filter(|r| in_range(n, r)).count(), 1, "{n}");
        }
        assert_eq!(ranges_of(patients, 1), vec![(None, None)]);
    }

    #[test]
    fn one_of_answers_as_a_list_lookup_does_for_members_others_and_nulls() {
        let values = ["view", "read"];
        let frame = df!("a" => [Some("view"), Some("login"), None, Some("read")])
            .and_then(|df| {
                df.lazy()
                    .select([
                        one_of("a", &values).alias("chain"),
                        col("a")
                            .is_in(lit(Series::new("v".into(), values)).implode(false), false)
                            .alias("lookup"),
                    ])
                    .collect()
            })
            .unwrap();
        let chain: Vec<Option<bool>> = frame
            .column("chain")
            .unwrap()
            .bool()
            .unwrap()
            .iter()
            .collect();
        let lookup: Vec<Option<bool>> = frame
            .column("lookup")
            .unwrap()
            .bool()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(chain, vec![Some(true), Some(false), None, Some(true)]);
        assert_eq!(chain, lookup);
    }
}
