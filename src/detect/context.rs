//! Everything the rules read, built once per run: windows, the clinical context (sensitive entries, visits,
//! restrictions, proxy links), and which records each device has been used on.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;
use polars::prelude::*;

use super::baseline::{DeviceHistory, PatientBaseline};
use super::config::{Allowlist, DetectConfig};
use super::model::*;
use super::sessions::{micros, strs};
use crate::context::catalogue::{Category, SensitiveCatalogue};
use crate::context::views::{self, RestrictionPeriod};
use crate::schema::*;
use crate::store::scan::scan_kind;

/// Everything the rules read, built once per run.
pub struct Context<'a> {
    pub cfg: &'a DetectConfig,
    pub allowlist: &'a Allowlist,
    /// The practice's time zone, with its offsets over the look-back found once for the local hours asked of every
    /// session.
    pub clock: LocalClock,
    pub as_of: NaiveDate,
    /// Start of the look-back (UTC micros).
    pub lookback_start: i64,
    /// Start of the recent window.
    pub recent_start: i64,
    /// End of the as-of day, local time (exclusive).
    pub end: i64,
    pub sessions: BTreeMap<String, Vec<Session>>,
    pub devices: FastMap<String, DeviceHistory>,
    pub sensitive: FastMap<String, Vec<SensitiveEntry>>,
    /// When any entry the patient can see appeared (for explaining a session as the patient reading it).
    pub entry_times: FastMap<String, Vec<i64>>,
    pub visits: FastMap<String, Vec<Visit>>,
    /// Ends of attended appointments of every mode.
    pub appointment_ends: FastMap<String, Vec<i64>>,
    pub restrictions: FastMap<String, Vec<RestrictionPeriod>>,
    /// The practice's share of sessions per local hour, the prior for patients with little history.
    pub practice_hours: [f64; 24],
    /// Patient -> proxy account -> periods of formal proxy access (two levels, so that a session's borrowed strings
    /// look it up without allocating a key).
    pub proxy_links: FastMap<String, FastMap<String, Vec<ProxyPeriod>>>,
    /// Refused logins per patient over the look-back, in time order: (when, device key).
    /// The export says which part of the record most reads read ([`FieldCoverage::section`]): a device can be told
    /// to read like a watcher.
    pub read_sections: bool,
    pub failed_logins: FastMap<String, Vec<(i64, String)>>,
}

/// One patient's sessions and the model of the account holder, as each rule receives them.
pub struct PatientView<'a> {
    pub nhs: &'a str,
    pub sessions: &'a [Session],
    pub baseline: PatientBaseline,
}

impl PatientView<'_> {
    pub fn recent<'s>(&'s self, ctx: &'s Context) -> impl Iterator<Item = &'s Session> + 's {
        self.sessions
            .iter()
            .filter(move |s| s.start >= ctx.recent_start)
    }
}

