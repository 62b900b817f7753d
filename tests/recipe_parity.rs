//! The library's recipes, in-process, against torchao 0.11's own recipe
//! arguments, bit for bit:
//!
//! - the committed fixtures (`tests/parity/fixtures/recipes.safetensors`,
//!   written by `tests/parity/recipes.py`): every recipe variant on seeded
//!   float32/bfloat16/float16 weights, through `AffineQuantizedTensor`;
//! - the same checkpoint, and the MiniLM checkpoint when installed, quantized
//!   with every recipe through the library's checkpoint writer, checked by
//!   torchao (`scripts/torchao_check.py`) and read back with the library's
//!   reader into identical tensors;
//! - on CUDA when available, the quantized tensor type against the
//!   primitives there (skipped with a message otherwise).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "common/cuda.rs"]
mod common_cuda;
#[path = "common/oracle.rs"]
mod common_oracle;

use common_oracle::{minilm_checkpoint, oracle_python};
use tch::{Device, Tensor};
use tch_quant::checkpoint::{quantize_file, read_quantized, Checkpoint};
use tch_quant::{
    choose_qparams_affine, quantize_affine, AffineQuantizedTensor, QuantizeOptions, Recipe,
    Selection, StorageLayout,
};

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parity/fixtures/recipes.safetensors")
}

/// The recipe a `tch_quant.scheme` object names.
fn recipe_of(scheme: &serde_json::Value) -> Recipe {
    let int = |key: &str| scheme[key].as_i64().expect("an integer argument");
    let use_hqq = scheme.get("use_hqq").is_some_and(|v| v == true);
    match scheme["name"].as_str().expect("a scheme name") {
        "int8-weight-only" => Recipe::Int8WeightOnly {
            group_size: scheme.get("group_size").map(|_| int("group_size")),
        },
        "int4-weight-only" => Recipe::Int4WeightOnly {
            group_size: int("group_size"),
            use_hqq,
        },
        "uintx-weight-only" => Recipe::UIntXWeightOnly {
            bits: int("bits") as u32,
            group_size: int("group_size"),
            use_hqq,
        },
        "float8-weight-only" => Recipe::Float8WeightOnly,
        other => panic!("unknown scheme {other}"),
    }
}

/// Same dtype, shape and bits (NaN payloads and signed zeros included).
fn identical(a: &Tensor, b: &Tensor) -> bool {
    if a.kind() != b.kind() || a.size() != b.size() {
        return false;
    }
    let bytes = |t: &Tensor| {
        let t = t.to_device(Device::Cpu).contiguous();
        let n = t.numel() * t.kind().elt_size_in_bytes();
        let mut buf = vec![0u8; n];
        t.copy_data_u8(&mut buf, t.numel());
        buf
    };
    bytes(a) == bytes(b)
}

struct Fixture {
    checkpoint: Checkpoint,
    cases: Vec<serde_json::Value>,
}

impl Fixture {
    fn load() -> Fixture {
        let checkpoint = Checkpoint::open(&fixture_path()).expect("the recipe fixtures open");
        let meta = &checkpoint.shards[0].metadata;
        assert!(meta["torch"].starts_with("2.13.0"), "{meta:?}");
        assert_eq!(meta["torchao"], "0.11.0");
        let cases = serde_json::from_str(&meta["cases"]).expect("the case list parses");
        Fixture { checkpoint, cases }
    }

    fn tensor(&self, name: &str) -> Tensor {
        let entry = self
            .checkpoint
            .entry(name)
            .unwrap_or_else(|| panic!("fixture tensor {name}"));
        self.checkpoint.load(entry, Device::Cpu).unwrap()
    }

    fn maybe(&self, name: &str) -> Option<Tensor> {
        self.checkpoint.entry(name).map(|_| self.tensor(name))
    }
}

/// What differs between one of the library's tensors and torchao's.
fn differ(id: &str, what: &str, ours: &Tensor, theirs: &Tensor) -> Option<String> {
    (!identical(ours, theirs)).then(|| {
        format!(
            "{id}: {what} differs ({:?} {:?} vs torchao {:?} {:?})",
            ours.kind(),
            ours.size(),
            theirs.kind(),
            theirs.size()
        )
    })
}

