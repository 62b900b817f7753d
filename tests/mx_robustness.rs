//! Adversarial inputs for every public MX / NVFP4 function: undefined,
//! wrongly typed, 0-d, empty, huge (stride-0) and non-contiguous tensors,
//! tensors that require grad, bad block sizes, hand-built `MxTensor`s and
//! `Nvfp4Tensor`s in inconsistent states, NaN and infinity.
//!
//! A call either returns a typed refusal (not `Error::Torch`) naming the
//! op and the argument, or, where torchao 0.18.0 defines a result, the
//! same bytes as torchao (one oracle process answers every such case,
//! `tests/mx/robustness_oracle.py`). A panic is caught and reported as a
//! failure of the case; every failure is listed before the test fails.

#[path = "common/store.rs"]
mod store;

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};
use tch_quant::mx::{get_fp_scale, to_dtype};
use tch_quant::{
    kind_name, nvfp4_quantize, per_tensor_amax_to_scale, to_mx, Error, MxElemDtype, MxTensor,
    Nvfp4Tensor, ScaleCalculationMode,
};

const CPU: Device = Device::Cpu;
const MODES: [ScaleCalculationMode; 4] = [
    ScaleCalculationMode::Floor,
    ScaleCalculationMode::Rceil,
    ScaleCalculationMode::Ceil,
    ScaleCalculationMode::Even,
];

type Outcome<T> = tch_quant::Result<T>;

/// Runs `f`; a panic becomes `Err` with its message.
fn guarded<T>(f: impl FnOnce() -> Outcome<T>) -> Result<Outcome<T>, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

/// A case torchao answers: its JSON for the oracle and the crate's call.
struct OracleCase {
    name: String,
    json: Value,
    call: Box<dyn Fn() -> Outcome<Vec<Tensor>>>,
}

#[derive(Default)]
struct Probe {
    failures: Vec<String>,
    refusals: usize,
    survived: usize,
    oracle: Vec<OracleCase>,
}

impl Probe {
    /// `f` must refuse with a typed error from `op` naming `arg`.
    fn refuses<T>(&mut self, what: &str, op: &str, arg: &str, f: impl FnOnce() -> Outcome<T>) {
        let failure = match guarded(f) {
            Err(panic) => format!("{what}: panicked: {panic}"),
            Ok(Ok(_)) => format!("{what}: accepted, expected a refusal naming `{arg}`"),
            Ok(Err(e)) => {
                let message = e.to_string();
                let named = match &e {
                    Error::InvalidArgument { op, arg, .. }
                    | Error::UnsupportedKind { op, arg, .. }
                    | Error::ShapeMismatch { op, arg, .. }
                    | Error::UnsupportedLayout { op, arg, .. } => Some((*op, *arg)),
                    _ => None,
                };
                if named == Some((op, arg)) && message.contains(op) && message.contains(arg) {
                    self.refusals += 1;
                    return;
                }
                format!("{what}: refused with `{message}` ({e:?}), expected {op} naming `{arg}`")
            }
        };
        self.failures.push(failure);
    }

    /// `f` may fail (libtorch's allocation failures included) but must not
    /// panic.
    fn survives<T>(&mut self, what: &str, f: impl FnOnce() -> Outcome<T>) {
        match guarded(f) {
            Err(panic) => self.failures.push(format!("{what}: panicked: {panic}")),
            Ok(outcome) => {
                let outcome = outcome.err().map_or("computed".to_string(), |e| {
                    e.to_string().lines().next().unwrap_or_default().to_string()
                });
                println!("  survived {what}: {outcome}");
                self.survived += 1;
            }
        }
    }

    fn oracle(
        &mut self,
        name: impl Into<String>,
        json: Value,
        call: impl Fn() -> Outcome<Vec<Tensor>> + 'static,
    ) {
        self.oracle.push(OracleCase {
            name: name.into(),
            json,
            call: Box::new(call),
        });
    }
}

/// A tensor as the oracle rebuilds it: dtype, shape, bytes; `t` marks the
/// transpose of that contiguous tensor, `rg` one that requires grad.
fn spec(t: &Tensor) -> Value {
    let transposed = !t.is_contiguous();
    let base = if transposed {
        t.tr().detach()
    } else {
        t.detach()
    };
    assert!(base.is_contiguous(), "specs are contiguous or transposed");
    let hex: String = store::raw_bytes(&base)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    json!({"dtype": kind_name(base.kind()), "shape": base.size(), "hex": hex,
           "t": transposed, "rg": t.requires_grad()})
}

fn kind_of(name: &str) -> Kind {
    store::kind_of(name).unwrap_or_else(|e| panic!("the oracle wrote dtype {name}: {e:#}"))
}

fn from_spec(v: &Value) -> Tensor {
    let hex = v["hex"].as_str().unwrap();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let shape: Vec<i64> = serde_json::from_value(v["shape"].clone()).unwrap();
    Tensor::from_slice(&bytes)
        .view_dtype(kind_of(v["dtype"].as_str().unwrap()))
        .reshape(shape)
}

