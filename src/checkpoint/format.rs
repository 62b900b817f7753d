//! The quantized checkpoint format: tensor names and the safetensors
//! metadata that records how each tensor was quantized.
//!
//! For a quantized tensor `W` the file holds `W.qdata` (or `W.qdata.0`,
//! `W.qdata.1`, ... when sub-byte packing gives several shards), `W.scale`
//! and, when the scheme has one, `W.zero_point`. The metadata entries are
//! strings (safetensors allows nothing else):
//!
//! - `tch_quant.format`: `"1"`, this layout's version;
//! - `tch_quant.version`: the crate version that wrote the file;
//! - `tch_quant.torchao_version`: the torchao release whose semantics the
//!   values reproduce (`"0.11.0"`, or `"0.18.0"` for a file quantized with
//!   `--semantics 0.18`, whose records then also say `"semantics": "0.18"`);
//! - `tch_quant.scheme`: JSON, the scheme name and its arguments;
//! - `tch_quant.tensors`: JSON, one [`Record`] per quantized tensor of this
//!   file, with every argument torchao's `dequantize_affine` needs.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use std::str::FromStr;

use tch::Tensor;

use super::bail;
use crate::error::Result;
use crate::quantized::{AffineQuantizedTensor, QuantizedParts, StorageLayout};
#[cfg(test)]
use crate::CheckpointErrorKind;
use crate::{kind_name, MappingType, QuantDtype, Recipe, Semantics, ZeroPointDomain};

/// Metadata key: this layout's version ([`FORMAT_VERSION`]).
pub const KEY_FORMAT: &str = "tch_quant.format";
/// Metadata key: the crate version that wrote the file.
pub const KEY_VERSION: &str = "tch_quant.version";
/// Metadata key: the torchao release whose semantics the values reproduce.
pub const KEY_TORCHAO: &str = "tch_quant.torchao_version";
/// Metadata key: JSON, the recipe's name and arguments ([`scheme_json`]).
pub const KEY_SCHEME: &str = "tch_quant.scheme";
/// Metadata key: JSON, one [`Record`] per quantized tensor of the file.
pub const KEY_TENSORS: &str = "tch_quant.tensors";

/// The layout version this crate writes and reads.
pub const FORMAT_VERSION: &str = "1";
/// The torchao release whose semantics the values reproduce by default
/// (a 0.18 file records [`Semantics::torchao_version`] instead).
pub const TORCHAO_VERSION: &str = "0.11.0";

/// How one tensor was quantized: torchao's arguments, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The original tensor's shape and torch dtype (`float32`, ...).
    pub shape: Vec<i64>,
    /// The original dtype's torch name.
    pub dtype: String,
    /// torchao's `block_size`.
    pub block_size: Vec<i64>,
    /// torchao's `MappingType`, lower case.
    pub mapping_type: String,
    /// torchao's `target_dtype` argument (`int32` for the int4 recipe, whose
    /// codes are nevertheless stored packed).
    pub target_dtype: String,
    /// The smallest code.
    #[serde(serialize_with = "integral_as_int")]
    pub quant_min: f64,
    /// The largest code.
    #[serde(serialize_with = "integral_as_int")]
    pub quant_max: f64,
    /// The eps the scales were clamped to.
    pub eps: f64,
    /// Whether the range was widened to include zero.
    pub preserve_zero: bool,
    /// torchao's `ZeroPointDomain`: `int`, `float` or `none`.
    pub zero_point_domain: String,
    /// torch's name of the scale's dtype.
    pub scale_dtype: String,
    /// `None` when there is no zero point.
    pub zero_point_dtype: Option<String>,
    /// How the codes are stored.
    pub codes: Codes,
    /// The torchao release the tensor was quantized under (`"0.18"`);
    /// absent, and so 0.11, in the files of earlier versions and every 0.11
    /// file.
    #[serde(
        default,
        skip_serializing_if = "is_default_semantics",
        with = "semantics_name"
    )]
    pub semantics: Semantics,
}

