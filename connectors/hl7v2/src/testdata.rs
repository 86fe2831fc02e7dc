//! Sample messages for benches and the load generator (not a stable API).

/// (LOINC, name, value, unit, reference range, abnormal flag)
const ANALYTES: [(&str, &str, &str, &str, &str, &str); 12] = [
    (
        "6690-2",
        "Leukocytes [#/volume] in Blood",
        "7.2",
        "10*3/uL",
        "4.0-11.0",
        "N",
    ),
    (
        "718-7",
        "Hemoglobin [Mass/volume] in Blood",
        "13.5",
        "g/dL",
        "12.0-16.0",
        "N",
    ),
    (
        "4544-3",
        "Hematocrit [Volume Fraction] of Blood",
        "40",
        "%",
        "36-46",
        "N",
    ),
    (
        "777-3",
        "Platelets [#/volume] in Blood",
        "412",
        "10*3/uL",
        "150-400",
        "H",
    ),
    (
        "789-8",
        "Erythrocytes [#/volume] in Blood",
        "4.6",
        "10*6/uL",
        "4.2-5.4",
        "N",
    ),
    ("787-2", "MCV [Entitic volume]", "88", "fL", "80-100", "N"),
    ("785-6", "MCH [Entitic mass]", "29.3", "pg", "27-33", "N"),
    ("786-4", "MCHC [Mass/volume]", "33.8", "g/dL", "32-36", "N"),
    (
        "788-0",
        "Erythrocyte distribution width",
        "15.9",
        "%",
        "11.5-14.5",
        "H",
    ),
    (
        "751-8",
        "Neutrophils [#/volume] in Blood",
        "4.1",
        "10*3/uL",
        "1.8-7.7",
        "N",
    ),
    (
        "731-0",
        "Lymphocytes [#/volume] in Blood",
        "0.9",
        "10*3/uL",
        "1.0-4.8",
        "L",
    ),
    (
        "742-7",
        "Monocytes [#/volume] in Blood",
        "0.5",
        "10*3/uL",
        "0.2-0.9",
        "N",
    ),
];

/// An ORU^R01 v2.5 (the corpus CBC report, `rethinkhealth_bench_oru_r01`,
/// with a PID-3 of two repetitions) with `n_obx` CBC results: about 2 KB
/// for 12 OBX. Segments end with CR.
pub fn sample_oru(n_obx: usize) -> String {
    let mut s = String::with_capacity(400 + 170 * n_obx);
    s.push_str("MSH|^~\\&|LAB|HOSPITAL|EMR|HOSPITAL|202501021200||ORU^R01|MSG00002|P|2.5\r");
    s.push_str(
        "PID|1||555123456^^^SSA^SS~789012^^^HOSPITAL^MR||SMITH^JANE^^^^^L||19850317|F|||\
         456 OAK ST^^ANYTOWN^WI^53202\r",
    );
    s.push_str(
        "OBR|1|LAB12345|LAB12345|58410-2^CBC panel - Blood by Automated count^LN|||202501020830\
         |||||||1111^HOUSE^GREGORY^^^MD\r",
    );
    for i in 0..n_obx {
        let (code, name, value, unit, range, flag) = ANALYTES[i % ANALYTES.len()];
        s.push_str(&format!(
            "OBX|{}|NM|{code}^{name}^LN||{value}|{unit}^{unit}^UCUM|{range}|{flag}|||F|||\
             202501020830|||||202501021100||||HOSPITAL LAB^L^^^^CLIA&2.16.840.1.113883.19.4.6&ISO\
             ^XX^^^1236\r",
            i + 1
        ));
    }
    s
}

/// The COI of the therapy [`sample_order`] registers.
pub const SAMPLE_COI: &str = "CHW000126000001";

/// An order (ORM^O01, NW) for the patient, order and specimen of
/// [`sample_oru`], with chain of identity [`SAMPLE_COI`]: sent once, it
/// registers the therapy every sample result then resolves to.
pub fn sample_order() -> String {
    format!(
        "MSH|^~\\&|EMR|HOSPITAL|LAB|HOSPITAL|202501011200||ORM^O01|SAMPLE-ORDER-1|P|2.5\r\
         PID|1||555123456^^^SSA^SS~789012^^^HOSPITAL^MR~{SAMPLE_COI}^^^ISBT128^COI||SMITH^JANE^^^^^L||19850317|F\r\
         ORC|NW|LAB12345|||||||202501011200\r\
         OBR|1|LAB12345|LAB12345|58410-2^CBC panel - Blood by Automated count^LN|||202501011200\r"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    #[test]
    fn sample_order_is_the_shipped_fixture() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../mappings/hl7v2/fixtures/orm_o01_order_with_coi.hl7"
        );
        let fixture = std::fs::read_to_string(path).unwrap();
        assert_eq!(
            sample_order(),
            fixture,
            "the bench registers what the fixture's case checks"
        );
    }

    #[test]
    fn sample_parses_with_expected_size() {
        let text = sample_oru(12);
        assert!((1800..2600).contains(&text.len()), "{}", text.len());
        let m = Message::parse(&text).unwrap();
        assert_eq!(m.segment_count(), 15);
        assert_eq!(m.field(14, 5), Some("0.5"));
    }
}
