//! `report.html`: one self-contained page for the safeguarding lead. No scripts, no network, prints cleanly (one
//! patient per page), every value from the input escaped.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;

use super::charts::Chart;
use super::{RunSummary, FINDINGS_CSV, FINDINGS_PARQUET, PATIENTS_CSV, SUMMARY_JSON};
use crate::cases::CaseView;
use crate::detect::scoring::PatientRisk;
use crate::detect::{rules, short_device, Detection, Finding};

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// "943 476 5919"
pub fn spaced_nhs(n: &str) -> String {
    if n.len() == 10 && n.bytes().all(|b| b.is_ascii_digit()) {
        format!("{} {} {}", &n[..3], &n[3..6], &n[6..])
    } else {
        n.to_string()
    }
}

/// The patients the page lists, in its order: flagged, except cases reviewed as benign with nothing new since
/// (those are counted, not listed).
pub fn listed(d: &Detection) -> Vec<&PatientRisk> {
    d.patients
        .iter()
        .filter(|p| p.flagged() && !p.case.as_ref().is_some_and(|c| c.suppressed))
        .collect()
}

/// One listed patient's charts, each with its file name.
pub type PatientCharts = Vec<(Chart, String)>;

/// The charts for the page. A listed patient's charts (see [`listed`]) are asked for when the page reaches the
/// patient, by index in page order, so that only one patient's charts are ever held (a run with tens of thousands of
/// flagged patients draws gigabytes of them); the run's two are drawn beforehand.
pub struct PageCharts<'a> {
    pub patient: &'a mut dyn FnMut(usize, &PatientRisk) -> anyhow::Result<PatientCharts>,
    pub findings_per_rule: &'a Chart,
    pub events_per_day: &'a Chart,
}

fn figure(out: &mut String, chart: &Chart, id: &str, file: &str) {
    // The SVG is plotters' output (its text already escaped); it gets an accessible name from the caption.
    let svg = chart.svg.replacen(
        "<svg ",
        &format!("<svg role=\"img\" aria-labelledby=\"{id}\" "),
        1,
    );
    let _ = writeln!(
        out,
        "<figure>{svg}<figcaption id=\"{id}\">{} <a href=\"charts/{file}\">(chart file)</a></figcaption></figure>",
        escape(&chart.alt)
    );
}

fn local(tz: Tz, micros: i64, fmt: &str) -> String {
    DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .with_timezone(&tz)
        .format(fmt)
        .to_string()
}

