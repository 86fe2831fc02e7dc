//! Generated documents for benches and tests.

/// A V0600 SegmentResponse of about `kib` KiB: process data, equipment,
/// personnel and consumed/produced materials, prefixed elements, as an
/// MES writes them. Returns the document and how many ProductionData
/// and materials it holds.
pub fn segment_response(kib: usize) -> (String, usize, usize) {
    let mut s = String::with_capacity(kib * 1024 + 1024);
    s.push_str(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <b2mml:SegmentResponse xmlns:b2mml=\"http://www.mesa.org/xml/B2MML-V0600\">\n\
         \x20 <b2mml:ID>SR-EXP-0042</b2mml:ID>\n\
         \x20 <b2mml:Description>Expansion, day 0 to day 7</b2mml:Description>\n\
         \x20 <b2mml:ProductionRequestID>B26-0042</b2mml:ProductionRequestID>\n\
         \x20 <b2mml:ProcessSegmentID>EXPANSION</b2mml:ProcessSegmentID>\n\
         \x20 <b2mml:ActualStartTime>2026-01-05T09:00:00+01:00</b2mml:ActualStartTime>\n\
         \x20 <b2mml:ActualEndTime>2026-01-12T09:30:00+01:00</b2mml:ActualEndTime>\n\
         \x20 <b2mml:ProductionData><b2mml:ID>COI</b2mml:ID><b2mml:Value><b2mml:ValueString>CHW000126000001</b2mml:ValueString><b2mml:DataType>string</b2mml:DataType></b2mml:Value></b2mml:ProductionData>\n",
    );
    for i in 0..4 {
        s.push_str(&format!(
            "  <b2mml:PersonnelActual><b2mml:PersonID>OP-{i:03}</b2mml:PersonID><b2mml:Description>Operator</b2mml:Description></b2mml:PersonnelActual>\n"
        ));
        s.push_str(&format!(
            "  <b2mml:EquipmentActual><b2mml:EquipmentID>INC-{i:02}</b2mml:EquipmentID><b2mml:Description>CO2 incubator</b2mml:Description></b2mml:EquipmentActual>\n"
        ));
    }
    let (mut data, mut mats) = (0, 0);
    while s.len() < kib * 1024 - 600 {
        if data % 3 == 2 {
            let (tag, lot) = if mats % 4 == 3 {
                ("MaterialProducedActual", "EXP")
            } else {
                ("MaterialConsumedActual", "ACT")
            };
            s.push_str(&format!(
                "  <b2mml:{tag}>\n    <b2mml:MaterialDefinitionID>MAT-{mats:03}</b2mml:MaterialDefinitionID>\n    \
                 <b2mml:MaterialLotID>B26-0042-{lot}-{mats:03}</b2mml:MaterialLotID>\n    \
                 <b2mml:Quantity><b2mml:QuantityString>{}.5</b2mml:QuantityString><b2mml:DataType>decimal</b2mml:DataType><b2mml:UnitOfMeasure>mL</b2mml:UnitOfMeasure></b2mml:Quantity>\n  </b2mml:{tag}>\n",
                mats * 10
            ));
            mats += 1;
        }
        s.push_str(&format!(
            "  <b2mml:ProductionData>\n    <b2mml:ID>param-{data:03}</b2mml:ID>\n    <b2mml:Value>\n      \
             <b2mml:ValueString>{}.{}</b2mml:ValueString>\n      <b2mml:DataType>decimal</b2mml:DataType>\n      \
             <b2mml:UnitOfMeasure>Cel</b2mml:UnitOfMeasure>\n    </b2mml:Value>\n  </b2mml:ProductionData>\n",
            30 + data % 10,
            data % 7
        ));
        data += 1;
    }
    s.push_str("  <b2mml:SegmentState>Completed</b2mml:SegmentState>\n</b2mml:SegmentResponse>\n");
    (s, data, mats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_core::{Connector, Decoded};

    #[test]
    fn the_bench_document_is_20_kib_and_maps_whole() {
        let (doc, data, mats) = segment_response(20);
        assert!(
            (19 * 1024..=21 * 1024).contains(&doc.len()),
            "{}",
            doc.len()
        );
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/b2mml");
        let conn = crate::B2mmlConnector::load(&dir).unwrap();
        let (_, decoded) = conn.translate(bytes::Bytes::from(doc), "bench", None);
        let Decoded::Events(events) = decoded else {
            panic!("{decoded:?}")
        };
        let v = serde_json::to_value(&events[0]).unwrap();
        assert_eq!(v["coi"], "CHW000126000001");
        assert_eq!(v["data"]["parameters"].as_array().unwrap().len(), data);
        assert_eq!(v["data"]["materials"].as_array().unwrap().len(), mats);
        assert_eq!(v["data"]["equipment"].as_array().unwrap().len(), 4);
        assert_eq!(v["data"]["materials"][3]["use"], "produced");
    }
}
