//! torch.ao's uniform-quantization observers as torchao 0.11 defines them
//! (`torchao.quantization.pt2e.observer`): float32 running minima and
//! maxima per tensor or per channel, and torch.ao's `_calculate_qparams`.

use std::fmt;

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result, TorchContext};
use crate::scalar_ops;
use crate::strided::check_strided;

use super::affine::moving_average;
use super::{check_averaging_constant, check_device, not_observed, Running};

/// torch.ao's quantization schemes (`torch.qscheme`).
///
/// # Examples
/// ```
/// use tch_quant::QScheme;
/// assert!(QScheme::PerChannelSymmetric.is_per_channel());
/// assert_eq!(QScheme::PerTensorAffine.to_string(), "per_tensor_affine");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QScheme {
    /// One scale and zero point for the tensor, from its min and max.
    PerTensorAffine,
    /// One scale for the tensor from `max(-min, max)`, a fixed zero point.
    PerTensorSymmetric,
    /// [`PerTensorAffine`](QScheme::PerTensorAffine) per channel.
    PerChannelAffine,
    /// [`PerTensorSymmetric`](QScheme::PerTensorSymmetric) per channel.
    PerChannelSymmetric,
    /// Per channel, a float zero point `-min / scale` and the range not
    /// widened to include 0 (embedding tables).
    PerChannelAffineFloatQParams,
}

impl QScheme {
    /// torch's name without the `torch.` prefix.
    pub fn name(self) -> &'static str {
        match self {
            QScheme::PerTensorAffine => "per_tensor_affine",
            QScheme::PerTensorSymmetric => "per_tensor_symmetric",
            QScheme::PerChannelAffine => "per_channel_affine",
            QScheme::PerChannelSymmetric => "per_channel_symmetric",
            QScheme::PerChannelAffineFloatQParams => "per_channel_affine_float_qparams",
        }
    }

    /// Whether the scheme keeps one scale per channel.
    pub fn is_per_channel(self) -> bool {
        !matches!(self, QScheme::PerTensorAffine | QScheme::PerTensorSymmetric)
    }

    fn is_symmetric(self) -> bool {
        matches!(
            self,
            QScheme::PerTensorSymmetric | QScheme::PerChannelSymmetric
        )
    }
}

impl fmt::Display for QScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `dtype` argument of torch.ao's observers: the quantized dtype the
/// qparams are for. It sets the default quant range and the symmetric zero
/// point.
///
/// # Examples
/// ```
/// use tch_quant::ObserverDtype;
/// assert_eq!(ObserverDtype::QUInt8.bounds(), (0, 255));
/// assert_eq!(ObserverDtype::Int16.name(), "int16");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObserverDtype {
    /// `torch.quint8`, torch.ao's default.
    QUInt8,
    /// `torch.qint8`.
    QInt8,
    /// `torch.qint32`.
    QInt32,
    /// `torch.uint8`.
    UInt8,
    /// `torch.int8`.
    Int8,
    /// `torch.int16`.
    Int16,
    /// `torch.int32`.
    Int32,
    /// `torch.uint16`.
    UInt16,
}

impl ObserverDtype {
    /// torch's name without the `torch.` prefix.
    pub fn name(self) -> &'static str {
        match self {
            ObserverDtype::QUInt8 => "quint8",
            ObserverDtype::QInt8 => "qint8",
            ObserverDtype::QInt32 => "qint32",
            ObserverDtype::UInt8 => "uint8",
            ObserverDtype::Int8 => "int8",
            ObserverDtype::Int16 => "int16",
            ObserverDtype::Int32 => "int32",
            ObserverDtype::UInt16 => "uint16",
        }
    }

    /// The dtype's full integer range (torch.ao's default quant range
    /// without `reduce_range`).
    pub fn bounds(self) -> (i64, i64) {
        match self {
            ObserverDtype::QUInt8 | ObserverDtype::UInt8 => (0, 255),
            ObserverDtype::QInt8 | ObserverDtype::Int8 => (-128, 127),
            ObserverDtype::QInt32 | ObserverDtype::Int32 => (-(1 << 31), (1 << 31) - 1),
            ObserverDtype::Int16 => (-(1 << 15), (1 << 15) - 1),
            ObserverDtype::UInt16 => (0, (1 << 16) - 1),
        }
    }

    fn is_uint8(self) -> bool {
        matches!(self, ObserverDtype::QUInt8 | ObserverDtype::UInt8)
    }
}

