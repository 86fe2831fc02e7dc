//! A document's way through the portal, kept as messages of connector
//! `pdf_entry`, so the store's durable group commit, dedup and dead
//! letters guard it like any partner's input:
//!
//! | step | message id | content type |
//! | --- | --- | --- |
//! | upload | `sha256:{hex}` | `application/pdf` |
//! | first entry | `pdf/{doc}/entry` | [`CT_ENTRY`] |
//! | verification | `pdf/{doc}/verification` | [`CT_VERIFIED`] (with the events) or [`CT_MISMATCH`] |
//! | resolution | `pdf/{doc}/resolution` | [`CT_VERIFIED`] (with the events) |
//!
//! A document's id is its upload's message row. Each step's id can be
//! taken once, so two people racing to verify get one verification and a
//! 409. Only a verified message carries events: an entry alone, or a
//! mismatch, produces nothing. A verification whose events the identity
//! registry refuses fails like any message (dead letter, alert) and frees
//! its id, so it can be verified again once the registry is put right.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use cgthub_pdf_entry::{
    diff, pdf, to_event, FieldError, Mismatch, Policy, Suggestion, Template, Values,
};
use chrono::{DateTime, Utc};
use hub_core::event::{ManualEntry, Source};
use hub_core::store::{MessageStatus, MessageSummary, StoreError};
use hub_core::{Decoded, Hub, Inbound, Outcome, Problem};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::auth::{Auth, Session};
use super::config::{PdfEntryConfig, Role};

pub const CT_PDF: &str = "application/pdf";
pub const CT_ENTRY: &str = "application/vnd.cgthub.pdf-entry+json";
pub const CT_MISMATCH: &str = "application/vnd.cgthub.pdf-mismatch+json";
pub const CT_VERIFIED: &str = "application/vnd.cgthub.pdf-verified+json";

/// How many of the newest portal messages the document list reads.
const LIST_LIMIT: u32 = 2000;

/// Where a document stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    AwaitingEntry,
    AwaitingVerification,
    Mismatch,
    Verified,
    /// The verified values' events were refused (an identity conflict):
    /// a dead letter says why; it may be verified again.
    Failed,
}

impl State {
    pub const ALL: [State; 5] = [
        State::AwaitingEntry,
        State::AwaitingVerification,
        State::Mismatch,
        State::Failed,
        State::Verified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::AwaitingEntry => "awaiting_entry",
            State::AwaitingVerification => "awaiting_verification",
            State::Mismatch => "mismatch",
            State::Verified => "verified",
            State::Failed => "failed",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            State::AwaitingEntry => "Awaiting entry",
            State::AwaitingVerification => "Awaiting verification",
            State::Mismatch => "Mismatches to resolve",
            State::Verified => "Verified",
            State::Failed => "Refused by the identity check",
        }
    }
}

/// One step someone took.
#[derive(Debug, Clone, Serialize)]
pub struct StepInfo {
    pub message: i64,
    pub user: String,
    pub at: DateTime<Utc>,
}

/// A document as the list and the pages show it (never its values).
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    pub id: i64,
    pub partner: String,
    pub sha256: String,
    pub state: State,
    pub policy: Policy,
    pub uploaded: StepInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entered: Option<StepInfo>,
    /// The second entry or review (matching or not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked: Option<StepInfo>,
    /// Who signed the values off (verification or resolution).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<StepInfo>,
    /// Events the verified values produced.
    pub events: i64,
    /// Why the last verification failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Value>,
    #[serde(skip)]
    entry_row: Option<i64>,
    #[serde(skip)]
    check_row: Option<i64>,
}

