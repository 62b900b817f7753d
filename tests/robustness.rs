//! Issue 9's reproductions: tensors that are not strided, failures of
//! libtorch ops with a scalar argument, stride-0 tensors of 2^61 elements
//! and ranks above 64. Each gives a typed error on both paths, never a
//! panic.

use tch::{Device, Kind, Layout, Tensor};
use tch_quant::{
    choose_qparams_affine, choose_qparams_affine_float8, choose_qparams_affine_floatx,
    choose_qparams_affine_with_min_max, choose_qparams_and_quantize_affine, dequantize_affine,
    dequantize_affine_float8, dequantize_affine_floatx, fake_quantize_affine,
    fake_quantize_affine_cachemask, pack_uintx, quantize_affine, quantize_affine_float8,
    quantize_affine_floatx, quantize_tensors, unpack_uintx, AffineQuantizedTensor, Error,
    FloatxDtype, MappingType, QParamsOptions, QuantDtype, QuantizeOptions, QuantizedParts, Recipe,
    Selection, StorageLayout, ZeroPointDomain,
};

fn cpu(kind: Kind) -> (Kind, Device) {
    (kind, Device::Cpu)
}

/// `dense` in every layout that is not strided, with the name the error
/// gives it. Block layouts need a 2-D tensor with even dims.
fn non_strided(dense: &Tensor) -> Vec<(&'static str, Tensor)> {
    let block = Some([2i64, 2].as_slice());
    let mut all = vec![
        ("sparse COO", dense.to_sparse(None, None::<&[i64]>, None)),
        ("sparse CSR", dense.to_sparse_csr(None)),
        ("sparse CSC", dense.to_sparse_csc(None)),
        (
            "sparse BSR",
            dense.to_sparse(Some(Layout::SparseBsr), block, None),
        ),
        (
            "sparse BSC",
            dense.to_sparse(Some(Layout::SparseBsc), block, None),
        ),
    ];
    if let Ok(mkldnn) = dense.f_to_mkldnn(dense.kind()) {
        all.push(("MKL-DNN", mkldnn));
    }
    all
}

/// A nested tensor of two float32 [n, 4] rows.
fn nested() -> Tensor {
    Tensor::f_internal_nested_from_padded(
        &Tensor::randn([2, 3, 4], cpu(Kind::Float)),
        &Tensor::from_slice(&[3i64, 4, 2, 4]).view([2, 2]),
        false,
    )
    .unwrap()
}

/// Asserts `r` is the layout error for `arg`, naming `layout`.
#[track_caller]
fn refused<T: std::fmt::Debug>(r: tch_quant::Result<T>, arg: &str, layout: &str) {
    match r {
        Err(Error::UnsupportedLayout {
            arg: a, layout: l, ..
        }) => {
            assert_eq!((a, l), (arg, layout));
        }
        other => panic!("expected a {layout} layout error for {arg}, got {other:?}"),
    }
}

fn both_paths() -> [QParamsOptions; 2] {
    [false, true].map(|force_reference| QParamsOptions {
        force_reference,
        ..Default::default()
    })
}

#[test]
fn non_strided_inputs_are_refused_by_choose_chain_and_quantize() {
    let dense = Tensor::randn([4, 32], cpu(Kind::Float));
    let scale = Tensor::ones([4], cpu(Kind::Float));
    let zp = Tensor::zeros([4], cpu(Kind::Int));
    for (layout, x) in non_strided(&dense)
        .into_iter()
        .chain([("nested", nested())])
    {
        let block: &[i64] = if layout == "nested" {
            &[1, 1, 4]
        } else {
            &[1, 32]
        };
        for o in both_paths() {
            let sym = MappingType::Asymmetric;
            refused(
                choose_qparams_affine(&x, sym, block, QuantDtype::UInt8, &o),
                "input",
                layout,
            );
            refused(
                choose_qparams_and_quantize_affine(&x, sym, block, QuantDtype::UInt8, &o),
                "input",
                layout,
            );
            let qo = QuantizeOptions::from(&o);
            let u8_ = QuantDtype::UInt8;
            refused(
                quantize_affine(&x, block, &scale, Some(&zp), u8_, &qo),
                "input",
                layout,
            );
            refused(
                fake_quantize_affine(&x, block, &scale, Some(&zp), u8_, &qo),
                "input",
                layout,
            );
            refused(
                fake_quantize_affine_cachemask(&x, block, &scale, Some(&zp), u8_, &qo),
                "input",
                layout,
            );
            refused(
                dequantize_affine(&x, block, &scale, Some(&zp), u8_, &qo, Kind::Float),
                "input",
                layout,
            );
            refused(
                choose_qparams_affine_with_min_max(&x, &x, sym, block, u8_, &o),
                "min_val",
                layout,
            );
        }
    }
    // Non-strided qparams.
    let x = Tensor::randn([4, 32], cpu(Kind::Float));
    let sparse_scale = scale.to_sparse(None, None::<&[i64]>, None);
    let qo = QuantizeOptions::default();
    refused(
        quantize_affine(
            &x,
            &[1, 32],
            &sparse_scale,
            Some(&zp),
            QuantDtype::UInt8,
            &qo,
        ),
        "scale",
        "sparse COO",
    );
    let sparse_zp = zp.to_sparse(None, None::<&[i64]>, None);
    refused(
        quantize_affine(
            &x,
            &[1, 32],
            &scale,
            Some(&sparse_zp),
            QuantDtype::UInt8,
            &qo,
        ),
        "zero_point",
        "sparse COO",
    );
}

