//! The sensitive code catalogue: which record entries an abuser would be looking for, by SNOMED CT code and, where
//! no list covers a code, by keywords in the entry's term.
//!
//! The default catalogue (`codelists/sensitive_codes.csv`, `codelists/keywords.toml`) is compiled into the binary;
//! a practice adds its own lists and keywords in the config's `[codes]` section.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ingest::validate;

pub const DEFAULT_CODES_CSV: &str = include_str!("../../codelists/sensitive_codes.csv");
pub const DEFAULT_KEYWORDS_TOML: &str = include_str!("../../codelists/keywords.toml");
pub const CATALOGUE_HEADER: [&str; 4] = ["code", "term", "category", "source"];

/// The contract's sensitive categories, in the order of concern used when one entry falls in several: the first
/// listed wins (a MARAC letter that mentions depression is an other-agency document first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    DomesticAbuse,
    OtherAgencyDocument,
    Safeguarding,
    SelfHarm,
    Injury,
    SexualHealth,
    Contraception,
    Pregnancy,
    MentalHealth,
    SubstanceMisuse,
}

impl Category {
    pub const ALL: [Category; 10] = [
        Category::DomesticAbuse,
        Category::OtherAgencyDocument,
        Category::Safeguarding,
        Category::SelfHarm,
        Category::Injury,
        Category::SexualHealth,
        Category::Contraception,
        Category::Pregnancy,
        Category::MentalHealth,
        Category::SubstanceMisuse,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Category::DomesticAbuse => "domestic_abuse",
            Category::OtherAgencyDocument => "other_agency_document",
            Category::Safeguarding => "safeguarding",
            Category::SelfHarm => "self_harm",
            Category::Injury => "injury",
            Category::SexualHealth => "sexual_health",
            Category::Contraception => "contraception",
            Category::Pregnancy => "pregnancy",
            Category::MentalHealth => "mental_health",
            Category::SubstanceMisuse => "substance_misuse",
        }
    }

    /// Plain words for a safeguarding lead ("domestic abuse", "a document from another agency").
    pub fn plain(self) -> &'static str {
        match self {
            Category::DomesticAbuse => "domestic abuse",
            Category::OtherAgencyDocument => "a document from another agency",
            Category::Safeguarding => "safeguarding",
            Category::SelfHarm => "self-harm",
            Category::Injury => "an injury",
            Category::SexualHealth => "sexual health",
            Category::Contraception => "contraception",
            Category::Pregnancy => "pregnancy",
            Category::MentalHealth => "mental health",
            Category::SubstanceMisuse => "substance misuse",
        }
    }

    pub fn from_name(name: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.name() == name.trim())
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One code of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueCode {
    pub code: String,
    pub term: String,
    pub category: Category,
    pub source: String,
}

/// A problem found in a code list, at a line of its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintProblem {
    pub line: u64,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("cannot read code list {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("code list {path} has {} problem(s):{}", problems.len(), render(problems))]
    Lint {
        path: PathBuf,
        problems: Vec<LintProblem>,
    },
    #[error("keywords: {0}")]
    Keywords(String),
}

fn render(problems: &[LintProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("\n  line {}: {}", p.line, p.message))
        .collect()
}

/// The codes and keywords in force for a practice.
#[derive(Debug, Clone, Default)]
pub struct SensitiveCatalogue {
    /// Every (code, category) pair, in load order.
    pub codes: Vec<CatalogueCode>,
    pub keywords: BTreeMap<Category, Vec<String>>,
}

impl SensitiveCatalogue {
    /// The built-in catalogue.
    pub fn default_catalogue() -> Result<SensitiveCatalogue, CatalogueError> {
        let mut c = SensitiveCatalogue::default();
        c.add_list_text(
            Path::new("codelists/sensitive_codes.csv (built in)"),
            DEFAULT_CODES_CSV,
        )?;
        c.add_keywords_toml(DEFAULT_KEYWORDS_TOML)?;
        Ok(c)
    }

    /// The catalogue a config asks for: the built-in one (unless switched off), then the practice's lists and
    /// keywords.
    pub fn for_config(cfg: &crate::config::Config) -> Result<SensitiveCatalogue, CatalogueError> {
        let mut c = if cfg.codes.use_default {
            SensitiveCatalogue::default_catalogue()?
        } else {
            Default::default()
        };
        for path in &cfg.codes.lists {
            let text = std::fs::read_to_string(path).map_err(|source| CatalogueError::Read {
                path: path.clone(),
                source,
            })?;
            c.add_list_text(path, &text)?;
        }
        for (category, words) in &cfg.codes.keywords {
            c.keywords
                .entry(*category)
                .or_default()
                .extend(words.iter().cloned());
        }
        Ok(c)
    }

