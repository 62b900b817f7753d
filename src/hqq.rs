//! Half-quadratic quantization (HQQ): torchao 0.11's
//! `choose_qparams_and_quantize_affine_hqq` with its proximal solver
//! `optimize_weights_proximal_legacy`, op for op on libtorch.
//!
//! HQQ starts from the min/max scale and zero point of each group and then
//! moves the zero point so that the dequantized weights come closer to the
//! originals in an `lp` norm with `p < 1`, which weighs the many small
//! errors less than the few large ones. The scale is not changed by the
//! solver.

use tch::{Device, Kind, TchError, Tensor};

use crate::dtype::{is_input_float, kind_name, INPUT_FLOATS};
use crate::error::{Error, Result, TorchContext};
use crate::qparams::{check_float_input, check_not_empty};
use crate::scalar_ops;
use crate::strided::check_strided;

const OP: &str = "choose_qparams_and_quantize_affine_hqq";

/// The proximal solver's parameters: torchao's `opt_params` of
/// `optimize_weights_proximal_legacy` and its `dtype`.
///
/// torchao's `choose_qparams_and_quantize_affine_hqq` always calls the
/// solver with these defaults; other values reproduce
/// `optimize_weights=functools.partial(optimize_weights_proximal_legacy,
/// dtype=..., opt_params={...})`.
///
/// # Examples
/// ```
/// use tch_quant::HqqSolverOptions;
/// let s = HqqSolverOptions::default();
/// assert_eq!((s.lp_norm, s.beta, s.kappa, s.iters, s.early_stop), (0.7, 10.0, 1.01, 20, true));
/// assert_eq!(s.dtype, None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HqqSolverOptions {
    /// `p` of the `lp` norm the shrinkage operator minimizes (0.7). With
    /// exactly 1 it is soft thresholding.
    pub lp_norm: f64,
    /// Initial weight of the quadratic term (10); finite and positive.
    pub beta: f64,
    /// Factor `beta` grows by after each iteration (1.01); finite and
    /// positive.
    pub kappa: f64,
    /// Most iterations (20); at least 1 when the solver runs.
    pub iters: usize,
    /// Stop at the first iteration whose mean absolute error does not
    /// improve on the best so far (true).
    pub early_stop: bool,
    /// dtype the solver computes in; `None` is torchao's default, float16
    /// on CUDA and float32 elsewhere. A float32, float16 or bfloat16 kind.
    pub dtype: Option<Kind>,
}

impl Default for HqqSolverOptions {
    fn default() -> Self {
        HqqSolverOptions {
            lp_norm: 0.7,
            beta: 1e1,
            kappa: 1.01,
            iters: 20,
            early_stop: true,
            dtype: None,
        }
    }
}

/// Options of [`choose_qparams_and_quantize_affine_hqq`], defaulting to
/// torchao 0.11's defaults except `device` (see there).
///
/// # Examples
/// ```
/// use tch::Kind;
/// use tch_quant::HqqOptions;
/// let o = HqqOptions::default();
/// assert_eq!((o.nbits, o.group_size, o.optimize, o.axis), (4, Some(64), true, 1));
/// assert_eq!(o.compute_dtype, Kind::Half);
/// assert_eq!((o.device, o.raw_output), (None, false));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HqqOptions {
    /// Bits per code, 1 to 8 (4): codes are `0..=2^nbits - 1`.
    pub nbits: u32,
    /// Elements per group (64), positive, dividing the element count; `None`
    /// quantizes along `axis` of the tensor as it is.
    pub group_size: Option<i64>,
    /// Run the proximal solver on the zero points (true).
    pub optimize: bool,
    /// 1: groups are runs of consecutive elements (`reshape([-1, group])`),
    /// the qparams one per row of that view; 0: groups are columns of
    /// `reshape([group, -1])`.
    pub axis: i64,
    /// dtype of the returned scale and zero point, and the dtype they are
    /// rounded to before quantizing when `optimize` is off (float16).
    pub compute_dtype: Kind,
    /// Device of the work and of the results; `None` is the input's device.
    /// torchao's default is `"cuda"`, which fails on a machine without one:
    /// pass `Some(Device::Cuda(0))` for its exact behaviour.
    pub device: Option<Device>,
    /// Return the qparams in the hqq library's form (see
    /// [`choose_qparams_and_quantize_affine_hqq`]) instead of torchao's
    /// affine form (false).
    pub raw_output: bool,
    /// The proximal solver's parameters.
    pub solver: HqqSolverOptions,
}

