//! cgthub, the binary's library: CLI, configuration, HTTP and the wiring of
//! connectors, store, router and sinks.
//!
//! # Layout
//!
//! - [`cli`]: the subcommands (`serve`, `check`, `migrate`, `test`, `events`, `dlq`, `holds`, `trace`, `send`, `bench`).
//! - [`config`]: `config/cgthub.toml` and its environment overrides.
//! - [`serve`]: starts and stops everything the config names.
//! - [`http`]: `/healthz`, `/metrics`, `/api`.
//! - [`portal`]: PDF entry, keyed in by one person and verified by another (`/portal`, `/pdf-entry`).
//! - [`phi`]: the keys that seal patient data in the identity registry.
//! - [`registry`]: the connectors this binary knows, one line each.

pub mod broker;
pub mod cli;
pub mod config;
pub mod http;
pub mod intake;
pub mod phi;
pub mod portal;
pub mod registry;
pub mod serve;
