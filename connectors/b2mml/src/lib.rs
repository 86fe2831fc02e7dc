//! ISA-95 B2MML for cgthub (issue 7).
