//! Quantized linear layers against the dense one: `QuantizedLinear::forward`
//! of a 4096x4096 bfloat16 layer for every CPU scheme, and `nn::Linear`'s
//! forward, at M = 1 and 32 tokens. `benches/compare_linear.py` adds
//! torchao's quantized nn.Linear to the picture.

use criterion::{criterion_group, BenchmarkId, Criterion};
use tch::nn::{self, Module, VarStore};
use tch::{Device, Kind, Tensor};
use tch_quant::{LinearScheme, QuantizedLinear};

const IN_FEATURES: i64 = 4096;
const OUT_FEATURES: i64 = 4096;
const TOKENS: [i64; 2] = [1, 32];

/// The schemes of issue 10's table.
const SCHEMES: [LinearScheme; 6] = [
    LinearScheme::Int8WeightOnly,
    LinearScheme::Int4Cpu { group_size: 32 },
    LinearScheme::Int4Cpu { group_size: 128 },
    LinearScheme::Float8WeightOnly,
    LinearScheme::Int8DynamicActivationInt8Weight,
    LinearScheme::UIntXWeightOnly {
        bits: 4,
        group_size: 64,
    },
];

fn linear(c: &mut Criterion) {
    let _guard = tch::no_grad_guard();
    tch::manual_seed(0);
    let mut vs = VarStore::new(Device::Cpu);
    let dense = nn::linear(vs.root(), IN_FEATURES, OUT_FEATURES, Default::default());
    vs.bfloat16();
    let inputs: Vec<(i64, Tensor)> = TOKENS
        .iter()
        .map(|&m| {
            (
                m,
                Tensor::randn([m, IN_FEATURES], (Kind::BFloat16, Device::Cpu)),
            )
        })
        .collect();

    let mut group = c.benchmark_group("linear/bfloat16_4096x4096");
    // The slowest schemes take tens of milliseconds a call.
    group.sample_size(10);
    for (m, x) in &inputs {
        group.bench_with_input(BenchmarkId::new("dense", format!("M={m}")), x, |b, x| {
            b.iter(|| dense.forward(x))
        });
    }
    for scheme in SCHEMES {
        let layer = QuantizedLinear::from_linear(&dense, scheme).expect("a valid scheme");
        for (m, x) in &inputs {
            group.bench_with_input(
                BenchmarkId::new(scheme.name(), format!("M={m}")),
                x,
                |b, x| b.iter(|| layer.forward(x)),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, linear);
