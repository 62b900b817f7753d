//! Quantization schemes: torchao 0.11's weight-only recipes as the exact
//! arguments they pass to `choose_qparams_affine` / `quantize_affine`, and the
//! custom scheme built from flags.
//!
//! The presets transcribe `torchao/quantization/quant_api.py` at v0.11.0
//! (`_int8_weight_only_quantize_tensor`, `_int4_weight_only_quantize_tensor`,
//! `_uintx_weight_only_transform`, `_float8_weight_only_quant_tensor` ->
//! `AffineQuantizedTensor.from_hp_to_floatx`). Their layouts change no value
//! of the unpadded region: `TensorCoreTiledLayout.pre_process` pads with whole
//! zero groups and rows, `UintxLayout` only packs, `PlainLayout` and
//! `Float8Layout` do nothing.

use serde_json::{json, Value};
use tch::Kind;
use tch_quant::{
    Granularity, MappingType, QParamsOptions, QuantDtype, QuantizeOptions, ZeroPointDomain,
};

use crate::cli::{CustomArgs, QuantizeArgs, SchemeName};
use crate::dtypes::{dtype_of, kind_name, parse_kind, F32_EPS};
use crate::exit::{fail, Category, Failure, Result};
use crate::format;

/// Checkpoint tensors of more dims than this do not occur; a per-axis
/// granularity beyond them is a typo, not a request.
const MAX_AXIS_RANK: i64 = 16;

/// Group sizes the tinygemm int4 kernel supports; torchao documents these.
const INT4_GROUP_SIZES: [i64; 4] = [32, 64, 128, 256];

/// Everything needed to quantize one weight, fixed before any data is read.
#[derive(Debug, Clone)]
pub struct Scheme {
    /// The user-facing arguments (`group_size`, `bits`, custom flags), for
    /// the metadata and the report.
    pub args: Value,
    pub mapping: MappingType,
    /// torchao's `target_dtype` argument (int32 for the int4 recipe).
    pub target: QuantDtype,
    pub granularity: Granularity,
    pub options: QParamsOptions,
    /// Codes are cast to uint8 and packed with `pack_uintx` along the last
    /// dim at this many bits.
    pub packing: Option<u32>,
    /// Scale and zero point keep one entry per group along the last dim even
    /// when the group spans the whole row (shape `[..., K / group]`), as the
    /// int4 recipe's `TensorCoreTiledLayout` computes them on its weight
    /// padded to a multiple of 1024 columns.
    pub per_group_qparams_shape: bool,
}

impl Scheme {
    pub fn from_args(args: &QuantizeArgs) -> Result<Scheme> {
        let given = args.custom.given();
        if args.scheme != SchemeName::Custom && !given.is_empty() {
            fail!(
                Category::Usage,
                "{} only apply to --scheme custom (the {} preset fixes every argument)",
                given.join(", "),
                args.scheme.cli_name()
            );
        }
        if args.bits.is_some() && args.scheme != SchemeName::UintxWeightOnly {
            fail!(
                Category::Usage,
                "--bits only applies to --scheme uintx-weight-only"
            );
        }
        if let Some(g) = args.group_size {
            if g < 1 {
                fail!(Category::Usage, "--group-size must be at least 1, got {g}");
            }
        }
        match args.scheme {
            SchemeName::Int8WeightOnly => Ok(int8_weight_only(args.group_size)),
            SchemeName::Int4WeightOnly => int4_weight_only(args.group_size.unwrap_or(128)),
            SchemeName::UintxWeightOnly => {
                let Some(bits) = args.bits else {
                    fail!(
                        Category::Usage,
                        "--scheme uintx-weight-only needs --bits (1 to 8)"
                    );
                };
                uintx_weight_only(bits, args.group_size.unwrap_or(64))
            }
            SchemeName::Float8WeightOnly => {
                if args.group_size.is_some() {
                    fail!(
                        Category::Usage,
                        "--group-size does not apply to float8-weight-only (one scale per row)"
                    );
                }
                Ok(float8_weight_only())
            }
            SchemeName::Custom => {
                if args.group_size.is_some() {
                    fail!(
                        Category::Usage,
                        "with --scheme custom, give the group size as --granularity per-group:N"
                    );
                }
                custom(&args.custom)
            }
        }
    }

