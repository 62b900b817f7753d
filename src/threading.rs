//! Where the fused CPU kernels run their parallel passes, and on how many
//! threads.
//!
//! A fused pass over a large input (see the README's performance section)
//! is cut into one job per thread. [`ThreadPolicy`] says which threads take
//! those jobs:
//!
//! - [`ThreadPolicy::Torch`] (the default): libtorch's own OpenMP pool, the
//!   workers `at::parallel_for` uses. The crate calls libgomp's
//!   `GOMP_parallel` from the calling thread, as `at::parallel_for` does in
//!   an OpenMP build of libtorch, so the workers that libtorch's previous op
//!   left spinning take the jobs instead of competing with new threads for
//!   the cores. The symbols are looked up at run time; where the process has
//!   no libgomp (a libtorch built without OpenMP, or a platform without
//!   `dlsym`) the policy behaves as [`ThreadPolicy::Spawn`].
//! - [`ThreadPolicy::Spawn`]: scoped `std` threads, spawned and joined by
//!   every pass (the behaviour before this module existed).
//! - [`ThreadPolicy::Single`]: every pass on the calling thread.
//!
//! Every policy computes the same bits: jobs own disjoint shares of the
//! outputs, and no result depends on which thread ran a job.
//!
//! A pass runs inline on the calling thread when that thread is already
//! inside one of the crate's own jobs, and under `Torch` also inside an
//! OpenMP parallel region (a caller inside `at::parallel_for`), and when
//! another crate pass is in flight on another thread, or was in the last
//! 20 ms: many concurrent callers (an inference server's request threads)
//! then each run on their own thread, which keeps the cores busy without
//! oversubscribing them (libgomp keeps one pool per calling thread, and its
//! workers spin for milliseconds after each pass), so that their total
//! throughput does not fall below one caller's.
//!
//! libgomp's workers spin-wait (by default for some milliseconds) before
//! they sleep, for libtorch's ops and the crate's passes alike. On cores
//! of their own that costs nothing and saves the wake-up; on a host whose
//! cores are shared with other busy processes the spinning takes CPU time
//! from the process's own threads. There `OMP_WAIT_POLICY=PASSIVE` (read
//! by libgomp at start-up) or [`ThreadPolicy::Spawn`] is faster; the
//! README's threads section has the measurements.

//! The thread count is [`num_threads`]: by default `tch::get_num_threads()`
//! at the time of each call; [`set_num_threads`] fixes it. A pass also uses
//! no more threads than its input has shares of 2^17 elements, so that small
//! calls do not pay for waking workers.
//!
//! The environment variable `TCH_QUANT_THREADS` sets both, read once, at the
//! first fused call or the first call of a function of this module that
//! reads the settings: `torch`, `spawn` or `single`, optionally followed by
//! `:N` for N threads (`torch:4`), or a bare thread count (`4`, policy
//! `Torch`); an empty value counts as unset. A value that does not parse is
//! an error, never ignored: [`check_env`] returns it, and so does every
//! call that runs a fused pass ([`Error::InvalidEnvironment`], naming the
//! variable and its value), unless [`set_thread_policy`] and
//! [`set_num_threads`] have both been called, which override the variable.
//! Until then [`thread_policy`] and [`num_threads`] report the defaults.
//!
//! # Examples
//!
//! ```
//! use tch_quant::threading::{num_threads, set_num_threads, set_thread_policy, thread_policy, ThreadPolicy};
//!
//! set_thread_policy(ThreadPolicy::Single);
//! assert_eq!(thread_policy(), ThreadPolicy::Single);
//! set_thread_policy(ThreadPolicy::Torch);
//! set_num_threads(2);
//! assert_eq!(num_threads(), 2);
//! set_num_threads(0); // follow tch::get_num_threads() again
//! assert_eq!(num_threads(), tch::get_num_threads().max(1) as usize);
//! ```

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Which threads take the jobs of the fused kernels' parallel passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ThreadPolicy {
    /// libtorch's OpenMP pool (libgomp's `GOMP_parallel` from the calling
    /// thread), or `Spawn` where the process has no libgomp.
    #[default]
    Torch,
    /// Scoped `std` threads spawned by every pass.
    Spawn,
    /// The calling thread only.
    Single,
}

impl ThreadPolicy {
    fn code(self) -> u8 {
        match self {
            ThreadPolicy::Torch => 0,
            ThreadPolicy::Spawn => 1,
            ThreadPolicy::Single => 2,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => ThreadPolicy::Spawn,
            2 => ThreadPolicy::Single,
            _ => ThreadPolicy::Torch,
        }
    }
}

/// Marks [`POLICY`] and [`THREADS`] as not yet set: the environment decides.
const UNSET_POLICY: u8 = u8::MAX;
const UNSET_THREADS: usize = usize::MAX;

static POLICY: AtomicU8 = AtomicU8::new(UNSET_POLICY);
/// 0 follows `tch::get_num_threads()`.
static THREADS: AtomicUsize = AtomicUsize::new(UNSET_THREADS);

/// The environment variable this module reads.
const VAR: &str = "TCH_QUANT_THREADS";
/// What [`VAR`] accepts, for [`Error::InvalidEnvironment`].
const EXPECTED: &str = "`torch`, `spawn` or `single`, optionally followed by `:N` for N threads \
                        (`torch:4`), or a thread count N";

