//! Hand-written shard histories, read as a specification: the ones that must pass and the
//! ones that must fail, with the report a failure must produce.

use super::history::op;
use super::*;

const TTL: u64 = 1_000;

fn seats(ids: &[u64]) -> Vec<SeatId> {
    ids.iter().map(|s| SeatId(*s)).collect()
}
/// A hold of `seats` by owner `h` for [`TTL`].
fn hold(h: u64, on: &[u64]) -> Command {
    Command::Hold {
        hold_id: HoldId(h),
        owner: OwnerId(h),
        seats: seats(on),
        ttl_ms: TTL,
    }
}
fn release(h: u64, owner: u64) -> Command {
    Command::Release {
        hold_id: HoldId(h),
        owner: OwnerId(owner),
    }
}
fn confirm(h: u64, b: u64) -> Command {
    Command::Confirm {
        hold_id: HoldId(h),
        booking_id: BookingId(b),
    }
}
fn read(on: &[u64]) -> Command {
    Command::Read { seats: seats(on) }
}
fn held(at_ms: u64) -> Outcome {
    Outcome::Held {
        expires_at_ms: at_ms + TTL,
        at_ms,
    }
}
fn taken(on: &[u64], at_ms: u64) -> Outcome {
    Outcome::Taken {
        unavailable: seats(on),
        at_ms,
    }
}
fn saw(at_ms: u64, views: &[(u64, SeatView)]) -> Outcome {
    Outcome::Statuses {
        at_ms,
        seats: views.iter().map(|(s, v)| (SeatId(*s), *v)).collect(),
    }
}
fn held_by(h: u64) -> SeatView {
    SeatView::Held { hold_id: HoldId(h) }
}
fn sold_to(b: u64) -> SeatView {
    SeatView::Sold {
        booking_id: BookingId(b),
    }
}
const FREE: SeatView = SeatView::Free;

fn report(ops: Vec<Op>) -> ShardReport {
    report_with(ops, &[])
}
fn report_with(ops: Vec<Op>, finals: &[ReplicaSeats]) -> ShardReport {
    check_shard(&ShardHistory { ops }, finals, &CheckLimits::default()).expect("valid history")
}
fn assert_ok(ops: Vec<Op>) {
    let r = report(ops);
    assert!(r.is_ok(), "{r}");
}
fn requests(ids: &[u64]) -> Vec<RequestId> {
    ids.iter().map(|r| RequestId(*r)).collect()
}

// ---- histories that must pass --------------------------------------------------------

#[test]
fn concurrent_holds_on_one_seat_exactly_one_wins() {
    assert_ok(vec![
        op(1, 0, hold(1, &[1]), Some((100, held(50)))),
        op(2, 10, hold(2, &[1]), Some((90, taken(&[1], 60)))),
        op(3, 200, read(&[1]), Some((210, saw(70, &[(1, held_by(1))])))),
    ]);
    // The loser may also be decided first by real time if it answered later by at_ms.
    assert_ok(vec![
        op(1, 0, hold(1, &[1]), Some((100, taken(&[1], 60)))),
        op(2, 10, hold(2, &[1]), Some((90, held(50)))),
    ]);
}

#[test]
fn expiry_then_hold_again() {
    assert_ok(vec![
        op(1, 0, hold(1, &[1]), Some((10, held(100)))),
        op(2, 20, hold(2, &[1]), Some((30, held(100 + TTL)))),
        op(
            3,
            40,
            read(&[1]),
            Some((50, saw(100 + TTL + 10, &[(1, held_by(2))]))),
        ),
        op(
            4,
            60,
            confirm(1, 1),
            Some((
                70,
                Outcome::Failed {
                    reason: FailReason::Expired,
                    at_ms: 1_200,
                },
            )),
        ),
        op(5, 80, release(1, 1), Some((90, Outcome::AlreadyInactive))),
        op(
            6,
            100,
            confirm(2, 2),
            Some((110, Outcome::Confirmed { at_ms: 1_300 })),
        ),
        // A repeated confirm answers confirmed again, even after the hold's expiry.
        op(
            7,
            120,
            confirm(2, 2),
            Some((130, Outcome::Confirmed { at_ms: 9_000 })),
        ),
        op(
            8,
            140,
            confirm(2, 3),
            Some((
                150,
                Outcome::Failed {
                    reason: FailReason::AlreadySold,
                    at_ms: 9_001,
                },
            )),
        ),
        op(
            9,
            160,
            read(&[1]),
            Some((170, saw(9_002, &[(1, sold_to(2))]))),
        ),
    ]);
}

