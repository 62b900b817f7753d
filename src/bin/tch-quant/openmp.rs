//! How many threads libtorch's operators use: one, unless the user says
//! otherwise with `OMP_NUM_THREADS`.
//!
//! libtorch runs its operators on an OpenMP team, tch-quant's fused kernels
//! on scoped threads of their own, and a checkpoint run issues thousands of
//! mid-sized operators (a few MiB each). With libgomp's default wait policy
//! a worker of the team spins for milliseconds after every operator, on the
//! cores the fused kernels and the next operators need: `perf` put over half
//! of a run's CPU time in that spin, and on two busy cores the run took
//! 12-16 s where one thread took 5.3 s and `OMP_WAIT_POLICY=PASSIVE` 6.6 s
//! (issue 14). libgomp reads the wait policy before `main` (and the C
//! library resets the environment after an executable's `.preinit_array`),
//! so the binary cannot choose it; it chooses one thread, which needs no
//! team. The fused kernels follow libtorch's thread count.

/// Sets libtorch to one thread unless `OMP_NUM_THREADS` is set.
pub fn default_threads() {
    if std::env::var_os("OMP_NUM_THREADS").is_none() {
        tch::set_num_threads(1);
    }
}
