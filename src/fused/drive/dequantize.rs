//! The fused `dequantize_affine`: one pass over the codes, plain or packed
//! sub-byte shards unpacked on the fly, with the qparams it was given.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

use tch::{Kind, Tensor};

use crate::block::BlockLayout;
use crate::error::{Result, TorchContext};
use crate::fused::dequantize::{
    dequantize_kept, dequantize_kept_packed, dequantize_reduced, dequantize_reduced_packed,
    nan_free, Blocks, Code, DeqKinds, FloatFormula, Formula, IntFormula, IntOutFormula, OutElem,
    Packed, Plane, CHUNK,
};
use crate::fused::gate;
use crate::fused::layout::{Batch, Folded, Walk};
use crate::fused::quantize::round_slice;
use crate::fused::threads::{for_each_tile, jobs, parallel, threads_for};
use crate::fused::view::{
    advise_fresh, bytes_view, codes_view, empty, into_view, is_dense_cpu, out_view, values_view,
    Codes, Out, Values,
};
use crate::mapping::ZeroPointDomain;
use crate::semantics::Semantics;

/// The codes to dequantize.
pub(crate) enum CodesArg<'a> {
    /// One code per element, in a storage dtype.
    Plain(&'a Tensor),
    /// `uint8` shards of codes packed along the last dim, one per bit plane,
    /// with the plane's `(width, shift)` (see `bitpacking.rs`).
    Packed {
        shards: &'a [Tensor],
        planes: &'a [(u32, u32)],
    },
}

/// What [`dequantize()`] needs besides the codes: validated by
/// `dequantize_affine` (scale and zero point already viewed per block).
pub(crate) struct DequantizeArgs<'a> {
    pub scale: &'a Tensor,
    pub zero_point: Option<&'a Tensor>,
    pub quant_min: f64,
    pub quant_max: f64,
    pub domain: ZeroPointDomain,
    /// The release whose Int-domain formula applies.
    pub semantics: Semantics,
    pub output: Kind,
}

/// Fused `dequantize_affine` of codes of `shape` into a fresh tensor;
/// `Ok(None)` where the reference path runs (see [`nan_free`] for the NaN
/// cases it leaves).
pub(crate) fn dequantize(
    op: &'static str,
    codes: CodesArg,
    shape: &[i64],
    layout: &BlockLayout,
    args: &DequantizeArgs,
) -> Result<Option<Tensor>> {
    let done = covered(op, codes, shape, layout, args, |pass, source, _| {
        let mut out = empty(op, shape, args.output)?;
        advise_fresh(&out);
        let Some(view) = out_view(&mut out) else {
            return Ok(None);
        };
        Ok(dispatch_dequantize(pass, source, view).then_some(out))
    })?;
    Ok(done.flatten())
}

/// [`dequantize()`] into `out`, a tensor of `shape` and dtype `args.output`
/// that the caller has checked; `Ok(false)` where the reference path runs
/// (`out` may then hold some values already). `out` must share no memory
/// with the codes or qparams, or the call is not covered.
pub(crate) fn dequantize_into(
    op: &'static str,
    codes: CodesArg,
    shape: &[i64],
    layout: &BlockLayout,
    args: &DequantizeArgs,
    out: &mut Tensor,
) -> Result<bool> {
    if out.size() != shape || out.kind() != args.output {
        return Ok(false);
    }
    let done = covered(op, codes, shape, layout, args, |pass, source, reads| {
        let Some(view) = into_view(out, reads) else {
            return Ok(false);
        };
        Ok(dispatch_dequantize(pass, source, view))
    })?;
    Ok(done == Some(true))
}

