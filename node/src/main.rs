//! The `boxoffice` binary: one executable for every role, chosen by subcommand.
//!
//! `boxoffice dev` runs everything in one process, `boxoffice node` a storage node,
//! `boxoffice api` a stateless API node in front of a cluster,
//! `boxoffice bench holds` measures a 3-node cluster, `boxoffice admin` operates a running
//! one.

mod admin;
mod api_node;
mod bench;
mod bench_failover;
mod bench_fsync;
mod bench_memory;
mod cluster_key;
mod dev;
mod flash_sale;
mod http1;
mod storage_node;

use clap::{Parser, Subcommand};

/// mimalloc, not glibc's malloc: a replicated hold allocates and frees dozens of small
/// blocks on several threads (batches, entries, records, replies), and glibc's arenas spent
/// a fifth of the CPU on it (`malloc`, `_int_free`, `malloc_consolidate`; BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "boxoffice",
    version,
    about = "A ticketing backend that never sells a seat twice"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a storage node (hosts replicas of Raft groups).
    Node(storage_node::NodeArgs),
    /// Run a stateless API node (REST, live seat maps, payments) in front of a cluster.
    Api(api_node::ApiArgs),
    /// Everything on one machine: three storage replicas, an API node on 127.0.0.1:8080, the
    /// payment sandbox and a demo catalog, in this process.
    Dev(dev::DevArgs),
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Operate a running cluster through an API node's admin API (nodes, groups, moves).
    Admin(admin::AdminArgs),
}

/// Transparent huge pages off for this process. mimalloc asks for them on its arenas, and
/// each first touch then faults in and zeroes 2 MiB: a 1M-seat inventory kept 89 B per seat
/// per replica resident instead of 65, and zeroing pages was a sixth of a hold's CPU
/// (BENCHMARKS.md, "Bytes per seat per replica"). Failing leaves them on: a warning.
fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments and reads or writes no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not turn transparent huge pages off");
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BOXOFFICE_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,openraft=error,sled=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command.unwrap_or(Cmd::Dev(dev::DevArgs::default())) {
            Cmd::Node(args) => storage_node::run(args).await,
            Cmd::Bench(cmd) => bench::run(cmd).await,
            Cmd::Api(args) => api_node::run(args).await,
            Cmd::Dev(args) => dev::run(args).await,
            Cmd::Admin(args) => {
                // An operator's mistake is a line on stderr and a failed command, not a
                // backtrace.
                if let Err(error) = admin::run(args).await {
                    eprintln!("error: {error:#}");
                    std::process::exit(1);
                }
                Ok(())
            }
        }
    })
}
