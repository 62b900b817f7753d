//! Replays the linear oracle's cases (`tests/linear/oracle.py`, the format
//! of `tests/parity/README.md` with linear cases) through
//! `QuantizedLinear::new` and `f_forward`, and compares every output, and
//! every part of the stored weight the crate exposes, with torchao's: same
//! dtype, same shape, same bytes.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::store::compare;
use tch::{Device, Tensor};
use tch_quant::{LinearScheme, QuantizedLinear};

/// A float32 GEMM's bits depend on libtorch's intra-op thread count, a
/// process-wide setting: replays set the oracle's count and hold this lock
/// so that tests running side by side cannot change it under each other.
static THREADS: Mutex<()> = Mutex::new(());

/// A loaded oracle file.
pub struct Oracle {
    tensors: HashMap<String, Tensor>,
    pub cases: Vec<Value>,
    pub torch: String,
    pub torchao: String,
    /// The intra-op threads torch computed the expected outputs with.
    pub threads: i32,
    /// The CPU that computed them (see [`this_cpu`]) when the header names
    /// one that is not this machine's: the replay then
    /// compares the stored weights only, since a float GEMM's bits depend
    /// on the CPU's kernels in libtorch (MKL picks them by vendor and
    /// model). `None`: outputs and weights are compared.
    pub other_cpu: Option<String>,
}

/// The cpuinfo flags by which libtorch's GEMMs choose an instruction set
/// (`KERNEL_FLAGS` in tests/linear/oracle.py, in the same order): two
/// machines with one `model name` can differ in them (a generic
/// "Intel(R) Xeon(R) Processor" with AMX and one without), and then a float
/// GEMM's last bits differ.
const KERNEL_FLAGS: [&str; 15] = [
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512dq",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
];

/// This machine's CPU as the oracle's header names it (`cpu_model` in
/// tests/linear/oracle.py): the first processor's `model name`, its
/// `cache size` (MKL sizes its blocks by it) and the kernel flags present.
pub fn this_cpu() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .take_while(|l| !l.trim().is_empty())
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_string())
    };
    let Some(model) = field("model name") else {
        return "unknown".to_string();
    };
    let flags = field("flags").unwrap_or_default();
    let present: Vec<&str> = flags.split_whitespace().collect();
    let kernel: Vec<&str> = KERNEL_FLAGS
        .into_iter()
        .filter(|f| present.contains(f))
        .collect();
    let cache = field("cache size").unwrap_or_else(|| "?".to_string());
    format!("{model}; cache {cache}; {}", kernel.join(" "))
}

/// Cases of one scheme: how many torchao computed and the crate matched,
/// how many torchao refused and the crate refused too.
#[derive(Default)]
pub struct Tally {
    pub computed: usize,
    pub identical: usize,
    pub refusals: usize,
    pub refused: usize,
}

/// Every case's outcome, by scheme name.
#[derive(Default)]
pub struct Report {
    pub by_scheme: BTreeMap<String, Tally>,
    pub diffs: Vec<String>,
}

impl Report {
    pub fn cases(&self) -> usize {
        self.by_scheme
            .values()
            .map(|t| t.computed + t.refusals)
            .sum()
    }

