//! Every rule fires on its pattern and stays quiet on its benign look-alike, on small crafted practices ingested
//! into a real store. Times are local (London, GMT in November: local = UTC). The as-of date is 22 Nov 2026, so
//! the recent window is 9-22 Nov and the baseline is everything before.

mod common;

use std::fmt::Write as _;

use accesswatch::config::{Config, Overrides};
use accesswatch::context::catalogue::SensitiveCatalogue;
use accesswatch::detect::scoring::{combine, group_score};
use accesswatch::detect::{self, Finding};
use chrono::NaiveDate;
use common::*;

const PHONE: &str = "NHSApp/2.41.0 (iPhone; iOS 18.1)";
const TABLET: &str = "NHSApp/2.41.0 (iPad; iPadOS 18.0)";
const HOME_A: &str = "81.1.1.1";
const HOME_B: &str = "86.2.2.2";

#[derive(Default)]
struct Practice {
    audit: String,
    entries: String,
    appointments: String,
    proxies: String,
    sessions: usize,
}

impl Practice {
    /// A session: login, then one view per section a minute apart.
    #[allow(clippy::too_many_arguments)]
    fn session(
        &mut self,
        nhs: &str,
        account: &str,
        device: &str,
        ua: &str,
        ip: &str,
        at: &str,
        sections: &[&str],
    ) -> &mut Self {
        self.sessions += 1;
        let sid = format!("s{}", self.sessions);
        let t = chrono::NaiveDateTime::parse_from_str(at, "%Y-%m-%d %H:%M").unwrap();
        let role = if account.starts_with("proxy") {
            "proxy"
        } else {
            "patient"
        };
        let mut row = |t: chrono::NaiveDateTime, action: &str, section: &str| {
            let _ = writeln!(
                self.audit,
                ",{},{nhs},{account},{role},{device},{ua},{ip},nhs_app,{sid},{action},{section},success",
                t.format("%Y-%m-%d %H:%M:%S")
            );
        };
        row(t, "login", "");
        for (i, s) in sections.iter().enumerate() {
            row(t + chrono::Duration::minutes(i as i64 + 1), "view", s);
        }
        self
    }

    fn action(
        &mut self,
        nhs: &str,
        account: &str,
        device: &str,
        at: &str,
        action: &str,
    ) -> &mut Self {
        self.sessions += 1;
        let _ = writeln!(self.audit, ",{at}:00,{nhs},{account},patient,{device},{PHONE},{HOME_A},nhs_app,s{},{action},,success", self.sessions);
        self
    }

    /// A sign-in refused on `device`.
    fn refused(&mut self, nhs: &str, device: &str, at: &str) -> &mut Self {
        self.sessions += 1;
        let _ = writeln!(self.audit, ",{at}:00,{nhs},acct-a,patient,{device},{PHONE},{HOME_A},nhs_app,s{},login_failed,,failure", self.sessions);
        self
    }

    /// The patient's habit: a session on their own phone every `every` days at `hour`, from `from` to `to`.
    #[allow(clippy::too_many_arguments)]
    fn habit(
        &mut self,
        nhs: &str,
        account: &str,
        device: &str,
        ua: &str,
        ip: &str,
        days: (u32, u32),
        every: u32,
        hour: u32,
    ) -> &mut Self {
        let start = NaiveDate::from_ymd_opt(2026, 9, 28).unwrap();
        let mut d = days.0;
        while d <= days.1 {
            let day = start + chrono::Duration::days(i64::from(d));
            self.session(
                nhs,
                account,
                device,
                ua,
                ip,
                &format!("{day} {hour:02}:{:02}", (d * 7) % 50),
                &["summary", "appointments", "medications"],
            );
            d += every;
        }
        self
    }

    fn entry(&mut self, nhs: &str, id: &str, at: &str, code: &str, term: &str) -> &mut Self {
        let _ = writeln!(
            self.entries,
            "{id},{nhs},{at}:00,{code},{term},problems,true"
        );
        self
    }

    fn visit(&mut self, nhs: &str, id: &str, from: &str, to: &str) -> &mut Self {
        let _ = writeln!(
            self.appointments,
            "{id},{nhs},{from}:00,{to}:00,face_to_face,attended"
        );
        self
    }

    fn proxy(&mut self, child: &str, account: &str) -> &mut Self {
        let _ = writeln!(
            self.proxies,
            "{child},{account},,parent,2025-01-01 09:00:00,"
        );
        self
    }

    fn detect(&self) -> Vec<Finding> {
        self.detection().findings
    }

    /// The whole detection: findings, patients' risk and the run's figures.
    fn detection(&self) -> detect::Detection {
        let dir = tempfile::tempdir().unwrap();
        let mut files = vec![write(
            dir.path(),
            "audit.csv",
            &format!("{AUDIT_HEADER}\n{}", self.audit),
        )];
        if !self.entries.is_empty() {
            files.push(write(
                dir.path(),
                "entries.csv",
                &format!(
                    "entry_id,nhs_number,recorded_at,code,term,section,visible_online\n{}",
                    self.entries
                ),
            ));
        }
        if !self.appointments.is_empty() {
            files.push(write(
                dir.path(),
                "appointments.csv",
                &format!(
                    "appointment_id,nhs_number,starts_at,ends_at,mode,status\n{}",
                    self.appointments
                ),
            ));
        }
        if !self.proxies.is_empty() {
            files.push(write(dir.path(), "proxies.csv", &format!("nhs_number,proxy_account_id,proxy_nhs_number,relationship,granted_at,revoked_at\n{}", self.proxies)));
        }
        let store = dir.path().join("store");
        let config = Config::load(
            None,
            &Overrides {
                store: Some(store.clone()),
                ..Default::default()
            },
        )
        .unwrap();
        let report = ingest_in_process(&config, &files);
        assert_eq!(
            report.totals.quarantined, 0,
            "fixture rows are valid: {report:?}"
        );
        let catalogue = SensitiveCatalogue::default_catalogue().unwrap();
        let as_of = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        detect::detect(
            &store,
            &config.detect,
            &config.allowlist,
            &catalogue,
            config.timezone,
            as_of,
        )
        .unwrap()
    }
}

fn fired<'a>(findings: &'a [Finding], nhs: &str, rule: &str) -> Option<&'a Finding> {
    findings
        .iter()
        .find(|f| f.nhs_number == nhs && f.rule_id == rule)
}

fn rules_for(findings: &[Finding], nhs: &str) -> Vec<&'static str> {
    findings
        .iter()
        .filter(|f| f.nhs_number == nhs)
        .map(|f| f.rule_id)
        .collect()
}

/// Patient A's ordinary use of their own phone: every 3 days at 19:00 from 28 Sep to 22 Nov.
fn with_habit() -> Practice {
    phone_a_until(55)
}

/// A's phone every three days at 19:00, from the first day to day `last`.
fn phone_a_until(last: u32) -> Practice {
    let mut p = Practice::default();
    p.habit(NHS_A, "acct-a", "phone-a", PHONE, HOME_A, (0, last), 3, 19);
    p
}

#[test]
fn unfamiliar_device_fires_alongside_the_usual_device_but_not_for_a_replacement() {
    let mut p = with_habit();
    for day in ["2026-11-12 10:00", "2026-11-15 11:00", "2026-11-18 12:30"] {
        p.session(
            NHS_A,
            "acct-a",
            "other-1",
            PHONE,
            HOME_A,
            day,
            &["consultations", "problems"],
        );
    }
    let f = p.detect();
    let u = fired(&f, NHS_A, "unfamiliar_device").expect("fires");
    assert_eq!(u.device_id.as_deref(), Some("other-1"));
    assert!(
        u.explanation
            .contains("does not behave like the patient's own")
            && u.explanation.contains("3 times"),
        "{}",
        u.explanation
    );

    // A new phone that takes over: the old one is not used after it appears.
    let mut r = Practice::default();
    r.habit(NHS_A, "acct-a", "phone-a", PHONE, HOME_A, (0, 44), 3, 19);
    r.habit(NHS_A, "acct-a", "phone-new", PHONE, HOME_A, (46, 55), 2, 19);
    let f = r.detect();
    assert!(
        rules_for(&f, NHS_A).is_empty(),
        "a replacement phone is not a finding: {:?}",
        rules_for(&f, NHS_A)
    );
}

#[test]
fn shared_device_flags_the_visited_record_not_the_owner_and_spares_household_tablets_and_proxies() {
    let mut p = with_habit();
    // B's own phone, used on B's record for weeks, now signs in to A's account and reads A's record.
    p.habit(NHS_B, "acct-b", "phone-b", PHONE, HOME_B, (0, 55), 2, 8);
    p.session(
        NHS_A,
        "acct-a",
        "phone-b",
        PHONE,
        HOME_B,
        "2026-11-14 08:40",
        &["consultations", "documents"],
    );
    p.session(
        NHS_A,
        "acct-a",
        "phone-b",
        PHONE,
        HOME_B,
        "2026-11-19 08:50",
        &["problems"],
    );
    let f = p.detect();
    let s = fired(&f, NHS_A, "shared_device").expect("fires on the visited record");
    assert!(s.score >= 55.0, "{s:?}");
    assert!(
        s.explanation
            .contains("another patient has used for their own record"),
        "{}",
        s.explanation
    );
    assert!(
        rules_for(&f, NHS_B).is_empty(),
        "the device owner is not flagged: {:?}",
        rules_for(&f, NHS_B)
    );

    // A couple's household tablet, used by both on their own accounts from the start: established on both.
    let mut c = Practice::default();
    c.habit(
        NHS_A,
        "acct-a",
        "tablet-home",
        TABLET,
        HOME_A,
        (0, 55),
        3,
        20,
    );
    c.habit(
        NHS_B,
        "acct-b",
        "tablet-home",
        TABLET,
        HOME_A,
        (1, 55),
        3,
        9,
    );
    let f = c.detect();
    assert!(
        fired(&f, NHS_A, "shared_device").is_none() && fired(&f, NHS_B, "shared_device").is_none()
    );

    // A parent with formal proxy access reading a child's record on the parent's own phone.
    let mut x = Practice::default();
    x.habit(NHS_B, "acct-b", "phone-b", PHONE, HOME_B, (0, 55), 2, 8);
    x.habit(NHS_C, "proxy-b", "phone-b", PHONE, HOME_B, (40, 55), 3, 18);
    x.proxy(NHS_C, "proxy-b");
    let f = x.detect();
    assert!(
        rules_for(&f, NHS_C).is_empty(),
        "{:?}",
        rules_for(&f, NHS_C)
    );
}

/// A's own phone at home at each of `times` (local), reading `sections` each time.
fn phone_a_at(p: &mut Practice, times: &[&str], sections: &[&str]) {
    for at in times {
        p.session(NHS_A, "acct-a", "phone-a", PHONE, HOME_A, at, sections);
    }
}

/// A's own phone at home on four nights between 02:50 and 03:20 (11-20 Nov), reading `sections` each time.
fn four_nights_on_phone_a(p: &mut Practice, sections: &[&str]) {
    let nights = [
        "2026-11-11 03:10",
        "2026-11-14 02:50",
        "2026-11-17 03:20",
        "2026-11-20 03:05",
    ];
    phone_a_at(p, &nights, sections);
}

#[test]
fn unusual_hour_fires_at_hours_the_patient_never_uses_but_not_for_a_night_worker() {
    let mut p = with_habit();
    four_nights_on_phone_a(&mut p, &["consultations", "problems"]);
    let f = p.detect();
    let u = fired(&f, NHS_A, "unusual_hour").expect("fires");
    assert!(
        u.score >= 45.0,
        "four nights on four days is medium alone: {u:?}"
    );
    assert!(
        u.explanation.contains("4 times on 4 different days"),
        "{}",
        u.explanation
    );
    assert!(
        u.explanation.contains("19:00"),
        "names the usual hours: {}",
        u.explanation
    );

    let mut n = Practice::default();
    n.habit(NHS_A, "acct-a", "phone-a", PHONE, HOME_A, (0, 55), 2, 3);
    let f = n.detect();
    assert!(
        fired(&f, NHS_A, "unusual_hour").is_none(),
        "a night worker at their usual hours"
    );
    // Nor, after a 104 code, is their own reading at those hours someone else's: with no visits by day, nothing says
    // they sleep at night, even in an export without addresses (where no visit can be seen away from home).
    for ip in [HOME_A, ""] {
        let mut n = Practice::default();
        n.habit(NHS_A, "acct-a", "phone-a", PHONE, ip, (0, 55), 2, 3);
        restrict_a(&mut n, "2026-11-14 10:00");
        assert_not_fired(&n.detect(), NHS_A, "access_despite_restriction");
    }

    // Reading a new entry straight away, at an hour otherwise unused, is explained by the entry.
    let mut e = with_habit();
    e.entry(
        NHS_A,
        "E1",
        "2026-11-12 08:00",
        "38341003",
        "Hypertensive disorder",
    );
    e.entry(NHS_A, "E2", "2026-11-16 08:30", "27113001", "Body weight");
    e.session(
        NHS_A,
        "acct-a",
        "phone-a",
        PHONE,
        HOME_A,
        "2026-11-12 08:20",
        &["test_results"],
    );
    e.session(
        NHS_A,
        "acct-a",
        "phone-a",
        PHONE,
        HOME_A,
        "2026-11-16 09:00",
        &["test_results"],
    );
    assert!(fired(&e.detect(), NHS_A, "unusual_hour").is_none());
}

#[test]
fn a_holder_who_orders_in_the_small_hours_is_awake_then_so_night_visits_on_their_phone_are_not_a_night_run(
) {
    // Four nights on A's own phone, reading consultations and problems: a night run, medium alone (as above)...
    let nights = |orders_at_night: bool| {
        let mut p = with_habit();
        four_nights_on_phone_a(&mut p, &["consultations", "problems"]);
        // ...unless A orders their own repeat prescription on that phone at night too.
        if orders_at_night {
            p.action(
                NHS_A,
                "acct-a",
                "phone-a",
                "2026-11-02 02:40",
                "order_prescription",
            );
        }
        p.detection()
    };
    let d = nights(false);
    assert_ne!(risk_level(&d, NHS_A), "low", "{:?}", d.patients);
    let d = nights(true);
    let u = fired(&d.findings, NHS_A, "unusual_hour").expect("the hours are still foreign");
    assert!(u.score < 45.0, "{u:?}");
    assert_not_flagged(&d, NHS_A);
}

#[test]
fn a_view_of_the_record_in_general_reads_what_a_watcher_is_after() {
    // Four nights on A's own phone, each view with no section (the record in general, as an export without sections
    // has it), or each opening only the summary page.
    let nights = |section: &str| {
        let mut p = with_habit();
        four_nights_on_phone_a(&mut p, &[section]);
        p.detection()
    };
    // The record in general holds the consultations and results a watcher is after: a night run, medium alone.
    let d = nights("");
    assert_ne!(risk_level(&d, NHS_A), "low", "{:?}", d.findings);
    // The summary page alone does not: the hours are foreign, but they do not stand alone.
    let d = nights("summary");
    assert_not_flagged(&d, NHS_A);
}

/// A's phone every three days at 19:00; three sensitive entries (days 10, 25 and 40, 10:00) each read on A's phone
/// at 10:30; three ordinary entries (days 12, 27 and 42, 20:00), read at 20:30 too when `ordinary_read_at_once`, and
/// otherwise at A's next evening; and, when `after_visits`, an attended appointment ending an hour before each
/// sensitive entry.
fn sensitive_entries_read_at_once(ordinary_read_at_once: bool, after_visits: bool) -> Practice {
    let mut p = with_habit();
    let start = NaiveDate::from_ymd_opt(2026, 9, 28).unwrap();
    // An entry on `day` at `hour`:00, and, when `read`, A's phone reading the problems at `hour`:30.
    let entry = |p: &mut Practice,
                 id: &str,
                 day: NaiveDate,
                 hour: u32,
                 (code, term): (&str, &str),
                 read: bool| {
        p.entry(NHS_A, id, &format!("{day} {hour:02}:00"), code, term);
        if read {
            phone_a_at(p, &[&format!("{day} {hour:02}:30")], &["problems"]);
        }
    };
    for (i, d) in [10, 25, 40].into_iter().enumerate() {
        let day = start + chrono::Duration::days(d);
        let abuse = ("205171000000107", "Victim of domestic violence");
        entry(&mut p, &format!("S{i}"), day, 10, abuse, true);
        if after_visits {
            p.visit(
                NHS_A,
                &format!("V{i}"),
                &format!("{day} 08:50"),
                &format!("{day} 09:00"),
            );
        }
    }
    for (i, d) in [12, 27, 42].into_iter().enumerate() {
        let day = start + chrono::Duration::days(d);
        let headache = ("25064002", "Headache");
        entry(
            &mut p,
            &format!("O{i}"),
            day,
            20,
            headache,
            ordinary_read_at_once,
        );
    }
    p
}