impl fmt::Display for ObserverDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The arguments torch.ao's observers share, with their defaults.
///
/// # Examples
/// ```
/// use tch_quant::{ObserverDtype, UniformObserverOptions};
/// let weights = UniformObserverOptions {
///     dtype: ObserverDtype::QInt8,
///     quant_min: Some(-127),
///     quant_max: Some(127),
///     ..Default::default()
/// };
/// assert_eq!(UniformObserverOptions::default().eps, f32::EPSILON as f64);
/// # let _ = weights;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UniformObserverOptions {
    /// The quantized dtype; `quint8` by default.
    pub dtype: ObserverDtype,
    /// Halve the quant range (deprecated in torch.ao, kept for parity):
    /// the default ranges become 7-bit, a custom one is floor-halved.
    pub reduce_range: bool,
    /// Smallest code; give both bounds or neither (then the dtype's range).
    pub quant_min: Option<i64>,
    /// Largest code; give both bounds or neither.
    pub quant_max: Option<i64>,
    /// Smallest scale, held as float32 (torch.ao's `eps` buffer);
    /// `torch.finfo(torch.float32).eps` by default.
    pub eps: f64,
}

impl Default for UniformObserverOptions {
    fn default() -> Self {
        UniformObserverOptions {
            dtype: ObserverDtype::QUInt8,
            reduce_range: false,
            quant_min: None,
            quant_max: None,
            eps: f32::EPSILON as f64,
        }
    }
}

/// How torch.ao observers fold a batch into the running values.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Update {
    MinMax,
    MovingAverage(f64),
}

/// The validated arguments and running values of a torch.ao observer.
#[derive(Debug)]
struct UniformCore {
    qscheme: QScheme,
    dtype: ObserverDtype,
    quant_min: i64,
    quant_max: i64,
    customized_range: bool,
    eps: f32,
    /// The channel axis of the per-channel observers.
    ch_axis: Option<i64>,
    update: Update,
    running: Option<Running>,
}

/// Observers' op names: `"<Type>::<method>"`, built once per type.
macro_rules! op {
    ($name:literal, $method:literal) => {
        concat!($name, "::", $method)
    };
}

impl UniformCore {
    fn new(
        name: &'static str,
        op: &'static str,
        qscheme: QScheme,
        ch_axis: Option<i64>,
        update: Update,
        options: &UniformObserverOptions,
    ) -> Result<Self> {
        if qscheme.is_per_channel() != ch_axis.is_some() {
            let takes = if ch_axis.is_some() {
                "per-channel"
            } else {
                "per-tensor"
            };
            return Err(Error::invalid(
                op,
                "qscheme",
                qscheme,
                format!("{name} takes {takes} schemes only"),
            ));
        }
        if let Update::MovingAverage(c) = update {
            check_averaging_constant(op, c)?;
        }
        let dtype = options.dtype;
        if qscheme.is_symmetric() && options.reduce_range && dtype.is_uint8() {
            // torch.ao raises for quint8; for uint8 it would pick zero point
            // 128 outside the reduced range [0, 127].
            return Err(Error::invalid(
                op,
                "reduce_range",
                true,
                format!("cannot reduce the range of symmetric {qscheme} quantization to {dtype}"),
            ));
        }
        let eps = options.eps;
        if !(eps.is_finite() && eps >= 0.0 && (eps as f32).is_finite()) {
            return Err(Error::invalid(
                op,
                "eps",
                eps,
                "must be finite, non-negative and representable in float32",
            ));
        }
        let (quant_min, quant_max, customized_range) = resolve_range(op, options)?;
        Ok(UniformCore {
            qscheme,
            dtype,
            quant_min,
            quant_max,
            customized_range,
            eps: eps as f32,
            ch_axis,
            update,
            running: None,
        })
    }

