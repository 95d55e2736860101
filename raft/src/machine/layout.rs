//! An event's seat layout, compact: a seat is a `u32` index, its id a slice of one string
//! arena, its section and row an index into a table of rows kept in the venue's order, its
//! price an index into the event's distinct prices; numbers, rows and price tiers are
//! [`Column`]s, a byte or two per seat in any real venue, and an id's end two bytes. About
//! 14 bytes per seat plus its id, where a [`SeatSpec`] per seat took three strings (and a
//! B-tree of id copies found them).
//!
//! The rows are also the best-available picker's index: sections in the order their first
//! seat was registered, rows likewise within a section, a row's seats sorted by number.
//!
//! Stored one record per registration chunk (a `RegisterEvent` or `AddSeats`), each the
//! `Vec<SeatSpec>` of that chunk, so adding seats writes only the new ones; rebuilt from the
//! chunks on load.

use std::collections::HashMap;
use std::ops::Range;

use serde::Serialize;

use super::column::Column;
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

/// Seats per block of ids (see `Layout::id_ends`).
const ID_BLOCK: usize = 256;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Layout {
    /// Seat ids, concatenated in registration order.
    ids: String,
    /// Per seat: where its id ends in `ids`, counted from the start of its block of
    /// [`ID_BLOCK`] seats (it starts where the previous one ends). Two bytes a seat: a
    /// block's ids take at most 256 × 128 bytes.
    id_ends: Column,
    /// Per block of [`ID_BLOCK`] seats: where its first id starts in `ids`.
    id_blocks: Vec<u32>,
    /// Seat indexes sorted by id: a seat id's index by binary search.
    by_id: Vec<u32>,
    /// Per seat: its row in `rows`.
    row_of: Column,
    /// Per seat: its number in the row.
    number: Column,
    /// Per seat: its price in `prices`.
    price_of: Column,
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
        Layout::default().extended_by(seats.iter().map(SeatRef::from), vec![seats.len() as u32])
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
        Layout::default().extended_by(seats, chunk_ends)
    }

    /// This layout with `more` seats after its own, registered as one more chunk.
    pub(super) fn extended(&self, more: &[SeatSpec]) -> Result<Layout, Vec<SeatId>> {
        let mut chunk_ends = self.chunk_ends.clone();
        chunk_ends.push((self.n_seats() + more.len()) as u32);
        self.extended_by(more.iter().map(SeatRef::from), chunk_ends)
    }

    /// This layout with `more` seats after its own (the chunks ending at `chunk_ends`),
    /// without revisiting the seats already there: only the new ids are sorted (and merged
    /// into the index), only the rows they join are sorted again. A big event registered in
    /// chunks therefore costs about its size once, not once per chunk.
    fn extended_by<'a>(
        &self,
        more: impl Iterator<Item = SeatRef<'a>>,
        chunk_ends: Vec<u32>,
    ) -> Result<Layout, Vec<SeatId>> {
        let n_old = self.n_seats();
        let n_seats = chunk_ends.last().map_or(0, |&end| end as usize);
        let mut ids = self.ids.clone();
        let mut id_ends = self.id_ends.copy_with_capacity(n_seats);
        let mut id_blocks = Vec::with_capacity(n_seats.div_ceil(ID_BLOCK));
        id_blocks.extend_from_slice(&self.id_blocks);
        let mut number = self.number.copy_with_capacity(n_seats);
        let mut price_of = self.price_of.copy_with_capacity(n_seats);
        let mut row_of = self.row_of.copy_with_capacity(n_seats);
        let mut prices = self.prices.clone();
        let mut price_tiers: HashMap<u64, u32> = (0..prices.len() as u32)
            .map(|i| (prices[i as usize], i))
            .collect();
        let mut section_names: Vec<&str> = self.sections.iter().map(|(n, _)| n.as_str()).collect();
        let mut section_index: HashMap<&str, u32> = (0..section_names.len() as u32)
            .map(|i| (section_names[i as usize], i))
            .collect();
        // Rows are named by id here: the old ones keep theirs (their place in the venue's
        // order), new ones follow in order of first appearance.
        let mut row_ids: HashMap<(u32, &str), u32> = self
            .rows
            .iter()
            .enumerate()
            .map(|(p, r)| ((r.section, r.name.as_str()), p as u32))
            .collect();
        let mut new_rows: Vec<(u32, &str)> = Vec::new();
        for seat in more {
            let idx = id_ends.len();
            if idx.is_multiple_of(ID_BLOCK) {
                id_blocks.push(ids.len() as u32);
            }
            ids.push_str(seat.id);
            id_ends.push(ids.len() as u32 - id_blocks[idx / ID_BLOCK]);
            number.push(seat.number);
            price_of.push(*price_tiers.entry(seat.price_minor).or_insert_with(|| {
                prices.push(seat.price_minor);
                prices.len() as u32 - 1
            }));
            let section = *section_index.entry(seat.section).or_insert_with(|| {
                section_names.push(seat.section);
                section_names.len() as u32 - 1
            });
            let row = *row_ids.entry((section, seat.row)).or_insert_with(|| {
                new_rows.push((section, seat.row));
                (self.rows.len() + new_rows.len() - 1) as u32
            });
            row_of.push(row);
        }
        ids.shrink_to_fit();
        let mut layout = Layout {
            ids,
            id_ends,
            id_blocks,
            by_id: Vec::new(),
            row_of,
            number,
            price_of,
            prices,
            sections: Vec::new(),
            rows: Vec::new(),
            chunk_ends,
        };
        layout.by_id = self.merged_index(&layout, n_old)?;
        // The venue's order: a section's old rows, then its new ones; new sections last.
        let mut order: Vec<usize> = (0..self.rows.len() + new_rows.len()).collect();
        let section_of = |r: usize| match self.rows.get(r) {
            Some(row) => row.section,
            None => new_rows[r - self.rows.len()].0,
        };
        order.sort_by_key(|&r| (section_of(r), r));
        let mut position = vec![0u32; order.len()];
        for (p, &r) in order.iter().enumerate() {
            position[r] = p as u32;
        }
        layout.row_of.map_in_place(|row| position[row as usize]);
        layout.sections = section_names
            .iter()
            .map(|n| (n.to_string(), 0..0))
            .collect();
        for (p, &r) in order.iter().enumerate() {
            let row = match self.rows.get(r) {
                Some(row) => row.clone(),
                None => Row {
                    name: new_rows[r - self.rows.len()].1.to_owned(),
                    section: new_rows[r - self.rows.len()].0,
                    seats: Vec::new(),
                    middle2: 0,
                },
            };
            let range = &mut layout.sections[row.section as usize].1;
            if range.start == range.end {
                *range = p..p;
            }
            range.end = p + 1;
            layout.rows.push(row);
        }
        let mut touched = Vec::new();
        for idx in n_old..n_seats {
            let row = layout.row_of.get(idx) as usize;
            if layout.rows[row]
                .seats
                .last()
                .is_none_or(|&last| last < n_old as u32)
            {
                touched.push(row);
            }
            layout.rows[row].seats.push(idx as u32);
        }
        for row in touched {
            let numbers = &layout.number;
            let row = &mut layout.rows[row];
            row.seats.sort_by_key(|&i| (numbers.get(i as usize), i));
            let lo = numbers.get(row.seats[0] as usize);
            let hi = numbers.get(row.seats[row.seats.len() - 1] as usize);
            row.middle2 = u64::from(lo) + u64::from(hi);
        }
        Ok(layout)
    }

    /// `extended`'s id index: this layout's, merged with the sorted ids of `layout`'s seats
    /// from `n_old` on; or every id registered twice (sorted, each once).
    fn merged_index(&self, layout: &Layout, n_old: usize) -> Result<Vec<u32>, Vec<SeatId>> {
        let mut new: Vec<u32> = (n_old as u32..layout.n_seats() as u32).collect();
        new.sort_unstable_by(|&a, &b| layout.id(a as usize).cmp(layout.id(b as usize)));
        let mut duplicates: Vec<SeatId> = new
            .windows(2)
            .filter(|w| layout.id(w[0] as usize) == layout.id(w[1] as usize))
            .map(|w| layout.id(w[0] as usize).to_owned())
            .collect();
        let mut by_id = Vec::with_capacity(layout.n_seats());
        let (mut old, mut new) = (self.by_id.iter().peekable(), new.iter().peekable());
        while let (Some(&&a), Some(&&b)) = (old.peek(), new.peek()) {
            match layout.id(a as usize).cmp(layout.id(b as usize)) {
                std::cmp::Ordering::Greater => {
                    by_id.push(b);
                    new.next();
                }
                ordering => {
                    if ordering.is_eq() {
                        duplicates.push(layout.id(a as usize).to_owned());
                    }
                    by_id.push(a);
                    old.next();
                }
            }
        }
        by_id.extend(old);
        by_id.extend(new);
        if !duplicates.is_empty() {
            duplicates.sort_unstable();
            duplicates.dedup();
            return Err(duplicates);
        }
        Ok(by_id)
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
        let base = self.id_blocks[idx / ID_BLOCK] as usize;
        let start = match idx % ID_BLOCK {
            0 => base,
            _ => base + self.id_ends.get(idx - 1) as usize,
        };
        &self.ids[start..base + self.id_ends.get(idx) as usize]
    }

    /// The index of the seat called `id`.
    pub(super) fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id
            .binary_search_by(|&i| self.id(i as usize).cmp(id))
            .ok()
            .map(|p| self.by_id[p] as usize)
    }

    pub(super) fn number(&self, idx: usize) -> u32 {
        self.number.get(idx)
    }

    pub(super) fn price_minor(&self, idx: usize) -> u64 {
        self.prices[self.price_of.get(idx) as usize]
    }

    fn seat_ref(&self, idx: usize) -> SeatRef<'_> {
        let row = &self.rows[self.row_of.get(idx) as usize];
        SeatRef {
            id: self.id(idx),
            section: &self.sections[row.section as usize].0,
            row: &row.name,
            number: self.number.get(idx),
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
        self.row_of.get(idx) as usize
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
        let ids =
            alloc_bytes(self.ids.capacity()) + self.id_ends.heap_bytes() + column(&self.id_blocks);
        let seats = self.number.heap_bytes()
            + self.price_of.heap_bytes()
            + alloc_bytes(self.prices.capacity() * 8);
        let rows = self.row_of.heap_bytes()
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

    proptest::proptest! {
        /// Extending chunk by chunk gives the layout built from all chunks at once, and the
        /// same duplicates: ids, sections and rows drawn from small sets so that chunks
        /// join old rows, open new ones in old and new sections, and repeat ids; some seat
        /// numbers need two or four bytes, so the number column widens midway. Every chunk
        /// encodes as it was registered.
        #[test]
        fn extending_chunk_by_chunk_is_building_from_all_chunks(
            chunks in proptest::collection::vec(
                proptest::collection::vec(
                    (
                        0u32..60,
                        0u8..4,
                        0u8..5,
                        proptest::prop_oneof![8 => 0u32..9, 1 => 0u32..70_000, 1 => proptest::num::u32::ANY],
                        0u64..3,
                    ),
                    1..12,
                ),
                1..6,
            )
        ) {
            let chunks: Vec<Vec<SeatSpec>> = chunks
                .into_iter()
                .map(|c| {
                    c.into_iter()
                        .map(|(id, section, row, number, price)| SeatSpec {
                            id: format!("s{id}"),
                            section: format!("S{section}"),
                            row: row.to_string(),
                            number,
                            price_minor: 1000 * price,
                        })
                        .collect()
                })
                .collect();
            let mut built = Layout::new(&chunks[0]);
            for (n, chunk) in chunks.iter().enumerate().skip(1) {
                let Ok(layout) = &built else { break };
                built = layout.extended(chunk);
                if built.is_err() {
                    // The first failing chunk names the same ids as building up to it.
                    proptest::prop_assert_eq!(&built, &Layout::from_chunks(&chunks[..=n]));
                }
            }
            if let Ok(layout) = &built {
                proptest::prop_assert_eq!(Ok(layout.clone()), Layout::from_chunks(&chunks));
                for (n, chunk) in chunks.iter().enumerate() {
                    proptest::prop_assert_eq!(layout.encode_chunk(n), Some(encode(chunk)));
                }
            }
        }
    }

    /// Ids are found across blocks of [`ID_BLOCK`] seats, whichever chunk a block began
    /// in, ids as long as the inventory allows among them.
    #[test]
    fn ids_are_found_across_id_blocks_and_chunks() {
        let id = |i: usize| match i % 7 {
            0 => format!("{i:0>128}"),
            _ => format!("s{i}"),
        };
        let chunks: Vec<Vec<SeatSpec>> = [0..300, 300..301, 301..770, 770..1000]
            .into_iter()
            .map(|range| {
                range
                    .map(|i| seat(&id(i), "A", &(i / 20).to_string(), i as u32 % 20))
                    .collect()
            })
            .collect();
        let mut layout = Layout::new(&chunks[0]).unwrap();
        for chunk in &chunks[1..] {
            layout = layout.extended(chunk).unwrap();
        }
        assert_eq!(Ok(layout.clone()), Layout::from_chunks(&chunks));
        assert_eq!(layout.n_seats(), 1000);
        for i in 0..1000 {
            assert_eq!(layout.id(i), id(i), "seat {i}");
            assert_eq!(layout.index_of(&id(i)), Some(i));
        }
        assert_eq!(layout.index_of("s7"), None, "seat 7's id is 128 digits");
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
