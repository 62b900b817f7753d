//! How many threads libtorch's operators and the fused kernels use: libtorch
//! one, unless the user says otherwise with `OMP_NUM_THREADS`; the fused
//! kernels as many as libtorch would have had, on threads of their own,
//! unless `TCH_QUANT_THREADS` says otherwise.
//!
//! libtorch runs its operators on an OpenMP team, and a checkpoint run
//! issues thousands of mid-sized operators (a few MiB each). With libgomp's
//! default wait policy a worker of the team spins for milliseconds after
//! every operator, on the cores the fused kernels and the next operators
//! need: `perf` put over half of a run's CPU time in that spin, and on two
//! busy cores the run took 12-16 s where one thread took 5.3 s and
//! `OMP_WAIT_POLICY=PASSIVE` 6.6 s (issue 14). libgomp reads the wait
//! policy before `main` (and the C library resets the environment after an
//! executable's `.preinit_array`), so the binary cannot choose it; it
//! chooses one libtorch thread, which needs no team. With no team to share,
//! the fused kernels take `ThreadPolicy::Spawn` (their own scoped threads,
//! which exit with each pass instead of spinning) at libtorch's default
//! thread count: on a 0.75 GB checkpoint that took int4 g128 from 4.7 s to
//! 3.3 s, where the pool policy on two OpenMP threads gave 3.6-6.0 s.

use tch_quant::threading::{set_num_threads, set_thread_policy, ThreadPolicy};

/// Sets libtorch to one thread unless `OMP_NUM_THREADS` is set, and the
/// fused kernels to scoped threads at libtorch's default count unless
/// `TCH_QUANT_THREADS` is set (an empty value counts as unset, as it does
/// for the library).
pub fn default_threads() {
    let cores = tch::get_num_threads().max(1) as usize;
    if std::env::var_os("OMP_NUM_THREADS").is_none() {
        tch::set_num_threads(1);
    }
    let set = std::env::var_os("TCH_QUANT_THREADS");
    if set.is_none_or(|v| v.to_str().is_some_and(|v| v.trim().is_empty())) {
        set_thread_policy(ThreadPolicy::Spawn);
        set_num_threads(cores);
    }
}
