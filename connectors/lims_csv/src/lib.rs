//! LIMS CSV exports for cgthub (issue 7).
