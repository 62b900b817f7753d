//! Every libtorch op the crate calls with a scalar argument, and the only
//! place it calls one: each returns libtorch's failure as `Err`.
//!
//! tch 0.26's fallible forms of these ops (`f_clamp`, `f_mul_scalar`,
//! `f_ge`, ...) build a temporary `tch::Scalar` inside the statement that
//! calls the op. The temporary is dropped at the end of that statement,
//! before the op's error is read, and `Scalar`'s `Drop` unwraps libtorch's
//! pending error: so every failure of those ops (a complex or sparse input,
//! an allocation that fails, ...) panics instead of returning `Err`. Here
//! the C scalars live until the error has been read.
//!
//! Each function calls the torch-sys op that tch's `f_` form of the same
//! name calls, with the scalar built by `ats_int` for [`Num::Int`] and by
//! `ats_float` for [`Num::Float`], as `Scalar::int` and `Scalar::float` (so
//! `From<i64>` and `From<f64>`) build them: the results are those of the tch
//! call, bit for bit. `tests/scalar_guard.rs` fails when any other file of
//! `src/` calls a tch method that takes a scalar.

use std::ptr::null_mut;

use tch::{TchError, Tensor};
use torch_sys::c_generated;
use torch_sys::{C_scalar, C_tensor};

use crate::ffi::{check, handle, tensor_from};

/// A scalar argument: an int or a float, as Python passes it to torch. The
/// kind decides how libtorch converts it to the tensor's dtype (an int
/// exactly, a float through `double`), so callers choose it as torchao's
/// Python code does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    Int(i64),
    Float(f64),
}

impl From<i64> for Num {
    fn from(v: i64) -> Self {
        Num::Int(v)
    }
}

impl From<f64> for Num {
    fn from(v: f64) -> Self {
        Num::Float(v)
    }
}

/// A C scalar, freed when dropped (after the op that reads it has been
/// checked).
struct CScalar(*mut C_scalar);

impl CScalar {
    fn new(v: Num) -> Result<Self, TchError> {
        // SAFETY: `ats_int` and `ats_float` take a plain value and return a
        // new scalar (null, with an error set, if allocating it failed).
        let ptr = unsafe {
            match v {
                Num::Int(i) => torch_sys::ats_int(i),
                Num::Float(f) => torch_sys::ats_float(f),
            }
        };
        check()?;
        if ptr.is_null() {
            return Err(TchError::Torch("libtorch could not create a scalar".into()));
        }
        Ok(CScalar(ptr))
    }
}

impl Drop for CScalar {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `ats_int`/`ats_float` and is freed
        // only here; `ats_free` only deletes it and sets no error.
        unsafe { torch_sys::ats_free(self.0) }
    }
}

/// A C op of one tensor and one scalar (`atg_mul_scalar`, `atg_ge`, ...).
type TensorScalarOp = unsafe extern "C" fn(*mut *mut C_tensor, *mut C_tensor, *mut C_scalar);

fn tensor_scalar(op: TensorScalarOp, t: &Tensor, s: Num) -> Result<Tensor, TchError> {
    let s = CScalar::new(s)?;
    let mut out = [null_mut(); 1];
    // SAFETY: `out` has room for the one result; `t` and `s` are valid
    // handles that outlive the call. The op does not modify `t`.
    unsafe { op(out.as_mut_ptr(), handle(t), s.0) };
    check()?;
    // SAFETY: no error was reported, so `out[0]` is the op's fresh result.
    unsafe { tensor_from(out[0]) }
}