#[test]
fn access_after_sensitive_entry_counts_sensitive_entries_read_at_once_when_ordinary_ones_are_not() {
    // Every sensitive entry is read within half an hour on A's own phone, by day; A otherwise reads every third
    // evening, and the ordinary entries wait for it. Far sooner than the record's pace explains, for sensitive entries
    // only: someone watching for what A discloses. Weak alone (on the holder's own device, at an ordinary hour).
    let d = sensitive_entries_read_at_once(false, false).detection();
    let f = fired(&d.findings, NHS_A, "access_after_sensitive_entry")
        .unwrap_or_else(|| panic!("sensitive entries read at once: {:?}", d.findings));
    assert!(
        f.explanation
            .contains("read soon after 3 of its 3 sensitive entries")
            && f.explanation
                .contains("0 of its 3 ordinary entries were read that soon")
            && f.explanation.contains("about one visit every 3 days"),
        "{}",
        f.explanation
    );
    assert!(
        f.score < 45.0,
        "corroborating evidence, not a flag alone: {}",
        f.score
    );

    // A reads every new entry at once, ordinary ones too: notified and keen, not selective. Not this rule.
    let d = sensitive_entries_read_at_once(true, false).detection();
    assert_not_fired(&d.findings, NHS_A, "access_after_sensitive_entry");

    // The sensitive entries were recorded at appointments A had just attended: A knows of them, and reading them at
    // once is A's own. Not this rule.
    let d = sensitive_entries_read_at_once(false, true).detection();
    assert_not_fired(&d.findings, NHS_A, "access_after_sensitive_entry");
}

#[test]
fn access_after_sensitive_entry_fires_for_another_device_not_for_the_patient_reading_it() {
    let mut p = with_habit();
    p.entry(
        NHS_A,
        "E1",
        "2026-11-16 11:00",
        "205171000000107",
        "Victim of domestic violence",
    );
    p.session(
        NHS_A,
        "acct-a",
        "other-1",
        TABLET,
        HOME_A,
        "2026-11-16 14:30",
        &["problems", "consultations"],
    );
    let f = p.detect();
    let a = fired(&f, NHS_A, "access_after_sensitive_entry").expect("fires");
    assert!(
        a.explanation.contains("domestic abuse") && a.explanation.contains("3 hours"),
        "{}",
        a.explanation
    );
    assert!(a.score >= 45.0);

    let mut own = with_habit();
    own.entry(
        NHS_A,
        "E1",
        "2026-11-16 11:00",
        "205171000000107",
        "Victim of domestic violence",
    );
    own.session(
        NHS_A,
        "acct-a",
        "phone-a",
        PHONE,
        HOME_A,
        "2026-11-16 11:20",
        &["problems"],
    );
    assert!(fired(&own.detect(), NHS_A, "access_after_sensitive_entry").is_none());

    // A redacted entry is not visible online: reading after it is not this rule.
    let mut red = with_habit();
    let _ = writeln!(
        red.entries,
        "E1,{NHS_A},2026-11-16 11:00:00,205171000000107,Victim of domestic violence,problems,false"
    );
    red.session(
        NHS_A,
        "acct-a",
        "other-1",
        TABLET,
        HOME_A,
        "2026-11-16 14:30",
        &["problems"],
    );
    assert!(fired(&red.detect(), NHS_A, "access_after_sensitive_entry").is_none());
}

#[test]
fn access_during_appointment_fires_from_home_not_from_the_waiting_room() {
    let mut p = with_habit();
    p.visit(NHS_A, "V1", "2026-11-17 10:00", "2026-11-17 10:20");
    p.session(
        NHS_A,
        "acct-a",
        "tablet-x",
        TABLET,
        HOME_A,
        "2026-11-17 10:05",
        &["appointments", "consultations"],
    );
    let f = p.detect();
    let d = fired(&f, NHS_A, "access_during_appointment").expect("fires");
    assert!(
        d.explanation.contains("household internet connection"),
        "{}",
        d.explanation
    );

    let mut w = with_habit();
    w.visit(NHS_A, "V1", "2026-11-17 10:00", "2026-11-17 10:20");
    w.session(
        NHS_A,
        "acct-a",
        "phone-a",
        PHONE,
        "2a01:4c8::1",
        "2026-11-17 10:02",
        &["medications"],
    );
    w.session(
        NHS_A,
        "acct-a",
        "phone-a",
        PHONE,
        HOME_A,
        "2026-11-17 13:00",
        &["consultations"],
    );
    assert!(fired(&w.detect(), NHS_A, "access_during_appointment").is_none());
}

const COMPUTER: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0";

/// A's phone at home every sixth evening at 19:00, and a computer at home every other day at `pc_hour` (from the
/// second day), both only reading: neither books, orders or reads what A manages care with.
fn phone_and_home_computer(pc_every: usize, pc_hour: u32, pc_reads: &[&[&str]]) -> Practice {
    let mut p = Practice::default();
    on_phone_a(&mut p, (0, 55), 6, 19, &[&["test_results"], &["letters"]]);
    reading(
        &mut p,
        NHS_A,
        "pc-a",
        COMPUTER,
        HOME_A,
        (1, 55),
        pc_every,
        pc_hour,
        pc_reads,
    );
    p
}

#[test]
fn a_home_computer_read_while_the_patient_is_in_the_surgery_is_not_the_device_they_carry() {
    // Neither of A's devices manages their care. A computer at home reads consultations and letters at 05:00 nearly
    // every day, far more often than A's phone is used, and once while A is at a face-to-face appointment. A person
    // carries a phone, not a computer: the phone is taken for A's own, and the computer's read during the visit is
    // someone else at home, at full weight (not the discount for the carried phone on the home connection, which
    // may be an appointment time that does not match the visit).
    let mut p = phone_and_home_computer(1, 5, &[&["consultations"], &["letters"]]);
    p.visit(NHS_A, "V1", "2026-11-17 10:00", "2026-11-17 10:20");
    p.session(
        NHS_A,
        "acct-a",
        "pc-a",
        COMPUTER,
        HOME_A,
        "2026-11-17 10:05",
        &["consultations"],
    );
    let f = p.detect();
    let d = fired(&f, NHS_A, "access_during_appointment").expect("fires");
    assert!(
        d.score >= 50.0
            && d.explanation
                .contains("other than the one they usually carry"),
        "{d:?}"
    );
}

#[test]
fn a_home_computer_read_the_way_the_patient_reads_their_phone_is_not_flagged() {
    // The same phone, and a computer at home every other evening at 20:00 reading results and letters as the phone
    // does: the computer is no longer taken for the device A carries, and it is still not flagged.
    let p = phone_and_home_computer(2, 20, &[&["test_results"], &["letters", "test_results"]]);
    assert_not_flagged(&p.detection(), NHS_A);
}

#[test]
fn concurrent_sessions_fire_for_interleaved_use_not_for_moving_between_devices() {
    let mut p = with_habit();
    p.session(
        NHS_A,
        "acct-a",
        "phone-a",
        PHONE,
        HOME_A,
        "2026-11-18 21:00",
        &["summary", "problems", "documents", "letters"],
    );
    p.session(
        NHS_A,
        "acct-a",
        "other-1",
        PHONE,
        "90.9.9.9",
        "2026-11-18 21:02",
        &["consultations", "problems"],
    );
    let f = p.detect();
    assert!(
        fired(&f, NHS_A, "concurrent_sessions").is_some(),
        "{:?}",
        rules_for(&f, NHS_A)
    );
    // The finding is about the device that is not the holder's, whichever was opened first.
    let mut first = with_habit();
    first.session(
        NHS_A,
        "acct-a",
        "other-1",
        PHONE,
        "90.9.9.9",
        "2026-11-18 21:00",
        &["consultations", "problems"],
    );
    first.session(
        NHS_A,
        "acct-a",
        "phone-a",
        PHONE,
        HOME_A,
        "2026-11-18 21:02",
        &["summary", "problems", "documents", "letters"],
    );
    let ff = first.detect();
    let c = fired(&ff, NHS_A, "concurrent_sessions").expect("fires");
    assert_eq!(c.device_id.as_deref(), Some("other-1"));

    let mut m = with_habit();
    m.habit(NHS_A, "acct-a", "tablet-a", TABLET, HOME_A, (1, 55), 3, 21);
    m.session(
        NHS_A,
        "acct-a",
        "phone-a",
        PHONE,
        HOME_A,
        "2026-11-18 20:00",
        &["summary"],
    );
    m.session(
        NHS_A,
        "acct-a",
        "tablet-a",
        TABLET,
        HOME_A,
        "2026-11-18 20:10",
        &["summary"],
    );
    assert!(fired(&m.detect(), NHS_A, "concurrent_sessions").is_none());
}

#[test]
fn access_despite_restriction_fires_for_a_new_device_not_for_the_patients_own() {
    let mut p = with_habit();
    restrict_a(&mut p, "2026-11-10 09:00");
    p.session(
        NHS_A,
        "acct-a",
        "other-1",
        TABLET,
        HOME_A,
        "2026-11-13 22:00",
        &["consultations"],
    );
    p.session(
        NHS_A,
        "acct-a",
        "other-1",
        TABLET,
        HOME_A,
        "2026-11-19 22:00",
        &["documents"],
    );
    let f = p.detect();
    let r = fired(&f, NHS_A, "access_despite_restriction").expect("fires");
    assert!(
        r.explanation.contains("104 code") && r.explanation.contains("twice"),
        "{}",
        r.explanation
    );

    // The patient's own phone after the 104: expected, not this rule.
    let mut own = with_habit();
    restrict_a(&mut own, "2026-11-10 09:00");
    assert!(fired(&own.detect(), NHS_A, "access_despite_restriction").is_none());

    // Lifted by a 106 before the new device appears: not this rule.
    let mut lifted = with_habit();
    restrict_a(&mut lifted, "2026-11-10 09:00");
    lifted.entry(
        NHS_A,
        "R2",
        "2026-11-11 09:00",
        "1364751000000106",
        "Enhanced review not indicated",
    );
    lifted.session(
        NHS_A,
        "acct-a",
        "other-1",
        TABLET,
        HOME_A,
        "2026-11-13 22:00",
        &["consultations"],
    );
    assert!(fired(&lifted.detect(), NHS_A, "access_despite_restriction").is_none());
}

/// A's phone every three days at 19:00 until day `phone_until`; a second phone from day `new_from` to the end, every
/// day at 23:00, reading A's letters, medications and immunisations; and a 104 code on 14 Nov (day 47).
fn new_phone_around_a_104(phone_until: u32, new_from: i64) -> Practice {
    let mut p = phone_a_until(phone_until);
    reading(
        &mut p,
        NHS_A,
        "phone-n",
        PHONE,
        HOME_A,
        (new_from, 55),
        1,
        23,
        &[&["letters", "medications"], &["immunisations", "letters"]],
    );
    restrict_a(&mut p, "2026-11-14 10:00");
    p
}

#[test]
fn access_despite_restriction_does_not_take_a_device_that_came_with_the_concern_for_the_patients_own(
) {
    // A's phone goes quiet after day 30; a phone first used on day 44, three days before the 104 code, reads A's
    // record every night since, much as A read it. The model takes it for A's next phone, but it came to the record
    // with the concern the code answers and has never booked, ordered or messaged: after the code it counts.
    let d = new_phone_around_a_104(30, 44).detection();
    let r = fired(&d.findings, NHS_A, "access_despite_restriction")
        .unwrap_or_else(|| panic!("the newcomer's reading counts: {:?}", d.findings));
    assert!(
        r.explanation
            .contains("first used on the record within 30 days of the restriction")
            && r.explanation.contains("never booked"),
        "{}",
        r.explanation
    );
    assert_ne!(risk_level(&d, NHS_A), "low", "{:?}", d.patients);

    // The same phone, first used on day 10: A's next phone, weeks before any concern. Not this rule.
    let d = new_phone_around_a_104(12, 10).detection();
    assert_not_fired(&d.findings, NHS_A, "access_despite_restriction");

    // The newcomer books an appointment: it manages A's care, so it is A's. Not this rule.
    let mut booked = new_phone_around_a_104(30, 44);
    booked.action(
        NHS_A,
        "acct-a",
        "phone-n",
        "2026-11-12 23:30",
        "book_appointment",
    );
    let d = booked.detection();
    assert_not_fired(&d.findings, NHS_A, "access_despite_restriction");
}

/// A 104 code ("Enhanced review indicated") on A's record at `at`.
fn restrict_a(p: &mut Practice, at: &str) {
    p.entry(
        NHS_A,
        "R1",
        at,
        "1364731000000104",
        "Enhanced review indicated",
    );
}

/// [`reading`] on A's phone at home.
fn phone_a_reading(
    p: &mut Practice,
    days: (i64, i64),
    every: usize,
    hour: u32,
    readings: &[&[&str]],
) {
    reading(
        p, NHS_A, "phone-a", PHONE, HOME_A, days, every, hour, readings,
    );
}

/// A's phone every other day at 19:00 from 19 Aug (day -40) to the end, reading appointments and results or the
/// summary and medications.
fn phone_a_evenings() -> Practice {
    let mut p = Practice::default();
    phone_a_reading(
        &mut p,
        (-40, 55),
        2,
        19,
        &[
            &["appointments", "test_results"],
            &["summary", "medications"],
        ],
    );
    p
}

/// A's phone every other day at 19:00 from 19 Aug (day -40) to the end, reading appointments and results or the
/// summary and medications; other visits on the same phone at `hour` over `other_days` (every `every` days),
/// reading appointments and letters or consultations and immunisations; and a 104 code on 14 Nov (day 47).
fn other_hours_on_a_phone_around_a_104(
    hour: u32,
    other_days: (i64, i64),
    every: usize,
) -> Practice {
    let mut p = phone_a_evenings();
    phone_a_reading(
        &mut p,
        other_days,
        every,
        hour,
        &[
            &["appointments", "letters"],
            &["consultations", "immunisations"],
        ],
    );
    restrict_a(&mut p, "2026-11-14 10:00");
    p
}

#[test]
fn access_despite_restriction_counts_night_reading_on_the_patients_phone_that_began_with_the_concern_but_not_a_night_habit(
) {
    // Months of evenings on A's phone; from day 40, a week before the 104 code, the same phone reads A's record at
    // 03:00 every other night, now and then opening the appointments. Nothing on A's devices shows A awake at night
    // (no order, booking or message then, no night visit away from the home connection), so the nights are not A's
    // hours, and the four after the code count.
    let d = other_hours_on_a_phone_around_a_104(3, (40, 54), 2).detection();
    let r = fired(&d.findings, NHS_A, "access_despite_restriction")
        .unwrap_or_else(|| panic!("nights after the code count: {:?}", d.findings));
    assert!(
        r.explanation.contains("opened 4 times"),
        "{}",
        r.explanation
    );
    assert_ne!(risk_level(&d, NHS_A), "low", "{:?}", d.patients);

    // A orders a repeat prescription on that phone at 02:40 one night in September: A is awake at night sometimes, and
    // eight night visits in the last fortnight of a light user's record teach the model that 03:00 is A's, so the hours
    // alone say nothing. But the record's nights were never read before the weeks around the code, and after it they
    // are.
    let awake_once = |p: &mut Practice| {
        p.action(
            NHS_A,
            "acct-a",
            "phone-a",
            "2026-09-10 02:40",
            "order_prescription",
        );
    };
    let mut p = other_hours_on_a_phone_around_a_104(3, (40, 54), 2);
    awake_once(&mut p);
    let d = p.detection();
    let r = fired(&d.findings, NHS_A, "access_despite_restriction")
        .unwrap_or_else(|| panic!("nights that began with the concern count: {:?}", d.findings));
    assert!(
        r.explanation
            .contains("4 of these visits were in the middle of the night")
            && r.explanation
                .contains("night-time reading that began with the concern"),
        "{}",
        r.explanation
    );
    assert_ne!(risk_level(&d, NHS_A), "low", "{:?}", d.patients);

    // Such nights over the whole history instead, one every five days, two of them after the code, from a holder who
    // is up at night now and then: A's own night-time habit, which the code does not stop. Not this rule.
    let mut p = other_hours_on_a_phone_around_a_104(3, (-40, 55), 5);
    awake_once(&mut p);
    assert_not_fired(&p.detection().findings, NHS_A, "access_despite_restriction");
}

