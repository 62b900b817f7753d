//! The two things every direct call into libtorch's C API (torch-sys) needs:
//! a tensor's raw handle and the error the call left behind.
//!
//! The crate calls the C API itself only where tch's wrappers would panic
//! on a libtorch error instead of returning it: ops with a scalar argument
//! (`scalar_ops.rs`) and the layout probe of the tensors a public function
//! is given (`strided.rs`).

use std::ffi::{c_char, c_void, CStr};

use tch::{TchError, Tensor};
use torch_sys::C_tensor;

extern "C" {
    /// libc's `free`: the C API hands its error messages over as strings
    /// from `strdup`.
    fn free(ptr: *mut c_void);
}

/// The error the last C API call on this thread reported, if any, taken out
/// so that the next call starts clean.
pub(crate) fn take_error() -> Option<String> {
    // SAFETY: `get_and_reset_last_err` returns null or a NUL-terminated
    // string from `strdup` whose ownership passes to the caller (the C
    // side forgets it); it is read once and freed once here.
    unsafe {
        let ptr: *mut c_char = torch_sys::get_and_reset_last_err();
        if ptr.is_null() {
            return None;
        }
        let message = CStr::from_ptr(ptr).to_string_lossy().into_owned();
        free(ptr.cast());
        Some(message)
    }
}

/// `Err` with the pending libtorch error, as tch reports its own.
pub(crate) fn check() -> Result<(), TchError> {
    match take_error() {
        Some(message) => Err(TchError::Torch(message)),
        None => Ok(()),
    }
}

/// The handle the C API takes for `t`. The C functions the crate calls do
/// not modify the tensor they read through it (in-place ops are not used).
pub(crate) fn handle(t: &Tensor) -> *mut C_tensor {
    t.as_ptr() as *mut C_tensor
}

/// Takes ownership of the tensor a successful C call returned.
///
/// # Safety
/// `ptr` must be a tensor handle the C API just returned to the caller, not
/// owned by anything else.
pub(crate) unsafe fn tensor_from(ptr: *mut C_tensor) -> Result<Tensor, TchError> {
    if ptr.is_null() {
        return Err(TchError::Torch(
            "libtorch returned no tensor and no error".into(),
        ));
    }
    // SAFETY: the caller passes a fresh, unowned handle (see above).
    Ok(unsafe { Tensor::from_ptr(ptr) })
}
