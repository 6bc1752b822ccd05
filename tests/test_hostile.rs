//! Hostile and malformed input through the real binary: huge lines and fields, invalid UTF-8, an unclosed quote,
//! formula injection, oversized FHIR lines and documents, symbolic links and control characters in file names.
//! Each gets a clear quarantine entry or refusal, never a crash or a hang, and every row is accounted for.

mod common;

use std::io::Write;
use std::path::Path;

use common::*;

fn row(id: &str, minute: u32, device: &str, agent: &str) -> String {
    format!(
        "{id},2026-03-01T10:{minute:02}:00Z,{NHS_A},acct-1,patient,{device},{agent},81.2.3.4,nhs_app,s-1,view,summary,success\n"
    )
}

fn ingest(store: &Path, inputs: &[&Path]) -> (Run, serde_json::Value) {
    let mut args = vec!["ingest", "--json", "--store", store.to_str().unwrap()];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    let r = run(&args);
    let j = json(&r);
    (r, j)
}

/// (line, column, reason) of every quarantined row, in line order.
fn quarantined(store: &Path) -> Vec<(i64, String, String)> {
    let q = read_quarantine(store);
    let lines: Vec<i64> = q
        .column("line")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let mut out: Vec<(i64, String, String)> = lines
        .into_iter()
        .zip(strings(&q, "column"))
        .zip(strings(&q, "reason"))
        .map(|((l, c), r)| (l, c.unwrap_or_default(), r.unwrap_or_default()))
        .collect();
    out.sort();
    out
}

#[test]
fn huge_lines_huge_fields_bad_bytes_and_an_unclosed_quote_are_quarantined_and_reading_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = format!("{AUDIT_HEADER}\n").into_bytes();
    bytes.extend(row("e1", 1, "dev-1", "ua").as_bytes()); // line 2
    bytes.extend(row("e2", 2, &"d".repeat(3 << 20), "ua").as_bytes()); // line 3: a 3 MiB record
    bytes.extend(row("e3", 3, "dev-1", "ua").as_bytes()); // line 4
    bytes.extend(row("e4", 4, "dev-1", &"u".repeat(10_000)).as_bytes()); // line 5: a 10 kB field
    bytes.extend(row("e5", 5, "dev-\u{1}", "ua").as_bytes()); // line 6: a control character is still text
    bytes.extend(row("e6", 6, "dev-X", "ua").as_bytes().iter().map(|b| {
        if *b == b'X' {
            0xFF
        } else {
            *b
        }
    })); // line 7
    bytes.extend(row("e7", 7, "=HYPERLINK(\"http://x\")", "ua").as_bytes()); // line 8: stored as text
    bytes.extend(format!("e8,2026-03-01T10:08:00Z,{NHS_A},\"acct-1,patient\n").as_bytes()); // line 9: unclosed quote
    bytes.extend(row("e9", 9, "dev-1", "ua").as_bytes()); // line 10, swallowed by the open quote
    let path = dir.path().join("audit.csv");
    std::fs::write(&path, &bytes).unwrap();
    let store = dir.path().join("store");
    let (r, j) = ingest(&store, &[&path]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let t = &j["totals"];
    // The open quote makes lines 9 and 10 one record (CSV quoting): 8 records.
    assert_eq!(t["read"], 8, "{j}");
    assert_eq!(t["stored"], 4, "{j}"); // e1, e3, e5, e7
    assert_eq!(t["quarantined"], 4, "{j}");
    let q = quarantined(&store);
    assert_eq!(q[0].0, 3);
    assert!(q[0].2.contains("longer than 1048576 bytes"), "{q:?}");
    assert_eq!((q[1].0, q[1].1.as_str()), (5, "user_agent"));
    assert!(q[1].2.contains("longer than 8192 bytes"), "{q:?}");
    assert_eq!((q[2].0, q[2].1.as_str()), (7, "device_id"));
    assert!(q[2].2.contains("UTF-8"), "{q:?}");
    assert_eq!(q[3].0, 9, "{q:?}");
    // The quarantine keeps a bounded copy of each line.
    let raw = strings(&read_quarantine(&store), "raw");
    assert!(raw.iter().flatten().all(|r| r.len() <= 64 * 1024 + 16));

    // A formula in a device id is stored as it came, and neutralised in a CSV export.
    let cfg = write(
        dir.path(),
        "c.toml",
        "store = \"store\"\nreports = \"reports\"\n",
    );
    let out = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "query",
        "patient_timeline",
        "--param",
        &format!("nhs_number={NHS_A}"),
        "--format",
        "csv",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("'=HYPERLINK"), "{}", out.stdout);
    assert!(!out.stdout.contains(",=HYPERLINK") && !out.stdout.contains("\n=HYPERLINK"));
}

