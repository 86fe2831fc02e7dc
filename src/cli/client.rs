//! The running hub's operator API, over HTTP/1.1 (plain: the hub listens on
//! `http.addr`, normally loopback).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// How long to wait for the hub to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a replay or purge of many dead letters may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Where the hub's HTTP API is: `http.addr`, with a wildcard address
/// (`0.0.0.0`) reached on loopback.
pub fn hub_addr(configured: SocketAddr) -> SocketAddr {
    let mut addr = configured;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            Ipv4Addr::LOCALHOST.into()
        } else {
            Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}

/// POSTs `body` as JSON to `path`; returns the status and the JSON answer.
/// An unreachable hub is an error that says so.
pub async fn post_json(addr: SocketAddr, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    call(addr, path, Some(body)).await
}

/// GETs `path`; returns the status and the JSON answer.
pub async fn get_json(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, Value)> {
    call(addr, path, None).await
}

async fn call(addr: SocketAddr, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
    let unreachable = || {
        format!("cannot reach the hub at http://{addr} (http.addr): is `cgthub serve` running with this config?")
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow!("timed out after {CONNECT_TIMEOUT:?}"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(unreachable)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(unreachable)?;
    let driver = tokio::spawn(conn);
    let req = match body {
        Some(b) => Request::post(path)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(b.to_string()))),
        None => Request::get(path).body(Full::new(Bytes::new())),
    };
    let mut req = req.context("building the request")?;
    req.headers_mut()
        .insert(HOST, addr.to_string().parse().context("host header")?);
    let answer = async {
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, answer)
        .await
        .map_err(|_| anyhow!("the hub at {addr} did not answer within {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("the hub at {addr} broke off the request"))?;
    driver.abort();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok((status, value))
}

/// Who runs this command, for the audit log: `$USER@host`.
pub fn actor() -> String {
    let user = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(whoami::username);
    let host = whoami::fallible::hostname().unwrap_or_else(|_| "localhost".into());
    format!("{}@{host}", user.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_address_is_reached_on_loopback() {
        let a: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(hub_addr(a), "127.0.0.1:8080".parse().unwrap());
        let b: SocketAddr = "10.1.2.3:80".parse().unwrap();
        assert_eq!(hub_addr(b), b);
        assert!(actor().contains('@'));
    }

    #[tokio::test]
    async fn an_unreachable_hub_is_named() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        let err = post_json(addr, "/api/dead-letters/replay", &Value::Null)
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot reach the hub"),
            "{err:#}"
        );
    }
}
