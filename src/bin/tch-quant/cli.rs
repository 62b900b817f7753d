//! The command line: subcommands, flags and the help texts with examples.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tch_quant::Semantics;

use crate::exit::EXIT_CODES_HELP;

const ABOUT: &str = "Quantize safetensors checkpoints with torchao 0.11's weight-only recipes, \
bit for bit, and read them back.";

const MAIN_EXAMPLES: &str = "\
Examples:
  tch-quant quantize model.safetensors -o model-int4.safetensors \\
      --scheme int4-weight-only --group-size 32 --report int4.json
  tch-quant quantize model.safetensors.index.json -o out/model.safetensors.index.json \\
      --scheme int8-weight-only
  tch-quant inspect model-int4.safetensors
  tch-quant dequantize model-int4.safetensors -o model-restored.safetensors --dtype bf16";

const QUANTIZE_EXAMPLES: &str = "\
Schemes (torchao 0.11 recipes, argument for argument):
  int8-weight-only    Int8WeightOnlyConfig: symmetric int8, one scale per row
                      (or per --group-size), eps = f32 eps, int64 zero point
  int4-weight-only    Int4WeightOnlyConfig (tinygemm): asymmetric, codes 0..15,
                      --group-size 32|64|128|256 (default 128), eps 1e-6, bf16
                      zero point in the float domain; codes stored packed uint4
  uintx-weight-only   UIntXWeightOnlyConfig: asymmetric uint{--bits 1..8},
                      --group-size (default 64), eps = f32 eps, int32 zero point;
                      sub-byte codes packed along the last dim
  float8-weight-only  Float8WeightOnlyConfig: symmetric float8_e4m3fn, one
                      scale per row, no zero point
  --hqq               with int4-weight-only or uintx-weight-only: the
                      config's use_hqq=True (HQQ's proximal solver picks the
                      zero points; uintx codes then stored plain in uint8
                      with a float zero point, as torchao stores them); the
                      summary shows the SQNR gained over plain min/max
  custom              from --mapping, --dtype, --granularity and the other
                      custom flags (torchao's choose_qparams_affine defaults
                      for any flag left out)

With --semantics 0.18 (torchao 0.18.0's version-2 configs; the file records
torchao_version 0.18.0 and `tch-quant dequantize` follows it):
  int8-weight-only    Int8WeightOnlyConfig (Int8Tensor): int8 codes, float32
                      scale per row (or per --group-size), int8 zero points
  float8-weight-only  Float8WeightOnlyConfig (Float8Tensor): float8_e4m3fn
                      codes, float32 scale amax / 448 per row, no eps
  intx-weight-only    IntxWeightOnlyConfig (IntxUnpackedToInt8Tensor), 0.18
                      only: symmetric int{--bits 1..8} codes in int8, one
                      scale per row (or per --group-size) in the weight's
                      dtype, int8 zero points; 2-d weights
  int4-weight-only, uintx-weight-only and custom are refused (exit 2):
  torchao 0.18's Int4WeightOnlyConfig does not run on CPU (mslk kernels or
  CUDA), 0.18 has no UIntXWeightOnlyConfig, and custom 0.18 schemes are not
  offered by the command yet

Which tensors: by default every float32/float16/bfloat16 tensor whose name
ends in `weight`, of rank 2 or more, that is not an embedding and whose block
divides it; with packed codes (int4-weight-only, uintx below 8 bits, custom
uint1..uint7) its last dim must also be a multiple of 8. --include REGEX
replaces that rule (a named tensor that cannot be quantized is then an
error), --exclude REGEX removes tensors. Everything else is copied
unchanged, and the summary says why.

Output: for each quantized W, W.qdata (codes; W.qdata.0, W.qdata.1, ... for
3, 5, 6 and 7-bit packing), W.scale, and W.zero_point when the scheme has one
(float8-weight-only and --zero-point-domain none have none); the rest as it
was, and the scheme's arguments in the safetensors metadata.

