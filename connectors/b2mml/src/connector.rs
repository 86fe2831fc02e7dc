//! The B2MML connector: bytes → document(s) → mapping → events (pure).
//! The HTTP endpoint (`POST /b2mml/{partner}`) and the drop folder belong
//! to the hub's binary; they call [`Connector::translate`] and answer with
//! [`crate::http_status`].

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use hub_core::error::Stage;
use hub_core::event::Source;
use hub_core::mapping::{LoadError, MapContext, MapError, MappingSet};
use hub_core::sink::BoxFuture;
use hub_core::{Connector, ConnectorError, Decoded, Hub, Inbound, Problem, TherapyEvent};
use tokio_util::sync::CancellationToken;

use crate::document::B2mmlMessage;
use crate::error::codes;
use crate::path::B2mml;

/// Connector kind, as in `mappings/b2mml/` and `source.connector`.
pub const KIND: &str = "b2mml";
/// MIME type stored with raw messages.
pub const CONTENT_TYPE: &str = "application/xml";
/// Partner name when the caller does not say who sent the document.
pub const UNKNOWN_PARTNER: &str = "unknown";

/// ISA-95 B2MML documents from an MES.
#[derive(Debug)]
pub struct B2mmlConnector {
    mappings: MappingSet<B2mml>,
}

impl B2mmlConnector {
    /// Loads the mappings under `dir` (`mappings/b2mml`).
    pub fn load(dir: &Path) -> Result<Self, Vec<LoadError>> {
        Ok(B2mmlConnector {
            mappings: MappingSet::load_dir(dir)?,
        })
    }

    pub fn mappings(&self) -> &MappingSet<B2mml> {
        &self.mappings
    }

