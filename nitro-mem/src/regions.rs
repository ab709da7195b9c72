//! A validated map from guest physical ranges to offsets in a backing (a file, a mapping, or a
//! process's address space), shared by the file, dump and /proc/PID/mem sources.

use std::ops::Range;

use crate::{MemError, PhysAddr, Region, Result};

/// Guest physical ranges sorted by start, non-empty and non-overlapping.
#[derive(Debug, Clone)]
pub(crate) struct RegionMap {
    regions: Vec<Region>,
    size: u64,
}

impl RegionMap {
    /// Validates `regions`: every backing range must end at or below `backing_len`, no guest
    /// range may wrap or overlap another. Empty regions are dropped. `Err` carries the reason.
    pub(crate) fn new(
        mut regions: Vec<Region>,
        backing_len: u64,
    ) -> std::result::Result<Self, String> {
        regions.retain(|r| r.len > 0);
        regions.sort_by_key(|r| r.guest_start.0);
        let mut size = 0u64;
        for r in &regions {
            if r.file_offset
                .checked_add(r.len)
                .is_none_or(|e| e > backing_len)
            {
                return Err(format!(
                    "region {r:?} lies outside the {backing_len}-byte backing"
                ));
            }
            let Some(end) = r.guest_start.0.checked_add(r.len) else {
                return Err(format!("region {r:?} wraps the physical address space"));
            };
            if r.guest_start.0 < size {
                return Err(format!("region {r:?} overlaps the one before it"));
            }
            size = end;
        }
        Ok(RegionMap { regions, size })
    }

    /// Highest guest physical address covered, plus one.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The regions, sorted by guest address.
    pub(crate) fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The region holding `addr`.
    fn find(&self, addr: u64) -> Option<&Region> {
        // Index of the first region starting above `addr`; the one before may hold it.
        let i = self.regions.partition_point(|r| r.guest_start.0 <= addr);
        let r = self.regions.get(i.checked_sub(1)?)?;
        (addr - r.guest_start.0 < r.len).then_some(r)
    }

    /// Backing offset of `[addr, addr+len)` when one region holds all of it.
    #[inline]
    pub(crate) fn offset_of(&self, addr: PhysAddr, len: usize) -> Option<u64> {
        let r = match self.regions.as_slice() {
            [only] => only,
            _ => self.find(addr.0)?,
        };
        let rel = addr.0.checked_sub(r.guest_start.0)?;
        (rel < r.len && r.len - rel >= len as u64).then(|| r.file_offset + rel)
    }

    /// Splits the access `[addr, addr+len)` at region boundaries and calls
    /// `f(backing_offset, part_of_buffer)` for each part, in order. Fails with
    /// [`MemError::PhysOutOfRange`] (before calling `f`) if any byte is not backed.
    pub(crate) fn for_each_part(
        &self,
        addr: PhysAddr,
        len: usize,
        mut f: impl FnMut(u64, Range<usize>) -> Result<()>,
    ) -> Result<()> {
        let oob = || MemError::PhysOutOfRange { addr, len };
        let end = addr.0.checked_add(len as u64).ok_or_else(oob)?;
        // Fast path: one region holds the whole access (nearly always).
        if let Some(off) = self.offset_of(addr, len) {
            return f(off, 0..len);
        }
        // Check the whole range first so that nothing is done for a partly unbacked access.
        let mut at = addr.0;
        while at < end {
            let r = self.find(at).ok_or_else(oob)?;
            at = r.guest_start.0 + r.len;
        }
        let mut at = addr.0;
        while at < end {
            let r = self.find(at).ok_or_else(oob)?;
            let rel = at - r.guest_start.0;
            let n = (r.len - rel).min(end - at);
            let done = (at - addr.0) as usize;
            f(r.file_offset + rel, done..done + n as usize)?;
            at += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(g: u64, f: u64, l: u64) -> Region {
        Region {
            guest_start: PhysAddr(g),
            file_offset: f,
            len: l,
        }
    }

    #[test]
    fn splits_across_adjacent_regions_and_rejects_holes() {
        let m = RegionMap::new(
            vec![reg(0x2000, 0, 0x1000), reg(0x1000, 0x3000, 0x1000)],
            0x4000,
        )
        .unwrap();
        assert_eq!(m.size(), 0x3000);
        let mut parts = vec![];
        m.for_each_part(PhysAddr(0x1ff0), 0x20, |off, r| {
            parts.push((off, r));
            Ok(())
        })
        .unwrap();
        assert_eq!(parts, vec![(0x3ff0, 0..0x10), (0x0, 0x10..0x20)]);
        let hole = m.for_each_part(PhysAddr(0x800), 0x1000, |_, _| panic!("called"));
        assert!(matches!(hole, Err(MemError::PhysOutOfRange { .. })));
        let past = m.for_each_part(PhysAddr(0x2ff0), 0x20, |_, _| panic!("called"));
        assert!(matches!(past, Err(MemError::PhysOutOfRange { .. })));
        let wrap = m.for_each_part(PhysAddr(u64::MAX), 2, |_, _| panic!("called"));
        assert!(matches!(wrap, Err(MemError::PhysOutOfRange { .. })));
    }

    #[test]
    fn rejects_bad_regions() {
        assert!(RegionMap::new(vec![reg(0, 0x10, 0x1000)], 0x1000).is_err());
        assert!(RegionMap::new(vec![reg(0, 0, 0x1000), reg(0x800, 0, 0x100)], 0x1000).is_err());
        assert!(RegionMap::new(vec![reg(u64::MAX, 0, 2)], 0x1000).is_err());
        assert!(RegionMap::new(vec![reg(0, u64::MAX, 2)], 0x1000).is_err());
    }
}
