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
/// is quantized in pieces of rows): differences and each piece's sums in
/// float32 (ample for a report in dB), the sums of pieces in float64.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorSums {
    signal: f64,
    noise: f64,
    /// NaN once any difference is NaN.
    max_abs: f64,
}

impl ErrorSums {
    /// Adds the error of `restored` against `original` (same shape): six
    /// passes over a piece and no temporary larger than its float32 copy.
    pub fn add(&mut self, original: &Tensor, restored: &Tensor) -> Result<(), tch::TchError> {
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
            self.max_abs = if lo.is_nan() || hi.is_nan() || self.max_abs.is_nan() {
                f64::NAN
            } else {
                self.max_abs.max(-lo).max(hi)
            };
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
        let rows: Vec<[String; 7]> = self
            .tensors
            .iter()
            .filter_map(|r| match &r.outcome {
                TensorOutcome::Quantized {
                    block_size,
                    error,
                    bytes_after,
                    ..
                } => Some((r, block_size, error, bytes_after)),
                TensorOutcome::Copied { .. } => None,
            })
            .map(|(r, block_size, error, bytes_after)| {
                let block: Vec<usize> = block_size.iter().map(|&b| b as usize).collect();
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
                    error
                        .max_abs_error
                        .map_or("nan".into(), |v| format!("{v:.3e}")),
                    human_bytes(r.bytes_before),
                    human_bytes(*bytes_after),
                ]
            })
            .collect();
        if !rows.is_empty() {
            let _ = writeln!(out);
            write_table(
                &mut out,
                [
                    "tensor",
                    "shape",
                    "block",
                    "SQNR dB",
                    "max |err|",
                    "before",
                    "after",
                ],
                [
                    Align::Left,
                    Align::Left,
                    Align::Left,
                    Align::Right,
                    Align::Right,
                    Align::Right,
                    Align::Right,
                ],
                &rows,
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

    #[test]
    fn units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(dims(&[384, 1536]), "384x1536");
        assert_eq!(dims(&[]), "scalar");
    }
}
