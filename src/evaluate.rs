//! Scoring a detection run against a truth file: how many monitored patients were flagged, how many flags were
//! wrong, how well the risk score ranks, per scenario and per benign persona.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Context;
use chrono::{Duration, NaiveDate};
use serde::Serialize;

use crate::cases::{self, NightRow};
use crate::config::Config;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Evaluation {
    pub patients: usize,
    pub monitored: usize,
    pub flagged: usize,
    pub true_positives: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// k = the number of monitored patients: the share of the k highest risk scores that are monitored.
    pub precision_at_k: f64,
    /// Average precision over the ranking by risk score (monitored patients never listed count as missed).
    pub average_precision: f64,
    pub per_scenario: BTreeMap<String, ScenarioScore>,
    pub per_persona: BTreeMap<String, PersonaScore>,
    /// Patients in the report that the truth file does not know (counted as false flags).
    pub unknown_patients: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct ScenarioScore {
    pub monitored: usize,
    pub flagged: usize,
    pub recall: f64,
    /// How often each rule fired on this scenario's patients (flagged or not).
    pub rules: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct PersonaScore {
    pub patients: usize,
    pub flagged: usize,
    pub false_flag_rate: f64,
}

struct Truth {
    monitored: bool,
    scenario: String,
    persona: String,
    /// When the watching began, where the truth file says (an optional `watch_from` column).
    watch_from: Option<NaiveDate>,
}

struct Reported {
    nhs: String,
    score: f64,
    flagged: bool,
    rules: Vec<String>,
}

pub fn evaluate(truth_path: &Path, report_dir: &Path) -> anyhow::Result<Evaluation> {
    let truth = read_truth(truth_path)?;
    let patients_path = report_dir.join("patients.csv");
    let reported = read_patients(&patients_path)?;
    Ok(score(&truth, reported))
}

/// A CSV reader and the positions of the named columns; a missing column is an error naming the file.
fn open_with_columns(
    path: &Path,
    names: &[&str],
) -> anyhow::Result<(csv::Reader<std::fs::File>, Vec<usize>)> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let headers = r.headers()?.clone();
    let ix = names
        .iter()
        .map(|name| {
            headers
                .iter()
                .position(|h| h == *name)
                .with_context(|| format!("{}: no '{name}' column", path.display()))
        })
        .collect::<anyhow::Result<Vec<usize>>>()?;
    Ok((r, ix))
}

fn read_truth(path: &Path) -> anyhow::Result<HashMap<String, Truth>> {
    let (mut r, ix) = open_with_columns(path, &["nhs_number", "label", "scenario", "persona"])?;
    let (n, l, s, p) = (ix[0], ix[1], ix[2], ix[3]);
    let w = r.headers()?.iter().position(|h| h == "watch_from");
    let mut out = HashMap::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: line {}", path.display(), i + 2))?;
        let label = rec.get(l).unwrap_or_default();
        if label != "monitored" && label != "benign" {
            anyhow::bail!(
                "{}: line {}: label must be monitored or benign",
                path.display(),
                i + 2
            );
        }
        out.insert(
            rec.get(n).unwrap_or_default().to_string(),
            Truth {
                monitored: label == "monitored",
                scenario: rec.get(s).unwrap_or_default().to_string(),
                persona: rec.get(p).unwrap_or_default().to_string(),
                watch_from: match w.and_then(|w| rec.get(w)).filter(|v| !v.is_empty()) {
                    None => None,
                    Some(v) => {
                        Some(NaiveDate::parse_from_str(v, "%Y-%m-%d").with_context(|| {
                            format!(
                                "{}: line {}: watch_from is not a date",
                                path.display(),
                                i + 2
                            )
                        })?)
                    }
                },
            },
        );
    }
    Ok(out)
}

