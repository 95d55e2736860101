//! The wire and log vocabulary of the inventory: ids, commands, outcomes, changes and limits.
//!
//! Everything here is plain data (serde), shared by the state machine, the Raft log, the
//! transport and the typed client. Nothing here does I/O.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A Raft group. Group 0 is *meta* (catalog + placement); groups 1.. hold inventory.
pub type GroupId = u64;
/// A storage node's id (the openraft node id).
pub type NodeId = u64;
pub type EventId = String;
pub type SeatId = String;
pub type HoldId = String;
pub type BookingId = String;
pub type UserId = String;
pub type RequestId = String;

/// The meta group: catalog and placement table.
pub const META_GROUP: GroupId = 0;

/// Longest id (event, seat, hold, booking, user, request, catalog key) accepted, in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Most seats one event may register.
pub const MAX_SEATS_PER_EVENT: usize = 200_000;
/// Most seats one command carries; larger events are registered in chunks
/// ([`Command::RegisterEvent`] then [`Command::AddSeats`]) so no log entry grows past what a
/// heartbeat-sized AppendEntries timeout can carry.
pub const MAX_SEATS_PER_COMMAND: usize = 10_000;
/// Largest catalog document accepted, in bytes.
pub const MAX_CATALOG_DOC_BYTES: usize = 256 * 1024;

/// The most seats one hold may name: the default replicated
/// [`Limits::max_seats_per_hold`] and its ceiling ([`Command::SetLimits`] may lower it, never
/// raise it), so the API refuses a longer list before proposing it.
pub const MAX_SEATS_PER_HOLD: u32 = 10;

/// Bounds the state machine enforces. Replicated (changed only by a command) so that every
/// replica applies the same rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_seats_per_hold: u32,
    pub max_holds_per_user_per_event: u32,
    pub min_hold_ttl_ms: u64,
    pub max_hold_ttl_ms: u64,
    /// How long a finished hold stays readable before a sweep forgets it; never less than
    /// `request_retention_ms` ([`Limits::finished_hold_kept_ms`]).
    pub hold_retention_ms: u64,
    /// How long a request id is remembered for idempotent replays.
    pub request_retention_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_seats_per_hold: MAX_SEATS_PER_HOLD,
            max_holds_per_user_per_event: 4,
            min_hold_ttl_ms: 1_000,
            max_hold_ttl_ms: 3_600_000,
            hold_retention_ms: 24 * 3_600_000,
            request_retention_ms: 24 * 3_600_000,
        }
    }
}

impl Limits {
    /// How long a sweep keeps a finished hold: its retention, and no less than the request
    /// that created it is remembered, because that request's record refers to the hold for
    /// its first reply (`machine/records.rs`). A hold finishes no earlier than it was
    /// created, so kept this long it outlives the record.
    pub fn finished_hold_kept_ms(&self) -> u64 {
        self.hold_retention_ms.max(self.request_retention_ms)
    }
}

/// One seat as registered with its event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatSpec {
    pub id: SeatId,
    pub section: String,
    pub row: String,
    pub number: u32,
    pub price_minor: u64,
}

/// A client request: an optional idempotency id plus the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Replaying a request id returns the first outcome and changes nothing.
    pub request_id: Option<RequestId>,
    pub command: Command,
}

/// What a log entry carries: requests batched by the leader, stamped with its clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Leader's wall clock when it proposed; apply uses `max(now_ms, last stamped time)`.
    pub now_ms: u64,
    /// Shared: openraft clones an entry for every follower it replicates to and for every
    /// apply, and a batch holds dozens of requests with their strings. Encoded as the plain
    /// sequence, so the log's format does not change.
    #[serde(
        serialize_with = "serialize_shared",
        deserialize_with = "deserialize_shared"
    )]
    pub requests: Arc<Vec<Request>>,
}

fn serialize_shared<S: serde::Serializer, T: Serialize>(
    value: &Arc<T>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    T::serialize(value, serializer)
}

fn deserialize_shared<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Arc<T>, D::Error> {
    T::deserialize(deserializer).map(Arc::new)
}