/// Runs `run` with the pass and the codes of a call the fused path covers,
/// and the tensors the pass reads; `Ok(None)` when it does not cover it.
fn covered<R>(
    op: &'static str,
    codes: CodesArg,
    shape: &[i64],
    layout: &BlockLayout,
    args: &DequantizeArgs,
    run: impl FnOnce(&Pass, &Source, &[&Tensor]) -> Result<R>,
) -> Result<Option<R>> {
    crate::threading::check_settings(op)?;
    let params = [Some(args.scale), args.zero_point];
    if params.iter().flatten().any(|t| !is_dense_cpu(t)) {
        return Ok(None);
    }
    let Some(kinds) = gate::dequantize(
        args.domain,
        args.semantics,
        args.output,
        args.scale.kind(),
        args.zero_point.map(Tensor::kind),
        args.quant_min,
        args.quant_max,
    ) else {
        return Ok(None);
    };
    let Some(walk) = gate::walk(layout) else {
        return Ok(None);
    };
    let (source, mut reads): (Source, Vec<&Tensor>) = match codes {
        CodesArg::Plain(t) => match codes_view(t) {
            Some(c) if t.size() == shape => (Source::Plain(c), vec![t]),
            _ => return Ok(None),
        },
        CodesArg::Packed { shards, planes } => match packed_view(shards, planes, shape) {
            Some(p) => (Source::Packed(p), shards.iter().collect()),
            None => return Ok(None),
        },
    };
    let scale = args.scale.f_contiguous().op(op)?;
    let zero_point = match args.zero_point {
        Some(z) => Some(z.f_contiguous().op(op)?),
        None => None,
    };
    let Some(scale_view) = values_view(&scale) else {
        return Ok(None);
    };
    let zp = match zero_point.as_ref() {
        Some(z) => match values_view(z) {
            Some(v) => Some(v),
            None => return Ok(None),
        },
        None => None,
    };
    reads.push(&scale);
    reads.extend(zero_point.as_ref());
    let pass = Pass {
        walk: &walk,
        kinds: &kinds,
        scale: &scale_view,
        zp: zp.as_ref(),
    };
    run(&pass, &source, &reads).map(Some)
}