    fn observe(&mut self, op: &'static str, x: &Tensor) -> Result<()> {
        check_strided(op, "x", x)?;
        if x.numel() == 0 {
            return Ok(());
        }
        if !matches!(
            x.kind(),
            Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double
        ) {
            return Err(Error::UnsupportedKind {
                op,
                arg: "x",
                expected: "float32, float16, bfloat16 or float64",
                got: x.kind(),
            });
        }
        if let Some(r) = &self.running {
            check_device(op, r.device, x)?;
        }
        let (batch_min, batch_max) = match self.ch_axis {
            None => x
                .f_to_kind(Kind::Float)
                .and_then(|x| x.f_aminmax(None, false)),
            Some(axis) => self.channel_min_max(op, x, axis)?,
        }
        .op(op)?;
        let Some(r) = &mut self.running else {
            self.running = Some(self.first(op, batch_min, batch_max, x.device())?);
            return Ok(());
        };
        if batch_min.size() != r.min.size() {
            return Err(Error::ShapeMismatch {
                op,
                arg: "x",
                got: x.size(),
                reason: format!(
                    "it has {} channels along axis {}, the running minima {}",
                    batch_min.size()[0],
                    self.ch_axis.unwrap_or_default(),
                    r.min.size()[0]
                ),
            });
        }
        // torch.ao's argument orders: `min(batch, running)` for the running
        // min/max, `running + c * (batch - running)` for the averages.
        let (min, max) = match self.update {
            Update::MinMax => (
                batch_min.f_minimum(&r.min).op(op)?,
                batch_max.f_maximum(&r.max).op(op)?,
            ),
            Update::MovingAverage(c) => (
                moving_average(&r.min, &batch_min, c).op(op)?,
                moving_average(&r.max, &batch_max, c).op(op)?,
            ),
        };
        r.min = min;
        r.max = max;
        r.batches += 1;
        Ok(())
    }

    /// The running values after the first batch. The per-tensor min/max
    /// observer starts from `(inf, -inf)` buffers and takes
    /// `min(batch, inf)`, which is the batch's value, NaN included; the
    /// others assign the first batch's values.
    fn first(&self, op: &'static str, min: Tensor, max: Tensor, device: Device) -> Result<Running> {
        let (min, max) = if self.ch_axis.is_none() && self.update == Update::MinMax {
            let inf = scalar_ops::full_like(&min, f64::INFINITY).op(op)?;
            let neg_inf = scalar_ops::full_like(&max, f64::NEG_INFINITY).op(op)?;
            (min.f_minimum(&inf).op(op)?, max.f_maximum(&neg_inf).op(op)?)
        } else {
            (min, max)
        };
        Ok(Running {
            min,
            max,
            kind: Kind::Float,
            device,
            batches: 1,
        })
    }

    /// torch.ao's per-channel reduction: axes 0 and `ch_axis` swapped, cast
    /// to float32, flattened from dim 1, `aminmax` over dim 1.
    fn channel_min_max(
        &self,
        op: &'static str,
        x: &Tensor,
        axis: i64,
    ) -> Result<std::result::Result<(Tensor, Tensor), tch::TchError>> {
        let rank = x.dim() as i64;
        if rank < 2 {
            return Err(Error::ShapeMismatch {
                op,
                arg: "x",
                got: x.size(),
                reason: "per-channel observers take inputs of at least 2 dims (torch.ao's \
                         flatten from dim 1 fails on fewer)"
                    .into(),
            });
        }
        let a = if axis < 0 { axis + rank } else { axis };
        if !(0..rank).contains(&a) {
            return Err(Error::invalid(
                op,
                "ch_axis",
                axis,
                format!("out of range for an input of rank {rank}"),
            ));
        }
        let mut order: Vec<i64> = (0..rank).collect();
        order.swap(0, a as usize);
        let permuted = match self.update {
            // PerChannelMinMaxObserver permutes, then casts;
            // MovingAveragePerChannelMinMaxObserver casts, then permutes.
            Update::MinMax => x.f_permute(&order).and_then(|y| y.f_to_kind(Kind::Float)),
            Update::MovingAverage(_) => x.f_to_kind(Kind::Float).and_then(|y| y.f_permute(&order)),
        };
        Ok(permuted
            .and_then(|y| y.f_flatten(1, -1))
            .and_then(|y| y.f_aminmax(1, false)))
    }