/// The differences between the library's quantized tensor and torchao's
/// outputs for one fixture case (empty when bit-identical).
fn compare(fx: &Fixture, case: &serde_json::Value, q: &AffineQuantizedTensor) -> Vec<String> {
    let id = case["case"].as_str().unwrap();
    let theirs = |what: &str| fx.tensor(&format!("{id}/{what}"));
    let mut diffs = vec![
        differ(id, "codes", &q.codes().unwrap(), &theirs("codes")),
        differ(id, "scale", q.scale(), &theirs("scale")),
        differ(
            id,
            "dequantized",
            &q.dequantize().unwrap(),
            &theirs("dequantized"),
        ),
    ];
    diffs.push(
        match (q.zero_point(), fx.maybe(&format!("{id}/zero_point"))) {
            (Some(ours), Some(t)) => differ(id, "zero point", ours, &t),
            (None, None) => None,
            _ => Some(format!("{id}: zero point present on one side only")),
        },
    );
    let shards = case["shards"].as_u64().unwrap() as usize;
    if shards > 0 {
        if q.qdata().len() != shards || !matches!(q.layout(), StorageLayout::Packed { .. }) {
            diffs.push(Some(format!("{id}: expected {shards} packed shards")));
        }
        for (i, ours) in q.qdata().iter().enumerate() {
            let what = format!("shard.{i}");
            diffs.push(differ(id, &what, ours, &theirs(&what)));
        }
    }
    diffs
        .into_iter()
        .flatten()
        .map(|d| format!("{} {d}", case["scheme"]))
        .collect()
}

#[test]
fn every_recipe_fixture_is_bit_identical_to_torchao() {
    let fx = Fixture::load();
    let (mut diffs, mut identical_cases) = (Vec::new(), 0);
    for case in &fx.cases {
        let w = fx.tensor(case["weight"].as_str().unwrap());
        let q = AffineQuantizedTensor::quantize(&w, &recipe_of(&case["scheme"])).unwrap();
        let case_diffs = compare(&fx, case, &q);
        identical_cases += usize::from(case_diffs.is_empty());
        diffs.extend(case_diffs);
    }
    let n = fx.cases.len();
    println!("recipe fixtures: {n} cases, {identical_cases} identical (cpu, torchao 0.11.0)");
    for d in diffs.iter().take(20) {
        println!("  DIFF {d}");
    }
    assert!(n >= 40, "expected at least 40 recipe cases, found {n}");
    assert!(diffs.is_empty(), "{} differences from torchao", diffs.len());
}

/// Every field and tensor of two quantized tensors, bit for bit.
fn same_quantized(a: &AffineQuantizedTensor, b: &AffineQuantizedTensor) -> bool {
    a.qdata().len() == b.qdata().len()
        && a.qdata()
            .iter()
            .zip(b.qdata())
            .all(|(x, y)| identical(x, y))
        && identical(a.scale(), b.scale())
        && match (a.zero_point(), b.zero_point()) {
            (Some(x), Some(y)) => identical(x, y),
            (None, None) => true,
            _ => false,
        }
        && a.block_size() == b.block_size()
        && a.mapping_type() == b.mapping_type()
        && a.target_dtype() == b.target_dtype()
        && a.quant_range() == b.quant_range()
        && a.eps() == b.eps()
        && a.preserve_zero() == b.preserve_zero()
        && a.zero_point_domain() == b.zero_point_domain()
        && a.shape() == b.shape()
        && a.dtype() == b.dtype()
        && a.layout() == b.layout()
}

/// The recipe variants checked through the writer, as `tch_quant.scheme`
/// records them.
fn schemes() -> Vec<serde_json::Value> {
    use serde_json::json;
    let mut all = vec![
        json!({"name": "int8-weight-only"}),
        json!({"name": "int8-weight-only", "group_size": 32}),
        json!({"name": "float8-weight-only"}),
    ];
    all.extend([32, 64, 128, 256].map(|g| json!({"name": "int4-weight-only", "group_size": g})));
    all.extend((1..=8).map(|b| json!({"name": "uintx-weight-only", "bits": b, "group_size": 64})));
    all
}

/// Quantizes `input` with every recipe through the library's checkpoint
/// writer, has torchao check every output, and reads each back with the
/// library's reader into tensors identical to quantizing in memory.
fn writer_and_reader_agree_with_torchao(
    python: &Path,
    input: &Path,
    selection: &Selection,
) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = Checkpoint::open(input).unwrap();
    let mut outputs = Vec::new();
    let mut round_trips = 0;
    for (i, scheme) in schemes().iter().enumerate() {
        let recipe = recipe_of(scheme);
        let out = dir.path().join(format!("q{i}.safetensors"));
        let summary = quantize_file(input, &out, &recipe, selection).unwrap();
        assert!(summary.quantized > 0, "{scheme}: nothing quantized");
        let back = read_quantized(&out, Device::Cpu).unwrap();
        assert_eq!(back.len(), summary.quantized, "{scheme}");
        for (name, stored) in &back {
            let entry = checkpoint.entry(name).unwrap();
            let w = checkpoint.load(entry, Device::Cpu).unwrap();
            let fresh = AffineQuantizedTensor::quantize(&w, &recipe).unwrap();
            assert!(
                same_quantized(stored, &fresh),
                "{scheme}: {name} reads back differently"
            );
            round_trips += 1;
        }
        outputs.push(out);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/torchao_check.py");
    let run = Command::new(python)
        .arg(script)
        .arg(input)
        .args(&outputs)
        .output()
        .unwrap();
    let report =
        String::from_utf8_lossy(&run.stdout).into_owned() + &String::from_utf8_lossy(&run.stderr);
    println!("{report}");
    assert!(run.status.success(), "torchao_check.py: {report}");
    round_trips
}

