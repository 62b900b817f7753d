//! The Rust side of `benches/compare.py`: times the crate's reference path
//! (`force_reference`) and fused path on inputs the script wrote, and
//! prints one JSON object per measurement on stdout.
//!
//! Usage: `bench_compare CASES.json`, where the file holds
//! `{"threads": 2, "min_seconds": 0.3, "cases": [{"name": .., "input": PATH,
//! "dtype": "float32"|"bfloat16", "shape": [..], "block_size": [..],
//! "mapping_type": "SYMMETRIC"|.., "target_dtype": "int8"|..}]}`; the input
//! file is the tensor's raw little-endian bytes.
//!
//! Ops per case, each on the reference path (`force_reference`) and the
//! fused one: `choose`, `choose+quantize` (the one-pass API),
//! `choose+quantize_into` (the same, the codes into one output allocated
//! once), `choose,quantize` (the two calls users write), `quantize` (given
//! the qparams), `quantize_into` (the same into one output allocated once),
//! `dequantize` (the codes back to the input's dtype, into a fresh tensor)
//! and `dequantize_into` (the same into one output tensor allocated once);
//! an optional `"ops": [..]` list in the file restricts them. The
//! yardsticks: `read` (the amax of the input viewed as an integer of its
//! width: one bandwidth-bound read of its bytes), `amax` (libtorch's float
//! amax), `convert` (the input viewed as an integer of its width converted to
//! a fresh int8 tensor: one libtorch pass that reads the input and writes a
//! codes-sized output, the memory traffic a quantize cannot avoid), and for
//! dequantize `codes_read` + `output_write` (the amax of the codes, and
//! `zero_()` of an output-sized tensor allocated once) and
//! `output_fresh_write` (`empty_like` + `zero_()` each time).
//!
//! An `"evict_bytes": N` in the file (compare.py sends twice the L3) reads
//! an N-byte buffer before each timed call of an input of 1 MiB or more,
//! off the clock, so that the call starts from memory.
//!
//! Each measurement is the median wall time of repeated calls (at least 5,
//! and at least `min_seconds` in all, after at least `min_seconds / 2` of
//! warm-up calls), with the
//! CPU-seconds per wall second over them and a checksum of the outputs'
//! bytes so that the script can check them against torchao's.

use anyhow::{Context, Result};
use serde_json::{json, Value};
use tch::{Kind, Tensor};
use tch_quant::{
    choose_qparams_affine, choose_qparams_and_quantize_affine,
    choose_qparams_and_quantize_affine_into, dequantize_affine, dequantize_affine_into,
    quantize_affine, quantize_affine_into, MappingType, QParamsOptions, QuantDtype,
    QuantizeOptions,
};

#[path = "common/bench_cases.rs"]
mod bench_cases;
#[path = "common/timing.rs"]
mod timing;
use bench_cases::{ints, load};
use timing::{checksum, int_view, time_with, Measured};

/// Inputs at least this large are evicted from the caches before each timed
/// call (see `evict_bytes`).
const EVICT_MIN_INPUT: usize = 1 << 20;

