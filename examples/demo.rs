//! Loads a real weight matrix from a safetensors checkpoint, prints the
//! qparams torchao's recipes (and two plain schemes) choose for it, and the
//! quantization error (SQNR) each gives after quantize -> dequantize.
//!
//! `cargo run --release --example demo -- path/to/model.safetensors [tensor-name]`

use anyhow::{bail, Context, Result};
use tch::{Kind, Tensor};
use tch_quant::{
    AffineQuantizedTensor, CustomRecipe, Granularity, MappingType, QParamsOptions, QuantDtype,
    Recipe,
};

/// torchao's recipes, and two plain combinations for contrast.
fn recipes() -> Vec<(&'static str, Recipe)> {
    let custom = |mapping, granularity, dtype| {
        Recipe::Custom(CustomRecipe {
            mapping,
            granularity,
            dtype,
            options: QParamsOptions::default(),
        })
    };
    vec![
        (
            "int8 weight-only (per row)",
            Recipe::Int8WeightOnly { group_size: None },
        ),
        (
            "int8 symmetric per-tensor",
            custom(
                MappingType::Symmetric,
                Granularity::PerTensor,
                QuantDtype::Int8,
            ),
        ),
        (
            "int4 weight-only group 32 (tinygemm)",
            Recipe::Int4WeightOnly {
                group_size: 32,
                use_hqq: false,
            },
        ),
        (
            "int4 weight-only group 128 (tinygemm)",
            Recipe::Int4WeightOnly {
                group_size: 128,
                use_hqq: false,
            },
        ),
        (
            "uint3 weight-only group 64",
            Recipe::UIntXWeightOnly {
                bits: 3,
                group_size: 64,
                use_hqq: false,
            },
        ),
        ("float8 weight-only (per row)", Recipe::Float8WeightOnly),
        (
            "int4 symmetric group 32",
            custom(
                MappingType::Symmetric,
                Granularity::PerGroup(32),
                QuantDtype::Int4,
            ),
        ),
    ]
}

/// Signal-to-quantization-noise ratio in dB: `10 log10(sum x^2 / sum (x - x')^2)`.
fn sqnr_db(x: &Tensor, xq: &Tensor) -> Result<f64> {
    let x = x.f_to_kind(Kind::Double)?;
    let noise = x.f_sub(&xq.f_to_kind(Kind::Double)?)?;
    let signal = x.f_square()?.f_sum(Kind::Double)?.double_value(&[]);
    let noise = noise.f_square()?.f_sum(Kind::Double)?.double_value(&[]);
    Ok(10.0 * (signal / noise).log10())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .context("usage: demo MODEL.safetensors [TENSOR]")?;
    let tensors = Tensor::read_safetensors(&path).with_context(|| format!("reading {path}"))?;
    let (name, w) = match args.next() {
        Some(want) => tensors
            .into_iter()
            .find(|(n, _)| *n == want)
            .with_context(|| format!("no tensor named {want} in {path}"))?,
        None => tensors
            .into_iter()
            .filter(|(_, t)| t.dim() == 2 && t.size()[1] % 128 == 0)
            .max_by_key(|(n, t)| (n.contains("attention"), t.numel()))
            .context("no 2-D weight with a last dim divisible by 128")?,
    };
    if !matches!(w.kind(), Kind::Float | Kind::Half | Kind::BFloat16) {
        bail!(
            "{name} has dtype {:?}; the demo needs a float weight",
            w.kind()
        );
    }
    println!(
        "{path}\n  {name}: shape {:?}, dtype {:?}\n",
        w.size(),
        w.kind()
    );
    println!(
        "{:<40} {:>12} {:>12} {:>12} {:>10}",
        "scheme", "scale shape", "scale[0]", "zp[0]", "SQNR dB"
    );
    for (name, recipe) in recipes() {
        let q = AffineQuantizedTensor::quantize(&w, &recipe)?;
        let dq = q.dequantize()?;
        let first = |t: &Tensor| t.f_reshape([-1]).map(|f| f.double_value(&[0]));
        println!(
            "{:<40} {:>12} {:>12.6} {:>12} {:>10.2}",
            name,
            format!("{:?}", q.scale().size()),
            first(q.scale())?,
            q.zero_point()
                .map(|z| first(z).map(|v| format!("{v}")))
                .transpose()?
                .unwrap_or("-".into()),
            sqnr_db(&w, &dq)?
        );
    }
    Ok(())
}