/// Five rows of 32 float32 values, each row a hard case: all zeros (signed),
/// a NaN, +-infinity, float32 subnormals, values at and near float32's
/// largest.
fn specials() -> Tensor {
    tch::manual_seed(11);
    let x = Tensor::randn([5, 32], (Kind::Float, CPU));
    let mut v = Vec::<f32>::try_from(x.view([-1])).unwrap();
    for (i, e) in v[..32].iter_mut().enumerate() {
        *e = if i % 2 == 0 { 0.0 } else { -0.0 };
    }
    v[32 + 5] = f32::NAN;
    v[64 + 3] = f32::INFINITY;
    v[64 + 20] = f32::NEG_INFINITY;
    for (i, e) in v[96..128].iter_mut().enumerate() {
        *e = f32::from_bits(1 + 997 * i as u32) * if i % 3 == 0 { -1.0 } else { 1.0 };
    }
    v[128] = f32::MAX;
    v[129] = -f32::MAX;
    v[130] = 3.0e38;
    Tensor::from_slice(&v).view([5, 32])
}

fn randn(shape: &[i64], kind: Kind) -> Tensor {
    tch::manual_seed(5);
    Tensor::randn(shape, (kind, CPU))
}

fn elem_json(e: MxElemDtype) -> &'static str {
    e.name()
}

fn mx_case(
    p: &mut Probe,
    label: &str,
    x: &Tensor,
    elem: MxElemDtype,
    bs: i64,
    mode: ScaleCalculationMode,
) {
    let j = json!({"op": "to_mx", "x": spec(x), "elem": elem_json(elem), "block_size": bs,
                   "mode": mode.name()});
    let x = x.shallow_clone();
    p.oracle(
        format!("to_mx {label} {elem} bs{bs} {mode}"),
        j,
        move || to_mx(&x, elem, bs, mode).map(|(s, d)| vec![s, d]),
    );
}

fn dtype_case(
    p: &mut Probe,
    label: &str,
    d: &Tensor,
    s: &Tensor,
    elem: MxElemDtype,
    bs: i64,
    target: Kind,
) {
    let j = json!({"op": "to_dtype", "x": spec(d), "scale": spec(s), "elem": elem_json(elem),
                   "block_size": bs, "target": kind_name(target)});
    let (d, s) = (d.shallow_clone(), s.shallow_clone());
    p.oracle(
        format!("to_dtype {label} {elem} -> {target:?}"),
        j,
        move || to_dtype(&d, &s, elem, bs, target).map(|t| vec![t]),
    );
}

fn nvfp4_case(p: &mut Probe, label: &str, x: &Tensor, pts: Option<&Tensor>) {
    let j = json!({"op": "nvfp4_quantize", "x": spec(x), "pts": pts.map(spec)});
    let (x, pts) = (x.shallow_clone(), pts.map(Tensor::shallow_clone));
    p.oracle(format!("nvfp4_quantize {label}"), j, move || {
        nvfp4_quantize(&x, 16, pts.as_ref()).map(|(s, d)| vec![s, d])
    });
}

fn nvfp4_dq_case(p: &mut Probe, label: &str, x: &Tensor, pts: Option<&Tensor>, target: Kind) {
    let j = json!({"op": "nvfp4_dequantize", "x": spec(x), "pts": pts.map(spec),
                   "target": kind_name(target)});
    let (x, pts) = (x.shallow_clone(), pts.map(Tensor::shallow_clone));
    p.oracle(format!("Nvfp4Tensor {label} -> {target:?}"), j, move || {
        let t = Nvfp4Tensor::to_nvfp4(&x, 16, pts.as_ref())?;
        Ok(vec![t.dequantize(Some(target))?, t.get_hp_scales()?])
    });
}