#[test]
fn non_strided_inputs_are_refused_by_float8_and_floatx() {
    let dense = Tensor::randn([4, 8], cpu(Kind::Float));
    let one = Tensor::from(1.0f32);
    let e4m3 = QuantDtype::Float8E4M3Fn;
    let codes = quantize_affine_float8(&dense, &one, e4m3).unwrap();
    for (layout, x) in non_strided(&dense)
        .into_iter()
        .chain([("nested", nested())])
    {
        refused(choose_qparams_affine_float8(&x, e4m3), "input", layout);
        refused(quantize_affine_float8(&x, &one, e4m3), "input", layout);
        refused(
            choose_qparams_affine_floatx(&x, FloatxDtype::FP6_E3M2),
            "input",
            layout,
        );
        refused(
            quantize_affine_floatx(
                &x,
                &Tensor::ones([4], cpu(Kind::Float)),
                FloatxDtype::FP6_E3M2,
            ),
            "input",
            layout,
        );
        refused(
            dequantize_affine_float8(&codes, &x, Kind::Float),
            "scale",
            layout,
        );
    }
    let floatx_codes = Tensor::zeros([4, 8], cpu(Kind::Uint8));
    let csr = floatx_codes.to_sparse_csr(None);
    refused(
        dequantize_affine_floatx(
            &csr,
            &Tensor::ones([4], cpu(Kind::Float)),
            FloatxDtype::FP6_E3M2,
            Kind::Float,
        ),
        "input",
        "sparse CSR",
    );
}

#[test]
fn non_strided_codes_are_refused_by_pack_and_unpack() {
    let codes = Tensor::randint(16, [4, 16], cpu(Kind::Uint8));
    let layouts = non_strided(&codes);
    assert!(
        layouts.iter().any(|(l, _)| *l == "MKL-DNN"),
        "no uint8 MKL-DNN tensor"
    );
    for (layout, x) in layouts {
        refused(pack_uintx(&x, 4, -1), "data", layout);
        refused(unpack_uintx(&[x], 4, -1), "shards", layout);
    }
    let shards = pack_uintx(&codes, 6, -1).unwrap();
    let sparse_second = [shards[0].shallow_clone(), shards[1].to_sparse_csr(None)];
    refused(unpack_uintx(&sparse_second, 6, -1), "shards", "sparse CSR");
}

#[test]
fn non_strided_tensors_are_refused_by_the_quantized_tensor_and_models() {
    let w = Tensor::randn([8, 64], cpu(Kind::Float));
    let recipe = Recipe::Int4WeightOnly {
        group_size: 32,
        use_hqq: false,
    };
    for (layout, x) in non_strided(&w).into_iter().chain([("nested", nested())]) {
        refused(
            AffineQuantizedTensor::quantize(&x, &recipe),
            "input",
            layout,
        );
        refused(
            quantize_tensors([("fc.weight", &x)], &recipe, &Selection::default()),
            "tensors",
            layout,
        );
    }
    let parts = |scale: Tensor| QuantizedParts {
        qdata: vec![Tensor::zeros([1, 8], cpu(Kind::Uint8))],
        scale,
        zero_point: Some(Tensor::zeros([1], cpu(Kind::Int))),
        block_size: vec![1, 8],
        mapping_type: MappingType::Asymmetric,
        target_dtype: QuantDtype::UInt8,
        quant_min: 0.0,
        quant_max: 255.0,
        eps: 1e-6,
        preserve_zero: true,
        zero_point_domain: ZeroPointDomain::Int,
        shape: vec![1, 8],
        dtype: Kind::Float,
        layout: StorageLayout::Plain,
    };
    let scale = Tensor::ones([1], cpu(Kind::Float));
    assert!(AffineQuantizedTensor::from_parts(parts(scale.shallow_clone())).is_ok());
    refused(
        AffineQuantizedTensor::from_parts(parts(scale.to_sparse(None, None::<&[i64]>, None))),
        "scale",
        "sparse COO",
    );
    let mut sparse_codes = parts(scale);
    sparse_codes.qdata[0] = sparse_codes.qdata[0].to_sparse_csr(None);
    refused(
        AffineQuantizedTensor::from_parts(sparse_codes),
        "qdata",
        "sparse CSR",
    );
}