    /// Adds a list after linting it; any problem refuses the whole list.
    pub fn add_list_text(&mut self, path: &Path, text: &str) -> Result<(), CatalogueError> {
        let (codes, problems) = lint_list(text);
        if !problems.is_empty() {
            return Err(CatalogueError::Lint {
                path: path.to_path_buf(),
                problems,
            });
        }
        self.codes.extend(codes);
        Ok(())
    }

    pub fn add_keywords_toml(&mut self, text: &str) -> Result<(), CatalogueError> {
        let parsed: BTreeMap<String, Vec<String>> =
            toml::from_str(text).map_err(|e| CatalogueError::Keywords(e.to_string()))?;
        for (name, words) in parsed {
            let category = Category::from_name(&name)
                .ok_or_else(|| CatalogueError::Keywords(format!("'{name}' is not a category")))?;
            self.keywords.entry(category).or_default().extend(words);
        }
        Ok(())
    }

    /// The category a code belongs to: the highest-concern one when several lists name it.
    pub fn category_of_code(&self, code: &str) -> Option<Category> {
        self.codes
            .iter()
            .filter(|c| c.code == code)
            .map(|c| c.category)
            .min()
    }

    /// One row per code with its highest-concern category: the join table for the views.
    pub fn code_categories(&self) -> BTreeMap<&str, Category> {
        let mut out: BTreeMap<&str, Category> = BTreeMap::new();
        for c in &self.codes {
            out.entry(c.code.as_str())
                .and_modify(|e| *e = (*e).min(c.category))
                .or_insert(c.category);
        }
        out
    }

    /// The case-insensitive regular expression of a category's keywords (`None` when it has none).
    pub fn keyword_pattern(&self, category: Category) -> Option<String> {
        let words = self.keywords.get(&category).filter(|w| !w.is_empty())?;
        let alternatives: Vec<String> = words.iter().map(|w| keyword_regex(w)).collect();
        Some(format!("(?i)\\b(?:{})", alternatives.join("|")))
    }

    /// The first category (in order of concern) whose keywords match a term.
    pub fn category_of_term(&self, term: &str) -> Option<Category> {
        let lower = term.to_lowercase();
        Category::ALL.into_iter().find(|c| {
            self.keywords
                .get(c)
                .is_some_and(|words| words.iter().any(|w| keyword_matches(w, &lower)))
        })
    }
}

/// `self harm*` -> `self[\s\-]+harm\w*`; `IUD` -> `IUD\b`.
fn keyword_regex(word: &str) -> String {
    let (stem, prefix) = match word.trim().strip_suffix('*') {
        Some(s) => (s, true),
        None => (word.trim(), false),
    };
    let parts: Vec<String> = stem
        .split(|c: char| c.is_whitespace() || c == '-')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.chars()
                .map(|c| {
                    if c.is_alphanumeric() || c == ' ' {
                        c.to_string()
                    } else {
                        format!("\\{c}")
                    }
                })
                .collect()
        })
        .collect();
    format!(
        "{}{}",
        parts.join("[\\s\\-]+"),
        if prefix { "\\w*" } else { "\\b" }
    )
}

/// The same matching as [`keyword_regex`], without a regex engine: for look-ups and tests outside polars.
fn keyword_matches(word: &str, lower_term: &str) -> bool {
    let (stem, prefix) = match word.trim().strip_suffix('*') {
        Some(s) => (s.to_lowercase(), true),
        None => (word.trim().to_lowercase(), false),
    };
    let norm = |s: &str| {
        s.split(|c: char| c.is_whitespace() || c == '-')
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (stem, text) = (norm(&stem), norm(lower_term));
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    text.match_indices(&stem).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + stem.len()..].chars().next();
        !is_word(before) && (prefix || !is_word(after))
    })
}

