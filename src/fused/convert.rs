//! Conversions between stored dtypes and the `f32` values the kernels
//! compute in, each as libtorch converts: qparams read as a float op reads
//! them ([`Values::read`]), results stored into an output's dtype
//! ([`Out::write`]), and values replaced by what a dtype would store
//! ([`stored`]). They run once per element of the qparams, so they are
//! kernels too.

use std::mem::MaybeUninit;

use half::{bf16, f16};
use tch::Kind;

use super::float::{round_bf16, Elem};
use super::quantize::round_slice;
use super::view::{Out, Values};

impl Values<'_> {
    /// Values `start..start + out.len()` as `f32`, converted as libtorch
    /// converts them to a float dtype (integers to nearest).
    pub(crate) fn read(&self, start: usize, out: &mut [f32]) {
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

impl Values<'_> {
    /// Values `start..start + out.len()` converted as libtorch's
    /// `.to(torch.int32)` converts them: integers wrapped to 32 bits, floats
    /// truncated toward zero, NaN and values outside the int32 range giving
    /// `i32::MIN` (x86's `cvttss2si`, on libtorch's scalar and vector paths
    /// alike).
    pub(crate) fn read_int32(&self, start: usize, out: &mut [i32]) {
        read_int32_values(self, start, out);
    }
}

/// `x` as x86's truncating conversion gives it: `i32::MIN` where the
/// truncated value does not fit.
#[inline(always)]
fn trunc_i32(x: f32) -> i32 {
    const LIMIT: f32 = 2_147_483_648.0;
    if (-LIMIT..LIMIT).contains(&x) {
        x as i32
    } else {
        i32::MIN
    }
}

kernel! {
    /// [`Values::read_int32`] as a kernel.
    fn read_int32_values<>(values: &Values, start: usize, out: &mut [i32]) {
        fn conv<T: Copy>(src: &[T], start: usize, out: &mut [i32], f: impl Fn(T) -> i32) {
            for (o, &v) in out.iter_mut().zip(&src[start..]) {
                *o = f(v);
            }
        }
        match values {
            Values::F32(s) => conv(s, start, out, trunc_i32),
            Values::Bf16(s) => conv(s, start, out, |v| trunc_i32(Elem::to_f32(v))),
            Values::F16(s) => conv(s, start, out, |v| trunc_i32(Elem::to_f32(v))),
            Values::U8(s) => conv(s, start, out, i32::from),
            Values::I8(s) => conv(s, start, out, i32::from),
            Values::I16(s) => conv(s, start, out, i32::from),
            Values::I32(s) => conv(s, start, out, |v| v),
            Values::I64(s) => conv(s, start, out, |v| v as i32),
        }
    }
}

impl Out<'_> {
    /// Writes `v` (values of a float dtype, carried as `f32`) from element
    /// `at` on, converted as libtorch's `.to(dtype)`: floats rounded to
    /// nearest even; integers (whose range the caller has checked holds
    /// every non-NaN value) truncated, NaN giving 0, or `MIN` for 32 and 64
    /// bits.
    pub(crate) fn write(&mut self, at: usize, v: &[f32]) {
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
    pub(crate) fn stored<>(kind: Kind, v: &mut [f32]) {
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
