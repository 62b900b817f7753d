//! The block layout as the fused kernels walk it: runs of contiguous
//! elements, each feeding one block (a reduced run) or one block per element
//! (a kept run).

use std::ops::Range;

use crate::block::BlockLayout;

/// One dim of the merged layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dim {
    pub size: usize,
    /// Whether the dim is reduced (lies inside a block).
    pub reduced: bool,
    /// Elements between consecutive indices of this dim.
    pub elem_stride: usize,
    /// Blocks between consecutive indices (0 for a reduced dim).
    pub block_stride: usize,
}

/// [`BlockLayout`]'s `shape_for_reduction` with size-1 dims dropped and
/// neighbouring dims of the same kind (reduced or kept) merged: an input of
/// shape `[4096, 4096]` with block `[1, 32]` walks as kept 524288 x reduced
/// 32; per tensor as one reduced dim. Block numbers follow the kept dims in
/// order, as the qparams tensors do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Walk {
    /// Outermost first; never empty. The last dim is the run.
    pub dims: Vec<Dim>,
    pub numel: usize,
    pub blocks: usize,
}

impl Walk {
    pub fn new(layout: &BlockLayout) -> Self {
        let mut merged: Vec<(usize, bool)> = Vec::new();
        for (d, &size) in layout.shape_for_reduction.iter().enumerate() {
            let reduced = layout.reduction_dims.contains(&(d as i64));
            let size = size as usize;
            if size == 1 {
                continue;
            }
            match merged.last_mut() {
                Some((s, r)) if *r == reduced => *s *= size,
                _ => merged.push((size, reduced)),
            }
        }
        if merged.is_empty() {
            merged.push((1, true));
        }
        let mut dims = vec![
            Dim {
                size: 0,
                reduced: false,
                elem_stride: 0,
                block_stride: 0,
            };
            merged.len()
        ];
        let (mut elems, mut blocks) = (1, 1);
        for (i, &(size, reduced)) in merged.iter().enumerate().rev() {
            dims[i] = Dim {
                size,
                reduced,
                elem_stride: elems,
                block_stride: if reduced { 0 } else { blocks },
            };
            elems *= size;
            if !reduced {
                blocks *= size;
            }
        }
        Walk {
            dims,
            numel: elems,
            blocks,
        }
    }

    /// The run: the innermost dim.
    pub fn run(&self) -> Dim {
        self.dims[self.dims.len() - 1]
    }

    /// The outermost kept dim: splitting it gives each part its own blocks.
    pub fn first_kept(&self) -> Option<usize> {
        self.dims.iter().position(|d| !d.reduced)
    }

    /// Every index of every dim: the ranges to narrow before
    /// [`for_each_batch`](Self::for_each_batch).
    pub fn full(&self) -> Vec<Range<usize>> {
        self.dims.iter().map(|d| 0..d.size).collect()
    }

    /// Calls `f` with every [`Batch`] of runs (or parts of runs) of the
    /// elements whose index along each dim `d` lies in `ranges[d]`, in
    /// memory order.
    pub fn for_each_batch(&self, ranges: &[Range<usize>], f: &mut impl FnMut(Batch)) {
        self.walk(0, 0, 0, ranges, false, &mut |folded: Folded| {
            for o in 0..folded.outer {
                f(Batch {
                    elem: folded.batch.elem + o * folded.outer_stride,
                    ..folded.batch
                });
            }
        });
    }

    /// [`for_each_batch`](Self::for_each_batch)'s batches, where the
    /// innermost three dims are reduced, kept and reduced (the run) and the
    /// ranges hold all of the last two: then the batches of every index of
    /// the outer reduced dim, which feed the same blocks, come as one
    /// [`Folded`] (4-D blocks such as `[2, 1, 16, 16]`, whose batches are a
    /// few short runs each).
    pub fn for_each_folded(&self, ranges: &[Range<usize>], f: &mut impl FnMut(Folded)) {
        self.walk(0, 0, 0, ranges, true, f);
    }

    fn walk(
        &self,
        depth: usize,
        elem: usize,
        block: usize,
        ranges: &[Range<usize>],
        fold: bool,
        f: &mut impl FnMut(Folded),
    ) {
        let last = self.dims.len() - 1;
        let run = self.dims[last];
        let cols = ranges[last].clone();
        let block = if run.reduced {
            block
        } else {
            block + cols.start
        };
        let once = |batch| Folded {
            batch,
            outer: 1,
            outer_stride: 0,
        };
        if depth == last {
            f(once(Batch {
                elem: elem + cols.start,
                block,
                len: cols.len(),
                reps: 1,
                stride: 0,
            }));
            return;
        }
        let d = self.dims[depth];
        let span = ranges[depth].clone();
        if depth + 1 == last {
            // Merged dims alternate, so `d` is kept (one block per run,
            // block stride 1) when the run is reduced, and reduced (the same
            // blocks for every run) when the run is kept.
            f(once(Batch {
                elem: elem + span.start * d.elem_stride + cols.start,
                block: block + span.start * d.block_stride,
                len: cols.len(),
                reps: span.len(),
                stride: d.elem_stride,
            }));
            return;
        }
        let full = |i: usize| ranges[i] == (0..self.dims[i].size);
        if fold && depth + 2 == last && run.reduced && full(last - 1) && full(last) {
            // `d` is reduced (dims alternate): its indices feed the same
            // blocks.
            let k = self.dims[last - 1];
            f(Folded {
                batch: Batch {
                    elem: elem + span.start * d.elem_stride,
                    block,
                    len: cols.len(),
                    reps: k.size,
                    stride: k.elem_stride,
                },
                outer: span.len(),
                outer_stride: d.elem_stride,
            });
            return;
        }
        for k in span {
            self.walk(
                depth + 1,
                elem + k * d.elem_stride,
                block + k * d.block_stride,
                ranges,
                fold,
                f,
            );
        }
    }
}

