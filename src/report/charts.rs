//! The report's charts, drawn with plotters as SVG text: readable in greyscale (shapes and fills, not colours,
//! carry the meaning), with labelled axes. Each chart comes with a text alternative for the page.

use chrono::{DateTime, Datelike, NaiveDate};
use chrono_tz::Tz;
use plotters::prelude::*;

use super::chart_data::{PatientChart, RunCharts};
use crate::cases::CaseView;
use crate::detect::short_device;

const DAY: f64 = 86_400_000_000.0;
const GREY: RGBColor = RGBColor(150, 150, 150);
const LIGHT: RGBColor = RGBColor(225, 225, 225);

/// An SVG and the sentence a screen reader (or a printout without images) gets instead.
pub struct Chart {
    pub svg: String,
    pub alt: String,
}

type DrawResult<T> = Result<T, Box<dyn std::error::Error>>;

fn day_label(tz: Tz, micros: f64) -> String {
    DateTime::from_timestamp_micros(micros as i64)
        .unwrap_or_default()
        .with_timezone(&tz)
        .format("%-d %b")
        .to_string()
}

/// Record views by device over the last six weeks, against sensitive entries, visits and restrictions.
pub fn patient_timeline(p: &PatientChart, runs: &RunCharts, tz: Tz) -> DrawResult<Chart> {
    let x1 = runs.end as f64;
    let x0 = (runs.end as f64 - 42.0 * DAY).max(runs.lookback_start as f64);
    let mut devices: Vec<&str> = Vec::new();
    for (_, d) in &p.sessions {
        if !devices.contains(&d.as_ref()) {
            devices.push(d);
        }
    }
    let rows = devices.len() as f64 + 1.0;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (860, 230 + 28 * devices.len() as u32))
            .into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Record opened, by device (last 6 weeks)",
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(120)
            // Room above the rows for the legend.
            .build_cartesian_2d(x0..x1, -0.5..rows + 2.5)?;
        let labels: Vec<String> = std::iter::once("surgery visits".to_string())
            .chain(devices.iter().map(|d| short_device(d)))
            .collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_labels(7)
            .x_label_formatter(&|x| day_label(tz, *x))
            .y_labels((labels.len() + 3) * 4)
            .y_label_formatter(&|y| {
                let i = y.round();
                if (y - i).abs() < 0.01 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc("date")
            .draw()?;
        // Restriction periods: grey bands across every row.
        for (from, until) in &p.restrictions {
            let a = (*from as f64).max(x0);
            let b = until.map(|u| u as f64).unwrap_or(x1).min(x1);
            if b > a {
                chart
                    .draw_series([Rectangle::new([(a, -0.5), (b, rows - 0.5)], LIGHT.filled())])?
                    .label("104 restriction in force")
                    .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], LIGHT.filled()));
            }
        }
        // The recent window the findings are about.
        chart.draw_series([PathElement::new(
            vec![
                (runs.recent_start as f64, -0.5),
                (runs.recent_start as f64, rows - 0.5),
            ],
            GREY.stroke_width(1),
        )])?;
        // Sensitive entries: dashed vertical lines, marked by a triangle at the top.
        for (at, _) in p.sensitive.iter().filter(|(t, _)| (*t as f64) >= x0) {
            let x = *at as f64;
            let mut y = -0.5;
            while y < rows - 0.5 {
                chart.draw_series([PathElement::new(
                    vec![(x, y), (x, (y + 0.25).min(rows - 0.5))],
                    BLACK.stroke_width(1),
                )])?;
                y += 0.5;
            }
        }
        chart
            .draw_series(
                p.sensitive
                    .iter()
                    .filter(|(t, _)| (*t as f64) >= x0)
                    .map(|(t, _)| TriangleMarker::new((*t as f64, rows - 0.75), 7, BLACK.filled())),
            )?
            .label("sensitive entry became visible")
            .legend(|(x, y)| TriangleMarker::new((x + 6, y), 6, BLACK.filled()));
        chart
            .draw_series(
                p.visits
                    .iter()
                    .filter(|(s, _)| (*s as f64) >= x0)
                    .map(|(s, e)| {
                        Rectangle::new(
                            [
                                (*s as f64, -0.3),
                                ((*e as f64).max(*s as f64 + DAY / 6.0), 0.3),
                            ],
                            BLACK.filled(),
                        )
                    }),
            )?
            .label("face-to-face visit")
            .legend(|(x, y)| Rectangle::new([(x, y - 4), (x + 12, y + 4)], BLACK.filled()));
        let row = |d: &str| {
            devices
                .iter()
                .position(|x| *x == d)
                .map(|i| i as f64 + 1.0)
                .unwrap_or(0.0)
        };
        chart
            .draw_series(
                p.sessions
                    .iter()
                    .filter(|(t, _)| (*t as f64) >= x0 && !p.evidence.contains(t))
                    .map(|(t, d)| Circle::new((*t as f64, row(d)), 4, GREY.stroke_width(1))),
            )?
            .label("session")
            .legend(|(x, y)| Circle::new((x + 6, y), 4, GREY.stroke_width(1)));
        chart
            .draw_series(
                p.sessions
                    .iter()
                    .filter(|(t, _)| (*t as f64) >= x0 && p.evidence.contains(t))
                    .map(|(t, d)| {
                        Rectangle::new(
                            [
                                ((*t as f64) - DAY / 10.0, row(d) - 0.25),
                                ((*t as f64) + DAY / 10.0, row(d) + 0.25),
                            ],
                            BLACK.filled(),
                        )
                    }),
            )?
            .label("session behind a finding")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], BLACK.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(GREY)
            .label_font(("sans-serif", 11))
            .draw()?;
        root.present()?;
    }
    let in_view = p.sessions.iter().filter(|(t, _)| (*t as f64) >= x0).count();
    let flagged = p
        .sessions
        .iter()
        .filter(|(t, _)| (*t as f64) >= x0 && p.evidence.contains(t))
        .count();
    let alt = format!(
        "Timeline of the last six weeks: {in_view} sessions on {} device(s), {flagged} of them behind a finding; {} \
         sensitive entr{} became visible; {} face-to-face visit(s); {} restriction period(s). The vertical grey line \
         marks the start of the recent window.",
        devices.len(),
        p.sensitive.iter().filter(|(t, _)| (*t as f64) >= x0).count(),
        if p.sensitive.len() == 1 { "y" } else { "ies" },
        p.visits.iter().filter(|(s, _)| (*s as f64) >= x0).count(),
        p.restrictions.len(),
    );
    Ok(Chart { svg, alt })
}

