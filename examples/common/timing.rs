//! What the crate's side-by-side harnesses (`bench_compare`, `bench_linear`)
//! share: the median of repeated calls, the CPU time they used, and the
//! checksum of outputs that the Python scripts compute the same way.

use std::time::Instant;

use anyhow::Result;
use tch::{Kind, Tensor};

/// A checksum of the bytes of every tensor that numpy computes as fast:
/// `sum(byte[i] * w(i))` with `w(i) = ((i * 0x9E3779B97F4A7C15) >> 32) | 1`,
/// all mod 2^64, combined over tensors as `h = h * 31 + h_k`.
pub fn checksum(tensors: &[&Tensor]) -> Result<String> {
    let mut h: u64 = 0;
    for t in tensors {
        let flat = t
            .f_contiguous()?
            .f_reshape([-1])?
            .f_view_dtype(Kind::Uint8)?;
        let mut hk: u64 = 0;
        for (i, b) in Vec::<u8>::try_from(flat)?.into_iter().enumerate() {
            let w = ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) | 1;
            hk = hk.wrapping_add((b as u64).wrapping_mul(w));
        }
        h = h.wrapping_mul(31).wrapping_add(hk);
    }
    Ok(format!("{h:016x}"))
}

/// One timing: the median seconds per call, the number of calls, and the
/// CPU-seconds the process used per wall second over them (the threads
/// busy, on average).
#[derive(Clone, Copy)]
pub struct Measured {
    pub seconds: f64,
    pub reps: usize,
    pub cpu_per_wall: f64,
}

/// Median seconds per call of `f`: at least 5 calls, and at least
/// `min_seconds` in all, after warm-up calls (at least two, and at least
/// `min_seconds / 2` of them; see [`warm_up`]).
#[allow(dead_code)] // not every harness that includes this file calls it
pub fn time(min_seconds: f64, f: impl FnMut() -> Result<()>) -> Result<Measured> {
    time_with(min_seconds, &|| Ok(()), f)
}

/// [`time`], with `before` run ahead of each timed call, off the clock (to
/// evict the caches, say). `cpu_per_wall` counts the timed calls only.
pub fn time_with(
    min_seconds: f64,
    before: &dyn Fn() -> Result<()>,
    mut f: impl FnMut() -> Result<()>,
) -> Result<Measured> {
    warm_up(min_seconds, before, &mut f)?;
    let mut samples = Vec::new();
    let start = Instant::now();
    let (mut cpu, mut wall) = (0.0, 0.0);
    while samples.len() < 5
        || (start.elapsed().as_secs_f64() < min_seconds && samples.len() < 100_000)
    {
        before()?;
        let cpu0 = cpu_seconds();
        let t = Instant::now();
        f()?;
        let s = t.elapsed().as_secs_f64();
        cpu += cpu_seconds() - cpu0;
        wall += s;
        samples.push(s);
    }
    let cpu_per_wall = cpu / wall;
    samples.sort_by(f64::total_cmp);
    Ok(Measured {
        seconds: samples[samples.len() / 2],
        reps: samples.len(),
        cpu_per_wall,
    })
}

/// Untimed calls of `f` (each after `before`), at least two and for at
/// least `min_seconds / 2`. Two calls were not enough on a VM that hands
/// freed memory back to its host (Firecracker with free page reporting):
/// after a pause, the first calls that allocate a large output fault it in
/// on the host too, at up to 8x the steady cost, for a few tenths of a
/// second; `compare.py` warms torchao's calls up the same way.
fn warm_up(
    min_seconds: f64,
    before: &dyn Fn() -> Result<()>,
    f: &mut impl FnMut() -> Result<()>,
) -> Result<()> {
    let start = Instant::now();
    let mut calls = 0;
    while calls < 2 || start.elapsed().as_secs_f64() < min_seconds / 2.0 {
        before()?;
        f()?;
        calls += 1;
    }
    Ok(())
}

/// The integer dtype of a float dtype's width: its amax reads the same bytes
/// as the float amax at memory speed (libtorch's bfloat16 amax is
/// compute-bound).
pub fn int_view(kind: Kind) -> Kind {
    match kind {
        Kind::Float => Kind::Int,
        _ => Kind::Int16,
    }
}

/// Seconds of CPU time (user + system, every thread) this process has used:
/// `CLOCK_PROCESS_CPUTIME_ID` on Unix (nanoseconds, so that a single call
/// of a few milliseconds is measured), `/proc/self/stat` (10 ms ticks)
/// elsewhere on Linux.
pub fn cpu_seconds() -> f64 {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec for the call to fill.
        if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } == 0 {
            return ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9;
        }
    }
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields 14 and 15 (utime, stime), counted after the command name's ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}
