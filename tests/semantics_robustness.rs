//! Hostile inputs for the torchao 0.18 semantics (issue 12 review): every
//! call either matches torchao 0.18.0 bit for bit or is refused with a
//! typed error naming the op, and none panics.
//!
//! One run of `tests/ao18/hostile.py` (torchao 0.18.0 in `.venv-ao18`)
//! records torchao's answer to about 2,600 hostile calls: keepdim-shaped
//! qparams fed back, qparams of other shapes and dtypes, empty and 0-dim
//! inputs, NaN / inf data and qparams, int16/int32 codes and huge zero
//! points into float16 / bfloat16, full int32 ranges, reversed ranges,
//! out-of-range codes, misused fake-quantize domains, and qparams made the
//! way torchao 0.11 makes them. They are replayed on the fused and the
//! reference path as they are, then again with every tensor argument
//! non-contiguous (same values) and every float one requiring grad.
//! Records marked `crate_refuses` are calls torchao computes that the crate
//! refuses on purpose (README, "Semantics: torchao 0.11 and 0.18").

#[path = "common/live.rs"]
#[allow(dead_code)]
mod live;
#[path = "ao18/replay.rs"]
mod replay;
#[path = "common/store.rs"]
mod store;

#[path = "common/oracle.rs"]
mod common_oracle;

use common_oracle::oracle_python_ao18 as oracle_python;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};
use tch_quant::{
    choose_qparams_affine, choose_qparams_affine_dont_preserve_zero,
    choose_qparams_affine_tinygemm, choose_qparams_affine_with_min_max,
    choose_qparams_and_quantize_affine, dequantize_affine, dequantize_affine_into,
    dequantize_affine_no_zero_point, dequantize_affine_tinygemm, fake_quantize_affine,
    quantize_affine, quantize_affine_no_zero_point, quantize_affine_tinygemm, Error, MappingType,
    QParamsOptions, QuantDtype, QuantizeOptions, Semantics, ZeroPointDomain,
};

