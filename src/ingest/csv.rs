//! Reading one CSV export: gzip by content, a tolerated byte-order mark, case-insensitive headers mapped through
//! the config, and the kind recognised from the header.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use csv::ByteRecord;
use flate2::read::MultiGzDecoder;

use crate::config::Config;
use crate::schema::Kind;

/// Opens a file for reading, decompressing it when its first bytes are the gzip magic number (whatever its name).
/// `counter` is told how many (compressed) bytes have been read, for the progress bar.
pub fn open_maybe_gzip(
    path: &Path,
    counter: impl FnMut(&[u8]) + Send + 'static,
) -> io::Result<Box<dyn Read + Send>> {
    let file = File::open(path)?;
    let mut buffered = BufReader::with_capacity(
        1 << 20,
        CountingReader {
            inner: file,
            counter,
        },
    );
    let head = buffered.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(
            1 << 20,
            MultiGzDecoder::new(buffered),
        )))
    } else {
        Ok(Box::new(buffered))
    }
}

struct CountingReader<R, F> {
    inner: R,
    counter: F,
}

impl<R: Read, F: FnMut(&[u8])> Read for CountingReader<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.counter)(&buf[..n]);
        Ok(n)
    }
}

/// The longest CSV record (one row, all its fields) read: about 1 MiB. A real row is well under 1 KiB; a longer
/// one is a broken export (an unclosed quote swallowing the rest of the file) or hostile, and is quarantined with
/// reading resumed at the next line, so memory stays bounded whatever the file holds.
pub const MAX_RECORD_BYTES: u64 = 1 << 20;
/// The CSV parser's own read-ahead; a record is cut once the bytes pulled past its start exceed
/// `MAX_RECORD_BYTES + READ_AHEAD`, so no record of `MAX_RECORD_BYTES` or less is ever cut.
const READ_AHEAD: usize = 64 * 1024;

/// The CSV parser's input: counts what the parser pulls, and refuses to feed one record more than its limit.
/// The parser owns it; `CsvSource` reads and sets its counters through `get_ref`/`get_mut`.
struct MeteredReader {
    /// Bytes read past a skipped record's line end, given back before `inner`.
    pending: io::Cursor<Vec<u8>>,
    inner: Box<dyn Read + Send>,
    limit: u64,
    /// Bytes handed to the parser so far.
    pulled: u64,
    /// Newlines among them.
    newlines: u64,
    /// Where the record being parsed starts, in pulled bytes.
    record_start: u64,
    /// Set when the current record went over the limit.
    tripped: bool,
}

impl MeteredReader {
    /// Reads without metering: pending bytes first, then the input.
    fn raw_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if (self.pending.position() as usize) < self.pending.get_ref().len() {
            return self.pending.read(buf);
        }
        self.inner.read(buf)
    }
}

impl Read for MeteredReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pulled - self.record_start > self.limit {
            self.tripped = true;
            return Err(io::Error::other("record too long"));
        }
        let n = self.raw_read(buf)?;
        self.pulled += n as u64;
        self.newlines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        Ok(n)
    }
}

/// What reading the next record gave.
pub enum Next {
    /// A record, and the line of the file it starts on.
    Record(i64),
    /// A record longer than [`MAX_RECORD_BYTES`] starting on this line: it was skipped up to the end of the line
    /// where the limit was reached, and reading goes on after it.
    TooLong(i64),
    End,
}

/// A CSV reader positioned after the header, reading records of bounded size.
pub struct CsvSource {
    reader: Option<csv::Reader<MeteredReader>>,
    /// Lines before the current parser's first line (a parser restarts after a skipped record).
    line_base: u64,
    /// Pulled bytes before the current parser's first byte.
    byte_base: u64,
    /// Header names, trimmed and lower case, byte-order mark removed.
    pub headers: Vec<String>,
}

fn parser(input: MeteredReader) -> csv::Reader<MeteredReader> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(READ_AHEAD)
        .from_reader(input)
}