fn event(id: &str, minute: u32) -> String {
    serde_json::json!({
        "resourceType": "AuditEvent",
        "id": id,
        "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest" },
        "subtype": [{ "system": "http://hl7.org/fhir/restful-interaction", "code": "read" }],
        "action": "R",
        "recorded": format!("2026-03-01T10:{minute:02}:00Z"),
        "outcome": "0",
        "agent": [{ "who": { "identifier": { "value": "acct-1" } }, "requestor": true }],
        "source": { "observer": { "display": "NHS App" } },
        "entity": [{
            "what": { "identifier": { "system": "https://fhir.nhs.uk/Id/nhs-number", "value": NHS_A } },
            "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1" }
        }]
    })
    .to_string()
}

#[test]
fn an_ndjson_feed_with_a_huge_line_and_bad_bytes_keeps_going() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    bytes.extend(format!("{}\n", event("a", 1)).as_bytes()); // line 1
    let huge = event("b", 2).replace(
        "\"id\":\"b\"",
        &format!("\"id\":\"{}\"", "b".repeat(5 << 20)),
    );
    bytes.extend(format!("{huge}\n").as_bytes()); // line 2: 5 MiB
    bytes.extend(format!("{}\n", event("c", 3)).as_bytes()); // line 3
    bytes.extend(
        event("d", 4)
            .replace("acct-1", "acct-X")
            .as_bytes()
            .iter()
            .map(|b| if *b == b'X' { 0xC3 } else { *b }),
    );
    bytes.push(b'\n'); // line 4: invalid UTF-8
    bytes.extend(format!("{}\n", event("e", 5)).as_bytes()); // line 5
    let path = dir.path().join("feed.ndjson");
    std::fs::write(&path, &bytes).unwrap();
    let store = dir.path().join("store");
    let (r, j) = ingest(&store, &[&path]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(
        (
            &j["totals"]["read"],
            &j["totals"]["stored"],
            &j["totals"]["quarantined"]
        ),
        (&5.into(), &3.into(), &2.into()),
        "{j}"
    );
    let q = quarantined(&store);
    assert_eq!(q[0].0, 2);
    assert!(q[0].2.contains("longer than 4194304 bytes"), "{q:?}");
    assert_eq!(q[1].0, 4);
    assert!(q[1].2.contains("UTF-8"), "{q:?}");
}

#[test]
fn symbolic_links_in_a_folder_are_not_followed_and_odd_file_names_cannot_forge_output() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let outside = write(
        dir.path(),
        "outside.csv",
        &format!("{AUDIT_HEADER}\n{}", row("o1", 1, "dev-1", "ua")),
    );
    std::os::unix::fs::symlink(&outside, inbox.join("linked.csv")).unwrap();
    std::os::unix::fs::symlink(&inbox, inbox.join("loop")).unwrap();
    // A name with a newline and a formula, and one with markup.
    let odd = "=x\nfake: 100 rows stored.csv";
    let mut f = std::fs::File::create(inbox.join(odd)).unwrap();
    write!(f, "{AUDIT_HEADER}\n{}", row("n1", 2, "dev-1", "ua")).unwrap();
    write(
        &inbox,
        "<b>audit<i>.csv",
        &format!("{AUDIT_HEADER}\n{}", row("n2", 3, "dev-1", "ua")),
    );
    let store = dir.path().join("store");
    let (r, j) = ingest(&store, &[&inbox]);
    // The link is refused by name (a refused file makes the exit code 1); the loop is not walked.
    assert_eq!(r.code, 1, "{}", r.stderr);
    let files = j["files"].as_array().unwrap();
    let link = files
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("linked.csv"))
        .unwrap();
    assert_eq!(link["status"], "refused");
    assert!(link["message"].as_str().unwrap().contains("symbolic link"));
    assert!(files
        .iter()
        .any(|f| f["path"].as_str().unwrap().ends_with("loop") && f["status"] == "refused"));
    assert_eq!(j["totals"]["stored"], 2, "{j}");
    let shown = files
        .iter()
        .find(|f| f["path"].as_str().unwrap().contains("fake"))
        .unwrap()["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        shown.contains("=x\\nfake") && !shown.contains('\n'),
        "{shown}"
    );

    // The text summary shows the name on one line.
    let r = run(&[
        "ingest",
        "--store",
        store.to_str().unwrap(),
        "--reingest",
        inbox.to_str().unwrap(),
    ]);
    assert!(
        !r.stdout.lines().any(|l| l.starts_with("fake: 100 rows")),
        "{}",
        r.stdout
    );
}

