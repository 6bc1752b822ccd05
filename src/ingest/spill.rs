//! A file's validated rows spilled to disk by partition day, so that de-duplication needs the key digests of one
//! day at a time, not of every day a large file touches.
//!
//! Each batch of `ingest.batch_rows` valid rows is split by day and appended, still in file order, to that day's
//! spill file (`<store>/_tmp/ingest-<pid>-<seq>/day-<n>.arrows`: Arrow IPC streams, one per batch, one after the
//! other, each row's key digests as four extra columns). When the file has been read, each day is de-duplicated
//! against what its partition already holds, sorted and written, on both cores, a day per core. The folder is
//! owner-only and removed when the file is done; one left by a killed run is removed when the store is next opened
//! (everything under `_tmp` is).

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, FixedSizeBinaryBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{DataType, Field, Schema};

use super::columns::Chunk;
use crate::store::{RowKeys, Store, StoreError, TwinKeys};

/// The key columns appended to a spilled batch, after the row's own columns.
const OWN: &str = "__aw_key_own";
const ANY: &str = "__aw_key_any";
const DERIVED: &str = "__aw_key_derived";
const IS_DERIVED: &str = "__aw_key_is_derived";
const KEY_COLUMNS: usize = 4;

/// One file's spill folder and how many rows each day holds.
pub struct DaySpill {
    dir: PathBuf,
    rows: BTreeMap<i32, usize>,
}

impl DaySpill {
    pub fn create(store: &Store, seq: i64) -> Result<DaySpill, StoreError> {
        let dir = store
            .root()
            .join(crate::store::TMP_DIR)
            .join(format!("ingest-{}-{seq}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| StoreError::Write {
                path: dir.clone(),
                source,
            })?;
        }
        crate::store::create_private_dir(&dir)?;
        Ok(DaySpill {
            dir,
            rows: BTreeMap::new(),
        })
    }

    fn path(&self, day: i32) -> PathBuf {
        self.dir.join(format!("day-{day}.arrows"))
    }

    /// The days spilled so far, in order.
    pub fn days(&self) -> Vec<i32> {
        self.rows.keys().copied().collect()
    }

    /// Appends a batch's rows to their days' files, in file order within each day; days are written in parallel.
    pub fn append(&mut self, chunks: &[Chunk]) -> Result<(), StoreError> {
        use rayon::prelude::*;
        let by_day = picks_by_day(chunks);
        for (day, picks) in &by_day {
            *self.rows.entry(*day).or_default() += picks.len();
        }
        by_day
            .into_par_iter()
            .map(|(day, picks)| self.append_day(day, chunks, &picks))
            .collect::<Result<Vec<()>, StoreError>>()?;
        // A point where the crash tests may kill the process: rows spilled, nothing of this file in the store yet.
        crate::store::fault_point();
        Ok(())
    }

    fn append_day(
        &self,
        day: i32,
        chunks: &[Chunk],
        picks: &[(usize, usize)],
    ) -> Result<(), StoreError> {
        let path = self.path(day);
        let encode = |message: String| StoreError::Spill {
            path: path.clone(),
            message,
        };
        let batch = spilled_batch(chunks, picks).map_err(encode)?;
        let write = |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        let mut file = crate::store::private_file(&path, false).map_err(write)?;
        file.seek(SeekFrom::End(0)).map_err(write)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        // LZ4 frames: the text columns repeat a great deal, and uncompressed a 100M-row spill took twice the CSV's
        // size on disk.
        let options = arrow_ipc::writer::IpcWriteOptions::default()
            .try_with_compression(Some(arrow_ipc::CompressionType::LZ4_FRAME))
            .map_err(|e| encode(e.to_string()))?;
        let mut writer = StreamWriter::try_new_with_options(&mut out, batch.schema_ref(), options)
            .map_err(|e| encode(e.to_string()))?;
        writer.write(&batch).map_err(|e| encode(e.to_string()))?;
        writer.finish().map_err(|e| encode(e.to_string()))?;
        drop(writer);
        out.flush().map_err(write)?;
        Ok(())
    }

    /// A day's rows read back in file order, in slices of `slice_rows` rows (the last fewer), each handed to `each`
    /// as chunks. The slices depend only on the day's rows, not on how the file was batched.
    pub fn read_day(
        &self,
        day: i32,
        slice_rows: usize,
        each: &mut dyn FnMut(Vec<Chunk>) -> Result<(), super::IngestError>,
    ) -> Result<(), super::IngestError> {
        let path = self.path(day);
        let decode = |message: String| StoreError::Spill {
            path: path.clone(),
            message,
        };
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut slice: Vec<Chunk> = Vec::new();
        let mut in_slice = 0usize;
        let slice_rows = slice_rows.max(1);
        loop {
            let at = input.stream_position().map_err(io)?;
            if at >= len {
                break;
            }
            let reader =
                StreamReader::try_new(&mut input, None).map_err(|e| decode(e.to_string()))?;
            for batch in reader {
                let mut chunk =
                    chunk_of(batch.map_err(|e| decode(e.to_string()))?, day).map_err(decode)?;
                while chunk.len() > 0 {
                    let take = (slice_rows - in_slice).min(chunk.len());
                    let (head, rest) = split(chunk, take);
                    slice.push(head);
                    in_slice += take;
                    chunk = rest;
                    if in_slice == slice_rows {
                        each(std::mem::take(&mut slice))?;
                        in_slice = 0;
                    }
                }
            }
        }
        if !slice.is_empty() {
            each(slice)?;
        }
        Ok(())
    }
}

