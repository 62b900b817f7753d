//! Replays torchao 0.18.0 oracle records (`tests/ao18/oracle.py`, format in
//! its docstring) through the crate under `Semantics::Torchao0_18`, on the
//! fused path and on the reference path (`force_reference`), comparing
//! every output byte for byte (`store::compare`). A record torchao refused
//! must be refused by the crate too.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use tch::{Kind, Tensor};
use tch_quant::{
    choose_qparams_affine, choose_qparams_affine_dont_preserve_zero,
    choose_qparams_affine_tinygemm, choose_qparams_affine_with_min_max,
    choose_qparams_and_quantize_affine, dequantize_affine, dequantize_affine_into,
    dequantize_affine_no_zero_point, dequantize_affine_tinygemm, fake_quantize_affine,
    fake_quantize_affine_cachemask, quantize_affine, quantize_affine_no_zero_point,
    quantize_affine_tinygemm, MappingType, QParamsOptions, QuantDtype, QuantizeOptions, Semantics,
    ZeroPointDomain,
};

use crate::store::{compare, Store};

pub use crate::store::kind_of;

/// Loads an oracle directory and checks the versions that made it.
pub fn load(dir: &std::path::Path) -> Result<Store> {
    let store = Store::load(dir, kind_of)?;
    if store.torch.split('+').next() != Some("2.13.0") || store.torchao != "0.18.0" {
        bail!(
            "{} was made by torch {} / torchao {}, not 2.13.0 / 0.18.0",
            dir.display(),
            store.torch,
            store.torchao
        );
    }
    Ok(store)
}

/// What a replay found: records compared, records identical on both paths,
/// the first differences, and the refusals the crate shares with torchao
/// but reports as a libtorch error ([`tch_quant::Error::Torch`]) rather than
/// one naming the argument.
pub struct Report {
    pub total: usize,
    pub identical: usize,
    pub diffs: Vec<String>,
    pub torch_refusals: Vec<String>,
}

/// What one record's replay on one path found.
enum Verdict {
    /// The crate did what torchao did.
    Same,
    /// Both refused, the crate with a libtorch error (the message).
    SameTorchRefusal(String),
    /// The first difference.
    Diff(String),
}

/// `t` copied into a fresh contiguous CPU tensor (an output's strides are
/// not part of the contract; `store::compare` reads raw bytes and needs a
/// unit last stride, which a size-1 dim of a strided output need not have).
fn dense(t: &Tensor) -> Result<Tensor> {
    tch::no_grad(|| {
        let mut d = Tensor::f_empty(t.size(), (t.kind(), tch::Device::Cpu))?;
        d.f_copy_(t)?;
        Ok(d)
    })
}

/// The message of a caught panic.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Replays every record of `store` on both paths.
pub fn replay_all(store: &Store) -> Result<Report> {
    let codes_of: HashMap<&str, &str> = store
        .cases
        .iter()
        .filter(|c| c["fn"] == "quantize_affine" && c["expected"]["ok"] == true)
        .filter_map(|c| {
            Some((
                c["id"].as_str()?,
                c["expected"]["outputs"]["codes"].as_str()?,
            ))
        })
        .collect();
    let mut report = Report {
        total: 0,
        identical: 0,
        diffs: Vec::new(),
        torch_refusals: Vec::new(),
    };
    for case in &store.cases {
        report.total += 1;
        let id = case["id"].as_str().unwrap_or("?");
        let mut ok = true;
        for force_reference in [false, true] {
            let path = if force_reference {
                "reference"
            } else {
                "fused"
            };
            let codes = codes_of.get(id).map(|k| &store.tensors[*k]);
            // A panic is a failure of the contract, reported with its message.
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                check(store, case, force_reference, codes)
            }))
            .unwrap_or_else(|p| Ok(Verdict::Diff(format!("panicked: {}", panic_message(&*p)))));
            match run {
                Ok(Verdict::Same) => {}
                Ok(Verdict::SameTorchRefusal(e)) => {
                    report
                        .torch_refusals
                        .push(format!("{id} {} ({path}): {e}", case["fn"]));
                }
                Ok(Verdict::Diff(d)) => {
                    ok = false;
                    report
                        .diffs
                        .push(format!("{id} {} ({path}): {d}", case["fn"]));
                }
                Err(e) => {
                    ok = false;
                    report.diffs.push(format!(
                        "{id} {} ({path}): replay failed: {e:#}",
                        case["fn"]
                    ));
                }
            }
        }
        report.identical += ok as usize;
    }
    Ok(report)
}

struct Args<'a>(&'a Value);

