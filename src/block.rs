//! Block sizes: how a tensor is cut into blocks that share one scale and
//! zero point, and the reshapes that turn those blocks into reductions.

use crate::error::{Error, Result};
use crate::strided::MAX_RANK;

/// The reshape that exposes blocks as reduction dims (torchao's
/// `_get_reduction_params`).
///
/// Each input dim `i` with block `b = block_size[i]`:
/// - `b == size` : kept as one dim and reduced;
/// - `b == 1`    : kept as one dim and not reduced;
/// - otherwise   : split into `(size / b, b)` and the inner `b` reduced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlockLayout {
    /// The input viewed so that every block is a set of reduction dims.
    pub shape_for_reduction: Vec<i64>,
    /// Dims of `shape_for_reduction` that are reduced.
    pub reduction_dims: Vec<i64>,
    /// `shape_for_reduction` with every reduced dim set to 1: the shape
    /// scale and zero point are viewed as when they are applied.
    pub shape_after_reduction: Vec<i64>,
    /// The shape of scale and zero point as `choose_qparams_affine` returns
    /// them: the reduced dims removed (0-d when everything is reduced).
    pub qparams_shape: Vec<i64>,
}

impl BlockLayout {
    /// Validates `block_size` against `shape` and derives the layout.
    ///
    /// Refused: a length that differs from the rank, entries `<= 0`, entries
    /// larger than their dim or not dividing it, empty tensors, a block
    /// size that reduces no dim of a tensor with more than one element (torchao
    /// silently collapses that to a single scale, pytorch/ao#3458), and
    /// blocks whose reduction view has more than 64 dims (libtorch's
    /// reductions take no more, so both paths refuse them alike).
    pub fn new(op: &'static str, block_size: &[i64], shape: &[i64]) -> Result<Self> {
        check_block_size(block_size, shape).map_err(|r| r.into_error(op, block_size, shape))?;
        let mut layout = BlockLayout {
            shape_for_reduction: Vec::with_capacity(2 * shape.len()),
            reduction_dims: Vec::new(),
            shape_after_reduction: Vec::new(),
            qparams_shape: Vec::new(),
        };
        for (&b, &size) in block_size.iter().zip(shape) {
            let here = layout.shape_for_reduction.len() as i64;
            if b != size && b > 1 {
                layout.shape_for_reduction.extend([size / b, b]);
                layout.reduction_dims.push(here + 1);
            } else {
                layout.shape_for_reduction.push(size);
                if b != 1 {
                    layout.reduction_dims.push(here);
                }
            }
        }
        layout.shape_after_reduction = layout.shape_for_reduction.clone();
        for &d in &layout.reduction_dims {
            layout.shape_after_reduction[d as usize] = 1;
        }
        layout.qparams_shape = if layout.reduction_dims.is_empty() {
            Vec::new()
        } else {
            layout
                .shape_for_reduction
                .iter()
                .enumerate()
                .filter(|(d, _)| !layout.reduction_dims.contains(&(*d as i64)))
                .map(|(_, &s)| s)
                .collect()
        };
        Ok(layout)
    }
}

/// Why a block size does not fit a shape: the rules [`BlockLayout::new`]
/// enforces, as a value, so that callers deciding ahead of any data (a
/// recipe checking a checkpoint's tensors) apply the same rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockRefusal {
    /// `block_size` has another length than the shape's rank.
    Rank,
    /// The shape has no elements.
    Empty,
    /// Entry `dim` is zero or negative.
    NotPositive { dim: usize },
    /// Entry `dim` is larger than its dim or does not divide it.
    NotDividing { dim: usize },
    /// No dim is reduced although the tensor has more than one element:
    /// torchao collapses that into one scale (pytorch/ao#3458).
    NoReduction,
    /// The reduction view (each split dim becoming two) has `dims` dims,
    /// more than libtorch's reductions take.
    TooManyDims { dims: usize },
}

/// Checks `block_size` against `shape` (see [`BlockLayout::new`]).
pub(crate) fn check_block_size(
    block_size: &[i64],
    shape: &[i64],
) -> std::result::Result<(), BlockRefusal> {
    if block_size.len() != shape.len() {
        return Err(BlockRefusal::Rank);
    }
    // Not the product of the dims: a shape that does not come from a tensor
    // (a stored record) may overflow it.
    if shape.contains(&0) {
        return Err(BlockRefusal::Empty);
    }
    for (dim, (&b, &size)) in block_size.iter().zip(shape).enumerate() {
        if b <= 0 {
            return Err(BlockRefusal::NotPositive { dim });
        }
        if b > size || size % b != 0 {
            return Err(BlockRefusal::NotDividing { dim });
        }
    }
    // A dim is reduced when its block is larger than 1.
    let reduces = block_size.iter().any(|&b| b > 1);
    if !reduces && shape.iter().any(|&d| d > 1) {
        return Err(BlockRefusal::NoReduction);
    }
    let split = block_size
        .iter()
        .zip(shape)
        .filter(|&(&b, &size)| b != size && b > 1)
        .count();
    let dims = shape.len() + split;
    if dims > MAX_RANK {
        return Err(BlockRefusal::TooManyDims { dims });
    }
    Ok(())
}

