//! Replays the MX / NVFP4 oracle's cases (`tests/mx/oracle.py`, the format
//! of `tests/parity/README.md`) through the crate and compares every output
//! with torchao 0.18's: same dtype, same shape, same bytes. Where torchao
//! refused, the crate must return a typed error other than `Error::Torch`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tch::{Device, Kind, Tensor};
use tch_quant::mx::to_dtype;
use tch_quant::{
    nvfp4_quantize, parse_kind, per_tensor_amax_to_scale, to_mx, Error, MxElemDtype, MxTensor,
    Nvfp4Tensor, ScaleCalculationMode,
};

use crate::store::{compare, Store};

use crate::store::kind_of;

/// Cases computed by torchao and identical in the crate, and cases torchao
/// refused and the crate refused with a typed error.
#[derive(Default, Debug)]
pub struct Report {
    pub computed: usize,
    pub identical: usize,
    pub refusals: usize,
    pub refused: usize,
    pub diffs: Vec<String>,
}

impl Report {
    pub fn total(&self) -> (usize, usize) {
        (self.identical + self.refused, self.computed + self.refusals)
    }

    /// Prints the first differences and fails on any.
    pub fn check(&self, title: &str) {
        for d in self.diffs.iter().take(40) {
            println!("  DIFF {d}");
        }
        assert!(
            self.diffs.is_empty(),
            "{title}: {} of {} cases differ from torchao",
            self.diffs.len(),
            self.computed + self.refusals
        );
    }
}

pub struct Oracle {
    pub store: Store,
    /// Where the inputs go before the crate's calls (outputs are compared
    /// on the CPU).
    device: Device,
}