impl CsvSource {
    pub fn open(path: &Path, counter: impl FnMut(&[u8]) + Send + 'static) -> io::Result<CsvSource> {
        Self::from_reader(open_maybe_gzip(path, counter)?, MAX_RECORD_BYTES)
    }

    /// A source over any reader, with a record limit (tests use a small one).
    pub fn from_reader(input: Box<dyn Read + Send>, max_record: u64) -> io::Result<CsvSource> {
        let mut reader = parser(MeteredReader {
            pending: io::Cursor::new(Vec::new()),
            inner: input,
            limit: max_record + READ_AHEAD as u64,
            pulled: 0,
            newlines: 0,
            record_start: 0,
            tripped: false,
        });
        let mut header = ByteRecord::new();
        let has_header = match reader.read_byte_record(&mut header) {
            Ok(h) => h,
            Err(_) if reader.get_ref().tripped => {
                return Err(io::Error::other(format!(
                    "the header row is longer than {} bytes",
                    max_record
                )))
            }
            Err(e) => return Err(io::Error::other(e)),
        };
        let headers = if has_header {
            header
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let h = if i == 0 {
                        h.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(h)
                    } else {
                        h
                    };
                    String::from_utf8_lossy(h).trim().to_lowercase()
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut source = CsvSource {
            reader: Some(reader),
            line_base: 0,
            byte_base: 0,
            headers,
        };
        source.mark_record_start();
        Ok(source)
    }

    /// Tells the metered input where the next record starts.
    fn mark_record_start(&mut self) {
        if let Some(r) = &mut self.reader {
            let start = self.byte_base + r.position().byte();
            r.get_mut().record_start = start;
        }
    }

    /// Reads the next record into `record`.
    pub fn next(&mut self, record: &mut ByteRecord) -> Result<Next, csv::Error> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(Next::End);
        };
        let starts_on = self.line_base + reader.position().line();
        match reader.read_byte_record(record) {
            Ok(true) => {
                let line = self.line_base + record.position().map_or(0, |p| p.line());
                self.mark_record_start();
                Ok(Next::Record(line as i64))
            }
            Ok(false) => Ok(Next::End),
            Err(_) if reader.get_ref().tripped => {
                self.skip_rest_of_line()?;
                Ok(Next::TooLong(starts_on as i64))
            }
            Err(e) => Err(e),
        }
    }

    /// After a record over the limit: drops the bytes up to the next newline and starts a fresh parser there.
    /// Every byte the parser pulled belonged to the long record (it pulls only while a record is unfinished), so
    /// nothing of the next record is lost.
    fn skip_rest_of_line(&mut self) -> Result<(), csv::Error> {
        let Some(reader) = self.reader.take() else {
            return Ok(());
        };
        let mut input = reader.into_inner();
        input.tripped = false;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = input.raw_read(&mut buf)?;
            if n == 0 {
                break;
            }
            if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
                // What was read past the newline is given back to the next parser (and metered then).
                input.pending = io::Cursor::new(buf[i + 1..n].to_vec());
                input.pulled += i as u64 + 1;
                input.newlines += 1;
                break;
            }
            input.pulled += n as u64;
        }
        self.line_base = input.newlines;
        self.byte_base = input.pulled;
        input.record_start = input.pulled;
        self.reader = Some(parser(input));
        Ok(())
    }
}

