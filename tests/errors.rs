//! Every invalid argument is a typed error that names it; nothing panics.

use tch::{Device, Kind, Tensor};
use tch_quant::{
    choose_qparams_affine, choose_qparams_affine_dont_preserve_zero,
    choose_qparams_affine_tinygemm, choose_qparams_affine_with_min_max,
    choose_qparams_and_quantize_affine, dequantize_affine, dequantize_affine_into, quantize_affine,
    quantize_affine_tinygemm, Error, Granularity, MappingType, QParamsOptions, QuantDtype,
    QuantizeOptions, Semantics, ZeroPointDomain,
};

fn x(shape: &[i64], kind: Kind) -> Tensor {
    Tensor::randn(shape, (kind, Device::Cpu))
}

fn choose(input: &Tensor, block: &[i64], opts: QParamsOptions) -> tch_quant::Result<()> {
    choose_qparams_affine(
        input,
        MappingType::Asymmetric,
        block,
        QuantDtype::UInt8,
        &opts,
    )
    .map(|_| ())
}

/// The argument an error names.
fn arg(e: &Error) -> &'static str {
    match e {
        Error::InvalidArgument { arg, .. }
        | Error::UnsupportedKind { arg, .. }
        | Error::ShapeMismatch { arg, .. } => arg,
        other => panic!("expected an argument error, got {other}"),
    }
}

#[test]
fn block_size_errors_name_block_size() {
    let t = x(&[4, 8], Kind::Float);
    for bad in [
        &[1, 3][..],
        &[0, 8],
        &[-1, 8],
        &[1, 16],
        &[1],
        &[1, 8, 1],
        &[1, 1],
    ] {
        let e = choose(&t, bad, QParamsOptions::default()).unwrap_err();
        assert_eq!(arg(&e), "block_size", "{bad:?}: {e}");
        assert!(e.to_string().contains("choose_qparams_affine"), "{e}");
    }
}

#[test]
fn one_element_tensor_keeps_torchaos_zero_d_result() {
    let t = x(&[1, 1], Kind::Float);
    let qp = choose_qparams_affine(
        &t,
        MappingType::Asymmetric,
        &[1, 1],
        QuantDtype::UInt8,
        &QParamsOptions::default(),
    )
    .unwrap();
    assert_eq!(qp.scale.dim(), 0);
}

#[test]
fn input_dtype_and_emptiness() {
    for kind in [Kind::Double, Kind::Int, Kind::Int64, Kind::Uint8] {
        let t = Tensor::ones([2, 4], (kind, Device::Cpu));
        assert_eq!(
            arg(&choose(&t, &[1, 4], QParamsOptions::default()).unwrap_err()),
            "input"
        );
    }
    let empty = x(&[0, 4], Kind::Float);
    assert_eq!(
        arg(&choose(&empty, &[1, 4], QParamsOptions::default()).unwrap_err()),
        "input"
    );
}

#[test]
fn quant_range_errors() {
    let t = x(&[2, 4], Kind::Float);
    let cases = [
        (Some(5.0), Some(4.0), "quant_min"),
        (Some(-1.0), None, "quant_min"),
        (None, Some(256.0), "quant_max"),
        (Some(0.5), None, "quant_min"),
        (Some(f64::NAN), None, "quant_min"),
        (None, Some(f64::INFINITY), "quant_max"),
    ];
    for (quant_min, quant_max, name) in cases {
        let opts = QParamsOptions {
            quant_min,
            quant_max,
            ..Default::default()
        };
        let e = choose(&t, &[1, 4], opts).unwrap_err();
        assert_eq!(arg(&e), name, "{quant_min:?} {quant_max:?}: {e}");
    }
}

#[test]
fn mapping_combinations_torchao_rejects() {
    let t = x(&[2, 4], Kind::Float);
    let sym = |opts: QParamsOptions, dtype| {
        choose_qparams_affine(&t, MappingType::Symmetric, &[1, 4], dtype, &opts).unwrap_err()
    };
    let e = sym(
        QParamsOptions {
            preserve_zero: false,
            ..Default::default()
        },
        QuantDtype::Int8,
    );
    assert_eq!(arg(&e), "preserve_zero");
    let e = sym(
        QParamsOptions {
            zero_point_domain: ZeroPointDomain::Float,
            ..Default::default()
        },
        QuantDtype::Int8,
    );
    assert_eq!(arg(&e), "zero_point_domain");
    let e = choose_qparams_affine(
        &t,
        MappingType::Asymmetric,
        &[1, 4],
        QuantDtype::Float8E4M3Fn,
        &QParamsOptions::default(),
    )
    .unwrap_err();
    assert_eq!(arg(&e), "mapping_type");
}

