//! The quantized linear layers' contract beyond parity (which
//! `tests/linear_parity.rs` checks against torchao): typed errors that name
//! the argument for every bad weight, bias, input and scheme, nothing
//! panicking; swapping a VarStore model's layers; the packed layouts'
//! shapes; weights stored small.

use tch::{nn, nn::Module, Device, Kind, Tensor};
use tch_quant::{
    quantize_linears, DenseLinears, Error, Int4CpuWeight, Linear, LinearScheme, LinearSource,
    QuantizedLinear, Selection, SkipReason, Unfit,
};

fn randn(shape: &[i64], kind: Kind) -> Tensor {
    Tensor::randn(shape, (kind, Device::Cpu))
}

/// The argument an error names.
fn arg(e: &Error) -> &'static str {
    match e {
        Error::InvalidArgument { arg, .. }
        | Error::UnsupportedKind { arg, .. }
        | Error::ShapeMismatch { arg, .. }
        | Error::UnsupportedLayout { arg, .. } => arg,
        other => panic!("expected an argument error, got {other}"),
    }
}

/// Every CPU scheme, with group sizes that divide 256.
fn cpu_schemes() -> Vec<LinearScheme> {
    vec![
        LinearScheme::Int8WeightOnly,
        LinearScheme::Int4Cpu { group_size: 32 },
        LinearScheme::Int4Cpu { group_size: 256 },
        LinearScheme::Float8WeightOnly,
        LinearScheme::Int8DynamicActivationInt8Weight,
        LinearScheme::UIntXWeightOnly {
            bits: 3,
            group_size: 64,
        },
    ]
}

#[test]
fn forward_shapes_follow_nn_linear() {
    let mut checked = 0;
    for scheme in cpu_schemes() {
        for kind in [Kind::Float, Kind::BFloat16, Kind::Half] {
            let w = randn(&[48, 256], kind);
            let b = randn(&[48], kind);
            let q = QuantizedLinear::new(&w, Some(&b), scheme).unwrap();
            assert_eq!((q.in_features(), q.out_features()), (256, 48));
            for shape in [&[256][..], &[5, 256], &[2, 3, 256], &[0, 256]] {
                let x = randn(shape, kind);
                match q.f_forward(&x) {
                    Ok(y) => {
                        let mut want = shape.to_vec();
                        *want.last_mut().unwrap() = 48;
                        assert_eq!(y.size(), want, "{scheme} {kind:?} {shape:?}");
                        assert_eq!(y.kind(), kind, "{scheme} {shape:?}");
                        checked += 1;
                    }
                    // An empty batch may be refused, but only with a typed
                    // error, never a panic.
                    Err(e) => assert!(shape[0] == 0, "{scheme} {kind:?} {shape:?}: {e}"),
                }
            }
        }
    }
    println!("forward shapes: {checked} (scheme, dtype, input shape) cases");
}

#[test]
fn bad_inputs_name_input() {
    for scheme in cpu_schemes() {
        let q = QuantizedLinear::new(&randn(&[16, 256], Kind::BFloat16), None, scheme).unwrap();
        let cases = [
            randn(&[4, 255], Kind::BFloat16),
            randn(&[4, 256], Kind::Float),
            Tensor::zeros([4, 256], (Kind::Int, Device::Cpu)),
            Tensor::from(1.0f32).to_kind(Kind::BFloat16),
            randn(&[4, 256], Kind::BFloat16).to_sparse(None, None::<i64>, None),
        ];
        for x in &cases {
            let e = q.f_forward(x).unwrap_err();
            assert_eq!(arg(&e), "input", "{scheme}: {e}");
            assert!(e.to_string().contains("QuantizedLinear::forward"), "{e}");
        }
    }
    let q = QuantizedLinear::new(
        &randn(&[16, 256], Kind::Float),
        None,
        LinearScheme::Int8WeightOnly,
    )
    .unwrap();
    let as_module = Linear::Quantized(q);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        as_module.forward(&randn(&[4, 255], Kind::Float))
    }));
    assert!(
        caught.is_err(),
        "Module::forward panics, as nn::Linear's does"
    );
}

