//! Randomized tests of the checker against the reference inventory: histories generated
//! from sequential runs (always linearizable) must pass; the same histories with one
//! outcome changed must usually fail; and a throughput figure for a 5,000-op seat.

use std::time::Instant;

use proptest::prelude::*;

use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::SplitMix64;

use super::*;

/// Seeded randomness identical on every platform (SplitMix64, from `rand_xoshiro`).
struct Rng(SplitMix64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(SplitMix64::seed_from_u64(seed))
    }
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

#[derive(Clone, Copy, Debug)]
struct Shape {
    n_ops: usize,
    n_seats: u64,
    /// Ops applied whose outcome the client never learned.
    unknown_pct: u64,
    /// Ops sent but never applied (outcome unknown).
    phantom_pct: u64,
    /// How far an op's interval may reach to either side of its linearization point, in
    /// units of the gap between points (so about 2× this many ops overlap).
    overlap: u64,
}

const GAP_NS: u64 = 1_000;
const TTLS_MS: [u64; 3] = [50, 200, 1_000];

struct Generated {
    history: ShardHistory,
    finals: Vec<ReplicaSeats>,
}

/// A sequential run of the reference inventory, with every op's interval widened around
/// its point in the run.
fn generate(seed: u64, shape: Shape) -> Generated {
    let mut rng = Rng::new(seed);
    let mut shard = ReferenceShard::new();
    let mut holds: Vec<(HoldId, OwnerId, Option<BookingId>)> = Vec::new();
    let mut ops = Vec::with_capacity(shape.n_ops);
    let mut now_ms = 0;
    let mut next_booking = 1;
    let spread = shape.overlap * GAP_NS;
    for i in 0..shape.n_ops {
        now_ms += rng.pick(&[0, 1, 10, 30, 100]);
        let random_seats = |rng: &mut Rng, max: u64| {
            let mut seats: Vec<SeatId> = (0..1 + rng.below(max))
                .map(|_| SeatId(rng.below(shape.n_seats)))
                .collect();
            seats.sort();
            seats.dedup();
            seats
        };
        let command = match rng.below(100) {
            0..=34 => {
                let hold_id = HoldId(holds.len() as u64 + 1);
                let owner = OwnerId(rng.below(4));
                holds.push((hold_id, owner, None));
                Command::Hold {
                    hold_id,
                    owner,
                    seats: random_seats(&mut rng, 3),
                    ttl_ms: rng.pick(&TTLS_MS),
                }
            }
            35..=49 if !holds.is_empty() => {
                let (hold_id, owner, _) = holds[rng.below(holds.len() as u64) as usize];
                let owner = if rng.percent(80) {
                    owner
                } else {
                    OwnerId(rng.below(4))
                };
                Command::Release { hold_id, owner }
            }
            50..=69 if !holds.is_empty() => {
                let k = rng.below(holds.len() as u64) as usize;
                let booking_id = match holds[k].2 {
                    Some(b) if rng.percent(60) => b, // a repeated confirm
                    _ => {
                        next_booking += 1;
                        BookingId(next_booking)
                    }
                };
                holds[k].2 = Some(booking_id);
                Command::Confirm {
                    hold_id: holds[k].0,
                    booking_id,
                }
            }
            70..=72 => Command::Release {
                hold_id: HoldId(1_000_000 + i as u64),
                owner: OwnerId(0),
            },
            _ => Command::Read {
                seats: random_seats(&mut rng, shape.n_seats),
            },
        };
        let point = spread + i as u64 * GAP_NS;
        let invoked_ns = point - rng.below(spread + 1);
        let responded_ns = point + rng.below(spread + 1);
        let response = if rng.percent(shape.phantom_pct) {
            None
        } else {
            let outcome = shard.apply(&command, now_ms);
            (!rng.percent(shape.unknown_pct)).then_some(Response {
                responded_ns,
                outcome,
            })
        };
        ops.push(Op {
            request: RequestId(i as u64),
            invoked_ns,
            command,
            response,
        });
    }
    let finals = vec![ReplicaSeats {
        replica: "reference".into(),
        seats: shard.final_seats(),
    }];
    Generated {
        history: ShardHistory { ops },
        finals,
    }
}