/// The patient's usual hours (bars) against the hours of the sessions behind findings (black markers).
pub fn patient_hours(p: &PatientChart, tz: Tz) -> DrawResult<Chart> {
    let mut flagged = [0u32; 24];
    for t in &p.evidence {
        use chrono::Timelike;
        let h = DateTime::from_timestamp_micros(*t)
            .unwrap_or_default()
            .with_timezone(&tz)
            .hour();
        flagged[h as usize] += 1;
    }
    let top = p.hour_share.iter().fold(0.0f64, |a, b| a.max(*b)).max(0.05) * 100.0 * 1.25;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (860, 260)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Hour of day: usual use against flagged sessions",
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..24f64, 0f64..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(13)
            .x_label_formatter(&|x| format!("{:02}:00", *x as u32))
            .y_desc("% of usual sessions")
            .x_desc("hour of day (practice time)")
            .draw()?;
        chart
            .draw_series(p.hour_share.iter().enumerate().map(|(h, s)| {
                Rectangle::new(
                    [(h as f64 + 0.1, 0.0), (h as f64 + 0.9, s * 100.0)],
                    GREY.filled(),
                )
            }))?
            .label("usual share of sessions")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], GREY.filled()));
        chart
            .draw_series(
                flagged
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(h, n)| {
                        TriangleMarker::new(
                            (h as f64 + 0.5, (top * 0.08 * f64::from(*n)).min(top * 0.95)),
                            8,
                            BLACK.filled(),
                        )
                    }),
            )?
            .label("session behind a finding (higher = more)")
            .legend(|(x, y)| TriangleMarker::new((x + 6, y), 6, BLACK.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(GREY)
            .label_font(("sans-serif", 11))
            .draw()?;
        root.present()?;
    }
    let hours: Vec<String> = flagged
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(h, n)| format!("{h:02}:00 ({n})"))
        .collect();
    let alt =
        format!(
        "Hour-of-day chart. The patient's usual use: {}. Sessions behind findings started at: {}.",
        p.usual_hours,
        if hours.is_empty() { "none".to_string() } else { hours.join(", ") }
    );
    Ok(Chart { svg, alt })
}