impl BlockRefusal {
    /// The crate's error for this refusal, naming `op`'s arguments.
    pub(crate) fn into_error(self, op: &'static str, block_size: &[i64], shape: &[i64]) -> Error {
        let shown = format!("{block_size:?}");
        match self {
            BlockRefusal::Rank => Error::ShapeMismatch {
                op,
                arg: "block_size",
                got: block_size.to_vec(),
                reason: format!("expected one entry per input dim, the input has shape {shape:?}"),
            },
            BlockRefusal::Empty => Error::ShapeMismatch {
                op,
                arg: "input",
                got: shape.to_vec(),
                reason: "the tensor is empty; there is nothing to quantize".into(),
            },
            BlockRefusal::NotPositive { dim } => Error::invalid(
                op,
                "block_size",
                shown,
                format!(
                    "entry {dim} is {}; every entry must be at least 1",
                    block_size[dim]
                ),
            ),
            BlockRefusal::NotDividing { dim } => Error::invalid(
                op,
                "block_size",
                shown,
                format!(
                    "entry {dim} ({}) must divide input dim {dim} of size {}",
                    block_size[dim], shape[dim]
                ),
            ),
            BlockRefusal::TooManyDims { dims } => Error::ShapeMismatch {
                op,
                arg: "block_size",
                got: block_size.to_vec(),
                reason: format!(
                    "views an input of shape {shape:?} as {dims} dims to reduce its blocks, \
                     more than the {MAX_RANK} libtorch's reductions take"
                ),
            },
            BlockRefusal::NoReduction => Error::invalid(
                op,
                "block_size",
                shown,
                format!(
                    "reduces no dim of an input of shape {shape:?}: every element would be \
                     its own block, which torchao collapses into one scale (pytorch/ao#3458)"
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_torchao_docstring_example() {
        let l = BlockLayout::new("t", &[3, 3, 2, 10], &[3, 3, 10, 10]).unwrap();
        assert_eq!(l.shape_for_reduction, vec![3, 3, 5, 2, 10]);
        assert_eq!(l.reduction_dims, vec![0, 1, 3, 4]);
        assert_eq!(l.qparams_shape, vec![5]);
    }

    #[test]
    fn per_row_and_group() {
        let l = BlockLayout::new("t", &[1, 32], &[4, 128]).unwrap();
        assert_eq!(l.shape_for_reduction, vec![4, 4, 32]);
        assert_eq!(l.reduction_dims, vec![2]);
        assert_eq!(l.shape_after_reduction, vec![4, 4, 1]);
        assert_eq!(l.qparams_shape, vec![4, 4]);
    }

    #[test]
    fn refusals() {
        assert!(BlockLayout::new("t", &[1, 3], &[4, 128]).is_err());
        assert!(BlockLayout::new("t", &[0, 128], &[4, 128]).is_err());
        assert!(BlockLayout::new("t", &[-1, 128], &[4, 128]).is_err());
        assert!(BlockLayout::new("t", &[1, 256], &[4, 128]).is_err());
        assert!(BlockLayout::new("t", &[1], &[4, 128]).is_err());
        assert!(BlockLayout::new("t", &[1, 1], &[4, 128]).is_err());
        assert!(BlockLayout::new("t", &[1, 1], &[0, 128]).is_err());
        let one = BlockLayout::new("t", &[1, 1], &[1, 1]).unwrap();
        assert!(one.qparams_shape.is_empty());
        // A shape whose element count overflows i64 is not "empty".
        let huge = [1i64 << 40, 1 << 40];
        assert!(BlockLayout::new("t", &[1, 1 << 40], &huge).is_ok());
    }

    #[test]
    fn reduction_views_above_64_dims_are_refused() {
        // Each dim of 4 split into blocks of 2 adds a dim to the view.
        assert!(check_block_size(&[2; 32], &[4; 32]).is_ok());
        assert_eq!(
            check_block_size(&[2; 33], &[4; 33]),
            Err(BlockRefusal::TooManyDims { dims: 66 })
        );
        let (shape, block) = (vec![1i64; 65], vec![1i64; 65]);
        assert!(matches!(
            BlockLayout::new("t", &block, &shape),
            Err(Error::ShapeMismatch {
                arg: "block_size",
                ..
            })
        ));
    }
}
