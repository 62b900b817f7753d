//! The `tch-quant` binary, run as a user runs it: commands, outputs, the
//! report, every refused input with its exit code, interruption, and
//! bit-exactness against torchao through `scripts/torchao_check.py` (when the
//! project's .venv has torchao; `make test` creates it and sets
//! `TCH_QUANT_REQUIRE_ORACLE=1`, which turns a missing oracle into a failure).
//!
//! One test target, so that libtorch is linked once: this file holds what
//! the modules share (running the binary, scratch directories, the synthetic
//! checkpoints, assertions, finding the oracle's Python), and each module one
//! concern:
//!
//! - [`outputs`]: successful commands, their files, the report, `inspect`
//!   and `dequantize` round trips;
//! - [`refusals`]: every refused input with its exit code, leaving nothing
//!   behind;
//! - [`interruption`]: signals and temporary files;
//! - [`oracle`]: bit-exactness, checked by `scripts/torchao_check.py`;
//! - [`semantics`]: `--semantics 0.18`, checked by torchao 0.18.0.

#[path = "../common/cuda.rs"]
mod common_cuda;
#[path = "../common/oracle.rs"]
mod common_oracle;
mod interruption;
mod oracle;
mod outputs;
mod refusals;
mod semantics;

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use common_oracle::{minilm_checkpoint, oracle_python};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tch-quant");

/// Runs the binary with `args`.
fn tch_quant<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Asserts a refusal: the documented exit code and a message naming the
/// problem.
fn assert_refused(out: &Output, code: i32, needle: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(
        stderr.contains(needle),
        "expected {needle:?} in stderr: {stderr}"
    );
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
}

/// A scratch directory.
struct Work(tempfile::TempDir);

impl Work {
    fn new() -> Work {
        Work(tempfile::tempdir().expect("a temporary directory"))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn files(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.0.path())
            .expect("the directory reads")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

/// Deterministic values with a roughly normal spread, one seed per tensor.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32
    };
    (0..n)
        .map(|_| (uniform() + uniform() + uniform() - 1.5) * 0.2)
        .collect()
}

/// [`values`] as little-endian float32 bytes.
fn f32_bytes(n: usize, seed: u64) -> Vec<u8> {
    values(n, seed)
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

struct Spec {
    name: &'static str,
    dtype: Dtype,
    shape: &'static [usize],
}

/// The test checkpoint: linear weights in all three float dtypes (one wide
/// enough for every int4 group size), biases, a norm, an embedding, an
/// integer buffer, a rank-3 weight and a weight whose last dim (36) is no
/// multiple of 8 nor of any int4 group size.
const TINY: &[Spec] = &[
    Spec {
        name: "layer.0.linear.weight",
        dtype: Dtype::F32,
        shape: &[16, 64],
    },
    Spec {
        name: "layer.0.linear.bias",
        dtype: Dtype::F32,
        shape: &[16],
    },
    Spec {
        name: "layer.1.linear.weight",
        dtype: Dtype::BF16,
        shape: &[8, 128],
    },
    Spec {
        name: "layer.1.linear.bias",
        dtype: Dtype::BF16,
        shape: &[8],
    },
    Spec {
        name: "layer.2.proj.weight",
        dtype: Dtype::F16,
        shape: &[24, 64],
    },
    Spec {
        name: "layer.3.wide.weight",
        dtype: Dtype::F32,
        shape: &[4, 256],
    },
    Spec {
        name: "experts.weight",
        dtype: Dtype::F32,
        shape: &[2, 8, 64],
    },
    Spec {
        name: "odd.weight",
        dtype: Dtype::F32,
        shape: &[4, 36],
    },
    Spec {
        name: "norm.weight",
        dtype: Dtype::F32,
        shape: &[64],
    },
    Spec {
        name: "embed_tokens.weight",
        dtype: Dtype::F32,
        shape: &[10, 64],
    },
    Spec {
        name: "position_ids",
        dtype: Dtype::I64,
        shape: &[1, 8],
    },
];

fn spec_bytes(spec: &Spec, seed: u64) -> Vec<u8> {
    let n: usize = spec.shape.iter().product();
    let mut vals = values(n, seed);
    if spec.name == "layer.0.linear.weight" {
        // An all-zero row: the eps clamp of the scale decides its qparams.
        vals[..64].iter_mut().for_each(|v| *v = 0.0);
    }
    match spec.dtype {
        Dtype::F32 => vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::BF16 => vals
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        Dtype::F16 => vals
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        Dtype::I64 => (0..n as i64).flat_map(|v| v.to_le_bytes()).collect(),
        other => panic!("no test data for {other:?}"),
    }
}

/// Writes the tensors of `specs` to `path` with `{"format": "pt"}` metadata.
fn write_checkpoint(path: &Path, specs: &[&Spec]) {
    let data: Vec<(usize, Vec<u8>)> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let seed = TINY.iter().position(|t| t.name == s.name).unwrap_or(i) as u64 + 1;
            (i, spec_bytes(s, seed))
        })
        .collect();
    let views: Vec<(&str, TensorView)> = specs
        .iter()
        .zip(&data)
        .map(|(s, (_, bytes))| {
            (
                s.name,
                TensorView::new(s.dtype, s.shape.to_vec(), bytes).expect("a consistent view"),
            )
        })
        .collect();
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    safetensors::serialize_to_file(views, &metadata, path).expect("the checkpoint writes");
}

fn tiny(work: &Work) -> PathBuf {
    let path = work.path("tiny.safetensors");
    write_checkpoint(&path, &TINY.iter().collect::<Vec<_>>());
    path
}

/// The tiny checkpoint split into two shards with a Hugging Face index.
fn tiny_sharded(work: &Work) -> PathBuf {
    let (first, second): (Vec<&Spec>, Vec<&Spec>) =
        TINY.iter().partition(|s| s.name.starts_with("layer."));
    let mut weight_map = serde_json::Map::new();
    for (i, part) in [first, second].iter().enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", i + 1);
        write_checkpoint(&work.path(&file), part);
        for s in part {
            weight_map.insert(s.name.into(), Value::String(file.clone()));
        }
    }
    let index = work.path("model.safetensors.index.json");
    let json = serde_json::json!({ "metadata": { "total_size": 0 }, "weight_map": weight_map });
    std::fs::write(&index, json.to_string()).unwrap();
    index
}

/// name -> (dtype, shape)
type Layout = HashMap<String, (Dtype, Vec<usize>)>;

/// Reads a written file's tensors and metadata.
fn read_back(path: &Path) -> (Layout, HashMap<String, String>) {
    let bytes = std::fs::read(path).expect("the output exists");
    let (_, meta) = SafeTensors::read_metadata(&bytes).expect("a valid safetensors file");
    let st = SafeTensors::deserialize(&bytes).expect("a valid safetensors file");
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec())))
        .collect();
    (tensors, meta.metadata().clone().unwrap_or_default())
}

fn quantize(input: &Path, output: &Path, scheme: &[&str]) -> Output {
    let mut args: Vec<&OsStr> = vec![
        "quantize".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        output.as_os_str(),
    ];
    args.extend(scheme.iter().map(|s| OsStr::new(*s)));
    tch_quant(args)
}
