//! How a pass is cut up: into jobs on scoped threads, each owning a
//! contiguous share of the outputs so that no two threads write the same
//! memory, and each job into tiles whose per-block scratch stays in cache.

use std::ops::Range;

use super::layout::{split, Walk};

/// Elements one thread must have before another is spawned: about 50 us of
/// work, against some 20 us to spawn and join a thread.
const MIN_ELEMS_PER_THREAD: usize = 1 << 17;
/// Blocks per tile: the per-block scratch (min, max, scale, zero point and
/// two quantize constants) stays within 24 KiB.
const TILE_BLOCKS: usize = 1024;
/// Elements per tile when choose and quantize share a pass: the tile is
/// still in L2 when the second half reads it.
pub(crate) const TILE_ELEMS: usize = 1 << 15;

/// How many threads a pass over `numel` elements uses.
pub(crate) fn threads_for(numel: usize) -> usize {
    let torch = tch::get_num_threads().max(1) as usize;
    (numel / MIN_ELEMS_PER_THREAD).clamp(1, torch)
}

/// `f` over every work item, the first on this thread and the others on
/// scoped threads.
pub(crate) fn parallel<W: Send, T: Send>(work: Vec<W>, f: impl Fn(W) -> T + Sync) -> Vec<T> {
    if work.len() <= 1 {
        return work.into_iter().map(f).collect();
    }
    let f = &f;
    let mut work = work.into_iter();
    let Some(first) = work.next() else {
        return Vec::new();
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = work.map(|w| s.spawn(move || f(w))).collect();
        let mut out = vec![f(first)];
        for h in handles {
            match h.join() {
                Ok(v) => out.push(v),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

/// The per-block scratch of one thread, in one allocation.
struct Scratch {
    buf: Vec<f32>,
    blocks: usize,
}

/// The six per-block arrays of a tile of `n` blocks.
pub(crate) struct Tile<'a> {
    pub lo: &'a mut [f32],
    pub hi: &'a mut [f32],
    pub scale: &'a mut [f32],
    pub zp: &'a mut [f32],
    pub a: &'a mut [f32],
    pub b: &'a mut [f32],
}

impl Scratch {
    fn new(blocks: usize) -> Self {
        Scratch {
            buf: vec![0.0f32; 6 * blocks],
            blocks,
        }
    }

    /// The arrays for a tile of `n <= blocks` blocks.
    fn tile(&mut self, n: usize) -> Tile<'_> {
        let mut parts = self.buf.chunks_exact_mut(self.blocks.max(1));
        let mut next = || match parts.next() {
            Some(p) => &mut p[..n],
            None => &mut [],
        };
        Tile {
            lo: next(),
            hi: next(),
            scale: next(),
            zp: next(),
            a: next(),
            b: next(),
        }
    }
}

/// The jobs of a pass split along a dim of `size` indices: the ranges of
/// [`split`] over `threads`, each with its share of the outputs `out`.
/// `split_off(out, n)` cuts `out` into the share of its first `n` indices
/// and the rest.
pub(crate) fn jobs<S>(
    size: usize,
    threads: usize,
    mut out: S,
    split_off: impl Fn(S, usize) -> (S, S),
) -> Vec<(Range<usize>, S)> {
    let mut jobs = Vec::new();
    for r in split(size, threads) {
        let (head, rest) = split_off(out, r.len());
        out = rest;
        jobs.push((r, head));
    }
    jobs
}

/// Runs `f` on each tile of a job whose indices of the walk are `ranges`:
/// `ranges[p]` cut into runs of at most [`TILE_BLOCKS`] blocks (and at most
/// `max_elems` elements), each passed with the walk's ranges narrowed to it,
/// its first block and its scratch. Stops when `f` returns `false`. Without
/// a kept dim `p` the job is a single block, and a single tile.
pub(crate) fn for_each_tile(
    walk: &Walk,
    mut ranges: Vec<Range<usize>>,
    p: Option<usize>,
    max_elems: Option<usize>,
    mut f: impl FnMut(&[Range<usize>], usize, Tile) -> bool,
) {
    let Some(p) = p else {
        f(&ranges, 0, Scratch::new(1).tile(1));
        return;
    };
    let d = walk.dims[p];
    let mut tile = TILE_BLOCKS / d.block_stride;
    if let Some(max) = max_elems {
        tile = tile.min(max / d.elem_stride);
    }
    let tile = tile.max(1);
    let span = ranges[p].clone();
    let mut buf = Scratch::new(tile.min(span.len()) * d.block_stride);
    for t in span.clone().step_by(tile) {
        let end = (t + tile).min(span.end);
        ranges[p] = t..end;
        let block0 = t * d.block_stride;
        if !f(&ranges, block0, buf.tile((end - t) * d.block_stride)) {
            return;
        }
    }
}