#[test]
fn access_despite_restriction_counts_a_reading_routine_at_hours_new_to_the_record_since_the_concern_not_the_next_hour(
) {
    // Months of evenings at 19:00 on A's phone; from day 40, a week before the 104 code, the same phone reads A's
    // record at 12:00 every other day, now and then opening the appointments. Midday is an ordinary hour, so neither
    // the model of A's hours nor the night-time test calls it foreign. But the record had never been opened at
    // midday, nor near it, before the weeks around the code, and since then it is, far beyond the record's own rate of
    // new hours: someone else's routine that came with the concern. The four visits after the code count.
    let d = other_hours_on_a_phone_around_a_104(12, (40, 54), 2).detection();
    let r = fired(&d.findings, NHS_A, "access_despite_restriction").unwrap_or_else(|| {
        panic!(
            "a midday routine since the concern counts: {:?}",
            d.findings
        )
    });
    assert!(
        r.explanation.contains("opened 4 times")
            && r.explanation.contains(
                "4 of these visits were at hours the record was never opened at, nor within an hour of"
            ),
        "{}",
        r.explanation
    );

    // The same visits at 20:00 instead: an hour after A's evenings, which vary by that much. Not new, not this rule.
    let d = other_hours_on_a_phone_around_a_104(20, (40, 54), 2).detection();
    assert_not_fired(&d.findings, NHS_A, "access_despite_restriction");

    // Midday visits over the whole history, one every five days: A's own habit, which the code does not stop.
    let d = other_hours_on_a_phone_around_a_104(12, (-40, 55), 5).detection();
    assert_not_fired(&d.findings, NHS_A, "access_despite_restriction");

    // Two midday visits after the code (days 50 and 53) among a month of evenings: a new hour now and then is within
    // what the record's own history allows by chance. Not this rule.
    let d = other_hours_on_a_phone_around_a_104(12, (50, 54), 3).detection();
    assert_not_fired(&d.findings, NHS_A, "access_despite_restriction");
}

/// A's phone every 3 days at 19:00 until 11 Nov (day 44), and a tablet once a week at 20:00; a password reset on a
/// new phone on 12 Nov, which then reads A's summary, appointments and medications every other day at 19:00, as A
/// did.
fn reset_on_a_phone_that_reads_like_the_holders() -> Practice {
    let mut p = reset_then_reading(
        44,
        (45, 55),
        19,
        &[&["summary", "appointments", "medications"]],
    );
    p.habit(NHS_A, "acct-a", "tablet-a", TABLET, HOME_A, (1, 43), 7, 20);
    p
}

#[test]
fn a_second_device_set_up_with_a_password_reset_is_the_holders_when_it_keeps_their_hours_and_manages_their_care(
) {
    // A keeps their phone (every 3 days at 19:00); on 12 Nov a password reset on a new tablet, which from 13 Nov
    // reads every other day at `hour`, now and then their appointments.
    let practice = |hour: u32| {
        let p = tablet_after_reset(
            "2026-11-12 19:05",
            (46, 55),
            2,
            hour,
            HOME_A,
            &[
                &["test_results", "letters"],
                &["consultations"],
                &["appointments"],
                &["letters"],
            ],
        );
        let d = p.detection();
        fired(&d.findings, NHS_A, "account_change_then_new_device")
            .expect("fires")
            .score
    };
    // At A's own hour: A's second device, discounted below medium.
    assert!(practice(19) < 45.0);
    // At 03:00, hours A does not keep: not discounted.
    assert!(practice(3) >= 45.0);
}

#[test]
fn after_a_password_change_the_patients_main_phone_refused_is_a_takeover_unless_it_gets_in_at_the_next_try(
) {
    let locked_out = |p: &Practice| {
        let d = p.detection();
        let f = fired(&d.findings, NHS_A, "account_change_then_new_device")
            .expect("fires")
            .clone();
        (f, risk_level(&d, NHS_A))
    };
    // The new phone reads the way A does, and the old one is not used again: most likely A's new phone.
    let (f, _) = locked_out(&reset_on_a_phone_that_reads_like_the_holders());
    assert!(!f.explanation.contains("refused"), "{}", f.explanation);
    let new_phone = f.score;
    // A's main phone then tries to sign in and is refused, and does not get in: A has been locked out of their own
    // login, whatever the new phone reads.
    let mut p = reset_on_a_phone_that_reads_like_the_holders();
    p.refused(NHS_A, "phone-a", "2026-11-15 19:02");
    let (f, level) = locked_out(&p);
    assert!(
        f.explanation.contains("was refused (Sun 15 Nov 19:02)"),
        "{}",
        f.explanation
    );
    assert!(f.score > new_phone, "{} vs {new_phone}", f.score);
    assert_ne!(level, "low");
    // Refused, then in a minute later: a mistyped or new password, not a lock-out.
    let mut p = reset_on_a_phone_that_reads_like_the_holders();
    p.refused(NHS_A, "phone-a", "2026-11-15 19:02");
    p.session(
        NHS_A,
        "acct-a",
        "phone-a",
        PHONE,
        HOME_A,
        "2026-11-15 19:03",
        &["summary"],
    );
    let (f, _) = locked_out(&p);
    assert!(!f.explanation.contains("refused"), "{}", f.explanation);
    // No use of the record before the change in the look-back: the phone the password was changed on, refused
    // afterwards, stands for A's.
    let mut p = Practice::default();
    p.action(
        NHS_A,
        "acct-a",
        "phone-a",
        "2026-11-12 19:05",
        "change_password",
    );
    reading(
        &mut p,
        NHS_A,
        "phone-new",
        PHONE,
        HOME_A,
        (45, 55),
        2,
        19,
        &[&["consultations", "letters"]],
    );
    p.refused(NHS_A, "phone-a", "2026-11-15 19:02");
    let (f, _) = locked_out(&p);
    assert!(
        f.explanation
            .contains("the change was made on tried to sign in and was refused"),
        "{}",
        f.explanation
    );
    // An old tablet left with the old password, refused: not A's main device.
    let mut p = reset_on_a_phone_that_reads_like_the_holders();
    p.refused(NHS_A, "tablet-a", "2026-11-15 20:02");
    let (f, _) = locked_out(&p);
    assert!(!f.explanation.contains("refused"), "{}", f.explanation);
    assert_eq!(f.score, new_phone);
}

#[test]
fn account_change_then_new_device_fires_after_a_change_only() {
    let mut p = with_habit();
    p.action(
        NHS_A,
        "acct-a",
        "phone-a",
        "2026-11-12 21:40",
        "change_password",
    );
    p.session(
        NHS_A,
        "acct-a",
        "other-1",
        PHONE,
        "90.9.9.9",
        "2026-11-13 07:00",
        &["consultations"],
    );
    p.session(
        NHS_A,
        "acct-a",
        "other-1",
        PHONE,
        "90.9.9.9",
        "2026-11-15 07:00",
        &["problems"],
    );
    let f = p.detect();
    let a = fired(&f, NHS_A, "account_change_then_new_device").expect("fires");
    assert!(
        a.explanation.contains("password") && a.explanation.contains("9 hours"),
        "{}",
        a.explanation
    );

    let mut n = with_habit();
    n.session(
        NHS_A,
        "acct-a",
        "other-1",
        PHONE,
        "90.9.9.9",
        "2026-11-13 07:00",
        &["consultations"],
    );
    assert!(fired(&n.detect(), NHS_A, "account_change_then_new_device").is_none());
}

#[test]
fn monitoring_cadence_fires_for_a_schedule_not_for_an_anxious_burst() {
    let mut p = with_habit();
    for k in 0..12 {
        let t = chrono::NaiveDate::from_ymd_opt(2026, 11, 18)
            .unwrap()
            .and_hms_opt(6, 0, 0)
            .unwrap()
            + chrono::Duration::hours(4 * k)
            + chrono::Duration::seconds((k % 3) * 40);
        p.session(
            NHS_A,
            "acct-a",
            "phone-a",
            PHONE,
            HOME_A,
            &t.format("%Y-%m-%d %H:%M").to_string(),
            &["consultations"],
        );
    }
    let f = p.detect();
    let c = fired(&f, NHS_A, "monitoring_cadence").expect("fires");
    assert!(
        c.explanation.contains("every 4.0 hours"),
        "{}",
        c.explanation
    );

    let mut b = with_habit();
    for at in [
        "2026-11-18 08:10",
        "2026-11-18 09:55",
        "2026-11-18 13:20",
        "2026-11-18 19:42",
        "2026-11-19 07:03",
        "2026-11-19 12:48",
    ] {
        b.session(
            NHS_A,
            "acct-a",
            "phone-a",
            PHONE,
            HOME_A,
            at,
            &["test_results"],
        );
    }
    let f = b.detect();
    assert!(
        fired(&f, NHS_A, "monitoring_cadence").is_none_or(|c| !c.explanation.contains("regular")),
        "{f:?}"
    );
}

#[test]
fn a_daily_check_too_short_for_a_machine_counts_when_it_keeps_hours_the_holder_does_not_and_only_reads(
) {
    // A's phone, 16-21 Nov, once a day within `spread` minutes after `time`, reading `sections`; A keeps 19:00.
    let practice_spread = |time: (u32, u32), spread: u32, sections: &[&str]| {
        let mut p = with_habit();
        for day in 16..=21 {
            let at = format!(
                "2026-11-{day} {:02}:{:02}",
                time.0,
                time.1 + (day * 7) % spread
            );
            p.session(NHS_A, "acct-a", "phone-a", PHONE, HOME_A, &at, sections);
        }
        p.detect()
    };
    let practice = |time: (u32, u32), sections: &[&str]| practice_spread(time, 3, sections);
    let schedule = |f: &[Finding]| {
        fired(f, NHS_A, "monitoring_cadence")
            .is_some_and(|c| c.explanation.contains("on a schedule"))
    };
    // At 09:27, reading consultations: six days are fewer than a daily habit needs on its own (ten), but this one is
    // not the holder's: found.
    let f = practice((9, 27), &["consultations"]);
    let c = fired(&f, NHS_A, "monitoring_cadence").expect("fires");
    assert!(
        c.explanation.contains("6 times") && schedule(&f),
        "{}",
        c.explanation
    );
    // The same mornings spent booking and reading appointments: the holder's own new routine.
    assert!(!schedule(&practice((9, 27), &["appointments"])));
    // Within the holder's own hours (an hour after their usual time), wandering over twenty minutes: their habit.
    // (Kept to within a few minutes from day to day it would be a schedule at any hour: see
    // `a_daily_check_kept_to_the_minute_is_a_schedule_however_short`.)
    assert!(!schedule(&practice_spread(
        (20, 20),
        25,
        &["consultations"]
    )));
}

#[test]
fn a_daily_check_kept_to_the_minute_is_a_schedule_however_short() {
    // Six days running (15-20 Nov) A's own phone opens consultations at 20:`minute`, at A's own hours (A keeps
    // 19:00): too short a daily run to be a schedule by its length alone.
    let practice = |minutes: [u32; 6]| {
        let mut p = with_habit();
        for (i, m) in minutes.iter().enumerate() {
            p.session(
                NHS_A,
                "acct-a",
                "phone-a",
                PHONE,
                HOME_A,
                &format!("2026-11-{} 20:{m:02}", 15 + i),
                &["consultations"],
            );
        }
        p.detect()
    };
    // Within five minutes of the day before's time, every day, only reading: kept to the minute.
    let f = practice([10, 12, 9, 13, 11, 14]);
    let c = fired(&f, NHS_A, "monitoring_cadence").expect("a schedule");
    assert!(c.score >= 55.0, "{c:?}");
    assert!(c.explanation.contains("6 times"), "{}", c.explanation);
    // The same evening hour, wandering as a person's does: no schedule.
    let f = practice([10, 31, 2, 44, 18, 37]);
    assert_not_fired(&f, NHS_A, "monitoring_cadence");
}

#[test]
fn a_device_that_keeps_one_clock_time_with_days_skipped_is_checking_on_a_schedule() {
    // From 12 Oct, a tablet that is not A's reads A's record on 12 days, never two days running (no daily chain), at
    // `slot` plus the minutes below; A keeps 19:00 on their phone.
    let practice = |hours: &[u32], sections: &[&str]| {
        let mut p = with_habit();
        for (k, day) in [0, 2, 5, 7, 10, 13, 15, 18, 21, 24, 26, 29]
            .into_iter()
            .enumerate()
        {
            let date = NaiveDate::from_ymd_opt(2026, 10, 12).unwrap() + chrono::Duration::days(day);
            let at = format!(
                "{date} {:02}:{:02}",
                hours[k % hours.len()],
                3 + (k * 7) % 15
            );
            // One visit also glances at appointments, as a watcher may.
            let glance = [sections, &["appointments"]].concat();
            let read: &[&str] = if k == 4 { &glance } else { sections };
            p.session(NHS_A, "acct-a", "tablet-x", TABLET, HOME_B, &at, read);
        }
        p.detect()
    };
    let slot = |f: &[Finding]| {
        fired(f, NHS_A, "monitoring_cadence")
            .is_some_and(|c| c.explanation.contains("days skipped"))
    };
    let f = practice(&[21], &["consultations", "letters"]);
    let c = fired(&f, NHS_A, "monitoring_cadence").expect("fires");
    assert!(
        slot(&f)
            && c.explanation.contains("12 different days")
            && c.explanation.contains("within 12 minutes of 21:10"),
        "{}",
        c.explanation
    );
    assert_eq!(c.device_id.as_deref(), Some("tablet-x"));
    // The same visits wandering over the evening, as a person's do: no schedule.
    assert!(!slot(&practice(
        &[19, 21, 20, 22, 20, 21],
        &["consultations", "letters"]
    )));
    // The same slot spent on appointments: someone managing the patient's care, not checking on them.
    assert!(!slot(&practice(&[21], &["appointments"])));
    // Either side of midnight (23:51 to 00:05) is one slot.
    let mut p = with_habit();
    for (k, day) in (0..24).step_by(2).enumerate() {
        let date = NaiveDate::from_ymd_opt(2026, 10, 12).unwrap() + chrono::Duration::days(day);
        let at = if k % 2 == 0 {
            format!("{date} 23:{:02}", 51 + k % 7)
        } else {
            format!("{} 00:0{}", date + chrono::Duration::days(1), k % 6)
        };
        p.session(
            NHS_A,
            "acct-a",
            "tablet-x",
            TABLET,
            HOME_B,
            &at,
            &["letters"],
        );
    }
    assert!(slot(&p.detect()));
}

#[test]
fn too_little_history_is_not_flagged_by_the_baseline_rules() {
    let mut p = Practice::default();
    // A patient who first logged in this week, at night, from two devices.
    p.session(
        NHS_A,
        "acct-a",
        "phone-a",
        PHONE,
        HOME_A,
        "2026-11-18 02:00",
        &["summary"],
    );
    p.session(
        NHS_A,
        "acct-a",
        "tablet-a",
        TABLET,
        HOME_A,
        "2026-11-19 03:00",
        &["summary"],
    );
    p.session(
        NHS_A,
        "acct-a",
        "tablet-a",
        TABLET,
        HOME_A,
        "2026-11-20 03:00",
        &["summary"],
    );
    let f = p.detect();
    for rule in ["unfamiliar_device", "unusual_hour", "monitoring_cadence"] {
        assert!(fired(&f, NHS_A, rule).is_none(), "{rule}");
    }
}