fn read_patients(path: &Path) -> anyhow::Result<Vec<Reported>> {
    let (mut r, ix) =
        open_with_columns(path, &["nhs_number", "risk_score", "risk_level", "rules"])?;
    let (n, s, l, ru) = (ix[0], ix[1], ix[2], ix[3]);
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: line {}", path.display(), i + 2))?;
        let score: f64 = rec.get(s).unwrap_or_default().parse().with_context(|| {
            format!(
                "{}: line {}: risk_score is not a number",
                path.display(),
                i + 2
            )
        })?;
        let level = rec.get(l).unwrap_or_default();
        out.push(Reported {
            nhs: rec.get(n).unwrap_or_default().to_string(),
            score,
            flagged: level == "high" || level == "medium",
            rules: rec
                .get(ru)
                .unwrap_or_default()
                .split(';')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect(),
        });
    }
    Ok(out)
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn score(truth: &HashMap<String, Truth>, mut reported: Vec<Reported>) -> Evaluation {
    // Highest risk first; the NHS number breaks ties, so that a report and a replay of the same night, which order
    // equal scores by different keys (a report puts new cases first), score the same.
    reported.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.nhs.cmp(&b.nhs)));
    let monitored = truth.values().filter(|t| t.monitored).count();
    let is_monitored = |nhs: &str| truth.get(nhs).is_some_and(|t| t.monitored);
    let flagged: Vec<&Reported> = reported.iter().filter(|r| r.flagged).collect();
    let tp = flagged.iter().filter(|r| is_monitored(&r.nhs)).count();
    let precision = ratio(tp, flagged.len());
    let recall = ratio(tp, monitored);
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    let top_k = reported
        .iter()
        .take(monitored)
        .filter(|r| is_monitored(&r.nhs))
        .count();
    let mut hits = 0;
    let mut ap_sum = 0.0;
    for (i, r) in reported.iter().enumerate() {
        if is_monitored(&r.nhs) {
            hits += 1;
            ap_sum += hits as f64 / (i + 1) as f64;
        }
    }
    let by_nhs: HashMap<&str, &Reported> = reported.iter().map(|r| (r.nhs.as_str(), r)).collect();
    let mut per_scenario: BTreeMap<String, ScenarioScore> = BTreeMap::new();
    let mut per_persona: BTreeMap<String, PersonaScore> = BTreeMap::new();
    for (nhs, t) in truth {
        let r = by_nhs.get(nhs.as_str());
        let was_flagged = r.is_some_and(|r| r.flagged);
        if t.monitored {
            let s = per_scenario.entry(t.scenario.clone()).or_default();
            s.monitored += 1;
            s.flagged += usize::from(was_flagged);
            for rule in r.map(|r| r.rules.as_slice()).unwrap_or_default() {
                *s.rules.entry(rule.clone()).or_default() += 1;
            }
        } else {
            let p = per_persona.entry(t.persona.clone()).or_default();
            p.patients += 1;
            p.flagged += usize::from(was_flagged);
        }
    }
    for s in per_scenario.values_mut() {
        s.recall = ratio(s.flagged, s.monitored);
    }
    for p in per_persona.values_mut() {
        p.false_flag_rate = ratio(p.flagged, p.patients);
    }
    Evaluation {
        patients: truth.len(),
        monitored,
        flagged: flagged.len(),
        true_positives: tp,
        precision,
        recall,
        f1,
        precision_at_k: ratio(top_k, monitored),
        average_precision: if monitored == 0 {
            0.0
        } else {
            ap_sum / monitored as f64
        },
        per_scenario,
        per_persona,
        unknown_patients: reported
            .iter()
            .filter(|r| !truth.contains_key(&r.nhs))
            .count(),
    }
}

