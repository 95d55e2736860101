//! An event's seat layout, compact: a seat is a `u32` index, its id a slice of one string
//! arena, its section and row an index into a table of rows kept in the venue's order, its
//! price an index into the event's distinct prices. About 24 bytes per seat plus its id,
//! where a [`SeatSpec`] per seat took three strings (and a B-tree of id copies found them).
//!
//! The rows are also the best-available picker's index: sections in the order their first
//! seat was registered, rows likewise within a section, a row's seats sorted by number.
//!
//! Stored one record per registration chunk (a `RegisterEvent` or `AddSeats`), each the
//! `Vec<SeatSpec>` of that chunk, so adding seats writes only the new ones; rebuilt from the
//! chunks on load.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Serialize;

use super::memory::alloc_bytes;
use crate::codec::encode;
use crate::types::*;

/// One seat as the layout is built from it: borrowed, so extending a layout copies no
/// string per seat.
#[derive(Debug, Clone, Copy, Serialize)]
struct SeatRef<'a> {
    // Field order is SeatSpec's: this is how a layout is encoded.
    id: &'a str,
    section: &'a str,
    row: &'a str,
    number: u32,
    price_minor: u64,
}

impl<'a> From<&'a SeatSpec> for SeatRef<'a> {
    fn from(s: &'a SeatSpec) -> Self {
        SeatRef {
            id: &s.id,
            section: &s.section,
            row: &s.row,
            number: s.number,
            price_minor: s.price_minor,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    name: String,
    /// Its section in `sections`.
    section: u32,
    /// Seat indexes sorted by seat number (then registration order).
    seats: Vec<u32>,
    /// Lowest plus highest seat number: twice the row's middle.
    middle2: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Layout {
    /// Seat ids, concatenated in registration order.
    ids: String,
    /// Per seat: where its id ends in `ids` (it starts where the previous one ends).
    id_ends: Vec<u32>,
    /// Seat indexes sorted by id: a seat id's index by binary search.
    by_id: Vec<u32>,
    /// Per seat: its row in `rows`.
    row_of: Vec<u32>,
    /// Per seat: its number in the row.
    number: Vec<u32>,
    /// Per seat: its price in `prices`.
    price_of: Vec<u32>,
    /// The event's distinct prices, in the order they first appear.
    prices: Vec<u64>,
    /// Section name → its rows' range in `rows`, in the venue's order.
    sections: Vec<(String, Range<usize>)>,
    /// Rows in the venue's order (by section, then first appearance within it).
    rows: Vec<Row>,
    /// Where each registration chunk ends (seats registered by it and those before).
    chunk_ends: Vec<u32>,
}

impl Layout {
    /// The layout of `seats`, or the ids registered more than once (sorted, each once).
    pub(super) fn new(seats: &[SeatSpec]) -> Result<Layout, Vec<SeatId>> {
        Layout::build(
            seats.iter().map(SeatRef::from),
            seats.len(),
            vec![seats.len() as u32],
        )
    }

    /// The layout registered in `chunks`, in order.
    pub(super) fn from_chunks(chunks: &[Vec<SeatSpec>]) -> Result<Layout, Vec<SeatId>> {
        let chunk_ends = chunks
            .iter()
            .scan(0u32, |end, chunk| {
                *end += chunk.len() as u32;
                Some(*end)
            })
            .collect();
        let seats = chunks.iter().flatten().map(SeatRef::from);
        Layout::build(seats, chunks.iter().map(Vec::len).sum(), chunk_ends)
    }

    /// This layout with `more` seats after its own.
    pub(super) fn extended(&self, more: &[SeatSpec]) -> Result<Layout, Vec<SeatId>> {
        let seats = (0..self.n_seats())
            .map(|i| self.seat_ref(i))
            .chain(more.iter().map(SeatRef::from));
        let n_seats = self.n_seats() + more.len();
        let mut chunk_ends = self.chunk_ends.clone();
        chunk_ends.push(n_seats as u32);
        Layout::build(seats, n_seats, chunk_ends)
    }

    fn build<'a>(
        seats: impl Iterator<Item = SeatRef<'a>>,
        n_seats: usize,
        chunk_ends: Vec<u32>,
    ) -> Result<Layout, Vec<SeatId>> {
        let mut ids = String::new();
        let mut id_ends = Vec::with_capacity(n_seats);
        let mut number = Vec::with_capacity(n_seats);
        let mut price_of = Vec::with_capacity(n_seats);
        let mut prices: Vec<u64> = Vec::new();
        let mut price_tiers: BTreeMap<u64, u32> = BTreeMap::new();
        let mut section_order: BTreeMap<&str, u32> = BTreeMap::new();
        // (section, row name) → row in order of first appearance, and that row's section.
        let mut row_ids: BTreeMap<(u32, &str), u32> = BTreeMap::new();
        let mut appearing: Vec<(u32, &str)> = Vec::new();
        let mut row_of = Vec::with_capacity(n_seats);
        for seat in seats {
            ids.push_str(seat.id);
            id_ends.push(ids.len() as u32);
            number.push(seat.number);
            price_of.push(*price_tiers.entry(seat.price_minor).or_insert_with(|| {
                prices.push(seat.price_minor);
                prices.len() as u32 - 1
            }));
            let n_sections = section_order.len() as u32;
            let section = *section_order.entry(seat.section).or_insert(n_sections);
            let row = *row_ids.entry((section, seat.row)).or_insert_with(|| {
                appearing.push((section, seat.row));
                appearing.len() as u32 - 1
            });
            row_of.push(row);
        }
        ids.shrink_to_fit();
        let mut layout = Layout {
            ids,
            id_ends,
            by_id: Vec::new(),
            row_of,
            number,
            price_of,
            prices,
            sections: Vec::new(),
            rows: Vec::new(),
            chunk_ends,
        };
        let mut by_id: Vec<u32> = (0..layout.n_seats() as u32).collect();
        by_id.sort_unstable_by(|&a, &b| layout.id(a as usize).cmp(layout.id(b as usize)));
        let mut duplicates: Vec<SeatId> = by_id
            .windows(2)
            .filter(|w| layout.id(w[0] as usize) == layout.id(w[1] as usize))
            .map(|w| layout.id(w[0] as usize).to_owned())
            .collect();
        if !duplicates.is_empty() {
            duplicates.dedup();
            return Err(duplicates);
        }
        layout.by_id = by_id;
        layout.order_rows(&section_order, &appearing);
        Ok(layout)
    }

    /// Puts the rows (numbered by first appearance in `row_of`) in the venue's order: by
    /// section's first appearance, then the row's; each row's seats by number.
    fn order_rows(&mut self, section_order: &BTreeMap<&str, u32>, appearing: &[(u32, &str)]) {
        let mut order: Vec<usize> = (0..appearing.len()).collect();
        order.sort_by_key(|&r| (appearing[r].0, r));
        let mut position = vec![0u32; appearing.len()];
        for (p, &r) in order.iter().enumerate() {
            position[r] = p as u32;
        }
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); appearing.len()];
        for (idx, row) in self.row_of.iter_mut().enumerate() {
            *row = position[*row as usize];
            members[*row as usize].push(idx as u32);
        }
        let mut names: Vec<&str> = vec![""; section_order.len()];
        for (name, &i) in section_order {
            names[i as usize] = name;
        }
        self.sections = names.iter().map(|n| (n.to_string(), 0..0)).collect();
        for (p, &r) in order.iter().enumerate() {
            let (section, name) = appearing[r];
            let mut seats = std::mem::take(&mut members[p]);
            seats.sort_by_key(|&i| (self.number[i as usize], i));
            let lo = self.number[seats[0] as usize];
            let hi = self.number[seats[seats.len() - 1] as usize];
            let range = &mut self.sections[section as usize].1;
            if range.start == range.end {
                *range = p..p;
            }
            range.end = p + 1;
            self.rows.push(Row {
                name: name.to_owned(),
                section,
                seats,
                middle2: u64::from(lo) + u64::from(hi),
            });
        }
    }

    pub(super) fn n_chunks(&self) -> usize {
        self.chunk_ends.len()
    }

    /// Registration chunk `chunk` as stored: the encoding of its `Vec<SeatSpec>`.
    pub(super) fn encode_chunk(&self, chunk: usize) -> Option<Vec<u8>> {
        let end = *self.chunk_ends.get(chunk)? as usize;
        let start = match chunk {
            0 => 0,
            _ => self.chunk_ends[chunk - 1] as usize,
        };
        let seats: Vec<SeatRef> = (start..end).map(|i| self.seat_ref(i)).collect();
        Some(encode(&seats))
    }

    pub(super) fn n_seats(&self) -> usize {
        self.id_ends.len()
    }

    pub(super) fn id(&self, idx: usize) -> &str {
        let start = match idx {
            0 => 0,
            _ => self.id_ends[idx - 1] as usize,
        };
        &self.ids[start..self.id_ends[idx] as usize]
    }

    /// The index of the seat called `id`.
    pub(super) fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id
            .binary_search_by(|&i| self.id(i as usize).cmp(id))
            .ok()
            .map(|p| self.by_id[p] as usize)
    }

    pub(super) fn number(&self, idx: usize) -> u32 {
        self.number[idx]
    }

    pub(super) fn price_minor(&self, idx: usize) -> u64 {
        self.prices[self.price_of[idx] as usize]
    }

    fn seat_ref(&self, idx: usize) -> SeatRef<'_> {
        let row = &self.rows[self.row_of[idx] as usize];
        SeatRef {
            id: self.id(idx),
            section: &self.sections[row.section as usize].0,
            row: &row.name,
            number: self.number[idx],
            price_minor: self.price_minor(idx),
        }
    }

    /// The seat at `idx` as registered.
    pub(super) fn spec(&self, idx: usize) -> SeatSpec {
        let seat = self.seat_ref(idx);
        SeatSpec {
            id: seat.id.to_owned(),
            section: seat.section.to_owned(),
            row: seat.row.to_owned(),
            number: seat.number,
            price_minor: seat.price_minor,
        }
    }

    /// Every seat as registered, in registration order.
    pub(super) fn specs(&self) -> impl Iterator<Item = SeatSpec> + '_ {
        (0..self.n_seats()).map(|i| self.spec(i))
    }

    /// Whether the layout's first seats are exactly `seats`.
    pub(super) fn starts_with(&self, seats: &[SeatSpec]) -> bool {
        seats.len() <= self.n_seats()
            && seats.iter().enumerate().all(|(i, s)| {
                let mine = self.seat_ref(i);
                mine.id == s.id
                    && mine.section == s.section
                    && mine.row == s.row
                    && mine.number == s.number
                    && mine.price_minor == s.price_minor
            })
    }

    pub(super) fn n_rows(&self) -> usize {
        self.rows.len()
    }

    pub(super) fn row_of(&self, idx: usize) -> usize {
        self.row_of[idx] as usize
    }

    /// The seats of `row`, by number.
    pub(super) fn row_seats(&self, row: usize) -> &[u32] {
        &self.rows[row].seats
    }

    /// Twice the middle of `row`'s numbers.
    pub(super) fn row_middle2(&self, row: usize) -> u64 {
        self.rows[row].middle2
    }

    pub(super) fn section_rows(&self, name: &str) -> Option<Range<usize>> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, range)| range.clone())
    }

    /// Heap bytes, per part: ids, the id index, numbers and prices, rows.
    pub(super) fn heap_bytes(&self) -> [(&'static str, u64); 4] {
        let column = |v: &Vec<u32>| alloc_bytes(v.capacity() * 4);
        let ids = alloc_bytes(self.ids.capacity()) + column(&self.id_ends);
        let seats =
            column(&self.number) + column(&self.price_of) + alloc_bytes(self.prices.capacity() * 8);
        let rows = column(&self.row_of)
            + alloc_bytes(self.rows.capacity() * std::mem::size_of::<Row>())
            + self
                .rows
                .iter()
                .map(|r| alloc_bytes(r.name.len()) + column(&r.seats))
                .sum::<u64>()
            + alloc_bytes(self.sections.capacity() * std::mem::size_of::<(String, Range<usize>)>())
            + column(&self.chunk_ends)
            + self
                .sections
                .iter()
                .map(|(n, _)| alloc_bytes(n.len()))
                .sum::<u64>();
        [
            ("seat ids", ids),
            ("seat index", column(&self.by_id)),
            ("seat numbers, prices", seats),
            ("rows", rows),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode, encode};

    fn seat(id: &str, section: &str, row: &str, number: u32) -> SeatSpec {
        SeatSpec {
            id: id.into(),
            section: section.into(),
            row: row.into(),
            number,
            price_minor: 100 + u64::from(number),
        }
    }

    fn venue() -> Vec<SeatSpec> {
        vec![
            seat("b1", "B", "1", 2),
            seat("a1", "A", "1", 1),
            seat("b0", "B", "1", 1),
            seat("b2", "B", "2", 1),
            seat("a2", "A", "2", 1),
        ]
    }

    #[test]
    fn rows_follow_the_venues_order_and_seats_their_numbers() {
        let layout = Layout::new(&venue()).unwrap();
        assert_eq!(
            layout
                .sections
                .iter()
                .map(|(n, r)| (n.as_str(), r.clone()))
                .collect::<Vec<_>>(),
            vec![("B", 0..2), ("A", 2..4)]
        );
        assert_eq!(layout.row_seats(0), &[2, 0], "by number");
        assert_eq!(layout.row_middle2(0), 3);
        assert_eq!(layout.row_of(3), 1);
        assert_eq!(layout.row_of(4), 3);
        assert_eq!(layout.section_rows("A"), Some(2..4));
        assert_eq!(layout.section_rows("C"), None);
    }

    #[test]
    fn seats_are_found_by_id_and_given_back_as_registered() {
        let seats = venue();
        let layout = Layout::new(&seats).unwrap();
        for (i, s) in seats.iter().enumerate() {
            assert_eq!(layout.index_of(&s.id), Some(i));
            assert_eq!(layout.spec(i), *s);
        }
        assert_eq!(layout.index_of("c9"), None);
        assert_eq!(layout.index_of(""), None);
        assert!(layout.starts_with(&seats[..3]));
        assert!(!layout.starts_with(&[seat("b1", "B", "1", 3)]));
    }

    #[test]
    fn duplicate_ids_are_named_once_each_in_order() {
        let mut seats = venue();
        seats.push(seat("b1", "C", "9", 9));
        seats.push(seat("a1", "C", "9", 8));
        seats.push(seat("b1", "C", "9", 7));
        assert_eq!(Layout::new(&seats), Err(vec!["a1".into(), "b1".into()]));
        let layout = Layout::new(&venue()).unwrap();
        assert_eq!(
            layout.extended(&[seat("b0", "Z", "1", 1)]),
            Err(vec!["b0".into()])
        );
    }

    #[test]
    fn an_extended_layout_is_the_layout_of_all_its_seats() {
        let seats = venue();
        let more = vec![seat("c1", "C", "1", 1), seat("a3", "A", "1", 3)];
        let extended = Layout::new(&seats).unwrap().extended(&more).unwrap();
        assert_eq!(
            extended,
            Layout::from_chunks(&[seats.clone(), more.clone()]).unwrap()
        );
        let all: Vec<SeatSpec> = seats.into_iter().chain(more).collect();
        let whole = Layout::new(&all).unwrap();
        assert_eq!(whole.n_chunks(), 1);
        assert_eq!(
            Layout {
                chunk_ends: whole.chunk_ends.clone(),
                ..extended.clone()
            },
            whole
        );
        assert_eq!(extended.section_rows("A"), Some(2..4));
        assert_eq!(extended.row_seats(2), &[1, 6], "a1 then a3");
    }

    #[test]
    fn chunks_encode_as_the_seats_registered_in_them_and_rebuild_the_layout() {
        let seats = venue();
        let more = vec![seat("c1", "C", "1", 1)];
        let layout = Layout::new(&seats).unwrap().extended(&more).unwrap();
        assert_eq!(layout.n_chunks(), 2);
        assert_eq!(layout.encode_chunk(0), Some(encode(&seats)));
        assert_eq!(layout.encode_chunk(1), Some(encode(&more)));
        assert_eq!(layout.encode_chunk(2), None);
        let chunks: Vec<Vec<SeatSpec>> = (0..2)
            .map(|c| decode(&layout.encode_chunk(c).unwrap()).unwrap())
            .collect();
        assert_eq!(Layout::from_chunks(&chunks), Ok(layout));
        assert_eq!(
            Layout::from_chunks(&[seats.clone(), seats[..1].to_vec()]),
            Err(vec!["b1".into()])
        );
    }
}
