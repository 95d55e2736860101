//! A column of small integers, one per seat, stored as narrow as its largest value allows:
//! a byte each while every value is below 256, two bytes below 65,536, four otherwise. A
//! layout's per-seat numbers, price tiers and rows almost always fit a byte or two, and a
//! 1M-seat inventory is mostly such columns.

use super::memory::alloc_bytes;

#[derive(Debug, Clone)]
pub(super) enum Column {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
}

impl Default for Column {
    fn default() -> Column {
        Column::U8(Vec::new())
    }
}

/// Equal when they hold the same values, however wide.
impl PartialEq for Column {
    fn eq(&self, other: &Column) -> bool {
        self.len() == other.len() && (0..self.len()).all(|i| self.get(i) == other.get(i))
    }
}

impl Eq for Column {}

impl Column {
    /// A copy of `self` with room for `capacity` values in all (at its present width).
    pub(super) fn copy_with_capacity(&self, capacity: usize) -> Column {
        fn copy<T: Copy>(v: &[T], capacity: usize) -> Vec<T> {
            let mut out = Vec::with_capacity(capacity.max(v.len()));
            out.extend_from_slice(v);
            out
        }
        match self {
            Column::U8(v) => Column::U8(copy(v, capacity)),
            Column::U16(v) => Column::U16(copy(v, capacity)),
            Column::U32(v) => Column::U32(copy(v, capacity)),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Column::U8(v) => v.len(),
            Column::U16(v) => v.len(),
            Column::U32(v) => v.len(),
        }
    }

    pub(super) fn get(&self, i: usize) -> u32 {
        match self {
            Column::U8(v) => u32::from(v[i]),
            Column::U16(v) => u32::from(v[i]),
            Column::U32(v) => v[i],
        }
    }

    pub(super) fn push(&mut self, value: u32) {
        self.widen_for(value);
        match self {
            Column::U8(v) => v.push(value as u8),
            Column::U16(v) => v.push(value as u16),
            Column::U32(v) => v.push(value),
        }
    }

    pub(super) fn set(&mut self, i: usize, value: u32) {
        self.widen_for(value);
        match self {
            Column::U8(v) => v[i] = value as u8,
            Column::U16(v) => v[i] = value as u16,
            Column::U32(v) => v[i] = value,
        }
    }

    /// Rewrites every value to `f(value)`.
    pub(super) fn map_in_place(&mut self, f: impl Fn(u32) -> u32) {
        for i in 0..self.len() {
            self.set(i, f(self.get(i)));
        }
    }

    /// The heap block, by capacity.
    pub(super) fn heap_bytes(&self) -> u64 {
        match self {
            Column::U8(v) => alloc_bytes(v.capacity()),
            Column::U16(v) => alloc_bytes(v.capacity() * 2),
            Column::U32(v) => alloc_bytes(v.capacity() * 4),
        }
    }

    /// Makes room for `value`: the values so far are copied once into a wider vector of
    /// the same capacity.
    fn widen_for(&mut self, value: u32) {
        fn widen<T: Copy, U: From<T>>(v: &Vec<T>) -> Vec<U> {
            let mut out = Vec::with_capacity(v.capacity());
            out.extend(v.iter().map(|&x| U::from(x)));
            out
        }
        match self {
            Column::U8(v) if value > u32::from(u8::MAX) => {
                *self = match u16::try_from(value) {
                    Ok(_) => Column::U16(widen(v)),
                    Err(_) => Column::U32(widen(v)),
                }
            }
            Column::U16(v) if value > u32::from(u16::MAX) => {
                *self = Column::U32(widen(v));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn width(c: &Column) -> usize {
        match c {
            Column::U8(_) => 1,
            Column::U16(_) => 2,
            Column::U32(_) => 4,
        }
    }

    #[test]
    fn a_column_is_as_narrow_as_its_largest_value() {
        let mut c = Column::default();
        c.push(0);
        c.push(255);
        assert_eq!(width(&c), 1);
        c.push(256);
        assert_eq!(width(&c), 2);
        c.set(0, 65_536);
        assert_eq!(width(&c), 4);
        assert_eq!(
            (0..c.len()).map(|i| c.get(i)).collect::<Vec<_>>(),
            [65_536, 255, 256]
        );
        let mut straight = Column::default();
        straight.push(70_000);
        assert_eq!(width(&straight), 4);
    }

    proptest! {
        /// Whatever is pushed, set and mapped, the column reads back as a `Vec<u32>` would,
        /// and its copies equal it.
        #[test]
        fn a_column_reads_back_as_a_vector_would(
            values in prop::collection::vec(prop_oneof![0u32..300, 0u32..70_000, any::<u32>()], 0..200),
            sets in prop::collection::vec((any::<prop::sample::Index>(), any::<u32>()), 0..20),
        ) {
            let mut column = Column::default();
            let mut model: Vec<u32> = Vec::new();
            for v in values {
                column.push(v);
                model.push(v);
            }
            if !model.is_empty() {
                for (at, v) in sets {
                    let i = at.index(model.len());
                    column.set(i, v);
                    model[i] = v;
                }
            }
            column.map_in_place(|v| v / 3);
            model.iter_mut().for_each(|v| *v /= 3);
            prop_assert_eq!(column.len(), model.len());
            prop_assert!((0..model.len()).all(|i| column.get(i) == model[i]));
            let max = model.iter().max().copied().unwrap_or(0);
            prop_assert!(width(&column) <= 4);
            prop_assert!(width(&column) == 4 || max < 1 << (8 * width(&column)));
            prop_assert_eq!(&column.copy_with_capacity(model.len() + 5), &column);
        }
    }
}
