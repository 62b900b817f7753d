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
//!   values reproduce (`"0.11.0"`);
//! - `tch_quant.scheme`: JSON, the scheme name and its arguments;
//! - `tch_quant.tensors`: JSON, one [`Record`] per quantized tensor of this
//!   file, with every argument torchao's `dequantize_affine` needs.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::exit::{fail, Category, Result};

pub const KEY_FORMAT: &str = "tch_quant.format";
pub const KEY_VERSION: &str = "tch_quant.version";
pub const KEY_TORCHAO: &str = "tch_quant.torchao_version";
pub const KEY_SCHEME: &str = "tch_quant.scheme";
pub const KEY_TENSORS: &str = "tch_quant.tensors";

pub const FORMAT_VERSION: &str = "1";
pub const TORCHAO_VERSION: &str = "0.11.0";

/// How one tensor was quantized: torchao's arguments, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The original tensor's shape and torch dtype (`float32`, ...).
    pub shape: Vec<i64>,
    pub dtype: String,
    pub block_size: Vec<i64>,
    /// torchao's `MappingType`, lower case.
    pub mapping_type: String,
    /// torchao's `target_dtype` argument (`int32` for the int4 recipe, whose
    /// codes are nevertheless stored packed).
    pub target_dtype: String,
    #[serde(serialize_with = "integral_as_int")]
    pub quant_min: f64,
    #[serde(serialize_with = "integral_as_int")]
    pub quant_max: f64,
    pub eps: f64,
    pub preserve_zero: bool,
    /// torchao's `ZeroPointDomain`: `int`, `float` or `none`.
    pub zero_point_domain: String,
    pub scale_dtype: String,
    /// `None` when there is no zero point.
    pub zero_point_dtype: Option<String>,
    pub codes: Codes,
}

/// How the codes are stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "layout", rename_all = "snake_case", deny_unknown_fields)]
pub enum Codes {
    /// `W.qdata` holds the codes, one per element, in `dtype`.
    Plain { dtype: String },
    /// `W.qdata` (one shard) or `W.qdata.0..` hold uint8 shards of
    /// `pack_uintx(codes.to(uint8), bits, dim)`, which is torchao's
    /// `bitpacking.pack`.
    Packed { bits: u32, dim: i64, shards: usize },
}

impl Record {
    /// The structural facts a reader relies on before touching tensors:
    /// what tch-quant writes, and nothing that would make a reader allocate
    /// by a number from the file (a crafted `shards` count would).
    fn check(&self) -> std::result::Result<(), String> {
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

pub fn scale_name(name: &str) -> String {
    format!("{name}.scale")
}

pub fn zero_point_name(name: &str) -> String {
    format!("{name}.zero_point")
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

/// What a file written by tch-quant says about itself.
#[derive(Debug, Clone)]
pub struct FileInfo {
    pub version: String,
    pub torchao_version: String,
    pub scheme: Value,
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
            fail!(
                Category::Input,
                "written in tch-quant format {format}; this tch-quant reads format \
                 {FORMAT_VERSION}"
            );
        }
        let get = |key: &str| -> Result<&String> {
            match metadata.get(key) {
                Some(v) => Ok(v),
                None => fail!(Category::Input, "corrupt tch-quant metadata: no {key}"),
            }
        };
        let scheme: Value = match serde_json::from_str(get(KEY_SCHEME)?) {
            Ok(v) => v,
            Err(e) => fail!(
                Category::Input,
                "corrupt tch-quant metadata {KEY_SCHEME}: {e}"
            ),
        };
        let tensors: BTreeMap<String, Record> = match serde_json::from_str(get(KEY_TENSORS)?) {
            Ok(v) => v,
            Err(e) => fail!(
                Category::Input,
                "corrupt tch-quant metadata {KEY_TENSORS}: {e}"
            ),
        };
        for (name, record) in &tensors {
            if let Err(problem) = record.check() {
                fail!(
                    Category::Input,
                    "corrupt tch-quant metadata {KEY_TENSORS}: tensor {name}: {problem}"
                );
            }
        }
        Ok(Some(FileInfo {
            version: get(KEY_VERSION)?.clone(),
            torchao_version: get(KEY_TORCHAO)?.clone(),
            scheme,
            tensors,
        }))
    }

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
        for r in bad {
            let err = FileInfo::from_metadata(&info(r.clone()).to_metadata())
                .err()
                .unwrap_or_else(|| panic!("{r:?} was accepted"));
            assert_eq!(err.category, Category::Input);
        }
    }
}
