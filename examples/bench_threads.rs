//! The thread policies side by side (`tch_quant::threading`): for 4096x4096
//! float32 and bfloat16 inputs, per tensor int8 symmetric, per channel int8
//! symmetric and group 32 int8 asymmetric, the one-pass
//! `choose_qparams_and_quantize_affine` ("chain") and
//! `choose_qparams_affine` alone ("choose"), under `Spawn` (scoped threads,
//! the old behaviour) and `Torch` (libtorch's OpenMP pool):
//!
//! - `quiet` / `amax`: median ms of one call after a 50 ms sleep, and right
//!   after `x.amax()` (libtorch's OpenMP workers still spinning);
//! - `cpu@1` / `cpu@2`: CPU-seconds (user + sys, getrusage) per wall second
//!   over a loop of calls at 1 and 2 threads, and `x2` the speed-up 1 -> 2;
//! - `cN`: total calls per second of N concurrent caller threads over one
//!   caller's.
//!
//! Usage: `cargo run --release --example bench_threads [--seconds S] [FILTER]`;
//! FILTER keeps the rows whose name contains it.

use std::time::{Duration, Instant};

use anyhow::Result;
use tch::{Kind, Tensor};
use tch_quant::threading::{set_num_threads, set_thread_policy, ThreadPolicy};
use tch_quant::{
    choose_qparams_affine, choose_qparams_and_quantize_affine, Granularity, MappingType,
    QParamsOptions, QuantDtype,
};

const POLICIES: [ThreadPolicy; 2] = [ThreadPolicy::Spawn, ThreadPolicy::Torch];
const CALLERS: [usize; 3] = [2, 4, 8];

struct Case {
    name: String,
    x: Tensor,
    mapping: MappingType,
    block: Vec<i64>,
    chain: bool,
}

impl Case {
    /// The same case on a shallow clone of the input (`Tensor` is `Send`,
    /// not `Sync`: each caller thread holds its own handle).
    fn handle(&self) -> Case {
        Case {
            name: self.name.clone(),
            x: self.x.shallow_clone(),
            mapping: self.mapping,
            block: self.block.clone(),
            chain: self.chain,
        }
    }

    fn call(&self) -> Result<()> {
        let options = QParamsOptions::default();
        if self.chain {
            let _codes = choose_qparams_and_quantize_affine(
                &self.x,
                self.mapping,
                &self.block,
                QuantDtype::Int8,
                &options,
            )?;
        } else {
            choose_qparams_affine(
                &self.x,
                self.mapping,
                &self.block,
                QuantDtype::Int8,
                &options,
            )?;
        }
        Ok(())
    }
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes the struct it is given and nothing else.
    let usage = unsafe {
        let mut u = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median ms of a call from a quiet start and right after `x.amax()`, per
/// policy, the four interleaved.
fn latency(case: &Case, reps: usize) -> Result<Vec<(f64, f64)>> {
    let mut times = vec![(Vec::new(), Vec::new()); POLICIES.len()];
    for _ in 0..reps {
        for (p, &policy) in POLICIES.iter().enumerate() {
            set_thread_policy(policy);
            std::thread::sleep(Duration::from_millis(50));
            let t = Instant::now();
            case.call()?;
            times[p].0.push(t.elapsed().as_secs_f64() * 1e3);
            let _ = case.x.f_amax([0i64, 1].as_slice(), false)?;
            let t = Instant::now();
            case.call()?;
            times[p].1.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times
        .into_iter()
        .map(|(q, a)| (median(q), median(a)))
        .collect())
}

/// CPU-seconds per wall second and calls per second over `secs` of calls.
fn cpu_rate(case: &Case, secs: f64) -> Result<(f64, f64)> {
    case.call()?;
    let (c0, t0) = (cpu_seconds(), Instant::now());
    let mut calls = 0;
    while t0.elapsed().as_secs_f64() < secs {
        case.call()?;
        calls += 1;
    }
    let wall = t0.elapsed().as_secs_f64();
    Ok(((cpu_seconds() - c0) / wall, calls as f64 / wall))
}

/// Total calls per second of `callers` threads calling for `secs`.
fn throughput(case: &Case, callers: usize, secs: f64) -> Result<f64> {
    let t0 = Instant::now();
    let calls: Result<Vec<usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..callers)
            .map(|_| {
                let case = case.handle();
                s.spawn(move || -> Result<usize> {
                    let mut n = 0;
                    while t0.elapsed().as_secs_f64() < secs {
                        case.call()?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("caller thread panicked"))
            .collect()
    });
    Ok(calls?.iter().sum::<usize>() as f64 / t0.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let mut secs = 0.5;
    let mut filter = String::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => secs = args.next().unwrap_or_default().parse()?,
            _ => filter = a,
        }
    }
    let threads = tch::get_num_threads().max(1) as usize;
    tch::manual_seed(0);
    let base = Tensor::randn([4096, 4096], (Kind::Float, tch::Device::Cpu));
    let schemes = [
        ("tensor-sym", MappingType::Symmetric, Granularity::PerTensor),
        ("channel-sym", MappingType::Symmetric, Granularity::PerRow),
        (
            "g32-asym",
            MappingType::Asymmetric,
            Granularity::PerGroup(32),
        ),
    ];
    println!("libtorch threads: {threads}; ms are medians; cpu = CPU-s per wall s; cN = N callers' calls/s over 1 caller's");
    println!(
        "{:<24} {:<6} {:>6} {:>6} {:>6} {:>6} {:>5} {:>5} {:>5} {:>5}",
        "case", "policy", "quiet", "amax", "cpu@1", "cpu@2", "x2", "c2", "c4", "c8"
    );
    for (kind, kname) in [(Kind::Float, "f32"), (Kind::BFloat16, "bf16")] {
        let x = base.to_kind(kind);
        for (sname, mapping, granularity) in &schemes {
            for chain in [true, false] {
                let name = format!("{kname} {sname} {}", if chain { "chain" } else { "choose" });
                if !name.contains(&filter) {
                    continue;
                }
                let case = Case {
                    name,
                    x: x.shallow_clone(),
                    mapping: *mapping,
                    block: granularity.block_size(&x.size())?,
                    chain,
                };
                let lat = latency(&case, 15)?;
                for (p, &policy) in POLICIES.iter().enumerate() {
                    set_thread_policy(policy);
                    set_num_threads(1);
                    let (cpu1, rate1) = cpu_rate(&case, secs)?;
                    set_num_threads(0);
                    let (cpu2, rate2) = cpu_rate(&case, secs)?;
                    let one = throughput(&case, 1, secs)?;
                    let mut conc = Vec::new();
                    for n in CALLERS {
                        conc.push(throughput(&case, n, secs)? / one);
                    }
                    println!(
                        "{:<24} {:<6} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>5.2} {:>5.2} {:>5.2} {:>5.2}",
                        case.name,
                        format!("{policy:?}"),
                        lat[p].0,
                        lat[p].1,
                        cpu1,
                        cpu2,
                        rate2 / rate1,
                        conc[0],
                        conc[1],
                        conc[2]
                    );
                }
            }
        }
    }
    Ok(())
}
