//! How a [`Message`] answers [`Hl7Path`]s: values and `foreach` scopes.
//!
//! # Scopes
//!
//! A scope is a half-open range of segment indices plus the segment a
//! `foreach` selected ([`Hl7Scope`]). The root scope is the whole message.
//! `foreach = "OBR"` yields, for every OBR in the scope, the range from that
//! OBR up to the next OBR (or the end of the scope): the OBR with the ORC-less
//! OBX/NTE/SPM segments following it. Nested, `foreach = "OBX"` inside it
//! yields each OBX with the NTEs following it. `foreach = "PID-3[*]"` yields
//! one scope per non-empty repetition of the field; inside it, `PID-3.1`
//! (no repetition named) reads that repetition. A path naming a component
//! (`OBX-5.1`) yields no scopes; [`Hl7`]'s `check_foreach` refuses it when
//! a mapping is loaded.
//!
//! *Caveat:* a scope ends only at the next segment of the same id, so a
//! root-level `foreach = "OBX"` in a message with several OBR groups lets
//! the last OBX of one group run into the next OBR: nest `OBX` in `OBR`.
//!
//! # Which segment a path reads
//!
//! - `MSH` always reads segment 0.
//! - No `[..]`: the scope's own segment if it has this id (the OBX a
//!   `foreach = "OBX"` selected), else the first one in the scope, else the
//!   nearest one *before* the scope (the PID for an OBX, the OBR of an OBX).
//! - `[N]`: the N-th in the scope. `[*]`: every one in the scope.
//!
//! # Values
//!
//! - No repetition selector: the first repetition. `[N]` the N-th, `[*]`
//!   all, `[C=V]` the first whose component C (unescaped) equals V.
//! - No component: the whole repetition, raw (escapes and component or
//!   subcomponent separators kept) when it has components or subcomponents,
//!   unescaped when it is a plain value. MSH-1 and MSH-2 are returned as is.
//! - A component: unescaped, or raw if it has subcomponents and no
//!   subcomponent was named. A subcomponent: unescaped.
//! - Empty values and the HL7 null `""` are never pushed, so a non-multi path
//!   pushes at most one value and a multi path pushes only non-empty ones (two
//!   multi paths do not stay index-aligned when one of them has gaps).

use std::borrow::Cow;

use crate::escape::unescape;
use crate::message::{find_byte, first_part, Message};
use crate::path::{FieldSel, Hl7, Hl7Path, Occurrence, RepSel};
use hub_core::mapping::Document;

/// A position in a message: segments `start..end`, and the segment a
/// `foreach` selected, if any. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hl7Scope {
    start: u32,
    end: u32,
    current: Option<u32>,
    /// `foreach = "PID-3[*]"`: the field and 1-based repetition of `current`
    /// this scope stands for.
    rep: Option<(u32, u32)>,
}

impl Hl7Scope {
    /// First segment index in the scope.
    pub fn start(&self) -> usize {
        self.start as usize
    }
    /// One past the last segment index in the scope.
    pub fn end(&self) -> usize {
        self.end as usize
    }
    /// The segment `foreach` selected (`None` for the root scope).
    pub fn current(&self) -> Option<usize> {
        self.current.map(|c| c as usize)
    }
    /// For a repetition scope: (field number, 1-based repetition).
    pub fn repetition(&self) -> Option<(usize, usize)> {
        self.rep.map(|(f, r)| (f as usize, r as usize))
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl<'a> Document for Message<'a> {
    type Format = Hl7;
    type Scope = Hl7Scope;

    fn root(&self) -> Hl7Scope {
        Hl7Scope {
            start: 0,
            end: to_u32(self.segment_count()),
            current: None,
            rep: None,
        }
    }

    fn message_type(&self) -> Option<Cow<'_, str>> {
        Message::message_type(self)
    }

    fn values<'b>(&'b self, path: &Hl7Path, scope: Hl7Scope, out: &mut Vec<Cow<'b, str>>) {
        let Some(sel) = &path.field else {
            return;
        };
        self.each_segment(path, scope, |seg| {
            // Inside `foreach = "PID-3[*]"`, `PID-3.1` reads the repetition
            // the scope stands for.
            match scope.rep {
                Some((f, r))
                    if scope.current == Some(to_u32(seg))
                        && sel.field == f
                        && sel.rep == RepSel::First =>
                {
                    let own = FieldSel {
                        rep: RepSel::Nth(r),
                        ..sel.clone()
                    };
                    self.push_field(seg, &own, out)
                }
                _ => self.push_field(seg, sel, out),
            }
        });
    }

