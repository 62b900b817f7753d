//! Replays the GGUF and QQQ oracle's cases (`tests/gguf_qqq/oracle.py`,
//! the format of `tests/parity/README.md`) through the crate, and compares
//! every output with torchao's: same dtype, same shape, same bytes. Where
//! torchao refused (or tch-quant refuses on purpose), the crate must return
//! a typed error other than `Error::Torch`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::store::compare;
use tch::{Kind, Tensor};
use tch_quant::{
    choose_qparams_and_quantize_affine_qqq, choose_qparams_gguf, dequantize_affine_qqq,
    dequantize_gguf, gguf_weight_only, parse_kind, quantize_gguf, Error, GgufQParams, QuantDtype,
};

/// A loaded oracle file.
pub struct Oracle {
    tensors: HashMap<String, Tensor>,
    pub cases: Vec<Value>,
    pub torch: String,
    pub torchao: String,
}

/// Cases of one family: computed by torchao and identical in the crate,
/// refused by torchao (or on purpose) and refused by the crate with a
/// typed error.
#[derive(Default)]
pub struct Tally {
    pub computed: usize,
    pub identical: usize,
    pub refusals: usize,
    pub refused: usize,
}

/// Every case's outcome, by family (`gguf`, `qqq`) and by op.
#[derive(Default)]
pub struct Report {
    pub by_family: BTreeMap<&'static str, Tally>,
    pub by_op: BTreeMap<String, Tally>,
    pub diffs: Vec<String>,
}

impl Report {
    pub fn family(&self, name: &str) -> (usize, usize) {
        self.by_family.get(name).map_or((0, 0), |t| {
            (t.computed + t.refusals, t.identical + t.refused)
        })
    }

    /// Prints `family: N/N bit-identical, M/M refused` per family and op
    /// under `title`, and the first differences; fails on any difference.
    pub fn print_and_check(&self, title: &str) {
        println!("{title}:");
        for (name, t) in &self.by_family {
            println!(
                "  {name}: {}/{} bit-identical, {}/{} refused (typed errors)",
                t.identical, t.computed, t.refused, t.refusals
            );
        }
        for (name, t) in &self.by_op {
            println!(
                "    op {name}: {}/{} bit-identical, {}/{} refused",
                t.identical, t.computed, t.refused, t.refusals
            );
        }
        for d in self.diffs.iter().take(40) {
            println!("  DIFF {d}");
        }
        assert!(
            self.diffs.is_empty(),
            "{title}: {} cases differ from torchao",
            self.diffs.len()
        );
    }
}

impl Oracle {
    pub fn load(dir: &Path) -> Result<Self> {
        let s = crate::store::Store::load(dir, |name| Ok(parse_kind(name)?))?;
        Ok(Oracle {
            tensors: s.tensors,
            cases: s.cases,
            torch: s.torch,
            torchao: s.torchao,
        })
    }

    fn tensor(&self, key: &Value) -> Result<&Tensor> {
        let key = key.as_str().context("a tensor key")?;
        self.tensors
            .get(key)
            .with_context(|| format!("tensor {key}"))
    }

    pub fn replay_all(&self) -> Result<Report> {
        let mut report = Report::default();
        for case in &self.cases {
            let id = case["id"].as_str().unwrap_or("?");
            let op = case["op"].as_str().context("op")?;
            let family = if op == "qqq" { "qqq" } else { "gguf" };
            let ok = case["expected"]["ok"].as_bool().context("expected.ok")?;
            let diff = self.replay(case).with_context(|| format!("case {id}"))?;
            for tally in [
                report.by_family.entry(family).or_default(),
                report.by_op.entry(op.to_string()).or_default(),
            ] {
                match (ok, &diff) {
                    (true, None) => tally.identical += 1,
                    (false, None) => tally.refused += 1,
                    _ => {}
                }
                if ok {
                    tally.computed += 1;
                } else {
                    tally.refusals += 1;
                }
            }
            if let Some(d) = diff {
                report.diffs.push(format!("{id}: {d}"));
            }
        }
        Ok(report)
    }