/// Where each contract column sits in a file's records, for one kind.
#[derive(Debug, Clone)]
pub struct ColumnIndex {
    /// Every contract column of the kind with its position, if the header has it, in contract order.
    by_name: Vec<(&'static str, Option<usize>)>,
    pub width: usize,
    /// Header names that no contract column uses, listed once in the ingest summary.
    pub unknown: Vec<String>,
}

impl ColumnIndex {
    /// Matches a header against a kind's columns (through the config's mapping). Errors name the missing or
    /// repeated column.
    pub fn new(kind: Kind, headers: &[String], config: &Config) -> Result<ColumnIndex, String> {
        let mut positions = BTreeMap::new();
        let mut used = vec![false; headers.len()];
        for column in kind.input_columns() {
            let wanted = config.header_for(kind, column.name);
            let mut hits = headers.iter().enumerate().filter(|(_, h)| **h == wanted);
            match (hits.next(), hits.next()) {
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "column '{wanted}' appears more than once in the header"
                    ))
                }
                (Some((i, _)), None) => {
                    positions.insert(column.name, i);
                    used[i] = true;
                }
                (None, _) if column.required => {
                    let mapped = if wanted != column.name {
                        format!(" (mapped from '{wanted}')")
                    } else {
                        String::new()
                    };
                    return Err(format!(
                        "required column '{}'{mapped} is missing from the header",
                        column.name
                    ));
                }
                (None, _) => {}
            }
        }
        let unknown = headers
            .iter()
            .zip(&used)
            .filter(|(_, u)| !**u)
            .map(|(h, _)| h.clone())
            .collect();
        let by_name = kind
            .input_columns()
            .iter()
            .map(|c| (c.name, positions.get(c.name).copied()))
            .collect();
        Ok(ColumnIndex {
            by_name,
            width: headers.len(),
            unknown,
        })
    }

    /// Where a column is in the header. It is asked for every field of every row, always with the schema's own
    /// name constants, so the names are first matched by address (a pointer comparison each, no text compared: a
    /// profile had the map's string comparisons at 5% of ingest), and by text only if that finds nothing.
    pub fn position(&self, column: &str) -> Option<usize> {
        let same = |name: &&str| {
            std::ptr::eq(name.as_ptr(), column.as_ptr()) && name.len() == column.len()
        };
        self.by_name
            .iter()
            .find(|(name, _)| same(name))
            .or_else(|| self.by_name.iter().find(|(name, _)| *name == column))
            .and_then(|&(_, at)| at)
    }
}

