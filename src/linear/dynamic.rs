//! `Int8DynamicActivationInt8WeightConfig()`'s forward: the activation
//! quantized per token at every call, an int8 x int8 matmul, and two
//! rescales, in torchao 0.11's order and dtypes.
//!
//! 1. `x` quantized by `_int8_symm_per_token_reduced_range_quant`:
//!    symmetric int8 over blocks `(1, .., 1, K)`, range `-127..=127`, eps
//!    `1e-5`, zero point in the int domain, the scale in float32 when `x` is
//!    float16 (`scale_dtype`) and in `x`'s dtype otherwise; the crate's
//!    one-pass [`choose_qparams_and_quantize_affine`].
//! 2. `_linear_int8_act_int8_weight_impl` with `int_scaled_matmul`'s CPU
//!    form: `c = _int_mm(x_codes.reshape(-1, K), w_codes.contiguous().t())`
//!    (int32), `y = c.to(s.dtype) * s.expand(M, N)` with `s =
//!    x_scale.reshape(-1, 1)` in float32 when the scale is float16, then
//!    `y.to(x_scale.dtype)`, `y * w_scale`, reshaped, cast to `x`'s dtype,
//!    `y += bias`.

use tch::{Device, Kind, Tensor};

use crate::chain::choose_qparams_and_quantize_affine;
use crate::error::{Result, TorchContext};
use crate::mapping::MappingType;
use crate::qparams::QParamsOptions;
use crate::QuantDtype;

use super::layer::add_bias;
use super::layout::Int8Weight;

/// The activation quantization's arguments for an input of dtype `kind`.
fn activation_options(kind: Kind) -> QParamsOptions {
    QParamsOptions {
        quant_min: Some(-127.0),
        quant_max: Some(127.0),
        eps: Some(1e-5),
        scale_dtype: (kind == Kind::Half).then_some(Kind::Float),
        ..Default::default()
    }
}

/// The int32 product of int8 `a` `[M, K]` and `b` `[K, N]`, which every
/// path computes exactly: on the CPU `_int_mm`, as torchao's
/// `int_scaled_matmul` calls it; on CUDA torchao's `safe_int_mm`, which
/// calls cuBLAS (`_int_mm`) when `K` and `N` are non-zero multiples of 8 and
/// multiplies as int32 on the CPU otherwise. Where cuBLAS refuses a shape
/// (its own limits on `M`), the CPU's exact int32 product stands in for
/// `safe_int_mm`'s float32 fallback, which is exact only while the sums stay
/// below 2^24.
fn int_mm(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    const OP: &str = "QuantizedLinear::forward";
    let device = a.device();
    let on_cpu = || -> Result<Tensor> {
        let a = a
            .f_to_device(Device::Cpu)
            .and_then(|t| t.f_to_kind(Kind::Int))
            .op(OP)?;
        let b = b
            .f_to_device(Device::Cpu)
            .and_then(|t| t.f_to_kind(Kind::Int))
            .op(OP)?;
        a.f_matmul(&b).and_then(|c| c.f_to_device(device)).op(OP)
    };
    if device == Device::Cpu {
        return a.f_internal_int_mm(b).op(OP);
    }
    let (k, n) = (a.size()[1], b.size()[1]);
    if k > 0 && n > 0 && k % 8 == 0 && n % 8 == 0 {
        let b = b.f_contiguous().op(OP)?;
        if let Ok(c) = a.f_internal_int_mm(&b) {
            return Ok(c);
        }
    }
    on_cpu()
}

/// The forward of one int8 dynamic layer on a checked `x` (`[.., K]`),
/// giving `out_shape`.
pub(crate) fn int8_dynamic_linear(
    x: &Tensor,
    w: &Int8Weight,
    bias: Option<&Tensor>,
    out_shape: &[i64],
) -> Result<Tensor> {
    const OP: &str = "QuantizedLinear::forward";
    let shape = x.size();
    let k = shape[shape.len() - 1];
    let mut block = vec![1; shape.len() - 1];
    block.push(k);
    let (qp, codes) = choose_qparams_and_quantize_affine(
        x,
        MappingType::Symmetric,
        &block,
        QuantDtype::Int8,
        &activation_options(x.kind()),
    )?;
    let x_scale = qp.scale;
    let scale_kind = x_scale.kind();
    let intermediate = if scale_kind == Kind::Half {
        Kind::Float
    } else {
        scale_kind
    };
    let w_t = w.codes().f_contiguous().and_then(|t| t.f_tr()).op(OP)?;
    let c = int_mm(&codes.f_reshape([-1, k]).op(OP)?, &w_t)?;
    let (m, n) = (c.size()[0], c.size()[1]);
    let s = x_scale
        .f_reshape([-1, 1])
        .and_then(|s| s.f_to_kind(intermediate))
        .and_then(|s| s.f_expand([m, n], false))
        .op(OP)?;
    let y = c
        .f_to_kind(intermediate)
        .and_then(|c| c.f_mul(&s))
        .and_then(|y| y.f_to_kind(scale_kind))
        .and_then(|y| y.f_mul(w.scale()))
        .and_then(|y| y.f_reshape(out_shape))
        .and_then(|y| y.f_to_kind(x.kind()))
        .op(OP)?;
    add_bias(OP, y, bias)
}
