//! Sub-byte packing of `uint1..=uint7` codes, byte for byte torchao 0.11's
//! `torchao.dtypes.uintx.bitpacking.pack` / `unpack` (the functions its
//! `UintxTensor` uses, on every device).
//!
//! The layout is planar and sharded. An `nbits` code is split into bit
//! planes of width 4, 2 and 1 (the set bits of `nbits`, widest first, low
//! bits first: 7 = 4 + 2 + 1, 6 = 4 + 2, 5 = 4 + 1, 3 = 2 + 1), and each
//! plane becomes one uint8 shard. Within a plane of width `w`, the packed
//! dim (size `L`) is cut into `8 / w` consecutive slices of `L * w / 8`
//! elements, and slice `i` lands in bits `w*i .. w*(i+1)` of the shard:
//! for 4 bits, `shard[j] = data[j] | data[j + L/2] << 4`.

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result, TorchContext};
use crate::scalar_ops;
use crate::strided::check_strided;

/// One bit plane of a packed code: `width` bits starting at bit `shift`.
#[derive(Debug, Clone, Copy)]
struct Plane {
    width: i64,
    shift: i64,
}

impl Plane {
    /// Elements of one plane that share a byte.
    fn per_byte(self) -> i64 {
        8 / self.width
    }

    fn mask(self) -> i64 {
        (1 << self.width) - 1
    }
}

/// The planes of `nbits`, in torchao's shard order.
fn planes(op: &'static str, nbits: u32) -> Result<Vec<Plane>> {
    if !(1..=7).contains(&nbits) {
        return Err(Error::invalid(op, "nbits", nbits, "must be 1 to 7"));
    }
    let mut shift = 0;
    let mut planes = Vec::with_capacity(3);
    for width in [4, 2, 1] {
        if nbits & width != 0 {
            planes.push(Plane {
                width: width as i64,
                shift,
            });
            shift += width as i64;
        }
    }
    Ok(planes)
}

/// The `(width, shift)` of each shard of `nbits` codes, in shard order;
/// `None` for `nbits` outside `1..=7`.
pub(crate) fn plane_layout(nbits: u32) -> Option<Vec<(u32, u32)>> {
    let planes = planes("plane_layout", nbits).ok()?;
    Some(
        planes
            .iter()
            .map(|p| (p.width as u32, p.shift as u32))
            .collect(),
    )
}

/// `dim` in `[-ndim, ndim)`, made non-negative.
fn normalize_dim(op: &'static str, dim: i64, ndim: usize) -> Result<usize> {
    let n = ndim as i64;
    if dim < -n || dim >= n {
        return Err(Error::invalid(
            op,
            "dim",
            dim,
            format!("must lie in [{}, {}) for a {ndim}-D tensor", -n, n),
        ));
    }
    Ok(if dim < 0 { dim + n } else { dim } as usize)
}

