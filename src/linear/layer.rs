//! The quantized linear layer: a weight stored as its scheme stores it, an
//! optional bias, and a forward that issues torchao 0.11's op sequence for
//! `quantize_(nn.Linear, Config)` on torch 2.13, so outputs are the same
//! bits.
//!
//! The sequences (traced with `TorchDispatchMode`; `x2` is `x.reshape(-1,
//! K)`, `lead` the input's leading dims):
//!
//! | scheme | forward |
//! | --- | --- |
//! | int8 weight-only | `y = mm(x2, w.t().to(dtype)) * scale`, `y.reshape(lead, N)`, `y += bias` |
//! | int4 CPU | `y = _weight_int4pack_mm_for_cpu(x2.contiguous(), packed, g, scale_and_zero)`, reshape, `y += bias` |
//! | int4 tensor-core tiled | `x2` to bfloat16 and padded, `_weight_int4pack_mm`, padding cut, reshape, `y += bias`, `y.to(dtype)` |
//! | float8, uintX | `linear(x, dequantize(w), bias)` (dequantized at every call) |
//! | int8 dynamic | see [`dynamic`](super::dynamic) |

use tch::{nn, Device, Kind, Tensor};

use crate::dtype::{is_input_float, kind_name};
use crate::error::{Error, Result, TorchContext};
use crate::quantized::AffineQuantizedTensor;
use crate::strided::check_strided;

use super::dynamic::int8_dynamic_linear;
use super::layout::{nbytes, Int4CpuWeight, Int8Weight, TensorCoreTiledWeight};
use super::scheme::LinearScheme;

/// What the layer keeps of its weight.
#[derive(Debug)]
enum Stored {
    /// Int8 weight-only and int8 dynamic.
    Int8(Int8Weight),
    Int4Cpu(Int4CpuWeight),
    Int4TensorCoreTiled(TensorCoreTiledWeight),
    /// Float8 and uintX: dequantized at every call, as torchao does.
    Dequantized(AffineQuantizedTensor),
}

/// A linear layer whose weight is quantized with a [`LinearScheme`]: the
/// drop-in replacement for `tch::nn::Linear` that computes what torchao
/// 0.11's `quantize_(nn.Linear, Config)` computes, bit for bit.
///
/// It implements [`tch::nn::Module`]; [`Module::forward`](nn::Module::forward)
/// panics on an input it cannot take (as `nn::Linear`'s does), and
/// [`f_forward`](Self::f_forward) returns the typed error instead.
///
/// # Examples
/// ```
/// use tch::{nn, nn::Module, Device, Kind, Tensor};
/// use tch_quant::{LinearScheme, QuantizedLinear};
/// let vs = nn::VarStore::new(Device::Cpu);
/// let dense = nn::linear(vs.root() / "fc", 256, 64, Default::default());
/// let q = QuantizedLinear::from_linear(&dense, LinearScheme::Int8WeightOnly)?;
/// let x = Tensor::randn([2, 5, 256], (Kind::Float, Device::Cpu));
/// let y = q.forward(&x);
/// assert_eq!(y.size(), vec![2, 5, 64]);
/// assert!(q.f_forward(&Tensor::randn([2, 255], (Kind::Float, Device::Cpu))).is_err());
/// assert!(q.weight_nbytes() * 3 < 256 * 64 * 4);
/// # Ok::<(), tch_quant::Error>(())
/// ```
#[derive(Debug)]
pub struct QuantizedLinear {
    scheme: LinearScheme,
    stored: Stored,
    bias: Option<Tensor>,
    in_features: i64,
    out_features: i64,
    dtype: Kind,
    device: Device,
}