/// Defines `pub(crate) fn name(t: &Tensor, s: impl Into<Num>)` over each C
/// op of one tensor and one scalar.
macro_rules! tensor_scalar_ops {
    ($($(#[$doc:meta])* $name:ident => $op:ident;)*) => {
        $(
            $(#[$doc])*
            pub(crate) fn $name(t: &Tensor, s: impl Into<Num>) -> Result<Tensor, TchError> {
                tensor_scalar(c_generated::$op, t, s.into())
            }
        )*
    };
}

tensor_scalar_ops! {
    /// `t + s` (`Tensor::f_add_scalar`).
    add => atg_add_scalar;
    /// `t - s` (`Tensor::f_sub_scalar`).
    sub => atg_sub_scalar;
    /// `s - t` (`Tensor::f_rsub_scalar`).
    rsub => atg_rsub_scalar;
    /// `t * s` (`Tensor::f_mul_scalar`).
    mul => atg_mul_scalar;
    /// `t / s` (`Tensor::f_div_scalar`).
    div => atg_div_scalar;
    /// `max(t, s)`, NaN kept (`Tensor::f_clamp_min`).
    clamp_min => atg_clamp_min;
    /// `min(t, s)`, NaN kept (`Tensor::f_clamp_max`).
    clamp_max => atg_clamp_max;
    /// `t ** s` (`Tensor::f_pow_tensor_scalar`).
    pow => atg_pow_tensor_scalar;
    /// A tensor like `t` (shape, dtype, device) filled with `s`
    /// (`Tensor::f_full_like`).
    full_like => atg_full_like;
    /// `t >= s`, as bool (`Tensor::f_ge`).
    ge => atg_ge;
    /// `t <= s`, as bool (`Tensor::f_le`).
    le => atg_le;
    /// `t > s`, as bool (`Tensor::f_gt`).
    gt => atg_gt;
    /// `t < s`, as bool (`Tensor::f_lt`).
    lt => atg_lt;
    /// `t == s`, as bool (`Tensor::f_eq`).
    eq => atg_eq;
    /// `t != s`, as bool (`Tensor::f_ne`).
    ne => atg_ne;
    /// `t & s` (`Tensor::f_bitwise_and`).
    bitwise_and => atg_bitwise_and;
    /// `t << s` (`Tensor::f_bitwise_left_shift_tensor_scalar`).
    shift_left => atg_bitwise_left_shift_tensor_scalar;
    /// `t >> s` (`Tensor::f_bitwise_right_shift_tensor_scalar`).
    shift_right => atg_bitwise_right_shift_tensor_scalar;
}

/// `min(max(t, min), max)`, NaN kept (`Tensor::f_clamp`).
pub(crate) fn clamp(
    t: &Tensor,
    min: impl Into<Num>,
    max: impl Into<Num>,
) -> Result<Tensor, TchError> {
    let (min, max) = (CScalar::new(min.into())?, CScalar::new(max.into())?);
    let mut out = [null_mut(); 1];
    // SAFETY: as in `tensor_scalar`, with two scalars.
    unsafe { c_generated::atg_clamp(out.as_mut_ptr(), handle(t), min.0, max.0) };
    check()?;
    // SAFETY: as in `tensor_scalar`.
    unsafe { tensor_from(out[0]) }
}

/// `where(condition, s, other)`, `s` a scalar: the dtype is `other`'s
/// (a scalar does not promote it), as Python's `torch.where(c, 255, t)`
/// (`Tensor::f_where_scalarself`).
pub(crate) fn where_scalar_self(
    condition: &Tensor,
    s: impl Into<Num>,
    other: &Tensor,
) -> Result<Tensor, TchError> {
    let s = CScalar::new(s.into())?;
    let mut out = [null_mut(); 1];
    // SAFETY: as in `tensor_scalar`, with two tensors and one scalar.
    unsafe {
        c_generated::atg_where_scalarself(out.as_mut_ptr(), handle(condition), s.0, handle(other))
    };
    check()?;
    // SAFETY: as in `tensor_scalar`.
    unsafe { tensor_from(out[0]) }
}

/// `where(condition, t, s)`, `s` a scalar: the dtype is `t`'s, as
/// Python's `torch.where(c, t, float("nan"))` (`Tensor::f_where_scalarother`).
pub(crate) fn where_scalar_other(
    condition: &Tensor,
    t: &Tensor,
    s: impl Into<Num>,
) -> Result<Tensor, TchError> {
    let s = CScalar::new(s.into())?;
    let mut out = [null_mut(); 1];
    // SAFETY: as in `tensor_scalar`, with two tensors and one scalar.
    unsafe {
        c_generated::atg_where_scalarother(out.as_mut_ptr(), handle(condition), handle(t), s.0)
    };
    check()?;
    // SAFETY: as in `tensor_scalar`.
    unsafe { tensor_from(out[0]) }
}

/// `t = min(max(t, min), max)` in place, NaN kept, returning `t`
/// (`Tensor::f_clamp_`).
pub(crate) fn clamp_(
    t: &Tensor,
    min: impl Into<Num>,
    max: impl Into<Num>,
) -> Result<Tensor, TchError> {
    let (min, max) = (CScalar::new(min.into())?, CScalar::new(max.into())?);
    let mut out = [null_mut(); 1];
    // SAFETY: as in `tensor_scalar`, with two scalars; the op writes `t`'s
    // own storage, which the caller owns through `t`.
    unsafe { c_generated::atg_clamp_(out.as_mut_ptr(), handle(t), min.0, max.0) };
    check()?;
    // SAFETY: as in `tensor_scalar`.
    unsafe { tensor_from(out[0]) }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Scalar};

    use super::*;

    fn same(a: &Tensor, b: &Tensor) -> bool {
        a.kind() == b.kind() && a.size() == b.size() && {
            let bytes =
                |t: &Tensor| Vec::<u8>::try_from(t.flatten(0, -1).view_dtype(Kind::Uint8)).unwrap();
            let as_bytes = |t: &Tensor| match t.kind() {
                Kind::Bool => bytes(&t.to_kind(Kind::Uint8)),
                _ => bytes(t),
            };
            as_bytes(a) == as_bytes(b)
        }
    }

    #[test]
    fn every_op_gives_the_tch_calls_bits() {
        let x = Tensor::from_slice(&[-2.5f32, -0.0, 0.5, 3.0, f32::NAN, f32::INFINITY]);
        let h = x.to_kind(Kind::Half);
        let b = Tensor::from_slice(&[0u8, 1, 7, 200, 255]);
        for t in [&x, &h] {
            assert!(same(&add(t, 3i64).unwrap(), &t.f_add_scalar(3i64).unwrap()));
            assert!(same(&sub(t, 0.1).unwrap(), &t.f_sub_scalar(0.1).unwrap()));
            assert!(same(
                &rsub(t, 7i64).unwrap(),
                &t.f_rsub_scalar(7i64).unwrap()
            ));
            assert!(same(
                &mul(t, 1.0 / 3.0).unwrap(),
                &t.f_mul_scalar(1.0 / 3.0).unwrap()
            ));
            assert!(same(&div(t, 15.0).unwrap(), &t.f_div_scalar(15.0).unwrap()));
            assert!(same(
                &clamp_min(t, 1e-6).unwrap(),
                &t.f_clamp_min(1e-6).unwrap()
            ));
            assert!(same(
                &clamp_max(t, 2e4).unwrap(),
                &t.f_clamp_max(2e4).unwrap()
            ));
            assert!(same(
                &pow(&t.abs(), 0.7 - 1.0).unwrap(),
                &t.abs().f_pow_tensor_scalar(0.7 - 1.0).unwrap()
            ));
            let (mine, mut theirs) = (t.copy(), t.copy());
            let _ = clamp_(&mine, 0i64, 15i64).unwrap();
            let _ = theirs.f_clamp_(0i64, 15i64).unwrap();
            assert!(same(&mine, &theirs));
            assert!(same(
                &clamp(t, 0i64, 15i64).unwrap(),
                &t.f_clamp(0i64, 15i64).unwrap()
            ));
            assert!(same(
                &clamp(t, -448.0, 448.0).unwrap(),
                &t.f_clamp(-448.0, 448.0).unwrap()
            ));
            assert!(same(
                &full_like(t, 8i64).unwrap(),
                &t.f_full_like(8i64).unwrap()
            ));
            assert!(same(&ge(t, 0i64).unwrap(), &t.f_ge(0i64).unwrap()));
            assert!(same(&le(t, 0.5).unwrap(), &t.f_le(0.5).unwrap()));
            assert!(same(
                &gt(t, Num::Float(-0.0)).unwrap(),
                &t.f_gt(Scalar::float(-0.0)).unwrap()
            ));
            assert!(same(&lt(t, 3i64).unwrap(), &t.f_lt(3i64).unwrap()));
            assert!(same(&eq(t, 0.5).unwrap(), &t.f_eq(0.5).unwrap()));
            assert!(same(&ne(t, 3i64).unwrap(), &t.f_ne(3i64).unwrap()));
            let c = t.f_isnan().unwrap();
            assert!(same(
                &where_scalar_self(&c, 2.5, t).unwrap(),
                &Tensor::f_where_scalarself(&c, 2.5, t).unwrap()
            ));
            assert!(same(
                &where_scalar_other(&c, t, f64::NAN).unwrap(),
                &t.f_where_scalarother(&c, f64::NAN).unwrap()
            ));
        }
        assert!(same(
            &bitwise_and(&b, 0x0fi64).unwrap(),
            &b.f_bitwise_and(0x0fi64).unwrap()
        ));
        assert!(same(
            &shift_left(&b, 3i64).unwrap(),
            &b.f_bitwise_left_shift_tensor_scalar(3i64).unwrap()
        ));
        assert!(same(
            &shift_right(&b, 2i64).unwrap(),
            &b.f_bitwise_right_shift_tensor_scalar(2i64).unwrap()
        ));
    }

    #[test]
    fn failures_are_errors_where_tch_panics() {
        let complex = Tensor::zeros([4], (Kind::ComplexFloat, Device::Cpu));
        let float = Tensor::zeros([4], (Kind::Float, Device::Cpu));
        assert!(clamp(&complex, 0i64, 15i64).is_err());
        assert!(clamp_min(&complex, 1e-6).is_err());
        assert!(bitwise_and(&float, 1i64).is_err());
        assert!(shift_right(&float, 1i64).is_err());
        // No error is left pending for the next call.
        assert!(add(&float, 1i64).is_ok());
        // The reason this module exists: tch's own `f_` form panics.
        let tch_clamp = std::panic::catch_unwind(|| complex.f_clamp(0i64, 15i64).map(|_| ()));
        assert!(
            tch_clamp.is_err(),
            "tch's f_clamp no longer panics on failure"
        );
        assert!(crate::ffi::take_error().is_none());
    }

    #[test]
    fn allocation_failure_is_an_error() {
        let huge = Tensor::zeros([1], (Kind::Uint8, Device::Cpu)).expand([1i64 << 61], false);
        let e = gt(&huge, 3i64).unwrap_err();
        assert!(e.to_string().contains("alloc"), "{e}");
    }
}
