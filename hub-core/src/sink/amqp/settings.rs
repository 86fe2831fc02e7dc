//! The `[amqp]` configuration section, and a URL that is safe to log.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::error::AmqpError;

/// How the hub talks to RabbitMQ (`[amqp]`). Every key has a default, so an
/// empty section connects to a local broker as `guest`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpSettings {
    /// The broker: `amqp://user:password@host:port/vhost` (the vhost
    /// URL-encoded: `%2f` is `/`), or `amqps://…` for TLS (rustls, the
    /// system's trusted roots). Query options such as `?heartbeat=10` are
    /// passed on. The password is never logged.
    pub url: String,
    /// The topic exchange events are published to, routing key from the
    /// route's template. Declared durable at start.
    pub exchange: String,
    /// The topic exchange the route queues dead-letter to (refused, expired,
    /// over their delivery limit). Declared durable at start.
    pub dead_letter_exchange: String,
    /// The durable quorum queue bound to `dead_letter_exchange` with `#`;
    /// the hub drains it into its dead letters.
    pub dead_letter_queue: String,
    /// Publishes awaiting the broker's confirm at once, per sink. More keeps
    /// the link busy (about 19k msg/s at 1000 against 2k/s one at a time).
    pub max_in_flight: usize,
    /// How long to wait for the broker's confirm of one publish before its
    /// outcome counts as unknown (the event is sent again; consumers drop
    /// the duplicate by `message_id`).
    pub confirm_timeout_ms: u64,
    /// How long to wait for a TCP (and TLS) connection and the AMQP
    /// handshake before the attempt counts as failed.
    pub connect_timeout_ms: u64,
    /// The first pause before reconnecting after the broker was lost; it
    /// doubles (with jitter) up to `reconnect_max_ms`.
    pub reconnect_initial_ms: u64,
    /// The longest pause between reconnection attempts.
    pub reconnect_max_ms: u64,
    /// The client-provided connection name, shown by `rabbitmqctl
    /// list_connections client_properties` and the management UI. The
    /// dead-queue drain's connection adds ` (dead-queue drain)` to it.
    pub connection_name: String,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        AmqpSettings {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            exchange: "cgt.events".into(),
            dead_letter_exchange: "cgt.dlx".into(),
            dead_letter_queue: "cgt.dead".into(),
            max_in_flight: 1000,
            confirm_timeout_ms: 10_000,
            connect_timeout_ms: 10_000,
            reconnect_initial_ms: 200,
            reconnect_max_ms: 10_000,
            connection_name: "cgthub".into(),
        }
    }
}

/// AMQP short strings (names, routing keys) hold at most this many bytes.
pub(crate) const MAX_NAME_BYTES: usize = 255;

impl AmqpSettings {
    /// Checks what can be checked without a broker: the URL parses, names
    /// fit AMQP's limits, numbers are usable.
    pub fn validate(&self) -> Result<(), AmqpError> {
        let invalid = |reason: String| Err(AmqpError::InvalidSettings(reason));
        self.amqp_uri()?;
        for (key, value) in [
            ("amqp.exchange", &self.exchange),
            ("amqp.dead_letter_exchange", &self.dead_letter_exchange),
            ("amqp.dead_letter_queue", &self.dead_letter_queue),
        ] {
            if value.is_empty() || value.len() > MAX_NAME_BYTES {
                return invalid(format!("{key} must be 1 to {MAX_NAME_BYTES} bytes"));
            }
        }
        if self.exchange == self.dead_letter_exchange {
            return invalid("amqp.exchange and amqp.dead_letter_exchange must differ".into());
        }
        if self.max_in_flight == 0 {
            return invalid("amqp.max_in_flight must be at least 1".into());
        }
        if self.confirm_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return invalid("amqp timeouts must be above 0".into());
        }
        if self.reconnect_initial_ms == 0 || self.reconnect_max_ms < self.reconnect_initial_ms {
            return invalid(
                "amqp.reconnect_initial_ms must be above 0 and at most reconnect_max_ms".into(),
            );
        }
        Ok(())
    }

    /// The URL with its password replaced, for logs and errors.
    pub fn redacted_url(&self) -> RedactedUrl<'_> {
        RedactedUrl(&self.url)
    }

    /// The parsed URL. `lapin`'s parser (amq-protocol-uri 10.6) keeps only
    /// a *domain* host and silently turns an IP address (`10.1.2.3`,
    /// `[::1]`) into `localhost`; the host is therefore taken from the text.
    pub(crate) fn amqp_uri(&self) -> Result<lapin::uri::AMQPUri, AmqpError> {
        let mut uri = self.url.parse::<lapin::uri::AMQPUri>().map_err(|e| {
            AmqpError::InvalidSettings(format!(
                "amqp.url {} does not parse: {e}",
                self.redacted_url()
            ))
        })?;
        if let Some(ip) = ip_host(&self.url) {
            uri.authority.host = ip.to_string();
        }
        Ok(uri)
    }

    pub(crate) fn confirm_timeout(&self) -> Duration {
        Duration::from_millis(self.confirm_timeout_ms)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

/// Displays a URL with the password of its user info replaced by `***`:
/// `amqp://hub:***@rabbit:5672/%2f`. Anything that does not look like
/// `scheme://user:password@host…` is shown as it is.
#[derive(Clone, Copy)]
pub struct RedactedUrl<'a>(pub &'a str);

