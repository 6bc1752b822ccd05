//! Entry points for the fuzz targets in `fuzz/` (`cargo fuzz run <target>`): each feeds arbitrary bytes to one
//! parser the way the real commands do, and must return (an error or a quarantine reason is fine) without
//! panicking, hanging or growing without bound. Not part of the command-line interface.

use std::io::Cursor;
use std::path::Path;

use crate::config::{Config, ConfigFile, Overrides};
use crate::ingest::csv::{ColumnIndex, CsvSource, Next};
use crate::ingest::fhir::{self, FhirSettings, Layout};
use crate::ingest::rows::{self, Fields};
use crate::schema::Kind;

fn default_config() -> Option<Config> {
    Config::load(None, &Overrides::default()).ok()
}

/// CSV bytes through the bounded reader and, for every kind whose columns the header carries, every row validator.
/// Returns the number of rows that validated.
pub fn csv_rows(data: &[u8]) -> usize {
    let Some(config) = default_config() else {
        return 0;
    };
    let mut valid = 0;
    for kind in Kind::ALL {
        let Ok(mut source) = CsvSource::from_reader(Box::new(Cursor::new(data.to_vec())), 4096)
        else {
            return 0;
        };
        let Ok(index) = ColumnIndex::new(kind, &source.headers, &config) else {
            continue;
        };
        let mut record = csv::ByteRecord::new();
        while let Ok(next) = source.next(&mut record) {
            let line = match next {
                Next::Record(line) => line,
                Next::TooLong(_) => continue,
                Next::End => break,
            };
            let f = Fields {
                index: &index,
                record: &record,
                tz: config.timezone,
                line,
            };
            let ok = match kind {
                Kind::Audit => rows::audit_row(&f).is_ok(),
                Kind::Entries => rows::record_entry(&f).is_ok(),
                Kind::Appointments => rows::appointment(&f).is_ok(),
                Kind::Proxies => rows::proxy_link(&f).is_ok(),
            };
            valid += usize::from(ok);
        }
    }
    valid
}

fn fhir(data: &[u8], layouts: &[Layout]) -> usize {
    let settings = FhirSettings {
        timezone: chrono_tz::Europe::London,
        session_extension: String::new(),
    };
    let mut mapped = 0;
    for layout in layouts {
        // As ingest reads them: NDJSON lines as text into the typed view, documents as trees.
        let _ = fhir::for_each_mapped(
            Box::new(Cursor::new(data.to_vec())),
            *layout,
            &|line, parsed| fhir::map_parsed(line, parsed, &settings),
            &mut |_, (result, _)| {
                mapped += usize::from(result.is_ok());
                Ok(())
            },
        );
    }
    mapped
}

/// FHIR JSON bytes, read as one document (a resource or a Bundle) and as NDJSON, every resource mapped.
pub fn fhir_json(data: &[u8]) -> usize {
    fhir(data, &[Layout::Json, Layout::NdJson])
}

/// FHIR XML bytes, every resource mapped.
pub fn fhir_xml(data: &[u8]) -> usize {
    fhir(data, &[Layout::Xml])
}

/// Config file bytes: parsed, then checked as `Config::load` checks them.
pub fn config(data: &[u8]) -> bool {
    match ConfigFile::parse(data) {
        Ok(f) => Config::build(
            f,
            Path::new("/nonexistent/accesswatch"),
            &Overrides::default(),
            data,
        )
        .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz entry points do what they say on inputs that are known to be valid.
    #[test]
    fn entry_points_accept_good_input() {
        let csv =
            b"event_id,occurred_at,nhs_number,action\ne1,2026-03-01T10:00:00Z,9434765919,view\n";
        assert_eq!(csv_rows(csv), 1);
        assert_eq!(csv_rows(b""), 0);
        let fixture = include_bytes!(
            "../tests/fixtures/auditevent/ihe-balp-1.1.4/AuditEvent-ex-auditBasicCreate1.json"
        );
        // The published example names its patient by a local reference, not an NHS number: quarantined, not mapped.
        assert_eq!(fhir_json(fixture), 0);
        let ours = br#"{"resourceType":"AuditEvent","recorded":"2026-03-01T10:00:00Z","action":"R","outcome":"0",
            "subtype":[{"system":"http://hl7.org/fhir/restful-interaction","code":"read"}],
            "agent":[{"requestor":true,"who":{"identifier":{"value":"acct-1"}}}],
            "entity":[{"what":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}},
                       "role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"1"}}]}"#;
        assert_eq!(
            fhir_json(ours),
            1,
            "one AuditEvent with an NHS number, mapped"
        );
        assert_eq!(fhir_json(b"not json"), 0);
        // As NDJSON, each line read into the typed view: a line that is a whole resource maps.
        let line = String::from_utf8_lossy(ours).replace('\n', " ");
        assert_eq!(fhir_json(format!("{line}\n{line}\n").as_bytes()), 2);
        assert!(config(b"timezone = \"Europe/London\"\n"));

        assert!(!config(b"no_such_key = 1\n"));
    }

    /// A small, seeded stand-in for `cargo fuzz` on the NDJSON reader (which needs nightly): resources cut, spliced,
    /// given stray values and flipped byte by byte, each read and mapped without a panic, and the unharmed lines still mapped.
    #[test]
    fn mutated_ndjson_lines_never_panic() {
        use rand::{Rng, SeedableRng};
        let good = br#"{"resourceType":"AuditEvent","recorded":"2026-03-01T10:00:00Z","action":"R","outcome":{"code":{"code":"0"}},"subtype":[{"code":"read"}],"agent":[{"requestor":"true","who":{"identifier":[{"value":"a"}]},"network":{"address":"10.0.0.1","type":"2"}},{"type":{"coding":{"code":"DEV"}},"who":{"reference":"Device/1"},"name":"App"}],"entity":[{"what":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}},"role":{"code":"1"}},{"what":{"reference":"Observation/7/_history/2"}}],"contained":[{"id":"p","identifier":{"value":"x"}}]}"#;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
        let alphabet = b"{}[]\":,\\ntrue0123456789 ";
        let tokens: [&[u8]; 8] = [
            b"null",
            b"true",
            b"1.5",
            b"[]",
            b"{}",
            br#""""#,
            b"[null,1]",
            br#""\u00e9""#,
        ];
        for _ in 0..3000 {
            let mut bytes = good.to_vec();
            for _ in 0..rng.gen_range(1..6) {
                let at = rng.gen_range(0..bytes.len());
                match rng.gen_range(0..4) {
                    0 => bytes[at] = alphabet[rng.gen_range(0..alphabet.len())],
                    1 => {
                        let token = tokens[rng.gen_range(0..tokens.len())];
                        bytes.splice(at..at, token.iter().copied());
                    }
                    2 => {
                        bytes.remove(at);
                    }
                    _ => {
                        let from = rng.gen_range(0..good.len());
                        let to = (from + rng.gen_range(1..40)).min(good.len());
                        bytes.splice(at..at, good[from..to].iter().copied());
                    }
                }
            }
            let mut file = good.to_vec();
            file.push(b'\n');
            file.extend(bytes.iter().filter(|b| **b != b'\n'));
            file.push(b'\n');
            file.extend_from_slice(good);
            assert!(fhir(&file, &[Layout::NdJson]) >= 2);
        }
    }
}