    /// Maps every document of a message with the mapping chosen for its
    /// partner and type; the first failure fails the whole message.
    fn map(&self, msg: &B2mmlMessage<'_>, inbound: &Inbound) -> Decoded {
        let mtype = msg.kind().as_str();
        let Some(mapping) = self.mappings.select(&inbound.partner, mtype) else {
            return Decoded::Failed(Problem::new(
                Stage::Map,
                codes::NO_MAPPING,
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
        let mut events = Vec::new();
        for doc in msg.documents() {
            match mapping.run(&doc, &mut cx) {
                Ok(mut e) => events.append(&mut e),
                Err(e) => return Decoded::Failed(map_problem(&e)),
            }
        }
        Decoded::Events(events)
    }
}

fn map_problem(e: &MapError) -> Problem {
    Problem::new(Stage::Map, e.kind.code(), e.to_string())
}

impl Connector for B2mmlConnector {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn translate(&self, payload: Bytes, origin: &str, partner: Option<&str>) -> (Inbound, Decoded) {
        let name = partner.unwrap_or(UNKNOWN_PARTNER);
        match B2mmlMessage::parse(&payload) {
            Ok(msg) => {
                let message_id = msg.message_id().map(str::to_string);
                let inbound = Inbound::new(
                    KIND,
                    name,
                    CONTENT_TYPE,
                    message_id,
                    payload.clone(),
                    origin,
                );
                let decoded = self.map(&msg, &inbound);
                (inbound, decoded)
            }
            Err(e) => {
                let inbound = Inbound::new(KIND, name, CONTENT_TYPE, None, payload.clone(), origin);
                (inbound, Decoded::Rejected(e.problem()))
            }
        }
    }

    /// The endpoint and drop folder are served by the hub; nothing to run.
    fn run(
        self: Arc<Self>,
        _hub: Hub,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ConnectorError>> {
        Box::pin(async move {
            shutdown.cancelled().await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_status;

    fn connector() -> B2mmlConnector {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/b2mml");
        B2mmlConnector::load(&dir).expect("shipped mappings load")
    }

    fn refused(payload: &str) -> Problem {
        let (inbound, decoded) =
            connector().translate(Bytes::from(payload.to_string()), "test", Some("MES"));
        assert_eq!(inbound.content_type, CONTENT_TYPE);
        assert_eq!(inbound.partner, "MES");
        match decoded {
            Decoded::Rejected(p) => p,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn xxe_is_refused_and_the_file_never_read() {
        let p = refused(
            "<?xml version=\"1.0\"?>\n<!DOCTYPE r [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n\
             <SegmentResponse xmlns=\"http://www.mesa.org/xml/B2MML-V0600\"><ID>&xxe;</ID></SegmentResponse>",
        );
        assert_eq!(p.code, codes::DOCTYPE_REFUSED);
        assert_eq!(p.stage, Stage::Decode);
        assert!(p.reason.contains("line 2, column 1"), "{}", p.reason);
        assert!(!p.reason.contains("root:"), "{}", p.reason);
        assert_eq!(http_status(&p), 400);
        // Without a DOCTYPE, the entity is simply undeclared.
        let p = refused(
            "<SegmentResponse xmlns=\"http://www.mesa.org/xml/B2MML-V0600\"><ID>&xxe;</ID></SegmentResponse>",
        );
        assert_eq!(p.code, codes::NOT_WELL_FORMED);
        assert!(p.reason.contains("undeclared entity &xxe;"), "{}", p.reason);
        assert!(!p.reason.contains("root:"));
    }

    #[test]
    fn billion_laughs_is_refused_at_once() {
        let mut doc =
            String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n");
        for i in 1..10 {
            let prev = if i == 1 {
                "lol".to_string()
            } else {
                format!("lol{}", i - 1)
            };
            doc.push_str(&format!(
                "<!ENTITY lol{i} \"{}\">\n",
                format!("&{prev};").repeat(10)
            ));
        }
        doc.push_str("]>\n<SegmentResponse xmlns=\"http://www.mesa.org/xml/B2MML-V0600\"><ID>&lol9;</ID></SegmentResponse>");
        let started = std::time::Instant::now();
        let p = refused(&doc);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(p.code, codes::DOCTYPE_REFUSED);
        assert!(!p.reason.contains("lollol"));
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let p = refused("<SegmentResponse xmlns=\"http://www.mesa.org/xml/B2MML-V0600\">\n  <ID>x</Id>\n</SegmentResponse>");
        assert_eq!(p.code, codes::NOT_WELL_FORMED);
        assert!(p.reason.contains("line 2"), "{}", p.reason);
        assert_eq!(http_status(&p), 400);
        let p = refused("{\"resourceType\": \"Patient\"}");
        assert_eq!(p.code, codes::NOT_WELL_FORMED);
        let p = refused("<ProductDefinition xmlns=\"http://www.mesa.org/xml/B2MML-V0600\"/>");
        assert_eq!(p.code, codes::UNKNOWN_DOCUMENT);
        assert!(p.reason.contains("<ProductDefinition>"), "{}", p.reason);
        assert_eq!(http_status(&p), 422);
        let p = refused("<SegmentResponse xmlns=\"urn:not-b2mml\"/>");
        assert_eq!(p.code, codes::NOT_B2MML);
        assert!(p.reason.contains("not a B2MML namespace"), "{}", p.reason);
        assert_eq!(http_status(&p), 422);
    }

    #[test]
    fn a_document_without_a_mapping_for_the_partner_fails_and_keeps_its_id() {
        let (inbound, decoded) = connector().translate(
            Bytes::from_static(
                b"<MaterialInformation xmlns=\"http://www.mesa.org/xml/B2MML-V0600\"><ID>MI-1</ID></MaterialInformation>",
            ),
            "test",
            None,
        );
        assert_eq!(inbound.partner, UNKNOWN_PARTNER);
        assert_eq!(inbound.message_id.as_deref(), Some("MI-1"));
        let Decoded::Failed(p) = decoded else {
            panic!("expected a failure, got {decoded:?}")
        };
        assert_eq!(p.code, codes::NO_MAPPING);
        assert!(p.reason.contains("\"MaterialInformation\""), "{}", p.reason);
        assert_eq!(http_status(&p), 422);
    }

    #[test]
    fn every_noun_of_a_bod_is_mapped_with_provenance() {
        let bod = r#"<SyncMaterialLot xmlns="http://www.mesa.org/xml/B2MML">
  <ApplicationArea><BODID>BOD-7</BODID></ApplicationArea>
  <DataArea><Sync/>
    <MaterialLot><ID>B-1</ID><Status>Released</Status>
      <MaterialLotProperty><ID>StatusTime</ID><Value><ValueString>2026-02-01T10:00:00Z</ValueString></Value></MaterialLotProperty></MaterialLot>
    <MaterialLot><ID>B-2</ID><Status>Rejected</Status>
      <MaterialLotProperty><ID>StatusTime</ID><Value><ValueString>2026-02-01T11:00:00Z</ValueString></Value></MaterialLotProperty></MaterialLot>
  </DataArea>
</SyncMaterialLot>"#;
        let (inbound, decoded) = connector().translate(
            Bytes::from_static(bod.as_bytes()),
            "drop/x.xml",
            Some("MES"),
        );
        assert_eq!(inbound.message_id.as_deref(), Some("BOD-7"));
        assert_eq!(inbound.connector, KIND);
        let Decoded::Events(events) = decoded else {
            panic!("expected events, got {decoded:?}")
        };
        assert_eq!(events.len(), 2);
        let json: Vec<serde_json::Value> = events
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        assert_eq!(json[0]["data"]["batch_id"], "B-1");
        assert_eq!(json[1]["data"]["status"], "Rejected");
        assert_eq!(events[0].source.partner, "MES");
        assert_eq!(events[0].source.message_id.as_deref(), Some("BOD-7"));
        assert_eq!(events[0].source.payload_sha256, inbound.sha256);
    }

    #[test]
    fn every_truncation_of_a_document_is_answered_without_panic() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../mappings/b2mml/fixtures/segment_response_expansion_v0600.xml");
        let full = std::fs::read(dir).unwrap();
        let conn = connector();
        let mut refused = 0;
        for end in 0..full.len() {
            let (_, decoded) = conn.translate(Bytes::copy_from_slice(&full[..end]), "test", None);
            if let Decoded::Rejected(p) = decoded {
                assert!(
                    [codes::NOT_WELL_FORMED, codes::UNSUPPORTED_ENCODING].contains(&p.code),
                    "{end}: {p:?}"
                );
                refused += 1;
            }
        }
        // Only the full document (and cuts in its trailing newline) is whole.
        assert!(refused >= full.len() - 2, "{refused} of {}", full.len());
    }
}