    pub fn quantize_options(&self) -> QuantizeOptions {
        QuantizeOptions {
            quant_min: self.options.quant_min,
            quant_max: self.options.quant_max,
            zero_point_domain: self.options.zero_point_domain,
            ..Default::default()
        }
    }

    /// The quant range actually used: the overrides or the dtype's bounds.
    pub fn quant_range(&self) -> (f64, f64) {
        let (lo, hi) = self.target.bounds();
        (
            self.options.quant_min.unwrap_or(lo),
            self.options.quant_max.unwrap_or(hi),
        )
    }

    /// The tensor names a quantized `name` occupies under this scheme:
    /// the codes (one name per packed shard), the scale and, unless the
    /// zero-point domain is none, the zero point. The same names
    /// [`format::output_names`] gives for the record `codec::encode` writes.
    pub fn output_names(&self, name: &str) -> Vec<String> {
        let shards = self.packing.map_or(1, |bits| bits.count_ones() as usize);
        let codes = match self.packing {
            Some(bits) => format::Codes::Packed {
                bits,
                dim: -1,
                shards,
            },
            None => format::Codes::Plain {
                dtype: String::new(),
            },
        };
        let mut names = format::qdata_names(name, &codes);
        names.push(format::scale_name(name));
        if self.options.zero_point_domain != ZeroPointDomain::None {
            names.push(format::zero_point_name(name));
        }
        names
    }

    /// Checks the combination of arguments once, on a tiny tensor, so that a
    /// custom scheme torchao would refuse fails before any file is touched.
    ///
    /// The granularity is checked on its own (a group size or axis only has
    /// to be in range); the rest goes through the library on a 2x2 (or, for
    /// a per-axis granularity, 2x...x2 up to that axis) tensor, with a group
    /// of 2 standing in for the real group size, so nothing here grows with
    /// the flags' numbers.
    pub fn validate(&self) -> Result<()> {
        let (shape, granularity): (Vec<i64>, Granularity) = match self.granularity {
            Granularity::PerGroup(g) => {
                if g < 1 {
                    fail!(
                        Category::Usage,
                        "--granularity per-group:N needs N >= 1, got {g}"
                    );
                }
                (vec![2, 2], Granularity::PerGroup(2))
            }
            Granularity::PerAxis(axis) => {
                if !(-MAX_AXIS_RANK..MAX_AXIS_RANK).contains(&axis) {
                    fail!(
                        Category::Usage,
                        "--granularity per-axis:{axis}: no checkpoint tensor has that many dims \
                         (axes from -{MAX_AXIS_RANK} to {} are accepted)",
                        MAX_AXIS_RANK - 1
                    );
                }
                // The smallest rank that has this axis (negative axes count
                // from the end); at most MAX_AXIS_RANK, so at most 2^16
                // elements.
                let rank = if axis >= 0 { axis + 1 } else { -axis };
                (vec![2; rank.max(2) as usize], self.granularity)
            }
            g => (vec![2, 2], g),
        };
        let probe = tch::Tensor::f_zeros(shape.as_slice(), (Kind::Float, tch::Device::Cpu))
            .map_err(|e| Failure::new(Category::Internal, e))?;
        let block = granularity
            .block_size(&shape)
            .map_err(|e| Failure::new(Category::Usage, e))?;
        let qp = tch_quant::choose_qparams_affine(
            &probe,
            self.mapping,
            &block,
            self.target,
            &self.options,
        )
        .map_err(|e| Failure::new(Category::Usage, e))?;
        let _codes = tch_quant::quantize_affine(
            &probe,
            &block,
            &qp.scale,
            qp.zero_point.as_ref(),
            self.target,
            &self.quantize_options(),
        )
        .map_err(|e| Failure::new(Category::Usage, e))?;
        Ok(())
    }
}

impl SchemeName {
    pub fn cli_name(self) -> &'static str {
        match self {
            SchemeName::Int8WeightOnly => "int8-weight-only",
            SchemeName::Int4WeightOnly => "int4-weight-only",
            SchemeName::UintxWeightOnly => "uintx-weight-only",
            SchemeName::Float8WeightOnly => "float8-weight-only",
            SchemeName::Custom => "custom",
        }
    }
}

