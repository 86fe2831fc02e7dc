//! `[mllp]`: the HL7v2-over-MLLP listener.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The MLLP listener's settings. Every key has a safe default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MllpConfig {
    /// Whether to listen at all.
    pub enabled: bool,
    /// Listen address. Loopback by default: expose it on purpose.
    pub addr: SocketAddr,
    /// Most partner connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// Largest message accepted, in bytes (framing excluded). Larger ones are
    /// refused with `AR` and kept (first 4 KiB) with the reason.
    pub max_message_bytes: usize,
    /// A connection silent this long is closed.
    pub idle_timeout_secs: u64,
    /// Messages one connection may have in flight (pipelined) before the hub
    /// stops reading from it; ACKs still go back in order.
    pub max_in_flight: usize,
    /// Which MSH field names the partner: `sending_facility` (MSH-4.1,
    /// falling back to MSH-3.1) or `sending_application` (MSH-3.1).
    pub partner_from: PartnerFrom,
}

/// How the partner of an HL7 message is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartnerFrom {
    SendingFacility,
    SendingApplication,
}

impl Default for MllpConfig {
    fn default() -> Self {
        MllpConfig {
            enabled: true,
            addr: SocketAddr::from(([127, 0, 0, 1], 2575)),
            max_connections: 256,
            max_message_bytes: 1024 * 1024,
            idle_timeout_secs: 300,
            max_in_flight: 64,
            partner_from: PartnerFrom::SendingFacility,
        }
    }
}