    fn scopes(&self, path: &Hl7Path, scope: Hl7Scope) -> Vec<Hl7Scope> {
        if let Some(sel) = &path.field {
            return self.repetition_scopes(path, sel, scope);
        }
        debug_assert!(crate::path::is_segment_only(path));
        let (start, end) = (scope.start(), scope.end().min(self.segment_count()));
        let hits: Vec<usize> = (start..end)
            .filter(|&i| self.segment_is(i, &path.segment))
            .collect();
        let scopes = hits.iter().enumerate().map(|(k, &i)| Hl7Scope {
            start: to_u32(i),
            end: to_u32(hits.get(k + 1).copied().unwrap_or(end)),
            current: Some(to_u32(i)),
            rep: None,
        });
        match path.occurrence {
            Occurrence::Nth(n) => scopes
                .skip((n as usize).saturating_sub(1))
                .take(1)
                .collect(),
            Occurrence::Scoped | Occurrence::All => scopes.collect(),
        }
    }

    fn is_multi(path: &Hl7Path) -> bool {
        path.is_multi()
    }
}

impl<'a> Message<'a> {
    /// `foreach = "PID-3[*]"`: one scope per non-empty repetition selected.
    fn repetition_scopes(&self, path: &Hl7Path, sel: &FieldSel, scope: Hl7Scope) -> Vec<Hl7Scope> {
        if sel.component.is_some() {
            return Vec::new();
        }
        let mut out = Vec::new();
        self.each_segment(path, scope, |seg| {
            let Some(raw) = self.field(seg, sel.field as usize) else {
                return;
            };
            let d = self.delimiters();
            for (k, rep) in raw.split(char::from(d.repetition())).enumerate() {
                let n = to_u32(k + 1);
                let wanted = match &sel.rep {
                    RepSel::All => true,
                    RepSel::First => n == 1,
                    RepSel::Nth(x) => n == *x,
                    RepSel::Where { component, value } => nth_part(rep, d.component(), *component)
                        .map(|c| first_part(c, d.subcomponent()))
                        .is_some_and(|c| unescape(c, d) == **value),
                };
                if wanted && !rep.is_empty() && rep != "\"\"" {
                    out.push(Hl7Scope {
                        start: scope.start,
                        end: scope.end,
                        current: Some(to_u32(seg)),
                        rep: Some((sel.field, n)),
                    });
                }
            }
        });
        out
    }

    /// Calls `f` with each segment index `path` reads in `scope`.
    fn each_segment(&self, path: &Hl7Path, scope: Hl7Scope, mut f: impl FnMut(usize)) {
        let name = &path.segment;
        if name == b"MSH" {
            f(0);
            return;
        }
        let (start, end) = (scope.start(), scope.end().min(self.segment_count()));
        let mut in_scope = (start..end).filter(|&i| self.segment_is(i, name));
        match path.occurrence {
            Occurrence::Scoped => {
                let own = scope.current().filter(|&c| self.segment_is(c, name));
                let before = || {
                    (0..start.min(end))
                        .rev()
                        .find(|&i| self.segment_is(i, name))
                };
                if let Some(i) = own.or_else(|| in_scope.next()).or_else(before) {
                    f(i);
                }
            }
            Occurrence::Nth(n) => {
                if let Some(i) = (n as usize).checked_sub(1).and_then(|k| in_scope.nth(k)) {
                    f(i);
                }
            }
            Occurrence::All => in_scope.for_each(f),
        }
    }

