//! The audit log's hash chain.
//!
//! Every record carries the hash of the one before it, so a changed, removed
//! or reordered record breaks the chain at that point. SQLite triggers refuse
//! UPDATE and DELETE; the chain catches what is done around them (a dropped
//! trigger, a hand-edited file). Truncating the newest records cannot be
//! seen from inside the log: export the head hash elsewhere for that.
//!
//! `hash = hex(SHA-256(F(DOMAIN) F(prev_hash) F(id) F(at) F(actor) F(action)
//! F(subject) F(detail)))` where `F(x)` is the byte length of `x` as a
//! big-endian u64 followed by its UTF-8 bytes, `id` is decimal, `at` and
//! `detail` are the stored texts. Length prefixes make the encoding
//! unambiguous (`("ab","c")` and `("a","bc")` differ).

use sha2::{Digest, Sha256};
use sqlx::QueryBuilder;

use super::db::{on_db, Conn, Pool};

use super::StoreError;

/// `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Domain tag, first field of every hash, so the format can evolve.
const DOMAIN: &str = "cgthub.audit/v1";

/// The result of walking the whole chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCheck {
    pub records: u64,
    /// The first record whose link or hash does not verify.
    pub first_bad: Option<i64>,
}

impl AuditCheck {
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// An audit record before it has a place in the chain.
#[derive(Debug, Clone)]
pub(crate) struct AuditDraft {
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// JSON text, stored and hashed as is.
    pub detail: String,
}

impl AuditDraft {
    /// `detail` is stored as its compact JSON text, and that text is what
    /// gets hashed: verifying never re-serialises.
    pub(crate) fn new(
        actor: &str,
        action: &str,
        subject: String,
        detail: &serde_json::Value,
    ) -> Self {
        AuditDraft {
            actor: actor.to_owned(),
            action: action.to_owned(),
            subject,
            // `Value`'s Display writes into a String and cannot fail.
            detail: detail.to_string(),
        }
    }
}

/// A chained record, ready to insert.
#[derive(Debug, Clone)]
pub(crate) struct AuditRow {
    pub id: i64,
    pub at: String,
    pub draft: AuditDraft,
    pub prev_hash: String,
    pub hash: String,
}

/// The newest record's id and hash. The writer owns the committed head and
/// works on a copy per batch, adopting it only once the batch commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditHead {
    pub last_id: i64,
    pub last_hash: String,
}

impl AuditHead {
    pub(crate) async fn load(conn: &mut Conn) -> Result<Self, sqlx::Error> {
        let row: Option<(i64, String)> = on_db!(conn, |c| sqlx::query_as(
            "SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1"
        )
        .fetch_optional(c)
        .await)?;
        Ok(match row {
            Some((last_id, last_hash)) => AuditHead { last_id, last_hash },
            None => AuditHead {
                last_id: 0,
                last_hash: GENESIS.to_owned(),
            },
        })
    }

    /// Chains `draft` after the head and advances the head to it.
    pub(crate) fn append(&mut self, at: &str, draft: AuditDraft) -> AuditRow {
        let id = self.last_id + 1;
        let hash = chain_hash(&self.last_hash, id, at, &draft);
        let row = AuditRow {
            id,
            at: at.to_owned(),
            draft,
            prev_hash: std::mem::replace(&mut self.last_hash, hash.clone()),
            hash,
        };
        self.last_id = id;
        row
    }
}

fn chain_hash(prev_hash: &str, id: i64, at: &str, d: &AuditDraft) -> String {
    let mut h = Sha256::new();
    let id = id.to_string();
    for field in [
        DOMAIN, prev_hash, &id, at, &d.actor, &d.action, &d.subject, &d.detail,
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Inserts chained rows (in one statement per 4,000 rows).
pub(crate) async fn insert(conn: &mut Conn, rows: &[AuditRow]) -> Result<(), sqlx::Error> {
    on_db!(conn, |c| {
        for chunk in rows.chunks(4_000) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO audit_log (id, at, actor, action, subject, detail, prev_hash, hash) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.id)
                    .push_bind(r.at.as_str())
                    .push_bind(r.draft.actor.as_str())
                    .push_bind(r.draft.action.as_str())
                    .push_bind(r.draft.subject.as_str())
                    .push_bind(r.draft.detail.as_str())
                    .push_bind(r.prev_hash.as_str())
                    .push_bind(r.hash.as_str());
            });
            qb.build().execute(&mut *c).await?;
        }
        Ok(())
    })
}

type StoredRow = (i64, String, String, String, String, String, String, String);

/// Walks the chain from the first record, a page at a time (the log is
/// append-only, so pages need no common snapshot).
pub(crate) async fn verify(pool: &Pool) -> Result<AuditCheck, StoreError> {
    const PAGE: i64 = 2_000;
    let mut check = AuditCheck {
        records: 0,
        first_bad: None,
    };
    let mut expected_prev = GENESIS.to_owned();
    let mut after = i64::MIN;
    loop {
        let page: Vec<StoredRow> = on_db!(pool, |p| sqlx::query_as(
            "SELECT id, at, actor, action, subject, detail, prev_hash, hash FROM audit_log \
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(PAGE)
        .fetch_all(p)
        .await
        .map_err(StoreError::read("verify_audit"))?);
        let full = page.len() as i64 == PAGE;
        for (id, at, actor, action, subject, detail, prev_hash, hash) in page {
            check.records += 1;
            after = id;
            let draft = AuditDraft {
                actor,
                action,
                subject,
                detail,
            };
            let ok = prev_hash == expected_prev && chain_hash(&prev_hash, id, &at, &draft) == hash;
            if !ok && check.first_bad.is_none() {
                check.first_bad = Some(id);
            }
            expected_prev = hash;
        }
        if !full {
            return Ok(check);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(detail: &str) -> AuditDraft {
        AuditDraft {
            actor: "ops".into(),
            action: "route.reload".into(),
            subject: "routes".into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn chain_links_and_depends_on_every_field() {
        let mut head = AuditHead {
            last_id: 0,
            last_hash: GENESIS.into(),
        };
        let a = head.append("2026-01-01T00:00:00.000Z", draft("{}"));
        let b = head.append("2026-01-01T00:00:00.000Z", draft("{}"));
        assert_eq!(a.prev_hash, GENESIS);
        assert_eq!(b.prev_hash, a.hash);
        assert_ne!(a.hash, b.hash, "the id is hashed");
        assert_eq!(head.last_id, 2);
        assert_eq!(head.last_hash, b.hash);
        let moved = AuditDraft {
            actor: "op".into(),
            action: "sroute.reload".into(),
            ..draft("{}")
        };
        assert_ne!(
            chain_hash(GENESIS, 1, "t", &draft("{}")),
            chain_hash(GENESIS, 1, "t", &moved),
            "field boundaries are part of the hash"
        );
    }
}
