//! Views of tensor memory: the input and the qparams read as slices of
//! their stored dtype, and outputs (freshly allocated, or the caller's,
//! sharing no byte with what the pass reads) as slices of `MaybeUninit`
//! that the kernels write exactly once. The fused path's
//! memory access is `unsafe` only here, where the checks it rests on are.

use std::mem::MaybeUninit;

use half::{bf16, f16};
use tch::{Device, Kind, Tensor};

use crate::error::{Result, TorchContext};
use crate::formula::QParams;

/// The input's elements, when the fused path can read them directly.
#[derive(Clone, Copy)]
pub(crate) enum Input<'a> {
    F32(&'a [f32]),
    Bf16(&'a [bf16]),
    F16(&'a [f16]),
}

pub(crate) fn is_dense_cpu(t: &Tensor) -> bool {
    t.device() == Device::Cpu && !t.is_sparse() && !t.is_mkldnn() && !t.f_is_neg().unwrap_or(true)
}

pub(crate) fn input_view(t: &Tensor) -> Option<Input<'_>> {
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

/// Integer codes, as stored: the storage dtypes of the integer quantized
/// dtypes.
#[derive(Clone, Copy)]
pub(crate) enum Codes<'a> {
    U8(&'a [u8]),
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
}

pub(crate) fn codes_view(t: &Tensor) -> Option<Codes<'_>> {
    if !is_dense_cpu(t) || !t.is_contiguous() {
        return None;
    }
    Some(match t.kind() {
        Kind::Uint8 => Codes::U8(slice_of(t)?),
        Kind::Int8 => Codes::I8(slice_of(t)?),
        Kind::Int16 => Codes::I16(slice_of(t)?),
        Kind::Int => Codes::I32(slice_of(t)?),
        _ => return None,
    })
}

/// The bytes of a dense, contiguous CPU uint8 tensor (a shard of packed
/// codes).
pub(crate) fn bytes_view(t: &Tensor) -> Option<&[u8]> {
    if !is_dense_cpu(t) || !t.is_contiguous() || t.kind() != Kind::Uint8 {
        return None;
    }
    slice_of(t)
}

/// Scale or zero-point values, as stored.
pub(crate) enum Values<'a> {
    F32(&'a [f32]),
    Bf16(&'a [bf16]),
    F16(&'a [f16]),
    U8(&'a [u8]),
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
}

pub(crate) fn values_view(t: &Tensor) -> Option<Values<'_>> {
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

/// A freshly allocated output, to be written exactly once per element.
pub(crate) enum Out<'a> {
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

pub(crate) fn empty(op: &'static str, shape: &[i64], kind: Kind) -> Result<Tensor> {
    Tensor::f_empty(shape, (kind, Device::Cpu)).op(op)
}

/// The memory of a tensor that [`empty`] just allocated.
pub(crate) fn out_view(t: &mut Tensor) -> Option<Out<'_>> {
    // SAFETY: `t` was just allocated by `empty`: a contiguous CPU tensor
    // whose storage no other handle shares and that nothing reads.
    unsafe { writable(t) }
}

/// `t`'s elements as a slice of `MaybeUninit` of its dtype.
///
/// # Safety
/// `t` must be a dense, contiguous CPU tensor, and no other reference to
/// its bytes may be used while the returned view lives (the view borrows
/// `t` mutably, which covers this handle but not others to its storage).
unsafe fn writable(t: &mut Tensor) -> Option<Out<'_>> {
    /// # Safety
    /// As [`writable`], with `T` matching `t`'s dtype.
    unsafe fn view<T>(t: &mut Tensor) -> Option<&mut [MaybeUninit<T>]> {
        let n = t.numel();
        let ptr = t.data_ptr() as *mut MaybeUninit<T>;
        if n == 0 || ptr.is_null() || ptr.align_offset(std::mem::align_of::<T>()) != 0 {
            return None;
        }
        // SAFETY: `t` is a contiguous CPU tensor of `n > 0` elements of
        // `T`'s dtype (the callers' contract), so `data_ptr` points at `n`
        // consecutive `T`s of its storage, possibly uninitialized (hence
        // `MaybeUninit`), non-null and aligned (checked above); no other
        // reference to them is used while the slice lives (the contract).
        Some(unsafe { std::slice::from_raw_parts_mut(ptr, n) })
    }
    // SAFETY (every arm): `view`'s `T` is the dtype matched.
    unsafe {
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
}

/// The bytes a strided CPU tensor's elements occupy, from its first
/// element's to the end of its last (empty for an empty tensor).
pub(crate) fn byte_span(t: &Tensor) -> std::ops::Range<usize> {
    let start = t.data_ptr() as usize;
    if t.numel() == 0 {
        return start..start;
    }
    let last: i64 = t
        .size()
        .iter()
        .zip(t.stride())
        .map(|(&n, s)| (n - 1) * s.max(0))
        .sum();
    let elem = t.kind().elt_size_in_bytes();
    start..start + (last as usize + 1) * elem
}

/// The memory of `t`, a tensor the caller will overwrite, when it is a
/// dense, contiguous CPU tensor whose bytes overlap none of `reads` (the
/// tensors the pass views for reading while it writes `t`).
pub(crate) fn into_view<'a>(t: &'a mut Tensor, reads: &[&Tensor]) -> Option<Out<'a>> {
    if !is_dense_cpu(t) || !t.is_contiguous() {
        return None;
    }
    let span = byte_span(t);
    let overlaps = |r: &&Tensor| {
        let other = byte_span(r);
        span.start < other.end && other.start < span.end
    };
    if reads.iter().any(overlaps) {
        return None;
    }
    // SAFETY: dense, contiguous and CPU (checked above), and sharing no
    // byte with anything the pass reads, so the pass's slices never alias
    // the view. Other handles to the same storage may exist; like
    // libtorch's `out=` ops (and `slice_of`'s reads), this assumes no other
    // thread uses them during the call.
    unsafe { writable(t) }
}

/// Outputs at least this large (two huge pages) are advised when fresh.
const ADVISE_MIN_BYTES: usize = 4 << 20;

/// Asks the kernel to back the page-aligned part of `t`'s memory, a tensor
/// [`empty`] just allocated, with transparent huge pages when it is first
/// written, where it is fresh memory ([`unfaulted`]) of at least
/// [`ADVISE_MIN_BYTES`]: faulting it in one 2 MiB page at a time instead of
/// 512 pages of 4 KiB saves most of the faults' cost. Memory the allocator
/// reuses, already faulted in, is left alone: advising it measured 2-4x
/// slower on one machine. Which of the two an allocation is depends on the
/// allocator's state (glibc maps blocks above its mmap threshold afresh,
/// and the threshold moves up to 32 MiB), so it is asked of the kernel, not
/// guessed from the size. A hint only: the bytes and their values are
/// unchanged, and a kernel without THP ignores it.
pub(crate) fn advise_fresh(t: &Tensor) {
    if byte_span(t).len() >= ADVISE_MIN_BYTES && unfaulted(t) {
        advise_huge_pages(t);
    }
}

/// Whether `t`'s memory is not yet faulted in: `mincore` finds none of
/// three pages inside it (its first, middle and last whole pages) resident.
/// `false` where it cannot tell (not Linux, a failed call).
fn unfaulted(t: &Tensor) -> bool {
    #[cfg(target_os = "linux")]
    {
        let Some(page) = page_size() else {
            return false;
        };
        let span = byte_span(t);
        let start = span.start.next_multiple_of(page);
        let end = span.end & !(page - 1);
        if end <= start {
            return false;
        }
        let middle = (start + (end - start) / 2) & !(page - 1);
        [start, middle, end - page].iter().all(|&at| {
            let mut resident = 0u8;
            // SAFETY: `at` is page-aligned and its page lies inside `t`'s
            // storage, which `t` keeps mapped; `mincore` writes one byte
            // for the one page asked about, into `resident`.
            let rc = unsafe { libc::mincore(at as *mut libc::c_void, page, &mut resident) };
            rc == 0 && resident & 1 == 0
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = t;
        false
    }
}

/// The base page size, where it is a power of two.
#[cfg(target_os = "linux")]
fn page_size() -> Option<usize> {
    // SAFETY: `sysconf` has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).ok().filter(|p| p.is_power_of_two())
}

/// `MADV_HUGEPAGE` on the page-aligned part of a dense CPU tensor's memory,
/// whatever its size (see [`advise_fresh`]); for callers that know the
/// tensor is freshly mapped.
pub(crate) fn advise_huge_pages(t: &Tensor) {
    #[cfg(target_os = "linux")]
    {
        let span = byte_span(t);
        if !is_dense_cpu(t) {
            return;
        }
        let Some(page) = page_size() else {
            return;
        };
        let start = (span.start + page - 1) & !(page - 1);
        let end = span.end & !(page - 1);
        if end <= start {
            return;
        }
        // SAFETY: `start..end` is page-aligned and lies inside `t`'s own
        // storage (its bytes, rounded inwards to whole pages), which `t`
        // keeps mapped. `MADV_HUGEPAGE` only marks those pages as eligible
        // for huge pages: it neither frees nor changes memory, so nothing
        // that holds or reads it is affected. A failure (an old kernel, THP
        // disabled) leaves the memory as it was, and is ignored.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = t;
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
}

/// The scale and zero-point outputs of a run of blocks.
pub(crate) struct QParamsOut<'a> {
    scale: Out<'a>,
    zp: Option<Out<'a>>,
}

impl<'a> QParamsOut<'a> {
    /// The first `mid` blocks and the rest.
    pub(crate) fn split_at(self, mid: usize) -> (QParamsOut<'a>, QParamsOut<'a>) {
        let (scale, scale_rest) = self.scale.split_at(mid);
        let (zp, zp_rest) = match self.zp.map(|z| z.split_at(mid)) {
            Some((z, rest)) => (Some(z), Some(rest)),
            None => (None, None),
        };
        (
            QParamsOut { scale, zp },
            QParamsOut {
                scale: scale_rest,
                zp: zp_rest,
            },
        )
    }

    /// Writes the qparams of blocks `at..` (see [`Out::write`]); `zp` is
    /// ignored without a zero point.
    pub(crate) fn write(&mut self, at: usize, scale: &[f32], zp: &[f32]) {
        self.scale.write(at, scale);
        if let Some(out) = self.zp.as_mut() {
            out.write(at, zp);
        }
    }
}

/// Qparams of `shape` to be written by the fused path, the zero point only
/// where `zp_kind` gives it a dtype.
pub(crate) fn empty_qparams(
    op: &'static str,
    shape: &[i64],
    scale_kind: Kind,
    zp_kind: Option<Kind>,
) -> Result<QParams> {
    let scale = empty(op, shape, scale_kind)?;
    let zero_point = zp_kind.map(|k| empty(op, shape, k)).transpose()?;
    advise_fresh(&scale);
    if let Some(zp) = &zero_point {
        advise_fresh(zp);
    }
    Ok(QParams { scale, zero_point })
}

/// The memory of qparams that [`empty_qparams`] just allocated.
pub(crate) fn qparams_view(qp: &mut QParams) -> Option<QParamsOut<'_>> {
    let scale = out_view(&mut qp.scale)?;
    let zp = match qp.zero_point.as_mut() {
        Some(t) => Some(out_view(t)?),
        None => None,
    };
    Some(QParamsOut { scale, zp })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh 64 MiB output is unfaulted memory (glibc maps it afresh) and
    /// stops being so once written; a small one never counts as fresh.
    #[cfg(target_os = "linux")]
    #[test]
    fn fresh_outputs_are_told_from_faulted_ones() {
        let mut t = empty("test", &[16 << 20], Kind::Float).unwrap();
        assert!(unfaulted(&t));
        let _ = t.f_zero_().unwrap();
        assert!(!unfaulted(&t));
        let small = empty("test", &[1024], Kind::Float).unwrap();
        assert!(!unfaulted(&small));
    }
}