#[test]
fn bad_weights_and_biases_name_them() {
    let s = LinearScheme::Int8WeightOnly;
    let cases: Vec<(Tensor, Option<Tensor>, &str)> = vec![
        (randn(&[16], Kind::Float), None, "weight"),
        (randn(&[2, 16, 32], Kind::Float), None, "weight"),
        (
            Tensor::zeros([16, 32], (Kind::Int, Device::Cpu)),
            None,
            "weight",
        ),
        (randn(&[16, 0], Kind::Float), None, "weight"),
        (
            randn(&[16, 32], Kind::Float).to_sparse(None, None::<i64>, None),
            None,
            "weight",
        ),
        (
            randn(&[16, 32], Kind::Float),
            Some(randn(&[15], Kind::Float)),
            "bias",
        ),
        (
            randn(&[16, 32], Kind::Float),
            Some(randn(&[16], Kind::Half)),
            "bias",
        ),
        (
            randn(&[16, 32], Kind::Float),
            Some(randn(&[16, 1], Kind::Float)),
            "bias",
        ),
    ];
    for (w, b, want) in &cases {
        let e = QuantizedLinear::new(w, b.as_ref(), s).unwrap_err();
        assert_eq!(arg(&e), *want, "{e}");
    }
    // Shapes torchao's quantize_ silently leaves dense are refused, with
    // the reason.
    let refusals = [
        (LinearScheme::Int4Cpu { group_size: 64 }, vec![16, 96]),
        (LinearScheme::Int8DynamicActivationInt8Weight, vec![16, 16]),
        (
            LinearScheme::UIntXWeightOnly {
                bits: 4,
                group_size: 32,
            },
            vec![16, 48],
        ),
        (
            LinearScheme::Int4TensorCoreTiled {
                group_size: 32,
                inner_k_tiles: 8,
            },
            vec![16, 64],
        ),
    ];
    for (scheme, shape) in refusals {
        let e = QuantizedLinear::new(&randn(&shape, Kind::BFloat16), None, scheme).unwrap_err();
        assert_eq!(arg(&e), "weight", "{scheme}: {e}");
        assert!(e.to_string().contains(&scheme.name()), "{e}");
    }
}

#[test]
fn bad_schemes_name_their_argument() {
    let w = randn(&[16, 256], Kind::BFloat16);
    for (scheme, want) in [
        (LinearScheme::Int4Cpu { group_size: 48 }, "group_size"),
        (
            LinearScheme::Int4TensorCoreTiled {
                group_size: 64,
                inner_k_tiles: 3,
            },
            "inner_k_tiles",
        ),
        (
            LinearScheme::UIntXWeightOnly {
                bits: 8,
                group_size: 32,
            },
            "bits",
        ),
        (
            LinearScheme::UIntXWeightOnly {
                bits: 0,
                group_size: 32,
            },
            "bits",
        ),
        (
            LinearScheme::UIntXWeightOnly {
                bits: 2,
                group_size: 0,
            },
            "group_size",
        ),
    ] {
        let e = QuantizedLinear::new(&w, None, scheme).unwrap_err();
        assert_eq!(arg(&e), want, "{scheme:?}: {e}");
    }
    for bad in ["int4-cpu", "int4-cpu-gx", "uint4", "float8", ""] {
        let e = bad.parse::<LinearScheme>().unwrap_err();
        assert_eq!(arg(&e), "s", "{bad:?}: {e}");
    }
}

#[test]
fn layouts_have_torchaos_shapes_and_sizes() {
    let w = randn(&[64, 512], Kind::BFloat16);
    let packed = Int4CpuWeight::quantize(&w, 128).unwrap();
    assert_eq!(packed.scale_and_zero().size(), vec![4, 64, 2]);
    assert_eq!(packed.scale_and_zero().kind(), Kind::BFloat16);
    assert_eq!(packed.packed_weight().kind(), Kind::Uint8);
    let dense_bytes = 64 * 512 * 2;
    for (scheme, at_most) in [
        (LinearScheme::Int4Cpu { group_size: 128 }, dense_bytes / 3),
        (LinearScheme::Int8WeightOnly, dense_bytes * 6 / 10),
        (LinearScheme::Float8WeightOnly, dense_bytes * 6 / 10),
        (
            LinearScheme::UIntXWeightOnly {
                bits: 2,
                group_size: 128,
            },
            dense_bytes / 5,
        ),
    ] {
        let q = QuantizedLinear::new(&w, None, scheme).unwrap();
        assert!(
            q.weight_nbytes() <= at_most,
            "{scheme}: {}",
            q.weight_nbytes()
        );
    }
    // Refused off the CPU layout's shape rules with the argument named.
    let e = Int4CpuWeight::quantize(&randn(&[64, 96], Kind::BFloat16), 64).unwrap_err();
    assert_eq!(arg(&e), "weight", "{e}");
    let e = packed
        .matmul(&randn(&[3, 511], Kind::BFloat16))
        .unwrap_err();
    assert_eq!(arg(&e), "x", "{e}");
    let e = packed.matmul(&randn(&[3, 512], Kind::Float)).unwrap_err();
    assert_eq!(arg(&e), "x", "{e}");
}

