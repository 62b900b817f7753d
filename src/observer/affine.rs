//! torchao's affine-quantization observers: running per-block minima and
//! maxima for a [`Granularity`], turned into scale and zero point by
//! [`choose_qparams_affine_with_min_max`].

use tch::{Device, Kind, Tensor};

use crate::block::BlockLayout;
use crate::error::{Error, Result, TorchContext};
use crate::formula::QParams;
use crate::granularity::Granularity;
use crate::mapping::{MappingType, ZeroPointDomain};
use crate::qparams::{
    block_min_max, check_float_input, choose_qparams_affine_with_min_max, Plan, QParamsOptions,
};
use crate::scalar_ops;
use crate::strided::check_strided;
use crate::QuantDtype;

use super::{check_averaging_constant, check_device, not_observed, Running};

/// Which copy of torchao's code an observer reproduces: its `get_block_size`
/// and the `choose_qparams_affine_with_min_max` it calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `torchao/quantization/observer.py` with `quant_primitives.py`.
    Quantization,
    /// `torchao/quantization/pt2e/_affine_quantization.py`, whose copy of the
    /// primitives resolves the zero point differently (see
    /// [`AffineQuantizedMovingAverageMinMaxObserver`]).
    Pt2e,
}

/// How a batch's per-block minima and maxima enter the running ones.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Update {
    /// `min = minimum(min, batch_min)`, `max = maximum(max, batch_max)`.
    MinMax,
    /// `min = min + c * (batch_min - min)`, likewise for max.
    MovingAverage(f64),
}

/// What both affine observers share: the arguments, validated once, and the
/// running statistics.
#[derive(Debug)]
struct AffineCore {
    op_observe: &'static str,
    op_qparams: &'static str,
    source: Source,
    update: Update,
    mapping_type: MappingType,
    target_dtype: QuantDtype,
    granularity: Granularity,
    options: QParamsOptions,
    running: Option<Running>,
}

impl AffineCore {
    #[allow(clippy::too_many_arguments)]
    fn new(
        op: &'static str,
        op_observe: &'static str,
        op_qparams: &'static str,
        source: Source,
        update: Update,
        mapping_type: MappingType,
        target_dtype: QuantDtype,
        granularity: Granularity,
        options: QParamsOptions,
    ) -> Result<Self> {
        match (source, granularity) {
            (Source::Quantization, Granularity::PerGroup(_) | Granularity::PerToken) => {
                return Err(Error::invalid(
                    op,
                    "granularity",
                    granularity,
                    "torchao.quantization.observer's get_block_size supports per-tensor, \
                     per-axis and per-row only (it raises for the others); \
                     AffineQuantizedMovingAverageMinMaxObserver takes per-group and per-token",
                ))
            }
            (_, Granularity::PerGroup(g)) if g < 1 => {
                return Err(Error::invalid(
                    op,
                    "granularity",
                    granularity,
                    "the group size must be at least 1",
                ))
            }
            _ => {}
        }
        let core = AffineCore {
            op_observe,
            op_qparams,
            source,
            update,
            mapping_type,
            target_dtype,
            granularity,
            options,
            running: None,
        };
        // Everything about the qparams that does not depend on the input's
        // dtype is refused now rather than after calibration; float32 is the
        // widest input dtype, so this refuses nothing a later batch could
        // make valid.
        core.plan(op, Kind::Float)?;
        Ok(core)
    }

    /// The options `choose_qparams_affine_with_min_max` gets for stats of
    /// dtype `kind`, with the pt2e copy's rules mapped onto the crate's.
    fn plan(&self, op: &'static str, kind: Kind) -> Result<QParamsOptions> {
        let mut options = self.options;
        if self.source == Source::Pt2e {
            options = pt2e_options(op, self.mapping_type, self.target_dtype, options, kind)?;
        }
        Plan::new(op, self.mapping_type, self.target_dtype, &options, kind)?;
        Ok(options)
    }

    fn block_layout(&self, shape: &[i64]) -> Result<BlockLayout> {
        let op = self.op_observe;
        if let (Source::Pt2e, Granularity::PerGroup(_)) = (self.source, self.granularity) {
            if shape.len() != 2 {
                return Err(Error::ShapeMismatch {
                    op,
                    arg: "x",
                    got: shape.to_vec(),
                    reason: "per-group granularity takes 2-D inputs only (torchao's pt2e \
                             get_block_size asserts it)"
                        .into(),
                });
            }
        }
        let block = self.granularity.block_size(shape).map_err(|e| match e {
            Error::InvalidArgument {
                arg, value, reason, ..
            } => Error::InvalidArgument {
                op,
                arg,
                value,
                reason,
            },
            Error::ShapeMismatch { got, reason, .. } => Error::ShapeMismatch {
                op,
                arg: "x",
                got,
                reason,
            },
            other => other,
        })?;
        BlockLayout::new(op, &block, shape)
    }

