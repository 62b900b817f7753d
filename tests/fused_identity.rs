//! The fused CPU path against the reference path (the libtorch op
//! sequence, `force_reference`), bit for bit: on every choose, quantize and
//! chain case of the committed fixtures, and on seeded random cases.
//!
//! `TCH_QUANT_FUSED_SEED` sets the seed (printed on every run; by default
//! one drawn from the clock), `TCH_QUANT_FUSED_CASES` the number of random
//! cases (default 20000). Every output must be identical byte for byte,
//! dtype and shape included and NaN bit patterns too: the fused path leaves
//! NaN inputs and NaN qparams to the reference path, so any NaN it returns
//! must carry libtorch's bits.
//!
//! Besides ordinary values, the generator draws the inputs that make NaN
//! qparams out of NaN-free input (issue 9): blocks with `+inf`, `-inf` or
//! both, blocks of infinities only, values whose range overflows the input
//! dtype, and quant ranges of width 0 or 1 or ending at 0 (int1, uint1), for
//! every code dtype and zero-point dtype; the counts of each are printed.
//!
//! The fused kernels exist in a baseline, an AVX2 and an AVX-512 build and
//! run the widest the CPU has; `every_simd_level_is_bit_identical` re-runs
//! the random cases in child processes capped (`TCH_QUANT_SIMD`) at the
//! narrower levels.
//!
//! About two random cases in five follow torchao 0.18 (`Semantics::Torchao0_18`:
//! its eps default, int32 zero points, `keepdim`, the Int-domain
//! dequantize that subtracts in the output dtype); the tallies are keyed by
//! semantics. The 0.18 fixtures are replayed on both paths against the
//! oracle by `tests/parity_0_18.rs`.

// Only the oracle loading and comparison of the parity harness are used.
#[allow(dead_code)]
#[path = "parity/extra_ops.rs"]
mod extra_ops;
#[allow(dead_code)]
#[path = "parity/replay.rs"]
mod replay;
#[path = "common/store.rs"]
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tch::{Device, Kind, Tensor};
use tch_quant::{
    choose_qparams_affine, choose_qparams_and_quantize_affine,
    choose_qparams_and_quantize_affine_into, quantize_affine, quantize_affine_into, MappingType,
    QParamsOptions, QuantDtype, QuantizeOptions, Semantics, ZeroPointDomain,
};

/// The outputs of one call, or that it failed.
type Answer = std::result::Result<Vec<Option<Tensor>>, tch_quant::Error>;

/// One call, on either path.
#[derive(Debug)]
enum Call {
    Choose {
        mapping: MappingType,
        block: Vec<i64>,
        dtype: QuantDtype,
        options: QParamsOptions,
    },
    Quantize {
        block: Vec<i64>,
        scale: Tensor,
        zero_point: Option<Tensor>,
        dtype: QuantDtype,
        options: QuantizeOptions,
    },
    Chain {
        mapping: MappingType,
        block: Vec<i64>,
        dtype: QuantDtype,
        options: QParamsOptions,
    },
}

impl Call {
    fn name(&self) -> &'static str {
        match self {
            Call::Choose { .. } => "choose",
            Call::Quantize { .. } => "quantize",
            Call::Chain { .. } => "chain",
        }
    }

    fn semantics(&self) -> Semantics {
        match self {
            Call::Choose { options, .. } | Call::Chain { options, .. } => options.semantics,
            Call::Quantize { options, .. } => options.semantics,
        }
    }

    fn dtype(&self) -> QuantDtype {
        match self {
            Call::Choose { dtype, .. }
            | Call::Quantize { dtype, .. }
            | Call::Chain { dtype, .. } => *dtype,
        }
    }

    fn run(&self, input: &Tensor, reference: bool) -> Answer {
        match self {
            Call::Choose {
                mapping,
                block,
                dtype,
                options,
            } => {
                let options = QParamsOptions {
                    force_reference: reference,
                    ..*options
                };
                let qp = choose_qparams_affine(input, *mapping, block, *dtype, &options)?;
                Ok(vec![Some(qp.scale), qp.zero_point])
            }
            Call::Quantize {
                block,
                scale,
                zero_point,
                dtype,
                options,
            } => {
                let options = QuantizeOptions {
                    force_reference: reference,
                    ..*options
                };
                let q =
                    quantize_affine(input, block, scale, zero_point.as_ref(), *dtype, &options)?;
                Ok(vec![Some(q)])
            }
            Call::Chain {
                mapping,
                block,
                dtype,
                options,
            } => {
                let options = QParamsOptions {
                    force_reference: reference,
                    ..*options
                };
                let (qp, codes) =
                    choose_qparams_and_quantize_affine(input, *mapping, block, *dtype, &options)?;
                Ok(vec![Some(qp.scale), qp.zero_point, Some(codes)])
            }
        }
    }
}

impl Call {
    /// The call through its `_into` function (`quantize_affine_into`,
    /// `choose_qparams_and_quantize_affine_into`) on the fused path, into an
    /// output first filled with the complement of every byte of the
    /// reference codes (zeros where the reference failed), so that a code
    /// left unwritten shows. `None` for a choose, which has no such
    /// function.
    fn run_into(&self, input: &Tensor, reference: &Answer) -> Option<Answer> {
        let codes_at = match self {
            Call::Choose { .. } => return None,
            Call::Quantize { .. } => 0,
            Call::Chain { .. } => 2,
        };
        let expected = reference.as_ref().ok().and_then(|r| r[codes_at].as_ref());
        let mut out = match scrambled(expected, input, self.dtype()) {
            Ok(out) => out,
            Err(e) => panic!("cannot make the output of an _into call: {e}"),
        };
        Some(match self {
            Call::Choose { .. } => return None,
            Call::Quantize {
                block,
                scale,
                zero_point,
                dtype,
                options,
            } => quantize_affine_into(
                input,
                block,
                scale,
                zero_point.as_ref(),
                *dtype,
                options,
                &mut out,
            )
            .map(|()| vec![Some(out)]),
            Call::Chain {
                mapping,
                block,
                dtype,
                options,
            } => choose_qparams_and_quantize_affine_into(
                input, *mapping, block, *dtype, options, &mut out,
            )
            .map(|qp| vec![Some(qp.scale), qp.zero_point, Some(out)]),
        })
    }
}

/// An output for the codes of `input` quantized to `dtype`: the complement
/// of every byte of `expected` where given, else zeros.
fn scrambled(expected: Option<&Tensor>, input: &Tensor, dtype: QuantDtype) -> Result<Tensor> {
    let Some(expected) = expected else {
        return Ok(Tensor::f_zeros(
            input.size(),
            (dtype.storage_kind(), input.device()),
        )?);
    };
    let mut out = Tensor::f_empty(expected.size(), (expected.kind(), expected.device()))?;
    out.f_copy_(expected)?;
    if out.numel() > 0 {
        let mut bytes = out.f_view([-1])?.f_view_dtype(Kind::Uint8)?;
        let _ = bytes.f_bitwise_not_()?;
    }
    Ok(out)
}

/// `None` when the tensors are identical byte for byte (NaN payloads
/// included), else what differs.
fn compare_bits(reference: &Tensor, fused: &Tensor) -> Result<Option<String>> {
    if let Some(d) = replay::compare(reference, fused)? {
        return Ok(Some(d));
    }
    let (r, f) = (replay::raw_bytes(reference)?, replay::raw_bytes(fused)?);
    Ok((r != f).then(|| {
        let i = r.iter().zip(&f).position(|(a, b)| a != b).unwrap_or(0);
        format!(
            "NaN bits differ at byte {i}: {:#04x} != expected {:#04x}",
            f[i], r[i]
        )
    }))
}

/// `None` when both answers are identical, else what differs.
fn differs(fused: &Answer, reference: &Answer) -> Result<Option<String>> {
    match (fused, reference) {
        (Err(_), Err(_)) => Ok(None),
        (Ok(_), Err(e)) => Ok(Some(format!("reference failed ({e}), fused did not"))),
        (Err(e), Ok(_)) => Ok(Some(format!("fused failed: {e}"))),
        (Ok(f), Ok(r)) => {
            for (i, (f, r)) in f.iter().zip(r).enumerate() {
                match (f, r) {
                    (None, None) => {}
                    (Some(f), Some(r)) => {
                        if let Some(d) = compare_bits(r, f)? {
                            return Ok(Some(format!("output {i}: {d}")));
                        }
                    }
                    _ => return Ok(Some(format!("output {i}: None on one path only"))),
                }
            }
            Ok(None)
        }
    }
}

// SplitMix64: a small, seedable generator.
#[path = "common/rng.rs"]
mod common_rng;
use common_rng::Rng;

impl Rng {
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-300);
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()
    }
}

const FLOATS: [Kind; 3] = [Kind::Float, Kind::BFloat16, Kind::Half];

fn divisors(n: i64) -> Vec<i64> {
    (1..=n).filter(|d| n % d == 0).collect()
}

