//! The fused CPU path against the reference path (`force_reference`), for
//! `choose_qparams_affine` alone and for `choose_qparams_and_quantize_affine`,
//! on the common cases. `benches/compare.py` adds torchao to the picture.

use criterion::{criterion_group, BenchmarkId, Criterion};
use tch_quant::QParamsOptions;

use super::cases;

fn paths(case: &super::Case) -> [(&'static str, QParamsOptions); 2] {
    [
        (
            "reference",
            QParamsOptions {
                force_reference: true,
                ..case.recipe.options
            },
        ),
        (
            "fused",
            QParamsOptions {
                force_reference: false,
                ..case.recipe.options
            },
        ),
    ]
}

fn choose(c: &mut Criterion) {
    let mut group = c.benchmark_group("fused_vs_reference/choose");
    for case in cases() {
        for (path, options) in paths(&case) {
            group.bench_with_input(BenchmarkId::new(path, &case.name), &options, |b, o| {
                b.iter(|| case.choose(o))
            });
        }
    }
    group.finish();
}

fn choose_and_quantize(c: &mut Criterion) {
    let mut group = c.benchmark_group("fused_vs_reference/choose_and_quantize");
    for case in cases() {
        for (path, options) in paths(&case) {
            group.bench_with_input(BenchmarkId::new(path, &case.name), &options, |b, o| {
                b.iter(|| case.choose_and_quantize(o))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, choose, choose_and_quantize);
