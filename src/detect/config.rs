//! Detection settings: windows, baselines, scoring and every rule's thresholds, with documented defaults. Read from
//! the config's `[detect]` and `[allowlist]` sections (unknown keys are errors).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// `[detect]`: all thresholds in one place. Every field has a default; a config sets only what it changes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Days of history read before the as-of date (baselines and the recent window together). 180 by default, the
    /// longest of the look-backs the monitoring products in the detection notes use: watching goes on for months, and
    /// a password change or the holder's own habits from four months ago are evidence. Only stores holding more than
    /// 90 days see a difference from the earlier 90, in findings and in time.
    pub lookback_days: u32,
    /// The recent window: findings are about activity in these last days; everything before is the baseline.
    pub recent_days: u32,
    /// A patient needs at least this many sessions in the baseline before anything is called unusual for them.
    pub min_baseline_sessions: usize,
    /// ... spread over at least this many days between the first and last baseline session.
    pub min_baseline_days: i64,
    /// Pseudo-sessions of the practice's hour-of-day pattern mixed into each patient's own, so that a patient with
    /// little history is judged by what is usual for everyone.
    pub hour_prior_sessions: f64,
    /// A device is established for a patient after this many baseline sessions on their record.
    pub established_device_sessions: usize,
    /// Detection reads the look-back in batches of patients holding about this many audit events each (ranges of
    /// NHS numbers, at most 100 batches), so memory follows this number, not the store's size.
    /// A look-back under it is read in one pass; a bigger one is read twice (device histories first, then rules).
    pub batch_events: u64,
    /// Risk score at or above which a patient is high risk.
    pub high: f64,
    /// Risk score at or above which a patient is medium risk (flagged).
    pub medium: f64,
    /// Evidence whose last session ended before the recent window counts at this fraction of its score: still
    /// evidence, listed after watching that goes on now.
    pub stale_factor: f64,
    pub unfamiliar_device: UnfamiliarDevice,
    pub shared_device: SharedDevice,
    pub unusual_hour: UnusualHour,
    pub access_after_sensitive_entry: AfterSensitive,
    pub access_during_appointment: DuringAppointment,
    pub concurrent_sessions: Concurrent,
    pub access_despite_restriction: DespiteRestriction,
    pub account_change_then_new_device: AccountChange,
    pub monitoring_cadence: Cadence,
    /// `[detect.case]`: cases across nights (see [`crate::cases`]).
    pub case: crate::cases::CaseConfig,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            lookback_days: 180,
            recent_days: 14,
            min_baseline_sessions: 5,
            min_baseline_days: 14,
            hour_prior_sessions: 5.0,
            established_device_sessions: 2,
            batch_events: 2_000_000,
            high: 70.0,
            medium: 45.0,
            stale_factor: 0.85,
            unfamiliar_device: Default::default(),
            shared_device: Default::default(),
            unusual_hour: Default::default(),
            access_after_sensitive_entry: Default::default(),
            access_during_appointment: Default::default(),
            concurrent_sessions: Default::default(),
            access_despite_restriction: Default::default(),
            account_change_then_new_device: Default::default(),
            monitoring_cadence: Default::default(),
            case: Default::default(),
        }
    }
}

/// Checks one number against its bounds, naming the key.
fn bounded<T: PartialOrd + std::fmt::Display>(
    out: &mut Vec<String>,
    key: &str,
    v: T,
    lo: T,
    hi: T,
) {
    if !(v >= lo && v <= hi) {
        out.push(format!("detect.{key}: {v} is outside {lo} to {hi}"));
    }
}