/// A shape and a block size; `big` makes inputs large enough to be split
/// over threads.
fn layout(rng: &mut Rng, big: bool) -> (Vec<i64>, Vec<i64>) {
    let dim = |rng: &mut Rng| -> i64 {
        if rng.chance(0.4) {
            rng.pick(&[1, 2, 3, 4, 8, 16, 32, 64, 128])
        } else {
            1 + rng.below(24) as i64
        }
    };
    let (rows, cols) = if big {
        (
            rng.pick(&[1, 2, 3, 64, 512, 1024]),
            rng.pick(&[256, 384, 1024, 4096]),
        )
    } else {
        (dim(rng), dim(rng))
    };
    match rng.below(6) {
        // Per tensor.
        0 => {
            let shape = if big {
                vec![rows * cols]
            } else {
                (0..1 + rng.below(3)).map(|_| dim(rng)).collect()
            };
            (shape.clone(), shape)
        }
        // Per row.
        1 => (vec![rows, cols], vec![1, cols]),
        // Per group along the last dim.
        2 => {
            let g = rng.pick(&divisors(cols));
            (vec![rows, cols], vec![1, g])
        }
        // Per axis: one dim kept, the others reduced.
        3 => {
            let shape: Vec<i64> = if big {
                vec![rows, cols]
            } else {
                (0..2 + rng.below(2)).map(|_| dim(rng)).collect()
            };
            let keep = rng.below(shape.len());
            let block = shape
                .iter()
                .enumerate()
                .map(|(i, &s)| if i == keep { 1 } else { s })
                .collect();
            (shape, block)
        }
        // Rank 3, per group along the last dim.
        4 => {
            let shape = vec![1 + rng.below(4) as i64, rows.min(256), cols.min(1024)];
            let g = rng.pick(&divisors(shape[2]));
            (shape.clone(), vec![1, 1, g])
        }
        // General blocks: each dim unsplit, whole or a divisor.
        _ => {
            let shape: Vec<i64> = if big {
                vec![rows, cols]
            } else {
                (0..1 + rng.below(4)).map(|_| dim(rng)).collect()
            };
            let block = shape.iter().map(|&s| rng.pick(&divisors(s))).collect();
            (shape, block)
        }
    }
}

/// One value of a random regime, as f64 (converted to the input dtype by
/// libtorch afterwards).
fn value(rng: &mut Rng, regime: usize, sigma: f64, special: f64, kind: Kind) -> f64 {
    let max = match kind {
        Kind::Half => 65504.0,
        Kind::BFloat16 => 3.389e38,
        _ => f32::MAX as f64,
    };
    let tiny = match kind {
        Kind::Half => 5.96e-8,
        _ => 1.4e-45,
    };
    if rng.chance(special) {
        return rng.pick(&[
            0.0,
            -0.0,
            tiny,
            -tiny,
            tiny * 3.0,
            max,
            -max,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ]);
    }
    match regime {
        0 => rng.normal() * sigma,
        1 => rng.normal().abs() * sigma,
        2 => -rng.normal().abs() * sigma,
        // Multiples of half a power of two: ties at .5 for power-of-two scales.
        3 => (rng.below(64) as f64 - 32.0) * 0.5 * sigma,
        4 => sigma,
        5 => rng.pick(&[0.0, -0.0]),
        6 => rng.normal() * tiny * 16.0,
        _ => rng.normal() * max / 4.0,
    }
}

/// The edge cases a random case holds, for the counts printed.
#[derive(Debug, Default, Clone, Copy)]
struct Edges {
    pos_inf: bool,
    neg_inf: bool,
    /// `+inf` and `-inf` next to each other (one block for most layouts).
    both_inf: bool,
    /// A run of one infinity (a whole block for row and group layouts).
    inf_run: bool,
    /// `+max` next to `-max`: `max - min` overflows the input dtype.
    overflow: bool,
    /// A quant range of width 0 or 1, or ending at 0.
    tiny_range: bool,
}

impl Edges {
    fn names(self) -> impl Iterator<Item = &'static str> {
        [
            (self.pos_inf, "+inf"),
            (self.neg_inf, "-inf"),
            (self.both_inf, "+inf and -inf together"),
            (self.inf_run, "a run of infinities"),
            (self.overflow, "an overflowing range"),
            (
                self.tiny_range,
                "a quant range of width 0 or 1 or ending at 0",
            ),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
    }
}

/// Puts infinities or overflowing pairs into `v` (a tensor of `shape`).
fn inject_edges(rng: &mut Rng, v: &mut [f64], shape: &[i64], kind: Kind, edges: &mut Edges) {
    let n = v.len();
    if n < 2 {
        return;
    }
    let max = match kind {
        Kind::Half => 65504.0,
        Kind::BFloat16 => half::bf16::MAX.to_f64(),
        _ => f32::MAX as f64,
    };
    let i = rng.below(n - 1);
    match rng.below(6) {
        0 => {
            v[i] = f64::INFINITY;
            edges.pos_inf = true;
        }
        1 => {
            v[i] = f64::NEG_INFINITY;
            edges.neg_inf = true;
        }
        2 => {
            (v[i], v[i + 1]) = (f64::INFINITY, f64::NEG_INFINITY);
            edges.both_inf = true;
        }
        3 => {
            let row = *shape.last().unwrap_or(&1) as usize;
            let start = i / row * row;
            let inf = rng.pick(&[f64::INFINITY, f64::NEG_INFINITY]);
            v[start..(start + row).min(n)].fill(inf);
            edges.inf_run = true;
        }
        4 => {
            (v[i], v[i + 1]) = (max, -max);
            edges.overflow = true;
        }
        _ => {
            for x in v.iter_mut() {
                *x = rng.pick(&[max, -max, max / 2.0, -max / 3.0]);
            }
            edges.overflow = true;
        }
    }
}

fn random_input(rng: &mut Rng, shape: &[i64], kind: Kind, edges: &mut Edges) -> Result<Tensor> {
    let n: i64 = shape.iter().product();
    let regime = rng.below(8);
    let sigma = rng.pick(&[1.0, 0.5, 2.0, 1e-3, 1e3]) * 2f64.powi(rng.below(40) as i32 - 20);
    let special = rng.pick(&[0.0, 0.0, 0.001, 0.02]);
    let nan_block = rng.chance(0.05);
    let mut v: Vec<f64> = (0..n)
        .map(|_| value(rng, regime, sigma, special, kind))
        .collect();
    if rng.chance(0.3) {
        inject_edges(rng, &mut v, shape, kind, edges);
    }
    if nan_block && n > 0 {
        let i = rng.below(n as usize);
        v[i] = f64::NAN;
    }
    let t = Tensor::from_slice(&v).f_to_kind(kind)?;
    Ok(if rng.chance(0.05) && shape.len() >= 2 {
        // A non-contiguous view with the same shape and values.
        let mut swapped = shape.to_vec();
        swapped.swap(0, 1);
        t.f_reshape(shape)?
            .f_transpose(0, 1)?
            .f_contiguous()?
            .f_reshape(&swapped)?
            .f_transpose(0, 1)?
    } else {
        t.f_reshape(shape)?
    })
}

fn random_dtype(rng: &mut Rng) -> QuantDtype {
    if rng.chance(0.1) {
        // Ranges of width 1: int1 is [-1, 0], so quant_max is 0.
        return rng.pick(&[QuantDtype::Int1, QuantDtype::UInt1]);
    }
    if rng.chance(0.5) {
        rng.pick(&[QuantDtype::Int8, QuantDtype::UInt8, QuantDtype::UInt4])
    } else {
        rng.pick(&QuantDtype::ALL)
    }
}

fn random_range(rng: &mut Rng, dtype: QuantDtype, edges: &mut Edges) -> (Option<f64>, Option<f64>) {
    let (lo, hi) = dtype.bounds();
    if !dtype.is_float8() && rng.chance(0.1) {
        // Width 0 or 1, or a range that ends at 0 (0 / 0 in the symmetric
        // mappings), clipped to the dtype.
        let q = rng.pick(&[lo, hi, 0.0, -1.0, 1.0]).clamp(lo, hi);
        let (a, b) = match rng.below(4) {
            0 => (q, q),
            1 => (q, (q + 1.0).min(hi)),
            2 => (lo, 0.0f64.clamp(lo, hi)),
            _ => (0.0f64.clamp(lo, hi), hi),
        };
        edges.tiny_range = true;
        return (Some(a.min(b)), Some(a.max(b)));
    }
    if !rng.chance(0.2) {
        return (None, None);
    }
    if dtype.is_float8() {
        return (Some(lo / 2.0), Some(hi / 2.0));
    }
    let span = (hi - lo).min(1000.0) as usize;
    let a = lo + rng.below(span + 1) as f64;
    let b = lo + rng.below(span + 1) as f64;
    (Some(a.min(b)), Some(a.max(b)))
}

fn random_choose(
    rng: &mut Rng,
    kind: Kind,
    edges: &mut Edges,
) -> (MappingType, QuantDtype, QParamsOptions) {
    let dtype = random_dtype(rng);
    let mapping = if dtype.is_float8() || rng.chance(0.5) {
        rng.pick(&[MappingType::Symmetric, MappingType::SymmetricNoClippingErr])
    } else {
        MappingType::Asymmetric
    };
    let mapping = if rng.chance(0.03) {
        rng.pick(&[MappingType::Asymmetric, MappingType::Symmetric])
    } else {
        mapping
    };
    let (quant_min, quant_max) = random_range(rng, dtype, edges);
    let asym = mapping == MappingType::Asymmetric;
    let semantics = random_semantics(rng);
    let new = semantics == Semantics::Torchao0_18;
    // 0.18 takes only preserve_zero and the Int domain (the rest is refused
    // on both paths alike, drawn now and then).
    let domain = if new && !rng.chance(0.03) {
        ZeroPointDomain::Int
    } else if asym {
        rng.pick(&[
            ZeroPointDomain::Int,
            ZeroPointDomain::Int,
            ZeroPointDomain::Float,
            ZeroPointDomain::None,
        ])
    } else {
        rng.pick(&[ZeroPointDomain::Int, ZeroPointDomain::None])
    };
    let eps = match rng.below(8) {
        0 => Some(0.0),
        1 => Some(1e-30),
        2 => Some(rng.unit() * 1e-3),
        3 => Some(1.0 + 2f64.powi(-8) + 2f64.powi(-30)),
        4 => Some(rng.unit()),
        _ => None,
    };
    let float_kinds = [Kind::Float, Kind::BFloat16, Kind::Half, Kind::Double];
    let options = QParamsOptions {
        quant_min,
        quant_max,
        eps,
        scale_dtype: rng.chance(0.3).then(|| rng.pick(&float_kinds)),
        zero_point_dtype: rng.chance(0.3).then(|| {
            rng.pick(&[
                Kind::Uint8,
                Kind::Int8,
                Kind::Int16,
                Kind::Int,
                Kind::Int64,
                Kind::Float,
                Kind::BFloat16,
                Kind::Half,
                Kind::Double,
            ])
        }),
        preserve_zero: !asym || (new && !rng.chance(0.03)) || rng.chance(0.6) || rng.chance(0.02),
        zero_point_domain: domain,
        force_reference: false,
        semantics,
        keepdim: new && rng.chance(0.3),
    };
    let _ = kind;
    (mapping, dtype, options)
}

