//! The Rust side of `benches/compare_linear.py`: times `QuantizedLinear`
//! forwards, the dense linear and their yardsticks on the layer and inputs
//! the script wrote, and prints one JSON object per measurement on stdout.
//!
//! Usage: `bench_linear --list` prints the schemes it times, one
//! `{"name": .., "torchao_config": ..}` object a line (the config as a
//! Python expression), so that the script quantizes with the same recipes.
//! `bench_linear CASES.json` times them; the file holds `{"threads": 2,
//! "min_seconds": 0.2, "weight": TENSOR, "bias": TENSOR | null, "inputs":
//! [{"m": 1, ..TENSOR}, ..], "schemes": [NAME, ..]}`, where a TENSOR is
//! `{"input": PATH, "dtype": "bfloat16"|.., "shape": [..]}` and the file is
//! the tensor's raw little-endian bytes.
//!
//! Measurements (`scheme`, `m`, `op`): per scheme, `quantize`
//! (`QuantizedLinear::new`, once), `read` (one read of what the layer
//! stores for its weight, `weight_nbytes` bytes: the amax of each stored
//! tensor's bytes viewed as int32) and `forward` per input (`f_forward`);
//! for the dense layer (`dense`),
//! `read` (the amax of the weight's bytes viewed as an integer of its
//! width), `amax` (libtorch's float amax of the weight) and `forward`
//! (`Tensor::linear`); and where int8 weight-only is timed, the candidate
//! `int8pack`: libtorch's `_weight_int8pack_mm` on the int8 weight-only
//! layer's own codes and scale, then `+= bias`. Each is
//! the median wall time of repeated calls, with the CPU-seconds per wall
//! second over them and a checksum of the forward's output bytes that the
//! script checks against torchao's.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};
use tch_quant::{LinearScheme, QuantizedLinear};

#[path = "common/bench_cases.rs"]
mod bench_cases;
#[path = "common/timing.rs"]
mod timing;
use bench_cases::load;
use timing::{checksum, cpu_seconds, int_view, time, Measured};

/// Issue 10's CPU schemes at the group sizes of its table.
fn schemes() -> [LinearScheme; 6] {
    [
        LinearScheme::Int8WeightOnly,
        LinearScheme::Int4Cpu { group_size: 32 },
        LinearScheme::Int4Cpu { group_size: 128 },
        LinearScheme::Float8WeightOnly,
        LinearScheme::Int8DynamicActivationInt8Weight,
        LinearScheme::UIntXWeightOnly {
            bits: 4,
            group_size: 64,
        },
    ]
}

const INT8PACK: &str = "int8pack";
const DENSE: &str = "dense";

/// One timed call (setup work that runs once per round).
fn once<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, Measured)> {
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let out = f()?;
    let seconds = start.elapsed().as_secs_f64();
    Ok((
        out,
        Measured {
            seconds,
            reps: 1,
            cpu_per_wall: (cpu_seconds() - cpu0) / seconds,
        },
    ))
}

/// The tensors a layer stores for its weight (codes, scales, zero points,
/// packing), whose bytes `weight_nbytes` counts.
fn stored(layer: &QuantizedLinear) -> Result<Vec<&Tensor>> {
    if let Some(w) = layer.int8_weight() {
        return Ok(vec![w.codes(), w.scale()]);
    }
    if let Some(w) = layer.int4_cpu_weight() {
        return Ok(vec![w.packed_weight(), w.scale_and_zero()]);
    }
    if let Some(q) = layer.quantized_weight() {
        let mut out: Vec<&Tensor> = q.qdata().iter().collect();
        out.push(q.scale());
        out.extend(q.zero_point());
        return Ok(out);
    }
    bail!("{}: no CPU weight to read", layer.scheme())
}

/// One read of the bytes of `tensors`: the amax of each one's bytes viewed
/// as int32 (as uint8 where their count is not a multiple of 4), timed.
fn read(tensors: &[&Tensor], min_seconds: f64) -> Result<Measured> {
    let mut views = Vec::new();
    for t in tensors {
        let bytes = t
            .f_contiguous()?
            .f_reshape([-1])?
            .f_view_dtype(Kind::Uint8)?;
        views.push(if bytes.numel() % 4 == 0 {
            bytes.f_view_dtype(Kind::Int)?
        } else {
            bytes
        });
    }
    time(min_seconds, || {
        for v in &views {
            let _max = v.f_amax([] as [i64; 0], false)?;
        }
        Ok(())
    })
}