fn oracle_cases(p: &mut Probe) {
    use MxElemDtype::*;
    let sp = specials();
    for kind in [Kind::Float, Kind::BFloat16] {
        let x = sp.to_kind(kind);
        for elem in MxElemDtype::ALL {
            for mode in MODES {
                mx_case(p, &format!("specials {kind:?}"), &x, elem, 32, mode);
            }
        }
    }
    let rg = randn(&[2, 32], Kind::Float).set_requires_grad(true);
    for (elem, mode) in [
        (Float8E4m3fn, MODES[0]),
        (Float4E2m1fnX2, MODES[1]),
        (Fp6E3m2, MODES[3]),
        (Float8E5m2, MODES[2]),
    ] {
        mx_case(p, "requires_grad", &rg, elem, 32, mode);
    }
    let empty = |shape: &[i64]| Tensor::zeros(shape, (Kind::Float, CPU));
    mx_case(p, "[2, 0]", &empty(&[2, 0]), Float8E4m3fn, 32, MODES[0]);
    mx_case(p, "[0, 32]", &empty(&[0, 32]), Float4E2m1fnX2, 32, MODES[1]);
    mx_case(p, "[2, 0]", &empty(&[2, 0]), Fp6E2m3, i64::MAX, MODES[2]);
    mx_case(p, "[0]", &empty(&[0]), Float8E5m2, 4, MODES[3]);

    // Every byte as fp6 / fp4 codes (the bits above a code included), under
    // e8m0 scales from 0 to 255.
    let bytes = Tensor::arange(256, (Kind::Int64, CPU))
        .to_kind(Kind::Uint8)
        .view([8, 32]);
    let scales = Tensor::from_slice(&[0u8, 1, 100, 127, 140, 253, 254, 255]).view([8, 1]);
    dtype_case(p, "all bytes", &bytes, &scales, Fp6E2m3, 32, Kind::Half);
    dtype_case(p, "all bytes", &bytes, &scales, Fp6E3m2, 32, Kind::Float);
    dtype_case(
        p,
        "all bytes",
        &bytes,
        &scales.repeat([1, 2]),
        Float4E2m1fnX2,
        32,
        Kind::BFloat16,
    );
    for elem in MxElemDtype::ALL {
        let (s, d) = to_mx(&sp, elem, 32, MODES[0]).unwrap();
        dtype_case(p, "specials", &d, &s, elem, 32, Kind::Double);
    }
    let (s, d) = to_mx(&randn(&[1, 32], Kind::Float), Float8E4m3fn, 32, MODES[0]).unwrap();
    dtype_case(
        p,
        "0-d scale",
        &d,
        &s.view([]),
        Float8E4m3fn,
        32,
        Kind::Float,
    );
    // A scale that is a strided view: the first half of each row.
    let (s, d) = to_mx(&randn(&[4, 64], Kind::Float), Float8E5m2, 16, MODES[1]).unwrap();
    let d = d.narrow(1, 0, 32).contiguous();
    let mut j = json!({"op": "to_dtype", "x": spec(&d), "scale": spec(&s), "elem": "float8_e5m2",
                       "block_size": 16, "target": "float32"});
    j["scale"]["narrow"] = json!([1, 0, 2]);
    p.oracle("to_dtype strided scale", j, move || {
        to_dtype(&d, &s.narrow(1, 0, 2), Float8E5m2, 16, Kind::Float).map(|t| vec![t])
    });
    let (s, d) = to_mx(&randn(&[4, 64], Kind::Float), Float8E4m3fn, 32, MODES[2]).unwrap();
    dtype_case(
        p,
        "transposed",
        &d.tr(),
        &s.tr(),
        Float8E4m3fn,
        32,
        Kind::BFloat16,
    );
    let (s, d) = to_mx(&randn(&[4, 64], Kind::Float), Float4E2m1fnX2, 32, MODES[0]).unwrap();
    dtype_case(
        p,
        "transposed",
        &d.tr(),
        &s.tr(),
        Float4E2m1fnX2,
        32,
        Kind::Float,
    );
    let (s, d) = to_mx(&empty(&[3, 0]), Float4E2m1fnX2, 32, MODES[0]).unwrap();
    dtype_case(p, "[3, 0]", &d, &s, Float4E2m1fnX2, 32, Kind::Float);
    for (elem, target) in [(Fp6E2m3, Kind::Double), (Float8E5m2, Kind::Half)] {
        let j = json!({"op": "mx_dequantize", "x": spec(&sp), "elem": elem_json(elem),
                       "block_size": 32, "mode": "floor", "target": kind_name(target)});
        let x = sp.shallow_clone();
        p.oracle(
            format!("MxTensor specials {elem} -> {target:?}"),
            j,
            move || {
                let t = MxTensor::to_mx(&x, elem, 32, MODES[0])?;
                Ok(vec![t.dequantize(Some(target))?])
            },
        );
    }

    let s0 = |v: f32| Tensor::from(v);
    nvfp4_case(p, "specials f32", &sp, None);
    nvfp4_case(
        p,
        "specials bf16",
        &sp.to_kind(Kind::BFloat16),
        Some(&s0(0.01)),
    );
    for v in [0.0, f32::NAN, f32::INFINITY, -1.0, 1e-30] {
        nvfp4_case(p, &format!("per_tensor_scale {v}"), &sp, Some(&s0(v)));
    }
    nvfp4_case(p, "requires_grad", &rg, None);
    nvfp4_case(
        p,
        "requires_grad scale",
        &rg,
        Some(&s0(0.02).set_requires_grad(true)),
    );
    nvfp4_case(p, "[2, 0]", &empty(&[2, 0]), None);
    nvfp4_case(p, "[2, 0, 16]", &empty(&[2, 0, 16]), Some(&s0(0.5)));
    let experts = Tensor::from_slice(&[0.01f32, 0.0, f32::NAN]).view([3, 1, 1]);
    nvfp4_case(
        p,
        "per expert",
        &randn(&[3, 4, 32], Kind::BFloat16),
        Some(&experts),
    );

    for (label, amax) in [
        ("float64", Tensor::from(2688.5f64)),
        ("NaN", s0(f32::NAN)),
        ("requires_grad", s0(3.0).set_requires_grad(true)),
        ("empty", empty(&[0])),
        ("float16 [2, 3]", randn(&[2, 3], Kind::Half)),
        ("bfloat16 inf", s0(f32::INFINITY).to_kind(Kind::BFloat16)),
    ] {
        let j = json!({"op": "per_tensor_amax_to_scale", "x": spec(&amax)});
        p.oracle(format!("per_tensor_amax_to_scale {label}"), j, move || {
            per_tensor_amax_to_scale(&amax).map(|t| vec![t])
        });
    }

    nvfp4_dq_case(p, "[3, 0]", &empty(&[3, 0]), None, Kind::Float);
    nvfp4_dq_case(p, "specials", &sp, None, Kind::Double);
    nvfp4_dq_case(p, "NaN scale", &sp, Some(&s0(f32::NAN)), Kind::BFloat16);
    nvfp4_dq_case(
        p,
        "per expert",
        &randn(&[3, 4, 32], Kind::Float),
        Some(&experts),
        Kind::Half,
    );
}

