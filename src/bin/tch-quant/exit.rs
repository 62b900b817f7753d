//! Failures and the exit codes they map to.
//!
//! Scripts that drive the tool need to tell "fix your command line" from
//! "your checkpoint is broken" from "the output already exists" without
//! parsing messages, so every failure carries one documented category. The
//! table in `--help` and the README is [`EXIT_CODES_HELP`]; keep them in step.

use std::fmt;
use std::process::ExitCode;

/// Why a run failed; each category has its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Anything not foreseen below: an I/O error while writing, a libtorch
    /// failure on valid input. Exit code 1.
    Internal,
    /// The command line is wrong: unknown flag, bad regex, inconsistent
    /// scheme flags, a `TCH_QUANT_THREADS` that does not parse. Exit code 2
    /// (clap's own code for usage errors).
    Usage,
    /// The input cannot be read as a checkpoint: missing file, not a
    /// regular file (a FIFO, device or socket), not safetensors, truncated
    /// (before or during the run) or corrupt header, bad index, not a file
    /// this tool wrote (for `dequantize`). Exit code 3.
    Input,
    /// A tensor cannot be processed as asked: a dtype the tool does not
    /// support, a block size that does not divide a tensor named with
    /// `--include` (a weight of more than 64 dims among them). Exit code 4.
    Tensor,
    /// The output cannot be written: it exists (without `--force`), it is
    /// the input, it is not a regular file (a FIFO, device or socket, even
    /// with `--force`), or its directory is missing or not writable. Exit
    /// code 5.
    Output,
    /// The requested device is not available. Exit code 6.
    Device,
    /// Interrupted by Ctrl-C or SIGTERM before the output was complete.
    /// Exit code 130, as shells report SIGINT.
    Interrupted,
}

impl Category {
    pub fn code(self) -> u8 {
        match self {
            Category::Internal => 1,
            Category::Usage => 2,
            Category::Input => 3,
            Category::Tensor => 4,
            Category::Output => 5,
            Category::Device => 6,
            Category::Interrupted => 130,
        }
    }
}

/// The exit-code table shown by `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success
  1    unexpected failure (I/O error while writing, libtorch error)
  2    bad command line (unknown flag, invalid regex, inconsistent scheme
       flags, a TCH_QUANT_THREADS value that does not parse)
  3    unreadable input (missing file, not a regular file, not safetensors,
       truncated or corrupt header, truncated while being read, bad
       index.json, dequantize of a file tch-quant did not write, quantize of
       one it did)
  4    a tensor cannot be processed as asked (unsupported dtype, block size
       that does not divide, or a weight of more than 64 dims, named with
       --include)
  5    output refused (exists without --force, same file as the input, not a
       regular file even with --force, directory missing or not writable)
  6    device unavailable (--device cuda without a CUDA device)
  130  interrupted (Ctrl-C, SIGTERM); nothing was written";

/// A failure with its category. The message chain comes from `anyhow`
/// contexts and is printed as `error: outer: inner: ...`.
#[derive(Debug)]
pub struct Failure {
    pub category: Category,
    pub error: anyhow::Error,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = format!("{:#}", self.error);
        // libtorch appends its C++ stack to every error; the first part is
        // the message a user can act on.
        let message = match message.find("\nException raised from") {
            Some(cut) => &message[..cut],
            None => &message,
        };
        f.write_str(message)
    }
}

impl Failure {
    pub fn new(category: Category, message: impl fmt::Display) -> Self {
        Failure {
            category,
            error: anyhow::anyhow!("{message}"),
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.category.code())
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

impl From<tch_quant::Error> for Failure {
    /// A library error: checkpoint errors by their kind, libtorch failures
    /// as internal, every other refusal as a tensor that cannot be processed.
    fn from(e: tch_quant::Error) -> Self {
        use tch_quant::CheckpointErrorKind as Kind;
        let category = match e.checkpoint_kind() {
            Some(Kind::InvalidInput) => Category::Input,
            Some(Kind::Unquantizable) => Category::Tensor,
            Some(Kind::OutputRefused) => Category::Output,
            Some(Kind::InvalidRequest) => Category::Usage,
            Some(Kind::Io) => Category::Internal,
            Some(Kind::Interrupted) => Category::Interrupted,
            None => match e {
                tch_quant::Error::Torch { .. } => Category::Internal,
                tch_quant::Error::InvalidEnvironment { .. } => Category::Usage,
                _ => Category::Tensor,
            },
        };
        Failure::new(category, e)
    }
}

/// Returns early with a failure of the given category.
macro_rules! fail {
    ($category:expr, $($arg:tt)+) => {
        return Err($crate::exit::Failure::new($category, format!($($arg)+)))
    };
}
pub(crate) use fail;