fn main() -> Result<()> {
    let arg = std::env::args()
        .nth(1)
        .context("usage: bench_linear --list | bench_linear CASES.json")?;
    if arg == "--list" {
        for scheme in schemes() {
            println!(
                "{}",
                json!({"name": scheme.name(), "torchao_config": scheme.torchao_config()})
            );
        }
        return Ok(());
    }
    let config: Value = serde_json::from_slice(&std::fs::read(&arg)?)?;
    let threads = config["threads"].as_i64().unwrap_or(2);
    let min_seconds = config["min_seconds"].as_f64().unwrap_or(0.2);
    tch::set_num_threads(i32::try_from(threads)?);
    let _guard = tch::no_grad_guard();

    let weight = load(&config["weight"], Device::Cpu)?;
    let bias = match &config["bias"] {
        Value::Null => None,
        b => Some(load(b, Device::Cpu)?),
    };
    let mut inputs = Vec::new();
    for x in config["inputs"].as_array().context("inputs")? {
        inputs.push((x["m"].as_i64().context("m")?, load(x, Device::Cpu)?));
    }
    let wanted: Vec<&str> = config["schemes"]
        .as_array()
        .context("schemes")?
        .iter()
        .map(|s| s.as_str().context("scheme name"))
        .collect::<Result<_>>()?;
    let chosen: Vec<LinearScheme> = wanted
        .iter()
        .map(|name| name.parse())
        .collect::<Result<_, _>>()?;

    let emit = |scheme: &str, m: Option<i64>, op: &str, t: Measured, sum: &str, nbytes: usize| {
        println!(
            "{}",
            json!({"scheme": scheme, "m": m, "op": op, "seconds": t.seconds, "reps": t.reps,
                   "cpu_per_wall": t.cpu_per_wall, "checksum": sum, "weight_nbytes": nbytes})
        );
    };
    let forwards = |scheme: &str, nbytes: usize, f: &dyn Fn(&Tensor) -> Result<Tensor>| {
        for (m, x) in &inputs {
            let sum = checksum(&[&f(x)?])?;
            let t = time(min_seconds, || {
                let _y = f(x)?;
                Ok(())
            })?;
            emit(scheme, Some(*m), "forward", t, &sum, nbytes);
        }
        Ok::<(), anyhow::Error>(())
    };

    let dense_nbytes = weight.numel() * weight.kind().elt_size_in_bytes();
    let as_int = weight.f_view_dtype(int_view(weight.kind()))?;
    emit(
        DENSE,
        None,
        "read",
        read(&[&as_int], min_seconds)?,
        "",
        dense_nbytes,
    );
    let amax = time(min_seconds, || {
        let _max = weight.f_amax([] as [i64; 0], false)?;
        Ok(())
    })?;
    emit(DENSE, None, "amax", amax, "", dense_nbytes);
    forwards(DENSE, dense_nbytes, &|x| {
        Ok(x.f_linear(&weight, bias.as_ref())?)
    })?;

    for scheme in chosen {
        let name = scheme.name();
        let (layer, t) = once(|| Ok(QuantizedLinear::new(&weight, bias.as_ref(), scheme)?))?;
        let nbytes = layer.weight_nbytes();
        emit(&name, None, "quantize", t, "", nbytes);
        emit(
            &name,
            None,
            "read",
            read(&stored(&layer)?, min_seconds)?,
            "",
            nbytes,
        );
        forwards(&name, nbytes, &|x| Ok(layer.f_forward(x)?))?;

        if scheme == LinearScheme::Int8WeightOnly {
            let w = layer.int8_weight().context("int8 codes")?;
            emit(
                INT8PACK,
                None,
                "read",
                read(&[w.codes(), w.scale()], min_seconds)?,
                "",
                nbytes,
            );
            forwards(INT8PACK, nbytes, &|x| {
                let mut y = x.f_internal_weight_int8pack_mm(w.codes(), w.scale())?;
                if let Some(b) = &bias {
                    y = y.f_add_(b)?;
                }
                Ok(y)
            })?;
        }
    }
    Ok(())
}
