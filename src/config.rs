//! The TOML configuration: built-in defaults < the config file < the command line.
//!
//! The file is read into [`ConfigFile`] (unknown keys are an error), then [`Config::build`] checks everything and
//! reports every problem at once, so a practice fixes its config in one go rather than one error per run.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::context::catalogue::Category;
use crate::detect::config::{Allowlist, DetectConfig};
use crate::schema::Kind;

/// Where outputs go when neither the config nor the command line says: beside the current directory.
pub const DEFAULT_STORE: &str = "accesswatch-out/store";
pub const DEFAULT_REPORTS: &str = "accesswatch-out/reports";
pub const DEFAULT_INBOX: &str = "sample_data";
pub const DEFAULT_TIMEZONE: &str = "Europe/London";
/// Rows validated before a batch is de-duplicated and written: bounds ingest memory whatever the input size.
pub const DEFAULT_BATCH_ROWS: usize = 250_000;
/// A partition that has gathered this many files (one per batch that touched it) is compacted after ingest.
pub const DEFAULT_COMPACT_AT_FILES: usize = 16;

/// The config file as written. Paths are relative to the file's folder.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The Parquet store.
    pub store: Option<PathBuf>,
    /// Where the nightly run finds new export files.
    pub inbox: Option<PathBuf>,
    /// Where detection runs write their folders.
    pub reports: Option<PathBuf>,
    /// The practice's IANA time zone: naive timestamps are read in it, and hour-of-day rules use it.
    pub timezone: Option<String>,
    #[serde(default)]
    pub ingest: IngestSection,
    /// Per kind, contract column name = the header the practice's export uses for it.
    #[serde(default)]
    pub columns: ColumnsSection,
    /// The practice's own sensitive code lists and keywords, added to the built-in catalogue.
    #[serde(default)]
    pub codes: CodesSection,
    /// Detection windows, scoring and rule thresholds.
    #[serde(default)]
    pub detect: DetectConfig,
    /// Devices and reviewed patient-device pairs that detection leaves alone.
    #[serde(default)]
    pub allowlist: Allowlist,
    /// The nightly run.
    #[serde(default)]
    pub run: RunSection,
    /// FHIR AuditEvent input.
    #[serde(default)]
    pub fhir: FhirSection,
    /// The file holding the key for pseudonymised exports (the ACCESSWATCH_KEY_FILE environment variable wins).
    pub pseudonymise_key_file: Option<PathBuf>,
    /// Pseudonymise analyst outputs by default: `query` results and the CSV/Parquet files of `detect` and `run`
    /// (`report.html` keeps real identifiers for the lead); `--no-pseudonymise` turns it off for one command.
    pub pseudonymise: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirSection {
    /// The URL of the extension that carries the login session id (core FHIR has none).
    pub session_extension: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    /// Run folders older than this many days before the as-of date are deleted.
    pub keep_days: u32,
    /// Exit with code 4 when any patient is at this level or above: "medium" or "high" (default: never).
    pub fail_on: Option<String>,
    /// The day a run reports on when `--as-of` is not given: "yesterday" (in the practice's time zone) or
    /// "latest-data" (the day of the newest audit event in the store).
    pub as_of: String,
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            keep_days: 90,
            fail_on: None,
            as_of: "yesterday".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodesSection {
    /// Use the built-in catalogue (default true); false leaves only the practice's lists and keywords.
    pub default_catalogue: Option<bool>,
    /// Extra lists in the catalogue format (`code,term,category,source`), relative to the config file.
    #[serde(default)]
    pub lists: Vec<PathBuf>,
    /// Extra term keywords per category: `contraception = ["nexplanon", "coil fit*"]`.
    #[serde(default)]
    pub keywords: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    pub batch_rows: Option<usize>,
    /// After ingest, partitions with at least this many data files are compacted into one (0: never).
    pub compact_at_files: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnsSection {
    #[serde(default)]
    pub audit: BTreeMap<String, String>,
    #[serde(default)]
    pub entries: BTreeMap<String, String>,
    #[serde(default)]
    pub appointments: BTreeMap<String, String>,
    #[serde(default)]
    pub proxies: BTreeMap<String, String>,
}

/// What the command line can override.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub store: Option<PathBuf>,
    pub inbox: Option<PathBuf>,
    pub reports: Option<PathBuf>,
    pub timezone: Option<String>,
}

/// A checked configuration, ready to use.
#[derive(Debug, Clone)]
pub struct Config {
    pub store: PathBuf,
    pub inbox: PathBuf,
    pub reports: PathBuf,
    pub timezone: Tz,
    pub batch_rows: usize,
    /// `ingest.compact_at_files` (default [`DEFAULT_COMPACT_AT_FILES`]; 0: never).
    pub compact_at_files: usize,
    /// Per kind: contract column -> export header (lower case).
    pub columns: BTreeMap<Kind, BTreeMap<&'static str, String>>,
    pub codes: CodesConfig,
    pub detect: DetectConfig,
    pub allowlist: Allowlist,
    pub run: RunSection,
    pub fhir_session_extension: String,
    pub pseudonymise_key_file: Option<PathBuf>,
    /// Whether analyst outputs are pseudonymised (the config's `pseudonymise`, or a command's
    /// `--pseudonymise`/`--no-pseudonymise`).
    pub pseudonymise: bool,
    /// SHA-256 of the config file's bytes (or of nothing), recorded in run summaries.
    pub hash: String,
    /// The file it came from, if any.
    pub source: Option<PathBuf>,
}

/// The checked `[codes]` section.
#[derive(Debug, Clone, Default)]
pub struct CodesConfig {
    pub use_default: bool,
    pub lists: Vec<PathBuf>,
    pub keywords: BTreeMap<Category, Vec<String>>,
}

/// Every problem found in a config, together.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(p) => write!(
                f,
                "config {} has {} problem(s):",
                p.display(),
                self.problems.len()
            )?,
            None => write!(f, "configuration has {} problem(s):", self.problems.len())?,
        }
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl ConfigFile {
    /// Parses a config file's bytes (TOML, UTF-8); the error says what is wrong and where.
    pub fn parse(bytes: &[u8]) -> Result<ConfigFile, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())?;
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

