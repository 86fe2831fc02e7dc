//! Identifier formats for the chain of identity: what a COI, a DIN and a
//! product's own COI look like, checked before anything is linked or routed.
//!
//! Giving a patient cells made from someone else's is the one unforgivable
//! failure, and it starts with a mistyped identifier; so every identifier is
//! refused at intake unless it is exactly in its format, with a reason that
//! names the position and the rule it broke.
//!
//! # Layout
//!
//! - [`mod37_2`]: the ISO/IEC 7064 MOD 37-2 check character (ISBT 128 DINs).
//! - [`charset`]: ISBT 128 character classes and the error naming the one
//!   character that broke them.
//! - [`isbt128_coi`]: the ISBT 128 Chain of Identity Identifier, Data
//!   Structure 040.
//! - [`din`]: the ISBT 128 Donation Identification Number, Data Structure 001.
//! - [`product`]: a therapy product's own COI format (pattern and optional
//!   check character), from configuration.
//! - [`coi`]: the canonical [`Coi`] and the [`CoiFormats`] it is parsed with.
//!
//! Parsers borrow their input and never allocate; a [`Coi`] owns one
//! `String`. Nothing here logs: identifiers go into errors, and errors say
//! which character is wrong, never which check character would be right.
//!
//! Sources: ICCBBA, *ISBT 128 Standard Technical Specification* (ST-001)
//! v6.2.2, 2023 (<https://www.isbt128.org/tech-spec>); ISO/IEC 7064:2003,
//! *Check character systems*.

pub mod charset;
pub mod coi;
pub mod demographics;
pub mod din;
pub mod isbt128_coi;
pub mod mod37_2;
pub mod product;
pub mod seal;

pub use charset::{CharClass, CharError, Part};
pub use coi::{Coi, CoiError, CoiFormats, CoiKind};
pub use demographics::{normalise_birth_date, normalise_name};
pub use din::{Din, DinError, FlagType};
pub use isbt128_coi::{Isbt128Coi, Isbt128CoiError};
pub use mod37_2::Mod37Error;
pub use product::{
    CheckSystem, ProductCoiError, ProductCoiFormat, ProductCoiFormatConfig, ProductFormatError,
};
pub use seal::{PhiKeyConfig, PhiKeyError, PhiKeys, SealError};