/// Every state change the inventory knows. Each command carries its own struct, so a handler
/// takes one argument and a new field changes one type.
///
/// The log stores these (bincode): a variant keeps its position, new variants go last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    RegisterEvent(RegisterEventCmd),
    AddSeats(AddSeatsCmd),
    Hold(HoldCmd),
    Release(ReleaseCmd),
    CreateBooking(CreateBookingCmd),
    Confirm(ConfirmCmd),
    FailPayment(FailPaymentCmd),
    MarkRefunded(MarkRefundedCmd),
    /// Tidy expired holds and forget old request ids. Never needed for correctness.
    Sweep,
    SetLimits(Limits),
    PutCatalog(PutCatalogCmd),
    DeleteCatalog(DeleteCatalogCmd),
    AssignEvent(AssignEventCmd),
    PutGroup(PutGroupCmd),
    SetHoldTtl(SetHoldTtlCmd),
    /// Hold the best `quantity` free seats; the state machine chooses them.
    HoldBest(HoldBestCmd),
    /// Sets (or turns off) an event's waiting room.
    SetQueue(SetQueueCmd),
    /// Takes a place in an event's waiting room (one place per user per event).
    JoinQueue(JoinQueueCmd),
    /// Keeps places alive (a read or a stream of them) and answers where they stand.
    TouchQueue(TouchQueueCmd),
    /// The owner gives up a place.
    LeaveQueue(LeaveQueueCmd),
    /// The leader's periodic step of every waiting room: opens rooms whose sale opened
    /// (shuffling the places taken before), expires admissions, drops abandoned places,
    /// admits from the head, closes sold-out rooms. Proposed by the leader only.
    AdmitQueues,
    /// Meta group: record a storage node of the cluster and its state (the node table).
    PutNode(PutNodeCmd),
}

/// Create an event's seat inventory. Registering the same seats again is a no-op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterEventCmd {
    pub event_id: EventId,
    pub currency: String,
    /// How long a hold of this event lasts, until a [`SetHoldTtlCmd`] changes it.
    pub hold_ttl_ms: u64,
    pub seats: Vec<SeatSpec>,
}

/// Adds more seats to a registered event (for events above [`MAX_SEATS_PER_COMMAND`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddSeatsCmd {
    pub event_id: EventId,
    pub seats: Vec<SeatSpec>,
}

/// All-or-nothing hold of `seat_ids`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldCmd {
    pub event_id: EventId,
    pub hold_id: HoldId,
    pub owner: UserId,
    pub seat_ids: Vec<SeatId>,
    /// `None` (what the API sends) holds for the event's registered `hold_ttl_ms`, the one
    /// home of that rule; a value overrides it for this hold (the simulator and tests use it to
    /// vary expiries).
    pub ttl_ms: Option<u64>,
}

/// Hold the best `quantity` free seats of an event (optionally of one section): the state
/// machine picks them deterministically (see `machine::picker`): sections in the venue's
/// order, rows in order, seats nearest the row's middle, never leaving a single seat alone in
/// a row when another choice exists. The outcome is [`Outcome::Held`] with the seats chosen,
/// or [`Outcome::NotEnoughSeats`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldBestCmd {
    pub event_id: EventId,
    pub hold_id: HoldId,
    pub owner: UserId,
    pub quantity: u32,
    /// A section's name (as registered in [`SeatSpec::section`]); `None` picks in any.
    pub section: Option<String>,
    /// Same row, consecutive numbers (the default of the API); `false` may split the seats
    /// across runs and rows when no such block is free.
    pub adjacent: bool,
    /// As [`HoldCmd::ttl_ms`].
    pub ttl_ms: Option<u64>,
}

/// The owner gives a live hold's seats back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseCmd {
    pub hold_id: HoldId,
    pub owner: UserId,
}

/// Start paying for a live hold: records a booking in `pending_payment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateBookingCmd {
    pub booking_id: BookingId,
    pub hold_id: HoldId,
    pub owner: UserId,
    pub payment_ref: String,
}