fn is_default_semantics(s: &Semantics) -> bool {
    *s == Semantics::default()
}

/// `Semantics` as its name in a record (`"0.18"`).
mod semantics_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::Semantics;

    pub fn serialize<S: Serializer>(s: &Semantics, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Semantics, D::Error> {
        let name = String::deserialize(de)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// How the codes are stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "layout", rename_all = "snake_case", deny_unknown_fields)]
pub enum Codes {
    /// `W.qdata` holds the codes, one per element, in `dtype`.
    Plain {
        /// torch's name of the codes' dtype.
        dtype: String,
    },
    /// `W.qdata` (one shard) or `W.qdata.0..` hold uint8 shards of
    /// `pack_uintx(codes.to(uint8), bits, dim)`, which is torchao's
    /// `bitpacking.pack`.
    Packed {
        /// Bits per code, 1 to 7.
        bits: u32,
        /// The dim packed along (always -1).
        dim: i64,
        /// Number of shards: one per set bit of `bits`.
        shards: usize,
    },
}

impl Record {
    /// The structural facts a reader relies on before touching tensors:
    /// what tch-quant writes, and nothing that would make a reader allocate
    /// by a number from the file (a crafted `shards` count would).
    fn check(&self) -> std::result::Result<(), String> {
        if self.shape.len() > super::reader::MAX_DIMS {
            return Err(format!(
                "rank {} (libtorch handles at most {} dims, and tch-quant writes no more)",
                self.shape.len(),
                super::reader::MAX_DIMS
            ));
        }
        if self.block_size.len() != self.shape.len() {
            return Err(format!(
                "block_size {:?} and shape {:?} differ in rank",
                self.block_size, self.shape
            ));
        }
        if self.shape.iter().any(|&d| d < 0) || self.block_size.iter().any(|&b| b < 1) {
            return Err(format!(
                "shape {:?} or block_size {:?} has an impossible entry",
                self.shape, self.block_size
            ));
        }
        // Every later step multiplies the dims; no stored tensor can hold
        // more elements than an i64 counts.
        if self
            .shape
            .iter()
            .try_fold(1i64, |n, &d| n.checked_mul(d))
            .is_none()
        {
            return Err(format!(
                "shape {:?} has more elements than libtorch can address",
                self.shape
            ));
        }
        if let Codes::Packed { bits, dim, shards } = self.codes {
            // `pack_uintx` packs 1 to 7 bits (8-bit codes are stored plain),
            // one shard per set bit of `bits`, always along the last dim.
            if !(1..=7).contains(&bits) {
                return Err(format!("packed codes of {bits} bits (1 to 7 exist)"));
            }
            if dim != -1 {
                return Err(format!(
                    "codes packed along dim {dim} (tch-quant packs along -1)"
                ));
            }
            let expected = bits.count_ones() as usize;
            if shards != expected {
                return Err(format!(
                    "{shards} shards of {bits}-bit codes ({bits}-bit packing has {expected})"
                ));
            }
        }
        Ok(())
    }
}

impl Record {
    /// The record of a quantized tensor: every argument torchao's
    /// `dequantize_affine` needs, with torch's names.
    pub fn of(q: &AffineQuantizedTensor) -> Record {
        let (quant_min, quant_max) = q.quant_range();
        Record {
            shape: q.shape().to_vec(),
            dtype: kind_name(q.dtype()).to_string(),
            block_size: q.block_size().to_vec(),
            mapping_type: q.mapping_type().name().to_string(),
            target_dtype: q.target_dtype().name().to_string(),
            quant_min,
            quant_max,
            eps: q.eps(),
            preserve_zero: q.preserve_zero(),
            zero_point_domain: q.zero_point_domain().name().to_string(),
            scale_dtype: kind_name(q.scale().kind()).to_string(),
            zero_point_dtype: q.zero_point().map(|z| kind_name(z.kind()).to_string()),
            codes: match q.layout() {
                StorageLayout::Plain => Codes::Plain {
                    dtype: kind_name(q.target_dtype().storage_kind()).to_string(),
                },
                StorageLayout::Packed { bits, dim } => Codes::Packed {
                    bits,
                    dim,
                    shards: q.qdata().len(),
                },
            },
            semantics: q.semantics(),
        }
    }

    /// Rebuilds quantized tensor `name` from its stored tensors; a record
    /// that does not fit them is corrupt input.
    pub fn to_tensor(
        &self,
        name: &str,
        qdata: Vec<Tensor>,
        scale: Tensor,
        zero_point: Option<Tensor>,
    ) -> Result<AffineQuantizedTensor> {
        let corrupt = |what: String| {
            super::error(
                crate::CheckpointErrorKind::InvalidInput,
                format!("quantized tensor {name}: {what}"),
            )
        };
        let parse = |e: crate::Error| corrupt(e.to_string());
        let layout = match self.codes {
            Codes::Plain { .. } => {
                if qdata.len() != 1 {
                    bail!(
                        InvalidInput,
                        "quantized tensor {name}: expected one qdata tensor"
                    );
                }
                StorageLayout::Plain
            }
            Codes::Packed { bits, dim, shards } => {
                if qdata.len() != shards {
                    bail!(
                        InvalidInput,
                        "quantized tensor {name}: expected {shards} qdata shards, found {}",
                        qdata.len()
                    );
                }
                StorageLayout::Packed { bits, dim }
            }
        };
        let Some(dtype) = float_kind(&self.dtype) else {
            return Err(corrupt(format!("unknown original dtype {:?}", self.dtype)));
        };
        // The stored dtypes must be the recorded ones: a retyped tensor of
        // the same element size passes every size check and would only
        // fail (or read wrong) when dequantized.
        let stored = |what: &str, recorded: &str, t: &Tensor| -> Result<()> {
            let kind = t.f_kind().map_err(|e| corrupt(e.to_string()))?;
            if kind_name(kind) != recorded {
                return Err(corrupt(format!(
                    "{what} is stored as {}, but its record says {recorded}",
                    kind_name(kind)
                )));
            }
            Ok(())
        };
        let codes_dtype = match &self.codes {
            Codes::Plain { dtype } => dtype.as_str(),
            Codes::Packed { .. } => "uint8",
        };
        for codes in &qdata {
            stored("the codes", codes_dtype, codes)?;
        }
        stored("the scale", &self.scale_dtype, &scale)?;
        if let (Some(z), Some(recorded)) = (&zero_point, &self.zero_point_dtype) {
            stored("the zero point", recorded, z)?;
        }
        AffineQuantizedTensor::from_parts_under(
            QuantizedParts {
                qdata,
                scale,
                zero_point,
                block_size: self.block_size.clone(),
                mapping_type: MappingType::from_str(&self.mapping_type).map_err(parse)?,
                target_dtype: QuantDtype::from_str(&self.target_dtype).map_err(parse)?,
                quant_min: self.quant_min,
                quant_max: self.quant_max,
                eps: self.eps,
                preserve_zero: self.preserve_zero,
                zero_point_domain: ZeroPointDomain::from_str(&self.zero_point_domain)
                    .map_err(parse)?,
                shape: self.shape.clone(),
                dtype,
                layout,
            },
            self.semantics,
        )
        .map_err(parse)
    }
}

/// The float kind a record names as a tensor's original dtype.
pub fn float_kind(name: &str) -> Option<tch::Kind> {
    Some(match name {
        "float32" => tch::Kind::Float,
        "float16" => tch::Kind::Half,
        "bfloat16" => tch::Kind::BFloat16,
        _ => return None,
    })
}

/// Python reads `0` as an int and `0.0` as a float; torchao's recipes pass
/// ints, so integral quant ranges are written as ints.
fn integral_as_int<S: Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 2f64.powi(53) {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

/// The codes tensors of `W`.
pub fn qdata_names(name: &str, codes: &Codes) -> Vec<String> {
    match codes {
        Codes::Packed { shards, .. } if *shards > 1 => {
            (0..*shards).map(|i| format!("{name}.qdata.{i}")).collect()
        }
        _ => vec![format!("{name}.qdata")],
    }
}

/// The scale tensor of `W`: `W.scale`.
pub fn scale_name(name: &str) -> String {
    format!("{name}.scale")
}

/// The zero-point tensor of `W`: `W.zero_point`.
pub fn zero_point_name(name: &str) -> String {
    format!("{name}.zero_point")
}

/// The tensor names a quantized `name` occupies under `recipe`: the codes
/// (one name per packed shard), the scale and, unless the zero-point domain
/// is none, the zero point; the same names [`output_names`] gives for the
/// record of what the recipe writes.
pub fn output_names_for(name: &str, recipe: &Recipe) -> Vec<String> {
    let codes = match recipe.packing() {
        Some(bits) => Codes::Packed {
            bits,
            dim: crate::PACK_DIM,
            shards: bits.count_ones() as usize,
        },
        None => Codes::Plain {
            dtype: String::new(),
        },
    };
    let mut names = qdata_names(name, &codes);
    names.push(scale_name(name));
    if recipe.qparams_options().zero_point_domain != ZeroPointDomain::None {
        names.push(zero_point_name(name));
    }
    names
}

/// Every tensor name a quantized `W` occupies.
pub fn output_names(name: &str, record: &Record) -> Vec<String> {
    let mut names = qdata_names(name, &record.codes);
    names.push(scale_name(name));
    if record.zero_point_dtype.is_some() {
        names.push(zero_point_name(name));
    }
    names
}

/// The recipe as `tch_quant.scheme` records it: its name and arguments,
/// e.g. `{"name": "int4-weight-only", "group_size": 32}`. A custom recipe
/// records its mapping, dtype and granularity, and each option that differs
/// from `choose_qparams_affine`'s default.
///
/// An HQQ recipe also records `use_hqq: true` and `torch_threads`, libtorch's
/// intra-op thread count now (`tch::get_num_threads`): HQQ's solver stops
/// when a float32 mean over the whole weight stops falling, and libtorch
/// splits that mean by its thread count, so the bits (torchao's as well)
/// depend on it; torchao at that count gives the same bits.
pub fn scheme_json(recipe: &Recipe) -> Value {
    let mut v = recipe_json(recipe);
    if recipe.use_hqq() {
        v["torch_threads"] = tch::get_num_threads().into();
    }
    v
}

fn recipe_json(recipe: &Recipe) -> Value {
    let name = recipe.name();
    match *recipe {
        Recipe::Int8WeightOnly {
            group_size: Some(g),
        }
        | Recipe::Int4WeightOnly {
            group_size: g,
            use_hqq: false,
        } => {
            serde_json::json!({ "name": name, "group_size": g })
        }
        // `use_hqq` is recorded only when set, so files without it read as
        // they always did.
        Recipe::Int4WeightOnly {
            group_size: g,
            use_hqq: true,
        } => {
            serde_json::json!({ "name": name, "group_size": g, "use_hqq": true })
        }
        Recipe::UIntXWeightOnly {
            bits,
            group_size,
            use_hqq,
        } => {
            let mut v = serde_json::json!({ "name": name, "bits": bits, "group_size": group_size });
            if use_hqq {
                v["use_hqq"] = true.into();
            }
            v
        }
        Recipe::Int8WeightOnly { group_size: None } | Recipe::Float8WeightOnly => {
            serde_json::json!({ "name": name })
        }
        // torchao 0.18's configs: their torchao arguments, by torchao's names.
        Recipe::Int8WeightOnlyV2 { granularity } => {
            serde_json::json!({ "name": name, "granularity": granularity.to_string() })
        }
        Recipe::Float8WeightOnlyV2 {
            granularity,
            float8_dtype,
        } => serde_json::json!({
            "name": name,
            "granularity": granularity.to_string(),
            "weight_dtype": float8_dtype.name(),
        }),
        Recipe::IntxWeightOnly {
            bits,
            granularity,
            mapping,
        } => serde_json::json!({
            "name": name,
            "bits": bits,
            "granularity": granularity.to_string(),
            "mapping_type": mapping.name(),
        }),
        Recipe::Custom(c) => {
            let mut args = serde_json::Map::new();
            args.insert("name".into(), name.into());
            args.insert("mapping".into(), c.mapping.name().into());
            args.insert("dtype".into(), c.dtype.name().into());
            args.insert("granularity".into(), c.granularity.to_string().into());
            let o = c.options;
            let d = crate::QParamsOptions::default();
            let optional = [
                ("quant_min", o.quant_min.map(Value::from)),
                ("quant_max", o.quant_max.map(Value::from)),
                ("eps", o.eps.map(Value::from)),
                (
                    "preserve_zero",
                    (o.preserve_zero != d.preserve_zero).then_some(o.preserve_zero.into()),
                ),
                (
                    "zero_point_domain",
                    (o.zero_point_domain != d.zero_point_domain)
                        .then(|| o.zero_point_domain.name().into()),
                ),
                ("scale_dtype", o.scale_dtype.map(|k| kind_name(k).into())),
                (
                    "zero_point_dtype",
                    o.zero_point_dtype.map(|k| kind_name(k).into()),
                ),
                ("keepdim", o.keepdim.then_some(true.into())),
                (
                    "semantics",
                    (o.semantics != d.semantics).then(|| o.semantics.name().into()),
                ),
            ];
            for (key, value) in optional {
                if let Some(v) = value {
                    args.insert(key.into(), v);
                }
            }
            Value::Object(args)
        }
    }
}

/// What a file written by tch-quant says about itself.
#[derive(Debug, Clone)]
pub struct FileInfo {
    /// The crate version that wrote it.
    pub version: String,
    /// The torchao release whose semantics its values reproduce.
    pub torchao_version: String,
    /// The recipe's name and arguments.
    pub scheme: Value,
    /// The records of the file's quantized tensors, by name.
    pub tensors: BTreeMap<String, Record>,
}

impl FileInfo {
    /// The metadata entries of one output file.
    pub fn to_metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (KEY_FORMAT.to_string(), FORMAT_VERSION.to_string()),
            (KEY_VERSION.to_string(), self.version.clone()),
            (KEY_TORCHAO.to_string(), self.torchao_version.clone()),
            (KEY_SCHEME.to_string(), self.scheme.to_string()),
            (
                KEY_TENSORS.to_string(),
                serde_json::to_string(&self.tensors).expect("records serialize"),
            ),
        ])
    }

    /// Reads the entries back; `Ok(None)` for a file tch-quant did not
    /// write.
    pub fn from_metadata(metadata: &BTreeMap<String, String>) -> Result<Option<FileInfo>> {
        let Some(format) = metadata.get(KEY_FORMAT) else {
            return Ok(None);
        };
        if format != FORMAT_VERSION {
            bail!(
                InvalidInput,
                "written in tch-quant format {format}; this tch-quant reads format \
                 {FORMAT_VERSION}"
            );
        }
        let get = |key: &str| -> Result<&String> {
            match metadata.get(key) {
                Some(v) => Ok(v),
                None => bail!(InvalidInput, "corrupt tch-quant metadata: no {key}"),
            }
        };
        let scheme: Value = match serde_json::from_str(get(KEY_SCHEME)?) {
            Ok(v) => v,
            Err(e) => bail!(InvalidInput, "corrupt tch-quant metadata {KEY_SCHEME}: {e}"),
        };
        let tensors: BTreeMap<String, Record> = match serde_json::from_str(get(KEY_TENSORS)?) {
            Ok(v) => v,
            Err(e) => bail!(
                InvalidInput,
                "corrupt tch-quant metadata {KEY_TENSORS}: {e}"
            ),
        };
        let torchao_version = get(KEY_TORCHAO)?.clone();
        let Ok(semantics) = torchao_version.parse::<Semantics>() else {
            bail!(
                InvalidInput,
                "tch-quant metadata {KEY_TORCHAO} = {torchao_version:?}: this tch-quant \
                 reproduces torchao 0.11.0 and 0.18.0"
            );
        };
        for (name, record) in &tensors {
            if record.semantics != semantics {
                bail!(
                    InvalidInput,
                    "corrupt tch-quant metadata {KEY_TENSORS}: tensor {name} records semantics \
                     {} but the file records torchao {torchao_version}",
                    record.semantics
                );
            }
            if let Err(problem) = record.check() {
                bail!(
                    InvalidInput,
                    "corrupt tch-quant metadata {KEY_TENSORS}: tensor {name}: {problem}"
                );
            }
        }
        Ok(Some(FileInfo {
            version: get(KEY_VERSION)?.clone(),
            torchao_version,
            scheme,
            tensors,
        }))
    }

    /// The scheme's display name ([`scheme_label`]).
    pub fn scheme_label(&self) -> String {
        scheme_label(&self.scheme)
    }
}

