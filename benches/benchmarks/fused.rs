//! The fused CPU path against the reference path (`force_reference`), for
//! `choose_qparams_affine` alone, for `choose_qparams_and_quantize_affine`,
//! and for `dequantize_affine` of plain and packed codes, on the common
//! cases. `benches/compare.py` adds torchao to the picture.

use criterion::{criterion_group, BenchmarkId, Criterion};
use tch::Kind;
use tch_quant::{
    AffineQuantizedTensor, QParamsOptions, QuantDtype, QuantizeOptions, QuantizedParts,
    StorageLayout,
};

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

/// 4096x4096 codes of the per-channel int8, group-128 uint4 and group-32
/// int8 cases, into float32 and bfloat16, plain and (uint4) packed 4 bits
/// to a byte: the codes' bytes and the output's are the bandwidth bound.
fn dequantize(c: &mut Criterion) {
    let mut group = c.benchmark_group("fused_vs_reference/dequantize");
    let schemes = ["per_channel", "group128", "group32"];
    for case in cases().into_iter().filter(|c| {
        c.name.starts_with("4096x4096/Float/") && schemes.iter().any(|s| c.name.ends_with(s))
    }) {
        let (qp, codes) = case.choose_and_quantize(&case.recipe.options);
        let quantized = quantized(&case, &qp, &codes);
        let packed = (case.recipe.dtype == QuantDtype::UInt4).then(|| {
            quantized
                .unpack()
                .and_then(|q| q.pack(4))
                .expect("uint4 packs")
        });
        let scheme = case.name.rsplit('/').next().unwrap_or("?");
        for output in [Kind::Float, Kind::BFloat16] {
            for (path, force_reference) in [("reference", true), ("fused", false)] {
                let options = QuantizeOptions {
                    force_reference,
                    ..case.quantize_options()
                };
                let id = format!("{scheme}/{output:?}");
                group.bench_function(BenchmarkId::new(path, &id), |b| {
                    b.iter(|| {
                        tch_quant::dequantize_affine(
                            &codes,
                            &case.block_size,
                            &qp.scale,
                            qp.zero_point.as_ref(),
                            case.recipe.dtype,
                            &options,
                            output,
                        )
                        .expect("bench case is valid")
                    })
                });
                let Some(packed) = &packed else {
                    continue;
                };
                let id = format!("{scheme}_packed/{output:?}");
                group.bench_function(BenchmarkId::new(path, &id), |b| {
                    b.iter(|| {
                        if force_reference {
                            // What dequantizing packed codes cost before the
                            // fused path: unpack, then the op sequence.
                            let codes = packed.codes().expect("packed codes unpack");
                            tch_quant::dequantize_affine(
                                &codes,
                                &case.block_size,
                                &qp.scale,
                                qp.zero_point.as_ref(),
                                case.recipe.dtype,
                                &options,
                                output,
                            )
                        } else {
                            packed.dequantize_as(output)
                        }
                        .expect("bench case is valid")
                    })
                });
            }
        }
    }
    group.finish();
}

/// The case's codes and qparams as a plain quantized tensor.
fn quantized(
    case: &super::Case,
    qp: &tch_quant::QParams,
    codes: &tch::Tensor,
) -> AffineQuantizedTensor {
    let (quant_min, quant_max) = case.recipe.dtype.bounds();
    AffineQuantizedTensor::from_parts(QuantizedParts {
        qdata: vec![codes.shallow_clone()],
        scale: qp.scale.shallow_clone(),
        zero_point: qp.zero_point.as_ref().map(|z| z.shallow_clone()),
        block_size: case.block_size.clone(),
        mapping_type: case.recipe.mapping,
        target_dtype: case.recipe.dtype,
        quant_min,
        quant_max,
        eps: f32::EPSILON as f64,
        preserve_zero: case.recipe.options.preserve_zero,
        zero_point_domain: case.recipe.options.zero_point_domain,
        shape: case.input.size(),
        dtype: case.input.kind(),
        layout: StorageLayout::Plain,
    })
    .expect("bench case is valid")
}

criterion_group!(benches, choose, choose_and_quantize, dequantize);