/// Packs `uint{nbits}` codes stored one per uint8 along `dim`, byte for byte
/// as torchao 0.11's `bitpacking.pack(data, nbits, dim)`.
///
/// The layout is planar and sharded. Each code is split into bit planes of
/// width 4, 2 and 1, the set bits of `nbits` from the widest (low code bits
/// first), and each plane becomes one uint8 shard: one shard for 1, 2 and 4
/// bits, two for 3 (2+1), 5 (4+1) and 6 (4+2) bits, three for 7 bits
/// (4+2+1). In the plane of width `w`, the size `L` along `dim` is cut into
/// `8 / w` consecutive slices of `L * w / 8` elements, and slice `i` goes to
/// bits `w*i .. w*(i+1)` of the shard: for 4 bits along a 1-D tensor,
/// `shard[j] = data[j] | data[j + L/2] << 4`.
///
/// Shard `k` thus has the shape of `data` except along `dim`, where its size
/// is `L * w_k / 8`; together the shards hold `L * nbits / 8` bytes per line,
/// and [`unpack_uintx`] with the same `nbits` and `dim` restores `data`
/// exactly.
///
/// Unlike torchao, which silently drops the bits of a code above `nbits`,
/// a code greater than `2^nbits - 1` is refused (this costs one reduction
/// over `data` and a device synchronization).
///
/// # Errors
/// `nbits` outside `1..=7`; `data` not uint8 or 0-d; `dim` out of range; the
/// size along `dim` not a multiple of 8 (torchao's requirement for every
/// `nbits`); a code above `2^nbits - 1`; an allocation that fails
/// ([`Error::Torch`]).
///
/// # Examples
/// ```
/// use tch::Tensor;
/// use tch_quant::{pack_uintx, unpack_uintx};
/// let data = Tensor::from_slice(&[1u8, 2, 3, 4, 5, 6, 7, 8]);
/// let shards = pack_uintx(&data, 4, -1)?;
/// assert_eq!(Vec::<u8>::try_from(&shards[0])?, [0x51, 0x62, 0x73, 0x84]);
///
/// let shards = pack_uintx(&data, 6, 0)?; // a 4-bit and a 2-bit shard
/// assert_eq!(shards.len(), 2);
/// assert_eq!(shards[1].size(), [2]);
/// assert!(unpack_uintx(&shards, 6, 0)?.equal(&data));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pack_uintx(data: &Tensor, nbits: u32, dim: i64) -> Result<Vec<Tensor>> {
    const OP: &str = "pack_uintx";
    check_strided(OP, "data", data)?;
    let planes = planes(OP, nbits)?;
    if data.kind() != Kind::Uint8 {
        return Err(Error::UnsupportedKind {
            op: OP,
            arg: "data",
            expected: "uint8",
            got: data.kind(),
        });
    }
    let size = data.size();
    let d = normalize_dim(OP, dim, size.len())?;
    if size[d] % 8 != 0 {
        return Err(Error::ShapeMismatch {
            op: OP,
            arg: "data",
            got: size,
            reason: format!("the size along dim {dim} must be a multiple of 8"),
        });
    }
    let max_code = (1i64 << nbits) - 1;
    if let Some(shards) = pack_cpu(data, &planes, d) {
        let (shards, ored) = shards.op(OP)?;
        if i64::from(ored) > max_code {
            return Err(too_large_error(OP, nbits, max_code));
        }
        return Ok(shards);
    }
    pack_torch(data, nbits, &planes, d)
}

/// [`pack_uintx`] on libtorch ops, range check included: torchao's
/// `bitpacking.pack` op for op, on any device and layout.
fn pack_torch(data: &Tensor, nbits: u32, planes: &[Plane], d: usize) -> Result<Vec<Tensor>> {
    const OP: &str = "pack_uintx";
    let max_code = (1i64 << nbits) - 1;
    let too_large = scalar_ops::gt(data, max_code)
        .and_then(|t| t.f_any())
        .and_then(|t| t.f_int64_value(&[]));
    if too_large.op(OP)? != 0 {
        return Err(too_large_error(OP, nbits, max_code));
    }
    let size = data.size();
    let d = d as i64;
    let len = size[d as usize];
    let pack_plane = |plane: Plane| -> std::result::Result<Tensor, tch::TchError> {
        let bits = scalar_ops::shift_right(
            &scalar_ops::bitwise_and(data, plane.mask() << plane.shift)?,
            plane.shift,
        )?;
        let slice_len = len / plane.per_byte();
        let mut shape = size.clone();
        shape[d as usize] = slice_len;
        let mut packed = Tensor::f_zeros(shape.as_slice(), (Kind::Uint8, data.device()))?;
        for i in 0..plane.per_byte() {
            let slice = bits.f_narrow(d, slice_len * i, slice_len)?;
            packed =
                packed.f_bitwise_or_tensor(&scalar_ops::shift_left(&slice, plane.width * i)?)?;
        }
        Ok(packed)
    };
    planes
        .iter()
        .map(|&plane| pack_plane(plane).op(OP))
        .collect()
}

/// The refusal of codes above `max_code`.
fn too_large_error(op: &'static str, nbits: u32, max_code: i64) -> Error {
    Error::invalid(
        op,
        "data",
        format!("a tensor with codes above {max_code}"),
        format!("uint{nbits} codes must lie in [0, {max_code}]"),
    )
}