/// Why a portal action was not done; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("no document {0}")]
    NotFound(i64),
    #[error("no partner {0:?} in [pdf_entry] partners (or it has no template)")]
    UnknownPartner(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the values are not acceptable")]
    Invalid(Vec<FieldError>),
    #[error("the password does not match: the signature is refused")]
    BadSignature,
    #[error("{reason}")]
    Refused {
        code: &'static str,
        reason: String,
        message: i64,
    },
    #[error("the store is unavailable; nothing was taken, try again")]
    Store(#[from] StoreError),
}

/// What an upload made.
#[derive(Debug, Serialize)]
pub struct Uploaded {
    pub document: Document,
    pub pages: usize,
    pub suggestions: Vec<Suggestion>,
    pub duplicate: bool,
}

/// What a verification or resolution came to.
#[derive(Debug, Serialize)]
pub struct Checked {
    pub document: Document,
    pub mismatches: Vec<Mismatch>,
}

/// What a step's message keeps (its payload, JSON).
#[derive(Debug, Serialize, serde::Deserialize)]
struct StepRecord {
    document: i64,
    document_sha256: String,
    step: String,
    user: String,
    at: DateTime<Utc>,
    values: Values,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    mismatches: Vec<Mismatch>,
    /// Resolution: field → (value chosen, reason).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    resolved: BTreeMap<String, Resolved>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<Signature>,
}

/// A mismatch settled by a verifier.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Resolved {
    pub value: String,
    pub reason: String,
}

/// An electronic signature: who, when, what it means, and what it binds.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct Signature {
    user: String,
    display_name: String,
    at: DateTime<Utc>,
    meaning: String,
    document_sha256: String,
    values_sha256: String,
}

/// The portal's work: templates, the hub, who is who.
pub struct Portal {
    pub hub: Hub,
    pub auth: Arc<Auth>,
    pub cfg: PdfEntryConfig,
    pub templates: BTreeMap<String, Template>,
}

fn step_id(doc: i64, step: &str) -> String {
    format!("pdf/{doc}/{step}")
}

fn origin_of(user: &str) -> String {
    format!("portal {user}")
}

fn user_of(m: &MessageSummary) -> String {
    m.origin
        .strip_prefix("portal ")
        .unwrap_or(&m.origin)
        .to_string()
}

fn step_info(m: &MessageSummary) -> StepInfo {
    StepInfo {
        message: m.id,
        user: user_of(m),
        at: m.received_at,
    }
}

fn taken(m: &MessageSummary) -> bool {
    !matches!(m.status, MessageStatus::Dead | MessageStatus::Rejected)
}

/// SHA-256 of the values as stored (compact JSON): what a signature binds.
pub fn values_sha256(v: &Values) -> String {
    hex::encode(Sha256::digest(
        serde_json::to_vec(v).expect("values serialise"),
    ))
}

impl Portal {
    pub fn template(&self, partner: &str) -> Result<&Template, PortalError> {
        if !self.cfg.partners.iter().any(|p| p == partner) {
            return Err(PortalError::UnknownPartner(partner.into()));
        }
        self.templates
            .get(partner)
            .ok_or_else(|| PortalError::UnknownPartner(partner.into()))
    }

    fn subject(doc: &Document) -> String {
        format!("pdf_entry/{}/document/{}", doc.partner, doc.id)
    }

    /// Audits an action; a failure to audit is logged, never hidden.
    pub async fn audit(&self, actor: &str, action: &str, subject: &str, detail: Value) {
        if let Err(e) = self.hub.store().audit(actor, action, subject, detail).await {
            tracing::error!(actor, action, subject, error = %e, "audit record not written");
        }
    }

