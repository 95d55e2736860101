//! The seed runner: `cargo run -p sim --release -- --seeds N [--from S]` runs seeds
//! `S..S+N`, prints one line per seed and the full report (schedule, timeline, shortest
//! failing history) of every failure, then the seeds per second and how many of the drawn
//! cluster changes (replica moves, raw member changes, leader moves) completed. Exit status
//! 1 if any seed failed. The same seed reproduces the same run.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use sim::cluster::Variant;
use sim::operator::{MoveKind, MoveTally};
use sim::run::{run_seed, RunConfig};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum VariantArg {
    Correct,
    StaleLeaderReads,
    RestartedLeaderReads,
    PickHeldSeats,
    ConfirmAfterExpiry,
    AdmitOutOfOrder,
    CheckpointLosesChanges,
}

#[derive(Parser, Debug)]
#[command(about = "Run boxoffice cluster simulations under seeded faults")]
struct Args {
    /// How many seeds to run.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Which cluster to simulate (the broken one shows what the checker catches).
    #[arg(long, value_enum, default_value = "correct")]
    variant: VariantArg,
    /// Print every seed's full report, not just failures'.
    #[arg(long)]
    verbose: bool,
    /// Run without faults (a baseline for throughput and for the checker).
    #[arg(long)]
    no_faults: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Quiet unless RUST_LOG asks: faults make openraft log errors by design.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let started = Instant::now();
    let mut failed = Vec::new();
    let (mut sim_ms, mut ops, mut undecided) = (0u64, 0usize, 0usize);
    let mut moves: BTreeMap<MoveKind, MoveTally> = BTreeMap::new();
    for seed in args.from..args.from + args.seeds {
        let mut config = RunConfig::for_seed(seed);
        config.variant = match args.variant {
            VariantArg::Correct => Variant::Correct,
            VariantArg::StaleLeaderReads => Variant::StaleLeaderReads,
            VariantArg::RestartedLeaderReads => Variant::RestartedLeaderReads,
            VariantArg::PickHeldSeats => Variant::PickHeldSeats,
            VariantArg::ConfirmAfterExpiry => Variant::ConfirmAfterExpiry,
            VariantArg::AdmitOutOfOrder => Variant::AdmitOutOfOrder,
            VariantArg::CheckpointLosesChanges => Variant::CheckpointLosesChanges,
        };
        config.faults = !args.no_faults;
        let report = run_seed(config);
        sim_ms += report.sim_ms;
        ops += report.ops.0 + report.ops.1;
        undecided += report.undecided();
        for (kind, tally) in &report.moves {
            moves.entry(*kind).or_default().add(tally);
        }
        let verdict = if report.ok() { "ok" } else { "FAILED" };
        println!(
            "seed {seed}: {verdict} ({} ops, {} unknown, {} ms simulated in {:.2?})",
            report.ops.0 + report.ops.1,
            report.ops.1,
            report.sim_ms,
            report.wall
        );
        if !report.ok() || args.verbose {
            println!("{report}");
        }
        if !report.ok() {
            failed.push(seed);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "{} seeds in {wall:.1} s ({:.2} seeds/s, {:.0} simulated s, {ops} ops, {undecided} undecided seats); failed: {failed:?}",
        args.seeds,
        args.seeds as f64 / wall,
        sim_ms as f64 / 1000.0
    );
    for (kind, tally) in &moves {
        println!("{kind}: {tally}");
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
