//! The PDF entry portal (issue 9) as its users meet it, for the contract
//! tests `pdf_entry` (JSON API) and `pdf_entry_browser` (the HTML portal in
//! headless Chromium): people with `cgthub passwd` hashes in `[pdf_entry]`,
//! a signed-in API session (cookie and CSRF token), the certificate of
//! analysis fixtures and what a person reads off them, and the EHR order
//! that registers the fixture's therapy.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{binary, repo, Hub, Partner};

/// The partner whose template (`mappings/pdf/coa_lab.toml`) ships in the repo.
pub const PARTNER: &str = "coa_lab";
/// The session cookie's name.
pub const COOKIE: &str = "cgthub_portal";
/// The header every API POST carries the session's CSRF token in.
pub const CSRF_HEADER: &str = "X-CSRF-Token";
/// `[pdf_entry] max_body_bytes` of [`config`].
pub const MAX_BODY_BYTES: usize = 1_048_576;

/// The chain of identity on `coa_lab_lot_A.pdf` (`make_fixtures.py`: `COI_A`).
pub const COI_A: &str = "CHW000126000001";
/// The chain of identity on `coa_lab_two_pages.pdf` (`COI_B`).
pub const COI_B: &str = "CHW000126000002";

/// One person of the portal.
#[derive(Debug, Clone, Copy)]
pub struct User {
    pub login: &'static str,
    pub display_name: &'static str,
    pub roles: &'static [&'static str],
    pub password: &'static str,
}

/// Keys in documents (role `data_entry` only).
pub const ERIN: User = User {
    login: "erin",
    display_name: "Erin Entry",
    roles: &["data_entry"],
    password: "erin keys in 42 certificates",
};

/// Verifies others' entries (role `verifier` only).
pub const VICTOR: User = User {
    login: "victor",
    display_name: "Victor Verifier",
    roles: &["verifier"],
    password: "victor signs what he checked",
};

/// Both roles: may enter, or verify others' entries, never both on one document.
pub const SAM: User = User {
    login: "sam",
    display_name: "Sam Both",
    roles: &["data_entry", "verifier"],
    password: "sam wears two hats",
};

/// The PHC string an operator gets from `printf %s PASSWORD | cgthub passwd`
/// (made once per password and test process: argon2 is slow on purpose).
pub fn password_hash(password: &str) -> String {
    static CACHE: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(h) = cache.lock().unwrap().get(password) {
        return h.clone();
    }
    let mut child = Command::new(binary())
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cgthub passwd");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("cgthub passwd");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cgthub passwd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one PHC line: {stdout:?}");
    assert!(lines[0].starts_with("$argon2id$"), "{stdout:?}");
    let hash = lines[0].to_string();
    cache
        .lock()
        .unwrap()
        .insert(password.to_string(), hash.clone());
    hash
}

/// `[pdf_entry]` for partner `coa_lab` with these people, as an operator
/// writes it.
pub fn config(users: &[User]) -> String {
    config_for(&[PARTNER], users)
}

/// `[pdf_entry]` for `partners` (each with its template) and these people.
pub fn config_for(partners: &[&str], users: &[User]) -> String {
    let partners: Vec<String> = partners.iter().map(|p| format!("\"{p}\"")).collect();
    let mut c = format!(
        "[pdf_entry]\npartners = [{}]\nmax_body_bytes = {MAX_BODY_BYTES}\n",
        partners.join(", ")
    );
    for u in users {
        let roles: Vec<String> = u.roles.iter().map(|r| format!("\"{r}\"")).collect();
        c.push_str(&format!(
            "[pdf_entry.users.{}]\ndisplay_name = \"{}\"\nroles = [{}]\npassword_hash = \"{}\"\n",
            u.login,
            u.display_name,
            roles.join(", "),
            password_hash(u.password)
        ));
    }
    c
}

/// Identity as the hub has it by default: an event for a therapy nobody
/// registered is held.
pub const HOLD_UNKNOWN: &str = "on_unknown = \"hold\"";

/// A hub with the portal for `users`, identity as by default.
pub fn start(users: &[User]) -> Hub {
    start_with(users, HOLD_UNKNOWN)
}

/// A hub with the portal for `users` and these `[identity]` keys.
pub fn start_with(users: &[User], identity: &'static str) -> Hub {
    let extra: &'static str = Box::leak(config(users).into_boxed_str());
    Hub::start_with(crate::Setup {
        config_extra: Some(extra),
        identity: Some(identity),
        ..crate::Setup::default()
    })
}

