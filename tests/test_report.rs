//! `report.html` and `charts/`: the page's structure and content for a known run, escaping of hostile input,
//! the SVG charts as text, and the page rendered by headless Chromium to PNG and PDF.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sample_data");

/// Runs the nightly job on a copy of the sample (with `edit` applied to its audit file) and returns the run folder.
fn sample_run(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    for e in std::fs::read_dir(SAMPLE).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let name = p.file_name().unwrap();
        let text = if name == "audit.csv" {
            edit(text)
        } else {
            text
        };
        std::fs::write(inbox.join(name), text).unwrap();
    }
    let cfg = write(
        dir,
        "c.toml",
        "inbox = \"inbox\"\nstore = \"store\"\nreports = \"reports\"\n",
    );
    let r = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "run",
        "--as-of",
        "2026-11-22",
    ]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .trim_end()
            .ends_with("reports/2026-11-22/report.html"),
        "{}",
        r.stdout
    );
    dir.join("reports/2026-11-22")
}

fn flagged_count(run_dir: &Path) -> usize {
    let mut r = csv::Reader::from_path(run_dir.join("patients.csv")).unwrap();
    r.records()
        .filter(|x| x.as_ref().unwrap()[2] != *"low")
        .count()
}

/// The page's headings, in order, tags stripped: its outline.
fn outline(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(i) = rest.find("<h") {
        let tag = &rest[i..];
        let Some(level) = tag.chars().nth(2).filter(|c| c.is_ascii_digit()) else {
            rest = &rest[i + 2..];
            continue;
        };
        let close = format!("</h{level}>");
        let start = tag.find('>').unwrap() + 1;
        let end = tag.find(&close).unwrap();
        let mut text = String::new();
        let mut in_tag = false;
        for c in tag[start..end].chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        out.push_str(&format!(
            "{}{}\n",
            "  ".repeat(level.to_digit(10).unwrap() as usize - 1),
            text
        ));
        rest = &tag[end..];
    }
    out
}

#[test]
fn the_page_lists_flagged_patients_most_urgent_first_with_reasons_and_charts() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = sample_run(dir.path(), |t| t);
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    let flagged = flagged_count(&run_dir);
    assert!(flagged >= 5);

    assert!(html.starts_with("<!doctype html>\n<html lang=\"en\">"));
    assert!(html.contains("CONFIDENTIAL"));
    assert!(!html.to_lowercase().contains("<script"), "no JavaScript");
    assert!(
        !html.contains("http://") && !html.contains("https://")
            || html.matches("http://www.w3.org/2000/svg").count() == html.matches("http").count(),
        "no network references"
    );
    assert_golden("report_outline.txt", &outline(&html));
    assert_eq!(
        html.matches("<section class=\"patient\" id=\"patient-")
            .count(),
        flagged
    );
    // Accessible: table headers, every chart named by its caption.
    assert!(html.contains("<th scope=\"col\">NHS number</th>"));
    let figures = html.matches("<figure>").count();
    // Per patient: the timeline, the hours, and the score over the last 30 nights; then the run's two.
    assert_eq!(figures, 3 * flagged + 2);
    assert_eq!(
        html.matches("role=\"img\" aria-labelledby=").count(),
        figures
    );
    assert_eq!(html.matches("<figcaption id=").count(), figures);
    // Links to the CSV exports are relative.
    for f in [
        "patients.csv",
        "findings.csv",
        "findings.parquet",
        "summary.json",
        "charts/",
    ] {
        assert!(html.contains(&format!("href=\"{f}\"")), "{f}");
    }
    // Every finding's explanation and its guide are on the page.
    let mut r = csv::Reader::from_path(run_dir.join("findings.csv")).unwrap();
    let flagged_nhs: Vec<String> = csv::Reader::from_path(run_dir.join("patients.csv"))
        .unwrap()
        .records()
        .map(|x| x.unwrap())
        .filter(|x| &x[2] != "low")
        .map(|x| x[0].to_string())
        .collect();
    for rec in r.records() {
        let rec = rec.unwrap();
        if flagged_nhs.contains(&rec[1].to_string()) {
            let explanation = accesswatch::report::html::escape(&rec[9]);
            assert!(html.contains(&explanation), "missing: {}", &rec[9]);
        }
    }
    assert!(html.contains("What to do:"));

    // The charts: a timeline, an hour chart and a score-per-night chart per flagged patient, named by rank, and the
    // run's two.
    let charts: Vec<String> = std::fs::read_dir(run_dir.join("charts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(charts.len(), 3 * flagged + 2);
    let ids = identifiers_in(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sample_data"
    )));
    for name in &charts {
        assert!(
            !ids.iter().any(|id| name.contains(id.as_str())),
            "chart files are not named by NHS number or device: {name}"
        );
        let svg = std::fs::read_to_string(run_dir.join("charts").join(name)).unwrap();
        assert!(
            svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"),
            "{name}"
        );
        assert!(svg.contains("<text"), "{name} has labels");
    }
    let timeline = std::fs::read_to_string(run_dir.join("charts/patient-01-timeline.svg")).unwrap();
    for label in [
        "Record opened, by device",
        "date",
        "surgery visits",
        "session behind a finding",
    ] {
        assert!(timeline.contains(label), "{label}");
    }
    let hours = std::fs::read_to_string(run_dir.join("charts/patient-01-hours.svg")).unwrap();
    for label in [
        "hour of day (practice time)",
        "% of usual sessions",
        "12:00",
    ] {
        assert!(hours.contains(label), "{label}");
    }
    let nights = std::fs::read_to_string(run_dir.join("charts/patient-01-nights.svg")).unwrap();
    for label in ["Risk score on each night", "risk score", "22 Nov"] {
        assert!(nights.contains(label), "{label}");
    }
    let per_rule =
        std::fs::read_to_string(run_dir.join("charts/run-findings-per-rule.svg")).unwrap();
    for rule in accesswatch::detect::rules::CATALOGUE.iter() {
        assert!(per_rule.contains(rule.meta.id));
    }
}