#[test]
fn an_oversized_fhir_document_is_refused_with_its_limit() {
    // Only the size is hostile: 300 MiB of whitespace inside one JSON or XML document, written 1 MiB at a time.
    let dir = tempfile::tempdir().unwrap();
    let spaces = vec![b' '; 1 << 20];
    for (name, head, tail) in [
        (
            "big.json",
            "{\"resourceType\": \"Bundle\", \"entry\": [",
            "]}",
        ),
        (
            "big.xml",
            "<Bundle xmlns=\"http://hl7.org/fhir\">",
            "</Bundle>",
        ),
    ] {
        let path = dir.path().join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(head.as_bytes()).unwrap();
        for _ in 0..300 {
            f.write_all(&spaces).unwrap();
        }
        f.write_all(tail.as_bytes()).unwrap();
        drop(f);
        let store = dir.path().join(format!("store-{name}"));
        let (r, j) = ingest(&store, &[&path]);
        assert_eq!(r.code, 1, "{name}: {}", r.stderr);
        let msg = j["files"][0]["message"].as_str().unwrap();
        assert!(
            msg.contains("larger than 256 MiB") && msg.contains("NDJSON"),
            "{name}: {msg}"
        );
        std::fs::remove_file(&path).unwrap();
    }
}

/// Every input under `tests/fixtures/fuzz/<target>/` (hand-made hostile seeds, and any input a fuzz run ever
/// crashed on) goes through its fuzz entry point without a panic, and through the real binary where it is a file
/// the binary reads: ingest quarantines or refuses it, `--config` reports it, nothing crashes.
#[test]
fn fuzz_regressions_replay_without_a_crash() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    let dir = tempfile::tempdir().unwrap();
    let mut replayed = 0;
    for target in ["csv_rows", "fhir_json", "fhir_xml", "config"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(target))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            let caught = std::panic::catch_unwind(|| match target {
                "csv_rows" => {
                    accesswatch::fuzzing::csv_rows(&data);
                }
                "fhir_json" => {
                    accesswatch::fuzzing::fhir_json(&data);
                }
                "fhir_xml" => {
                    accesswatch::fuzzing::fhir_xml(&data);
                }
                _ => {
                    accesswatch::fuzzing::config(&data);
                }
            });
            assert!(caught.is_ok(), "{target}/{name} panics");
            let r = if target == "config" {
                // `detect` reads the config (`rules` would not): a hostile config is refused or runs, never panics.
                let store = dir.path().join(format!("cfg-store-{replayed}"));
                run(&[
                    "--config",
                    file.to_str().unwrap(),
                    "detect",
                    "--store",
                    store.to_str().unwrap(),
                    "--out",
                    dir.path()
                        .join(format!("cfg-out-{replayed}"))
                        .to_str()
                        .unwrap(),
                    "--as-of",
                    "2026-11-22",
                ])
            } else {
                let store = dir.path().join(format!("store-{replayed}"));
                run(&[
                    "ingest",
                    "--store",
                    store.to_str().unwrap(),
                    file.to_str().unwrap(),
                ])
            };
            assert!(
                [0, 1, 2, 3].contains(&r.code) && !r.stderr.contains("panicked"),
                "{target}/{name}: exit {} {}",
                r.code,
                r.stderr
            );
            replayed += 1;
        }
    }
    assert!(replayed >= 12, "{replayed}");
}