/// `(index where the authority starts, the authority)` of `scheme://authority/…`.
fn authority(url: &str) -> Option<(usize, &str)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    // The authority ends at the first '/', '?' or '#'.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some((start, &rest[..end]))
}

/// The host of a URL when it is an IP address literal, without brackets.
fn ip_host(url: &str) -> Option<std::net::IpAddr> {
    let (_, authority) = authority(url)?;
    let host_port = authority
        .rfind('@')
        .map_or(authority, |at| &authority[at + 1..]);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => &v6[..v6.find(']')?],
        None => host_port.split(':').next()?,
    };
    host.parse().ok()
}

impl fmt::Display for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0;
        let Some((scheme_end, authority)) = authority(url) else {
            return f.write_str(url);
        };
        let rest = &url[scheme_end..];
        // User info is what comes before the authority's last '@'.
        let Some(at) = authority.rfind('@') else {
            return f.write_str(url);
        };
        let userinfo = &authority[..at];
        match userinfo.find(':') {
            Some(colon) => write!(
                f,
                "{}{}:***{}",
                &url[..scheme_end],
                &userinfo[..colon],
                &rest[at..]
            ),
            None => f.write_str(url),
        }
    }
}

impl fmt::Debug for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows() {
        let cases = [
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "amqp://guest:***@127.0.0.1:5672/%2f",
            ),
            (
                "amqps://hub:s3cr%40t:x@rabbit.example:5671/prod?heartbeat=10",
                "amqps://hub:***@rabbit.example:5671/prod?heartbeat=10",
            ),
            ("amqp://p@ss@host/", "amqp://p@ss@host/"),
            ("amqp://user:p@ss@host/", "amqp://user:***@host/"),
            ("amqp://host:5672/%2f", "amqp://host:5672/%2f"),
            ("amqp://host/a@b", "amqp://host/a@b"),
            ("not a url", "not a url"),
        ];
        for (url, shown) in cases {
            assert_eq!(RedactedUrl(url).to_string(), shown, "{url}");
        }
    }

    #[test]
    fn an_empty_section_is_the_default_and_unknown_keys_are_refused() {
        let s: AmqpSettings = toml::from_str("").unwrap();
        assert_eq!(s, AmqpSettings::default());
        s.validate().unwrap();
        let s: AmqpSettings =
            toml::from_str("url = \"amqps://u:p@h/v\"\nmax_in_flight = 10").unwrap();
        assert_eq!((s.url.as_str(), s.max_in_flight), ("amqps://u:p@h/v", 10));
        let err = toml::from_str::<AmqpSettings>("exchnage = \"x\"").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn an_ip_host_is_kept() {
        let uri = |url: &str| {
            let s = AmqpSettings {
                url: url.into(),
                ..AmqpSettings::default()
            };
            let u = s.amqp_uri().unwrap();
            (u.authority.host, u.authority.port, u.vhost)
        };
        assert_eq!(
            uri("amqp://u:p@10.1.2.3:5673/%2f"),
            ("10.1.2.3".into(), 5673, "/".into())
        );
        assert_eq!(uri("amqps://[::1]/v"), ("::1".into(), 5671, "v".into()));
        assert_eq!(
            uri("amqp://u:p@rabbit.example/"),
            ("rabbit.example".into(), 5672, "".into())
        );
    }

    #[test]
    fn validation_names_the_key() {
        let bad = AmqpSettings {
            url: "http://nope:secret@host".into(),
            ..AmqpSettings::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("amqp.url") && !err.contains("secret"), "{err}");
        let bad = AmqpSettings {
            max_in_flight: 0,
            ..AmqpSettings::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_in_flight"));
    }
}