/// A practice replayed night by night: what a safeguarding lead would have lived with.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NightsEvaluation {
    pub nights: u32,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Monitored patients being watched on some replayed night (the watching began by the last night).
    pub monitored: usize,
    /// Of those, flagged (medium or high) on at least one night.
    pub monitored_flagged: usize,
    /// Of those, how many have a `watch_from` in the truth file; for the rest the delay counts from the first
    /// replayed night (the first night the tool could have flagged a watcher already there).
    pub watch_from_known: usize,
    /// Nights from the later of the watcher's first day and the first replayed night to the first flag, over the
    /// monitored patients who were flagged.
    pub nights_to_flag: Spread,
    /// How many monitored patients were first flagged after 0, 1, 2, … nights (key: nights).
    pub nights_to_flag_counts: BTreeMap<i64, usize>,
    /// Distinct benign patients flagged on any night: the review load.
    pub benign_flagged: usize,
    /// Benign cases opened over the nights (a case that lapses and opens again counts twice).
    pub benign_cases_opened: usize,
    /// Benign cases opened per night, on average.
    pub benign_cases_per_night: f64,
    /// The usual scores for the last night alone.
    pub last_night: Evaluation,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Spread {
    pub median: Option<i64>,
    pub p90: Option<i64>,
    pub max: Option<i64>,
    pub mean: Option<f64>,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Detection for each of the `nights` days ending `to`, in memory (nothing is written to the store or the reports),
/// with cases followed across nights as the nightly run would (without reviews), scored against the truth.
pub fn replay(
    config: &Config,
    truth_path: &Path,
    to: NaiveDate,
    nights: u32,
) -> anyhow::Result<NightsEvaluation> {
    anyhow::ensure!(nights >= 1, "--nights must be at least 1");
    let truth = read_truth(truth_path)?;
    let catalogue = crate::context::catalogue::SensitiveCatalogue::for_config(config)?;
    let from = to - Duration::days(i64::from(nights) - 1);
    let mut history: Vec<NightRow> = Vec::new();
    let mut last = Vec::new();
    for k in 0..nights {
        let night = from + Duration::days(i64::from(k));
        let d = crate::detect::detect(
            &config.store,
            &config.detect,
            &config.allowlist,
            &catalogue,
            config.timezone,
            night,
        )?;
        let rows = cases::assign(
            night,
            &d.patients,
            &d.findings,
            &history,
            &[],
            &config.detect.case,
        );
        history.extend(rows);
        tracing::info!(night = %night, night_no = k + 1, nights, "replayed");
        if night == to {
            last = d
                .patients
                .iter()
                .map(|p| Reported {
                    nhs: p.nhs_number.clone(),
                    score: f64::from(p.risk_score),
                    flagged: p.flagged(),
                    rules: p.rules.iter().map(|r| r.to_string()).collect(),
                })
                .collect();
        }
    }
    Ok(score_nights(
        &truth,
        &history,
        from,
        to,
        score(&truth, last),
    ))
}

fn score_nights(
    truth: &HashMap<String, Truth>,
    history: &[NightRow],
    from: NaiveDate,
    to: NaiveDate,
    last_night: Evaluation,
) -> NightsEvaluation {
    let nights = u32::try_from((to - from).num_days() + 1).unwrap_or(0);
    let mut first_flag: HashMap<&str, NaiveDate> = HashMap::new();
    let mut opened: std::collections::HashSet<(&str, &str)> = std::collections::HashSet::new();
    for row in history {
        let Some(mark) = &row.case else { continue };
        first_flag
            .entry(row.nhs_number.as_str())
            .and_modify(|d| *d = (*d).min(row.night))
            .or_insert(row.night);
        opened.insert((row.nhs_number.as_str(), mark.case_id.as_str()));
    }
    let is_monitored = |nhs: &str| truth.get(nhs).is_some_and(|t| t.monitored);
    let mut delays = Vec::new();
    let mut monitored = 0;
    let mut known = 0;
    for (nhs, t) in truth.iter().filter(|(_, t)| t.monitored) {
        if t.watch_from.is_some_and(|w| w > to) {
            continue;
        }
        monitored += 1;
        known += usize::from(t.watch_from.is_some());
        let start = t.watch_from.map_or(from, |w| w.max(from));
        if let Some(f) = first_flag.get(nhs.as_str()) {
            // A flag before the watching began (possible only when the truth's date is late) counts as on time.
            delays.push((*f - start).num_days().max(0));
        }
    }
    delays.sort_unstable();
    let mut counts = BTreeMap::new();
    for d in &delays {
        *counts.entry(*d).or_insert(0) += 1;
    }
    let benign_flagged = first_flag.keys().filter(|n| !is_monitored(n)).count();
    let benign_cases_opened = opened.iter().filter(|(n, _)| !is_monitored(n)).count();
    NightsEvaluation {
        nights,
        from,
        to,
        monitored,
        monitored_flagged: delays.len(),
        watch_from_known: known,
        nights_to_flag: Spread {
            median: percentile(&delays, 0.5),
            p90: percentile(&delays, 0.9),
            max: delays.last().copied(),
            mean: (!delays.is_empty())
                .then(|| delays.iter().sum::<i64>() as f64 / delays.len() as f64),
        },
        nights_to_flag_counts: counts,
        benign_flagged,
        benign_cases_opened,
        benign_cases_per_night: ratio(benign_cases_opened, nights as usize),
        last_night,
    }
}

/// The human summary of a replay.
pub fn render_nights(e: &NightsEvaluation) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "{} nights replayed, {} to {}", e.nights, e.from, e.to);
    let _ = writeln!(
        s,
        "monitored patients being watched {}  flagged on some night {} ({:.3})",
        e.monitored,
        e.monitored_flagged,
        ratio(e.monitored_flagged, e.monitored)
    );
    let n = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    let _ = writeln!(
        s,
        "nights to first flag: median {}  90th percentile {}  max {}  (from the watcher's first day where the truth \
         gives it ({} of {}), else from the first replayed night)",
        n(e.nights_to_flag.median),
        n(e.nights_to_flag.p90),
        n(e.nights_to_flag.max),
        e.watch_from_known,
        e.monitored
    );
    let counts: Vec<String> = e
        .nights_to_flag_counts
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    let _ = writeln!(
        s,
        "  first flagged after N nights (N:patients) {}",
        counts.join(" ")
    );
    let _ = writeln!(
        s,
        "review load: {} distinct benign patients flagged, {} benign cases opened ({:.1} a night)",
        e.benign_flagged, e.benign_cases_opened, e.benign_cases_per_night
    );
    let _ = writeln!(s, "\nthe last night alone ({}):", e.to);
    s.push_str(&render(&e.last_night));
    s
}

