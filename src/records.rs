//! The canonical rows of the four input kinds, as every reader (CSV now, FHIR later) produces them and the store
//! writes them. A reader validates into these types; nothing unvalidated reaches the store.

use std::borrow::Cow;

use polars::prelude::*;
use sha2::{Digest, Sha256};

use crate::schema::{self, Kind};

/// Where a batch of rows came from; the same for every row of a batch.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub ingest_seq: i64,
    pub source_file: String,
}

/// A validated row of some kind, ready for the store.
pub trait StoredRecord: Sized + Send {
    const KIND: Kind;
    /// The row's own key: names its file and orders rows that tie on patient and time.
    fn key(&self) -> &str;
    /// UTC microseconds of the row's partitioning time.
    fn time(&self) -> i64;
    fn nhs_number(&self) -> &str;
    /// The row's line in its source file (for FHIR, its resource's position).
    fn source_line(&self) -> i64;
    /// The rows as a DataFrame with exactly `Kind::stored_schema()`.
    fn frame(rows: &[Self], provenance: &Provenance) -> PolarsResult<DataFrame>;
}

/// One thing an online account did to a patient's record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub event_id: String,
    pub occurred_at: i64,
    pub nhs_number: String,
    pub account_id: Option<String>,
    pub actor_role: &'static str,
    pub device_id: Option<String>,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
    pub channel: Option<String>,
    pub session_id: Option<String>,
    pub action: &'static str,
    pub section: Option<&'static str>,
    pub outcome: &'static str,
    pub raw: Option<String>,
    pub source_line: i64,
}

impl AuditEvent {
    /// The event as a borrowed row, the form the store's columns are built from.
    pub fn row(&self) -> AuditRow<'_> {
        AuditRow {
            event_id: Some(&self.event_id),
            occurred_at: self.occurred_at,
            nhs_number: Cow::Borrowed(&self.nhs_number),
            account_id: self.account_id.as_deref(),
            actor_role: self.actor_role,
            device_id: self.device_id.as_deref(),
            user_agent: self.user_agent.as_deref(),
            ip_address: self.ip_address.as_deref().map(Cow::Borrowed),
            channel: self.channel.as_deref().map(Cow::Borrowed),
            session_id: self.session_id.as_deref(),
            action: self.action,
            section: self.section,
            outcome: self.outcome,
            raw: self.raw.as_deref(),
            source_line: self.source_line,
        }
    }

    /// See [`AuditRow::derived_id`].
    pub fn derived_id(&self) -> String {
        self.row().derived_id()
    }
}

/// A validated audit event borrowing its text from where it was read (a CSV record's bytes, or an [`AuditEvent`]):
/// only values that validation rewrites (an NHS number written with spaces, an address not in canonical form, a
/// channel in capitals) are owned. The CSV reader validates into it and the store's column builders read it, so a
/// row costs no allocation of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow<'a> {
    /// `None` when the source gave none: [`AuditRow::derived_id`] stands in.
    pub event_id: Option<&'a str>,
    pub occurred_at: i64,
    pub nhs_number: Cow<'a, str>,
    pub account_id: Option<&'a str>,
    pub actor_role: &'static str,
    pub device_id: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub ip_address: Option<Cow<'a, str>>,
    pub channel: Option<Cow<'a, str>>,
    pub session_id: Option<&'a str>,
    pub action: &'static str,
    pub section: Option<&'static str>,
    pub outcome: &'static str,
    pub raw: Option<&'a str>,
    pub source_line: i64,
}

impl AuditRow<'_> {
    /// The stable id of an event that came without one: a hash of its normalised content (the same row ingested
    /// twice, from any file, gets the same id). Provenance and `raw` are not content.
    pub fn derived_id(&self) -> String {
        let occurred = self.occurred_at.to_string();
        content_hash(
            DERIVED_ID_PREFIX,
            &[
                Some(occurred.as_str()),
                Some(&self.nhs_number),
                self.account_id,
                Some(self.actor_role),
                self.device_id,
                self.user_agent,
                self.ip_address.as_deref(),
                self.channel.as_deref(),
                self.session_id,
                Some(self.action),
                self.section,
                Some(self.outcome),
            ],
        )
    }
}

/// An entry in the GP record, as a patient with online access could see it appear.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordEntry {
    pub entry_id: String,
    pub nhs_number: String,
    pub recorded_at: i64,
    pub code: String,
    pub term: Option<String>,
    pub section: Option<&'static str>,
    pub visible_online: bool,
    pub record_hash: String,
    pub source_line: i64,
}

impl RecordEntry {
    pub fn content_hash(&self) -> String {
        let recorded = self.recorded_at.to_string();
        content_hash(
            "",
            &[
                Some(self.entry_id.as_str()),
                Some(self.nhs_number.as_str()),
                Some(recorded.as_str()),
                Some(self.code.as_str()),
                self.term.as_deref(),
                self.section,
                Some(if self.visible_online { "true" } else { "false" }),
            ],
        )
    }
}