/// Payment succeeded: sell the hold's seats if it is still live, else record the failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmCmd {
    pub booking_id: BookingId,
    pub payment_event_id: String,
}

/// Payment failed (declined card): the booking fails, the hold stays as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailPaymentCmd {
    pub booking_id: BookingId,
    pub payment_event_id: String,
}

/// The payment of a failed booking was refunded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkRefundedCmd {
    pub booking_id: BookingId,
}

/// Meta group: store a catalog document (opaque bytes, JSON by convention).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutCatalogCmd {
    pub kind: String,
    pub id: String,
    pub doc: Vec<u8>,
}

/// Meta group: forget a catalog document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteCatalogCmd {
    pub kind: String,
    pub id: String,
}

/// Meta group: the event's inventory lives in `group`. Keeps the first assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignEventCmd {
    pub event_id: EventId,
    pub group: GroupId,
}

/// Meta group: record a group's replicas (node id → address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutGroupCmd {
    pub group: GroupId,
    pub members: Vec<(NodeId, String)>,
}

/// Where a storage node stands in the cluster's life: it takes replicas (`Active`), is having
/// its replicas moved off (`Draining`), or holds none and never will again (`Removed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    Active,
    Draining,
    Removed,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Draining => "draining",
            NodeState::Removed => "removed",
        }
    }
}

/// One row of the meta group's node table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: NodeId,
    pub addr: String,
    pub state: NodeState,
}

/// Meta group: record a node (its address and state). A removed node stays removed: a later
/// `PutNode` of it is refused, so its id cannot come back with stale replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutNodeCmd {
    pub node: NodeRecord,
}

/// Changes how long new holds of a registered event last (holds already made keep their
/// expiry). The admin API's event PATCH proposes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetHoldTtlCmd {
    pub event_id: EventId,
    pub hold_ttl_ms: u64,
}

/// Most places one waiting room keeps (one per user who ever joined; a user who left and
/// joins again reuses theirs): bounds a room's memory.
pub const MAX_PLACES_PER_ROOM: usize = 250_000;
/// Most places one [`TouchQueueCmd`] names.
pub const MAX_PLACES_PER_TOUCH: usize = 10_000;
/// Highest admission rate a room accepts, in admissions per second.
pub const MAX_ADMIT_PER_SECOND: u32 = 100_000;
/// Longest admission and abandonment windows, in milliseconds.
pub const MAX_QUEUE_WINDOW_MS: u64 = 24 * 3_600_000;

/// An event's waiting-room settings, as the state machine applies them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSettings {
    /// Off: joins are refused and nobody is admitted (places already taken stay readable).
    pub enabled: bool,
    pub admit_per_second: u32,
    /// Places taken before this time are shuffled once when it passes; `None`: open now.
    pub opens_at_ms: Option<u64>,
    /// How long an admission lasts (the admission token's lifetime).
    pub admission_ttl_ms: u64,
    /// A waiting place not read or streamed for this long is dropped.
    pub abandon_after_ms: u64,
}

/// Sets an event's waiting room (registered events only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetQueueCmd {
    pub event_id: EventId,
    pub settings: QueueSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinQueueCmd {
    pub event_id: EventId,
    pub user: UserId,
}

/// Each `(user, ticket)` names the user's place; a pair that names no place of that user
/// answers `None` and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TouchQueueCmd {
    pub event_id: EventId,
    pub places: Vec<(UserId, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveQueueCmd {
    pub event_id: EventId,
    pub user: UserId,
    pub ticket: u64,
}

/// Where a place stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlaceState {
    Waiting,
    /// May hold seats until `expires_at_ms`.
    Admitted {
        at_ms: u64,
        expires_at_ms: u64,
    },
    /// Admitted, then bought (a booking of the event confirmed).
    Bought,
    /// Admitted, and the admission ran out before a purchase.
    Expired,
    Left,
    Abandoned,
    /// The event sold out while the place waited.
    Closed,
}