/// Whether a missing or mismatched oracle fails the test (`make test`
/// sets it) rather than skipping the comparison.
fn oracle_required() -> bool {
    std::env::var("TCH_QUANT_REQUIRE_ORACLE").as_deref() == Ok("1")
}

/// Sends every oracle case to torchao in one process (the script checks
/// the versions itself: one launch, not two) and compares. `None` when
/// there is no torch 2.13.0 + torchao 0.18.0 and none is required.
fn run_oracle(p: &mut Probe) -> Option<usize> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-ao18/bin/python");
    if !python.exists() {
        assert!(
            !oracle_required(),
            "TCH_QUANT_REQUIRE_ORACLE=1 but {} is missing (run `make venv-ao18`)",
            python.display()
        );
        println!("skipped the torchao comparison: no .venv-ao18 (run `make venv-ao18`)");
        return None;
    }
    let cases: Vec<Value> = p.oracle.iter().map(|c| c.json.clone()).collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mx/robustness_oracle.py");
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the oracle");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&cases).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.code() == Some(3) && !oracle_required() {
        println!(
            "skipped the torchao comparison: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answers.len(), p.oracle.len());
    let mut identical = 0;
    let cases = std::mem::take(&mut p.oracle);
    for (case, answer) in cases.iter().zip(&answers) {
        let got = guarded(|| (case.call)());
        let failure = match (got, answer.get("outputs")) {
            (Err(panic), _) => Some(format!("panicked: {panic}")),
            (Ok(Ok(got)), Some(want)) => {
                let want: Vec<Tensor> = want.as_array().unwrap().iter().map(from_spec).collect();
                if got.len() < want.len() {
                    Some(format!("{} outputs, torchao {}", got.len(), want.len()))
                } else {
                    want.iter().zip(&got).enumerate().find_map(|(i, (w, g))| {
                        store::compare(w, &g.detach())
                            .unwrap()
                            .map(|d| format!("output {i}: {d}"))
                    })
                }
            }
            (Ok(Err(e)), Some(_)) => Some(format!("refused ({e}) where torchao computes")),
            (Ok(Err(Error::Torch { .. })) | Ok(Ok(_)), None) => Some(format!(
                "torchao refused ({}) but the crate gave no typed refusal",
                answer["error"]
            )),
            (Ok(Err(_)), None) => None,
        };
        match failure {
            Some(f) => p.failures.push(format!("{} [oracle]: {f}", case.name)),
            None => identical += 1,
        }
    }
    Some(identical)
}

/// A uint8 tensor of `shape` whose elements all share one byte.
fn huge(shape: &[i64], kind: Kind) -> Tensor {
    Tensor::zeros(vec![1; shape.len()], (kind, CPU)).expand(shape, false)
}

