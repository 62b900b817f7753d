//! # tch-quant
//!
//! torchao's affine quantization primitives on [`tch::Tensor`], on CPU or
//! CUDA, with results bit-identical to torchao 0.11.0 on torch 2.13.0.
//!
//! [`choose_qparams_affine`] decides the scale and zero point that map each
//! block of a float tensor onto a quantized integer (or float8) range, for any
//! block granularity: per tensor, per axis, per group or any N-D block.
//!
//! ```
//! use tch::{Kind, Tensor};
//! use tch_quant::{choose_qparams_affine, Granularity, MappingType, QParamsOptions, QuantDtype};
//!
//! let w = Tensor::randn([16, 64], (Kind::Float, tch::Device::Cpu));
//! let block = Granularity::PerGroup(32).block_size(&w.size())?;
//! let qp = choose_qparams_affine(&w, MappingType::Asymmetric, &block, QuantDtype::UInt4,
//!                                &QParamsOptions::default())?;
//! assert_eq!(qp.scale.size(), vec![16, 2]);
//! # Ok::<(), tch_quant::Error>(())
//! ```
//!
//! Every function returns [`Result`]; invalid input is a typed [`Error`]
//! naming the operation, the argument and its value, never a panic.
//! Tensor arguments must be defined, strided (dense) tensors of rank at most
//! 64: sparse (COO, CSR, CSC, BSR, BSC), MKL-DNN and nested tensors are
//! refused with [`Error::UnsupportedLayout`] before anything reads their
//! shape. A failure of libtorch itself inside a call (an allocation that
//! fails, for one) is an [`Error::Torch`].
//!
//! # What is where
//!
//! | need | items | file |
//! | --- | --- | --- |
//! | a torchao recipe | [`Recipe`], [`CustomRecipe`], [`Unfit`] | `recipe.rs` |
//! | a quantized tensor | [`AffineQuantizedTensor`], [`QuantizedParts`], [`StorageLayout`] | `quantized.rs` |
//! | a whole model | [`Selection`], [`quantize_tensors`], [`quantize_var_store`] | `model.rs` |
//! | quantized linear layers that run (`nn::Module`) | [`QuantizedLinear`], [`LinearScheme`], [`quantize_linears`], [`LinearSource`] | `linear/` |
//! | checkpoints (feature `checkpoint`) | `checkpoint::{Checkpoint, quantize_file, read_quantized, ...}` | `checkpoint/` |
//! | calibration observers (static quantization) | [`AffineQuantizedMinMaxObserver`], [`AffineQuantizedMovingAverageMinMaxObserver`], [`MinMaxObserver`], [`PerChannelMinMaxObserver`], [`MovingAverageMinMaxObserver`], [`MovingAveragePerChannelMinMaxObserver`] | `observer/` |
//! | scale and zero point | [`choose_qparams_affine`], [`choose_qparams_affine_with_min_max`] | `qparams.rs` |
//! | codes and back | [`quantize_affine`], [`dequantize_affine`] ([`dequantize_affine_into`] into a caller's tensor), [`fake_quantize_affine`], [`fake_quantize_affine_cachemask`] | `quantize.rs` |
//! | both in one pass | [`choose_qparams_and_quantize_affine`] | `chain.rs` |
//! | half-quadratic (HQQ) codes and qparams | [`choose_qparams_and_quantize_affine_hqq`], [`HqqOptions`], [`HqqSolverOptions`], [`HqqQuantized`] | `hqq.rs` |
//! | float8 | [`choose_qparams_affine_float8`] (0.11), [`choose_scale_float8`] (0.18: per tensor, row, block; e8m0), [`quantize_affine_float8`], [`dequantize_affine_float8`] | `float8.rs` |
//! | MX (e8m0 block scales; fp8, fp6, fp4 elements) and NVFP4, torchao 0.18 | [`to_mx`], [`mx::to_dtype`], [`MxTensor`], [`ScaleCalculationMode`], [`MxElemDtype`], [`nvfp4_quantize`], [`per_tensor_amax_to_scale`], [`Nvfp4Tensor`] | `mx/` |
//! | fp6, fp5, ... | [`FloatxDtype`], [`choose_qparams_affine_floatx`], [`quantize_affine_floatx`], [`dequantize_affine_floatx`] | `floatx.rs` |
//! | GGUF Q4_K-style super-blocks | [`choose_qparams_gguf`], [`quantize_gguf`], [`dequantize_gguf`], [`GgufQParams`], [`gguf_weight_only`], [`GgufWeight`] | `gguf.rs` |
//! | QQQ (W4A8) weights | [`choose_qparams_and_quantize_affine_qqq`], [`dequantize_affine_qqq`], [`QqqQuantized`] | `qqq.rs` |
//! | sub-byte storage | [`pack_uintx`], [`unpack_uintx`] | `bitpacking.rs` |
//! | block sizes | [`Granularity`] (and `block.rs` for the reduction layout) | `granularity.rs` |
//! | threads of the fused CPU path | [`threading::ThreadPolicy`], [`threading::set_thread_policy`], [`threading::set_num_threads`] | `threading.rs` |
//! | which torchao release's bits (0.11 or 0.18) | [`Semantics`] | `semantics.rs` |
//! | modes and dtypes | [`MappingType`], [`ZeroPointDomain`], [`QuantDtype`], [`kind_name`], [`parse_kind`], [`finfo_eps`] | `mapping.rs`, `dtype.rs` |
//!
//! # How results stay identical to torchao
//!
//! Each function issues torchao 0.11's libtorch op sequence itself, in the
//! same order and dtypes (the *reference path*), so results match torchao on
//! whatever device the input lives on. For contiguous CPU tensors,
//! `choose_qparams_affine`, `quantize_affine` and `dequantize_affine` (and
//! so `AffineQuantizedTensor::dequantize`, packed codes included) instead
//! run fused multi-threaded kernels (`fused/`) that reproduce that
//! sequence's rounding bit for bit; `force_reference` in the options
//! selects the reference path.
//! Both paths take the validated arguments and torchao's scalar formulas
//! from `formula.rs`, and the fused path depends on nothing above it.
#![warn(missing_docs)]

