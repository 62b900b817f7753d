//! The GGUF and QQQ primitives on a 4096x4096 weight (float32 and
//! bfloat16): GGUFWeightOnlyConfig's transform (choose + quantize, Q4_K's
//! 8 blocks of 32 per super-block) and its dequantize, and QQQ's
//! group-128 and per-channel quantize and dequantize. Each is torchao's
//! op sequence, so these numbers are libtorch's eager ops plus the crate's
//! checks.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use tch::{Device, Kind, Tensor};
use tch_quant::{
    choose_qparams_and_quantize_affine_qqq, dequantize_affine_qqq, gguf_weight_only, QuantDtype,
};

const ROWS: i64 = 4096;
const COLS: i64 = 4096;

fn gguf(c: &mut Criterion) {
    let mut group = c.benchmark_group("gguf");
    group.sample_size(10);
    group.throughput(Throughput::Elements((ROWS * COLS) as u64));
    for kind in [Kind::Float, Kind::BFloat16] {
        tch::manual_seed(0);
        let w = Tensor::randn([ROWS, COLS], (kind, Device::Cpu));
        let name = format!("{ROWS}x{COLS}/{kind:?}");
        group.bench_function(BenchmarkId::new("weight_only_n8", &name), |b| {
            b.iter(|| gguf_weight_only(&w, 8, QuantDtype::UInt4).expect("valid weight"))
        });
        let q = gguf_weight_only(&w, 8, QuantDtype::UInt4).expect("valid weight");
        group.bench_function(BenchmarkId::new("dequantize_n8", &name), |b| {
            b.iter(|| q.dequantize(None).expect("parts fit"))
        });
    }
    group.finish();
}

fn qqq(c: &mut Criterion) {
    let mut group = c.benchmark_group("qqq");
    group.sample_size(10);
    group.throughput(Throughput::Elements((ROWS * COLS) as u64));
    for kind in [Kind::Float, Kind::BFloat16] {
        tch::manual_seed(0);
        let w = Tensor::randn([ROWS, COLS], (kind, Device::Cpu));
        for (scheme, group_size) in [("group128", 128), ("per_channel", -1)] {
            let name = format!("{ROWS}x{COLS}/{kind:?}/{scheme}");
            group.bench_function(BenchmarkId::new("quantize", &name), |b| {
                b.iter(|| choose_qparams_and_quantize_affine_qqq(&w, 4, group_size).expect("valid"))
            });
            let q = choose_qparams_and_quantize_affine_qqq(&w, 4, group_size).expect("valid");
            group.bench_function(BenchmarkId::new("dequantize", &name), |b| {
                b.iter(|| {
                    dequantize_affine_qqq(&q.q_w, &q.s_group, &q.s_channel, 4, group_size, None)
                        .expect("valid")
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, gguf, qqq);