/// A copy of the repository's `mappings/` to change for one hub (pass
/// it as `CGTHUB__PATHS__MAPPINGS`).
pub fn mappings_copy() -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    copy(&repo().join("mappings"), dir.path());
    dir
}

/// The EHR's order for the therapy `coi` (ORM^O01 over MLLP, COI in PID-3
/// typed COI), which registers it, as in `mllp_identity`.
pub fn register_therapy(hub: &Hub, coi: &str, n: u32) {
    let msg = format!(
        "MSH|^~\\&|EHR|CANCERCTR|CGTHUB|HUB|202611200900||ORM^O01|PDF-ORD-{n}|P|2.5.1\r\
         PID|1||MRN-PDF-{n}^^^HOSPITAL^MR~{coi}^^^ISBT128^COI||OKAFOR^ADA||19800101|F\r\
         ORC|NW|ORD-PDF-{n}^EHR|||||||202611200900\r\
         OBR|1|ORD-PDF-{n}^EHR|SPC-PDF-{n}^LAB|CART-19^Autologous anti-CD19 CAR-T cells^L|||202611200900\r"
    );
    let ack = Partner::connect(hub.mllp).send(msg.as_bytes());
    assert_eq!(ack.code(), "AA", "the order for {coi}: {}", ack.0);
}

// --- the documents ---------------------------------------------------------

