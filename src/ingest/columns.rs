//! Validated rows held as columns on their way to the store: arrow-rs arrays built as rows are validated, each row's
//! partition day and de-duplication digests beside them. A batch of such chunks is split by day, de-duplicated,
//! sorted and written without the rows ever becoming structs of owned strings.
//!
//! Audit events (almost all of an export's rows) are appended straight into [`AuditColumns`]' builders, from the CSV
//! record's bytes or from a FHIR resource's mapped event. The three small kinds are validated into their row types
//! and turned into a chunk a few thousand rows at a time ([`rows_chunk`]).

use std::sync::Arc;

use arrow_array::builder::LargeStringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, Int64Array, LargeStringArray, RecordBatch, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};

use crate::records::{AuditRow, Provenance, StoredRecord};
use crate::schema::{self, Kind};
use crate::store::RowKeys;

/// Rows validated together, as columns: every stored column but the two that are the same for a whole file
/// (`ingest_seq`, `source_file`), which are added when a partition is written.
pub struct Chunk {
    pub columns: RecordBatch,
    /// Each row's partition: days since 1 January of year 1 (the UTC date of its time column).
    pub days: Vec<i32>,
    pub keys: Vec<RowKeys>,
}

impl Chunk {
    pub fn len(&self) -> usize {
        self.days.len()
    }
}

/// A row's partition day, as [`Chunk::days`] holds it.
pub fn day_of(micros: i64) -> i32 {
    use chrono::Datelike;
    super::utc_date(micros).num_days_from_ce()
}

fn text_field(name: &str) -> Field {
    Field::new(name, DataType::LargeUtf8, true)
}

fn utc_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        true,
    )
}

/// The audit columns, as [`Kind::stored_schema`] lists them, without `ingest_seq` and `source_file`.
const AUDIT_TEXT: [&str; 12] = [
    schema::NHS_NUMBER,
    schema::ACCOUNT_ID,
    schema::ACTOR_ROLE,
    schema::DEVICE_ID,
    schema::USER_AGENT,
    schema::IP_ADDRESS,
    schema::CHANNEL,
    schema::SESSION_ID,
    schema::ACTION,
    schema::SECTION,
    schema::OUTCOME,
    schema::RAW,
];

/// Audit events appended as they are validated.
pub struct AuditColumns {
    event_id: LargeStringBuilder,
    occurred_at: Vec<i64>,
    /// In the order of [`AUDIT_TEXT`].
    text: [LargeStringBuilder; 12],
    source_line: Vec<i64>,
    days: Vec<i32>,
    keys: Vec<RowKeys>,
    /// A derived event id, built here when the row carried none.
    id: String,
}

impl AuditColumns {
    pub fn with_capacity(rows: usize) -> AuditColumns {
        let text = || LargeStringBuilder::with_capacity(rows, rows * 16);
        AuditColumns {
            event_id: LargeStringBuilder::with_capacity(rows, rows * 16),
            occurred_at: Vec::with_capacity(rows),
            text: std::array::from_fn(|_| text()),
            source_line: Vec::with_capacity(rows),
            days: Vec::with_capacity(rows),
            keys: Vec::with_capacity(rows),
            id: String::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.days.len()
    }

    pub fn push(&mut self, row: &AuditRow) {
        let id = match row.event_id {
            Some(id) => id,
            None => {
                self.id = row.derived_id();
                &self.id
            }
        };
        self.keys.push(RowKeys::audit(
            id,
            row.occurred_at,
            &row.nhs_number,
            row.account_id,
            row.device_id,
            row.action,
            row.section,
        ));
        self.event_id.append_value(id);
        self.occurred_at.push(row.occurred_at);
        self.days.push(day_of(row.occurred_at));
        let values: [Option<&str>; 12] = [
            Some(&row.nhs_number),
            row.account_id,
            Some(row.actor_role),
            row.device_id,
            row.user_agent,
            row.ip_address.as_deref(),
            row.channel.as_deref(),
            row.session_id,
            Some(row.action),
            row.section,
            Some(row.outcome),
            row.raw,
        ];
        for (builder, value) in self.text.iter_mut().zip(values) {
            builder.append_option(value);
        }
        self.source_line.push(row.source_line);
    }

    pub fn finish(mut self) -> Result<Chunk, String> {
        let mut fields = vec![text_field(schema::EVENT_ID), utc_field(schema::OCCURRED_AT)];
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(TimestampMicrosecondArray::from(self.occurred_at).with_timezone("UTC")),
        ];
        for (name, builder) in AUDIT_TEXT.iter().zip(self.text.iter_mut()) {
            fields.push(text_field(name));
            arrays.push(Arc::new(builder.finish()));
        }
        fields.push(Field::new(schema::SOURCE_LINE, DataType::Int64, true));
        arrays.push(Arc::new(Int64Array::from(self.source_line)));
        let columns = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .map_err(|e| e.to_string())?;
        Ok(Chunk {
            columns,
            days: self.days,
            keys: self.keys,
        })
    }
}