    /// Stores an uploaded PDF (refused ones too, with their reason) and
    /// reads its text for suggestions.
    pub async fn upload(
        &self,
        s: &Session,
        partner: &str,
        bytes: Bytes,
    ) -> Result<Uploaded, PortalError> {
        require(s, Role::DataEntry, "upload documents")?;
        let template = self.template(partner)?;
        let inspected = {
            let b = bytes.clone();
            tokio::task::spawn_blocking(move || pdf::inspect(&b))
                .await
                .unwrap_or_else(|_| Err(pdf::PdfRefusal::Corrupt("reading it failed".into())))
        };
        let mut inbound = Inbound::new(
            cgthub_pdf_entry::KIND,
            partner,
            CT_PDF,
            None,
            bytes,
            origin_of(&s.user),
        );
        inbound.message_id = Some(format!("sha256:{}", inbound.sha256));
        let decoded = match &inspected {
            Ok(_) => Decoded::Events(Vec::new()),
            Err(r) => Decoded::Rejected(Problem::new(
                hub_core::error::Stage::Decode,
                r.code(),
                r.to_string(),
            )),
        };
        let (receipt, problem) = self.hub.submit_explained(inbound, decoded).await?;
        let text = match (inspected, problem) {
            (Ok(t), None) => t,
            (Err(r), _) => {
                return Err(PortalError::Refused {
                    code: r.code(),
                    reason: r.to_string(),
                    message: receipt.message_row,
                })
            }
            (Ok(_), Some(p)) => {
                return Err(PortalError::Refused {
                    code: p.code,
                    reason: p.reason,
                    message: receipt.message_row,
                })
            }
        };
        let document = self
            .document(receipt.message_row)
            .await?
            .ok_or(PortalError::NotFound(receipt.message_row))?;
        if !receipt.duplicate {
            self.audit(
                &s.user,
                "pdf_entry.uploaded",
                &Self::subject(&document),
                json!({"sha256": document.sha256, "pages": text.pages}),
            )
            .await;
        }
        Ok(Uploaded {
            suggestions: template.suggest(&text.text),
            pages: text.pages,
            document,
            duplicate: receipt.duplicate,
        })
    }

