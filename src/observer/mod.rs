//! Calibration observers for static quantization: fed batches, they keep
//! running minima and maxima (or moving averages of them) and turn them into
//! scale and zero point, bit-identical to torchao 0.11's observers fed the
//! same batches in the same order.
//!
//! | torchao 0.11 class | defined in | here |
//! | --- | --- | --- |
//! | `AffineQuantizedMinMaxObserver` | `torchao.quantization.observer` | [`AffineQuantizedMinMaxObserver`] |
//! | `AffineQuantizedMovingAverageMinMaxObserver` | `torchao.quantization.pt2e._affine_quantization` | [`AffineQuantizedMovingAverageMinMaxObserver`] |
//! | `MinMaxObserver` | `torchao.quantization.pt2e.observer` | [`MinMaxObserver`] |
//! | `MovingAverageMinMaxObserver` | `torchao.quantization.pt2e.observer` | [`MovingAverageMinMaxObserver`] |
//! | `PerChannelMinMaxObserver` | `torchao.quantization.pt2e.observer` | [`PerChannelMinMaxObserver`] |
//! | `MovingAveragePerChannelMinMaxObserver` | `torchao.quantization.pt2e.observer` | [`MovingAveragePerChannelMinMaxObserver`] |
//!
//! - The affine observers (`affine.rs`) keep per-block statistics for a
//!   [`Granularity`](crate::Granularity) in the input's dtype and compute
//!   qparams through [`choose_qparams_affine_with_min_max`](crate::choose_qparams_affine_with_min_max).
//! - The torch.ao-style observers (`uniform.rs`) keep float32 statistics,
//!   per tensor or per channel, and compute qparams with torch.ao's own
//!   formulas for a [`QScheme`] and an [`ObserverDtype`].
//!
//! Every observer keeps its statistics on the device of the first batch
//! (CPU or CUDA), refuses a later batch on another device, and refuses
//! `calculate_qparams` before any batch (torch.ao's observers return a
//! default scale 1 and zero point 0 with a warning; torchao's affine ones
//! assert).
//!
//! # Examples
//! ```
//! use tch::{Kind, Tensor};
//! use tch_quant::{MinMaxObserver, QScheme, UniformObserverOptions};
//!
//! let mut obs = MinMaxObserver::new(QScheme::PerTensorAffine, &UniformObserverOptions::default())?;
//! for _ in 0..4 {
//!     obs.observe(&Tensor::randn([8, 16], (Kind::Float, tch::Device::Cpu)))?;
//! }
//! let (scale, zero_point) = obs.calculate_qparams()?;
//! assert_eq!((scale.size(), zero_point.kind()), (vec![1], Kind::Int));
//! # Ok::<(), tch_quant::Error>(())
//! ```

mod affine;
mod uniform;

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

pub use affine::{AffineQuantizedMinMaxObserver, AffineQuantizedMovingAverageMinMaxObserver};
pub use uniform::{
    MinMaxObserver, MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver,
    ObserverDtype, PerChannelMinMaxObserver, QScheme, UniformObserverOptions,
};

/// The running statistics of an observer that has seen a batch.
#[derive(Debug)]
struct Running {
    min: Tensor,
    max: Tensor,
    /// The dtype the statistics are kept in.
    kind: Kind,
    device: Device,
    batches: usize,
}

fn not_observed(op: &'static str) -> Error {
    Error::invalid(
        op,
        "self",
        "an observer that has seen no batch",
        "observe at least one non-empty batch before calculating qparams",
    )
}

fn check_device(op: &'static str, running: Device, x: &Tensor) -> Result<()> {
    if x.device() != running {
        return Err(Error::invalid(
            op,
            "x",
            format!("a tensor on {:?}", x.device()),
            format!("must be on {running:?}, the device of the first batch"),
        ));
    }
    Ok(())
}

/// `c` of a moving average must lie in `(0, 1]`: torchao takes any number,
/// but 0 or less never leaves the first batch's values (or moves away from
/// the data) and above 1 overshoots every batch.
fn check_averaging_constant(op: &'static str, c: f64) -> Result<()> {
    if !(c > 0.0 && c <= 1.0) {
        return Err(Error::invalid(
            op,
            "averaging_constant",
            c,
            "must lie in (0, 1]",
        ));
    }
    Ok(())
}
