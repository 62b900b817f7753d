//! Replays the observer oracle's cases (`tests/observers/oracle.py`, the
//! format of `tests/parity/README.md` with observer cases) through the
//! crate's observers: the same batches in the same order, then the running
//! minima and maxima after the last batch and the qparams compared with
//! torchao's (same dtype, same shape, same bytes). A case torchao refuses,
//! or one the crate refuses on purpose (`deliberate`), must be refused with
//! a typed error.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tch::{Device, Kind, Tensor};
use tch_quant::{
    parse_kind, AffineQuantizedMinMaxObserver, AffineQuantizedMovingAverageMinMaxObserver,
    Granularity, MappingType, MinMaxObserver, MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver, ObserverDtype, PerChannelMinMaxObserver, QParamsOptions,
    QScheme, QuantDtype, UniformObserverOptions, ZeroPointDomain,
};

/// A loaded oracle file.
pub struct Oracle {
    tensors: HashMap<String, Tensor>,
    pub cases: Vec<Value>,
    pub torch: String,
    pub torchao: String,
}

/// The cases of one observer kind and granularity (or qscheme).
#[derive(Default)]
pub struct Tally {
    pub computed: usize,
    pub identical: usize,
    pub refusals: usize,
    pub refused: usize,
    pub batches: usize,
}

#[derive(Default)]
pub struct Report {
    pub groups: BTreeMap<String, Tally>,
    pub diffs: Vec<String>,
}

impl Report {
    pub fn cases(&self) -> usize {
        self.groups.values().map(|t| t.computed + t.refusals).sum()
    }

    /// Prints one line per group and the first differences, then fails on
    /// any difference.
    pub fn print_and_check(&self, title: &str) {
        let (mut computed, mut identical, mut refusals, mut refused, mut batches) = (0, 0, 0, 0, 0);
        for (group, t) in &self.groups {
            println!(
                "  {group}: {}/{} bit-identical, {}/{} refused, {} batches",
                t.identical, t.computed, t.refused, t.refusals, t.batches
            );
            computed += t.computed;
            identical += t.identical;
            refusals += t.refusals;
            refused += t.refused;
            batches += t.batches;
        }
        println!(
            "{title}: {identical}/{computed} bit-identical (running min/max and qparams), \
             {refused}/{refusals} refused alike, {batches} batches observed"
        );
        for d in self.diffs.iter().take(40) {
            println!("  DIFF {d}");
        }
        assert!(
            self.diffs.is_empty(),
            "{title}: {} of {} cases differ from torchao",
            self.diffs.len(),
            self.cases()
        );
    }
}

impl Oracle {
    pub fn load(dir: &Path) -> Result<Self> {
        let s = crate::store::Store::load(dir, |name| Ok(parse_kind(name)?))?;
        Ok(Oracle {
            tensors: s.tensors,
            cases: s.cases,
            torch: s.torch,
            torchao: s.torchao,
        })
    }

    fn tensor(&self, key: &Value) -> Result<&Tensor> {
        let key = key.as_str().context("a tensor key")?;
        self.tensors
            .get(key)
            .with_context(|| format!("tensor {key}"))
    }

    /// Replays every case with the batches on `device`.
    pub fn replay_all(&self, device: Device) -> Result<Report> {
        let mut report = Report::default();
        for case in &self.cases {
            let id = case["id"].as_str().unwrap_or("?").to_string();
            let kind = case["observer"].as_str().context("observer")?;
            let args = &case["args"];
            let group = format!("{kind} {}", group_of(kind, args));
            let tally = report.groups.entry(group).or_default();
            let expected = &case["expected"];
            let refuse = !expected["ok"].as_bool().context("expected.ok")?
                || expected.get("deliberate").is_some();
            let batches = case["batches"]
                .as_array()
                .context("batches")?
                .iter()
                .map(|k| Ok(self.tensor(k)?.to_device(device)))
                .collect::<Result<Vec<_>>>()?;
            tally.batches += batches.len();
            let outcome = run(kind, args, &batches);
            if refuse {
                tally.refusals += 1;
                match outcome {
                    Err(e) if !matches!(e, tch_quant::Error::Torch { .. }) => tally.refused += 1,
                    Err(e) => report
                        .diffs
                        .push(format!("{id}: refused with an untyped libtorch error: {e}")),
                    Ok(_) => report.diffs.push(format!(
                        "{id}: accepted, expected a refusal ({})",
                        expected
                            .get("deliberate")
                            .or(expected.get("error"))
                            .unwrap_or(&Value::Null)
                    )),
                }
                continue;
            }
            tally.computed += 1;
            let got = match outcome {
                Ok(got) => got,
                Err(e) => {
                    report.diffs.push(format!("{id}: refused: {e}"));
                    continue;
                }
            };
            match self.compare(expected, &got) {
                Ok(()) => tally.identical += 1,
                Err(why) => report.diffs.push(format!("{id}: {why:#}")),
            }
        }
        Ok(report)
    }