/// torchao 0.18 for about two cases in five, else 0.11.
fn random_semantics(rng: &mut Rng) -> Semantics {
    if rng.chance(0.4) {
        Semantics::Torchao0_18
    } else {
        Semantics::Torchao0_11
    }
}

/// Scale and zero point for a quantize call: from the reference choose, or
/// drawn (powers of two for exact ties, zero, negative, special values).
fn random_qparams(
    rng: &mut Rng,
    input: &Tensor,
    block: &[i64],
    mapping: MappingType,
    dtype: QuantDtype,
    options: &QParamsOptions,
) -> Result<Option<(Tensor, Option<Tensor>)>> {
    let reference = QParamsOptions {
        force_reference: true,
        ..*options
    };
    let Ok(qp) = choose_qparams_affine(input, mapping, block, dtype, &reference) else {
        return Ok(None);
    };
    if rng.chance(0.5) {
        return Ok(Some((qp.scale, qp.zero_point)));
    }
    let n = qp.scale.numel();
    let shape = qp.scale.size();
    let scale: Vec<f64> = (0..n)
        .map(|_| match rng.below(10) {
            0 => 0.0,
            1 => -2f64.powi(rng.below(10) as i32 - 5),
            2 => rng.pick(&[f64::NAN, f64::INFINITY, 1e-40, 1e-8]),
            3..=5 => 2f64.powi(rng.below(30) as i32 - 15),
            _ => rng.unit() * 2f64.powi(rng.below(20) as i32 - 10),
        })
        .collect();
    let scale_kind = rng.pick(&[Kind::Float, Kind::BFloat16, Kind::Half, Kind::Double]);
    let scale = Tensor::from_slice(&scale)
        .f_to_kind(scale_kind)?
        .f_reshape(&shape)?;
    let zero_point = match options.zero_point_domain {
        ZeroPointDomain::None => None,
        _ => {
            let (lo, hi) = dtype.bounds();
            let zp: Vec<f64> = (0..n)
                .map(|_| match rng.below(8) {
                    0 => f64::NAN,
                    1 => lo + rng.below(((hi - lo).min(1e6)) as usize + 1) as f64 + 0.5,
                    2 => (rng.normal() * 300.0).round(),
                    _ => (lo + rng.below(((hi - lo).min(1e6)) as usize + 1) as f64).min(hi),
                })
                .collect();
            let zp_kind = rng.pick(&[
                Kind::Int,
                Kind::Int,
                Kind::Uint8,
                Kind::Int8,
                Kind::Int16,
                Kind::Int64,
                Kind::Float,
                Kind::BFloat16,
                Kind::Half,
                Kind::Double,
            ]);
            let zp = Tensor::from_slice(&zp);
            let zp = if matches!(
                zp_kind,
                Kind::Float | Kind::BFloat16 | Kind::Half | Kind::Double
            ) {
                zp.f_to_kind(zp_kind)?
            } else {
                // Integers from NaN or out of range are whatever libtorch
                // casts them to; only their dtype matters here.
                zp.f_nan_to_num(0.0, None, None)?
                    .f_clamp(-1e9, 1e9)?
                    .f_to_kind(zp_kind)?
            };
            Some(zp.f_reshape(&shape)?)
        }
    };
    Ok(Some((scale, zero_point)))
}

/// One random case: an input, a call and the edge cases it holds.
fn random_case(rng: &mut Rng, big: bool) -> Result<Option<(Tensor, Call, Edges)>> {
    let kind = rng.pick(&FLOATS);
    let (shape, block) = layout(rng, big);
    let mut edges = Edges::default();
    let mut input = random_input(rng, &shape, kind, &mut edges)?;
    let (mapping, dtype, options) = random_choose(rng, kind, &mut edges);
    let call = match rng.below(10) {
        0..=3 => {
            if rng.chance(0.02) {
                input = input.set_requires_grad(true);
            }
            Call::Choose {
                mapping,
                block,
                dtype,
                options,
            }
        }
        4..=6 => {
            let Some((scale, zero_point)) =
                random_qparams(rng, &input, &block, mapping, dtype, &options)?
            else {
                return Ok(None);
            };
            Call::Quantize {
                block,
                scale,
                zero_point,
                dtype,
                options: QuantizeOptions {
                    quant_min: options.quant_min,
                    quant_max: options.quant_max,
                    zero_point_domain: options.zero_point_domain,
                    force_reference: false,
                    semantics: options.semantics,
                },
            }
        }
        _ => Call::Chain {
            mapping,
            block,
            dtype,
            options,
        },
    };
    Ok(Some((input, call, edges)))
}

fn seed() -> u64 {
    std::env::var("TCH_QUANT_FUSED_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64 % 1_000_000_007)
                .unwrap_or(0)
        })
}

