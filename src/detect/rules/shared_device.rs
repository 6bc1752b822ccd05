//! `shared_device`: a device that belongs with another patient's record, now used on this one.

use std::collections::{BTreeMap, BTreeSet};

use super::{counts, list_times, times, EvidenceKind, Needs, RuleMeta};
use crate::detect::baseline::{MIN_READS_TO_JUDGE, WATCHER_SHARE};
use crate::detect::{
    agent_at_address, is_agent_at_address, is_identified_device, short_device, Context, Finding,
    PatientView, Session, UA_KEY,
};

pub const ID: &str = "shared_device";
/// Without device ids, a phone model seen from one address on more records than this is not one household's phone.
const MAX_HOUSEHOLD_RECORDS: usize = 4;

pub const META: RuleMeta = RuleMeta {
    id: ID,
    title: "Another patient's device used on this record",
    severity: "medium",
    detects: "A device that is another patient's own (they use it to manage their own care) opens this patient's \
              record too, and here only reads, with no formal proxy access between the two. It counts however long \
              it has been going on, and however much of what it reads here is what the holder manages care with, \
              when it books or orders on the other record, never here, and the holder has a device of their own. \
              A phone of the model this patient books with, first used after theirs stopped, and booking nowhere \
              else, may be theirs under a new id, and is not counted here. \
              Without device ids, the same kind of device over the other patient's own connection stands in.",
    benign_lookalikes: &[
        "a household tablet both partners use, each for their own care (not flagged: it manages this patient's \
         care too)",
        "a parent with formal proxy access using their own device for a child (not flagged: the proxy is recorded)",
        "the patient's own phone with its app just reinstalled, having also read someone else's record (not flagged \
         here: that record's finding)",
    ],
    guide: "The other patient is the likely owner of the device: treat their record as confidential and do not \
            contact them about this. Check whether they are a partner or family member of this patient. Speak to \
            this patient alone. If there is no recorded proxy and the patient did not share their login willingly, \
            consider a new password and the 104 code.",
    kind: EvidenceKind::OtherRecord,
    needs: Needs::DeviceIdOrAgentWithAddress,
};