fn refusal_cases(p: &mut Probe) {
    use MxElemDtype::*;
    let floor = ScaleCalculationMode::Floor;
    let w = randn(&[2, 64], Kind::Float);
    let undefined = Tensor::new;
    let op = "to_mx";
    let mx = |x: &Tensor, e, bs| to_mx(x, e, bs, floor);
    p.refuses("to_mx undefined", op, "data_hp", || {
        mx(&undefined(), Float8E4m3fn, 32)
    });
    for kind in [
        Kind::Double,
        Kind::Half,
        Kind::Int,
        Kind::Bool,
        Kind::Uint8,
        Kind::Float8e4m3fn,
    ] {
        p.refuses(&format!("to_mx {kind:?}"), op, "data_hp", || {
            mx(&w.to_kind(kind), Float8E4m3fn, 32)
        });
    }
    p.refuses("to_mx 0-d", op, "data_hp", || {
        mx(&Tensor::from(1f32), Fp6E2m3, 1)
    });
    for bs in [0, -1, -32, i64::MIN] {
        p.refuses(&format!("to_mx block_size {bs}"), op, "block_size", || {
            mx(&w, Float8E5m2, bs)
        });
    }
    p.refuses("to_mx block_size 48", op, "data_hp", || {
        mx(&w, Float8E5m2, 48)
    });
    p.refuses("to_mx block_size 128 > K", op, "data_hp", || {
        mx(&w, Float8E5m2, 128)
    });
    p.refuses("to_mx block_size i64::MAX", op, "data_hp", || {
        mx(&w, Float8E5m2, i64::MAX)
    });
    p.refuses("to_mx fp4 K 3", op, "data_hp", || {
        mx(&randn(&[2, 3], Kind::Float), Float4E2m1fnX2, 3)
    });
    p.refuses("to_mx fp4 K 1", op, "data_hp", || {
        mx(&randn(&[4, 1], Kind::Float), Float4E2m1fnX2, 1)
    });
    p.survives("to_mx 2^61 stride-0 elements", || {
        mx(&huge(&[1 << 61], Kind::Float), Float8E4m3fn, 32)
    });
    p.refuses("MxTensor::to_mx f16", "MxTensor::to_mx", "data_hp", || {
        MxTensor::to_mx(&w.to_kind(Kind::Half), Fp6E3m2, 32, floor)
    });
    p.refuses(
        "MxTensor::to_mx block_size 0",
        "MxTensor::to_mx",
        "block_size",
        || MxTensor::to_mx(&w, Fp6E3m2, 0, floor),
    );

    let op = "to_dtype";
    let (s8, d8) = to_mx(&w, Float8E4m3fn, 32, floor).unwrap();
    let (s4, d4) = to_mx(&w, Float4E2m1fnX2, 32, floor).unwrap();
    let dq = |d: &Tensor, s: &Tensor, e, bs, k| to_dtype(d, s, e, bs, k);
    p.refuses("to_dtype undefined data", op, "data_lp", || {
        dq(&undefined(), &s8, Float8E4m3fn, 32, Kind::Float)
    });
    p.refuses("to_dtype undefined scale", op, "scale_e8m0", || {
        dq(&d8, &undefined(), Float8E4m3fn, 32, Kind::Float)
    });
    p.refuses("to_dtype fp8 data as e5m2", op, "data_lp", || {
        dq(&d8, &s8, Float8E5m2, 32, Kind::Float)
    });
    p.refuses("to_dtype uint8 data as fp8", op, "data_lp", || {
        dq(&d4, &s4, Float8E4m3fn, 32, Kind::Float)
    });
    p.refuses("to_dtype f32 data", op, "data_lp", || {
        dq(&w, &s8, Fp6E2m3, 32, Kind::Float)
    });
    for kind in [Kind::Float, Kind::Int8, Kind::Int] {
        p.refuses(
            &format!("to_dtype {kind:?} scale"),
            op,
            "scale_e8m0",
            || dq(&d8, &s8.to_kind(kind), Float8E4m3fn, 32, Kind::Float),
        );
    }
    for kind in [
        Kind::Int,
        Kind::Bool,
        Kind::Uint8,
        Kind::Float8e4m3fn,
        Kind::ComplexFloat,
    ] {
        p.refuses(
            &format!("to_dtype target {kind:?}"),
            op,
            "target_dtype",
            || dq(&d8, &s8, Float8E4m3fn, 32, kind),
        );
    }
    for bs in [0, -5, i64::MIN] {
        p.refuses(
            &format!("to_dtype block_size {bs}"),
            op,
            "block_size",
            || dq(&d8, &s8, Float8E4m3fn, bs, Kind::Float),
        );
    }
    p.refuses("to_dtype block_size 48 of 128", op, "block_size", || {
        dq(&d8, &s8, Float8E4m3fn, 48, Kind::Float)
    });
    p.refuses("to_dtype block_size i64::MAX", op, "block_size", || {
        dq(&d8, &s8, Float8E4m3fn, i64::MAX, Kind::Float)
    });
    p.refuses(
        "to_dtype fp4 block_size 16 (scale count)",
        op,
        "scale_e8m0",
        || dq(&d4, &s4, Float4E2m1fnX2, 16, Kind::Float),
    );
    p.refuses("to_dtype 0-d data", op, "data_lp", || {
        dq(
            &d8.view([-1]).get(0),
            &s8.view([-1]).get(0),
            Float8E4m3fn,
            1,
            Kind::Float,
        )
    });
    p.refuses("to_dtype strided 1-D data", op, "data_lp", || {
        dq(
            &d8.view([-1]).slice(0, 0, None, 2),
            &s8.view([-1]).get(0),
            Float8E4m3fn,
            64,
            Kind::Float,
        )
    });
    p.refuses("to_dtype 3-D transposed data", op, "data_lp", || {
        dq(
            &d8.view([2, 2, 32]).transpose(1, 2),
            &s8,
            Float8E4m3fn,
            32,
            Kind::Float,
        )
    });
    p.refuses(
        "to_dtype transposed data, 3-D scale",
        op,
        "scale_e8m0",
        || dq(&d8.tr(), &s8.view([2, 1, 2]), Float8E4m3fn, 32, Kind::Float),
    );
    p.refuses("to_dtype too few scales", op, "scale_e8m0", || {
        dq(&d8, &s8.narrow(1, 0, 1), Float8E4m3fn, 32, Kind::Float)
    });
    p.refuses("to_dtype 2^61 stride-0 scales", op, "scale_e8m0", || {
        dq(
            &d8,
            &huge(&[1 << 61], Kind::Uint8),
            Float8E4m3fn,
            32,
            Kind::Float,
        )
    });
    p.refuses("to_dtype 2^61 stride-0 data", op, "data_lp", || {
        dq(
            &huge(&[1 << 30, 1 << 31], Kind::Uint8),
            &s4,
            Float4E2m1fnX2,
            32,
            Kind::Float,
        )
    });
    p.refuses(
        "get_fp_scale undefined",
        "get_fp_scale",
        "scale_e8m0",
        || get_fp_scale(&undefined()),
    );
    p.refuses("get_fp_scale f32", "get_fp_scale", "scale_e8m0", || {
        get_fp_scale(&w)
    });

    let mx_with = |f: &dyn Fn(&mut MxTensor)| {
        let mut t = MxTensor::to_mx(&w, Fp6E2m3, 32, floor).unwrap();
        f(&mut t);
        t.dequantize(None)
    };
    let op = "MxTensor::dequantize";
    p.refuses("MxTensor orig_dtype Int", op, "orig_dtype", || {
        mx_with(&|t| t.orig_dtype = Kind::Int)
    });
    p.refuses("MxTensor qdata f32", op, "qdata", || {
        mx_with(&|t| t.qdata = t.qdata.to_kind(Kind::Float))
    });
    p.refuses("MxTensor qdata undefined", op, "qdata", || {
        mx_with(&|t| t.qdata = Tensor::new())
    });
    p.refuses("MxTensor scale f32", op, "scale", || {
        mx_with(&|t| t.scale = t.scale.to_kind(Kind::Float))
    });
    p.refuses("MxTensor scale too small", op, "scale", || {
        mx_with(&|t| t.scale = t.scale.narrow(1, 0, 1))
    });
    p.refuses("MxTensor block_size 0", op, "block_size", || {
        mx_with(&|t| t.block_size = 0)
    });
    p.refuses("MxTensor block_size 3", op, "block_size", || {
        mx_with(&|t| t.block_size = 3)
    });
    p.refuses("MxTensor elem fp8", op, "qdata", || {
        mx_with(&|t| t.elem_dtype = Float8E5m2)
    });
    p.refuses("MxTensor output Bool", op, "output_dtype", || {
        MxTensor::to_mx(&w, Fp6E2m3, 32, floor)
            .unwrap()
            .dequantize(Some(Kind::Bool))
    });

    let op = "nvfp4_quantize";
    let q = |x: &Tensor, bs, pts: Option<&Tensor>| nvfp4_quantize(x, bs, pts);
    let s = Tensor::from(0.01f32);
    p.refuses("nvfp4 undefined", op, "data_hp", || {
        q(&undefined(), 16, None)
    });
    for kind in [Kind::Double, Kind::Half, Kind::Int64] {
        p.refuses(&format!("nvfp4 {kind:?}"), op, "data_hp", || {
            q(&w.to_kind(kind), 16, None)
        });
    }
    p.refuses("nvfp4 0-d", op, "data_hp", || {
        q(&Tensor::from(1f32), 16, None)
    });
    p.refuses("nvfp4 1-D", op, "data_hp", || {
        q(&randn(&[32], Kind::Float), 16, None)
    });
    p.refuses("nvfp4 [0, 32]", op, "data_hp", || {
        q(&Tensor::zeros([0, 32], (Kind::Float, CPU)), 16, None)
    });
    for bs in [0, -16, 32, i64::MAX] {
        p.refuses(&format!("nvfp4 block_size {bs}"), op, "block_size", || {
            q(&w, bs, None)
        });
    }
    p.refuses("nvfp4 K 24", op, "data_hp", || {
        q(&randn(&[2, 24], Kind::Float), 16, None)
    });
    p.refuses("nvfp4 undefined scale", op, "per_tensor_scale", || {
        q(&w, 16, Some(&undefined()))
    });
    for kind in [Kind::Double, Kind::BFloat16, Kind::Int] {
        p.refuses(
            &format!("nvfp4 {kind:?} scale"),
            op,
            "per_tensor_scale",
            || q(&w, 16, Some(&s.to_kind(kind))),
        );
    }
    for shape in [vec![1i64], vec![2, 2], vec![2, 1, 1]] {
        p.refuses(
            &format!("nvfp4 scale {shape:?} for [2, 64]"),
            op,
            "per_tensor_scale",
            || {
                q(
                    &w,
                    16,
                    Some(&Tensor::ones(shape.as_slice(), (Kind::Float, CPU))),
                )
            },
        );
    }
    p.refuses(
        "nvfp4 scale [3, 1, 1] for [2, 4, 32]",
        op,
        "per_tensor_scale",
        || {
            q(
                &randn(&[2, 4, 32], Kind::Float),
                16,
                Some(&Tensor::ones([3, 1, 1], (Kind::Float, CPU))),
            )
        },
    );
    p.survives("nvfp4 2^61 stride-0 elements", || {
        q(&huge(&[1 << 30, 1 << 31], Kind::Float), 16, None)
    });
    p.refuses("to_nvfp4 1-D", "Nvfp4Tensor::to_nvfp4", "data_hp", || {
        Nvfp4Tensor::to_nvfp4(&randn(&[32], Kind::Float), 16, None)
    });
    p.refuses("to_nvfp4 4-D", "Nvfp4Tensor::to_nvfp4", "data_hp", || {
        Nvfp4Tensor::to_nvfp4(&randn(&[2, 2, 2, 16], Kind::Float), 16, None)
    });
    p.refuses(
        "to_nvfp4 block_size 8",
        "Nvfp4Tensor::to_nvfp4",
        "block_size",
        || Nvfp4Tensor::to_nvfp4(&w, 8, None),
    );
    p.refuses(
        "to_nvfp4 undefined",
        "Nvfp4Tensor::to_nvfp4",
        "data_hp",
        || Nvfp4Tensor::to_nvfp4(&undefined(), 16, None),
    );

    let op = "per_tensor_amax_to_scale";
    p.refuses("amax undefined", op, "amax", || {
        per_tensor_amax_to_scale(&undefined())
    });
    for kind in [Kind::Int, Kind::Bool, Kind::ComplexFloat] {
        p.refuses(&format!("amax {kind:?}"), op, "amax", || {
            per_tensor_amax_to_scale(&Tensor::from(3f32).to_kind(kind))
        });
    }

    let good = Nvfp4Tensor::to_nvfp4(&w, 16, Some(&s)).unwrap();
    let nv_with = |f: &dyn Fn(&mut Nvfp4Tensor), dequantize: bool| {
        let mut t = Nvfp4Tensor {
            qdata: good.qdata.shallow_clone(),
            scale: good.scale.shallow_clone(),
            per_tensor_scale: Some(s.shallow_clone()),
            block_size: 16,
            orig_dtype: Kind::Float,
        };
        f(&mut t);
        if dequantize {
            t.dequantize(None)
        } else {
            t.get_hp_scales()
        }
    };
    type Edit = Box<dyn Fn(&mut Nvfp4Tensor)>;
    let edits: Vec<(&str, &str, Edit)> = vec![
        (
            "qdata undefined",
            "qdata",
            Box::new(|t| t.qdata = Tensor::new()),
        ),
        (
            "scale undefined",
            "scale",
            Box::new(|t| t.scale = Tensor::new()),
        ),
        (
            "per_tensor_scale undefined",
            "per_tensor_scale",
            Box::new(|t| t.per_tensor_scale = Some(Tensor::new())),
        ),
        (
            "qdata int8",
            "qdata",
            Box::new(|t| t.qdata = t.qdata.to_kind(Kind::Int8)),
        ),
        (
            "qdata 0-d",
            "qdata",
            Box::new(|t| t.qdata = Tensor::from(1u8)),
        ),
        (
            "qdata 1-D",
            "qdata",
            Box::new(|t| t.qdata = t.qdata.view([-1])),
        ),
        (
            "qdata 4-D",
            "qdata",
            Box::new(|t| t.qdata = t.qdata.view([1, 2, 4, 8])),
        ),
        (
            "qdata K 2",
            "qdata",
            Box::new(|t| t.qdata = t.qdata.view([64, 1]).contiguous()),
        ),
        (
            "scale f32",
            "scale",
            Box::new(|t| t.scale = t.scale.to_kind(Kind::Float)),
        ),
        (
            "scale too small",
            "scale",
            Box::new(|t| t.scale = t.scale.narrow(1, 0, 1)),
        ),
        (
            "scale not transposed with qdata",
            "scale",
            Box::new(|t| t.qdata = t.qdata.tr()),
        ),
        (
            "scale flat",
            "scale",
            Box::new(|t| t.scale = t.scale.view([-1])),
        ),
        (
            "scale [4, 2]",
            "scale",
            Box::new(|t| t.scale = t.scale.view([4, 2])),
        ),
        ("block_size 0", "block_size", Box::new(|t| t.block_size = 0)),
        (
            "block_size -16",
            "block_size",
            Box::new(|t| t.block_size = -16),
        ),
        (
            "block_size 32",
            "block_size",
            Box::new(|t| t.block_size = 32),
        ),
        (
            "per_tensor_scale f16",
            "per_tensor_scale",
            Box::new(|t| t.per_tensor_scale = Some(Tensor::from(0.5f32).to_kind(Kind::Half))),
        ),
        (
            "per_tensor_scale [2]",
            "per_tensor_scale",
            Box::new(|t| t.per_tensor_scale = Some(Tensor::ones([2], (Kind::Float, CPU)))),
        ),
        (
            "qdata [1, 2^62] stride-0 (K overflows)",
            "qdata",
            Box::new(|t| t.qdata = huge(&[1, 1 << 62], Kind::Uint8)),
        ),
    ];
    for (what, arg, edit) in edits {
        p.refuses(
            &format!("get_hp_scales {what}"),
            "Nvfp4Tensor::get_hp_scales",
            arg,
            || nv_with(&*edit, false),
        );
        p.refuses(
            &format!("Nvfp4Tensor::dequantize {what}"),
            "Nvfp4Tensor::dequantize",
            arg,
            || nv_with(&*edit, true),
        );
    }
    p.refuses(
        "Nvfp4Tensor orig_dtype Int",
        "Nvfp4Tensor::dequantize",
        "orig_dtype",
        || nv_with(&|t| t.orig_dtype = Kind::Int, true),
    );
    p.refuses(
        "Nvfp4Tensor output Int8",
        "Nvfp4Tensor::dequantize",
        "output_dtype",
        || good.dequantize(Some(Kind::Int8)),
    );

    // Above libtorch's 64-dim reductions: refused at the door, before any
    // shape is read.
    let rank65 = Tensor::zeros(vec![1i64; 65], (Kind::Float, CPU));
    let u65 = rank65.to_kind(Kind::Uint8);
    p.refuses("to_mx 65 dims", "to_mx", "data_hp", || {
        mx(&rank65, Fp6E2m3, 1)
    });
    p.refuses("to_dtype 65 dims", "to_dtype", "data_lp", || {
        dq(&u65, &s8, Fp6E2m3, 1, Kind::Float)
    });
    p.refuses("get_fp_scale 65 dims", "get_fp_scale", "scale_e8m0", || {
        get_fp_scale(&u65)
    });
    p.refuses("nvfp4 65 dims", "nvfp4_quantize", "data_hp", || {
        q(&rank65, 16, None)
    });
    p.refuses("amax 65 dims", "per_tensor_amax_to_scale", "amax", || {
        per_tensor_amax_to_scale(&rank65)
    });
    p.refuses(
        "nvfp4 65-dim scale",
        "nvfp4_quantize",
        "per_tensor_scale",
        || q(&w, 16, Some(&rank65)),
    );

    if tch::Cuda::is_available() {
        let gpu = Device::Cuda(0);
        p.refuses("to_dtype scale on CUDA", "to_dtype", "scale_e8m0", || {
            dq(&d8, &s8.to_device(gpu), Float8E4m3fn, 32, Kind::Float)
        });
        p.refuses(
            "nvfp4 per-expert scale on CUDA",
            "nvfp4_quantize",
            "per_tensor_scale",
            || {
                let e = randn(&[2, 4, 32], Kind::Float);
                q(&e, 16, Some(&Tensor::ones([2, 1, 1], (Kind::Float, gpu))))
            },
        );
        p.refuses(
            "Nvfp4Tensor scale on CUDA",
            "Nvfp4Tensor::dequantize",
            "scale",
            || nv_with(&|t| t.scale = t.scale.to_device(gpu), true),
        );
    }

    p.refuses(
        "MxElemDtype::parse empty",
        "MxElemDtype::parse",
        "name",
        || MxElemDtype::parse(""),
    );
    p.refuses(
        "MxElemDtype::parse NUL",
        "MxElemDtype::parse",
        "name",
        || MxElemDtype::parse("fp6_e2m3\0"),
    );
    p.refuses(
        "ScaleCalculationMode::parse",
        "ScaleCalculationMode::parse",
        "name",
        || ScaleCalculationMode::parse("floor floor"),
    );
}

#[test]
fn every_public_mx_function_refuses_or_matches_torchao_and_never_panics() {
    let mut p = Probe::default();
    refusal_cases(&mut p);
    oracle_cases(&mut p);
    let total = p.oracle.len();
    let compared = match run_oracle(&mut p) {
        Some(identical) => format!("torchao 0.18.0 edge cases bit-identical {identical}/{total}"),
        None => format!("{total} torchao edge cases not compared"),
    };
    println!(
        "mx robustness: {} typed refusals, {} survived without panic, {compared}",
        p.refusals, p.survived
    );
    for f in &p.failures {
        println!("  FAIL {f}");
    }
    assert!(p.failures.is_empty(), "{} failures", p.failures.len());
}
