//! The fused `choose_qparams_affine`: a pass of min/max reduction and
//! qparams over every block.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use tch::Tensor;

use super::tile::{choose_tile, minmax_tile};
use crate::block::BlockLayout;
use crate::error::Result;
use crate::formula::{ChooseSpec, QParams};
use crate::fused::float::InputElem;
use crate::fused::gate;
use crate::fused::layout::{split, Batch, Walk};
use crate::fused::minmax::reduced_runs;
use crate::fused::qparams::{qparams_blocks, Consts};
use crate::fused::threads::{for_each_tile, jobs, parallel, threads_for};
use crate::fused::view::{empty_qparams, qparams_view, Input, QParamsOut};

/// Fused `choose_qparams_affine`; `Ok(None)` where the reference path runs.
pub(crate) fn choose_qparams(
    op: &'static str,
    input: &Tensor,
    layout: &BlockLayout,
    spec: &ChooseSpec,
) -> Result<Option<QParams>> {
    crate::threading::check_settings(op)?;
    let Some(gate::Choose { x, consts, zp_kind }) = gate::choose(input, spec) else {
        return Ok(None);
    };
    let Some(walk) = gate::walk(layout) else {
        return Ok(None);
    };
    let mut qp = empty_qparams(op, &layout.qparams_shape, spec.scale_dtype, zp_kind)?;
    let Some(out) = qparams_view(&mut qp) else {
        return Ok(None);
    };
    let done = match x {
        Input::F32(x) => choose_impl(x, &walk, &consts, out),
        Input::Bf16(x) => choose_impl(x, &walk, &consts, out),
        Input::F16(x) => choose_impl(x, &walk, &consts, out),
    };
    Ok(done.then_some(qp))
}

/// The qparams of every block into `out`; `false` (outputs unfinished)
/// when a block holds a NaN or its scale or zero point comes out NaN.
///
/// libtorch's NaN results carry a sign (and, cast to bfloat16, a payload)
/// that depends on which of its code paths (vector, scalar remainder,
/// thread chunk) produced them, and the sign of a NaN scale reaches the
/// bytes of float8 codes quantized with it; so NaN inputs, and NaN-free
/// inputs whose qparams are NaN ([`Consts::any_nan`]), are left to the
/// reference path.
fn choose_impl<E: InputElem>(x: &[E], walk: &Walk, consts: &Consts, mut out: QParamsOut) -> bool {
    let threads = threads_for(walk.numel);
    let Some(p) = walk.first_kept() else {
        // One block: split the elements, merge the partial results.
        let parts = parallel(split(x.len(), threads), |r| {
            let (mut lo, mut hi) = ([f32::INFINITY], [f32::NEG_INFINITY]);
            let run = Batch {
                elem: r.start,
                block: 0,
                len: r.len(),
                reps: 1,
                stride: 0,
            };
            let nan = reduced_runs(x, run, true, &mut lo, &mut hi);
            (lo[0], hi[0], nan)
        });
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for (l, h, nan) in parts {
            if nan {
                return false;
            }
            lo = lo.min(l);
            hi = hi.max(h);
        }
        let (mut s, mut z) = ([0.0f32], [0.0f32]);
        qparams_blocks::<E::Prec>(consts, &[lo], &[hi], &mut s, &mut z);
        if consts.any_nan(&s, &z) {
            return false;
        }
        out.write(0, &s, &z);
        return true;
    };
    if p > 0 && walk.blocks <= SPLIT_REDUCED_MAX_BLOCKS && walk.dims[0].size >= threads {
        return choose_split_reduced(x, walk, consts, threads, out);
    }
    // Split the outermost kept dim: each thread owns its blocks.
    let d = walk.dims[p];
    let jobs = jobs(d.size, threads, out, |o, n| o.split_at(n * d.block_stride));
    let nan = AtomicBool::new(false);
    parallel(jobs, |(r, out)| {
        choose_part::<E>(x, walk, consts, p, r, out, &nan);
    });
    !nan.load(Ordering::Relaxed)
}

/// Blocks at most this many, when the outermost dim is reduced, are chosen
/// by [`choose_split_reduced`]: each thread's min and max of every block
/// (128 KiB) stay in L2.
const SPLIT_REDUCED_MAX_BLOCKS: usize = 1 << 14;

/// [`choose_impl`] for walks whose outermost dim is reduced (every block
/// spans all of it: per column, a tall input with few blocks): each thread
/// folds a share of that dim into its own min and max of every block, read
/// in memory order, and the shares are merged. Splitting the kept dims
/// instead would hand each thread a few columns of every row: strided
/// reads, and runs as short as the thread's share of a row.
fn choose_split_reduced<E: InputElem>(
    x: &[E],
    walk: &Walk,
    consts: &Consts,
    threads: usize,
    mut out: QParamsOut,
) -> bool {
    let blocks = walk.blocks;
    let parts = parallel(split(walk.dims[0].size, threads), |r| {
        let (mut lo, mut hi) = (vec![0.0f32; blocks], vec![0.0f32; blocks]);
        let mut ranges = walk.full();
        ranges[0] = r;
        let ok = minmax_tile(x, walk, &ranges, 0, &mut lo, &mut hi);
        ok.then_some((lo, hi))
    });
    let mut parts = parts.into_iter();
    let Some(Some((mut lo, mut hi))) = parts.next() else {
        return false;
    };
    for part in parts {
        let Some((l, h)) = part else {
            return false;
        };
        for (a, b) in lo.iter_mut().zip(&l) {
            *a = if *b < *a { *b } else { *a };
        }
        for (a, b) in hi.iter_mut().zip(&h) {
            *a = if *b > *a { *b } else { *a };
        }
    }
    let (mut s, mut z) = (vec![0.0f32; blocks], vec![0.0f32; blocks]);
    qparams_blocks::<E::Prec>(consts, &lo, &hi, &mut s, &mut z);
    if consts.any_nan(&s, &z) {
        return false;
    }
    out.write(0, &s, &z);
    true
}

/// The qparams of the blocks whose index along kept dim `p` is in `range`,
/// into `out` (which starts at the first of those blocks); stops, and sets
/// `nan`, at a block that holds a NaN, or when another thread did.
fn choose_part<E: InputElem>(
    x: &[E],
    walk: &Walk,
    consts: &Consts,
    p: usize,
    range: Range<usize>,
    mut out: QParamsOut,
    nan: &AtomicBool,
) {
    let first = range.start * walk.dims[p].block_stride;
    let mut ranges = walk.full();
    ranges[p] = range;
    for_each_tile(walk, ranges, Some(p), None, |ranges, block0, mut tile| {
        if !choose_tile::<E>(x, walk, consts, ranges, block0, &mut tile, nan) {
            return false;
        }
        out.write(block0 - first, tile.scale, tile.zp);
        true
    });
}