#[test]
fn allowlisted_devices_and_reviewed_pairs_are_left_alone() {
    let mut p = with_habit();
    for day in ["2026-11-12 10:00", "2026-11-15 11:00"] {
        p.session(
            NHS_A,
            "acct-a",
            "kiosk-1",
            PHONE,
            HOME_A,
            day,
            &["consultations"],
        );
    }
    assert!(fired(&p.detect(), NHS_A, "unfamiliar_device").is_some());
    // Through the real binary with an allowlist config: the same store gives no finding for the kiosk.
    let dir = tempfile::tempdir().unwrap();
    let audit = write(
        dir.path(),
        "audit.csv",
        &format!("{AUDIT_HEADER}\n{}", p.audit),
    );
    let cfg = write(dir.path(), "c.toml", &format!("store = \"s\"\nreports = \"r\"\n[allowlist]\ndevices = [\"kiosk-1\"]\n[[allowlist.reviewed]]\nnhs_number = \"{NHS_B}\"\ndevice_id = \"x\"\nexpires = \"2027-01-01\"\n"));
    let c = cfg.to_str().unwrap();
    assert_eq!(
        run(&["--config", c, "ingest", audit.to_str().unwrap()]).code,
        0
    );
    let r = run(&["--config", c, "detect", "--as-of", "2026-11-22"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let findings = std::fs::read_to_string(dir.path().join("r/2026-11-22/findings.csv")).unwrap();
    assert!(!findings.contains("kiosk-1"), "{findings}");
}

#[test]
fn without_device_ids_a_shared_user_agent_is_not_someone_elses_device() {
    // The export has no device_id: devices are told apart by user agent, which two strangers share.
    let strip = |p: &mut Practice| {
        p.audit = p
            .audit
            .lines()
            .map(|l| {
                let mut f: Vec<&str> = l.split(',').collect();
                f[5] = "";
                f.join(",") + "\n"
            })
            .collect();
    };
    const ANDROID: &str = "NHSApp/2.40.2 (Android 15; Pixel 8)";
    let mut p = Practice::default();
    p.habit(NHS_A, "acct-a", "phone-a", ANDROID, HOME_A, (0, 44), 3, 19);
    p.habit(NHS_B, "acct-b", "phone-b", PHONE, HOME_B, (0, 55), 2, 8);
    // A gets a new phone of the same model and app version as B's.
    p.habit(NHS_A, "acct-a", "phone-a2", PHONE, HOME_A, (46, 55), 2, 19);
    strip(&mut p);
    let f = p.detect();
    assert_not_fired(&f, NHS_A, "shared_device");
    assert!(fired(&f, NHS_B, "shared_device").is_none());
}

/// Watcher sessions every `every` days from `days.0` to `days.1` (counted from 28 Sep) at `hour`, reading only what a
/// watcher reads.
#[allow(clippy::too_many_arguments)]
fn watching(
    p: &mut Practice,
    device: &str,
    ua: &str,
    ip: &str,
    days: (i64, i64),
    every: usize,
    hour: u32,
) {
    let start = NaiveDate::from_ymd_opt(2026, 9, 28).unwrap();
    for d in (days.0..=days.1).step_by(every) {
        let day = start + chrono::Duration::days(d);
        p.session(
            NHS_A,
            "acct-a",
            device,
            ua,
            ip,
            &format!("{day} {hour:02}:{:02}", (d * 11) % 50),
            &["consultations", "problems"],
        );
    }
}

/// The patient's risk score (0 with no findings).
fn risk_score(d: &detect::Detection, nhs: &str) -> f64 {
    d.patients
        .iter()
        .find(|p| p.nhs_number == nhs)
        .map_or(0.0, |p| f64::from(p.risk_score))
}

fn risk_level(d: &detect::Detection, nhs: &str) -> &'static str {
    d.patients
        .iter()
        .find(|p| p.nhs_number == nhs)
        .map_or("none", |p| p.risk_level)
}

/// A holder who mostly follows their own results and letters on their phone, every other evening at 19:00: three
/// visits in four read nothing they manage care with.
fn results_reader() -> Practice {
    holder_reading(&[
        &["test_results", "letters"],
        &["consultations", "test_results"],
        &["appointments", "test_results"],
        &["letters"],
    ])
}

/// A's own phone at home every `every` days over `days` at `hour`, reading `readings` in turn.
fn on_phone_a(p: &mut Practice, days: (i64, i64), every: usize, hour: u32, readings: &[&[&str]]) {
    reading(
        p, NHS_A, "phone-a", PHONE, HOME_A, days, every, hour, readings,
    );
}

/// A's own tablet at home every `every` days over `days` at `hour`, reading `readings` in turn.
fn on_tablet_a(p: &mut Practice, days: (i64, i64), every: usize, hour: u32, readings: &[&[&str]]) {
    reading(
        p, NHS_A, "tablet-a", TABLET, HOME_A, days, every, hour, readings,
    );
}

/// A's own phone every other evening at 19:00 from 28 Sep to 22 Nov, reading `readings` in turn.
fn holder_reading(readings: &[&[&str]]) -> Practice {
    let mut p = Practice::default();
    on_phone_a(&mut p, (0, 55), 2, 19, readings);
    p
}

/// `rule` did not fire on the patient (the patient's rules are shown when it did).
fn assert_not_fired(f: &[Finding], nhs: &str, rule: &str) {
    assert!(fired(f, nhs, rule).is_none(), "{:?}", rules_for(f, nhs));
}

/// The patient is not flagged: no findings at all, or low risk.
fn assert_not_flagged(d: &detect::Detection, nhs: &str) {
    assert!(
        matches!(risk_level(d, nhs), "low" | "none"),
        "{:?}",
        d.findings
    );
}

/// `unusual_hour` fired on A's own phone and A is flagged; `why` says what the test expects to be found.
fn foreign_hours_on_phone_a<'a>(d: &'a detect::Detection, why: &str) -> &'a Finding {
    let u = fired(&d.findings, NHS_A, "unusual_hour")
        .unwrap_or_else(|| panic!("{why}: {:?}", d.findings));
    assert_eq!(u.device_id.as_deref(), Some("phone-a"));
    assert_ne!(risk_level(d, NHS_A), "low", "{:?}", d.patients);
    u
}

/// [`foreign_hours_on_phone_a`], said to be someone using the phone while A sleeps.
fn night_hours_on_phone_a(d: &detect::Detection, why: &str) {
    let u = foreign_hours_on_phone_a(d, why);
    assert!(
        u.explanation.contains("while they sleep"),
        "{}",
        u.explanation
    );
}

#[test]
fn a_night_read_after_a_sensitive_entry_on_the_holders_own_phone_counts_with_its_foreign_hours_not_beside_them(
) {
    // A's own phone, three nights on three days (too few for a night run), one of them the night after a
    // domestic-abuse entry appeared. Both findings rest on one model of A's hours: together they are one witness.
    let nights = |device: &str, ua: &str| {
        let mut p = with_habit();
        p.entry(
            NHS_A,
            "E1",
            "2026-11-15 11:00",
            "205171000000107",
            "Victim of domestic violence",
        );
        for at in ["2026-11-12 02:40", "2026-11-16 02:50", "2026-11-19 03:05"] {
            p.session(
                NHS_A,
                "acct-a",
                device,
                ua,
                HOME_A,
                at,
                &["consultations", "problems"],
            );
        }
        p.detection()
    };
    let own = nights("phone-a", PHONE);
    let hours = fired(&own.findings, NHS_A, "unusual_hour").expect("foreign hours on A's phone");
    let after = fired(&own.findings, NHS_A, "access_after_sensitive_entry")
        .expect("the night read after the entry");
    assert_eq!(after.device_id.as_deref(), Some("phone-a"));
    assert!(
        after.explanation.contains("middle of their night"),
        "{}",
        after.explanation
    );
    let as_one = group_score(vec![hours.score, after.score]);
    assert_eq!(
        risk_score(&own, NHS_A),
        as_one.round(),
        "{:?}",
        own.patients
    );
    assert!(
        as_one < combine([hours.score, after.score]) - 5.0,
        "one witness scores less than two"
    );
    assert_not_flagged(&own, NHS_A);
    // The same three nights from a tablet that is not A's: the read after the entry is a witness of its own.
    let other = nights("tablet-x", TABLET);
    assert_ne!(risk_level(&other, NHS_A), "low", "{:?}", other.patients);
}

#[test]
fn the_phone_a_holder_replaced_is_not_a_device_alongside_theirs() {
    // A's old phone read results three times, a week or two apart, too few visits to say how it reads; A's new
    // phone, from 19 Oct, manages A's care every three days. `old_days` and `every` place the old phone's visits.
    let practice = |old_days: (i64, i64), every: usize| {
        let mut p = Practice::default();
        p.habit(NHS_A, "acct-a", "phone-new", PHONE, HOME_A, (21, 55), 3, 19);
        reading(
            &mut p,
            NHS_A,
            "phone-old",
            PHONE,
            HOME_A,
            old_days,
            every,
            19,
            &[&["test_results", "consultations"]],
        );
        p.detect()
    };
    // The old phone's last visit (12 Oct) came before the new phone's first: replaced, not joined.
    let f = practice((0, 14), 7);
    assert!(fired(&f, NHS_A, "unfamiliar_device").is_none(), "{f:?}");
    // The same three visits, the last two after the new phone came: a device alongside A's own.
    let f = practice((14, 42), 14);
    let u = fired(&f, NHS_A, "unfamiliar_device").expect("a device alongside the holder's");
    assert_eq!(u.device_id.as_deref(), Some("phone-old"));
}

#[test]
fn a_device_that_mostly_opens_only_the_summary_page_does_not_read_like_a_watcher() {
    // A's tablet at home, in A's evenings, every five days: most visits open the summary page and nothing else, one in
    // four checks allergies too. `page` stands in for the summary.
    let practice = |page: &str| {
        let mut p = with_habit();
        on_tablet_a(
            &mut p,
            (2, 55),
            5,
            20,
            &[&[page], &[page], &[page], &["allergies", page]],
        );
        p.detect()
    };
    // The summary is the app's front page: opening it reads nothing a watcher is after. A's own tablet.
    let f = practice("summary");
    assert!(
        rules_for(&f, NHS_A).is_empty(),
        "{:?}",
        rules_for(&f, NHS_A)
    );
    // The same visits reading consultations instead: not the way A reads.
    let f = practice("consultations");
    let u = fired(&f, NHS_A, "unfamiliar_device").expect("reads the way a watcher does");
    assert_eq!(u.device_id.as_deref(), Some("tablet-a"));
}

#[test]
fn an_established_watcher_is_found_however_long_it_has_been_there() {
    // A tablet has read A's record every four days since the data began (28 Sep), long before the recent window,
    // only ever consultations and problems, and read a domestic-abuse entry within hours of it appearing.
    let mut p = with_habit();
    watching(&mut p, "watcher-1", TABLET, HOME_A, (1, 55), 4, 13);
    p.entry(
        NHS_A,
        "E1",
        "2026-10-20 11:00",
        "205171000000107",
        "Victim of domestic violence",
    );
    p.session(
        NHS_A,
        "acct-a",
        "watcher-1",
        TABLET,
        HOME_A,
        "2026-10-20 15:10",
        &["problems"],
    );
    let d = p.detection();
    let u = fired(&d.findings, NHS_A, "unfamiliar_device")
        .expect("a device that has been there for weeks is still not the holder's");
    assert_eq!(u.device_id.as_deref(), Some("watcher-1"));
    assert!(
        u.explanation.contains("Seen since 29 Sep"),
        "says since when: {}",
        u.explanation
    );
    let a = fired(&d.findings, NHS_A, "access_after_sensitive_entry")
        .expect("the read after the entry, before the recent window, still counts");
    assert!(a.explanation.contains("4 hours"), "{}", a.explanation);
    assert_ne!(risk_level(&d, NHS_A), "low", "{:?}", d.patients);
}

#[test]
fn the_holders_own_phone_at_hours_they_do_not_keep_is_found_even_when_it_recurs() {
    // A's own phone reads consultations and problems at 03:00 every five days, from the start of the data: a third
    // of all sessions, but never one in which A manages their care.
    let mut p = with_habit();
    watching(&mut p, "phone-a", PHONE, HOME_A, (2, 55), 5, 3);
    let d = p.detection();
    let u = foreign_hours_on_phone_a(
        &d,
        "recurring foreign sessions are not learned as the holder's hours",
    );
    assert!(
        u.explanation.contains("patient's own device")
            && u.explanation.contains("19:00")
            && u.explanation.contains("while they sleep.")
            && !u.explanation.contains("away from"),
        "{}",
        u.explanation
    );
}

#[test]
fn someone_who_uses_the_holders_phone_more_than_the_holder_is_found_though_they_glance_at_care() {
    // A manages their care on their phone every third evening at 19:00. Someone else opens the same phone at 02:00
    // nearly every night from the start of the data: three visits in four of all use, and one of their visits in four
    // glances at the appointments too. Measured against all visits, their nights would set the rate of managing care;
    // against A's other hours, the nights hardly ever manage care, far below chance.
    let mut p = with_habit();
    on_phone_a(
        &mut p,
        (1, 55),
        1,
        2,
        &[
            &["consultations", "problems"],
            &["letters"],
            &["test_results", "documents"],
            &["consultations", "appointments"],
        ],
    );
    night_hours_on_phone_a(
        &p.detection(),
        "a majority that hardly ever manages care is not the holder's hours",
    );
}

/// A's phone every third evening at 19:00, reading as A does (the appointments in one visit in three), and the same
/// phone at 02:00 nearly every night, reading consultations, letters, problems and documents and glancing at the
/// appointments in one visit in six, half as often as A; each night visit from `night_ip`.
fn nights_that_glance_at_care(night_ip: &str) -> Practice {
    let mut p = Practice::default();
    on_phone_a(
        &mut p,
        (0, 55),
        3,
        19,
        &[
            &["summary", "medications"],
            &["test_results"],
            &["appointments", "test_results"],
        ],
    );
    reading(
        &mut p,
        NHS_A,
        "phone-a",
        PHONE,
        night_ip,
        (1, 55),
        1,
        2,
        &[
            &["consultations", "letters"],
            &["problems"],
            &["appointments", "documents"],
            &["letters"],
            &["test_results", "consultations"],
            &["documents"],
        ],
    );
    p
}

#[test]
fn someone_on_the_holders_phone_every_night_is_found_though_they_glance_at_care_unless_the_holder_is_seen_awake_at_night(
) {
    // Three visits in four are at 02:00, at home, and they glance at care half as often as A's evenings do: too many
    // to be a minority the model of A's hours can hold out, too often managing care to stand out from A's hours
    // beyond chance. But nothing shows A awake at night: no order, booking or message then, and no night visit from
    // anywhere A's phone is not by day. Someone who takes the phone while its owner sleeps reads it where it sleeps.
    let d = nights_that_glance_at_care(HOME_A).detection();
    night_hours_on_phone_a(
        &d,
        "nights nobody is seen awake in are not the holder's hours",
    );
    let u = fired(&d.findings, NHS_A, "unusual_hour").expect("fired");
    assert!(
        u.explanation
            .contains("mostly in the hours starting 19:00.")
            && !u.explanation.contains("starting 02:00"),
        "the holder's hours named are their evenings, not the nights: {}",
        u.explanation
    );
    // The report's hour chart draws the same: the evenings as A's usual use, the nights as none of it.
    let chart = d
        .charts
        .patients
        .iter()
        .find(|c| c.nhs_number == NHS_A)
        .expect("a flagged patient has charts");
    assert!(
        chart.hour_share[19] > 0.0
            && chart.hour_share[2] == 0.0
            && (chart.hour_share.iter().sum::<f64>() - 1.0).abs() < 1e-9,
        "A's own hours, as shares of A's own use: {:?}",
        chart.hour_share
    );

    // The same nights from another address (a night shift at work): the phone is out at night, so its owner is awake
    // and out with it. Not flagged.
    let d = nights_that_glance_at_care(HOME_B).detection();
    assert_not_flagged(&d, NHS_A);

    // At home, but every fifth night the phone is also out at 03:00, somewhere it never is by day: A is up and about
    // at night now and then, so the nights at home may be A's too. Not flagged.
    let mut p = nights_that_glance_at_care(HOME_A);
    reading(
        &mut p,
        NHS_A,
        "phone-a",
        PHONE,
        HOME_B,
        (3, 55),
        5,
        3,
        &[&["test_results"]],
    );
    assert_not_flagged(&p.detection(), NHS_A);

    // At home, but A orders a repeat prescription on the phone at 02:30 one night: A is up at night. Not flagged.
    let mut p = nights_that_glance_at_care(HOME_A);
    p.action(
        NHS_A,
        "acct-a",
        "phone-a",
        "2026-10-20 02:30",
        "order_prescription",
    );
    assert_not_flagged(&p.detection(), NHS_A);
}