/// Checks a list in the catalogue format, returning the good codes and every problem with its line: the header,
/// codes that are not SNOMED CT identifiers, unknown categories, empty fields, and (code, category) repeated.
pub fn lint_list(text: &str) -> (Vec<CatalogueCode>, Vec<LintProblem>) {
    let mut codes = Vec::new();
    let mut problems = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut seen: BTreeMap<(String, Category), u64> = BTreeMap::new();
    let mut header_seen = false;
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                problems.push(LintProblem {
                    line,
                    message: format!("not readable CSV: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if !header_seen {
            header_seen = true;
            let got: Vec<String> = record
                .iter()
                .map(|h| h.trim_start_matches('\u{feff}').trim().to_lowercase())
                .collect();
            if got != CATALOGUE_HEADER {
                problems.push(LintProblem {
                    line,
                    message: format!("the header must be {}", CATALOGUE_HEADER.join(",")),
                });
                return (codes, problems);
            }
            continue;
        }
        if record.len() != 4 {
            problems.push(LintProblem {
                line,
                message: format!("{} fields; expected 4", record.len()),
            });
            continue;
        }
        let code = record[0].trim();
        let category_name = record[2].trim();
        let mut ok = true;
        if code.is_empty() {
            problems.push(LintProblem {
                line,
                message: "the code is empty".into(),
            });
            ok = false;
        } else if let Err(reason) = validate::clinical_code(code) {
            problems.push(LintProblem {
                line,
                message: format!("code {code}: {reason}"),
            });
            ok = false;
        }
        let category = Category::from_name(category_name);
        if category.is_none() {
            let known: Vec<_> = Category::ALL.iter().map(|c| c.name()).collect();
            problems.push(LintProblem {
                line,
                message: format!(
                    "unknown category '{category_name}' (categories: {})",
                    known.join(", ")
                ),
            });
            ok = false;
        }
        let (Some(category), true) = (category, ok) else {
            continue;
        };
        if let Some(first) = seen.insert((code.to_string(), category), line) {
            problems.push(LintProblem {
                line,
                message: format!("code {code} is already listed as {category} at line {first}"),
            });
            continue;
        }
        codes.push(CatalogueCode {
            code: code.to_string(),
            term: record[1].trim().to_string(),
            category,
            source: record[3].trim().to_string(),
        });
    }
    (codes, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_catalogue_loads_and_covers_every_category() {
        let c = SensitiveCatalogue::default_catalogue().unwrap();
        assert!(c.codes.len() > 3000);
        for cat in Category::ALL {
            let codes = c.codes.iter().filter(|x| x.category == cat).count();
            let words = c.keywords.get(&cat).map(Vec::len).unwrap_or(0);
            assert!(codes + words > 0, "{cat} has neither codes nor keywords");
        }
        assert_eq!(
            c.category_of_code("205171000000107"),
            Some(Category::DomesticAbuse)
        );
        assert_eq!(c.category_of_code("22298006"), None);
    }

    #[test]
    fn keywords_match_whole_words_and_prefixes() {
        let c = SensitiveCatalogue::default_catalogue().unwrap();
        assert_eq!(
            c.category_of_term("Emergency contraception given"),
            Some(Category::Contraception)
        );
        assert_eq!(
            c.category_of_term("Self-harm: cut to forearm"),
            Some(Category::SelfHarm)
        );
        assert_eq!(
            c.category_of_term("MARAC meeting minutes"),
            Some(Category::OtherAgencyDocument)
        );
        assert_eq!(
            c.category_of_term("Chlamydia trachomatis test positive"),
            Some(Category::SexualHealth)
        );
        assert_eq!(
            c.category_of_term("Injuries to both arms"),
            Some(Category::Injury)
        );
        assert_eq!(
            c.category_of_term("Heartburn"),
            None,
            "burns is a whole word"
        );
        assert_eq!(c.category_of_term("Hypertension review"), None);
        assert_eq!(
            c.category_of_term("Medication review: coil check"),
            Some(Category::Contraception)
        );
        assert_eq!(keyword_regex("self harm*"), "self[\\s\\-]+harm\\w*");
        assert_eq!(
            keyword_regex("children's social care"),
            "children\\'s[\\s\\-]+social[\\s\\-]+care\\b"
        );
    }

    #[test]
    fn lint_names_the_line_of_every_problem() {
        let text = "code,term,category,source\n\
                    205171000000107,Victim of domestic violence,domestic_abuse,local\n\
                    1364731000000105,Bad check digit,domestic_abuse,local\n\
                    22298006,Heart attack,cardiology,local\n\
                    205171000000107,Again,domestic_abuse,local\n\
                    205171000000107,Also safeguarding,safeguarding,local\n\
                    ,empty,injury,local\n\
                    LOCAL123,Local code,contraception,local\n\
                    1,2\n";
        let (codes, problems) = lint_list(text);
        assert_eq!(codes.len(), 3);
        let lines: Vec<u64> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 7, 9]);
        assert!(problems[0].message.contains("Verhoeff"));
        assert!(problems[1]
            .message
            .contains("unknown category 'cardiology'"));
        assert!(problems[2]
            .message
            .contains("already listed as domestic_abuse at line 2"));
        let (_, p) = lint_list("snomed,label\n1,2\n");
        assert!(p[0].message.contains("header"));
    }
}
