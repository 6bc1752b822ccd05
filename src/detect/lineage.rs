//! Device ids that continue one another: one phone under two ids.
//!
//! A device id belongs to an installation of the app (or a browser's storage), not to the phone. Reinstalling the
//! app, clearing its data or restoring the phone gives the same phone a new id. Without this step, the new id is a
//! device the record has never seen, reading with none of the old one's history of bookings and orders. It would
//! then look like the watcher's device the rules look for, and the old one's history would be cut short.
//!
//! On one record, a later id continues an earlier one (its *successor*) when all of these hold:
//! - both ids carry the same user agent once version numbers are masked (an app or system update comes with a
//!   reinstall);
//! - the earlier id is never used again once the later one appears: one phone runs one installation at a time;
//! - the earlier id has been silent long enough to say so: at its own pace of visits, it would have been used
//!   [`SILENCE_VISITS`] times since the later one appeared. An id that has simply not been used for a few days has
//!   not been replaced, and a watcher's phone of the same model on the same household connection would otherwise be
//!   taken for the patient's;
//! - the later id keeps the earlier one's hours: at least half its visits at an hour the earlier one was used at, or
//!   within two hours of one. Someone else's phone of the same model keeps its owner's hours;
//! - the later one appears within [`MAX_GAP_DAYS`] of the earlier one's last use, from an address the earlier one
//!   used (or neither has an address);
//! - no other device first appears on the record in between (the earlier phone was not replaced by that one);
//! - no password or contact change, and no refused login from the earlier id, falls between the two ids (or on the
//!   later id's first day). A changed password followed by a new id is how an account is taken over, and
//!   `account_change_then_new_device` judges it.
//!
//! Across the practice, the pair holds only when every record both ids were used on shows the same succession (a
//! phone reinstalled and then first used on another record, such as a partner's, shows it on its owner's),
//! on at least one of them the later id manages the patient's care in some visit (books, orders, writes, or reads
//! their appointments, allergies or immunisations: the patient carrying on), and the earlier id is used on no record after the later one first appears. Each id then keeps the first id of
//! its line as its device key, and the run's device histories are merged to match. The store is not changed: an
//! analyst who queries the later id finds its events under that id.

use std::collections::BTreeMap;

use super::baseline::{DeviceHistory, DeviceUse, MAX_IPS};
use super::model::*;
use super::short_device;

const DAY: i64 = 86_400_000_000;

/// The longest time between an id's last use and its successor's first.
pub const MAX_GAP_DAYS: i64 = 60;
/// The visits an id would have made, at its own pace, in the time it has been silent since its successor appeared.
/// At that pace, silence that long comes by chance about once in 20 (e^-3).
pub const SILENCE_VISITS: f64 = 3.0;

/// Two user agents that are the same once every run of digits is masked: the same app on the same kind of phone,
/// whatever its versions.
pub fn same_masked(a: &str, b: &str) -> bool {
    // Runs of digits become one '#'; everything else is compared as it is.
    fn masked(s: &str) -> impl Iterator<Item = char> + '_ {
        let mut prev_digit = false;
        s.chars().filter_map(move |c| {
            let digit = c.is_ascii_digit();
            let out = match (digit, prev_digit) {
                (true, true) => None,
                (true, false) => Some('#'),
                (false, _) => Some(c),
            };
            prev_digit = digit;
            out
        })
    }
    masked(a).eq(masked(b))
}

/// One device id's use of one record.
struct Span<'a> {
    device: &'a Text,
    first: i64,
    last: i64,
    sessions: usize,
    agent: Option<&'a str>,
    ips: FastSet<&'a str>,
    /// Sessions that manage the patient's care (see [`Session::holder_like`]).
    care: usize,
    /// Sessions per local hour.
    hours: [u32; 24],
}

/// A succession one record shows: the earlier id, the later id, and whether the later one manages the patient's
/// care on it.
pub type Shown = (Text, Text, bool);