    /// `int4_cpu 146/146 bit-identical, 16/16 refused; ...` (identical:
    /// the output and the stored parts)
    pub fn summary(&self) -> String {
        self.by_scheme
            .iter()
            .map(|(name, t)| {
                format!(
                    "{name} {}/{} bit-identical, {}/{} refused",
                    t.identical, t.computed, t.refused, t.refusals
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Prints the summary under `title` and the first differences, then
    /// fails on any difference.
    pub fn print_and_check(&self, title: &str) {
        println!("{title}: {}", self.summary());
        for d in self.diffs.iter().take(40) {
            println!("  DIFF {d}");
        }
        assert!(
            self.diffs.is_empty(),
            "{title}: {} of {} cases differ from torchao",
            self.diffs.len(),
            self.cases()
        );
    }
}

impl Oracle {
    pub fn load(dir: &Path) -> Result<Self> {
        let s = crate::store::Store::load(dir, kind_from_name)?;
        let other_cpu = s.manifest["cpu"]
            .as_str()
            .filter(|&c| c != this_cpu())
            .map(String::from);
        Ok(Oracle {
            other_cpu,
            tensors: s.tensors,
            cases: s.cases,
            torch: s.torch,
            torchao: s.torchao,
            threads: s.manifest["threads"]
                .as_i64()
                .context("the header's threads")? as i32,
        })
    }

    fn tensor(&self, key: &Value) -> Result<&Tensor> {
        let key = key.as_str().context("a tensor key")?;
        self.tensors
            .get(key)
            .with_context(|| format!("tensor {key}"))
    }

    /// Replays every case on `device`, with torch's threads set as the
    /// oracle's were.
    pub fn replay_all(&self, device: Device) -> Result<Report> {
        let _threads = THREADS.lock().unwrap_or_else(|e| e.into_inner());
        let before = tch::get_num_threads();
        tch::set_num_threads(self.threads);
        let report = self.replay_cases(device);
        tch::set_num_threads(before);
        report
    }

    fn replay_cases(&self, device: Device) -> Result<Report> {
        let mut report = Report::default();
        for case in &self.cases {
            let id = case["id"].as_str().unwrap_or("?");
            let name = case["scheme"]["name"].as_str().context("scheme.name")?;
            let tally = report.by_scheme.entry(name.to_string()).or_default();
            let ok = case["expected"]["ok"].as_bool().context("expected.ok")?;
            let diff = self
                .replay(case, device)
                .with_context(|| format!("case {id}"))?;
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
            if let Some(d) = diff {
                report.diffs.push(format!("{id}: {d}"));
            }
        }
        Ok(report)
    }

    /// `None` when the crate does what torchao did, else what differs.
    fn replay(&self, case: &Value, device: Device) -> Result<Option<String>> {
        let scheme = scheme(&case["scheme"])?;
        let inputs = &case["inputs"];
        let on = |t: &Tensor| t.f_to_device(device);
        let weight = on(self.tensor(&inputs["weight"])?)?;
        let bias = match inputs.get("bias") {
            Some(k) => Some(on(self.tensor(k)?)?),
            None => None,
        };
        let input = on(self.tensor(&inputs["input"])?)?;
        let expected = &case["expected"];
        let ok = expected["ok"].as_bool() == Some(true);
        let refused = |e: tch_quant::Error| (ok).then(|| format!("crate error: {e}"));
        let layer = match QuantizedLinear::new(&weight, bias.as_ref(), scheme) {
            Ok(l) => l,
            Err(e) => return Ok(refused(e)),
        };
        let output = match layer.f_forward(&input) {
            Ok(y) => y,
            Err(e) => return Ok(refused(e)),
        };
        if !ok {
            return Ok(Some(format!(
                "torchao refuses ({}), the crate returned an output",
                expected["error"]
            )));
        }
        let out = match self.other_cpu {
            None => compare(self.tensor(&expected["output"])?, &output)?,
            Some(_) => None,
        };
        let parts = self.compare_parts(&layer, &expected["parts"])?;
        let differing: Vec<&String> = parts.iter().filter_map(|(_, d)| d.as_ref()).collect();
        Ok(match (out, differing.is_empty()) {
            (None, true) => None,
            (out, _) => Some(format!(
                "output {}; parts: {}",
                out.as_deref().unwrap_or("identical"),
                parts
                    .iter()
                    .map(|(name, d)| format!("{name} {}", d.as_deref().unwrap_or("identical")))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        })
    }

    /// The crate's stored weight against torchao's, part by part where the
    /// crate exposes it (`None`: identical): the packed layouts must be
    /// torchao's too, and a mismatch in them tells the weight's
    /// quantization apart from the forward's ops.
    fn compare_parts(
        &self,
        layer: &QuantizedLinear,
        parts: &Value,
    ) -> Result<Vec<(&'static str, Option<String>)>> {
        let mut mine: Vec<(&str, Tensor)> = Vec::new();
        if let Some(w) = layer.int4_cpu_weight() {
            mine.push(("packed_weight", w.packed_weight().shallow_clone()));
            mine.push(("scale_and_zero", w.scale_and_zero().shallow_clone()));
        }
        if let Some(w) = layer.tensor_core_tiled_weight() {
            mine.push(("packed_weight", w.packed_weight().shallow_clone()));
            mine.push(("scale_and_zero", w.scale_and_zero().shallow_clone()));
        }
        if let Some(w) = layer.int8_weight() {
            mine.push(("int_data", w.codes().shallow_clone()));
            mine.push(("scale", w.scale().shallow_clone()));
        }
        if let Some(q) = layer.quantized_weight() {
            match layer.scheme() {
                LinearScheme::Float8WeightOnly => {
                    mine.push(("float8_data", q.codes()?));
                    mine.push(("scale", q.scale().shallow_clone()));
                }
                _ => mine.push(("dequantized_weight", q.dequantize()?)),
            }
        }
        let mut compared = Vec::new();
        for (name, t) in &mine {
            let d = match parts.get(*name) {
                Some(key) => compare(self.tensor(key)?, t)?,
                None => Some("recorded by the crate, not by torchao".into()),
            };
            compared.push((*name, d));
        }
        if compared.is_empty() {
            compared.push(("(none)", Some("the crate exposes no stored weight".into())));
        }
        Ok(compared)
    }
}

/// The case's `scheme` object as the crate's scheme.
pub fn scheme(v: &Value) -> Result<LinearScheme> {
    let int = |k: &str| v[k].as_i64().with_context(|| format!("scheme.{k}"));
    Ok(match v["name"].as_str().context("scheme.name")? {
        "int8_weight_only" => LinearScheme::Int8WeightOnly,
        "int4_cpu" => LinearScheme::Int4Cpu {
            group_size: int("group_size")?,
        },
        "int4_tensor_core_tiled" => LinearScheme::Int4TensorCoreTiled {
            group_size: int("group_size")?,
            inner_k_tiles: int("inner_k_tiles")?,
        },
        "float8_weight_only" => LinearScheme::Float8WeightOnly,
        "int8_dynamic_activation_int8_weight" => LinearScheme::Int8DynamicActivationInt8Weight,
        "uintx_weight_only" => LinearScheme::UIntXWeightOnly {
            bits: u32::try_from(int("bits")?)?,
            group_size: int("group_size")?,
        },
        other => bail!("unknown scheme {other}"),
    })
}

use crate::store::kind_of as kind_from_name;
