//! Normalising a patient's name and birth date so that the same person,
//! written differently by two systems, compares equal (sealed values and
//! blind indexes are computed from these forms).
//!
//! Normalisation only removes differences of notation: case, diacritics,
//! punctuation, field layout, a birth time. It does not guess at
//! transliterations (`MUELLER` ≠ `MULLER`), nicknames or swapped fields:
//! a difference left is a mismatch for a person to review, which is safer
//! than a false match.

use std::sync::LazyLock;

use chrono::NaiveDate;
use regex::Regex;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// A name as `FAMILY|GIVEN`: uppercase, diacritics folded, only letters and
/// digits in each part; middle names, prefixes and suffixes dropped.
///
/// Accepts:
/// - an HL7 v2 XPN, already unescaped (`FAMILY^GIVEN^MIDDLE^SUFFIX^PREFIX…`;
///   the surname is the first `&` subcomponent of the family name, and only
///   the first `~` repetition is read);
/// - `FAMILY, GIVEN …`;
/// - `Given … Family`: particles such as `van` or `de la` before the last
///   word belong to the family name, titles (`Dr`) and suffixes (`Jr`) are
///   dropped.
///
/// The plain forms cannot tell a second given name from a middle name, so
/// they keep only the first given word, while an XPN keeps its whole given
/// name component. Either part may be empty (`DOE|`); `None` when both are.
pub fn normalise_name(raw: &str) -> Option<String> {
    let raw = raw.split('~').next().unwrap_or_default();
    let (family, given) = if raw.contains('^') {
        let mut components = raw.split('^');
        let family = components.next().unwrap_or_default();
        let family = family.split('&').next().unwrap_or_default();
        let given = components.next().unwrap_or_default();
        (fold(family), fold(given))
    } else if let Some((family, given)) = raw.split_once(',') {
        // `Smith, John, Jr.`: the part after a second comma is a suffix.
        let given = given.split(',').next().unwrap_or_default();
        let family = trim_affixes(words(family), false);
        let given = trim_affixes(words(given), true);
        (
            fold(&family.concat()),
            given.first().map(|g| fold(g)).unwrap_or_default(),
        )
    } else {
        let words = trim_affixes(words(raw), true);
        match words.as_slice() {
            [] => (String::new(), String::new()),
            [only] => (fold(only), String::new()),
            [given, .., last] => {
                let particles = words[1..words.len() - 1]
                    .iter()
                    .rev()
                    .take_while(|w| PARTICLES.contains(&fold(w).as_str()))
                    .count();
                let family = &words[words.len() - 1 - particles..words.len() - 1];
                (fold(&format!("{}{last}", family.concat())), fold(given))
            }
        }
    };
    if family.is_empty() && given.is_empty() {
        None
    } else {
        Some(format!("{family}|{given}"))
    }
}

/// Family name particles (folded), kept with the family name in plain
/// `Given Family` names.
const PARTICLES: &[&str] = &[
    "AL", "BIN", "DA", "DAS", "DE", "DEL", "DELA", "DELLA", "DEN", "DER", "DES", "DI", "DO", "DOS",
    "DU", "IBN", "LA", "LE", "ST", "TEN", "TER", "VAN", "VON",
];
/// Titles dropped before a plain name.
const PREFIXES: &[&str] = &["DR", "MISS", "MR", "MRS", "MS", "MX", "PROF", "SIR"];
/// Suffixes dropped after a plain name.
const SUFFIXES: &[&str] = &["II", "III", "IV", "JR", "JNR", "MD", "PHD", "SR", "SNR"];

fn words(s: &str) -> Vec<&str> {
    s.split_whitespace()
        .filter(|w| !fold(w).is_empty())
        .collect()
}

/// Drops suffixes (and titles, with `prefixes`) while a name word remains.
fn trim_affixes(mut words: Vec<&str>, prefixes: bool) -> Vec<&str> {
    let is = |list: &[&str], w: &str| list.contains(&fold(w).as_str());
    while words.len() > 1 && is(SUFFIXES, words[words.len() - 1]) {
        words.pop();
    }
    if prefixes {
        while words.len() > 1 && is(PREFIXES, words[0]) {
            words.remove(0);
        }
    }
    words
}

