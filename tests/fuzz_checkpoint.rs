//! A seeded mutation fuzzer for the checkpoint layer and the CLI: `cargo
//! fuzz` needs a nightly toolchain, so this runs in `make test` as an
//! ordinary test, bounded in cases and time.
//!
//! Each case takes one of a few valid seed checkpoints (float weights of
//! every dtype the tool reads; tch-quant outputs of each storage layout; a
//! sharded checkpoint with its index), mutates it (the safetensors length
//! field, header JSON, dtypes, shapes, offsets, truncation; tch-quant's
//! records and scheme: lying shapes, block sizes, shard counts, dtypes,
//! ranges, domains; stored tensors reshaped or retyped to lie consistently;
//! the index's weight map) and drives the result through
//! `tch_quant::checkpoint` in-process (open, load, read, decide,
//! `quantize_file`, `quantized_records`, `load_quantized` and dequantize,
//! `read_quantized`, a dequantizing write through `Outputs`), and every
//! few cases through the `tch-quant` binary (`inspect`, `quantize`,
//! `dequantize`). It asserts that nothing panics or crashes, that every
//! failure leaves the output directory as it was and the input unchanged,
//! and that whatever a run writes reads back and dequantizes.
//!
//! `TCH_QUANT_FUZZ_CASES` (default 2000), `TCH_QUANT_FUZZ_SEED` (default
//! fixed, so CI runs the same cases), `TCH_QUANT_FUZZ_SECONDS` (a time cap,
//! default 60) and `TCH_QUANT_FUZZ_CLI_EVERY` (the binary runs on every
//! N-th case that opens, default 40) size a run; `TCH_QUANT_FUZZ_CASE=N`
//! replays one case with its panic's backtrace. The counts are printed.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tch::{Device, Kind};
use tch_quant::checkpoint::format::{self, FileInfo};
use tch_quant::checkpoint::{quantize_file, read_quantized, Checkpoint, OutputPlan, Outputs};
use tch_quant::{
    CheckpointErrorKind, CustomRecipe, Granularity, MappingType, QParamsOptions, QuantDtype,
    Recipe, Selection, ZeroPointDomain,
};

const BIN: &str = env!("CARGO_BIN_EXE_tch-quant");

// A small, seedable generator (splitmix64): the cases must not depend on
// a crate's generator changing between versions.
#[path = "common/rng.rs"]
mod common_rng;
use common_rng::Rng;

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A number from the environment, decimal or `0x` hex.
fn env_number(name: &str, default: u64) -> u64 {
    let Ok(v) = std::env::var(name) else {
        return default;
    };
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    }
    .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
}

/// A safetensors file taken apart: the header object and the data bytes.
#[derive(Clone)]
struct Parts {
    header: Map<String, Value>,
    data: Vec<u8>,
}

impl Parts {
    fn parse(bytes: &[u8]) -> Parts {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        Parts {
            header: serde_json::from_slice(&bytes[8..8 + n]).unwrap(),
            data: bytes[8 + n..].to_vec(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut header = serde_json::to_vec(&self.header).unwrap();
        header.resize(header.len().next_multiple_of(8), b' ');
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend(header);
        out.extend(&self.data);
        out
    }

    fn tensor_names(&self) -> Vec<String> {
        self.header
            .keys()
            .filter(|k| *k != "__metadata__")
            .cloned()
            .collect()
    }

    fn metadata(&mut self) -> &mut Map<String, Value> {
        let meta = self
            .header
            .entry("__metadata__")
            .or_insert_with(|| json!({}));
        if !meta.is_object() {
            *meta = json!({});
        }
        meta.as_object_mut().expect("made an object above")
    }
}

/// A file to write for a case: its name in the input directory and bytes.
type Files = Vec<(String, Vec<u8>)>;

struct Seed {
    /// Which kind of checkpoint (for the counts).
    label: String,
    /// The files; the first is the one to open.
    files: Files,
    /// Written by tch-quant quantize.
    quantized: bool,
}

fn f32_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..n)
        .flat_map(|_| ((rng.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5).to_le_bytes())
        .collect()
}

/// The float checkpoint every seed starts from: weights in each float
/// dtype, a bias, a rank-3 weight, an embedding, an integer buffer, a 0-d
/// tensor and an empty one.
fn float_checkpoint() -> Vec<u8> {
    let f32s = |n: usize, s: u64| f32_bytes(n, s);
    let halfs = |n: usize, s: u64, bf: bool| -> Vec<u8> {
        f32_bytes(n, s)
            .chunks(4)
            .flat_map(|c| {
                let v = f32::from_le_bytes(c.try_into().unwrap());
                if bf {
                    half::bf16::from_f32(v).to_le_bytes()
                } else {
                    half::f16::from_f32(v).to_le_bytes()
                }
            })
            .collect()
    };
    let tensors: Vec<(&str, &str, Vec<usize>, Vec<u8>)> = vec![
        ("a.weight", "F32", vec![8, 64], f32s(512, 1)),
        ("a.bias", "F32", vec![8], f32s(8, 2)),
        ("b.weight", "BF16", vec![4, 32], halfs(128, 3, true)),
        ("c.weight", "F16", vec![2, 4, 16], halfs(128, 4, false)),
        ("embed.weight", "F32", vec![4, 16], f32s(64, 5)),
        (
            "ids",
            "I64",
            vec![3],
            (0..3i64).flat_map(|v| v.to_le_bytes()).collect(),
        ),
        ("scalar", "F32", vec![], f32s(1, 6)),
        ("empty.weight", "F32", vec![0, 16], vec![]),
    ];
    let mut header = Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        header.insert(
            name.into(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [data.len(), data.len() + bytes.len()]}),
        );
        data.extend(bytes);
    }
    Parts { header, data }.bytes()
}