/// `Int8WeightOnlyConfig(group_size)`: symmetric int8, block
/// `(1, ..., 1, group_size or K)`, eps = f32 eps, int64 zero point, every
/// other argument at its default.
fn int8_weight_only(group_size: Option<i64>) -> Scheme {
    Scheme {
        args: match group_size {
            Some(g) => json!({ "name": "int8-weight-only", "group_size": g }),
            None => json!({ "name": "int8-weight-only" }),
        },
        mapping: MappingType::Symmetric,
        target: QuantDtype::Int8,
        granularity: group_size.map_or(Granularity::PerRow, Granularity::PerGroup),
        options: QParamsOptions {
            eps: Some(F32_EPS),
            zero_point_dtype: Some(Kind::Int64),
            ..Default::default()
        },
        packing: None,
        per_group_qparams_shape: false,
    }
}

/// `Int4WeightOnlyConfig(group_size)` with its default
/// `TensorCoreTiledLayout`: asymmetric, target int32 in `0..=15`, eps 1e-6,
/// bf16 zero point, `preserve_zero = LAYOUT_TO_PRESERVE_ZEROS[...] = False`,
/// float zero-point domain. The int32 codes are stored packed as uint4.
fn int4_weight_only(group_size: i64) -> Result<Scheme> {
    if !INT4_GROUP_SIZES.contains(&group_size) {
        fail!(
            Category::Usage,
            "int4-weight-only supports --group-size 32, 64, 128 or 256 (the tinygemm kernel's), \
             got {group_size}"
        );
    }
    Ok(Scheme {
        args: json!({ "name": "int4-weight-only", "group_size": group_size }),
        mapping: MappingType::Asymmetric,
        target: QuantDtype::Int32,
        granularity: Granularity::PerGroup(group_size),
        options: QParamsOptions {
            quant_min: Some(0.0),
            quant_max: Some(15.0),
            eps: Some(1e-6),
            zero_point_dtype: Some(Kind::BFloat16),
            preserve_zero: false,
            zero_point_domain: ZeroPointDomain::Float,
            ..Default::default()
        },
        packing: Some(4),
        per_group_qparams_shape: true,
    })
}

/// `UIntXWeightOnlyConfig(dtype=torch.uint{bits}, group_size)` without HQQ:
/// asymmetric, block `(1, ..., 1, group_size)` (torchao writes
/// `(1, group_size)`, the same for the 2-D weights it accepts), the dtype's
/// full range, eps = f32 eps, int32 zero point, int domain,
/// `preserve_zero = True`, codes packed by `UintxLayout` along the last dim. torchao's recipe accepts uint8 but its
/// layout cannot pack it; here uint8 codes are simply stored unpacked.
fn uintx_weight_only(bits: u32, group_size: i64) -> Result<Scheme> {
    let target = match bits {
        1 => QuantDtype::UInt1,
        2 => QuantDtype::UInt2,
        3 => QuantDtype::UInt3,
        4 => QuantDtype::UInt4,
        5 => QuantDtype::UInt5,
        6 => QuantDtype::UInt6,
        7 => QuantDtype::UInt7,
        8 => QuantDtype::UInt8,
        _ => fail!(Category::Usage, "--bits must be 1 to 8, got {bits}"),
    };
    Ok(Scheme {
        args: json!({ "name": "uintx-weight-only", "bits": bits, "group_size": group_size }),
        mapping: MappingType::Asymmetric,
        target,
        granularity: Granularity::PerGroup(group_size),
        options: QParamsOptions {
            eps: Some(F32_EPS),
            zero_point_dtype: Some(Kind::Int),
            ..Default::default()
        },
        packing: (bits < 8).then_some(bits),
        per_group_qparams_shape: false,
    })
}

