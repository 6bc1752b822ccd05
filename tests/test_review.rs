//! The lead's review through `accesswatch serve` (the local page) and `accesswatch review` while other things happen:
//! a run holding the store's lock, a review killed mid-write.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use common::*;

const NIGHT: &str = "2026-11-22";

struct Sample {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: PathBuf,
    reports: PathBuf,
}

/// The sample practice ingested and detected for its as-of night: a store with cases and a run folder.
fn sample() -> Sample {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let store = sample_store(&root);
    let reports = root.join("reports");
    let r = run(&[
        "detect",
        "--store",
        store.to_str().unwrap(),
        "--out",
        reports.to_str().unwrap(),
        "--as-of",
        NIGHT,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    Sample {
        _dir: dir,
        root,
        store,
        reports,
    }
}

impl Sample {
    fn cases(&self, status: &str) -> Vec<serde_json::Value> {
        let r = run(&[
            "cases",
            "--store",
            self.store.to_str().unwrap(),
            "--status",
            status,
            "--json",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        json(&r).as_array().unwrap().clone()
    }

    fn flagged_nhs_numbers(&self) -> Vec<String> {
        read_csv_rows(&self.reports.join(NIGHT).join("patients.csv"))
            .into_iter()
            .filter(|p| p["risk_level"] != "low")
            .map(|p| p["nhs_number"].clone())
            .collect()
    }
}

/// A running `accesswatch serve`, killed when dropped.
struct Server {
    child: Child,
    addr: String,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `accesswatch [-v] serve` on the sample's store and reports with `extra` arguments, and the first line it prints.
fn spawn_serve(s: &Sample, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["-v", "serve", "--store"])
        .arg(&s.store)
        .arg("--reports")
        .arg(&s.reports)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

impl Server {
    fn start(s: &Sample) -> Server {
        let (child, line) = spawn_serve(s, &["--bind", "127.0.0.1:0"]);
        // "accesswatch serve: open http://127.0.0.1:PORT/?token=… (stop with Ctrl-C)"
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"));
        let rest = url.trim_start_matches("http://");
        let (addr, query) = rest.split_once("/?token=").unwrap();
        Server {
            child,
            addr: addr.to_string(),
            token: query.to_string(),
        }
    }

    /// The server's log so far (it is stopped first).
    fn stop_and_log(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut log = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut log).unwrap();
        }
        log
    }

    fn request(&self, method: &str, path: &str, cookie: bool, body: Option<&str>) -> Response {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        if cookie {
            req.push_str(&format!("Cookie: accesswatch_token={}\r\n", self.token));
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body.unwrap_or(""));
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {head:?}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Response {
            status,
            headers,
            body: body.to_string(),
        }
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The value of the hidden form field `name` in a page.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field"));
    let rest = &page[at + marker.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    b' ' => "+".to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[test]
fn the_review_page_needs_its_token_and_a_form_token_and_writes_the_review_log() {
    let s = sample();
    let open = s.cases("open");
    assert!(!open.is_empty(), "the sample night opens cases");
    let case_id = open[0]["case_id"].as_str().unwrap().to_string();
    let nhs = open[0]["nhs_number"].as_str().unwrap().to_string();
    let server = Server::start(&s);

    // No token, a wrong token, a wrong cookie: refused, with nothing of the record in the answer.
    for (path, cookie) in [
        ("/".to_string(), false),
        ("/?token=0000".to_string(), false),
        (format!("/case/{case_id}"), false),
        ("/report".to_string(), false),
    ] {
        let r = server.request("GET", &path, cookie, None);
        assert_eq!(r.status, 403, "{path}");
        assert!(
            !r.body.contains(&nhs) && !r.body.contains(&case_id),
            "{path}"
        );
    }

    // The printed link: the case list, with the security headers, and a cookie for the links inside.
    let r = server.request("GET", &format!("/?token={}", server.token), false, None);
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains(&format!("href=\"/case/{case_id}\"")),
        "{}",
        r.body
    );
    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    let cookie = r.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(r.header("x-accesswatch-style-nonce").is_none());

    // The report itself, by cookie.
    let r = server.request("GET", "/report", true, None);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("<html") && r.body.contains(&nhs[..3]));

    // The case page carries the form and its CSRF token.
    let r = server.request("GET", &format!("/case/{case_id}"), true, None);
    assert_eq!(r.status, 200);
    let csrf = hidden(&r.body, "csrf");
    assert!(csrf.len() >= 32 && csrf != server.token);
    let post = format!("/case/{case_id}/review");
    let note = "Spoke to the patient: the tablet is hers & the 3am views were hers.";

    // Without, or with a wrong, CSRF token: refused and nothing written.
    for bad in [
        form(&[("outcome", "concern"), ("note", note)]),
        form(&[("csrf", "00"), ("outcome", "concern"), ("note", note)]),
    ] {
        let r = server.request("POST", &post, true, Some(&bad));
        assert_eq!(r.status, 403);
    }
    // Without the access token, even with the CSRF token: refused.
    let good = form(&[
        ("csrf", &csrf),
        ("outcome", "concern"),
        ("note", note),
        ("by", "Dr A Lead"),
    ]);
    assert_eq!(
        server.request("POST", &post, false, Some(&good)).status,
        403
    );
    // An empty note is refused with a reason.
    let empty = form(&[("csrf", &csrf), ("outcome", "concern"), ("note", "  ")]);
    let r = server.request("POST", &post, true, Some(&empty));
    assert_eq!(r.status, 400);
    assert!(
        !s.store.join("reviews").exists()
            || std::fs::read_dir(s.store.join("reviews")).unwrap().count() == 0
    );

    // The real thing: recorded, and the browser goes back to the list.
    let r = server.request("POST", &post, true, Some(&good));
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/"));
    let all = s.cases("all");
    let case = all
        .iter()
        .find(|c| c["case_id"] == case_id.as_str())
        .unwrap();
    let review = &case["last_review"];
    assert_eq!(review["outcome"], "concern");
    assert_eq!(review["note"], note);
    assert_eq!(review["by"], "Dr A Lead");
    assert_eq!(case["status"], "reviewed");
    // The case page now shows it.
    let r = server.request("GET", &format!("/case/{case_id}"), true, None);
    assert!(
        r.body.contains("the tablet is hers &amp; the 3am views"),
        "{}",
        r.body
    );

    // The log names routes, never a patient, a case or the token.
    let token = server.token.clone();
    let log = server.stop_and_log();
    assert!(log.contains("GET /case/{id}"), "{log}");
    for secret in [nhs.as_str(), case_id.as_str(), token.as_str(), &nhs[..6]] {
        assert!(!log.contains(secret), "{secret} in {log}");
    }
}

#[test]
fn serve_binds_loopback_unless_told_and_then_warns() {
    let s = sample();
    let r = run(&[
        "serve",
        "--store",
        s.store.to_str().unwrap(),
        "--reports",
        s.reports.to_str().unwrap(),
        "--bind",
        "0.0.0.0:0",
    ]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("not a loopback address") && r.stderr.contains("--allow-remote"),
        "{}",
        r.stderr
    );
    let (mut child, line) = spawn_serve(&s, &["--bind", "0.0.0.0:0", "--allow-remote"]);
    child.kill().unwrap();
    child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(line.contains("?token="), "{line}");
    assert!(err.contains("other machines can reach"), "{err}");
}

#[test]
fn the_case_page_renders_in_headless_chromium_under_its_own_policy() {
    let s = sample();
    let case_id = s.cases("open")[0]["case_id"].as_str().unwrap().to_string();
    let server = Server::start(&s);
    let url = format!(
        "http://{}/case/{case_id}?token={}",
        server.addr, server.token
    );
    let chrome = |profile: &str, extra: &[&str]| {
        let out = headless(&s.root.join(profile))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let dom = String::from_utf8(chrome("p1", &["--dump-dom"]).stdout).unwrap();
    assert!(
        dom.contains("Record the review") && dom.contains("name=\"csrf\""),
        "{dom}"
    );
    assert!(dom.contains(&format!("Case {case_id}")), "{dom}");
    let png = s.root.join("case.png");
    chrome(
        "p2",
        &[
            "--window-size=1000,1400",
            &format!("--screenshot={}", png.display()),
        ],
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(
        bytes.len() > 20_000,
        "a real page, not a blank: {} bytes",
        bytes.len()
    );
}

#[test]
fn a_review_while_a_run_holds_the_lock_is_kept() {
    let s = sample();
    let nhs = s.flagged_nhs_numbers()[0].clone();
    let lock = accesswatch::pipeline::RunLock::acquire(&s.store).unwrap();
    let r = run(&[
        "review",
        &nhs,
        "--store",
        s.store.to_str().unwrap(),
        "--outcome",
        "benign",
        "--note",
        "Known to the team; the second phone is her partner's, with consent.",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    drop(lock);
    let reviewed = s.cases("reviewed");
    assert!(
        reviewed
            .iter()
            .any(|c| c["nhs_number"] == nhs.as_str() && c["last_review"]["outcome"] == "benign"),
        "{reviewed:?}"
    );
}

#[test]
fn a_review_killed_while_writing_leaves_the_log_readable_and_can_be_repeated() {
    let s = sample();
    let nhs = s.flagged_nhs_numbers()[0].clone();
    let args = [
        "review",
        nhs.as_str(),
        "--store",
        s.store.to_str().unwrap(),
        "--outcome",
        "action_taken",
        "--note",
        "Record access restricted (104) after a call with the patient.",
    ];
    let r = run_env(&args, &[("ACCESSWATCH_TEST_CRASH_AFTER_WRITES", "1")]);
    assert_eq!(r.code, -1, "the review was killed mid-write: {}", r.stderr);
    // What the killed writer left (a hidden temporary file) is not a review, and does not break the log.
    let reviews = s.store.join("reviews");
    let left: Vec<String> = std::fs::read_dir(&reviews)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !left.is_empty() && left.iter().all(|n| n.starts_with('.')),
        "{left:?}"
    );
    assert!(s.cases("all").iter().all(|c| c["last_review"].is_null()));
    // Done again, it is recorded once.
    let r = run(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let all = s.cases("all");
    let reviewed: Vec<_> = all.iter().filter(|c| !c["last_review"].is_null()).collect();
    assert_eq!(reviewed.len(), 1, "{all:?}");
    assert_eq!(reviewed[0]["last_review"]["outcome"], "action_taken");
}