/// A [`DaySpill`] appended to on a thread of its own: a full batch is handed over, and the next one is read and
/// validated while it is written. (They took turns: through a large file's reading the machine idled about a third of
/// a core.) Batches are appended in the order they are handed over, so each day's rows stay in file order; one batch
/// waits at most, so a batch more is held than when they took turns.
pub struct SpillWriter {
    /// The spill's folder, to name in an error.
    dir: PathBuf,
    batches: Option<std::sync::mpsc::SyncSender<Vec<Chunk>>>,
    thread: Option<std::thread::JoinHandle<Result<DaySpill, StoreError>>>,
}

impl SpillWriter {
    pub fn start(spill: DaySpill) -> Result<SpillWriter, StoreError> {
        let (batches, received) = std::sync::mpsc::sync_channel::<Vec<Chunk>>(0);
        let dir = spill.dir.clone();
        let path = dir.clone();
        let thread = std::thread::Builder::new()
            .name("spill".into())
            .spawn(move || {
                let mut spill = spill;
                for chunks in received {
                    spill.append(&chunks)?;
                }
                Ok(spill)
            })
            .map_err(|source| StoreError::Write { path, source })?;
        Ok(SpillWriter {
            dir,
            batches: Some(batches),
            thread: Some(thread),
        })
    }

    /// Hands a batch over; gives the writer's error if it has stopped.
    pub fn append(&mut self, chunks: Vec<Chunk>) -> Result<(), StoreError> {
        let sent = match &self.batches {
            Some(batches) => batches.send(chunks).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            // The writer stopped, and says why.
            self.finish().map(|_| ())
        }
    }

    /// Waits for every batch handed over to be written, and gives the spill back.
    pub fn finish(&mut self) -> Result<DaySpill, StoreError> {
        self.batches = None;
        let stopped = || StoreError::Spill {
            path: self.dir.clone(),
            message: "the spill's writer stopped".into(),
        };
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| stopped())?,
            None => Err(stopped()),
        }
    }
}

