//! Test harness: runs the real `cgthub` binary on free loopback ports with
//! its own data folder, and talks to it as partners and operators do (MLLP,
//! HTTP, the CLI). Nothing here is mocked.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod courier;
pub mod load;
pub mod pg;
pub mod portal;
pub mod proxy;
pub mod rabbit;

pub const SB: u8 = 0x0B;
pub const EB: &[u8] = &[0x1C, 0x0D];

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// A fixture under `contract-tests/fixtures/`.
pub fn fixture(rel: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// The `cgthub` binary cargo built beside this test. `cargo test
/// --workspace` builds it (the root package has integration tests); with
/// `-p contract-tests` alone, build it first (`cargo build --bin cgthub`) or
/// set `CGTHUB_BIN`.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CGTHUB_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join(format!("cgthub{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--bin", "cgthub"])
            .current_dir(repo())
            .status()
            .expect("cargo build");
        assert!(status.success(), "building cgthub failed");
    }
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A running hub with its own folder.
pub struct Hub {
    pub dir: tempfile::TempDir,
    pub http: SocketAddr,
    pub mllp: SocketAddr,
    pub config: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

/// What a test changes from the defaults.
#[derive(Default)]
pub struct Setup<'a> {
    /// `CGTHUB__…` overrides.
    pub env: &'a [(&'a str, &'a str)],
    /// Route file text, written to the hub's own `routes/default.toml`
    /// (default: the repository's `routes/`).
    pub routes: Option<&'a str>,
    /// Path of the results sink (default: `out/results.jsonl` in the folder).
    pub results_sink: Option<&'a str>,
    /// Config text appended to the generated file (more sinks, `[amqp]`).
    pub config_extra: Option<&'a str>,
    /// The `[store]` section's keys (default: a SQLite file in the folder),
    /// e.g. a PostgreSQL `url` with `claim_lease_ms`.
    pub store: Option<&'a str>,
    /// The `[identity]` section's keys. Default: `on_unknown = "route"`,
    /// for tests of transport and intake, whose corpus messages name no
    /// registered therapy; identity tests state their own (the hub's
    /// default is to hold such events).
    pub identity: Option<&'a str>,
}

impl Hub {
    /// Starts a hub on the repository's routes and mappings; `env` adds
    /// `CGTHUB__…` overrides.
    pub fn start(env: &[(&str, &str)]) -> Hub {
        Hub::start_with(Setup {
            env,
            ..Setup::default()
        })
    }

    /// Starts a hub with its own routes or sinks.
    pub fn start_with(setup: Setup) -> Hub {
        let env = setup.env;
        let dir = tempfile::tempdir().expect("tempdir");
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mllp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let d = dir.path().display();
        let r = repo();
        let routes = match setup.routes {
            Some(text) => {
                let routes = dir.path().join("routes");
                std::fs::create_dir_all(&routes).expect("routes dir");
                std::fs::write(routes.join("default.toml"), text).expect("routes");
                routes
            }
            None => r.join("routes"),
        };
        let results = setup
            .results_sink
            .map_or_else(|| format!("{d}/out/results.jsonl"), str::to_string);
        let store = setup.store.map_or_else(
            || format!("url = \"sqlite://{d}/data/cgthub.db\""),
            str::to_string,
        );
        let config = dir.path().join("cgthub.toml");
        std::fs::write(
            &config,
            format!(
                r#"data_dir = "{d}/data"
[http]
addr = "{http}"
[mllp]
addr = "{mllp}"
[store]
{store}
[paths]
routes = "{routes}"
mappings = "{mappings}"
reload_interval_secs = 1
[sinks.orders_file]
type = "jsonl"
path = "{d}/out/orders.jsonl"
[sinks.results_file]
type = "jsonl"
path = "{results}"
[sinks.patients_file]
type = "jsonl"
path = "{d}/out/patients.jsonl"
[sinks.alerts_file]
type = "jsonl"
path = "{d}/out/alerts.jsonl"
[sinks.therapy_file]
type = "jsonl"
path = "{d}/out/therapy.jsonl"
[sinks.coldchain]
type = "coldchain"
[identity]
{identity}
{extra}
"#,
                routes = routes.display(),
                mappings = r.join("mappings").display(),
                extra = setup.config_extra.unwrap_or_default(),
                identity = setup.identity.unwrap_or("on_unknown = \"route\""),
            ),
        )
        .expect("write config");
        let mut hub = Hub {
            dir,
            http,
            mllp,
            config,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        };
        hub.restart();
        hub
    }

