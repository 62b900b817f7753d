//! `quantize_affine_into` and `choose_qparams_and_quantize_affine_into`: the
//! codes of `quantize_affine` and `choose_qparams_and_quantize_affine`
//! written into the caller's tensor, on the fused path and on the reference
//! path, and the typed errors for an output that cannot take them. (Bit
//! identity over the fixtures and random cases is in `fused_identity.rs`.)

use tch::{Device, Kind, Tensor};
use tch_quant::{
    choose_qparams_and_quantize_affine, choose_qparams_and_quantize_affine_into, quantize_affine,
    quantize_affine_into, Error, MappingType, QParamsOptions, QuantDtype, QuantizeOptions,
};

/// An input of [8, 64] in groups of 16.
fn input(kind: Kind) -> Tensor {
    tch::manual_seed(7);
    Tensor::randn([8, 64], (kind, Device::Cpu))
}

const BLOCK: [i64; 2] = [1, 16];

/// The qparams of `x` (asymmetric uint4), chosen on the reference path.
fn qparams(x: &Tensor) -> (Tensor, Tensor) {
    let options = QParamsOptions {
        force_reference: true,
        ..Default::default()
    };
    let (qp, _) = choose_qparams_and_quantize_affine(
        x,
        MappingType::Asymmetric,
        &BLOCK,
        QuantDtype::UInt4,
        &options,
    )
    .unwrap();
    (qp.scale, qp.zero_point.unwrap())
}

/// An output already holding a value no uint4 code takes, so that a code
/// left unwritten shows.
fn filled(kind: Kind) -> Tensor {
    Tensor::full([8, 64], 200, (kind, Device::Cpu))
}

#[test]
fn quantize_writes_every_code_on_both_paths() {
    for kind in [Kind::Float, Kind::BFloat16, Kind::Half] {
        let x = input(kind);
        let (scale, zp) = qparams(&x);
        for force_reference in [false, true] {
            let options = QuantizeOptions {
                force_reference,
                ..Default::default()
            };
            let expected =
                quantize_affine(&x, &BLOCK, &scale, Some(&zp), QuantDtype::UInt4, &options)
                    .unwrap();
            let mut out = filled(Kind::Uint8);
            quantize_affine_into(
                &x,
                &BLOCK,
                &scale,
                Some(&zp),
                QuantDtype::UInt4,
                &options,
                &mut out,
            )
            .unwrap();
            assert!(out.equal(&expected), "{kind:?}, {force_reference}");
        }
    }
}

#[test]
fn choose_and_quantize_writes_every_code_on_both_paths() {
    // Per group (one pass), per tensor and per column (a pass for each
    // step), and float8 codes (the reference path, copied in).
    let cases: [(&[i64], QuantDtype, Kind); 4] = [
        (&BLOCK, QuantDtype::UInt4, Kind::Uint8),
        (&[8, 64], QuantDtype::Int8, Kind::Int8),
        (&[8, 1], QuantDtype::Int16, Kind::Int16),
        (&[1, 64], QuantDtype::Float8E4M3Fn, Kind::Float8e4m3fn),
    ];
    for kind in [Kind::Float, Kind::BFloat16] {
        let x = input(kind);
        for (block, dtype, storage) in cases {
            for force_reference in [false, true] {
                let options = QParamsOptions {
                    force_reference,
                    ..Default::default()
                };
                let mapping = if dtype.is_float8() {
                    MappingType::Symmetric
                } else {
                    MappingType::Asymmetric
                };
                let (qp, codes) =
                    choose_qparams_and_quantize_affine(&x, mapping, block, dtype, &options)
                        .unwrap();
                let mut out = Tensor::zeros([8, 64], (storage, Device::Cpu));
                let got = choose_qparams_and_quantize_affine_into(
                    &x, mapping, block, dtype, &options, &mut out,
                )
                .unwrap();
                let what = format!("{kind:?} {block:?} {dtype:?} {force_reference}");
                let bytes = |t: &Tensor| t.view_dtype(Kind::Uint8);
                assert!(bytes(&out).equal(&bytes(&codes)), "codes, {what}");
                assert!(got.scale.equal(&qp.scale), "scale, {what}");
                match (&got.zero_point, &qp.zero_point) {
                    (Some(a), Some(b)) => assert!(a.equal(b), "zero point, {what}"),
                    (None, None) => {}
                    _ => panic!("zero point on one call only, {what}"),
                }
            }
        }
    }
}

