//! `access_during_appointment`: the record opened while the patient was at a face-to-face appointment.

use super::{counts, EvidenceKind, Needs, RuleMeta};
use crate::detect::{short_device, Context, Finding, PatientView, Session};

pub const ID: &str = "access_during_appointment";

pub const META: RuleMeta = RuleMeta {
    id: ID,
    title: "Opened while the patient was in the surgery",
    severity: "medium",
    detects: "While the patient was at an attended face-to-face appointment, their record was opened from a device \
              other than the one they usually carry, or over their household internet connection.",
    benign_lookalikes: &[
        "a patient checking the app on their own phone in the waiting room (not flagged: own phone, away from home)",
        "a patient reading the record after the appointment (not flagged: outside the appointment)",
    ],
    guide: "The patient could not have been using a device at home at that time. Ask who else is at home and who \
            knows their NHS login or can use their devices. Consider a new password and the 104 code.",
    kind: EvidenceKind::Presence,
    needs: Needs::DeviceOrAddress,
};

pub fn detect(ctx: &Context, p: &PatientView) -> Vec<Finding> {
    let cfg = &ctx.cfg.access_during_appointment;
    let Some(visits) = ctx.visits.get(p.nhs) else {
        return Vec::new();
    };
    let Some(carried) = p.baseline.primary_device.as_deref() else {
        return Vec::new();
    };
    if !cfg.enabled {
        return Vec::new();
    }
    let mut hits: Vec<(String, &Session, f64)> = Vec::new();
    for v in visits
        .iter()
        .filter(|v| v.starts_at >= ctx.lookback_start && v.starts_at < ctx.end)
    {
        for s in p
            .sessions
            .iter()
            .filter(|s| s.start <= v.ends_at && s.end >= v.starts_at && counts(ctx, s))
        {
            let at_home = s.ip.is_some() && s.ip.as_deref() == p.baseline.home_ip.as_deref();
            let other_device = &*s.device != carried;
            if !(at_home || other_device) {
                continue;
            }
            let how = match (other_device, at_home) {
                (true, true) => format!("from the household internet connection, on a device ({}) other than the one they usually carry", short_device(&s.device)),
                (true, false) => format!("on a device ({}) other than the one they usually carry", short_device(&s.device)),
                _ => "from the household internet connection".to_string(),
            };
            hits.push((
                format!(
                    "While the patient was at a face-to-face appointment ({} to {}), their record was opened {}.",
                    ctx.when(v.starts_at),
                    ctx.local(v.ends_at).format("%H:%M"),
                    how
                ),
                s,
                // The carried phone on the home connection may be a booking time that does not match the visit.
                if other_device { 1.0 } else { cfg.carried_device_at_home_factor },
            ));
        }
    }
    if hits.is_empty() {
        return Vec::new();
    }
    let visits_hit = hits
        .iter()
        .map(|h| h.0.clone())
        .collect::<std::collections::BTreeSet<_>>();
    let weight = hits.iter().map(|h| h.2).fold(0.0, f64::max);
    let score = (cfg.base_score + cfg.per_visit * (visits_hit.len() as f64 - 1.0))
        .min(cfg.max_score)
        * weight;
    let sessions: Vec<&Session> = hits.iter().map(|h| h.1).collect();
    let device = sessions.first().map(|s| s.device.as_ref());
    let mut text: Vec<String> = visits_hit.into_iter().collect();
    text.push("The patient was in the surgery, so someone else was using their login.".into());
    vec![Finding::new(
        p.nhs,
        ID,
        score,
        &sessions,
        device,
        text.join(" "),
    )]
}
