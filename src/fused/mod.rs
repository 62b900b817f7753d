//! The fused CPU path: `choose_qparams_affine` and `quantize_affine` as
//! hand-written kernels over the raw data of contiguous CPU tensors,
//! bit-identical to the libtorch op sequence (the reference path).
//!
//! - [`layout`] turns the block layout into runs of contiguous elements and
//!   hands them to the kernels in batches;
//! - [`minmax`] reduces each block to its min and max in one pass over the
//!   input;
//! - [`qparams`] turns them into scale and zero point with every op of
//!   torchao's sequence rounded as libtorch rounds it ([`float`] holds the
//!   rounding emulation);
//! - [`mod@quantize`] writes the codes in a second pass;
//! - [`choose_and_quantize`] does both in one pass, tile by tile while the
//!   tile is in cache, when the outermost dim of the walk is a dim of blocks
//!   (per row, per group along the last dim, 2-D blocks).
//!
//! The kernels are compiled for baseline x86-64, AVX2 and AVX-512, chosen at
//! run time ([`simd`]). Work is split over `tch::get_num_threads()` scoped
//! threads for inputs of at least [`MIN_ELEMS_PER_THREAD`] elements per
//! thread, so that small calls do not pay for spawning. No scratch is larger
//! than a tile of blocks ([`TILE_BLOCKS`], at most [`MAX_TILE_BLOCKS`]).
//!
//! Every entry point returns `Ok(None)` (or [`Chained::NotCovered`]) when it
//! does not cover a call, and the caller then runs the reference path:
//! tensors that are not contiguous, dense, CPU float32/float16/bfloat16 (or
//! that require grad, for the qparams); inputs with a NaN (for the qparams:
//! libtorch's NaN signs depend on its code paths, and reach float8 codes);
//! float64 scales or zero points and float8 codes (quantize); `eps` that is
//! zero in the input dtype, `quant_min == quant_max`, and quant ranges or
//! zero-point dtypes where libtorch's conversions leave the exactly
//! representable range.
//!
//! Under `torch.set_flush_denormal(True)` libtorch flushes subnormals and
//! these kernels do not; that mode is outside what the fused path emulates.

#[macro_use]
mod simd;

mod float;
mod layout;
mod minmax;
mod qparams;
mod quantize;

use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use half::{bf16, f16};
use tch::{Device, Kind, Tensor};

use crate::block::BlockLayout;
use crate::error::{Result, TorchContext};
use crate::formula::{mid_point, ChooseSpec, QParams};
use crate::mapping::ZeroPointDomain;
use crate::QuantDtype;
use float::{round_bf16, scalar_to, Bf16, Elem, Prec, F16, F32};
use layout::{split, Batch, Walk};
use minmax::{kept_runs, reduced_runs};
use qparams::{qparams_blocks, Consts};
use quantize::{
    quantize_kept_runs, quantize_reduced, round_slice, Code, FloatFormula, Formula, IntFormula,
    QuantKinds,
};

/// Elements one thread must have before another is spawned: about 50 us of
/// work, against some 20 us to spawn and join a thread.
const MIN_ELEMS_PER_THREAD: usize = 1 << 17;
/// Blocks per tile: the per-block scratch (min, max, scale, zero point and
/// two quantize constants) stays within 24 KiB.
const TILE_BLOCKS: usize = 1024;
/// Elements per tile when choose and quantize share a pass: the tile is
/// still in L2 when the second half reads it.
const TILE_ELEMS: usize = 1 << 15;
/// A tile holds at least the blocks of one index of the outermost kept dim;
/// layouts with more than this many there (a kept dim, then a reduced one,
/// then a huge kept one) would need a scratch larger than the outputs, and
/// run on the reference path.
const MAX_TILE_BLOCKS: usize = 1 << 16;

/// The walk of `layout`, if its tiles stay small.
fn walk_of(layout: &BlockLayout) -> Option<Walk> {
    let walk = Walk::new(layout);
    let tile_blocks = walk.first_kept().map_or(1, |p| walk.dims[p].block_stride);
    (tile_blocks <= MAX_TILE_BLOCKS).then_some(walk)
}

