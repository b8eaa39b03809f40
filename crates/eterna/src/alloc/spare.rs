//! The self-tuned spare: how many empty pools keep their disk blocks so that a program that
//! frees and re-allocates in cycles does not punch and re-reserve the same pools.
//!
//! Between two release passes the policy counts pools taken into use, and how many of those
//! were holes punched by the previous pass (a refault: the previous pass gave back memory
//! that was needed again). At each pass:
//! - any refault doubles the target (up to [`MAX_SPARE`]);
//! - no pool taken at all halves it (down to [`MIN_SPARE`]): nothing draws on the spare, so
//!   memory goes back;
//! - otherwise the target stays.
//!
//! The effective target is also capped at a quarter of the pools in use (but never below
//! [`MIN_SPARE`]), so a heap that empties gives back nearly everything.

use std::collections::BTreeSet;

/// Fewest empty pools kept (64 KiB).
pub const MIN_SPARE: u64 = 4;
/// Most empty pools kept (1 MiB, one arena's worth).
pub const MAX_SPARE: u64 = 64;

/// State of the spare policy between two release passes.
#[derive(Debug, Clone)]
pub struct SparePolicy {
    target: u64,                     // pools the next pass keeps, before the cap
    taken: u64,                      // pools taken into use since the last pass
    refaults: u64,                   // of those, holes the last pass had punched
    recently_punched: BTreeSet<u32>, // pools the last pass punched
}

impl SparePolicy {
    /// A policy starting at `target` (as stored in the file; clamped to the bounds).
    pub fn new(target: u64) -> SparePolicy {
        SparePolicy {
            target: target.clamp(MIN_SPARE, MAX_SPARE),
            taken: 0,
            refaults: 0,
            recently_punched: BTreeSet::new(),
        }
    }

    /// The current target, as stored in the file.
    pub fn target(&self) -> u64 {
        self.target
    }

    /// Records that pool `p` was taken into use; `was_hole` when it had to be re-reserved.
    pub fn on_take(&mut self, p: u32, was_hole: bool) {
        self.taken += 1;
        if was_hole && self.recently_punched.contains(&p) {
            self.refaults += 1;
        }
    }

    /// Starts a release pass: retunes the target from what happened since the last pass and
    /// returns how many empty pools to keep, given `pools_in_use`.
    pub fn begin_pass(&mut self, pools_in_use: u64) -> u64 {
        if self.refaults > 0 {
            self.target = (self.target * 2).min(MAX_SPARE);
        } else if self.taken == 0 {
            self.target = (self.target / 2).max(MIN_SPARE);
        }
        self.taken = 0;
        self.refaults = 0;
        self.target.min((pools_in_use / 4).max(MIN_SPARE))
    }

    /// Ends a release pass that punched `punched`.
    pub fn end_pass(&mut self, punched: BTreeSet<u32>) {
        self.recently_punched = punched;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refaults_grow_idle_shrinks_and_bounds_hold() {
        let mut p = SparePolicy::new(MIN_SPARE);
        p.end_pass([7u32, 8].into_iter().collect());
        p.on_take(7, true);
        assert_eq!(p.begin_pass(10_000), MIN_SPARE * 2);
        for _ in 0..10 {
            p.end_pass([7u32].into_iter().collect());
            p.on_take(7, true);
            p.begin_pass(10_000);
        }
        assert_eq!(p.target(), MAX_SPARE);
        // A pass with takes but no refault keeps the target.
        p.end_pass(BTreeSet::new());
        p.on_take(9, false);
        assert_eq!(p.begin_pass(10_000), MAX_SPARE);
        // Idle passes halve it down to the floor.
        for _ in 0..10 {
            p.begin_pass(10_000);
        }
        assert_eq!(p.target(), MIN_SPARE);
        // The cap follows the pools in use.
        let mut q = SparePolicy::new(MAX_SPARE);
        q.on_take(1, false);
        assert_eq!(q.begin_pass(40), 10);
        q.on_take(1, false);
        assert_eq!(q.begin_pass(0), MIN_SPARE);
    }
}