With --format compressed-tensors, -o names a model directory: config.json (the
input's, with a quantization_config), the input's tokenizer and other small
files, and model.safetensors (or shards and their index) in
compressed-tensors' names: uintx-weight-only as pack-quantized,
int8-weight-only as int-quantized, float8-weight-only as float-quantized,
custom integer schemes over their dtype's whole range as pack-quantized
(symmetric int4 per group: W4A16) or int-quantized (8-bit symmetric);
int4-weight-only and other float zero points, and custom schemes with no
exact compressed-tensors equivalent, are refused with the reason.

Examples:
  tch-quant quantize model.safetensors -o model-int8.safetensors --scheme int8-weight-only
  tch-quant quantize model/model.safetensors -o model-u4/ --format compressed-tensors \\
      --scheme uintx-weight-only --bits 4 --group-size 32
  tch-quant quantize model/model.safetensors -o model-w4a16/ --format compressed-tensors \\
      --scheme custom --mapping symmetric --dtype int4 --granularity per-group:128
  tch-quant quantize model.safetensors -o model-int4.safetensors \\
      --scheme int4-weight-only --group-size 32 --report int4.json
  tch-quant quantize model.safetensors -o model-u3.safetensors \\
      --scheme uintx-weight-only --bits 3 --group-size 32 --exclude 'lm_head'
  tch-quant quantize model.safetensors -o model-emb.safetensors \\
      --scheme int8-weight-only --include '_embeddings\\.weight$' \\
      --include '(query|key|value|dense)\\.weight$'
  tch-quant quantize model.safetensors -o custom.safetensors --scheme custom \\
      --mapping symmetric --dtype int4 --granularity per-group:64 --eps 1e-5";

const DEQUANTIZE_EXAMPLES: &str = "\
Each quantized W is rebuilt under its own name with torchao's
dequantize_affine (dtype: the original one unless --dtype is given); every
other tensor is copied unchanged.

Examples:
  tch-quant dequantize model-int4.safetensors -o model-restored.safetensors
  tch-quant dequantize out/model.safetensors.index.json -o restored/model.safetensors.index.json \\
      --dtype f32";

const INSPECT_EXAMPLES: &str = "\
Examples:
  tch-quant inspect model-int4.safetensors
  tch-quant inspect out/model.safetensors.index.json --json";

#[derive(Debug, Parser)]
#[command(
    name = "tch-quant",
    version,
    about = ABOUT,
    after_help = MAIN_EXAMPLES,
    after_long_help = format!("{MAIN_EXAMPLES}\n\n{EXIT_CODES_HELP}"),
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Quantize the weights of a safetensors checkpoint.
    #[command(
        after_help = "Run with --help for the schemes, examples and exit codes.",
        after_long_help = format!("{QUANTIZE_EXAMPLES}\n\n{EXIT_CODES_HELP}")
    )]
    Quantize(Box<QuantizeArgs>),
    /// Rebuild a float checkpoint from a quantized one.
    #[command(
        after_help = "Run with --help for examples and exit codes.",
        after_long_help = format!("{DEQUANTIZE_EXAMPLES}\n\n{EXIT_CODES_HELP}")
    )]
    Dequantize(DequantizeArgs),
    /// Show what a (quantized) checkpoint holds.
    #[command(
        after_help = "Run with --help for examples and exit codes.",
        after_long_help = format!("{INSPECT_EXAMPLES}\n\n{EXIT_CODES_HELP}")
    )]
    Inspect(InspectArgs),
}