/// A place as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceView {
    pub event_id: EventId,
    pub user: UserId,
    pub ticket: u64,
    pub state: PlaceState,
    /// The place's rank in the line (set when it enters the line: at opening for places taken
    /// before it, after the shuffle). Admission follows it, so two places' ranks audit the
    /// order; `None` before the opening.
    pub order: Option<u64>,
    /// 1 for the head of the line; `None` when not waiting, or before the sale opens (the
    /// places taken before then are shuffled at opening).
    pub position: Option<u64>,
    /// `position` divided by the admission rate measured over the last seconds (the
    /// configured rate before any admission); `None` when no estimate can be made.
    pub estimated_wait_ms: Option<u64>,
}

/// A waiting room's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomFigures {
    pub event_id: EventId,
    pub settings: QueueSettings,
    pub opened: bool,
    /// The event sold out and the room closed.
    pub closed: bool,
    pub waiting: u64,
    /// Admitted and not yet bought (admission not expired).
    pub admitted: u64,
    pub admitted_total: u64,
    pub bought: u64,
    pub expired: u64,
    pub left: u64,
    pub abandoned: u64,
    pub closed_places: u64,
    /// Seats not sold: the admission gate keeps `admitted <= unsold`.
    pub unsold: u64,
    /// Admissions per second measured over the last seconds (milli-admissions per second).
    pub admit_rate_milli: u64,
    /// The seed the places taken before opening were shuffled with (`None` until opened, or
    /// when nobody joined early).
    pub shuffle_seed: Option<u64>,
}

impl Command {
    /// Whether the command only tidies or steps time-driven rules, and may be proposed by the
    /// leader itself.
    pub fn is_housekeeping(&self) -> bool {
        matches!(self, Command::Sweep | Command::AdmitQueues)
    }

    /// Whether applying the command twice leaves the state as applying it once and answers
    /// alike, so its request id need not be remembered (a million keep-alives leave no
    /// request records): joining again answers the same place, a keep-alive or a leave again
    /// changes nothing more.
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self,
            Command::JoinQueue(_) | Command::TouchQueue(_) | Command::LeaveQueue(_)
        )
    }
}

/// Status of a hold, as stored. `Active` holds past `expires_at_ms` read as expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldStatus {
    Active,
    Released,
    Confirmed,
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BookingStatus {
    PendingPayment,
    Confirmed,
    Failed,
    Refunded,
}

/// Why a booking failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureReason {
    HoldExpired,
    HoldReleased,
    PaymentDeclined,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub hold_id: HoldId,
    pub event_id: EventId,
    pub owner: UserId,
    pub seat_ids: Vec<SeatId>,
    pub total_minor: u64,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub status: HoldStatus,
    /// When the status last changed (release, confirm, sweep).
    pub finished_at_ms: Option<u64>,
    pub booking_id: Option<BookingId>,
}

