//! The Rust side of `benches/compare_hqq.py`: times
//! `choose_qparams_and_quantize_affine_hqq` (torchao's defaults: 4 bits,
//! group 64, axis 1, float16 qparams, the solver on) on inputs the script
//! wrote, and prints one JSON object per input on stdout.
//!
//! Usage: `bench_hqq CASES.json`, where the file holds `{"threads": 2,
//! "reps": 3, "cases": [{"name": .., "input": PATH, "dtype": "float32"|..,
//! "shape": [..]}]}`; the input file is the tensor's raw little-endian
//! bytes. Each measurement is the median wall time of `reps` calls (no
//! warm-up call: one takes seconds), with the solver's iteration count and
//! a checksum of the codes', scale's and zero's bytes, which the script
//! checks against torchao's.

use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use tch_quant::{choose_qparams_and_quantize_affine_hqq, HqqOptions};

#[path = "common/bench_cases.rs"]
mod bench_cases;
// Only its checksum and CPU clock: the timing loop is this file's own.
#[allow(dead_code)]
#[path = "common/timing.rs"]
mod timing;
use bench_cases::load;
use timing::{checksum, cpu_seconds};

fn main() -> Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("usage: bench_hqq CASES.json")?;
    let config: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    tch::set_num_threads(config["threads"].as_i64().unwrap_or(2) as i32);
    let reps = config["reps"].as_u64().unwrap_or(3).max(1) as usize;
    let _guard = tch::no_grad_guard();
    let options = HqqOptions::default();
    for case in config["cases"].as_array().context("cases")? {
        let input = load(case, tch::Device::Cpu)?;
        let mut samples = Vec::new();
        let mut last = None;
        let cpu0 = cpu_seconds();
        let wall0 = Instant::now();
        for _ in 0..reps {
            let t = Instant::now();
            let q = choose_qparams_and_quantize_affine_hqq(&input, &options)?;
            samples.push(t.elapsed().as_secs_f64());
            last = Some(q);
        }
        let cpu_per_wall = (cpu_seconds() - cpu0) / wall0.elapsed().as_secs_f64();
        samples.sort_by(f64::total_cmp);
        let q = last.context("no call")?;
        println!(
            "{}",
            json!({"name": case["name"], "seconds": samples[samples.len() / 2], "reps": reps,
                   "cpu_per_wall": cpu_per_wall, "iterations": q.iterations,
                   "checksum": checksum(&[&q.codes, &q.scale, &q.zero])?})
        );
    }
    Ok(())
}