fn case_count() -> usize {
    std::env::var("TCH_QUANT_FUSED_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000)
}

/// Tallies per kind of case: (cases, both paths failed); and of the edge
/// cases drawn.
#[derive(Default)]
struct Tally {
    by_kind: BTreeMap<String, (usize, usize)>,
    diffs: Vec<String>,
    edges: BTreeMap<&'static str, usize>,
    /// Chooses whose reference qparams hold a NaN although the input holds
    /// none.
    nan_qparams: usize,
    code_dtypes: BTreeSet<&'static str>,
    zero_point_dtypes: BTreeSet<String>,
}

impl Tally {
    fn record(&mut self, key: String, fused: &Answer, reference: &Answer) -> Result<()> {
        let entry = self.by_kind.entry(key.clone()).or_default();
        entry.0 += 1;
        if fused.is_err() && reference.is_err() {
            entry.1 += 1;
        }
        if let Some(d) = differs(fused, reference)? {
            self.diffs.push(format!("{key}: {d}"));
        }
        Ok(())
    }

    /// Counts what a random case holds and what its reference answer gave.
    fn record_edges(&mut self, input: &Tensor, call: &Call, edges: Edges, reference: &Answer) {
        for name in edges.names() {
            *self.edges.entry(name).or_default() += 1;
        }
        self.code_dtypes.insert(call.dtype().name());
        let Ok(outputs) = reference else {
            return;
        };
        if matches!(call, Call::Quantize { .. }) {
            return;
        }
        if let Some(zp) = &outputs[1] {
            self.zero_point_dtypes.insert(format!("{:?}", zp.kind()));
        }
        let has_nan = |t: &Tensor| t.isnan().any().int64_value(&[]) != 0;
        let float = |t: &&Tensor| {
            matches!(
                t.kind(),
                Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double
            )
        };
        let nan_out = outputs[..2].iter().flatten().filter(float).any(has_nan);
        if nan_out && !has_nan(input) {
            self.nan_qparams += 1;
        }
    }

    fn total(&self) -> usize {
        self.by_kind.values().map(|v| v.0).sum()
    }

    fn print(&self, what: &str) {
        println!(
            "{what}: {} cases, {} identical",
            self.total(),
            self.total() - self.diffs.len()
        );
        for (k, (n, err)) in &self.by_kind {
            println!("  {k:<24} {n:>6} cases ({err} refused by both paths)");
        }
        if !self.edges.is_empty() {
            for (name, n) in &self.edges {
                println!("  with {name:<46} {n:>6} cases");
            }
            println!(
                "  NaN qparams from NaN-free input           {:>6} cases",
                self.nan_qparams
            );
            println!(
                "  code dtypes drawn: {} of {}; zero-point dtypes returned: {}",
                self.code_dtypes.len(),
                QuantDtype::ALL.len(),
                self.zero_point_dtypes.len()
            );
        }
        for d in self.diffs.iter().take(20) {
            println!("  DIFF {d}");
        }
    }
}

/// The tallies of a test's cases: through the plain functions and through
/// the `_into` ones ([`Call::run_into`]).
#[derive(Default)]
struct Tallies {
    plain: Tally,
    into: Tally,
}

impl Tallies {
    /// Records `fused` against `reference` under `key`, and the call through
    /// its `_into` function where it has one; each difference is prefixed
    /// with `context()` (which case it was).
    fn record(
        &mut self,
        key: String,
        (input, call): (&Tensor, &Call),
        fused: &Answer,
        reference: &Answer,
        context: impl Fn() -> String,
    ) -> Result<()> {
        let (before, into_before) = (self.plain.diffs.len(), self.into.diffs.len());
        self.plain.record(key.clone(), fused, reference)?;
        if let Some(answer) = call.run_into(input, reference) {
            self.into.record(key, &answer, reference)?;
        }
        for (t, before) in [(&mut self.plain, before), (&mut self.into, into_before)] {
            if t.diffs.len() > before {
                let last = t.diffs.pop().unwrap_or_default();
                t.diffs.push(format!("{}: {last}", context()));
            }
        }
        Ok(())
    }

    fn print(&self, what: &str) {
        self.plain.print(what);
        self.into
            .print(&format!("{what}, into the caller's output"));
    }

    /// Fails when a case differed on either path; `what` names the cases.
    fn assert_identical(&self, what: &str) {
        assert!(
            self.plain.diffs.is_empty() && self.into.diffs.is_empty(),
            "{} {what} differ, {} through the _into functions",
            self.plain.diffs.len(),
            self.into.diffs.len()
        );
    }
}

#[test]
fn fused_path_is_bit_identical_on_random_cases() -> Result<()> {
    let seed = seed();
    let count = case_count();
    println!("fused identity: seed {seed} (TCH_QUANT_FUSED_SEED), {count} cases");
    let mut rng = Rng(seed);
    let mut tallies = Tallies::default();
    let mut drawn = 0usize;
    while tallies.plain.total() < count {
        drawn += 1;
        // One case in 500 is large enough to be split over threads.
        let big = drawn % 500 == 7;
        let Some((input, call, edges)) = random_case(&mut rng, big)? else {
            continue;
        };
        let fused = call.run(&input, false);
        let reference = call.run(&input, true);
        tallies.plain.record_edges(&input, &call, edges, &reference);
        let key = format!("{}/{:?}/{}", call.name(), input.kind(), call.semantics());
        tallies.record(key, (&input, &call), &fused, &reference, || {
            let (kind, size) = (input.kind(), input.size());
            format!("case {drawn} (seed {seed}), input {kind:?} {size:?}, {call:?}")
        })?;
    }
    tallies.print("fused identity, random");
    tallies.assert_identical(&format!("random cases (seed {seed})"));
    Ok(())
}

fn parse_call(oracle: &replay::Oracle, case: &Value) -> Result<Option<(Tensor, Call)>> {
    let a = &case["args"];
    let op = case["op"].as_str().context("op")?;
    let opt_f64 = |v: &Value| v.as_f64();
    let opt_kind = |v: &Value| v.as_str().map(replay::kind_from_name).transpose();
    let domain: ZeroPointDomain = a["zero_point_domain"].as_str().unwrap_or("INT").parse()?;
    let block = || replay::ints(&a["block_size"]);
    let mapping = || -> Result<MappingType> {
        Ok(a["mapping_type"]
            .as_str()
            .context("mapping_type")?
            .parse()?)
    };
    let qparams_options = || -> Result<QParamsOptions> {
        Ok(QParamsOptions {
            quant_min: opt_f64(&a["quant_min"]),
            quant_max: opt_f64(&a["quant_max"]),
            eps: opt_f64(&a["eps"]),
            scale_dtype: opt_kind(&a["scale_dtype"])?,
            zero_point_dtype: opt_kind(&a["zero_point_dtype"])?,
            preserve_zero: a["preserve_zero"].as_bool().unwrap_or(true),
            zero_point_domain: domain,
            force_reference: false,
            ..Default::default()
        })
    };
    let input = || -> Result<Tensor> {
        oracle
            .arg_tensor(case, "input", Device::Cpu)?
            .context("input")
    };
    Ok(Some(match op {
        "choose_qparams_affine" => (
            input()?,
            Call::Choose {
                mapping: mapping()?,
                block: block()?,
                dtype: replay::qdtype(&a["target_dtype"])?,
                options: qparams_options()?,
            },
        ),
        "chain" => (
            input()?,
            Call::Chain {
                mapping: mapping()?,
                block: block()?,
                dtype: replay::qdtype(&a["target_dtype"])?,
                options: qparams_options()?,
            },
        ),
        "quantize_affine" => (
            input()?,
            Call::Quantize {
                block: block()?,
                scale: oracle
                    .arg_tensor(case, "scale", Device::Cpu)?
                    .context("scale")?,
                zero_point: oracle.arg_tensor(case, "zero_point", Device::Cpu)?,
                dtype: replay::qdtype(&a["output_dtype"])?,
                options: QuantizeOptions {
                    quant_min: opt_f64(&a["quant_min"]),
                    quant_max: opt_f64(&a["quant_max"]),
                    zero_point_domain: domain,
                    force_reference: false,
                    ..Default::default()
                },
            },
        ),
        _ => return Ok(None),
    }))
}

#[test]
fn fused_path_is_bit_identical_on_every_fixture_case() -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parity/fixtures");
    if !dir.join("cases.json").exists() {
        println!("fused identity, fixtures: none at {}", dir.display());
        return Ok(());
    }
    let oracle = replay::Oracle::load(&dir)?;
    let mut tallies = Tallies::default();
    for case in &oracle.cases {
        let id = case["id"].as_str().unwrap_or("?");
        let Some((input, call)) = parse_call(&oracle, case).with_context(|| id.to_string())? else {
            continue;
        };
        let fused = call.run(&input, false);
        let reference = call.run(&input, true);
        let key = format!("{}/{:?}", call.name(), input.kind());
        tallies.record(key, (&input, &call), &fused, &reference, || id.to_string())?;
    }
    tallies.print("fused identity, fixtures");
    if tallies.plain.total() == 0 || tallies.into.total() == 0 {
        bail!("the fixtures hold no choose, quantize or chain case");
    }
    tallies.assert_identical("fixture cases");
    Ok(())
}

#[test]
fn every_simd_level_is_bit_identical() -> Result<()> {
    if std::env::var_os("TCH_QUANT_SIMD").is_some() {
        // Already a child run at a capped level.
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let cases = (case_count() / 8).max(1000).to_string();
    for level in ["baseline", "avx2"] {
        let out = std::process::Command::new(&exe)
            .args([
                "fused_path_is_bit_identical_on_random_cases",
                "--exact",
                "--nocapture",
            ])
            .env("TCH_QUANT_SIMD", level)
            .env("TCH_QUANT_FUSED_CASES", &cases)
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        for line in stdout.lines().filter(|l| l.starts_with("fused identity")) {
            println!("[{level}] {line}");
        }
        if !out.status.success() {
            println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
            bail!("the fused path differs at SIMD level {level}");
        }
    }
    Ok(())
}

#[test]
fn an_infinite_block_gives_the_reference_nan_bits() -> Result<()> {
    // Issue 9: +inf and -inf in one block make the Float-domain zero point
    // -inf + inf = NaN, whose bfloat16 bits libtorch's vectorized cast
    // writes as 0xffff (the fused path used to write 0x7fc0).
    let mut v: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) / 8.0).collect();
    v[0] = f32::INFINITY;
    v[1] = f32::NEG_INFINITY;
    let x = Tensor::from_slice(&v).view([1, 32]);
    let options = QParamsOptions {
        quant_min: Some(0.0),
        quant_max: Some(15.0),
        eps: Some(1e-6),
        preserve_zero: false,
        zero_point_domain: ZeroPointDomain::Float,
        zero_point_dtype: Some(Kind::BFloat16),
        ..Default::default()
    };
    let call = |force_reference| {
        let o = QParamsOptions {
            force_reference,
            ..options
        };
        choose_qparams_affine(&x, MappingType::Asymmetric, &[1, 32], QuantDtype::Int32, &o)
    };
    let (fused, reference) = (call(false)?, call(true)?);
    let zp = |qp: &tch_quant::QParams| replay::raw_bytes(qp.zero_point.as_ref().unwrap());
    assert_eq!(zp(&reference)?, [0xff, 0xff]);
    assert_eq!(zp(&fused)?, zp(&reference)?);
    assert_eq!(
        replay::raw_bytes(&fused.scale)?,
        replay::raw_bytes(&reference.scale)?
    );
    Ok(())
}

// ===========================================================================
// dequantize_affine (issue 14): the fused dequantize against the reference
// path, on plain codes (every fixture case and seeded random cases) and on
// packed sub-byte codes (`AffineQuantizedTensor::dequantize_as` against
// unpacking first and dequantizing on the reference path).
//
// `TCH_QUANT_DEQUANTIZE_CASES` sets the number of random plain cases
// (default 20000; the packed test runs a quarter as many); the seed is
// `TCH_QUANT_FUSED_SEED`'s, as above.
// ===========================================================================

use tch_quant::{
    dequantize_affine, dequantize_affine_into, AffineQuantizedTensor, QuantizedParts, StorageLayout,
};

/// One dequantize call, on either path.
#[derive(Debug)]
struct DequantizeCall {
    block: Vec<i64>,
    scale: Tensor,
    zero_point: Option<Tensor>,
    dtype: QuantDtype,
    options: QuantizeOptions,
    output: Kind,
}

impl DequantizeCall {
    fn run(&self, codes: &Tensor, reference: bool) -> Answer {
        let options = QuantizeOptions {
            force_reference: reference,
            ..self.options
        };
        let x = dequantize_affine(
            codes,
            &self.block,
            &self.scale,
            self.zero_point.as_ref(),
            self.dtype,
            &options,
            self.output,
        )?;
        Ok(vec![Some(x)])
    }

    /// The call through `dequantize_affine_into`, into a contiguous output
    /// first filled with NaN (so that an element left unwritten shows).
    fn run_into(&self, codes: &Tensor, reference: bool) -> Answer {
        let options = QuantizeOptions {
            force_reference: reference,
            ..self.options
        };
        let mut out = Tensor::full(codes.size(), f64::NAN, (self.output, codes.device()));
        dequantize_affine_into(
            codes,
            &self.block,
            &self.scale,
            self.zero_point.as_ref(),
            self.dtype,
            &options,
            &mut out,
        )?;
        Ok(vec![Some(out)])
    }
}