    /// (Re)starts the process on the same folder and ports.
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("hub.log"))
            .expect("log file");
        let mut cmd = Command::new(binary());
        cmd.args(["serve", "--config"])
            .arg(&self.config)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn cgthub"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = http_get(self.http, "/healthz") {
                if TcpStream::connect(self.mllp).is_ok() {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("cgthub exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "cgthub did not become ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hub.log")).unwrap_or_default()
    }

    /// Writes a route file into the hub's own routes folder (see [`Setup::routes`]).
    pub fn write_routes(&self, text: &str) {
        std::fs::write(self.dir.path().join("routes/default.toml"), text).expect("routes");
    }

    /// Waits until `cond` holds, or fails with the hub's log.
    pub fn wait_for(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Events delivered to a JSONL sink (`orders`, `results`, `patients`).
    pub fn sink(&self, name: &str) -> Vec<serde_json::Value> {
        let p = self.dir.path().join("out").join(format!("{name}.jsonl"));
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("sink line is JSON"))
            .collect()
    }

    /// Waits until the outbox is empty (every routed event delivered).
    pub fn wait_delivered(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, body)) = http_get(self.http, "/healthz") {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                if v["outbox_pending"] == 0 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "outbox did not drain:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a `cgthub` subcommand against this hub's config.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(binary())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .current_dir(self.dir.path())
            .output()
            .expect("run cgthub")
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = http_get(self.http, path).expect("GET");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("JSON body")
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain HTTP/1.1 GET: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// What [`http_request`] returns: status, headers (lowercase names), body.
pub type HttpAnswer = (u16, Vec<(String, String)>, String);

/// A plain HTTP/1.1 request with headers and a body: (status, headers with
/// lowercase names, body). The body is sent whole even when the server
/// answers early (a 413 closes the connection): what it answered is read
/// all the same.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpAnswer> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes())?;
    // The server may answer and close before reading it all.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        if raw.is_empty() {
            return Err(e);
        }
    }
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let status = raw.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, headers, body))
}

/// An MLLP partner connection.
pub struct Partner {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Partner {
    pub fn connect(addr: SocketAddr) -> Partner {
        let stream = TcpStream::connect(addr).expect("connect MLLP");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Partner {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(payload.len() + 3);
        f.push(SB);
        f.extend_from_slice(payload);
        f.extend_from_slice(EB);
        f
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends one framed message and reads its ACK.
    pub fn send(&mut self, payload: &[u8]) -> Ack {
        self.send_raw(&Self::frame(payload));
        self.read_ack().expect("an ACK")
    }

    /// The next ACK, or `None` when the connection closed, broke or timed out.
    pub fn read_ack(&mut self) -> Option<Ack> {
        loop {
            if let Some(start) = self.buf.iter().position(|&b| b == SB) {
                if let Some(end) = self.buf[start..].windows(2).position(|w| w == EB) {
                    let payload = self.buf[start + 1..start + end].to_vec();
                    self.buf.drain(..start + end + 2);
                    return Some(Ack(String::from_utf8_lossy(&payload).into_owned()));
                }
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
        }
    }
}

/// An ACK message, with accessors for what a partner checks.
#[derive(Debug, Clone)]
pub struct Ack(pub String);

impl Ack {
    pub fn segment(&self, name: &str) -> Option<Vec<String>> {
        self.0
            .split('\r')
            .find(|s| s.starts_with(name))
            .map(|s| s.split('|').map(str::to_string).collect())
    }

    /// MSA-1: AA, AE or AR.
    pub fn code(&self) -> String {
        self.segment("MSA")
            .and_then(|f| f.get(1).cloned())
            .unwrap_or_default()
    }

    /// MSA-2: the acknowledged message's MSH-10.
    pub fn acked_id(&self) -> String {
        self.segment("MSA")
            .and_then(|f| f.get(2).cloned())
            .unwrap_or_default()
    }

    /// The ERR segment, whole.
    pub fn err(&self) -> String {
        self.segment("ERR").map(|f| f.join("|")).unwrap_or_default()
    }
}

/// Replaces MSH-10 of an ER7 message (the 9th field separator onwards).
pub fn with_control_id(msg: &str, id: &str) -> String {
    let idx: Vec<usize> = msg.match_indices('|').map(|(i, _)| i).take(10).collect();
    format!("{}{}{}", &msg[..=idx[8]], id, &msg[idx[9]..])
}