#[test]
fn eps_and_dtype_overrides() {
    let t = x(&[2, 4], Kind::Float);
    for eps in [-1.0, f64::NAN, f64::INFINITY] {
        let e = choose(
            &t,
            &[1, 4],
            QParamsOptions {
                eps: Some(eps),
                ..Default::default()
            },
        );
        assert_eq!(arg(&e.unwrap_err()), "eps");
    }
    let e = choose(
        &t,
        &[1, 4],
        QParamsOptions {
            scale_dtype: Some(Kind::Int),
            ..Default::default()
        },
    );
    assert_eq!(arg(&e.unwrap_err()), "scale_dtype");
    let e = choose(
        &t,
        &[1, 4],
        QParamsOptions {
            zero_point_dtype: Some(Kind::Bool),
            ..Default::default()
        },
    );
    assert_eq!(arg(&e.unwrap_err()), "zero_point_dtype");
}

#[test]
fn half_scalars_beyond_f16_are_refused_not_panicking() {
    let t = x(&[2, 4], Kind::Half);
    let e = choose_qparams_affine(
        &t,
        MappingType::Asymmetric,
        &[1, 4],
        QuantDtype::Int32,
        &QParamsOptions::default(),
    )
    .unwrap_err();
    assert_eq!(arg(&e), "quant_min");
    let e = choose(
        &t,
        &[1, 4],
        QParamsOptions {
            eps: Some(1e6),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(arg(&e), "eps");
    // torchao succeeds here (the zero point fill is 0), and so do we.
    choose_qparams_affine(
        &t,
        MappingType::Symmetric,
        &[1, 4],
        QuantDtype::Int32,
        &QParamsOptions::default(),
    )
    .unwrap();
}

#[test]
fn min_max_mismatches() {
    let min = x(&[4], Kind::Float);
    let opts = QParamsOptions::default();
    let run = |max: &Tensor| {
        choose_qparams_affine_with_min_max(
            &min,
            max,
            MappingType::Asymmetric,
            &[1, 8],
            QuantDtype::UInt8,
            &opts,
        )
        .unwrap_err()
    };
    assert_eq!(arg(&run(&x(&[5], Kind::Float))), "max_val");
    assert_eq!(arg(&run(&x(&[4], Kind::Half))), "max_val");
}

#[test]
fn quantize_refuses_mismatched_qparams() {
    let t = x(&[4, 8], Kind::Float);
    let opts = QuantizeOptions::default();
    let zp = Tensor::zeros([4], (Kind::Int, Device::Cpu));
    let wrong = Tensor::ones([8], (Kind::Float, Device::Cpu));
    let e = quantize_affine(&t, &[1, 8], &wrong, Some(&zp), QuantDtype::UInt8, &opts).unwrap_err();
    assert_eq!(arg(&e), "scale");
    let transposed = Tensor::ones([4, 2], (Kind::Float, Device::Cpu));
    let zp_blocks = Tensor::zeros([2, 4], (Kind::Int, Device::Cpu));
    let e = quantize_affine(
        &t,
        &[2, 2],
        &transposed,
        Some(&zp_blocks),
        QuantDtype::UInt8,
        &opts,
    )
    .unwrap_err();
    assert_eq!(arg(&e), "scale", "same numel, other layout: {e}");
    let scale = Tensor::ones([4], (Kind::Float, Device::Cpu));
    let e = quantize_affine(&t, &[1, 8], &scale, None, QuantDtype::UInt8, &opts).unwrap_err();
    assert_eq!(arg(&e), "zero_point");
    let none = QuantizeOptions {
        zero_point_domain: ZeroPointDomain::None,
        ..Default::default()
    };
    let e = quantize_affine(&t, &[1, 8], &scale, Some(&zp), QuantDtype::UInt8, &none).unwrap_err();
    assert_eq!(arg(&e), "zero_point");
    // keepdim-shaped qparams are accepted.
    let keepdim = Tensor::ones([4, 1], (Kind::Float, Device::Cpu));
    let q = quantize_affine(&t, &[1, 8], &keepdim, Some(&zp), QuantDtype::UInt8, &opts).unwrap();
    assert_eq!(q.size(), vec![4, 8]);
}

#[test]
fn dequantize_refuses_wrong_code_dtype_and_output() {
    let scale = Tensor::ones([4], (Kind::Float, Device::Cpu));
    let zp = Tensor::zeros([4], (Kind::Int, Device::Cpu));
    let opts = QuantizeOptions::default();
    let codes = Tensor::zeros([4, 8], (Kind::Int, Device::Cpu));
    let e = dequantize_affine(
        &codes,
        &[1, 8],
        &scale,
        Some(&zp),
        QuantDtype::UInt4,
        &opts,
        Kind::Float,
    )
    .unwrap_err();
    assert_eq!(arg(&e), "input");
    let codes = Tensor::zeros([4, 8], (Kind::Uint8, Device::Cpu));
    let e = dequantize_affine(
        &codes,
        &[1, 8],
        &scale,
        Some(&zp),
        QuantDtype::UInt4,
        &opts,
        Kind::Int,
    )
    .unwrap_err();
    assert_eq!(arg(&e), "output_dtype");
}

#[test]
fn granularity_errors() {
    assert!(Granularity::PerAxis(2).block_size(&[4, 8]).is_err());
    assert!(Granularity::PerAxis(-3).block_size(&[4, 8]).is_err());
    assert!(Granularity::PerGroup(0).block_size(&[4, 8]).is_err());
    assert!(Granularity::PerRow.block_size(&[]).is_err());
    assert_eq!(
        Granularity::PerTensor.block_size(&[]).unwrap(),
        Vec::<i64>::new()
    );
}

#[test]
fn names_parse_and_refuse() {
    assert_eq!(
        "torch.int4".parse::<QuantDtype>().unwrap(),
        QuantDtype::Int4
    );
    assert!(matches!(
        "int9".parse::<QuantDtype>(),
        Err(Error::UnknownDtype(_))
    ));
    for d in QuantDtype::ALL {
        assert_eq!(d.to_string().parse::<QuantDtype>().unwrap(), d);
    }
    assert!("sym".parse::<MappingType>().is_err());
}

/// The options torchao 0.18 removed are refused under 0.18, naming the
/// option and the 0.18 function to use; keepdim is refused where the
/// release or function has none.
#[test]
fn semantics_refusals_name_the_option_and_the_0_18_function() {
    let t = x(&[4, 8], Kind::Float);
    let new = QParamsOptions {
        semantics: Semantics::Torchao0_18,
        ..Default::default()
    };
    let cases = [
        (
            QParamsOptions {
                preserve_zero: false,
                ..new
            },
            "preserve_zero",
            "choose_qparams_affine_dont_preserve_zero",
        ),
        (
            QParamsOptions {
                zero_point_domain: ZeroPointDomain::Float,
                ..new
            },
            "zero_point_domain",
            "choose_qparams_affine_tinygemm",
        ),
        (
            QParamsOptions {
                zero_point_domain: ZeroPointDomain::None,
                ..new
            },
            "zero_point_domain",
            "quantize_affine_no_zero_point",
        ),
        (
            QParamsOptions {
                keepdim: true,
                ..Default::default()
            },
            "keepdim",
            "0.18",
        ),
    ];
    for (options, option, hint) in cases {
        for force_reference in [false, true] {
            let options = QParamsOptions {
                force_reference,
                ..options
            };
            let e = choose(&t, &[1, 8], options).unwrap_err();
            assert_eq!(arg(&e), option, "{e}");
            assert!(e.to_string().contains(hint), "{e}");
            let chained = choose_qparams_and_quantize_affine(
                &t,
                MappingType::Asymmetric,
                &[1, 8],
                QuantDtype::UInt8,
                &options,
            )
            .unwrap_err();
            assert_eq!(arg(&chained), option, "{chained}");
        }
    }
    // keepdim: neither release's with_min_max takes it, nor 0.18's tinygemm.
    let (mn, mx) = (x(&[4], Kind::Float), x(&[4], Kind::Float));
    let keep = QParamsOptions {
        keepdim: true,
        ..new
    };
    let e = choose_qparams_affine_with_min_max(
        &mn,
        &mx,
        MappingType::Symmetric,
        &[1, 8],
        QuantDtype::Int8,
        &keep,
    )
    .unwrap_err();
    assert_eq!(arg(&e), "keepdim", "{e}");
    let e = choose_qparams_affine_tinygemm(
        &t,
        MappingType::Asymmetric,
        &[1, 8],
        QuantDtype::UInt4,
        &keep,
    )
    .unwrap_err();
    assert_eq!(arg(&e), "keepdim", "{e}");
    // The 0.18-only chooses take the asymmetric mapping alone.
    for mapping in [MappingType::Symmetric, MappingType::SymmetricNoClippingErr] {
        let e = choose_qparams_affine_dont_preserve_zero(
            &t,
            mapping,
            &[1, 8],
            QuantDtype::UInt8,
            &QParamsOptions::default(),
        )
        .unwrap_err();
        assert_eq!(arg(&e), "mapping_type", "{e}");
    }
    // float8 with the asymmetric mapping: 0.11 refuses, 0.18 computes.
    let f8 = |options: &QParamsOptions| {
        choose_qparams_affine(
            &t,
            MappingType::Asymmetric,
            &[1, 8],
            QuantDtype::Float8E4M3Fn,
            options,
        )
    };
    assert_eq!(
        arg(&f8(&QParamsOptions::default()).unwrap_err()),
        "mapping_type"
    );
    assert!(f8(&new).is_ok());
}

/// 0.18's quantize_affine and dequantize_affine take the Int domain only;
/// its quantizes need a zero point, its dequantizes do not.
#[test]
fn quantize_and_dequantize_under_0_18_take_the_int_domain() {
    let t = x(&[2, 8], Kind::Float);
    let scale = Tensor::ones([2], (Kind::Float, Device::Cpu));
    let zp = Tensor::zeros([2], (Kind::Float, Device::Cpu));
    let codes = Tensor::zeros([2, 8], (Kind::Uint8, Device::Cpu));
    for (domain, hint) in [
        (ZeroPointDomain::Float, "tinygemm"),
        (ZeroPointDomain::None, "no_zero_point"),
    ] {
        let options = QuantizeOptions {
            zero_point_domain: domain,
            semantics: Semantics::Torchao0_18,
            ..Default::default()
        };
        let zero_point = (domain == ZeroPointDomain::Float).then_some(&zp);
        let e = quantize_affine(&t, &[1, 8], &scale, zero_point, QuantDtype::UInt8, &options)
            .unwrap_err();
        assert_eq!(arg(&e), "zero_point_domain", "{e}");
        assert!(
            e.to_string().contains(&format!("quantize_affine_{hint}")),
            "{e}"
        );
        let e = dequantize_affine(
            &codes,
            &[1, 8],
            &scale,
            zero_point,
            QuantDtype::UInt8,
            &options,
            Kind::Float,
        )
        .unwrap_err();
        assert_eq!(arg(&e), "zero_point_domain", "{e}");
        assert!(
            e.to_string().contains(&format!("dequantize_affine_{hint}")),
            "{e}"
        );
        let mut out = Tensor::empty([2, 8], (Kind::Float, Device::Cpu));
        let e = dequantize_affine_into(
            &codes,
            &[1, 8],
            &scale,
            zero_point,
            QuantDtype::UInt8,
            &options,
            &mut out,
        )
        .unwrap_err();
        assert_eq!(arg(&e), "zero_point_domain", "{e}");
    }
    let new = QuantizeOptions {
        semantics: Semantics::Torchao0_18,
        ..Default::default()
    };
    let e = quantize_affine(&t, &[1, 8], &scale, None, QuantDtype::UInt8, &new).unwrap_err();
    assert_eq!(arg(&e), "zero_point", "{e}");
    let e =
        quantize_affine_tinygemm(&t, &[1, 8], &scale, None, QuantDtype::UInt4, &new).unwrap_err();
    assert_eq!(arg(&e), "zero_point", "{e}");
    // 0.18's dequantize_affine takes a missing zero point; 0.11's does not.
    let codes_dq = |options: &QuantizeOptions| {
        dequantize_affine(
            &codes,
            &[1, 8],
            &scale,
            None,
            QuantDtype::UInt8,
            options,
            Kind::Float,
        )
    };
    assert!(codes_dq(&new).is_ok());
    assert_eq!(
        arg(&codes_dq(&QuantizeOptions::default()).unwrap_err()),
        "zero_point"
    );
}