/// A file of `mappings/pdf/fixtures/`.
pub fn pdf(name: &str) -> Vec<u8> {
    let p = repo().join("mappings/pdf/fixtures").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The same certificate as another file: `n` written into the document
/// information's producer (a hex string of the same length), so every
/// cross-reference offset still holds and only the SHA-256 changes. What a
/// lab sends when it re-issues a report from another export.
pub fn variant(pdf: &[u8], n: u16) -> Vec<u8> {
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02X}")).collect::<String>();
    let from = hex("(cgthub tests)");
    let to = hex(&format!("(cgthub #{n:04})"));
    assert_eq!(from.len(), to.len());
    let at = pdf
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .expect("the fixture's producer string (make_fixtures.py changed?)");
    let mut out = pdf.to_vec();
    out[at..at + to.len()].copy_from_slice(to.as_bytes());
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One of the template's `[[tests]]`: what a blank form's row holds
/// before anyone types (empty where the template says nothing).
#[derive(Debug, Clone)]
pub struct TemplateTest {
    pub code: String,
    pub name: String,
    pub unit: String,
    pub specification: String,
}

/// The template's tests in order: the constants of the entry form, test
/// index `i` of `test.{i}.…`.
pub fn template_tests() -> Vec<TemplateTest> {
    let p = repo().join("mappings/pdf").join(format!("{PARTNER}.toml"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let t: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    t["tests"]
        .as_array()
        .expect("[[tests]] in the template")
        .iter()
        .map(|t| {
            let s = |k: &str| t.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            TemplateTest {
                code: s("code"),
                name: s("name"),
                unit: s("unit"),
                specification: s("specification"),
            }
        })
        .collect()
}

/// What a person reads off `coa_lab_lot_A.pdf`, as the entry form's model.
/// The results table (`ROWS_A` of `make_fixtures.py`) is matched to the
/// template's tests by name, so the template's order decides the index.
pub fn lot_a_values() -> Value {
    // (words in the PDF's test column, result, unit, specification, verdict)
    const ROWS: [(&str, &str, &str, &str, &str); 5] = [
        ("steril", "No growth", "", "No growth", "pass"),
        ("endotox", "0.12", "EU/mL", "< 0.5 EU/mL", "pass"),
        ("viab", "87.5", "%", ">= 70 %", "pass"),
        ("cd3", "96.2", "%", ">= 80 %", "pass"),
        ("mycopl", "Not detected", "", "Not detected", "pass"),
    ];
    values_for(
        json!({
            "coi": COI_A,
            "specimen_id": "SPC-778812",
            "batch_id": "LOT-A-0412",
            "report_id": "NBA-2026-0412",
            "analyst": "R. Okafor",
            "tested_at": "2026-11-28",
        }),
        &ROWS,
    )
}

/// What a person reads off `coa_lab_two_pages.pdf` (`ROWS_B`; viability fails).
pub fn two_pages_values() -> Value {
    const ROWS: [(&str, &str, &str, &str, &str); 5] = [
        ("steril", "No growth", "", "No growth", "pass"),
        ("endotox", "0.31", "EU/mL", "< 0.5 EU/mL", "pass"),
        ("viab", "68.0", "%", ">= 70 %", "fail"),
        ("cd3", "91.4", "%", ">= 80 %", "pass"),
        ("mycopl", "Not detected", "", "Not detected", "pass"),
    ];
    values_for(
        json!({
            "coi": COI_B,
            "specimen_id": "SPC-778813",
            "batch_id": "LOT-B-0413",
            "report_id": "NBA-2026-0413",
            "analyst": "R. Okafor",
            "tested_at": "2026-11-28",
        }),
        &ROWS,
    )
}

fn values_for(mut head: Value, rows: &[(&str, &str, &str, &str, &str)]) -> Value {
    let tests: Vec<Value> = template_tests()
        .into_iter()
        .map(|TemplateTest { code, name, .. }| {
            let key = format!("{code} {name}")
                .to_lowercase()
                .replace(['+', ' '], "");
            let (_, result, unit, spec, verdict) = rows
                .iter()
                .find(|r| key.contains(r.0))
                .unwrap_or_else(|| panic!("no row of the fixture for template test {code} {name}"));
            json!({
                "code": code, "name": name, "result": result, "unit": unit,
                "specification": spec, "pass_fail": verdict, "analyst": "", "tested_at": "",
            })
        })
        .collect();
    assert_eq!(
        tests.len(),
        rows.len(),
        "the template lists the fixture's tests"
    );
    head["tests"] = Value::Array(tests);
    head
}

/// The form's field names for `values`, in the form's order
/// (`coi`, …, `test.0.code`, …, `test.{i}.tested_at`).
pub fn field_names(values: &Value) -> Vec<String> {
    let mut names: Vec<String> = [
        "coi",
        "specimen_id",
        "batch_id",
        "report_id",
        "analyst",
        "tested_at",
    ]
    .map(String::from)
    .to_vec();
    for i in 0..values["tests"].as_array().map_or(0, Vec::len) {
        for k in [
            "code",
            "name",
            "result",
            "unit",
            "specification",
            "pass_fail",
            "analyst",
            "tested_at",
        ] {
            names.push(format!("test.{i}.{k}"));
        }
    }
    names
}

/// The index of the template's test whose code or name mentions `what`.
pub fn test_index(what: &str) -> usize {
    template_tests()
        .iter()
        .position(|t| {
            format!("{} {}", t.code, t.name)
                .to_lowercase()
                .contains(what)
        })
        .unwrap_or_else(|| panic!("no template test like {what:?}"))
}

// --- HTTP ----------------------------------------------------------------

/// One exchange: what was asked and what the hub answered (headers with
/// lowercase names, the body as bytes). Its `Debug` is the exchange, for
/// assertion messages.
pub struct Reply {
    pub request: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (fails with the exchange).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}):\n{self:?}"))
    }

    /// Fails with the exchange unless the status is `status`; the JSON body.
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "expected {status}:\n{self:?}");
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// A problem body (RFC 9457) with `status`: the body.
    pub fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "expected {status}:\n{self:?}");
        let ct = self.header("content-type").unwrap_or_default();
        assert!(
            ct.starts_with("application/problem+json"),
            "a problem body (RFC 9457), not {ct:?}:\n{self:?}"
        );
        let p = self.json();
        assert_eq!(p["status"], status, "{self:?}");
        assert!(p["title"].is_string(), "a title: {self:?}");
        p
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "> {}", self.request)?;
        writeln!(f, "< {}", self.status)?;
        for (k, v) in &self.headers {
            writeln!(f, "< {k}: {v}")?;
        }
        let text = self.text();
        let cut: String = text.chars().take(2000).collect();
        write!(f, "<\n{cut}")
    }
}