    /// torch.ao's `_calculate_qparams`.
    fn calculate_qparams(&self, op: &'static str) -> Result<(Tensor, Tensor)> {
        let r = self.running.as_ref().ok_or_else(|| not_observed(op))?;
        let ordered = r
            .min
            .f_le_tensor(&r.max)
            .and_then(|le| le.f_all())
            .and_then(|all| all.f_int64_value(&[]))
            .op(op)?;
        if ordered == 0 {
            return Err(Error::invalid(
                op,
                "self",
                "running min/max",
                "a running minimum exceeds its maximum or is NaN (torch.ao asserts min <= max): \
                 a NaN reached the observer",
            ));
        }
        self.qparams(&r.min, &r.max).op(op)
    }

    fn qparams(
        &self,
        min_val: &Tensor,
        max_val: &Tensor,
    ) -> std::result::Result<(Tensor, Tensor), tch::TchError> {
        let (qmin, qmax) = (self.quant_min, self.quant_max);
        let range = (qmax - qmin) as f64;
        let min_neg = min_val.f_minimum(&min_val.f_zeros_like()?)?;
        let max_pos = max_val.f_maximum(&max_val.f_zeros_like()?)?;
        let device = min_neg.device();
        let eps = Tensor::f_from_slice(&[self.eps])?.f_to_device(device)?;
        let (scale, zero_point) = match self.qscheme {
            QScheme::PerTensorSymmetric | QScheme::PerChannelSymmetric => {
                let amax = min_neg.f_neg()?.f_maximum(&max_pos)?;
                let scale = scalar_ops::div(&amax, range / 2.0)?.f_maximum(&eps)?;
                let zp = if self.dtype.is_uint8() {
                    if self.customized_range {
                        (qmin + qmax).div_euclid(2)
                    } else {
                        128
                    }
                } else if self.dtype == ObserverDtype::UInt16 {
                    1 << 15
                } else {
                    0
                };
                let zeros = Tensor::f_zeros(min_neg.size(), (Kind::Int64, device))?;
                (scale, scalar_ops::full_like(&zeros, zp)?)
            }
            QScheme::PerChannelAffineFloatQParams => {
                let scale = scalar_ops::div(&max_val.f_sub(min_val)?, range)?;
                let scale = scale.f_where_self(&scale.f_gt_tensor(&eps)?, &scale.f_ones_like()?)?;
                let zp = scalar_ops::mul(min_val, -1i64)?.f_div(&scale)?;
                (scale, zp)
            }
            QScheme::PerTensorAffine | QScheme::PerChannelAffine => {
                let scale = scalar_ops::div(&max_pos.f_sub(&min_neg)?, range)?.f_maximum(&eps)?;
                let rounded = min_neg.f_div(&scale)?.f_round()?.f_to_kind(Kind::Int)?;
                let zp = scalar_ops::clamp(&scalar_ops::rsub(&rounded, qmin)?, qmin, qmax)?;
                (scale, zp)
            }
        };
        // torch.ao turns 0-d results into 1-element tensors.
        let one = |t: Tensor| {
            if t.dim() == 0 {
                t.f_reshape([1])
            } else {
                Ok(t)
            }
        };
        Ok((one(scale)?, one(zero_point)?))
    }
}