/// The policy and the thread count (0 to follow libtorch) that the
/// environment sets, each `None` when it does not set it.
type EnvSettings = (Option<ThreadPolicy>, Option<usize>);

/// `TCH_QUANT_THREADS`, read and parsed once: its settings, or the value
/// that does not parse.
fn from_env() -> &'static std::result::Result<EnvSettings, String> {
    static ENV: OnceLock<std::result::Result<EnvSettings, String>> = OnceLock::new();
    ENV.get_or_init(|| match std::env::var_os(VAR) {
        None => Ok((None, None)),
        Some(v) => match v.to_str() {
            Some(v) if v.trim().is_empty() => Ok((None, None)),
            Some(v) => parse(v).ok_or_else(|| v.to_string()),
            None => Err(v.to_string_lossy().into_owned()),
        },
    })
}

/// The settings of `TCH_QUANT_THREADS`, or [`Error::InvalidEnvironment`]
/// (as raised by `op`) when its value does not parse.
fn env_settings(op: &'static str) -> Result<EnvSettings> {
    from_env()
        .clone()
        .map_err(|value| Error::InvalidEnvironment {
            op,
            var: VAR,
            value,
            expected: EXPECTED,
        })
}

/// Checks `TCH_QUANT_THREADS` now: `Ok` when it is unset, empty or valid,
/// [`Error::InvalidEnvironment`] naming the variable and its value when it
/// does not parse. Programs that want to refuse a bad value at start-up
/// (as the `tch-quant` command does, with its usage exit code) call this
/// first; otherwise the first fused call reports the same error.
///
/// # Examples
///
/// ```
/// // Unset, empty or valid in this process (the doctests inherit the
/// // environment of `cargo test`).
/// if std::env::var("TCH_QUANT_THREADS").map_or(true, |v| v.trim().is_empty()) {
///     assert!(tch_quant::threading::check_env().is_ok());
/// }
/// ```
pub fn check_env() -> Result<()> {
    env_settings("threading::check_env").map(|_| ())
}

/// What every fused pass checks first: [`Error::InvalidEnvironment`] (as
/// raised by `op`) when `TCH_QUANT_THREADS` does not parse and the program
/// has not set both the policy and the thread count itself.
pub(crate) fn check_settings(op: &'static str) -> Result<()> {
    let overridden = POLICY.load(Ordering::Relaxed) != UNSET_POLICY
        && THREADS.load(Ordering::Relaxed) != UNSET_THREADS;
    if overridden {
        return Ok(());
    }
    env_settings(op).map(|_| ())
}

/// `policy`, `policy:N` or `N`; `None` when `v` is none of them.
fn parse(v: &str) -> Option<EnvSettings> {
    let v = v.trim().to_ascii_lowercase();
    if let Ok(n) = v.parse::<usize>() {
        return Some((Some(ThreadPolicy::Torch), Some(n)));
    }
    let (name, count) = match v.split_once(':') {
        Some((name, n)) => (name, Some(n.trim().parse::<usize>().ok()?)),
        None => (v.as_str(), None),
    };
    let policy = match name.trim() {
        "torch" => ThreadPolicy::Torch,
        "spawn" => ThreadPolicy::Spawn,
        "single" => ThreadPolicy::Single,
        _ => return None,
    };
    Some((Some(policy), count))
}

/// Sets the policy of every later fused pass, in every thread.
pub fn set_thread_policy(policy: ThreadPolicy) {
    POLICY.store(policy.code(), Ordering::Relaxed);
}

/// The policy fused passes use: the last [`set_thread_policy`], else
/// `TCH_QUANT_THREADS`, else [`ThreadPolicy::Torch`] (also while the
/// variable does not parse: see [`check_env`]).
pub fn thread_policy() -> ThreadPolicy {
    match POLICY.load(Ordering::Relaxed) {
        UNSET_POLICY => from_env()
            .as_ref()
            .ok()
            .and_then(|e| e.0)
            .unwrap_or_default(),
        code => ThreadPolicy::from_code(code),
    }
}

/// Sets the most threads a fused pass uses (the calling thread included);
/// 0 follows `tch::get_num_threads()` at each call.
pub fn set_num_threads(threads: usize) {
    THREADS.store(threads, Ordering::Relaxed);
}

/// The most threads a fused pass uses, at least 1: the last
/// [`set_num_threads`], else the count in `TCH_QUANT_THREADS`, else
/// `tch::get_num_threads()` (also while the variable does not parse: see
/// [`check_env`]). Under [`ThreadPolicy::Single`] passes use one whatever
/// this says.
pub fn num_threads() -> usize {
    let set = match THREADS.load(Ordering::Relaxed) {
        UNSET_THREADS => from_env().as_ref().ok().and_then(|e| e.1).unwrap_or(0),
        n => n,
    };
    match set {
        0 => tch::get_num_threads().max(1) as usize,
        n => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_parse() {
        let torch = Some(ThreadPolicy::Torch);
        assert_eq!(parse("torch"), Some((torch, None)));
        assert_eq!(
            parse(" Spawn:3 "),
            Some((Some(ThreadPolicy::Spawn), Some(3)))
        );
        assert_eq!(parse("single"), Some((Some(ThreadPolicy::Single), None)));
        assert_eq!(parse("4"), Some((torch, Some(4))));
        assert_eq!(parse("torch:x"), None);
        assert_eq!(parse("omp"), None);
        assert_eq!(parse("torch:"), None);
        assert_eq!(parse("-2"), None);
    }
}