/// [`pack_uintx`]'s shards computed in one pass of plain Rust over the
/// codes' bytes, for a contiguous CPU uint8 `data` (`None` otherwise: the
/// libtorch op sequence handles every other tensor), with the OR of every
/// code, for the range check: all codes are at most `2^nbits - 1` exactly
/// when their OR is, as that bound is `nbits` one bits.
///
/// `data` seen as `[outer, L, inner]` around the packed dim `d`: for each
/// outer index, slice `i` of a plane is the `L * w / 8 * inner` bytes that
/// start at `i * L * w / 8 * inner` of its row, and the shard's row is the
/// elementwise OR of the slices' bits, each shifted to its place. So every
/// step is elementwise over contiguous bytes, whatever `d`.
fn pack_cpu(
    data: &Tensor,
    planes: &[Plane],
    d: usize,
) -> Option<std::result::Result<(Vec<Tensor>, u8), tch::TchError>> {
    if data.device() != Device::Cpu || !data.is_contiguous() {
        return None;
    }
    let size = data.size();
    let dims: Vec<usize> = size.iter().map(|&s| s as usize).collect();
    let outer: usize = dims[..d].iter().product();
    let len = dims[d];
    let inner: usize = dims[d + 1..].iter().product();
    let numel = outer * len * inner;
    let bytes: &[u8] = if numel == 0 {
        &[]
    } else {
        // SAFETY: `data` is a contiguous CPU uint8 tensor (checked by the
        // caller and above) of `numel` elements, so `data_ptr` (which
        // includes the storage offset) points at `numel` initialized bytes,
        // which live as long as the borrow of `data`; nothing writes them
        // while this function reads them.
        unsafe { std::slice::from_raw_parts(data.data_ptr().cast::<u8>(), numel) }
    };
    let mut shards = Vec::with_capacity(planes.len());
    for &plane in planes {
        let mut shape = size.clone();
        shape[d] = (len / plane.per_byte() as usize) as i64;
        match Tensor::f_empty(shape.as_slice(), (Kind::Uint8, Device::Cpu)) {
            Ok(t) => shards.push(t),
            Err(e) => return Some(Err(e)),
        }
    }
    let mut ored = 0u8;
    if numel > 0 {
        let mut outs: Vec<&mut [u8]> = shards
            .iter()
            .zip(planes)
            .map(|(shard, plane)| {
                let n = outer * (len / plane.per_byte() as usize) * inner;
                // SAFETY: `shard` is a fresh contiguous uint8 CPU tensor of
                // `n` elements that nothing else refers to, alive until the
                // end of this function, after the last use of the slice.
                unsafe { std::slice::from_raw_parts_mut(shard.data_ptr().cast::<u8>(), n) }
            })
            .collect();
        // A row at a time through every plane, so that the planes after the
        // first read it from cache.
        for (o, row) in bytes.chunks_exact(len * inner).enumerate() {
            for (k, (out, &plane)) in outs.iter_mut().zip(planes).enumerate() {
                let slice = out.len() / outer;
                // The first plane reads every code: it also takes their OR.
                ored |= pack_row(row, &mut out[o * slice..(o + 1) * slice], plane, k == 0);
            }
        }
    }
    Some(Ok((shards, ored)))
}

/// One row of one plane: `out[j]` gets bits `shift .. shift + width` of
/// `row[j + i * out.len()]` at bits `width * i`, for every slice `i`; with
/// `or_codes`, returns the OR of every byte of `row` (else 0).
///
/// Eight bytes at a time as a `u64`: shifting the word right by `shift`
/// moves each byte's plane to its low bits, and the bits that come down
/// from the next byte land at `8 - shift` or above, at or above `width`,
/// so the per-byte mask removes them; shifting left by `width * i` keeps
/// the `width` bits within their byte, as `width * (i + 1) <= 8`.
fn pack_row(row: &[u8], out: &mut [u8], plane: Plane, or_codes: bool) -> u8 {
    const LANES: usize = 8;
    let m = out.len();
    let (width, shift) = (plane.width as u32, plane.shift as u32);
    let mask = plane.mask() as u8;
    let mask_word = u64::from_ne_bytes([mask; LANES]);
    let word = |bytes: &[u8]| u64::from_ne_bytes(bytes.try_into().expect("8 bytes"));
    let mut ored = 0u64;
    let whole = m / LANES * LANES;
    for (i, slice) in row.chunks_exact(m).enumerate() {
        let at = width * i as u32;
        let (out_words, slice_words) = (&mut out[..whole], &slice[..whole]);
        for (o, s) in out_words
            .chunks_exact_mut(LANES)
            .zip(slice_words.chunks_exact(LANES))
        {
            let x = word(s);
            if or_codes {
                ored |= x;
            }
            let bits = ((x >> shift) & mask_word) << at;
            let v = if i == 0 { bits } else { word(o) | bits };
            o.copy_from_slice(&v.to_ne_bytes());
        }
        for (o, &x) in out[whole..].iter_mut().zip(&slice[whole..]) {
            if or_codes {
                ored |= u64::from(x);
            }
            let bits = ((x >> shift) & mask) << at;
            *o = if i == 0 { bits } else { *o | bits };
        }
    }
    ored.to_ne_bytes().iter().fold(0, |a, &b| a | b)
}

