//! The kernels of one tile, shared by the drivers: its blocks reduced to
//! qparams, and its codes.

use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Params;
use crate::fused::float::{Elem, InputElem};
use crate::fused::layout::{Batch, Walk};
use crate::fused::minmax::{folded_runs, kept_runs};
use crate::fused::qparams::{qparams_blocks, Consts};
use crate::fused::quantize::{
    quantize_folded_rows, quantize_kept_runs, quantize_reduced, rows_fold, Code, Formula,
};
use crate::fused::threads::Tile;

/// Min, max, scale and zero point of every block of a tile (`ranges` of the
/// walk; blocks numbered from `block0`) into `tile`. `false`, with `nan`
/// set, when a block holds a NaN, when a scale or zero point comes out NaN
/// ([`Consts::any_nan`]) or when another thread has set `nan`: the
/// reference path then chooses (see `choose_impl` in `choose.rs`).
pub(crate) fn choose_tile<E: InputElem>(
    x: &[E],
    walk: &Walk,
    consts: &Consts,
    ranges: &[Range<usize>],
    block0: usize,
    tile: &mut Tile,
    nan: &AtomicBool,
) -> bool {
    if nan.load(Ordering::Relaxed) || !minmax_tile(x, walk, ranges, block0, tile.lo, tile.hi) {
        nan.store(true, Ordering::Relaxed);
        return false;
    }
    qparams_blocks::<E::Prec>(consts, tile.lo, tile.hi, tile.scale, tile.zp);
    if consts.any_nan(tile.scale, tile.zp) {
        nan.store(true, Ordering::Relaxed);
        return false;
    }
    true
}

/// Min and max of every block of a tile (`ranges` of the walk); blocks are
/// numbered from `block0`. `false` when a block holds a NaN.
pub(crate) fn minmax_tile<E: Elem>(
    x: &[E],
    walk: &Walk,
    ranges: &[Range<usize>],
    block0: usize,
    lo: &mut [f32],
    hi: &mut [f32],
) -> bool {
    lo.fill(f32::INFINITY);
    hi.fill(f32::NEG_INFINITY);
    let reduced = walk.run().reduced;
    // Each block has a single run when the run is the only reduced dim.
    let assign = walk.dims.iter().filter(|d| d.reduced).count() == 1 && reduced;
    let mut nan = false;
    if reduced {
        walk.for_each_folded(ranges, &mut |folded| {
            let k = folded.batch.block - block0;
            nan |= folded_runs(x, folded, assign, &mut lo[k..], &mut hi[k..]);
        });
    } else {
        walk.for_each_batch(ranges, &mut |batch| {
            let k = batch.block - block0;
            nan |= kept_runs(x, batch, &mut lo[k..], &mut hi[k..]);
        });
    }
    !nan
}

/// Codes of a tile (`ranges` of the walk; blocks numbered from `block0`)
/// into `out`, which starts at element `elem0`: the formula's constants of
/// each block from the scale and zero point in `tile`, then the codes.
/// `minmax_known` says that `tile.lo`/`tile.hi` hold the blocks' min and
/// max (the chained pass has them), which lets blocks whose codes need no
/// clamp skip it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn quantize_tile<E: Elem, F: Formula, C: Code>(
    x: &[E],
    params: &Params,
    ranges: &[Range<usize>],
    block0: usize,
    elem0: usize,
    tile: Tile,
    minmax_known: bool,
    out: &mut [MaybeUninit<C>],
) {
    let Tile {
        lo,
        hi,
        scale,
        zp,
        a,
        b,
    } = tile;
    params.kinds.constants(scale, zp, a, b);
    let (walk, bounds) = (params.walk, params.bounds);
    let minmax = minmax_known.then_some((&*lo, &*hi));
    let reduced = walk.run().reduced;
    let fast = F::fast_ok(b, bounds.0, bounds.1);
    let batch_codes = |batch: Batch, out: &mut [MaybeUninit<C>]| {
        let k = batch.block - block0;
        let out = &mut out[batch.elem - elem0..];
        let (a, b) = (&a[k..], &b[k..]);
        let minmax = minmax.map(|(lo, hi)| (&lo[k..], &hi[k..]));
        if reduced {
            quantize_reduced::<E, F, C>(x, batch, a, b, minmax, bounds, fast, out);
        } else {
            quantize_kept_runs::<E, F, C>(x, batch, a, b, bounds, fast, out);
        }
    };
    if !reduced {
        walk.for_each_batch(ranges, &mut |batch| batch_codes(batch, out));
        return;
    }
    // Reduced runs: batches that repeat over an outer reduced dim come
    // folded, and those whose copies are rows of memory take the rows
    // kernel.
    walk.for_each_folded(ranges, &mut |folded| {
        if rows_fold(&folded) {
            let k = folded.batch.block - block0;
            let out = &mut out[folded.batch.elem - elem0..];
            let (a, b) = (&a[k..], &b[k..]);
            quantize_folded_rows::<E, F, C>(x, folded, a, b, bounds, fast, out);
            return;
        }
        for o in 0..folded.outer {
            let elem = folded.batch.elem + o * folded.outer_stride;
            batch_codes(
                Batch {
                    elem,
                    ..folded.batch
                },
                out,
            );
        }
    });
}
