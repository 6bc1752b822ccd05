//! The canonical columns of every input kind, as constants, and the Arrow/Parquet schema each kind is stored with.
//!
//! Everything that names a column (CSV header matching, config column mappings, the Parquet writer, the SQL
//! tables) takes the name from here, so a rename is one edit.

use std::fmt;

use polars::prelude::{DataType, Field, Schema, TimeUnit, TimeZone};
use serde::{Deserialize, Serialize};

// Audit event columns.
pub const EVENT_ID: &str = "event_id";
pub const OCCURRED_AT: &str = "occurred_at";
pub const NHS_NUMBER: &str = "nhs_number";
pub const ACCOUNT_ID: &str = "account_id";
pub const ACTOR_ROLE: &str = "actor_role";
pub const DEVICE_ID: &str = "device_id";
pub const USER_AGENT: &str = "user_agent";
pub const IP_ADDRESS: &str = "ip_address";
pub const CHANNEL: &str = "channel";
pub const SESSION_ID: &str = "session_id";
pub const ACTION: &str = "action";
pub const SECTION: &str = "section";
pub const OUTCOME: &str = "outcome";
/// What a FHIR mapping could not place, kept verbatim (JSON). Always empty for CSV input.
pub const RAW: &str = "raw";

// Record entry columns.
pub const ENTRY_ID: &str = "entry_id";
pub const RECORDED_AT: &str = "recorded_at";
pub const CODE: &str = "code";
pub const TERM: &str = "term";
pub const VISIBLE_ONLINE: &str = "visible_online";

// Appointment columns.
pub const APPOINTMENT_ID: &str = "appointment_id";
pub const STARTS_AT: &str = "starts_at";
pub const ENDS_AT: &str = "ends_at";
pub const MODE: &str = "mode";
pub const STATUS: &str = "status";

// Formal proxy columns.
pub const PROXY_ACCOUNT_ID: &str = "proxy_account_id";
pub const PROXY_NHS_NUMBER: &str = "proxy_nhs_number";
pub const RELATIONSHIP: &str = "relationship";
pub const GRANTED_AT: &str = "granted_at";
pub const REVOKED_AT: &str = "revoked_at";

// Provenance columns the store adds to every kind.
/// For entries, appointments and proxies: a hash of the row's normalised content, the de-duplication key. A
/// re-export that changes a row (an entry redacted, an appointment attended) is a new version with a new hash.
pub const RECORD_HASH: &str = "record_hash";
/// The position of the ingested file in the store's manifest: later files have larger numbers, so views take the
/// latest version of a row by it.
pub const INGEST_SEQ: &str = "ingest_seq";
pub const SOURCE_FILE: &str = "source_file";
pub const SOURCE_LINE: &str = "source_line";

/// The hive partition column every kind is partitioned by (`date=YYYY-MM-DD`). It lives in the folder name only.
pub const PARTITION_DATE: &str = "date";

// Quarantine columns.
pub const Q_KIND: &str = "kind";
pub const Q_SOURCE_SHA256: &str = "source_sha256";
pub const Q_LINE: &str = "line";
pub const Q_COLUMN: &str = "column";
pub const Q_REASON: &str = "reason";