    fn compare(&self, expected: &Value, got: &Observed) -> Result<()> {
        let pairs: [(&str, Option<&Tensor>); 4] = [
            ("min", got.min.as_ref()),
            ("max", got.max.as_ref()),
            ("scale", Some(&got.scale)),
            ("zero_point", got.zero_point.as_ref()),
        ];
        for (name, mine) in pairs {
            match (&expected[name], mine) {
                (Value::Null, None) => {}
                (Value::Null, Some(_)) => bail!("{name}: torchao has none, the crate has one"),
                (key, None) => bail!("{name}: the crate has none, torchao has {key}"),
                (key, Some(mine)) => same_bits(name, self.tensor(key)?, mine)?,
            }
        }
        Ok(())
    }
}

/// The granularity or qscheme a case's counts are grouped by.
fn group_of(kind: &str, args: &Value) -> String {
    let g = if kind.starts_with("affine") {
        args["granularity"].as_str().unwrap_or("?")
    } else {
        args["qscheme"].as_str().unwrap_or("?")
    };
    g.split(':').next().unwrap_or(g).to_string()
}

fn same_bits(name: &str, want: &Tensor, got: &Tensor) -> Result<()> {
    let got = got.to_device(Device::Cpu);
    if want.kind() != got.kind() || want.size() != got.size() {
        bail!(
            "{name}: torchao {:?} {:?}, the crate {:?} {:?}",
            want.kind(),
            want.size(),
            got.kind(),
            got.size()
        );
    }
    let bytes = |t: &Tensor| -> Result<Vec<u8>> {
        Ok(Vec::<u8>::try_from(
            t.f_contiguous()?
                .f_reshape([-1])?
                .f_view_dtype(Kind::Uint8)?,
        )?)
    };
    if bytes(want)? != bytes(&got)? {
        bail!("{name}: bytes differ: torchao {want}, the crate {got}");
    }
    Ok(())
}

/// What an observer holds after its batches.
pub struct Observed {
    min: Option<Tensor>,
    max: Option<Tensor>,
    scale: Tensor,
    zero_point: Option<Tensor>,
}

enum Obs {
    AffineMinMax(AffineQuantizedMinMaxObserver),
    AffineMovingAverage(AffineQuantizedMovingAverageMinMaxObserver),
    MinMax(MinMaxObserver),
    MovingAverage(MovingAverageMinMaxObserver),
    PerChannel(PerChannelMinMaxObserver),
    MovingAveragePerChannel(MovingAveragePerChannelMinMaxObserver),
}

macro_rules! each {
    ($obs:expr, $o:ident => $body:expr) => {
        match $obs {
            Obs::AffineMinMax($o) => $body,
            Obs::AffineMovingAverage($o) => $body,
            Obs::MinMax($o) => $body,
            Obs::MovingAverage($o) => $body,
            Obs::PerChannel($o) => $body,
            Obs::MovingAveragePerChannel($o) => $body,
        }
    };
}

/// Builds the observer a case names, feeds its batches, reads its state.
/// Malformed cases (an argument the replay cannot parse) panic: they are
/// bugs of the oracle, not refusals of the crate.
pub fn run(kind: &str, a: &Value, batches: &[Tensor]) -> tch_quant::Result<Observed> {
    let mut obs = build(kind, a)?;
    for b in batches {
        each!(&mut obs, o => o.observe(b))?;
    }
    let (min, max) = each!(&obs, o => o.min_max())
        .map(|(mn, mx)| (Some(mn.shallow_clone()), Some(mx.shallow_clone())))
        .unwrap_or((None, None));
    let affine = |qp: tch_quant::QParams| (qp.scale, qp.zero_point);
    let uniform = |(s, z): (Tensor, Tensor)| (s, Some(z));
    let (scale, zero_point) = match &obs {
        Obs::AffineMinMax(o) => affine(o.calculate_qparams()?),
        Obs::AffineMovingAverage(o) => affine(o.calculate_qparams()?),
        Obs::MinMax(o) => uniform(o.calculate_qparams()?),
        Obs::MovingAverage(o) => uniform(o.calculate_qparams()?),
        Obs::PerChannel(o) => uniform(o.calculate_qparams()?),
        Obs::MovingAveragePerChannel(o) => uniform(o.calculate_qparams()?),
    };
    Ok(Observed {
        min,
        max,
        scale,
        zero_point,
    })
}

