use criterion::{criterion_group, Criterion};
use tch::{Device, Kind, Tensor};
use tch_quant::{
    AffineQuantizedMinMaxObserver, AffineQuantizedMovingAverageMinMaxObserver, Granularity,
    MappingType, MinMaxObserver, PerChannelMinMaxObserver, QParamsOptions, QScheme, QuantDtype,
    UniformObserverOptions,
};

/// One `observe` of a 4096x4096 float32 batch into an observer that has
/// already seen one (so each call takes the running-update path), per
/// observer kind and granularity.
fn observe(c: &mut Criterion) {
    tch::manual_seed(0);
    let x = Tensor::randn([4096, 4096], (Kind::Float, Device::Cpu));
    let mut group = c.benchmark_group("observer_observe_4096x4096_f32");
    group.sample_size(10);
    for (name, granularity) in [
        ("affine_min_max/per_tensor", Granularity::PerTensor),
        ("affine_min_max/per_axis0", Granularity::PerAxis(0)),
    ] {
        let mut obs = AffineQuantizedMinMaxObserver::new(
            MappingType::Symmetric,
            QuantDtype::Int8,
            granularity,
            QParamsOptions::default(),
        )
        .expect("valid observer");
        obs.observe(&x).expect("observes");
        group.bench_function(name, |b| b.iter(|| obs.observe(&x).expect("observes")));
    }
    let mut ma = AffineQuantizedMovingAverageMinMaxObserver::new(
        MappingType::Asymmetric,
        QuantDtype::UInt8,
        Granularity::PerGroup(128),
        0.01,
        QParamsOptions::default(),
    )
    .expect("valid observer");
    ma.observe(&x).expect("observes");
    group.bench_function("affine_moving_average/per_group128", |b| {
        b.iter(|| ma.observe(&x).expect("observes"))
    });
    let options = UniformObserverOptions::default();
    let mut mm = MinMaxObserver::new(QScheme::PerTensorAffine, &options).expect("valid observer");
    mm.observe(&x).expect("observes");
    group.bench_function("min_max/per_tensor_affine", |b| {
        b.iter(|| mm.observe(&x).expect("observes"))
    });
    let mut pc = PerChannelMinMaxObserver::new(1, QScheme::PerChannelSymmetric, &options)
        .expect("valid observer");
    pc.observe(&x).expect("observes");
    group.bench_function("per_channel/axis1_symmetric", |b| {
        b.iter(|| pc.observe(&x).expect("observes"))
    });
    group.finish();
}

criterion_group!(benches, observe);