/// The recipes whose outputs seed the quantized cases: each storage layout
/// (plain int8, packed 4-bit in one shard, packed 3-bit in two, float8,
/// float zero points, none).
fn seed_recipes() -> Vec<(&'static str, Recipe)> {
    vec![
        ("int8", Recipe::Int8WeightOnly { group_size: None }),
        (
            "int4-g32",
            Recipe::Int4WeightOnly {
                group_size: 32,
                use_hqq: false,
            },
        ),
        (
            "uint3-g16",
            Recipe::UIntXWeightOnly {
                bits: 3,
                group_size: 16,
                use_hqq: false,
            },
        ),
        ("float8", Recipe::Float8WeightOnly),
        (
            "custom-sym-int8-no-zp",
            Recipe::Custom(CustomRecipe {
                mapping: MappingType::Symmetric,
                dtype: QuantDtype::Int8,
                granularity: Granularity::PerAxis(0),
                options: QParamsOptions {
                    zero_point_domain: ZeroPointDomain::None,
                    ..Default::default()
                },
            }),
        ),
    ]
}

/// Recipes the in-process quantization picks from.
fn case_recipes() -> Vec<Recipe> {
    let mut recipes: Vec<Recipe> = seed_recipes().into_iter().map(|(_, r)| r).collect();
    recipes.push(Recipe::UIntXWeightOnly {
        bits: 7,
        group_size: 32,
        use_hqq: false,
    });
    recipes.push(Recipe::Int8WeightOnly {
        group_size: Some(16),
    });
    recipes.push(Recipe::Custom(CustomRecipe {
        mapping: MappingType::Asymmetric,
        dtype: QuantDtype::UInt4,
        granularity: Granularity::PerGroup(16),
        options: QParamsOptions {
            preserve_zero: false,
            zero_point_domain: ZeroPointDomain::Float,
            ..Default::default()
        },
    }));
    recipes
}

/// CLI scheme flags the binary runs pick from.
const CLI_SCHEMES: &[&[&str]] = &[
    &["--scheme", "int8-weight-only"],
    &["--scheme", "int4-weight-only", "--group-size", "32"],
    &[
        "--scheme",
        "uintx-weight-only",
        "--bits",
        "3",
        "--group-size",
        "16",
    ],
    &["--scheme", "float8-weight-only"],
    &[
        "--scheme",
        "custom",
        "--mapping",
        "asymmetric",
        "--dtype",
        "uint4",
        "--granularity",
        "per-group:16",
        "--zero-point-domain",
        "float",
        "--preserve-zero",
        "false",
    ],
    &[
        "--scheme",
        "int8-weight-only",
        "--include",
        "weight",
        "--exclude",
        "embed",
    ],
];

fn seeds(dir: &Path) -> Vec<Seed> {
    let float = float_checkpoint();
    let mut seeds = vec![Seed {
        label: "float".into(),
        files: vec![("model.safetensors".into(), float.clone())],
        quantized: false,
    }];
    let input = dir.join("seed-float.safetensors");
    std::fs::write(&input, &float).unwrap();
    for (label, recipe) in seed_recipes() {
        let output = dir.join(format!("seed-{label}.safetensors"));
        let summary = quantize_file(&input, &output, &recipe, &Selection::default()).unwrap();
        assert!(summary.quantized > 0, "{label}");
        seeds.push(Seed {
            label: format!("quantized {label}"),
            files: vec![("model.safetensors".into(), std::fs::read(&output).unwrap())],
            quantized: true,
        });
    }
    // A sharded checkpoint: the float tensors split over two files.
    let parts = Parts::parse(&float);
    let mut shards = [parts.clone(), parts.clone()];
    let mut weight_map = Map::new();
    for (i, shard) in shards.iter_mut().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let mut data = Vec::new();
        let mut header = Map::new();
        header.insert("__metadata__".into(), json!({"format": "pt"}));
        for (k, (name, info)) in parts
            .header
            .iter()
            .filter(|(k, _)| *k != "__metadata__")
            .enumerate()
        {
            if k % 2 != i {
                continue;
            }
            let (s, e) = (
                info["data_offsets"][0].as_u64().unwrap() as usize,
                info["data_offsets"][1].as_u64().unwrap() as usize,
            );
            let mut info = info.clone();
            info["data_offsets"] = json!([data.len(), data.len() + e - s]);
            data.extend(&parts.data[s..e]);
            header.insert(name.clone(), info);
            weight_map.insert(name.clone(), json!(file));
        }
        *shard = Parts { header, data };
    }
    let index = json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    seeds.push(Seed {
        label: "sharded".into(),
        files: vec![
            (
                "model.safetensors.index.json".into(),
                serde_json::to_vec(&index).unwrap(),
            ),
            ("model-00001-of-00002.safetensors".into(), shards[0].bytes()),
            ("model-00002-of-00002.safetensors".into(), shards[1].bytes()),
        ],
        quantized: false,
    });
    seeds
}