/// A two-layer model written once over a `LinearSource`.
#[derive(Debug)]
struct Mlp {
    up: Linear,
    down: Linear,
    head: Linear,
}

impl Mlp {
    fn new(p: &nn::Path, linears: &dyn LinearSource) -> tch_quant::Result<Self> {
        Ok(Mlp {
            up: linears.linear(&(p / "up"), 64, 256)?,
            down: linears.linear(&(p / "down"), 256, 64)?,
            // in_features 16: int8 dynamic leaves it dense.
            head: linears.linear(&(p / "head"), 16, 8)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.down.forward(&self.up.forward(x).relu());
        self.head.forward(&h.narrow(-1, 0, 16))
    }
}

#[test]
fn var_store_models_swap_linears() {
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root() / "mlp";
    let dense = Mlp::new(&root, &DenseLinears(Default::default())).unwrap();
    let x = randn(&[3, 64], Kind::Float);
    let reference = tch::no_grad(|| dense.forward(&x));
    let scheme = LinearScheme::Int8DynamicActivationInt8Weight;
    let q = quantize_linears(&vs, scheme, &Selection::default()).unwrap();
    assert_eq!(q.len(), 2);
    assert!(q.get("mlp.up").is_some() && q.get("mlp.down").is_some());
    assert!(matches!(
        q.skipped().get("mlp.head.weight"),
        Some(SkipReason::Unfit(Unfit::Linear(_)))
    ));
    // Only weights are considered; biases travel with their layer.
    assert!(!q.skipped().contains_key("mlp.up.bias"));
    let quantized = Mlp::new(&root, &q).unwrap();
    assert!(quantized.up.quantized().is_some());
    assert!(quantized.head.quantized().is_none());
    // The dense layer left in place is the store's own variable.
    let head_dense = match &quantized.head {
        Linear::Dense(l) => l.ws.shallow_clone(),
        Linear::Quantized(_) => unreachable!(),
    };
    assert_eq!(
        head_dense.data_ptr(),
        root.sub("head").get("weight").unwrap().data_ptr()
    );
    let y = tch::no_grad(|| quantized.forward(&x));
    assert_eq!(y.size(), reference.size());
    let cos = Tensor::cosine_similarity(&y.flatten(0, -1), &reference.flatten(0, -1), 0, 1e-8)
        .double_value(&[]);
    assert!(cos > 0.99, "int8 dynamic is close to dense: {cos}");
    // Built over a fresh store, the quantized linears come from `q` and the
    // dense one from the store that was quantized; none creates a variable.
    let fresh = nn::VarStore::new(Device::Cpu);
    let rebuilt = Mlp::new(&(fresh.root() / "mlp"), &q).unwrap();
    assert!(fresh.variables().is_empty());
    let y2 = tch::no_grad(|| rebuilt.forward(&x));
    assert!(y2.equal(&y), "the same layers, the same output");
    // The source refuses a layer whose shape differs from the definition,
    // and a path the store does not have.
    let e = q.linear(&(vs.root() / "mlp" / "up"), 64, 128).unwrap_err();
    assert_eq!(arg(&e), "path", "{e}");
    let e = q
        .linear(&(vs.root() / "mlp" / "missing"), 64, 128)
        .unwrap_err();
    assert_eq!(arg(&e), "path", "{e}");
    let e = DenseLinears(Default::default())
        .linear(&(vs.root() / "x"), 0, 4)
        .unwrap_err();
    assert_eq!(arg(&e), "in_dim", "{e}");
    // A selection decides which layers, as for quantize_var_store.
    let only_up = Selection::default().include(|n| n.contains(".up."));
    let q = quantize_linears(&vs, LinearScheme::Int8WeightOnly, &only_up).unwrap();
    assert_eq!(
        q.layers().map(|(p, _)| p).collect::<Vec<_>>(),
        vec!["mlp.up"]
    );
}
