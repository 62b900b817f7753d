//! The tensors every public function accepts: defined, strided (dense) and
//! of rank at most [`MAX_RANK`], checked at the door before anything reads a
//! shape.
//!
//! tch's `size()`, `stride()`, `numel()` and `is_contiguous()` panic on
//! tensors that have no strides (sparse CSR, CSC, BSR and BSC, MKL-DNN,
//! nested) and `kind()` on an undefined tensor, so the layout is probed
//! through the C API instead: `at_is_sparse` and `at_is_mkldnn`, then
//! `at_stride`, which libtorch refuses for every other non-strided layout.
//! On a strided tensor none of these raises a C++ exception: the probe costs
//! a few calls that read the tensor's metadata.

use tch::Tensor;

use crate::error::{Error, Result};
use crate::ffi::{handle, take_error};

/// The highest rank accepted. libtorch's reductions (`amin`, `amax`) take
/// tensors of at most 64 dims, so the reference path could not handle more
/// and the fused path must not either.
pub(crate) const MAX_RANK: usize = 64;

/// Refuses `t` unless it is a defined, strided tensor of rank at most
/// [`MAX_RANK`]: [`Error::UnsupportedLayout`] for sparse, MKL-DNN and nested
/// tensors, [`Error::InvalidArgument`] for an undefined one,
/// [`Error::ShapeMismatch`] for a rank above the limit.
pub(crate) fn check_strided(op: &'static str, arg: &'static str, t: &Tensor) -> Result<()> {
    let p = handle(t);
    let layout = |layout| Error::UnsupportedLayout { op, arg, layout };
    // SAFETY: `p` is the live handle of `t`. These functions read the
    // tensor's metadata; each catches libtorch's exceptions and reports them
    // through the pending error, which `take_error` reads and clears. The
    // stride buffer has one entry per dim, as `at_stride` writes.
    unsafe {
        if torch_sys::at_defined(p) == 0 {
            take_error();
            return Err(Error::invalid(
                op,
                arg,
                "an undefined tensor",
                "must be a defined tensor",
            ));
        }
        if torch_sys::at_is_sparse(p) != 0 {
            return Err(layout("sparse COO"));
        }
        if torch_sys::at_is_mkldnn(p) != 0 {
            return Err(layout("MKL-DNN"));
        }
        let rank = torch_sys::at_dim(p);
        if let Some(message) = take_error() {
            return Err(layout(layout_named_in(&message)));
        }
        let mut small = [0i64; MAX_RANK];
        let mut large = Vec::new();
        let strides = if rank <= MAX_RANK {
            &mut small[..rank]
        } else {
            large.resize(rank, 0);
            &mut large[..]
        };
        torch_sys::at_stride(p, strides.as_mut_ptr());
        if let Some(message) = take_error() {
            return Err(layout(layout_named_in(&message)));
        }
        if rank > MAX_RANK {
            return Err(Error::ShapeMismatch {
                op,
                arg,
                got: t.size(),
                reason: format!(
                    "its rank {rank} is above {MAX_RANK}, the most libtorch's reductions take"
                ),
            });
        }
    }
    Ok(())
}

/// [`check_strided`] for an optional tensor.
pub(crate) fn check_strided_opt(
    op: &'static str,
    arg: &'static str,
    t: Option<&Tensor>,
) -> Result<()> {
    t.map_or(Ok(()), |t| check_strided(op, arg, t))
}

/// The layout libtorch's refusal to give strides names ("Sparse CSR tensors
/// do not have strides", "NestedTensorImpl doesn't support strides").
fn layout_named_in(message: &str) -> &'static str {
    const NAMED: [(&str, &str); 5] = [
        ("Sparse CSR", "sparse CSR"),
        ("Sparse CSC", "sparse CSC"),
        ("Sparse BSR", "sparse BSR"),
        ("Sparse BSC", "sparse BSC"),
        ("Nested", "nested"),
    ];
    NAMED
        .iter()
        .find(|(needle, _)| message.contains(needle))
        .map_or("non-strided", |&(_, name)| name)
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Layout};

    use super::*;

    fn layout_of(t: &Tensor) -> Option<&'static str> {
        match check_strided("t", "x", t) {
            Err(Error::UnsupportedLayout { layout, .. }) => Some(layout),
            Ok(()) => None,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn every_non_strided_layout_is_named() {
        let d = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let block = Some([2i64, 2].as_slice());
        let nested = Tensor::f_internal_nested_from_padded(
            &Tensor::randn([2, 3, 4], (Kind::Float, Device::Cpu)),
            &Tensor::from_slice(&[3i64, 4, 2, 4]).view([2, 2]),
            false,
        )
        .unwrap();
        assert_eq!(layout_of(&d), None);
        assert_eq!(layout_of(&d.transpose(0, 1)), None);
        assert_eq!(layout_of(&d.expand([3, 4, 8], false)), None);
        assert_eq!(
            layout_of(&d.to_sparse(None, None::<&[i64]>, None)),
            Some("sparse COO")
        );
        assert_eq!(layout_of(&d.to_sparse_csr(None)), Some("sparse CSR"));
        assert_eq!(layout_of(&d.to_sparse_csc(None)), Some("sparse CSC"));
        let bsr = d.to_sparse(Some(Layout::SparseBsr), block, None);
        assert_eq!(layout_of(&bsr), Some("sparse BSR"));
        let bsc = d.to_sparse(Some(Layout::SparseBsc), block, None);
        assert_eq!(layout_of(&bsc), Some("sparse BSC"));
        assert_eq!(layout_of(&d.to_mkldnn()), Some("MKL-DNN"));
        assert_eq!(layout_of(&nested), Some("nested"));
        assert!(take_error().is_none());
    }

    #[test]
    fn undefined_and_high_rank_tensors_are_refused() {
        assert!(matches!(
            check_strided("t", "x", &Tensor::new()),
            Err(Error::InvalidArgument { arg: "x", .. })
        ));
        let rank = |r: usize| Tensor::zeros(vec![1i64; r].as_slice(), (Kind::Float, Device::Cpu));
        assert!(check_strided("t", "x", &rank(MAX_RANK)).is_ok());
        assert!(check_strided("t", "x", &rank(0)).is_ok());
        match check_strided("t", "x", &rank(MAX_RANK + 1)) {
            Err(Error::ShapeMismatch { arg: "x", got, .. }) => assert_eq!(got.len(), 65),
            other => panic!("{other:?}"),
        }
    }
}