/// Uppercase letters and digits only, diacritics folded (`Lüdenscheidt` →
/// `LUDENSCHEIDT`, `Ø` → `O`, `ß` → `SS`).
fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.nfkd().filter(|c| !is_combining_mark(*c)) {
        // Letters that are not a base letter plus a mark.
        let special = match c {
            'ß' | 'ẞ' => "SS",
            'Æ' | 'æ' => "AE",
            'Œ' | 'œ' => "OE",
            'Ø' | 'ø' => "O",
            'Ł' | 'ł' => "L",
            'Đ' | 'đ' | 'Ð' | 'ð' => "D",
            'Þ' | 'þ' => "TH",
            'Ħ' | 'ħ' => "H",
            'ı' => "I",
            'Ŧ' | 'ŧ' => "T",
            _ => "",
        };
        if !special.is_empty() {
            out.push_str(special);
        } else if c.is_alphanumeric() {
            out.extend(c.to_uppercase());
        }
    }
    out
}

/// A birth date as `YYYY-MM-DD`, from an HL7 v2 DT/TS/DTM (`YYYYMMDD`,
/// optionally followed by a time and an offset, and a TS's `^precision`)
/// or ISO 8601 (`YYYY-MM-DD`, optionally with a time).
///
/// The date part is taken as written, without converting the offset: a
/// birth date is the local calendar date of birth. Partial dates (`YYYY`,
/// `YYYYMM`) give `None`, as they cannot be compared; so do impossible
/// dates such as `20230230`.
pub fn normalise_birth_date(raw: &str) -> Option<String> {
    // ASCII digits only: `\d` would accept other scripts' digits.
    static HL7: LazyLock<Regex> = LazyLock::new(|| {
        let time = r"(?:[0-9]{2}(?:[0-9]{2}(?:[0-9]{2}(?:\.[0-9]{1,4})?)?)?)?";
        Regex::new(&format!(
            r"^([0-9]{{4}})([0-9]{{2}})([0-9]{{2}}){time}(?:[+-][0-9]{{4}})?$"
        ))
        .expect("valid regex")
    });
    static ISO: LazyLock<Regex> = LazyLock::new(|| {
        let time = r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?)";
        let offset = r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)";
        Regex::new(&format!(
            r"^([0-9]{{4}})-([0-9]{{2}})-([0-9]{{2}})(?:{time}{offset}?)?$"
        ))
        .expect("valid regex")
    });
    let raw = raw.split('^').next().unwrap_or_default().trim();
    let caps = HL7.captures(raw).or_else(|| ISO.captures(raw))?;
    let date = NaiveDate::from_ymd_opt(
        caps[1].parse().ok()?,
        caps[2].parse().ok()?,
        caps[3].parse().ok()?,
    )?;
    Some(date.format("%Y-%m-%d").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(raw: &str) -> Option<String> {
        normalise_name(raw)
    }

    #[test]
    fn hl7_xpn() {
        // HL7 v2.5.1 PID-5 example.
        assert_eq!(
            name("EVERYWOMAN^EVE^E^^^^L").as_deref(),
            Some("EVERYWOMAN|EVE")
        );
        assert_eq!(name("Everywoman^Eve").as_deref(), Some("EVERYWOMAN|EVE"));
        assert_eq!(name("DOE^JOHN^Q^JR^DR^MD^L").as_deref(), Some("DOE|JOHN"));
        assert_eq!(
            name("Müller-Lüdenscheidt^José").as_deref(),
            Some("MULLERLUDENSCHEIDT|JOSE")
        );
        assert_eq!(name("O'Brien^Seán").as_deref(), Some("OBRIEN|SEAN"));
        assert_eq!(name("O’Brien^Seán").as_deref(), Some("OBRIEN|SEAN"));
        assert_eq!(
            name("DUPONT^JEAN PIERRE").as_deref(),
            Some("DUPONT|JEANPIERRE")
        );
        assert_eq!(
            name("Dupont^Jean-Pierre").as_deref(),
            Some("DUPONT|JEANPIERRE")
        );
        // FN subcomponents: the surname is the first.
        assert_eq!(
            name("van der Berg&van der&Berg^Anna").as_deref(),
            Some("VANDERBERG|ANNA")
        );
        // Repetitions: the first (legal) name.
        assert_eq!(
            name("SMITH^JANE^^^^^L~JONES^JANE^^^^^M").as_deref(),
            Some("SMITH|JANE")
        );
        assert_eq!(name("DOE").as_deref(), Some("DOE|"));
        assert_eq!(name("DOE^").as_deref(), Some("DOE|"));
        assert_eq!(name("^JOHN").as_deref(), Some("|JOHN"));
    }

    #[test]
    fn plain_forms_agree_with_xpn() {
        let eve = Some("EVERYWOMAN|EVE".to_owned());
        assert_eq!(name("Eve Everywoman"), eve);
        assert_eq!(name("EVERYWOMAN, EVE"), eve);
        assert_eq!(name("Everywoman, Eve E."), eve);
        assert_eq!(name("  Eve   E.  Everywoman "), eve);
        assert_eq!(name("Mrs. Eve Everywoman"), eve);
        assert_eq!(name("Dr Eve Everywoman PhD"), eve);
        assert_eq!(name("Everywoman, Dr. Eve"), eve);
        assert_eq!(name("Everywoman Jr., Eve"), eve);
        assert_eq!(name("Everywoman, Eve, Jr."), eve);

        assert_eq!(
            name("José Müller-Lüdenscheidt"),
            name("Müller-Lüdenscheidt^José")
        );
        assert_eq!(name("Seán O'Brien"), name("O'Brien^Seán"));
        assert_eq!(name("Ludwig van Beethoven"), name("van Beethoven^Ludwig"));
        assert_eq!(name("Maria De La Cruz").as_deref(), Some("DELACRUZ|MARIA"));
        assert_eq!(name("John Quincy Adams").as_deref(), Some("ADAMS|JOHN"));
        assert_eq!(name("Cher").as_deref(), Some("CHER|"));
    }

    #[test]
    fn diacritics_and_special_letters() {
        assert_eq!(name("Ærø^Søren").as_deref(), Some("AERO|SOREN"));
        assert_eq!(name("Straße^Jürgen").as_deref(), Some("STRASSE|JURGEN"));
        assert_eq!(name("STRASSE^JURGEN"), name("straße^jürgen"));
        assert_eq!(name("Wałęsa^Lech").as_deref(), Some("WALESA|LECH"));
        assert_eq!(name("Đoković^Novak").as_deref(), Some("DOKOVIC|NOVAK"));
        assert_eq!(
            name("Þórsdóttir^Guðrún").as_deref(),
            Some("THORSDOTTIR|GUDRUN")
        );
        assert_eq!(name("Yıldız^İlkay").as_deref(), Some("YILDIZ|ILKAY"));
        assert_eq!(
            name("Œhlenschläger^Adam").as_deref(),
            Some("OEHLENSCHLAGER|ADAM")
        );
        // Compatibility forms: fullwidth letters, ligatures.
        assert_eq!(name("ＤＯＥ^ﬁona").as_deref(), Some("DOE|FIONA"));
        // Other scripts are kept, uppercased.
        assert_eq!(name("Иванов^Иван").as_deref(), Some("ИВАНОВ|ИВАН"));
        // Not a transliteration.
        assert_ne!(name("Mueller^Hans"), name("Müller^Hans"));
    }

    #[test]
    fn empty_names() {
        for raw in [
            "",
            "   ",
            "^",
            "^^^^^^L",
            "\"\"",
            ", ",
            "-",
            "~DOE^JOHN",
            ".'-",
        ] {
            assert_eq!(name(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn birth_dates() {
        let d = |raw| normalise_birth_date(raw);
        assert_eq!(d("19620824").as_deref(), Some("1962-08-24"));
        assert_eq!(d(" 19620824 ").as_deref(), Some("1962-08-24"));
        assert_eq!(d("196208240930").as_deref(), Some("1962-08-24"));
        assert_eq!(d("19620824093015.1234-0500").as_deref(), Some("1962-08-24"));
        // The local date, not the UTC one.
        assert_eq!(d("196208242330+1400").as_deref(), Some("1962-08-24"));
        assert_eq!(d("19620824-0500").as_deref(), Some("1962-08-24"));
        assert_eq!(d("19620824^D").as_deref(), Some("1962-08-24"));
        assert_eq!(d("1962-08-24").as_deref(), Some("1962-08-24"));
        assert_eq!(d("1962-08-24T09:30:00Z").as_deref(), Some("1962-08-24"));
        assert_eq!(d("1962-08-24 09:30").as_deref(), Some("1962-08-24"));
        assert_eq!(
            d("1962-08-24T23:30:00.000+14:00").as_deref(),
            Some("1962-08-24")
        );
        assert_eq!(d("20000229").as_deref(), Some("2000-02-29"));
    }

    #[test]
    fn partial_and_invalid_birth_dates() {
        for raw in [
            "",
            "1962",
            "196208",
            "1962-08",
            "20230230",
            "19000229",
            "20231301",
            "20230100",
            "2023-02-30",
            "1962082",
            "196208241",
            "19620824+05",
            "1962-8-24",
            "24/08/1962",
            "1962-08-24T",
            "1962-08-24T9:30",
            "19620824 0930",
            "x19620824",
            "1962-08-24x",
            "１９６２０８２４",
        ] {
            assert_eq!(normalise_birth_date(raw), None, "{raw:?}");
        }
    }
}
