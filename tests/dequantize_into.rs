//! `dequantize_affine_into` and `AffineQuantizedTensor::dequantize_into`:
//! the values of `dequantize_affine` written into the caller's tensor, on
//! the fused path and on the reference path, and the typed errors for an
//! output that cannot take them. (Bit identity over random cases is in
//! `fused_identity.rs`.)

use tch::{Device, Kind, Tensor};
use tch_quant::{
    dequantize_affine, dequantize_affine_into, AffineQuantizedTensor, Error, QuantDtype,
    QuantizeOptions, Recipe,
};

/// Codes of [4, 64] in groups of 16, with their qparams.
fn call() -> (Tensor, Tensor, Tensor) {
    let codes = Tensor::arange(256, (Kind::Int, Device::Cpu))
        .remainder(16)
        .to_kind(Kind::Uint8)
        .view([4, 64]);
    let scale = Tensor::linspace(0.25, 2.0, 16, (Kind::Float, Device::Cpu)).view([4, 4]);
    let zp = Tensor::arange(16, (Kind::Int, Device::Cpu)).view([4, 4]);
    (codes, scale, zp)
}

const BLOCK: [i64; 2] = [1, 16];

fn into(out: &mut Tensor, options: &QuantizeOptions) -> tch_quant::Result<()> {
    let (codes, scale, zp) = call();
    dequantize_affine_into(
        &codes,
        &BLOCK,
        &scale,
        Some(&zp),
        QuantDtype::UInt4,
        options,
        out,
    )
}

fn expected(kind: Kind) -> Tensor {
    let (codes, scale, zp) = call();
    let options = QuantizeOptions {
        force_reference: true,
        ..Default::default()
    };
    dequantize_affine(
        &codes,
        &BLOCK,
        &scale,
        Some(&zp),
        QuantDtype::UInt4,
        &options,
        kind,
    )
    .unwrap()
}

#[test]
fn writes_every_value_on_both_paths() {
    for kind in [Kind::Float, Kind::BFloat16, Kind::Half] {
        for force_reference in [false, true] {
            let mut out = Tensor::full([4, 64], f64::NAN, (kind, Device::Cpu));
            let options = QuantizeOptions {
                force_reference,
                ..Default::default()
            };
            into(&mut out, &options).unwrap();
            assert!(out.equal(&expected(kind)), "{kind:?}, {force_reference}");
        }
    }
}

#[test]
fn a_quantized_tensor_dequantizes_into_its_output() {
    let w = Tensor::randn([16, 128], (Kind::BFloat16, Device::Cpu));
    for recipe in [
        Recipe::Int4WeightOnly {
            group_size: 32,
            use_hqq: false,
        },
        Recipe::Int8WeightOnly { group_size: None },
    ] {
        let q = AffineQuantizedTensor::quantize(&w, &recipe).unwrap();
        for kind in [Kind::Float, Kind::BFloat16] {
            let mut out = Tensor::full([16, 128], f64::NAN, (kind, Device::Cpu));
            q.dequantize_into(&mut out).unwrap();
            assert!(
                out.equal(&q.dequantize_as(kind).unwrap()),
                "{recipe:?} {kind:?}"
            );
        }
        let mut wrong = Tensor::zeros([16, 64], (Kind::Float, Device::Cpu));
        let err = q.dequantize_into(&mut wrong).unwrap_err();
        assert!(
            matches!(err, Error::ShapeMismatch { arg: "out", .. }),
            "{err}"
        );
    }
}

#[test]
fn refuses_an_output_it_cannot_write_and_names_it() {
    let options = QuantizeOptions::default();
    let check = |mut out: Tensor, want: &str| {
        let err = into(&mut out, &options).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("`out`"), "{message}");
        assert!(message.contains(want), "{message} (expected {want:?})");
        err
    };
    let err = check(Tensor::zeros([4, 64], (Kind::Int, Device::Cpu)), "Int");
    assert!(matches!(err, Error::UnsupportedKind { arg: "out", .. }));
    let err = check(
        Tensor::zeros([64, 4], (Kind::Float, Device::Cpu)),
        "[64, 4]",
    );
    assert!(matches!(err, Error::ShapeMismatch { arg: "out", .. }));
    let strided = Tensor::zeros([64, 4], (Kind::Float, Device::Cpu)).tr();
    let err = check(strided, "strides [1, 4]");
    assert!(matches!(err, Error::InvalidArgument { arg: "out", .. }));
    let grad = Tensor::zeros([4, 64], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    check(grad, "requires grad");
    let sparse =
        Tensor::zeros([4, 64], (Kind::Float, Device::Cpu)).to_sparse(None, None::<&[i64]>, None);
    let err = check(sparse, "sparse");
    assert!(matches!(err, Error::UnsupportedLayout { arg: "out", .. }));
}

#[test]
fn refuses_an_output_that_shares_memory_with_the_arguments() {
    // int32 codes and a float32 output over the same bytes.
    let codes = Tensor::arange(64, (Kind::Int, Device::Cpu)).view([4, 16]);
    let scale = Tensor::ones([4, 1], (Kind::Float, Device::Cpu));
    let mut out = codes.view_dtype(Kind::Float);
    let options = QuantizeOptions {
        zero_point_domain: tch_quant::ZeroPointDomain::None,
        ..Default::default()
    };
    let err = dequantize_affine_into(
        &codes,
        &[1, 16],
        &scale,
        None,
        QuantDtype::Int32,
        &options,
        &mut out,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("shares memory with the codes"),
        "{err}"
    );
    // The scale inside the output's bytes.
    let mut out = Tensor::zeros([4, 16], (Kind::Float, Device::Cpu));
    let scale = out.narrow(1, 0, 1);
    let err = dequantize_affine_into(
        &codes,
        &[1, 16],
        &scale,
        None,
        QuantDtype::Int32,
        &options,
        &mut out,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("shares memory with `scale`"),
        "{err}"
    );
}