    fn observe(&mut self, x: &Tensor) -> Result<()> {
        let op = self.op_observe;
        check_strided(op, "x", x)?;
        // torchao returns an empty batch untouched, before looking at it.
        if x.numel() == 0 {
            return Ok(());
        }
        let kind = check_float_input(op, "x", x)?;
        if let Some(r) = &self.running {
            check_device(op, r.device, x)?;
            if kind != r.kind {
                return Err(Error::UnsupportedKind {
                    op,
                    arg: "x",
                    expected: "the dtype of the first batch (the running minima keep it)",
                    got: kind,
                });
            }
        }
        let layout = self.block_layout(&x.size())?;
        let (batch_min, batch_max) = block_min_max(x, &layout).op(op)?;
        let Some(r) = &mut self.running else {
            self.running = Some(Running {
                min: batch_min,
                max: batch_max,
                kind,
                device: x.device(),
                batches: 1,
            });
            return Ok(());
        };
        if batch_min.size() != r.min.size() {
            return Err(Error::ShapeMismatch {
                op,
                arg: "x",
                got: x.size(),
                reason: format!(
                    "its per-block minima have shape {:?}, the running ones {:?}",
                    batch_min.size(),
                    r.min.size()
                ),
            });
        }
        let (min, max) = match self.update {
            Update::MinMax => (
                r.min.f_minimum(&batch_min).op(op)?,
                r.max.f_maximum(&batch_max).op(op)?,
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

    fn calculate_qparams(&self) -> Result<QParams> {
        let op = self.op_qparams;
        let r = self.running.as_ref().ok_or_else(|| not_observed(op))?;
        let options = self.plan(op, r.kind)?;
        // The minima are already reduced, so torchao passes no block size.
        choose_qparams_affine_with_min_max(
            &r.min,
            &r.max,
            self.mapping_type,
            &[],
            self.target_dtype,
            &options,
        )
    }
}

/// `running + c * (batch - running)`, torchao's moving-average update, in the
/// running values' dtype.
pub(super) fn moving_average(
    running: &Tensor,
    batch: &Tensor,
    c: f64,
) -> std::result::Result<Tensor, tch::TchError> {
    let step = scalar_ops::mul(&batch.f_sub(running)?, c)?;
    running.f_add(&step)
}

/// torchao's pt2e copy of `_choose_qparams_affine`, as the crate's options:
/// no int1..int7 targets; symmetric mappings in the Int domain only; the zero
/// point in the minima's dtype unless given; an asymmetric zero point that
/// is not in the None domain follows `preserve_zero` (the Int formula with
/// it, the Float formula without it, which needs the Float domain).
fn pt2e_options(
    op: &'static str,
    mapping_type: MappingType,
    target_dtype: QuantDtype,
    mut options: QParamsOptions,
    kind: Kind,
) -> Result<QParamsOptions> {
    if target_dtype.is_sub_byte_signed() {
        return Err(Error::invalid(
            op,
            "target_dtype",
            target_dtype,
            "torchao's pt2e quantization primitives know no int1..int7 bounds (they raise)",
        ));
    }
    let domain = options.zero_point_domain;
    if mapping_type != MappingType::Asymmetric && domain != ZeroPointDomain::Int {
        return Err(Error::invalid(
            op,
            "zero_point_domain",
            domain,
            format!(
                "torchao's pt2e primitives support only the int domain for {mapping_type} mapping"
            ),
        ));
    }
    if mapping_type == MappingType::Asymmetric && domain != ZeroPointDomain::None {
        if options.preserve_zero {
            options.zero_point_domain = ZeroPointDomain::Int;
        } else if domain == ZeroPointDomain::Int {
            return Err(Error::invalid(
                op,
                "zero_point_domain",
                domain,
                "without preserve_zero, torchao's pt2e primitives need the float domain",
            ));
        }
    }
    options.zero_point_dtype = options.zero_point_dtype.or(Some(kind));
    Ok(options)
}

/// torchao 0.11's `AffineQuantizedMinMaxObserver`
/// (`torchao.quantization.observer`): the running minimum and maximum of
/// every block of the batches it is fed, then
/// [`choose_qparams_affine_with_min_max`] on them.
///
/// For each batch `x` (float32, float16 or bfloat16), with
/// `block_size = granularity.block_size(x.shape)` (per-tensor, per-axis or
/// per-row, as torchao's `get_block_size`):
///
/// ```text
/// batch_min = amin(blocks of x), batch_max = amax(blocks of x)   (x's dtype)
/// first batch:  min = batch_min,               max = batch_max
/// then:         min = minimum(min, batch_min), max = maximum(max, batch_max)
/// ```
///
/// The running values keep the first batch's dtype and device: a later batch
/// of another dtype or device, or whose per-block minima have another shape,
/// is refused (torchao asserts the shape; it silently casts another dtype).
/// Empty batches are ignored, as in torchao. NaN propagates into the minima
/// and maxima, as in torchao.
///
/// [`calculate_qparams`](Self::calculate_qparams) is
/// [`choose_qparams_affine_with_min_max`] with the constructor's arguments and
/// an empty block size: the formulas of [`choose_qparams_affine`](crate::choose_qparams_affine).
///
/// # Examples
/// ```
/// use tch::{Device, Kind, Tensor};
/// use tch_quant::{AffineQuantizedMinMaxObserver, Granularity, MappingType, QParamsOptions, QuantDtype};
///
/// let mut obs = AffineQuantizedMinMaxObserver::new(
///     MappingType::Asymmetric, QuantDtype::UInt8, Granularity::PerAxis(0),
///     QParamsOptions::default())?;
/// obs.observe(&Tensor::from_slice(&[-1.0f32, 2.0, 0.5, 3.0]).view([2, 2]))?;
/// obs.observe(&Tensor::from_slice(&[-4.0f32, 0.0, 1.0, 1.5]).view([2, 2]))?;
/// let (min, max) = obs.min_max().unwrap();
/// assert_eq!(Vec::<f32>::try_from(min)?, [-4.0, 0.5]);
/// assert_eq!(Vec::<f32>::try_from(max)?, [2.0, 3.0]);
/// let qp = obs.calculate_qparams()?;
/// assert_eq!(qp.scale.size(), vec![2]);
/// assert_eq!(qp.zero_point.unwrap().kind(), Kind::Int);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AffineQuantizedMinMaxObserver {
    core: AffineCore,
}

impl AffineQuantizedMinMaxObserver {
    /// An observer that has seen no batch yet, with torchao's arguments
    /// (`quant_min`, `quant_max`, `eps`, `scale_dtype`, `zero_point_dtype`,
    /// `preserve_zero`, `zero_point_domain` in `options`).
    ///
    /// # Errors
    /// Per-group or per-token granularity (torchao's `get_block_size` raises
    /// for them); any combination `choose_qparams_affine_with_min_max` refuses
    /// (a quant range outside the target dtype or reversed, a symmetric
    /// mapping without `preserve_zero` or in the Float domain, a non-symmetric
    /// float8 target, a bad `eps` or `scale_dtype`), refused here rather than
    /// after calibration.
    pub fn new(
        mapping_type: MappingType,
        target_dtype: QuantDtype,
        granularity: Granularity,
        options: QParamsOptions,
    ) -> Result<Self> {
        Ok(AffineQuantizedMinMaxObserver {
            core: AffineCore::new(
                "AffineQuantizedMinMaxObserver::new",
                "AffineQuantizedMinMaxObserver::observe",
                "AffineQuantizedMinMaxObserver::calculate_qparams",
                Source::Quantization,
                Update::MinMax,
                mapping_type,
                target_dtype,
                granularity,
                options,
            )?,
        })
    }

    /// Folds one batch into the running per-block minima and maxima
    /// (torchao's `forward`, which returns its input unchanged).
    ///
    /// # Errors
    /// A non-float or non-strided batch; a block size the granularity cannot
    /// give this shape (an axis out of range, a per-axis granularity that
    /// reduces nothing); a dtype, device or per-block shape that differs from
    /// the first batch's.
    pub fn observe(&mut self, x: &Tensor) -> Result<()> {
        self.core.observe(x)
    }

    /// Scale and zero point of the running minima and maxima.
    ///
    /// # Errors
    /// No batch observed yet (torchao asserts); a scalar the running dtype
    /// cannot hold (e.g. an int32 range on float16 stats).
    pub fn calculate_qparams(&self) -> Result<QParams> {
        self.core.calculate_qparams()
    }

    /// The running per-block minima and maxima, `None` before the first
    /// batch.
    pub fn min_max(&self) -> Option<(&Tensor, &Tensor)> {
        self.core.running.as_ref().map(|r| (&r.min, &r.max))
    }

    /// The number of non-empty batches observed.
    pub fn batches(&self) -> usize {
        self.core.running.as_ref().map_or(0, |r| r.batches)
    }

    /// The device of the running values (the first batch's), `None` before it.
    pub fn device(&self) -> Option<Device> {
        self.core.running.as_ref().map(|r| r.device)
    }
}

/// torchao 0.11's `AffineQuantizedMovingAverageMinMaxObserver`
/// (`torchao.quantization.pt2e._affine_quantization`): a moving average of
/// every block's minimum and maximum.
///
/// As [`AffineQuantizedMinMaxObserver`], except that after the first batch
///
/// ```text
/// min = min + c * (batch_min - min),   max = max + c * (batch_max - max)
/// ```
///
/// in the running dtype, with `c` the `averaging_constant` (torchao's default
/// 0.01), and that torchao's pt2e `get_block_size` also takes per-group (2-D
/// inputs only) and per-token granularity.
///
/// [`calculate_qparams`](Self::calculate_qparams) reproduces the pt2e copy of
/// `choose_qparams_affine_with_min_max`, which differs from
/// `quant_primitives`': the zero point keeps the minima's dtype unless
/// `zero_point_dtype` is given (no int32 default); a symmetric mapping takes
/// the Int domain only (the None domain raises there); an asymmetric zero
/// point outside the None domain uses the Int formula when `preserve_zero`
/// holds (whatever the domain) and the Float formula otherwise, which needs
/// the Float domain; int1..int7 targets are unknown to it.
///
/// # Examples
/// ```
/// use tch::Tensor;
/// use tch_quant::{AffineQuantizedMovingAverageMinMaxObserver, Granularity, MappingType,
///                 QParamsOptions, QuantDtype};
///
/// let mut obs = AffineQuantizedMovingAverageMinMaxObserver::new(
///     MappingType::Symmetric, QuantDtype::Int8, Granularity::PerTensor, 0.5,
///     QParamsOptions::default())?;
/// obs.observe(&Tensor::from_slice(&[-2.0f32, 2.0]))?;
/// obs.observe(&Tensor::from_slice(&[-4.0f32, 1.0]))?;
/// let (min, max) = obs.min_max().unwrap();
/// assert_eq!((min.double_value(&[]), max.double_value(&[])), (-3.0, 1.5));
/// let qp = obs.calculate_qparams()?;
/// assert_eq!(qp.scale.double_value(&[]), (3.0f32 / 127.5) as f64);
/// # Ok::<(), tch_quant::Error>(())
/// ```
#[derive(Debug)]
pub struct AffineQuantizedMovingAverageMinMaxObserver {
    core: AffineCore,
}

impl AffineQuantizedMovingAverageMinMaxObserver {
    /// An observer that has seen no batch yet.
    ///
    /// # Errors
    /// `averaging_constant` not in `(0, 1]` (torchao takes any number; 0 or
    /// less never moves past the first batch, above 1 overshoots);
    /// per-group granularity with a group size below 1; any combination the
    /// pt2e `choose_qparams_affine_with_min_max` refuses (see the type's
    /// docs), refused here rather than after calibration.
    pub fn new(
        mapping_type: MappingType,
        target_dtype: QuantDtype,
        granularity: Granularity,
        averaging_constant: f64,
        options: QParamsOptions,
    ) -> Result<Self> {
        const OP: &str = "AffineQuantizedMovingAverageMinMaxObserver::new";
        check_averaging_constant(OP, averaging_constant)?;
        Ok(AffineQuantizedMovingAverageMinMaxObserver {
            core: AffineCore::new(
                OP,
                "AffineQuantizedMovingAverageMinMaxObserver::observe",
                "AffineQuantizedMovingAverageMinMaxObserver::calculate_qparams",
                Source::Pt2e,
                Update::MovingAverage(averaging_constant),
                mapping_type,
                target_dtype,
                granularity,
                options,
            )?,
        })
    }

    /// Folds one batch into the moving averages (torchao's `forward`).
    ///
    /// # Errors
    /// As [`AffineQuantizedMinMaxObserver::observe`], and a per-group
    /// granularity on an input that is not 2-D.
    pub fn observe(&mut self, x: &Tensor) -> Result<()> {
        self.core.observe(x)
    }

    /// Scale and zero point of the averaged minima and maxima.
    ///
    /// # Errors
    /// No batch observed yet (torchao asserts); a scalar the running dtype
    /// cannot hold.
    pub fn calculate_qparams(&self) -> Result<QParams> {
        self.core.calculate_qparams()
    }

    /// The running per-block averaged minima and maxima, `None` before the
    /// first batch.
    pub fn min_max(&self) -> Option<(&Tensor, &Tensor)> {
        self.core.running.as_ref().map(|r| (&r.min, &r.max))
    }

    /// The number of non-empty batches observed.
    pub fn batches(&self) -> usize {
        self.core.running.as_ref().map_or(0, |r| r.batches)
    }

    /// The averaging constant `c`.
    pub fn averaging_constant(&self) -> f64 {
        match self.core.update {
            Update::MovingAverage(c) => c,
            Update::MinMax => 1.0,
        }
    }
}
