//! `tch-quant quantize`: the library's checkpoint quantization, with a
//! progress bar, the summary table and the JSON report, all outputs
//! committed together at the end.

use std::ops::Range;
use std::time::Instant;

use tch_quant::checkpoint::quantize::QuantizeJob;
use tch_quant::checkpoint::{
    dtype::dtype_name, quantize_checkpoint, Checkpoint, Entry, Outcome, OutputPlan, PendingFile,
    QuantizeObserver,
};

use tch::Tensor;
use tch_quant::{AffineQuantizedTensor, Recipe};

use tch_quant::checkpoint::compressed_tensors::{
    export_checkpoint, AsymmetricLayout, CtPlan, CtScheme,
};

use crate::cli::{CtAsymmetric, OutputFormat, QuantizeArgs};
use crate::device;
use crate::exit::{fail, Category, Failure, Result};
use crate::interrupt;
use crate::print;
use crate::progress::Progress;
use crate::report::{ErrorSums, Report, TensorOutcome, TensorReport};
use crate::scheme::Scheme;
use crate::select;

pub fn run(args: QuantizeArgs) -> Result<()> {
    let started = Instant::now();
    let scheme = Scheme::from_args(&args)?;
    let selection = select::selection(&args.include, &args.exclude)?;
    let device = device::resolve(args.device)?;
    let input = Checkpoint::open(&args.input)?;
    input.ensure_not_quantized()?;
    let ct = match args.format {
        OutputFormat::TchQuant => {
            if args.ct_asymmetric.is_some() {
                fail!(
                    Category::Usage,
                    "--ct-asymmetric only applies to --format compressed-tensors"
                );
            }
            None
        }
        OutputFormat::CompressedTensors => {
            let layout = match args.ct_asymmetric.unwrap_or(CtAsymmetric::Block) {
                CtAsymmetric::Block => AsymmetricLayout::Block,
                CtAsymmetric::Group => AsymmetricLayout::Group,
            };
            // Refused recipes fail before the output directory is made.
            CtScheme::for_recipe(&scheme.recipe, layout)
                .map_err(|e| Failure::new(Category::Usage, e))?;
            let plan = CtPlan::new(
                &input,
                &args.out.output,
                args.report.as_deref(),
                args.out.force,
            )?;
            Some((plan, layout))
        }
    };
    let result = run_to(
        &args,
        &input,
        &scheme,
        &selection,
        device,
        ct.as_ref(),
        started,
    );
    if result.is_err() {
        if let Some((plan, _)) = &ct {
            plan.abandon();
        }
    }
    result
}

/// The run, into tch-quant's format or (`ct`) a compressed-tensors model
/// directory.
fn run_to(
    args: &QuantizeArgs,
    input: &Checkpoint,
    scheme: &Scheme,
    selection: &tch_quant::Selection,
    device: tch::Device,
    ct: Option<&(CtPlan, AsymmetricLayout)>,
    started: Instant,
) -> Result<()> {
    let own_plan;
    let plan = match ct {
        Some((ct_plan, _)) => &ct_plan.tensors,
        None => {
            own_plan = OutputPlan::new(
                input,
                &args.out.output,
                args.report.as_deref(),
                args.out.force,
            )?;
            &own_plan
        }
    };
    print::stale_removed(plan);
    let decisions = select::decide_all(input, selection, scheme)?;

    let mut observer = Observer {
        progress: Progress::new(input.total_bytes()),
        reports: Vec::new(),
        error: ErrorSums::default(),
        baseline: scheme
            .recipe
            .use_hqq()
            .then(|| (scheme.recipe.without_hqq(), ErrorSums::default())),
    };
    let job = QuantizeJob {
        recipe: &scheme.recipe,
        decisions: &decisions,
        scheme: scheme.args.clone(),
        device,
    };
    let mut outputs = match ct {
        Some((ct_plan, layout)) => export_checkpoint(input, ct_plan, &job, *layout, &mut observer)?,
        None => quantize_checkpoint(input, plan, &job, &mut observer)?,
    };
    observer.progress.finish();

    let reports = observer.reports;
    let report = Report {
        tool: "tch-quant",
        version: env!("CARGO_PKG_VERSION"),
        torchao_version: scheme.recipe.semantics().torchao_version(),
        scheme: scheme.args.clone(),
        device: device::name(device),
        input: args.input.display().to_string(),
        outputs: ct
            .map(|(p, _)| &p.config)
            .into_iter()
            .chain(&plan.index)
            .chain(&plan.shards)
            .map(|p| p.display().to_string())
            .collect(),
        totals: Report::totals(&reports, started.elapsed().as_secs_f64()),
        tensors: reports,
    };
    if let Some(path) = &plan.report {
        outputs.add(PendingFile::with_contents(
            path,
            report.to_json().as_bytes(),
        )?);
    }
    // The commit is the last step that can fail: everything printed after
    // it is made before it, and printing cannot fail the run.
    let summary = report.table();
    outputs.commit_unless(&interrupt::requested)?;
    if let Some((ct_plan, _)) = ct {
        ct_plan.remove_stale()?;
    }
    print::summary(&summary);
    Ok(())
}

