//! Turning one CSV record into a validated canonical row, or into the reason it is quarantined.

use chrono_tz::Tz;
use csv::ByteRecord;

use super::csv::ColumnIndex;
use super::validate;
use std::borrow::Cow;

use crate::records::{Appointment, AuditRow, ProxyLink, RecordEntry};
use crate::schema::*;

/// Why a row was not stored: the column at fault (if one is) and the reason in plain words.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    pub column: Option<&'static str>,
    pub reason: String,
}

impl RowError {
    fn at(column: &'static str, reason: impl Into<String>) -> RowError {
        RowError {
            column: Some(column),
            reason: reason.into(),
        }
    }
}

type RowResult<T> = Result<T, RowError>;

/// The longest value a column may hold: identifiers, codes, terms and user agents are far shorter; a longer one
/// is quarantined rather than stored.
pub const MAX_FIELD_BYTES: usize = 8 * 1024;

/// One record and where its fields are.
pub struct Fields<'a> {
    pub index: &'a ColumnIndex,
    pub record: &'a ByteRecord,
    pub tz: Tz,
    pub line: i64,
}

impl<'a> Fields<'a> {
    /// The trimmed text of a column; `None` when the column is absent or the field empty.
    fn get(&self, column: &'static str) -> RowResult<Option<&'a str>> {
        let Some(i) = self.index.position(column) else {
            return Ok(None);
        };
        let bytes = self.record.get(i).unwrap_or_default();
        if bytes.len() > MAX_FIELD_BYTES {
            return Err(RowError::at(
                column,
                format!("the value is longer than {MAX_FIELD_BYTES} bytes"),
            ));
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|_| RowError::at(column, "not valid UTF-8 text"))?
            .trim();
        Ok((!text.is_empty()).then_some(text))
    }

    fn required(&self, column: &'static str) -> RowResult<&'a str> {
        self.get(column)?
            .ok_or_else(|| RowError::at(column, "required value is empty"))
    }

    fn owned(&self, column: &'static str) -> RowResult<Option<String>> {
        Ok(self.get(column)?.map(str::to_string))
    }

    fn check<T>(&self, column: &'static str, r: Result<T, String>) -> RowResult<T> {
        r.map_err(|reason| RowError::at(column, reason))
    }

    fn nhs(&self, column: &'static str) -> RowResult<String> {
        self.nhs_text(column).map(Cow::into_owned)
    }

    fn nhs_text(&self, column: &'static str) -> RowResult<Cow<'a, str>> {
        let text = self
            .get(column)?
            .ok_or_else(|| RowError::at(column, "NHS number is missing"))?;
        self.check(column, validate::nhs_number_text(text))
    }

    fn time(&self, column: &'static str) -> RowResult<i64> {
        let text = self.required(column)?;
        self.check(column, validate::timestamp(text, self.tz))
    }

    fn optional_time(&self, column: &'static str) -> RowResult<Option<i64>> {
        self.get(column)?
            .map(|t| self.check(column, validate::timestamp(t, self.tz)))
            .transpose()
    }

    fn choice(
        &self,
        column: &'static str,
        allowed: &'static [&'static str],
    ) -> RowResult<Option<&'static str>> {
        self.get(column)?
            .map(|t| self.check(column, validate::one_of(t, allowed)))
            .transpose()
    }

    /// Rejects a record whose field count differs from the header's, before any field is read: such a row's
    /// values would land in the wrong columns.
    pub fn check_width(&self) -> RowResult<()> {
        if self.record.len() != self.index.width {
            return Err(RowError {
                column: None,
                reason: format!(
                    "row has {} fields but the header has {}",
                    self.record.len(),
                    self.index.width
                ),
            });
        }
        Ok(())
    }
}

/// An audit event, borrowing its text from the record. Without an `event_id` it is derived from content later.
pub fn audit_row<'a>(f: &Fields<'a>) -> RowResult<AuditRow<'a>> {
    f.check_width()?;
    Ok(AuditRow {
        occurred_at: f.time(OCCURRED_AT)?,
        nhs_number: f.nhs_text(NHS_NUMBER)?,
        account_id: f.get(ACCOUNT_ID)?,
        actor_role: f.choice(ACTOR_ROLE, ACTOR_ROLES)?.unwrap_or("patient"),
        device_id: f.get(DEVICE_ID)?,
        user_agent: f.get(USER_AGENT)?,
        ip_address: f
            .get(IP_ADDRESS)?
            .map(|t| f.check(IP_ADDRESS, validate::ip_text(t)))
            .transpose()?,
        channel: f.get(CHANNEL)?.map(validate::token),
        session_id: f.get(SESSION_ID)?,
        action: f
            .choice(ACTION, ACTIONS)?
            .ok_or_else(|| RowError::at(ACTION, "required value is empty"))?,
        section: f.choice(SECTION, SECTIONS)?,
        outcome: f.choice(OUTCOME, OUTCOMES)?.unwrap_or("success"),
        raw: None,
        source_line: f.line,
        event_id: f.get(EVENT_ID)?,
    })
}