    fn push_field<'b>(&'b self, seg: usize, sel: &FieldSel, out: &mut Vec<Cow<'b, str>>) {
        let Some(raw) = self.field(seg, sel.field as usize) else {
            return;
        };
        if sel.field <= 2 && self.segment_is(seg, b"MSH") {
            // MSH-1 and MSH-2 are delimiters, not structured values.
            let whole = matches!(sel.rep, RepSel::First | RepSel::Nth(1) | RepSel::All)
                && sel.component.unwrap_or(1) == 1
                && sel.sub.unwrap_or(1) == 1;
            if whole {
                out.push(Cow::Borrowed(raw));
            }
            return;
        }
        let d = self.delimiters();
        let rep_sep = d.repetition();
        match &sel.rep {
            RepSel::First => self.push_rep(first_part(raw, rep_sep), sel, out),
            RepSel::Nth(n) => {
                if let Some(r) = nth_part(raw, rep_sep, *n) {
                    self.push_rep(r, sel, out);
                }
            }
            RepSel::All => {
                for n in 1.. {
                    match nth_part(raw, rep_sep, n) {
                        Some(r) => self.push_rep(r, sel, out),
                        None => break,
                    }
                }
            }
            RepSel::Where { component, value } => {
                let matches = |r: &&str| {
                    nth_part(r, d.component(), *component)
                        .map(|c| first_part(c, d.subcomponent()))
                        .is_some_and(|c| unescape(c, d) == **value)
                };
                if let Some(r) = raw.split(char::from(rep_sep)).find(matches) {
                    self.push_rep(r, sel, out);
                }
            }
        }
    }

    fn push_rep<'b>(&'b self, rep: &'b str, sel: &FieldSel, out: &mut Vec<Cow<'b, str>>) {
        let d = self.delimiters();
        let has = |s: &str, b: u8| find_byte(b, s.as_bytes()).is_some();
        let value = match (sel.component, sel.sub) {
            (None, _) => {
                let structured = has(rep, d.component()) || has(rep, d.subcomponent());
                Some((rep, structured))
            }
            (Some(c), None) => {
                nth_part(rep, d.component(), c).map(|v| (v, has(v, d.subcomponent())))
            }
            (Some(c), Some(s)) => nth_part(rep, d.component(), c)
                .and_then(|v| nth_part(v, d.subcomponent(), s))
                .map(|v| (v, false)),
        };
        match value {
            Some((v, _)) if v.is_empty() || v == "\"\"" => {}
            Some((v, true)) => out.push(Cow::Borrowed(v)),
            Some((v, false)) => out.push(unescape(v, d)),
            None => {}
        }
    }
}