impl Config {
    /// Defaults, then the file (if given), then the command-line overrides.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let fail = |problems| ConfigError {
            file: file.map(Path::to_path_buf),
            problems,
        };
        let (parsed, bytes) = match file {
            // The embedded default runs the demo on sample_data/: report on the newest data, whatever today is.
            None => (
                ConfigFile {
                    run: RunSection {
                        as_of: "latest-data".into(),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                Vec::new(),
            ),
            Some(path) => {
                let bytes =
                    std::fs::read(path).map_err(|e| fail(vec![format!("cannot read it: {e}")]))?;
                let parsed = ConfigFile::parse(&bytes).map_err(|p| fail(vec![p]))?;
                (parsed, bytes)
            }
        };
        let base = file
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Config::build(parsed, &base, overrides, &bytes).map_err(fail)
    }

    /// Checks a parsed file against the rules no type can express, collecting every problem.
    pub fn build(
        f: ConfigFile,
        base: &Path,
        o: &Overrides,
        bytes: &[u8],
    ) -> Result<Config, Vec<String>> {
        let mut problems = Vec::new();
        let rel = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        // Command-line paths are relative to the current directory, file paths to the file.
        let pick = |cli: &Option<PathBuf>, file: &Option<PathBuf>, default: &str| {
            cli.clone()
                .or_else(|| file.as_deref().map(rel))
                .unwrap_or_else(|| PathBuf::from(default))
        };
        let store = pick(&o.store, &f.store, DEFAULT_STORE);
        let inbox = pick(&o.inbox, &f.inbox, DEFAULT_INBOX);
        let reports = pick(&o.reports, &f.reports, DEFAULT_REPORTS);

        let tz_name = o
            .timezone
            .clone()
            .or(f.timezone)
            .unwrap_or_else(|| DEFAULT_TIMEZONE.into());
        let timezone = tz_name.parse::<Tz>().unwrap_or_else(|_| {
            problems.push(format!(
                "timezone: '{tz_name}' is not an IANA time zone name (e.g. Europe/London)"
            ));
            chrono_tz::Europe::London
        });

        let batch_rows = f.ingest.batch_rows.unwrap_or(DEFAULT_BATCH_ROWS);
        if batch_rows == 0 {
            problems.push("ingest.batch_rows: must be at least 1".into());
        }

        let mut columns = BTreeMap::new();
        let sections = [
            (Kind::Audit, f.columns.audit),
            (Kind::Entries, f.columns.entries),
            (Kind::Appointments, f.columns.appointments),
            (Kind::Proxies, f.columns.proxies),
        ];
        for (kind, map) in sections {
            let mut mapping = BTreeMap::new();
            for (contract, header) in map {
                let Some(column) = kind.input_columns().iter().find(|c| c.name == contract) else {
                    let known: Vec<_> = kind.input_columns().iter().map(|c| c.name).collect();
                    problems.push(format!(
                        "columns.{kind}.{contract}: not a column of {kind} (columns: {})",
                        known.join(", ")
                    ));
                    continue;
                };
                let header = header.trim().to_lowercase();
                if header.is_empty() {
                    problems.push(format!(
                        "columns.{kind}.{contract}: the export header name is empty"
                    ));
                    continue;
                }
                if let Some((other, _)) = mapping.iter().find(|(_, h)| **h == header) {
                    problems.push(format!(
                        "columns.{kind}: '{header}' is mapped to both {other} and {}",
                        column.name
                    ));
                    continue;
                }
                mapping.insert(column.name, header);
            }
            columns.insert(kind, mapping);
        }

        let mut codes = CodesConfig {
            use_default: f.codes.default_catalogue.unwrap_or(true),
            ..Default::default()
        };
        for list in &f.codes.lists {
            let path = rel(list);
            if !path.is_file() {
                problems.push(format!("codes.lists: {} is not a file", path.display()));
            }
            codes.lists.push(path);
        }
        for (name, words) in f.codes.keywords {
            match Category::from_name(&name) {
                Some(c) => codes.keywords.entry(c).or_default().extend(words),
                None => problems.push(format!("codes.keywords.{name}: not a sensitive category")),
            }
        }

        if let Some(level) = &f.run.fail_on {
            if level != "medium" && level != "high" {
                problems.push(format!("run.fail_on: '{level}' is not medium or high"));
            }
        }
        if f.run.as_of != "yesterday" && f.run.as_of != "latest-data" {
            problems.push(format!(
                "run.as_of: '{}' is not yesterday or latest-data",
                f.run.as_of
            ));
        }
        problems.extend(f.detect.problems());
        for r in &f.allowlist.reviewed {
            if crate::ingest::validate::nhs_number(&r.nhs_number).is_err() {
                problems.push("allowlist.reviewed: an nhs_number is not a valid NHS number".into());
            }
        }

        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Config {
            store,
            inbox,
            reports,
            timezone,
            batch_rows,
            compact_at_files: f
                .ingest
                .compact_at_files
                .unwrap_or(DEFAULT_COMPACT_AT_FILES),
            columns,
            codes,
            detect: f.detect,
            allowlist: f.allowlist,
            run: f.run,
            pseudonymise_key_file: f.pseudonymise_key_file.as_deref().map(rel),
            pseudonymise: f.pseudonymise.unwrap_or(false),
            // Core FHIR has no session id: without a configured extension, sessions are rebuilt from gaps.
            fhir_session_extension: f.fhir.session_extension.unwrap_or_default(),
            hash: hex::encode(Sha256::digest(bytes)),
            source: None,
        })
    }

    /// Yesterday in the practice's time zone: the day a nightly run reports on.
    pub fn yesterday(&self) -> chrono::NaiveDate {
        chrono::Utc::now()
            .with_timezone(&self.timezone)
            .date_naive()
            - chrono::Duration::days(1)
    }

    /// The pseudonymiser for analyst outputs when they are to be pseudonymised; an error when they are and no
    /// usable key is configured (checked before any work is done).
    pub fn pseudonymiser(
        &self,
    ) -> Result<Option<crate::pseudonym::Pseudonymiser>, crate::pseudonym::PseudonymError> {
        if !self.pseudonymise {
            return Ok(None);
        }
        crate::pseudonym::Pseudonymiser::from_key_file(self.pseudonymise_key_file.as_deref())
            .map(Some)
    }

    /// Output folders that exist and give any access to their group or to others: each is a warning (the data is
    /// special-category health data; accesswatch creates its own folders owner-only, but leaves the permissions of a
    /// folder it did not create to whoever made it). What is inside the store is made owner-only by ingest.
    pub fn open_outputs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in [&self.store, &self.reports] {
            #[cfg(unix)]
            if let Ok(meta) = std::fs::metadata(dir) {
                use std::os::unix::fs::PermissionsExt;
                if meta.permissions().mode() & 0o077 != 0 {
                    out.push(dir.clone());
                }
            }
        }
        out
    }

    /// The export header that carries `contract` for `kind` (lower case).
    pub fn header_for(&self, kind: Kind, contract: &'static str) -> String {
        self.columns
            .get(&kind)
            .and_then(|m| m.get(contract))
            .cloned()
            .unwrap_or_else(|| contract.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(toml_text: &str, o: &Overrides) -> Result<Config, Vec<String>> {
        let f: ConfigFile = toml::from_str(toml_text).map_err(|e| vec![e.to_string()])?;
        Config::build(f, Path::new("/etc/aw"), o, toml_text.as_bytes())
    }

    #[test]
    fn defaults_then_file_then_command_line() {
        let c = build("", &Overrides::default()).unwrap();
        assert_eq!(c.store, PathBuf::from(DEFAULT_STORE));
        assert_eq!(c.timezone, chrono_tz::Europe::London);
        let c = build(
            "store = \"s\"\ntimezone = \"Europe/Dublin\"",
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.store,
            PathBuf::from("/etc/aw/s"),
            "file paths are relative to the file"
        );
        assert_eq!(c.timezone, chrono_tz::Europe::Dublin);
        let o = Overrides {
            store: Some("cli".into()),
            ..Default::default()
        };
        assert_eq!(
            build("store = \"s\"", &o).unwrap().store,
            PathBuf::from("cli")
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = build("stroe = \"x\"", &Overrides::default()).unwrap_err();
        assert!(e[0].contains("unknown field"), "{e:?}");
        let e = build("[columns.audit]\nx = 1", &Overrides::default()).unwrap_err();
        assert!(!e.is_empty());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = build(
            "timezone = \"Mars/Olympus\"\n[ingest]\nbatch_rows = 0\n[columns.audit]\nwhen = \"EventTime\"\noccurred_at = \"\"",
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e.iter().any(|p| p.contains("Mars/Olympus")));
        assert!(e.iter().any(|p| p.contains("columns.audit.when")));
    }

    #[test]
    fn column_mappings_are_lower_case_and_unique() {
        let c = build(
            "[columns.audit]\noccurred_at = \"EventTime\"",
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.header_for(Kind::Audit, crate::schema::OCCURRED_AT),
            "eventtime"
        );
        assert_eq!(c.header_for(Kind::Audit, crate::schema::ACTION), "action");
        let e = build(
            "[columns.audit]\noccurred_at = \"T\"\naction = \"t\"",
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(e[0].contains("mapped to both"), "{e:?}");
    }
}