/// The successions one record shows. `sessions` are the record's; `refused` its refused logins, (when, device key);
/// `end` the end of the look-back.
pub fn successions(
    sessions: &[Session],
    refused: &[(i64, String)],
    end: i64,
    hour: impl Fn(i64) -> u32,
) -> Vec<Shown> {
    // Nearly every record is read from one device: nothing can follow on from anything there.
    if sessions.iter().all(|s| s.device == sessions[0].device) {
        return Vec::new();
    }
    let mut by_device: BTreeMap<&str, Span> = BTreeMap::new();
    for s in sessions.iter().filter(|s| is_identified_device(&s.device)) {
        let span = by_device.entry(&s.device).or_insert_with(|| Span {
            device: &s.device,
            first: s.start,
            last: s.start,
            sessions: 0,
            agent: s.user_agent.as_deref(),
            ips: FastSet::default(),
            care: 0,
            hours: [0; 24],
        });
        span.hours[hour(s.start) as usize % 24] += 1;
        span.care += usize::from(s.holder_like());
        span.sessions += 1;
        span.first = span.first.min(s.start);
        span.last = span.last.max(s.start);
        if let Some(ip) = s.ip.as_deref() {
            span.ips.insert(ip);
        }
    }
    if by_device.len() < 2 {
        return Vec::new();
    }
    let changes: Vec<i64> = sessions
        .iter()
        .filter_map(|s| s.account_change_at)
        .collect();
    let spans: Vec<&Span> = by_device.values().collect();
    let mut out = Vec::new();
    for later in &spans {
        let Some(earlier) = spans
            .iter()
            .filter(|a| {
                a.last < later.first
                    && later.first - a.last <= MAX_GAP_DAYS * DAY
                    && a.agent
                        .zip(later.agent)
                        .is_some_and(|(x, y)| same_masked(x, y))
                    && ((a.ips.is_empty() && later.ips.is_empty())
                        || !a.ips.is_disjoint(&later.ips))
            })
            .max_by_key(|a| (a.last, a.device))
        else {
            continue;
        };
        // The later id keeps the earlier one's hours: half its visits or more at an hour the earlier one was used at, or
        // within two hours of one.
        let kept = (0..24)
            .filter(|&h| (0..5).any(|d| earlier.hours[(h + 22 + d) % 24] > 0))
            .map(|h| later.hours[h])
            .sum::<u32>();
        let same_hours = 2 * kept as usize >= later.sessions;
        let between = |t: i64| t > earlier.last && t < later.first;
        let replaced = spans
            .iter()
            .any(|c| c.device != earlier.device && c.device != later.device && between(c.first));
        let changed = changes
            .iter()
            .any(|&t| t >= earlier.last && t <= later.first + DAY);
        let locked_out = refused
            .iter()
            .any(|(t, d)| *t > earlier.last && d.as_str() == &**earlier.device);
        // The earlier id's pace over its own use (at least a day), and the visits it would have made since.
        let pace = earlier.sessions as f64 / ((earlier.last - earlier.first).max(DAY) as f64);
        let silent = pace * (end - later.first) as f64 >= SILENCE_VISITS;
        if silent && same_hours && !replaced && !changed && !locked_out {
            out.push((earlier.device.clone(), later.device.clone(), later.care > 0));
        }
    }
    out
}

/// Each later id's first id of its line, for the successions every record agrees on.
#[derive(Debug, Default)]
pub struct Lineage {
    first_of_line: FastMap<Text, Text>,
    /// Each line's later ids, by its first id, in order.
    later_ids: FastMap<Text, Vec<Text>>,
}

