//! How a pass is cut up: into jobs on the threads of the
//! [`ThreadPolicy`](crate::threading::ThreadPolicy), each owning a
//! contiguous share of the outputs so that no two threads write the same
//! memory, and each job into tiles whose per-block scratch stays in cache.

use std::cell::Cell;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use super::layout::{split, Walk};
use super::omp;
use crate::threading::{self, ThreadPolicy};

/// Elements one thread must have before another takes a share: about 50 us
/// of work, against some 20 us to spawn and join a thread (a few us to wake
/// a pool worker).
const MIN_ELEMS_PER_THREAD: usize = 1 << 17;
/// Blocks per tile: the per-block scratch (min, max, scale, zero point and
/// two quantize constants) stays within 24 KiB.
const TILE_BLOCKS: usize = 1024;
/// Elements per tile when choose and quantize share a pass: the tile is
/// still in L2 when the second half reads it.
pub(crate) const TILE_ELEMS: usize = 1 << 15;

/// How many threads a pass over `numel` elements uses.
pub(crate) fn threads_for(numel: usize) -> usize {
    if threading::thread_policy() == ThreadPolicy::Single || IN_JOB.get() {
        return 1;
    }
    (numel / MIN_ELEMS_PER_THREAD).clamp(1, threading::num_threads())
}

thread_local! {
    /// Whether this thread is running a job of [`parallel`]: a pass it
    /// starts then runs inline.
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

/// Sets [`IN_JOB`] while it lives, and restores it when dropped, also by a
/// panic.
struct InJob(bool);

impl InJob {
    fn enter() -> Self {
        InJob(IN_JOB.replace(true))
    }
}

impl Drop for InJob {
    fn drop(&mut self) {
        IN_JOB.set(self.0);
    }
}

/// Parallel passes in flight, on any thread, under policy `Torch`.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// When a pass last found another in flight: microseconds since [`epoch`],
/// plus one (0: never).
static LAST_CONTENDED: AtomicU64 = AtomicU64::new(0);
/// How long after a pass found another in flight passes keep to their
/// calling thread. Between the passes of concurrent callers there are gaps
/// in which a caller finds none in flight; if it then woke its pool, that
/// pool's workers would spin for milliseconds afterwards (libgomp's default
/// spin before sleeping, 6-10 ms measured) on cores the other callers
/// need. Longer than that spin, short against a caller's idle time.
const CONTENDED_FOR_US: u64 = 20_000;

fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let micros = EPOCH.get_or_init(Instant::now).elapsed().as_micros();
    u64::try_from(micros).unwrap_or(u64::MAX - 1) + 1
}

/// Counts a pass in [`IN_FLIGHT`] while it lives.
struct InFlight {
    alone: bool,
}

impl InFlight {
    /// Counts this pass; `alone` when no other was in flight, and none was
    /// in the last [`CONTENDED_FOR_US`].
    fn enter() -> Self {
        let now = now_us();
        if IN_FLIGHT.fetch_add(1, Ordering::Acquire) > 0 {
            LAST_CONTENDED.store(now, Ordering::Relaxed);
            return InFlight { alone: false };
        }
        let last = LAST_CONTENDED.load(Ordering::Relaxed);
        InFlight {
            alone: last == 0 || now.saturating_sub(last) > CONTENDED_FOR_US,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Release);
    }
}

/// `f` over every work item, in order, on the threads
/// [`threading::thread_policy`] names; inline on this thread when there is
/// one item, when this thread is already in a job or an OpenMP region, or
/// (policy `Torch`) when another pass is in flight on another thread or was
/// within [`CONTENDED_FOR_US`]: with several callers at once, each keeps to
/// its own thread rather than waking a team of workers per caller (libgomp
/// keeps one pool per calling thread, whose workers spin for milliseconds
/// after each pass) to oversubscribe the cores. A panic in a job resumes on this thread once every job has
/// finished.
pub(crate) fn parallel<W: Send, T: Send>(work: Vec<W>, f: impl Fn(W) -> T + Sync) -> Vec<T> {
    if work.len() <= 1 || IN_JOB.get() {
        return inline(work, f);
    }
    match threading::thread_policy() {
        ThreadPolicy::Single => inline(work, f),
        ThreadPolicy::Spawn => spawned(work, f),
        ThreadPolicy::Torch => match omp::gomp() {
            Some(gomp) if gomp.in_region() => inline(work, f),
            Some(gomp) => {
                let flight = InFlight::enter();
                if flight.alone {
                    pooled(gomp, work, f)
                } else {
                    inline(work, f)
                }
            }
            None => spawned(work, f),
        },
    }
}

