//! The PDF entry portal (`/portal`) in a real browser: headless Chromium
//! driven over WebDriver (chromedriver, started here on a free port and
//! stopped at the end). Erin signs in with the keyboard alone, uploads the
//! lab's certificate, finds the suggested values filled in, corrects what
//! she must and submits; Victor signs in, opens the document from the list,
//! sees none of Erin's values, keys them in himself and signs with his
//! password; the document is verified and its event carries both names.
//!
//! Each page is saved as a screenshot under `target/portal-screenshots/`.
//! Without chromedriver the test installs it first
//! (`scripts/install-chromium.sh`, Debian's `chromium` and `chromium-driver`).

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::panic::{resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use contract_tests::portal::{
    self, assert_provenance, entry_events, lot_a_values, plain, register_therapy, request,
    sha256_hex, template_tests, test_index, variant, Api, COI_A, ERIN, PARTNER, VICTOR,
};
use contract_tests::{repo, Hub};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use serde_json::{json, Value};

/// How long a page may take to show what the test waits for.
const PAGE: Duration = Duration::from_secs(15);

/// chromedriver, in a process group of its own with the browsers it starts;
/// the whole group is killed when dropped.
struct Chromedriver {
    child: Child,
    port: u16,
}

impl Chromedriver {
    fn start() -> Chromedriver {
        let exe = chromedriver();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&exe)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
        let driver = Chromedriver { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The group id is chromedriver's own pid (process_group(0)).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver's path, installing it when the machine has none.
fn chromedriver() -> PathBuf {
    let find = || {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain([PathBuf::from("/usr/bin")])
            .map(|d| d.join("chromedriver"))
            .find(|p| p.is_file())
    };
    if let Some(p) = find() {
        return p;
    }
    let status = Command::new("bash")
        .arg(repo().join("scripts/install-chromium.sh"))
        .status()
        .expect("run scripts/install-chromium.sh");
    assert!(status.success(), "scripts/install-chromium.sh failed");
    find().expect("chromedriver after scripts/install-chromium.sh")
}

async fn browser(driver: &Chromedriver) -> Client {
    let mut options = json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"],
    });
    if Path::new("/usr/bin/chromium").exists() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("goog:chromeOptions".into(), options);
    // chromedriver listens on loopback over plain HTTP: no TLS stack to pick.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session")
}

/// Screenshots, one per page, under `target/portal-screenshots/`.
struct Shots(PathBuf);

impl Shots {
    fn new() -> Shots {
        let dir = repo().join("target/portal-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot folder");
        Shots(dir)
    }

    /// The top of the page; where the PDF is beside the form, once
    /// Chromium's viewer has had time to draw it.
    async fn take(&self, c: &Client, name: &str) {
        c.execute("window.scrollTo(0, 0);", vec![]).await.unwrap();
        if !absent(c, "iframe#pdf").await {
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
        let png = c.screenshot().await.expect("a screenshot");
        std::fs::write(self.0.join(format!("{name}.png")), png).expect("write screenshot");
    }
}

/// Blocking harness calls (process, files) off the async workers.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

async fn find(c: &Client, css: &str) -> Element {
    match c.wait().at_most(PAGE).for_element(Locator::Css(css)).await {
        Ok(e) => e,
        Err(e) => panic!(
            "no {css} at {} ({e}):\n{}",
            url(c).await,
            c.source().await.unwrap_or_default()
        ),
    }
}

async fn absent(c: &Client, css: &str) -> bool {
    c.find_all(Locator::Css(css))
        .await
        .map(|v| v.is_empty())
        .unwrap_or(true)
}

async fn url(c: &Client) -> String {
    c.current_url()
        .await
        .map(|u| u.to_string())
        .unwrap_or_default()
}

async fn path(c: &Client) -> String {
    c.current_url()
        .await
        .map(|u| u.path().to_string())
        .unwrap_or_default()
}

/// Waits until the page's path satisfies `ok`.
async fn wait_path(c: &Client, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PAGE;
    loop {
        let p = path(c).await;
        if ok(&p) {
            return p;
        }
        assert!(Instant::now() < deadline, "never reached {what}; at {p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn value(c: &Client, css: &str) -> String {
    find(c, css)
        .await
        .prop("value")
        .await
        .expect("value")
        .unwrap_or_default()
}

async fn attr(c: &Client, css: &str, name: &str) -> Option<String> {
    find(c, css).await.attr(name).await.expect("attribute")
}

/// The document page's state (`#state[data-state]`), once it is `want`.
async fn wait_state(c: &Client, want: &str) {
    let css = format!("#state[data-state=\"{want}\"]");
    if c.wait()
        .at_most(PAGE)
        .for_element(Locator::Css(&css))
        .await
        .is_err()
    {
        let got = match c.find(Locator::Css("#state")).await {
            Ok(e) => e.attr("data-state").await.ok().flatten(),
            Err(_) => None,
        };
        panic!(
            "the document is not {want} (#state data-state {got:?}) at {}:\n{}",
            url(c).await,
            c.source().await.unwrap_or_default()
        );
    }
}

/// Keys pressed on whatever has the focus, as a keyboard does.
async fn press(c: &Client, keys: &str) {
    let mut a = KeyActions::new("keyboard".into());
    for k in keys.chars() {
        a = a
            .then(KeyAction::Down { value: k })
            .then(KeyAction::Up { value: k });
    }
    c.perform_actions(a).await.expect("key actions");
}

/// The id of the element with the focus.
async fn focused(c: &Client) -> String {
    match c.active_element().await {
        Ok(e) => e.attr("id").await.ok().flatten().unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Signs in with the keyboard alone: Tab to the user name, type, Tab to
/// the password, type, Enter.
async fn sign_in_by_keyboard(c: &Client, user: portal::User) {
    let mut tabs = 0;
    while focused(c).await != "username" {
        assert!(tabs < 20, "Tab never reaches #username on the login page");
        press(c, &Key::Tab).await;
        tabs += 1;
    }
    press(c, user.login).await;
    press(c, &Key::Tab).await;
    assert_eq!(
        focused(c).await,
        "password",
        "Tab from #username goes to #password"
    );
    press(c, user.password).await;
    // Tab order reaches the button; Enter in the password field submits.
    press(c, &Key::Tab).await;
    let mut tabs = 0;
    while focused(c).await != "sign-in" {
        assert!(tabs < 5, "Tab from #password never reaches #sign-in");
        press(c, &Key::Tab).await;
        tabs += 1;
    }
    press(c, &Key::Enter).await;
}

async fn sign_in_by_mouse(c: &Client, user: &str, password: &str) {
    let u = find(c, "#username").await;
    u.clear().await.unwrap();
    u.send_keys(user).await.unwrap();
    let p = find(c, "#password").await;
    p.clear().await.unwrap();
    p.send_keys(password).await.unwrap();
    find(c, "#sign-in").await.click().await.unwrap();
}

/// The POST forms on the page without the hidden `_csrf`, as
/// `page: form`. Gathered through the walk and checked at its end, so
/// that one missing field does not hide what the rest of the walk finds.
async fn forms_without_csrf(c: &Client, page: &str) -> Vec<String> {
    let bare = c
        .execute(
            r#"return [...document.querySelectorAll('form')]
                 .filter(f => (f.getAttribute('method') || '').toLowerCase() === 'post')
                 .filter(f => !f.querySelector('input[type=hidden][name=_csrf]'))
                 .map(f => '#' + (f.id || f.getAttribute('action')));"#,
            vec![],
        )
        .await
        .unwrap();
    bare.as_array()
        .into_iter()
        .flatten()
        .map(|f| format!("{page}: {}", f.as_str().unwrap_or("?")))
        .collect()
}

/// The state section (`#state-…` heading) the list row `row` is under.
async fn section_of(c: &Client, row: &str) -> String {
    c.execute(
        r#"const row = document.querySelector(arguments[0]);
           if (!row) return 'no row';
           let under = 'none';
           for (const s of ['awaiting_entry', 'awaiting_verification', 'mismatch', 'failed', 'verified']) {
             const h = document.getElementById('state-' + s);
             if (h && (h.compareDocumentPosition(row) & Node.DOCUMENT_POSITION_FOLLOWING)) {
               if (under === 'none' || (document.getElementById(under).compareDocumentPosition(h) & Node.DOCUMENT_POSITION_FOLLOWING)) under = 'state-' + s;
             }
           }
           return under;"#,
        vec![json!(row)],
    )
    .await
    .unwrap()
    .as_str()
    .unwrap_or_default()
    .to_string()
}

/// One input of the entry form.
struct Field {
    /// Its element id: the name as the contract spells it, `f-` before
    /// and '.' as '-' (`test.0.result` → `f-test-0-result`).
    id: String,
    /// What a person keys in.
    want: String,
    /// What the template fills in before anyone types, if anything.
    constant: Option<String>,
}

/// The form's inputs for `values`.
fn fields(values: &Value) -> Vec<Field> {
    let mut out = Vec::new();
    for k in [
        "coi",
        "specimen_id",
        "batch_id",
        "report_id",
        "analyst",
        "tested_at",
    ] {
        out.push(Field {
            id: format!("f-{k}"),
            want: values[k].as_str().unwrap().to_string(),
            constant: None,
        });
    }
    let template = template_tests();
    for (i, t) in values["tests"].as_array().unwrap().iter().enumerate() {
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
            let constant = match k {
                "code" => Some(template[i].code.clone()),
                "name" => Some(template[i].name.clone()),
                "unit" => Some(template[i].unit.clone()),
                "specification" => Some(template[i].specification.clone()),
                _ => None,
            };
            out.push(Field {
                id: format!("f-test-{i}-{k}"),
                want: t[k].as_str().unwrap().to_string(),
                constant: constant.filter(|c| !c.is_empty()),
            });
        }
    }
    out
}

/// Types `want` into `#id` unless it holds it already; a `<select>` is set
/// to the option; a read-only input must already hold it.
async fn fill(c: &Client, id: &str, want: &str) {
    let css = format!("#{id}");
    let e = find(c, &css).await;
    let tag = e.tag_name().await.unwrap().to_lowercase();
    if tag == "select" {
        e.select_by_value(want)
            .await
            .unwrap_or_else(|err| panic!("{css}: no option {want:?}: {err}"));
        return;
    }
    let have = e.prop("value").await.unwrap().unwrap_or_default();
    if have == want {
        return;
    }
    let readonly = e.attr("readonly").await.unwrap().is_some();
    assert!(!readonly, "{css} is read-only with {have:?}, not {want:?}");
    let kind = e.attr("type").await.unwrap().unwrap_or_default();
    if kind == "date" {
        // A date input takes keys in the browser's locale order; set it
        // as a script would, then tell the page it changed.
        c.execute(
            "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input', {bubbles: true})); arguments[0].dispatchEvent(new Event('change', {bubbles: true}));",
            vec![serde_json::to_value(&e).unwrap(), json!(want)],
        )
        .await
        .unwrap();
    } else {
        e.clear().await.unwrap();
        e.send_keys(want).await.unwrap();
    }
    let now = e.prop("value").await.unwrap().unwrap_or_default();
    assert_eq!(now, want, "{css} after typing");
}

async fn fill_all(c: &Client, values: &Value, except: &str) {
    for f in fields(values) {
        if f.id != except {
            fill(c, &f.id, &f.want).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_keyed_in_verified_blind_and_signed_in_the_browser() {
    let hub = blocking(|| {
        let hub = portal::start(&[ERIN, VICTOR]);
        register_therapy(&hub, COI_A, 1);
        hub
    });

    // Before any browser: a portal page without a session redirects.
    let r = blocking(|| request(hub.http, "GET", "/portal", &[], b""));
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/portal/login"), "{r:?}");

    let driver = blocking(Chromedriver::start);
    let c = browser(&driver).await;
    let outcome = AssertUnwindSafe(walk(&c, &hub)).catch_unwind().await;
    let _ = c.close().await;
    drop(driver);
    if let Err(panic) = outcome {
        resume_unwind(panic);
    }
}

async fn walk(c: &Client, hub: &Hub) {
    let base = format!("http://{}", hub.http);
    let shots = Shots::new();
    let values = lot_a_values();
    let mut bare = Vec::new();
    let lot_a = repo().join("mappings/pdf/fixtures/coa_lab_lot_A.pdf");

    // Erin: the portal sends her to sign in; she does, with the keyboard.
    c.goto(&format!("{base}/portal")).await.unwrap();
    wait_path(c, "/portal/login", |p| p == "/portal/login").await;
    find(c, "form#login").await;
    bare.extend(forms_without_csrf(c, "login").await);
    shots.take(c, "login").await;
    sign_in_by_keyboard(c, ERIN).await;
    wait_path(c, "/portal", |p| p == "/portal").await;
    let who = find(c, "#whoami").await.text().await.unwrap();
    assert!(who.contains(ERIN.display_name), "#whoami says {who:?}");

    // She uploads the certificate and lands on its page.
    find(c, "select#partner")
        .await
        .select_by_value(PARTNER)
        .await
        .unwrap();
    find(c, "input#file[type=file]")
        .await
        .send_keys(lot_a.to_str().unwrap())
        .await
        .unwrap();
    find(c, "#upload-button").await.click().await.unwrap();
    let page = wait_path(c, "the document page", |p| {
        p.starts_with("/portal/documents/")
    })
    .await;
    let id = page.trim_start_matches("/portal/documents/").to_string();
    assert!(id.parse::<i64>().is_ok(), "the document's page is {page}");
    wait_state(c, "awaiting_entry").await;
    assert_eq!(
        attr(c, "iframe#pdf", "src").await.as_deref(),
        Some(format!("/portal/documents/{id}/pdf").as_str())
    );

    // What the template read off the PDF is there, marked as suggested.
    assert_eq!(value(c, "#f-coi").await, COI_A);
    assert_eq!(
        attr(c, "#f-coi", "data-suggested").await.as_deref(),
        Some("true"),
        "the COI is marked as a suggestion"
    );
    let note = c
        .execute(
            r#"const input = document.getElementById('f-coi');
               const ids = (input.getAttribute('aria-describedby') || '').split(/\s+/);
               const described = ids.map(id => document.getElementById(id)).filter(e => e);
               const near = [...described, input.parentElement];
               return near.map(e => e.innerText || '').join(' | ');"#,
            vec![],
        )
        .await
        .unwrap();
    assert!(
        note.as_str()
            .is_some_and(|t| t.to_lowercase().contains("suggest")),
        "no visible note beside the suggested COI: {note}"
    );
    bare.extend(forms_without_csrf(c, "entry").await);
    let options = c
        .execute(
            "return [...document.querySelectorAll('select#f-test-0-pass_fail option')].map(o => o.value);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(options, json!(["", "pass", "fail"]), "pass_fail's options");
    // The PDF beside the form is served to the signed-in browser.
    let served = c
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               fetch(document.getElementById('pdf').src)
                 .then(r => done([r.status, r.headers.get('content-type')]))
                 .catch(e => done(['failed', String(e)]));"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(served[0], 200, "the iframe's PDF: {served}");
    assert!(
        served[1]
            .as_str()
            .is_some_and(|t| t.starts_with("application/pdf")),
        "the iframe's PDF: {served}"
    );
    shots.take(c, "entry").await;

    // An impossible date: the page again, with 422 (as a script sees
    // it) and the error linked to its field (as a person does).
    let status = c
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               const f = document.getElementById('entry-form');
               const d = new URLSearchParams(new FormData(f));
               d.set('tested_at', '2026-11-31');
               fetch(f.action, {method: 'POST', body: d, redirect: 'manual'})
                 .then(r => done(r.status)).catch(e => done(String(e)));"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, 422, "a refused entry's status");
    fill_all(c, &values, "f-tested_at").await;
    fill(c, "f-tested_at", "2026-11-31").await;
    find(c, "#submit-entry").await.click().await.unwrap();
    find(c, "#error-summary a[href=\"#f-tested_at\"]").await;
    assert_eq!(
        attr(c, "#f-tested_at", "aria-invalid").await.as_deref(),
        Some("true")
    );
    wait_state(c, "awaiting_entry").await;
    assert_eq!(value(c, "#f-coi").await, COI_A, "what she typed is kept");
    shots.take(c, "entry-error").await;

    fill_all(c, &values, "").await;
    find(c, "#submit-entry").await.click().await.unwrap();
    wait_state(c, "awaiting_verification").await;
    // Hers to enter, someone else's to verify.
    assert!(
        absent(c, "#verify-form").await,
        "the enterer is offered the verification"
    );
    assert!(absent(c, "#entry-form").await);
    let text = find(c, "body").await.text().await.unwrap();
    assert!(
        text.contains("someone else"),
        "no note that someone else must verify:\n{text}"
    );

    find(c, "#sign-out").await.click().await.unwrap();
    let deadline = Instant::now() + PAGE;
    while !absent(c, "#sign-out").await {
        assert!(Instant::now() < deadline, "still signed in after #sign-out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.goto(&format!("{base}/portal")).await.unwrap();
    wait_path(c, "/portal/login", |p| p == "/portal/login").await;

    // Victor: a wrong password is refused on the page, with 401.
    let status = c
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               const f = document.getElementById('login');
               const d = new URLSearchParams(new FormData(f));
               d.set('user', arguments[0]);
               d.set('password', 'not the password');
               fetch(f.action, {method: 'POST', body: d, redirect: 'manual'})
                 .then(r => done(r.status)).catch(e => done(String(e)));"#,
            vec![json!(VICTOR.login)],
        )
        .await
        .unwrap();
    assert_eq!(status, 401, "a refused sign-in's status");
    sign_in_by_mouse(c, VICTOR.login, "not victor's password").await;
    let err = find(c, "#error").await.text().await.unwrap();
    assert!(!err.trim().is_empty(), "#error says why");
    sign_in_by_mouse(c, VICTOR.login, VICTOR.password).await;
    wait_path(c, "/portal", |p| p == "/portal").await;
    let who = find(c, "#whoami").await.text().await.unwrap();
    assert!(who.contains(VICTOR.display_name), "#whoami says {who:?}");
    assert!(
        absent(c, "#upload-button").await,
        "a verifier is offered the upload"
    );

    // The document is listed under "Awaiting verification".
    let row =
        format!("#documents tr[data-document=\"{id}\"][data-state=\"awaiting_verification\"]");
    find(c, &row).await;
    assert_eq!(section_of(c, &row).await, "state-awaiting_verification");
    assert_eq!(
        attr(c, &format!("{row} a.open"), "href").await.as_deref(),
        Some(page.as_str()),
        "the row's link"
    );
    bare.extend(forms_without_csrf(c, "list").await);
    shots.take(c, "list").await;
    find(c, &format!("{row} a.open"))
        .await
        .click()
        .await
        .unwrap();
    wait_path(c, "the document page", |p| p == page).await;
    wait_state(c, "awaiting_verification").await;
    find(c, "#verify-form").await;

    // Blind: nothing of Erin's entry on the page, only the template's constants.
    for f in fields(&values) {
        let css = format!("#verify-form #{}", f.id);
        let shown = f.constant.unwrap_or_default();
        assert_eq!(
            value(c, &css).await,
            shown,
            "{css} holds what the template says, no more"
        );
        assert_eq!(
            attr(c, &css, "data-suggested").await,
            None,
            "{css} is suggested"
        );
    }
    let source = c.source().await.unwrap();
    for key in ["coi", "specimen_id", "batch_id", "report_id", "analyst"] {
        let v = values[key].as_str().unwrap();
        assert!(
            !source.contains(v),
            "the verification page shows {key} {v:?}"
        );
    }
    let note = find(c, "#verify-form").await.text().await.unwrap();
    assert!(
        note.to_lowercase().contains("verified"),
        "the form says what signing means: {note:?}"
    );
    bare.extend(forms_without_csrf(c, "verification").await);

    // He keys the certificate in and signs.
    fill_all(c, &values, "").await;
    find(c, "#signature-password")
        .await
        .send_keys(VICTOR.password)
        .await
        .unwrap();
    shots.take(c, "verification").await;
    find(c, "#submit-verification").await.click().await.unwrap();
    wait_state(c, "verified").await;
    let by = find(c, "#verified-by").await.text().await.unwrap();
    assert!(
        by.contains(VICTOR.display_name) || by.contains(VICTOR.login),
        "#verified-by says {by:?}"
    );
    let source = c.source().await.unwrap();
    assert!(
        source.contains(COI_A) && source.contains("87.5"),
        "the values are shown once verified"
    );
    shots.take(c, "verified").await;

    // The event, with who entered and who signed.
    let events = blocking(|| entry_events(hub));
    assert_eq!(events.len(), 1, "{events:#?}");
    let pdf_sha = sha256_hex(&std::fs::read(&lot_a).unwrap());
    assert_provenance(
        &events[0],
        &json!({ "id": id }),
        &values,
        &pdf_sha,
        ("erin", "victor", "double_entry", "verification"),
    );

    // A mismatch (keyed in through the API), resolved on its page.
    let vi = test_index("viab");
    let copy = variant(&std::fs::read(&lot_a).unwrap(), 1);
    let other = blocking(|| {
        let erin = Api::login(hub, ERIN);
        let victor = Api::login(hub, VICTOR);
        let id = erin.upload_new(&copy)["document"]["id"].clone();
        erin.enter(&id, &values).expect(200);
        let mut second = values.clone();
        second["tests"][vi]["result"] = json!("78.5");
        let r = victor.verify(&id, &second);
        assert_eq!(r.expect(200)["document"]["state"], "mismatch", "{r:?}");
        plain(&id)
    });
    c.goto(&format!("{base}/portal")).await.unwrap();
    let row = format!("#documents tr[data-document=\"{other}\"][data-state=\"mismatch\"]");
    find(c, &row).await;
    assert_eq!(section_of(c, &row).await, "state-mismatch");
    find(c, &format!("{row} a.open"))
        .await
        .click()
        .await
        .unwrap();
    wait_state(c, "mismatch").await;
    let form = find(c, "#resolve-form").await.text().await.unwrap();
    assert!(
        form.contains("87.5") && form.contains("78.5"),
        "both entries shown: {form}"
    );
    bare.extend(forms_without_csrf(c, "resolution").await);
    let suffix = format!("test-{vi}-result");
    assert_eq!(
        attr(c, &format!("#r-{suffix}"), "name").await.as_deref(),
        Some(format!("value.test.{vi}.result").as_str())
    );
    assert_eq!(
        attr(c, &format!("#why-{suffix}"), "name").await.as_deref(),
        Some(format!("reason.test.{vi}.result").as_str())
    );
    fill(c, &format!("r-{suffix}"), "87.5").await;
    fill(
        c,
        &format!("why-{suffix}"),
        "78.5 was read off the CD3 line",
    )
    .await;
    find(c, "#signature-password")
        .await
        .send_keys(VICTOR.password)
        .await
        .unwrap();
    shots.take(c, "resolution").await;
    find(c, "#submit-resolution").await.click().await.unwrap();
    wait_state(c, "verified").await;
    let events = blocking(|| entry_events(hub));
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_provenance(
        &events[1],
        &json!({ "id": other }),
        &values,
        &sha256_hex(&copy),
        ("erin", "victor", "resolved", "resolution"),
    );

    assert!(
        bare.is_empty(),
        "POST forms without the hidden _csrf field: {bare:?}"
    );
}
