//! Replays oracle cases (see `tests/parity/README.md`) through the crate and
//! compares every output with torchao's, bit for bit.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use tch::{Device, Kind, Tensor};
use tch_quant::{
    MappingType, QParams, QParamsOptions, QuantDtype, QuantizeOptions, ZeroPointDomain,
};

/// A loaded oracle file: tensors by key, and the cases.
pub struct Oracle {
    tensors: HashMap<String, Tensor>,
    pub cases: Vec<Value>,
    pub torch: String,
    pub torchao: String,
}

/// What happened to one case.
pub enum Outcome {
    Identical,
    Differs(String),
}

impl Oracle {
    pub fn load(dir: &Path) -> Result<Self> {
        let s = crate::store::Store::load(dir, kind_from_name)?;
        Ok(Oracle {
            tensors: s.tensors,
            cases: s.cases,
            torch: s.torch,
            torchao: s.torchao,
        })
    }

    fn tensor(&self, case: &Value, name: &str, device: Device) -> Result<Option<Tensor>> {
        match case["inputs"].get(name).and_then(Value::as_str) {
            None => Ok(None),
            Some(key) => {
                let t = self
                    .tensors
                    .get(key)
                    .with_context(|| format!("tensor {key}"))?;
                Ok(Some(t.f_to_device(device)?))
            }
        }
    }

    fn input(&self, case: &Value, name: &str, device: Device) -> Result<Tensor> {
        self.tensor(case, name, device)?
            .with_context(|| format!("input {name} missing"))
    }

    /// Runs one case on `device` and compares it with the expectation.
    pub fn replay(&self, case: &Value, device: Device) -> Result<Outcome> {
        let got = self.run(case, device)?;
        let expected = &case["expected"];
        let ok = expected["ok"].as_bool().context("expected.ok")?;
        Ok(match (ok, got) {
            (false, Err(_)) => Outcome::Identical,
            (false, Ok(_)) => Outcome::Differs(format!(
                "torchao/crate refuses ({}), the crate returned a value",
                expected["error"]
            )),
            (true, Err(e)) => Outcome::Differs(format!("crate error: {e}")),
            (true, Ok(outputs)) => {
                let mut diffs = Vec::new();
                let exp = expected["outputs"].as_object().context("outputs")?;
                for (name, key) in exp {
                    let mine = outputs.iter().find(|(n, _)| n == name).map(|(_, t)| t);
                    match (key.as_str(), mine) {
                        (None, None | Some(None)) => {}
                        (Some(key), Some(Some(t))) => {
                            let want = &self.tensors[key];
                            if let Some(d) = compare(want, t)? {
                                diffs.push(format!("{name}: {d}"));
                            }
                        }
                        (k, m) => diffs.push(format!(
                            "{name}: expected {}, crate gave {}",
                            if k.is_some() { "a tensor" } else { "None" },
                            if matches!(m, Some(Some(_))) {
                                "a tensor"
                            } else {
                                "None"
                            }
                        )),
                    }
                }
                if diffs.is_empty() {
                    Outcome::Identical
                } else {
                    Outcome::Differs(diffs.join("; "))
                }
            }
        })
    }