/// Runs both functions into `out`; their errors.
fn both(out: &Tensor) -> [Error; 2] {
    let x = input(Kind::Float);
    let (scale, zp) = qparams(&x);
    let mut a = out.shallow_clone();
    let quantize = quantize_affine_into(
        &x,
        &BLOCK,
        &scale,
        Some(&zp),
        QuantDtype::UInt4,
        &QuantizeOptions::default(),
        &mut a,
    )
    .unwrap_err();
    let mut b = out.shallow_clone();
    let chain = choose_qparams_and_quantize_affine_into(
        &x,
        MappingType::Asymmetric,
        &BLOCK,
        QuantDtype::UInt4,
        &QParamsOptions::default(),
        &mut b,
    )
    .unwrap_err();
    [quantize, chain]
}

#[test]
fn refuses_an_output_it_cannot_write_and_names_it() {
    let check = |out: Tensor, want: &str| -> [Error; 2] {
        let errs = both(&out);
        for err in &errs {
            let message = err.to_string();
            assert!(message.contains("`out`"), "{message}");
            assert!(message.contains(want), "{message} (expected {want:?})");
        }
        errs
    };
    let errs = check(Tensor::zeros([8, 64], (Kind::Int8, Device::Cpu)), "uint8");
    for err in &errs {
        assert!(
            matches!(err, Error::UnsupportedKind { arg: "out", .. }),
            "{err}"
        );
    }
    let errs = check(
        Tensor::zeros([64, 8], (Kind::Uint8, Device::Cpu)),
        "[64, 8]",
    );
    for err in &errs {
        assert!(
            matches!(err, Error::ShapeMismatch { arg: "out", .. }),
            "{err}"
        );
    }
    let strided = Tensor::zeros([64, 8], (Kind::Uint8, Device::Cpu)).tr();
    let errs = check(strided, "strides [1, 8]");
    for err in &errs {
        assert!(
            matches!(err, Error::InvalidArgument { arg: "out", .. }),
            "{err}"
        );
    }
    let sparse =
        Tensor::zeros([8, 64], (Kind::Uint8, Device::Cpu)).to_sparse(None, None::<&[i64]>, None);
    let errs = check(sparse, "sparse");
    for err in &errs {
        assert!(
            matches!(err, Error::UnsupportedLayout { arg: "out", .. }),
            "{err}"
        );
    }
}

#[test]
fn refuses_an_output_that_shares_memory_with_the_arguments() {
    // uint8 codes over the bytes of the (float32) input itself.
    let x = input(Kind::Float);
    let (scale, zp) = qparams(&x);
    let mut out = x
        .view([-1])
        .view_dtype(Kind::Uint8)
        .narrow(0, 0, 512)
        .view([8, 64]);
    let err = quantize_affine_into(
        &x,
        &BLOCK,
        &scale,
        Some(&zp),
        QuantDtype::UInt4,
        &QuantizeOptions::default(),
        &mut out,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("shares memory with the input"),
        "{err}"
    );
    let err = choose_qparams_and_quantize_affine_into(
        &x,
        MappingType::Asymmetric,
        &BLOCK,
        QuantDtype::UInt4,
        &QParamsOptions::default(),
        &mut out,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("shares memory with the input"),
        "{err}"
    );
    // The zero point inside the output's bytes.
    let mut out = Tensor::zeros([8, 64], (Kind::Uint8, Device::Cpu));
    let zp_in_out = out.narrow(1, 0, 16).view_dtype(Kind::Int);
    let err = quantize_affine_into(
        &x,
        &BLOCK,
        &scale,
        Some(&zp_in_out),
        QuantDtype::UInt4,
        &QuantizeOptions::default(),
        &mut out,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("shares memory with `zero_point`"),
        "{err}"
    );
    // A valid call leaves no trace of the refused ones.
    quantize_affine_into(
        &x,
        &BLOCK,
        &scale,
        Some(&zp),
        QuantDtype::UInt4,
        &QuantizeOptions::default(),
        &mut out,
    )
    .unwrap();
}
