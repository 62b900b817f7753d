//! Embeds an rpath to libtorch so that tests, examples, benches and binaries
//! run without `LD_LIBRARY_PATH`.
//!
//! torch-sys (whose `links` key is `tch`) exports the libtorch library
//! directory to its direct dependents as `DEP_TCH_LIBTORCH_LIB`.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!(
            "tch-quant: libtorch was not found. Provide it in one of two ways:\n\
             - run `make venv` (creates .venv with torch==2.13.0) and build with \
             LIBTORCH_USE_PYTORCH=1 and that venv active (the Makefile does this), or\n\
             - set LIBTORCH=/path/to/libtorch (a libtorch 2.13.0 install) and use cargo directly."
        );
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
    // The CUDA library is only referenced through static initialisers, so an
    // as-needed linker would drop it and CUDA would look absent at run time.
    if Path::new(&lib_dir).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
