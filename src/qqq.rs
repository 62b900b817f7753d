//! QQQ (W4A8) weight quantization: torchao 0.11's
//! `choose_qparams_and_quantize_affine_qqq` and `dequantize_affine_qqq`.
//!
//! QQQ stores a 2-D `[N, K]` weight as 4-bit codes with, per output
//! channel (row), a float32 scale, and for group-wise quantization also a
//! float16 scale per group of 128 elements of a row, expressed relative to
//! the channel's scale (the kernel multiplies int8 activations by int4
//! weights, then by the two scales). Everything is issued op for op as
//! torchao does, in the same dtypes, so the results are bit-identical to
//! torchao's on the same device.

use tch::{Kind, Tensor};

use crate::dtype::{check_output_float, is_input_float, INPUT_FLOATS};
use crate::error::{Error, Result, TorchContext};
use crate::qparams::{check_float_input, check_not_empty};
use crate::scalar_ops;
use crate::strided::check_strided;

/// The group size QQQ's group-wise kernel takes (besides per channel).
pub const QQQ_GROUP_SIZE: i64 = 128;

/// What [`choose_qparams_and_quantize_affine_qqq`] returns, with torchao's
/// names (its tuple `(q_w, s_group, s_channel, w_ref)`).
///
/// For a `[N, K]` weight:
///
/// | field | group-wise (`K > 128`, group 128) | per channel |
/// | --- | --- | --- |
/// | `q_w` | int32 `[N, K]`, codes `0..=15` (zero point 8) | int32 `[N, K]`, codes `-7..=7` |
/// | `s_group` | float16 `[N, K / 128]` | float16 `[0]` (empty) |
/// | `s_channel` | float32 `[N, 1]` | float32 `[N, 1]` (divided by 16) |
/// | `w_ref` | `[N, K]`, the weight as the kernel sees it | `[N, K]` |
///
/// `w_ref`'s dtype is that of `float16 * input`: float16 for a float16
/// weight, float32 for a float32 or bfloat16 weight.
#[derive(Debug)]
pub struct QqqQuantized {
    /// The 4-bit codes, as int32.
    pub q_w: Tensor,
    /// Group scales relative to the channel scale (empty per channel).
    pub s_group: Tensor,
    /// Channel scales.
    pub s_channel: Tensor,
    /// The dequantized reference weight torchao computes alongside.
    pub w_ref: Tensor,
}