/// torch.ao's `calculate_qmin_qmax` (with its `validate_qmin_qmax`), and a
/// custom range checked against the dtype's bounds, which torch.ao checks
/// for int8 and int32 by length only.
fn resolve_range(op: &'static str, options: &UniformObserverOptions) -> Result<(i64, i64, bool)> {
    let dtype = options.dtype;
    let (lo, hi) = dtype.bounds();
    match (options.quant_min, options.quant_max) {
        (Some(qmin), Some(qmax)) => {
            if !(qmin <= 0 && 0 <= qmax) {
                return Err(Error::invalid(
                    op,
                    "quant_min",
                    format!("{qmin} (quant_max {qmax})"),
                    "the quant range must include 0",
                ));
            }
            if qmin >= qmax {
                return Err(Error::invalid(
                    op,
                    "quant_min",
                    qmin,
                    format!("must be below quant_max = {qmax}"),
                ));
            }
            for (arg, v) in [("quant_min", qmin), ("quant_max", qmax)] {
                if v < lo || v > hi {
                    return Err(Error::invalid(
                        op,
                        arg,
                        v,
                        format!("must lie inside the bounds of {dtype}, [{lo}, {hi}]"),
                    ));
                }
            }
            if options.reduce_range {
                Ok((qmin.div_euclid(2), qmax.div_euclid(2), true))
            } else {
                Ok((qmin, qmax, true))
            }
        }
        (None, None) => {
            let (qmin, qmax) = match (dtype, options.reduce_range) {
                (ObserverDtype::QInt8 | ObserverDtype::Int8, true) => (-64, 63),
                (ObserverDtype::QUInt8 | ObserverDtype::UInt8, true) => (0, 127),
                _ => (lo, hi),
            };
            Ok((qmin, qmax, false))
        }
        (given_min, given_max) => Err(Error::invalid(
            op,
            if given_min.is_some() {
                "quant_min"
            } else {
                "quant_max"
            },
            format!("{:?}", given_min.or(given_max).unwrap_or_default()),
            "give quant_min and quant_max together (torch.ao ignores a lone bound)",
        )),
    }
}

/// The methods every torch.ao observer has, delegating to its core.
macro_rules! uniform_methods {
    ($name:literal) => {
        /// Folds one batch (float32, float16, bfloat16 or float64, cast to
        /// float32 as torch.ao does) into the running values (torch.ao's
        /// `forward`, which returns its input unchanged). Empty batches are
        /// ignored, as in torch.ao.
        ///
        /// # Errors
        /// A non-float or non-strided batch, one on another device than the
        /// first batch; for the per-channel observers, an input of fewer
        /// than 2 dims, `ch_axis` out of range, or another channel count
        /// than the first batch's (torch.ao broadcasts a single channel).
        pub fn observe(&mut self, x: &Tensor) -> Result<()> {
            self.core.observe(op!($name, "observe"), x)
        }

        /// Scale (float32) and zero point (int64 for the symmetric schemes,
        /// int32 for the affine ones, float32 for
        /// [`QScheme::PerChannelAffineFloatQParams`]) of the running values,
        /// each with one element per channel, or one element per tensor.
        ///
        /// # Errors
        /// No batch observed yet (torch.ao returns scale 1, zero point 0 and
        /// warns); a running minimum above its maximum or NaN (torch.ao
        /// asserts).
        pub fn calculate_qparams(&self) -> Result<(Tensor, Tensor)> {
            self.core.calculate_qparams(op!($name, "calculate_qparams"))
        }

        /// The running float32 minima and maxima (0-d per tensor, one per
        /// channel), `None` before the first batch.
        pub fn min_max(&self) -> Option<(&Tensor, &Tensor)> {
            self.core.running.as_ref().map(|r| (&r.min, &r.max))
        }

        /// The number of non-empty batches observed.
        pub fn batches(&self) -> usize {
            self.core.running.as_ref().map_or(0, |r| r.batches)
        }

        /// The quant range in use, after `reduce_range`.
        pub fn quant_range(&self) -> (i64, i64) {
            (self.core.quant_min, self.core.quant_max)
        }
    };
}

/// torchao 0.11's `MinMaxObserver` (`torchao.quantization.pt2e.observer`,
/// torch.ao's): the running minimum and maximum of the whole tensor.
///
/// Per batch, in float32: `min = minimum(aminmax(x).min, min)`,
/// `max = maximum(aminmax(x).max, max)`, starting from `(inf, -inf)`. Then,
/// with `[Q_min, Q_max]` the quant range, `min_neg = min(min, 0)`,
/// `max_pos = max(max, 0)` and `eps` as float32:
///
/// ```text
/// affine:    scale = max((max_pos - min_neg) / (Q_max - Q_min), eps)
///            zp    = clamp(Q_min - int32(round(min_neg / scale)), Q_min, Q_max)   (int32)
/// symmetric: scale = max(max(-min_neg, max_pos) / ((Q_max - Q_min) / 2), eps)
///            zp    = 128 for (q)uint8 ((Q_min + Q_max) // 2 with a custom range),
///                    2^15 for uint16, else 0                                      (int64)
/// ```
///
/// (round half to even), each returned with shape `[1]`.
///
/// # Examples
/// ```
/// use tch::Tensor;
/// use tch_quant::{MinMaxObserver, QScheme, UniformObserverOptions};
/// let mut obs = MinMaxObserver::new(QScheme::PerTensorAffine, &UniformObserverOptions::default())?;
/// obs.observe(&Tensor::from_slice(&[-1.0f32, 2.0]))?;
/// obs.observe(&Tensor::from_slice(&[0.5f32, 4.1]))?;
/// let (scale, zp) = obs.calculate_qparams()?;
/// assert_eq!(scale.double_value(&[0]), (5.1f32 / 255.0) as f64);
/// assert_eq!(zp.int64_value(&[0]), 50);
/// # Ok::<(), tch_quant::Error>(())
/// ```
#[derive(Debug)]
pub struct MinMaxObserver {
    core: UniformCore,
}

