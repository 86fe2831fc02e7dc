//! HL7 v2 over MLLP for cgthub: pure framing, parsing, mapping paths and ACKs
//! (no sockets here).
//!
//! # Layout
//!
//! - [`mllp`]: MLLP framing (`0x0B … 0x1C 0x0D`), a bounded incremental decoder.
//! - [`charset`]: bytes → text by MSH-18 (UTF-8, ISO-8859-n, …), and back for ACKs.
//! - [`message`]: the zero-copy parser ([`Message`]): segments, fields, MSH accessors.
//! - [`delimiters`]: MSH-1/MSH-2 delimiters, validated.
//! - [`escape`]: `\F\ \S\ \X..\ …` escape sequences, both ways.
//! - [`path`]: the mapping path language (`PID-3[5=MR].1`), [`Hl7`] format.
//! - [`document`]: how a [`Message`] answers paths and `foreach` scopes.
//! - [`ack`]: ACK messages (original mode) and the MSH-15 helper.
//! - [`error`]: why bytes are not a message ([`ParseError`]).
//! - [`config`]: the `[mllp]` settings.
//! - [`connector`]: [`Hl7Connector`]: decode → mapping → events, for the hub.
//! - [`source`]: the MLLP listener (the only module doing I/O).

pub mod ack;
pub mod charset;
pub mod config;
pub mod connector;
pub mod delimiters;
pub mod document;
pub mod error;
pub mod escape;
pub mod message;
pub mod mllp;
pub mod path;
pub mod source;
#[doc(hidden)]
pub mod testdata;

pub use ack::{ack, wants_ack, AckCode, AckError};
pub use charset::{decode_text, encode_text};
pub use connector::Hl7Connector;
pub use delimiters::Delimiters;
pub use document::Hl7Scope;
pub use error::ParseError;
pub use message::Message;
pub use mllp::{Frame, MllpDecoder};
pub use path::{is_segment_only, Hl7, Hl7Path};