/// Runs `ingest --json` under a 1.5 GB address-space limit and gives its output and peak resident memory (bytes).
/// The child is reaped by `wait4` (which gives its own rusage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn ingest_measured(store: &Path, input: &Path) -> (serde_json::Value, i32, u64) {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(BIN);
    cmd.args([
        "ingest",
        "--json",
        "--store",
        store.to_str().unwrap(),
        input.to_str().unwrap(),
    ])
    .env_remove("ACCESSWATCH_CONFIG")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null());
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1_500_000_000,
                rlim_max: 1_500_000_000,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    // wait4 gives this child's own peak RSS, whatever other tests run beside it.
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (json, code, usage.ru_maxrss as u64 * 1024)
}

#[test]
fn big_fhir_documents_are_read_in_memory_bounded_by_their_size() {
    // The worst shapes seen: one AuditEvent holding a long array of numbers, one holding a great many empty XML
    // elements (each took over 100 times its size as a tree), and plain Bundles of many events whose Patients come
    // last, in JSON and XML. 48 MiB each; the bound is a fixed allowance plus three times the file.
    let dir = tempfile::tempdir().unwrap();
    let target = 48usize << 20;
    let write_big =
        |name: &str, head: &str, mut piece: Box<dyn FnMut(usize) -> String>, tail: &str| {
            let path = dir.path().join(name);
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
            f.write_all(head.as_bytes()).unwrap();
            let (mut size, mut n) = (head.len(), 0);
            while size < target {
                let p = piece(n);
                f.write_all(p.as_bytes()).unwrap();
                size += p.len();
                n += 1;
            }
            f.write_all(tail.as_bytes()).unwrap();
            (path, n)
        };
    let numbers = ",1234567".repeat(10_000);
    let (numbers, _) = write_big(
        "numbers.json",
        "{\"resourceType\":\"AuditEvent\",\"extra\":[0",
        Box::new(move |_| numbers.clone()),
        "]}",
    );
    let empties = "<a/>".repeat(10_000);
    let (empties, _) = write_big(
        "empty.xml",
        "<AuditEvent xmlns=\"http://hl7.org/fhir\">",
        Box::new(move |_| empties.clone()),
        "</AuditEvent>",
    );
    let patient_json = format!(
        ",{{\"resource\":{{\"resourceType\":\"Patient\",\"id\":\"p1\",\"identifier\":[{{\"system\":\"https://fhir.nhs.uk/Id/nhs-number\",\"value\":\"{NHS_A}\"}}]}}}}]}}"
    );
    let (bundle_json, events_json) = write_big(
        "bundle.json",
        "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[{\"resource\":{\"resourceType\":\"Basic\"}}",
        Box::new(|n| {
            let mut e: serde_json::Value = serde_json::from_str(&event(&format!("e{n}"), 0)).unwrap();
            e["recorded"] = format!(
                "2026-03-{:02}T{:02}:{:02}:{:02}Z",
                1 + n / 86400,
                n / 3600 % 24,
                n / 60 % 60,
                n % 60
            )
            .into();
            e["entity"][0]["what"] = serde_json::json!({ "reference": "Patient/p1" });
            format!(",{{\"resource\":{e}}}")
        }),
        &patient_json,
    );
    let (bundle_xml, events_xml) = write_big(
        "bundle.xml",
        "<Bundle xmlns=\"http://hl7.org/fhir\"><type value=\"collection\"/>",
        Box::new(|n| {
            format!(
                "<entry><resource><AuditEvent><id value=\"x{n}\"/><type><system value=\"http://terminology.hl7.org/CodeSystem/audit-event-type\"/><code value=\"rest\"/></type><action value=\"R\"/><recorded value=\"2026-03-{:02}T{:02}:{:02}:{:02}Z\"/><outcome value=\"0\"/><agent><who><identifier><value value=\"acct-1\"/></identifier></who><requestor value=\"true\"/></agent><entity><what><reference value=\"Patient/p1\"/></what><role><system value=\"http://terminology.hl7.org/CodeSystem/object-role\"/><code value=\"1\"/></role></entity></AuditEvent></resource></entry>",
                1 + n / 86400,
                n / 3600 % 24,
                n / 60 % 60,
                n % 60
            )
        }),
        &format!("<entry><resource><Patient><id value=\"p1\"/><identifier><system value=\"https://fhir.nhs.uk/Id/nhs-number\"/><value value=\"{NHS_A}\"/></identifier></Patient></resource></entry></Bundle>"),
    );
    for (path, stored, quarantined) in [
        (numbers, 0, 1),
        (empties, 0, 1),
        (bundle_json, events_json, 0),
        (bundle_xml, events_xml, 0),
    ] {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let size = std::fs::metadata(&path).unwrap().len();
        let (j, code, peak) = ingest_measured(&dir.path().join(format!("store-{name}")), &path);
        assert!(code == 0 || code == 3, "{name}: exit {code}, {j}");
        assert_eq!(j["totals"]["stored"], stored as u64, "{name}: {j}");
        assert_eq!(
            j["totals"]["quarantined"], quarantined as u64,
            "{name}: {j}"
        );
        let bound = (200 << 20) + 3 * size;
        assert!(
            peak <= bound,
            "{name}: peak RSS {} MiB for a {} MiB file (bound {} MiB)",
            peak >> 20,
            size >> 20,
            bound >> 20
        );
        if quarantined > 0 {
            let q = quarantined_reasons(&dir.path().join(format!("store-{name}")));
            assert!(
                q.iter().any(|r| r.contains("larger than 4 MiB")),
                "{name}: {q:?}"
            );
        }
        std::fs::remove_file(&path).unwrap();
    }
}

