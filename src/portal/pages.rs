//! `/portal`: the server-rendered pages (maud escapes every value). Plain
//! HTML forms, no script: every control has a label, errors are listed at
//! the top with links to their fields, and the tab order follows the form.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use cgthub_pdf_entry::{FieldError, Mismatch, Policy, Values};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::auth::{LoginError, Session};
use super::config::Role;
use super::workflow::{Document, Portal, PortalError, Resolved, State as DocState, CT_PDF};
use super::{expired_cookie, session_cookie, session_of};

type St = Arc<Portal>;
type Pairs = Vec<(String, String)>;
/// A form field: its name, label and value.
type FieldRow = (String, String, String);

pub fn router(portal: St) -> Router {
    let upload_limit = portal.cfg.max_body_bytes as usize + 64 * 1024;
    Router::new()
        .route("/portal", get(list))
        .route("/portal/login", get(login_page).post(login))
        .route("/portal/logout", post(logout))
        .route(
            "/portal/upload",
            post(upload).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/portal/documents/{id}", get(document))
        .route("/portal/documents/{id}/pdf", get(pdf))
        .route("/portal/documents/{id}/entry", post(enter))
        .route("/portal/documents/{id}/verification", post(verify))
        .route("/portal/documents/{id}/resolution", post(resolve))
        .with_state(portal)
}

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#111;background:#fafafa}
header{display:flex;gap:1rem;align-items:center;justify-content:space-between;padding:.5rem 1rem;background:#1d3557;color:#fff}
header a{color:#fff}
main{padding:1rem}
a:focus,button:focus,input:focus,select:focus,iframe:focus{outline:3px solid #e76f51;outline-offset:2px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}
.split{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:1rem;align-items:start}
iframe#pdf{width:100%;height:85vh;border:1px solid #999;background:#fff}
fieldset{margin:0 0 1rem;background:#fff}
label{display:block;font-weight:600;margin-top:.4rem}
input[type=text],input[type=password],select{width:100%;box-sizing:border-box;padding:.3rem}
.suggestion{font-size:.85em;color:#6a4c00;background:#fff3cd;padding:0 .3rem}
input[data-suggested=true]{background:#fffbe6}
[aria-invalid=true]{border:2px solid #b00020}
.errors{border:2px solid #b00020;background:#fdecea;padding:.5rem 1rem;margin-bottom:1rem}
.note{border-left:4px solid #457b9d;background:#eef4f8;padding:.5rem 1rem}
.confirm{font-weight:normal}
.field-error{display:block;color:#b00020;font-weight:600}
button{padding:.4rem 1rem;font-size:1rem}
";

fn page(title: &str, s: Option<&Session>, csrf: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · cgthub PDF entry" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    a href="/portal" { "cgthub · PDF entry" }
                    @if let Some(s) = s {
                        div {
                            span #whoami { (s.display_name) }
                            " (" (s.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")) ") "
                            form method="post" action="/portal/logout" style="display:inline" {
                                input type="hidden" name="_csrf" value=(csrf);
                                button #sign-out type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

fn respond(status: StatusCode, m: Markup) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
        ],
        m.into_string(),
    )
        .into_response()
}

fn error_page(p: &Portal, s: Option<&Session>, status: StatusCode, msg: &str) -> Response {
    let csrf = s.map(|s| p.auth.csrf(s)).unwrap_or_default();
    respond(
        status,
        page(
            status.canonical_reason().unwrap_or("Error"),
            s,
            &csrf,
            html! { p #error role="alert" { (msg) } p { a href="/portal" { "Back to the documents" } } },
        ),
    )
}

fn portal_error(p: &Portal, s: &Session, e: &PortalError) -> Response {
    let status = super::api::error_response(e).status();
    error_page(p, Some(s), status, &e.to_string())
}

/// The signed-in user, or a redirect to the login page.
#[allow(clippy::result_large_err)]
fn signed_in(p: &Portal, headers: &HeaderMap) -> Result<Session, Response> {
    session_of(p, headers).ok_or_else(|| Redirect::to("/portal/login").into_response())
}

/// For a form POST: the user, the CSRF field, and a same-origin request.
#[allow(clippy::result_large_err)]
fn posted(p: &Portal, headers: &HeaderMap, csrf: Option<&str>) -> Result<Session, Response> {
    if !same_origin(headers) {
        return Err(error_page(
            p,
            None,
            StatusCode::FORBIDDEN,
            "cross-origin form refused",
        ));
    }
    let s = session_of(p, headers).ok_or_else(|| Redirect::to("/portal/login").into_response())?;
    if !p.auth.csrf_ok(&s, csrf.unwrap_or("")) {
        return Err(error_page(
            p,
            Some(&s),
            StatusCode::FORBIDDEN,
            "the form's security token is missing or stale: reload the page and try again",
        ));
    }
    Ok(s)
}

/// A browser's `Origin`, when it sends one, must be this host.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin == "null" && host.is_empty()
        || origin
            .split_once("://")
            .is_some_and(|(_, h)| h.eq_ignore_ascii_case(host))
}

fn field(pairs: &Pairs, name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

// ---- sign in and out ----

fn login_form(error: Option<&str>, token: &str) -> Markup {
    page(
        "Sign in",
        None,
        "",
        html! {
            @if let Some(e) = error { p #error .errors role="alert" { (e) } }
            form #login method="post" action="/portal/login" {
                input type="hidden" name="_csrf" value=(token);
                label for="username" { "User name" }
                input #username type="text" name="user" autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                p { button #sign-in type="submit" { "Sign in" } }
            }
        },
    )
}

/// The login form, bound to a fresh login cookie.
fn login_response(p: &Portal, status: StatusCode, error: Option<&str>) -> Response {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let mut r = respond(status, login_form(error, &p.auth.login_token(&nonce)));
    if let Ok(v) = format!(
        "{}={nonce}; HttpOnly; SameSite=Strict; Path=/portal/login; Max-Age=3600",
        super::auth::LOGIN_COOKIE
    )
    .parse()
    {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn login_page(State(p): State<St>) -> Response {
    login_response(&p, StatusCode::OK, None)
}

async fn login(State(p): State<St>, headers: HeaderMap, Form(f): Form<Pairs>) -> Response {
    if !same_origin(&headers) {
        return error_page(&p, None, StatusCode::FORBIDDEN, "cross-origin form refused");
    }
    let token = field(&f, "_csrf").unwrap_or_default();
    if !super::cookies(&headers, super::auth::LOGIN_COOKIE)
        .any(|n| p.auth.login_token_ok(n, &token))
    {
        return login_response(
            &p,
            StatusCode::FORBIDDEN,
            Some("the sign-in form expired or did not come from this hub: sign in again"),
        );
    }
    let user = field(&f, "user").unwrap_or_default();
    let password = field(&f, "password").unwrap_or_default();
    match super::api::sign_in(&p, user.trim(), &password).await {
        Ok((s, cookie)) => {
            let max_age = (s.expires - chrono::Utc::now()).num_seconds();
            (
                StatusCode::SEE_OTHER,
                [
                    (header::SET_COOKIE, session_cookie(&cookie, max_age)),
                    (header::LOCATION, "/portal".to_string()),
                ],
            )
                .into_response()
        }
        Err(e @ LoginError::LockedOut(_)) => {
            login_response(&p, StatusCode::TOO_MANY_REQUESTS, Some(&e.to_string()))
        }
        Err(e) => login_response(&p, StatusCode::UNAUTHORIZED, Some(&e.to_string())),
    }
}

async fn logout(State(p): State<St>, headers: HeaderMap, Form(f): Form<Pairs>) -> Response {
    let s = match posted(&p, &headers, field(&f, "_csrf").as_deref()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    p.auth.close(&s);
    p.audit(&s.user, "portal.logout", "portal", serde_json::json!({}))
        .await;
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, expired_cookie()),
            (header::LOCATION, "/portal/login".to_string()),
        ],
    )
        .into_response()
}

// ---- the list and uploads ----

async fn list(State(p): State<St>, headers: HeaderMap) -> Response {
    let s = match signed_in(&p, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let docs = match p.list().await {
        Ok(d) => d,
        Err(e) => return portal_error(&p, &s, &e),
    };
    let csrf = p.auth.csrf(&s);
    let body = html! {
        @if s.has(Role::DataEntry) {
            section aria-labelledby="upload-title" {
                h2 #upload-title { "Upload a PDF" }
                form #upload method="post" action="/portal/upload" enctype="multipart/form-data" {
                    input type="hidden" name="_csrf" value=(csrf);
                    label for="partner" { "Lab (partner)" }
                    select #partner name="partner" {
                        @for partner in &p.cfg.partners {
                            option value=(partner) { (partner) }
                        }
                    }
                    label for="file" { "PDF file (at most " (p.cfg.max_body_bytes / 1024 / 1024) " MiB)" }
                    input #file type="file" name="file" accept="application/pdf" required;
                    p { button #upload-button type="submit" { "Upload" } }
                }
            }
        }
        h2 { "By state" }
        table #documents {
            thead { tr { th scope="col" { "Document" } th scope="col" { "Lab" } th scope="col" { "Uploaded" } th scope="col" { "Entered by" } th scope="col" { "Verified by" } } }
            @for state in DocState::ALL {
                @let rows: Vec<&Document> = docs.iter().filter(|d| d.state == state).collect();
                tbody {
                    tr { th #{"state-" (state.as_str())} colspan="5" scope="rowgroup" { (state.title()) " (" (rows.len()) ")" } }
                    @for d in rows {
                        tr data-document=(d.id) data-state=(d.state.as_str()) {
                            td { a.open href={"/portal/documents/" (d.id)} { "Document " (d.id) } }
                            td { (d.partner) }
                            td { (d.uploaded.at.format("%Y-%m-%d %H:%M UTC")) " by " (d.uploaded.user) }
                            td { @if let Some(e) = &d.entered { (e.user) } }
                            td { @if let Some(v) = &d.verified { (v.user) } }
                        }
                    }
                }
            }
        }
    };
    respond(StatusCode::OK, page("Documents", Some(&s), &csrf, body))
}

async fn upload(State(p): State<St>, headers: HeaderMap, mut form: Multipart) -> Response {
    let mut csrf = None;
    let mut partner = None;
    let mut file: Option<(bool, Result<bytes::Bytes, bytes::Bytes>)> = None;
    let max = p.cfg.max_body_bytes as usize;
    loop {
        let mut f = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return error_page(
                    &p,
                    None,
                    StatusCode::BAD_REQUEST,
                    &format!("the upload could not be read: {e}"),
                )
            }
        };
        match f.name().unwrap_or("") {
            "_csrf" => csrf = f.text().await.ok(),
            "partner" => partner = f.text().await.ok(),
            "file" => {
                let ct_ok = f
                    .content_type()
                    .is_none_or(|c| c.eq_ignore_ascii_case(CT_PDF));
                let mut buf = bytes::BytesMut::new();
                let mut over = false;
                while let Ok(Some(chunk)) = f.chunk().await {
                    if !over {
                        buf.extend_from_slice(&chunk);
                        if buf.len() > max {
                            buf.truncate(crate::intake::http::KEEP_OF_OVERSIZE);
                            over = true;
                        }
                    }
                }
                let b = buf.freeze();
                file = Some((ct_ok, if over { Err(b) } else { Ok(b) }));
            }
            _ => {}
        }
    }
    let s = match posted(&p, &headers, csrf.as_deref()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (Some(partner), Some((ct_ok, body))) = (partner, file) else {
        return error_page(
            &p,
            Some(&s),
            StatusCode::BAD_REQUEST,
            "choose a lab and a PDF file",
        );
    };
    match super::api::take_upload(&p, &s, &partner, ct_ok, body).await {
        Ok(u) => Redirect::to(&format!("/portal/documents/{}", u.document.id)).into_response(),
        Err(e @ PortalError::Refused { code, .. }) => {
            let status = match code {
                "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
                "unsupported_media_type" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            error_page(
                &p,
                Some(&s),
                status,
                &format!("The file was refused and kept for review ({code}): {e}"),
            )
        }
        Err(e) => portal_error(&p, &s, &e),
    }
}

// ---- one document ----

/// `test.0.result` → `test-0-result`, for element ids.
fn id_of(name: &str) -> String {
    name.replace('.', "-")
}

/// How a values form is drawn.
#[derive(Default)]
struct FormOpts<'a> {
    suggested: BTreeSet<String>,
    errors: &'a [FieldError],
    /// Review: a confirmation checkbox beside each field.
    confirm: bool,
    confirmed: BTreeSet<String>,
}

fn errors_summary(errors: &[FieldError]) -> Markup {
    html! {
        @if !errors.is_empty() {
            div #error-summary .errors role="alert" tabindex="-1" {
                h2 { "Please correct " (errors.len()) " value(s)" }
                ul { @for e in errors { li { a href={"#f-" (id_of(&e.field))} { (e.message) } } } }
            }
        }
    }
}

fn value_inputs(values: &Values, o: &FormOpts) -> Markup {
    let mut groups: Vec<(String, Vec<FieldRow>)> = Vec::new();
    for (name, label, value) in values.fields() {
        let group = match name.strip_prefix("test.") {
            Some(rest) => {
                let i: usize = rest
                    .split('.')
                    .next()
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(0);
                let code = values.tests.get(i).map(|t| t.code.as_str()).unwrap_or("");
                format!(
                    "Test {}{}",
                    i + 1,
                    if code.is_empty() {
                        String::new()
                    } else {
                        format!(": {code}")
                    }
                )
            }
            None => "Document".to_string(),
        };
        match groups.last_mut() {
            Some((g, list)) if *g == group => list.push((name, label, value)),
            _ => groups.push((group, vec![(name, label, value)])),
        }
    }
    html! {
        @for (group, list) in &groups {
            fieldset {
                legend { (group) }
                @for (name, label, value) in list {
                    @let id = format!("f-{}", id_of(name));
                    @let err = o.errors.iter().find(|e| &e.field == name);
                    @let suggested = o.suggested.contains(name);
                    label for=(id) { (label) }
                    @if name.ends_with("pass_fail") {
                        select id=(id) name=(name) aria-invalid=[err.map(|_| "true")] aria-describedby=[err.map(|_| format!("{id}-err"))] {
                            option value="" selected[value.is_empty()] { "— choose —" }
                            option value="pass" selected[value == "pass"] { "Pass (conforms)" }
                            option value="fail" selected[value == "fail"] { "Fail (does not conform)" }
                        }
                    } @else {
                        input type="text" id=(id) name=(name) value=(value)
                            data-suggested=[suggested.then_some("true")]
                            aria-invalid=[err.map(|_| "true")]
                            aria-describedby=[err.map(|_| format!("{id}-err")).or(suggested.then(|| format!("{id}-sug")))];
                    }
                    @if suggested { span .suggestion id={(id) "-sug"} { "Suggested from the PDF: check it against the document" } }
                    @if let Some(e) = err { span .field-error id={(id) "-err"} { (e.message) } }
                    @if o.confirm {
                        label .confirm for={"c-" (id_of(name))} {
                            input type="checkbox" id={"c-" (id_of(name))} name="confirm" value=(name) checked[o.confirmed.contains(name)];
                            " checked against the PDF"
                        }
                    }
                }
            }
        }
    }
}

fn signature_block(s: &Session, button_id: &str, what: &str) -> Markup {
    html! {
        fieldset {
            legend { "Electronic signature" }
            p .note { "By signing, " (s.display_name) " (" (s.user) ") confirms these values as "
                strong { "verified" } " against the PDF. The signature is recorded with the time, the document's hash and the values." }
            label for="signature-password" { "Your password (re-entered to sign)" }
            input #signature-password type="password" name="password" autocomplete="current-password" required;
            p { button id=(button_id) type="submit" { (what) } }
        }
    }
}

fn doc_page(p: &Portal, s: &Session, d: &Document, status: StatusCode, main: Markup) -> Response {
    let csrf = p.auth.csrf(s);
    let body = html! {
        p {
            "State: " strong #state data-state=(d.state.as_str()) { (d.state.title()) }
            " · lab " (d.partner) " · policy " (d.policy.as_str())
            " · SHA-256 " code { (d.sha256) }
        }
        div .split {
            div { iframe #pdf src={"/portal/documents/" (d.id) "/pdf"} title={"The PDF of document " (d.id)} {} }
            div { (main) }
        }
    };
    respond(
        status,
        page(&format!("Document {}", d.id), Some(s), &csrf, body),
    )
}

async fn document(State(p): State<St>, Path(id): Path<i64>, headers: HeaderMap) -> Response {
    let s = match signed_in(&p, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    render(&p, &s, id, StatusCode::OK, None).await
}

/// What was submitted, for drawing a refused form again.
struct Again {
    values: Values,
    errors: Vec<FieldError>,
    confirmed: BTreeSet<String>,
    message: Option<String>,
}

async fn render(
    p: &Portal,
    s: &Session,
    id: i64,
    status: StatusCode,
    again: Option<Again>,
) -> Response {
    let d = match p.document(id).await {
        Ok(Some(d)) => d,
        Ok(None) => return portal_error(p, s, &PortalError::NotFound(id)),
        Err(e) => return portal_error(p, s, &e),
    };
    let csrf = p.auth.csrf(s);
    let enterer = d.entered.as_ref().is_some_and(|e| e.user == s.user);
    let no_errors: Vec<FieldError> = Vec::new();
    let message = again.as_ref().and_then(|a| a.message.clone());
    let flash = html! { @if let Some(m) = &message { p #error .errors role="alert" { (m) } } };
    let main = match d.state {
        DocState::AwaitingEntry if s.has(Role::DataEntry) => {
            let (values, suggested, errors) = match &again {
                Some(a) => (a.values.clone(), BTreeSet::new(), a.errors.as_slice()),
                None => {
                    let mut v = match p.blank(&d) {
                        Ok(v) => v,
                        Err(e) => return portal_error(p, s, &e),
                    };
                    let mut suggested = BTreeSet::new();
                    for sug in p.suggestions(&d).await.unwrap_or_default() {
                        if v.set(&sug.field, sug.value.clone()) {
                            suggested.insert(sug.field);
                        }
                    }
                    (v, suggested, no_errors.as_slice())
                }
            };
            let o = FormOpts {
                suggested,
                errors,
                ..Default::default()
            };
            html! {
                (flash)
                h2 { "Enter the values" }
                p .note { "Type each value as the PDF prints it. Values marked as suggestions were read from the PDF by the template: check each one. A second person verifies everything before it goes anywhere." }
                (errors_summary(errors))
                form #entry-form method="post" action={"/portal/documents/" (id) "/entry"} {
                    input type="hidden" name="_csrf" value=(csrf);
                    (value_inputs(&values, &o))
                    p { button #submit-entry type="submit" { "Submit the entry" } }
                }
            }
        }
        DocState::AwaitingVerification | DocState::Failed
            if s.has(Role::Verifier) && !enterer && d.checked.is_none() =>
        {
            let review = d.policy == Policy::Review;
            let (values, errors, confirmed) = match &again {
                Some(a) => (a.values.clone(), a.errors.as_slice(), a.confirmed.clone()),
                None if review => match p.entered_values(s, id).await {
                    Ok(v) => (v, no_errors.as_slice(), BTreeSet::new()),
                    Err(e) => return portal_error(p, s, &e),
                },
                None => match p.blank(&d) {
                    Ok(v) => (v, no_errors.as_slice(), BTreeSet::new()),
                    Err(e) => return portal_error(p, s, &e),
                },
            };
            let o = FormOpts {
                errors,
                confirm: review,
                confirmed,
                ..Default::default()
            };
            html! {
                (flash)
                @if let Some(pr) = &d.problem {
                    p .errors role="alert" { "The last verification was refused: " (pr["reason"].as_str().unwrap_or("")) " (" (pr["code"].as_str().unwrap_or("")) "). Verify again once it is put right." }
                }
                h2 { "Verify" }
                @if review {
                    p .note { "Check each value against the PDF and tick it. Correct a value that is wrong: a correction is a mismatch a verifier must resolve." }
                } @else {
                    p .note { "Key in the values from the PDF yourself. You do not see the first entry: the two are compared when you sign." }
                }
                (errors_summary(errors))
                form #verify-form method="post" action={"/portal/documents/" (id) "/verification"} {
                    input type="hidden" name="_csrf" value=(csrf);
                    (value_inputs(&values, &o))
                    (signature_block(s, "submit-verification", "Sign as verified"))
                }
            }
        }
        DocState::Mismatch | DocState::Failed
            if s.has(Role::Verifier) && !enterer && d.checked.is_some() =>
        {
            let mismatches: Vec<Mismatch> = match p.mismatches(s, id).await {
                Ok(m) => m,
                Err(e) => return portal_error(p, s, &e),
            };
            let errors = again.as_ref().map(|a| a.errors.as_slice()).unwrap_or(&[]);
            html! {
                (flash)
                @if let Some(pr) = &d.problem {
                    p .errors role="alert" { "The last resolution was refused: " (pr["reason"].as_str().unwrap_or("")) " (" (pr["code"].as_str().unwrap_or("")) ")." }
                }
                h2 { "Resolve the mismatches" }
                p .note { "The two entries differ in these fields. For each, type the value the PDF shows and say why." }
                @if !errors.is_empty() {
                    div #error-summary .errors role="alert" {
                        ul { @for e in errors { li { a href={"#r-" (id_of(&e.field))} { (e.message) } } } }
                    }
                }
                form #resolve-form method="post" action={"/portal/documents/" (id) "/resolution"} {
                    input type="hidden" name="_csrf" value=(csrf);
                    @for m in &mismatches {
                        @let sfx = id_of(&m.field);
                        fieldset {
                            legend { (m.label) }
                            p { "First entry: " strong { (m.first) } " · second: " strong { (m.second) } }
                            label for={"r-" (sfx)} { "Value" }
                            input type="text" id={"r-" (sfx)} name={"value." (m.field)} value=(m.second) required;
                            label for={"why-" (sfx)} { "Reason" }
                            input type="text" id={"why-" (sfx)} name={"reason." (m.field)} required;
                        }
                    }
                    (signature_block(s, "submit-resolution", "Sign as verified"))
                }
            }
        }
        DocState::Verified => {
            let values = p.entered_values(s, id).await.ok();
            html! {
                @let v = d.verified.as_ref();
                p #verified-by { "Verified by " (v.map(|v| v.user.as_str()).unwrap_or("")) " at " (v.map(|v| v.at.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_default())
                    "; entered by " (d.entered.as_ref().map(|e| e.user.as_str()).unwrap_or("")) ". " (d.events) " event(s) produced." }
                @if let Some(values) = values {
                    table { thead { tr { th { "Field" } th { "Value (as entered)" } } }
                        tbody { @for (_, label, value) in values.fields() { tr { td { (label) } td { (value) } } } } }
                }
            }
        }
        _ => html! {
            (flash)
            p .note #waiting {
                @if enterer && d.state == DocState::AwaitingVerification {
                    "You entered this document: someone else must verify it."
                } @else {
                    "Nothing for you to do here: this document is " (d.state.title().to_lowercase()) "."
                }
            }
        },
    };
    doc_page(p, s, &d, status, main)
}

async fn pdf(State(p): State<St>, Path(id): Path<i64>, headers: HeaderMap) -> Response {
    if let Err(r) = signed_in(&p, &headers) {
        return r;
    }
    super::api::pdf_bytes(&p, id).await
}

/// After a POST: back to the document, or the form again with what was wrong.
async fn after(
    p: &Portal,
    s: &Session,
    id: i64,
    r: Result<(), PortalError>,
    again: Again,
) -> Response {
    match r {
        Ok(()) => Redirect::to(&format!("/portal/documents/{id}")).into_response(),
        Err(PortalError::Invalid(errors)) => {
            render(
                p,
                s,
                id,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(Again { errors, ..again }),
            )
            .await
        }
        Err(
            e @ (PortalError::BadSignature | PortalError::Conflict(_) | PortalError::Forbidden(_)),
        ) => {
            let status = super::api::error_response(&e).status();
            render(
                p,
                s,
                id,
                status,
                Some(Again {
                    message: Some(e.to_string()),
                    ..again
                }),
            )
            .await
        }
        Err(e) => portal_error(p, s, &e),
    }
}

async fn enter(
    State(p): State<St>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Form(f): Form<Pairs>,
) -> Response {
    let s = match posted(&p, &headers, field(&f, "_csrf").as_deref()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let values = Values::from_form(&f);
    let r = p.enter(&s, id, values.clone()).await.map(|_| ());
    let again = Again {
        values,
        errors: Vec::new(),
        confirmed: BTreeSet::new(),
        message: None,
    };
    after(&p, &s, id, r, again).await
}

async fn verify(
    State(p): State<St>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Form(f): Form<Pairs>,
) -> Response {
    let s = match posted(&p, &headers, field(&f, "_csrf").as_deref()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let values = Values::from_form(&f);
    let confirmed: Vec<String> = f
        .iter()
        .filter(|(k, _)| k == "confirm")
        .map(|(_, v)| v.clone())
        .collect();
    let password = field(&f, "password").unwrap_or_default();
    let r = p
        .verify(&s, id, values.clone(), Some(confirmed.clone()), &password)
        .await
        .map(|_| ());
    let again = Again {
        values,
        errors: Vec::new(),
        confirmed: confirmed.into_iter().collect(),
        message: None,
    };
    after(&p, &s, id, r, again).await
}

async fn resolve(
    State(p): State<St>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Form(f): Form<Pairs>,
) -> Response {
    let s = match posted(&p, &headers, field(&f, "_csrf").as_deref()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut resolved: BTreeMap<String, Resolved> = BTreeMap::new();
    for (k, v) in &f {
        if let Some(name) = k.strip_prefix("value.") {
            let reason = field(&f, &format!("reason.{name}")).unwrap_or_default();
            resolved.insert(
                name.to_string(),
                Resolved {
                    value: v.clone(),
                    reason,
                },
            );
        }
    }
    let password = field(&f, "password").unwrap_or_default();
    let r = p.resolve(&s, id, resolved, &password).await.map(|_| ());
    let again = Again {
        values: Values::default(),
        errors: Vec::new(),
        confirmed: BTreeSet::new(),
        message: None,
    };
    after(&p, &s, id, r, again).await
}