/// JSON values that lie in every way a field can.
fn odd_value(rng: &mut Rng) -> Value {
    match rng.below(16) {
        0 => json!(null),
        1 => json!(true),
        2 => json!(0),
        3 => json!(-1),
        4 => json!(1),
        5 => json!(u64::MAX),
        6 => json!(i64::MIN),
        7 => json!(1e308),
        8 => json!(0.5),
        9 => json!(""),
        10 => json!("bogus"),
        11 => json!([]),
        12 => json!([1, 2, 3]),
        13 => json!({}),
        14 => json!(1u64 << 40),
        _ => json!(rng.below(300)),
    }
}

/// A number field pushed off by a little or a lot.
fn odd_number(rng: &mut Rng, v: i64) -> Value {
    match rng.below(10) {
        0 => json!(v + 1),
        1 => json!(v - 1),
        2 => json!(v * 2),
        3 => json!(v / 2),
        4 => json!(0),
        5 => json!(-v),
        6 => json!(i64::MAX),
        7 => json!(1i64 << 33),
        8 => json!(-1),
        _ => odd_value(rng),
    }
}

fn mutate_list(rng: &mut Rng, list: &mut Value) {
    let Some(items) = list.as_array_mut() else {
        *list = json!([rng.below(64)]);
        return;
    };
    match rng.below(7) {
        0 => items.push(json!(rng.below(4) + 1)),
        1 => {
            items.pop();
        }
        2 if !items.is_empty() => {
            let j = rng.below(items.len());
            items.swap(0, j)
        }
        3 => {
            // A rank beyond libtorch's 64 dims.
            let mut deep = vec![json!(1); 70];
            deep.append(items);
            *items = deep;
        }
        _ if !items.is_empty() => {
            let i = rng.below(items.len());
            let v = items[i].as_i64().unwrap_or(1);
            items[i] = odd_number(rng, v);
        }
        _ => items.push(odd_value(rng)),
    }
}

const DTYPES: &[&str] = &[
    "BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64", "F16", "BF16", "F32", "F64",
    "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "X", "",
];

/// dtypes of the same element size: a retype that keeps the byte counts
/// consistent and so passes safetensors' own checks.
fn same_size_dtype(rng: &mut Rng, dtype: &str) -> &'static str {
    let classes: &[&[&str]] = &[
        &["BOOL", "U8", "I8", "F8_E4M3", "F8_E5M2"],
        &["I16", "U16", "F16", "BF16"],
        &["I32", "U32", "F32"],
        &["I64", "U64", "F64"],
    ];
    let class: &[&'static str] = classes
        .iter()
        .find(|c| c.contains(&dtype))
        .unwrap_or(&classes[2]);
    class[rng.below(class.len())]
}

/// A shape with the same element count: consistent bytes, a lying layout.
fn same_count_shape(rng: &mut Rng, shape: &[u64]) -> Vec<u64> {
    let n: u64 = shape.iter().product();
    match rng.below(5) {
        0 => vec![n],
        1 => vec![1, n],
        2 => {
            let mut s = shape.to_vec();
            s.reverse();
            s
        }
        3 if n.is_multiple_of(2) && n > 0 => vec![2, n / 2],
        _ => [shape.to_vec(), vec![1]].concat(),
    }
}