impl QuantizedLinear {
    /// Quantizes `weight` (`[out_features, in_features]`, float32, float16
    /// or bfloat16) with `scheme`, keeping `bias` (`[out_features]`, same
    /// dtype and device) as it is. Runs on the weight's device.
    ///
    /// # Errors
    /// The scheme's own arguments; a weight the scheme does not take
    /// ([`LinearScheme::check`]: torchao would leave such a layer dense); a
    /// bias of another shape, dtype or device.
    pub fn new(weight: &Tensor, bias: Option<&Tensor>, scheme: LinearScheme) -> Result<Self> {
        const OP: &str = "QuantizedLinear::new";
        scheme.validate()?;
        check_strided(OP, "weight", weight)?;
        let weight = weight.f_detach().op(OP)?;
        let (shape, dtype, device) = (weight.size(), weight.kind(), weight.device());
        if !is_input_float(dtype) {
            return Err(Error::UnsupportedKind {
                op: OP,
                arg: "weight",
                expected: "float32, float16 or bfloat16",
                got: dtype,
            });
        }
        scheme.refuse_unfit(OP, &weight)?;
        let (out_features, in_features) = (shape[0], shape[1]);
        let bias = match bias {
            Some(b) => Some(check_bias(OP, b, out_features, dtype, device)?),
            None => None,
        };
        let recipe = scheme.weight_recipe(dtype);
        let stored = match scheme {
            LinearScheme::Int8WeightOnly | LinearScheme::Int8DynamicActivationInt8Weight => {
                let q = AffineQuantizedTensor::quantize(&weight, &recipe)?;
                Stored::Int8(Int8Weight::from_quantized(&q)?)
            }
            LinearScheme::Int4Cpu { .. } => {
                let q = AffineQuantizedTensor::quantize(&weight, &recipe)?;
                Stored::Int4Cpu(Int4CpuWeight::from_quantized(&q)?)
            }
            LinearScheme::Int4TensorCoreTiled {
                group_size,
                inner_k_tiles,
            } => Stored::Int4TensorCoreTiled(TensorCoreTiledWeight::quantize(
                &weight,
                group_size,
                inner_k_tiles,
            )?),
            LinearScheme::Float8WeightOnly | LinearScheme::UIntXWeightOnly { .. } => {
                Stored::Dequantized(AffineQuantizedTensor::quantize(&weight, &recipe)?)
            }
        };
        Ok(QuantizedLinear {
            scheme,
            stored,
            bias,
            in_features,
            out_features,
            dtype,
            device,
        })
    }

    /// The same layer sharing this one's tensors (as `Tensor::shallow_clone`).
    pub fn shallow_clone(&self) -> Self {
        let stored = match &self.stored {
            Stored::Int8(w) => Stored::Int8(w.shallow_clone()),
            Stored::Int4Cpu(w) => Stored::Int4Cpu(w.shallow_clone()),
            Stored::Int4TensorCoreTiled(w) => Stored::Int4TensorCoreTiled(w.shallow_clone()),
            Stored::Dequantized(q) => Stored::Dequantized(q.shallow_clone()),
        };
        QuantizedLinear {
            scheme: self.scheme,
            stored,
            bias: self.bias.as_ref().map(Tensor::shallow_clone),
            in_features: self.in_features,
            out_features: self.out_features,
            dtype: self.dtype,
            device: self.device,
        }
    }

    /// [`new`](Self::new) over a dense layer's weight and bias.
    pub fn from_linear(linear: &nn::Linear, scheme: LinearScheme) -> Result<Self> {
        QuantizedLinear::new(&linear.ws, linear.bs.as_ref(), scheme)
    }