impl Context<'_> {
    /// Whether a session is a formal proxy acting within a recorded proxy link.
    pub fn is_formal_proxy(&self, s: &Session) -> bool {
        // With no proxy relationships supplied at all, the audit log's own word is all there is: a session it marks
        // as a formal proxy's is taken as one (see [`DetectionStats::proxy_sessions_on_role`]).
        if self.proxy_links.is_empty() {
            return &*s.role == PROXY_ROLE;
        }
        self.proxy_links
            .get(&*s.nhs_number)
            .and_then(|accounts| accounts.get(&*s.account))
            .is_some_and(|periods| {
                periods
                    .iter()
                    .any(|(f, u)| s.start >= *f && u.is_none_or(|u| s.start < u))
            })
    }

    /// A tablet or computer that is someone else's own device on their record and is used from the same address
    /// for both records (the same household): a shared family device rather than an outsider's phone.
    pub fn household_device(&self, p: &PatientView, s: &Session) -> bool {
        if !is_household_class(s.user_agent.as_deref()) || !is_identified_device(&s.device) {
            return false;
        }
        // The same connection on both records: this session's address, or any address the patient's own devices
        // use at home hours.
        let home = |ip: &Text| s.ip.as_ref() == Some(ip) || p.baseline.ips.contains(ip.as_ref());
        self.devices.get(&*s.device).is_some_and(|h| {
            h.on.iter().any(|(other, u)| {
                other.as_ref() != p.nhs
                    && u.sessions >= self.cfg.established_device_sessions
                    && u.ips.iter().any(home)
            })
        })
    }

    /// A real device that is another patient's own: used on their record for managing their care (bookings,
    /// orders, messages or the holder's sections), on at least `established_device_sessions` sessions, and not only
    /// as their formal proxy.
    pub fn someone_elses_device(&self, nhs: &str, device: &str) -> Option<(&str, i64)> {
        self.used_elsewhere(nhs, device, |u| u.holder_sessions > 0)
    }

    /// The first other record (and the device's first use there) on which a real device (or, without ids, a user
    /// agent from one address: see [`crate::detect::agent_at_address`]) is established, not only as a formal proxy,
    /// and used the way `manages` asks.
    pub fn used_elsewhere(
        &self,
        nhs: &str,
        device: &str,
        manages: impl Fn(&crate::detect::baseline::DeviceUse) -> bool,
    ) -> Option<(&str, i64)> {
        if !is_identified_device(device) && !crate::detect::is_agent_at_address(device) {
            return None;
        }
        self.devices.get(device).and_then(|h| {
            h.on.iter()
                .find(|(o, u)| {
                    o.as_ref() != nhs
                        && u.sessions >= self.cfg.established_device_sessions
                        && u.non_proxy_sessions > 0
                        && manages(u)
                })
                .map(|(o, u)| (o.as_ref(), u.first))
        })
    }

    pub fn allowed(&self, nhs: &str, device: &str) -> bool {
        self.allowlist.allows(nhs, device, self.as_of)
    }

    pub fn local(&self, micros: i64) -> DateTime<Tz> {
        self.clock.local(micros)
    }

    /// "Sat 21 Nov 02:14" in the practice's time zone.
    pub fn when(&self, micros: i64) -> String {
        self.local(micros).format("%a %-d %b %H:%M").to_string()
    }

    /// "3 Aug" in the practice's time zone.
    pub fn day(&self, micros: i64) -> String {
        self.local(micros).format("%-d %b").to_string()
    }

    /// The local hour (0-23) at `micros` in the practice's time zone.
    pub fn hour(&self, micros: i64) -> u32 {
        self.clock.hour(micros)
    }

    /// Minutes after local midnight at `micros` in the practice's time zone.
    pub fn minute_of_day(&self, micros: i64) -> u32 {
        self.clock.minute_of_day(micros)
    }

    /// "Seen since 3 Aug." or, for a pattern already there when the look-back opened, "Seen since at least 3 Aug
    /// (as far back as this run looks): it had begun before then."
    pub fn since(&self, first: i64) -> String {
        let open = first < self.lookback_start + 7 * 86_400_000_000;
        if open {
            format!(
                "Seen since at least {} (as far back as this run looks): it had probably begun before then.",
                self.day(self.lookback_start)
            )
        } else {
            format!("Seen since {}.", self.day(first))
        }
    }
}

/// A time zone's offsets from UTC over a span of time, found once, so that the local hour of a time (asked of every
/// session, several times, by the baselines and rules) is a search in a list of a few offset changes and a division,
/// instead of a search of the zone's whole table and a calendar date each time. Outside the span, or for a time
/// chrono cannot represent, it asks chrono-tz as before; inside, it answers as chrono-tz does (a unit test compares
/// them minute by minute, and a microsecond either side, over a year in zones with half-hour and 30-minute summer
/// shifts).
#[derive(Debug, Clone)]
pub struct LocalClock {
    tz: Tz,
    from: i64,
    until: i64,
    /// (first UTC microsecond, offset in microseconds), in time order; the first begins at `from`.
    offsets: Vec<(i64, i64)>,
}