/// Changes one known outcome into a different outcome of the same command.
fn mutate(history: &mut ShardHistory, rng: &mut Rng) -> Option<(RequestId, Outcome, Outcome)> {
    let known: Vec<usize> = (0..history.ops.len())
        .filter(|&i| history.ops[i].response.is_some())
        .collect();
    if known.is_empty() {
        return None;
    }
    let index = known[rng.below(known.len() as u64) as usize];
    // A time for answers that carry none: the latest at_ms seen so far.
    let at_hint = history.ops[..index]
        .iter()
        .filter_map(|o| o.response.as_ref().and_then(|r| r.outcome.at_ms()))
        .max()
        .unwrap_or(0);
    let op = &mut history.ops[index];
    let response = op.response.as_mut().expect("known");
    let before = response.outcome.clone();
    let after = match (&op.command, &response.outcome) {
        (Command::Hold { seats, .. }, Outcome::Held { at_ms, .. }) => Outcome::Taken {
            unavailable: vec![seats[0]],
            at_ms: *at_ms,
        },
        (Command::Hold { ttl_ms, .. }, Outcome::Taken { at_ms, .. }) => Outcome::Held {
            expires_at_ms: at_ms + ttl_ms,
            at_ms: *at_ms,
        },
        (Command::Release { .. }, Outcome::Released { .. }) => Outcome::AlreadyInactive,
        (
            Command::Release { .. },
            Outcome::NotFound | Outcome::NotOwner | Outcome::AlreadyInactive,
        ) => Outcome::Released { at_ms: at_hint },
        (Command::Confirm { .. }, Outcome::Confirmed { at_ms }) => Outcome::Failed {
            reason: FailReason::Expired,
            at_ms: *at_ms,
        },
        (Command::Confirm { .. }, Outcome::Failed { at_ms, .. }) => {
            Outcome::Confirmed { at_ms: *at_ms }
        }
        (Command::Read { .. }, Outcome::Statuses { at_ms, seats }) => {
            let mut seats = seats.clone();
            let (&seat, &view) = seats.iter().next().expect("a read names a seat");
            let flipped = match view {
                SeatView::Free => SeatView::Held {
                    hold_id: HoldId(1 + rng.below(index as u64 / 3 + 1)),
                },
                SeatView::Held { .. } | SeatView::Sold { .. } => SeatView::Free,
            };
            seats.insert(seat, flipped);
            Outcome::Statuses {
                at_ms: *at_ms,
                seats,
            }
        }
        _ => return None,
    };
    response.outcome = after.clone();
    Some((op.request, before, after))
}

fn limits() -> CheckLimits {
    CheckLimits::default()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Whatever the reference inventory did, with any overlap and unknown outcomes, is
    /// linearizable, breaks no invariant, and matches the reference's final seats.
    #[test]
    fn generated_histories_pass(
        seed in any::<u64>(),
        n_ops in 1usize..120,
        n_seats in 1u64..5,
        overlap in 0u64..4,
        unknown_pct in 0u64..15,
        phantom_pct in 0u64..10,
    ) {
        let shape = Shape { n_ops, n_seats, unknown_pct, phantom_pct, overlap };
        let g = generate(seed, shape);
        let report = check_shard(&g.history, &g.finals, &limits()).expect("generated histories are valid");
        prop_assert!(report.is_ok(), "seed {seed} {shape:?}\n{report}");
    }
}