/// Rows of one of the small kinds as a chunk: their frame crosses from polars through the C Data Interface, less
/// the two per-file columns.
pub fn rows_chunk<R: StoredRecord>(rows: &[R], provenance: &Provenance) -> Result<Chunk, String> {
    let frame = R::frame(rows, provenance).map_err(|e| e.to_string())?;
    let batch = crate::store::arrow_out::record_batch(&frame)?;
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|i| {
            let name = batch.schema_ref().field(*i).name().clone();
            name != schema::INGEST_SEQ && name != schema::SOURCE_FILE
        })
        .collect();
    Ok(Chunk {
        columns: batch.project(&keep).map_err(|e| e.to_string())?,
        days: rows.iter().map(|r| day_of(r.time())).collect(),
        keys: rows.iter().map(|r| RowKeys::plain(r.key())).collect(),
    })
}

/// The columns a partition's rows are sorted by, in one chunk.
struct SortColumns<'a> {
    nhs: &'a LargeStringArray,
    time: &'a [i64],
    key: &'a LargeStringArray,
}

fn sort_columns(kind: Kind, chunk: &Chunk) -> Result<SortColumns<'_>, String> {
    let [nhs, time, key] = kind.sort_columns();
    let column = |name: &str| {
        chunk
            .columns
            .column_by_name(name)
            .ok_or_else(|| format!("no column {name} in the rows"))
    };
    let text = |name: &str| {
        column(name)?
            .as_string_opt::<i64>()
            .ok_or_else(|| format!("column {name} is not text"))
    };
    let time = column(time)?;
    let time: &[i64] = match time.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => time
            .as_primitive_opt::<TimestampMicrosecondType>()
            .map(|a| a.values().as_ref()),
        DataType::Int64 => time
            .as_primitive_opt::<Int64Type>()
            .map(|a| a.values().as_ref()),
        _ => None,
    }
    .ok_or_else(|| "the time column is not in microseconds".to_string())?;
    Ok(SortColumns {
        nhs: text(nhs)?,
        time,
        key: text(key)?,
    })
}

/// A validated NHS number (ten ASCII digits) as a number: for ten-digit strings, numeric order is text order.
fn nhs_digits(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0u64, |n, b| n * 10 + u64::from(b - b'0')))
}

/// Sorts picks by patient, time and key. Each pick's patient and time are read once into a flat key (the patient as a
/// number when every NHS number is ten digits, as validated ones are), so the sort compares integers in one array
/// instead of following each pick to its chunk's text; the key text breaks ties.
fn sort_picks(sort: &[SortColumns], picks: &mut Vec<(usize, usize)>) {
    let by_text = |&(ca, ra): &(usize, usize), &(cb, rb): &(usize, usize)| {
        let (a, b) = (&sort[ca], &sort[cb]);
        a.nhs
            .value(ra)
            .cmp(b.nhs.value(rb))
            .then(a.time[ra].cmp(&b.time[rb]))
            .then_with(|| a.key.value(ra).cmp(b.key.value(rb)))
    };
    let keyed: Option<Vec<(u64, i64, usize, usize)>> = picks
        .iter()
        .map(|&(c, r)| nhs_digits(sort[c].nhs.value(r)).map(|n| (n, sort[c].time[r], c, r)))
        .collect();
    let Some(mut keyed) = keyed else {
        picks.sort_unstable_by(by_text);
        return;
    };
    keyed.sort_unstable_by(|a, b| {
        (a.0, a.1)
            .cmp(&(b.0, b.1))
            .then_with(|| sort[a.2].key.value(a.3).cmp(sort[b.2].key.value(b.3)))
    });
    picks.clear();
    picks.extend(keyed.into_iter().map(|(_, _, c, r)| (c, r)));
}