impl DetectConfig {
    /// Every number within sane bounds, so no window, hour or score can wrap the arithmetic or mean nothing; each
    /// problem names its key. Scores are 0 to 100, factors and shares 0 to 1.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let o = &mut p;
        bounded(o, "lookback_days", self.lookback_days, 2, 3650);
        bounded(
            o,
            "recent_days",
            self.recent_days,
            1,
            self.lookback_days.saturating_sub(1).max(1),
        );
        bounded(
            o,
            "min_baseline_sessions",
            self.min_baseline_sessions,
            0,
            100_000,
        );
        bounded(o, "min_baseline_days", self.min_baseline_days, 0, 3650);
        bounded(
            o,
            "hour_prior_sessions",
            self.hour_prior_sessions,
            0.0,
            1000.0,
        );
        bounded(
            o,
            "established_device_sessions",
            self.established_device_sessions,
            1,
            100_000,
        );
        bounded(o, "batch_events", self.batch_events, 1, u64::MAX / 2);
        bounded(o, "high", self.high, 0.0, 100.0);
        bounded(o, "medium", self.medium, 0.0, self.high.clamp(0.0, 100.0));
        bounded(o, "stale_factor", self.stale_factor, 0.0, 1.0);
        bounded(o, "case.gap_days", self.case.gap_days, 0, 3650);
        bounded(o, "case.rise", self.case.rise, 1, 100);
        let scores: [(&str, f64); 28] = [
            (
                "unfamiliar_device.base_score",
                self.unfamiliar_device.base_score,
            ),
            (
                "unfamiliar_device.per_session",
                self.unfamiliar_device.per_session,
            ),
            (
                "unfamiliar_device.reads_only_score",
                self.unfamiliar_device.reads_only_score,
            ),
            (
                "unfamiliar_device.new_score",
                self.unfamiliar_device.new_score,
            ),
            (
                "unfamiliar_device.max_score",
                self.unfamiliar_device.max_score,
            ),
            (
                "unfamiliar_device.holders_reading_max_score",
                self.unfamiliar_device.holders_reading_max_score,
            ),
            (
                "unusual_hour.holders_reading_max_score",
                self.unusual_hour.holders_reading_max_score,
            ),
            ("shared_device.base_score", self.shared_device.base_score),
            ("shared_device.per_session", self.shared_device.per_session),
            ("shared_device.max_score", self.shared_device.max_score),
            ("unusual_hour.base_score", self.unusual_hour.base_score),
            ("unusual_hour.per_session", self.unusual_hour.per_session),
            ("unusual_hour.max_score", self.unusual_hour.max_score),
            (
                "unusual_hour.night_max_score",
                self.unusual_hour.night_max_score,
            ),
            (
                "unusual_hour.minority_max_score",
                self.unusual_hour.minority_max_score,
            ),
            (
                "access_after_sensitive_entry.unfamiliar_device_score",
                self.access_after_sensitive_entry.unfamiliar_device_score,
            ),
            (
                "access_after_sensitive_entry.night_own_device_score",
                self.access_after_sensitive_entry.night_own_device_score,
            ),
            (
                "access_after_sensitive_entry.per_entry",
                self.access_after_sensitive_entry.per_entry,
            ),
            (
                "access_after_sensitive_entry.max_score",
                self.access_after_sensitive_entry.max_score,
            ),
            (
                "access_during_appointment.base_score",
                self.access_during_appointment.base_score,
            ),
            (
                "access_during_appointment.per_visit",
                self.access_during_appointment.per_visit,
            ),
            (
                "access_during_appointment.max_score",
                self.access_during_appointment.max_score,
            ),
            (
                "concurrent_sessions.base_score",
                self.concurrent_sessions.base_score,
            ),
            (
                "concurrent_sessions.max_score",
                self.concurrent_sessions.max_score,
            ),
            (
                "access_despite_restriction.base_score",
                self.access_despite_restriction.base_score,
            ),
            (
                "account_change_then_new_device.base_score",
                self.account_change_then_new_device.base_score,
            ),
            (
                "monitoring_cadence.regular_score",
                self.monitoring_cadence.regular_score,
            ),
            (
                "monitoring_cadence.foreign_schedule_score",
                self.monitoring_cadence.foreign_schedule_score,
            ),
        ];
        for (key, v) in scores {
            bounded(o, key, v, 0.0, 100.0);
        }
        let more: [(&str, f64); 6] = [
            (
                "access_despite_restriction.per_session",
                self.access_despite_restriction.per_session,
            ),
            (
                "access_despite_restriction.max_score",
                self.access_despite_restriction.max_score,
            ),
            (
                "account_change_then_new_device.locked_out_score",
                self.account_change_then_new_device.locked_out_score,
            ),
            (
                "account_change_then_new_device.max_score",
                self.account_change_then_new_device.max_score,
            ),
            (
                "monitoring_cadence.rate_score",
                self.monitoring_cadence.rate_score,
            ),
            (
                "monitoring_cadence.max_score",
                self.monitoring_cadence.max_score,
            ),
        ];
        for (key, v) in more {
            bounded(o, key, v, 0.0, 100.0);
        }
        let fractions: [(&str, f64); 9] = [
            (
                "shared_device.household_factor",
                self.shared_device.household_factor,
            ),
            ("unusual_hour.rare_share", self.unusual_hour.rare_share),
            (
                "unusual_hour.away_from_home_factor",
                self.unusual_hour.away_from_home_factor,
            ),
            (
                "unusual_hour.minority_share",
                self.unusual_hour.minority_share,
            ),
            (
                "access_during_appointment.carried_device_at_home_factor",
                self.access_during_appointment.carried_device_at_home_factor,
            ),
            (
                "concurrent_sessions.own_devices_factor",
                self.concurrent_sessions.own_devices_factor,
            ),
            (
                "access_despite_restriction.own_device_factor",
                self.access_despite_restriction.own_device_factor,
            ),
            (
                "account_change_then_new_device.own_phone_factor",
                self.account_change_then_new_device.own_phone_factor,
            ),
            (
                "monitoring_cadence.tolerance_share",
                self.monitoring_cadence.tolerance_share,
            ),
        ];
        for (key, v) in fractions {
            bounded(o, key, v, 0.0, 1.0);
        }
        bounded(
            o,
            "unfamiliar_device.max_sessions",
            self.unfamiliar_device.max_sessions,
            1,
            1000,
        );
        bounded(
            o,
            "unusual_hour.min_sessions",
            self.unusual_hour.min_sessions,
            1,
            10_000,
        );
        bounded(
            o,
            "unusual_hour.min_days",
            self.unusual_hour.min_days,
            1,
            3650,
        );
        bounded(
            o,
            "unusual_hour.explained_within_hours",
            self.unusual_hour.explained_within_hours,
            0,
            24 * 30,
        );
        bounded(
            o,
            "unusual_hour.core_distance_hours",
            self.unusual_hour.core_distance_hours,
            1,
            12,
        );
        bounded(
            o,
            "access_after_sensitive_entry.within_hours",
            self.access_after_sensitive_entry.within_hours,
            1,
            24 * 90,
        );
        bounded(
            o,
            "concurrent_sessions.within_minutes",
            self.concurrent_sessions.within_minutes,
            0,
            24 * 60,
        );
        bounded(
            o,
            "account_change_then_new_device.within_days",
            self.account_change_then_new_device.within_days,
            0,
            365,
        );
        bounded(
            o,
            "monitoring_cadence.rate_ratio",
            self.monitoring_cadence.rate_ratio,
            0.0,
            1000.0,
        );
        bounded(
            o,
            "monitoring_cadence.min_rate_per_day",
            self.monitoring_cadence.min_rate_per_day,
            0.0,
            1000.0,
        );
        bounded(
            o,
            "monitoring_cadence.min_regular_sessions",
            self.monitoring_cadence.min_regular_sessions,
            2,
            10_000,
        );
        bounded(
            o,
            "monitoring_cadence.min_regular_days",
            self.monitoring_cadence.min_regular_days,
            2,
            10_000,
        );
        bounded(
            o,
            "monitoring_cadence.tolerance_minutes",
            self.monitoring_cadence.tolerance_minutes,
            0,
            24 * 60,
        );
        bounded(
            o,
            "monitoring_cadence.slot_minutes",
            self.monitoring_cadence.slot_minutes,
            0,
            12 * 60,
        );
        bounded(
            o,
            "monitoring_cadence.exact_daily_minutes",
            self.monitoring_cadence.exact_daily_minutes,
            0,
            12 * 60,
        );
        bounded(
            o,
            "monitoring_cadence.exact_daily_sessions",
            self.monitoring_cadence.exact_daily_sessions,
            2,
            10_000,
        );
        p
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnfamiliarDevice {
    pub enabled: bool,
    /// Score for one session from a device that is not the holder's; each further session adds `per_session`
    /// (counting at most `max_sessions`), up to `max_score`.
    pub base_score: f64,
    pub per_session: f64,
    pub max_sessions: usize,
    /// Added when the device reads like a watcher against the holder's own reading
    /// (`PatientBaseline::reads_like_watcher`).
    pub reads_only_score: f64,
    /// Added when the device first appeared in the recent window on a record with some history.
    pub new_score: f64,
    pub max_score: f64,
    /// The most a device scores when it reads the record the way the holder does (see
    /// `PatientBaseline::reads_like_watcher`): a second tablet or computer whose hours are its own is a weak witness.
    pub holders_reading_max_score: f64,
}

impl Default for UnfamiliarDevice {
    fn default() -> Self {
        UnfamiliarDevice {
            enabled: true,
            base_score: 25.0,
            per_session: 2.0,
            max_sessions: 8,
            reads_only_score: 10.0,
            new_score: 5.0,
            max_score: 50.0,
            holders_reading_max_score: 35.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharedDevice {
    pub enabled: bool,
    pub base_score: f64,
    pub per_session: f64,
    pub max_score: f64,
    /// A tablet or computer established on a household member's record (same home address) scores this
    /// fraction: a shared family device is a weaker sign than someone's own phone.
    pub household_factor: f64,
}

impl Default for SharedDevice {
    fn default() -> Self {
        SharedDevice {
            enabled: true,
            base_score: 55.0,
            per_session: 4.0,
            max_score: 75.0,
            household_factor: 0.5,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnusualHour {
    pub enabled: bool,
    /// An hour is rare for a patient when its smoothed share of their baseline sessions is below this.
    pub rare_share: f64,
    /// At least this many rare-hour sessions on at least `min_days` different days.
    pub min_sessions: usize,
    pub min_days: usize,
    pub base_score: f64,
    pub per_session: f64,
    pub max_score: f64,
    /// Sessions starting within this many hours after a new entry or an appointment are explained (the patient
    /// reading what just happened), and do not count.
    pub explained_within_hours: i64,
    /// Rare-hour sessions from the patient's own device over addresses never seen before (travel) count this much.
    pub away_from_home_factor: f64,
    /// Foreign-hour sessions that are fewer than this share of the record's sessions (strays in a busy history)
    /// score at most `minority_max_score`: not enough alone to flag.
    pub minority_share: f64,
    pub minority_max_score: f64,
    /// Most foreign sessions between midnight and 06:00, while the holder sleeps (someone taking their phone, as the
    /// guidance describes), may score up to this; foreign hours otherwise stay at `max_score`, below medium: a
    /// person's own evenings and early mornings vary too much to flag on hours alone.
    pub night_max_score: f64,
    /// The most foreign hours score on a device that is not the holder's but reads the record the way the holder
    /// does (a tablet kept for the evenings, a work computer): its hours are its own habit.
    pub holders_reading_max_score: f64,

    /// An hour at least this far from the holder's core hours (the shortest run of hours holding three quarters of
    /// their sessions) is one they do not keep, however often someone else has used it.
    pub core_distance_hours: u32,
}

impl Default for UnusualHour {
    fn default() -> Self {
        UnusualHour {
            enabled: true,
            rare_share: 0.02,
            min_sessions: 3,
            min_days: 3,
            base_score: 25.0,
            per_session: 5.0,
            max_score: 40.0,
            night_max_score: 55.0,
            minority_share: 0.1,
            minority_max_score: 30.0,
            holders_reading_max_score: 30.0,
            explained_within_hours: 3,
            away_from_home_factor: 0.5,
            core_distance_hours: 3,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AfterSensitive {
    pub enabled: bool,
    /// How soon after a sensitive entry becomes visible a view counts.
    pub within_hours: i64,
    /// From a device the patient does not normally use.
    pub unfamiliar_device_score: f64,
    /// From the holder's own device, at an hour they do not keep, reading only what a watcher reads.
    pub night_own_device_score: f64,
    /// Added for each further sensitive entry followed this way.
    pub per_entry: f64,
    pub max_score: f64,
}

impl Default for AfterSensitive {
    fn default() -> Self {
        AfterSensitive {
            enabled: true,
            within_hours: 48,
            unfamiliar_device_score: 45.0,
            night_own_device_score: 30.0,
            per_entry: 10.0,
            max_score: 65.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DuringAppointment {
    pub enabled: bool,
    pub base_score: f64,
    pub per_visit: f64,
    pub max_score: f64,
    /// The patient's own usual device on the household connection during the visit (not another device) scores
    /// this fraction: it may be a booking time that does not match the real visit.
    pub carried_device_at_home_factor: f64,
}

impl Default for DuringAppointment {
    fn default() -> Self {
        DuringAppointment {
            enabled: true,
            base_score: 50.0,
            per_visit: 10.0,
            max_score: 70.0,
            carried_device_at_home_factor: 0.6,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Concurrent {
    pub enabled: bool,
    /// Sessions of one account on two devices open at the same time, give or take this many minutes.
    pub within_minutes: i64,
    pub base_score: f64,
    pub max_score: f64,
    /// When both devices are the patient's own established devices, the score is multiplied by this.
    pub own_devices_factor: f64,
}

impl Default for Concurrent {
    fn default() -> Self {
        Concurrent {
            enabled: true,
            within_minutes: 0,
            base_score: 45.0,
            max_score: 60.0,
            own_devices_factor: 0.5,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DespiteRestriction {
    pub enabled: bool,
    pub base_score: f64,
    pub per_session: f64,
    pub max_score: f64,
    /// When every such visit is on the holder's own device (at hours they do not keep), the score is multiplied by
    /// this: the device is theirs, only the hours are not.
    pub own_device_factor: f64,
}

impl Default for DespiteRestriction {
    fn default() -> Self {
        DespiteRestriction {
            enabled: true,
            base_score: 55.0,
            per_session: 5.0,
            max_score: 75.0,
            own_device_factor: 0.7,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountChange {
    pub enabled: bool,
    /// A device new to the patient appearing within this many days after the change.
    pub within_days: i64,
    pub base_score: f64,
    /// Added when the devices used before the change are not used after it (the patient locked out).
    pub locked_out_score: f64,
    pub max_score: f64,
    /// When the new device goes on to be used the way the patient used their own (the sections they read, their
    /// hours), the finding scores this fraction: most likely the patient's new phone after a reset.
    pub own_phone_factor: f64,
}

impl Default for AccountChange {
    fn default() -> Self {
        AccountChange {
            enabled: true,
            within_days: 7,
            base_score: 45.0,
            locked_out_score: 15.0,
            max_score: 65.0,
            own_phone_factor: 0.6,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cadence {
    pub enabled: bool,
    /// Recent sessions per day at least this many times the patient's baseline rate...
    pub rate_ratio: f64,
    /// ... and at least this many per day.
    pub min_rate_per_day: f64,
    pub rate_score: f64,
    /// Machine-regular polling: at least this many sessions from one device, each one period after the last to
    /// within `tolerance_minutes` (other sessions in between do not matter).
    pub min_regular_sessions: usize,
    /// For periods of 12 hours or more (a daily check): the run must be at least this long.
    pub min_regular_days: usize,
    pub tolerance_minutes: i64,
    /// The tolerance grows with the period: at least this share of it (1.5% of a day is about 22 minutes).
    pub tolerance_share: f64,
    pub regular_score: f64,
    /// A daily check of at least `min_regular_sessions` (but fewer than `min_regular_days`) that keeps the same
    /// minute at hours the holder does not keep, and only reads: someone else's schedule on the record. Scores this.
    pub foreign_schedule_score: f64,
    /// A device (not the holder's) that reads the record on at least `min_regular_days` days within this many
    /// minutes either side of one time of day, with days skipped between: a schedule too, scored
    /// `foreign_schedule_score`. Tighter than a daily chain's tolerance, since nothing else here says it is a schedule.
    pub slot_minutes: i64,
    /// A daily check kept to within this many minutes from one day to the next, on at least `exact_daily_sessions`
    /// visits that only read (fewer than `min_regular_days`): kept to the minute as people do not, it scores
    /// `regular_score`.
    pub exact_daily_minutes: i64,
    pub exact_daily_sessions: usize,
    pub max_score: f64,
}

impl Default for Cadence {
    fn default() -> Self {
        Cadence {
            enabled: true,
            rate_ratio: 4.0,
            min_rate_per_day: 1.5,
            rate_score: 40.0,
            min_regular_sessions: 5,
            min_regular_days: 10,
            tolerance_minutes: 3,
            tolerance_share: 0.015,
            regular_score: 55.0,
            foreign_schedule_score: 40.0,
            slot_minutes: 12,
            exact_daily_minutes: 5,
            exact_daily_sessions: 6,
            max_score: 70.0,
        }
    }
}

/// `[allowlist]`: devices never counted (a practice kiosk), and patient-device pairs a lead reviewed as benign.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Allowlist {
    pub devices: Vec<String>,
    pub reviewed: Vec<ReviewedPair>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewedPair {
    pub nhs_number: String,
    pub device_id: String,
    /// The review stands until this day (inclusive); after it the pair is checked again.
    pub expires: NaiveDate,
    #[serde(default)]
    pub note: Option<String>,
}

impl Allowlist {
    pub fn allows(&self, nhs: &str, device: &str, on: NaiveDate) -> bool {
        self.devices.iter().any(|d| d == device)
            || self
                .reviewed
                .iter()
                .any(|r| r.device_id == device && r.nhs_number == nhs && on <= r.expires)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviewed_pairs_expire_and_devices_do_not() {
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d).unwrap_or_default();
        let a = Allowlist {
            devices: vec!["kiosk".into()],
            reviewed: vec![ReviewedPair {
                nhs_number: "9434765919".into(),
                device_id: "tablet".into(),
                expires: day(20),
                note: None,
            }],
        };
        assert!(
            a.allows("4010232137", "kiosk", day(30)),
            "an allowlisted device, for anyone, any day"
        );
        assert!(
            a.allows("9434765919", "tablet", day(20)),
            "reviewed pair until its expiry day"
        );
        assert!(
            !a.allows("9434765919", "tablet", day(21)),
            "checked again after it"
        );
        assert!(
            !a.allows("4010232137", "tablet", day(10)),
            "only for the reviewed patient"
        );
    }

    #[test]
    fn out_of_bounds_numbers_are_errors_naming_their_key() {
        assert!(
            DetectConfig::default().problems().is_empty(),
            "{:?}",
            DetectConfig::default().problems()
        );
        let c: DetectConfig = toml::from_str(
            "[access_after_sensitive_entry]\nwithin_hours = 9223372036854775807\n[unusual_hour]\nrare_share = 2.0\n",
        )
        .unwrap_or_default();
        let p = c.problems();
        assert!(
            p.iter()
                .any(|m| m.starts_with("detect.access_after_sensitive_entry.within_hours:")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("detect.unusual_hour.rare_share:")),
            "{p:?}"
        );
        let c: DetectConfig =
            toml::from_str("lookback_days = 90\nrecent_days = 90\n").unwrap_or_default();
        assert!(c
            .problems()
            .iter()
            .any(|m| m.starts_with("detect.recent_days:")));
    }

    #[test]
    fn a_config_sets_only_what_it_changes() {
        let c: DetectConfig = toml::from_str("recent_days = 7\n[unusual_hour]\nmin_sessions = 3\n")
            .unwrap_or_default();
        assert_eq!(c.recent_days, 7);
        assert_eq!(c.unusual_hour.min_sessions, 3);
        assert_eq!(c.unusual_hour.rare_share, UnusualHour::default().rare_share);
        assert_eq!(c.lookback_days, DetectConfig::default().lookback_days);
        assert!(
            toml::from_str::<DetectConfig>("[unusual_hour]\nrare_shar = 0.1\n").is_err(),
            "typos are errors"
        );
    }
}
