//! GGUF Q4_K-style super-block quantization: torchao 0.11's
//! `choose_qparams_gguf`, `quantize_gguf` and `dequantize_gguf`, and the
//! weight transform of its prototype `GGUFWeightOnlyConfig`
//! ([`gguf_weight_only`]).
//!
//! A 2-D weight is cut into blocks of `block_size[1]` elements of a row
//! (32 in Q4_K); each block has a scale and a min, and
//! `256 / block_size[1]` consecutive blocks of a row (a *super-block* of
//! 256 elements, GGUF's `QK_K`) share one scale for their block scales and
//! one for their block mins, so that the block scales and mins themselves
//! are stored as 6-bit values.
//!
//! Everything is computed in the input's dtype, op for op as torchao does,
//! so the results are bit-identical to torchao's on the same device.
//! torchao's behaviour is kept where it departs from llama.cpp's Q4_K, so
//! that results stay torchao's:
//! - [`quantize_gguf`] returns `(input - block_min) / block_scale` in the
//!   input's float dtype, neither rounded nor clamped to `0..=15`;
//! - a negative block min divided by its (non-negative) super-block min
//!   scale is clamped to 0: the quantized min is 0 for every block whose
//!   minimum is negative, and the dequantized value is then `int_data *
//!   block_scale`, not the input;
//! - a super-block whose blocks are all constant zero has a zero scale
//!   scale, so its quantized block scales are `0 / 0 = NaN` (and so are its
//!   codes and dequantized values); no eps is applied.

use tch::{Kind, Tensor};

use crate::dtype::{check_output_float, is_input_float, INPUT_FLOATS};
use crate::error::{Error, Result, TorchContext};
use crate::qparams::{check_float_input, check_not_empty};
use crate::scalar_ops;
use crate::strided::check_strided;
use crate::QuantDtype;

/// Elements of a GGUF super-block (torchao's `_GGUF_QK_K`).
pub const GGUF_QK_K: i64 = 256;

/// Largest first-level code: `uint4`'s `quant_max` (torchao hard-codes 15).
const QUANT_MAX: f64 = 15.0;

/// Largest 6-bit code of a quantized block scale or min.
const QPARAM_QUANT_MAX: i64 = 63;

/// The four qparams tensors of [`choose_qparams_gguf`], with torchao's
/// names, all in the input's dtype.
///
/// For a `[N, K]` input and `block_size = [1, B]` (`K` a multiple of 256,
/// `S = 256 / B` blocks per super-block):
///
/// | field | shape | value |
/// | --- | --- | --- |
/// | `super_block_scale_scale` | `[N, K / 256]` | `max(abs(block_scale)) / 63` over a super-block |
/// | `super_block_min_scale` | `[N, K / 256]` | `max(abs(block_min)) / 63` over a super-block |
/// | `quantized_block_scale` | `[N, K / 256, S]` | `clamp(block_scale / super_block_scale_scale, 0, 63)` |
/// | `quantized_block_min` | `[N, K / 256, S]` | `clamp(block_min / super_block_min_scale, 0, 63)` |
///
/// (With `K == 256` the super-block dims are `[N]` and `[N, S]`.) The
/// quantized values are not rounded, as in torchao: they are floats in
/// `[0, 63]` (or NaN).
#[derive(Debug)]
pub struct GgufQParams {
    /// One scale per super-block for its blocks' scales.
    pub super_block_scale_scale: Tensor,
    /// One scale per super-block for its blocks' mins.
    pub super_block_min_scale: Tensor,
    /// Each block's scale in units of its super-block's scale scale.
    pub quantized_block_scale: Tensor,
    /// Each block's min in units of its super-block's min scale.
    pub quantized_block_min: Tensor,
}