#[test]
fn input_text_can_never_inject_markup() {
    let dir = tempfile::tempdir().unwrap();
    // Find a device behind a finding in the plain sample, then give it a hostile id.
    let plain = sample_run(&dir.path().join("plain"), |t| t);
    // A device behind a finding of a flagged patient: the page shows only flagged patients.
    let flagged: Vec<String> = csv::Reader::from_path(plain.join("patients.csv"))
        .unwrap()
        .records()
        .map(|x| x.unwrap())
        .filter(|x| &x[2] != "low")
        .map(|x| x[0].to_string())
        .collect();
    let mut r = csv::Reader::from_path(plain.join("findings.csv")).unwrap();
    let device = r
        .records()
        .map(|x| x.unwrap())
        .find(|x| !x[7].is_empty() && flagged.iter().any(|n| n == &x[1]))
        .map(|x| x[7].to_string())
        .unwrap();
    let hostile = "<img src=x onerror=alert(1)>";
    let run_dir = sample_run(&dir.path().join("hostile"), |t| t.replace(&device, hostile));
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(
        !html.contains("<img"),
        "markup from the input must be escaped"
    );
    assert!(
        html.contains("&lt;img src=x"),
        "the hostile id is shown (shortened), escaped"
    );
    for e in std::fs::read_dir(run_dir.join("charts")).unwrap() {
        let svg = std::fs::read_to_string(e.unwrap().path()).unwrap();
        assert!(!svg.contains("<img"));
    }
}

#[test]
fn a_night_with_nothing_flagged_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("reports");
    let r = run(&[
        "detect",
        "--store",
        dir.path().join("empty").to_str().unwrap(),
        "--as-of",
        "2026-11-22",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let html = std::fs::read_to_string(out.join("2026-11-22/report.html")).unwrap();
    assert!(html.contains("No patient was flagged in this run."));
    assert!(out
        .join("2026-11-22/charts/run-events-per-day.svg")
        .exists());
}

#[test]
fn the_page_renders_in_headless_chromium_to_png_and_pdf() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = sample_run(dir.path(), |t| t);
    let url = format!("file://{}", run_dir.join("report.html").display());
    let png = dir.path().join("report.png");
    let pdf = dir.path().join("report.pdf");
    let out = headless(&dir.path().join("profile-a"))
        .args([
            "--window-size=1200,2000",
            &format!("--screenshot={}", png.display()),
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = headless(&dir.path().join("profile-b"))
        .args([&format!("--print-to-pdf={}", pdf.display()), &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let png_bytes = std::fs::read(&png).unwrap();
    assert!(png_bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(
        png_bytes.len() > 50_000,
        "a screenshot of a real page, not a blank: {} bytes",
        png_bytes.len()
    );
    let pdf_bytes = std::fs::read(&pdf).unwrap();
    assert!(pdf_bytes.starts_with(b"%PDF"));
    // One page per flagged patient at least (print CSS breaks pages between patients). Page objects are
    // `/Type /Page` (not `/Pages`), however the writer spaces them.
    let text = String::from_utf8_lossy(&pdf_bytes).replace("/Type /", "/Type/");
    let pages = text
        .match_indices("/Type/Page")
        .filter(|(i, _)| !text[i + 10..].starts_with('s'))
        .count();
    assert!(
        pages > flagged_count(&run_dir),
        "{pages} pages for {} flagged patients",
        flagged_count(&run_dir)
    );
}