pub fn detect(ctx: &Context, p: &PatientView) -> Vec<Finding> {
    let cfg = &ctx.cfg.shared_device;
    if !cfg.enabled {
        return Vec::new();
    }
    // The sessions of each device, under the key it is followed across records by: its id, or in an export without
    // ids, its user agent with the address it was seen from.
    // The devices this record was read from over each address, gathered once (needed only without device ids).
    let mut devices_on: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    // Without ids, each user agent's reading visits over each address, and those that read like a watcher's.
    let mut reading_by: BTreeMap<(&str, &str), (usize, usize)> = BTreeMap::new();
    let without_ids = p.sessions.iter().any(|s| !is_identified_device(&s.device));
    for s in p.sessions.iter().filter(|_| without_ids) {
        if let Some(ip) = &s.ip {
            devices_on.entry(ip).or_default().insert(&s.device);
            let r = reading_by.entry((&s.device, ip)).or_default();
            r.0 += usize::from(s.holder_like() || s.watcher_like());
            r.1 += usize::from(s.watcher_like());
        }
    }
    // That kind of device over that address reads this record the way a watcher does: enough visits to judge, and
    // most of them reading nothing the holder manages care with.
    let reads_like_watcher_over = |device: &str, ip: &str| {
        reading_by
            .get(&(device, ip))
            .is_some_and(|&(reading, watcher)| {
                reading >= MIN_READS_TO_JUDGE && watcher as f64 >= WATCHER_SHARE * reading as f64
            })
    };
    let mut linked: BTreeMap<String, (&str, Vec<&Session>)> = BTreeMap::new();
    for s in p.sessions.iter().filter(|s| counts(ctx, s) && s.reads > 0) {
        let key = if is_identified_device(&s.device) {
            // The holder's own device, unless it is plainly another patient's phone that only reads here.
            if p.baseline.is_holders(&s.device)
                && (ctx.household_device(p, s) || !only_reads_here(ctx, p, &s.device, personal(s)))
            {
                continue;
            }
            s.device.to_string()
        } else if let (true, Some(ip)) = (s.device.starts_with(UA_KEY), &s.ip) {
            // On a connection this record's other devices use too (the holder's household), one household's phones
            // of one model cannot be told apart; nor, anywhere, can the holder's own model of phone managing their
            // care, or on the holder's home connection, unless that model over that connection is plainly another
            // patient's phone (as for a device id: it manages their care there, never books or orders here, and the
            // holder has a device of their own) that reads here the way a watcher does: its reading is then most of
            // this record's and taught the model its home. A tablet or computer there may be the household's, and
            // the holder's own phone of the same kind as their partner's, at home, reads their care.
            let shared_connection = devices_on
                .get(ip.as_ref())
                .is_some_and(|d| d.iter().any(|d| *d != &*s.device));
            let key = agent_at_address(&s.device, ip);
            if shared_connection
                || ((p.baseline.home_ip.as_deref() == Some(&**ip)
                    || (p.baseline.is_holders(&s.device) && s.holder_like()))
                    && !(personal(s)
                        && reads_like_watcher_over(&s.device, ip)
                        && only_reads_here_as(ctx, p, &s.device, &key, true)))
            {
                continue;
            }
            key
        } else {
            continue;
        };
        linked
            .entry(key)
            .or_insert_with(|| (s.device.as_ref(), Vec::new()))
            .1
            .push(s);
    }
    let mut out = Vec::new();
    for (key, (device, sessions)) in linked {
        let Some((_, owner_since)) = ctx.someone_elses_device(p.nhs, &key) else {
            continue;
        };
        if may_be_own_phone_renewed(ctx, p, &key) {
            continue;
        }
        let by_address = is_agent_at_address(&key);
        // A model and an address are not a device: once could be anyone of that model on that connection, and one
        // seen on more records than a household holds is a shared network's (a mobile carrier's, an office's).
        let records = ctx.devices.get(&key).map_or(0, |h| h.on.len());
        if by_address && (sessions.len() < 2 || records > MAX_HOUSEHOLD_RECORDS) {
            continue;
        }
        let n = sessions.len();
        let household = sessions.iter().all(|s| ctx.household_device(p, s));
        let mut score =
            (cfg.base_score + cfg.per_session * (n.min(8) as f64 - 1.0)).min(cfg.max_score);
        if household {
            score *= cfg.household_factor;
            // A family tablet that reads this record the way the holder does: each partner using it for their own
            // care. It stays on the record as weak evidence.
            if !p.baseline.reads_like_watcher(device) {
                score *= cfg.household_factor;
            }
        }
        // Without device ids the match is a kind of device and a connection: say so, without the address itself.
        let (which, over) = if by_address {
            ("The same kind of device", " over one internet connection")
        } else {
            ("A device", "")
        };
        let explanation = format!(
            "{which} ({}) that another patient has used for their own record{over} since {} opened this patient's \
             record {} ({}){}, only to read it. There is no formal proxy access recorded between them. Another person \
             may be reading this record from their own phone.",
            short_device(device),
            ctx.when(owner_since),
            times(n),
            list_times(ctx, &sessions),
            if by_address {
                " over that same connection, which this patient's own devices do not use"
            } else {
                ""
            },
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

/// A device taken for one of this patient's own (it reads the sections they manage care with) that is plainly
/// another patient's phone: on that patient's record it books, orders or writes to the practice, and on this one it
/// never does, while this patient has a device of their own besides. Reading the holder's sections is not ownership
/// when someone else demonstrably owns the device. (A household tablet over the home connection is left to the
/// household rule above: a couple's family tablet reads each partner's care sections.)
fn only_reads_here(ctx: &Context, p: &PatientView, device: &str, phone: bool) -> bool {
    only_reads_here_as(ctx, p, device, device, phone)
}

/// [`only_reads_here`] for a device known on this record as `device` and followed across records as `key` (without
/// device ids, its user agent from one address: see [`agent_at_address`]).
fn only_reads_here_as(
    ctx: &Context,
    p: &PatientView,
    device: &str,
    key: &str,
    phone: bool,
) -> bool {
    let here = p.baseline.devices.get(device);
    here.is_some_and(|u| u.owner_action_sessions == 0)
        && p.baseline.holder_devices.iter().any(|d| d != device)
        && ctx
            .used_elsewhere(p.nhs, key, |u| {
                u.owner_action_sessions > 0 || (phone && u.holder_sessions > 0)
            })
            .is_some()
}

/// A device that may be this patient's own phone under a new id, reinstalled too recently for
/// [`crate::detect::lineage`] to say so (the old id has not been silent long enough): it carries the user agent,
/// versions aside, of a device that booked, ordered or wrote to the practice on this record, and has used an address
/// that device used (on any record); it first appears on any record after that device's last use on any, within
/// [`MAX_GAP_DAYS`](crate::detect::lineage::MAX_GAP_DAYS); and on no other record does it book, order or write. Its
/// reading another record is then that record's finding: on this one it is not plainly another patient's device. A
/// partner's phone that is their own manages their care on their own record, and is still judged here.
fn may_be_own_phone_renewed(ctx: &Context, p: &PatientView, device: &str) -> bool {
    use crate::detect::lineage::{same_masked, MAX_GAP_DAYS};
    const DAY: i64 = 86_400_000_000;
    let Some(history) = ctx.devices.get(device) else {
        return false;
    };
    if !is_identified_device(device)
        || history
            .on
            .iter()
            .any(|(o, u)| o.as_ref() != p.nhs && u.owner_action_sessions > 0)
    {
        return false;
    }
    let Some(first) = history.on.iter().map(|(_, u)| u.first).min() else {
        return false;
    };
    // A device's user agent on this record, and the addresses it used on any record (the household's connection,
    // wherever the phone was used from it).
    let agent_here = |d: &str| {
        p.sessions
            .iter()
            .filter(|s| &*s.device == d)
            .find_map(|s| s.user_agent.as_deref())
    };
    let addresses = |d: &str| -> BTreeSet<&str> {
        ctx.devices.get(d).map_or_else(BTreeSet::new, |h| {
            h.on.iter()
                .flat_map(|(_, u)| u.ips.iter().map(|ip| &**ip))
                .collect()
        })
    };
    let Some(agent) = agent_here(device) else {
        return false;
    };
    let ips = addresses(device);
    p.baseline.holder_devices.iter().any(|d| {
        let books_here = p
            .baseline
            .devices
            .get(d.as_str())
            .is_some_and(|u| u.owner_action_sessions > 0);
        let last = ctx
            .devices
            .get(d.as_str())
            .and_then(|h| h.on.iter().map(|(_, u)| u.last).max());
        d != device
            && books_here
            && last.is_some_and(|last| last < first && first - last <= MAX_GAP_DAYS * DAY)
            && agent_here(d).is_some_and(|a| same_masked(a, agent))
            && {
                let their_ips = addresses(d);
                (ips.is_empty() && their_ips.is_empty()) || !ips.is_disjoint(&their_ips)
            }
    })
}

/// A session on a phone, by its user agent: a personal device, unlike a family tablet or computer.
fn personal(s: &Session) -> bool {
    s.user_agent.is_some() && !crate::detect::is_household_class(s.user_agent.as_deref())
}