/// Recognises a file's kind from its header: the kind all of whose required columns are present; if several
/// qualify (a header carrying every column), the one with the most of its columns present.
pub fn detect_kind(headers: &[String], config: &Config) -> Option<Kind> {
    Kind::ALL
        .into_iter()
        .filter(|k| {
            k.required_columns()
                .all(|c| headers.contains(&config.header_for(*k, c)))
        })
        .max_by_key(|k| {
            let present = k
                .input_columns()
                .iter()
                .filter(|c| headers.contains(&config.header_for(*k, c.name)))
                .count();
            // Ties go to the kind listed first in the contract.
            (present, std::cmp::Reverse(*k))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    /// Reads a whole text with a small record limit: each record as (line, first field) or a too-long line.
    fn read_all(text: &str, limit: u64) -> (Vec<String>, Vec<String>) {
        let input: Box<dyn Read + Send> = Box::new(io::Cursor::new(text.as_bytes().to_vec()));
        let mut source = CsvSource::from_reader(input, limit).unwrap();
        let mut record = ByteRecord::new();
        let mut out = Vec::new();
        loop {
            match source.next(&mut record).unwrap() {
                Next::Record(line) => out.push(format!(
                    "{line}:{}",
                    String::from_utf8_lossy(record.get(0).unwrap_or_default())
                )),
                Next::TooLong(line) => out.push(format!("{line}:TOO LONG")),
                Next::End => break,
            }
        }
        (source.headers, out)
    }

    #[test]
    fn a_record_over_the_limit_is_skipped_to_its_line_end_and_reading_goes_on() {
        let long = "x".repeat(300_000);
        let text = format!("a,b\n1,one\n2,{long}\n3,three\n\"4\nstill 4\",four\n5,{long}\n6,six\n");
        let (headers, rows) = read_all(&text, 1000);
        assert_eq!(headers, ["a", "b"]);
        assert_eq!(
            rows,
            [
                "2:1",
                "3:TOO LONG",
                "4:3",
                "5:4\nstill 4",
                "7:TOO LONG",
                "8:6"
            ],
            "line numbers stay right after a skip and across quoted newlines"
        );
        // Under the limit nothing is cut.
        let (_, rows) = read_all(&text, 1 << 20);
        assert_eq!(rows, ["2:1", "3:2", "4:3", "5:4\nstill 4", "7:5", "8:6"]);
    }

    #[test]
    fn an_unclosed_quote_cannot_swallow_the_file() {
        let rest: String = (0..20_000).map(|i| format!("{i},row\n")).collect();
        let text = format!("a,b\n1,one\n\"2,broken\n{rest}");
        let (_, rows) = read_all(&text, 4096);
        assert_eq!(rows[0], "2:1");
        assert_eq!(rows[1], "3:TOO LONG");
        // Reading resumed at a line boundary inside the swallowed part, with the right line numbers.
        let (line, first) = rows[2].split_once(':').unwrap();
        assert_eq!(
            line.parse::<usize>().unwrap(),
            first.parse::<usize>().unwrap() + 4
        );
        assert!(rows.last().unwrap().ends_with(":19999"));
    }

    #[test]
    fn an_over_long_header_is_an_error() {
        let text = format!("a,{}\n1,2\n", "b".repeat(200_000));
        let input: Box<dyn Read + Send> = Box::new(io::Cursor::new(text.into_bytes()));
        let e = CsvSource::from_reader(input, 100).err().unwrap();
        assert!(e.to_string().contains("header row is longer"), "{e}");
    }

    fn headers(s: &str) -> Vec<String> {
        s.split(',').map(|h| h.to_string()).collect()
    }

    #[test]
    fn kinds_are_recognised_by_header() {
        let c = Config::load(None, &Overrides::default()).unwrap();
        assert_eq!(
            detect_kind(&headers("occurred_at,nhs_number,action"), &c),
            Some(Kind::Audit)
        );
        assert_eq!(
            detect_kind(&headers("entry_id,nhs_number,recorded_at,code"), &c),
            Some(Kind::Entries)
        );
        assert_eq!(
            detect_kind(
                &headers("appointment_id,nhs_number,starts_at,ends_at,mode"),
                &c
            ),
            Some(Kind::Appointments)
        );
        assert_eq!(
            detect_kind(&headers("nhs_number,proxy_account_id,granted_at"), &c),
            Some(Kind::Proxies)
        );
        assert_eq!(detect_kind(&headers("nhs_number,label,scenario"), &c), None);
    }

    #[test]
    fn missing_and_repeated_columns_are_named() {
        let c = Config::load(None, &Overrides::default()).unwrap();
        let e = ColumnIndex::new(Kind::Audit, &headers("occurred_at,nhs_number"), &c).unwrap_err();
        assert!(e.contains("'action'"), "{e}");
        let e = ColumnIndex::new(
            Kind::Audit,
            &headers("occurred_at,nhs_number,action,action"),
            &c,
        )
        .unwrap_err();
        assert!(e.contains("more than once"), "{e}");
        let ix = ColumnIndex::new(
            Kind::Audit,
            &headers("occurred_at,extra,nhs_number,action"),
            &c,
        )
        .unwrap();
        assert_eq!(ix.unknown, vec!["extra".to_string()]);
        assert_eq!(ix.position("nhs_number"), Some(2));
    }

    #[test]
    fn a_column_is_found_by_the_schemas_name_and_by_the_same_text_held_elsewhere() {
        let c = Config::load(None, &Overrides::default()).unwrap();
        let ix = ColumnIndex::new(
            Kind::Audit,
            &headers("action,occurred_at,device_id,nhs_number"),
            &c,
        )
        .unwrap();
        // Whether a name is found by address depends on how the build placed the constants (the binary's
        // integration tests exercise that path on every row); by text it is found whatever string holds it.
        for (name, at) in [
            (crate::schema::ACTION, Some(0)),
            (crate::schema::OCCURRED_AT, Some(1)),
            (crate::schema::DEVICE_ID, Some(2)),
            (crate::schema::NHS_NUMBER, Some(3)),
            (crate::schema::SECTION, None),
        ] {
            assert_eq!(ix.position(name), at, "{name}");
            let copy = name.to_string();
            assert_eq!(ix.position(&copy), at, "{name} held in another string");
        }
        assert_eq!(ix.position("not_a_column"), None);
    }
}