fn dequantize_case_count() -> usize {
    std::env::var("TCH_QUANT_DEQUANTIZE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000)
}

/// The smallest and largest value of an integer dtype.
fn int_range(kind: Kind) -> (i64, i64) {
    match kind {
        Kind::Uint8 => (0, 255),
        Kind::Int8 => (-128, 127),
        Kind::Int16 => (-32768, 32767),
        Kind::Int => (i32::MIN as i64, i32::MAX as i64),
        _ => (i64::MIN, i64::MAX),
    }
}

/// Integer values of `kind` (exactly representable), drawn over the quant
/// range, the whole dtype and its extremes.
fn random_ints(rng: &mut Rng, n: usize, kind: Kind, quant: (f64, f64)) -> Result<Tensor> {
    let (lo, hi) = int_range(kind);
    let (qlo, qhi) = (quant.0 as i64, quant.1 as i64);
    let regime = rng.below(4);
    let draw = |rng: &mut Rng, lo: i64, hi: i64| -> i64 {
        let span = (hi as i128 - lo as i128 + 1) as u128;
        (lo as i128 + (rng.next() as u128 % span) as i128) as i64
    };
    let v: Vec<i64> = (0..n)
        .map(|_| match (regime, rng.below(16)) {
            (_, 0) => lo,
            (_, 1) => hi,
            (0, _) | (1, 2..=12) => draw(rng, qlo, qhi),
            (2, _) => draw(rng, lo, hi),
            _ => rng.pick(&[0, 1, -1, qlo, qhi, lo, hi]).clamp(lo, hi),
        })
        .collect();
    Ok(Tensor::from_slice(&v).f_to_kind(kind)?)
}

/// Scale values: ordinary, powers of two, zero of both signs, negative,
/// subnormal and huge; infinities and NaN only when `special`.
fn random_scales(rng: &mut Rng, n: usize, kind: Kind, special: bool) -> Result<Tensor> {
    let (tiny, huge) = match kind {
        Kind::Half => (5.96e-8, [65504.0, 30000.0, 1000.0, 256.0]),
        _ => (1e-40, [3.0e38, 4e37, 1e30, 1e10]),
    };
    let v: Vec<f64> = (0..n)
        .map(|_| match rng.below(if special { 14 } else { 12 }) {
            // Zero scales (in one block in 24, which with a float16 output
            // and wide codes can make NaN and send the call to the
            // reference path).
            0 | 1 if rng.chance(0.5) => 1.0,
            0 => 0.0,
            1 => -0.0,
            2 => -2f64.powi(rng.below(10) as i32 - 5),
            3 => rng.pick(&[tiny, tiny * 3.0, 1e-30, 6.1e-5]),
            4 => rng.pick(&huge),
            5..=7 => 2f64.powi(rng.below(30) as i32 - 15),
            12 => rng.pick(&[f64::INFINITY, f64::NEG_INFINITY]),
            13 => f64::NAN,
            _ => rng.unit() * 2f64.powi(rng.below(20) as i32 - 10),
        })
        .collect();
    Ok(Tensor::from_slice(&v).f_to_kind(kind)?)
}

/// Zero points of `kind`: inside the quant range, fractional, the dtype's
/// extremes, -0.0, huge; infinities and NaN only when `special`.
fn random_zero_points(
    rng: &mut Rng,
    n: usize,
    kind: Kind,
    quant: (f64, f64),
    special: bool,
) -> Result<Tensor> {
    if matches!(
        kind,
        Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64
    ) {
        let (lo, hi) = int_range(kind);
        let (lo, hi) = match kind {
            Kind::Int64 => (-(1i64 << 40), 1 << 40),
            _ => (lo, hi),
        };
        let qlo = quant.0.clamp(lo as f64, hi as f64) as i64;
        let qhi = quant.1.clamp(qlo as f64, hi as f64) as i64;
        let v: Vec<i64> = (0..n)
            .map(|_| match rng.below(10) {
                0 => lo,
                1 => hi,
                2 => rng
                    .pick(&[0, 257, -257, 65535, 70000, 1 << 25])
                    .clamp(lo, hi),
                _ => qlo + (rng.next() % ((qhi - qlo) as u64 + 1)) as i64,
            })
            .collect();
        return Ok(Tensor::from_slice(&v).f_to_kind(kind)?);
    }
    let (qlo, qhi) = quant;
    let v: Vec<f64> = (0..n)
        .map(|_| match rng.below(if special { 12 } else { 10 }) {
            0 => -0.0,
            1 => qlo + (rng.unit() * (qhi - qlo)).floor() + 0.5,
            2 => rng.normal() * 300.0,
            3 => rng.pick(&[1e10, -1e10, 3e9, -2147483648.0, 2147483648.0, 1e30, 65519.0]),
            10 => rng.pick(&[f64::INFINITY, f64::NEG_INFINITY]),
            11 => f64::NAN,
            _ => (qlo + (rng.unit() * (qhi - qlo + 1.0)).floor()).min(qhi),
        })
        .collect();
    Ok(Tensor::from_slice(&v).f_to_kind(kind)?)
}

/// One value per block of `block` over `shape`, sometimes flattened (size-1
/// dims do not matter to the functions).
fn qparams_shape(rng: &mut Rng, shape: &[i64], block: &[i64]) -> Vec<i64> {
    let per_dim: Vec<i64> = shape
        .iter()
        .zip(block)
        .map(|(s, b)| s / b.max(&1))
        .collect();
    if rng.chance(0.2) {
        per_dim.into_iter().filter(|&d| d != 1).collect()
    } else {
        per_dim
    }
}

const SCALE_KINDS: [Kind; 7] = [
    Kind::Float,
    Kind::Float,
    Kind::BFloat16,
    Kind::BFloat16,
    Kind::Half,
    Kind::Half,
    Kind::Double,
];
const ZERO_POINT_KINDS: [Kind; 10] = [
    Kind::Int,
    Kind::Int,
    Kind::Uint8,
    Kind::Int8,
    Kind::Int16,
    Kind::Int64,
    Kind::Float,
    Kind::BFloat16,
    Kind::Half,
    Kind::Double,
];

/// Scale, zero point and domain for codes of `shape` in blocks of `block`.
fn random_dequantize_qparams(
    rng: &mut Rng,
    shape: &[i64],
    block: &[i64],
    dtype: QuantDtype,
    quant: (f64, f64),
) -> Result<(Tensor, Option<Tensor>, ZeroPointDomain)> {
    let qshape = qparams_shape(rng, shape, block);
    let n: i64 = qshape.iter().product();
    let special = rng.chance(0.15);
    let scale_kind = rng.pick(&SCALE_KINDS);
    let scale = random_scales(rng, n as usize, scale_kind, special)?.f_reshape(&qshape)?;
    let domain = if dtype.is_float8() {
        rng.pick(&[ZeroPointDomain::Int, ZeroPointDomain::None])
    } else {
        rng.pick(&[
            ZeroPointDomain::Int,
            ZeroPointDomain::Int,
            ZeroPointDomain::Float,
            ZeroPointDomain::Float,
            ZeroPointDomain::None,
        ])
    };
    // Now and then a zero point where the domain takes none, or the other
    // way round: both paths must refuse the call alike.
    let with_zp = (domain != ZeroPointDomain::None) ^ rng.chance(0.01);
    let zero_point = if with_zp {
        let kind = rng.pick(&ZERO_POINT_KINDS);
        Some(random_zero_points(rng, n as usize, kind, quant, special)?.f_reshape(&qshape)?)
    } else {
        None
    };
    Ok((scale, zero_point, domain))
}

/// A semantics for a dequantize call with these qparams: under 0.18 (two
/// cases in five) its `dequantize_affine` takes the Int domain with an
/// optional zero point, so the domain becomes Int (now and then another,
/// refused on both paths alike) and a missing zero point is mostly drawn.
fn with_semantics(
    rng: &mut Rng,
    scale: &Tensor,
    zero_point: Option<Tensor>,
    domain: ZeroPointDomain,
    quant: (f64, f64),
) -> Result<(Option<Tensor>, ZeroPointDomain, Semantics)> {
    let semantics = random_semantics(rng);
    if semantics == Semantics::Torchao0_11 || rng.chance(0.03) {
        return Ok((zero_point, domain, semantics));
    }
    let zero_point = match zero_point {
        None if !rng.chance(0.3) => {
            let kind = rng.pick(&ZERO_POINT_KINDS);
            let zp = random_zero_points(rng, scale.numel(), kind, quant, false)?;
            Some(zp.f_reshape(scale.size())?)
        }
        zp => zp,
    };
    Ok((zero_point, ZeroPointDomain::Int, semantics))
}

/// A non-contiguous view of `t` with the same shape and values, or `t`.
fn maybe_strided(rng: &mut Rng, t: Tensor) -> Result<Tensor> {
    let shape = t.size();
    if shape.len() < 2 || !rng.chance(0.05) {
        return Ok(t);
    }
    let mut swapped = shape.clone();
    swapped.swap(0, 1);
    Ok(t.f_transpose(0, 1)?
        .f_contiguous()?
        .f_reshape(&swapped)?
        .f_transpose(0, 1)?)
}

/// One random plain dequantize case: codes and the call.
fn random_dequantize_case(rng: &mut Rng, big: bool) -> Result<(Tensor, DequantizeCall)> {
    let (shape, mut block) = layout(rng, big);
    if block.iter().all(|&b| b == 1) && !rng.chance(0.01) {
        // Blocks of one element are refused; keep a few to check that.
        block = shape.clone();
    }
    let dtype = if rng.chance(0.05) {
        rng.pick(&QuantDtype::ALL[18..])
    } else if rng.chance(0.5) {
        rng.pick(&[
            QuantDtype::Int8,
            QuantDtype::UInt8,
            QuantDtype::UInt4,
            QuantDtype::Int4,
            QuantDtype::Int16,
            QuantDtype::Int32,
        ])
    } else {
        rng.pick(&QuantDtype::ALL[..18])
    };
    let mut edges = Edges::default();
    let (quant_min, quant_max) = random_range(rng, dtype, &mut edges);
    let bounds = dtype.bounds();
    let quant = (quant_min.unwrap_or(bounds.0), quant_max.unwrap_or(bounds.1));
    let n: i64 = shape.iter().product();
    let storage = dtype.storage_kind();
    let codes = if dtype.is_float8() {
        let v: Vec<f64> = (0..n)
            .map(|_| {
                let regime = rng.below(8);
                value(rng, regime, 16.0, 0.01, Kind::Float)
            })
            .collect();
        Tensor::from_slice(&v).f_to_kind(storage)?
    } else if rng.chance(0.01) {
        // Codes of another dtype than the storage one: refused alike.
        random_ints(rng, n as usize, Kind::Int16, quant)?
    } else {
        random_ints(rng, n as usize, storage, quant)?
    };
    let codes = maybe_strided(rng, codes.f_reshape(&shape)?)?;
    let (scale, zero_point, domain) = random_dequantize_qparams(rng, &shape, &block, dtype, quant)?;
    let (zero_point, domain, semantics) = with_semantics(rng, &scale, zero_point, domain, quant)?;
    let call = DequantizeCall {
        block,
        scale,
        zero_point,
        dtype,
        options: QuantizeOptions {
            quant_min,
            quant_max,
            zero_point_domain: domain,
            force_reference: false,
            semantics,
        },
        output: rng.pick(&FLOATS),
    };
    Ok((codes, call))
}

/// A key for the tallies: code dtype, domain, scale and output dtypes.
fn dequantize_key(codes: &Tensor, call: &DequantizeCall) -> String {
    format!(
        "dequantize/{:?}/{}/{:?}->{:?}/{}",
        codes.kind(),
        call.options.zero_point_domain,
        call.scale.kind(),
        call.output,
        call.options.semantics
    )
}

/// Tallies of the dequantize tests: per key (cases, refused by both paths),
/// the differences, and the dtypes drawn.
#[derive(Default)]
struct DequantizeTally {
    inner: Tally,
    zero_point_kinds: BTreeSet<String>,
    code_kinds: BTreeSet<String>,
    nan_outputs: usize,
}

impl DequantizeTally {
    fn record(&mut self, what: String, fused: &Answer, reference: &Answer) -> Result<()> {
        let before = self.inner.diffs.len();
        let key = what.split(' ').next().unwrap_or("").to_string();
        self.inner.record(key, fused, reference)?;
        if self.inner.diffs.len() > before {
            let last = self.inner.diffs.pop().unwrap_or_default();
            self.inner.diffs.push(format!("{what}: {last}"));
        }
        if let Ok(out) = reference {
            if let Some(Some(x)) = out.first() {
                if x.f_isnan()?.f_any()?.int64_value(&[]) != 0 {
                    self.nan_outputs += 1;
                }
            }
        }
        Ok(())
    }

    /// Prints the counts, grouped by code dtype and by domain/output.
    fn print(&self, what: &str) {
        let t = &self.inner;
        println!(
            "{what}: {} cases, {} identical ({} with NaN in the output)",
            t.total(),
            t.total() - t.diffs.len(),
            self.nan_outputs
        );
        let mut groups: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (k, (n, err)) in &t.by_kind {
            let parts: Vec<&str> = k.split('/').collect();
            for g in [
                format!("codes {}", parts.get(1).unwrap_or(&"?")),
                format!("domain {}", parts.get(2).unwrap_or(&"?")),
                format!("scale/output {}", parts.get(3).unwrap_or(&"?")),
                format!("semantics {}", parts.get(4).unwrap_or(&"?")),
            ] {
                let e = groups.entry(g).or_default();
                e.0 += n;
                e.1 += err;
            }
        }
        for (g, (n, err)) in &groups {
            println!("  {g:<40} {n:>6} cases ({err} refused by both paths)");
        }
        println!(
            "  code dtypes: {}; zero-point dtypes: {}",
            self.code_kinds.len(),
            self.zero_point_kinds.len()
        );
        for d in t.diffs.iter().take(20) {
            println!("  DIFF {d}");
        }
    }

    fn note_kinds(&mut self, codes: Kind, zero_point: Option<&Tensor>) {
        self.code_kinds.insert(format!("{codes:?}"));
        if let Some(z) = zero_point {
            self.zero_point_kinds.insert(format!("{:?}", z.kind()));
        }
    }
}

#[test]
fn fused_dequantize_is_bit_identical_on_random_cases() -> Result<()> {
    let seed = seed();
    let count = dequantize_case_count();
    println!("fused dequantize identity: seed {seed} (TCH_QUANT_FUSED_SEED), {count} cases");
    let mut rng = Rng(seed ^ 0xDE0);
    let (mut tally, mut into) = (DequantizeTally::default(), DequantizeTally::default());
    for drawn in 0..count {
        // One case in 500 is large enough to be split over threads.
        let big = drawn % 500 == 7;
        let (codes, call) = random_dequantize_case(&mut rng, big)?;
        tally.note_kinds(codes.kind(), call.zero_point.as_ref());
        into.note_kinds(codes.kind(), call.zero_point.as_ref());
        let fused = call.run(&codes, false);
        let reference = call.run(&codes, true);
        let what = format!(
            "{} case {drawn} (seed {seed}), codes {:?} {:?}, {call:?}",
            dequantize_key(&codes, &call),
            codes.kind(),
            codes.size()
        );
        tally.record(what.clone(), &fused, &reference)?;
        into.record(what, &call.run_into(&codes, false), &reference)?;
    }
    tally.print("fused dequantize identity, random");
    into.print("fused dequantize identity, random, into an output");
    assert!(
        tally.inner.diffs.is_empty() && into.inner.diffs.is_empty(),
        "{} random dequantize cases differ, {} into an output (seed {seed})",
        tally.inner.diffs.len(),
        into.inner.diffs.len()
    );
    Ok(())
}

/// Codes of a short-run layout (see [`short_run_layout`]) and a call.
fn random_short_run_dequantize(rng: &mut Rng, big: bool) -> Result<(Tensor, DequantizeCall)> {
    let (shape, block) = short_run_layout(rng, big);
    let dtype = rng.pick(&[
        QuantDtype::Int8,
        QuantDtype::UInt8,
        QuantDtype::UInt4,
        QuantDtype::Int4,
        QuantDtype::Int16,
        QuantDtype::Int32,
    ]);
    let mut edges = Edges::default();
    let (quant_min, quant_max) = random_range(rng, dtype, &mut edges);
    let bounds = dtype.bounds();
    let quant = (quant_min.unwrap_or(bounds.0), quant_max.unwrap_or(bounds.1));
    let n: i64 = shape.iter().product();
    let codes = random_ints(rng, n as usize, dtype.storage_kind(), quant)?.f_reshape(&shape)?;
    let (scale, zero_point, domain) = random_dequantize_qparams(rng, &shape, &block, dtype, quant)?;
    let (zero_point, domain, semantics) = with_semantics(rng, &scale, zero_point, domain, quant)?;
    let call = DequantizeCall {
        block,
        scale,
        zero_point,
        dtype,
        options: QuantizeOptions {
            quant_min,
            quant_max,
            zero_point_domain: domain,
            force_reference: false,
            semantics,
        },
        output: rng.pick(&FLOATS),
    };
    Ok((codes, call))
}

/// The short-run kernels of the dequantize (tall, narrow codes per column,
/// tiny blocks, 4-D blocks), allocating and into an output.
#[test]
fn fused_dequantize_is_bit_identical_on_short_run_layouts() -> Result<()> {
    let seed = seed();
    let count = (dequantize_case_count() / 8).max(1000);
    println!("fused dequantize identity, short runs: seed {seed}, {count} cases");
    let mut rng = Rng(seed ^ 0x5407);
    let (mut tally, mut into) = (DequantizeTally::default(), DequantizeTally::default());
    for drawn in 0..count {
        let big = drawn % 100 == 3;
        let (codes, call) = random_short_run_dequantize(&mut rng, big)?;
        tally.note_kinds(codes.kind(), call.zero_point.as_ref());
        into.note_kinds(codes.kind(), call.zero_point.as_ref());
        let fused = call.run(&codes, false);
        let reference = call.run(&codes, true);
        let what = format!(
            "{} case {drawn} (seed {seed}), codes {:?} {:?}, {call:?}",
            dequantize_key(&codes, &call),
            codes.kind(),
            codes.size()
        );
        tally.record(what.clone(), &fused, &reference)?;
        into.record(what, &call.run_into(&codes, false), &reference)?;
    }
    tally.print("fused dequantize identity, short runs");
    into.print("fused dequantize identity, short runs, into an output");
    assert!(
        tally.inner.diffs.is_empty() && into.inner.diffs.is_empty(),
        "{} short-run dequantize cases differ, {} into an output (seed {seed})",
        tally.inner.diffs.len(),
        into.inner.diffs.len()
    );
    Ok(())
}

#[test]
fn fused_dequantize_is_bit_identical_on_every_fixture_case() -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parity/fixtures");
    if !dir.join("cases.json").exists() {
        println!(
            "fused dequantize identity, fixtures: none at {}",
            dir.display()
        );
        return Ok(());
    }
    let oracle = replay::Oracle::load(&dir)?;
    let mut tally = DequantizeTally::default();
    for case in &oracle.cases {
        if case["op"].as_str() != Some("dequantize_affine") {
            continue;
        }
        let id = case["id"].as_str().unwrap_or("?");
        let a = &case["args"];
        let codes = oracle
            .arg_tensor(case, "input", Device::Cpu)?
            .context("input")?;
        let call = DequantizeCall {
            block: replay::ints(&a["block_size"])?,
            scale: oracle
                .arg_tensor(case, "scale", Device::Cpu)?
                .context("scale")?,
            zero_point: oracle.arg_tensor(case, "zero_point", Device::Cpu)?,
            dtype: replay::qdtype(&a["input_dtype"])?,
            options: QuantizeOptions {
                quant_min: a["quant_min"].as_f64(),
                quant_max: a["quant_max"].as_f64(),
                zero_point_domain: a["zero_point_domain"].as_str().unwrap_or("INT").parse()?,
                force_reference: false,
                ..Default::default()
            },
            output: replay::kind_from_name(a["output_dtype"].as_str().unwrap_or("float32"))?,
        };
        tally.note_kinds(codes.kind(), call.zero_point.as_ref());
        let fused = call.run(&codes, false);
        let reference = call.run(&codes, true);
        tally.record(
            format!("{} {id}", dequantize_key(&codes, &call)),
            &fused,
            &reference,
        )?;
    }
    tally.print("fused dequantize identity, fixtures");
    if tally.inner.total() == 0 {
        bail!("the fixtures hold no dequantize case");
    }
    assert!(
        tally.inner.diffs.is_empty(),
        "{} fixture dequantize cases differ",
        tally.inner.diffs.len()
    );
    Ok(())
}

