use criterion::{criterion_group, Criterion};

use super::cases;

fn choose(c: &mut Criterion) {
    let mut group = c.benchmark_group("choose_qparams_affine");
    for case in cases() {
        group.bench_function(&case.name, |b| {
            b.iter(|| {
                tch_quant::choose_qparams_affine(
                    &case.input,
                    case.mapping,
                    &case.block_size,
                    case.dtype,
                    &case.options,
                )
                .expect("bench case is valid")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, choose);
