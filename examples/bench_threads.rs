//! The thread policies side by side (`tch_quant::threading`): for 4096x4096
//! float32 and bfloat16 inputs, per tensor int8 symmetric, per channel int8
//! symmetric and group 32 int8 asymmetric, the one-pass
//! `choose_qparams_and_quantize_affine` ("chain") and
//! `choose_qparams_affine` alone ("choose"), under `Spawn` (scoped threads,
//! the old behaviour), `Torch` (libtorch's OpenMP pool) and `Single` (the
//! yardstick: its `cpu@2` and `x2` are those of one thread):
//!
//! - `quiet` / `amax`: median ms of one call after a 50 ms sleep, and right
//!   after `x.amax()` (libtorch's OpenMP workers still spinning);
//! - `cpu@1` / `cpu@2`: CPU-seconds (user + sys, getrusage) per wall second
//!   over a loop of calls at 1 and 2 threads, and `x2` the speed-up 1 -> 2;
//! - `flt`: minor page faults per call at 2 threads;
//! - `c1/s`: calls per second of one caller thread;
//! - `cN`: total calls per second of N concurrent caller threads over one
//!   caller's.
//!
//! Each case waits (a little) for the machine's CPUs to be mostly idle
//! first, and its measurements of both policies are interleaved, so that
//! the load of a shared machine weighs on both alike.
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

const POLICIES: [ThreadPolicy; 3] = [
    ThreadPolicy::Spawn,
    ThreadPolicy::Torch,
    ThreadPolicy::Single,
];
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

/// CPU-seconds (user + sys) and minor page faults of the process so far.
fn usage() -> (f64, f64) {
    // SAFETY: getrusage writes the struct it is given and nothing else.
    let usage = unsafe {
        let mut u = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    (
        secs(usage.ru_utime) + secs(usage.ru_stime),
        usage.ru_minflt as f64,
    )
}

/// Waits (at most 3 s) until the machine's CPUs were at least 80% idle
/// over 200 ms: on a shared machine, other processes' bursts would
/// otherwise dominate the measurement of a row.
fn wait_for_idle() {
    fn idle_total() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        Some((cpu.get(3)? + cpu.get(4)?, cpu.iter().sum()))
    }
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        let Some((i0, t0)) = idle_total() else { return };
        std::thread::sleep(Duration::from_millis(200));
        let Some((i1, t1)) = idle_total() else { return };
        if (i1 - i0) as f64 >= 0.8 * (t1 - t0).max(1) as f64 {
            return;
        }
    }
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

/// Totals over the segments of one measurement.
#[derive(Default, Clone, Copy)]
struct Totals {
    calls: f64,
    wall: f64,
    cpu: f64,
    faults: f64,
}

/// `callers` threads calling for `secs`, added to `totals`.
fn segment(case: &Case, callers: usize, secs: f64, totals: &mut Totals) -> Result<()> {
    let ((c0, f0), t0) = (usage(), Instant::now());
    let calls: Result<Vec<usize>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..callers)
            .map(|_| {
                let case = case.handle();
                s.spawn(move || -> Result<usize> {
                    let mut n = 0;
                    while n == 0 || t0.elapsed().as_secs_f64() < secs {
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
    let wall = t0.elapsed().as_secs_f64();
    let (c1, f1) = usage();
    totals.calls += calls?.iter().sum::<usize>() as f64;
    totals.wall += wall;
    totals.cpu += c1 - c0;
    totals.faults += f1 - f0;
    Ok(())
}

/// Per policy: totals at 1 and at 2 threads of one caller, then of
/// 1, 2, 4 and 8 callers at the default thread count; measured in `ROUNDS`
/// rounds that each visit every policy and setting, so that the load of a
/// shared machine drifts over all of them alike.
fn rates(case: &Case, secs: f64) -> Result<Vec<Vec<Totals>>> {
    const ROUNDS: usize = 4;
    let settings: Vec<(usize, usize)> = [(1, 1), (2, 1)]
        .into_iter()
        .chain([1].into_iter().chain(CALLERS).map(|n| (0, n)))
        .collect();
    let mut totals = vec![vec![Totals::default(); settings.len()]; POLICIES.len()];
    for _ in 0..ROUNDS {
        for (p, &policy) in POLICIES.iter().enumerate() {
            set_thread_policy(policy);
            for (k, &(threads, callers)) in settings.iter().enumerate() {
                set_num_threads(threads);
                case.call()?;
                segment(case, callers, secs / ROUNDS as f64, &mut totals[p][k])?;
            }
        }
    }
    set_num_threads(0);
    Ok(totals)
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
        "{:<24} {:<6} {:>6} {:>6} {:>6} {:>6} {:>5} {:>6} {:>6} {:>5} {:>5} {:>5}",
        "case", "policy", "quiet", "amax", "cpu@1", "cpu@2", "x2", "flt", "c1/s", "c2", "c4", "c8"
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
                wait_for_idle();
                let lat = latency(&case, 30)?;
                let totals = rates(&case, secs)?;
                for (p, policy) in POLICIES.iter().enumerate() {
                    let t = &totals[p];
                    let rate = |t: &Totals| t.calls / t.wall;
                    let cpu = |t: &Totals| t.cpu / t.wall;
                    println!(
                        "{:<24} {:<6} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>5.2} {:>6.0} {:>6.1} {:>5.2} {:>5.2} {:>5.2}",
                        case.name,
                        format!("{policy:?}"),
                        lat[p].0,
                        lat[p].1,
                        cpu(&t[0]),
                        cpu(&t[1]),
                        rate(&t[1]) / rate(&t[0]),
                        t[1].faults / t[1].calls,
                        rate(&t[2]),
                        rate(&t[3]) / rate(&t[2]),
                        rate(&t[4]) / rate(&t[2]),
                        rate(&t[5]) / rate(&t[2]),
                    );
                }
            }
        }
    }
    Ok(())
}