#[test]
fn undefined_tensors_are_refused() {
    let undefined = Tensor::new();
    for o in both_paths() {
        let r = choose_qparams_affine(
            &undefined,
            MappingType::Symmetric,
            &[1],
            QuantDtype::Int8,
            &o,
        );
        assert!(
            matches!(r, Err(Error::InvalidArgument { arg: "input", .. })),
            "{r:?}"
        );
    }
    assert!(matches!(
        pack_uintx(&undefined, 4, -1),
        Err(Error::InvalidArgument { arg: "data", .. })
    ));
}

/// A float32 tensor of `rank` dims, all 1 but the last (8).
fn of_rank(rank: usize) -> Tensor {
    let mut shape = vec![1i64; rank];
    shape[rank - 1] = 8;
    Tensor::randn(shape.as_slice(), cpu(Kind::Float))
}

#[test]
fn ranks_above_64_are_refused_alike_on_both_paths() {
    for rank in [65, 72] {
        let x = of_rank(rank);
        let mut block = vec![1i64; rank];
        block[rank - 1] = 8;
        for o in both_paths() {
            let r = choose_qparams_affine(&x, MappingType::Symmetric, &block, QuantDtype::Int8, &o);
            assert!(
                matches!(&r, Err(Error::ShapeMismatch { arg: "input", got, .. }) if got.len() == rank),
                "rank {rank}, force_reference {}: {r:?}",
                o.force_reference
            );
            let r = choose_qparams_and_quantize_affine(
                &x,
                MappingType::Symmetric,
                &block,
                QuantDtype::Int8,
                &o,
            );
            assert!(matches!(r, Err(Error::ShapeMismatch { arg: "input", .. })));
        }
        let scale = Tensor::ones([1], cpu(Kind::Float));
        let r = quantize_affine(
            &x,
            &block,
            &scale,
            None,
            QuantDtype::Int8,
            &QuantizeOptions {
                zero_point_domain: ZeroPointDomain::None,
                ..Default::default()
            },
        );
        assert!(matches!(r, Err(Error::ShapeMismatch { arg: "input", .. })));
        assert!(matches!(
            choose_qparams_affine_float8(&x, QuantDtype::Float8E4M3Fn),
            Err(Error::ShapeMismatch { arg: "input", .. })
        ));
    }
    // Rank 64 is fine, and both paths agree on it.
    let x = of_rank(64);
    let mut block = vec![1i64; 64];
    block[63] = 8;
    let [fused, reference] = both_paths().map(|o| {
        choose_qparams_affine(&x, MappingType::Symmetric, &block, QuantDtype::Int8, &o).unwrap()
    });
    assert!(fused.scale.equal(&reference.scale));
}

#[test]
fn block_views_above_64_dims_are_refused_alike_on_both_paths() {
    // Rank 60, five dims split into (2, 2): a 65-dim reduction view, which
    // the fused path could reduce but libtorch's amin/amax cannot.
    let mut shape = vec![1i64; 60];
    let mut block = vec![1i64; 60];
    for d in 0..5 {
        shape[d] = 4;
        block[d] = 2;
    }
    let x = Tensor::randn(shape.as_slice(), cpu(Kind::Float));
    for o in both_paths() {
        let r = choose_qparams_affine(&x, MappingType::Asymmetric, &block, QuantDtype::UInt8, &o);
        assert!(
            matches!(
                r,
                Err(Error::ShapeMismatch {
                    arg: "block_size",
                    ..
                })
            ),
            "force_reference {}: {r:?}",
            o.force_reference
        );
    }
    let mut weight = vec![1i64; 64];
    weight[63] = 64;
    assert!(matches!(
        Recipe::Int4WeightOnly {
            group_size: 32,
            use_hqq: false
        }
        .check(&weight, Kind::Float),
        Err(tch_quant::Unfit::TooManyDims { dims: 65 })
    ));
}

/// A uint8 tensor of 2^61 elements that all share one byte of storage.
fn stride_zero_huge() -> Tensor {
    Tensor::zeros([1], cpu(Kind::Uint8)).expand([1i64 << 61], false)
}

#[test]
fn packing_a_huge_stride_zero_tensor_is_an_allocation_error() {
    let r = pack_uintx(&stride_zero_huge(), 4, -1);
    assert!(
        matches!(
            r,
            Err(Error::Torch {
                op: "pack_uintx",
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn unpacking_a_huge_stride_zero_shard_is_an_error() {
    for nbits in [1, 2, 4] {
        let r = unpack_uintx(&[stride_zero_huge()], nbits, 0);
        assert!(
            matches!(r, Err(Error::ShapeMismatch { arg: "shards", .. })),
            "uint{nbits}: {r:?}"
        );
    }
    // Codes that can be counted but not allocated.
    let shard = Tensor::zeros([1], cpu(Kind::Uint8)).expand([1i64 << 59], false);
    let r = unpack_uintx(&[shard], 4, 0);
    assert!(
        matches!(
            r,
            Err(Error::Torch {
                op: "unpack_uintx",
                ..
            })
        ),
        "{r:?}"
    );
}