/// A booked or past appointment.
#[derive(Debug, Clone, PartialEq)]
pub struct Appointment {
    pub appointment_id: String,
    pub nhs_number: String,
    pub starts_at: i64,
    pub ends_at: i64,
    pub mode: &'static str,
    pub status: &'static str,
    pub record_hash: String,
    pub source_line: i64,
}

impl Appointment {
    pub fn content_hash(&self) -> String {
        let (s, e) = (self.starts_at.to_string(), self.ends_at.to_string());
        content_hash(
            "",
            &[
                Some(self.appointment_id.as_str()),
                Some(self.nhs_number.as_str()),
                Some(s.as_str()),
                Some(e.as_str()),
                Some(self.mode),
                Some(self.status),
            ],
        )
    }
}

/// A formal proxy's access to a patient's record, over time.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyLink {
    pub nhs_number: String,
    pub proxy_account_id: String,
    pub proxy_nhs_number: Option<String>,
    pub relationship: Option<String>,
    pub granted_at: i64,
    pub revoked_at: Option<i64>,
    pub record_hash: String,
    pub source_line: i64,
}

impl ProxyLink {
    pub fn content_hash(&self) -> String {
        let g = self.granted_at.to_string();
        let r = self.revoked_at.map(|r| r.to_string());
        content_hash(
            "",
            &[
                Some(self.nhs_number.as_str()),
                Some(self.proxy_account_id.as_str()),
                self.proxy_nhs_number.as_deref(),
                self.relationship.as_deref(),
                Some(g.as_str()),
                r.as_deref(),
            ],
        )
    }
}

/// The prefix of an `event_id` derived from content (FHIR, which carries no event id of the practice's system).
pub const DERIVED_ID_PREFIX: &str = "derived-";

/// SHA-256 over the fields, each marked present or absent so that `None` and `""` differ and no two field lists
/// run together; 128 bits of it in hex.
fn content_hash(prefix: &str, fields: &[Option<&str>]) -> String {
    let mut h = Sha256::new();
    for f in fields {
        match f {
            Some(v) => {
                h.update([1u8]);
                h.update((v.len() as u64).to_le_bytes());
                h.update(v.as_bytes());
            }
            None => h.update([0u8]),
        }
    }
    let digest = h.finalize();
    format!("{prefix}{}", hex::encode(&digest[..16]))
}

/// A string column from optional values.
pub fn text<'a>(name: &str, values: impl Iterator<Item = Option<&'a str>>) -> Column {
    StringChunked::from_iter_options(name.into(), values).into_column()
}

/// A UTC microsecond timestamp column from optional values.
pub fn instants(name: &str, values: impl Iterator<Item = Option<i64>>) -> Column {
    Int64Chunked::from_iter_options(name.into(), values)
        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        .into_column()
}

fn provenance_columns<R: StoredRecord>(rows: &[R], p: &Provenance) -> [Column; 3] {
    [
        Int64Chunked::full(schema::INGEST_SEQ.into(), p.ingest_seq, rows.len()).into_column(),
        StringChunked::full(schema::SOURCE_FILE.into(), &p.source_file, rows.len()).into_column(),
        Int64Chunked::from_iter_values(
            schema::SOURCE_LINE.into(),
            rows.iter().map(|r| r.source_line()),
        )
        .into_column(),
    ]
}

fn assemble<R: StoredRecord>(
    rows: &[R],
    p: &Provenance,
    mut columns: Vec<Column>,
) -> PolarsResult<DataFrame> {
    columns.extend(provenance_columns(rows, p));
    DataFrame::new(rows.len(), columns)
}

impl StoredRecord for RecordEntry {
    const KIND: Kind = Kind::Entries;
    fn key(&self) -> &str {
        &self.record_hash
    }
    fn time(&self) -> i64 {
        self.recorded_at
    }
    fn nhs_number(&self) -> &str {
        &self.nhs_number
    }
    fn source_line(&self) -> i64 {
        self.source_line
    }
    fn frame(rows: &[Self], p: &Provenance) -> PolarsResult<DataFrame> {
        use schema::*;
        let cols = vec![
            text(ENTRY_ID, rows.iter().map(|r| Some(r.entry_id.as_str()))),
            text(NHS_NUMBER, rows.iter().map(|r| Some(r.nhs_number.as_str()))),
            instants(RECORDED_AT, rows.iter().map(|r| Some(r.recorded_at))),
            text(CODE, rows.iter().map(|r| Some(r.code.as_str()))),
            text(TERM, rows.iter().map(|r| r.term.as_deref())),
            text(SECTION, rows.iter().map(|r| r.section)),
            BooleanChunked::from_iter_values(
                VISIBLE_ONLINE.into(),
                rows.iter().map(|r| r.visible_online),
            )
            .into_column(),
            text(
                RECORD_HASH,
                rows.iter().map(|r| Some(r.record_hash.as_str())),
            ),
        ];
        assemble(rows, p, cols)
    }
}

