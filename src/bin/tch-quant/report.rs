//! What a run did: per-tensor error and size, printed as a table for people
//! and written as JSON (`--report`) for scripts. Both come from one
//! [`Report`], so they never disagree.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use tch::{Kind, Tensor};

use crate::table::{write_table, Align};

/// Quantization error of one tensor.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ErrorStats {
    /// `10 log10(sum x^2 / sum (x - x')^2)`; `None` (JSON null) when the
    /// error is zero or the tensor holds NaN.
    pub sqnr_db: Option<f64>,
    /// `max |x - x'|`; `None` when NaN.
    pub max_abs_error: Option<f64>,
}

/// The sums behind [`ErrorStats`], added up piece by piece (a large tensor
/// is quantized in pieces of rows): each chunk's sums in float32 over 16
/// lanes (ample for a report in dB), the sums of chunks and pieces in
/// float64.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorSums {
    signal: f64,
    noise: f64,
    /// NaN once any difference is NaN.
    max_abs: f64,
}

/// Elements read per chunk: the two chunks' values stay in L2 and their
/// buffers are reused, so a report reads each piece once and allocates
/// nothing of its size (six libtorch passes over float32 copies of every
/// piece, each copy faulted in afresh, were a third of a checkpoint run's
/// time, issue 14).
const CHUNK: usize = 1 << 15;
/// Independent float32 accumulators, so that the loop vectorizes.
const LANES: usize = 16;

impl ErrorSums {
    /// Adds the error of `restored` against `original` (same shape): one
    /// pass over both, in chunks, for CPU float32/bfloat16/float16 tensors;
    /// libtorch ops on float32 copies otherwise.
    pub fn add(&mut self, original: &Tensor, restored: &Tensor) -> Result<(), tch::TchError> {
        let chunked = |t: &Tensor| {
            t.device() == tch::Device::Cpu
                && matches!(t.kind(), Kind::Float | Kind::BFloat16 | Kind::Half)
        };
        if chunked(original) && chunked(restored) && original.numel() == restored.numel() {
            return self.add_chunked(original, restored);
        }
        let x = original.f_to_kind(Kind::Float)?.f_reshape([-1])?;
        let diff = restored
            .f_to_kind(Kind::Float)?
            .f_reshape([-1])?
            .f_sub(&x)?;
        self.signal += x.f_dot(&x)?.f_double_value(&[])?;
        self.noise += diff.f_dot(&diff)?.f_double_value(&[])?;
        if diff.numel() > 0 {
            let (lo, hi) = diff.f_aminmax(None, false)?;
            let (lo, hi) = (lo.f_double_value(&[])?, hi.f_double_value(&[])?);
            self.add_max(if lo.is_nan() || hi.is_nan() {
                f64::NAN
            } else {
                (-lo).max(hi)
            });
        }
        Ok(())
    }

    fn add_max(&mut self, max_abs: f64) {
        self.max_abs = if max_abs.is_nan() || self.max_abs.is_nan() {
            f64::NAN
        } else {
            self.max_abs.max(max_abs)
        };
    }

    fn add_chunked(&mut self, original: &Tensor, restored: &Tensor) -> Result<(), tch::TchError> {
        let (x, r) = (original.f_reshape([-1])?, restored.f_reshape([-1])?);
        let numel = x.numel();
        let (mut xs, mut rs) = (vec![0f32; CHUNK], vec![0f32; CHUNK]);
        let (mut raw_x, mut raw_r) = (Raw::default(), Raw::default());
        for start in (0..numel).step_by(CHUNK) {
            let len = CHUNK.min(numel - start);
            raw_x.values(&x, start, len, &mut xs[..len])?;
            raw_r.values(&r, start, len, &mut rs[..len])?;
            let (signal, noise, max_abs) = chunk_sums(&xs[..len], &rs[..len]);
            self.signal += signal;
            self.noise += noise;
            // A NaN difference makes the noise NaN (its square is NaN).
            self.add_max(if noise.is_nan() { f64::NAN } else { max_abs });
        }
        Ok(())
    }