/// Mutates one tensor entry of the header.
fn mutate_entry(rng: &mut Rng, parts: &mut Parts) -> String {
    let names = parts.tensor_names();
    if names.is_empty() {
        parts.header.insert("x".into(), odd_value(rng));
        return "added an entry".into();
    }
    let name = rng.pick(&names).clone();
    let entry = parts.header.get_mut(&name).unwrap();
    if !entry.is_object() {
        *entry = odd_value(rng);
        return format!(
            "entry {}: replaced again",
            name.chars().take(40).collect::<String>()
        );
    }
    let what = match rng.below(12) {
        0 => {
            entry["dtype"] = json!(rng.pick(DTYPES));
            "dtype"
        }
        1 => {
            let d = entry["dtype"].as_str().unwrap_or("F32").to_string();
            entry["dtype"] = json!(same_size_dtype(rng, &d));
            "consistent dtype"
        }
        2 | 3 => {
            mutate_list(rng, &mut entry["shape"]);
            "shape"
        }
        4 => {
            let shape: Vec<u64> = entry["shape"]
                .as_array()
                .map(|s| s.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            entry["shape"] = json!(same_count_shape(rng, &shape));
            "consistent shape"
        }
        5 | 6 => {
            mutate_list(rng, &mut entry["data_offsets"]);
            "offsets"
        }
        7 => {
            let key = *rng.pick(&["dtype", "shape", "data_offsets"]);
            entry.as_object_mut().map(|o| o.remove(key));
            "removed a field"
        }
        8 => {
            entry["extra"] = odd_value(rng);
            "unknown field"
        }
        9 => {
            *entry = odd_value(rng);
            "entry replaced"
        }
        10 => {
            let entry = parts.header.remove(&name).unwrap();
            let new = match rng.below(5) {
                0 => String::new(),
                1 => format!("{name}.qdata"),
                2 => "__metadata__".into(),
                3 => "é\u{0}☃".into(),
                _ => format!("{}.weight", "n".repeat(70_000)),
            };
            parts.header.insert(new, entry);
            "renamed"
        }
        _ => {
            let copy = entry.clone();
            parts.header.insert(format!("{name}.copy"), copy);
            "duplicated (overlapping data)"
        }
    };
    format!(
        "entry {}: {what}",
        name.chars().take(40).collect::<String>()
    )
}

/// Mutates the records tch-quant keeps in the metadata.
fn mutate_records(rng: &mut Rng, parts: &mut Parts) -> String {
    let meta = parts.metadata();
    let key = match rng.below(10) {
        0 => format::KEY_SCHEME,
        1 => format::KEY_FORMAT,
        2 => *rng.pick(&[format::KEY_VERSION, format::KEY_TORCHAO]),
        _ => format::KEY_TENSORS,
    };
    if key != format::KEY_TENSORS {
        if rng.chance(30) {
            meta.remove(key);
            return format!("{key} removed");
        }
        let v = match rng.below(4) {
            0 => "2".to_string(),
            1 => "{not json".to_string(),
            2 => json!({"name": "int4-weight-only", "group_size": "x"}).to_string(),
            _ => odd_value(rng).to_string(),
        };
        meta.insert(key.into(), json!(v));
        return format!("{key} = {v}");
    }
    let Some(text) = meta.get(key).and_then(Value::as_str) else {
        return "no records".into();
    };
    let mut records: Map<String, Value> = match serde_json::from_str(text) {
        Ok(Value::Object(m)) => m,
        _ => return "records unreadable".into(),
    };
    let names: Vec<String> = records.keys().cloned().collect();
    let what;
    if names.is_empty() || rng.chance(8) {
        records.insert("ghost.weight".into(), odd_value(rng));
        what = "record for an absent tensor".into();
    } else {
        let name = rng.pick(&names).clone();
        let record = records.get_mut(&name).unwrap();
        if !record.is_object() {
            *record = odd_value(rng);
        }
        if !record.is_object() {
            meta.insert(key.into(), json!(Value::Object(records).to_string()));
            return format!("record {name} replaced");
        }
        let field = *rng.pick(&[
            "shape",
            "dtype",
            "block_size",
            "mapping_type",
            "target_dtype",
            "quant_min",
            "quant_max",
            "eps",
            "preserve_zero",
            "zero_point_domain",
            "scale_dtype",
            "zero_point_dtype",
            "codes",
            "codes",
            "shape",
            "block_size",
        ]);
        let new = match field {
            "shape" | "block_size" => {
                let mut v = record[field].clone();
                mutate_list(rng, &mut v);
                v
            }
            "dtype" | "scale_dtype" | "zero_point_dtype" => json!(rng.pick(&[
                "float32",
                "float16",
                "bfloat16",
                "float64",
                "int8",
                "int32",
                "int64",
                "uint8",
                "bool",
                "float8_e4m3fn",
                "complex64",
                "bogus"
            ])),
            "mapping_type" => json!(rng.pick(&[
                "symmetric",
                "asymmetric",
                "symmetric_no_clipping_err",
                "bogus"
            ])),
            "target_dtype" => json!(rng.pick(&[
                "int8",
                "uint8",
                "int4",
                "uint4",
                "uint1",
                "uint7",
                "int32",
                "int16",
                "float8_e4m3fn",
                "float8_e5m2",
                "float32",
                "bogus"
            ])),
            "zero_point_domain" => json!(rng.pick(&["int", "float", "none", "bogus"])),
            "quant_min" | "quant_max" => match rng.below(6) {
                0 => json!(1e300),
                1 => json!(-1e300),
                2 => json!(0.5),
                3 => json!(255),
                4 => record[if field == "quant_min" {
                    "quant_max"
                } else {
                    "quant_min"
                }]
                .clone(),
                _ => odd_number(rng, record[field].as_i64().unwrap_or(0)),
            },
            "eps" => json!(rng.pick(&[0.0, -1.0, 1e308, 1e-45, 1.0])),
            "preserve_zero" => json!(!record[field].as_bool().unwrap_or(false)),
            _ => match rng.below(5) {
                0 => {
                    json!({"layout": "plain", "dtype": rng.pick(&["int8", "uint8", "int32", "float8_e4m3fn", "bogus"])})
                }
                1 => {
                    json!({"layout": "packed", "bits": rng.below(10), "dim": -1, "shards": rng.below(4)})
                }
                2 => {
                    json!({"layout": "packed", "bits": 4, "dim": rng.pick(&[0, 1, -2, 5]), "shards": 1})
                }
                3 => json!({"layout": "packed", "bits": 7, "dim": -1, "shards": 3}),
                _ => odd_value(rng),
            },
        };
        if rng.chance(10) {
            record.as_object_mut().map(|o| o.remove(field));
            what = format!("record {name}: {field} removed");
        } else {
            record[field] = new.clone();
            what = format!("record {name}: {field} = {new}");
        }
    }
    meta.insert(key.into(), json!(Value::Object(records).to_string()));
    what
}

/// Overwrites a few data bytes with values that make arithmetic odd (NaN,
/// infinities, zeros, all ones).
fn mutate_data(rng: &mut Rng, parts: &mut Parts) -> String {
    if parts.data.is_empty() {
        return "no data".into();
    }
    let patterns: &[&[u8]] = &[
        &f32::NAN.to_le_bytes(),
        &f32::INFINITY.to_le_bytes(),
        &f32::NEG_INFINITY.to_le_bytes(),
        &0f32.to_le_bytes(),
        &(-0f32).to_le_bytes(),
        &f32::MAX.to_le_bytes(),
        &[0xff; 4],
        &[0x7f, 0xc0],
    ];
    let n = 1 + rng.below(8);
    for _ in 0..n {
        let p = rng.pick(patterns);
        let at = rng.below(parts.data.len());
        for (i, b) in p.iter().enumerate() {
            if let Some(slot) = parts.data.get_mut(at + i) {
                *slot = *b;
            }
        }
    }
    format!("{n} odd values in the data")
}

/// Byte-level damage to a whole file.
fn mutate_raw(rng: &mut Rng, bytes: &mut Vec<u8>) -> String {
    let len = bytes.len();
    match rng.below(6) {
        0 => {
            let cut = rng.below(len + 1);
            bytes.truncate(cut);
            format!("truncated to {cut} of {len} bytes")
        }
        1 => {
            let v = *rng.pick(&[
                0u64,
                1,
                7,
                len as u64 - 8,
                len as u64 - 7,
                len as u64,
                100_000_001,
                u64::MAX,
                1 << 63,
            ]);
            let v = if rng.chance(50) {
                v
            } else {
                u64::from_le_bytes(bytes[..8].try_into().unwrap())
                    .wrapping_add(rng.below(17) as u64)
                    .wrapping_sub(8)
            };
            bytes[..8].copy_from_slice(&v.to_le_bytes());
            format!("length field {v}")
        }
        2 => {
            let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            let n = 1 + rng.below(4);
            for _ in 0..n {
                let at = 8 + rng.below(header.min(len - 8));
                bytes[at] = rng.next() as u8;
            }
            format!("{n} header bytes flipped")
        }
        3 => {
            bytes.extend((0..1 + rng.below(64)).map(|_| rng.next() as u8));
            "garbage appended".into()
        }
        4 => {
            let at = rng.below(len);
            bytes.insert(at, b'{');
            format!("a byte inserted at {at}")
        }
        _ => {
            let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            let at = 8 + rng.below(header.min(len - 8));
            bytes.truncate(at);
            "cut inside the header".into()
        }
    }
}

/// Mutates a sharded checkpoint's index.
fn mutate_index(rng: &mut Rng, bytes: &mut Vec<u8>) -> String {
    let mut index: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    // Earlier mutations may have left no objects to index into.
    if !index.is_object() {
        index = json!({});
    }
    if !index["weight_map"].is_object() {
        index["weight_map"] = json!({});
    }
    let what = match rng.below(7) {
        0 => {
            index["weight_map"]["a.weight"] = json!(rng.pick(&[
                "model-00002-of-00002.safetensors",
                "../model-00001-of-00002.safetensors",
                "missing.safetensors",
                "",
                "."
            ]));
            "a weight_map entry moved"
        }
        1 => {
            index["weight_map"]["ghost"] = json!("model-00001-of-00002.safetensors");
            "a tensor the shards lack"
        }
        2 => {
            index["weight_map"]
                .as_object_mut()
                .unwrap()
                .remove("a.weight");
            "a tensor left out"
        }
        3 => {
            index["weight_map"] = odd_value(rng);
            "weight_map replaced"
        }
        4 => {
            index["metadata"] = odd_value(rng);
            "metadata replaced"
        }
        5 => {
            index["weight_map"]["a.weight"] = odd_value(rng);
            "a weight_map value replaced"
        }
        _ => {
            index = odd_value(rng);
            "index replaced"
        }
    };
    *bytes = serde_json::to_vec(&index).unwrap();
    what.into()
}

/// Whether `bytes` still splits into a length field, a JSON object header
/// and data, so that a structural mutation can work on them.
fn parses(bytes: &[u8]) -> bool {
    let Some(field) = bytes.get(..8) else {
        return false;
    };
    let n = u64::from_le_bytes(field.try_into().unwrap());
    usize::try_from(n)
        .ok()
        .and_then(|n| bytes.get(8..n.checked_add(8)?))
        .is_some_and(|h| serde_json::from_slice::<Map<String, Value>>(h).is_ok())
}

/// One mutated case: the seed's files with one to three mutations.
fn mutate(rng: &mut Rng, seed: &Seed) -> (Files, Vec<String>) {
    let mut files = seed.files.clone();
    let mut notes = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let i = rng.below(files.len());
        let (name, bytes) = &mut files[i];
        let note = if name.ends_with(".json") {
            mutate_index(rng, bytes)
        } else if !parses(bytes) {
            // Already broken at the byte level: break it further.
            if bytes.len() < 9 {
                bytes.push(0);
                "grew".into()
            } else {
                let len = bytes.len();
                bytes[rng.below(len)] ^= 0x20;
                "a byte flipped".into()
            }
        } else {
            let mut parts = Parts::parse(bytes);
            let roll = rng.below(100);
            let note = if seed.quantized && roll < 45 {
                mutate_records(rng, &mut parts)
            } else if roll < 75 {
                mutate_entry(rng, &mut parts)
            } else if roll < 85 {
                mutate_data(rng, &mut parts)
            } else {
                let mut raw = parts.bytes();
                let note = mutate_raw(rng, &mut raw);
                *bytes = raw;
                notes.push(format!("{name}: {note}"));
                continue;
            };
            *bytes = parts.bytes();
            note
        };
        notes.push(format!("{name}: {note}"));
    }
    (files, notes)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("?")
}

fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// What the runs of a fuzz session came to.
#[derive(Default)]
struct Tally {
    cases: usize,
    by_seed: BTreeMap<String, usize>,
    opened: usize,
    outcomes: BTreeMap<String, usize>,
    cli_runs: usize,
    cli_exits: BTreeMap<i32, usize>,
    /// The first messages of runs that failed as internal errors (exit 1),
    /// which crafted input should not cause.
    internal: Vec<String>,
}

impl Tally {
    fn count(&mut self, what: &str, result: &Result<(), tch_quant::Error>) {
        let key = match result {
            Ok(()) => format!("{what}: ok"),
            Err(e) => match e.checkpoint_kind() {
                Some(kind) => format!("{what}: {kind:?}"),
                None => format!("{what}: {}", error_variant(e)),
            },
        };
        *self.outcomes.entry(key).or_default() += 1;
    }
}

fn error_variant(e: &tch_quant::Error) -> String {
    let debug = format!("{e:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("?")
        .to_string()
}

/// The in-process drive of one case. Returns a failure of an invariant
/// other than a panic.
fn drive(
    input: &Path,
    out_dir: &Path,
    quantized: bool,
    recipe: &Recipe,
    tally: &mut Tally,
) -> Result<(), String> {
    let checkpoint = match Checkpoint::open(input) {
        Ok(c) => c,
        Err(e) => {
            tally.count("open", &Err(e));
            return Ok(());
        }
    };
    tally.opened += 1;
    let entries: Vec<_> = checkpoint
        .shards
        .iter()
        .flat_map(|s| s.entries())
        .cloned()
        .collect();
    for entry in entries.iter().take(4) {
        let loaded = checkpoint.load(entry, Device::Cpu).map(drop);
        tally.count("load", &loaded);
        if let Err(e) = checkpoint.read(entry).map(drop) {
            tally.count("read", &Err(e));
        }
    }
    let decided = checkpoint.decide(&Selection::default(), recipe).map(drop);
    tally.count("decide", &decided);

    let records = checkpoint.quantized_records();
    tally.count("records", &records.as_ref().map(drop).map_err(clone_error));
    if let Ok(records) = &records {
        for (name, (shard, record)) in records.iter().take(3) {
            let result = checkpoint
                .load_quantized(*shard, name, record, Device::Cpu)
                .and_then(|(q, _)| q.dequantize().map(drop));
            tally.count("load_quantized + dequantize", &result);
        }
    }
    let read = read_quantized(input, Device::Cpu)
        .and_then(|qs| qs.values().try_for_each(|q| q.dequantize().map(drop)));
    tally.count("read_quantized + dequantize", &read);

    let output = out_dir.join(if input.to_string_lossy().ends_with(".json") {
        "q.safetensors.index.json"
    } else {
        "q.safetensors"
    });
    let before = listing(out_dir);
    if quantized {
        let result = dequantize_into(&checkpoint, &output);
        tally.count("dequantize write", &result);
        settle(out_dir, &before, &result, |_| {
            Checkpoint::open(&output)
                .map(drop)
                .map_err(|e| format!("the dequantized output does not open: {e}"))
        })?;
    }
    let result = quantize_file(input, &output, recipe, &Selection::default());
    tally.count(
        "quantize_file",
        &result.as_ref().map(drop).map_err(clone_error),
    );
    settle(
        out_dir,
        &before,
        &result.as_ref().map(drop).map_err(clone_error),
        |_| {
            // What tch-quant writes must read back and dequantize.
            if result.as_ref().is_ok_and(|s| s.quantized > 0) {
                read_quantized(&output, Device::Cpu)
                    .and_then(|qs| qs.values().try_for_each(|q| q.dequantize().map(drop)))
                    .map_err(|e| format!("the output of quantize_file does not read back: {e}"))?;
            }
            Ok(())
        },
    )
}

fn clone_error(e: &tch_quant::Error) -> tch_quant::Error {
    tch_quant::Error::Checkpoint {
        kind: e.checkpoint_kind().unwrap_or(CheckpointErrorKind::Io),
        message: e.to_string(),
    }
}

/// After a write: on failure the output directory must be as it was; on
/// success `check` the outputs, then remove them.
fn settle(
    out_dir: &Path,
    before: &BTreeSet<String>,
    result: &Result<(), tch_quant::Error>,
    check: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), String> {
    let after = listing(out_dir);
    match result {
        Err(e) if &after != before => Err(format!(
            "a failed write left {:?} (error: {e})",
            after.difference(before).collect::<Vec<_>>()
        )),
        Err(_) => Ok(()),
        Ok(()) => {
            check(out_dir)?;
            for name in after.difference(before) {
                std::fs::remove_file(out_dir.join(name)).unwrap();
            }
            Ok(())
        }
    }
}

/// `tch-quant dequantize` as the library's writer does it: every recorded
/// tensor rebuilt under its name, the rest copied.
fn dequantize_into(input: &Checkpoint, output: &Path) -> Result<(), tch_quant::Error> {
    let plan = OutputPlan::new(input, output, None, false)?;
    let infos = input
        .shards
        .iter()
        .map(|s| FileInfo::from_metadata(&s.metadata))
        .collect::<Result<Vec<_>, _>>()?;
    let mut outputs = Outputs::write_shards(input, &plan, |i, shard, out| {
        let Some(info) = &infos[i] else {
            for entry in shard.entries() {
                out.add_copy(entry)?;
            }
            return Ok(format::foreign_metadata(&shard.metadata));
        };
        let consumed = format::quantized_output_names(info);
        for entry in shard.entries().filter(|e| !consumed.contains(&e.name)) {
            out.add_copy(entry)?;
        }
        for (name, record) in &info.tensors {
            let (q, _) = input.load_quantized(i, name, record, Device::Cpu)?;
            let w = q.dequantize_as(Kind::Float)?;
            out.add_tensor(name, &w)?;
        }
        Ok(format::foreign_metadata(&shard.metadata))
    })?;
    outputs.write_index(input, Map::new())?;
    outputs.commit()
}

/// Runs the binary on a case: `inspect`, then `quantize` or `dequantize`.
/// A panic (101) or a signal is a crash; a failure must leave the output
/// directory as it was.
fn drive_cli(
    input: &Path,
    out_dir: &Path,
    quantized: bool,
    rng: &mut Rng,
    tally: &mut Tally,
) -> Result<(), String> {
    let output = out_dir.join(if input.to_string_lossy().ends_with(".json") {
        "c.safetensors.index.json"
    } else {
        "c.safetensors"
    });
    let mut commands: Vec<Vec<String>> = vec![vec!["inspect".into(), input.display().to_string()]];
    if rng.chance(30) {
        commands[0].push("--json".into());
    }
    let mut run = vec![
        if quantized { "dequantize" } else { "quantize" }.to_string(),
        input.display().to_string(),
        "-o".into(),
        output.display().to_string(),
    ];
    if !quantized {
        run.extend(rng.pick(CLI_SCHEMES).iter().map(|s| s.to_string()));
        if rng.chance(30) {
            run.extend([
                "--report".into(),
                out_dir.join("c.json").display().to_string(),
            ]);
        }
    }
    commands.push(run);
    for args in commands {
        let before = listing(out_dir);
        let out = Command::new(BIN).args(&args).output().unwrap();
        tally.cli_runs += 1;
        let code = out.status.code().unwrap_or(-1);
        *tally.cli_exits.entry(code).or_default() += 1;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !matches!(code, 0 | 1 | 3 | 4 | 5) {
            return Err(format!(
                "tch-quant {} exited {:?}: {stderr}",
                args[0], out.status
            ));
        }
        if code == 1 && tally.internal.len() < 5 {
            tally
                .internal
                .push(format!("{}: {}", args[0], stderr.trim()));
        }
        if code != 0 && !stderr.starts_with("error: ") {
            return Err(format!("exit {code} without an error message: {stderr}"));
        }
        let after = listing(out_dir);
        if code != 0 && after != before {
            return Err(format!(
                "a failed {} left {:?}: {stderr}",
                args[0],
                after.difference(&before).collect::<Vec<_>>()
            ));
        }
        if code == 0 && args[0] == "quantize" && !stderr.is_empty() {
            return Err(format!("a successful run wrote to stderr: {stderr}"));
        }
        for name in after.difference(&before) {
            std::fs::remove_file(out_dir.join(name)).unwrap();
        }
    }
    Ok(())
}

#[test]
fn mutated_checkpoints_never_panic_or_leave_partial_output() {
    let cases = env_number("TCH_QUANT_FUZZ_CASES", 2000) as usize;
    let seed = env_number("TCH_QUANT_FUZZ_SEED", 0x7c4_9a3e);
    let seconds = env_number("TCH_QUANT_FUZZ_SECONDS", 60);
    let cli_every = env_number("TCH_QUANT_FUZZ_CLI_EVERY", 40).max(1) as usize;
    let only = std::env::var("TCH_QUANT_FUZZ_CASE").ok().map(|v| {
        v.parse::<usize>()
            .expect("TCH_QUANT_FUZZ_CASE is a case number")
    });
    println!(
        "fuzz_checkpoint: seed {seed:#x} (TCH_QUANT_FUZZ_SEED), {cases} cases \
         (TCH_QUANT_FUZZ_CASES), at most {seconds} s (TCH_QUANT_FUZZ_SECONDS), the binary every \
         {cli_every} cases (TCH_QUANT_FUZZ_CLI_EVERY)"
    );

    let work = tempfile::tempdir().unwrap();
    let seed_dir = work.path().join("seeds");
    let out_dir = work.path().join("out");
    std::fs::create_dir_all(&seed_dir).unwrap();
    std::fs::create_dir_all(&out_dir).unwrap();
    // Something of the user's that must survive every run.
    std::fs::write(out_dir.join("keep.txt"), "mine").unwrap();
    let seeds = seeds(&seed_dir);
    let recipes = case_recipes();

    // Panics are caught and reported with their case; the default hook's
    // backtraces would bury the summary, except when replaying one case.
    let default_hook = std::panic::take_hook();
    if only.is_none() {
        std::panic::set_hook(Box::new(|_| {}));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tally = Tally::default();
    let mut failures: Vec<String> = Vec::new();
    for case in 0..cases {
        if only.is_some_and(|o| o != case) {
            continue;
        }
        if Instant::now() > deadline {
            println!("fuzz_checkpoint: time cap reached after {case} cases");
            break;
        }
        let mut rng = Rng::new(seed ^ (case as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        let s = &seeds[rng.below(seeds.len())];
        let (files, notes) = match catch_unwind(AssertUnwindSafe(|| mutate(&mut rng, s))) {
            Ok(mutated) => mutated,
            Err(panic) => {
                std::panic::set_hook(default_hook);
                panic!(
                    "case {case}: the mutator itself panicked: {}",
                    panic_message(&*panic)
                );
            }
        };
        let in_dir = work.path().join(format!("in-{case}"));
        std::fs::create_dir(&in_dir).unwrap();
        for (name, bytes) in &files {
            std::fs::write(in_dir.join(name), bytes).unwrap();
        }
        let input = in_dir.join(&files[0].0);
        let recipe = *rng.pick(&recipes);
        tally.cases += 1;
        *tally.by_seed.entry(s.label.clone()).or_default() += 1;
        let opened_before = tally.opened;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            drive(&input, &out_dir, s.quantized, &recipe, &mut tally)
        }));
        let mut problem = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(invariant)) => Some(invariant),
            Err(panic) => Some(format!("panic: {}", panic_message(&*panic))),
        };
        // The binary runs on every `cli_every`-th case that opens (the ones
        // that get past the header) and on a fifth as many that do not.
        let opened = tally.opened > opened_before;
        let cli = only.is_some()
            || (opened && tally.opened % cli_every == 0)
            || (!opened && case % (5 * cli_every) == 0);
        if problem.is_none() && cli {
            problem = drive_cli(&input, &out_dir, s.quantized, &mut rng, &mut tally).err();
        }
        for (name, bytes) in &files {
            if std::fs::read(in_dir.join(name)).ok().as_ref() != Some(bytes) {
                problem.get_or_insert_with(|| format!("the input {name} changed"));
            }
        }
        if listing(&out_dir) != BTreeSet::from(["keep.txt".to_string()]) {
            problem.get_or_insert_with(|| {
                format!("the output directory holds {:?}", listing(&out_dir))
            });
        }
        if let Some(problem) = problem {
            let problem: String = problem.chars().take(600).collect();
            failures.push(format!(
                "case {case} ({}; {}; recipe {recipe}): {problem}",
                s.label,
                notes.join("; ")
            ));
        }
        std::fs::remove_dir_all(&in_dir).unwrap();
    }
    std::panic::set_hook(default_hook);

    println!(
        "fuzz_checkpoint: {} cases in {:.1} s ({} opened), {} binary runs, seed {seed:#x}",
        tally.cases,
        started.elapsed().as_secs_f64(),
        tally.opened,
        tally.cli_runs
    );
    println!("  seeds: {:?}", tally.by_seed);
    for (what, n) in &tally.outcomes {
        println!("  {what}: {n}");
    }
    println!("  binary exit codes: {:?}", tally.cli_exits);
    for message in &tally.internal {
        println!(
            "  exit 1: {}",
            message.chars().take(300).collect::<String>()
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed (replay one with TCH_QUANT_FUZZ_SEED={seed:#x} \
         TCH_QUANT_FUZZ_CASE=N):\n{}",
        failures.len(),
        tally.cases,
        failures.join("\n")
    );
}