/// A scheme's display name from its JSON arguments, e.g.
/// `int4-weight-only (group_size=32)`.
pub fn scheme_label(scheme: &Value) -> String {
    let name = scheme.get("name").and_then(Value::as_str).unwrap_or("?");
    let args: Vec<String> = scheme
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != "name")
        .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_owned)))
        .collect();
    if args.is_empty() {
        name.to_string()
    } else {
        format!("{name} ({})", args.join(", "))
    }
}

/// A file's metadata without tch-quant's entries: what an output keeps of
/// its input's (e.g. `format: pt`).
pub fn foreign_metadata<V: Clone>(metadata: &BTreeMap<String, V>) -> BTreeMap<String, V> {
    metadata
        .iter()
        .filter(|(k, _)| !is_ours(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Whether a metadata key is one of tch-quant's.
pub fn is_ours(key: &str) -> bool {
    key.starts_with("tch_quant.")
}

/// Names that belong to quantized tensors, to tell them from copied ones.
pub fn quantized_output_names(info: &FileInfo) -> HashSet<String> {
    info.tensors
        .iter()
        .flat_map(|(name, record)| output_names(name, record))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(codes: Codes) -> Record {
        Record {
            shape: vec![4, 64],
            dtype: "float32".into(),
            block_size: vec![1, 32],
            mapping_type: "asymmetric".into(),
            target_dtype: "int32".into(),
            quant_min: 0.0,
            quant_max: 15.0,
            eps: 1e-6,
            preserve_zero: false,
            zero_point_domain: "float".into(),
            scale_dtype: "float32".into(),
            zero_point_dtype: Some("bfloat16".into()),
            codes,
            semantics: Semantics::default(),
        }
    }

    #[test]
    fn names_follow_the_shards() {
        let one = record(Codes::Packed {
            bits: 4,
            dim: -1,
            shards: 1,
        });
        assert_eq!(
            output_names("w", &one),
            ["w.qdata", "w.scale", "w.zero_point"]
        );
        let three = record(Codes::Packed {
            bits: 7,
            dim: -1,
            shards: 3,
        });
        assert_eq!(
            qdata_names("w", &three.codes),
            ["w.qdata.0", "w.qdata.1", "w.qdata.2"]
        );
    }

    #[test]
    fn metadata_round_trips_with_integer_ranges() {
        let info = FileInfo {
            version: "0.1.0".into(),
            torchao_version: TORCHAO_VERSION.into(),
            scheme: serde_json::json!({"name": "int4-weight-only", "group_size": 32}),
            tensors: BTreeMap::from([(
                "w".to_string(),
                record(Codes::Plain {
                    dtype: "int8".into(),
                }),
            )]),
        };
        let meta = info.to_metadata();
        assert!(meta[KEY_TENSORS].contains("\"quant_min\":0,"));
        assert!(meta[KEY_TENSORS].contains("\"eps\":1e-6"));
        let back = FileInfo::from_metadata(&meta).unwrap().unwrap();
        assert_eq!(back.tensors, info.tensors);
        assert_eq!(back.scheme_label(), "int4-weight-only (group_size=32)");
        assert!(FileInfo::from_metadata(&BTreeMap::new()).unwrap().is_none());
    }

    /// Found by tests/fuzz_checkpoint.rs: a scale retyped to another dtype
    /// of its size was accepted, and the tensor then failed to dequantize.
    #[test]
    fn stored_dtypes_must_be_the_recorded_ones() {
        let w = Tensor::from_slice(&(0..256).map(|i| i as f32 / 100.0).collect::<Vec<_>>())
            .view([4, 64]);
        let q = AffineQuantizedTensor::quantize(
            &w,
            &Recipe::Int4WeightOnly {
                group_size: 32,
                use_hqq: false,
            },
        )
        .unwrap();
        let record = Record::of(&q);
        let parts = |scale: Tensor| {
            record.to_tensor(
                "w",
                q.qdata().iter().map(Tensor::shallow_clone).collect(),
                scale,
                q.zero_point().map(Tensor::shallow_clone),
            )
        };
        assert!(parts(q.scale().shallow_clone()).is_ok());
        let retyped = q.scale().view_dtype(tch::Kind::Int);
        let err = parts(retyped).err().unwrap();
        assert_eq!(
            err.checkpoint_kind(),
            Some(CheckpointErrorKind::InvalidInput)
        );
        assert!(err.to_string().contains("stored as int32"), "{err}");
        let codes = q.qdata()[0].view_dtype(tch::Kind::Int8);
        let err = record
            .to_tensor(
                "w",
                vec![codes],
                q.scale().shallow_clone(),
                q.zero_point().map(Tensor::shallow_clone),
            )
            .err()
            .unwrap();
        assert!(err.to_string().contains("the codes"), "{err}");
    }

    #[test]
    fn crafted_records_are_refused() {
        let info = |r: Record| FileInfo {
            version: "0.1.0".into(),
            torchao_version: TORCHAO_VERSION.into(),
            scheme: serde_json::json!({"name": "custom"}),
            tensors: BTreeMap::from([("w".to_string(), r)]),
        };
        let packed = |bits, dim, shards| record(Codes::Packed { bits, dim, shards });
        let good = info(packed(7, -1, 3)).to_metadata();
        assert!(FileInfo::from_metadata(&good).unwrap().is_some());
        let mut bad = vec![
            packed(4, -1, 100_000_000_000),
            packed(7, -1, 2),
            packed(8, -1, 1),
            packed(0, -1, 0),
            packed(4, 0, 1),
        ];
        let mut rank = record(Codes::Plain {
            dtype: "int8".into(),
        });
        rank.block_size = vec![32];
        bad.push(rank);
        let mut high = record(Codes::Plain {
            dtype: "int8".into(),
        });
        high.shape = [vec![1; 70], vec![4, 64]].concat();
        high.block_size = [vec![1; 71], vec![32]].concat();
        bad.push(high);
        // Found by tests/fuzz_checkpoint.rs: the element count overflowed
        // (a debug-build panic) when the tensor was rebuilt.
        let mut huge = record(Codes::Plain {
            dtype: "int8".into(),
        });
        huge.shape = vec![8, i64::MAX];
        bad.push(huge);
        for r in bad {
            let err = FileInfo::from_metadata(&info(r.clone()).to_metadata())
                .err()
                .unwrap_or_else(|| panic!("{r:?} was accepted"));
            assert_eq!(
                err.checkpoint_kind().unwrap(),
                CheckpointErrorKind::InvalidInput
            );
        }
    }
}