    /// `None` when the crate does what torchao did, else what differs.
    fn replay(&self, case: &Value) -> Result<Option<String>> {
        let expected = &case["expected"];
        let got = match case["op"].as_str() {
            Some("gguf") => self.gguf(case)?,
            Some("gguf_weight_only") => self.gguf_weight_only(case)?,
            Some("qqq") => self.qqq(case)?,
            other => bail!("unknown op {other:?}"),
        };
        let ok = expected["ok"].as_bool() == Some(true);
        let outputs = match (ok, got) {
            (true, Ok(outputs)) => outputs,
            (true, Err(e)) => return Ok(Some(format!("crate error: {e}"))),
            (false, Ok(_)) => {
                return Ok(Some(format!(
                    "torchao refuses ({}), the crate returned outputs",
                    expected.get("error").unwrap_or(&expected["deliberate"])
                )))
            }
            (false, Err(Error::Torch { source, .. })) => {
                return Ok(Some(format!(
                    "refused, but by libtorch rather than a typed check: {source}"
                )))
            }
            (false, Err(_)) => return Ok(None),
        };
        let want = expected["outputs"].as_object().context("outputs")?;
        let mut diffs = Vec::new();
        for (name, key) in want {
            let got = outputs
                .iter()
                .find(|(n, _)| n == name)
                .with_context(|| format!("the replay computes no {name}"))?;
            if let Some(d) = compare(self.tensor(key)?, &got.1)? {
                diffs.push(format!("{name}: {d}"));
            }
        }
        Ok((!diffs.is_empty()).then(|| diffs.join("; ")))
    }

    fn gguf(&self, case: &Value) -> Result<std::result::Result<Outputs, Error>> {
        let args = &case["args"];
        let input = self.tensor(&case["inputs"]["input"])?;
        let codes = match case["inputs"].get("codes") {
            Some(k) => Some(self.tensor(k)?),
            None => None,
        };
        let block: Vec<i64> = serde_json::from_value(args["block_size"].clone())?;
        let target: QuantDtype = args["target_dtype"]
            .as_str()
            .context("target_dtype")?
            .parse()?;
        let output_dtype = kind_arg(&args["output_dtype"])?;
        Ok((|| {
            let qp = choose_qparams_gguf(input, &block, target)?;
            let int_data = quantize_gguf(input, &block, target, &qp)?;
            let dequant = dequantize_gguf(&int_data, &block, target, &qp, output_dtype)?;
            let dequant_codes = match codes {
                Some(c) => Some(dequantize_gguf(c, &block, target, &qp, output_dtype)?),
                None => None,
            };
            let mut out = qparams_outputs(qp);
            out.push(("int_data".into(), int_data));
            out.push(("dequant".into(), dequant));
            if let Some(d) = dequant_codes {
                out.push(("dequant_codes".into(), d));
            }
            Ok(out)
        })())
    }

    fn gguf_weight_only(&self, case: &Value) -> Result<std::result::Result<Outputs, Error>> {
        let args = &case["args"];
        let weight = self.tensor(&case["inputs"]["weight"])?;
        let n = args["n_blocks_per_superblock"].as_i64().context("n")?;
        let output_dtype = kind_arg(&args["output_dtype"])?;
        Ok((|| {
            let q = gguf_weight_only(weight, n, QuantDtype::UInt4)?;
            let dequant = q.dequantize(output_dtype)?;
            let mut out = qparams_outputs(q.qparams);
            out.push(("int_data".into(), q.int_data));
            out.push(("dequant".into(), dequant));
            Ok(out)
        })())
    }

    fn qqq(&self, case: &Value) -> Result<std::result::Result<Outputs, Error>> {
        let args = &case["args"];
        let w = self.tensor(&case["inputs"]["w"])?;
        let bits = args["num_bits"].as_i64().context("num_bits")?;
        let gs = args["group_size"].as_i64().context("group_size")?;
        let output_dtype = kind_arg(&args["output_dtype"])?;
        Ok((|| {
            let q = choose_qparams_and_quantize_affine_qqq(w, bits, gs)?;
            let dequant =
                dequantize_affine_qqq(&q.q_w, &q.s_group, &q.s_channel, bits, gs, output_dtype)?;
            Ok(vec![
                ("q_w".into(), q.q_w),
                ("s_group".into(), q.s_group),
                ("s_channel".into(), q.s_channel),
                ("w_ref".into(), q.w_ref),
                ("dequant".into(), dequant),
            ])
        })())
    }
}

type Outputs = Vec<(String, Tensor)>;

fn qparams_outputs(qp: GgufQParams) -> Outputs {
    vec![
        ("super_block_scale_scale".into(), qp.super_block_scale_scale),
        ("super_block_min_scale".into(), qp.super_block_min_scale),
        ("quantized_block_scale".into(), qp.quantized_block_scale),
        ("quantized_block_min".into(), qp.quantized_block_min),
    ]
}

fn kind_arg(v: &Value) -> Result<Option<Kind>> {
    Ok(match v.as_str() {
        Some(name) => Some(parse_kind(name)?),
        None => None,
    })
}