fn main() -> Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("usage: bench_compare CASES.json")?;
    let config: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    let threads = config["threads"].as_i64().unwrap_or(2);
    let evict_bytes = config["evict_bytes"].as_u64().unwrap_or(0) as usize;
    let min_seconds = config["min_seconds"].as_f64().unwrap_or(0.3);
    // The ops to time (all when absent); the yardsticks are always timed.
    let ops: Option<Vec<String>> = config["ops"].as_array().map(|a| {
        a.iter()
            .filter_map(|o| o.as_str().map(String::from))
            .collect()
    });
    let wants = |op: &str| ops.as_ref().is_none_or(|o| o.iter().any(|w| w == op));
    tch::set_num_threads(threads as i32);
    let _guard = tch::no_grad_guard();
    for case in config["cases"].as_array().context("cases")? {
        let name = case["name"].as_str().context("name")?;
        let input = load(case, tch::Device::Cpu)?;
        let block = ints(&case["block_size"])?;
        let mapping: MappingType = case["mapping_type"].as_str().context("mapping")?.parse()?;
        let dtype: QuantDtype = case["target_dtype"].as_str().context("target")?.parse()?;
        let emit = |op: &str, path: &str, m: Measured, sum: String| {
            println!(
                "{}",
                json!({"name": name, "op": op, "path": path, "seconds": m.seconds,
                       "reps": m.reps, "cpu_per_wall": m.cpu_per_wall, "checksum": sum})
            );
        };
        // Inputs the caches could hold between calls are evicted before
        // each timed call, by one read of a buffer of `evict_bytes`
        // (libtorch's amax, on the same threads as the calls), so that
        // every call starts from memory, as the first touch of a weight
        // does; small inputs (call overhead rows) are not.
        let input_bytes = input.numel() * input.kind().elt_size_in_bytes();
        let evict = (evict_bytes > 0 && input_bytes >= EVICT_MIN_INPUT)
            .then(|| Tensor::f_ones([(evict_bytes / 4) as i64], (Kind::Int, tch::Device::Cpu)))
            .transpose()?;
        let before = || -> Result<()> {
            if let Some(e) = &evict {
                let _max = e.f_amax([] as [i64; 0], false)?;
            }
            Ok(())
        };
        let as_int = input.f_view_dtype(int_view(input.kind()))?;
        let read = time_with(min_seconds, &before, || {
            let _max = as_int.f_amax([] as [i64; 0], false)?;
            Ok(())
        })?;
        emit("read", "libtorch", read, String::new());
        let amax = time_with(min_seconds, &before, || {
            let _max = input.f_amax([] as [i64; 0], false)?;
            Ok(())
        })?;
        emit("amax", "libtorch", amax, String::new());
        // One pass that reads the input's bytes and writes one byte per
        // element into a fresh tensor, as a quantize does (its values are
        // the integers' low bytes; only the traffic matters).
        let convert = time_with(min_seconds, &before, || {
            let _codes = as_int.f_to_kind(Kind::Int8)?;
            Ok(())
        })?;
        emit("convert", "libtorch", convert, String::new());
        for (path, force_reference) in [("reference", true), ("fused", false)] {
            let options = QParamsOptions {
                force_reference,
                ..Default::default()
            };
            let qoptions = QuantizeOptions::from(&options);
            let qp = choose_qparams_affine(&input, mapping, &block, dtype, &options)?;
            let zp = qp.zero_point.as_ref().context("zero point")?;
            if wants("choose") {
                let h = checksum(&[&qp.scale, zp])?;
                let t = time_with(min_seconds, &before, || {
                    let _qp = choose_qparams_affine(&input, mapping, &block, dtype, &options)?;
                    Ok(())
                })?;
                emit("choose", path, t, h);
            }

            let (qp, codes) =
                choose_qparams_and_quantize_affine(&input, mapping, &block, dtype, &options)?;
            let zp = qp.zero_point.as_ref().context("zero point")?;
            if wants("choose+quantize") {
                let h = checksum(&[&qp.scale, zp, &codes])?;
                let t = time_with(min_seconds, &before, || {
                    let _out = choose_qparams_and_quantize_affine(
                        &input, mapping, &block, dtype, &options,
                    )?;
                    Ok(())
                })?;
                emit("choose+quantize", path, t, h);
            }

            if wants("choose+quantize_into") {
                // The codes into one output allocated once.
                let mut out = codes.f_empty_like()?;
                let mut into = || {
                    choose_qparams_and_quantize_affine_into(
                        &input, mapping, &block, dtype, &options, &mut out,
                    )
                };
                let qp = into()?;
                let zp = qp.zero_point.as_ref().context("zero point")?;
                let t = time_with(min_seconds, &before, || Ok(into().map(drop)?))?;
                let h = checksum(&[&qp.scale, zp, &out])?;
                emit("choose+quantize_into", path, t, h);
            }

            if wants("choose,quantize") {
                // The two calls users write, one after the other.
                let h = checksum(&[&qp.scale, zp, &codes])?;
                let t = time_with(min_seconds, &before, || {
                    let qp = choose_qparams_affine(&input, mapping, &block, dtype, &options)?;
                    let zp = qp.zero_point.as_ref().context("zero point")?;
                    let _codes =
                        quantize_affine(&input, &block, &qp.scale, Some(zp), dtype, &qoptions)?;
                    Ok(())
                })?;
                emit("choose,quantize", path, t, h);
            }

            if wants("quantize") {
                let quantized =
                    quantize_affine(&input, &block, &qp.scale, Some(zp), dtype, &qoptions)?;
                let h = checksum(&[&quantized])?;
                let t = time_with(min_seconds, &before, || {
                    let _codes =
                        quantize_affine(&input, &block, &qp.scale, Some(zp), dtype, &qoptions)?;
                    Ok(())
                })?;
                emit("quantize", path, t, h);
            }

            if wants("quantize_into") {
                let mut out = codes.f_empty_like()?;
                let mut into = || {
                    quantize_affine_into(
                        &input,
                        &block,
                        &qp.scale,
                        Some(zp),
                        dtype,
                        &qoptions,
                        &mut out,
                    )
                };
                into()?;
                let t = time_with(min_seconds, &before, || Ok(into()?))?;
                let h = checksum(&[&out])?;
                emit("quantize_into", path, t, h);
            }

            let dequantize = || {
                dequantize_affine(
                    &codes,
                    &block,
                    &qp.scale,
                    Some(zp),
                    dtype,
                    &qoptions,
                    input.kind(),
                )
            };
            if wants("dequantize") {
                let h = checksum(&[&dequantize()?])?;
                let t = time_with(min_seconds, &before, || {
                    let _out = dequantize()?;
                    Ok(())
                })?;
                emit("dequantize", path, t, h);
            }
            if wants("dequantize_into") {
                // Into one output allocated once, as a server reuses its
                // buffers.
                let mut out = input.f_empty_like()?;
                let mut into = || {
                    dequantize_affine_into(
                        &codes,
                        &block,
                        &qp.scale,
                        Some(zp),
                        dtype,
                        &qoptions,
                        &mut out,
                    )
                };
                into()?;
                let t = time_with(min_seconds, &before, || Ok(into()?))?;
                let h = checksum(&[&out])?;
                emit("dequantize_into", path, t, h);
            }
            if path == "fused" && (wants("dequantize") || wants("dequantize_into")) {
                // Dequantize's yardsticks: one read of the codes' bytes, and
                // one write of the output's into a tensor allocated once
                // (`output_write`) or into a fresh one each time
                // (`output_fresh_write`: what a fresh output costs here).
                let read = time_with(min_seconds, &before, || {
                    let _max = codes.f_amax([] as [i64; 0], false)?;
                    Ok(())
                })?;
                emit("codes_read", "libtorch", read, String::new());
                let mut out = input.f_empty_like()?;
                let write = time_with(min_seconds, &before, || {
                    let _out = out.f_zero_()?;
                    Ok(())
                })?;
                emit("output_write", "libtorch", write, String::new());
                let fresh = time_with(min_seconds, &before, || {
                    let _out = input.f_empty_like()?.f_zero_()?;
                    Ok(())
                })?;
                emit("output_fresh_write", "libtorch", fresh, String::new());
            }
        }
    }
    Ok(())
}
