//! Criterion benches of the primitives; `benches/compare.py` puts them side
//! by side with torchao.
mod benchmarks;

criterion::criterion_main!(
    benchmarks::choose_qparams::benches,
    benchmarks::quantize::benches,
    benchmarks::fused::benches,
    benchmarks::layouts::benches
);