impl GgufQParams {
    fn named(&self) -> [(&'static str, &Tensor); 4] {
        [
            ("super_block_scale_scale", &self.super_block_scale_scale),
            ("super_block_min_scale", &self.super_block_min_scale),
            ("quantized_block_scale", &self.quantized_block_scale),
            ("quantized_block_min", &self.quantized_block_min),
        ]
    }
}

/// Chooses the GGUF qparams of `input`, bit-identical to torchao 0.11's
/// `choose_qparams_gguf`.
///
/// In the input's dtype, for every block (the elements `block_size` groups,
/// as in `choose_qparams_affine`):
///
/// ```text
/// block_scale = (max(block) - min(block)) / 15        block_min = min(block)
/// ```
///
/// then for every super-block (`256 / block_size[-1]` consecutive blocks of
/// a row of the 2-D grid of blocks):
///
/// ```text
/// super_block_scale_scale = max(|block_scale|) / 63
/// super_block_min_scale   = max(|block_min|) / 63
/// quantized_block_scale   = clamp(block_scale / super_block_scale_scale, 0, 63)
/// quantized_block_min     = clamp(block_min / super_block_min_scale, 0, 63)
/// ```
///
/// Each division rounds once to the input's dtype; nothing is rounded to an
/// integer and no eps guards the divisions (see the module docs for what
/// that gives on zero blocks and negative mins). See [`GgufQParams`] for the
/// shapes.
///
/// # Errors
/// `target_dtype` not `uint4` (torchao ignores it; its formulas are the
/// uint4 ones); `input` not float32/float16/bfloat16, empty or not strided;
/// `block_size` with an entry `<= 0`, another length than the input's rank,
/// an entry that does not divide its dim, a last entry that does not divide
/// 256, or a grid of blocks that is not 2-D or whose rows do not split into
/// whole super-blocks (torchao's asserts and failing views).
///
/// # Examples
/// ```
/// use tch::{Device, Kind, Tensor};
/// use tch_quant::{choose_qparams_gguf, QuantDtype};
/// let w = Tensor::randn([4, 512], (Kind::BFloat16, Device::Cpu));
/// let qp = choose_qparams_gguf(&w, &[1, 32], QuantDtype::UInt4)?;
/// assert_eq!(qp.super_block_scale_scale.size(), [4, 2]);
/// assert_eq!(qp.quantized_block_scale.size(), [4, 2, 8]);
/// assert_eq!(qp.quantized_block_min.kind(), Kind::BFloat16);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn choose_qparams_gguf(
    input: &Tensor,
    block_size: &[i64],
    target_dtype: QuantDtype,
) -> Result<GgufQParams> {
    const OP: &str = "choose_qparams_gguf";
    check_strided(OP, "input", input)?;
    check_uint4(OP, target_dtype)?;
    check_float_input(OP, "input", input)?;
    check_not_empty(OP, "input", input)?;
    let blocks = Reduction::new(OP, "block_size", block_size, &input.size())?;
    let super_block = super_block_size(OP, block_size)?;
    let grid = blocks.qparams_shape();
    if grid.len() != 2 {
        return Err(grid_not_2d(OP, block_size, &input.size(), &grid));
    }
    let supers = Reduction::new(OP, "block_size", &[1, super_block], &grid)?;
    let scale_shape = supers.after_reduction();
    if product(&supers.qparams_shape()) != product(&scale_shape) {
        // One block per super-block (block_size[-1] == 256) reduces nothing,
        // and torchao's amax over no dims reduces everything.
        return Err(Error::invalid(
            OP,
            "block_size",
            format!("{block_size:?}"),
            format!(
                "gives one block per super-block, where torchao reduces the whole grid of \
                 blocks {grid:?} to one super-block scale and cannot view it as {scale_shape:?}"
            ),
        ));
    }
    let compute = || -> std::result::Result<GgufQParams, tch::TchError> {
        let x = input.f_reshape(&blocks.shape)?;
        let min_val = x.f_amin(blocks.dims.as_slice(), false)?;
        let max_val = x.f_amax(blocks.dims.as_slice(), false)?;
        // torchao first assigns `max_val / 7.5` to block_scale and
        // overwrites it at once; that value is never used.
        let block_scale =
            scalar_ops::div(&max_val.f_sub(&min_val)?, QUANT_MAX)?.f_reshape(&supers.shape)?;
        let block_min = min_val.f_reshape(&supers.shape)?;
        let dims = supers.dims.as_slice();
        let scale_absmax = block_scale.f_abs()?.f_amax(dims, false)?;
        let min_absmax = block_min.f_abs()?.f_amax(dims, false)?;
        let qmax = QPARAM_QUANT_MAX as f64;
        let super_block_scale_scale = scalar_ops::div(&scale_absmax, qmax)?;
        let super_block_min_scale = scalar_ops::div(&min_absmax, qmax)?;
        let quantize = |v: &Tensor, s: &Tensor| {
            let q = v.f_div(&s.f_reshape(&scale_shape)?)?;
            scalar_ops::clamp(&q, 0i64, QPARAM_QUANT_MAX)
        };
        Ok(GgufQParams {
            quantized_block_scale: quantize(&block_scale, &super_block_scale_scale)?,
            quantized_block_min: quantize(&block_min, &super_block_min_scale)?,
            super_block_scale_scale,
            super_block_min_scale,
        })
    };
    compute().op(OP)
}