    /// Calls the crate for one case. The outer error is a harness failure,
    /// the inner one the crate's answer.
    fn run(&self, case: &Value, dev: Device) -> Result<CrateAnswer> {
        let a = &case["args"];
        let op = case["op"].as_str().context("op")?;
        let out = |pairs: Vec<(&str, Option<Tensor>)>| {
            pairs
                .into_iter()
                .map(|(n, t)| (n.to_string(), t))
                .collect::<Vec<_>>()
        };
        let qp_out = |qp: QParams| {
            out(vec![
                ("scale", Some(qp.scale)),
                ("zero_point", qp.zero_point),
            ])
        };
        Ok(match op {
            "choose_qparams_affine" => tch_quant::choose_qparams_affine(
                &self.input(case, "input", dev)?,
                mapping(a)?,
                &ints(&a["block_size"])?,
                qdtype(&a["target_dtype"])?,
                &qparams_options(a)?,
            )
            .map(qp_out),
            "choose_qparams_affine_with_min_max" => tch_quant::choose_qparams_affine_with_min_max(
                &self.input(case, "min_val", dev)?,
                &self.input(case, "max_val", dev)?,
                mapping(a)?,
                &ints(&a["block_size"])?,
                qdtype(&a["target_dtype"])?,
                &qparams_options(a)?,
            )
            .map(qp_out),
            "quantize_affine" => tch_quant::quantize_affine(
                &self.input(case, "input", dev)?,
                &ints(&a["block_size"])?,
                &self.input(case, "scale", dev)?,
                self.tensor(case, "zero_point", dev)?.as_ref(),
                qdtype(&a["output_dtype"])?,
                &quantize_options(a)?,
            )
            .map(|t| out(vec![("output", Some(t))])),
            "dequantize_affine" => tch_quant::dequantize_affine(
                &self.input(case, "input", dev)?,
                &ints(&a["block_size"])?,
                &self.input(case, "scale", dev)?,
                self.tensor(case, "zero_point", dev)?.as_ref(),
                qdtype(&a["input_dtype"])?,
                &quantize_options(a)?,
                kind_from_name(a["output_dtype"].as_str().unwrap_or("float32"))?,
            )
            .map(|t| out(vec![("output", Some(t))])),
            "fake_quantize_affine" => tch_quant::fake_quantize_affine(
                &self.input(case, "input", dev)?,
                &ints(&a["block_size"])?,
                &self.input(case, "scale", dev)?,
                self.tensor(case, "zero_point", dev)?.as_ref(),
                qdtype(&a["quant_dtype"])?,
                &quantize_options(a)?,
            )
            .map(|t| out(vec![("output", Some(t))])),
            "fake_quantize_affine_cachemask" => tch_quant::fake_quantize_affine_cachemask(
                &self.input(case, "input", dev)?,
                &ints(&a["block_size"])?,
                &self.input(case, "scale", dev)?,
                self.tensor(case, "zero_point", dev)?.as_ref(),
                qdtype(&a["quant_dtype"])?,
                &quantize_options(a)?,
            )
            .map(|(t, m)| out(vec![("output", Some(t)), ("mask", Some(m))])),
            "chain" => chain(&self.input(case, "input", dev)?, a)?.map(out),
            other => return crate::extra_ops::run(self, case, other, dev),
        })
    }

    /// Public accessor for ops replayed outside this file.
    pub fn arg_tensor(&self, case: &Value, name: &str, device: Device) -> Result<Option<Tensor>> {
        self.tensor(case, name, device)
    }
}

type Named = Vec<(&'static str, Option<Tensor>)>;

/// Named outputs of one crate call, or the crate's error.
pub type CrateAnswer = std::result::Result<Vec<(String, Option<Tensor>)>, tch_quant::Error>;

fn chain(input: &Tensor, a: &Value) -> Result<std::result::Result<Named, tch_quant::Error>> {
    let block = ints(&a["block_size"])?;
    let dtype = qdtype(&a["target_dtype"])?;
    let qopts = qparams_options(a)?;
    let opts = QuantizeOptions {
        quant_min: qopts.quant_min,
        quant_max: qopts.quant_max,
        zero_point_domain: qopts.zero_point_domain,
        ..Default::default()
    };
    let out_kind = kind_from_name(a["output_dtype"].as_str().unwrap_or("float32"))?;
    let mapping = mapping(a)?;
    let run = || -> std::result::Result<Named, tch_quant::Error> {
        let qp = tch_quant::choose_qparams_affine(input, mapping, &block, dtype, &qopts)?;
        let codes = tch_quant::quantize_affine(
            input,
            &block,
            &qp.scale,
            qp.zero_point.as_ref(),
            dtype,
            &opts,
        )?;
        let output = tch_quant::dequantize_affine(
            &codes,
            &block,
            &qp.scale,
            qp.zero_point.as_ref(),
            dtype,
            &opts,
            out_kind,
        )?;
        Ok(vec![
            ("scale", Some(qp.scale)),
            ("zero_point", qp.zero_point),
            ("codes", Some(codes)),
            ("output", Some(output)),
        ])
    };
    Ok(run())
}

/// `None` when `got` has the dtype, shape and bits of `want` (NaN of any
/// payload equal to NaN), otherwise a description of the first difference.
pub fn compare(want: &Tensor, got: &Tensor) -> Result<Option<String>> {
    let got = got.f_to_device(Device::Cpu)?;
    if got.kind() != want.kind() {
        return Ok(Some(format!(
            "dtype {:?}, expected {:?}",
            got.kind(),
            want.kind()
        )));
    }
    if got.size() != want.size() {
        return Ok(Some(format!(
            "shape {:?}, expected {:?}",
            got.size(),
            want.size()
        )));
    }
    if raw_bytes(&got)? == raw_bytes(want)? {
        return Ok(None);
    }
    if matches!(
        want.kind(),
        Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double
    ) {
        let w = Vec::<f64>::try_from(want.f_to_kind(Kind::Double)?.f_reshape([-1])?)?;
        let g = Vec::<f64>::try_from(got.f_to_kind(Kind::Double)?.f_reshape([-1])?)?;
        let first = w
            .iter()
            .zip(&g)
            .position(|(a, b)| !(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())));
        return Ok(first.map(|i| format!("element {i}: {} != expected {}", g[i], w[i])));
    }
    let w = raw_bytes(want)?;
    let g = raw_bytes(&got)?;
    let i = w.iter().zip(&g).position(|(a, b)| a != b).unwrap_or(0);
    Ok(Some(format!("byte {i}: {} != expected {}", g[i], w[i])))
}