/// The four input kinds of the data contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Audit,
    Entries,
    Appointments,
    Proxies,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Audit,
        Kind::Entries,
        Kind::Appointments,
        Kind::Proxies,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Audit => "audit",
            Kind::Entries => "entries",
            Kind::Appointments => "appointments",
            Kind::Proxies => "proxies",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }

    /// The input columns of the contract for this kind, in contract order.
    pub fn input_columns(self) -> &'static [InputColumn] {
        match self {
            Kind::Audit => AUDIT_COLUMNS,
            Kind::Entries => ENTRY_COLUMNS,
            Kind::Appointments => APPOINTMENT_COLUMNS,
            Kind::Proxies => PROXY_COLUMNS,
        }
    }

    pub fn required_columns(self) -> impl Iterator<Item = &'static str> {
        self.input_columns()
            .iter()
            .filter(|c| c.required)
            .map(|c| c.name)
    }

    /// The column whose value a row is de-duplicated on.
    pub fn key_column(self) -> &'static str {
        match self {
            Kind::Audit => EVENT_ID,
            _ => RECORD_HASH,
        }
    }

    /// The order of rows inside every data file of this kind: patient, time, key (ingest sorts its rows by the same
    /// three, and the files record it).
    pub fn sort_columns(self) -> [&'static str; 3] {
        [NHS_NUMBER, self.time_column(), self.key_column()]
    }

    /// The timestamp column that decides the row's partition and its order inside a file.
    pub fn time_column(self) -> &'static str {
        match self {
            Kind::Audit => OCCURRED_AT,
            Kind::Entries => RECORDED_AT,
            Kind::Appointments => STARTS_AT,
            Kind::Proxies => GRANTED_AT,
        }
    }

    /// The Arrow schema of the stored Parquet files (without the hive `date` column, which is the folder name).
    pub fn stored_schema(self) -> Schema {
        let s = || DataType::String;
        let ts = utc_micros;
        let mut fields: Vec<Field> = match self {
            Kind::Audit => vec![
                Field::new(EVENT_ID.into(), s()),
                Field::new(OCCURRED_AT.into(), ts()),
                Field::new(NHS_NUMBER.into(), s()),
                Field::new(ACCOUNT_ID.into(), s()),
                Field::new(ACTOR_ROLE.into(), s()),
                Field::new(DEVICE_ID.into(), s()),
                Field::new(USER_AGENT.into(), s()),
                Field::new(IP_ADDRESS.into(), s()),
                Field::new(CHANNEL.into(), s()),
                Field::new(SESSION_ID.into(), s()),
                Field::new(ACTION.into(), s()),
                Field::new(SECTION.into(), s()),
                Field::new(OUTCOME.into(), s()),
                Field::new(RAW.into(), s()),
            ],
            Kind::Entries => vec![
                Field::new(ENTRY_ID.into(), s()),
                Field::new(NHS_NUMBER.into(), s()),
                Field::new(RECORDED_AT.into(), ts()),
                Field::new(CODE.into(), s()),
                Field::new(TERM.into(), s()),
                Field::new(SECTION.into(), s()),
                Field::new(VISIBLE_ONLINE.into(), DataType::Boolean),
                Field::new(RECORD_HASH.into(), s()),
            ],
            Kind::Appointments => vec![
                Field::new(APPOINTMENT_ID.into(), s()),
                Field::new(NHS_NUMBER.into(), s()),
                Field::new(STARTS_AT.into(), ts()),
                Field::new(ENDS_AT.into(), ts()),
                Field::new(MODE.into(), s()),
                Field::new(STATUS.into(), s()),
                Field::new(RECORD_HASH.into(), s()),
            ],
            Kind::Proxies => vec![
                Field::new(NHS_NUMBER.into(), s()),
                Field::new(PROXY_ACCOUNT_ID.into(), s()),
                Field::new(PROXY_NHS_NUMBER.into(), s()),
                Field::new(RELATIONSHIP.into(), s()),
                Field::new(GRANTED_AT.into(), ts()),
                Field::new(REVOKED_AT.into(), ts()),
                Field::new(RECORD_HASH.into(), s()),
            ],
        };
        fields.extend(provenance_fields());
        Schema::from_iter(fields)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The columns every stored kind carries to say where a row came from.
fn provenance_fields() -> [Field; 3] {
    [
        Field::new(INGEST_SEQ.into(), DataType::Int64),
        Field::new(SOURCE_FILE.into(), DataType::String),
        Field::new(SOURCE_LINE.into(), DataType::Int64),
    ]
}

/// Every instant in the store: UTC, microseconds.
pub fn utc_micros() -> DataType {
    DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
}

/// The schema of the quarantine's Parquet files.
pub fn quarantine_schema() -> Schema {
    Schema::from_iter([
        Field::new(Q_KIND.into(), DataType::String),
        Field::new(SOURCE_FILE.into(), DataType::String),
        Field::new(Q_SOURCE_SHA256.into(), DataType::String),
        Field::new(Q_LINE.into(), DataType::Int64),
        Field::new(Q_COLUMN.into(), DataType::String),
        Field::new(Q_REASON.into(), DataType::String),
        Field::new(RAW.into(), DataType::String),
    ])
}

/// One column of an input kind as the data contract defines it.
#[derive(Debug, Clone, Copy)]
pub struct InputColumn {
    pub name: &'static str,
    pub required: bool,
}

const fn col(name: &'static str, required: bool) -> InputColumn {
    InputColumn { name, required }
}

const AUDIT_COLUMNS: &[InputColumn] = &[
    col(EVENT_ID, false),
    col(OCCURRED_AT, true),
    col(NHS_NUMBER, true),
    col(ACCOUNT_ID, false),
    col(ACTOR_ROLE, false),
    col(DEVICE_ID, false),
    col(USER_AGENT, false),
    col(IP_ADDRESS, false),
    col(CHANNEL, false),
    col(SESSION_ID, false),
    col(ACTION, true),
    col(SECTION, false),
    col(OUTCOME, false),
];

const ENTRY_COLUMNS: &[InputColumn] = &[
    col(ENTRY_ID, true),
    col(NHS_NUMBER, true),
    col(RECORDED_AT, true),
    col(CODE, true),
    col(TERM, false),
    col(SECTION, false),
    col(VISIBLE_ONLINE, false),
];

const APPOINTMENT_COLUMNS: &[InputColumn] = &[
    col(APPOINTMENT_ID, true),
    col(NHS_NUMBER, true),
    col(STARTS_AT, true),
    col(ENDS_AT, true),
    col(MODE, true),
    col(STATUS, false),
];

const PROXY_COLUMNS: &[InputColumn] = &[
    col(NHS_NUMBER, true),
    col(PROXY_ACCOUNT_ID, true),
    col(PROXY_NHS_NUMBER, false),
    col(RELATIONSHIP, false),
    col(GRANTED_AT, true),
    col(REVOKED_AT, false),
];

/// Values of `action`.
pub const ACTIONS: &[&str] = &[
    "login",
    "login_failed",
    "logout",
    "view",
    "download",
    "book_appointment",
    "cancel_appointment",
    "order_prescription",
    "send_message",
    "change_contact_details",
    "change_password",
    "proxy_granted",
    "proxy_revoked",
    "other",
];

/// Values of `section` (an empty section means the record in general).
pub const SECTIONS: &[&str] = &[
    "summary",
    "consultations",
    "test_results",
    "documents",
    "medications",
    "problems",
    "allergies",
    "immunisations",
    "appointments",
    "letters",
];

pub const ACTOR_ROLES: &[&str] = &["patient", "proxy"];
pub const OUTCOMES: &[&str] = &["success", "failure"];
pub const MODES: &[&str] = &["face_to_face", "telephone", "video", "home_visit"];
pub const STATUSES: &[&str] = &["booked", "attended", "did_not_attend", "cancelled"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_stores_its_input_columns_and_keys() {
        for kind in Kind::ALL {
            let schema = kind.stored_schema();
            for c in kind.input_columns() {
                assert!(schema.contains(c.name), "{kind} schema lacks {}", c.name);
            }
            assert!(schema.contains(kind.key_column()));
            assert!(schema.contains(kind.time_column()));
            assert_eq!(schema.get(kind.time_column()), Some(&utc_micros()));
        }
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
            assert_eq!(Kind::from_name(&kind.name().to_uppercase()), Some(kind));
        }
        assert_eq!(Kind::from_name("fhir"), None);
    }
}