impl Default for HqqOptions {
    fn default() -> Self {
        HqqOptions {
            nbits: 4,
            group_size: Some(64),
            optimize: true,
            axis: 1,
            compute_dtype: Kind::Half,
            device: None,
            raw_output: false,
            solver: HqqSolverOptions::default(),
        }
    }
}

/// The result of [`choose_qparams_and_quantize_affine_hqq`].
#[derive(Debug)]
pub struct HqqQuantized {
    /// uint8 codes in `0..=2^nbits - 1`, shaped like the input.
    pub codes: Tensor,
    /// Per-group scale in `compute_dtype`.
    pub scale: Tensor,
    /// Per-group zero point in `compute_dtype`.
    pub zero: Tensor,
    /// The input's shape (torchao's fourth return value).
    pub shape: Vec<i64>,
    /// How many solver iterations ran, the one that stopped early included
    /// (torchao prints one `Iter` line for each with `verbose=True`); 0 when
    /// `optimize` is off.
    pub iterations: usize,
}

/// Quantizes `tensor` to `nbits` with half-quadratic optimized zero points,
/// bit-identical to torchao 0.11's `choose_qparams_and_quantize_affine_hqq`
/// (its solver `optimize_weights_proximal_legacy` with `_shrink_lp_op`).
///
/// # Formula
/// With `qmax = 2^nbits - 1` and `W` the input cast to float32 on `device`,
/// reshaped to `[-1, group_size]` (axis 1) or `[group_size, -1]` (axis 0)
/// unless `group_size` is `None`, and `min`, `max` taken along `axis`:
///
/// - `s = min(reciprocal(max - min) * qmax, 2e4)` (float32; torch computes
///   Python's `qmax / t` as `t.reciprocal() * qmax`), `z = -min * s`,
///   rounded half to even when `nbits == 4` only.
/// - Solver (when `optimize`), in the solver's dtype, `beta` starting at
///   `solver.beta`, for `i` in `0..iters`:
///   `Wq = clamp(round(W * s + z), 0, qmax)`, `Wr = (Wq - z) / s`,
///   `x = W - Wr`,
///   `We = sign(x) * relu(|x| - (1/beta) * |x|^(p - 1))`
///   (`relu(|x| - 1/beta)` when `p == 1`),
///   `z = mean(Wq - (W - We) * s, axis)`, `beta *= kappa` (a double
///   product), `err = mean(|W - Wr|)` read as a double; with `early_stop`
///   the loop ends at the first `err` not below the best so far (starting
///   at 1e4), after that iteration's `z` update. Then
///   `Wq = clamp(round(W * s + z), 0, qmax)`.
/// - Without the solver: `z` and `s` are cast to `compute_dtype` and
///   `Wq = clamp(round(W * s + z), 0, qmax)` (float32, the qparams widened).
/// - `scale = reciprocal(s) * 1.0`.
/// - Affine form (`raw_output` false): `zero = ((2^(nbits-1) - float32(z))
///   * float32(scale))` cast back to `z`'s dtype, so that
///   `w ≈ (code - 2^(nbits-1)) * scale + zero`; the qparams keep the
///   grouped view's shape (`[n_groups, 1]` for axis 1).
/// - hqq form (`raw_output` true): `zero = z`, `w ≈ (code - zero) * scale`;
///   `scale` and `zero` reshaped to `[shape[0], -1]` (axis 1) or
///   `[-1, shape[-1]]` (axis 0).
///
/// Finally the codes are cast to uint8 and `scale`, `zero` to
/// `compute_dtype`. Every rounding is libtorch's (`round` is half to even).
///
/// # Errors
/// [`Error::InvalidArgument`] naming the option for `nbits` outside 1..=8,
/// `group_size` not positive or not dividing the element count (torchao
/// asserts), `axis` not 0 or 1 (torchao asserts), `compute_dtype` or
/// `solver.dtype` not float32/float16/bfloat16, `solver.beta` or
/// `solver.kappa` not finite and positive, `solver.lp_norm` not finite,
/// `solver.iters` 0 with `optimize` on (torchao's `UnboundLocalError`),
/// and `solver.kappa` when `beta` underflows to 0 (torchao's
/// `ZeroDivisionError`). [`Error::UnsupportedKind`] for a `tensor` that is
/// not float32/float16/bfloat16, [`Error::ShapeMismatch`] for an empty one,
/// one without the dim `axis` names (`group_size` `None`), or qparams the
/// `raw_output` reshape cannot hold.
///
/// # Examples
/// ```
/// use tch::{Kind, Tensor};
/// use tch_quant::{choose_qparams_and_quantize_affine_hqq, HqqOptions};
/// let w = Tensor::randn([8, 128], (Kind::Float, tch::Device::Cpu));
/// let q = choose_qparams_and_quantize_affine_hqq(&w, &HqqOptions::default())?;
/// assert_eq!(q.codes.size(), vec![8, 128]);
/// assert_eq!(q.codes.kind(), Kind::Uint8);
/// assert_eq!(q.scale.size(), vec![16, 1]);
/// assert_eq!(q.scale.kind(), Kind::Half);
/// assert!((1..=20).contains(&q.iterations));
/// // Dequantize in torchao's affine form: (code - 8) * scale + zero.
/// let groups = q.codes.to_kind(Kind::Float).reshape([-1, 64]);
/// let w2 = (groups - 8.0) * q.scale.to_kind(Kind::Float) + q.zero.to_kind(Kind::Float);
/// let err = (w2.reshape([8, 128]) - &w).abs().max().double_value(&[]);
/// assert!(err < 1.0);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn choose_qparams_and_quantize_affine_hqq(
    tensor: &Tensor,
    options: &HqqOptions,
) -> Result<HqqQuantized> {
    check_strided(OP, "tensor", tensor)?;
    let plan = Plan::new(tensor, options)?;
    plan.run(tensor).op(OP)?
}