impl StoredRecord for Appointment {
    const KIND: Kind = Kind::Appointments;
    fn key(&self) -> &str {
        &self.record_hash
    }
    fn time(&self) -> i64 {
        self.starts_at
    }
    fn nhs_number(&self) -> &str {
        &self.nhs_number
    }
    fn source_line(&self) -> i64 {
        self.source_line
    }
    fn frame(rows: &[Self], p: &Provenance) -> PolarsResult<DataFrame> {
        use schema::*;
        let cols = vec![
            text(
                APPOINTMENT_ID,
                rows.iter().map(|r| Some(r.appointment_id.as_str())),
            ),
            text(NHS_NUMBER, rows.iter().map(|r| Some(r.nhs_number.as_str()))),
            instants(STARTS_AT, rows.iter().map(|r| Some(r.starts_at))),
            instants(ENDS_AT, rows.iter().map(|r| Some(r.ends_at))),
            text(MODE, rows.iter().map(|r| Some(r.mode))),
            text(STATUS, rows.iter().map(|r| Some(r.status))),
            text(
                RECORD_HASH,
                rows.iter().map(|r| Some(r.record_hash.as_str())),
            ),
        ];
        assemble(rows, p, cols)
    }
}

impl StoredRecord for ProxyLink {
    const KIND: Kind = Kind::Proxies;
    fn key(&self) -> &str {
        &self.record_hash
    }
    fn time(&self) -> i64 {
        self.granted_at
    }
    fn nhs_number(&self) -> &str {
        &self.nhs_number
    }
    fn source_line(&self) -> i64 {
        self.source_line
    }
    fn frame(rows: &[Self], p: &Provenance) -> PolarsResult<DataFrame> {
        use schema::*;
        let cols = vec![
            text(NHS_NUMBER, rows.iter().map(|r| Some(r.nhs_number.as_str()))),
            text(
                PROXY_ACCOUNT_ID,
                rows.iter().map(|r| Some(r.proxy_account_id.as_str())),
            ),
            text(
                PROXY_NHS_NUMBER,
                rows.iter().map(|r| r.proxy_nhs_number.as_deref()),
            ),
            text(RELATIONSHIP, rows.iter().map(|r| r.relationship.as_deref())),
            instants(GRANTED_AT, rows.iter().map(|r| Some(r.granted_at))),
            instants(REVOKED_AT, rows.iter().map(|r| r.revoked_at)),
            text(
                RECORD_HASH,
                rows.iter().map(|r| Some(r.record_hash.as_str())),
            ),
        ];
        assemble(rows, p, cols)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> AuditEvent {
        AuditEvent {
            event_id: String::new(),
            occurred_at: 1,
            nhs_number: "9434765919".into(),
            account_id: None,
            actor_role: "patient",
            device_id: Some("d".into()),
            user_agent: None,
            ip_address: None,
            channel: None,
            session_id: None,
            action: "view",
            section: None,
            outcome: "success",
            raw: None,
            source_line: 2,
        }
    }

    #[test]
    fn derived_ids_depend_on_content_not_provenance() {
        let a = event();
        let mut b = event();
        b.source_line = 99;
        assert_eq!(a.derived_id(), b.derived_id());
        b.device_id = None;
        assert_ne!(a.derived_id(), b.derived_id());
        let mut c = event();
        c.device_id = Some(String::new());
        assert_ne!(b.derived_id(), c.derived_id(), "absent and empty differ");
        assert!(a.derived_id().starts_with("derived-"));
    }

    #[test]
    fn frames_match_the_stored_schema() {
        let p = Provenance {
            ingest_seq: 1,
            source_file: "a.csv".into(),
        };
        // Audit events are built as arrow-rs columns instead: see `ingest::columns`'s tests.
        let e = RecordEntry {
            entry_id: "e".into(),
            nhs_number: "9434765919".into(),
            recorded_at: 5,
            code: "22298006".into(),
            term: None,
            section: None,
            visible_online: true,
            record_hash: "h".into(),
            source_line: 2,
        };
        assert_eq!(
            RecordEntry::frame(&[e], &p).unwrap().schema().as_ref(),
            &Kind::Entries.stored_schema()
        );
        let a = Appointment {
            appointment_id: "a".into(),
            nhs_number: "9434765919".into(),
            starts_at: 1,
            ends_at: 2,
            mode: "video",
            status: "attended",
            record_hash: "h".into(),
            source_line: 2,
        };
        assert_eq!(
            Appointment::frame(&[a], &p).unwrap().schema().as_ref(),
            &Kind::Appointments.stored_schema()
        );
        let x = ProxyLink {
            nhs_number: "9434765919".into(),
            proxy_account_id: "p".into(),
            proxy_nhs_number: None,
            relationship: None,
            granted_at: 1,
            revoked_at: None,
            record_hash: "h".into(),
            source_line: 2,
        };
        assert_eq!(
            ProxyLink::frame(&[x], &p).unwrap().schema().as_ref(),
            &Kind::Proxies.stored_schema()
        );
    }
}