/// `--semantics`: `0.11`, `0.18` (or `0.11.0`, `0.18.0`).
fn parse_semantics(text: &str) -> Result<Semantics, String> {
    text.parse::<Semantics>().map_err(|_| {
        format!("{text:?} is not a torchao release tch-quant reproduces (0.11 or 0.18)")
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemeName {
    Int8WeightOnly,
    Int4WeightOnly,
    UintxWeightOnly,
    IntxWeightOnly,
    Float8WeightOnly,
    Custom,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    TchQuant,
    CompressedTensors,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CtAsymmetric {
    Block,
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FloatDtype {
    F32,
    F16,
    Bf16,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output file (.safetensors), or for a sharded input the output index
    /// (NAME.safetensors.index.json; shards are written beside it).
    #[arg(short, long, value_name = "OUTPUT")]
    pub output: PathBuf,
    /// Replace an existing output (never the input itself).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// Checkpoint to quantize: a .safetensors file or a sharded
    /// model.safetensors.index.json.
    #[arg(value_name = "INPUT")]
    pub input: PathBuf,
    #[command(flatten)]
    pub out: OutputArgs,
    /// Quantization recipe.
    #[arg(long, value_enum)]
    pub scheme: SchemeName,
    /// Elements per scale along the last dim (int4: 32, 64, 128 or 256,
    /// default 128; uintx: default 64; int8: default one group per row).
    #[arg(long, value_name = "N")]
    pub group_size: Option<i64>,
    /// Bits per code for uintx-weight-only and intx-weight-only (1 to 8).
    #[arg(long, value_name = "N")]
    pub bits: Option<u32>,
    /// int4-weight-only and uintx-weight-only: torchao's `use_hqq=True`
    /// (half-quadratic optimisation of the zero points); the summary shows
    /// the SQNR it gains over plain min/max.
    #[arg(long)]
    pub hqq: bool,
    /// The torchao release to reproduce: 0.11 (the default) or 0.18, whose
    /// version-2 configs int8-weight-only and float8-weight-only map to
    /// (int4-weight-only, uintx-weight-only and custom have no 0.18 recipe
    /// here and are refused) and intx-weight-only needs. The file records
    /// it.
    #[arg(long, value_name = "0.11|0.18", default_value = "0.11", value_parser = parse_semantics)]
    pub semantics: Semantics,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Quantize only tensors whose name matches (repeatable; replaces the
    /// default rule).
    #[arg(long, value_name = "REGEX")]
    pub include: Vec<String>,
    /// Never quantize tensors whose name matches (repeatable).
    #[arg(long, value_name = "REGEX")]
    pub exclude: Vec<String>,
    /// Also write the summary as JSON to this file.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Output format: tch-quant's own safetensors layout, or a
    /// compressed-tensors model directory (-o names the directory) that
    /// transformers and compressed-tensors load.
    #[arg(long, value_enum, default_value_t = OutputFormat::TchQuant)]
    pub format: OutputFormat,
    /// compressed-tensors only: the layout of uintx zero points. block
    /// (strategy block [1, group], int8 zero points) loads in
    /// compressed-tensors 0.20 and transformers; group (zero points packed
    /// along dim 0, as compressed-tensors' compressor and vLLM's kernels
    /// have them) does not load in transformers 5.24. Default: block.
    #[arg(long, value_enum)]
    pub ct_asymmetric: Option<CtAsymmetric>,
    // Last: its help heading applies to the flags that follow it.
    #[command(flatten)]
    pub custom: CustomArgs,
}

/// Flags of `--scheme custom`; unset ones take torchao's
/// `choose_qparams_affine` defaults.
#[derive(Debug, Args, Default)]
#[command(next_help_heading = "Custom scheme (--scheme custom)")]
pub struct CustomArgs {
    /// symmetric, symmetric-no-clipping-err or asymmetric.
    #[arg(long, value_name = "MAPPING")]
    pub mapping: Option<String>,
    /// Target dtype: int8, uint8, int16, int32, uint1..uint7, int1..int7,
    /// float8_e4m3fn, float8_e5m2, ... (sub-byte unsigned codes are packed).
    #[arg(long, value_name = "DTYPE")]
    pub dtype: Option<String>,
    /// per-tensor, per-row, per-axis:N or per-group:N.
    #[arg(long, value_name = "GRANULARITY")]
    pub granularity: Option<String>,
    /// Smallest code (default: the dtype's).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub quant_min: Option<f64>,
    /// Largest code (default: the dtype's).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub quant_max: Option<f64>,
    /// Smallest scale (default: finfo(input dtype).eps).
    #[arg(long, value_name = "EPS")]
    pub eps: Option<f64>,
    /// Widen each block's range to contain 0 (default true).
    #[arg(long, value_name = "BOOL")]
    pub preserve_zero: Option<bool>,
    /// int, float or none (default int).
    #[arg(long, value_name = "DOMAIN")]
    pub zero_point_domain: Option<String>,
    /// dtype of the scales (default: the input's).
    #[arg(long, value_name = "DTYPE")]
    pub scale_dtype: Option<String>,
    /// dtype of the zero points (default: int32 for asymmetric int domain,
    /// else the input's).
    #[arg(long, value_name = "DTYPE")]
    pub zero_point_dtype: Option<String>,
}

impl CustomArgs {
    /// The flags given, by name, to refuse them outside `--scheme custom`.
    pub fn given(&self) -> Vec<&'static str> {
        let flags = [
            ("--mapping", self.mapping.is_some()),
            ("--dtype", self.dtype.is_some()),
            ("--granularity", self.granularity.is_some()),
            ("--quant-min", self.quant_min.is_some()),
            ("--quant-max", self.quant_max.is_some()),
            ("--eps", self.eps.is_some()),
            ("--preserve-zero", self.preserve_zero.is_some()),
            ("--zero-point-domain", self.zero_point_domain.is_some()),
            ("--scale-dtype", self.scale_dtype.is_some()),
            ("--zero-point-dtype", self.zero_point_dtype.is_some()),
        ];
        flags
            .into_iter()
            .filter(|(_, set)| *set)
            .map(|(name, _)| name)
            .collect()
    }
}

#[derive(Debug, Args)]
pub struct DequantizeArgs {
    /// A checkpoint written by `tch-quant quantize` (.safetensors or index).
    #[arg(value_name = "QUANTIZED")]
    pub input: PathBuf,
    #[command(flatten)]
    pub out: OutputArgs,
    /// dtype of the rebuilt tensors (default: each tensor's original dtype).
    #[arg(long, value_enum)]
    pub dtype: Option<FloatDtype>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A .safetensors file or a sharded index.
    #[arg(value_name = "FILE")]
    pub input: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