impl MinMaxObserver {
    /// An observer that has seen no batch yet.
    ///
    /// # Errors
    /// A per-channel `qscheme`; a lone quant bound, a range that excludes 0,
    /// is empty or leaves the dtype's bounds; `reduce_range` with a
    /// symmetric scheme and a (q)uint8 dtype; a negative, non-finite or
    /// float32-overflowing `eps`.
    pub fn new(qscheme: QScheme, options: &UniformObserverOptions) -> Result<Self> {
        let core = UniformCore::new(
            "MinMaxObserver",
            op!("MinMaxObserver", "new"),
            qscheme,
            None,
            Update::MinMax,
            options,
        )?;
        Ok(MinMaxObserver { core })
    }

    uniform_methods!("MinMaxObserver");
}

/// torchao 0.11's `MovingAverageMinMaxObserver`
/// (`torchao.quantization.pt2e.observer`): a moving average of the tensor's
/// minimum and maximum.
///
/// The first batch sets `min, max = aminmax(x)`; each later one
/// `min = min + c * (aminmax(x).min - min)` (likewise `max`), in float32,
/// with `c` the averaging constant (torch.ao's default 0.01). The qparams are
/// [`MinMaxObserver`]'s.
///
/// # Examples
/// ```
/// use tch::Tensor;
/// use tch_quant::{MovingAverageMinMaxObserver, QScheme, UniformObserverOptions};
/// let mut obs = MovingAverageMinMaxObserver::new(0.5, QScheme::PerTensorSymmetric,
///                                                &UniformObserverOptions::default())?;
/// obs.observe(&Tensor::from_slice(&[-1.0f32, 2.0]))?;
/// obs.observe(&Tensor::from_slice(&[-3.0f32, 1.0]))?;
/// let (min, max) = obs.min_max().unwrap();
/// assert_eq!((min.double_value(&[]), max.double_value(&[])), (-2.0, 1.5));
/// assert_eq!(obs.calculate_qparams()?.1.int64_value(&[0]), 128);
/// # Ok::<(), tch_quant::Error>(())
/// ```
#[derive(Debug)]
pub struct MovingAverageMinMaxObserver {
    core: UniformCore,
}

impl MovingAverageMinMaxObserver {
    /// An observer that has seen no batch yet.
    ///
    /// # Errors
    /// `averaging_constant` outside `(0, 1]`, and what [`MinMaxObserver::new`]
    /// refuses.
    pub fn new(
        averaging_constant: f64,
        qscheme: QScheme,
        options: &UniformObserverOptions,
    ) -> Result<Self> {
        let core = UniformCore::new(
            "MovingAverageMinMaxObserver",
            op!("MovingAverageMinMaxObserver", "new"),
            qscheme,
            None,
            Update::MovingAverage(averaging_constant),
            options,
        )?;
        Ok(MovingAverageMinMaxObserver { core })
    }

    uniform_methods!("MovingAverageMinMaxObserver");
}

