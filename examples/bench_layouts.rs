//! Quick A/B timings of the fused path on block layouts, as ratios to one
//! bandwidth-bound read of the input measured in the same process: `amax`
//! of the input's bytes viewed as int32 (float32) or int16 (bfloat16), which
//! libtorch reduces at memory speed (its bfloat16 float `amax` does not).
//!
//! Usage: `bench_layouts [FILTER]` (runs the cases whose name contains
//! FILTER). Prints one line per case and op: nanoseconds per element, and
//! the ratio to the read. `TCH_QUANT_BENCH_SECONDS` sets the time per
//! measurement (default 1 s, over 7 interleaved rounds);
//! `TCH_QUANT_BENCH_OPS=choose,quantize` times only those ops besides the
//! read (for `perf record`).

use std::time::Instant;

use anyhow::{Context, Result};
use tch::{Device, Kind, Tensor};
use tch_quant::{
    choose_qparams_affine, choose_qparams_and_quantize_affine,
    choose_qparams_and_quantize_affine_into, quantize_affine, quantize_affine_into, MappingType,
    QParamsOptions, QuantDtype, QuantizeOptions,
};

/// Median seconds per call of `f`, over at least `min_seconds` and 5 calls.
fn time(min_seconds: f64, f: impl Fn() -> Result<()>) -> Result<f64> {
    f()?;
    f()?;
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 5 || start.elapsed().as_secs_f64() < min_seconds {
        let t = Instant::now();
        f()?;
        samples.push(t.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

/// A name, a shape, a block size and a scheme.
type Case = (&'static str, Vec<i64>, Vec<i64>, (MappingType, QuantDtype));

type Op<'a> = &'a dyn Fn() -> Result<()>;

/// The int-view read of `x`: the yardstick.
fn one_read(x: &Tensor) -> Result<Tensor> {
    let int = if x.kind() == Kind::Float {
        Kind::Int
    } else {
        Kind::Int16
    };
    Ok(x.f_view_dtype(int)?.f_amax([] as [i64; 0], false)?)
}

fn main() -> Result<()> {
    let filter = std::env::args().nth(1).unwrap_or_default();
    let secs: f64 = std::env::var("TCH_QUANT_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let rounds = 7;
    tch::set_num_threads(2);
    let _guard = tch::no_grad_guard();
    let asym = (MappingType::Asymmetric, QuantDtype::Int8);
    let sym = (MappingType::Symmetric, QuantDtype::Int8);
    let u4 = (MappingType::Asymmetric, QuantDtype::UInt4);
    // Every input is 64 MiB, twice the L3 cache of the machine the README's
    // tables come from, so that no case is timed from cache; `n` elements.
    let cases = |n: i64| -> Vec<Case> {
        vec![
            ("rows4096", vec![n >> 12, 4096], vec![1, 4096], sym),
            ("tensor", vec![n >> 12, 4096], vec![n >> 12, 4096], sym),
            ("g128", vec![n >> 12, 4096], vec![1, 128], u4),
            ("g32", vec![n >> 12, 4096], vec![1, 32], asym),
            ("cols4096", vec![n >> 12, 4096], vec![n >> 12, 1], asym),
            ("tall2", vec![n >> 1, 2], vec![n >> 1, 1], asym),
            ("tall8", vec![n >> 3, 8], vec![n >> 3, 1], asym),
            ("tiny2", vec![n >> 12, 4096], vec![1, 2], asym),
            ("tiny4", vec![n >> 12, 4096], vec![1, 4], asym),
            (
                "4d_1x4x8x64",
                vec![n >> 18, 64, 64, 64],
                vec![1, 4, 8, 64],
                asym,
            ),
            (
                "4d_2x1x16x16",
                vec![n >> 18, 64, 64, 64],
                vec![2, 1, 16, 16],
                u4,
            ),
        ]
    };
    for kind in [Kind::Float, Kind::BFloat16] {
        let n = (64 << 20) / kind.elt_size_in_bytes() as i64;
        for (name, shape, block, (mapping, dtype)) in &cases(n) {
            let label = format!("{name}/{kind:?}");
            if !label.contains(&filter) {
                continue;
            }
            tch::manual_seed(0);
            let x = Tensor::randn(shape.as_slice(), (kind, Device::Cpu));
            let n = x.numel() as f64;
            let opts = QParamsOptions::default();
            let qp = choose_qparams_affine(&x, *mapping, block, *dtype, &opts)?;
            let zp = qp.zero_point.as_ref().context("zero point")?;
            let qopts = QuantizeOptions::from(&opts);
            // The outputs of the `_into` ops, allocated once.
            let codes = std::cell::RefCell::new(quantize_affine(
                &x,
                block,
                &qp.scale,
                Some(zp),
                *dtype,
                &qopts,
            )?);
            let ops: [(&str, Op); 7] = [
                ("read", &|| {
                    let _ = one_read(&x)?;
                    Ok(())
                }),
                ("choose", &|| {
                    choose_qparams_affine(&x, *mapping, block, *dtype, &opts)?;
                    Ok(())
                }),
                ("quantize", &|| {
                    let _ = quantize_affine(&x, block, &qp.scale, Some(zp), *dtype, &qopts)?;
                    Ok(())
                }),
                ("quantize_into", &|| {
                    let out = &mut *codes.borrow_mut();
                    quantize_affine_into(&x, block, &qp.scale, Some(zp), *dtype, &qopts, out)?;
                    Ok(())
                }),
                ("choose+quantize_into", &|| {
                    let out = &mut *codes.borrow_mut();
                    choose_qparams_and_quantize_affine_into(
                        &x, *mapping, block, *dtype, &opts, out,
                    )?;
                    Ok(())
                }),
                ("choose+quantize", &|| {
                    let _ = choose_qparams_and_quantize_affine(&x, *mapping, block, *dtype, &opts)?;
                    Ok(())
                }),
                ("two calls", &|| {
                    let qp = choose_qparams_affine(&x, *mapping, block, *dtype, &opts)?;
                    let zp = qp.zero_point.as_ref();
                    let _ = quantize_affine(&x, block, &qp.scale, zp, *dtype, &qopts)?;
                    Ok(())
                }),
            ];
            // Interleaved rounds: each op's time in a round is divided by
            // the read's in the same round, so that load from elsewhere on
            // the machine shifts both.
            let only = std::env::var("TCH_QUANT_BENCH_OPS").unwrap_or_default();
            let ops: Vec<(&str, Op)> = ops
                .into_iter()
                .filter(|(op, _)| {
                    *op == "read" || only.is_empty() || only.split(',').any(|o| o == *op)
                })
                .collect();
            let mut ratios = vec![Vec::new(); ops.len()];
            let mut best = vec![f64::INFINITY; ops.len()];
            for _ in 0..rounds {
                let times: Vec<f64> = ops
                    .iter()
                    .map(|(_, f)| time(secs / rounds as f64, f))
                    .collect::<Result<_>>()?;
                for (i, t) in times.iter().enumerate() {
                    ratios[i].push(t / times[0]);
                    best[i] = best[i].min(*t);
                }
            }
            for (i, (op, _)) in ops.iter().enumerate() {
                ratios[i].sort_by(f64::total_cmp);
                println!(
                    "{label:24} {op:20} {:7.3} ns/elem (best) {:6.2}x read (median of rounds)",
                    best[i] / n * 1e9,
                    ratios[i][ratios[i].len() / 2]
                );
            }
        }
    }
    Ok(())
}
