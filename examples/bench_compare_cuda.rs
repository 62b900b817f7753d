//! The Rust side of `benches/compare_cuda.py`: times the crate on CUDA
//! (choose, quantize, dequantize, choose+quantize) on inputs the script
//! wrote, synchronizing the device before every clock read, and prints one
//! JSON object per measurement on stdout.
//!
//! Usage: `bench_compare_cuda CASES.json`, where the file holds
//! `{"min_seconds": 0.3, "out_dir": DIR, "cases": [{"name": .., "input": PATH,
//! "dtype": "float32"|"bfloat16", "shape": [..], "block_size": [..],
//! "mapping_type": "SYMMETRIC"|.., "target_dtype": "int8"|..}]}`; the input
//! file is the tensor's raw little-endian bytes. Each op's outputs are
//! written once to `DIR/<case index>.<op>.<i>.bin` (raw bytes) for the
//! script to compare with torchao's, bit for bit.
//!
//! Each measurement is the median wall time of repeated calls (at least 5,
//! and at least `min_seconds` in all, after two warm-up calls); every call is
//! timed from a synchronized device to a synchronized device, as candle's
//! benches and `torch.cuda.synchronize()` do.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tch::{Cuda, Device, Kind, Tensor};
use tch_quant::{
    choose_qparams_affine, choose_qparams_and_quantize_affine, dequantize_affine, quantize_affine,
    MappingType, QParamsOptions, QuantDtype, QuantizeOptions,
};

#[path = "common/bench_cases.rs"]
mod bench_cases;
use bench_cases::{ints, load};

/// Writes each tensor's raw bytes (copied back to the CPU).
fn save(dir: &Path, stem: &str, tensors: &[&Tensor]) -> Result<()> {
    for (i, t) in tensors.iter().enumerate() {
        let t = t.f_to_device(Device::Cpu)?.f_contiguous()?;
        let bytes = Vec::<u8>::try_from(t.f_reshape([-1])?.f_view_dtype(Kind::Uint8)?)?;
        std::fs::write(dir.join(format!("{stem}.{i}.bin")), bytes)?;
    }
    Ok(())
}

/// Median seconds per call of `f`, each call between two synchronizations.
fn time(min_seconds: f64, mut f: impl FnMut() -> Result<()>) -> Result<(f64, usize)> {
    f()?;
    f()?;
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 5
        || (start.elapsed().as_secs_f64() < min_seconds && samples.len() < 100_000)
    {
        Cuda::synchronize(0);
        let t = Instant::now();
        f()?;
        Cuda::synchronize(0);
        samples.push(t.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    Ok((samples[samples.len() / 2], samples.len()))
}

fn main() -> Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("usage: bench_compare_cuda CASES.json")?;
    if !Cuda::is_available() {
        bail!("bench_compare_cuda: libtorch sees no CUDA device");
    }
    let config: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    let min_seconds = config["min_seconds"].as_f64().unwrap_or(0.3);
    let out_dir = PathBuf::from(config["out_dir"].as_str().context("out_dir")?);
    let device = Device::Cuda(0);
    let _guard = tch::no_grad_guard();
    for (index, case) in config["cases"]
        .as_array()
        .context("cases")?
        .iter()
        .enumerate()
    {
        let name = case["name"].as_str().context("name")?;
        let x = load(case, device)?;
        let block = ints(&case["block_size"])?;
        let mapping: MappingType = case["mapping_type"].as_str().context("mapping")?.parse()?;
        let dtype: QuantDtype = case["target_dtype"].as_str().context("target")?.parse()?;
        let options = QParamsOptions::default();
        let qoptions = QuantizeOptions::from(&options);
        let emit = |op: &str, (secs, reps): (f64, usize)| {
            println!(
                "{}",
                json!({"name": name, "op": op, "seconds": secs, "reps": reps})
            );
        };
        let qp = choose_qparams_affine(&x, mapping, &block, dtype, &options)?;
        let zp = qp.zero_point.as_ref().context("zero point")?;
        save(&out_dir, &format!("{index}.choose"), &[&qp.scale, zp])?;
        emit(
            "choose",
            time(min_seconds, || {
                let _qp = choose_qparams_affine(&x, mapping, &block, dtype, &options)?;
                Ok(())
            })?,
        );
        let q = quantize_affine(&x, &block, &qp.scale, Some(zp), dtype, &qoptions)?;
        save(&out_dir, &format!("{index}.quantize"), &[&q])?;
        emit(
            "quantize",
            time(min_seconds, || {
                let _q = quantize_affine(&x, &block, &qp.scale, Some(zp), dtype, &qoptions)?;
                Ok(())
            })?,
        );
        let dq = dequantize_affine(&q, &block, &qp.scale, Some(zp), dtype, &qoptions, x.kind())?;
        save(&out_dir, &format!("{index}.dequantize"), &[&dq])?;
        emit(
            "dequantize",
            time(min_seconds, || {
                let _dq =
                    dequantize_affine(&q, &block, &qp.scale, Some(zp), dtype, &qoptions, x.kind())?;
                Ok(())
            })?,
        );
        let (qp2, q2) = choose_qparams_and_quantize_affine(&x, mapping, &block, dtype, &options)?;
        let zp2 = qp2.zero_point.as_ref().context("zero point")?;
        save(
            &out_dir,
            &format!("{index}.choose+quantize"),
            &[&qp2.scale, zp2, &q2],
        )?;
        emit(
            "choose+quantize",
            time(min_seconds, || {
                let _out =
                    choose_qparams_and_quantize_affine(&x, mapping, &block, dtype, &options)?;
                Ok(())
            })?,
        );
    }
    Ok(())
}