    /// The layer applied to `input` (`[.., in_features]`, of the weight's
    /// dtype and device): `[.., out_features]`.
    ///
    /// # Errors
    /// An input of another last dim, dtype or device, or of rank 0.
    pub fn f_forward(&self, input: &Tensor) -> Result<Tensor> {
        const OP: &str = "QuantizedLinear::forward";
        self.check_input(OP, input)?;
        let shape = input.size();
        let mut out_shape = shape[..shape.len() - 1].to_vec();
        out_shape.push(self.out_features);
        let k = self.in_features;
        let bias = self.bias.as_ref();
        match &self.stored {
            Stored::Int8(w) if self.scheme == LinearScheme::Int8DynamicActivationInt8Weight => {
                int8_dynamic_linear(input, w, bias, &out_shape)
            }
            Stored::Int8(w) => {
                let wt = dense_transposed(OP, w.codes(), self.dtype)?;
                let m = input.f_reshape([-1, k]).and_then(|x| x.f_mm(&wt)).op(OP)?;
                let scale = w.scale().f_to_kind(m.kind()).op(OP)?;
                let y = m
                    .f_mul(&scale)
                    .and_then(|y| y.f_reshape(out_shape.as_slice()))
                    .op(OP)?;
                add_bias(OP, y, bias)
            }
            Stored::Int4Cpu(w) => {
                let y = w
                    .matmul(&input.f_reshape([-1, k]).op(OP)?)?
                    .f_reshape(out_shape.as_slice())
                    .op(OP)?;
                add_bias(OP, y, bias)
            }
            Stored::Int4TensorCoreTiled(w) => {
                let y = w
                    .matmul(&input.f_reshape([-1, k]).op(OP)?)?
                    .f_reshape(out_shape.as_slice())
                    .op(OP)?;
                add_bias(OP, y, bias)?.f_to_kind(self.dtype).op(OP)
            }
            Stored::Dequantized(q) => {
                let w = match float8_weight(OP, q, self.dtype)? {
                    Some(w) => w,
                    None => q.dequantize()?,
                };
                input.f_linear(&w, bias).op(OP)
            }
        }
    }

    fn check_input(&self, op: &'static str, input: &Tensor) -> Result<()> {
        check_strided(op, "input", input)?;
        let shape = input.size();
        if shape.last() != Some(&self.in_features) {
            return Err(Error::ShapeMismatch {
                op,
                arg: "input",
                got: shape,
                reason: format!(
                    "expected [.., {}] (the layer's in_features)",
                    self.in_features
                ),
            });
        }
        if input.kind() != self.dtype {
            return Err(Error::UnsupportedKind {
                op,
                arg: "input",
                expected: kind_name(self.dtype),
                got: input.kind(),
            });
        }
        if input.device() != self.device {
            return Err(Error::invalid(
                op,
                "input",
                format!("a tensor on {:?}", input.device()),
                format!("the layer's weight is on {:?}", self.device),
            ));
        }
        Ok(())
    }

    /// The scheme.
    pub fn scheme(&self) -> LinearScheme {
        self.scheme
    }

    /// Input features (`K`).
    pub fn in_features(&self) -> i64 {
        self.in_features
    }

    /// Output features (`N`).
    pub fn out_features(&self) -> i64 {
        self.out_features
    }

    /// The dtype of the weight it was built from, which inputs and outputs
    /// have.
    pub fn dtype(&self) -> Kind {
        self.dtype
    }

    /// The device it lives on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The bias, as given.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Bytes stored for the weight: codes, scales, zero points, packing (not
    /// the bias).
    pub fn weight_nbytes(&self) -> usize {
        match &self.stored {
            Stored::Int8(w) => w.nbytes(),
            Stored::Int4Cpu(w) => w.nbytes(),
            Stored::Int4TensorCoreTiled(w) => w.nbytes(),
            Stored::Dequantized(q) => q.nbytes(),
        }
    }

    /// The int4 CPU packing, for [`LinearScheme::Int4Cpu`].
    pub fn int4_cpu_weight(&self) -> Option<&Int4CpuWeight> {
        match &self.stored {
            Stored::Int4Cpu(w) => Some(w),
            _ => None,
        }
    }

    /// The tensor-core tiled packing, for [`LinearScheme::Int4TensorCoreTiled`].
    pub fn tensor_core_tiled_weight(&self) -> Option<&TensorCoreTiledWeight> {
        match &self.stored {
            Stored::Int4TensorCoreTiled(w) => Some(w),
            _ => None,
        }
    }

    /// The int8 codes and scales, for the int8 schemes.
    pub fn int8_weight(&self) -> Option<&Int8Weight> {
        match &self.stored {
            Stored::Int8(w) => Some(w),
            _ => None,
        }
    }

    /// The quantized weight, for the float8 and uintX schemes.
    pub fn quantized_weight(&self) -> Option<&AffineQuantizedTensor> {
        match &self.stored {
            Stored::Dequantized(q) => Some(q),
            _ => None,
        }
    }

    /// Bytes of the bias.
    pub fn bias_nbytes(&self) -> usize {
        self.bias.as_ref().map_or(0, nbytes)
    }
}

