//! compressed-tensors' dense int32 packing (`pack_to_int32` in
//! `compressors/pack_quantized/helpers.py`, 0.20.0): along a row, code `i`
//! of `b` bits occupies bits `i*b .. i*b+b` of the row's bit stream, word
//! `j` holding bits `32j .. 32j+32` (least significant first), codes split
//! across word boundaries where they fall, and the row padded with zero
//! bits to `ceil(cols*b/32)` words. The values packed are the unsigned
//! codes `q' + 2^(b-1)` of compressed-tensors' signed codes `q'`, which are
//! torchao's unsigned codes `q` themselves.

use tch::{Kind, Tensor};

use crate::checkpoint::Context as _;
use crate::error::{CheckpointErrorKind, Error, Result};

/// Words of a row of `cols` codes of `bits` bits.
pub fn packed_words(cols: usize, bits: u32) -> usize {
    (cols * bits as usize).div_ceil(32)
}

/// Packs unsigned codes (`0..2^bits`, one per byte), `rows` rows of `cols`,
/// row by row into `rows * packed_words(cols, bits)` words.
///
/// # Errors
/// `bits` outside `1..=8`, a code of more than `bits` bits, or a length that
/// is not `rows * cols`.
pub fn pack_rows(codes: &[u8], rows: usize, cols: usize, bits: u32) -> Result<Vec<i32>> {
    const OP: &str = "compressed_tensors::pack_rows";
    if !(1..=8).contains(&bits) {
        return Err(Error::invalid(OP, "bits", bits, "must be 1 to 8"));
    }
    if codes.len() != rows * cols {
        return Err(Error::invalid(
            OP,
            "codes",
            codes.len(),
            format!("must hold rows * cols = {rows} * {cols} codes"),
        ));
    }
    if let Some(bad) = codes.iter().find(|&&c| u32::from(c) >> bits != 0) {
        return Err(Error::invalid(
            OP,
            "codes",
            bad,
            format!("a code does not fit {bits} bits"),
        ));
    }
    let words = packed_words(cols, bits);
    let b = bits as usize;
    let mut out = vec![0u32; rows * words];
    for (row, dst) in codes.chunks(cols.max(1)).zip(out.chunks_mut(words.max(1))) {
        for (i, &c) in row.iter().enumerate() {
            let (word, offset) = ((i * b) / 32, (i * b) % 32);
            let v = u32::from(c);
            dst[word] |= v << offset;
            if offset + b > 32 {
                dst[word + 1] |= v >> (32 - offset);
            }
        }
    }
    Ok(out.into_iter().map(|w| w as i32).collect())
}

/// `pack_to_int32(codes - 2^(bits-1), bits, packed_dim)` of compressed-tensors
/// for a 2-D tensor of unsigned codes (any integer dtype, values in
/// `0..2^bits`): `[R, C]` gives `[R, ceil(C*bits/32)]` int32 along dim 1,
/// `[ceil(R*bits/32), C]` along dim 0.
///
/// # Errors
/// Not 2-D; codes outside the range; `bits` outside `1..=8`.
pub fn pack_to_int32(codes: &Tensor, bits: u32, packed_dim: usize) -> Result<Tensor> {
    const OP: &str = "compressed_tensors::pack_to_int32";
    let size = codes.size();
    if size.len() != 2 || packed_dim > 1 {
        return Err(Error::invalid(
            OP,
            "codes",
            format!("{size:?} packed along dim {packed_dim}"),
            "must be 2-D, packed along dim 0 or 1",
        ));
    }
    let t = match packed_dim {
        0 => codes.f_transpose(0, 1),
        _ => Ok(codes.shallow_clone()),
    };
    let bytes = t
        .and_then(|t| t.f_to_kind(Kind::Uint8))
        .and_then(|t| t.f_contiguous())
        .context(CheckpointErrorKind::Io, || "packing codes")?;
    let (rows, cols) = match packed_dim {
        0 => (size[1] as usize, size[0] as usize),
        _ => (size[0] as usize, size[1] as usize),
    };
    // A code out of range would be cut by the cast to uint8: check first.
    let max = codes
        .f_max()
        .and_then(|m| m.f_int64_value(&[]))
        .context(CheckpointErrorKind::Io, || "packing codes")?;
    let min = codes
        .f_min()
        .and_then(|m| m.f_int64_value(&[]))
        .context(CheckpointErrorKind::Io, || "packing codes")?;
    if min < 0 || max >= 1 << bits.min(8) {
        return Err(Error::invalid(
            OP,
            "codes",
            format!("{min}..={max}"),
            format!("must lie in 0..2^{bits}"),
        ));
    }
    let flat =
        Vec::<u8>::try_from(bytes.view(-1)).context(CheckpointErrorKind::Io, || "reading codes")?;
    let words = pack_rows(&flat, rows, cols, bits)?;
    let packed = Tensor::from_slice(&words).view([rows as i64, packed_words(cols, bits) as i64]);
    Ok(match packed_dim {
        0 => packed.tr().contiguous(),
        _ => packed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads code `i` of a packed row back, bit by bit.
    fn code_at(words: &[i32], i: usize, bits: u32) -> u8 {
        let mut v = 0u8;
        for k in 0..bits as usize {
            let bit = i * bits as usize + k;
            let word = words[bit / 32] as u32;
            v |= (((word >> (bit % 32)) & 1) as u8) << k;
        }
        v
    }

    #[test]
    fn every_code_sits_at_its_bit_offset_and_padding_is_zero() {
        for bits in 1..=8u32 {
            let cols = 45;
            let codes: Vec<u8> = (0..2 * cols)
                .map(|i| ((i * 37 + 11) % (1 << bits)) as u8)
                .collect();
            let words = pack_rows(&codes, 2, cols, bits).unwrap();
            let w = packed_words(cols, bits);
            assert_eq!(words.len(), 2 * w);
            for r in 0..2 {
                let row = &words[r * w..(r + 1) * w];
                for i in 0..cols {
                    assert_eq!(code_at(row, i, bits), codes[r * cols + i], "bits {bits}");
                }
                for bit in cols * bits as usize..w * 32 {
                    assert_eq!((row[bit / 32] as u32 >> (bit % 32)) & 1, 0);
                }
            }
        }
    }

    #[test]
    fn codes_out_of_range_are_refused() {
        assert!(pack_rows(&[16], 1, 1, 4).is_err());
        assert!(pack_rows(&[1], 1, 1, 9).is_err());
        assert!(pack_rows(&[1, 2], 1, 1, 4).is_err());
        let t = Tensor::from_slice(&[-1i32, 3]).view([1, 2]);
        assert!(pack_to_int32(&t, 4, 1).is_err());
    }

    #[test]
    fn packing_along_dim_0_packs_the_columns() {
        let t = Tensor::from_slice(&(0..24i32).map(|i| i % 16).collect::<Vec<_>>()).view([8, 3]);
        let p = pack_to_int32(&t, 4, 0).unwrap();
        assert_eq!(p.size(), [1, 3]);
        let q = pack_to_int32(&t.tr(), 4, 1).unwrap();
        assert!(p.equal(&q.tr()));
    }
}