// README's examples are compiled and run as doctests, so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod bitpacking;
mod block;
mod chain;
#[cfg(feature = "checkpoint")]
pub mod checkpoint;
mod dtype;
mod error;
mod ffi;
mod float8;
mod floatx;
mod formula;
mod fused;
mod gguf;
mod granularity;
mod hqq;
pub mod linear;
mod mapping;
mod model;
pub mod mx;
mod observer;
mod qparams;
mod qqq;
mod quantize;
mod quantized;
mod recipe;
mod scalar_ops;
mod semantics;
mod strided;
pub mod threading;

pub use bitpacking::{pack_uintx, unpack_uintx};
pub use chain::{choose_qparams_and_quantize_affine, choose_qparams_and_quantize_affine_into};
pub use dtype::{finfo_eps, kind_name, parse_kind, QuantDtype};
pub use error::{CheckpointErrorKind, Error, Result};
pub use float8::{
    choose_qparams_affine_float8, choose_scale_float8, dequantize_affine_float8,
    quantize_affine_float8, Float8ScaleDtype, Float8ScaleOptions,
};
pub use floatx::{
    choose_qparams_affine_floatx, dequantize_affine_floatx, quantize_affine_floatx, FloatxDtype,
};
pub use formula::QParams;
pub use gguf::{
    choose_qparams_gguf, dequantize_gguf, gguf_weight_only, quantize_gguf, GgufQParams, GgufWeight,
    GGUF_QK_K,
};
pub use granularity::Granularity;
pub use hqq::{choose_qparams_and_quantize_affine_hqq, HqqOptions, HqqQuantized, HqqSolverOptions};
pub use linear::{
    quantize_linears, DenseLinears, Int4CpuWeight, Int8Weight, Linear, LinearScheme, LinearSource,
    QuantizedLinear, QuantizedLinears, TensorCoreTiledWeight,
};
pub use mapping::{MappingType, ZeroPointDomain};
pub use model::{
    quantize_tensors, quantize_var_store, Decision, QuantizedModel, Selection, SkipReason,
};
pub use mx::{
    nvfp4_quantize, per_tensor_amax_to_scale, to_mx, MxElemDtype, MxTensor, Nvfp4Tensor,
    ScaleCalculationMode, MX_BLOCK_SIZE_DEFAULT, NVFP4_BLOCK_SIZE,
};
pub use observer::{
    AffineQuantizedMinMaxObserver, AffineQuantizedMovingAverageMinMaxObserver, MinMaxObserver,
    MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver, ObserverDtype,
    PerChannelMinMaxObserver, QScheme, UniformObserverOptions,
};
pub use qparams::{
    choose_qparams_affine, choose_qparams_affine_dont_preserve_zero,
    choose_qparams_affine_tinygemm, choose_qparams_affine_with_min_max, QParamsOptions,
};
pub use qqq::{
    choose_qparams_and_quantize_affine_qqq, dequantize_affine_qqq, QqqQuantized, QQQ_GROUP_SIZE,
};
pub use quantize::{
    dequantize_affine, dequantize_affine_into, dequantize_affine_no_zero_point,
    dequantize_affine_tinygemm, fake_quantize_affine, fake_quantize_affine_cachemask,
    quantize_affine, quantize_affine_into, quantize_affine_no_zero_point, quantize_affine_tinygemm,
    QuantizeOptions,
};
pub use quantized::{AffineQuantizedTensor, QuantizedParts, StorageLayout, PACK_DIM};
pub use recipe::{CustomRecipe, Recipe, Unfit, INT4_GROUP_SIZES};
pub use semantics::Semantics;