/// torchao 0.11's `PerChannelMinMaxObserver`
/// (`torchao.quantization.pt2e.observer`): the running minimum and maximum of
/// every channel along `ch_axis`.
///
/// Per batch: `y = flatten(to_float32(permute(x, swap 0 and ch_axis)), 1)`,
/// `(bmin, bmax) = aminmax(y, dim = 1)`; the first batch sets the running
/// values, later ones take `minimum(bmin, min)` and `maximum(bmax, max)`.
/// The qparams are [`MinMaxObserver`]'s per channel; for
/// [`QScheme::PerChannelAffineFloatQParams`]:
///
/// ```text
/// scale = (max - min) / (Q_max - Q_min), replaced by 1 where not > eps
/// zp    = (-1 * min) / scale                                   (float32)
/// ```
///
/// # Examples
/// ```
/// use tch::Tensor;
/// use tch_quant::{ObserverDtype, PerChannelMinMaxObserver, QScheme, UniformObserverOptions};
/// let options = UniformObserverOptions { dtype: ObserverDtype::QInt8, ..Default::default() };
/// let mut obs = PerChannelMinMaxObserver::new(0, QScheme::PerChannelSymmetric, &options)?;
/// obs.observe(&Tensor::from_slice(&[-1.0f32, 2.0, 0.5, 3.0]).view([2, 2]))?;
/// let (scale, zp) = obs.calculate_qparams()?;
/// assert_eq!(scale.size(), vec![2]);
/// assert_eq!(zp.int64_value(&[1]), 0);
/// # Ok::<(), tch_quant::Error>(())
/// ```
#[derive(Debug)]
pub struct PerChannelMinMaxObserver {
    core: UniformCore,
}

impl PerChannelMinMaxObserver {
    /// An observer of channels along `ch_axis` (negative counts from the
    /// end; checked against each batch's rank) that has seen no batch yet.
    ///
    /// # Errors
    /// A per-tensor `qscheme`, and the option errors of
    /// [`MinMaxObserver::new`].
    pub fn new(ch_axis: i64, qscheme: QScheme, options: &UniformObserverOptions) -> Result<Self> {
        let core = UniformCore::new(
            "PerChannelMinMaxObserver",
            op!("PerChannelMinMaxObserver", "new"),
            qscheme,
            Some(ch_axis),
            Update::MinMax,
            options,
        )?;
        Ok(PerChannelMinMaxObserver { core })
    }

    uniform_methods!("PerChannelMinMaxObserver");
}

/// torchao 0.11's `MovingAveragePerChannelMinMaxObserver`
/// (`torchao.quantization.pt2e.observer`): [`PerChannelMinMaxObserver`] with
/// [`MovingAverageMinMaxObserver`]'s update per channel,
/// `min = min + c * (bmin - min)`.
///
/// # Examples
/// ```
/// use tch::Tensor;
/// use tch_quant::{MovingAveragePerChannelMinMaxObserver, QScheme, UniformObserverOptions};
/// let mut obs = MovingAveragePerChannelMinMaxObserver::new(
///     0.25, 1, QScheme::PerChannelAffine, &UniformObserverOptions::default())?;
/// obs.observe(&Tensor::from_slice(&[0.0f32, 4.0, 8.0, 0.0]).view([2, 2]))?;
/// obs.observe(&Tensor::from_slice(&[4.0f32, 0.0, 4.0, 0.0]).view([2, 2]))?;
/// let (min, _max) = obs.min_max().unwrap();
/// assert_eq!(Vec::<f32>::try_from(min).unwrap(), [1.0, 0.0]);
/// # Ok::<(), tch_quant::Error>(())
/// ```
#[derive(Debug)]
pub struct MovingAveragePerChannelMinMaxObserver {
    core: UniformCore,
}

impl MovingAveragePerChannelMinMaxObserver {
    /// An observer of channels along `ch_axis` that has seen no batch yet.
    ///
    /// # Errors
    /// `averaging_constant` outside `(0, 1]`, and what
    /// [`PerChannelMinMaxObserver::new`] refuses.
    pub fn new(
        averaging_constant: f64,
        ch_axis: i64,
        qscheme: QScheme,
        options: &UniformObserverOptions,
    ) -> Result<Self> {
        let core = UniformCore::new(
            "MovingAveragePerChannelMinMaxObserver",
            op!("MovingAveragePerChannelMinMaxObserver", "new"),
            qscheme,
            Some(ch_axis),
            Update::MovingAverage(averaging_constant),
            options,
        )?;
        Ok(MovingAveragePerChannelMinMaxObserver { core })
    }

    uniform_methods!("MovingAveragePerChannelMinMaxObserver");
}
