//! The `trustgate` binary: thin glue. `serve`, `migrate` and `config show` run the server crate
//! in-process; every management command is a client of a running server's HTTP API, so the CLI
//! and the API cannot drift apart.
//!
//! Exit codes: 0 success, 1 failure, 2 bad usage or configuration.

mod client;
mod commands;

use std::process::ExitCode;

use clap::Parser;

use crate::commands::{Cli, Failure};

/// jemalloc instead of glibc malloc: glibc keeps freed memory in per-thread arenas and raises its
/// mmap threshold to the size of the largest block freed, so every arena that ever ran an
/// argon2id evaluation (19 MiB) keeps that much resident and a long-running server's RSS only
/// grows; jemalloc purges freed extents after a short decay (see `scripts/soak.sh`).
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