/// The human summary.
pub fn render(e: &Evaluation) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "patients {}  monitored {}  flagged {}  true positives {}",
        e.patients, e.monitored, e.flagged, e.true_positives
    );
    let _ = writeln!(
        s,
        "precision {:.3}  recall {:.3}  F1 {:.3}  precision@k {:.3}  average precision {:.3}",
        e.precision, e.recall, e.f1, e.precision_at_k, e.average_precision
    );
    let _ = writeln!(
        s,
        "\n{:<32} {:>9} {:>8} {:>7}  rules fired",
        "scenario", "monitored", "flagged", "recall"
    );
    for (name, sc) in &e.per_scenario {
        let rules: Vec<String> = sc.rules.iter().map(|(r, n)| format!("{r}:{n}")).collect();
        let _ = writeln!(
            s,
            "{:<32} {:>9} {:>8} {:>7.2}  {}",
            name,
            sc.monitored,
            sc.flagged,
            sc.recall,
            rules.join(" ")
        );
    }
    let _ = writeln!(
        s,
        "\n{:<32} {:>9} {:>8} {:>10}",
        "benign persona", "patients", "flagged", "false-flag"
    );
    for (name, p) in &e.per_persona {
        let _ = writeln!(
            s,
            "{:<32} {:>9} {:>8} {:>10.3}",
            name, p.patients, p.flagged, p.false_flag_rate
        );
    }
    if e.unknown_patients > 0 {
        let _ = writeln!(
            s,
            "\n{} reported patient(s) are not in the truth file (counted as false flags)",
            e.unknown_patients
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(monitored: bool, scenario: &str, persona: &str) -> Truth {
        Truth {
            monitored,
            scenario: scenario.into(),
            persona: persona.into(),
            watch_from: None,
        }
    }
    fn r(nhs: &str, score: f64, flagged: bool, rules: &[&str]) -> Reported {
        Reported {
            nhs: nhs.into(),
            score,
            flagged,
            rules: rules.iter().map(|x| x.to_string()).collect(),
        }
    }

    #[test]
    fn scores_a_hand_made_report() {
        let truth: HashMap<String, Truth> = [
            ("m1", t(true, "polling", "ordinary")),
            ("m2", t(true, "polling", "ordinary")),
            ("m3", t(true, "odd_hours", "ordinary")),
            ("b1", t(false, "", "night_shift")),
            ("b2", t(false, "", "night_shift")),
            ("b3", t(false, "", "ordinary")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // Ranking: m1 (flagged), b1 (flagged), m3 (flagged), m2 (low), b3 (low). m2 low, so not flagged.
        let reported = vec![
            r("b1", 70.0, true, &["unusual_hour"]),
            r("m1", 90.0, true, &["monitoring_cadence"]),
            r("m3", 50.0, true, &["unusual_hour"]),
            r("m2", 20.0, false, &["monitoring_cadence"]),
            r("b3", 10.0, false, &[]),
        ];
        let e = score(&truth, reported);
        assert_eq!((e.flagged, e.true_positives), (3, 2));
        assert!((e.precision - 2.0 / 3.0).abs() < 1e-9);
        assert!((e.recall - 2.0 / 3.0).abs() < 1e-9);
        assert!((e.f1 - 2.0 / 3.0).abs() < 1e-9);
        // Top 3 by score: m1, b1, m3.
        assert!((e.precision_at_k - 2.0 / 3.0).abs() < 1e-9);
        // Hits at ranks 1, 3, 4: (1/1 + 2/3 + 3/4) / 3.
        assert!((e.average_precision - (1.0 + 2.0 / 3.0 + 0.75) / 3.0).abs() < 1e-9);
        assert_eq!(e.per_scenario["polling"].monitored, 2);
        assert_eq!(e.per_scenario["polling"].flagged, 1);
        assert_eq!(e.per_scenario["polling"].rules["monitoring_cadence"], 2);
        assert_eq!(e.per_persona["night_shift"].flagged, 1);
        assert!((e.per_persona["night_shift"].false_flag_rate - 0.5).abs() < 1e-9);
        assert_eq!(e.per_persona["ordinary"].flagged, 0);
    }

    #[test]
    fn an_empty_report_scores_zero_without_dividing_by_zero() {
        let truth: HashMap<String, Truth> = [("m1".to_string(), t(true, "x", "ordinary"))]
            .into_iter()
            .collect();
        let e = score(&truth, Vec::new());
        assert_eq!(
            (e.precision, e.recall, e.f1, e.average_precision),
            (0.0, 0.0, 0.0, 0.0)
        );
    }

    fn night_row(nhs: &str, night: &str, case: Option<&str>) -> NightRow {
        let night = NaiveDate::parse_from_str(night, "%Y-%m-%d").unwrap();
        NightRow {
            nhs_number: nhs.into(),
            night,
            risk_score: if case.is_some() { 60 } else { 10 },
            risk_level: if case.is_some() { "medium" } else { "low" }.into(),
            rules: Vec::new(),
            groups: Vec::new(),
            case: case.map(|c| cases::CaseMark {
                case_id: c.into(),
                first_flagged: night,
                status: cases::CaseStatus::New,
            }),
        }
    }

    #[test]
    fn nights_to_flag_count_from_the_watchers_first_day_or_the_first_night() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let mut truth: HashMap<String, Truth> = HashMap::new();
        let mut m = |nhs: &str, from: Option<&str>| {
            let mut x = t(true, "s", "ordinary");
            x.watch_from = from.map(d);
            truth.insert(nhs.into(), x);
        };
        m("m_old", None); // watched before the replay: counts from night 1 (1 Nov)
        m("m_mid", Some("2026-11-04")); // began on the 4th, flagged the 6th: 2 nights
        m("m_never", Some("2026-11-02")); // never flagged
        m("m_later", Some("2026-12-01")); // began after the replay: not counted
        truth.insert("b1".into(), t(false, "", "ordinary"));
        truth.insert("b2".into(), t(false, "", "ordinary"));
        let history = vec![
            night_row("m_old", "2026-11-03", Some("C1")),
            night_row("m_old", "2026-11-04", Some("C1")),
            night_row("m_mid", "2026-11-06", Some("C2")),
            night_row("m_never", "2026-11-06", None),
            night_row("b1", "2026-11-01", Some("C3")),
            night_row("b1", "2026-11-09", Some("C4")),
            night_row("b2", "2026-11-02", None),
        ];
        let e = score_nights(
            &truth,
            &history,
            d("2026-11-01"),
            d("2026-11-10"),
            score(&truth, Vec::new()),
        );
        assert_eq!(
            (
                e.nights,
                e.monitored,
                e.monitored_flagged,
                e.watch_from_known
            ),
            (10, 3, 2, 2)
        );
        assert_eq!(e.nights_to_flag_counts, BTreeMap::from([(2, 2)]));
        assert_eq!(e.nights_to_flag.median, Some(2));
        assert_eq!((e.benign_flagged, e.benign_cases_opened), (1, 2));
        assert!((e.benign_cases_per_night - 0.2).abs() < 1e-9);
    }
}