/// Findings per rule for the run (horizontal bars).
pub fn findings_per_rule(counts: &[(&str, u64)]) -> DrawResult<Chart> {
    let max = counts.iter().map(|c| c.1).max().unwrap_or(0).max(1) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (860, 60 + 30 * counts.len() as u32))
            .into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Findings per rule", ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(230)
            .build_cartesian_2d(0f64..max * 1.1, -0.5..counts.len() as f64 - 0.5)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(counts.len())
            .y_label_formatter(&|y| {
                let i = y.round();
                if (y - i).abs() < 0.01 && i >= 0.0 {
                    counts
                        .get(i as usize)
                        .map(|c| c.0.to_string())
                        .unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc("findings")
            .draw()?;
        chart.draw_series(counts.iter().enumerate().map(|(i, (_, n))| {
            Rectangle::new(
                [(0.0, i as f64 - 0.3), (*n as f64, i as f64 + 0.3)],
                GREY.filled(),
            )
        }))?;
        root.present()?;
    }
    let alt = format!(
        "Findings per rule: {}.",
        counts
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Chart { svg, alt })
}

/// Audit events per day over the look-back.
pub fn events_per_day(runs: &RunCharts) -> DrawResult<Chart> {
    let points: Vec<(f64, f64)> = runs
        .events_per_day
        .iter()
        .map(|(d, n)| {
            (
                d.and_hms_opt(12, 0, 0)
                    .unwrap_or_default()
                    .and_utc()
                    .timestamp_micros() as f64,
                *n as f64,
            )
        })
        .collect();
    let max = points.iter().map(|p| p.1).fold(1.0, f64::max);
    let (x0, x1) = (runs.lookback_start as f64, runs.end as f64);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (860, 260)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Record-access events per day", ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, 0f64..max * 1.1)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&|x| {
                DateTime::from_timestamp_micros(*x as i64)
                    .unwrap_or_default()
                    .format("%-d %b")
                    .to_string()
            })
            .y_desc("events")
            .x_desc("date")
            .draw()?;
        chart.draw_series(LineSeries::new(
            points.iter().copied(),
            BLACK.stroke_width(2),
        ))?;
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 2, BLACK.filled())))?;
        root.present()?;
    }
    let total: f64 = points.iter().map(|p| p.1).sum();
    let alt = format!(
        "Events per day over {} days with data: {} in all, at most {} in a day.",
        points.len(),
        total as u64,
        max as u64
    );
    Ok(Chart { svg, alt })
}

/// The medium threshold's line on the nights chart: amber.
const MEDIUM_LINE: RGBColor = RGBColor(190, 120, 0);
/// The high threshold's line on the nights chart: red.
const HIGH_LINE: RGBColor = RGBColor(190, 30, 30);

