pub mod document;
pub use document::{Document, Format};
