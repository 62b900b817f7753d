//! Loads a real weight matrix from a safetensors checkpoint, prints the
//! qparams several torchao schemes choose for it, and the quantization error
//! (SQNR) each gives after quantize -> dequantize.
//!
//! `cargo run --release --example demo -- path/to/model.safetensors [tensor-name]`

use anyhow::{bail, Context, Result};
use tch::{Kind, Tensor};
use tch_quant::{
    choose_qparams_affine, dequantize_affine, quantize_affine, Granularity, MappingType,
    QParamsOptions, QuantDtype, QuantizeOptions, ZeroPointDomain,
};

struct Scheme {
    name: &'static str,
    mapping: MappingType,
    granularity: Granularity,
    dtype: QuantDtype,
    options: QParamsOptions,
}

fn schemes() -> Vec<Scheme> {
    let tinygemm = QParamsOptions {
        quant_min: Some(0.0),
        quant_max: Some(15.0),
        eps: Some(1e-6),
        zero_point_dtype: Some(Kind::BFloat16),
        preserve_zero: false,
        zero_point_domain: ZeroPointDomain::Float,
        ..Default::default()
    };
    vec![
        Scheme {
            name: "int8 symmetric per-channel",
            mapping: MappingType::Symmetric,
            granularity: Granularity::PerAxis(0),
            dtype: QuantDtype::Int8,
            options: QParamsOptions {
                zero_point_dtype: Some(Kind::Int64),
                ..Default::default()
            },
        },
        Scheme {
            name: "int8 symmetric per-tensor",
            mapping: MappingType::Symmetric,
            granularity: Granularity::PerTensor,
            dtype: QuantDtype::Int8,
            options: QParamsOptions::default(),
        },
        Scheme {
            name: "uint4 asymmetric group 32 (tinygemm)",
            mapping: MappingType::Asymmetric,
            granularity: Granularity::PerGroup(32),
            dtype: QuantDtype::UInt4,
            options: tinygemm,
        },
        Scheme {
            name: "uint4 asymmetric group 128 (tinygemm)",
            mapping: MappingType::Asymmetric,
            granularity: Granularity::PerGroup(128),
            dtype: QuantDtype::UInt4,
            options: tinygemm,
        },
        Scheme {
            name: "int4 symmetric group 32",
            mapping: MappingType::Symmetric,
            granularity: Granularity::PerGroup(32),
            dtype: QuantDtype::Int4,
            options: QParamsOptions::default(),
        },
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
    for s in schemes() {
        let block = s.granularity.block_size(&w.size())?;
        let qp = choose_qparams_affine(&w, s.mapping, &block, s.dtype, &s.options)?;
        let opts = QuantizeOptions {
            quant_min: s.options.quant_min,
            quant_max: s.options.quant_max,
            zero_point_domain: s.options.zero_point_domain,
            ..Default::default()
        };
        let zp = qp.zero_point.as_ref();
        let q = quantize_affine(&w, &block, &qp.scale, zp, s.dtype, &opts)?;
        let dq = dequantize_affine(&q, &block, &qp.scale, zp, s.dtype, &opts, w.kind())?;
        let first = |t: &Tensor| t.f_reshape([-1]).map(|f| f.double_value(&[0]));
        println!(
            "{:<40} {:>12} {:>12.6} {:>12} {:>10.2}",
            s.name,
            format!("{:?}", qp.scale.size()),
            first(&qp.scale)?,
            zp.map(|z| first(z).map(|v| format!("{v}")))
                .transpose()?
                .unwrap_or("-".into()),
            sqnr_db(&w, &dq)?
        );
    }
    Ok(())
}
