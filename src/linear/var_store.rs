//! Swapping a model's linear layers between dense and quantized without
//! rewriting the model: the model is defined once over a [`LinearSource`],
//! which hands out dense layers (creating the variables, as
//! `tch::nn::linear` does) or the quantized layers of a `VarStore` already
//! loaded.
//!
//! ```
//! use tch::{nn, nn::Module, Device, Kind, Tensor};
//! use tch_quant::{quantize_linears, DenseLinears, Linear, LinearScheme, LinearSource,
//!                 Result, Selection};
//!
//! #[derive(Debug)]
//! struct Mlp { up: Linear, down: Linear }
//! impl Mlp {
//!     fn new(p: &nn::Path, linears: &dyn LinearSource) -> Result<Self> {
//!         Ok(Mlp { up: linears.linear(&(p / "up"), 64, 256)?,
//!                  down: linears.linear(&(p / "down"), 256, 64)? })
//!     }
//!     fn forward(&self, x: &Tensor) -> Tensor { self.down.forward(&self.up.forward(x).relu()) }
//! }
//!
//! let vs = nn::VarStore::new(Device::Cpu);
//! let dense = Mlp::new(&vs.root(), &DenseLinears(Default::default()))?;
//! // vs.load("model.safetensors")? would go here.
//! let q = quantize_linears(&vs, LinearScheme::Int8WeightOnly, &Selection::default())?;
//! assert_eq!(q.len(), 2);
//! let quantized = Mlp::new(&vs.root(), &q)?;
//! let x = Tensor::randn([3, 64], (Kind::Float, Device::Cpu));
//! assert_eq!(quantized.forward(&x).size(), dense.forward(&x).size());
//! # Ok::<(), tch_quant::Error>(())
//! ```

use std::collections::BTreeMap;
use tch::{nn, Tensor};

use crate::dtype::kind_name;
use crate::error::{Error, Result, TorchContext};
use crate::model::{Decision, Selection, SkipReason};
use crate::strided::check_strided;

use super::layer::QuantizedLinear;
use super::scheme::LinearScheme;

/// A linear layer, dense or quantized; implements [`nn::Module`].
#[derive(Debug)]
pub enum Linear {
    /// tch's own layer.
    Dense(nn::Linear),
    /// A quantized layer (sharing its tensors with the
    /// [`QuantizedLinears`] it came from).
    Quantized(QuantizedLinear),
}

impl Linear {
    /// The layer applied to `input`, with a typed error for an input it
    /// cannot take.
    pub fn f_forward(&self, input: &Tensor) -> Result<Tensor> {
        match self {
            Linear::Dense(l) => {
                const OP: &str = "Linear::forward";
                check_strided(OP, "input", input)?;
                let k = l.ws.size().get(1).copied();
                if input.size().last().copied() != k {
                    return Err(Error::ShapeMismatch {
                        op: OP,
                        arg: "input",
                        got: input.size(),
                        reason: format!(
                            "expected [.., {}] (the dense layer's in_features)",
                            k.unwrap_or(0)
                        ),
                    });
                }
                if input.kind() != l.ws.kind() {
                    return Err(Error::UnsupportedKind {
                        op: OP,
                        arg: "input",
                        expected: kind_name(l.ws.kind()),
                        got: input.kind(),
                    });
                }
                input.f_linear(&l.ws, l.bs.as_ref()).op(OP)
            }
            Linear::Quantized(q) => q.f_forward(input),
        }
    }

    /// The quantized layer, if it is one.
    pub fn quantized(&self) -> Option<&QuantizedLinear> {
        match self {
            Linear::Quantized(q) => Some(q),
            Linear::Dense(_) => None,
        }
    }
}