/// Quantizes a 2-D weight to QQQ's 4-bit codes and scales, bit-identical to
/// torchao 0.11's `choose_qparams_and_quantize_affine_qqq`.
///
/// `group_size` is `-1` (per channel), 128, or `K` (per channel too); 128
/// with `K <= 128` is per channel as well, as in torchao.
///
/// **Group-wise** (`K > 128`), in the weight's dtype for each group `g` of 128
/// elements of a row:
///
/// ```text
/// s_g  = max(|g|) * (2 / 15)
/// q    = clamp(int32(round(g / s_g)) + 8, 0, 15)
/// ref  = float16(q - 8) * s_g
/// ```
///
/// then per row `r` of `ref` (in `ref`'s dtype): `s_c = max(|r|) / 127`,
/// `w_ref = float16(int8(clamp(round(r / s_c), -128, 127))) * s_c`, and the
/// stored scales are `s_channel = float32(s_c)` and `s_group =
/// float16(s_g / s_channel)` (the division in float32, the dtype libtorch
/// promotes `s_g`'s dtype and float32 to).
///
/// **Per channel**, in the weight's dtype for each row `r`:
///
/// ```text
/// s    = max(|r|) / 7
/// q    = clamp(int32(round(r / s)), -7, 7)
/// w_ref = float16(q) * s
/// s_channel = float32(s / 16)     (the kernel unpacks codes shifted left by 4)
/// ```
///
/// Rounding is libtorch's `round` (half to even). No eps is applied, as in
/// torchao: an all-zero group or row gives a zero scale, `0 / 0 = NaN`
/// before the int32 cast, and libtorch's cast of NaN (on x86 CPUs the
/// integer indefinite, `i32::MIN`) then clamps to code 0 (group-wise) or
/// -7 (per channel).
///
/// # Errors
/// `num_bits` not 4; `w` not 2-D, empty, not float32/float16/bfloat16 or
/// not strided; `group_size` not `-1`, 128 or `K`; group-wise with `K` not
/// a multiple of 128 (torchao's reshape of the group scales fails).
///
/// # Examples
/// ```
/// use tch::{Device, Kind, Tensor};
/// use tch_quant::choose_qparams_and_quantize_affine_qqq;
/// let w = Tensor::randn([64, 256], (Kind::Half, Device::Cpu));
/// let q = choose_qparams_and_quantize_affine_qqq(&w, 4, 128)?;
/// assert_eq!((q.q_w.size(), q.q_w.kind()), (vec![64, 256], Kind::Int));
/// assert_eq!((q.s_group.size(), q.s_group.kind()), (vec![64, 2], Kind::Half));
/// assert_eq!((q.s_channel.size(), q.s_channel.kind()), (vec![64, 1], Kind::Float));
/// let per_channel = choose_qparams_and_quantize_affine_qqq(&w, 4, -1)?;
/// assert_eq!(per_channel.s_group.size(), [0]);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn choose_qparams_and_quantize_affine_qqq(
    w: &Tensor,
    num_bits: i64,
    group_size: i64,
) -> Result<QqqQuantized> {
    const OP: &str = "choose_qparams_and_quantize_affine_qqq";
    check_strided(OP, "w", w)?;
    check_num_bits(OP, num_bits)?;
    let (size_n, size_k) = check_2d(OP, w)?;
    check_float_input(OP, "w", w)?;
    check_not_empty(OP, "w", w)?;
    let group_size = check_group_size(OP, group_size, size_k)?;
    let compute = || -> std::result::Result<QqqQuantized, tch::TchError> {
        if group_size < size_k {
            let max_q_val = (1i64 << num_bits) - 1;
            let half_q_val = (max_q_val + 1) / 2;
            let w = w.f_reshape([-1, group_size])?;
            let s_group = w.f_abs()?.f_amax([-1].as_slice(), true)?;
            let s_group = scalar_ops::mul(&s_group, 2.0 / max_q_val as f64)?;
            let q_w = w.f_div(&s_group)?.f_round()?.f_to_kind(Kind::Int)?;
            let q_w = scalar_ops::add(&q_w, half_q_val)?;
            let q_w = scalar_ops::clamp(&q_w, 0i64, max_q_val)?;
            let w_ref = scalar_ops::sub(&q_w, half_q_val)?
                .f_to_kind(Kind::Half)?
                .f_mul(&s_group)?;
            let q_w = q_w.f_reshape([size_n, size_k])?.f_contiguous()?;
            let w_ref = w_ref.f_reshape([size_n, size_k])?.f_contiguous()?;
            let s_channel = w_ref.f_abs()?.f_amax([-1].as_slice(), true)?;
            let s_channel = scalar_ops::div(&s_channel, 127.0)?;
            let t_int8 = scalar_ops::clamp(&w_ref.f_div(&s_channel)?.f_round()?, -128i64, 127i64)?
                .f_to_kind(Kind::Int8)?;
            let w_ref = t_int8.f_to_kind(Kind::Half)?.f_mul(&s_channel)?;
            let s_channel = s_channel.f_reshape([-1, 1])?.f_to_kind(Kind::Float)?;
            let s_group = s_group
                .f_reshape([size_n, -1])?
                .f_contiguous()?
                .f_div(&s_channel)?
                .f_to_kind(Kind::Half)?;
            Ok(QqqQuantized {
                q_w,
                s_group,
                s_channel,
                w_ref,
            })
        } else {
            let max_q_val = (1i64 << (num_bits - 1)) - 1;
            let s_channel = w.f_abs()?.f_amax([-1].as_slice(), true)?;
            let s_channel = scalar_ops::div(&s_channel, max_q_val)?;
            let q_w = w.f_div(&s_channel)?.f_round()?.f_to_kind(Kind::Int)?;
            let q_w = scalar_ops::clamp(&q_w, -max_q_val, max_q_val)?;
            let w_ref = q_w.f_to_kind(Kind::Half)?.f_mul(&s_channel)?;
            let s_group = Tensor::f_empty([0], (Kind::Half, w.device()))?;
            let s_channel = scalar_ops::div(&s_channel, 1i64 << (8 - num_bits))?
                .f_reshape([size_n, -1])?
                .f_contiguous()?
                .f_to_kind(Kind::Float)?;
            Ok(QqqQuantized {
                q_w,
                s_group,
                s_channel,
                w_ref,
            })
        }
    };
    compute().op(OP)
}