/// `Float8WeightOnlyConfig()` -> `from_hp_to_floatx` -> `from_hp_to_intx`:
/// symmetric float8_e4m3fn per row, quant range `ceil(finfo.min)..ceil(finfo.max)`
/// = -448..448, eps = f32 eps, scale in the weight's dtype, no zero point.
fn float8_weight_only() -> Scheme {
    Scheme {
        args: json!({ "name": "float8-weight-only" }),
        mapping: MappingType::Symmetric,
        target: QuantDtype::Float8E4M3Fn,
        granularity: Granularity::PerRow,
        options: QParamsOptions {
            quant_min: Some(-448.0),
            quant_max: Some(448.0),
            eps: Some(F32_EPS),
            zero_point_domain: ZeroPointDomain::None,
            ..Default::default()
        },
        packing: None,
        per_group_qparams_shape: false,
    }
}

fn custom(flags: &CustomArgs) -> Result<Scheme> {
    let usage = |e: tch_quant::Error| Failure::new(Category::Usage, e);
    let Some(mapping) = &flags.mapping else {
        fail!(Category::Usage, "--scheme custom needs --mapping");
    };
    let Some(dtype) = &flags.dtype else {
        fail!(Category::Usage, "--scheme custom needs --dtype");
    };
    let Some(granularity) = &flags.granularity else {
        fail!(Category::Usage, "--scheme custom needs --granularity");
    };
    let mapping: MappingType = mapping.parse().map_err(usage)?;
    let target: QuantDtype = dtype.parse().map_err(usage)?;
    if dtype_of(target.storage_kind()).is_none() {
        fail!(
            Category::Usage,
            "--dtype {target}: safetensors has no dtype to store {target} codes in"
        );
    }
    let granularity = parse_granularity(granularity)?;
    let zero_point_domain = match &flags.zero_point_domain {
        Some(d) => d.parse().map_err(usage)?,
        None => ZeroPointDomain::Int,
    };
    let options = QParamsOptions {
        quant_min: flags.quant_min,
        quant_max: flags.quant_max,
        eps: flags.eps,
        scale_dtype: flags
            .scale_dtype
            .as_deref()
            .map(|s| parse_kind("--scale-dtype", s))
            .transpose()?,
        zero_point_dtype: flags
            .zero_point_dtype
            .as_deref()
            .map(|s| parse_kind("--zero-point-dtype", s))
            .transpose()?,
        preserve_zero: flags.preserve_zero.unwrap_or(true),
        zero_point_domain,
        force_reference: false,
    };
    let mut args = serde_json::Map::new();
    args.insert("name".into(), json!("custom"));
    args.insert("mapping".into(), json!(mapping.name()));
    args.insert("dtype".into(), json!(target.name()));
    args.insert("granularity".into(), json!(granularity_name(granularity)));
    let optional = [
        ("quant_min", flags.quant_min.map(|v| json!(v))),
        ("quant_max", flags.quant_max.map(|v| json!(v))),
        ("eps", flags.eps.map(|v| json!(v))),
        ("preserve_zero", flags.preserve_zero.map(|v| json!(v))),
        (
            "zero_point_domain",
            flags
                .zero_point_domain
                .as_ref()
                .map(|_| json!(zero_point_domain.name())),
        ),
        (
            "scale_dtype",
            options.scale_dtype.map(|k| json!(kind_name(k))),
        ),
        (
            "zero_point_dtype",
            options.zero_point_dtype.map(|k| json!(kind_name(k))),
        ),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            args.insert(key.into(), v);
        }
    }
    let scheme = Scheme {
        args: Value::Object(args),
        mapping,
        target,
        granularity,
        options,
        packing: target.is_sub_byte_unsigned().then(|| target.bits()),
        per_group_qparams_shape: false,
    };
    scheme.validate()?;
    Ok(scheme)
}