#[test]
fn nights_on_the_holders_phone_are_found_when_they_are_so_many_that_the_phone_hardly_ever_manages_care(
) {
    // A manages their care on their phone at 13:00 every eighth day: seven visits. Someone else opens the same phone
    // at 01:00 every night from the start of the data, one visit in eight glancing at the appointments: 55 visits,
    // so the phone manages care in under a quarter of all its visits, and the nights' glances put the small hours in
    // the hours A's care visits span. Measured against A's other hours (every one of them managing care), the nights
    // hardly ever do: they are not A's, whatever the phone's overall rate.
    let mut p = Practice::default();
    on_phone_a(&mut p, (0, 55), 8, 13, &[&["appointments"]]);
    on_phone_a(
        &mut p,
        (1, 55),
        1,
        1,
        &[
            &["consultations"],
            &["letters"],
            &["test_results"],
            &["problems"],
            &["documents"],
            &["consultations", "problems"],
            &["letters", "test_results"],
            &["consultations", "appointments"],
        ],
    );
    night_hours_on_phone_a(
        &p.detection(),
        "nights that hardly ever manage care are not the holder's hours, however few of all visits manage care",
    );
}

#[test]
fn a_holder_who_seldom_manages_care_as_seldom_in_the_mornings_as_in_the_evenings_keeps_both() {
    // A mostly follows their own results and letters, mornings at 08:00 and evenings at 19:00 on alternate days, and
    // checks the appointments in one visit in six, mornings and evenings alike: the phone manages care in about a
    // sixth of its visits. Without a phone-wide rate of managing care as a precondition, each hour is still judged
    // against the others, and no hour of A's manages care less than the rest.
    let mut p = Practice::default();
    let readings: [&[&str]; 6] = [
        &["appointments"],
        &["test_results"],
        &["letters"],
        &["test_results", "letters"],
        &["letters"],
        &["test_results"],
    ];
    on_phone_a(&mut p, (0, 55), 2, 19, &readings);
    on_phone_a(&mut p, (1, 55), 2, 8, &readings);
    let d = p.detection();
    assert_not_fired(&d.findings, NHS_A, "unusual_hour");
    assert_not_flagged(&d, NHS_A);
}

#[test]
fn a_light_users_evening_visits_that_happen_not_to_manage_care_are_still_their_own_hours() {
    // A uses their phone in the evenings, thirteen visits over eight weeks, managing care in seven. Four of the
    // visits around 18:00 read only results or letters: fewer than their other evenings, but with so few visits that
    // chance gives as few one time in thirteen. Those hours stay A's.
    let mut p = Practice::default();
    let visits: [(&str, &[&str]); 13] = [
        ("2026-09-29 17:10", &["appointments"]),
        ("2026-10-02 18:05", &["test_results"]),
        ("2026-10-06 20:15", &["appointments", "letters"]),
        ("2026-10-10 18:20", &["letters"]),
        ("2026-10-14 21:05", &["immunisations"]),
        ("2026-10-18 19:10", &["test_results"]),
        ("2026-10-22 18:40", &["allergies", "letters"]),
        ("2026-10-26 20:30", &["test_results"]),
        ("2026-10-30 18:15", &["letters", "test_results"]),
        ("2026-11-04 21:20", &["appointments"]),
        ("2026-11-09 19:35", &["letters"]),
        ("2026-11-14 20:10", &["appointments"]),
        ("2026-11-19 00:15", &["allergies"]),
    ];
    for (at, sections) in visits {
        p.session(NHS_A, "acct-a", "phone-a", PHONE, HOME_A, at, sections);
    }
    let d = p.detection();
    assert!(
        fired(&d.findings, NHS_A, "unusual_hour").is_none(),
        "{:?}",
        d.findings
    );
}

#[test]
fn a_second_routine_far_outside_the_holders_hours_is_found_when_its_reading_is_only_somewhat_unlike_theirs(
) {
    // A mostly follows their own results on their phone, every other evening at 19:00 (three visits in four read
    // nothing they manage care with). The phone is also opened at 11:00 every third day from the start of the data,
    // reading only consultations and problems. That so many visits fall at an hour A does not keep is far beyond
    // chance; that they all read the way A mostly reads anyway is only somewhat unusual (about once in twenty). Two
    // tests that together would pass by chance less than once in 40,000 devices make a second routine.
    let d = daytime_routine(results_reader(), (1, 55), 3);
    foreign_hours_on_phone_a(&d, "the daytime routine is found");
}

#[test]
fn a_daytime_routine_on_the_holders_phone_that_began_in_the_recent_window_is_found_but_not_a_routine_that_moved_or_visits_spread_over_the_history(
) {
    // A mostly follows their own results on their phone, every other evening at 19:00, so reading like a watcher
    // tells little. Their phone is also opened at 11:00 every other day, but only in the last fortnight: seven visits,
    // too few for their hours alone to stand as a second routine. That all seven came in the recent window, which
    // holds well under half of the record's visits, is the other witness: a routine that began lately.
    let d = daytime_routine(results_reader(), (42, 54), 2);
    let u = foreign_hours_on_phone_a(&d, "the routine that began lately is found");
    assert!(
        u.explanation
            .contains("7 of these visits came in the last 14 days")
            && u.explanation.contains("a routine that began lately"),
        "{}",
        u.explanation
    );

    // A results reader who used their phone every evening at 19:00 until their routine moved a fortnight ago (a new
    // job): at 11:00 every other day they now check their results and letters, and no more evenings. The new hours crowd into the recent
    // window just as a newcomer's would, but the holder's own visits stopped as they began: moved, not added. Not
    // flagged.
    let results = [
        &["test_results", "letters"][..],
        &["consultations", "test_results"],
        &["appointments", "test_results"],
        &["letters"],
    ];
    let mut moved = Practice::default();
    on_phone_a(&mut moved, (0, 41), 1, 19, &results);
    on_phone_a(
        &mut moved,
        (43, 55),
        2,
        11,
        &[
            &["test_results", "letters"],
            &["consultations", "test_results"],
        ],
    );
    let d = moved.detection();
    assert_not_flagged(&d, NHS_A);

    // The same seven visits at 11:00, one every eight days over the whole history: strays of the holder's own, not
    // a new routine. Not flagged.
    let d = daytime_routine(results_reader(), (1, 49), 8);
    assert_not_flagged(&d, NHS_A);
    assert!(
        d.findings
            .iter()
            .all(|f| !f.explanation.contains("began lately")),
        "{:?}",
        d.findings
    );
}

#[test]
fn a_light_users_phone_taken_in_the_mornings_of_the_last_days_is_found_though_the_practice_reads_in_the_mornings(
) {
    // A is a light user: their phone at home every fifth evening at 17:00, managing their care in one visit in four
    // (three such visits: too few to learn A's hours from them alone, so every visit teaches the model). B, like much
    // of the practice, uses the app in the mornings. In the last five days A's phone is opened seven times on three
    // mornings, reading only consultations and problems.
    // - The recent visits must not teach the model their own hours: A's hours are learned from the history before the
    //   window, and from the visits since that manage care.
    // - The hours are judged against A's own (twelve visits, none in the mornings), not against the practice's
    //   mornings: a person's hours are theirs, and a routine that began lately is tested against them.
    // - Three mornings are enough when the visits crowd so far into the last days.
    let mut p = Practice::default();
    on_phone_a(
        &mut p,
        (0, 55),
        5,
        17,
        &[
            &["test_results", "letters"],
            &["consultations"],
            &["appointments", "test_results"],
            &["letters", "documents"],
        ],
    );
    practice_reads_at(&mut p, 9);
    let mornings = [
        "2026-11-18 08:05",
        "2026-11-18 10:35",
        "2026-11-20 07:40",
        "2026-11-20 09:30",
        "2026-11-20 11:05",
        "2026-11-22 08:10",
        "2026-11-22 09:45",
    ];
    phone_a_at(&mut p, &mornings, &["consultations", "problems"]);
    let d = p.detection();
    let u = foreign_hours_on_phone_a(&d, "the mornings that began in the last days are found");
    assert!(
        u.explanation.contains("a routine that began lately") && u.explanation.contains("17:00"),
        "{}",
        u.explanation
    );
    assert_not_flagged(&d, NHS_B);
}

/// A's phone every third day from home across the working day (08:00 to 16:00 in turn), managing care in three visits
/// of four, plus `extra` visits at (day, time); B, like much of the practice, reads in the evenings. In the last week
/// A's phone is opened four times on four evenings, at 17:00 and 18:00, reading `evening`.
fn evenings_new_to_the_record(extra: &[(i64, &str)], evening: &[&str]) -> detect::Detection {
    let mut p = Practice::default();
    let start = NaiveDate::from_ymd_opt(2026, 9, 28).unwrap();
    let readings: [&[&str]; 4] = [
        &["appointments", "test_results"],
        &["consultations"],
        &["allergies"],
        &["medications", "immunisations"],
    ];
    for (i, d) in (0..=54).step_by(3).enumerate() {
        let day = start + chrono::Duration::days(d);
        let hour = [8, 10, 12, 14, 16][i % 5];
        let at = format!("{day} {hour:02}:{:02}", (d * 13) % 50);
        phone_a_at(&mut p, &[&at], readings[i % 4]);
    }
    for (d, time) in extra {
        let at = format!("{} {time}", start + chrono::Duration::days(*d));
        phone_a_at(&mut p, &[&at], readings[0]);
    }
    practice_reads_at(&mut p, 18);
    let evenings = [
        "2026-11-16 17:20",
        "2026-11-18 18:05",
        "2026-11-20 17:45",
        "2026-11-22 18:30",
    ];
    phone_a_at(&mut p, &evenings, evening);
    p.detection()
}

#[test]
fn a_reading_routine_at_hours_the_record_was_never_opened_at_is_found_though_the_practice_reads_then(
) {
    // The model of A's hours is shrunk towards the practice's, and the practice reads in the evenings: 17:00 and
    // 18:00 are not foreign to it, and near A's latest hours. But A's phone had never been opened then in twenty
    // visits, and four evenings in the last week read only consultations and problems, which A read in one visit of
    // four: a routine that began lately, found by the record's own history.
    let d = evenings_new_to_the_record(&[], &["consultations", "problems"]);
    let u = foreign_hours_on_phone_a(&d, "the evenings new to the record are found");
    assert!(
        u.explanation.contains("never been opened at"),
        "{}",
        u.explanation
    );
    assert_eq!(u.evidence.len(), 4, "{}", u.explanation);
    // Evenings the history already shows (twice at 17:00 and twice at 18:00 in October) are not new.
    let d = evenings_new_to_the_record(
        &[(10, "17:10"), (25, "18:15"), (31, "17:30"), (37, "18:40")],
        &["consultations", "problems"],
    );
    assert_not_flagged(&d, NHS_A);
    // Evenings that read what A manages care with are A's own: not even a low finding.
    let d = evenings_new_to_the_record(&[], &["appointments", "allergies"]);
    assert_not_fired(&d.findings, NHS_A, "unusual_hour");
    assert_not_flagged(&d, NHS_B);
}

/// `p` with A's own phone also opened at 11:00 every `every` days over `days`, reading only what a watcher reads.
fn daytime_routine(mut p: Practice, days: (i64, i64), every: usize) -> detect::Detection {
    watching(&mut p, "phone-a", PHONE, HOME_A, days, every, 11);
    p.detection()
}

#[test]
fn someone_else_on_the_holders_phone_in_the_daytime_is_found_but_not_a_results_reader_at_lunchtime_or_the_holder_abroad(
) {
    // A keeps evenings (19:00, every three days, managing their care). Their own phone is also opened at 11:00
    // every four days from the start of the data, from home, reading only consultations and problems: a second
    // routine on the holder's phone, at an hour they do not keep, reading the way they never do.
    let d = daytime_routine(with_habit(), (2, 54), 4);
    let u = foreign_hours_on_phone_a(&d, "the daytime routine is found");
    // In the daytime, the patient is apart from their phone rather than asleep.
    assert!(
        u.explanation.contains("patient's own device")
            && u.explanation.contains("while they are away from it")
            && !u.explanation.contains("sleep"),
        "{}",
        u.explanation
    );

    // A holder who mostly follows their own results and letters (three evening visits in four read nothing else),
    // doing the same now and then at lunchtime: the daytime visits read the way the holder reads. Not flagged.
    let mut results_reader = results_reader();
    reading(
        &mut results_reader,
        NHS_A,
        "phone-a",
        PHONE,
        HOME_A,
        (1, 55),
        6,
        11,
        &[&["test_results", "letters"], &["consultations"]],
    );
    let d = results_reader.detection();
    assert_not_flagged(&d, NHS_A);

    // The same prying visits, mostly over an address A's phone never uses at home: A abroad, hours shifted. Not
    // flagged.
    let mut abroad = with_habit();
    watching(&mut abroad, "phone-a", PHONE, "203.0.113.9", (2, 46), 4, 11);
    watching(&mut abroad, "phone-a", PHONE, HOME_A, (50, 54), 4, 11);
    let d = abroad.detection();
    assert_not_flagged(&d, NHS_A);
}

#[test]
fn findings_about_one_device_count_once_and_separate_evidence_adds_up() {
    // One device seen through several rules (not the holder's, at foreign hours, after a sensitive entry) is one
    // witness: its risk stays below the sum of independent findings; an appointment overlap adds independently.
    let mut p = with_habit();
    watching(&mut p, "watcher-1", TABLET, HOME_B, (1, 55), 4, 10);
    p.entry(
        NHS_A,
        "E1",
        "2026-11-14 11:00",
        "205171000000107",
        "Victim of domestic violence",
    );
    p.session(
        NHS_A,
        "acct-a",
        "watcher-1",
        TABLET,
        HOME_B,
        "2026-11-14 12:10",
        &["problems"],
    );
    let d = p.detection();
    let scores: Vec<f64> = d
        .findings
        .iter()
        .filter(|f| f.nhs_number == NHS_A)
        .map(|f| f.score)
        .collect();
    assert!(scores.len() >= 3, "{:?}", d.findings);
    let independent = accesswatch::detect::scoring::combine(scores.iter().copied());
    let risk = risk_score(&d, NHS_A);
    assert!(
        risk < independent - 5.0,
        "grouped {risk} vs counted as independent {independent}"
    );
    let mut q = p;
    q.visit(NHS_A, "V1", "2026-11-17 10:00", "2026-11-17 10:20");
    q.session(
        NHS_A,
        "acct-a",
        "watcher-1",
        TABLET,
        HOME_B,
        "2026-11-17 10:05",
        &["appointments", "consultations"],
    );
    let with_visit = q.detection();
    let risk2 = risk_score(&with_visit, NHS_A);
    assert!(
        risk2 > risk + 5.0,
        "a visit overlap corroborates: {risk} -> {risk2}"
    );
}

/// The audit rows with some columns emptied (a thin export), by their position in [`AUDIT_HEADER`].
fn thin(p: &Practice, columns: &[&str]) -> String {
    let header: Vec<&str> = AUDIT_HEADER.split(',').collect();
    let drop: Vec<usize> = columns
        .iter()
        .map(|c| header.iter().position(|h| h == c).unwrap())
        .collect();
    let keep = |line: &str| -> String {
        line.split(',')
            .enumerate()
            .filter(|(i, _)| !drop.contains(i))
            .map(|(_, f)| f)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut out = keep(AUDIT_HEADER) + "\n";
    for l in p.audit.lines() {
        out += &(keep(l) + "\n");
    }
    out
}

/// `audit.csv` with `audit_text`, ingested and detected through the binary as of 22 Nov: the temporary folder
/// (kept alive by the caller) and the run folder.
fn run_folder_for(audit_text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let audit = write(dir.path(), "audit.csv", audit_text);
    let (store, reports) = (dir.path().join("s"), dir.path().join("r"));
    let (s, r) = (store.to_str().unwrap(), reports.to_str().unwrap());
    assert_eq!(
        run(&["ingest", "--store", s, audit.to_str().unwrap()]).code,
        0
    );
    let out = run(&["detect", "--store", s, "--out", r, "--as-of", "2026-11-22"]);
    assert!(out.code == 0 || out.code == 4, "{}", out.stderr);
    (dir, reports.join("2026-11-22"))
}

#[test]
fn a_bare_export_says_which_rules_could_not_run_and_still_finds_foreign_hours() {
    let mut p = with_habit();
    watching(&mut p, "phone-a", PHONE, HOME_A, (2, 55), 5, 3);
    let (_dir, run_dir) = run_folder_for(&thin(
        &p,
        &[
            "device_id",
            "user_agent",
            "ip_address",
            "session_id",
            "account_id",
        ],
    ));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("summary.json")).unwrap())
            .unwrap();
    let det = &summary["detection"];
    assert_eq!(det["coverage"]["device_id"], 0.0);
    assert_eq!(det["coverage"]["session_id"], 0.0);
    // Sessions rebuilt from gaps in activity: one per visit, even one that crosses a half hour.
    assert_eq!(det["sessions"], p.sessions as u64, "{det}");
    let not_run: Vec<&str> = det["rules_not_run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule_id"].as_str().unwrap())
        .collect();
    for rule in [
        "unfamiliar_device",
        "shared_device",
        "account_change_then_new_device",
        "concurrent_sessions",
        "access_during_appointment",
    ] {
        assert!(not_run.contains(&rule), "{rule} cannot run: {not_run:?}");
    }
    assert!(!not_run.contains(&"unusual_hour"));
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(
        html.contains("could not run") && html.contains("unfamiliar_device"),
        "the lead's page says which rules could not run"
    );
    let findings = std::fs::read_to_string(run_dir.join("findings.csv")).unwrap();
    assert!(
        findings
            .lines()
            .any(|l| l.contains(NHS_A) && l.contains("unusual_hour")),
        "{findings}"
    );
}

