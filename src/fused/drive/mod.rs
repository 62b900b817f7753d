//! The drivers of the three entry points: each asks [`gate`](super::gate)
//! whether it covers the call, views the tensors ([`view`](super::view)),
//! cuts the pass into jobs and tiles ([`threads`](super::threads)) and runs
//! the kernels on each tile ([`tile`]).

/// Runs `$f::<E, F, C>(x, $args.., codes)` for the input's element type `E`,
/// the formula `F` of the dtypes in `$kinds` and the code type `C`; `false`
/// when no instantiation fits (the caller falls back). A macro because
/// each arm instantiates `$f` with other type parameters.
macro_rules! dispatch {
    ($f:ident, $x:expr, $kinds:expr, $codes:expr, ($($arg:expr),*)) => {{
        use half::{bf16, f16};
        use tch::Kind;
        use $crate::fused::float::{Bf16, F16, F32};
        use $crate::fused::quantize::{FloatFormula, IntFormula};
        use $crate::fused::view::{Input, Out};
        use $crate::mapping::ZeroPointDomain;
        let float_domain = $kinds.domain == ZeroPointDomain::Float;
        macro_rules! code {
            ($E:ty, $F:ty, $xs:expr) => {
                match $codes {
                    Out::U8(c) => $f::<$E, $F, u8>($xs, $($arg,)* c),
                    Out::I8(c) => $f::<$E, $F, i8>($xs, $($arg,)* c),
                    Out::I16(c) => $f::<$E, $F, i16>($xs, $($arg,)* c),
                    Out::I32(c) => $f::<$E, $F, i32>($xs, $($arg,)* c),
                    _ => false,
                }
            };
        }
        match ($x, float_domain, $kinds.p, $kinds.p2) {
            (Input::F32(x), true, Kind::Float, _) => code!(f32, FloatFormula<F32>, x),
            (Input::F32(x), false, Kind::Float, _) => code!(f32, IntFormula<F32, F32>, x),
            (Input::Bf16(x), true, Kind::BFloat16, _) => code!(bf16, FloatFormula<Bf16>, x),
            (Input::Bf16(x), true, Kind::Float, _) => code!(bf16, FloatFormula<F32>, x),
            (Input::Bf16(x), false, Kind::BFloat16, Kind::BFloat16) => {
                code!(bf16, IntFormula<Bf16, Bf16>, x)
            }
            (Input::Bf16(x), false, Kind::BFloat16, Kind::Float) => {
                code!(bf16, IntFormula<Bf16, F32>, x)
            }
            (Input::Bf16(x), false, Kind::Float, _) => code!(bf16, IntFormula<F32, F32>, x),
            (Input::F16(x), true, Kind::Half, _) => code!(f16, FloatFormula<F16>, x),
            (Input::F16(x), true, Kind::Float, _) => code!(f16, FloatFormula<F32>, x),
            (Input::F16(x), false, Kind::Half, Kind::Half) => code!(f16, IntFormula<F16, F16>, x),
            (Input::F16(x), false, Kind::Half, Kind::Float) => code!(f16, IntFormula<F16, F32>, x),
            (Input::F16(x), false, Kind::Float, _) => code!(f16, IntFormula<F32, F32>, x),
            _ => false,
        }
    }};
}

mod chain;
mod choose;
mod dequantize;
mod quantize;
mod tile;

pub(crate) use chain::{choose_and_quantize, Chained};
pub(crate) use choose::choose_qparams;
pub(crate) use dequantize::{dequantize, dequantize_into, CodesArg, DequantizeArgs};
pub(crate) use quantize::{quantize, quantize_into, QuantizeArgs};

use super::layout::Walk;
use super::quantize::QuantKinds;

/// The fixed arguments of a quantize pass.
struct Params<'a> {
    walk: &'a Walk,
    kinds: &'a QuantKinds,
    bounds: (f32, f32),
}