#[test]
fn an_unknown_hold_that_took_effect() {
    assert_ok(vec![
        op(1, 0, hold(1, &[1]), None),
        op(2, 10, hold(2, &[1]), Some((20, taken(&[1], 30)))),
        op(3, 30, read(&[1]), Some((40, saw(40, &[(1, held_by(1))])))),
        op(
            4,
            50,
            release(1, 1),
            Some((60, Outcome::Released { at_ms: 50 })),
        ),
        op(5, 70, hold(3, &[1]), Some((80, held(60)))),
    ]);
}

#[test]
fn an_unknown_hold_that_never_took_effect() {
    assert_ok(vec![
        op(1, 0, hold(1, &[1]), None),
        op(2, 10, read(&[1]), Some((20, saw(10, &[(1, FREE)])))),
        op(3, 30, hold(2, &[1]), Some((40, held(20)))),
        op(4, 50, release(1, 1), Some((60, Outcome::NotFound))),
        op(5, 70, read(&[1]), Some((80, saw(30, &[(1, held_by(2))])))),
    ]);
}

#[test]
fn an_unknown_hold_may_take_effect_late() {
    // The client gave up at once, but the hold landed after the read saw the seat free.
    assert_ok(vec![
        op(1, 0, hold(1, &[1]), None),
        op(2, 10, read(&[1]), Some((20, saw(10, &[(1, FREE)])))),
        op(3, 30, read(&[1]), Some((40, saw(500, &[(1, held_by(1))])))),
        op(
            4,
            50,
            read(&[1]),
            Some((60, saw(1_300, &[(1, held_by(1))]))),
        ),
    ]);
}

#[test]
fn an_unknown_confirm_both_ways() {
    let base = || {
        vec![
            op(1, 0, hold(1, &[1]), Some((10, held(10)))),
            op(2, 20, confirm(1, 1), None),
        ]
    };
    let mut happened = base();
    happened.push(op(
        3,
        30,
        read(&[1]),
        Some((40, saw(500, &[(1, sold_to(1))]))),
    ));
    happened.push(op(
        4,
        50,
        read(&[1]),
        Some((60, saw(5_000, &[(1, sold_to(1))]))),
    ));
    assert_ok(happened);
    let mut not_yet = base();
    not_yet.push(op(
        3,
        30,
        read(&[1]),
        Some((40, saw(500, &[(1, held_by(1))]))),
    ));
    not_yet.push(op(4, 50, read(&[1]), Some((60, saw(5_000, &[(1, FREE)])))));
    assert_ok(not_yet);
}

#[test]
fn a_multi_seat_hold_is_all_or_nothing() {
    assert_ok(vec![
        op(1, 0, hold(1, &[1]), Some((10, held(10)))),
        op(2, 20, hold(2, &[1, 2]), Some((30, taken(&[1], 20)))),
        op(3, 40, hold(3, &[2]), Some((50, held(30)))),
        op(
            4,
            60,
            read(&[1, 2]),
            Some((70, saw(40, &[(1, held_by(1)), (2, held_by(3))]))),
        ),
        op(5, 80, release(2, 2), Some((90, Outcome::NotFound))),
    ]);
}