    /// Every document, newest first.
    pub async fn list(&self) -> Result<Vec<Document>, PortalError> {
        let msgs = self.hub.store().manual_entry_messages(LIST_LIMIT).await?;
        let mut steps: BTreeMap<i64, Vec<MessageSummary>> = BTreeMap::new();
        let mut uploads = Vec::new();
        for m in msgs {
            let Some(id) = m.message_id.as_deref() else {
                continue;
            };
            if id.starts_with("sha256:") {
                if taken(&m) {
                    uploads.push(m);
                }
            } else if let Some(doc) = id
                .strip_prefix("pdf/")
                .and_then(|r| r.split('/').next())
                .and_then(|d| d.parse().ok())
            {
                steps.entry(doc).or_default().push(m);
            }
        }
        let mut out = Vec::with_capacity(uploads.len());
        for up in uploads {
            let mut st = steps.remove(&up.id).unwrap_or_default();
            st.sort_by_key(|m| m.id);
            if let Some(d) = self.assemble(up, st) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// One document, or `None`. Reads no payload: the PDF stays in the
    /// store until someone asks for it.
    pub async fn document(&self, id: i64) -> Result<Option<Document>, PortalError> {
        let store = self.hub.store();
        let Some(up) = store.manual_entry_message(id).await? else {
            return Ok(None);
        };
        if up.content_type != CT_PDF || !taken(&up) {
            return Ok(None);
        }
        let ids: Vec<String> = ["entry", "verification", "resolution"]
            .iter()
            .map(|s| step_id(id, s))
            .collect();
        let steps = store.manual_entry_messages_by_id(&up.partner, &ids).await?;
        Ok(self.assemble(up, steps))
    }

    /// A document from its upload and its steps' messages (oldest first).
    fn assemble(&self, up: MessageSummary, steps: Vec<MessageSummary>) -> Option<Document> {
        let policy = self
            .templates
            .get(&up.partner)
            .map(|t| t.policy)
            .unwrap_or(Policy::DoubleEntry);
        let mut d = Document {
            id: up.id,
            partner: up.partner.clone(),
            sha256: up.sha256.clone(),
            state: State::AwaitingEntry,
            policy,
            uploaded: step_info(&up),
            entered: None,
            checked: None,
            verified: None,
            events: 0,
            problem: None,
            entry_row: None,
            check_row: None,
        };
        let entry = step_id(up.id, "entry");
        let mut failed = None;
        for m in &steps {
            let id = m.message_id.as_deref().unwrap_or("");
            if !taken(m) {
                failed = Some(m);
                continue;
            }
            if id == entry {
                d.entered = Some(step_info(m));
                d.entry_row = Some(m.id);
            } else if m.content_type == CT_VERIFIED {
                if d.checked.is_none() {
                    d.checked = Some(step_info(m));
                    d.check_row = Some(m.id);
                }
                d.verified = Some(step_info(m));
                d.events = m.events;
            } else if m.content_type == CT_MISMATCH {
                d.checked = Some(step_info(m));
                d.check_row = Some(m.id);
            }
        }
        d.state = if d.verified.is_some() {
            State::Verified
        } else if let Some(f) = failed.filter(|f| Some(f.id) > d.check_row.or(d.entry_row)) {
            d.problem = Some(json!({
                "message": f.id,
                "code": f.error_code,
                "reason": f.error,
            }));
            State::Failed
        } else if d.check_row.is_some() {
            State::Mismatch
        } else if d.entered.is_some() {
            State::AwaitingVerification
        } else {
            State::AwaitingEntry
        };
        Some(d)
    }

    async fn get(&self, id: i64) -> Result<(Document, &Template), PortalError> {
        let d = self.document(id).await?.ok_or(PortalError::NotFound(id))?;
        let t = self.template(&d.partner)?;
        Ok((d, t))
    }

    /// The PDF as uploaded.
    pub async fn pdf(&self, id: i64) -> Result<Bytes, PortalError> {
        let m = self
            .hub
            .store()
            .message(id)
            .await?
            .filter(|m| m.connector == cgthub_pdf_entry::KIND && m.content_type == CT_PDF)
            .ok_or(PortalError::NotFound(id))?;
        Ok(Bytes::from(m.payload))
    }

    /// What the template reads off a document's PDF, marked as suggestions.
    pub async fn suggestions(&self, d: &Document) -> Result<Vec<Suggestion>, PortalError> {
        let t = self.template(&d.partner)?;
        let bytes = self.pdf(d.id).await?;
        let text = tokio::task::spawn_blocking(move || pdf::inspect(&bytes))
            .await
            .ok()
            .and_then(Result::ok);
        Ok(text.map(|x| t.suggest(&x.text)).unwrap_or_default())
    }

    /// The template's blank form for a document.
    pub fn blank(&self, d: &Document) -> Result<Values, PortalError> {
        Ok(self.template(&d.partner)?.blank())
    }

    async fn record(&self, row: i64) -> Result<StepRecord, PortalError> {
        let m = self
            .hub
            .store()
            .message(row)
            .await?
            .ok_or(PortalError::NotFound(row))?;
        serde_json::from_slice(&m.payload).map_err(|e| {
            PortalError::Store(StoreError::Corrupt {
                table: "messages",
                detail: format!("portal step {row}: {e}"),
            })
        })
    }

    fn check_coi<'a>(&'a self, t: &'a Template) -> impl Fn(&str) -> Result<String, String> + 'a {
        move |raw: &str| {
            self.hub
                .coi_formats()
                .parse(t.product.as_deref(), raw)
                .map(|c| c.into_string())
                .map_err(|e| e.to_string())
        }
    }

    /// The first entry: validated (a COI with a wrong check character is
    /// refused here, before anyone verifies), then kept. It produces nothing.
    pub async fn enter(
        &self,
        s: &Session,
        id: i64,
        values: Values,
    ) -> Result<Document, PortalError> {
        require(s, Role::DataEntry, "enter values")?;
        let (d, t) = self.get(id).await?;
        if d.state != State::AwaitingEntry {
            return Err(PortalError::Conflict(format!(
                "document {id} was entered already (it is {})",
                d.state.as_str()
            )));
        }
        let values = values
            .validate(self.check_coi(t))
            .map_err(PortalError::Invalid)?;
        let rec = StepRecord {
            document: d.id,
            document_sha256: d.sha256.clone(),
            step: "entry".into(),
            user: s.user.clone(),
            at: Utc::now(),
            values,
            mismatches: Vec::new(),
            resolved: BTreeMap::new(),
            signature: None,
        };
        self.take(&d, "entry", CT_ENTRY, &rec, Vec::new()).await?;
        self.audit(
            &s.user,
            "pdf_entry.entered",
            &Self::subject(&d),
            json!({"document_sha256": d.sha256, "values_sha256": values_sha256(&rec.values)}),
        )
        .await;
        self.get(id).await.map(|(d, _)| d)
    }

    /// The values of the first entry, for a verifier reviewing them (review
    /// policy) or resolving mismatches; never for blind re-entry.
    pub async fn entered_values(&self, s: &Session, id: i64) -> Result<Values, PortalError> {
        let (d, _) = self.get(id).await?;
        let reviewing = d.policy == Policy::Review && d.state == State::AwaitingVerification;
        let resolving = matches!(d.state, State::Mismatch | State::Failed);
        let done = d.state == State::Verified;
        if !(done || s.has(Role::Verifier) && (reviewing || resolving)) {
            return Err(PortalError::Forbidden(
                "the entered values are shown only to a verifier reviewing or resolving them, \
                 or once verified"
                    .into(),
            ));
        }
        if !done {
            not_the_enterer(s, &d)?;
        }
        let row = d.entry_row.ok_or(PortalError::NotFound(id))?;
        Ok(self.record(row).await?.values)
    }

    /// The open mismatches of a document, for a verifier other than the enterer.
    pub async fn mismatches(&self, s: &Session, id: i64) -> Result<Vec<Mismatch>, PortalError> {
        let (d, _) = self.get(id).await?;
        require(s, Role::Verifier, "see mismatches")?;
        not_the_enterer(s, &d)?;
        let Some(row) = d.check_row else {
            return Ok(Vec::new());
        };
        Ok(self.record(row).await?.mismatches)
    }

    /// The verification: the values keyed again blind (or reviewed field by
    /// field, `confirmed` naming each field checked against the PDF) and
    /// the verifier's password, re-entered as the signature. Matching
    /// values are signed and produce the events; any difference is kept
    /// as mismatches for a verifier to resolve.
    pub async fn verify(
        &self,
        s: &Session,
        id: i64,
        values: Values,
        confirmed: Option<Vec<String>>,
        password: &str,
    ) -> Result<Checked, PortalError> {
        require(s, Role::Verifier, "verify")?;
        let (d, t) = self.get(id).await?;
        not_the_enterer(s, &d)?;
        if !matches!(d.state, State::AwaitingVerification | State::Failed) || d.check_row.is_some()
        {
            return Err(PortalError::Conflict(format!(
                "document {id} is {}, not awaiting verification",
                d.state.as_str()
            )));
        }
        let entered = self
            .record(d.entry_row.ok_or(PortalError::NotFound(id))?)
            .await?
            .values;
        if t.policy == Policy::Review {
            let confirmed = confirmed.unwrap_or_default();
            let missing: Vec<FieldError> = values
                .clone()
                .without_blank_rows()
                .fields()
                .into_iter()
                .filter(|(name, _, v)| !v.is_empty() && !confirmed.contains(name))
                .map(|(name, label, _)| FieldError {
                    field: name,
                    message: format!("{label}: not confirmed against the PDF"),
                })
                .collect();
            if !missing.is_empty() {
                return Err(PortalError::Invalid(missing));
            }
        }
        let values = values
            .validate(self.check_coi(t))
            .map_err(PortalError::Invalid)?;
        self.signature_password(s, &d, password).await?;
        let mismatches = diff(&entered, &values);
        let now = Utc::now();
        if mismatches.is_empty() {
            let how = t.policy.as_str();
            let document = self
                .sign(s, &d, t, "verification", entered, BTreeMap::new(), how)
                .await?;
            Ok(Checked {
                document,
                mismatches,
            })
        } else {
            let rec = StepRecord {
                document: d.id,
                document_sha256: d.sha256.clone(),
                step: "verification".into(),
                user: s.user.clone(),
                at: now,
                values,
                mismatches: mismatches.clone(),
                resolved: BTreeMap::new(),
                signature: None,
            };
            self.take(&d, "verification", CT_MISMATCH, &rec, Vec::new())
                .await?;
            self.audit(
                &s.user,
                "pdf_entry.mismatch",
                &Self::subject(&d),
                json!({"fields": mismatches.iter().map(|m| &m.field).collect::<Vec<_>>()}),
            )
            .await;
            let document = self.get(id).await?.0;
            Ok(Checked {
                document,
                mismatches,
            })
        }
    }

    /// Settles every mismatch with a value and a reason, signed with the
    /// verifier's password; the settled values produce the events.
    pub async fn resolve(
        &self,
        s: &Session,
        id: i64,
        resolved: BTreeMap<String, Resolved>,
        password: &str,
    ) -> Result<Checked, PortalError> {
        require(s, Role::Verifier, "resolve mismatches")?;
        let (d, t) = self.get(id).await?;
        not_the_enterer(s, &d)?;
        let check_row = match (d.state, d.check_row) {
            (State::Mismatch | State::Failed, Some(r)) => r,
            _ => {
                return Err(PortalError::Conflict(format!(
                    "document {id} is {}: there are no mismatches to resolve",
                    d.state.as_str()
                )))
            }
        };
        let check = self.record(check_row).await?;
        let mut values = self
            .record(d.entry_row.ok_or(PortalError::NotFound(id))?)
            .await?
            .values;
        let mut errors = Vec::new();
        for m in &check.mismatches {
            match resolved.get(&m.field) {
                Some(r) if !r.reason.trim().is_empty() => {
                    values.set(&m.field, r.value.trim().to_string());
                }
                Some(_) => errors.push(FieldError {
                    field: m.field.clone(),
                    message: format!("{}: a reason is required", m.label),
                }),
                None => errors.push(FieldError {
                    field: m.field.clone(),
                    message: format!("{}: not resolved", m.label),
                }),
            }
        }
        if !errors.is_empty() {
            return Err(PortalError::Invalid(errors));
        }
        let values = values
            .validate(self.check_coi(t))
            .map_err(PortalError::Invalid)?;
        self.signature_password(s, &d, password).await?;
        let document = self
            .sign(s, &d, t, "resolution", values, resolved, "resolved")
            .await?;
        Ok(Checked {
            document,
            mismatches: Vec::new(),
        })
    }

    async fn signature_password(
        &self,
        s: &Session,
        d: &Document,
        password: &str,
    ) -> Result<(), PortalError> {
        if self.auth.check_password(&s.user, password).await.is_err() {
            self.audit(
                &s.user,
                "pdf_entry.signature_refused",
                &Self::subject(d),
                json!({"reason": "password did not match"}),
            )
            .await;
            return Err(PortalError::BadSignature);
        }
        Ok(())
    }

    /// Keeps the signed values with their events and audits the signature.
    #[allow(clippy::too_many_arguments)]
    async fn sign(
        &self,
        s: &Session,
        d: &Document,
        t: &Template,
        step: &str,
        values: Values,
        resolved: BTreeMap<String, Resolved>,
        how: &str,
    ) -> Result<Document, PortalError> {
        let entered_by = d
            .entered
            .as_ref()
            .map(|e| e.user.clone())
            .unwrap_or_default();
        let at = Utc::now();
        let values_sha = values_sha256(&values);
        let signature = Signature {
            user: s.user.clone(),
            display_name: s.display_name.clone(),
            at,
            meaning: "verified".into(),
            document_sha256: d.sha256.clone(),
            values_sha256: values_sha.clone(),
        };
        let rec = StepRecord {
            document: d.id,
            document_sha256: d.sha256.clone(),
            step: step.into(),
            user: s.user.clone(),
            at,
            values,
            mismatches: Vec::new(),
            resolved,
            signature: Some(signature.clone()),
        };
        let payload = Bytes::from(serde_json::to_vec(&rec).expect("step serialises"));
        let sha = hex::encode(Sha256::digest(&payload));
        let source = Source {
            connector: cgthub_pdf_entry::KIND.into(),
            partner: d.partner.clone(),
            message_id: Some(step_id(d.id, step)),
            payload_sha256: sha,
            entry: Some(ManualEntry {
                method: "manual".into(),
                document_id: d.id,
                document_sha256: d.sha256.clone(),
                entered_by,
                verified_by: s.user.clone(),
                verified_at: at,
                verification: how.into(),
            }),
        };
        let event = to_event(&rec.values, t, source, at);
        let receipt = self
            .take_bytes(d, (step, &s.user), CT_VERIFIED, payload, vec![event])
            .await?;
        if let Outcome::Accepted { events } = receipt.outcome {
            self.audit(
                &s.user,
                "pdf_entry.verified",
                &Self::subject(d),
                json!({
                    "meaning": "verified",
                    "signed_by": s.user,
                    "display_name": s.display_name,
                    "at": at,
                    "document_sha256": d.sha256,
                    "values_sha256": values_sha,
                    "message": receipt.message_row,
                    "verification": how,
                    "events": events,
                    "held": receipt.held,
                }),
            )
            .await;
        }
        Ok(self.get(d.id).await?.0)
    }

    async fn take(
        &self,
        d: &Document,
        step: &str,
        ct: &'static str,
        rec: &StepRecord,
        events: Vec<hub_core::TherapyEvent>,
    ) -> Result<hub_core::Receipt, PortalError> {
        let payload = Bytes::from(serde_json::to_vec(rec).expect("step serialises"));
        self.take_bytes(d, (step, &rec.user), ct, payload, events)
            .await
    }

    /// Submits one step's message; a step taken already (someone else was
    /// faster) is a conflict.
    async fn take_bytes(
        &self,
        d: &Document,
        (step, user): (&str, &str),
        ct: &'static str,
        payload: Bytes,
        events: Vec<hub_core::TherapyEvent>,
    ) -> Result<hub_core::Receipt, PortalError> {
        let inbound = Inbound::new(
            cgthub_pdf_entry::KIND,
            d.partner.clone(),
            ct,
            Some(step_id(d.id, step)),
            payload,
            origin_of(user),
        );
        let (receipt, _) = self
            .hub
            .submit_explained(inbound, Decoded::Events(events))
            .await?;
        if receipt.duplicate {
            return Err(PortalError::Conflict(format!(
                "document {}: the {step} was taken already by someone else",
                d.id
            )));
        }
        Ok(receipt)
    }
}

fn require(s: &Session, role: Role, what: &str) -> Result<(), PortalError> {
    if s.has(role) {
        Ok(())
    } else {
        Err(PortalError::Forbidden(format!(
            "{} may not {what}: that needs role {}",
            s.user,
            role.as_str()
        )))
    }
}

/// The rule the whole portal exists for: one person never both enters and
/// verifies a document.
fn not_the_enterer(s: &Session, d: &Document) -> Result<(), PortalError> {
    match &d.entered {
        Some(e) if e.user == s.user => Err(PortalError::Forbidden(format!(
            "{} entered document {}; someone else must verify it",
            s.user, d.id
        ))),
        _ => Ok(()),
    }
}