/// Quantizes `input` with GGUF qparams, bit-identical to torchao 0.11's
/// `quantize_gguf`.
///
/// In the qparams' dtype (the input's, when they come from
/// [`choose_qparams_gguf`]), every block's scale and min are recovered from
/// their 6-bit values and then applied:
///
/// ```text
/// block_scale = super_block_scale_scale * quantized_block_scale
/// block_min   = super_block_min_scale * quantized_block_min
/// int_data    = (input - block_min) / block_scale
/// ```
///
/// As in torchao, `int_data` is neither rounded nor clamped: it has the
/// input's shape and the promoted float dtype of the input and qparams. A
/// zero `block_scale` gives `±inf` or NaN.
///
/// # Errors
/// `target_dtype` not `uint4` (torchao asserts it); `input` or a qparams
/// tensor not float32/float16/bfloat16 or on another device; `input` empty;
/// `block_size` as in [`choose_qparams_gguf`] (here the input must be 2-D
/// with one split dim, as torchao's 3-element super-block needs); a qparams
/// tensor whose element count is not the one torchao views it as.
///
/// # Examples
/// ```
/// use tch::{Device, Kind, Tensor};
/// use tch_quant::{choose_qparams_gguf, quantize_gguf, QuantDtype};
/// let w = Tensor::randn([2, 256], (Kind::Float, Device::Cpu));
/// let qp = choose_qparams_gguf(&w, &[1, 32], QuantDtype::UInt4)?;
/// let int_data = quantize_gguf(&w, &[1, 32], QuantDtype::UInt4, &qp)?;
/// assert_eq!((int_data.size(), int_data.kind()), (vec![2, 256], Kind::Float));
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn quantize_gguf(
    input: &Tensor,
    block_size: &[i64],
    target_dtype: QuantDtype,
    qparams: &GgufQParams,
) -> Result<Tensor> {
    const OP: &str = "quantize_gguf";
    check_strided(OP, "input", input)?;
    check_uint4(OP, target_dtype)?;
    check_float_input(OP, "input", input)?;
    check_not_empty(OP, "input", input)?;
    let plan = SecondOrder::new(OP, input, block_size, qparams)?;
    let compute = || -> std::result::Result<Tensor, tch::TchError> {
        let (block_scale, block_min) = plan.block_scale_and_min(qparams)?;
        input
            .f_reshape(&plan.blocks.shape)?
            .f_sub(&block_min)?
            .f_div(&block_scale)?
            .f_reshape(input.size())
    };
    compute().op(OP)
}

/// Dequantizes GGUF `int_data`, bit-identical to torchao 0.11's
/// `dequantize_gguf`.
///
/// With `block_scale` and `block_min` recovered as in [`quantize_gguf`]:
///
/// ```text
/// output = to(output_dtype, input * block_scale + block_min)
/// ```
///
/// a multiply and an add, each rounded to the promoted dtype of `input` and
/// the qparams (integer codes promote to the qparams' dtype), then, when
/// `output_dtype` is given, a cast to it (round to nearest even).
///
/// # Errors
/// `target_dtype` not `uint4` (torchao ignores it); `input` not a float or
/// integer (uint8, int8, int16, int32, int64) tensor, or empty;
/// `output_dtype` not float32/float16/bfloat16; the block size and qparams
/// as in [`quantize_gguf`].
///
/// # Examples
/// ```
/// use tch::{Device, Kind, Tensor};
/// use tch_quant::{choose_qparams_gguf, dequantize_gguf, quantize_gguf, QuantDtype};
/// let w = Tensor::randn([2, 512], (Kind::Float, Device::Cpu));
/// let qp = choose_qparams_gguf(&w, &[1, 64], QuantDtype::UInt4)?;
/// let int_data = quantize_gguf(&w, &[1, 64], QuantDtype::UInt4, &qp)?;
/// let back = dequantize_gguf(&int_data, &[1, 64], QuantDtype::UInt4, &qp, Some(Kind::BFloat16))?;
/// assert_eq!((back.size(), back.kind()), (vec![2, 512], Kind::BFloat16));
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn dequantize_gguf(
    input: &Tensor,
    block_size: &[i64],
    target_dtype: QuantDtype,
    qparams: &GgufQParams,
    output_dtype: Option<Kind>,
) -> Result<Tensor> {
    const OP: &str = "dequantize_gguf";
    check_strided(OP, "input", input)?;
    check_uint4(OP, target_dtype)?;
    if !(is_input_float(input.kind()) || is_code_kind(input.kind())) {
        return Err(Error::UnsupportedKind {
            op: OP,
            arg: "input",
            expected: "float32, float16, bfloat16, uint8, int8, int16, int32 or int64",
            got: input.kind(),
        });
    }
    check_not_empty(OP, "input", input)?;
    if let Some(kind) = output_dtype {
        check_output_float(OP, kind)?;
    }
    let plan = SecondOrder::new(OP, input, block_size, qparams)?;
    let compute = || -> std::result::Result<Tensor, tch::TchError> {
        let (block_scale, block_min) = plan.block_scale_and_min(qparams)?;
        let dequant = input
            .f_reshape(&plan.blocks.shape)?
            .f_mul(&block_scale)?
            .f_add(&block_min)?
            .f_reshape(input.size())?;
        match output_dtype {
            Some(kind) => dequant.f_to_kind(kind),
            None => Ok(dequant),
        }
    };
    compute().op(OP)
}