/// A shape whose last dim packs (a multiple of 8) and a block size over it.
fn packed_layout(rng: &mut Rng, big: bool) -> (Vec<i64>, Vec<i64>) {
    let line = if big {
        rng.pick(&[1024, 4096])
    } else {
        let most = if rng.chance(0.3) { 64 } else { 6 };
        8 * (1 + rng.below(most)) as i64
    };
    let rows = if big {
        rng.pick(&[64, 256, 512])
    } else {
        1 + rng.below(12) as i64
    };
    let mut shape = match rng.below(3) {
        0 => vec![line],
        1 => vec![rows, line],
        _ => vec![1 + rng.below(3) as i64, rows, line],
    };
    if big && shape.len() == 1 {
        shape.insert(0, rows);
    }
    let last = shape.len() - 1;
    let block = match rng.below(5) {
        // Per tensor.
        0 => shape.clone(),
        // Per row.
        1 => shape
            .iter()
            .enumerate()
            .map(|(i, &s)| if i == last { s } else { 1 })
            .collect(),
        // Per group along the last dim.
        2 => {
            let g = rng.pick(&divisors(line));
            shape
                .iter()
                .enumerate()
                .map(|(i, _)| if i == last { g } else { 1 })
                .collect()
        }
        // Per axis: one dim kept.
        3 => {
            let keep = rng.below(shape.len());
            shape
                .iter()
                .enumerate()
                .map(|(i, &s)| if i == keep { 1 } else { s })
                .collect()
        }
        _ => shape.iter().map(|&s| rng.pick(&divisors(s))).collect(),
    };
    (shape, block)
}