impl nn::Module for Linear {
    /// [`f_forward`](Linear::f_forward), panicking with its error's message.
    fn forward(&self, xs: &Tensor) -> Tensor {
        match self.f_forward(xs) {
            Ok(y) => y,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Where a model definition gets its linear layers.
pub trait LinearSource {
    /// The layer at `path` (`<path>.weight` `[out_dim, in_dim]`, and
    /// `<path>.bias` if it has one).
    fn linear(&self, path: &nn::Path, in_dim: i64, out_dim: i64) -> Result<Linear>;
}

/// Dense layers, created in the path's `VarStore` as
/// `tch::nn::linear(path, in_dim, out_dim, config)` creates them.
#[derive(Debug, Clone, Copy, Default)]
pub struct DenseLinears(pub nn::LinearConfig);

impl LinearSource for DenseLinears {
    fn linear(&self, path: &nn::Path, in_dim: i64, out_dim: i64) -> Result<Linear> {
        // `nn::linear` panics on non-positive sizes; refuse them first.
        for (arg, v) in [("in_dim", in_dim), ("out_dim", out_dim)] {
            if v < 1 {
                return Err(Error::invalid(
                    "DenseLinears::linear",
                    arg,
                    v,
                    "must be at least 1",
                ));
            }
        }
        Ok(Linear::Dense(nn::linear(path, in_dim, out_dim, self.0)))
    }
}

/// The quantized linear layers of a `VarStore`, by layer path (the weight's
/// name without `.weight`), made by [`quantize_linears`]; the other weights'
/// reasons in [`skipped`](Self::skipped).
///
/// As a [`LinearSource`] it gives the quantized layer where the weight was
/// quantized, and a dense layer elsewhere, over the variables of the store
/// the model is being built on or, when that store has none at the path (a
/// fresh one), over the weight and bias of the store `quantize_linears` read
/// (shared, not copied). It creates no variables.
///
/// Only linears come from the source: a model definition whose other parts
/// create variables (`nn::layer_norm`, `nn::embedding`) either looks them
/// up first when built a second time over the same store (`path.get(name)`,
/// as `examples/minilm/bert.rs` does; tch renames a variable created twice
/// to `name__N` and leaves it random), or is built over a fresh `VarStore`
/// and loaded: its linears create nothing, so `VarStore::load` fills exactly
/// the other parts.
#[derive(Debug, Default)]
pub struct QuantizedLinears {
    layers: BTreeMap<String, QuantizedLinear>,
    skipped: BTreeMap<String, SkipReason>,
    /// The 2-D weights left dense (and their biases), sharing the store's
    /// tensors, for a model built over another store.
    dense: BTreeMap<String, (Tensor, Option<Tensor>)>,
}

impl QuantizedLinears {
    /// The quantized layer at `path` (`encoder.layer.0.attention.self.query`).
    pub fn get(&self, path: &str) -> Option<&QuantizedLinear> {
        self.layers.get(path)
    }

    /// Number of quantized layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether no layer was quantized.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The quantized layers by path.
    pub fn layers(&self) -> impl Iterator<Item = (&str, &QuantizedLinear)> {
        self.layers.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Every weight left dense, by name, with the reason.
    pub fn skipped(&self) -> &BTreeMap<String, SkipReason> {
        &self.skipped
    }

    /// Bytes of the quantized layers' weights.
    pub fn weight_nbytes(&self) -> usize {
        self.layers.values().map(|l| l.weight_nbytes()).sum()
    }
}

impl LinearSource for QuantizedLinears {
    fn linear(&self, path: &nn::Path, in_dim: i64, out_dim: i64) -> Result<Linear> {
        const OP: &str = "QuantizedLinears::linear";
        let name = path.path("weight");
        let layer = name.strip_suffix(".weight").unwrap_or("").to_string();
        let check = |what: &str, got: (i64, i64)| {
            if got != (out_dim, in_dim) {
                return Err(Error::ShapeMismatch {
                    op: OP,
                    arg: "path",
                    got: vec![got.0, got.1],
                    reason: format!(
                        "{what} `{name}` is not [{out_dim}, {in_dim}] (out_dim, in_dim as asked)"
                    ),
                });
            }
            Ok(())
        };
        if let Some(q) = self.layers.get(&layer) {
            check("the quantized weight", (q.out_features(), q.in_features()))?;
            return Ok(Linear::Quantized(q.shallow_clone()));
        }
        let (ws, bs) = match (path.get("weight"), self.dense.get(&layer)) {
            (Some(ws), _) => (ws, path.get("bias")),
            (None, Some((ws, bs))) => (ws.shallow_clone(), bs.as_ref().map(Tensor::shallow_clone)),
            (None, None) => {
                return Err(Error::invalid(
                    OP,
                    "path",
                    format!("{layer:?}"),
                    "neither this store nor the one quantized has such a weight (define the \
                     model with DenseLinears and load it before quantize_linears)",
                ))
            }
        };
        let size = ws.size();
        check("the dense weight", (size[0], *size.get(1).unwrap_or(&0)))?;
        Ok(Linear::Dense(nn::Linear { ws, bs }))
    }
}

/// Quantizes every linear weight of `vs` that `selection` chooses with
/// `scheme`, each with its bias (`<layer>.bias`, if any), on the store's
/// device. A linear weight is a 2-D variable named `<layer>.weight`; the
/// selection's default rule leaves out embeddings, and the scheme's
/// [`check`](LinearScheme::check) the weights it does not take (recorded in
/// [`skipped`](QuantizedLinears::skipped), where torchao's `quantize_` would
/// leave them dense silently).
///
/// The dense variables stay in the store, untouched.
///
/// # Errors
/// The scheme's own arguments; a bias whose shape or dtype does not match
/// its weight; the first quantization that fails.
pub fn quantize_linears(
    vs: &nn::VarStore,
    scheme: LinearScheme,
    selection: &Selection,
) -> Result<QuantizedLinears> {
    scheme.validate()?;
    let variables: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let mut out = QuantizedLinears::default();
    for (name, w) in &variables {
        let Some(layer) = name.strip_suffix(".weight") else {
            continue;
        };
        let (shape, kind) = (w.size(), w.kind());
        let recipe = scheme.weight_recipe(kind);
        let bias = variables.get(&format!("{layer}.bias"));
        let skip = match selection.decide(name, kind, &shape, &recipe) {
            Decision::Skip(reason) => Some(reason),
            Decision::Quantize { .. } => scheme
                .check(&shape, kind, w.device())
                .map(SkipReason::Unfit),
        };
        if let Some(reason) = skip {
            if shape.len() == 2 {
                let shared = (w.shallow_clone(), bias.map(Tensor::shallow_clone));
                out.dense.insert(layer.to_string(), shared);
            }
            out.skipped.insert(name.clone(), reason);
            continue;
        }
        let q = QuantizedLinear::new(w, bias, scheme)?;
        out.layers.insert(layer.to_string(), q);
    }
    Ok(out)
}
