//! `accesswatch serve`: a local page for the safeguarding lead, showing the latest run's report and the case list,
//! with a review form per case that writes the same review log as `accesswatch review`.
//!
//! It serves special-category data from a practice machine, so:
//! - it binds to loopback unless `--allow-remote` is given (and then warns);
//! - every request needs the random token printed at start in the URL (`?token=…`); a valid token also sets an
//!   HttpOnly, SameSite=Strict cookie so that links inside the page work without repeating it;
//! - every form carries a CSRF token (random at start, separate from the access token), checked on POST;
//! - responses forbid caching, framing and referrers, and carry a Content-Security-Policy that allows no script,
//!   no remote resource, and only the page's own style element (by a per-response nonce);
//! - logs name the route, never a case, patient or token.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Form, Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::{load_config, print, Exit};
use crate::cases::ops::{self, CaseListing, ReviewInput, Subject, Which};
use crate::cases::{CaseConfig, Outcome};
use crate::config::Overrides;
use crate::report::html::{escape, spaced_nhs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on. Loopback only, unless `--allow-remote`. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8377", value_name = "ADDR:PORT")]
    pub bind: SocketAddr,
    /// Allow a non-loopback address: anyone on the network who has the token can read the report.
    #[arg(long)]
    pub allow_remote: bool,
    /// The store folder (overrides the config's `store`).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Where run folders are (overrides the config's `reports`).
    #[arg(long, value_name = "DIR")]
    pub reports: Option<PathBuf>,
}

struct App {
    store: PathBuf,
    reports: PathBuf,
    case: CaseConfig,
    token: String,
    csrf: String,
}

const COOKIE: &str = "accesswatch_token";

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf)
        .map_err(|e| anyhow::anyhow!("no random numbers from the OS: {e}"))?;
    Ok(hex::encode(buf))
}

/// Equal strings, compared in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub fn run(config_file: Option<&Path>, args: Args) -> anyhow::Result<Exit> {
    let config = load_config(
        config_file,
        &Overrides {
            store: args.store.clone(),
            reports: args.reports.clone(),
            ..Default::default()
        },
    )?;
    if !args.bind.ip().is_loopback() {
        if !args.allow_remote {
            anyhow::bail!(
                "--bind {}: not a loopback address. The review page shows special-category data; to serve it beyond \
                 this machine, add --allow-remote",
                args.bind
            );
        }
        super::warn_user(&format!(
            "serving on {}, which other machines can reach: anyone with the token can read the report",
            args.bind
        ));
    }
    let app = Arc::new(App {
        store: config.store.clone(),
        reports: config.reports.clone(),
        case: config.detect.case.clone(),
        token: random_hex(24)?,
        csrf: random_hex(24)?,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.bind)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.bind))?;
        let addr = listener.local_addr()?;
        print(&format!(
            "accesswatch serve: open http://{addr}/?token={} (stop with Ctrl-C)\n",
            app.token
        ))?;
        let router = Router::new()
            .route("/", get(home))
            .route("/report", get(report))
            .route("/case/{case_id}", get(case_page))
            .route("/case/{case_id}/review", post(review))
            .layer(middleware::from_fn_with_state(app.clone(), guard))
            .with_state(app);
        axum::serve(listener, router).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(Exit::Success)
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// Every request: the token (URL or cookie) or 403; then the security headers on whatever the handler returns.
async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let from_url = req
        .uri()
        .query()
        .and_then(serde_urlencoded_token)
        .filter(|t| same(t, &app.token));
    let from_cookie = cookie_token(req.headers()).filter(|t| same(t, &app.token));
    let route = route_name(req.method(), req.uri().path());
    let mut resp = if from_url.is_some() || from_cookie.is_some() {
        let mut resp = next.run(req).await;
        if from_url.is_some() {
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
                app.token
            )) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
        }
        resp
    } else {
        answer(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "<p>This page needs the link printed when <code>accesswatch serve</code> started.</p>",
        )
    };
    tracing::info!(route, status = resp.status().as_u16(), "request");
    secure(&mut resp);
    resp
}

fn serde_urlencoded_token(query: &str) -> Option<String> {
    Query::<TokenQuery>::try_from_uri(&format!("/?{query}").parse().ok()?)
        .ok()
        .and_then(|q| q.0.token)
}

/// The route, without its case id, for the log.
fn route_name(method: &Method, path: &str) -> String {
    let shape = if path.starts_with("/case/") && path.ends_with("/review") {
        "/case/{id}/review"
    } else if path.starts_with("/case/") {
        "/case/{id}"
    } else if matches!(path, "/" | "/report") {
        path
    } else {
        "(other)"
    };
    format!("{method} {shape}")
}

