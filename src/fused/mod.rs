//! The fused CPU path: `choose_qparams_affine`, `quantize_affine` and
//! `dequantize_affine` as hand-written kernels over the raw data of
//! contiguous CPU tensors, bit-identical to the libtorch op sequence (the
//! reference path).
//!
//! The kernels:
//!
//! - [`layout`] turns the block layout into runs of contiguous elements and
//!   hands them to the kernels in batches;
//! - [`minmax`] reduces each block to its min and max in one pass over the
//!   input;
//! - [`qparams`] turns them into scale and zero point with every op of
//!   torchao's sequence rounded as libtorch rounds it ([`float`] holds the
//!   rounding emulation);
//! - [`mod@quantize`] writes the codes in a second pass;
//! - [`mod@dequantize`] turns codes back into values in one pass, reading
//!   plain codes or unpacking sub-byte shards a chunk at a time;
//! - [`convert`] reads and writes the qparams' stored dtypes.
//!
//! Around them, [`drive`] holds the four entry points: [`choose_qparams`],
//! [`quantize()`], [`choose_and_quantize`], which does both in one pass,
//! tile by tile while the tile is in cache, when the outermost dim of the
//! walk is a dim of blocks (per row, per group along the last dim, 2-D
//! blocks), and [`dequantize()`], for plain codes and for codes packed
//! along the last dim (`AffineQuantizedTensor::dequantize`). Each asks [`gate`] whether it covers the call, reads and
//! allocates tensors through [`view`] (the only memory access that is
//! `unsafe`) and cuts its pass up with [`threads`]. The path imports only
//! `formula.rs` and the modules below it (block layout, dtypes, errors,
//! mapping types), never the reference path that calls it.
//!
//! The kernels are compiled for baseline x86-64, AVX2 and AVX-512, chosen at
//! run time ([`simd`]). Work is split over up to
//! [`crate::threading::num_threads`] threads for inputs of at least
//! `threads::MIN_ELEMS_PER_THREAD` elements per thread, so that small calls
//! do not pay for waking them; which threads take the jobs is the
//! [`crate::threading::ThreadPolicy`] (libtorch's OpenMP pool, reached
//! through [`omp`], by default). No scratch is
//! larger than a tile of blocks (`threads::TILE_BLOCKS`, at most
//! `gate::MAX_TILE_BLOCKS`).
//!
//! Every entry point returns `Ok(None)` (or [`Chained::NotCovered`]) when it
//! does not cover a call, and the caller then runs the reference path:
//! tensors that are not contiguous, dense, CPU float32/float16/bfloat16 (or
//! that require grad, for the qparams); inputs with a NaN, and chooses
//! whose scale or zero point comes out NaN from NaN-free input (infinite
//! blocks, `0 / 0` ranges, overflowing ranges): libtorch's NaN signs and
//! payloads depend on its code paths, and reach float8 codes;
//! float64 scales or zero points and float8 codes (quantize and
//! dequantize); dequantizes where a block could give NaN (a scale that is
//! not finite, a Float-domain zero point that is not finite in the output
//! dtype, a zero scale where a value overflows float16); `eps` that is
//! zero in the input dtype, `quant_min == quant_max`, and quant ranges or
//! zero-point dtypes where libtorch's conversions leave the exactly
//! representable range.
//!
//! Both semantics are covered (`crate::Semantics`): torchao 0.18's chooses
//! are these kernels with its eps and zero-point dtype, its quantizes the
//! same formulas, and its Int-domain dequantize, which subtracts in the
//! output dtype, has a formula of its own (`dequantize::IntOutFormula`).
//! Under 0.18 the dequantize also leaves to the reference path Int-domain
//! zero points that are not finite in the output dtype, and Float-domain
//! calls without a zero point (`dequantize_affine_tinygemm`).
//!
//! Under `torch.set_flush_denormal(True)` libtorch flushes subnormals and
//! these kernels do not; that mode is outside what the fused path emulates.

#[macro_use]
mod simd;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod codes8;
mod convert;
mod dequantize;
mod drive;
mod float;
mod gate;
mod layout;
mod minmax;
mod omp;
mod qparams;
mod quantize;
mod threads;
mod view;

pub(crate) use drive::{
    choose_and_quantize, choose_qparams, dequantize, dequantize_into, quantize, quantize_into,
    Chained, CodesArg, DequantizeArgs, QuantizeArgs,
};
pub(crate) use view::{advise_huge_pages, byte_span};
