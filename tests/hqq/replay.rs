//! Replays the HQQ oracle's cases (`tests/hqq/oracle.py`, the format of
//! `tests/parity/README.md` with HQQ cases) through
//! `choose_qparams_and_quantize_affine_hqq` and compares the codes, scale
//! and zero (same dtype, same shape, same bytes), the returned shape and
//! the number of solver iterations with torchao's. A call torchao refuses
//! must be refused by the crate with an error that names the argument the
//! case records.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::store::compare;
use tch::{Device, Kind, Tensor};
use tch_quant::{
    choose_qparams_and_quantize_affine_hqq, kind_name, parse_kind, HqqOptions, HqqQuantized,
    HqqSolverOptions,
};

/// A full mean's bits depend on libtorch's intra-op thread count, a
/// process-wide setting: replays set the oracle's count and hold this lock.
static THREADS: Mutex<()> = Mutex::new(());

/// A loaded oracle file.
pub struct Oracle {
    tensors: HashMap<String, Tensor>,
    pub cases: Vec<Value>,
    pub torch: String,
    pub torchao: String,
    pub threads: i32,
}

/// Cases of one category: computed by torchao and matched by the crate,
/// refused by torchao and refused (naming the argument) by the crate.
#[derive(Default)]
pub struct Tally {
    pub computed: usize,
    pub identical: usize,
    pub refusals: usize,
    pub refused: usize,
}

#[derive(Default)]
pub struct Report {
    /// By the case's category (grid, solver, special, refused, random, minilm).
    pub by_category: BTreeMap<String, Tally>,
    /// By mode: `nbits N`, `optimize`/`plain` x `affine`/`raw`, input dtype.
    pub by_mode: BTreeMap<String, Tally>,
    /// Computed cases by the number of solver iterations torchao ran.
    pub iterations: BTreeMap<u64, usize>,
    pub diffs: Vec<String>,
}