/// The practice's audit rows with the export's identifying columns left empty, as a bare export sends them: no device,
/// user agent, address, session or account.
fn bare(mut p: Practice) -> Practice {
    let header: Vec<&str> = AUDIT_HEADER.split(',').collect();
    let empty: Vec<usize> = [
        "device_id",
        "user_agent",
        "ip_address",
        "session_id",
        "account_id",
    ]
    .iter()
    .map(|c| header.iter().position(|h| h == c).unwrap())
    .collect();
    p.audit = p
        .audit
        .lines()
        .map(|l| {
            let f: Vec<&str> = l
                .split(',')
                .enumerate()
                .map(|(i, f)| if empty.contains(&i) { "" } else { f })
                .collect();
            f.join(",") + "\n"
        })
        .collect();
    p
}

/// A's phone every three days at 19:00, reading appointments and medications one evening and consultations and
/// problems the next; and night visits on it at 03:00 every ten days from day 5, reading consultations and problems.
/// In a bare export.
fn nights_on_a_results_readers_phone(awake_once: bool) -> Practice {
    let mut p = Practice::default();
    phone_a_reading(
        &mut p,
        (0, 55),
        3,
        19,
        &[
            &["appointments", "medications"],
            &["consultations", "problems"],
        ],
    );
    watching(&mut p, "phone-a", PHONE, HOME_A, (5, 55), 10, 3);
    if awake_once {
        p.action(
            NHS_A,
            "acct-a",
            "phone-a",
            "2026-10-20 01:30",
            "book_appointment",
        );
    }
    bare(p)
}

#[test]
fn a_bare_export_flags_night_reading_on_hours_alone_unless_the_holder_manages_care_at_night() {
    // A reads their own results and letters as often as their appointments; someone reads A's results on A's phone
    // at 03:00 every ten days. The export names no device, address, session or account, and the night visits read
    // no more unlike A than chance allows: the hours are all there is, and a run of them that makes up a good share
    // of the record's use stands alone.
    let d = nights_on_a_results_readers_phone(false).detection();
    let u = fired(&d.findings, NHS_A, "unusual_hour")
        .unwrap_or_else(|| panic!("night reading on hours alone: {:?}", d.findings));
    assert!(
        u.explanation.contains("6 times")
            && u.explanation
                .contains("The export cannot tell devices apart")
            && !u.explanation.contains("It was the patient's own device"),
        "{}",
        u.explanation
    );
    assert_ne!(risk_level(&d, NHS_A), "low", "{:?}", d.findings);

    // The same, and A books an appointment at 01:30 one night: A is awake at night, as a night-shift worker is, and
    // the export has nothing else to tell A's nights from someone else's. The hours no longer stand alone.
    let d = nights_on_a_results_readers_phone(true).detection();
    assert_eq!(risk_level(&d, NHS_A), "low", "{:?}", d.findings);
}

#[test]
fn without_device_ids_a_phone_moving_between_networks_or_updating_its_app_is_not_a_new_device() {
    // No device id or user agent: an address must not stand in for a device. A's phone alternates between home
    // Wi-Fi and mobile data (a new address each time), at A's usual hour.
    let mut p = Practice::default();
    let start = NaiveDate::from_ymd_opt(2026, 9, 28).unwrap();
    for d in (0..55).step_by(2) {
        let day = start + chrono::Duration::days(d);
        let ip = if d % 4 == 0 {
            HOME_A.to_string()
        } else {
            format!("100.64.{}.{}", d % 200, d % 250 + 1)
        };
        p.session(
            NHS_A,
            "acct-a",
            "phone-a",
            PHONE,
            &ip,
            &format!("{day} 19:{:02}", (d * 7) % 50),
            &["summary", "medications"],
        );
    }
    let stripped = thin(&p, &["device_id", "user_agent"]);
    p.audit = stripped
        .lines()
        .skip(1)
        .map(|l| {
            // Put the columns back, empty, so the builder's header still fits.
            let f: Vec<&str> = l.split(',').collect();
            format!(
                "{},{},{},{},{},,,{}\n",
                f[0],
                f[1],
                f[2],
                f[3],
                f[4],
                f[5..].join(",")
            )
        })
        .collect();
    let f = p.detect();
    assert!(
        rules_for(&f, NHS_A).is_empty(),
        "{:?}",
        rules_for(&f, NHS_A)
    );

    // With user agents but no device id, an app update changes the version, not the device.
    let mut u = Practice::default();
    u.habit(
        NHS_A,
        "acct-a",
        "",
        "NHSApp/2.40.2 (Android 15; Pixel 8)",
        HOME_A,
        (0, 30),
        3,
        19,
    );
    u.habit(
        NHS_A,
        "acct-a",
        "",
        "NHSApp/2.41.0 (Android 15; Pixel 8)",
        HOME_A,
        (31, 55),
        3,
        19,
    );
    u.session(
        NHS_A,
        "acct-a",
        "",
        "NHSApp/2.40.2 (Android 15; Pixel 8)",
        HOME_A,
        "2026-11-20 19:40",
        &["summary"],
    );
    let f = u.detect();
    assert!(
        rules_for(&f, NHS_A).is_empty(),
        "{:?}",
        rules_for(&f, NHS_A)
    );
}

#[test]
fn without_device_ids_two_phones_of_one_model_whose_versions_take_turns_are_two_devices() {
    // The export has no device ids. The holder's phone (app 2.40.2) manages their care at home in the evenings; a
    // phone of the same model with another app version, on the same connection an hour or two later, only reads
    // consultations and problems, on and off through the whole look-back. Versions masked, the two are one device
    // and the watcher's reading is learned as the holder's; but one phone runs one version at a time, and an update
    // never goes back, so versions that take turns are two phones.
    const OURS: &str = "NHSApp/2.40.2 (Android 15; Pixel 8)";
    const THEIRS: &str = "NHSApp/2.41.0 (Android 15; Pixel 8)";
    let mut p = Practice::default();
    p.habit(NHS_A, "acct-a", "", OURS, HOME_A, (0, 55), 2, 19);
    watching(&mut p, "", THEIRS, HOME_A, (1, 55), 3, 21);
    let f = p.detect();
    let found = fired(&f, NHS_A, "unfamiliar_device");
    assert!(found.is_some(), "{:?}", rules_for(&f, NHS_A));

    // The watcher's phone updates its app halfway: still one phone, the one whose versions took turns with the
    // holder's from the start.
    const UPDATED: &str = "NHSApp/2.42.1 (Android 15; Pixel 8)";
    let mut p = Practice::default();
    p.habit(NHS_A, "acct-a", "", OURS, HOME_A, (0, 55), 2, 19);
    watching(&mut p, "", THEIRS, HOME_A, (1, 30), 3, 21);
    watching(&mut p, "", UPDATED, HOME_A, (31, 55), 3, 21);
    let f = p.detect();
    let devices: std::collections::BTreeSet<Option<&str>> = f
        .iter()
        .filter(|x| x.nhs_number == NHS_A && x.rule_id == "unfamiliar_device")
        .map(|x| x.device_id.as_deref())
        .collect();
    assert_eq!(devices.len(), 1, "{devices:?}");

    // The look-alike: the holder's phone updated its app, and since then has only followed their results and
    // letters. Versions that follow one another are one phone, however its reading changes.
    let mut p = Practice::default();
    p.habit(NHS_A, "acct-a", "", OURS, HOME_A, (0, 49), 2, 19);
    reading(
        &mut p,
        NHS_A,
        "",
        THEIRS,
        HOME_A,
        (50, 55),
        1,
        19,
        &[&["test_results", "letters"]],
    );
    let f = p.detect();
    assert!(
        rules_for(&f, NHS_A).is_empty(),
        "{:?}",
        rules_for(&f, NHS_A)
    );

    // And the holder's own second phone of that model, at another version, managing their care too.
    let mut p = Practice::default();
    p.habit(NHS_A, "acct-a", "", OURS, HOME_A, (0, 55), 2, 19);
    p.habit(NHS_A, "acct-a", "", THEIRS, HOME_A, (1, 55), 3, 21);
    let f = p.detect();
    assert!(
        rules_for(&f, NHS_A).is_empty(),
        "{:?}",
        rules_for(&f, NHS_A)
    );
}

/// A habit that reads `readings` in turn: a session every `every` days at `hour`, from day `days.0` to `days.1`.
#[allow(clippy::too_many_arguments)]
fn reading(
    p: &mut Practice,
    nhs: &str,
    device: &str,
    ua: &str,
    ip: &str,
    days: (i64, i64),
    every: usize,
    hour: u32,
    readings: &[&[&str]],
) {
    let start = NaiveDate::from_ymd_opt(2026, 9, 28).unwrap();
    let account = if nhs == NHS_A { "acct-a" } else { "acct-b" };
    for (i, d) in (days.0..=days.1).step_by(every).enumerate() {
        let day = start + chrono::Duration::days(d);
        p.session(
            nhs,
            account,
            device,
            ua,
            ip,
            &format!("{day} {hour:02}:{:02}", (d * 13).rem_euclid(50)),
            readings[i % readings.len()],
        );
    }
}

/// B, standing for the practice, manages their care on their own phone every day at `hour`: the practice's hours,
/// which the model of A's hours is shrunk towards.
fn practice_reads_at(p: &mut Practice, hour: u32) {
    reading(
        p,
        NHS_B,
        "phone-b",
        PHONE,
        HOME_B,
        (0, 55),
        1,
        hour,
        &[&["appointments"], &["medications", "allergies"]],
    );
}

/// B's phone, from B's home, reading A's record every `every` days over `days` at `hour`.
fn phone_b_reads_a(
    p: &mut Practice,
    days: (i64, i64),
    every: usize,
    hour: u32,
    readings: &[&[&str]],
) {
    reading(
        p, NHS_A, "phone-b", PHONE, HOME_B, days, every, hour, readings,
    );
}

/// A tablet that only ever reads results, letters and consultations, in the evenings (every 4 days, at 20:00 and
/// 22:00 in turn, as a person's evenings vary), for weeks.
fn results_tablet(p: &mut Practice) {
    for (first, hour) in [(1, 20), (5, 22)] {
        reading(
            p,
            NHS_A,
            "tablet-a",
            TABLET,
            HOME_A,
            (first, 55),
            8,
            hour,
            &[&["test_results", "letters"], &["consultations"]],
        );
    }
}

#[test]
fn a_device_reads_like_a_watcher_only_against_how_the_holder_reads() {
    let tablet = results_tablet;
    // Beside a holder who books and reads their summary, appointments and medications, it is a watcher.
    let mut broad = with_habit();
    tablet(&mut broad);
    let d = broad.detection();
    let u = fired(&d.findings, NHS_A, "unfamiliar_device").expect("fires");
    assert!(u.explanation.contains("never booked"), "{}", u.explanation);
    assert_ne!(risk_level(&d, NHS_A), "low", "{:?}", d.patients);
    // Beside a holder who mostly follows their own results and letters on their phone, it reads the way they do:
    // at most a weak finding, and the patient is not flagged.
    let mut results_reader = results_reader();
    tablet(&mut results_reader);
    let d = results_reader.detection();
    if let Some(u) = fired(&d.findings, NHS_A, "unfamiliar_device") {
        assert!(!u.explanation.contains("never booked"), "{}", u.explanation);
    }
    assert_eq!(risk_level(&d, NHS_A), "low", "{:?}", d.findings);
}

#[test]
fn a_device_reads_like_a_watcher_only_beyond_what_a_light_holders_few_visits_can_say() {
    // A holder who reads their summary and appointments in half their visits and results and letters in the other
    // half, every `every` days; a tablet that reads consultations and letters in 11 of its 12 visits.
    let mut readings: Vec<&[&str]> = vec![&["consultations", "letters"]; 11];
    readings.push(&["allergies"]);
    let practice = |every: usize| {
        let mut p = Practice::default();
        on_phone_a(
            &mut p,
            (0, 55),
            every,
            19,
            &[&["summary", "appointments"], &["test_results", "letters"]],
        );
        on_tablet_a(&mut p, (1, 45), 4, 21, &readings);
        p.detection()
    };
    let reads_like_watcher = |d: &detect::Detection| {
        fired(&d.findings, NHS_A, "unfamiliar_device")
            .is_some_and(|u| u.explanation.contains("never booked"))
    };
    // Beside 28 such visits of the holder's, the tablet reads unlike them (Fisher's exact test: about once in 80).
    let d = practice(2);
    assert!(reads_like_watcher(&d), "{:?}", d.findings);
    // The finding says how many of the tablet's visits read that way, not that all of them did.
    let u = fired(&d.findings, NHS_A, "unfamiliar_device").expect("fires");
    assert!(
        u.explanation
            .contains("In 11 of its 12 visits it read nothing"),
        "{}",
        u.explanation
    );
    // Beside 6, the holder's own rate is too uncertain to say so (about once in 12), though against the rate those
    // 6 suggest, 11 of 12 would happen once in 300.
    let d = practice(10);
    assert!(!reads_like_watcher(&d), "{:?}", d.findings);
}

#[test]
fn a_device_that_books_for_the_patient_does_not_read_like_a_watcher_however_much_else_it_reads_results(
) {
    // The tablet of the test above, which reads like a watcher beside this holder...
    let tablet = results_tablet;
    let mut watcher = with_habit();
    tablet(&mut watcher);
    let d = watcher.detection();
    let u = fired(&d.findings, NHS_A, "unfamiliar_device").expect("fires");
    assert!(u.explanation.contains("never booked"), "{}", u.explanation);
    let watcher_score = u.score;
    // ...once booked an appointment on it: it manages the patient's care, so it is not said never to have booked, and
    // it weighs less than a device that only reads.
    let mut booked = with_habit();
    tablet(&mut booked);
    booked.action(
        NHS_A,
        "acct-a",
        "tablet-a",
        "2026-10-20 21:30",
        "book_appointment",
    );
    let d = booked.detection();
    if let Some(u) = fired(&d.findings, NHS_A, "unfamiliar_device") {
        assert!(!u.explanation.contains("never booked"), "{}", u.explanation);
        assert!(u.score < watcher_score, "{} vs {watcher_score}", u.score);
    }
}

/// A's habit on their phone until day `old_last`, a password reset on a new phone on 12 Nov (day 45), and the new
/// phone reading consultations and results every other day over `new_days` at `hour`.
fn new_phone_after_reset(old_last: u32, new_days: (i64, i64), hour: u32) -> Practice {
    reset_then_reading(
        old_last,
        new_days,
        hour,
        &[&["consultations", "test_results"]],
    )
}

/// A's habit ([`with_habit`]: their phone every 3 days at 19:00, at home), a password reset on a new tablet at
/// `change_at`, and the tablet reading `readings` in turn every `every` days over `days` at `hour`, from `ip`.
#[allow(clippy::too_many_arguments)]
fn tablet_after_reset(
    change_at: &str,
    days: (i64, i64),
    every: usize,
    hour: u32,
    ip: &str,
    readings: &[&[&str]],
) -> Practice {
    let mut p = with_habit();
    p.action(NHS_A, "acct-a", "tablet-new", change_at, "change_password");
    reading(
        &mut p,
        NHS_A,
        "tablet-new",
        TABLET,
        ip,
        days,
        every,
        hour,
        readings,
    );
    p
}