/// A packed quantized tensor: codes in `[0, 2^bits - 1]` of a dtype that
/// packs, random qparams.
fn random_packed(rng: &mut Rng, big: bool) -> Result<Option<AffineQuantizedTensor>> {
    let bits = 1 + rng.below(7) as u32;
    let unsigned = [
        QuantDtype::UInt1,
        QuantDtype::UInt2,
        QuantDtype::UInt3,
        QuantDtype::UInt4,
        QuantDtype::UInt5,
        QuantDtype::UInt6,
        QuantDtype::UInt7,
    ][bits as usize - 1];
    let top = ((1u32 << bits) - 1) as f64;
    let dtype = rng.pick(&[
        unsigned,
        unsigned,
        QuantDtype::Int32,
        QuantDtype::UInt8,
        QuantDtype::Int16,
        QuantDtype::Int8,
    ]);
    let (quant_min, quant_max) = if rng.chance(0.2) {
        let a = rng.below(top as usize + 1) as f64;
        let b = rng.below(top as usize + 1) as f64;
        (a.min(b), a.max(b))
    } else {
        (0.0, top.min(dtype.bounds().1))
    };
    let (shape, block) = packed_layout(rng, big);
    let n: i64 = shape.iter().product();
    let codes = random_ints(rng, n as usize, Kind::Uint8, (0.0, top))?
        .f_clamp(0, top as i64)?
        .f_to_kind(dtype.storage_kind())?
        .f_reshape(&shape)?;
    let (scale, zero_point, domain) =
        random_dequantize_qparams(rng, &shape, &block, dtype, (quant_min, quant_max))?;
    let parts = QuantizedParts {
        qdata: vec![codes],
        scale,
        zero_point,
        block_size: block,
        mapping_type: MappingType::Asymmetric,
        target_dtype: dtype,
        quant_min,
        quant_max,
        eps: 1e-6,
        preserve_zero: true,
        zero_point_domain: domain,
        shape,
        dtype: rng.pick(&FLOATS),
        layout: StorageLayout::Plain,
    };
    let Ok(plain) = AffineQuantizedTensor::from_parts(parts) else {
        return Ok(None);
    };
    Ok(Some(plain.pack(bits)?))
}

#[test]
fn fused_packed_dequantize_is_bit_identical_to_unpacking_first() -> Result<()> {
    let seed = seed();
    let count = (dequantize_case_count() / 4).max(1000);
    println!("fused packed dequantize identity: seed {seed} (TCH_QUANT_FUSED_SEED), {count} cases");
    let mut rng = Rng(seed ^ 0xBACC);
    let mut tally = DequantizeTally::default();
    let mut into_tally = DequantizeTally::default();
    let mut drawn = 0usize;
    while tally.inner.total() < count {
        drawn += 1;
        let big = drawn % 250 == 7;
        let Some(q) = random_packed(&mut rng, big)? else {
            continue;
        };
        let StorageLayout::Packed { bits, .. } = q.layout() else {
            bail!("pack left the codes plain");
        };
        let output = rng.pick(&FLOATS);
        let codes = q.codes()?;
        tally.note_kinds(codes.kind(), q.zero_point());
        into_tally.note_kinds(codes.kind(), q.zero_point());
        let (quant_min, quant_max) = q.quant_range();
        let reference = dequantize_affine(
            &codes,
            q.block_size(),
            q.scale(),
            q.zero_point(),
            q.target_dtype(),
            &QuantizeOptions {
                quant_min: Some(quant_min),
                quant_max: Some(quant_max),
                zero_point_domain: q.zero_point_domain(),
                force_reference: true,
                ..Default::default()
            },
            output,
        )
        .map(|x| vec![Some(x)]);
        let fused = q.dequantize_as(output).map(|x| vec![Some(x)]);
        let mut out = Tensor::full(q.shape(), f64::NAN, (output, Device::Cpu));
        let into = q.dequantize_into(&mut out).map(|()| vec![Some(out)]);
        let what = format!(
            "packed/uint{bits}/{}/{:?}->{output:?} case {drawn} (seed {seed}), shape {:?}, \
             block {:?}, {:?}, scale {:?}, zero point {:?}",
            q.zero_point_domain(),
            q.scale().kind(),
            q.shape(),
            q.block_size(),
            q.target_dtype(),
            q.scale(),
            q.zero_point()
        );
        tally.record(what.clone(), &fused, &reference)?;
        into_tally.record(what, &into, &reference)?;
    }
    tally.print("fused packed dequantize identity, random");
    into_tally.print("fused packed dequantize identity, random, into an output");
    assert!(
        tally.inner.diffs.is_empty() && into_tally.inner.diffs.is_empty(),
        "{} packed dequantize cases differ, {} into an output (seed {seed})",
        tally.inner.diffs.len(),
        into_tally.inner.diffs.len()
    );
    Ok(())
}

