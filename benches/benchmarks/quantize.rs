use criterion::{criterion_group, Criterion};
use tch_quant::QuantizeOptions;

use super::cases;

fn options(case: &super::Case) -> QuantizeOptions {
    QuantizeOptions {
        quant_min: case.options.quant_min,
        quant_max: case.options.quant_max,
        zero_point_domain: case.options.zero_point_domain,
        ..Default::default()
    }
}

fn quantize(c: &mut Criterion) {
    let mut group = c.benchmark_group("quantize_affine");
    for case in cases() {
        let qp = tch_quant::choose_qparams_affine(
            &case.input,
            case.mapping,
            &case.block_size,
            case.dtype,
            &case.options,
        )
        .expect("bench case is valid");
        let opts = options(&case);
        group.bench_function(&case.name, |b| {
            b.iter(|| {
                tch_quant::quantize_affine(
                    &case.input,
                    &case.block_size,
                    &qp.scale,
                    qp.zero_point.as_ref(),
                    case.dtype,
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
        let qp = tch_quant::choose_qparams_affine(
            &case.input,
            case.mapping,
            &case.block_size,
            case.dtype,
            &case.options,
        )
        .expect("bench case is valid");
        let opts = options(&case);
        let zp = qp.zero_point.as_ref();
        let codes = tch_quant::quantize_affine(
            &case.input,
            &case.block_size,
            &qp.scale,
            zp,
            case.dtype,
            &opts,
        )
        .expect("bench case is valid");
        group.bench_function(&case.name, |b| {
            b.iter(|| {
                tch_quant::dequantize_affine(
                    &codes,
                    &case.block_size,
                    &qp.scale,
                    zp,
                    case.dtype,
                    &opts,
                    case.input.kind(),
                )
                .expect("bench case is valid")
            })
        });
    }
    group.finish();
}

fn choose_and_quantize(c: &mut Criterion) {
    let mut group = c.benchmark_group("choose_and_quantize");
    for case in cases() {
        let opts = options(&case);
        group.bench_function(&case.name, |b| {
            b.iter(|| {
                let qp = tch_quant::choose_qparams_affine(
                    &case.input,
                    case.mapping,
                    &case.block_size,
                    case.dtype,
                    &case.options,
                )
                .expect("bench case is valid");
                tch_quant::quantize_affine(
                    &case.input,
                    &case.block_size,
                    &qp.scale,
                    qp.zero_point.as_ref(),
                    case.dtype,
                    &opts,
                )
                .expect("bench case is valid")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, quantize, dequantize, choose_and_quantize);