/// A plain HTTP/1.1 request; the body is sent whole even when the hub
/// answers early (a 413), and whatever it answered is read.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let described = {
        let shown: Vec<String> = headers
            .iter()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("cookie") {
                    "…"
                } else {
                    v
                };
                format!("{k}: {v}")
            })
            .collect();
        let b = if body.len() > 600 || body.contains(&0) {
            format!("({} bytes)", body.len())
        } else {
            String::from_utf8_lossy(body).into_owned()
        };
        format!("{method} {path} [{}] {b}", shown.join("; "))
    };
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("{described}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        assert!(!raw.is_empty(), "{described}: {e}");
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{described}: no HTTP answer: {raw:?}"));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body);
    }
    Reply {
        request: described,
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = s.windows(2).position(|w| w == b"\r\n") {
        let len = String::from_utf8_lossy(&s[..eol]);
        let n = usize::from_str_radix(len.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        let rest = &s[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// `POST /pdf-entry/login`.
pub fn login(hub: &Hub, user: &str, password: &str) -> Reply {
    let body = json!({"user": user, "password": password}).to_string();
    request(
        hub.http,
        "POST",
        "/pdf-entry/login",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// A signed-in API session: the cookie and the CSRF token.
pub struct Api {
    pub addr: SocketAddr,
    pub user: User,
    /// `cgthub_portal=…`, as a `Cookie` header sends it.
    pub cookie: String,
    pub csrf: String,
    /// The login's answer.
    pub login: Value,
}

impl Api {
    /// Signs `user` in; fails unless the hub answers as the contract says.
    pub fn login(hub: &Hub, user: User) -> Api {
        let r = login(hub, user.login, user.password);
        let body = r.expect(200);
        let set = r
            .header("set-cookie")
            .unwrap_or_else(|| panic!("no Set-Cookie:\n{r:?}"));
        let cookie = set.split(';').next().unwrap().trim().to_string();
        assert!(
            cookie.starts_with(&format!("{COOKIE}=")) && cookie.len() > COOKIE.len() + 1,
            "{r:?}"
        );
        let attrs: Vec<String> = set
            .split(';')
            .skip(1)
            .map(|a| a.trim().to_ascii_lowercase())
            .collect();
        for a in ["httponly", "samesite=strict", "path=/"] {
            assert!(attrs.iter().any(|x| x == a), "cookie without {a}:\n{r:?}");
        }
        assert_eq!(body["user"], user.login, "{r:?}");
        let mut roles: Vec<&str> = body["roles"]
            .as_array()
            .unwrap_or_else(|| panic!("roles: {r:?}"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        roles.sort_unstable();
        let mut want = user.roles.to_vec();
        want.sort_unstable();
        assert_eq!(roles, want, "{r:?}");
        let csrf = body["csrf"].as_str().unwrap_or_default().to_string();
        assert!(
            !csrf.is_empty() && csrf.chars().all(|c| c.is_ascii_hexdigit()),
            "csrf is hex: {r:?}"
        );
        assert!(body["expires_at"].is_string(), "{r:?}");
        Api {
            addr: hub.http,
            user,
            cookie,
            csrf,
            login: body,
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, &[("Cookie", &self.cookie)], b"")
    }

    /// A POST with the cookie, the CSRF token and a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Reply {
        request(
            self.addr,
            "POST",
            path,
            &[
                ("Cookie", &self.cookie),
                (CSRF_HEADER, &self.csrf),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
    }

    /// `POST /pdf-entry/{partner}/documents` with `content_type`.
    pub fn upload_as(&self, partner: &str, content_type: &str, bytes: &[u8]) -> Reply {
        request(
            self.addr,
            "POST",
            &format!("/pdf-entry/{partner}/documents"),
            &[
                ("Cookie", &self.cookie),
                (CSRF_HEADER, &self.csrf),
                ("Content-Type", content_type),
            ],
            bytes,
        )
    }

    /// Uploads a PDF for `coa_lab`.
    pub fn upload(&self, bytes: &[u8]) -> Reply {
        self.upload_as(PARTNER, "application/pdf", bytes)
    }

    /// Uploads a new document: 201; the answer's body.
    pub fn upload_new(&self, bytes: &[u8]) -> Value {
        let r = self.upload(bytes);
        let body = r.expect(201);
        let id = &body["document"]["id"];
        assert_eq!(
            r.header("location"),
            Some(format!("/pdf-entry/documents/{}", plain(id)).as_str()),
            "{r:?}"
        );
        body
    }

    /// `GET /pdf-entry/documents/{id}`: 200, the Document.
    pub fn document(&self, id: &Value) -> Value {
        self.get(&format!("/pdf-entry/documents/{}", plain(id)))
            .expect(200)
    }

    pub fn enter(&self, id: &Value, values: &Value) -> Reply {
        self.post(&format!("/pdf-entry/documents/{}/entry", plain(id)), values)
    }

    /// The verification with the signature password `password`.
    pub fn verify_with(&self, id: &Value, values: &Value, password: &str) -> Reply {
        self.post(
            &format!("/pdf-entry/documents/{}/verification", plain(id)),
            &json!({"values": values, "password": password}),
        )
    }

    /// The verification, signed with this user's own password.
    pub fn verify(&self, id: &Value, values: &Value) -> Reply {
        self.verify_with(id, values, self.user.password)
    }

    /// The resolution, signed with this user's own password.
    pub fn resolve(&self, id: &Value, resolved: &Value) -> Reply {
        self.post(
            &format!("/pdf-entry/documents/{}/resolution", plain(id)),
            &json!({"resolved": resolved, "password": self.user.password}),
        )
    }

    /// `POST /pdf-entry/logout`.
    pub fn logout(&self) -> Reply {
        self.post("/pdf-entry/logout", &json!({}))
    }
}

/// A JSON id as it goes into a path (a number or a string, unquoted).
pub fn plain(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// --- what operators see ------------------------------------------------------

/// A `list --json` CLI command's lines (`dlq`, `holds`).
pub fn cli_lines(hub: &Hub, args: &[&str]) -> Vec<Value> {
    let out = hub.cli(args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cgthub {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Events in the results sink once everything routed has been delivered.
pub fn results(hub: &Hub) -> Vec<Value> {
    hub.wait_delivered();
    hub.sink("results")
}

/// The `qc.result_reported` events of the portal (connector `pdf_entry`).
pub fn entry_events(hub: &Hub) -> Vec<Value> {
    results(hub)
        .into_iter()
        .filter(|e| e["source"]["connector"] == "pdf_entry")
        .collect()
}

/// Checks `event` is the one the contract says a verified document makes.
pub fn assert_provenance(
    event: &Value,
    document: &Value,
    values: &Value,
    pdf_sha256: &str,
    (entered_by, verified_by, verification, step): (&str, &str, &str, &str),
) {
    let e = event;
    assert_eq!(e["kind"], "qc.result_reported", "{e:#}");
    assert_eq!(e["coi"], values["coi"], "the entered COI: {e:#}");
    let s = &e["source"];
    assert_eq!(s["connector"], "pdf_entry", "{e:#}");
    assert_eq!(s["partner"], PARTNER, "{e:#}");
    assert_eq!(
        s["message_id"],
        format!("pdf/{}/{step}", plain(&document["id"])),
        "{e:#}"
    );
    let payload = s["payload_sha256"].as_str().unwrap_or_default();
    assert!(
        payload.len() == 64 && payload.chars().all(|c| c.is_ascii_hexdigit()),
        "payload_sha256: {e:#}"
    );
    let m = &s["entry"];
    assert_eq!(m["method"], "manual", "{e:#}");
    assert_eq!(
        plain(&m["document_id"]),
        plain(&document["id"]),
        "document_id: {e:#}"
    );
    assert_eq!(m["document_sha256"], pdf_sha256, "{e:#}");
    assert_eq!(m["entered_by"], entered_by, "{e:#}");
    assert_eq!(m["verified_by"], verified_by, "{e:#}");
    assert_eq!(m["verification"], verification, "{e:#}");
    let at = m["verified_at"].as_str().unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(at).is_ok(),
        "verified_at is RFC 3339: {e:#}"
    );

    let got = e["data"]["results"]
        .as_array()
        .unwrap_or_else(|| panic!("data.results: {e:#}"));
    let want = values["tests"].as_array().unwrap();
    assert_eq!(got.len(), want.len(), "one result per test: {e:#}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g["test"]["code"], w["code"], "{e:#}");
        assert_eq!(g["value"], w["result"], "{e:#}");
        let unit = w["unit"].as_str().unwrap();
        if unit.is_empty() {
            assert!(
                g["unit"].is_null() || g["unit"] == "",
                "no unit for {}: {e:#}",
                w["code"]
            );
        } else {
            assert_eq!(g["unit"], unit, "{e:#}");
        }
        assert_eq!(g["passed"], w["pass_fail"] == "pass", "{e:#}");
    }
}