/// The validated call.
struct Plan {
    nbits: u32,
    qmax: i64,
    group_size: Option<i64>,
    axis: i64,
    optimize: bool,
    compute_dtype: Kind,
    device: Device,
    solver_dtype: Kind,
    raw_output: bool,
    solver: HqqSolverOptions,
    shape: Vec<i64>,
}

impl Plan {
    fn new(tensor: &Tensor, o: &HqqOptions) -> Result<Plan> {
        if !(1..=8).contains(&o.nbits) {
            return Err(Error::invalid(OP, "nbits", o.nbits, "must be 1 to 8"));
        }
        if let Some(g) = o.group_size {
            if g <= 0 {
                return Err(Error::invalid(OP, "group_size", g, "must be positive"));
            }
        }
        if o.axis != 0 && o.axis != 1 {
            return Err(Error::invalid(OP, "axis", o.axis, "must be 0 or 1"));
        }
        check_float_kind("compute_dtype", o.compute_dtype)?;
        if let Some(d) = o.solver.dtype {
            check_float_kind("solver.dtype", d)?;
        }
        let s = &o.solver;
        // The float options are shown with `{:?}`: 1e-300, not 300 digits.
        if !(s.beta.is_finite() && s.beta > 0.0) {
            return Err(Error::invalid(
                OP,
                "solver.beta",
                format!("{:?}", s.beta),
                "must be finite and positive",
            ));
        }
        if !(s.kappa.is_finite() && s.kappa > 0.0) {
            return Err(Error::invalid(
                OP,
                "solver.kappa",
                format!("{:?}", s.kappa),
                "must be finite and positive",
            ));
        }
        if o.optimize && s.iters == 0 {
            // torchao's solver then deletes a `W_q` no iteration assigned.
            return Err(Error::invalid(
                OP,
                "solver.iters",
                s.iters,
                "must be at least 1 when optimize is on (torchao raises UnboundLocalError)",
            ));
        }
        if !s.lp_norm.is_finite() {
            return Err(Error::invalid(
                OP,
                "solver.lp_norm",
                format!("{:?}", s.lp_norm),
                "must be finite",
            ));
        }
        check_float_input(OP, "tensor", tensor)?;
        check_not_empty(OP, "tensor", tensor)?;
        let shape = tensor.size();
        let numel: i64 = shape.iter().product();
        let n_qparams = match o.group_size {
            Some(g) => {
                if numel % g != 0 {
                    return Err(Error::invalid(
                        OP,
                        "group_size",
                        g,
                        format!("must divide the element count {numel} (shape {shape:?})"),
                    ));
                }
                numel / g
            }
            None => match shape.get(o.axis as usize) {
                Some(&d) => numel / d,
                None => {
                    return Err(Error::ShapeMismatch {
                        op: OP,
                        arg: "tensor",
                        got: shape,
                        reason: format!(
                            "has no dim {} to quantize along (group_size None)",
                            o.axis
                        ),
                    })
                }
            },
        };
        if o.raw_output {
            // torchao reshapes the qparams to [shape[0], -1] or [-1, shape[-1]].
            let (dim, name) = if o.axis == 1 {
                (shape.first().copied(), "shape[0]")
            } else {
                (shape.last().copied(), "shape[-1]")
            };
            if dim.is_none_or(|d| n_qparams % d != 0) {
                return Err(Error::ShapeMismatch {
                    op: OP,
                    arg: "tensor",
                    got: shape,
                    reason: format!(
                        "raw_output reshapes its {n_qparams} qparams by {name}, which does not divide them"
                    ),
                });
            }
        }
        let device = o.device.unwrap_or_else(|| tensor.device());
        let solver_dtype = o.solver.dtype.unwrap_or(match device {
            Device::Cuda(_) => Kind::Half,
            _ => Kind::Float,
        });
        Ok(Plan {
            nbits: o.nbits,
            qmax: (1i64 << o.nbits) - 1,
            group_size: o.group_size,
            axis: o.axis,
            optimize: o.optimize,
            compute_dtype: o.compute_dtype,
            device,
            solver_dtype,
            raw_output: o.raw_output,
            solver: o.solver,
            shape,
        })
    }

