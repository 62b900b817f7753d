//! Granularities: the common ways of choosing a block size, with torchao's
//! meanings.

use std::fmt;

use crate::error::{Error, Result};

/// How many elements share one scale and zero point, expressed against the
/// input's shape rather than as a raw block size.
///
/// # Examples
/// ```
/// use tch_quant::Granularity;
/// let shape = [8, 256];
/// assert_eq!(Granularity::PerTensor.block_size(&shape).unwrap(), vec![8, 256]);
/// assert_eq!(Granularity::PerAxis(0).block_size(&shape).unwrap(), vec![1, 256]);
/// assert_eq!(Granularity::PerAxis(-1).block_size(&shape).unwrap(), vec![8, 1]);
/// assert_eq!(Granularity::PerGroup(32).block_size(&shape).unwrap(), vec![1, 32]);
/// assert_eq!(Granularity::PerRow.block_size(&shape).unwrap(), vec![1, 256]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// One scale for the whole tensor: `block_size = shape`.
    PerTensor,
    /// One scale per index of the given axis (negative counts from the end):
    /// `block_size = shape` with `block_size[axis] = 1`.
    PerAxis(i64),
    /// Groups of the given size along the last dim, one scale per group and
    /// row: `block_size = (1, ..., 1, group_size)`.
    PerGroup(i64),
    /// One scale per row of the last dim: `block_size = (1, ..., 1, shape[-1])`
    /// (torchao's float8 per-row granularity).
    PerRow,
    /// One scale per token, i.e. per row of the last dim; the same block size
    /// as [`PerRow`](Granularity::PerRow).
    PerToken,
}

impl Granularity {
    /// The block size this granularity gives an input of `shape`.
    ///
    /// Errors when the axis is out of range, the shape has no dims, or the
    /// group size is not positive. Divisibility is checked where the block
    /// size is used.
    pub fn block_size(&self, shape: &[i64]) -> Result<Vec<i64>> {
        const OP: &str = "Granularity::block_size";
        let rank = shape.len() as i64;
        if rank == 0 && *self != Granularity::PerTensor {
            return Err(Error::ShapeMismatch {
                op: OP,
                arg: "shape",
                got: vec![],
                reason: format!("{self:?} needs a tensor with at least one dim"),
            });
        }
        let mut block = shape.to_vec();
        match *self {
            Granularity::PerTensor => {}
            Granularity::PerAxis(axis) => {
                let a = if axis < 0 { axis + rank } else { axis };
                if !(0..rank).contains(&a) {
                    return Err(Error::invalid(
                        OP,
                        "axis",
                        axis,
                        format!("out of range for a tensor of rank {rank}"),
                    ));
                }
                block[a as usize] = 1;
            }
            Granularity::PerGroup(group) => {
                if group <= 0 {
                    return Err(Error::invalid(
                        OP,
                        "group_size",
                        group,
                        "must be at least 1",
                    ));
                }
                block.iter_mut().for_each(|b| *b = 1);
                block[rank as usize - 1] = group;
            }
            Granularity::PerRow | Granularity::PerToken => {
                let last = block[rank as usize - 1];
                block.iter_mut().for_each(|b| *b = 1);
                block[rank as usize - 1] = last;
            }
        }
        Ok(block)
    }
}

impl fmt::Display for Granularity {
    /// `per-tensor`, `per-axis:N`, `per-group:N`, `per-row` or `per-token`,
    /// as the `tch-quant` command and the checkpoint metadata spell them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Granularity::PerTensor => f.write_str("per-tensor"),
            Granularity::PerAxis(axis) => write!(f, "per-axis:{axis}"),
            Granularity::PerGroup(group) => write!(f, "per-group:{group}"),
            Granularity::PerRow => f.write_str("per-row"),
            Granularity::PerToken => f.write_str("per-token"),
        }
    }
}