#[test]
fn the_checkpoint_writer_and_reader_are_bit_identical_to_torchao() {
    let Some(python) = oracle_python() else {
        return;
    };
    let only_weights = Selection::new().include(|name| name.starts_with("weight/"));
    let n = writer_and_reader_agree_with_torchao(&python, &fixture_path(), &only_weights);
    println!(
        "recipe checkpoints: {} recipes x 3 weights, {n} read back identical",
        schemes().len()
    );
}

#[test]
fn minilm_recipes_are_bit_identical_to_torchao_when_installed() {
    let Some(python) = oracle_python() else {
        return;
    };
    let Some(model) = minilm_checkpoint(&python) else {
        return;
    };
    // Every 2-D weight, embeddings included.
    let checkpoint = Checkpoint::open(&model).unwrap();
    let two_d: BTreeMap<String, usize> = checkpoint
        .shards
        .iter()
        .flat_map(|s| s.entries())
        .filter(|e| e.shape.len() == 2 && e.name.ends_with("weight"))
        .map(|e| (e.name.clone(), e.shape[1]))
        .collect();
    let names = two_d.keys().cloned().collect::<Vec<_>>();
    let every_2d_weight = Selection::new().include(move |name| names.iter().any(|n| n == name));
    let n = writer_and_reader_agree_with_torchao(&python, &model, &every_2d_weight);
    println!(
        "MiniLM: {} recipes over {} 2-D weights, {n} quantized tensors read back identical",
        schemes().len(),
        two_d.len()
    );
}

#[test]
fn the_quantized_tensor_on_cuda_matches_the_primitives_there() {
    if !common_cuda::cuda_or_skip("quantized tensor: skipped CUDA (not available)") {
        return;
    }
    let fx = Fixture::load();
    let device = Device::Cuda(0);
    let mut compared = 0;
    for case in &fx.cases {
        let recipe = recipe_of(&case["scheme"]);
        let w = fx
            .tensor(case["weight"].as_str().unwrap())
            .to_device(device);
        let q = AffineQuantizedTensor::quantize(&w, &recipe).unwrap();
        assert_eq!(q.device(), device);
        // The recipe's own two calls on CUDA (the reference path there).
        let args = recipe.arguments();
        let block = recipe.check(&w.size(), w.kind()).unwrap();
        let qp =
            choose_qparams_affine(&w, args.mapping, &block, args.dtype, &args.options).unwrap();
        let codes = quantize_affine(
            &w,
            &block,
            &qp.scale,
            qp.zero_point.as_ref(),
            args.dtype,
            &QuantizeOptions::from(&args.options),
        )
        .unwrap();
        let ours = q.codes().unwrap();
        assert!(
            identical(&ours, &codes.to_kind(ours.kind())),
            "{}: codes",
            case["case"]
        );
        let back = q.to_device(Device::Cpu).unwrap();
        assert!(identical(back.scale(), &q.scale().to_device(Device::Cpu)));
        let restored = q.dequantize().unwrap();
        assert_eq!(restored.device(), device);
        assert_eq!(restored.kind(), w.kind());
        compared += 1;
    }
    println!("quantized tensor on CUDA: {compared} cases identical to the primitives on CUDA");
}

#[test]
fn non_finite_weights_are_bit_identical_to_torchao() {
    let Some(python) = oracle_python() else {
        return;
    };
    // Issue 9: a group holding +inf and -inf has an infinite scale and a NaN
    // zero point (the fused path wrote other NaN bits than torchao), and its
    // int4 codes are NaN before the cast to int32 (-2^31, packed as 0). Also
    // a NaN row and a row whose range overflows, in every input dtype.
    let mut weights = Vec::new();
    for (name, kind, max) in [
        ("f32.weight", tch::Kind::Float, f32::MAX as f64),
        ("bf16.weight", tch::Kind::BFloat16, half::bf16::MAX.to_f64()),
        ("f16.weight", tch::Kind::Half, 65504.0),
    ] {
        let values: Vec<f32> = (0..8 * 256)
            .map(|i| (i as f32 * 0.37).sin() * 2.0)
            .collect();
        let w = Tensor::from_slice(&values).view([8, 256]).to_kind(kind);
        let _ = w.get(3).get(0).fill_(f64::INFINITY);
        let _ = w.get(3).get(1).fill_(f64::NEG_INFINITY);
        let _ = w.get(5).get(40).fill_(f64::NAN);
        let _ = w.get(6).get(70).fill_(max);
        let _ = w.get(6).get(71).fill_(-max);
        weights.push((name, w));
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("non-finite.safetensors");
    Tensor::write_safetensors(&weights, &input).unwrap();
    let n = writer_and_reader_agree_with_torchao(&python, &input, &Selection::default());
    println!(
        "non-finite weights: {} recipes x 3 dtypes, {n} quantized tensors read back identical",
        schemes().len()
    );
}
