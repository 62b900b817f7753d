//! Choose then quantize on the fused path: in one pass over the input
//! where its outermost dim is a dim of blocks, else one fused pass for
//! each step.

use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use tch::{Kind, Tensor};

use super::choose::choose_qparams;
use super::quantize::{quantize, quantize_into, QuantizeArgs};
use super::tile::{choose_tile, quantize_tile};
use super::Params;
use crate::block::BlockLayout;
use crate::dtype::QuantDtype;
use crate::error::Result;
use crate::formula::{ChooseSpec, QParams};
use crate::fused::convert::stored;
use crate::fused::float::InputElem;
use crate::fused::gate;
use crate::fused::qparams::Consts;
use crate::fused::quantize::{Code, Formula};
use crate::fused::threads::{for_each_tile, jobs, parallel, threads_for, TILE_ELEMS};
use crate::fused::view::{
    advise_fresh, empty, empty_qparams, into_view, out_view, qparams_view, QParamsOut,
};

/// What [`choose_and_quantize`] could do.
pub(crate) enum Chained {
    /// Both steps ran on the fused path: the qparams, and the codes (`None`
    /// when they were written into the caller's output).
    Done(QParams, Option<Tensor>),
    /// The qparams are chosen; quantizing them is left to the caller (the
    /// reference path covers that dtype).
    Chosen(QParams),
    /// Nothing ran: the caller runs both steps.
    NotCovered,
}

/// Fused choose then quantize: in one pass over the input when its
/// outermost dim is a dim of blocks, otherwise one fused pass for each.
/// The codes go into `into` where given (checked by the caller: the
/// input's shape, the code dtype's storage, no byte shared with the input),
/// else into a fresh tensor.
pub(crate) fn choose_and_quantize(
    op: &'static str,
    input: &Tensor,
    layout: &BlockLayout,
    spec: &ChooseSpec,
    dtype: QuantDtype,
    into: Option<&mut Tensor>,
) -> Result<Chained> {
    crate::threading::check_settings(op)?;
    let (qmin, qmax) = (spec.quant_min, spec.quant_max);
    let two_passes = |into: Option<&mut Tensor>| -> Result<Chained> {
        let Some(qp) = choose_qparams(op, input, layout, spec)? else {
            return Ok(Chained::NotCovered);
        };
        let args = QuantizeArgs {
            scale: &qp.scale,
            zero_point: qp.zero_point.as_ref(),
            quant_min: qmin,
            quant_max: qmax,
            dtype,
            domain: spec.domain,
        };
        let done = match into {
            Some(out) => quantize_into(op, input, layout, &args, out)?.then_some(None),
            None => quantize(op, input, layout, &args)?.map(Some),
        };
        Ok(match done {
            Some(codes) => Chained::Done(qp, codes),
            None => Chained::Chosen(qp),
        })
    };
    let Some(walk) = gate::walk(layout) else {
        return Ok(Chained::NotCovered);
    };
    if walk.first_kept() != Some(0) || walk.dims.len() < 2 || dtype.is_float8() {
        return two_passes(into);
    }
    let Some(gate::Choose { x, consts, zp_kind }) = gate::choose(input, spec) else {
        return Ok(Chained::NotCovered);
    };
    let Some((kinds, bounds)) = gate::quantize(
        spec.domain,
        input.kind(),
        spec.scale_dtype,
        zp_kind,
        qmin,
        qmax,
    ) else {
        return two_passes(into);
    };
    let mut qp = empty_qparams(op, &layout.qparams_shape, spec.scale_dtype, zp_kind)?;
    let fits = |out: &Tensor| out.size() == input.size() && out.kind() == dtype.storage_kind();
    let mut fresh = match into.as_deref() {
        Some(out) if !fits(out) => return Ok(Chained::NotCovered),
        Some(_) => None,
        None => {
            let codes = empty(op, &input.size(), dtype.storage_kind())?;
            advise_fresh(&codes);
            Some(codes)
        }
    };
    let codes_out = match (fresh.as_mut(), into) {
        (Some(codes), _) => out_view(codes),
        (None, Some(out)) => into_view(out, &[input]),
        (None, None) => None,
    };
    let (Some(qp_out), Some(codes_out)) = (qparams_view(&mut qp), codes_out) else {
        return Ok(Chained::NotCovered);
    };
    let params = Params {
        walk: &walk,
        kinds: &kinds,
        bounds,
    };
    let stored_kinds = (spec.scale_dtype, zp_kind);
    let done = dispatch!(
        chain_impl,
        x,
        kinds,
        codes_out,
        (&params, &consts, stored_kinds, qp_out)
    );
    // A NaN in the input: the reference path chooses (see `choose_impl`).
    Ok(if done {
        Chained::Done(qp, fresh)
    } else {
        Chained::NotCovered
    })
}

/// One pass of choose and quantize, for walks whose outermost dim is kept:
/// each thread takes a range of it, and each tile of that range is reduced,
/// turned into qparams and quantized while in cache. `false` (outputs
/// unfinished) when a block holds a NaN, as in `choose_impl`.
fn chain_impl<E: InputElem, F: Formula, C: Code>(
    x: &[E],
    params: &Params,
    consts: &Consts,
    stored_kinds: (Kind, Option<Kind>),
    qp: QParamsOut,
    codes: &mut [MaybeUninit<C>],
) -> bool {
    let walk = params.walk;
    let d0 = walk.dims[0];
    let jobs = jobs(
        d0.size,
        threads_for(walk.numel),
        (qp, codes),
        |(qp, codes), n| {
            let (qp, qp_rest) = qp.split_at(n * d0.block_stride);
            let (codes, codes_rest) = codes.split_at_mut(n * d0.elem_stride);
            ((qp, codes), (qp_rest, codes_rest))
        },
    );
    let nan = AtomicBool::new(false);
    parallel(jobs, |(r, (qp, codes))| {
        chain_part::<E, F, C>(x, params, consts, stored_kinds, r, qp, codes, &nan);
    });
    !nan.load(Ordering::Relaxed)
}

/// One thread's share of [`chain_impl`]: the blocks and codes whose index
/// along dim 0 is in `r0`, into `qp` and `codes`.
#[allow(clippy::too_many_arguments)]
fn chain_part<E: InputElem, F: Formula, C: Code>(
    x: &[E],
    params: &Params,
    consts: &Consts,
    (scale_kind, zp_kind): (Kind, Option<Kind>),
    r0: Range<usize>,
    mut qp: QParamsOut,
    codes: &mut [MaybeUninit<C>],
    nan: &AtomicBool,
) {
    let walk = params.walk;
    let d0 = walk.dims[0];
    let (first_block, elem0) = (r0.start * d0.block_stride, r0.start * d0.elem_stride);
    let mut ranges = walk.full();
    ranges[0] = r0;
    for_each_tile(
        walk,
        ranges,
        Some(0),
        Some(TILE_ELEMS),
        |ranges, block0, mut tile| {
            if !choose_tile::<E>(x, walk, consts, ranges, block0, &mut tile, nan) {
                return false;
            }
            qp.write(block0 - first_block, tile.scale, tile.zp);
            stored(scale_kind, tile.scale);
            if let Some(kind) = zp_kind {
                stored(kind, tile.zp);
            }
            quantize_tile::<E, F, C>(x, params, ranges, block0, elem0, tile, true, codes);
            true
        },
    );
}
