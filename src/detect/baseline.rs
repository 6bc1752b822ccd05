//! What is normal: per patient (their devices, hours, addresses and pace before the recent window) and per device
//! (whose records it has been used on, since when).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::{Context, Session};

const DAY: i64 = 86_400_000_000;

/// One device's use on one patient's record.
#[derive(Debug, Clone, Default)]
pub struct DeviceUse {
    pub baseline_sessions: usize,
    pub recent_sessions: usize,
    pub first: i64,
    pub last: i64,
    /// The accounts used (in a patient's own baseline).
    pub accounts: HashSet<String>,
    /// Sessions not made by a formal proxy within a recorded link (in the run's device histories).
    pub non_proxy_sessions: usize,
    /// Addresses the device used on this record, up to [`MAX_IPS`] (in the run's device histories).
    pub ips: BTreeSet<String>,
}

/// Addresses kept per device and record: enough to recognise a household's connection, bounded for a device seen
/// from hundreds of mobile addresses.
pub const MAX_IPS: usize = 16;

/// Whose records a device has been used on.
#[derive(Debug, Clone, Default)]
pub struct DeviceHistory {
    pub on: BTreeMap<String, DeviceUse>,
}

impl DeviceHistory {
    pub fn established_on(&self, nhs: &str, min_sessions: usize) -> bool {
        self.on
            .get(nhs)
            .is_some_and(|u| u.baseline_sessions >= min_sessions)
    }
}

/// Adds a batch of patients' sessions to the run's device histories. Only real device ids are tracked: a user agent
/// or an address stands for many people's devices, and no rule asks whose records it has been used on.
pub fn add_device_histories(
    out: &mut HashMap<String, DeviceHistory>,
    sessions: &BTreeMap<String, Vec<Session>>,
    recent_start: i64,
    is_formal_proxy: impl Fn(&Session) -> bool,
) {
    for (nhs, list) in sessions {
        for s in list {
            if !super::is_identified_device(&s.device) {
                continue;
            }
            let u = out
                .entry(s.device.clone())
                .or_default()
                .on
                .entry(nhs.clone())
                .or_insert_with(|| DeviceUse {
                    first: s.start,
                    last: s.start,
                    ..Default::default()
                });
            if s.start < recent_start {
                u.baseline_sessions += 1;
            } else {
                u.recent_sessions += 1;
            }
            u.first = u.first.min(s.start);
            u.last = u.last.max(s.start);
            if !is_formal_proxy(s) {
                u.non_proxy_sessions += 1;
            }
            if let Some(ip) = &s.ip {
                if u.ips.len() < MAX_IPS {
                    u.ips.insert(ip.clone());
                }
            }
        }
    }
}

/// Shares of sessions per local hour, each session counting half in each neighbouring hour as well.
pub fn smoothed_share(counts: &[f64; 24]) -> [f64; 24] {
    let mut smooth = [0.0; 24];
    for (h, v) in smooth.iter_mut().enumerate() {
        *v = counts[h] + 0.5 * (counts[(h + 23) % 24] + counts[(h + 1) % 24]);
    }
    let total: f64 = smooth.iter().sum();
    if total > 0.0 {
        for v in smooth.iter_mut() {
            *v /= total;
        }
    }
    smooth
}

/// The practice's hours: the share of all baseline sessions per local hour.
/// Adds a batch's baseline sessions to the practice's counts per local hour.
pub fn add_practice_hours(
    counts: &mut [f64; 24],
    sessions: &BTreeMap<String, Vec<Session>>,
    recent_start: i64,
    hour: impl Fn(i64) -> u32,
) {
    for s in sessions
        .values()
        .flatten()
        .filter(|s| s.start < recent_start)
    {
        counts[hour(s.start) as usize] += 1.0;
    }
}

/// The practice's share of baseline sessions per local hour (flat when there is no baseline).
pub fn practice_hours(counts: &[f64; 24]) -> [f64; 24] {
    if counts.iter().sum::<f64>() == 0.0 {
        return [1.0 / 24.0; 24];
    }
    smoothed_share(counts)
}

/// A patient's own normal, learned from their sessions before the recent window.
#[derive(Debug, Clone, Default)]
pub struct PatientBaseline {
    pub sessions: usize,
    /// Enough history to call anything unusual (see `min_baseline_sessions`, `min_baseline_days`).
    pub enough: bool,
    pub devices: HashMap<String, DeviceUse>,
    /// Devices with at least `established_device_sessions` baseline sessions.
    pub established: HashSet<String>,
    /// The device used most in the baseline: the one the patient carries.
    pub primary_device: Option<String>,
    pub hour_counts: [f64; 24],
    /// Share of sessions per local hour: the patient's own (smoothed), shrunk towards the practice's.
    pub hour_share: [f64; 24],
    pub ips: HashSet<String>,
    /// The address used most: the household connection.
    pub home_ip: Option<String>,
    /// Baseline sessions per day over the baseline span.
    pub daily_rate: f64,
    /// Days from the first baseline session to the start of the recent window.
    pub span_days: f64,
}

