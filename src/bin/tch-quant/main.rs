//! `tch-quant`: quantize safetensors checkpoints with torchao 0.11's
//! weight-only recipes, bit for bit, inspect them and read them back.
//!
//! Run `tch-quant --help` for commands, examples and exit codes.

mod cli;
mod dequantize;
mod device;
mod exit;
mod inspect;
mod interrupt;
mod openmp;
mod print;
mod progress;
mod quantize;
mod report;
mod scheme;
mod select;
mod table;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    // clap prints help and version with exit code 0 and usage errors with
    // 2, the code documented for them.
    let cli = Cli::parse();
    interrupt::install();
    openmp::default_threads();
    let result = tch_quant::threading::check_env()
        .map_err(exit::Failure::from)
        .and_then(|()| match cli.command {
            Command::Quantize(args) => quantize::run(*args),
            Command::Dequantize(args) => dequantize::run(args),
            Command::Inspect(args) => inspect::run(args),
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            print::error(&format!("error: {failure}"));
            failure.exit_code()
        }
    }
}