/// Dequantizes QQQ codes, bit-identical to torchao 0.11's
/// `dequantize_affine_qqq`.
///
/// **Group-wise** (`K > 128`, group 128): `s = s_group * float16(s_channel)`
/// (float16 for float16 group scales), then for each group of a row
/// `w_dq = float16(w - 8) * s`. **Per channel**: `w_dq = float16(w) *
/// (s_channel * 16)` (float32 for float32 channel scales; `s_group` is not
/// read). The result is cast to `output_dtype`, float16 when `None`.
///
/// # Errors
/// `num_bits` not 4; `w` not a 2-D integer tensor (uint8, int8, int16,
/// int32, int64) or empty; `group_size` as in
/// [`choose_qparams_and_quantize_affine_qqq`]; `s_group` (group-wise) not
/// `[N, K / 128]` or `s_channel` not `[N, 1]`; scales not
/// float32/float16/bfloat16 or on another device; `output_dtype` not
/// float32/float16/bfloat16.
///
/// # Examples
/// ```
/// use tch::{Device, Kind, Tensor};
/// use tch_quant::{choose_qparams_and_quantize_affine_qqq, dequantize_affine_qqq};
/// let w = Tensor::randn([8, 512], (Kind::Float, Device::Cpu));
/// let q = choose_qparams_and_quantize_affine_qqq(&w, 4, 128)?;
/// let w_dq = dequantize_affine_qqq(&q.q_w, &q.s_group, &q.s_channel, 4, 128, None)?;
/// assert_eq!((w_dq.size(), w_dq.kind()), (vec![8, 512], Kind::Half));
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn dequantize_affine_qqq(
    w: &Tensor,
    s_group: &Tensor,
    s_channel: &Tensor,
    num_bits: i64,
    group_size: i64,
    output_dtype: Option<Kind>,
) -> Result<Tensor> {
    const OP: &str = "dequantize_affine_qqq";
    check_strided(OP, "w", w)?;
    check_strided(OP, "s_group", s_group)?;
    check_strided(OP, "s_channel", s_channel)?;
    check_num_bits(OP, num_bits)?;
    let (size_n, size_k) = check_2d(OP, w)?;
    if !matches!(
        w.kind(),
        Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64
    ) {
        return Err(Error::UnsupportedKind {
            op: OP,
            arg: "w",
            expected: "an integer dtype (uint8, int8, int16, int32 or int64)",
            got: w.kind(),
        });
    }
    check_not_empty(OP, "w", w)?;
    let group_size = check_group_size(OP, group_size, size_k)?;
    let grouped = group_size < size_k;
    let mut scales = vec![("s_channel", s_channel, vec![size_n, 1])];
    if grouped {
        scales.push(("s_group", s_group, vec![size_n, size_k / group_size]));
    }
    for (name, t, shape) in scales {
        if !is_input_float(t.kind()) {
            return Err(Error::UnsupportedKind {
                op: OP,
                arg: name,
                expected: INPUT_FLOATS,
                got: t.kind(),
            });
        }
        if t.size() != shape {
            return Err(Error::ShapeMismatch {
                op: OP,
                arg: name,
                got: t.size(),
                reason: format!("expected {shape:?} for a [{size_n}, {size_k}] weight"),
            });
        }
        if t.device() != w.device() {
            return Err(Error::invalid(
                OP,
                name,
                format!("a tensor on {:?}", t.device()),
                format!("must be on w's device, {:?}", w.device()),
            ));
        }
    }
    if let Some(kind) = output_dtype {
        check_output_float(OP, kind)?;
    }
    let compute = || -> std::result::Result<Tensor, tch::TchError> {
        let w_dq = if grouped {
            let max_q_val = (1i64 << num_bits) - 1;
            let half_q_val = (max_q_val + 1) / 2;
            let s = s_group.f_mul(&s_channel.f_to_kind(Kind::Half)?)?;
            scalar_ops::sub(&w.f_reshape([-1, group_size])?, half_q_val)?
                .f_to_kind(Kind::Half)?
                .f_mul(&s.f_reshape([-1, 1])?)?
                .f_reshape([size_n, size_k])?
                .f_contiguous()?
        } else {
            let s = scalar_ops::mul(s_channel, 1i64 << (8 - num_bits))?;
            w.f_to_kind(Kind::Half)?.f_mul(&s)?
        };
        w_dq.f_to_kind(output_dtype.unwrap_or(Kind::Half))
    };
    compute().op(OP)
}

fn check_num_bits(op: &'static str, num_bits: i64) -> Result<()> {
    if num_bits != 4 {
        return Err(Error::invalid(
            op,
            "num_bits",
            num_bits,
            "QQQ supports 4 bits only",
        ));
    }
    Ok(())
}

fn check_2d(op: &'static str, w: &Tensor) -> Result<(i64, i64)> {
    match w.size()[..] {
        [n, k] => Ok((n, k)),
        _ => Err(Error::ShapeMismatch {
            op,
            arg: "w",
            got: w.size(),
            reason: "QQQ quantizes 2-D [out_features, in_features] weights".into(),
        }),
    }
}

/// The effective group size: `-1` and `K` mean `K`; 128 must then cut rows
/// of more than 128 elements into whole groups.
fn check_group_size(op: &'static str, group_size: i64, size_k: i64) -> Result<i64> {
    if ![-1, QQQ_GROUP_SIZE, size_k].contains(&group_size) {
        return Err(Error::invalid(
            op,
            "group_size",
            group_size,
            format!("must be -1 (per channel), 128 or the row length {size_k}"),
        ));
    }
    let group_size = if group_size == -1 { size_k } else { group_size };
    if group_size < size_k && size_k % group_size != 0 {
        return Err(Error::invalid(
            op,
            "group_size",
            group_size,
            format!("must divide the row length {size_k} (torchao's group scales reshape fails)"),
        ));
    }
    Ok(group_size)
}