    /// torchao's op sequence; the outer `Result` carries libtorch's
    /// failures, the inner one a refusal found while iterating.
    fn run(&self, tensor: &Tensor) -> std::result::Result<Result<HqqQuantized>, TchError> {
        let w = tensor.f_to_device_(self.device, Kind::Float, false, false)?;
        let w = match self.group_size {
            Some(g) if self.axis == 1 => w.f_reshape([-1, g])?,
            Some(g) => w.f_reshape([g, -1])?,
            None => w,
        };
        let (min, _) = w.f_min_dim(self.axis, true)?;
        let (max, _) = w.f_max_dim(self.axis, true)?;
        let range_inv = max.f_sub(&min)?.f_reciprocal()?;
        let scale = scalar_ops::clamp_max(&scalar_ops::mul(&range_inv, self.qmax)?, 2e4)?;
        let mut zero = min.f_neg()?.f_mul(&scale)?;
        if self.nbits == 4 {
            zero = zero.f_round()?;
        }
        let (codes, scale, zero, iterations) = if self.optimize {
            match self.optimize_weights(&w, &scale, &zero)? {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            }
        } else {
            let zero = zero.f_to_kind(self.compute_dtype)?;
            let scale = scale.f_to_kind(self.compute_dtype)?;
            let codes = self.quantize(&w, &scale, &zero)?;
            (codes, scale, zero, 0)
        };
        let scale = scalar_ops::mul(&scale.f_reciprocal()?, 1.0)?;
        let (codes, scale, zero) = if self.raw_output {
            let codes = codes.f_reshape(&self.shape)?;
            let qshape = if self.axis == 1 {
                [self.shape[0], -1]
            } else {
                [-1, self.shape[self.shape.len() - 1]]
            };
            (codes, scale.f_reshape(qshape)?, zero.f_reshape(qshape)?)
        } else {
            // _convert_to_affinequantized_format.
            let mid_point = ((self.qmax + 1) as f64) / 2.0;
            let zero_ao = scalar_ops::rsub(&zero.f_to_kind(Kind::Float)?, mid_point)?
                .f_mul(&scale.f_to_kind(Kind::Float)?)?
                .f_to_kind(zero.kind())?;
            (codes.f_view(self.shape.as_slice())?, scale, zero_ao)
        };
        Ok(Ok(HqqQuantized {
            codes: codes.f_to_device_(self.device, Kind::Uint8, false, false)?,
            scale: scale.f_to_device_(self.device, self.compute_dtype, false, false)?,
            zero: zero.f_to_device_(self.device, self.compute_dtype, false, false)?,
            shape: self.shape.clone(),
            iterations,
        }))
    }

    /// `clamp(round(w * scale + zero), 0, qmax)`, each op after the
    /// multiply in place (the same kernels, one buffer instead of four).
    fn quantize(
        &self,
        w: &Tensor,
        scale: &Tensor,
        zero: &Tensor,
    ) -> std::result::Result<Tensor, TchError> {
        let q = w.f_mul(scale)?.f_add_(zero)?.f_round_()?;
        scalar_ops::clamp_(&q, 0i64, self.qmax)
    }