impl PatientBaseline {
    pub fn build(ctx: &Context, sessions: &[Session]) -> PatientBaseline {
        let mut b = PatientBaseline::default();
        let mut ip_counts: HashMap<&str, usize> = HashMap::new();
        let mut first = None;
        for s in sessions {
            let u = b
                .devices
                .entry(s.device.clone())
                .or_insert_with(|| DeviceUse {
                    first: s.start,
                    last: s.start,
                    ..Default::default()
                });
            u.first = u.first.min(s.start);
            u.last = u.last.max(s.start);
            u.accounts.insert(s.account.clone());
            if s.start >= ctx.recent_start {
                u.recent_sessions += 1;
                continue;
            }
            u.baseline_sessions += 1;
            b.sessions += 1;
            first = Some(first.unwrap_or(s.start));
            b.hour_counts[ctx.hour(s.start) as usize] += 1.0;
            if let Some(ip) = &s.ip {
                b.ips.insert(ip.clone());
                *ip_counts.entry(ip).or_default() += 1;
            }
        }
        b.established = b
            .devices
            .iter()
            .filter(|(_, u)| u.baseline_sessions >= ctx.cfg.established_device_sessions)
            .map(|(d, _)| d.clone())
            .collect();
        b.primary_device = b
            .devices
            .iter()
            .filter(|(_, u)| u.baseline_sessions > 0)
            .max_by(|a, c| (a.1.baseline_sessions, c.0).cmp(&(c.1.baseline_sessions, a.0)))
            .map(|(d, _)| d.clone());
        b.home_ip = ip_counts
            .into_iter()
            .max_by(|a, c| (a.1, c.0).cmp(&(c.1, a.0)))
            .map(|(ip, _)| ip.to_string());
        let span_days = first
            .map(|f| (ctx.recent_start - f) as f64 / DAY as f64)
            .unwrap_or(0.0);
        b.span_days = span_days;
        b.daily_rate = if span_days > 0.0 {
            b.sessions as f64 / span_days
        } else {
            0.0
        };
        b.enough = b.sessions >= ctx.cfg.min_baseline_sessions
            && span_days >= ctx.cfg.min_baseline_days as f64;
        // The patient's own hours, smoothed, shrunk towards the practice's hours by `hour_prior_sessions`
        // pseudo-sessions: a patient with little history is judged by what is usual for everyone.
        let own = smoothed_share(&b.hour_counts);
        let n = b.sessions as f64;
        let k = ctx.cfg.hour_prior_sessions;
        for (h, share) in b.hour_share.iter_mut().enumerate() {
            *share = (own[h] * n + ctx.practice_hours[h] * k) / (n + k).max(f64::EPSILON);
        }
        b
    }

    /// Some history to compare with: at least two sessions before the recent window, the first of them at least
    /// `min_baseline_days` before it. Enough to call a device new, not enough to judge hours or pace.
    pub fn has_history(&self, ctx: &Context) -> bool {
        self.sessions >= 2 && self.span_days >= ctx.cfg.min_baseline_days as f64
    }

    /// Never used on this record before the recent window.
    pub fn is_new(&self, device: &str) -> bool {
        self.devices
            .get(device)
            .is_none_or(|u| u.baseline_sessions == 0)
    }

    pub fn is_established(&self, device: &str) -> bool {
        self.established.contains(device)
    }

    /// The patient's usual hours in words: the smallest set of hours holding most of their sessions.
    pub fn usual_hours(&self) -> String {
        let mut hours: Vec<(usize, f64)> = self
            .hour_counts
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, c)| *c > 0.0)
            .collect();
        hours.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let total: f64 = self.hour_counts.iter().sum();
        let mut kept = Vec::new();
        let mut acc = 0.0;
        for (h, c) in hours {
            kept.push(h);
            acc += c;
            if acc >= 0.8 * total || kept.len() >= 6 {
                break;
            }
        }
        kept.sort();
        let parts: Vec<String> = kept.iter().map(|h| format!("{h:02}:00")).collect();
        if parts.is_empty() {
            "no usual hours yet".into()
        } else {
            format!("mostly in the hours starting {}", parts.join(", "))
        }
    }
}