/// Runs `$f::<E, F, C>(x, $args.., codes)` for the input's element type `E`,
/// the formula `F` of the dtypes in `$kinds` and the code type `C`; `false`
/// when no instantiation fits (the caller falls back).
macro_rules! dispatch {
    ($f:ident, $x:expr, $kinds:expr, $codes:expr, ($($arg:expr),*)) => {{
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

/// The dtype to which an input dtype's arithmetic rounds (itself).
pub(crate) trait InputElem: Elem {
    type Prec: Prec;
}

impl InputElem for f32 {
    type Prec = F32;
}

impl InputElem for bf16 {
    type Prec = Bf16;
}

impl InputElem for f16 {
    type Prec = F16;
}

/// Fused `choose_qparams_affine`; `Ok(None)` where the reference path runs.
pub(crate) fn choose_qparams(
    op: &'static str,
    input: &Tensor,
    layout: &BlockLayout,
    spec: &ChooseSpec,
) -> Result<Option<QParams>> {
    if input.requires_grad() {
        return Ok(None);
    }
    let Some(x) = input_view(input) else {
        return Ok(None);
    };
    let kind = input.kind();
    let Some(consts) = Consts::new(spec, kind) else {
        return Ok(None);
    };
    let zp_kind = spec.zero_point_kind(kind);
    if !zero_point_fits(zp_kind, &consts) {
        return Ok(None);
    }
    let Some(walk) = walk_of(layout) else {
        return Ok(None);
    };
    let mut scale = empty(op, &layout.qparams_shape, spec.scale_dtype)?;
    let mut zero_point = match zp_kind {
        Some(k) => Some(empty(op, &layout.qparams_shape, k)?),
        None => None,
    };
    let Some(scale_out) = out_view(&mut scale) else {
        return Ok(None);
    };
    let zp_out = match zero_point.as_mut() {
        Some(t) => match out_view(t) {
            Some(v) => Some(v),
            None => return Ok(None),
        },
        None => None,
    };
    let done = match x {
        Input::F32(x) => choose_impl(x, &walk, &consts, scale_out, zp_out),
        Input::Bf16(x) => choose_impl(x, &walk, &consts, scale_out, zp_out),
        Input::F16(x) => choose_impl(x, &walk, &consts, scale_out, zp_out),
    };
    Ok(done.then_some(QParams { scale, zero_point }))
}

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
    let Some(kinds) = QuantKinds::new(
        args.domain,
        input.kind(),
        args.scale.kind(),
        args.zero_point.map(Tensor::kind),
        mid_point(args.quant_min, args.quant_max),
    ) else {
        return Ok(None);
    };
    let Some(bounds) = clamp_bounds(kinds.clamp_kind(), args.quant_min, args.quant_max) else {
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
    let Some(walk) = walk_of(layout) else {
        return Ok(None);
    };
    let mut out = empty(op, &input.size(), args.dtype.storage_kind())?;
    let Some(codes) = out_view(&mut out) else {
        return Ok(None);
    };
    let params = Params {
        walk: &walk,
        kinds: &kinds,
        bounds,
    };
    let sources = (&scale_values, zp_values.as_ref());
    let done = dispatch!(quantize_impl, x, kinds, codes, (&params, sources));
    Ok(done.then_some(out))
}

/// What [`choose_and_quantize`] could do.
pub(crate) enum Chained {
    /// Both steps ran on the fused path.
    Done(QParams, Tensor),
    /// The qparams are chosen; quantizing them is left to the caller (the
    /// reference path covers that dtype).
    Chosen(QParams),
    /// Nothing ran: the caller runs both steps.
    NotCovered,
}

/// Fused choose then quantize: in one pass over the input when its
/// outermost dim is a dim of blocks, otherwise one fused pass for each.
pub(crate) fn choose_and_quantize(
    op: &'static str,
    input: &Tensor,
    layout: &BlockLayout,
    spec: &ChooseSpec,
    dtype: QuantDtype,
) -> Result<Chained> {
    let (qmin, qmax) = (spec.quant_min, spec.quant_max);
    let two_passes = || -> Result<Chained> {
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
        Ok(match quantize(op, input, layout, &args)? {
            Some(codes) => Chained::Done(qp, codes),
            None => Chained::Chosen(qp),
        })
    };
    let Some(walk) = walk_of(layout) else {
        return Ok(Chained::NotCovered);
    };
    if walk.first_kept() != Some(0) || walk.dims.len() < 2 || dtype.is_float8() {
        return two_passes();
    }
    if input.requires_grad() {
        return Ok(Chained::NotCovered);
    }
    let Some(x) = input_view(input) else {
        return Ok(Chained::NotCovered);
    };
    let kind = input.kind();
    let Some(consts) = Consts::new(spec, kind) else {
        return Ok(Chained::NotCovered);
    };
    let zp_kind = spec.zero_point_kind(kind);
    if !zero_point_fits(zp_kind, &consts) {
        return Ok(Chained::NotCovered);
    }
    let Some(kinds) = QuantKinds::new(
        spec.domain,
        kind,
        spec.scale_dtype,
        zp_kind,
        mid_point(qmin, qmax),
    ) else {
        return two_passes();
    };
    let Some(bounds) = clamp_bounds(kinds.clamp_kind(), qmin, qmax) else {
        return two_passes();
    };
    let mut scale = empty(op, &layout.qparams_shape, spec.scale_dtype)?;
    let mut zero_point = match zp_kind {
        Some(k) => Some(empty(op, &layout.qparams_shape, k)?),
        None => None,
    };
    let mut codes = empty(op, &input.size(), dtype.storage_kind())?;
    let (Some(scale_out), Some(codes_out)) = (out_view(&mut scale), out_view(&mut codes)) else {
        return Ok(Chained::NotCovered);
    };
    let zp_out = match zero_point.as_mut() {
        Some(t) => match out_view(t) {
            Some(v) => Some(v),
            None => return Ok(Chained::NotCovered),
        },
        None => None,
    };
    let params = Params {
        walk: &walk,
        kinds: &kinds,
        bounds,
    };
    let stored = (spec.scale_dtype, zp_kind);
    let done = dispatch!(
        chain_impl,
        x,
        kinds,
        codes_out,
        (&params, &consts, stored, scale_out, zp_out)
    );
    // A NaN in the input: the reference path chooses (see `choose_impl`).
    Ok(if done {
        Chained::Done(QParams { scale, zero_point }, codes)
    } else {
        Chained::NotCovered
    })
}

/// The input's elements, when the fused path can read them directly.
#[derive(Clone, Copy)]
enum Input<'a> {
    F32(&'a [f32]),
    Bf16(&'a [bf16]),
    F16(&'a [f16]),
}

fn is_dense_cpu(t: &Tensor) -> bool {
    t.device() == Device::Cpu && !t.is_sparse() && !t.is_mkldnn() && !t.f_is_neg().unwrap_or(true)
}

fn input_view(t: &Tensor) -> Option<Input<'_>> {
    if !is_dense_cpu(t) || !t.is_contiguous() {
        return None;
    }
    match t.kind() {
        Kind::Float => slice_of(t).map(Input::F32),
        Kind::BFloat16 => slice_of(t).map(Input::Bf16),
        Kind::Half => slice_of(t).map(Input::F16),
        _ => None,
    }
}

/// The elements of a dense, contiguous CPU tensor whose dtype the caller has
/// matched with `T`.
fn slice_of<T>(t: &Tensor) -> Option<&[T]> {
    let n = t.numel();
    let ptr = t.data_ptr() as *const T;
    if n == 0 || ptr.is_null() || ptr.align_offset(std::mem::align_of::<T>()) != 0 {
        return None;
    }
    // SAFETY: `t` is a dense (strided, not sparse or MKL-DNN), contiguous CPU
    // tensor of `n > 0` elements whose dtype has `T`'s layout (checked by the
    // callers), so `data_ptr` (which includes the storage offset) points at
    // `n` initialized, consecutive `T`s inside its storage; the pointer is
    // non-null and aligned (checked above). The slice borrows `t`, whose
    // storage lives at least as long. This crate does not write to it while
    // the slice lives; like libtorch itself, this assumes no other thread
    // writes to the same storage during the call.
    Some(unsafe { std::slice::from_raw_parts(ptr, n) })
}

/// Scale or zero-point values, as stored.
enum Values<'a> {
    F32(&'a [f32]),
    Bf16(&'a [bf16]),
    F16(&'a [f16]),
    U8(&'a [u8]),
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
}

fn values_view(t: &Tensor) -> Option<Values<'_>> {
    if !is_dense_cpu(t) || !t.is_contiguous() {
        return None;
    }
    Some(match t.kind() {
        Kind::Float => Values::F32(slice_of(t)?),
        Kind::BFloat16 => Values::Bf16(slice_of(t)?),
        Kind::Half => Values::F16(slice_of(t)?),
        Kind::Uint8 => Values::U8(slice_of(t)?),
        Kind::Int8 => Values::I8(slice_of(t)?),
        Kind::Int16 => Values::I16(slice_of(t)?),
        Kind::Int => Values::I32(slice_of(t)?),
        Kind::Int64 => Values::I64(slice_of(t)?),
        _ => return None,
    })
}

impl Values<'_> {
    /// Values `start..start + out.len()` as `f32`, converted as libtorch
    /// converts them to a float dtype (integers to nearest).
    fn read(&self, start: usize, out: &mut [f32]) {
        read_values(self, start, out);
    }
}

kernel! {
    /// [`Values::read`] as a kernel.
    fn read_values<>(values: &Values, start: usize, out: &mut [f32]) {
        fn conv<T: Copy>(src: &[T], start: usize, out: &mut [f32], f: impl Fn(T) -> f32) {
            for (o, &v) in out.iter_mut().zip(&src[start..]) {
                *o = f(v);
            }
        }
        match values {
            Values::F32(s) => conv(s, start, out, |v| v),
            Values::Bf16(s) => conv(s, start, out, Elem::to_f32),
            Values::F16(s) => conv(s, start, out, Elem::to_f32),
            Values::U8(s) => conv(s, start, out, |v| v as f32),
            Values::I8(s) => conv(s, start, out, |v| v as f32),
            Values::I16(s) => conv(s, start, out, |v| v as f32),
            Values::I32(s) => conv(s, start, out, |v| v as f32),
            Values::I64(s) => conv(s, start, out, |v| v as f32),
        }
    }
}

/// A freshly allocated output, to be written exactly once per element.
enum Out<'a> {
    F32(&'a mut [MaybeUninit<f32>]),
    F64(&'a mut [MaybeUninit<f64>]),
    Bf16(&'a mut [MaybeUninit<bf16>]),
    F16(&'a mut [MaybeUninit<f16>]),
    U8(&'a mut [MaybeUninit<u8>]),
    I8(&'a mut [MaybeUninit<i8>]),
    I16(&'a mut [MaybeUninit<i16>]),
    I32(&'a mut [MaybeUninit<i32>]),
    I64(&'a mut [MaybeUninit<i64>]),
}

fn empty(op: &'static str, shape: &[i64], kind: Kind) -> Result<Tensor> {
    Tensor::f_empty(shape, (kind, Device::Cpu)).op(op)
}

/// The memory of a tensor that [`empty`] just allocated.
fn out_view(t: &mut Tensor) -> Option<Out<'_>> {
    fn view<T>(t: &mut Tensor) -> Option<&mut [MaybeUninit<T>]> {
        let n = t.numel();
        let ptr = t.data_ptr() as *mut MaybeUninit<T>;
        if n == 0 || ptr.is_null() || ptr.align_offset(std::mem::align_of::<T>()) != 0 {
            return None;
        }
        // SAFETY: `t` was just allocated by `empty` with `T`'s dtype (matched
        // by the caller): a contiguous CPU tensor of `n > 0` elements whose
        // storage no other handle shares, so `data_ptr` points at `n`
        // consecutive, possibly uninitialized `T`s (hence `MaybeUninit`),
        // non-null and aligned (checked above). The slice borrows `t`
        // mutably, so it is the only access to that memory while it lives.
        Some(unsafe { std::slice::from_raw_parts_mut(ptr, n) })
    }
    Some(match t.kind() {
        Kind::Float => Out::F32(view(t)?),
        Kind::Double => Out::F64(view(t)?),
        Kind::BFloat16 => Out::Bf16(view(t)?),
        Kind::Half => Out::F16(view(t)?),
        Kind::Uint8 => Out::U8(view(t)?),
        Kind::Int8 => Out::I8(view(t)?),
        Kind::Int16 => Out::I16(view(t)?),
        Kind::Int => Out::I32(view(t)?),
        Kind::Int64 => Out::I64(view(t)?),
        _ => return None,
    })
}

impl<'a> Out<'a> {
    /// The first `mid` elements and the rest.
    fn split_at(self, mid: usize) -> (Out<'a>, Out<'a>) {
        macro_rules! split {
            ($($v:ident),*) => {
                match self {
                    $(Out::$v(s) => {
                        let (a, b) = s.split_at_mut(mid);
                        (Out::$v(a), Out::$v(b))
                    })*
                }
            };
        }
        split!(F32, F64, Bf16, F16, U8, I8, I16, I32, I64)
    }

    /// Writes `v` (values of a float dtype, carried as `f32`) from element
    /// `at` on, converted as libtorch's `.to(dtype)`: floats rounded to
    /// nearest even; integers (whose range the caller has checked holds
    /// every non-NaN value) truncated, NaN giving 0, or `MIN` for 32 and 64
    /// bits.
    fn write(&mut self, at: usize, v: &[f32]) {
        write_values(self, at, v);
    }
}

kernel! {
    /// [`Out::write`] as a kernel.
    fn write_values<>(out: &mut Out, at: usize, v: &[f32]) {
        fn put<T>(dst: &mut [MaybeUninit<T>], v: &[f32], f: impl Fn(f32) -> T) {
            for (d, &x) in dst.iter_mut().zip(v) {
                *d = MaybeUninit::new(f(x));
            }
        }
        match out {
            Out::F32(d) => put(&mut d[at..], v, |x| x),
            Out::F64(d) => put(&mut d[at..], v, f64::from),
            Out::Bf16(d) => put(&mut d[at..], v, bf16_of),
            Out::F16(d) => put(&mut d[at..], v, f16::from_f32),
            Out::U8(d) => put(&mut d[at..], v, |x| x as i32 as u8),
            Out::I8(d) => put(&mut d[at..], v, |x| x as i32 as i8),
            Out::I16(d) => put(&mut d[at..], v, |x| x as i32 as i16),
            Out::I32(d) => put(&mut d[at..], v, |x| {
                if x.is_nan() {
                    i32::MIN
                } else {
                    x as i32
                }
            }),
            Out::I64(d) => put(&mut d[at..], v, |x| {
                if x.is_nan() {
                    i64::MIN
                } else {
                    x as i64
                }
            }),
        }
    }
}

/// `x` rounded to bfloat16, nearest even.
#[inline(always)]
fn bf16_of(x: f32) -> bf16 {
    if x.is_nan() {
        bf16::NAN
    } else {
        bf16::from_bits((round_bf16(x).to_bits() >> 16) as u16)
    }
}

kernel! {
/// `v` (values of a float dtype) replaced by what `.to(kind)` stores, read
/// back as `f32` the way a later op reads that dtype.
fn stored<>(kind: Kind, v: &mut [f32]) {
    match kind {
        Kind::Uint8 | Kind::Int8 | Kind::Int16 => {
            v.iter_mut().for_each(|x| *x = (*x as i32) as f32)
        }
        Kind::Int => v.iter_mut().for_each(|x| {
            *x = if x.is_nan() {
                i32::MIN as f32
            } else {
                (*x as i32) as f32
            }
        }),
        Kind::Int64 => v.iter_mut().for_each(|x| {
            *x = if x.is_nan() {
                i64::MIN as f32
            } else {
                (*x as i64) as f32
            }
        }),
        other => round_slice(other, v),
    }
}
}

/// Whether an integer zero-point dtype holds every value the zero point can
/// take (a float one always does, up to rounding that [`Out::write`] does).
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

/// How many threads a pass over `numel` elements uses.
fn threads_for(numel: usize) -> usize {
    let torch = tch::get_num_threads().max(1) as usize;
    (numel / MIN_ELEMS_PER_THREAD).clamp(1, torch)
}

/// `f` over every work item, the first on this thread and the others on
/// scoped threads.
fn parallel<W: Send, T: Send>(work: Vec<W>, f: impl Fn(W) -> T + Sync) -> Vec<T> {
    if work.len() <= 1 {
        return work.into_iter().map(f).collect();
    }
    let f = &f;
    let mut work = work.into_iter();
    let Some(first) = work.next() else {
        return Vec::new();
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = work.map(|w| s.spawn(move || f(w))).collect();
        let mut out = vec![f(first)];
        for h in handles {
            match h.join() {
                Ok(v) => out.push(v),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

/// The per-block scratch of one thread, in one allocation.
struct Scratch {
    buf: Vec<f32>,
    blocks: usize,
}

/// The six per-block arrays of a tile of `n` blocks.
struct Tile<'a> {
    lo: &'a mut [f32],
    hi: &'a mut [f32],
    scale: &'a mut [f32],
    zp: &'a mut [f32],
    a: &'a mut [f32],
    b: &'a mut [f32],
}

impl Scratch {
    fn new(blocks: usize) -> Self {
        Scratch {
            buf: vec![0.0f32; 6 * blocks],
            blocks,
        }
    }

    /// The arrays for a tile of `n <= blocks` blocks.
    fn tile(&mut self, n: usize) -> Tile<'_> {
        let mut parts = self.buf.chunks_exact_mut(self.blocks.max(1));
        let mut next = || match parts.next() {
            Some(p) => &mut p[..n],
            None => &mut [],
        };
        Tile {
            lo: next(),
            hi: next(),
            scale: next(),
            zp: next(),
            a: next(),
            b: next(),
        }
    }
}

/// Min and max of every block of a tile (`ranges` of the walk); blocks are
/// numbered from `block0`. `false` when a block holds a NaN.
fn minmax_tile<E: Elem>(
    x: &[E],
    walk: &Walk,
    ranges: &[Range<usize>],
    block0: usize,
    lo: &mut [f32],
    hi: &mut [f32],
) -> bool {
    lo.fill(f32::INFINITY);
    hi.fill(f32::NEG_INFINITY);
    let reduced = walk.run().reduced;
    // Each block has a single run when the run is the only reduced dim.
    let assign = walk.dims.iter().filter(|d| d.reduced).count() == 1 && reduced;
    let mut nan = false;
    walk.for_each_batch(ranges, &mut |batch| {
        let k = batch.block - block0;
        nan |= if reduced {
            reduced_runs(x, batch, assign, &mut lo[k..], &mut hi[k..])
        } else {
            kept_runs(x, batch, &mut lo[k..], &mut hi[k..])
        };
    });
    !nan
}

/// Codes of a tile (`ranges` of the walk) into `out`, which starts at
/// element `elem0`; `a`, `b` are the constants of blocks `block0..`.
#[allow(clippy::too_many_arguments)]
fn quantize_tile<E: Elem, F: Formula, C: Code>(
    x: &[E],
    walk: &Walk,
    ranges: &[Range<usize>],
    block0: usize,
    elem0: usize,
    (a, b): (&[f32], &[f32]),
    minmax: Option<(&[f32], &[f32])>,
    bounds: (f32, f32),
    out: &mut [MaybeUninit<C>],
) {
    let reduced = walk.run().reduced;
    let fast = F::fast_ok(b, bounds.0, bounds.1);
    walk.for_each_batch(ranges, &mut |batch| {
        let k = batch.block - block0;
        let out = &mut out[batch.elem - elem0..];
        let (a, b) = (&a[k..], &b[k..]);
        let minmax = minmax.map(|(lo, hi)| (&lo[k..], &hi[k..]));
        if reduced {
            quantize_reduced::<E, F, C>(x, batch, a, b, minmax, bounds, fast, out);
        } else {
            quantize_kept_runs::<E, F, C>(x, batch, a, b, bounds, fast, out);
        }
    });
}

/// The qparams of every block into `scale` and `zp`; `false` (outputs
/// unfinished) when a block holds a NaN.
///
/// libtorch's NaN results carry a sign that depends on which of its code
/// paths (vector, scalar remainder, thread chunk) produced them, and the
/// sign of a NaN scale reaches the bytes of float8 codes quantized with it;
/// so NaN inputs are left to the reference path.
fn choose_impl<E: InputElem>(
    x: &[E],
    walk: &Walk,
    consts: &Consts,
    scale: Out,
    zp: Option<Out>,
) -> bool {
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
        write_qparams(scale, zp, 0, &s, &z);
        return true;
    };
    // Split the outermost kept dim: each thread owns its blocks.
    let d = walk.dims[p];
    let mut jobs = Vec::new();
    let (mut scale, mut zp) = (Some(scale), zp);
    for r in split(d.size, threads) {
        let n = r.len() * d.block_stride;
        let (s_head, s_rest) = take(&mut scale).split_at(n);
        scale = Some(s_rest);
        let z_head = zp.take().map(|z| {
            let (head, rest) = z.split_at(n);
            zp = Some(rest);
            head
        });
        jobs.push((r, s_head, z_head));
    }
    let nan = AtomicBool::new(false);
    parallel(jobs, |(r, s_out, z_out)| {
        choose_part::<E>(x, walk, consts, p, r, s_out, z_out, &nan);
    });
    !nan.load(Ordering::Relaxed)
}

fn take<'a>(o: &mut Option<Out<'a>>) -> Out<'a> {
    o.take().unwrap_or(Out::F32(&mut []))
}

fn write_qparams(mut scale: Out, zp: Option<Out>, at: usize, s: &[f32], z: &[f32]) {
    scale.write(at, s);
    if let Some(mut zp) = zp {
        zp.write(at, z);
    }
}

/// The qparams of the blocks whose index along kept dim `p` is in `range`,
/// into `scale`/`zp` (which start at the first of those blocks); stops, and
/// sets `nan`, at a block that holds a NaN, or when another thread did.
#[allow(clippy::too_many_arguments)]
fn choose_part<E: InputElem>(
    x: &[E],
    walk: &Walk,
    consts: &Consts,
    p: usize,
    range: Range<usize>,
    mut scale: Out,
    mut zp: Option<Out>,
    nan: &AtomicBool,
) {
    let stride = walk.dims[p].block_stride;
    let tile = (TILE_BLOCKS / stride).max(1);
    let mut buf = Scratch::new(tile.min(range.len()) * stride);
    let mut ranges = walk.full();
    let first = range.start * stride;
    for t in range.clone().step_by(tile) {
        let end = (t + tile).min(range.end);
        ranges[p] = t..end;
        let (block0, nb) = (t * stride, (end - t) * stride);
        let Tile {
            lo,
            hi,
            scale: s,
            zp: z,
            ..
        } = buf.tile(nb);
        if nan.load(Ordering::Relaxed) || !minmax_tile(x, walk, &ranges, block0, lo, hi) {
            nan.store(true, Ordering::Relaxed);
            return;
        }
        qparams_blocks::<E::Prec>(consts, lo, hi, s, z);
        scale.write(block0 - first, s);
        if let Some(zp) = zp.as_mut() {
            zp.write(block0 - first, z);
        }
    }
}

/// The fixed arguments of a quantize pass.
struct Params<'a> {
    walk: &'a Walk,
    kinds: &'a QuantKinds,
    bounds: (f32, f32),
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
    let mut jobs = Vec::new();
    let mut rest = codes;
    for r in split(d0.size, threads_for(walk.numel)) {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(r.len() * d0.elem_stride);
        rest = tail;
        jobs.push((r, head));
    }
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
    let (p, stride) = match walk.first_kept() {
        Some(p) => (p, walk.dims[p].block_stride),
        None => (0, 1),
    };
    let span = match walk.first_kept() {
        Some(_) => ranges[p].clone(),
        None => 0..1,
    };
    let tile = (TILE_BLOCKS / stride).max(1);
    let mut buf = Scratch::new(tile.min(span.len()) * stride);
    for t in span.clone().step_by(tile) {
        let end = (t + tile).min(span.end);
        if walk.first_kept().is_some() {
            ranges[p] = t..end;
        }
        let (block0, nb) = (t * stride, (end - t) * stride);
        let Tile {
            scale: s,
            zp: z,
            a,
            b,
            ..
        } = buf.tile(nb);
        scale.read(block0, s);
        if let Some(zp) = zp {
            zp.read(block0, z);
        }
        params.kinds.constants(s, z, a, b);
        quantize_tile::<E, F, C>(
            x,
            walk,
            &ranges,
            block0,
            elem0,
            (a, b),
            None,
            params.bounds,
            out,
        );
    }
}

/// One pass of choose and quantize, for walks whose outermost dim is kept:
/// each thread takes a range of it, and each tile of that range is reduced,
/// turned into qparams and quantized while in cache. `false` (outputs
/// unfinished) when a block holds a NaN, as in [`choose_impl`].
fn chain_impl<E: InputElem, F: Formula, C: Code>(
    x: &[E],
    params: &Params,
    consts: &Consts,
    stored_kinds: (Kind, Option<Kind>),
    scale: Out,
    zp: Option<Out>,
    codes: &mut [MaybeUninit<C>],
) -> bool {
    let walk = params.walk;
    let d0 = walk.dims[0];
    let mut jobs = Vec::new();
    let (mut scale, mut zp, mut rest) = (Some(scale), zp, codes);
    for r in split(d0.size, threads_for(walk.numel)) {
        let nb = r.len() * d0.block_stride;
        let (s_head, s_rest) = take(&mut scale).split_at(nb);
        scale = Some(s_rest);
        let z_head = zp.take().map(|z| {
            let (head, rest) = z.split_at(nb);
            zp = Some(rest);
            head
        });
        let (c_head, c_tail) = std::mem::take(&mut rest).split_at_mut(r.len() * d0.elem_stride);
        rest = c_tail;
        jobs.push((r, s_head, z_head, c_head));
    }
    let nan = AtomicBool::new(false);
    parallel(jobs, |(r, s_out, z_out, c_out)| {
        chain_part::<E, F, C>(
            x,
            params,
            consts,
            stored_kinds,
            r,
            s_out,
            z_out,
            c_out,
            &nan,
        );
    });
    !nan.load(Ordering::Relaxed)
}

#[allow(clippy::too_many_arguments)]
fn chain_part<E: InputElem, F: Formula, C: Code>(
    x: &[E],
    params: &Params,
    consts: &Consts,
    (scale_kind, zp_kind): (Kind, Option<Kind>),
    r0: Range<usize>,
    mut scale: Out,
    mut zp: Option<Out>,
    codes: &mut [MaybeUninit<C>],
    nan: &AtomicBool,
) {
    let walk = params.walk;
    let d0 = walk.dims[0];
    let tile = (TILE_BLOCKS / d0.block_stride)
        .min(TILE_ELEMS / d0.elem_stride)
        .max(1);
    let mut buf = Scratch::new(tile.min(r0.len()) * d0.block_stride);
    let mut ranges = walk.full();
    let (first_block, elem0) = (r0.start * d0.block_stride, r0.start * d0.elem_stride);
    for t in r0.clone().step_by(tile) {
        let end = (t + tile).min(r0.end);
        ranges[0] = t..end;
        let (block0, nb) = (t * d0.block_stride, (end - t) * d0.block_stride);
        let Tile {
            lo,
            hi,
            scale: s,
            zp: z,
            a,
            b,
        } = buf.tile(nb);
        if nan.load(Ordering::Relaxed) || !minmax_tile(x, walk, &ranges, block0, lo, hi) {
            nan.store(true, Ordering::Relaxed);
            return;
        }
        qparams_blocks::<E::Prec>(consts, lo, hi, s, z);
        scale.write(block0 - first_block, s);
        stored(scale_kind, s);
        if let (Some(out), Some(kind)) = (zp.as_mut(), zp_kind) {
            out.write(block0 - first_block, z);
            stored(kind, z);
        }
        params.kinds.constants(s, z, a, b);
        quantize_tile::<E, F, C>(
            x,
            walk,
            &ranges,
            block0,
            elem0,
            (a, b),
            Some((lo, hi)),
            params.bounds,
            codes,
        );
    }
}