    /// `optimize_weights_proximal_legacy`: the codes, scale, zero point and
    /// the number of iterations run.
    ///
    /// Each iteration issues torchao's elementwise ops on the same operands
    /// in the same dtype, some of them in place on a buffer whose value is
    /// not needed any more, which changes no bits: an in-place op runs the
    /// same kernel as the op that allocates. `torch.abs(W_f - W_r)` of the
    /// error is the `|x|` the shrinkage already computed, and the error is
    /// read before that buffer is reused.
    #[allow(clippy::type_complexity)]
    fn optimize_weights(
        &self,
        w: &Tensor,
        scale: &Tensor,
        zero: &Tensor,
    ) -> std::result::Result<Result<(Tensor, Tensor, Tensor, usize)>, TchError> {
        let s = &self.solver;
        let w_f = w.f_to_device_(self.device, self.solver_dtype, false, false)?;
        let scale = scale.f_to_device_(self.device, self.solver_dtype, false, false)?;
        let mut zero = zero.f_to_device_(self.device, self.solver_dtype, false, false)?;
        let mut beta = s.beta;
        let mut best_error = 1e4f64;
        let mut iterations = 0;
        for _ in 0..s.iters {
            if beta == 0.0 {
                return Ok(Err(Error::invalid(
                    OP,
                    "solver.kappa",
                    format!("{:?}", s.kappa),
                    format!("beta * kappa^{iterations} underflows to 0 (torchao divides by it)"),
                )));
            }
            iterations += 1;
            let mut w_q = self.quantize(&w_f, &scale, &zero)?;
            // W_r = (W_q - zero) / scale; x = W_f - W_r.
            let w_r = w_q.f_sub(&zero)?.f_div_(&scale)?;
            let mut x = w_f.f_sub(&w_r)?;
            drop(w_r);
            let abs = x.f_abs()?;
            let current_error = abs.f_mean(None::<Kind>)?.f_double_value(&[])?;
            // W_e = _shrink_lp_op(x, beta, lp_norm) = sign(x) * shrunk |x|, into x.
            let shrunk = shrink_abs_lp(abs, beta, s.lp_norm)?;
            let w_e = x.f_sign_()?.f_mul_(&shrunk)?;
            drop(shrunk);
            // zero = mean(W_q - (W_f - W_e) * scale, axis).
            let t = w_f.f_sub(&w_e)?.f_mul_(&scale)?;
            zero = w_q
                .f_sub_(&t)?
                .f_mean_dim(Some([self.axis].as_slice()), true, None::<Kind>)?;
            beta *= s.kappa;
            if s.early_stop {
                if current_error < best_error {
                    best_error = current_error;
                } else {
                    break;
                }
            }
        }
        let codes = self.quantize(w, &scale, &zero)?;
        Ok(Ok((codes, scale, zero, iterations)))
    }
}

/// The inner part of `_shrink_lp_op`, in place on `abs` = `|x|` where it
/// can: `relu(|x| - (1/beta) * |x|^(p - 1))`, or `relu(|x| - 1/beta)` for
/// `p == 1`.
fn shrink_abs_lp(
    mut abs: Tensor,
    beta: f64,
    lp_norm: f64,
) -> std::result::Result<Tensor, TchError> {
    let mut shrunk = if lp_norm == 1.0 {
        scalar_ops::sub(&abs, 1.0 / beta)?
    } else {
        // `t * s` out of place: libtorch's `mul_(Scalar)` computes `s * t`
        // with the scalar first, which for float16/bfloat16 rounds the
        // scalar to the tensor's dtype before multiplying (31% of 1e5
        // float16 products by 0.02 differ).
        let pow = scalar_ops::pow(&abs, lp_norm - 1.0)?;
        abs.f_sub_(&scalar_ops::mul(&pow, 1.0 / beta)?)?
    };
    shrunk.f_relu_()
}

fn check_float_kind(arg: &'static str, kind: Kind) -> Result<()> {
    if !is_input_float(kind) {
        return Err(Error::invalid(
            OP,
            arg,
            kind_name(kind),
            format!("must be {INPUT_FLOATS}"),
        ));
    }
    Ok(())
}