impl Oracle {
    /// Loads `dir`, to be replayed with inputs on `device`.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        Ok(Oracle {
            store: Store::load(dir, kind_of)?,
            device,
        })
    }

    /// An input tensor, on the replay's device.
    fn input(&self, key: &Value) -> Result<Tensor> {
        Ok(self.tensor(key)?.f_to_device(self.device)?)
    }

    fn tensor(&self, key: &Value) -> Result<&Tensor> {
        let key = key.as_str().context("a tensor key")?;
        self.store
            .tensors
            .get(key)
            .with_context(|| format!("tensor {key}"))
    }

    pub fn replay_all(&self) -> Result<Report> {
        let mut report = Report::default();
        for case in &self.store.cases {
            let id = case["id"].as_str().unwrap_or("?");
            let ok = case["expected"]["ok"].as_bool().context("expected.ok")?;
            let diff = self.replay(case).with_context(|| format!("case {id}"))?;
            match (ok, &diff) {
                (true, None) => report.identical += 1,
                (false, None) => report.refused += 1,
                (_, Some(d)) => report.diffs.push(format!("{id}: {d}")),
            }
            if ok {
                report.computed += 1;
            } else {
                report.refusals += 1;
            }
        }
        Ok(report)
    }

    /// `None` when the crate gives torchao's outputs (or refuses where it
    /// refused), otherwise what differs.
    fn replay(&self, case: &Value) -> Result<Option<String>> {
        let expected = &case["expected"];
        let got = match case["op"].as_str().context("op")? {
            "mx" => self.mx(case),
            "mx_codes" => self.mx_codes(case),
            "nvfp4" => self.nvfp4(case),
            "amax_to_scale" => per_tensor_amax_to_scale(&self.input(&case["inputs"]["amax"])?)
                .map(|s| vec![("scale".to_string(), s)]),
            other => bail!("unknown op {other}"),
        };
        if !expected["ok"].as_bool().unwrap_or(false) {
            return Ok(match got {
                Ok(_) => Some(format!(
                    "torchao refused ({}), the crate computed",
                    expected["error"]
                )),
                Err(Error::Torch { source, .. }) => {
                    Some(format!("refused with an untyped libtorch error: {source}"))
                }
                Err(_) => None,
            });
        }
        let got = match got {
            Ok(g) => g,
            Err(e) => return Ok(Some(format!("torchao computed, the crate refused: {e}"))),
        };
        let outputs = expected["outputs"].as_object().context("outputs")?;
        if got.len() != outputs.len() {
            bail!(
                "the replay makes {} outputs, the oracle wrote {}",
                got.len(),
                outputs.len()
            );
        }
        for (name, t) in &got {
            let want = self.tensor(
                outputs
                    .get(name)
                    .with_context(|| format!("output {name}"))?,
            )?;
            if let Some(d) = compare(want, t)? {
                return Ok(Some(format!("{name}: {d}")));
            }
        }
        Ok(None)
    }

    fn out_dtypes(case: &Value) -> Result<Vec<(String, Kind)>> {
        case["args"]["out_dtypes"]
            .as_array()
            .context("out_dtypes")?
            .iter()
            .map(|v| {
                let name = v.as_str().context("a dtype")?;
                Ok((name.to_string(), parse_kind(name)?))
            })
            .collect()
    }

    fn elem(case: &Value) -> Result<MxElemDtype> {
        Ok(MxElemDtype::parse(
            case["args"]["elem_dtype"].as_str().context("elem_dtype")?,
        )?)
    }

    fn mx(&self, case: &Value) -> Result<Vec<(String, Tensor)>, Error> {
        let a = &case["args"];
        let x = &self.input(&case["inputs"]["data_hp"]).expect("input");
        let elem = Self::elem(case).expect("elem_dtype");
        let bs = a["block_size"].as_i64().expect("block_size");
        let mode = ScaleCalculationMode::parse(a["scaling_mode"].as_str().expect("mode"))?;
        let (scale, data) = to_mx(x, elem, bs, mode)?;
        let q = MxTensor::to_mx(x, elem, bs, mode)?;
        let mut out = vec![
            ("scale".to_string(), scale.shallow_clone()),
            ("data".to_string(), data.shallow_clone()),
        ];
        for (name, kind) in Self::out_dtypes(case).expect("out_dtypes") {
            out.push((format!("dequant_{name}"), q.dequantize(Some(kind))?));
            if a["transposed"].as_bool().unwrap_or(false) {
                let t = to_dtype(&data.tr(), &scale.tr(), elem, bs, kind)?;
                out.push((format!("dequant_t_{name}"), t));
            }
        }
        Ok(out)
    }

    fn mx_codes(&self, case: &Value) -> Result<Vec<(String, Tensor)>, Error> {
        let d = &self.input(&case["inputs"]["data_lp"]).expect("data_lp");
        let s = &self.input(&case["inputs"]["scale"]).expect("scale");
        let elem = Self::elem(case).expect("elem_dtype");
        let bs = case["args"]["block_size"].as_i64().expect("block_size");
        let mut out = Vec::new();
        for (name, kind) in Self::out_dtypes(case).expect("out_dtypes") {
            out.push((format!("dequant_{name}"), to_dtype(d, s, elem, bs, kind)?));
        }
        Ok(out)
    }

    fn nvfp4(&self, case: &Value) -> Result<Vec<(String, Tensor)>, Error> {
        let a = &case["args"];
        let x = &self.input(&case["inputs"]["data_hp"]).expect("input");
        let pts = case["inputs"]
            .get("per_tensor_scale")
            .map(|k| self.input(k).expect("per_tensor_scale"));
        let pts = pts.as_ref();
        let bs = a["block_size"].as_i64().expect("block_size");
        let (scale, data) = nvfp4_quantize(x, bs, pts)?;
        let mut out = vec![("scale".to_string(), scale), ("data".to_string(), data)];
        if a["tensor"].as_bool().unwrap_or(false) {
            let q = Nvfp4Tensor::to_nvfp4(x, bs, pts)?;
            out.push(("hp_scales".to_string(), q.get_hp_scales()?));
            // torchao's `NVFP4Tensor.t()` (2-D only): both parts transposed.
            let transposed = a["transposed"]
                .as_bool()
                .unwrap_or(false)
                .then(|| Nvfp4Tensor {
                    qdata: q.qdata.tr(),
                    scale: q.scale.tr(),
                    per_tensor_scale: q.per_tensor_scale.as_ref().map(Tensor::shallow_clone),
                    block_size: q.block_size,
                    orig_dtype: q.orig_dtype,
                });
            for (name, kind) in Self::out_dtypes(case).expect("out_dtypes") {
                out.push((format!("dequant_{name}"), q.dequantize(Some(kind))?));
                if let Some(t) = &transposed {
                    out.push((format!("dequant_t_{name}"), t.dequantize(Some(kind))?));
                }
            }
        }
        Ok(out)
    }
}