/// `per-tensor`, `per-row`, `per-axis:N` or `per-group:N`.
pub fn parse_granularity(s: &str) -> Result<Granularity> {
    let norm = s.trim().to_ascii_lowercase().replace('_', "-");
    let (kind, arg) = match norm.split_once(':') {
        Some((k, a)) => (k.to_string(), Some(a.to_string())),
        None => (norm.clone(), None),
    };
    let number = |what: &str| -> Result<i64> {
        match arg.as_deref().map(str::parse::<i64>) {
            Some(Ok(n)) => Ok(n),
            _ => fail!(
                Category::Usage,
                "--granularity {kind}:N needs an integer {what}, got {s:?}"
            ),
        }
    };
    match (kind.as_str(), &arg) {
        ("per-tensor", None) => Ok(Granularity::PerTensor),
        ("per-row", None) => Ok(Granularity::PerRow),
        ("per-axis", Some(_)) => Ok(Granularity::PerAxis(number("axis")?)),
        ("per-group", Some(_)) => {
            let g = number("group size")?;
            if g < 1 {
                fail!(
                    Category::Usage,
                    "--granularity per-group:N needs N >= 1, got {g}"
                );
            }
            Ok(Granularity::PerGroup(g))
        }
        _ => fail!(
            Category::Usage,
            "--granularity must be per-tensor, per-row, per-axis:N or per-group:N, got {s:?}"
        ),
    }
}

fn granularity_name(g: Granularity) -> String {
    match g {
        Granularity::PerTensor => "per-tensor".into(),
        Granularity::PerAxis(a) => format!("per-axis:{a}"),
        Granularity::PerGroup(n) => format!("per-group:{n}"),
        Granularity::PerRow | Granularity::PerToken => "per-row".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granularities_parse() {
        assert_eq!(
            parse_granularity("per-tensor").unwrap(),
            Granularity::PerTensor
        );
        assert_eq!(
            parse_granularity("per_axis:-1").unwrap(),
            Granularity::PerAxis(-1)
        );
        assert_eq!(
            parse_granularity("per-group:32").unwrap(),
            Granularity::PerGroup(32)
        );
        assert!(parse_granularity("per-group:0").is_err());
        assert!(parse_granularity("per-group").is_err());
        assert!(parse_granularity("per-block:3").is_err());
    }

    #[test]
    fn presets_match_torchao_arguments() {
        let s = int4_weight_only(32).unwrap();
        assert_eq!(s.quant_range(), (0.0, 15.0));
        assert_eq!(s.options.eps, Some(1e-6));
        assert!(!s.options.preserve_zero);
        assert_eq!(s.packing, Some(4));
        assert!(int4_weight_only(48).is_err());
        let s = float8_weight_only();
        assert_eq!(s.quant_range(), (-448.0, 448.0));
        assert_eq!(F32_EPS, 2f64.powi(-23));
        assert_eq!(uintx_weight_only(8, 64).unwrap().packing, None);
        assert_eq!(uintx_weight_only(3, 64).unwrap().quant_range(), (0.0, 7.0));
        assert!(uintx_weight_only(9, 64).is_err());
    }

    fn custom_with(granularity: &str) -> Result<Scheme> {
        custom(&CustomArgs {
            mapping: Some("asymmetric".into()),
            dtype: Some("uint4".into()),
            granularity: Some(granularity.into()),
            ..Default::default()
        })
    }

    #[test]
    fn validation_does_not_grow_with_the_flags() {
        // Ten billion elements would not fit; the probe stays 2x2.
        let s = custom_with("per-group:10000000000").unwrap();
        assert_eq!(s.granularity, Granularity::PerGroup(10_000_000_000));
        assert!(custom_with("per-axis:15").is_ok());
        assert!(custom_with("per-axis:-16").is_ok());
        for axis in ["16", "-17", &i64::MAX.to_string(), &i64::MIN.to_string()] {
            let err = custom_with(&format!("per-axis:{axis}")).err().unwrap();
            assert_eq!(err.category, Category::Usage, "axis {axis}");
        }
    }

    #[test]
    fn output_names_follow_packing_and_domain() {
        let names = |s: &Scheme| s.output_names("w");
        assert_eq!(
            names(&uintx_weight_only(7, 32).unwrap()),
            [
                "w.qdata.0",
                "w.qdata.1",
                "w.qdata.2",
                "w.scale",
                "w.zero_point"
            ]
        );
        assert_eq!(names(&float8_weight_only()), ["w.qdata", "w.scale"]);
        assert_eq!(
            names(&int4_weight_only(32).unwrap()),
            ["w.qdata", "w.scale", "w.zero_point"]
        );
    }
}