/// The `n`-th (1-based) part of `s` split on the ASCII byte `sep`.
fn nth_part(s: &str, sep: u8, n: u32) -> Option<&str> {
    let mut rest = s;
    for _ in 1..n {
        let i = find_byte(sep, rest.as_bytes())?;
        rest = rest.get(i + 1..)?;
    }
    (n > 0).then(|| first_part(rest, sep))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &str = "MSH|^~\\&|LAB|HOSP|||202501021200||ORU^R01|MSG1|P|2.5.1\r\
PID|1||111^^^H^PI~789^^^H^MR~\"\"^^^H^SS||SMITH^JANE||\"\"|F\\S\\X\r\
OBR|1|ORD1^LAB|FIL1|CBC^PANEL\r\
OBX|1|NM|WBC^White cells||7.2|10\\S\\3/uL||N\r\
NTE|1||first note\r\
OBX|2|NM|HGB||13.5~14&x|g/dL\r\
OBR|2|ORD2\r\
OBX|1|ST|NOTE||a\\F\\b\r\
SPM|1|25GEN&R0A^X\r";

    fn vals<'m>(m: &'m Message<'_>, path: &str, scope: Hl7Scope) -> Vec<Cow<'m, str>> {
        let mut out = Vec::new();
        m.values(&Hl7Path::parse(path).unwrap(), scope, &mut out);
        out
    }

    fn root_vals(path: &str) -> Vec<String> {
        let m = Message::parse(MSG).unwrap();
        vals(&m, path, m.root())
            .into_iter()
            .map(Cow::into_owned)
            .collect()
    }

    #[test]
    fn values_at_root() {
        assert_eq!(root_vals("PID-3.1"), ["111"]);
        assert_eq!(root_vals("PID-3[5=MR].1"), ["789"]);
        assert_eq!(root_vals("PID-3[5=XX].1"), Vec::<String>::new());
        assert_eq!(root_vals("PID-3[*].1"), ["111", "789"]); // "" is null: skipped
        assert_eq!(root_vals("PID-3[2].4"), ["H"]);
        assert_eq!(root_vals("PID-3"), ["111^^^H^PI"]);
        assert_eq!(root_vals("PID-7"), Vec::<String>::new());
        assert_eq!(root_vals("PID-8"), ["F^X"]);
        assert_eq!(root_vals("PID-99"), Vec::<String>::new());
        assert_eq!(root_vals("OBR-2"), ["ORD1^LAB"]);
        assert_eq!(root_vals("OBR-2.1"), ["ORD1"]);
        assert_eq!(root_vals("OBR[2]-2"), ["ORD2"]);
        assert_eq!(root_vals("OBX-5"), ["7.2"]);
        assert_eq!(root_vals("OBX[*].5"), ["7.2", "13.5", "a|b"]);
        assert_eq!(root_vals("OBX[2]-5[*]"), ["13.5", "14&x"]);
        assert_eq!(root_vals("OBX[2]-5[2].1.2"), ["x"]);
        assert_eq!(root_vals("OBX-6"), ["10^3/uL"]);
        assert_eq!(root_vals("SPM-2.1"), ["25GEN&R0A"]);
        assert_eq!(root_vals("SPM-2.1.1"), ["25GEN"]);
        assert_eq!(root_vals("SPM-2.1.2"), ["R0A"]);
        assert_eq!(root_vals("MSH-9.2"), ["R01"]);
        assert_eq!(root_vals("MSH-10"), ["MSG1"]);
        assert_eq!(root_vals("MSH-1"), ["|"]);
        assert_eq!(root_vals("MSH-2"), ["^~\\&"]);
        assert_eq!(root_vals("NTE[*]-3"), ["first note"]);
        assert_eq!(root_vals("ZZZ-1"), Vec::<String>::new());
        assert_eq!(root_vals("OBX"), Vec::<String>::new());
    }

    #[test]
    fn nested_scopes() {
        let m = Message::parse(MSG).unwrap();
        let obr = Hl7Path::parse("OBR").unwrap();
        let obx = Hl7Path::parse("OBX").unwrap();
        let groups = m.scopes(&obr, m.root());
        assert_eq!(groups.len(), 2);
        assert_eq!(
            (groups[0].start(), groups[0].end(), groups[0].current()),
            (2, 6, Some(2))
        );
        assert_eq!((groups[1].start(), groups[1].end()), (6, 9));
        assert_eq!(vals(&m, "OBR-2.1", groups[1]), ["ORD2"]);
        assert_eq!(vals(&m, "OBX[*]-3.1", groups[0]), ["WBC", "HGB"]);
        assert_eq!(vals(&m, "PID-3[5=MR].1", groups[1]), ["789"]); // before the scope
        let obxs = m.scopes(&obx, groups[0]);
        assert_eq!(obxs.len(), 2);
        assert_eq!(vals(&m, "OBX-3.2", obxs[0]), ["White cells"]);
        assert_eq!(vals(&m, "NTE-3", obxs[0]), ["first note"]);
        assert_eq!(vals(&m, "NTE-3", obxs[1]), ["first note"]); // nearest before: documented
        assert_eq!(vals(&m, "OBX-5", obxs[1]), ["13.5"]);
        assert_eq!(vals(&m, "OBR-2.1", obxs[1]), ["ORD1"]);
        assert_eq!(vals(&m, "OBX[1]-1", obxs[1]), ["2"]);
        assert_eq!(vals(&m, "MSH-10", obxs[1]), ["MSG1"]);
        assert_eq!(
            m.scopes(&Hl7Path::parse("OBR[2]").unwrap(), m.root()),
            [groups[1]]
        );
        assert!(m
            .scopes(&Hl7Path::parse("OBX-5.1").unwrap(), m.root())
            .is_empty());
        assert!(m
            .scopes(&Hl7Path::parse("OBR[3]").unwrap(), m.root())
            .is_empty());
        assert_eq!(Document::message_type(&m).as_deref(), Some("ORU^R01"));
    }

    #[test]
    fn repetition_scopes() {
        let m = Message::parse(MSG).unwrap();
        let reps = m.scopes(&Hl7Path::parse("PID-3[*]").unwrap(), m.root());
        assert_eq!(reps.len(), 3);
        assert_eq!(reps[1].repetition(), Some((3, 2)));
        assert_eq!(vals(&m, "PID-3.1", reps[0]), ["111"]);
        assert_eq!(vals(&m, "PID-3.5", reps[1]), ["MR"]);
        assert_eq!(
            vals(&m, "PID-3[1].1", reps[1]),
            ["111"],
            "an explicit repetition still wins"
        );
        assert_eq!(vals(&m, "PID-5.1", reps[1]), ["SMITH"]);
        let mr = m.scopes(&Hl7Path::parse("PID-3[5=MR]").unwrap(), m.root());
        assert_eq!(vals(&m, "PID-3.1", mr[0]), ["789"]);
        // Inside an OBR group, the PID before it is found.
        let obr = m.scopes(&Hl7Path::parse("OBR").unwrap(), m.root());
        let reps = m.scopes(&Hl7Path::parse("PID-3[*]").unwrap(), obr[1]);
        assert_eq!(vals(&m, "PID-3.1", reps[1]), ["789"]);
    }

    #[test]
    fn nth_part_edges() {
        assert_eq!(nth_part("a^b^", b'^', 3), Some(""));
        assert_eq!(nth_part("a^b^", b'^', 4), None);
        assert_eq!(nth_part("", b'^', 1), Some(""));
        assert_eq!(nth_part("a", b'^', 0), None);
    }
}
