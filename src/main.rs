//! The `cgthub` binary: see `cgthub --help`.

use std::process::ExitCode;

use clap::Parser;

/// Intake allocates many small, short-lived values per message (fields,
/// events, JSON); mimalloc serves those markedly faster than glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cgthub::cli::Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if matches!(cli.command, cgthub::cli::Command::Serve(_)) {
        builder.on_thread_start(yield_to_the_writer);
    }
    let runtime = match builder.build() {
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

/// How much the async workers defer to the store's writer thread (nice
/// levels; the default is 0).
const WORKER_NICENESS: i32 = 5;

/// Lowers the calling runtime thread's CPU priority a little. The store's
/// single writer (group commit) is the pipeline's one serial stage; on a
/// busy machine it used to wait in the run queue behind the workers mapping
/// the next messages (a quarter of its time), which only made those
/// messages wait longer for their commit. Raising the writer would need
/// privileges; lowering the workers does not. Best effort: a failure is
/// ignored (the hub works the same, a little slower).
fn yield_to_the_writer() {
    #[cfg(target_os = "linux")]
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), WORKER_NICENESS);
}