/// A weight as torchao 0.11's `GGUFWeightOnlyConfig` stores it (the parts
/// of its `GGUFQuantizedTensor`).
#[derive(Debug)]
pub struct GgufWeight {
    /// Blocks per 256-element super-block (the config's
    /// `n_blocks_per_superblock`); the block size is `[1, 256 / n]`.
    pub n_blocks_per_superblock: i64,
    /// The qparams, in the weight's dtype.
    pub qparams: GgufQParams,
    /// [`quantize_gguf`]'s output: the weight's shape and dtype, unrounded.
    pub int_data: Tensor,
}

impl GgufWeight {
    /// The block size the parts were made with: `[1, 256 / n_blocks_per_superblock]`.
    pub fn block_size(&self) -> [i64; 2] {
        [1, GGUF_QK_K / self.n_blocks_per_superblock]
    }

    /// `GGUFQuantizedTensor.dequantize(output_dtype)`: [`dequantize_gguf`]
    /// of the parts, into `output_dtype` or, when `None`, the weight's own
    /// dtype (the qparams' dtype).
    ///
    /// # Errors
    /// As [`dequantize_gguf`] (parts changed after [`gguf_weight_only`]
    /// made them may no longer fit).
    ///
    /// # Examples
    /// ```
    /// use tch::{Device, Kind, Tensor};
    /// use tch_quant::{gguf_weight_only, QuantDtype};
    /// let w = Tensor::randn([8, 256], (Kind::BFloat16, Device::Cpu));
    /// let q = gguf_weight_only(&w, 8, QuantDtype::UInt4)?;
    /// let back = q.dequantize(None)?;
    /// assert_eq!((back.size(), back.kind()), (vec![8, 256], Kind::BFloat16));
    /// # Ok::<(), tch_quant::Error>(())
    /// ```
    pub fn dequantize(&self, output_dtype: Option<Kind>) -> Result<Tensor> {
        let kind = output_dtype.unwrap_or(self.qparams.super_block_scale_scale.kind());
        dequantize_gguf(
            &self.int_data,
            &self.block_size(),
            QuantDtype::UInt4,
            &self.qparams,
            Some(kind),
        )
    }
}