#[test]
fn only_the_owner_releases() {
    assert_ok(vec![
        op(1, 0, hold(1, &[1]), Some((10, held(10)))),
        op(2, 20, release(1, 99), Some((30, Outcome::NotOwner))),
        op(3, 40, read(&[1]), Some((50, saw(20, &[(1, held_by(1))])))),
        op(
            4,
            60,
            release(1, 1),
            Some((70, Outcome::Released { at_ms: 30 })),
        ),
        op(
            5,
            80,
            confirm(1, 1),
            Some((
                90,
                Outcome::Failed {
                    reason: FailReason::Released,
                    at_ms: 40,
                },
            )),
        ),
        op(6, 100, read(&[1]), Some((110, saw(50, &[(1, FREE)])))),
    ]);
}

#[test]
fn a_refused_request_changes_nothing() {
    assert_ok(vec![
        op(
            1,
            0,
            hold(1, &[1]),
            Some((10, Outcome::Refused { at_ms: 5 })),
        ),
        op(2, 20, read(&[1]), Some((30, saw(6, &[(1, FREE)])))),
        op(3, 40, release(1, 1), Some((50, Outcome::NotFound))),
    ]);
}

// ---- histories that must fail --------------------------------------------------------

#[test]
fn two_acknowledged_holds_with_overlapping_lifetimes() {
    for (call2, ret2) in [(20, 30), (5, 15)] {
        // One after the other, and concurrent.
        let r = report(vec![
            op(1, 0, hold(1, &[1]), Some((10, held(100)))),
            op(2, call2, hold(2, &[1]), Some((ret2, held(200)))),
        ]);
        assert_eq!(r.failing_seats(), vec![SeatId(1)], "{r}");
        assert_eq!(r.seat_failures[0].core, requests(&[1, 2]));
        assert!(r.has(ViolationKind::LostHold), "{r}");
        assert!(
            r.seat_failures[0].explanation.contains("still live at 200"),
            "{r}"
        );
    }
}

#[test]
fn a_read_shows_free_during_an_acknowledged_hold() {
    let r = report(vec![
        op(1, 0, hold(1, &[1]), Some((10, held(100)))),
        op(2, 20, read(&[1]), Some((30, saw(500, &[(1, FREE)])))),
    ]);
    assert_eq!(r.failing_seats(), vec![SeatId(1)]);
    assert_eq!(r.seat_failures[0].core, requests(&[1, 2]));
    assert!(r.has(ViolationKind::LostHold));
    let text = r.to_string();
    println!("{text}");
    assert!(text.contains("seat s1: not linearizable"), "{text}");
    assert!(
        text.contains("r2 [20..30] read [s1] -> at 500 saw s1=free"),
        "{text}"
    );
    assert!(text.contains("hold h1 is still live at 500"), "{text}");
}

#[test]
fn a_confirm_succeeds_after_expiry() {
    let r = report(vec![
        op(1, 0, hold(1, &[1]), Some((10, held(100)))),
        op(
            2,
            20,
            confirm(1, 1),
            Some((30, Outcome::Confirmed { at_ms: 100 + TTL })),
        ),
    ]);
    assert_eq!(r.failing_seats(), vec![SeatId(1)]);
    assert!(r.has(ViolationKind::ConfirmAfterExpiry), "{r}");
    assert!(r.seat_failures[0].explanation.contains("expired"), "{r}");
}