/// The bytes of a tensor as stored (bool as one byte each), NaN payloads
/// included.
pub fn raw_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let flat = t.f_contiguous()?.f_reshape([-1])?;
    let flat = if flat.kind() == Kind::Bool {
        flat.f_to_kind(Kind::Uint8)?
    } else {
        flat
    };
    Ok(Vec::<u8>::try_from(flat.f_view_dtype(Kind::Uint8)?)?)
}

pub use crate::store::kind_of as kind_from_name;

pub fn ints(v: &Value) -> Result<Vec<i64>> {
    v.as_array()
        .context("expected a list")?
        .iter()
        .map(|x| x.as_i64().ok_or_else(|| anyhow!("not an int: {x}")))
        .collect()
}

pub fn qdtype(v: &Value) -> Result<QuantDtype> {
    Ok(v.as_str().context("dtype name")?.parse()?)
}

fn mapping(a: &Value) -> Result<MappingType> {
    Ok(a["mapping_type"]
        .as_str()
        .context("mapping_type")?
        .parse()?)
}

fn domain(a: &Value) -> Result<ZeroPointDomain> {
    Ok(a["zero_point_domain"].as_str().unwrap_or("INT").parse()?)
}

/// JSON has no NaN or infinity; the oracle writes them as strings.
fn opt_f64(v: &Value) -> Option<f64> {
    match v.as_str() {
        Some("nan") => Some(f64::NAN),
        Some("inf") => Some(f64::INFINITY),
        Some("-inf") => Some(f64::NEG_INFINITY),
        _ => v.as_f64(),
    }
}

fn opt_kind(v: &Value) -> Result<Option<Kind>> {
    v.as_str().map(kind_from_name).transpose()
}

fn qparams_options(a: &Value) -> Result<QParamsOptions> {
    Ok(QParamsOptions {
        quant_min: opt_f64(&a["quant_min"]),
        quant_max: opt_f64(&a["quant_max"]),
        eps: opt_f64(&a["eps"]),
        scale_dtype: opt_kind(&a["scale_dtype"])?,
        zero_point_dtype: opt_kind(&a["zero_point_dtype"])?,
        preserve_zero: a["preserve_zero"].as_bool().unwrap_or(true),
        zero_point_domain: domain(a)?,
        ..Default::default()
    })
}

fn quantize_options(a: &Value) -> Result<QuantizeOptions> {
    Ok(QuantizeOptions {
        quant_min: opt_f64(&a["quant_min"]),
        quant_max: opt_f64(&a["quant_max"]),
        zero_point_domain: domain(a)?,
        ..Default::default()
    })
}

/// Replays every case on `device`; returns (cases, identical, report of the
/// differing ones).
pub fn replay_all(oracle: &Oracle, device: Device) -> Result<(usize, usize, Vec<String>)> {
    let mut identical = 0;
    let mut diffs = Vec::new();
    for case in &oracle.cases {
        let id = case["id"].as_str().unwrap_or("?");
        match oracle
            .replay(case, device)
            .with_context(|| format!("case {id}"))?
        {
            Outcome::Identical => identical += 1,
            Outcome::Differs(d) => diffs.push(format!("{id}: {d}")),
        }
    }
    Ok((oracle.cases.len(), identical, diffs))
}