fn summary(map: &BTreeMap<String, Tally>) -> String {
    map.iter()
        .map(|(name, t)| {
            let mut s = format!("{name} {}/{} bit-identical", t.identical, t.computed);
            if t.refusals > 0 {
                s += &format!(", {}/{} refused", t.refused, t.refusals);
            }
            s
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Report {
    pub fn cases(&self) -> usize {
        self.by_category
            .values()
            .map(|t| t.computed + t.refusals)
            .sum()
    }

    pub fn computed(&self) -> usize {
        self.by_category.values().map(|t| t.computed).sum()
    }

    /// Prints the counts under `title` and the first differences, then
    /// fails on any difference.
    pub fn print_and_check(&self, title: &str) {
        println!("{title}: {}", summary(&self.by_category));
        println!("  by mode: {}", summary(&self.by_mode));
        let hist: Vec<String> = self
            .iterations
            .iter()
            .map(|(n, c)| format!("{n}:{c}"))
            .collect();
        println!(
            "  solver iterations (iterations:cases, all equal to torchao's): {}",
            hist.join(" ")
        );
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
        let s = crate::store::Store::load(dir, |name| Ok(parse_kind(name)?))?;
        Ok(Oracle {
            tensors: s.tensors,
            cases: s.cases,
            torch: s.torch,
            torchao: s.torchao,
            threads: s.manifest["threads"].as_i64().context("threads")? as i32,
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
            let ok = case["expected"]["ok"].as_bool().context("expected.ok")?;
            let o = &case["options"];
            let modes = [
                format!("nbits {}", o["nbits"]),
                format!(
                    "{}/{}",
                    if o["optimize"] == true {
                        "optimize"
                    } else {
                        "plain"
                    },
                    if o["raw_output"] == true {
                        "raw"
                    } else {
                        "affine"
                    }
                ),
                format!(
                    "input {}",
                    kind_name(self.tensor(&case["inputs"]["tensor"])?.kind())
                ),
            ];
            let diff = self
                .replay(case, device)
                .with_context(|| format!("case {id}"))?;
            let category = case["category"].as_str().context("category")?.to_string();
            for key in std::iter::once(category).chain(modes) {
                let t = if key.starts_with("nbits") || key.starts_with("input") || key.contains('/')
                {
                    report.by_mode.entry(key).or_default()
                } else {
                    report.by_category.entry(key).or_default()
                };
                match (ok, diff.is_none()) {
                    (true, true) => t.identical += 1,
                    (false, true) => t.refused += 1,
                    _ => {}
                }
                if ok {
                    t.computed += 1;
                } else {
                    t.refusals += 1;
                }
            }
            if ok {
                let n = case["expected"]["iterations"]
                    .as_u64()
                    .context("iterations")?;
                *report.iterations.entry(n).or_default() += 1;
            }
            if let Some(d) = diff {
                report.diffs.push(format!("{id}: {d}"));
            }
        }
        Ok(report)
    }

    /// `None` when the crate does what torchao did, else what differs.
    fn replay(&self, case: &Value, device: Device) -> Result<Option<String>> {
        let options = options(&case["options"], device)?;
        let input = self
            .tensor(&case["inputs"]["tensor"])?
            .f_to_device(device)?;
        let expected = &case["expected"];
        let result = choose_qparams_and_quantize_affine_hqq(&input, &options);
        if expected["ok"] != true {
            let arg = case["refuses"].as_str().context("refuses")?;
            return Ok(match result {
                Ok(_) => Some(format!(
                    "torchao refuses ({}), the crate computed it",
                    expected["error"]
                )),
                Err(e) if names(&e, arg) => None,
                Err(e) => Some(format!("refused, but not naming `{arg}`: {e}")),
            });
        }
        let q = match result {
            Ok(q) => q,
            Err(e) => return Ok(Some(format!("crate error: {e}"))),
        };
        self.compare_result(expected, &q)
    }

    fn compare_result(&self, expected: &Value, q: &HqqQuantized) -> Result<Option<String>> {
        let mut diffs = Vec::new();
        for (name, got) in [("codes", &q.codes), ("scale", &q.scale), ("zero", &q.zero)] {
            if let Some(d) = compare(self.tensor(&expected[name])?, got)? {
                diffs.push(format!("{name} {d}"));
            }
        }
        let shape: Vec<i64> = serde_json::from_value(expected["shape"].clone())?;
        if shape != q.shape {
            diffs.push(format!("shape {:?} vs torchao {shape:?}", q.shape));
        }
        let iterations = expected["iterations"].as_u64().context("iterations")?;
        if iterations != q.iterations as u64 {
            diffs.push(format!(
                "{} solver iterations vs torchao's {iterations}",
                q.iterations
            ));
        }
        Ok((!diffs.is_empty()).then(|| diffs.join(", ")))
    }
}

/// Whether a refusal names `arg` (the `arg` field of the typed error, and
/// its message).
pub fn names(e: &tch_quant::Error, arg: &str) -> bool {
    use tch_quant::Error::*;
    let field = match e {
        InvalidArgument { arg, .. } | UnsupportedKind { arg, .. } | ShapeMismatch { arg, .. } => {
            Some(*arg)
        }
        UnsupportedLayout { arg, .. } => Some(*arg),
        _ => None,
    };
    field == Some(arg) && e.to_string().contains(&format!("`{arg}`"))
}

fn options(o: &Value, device: Device) -> Result<HqqOptions> {
    let s = &o["solver"];
    let kind = |v: &Value| -> Result<Kind> { Ok(parse_kind(v.as_str().context("a dtype")?)?) };
    Ok(HqqOptions {
        nbits: o["nbits"].as_u64().context("nbits")? as u32,
        group_size: o["group_size"].as_i64(),
        optimize: o["optimize"].as_bool().context("optimize")?,
        axis: o["axis"].as_i64().context("axis")?,
        compute_dtype: kind(&o["compute_dtype"])?,
        device: Some(device),
        raw_output: o["raw_output"].as_bool().context("raw_output")?,
        solver: HqqSolverOptions {
            lp_norm: s["lp_norm"].as_f64().context("lp_norm")?,
            beta: s["beta"].as_f64().context("beta")?,
            kappa: s["kappa"].as_f64().context("kappa")?,
            iters: s["iters"].as_u64().context("iters")? as usize,
            early_stop: s["early_stop"].as_bool().context("early_stop")?,
            dtype: if s["dtype"].is_null() {
                None
            } else {
                Some(kind(&s["dtype"])?)
            },
        },
    })
}
