//! The allocator against a model: random sequences of alloc, free, flush and reopen on a
//! real file. After every step no two live blocks overlap, every block still holds what was
//! written into it, the counters equal the model's, and the side metadata agrees with the
//! allocator's index; the same holds after each reopen.

use eterna::alloc::{class_of, class_size, SMALL_MAX};
use eterna::format::{ARENA, PAGE};
use eterna::{Access, Allocator, FreeError};
use proptest::prelude::*;
use std::path::Path;

#[derive(Debug, Clone)]
enum Op {
    Alloc(usize),
    Free(usize),
    /// Free a block and allocate the same size again at once.
    Recycle(usize),
    DoubleFree(usize),
    Flush,
    Reopen,
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 1usize..=SMALL_MAX,
        2 => SMALL_MAX + 1..=64 * 1024,
        1 => 64 * 1024..=(ARENA as usize),
        1 => (ARENA as usize)..=(3 * ARENA as usize),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => size().prop_map(Op::Alloc),
        6 => any::<usize>().prop_map(Op::Free),
        2 => any::<usize>().prop_map(Op::Recycle),
        1 => any::<usize>().prop_map(Op::DoubleFree),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

/// A live block: where, how big it was asked to be, and the tag written into it.
#[derive(Debug, Clone, Copy)]
struct Block {
    off: u64,
    size: usize,
    tag: u8,
}

fn usable(size: usize) -> u64 {
    if size <= SMALL_MAX {
        class_size(class_of(size))
    } else if (size as u64).div_ceil(PAGE) < ARENA / PAGE {
        (size as u64).div_ceil(PAGE) * PAGE
    } else {
        (size as u64 + PAGE).div_ceil(ARENA) * ARENA - PAGE
    }
}

/// Writes `tag` over the first and last 16 bytes of the block.
fn stamp(heap: &mut Allocator, b: Block) {
    let n = b.size.min(16);
    heap.bytes_mut(b.off, n).unwrap().fill(b.tag);
    heap.bytes_mut(b.off + (b.size - n) as u64, n).unwrap().fill(b.tag);
}

fn check(heap: &Allocator, model: &[Block]) {
    let mut spans: Vec<(u64, u64)> = model.iter().map(|b| (b.off, b.off + usable(b.size))).collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "blocks overlap: {:?} and {:?}", w[0], w[1]);
    }
    for b in model {
        assert_eq!(heap.usable_size(b.off), Some(usable(b.size)), "usable size of {b:?}");
        let n = b.size.min(16);
        assert!(heap.bytes(b.off, n).unwrap().iter().all(|&x| x == b.tag), "head of {b:?}");
        let tail = heap.bytes(b.off + (b.size - n) as u64, n).unwrap();
        assert!(tail.iter().all(|&x| x == b.tag), "tail of {b:?}");
    }
    let s = heap.stats().unwrap();
    assert_eq!(s.blocks_live, model.len() as u64);
    assert_eq!(s.bytes_live, model.iter().map(|b| usable(b.size)).sum::<u64>());
    for c in &s.size_classes {
        let live =
            model.iter().filter(|b| b.size <= SMALL_MAX && class_size(class_of(b.size)) == c.size).count();
        assert_eq!(c.blocks_live, live as u64, "class {}", c.size);
    }
    heap.verify().unwrap();
}

fn run(ops: Vec<Op>, path: &Path) {
    let mut heap = Allocator::create(path).unwrap();
    let mut model: Vec<Block> = Vec::new();
    let mut tag = 0u8;
    for op in ops {
        match op {
            Op::Alloc(size) => {
                tag = tag.wrapping_add(1).max(1);
                let b = Block { off: heap.alloc(size).unwrap(), size, tag };
                stamp(&mut heap, b);
                model.push(b);
            }
            Op::Free(i) if !model.is_empty() => {
                let b = model.swap_remove(i % model.len());
                heap.free(b.off).unwrap();
            }
            Op::Recycle(i) if !model.is_empty() => {
                let i = i % model.len();
                heap.free(model[i].off).unwrap();
                model[i].off = heap.alloc(model[i].size).unwrap();
                stamp(&mut heap, model[i]);
            }
            Op::DoubleFree(i) if !model.is_empty() => {
                let b = model.swap_remove(i % model.len());
                heap.free(b.off).unwrap();
                let before = heap.stats().unwrap();
                assert!(matches!(heap.free(b.off), Err(FreeError::NotAllocated { .. })));
                assert!(matches!(heap.free(b.off + 1), Err(FreeError::NotAllocated { .. })));
                assert_eq!(heap.stats().unwrap().blocks_live, before.blocks_live);
            }
            Op::Flush => heap.flush().unwrap(),
            Op::Reopen => {
                heap.flush().unwrap();
                let before = heap.stats().unwrap();
                heap.close().unwrap();
                heap = Allocator::open(path, Access::ReadWrite).unwrap();
                // Every counter survives, the live ones and the historical ones.
                assert_eq!(before, heap.stats().unwrap());
            }
            _ => {}
        }
        check(&heap, &model);
    }
    for b in model.drain(..) {
        heap.free(b.off).unwrap();
    }
    heap.flush().unwrap();
    let s = heap.stats().unwrap();
    assert_eq!((s.blocks_live, s.bytes_live, s.large_runs, s.huge_objects), (0, 0, 0, 0));
    heap.verify().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn allocator_matches_model(ops in proptest::collection::vec(op(), 1..160)) {
        let dir = tempfile::tempdir().unwrap();
        run(ops, &dir.path().join("heap"));
    }
}

/// Many blocks of one class, freed and allocated in waves: the bitmap search, pool
/// turnover and the spare all get exercised with far more blocks than the random test.
#[test]
fn waves_of_one_class() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap");
    let mut heap = Allocator::create(&path).unwrap();
    let mut model = Vec::new();
    for wave in 0..6u8 {
        for i in 0..20_000usize {
            let b = Block {
                off: heap.alloc(48).unwrap(),
                size: 48,
                tag: wave.wrapping_mul(31).wrapping_add(i as u8) | 1,
            };
            stamp(&mut heap, b);
            model.push(b);
        }
        // Free every other block, oldest first.
        let all = std::mem::take(&mut model);
        for (i, b) in all.into_iter().enumerate() {
            if i % 2 == 0 {
                heap.free(b.off).unwrap();
            } else {
                model.push(b);
            }
        }
    }
    check(&heap, &model);
    heap.close().unwrap();
    let heap = Allocator::open(&path, Access::ReadOnly).unwrap();
    check(&heap, &model);
}
