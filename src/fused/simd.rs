//! Runtime dispatch between builds of each kernel for baseline x86-64,
//! AVX2 and AVX-512.
//!
//! The kernels are plain loops written so that LLVM vectorizes them; the
//! crate is compiled for baseline x86-64 (SSE2), where some of them
//! vectorize only 4 lanes wide or spill registers. `kernel!` compiles a
//! kernel's body twice more, with AVX2 and with AVX-512 (F, BW, VL, DQ)
//! enabled, and picks the widest copy the CPU runs. All copies compute the
//! same IEEE operations in the same order (LLVM never contracts `a * b + c`
//! into an FMA without fast-math flags), so their results are identical;
//! `tests/fused_identity.rs` checks every level.
//!
//! The environment variable `TCH_QUANT_SIMD` (`baseline`, `avx2` or
//! `avx512`), read once, caps the level, for tests and measurements.

use std::sync::OnceLock;

/// The instruction sets a kernel can be built for, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Baseline,
    Avx2,
    Avx512,
}

/// The widest level this CPU runs, capped by `TCH_QUANT_SIMD`.
pub(crate) fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var("TCH_QUANT_SIMD").as_deref() {
            Ok("baseline") => Level::Baseline,
            Ok("avx2") => Level::Avx2,
            _ => Level::Avx512,
        };
        cap.min(detected())
    })
}

#[cfg(target_arch = "x86_64")]
fn detected() -> Level {
    use std::arch::is_x86_feature_detected as has;
    if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq") {
        Level::Avx512
    } else if has!("avx2") {
        Level::Avx2
    } else {
        Level::Baseline
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detected() -> Level {
    Level::Baseline
}

/// Defines `fn $name<..>(..)` whose body runs as AVX-512 or AVX2 code on
/// CPUs that have them (x86-64 only) and as baseline code otherwise.
macro_rules! kernel {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident<$($g:ident: $bound:path),*>($($arg:ident: $ty:ty),* $(,)?)
            $(-> $ret:ty)? $body:block
    ) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name<$($g: $bound),*>($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512<$($g: $bound),*>($($arg: $ty),*) $(-> $ret)? $body
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2<$($g: $bound),*>($($arg: $ty),*) $(-> $ret)? $body
                match $crate::fused::simd::level() {
                    // SAFETY: each copy only differs from the body below by
                    // being compiled for an instruction set, which the CPU
                    // has (`level` never exceeds what the CPU reports); the
                    // copies have no other safety requirement.
                    $crate::fused::simd::Level::Avx512 => {
                        return unsafe { avx512::<$($g),*>($($arg),*) };
                    }
                    // SAFETY: as above, for AVX2.
                    $crate::fused::simd::Level::Avx2 => {
                        return unsafe { avx2::<$($g),*>($($arg),*) };
                    }
                    $crate::fused::simd::Level::Baseline => {}
                }
            }
            $body
        }
    };
}
