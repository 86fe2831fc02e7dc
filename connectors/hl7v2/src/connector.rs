//! The HL7v2 connector: bytes → message → mapping → events (pure), and the
//! MLLP listener that serves partners (see [`crate::source`]).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use hub_core::error::Stage;
use hub_core::event::Source;
use hub_core::mapping::{LoadError, MapContext, MapError, MappingSet};
use hub_core::{Connector, ConnectorError, Decoded, Hub, Inbound, Problem, TherapyEvent};
use tokio_util::sync::CancellationToken;

use crate::config::{MllpConfig, PartnerFrom};
use crate::error::ParseError;
use crate::{decode_text, Hl7, Message};

/// Connector kind, as in `mappings/hl7v2/` and `source.connector`.
pub const KIND: &str = "hl7v2";
/// MIME type stored with raw messages.
pub const CONTENT_TYPE: &str = "x-application/hl7-v2+er7";
/// Partner name when the message does not say who sent it.
pub const UNKNOWN_PARTNER: &str = "unknown";

/// Stable problem codes (stored with dead letters, counted in metrics).
pub mod codes {
    pub const NOT_HL7: &str = "not_hl7";
    pub const BAD_SEGMENT: &str = "bad_segment";
    pub const BAD_ENCODING_CHARACTERS: &str = "bad_encoding_characters";
    pub const BAD_CHARSET: &str = "bad_charset";
    pub const UNSUPPORTED_MESSAGE_TYPE: &str = "unsupported_message_type";
    pub const TOO_LARGE: &str = "too_large";
    pub const OUTSIDE_FRAME: &str = "bytes_outside_frame";
    pub const NOT_TERMINATED: &str = "frame_not_terminated";
}

/// HL7v2 over MLLP.
pub struct Hl7Connector {
    pub(crate) config: MllpConfig,
    mappings: MappingSet<Hl7>,
}

impl Hl7Connector {
    /// Loads the mappings under `dir` (`mappings/hl7v2`).
    pub fn load(config: MllpConfig, dir: &Path) -> Result<Self, Vec<LoadError>> {
        Ok(Hl7Connector {
            config,
            mappings: MappingSet::load_dir(dir)?,
        })
    }

    /// Names the sender by the configured MSH field.
    pub(crate) fn partner_of(&self, msh: &Message<'_>) -> String {
        let app = msh.sending_app().filter(|s| !s.is_empty());
        let fac = msh.sending_facility().filter(|s| !s.is_empty());
        let name = match self.config.partner_from {
            PartnerFrom::SendingFacility => fac.or(app),
            PartnerFrom::SendingApplication => app,
        };
        name.map_or_else(|| UNKNOWN_PARTNER.to_string(), |s| s.into_owned())
    }

    /// Maps a parsed message with the mapping chosen for its partner and type.
    fn map(&self, msg: &Message<'_>, inbound: &Inbound) -> Decoded {
        let mtype = msg.message_type().unwrap_or_default();
        let Some(mapping) = self.mappings.select(&inbound.partner, &mtype) else {
            return Decoded::Rejected(Problem::new(
                Stage::Map,
                codes::UNSUPPORTED_MESSAGE_TYPE,
                format!(
                    "no mapping for {mtype:?} from partner {:?}",
                    inbound.partner
                ),
            ));
        };
        let source = Source {
            connector: KIND.to_string(),
            partner: inbound.partner.clone(),
            message_id: inbound.message_id.clone(),
            payload_sha256: inbound.sha256.clone(),
            entry: None,
        };
        let mut cx = MapContext {
            source: &source,
            recorded_at: inbound.received_at,
            new_id: &mut TherapyEvent::new_id,
        };
        match mapping.run(msg, &mut cx) {
            Ok(events) => Decoded::Events(events),
            Err(e) => Decoded::Failed(map_problem(&e)),
        }
    }
}

fn map_problem(e: &MapError) -> Problem {
    Problem::new(Stage::Map, e.kind.code(), e.to_string())
}

/// The problem for bytes that are not a well-formed message.
pub(crate) fn parse_problem(e: &ParseError) -> Problem {
    let code = match e {
        ParseError::BadSegment { .. } => codes::BAD_SEGMENT,
        ParseError::BadEncodingCharacters { .. } => codes::BAD_ENCODING_CHARACTERS,
        ParseError::UnsupportedCharset { .. } | ParseError::InvalidText { .. } => {
            codes::BAD_CHARSET
        }
        _ => codes::NOT_HL7,
    };
    Problem::new(e.stage(), code, e.to_string())
}

/// The MSH segment alone, parsed: enough to name the partner, the message id
/// and to address an ACK, even when a later segment is broken.
pub(crate) fn msh_only(text: &str) -> Option<Message<'_>> {
    let end = text.find(['\r', '\n']).unwrap_or(text.len());
    Message::parse(&text[..end]).ok()
}

impl Connector for Hl7Connector {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn translate(&self, payload: Bytes, origin: &str, partner: Option<&str>) -> (Inbound, Decoded) {
        let text = match decode_text(&payload) {
            Ok(t) => t,
            Err(e) => {
                let name = partner.unwrap_or(UNKNOWN_PARTNER);
                let inbound = Inbound::new(KIND, name, CONTENT_TYPE, None, payload.clone(), origin);
                return (inbound, Decoded::Rejected(parse_problem(&e)));
            }
        };
        let msh = msh_only(&text);
        let name = match (partner, &msh) {
            (Some(p), _) => p.to_string(),
            (None, Some(m)) => self.partner_of(m),
            (None, None) => UNKNOWN_PARTNER.to_string(),
        };
        let message_id = msh
            .as_ref()
            .and_then(Message::control_id)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let inbound = Inbound::new(
            KIND,
            name,
            CONTENT_TYPE,
            message_id,
            payload.clone(),
            origin,
        );
        let decoded = match Message::parse(&text) {
            Ok(msg) => self.map(&msg, &inbound),
            Err(e) => Decoded::Rejected(parse_problem(&e)),
        };
        (inbound, decoded)
    }

    fn run(
        self: Arc<Self>,
        hub: Hub,
        shutdown: CancellationToken,
    ) -> hub_core::sink::BoxFuture<'static, Result<(), ConnectorError>> {
        Box::pin(crate::source::serve(self, hub, shutdown))
    }
}