fn secure(resp: &mut Response) {
    // An HTML page's own <style> elements carry the nonce it was given (see [`Html`]); nothing else may style,
    // script or load.
    let nonce = resp
        .headers_mut()
        .remove(NONCE_HEADER)
        .and_then(|v| v.to_str().ok().map(str::to_string));
    let style = nonce.map_or("'none'".to_string(), |n| format!("'nonce-{n}'"));
    let h = resp.headers_mut();
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set(
        header::CONTENT_SECURITY_POLICY,
        &format!(
            "default-src 'none'; style-src {style}; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'"
        ),
    );
    set(header::CACHE_CONTROL, "no-store");
    set(header::PRAGMA, "no-cache");
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::REFERRER_POLICY, "no-referrer");
}

/// An HTML response whose `<style>` elements get a fresh nonce, which the Content-Security-Policy then names. The
/// nonce is handed to [`secure`] in a response header that it removes.
struct Html(String);

impl IntoResponse for Html {
    fn into_response(self) -> Response {
        let nonce = random_hex(16).unwrap_or_default();
        let body = self
            .0
            .replace("<style>", &format!("<style nonce=\"{nonce}\">"));
        let mut resp = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
        if let Ok(v) = HeaderValue::from_str(&nonce) {
            resp.headers_mut().insert(NONCE_HEADER, v);
        }
        resp
    }
}

const NONCE_HEADER: &str = "x-accesswatch-style-nonce";

const STYLE: &str = "<style>body { font-family: system-ui, Arial, sans-serif; max-width: 60rem; margin: 1rem auto; \
padding: 0 1rem; line-height: 1.45; color: #111; } table { border-collapse: collapse; } th, td { border: 1px solid \
#888; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; } .banner { border: 3px solid #111; padding: \
0.5rem; font-weight: 600; } label { display: block; margin-top: 0.6rem; font-weight: 600; } textarea { width: 100%; \
min-height: 5rem; } fieldset { margin-top: 0.6rem; }</style>";

fn page(title: &str, body: &str) -> Html {
    Html(format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n{STYLE}\n</head>\n<body>\n<p \
         class=\"banner\" role=\"note\">CONFIDENTIAL: special-category health data. Keep this page within the \
         safeguarding team.</p>\n{body}\n</body>\n</html>\n",
        title = escape(title)
    ))
}

/// A page that is not the one asked for: a refusal, a miss or a failure, with its status.
fn answer(status: StatusCode, title: &str, body: &str) -> Response {
    (status, page(title, body)).into_response()
}

fn failure(e: anyhow::Error) -> Response {
    tracing::warn!("a review page request failed");
    answer(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        &format!("<p>{}</p>", escape(&format!("{e:#}"))),
    )
}

fn status_words(c: &CaseListing) -> String {
    let mut s = c.status.words().to_string();
    if let Some(r) = &c.last_review {
        let _ = write!(
            s,
            "; last review: {} by {} on {}",
            r.outcome.words(),
            r.by,
            r.night
        );
    }
    s
}

async fn home(State(app): State<Arc<App>>) -> Response {
    let list = match ops::list(&app.store, Which::All, &app.case) {
        Ok(l) => l,
        Err(e) => return failure(e),
    };
    let mut body = String::from("<h1>Cases</h1>\n");
    match latest_report(&app.reports) {
        Some((day, _)) => {
            let _ = writeln!(
                body,
                "<p><a href=\"/report\">The latest report ({day})</a></p>"
            );
        }
        None => body.push_str("<p>No report yet: the nightly run writes one.</p>\n"),
    }
    let (open, set_aside): (Vec<_>, Vec<_>) = list.iter().partition(|c| !c.suppressed);
    if open.is_empty() {
        body.push_str("<p>No open cases.</p>\n");
    } else {
        body.push_str("<table>\n<caption>Open cases: new first, then new evidence since a review, then the rest</caption>\n<thead><tr><th scope=\"col\">Case</th><th scope=\"col\">NHS number</th><th scope=\"col\">Status</th><th scope=\"col\">Risk</th><th scope=\"col\">Flagged since</th></tr></thead>\n<tbody>\n");
        for c in open {
            let _ = writeln!(
                body,
                "<tr><td><a href=\"/case/{id}\">{id}</a></td><td>{nhs}</td><td>{status}</td><td>{level} ({score})</td><td>{since}</td></tr>",
                id = escape(&c.case_id),
                nhs = escape(&spaced_nhs(&c.nhs_number)),
                status = escape(&status_words(c)),
                level = escape(&c.risk_level),
                score = c.risk_score,
                since = c.first_flagged,
            );
        }
        body.push_str("</tbody>\n</table>\n");
    }
    let _ = writeln!(
        body,
        "<p>{} case(s) reviewed as benign with nothing new since are not listed.</p>",
        set_aside.len()
    );
    page("accesswatch: cases", &body).into_response()
}