/// Progress, per-tensor reports (with the error of exactly what was
/// stored) and Ctrl-C, for the library's loop.
struct Observer {
    progress: Progress,
    reports: Vec<TensorReport>,
    /// The error of the tensor being quantized, so far.
    error: ErrorSums,
    /// With `--hqq`: the same recipe without HQQ and its error on the
    /// tensor being quantized, for the summary's gain over min/max.
    baseline: Option<(Recipe, ErrorSums)>,
}

impl QuantizeObserver for Observer {
    fn started(&mut self, entry: &Entry) {
        self.progress.start(&entry.name);
    }

    fn quantized(
        &mut self,
        entry: &Entry,
        rows: Range<usize>,
        original: &Tensor,
        piece: &AffineQuantizedTensor,
    ) -> tch_quant::Result<()> {
        if rows.start == 0 {
            self.error = ErrorSums::default();
        }
        let measuring = |e: tch::TchError| tch_quant::Error::Checkpoint {
            kind: tch_quant::CheckpointErrorKind::Io,
            message: format!("measuring the error of {}: {e}", entry.name),
        };
        let restored = piece.dequantize_as(original.kind())?;
        self.error.add(original, &restored).map_err(measuring)?;
        if let Some((plain, sums)) = &mut self.baseline {
            if rows.start == 0 {
                *sums = ErrorSums::default();
            }
            let q = AffineQuantizedTensor::quantize(original, plain)?;
            let restored = q.dequantize_as(original.kind())?;
            sums.add(original, &restored).map_err(measuring)?;
        }
        Ok(())
    }

    fn finished(&mut self, entry: &Entry, outcome: Outcome<'_>) -> tch_quant::Result<()> {
        let outcome = match outcome {
            Outcome::Copied(reason) => TensorOutcome::Copied {
                reason: select::reason_text(reason),
            },
            Outcome::Quantized {
                record,
                outputs,
                bytes_after,
            } => TensorOutcome::Quantized {
                block_size: record.block_size.clone(),
                error: self.error.stats(),
                minmax_sqnr_db: self.baseline.as_ref().map(|(_, sums)| sums.stats().sqnr_db),
                bytes_after,
                outputs: outputs.to_vec(),
            },
        };
        self.reports.push(TensorReport {
            name: entry.name.clone(),
            shape: entry.shape.clone(),
            dtype: dtype_name(entry.dtype),
            bytes_before: entry.num_bytes(),
            outcome,
        });
        self.progress.advance(entry.num_bytes());
        Ok(())
    }

    fn interrupted(&self) -> bool {
        interrupt::requested()
    }
}