/// Unpacks the shards of [`pack_uintx`] back to one uint8 code per element,
/// byte for byte as torchao 0.11's `bitpacking.unpack(shards, nbits, dim)`.
///
/// `dim` must be the dim the codes were packed along (torchao's `pack`
/// defaults to `-1` but `unpack` to `0`; here both are explicit). Every byte
/// value of a shard is valid: the result's codes always lie in
/// `[0, 2^nbits - 1]`.
///
/// # Errors
/// `nbits` outside `1..=7`; the wrong number of shards for `nbits`; a shard
/// that is not uint8, is 0-d, lies on another device than the first, or has
/// a shape that does not match the first shard's (same size in every dim but
/// `dim`, and along `dim` `L * width / 8` for one `L`, a multiple of 8
/// and below 2^63); `dim` out of range.
///
/// # Examples
/// ```
/// use tch::Tensor;
/// use tch_quant::unpack_uintx;
/// let packed = Tensor::from_slice(&[0x51u8, 0x62, 0x73, 0x84]);
/// let data = unpack_uintx(&[packed], 4, 0)?;
/// assert_eq!(Vec::<u8>::try_from(&data)?, [1, 2, 3, 4, 5, 6, 7, 8]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn unpack_uintx(shards: &[Tensor], nbits: u32, dim: i64) -> Result<Tensor> {
    const OP: &str = "unpack_uintx";
    let planes = planes(OP, nbits)?;
    if shards.len() != planes.len() {
        return Err(Error::invalid(
            OP,
            "shards",
            format!("{} shards", shards.len()),
            format!("uint{nbits} packs into {} shards", planes.len()),
        ));
    }
    for shard in shards {
        check_strided(OP, "shards", shard)?;
    }
    let first = shards[0].size();
    let d = normalize_dim(OP, dim, first.len())?;
    // A shard of stride 0 can claim 2^61 bytes or more, whose codes would
    // overflow the count. Once `first[d] * 8` fits, so do the products
    // below: no plane is wider than the first.
    let Some(len) = first[d].checked_mul(8).map(|bits| bits / planes[0].width) else {
        return Err(Error::ShapeMismatch {
            op: OP,
            arg: "shards",
            got: first,
            reason: format!("its size along dim {dim} unpacks to more than 2^63 codes"),
        });
    };
    let device: Device = shards[0].device();
    for (shard, plane) in shards.iter().zip(&planes) {
        if shard.kind() != Kind::Uint8 {
            return Err(Error::UnsupportedKind {
                op: OP,
                arg: "shards",
                expected: "uint8",
                got: shard.kind(),
            });
        }
        if shard.device() != device {
            return Err(Error::invalid(
                OP,
                "shards",
                format!("{:?}", shard.device()),
                format!("every shard must be on the first shard's device, {device:?}"),
            ));
        }
        let mut expected = first.clone();
        expected[d] = len * plane.width / 8;
        if len % 8 != 0 || shard.size() != expected {
            return Err(Error::ShapeMismatch {
                op: OP,
                arg: "shards",
                got: shard.size(),
                reason: format!(
                    "the {}-bit shard of uint{nbits} codes must have shape {expected:?}, \
                     from {len} codes along dim {dim} (a multiple of 8)",
                    plane.width
                ),
            });
        }
    }
    let d = d as i64;
    let unpack_plane =
        |shard: &Tensor, plane: Plane| -> std::result::Result<Tensor, tch::TchError> {
            let slices = (0..plane.per_byte())
                .map(|i| {
                    let shifted = scalar_ops::shift_right(shard, plane.width * i)?;
                    scalar_ops::bitwise_and(&shifted, plane.mask())
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            scalar_ops::shift_left(&Tensor::f_cat(&slices, d)?, plane.shift)
        };
    let compute = || -> std::result::Result<Tensor, tch::TchError> {
        let mut data = unpack_plane(&shards[0], planes[0])?;
        for (shard, &plane) in shards.iter().zip(&planes).skip(1) {
            data = data.f_bitwise_or_tensor(&unpack_plane(shard, plane)?)?;
        }
        Ok(data)
    };
    compute().op(OP)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(t: &Tensor) -> Vec<u8> {
        Vec::<u8>::try_from(t.flatten(0, -1)).unwrap()
    }

    #[test]
    fn shard_widths_follow_torchao() {
        let widths = |n| {
            planes("t", n)
                .unwrap()
                .iter()
                .map(|p| (p.width, p.shift))
                .collect::<Vec<_>>()
        };
        assert_eq!(widths(1), [(1, 0)]);
        assert_eq!(widths(2), [(2, 0)]);
        assert_eq!(widths(3), [(2, 0), (1, 2)]);
        assert_eq!(widths(4), [(4, 0)]);
        assert_eq!(widths(5), [(4, 0), (1, 4)]);
        assert_eq!(widths(6), [(4, 0), (2, 4)]);
        assert_eq!(widths(7), [(4, 0), (2, 4), (1, 6)]);
    }

    #[test]
    fn torchao_docstring_example() {
        // The uint6 example of torchao's pack_cpu docstring.
        let data = Tensor::from_slice(&[0x30u8, 0x29, 0x17, 0x5, 0x20, 0x16, 0x9, 0x22]);
        let shards = pack_uintx(&data, 6, -1).unwrap();
        assert_eq!(bytes(&shards[0]), [0, 105, 151, 37]);
        assert_eq!(bytes(&shards[1]), [39, 146]);
        assert!(unpack_uintx(&shards, 6, -1).unwrap().equal(&data));
    }

    #[test]
    fn one_bit_planes() {
        let data =
            Tensor::from_slice(&[1u8, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]).view([2, 8]);
        // Along dim 0: byte j holds data[0][j] in bit 0 and data[1][j] in bit 1.
        let packed = pack_uintx(&data.view([8, 2]), 1, 0).unwrap();
        assert_eq!(packed[0].size(), [1, 2]);
        let along_last = pack_uintx(&data, 1, 1).unwrap();
        assert_eq!(bytes(&along_last[0]), [0x81, 0x02]);
        assert!(unpack_uintx(&packed, 1, 0)
            .unwrap()
            .equal(&data.view([8, 2])));
    }

    #[test]
    fn round_trip_every_width_and_dim() {
        for nbits in 1..=7u32 {
            let data = Tensor::randint(1 << nbits, [3, 16, 8], (Kind::Uint8, Device::Cpu));
            for dim in [-3i64, -2, -1, 1, 2] {
                if data.size()[normalize_dim("t", dim, 3).unwrap()] % 8 != 0 {
                    continue;
                }
                let shards = pack_uintx(&data, nbits, dim).unwrap();
                let bytes_total: i64 = shards.iter().map(|s| s.numel() as i64).sum();
                assert_eq!(bytes_total, data.numel() as i64 * nbits as i64 / 8);
                assert!(
                    unpack_uintx(&shards, nbits, dim).unwrap().equal(&data),
                    "nbits {nbits} dim {dim}"
                );
            }
        }
    }

    /// The one-pass CPU packing gives libtorch's op sequence's bytes, for
    /// seeded random codes of every width, along every dim, on shapes whose
    /// rows are not a multiple of the 8-byte words (so the tails run), and
    /// on a view with a storage offset; a code above the range is refused
    /// by both, wherever it lies.
    #[test]
    fn one_pass_packing_matches_the_op_sequence() {
        tch::manual_seed(14);
        let shapes: [&[i64]; 7] = [
            &[8],
            &[40],
            &[3, 24],
            &[5, 8, 3],
            &[7, 136],
            &[2, 3, 64, 5],
            &[33, 4104],
        ];
        for nbits in 1..=7u32 {
            let planes = planes("t", nbits).unwrap();
            for shape in shapes {
                let data = Tensor::randint(1 << nbits, shape, (Kind::Uint8, Device::Cpu));
                for d in 0..shape.len() {
                    if shape[d] % 8 != 0 {
                        continue;
                    }
                    let fast = pack_uintx(&data, nbits, d as i64).unwrap();
                    let slow = pack_torch(&data, nbits, &planes, d).unwrap();
                    assert_eq!(fast.len(), slow.len());
                    for (f, s) in fast.iter().zip(&slow) {
                        assert_eq!(f.size(), s.size(), "nbits {nbits} {shape:?} dim {d}");
                        assert_eq!(bytes(f), bytes(s), "nbits {nbits} {shape:?} dim {d}");
                    }
                    let mut codes = bytes(&data);
                    let at = codes.len() * 5 / 7;
                    codes[at] |= (1u16 << nbits) as u8;
                    let bad = Tensor::from_slice(&codes).view(shape);
                    for result in [
                        pack_uintx(&bad, nbits, d as i64),
                        pack_torch(&bad, nbits, &planes, d),
                    ] {
                        assert!(matches!(
                            result,
                            Err(Error::InvalidArgument { arg: "data", .. })
                        ));
                    }
                }
            }
            // Rows 1.. of a tensor: a contiguous view that starts past the
            // storage's first byte.
            let base = Tensor::randint(1 << nbits, [4, 72], (Kind::Uint8, Device::Cpu));
            let view = base.narrow(0, 1, 3);
            let fast = pack_uintx(&view, nbits, -1).unwrap();
            let slow = pack_torch(&view, nbits, &planes, 1).unwrap();
            for (f, s) in fast.iter().zip(&slow) {
                assert_eq!(bytes(f), bytes(s), "nbits {nbits} offset view");
            }
        }
    }

    #[test]
    fn empty_lines_pack_to_empty_shards() {
        let data = Tensor::zeros([0, 8], (Kind::Uint8, Device::Cpu));
        let shards = pack_uintx(&data, 3, 1).unwrap();
        assert_eq!(shards[0].size(), [0, 2]);
        assert_eq!(unpack_uintx(&shards, 3, 1).unwrap().size(), [0, 8]);
    }

    #[test]
    fn refusals_are_errors() {
        let data = Tensor::zeros([2, 8], (Kind::Uint8, Device::Cpu));
        for nbits in [0, 8, u32::MAX] {
            assert!(matches!(
                pack_uintx(&data, nbits, -1),
                Err(Error::InvalidArgument { arg: "nbits", .. })
            ));
            assert!(matches!(
                unpack_uintx(&[data.shallow_clone()], nbits, -1),
                Err(Error::InvalidArgument { arg: "nbits", .. })
            ));
        }
        assert!(matches!(
            pack_uintx(&data.to_kind(Kind::Int8), 4, -1),
            Err(Error::UnsupportedKind { arg: "data", .. })
        ));
        assert!(matches!(
            pack_uintx(&data, 4, 0),
            Err(Error::ShapeMismatch { arg: "data", .. })
        ));
        assert!(matches!(
            pack_uintx(&data, 4, 2),
            Err(Error::InvalidArgument { arg: "dim", .. })
        ));
        assert!(matches!(
            pack_uintx(&data, 4, -3),
            Err(Error::InvalidArgument { arg: "dim", .. })
        ));
        assert!(matches!(
            pack_uintx(&Tensor::from(3u8), 4, 0),
            Err(Error::InvalidArgument { arg: "dim", .. })
        ));
        let big = Tensor::from_slice(&[16u8; 16]).view([2, 8]);
        assert!(matches!(
            pack_uintx(&big, 4, -1),
            Err(Error::InvalidArgument { arg: "data", .. })
        ));
        assert!(pack_uintx(&big, 5, -1).is_ok());

        let shards = pack_uintx(&data, 7, -1).unwrap();
        assert!(matches!(
            unpack_uintx(&shards[..2], 7, -1),
            Err(Error::InvalidArgument { arg: "shards", .. })
        ));
        assert!(matches!(
            unpack_uintx(&[], 1, -1),
            Err(Error::InvalidArgument { arg: "shards", .. })
        ));
        let swapped = [
            shards[1].shallow_clone(),
            shards[0].shallow_clone(),
            shards[2].shallow_clone(),
        ];
        assert!(matches!(
            unpack_uintx(&swapped, 7, -1),
            Err(Error::ShapeMismatch { arg: "shards", .. })
        ));
        assert!(matches!(
            unpack_uintx(&shards, 7, 0),
            Err(Error::ShapeMismatch { arg: "shards", .. })
        ));
        assert!(matches!(
            unpack_uintx(&shards, 7, 5),
            Err(Error::InvalidArgument { arg: "dim", .. })
        ));
        let odd = Tensor::zeros([2, 3], (Kind::Uint8, Device::Cpu));
        assert!(matches!(
            unpack_uintx(&[odd], 4, -1),
            Err(Error::ShapeMismatch { arg: "shards", .. })
        ));
        let ints = [
            shards[0].to_kind(Kind::Int8),
            shards[1].shallow_clone(),
            shards[2].shallow_clone(),
        ];
        assert!(matches!(
            unpack_uintx(&ints, 7, -1),
            Err(Error::UnsupportedKind { arg: "shards", .. })
        ));
        let other_rows = [
            shards[0].shallow_clone(),
            shards[1].shallow_clone(),
            shards[2].narrow(0, 0, 1),
        ];
        assert!(matches!(
            unpack_uintx(&other_rows, 7, -1),
            Err(Error::ShapeMismatch { arg: "shards", .. })
        ));
    }
}