/// The newest run folder with a report, and its date.
fn latest_report(reports: &Path) -> Option<(chrono::NaiveDate, PathBuf)> {
    crate::report::run_folders(reports)
        .into_iter()
        .rfind(|(_, dir)| dir.join(crate::report::REPORT_HTML).is_file())
}

async fn report(State(app): State<Arc<App>>) -> Response {
    let Some((_, dir)) = latest_report(&app.reports) else {
        return answer(StatusCode::NOT_FOUND, "No report", "<p>No report yet.</p>");
    };
    match std::fs::read_to_string(dir.join(crate::report::REPORT_HTML)) {
        // The page's chart-file links point into the run folder, which is not served: the charts are inline.
        Ok(html) => Html(html).into_response(),
        Err(e) => failure(e.into()),
    }
}

async fn case_page(State(app): State<Arc<App>>, UrlPath(case_id): UrlPath<String>) -> Response {
    let list = match ops::list(&app.store, Which::All, &app.case) {
        Ok(l) => l,
        Err(e) => return failure(e),
    };
    let Some(c) = list.iter().find(|c| c.case_id == case_id) else {
        return answer(
            StatusCode::NOT_FOUND,
            "No such case",
            "<p>No such case on the latest night.</p>",
        );
    };
    let mut body = format!(
        "<p><a href=\"/\">All cases</a></p>\n<h1>Case {id}: NHS number {nhs}</h1>\n<p>{status}. Risk {level}, score {score} on {night}; flagged since {since}.</p>\n<p>Why: {rules}.</p>\n",
        id = escape(&c.case_id),
        nhs = escape(&spaced_nhs(&c.nhs_number)),
        status = escape(&status_words(c)),
        level = escape(&c.risk_level),
        score = c.risk_score,
        night = c.last_flagged,
        since = c.first_flagged,
        rules = escape(&c.rules.iter().map(|r| crate::detect::rules::find(r).map_or(r.as_str(), |x| x.meta.title)).collect::<Vec<_>>().join("; ")),
    );
    if let Some(r) = &c.last_review {
        let _ = writeln!(
            body,
            "<p>Last review: <strong>{}</strong> by {} at {}: {}</p>",
            escape(r.outcome.words()),
            escape(&r.by),
            escape(&r.at),
            escape(&r.note)
        );
    }
    let _ = write!(
        body,
        r#"<h2>Record a review</h2>
<form method="post" action="/case/{id}/review">
<input type="hidden" name="csrf" value="{csrf}">
<fieldset><legend>Outcome</legend>
<label><input type="radio" name="outcome" value="benign" required> Benign: nothing of concern (the case leaves the report until something new appears)</label>
<label><input type="radio" name="outcome" value="concern"> Concern: keep it on the report</label>
<label><input type="radio" name="outcome" value="action_taken"> Action taken: keep it on the report</label>
</fieldset>
<label for="note">What was decided, and why</label>
<textarea id="note" name="note" required></textarea>
<label for="by">Your name</label>
<input id="by" name="by" autocomplete="name">
<label for="suppress_days">For benign: bring the case back after this many days anyway (optional)</label>
<input id="suppress_days" name="suppress_days" inputmode="numeric" pattern="[0-9]*">
<p><button type="submit">Record the review</button></p>
</form>
"#,
        id = escape(&c.case_id),
        csrf = app.csrf,
    );
    page(&format!("Case {}", c.case_id), &body).into_response()
}

#[derive(Deserialize)]
struct ReviewForm {
    csrf: Option<String>,
    outcome: Option<String>,
    note: Option<String>,
    by: Option<String>,
    suppress_days: Option<String>,
}

async fn review(
    State(app): State<Arc<App>>,
    UrlPath(case_id): UrlPath<String>,
    Form(form): Form<ReviewForm>,
) -> Response {
    if !form.csrf.as_deref().is_some_and(|t| same(t, &app.csrf)) {
        return answer(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "<p>The form has expired: open the case again.</p>",
        );
    }
    let bad = |m: &str| {
        answer(
            StatusCode::BAD_REQUEST,
            "Not recorded",
            &format!(
                "<p>{}</p><p><a href=\"/case/{}\">Back to the case</a></p>",
                escape(m),
                escape(&case_id)
            ),
        )
    };
    let Some(outcome) = form.outcome.as_deref().and_then(Outcome::from_name) else {
        return bad("Choose an outcome.");
    };
    let suppress_days = match form
        .suppress_days
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if outcome == Outcome::Benign => Some(n),
            Ok(_) => return bad("The number of days applies to a benign outcome only."),
            Err(_) => return bad("The number of days must be a whole number."),
        },
    };
    let input = ReviewInput {
        outcome,
        note: form.note.unwrap_or_default(),
        by: form.by,
        suppress_days,
    };
    match ops::record(&app.store, Subject::Case(&case_id), input) {
        Ok(_) => Redirect::to("/").into_response(),
        Err(e) => bad(&format!("{e:#}")),
    }
}