/// Writes the page to `out` a section at a time: the page is never held whole (at tens of thousands of flagged
/// patients it runs to gigabytes).
pub fn render(
    out: &mut dyn std::io::Write,
    d: &Detection,
    s: &RunSummary,
    charts: &mut PageCharts,
    tz: Tz,
    as_of: NaiveDate,
) -> anyhow::Result<()> {
    let mut o = String::new();
    // Each patient's findings, in detection's order, found once rather than by a scan of every finding per patient.
    let mut by_patient: HashMap<&str, Vec<&Finding>> = HashMap::new();
    for f in &d.findings {
        by_patient.entry(f.nhs_number.as_str()).or_default().push(f);
    }
    let all_flagged: Vec<_> = d.patients.iter().filter(|p| p.flagged()).collect();
    let high = all_flagged
        .iter()
        .filter(|p| p.risk_level == "high")
        .count();
    let medium = all_flagged.len() - high;
    let flagged = listed(d);
    let set_aside = all_flagged.len() - flagged.len();
    let _ = write!(
        o,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>accesswatch: record access report for {day}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Arial, sans-serif; max-width: 60rem; margin: 1rem auto; padding: 0 1rem; color: #111; line-height: 1.45; }}
.banner {{ border: 3px solid #111; padding: 0.6rem 0.8rem; font-weight: 600; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1rem; }}
th, td {{ border: 1px solid #888; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }}
th[scope=row] {{ font-weight: normal; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.nhs {{ white-space: nowrap; }}
.level-high {{ font-weight: 700; text-transform: uppercase; border: 2px solid #111; padding: 0 0.3rem; }}
.level-medium {{ font-weight: 700; border: 1px dashed #111; padding: 0 0.3rem; }}
.patient {{ border-top: 2px solid #111; margin-top: 2rem; }}
.guide {{ color: #333; font-size: 0.95em; }}
figure {{ margin: 1rem 0; }}
figure svg {{ max-width: 100%; height: auto; }}
figcaption {{ font-size: 0.9em; color: #333; }}
@media print {{
  body {{ max-width: none; margin: 0; }}
  .patient {{ break-before: page; page-break-before: always; border-top: none; }}
  nav, .files {{ break-inside: avoid; }}
  a {{ color: inherit; text-decoration: none; }}
  figure {{ break-inside: avoid; }}
}}
</style>
</head>
<body>
<header>
<p class="banner" role="note">CONFIDENTIAL. This report holds special-category health data about patients who may be at risk of abuse. Keep it within the safeguarding team. Never contact a patient in a way that someone watching their phone, email or health record could see.</p>
<h1>Record access report for {long_day}</h1>
<p>Data read from {from} to {to}; all of it is evidence, and a pattern that was already there on {from} is reported as seen since then (it had probably begun earlier). Patients whose evidence goes on after {recent} come first. Made by accesswatch {version}. A flag is a reason to look, not a conclusion: each one says what was seen and what innocent explanations to rule out.</p>
<table>
<caption>This run</caption>
<tbody>
<tr><th scope="row">Patients whose record was used in that time</th><td class="num">{analysed}</td></tr>
<tr><th scope="row">Patients flagged: high</th><td class="num">{high}</td></tr>
<tr><th scope="row">Patients flagged: medium</th><td class="num">{medium}</td></tr>
<tr><th scope="row">Cases new tonight</th><td class="num">{new}</td></tr>
<tr><th scope="row">Cases reviewed, with new evidence since</th><td class="num">{new_evidence}</td></tr>
<tr><th scope="row">Cases flagged before, not yet reviewed</th><td class="num">{continuing}</td></tr>
<tr><th scope="row">Cases reviewed, nothing new since</th><td class="num">{reviewed}</td></tr>
<tr><th scope="row">Input rows read (all time)</th><td class="num">{rows}</td></tr>
<tr><th scope="row">Rows quarantined (all time)</th><td class="num">{quarantined}</td></tr>
<tr><th scope="row">Findings</th><td class="num">{findings}</td></tr>
</tbody>
</table>
</header>
<main>
"#,
        day = as_of,
        long_day = as_of.format("%A %-d %B %Y"),
        from = local(tz, d.charts.lookback_start, "%-d %B %Y"),
        to = as_of.format("%-d %B %Y"),
        recent = local(tz, d.charts.recent_start, "%-d %B"),
        version = escape(s.version),
        analysed = s.detection.patients_analysed,
        rows = s.input.rows_read,
        quarantined = s.input.quarantined,
        findings = d.findings.len(),
        new = s.cases.get("new").copied().unwrap_or(0),
        new_evidence = s.cases.get("new_evidence").copied().unwrap_or(0),
        continuing = s.cases.get("continuing").copied().unwrap_or(0),
        reviewed = s.cases.get("reviewed").copied().unwrap_or(0),
    );
    let sections = s.detection.coverage.section;
    let no_sections = !s.detection.coverage.names_sections();
    let on_role = s.detection.proxy_sessions_on_role;
    if !s.detection.rules_not_run.is_empty() || no_sections || on_role > 0 {
        o.push_str(
            "<section class=\"limits\" aria-labelledby=\"limits-heading\">\n<h2 id=\"limits-heading\">What this export could not show</h2>\n<p>The audit export does not carry some of the fields these checks need. A patient is not cleared by a check that did not run, or could not see.</p>\n<ul>\n",
        );
        for r in &s.detection.rules_not_run {
            let title = crate::detect::rules::find(r.rule_id).map_or(r.rule_id, |x| x.meta.title);
            let _ = writeln!(
                o,
                "<li><strong>{}</strong> (<code>{}</code>) could not run: it {}.</li>",
                escape(title),
                r.rule_id,
                escape(&r.reason)
            );
        }
        if on_role > 0 {
            let _ = writeln!(
                o,
                "<li>No formal proxy relationships were supplied, so the {on_role} visits the audit log marks as a \
                 proxy's (a parent or carer with their own login) were taken as proxy access on its word: none was \
                 checked against a recorded relationship or its dates.</li>"
            );
        }
        if no_sections {
            let _ = writeln!(
                o,
                "<li>The export names the part of the record read (results, letters, appointments and so on) in {:.0}% \
                 of views, so no device is judged by what it reads: the patient's own tablet and someone else's phone \
                 can look alike here.</li>",
                100.0 * sections
            );
        }
        o.push_str("</ul>\n</section>\n");
    }

    o.push_str("<nav aria-labelledby=\"flagged-heading\">\n<h2 id=\"flagged-heading\">Flagged patients: new cases first, then cases with new evidence since a review, then the rest; most urgent first within each</h2>\n");
    if flagged.is_empty() {
        o.push_str("<p>No patient was flagged in this run.</p>\n");
    } else {
        o.push_str("<table>\n<thead><tr><th scope=\"col\">#</th><th scope=\"col\">NHS number</th><th scope=\"col\">Case</th><th scope=\"col\">Risk</th><th scope=\"col\">Score</th><th scope=\"col\">Why, in brief</th></tr></thead>\n<tbody>\n");
        for (i, p) in flagged.iter().enumerate() {
            let _ = writeln!(
                o,
                "<tr><td class=\"num\">{n}</td><td class=\"nhs\"><a href=\"#patient-{n}\">{nhs}</a></td><td>{case}</td><td><span class=\"level-{lvl}\">{lvl}</span></td><td class=\"num\">{score}</td><td>{summary}</td></tr>",
                n = i + 1,
                nhs = escape(&spaced_nhs(&p.nhs_number)),
                case = p.case.as_ref().map(case_brief).unwrap_or_default(),
                lvl = p.risk_level,
                score = p.risk_score,
                summary = escape(&p.summary),
            );
        }
        o.push_str("</tbody>\n</table>\n");
    }
    if set_aside > 0 {
        let _ = writeln!(
            o,
            "<p>{set_aside} more flagged patient(s) are not listed: their cases were reviewed as benign and nothing new has appeared since. They come back as soon as something does.</p>"
        );
    }
    o.push_str("</nav>\n");
    out.write_all(o.as_bytes())?;
    o.clear();

    for (i, p) in flagged.iter().enumerate() {
        let n = i + 1;
        let _ = write!(
            o,
            "<section class=\"patient\" id=\"patient-{n}\" aria-labelledby=\"patient-{n}-heading\">\n<h2 id=\"patient-{n}-heading\">{n}. NHS number {nhs}: <span class=\"level-{lvl}\">{lvl} risk</span>, score {score} of 100</h2>\n<h3>Why this patient is flagged</h3>\n<ul>\n",
            nhs = escape(&spaced_nhs(&p.nhs_number)),
            lvl = p.risk_level,
            score = p.risk_score,
        );
        let mut findings = by_patient.remove(p.nhs_number.as_str()).unwrap_or_default();
        findings.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.first_at.cmp(&b.first_at))
        });
        for f in findings {
            let meta = rules::find(f.rule_id).map(|r| r.meta);
            let _ = writeln!(
                o,
                "<li><strong>{title}</strong> ({when}{device}; {sev}, score {score})<br>{text}<br><span class=\"guide\">What to do: {guide}</span></li>",
                title = escape(meta.map(|m| m.title).unwrap_or(f.rule_id)),
                when = if local(tz, f.first_at, "%F") == local(tz, f.last_at, "%F") {
                    local(tz, f.first_at, "%a %-d %b %H:%M")
                } else {
                    format!("{} to {}", local(tz, f.first_at, "%a %-d %b %H:%M"), local(tz, f.last_at, "%a %-d %b %H:%M"))
                },
                device = f.device_id.as_deref().map(|d| format!(", device {}", escape(&short_device(d)))).unwrap_or_default(),
                sev = f.severity.name(),
                score = f.score,
                text = escape(&f.explanation),
                guide = escape(meta.map(|m| m.guide).unwrap_or("")),
            );
        }
        o.push_str("</ul>\n");
        if let Some(c) = &p.case {
            case_details(&mut o, c);
        }
        for (chart, file) in (charts.patient)(i, p)? {
            let id = file.trim_end_matches(".svg");
            figure(&mut o, &chart, id, &file);
        }
        o.push_str("</section>\n");
        out.write_all(o.as_bytes())?;
        o.clear();
    }

    o.push_str("<section class=\"patient\" aria-labelledby=\"run-heading\">\n<h2 id=\"run-heading\">The run</h2>\n");
    figure(
        &mut o,
        charts.findings_per_rule,
        "run-findings",
        "run-findings-per-rule.svg",
    );
    figure(
        &mut o,
        charts.events_per_day,
        "run-events",
        "run-events-per-day.svg",
    );
    let _ = write!(
        o,
        "</section>\n<section class=\"files\" aria-labelledby=\"files-heading\">\n<h2 id=\"files-heading\">Files for other tools</h2>\n<ul>\n<li><a href=\"{PATIENTS_CSV}\">{PATIENTS_CSV}</a>: one row per patient with a finding (including low risk)</li>\n<li><a href=\"{FINDINGS_CSV}\">{FINDINGS_CSV}</a> and <a href=\"{FINDINGS_PARQUET}\">{FINDINGS_PARQUET}</a>: every finding</li>\n<li><a href=\"{SUMMARY_JSON}\">{SUMMARY_JSON}</a>: the run's figures</li>\n<li><a href=\"charts/\">charts/</a>: the charts as SVG files</li>\n</ul>\n</section>\n</main>\n</body>\n</html>\n"
    );
    out.write_all(o.as_bytes())?;
    Ok(())
}

/// "New tonight" / "Flagged since 3 Nov (12 nights)": the case in brief, for the list.
fn case_brief(c: &CaseView) -> String {
    let since = match c.status {
        crate::cases::CaseStatus::New => "new tonight".to_string(),
        _ => format!(
            "{}: flagged since {} ({} nights)",
            c.status.words(),
            c.first_flagged.format("%-d %b"),
            c.nights_flagged
        ),
    };
    escape(&since)
}

/// The case's story on the patient's section: since when, and the last review in full.
fn case_details(o: &mut String, c: &CaseView) {
    let _ = writeln!(
        o,
        "<h3>Case {id}</h3>\n<p>{brief}. First flagged on {first}.</p>",
        id = escape(&c.case_id),
        brief = case_brief(c),
        first = c.first_flagged.format("%A %-d %B %Y"),
    );
    match &c.last_review {
        Some(r) => {
            let _ = writeln!(
                o,
                "<p>Last review: <strong>{outcome}</strong> by {by} on {night} (score {score} then){note}.</p>",
                outcome = r.outcome.words(),
                by = escape(&r.by),
                night = r.night.format("%-d %B %Y"),
                score = r.score,
                note = if r.note.is_empty() {
                    String::new()
                } else {
                    format!(": \u{201c}{}\u{201d}", escape(&r.note))
                },
            );
        }
        None => o.push_str("<p>Not reviewed yet.</p>\n"),
    }
}
