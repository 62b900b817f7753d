//! `choose_qparams_and_quantize_affine_hqq` with torchao's defaults (4 bits,
//! group 64, axis 1, float16 qparams, the solver on) and with the solver
//! off, on a 256x4096 weight in float32 and bfloat16: one call with the
//! solver is up to 20 passes of about 15 elementwise ops over the weight,
//! so the input is a sixteenth of the 4096x4096 that
//! `benches/compare_hqq.py` puts side by side with torchao.

use criterion::{criterion_group, BenchmarkId, Criterion};
use tch::{Device, Kind, Tensor};
use tch_quant::{choose_qparams_and_quantize_affine_hqq, HqqOptions};

fn hqq(c: &mut Criterion) {
    let mut group = c.benchmark_group("hqq");
    group.sample_size(10);
    for kind in [Kind::Float, Kind::BFloat16] {
        tch::manual_seed(0);
        let w = Tensor::randn([256, 4096], (kind, Device::Cpu));
        for (name, optimize) in [("solver", true), ("min_max", false)] {
            let options = HqqOptions {
                optimize,
                ..HqqOptions::default()
            };
            group.bench_with_input(
                BenchmarkId::new(name, format!("256x4096/{kind:?}")),
                &options,
                |b, o| b.iter(|| choose_qparams_and_quantize_affine_hqq(&w, o).expect("valid")),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, hqq);