impl nn::Module for QuantizedLinear {
    /// [`f_forward`](QuantizedLinear::f_forward), panicking with its error's
    /// message.
    fn forward(&self, xs: &Tensor) -> Tensor {
        match self.f_forward(xs) {
            Ok(y) => y,
            Err(e) => panic!("{e}"),
        }
    }
}

/// At least this many bytes of int8 weight cast per call are advised huge
/// pages: glibc maps an allocation this large freshly every time, and on
/// the machine of README's table a 4096x4096 bfloat16 cast took 6-10 ms
/// advised against 16-18 ms faulting 4 KiB pages (12-15 ms of which the
/// cast alone, in a fresh process, for torchao as for the crate).
const ADVISE_CAST_BYTES: usize = 32 << 20;

/// `codes.t().to(kind)` as torchao computes it for its `mm` (a `[K, N]`
/// tensor with strides `(1, K)`: `_to_copy` keeps the transposed view's
/// strides), written into a fresh `[N, K]` buffer advised huge pages when
/// large: the same values (every int8 is exact in each float dtype) in the
/// same layout, so `mm` reads the same tensor.
fn dense_transposed(op: &'static str, codes: &Tensor, kind: Kind) -> Result<Tensor> {
    let size = codes.size();
    let mut buf = Tensor::f_empty(size.as_slice(), (kind, codes.device())).op(op)?;
    if buf.numel() * kind.elt_size_in_bytes() >= ADVISE_CAST_BYTES {
        crate::fused::advise_huge_pages(&buf);
    }
    buf.f_copy_(codes).op(op)?;
    buf.f_tr().op(op)
}

/// A float8 per-row weight dequantized as torchao's `Float8AQTTensorImpl`
/// does at every call, `float8_data.to(dtype) * scale.view(N, 1)`, with
/// the same values computed into one fresh buffer (advised huge pages when
/// large) instead of two: the cast is exact (every float8_e4m3fn value is a
/// float32, float16 and bfloat16 value), and an in-place multiply rounds each
/// element as the out-of-place one does when scale and weight share a dtype.
/// `None` for any other weight, which [`AffineQuantizedTensor::dequantize`]
/// takes.
fn float8_weight(
    op: &'static str,
    q: &AffineQuantizedTensor,
    kind: Kind,
) -> Result<Option<Tensor>> {
    let [codes] = q.qdata() else {
        return Ok(None);
    };
    let per_row = matches!((q.shape(), q.block_size()), (&[_, k], &[1, b]) if k == b);
    if !q.target_dtype().is_float8() || !per_row || q.scale().kind() != kind {
        return Ok(None);
    }
    let mut w = Tensor::f_empty(q.shape(), (kind, codes.device())).op(op)?;
    if w.numel() * kind.elt_size_in_bytes() >= ADVISE_CAST_BYTES {
        crate::fused::advise_huge_pages(&w);
    }
    w.f_copy_(codes).op(op)?;
    let scale = q.scale().f_reshape([-1, 1]).op(op)?;
    let _scaled = w.f_mul_(&scale).op(op)?;
    Ok(Some(w))
}

/// `y += bias` (torchao adds the bias in place, in `y`'s dtype).
pub(crate) fn add_bias(op: &'static str, mut y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    if let Some(b) = bias {
        let _sum = y.f_add_(b).op(op)?;
    }
    Ok(y)
}

/// A bias of `[n]`, dtype `kind`, on `device`, detached.
fn check_bias(op: &'static str, b: &Tensor, n: i64, kind: Kind, device: Device) -> Result<Tensor> {
    check_strided(op, "bias", b)?;
    if b.size() != [n] {
        return Err(Error::ShapeMismatch {
            op,
            arg: "bias",
            got: b.size(),
            reason: format!("expected [{n}] (the weight's out_features)"),
        });
    }
    if b.kind() != kind {
        return Err(Error::UnsupportedKind {
            op,
            arg: "bias",
            expected: kind_name(kind),
            got: b.kind(),
        });
    }
    if b.device() != device {
        return Err(Error::invalid(
            op,
            "bias",
            format!("a tensor on {:?}", b.device()),
            format!("the weight is on {device:?}"),
        ));
    }
    b.f_detach().op(op)
}
