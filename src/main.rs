//! The `cgthub` binary: see `cgthub --help`.

use std::process::ExitCode;

use clap::Parser;

/// Intake allocates many small, short-lived values per message (fields,
/// events, JSON); mimalloc serves those markedly faster than glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cgthub::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cgthub: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cgthub::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cgthub: {e:#}");
            ExitCode::FAILURE
        }
    }
}
