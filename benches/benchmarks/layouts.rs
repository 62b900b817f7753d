//! The fused path on block layouts whose runs are short (issue 14): tall,
//! narrow inputs per column, many tiny blocks and 4-D blocks, next to the
//! per-row layout of the same inputs, with an int-view `amax` (one read of
//! the input's bytes at memory speed) as the yardstick.
//! `examples/bench_layouts.rs` prints the same rows as ratios.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use tch::{Device, Kind, Tensor};
use tch_quant::{
    choose_qparams_affine, choose_qparams_and_quantize_affine, quantize_affine, MappingType,
    QParamsOptions, QuantDtype, QuantizeOptions,
};

/// Name, shape and block size; every layout is int8 asymmetric.
const LAYOUTS: [(&str, &[i64], &[i64]); 7] = [
    ("rows/4096x4096", &[4096, 4096], &[1, 4096]),
    ("tall_per_column/4194304x2", &[1 << 22, 2], &[1 << 22, 1]),
    ("tall_per_column/1048576x8", &[1 << 20, 8], &[1 << 20, 1]),
    ("tiny_blocks/1x2", &[4096, 4096], &[1, 2]),
    ("tiny_blocks/1x4", &[4096, 4096], &[1, 4]),
    ("4d/8x64x64x64_1x4x8x64", &[8, 64, 64, 64], &[1, 4, 8, 64]),
    ("4d/8x64x64x64_2x1x16x16", &[8, 64, 64, 64], &[2, 1, 16, 16]),
];

fn layouts(c: &mut Criterion) {
    let (mapping, dtype) = (MappingType::Asymmetric, QuantDtype::Int8);
    let options = QParamsOptions::default();
    let qoptions = QuantizeOptions::from(&options);
    for kind in [Kind::Float, Kind::BFloat16] {
        let mut group = c.benchmark_group(format!("layouts/{kind:?}"));
        for (name, shape, block) in LAYOUTS {
            tch::manual_seed(0);
            let x = Tensor::randn(shape, (kind, Device::Cpu));
            group.throughput(Throughput::Elements(x.numel() as u64));
            let int = if kind == Kind::Float {
                Kind::Int
            } else {
                Kind::Int16
            };
            group.bench_function(BenchmarkId::new("int_view_amax", name), |b| {
                b.iter(|| x.view_dtype(int).amax([] as [i64; 0], false))
            });
            let qp = choose_qparams_affine(&x, mapping, block, dtype, &options)
                .expect("bench case is valid");
            group.bench_function(BenchmarkId::new("choose", name), |b| {
                b.iter(|| {
                    choose_qparams_affine(&x, mapping, block, dtype, &options)
                        .expect("bench case is valid")
                })
            });
            group.bench_function(BenchmarkId::new("quantize", name), |b| {
                b.iter(|| {
                    let zp = qp.zero_point.as_ref();
                    quantize_affine(&x, block, &qp.scale, zp, dtype, &qoptions)
                        .expect("bench case is valid")
                })
            });
            group.bench_function(BenchmarkId::new("choose_and_quantize", name), |b| {
                b.iter(|| {
                    choose_qparams_and_quantize_affine(&x, mapping, block, dtype, &options)
                        .expect("bench case is valid")
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, layouts);