impl Drop for SpillWriter {
    /// A file that failed part way: the writer ends and its spill folder is removed before the file's report.
    fn drop(&mut self) {
        self.batches = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for DaySpill {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Each day's (chunk, row) picks, in file order.
pub fn picks_by_day(chunks: &[Chunk]) -> BTreeMap<i32, Vec<(usize, usize)>> {
    let mut picks: BTreeMap<i32, Vec<(usize, usize)>> = BTreeMap::new();
    for (c, chunk) in chunks.iter().enumerate() {
        for (r, day) in chunk.days.iter().enumerate() {
            picks.entry(*day).or_default().push((c, r));
        }
    }
    picks
}

/// The picked rows gathered into one batch, with their key digests as the last columns.
fn spilled_batch(chunks: &[Chunk], picks: &[(usize, usize)]) -> Result<RecordBatch, String> {
    let schema = chunks.first().ok_or("no rows to spill")?.columns.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(fields.len() + KEY_COLUMNS);
    for i in 0..fields.len() {
        let parts: Vec<&dyn Array> = chunks
            .iter()
            .map(|c| c.columns.column(i).as_ref())
            .collect();
        arrays
            .push(arrow_select::interleave::interleave(&parts, picks).map_err(|e| e.to_string())?);
    }
    let n = picks.len();
    let mut own = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut any = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut derived = FixedSizeBinaryBuilder::with_capacity(n, 16);
    let mut is_derived = BooleanBuilder::with_capacity(n);
    for &(c, r) in picks {
        let keys = &chunks[c].keys[r];
        own.append_value(keys.own.to_le_bytes())
            .map_err(|e| e.to_string())?;
        match keys.twin {
            Some(twin) => {
                any.append_value(twin.any.to_le_bytes())
                    .map_err(|e| e.to_string())?;
                derived
                    .append_value(twin.derived.to_le_bytes())
                    .map_err(|e| e.to_string())?;
                is_derived.append_value(twin.is_derived);
            }
            None => {
                any.append_null();
                derived.append_null();
                is_derived.append_null();
            }
        }
    }
    for (name, nullable) in [(OWN, false), (ANY, true), (DERIVED, true)] {
        fields.push(Field::new(name, DataType::FixedSizeBinary(16), nullable));
    }
    fields.push(Field::new(IS_DERIVED, DataType::Boolean, true));
    arrays.push(Arc::new(own.finish()));
    arrays.push(Arc::new(any.finish()));
    arrays.push(Arc::new(derived.finish()));
    arrays.push(Arc::new(is_derived.finish()));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| e.to_string())
}

/// A spilled batch as a chunk again: its row columns, and the keys from its last four columns.
fn chunk_of(batch: RecordBatch, day: i32) -> Result<Chunk, String> {
    let n_columns = batch.num_columns();
    if n_columns < KEY_COLUMNS {
        return Err("a spilled batch has no key columns".into());
    }
    let base = n_columns - KEY_COLUMNS;
    let binary = |i: usize| {
        batch
            .column(base + i)
            .as_fixed_size_binary_opt()
            .filter(|a| a.value_length() == 16)
            .ok_or_else(|| format!("spilled key column {i} is not 16-byte binary"))
    };
    let (own, any, derived) = (binary(0)?, binary(1)?, binary(2)?);
    let is_derived = batch
        .column(base + 3)
        .as_boolean_opt()
        .ok_or("the spilled key flags are not booleans")?;
    let digest = |a: &arrow_array::FixedSizeBinaryArray, r: usize| {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(a.value(r));
        u128::from_le_bytes(bytes)
    };
    let keys = (0..batch.num_rows())
        .map(|r| RowKeys {
            own: digest(own, r),
            twin: (!is_derived.is_null(r)).then(|| TwinKeys {
                any: digest(any, r),
                derived: digest(derived, r),
                is_derived: is_derived.value(r),
            }),
        })
        .collect();
    let columns = batch
        .project(&(0..base).collect::<Vec<_>>())
        .map_err(|e| e.to_string())?;
    Ok(Chunk {
        days: vec![day; columns.num_rows()],
        columns,
        keys,
    })
}

/// A chunk cut in two after its first `at` rows.
fn split(chunk: Chunk, at: usize) -> (Chunk, Chunk) {
    let n = chunk.len();
    let Chunk {
        columns,
        mut days,
        mut keys,
    } = chunk;
    let rest_days = days.split_off(at);
    let rest_keys = keys.split_off(at);
    (
        Chunk {
            columns: columns.slice(0, at),
            days,
            keys,
        },
        Chunk {
            columns: columns.slice(at, n - at),
            days: rest_days,
            keys: rest_keys,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, LargeStringArray};

    fn chunk(days: &[i32], first_line: i64) -> Chunk {
        let n = days.len();
        let lines: Vec<i64> = (0..n as i64).map(|i| first_line + i).collect();
        let names: Vec<String> = lines.iter().map(|l| format!("row{l}")).collect();
        let columns = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("name", DataType::LargeUtf8, true),
                Field::new("line", DataType::Int64, true),
            ])),
            vec![
                Arc::new(LargeStringArray::from_iter_values(names.iter())),
                Arc::new(Int64Array::from(lines.clone())),
            ],
        )
        .unwrap();
        let keys = lines
            .iter()
            .map(|l| RowKeys {
                own: (*l as u128) << 64 | 7,
                twin: (l % 2 == 0).then_some(TwinKeys {
                    any: *l as u128 + 1,
                    derived: u128::MAX - *l as u128,
                    is_derived: l % 4 == 0,
                }),
            })
            .collect();
        Chunk {
            columns,
            days: days.to_vec(),
            keys,
        }
    }

    fn lines(chunks: &[Chunk]) -> Vec<i64> {
        chunks
            .iter()
            .flat_map(|c| {
                c.columns
                    .column(1)
                    .as_primitive::<arrow_array::types::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn a_days_rows_come_back_in_file_order_with_their_keys_in_slices_that_ignore_batching() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_write(dir.path()).unwrap();
        let days_a = [5, 6, 5, 5, 7, 5, 6];
        let days_b = [5, 5, 6, 5];
        let (a, b) = (chunk(&days_a, 100), chunk(&days_b, 200));
        let expected_keys: Vec<RowKeys> = a
            .keys
            .iter()
            .zip(&a.days)
            .chain(b.keys.iter().zip(&b.days))
            .filter(|(_, d)| **d == 5)
            .map(|(k, _)| *k)
            .collect();
        // The same rows spilled in one batch and in two give the same slices.
        let mut slicings = Vec::new();
        for batches in [vec![vec![a, b]], {
            let (a, b) = (chunk(&days_a, 100), chunk(&days_b, 200));
            vec![vec![a], vec![b]]
        }] {
            let mut spill = DaySpill::create(&store, 1).unwrap();
            for batch in &batches {
                spill.append(batch).unwrap();
            }
            assert_eq!(spill.days(), vec![5, 6, 7]);
            let mut slices: Vec<Vec<i64>> = Vec::new();
            let mut keys: Vec<RowKeys> = Vec::new();
            spill
                .read_day(5, 3, &mut |chunks| {
                    assert!(chunks.iter().all(|c| c.days.iter().all(|d| *d == 5)));
                    keys.extend(chunks.iter().flat_map(|c| c.keys.iter().copied()));
                    slices.push(lines(&chunks));
                    Ok(())
                })
                .unwrap();
            assert_eq!(keys, expected_keys);
            slicings.push(slices);
        }
        assert_eq!(
            slicings[0],
            vec![vec![100, 102, 103], vec![105, 200, 201], vec![203]]
        );
        assert_eq!(slicings[0], slicings[1]);
    }

    #[test]
    fn batches_handed_to_the_writer_are_appended_in_order_and_its_failure_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_write(dir.path()).unwrap();
        let mut writer = SpillWriter::start(DaySpill::create(&store, 1).unwrap()).unwrap();
        let mut expected = Vec::new();
        for b in 0..12 {
            let first = 100 * b;
            expected.extend([first, first + 2]);
            writer.append(vec![chunk(&[5, 6, 5], first)]).unwrap();
        }
        let spill = writer.finish().unwrap();
        let mut read = Vec::new();
        spill
            .read_day(5, 1000, &mut |chunks| {
                read.extend(lines(&chunks));
                Ok(())
            })
            .unwrap();
        assert_eq!(read, expected, "every batch, in the order handed over");

        // A write that fails (its folder is gone) is reported, not lost.
        let spill = DaySpill::create(&store, 2).unwrap();
        let folder = spill.dir.clone();
        let mut writer = SpillWriter::start(spill).unwrap();
        std::fs::remove_dir_all(&folder).unwrap();
        let _ = writer.append(vec![chunk(&[5], 1)]);
        let _ = writer.append(vec![chunk(&[5], 2)]);
        assert!(writer.finish().is_err());
    }

    #[test]
    fn the_spill_folder_is_gone_when_a_file_stops_part_way() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_write(dir.path()).unwrap();
        let spill = DaySpill::create(&store, 3).unwrap();
        let folder = spill.dir.clone();
        let mut writer = SpillWriter::start(spill).unwrap();
        writer.append(vec![chunk(&[5, 6], 1)]).unwrap();
        drop(writer);
        assert!(!folder.exists());
    }

    #[test]
    fn the_spill_folder_is_gone_when_the_file_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_for_write(dir.path()).unwrap();
        let spill = DaySpill::create(&store, 3).unwrap();
        let folder = spill.dir.clone();
        assert!(folder.is_dir());
        drop(spill);
        assert!(!folder.exists());
    }
}
