//! One tensor to and from its stored form: quantize with the scheme's
//! torchao arguments, pack sub-byte codes, and the exact inverse
//! (unpack, `dequantize_affine`) that `dequantize` and the report use.

use std::str::FromStr;

use tch::{Kind, Tensor};
use tch_quant::{
    choose_qparams_affine, dequantize_affine, pack_uintx, quantize_affine, unpack_uintx,
    QuantDtype, QuantizeOptions, ZeroPointDomain,
};

use crate::dtypes::{finfo_eps, kind_name};
use crate::exit::{fail, Category, Failure, Result};
use crate::format::{Codes, Record};
use crate::scheme::Scheme;

/// Sub-byte codes are packed along the last dim, as torchao's `UintxLayout`
/// does by default (`pack_dim=-1`).
const PACK_DIM: i64 = -1;

/// A quantized tensor, ready to store.
pub struct Encoded {
    pub record: Record,
    pub qdata: Vec<Tensor>,
    pub scale: Tensor,
    pub zero_point: Option<Tensor>,
}

/// Quantizes `w` as torchao's recipe does: `choose_qparams_affine` then
/// `quantize_affine`, same arguments; then packs sub-byte codes.
pub fn encode(name: &str, w: &Tensor, block_size: &[i64], scheme: &Scheme) -> Result<Encoded> {
    let failed = |e: tch_quant::Error| {
        let category = match e {
            tch_quant::Error::Torch { .. } => Category::Internal,
            _ => Category::Tensor,
        };
        Failure::new(category, format!("cannot quantize tensor {name}: {e}"))
    };
    let mut qp = choose_qparams_affine(
        w,
        scheme.mapping,
        block_size,
        scheme.target,
        &scheme.options,
    )
    .map_err(failed)?;
    if scheme.per_group_qparams_shape {
        let reshape = |t: &Tensor| {
            let mut shape = w.size();
            if let (Some(last), Some(group)) = (shape.last_mut(), block_size.last()) {
                *last /= group;
            }
            t.f_reshape(shape.as_slice()).map_err(|e| {
                Failure::new(
                    Category::Internal,
                    format!("reshaping the qparams of {name}: {e}"),
                )
            })
        };
        qp.scale = reshape(&qp.scale)?;
        qp.zero_point = qp.zero_point.as_ref().map(reshape).transpose()?;
    }
    let codes = quantize_affine(
        w,
        block_size,
        &qp.scale,
        qp.zero_point.as_ref(),
        scheme.target,
        &scheme.quantize_options(),
    )
    .map_err(failed)?;
    let (qdata, layout) = match scheme.packing {
        Some(bits) => {
            // Exact: the codes lie in [0, 2^bits - 1] whatever their dtype.
            let bytes = codes
                .f_to_kind(Kind::Uint8)
                .map_err(|e| Failure::new(Category::Internal, format!("packing {name}: {e}")))?;
            let shards = pack_uintx(&bytes, bits, PACK_DIM).map_err(failed)?;
            let layout = Codes::Packed {
                bits,
                dim: PACK_DIM,
                shards: shards.len(),
            };
            (shards, layout)
        }
        None => {
            let layout = Codes::Plain {
                dtype: kind_name(codes.kind()).to_string(),
            };
            (vec![codes], layout)
        }
    };
    let (quant_min, quant_max) = scheme.quant_range();
    let Some(eps) = scheme.options.eps.or_else(|| finfo_eps(w.kind())) else {
        fail!(
            Category::Internal,
            "tensor {name}: no default eps for dtype {}",
            kind_name(w.kind())
        );
    };
    let record = Record {
        shape: w.size(),
        dtype: kind_name(w.kind()).to_string(),
        block_size: block_size.to_vec(),
        mapping_type: scheme.mapping.name().to_string(),
        target_dtype: scheme.target.name().to_string(),
        quant_min,
        quant_max,
        eps,
        preserve_zero: scheme.options.preserve_zero,
        zero_point_domain: scheme.options.zero_point_domain.name().to_string(),
        scale_dtype: kind_name(qp.scale.kind()).to_string(),
        zero_point_dtype: qp
            .zero_point
            .as_ref()
            .map(|z| kind_name(z.kind()).to_string()),
        codes: layout,
    };
    Ok(Encoded {
        record,
        qdata,
        scale: qp.scale,
        zero_point: qp.zero_point,
    })
}

/// Rebuilds the float tensor as torchao's `dequantize_affine` does with the
/// recorded arguments, in `output_dtype`.
pub fn decode(
    name: &str,
    record: &Record,
    qdata: &[Tensor],
    scale: &Tensor,
    zero_point: Option<&Tensor>,
    output_dtype: Kind,
) -> Result<Tensor> {
    let corrupt =
        |what: String| Failure::new(Category::Input, format!("quantized tensor {name}: {what}"));
    let target = QuantDtype::from_str(&record.target_dtype).map_err(|e| corrupt(e.to_string()))?;
    let domain =
        ZeroPointDomain::from_str(&record.zero_point_domain).map_err(|e| corrupt(e.to_string()))?;
    let codes = match &record.codes {
        Codes::Plain { .. } => match qdata {
            [codes] => codes.shallow_clone(),
            _ => fail!(
                Category::Input,
                "quantized tensor {name}: expected one qdata tensor"
            ),
        },
        Codes::Packed { bits, dim, shards } => {
            if qdata.len() != *shards {
                fail!(
                    Category::Input,
                    "quantized tensor {name}: expected {shards} qdata shards, found {}",
                    qdata.len()
                );
            }
            let bytes = unpack_uintx(qdata, *bits, *dim).map_err(|e| corrupt(e.to_string()))?;
            match target.storage_kind() {
                Kind::Uint8 => bytes,
                // The int4 recipe's codes are int32 in torchao.
                kind => bytes.f_to_kind(kind).map_err(|e| corrupt(e.to_string()))?,
            }
        }
    };
    if codes.size() != record.shape {
        fail!(
            Category::Input,
            "quantized tensor {name}: codes have shape {:?}, the record says {:?}",
            codes.size(),
            record.shape
        );
    }
    let options = QuantizeOptions {
        quant_min: Some(record.quant_min),
        quant_max: Some(record.quant_max),
        zero_point_domain: domain,
        ..Default::default()
    };
    dequantize_affine(
        &codes,
        &record.block_size,
        scale,
        zero_point,
        target,
        &options,
        output_dtype,
    )
    .map_err(|e| corrupt(e.to_string()))
}
