//! Quantized safetensors checkpoints (the `checkpoint` feature): reading a
//! checkpoint (one file or a sharded index), quantizing its weights with a
//! [`Recipe`](crate::Recipe), writing the result atomically in tch-quant's
//! format, and reading quantized checkpoints back into
//! [`AffineQuantizedTensor`](crate::AffineQuantizedTensor)s.
//!
//! - [`reader`]: [`Checkpoint::open`], headers first, then one tensor at a
//!   time;
//! - `files`: only regular files are read or replaced, and reads are
//!   positional, so an input truncated under a run is an error, not SIGBUS;
//! - [`mod@format`]: the file layout (`W.qdata`, `W.scale`, `W.zero_point`) and
//!   the metadata records that make a quantized tensor readable by torchao;
//! - [`plan`]: where a run writes, checked before any work;
//! - [`writer`]: output shards written in place from a plan of their
//!   header, or through spill files, as temporaries renamed
//!   into place all together by [`Outputs::commit`];
//! - [`mod@quantize`]: the loop that quantizes a checkpoint
//!   ([`quantize_checkpoint`], and [`quantize_file`] for the whole job in
//!   one call);
//! - [`compressed_tensors`]: export to a model directory in
//!   compressed-tensors' format, which transformers and compressed-tensors
//!   load;
//! - [`temp`]: the registry of temporaries, for signal handlers, and the
//!   clean-up of those a killed run left.
//!
//! # Examples
//! ```no_run
//! use tch_quant::checkpoint::{quantize_file, read_quantized};
//! use tch_quant::{Recipe, Selection};
//! let summary = quantize_file("model.safetensors".as_ref(), "model-int4.safetensors".as_ref(),
//!                             &Recipe::Int4WeightOnly { group_size: 32, use_hqq: false },
//!                             &Selection::default())?;
//! println!("{} quantized, {} copied", summary.quantized, summary.copied);
//! let weights = read_quantized("model-int4.safetensors".as_ref(), tch::Device::Cpu)?;
//! for (name, q) in &weights {
//!     let w = q.dequantize()?;
//!     println!("{name}: {:?}", w.size());
//! }
//! # Ok::<(), tch_quant::Error>(())
//! ```

pub mod compressed_tensors;
pub mod dtype;
mod files;
pub mod format;
pub mod plan;
pub mod quantize;
pub mod reader;
pub mod temp;
pub mod writer;

pub use format::{Codes, FileInfo, Record};
pub use plan::OutputPlan;
pub use quantize::{quantize_checkpoint, quantize_file, Outcome, QuantizeObserver, Summary};
pub use reader::{read_quantized, Checkpoint, Entry, Shard};
pub use writer::{Outputs, PendingFile, PlannedTensor, ShardPlan, ShardWriter};

use crate::error::{CheckpointErrorKind, Error, Result};

/// Returns early with an [`Error::Checkpoint`] of the given kind.
macro_rules! bail {
    ($kind:ident, $($arg:tt)+) => {
        return Err($crate::Error::Checkpoint {
            kind: $crate::CheckpointErrorKind::$kind,
            message: format!($($arg)+),
        })
    };
}
pub(crate) use bail;

/// An [`Error::Checkpoint`] of `kind`.
pub(crate) fn error(kind: CheckpointErrorKind, message: impl std::fmt::Display) -> Error {
    Error::Checkpoint {
        kind,
        message: message.to_string(),
    }
}

/// Turns any error into an [`Error::Checkpoint`] of a kind, with a line of
/// context before the error's own message chain (`context: error: cause`).
pub(crate) trait Context<T> {
    fn context<C: std::fmt::Display>(
        self,
        kind: CheckpointErrorKind,
        context: impl FnOnce() -> C,
    ) -> Result<T>;
}

impl<T, E: std::error::Error> Context<T> for std::result::Result<T, E> {
    fn context<C: std::fmt::Display>(
        self,
        kind: CheckpointErrorKind,
        context: impl FnOnce() -> C,
    ) -> Result<T> {
        self.map_err(|e| {
            let mut message = format!("{}: {e}", context());
            let mut source = e.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            error(kind, message)
        })
    }
}