/// A patient's risk score over the last 30 nights that have a case file, with the medium and high thresholds as
/// labelled lines (amber and red) and each review as a labelled mark on its night.
///
/// The thresholds are solid: plotters draws a dashed line as one SVG element per dash, about 110 per line, which
/// made this chart 41 kB (mostly dashes) and a large run's charts and page hundreds of megabytes larger.
pub fn patient_nights(case: &CaseView, medium: f64, high: f64) -> DrawResult<Chart> {
    let x = |d: NaiveDate| d.num_days_from_ce() as f64;
    let (first, last) = match (case.scores.first(), case.scores.last()) {
        (Some(a), Some(b)) => (x(a.0), x(b.0)),
        _ => (0.0, 1.0),
    };
    let (x0, x1) = (first - 0.5, last.max(first + 1.0) + 0.5);
    let points: Vec<(f64, f64)> = case
        .scores
        .iter()
        .map(|(d, s)| (x(*d), *s as f64))
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (860, 220)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Risk score on each night", ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(x0..x1, 0f64..100f64)?;
        chart
            .configure_mesh()
            .x_labels(8)
            // Dates on whole nights with a score only: the axis also puts ticks between nights, and a chart of one
            // night read "22 Nov, 22 Nov, 23 Nov, 23 Nov" (each tick rounded to its nearest night).
            .x_label_formatter(&|v| {
                let night = v.round();
                if (v - night).abs() > 1e-6 || night < first || night > last {
                    return String::new();
                }
                NaiveDate::from_num_days_from_ce_opt(night as i32)
                    .map(|d| d.format("%-d %b").to_string())
                    .unwrap_or_default()
            })
            .y_desc("risk score")
            .draw()?;
        for (level, name, colour) in [(medium, "medium", MEDIUM_LINE), (high, "high", HIGH_LINE)] {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x0, level), (x1, level)],
                colour.stroke_width(1),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                name,
                (x0 + 0.1, level + 2.0),
                ("sans-serif", 11),
            )))?;
        }
        chart.draw_series(LineSeries::new(
            points.iter().copied(),
            BLACK.stroke_width(2),
        ))?;
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, BLACK.filled())))?;
        if let Some(r) = &case.last_review {
            let rx = x(r.night);
            if rx >= x0 && rx <= x1 {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(rx, 0.0), (rx, 100.0)],
                    BLACK.stroke_width(1),
                )))?;
                chart.draw_series(std::iter::once(Text::new(
                    format!("reviewed: {}", r.outcome.words()),
                    (rx + 0.1, 95.0),
                    ("sans-serif", 11),
                )))?;
            }
        }
        root.present()?;
    }
    let flagged_nights = case
        .scores
        .iter()
        .filter(|(_, s)| *s as f64 >= medium)
        .count();
    let review = case
        .last_review
        .as_ref()
        .map(|r| {
            format!(
                " Last review on {}: {}.",
                r.night.format("%-d %b"),
                r.outcome.words()
            )
        })
        .unwrap_or_default();
    let alt = format!(
        "Risk score over {} nights: flagged on {} of them, tonight {}.{review}",
        case.scores.len(),
        flagged_nights,
        case.scores.last().map(|s| s.1).unwrap_or(0),
    );
    Ok(Chart { svg, alt })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cases::CaseStatus;

    fn case(nights: u32) -> CaseView {
        let first = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or_default();
        CaseView {
            case_id: "C-1".into(),
            status: CaseStatus::New,
            first_flagged: first,
            nights_flagged: nights,
            last_review: None,
            suppressed: false,
            scores: (0..nights)
                .map(|i| (first + chrono::Duration::days(i64::from(i)), 40 + i))
                .collect(),
        }
    }

    /// The texts of an SVG's `<text>` elements.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                Some(
                    t.split_once('>')?
                        .1
                        .split_once("</text>")?
                        .0
                        .trim()
                        .to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn the_nights_chart_labels_each_night_at_most_once_and_only_nights_with_a_score() {
        for (nights, want) in [(1, 1), (2, 2), (8, 8), (30, 8)] {
            let case = case(nights);
            let chart = patient_nights(&case, 30.0, 60.0).unwrap();
            let dates: Vec<String> = texts(&chart.svg)
                .into_iter()
                .filter(|t| t.ends_with(" Nov") || t.ends_with(" Oct") || t.ends_with(" Dec"))
                .collect();
            let scored: Vec<String> = case
                .scores
                .iter()
                .map(|(d, _)| d.format("%-d %b").to_string())
                .collect();
            let mut distinct = dates.clone();
            distinct.dedup();
            assert_eq!(distinct, dates, "{nights} nights: {dates:?}");
            assert!(
                dates.len() <= want && dates.len() >= want.min(4),
                "{nights} nights: {dates:?}"
            );
            assert!(
                dates.iter().all(|d| scored.contains(d)),
                "{nights} nights: {dates:?}"
            );
        }
    }

    #[test]
    fn each_threshold_on_the_nights_chart_is_one_line_in_its_own_colour() {
        for nights in [1, 30] {
            let chart = patient_nights(&case(nights), 30.0, 60.0).unwrap();
            for colour in [MEDIUM_LINE, HIGH_LINE] {
                let stroke = format!(
                    "stroke=\"#{:02X}{:02X}{:02X}\"",
                    colour.0, colour.1, colour.2
                );
                assert_eq!(
                    chart.svg.matches(&stroke).count(),
                    1,
                    "{stroke} on {nights} nights"
                );
            }
            for label in ["medium", "high", "Risk score on each night"] {
                assert!(chart.svg.contains(label), "{label}");
            }
        }
    }
}
