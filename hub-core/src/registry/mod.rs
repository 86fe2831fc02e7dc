//! The identity registry's rules: what a message claims about whose
//! material it is ([`claims`]), and the verdict on each event against the
//! chains of identity already known ([`reconcile`]). The registry's rows
//! live in the store (`store::registry`), which applies these rules inside
//! its write transaction, so that two messages can never both link one
//! identifier to two patients.

pub mod claims;
pub mod reconcile;

pub use claims::{Claimed, Claims, IdKind};
pub use reconcile::*;