fn inline<W, T>(work: Vec<W>, f: impl Fn(W) -> T) -> Vec<T> {
    let _job = InJob::enter();
    work.into_iter().map(f).collect()
}

/// The first item on this thread, the others on scoped threads.
fn spawned<W: Send, T: Send>(work: Vec<W>, f: impl Fn(W) -> T + Sync) -> Vec<T> {
    let f = &f;
    let mut work = work.into_iter();
    let Some(first) = work.next() else {
        return Vec::new();
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = work
            .map(|w| {
                s.spawn(move || {
                    let _job = InJob::enter();
                    f(w)
                })
            })
            .collect();
        let mut out = inline(vec![first], f);
        for h in handles {
            match h.join() {
                Ok(v) => out.push(v),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

/// Every item on a team of the OpenMP pool as large as `work`: each member
/// takes the next untaken item until none is left, so a smaller team than
/// asked for (libgomp may give one) still runs them all.
fn pooled<W: Send, T: Send>(gomp: &omp::Gomp, work: Vec<W>, f: impl Fn(W) -> T + Sync) -> Vec<T> {
    let n = work.len();
    let slots: Vec<Mutex<(Option<W>, Option<T>)>> = work
        .into_iter()
        .map(|w| Mutex::new((Some(w), None)))
        .collect();
    let next = AtomicUsize::new(0);
    let take = |i: usize| {
        let mut slot = slots[i].lock().unwrap_or_else(|e| e.into_inner());
        slot.0.take()
    };
    gomp.run(n, &|| {
        let _job = InJob::enter();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            if let Some(w) = take(i) {
                let v = f(w);
                slots[i].lock().unwrap_or_else(|e| e.into_inner()).1 = Some(v);
            }
        }
    });
    slots
        .into_iter()
        .filter_map(|s| s.into_inner().unwrap_or_else(|e| e.into_inner()).1)
        .collect()
}

/// The per-block scratch of one thread, in one allocation.
struct Scratch {
    buf: Vec<f32>,
    blocks: usize,
}

/// The six per-block arrays of a tile of `n` blocks.
pub(crate) struct Tile<'a> {
    pub lo: &'a mut [f32],
    pub hi: &'a mut [f32],
    pub scale: &'a mut [f32],
    pub zp: &'a mut [f32],
    pub a: &'a mut [f32],
    pub b: &'a mut [f32],
}

impl Scratch {
    fn new(blocks: usize) -> Self {
        Scratch {
            buf: vec![0.0f32; 6 * blocks],
            blocks,
        }
    }

    /// The arrays for a tile of `n <= blocks` blocks.
    fn tile(&mut self, n: usize) -> Tile<'_> {
        let mut parts = self.buf.chunks_exact_mut(self.blocks.max(1));
        let mut next = || match parts.next() {
            Some(p) => &mut p[..n],
            None => &mut [],
        };
        Tile {
            lo: next(),
            hi: next(),
            scale: next(),
            zp: next(),
            a: next(),
            b: next(),
        }
    }
}

/// The jobs of a pass split along a dim of `size` indices: the ranges of
/// [`split`] over `threads`, each with its share of the outputs `out`.
/// `split_off(out, n)` cuts `out` into the share of its first `n` indices
/// and the rest.
pub(crate) fn jobs<S>(
    size: usize,
    threads: usize,
    mut out: S,
    split_off: impl Fn(S, usize) -> (S, S),
) -> Vec<(Range<usize>, S)> {
    let mut jobs = Vec::new();
    for r in split(size, threads) {
        let (head, rest) = split_off(out, r.len());
        out = rest;
        jobs.push((r, head));
    }
    jobs
}

/// Runs `f` on each tile of a job whose indices of the walk are `ranges`:
/// `ranges[p]` cut into runs of at most [`TILE_BLOCKS`] blocks (and at most
/// `max_elems` elements), each passed with the walk's ranges narrowed to it,
/// its first block and its scratch. Stops when `f` returns `false`. Without
/// a kept dim `p` the job is a single block, and a single tile.
pub(crate) fn for_each_tile(
    walk: &Walk,
    mut ranges: Vec<Range<usize>>,
    p: Option<usize>,
    max_elems: Option<usize>,
    mut f: impl FnMut(&[Range<usize>], usize, Tile) -> bool,
) {
    let Some(p) = p else {
        f(&ranges, 0, Scratch::new(1).tile(1));
        return;
    };
    let d = walk.dims[p];
    let mut tile = TILE_BLOCKS / d.block_stride;
    if let Some(max) = max_elems {
        tile = tile.min(max / d.elem_stride);
    }
    let tile = tile.max(1);
    let span = ranges[p].clone();
    let mut buf = Scratch::new(tile.min(span.len()) * d.block_stride);
    for t in span.clone().step_by(tile) {
        let end = (t + tile).min(span.end);
        ranges[p] = t..end;
        let block0 = t * d.block_stride;
        if !f(&ranges, block0, buf.tile((end - t) * d.block_stride)) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use super::*;

    /// The policy is process-wide: the tests of this module take turns.
    static SETTINGS: Mutex<()> = Mutex::new(());

    const POLICIES: [ThreadPolicy; 3] = [
        ThreadPolicy::Torch,
        ThreadPolicy::Spawn,
        ThreadPolicy::Single,
    ];

    #[test]
    fn results_come_back_in_order_under_every_policy() {
        let _turn = SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
        for policy in POLICIES {
            threading::set_thread_policy(policy);
            let out = parallel((0..7).collect(), |i: u32| i * i);
            assert_eq!(out, (0..7).map(|i| i * i).collect::<Vec<_>>(), "{policy:?}");
        }
        threading::set_thread_policy(ThreadPolicy::default());
    }

    /// The torch wheel's libtorch_cpu links libgomp: `Torch` must not fall
    /// back unnoticed, and its jobs run inside an OpenMP region, where a
    /// nested pass runs inline. Other tests of this binary run passes at the
    /// same time, which make a pass run inline; so it tries until one pass
    /// found no other in flight.
    #[cfg(target_os = "linux")]
    #[test]
    fn torch_policy_runs_jobs_in_the_openmp_pool() {
        let _turn = SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
        threading::set_thread_policy(ThreadPolicy::Torch);
        let gomp = omp::gomp().expect("libgomp is loaded with libtorch");
        assert!(!gomp.in_region());
        let pooled = (0..2000).any(|_| {
            let out = parallel(vec![0, 1, 2, 3], |i| {
                let nested = parallel(vec![10, 20], |j| (j, IN_JOB.get()));
                (i, gomp.in_region(), nested)
            });
            let in_region = out[0].1;
            for (i, (j, r, nested)) in out.into_iter().enumerate() {
                assert_eq!((i, r), (j, in_region));
                assert_eq!(nested, vec![(10, true), (20, true)]);
            }
            if !in_region {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            in_region
        });
        assert!(pooled, "no pass ran in the pool");
        threading::set_thread_policy(ThreadPolicy::default());
    }

    /// A panicking job resumes on the caller under every policy, after which
    /// the pool is free and the thread is not marked as in a job.
    #[test]
    fn a_panic_in_a_job_resumes_on_the_caller() {
        let _turn = SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
        for policy in POLICIES {
            threading::set_thread_policy(policy);
            let caught = catch_unwind(AssertUnwindSafe(|| {
                parallel(vec![0, 1, 2, 3], |i| {
                    if i == 2 {
                        panic!("job {i}");
                    }
                    i
                })
            }));
            let payload = caught.expect_err("the panic reaches the caller");
            assert_eq!(
                payload.downcast_ref::<String>().map(String::as_str),
                Some("job 2")
            );
            assert!(!IN_JOB.get(), "{policy:?}");
            assert_eq!(parallel(vec![1, 2], |i| i + 1), vec![2, 3], "{policy:?}");
        }
        threading::set_thread_policy(ThreadPolicy::default());
    }
}
