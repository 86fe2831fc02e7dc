//! LIMS CSV exports for cgthub: each partner's dialect (encoding,
//! delimiter, preamble, renamed columns, decimal commas, local dates, wide
//! layouts), files streamed in bounded chunks, rows mapped one by one.
//! Pure: the drop folder and `POST /lims/{partner}` belong to the binary.
//!
//! # Layout
//!
//! - [`dialect`]: the `[dialect]` table of a `mappings/lims_csv/*.toml` mapping ([`Dialect`]).
//! - [`path`]: the path language (a column name, `$row`), [`LimsCsv`] format.
//! - [`document`]: how a row ([`Record`]) answers paths; a file's [`Columns`].
//! - [`transcode`]: any encoding → UTF-8, streamed, BOM removed, bad bytes located.
//! - [`chunker`]: a file → preamble skipped, header checked → [`Chunk`]s.
//! - [`profile`]: the columns a mapping reads ([`Needs`]) and its dates' time zone.
//! - [`translate`]: a chunk's rows → events or a [`hub_core::Problem`] each ([`RowOutcome`]).
//! - [`error`]: file-level errors ([`FileError`]) and problem codes.
//! - [`connector`]: [`LimsCsvConnector`]: open, translate_chunk, and the hub's `Connector`.
//!
//! # Use
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cgthub_lims_csv::LimsCsvConnector;
//! let lims = LimsCsvConnector::load("mappings/lims_csv".as_ref()).map_err(|e| format!("{e:?}"))?;
//! let file = std::fs::File::open("export.csv")?;
//! for chunk in lims.open("lims", file)? {
//!     let chunk = chunk?; // a file-level error ends the file
//!     for row in lims.translate_chunk(&chunk.payload, chunk.first_row, "lims", "export.csv")? {
//!         match row.result {
//!             Ok(events) => { /* store and route */ }
//!             Err(problem) => eprintln!("{}", problem.reason), // names the row and column
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod chunker;
pub mod connector;
pub mod dialect;
pub mod document;
pub mod error;
pub mod path;
pub mod profile;
pub mod transcode;
pub mod translate;

pub use chunker::{Chunk, Chunker, Limits};
pub use connector::{LimsCsvConnector, CONTENT_TYPE, DEFAULT_PARTNER, KIND};
pub use dialect::{Dialect, Layout};
pub use document::{Columns, Record, MESSAGE_TYPE};
pub use error::{codes, FileError};
pub use path::{ColumnPath, LimsCsv};
pub use profile::{Needs, Profile};
pub use transcode::Transcoder;
pub use translate::RowOutcome;