/// The codes as the kernels read them.
enum Source<'a> {
    Plain(Codes<'a>),
    Packed(Packed<'a>),
}

/// The shards as one [`Packed`], if each is a dense, contiguous CPU `uint8`
/// tensor of the shape that codes of `shape` pack to along the last dim.
fn packed_view<'a>(
    shards: &'a [Tensor],
    planes: &[(u32, u32)],
    shape: &[i64],
) -> Option<Packed<'a>> {
    let (&line, rows) = shape.split_last()?;
    if shards.len() != planes.len() || line <= 0 || line % 8 != 0 {
        return None;
    }
    let planes = shards
        .iter()
        .zip(planes)
        .map(|(shard, &(width, shift))| {
            let mut expected = rows.to_vec();
            expected.push(line * width as i64 / 8);
            let ok = matches!(width, 1 | 2 | 4) && shard.size() == expected;
            let bytes = bytes_view(shard).filter(|_| ok)?;
            Some(Plane {
                bytes,
                width,
                shift,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Packed {
        planes,
        line: line as usize,
    })
}

/// The fixed arguments of a dequantize pass.
struct Pass<'a, 'b> {
    walk: &'b Walk,
    kinds: &'b DeqKinds,
    scale: &'b Values<'a>,
    zp: Option<&'b Values<'a>>,
}

/// Runs the pass for the code, output and formula types of the call;
/// `false` when a block could give NaN (the outputs are then unfinished).
fn dispatch_dequantize(pass: &Pass, source: &Source, out: Out) -> bool {
    macro_rules! by_source {
        ($O:ty, $F:ty, $out:expr) => {
            match source {
                Source::Plain(Codes::U8(c)) => plain_pass::<u8, $O, $F>(pass, c, $out),
                Source::Plain(Codes::I8(c)) => plain_pass::<i8, $O, $F>(pass, c, $out),
                Source::Plain(Codes::I16(c)) => plain_pass::<i16, $O, $F>(pass, c, $out),
                Source::Plain(Codes::I32(c)) => plain_pass::<i32, $O, $F>(pass, c, $out),
                Source::Packed(p) => packed_pass::<$O, $F>(pass, p, $out),
            }
        };
    }
    macro_rules! by_out {
        ($F:ty) => {
            match out {
                Out::F32(o) => by_source!(f32, $F, o),
                Out::Bf16(o) => by_source!(half::bf16, $F, o),
                Out::F16(o) => by_source!(half::f16, $F, o),
                _ => false,
            }
        };
    }
    if pass.kinds.domain == ZeroPointDomain::Float {
        by_out!(FloatFormula)
    } else if pass.kinds.int_in_output {
        by_out!(IntOutFormula)
    } else {
        by_out!(IntFormula)
    }
}

fn plain_pass<C: Code, O: OutElem, F: Formula>(
    pass: &Pass,
    codes: &[C],
    out: &mut [MaybeUninit<O>],
) -> bool {
    let reduced = pass.walk.run().reduced;
    run_pass(pass, C::RANGE, out, |folded, k, out, _| {
        let codes = &codes[folded.batch.elem..];
        if reduced {
            dequantize_reduced::<C, O, F>(codes, folded, k, out);
        } else {
            unfold(folded, |batch, at| {
                dequantize_kept::<C, O, F>(&codes[at..], batch, k, &mut out[at..]);
            });
        }
    })
}

fn packed_pass<O: OutElem, F: Formula>(
    pass: &Pass,
    packed: &Packed,
    out: &mut [MaybeUninit<O>],
) -> bool {
    let reduced = pass.walk.run().reduced;
    run_pass(
        pass,
        (0, packed.max_code()),
        out,
        |folded, k, out, scratch| {
            unfold(folded, |batch, at| {
                let out = &mut out[at..];
                if reduced {
                    dequantize_reduced_packed::<O, F>(packed, batch, k, scratch, out);
                } else {
                    dequantize_kept_packed::<O, F>(packed, batch, k, scratch, out);
                }
            });
        },
    )
}

/// `f(batch, at)` for each copy of the folded batch, `at` elements after
/// the first copy's first element.
#[inline(always)]
fn unfold(folded: Folded, mut f: impl FnMut(Batch, usize)) {
    for o in 0..folded.outer {
        let at = o * folded.outer_stride;
        let elem = folded.batch.elem + at;
        f(
            Batch {
                elem,
                ..folded.batch
            },
            at,
        );
    }
}

/// Every element's value into `out`, with jobs along the walk's outermost
/// dim and tiles along its first kept dim (`kernel` gets each folded batch
/// (see [`Walk::for_each_folded`]), its
/// blocks' constants, the outputs from the batch's first element on and a
/// scratch of [`CHUNK`] codes): each tile's qparams are read and
/// checked ([`nan_free`]) before `kernel` runs on its batches. `false`, with
/// the pass stopped, when a tile fails the check.
fn run_pass<O: OutElem>(
    pass: &Pass,
    codes: (i64, i64),
    out: &mut [MaybeUninit<O>],
    kernel: impl Fn(Folded, Blocks, &mut [MaybeUninit<O>], &mut [u8]) + Sync,
) -> bool {
    let walk = pass.walk;
    let d0 = walk.dims[0];
    let jobs = jobs(d0.size, threads_for(walk.numel), out, |o, n| {
        o.split_at_mut(n * d0.elem_stride)
    });
    let nan = AtomicBool::new(false);
    parallel(jobs, |(r, out)| {
        let elem0 = r.start * d0.elem_stride;
        let mut ranges = walk.full();
        ranges[0] = r;
        let (mut zp_int, mut scratch) = (Vec::new(), vec![0u8; CHUNK]);
        for_each_tile(
            walk,
            ranges,
            walk.first_kept(),
            None,
            |ranges, block0, tile| {
                if nan.load(Ordering::Relaxed) {
                    return false;
                }
                let n = tile.scale.len();
                zp_int.resize(n, 0);
                pass.constants(block0, tile.scale, tile.zp, &mut zp_int);
                let blocks = Blocks {
                    scale: tile.scale,
                    zp_int: &zp_int,
                    zp: tile.zp,
                    mid: pass.kinds.mid,
                };
                if !nan_free(pass.kinds, blocks, n, codes) {
                    nan.store(true, Ordering::Relaxed);
                    return false;
                }
                walk.for_each_folded(ranges, &mut |folded| {
                    let k = blocks.from(folded.batch.block - block0);
                    let out = &mut out[folded.batch.elem - elem0..];
                    kernel(folded, k, out, &mut scratch);
                });
                true
            },
        );
    });
    !nan.load(Ordering::Relaxed)
}

impl Pass<'_, '_> {
    /// The constants of blocks `block0..block0 + scale.len()`: the scale,
    /// and the zero point as its domain reads it (see [`Blocks`]).
    fn constants(&self, block0: usize, scale: &mut [f32], zp: &mut [f32], zp_int: &mut [i32]) {
        self.scale.read(block0, scale);
        match (self.kinds.domain, self.zp) {
            (ZeroPointDomain::Int, Some(z)) if self.kinds.int_in_output => {
                z.read(block0, zp);
                round_slice(self.kinds.output, zp);
            }
            (ZeroPointDomain::Int, Some(z)) => z.read_int32(block0, zp_int),
            (ZeroPointDomain::Float, Some(z)) => {
                z.read(block0, zp);
                if self.kinds.int_zero_point {
                    round_slice(self.kinds.output, zp);
                }
            }
            _ => zp_int.fill(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use tch::{Kind, Tensor};

    use super::*;

    fn run(
        codes: CodesArg,
        shape: &[i64],
        scale: &Tensor,
        zp: Option<&Tensor>,
        output: Kind,
    ) -> Option<Tensor> {
        let layout = BlockLayout::new("t", &[1, 4], shape).unwrap();
        let per_block = &layout.shape_after_reduction;
        let zp = zp.map(|z| z.reshape(per_block));
        let args = DequantizeArgs {
            scale: &scale.reshape(per_block),
            zero_point: zp.as_ref(),
            quant_min: 0.0,
            quant_max: 15.0,
            domain: match zp {
                Some(_) => ZeroPointDomain::Int,
                None => ZeroPointDomain::None,
            },
            semantics: Semantics::Torchao0_11,
            output,
        };
        dequantize("t", codes, shape, &layout, &args).unwrap()
    }

    #[test]
    fn covers_plain_and_packed_codes_and_leaves_nan_to_the_reference() {
        let codes = Tensor::from_slice(&[0u8, 8, 15, 1, 2, 3, 4, 5]).view([2, 4]);
        let scale = Tensor::from_slice(&[0.5f32, 2.0]);
        let zp = Tensor::from_slice(&[8i32, 0]);
        let x = run(
            CodesArg::Plain(&codes),
            &[2, 4],
            &scale,
            Some(&zp),
            Kind::Float,
        )
        .unwrap();
        let want = [-4.0f32, 0.0, 3.5, -3.5, 4.0, 6.0, 8.0, 10.0];
        assert_eq!(Vec::<f32>::try_from(x.view(-1)).unwrap(), want);
        // The same codes packed 4 bits to a byte along rows of 8.
        let shards = [Tensor::from_slice(&[0x20u8, 0x38, 0x4f, 0x51]).view([1, 4])];
        let layout = BlockLayout::new("t", &[1, 4], &[1, 8]).unwrap();
        let args = DequantizeArgs {
            scale: &scale.view([1, 2, 1]),
            zero_point: Some(&zp.view([1, 2, 1])),
            quant_min: 0.0,
            quant_max: 15.0,
            domain: ZeroPointDomain::Int,
            semantics: Semantics::Torchao0_11,
            output: Kind::Float,
        };
        let planes = [(4, 0)];
        let packed = CodesArg::Packed {
            shards: &shards,
            planes: &planes,
        };
        let x = dequantize("t", packed, &[1, 8], &layout, &args)
            .unwrap()
            .unwrap();
        assert_eq!(Vec::<f32>::try_from(x.view(-1)).unwrap(), want);
        // NaN scales, float64 scales and a zero scale where int32 codes
        // overflow float16 are left to the reference path.
        let nan = Tensor::from_slice(&[f32::NAN, 1.0]);
        assert!(run(CodesArg::Plain(&codes), &[2, 4], &nan, None, Kind::Float).is_none());
        let double = scale.to_kind(Kind::Double);
        assert!(run(CodesArg::Plain(&codes), &[2, 4], &double, None, Kind::Float).is_none());
        let wide = codes.to_kind(Kind::Int);
        let zero = Tensor::from_slice(&[0.0f32, 1.0]);
        assert!(run(CodesArg::Plain(&wide), &[2, 4], &zero, None, Kind::Half).is_none());
        assert!(run(CodesArg::Plain(&codes), &[2, 4], &zero, None, Kind::Half).is_some());
    }

    #[test]
    fn covers_the_0_18_int_domain_and_subtracts_in_the_output_dtype() {
        // In bfloat16 (integers above 256 in steps of 2): 0.11 computes
        // 383 - 1 = 382 in int32, exact; 0.18 rounds 383 to 384 first and
        // 384 - 1 = 383 back to 384.
        let codes = Tensor::from_slice(&[383i16, 257, 255, 0]).view([1, 4]);
        let layout = BlockLayout::new("t", &[1, 4], &[1, 4]).unwrap();
        let scale = Tensor::from_slice(&[1.0f32]).view([1, 1]);
        let zp = Tensor::from_slice(&[1i32]).view([1, 1]);
        let dequantize_with = |semantics, zero_point: Option<&Tensor>| {
            let args = DequantizeArgs {
                scale: &scale,
                zero_point,
                quant_min: -32768.0,
                quant_max: 32767.0,
                domain: ZeroPointDomain::Int,
                semantics,
                output: Kind::BFloat16,
            };
            dequantize("t", CodesArg::Plain(&codes), &[1, 4], &layout, &args)
                .unwrap()
                .expect("covered")
                .to_kind(Kind::Float)
        };
        let old = dequantize_with(Semantics::Torchao0_11, Some(&zp));
        let new = dequantize_with(Semantics::Torchao0_18, Some(&zp));
        assert_eq!(Vec::<f32>::try_from(old.view(-1)).unwrap()[0], 382.0);
        assert_eq!(Vec::<f32>::try_from(new.view(-1)).unwrap()[0], 384.0);
        // Without a zero point 0.18's Int domain is `q.to(O) * scale`.
        let plain = dequantize_with(Semantics::Torchao0_18, None);
        let want = [384.0f32, 256.0, 255.0, 0.0];
        assert_eq!(Vec::<f32>::try_from(plain.view(-1)).unwrap(), want);
    }
}