fn opt_f64(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn opt_i64(v: &Value) -> Option<i64> {
    v.as_i64()
}

fn granularity(spec: &str) -> Granularity {
    let (name, value) = spec.split_once(':').unwrap_or((spec, ""));
    let n = || value.parse::<i64>().expect("a granularity's number");
    match name {
        "per_tensor" => Granularity::PerTensor,
        "per_axis" => Granularity::PerAxis(n()),
        "per_group" => Granularity::PerGroup(n()),
        "per_row" => Granularity::PerRow,
        "per_token" => Granularity::PerToken,
        other => panic!("unknown granularity {other}"),
    }
}

fn build(kind: &str, a: &Value) -> tch_quant::Result<Obs> {
    let text = |k: &str| a[k].as_str().unwrap_or_else(|| panic!("args.{k}"));
    if kind.starts_with("affine") {
        let mapping: MappingType = text("mapping_type").parse()?;
        let target: QuantDtype = text("target_dtype").parse()?;
        let options = QParamsOptions {
            quant_min: opt_f64(&a["quant_min"]),
            quant_max: opt_f64(&a["quant_max"]),
            eps: opt_f64(&a["eps"]),
            scale_dtype: a["scale_dtype"].as_str().map(parse_kind).transpose()?,
            zero_point_dtype: a["zero_point_dtype"].as_str().map(parse_kind).transpose()?,
            preserve_zero: a["preserve_zero"].as_bool().expect("preserve_zero"),
            zero_point_domain: text("zero_point_domain").parse::<ZeroPointDomain>()?,
            force_reference: false,
            ..Default::default()
        };
        let g = granularity(text("granularity"));
        return Ok(if kind == "affine_min_max" {
            Obs::AffineMinMax(AffineQuantizedMinMaxObserver::new(
                mapping, target, g, options,
            )?)
        } else {
            let c = a["averaging_constant"]
                .as_f64()
                .expect("averaging_constant");
            Obs::AffineMovingAverage(AffineQuantizedMovingAverageMinMaxObserver::new(
                mapping, target, g, c, options,
            )?)
        });
    }
    let qscheme = match text("qscheme") {
        "per_tensor_affine" => QScheme::PerTensorAffine,
        "per_tensor_symmetric" => QScheme::PerTensorSymmetric,
        "per_channel_affine" => QScheme::PerChannelAffine,
        "per_channel_symmetric" => QScheme::PerChannelSymmetric,
        "per_channel_affine_float_qparams" => QScheme::PerChannelAffineFloatQParams,
        other => panic!("unknown qscheme {other}"),
    };
    let dtype = match text("dtype") {
        "quint8" => ObserverDtype::QUInt8,
        "qint8" => ObserverDtype::QInt8,
        "qint32" => ObserverDtype::QInt32,
        "uint8" => ObserverDtype::UInt8,
        "int8" => ObserverDtype::Int8,
        "int16" => ObserverDtype::Int16,
        "int32" => ObserverDtype::Int32,
        "uint16" => ObserverDtype::UInt16,
        other => panic!("unknown observer dtype {other}"),
    };
    let options = UniformObserverOptions {
        dtype,
        reduce_range: a["reduce_range"].as_bool().expect("reduce_range"),
        quant_min: opt_i64(&a["quant_min"]),
        quant_max: opt_i64(&a["quant_max"]),
        eps: a["eps"].as_f64().expect("eps"),
    };
    let c = || {
        a["averaging_constant"]
            .as_f64()
            .expect("averaging_constant")
    };
    let axis = || a["ch_axis"].as_i64().expect("ch_axis");
    Ok(match kind {
        "min_max" => Obs::MinMax(MinMaxObserver::new(qscheme, &options)?),
        "moving_average" => {
            Obs::MovingAverage(MovingAverageMinMaxObserver::new(c(), qscheme, &options)?)
        }
        "per_channel" => Obs::PerChannel(PerChannelMinMaxObserver::new(axis(), qscheme, &options)?),
        "moving_average_per_channel" => Obs::MovingAveragePerChannel(
            MovingAveragePerChannelMinMaxObserver::new(c(), axis(), qscheme, &options)?,
        ),
        other => panic!("unknown observer kind {other}"),
    })
}
