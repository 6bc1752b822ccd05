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
    counter: impl FnMut(u64) + Send + 'static,
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

impl<R: Read, F: FnMut(u64)> Read for CountingReader<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.counter)(n as u64);
        Ok(n)
    }
}

/// A CSV reader positioned after the header.
pub struct CsvSource {
    pub reader: csv::Reader<Box<dyn Read + Send>>,
    /// Header names, trimmed and lower case, byte-order mark removed.
    pub headers: Vec<String>,
}

impl CsvSource {
    pub fn open(path: &Path, counter: impl FnMut(u64) + Send + 'static) -> io::Result<CsvSource> {
        let input = open_maybe_gzip(path, counter)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(input);
        let mut header = ByteRecord::new();
        if !reader
            .read_byte_record(&mut header)
            .map_err(io::Error::other)?
        {
            return Ok(CsvSource {
                reader,
                headers: Vec::new(),
            });
        }
        let headers = header
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
            .collect();
        Ok(CsvSource { reader, headers })
    }
}

/// Where each contract column sits in a file's records, for one kind.
#[derive(Debug, Clone)]
pub struct ColumnIndex {
    positions: BTreeMap<&'static str, usize>,
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
        Ok(ColumnIndex {
            positions,
            width: headers.len(),
            unknown,
        })
    }

    pub fn position(&self, column: &str) -> Option<usize> {
        self.positions.get(column).copied()
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
}
