//! Whether the CUDA branches of a test run: `TCH_QUANT_REQUIRE_CUDA=1`
//! (set by `make gpu-check`) turns a missing CUDA device from a skip into a
//! failure, so that a GPU run cannot pass by skipping its GPU half.
//! `#[path]`-included by the test crates with CUDA branches.

/// `true` when CUDA is available; otherwise prints `skipped` (the test's
/// own skip line) and returns `false`, or panics when CUDA is required.
pub fn cuda_or_skip(skipped: &str) -> bool {
    if tch::Cuda::is_available() {
        return true;
    }
    assert!(
        std::env::var("TCH_QUANT_REQUIRE_CUDA").as_deref() != Ok("1"),
        "TCH_QUANT_REQUIRE_CUDA=1 but libtorch sees no CUDA device (tch::Cuda::is_available() \
         is false: no GPU, no driver, or a CPU-only libtorch), so this would have skipped: {skipped}"
    );
    println!("{skipped}");
    false
}