fn quarantined_reasons(store: &Path) -> Vec<String> {
    quarantined(store)
        .into_iter()
        .map(|(_, _, reason)| reason)
        .collect()
}

#[test]
fn column_names_cannot_forge_summary_lines_and_wide_encodings_and_json_arrays_are_named() {
    let dir = tempfile::tempdir().unwrap();
    // A header cell with a newline and a terminal escape sequence, ignored as an unknown column.
    let evil = "x\nfake: 100 rows stored \u{1b}[31mred";
    let csv = write(
        dir.path(),
        "evil.csv",
        &format!(
            "{AUDIT_HEADER},\"{evil}\"\n{},1\n",
            row("c1", 1, "dev-1", "ua").trim_end()
        ),
    );
    let store = dir.path().join("store");
    let r = run(&[
        "ingest",
        "--store",
        store.to_str().unwrap(),
        csv.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("x\\nfake"), "{}", r.stdout);
    assert!(
        !r.stdout.contains('\u{1b}'),
        "an escape sequence reached the terminal"
    );
    assert!(
        !r.stdout.lines().any(|l| l.starts_with("fake")),
        "{}",
        r.stdout
    );

    // UTF-16 (as Excel's "Unicode text" saves it): named as such, not "matches no input kind".
    let mut wide = vec![0xff, 0xfe];
    for unit in format!("{AUDIT_HEADER}\n{}", row("w1", 2, "dev-1", "ua")).encode_utf16() {
        wide.extend_from_slice(&unit.to_le_bytes());
    }
    let wide_path = dir.path().join("wide.csv");
    std::fs::write(&wide_path, wide).unwrap();
    let (r, j) = ingest(&store, &[&wide_path]);
    assert_eq!(r.code, 1);
    assert_eq!(j["files"][0]["status"], "refused");
    let msg = j["files"][0]["message"].as_str().unwrap();
    assert!(msg.contains("UTF-16") && msg.contains("UTF-8"), "{msg}");

    // A JSON array of AuditEvents is FHIR, not a CSV header.
    let array = write(
        dir.path(),
        "events.json",
        &format!("[\n{},\n{}\n]\n", event("a1", 5), event("a2", 6)),
    );
    let (r, j) = ingest(&store, &[&array]);
    assert_eq!(r.code, 0, "{j}");
    assert_eq!(j["files"][0]["status"], "ingested", "{j}");
    assert_eq!(j["totals"]["stored"], 2, "{j}");
}
