//! Which calls the fused path covers. Each check gives `None` where the
//! kernels would not be bit-identical to the reference path or could not
//! use the tensors' memory directly, and the driver then declines the call
//! (see the list in [`super`]).

use tch::{Kind, Tensor};

use super::dequantize::DeqKinds;
use super::float::scalar_to;
use super::layout::Walk;
use super::qparams::Consts;
use super::quantize::QuantKinds;
use super::view::{input_view, Input};
use crate::block::BlockLayout;
use crate::formula::{mid_point, ChooseSpec};
use crate::mapping::ZeroPointDomain;
use crate::semantics::Semantics;

/// A tile holds at least the blocks of one index of the outermost kept dim;
/// layouts with more than this many there (a kept dim, then a reduced one,
/// then a huge kept one) would need a scratch larger than the outputs, and
/// run on the reference path.
const MAX_TILE_BLOCKS: usize = 1 << 16;

/// The walk of `layout`, if its tiles stay small.
pub(crate) fn walk(layout: &BlockLayout) -> Option<Walk> {
    let walk = Walk::new(layout);
    let tile_blocks = walk.first_kept().map_or(1, |p| walk.dims[p].block_stride);
    (tile_blocks <= MAX_TILE_BLOCKS).then_some(walk)
}

/// A choose the fused path covers: the input's elements, the constants of
/// the op sequence and the dtype of the zero point (`None` without one).
pub(crate) struct Choose<'a> {
    pub x: Input<'a>,
    pub consts: Consts,
    pub zp_kind: Option<Kind>,
}

/// The fused choose of `input` under `spec`, if it covers them.
pub(crate) fn choose<'a>(input: &'a Tensor, spec: &ChooseSpec) -> Option<Choose<'a>> {
    if input.requires_grad() {
        return None;
    }
    let x = input_view(input)?;
    let kind = input.kind();
    let consts = Consts::new(spec, kind)?;
    let zp_kind = spec.zero_point_kind(kind);
    zero_point_fits(zp_kind, &consts).then_some(Choose { x, consts, zp_kind })
}

/// The dtypes of the quantize formula and its clamp bounds, for an input,
/// scale and zero point of these dtypes, if the fused quantize covers them.
pub(crate) fn quantize(
    domain: ZeroPointDomain,
    input: Kind,
    scale: Kind,
    zero_point: Option<Kind>,
    quant_min: f64,
    quant_max: f64,
) -> Option<(QuantKinds, (f32, f32))> {
    let mid = mid_point(quant_min, quant_max);
    let kinds = QuantKinds::new(domain, input, scale, zero_point, mid)?;
    let bounds = clamp_bounds(kinds.clamp_kind(), quant_min, quant_max)?;
    Some((kinds, bounds))
}

/// The dtypes of a dequantize into `output` with a scale and zero point of
/// these dtypes, if the fused dequantize covers them: float32, float16 or
/// bfloat16 outputs and scales, zero points of those or of an integer dtype
/// (float64 is left to the reference path: its products round twice).
///
/// Under torchao 0.18 the Int domain subtracts in the output dtype
/// (`int_in_output`), and without a zero point it is the None domain's
/// formula (`q.to(O) * scale` both).
pub(crate) fn dequantize(
    domain: ZeroPointDomain,
    semantics: Semantics,
    output: Kind,
    scale: Kind,
    zero_point: Option<Kind>,
    quant_min: f64,
    quant_max: f64,
) -> Option<DeqKinds> {
    let float = |k: Kind| matches!(k, Kind::Float | Kind::Half | Kind::BFloat16);
    let int = |k: Kind| {
        matches!(
            k,
            Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64
        )
    };
    if !float(output) || !float(scale) {
        return None;
    }
    let new_int = semantics == Semantics::Torchao0_18 && domain == ZeroPointDomain::Int;
    let domain = match zero_point {
        None if new_int => ZeroPointDomain::None,
        _ => domain,
    };
    let int_zero_point = match (domain, zero_point) {
        (ZeroPointDomain::None, None) => false,
        (ZeroPointDomain::Int | ZeroPointDomain::Float, Some(z)) if int(z) || float(z) => int(z),
        _ => return None,
    };
    Some(DeqKinds {
        domain,
        int_in_output: new_int && domain == ZeroPointDomain::Int,
        output,
        int_zero_point,
        mid: scalar_to(Kind::Float, mid_point(quant_min, quant_max)),
    })
}

/// Whether an integer zero-point dtype holds every value the zero point can
/// take (a float one always does, up to rounding that
/// [`Out::write`](super::view::Out::write) does).
fn zero_point_fits(kind: Option<Kind>, consts: &Consts) -> bool {
    let (Some(kind), Some((lo, hi))) = (kind, consts.zero_point_range()) else {
        return true;
    };
    let (min, max) = match kind {
        Kind::Uint8 => (0.0, 255.0),
        Kind::Int8 => (-128.0, 127.0),
        Kind::Int16 => (-32768.0, 32767.0),
        Kind::Int => (-2147483648.0, 2147483647.0),
        Kind::Int64 => (-9.2e18, 9.2e18),
        _ => return true,
    };
    min <= lo && hi <= max
}

/// `quant_min`/`quant_max` as the clamp sees them in `kind` (from Python
/// ints, through `float`); `None` unless both are exact there.
fn clamp_bounds(kind: Kind, quant_min: f64, quant_max: f64) -> Option<(f32, f32)> {
    let lo = scalar_to(kind, quant_min as i64 as f64);
    let hi = scalar_to(kind, quant_max as i64 as f64);
    (lo as f64 == quant_min && hi as f64 == quant_max).then_some((lo, hi))
}