use crate::store::{compare, Store};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The same values in a non-contiguous tensor (every other element of a
/// buffer twice as wide, from its second element), and requiring grad where
/// the dtype can.
fn hostile_copy(t: &Tensor) -> Tensor {
    let mut size = t.size();
    let t = if let Some(last) = size.last_mut() {
        let n = *last;
        *last = 2 * n + 1;
        let wide = Tensor::zeros(&size, (t.kind(), t.device()));
        // A storage offset of one element, and a last stride of two.
        let mut view = wide.slice(-1, 1, 2 * n + 1, 2);
        view.copy_(t);
        view
    } else {
        t.shallow_clone()
    };
    if matches!(
        t.kind(),
        Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double
    ) {
        t.set_requires_grad(true)
    } else {
        t
    }
}

fn check(what: &str, r: &replay::Report) {
    for d in r.diffs.iter().take(400) {
        println!("  DIFF {d}");
    }
    assert_eq!(
        r.identical,
        r.total,
        "{what}: {} of {} hostile calls differ from torchao 0.18.0",
        r.total - r.identical,
        r.total
    );
}

/// torchao 0.11's qparams (the crate's default semantics) for the `mix/`
/// records, which hostile.py made with 0.18's choose and 0.11's eps and
/// zero-point dtype: the 0.18 quantizes and dequantizes of those records
/// are then what a 0.11 choose followed by a 0.18 dequantize gives.
fn check_mixed(store: &Store) -> Result<usize> {
    let mut n = 0;
    for case in store.cases.iter().filter(|c| {
        c["fn"] == "choose_qparams_affine" && c["id"].as_str().unwrap_or("").starts_with("mix/")
    }) {
        let a = &case["args"];
        let input = &store.tensors[case["inputs"]["input"].as_str().context("input")?];
        let block: Vec<i64> = serde_json::from_value(a["block_size"].clone())?;
        let qp = choose_qparams_affine(
            input,
            a["mapping_type"].as_str().context("mapping")?.parse()?,
            &block,
            a["dtype"].as_str().context("dtype")?.parse()?,
            &QParamsOptions::default(),
        )?;
        let out = &case["expected"]["outputs"];
        for (name, got) in [
            ("scale", Some(&qp.scale)),
            ("zero_point", qp.zero_point.as_ref()),
        ] {
            let want = &store.tensors[out[name].as_str().context("output")?];
            if let Some(d) = compare(want, got.context("a zero point")?)? {
                bail!(
                    "{}: 0.11 {name} differs from the mix record: {d}",
                    case["id"]
                );
            }
        }
        n += 1;
    }
    Ok(n)
}

#[test]
fn hostile_calls_match_torchao_0_18_or_are_typed_refusals() -> Result<()> {
    let Some(python) = oracle_python() else {
        return Ok(());
    };
    let dir = std::env::temp_dir().join(format!("tch-quant-hostile-{}", std::process::id()));
    let status = Command::new(&python)
        .arg(root().join("tests/ao18/hostile.py"))
        .arg("--out")
        .arg(&dir)
        .status()
        .with_context(|| format!("running {}", python.display()))?;
    if !status.success() {
        bail!("tests/ao18/hostile.py failed: {status}");
    }
    let loaded = replay::load(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let store = loaded?;
    let plain = replay::replay_all(&store)?;
    check("contiguous", &plain);
    let refused = store
        .cases
        .iter()
        .filter(|c| c["expected"]["ok"] != true || c.get("crate_refuses").is_some())
        .count();
    let mixed = check_mixed(&store)?;

    // Only the arguments change; the expected outputs stay torchao's.
    let args: std::collections::HashSet<&str> = store
        .cases
        .iter()
        .filter_map(|c| c["inputs"].as_object())
        .flat_map(|m| m.values().filter_map(|v| v.as_str()))
        .collect();
    let strided = Store {
        tensors: store
            .tensors
            .iter()
            .map(|(k, t)| {
                let t = if args.contains(k.as_str()) {
                    hostile_copy(t)
                } else {
                    t.shallow_clone()
                };
                (k.clone(), t)
            })
            .collect(),
        cases: store.cases.clone(),
        torch: store.torch.clone(),
        torchao: store.torchao.clone(),
        manifest: store.manifest.clone(),
    };
    let odd = replay::replay_all(&strided)?;
    check("non-contiguous, requires_grad", &odd);
    for r in plain.torch_refusals.iter().take(20) {
        println!("  libtorch refusal: {r}");
    }
    println!(
        "semantics robustness (torchao 0.18.0): {}/{} hostile calls identical ({refused} refusals), \
         {}/{} again non-contiguous with requires_grad; {mixed} 0.11 choose(s) equal to the mixed \
         records; {} shared refusals are libtorch errors",
        plain.identical,
        plain.total,
        odd.identical,
        odd.total,
        plain.torch_refusals.len()
    );
    Ok(())
}

/// Runs `f`, failing with a message if it panics.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| panic!("{what} panicked"))
}

/// Requires a typed (not libtorch) error naming `op` and `arg`.
fn refused<T: std::fmt::Debug>(what: &str, r: tch_quant::Result<T>, op: &str, arg: &str) {
    let e = r.expect_err(what);
    let msg = e.to_string();
    assert!(
        !matches!(e, Error::Torch { .. }) && msg.contains(op) && msg.contains(arg),
        "{what}: expected a typed error naming {op} and {arg}, got {msg}"
    );
}

fn o18() -> QuantizeOptions {
    QuantizeOptions {
        semantics: Semantics::Torchao0_18,
        ..Default::default()
    }
}

#[test]
fn non_strided_inputs_and_removed_options_are_typed_refusals() {
    let x = Tensor::randn([4, 32], (Kind::Float, Device::Cpu));
    let sparse = x.to_sparse_sparse_dim(1);
    let c18 = QParamsOptions {
        semantics: Semantics::Torchao0_18,
        ..Default::default()
    };
    let qp = choose_qparams_affine(
        &x,
        MappingType::Asymmetric,
        &[1, 16],
        QuantDtype::UInt8,
        &c18,
    )
    .unwrap();
    let (s, z) = (&qp.scale, qp.zero_point.as_ref().unwrap());
    let codes = quantize_affine(&x, &[1, 16], s, Some(z), QuantDtype::UInt8, &o18()).unwrap();
    let b = &[1i64, 16][..];
    let u8_ = QuantDtype::UInt8;
    no_panic("sparse inputs", || {
        refused(
            "sparse choose",
            choose_qparams_affine_tinygemm(&sparse, MappingType::Asymmetric, b, u8_, &c18),
            "choose_qparams_affine_tinygemm",
            "input",
        );
        refused(
            "sparse choose",
            choose_qparams_affine_dont_preserve_zero(
                &sparse,
                MappingType::Asymmetric,
                b,
                u8_,
                &c18,
            ),
            "choose_qparams_affine_dont_preserve_zero",
            "input",
        );
        refused(
            "sparse quantize",
            quantize_affine_no_zero_point(&sparse, b, s, u8_, &o18()),
            "quantize_affine_no_zero_point",
            "input",
        );
        refused(
            "sparse scale",
            quantize_affine_tinygemm(
                &x,
                b,
                &s.to_sparse_sparse_dim(1),
                Some(&z.to_kind(Kind::Float)),
                u8_,
                &o18(),
            ),
            "quantize_affine_tinygemm",
            "scale",
        );
        refused(
            "sparse zero point",
            dequantize_affine_tinygemm(
                &codes,
                b,
                s,
                Some(&z.to_sparse_sparse_dim(1)),
                u8_,
                &o18(),
                Kind::Float,
            ),
            "dequantize_affine_tinygemm",
            "zero_point",
        );
        refused(
            "sparse codes",
            dequantize_affine_no_zero_point(
                &codes.to_sparse_sparse_dim(1),
                b,
                s,
                u8_,
                &o18(),
                Kind::Float,
            ),
            "dequantize_affine_no_zero_point",
            "input",
        );
        refused(
            "sparse min",
            choose_qparams_affine_with_min_max(
                &s.to_sparse_sparse_dim(1),
                s,
                MappingType::Symmetric,
                b,
                QuantDtype::Int8,
                &c18,
            ),
            "choose_qparams_affine_with_min_max",
            "min_val",
        );
    });
    no_panic("removed options", || {
        for (opts, arg) in [
            (
                QParamsOptions {
                    preserve_zero: false,
                    ..c18
                },
                "preserve_zero",
            ),
            (
                QParamsOptions {
                    zero_point_domain: ZeroPointDomain::Float,
                    ..c18
                },
                "zero_point_domain",
            ),
            (
                QParamsOptions {
                    zero_point_domain: ZeroPointDomain::None,
                    ..c18
                },
                "zero_point_domain",
            ),
        ] {
            for force_reference in [false, true] {
                let opts = QParamsOptions {
                    force_reference,
                    ..opts
                };
                refused(
                    "removed option",
                    choose_qparams_and_quantize_affine(&x, MappingType::Asymmetric, b, u8_, &opts),
                    "choose_qparams_and_quantize_affine",
                    arg,
                );
            }
            refused(
                "removed option",
                choose_qparams_affine_with_min_max(s, s, MappingType::Asymmetric, b, u8_, &opts),
                "choose_qparams_affine_with_min_max",
                arg,
            );
        }
        let keep = QParamsOptions {
            keepdim: true,
            ..c18
        };
        for f in [
            choose_qparams_affine_tinygemm,
            choose_qparams_affine_dont_preserve_zero,
        ] {
            refused(
                "keepdim",
                f(&x, MappingType::Asymmetric, b, u8_, &keep),
                "choose_qparams_affine_",
                "keepdim",
            );
        }
        refused(
            "keepdim under 0.11",
            choose_qparams_and_quantize_affine(
                &x,
                MappingType::Asymmetric,
                b,
                u8_,
                &QParamsOptions {
                    semantics: Semantics::Torchao0_11,
                    ..keep
                },
            ),
            "choose_qparams_and_quantize_affine",
            "keepdim",
        );
        // A 0.11 None-domain choose gives no zero point; 0.18's Int-domain
        // quantize cannot take that and names the function that can.
        refused(
            "0.18 quantize without a zero point",
            quantize_affine(&x, b, s, None, u8_, &o18()),
            "quantize_affine",
            "quantize_affine_no_zero_point",
        );
        refused(
            "0.18 fake-quantize without a zero point",
            fake_quantize_affine(&x, b, s, None, u8_, &o18()),
            "fake_quantize_affine",
            "zero_point",
        );
        for domain in [ZeroPointDomain::Float, ZeroPointDomain::None] {
            let o = QuantizeOptions {
                zero_point_domain: domain,
                ..o18()
            };
            refused(
                "0.18 quantize domain",
                quantize_affine(&x, b, s, Some(z), u8_, &o),
                "quantize_affine",
                "zero_point_domain",
            );
            let mut out = Tensor::empty([4, 32], (Kind::Float, Device::Cpu));
            refused(
                "0.18 dequantize_into domain",
                dequantize_affine_into(&codes, b, s, Some(z), u8_, &o, &mut out),
                "dequantize_affine_into",
                "zero_point_domain",
            );
        }
    });
}

/// keepdim under 0.18 gives the input's rank with the same values, and
/// those qparams, fed back, give the same codes on both paths (torchao's
/// view reads them so).
#[test]
fn keepdim_qparams_round_trip_on_both_paths() {
    for (shape, block) in [
        (vec![4i64, 32], vec![1i64, 16]),
        (vec![2, 3, 4, 8], vec![1, 3, 2, 8]),
        (vec![], vec![]),
    ] {
        let x = Tensor::randn(&shape, (Kind::BFloat16, Device::Cpu));
        for force_reference in [false, true] {
            let base = QParamsOptions {
                semantics: Semantics::Torchao0_18,
                force_reference,
                ..Default::default()
            };
            let keep = QParamsOptions {
                keepdim: true,
                ..base
            };
            let (flat, q_flat) = no_panic("chain", || {
                choose_qparams_and_quantize_affine(
                    &x,
                    MappingType::Symmetric,
                    &block,
                    QuantDtype::Int4,
                    &base,
                )
                .unwrap()
            });
            let (kept, q_kept) = choose_qparams_and_quantize_affine(
                &x,
                MappingType::Symmetric,
                &block,
                QuantDtype::Int4,
                &keep,
            )
            .unwrap();
            let want: Vec<i64> = shape.iter().zip(&block).map(|(n, b)| n / b).collect();
            assert_eq!(kept.scale.size(), want);
            assert!(kept.scale.reshape([-1]).equal(&flat.scale.reshape([-1])));
            assert!(q_kept.equal(&q_flat));
            let o = QuantizeOptions {
                force_reference,
                ..o18()
            };
            let z = kept.zero_point.as_ref();
            let q = quantize_affine(&x, &block, &kept.scale, z, QuantDtype::Int4, &o).unwrap();
            assert!(q.equal(&q_flat), "{shape:?} {force_reference}");
            let d1 =
                dequantize_affine(&q, &block, &kept.scale, z, QuantDtype::Int4, &o, Kind::Half);
            let d2 = dequantize_affine(
                &q,
                &block,
                &flat.scale,
                flat.zero_point.as_ref(),
                QuantDtype::Int4,
                &o,
                Kind::Half,
            );
            assert!(d1.unwrap().equal(&d2.unwrap()));
            let f = fake_quantize_affine(&x, &block, &kept.scale, z, QuantDtype::Int4, &o).unwrap();
            assert_eq!(f.size(), shape);
        }
    }
}

/// Qparams on another device are refused naming the argument (needs CUDA).
#[test]
fn qparams_on_another_device_are_typed_refusals() {
    if !tch::Cuda::is_available() {
        println!("semantics robustness: device mismatch skipped: no CUDA");
        return;
    }
    let x = Tensor::randn([4, 32], (Kind::Float, Device::Cpu));
    let s = Tensor::ones([4, 2], (Kind::Float, Device::Cuda(0)));
    let z = Tensor::zeros([4, 2], (Kind::Float, Device::Cuda(0)));
    let b = &[1i64, 16][..];
    no_panic("device", || {
        refused(
            "scale on cuda",
            quantize_affine_tinygemm(&x, b, &s, Some(&z), QuantDtype::UInt4, &o18()),
            "quantize_affine_tinygemm",
            "scale",
        );
        refused(
            "scale on cuda",
            quantize_affine_no_zero_point(&x, b, &s, QuantDtype::Int8, &o18()),
            "quantize_affine_no_zero_point",
            "scale",
        );
        let codes = Tensor::zeros([4, 32], (Kind::Uint8, Device::Cpu));
        refused(
            "zero point on cuda",
            dequantize_affine_tinygemm(
                &codes,
                b,
                &s.to_device(Device::Cpu),
                Some(&z),
                QuantDtype::UInt4,
                &o18(),
                Kind::Float,
            ),
            "dequantize_affine_tinygemm",
            "zero_point",
        );
    });
}

/// Scalars and block sizes no tensor carries: NaN / inf / fractional /
/// out-of-dtype quant ranges and eps, zero / negative / huge block sizes.
/// Each 0.18 entry point refuses them with a typed error naming the op
/// (torchao asserts on some and computes garbage on others).
#[test]
fn hostile_scalars_and_block_sizes_are_typed_refusals() {
    let x = Tensor::randn([4, 32], (Kind::BFloat16, Device::Cpu));
    let s = Tensor::ones([4, 2], (Kind::Float, Device::Cpu));
    let zf = Tensor::zeros([4, 2], (Kind::Float, Device::Cpu));
    let zi = Tensor::zeros([4, 2], (Kind::Int, Device::Cpu));
    let codes = Tensor::zeros([4, 32], (Kind::Uint8, Device::Cpu));
    let u4 = QuantDtype::UInt4;
    let good = &[1i64, 16][..];
    let ranges = [
        (Some(f64::NAN), None),
        (None, Some(f64::INFINITY)),
        (Some(f64::NEG_INFINITY), None),
        (Some(0.5), None),
        (None, Some(15.5)),
        (Some(-1.0), None),
        (None, Some(16.0)),
        (Some(9.0), Some(3.0)),
    ];
    for (quant_min, quant_max) in ranges {
        let what = format!("quant range {quant_min:?}..{quant_max:?}");
        let c = QParamsOptions {
            quant_min,
            quant_max,
            semantics: Semantics::Torchao0_18,
            ..Default::default()
        };
        let q = QuantizeOptions {
            quant_min,
            quant_max,
            ..o18()
        };
        no_panic(&what, || {
            let a = MappingType::Asymmetric;
            refused(
                &what,
                choose_qparams_affine(&x, a, good, u4, &c),
                "choose",
                "quant_m",
            );
            refused(
                &what,
                choose_qparams_affine_tinygemm(&x, a, good, u4, &c),
                "tinygemm",
                "quant_m",
            );
            refused(
                &what,
                choose_qparams_affine_dont_preserve_zero(&x, a, good, u4, &c),
                "dont",
                "quant_m",
            );
            refused(
                &what,
                choose_qparams_and_quantize_affine(&x, a, good, u4, &c),
                "choose",
                "quant_m",
            );
            refused(
                &what,
                quantize_affine(&x, good, &s, Some(&zi), u4, &q),
                "quantize",
                "quant_m",
            );
            refused(
                &what,
                quantize_affine_tinygemm(&x, good, &s, Some(&zf), u4, &q),
                "tinygemm",
                "quant_m",
            );
            refused(
                &what,
                quantize_affine_no_zero_point(&x, good, &s, u4, &q),
                "no_zero",
                "quant_m",
            );
            refused(
                &what,
                dequantize_affine(&codes, good, &s, Some(&zi), u4, &q, Kind::Half),
                "dequantize",
                "quant_m",
            );
            refused(
                &what,
                dequantize_affine_tinygemm(&codes, good, &s, None, u4, &q, Kind::Half),
                "tinygemm",
                "quant_m",
            );
            refused(
                &what,
                dequantize_affine_no_zero_point(&codes, good, &s, u4, &q, Kind::Half),
                "no_zero",
                "quant_m",
            );
            refused(
                &what,
                fake_quantize_affine(&x, good, &s, Some(&zi), u4, &q),
                "fake",
                "quant_m",
            );
        });
    }
    for eps in [f64::NAN, f64::INFINITY, -1e-3, 1e300] {
        let c = QParamsOptions {
            eps: Some(eps),
            semantics: Semantics::Torchao0_18,
            ..Default::default()
        };
        let what = format!("eps {eps}");
        no_panic(&what, || {
            let a = MappingType::Asymmetric;
            refused(
                &what,
                choose_qparams_affine(&x, MappingType::Symmetric, good, u4, &c),
                "choose",
                "eps",
            );
            refused(
                &what,
                choose_qparams_affine_tinygemm(&x, a, good, u4, &c),
                "tinygemm",
                "eps",
            );
            refused(
                &what,
                choose_qparams_affine_dont_preserve_zero(&x, a, good, u4, &c),
                "dont",
                "eps",
            );
            refused(
                &what,
                choose_qparams_affine_with_min_max(&s, &s, a, good, u4, &c),
                "min_max",
                "eps",
            );
        });
    }
    for block in [
        vec![0i64, 16],
        vec![-1, 16],
        vec![1, i64::MAX],
        vec![1, 5],
        vec![1, 16, 1],
        vec![],
    ] {
        let what = format!("block {block:?}");
        let c = QParamsOptions {
            semantics: Semantics::Torchao0_18,
            keepdim: true,
            ..Default::default()
        };
        no_panic(&what, || {
            let a = MappingType::Asymmetric;
            refused(
                &what,
                choose_qparams_affine(&x, a, &block, u4, &c),
                "choose",
                "block_size",
            );
            refused(
                &what,
                choose_qparams_affine_tinygemm(&x, a, &block, u4, &Default::default()),
                "tinygemm",
                "block_size",
            );
            refused(
                &what,
                quantize_affine_tinygemm(&x, &block, &s, Some(&zf), u4, &o18()),
                "tinygemm",
                "block_size",
            );
            refused(
                &what,
                quantize_affine_no_zero_point(&x, &block, &s, u4, &o18()),
                "no_zero",
                "block_size",
            );
            refused(
                &what,
                dequantize_affine(&codes, &block, &s, None, u4, &o18(), Kind::BFloat16),
                "dequantize",
                "block_size",
            );
            refused(
                &what,
                dequantize_affine_no_zero_point(&codes, &block, &s, u4, &o18(), Kind::BFloat16),
                "no_zero",
                "block_size",
            );
        });
    }
}

/// Broadcast (stride-0) inputs and qparams give what their contiguous
/// copies give, on both paths and under both semantics.
#[test]
fn expanded_tensors_match_their_contiguous_copies() {
    let x = Tensor::randn([1, 32], (Kind::BFloat16, Device::Cpu)).expand([4, 32], false);
    let s = (Tensor::rand([4, 1], (Kind::Float, Device::Cpu)) * 0.1 + 0.01).expand([4, 2], false);
    let zi = Tensor::from_slice(&[3i32, 250, 0, 128])
        .view([4, 1])
        .expand([4, 2], false);
    let zf = zi.to_kind(Kind::Float) * 0.01;
    let b = &[1i64, 16][..];
    for semantics in Semantics::ALL {
        for force_reference in [false, true] {
            let o = QuantizeOptions {
                semantics,
                force_reference,
                ..Default::default()
            };
            let c = QParamsOptions {
                semantics,
                force_reference,
                ..Default::default()
            };
            let what = format!("{semantics} reference={force_reference}");
            no_panic(&what, || {
                let (xc, sc, zc) = (x.contiguous(), s.contiguous(), zi.contiguous());
                let a = MappingType::Asymmetric;
                let u8_ = QuantDtype::UInt8;
                let qp = choose_qparams_affine(&x, a, b, u8_, &c).unwrap();
                let qc = choose_qparams_affine(&xc, a, b, u8_, &c).unwrap();
                assert!(qp.scale.equal(&qc.scale), "{what}");
                let q = quantize_affine(&x, b, &s, Some(&zi), u8_, &o).unwrap();
                assert!(q.equal(&quantize_affine(&xc, b, &sc, Some(&zc), u8_, &o).unwrap()));
                let codes = q.expand([2, 4, 32], false).select(0, 1);
                for out in [Kind::Float, Kind::Half, Kind::BFloat16] {
                    let d = dequantize_affine(&codes, b, &s, Some(&zi), u8_, &o, out).unwrap();
                    let dc = dequantize_affine(&q, b, &sc, Some(&zc), u8_, &o, out).unwrap();
                    assert!(d.equal(&dc), "{what} {out:?}");
                }
                let t =
                    quantize_affine_tinygemm(&x, b, &s, Some(&zf), QuantDtype::UInt4, &o).unwrap();
                let tc = quantize_affine_tinygemm(
                    &xc,
                    b,
                    &sc,
                    Some(&zf.contiguous()),
                    QuantDtype::UInt4,
                    &o,
                )
                .unwrap();
                assert!(t.equal(&tc), "{what}");
                let n = dequantize_affine_no_zero_point(&codes, b, &s, u8_, &o, Kind::Half);
                let nc = dequantize_affine_no_zero_point(&q, b, &sc, u8_, &o, Kind::Half);
                assert!(n.unwrap().equal(&nc.unwrap()), "{what}");
            });
        }
    }
}