/// [`new_phone_after_reset`], the new phone reading `readings` in turn.
fn reset_then_reading(
    old_last: u32,
    new_days: (i64, i64),
    hour: u32,
    readings: &[&[&str]],
) -> Practice {
    let mut p = phone_a_until(old_last);
    p.action(
        NHS_A,
        "acct-a",
        "phone-new",
        "2026-11-12 19:05",
        "change_password",
    );
    reading(
        &mut p,
        NHS_A,
        "phone-new",
        PHONE,
        HOME_A,
        new_days,
        2,
        hour,
        readings,
    );
    p
}

#[test]
fn a_device_reads_like_a_watcher_only_when_chance_cannot_explain_it() {
    // A holder whose evening visits read their summary and appointments half the time, and results and letters the
    // other half; a tablet that reads only consultations and letters, every four days at 21:00, `visits` times.
    let practice = |visits: i64| {
        let mut p = holder_reading(&[&["summary", "appointments"], &["test_results", "letters"]]);
        on_tablet_a(
            &mut p,
            (1, 1 + 4 * (visits - 1)),
            4,
            21,
            &[&["consultations", "letters"]],
        );
        p.detection()
    };
    let reads_like_watcher = |d: &detect::Detection| {
        fired(&d.findings, NHS_A, "unfamiliar_device")
            .is_some_and(|u| u.explanation.contains("never booked"))
    };
    // Five such visits happen one time in 32 from a holder who reads that way half the time: not yet telling.
    assert!(!reads_like_watcher(&practice(5)));
    // Twelve happen about one time in 4,000: this tablet reads the way a watcher does.
    let d = practice(12);
    assert!(reads_like_watcher(&d), "{:?}", d.findings);
}

/// A is flagged, with a finding on `device` that calls it not the patient's own.
fn flagged_for_a_device_not_theirs(d: &detect::Detection, device: &str) {
    assert_ne!(risk_level(d, NHS_A), "low", "{:?}", d.findings);
    assert!(
        d.findings.iter().any(|f| f.nhs_number == NHS_A
            && f.device_id.as_deref() == Some(device)
            && f.explanation.contains("not the patient's own")),
        "{:?}",
        d.findings
    );
}

#[test]
fn a_household_tablet_that_reads_care_sections_is_not_the_holders_when_it_is_timed_to_sensitive_entries(
) {
    // A's phone every three days at 19:00. From 12 Nov a tablet at A's home is used six times, half of them opening
    // the appointments or immunisations, as a household tablet A uses for their own care would. Two domestic-abuse
    // entries appear on 13 and 18 Nov at 11:00.
    let practice = |timed: bool, phone_reads_them_too: bool| {
        let mut p = with_habit();
        for (id, at) in [("E1", "2026-11-13 11:00"), ("E2", "2026-11-18 11:00")] {
            p.entry(
                NHS_A,
                id,
                at,
                "205171000000107",
                "Victim of domestic violence",
            );
        }
        if phone_reads_them_too {
            for at in ["2026-11-13 11:20", "2026-11-18 11:15"] {
                p.session(NHS_A, "acct-a", "phone-a", PHONE, HOME_A, at, &["problems"]);
            }
        }
        let (first, second) = if timed {
            ("2026-11-13 11:35", "2026-11-18 11:40")
        } else {
            ("2026-11-13 19:35", "2026-11-18 19:40")
        };
        let visits: [(&str, &[&str]); 6] = [
            ("2026-11-12 20:00", &["appointments"]),
            (first, &["consultations"]),
            ("2026-11-15 19:10", &["immunisations"]),
            (second, &["problems"]),
            ("2026-11-19 19:20", &["appointments", "letters"]),
            ("2026-11-21 19:30", &["letters"]),
        ];
        for (at, sections) in visits {
            p.session(NHS_A, "acct-a", "tablet-a", TABLET, HOME_A, at, sections);
        }
        p.detection()
    };
    // Read in the evenings, hours after each entry: A's own tablet.
    let d = practice(false, false);
    assert_not_flagged(&d, NHS_A);
    // Opened within the hour of each entry when A's phone reads them at once too: A follows their record closely,
    // and the tablet is theirs as well.
    let d = practice(true, true);
    assert_not_flagged(&d, NHS_A);
    // Opened within the hour of each entry, while A's phone is not: timed to what appears on the record, which the
    // care sections it opens do not outweigh.
    let d = practice(true, false);
    flagged_for_a_device_not_theirs(&d, "tablet-a");
}

#[test]
fn a_phone_that_takes_over_at_the_holders_hours_is_their_new_phone_only_where_the_holder_is() {
    // A's phone every three days at 19:00 at home, last on 16 Nov. From 18 Nov another phone reads consultations and
    // problems every day at 19:00, once the evening after a domestic-abuse entry appeared. From A's home it is A's
    // new phone; from an address none of A's visits ever came from, it is not known to be A's, however well it keeps
    // A's hours.
    let practice = |ip: &str| {
        let mut p = phone_a_until(49);
        p.entry(
            NHS_A,
            "E1",
            "2026-11-19 11:00",
            "205171000000107",
            "Victim of domestic violence",
        );
        reading(
            &mut p,
            NHS_A,
            "phone-other",
            PHONE,
            ip,
            (51, 55),
            1,
            19,
            &[&["consultations", "problems"]],
        );
        p.detection()
    };
    let d = practice(HOME_A);
    assert_not_flagged(&d, NHS_A);
    let d = practice("90.9.9.9");
    flagged_for_a_device_not_theirs(&d, "phone-other");
}

#[test]
fn a_new_phone_set_up_with_a_new_password_that_takes_over_is_the_holders_own() {
    // A resets their password on a new phone on 12 Nov, which from then on is the only one used, at their hours;
    // it happens to read only consultations and results in its first few visits.
    let practice = |old_phone_goes_on: bool| {
        let last = if old_phone_goes_on { 55 } else { 44 };
        new_phone_after_reset(last, (45, 55), 19).detection()
    };
    let d = practice(false);
    assert_eq!(risk_level(&d, NHS_A), "low", "{:?}", d.findings);
    if let Some(a) = fired(&d.findings, NHS_A, "account_change_then_new_device") {
        assert!(a.score < 45.0, "{a:?}");
    }
    // The same change and the same reading while the patient's own phone goes on being used: a takeover.
    let d = practice(true);
    let a = fired(&d.findings, NHS_A, "account_change_then_new_device").expect("fires");
    assert!(a.explanation.contains("password"), "{}", a.explanation);
    assert_ne!(risk_level(&d, NHS_A), "low", "{:?}", d.patients);
}

#[test]
fn a_new_phone_that_takes_over_after_a_reset_but_keeps_other_hours_is_not_the_patients_replacement()
{
    // A resets their password on a new phone on 12 Nov and never uses the old one again (A kept 19:00 on it). The
    // new phone reads A's summary, appointments and medications every other day from 13 Nov, as A did, at `hour`.
    let practice = |hour: u32| {
        let d = reset_then_reading(
            44,
            (46, 55),
            hour,
            &[&["summary", "appointments", "medications"]],
        )
        .detection();
        fired(&d.findings, NHS_A, "account_change_then_new_device")
            .expect("fires")
            .clone()
    };
    // At A's hour: A's new phone, discounted below medium.
    let own = practice(19);
    assert!(own.score < 45.0, "{own:?}");
    // Two hours later: still within a person's rhythm.
    assert!(practice(21).score < 45.0);
    // At 03:00: whoever has the login keeps other hours than A did. Not discounted, and said.
    let moved = practice(3);
    assert!(moved.score >= 45.0, "{moved:?}");
    assert!(
        moved.explanation.contains("other times of day")
            && moved
                .explanation
                .contains("mostly 03:00-03:59, against mostly 19:00-19:59"),
        "{}",
        moved.explanation
    );
}

#[test]
fn a_device_set_up_with_a_reset_used_now_and_then_at_home_or_at_the_holders_hours_beside_their_phone_is_their_second_device(
) {
    // A keeps their phone (every 3 days at 19:00, at home). A password reset on a new tablet on `change` (a day
    // number from 28 Sep), which then reads results and consultations every `every` days, `visits` times at most,
    // from `ip` at `hour`.
    let practice = |change: i64, visits: i64, every: i64, ip: &str, hour: u32| {
        let day = NaiveDate::from_ymd_opt(2026, 9, 28).unwrap() + chrono::Duration::days(change);
        let last = (change + 1 + every * (visits - 1)).min(55);
        let p = tablet_after_reset(
            &format!("{day} 14:05"),
            (change + 1, last),
            every as usize,
            hour,
            ip,
            &[&["consultations", "test_results"]],
        );
        let d = p.detection();
        fired(&d.findings, NHS_A, "account_change_then_new_device")
            .expect("fires")
            .score
    };
    // From 18 Oct, four visits a week apart over the home connection, fewer than A's phone makes meanwhile: A's
    // second device.
    assert!(practice(20, 4, 7, HOME_A, 14) < 45.0);
    // The same from an address A's devices never use, at 14:00, an hour A does not keep: someone else's.
    assert!(practice(20, 4, 7, HOME_B, 14) >= 45.0);
    // From that address but in A's own evenings: A's second device away from home.
    assert!(practice(20, 4, 7, HOME_B, 19) < 45.0);
    // As many reading visits as A's phone makes after the change (twelve each, every three days; the reset itself
    // reads nothing and is not a visit): A's second device.
    assert!(practice(20, 12, 3, HOME_A, 14) < 45.0);
    // Every day, more than A's own phone since the change: someone reading on.
    assert!(practice(20, 35, 1, HOME_A, 14) >= 45.0);
    // A change in the last fortnight: too soon to tell a second device from a takeover.
    assert!(practice(46, 2, 7, HOME_A, 14) >= 45.0);
}

#[test]
fn a_few_visits_are_too_few_to_say_a_new_phone_reads_like_a_watcher() {
    // A resets their password on a new phone on 12 Nov and stops using the old one. The new phone is used `visits`
    // times, every other day from 13 Nov at 22:00, reading only consultations and results.
    let practice =
        |visits: i64| new_phone_after_reset(44, (46, 46 + 2 * (visits - 1)), 22).detection();
    // Three visits: as likely a new phone's first look at the latest results as a watcher. Not flagged.
    let d = practice(3);
    assert_not_flagged(&d, NHS_A);
    // Five visits that only ever read what a watcher reads, while the patient has lost the use of their own phone:
    // someone else has the login.
    let d = practice(5);
    let a = fired(&d.findings, NHS_A, "account_change_then_new_device").expect("fires");
    assert!(
        a.explanation
            .contains("In all 5 of its visits it read nothing"),
        "{}",
        a.explanation
    );
    assert_ne!(risk_level(&d, NHS_A), "low", "{:?}", d.patients);
}

#[test]
fn another_patients_phone_that_starts_when_the_holder_goes_quiet_is_not_the_holders_next_phone() {
    // A last used their phone on 7 Nov. From 17 Nov, B's own phone (B's record, for weeks) reads A's record at
    // A's usual hour: it comes after A's phone and at A's hours, yet it is B's.
    let mut p = Practice::default();
    p.habit(NHS_A, "acct-a", "phone-a", PHONE, HOME_A, (0, 40), 3, 14);
    p.habit(NHS_B, "acct-b", "phone-b", PHONE, HOME_B, (0, 55), 2, 14);
    phone_b_reads_a(&mut p, (50, 54), 2, 14, &[&["consultations", "problems"]]);
    let f = p.detect();
    let s = fired(&f, NHS_A, "shared_device").expect("fires");
    assert_eq!(s.device_id.as_deref(), Some("phone-b"));
}

#[test]
fn another_patients_own_phone_reading_the_holders_sections_here_is_still_theirs_unless_it_manages_care_here(
) {
    // B's phone manages B's care (B reads their appointments and medications on it, and with `b_orders` orders
    // prescriptions on it too). For eight weeks it has also read A's record, appointments now and then among what
    // it reads, so by its reading alone it could pass for one of A's own devices. A keeps their own phone
    // throughout. `ua` says what kind of device it is.
    let practice = |books_for_a: bool, a_keeps_own_phone: bool, b_orders: bool, ua: &str| {
        let mut p = if a_keeps_own_phone {
            with_habit()
        } else {
            Practice::default()
        };
        p.habit(NHS_B, "acct-b", "phone-b", ua, HOME_B, (0, 55), 2, 8);
        if b_orders {
            for at in ["2026-10-05 08:30", "2026-11-02 08:30"] {
                p.action(NHS_B, "acct-b", "phone-b", at, "order_prescription");
            }
        }
        reading(
            &mut p,
            NHS_A,
            "phone-b",
            ua,
            HOME_B,
            (1, 55),
            4,
            21,
            &[&["consultations", "appointments"], &["letters", "problems"]],
        );
        if books_for_a {
            p.action(
                NHS_A,
                "acct-a",
                "phone-b",
                "2026-11-10 21:30",
                "book_appointment",
            );
        }
        p.detect()
    };
    let f = practice(false, true, true, PHONE);
    let s = fired(&f, NHS_A, "shared_device").expect("fires");
    assert_eq!(s.device_id.as_deref(), Some("phone-b"));
    assert!(
        rules_for(&f, NHS_B).is_empty(),
        "{:?}",
        rules_for(&f, NHS_B)
    );
    // A phone is one person's: B reading their own care sections on it is enough to make it B's, orders or not.
    let f = practice(false, true, false, PHONE);
    let s = fired(&f, NHS_A, "shared_device").expect("B's phone without orders");
    assert_eq!(s.device_id.as_deref(), Some("phone-b"));
    // A tablet is a family's: reading each partner's care sections, it is theirs as well, unless B orders on it.
    let f = practice(false, true, false, TABLET);
    assert_not_fired(&f, NHS_A, "shared_device");
    // The same phone booking for A is A managing their care on it (or someone doing it for them): not flagged.
    let f = practice(true, true, true, PHONE);
    assert_not_fired(&f, NHS_A, "shared_device");
    // Nor when it is the only device A uses: A reads their record on their partner's phone.
    let f = practice(false, false, true, PHONE);
    assert_not_fired(&f, NHS_A, "shared_device");
}

#[test]
fn without_device_ids_another_patients_phone_is_followed_by_its_kind_and_their_home_connection() {
    // An export with no device ids: every device is its user agent. A reads their record on their phone at home; B
    // manages B's care on the same kind of phone at B's home. From 18 Oct that kind of phone reads A's record every
    // five days, over `connection`. B lives at `b_home`; `neighbours` more patients use that kind of phone there.
    let practice = |b_home: &str, connection: &str, neighbours: &[&str]| {
        let mut p = Practice::default();
        p.habit(NHS_A, "acct-a", "", PHONE, HOME_A, (0, 55), 3, 19);
        p.habit(NHS_B, "acct-b", "", PHONE, b_home, (0, 55), 2, 8);
        for (i, nhs) in neighbours.iter().enumerate() {
            let account = format!("acct-n{i}");
            p.habit(nhs, &account, "", PHONE, b_home, (0, 55), 7, 12);
        }
        reading(
            &mut p,
            NHS_A,
            "",
            PHONE,
            connection,
            (20, 55),
            5,
            21,
            &[&["consultations", "problems"]],
        );
        p.detection()
    };
    // Over B's home connection, which A's own devices never use: B's phone, as near as the export can tell.
    let d = practice(HOME_B, HOME_B, &[]);
    let s = fired(&d.findings, NHS_A, "shared_device").expect("followed by kind and connection");
    assert!(
        s.explanation.contains("over one internet connection") && !s.explanation.contains(HOME_B),
        "says what was matched, not the address: {}",
        s.explanation
    );
    assert_ne!(risk_level(&d, NHS_A), "low", "{:?}", d.patients);
    assert!(
        !d.stats
            .rules_not_run
            .iter()
            .any(|r| r.rule_id == "shared_device"),
        "{:?}",
        d.stats.rules_not_run
    );
    // B living with A, over their shared home connection: the household's phones of one kind cannot be told apart.
    let d = practice(HOME_A, HOME_A, &[]);
    assert!(fired(&d.findings, NHS_A, "shared_device").is_none());
    // That kind of phone over that connection on more records than a household holds: a shared network, not B's
    // phone.
    let d = practice(
        HOME_B,
        HOME_B,
        &["9434766001", "9434766028", "9434766036", "9434766044"],
    );
    assert!(fired(&d.findings, NHS_A, "shared_device").is_none());
}