/// `reps` runs of `len` elements, the `i`-th starting at element
/// `elem + i * stride`. When the walk's run is reduced, run `i` belongs to
/// block `block + i`; when it is kept, element `j` of every run belongs to
/// block `block + j`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Batch {
    pub elem: usize,
    pub block: usize,
    pub len: usize,
    pub reps: usize,
    pub stride: usize,
}

/// `outer` copies of a batch of reduced runs, the `o`-th starting
/// `o * outer_stride` elements after `batch.elem`, all feeding the blocks
/// of `batch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Folded {
    pub batch: Batch,
    pub outer: usize,
    pub outer_stride: usize,
}

impl Batch {
    /// The elements of the batch start at `elem`; the batch spans this many.
    pub fn span(&self) -> usize {
        match self.reps {
            0 => 0,
            r => (r - 1) * self.stride + self.len,
        }
    }
}

/// Runs `i..i + 4` of a batch whose runs (`len` elements, `stride >= len`
/// apart) do not overlap, as four disjoint slices of `out` (which starts at
/// the batch's first element); each slice is at least `len` long.
pub(crate) fn four_runs_mut<T>(
    out: &mut [T],
    i: usize,
    stride: usize,
    len: usize,
) -> [&mut [T]; 4] {
    let rows = &mut out[i * stride..(i + 3) * stride + len];
    let (o0, rest) = rows.split_at_mut(stride);
    let (o1, rest) = rest.split_at_mut(stride);
    let (o2, o3) = rest.split_at_mut(stride);
    [o0, o1, o2, o3]
}

/// Splits `0..n` into at most `parts` contiguous, nearly equal ranges.
pub(crate) fn split(n: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    (0..parts)
        .map(|i| (n * i / parts)..(n * (i + 1) / parts))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(block: &[i64], shape: &[i64]) -> Walk {
        Walk::new(&BlockLayout::new("t", block, shape).unwrap())
    }

    /// `(elem, block, len)` of every run, as a per-run walk would give them.
    fn runs(w: &Walk, dim: usize, range: Range<usize>) -> Vec<(usize, usize, usize)> {
        let mut ranges = w.full();
        ranges[dim] = range;
        let reduced = w.run().reduced;
        let mut v = Vec::new();
        w.for_each_batch(&ranges, &mut |b| {
            for i in 0..b.reps {
                let block = if reduced { b.block + i } else { b.block };
                v.push((b.elem + i * b.stride, block, b.len));
            }
        });
        v
    }

    #[test]
    fn merges_and_drops_unit_dims() {
        let w = walk(&[1, 32], &[4, 128]);
        assert_eq!(w.dims.len(), 2);
        assert_eq!((w.dims[0].size, w.dims[0].reduced), (16, false));
        assert_eq!((w.dims[1].size, w.dims[1].reduced), (32, true));
        assert_eq!(w.blocks, 16);
        let t = walk(&[1, 4096], &[1, 4096]);
        assert_eq!(t.dims.len(), 1);
        assert!(t.dims[0].reduced);
        assert_eq!(walk(&[1, 1], &[1, 1]).dims[0].size, 1);
    }

    #[test]
    fn runs_cover_every_element_once_with_its_block() {
        // 2D blocks of [2, 3] over [4, 6], walked along the first kept dim.
        let w = walk(&[2, 3], &[4, 6]);
        let mut seen = vec![usize::MAX; 24];
        for (e, b, l) in runs(&w, w.first_kept().unwrap(), 0..2) {
            seen[e..e + l].fill(b);
        }
        let want: Vec<usize> = (0..24).map(|i| (i / 6 / 2) * 2 + (i % 6) / 3).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn kept_runs_restricted_to_columns() {
        // Per column of [3, 4]: reduced 3 x kept 4.
        let w = walk(&[3, 1], &[3, 4]);
        assert_eq!(runs(&w, 1, 1..3), vec![(1, 1, 2), (5, 1, 2), (9, 1, 2)]);
    }

    #[test]
    fn folded_batches_cover_the_same_runs() {
        // [2, 4, 4, 6] in blocks of [1, 2, 1, 3] walks as kept 4, reduced 2,
        // kept 8, reduced 3.
        let w = walk(&[1, 2, 1, 3], &[2, 4, 4, 6]);
        let ranges = w.full();
        let mut plain = Vec::new();
        w.for_each_batch(&ranges, &mut |b| plain.push(b));
        let mut unfolded = Vec::new();
        let mut folds = 0;
        w.for_each_folded(&ranges, &mut |f| {
            folds += 1;
            for o in 0..f.outer {
                unfolded.push(Batch {
                    elem: f.batch.elem + o * f.outer_stride,
                    ..f.batch
                });
            }
        });
        assert_eq!(plain, unfolded);
        assert!(folds < plain.len());
    }

    #[test]
    fn split_is_even_and_complete() {
        assert_eq!(split(10, 3), vec![0..3, 3..6, 6..10]);
        assert_eq!(split(1, 4), vec![0..1]);
    }
}