/// The weight transform of torchao 0.11's prototype
/// `GGUFWeightOnlyConfig(dtype, n_blocks_per_superblock)`
/// (`GGUFQuantizedTensor.from_float`): with `block_size = [1, 256 / n]`,
/// [`choose_qparams_gguf`] then [`quantize_gguf`], bit-identical to the
/// tensors the config stores.
///
/// # Errors
/// A weight the config leaves dense (not 2-D, or a last dim that is not a
/// multiple of 256); `n_blocks_per_superblock` not a divisor of 256 (torchao
/// divides 256 by it with Python's `//`); `target_dtype` not `uint4` (the
/// config asserts it); and the errors of the two primitives.
///
/// # Examples
/// ```
/// use tch::{Device, Kind, Tensor};
/// use tch_quant::{gguf_weight_only, QuantDtype};
/// let w = Tensor::randn([16, 512], (Kind::Float, Device::Cpu));
/// let q = gguf_weight_only(&w, 8, QuantDtype::UInt4)?; // Q4_K: 8 blocks of 32
/// assert_eq!(q.block_size(), [1, 32]);
/// assert_eq!(q.qparams.quantized_block_min.size(), [16, 2, 8]);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn gguf_weight_only(
    weight: &Tensor,
    n_blocks_per_superblock: i64,
    target_dtype: QuantDtype,
) -> Result<GgufWeight> {
    const OP: &str = "gguf_weight_only";
    check_strided(OP, "weight", weight)?;
    let shape = weight.size();
    if shape.len() != 2 || shape[1] % GGUF_QK_K != 0 {
        return Err(Error::ShapeMismatch {
            op: OP,
            arg: "weight",
            got: shape,
            reason: "GGUFWeightOnlyConfig quantizes only 2-D weights whose last dim is a \
                     multiple of 256 (it leaves others dense)"
                .into(),
        });
    }
    if n_blocks_per_superblock <= 0 || GGUF_QK_K % n_blocks_per_superblock != 0 {
        return Err(Error::invalid(
            OP,
            "n_blocks_per_superblock",
            n_blocks_per_superblock,
            "must divide 256 (the super-block's element count)",
        ));
    }
    check_uint4(OP, target_dtype)?;
    let block_size = [1, GGUF_QK_K / n_blocks_per_superblock];
    let qparams = choose_qparams_gguf(weight, &block_size, target_dtype)?;
    let int_data = quantize_gguf(weight, &block_size, target_dtype, &qparams)?;
    Ok(GgufWeight {
        n_blocks_per_superblock,
        qparams,
        int_data,
    })
}

fn check_uint4(op: &'static str, target_dtype: QuantDtype) -> Result<()> {
    if target_dtype != QuantDtype::UInt4 {
        return Err(Error::invalid(
            op,
            "target_dtype",
            target_dtype,
            "GGUF's Q4_K formulas are uint4's (codes 0..=15); only uint4 is supported",
        ));
    }
    Ok(())
}

fn is_code_kind(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64
    )
}

fn product(shape: &[i64]) -> i64 {
    shape.iter().product()
}

/// `256 / block_size[-1]`, the blocks of one super-block.
fn super_block_size(op: &'static str, block_size: &[i64]) -> Result<i64> {
    match block_size.last() {
        Some(&b) if b > 0 && GGUF_QK_K % b == 0 => Ok(GGUF_QK_K / b),
        _ => Err(Error::invalid(
            op,
            "block_size",
            format!("{block_size:?}"),
            "its last entry must divide 256, the elements of a super-block",
        )),
    }
}

fn grid_not_2d(op: &'static str, block_size: &[i64], shape: &[i64], grid: &[i64]) -> Error {
    Error::ShapeMismatch {
        op,
        arg: "block_size",
        got: block_size.to_vec(),
        reason: format!(
            "cuts an input of shape {shape:?} into a grid of blocks of shape {grid:?}; torchao's \
             super-blocks need a 2-D grid (blocks along the rows of a 2-D weight)"
        ),
    }
}

/// torchao's `_get_reduction_params`, with its asserts as errors.
struct Reduction {
    /// The shape to view the tensor as.
    shape: Vec<i64>,
    /// The dims of `shape` reduced (none: libtorch then reduces all).
    dims: Vec<i64>,
}

impl Reduction {
    fn new(op: &'static str, arg: &'static str, block_size: &[i64], size: &[i64]) -> Result<Self> {
        if block_size.len() != size.len() {
            return Err(Error::ShapeMismatch {
                op,
                arg,
                got: block_size.to_vec(),
                reason: format!("expected one entry per dim of {size:?}"),
            });
        }
        let mut reduction = Reduction {
            shape: Vec::with_capacity(2 * size.len()),
            dims: Vec::new(),
        };
        for (i, (&b, &s)) in block_size.iter().zip(size).enumerate() {
            if b <= 0 {
                return Err(Error::invalid(
                    op,
                    arg,
                    format!("{block_size:?}"),
                    format!("entry {i} is {b}; every entry must be at least 1"),
                ));
            }
            let here = reduction.shape.len() as i64;
            if b != s && b > 1 {
                if s % b != 0 {
                    return Err(Error::invalid(
                        op,
                        arg,
                        format!("{block_size:?}"),
                        format!("entry {i} ({b}) must divide dim {i} of {size:?}"),
                    ));
                }
                reduction.shape.extend([s / b, b]);
                reduction.dims.push(here + 1);
            } else {
                reduction.shape.push(s);
                if b != 1 {
                    reduction.dims.push(here);
                }
            }
        }
        Ok(reduction)
    }