impl Lineage {
    /// Settles the successions the records showed (with how many records showed each) against the run's device
    /// histories, and merges the histories of every later id into its line's first.
    pub fn settle(
        shown: FastMap<(Text, Text), (usize, bool)>,
        devices: &mut FastMap<String, DeviceHistory>,
    ) -> Lineage {
        let span = |d: &str| {
            devices.get(d).map(|h| {
                let first = h.on.iter().map(|(_, u)| u.first).min().unwrap_or(i64::MAX);
                let last = h.on.iter().map(|(_, u)| u.last).max().unwrap_or(i64::MIN);
                (first, last)
            })
        };
        // The records both ids were used on: each must show the succession.
        let both = |earlier: &str, later: &str| -> usize {
            match (devices.get(earlier), devices.get(later)) {
                (Some(e), Some(l)) => {
                    let on: FastSet<&str> = e.on.iter().map(|(n, _)| &**n).collect();
                    l.on.iter().filter(|(n, _)| on.contains(&**n)).count()
                }
                _ => 0,
            }
        };
        let mut pairs: Vec<(Text, Text)> = shown
            .into_iter()
            .filter(
                |((earlier, later), (records, care))| match (span(earlier), span(later)) {
                    (Some((_, earlier_last)), Some((later_first, _))) => {
                        *care && earlier_last < later_first && *records == both(earlier, later)
                    }
                    _ => false,
                },
            )
            .map(|(pair, _)| pair)
            .collect();
        pairs.sort();
        // One successor per id and one predecessor per id: where records disagree, neither pair holds.
        let mut successors: FastMap<Text, usize> = FastMap::default();
        let mut predecessors: FastMap<Text, usize> = FastMap::default();
        for (earlier, later) in &pairs {
            *successors.entry(earlier.clone()).or_default() += 1;
            *predecessors.entry(later.clone()).or_default() += 1;
        }
        let previous: FastMap<Text, Text> = pairs
            .into_iter()
            .filter(|(earlier, later)| successors[earlier] == 1 && predecessors[later] == 1)
            .map(|(earlier, later)| (later, earlier))
            .collect();
        let mut first_of_line = FastMap::default();
        for later in previous.keys() {
            let mut first = later;
            // A line is finite: each step goes to an id whose use ended earlier.
            while let Some(earlier) = previous.get(first) {
                first = earlier;
            }
            first_of_line.insert(later.clone(), first.clone());
        }
        let mut merged: Vec<(&Text, &Text)> = first_of_line.iter().collect();
        merged.sort();
        for (later, first) in merged {
            let Some(h) = devices.remove(&**later) else {
                continue;
            };
            let into = &mut devices.entry(first.to_string()).or_default().on;
            for (nhs, u) in h.on {
                match into.iter_mut().find(|(n, _)| *n == nhs) {
                    Some((_, v)) => merge_use(v, &u),
                    None => into.push((nhs, u)),
                }
            }
            into.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        let mut later_ids: FastMap<Text, Vec<Text>> = FastMap::default();
        for (later, first) in &first_of_line {
            later_ids
                .entry(first.clone())
                .or_default()
                .push(later.clone());
        }
        for ids in later_ids.values_mut() {
            ids.sort_unstable();
        }
        Lineage {
            first_of_line,
            later_ids,
        }
    }

    /// Ids that continue another.
    pub fn len(&self) -> usize {
        self.first_of_line.len()
    }

    pub fn is_empty(&self) -> bool {
        self.first_of_line.is_empty()
    }

    /// The first id of a device's line: the key its sessions are judged under.
    pub fn device<'a>(&'a self, device: &'a Text) -> &'a Text {
        self.first_of_line.get(device).unwrap_or(device)
    }

    /// How a finding names a line of ids: the later ids its first id's sessions include, or nothing for an id that
    /// is continued by none.
    pub fn note(&self, device: &str) -> Option<String> {
        let later = self.later_ids.get(device)?;
        Some(format!(
            "Its visits include those under the later device {} {}: the same kind of device, from the same place, \
             taking over when {} stopped, as an app reinstalled on the same device does.",
            if later.len() == 1 { "id" } else { "ids" },
            later.iter().map(|d| short_device(d)).collect::<Vec<_>>().join(", "),
            short_device(device),
        ))
    }

    /// Keys a batch's sessions by their lines' first ids.
    pub fn apply(&self, sessions: &mut BTreeMap<String, Vec<Session>>) {
        if self.is_empty() {
            return;
        }
        for s in sessions.values_mut().flatten() {
            if let Some(first) = self.first_of_line.get(&s.device) {
                s.device = first.clone();
            }
        }
    }

    /// Keys the refused logins by their lines' first ids.
    pub fn apply_to_refused(&self, refused: &mut FastMap<String, Vec<(i64, String)>>) {
        for (_, d) in refused.values_mut().flatten() {
            if let Some(first) = self.first_of_line.get(d.as_str()) {
                *d = first.to_string();
            }
        }
    }
}

fn merge_use(into: &mut DeviceUse, u: &DeviceUse) {
    into.sessions += u.sessions;
    into.baseline_sessions += u.baseline_sessions;
    into.first = into.first.min(u.first);
    into.last = into.last.max(u.last);
    into.holder_sessions += u.holder_sessions;
    into.owner_action_sessions += u.owner_action_sessions;
    into.watcher_sessions += u.watcher_sessions;
    into.care_reads += u.care_reads;
    into.prying_reads += u.prying_reads;
    for (a, b) in into.reading_by_length.iter_mut().zip(u.reading_by_length) {
        *a = a.saturating_add(b);
    }
    into.days += u.days;
    into.non_proxy_sessions += u.non_proxy_sessions;
    for ip in &u.ips {
        if into.ips.len() < MAX_IPS && !into.ips.contains(ip) {
            into.ips.push(ip.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHONE: &str = "NHSApp/2.41.0 (iPhone; iOS 18.1)";
    const UPDATED: &str = "NHSApp/2.42.0 (iPhone; iOS 18.2)";

    /// A visit to A's record that reads the appointments (managing care), from home.
    fn visit(device: &str, agent: &str, day: i64) -> Session {
        Session {
            nhs_number: "A".into(),
            start: day * DAY,
            end: day * DAY,
            device: device.into(),
            account: "acct-a".into(),
            role: "patient".into(),
            ip: Some("81.1.1.1".into()),
            user_agent: Some(agent.into()),
            events: 2,
            reads: 1,
            prying_reads: 0,
            broad_reads: 1,
            owner_actions: 0,
            account_change_at: None,
            account_change: None,
        }
    }

    /// The old id every other day from day 0 to `old_until` at midnight, the new one every other day from
    /// `new_from` to day 60, `hours` later in the day.
    fn reinstalled_at(old_until: i64, new_from: i64, hours: i64) -> Vec<Session> {
        let mut s: Vec<Session> = (0..=old_until)
            .step_by(2)
            .map(|d| visit("old", PHONE, d))
            .collect();
        s.extend((new_from..=60).step_by(2).map(|d| {
            let mut v = visit("new", UPDATED, d);
            v.start += hours * DAY / 24;
            v
        }));
        s
    }

    fn reinstalled(old_until: i64, new_from: i64) -> Vec<Session> {
        reinstalled_at(old_until, new_from, 0)
    }

    fn pairs(sessions: &[Session], refused: &[(i64, String)]) -> Vec<(String, String)> {
        successions(sessions, refused, 61 * DAY, |t| {
            ((t / (DAY / 24)) % 24) as u32
        })
        .into_iter()
        .map(|(a, b, _)| (a.to_string(), b.to_string()))
        .collect()
    }

    #[test]
    fn a_new_id_continues_an_old_one_only_once_the_old_one_has_been_silent_longer_than_its_pace_explains(
    ) {
        let continued = vec![("old".to_string(), "new".to_string())];
        assert_eq!(pairs(&reinstalled(30, 32), &[]), continued);
        // Silent for two days, at a visit every other day: the old phone may simply not have been picked up yet.
        assert_eq!(pairs(&reinstalled(56, 58), &[]), vec![]);
    }

    #[test]
    fn a_new_id_continues_an_old_one_only_at_its_hours() {
        assert_eq!(pairs(&reinstalled_at(30, 32, 2), &[]).len(), 1);
        assert_eq!(pairs(&reinstalled_at(30, 32, 3), &[]), vec![]);
    }

    #[test]
    fn a_new_id_does_not_continue_one_replaced_in_between_or_refused_since() {
        let mut s = reinstalled(30, 40);
        // Another phone took over in between: the new id is not the old phone's.
        s.push(visit("other", "NHSApp/2.41.0 (Android 14; Pixel 8)", 35));
        assert_eq!(pairs(&s, &[]), vec![]);
        let s = reinstalled(30, 40);
        assert_eq!(pairs(&s, &[(45 * DAY, "old".to_string())]), vec![]);
        assert_eq!(pairs(&s, &[(25 * DAY, "old".to_string())]).len(), 1);
    }

    #[test]
    fn a_succession_holds_only_where_every_record_of_both_ids_shows_it_and_one_shows_the_patients_care(
    ) {
        let history = |records: &[&str], first: i64, last: i64| DeviceHistory {
            on: records
                .iter()
                .map(|n| {
                    let u = DeviceUse {
                        sessions: 1,
                        first,
                        last,
                        ..Default::default()
                    };
                    (Text::from(*n), u)
                })
                .collect(),
        };
        let devices = |new_on: &[&str]| {
            let mut d: FastMap<String, DeviceHistory> = FastMap::default();
            d.insert("old".into(), history(&["A"], 0, 30 * DAY));
            d.insert("new".into(), history(new_on, 32 * DAY, 60 * DAY));
            d
        };
        let shown = |records: usize, care: bool| {
            let mut m: FastMap<(Text, Text), (usize, bool)> = FastMap::default();
            m.insert((Text::from("old"), Text::from("new")), (records, care));
            m
        };
        let mut d = devices(&["A"]);
        let l = Lineage::settle(shown(1, true), &mut d);
        assert_eq!(&**l.device(&Text::from("new")), "old");
        assert!(!d.contains_key("new") && d["old"].on[0].1.sessions == 2);
        assert!(l
            .note("old")
            .is_some_and(|n| n.contains("later device id new:")));
        assert_eq!(l.note("new"), None);
        // Used on B's record too, after the reinstall: nothing there says otherwise.
        assert!(!Lineage::settle(shown(1, true), &mut devices(&["A", "B"])).is_empty());
        // Both used on B's record, where no succession shows.
        let mut d = devices(&["A", "B"]);
        if let Some(h) = d.get_mut("old") {
            h.on.push((Text::from("B"), DeviceUse::default()));
        }
        assert!(Lineage::settle(shown(1, true), &mut d).is_empty());
        // Never managing the patient's care.
        assert!(Lineage::settle(shown(1, false), &mut devices(&["A"])).is_empty());
    }
}