impl Args<'_> {
    fn f64_opt(&self, k: &str) -> Option<f64> {
        self.0[k].as_f64()
    }
    fn str(&self, k: &str) -> Result<&str> {
        self.0[k].as_str().with_context(|| format!("arg {k}"))
    }
    fn block(&self) -> Result<Vec<i64>> {
        Ok(serde_json::from_value(self.0["block_size"].clone())?)
    }
    fn dtype(&self) -> Result<QuantDtype> {
        Ok(self.str("dtype")?.parse()?)
    }
    fn kind_opt(&self, k: &str) -> Result<Option<Kind>> {
        self.0[k].as_str().map(kind_of).transpose()
    }
    fn choose_options(&self, force_reference: bool) -> Result<QParamsOptions> {
        Ok(QParamsOptions {
            quant_min: self.f64_opt("quant_min"),
            quant_max: self.f64_opt("quant_max"),
            eps: self.f64_opt("eps"),
            scale_dtype: self.kind_opt("scale_dtype")?,
            zero_point_dtype: self.kind_opt("zero_point_dtype")?,
            keepdim: self.0["keepdim"].as_bool().unwrap_or(false),
            force_reference,
            semantics: Semantics::Torchao0_18,
            ..QParamsOptions::default()
        })
    }
    fn quantize_options(&self, force_reference: bool) -> Result<QuantizeOptions> {
        let domain = match self.0["zero_point_domain"].as_str() {
            Some(d) => d.parse()?,
            None => ZeroPointDomain::Int,
        };
        Ok(QuantizeOptions {
            quant_min: self.f64_opt("quant_min"),
            quant_max: self.f64_opt("quant_max"),
            zero_point_domain: domain,
            force_reference,
            semantics: Semantics::Torchao0_18,
        })
    }
}

