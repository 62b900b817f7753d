//! Criterion benches of the primitives, HQQ and the quantized linear
//! layers; `benches/compare.py`, `benches/compare_hqq.py` and
//! `benches/compare_linear.py` put them side by side with torchao.
mod benchmarks;

criterion::criterion_main!(
    benchmarks::choose_qparams::benches,
    benchmarks::quantize::benches,
    benchmarks::fused::benches,
    benchmarks::layouts::benches,
    benchmarks::linear::benches,
    benchmarks::gguf_qqq::benches,
    benchmarks::observer::benches,
    benchmarks::hqq::benches
);
