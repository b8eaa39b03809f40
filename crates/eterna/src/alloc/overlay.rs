//! The writer's copy of the small-pool records whose block bits changed since they were
//! last written to the file.
//!
//! An allocation or a free inside a pool that stays in use changes only the pool's bitmap
//! and live count. Storing that through the mapping dirtied one record page per pool a
//! commit touched, and a one-key commit touches pools all over the file: 4-5 of its ~13
//! synced pages were such records. The writer keeps those records here instead and writes
//! them back in batches ([`Allocator::write_back`](super::Allocator::write_back)); every
//! change of a pool's state (taken into use, emptied, punched) is written through at once,
//! so the file's pool states are always current and only in-use pools' bits lag.

use super::layout::RECORD_LEN;

/// One pool record: descriptor and bitmap.
pub type Record = [u8; RECORD_LEN as usize];

/// Records that differ from the file, by pool id.
#[derive(Default)]
pub struct Overlay {
    slot: Vec<u32>,    // per pool id: 1 + index into `recs`, 0 when the file's record is current
    recs: Vec<Record>, // the records
    pools: Vec<u32>,   // the pool of each record
}

impl Overlay {
    /// The writer's record of pool `p`, if it differs from the file's.
    #[inline]
    pub fn get(&self, p: u32) -> Option<&Record> {
        match self.slot.get(p as usize) {
            Some(&s) if s > 0 => Some(&self.recs[s as usize - 1]),
            _ => None,
        }
    }

    /// The writer's record of pool `p`, made from `file` (the file's copy) if there is none.
    #[inline]
    pub fn get_or_load(&mut self, p: u32, file: &[u8]) -> &mut Record {
        if self.slot.len() <= p as usize {
            self.slot.resize(p as usize + 1, 0);
        }
        let s = self.slot[p as usize];
        if s > 0 {
            return &mut self.recs[s as usize - 1];
        }
        let mut rec = [0u8; RECORD_LEN as usize];
        rec.copy_from_slice(file);
        self.recs.push(rec);
        self.pools.push(p);
        self.slot[p as usize] = self.recs.len() as u32;
        self.recs.last_mut().expect("just pushed")
    }

    /// Removes pool `p`'s record and returns it.
    pub fn take(&mut self, p: u32) -> Option<Record> {
        let s = *self.slot.get(p as usize)?;
        if s == 0 {
            return None;
        }
        let i = s as usize - 1;
        self.slot[p as usize] = 0;
        let rec = self.recs.swap_remove(i);
        self.pools.swap_remove(i);
        if let Some(&moved) = self.pools.get(i) {
            self.slot[moved as usize] = i as u32 + 1;
        }
        Some(rec)
    }

    /// Removes every record, returning (pool, record) pairs.
    pub fn drain(&mut self) -> Vec<(u32, Record)> {
        for &p in &self.pools {
            self.slot[p as usize] = 0;
        }
        let pools = std::mem::take(&mut self.pools);
        pools.into_iter().zip(std::mem::take(&mut self.recs)).collect()
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.recs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_keeps_the_other_records_findable() {
        let mut o = Overlay::default();
        let file = [0u8; RECORD_LEN as usize];
        for p in [5u32, 9, 70, 3] {
            o.get_or_load(p, &file)[0] = p as u8;
        }
        assert_eq!(o.take(9).map(|r| r[0]), Some(9));
        assert!(o.get(9).is_none());
        for p in [5u32, 70, 3] {
            assert_eq!(o.get(p).map(|r| r[0]), Some(p as u8), "pool {p}");
        }
        assert_eq!(o.len(), 3);
        let mut all: Vec<u32> = o.drain().into_iter().map(|(p, r)| (p as u8 == r[0]) as u32 * p).collect();
        all.sort_unstable();
        assert_eq!(all, vec![3, 5, 70]);
        assert!(o.len() == 0 && o.get(5).is_none());
    }
}