    /// `shape` with the reduced dims set to 1.
    fn after_reduction(&self) -> Vec<i64> {
        let mut after = self.shape.clone();
        for &d in &self.dims {
            after[d as usize] = 1;
        }
        after
    }

    /// The shape of a reduction without `keepdim` (0-d when no dim is
    /// named, since libtorch then reduces all of them).
    fn qparams_shape(&self) -> Vec<i64> {
        if self.dims.is_empty() {
            return Vec::new();
        }
        self.shape
            .iter()
            .enumerate()
            .filter(|(d, _)| !self.dims.contains(&(*d as i64)))
            .map(|(_, &s)| s)
            .collect()
    }
}

/// The views `quantize_gguf` and `dequantize_gguf` share, validated.
struct SecondOrder {
    /// The input's blocks.
    blocks: Reduction,
    /// `blocks` with the reduced dims set to 1: where block qparams apply.
    block_qparams: Vec<i64>,
    /// The block qparams viewed as super-blocks.
    supers: Vec<i64>,
    /// Where the super-block scales apply.
    super_qparams: Vec<i64>,
}

impl SecondOrder {
    fn new(
        op: &'static str,
        input: &Tensor,
        block_size: &[i64],
        qparams: &GgufQParams,
    ) -> Result<Self> {
        for (name, t) in qparams.named() {
            check_strided(op, name, t)?;
            if !is_input_float(t.kind()) {
                return Err(Error::UnsupportedKind {
                    op,
                    arg: name,
                    expected: INPUT_FLOATS,
                    got: t.kind(),
                });
            }
            if t.device() != input.device() {
                return Err(Error::invalid(
                    op,
                    name,
                    format!("a tensor on {:?}", t.device()),
                    format!("must be on the input's device, {:?}", input.device()),
                ));
            }
        }
        let blocks = Reduction::new(op, "block_size", block_size, &input.size())?;
        let super_block = super_block_size(op, block_size)?;
        let block_qparams = blocks.after_reduction();
        if block_qparams.len() != 3 {
            return Err(Error::ShapeMismatch {
                op,
                arg: "block_size",
                got: block_size.to_vec(),
                reason: format!(
                    "views an input of shape {:?} as {:?}; torchao's super-blocks need a 2-D \
                     input with one split dim",
                    input.size(),
                    blocks.shape
                ),
            });
        }
        let supers = Reduction::new(op, "block_size", &[1, super_block, 1], &block_qparams)?;
        let plan = SecondOrder {
            super_qparams: supers.after_reduction(),
            supers: supers.shape,
            block_qparams,
            blocks,
        };
        let fits = [
            (&qparams.super_block_scale_scale, &plan.super_qparams),
            (&qparams.super_block_min_scale, &plan.super_qparams),
            (&qparams.quantized_block_scale, &plan.block_qparams),
            (&qparams.quantized_block_min, &plan.block_qparams),
        ];
        for ((name, t), (_, shape)) in qparams.named().into_iter().zip(fits) {
            if t.numel() as i64 != product(shape) {
                return Err(Error::ShapeMismatch {
                    op,
                    arg: name,
                    got: t.size(),
                    reason: format!(
                        "torchao views it as {shape:?} for block_size {block_size:?} and an \
                         input of shape {:?} ({} elements)",
                        input.size(),
                        product(shape)
                    ),
                });
            }
        }
        Ok(plan)
    }

    /// `(block_scale, block_min)`, shaped to apply to the input's blocks.
    fn block_scale_and_min(
        &self,
        qparams: &GgufQParams,
    ) -> std::result::Result<(Tensor, Tensor), tch::TchError> {
        let recover = |super_scale: &Tensor, quantized: &Tensor| {
            super_scale
                .f_reshape(&self.super_qparams)?
                .f_mul(&quantized.f_reshape(&self.supers)?)?
                .f_reshape(&self.block_qparams)
        };
        Ok((
            recover(
                &qparams.super_block_scale_scale,
                &qparams.quantized_block_scale,
            )?,
            recover(&qparams.super_block_min_scale, &qparams.quantized_block_min)?,
        ))
    }
}
