//! Intakes that take whole files, over HTTP and from drop folders: B2MML
//! documents from MES and CSV exports from LIMS. The connectors decode and
//! map; this is how their bytes arrive and how partners are answered.

pub mod b2mml;
pub mod config;
pub mod courier;
pub mod http;
pub mod lims;

pub use config::{B2mmlSection, FileIntakeConfig, LimsSection};