impl LocalClock {
    /// The zone's offsets over `[from, until)` (UTC microseconds). Changes are looked for every quarter of an hour
    /// (no zone changes its offset twice within one) and then pinned to their microsecond.
    pub fn new(tz: Tz, from: i64, until: i64) -> LocalClock {
        const STEP: i64 = 15 * 60_000_000;
        let offset = |t: i64| -> Option<i64> {
            use chrono::{Offset, TimeZone};
            let utc = DateTime::from_timestamp_micros(t)?.naive_utc();
            Some(i64::from(tz.offset_from_utc_datetime(&utc).fix().local_minus_utc()) * 1_000_000)
        };
        let (Some(first), true) = (offset(from), offset(until).is_some() && from < until) else {
            return LocalClock {
                tz,
                from: 0,
                until: 0,
                offsets: Vec::new(),
            };
        };
        let mut offsets = vec![(from, first)];
        let mut t = from;
        while t < until {
            let next = (t + STEP).min(until);
            let last = offsets[offsets.len() - 1].1;
            let now = offset(next).unwrap_or(last);
            if now != last {
                // The change lies in (t, next]: find its first microsecond.
                let (mut lo, mut hi) = (t, next);
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if offset(mid) == Some(last) {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                offsets.push((hi, now));
            }
            t = next;
        }
        LocalClock {
            tz,
            from,
            until,
            offsets,
        }
    }

    /// Local time at `micros` as microseconds since the local epoch, if `micros` is in the span.
    fn local_micros(&self, micros: i64) -> Option<i64> {
        if micros < self.from || micros >= self.until {
            return None;
        }
        let i = self.offsets.partition_point(|(start, _)| *start <= micros);
        Some(micros + self.offsets[i.checked_sub(1)?].1)
    }

    /// The local date and time at `micros`, from chrono-tz.
    pub fn local(&self, micros: i64) -> DateTime<Tz> {
        DateTime::from_timestamp_micros(micros)
            .unwrap_or_default()
            .with_timezone(&self.tz)
    }

    /// The local hour (0-23) at `micros`.
    pub fn hour(&self, micros: i64) -> u32 {
        match self.local_micros(micros) {
            Some(l) => l.div_euclid(3_600_000_000).rem_euclid(24) as u32,
            None => {
                use chrono::Timelike;
                self.local(micros).hour()
            }
        }
    }

    /// Minutes after local midnight at `micros`.
    pub fn minute_of_day(&self, micros: i64) -> u32 {
        match self.local_micros(micros) {
            Some(l) => l.div_euclid(60_000_000).rem_euclid(1440) as u32,
            None => {
                use chrono::Timelike;
                let t = self.local(micros);
                t.hour() * 60 + t.minute()
            }
        }
    }
}

/// Sensitive entries, entry times, visits, restrictions and proxy links from the clinical-context views.
pub fn load_context(
    store: &Path,
    catalogue: &SensitiveCatalogue,
    ctx: &mut Context,
) -> PolarsResult<()> {
    let s = views::sensitive_entries(store, catalogue)?.collect()?;
    let (nhs, id, vis, cat, sec) = (
        strs(s.column(NHS_NUMBER)?)?,
        strs(s.column(ENTRY_ID)?)?,
        micros(s.column(views::VISIBLE_FROM)?)?,
        strs(s.column(views::CATEGORY)?)?,
        strs(s.column(SECTION)?)?,
    );
    for i in 0..s.height() {
        let (Some(n), Some(e), Some(v), Some(c)) = (
            nhs[i].clone(),
            id[i].clone(),
            vis[i],
            cat[i].as_deref().and_then(Category::from_name),
        ) else {
            continue;
        };
        ctx.sensitive.entry(n).or_default().push(SensitiveEntry {
            entry_id: e,
            visible_from: v,
            category: c,
            section: sec[i].clone(),
        });
    }
    let e = views::latest_entries(store)?
        .filter(col(VISIBLE_ONLINE))
        .select([col(NHS_NUMBER), col(RECORDED_AT)])
        .collect()?;
    for (n, t) in strs(e.column(NHS_NUMBER)?)?
        .into_iter()
        .zip(micros(e.column(RECORDED_AT)?)?)
    {
        if let (Some(n), Some(t)) = (n, t) {
            ctx.entry_times.entry(n).or_default().push(t);
        }
    }
    let v = views::face_to_face_visits(store)?.collect()?;
    let (nhs, id, st, en) = (
        strs(v.column(NHS_NUMBER)?)?,
        strs(v.column(APPOINTMENT_ID)?)?,
        micros(v.column(STARTS_AT)?)?,
        micros(v.column(ENDS_AT)?)?,
    );
    for i in 0..v.height() {
        if let (Some(n), Some(a), Some(s), Some(e)) = (nhs[i].clone(), id[i].clone(), st[i], en[i])
        {
            ctx.visits.entry(n).or_default().push(Visit {
                appointment_id: a,
                starts_at: s,
                ends_at: e,
            });
        }
    }
    let a = scan_kind(store, Kind::Appointments)?
        .filter(col(STATUS).eq(lit("attended")))
        .select([col(NHS_NUMBER), col(ENDS_AT)])
        .collect()?;
    for (n, t) in strs(a.column(NHS_NUMBER)?)?
        .into_iter()
        .zip(micros(a.column(ENDS_AT)?)?)
    {
        if let (Some(n), Some(t)) = (n, t) {
            ctx.appointment_ends.entry(n).or_default().push(t);
        }
    }
    let r = views::restrictions(store)?.collect()?;
    let (nhs, from, until, by, lifted) = (
        strs(r.column(NHS_NUMBER)?)?,
        micros(r.column(views::RESTRICTED_FROM)?)?,
        micros(r.column(views::RESTRICTED_UNTIL)?)?,
        strs(r.column(views::STARTED_BY)?)?,
        strs(r.column(views::LIFTED_BY)?)?,
    );
    for i in 0..r.height() {
        if let (Some(n), Some(f)) = (nhs[i].clone(), from[i]) {
            ctx.restrictions
                .entry(n.clone())
                .or_default()
                .push(RestrictionPeriod {
                    nhs_number: n,
                    from: f,
                    until: until[i],
                    started_by: by[i].clone().unwrap_or_default(),
                    lifted_by: lifted[i].clone(),
                });
        }
    }
    let p = views::proxy_links(store)?.collect()?;
    let (nhs, acct, from, until) = (
        strs(p.column(NHS_NUMBER)?)?,
        strs(p.column(PROXY_ACCOUNT_ID)?)?,
        micros(p.column(views::VALID_FROM)?)?,
        micros(p.column(views::VALID_UNTIL)?)?,
    );
    for i in 0..p.height() {
        if let (Some(n), Some(a), Some(f)) = (nhs[i].clone(), acct[i].clone(), from[i]) {
            ctx.proxy_links
                .entry(n)
                .or_default()
                .entry(a)
                .or_default()
                .push((f, until[i]));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::LocalClock;
    use chrono::{DateTime, Timelike};
    use chrono_tz::Tz;

    #[test]
    fn local_hours_and_minutes_from_the_offset_list_are_chrono_tz_s_minute_by_minute_and_at_each_change(
    ) {
        const MIN: i64 = 60_000_000;
        // 2026-01-01 to 2027-01-01 UTC, and a span that starts and ends part way through a minute.
        let (from, until) = (1_767_225_600_000_000, 1_798_761_600_000_000);
        for tz in [
            Tz::Europe__London,
            Tz::Australia__Lord_Howe,
            Tz::Asia__Kathmandu,
            Tz::America__St_Johns,
            Tz::Pacific__Chatham,
            Tz::America__Santiago,
            Tz::UTC,
        ] {
            let clock = LocalClock::new(tz, from + 7, until - 11);
            let mut t = from - 2 * MIN;
            while t < until + 2 * MIN {
                for at in [t - 1, t, t + 1] {
                    let local = DateTime::from_timestamp_micros(at)
                        .unwrap_or_default()
                        .with_timezone(&tz);
                    assert_eq!(clock.hour(at), local.hour(), "{tz} at {at}");
                    assert_eq!(
                        clock.minute_of_day(at),
                        local.hour() * 60 + local.minute(),
                        "{tz} at {at}"
                    );
                }
                t += MIN;
            }
        }
    }
}