    pub fn stats(&self) -> ErrorStats {
        let sqnr = 10.0 * (self.signal / self.noise).log10();
        ErrorStats {
            sqnr_db: sqnr.is_finite().then_some(sqnr),
            max_abs_error: (!self.max_abs.is_nan()).then_some(self.max_abs),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TensorOutcome {
    Quantized {
        block_size: Vec<i64>,
        #[serde(flatten)]
        error: ErrorStats,
        /// With `--hqq`: the SQNR of the same recipe's plain min/max
        /// quantization of the same weight, which HQQ is measured against.
        #[serde(skip_serializing_if = "Option::is_none")]
        minmax_sqnr_db: Option<Option<f64>>,
        bytes_after: usize,
        outputs: Vec<String>,
    },
    Copied {
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct TensorReport {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: String,
    pub bytes_before: usize,
    #[serde(flatten)]
    pub outcome: TensorOutcome,
}

/// A summary row without its "vs min/max" column (the fifth).
fn without_gain<T>([a, b, c, d, _, f, g, h]: [T; 8]) -> [T; 7] {
    [a, b, c, d, f, g, h]
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub tensors: usize,
    pub quantized: usize,
    pub copied: usize,
    pub bytes_before: usize,
    pub bytes_after: usize,
    /// `bytes_before / bytes_after` over the whole checkpoint.
    pub compression_ratio: f64,
    pub quantized_bytes_before: usize,
    pub quantized_bytes_after: usize,
    /// The same over the quantized tensors alone.
    pub quantized_compression_ratio: Option<f64>,
    pub wall_time_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub torchao_version: &'static str,
    pub scheme: serde_json::Value,
    pub device: String,
    pub input: String,
    pub outputs: Vec<String>,
    pub tensors: Vec<TensorReport>,
    pub totals: Totals,
}

impl Report {
    /// Fills in the totals from the tensors.
    pub fn totals(tensors: &[TensorReport], wall_time_s: f64) -> Totals {
        let mut t = Totals {
            tensors: tensors.len(),
            quantized: 0,
            copied: 0,
            bytes_before: 0,
            bytes_after: 0,
            compression_ratio: 1.0,
            quantized_bytes_before: 0,
            quantized_bytes_after: 0,
            quantized_compression_ratio: None,
            wall_time_s,
        };
        for r in tensors {
            t.bytes_before += r.bytes_before;
            match &r.outcome {
                TensorOutcome::Quantized { bytes_after, .. } => {
                    t.quantized += 1;
                    t.bytes_after += bytes_after;
                    t.quantized_bytes_before += r.bytes_before;
                    t.quantized_bytes_after += bytes_after;
                }
                TensorOutcome::Copied { .. } => {
                    t.copied += 1;
                    t.bytes_after += r.bytes_before;
                }
            }
        }
        t.compression_ratio = ratio(t.bytes_before, t.bytes_after).unwrap_or(1.0);
        t.quantized_compression_ratio = ratio(t.quantized_bytes_before, t.quantized_bytes_after);
        t
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes") + "\n"
    }

    /// The human-readable summary.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let label = tch_quant::checkpoint::format::scheme_label(&self.scheme);
        let _ = writeln!(
            out,
            "tch-quant {}: {label} on {}",
            self.version, self.device
        );
        let _ = writeln!(out, "  input   {}", self.input);
        for o in &self.outputs {
            let _ = writeln!(out, "  output  {o}");
        }
        let mut gains = Vec::new();
        let rows: Vec<[String; 8]> = self
            .tensors
            .iter()
            .filter_map(|r| match &r.outcome {
                TensorOutcome::Quantized {
                    block_size,
                    error,
                    minmax_sqnr_db,
                    bytes_after,
                    ..
                } => Some((r, block_size, error, minmax_sqnr_db, bytes_after)),
                TensorOutcome::Copied { .. } => None,
            })
            .map(|(r, block_size, error, minmax, bytes_after)| {
                let block: Vec<usize> = block_size.iter().map(|&b| b as usize).collect();
                let gain = match (error.sqnr_db, minmax) {
                    (Some(hqq), Some(Some(plain))) => {
                        gains.push(hqq - plain);
                        format!("{:+.2}", hqq - plain)
                    }
                    _ => "-".into(),
                };
                [
                    r.name.clone(),
                    dims(&r.shape),
                    dims(&block),
                    error.sqnr_db.map_or_else(
                        // No SQNR: either no error at all, or NaN in the tensor.
                        || {
                            if error.max_abs_error == Some(0.0) {
                                "inf"
                            } else {
                                "nan"
                            }
                            .into()
                        },
                        |v| format!("{v:.2}"),
                    ),
                    gain,
                    error
                        .max_abs_error
                        .map_or("nan".into(), |v| format!("{v:.3e}")),
                    human_bytes(r.bytes_before),
                    human_bytes(*bytes_after),
                ]
            })
            .collect();
        let hqq = self.tensors.iter().any(|r| {
            matches!(
                r.outcome,
                TensorOutcome::Quantized {
                    minmax_sqnr_db: Some(_),
                    ..
                }
            )
        });
        if !rows.is_empty() {
            let header = [
                "tensor",
                "shape",
                "block",
                "SQNR dB",
                "vs min/max",
                "max |err|",
                "before",
                "after",
            ];
            let mut align = [Align::Right; 8];
            align[..3].fill(Align::Left);
            let _ = writeln!(out);
            if hqq {
                write_table(&mut out, header, align, &rows);
            } else {
                // Without HQQ there is no min/max baseline: no gain column.
                let rows: Vec<[String; 7]> = rows.into_iter().map(without_gain).collect();
                write_table(&mut out, without_gain(header), without_gain(align), &rows);
            }
        }
        if !gains.is_empty() {
            let mean = gains.iter().sum::<f64>() / gains.len() as f64;
            let (lo, hi) = gains
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &g| {
                    (lo.min(g), hi.max(g))
                });
            let _ = writeln!(
                out,
                "\nHQQ against plain min/max on the same weights: SQNR {mean:+.2} dB on average \
                 over {} tensors ({lo:+.2} to {hi:+.2})",
                gains.len()
            );
        }
        let mut by_reason: BTreeMap<&str, Vec<&TensorReport>> = BTreeMap::new();
        for r in &self.tensors {
            if let TensorOutcome::Copied { reason } = &r.outcome {
                by_reason.entry(reason).or_default().push(r);
            }
        }
        if !by_reason.is_empty() {
            let _ = writeln!(out, "\ncopied unchanged:");
            for (reason, tensors) in by_reason {
                let bytes: usize = tensors.iter().map(|r| r.bytes_before).sum();
                let _ = writeln!(
                    out,
                    "  {} tensor{} ({}): {reason}",
                    tensors.len(),
                    if tensors.len() == 1 { "" } else { "s" },
                    human_bytes(bytes)
                );
                for (pattern, members) in by_layer_pattern(&tensors) {
                    let first = members[0];
                    let uniform = members
                        .iter()
                        .all(|r| r.shape == first.shape && r.dtype == first.dtype);
                    let what = if uniform {
                        format!("{} {}", dims(&first.shape), first.dtype)
                    } else {
                        "various shapes".into()
                    };
                    let _ = match members.len() {
                        1 => writeln!(out, "    {}  {what}", first.name),
                        n => writeln!(out, "    {pattern}  {what}  (x{n})"),
                    };
                }
            }
        }
        let t = &self.totals;
        let _ = writeln!(
            out,
            "\ntotal: {} tensors, {} quantized, {} copied; {} -> {} ({:.2}x){}; {:.2} s",
            t.tensors,
            t.quantized,
            t.copied,
            human_bytes(t.bytes_before),
            human_bytes(t.bytes_after),
            t.compression_ratio,
            t.quantized_compression_ratio
                .map_or(String::new(), |r| format!(", quantized tensors {r:.2}x")),
            t.wall_time_s
        );
        out
    }
}

/// Groups names that differ only in their layer numbers
/// (`encoder.layer.*.output.dense.bias`), in order of first appearance, so
/// that a model's hundreds of biases take a few lines and every tensor is
/// still accounted for.
fn by_layer_pattern<'a>(tensors: &[&'a TensorReport]) -> Vec<(String, Vec<&'a TensorReport>)> {
    let mut groups: Vec<(String, Vec<&'a TensorReport>)> = Vec::new();
    for &r in tensors {
        let pattern = r
            .name
            .split('.')
            .map(|part| {
                if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
                    "*"
                } else {
                    part
                }
            })
            .collect::<Vec<_>>()
            .join(".");
        match groups.iter_mut().find(|(p, _)| *p == pattern) {
            Some((_, members)) => members.push(r),
            None => groups.push((pattern, vec![r])),
        }
    }
    groups
}

fn ratio(before: usize, after: usize) -> Option<f64> {
    (after > 0).then(|| before as f64 / after as f64)
}

/// `384x1536`; `scalar` for 0-d.
pub fn dims(shape: &[usize]) -> String {
    if shape.is_empty() {
        return "scalar".into();
    }
    shape
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("x")
}

/// Bytes in binary units: `1.5 MiB`.
pub fn human_bytes(n: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Reused buffers for a chunk's raw values in its tensor's own dtype.
#[derive(Default)]
struct Raw {
    float: Vec<f32>,
    half: Vec<i16>,
}

impl Raw {
    /// `out` = elements `start..start + out.len()` of the flat CPU tensor
    /// `t` (float32, bfloat16 or float16) as float32 (exact: both 16-bit
    /// dtypes widen exactly).
    fn values(
        &mut self,
        t: &Tensor,
        start: usize,
        len: usize,
        out: &mut [f32],
    ) -> Result<(), tch::TchError> {
        let part = t.f_narrow(0, start as i64, len as i64)?;
        match t.kind() {
            Kind::Float => {
                self.float.resize(len, 0.0);
                part.f_copy_data(&mut self.float, len)?;
                out.copy_from_slice(&self.float);
            }
            kind => {
                self.half.resize(len, 0);
                part.f_view_dtype(Kind::Int16)?
                    .f_copy_data(&mut self.half, len)?;
                for (o, &bits) in out.iter_mut().zip(&self.half) {
                    let bits = bits as u16;
                    *o = if kind == Kind::BFloat16 {
                        f32::from_bits((bits as u32) << 16)
                    } else {
                        half::f16::from_bits(bits).to_f32()
                    };
                }
            }
        }
        Ok(())
    }
}

/// `sum x^2`, `sum (r - x)^2` and `max |r - x|` of one chunk, in float32
/// over [`LANES`] accumulators.
fn chunk_sums(x: &[f32], r: &[f32]) -> (f64, f64, f64) {
    let (mut signal, mut noise, mut max) = ([0f32; LANES], [0f32; LANES], [0f32; LANES]);
    let (xc, rc) = (x.chunks_exact(LANES), r.chunks_exact(LANES));
    let (xt, rt) = (xc.remainder(), rc.remainder());
    for (xs, rs) in xc.zip(rc) {
        for l in 0..LANES {
            let d = rs[l] - xs[l];
            signal[l] += xs[l] * xs[l];
            noise[l] += d * d;
            let a = d.abs();
            max[l] = if a > max[l] { a } else { max[l] };
        }
    }
    for (l, (&xv, &rv)) in xt.iter().zip(rt).enumerate() {
        let d = rv - xv;
        signal[l] += xv * xv;
        noise[l] += d * d;
        max[l] = max[l].max(d.abs());
    }
    let sum = |a: [f32; LANES]| a.iter().map(|&v| v as f64).sum::<f64>();
    let max = max.iter().fold(0f64, |m, &v| m.max(v as f64));
    (sum(signal), sum(noise), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_stats(pieces: &[(&Tensor, &Tensor)]) -> ErrorStats {
        let mut sums = ErrorSums::default();
        for (x, y) in pieces {
            sums.add(x, y).unwrap();
        }
        sums.stats()
    }

    #[test]
    fn stats_of_known_error() {
        let x = Tensor::from_slice(&[3.0f32, 4.0]);
        let y = Tensor::from_slice(&[3.0f32, 3.5]);
        let s = error_stats(&[(&x, &y)]);
        assert!((s.sqnr_db.unwrap() - 10.0 * (25.0f64 / 0.25).log10()).abs() < 1e-12);
        assert_eq!(s.max_abs_error, Some(0.5));
        let exact = error_stats(&[(&x, &x)]);
        assert_eq!(exact.sqnr_db, None);
    }

    #[test]
    fn stats_add_up_over_pieces() {
        let (x1, x2) = (Tensor::from_slice(&[3.0f32]), Tensor::from_slice(&[4.0f32]));
        let (y1, y2) = (Tensor::from_slice(&[3.0f32]), Tensor::from_slice(&[3.5f32]));
        let s = error_stats(&[(&x1, &y1), (&x2, &y2)]);
        assert!((s.sqnr_db.unwrap() - 10.0 * (25.0f64 / 0.25).log10()).abs() < 1e-12);
        assert_eq!(s.max_abs_error, Some(0.5));
        let nan = Tensor::from_slice(&[f32::NAN]);
        let s = error_stats(&[(&x1, &y1), (&nan, &x1), (&x2, &y2)]);
        assert_eq!((s.sqnr_db, s.max_abs_error), (None, None));
    }

    /// The one-pass sums over chunks agree with libtorch's float64 ops (the
    /// path other dtypes take) on 16-bit and float32 tensors of a length
    /// that is a multiple of neither the lane count nor the chunk.
    #[test]
    fn chunked_sums_agree_with_libtorch() {
        tch::manual_seed(3);
        let n = 3 * CHUNK as i64 + 37;
        for kind in [Kind::Float, Kind::BFloat16, Kind::Half] {
            let x = Tensor::randn([n], (Kind::Float, tch::Device::Cpu)).to_kind(kind);
            let r = (&x + Tensor::randn([n], (Kind::Float, tch::Device::Cpu)) * 0.01).to_kind(kind);
            let fast = error_stats(&[(&x, &r)]);
            let slow = error_stats(&[(&x.to_kind(Kind::Double), &r.to_kind(Kind::Double))]);
            let (f, s) = (fast.sqnr_db.unwrap(), slow.sqnr_db.unwrap());
            assert!((f - s).abs() < 1e-3, "{kind:?}: {f} dB against {s} dB");
            assert_eq!(fast.max_abs_error, slow.max_abs_error, "{kind:?}");
        }
        let x = Tensor::from_slice(&[1.0f32, f32::INFINITY, 2.0]).to_kind(Kind::BFloat16);
        let s = error_stats(&[(&x, &x)]);
        assert_eq!((s.sqnr_db, s.max_abs_error), (None, None));
    }

    #[test]
    fn units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(dims(&[384, 1536]), "384x1536");
        assert_eq!(dims(&[]), "scalar");
    }
}