pub fn record_entry(f: &Fields) -> RowResult<RecordEntry> {
    f.check_width()?;
    let mut e = RecordEntry {
        entry_id: f.required(ENTRY_ID)?.to_string(),
        nhs_number: f.nhs(NHS_NUMBER)?,
        recorded_at: f.time(RECORDED_AT)?,
        code: f.check(CODE, validate::clinical_code(f.required(CODE)?))?,
        term: f.owned(TERM)?,
        section: f.choice(SECTION, SECTIONS)?,
        visible_online: f
            .get(VISIBLE_ONLINE)?
            .map(|t| f.check(VISIBLE_ONLINE, validate::boolean(t)))
            .transpose()?
            .unwrap_or(true),
        record_hash: String::new(),
        source_line: f.line,
    };
    e.record_hash = e.content_hash();
    Ok(e)
}

pub fn appointment(f: &Fields) -> RowResult<Appointment> {
    f.check_width()?;
    let mut a = Appointment {
        appointment_id: f.required(APPOINTMENT_ID)?.to_string(),
        nhs_number: f.nhs(NHS_NUMBER)?,
        starts_at: f.time(STARTS_AT)?,
        ends_at: f.time(ENDS_AT)?,
        mode: f
            .choice(MODE, MODES)?
            .ok_or_else(|| RowError::at(MODE, "required value is empty"))?,
        status: f.choice(STATUS, STATUSES)?.unwrap_or("attended"),
        record_hash: String::new(),
        source_line: f.line,
    };
    if a.ends_at < a.starts_at {
        return Err(RowError::at(
            ENDS_AT,
            "the appointment ends before it starts",
        ));
    }
    a.record_hash = a.content_hash();
    Ok(a)
}

pub fn proxy_link(f: &Fields) -> RowResult<ProxyLink> {
    f.check_width()?;
    let mut p = ProxyLink {
        nhs_number: f.nhs(NHS_NUMBER)?,
        proxy_account_id: f.required(PROXY_ACCOUNT_ID)?.to_string(),
        proxy_nhs_number: f
            .get(PROXY_NHS_NUMBER)?
            .map(|t| f.check(PROXY_NHS_NUMBER, validate::nhs_number(t)))
            .transpose()?,
        relationship: f.owned(RELATIONSHIP)?,
        granted_at: f.time(GRANTED_AT)?,
        revoked_at: f.optional_time(REVOKED_AT)?,
        record_hash: String::new(),
        source_line: f.line,
    };
    if p.revoked_at.is_some_and(|r| r < p.granted_at) {
        return Err(RowError::at(
            REVOKED_AT,
            "the proxy access is revoked before it was granted",
        ));
    }
    p.record_hash = p.content_hash();
    Ok(p)
}