#[test]
fn a_stale_read_after_a_completed_hold() {
    // Same leader time, and a read stamped before the hold: both wrong once the hold has
    // answered before the read was sent.
    let r = report(vec![
        op(1, 0, hold(1, &[1]), Some((10, held(50)))),
        op(2, 20, read(&[1]), Some((30, saw(50, &[(1, FREE)])))),
    ]);
    assert_eq!(r.failing_seats(), vec![SeatId(1)], "{r}");
    assert_eq!(r.seat_failures[0].core, requests(&[1, 2]));
    // Stamped before the hold: the times alone already conflict, so the core keeps one
    // op (relaxed ops keep their times); the cross-seat check names both.
    let r = report(vec![
        op(1, 0, hold(1, &[1]), Some((10, held(50)))),
        op(2, 20, read(&[1]), Some((30, saw(49, &[(1, FREE)])))),
    ]);
    assert_eq!(r.failing_seats(), vec![SeatId(1)], "{r}");
    assert_eq!(r.seat_failures[0].core.len(), 1, "{r}");
    assert!(
        r.seat_failures[0]
            .explanation
            .contains("time went backwards"),
        "{r}"
    );
    assert!(
        r.seat_failures[0]
            .explanation
            .contains("recorded times alone cannot be ordered"),
        "{r}"
    );
    assert!(r.has(ViolationKind::TimeWentBackwards));
    // Concurrent with the hold, the read may come first.
    assert_ok(vec![
        op(1, 0, hold(1, &[1]), Some((10, held(50)))),
        op(2, 5, read(&[1]), Some((30, saw(50, &[(1, FREE)])))),
    ]);
}

#[test]
fn time_goes_backwards() {
    let r = report(vec![
        op(1, 0, hold(1, &[1]), Some((10, held(500)))),
        op(2, 20, read(&[1]), Some((30, saw(400, &[(1, held_by(1))])))),
    ]);
    assert_eq!(r.failing_seats(), vec![SeatId(1)]);
    assert!(r.has(ViolationKind::TimeWentBackwards));
    assert!(
        r.seat_failures[0]
            .explanation
            .contains("time went backwards"),
        "{r}"
    );
    // On different seats only the cross-seat check sees it.
    let r = report(vec![
        op(1, 0, hold(1, &[1]), Some((10, held(500)))),
        op(2, 20, hold(2, &[2]), Some((30, held(400)))),
    ]);
    assert!(r.seat_failures.is_empty());
    assert_eq!(r.violations.len(), 1, "{r}");
    assert_eq!(r.violations[0].requests, requests(&[1, 2]));
}

#[test]
fn a_double_sale() {
    let r = report(vec![
        op(1, 0, hold(1, &[1]), Some((10, held(10)))),
        op(
            2,
            20,
            confirm(1, 1),
            Some((30, Outcome::Confirmed { at_ms: 20 })),
        ),
        op(3, 40, hold(2, &[1]), Some((50, held(5_000)))),
        op(
            4,
            60,
            confirm(2, 2),
            Some((70, Outcome::Confirmed { at_ms: 5_010 })),
        ),
    ]);
    assert_eq!(r.failing_seats(), vec![SeatId(1)]);
    assert!(r.has(ViolationKind::DoubleSale), "{r}");
    assert_eq!(r.seat_failures[0].core, requests(&[2, 3]), "{r}");
    assert!(r.seat_failures[0].explanation.contains("sold to b1"), "{r}");
}

#[test]
fn replicas_that_disagree_on_a_sale() {
    let ops = vec![
        op(1, 0, hold(1, &[1]), Some((10, held(10)))),
        op(
            2,
            20,
            confirm(1, 1),
            Some((30, Outcome::Confirmed { at_ms: 20 })),
        ),
    ];
    let good = ReplicaSeats {
        replica: "n1".into(),
        seats: [(
            SeatId(1),
            FinalSeat::Sold {
                booking_id: BookingId(1),
            },
        )]
        .into(),
    };
    let lost = ReplicaSeats {
        replica: "n2".into(),
        seats: Default::default(),
    };
    assert!(report_with(ops.clone(), std::slice::from_ref(&good)).is_ok());
    let r = report_with(ops, &[good, lost]);
    assert_eq!(r.verdict(), Verdict::Violated);
    assert!(r.has(ViolationKind::LostSale), "{r}");
}

#[test]
fn a_released_hold_is_not_honoured() {
    let r = report(vec![
        op(1, 0, hold(1, &[1]), Some((10, held(10)))),
        op(
            2,
            20,
            release(1, 1),
            Some((30, Outcome::Released { at_ms: 20 })),
        ),
        op(3, 40, read(&[1]), Some((50, saw(30, &[(1, held_by(1))])))),
    ]);
    assert_eq!(r.failing_seats(), vec![SeatId(1)]);
}

