//! The canonical rows of the four input kinds, as every reader (CSV now, FHIR later) produces them and the store
//! writes them. A reader validates into these types; nothing unvalidated reaches the store.

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
    /// For a row that may have a twin reported in another form (only audit events: see [`Twin`]).
    fn twin(&self) -> Option<Twin> {
        None
    }
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
    /// The stable id of an event that came without one: a hash of its normalised content (the same row ingested
    /// twice, from any file, gets the same id). Provenance and `raw` are not content.
    pub fn derived_id(&self) -> String {
        let occurred = self.occurred_at.to_string();
        content_hash(
            DERIVED_ID_PREFIX,
            &[
                Some(occurred.as_str()),
                Some(self.nhs_number.as_str()),
                self.account_id.as_deref(),
                Some(self.actor_role),
                self.device_id.as_deref(),
                self.user_agent.as_deref(),
                self.ip_address.as_deref(),
                self.channel.as_deref(),
                self.session_id.as_deref(),
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

/// SHA-256 over the fields, each marked present or absent so that `None` and `""` differ and no two field lists
/// run together; 128 bits of it in hex.
/// One access, whatever format reported it: the instant, the patient, the account, the device, the action and the
/// section. A CSV row and its FHIR twin (whose `event_id` is derived from content, and which may lack the session,
/// address or user agent the CSV carries) are one event. The fields are length-prefixed, so no two different tuples
/// give the same text.
pub fn access_identity(
    occurred_at: i64,
    nhs_number: &str,
    account_id: Option<&str>,
    device_id: Option<&str>,
    action: &str,
    section: Option<&str>,
) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(96);
    let _ = write!(s, "{occurred_at}");
    for f in [
        Some(nhs_number),
        account_id,
        device_id,
        Some(action),
        section,
    ] {
        match f {
            Some(v) => {
                let _ = write!(s, "|{}:{v}", v.len());
            }
            None => s.push_str("|-"),
        }
    }
    s
}

/// The prefix of an `event_id` derived from content (FHIR, which carries no event id of the practice's system).
pub const DERIVED_ID_PREFIX: &str = "derived-";

/// How an audit event meets its twins: rows that report the same access (one [`access_identity`]) in another form.
///
/// A row with the source's own `event_id` is one event per id, as the source says (two CSV rows with different
/// ids are two events, however alike), but it is the twin of any row whose id was derived from content: FHIR, or a
/// CSV row that carried no id. A derived row is the twin of any row of the same identity: its CSV form, or the
/// other half of a client/server (IHE BALP) pair whose addresses differ.
pub struct Twin {
    /// `any|identity`: set by every row.
    pub any: String,
    /// `derived|identity`: set by rows whose id was derived.
    pub derived: String,
    pub is_derived: bool,
}

impl Twin {
    pub fn new(event_id: &str, identity: &str) -> Twin {
        Twin {
            any: format!("any|{identity}"),
            derived: format!("derived|{identity}"),
            is_derived: event_id.starts_with(DERIVED_ID_PREFIX),
        }
    }
}

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

impl StoredRecord for AuditEvent {
    const KIND: Kind = Kind::Audit;
    fn key(&self) -> &str {
        &self.event_id
    }
    fn twin(&self) -> Option<Twin> {
        Some(Twin::new(
            &self.event_id,
            &access_identity(
                self.occurred_at,
                &self.nhs_number,
                self.account_id.as_deref(),
                self.device_id.as_deref(),
                self.action,
                self.section,
            ),
        ))
    }
    fn time(&self) -> i64 {
        self.occurred_at
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
            text(EVENT_ID, rows.iter().map(|r| Some(r.event_id.as_str()))),
            instants(OCCURRED_AT, rows.iter().map(|r| Some(r.occurred_at))),
            text(NHS_NUMBER, rows.iter().map(|r| Some(r.nhs_number.as_str()))),
            text(ACCOUNT_ID, rows.iter().map(|r| r.account_id.as_deref())),
            text(ACTOR_ROLE, rows.iter().map(|r| Some(r.actor_role))),
            text(DEVICE_ID, rows.iter().map(|r| r.device_id.as_deref())),
            text(USER_AGENT, rows.iter().map(|r| r.user_agent.as_deref())),
            text(IP_ADDRESS, rows.iter().map(|r| r.ip_address.as_deref())),
            text(CHANNEL, rows.iter().map(|r| r.channel.as_deref())),
            text(SESSION_ID, rows.iter().map(|r| r.session_id.as_deref())),
            text(ACTION, rows.iter().map(|r| Some(r.action))),
            text(SECTION, rows.iter().map(|r| r.section)),
            text(OUTCOME, rows.iter().map(|r| Some(r.outcome))),
            text(RAW, rows.iter().map(|r| r.raw.as_deref())),
        ];
        assemble(rows, p, cols)
    }
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
        let df = AuditEvent::frame(&[event()], &p).unwrap();
        assert_eq!(df.schema().as_ref(), &Kind::Audit.stored_schema());
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