#[test]
fn one_changed_outcome_is_usually_caught() {
    let shape = Shape {
        n_ops: 40,
        n_seats: 2,
        unknown_pct: 5,
        phantom_pct: 3,
        overlap: 2,
    };
    let (mut tried, mut caught) = (0, 0);
    let mut missed = Vec::new();
    for seed in 0..400 {
        let mut g = generate(seed, shape);
        let mut rng = Rng::new(seed ^ 0x5eed);
        let Some((request, before, after)) = mutate(&mut g.history, &mut rng) else {
            continue;
        };
        tried += 1;
        let report =
            check_shard(&g.history, &g.finals, &limits()).expect("mutated histories are valid");
        if report.verdict() == Verdict::Violated {
            caught += 1;
        } else {
            assert_eq!(report.verdict(), Verdict::Ok, "seed {seed}: {report}");
            missed.push(format!("seed {seed} {request}: {before} => {after}"));
        }
    }
    let rate = caught as f64 / tried as f64;
    println!(
        "caught {caught} of {tried} single-outcome mutations ({:.1}%)",
        rate * 100.0
    );
    for m in missed.iter().take(10) {
        println!("  missed {m}");
    }
    assert!(rate > 0.85, "caught only {caught} of {tried}");
}

#[test]
fn reports_do_not_depend_on_op_order_or_run() {
    let shape = Shape {
        n_ops: 60,
        n_seats: 3,
        unknown_pct: 5,
        phantom_pct: 3,
        overlap: 2,
    };
    for seed in 0..40 {
        let mut g = generate(seed, shape);
        if mutate(&mut g.history, &mut Rng::new(seed)).is_none() {
            continue;
        }
        let first = check_shard(&g.history, &g.finals, &limits()).expect("valid");
        let again = check_shard(&g.history, &g.finals, &limits()).expect("valid");
        assert_eq!(first.to_string(), again.to_string(), "seed {seed}");
        let mut reversed = g.history.clone();
        reversed.ops.reverse();
        let other = check_shard(&reversed, &g.finals, &limits()).expect("valid");
        assert_eq!(first.verdict(), other.verdict(), "seed {seed}");
        assert_eq!(first.failing_seats(), other.failing_seats(), "seed {seed}");
        assert_eq!(first.violations, other.violations, "seed {seed}");
    }
}

fn throughput(label: &str, shape: Shape, seed: u64) {
    let g = generate(seed, shape);
    let started = Instant::now();
    let report = check_shard(&g.history, &g.finals, &limits()).expect("valid");
    let elapsed = started.elapsed();
    assert!(report.is_ok(), "{report}");
    println!(
        "{label}: {} ops over {} seats checked in {:.3} s = {:.0} ops/s",
        shape.n_ops,
        report.n_seats,
        elapsed.as_secs_f64(),
        shape.n_ops as f64 / elapsed.as_secs_f64()
    );
}

/// Figures, not timing assertions (run with `--nocapture`, ideally `--release`). About
/// three ops overlap each op; "unknown" histories have 2% of ops applied with the outcome
/// lost and 1% sent but never applied.
#[test]
fn throughput_of_a_5000_op_single_seat_history() {
    let all_known = Shape {
        n_ops: 5_000,
        n_seats: 1,
        unknown_pct: 0,
        phantom_pct: 0,
        overlap: 3,
    };
    throughput("single seat, all outcomes known", all_known, 7);
    throughput(
        "single seat, 3% unknown outcomes",
        Shape {
            unknown_pct: 2,
            phantom_pct: 1,
            ..all_known
        },
        7,
    );
    throughput(
        "64 seats, 3% unknown outcomes",
        Shape {
            n_ops: 20_000,
            n_seats: 64,
            unknown_pct: 2,
            phantom_pct: 1,
            overlap: 3,
        },
        7,
    );
}

#[test]
fn the_generator_is_the_reference_splitmix64() {
    // The first outputs of SplitMix64 from seed 0, as published with the algorithm.
    let mut rng = Rng::new(0);
    assert_eq!(rng.next(), 0xe220_a839_7b1d_cdaf);
    assert_eq!(rng.next(), 0x6e78_9e6a_a1b9_65f4);
    assert_eq!(rng.next(), 0x06c4_5d18_8009_454f);
}