#[test]
fn an_unknown_hold_cannot_expire_early_or_happen_twice() {
    // Live at 100, free at 150 with a 1,000 ms ttl: it would have been taken before time 0.
    let r = report(vec![
        op(1, 0, hold(1, &[1]), None),
        op(2, 10, read(&[1]), Some((20, saw(100, &[(1, held_by(1))])))),
        op(3, 30, read(&[1]), Some((40, saw(150, &[(1, FREE)])))),
    ]);
    assert_eq!(r.failing_seats(), vec![SeatId(1)], "{r}");
    // Held, expired, held again: one hold takes effect once.
    let r = report(vec![
        op(1, 0, hold(1, &[1]), None),
        op(2, 10, read(&[1]), Some((20, saw(100, &[(1, held_by(1))])))),
        op(3, 30, read(&[1]), Some((40, saw(2_000, &[(1, FREE)])))),
        op(
            4,
            50,
            read(&[1]),
            Some((60, saw(2_001, &[(1, held_by(1))]))),
        ),
    ]);
    assert_eq!(r.failing_seats(), vec![SeatId(1)], "{r}");
}

#[test]
fn a_multi_seat_taken_must_name_exactly_the_taken_seats() {
    // s2 was free, yet the answer lists it as unavailable.
    let r = report(vec![
        op(1, 0, hold(1, &[1]), Some((10, held(10)))),
        op(2, 20, hold(2, &[1, 2]), Some((30, taken(&[1, 2], 20)))),
    ]);
    assert_eq!(r.failing_seats(), vec![SeatId(2)], "{r}");
    // Nothing unavailable yet taken: malformed.
    let r = report(vec![op(1, 0, hold(1, &[1, 2]), Some((10, taken(&[], 10))))]);
    assert!(r.has(ViolationKind::MalformedOutcome), "{r}");
}

#[test]
fn a_failure_deep_in_a_long_history_shrinks_to_its_core() {
    // 300 ops of holds that expire, then a read missing a live hold, then more traffic.
    let mut ops = Vec::new();
    let mut request = 0;
    let mut t = 0;
    let mut push = |ops: &mut Vec<Op>, command: Command, outcome: Outcome, t: &mut u64| {
        request += 1;
        ops.push(op(request, *t, command, Some((*t + 5, outcome))));
        *t += 10;
        request
    };
    for k in 0..150u64 {
        let at = k * 2 * TTL;
        push(&mut ops, hold(k, &[1]), held(at), &mut t);
        push(
            &mut ops,
            read(&[1]),
            saw(at + 1, &[(1, held_by(k))]),
            &mut t,
        );
    }
    let bad_read = push(
        &mut ops,
        read(&[1]),
        saw(149 * 2 * TTL + 2, &[(1, FREE)]),
        &mut t,
    );
    for k in 150..200u64 {
        push(&mut ops, hold(k, &[1]), held(k * 2 * TTL), &mut t);
    }
    let r = report(ops);
    let failure = &r.seat_failures[0];
    // The last read still saw h149 held: with it, the stale read conflicts on its own.
    assert_eq!(failure.core, requests(&[300, bad_read]), "{r}");
    assert!(
        failure
            .explanation
            .contains("longest explainable order (300 requests): [..., r293,"),
        "{r}"
    );
    assert!(failure.core_is_minimal);
    assert_eq!(failure.prefix_len, 301);
}

#[test]
fn driver_mistakes_are_errors_not_verdicts() {
    let ops = vec![op(1, 0, hold(1, &[1]), None), op(1, 0, hold(2, &[1]), None)];
    assert!(matches!(
        check_shard(&ShardHistory { ops }, &[], &CheckLimits::default()),
        Err(HistoryError::DuplicateRequest { .. })
    ));
}