/// One partition's rows, picked from the batch's chunks by (chunk, row) in file order: de-duplicated against `seen`
/// (the first copy of a key wins), sorted by patient, time and key, and gathered into one record batch with the
/// per-file columns added. Gives the batch (`None` when every row was a duplicate) and the number of duplicates.
pub fn partition(
    kind: Kind,
    chunks: &[Chunk],
    mut picks: Vec<(usize, usize)>,
    seen: &mut crate::store::KeySet,
    provenance: &Provenance,
) -> Result<(Option<RecordBatch>, u64), String> {
    let before = picks.len();
    picks.retain(|&(c, r)| chunks[c].keys[r].admit(seen));
    let duplicates = (before - picks.len()) as u64;
    if picks.is_empty() {
        return Ok((None, duplicates));
    }
    let sort: Vec<SortColumns> = chunks
        .iter()
        .map(|c| sort_columns(kind, c))
        .collect::<Result<_, _>>()?;
    sort_picks(&sort, &mut picks);
    let schema = chunks[0].columns.schema();
    let n_columns = schema.fields().len();
    let mut fields: Vec<Field> = Vec::with_capacity(n_columns + 2);
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(n_columns + 2);
    for (i, field) in schema.fields().iter().enumerate() {
        if field.name() == schema::SOURCE_LINE {
            fields.push(Field::new(schema::INGEST_SEQ, DataType::Int64, true));
            arrays.push(Arc::new(Int64Array::from(vec![
                provenance.ingest_seq;
                picks.len()
            ])));
            fields.push(text_field(schema::SOURCE_FILE));
            arrays.push(Arc::new(LargeStringArray::from_iter_values(
                std::iter::repeat_n(provenance.source_file.as_str(), picks.len()),
            )));
        }
        let parts: Vec<&dyn Array> = chunks
            .iter()
            .map(|c| c.columns.column(i).as_ref())
            .collect();
        arrays
            .push(arrow_select::interleave::interleave(&parts, &picks).map_err(|e| e.to_string())?);
        fields.push(field.as_ref().clone());
    }
    let batch =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| e.to_string())?;
    Ok((Some(batch), duplicates))
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use polars::prelude::{ParquetReader, SerReader};

    use super::*;

    fn event(id: Option<&'static str>, nhs: &'static str, at: i64, line: i64) -> AuditRow<'static> {
        AuditRow {
            event_id: id,
            occurred_at: at,
            nhs_number: Cow::Borrowed(nhs),
            account_id: Some("acct"),
            actor_role: "patient",
            device_id: None,
            user_agent: Some("ua"),
            ip_address: Some(Cow::Owned("::1".into())),
            channel: None,
            session_id: None,
            action: "view",
            section: Some("letters"),
            outcome: "success",
            raw: None,
            source_line: line,
        }
    }

    fn chunk(rows: &[AuditRow]) -> Chunk {
        let mut c = AuditColumns::with_capacity(1);
        for r in rows {
            c.push(r);
        }
        c.finish().unwrap()
    }

    fn provenance() -> Provenance {
        Provenance {
            ingest_seq: 7,
            source_file: "a.csv".into(),
        }
    }

    fn all(chunks: &[Chunk]) -> Vec<(usize, usize)> {
        chunks
            .iter()
            .enumerate()
            .flat_map(|(c, ch)| (0..ch.len()).map(move |r| (c, r)))
            .collect()
    }

    #[test]
    fn audit_columns_are_written_with_the_stored_schema_and_values() {
        let chunks = [chunk(&[
            event(Some("e1"), "9434765919", 5, 2),
            event(None, "9434765919", 6, 3),
        ])];
        let mut seen = crate::store::KeySet::default();
        let (batch, duplicates) =
            partition(Kind::Audit, &chunks, all(&chunks), &mut seen, &provenance()).unwrap();
        assert_eq!(duplicates, 0);
        let mut bytes = Vec::new();
        crate::store::arrow_out::write(&mut bytes, &batch.unwrap(), &[]).unwrap();
        let df = ParquetReader::new(std::io::Cursor::new(bytes))
            .finish()
            .unwrap();
        assert_eq!(df.schema().as_ref(), &Kind::Audit.stored_schema());
        let ids: Vec<_> = df
            .column("event_id")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(ids[0], Some("e1"));
        assert!(ids[1].is_some_and(|id| id.starts_with(crate::records::DERIVED_ID_PREFIX)));
        let seq = df.column("ingest_seq").unwrap().i64().unwrap().get(1);
        assert_eq!(seq, Some(7));
        let lines: Vec<_> = df
            .column("source_line")
            .unwrap()
            .i64()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(lines, [Some(2), Some(3)]);
        assert_eq!(df.column("device_id").unwrap().null_count(), 2);
        assert_eq!(
            df.column("ip_address").unwrap().str().unwrap().get(0),
            Some("::1")
        );
    }

    /// The (NHS number, time, event id) of each pick, in order.
    fn sorted_rows(chunks: &[Chunk]) -> Vec<(String, i64, String)> {
        let sort: Vec<SortColumns> = chunks
            .iter()
            .map(|c| sort_columns(Kind::Audit, c).unwrap())
            .collect();
        let mut picks = all(chunks);
        sort_picks(&sort, &mut picks);
        picks
            .iter()
            .map(|&(c, r)| {
                let s = &sort[c];
                (
                    s.nhs.value(r).to_string(),
                    s.time[r],
                    s.key.value(r).to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn picks_sort_by_patient_time_and_key_in_text_order_whether_or_not_every_nhs_number_is_ten_digits(
    ) {
        let rows = [
            event(Some("k2"), "9434765919", 9, 2),
            event(Some("k1"), "9434765919", 9, 3),
            event(Some("k3"), "0434765870", 20, 4),
            event(Some("k4"), "9434765870", 1, 5),
            event(Some("k5"), "9434765919", 3, 6),
        ];
        let chunks = [chunk(&rows[..2]), chunk(&rows[2..])];
        let got = sorted_rows(&chunks);
        let mut want: Vec<(String, i64, String)> = got.clone();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(got[0].0, "0434765870", "a leading zero sorts first");
        // A number of another length (not one ingest accepts) falls back to comparing text: "94" before "943...".
        let mut odd = rows.to_vec();
        odd.push(event(Some("k6"), "94", 50, 7));
        let chunks = [chunk(&odd)];
        let got = sorted_rows(&chunks);
        let mut want = got.clone();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(got[1].0, "94");
    }

    #[test]
    fn a_partition_keeps_the_first_copy_in_file_order_and_sorts_by_patient_time_and_key() {
        // Two chunks: the second repeats an id of the first (a later copy) and adds rows out of order.
        let chunks = [
            chunk(&[
                event(Some("b"), "9434765919", 9, 2),
                event(Some("a"), "9434765870", 9, 3),
            ]),
            chunk(&[
                event(Some("b"), "9434765919", 9, 4),
                event(Some("c"), "9434765870", 1, 5),
                event(Some("d"), "9434765870", 9, 6),
            ]),
        ];
        let mut seen = crate::store::KeySet::default();
        let (batch, duplicates) =
            partition(Kind::Audit, &chunks, all(&chunks), &mut seen, &provenance()).unwrap();
        assert_eq!(duplicates, 1);
        let batch = batch.unwrap();
        let lines = batch
            .column_by_name(schema::SOURCE_LINE)
            .unwrap()
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        assert_eq!(lines, [5, 3, 6, 2], "the copy on line 4 is the duplicate");
        // The partition's set now holds the keys: the same rows again are all duplicates.
        let (again, duplicates) =
            partition(Kind::Audit, &chunks, all(&chunks), &mut seen, &provenance()).unwrap();
        assert!(again.is_none());
        assert_eq!(duplicates, 5);
    }
}
