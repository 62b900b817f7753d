//! The crate's error type.
//!
//! Every variant names the operation that failed and the argument that was
//! refused, with its value, so that a message read in a log is enough to find
//! the bad call.

use tch::Kind;

/// Errors returned by every fallible function of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument has a value the operation cannot accept.
    #[error("{op}: invalid argument `{arg}` = {value}: {reason}")]
    InvalidArgument {
        /// The public function that refused the call.
        op: &'static str,
        /// The name of the argument, as in the function's signature.
        arg: &'static str,
        /// The value that was given, formatted for humans.
        value: String,
        /// Why the value is refused.
        reason: String,
    },
    /// A tensor has a dtype the operation does not support.
    #[error("{op}: `{arg}` has dtype {got:?}, expected {expected}")]
    UnsupportedKind {
        /// The public function that refused the call.
        op: &'static str,
        /// The tensor argument.
        arg: &'static str,
        /// What the operation accepts.
        expected: &'static str,
        /// What was given.
        got: Kind,
    },
    /// A tensor or block size has a shape that does not fit the operation.
    #[error("{op}: `{arg}` has shape {got:?}, {reason}")]
    ShapeMismatch {
        /// The public function that refused the call.
        op: &'static str,
        /// The argument whose shape is wrong.
        arg: &'static str,
        /// The shape that was given.
        got: Vec<i64>,
        /// What was expected instead.
        reason: String,
    },
    /// A tensor is not strided (dense): sparse (COO, CSR, CSC, BSR, BSC),
    /// MKL-DNN or nested. Every function takes strided tensors only
    /// (`to_dense()` converts the others).
    #[error("{op}: `{arg}` is a {layout} tensor; only strided (dense) tensors are supported")]
    UnsupportedLayout {
        /// The public function that refused the call.
        op: &'static str,
        /// The tensor argument.
        arg: &'static str,
        /// The layout given: `sparse COO`, `sparse CSR`, `sparse CSC`,
        /// `sparse BSR`, `sparse BSC`, `MKL-DNN`, `nested` (or
        /// `non-strided` for one libtorch does not name).
        layout: &'static str,
    },
    /// An environment variable the crate reads (`TCH_QUANT_THREADS`) has a
    /// value that does not parse. It is reported, not ignored, so that a
    /// typo does not silently run with the defaults.
    #[error("{op}: environment variable `{var}` = {value:?}: expected {expected}")]
    InvalidEnvironment {
        /// The public function that read the variable.
        op: &'static str,
        /// The variable's name.
        var: &'static str,
        /// The value that was set.
        value: String,
        /// The values it accepts.
        expected: &'static str,
    },
    /// A dtype name could not be parsed.
    #[error("unknown quantized dtype name {0:?}")]
    UnknownDtype(String),
    /// A checkpoint could not be read or written (the `checkpoint`
    /// feature); the message says what and where.
    #[error("{message}")]
    Checkpoint {
        /// What kind of problem it is, for callers that react differently
        /// (the `tch-quant` command maps each to an exit code).
        kind: CheckpointErrorKind,
        /// What went wrong, naming the file or tensor.
        message: String,
    },
    /// libtorch reported an error for a call that passed validation.
    #[error("{op}: libtorch error: {source}")]
    Torch {
        /// The public function during which libtorch failed.
        op: &'static str,
        /// The error libtorch raised.
        #[source]
        source: tch::TchError,
    },
}

/// The kinds of [`Error::Checkpoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckpointErrorKind {
    /// The input cannot be read as a checkpoint: missing file, not
    /// safetensors, truncated or corrupt header, bad index, lying metadata.
    InvalidInput,
    /// A tensor cannot be processed as asked (a dtype safetensors or
    /// libtorch cannot hold, a name the outputs would need twice).
    Unquantizable,
    /// The output cannot be written where asked: it exists, it is the input,
    /// its directory is missing or not writable.
    OutputRefused,
    /// The request itself is inconsistent (an index output for a single
    /// file, one path named for two outputs).
    InvalidRequest,
    /// An I/O or libtorch failure while reading or writing valid data.
    Io,
    /// The caller asked the work to stop before the outputs were complete.
    Interrupted,
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The kind of an [`Error::Checkpoint`]; `None` for the other variants.
    pub fn checkpoint_kind(&self) -> Option<CheckpointErrorKind> {
        match self {
            Error::Checkpoint { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    pub(crate) fn invalid(
        op: &'static str,
        arg: &'static str,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidArgument {
            op,
            arg,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Attaches the operation's name to libtorch errors.
pub(crate) trait TorchContext<T> {
    fn op(self, op: &'static str) -> Result<T>;
}

impl<T> TorchContext<T> for std::result::Result<T, tch::TchError> {
    fn op(self, op: &'static str) -> Result<T> {
        self.map_err(|source| Error::Torch { op, source })
    }
}
