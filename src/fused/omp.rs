//! libtorch's OpenMP pool, reached through libgomp's entry points looked up
//! at run time: the same `GOMP_parallel` call `at::parallel_for` makes in an
//! OpenMP build, so that crate passes run on the workers libtorch's own ops
//! use (and leave spinning after each op) instead of competing with them.

use std::any::Any;
use std::ffi::{c_char, c_int, c_uint, c_void};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Mutex, OnceLock};

/// `GOMP_parallel(fn, data, num_threads, flags)`: runs `fn(data)` on a team
/// of `num_threads` threads, the caller as thread 0, and returns when all
/// have.
type GompParallel = unsafe extern "C" fn(extern "C" fn(*mut c_void), *mut c_void, c_uint, c_uint);
/// `omp_get_level()`: how many parallel regions enclose the calling thread.
type OmpGetLevel = unsafe extern "C" fn() -> c_int;

/// The libgomp functions the pool needs, when the process has them.
pub(crate) struct Gomp {
    parallel: GompParallel,
    level: OmpGetLevel,
}

/// libgomp, when a library the process loaded at start-up (libtorch_cpu
/// links the `libgomp.so.1` that the torch wheel bundles) exports it.
pub(crate) fn gomp() -> Option<&'static Gomp> {
    static GOMP: OnceLock<Option<Gomp>> = OnceLock::new();
    GOMP.get_or_init(resolve).as_ref()
}

#[cfg(unix)]
fn resolve() -> Option<Gomp> {
    fn sym(name: &[u8]) -> Option<*mut c_void> {
        // SAFETY: `name` is NUL-terminated; dlsym with RTLD_DEFAULT only
        // searches the global scope and returns null when nothing matches.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr() as *const c_char) };
        (!p.is_null()).then_some(p)
    }
    let parallel = sym(b"GOMP_parallel\0")?;
    let level = sym(b"omp_get_level\0")?;
    // SAFETY: both symbols are libgomp's (GOMP_4.0 and OMP_3.0 ABI), whose C
    // signatures the two types spell out.
    unsafe {
        Some(Gomp {
            parallel: std::mem::transmute::<*mut c_void, GompParallel>(parallel),
            level: std::mem::transmute::<*mut c_void, OmpGetLevel>(level),
        })
    }
}

#[cfg(not(unix))]
fn resolve() -> Option<Gomp> {
    None
}

/// What the team members of one region share: the job, and the first panic
/// a member caught, to be resumed on the caller.
struct Region<'a> {
    job: &'a (dyn Fn() + Sync),
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

/// Every team member's entry point. A panic must not unwind into libgomp's
/// C frames, so it is caught here and handed to the caller.
extern "C" fn member(data: *mut c_void) {
    // SAFETY: `data` is the `Region` that `Gomp::run` passed, which outlives
    // the region since `GOMP_parallel` returns only after every member has.
    let region = unsafe { &*(data as *const Region) };
    if let Err(panic) = catch_unwind(AssertUnwindSafe(region.job)) {
        let mut first = region.panic.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(panic);
    }
}

impl Gomp {
    /// Whether the calling thread is inside an OpenMP parallel region.
    pub(crate) fn in_region(&self) -> bool {
        // SAFETY: omp_get_level takes no arguments and has no preconditions.
        unsafe { (self.level)() > 0 }
    }

    /// Runs `job` on each of a team of `threads` threads, the calling one
    /// among them, and returns when all have; resumes the first panic of a
    /// member. libgomp may make the team smaller (nested regions, thread
    /// limits), so `job` must not count on how many run it.
    pub(crate) fn run(&self, threads: usize, job: &(dyn Fn() + Sync)) {
        let region = Region {
            job,
            panic: Mutex::new(None),
        };
        let threads = c_uint::try_from(threads).unwrap_or(c_uint::MAX);
        // SAFETY: `member` only reads `region` through a shared reference,
        // and `region` lives until `GOMP_parallel` has returned, after every
        // member has finished; `member` never unwinds.
        unsafe {
            (self.parallel)(member, &region as *const Region as *mut c_void, threads, 0);
        }
        if let Some(panic) = region.panic.into_inner().unwrap_or_else(|e| e.into_inner()) {
            resume_unwind(panic);
        }
    }
}
