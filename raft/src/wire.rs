//! What the typed client and a node's internal server say to each other beyond commands:
//! linearizable reads ([`Query`] → [`ReadReply`]), change-feed pages ([`FeedPage`]) and why a
//! node could not serve a call ([`ServeError`]). Plain serde data, encoded with [`crate::codec`].

use serde::{Deserialize, Serialize};

use crate::types::*;

/// Why a write or read could not be served here. Nothing was changed by this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ServeError {
    #[error("not the leader of group {group}; leader: {leader:?}")]
    NotLeader {
        group: GroupId,
        leader: Option<(NodeId, String)>,
    },
    #[error("group {0} is not hosted here")]
    UnknownGroup(GroupId),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("group unavailable: {0}")]
    Unavailable(String),
}

/// A linearizable read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    Hold(HoldId),
    Booking(BookingId),
    BookingsOf(UserId),
    EventSeats(EventId),
    /// Every seat of the event with the hold or booking it belongs to.
    SeatOwners(EventId),
    /// (available, held, sold)
    EventCounts(EventId),
    Placement(EventId),
    Groups,
    /// The meta group's node table.
    Nodes,
    Catalog {
        kind: String,
        id: String,
    },
    /// The replicated limits the group enforces.
    Limits,
    /// An event's waiting-room figures.
    Room(EventId),
    /// Where the named places of an event's waiting room stand (no keep-alive).
    Places {
        event_id: EventId,
        places: Vec<(UserId, u64)>,
    },
    /// Meta group: how many events each inventory group of the table holds.
    EventsPerGroup,
}

/// The answer to a [`Query`], variant for variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryResult {
    Hold(Option<Hold>),
    Booking(Option<Booking>),
    Bookings(Vec<Booking>),
    Seats(Option<Vec<(SeatSpec, SeatStatus)>>),
    SeatOwners(Option<Vec<(SeatId, SeatOwner)>>),
    Counts(Option<(u32, u32, u32)>),
    Placement(Option<GroupId>),
    Groups(Vec<(GroupId, Vec<(NodeId, String)>)>),
    Nodes(Vec<NodeRecord>),
    Catalog(Option<Vec<u8>>),
    Limits(Limits),
    Room(Option<RoomFigures>),
    Places(Option<Vec<Option<PlaceView>>>),
    /// Every inventory group of the table with its number of events, by group id.
    EventsPerGroup(Vec<(GroupId, u64)>),
}

/// A read's result and the time it describes (the group's clock, never behind the leader's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadReply {
    pub at_ms: u64,
    pub result: QueryResult,
}

/// One page of a group's feed, as sent over the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeedPage {
    Changes {
        group: GroupId,
        changes: Vec<(u64, Change)>,
        upto: u64,
    },
    /// Start again from this state, which is current as of log index `applied`.
    Reset {
        group: GroupId,
        applied: u64,
        snapshot: FeedSnapshot,
    },
}

/// The state a feed reader rebuilds from after a reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedSnapshot {
    pub events: Vec<(EventId, Vec<(SeatSpec, SeatStatus)>)>,
    pub catalog: Vec<(String, String, Vec<u8>)>,
    pub placement: Vec<(EventId, GroupId)>,
    pub at_ms: u64,
}