#[test]
fn every_simd_level_dequantizes_bit_identically() -> Result<()> {
    if std::env::var_os("TCH_QUANT_SIMD").is_some() {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let cases = (dequantize_case_count() / 8).max(1000).to_string();
    for level in ["baseline", "avx2"] {
        for test in [
            "fused_dequantize_is_bit_identical_on_random_cases",
            "fused_packed_dequantize_is_bit_identical_to_unpacking_first",
            "fused_dequantize_is_bit_identical_on_short_run_layouts",
        ] {
            let out = std::process::Command::new(&exe)
                .args([test, "--exact", "--nocapture"])
                .env("TCH_QUANT_SIMD", level)
                .env("TCH_QUANT_DEQUANTIZE_CASES", &cases)
                .output()?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            for line in stdout.lines().filter(|l| l.starts_with("fused")) {
                println!("[{level}] {line}");
            }
            if !out.status.success() {
                println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
                bail!("the fused dequantize differs at SIMD level {level}");
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Layouts of the short-run kernels (issue 14): tall, narrow inputs reduced
// per column (kept runs of a few elements, and the choose that splits the
// reduced dim over threads), many tiny blocks (reduced runs of 2 to 7
// elements) and 4-D blocks. The random generator above rarely draws enough
// rows for these paths, so they get their own seeded cases.

/// A shape and block of one of the short-run layouts; `big` makes the input
/// large enough to be split over threads.
fn short_run_layout(rng: &mut Rng, big: bool) -> (Vec<i64>, Vec<i64>) {
    let rows = if big {
        rng.pick(&[1 << 16, 3 << 15, 100_003])
    } else {
        1 + rng.below(700) as i64
    };
    match rng.below(5) {
        // Tall and narrow, per column.
        0 => {
            let k = 1 + rng.below(12) as i64;
            (vec![rows, k], vec![rows, 1])
        }
        // Tall and narrow under a kept outer dim: [A, R, k] per (A, k).
        1 => {
            let k = 1 + rng.below(9) as i64;
            let a = 1 + rng.below(3) as i64;
            let r = (rows / a).max(1);
            (vec![a, r, k], vec![1, r, 1])
        }
        // Tiny groups along the last dim, sometimes spanning rows too.
        2 => {
            let len = 2 + rng.below(6) as i64;
            let cols = len * (1 + rng.below(40) as i64);
            let r = if rng.chance(0.3) { 2 } else { 1 };
            let rows = (rows / 8).max(1) * r;
            (vec![rows, cols], vec![r, len])
        }
        // 4-D blocks.
        _ => {
            let shape: Vec<i64> = if big {
                vec![8, 32, 32, 64]
            } else {
                (0..4).map(|_| rng.pick(&[1, 2, 3, 4, 6, 8, 16])).collect()
            };
            let block = shape.iter().map(|&s| rng.pick(&divisors(s))).collect();
            (shape, block)
        }
    }
}

/// A shape and its block size, drawn (`big`: large enough to be split over
/// threads).
type LayoutGen = fn(&mut Rng, bool) -> (Vec<i64>, Vec<i64>);

/// What a seeded layout test draws and how it names itself: its test fn
/// (rerun as a child at the narrower SIMD levels), its label in the printed
/// counts, the seed's salt, the share of `case_count()` it runs, how often a
/// big input is drawn, the shape generator, and whether it tallies the edge
/// values it hit.
struct LayoutCases {
    test: &'static str,
    label: &'static str,
    noun: &'static str,
    salt: u64,
    share: usize,
    big: (usize, usize),
    layout: LayoutGen,
    tally_edges: bool,
}

/// Choose, quantize and choose+quantize calls on `cases.layout`'s shapes,
/// fused against the reference path bit for bit, at every SIMD level.
fn run_layout_cases(cases: LayoutCases) -> Result<()> {
    // A child run at a capped level gets the parent's seed as is.
    let seed = match std::env::var_os("TCH_QUANT_SIMD") {
        Some(_) => seed(),
        None => seed() ^ cases.salt,
    };
    let count = (case_count() / cases.share).max(1000);
    println!(
        "fused identity, {}: seed {seed}, {count} cases",
        cases.label
    );
    let mut rng = Rng(seed);
    let mut tallies = Tallies::default();
    let mut drawn = 0usize;
    while tallies.plain.total() < count {
        drawn += 1;
        let big = drawn % cases.big.0 == cases.big.1;
        let kind = rng.pick(&FLOATS);
        let (shape, block) = (cases.layout)(&mut rng, big);
        let mut edges = Edges::default();
        let input = random_input(&mut rng, &shape, kind, &mut edges)?;
        let (mapping, dtype, options) = random_choose(&mut rng, kind, &mut edges);
        let call = match rng.below(3) {
            0 => Call::Choose {
                mapping,
                block,
                dtype,
                options,
            },
            1 => {
                let Some((scale, zero_point)) =
                    random_qparams(&mut rng, &input, &block, mapping, dtype, &options)?
                else {
                    continue;
                };
                Call::Quantize {
                    block,
                    scale,
                    zero_point,
                    dtype,
                    options: QuantizeOptions {
                        quant_min: options.quant_min,
                        quant_max: options.quant_max,
                        zero_point_domain: options.zero_point_domain,
                        force_reference: false,
                        ..Default::default()
                    },
                }
            }
            _ => Call::Chain {
                mapping,
                block,
                dtype,
                options,
            },
        };
        let fused = call.run(&input, false);
        let reference = call.run(&input, true);
        if cases.tally_edges {
            tallies.plain.record_edges(&input, &call, edges, &reference);
        }
        let key = format!("{}/{:?}/{}", call.name(), input.kind(), call.semantics());
        tallies.record(key, (&input, &call), &fused, &reference, || {
            let (kind, size) = (input.kind(), input.size());
            format!("case {drawn} (seed {seed}), input {kind:?} {size:?}, {call:?}")
        })?;
    }
    tallies.print(&format!("fused identity, {}", cases.label));
    tallies.assert_identical(&format!("{} cases (seed {seed})", cases.noun));
    if std::env::var_os("TCH_QUANT_SIMD").is_none() {
        // The same cases at the narrower SIMD levels, as
        // `every_simd_level_is_bit_identical` does for the cases above.
        for level in ["baseline", "avx2"] {
            let out = std::process::Command::new(std::env::current_exe()?)
                .args([cases.test, "--exact", "--nocapture"])
                .env("TCH_QUANT_SIMD", level)
                .env("TCH_QUANT_FUSED_SEED", seed.to_string())
                .output()?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            for line in stdout.lines().filter(|l| l.starts_with("fused identity")) {
                println!("[{level}] {line}");
            }
            if !out.status.success() {
                println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
                bail!(
                    "the fused path differs on {} at SIMD level {level}",
                    cases.label
                );
            }
        }
    }
    Ok(())
}

#[test]
fn fused_path_is_bit_identical_on_short_run_layouts() -> Result<()> {
    run_layout_cases(LayoutCases {
        test: "fused_path_is_bit_identical_on_short_run_layouts",
        label: "short runs",
        noun: "short-run",
        salt: 0x005e_ed14,
        share: 8,
        big: (100, 3),
        layout: short_run_layout,
        tally_edges: false,
    })
}

// ---------------------------------------------------------------------------
// The layout paths of issue 14's layouts goal: per-column reductions whose
// row width divides the register width (folded into lanes that stay in
// registers), tiny blocks along the last dim (their qparams computed a tile
// at a time) and 4-D blocks, each drawn often enough that every SIMD level
// runs each path, with the input generator's edge values (ties, -0.0,
// subnormals, infinities, huge values, NaN).

/// A shape and block of one of the layout paths; `big` makes the input
/// large enough to be split over threads.
fn layout_path(rng: &mut Rng, big: bool) -> (Vec<i64>, Vec<i64>) {
    let rows = if big {
        rng.pick(&[1 << 16, 3 << 15, 100_003])
    } else {
        1 + rng.below(3000) as i64
    };
    match rng.below(4) {
        // Tall and narrow, per column, the width dividing 32.
        0 => {
            let k = rng.pick(&[2, 4, 8, 16, 32]);
            (vec![rows, k], vec![rows, 1])
        }
        // The same under a kept outer dim: [A, R, k] per (A, k).
        1 => {
            let k = rng.pick(&[2, 4, 8, 16, 32]);
            let a = 1 + rng.below(3) as i64;
            let r = (rows / a).max(1);
            (vec![a, r, k], vec![1, r, 1])
        }
        // Tiny blocks along the last dim.
        2 => {
            let len = rng.pick(&[2, 3, 4, 8]);
            let cols = len * (1 + rng.below(64) as i64);
            (vec![(rows / 4).max(1), cols], vec![1, len])
        }
        // 4-D blocks whose folded copies are 16 to 64 elements (the
        // register fold): 4 reduced rows of `last / run` runs of `run`.
        3 if rng.chance(0.5) => {
            let last = rng.pick(&[16, 32, 48, 64]);
            let run = rng.pick(&[2, 4, 8, 16].map(|r| r.min(last)));
            let a = 2 * (1 + rng.below(3) as i64);
            let b = 1 + rng.below(if big { 64 } else { 3 }) as i64;
            let c = 4 * (1 + rng.below(4) as i64);
            (vec![a, b, c, last], vec![2, 1, 4, run])
        }
        // 4-D blocks, small and large.
        _ => {
            let shape: Vec<i64> = if big {
                vec![4, 16, 64, 64]
            } else {
                (0..4).map(|_| rng.pick(&[1, 2, 4, 8, 16, 32])).collect()
            };
            let block = shape.iter().map(|&s| rng.pick(&divisors(s))).collect();
            (shape, block)
        }
    }
}

#[test]
fn fused_path_is_bit_identical_on_layout_paths() -> Result<()> {
    run_layout_cases(LayoutCases {
        test: "fused_path_is_bit_identical_on_layout_paths",
        label: "layout paths",
        noun: "layout-path",
        salt: 0x1a70_0014,
        share: 10,
        big: (150, 7),
        layout: layout_path,
        tally_edges: false,
    })
}

/// A shape and block size for the long-run kernels of `minmax.rs` and
/// `avx512.rs`: groups of whole registers (32 bfloat16 to an AVX-512
/// register) in batches of 32 consecutive runs and more, with leftover
/// runs; rows; the whole tensor.
fn long_run_layout(rng: &mut Rng, big: bool) -> (Vec<i64>, Vec<i64>) {
    let g = rng.pick(&[32, 64, 96, 128, 160, 256]);
    let cols = g * rng.pick(&[1, 2, 3, 4, 8, 16]);
    let rows = if big {
        rng.pick(&[512, 1024, 2048])
    } else {
        1 + rng.below(80) as i64
    };
    match rng.below(4) {
        0 | 1 => (vec![rows, cols], vec![1, g]),
        2 => (vec![rows, cols], vec![1, cols]),
        _ => {
            let n = if big {
                rows * cols
            } else {
                1 + rng.below(5000) as i64
            };
            (vec![n], vec![n])
        }
    }
}

#[test]
fn fused_path_is_bit_identical_on_long_run_kernels() -> Result<()> {
    run_layout_cases(LayoutCases {
        test: "fused_path_is_bit_identical_on_long_run_kernels",
        label: "long runs",
        noun: "long-run",
        salt: 0x10_96_4e,
        share: 8,
        big: (100, 3),
        layout: long_run_layout,
        tally_edges: true,
    })
}