#[test]
fn without_device_ids_another_patients_phone_is_followed_even_when_its_reading_is_most_of_this_record(
) {
    // No device ids. B manages B's care on an iPhone at B's home. A reads their record on an Android phone once a
    // fortnight. B's kind of phone, over B's home connection, reads A's record every other evening, the
    // appointments in one visit in six: most of A's record's use (and of its care reads), so the model of A takes it
    // for A's main device and B's connection for A's home. It never books or orders here; on B's record it manages
    // B's care.
    let practice = |a_has_own_phone: bool, watcher_reading: bool| {
        let mut p = Practice::default();
        if a_has_own_phone {
            p.habit(
                NHS_A,
                "acct-a",
                "",
                "NHSApp/2.40.2 (Android 15; Pixel 8)",
                HOME_A,
                (0, 55),
                14,
                19,
            );
        }
        p.habit(NHS_B, "acct-b", "", PHONE, HOME_B, (0, 55), 2, 8);
        let care: &[&[&str]] = &[&["summary", "appointments", "medications"]];
        reading(
            &mut p,
            NHS_A,
            "",
            PHONE,
            HOME_B,
            (1, 55),
            2,
            21,
            if !watcher_reading {
                care
            } else {
                &[
                    &["consultations", "appointments"],
                    &["letters", "problems"],
                    &["documents", "test_results"],
                    &["consultations"],
                    &["letters", "test_results"],
                    &["problems"],
                ]
            },
        );
        p.detection()
    };
    let d = practice(true, true);
    let s = fired(&d.findings, NHS_A, "shared_device")
        .unwrap_or_else(|| panic!("B's kind of phone over B's home: {:?}", d.findings));
    assert!(
        s.explanation.contains("over one internet connection") && !s.explanation.contains(HOME_B),
        "{}",
        s.explanation
    );
    assert_ne!(risk_level(&d, NHS_A), "low", "{:?}", d.patients);
    // The same reading when A has no phone of their own: A reads their record on their partner's phone. Not flagged.
    let d = practice(false, true);
    assert_not_fired(&d.findings, NHS_A, "shared_device");
    // A living with B, with a phone of the same kind that reads A's appointments at home: A's own phone, which the
    // export cannot tell from B's. Not flagged.
    let d = practice(true, false);
    assert_not_fired(&d.findings, NHS_A, "shared_device");
}

#[test]
fn two_devices_at_once_count_only_when_one_reads_the_way_a_watcher_does() {
    // A's phone is open at 19:21 on 1 Oct (the habit); another device opens the record a minute later, and once
    // more on its own in the small hours.
    let practice = |first: &[&str], second: &[&str]| {
        let mut p = with_habit();
        p.session(
            NHS_A,
            "acct-a",
            "tablet-x",
            TABLET,
            HOME_A,
            "2026-10-01 19:22",
            first,
        );
        p.session(
            NHS_A,
            "acct-a",
            "tablet-x",
            TABLET,
            HOME_A,
            "2026-10-15 03:00",
            second,
        );
        p.detect()
    };
    let watcher = practice(&["consultations", "problems"], &["letters"]);
    let c = fired(&watcher, NHS_A, "concurrent_sessions").expect("fires");
    assert!(c.score >= 45.0, "{c:?}");
    // The same overlap with a device that reads appointments and the summary, as the holder does, is weak.
    let household = practice(&["appointments", "medications"], &["summary"]);
    let c = fired(&household, NHS_A, "concurrent_sessions").expect("fires");
    assert!(c.score < 45.0, "{c:?}");
}

#[test]
fn a_device_seen_on_one_day_only_scores_as_a_one_off() {
    // A work or library computer: two visits on one day, reading letters and consultations.
    let mut p = with_habit();
    for at in ["2026-11-16 10:00", "2026-11-16 14:00"] {
        p.session(
            NHS_A,
            "acct-a",
            "web-1",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Gecko/20100101 Firefox/132.0",
            "90.9.9.9",
            at,
            &["letters", "consultations"],
        );
    }
    let f = p.detect();
    let u = fired(&f, NHS_A, "unfamiliar_device").expect("fires");
    assert!(
        u.score <= accesswatch::detect::config::UnfamiliarDevice::default().base_score,
        "{u:?}"
    );
}

/// Watching goes on for months: a password change four months before the run, and the new device it let in, still
/// reading every few days since, are found with the default look-back (180 days; 90 would begin after the change).
#[test]
fn a_password_change_four_months_ago_and_the_device_it_let_in_are_in_the_default_look_back() {
    // Days are counted from 28 Sep: A's phone every third evening from 20 Jun, the change on 20 Jul, and another
    // phone reading every fourth morning from 21 Jul.
    let mut p = Practice::default();
    let habit: &[&str] = &["summary", "appointments", "medications"];
    on_phone_a(&mut p, (-100, 55), 3, 19, &[habit]);
    p.action(
        NHS_A,
        "acct-a",
        "phone-a",
        "2026-07-20 21:40",
        "change_password",
    );
    let prying: &[&str] = &["consultations", "letters"];
    reading(
        &mut p,
        NHS_A,
        "other-1",
        PHONE,
        "90.9.9.9",
        (-69, 53),
        4,
        7,
        &[prying],
    );
    let f = p.detect();
    let a =
        fired(&f, NHS_A, "account_change_then_new_device").expect("the change is in the look-back");
    assert!(a.explanation.contains("Jul"), "{}", a.explanation);
}

/// A's phone every other day at 19:00 all along, managing A's care; A's tablet weekly at 21:00 from 19 Aug to 8 Oct
/// (day 10) reading the appointments and letters; then, from 12 Oct (day 14), tablet-a2 on
/// `agent` at the same time and place, reading much the same, only once opening the appointments. With
/// `changed_from_phone`, the password is changed from A's phone the evening before tablet-a2 first appears.
fn tablet_a_reinstalled(agent: &str, changed_from_phone: bool) -> Practice {
    let mut p = phone_a_evenings();
    let tablet =
        |p: &mut Practice, device: &str, ua: &str, days: (i64, i64), readings: &[&[&str]]| {
            reading(p, NHS_A, device, ua, HOME_A, days, 7, 21, readings)
        };
    tablet(
        &mut p,
        "tablet-a",
        TABLET,
        (-40, 10),
        &[&["appointments", "letters"]],
    );
    tablet(
        &mut p,
        "tablet-a2",
        agent,
        (14, 55),
        &[
            &["appointments", "letters"],
            &["test_results", "letters"],
            &["letters"],
            &["test_results"],
            &["consultations"],
            &["test_results"],
        ],
    );
    if changed_from_phone {
        p.action(
            NHS_A,
            "acct-a",
            "phone-a",
            "2026-10-11 20:30",
            "change_password",
        );
    }
    p
}

#[test]
fn a_reinstalled_app_is_the_device_it_was_unless_another_model_or_a_password_change_comes_between()
{
    // The same tablet, its app reinstalled and updated: a new id, the same model, the same home connection, and the
    // old id never used again. It goes on as A's tablet, and nothing is flagged.
    let updated = "NHSApp/2.42.1 (iPad; iPadOS 18.1)";
    let d = tablet_a_reinstalled(updated, false).detection();
    assert_eq!(
        rules_for(&d.findings, NHS_A),
        Vec::<&str>::new(),
        "{:?}",
        d.findings
    );
    assert_eq!(d.stats.reinstalled_devices, 1);
    // The new id is flagged as a device of its own, beside A's phone.
    let kept_apart = |d: detect::Detection| {
        assert!(
            fired(&d.findings, NHS_A, "unfamiliar_device")
                .is_some_and(|f| f.device_id.as_deref() == Some("tablet-a2")),
            "{:?}",
            d.findings
        );
        assert_eq!(d.stats.reinstalled_devices, 0);
    };
    // Another model of device is another device.
    kept_apart(tablet_a_reinstalled("NHSApp/2.42.1 (Android 14; SM-S911B)", false).detection());
    // A password changed just before the new id appeared is how an account is taken over.
    kept_apart(tablet_a_reinstalled(updated, true).detection());
}

/// A's phone every three evenings; B's phone (`phone-b`, an iPhone) every other morning until 7 Nov (day 40) at home,
/// booking an appointment on three of those mornings. From 14 Nov (day 47) `phone-b2`, on `agent` from B's home,
/// reads A's record every other morning (twice the appointments), and on 21 Nov it opens B's own record once. With
/// `old_kept`, `phone-b` is still used on B's record after `phone-b2` appears.
fn b_phone_reinstalled(agent: &str, old_kept: bool) -> Practice {
    let mut p = with_habit();
    let until = if old_kept { 55 } else { 40 };
    let readings: &[&[&str]] = &[&["appointments", "medications"]];
    reading(
        &mut p,
        NHS_B,
        "phone-b",
        PHONE,
        HOME_B,
        (0, until),
        2,
        8,
        readings,
    );
    for at in ["2026-10-05 08:30", "2026-10-19 08:35", "2026-11-02 08:32"] {
        p.action(NHS_B, "acct-b", "phone-b", at, "book_appointment");
    }
    let prying: &[&[&str]] = &[
        &["consultations", "documents"],
        &["appointments", "letters"],
        &["problems"],
    ];
    reading(
        &mut p,
        NHS_A,
        "phone-b2",
        agent,
        HOME_B,
        (47, 55),
        2,
        8,
        prying,
    );
    p.session(
        NHS_B,
        "acct-b",
        "phone-b2",
        agent,
        HOME_B,
        "2026-11-21 10:14",
        &["summary", "test_results"],
    );
    p
}

#[test]
fn a_phone_reinstalled_days_ago_is_still_its_owners_on_their_own_record_not_another_patients_device(
) {
    // B's phone under a new id, too recently for the old id's silence to show a reinstall: on B's own record it is
    // B's, and reading A's record is A's finding.
    let updated = "NHSApp/2.42.0 (iPhone; iOS 18.2)";
    let f = b_phone_reinstalled(updated, false).detect();
    assert_not_fired(&f, NHS_B, "shared_device");
    assert!(!rules_for(&f, NHS_A).is_empty(), "{f:?}");
    // Another model of phone, or B's phone still in use beside it: someone else's device opening B's record...
    // Or a device that books on A's record: A's own phone (a new one, of B's model), not B's.
    let mut booked_for_a = b_phone_reinstalled(updated, false);
    booked_for_a.action(
        NHS_A,
        "acct-a",
        "phone-b2",
        "2026-11-18 08:20",
        "book_appointment",
    );
    for p in [
        b_phone_reinstalled("NHSApp/2.42.0 (Android 14; SM-S911B)", false),
        b_phone_reinstalled(updated, true),
        booked_for_a,
    ] {
        let f = p.detect();
        assert!(fired(&f, NHS_B, "shared_device").is_some(), "{f:?}");
    }
}

/// A's phone every other evening at 19:00, three sections a visit (a quarter of its reads are of care sections, and
/// one visit in three reads none); A's tablet weekly at `hour` from home, eight visits reading `visit` but the last,
/// which opens the appointments.
fn tablet_beside_long_visits(hour: u32, visit: &[&str]) -> Practice {
    let mut p = Practice::default();
    on_phone_a(
        &mut p,
        (0, 55),
        2,
        19,
        &[
            &["summary", "appointments", "test_results"],
            &["letters", "consultations", "medications"],
            &["allergies", "problems", "documents"],
        ],
    );
    let mut readings: Vec<&[&str]> = vec![visit; 7];
    readings.push(&["appointments"]);

    on_tablet_a(&mut p, (0, 55), 7, hour, &readings);
    p
}

#[test]
fn a_second_device_at_the_holders_hours_with_short_visits_is_not_judged_a_watcher_by_missing_care_sections_by_chance(
) {
    let watcher_reading = |p: Practice| {
        let f = p.detect();
        fired(&f, NHS_A, "unfamiliar_device").is_some_and(|u| {
            u.score
                > accesswatch::detect::config::UnfamiliarDevice::default().holders_reading_max_score
        })
    };
    // One section a visit: three visits in four of anyone's, at the holder's rate, miss the care sections.
    assert!(!watcher_reading(tablet_beside_long_visits(
        19,
        &["consultations"]
    )));
    // Three a visit, none of them care: beyond chance.
    let three = &["consultations", "letters", "problems"];
    assert!(watcher_reading(tablet_beside_long_visits(19, three)));
    // One a visit, at an hour the holder does not keep: its hours set it apart, and its reading counts with them.
    assert!(watcher_reading(tablet_beside_long_visits(
        3,
        &["consultations"]
    )));
}

#[test]
fn an_export_that_does_not_say_what_was_read_judges_no_device_by_its_reading_and_says_so() {
    // A's phone at 19:00 every three days, managing A's care and ordering a prescription each time; a tablet reading
    // A's consultations and problems every four days at 20:00 beside it.
    let mut p = with_habit();
    let start = NaiveDate::from_ymd_opt(2026, 9, 28).unwrap();
    for d in (0..=55u32).step_by(3) {
        let day = start + chrono::Duration::days(i64::from(d));
        let at = format!("{day} 19:{:02}", (d * 7) % 50 + 5);
        p.action(NHS_A, "acct-a", "phone-a", &at, "order_prescription");
    }
    watching(&mut p, "tablet-x", TABLET, HOME_A, (0, 55), 4, 20);
    let detect_page = |audit_text: &str| {
        let (_dir, run_dir) = run_folder_for(audit_text);
        let read = |f: &str| std::fs::read_to_string(run_dir.join(f)).unwrap();
        (
            read("summary.json"),
            read("report.html"),
            read("findings.csv"),
        )
    };
    let claim = "read nothing the patient manages their care with";
    let limit = "so no device is judged by what it reads";
    let full = format!("{AUDIT_HEADER}\n{}", p.audit);
    let (summary, html, findings) = detect_page(&full);
    assert!(
        findings.contains(claim),
        "with sections the tablet reads like a watcher: {findings}"
    );
    assert!(!html.contains(limit));
    assert!(summary.contains("\"section\": 1.0"), "{summary}");
    // The same export with every section left empty: every read is of "the record in general".
    let section = AUDIT_HEADER
        .split(',')
        .position(|c| c == "section")
        .unwrap();
    let blank: String = full
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut f: Vec<&str> = l.split(',').collect();
            if i > 0 {
                f[section] = "";
            }
            f.join(",") + "\n"
        })
        .collect();
    let (summary, html, findings) = detect_page(&blank);
    assert!(!findings.contains(claim), "{findings}");
    assert!(
        html.contains(limit),
        "the lead's page says what the export could not show"
    );
    assert!(summary.contains("\"section\": 0.0"), "{summary}");
}

/// C's own phone every three evenings; B's own phone, managing B's care every other morning, reading C's
/// consultations and documents twice in the last fortnight signed in to the proxy account `proxy-b` (the audit log
/// marks those visits as a proxy's).
fn b_reading_c_by_proxy() -> Practice {
    let mut p = Practice::default();
    p.habit(NHS_C, "acct-c", "phone-c", PHONE, HOME_A, (0, 55), 3, 19);
    p.habit(NHS_B, "acct-b", "phone-b", PHONE, HOME_B, (0, 55), 2, 8);
    for at in ["2026-11-14 08:40", "2026-11-19 08:50"] {
        p.session(
            NHS_C,
            "proxy-b",
            "phone-b",
            PHONE,
            HOME_B,
            at,
            &["consultations", "documents"],
        );
    }
    p
}

#[test]
fn with_no_proxy_relationships_supplied_a_proxy_visit_is_taken_on_the_audit_logs_word_and_the_page_says_so(
) {
    let p = b_reading_c_by_proxy();
    let (_dir, run_dir) = run_folder_for(&format!("{AUDIT_HEADER}\n{}", p.audit));
    let read = |f: &str| std::fs::read_to_string(run_dir.join(f)).unwrap();
    assert!(
        !read("findings.csv").contains(NHS_C),
        "{}",
        read("findings.csv")
    );
    assert!(
        read("report.html")
            .contains("No formal proxy relationships were supplied, so the 2 visits"),
        "the lead's page says the proxy visits were not checked"
    );
    assert!(read("summary.json").contains("\"proxy_sessions_on_role\": 2"));
    // Relationships supplied, but none for this account: the role alone no longer clears it.
    let mut q = b_reading_c_by_proxy();
    q.proxy(NHS_A, "proxy-z");
    let d = q.detection();
    assert!(
        fired(&d.findings, NHS_C, "shared_device").is_some(),
        "{:?}",
        d.findings
    );
    assert_eq!(d.stats.proxy_sessions_on_role, 0);
}
