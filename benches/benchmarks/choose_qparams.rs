use criterion::{criterion_group, Criterion};

use super::cases;

fn choose(c: &mut Criterion) {
    let mut group = c.benchmark_group("choose_qparams_affine");
    for case in cases() {
        group.bench_function(&case.name, |b| b.iter(|| case.choose(&case.recipe.options)));
    }
    group.finish();
}

criterion_group!(benches, choose);
