//! From findings to a risk score per patient.
//!
//! Each rule contributes its strongest finding's score (0-100); repeats of one rule already raise that score a
//! little inside the rule. Different rules combine as independent evidence: risk = 100 x (1 - product of
//! (1 - score/100)). Two medium signals from different rules outweigh one signal seen many times, which is what
//! corroboration should do. Levels: `high` at or above `detect.high` (default 70), `medium` at or above
//! `detect.medium` (default 45; medium and high are "flagged"), `low` below.

use std::collections::BTreeMap;

use serde::Serialize;

use super::config::DetectConfig;
use super::rules;
use super::{Context, Finding};

#[derive(Debug, Clone, Serialize)]
pub struct PatientRisk {
    pub nhs_number: String,
    pub risk_score: u32,
    pub risk_level: &'static str,
    pub rules: Vec<&'static str>,
    pub summary: String,
}

impl PatientRisk {
    pub fn flagged(&self) -> bool {
        self.risk_level != "low"
    }
}

pub fn combine(scores: impl IntoIterator<Item = f64>) -> f64 {
    let miss: f64 = scores
        .into_iter()
        .map(|s| 1.0 - (s / 100.0).clamp(0.0, 1.0))
        .product();
    100.0 * (1.0 - miss)
}

pub fn level(score: f64, cfg: &DetectConfig) -> &'static str {
    if score >= cfg.high {
        "high"
    } else if score >= cfg.medium {
        "medium"
    } else {
        "low"
    }
}

pub fn score_patients(findings: &[Finding], cfg: &DetectConfig, ctx: &Context) -> Vec<PatientRisk> {
    let mut by_patient: BTreeMap<&str, BTreeMap<&'static str, Vec<&Finding>>> = BTreeMap::new();
    for f in findings {
        by_patient
            .entry(&f.nhs_number)
            .or_default()
            .entry(f.rule_id)
            .or_default()
            .push(f);
    }
    let mut out: Vec<PatientRisk> = by_patient
        .into_iter()
        .map(|(nhs, by_rule)| {
            let mut best: Vec<(&'static str, f64, i64)> = by_rule
                .iter()
                .map(|(rule, fs)| {
                    let score = fs.iter().map(|f| f.score).fold(0.0, f64::max);
                    let first = fs.iter().map(|f| f.first_at).min().unwrap_or(0);
                    (*rule, score, first)
                })
                .collect();
            best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
            let risk = combine(best.iter().map(|b| b.1)).round();
            let summary: Vec<String> = best
                .iter()
                .map(|(rule, _, first)| {
                    let title = rules::find(rule).map(|r| r.meta.title).unwrap_or(rule);
                    format!("{title} (from {})", ctx.when(*first))
                })
                .collect();
            PatientRisk {
                nhs_number: nhs.to_string(),
                risk_score: risk as u32,
                risk_level: level(risk, cfg),
                rules: best.iter().map(|b| b.0).collect(),
                summary: summary.join("; ") + ".",
            }
        })
        .collect();
    out.sort_by(most_urgent_first);
    out
}

/// Highest risk first; ties in NHS number order, so the order never depends on how patients were batched.
pub fn most_urgent_first(a: &PatientRisk, b: &PatientRisk) -> std::cmp::Ordering {
    b.risk_score
        .cmp(&a.risk_score)
        .then(a.nhs_number.cmp(&b.nhs_number))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corroboration_beats_repetition() {
        let one_strong = combine([50.0]);
        let two_medium = combine([40.0, 40.0]);
        let three = combine([40.0, 40.0, 40.0]);
        assert_eq!(one_strong, 50.0);
        assert!((two_medium - 64.0).abs() < 1e-9);
        assert!(three > 78.0 && three < 79.0);
        assert_eq!(combine([]), 0.0);
        let cfg = DetectConfig::default();
        assert_eq!(level(44.9, &cfg), "low");
        assert_eq!(level(45.0, &cfg), "medium");
        assert_eq!(level(70.0, &cfg), "high");
    }
}
