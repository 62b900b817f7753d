use criterion::{criterion_group, Criterion};

use super::cases;

fn quantize(c: &mut Criterion) {
    let mut group = c.benchmark_group("quantize_affine");
    for case in cases() {
        let qp = case.choose(&case.recipe.options);
        let opts = case.quantize_options();
        group.bench_function(&case.name, |b| {
            b.iter(|| {
                tch_quant::quantize_affine(
                    &case.input,
                    &case.block_size,
                    &qp.scale,
                    qp.zero_point.as_ref(),
                    case.recipe.dtype,
                    &opts,
                )
                .expect("bench case is valid")
            })
        });
    }
    group.finish();
}

fn dequantize(c: &mut Criterion) {
    let mut group = c.benchmark_group("dequantize_affine");
    for case in cases() {
        let (qp, codes) = case.choose_and_quantize(&case.recipe.options);
        let opts = case.quantize_options();
        let zp = qp.zero_point.as_ref();
        group.bench_function(&case.name, |b| {
            b.iter(|| {
                tch_quant::dequantize_affine(
                    &codes,
                    &case.block_size,
                    &qp.scale,
                    zp,
                    case.recipe.dtype,
                    &opts,
                    case.input.kind(),
                )
                .expect("bench case is valid")
            })
        });
    }
    group.finish();
}

/// The two calls a user makes one after the other (the one-pass entry point
/// is measured in `fused.rs`).
fn choose_and_quantize(c: &mut Criterion) {
    let mut group = c.benchmark_group("choose_and_quantize");
    for case in cases() {
        let opts = case.quantize_options();
        group.bench_function(&case.name, |b| {
            b.iter(|| {
                let qp = case.choose(&case.recipe.options);
                tch_quant::quantize_affine(
                    &case.input,
                    &case.block_size,
                    &qp.scale,
                    qp.zero_point.as_ref(),
                    case.recipe.dtype,
                    &opts,
                )
                .expect("bench case is valid")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, quantize, dequantize, choose_and_quantize);
