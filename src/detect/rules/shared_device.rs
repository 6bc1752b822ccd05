//! `shared_device`: a device that belongs with another patient's record, now used on this one.

use std::collections::BTreeMap;

use super::{counts, list_times, times, RuleMeta};
use crate::detect::{short_device, Context, Finding, PatientView, Session};

pub const ID: &str = "shared_device";

pub const META: RuleMeta = RuleMeta {
    id: ID,
    title: "Another patient's device used on this record",
    severity: "medium",
    detects: "A device that is established on another patient's record (their own phone, used there for weeks) has \
              started opening this patient's record, with no formal proxy access between the two.",
    benign_lookalikes: &[
        "a household tablet both partners have always used, each for their own record (not flagged: it is \
         established on both records)",
        "a parent with formal proxy access using their own device for a child (not flagged: the proxy is recorded)",
    ],
    guide: "The other patient is the likely owner of the device: treat their record as confidential and do not \
            contact them about this. Check whether they are a partner or family member of this patient. Speak to \
            this patient alone. If there is no recorded proxy and the patient did not share their login willingly, \
            consider a new password and the 104 code.",
};

pub fn detect(ctx: &Context, p: &PatientView) -> Vec<Finding> {
    let cfg = &ctx.cfg.shared_device;
    if !cfg.enabled {
        return Vec::new();
    }
    let min = ctx.cfg.established_device_sessions;
    let mut by_device: BTreeMap<&str, Vec<&Session>> = BTreeMap::new();
    for s in p.recent(ctx).filter(|s| counts(ctx, s)) {
        by_device.entry(s.device.as_str()).or_default().push(s);
    }
    let mut out = Vec::new();
    for (device, sessions) in by_device {
        // A user agent or an address stands for many people's devices: it cannot say whose device this is.
        if !crate::detect::is_identified_device(device) {
            continue;
        }
        let Some(history) = ctx.devices.get(device) else {
            continue;
        };
        // New on this record...
        if history
            .on
            .get(p.nhs)
            .is_some_and(|u| u.baseline_sessions > 0)
        {
            continue;
        }
        // ...and established on someone else's, where it is not itself a proxy's device.
        let owner = history.on.iter().find(|(other, u)| {
            other.as_str() != p.nhs && u.baseline_sessions >= min && u.non_proxy_sessions > 0
        });
        let Some((_, owner_use)) = owner else {
            continue;
        };
        let n = sessions.len();
        let household = sessions.iter().all(|s| ctx.household_device(p, s));
        let mut score = (cfg.base_score + cfg.per_session * (n as f64 - 1.0)).min(cfg.max_score);
        if household {
            score *= cfg.household_factor;
        }
        let explanation = format!(
            "A device ({}) that has been used on another patient's record since {} opened this patient's record {} \
             ({}). There is no formal proxy access recorded between them. Another person may be reading this \
             record from their own phone.",
            short_device(device),
            ctx.when(owner_use.first),
            times(n),
            list_times(ctx, &sessions),
        );
        out.push(Finding::new(
            p.nhs,
            ID,
            score,
            &sessions,
            Some(device),
            explanation,
        ));
    }
    out
}
