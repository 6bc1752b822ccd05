//! Scoring a detection run against a truth file: how many monitored patients were flagged, how many flags were
//! wrong, how well the risk score ranks, per scenario and per benign persona.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

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
    // Highest risk first; the file's own order breaks ties.
    reported.sort_by(|a, b| b.score.total_cmp(&a.score));
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
}