impl Hold {
    /// Whether the hold still owns its seats at `now_ms`.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.status == HoldStatus::Active && now_ms < self.expires_at_ms
    }

    /// The status a reader at `now_ms` should see.
    pub fn status_at(&self, now_ms: u64) -> HoldStatus {
        if self.status == HoldStatus::Active && now_ms >= self.expires_at_ms {
            HoldStatus::Expired
        } else {
            self.status
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    pub booking_id: BookingId,
    pub event_id: EventId,
    pub hold_id: HoldId,
    pub owner: UserId,
    pub seat_ids: Vec<SeatId>,
    pub total_minor: u64,
    pub currency: String,
    pub status: BookingStatus,
    pub failure: Option<FailureReason>,
    pub payment_ref: String,
    /// The payment event that settled this booking (confirm/fail are idempotent on it).
    pub payment_event_id: Option<String>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// A business rejection: replicated like any outcome, never an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    UnknownEvent,
    UnknownSeats(Vec<SeatId>),
    UnknownHold,
    UnknownBooking,
    NotOwner,
    /// The hold is not live: expired, released or confirmed.
    HoldNotActive(HoldStatus),
    TooManySeats {
        max: u32,
    },
    TooManyHolds {
        max: u32,
    },
    TtlOutOfRange {
        min_ms: u64,
        max_ms: u64,
    },
    DuplicateSeats(Vec<SeatId>),
    NoSeats,
    /// The hold or booking id is already used by a different request.
    IdInUse,
    /// The request id was first used with a different command.
    RequestIdReused,
    /// The event exists with different seats.
    EventConflict,
    /// The booking is in a state that does not allow the command.
    BookingState(BookingStatus),
    /// The hold already has a booking that is pending or confirmed.
    HoldAlreadyBooked(BookingId),
    Invalid(String),
    /// A best-available hold named a section the event does not have.
    UnknownSection(String),
    /// The event has no waiting room (or it is turned off).
    NoWaitingRoom,
    /// The waiting room holds [`MAX_PLACES_PER_ROOM`] places.
    RoomFull,
    /// No such place of this user.
    UnknownPlace,
}

/// The result of one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Registered {
        n_seats: u32,
    },
    /// Shared with the replica's hold table and the request record (encoded as the plain
    /// `Hold`), so neither a reply nor a checkpoint of the record copies the hold.
    Held(Arc<Hold>),
    /// Nothing changed; these seats were not free.
    Unavailable {
        seat_ids: Vec<SeatId>,
    },
    Released,
    BookingCreated(Booking),
    /// The booking's seats are sold (also on a replayed payment event).
    Confirmed(Booking),
    /// The booking failed; when it had been paid the caller refunds it.
    BookingFailed(Booking),
    Refunded(Booking),
    Swept {
        n_holds_expired: u32,
        n_holds_forgotten: u32,
        n_requests_forgotten: u32,
    },
    /// The event's inventory lives in this group (the first assignment wins).
    Assigned {
        group: GroupId,
    },
    Done,
    Rejected(Rejection),
    /// A best-available hold found too few seats; nothing changed. `available` is the most
    /// seats such a request could get now: free seats in scope, or with `adjacent` the
    /// longest block of consecutive free seats in one row.
    NotEnoughSeats {
        available: u32,
    },
    /// A waiting-room place (a join, or a join again answering the same place).
    Place(PlaceView),
    /// A keep-alive's places, one per pair asked for.
    Places(Vec<Option<PlaceView>>),
    /// What an admission step did.
    QueuesStepped {
        n_admitted: u32,
        n_closed: u32,
    },
}

/// An outcome with the (effective, leader-stamped) time it was decided at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub at_ms: u64,
    pub outcome: Outcome,
}

/// What a seat looks like to readers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeatStatus {
    Available,
    /// Held until `until_ms` (a reader past that time treats the seat as available).
    Held {
        until_ms: u64,
    },
    Sold,
}

/// Who a seat belongs to right now: what operators and the simulator's checker read (the
/// public seat map shows [`SeatStatus`], which names no holds or bookings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeatOwner {
    Free,
    Held { hold_id: HoldId, until_ms: u64 },
    Sold { booking_id: BookingId },
}

/// One change an applied command made, in the order it was made: the change feed's unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    EventRegistered {
        event_id: EventId,
    },
    Seat {
        event_id: EventId,
        seat_id: SeatId,
        status: SeatStatus,
    },
    Hold {
        hold_id: HoldId,
        status: HoldStatus,
    },
    Booking {
        booking_id: BookingId,
        status: BookingStatus,
    },
    Catalog {
        kind: String,
        id: String,
        deleted: bool,
    },
    Placement {
        event_id: EventId,
        group: GroupId,
    },
    Group {
        group: GroupId,
    },
    Node {
        node_id: NodeId,
    },
}

impl From<Rejection> for Outcome {
    fn from(rejection: Rejection) -> Outcome {
        Outcome::Rejected(rejection)
    }
}

impl From<Rejection> for Box<Outcome> {
    fn from(rejection: Rejection) -> Box<Outcome> {
        Box::new(Outcome::Rejected(rejection))
    }
}