/// The crate's outputs of one record, by the oracle's output names.
type Outputs = Vec<(&'static str, Option<Tensor>)>;

/// `None` when the crate does what torchao did for `case`, else the first
/// difference. `codes`: the codes torchao's `quantize_affine` gave with the
/// qparams of this (choose) record, to check the one-pass chain with.
fn check(
    store: &Store,
    case: &Value,
    force_reference: bool,
    codes: Option<&Tensor>,
) -> Result<Verdict> {
    let input = |k: &str| -> Result<Option<&Tensor>> {
        match case["inputs"][k].as_str() {
            Some(key) => Ok(Some(
                store
                    .tensors
                    .get(key)
                    .with_context(|| format!("tensor {key}"))?,
            )),
            None => Ok(None),
        }
    };
    let need = |k: &str| -> Result<&Tensor> { input(k)?.ok_or_else(|| anyhow!("input {k}")) };
    let a = Args(&case["args"]);
    let f = case["fn"].as_str().context("fn")?;
    let expected_ok = case["expected"]["ok"] == true;
    let block = a.block()?;
    let dtype = a.dtype()?;
    let mapping: Option<MappingType> = case["args"]["mapping_type"]
        .as_str()
        .map(str::parse)
        .transpose()?;
    let out = a.kind_opt("output_dtype")?;
    let choose_o = a.choose_options(force_reference)?;
    let quant_o = a.quantize_options(force_reference)?;
    let mut tensors: HashMap<&str, Option<&Tensor>> = HashMap::new();
    for k in ["input", "scale", "zero_point", "min_val", "max_val"] {
        tensors.insert(k, input(k)?);
    }
    let got: tch_quant::Result<Outputs> = (|| {
        let qp = |qp: tch_quant::QParams| -> Outputs {
            vec![("scale", Some(qp.scale)), ("zero_point", qp.zero_point)]
        };
        fn missing<T>(id: &Value) -> T {
            panic!("malformed case {id}")
        }
        let id = &case["id"];
        let t = |k: &str| -> tch_quant::Result<&Tensor> {
            Ok(tensors[k].unwrap_or_else(|| missing(id)))
        };
        let opt = |k: &str| -> tch_quant::Result<Option<&Tensor>> { Ok(tensors[k]) };
        let mapping =
            || -> tch_quant::Result<MappingType> { Ok(mapping.unwrap_or_else(|| missing(id))) };
        let out_kind = || -> tch_quant::Result<Kind> { Ok(out.unwrap_or_else(|| missing(id))) };
        let (block, dtype) = (block.clone(), dtype);
        Ok(match f {
            "choose_qparams_affine" => {
                let o = choose_o;
                qp(choose_qparams_affine(
                    t("input")?,
                    mapping()?,
                    &block,
                    dtype,
                    &o,
                )?)
            }
            "choose_qparams_affine_tinygemm" => {
                let o = choose_o;
                qp(choose_qparams_affine_tinygemm(
                    t("input")?,
                    mapping()?,
                    &block,
                    dtype,
                    &o,
                )?)
            }
            "choose_qparams_affine_dont_preserve_zero" => {
                let o = choose_o;
                qp(choose_qparams_affine_dont_preserve_zero(
                    t("input")?,
                    mapping()?,
                    &block,
                    dtype,
                    &o,
                )?)
            }
            "choose_qparams_affine_with_min_max" => {
                let o = choose_o;
                qp(choose_qparams_affine_with_min_max(
                    t("min_val")?,
                    t("max_val")?,
                    mapping()?,
                    &block,
                    dtype,
                    &o,
                )?)
            }
            "quantize_affine" | "quantize_affine_tinygemm" | "quantize_affine_no_zero_point" => {
                let o = quant_o;
                let (x, s, z) = (t("input")?, t("scale")?, opt("zero_point")?);
                let q = match f {
                    "quantize_affine" => quantize_affine(x, &block, s, z, dtype, &o)?,
                    "quantize_affine_tinygemm" => {
                        quantize_affine_tinygemm(x, &block, s, z, dtype, &o)?
                    }
                    _ => quantize_affine_no_zero_point(x, &block, s, dtype, &o)?,
                };
                vec![("codes", Some(q))]
            }
            "dequantize_affine" => {
                let o = quant_o;
                let (c, s, z) = (t("input")?, t("scale")?, opt("zero_point")?);
                let kind = out_kind()?;
                let x = dequantize_affine(c, &block, s, z, dtype, &o, kind)?;
                let mut into = Tensor::empty(c.size(), (kind, c.device()));
                dequantize_affine_into(c, &block, s, z, dtype, &o, &mut into)?;
                vec![("values", Some(x)), ("values", Some(into))]
            }
            "dequantize_affine_tinygemm" => {
                let o = quant_o;
                let (c, s, z) = (t("input")?, t("scale")?, opt("zero_point")?);
                let x = dequantize_affine_tinygemm(c, &block, s, z, dtype, &o, out_kind()?)?;
                vec![("values", Some(x))]
            }
            "dequantize_affine_no_zero_point" => {
                let o = quant_o;
                let x = dequantize_affine_no_zero_point(
                    t("input")?,
                    &block,
                    t("scale")?,
                    dtype,
                    &o,
                    out_kind()?,
                )?;
                vec![("values", Some(x))]
            }
            "fake_quantize_affine" => {
                let o = quant_o;
                let (x, s, z) = (t("input")?, t("scale")?, opt("zero_point")?);
                vec![(
                    "values",
                    Some(fake_quantize_affine(x, &block, s, z, dtype, &o)?),
                )]
            }
            "fake_quantize_affine_cachemask" => {
                let o = quant_o;
                let (x, s, z) = (t("input")?, t("scale")?, opt("zero_point")?);
                let (v, m) = fake_quantize_affine_cachemask(x, &block, s, z, dtype, &o)?;
                vec![("values", Some(v)), ("mask", Some(m))]
            }
            other => panic!("unknown fn {other}"),
        })
    })();
    let fn_name = f;
    // Every refusal is a typed error that names the op.
    if let Err(e) = &got {
        let msg = e.to_string();
        let op = fn_name.trim_end_matches("_cachemask");
        if !msg.contains(op) {
            return Ok(Verdict::Diff(format!(
                "the error does not name {op}: {msg}"
            )));
        }
    }
    if let Some(why) = case["crate_refuses"].as_str() {
        return Ok(match got {
            Err(_) => Verdict::Same,
            Ok(_) => Verdict::Diff(format!("the crate should refuse ({why}) but computed")),
        });
    }
    let got = match (got, expected_ok) {
        (Ok(g), true) => g,
        (Err(e @ tch_quant::Error::Torch { .. }), false) => {
            return Ok(Verdict::SameTorchRefusal(e.to_string()))
        }
        (Err(_), false) => return Ok(Verdict::Same),
        (Ok(_), false) => {
            return Ok(Verdict::Diff(format!(
                "torchao refused ({}) but the crate computed",
                case["expected"]["error"]
            )))
        }
        (Err(e), true) => {
            return Ok(Verdict::Diff(format!(
                "torchao computed, the crate refused: {e}"
            )))
        }
    };
    let outputs = &case["expected"]["outputs"];
    for (name, t) in &got {
        let want = outputs[*name].as_str().map(|k| &store.tensors[k]);
        match (want, t) {
            (None, None) => {}
            (Some(w), Some(g)) => {
                if let Some(d) = compare(w, &dense(g)?)? {
                    return Ok(Verdict::Diff(format!("{name}: {d}")));
                }
            }
            (w, _) => {
                return Ok(Verdict::Diff(format!(
                    "{name}: expected {}, got {}",
                    if w.is_some() { "a tensor" } else { "None" },
                    if t.is_some() { "a tensor" } else { "None" }
                )))
            }
        }
    }
    if let (Some(codes), "choose_qparams_affine") = (codes, f) {
        // The one-pass chain: the same qparams and torchao's codes.
        let o = a.choose_options(force_reference)?;
        let (qp, q) = choose_qparams_and_quantize_affine(
            need("input")?,
            a.str("mapping_type")?.parse()?,
            &a.block()?,
            a.dtype()?,
            &o,
        )?;
        for (name, g) in [
            ("scale", Some(&qp.scale)),
            ("zero_point", qp.zero_point.as_ref()),
        ] {
            let w = outputs[name].as_str().map(|k| &store.tensors[k]);
            if let (Some(w), Some(g)) = (w, g) {
                if let Some(d) = compare(w, g)? {
                    return Ok(Verdict::Diff(format!("chain {name}: {d}")));
                }
            }
        }
        if let Some(d) = compare(codes, &q)? {
            return Ok(Verdict::Diff(format!("chain codes: {d}")));
        }
    }
    Ok(Verdict::Same)
}
