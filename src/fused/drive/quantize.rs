//! The fused `quantize_affine`: a pass of codes over every element, with
//! qparams that `quantize_affine` was given.

use std::mem::MaybeUninit;
use std::ops::Range;

use tch::Tensor;

use super::tile::quantize_tile;
use super::Params;
use crate::block::BlockLayout;
use crate::dtype::QuantDtype;
use crate::error::{Result, TorchContext};
use crate::fused::float::Elem;
use crate::fused::gate;
use crate::fused::quantize::{Code, Formula};
use crate::fused::threads::{for_each_tile, jobs, parallel, threads_for};
use crate::fused::view::{
    advise_fresh, empty, input_view, into_view, is_dense_cpu, out_view, values_view, Input, Out,
    Values,
};
use crate::mapping::ZeroPointDomain;

/// What [`quantize()`] needs besides the input: validated by
/// `quantize_affine` (scale and zero point already viewed per block).
pub(crate) struct QuantizeArgs<'a> {
    pub scale: &'a Tensor,
    pub zero_point: Option<&'a Tensor>,
    pub quant_min: f64,
    pub quant_max: f64,
    pub dtype: QuantDtype,
    pub domain: ZeroPointDomain,
}

/// Fused `quantize_affine`; `Ok(None)` where the reference path runs.
pub(crate) fn quantize(
    op: &'static str,
    input: &Tensor,
    layout: &BlockLayout,
    args: &QuantizeArgs,
) -> Result<Option<Tensor>> {
    let done = covered(op, input, layout, args, |pass| {
        let mut out = empty(op, &input.size(), args.dtype.storage_kind())?;
        advise_fresh(&out);
        let Some(codes) = out_view(&mut out) else {
            return Ok(None);
        };
        Ok(pass.run(codes).then_some(out))
    })?;
    Ok(done.flatten())
}

/// Fused `quantize_affine_into`: the codes written into `out`, which the
/// caller has checked (shape, dtype, device, no shared bytes); `Ok(false)`
/// where the reference path runs (`out` then untouched).
pub(crate) fn quantize_into(
    op: &'static str,
    input: &Tensor,
    layout: &BlockLayout,
    args: &QuantizeArgs,
    out: &mut Tensor,
) -> Result<bool> {
    if out.size() != input.size() || out.kind() != args.dtype.storage_kind() {
        return Ok(false);
    }
    let reads: Vec<&Tensor> = [Some(input), Some(args.scale), args.zero_point]
        .into_iter()
        .flatten()
        .collect();
    let done = covered(op, input, layout, args, |pass| {
        let Some(codes) = into_view(out, &reads) else {
            return Ok(false);
        };
        Ok(pass.run(codes))
    })?;
    Ok(done == Some(true))
}

/// A quantize pass the fused path covers: the input, the qparams as the
/// kernels read them and the walk, ready to write codes.
struct Pass<'a> {
    x: Input<'a>,
    params: Params<'a>,
    sources: Sources<'a, 'a>,
}

impl Pass<'_> {
    /// Writes every code into `codes`; `false` where no kernel fits the
    /// code dtype (`codes` then unfinished).
    fn run(&self, codes: Out) -> bool {
        let kinds = self.params.kinds;
        dispatch!(
            quantize_impl,
            self.x,
            kinds,
            codes,
            (&self.params, self.sources)
        )
    }
}

/// Runs `run` with the pass of a call the fused path covers; `Ok(None)`
/// when it does not cover it.
fn covered<R>(
    op: &'static str,
    input: &Tensor,
    layout: &BlockLayout,
    args: &QuantizeArgs,
    run: impl FnOnce(&Pass) -> Result<R>,
) -> Result<Option<R>> {
    crate::threading::check_settings(op)?;
    if args.dtype.is_float8() {
        return Ok(None);
    }
    let Some(x) = input_view(input) else {
        return Ok(None);
    };
    let params = [Some(args.scale), args.zero_point];
    if params.iter().flatten().any(|t| !is_dense_cpu(t)) {
        return Ok(None);
    }
    let Some((kinds, bounds)) = gate::quantize(
        args.domain,
        input.kind(),
        args.scale.kind(),
        args.zero_point.map(Tensor::kind),
        args.quant_min,
        args.quant_max,
    ) else {
        return Ok(None);
    };
    let scale = args.scale.f_contiguous().op(op)?;
    let zero_point = match args.zero_point {
        Some(z) => Some(z.f_contiguous().op(op)?),
        None => None,
    };
    let Some(scale_values) = values_view(&scale) else {
        return Ok(None);
    };
    let zp_values = match zero_point.as_ref() {
        Some(z) => match values_view(z) {
            Some(v) => Some(v),
            None => return Ok(None),
        },
        None => None,
    };
    let Some(walk) = gate::walk(layout) else {
        return Ok(None);
    };
    let pass = Pass {
        x,
        params: Params {
            walk: &walk,
            kinds: &kinds,
            bounds,
        },
        sources: (&scale_values, zp_values.as_ref()),
    };
    run(&pass).map(Some)
}

type Sources<'a, 'b> = (&'b Values<'a>, Option<&'b Values<'a>>);

fn quantize_impl<E: Elem, F: Formula, C: Code>(
    x: &[E],
    params: &Params,
    sources: Sources,
    codes: &mut [MaybeUninit<C>],
) -> bool {
    let walk = params.walk;
    let d0 = walk.dims[0];
    let jobs = jobs(d0.size, threads_for(walk.numel), codes, |c, n| {
        c.split_at_mut(n * d0.elem_stride)
    });
    parallel(jobs, |(r, out)| {
        quantize_part::<E, F, C>(x, params, sources, r, out);
    });
    true
}

/// Codes of the elements whose index along dim 0 is in `r0`, into `out`.
fn quantize_part<E: Elem, F: Formula, C: Code>(
    x: &[E],
    params: &Params,
    (scale, zp): Sources,
    r0: Range<usize>,
    out: &mut [MaybeUninit<C>],
) {
    let walk = params.walk;
    let elem0 = r0.start * walk.dims[0].elem_stride;
    let mut ranges = walk.full();
    ranges[0] = r0;
    for_each_tile(
        walk,
        ranges,
        walk.first_kept(),
        None,
        |ranges, block0, tile| {
            scale.read(block0, tile.scale);
            if let Some(zp) = zp {
                zp.read(block0, tile.zp);
            }
            quantize_tile::<E, F, C>(x, params, ranges, block0, elem0, tile, false, out);
            true
        },
    );
}
