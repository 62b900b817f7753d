//! Quantizing a whole model: which of its named tensors a recipe applies to,
//! and the loop that quantizes them (from any `(name, tensor)` iterator or a
//! `tch::nn::VarStore`), on the tensors' own device.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use tch::{Kind, Tensor};

use crate::dtype::{is_input_float, kind_name};
use crate::error::Result;
use crate::quantized::AffineQuantizedTensor;
use crate::recipe::{Recipe, Unfit};
use crate::strided::check_strided;

/// A predicate on tensor names (an include or exclude pattern).
type NameFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Which tensors of a model get quantized.
///
/// The default rule reaches what torchao's `quantize_` reaches through its
/// default `filter_fn` (linear layers), expressed on names because a
/// checkpoint has no module types: float32/float16/bfloat16 tensors named
/// `...weight`, of rank 2 or more, that are not embeddings (a name that
/// contains `embed`, any case, or has a `wte.`/`wpe.` component), and that
/// the recipe applies to (see [`Recipe::check`]). With include filters, they
/// replace the name rule: a tensor is chosen when one of them matches.
/// Exclude filters remove tensors either way.
///
/// # Examples
/// ```
/// use tch::Kind;
/// use tch_quant::{Decision, Recipe, Selection, SkipReason};
/// let recipe = Recipe::Int8WeightOnly { group_size: None };
/// let default = Selection::default();
/// assert!(matches!(default.decide("l.weight", Kind::Float, &[8, 64], &recipe),
///                  Decision::Quantize { .. }));
/// assert_eq!(default.decide("l.bias", Kind::Float, &[8], &recipe),
///            Decision::Skip(SkipReason::NotAWeight));
/// let only_q = Selection::default().include(|name| name.ends_with("q.weight"));
/// assert_eq!(only_q.decide("k.weight", Kind::Float, &[8, 64], &recipe),
///            Decision::Skip(SkipReason::NotIncluded));
/// ```
#[derive(Clone, Default)]
pub struct Selection {
    include: Vec<NameFilter>,
    exclude: Vec<NameFilter>,
}

impl fmt::Debug for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selection")
            .field("include", &self.include.len())
            .field("exclude", &self.exclude.len())
            .finish()
    }
}

/// What happens to one tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Quantize it with this block size.
    Quantize {
        /// The recipe's block size for the tensor.
        block_size: Vec<i64>,
    },
    /// Leave it as it is, for this reason.
    Skip(SkipReason),
}

/// Why a tensor is left unquantized.
#[derive(Debug, Clone, PartialEq)]
pub enum SkipReason {
    /// No include filter matches its name.
    NotIncluded,
    /// An exclude filter matches its name.
    Excluded,
    /// Its name does not end in `weight` (default rule).
    NotAWeight,
    /// Rank below 2: biases, norms and scalars (default rule).
    Rank(usize),
    /// An embedding table (default rule).
    Embedding,
    /// The rule chose it, but the recipe does not apply to it.
    Unfit(Unfit),
}

impl SkipReason {
    /// Whether the tensor was chosen by the rule and only the recipe cannot
    /// take it (a caller that named the tensor explicitly may treat that as
    /// an error).
    pub fn is_unfit(&self) -> bool {
        matches!(self, SkipReason::Unfit(_))
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NotIncluded => f.write_str("not matched by an include filter"),
            SkipReason::Excluded => f.write_str("matched by an exclude filter"),
            SkipReason::NotAWeight => f.write_str("not a weight (name does not end in `weight`)"),
            SkipReason::Rank(rank) => write!(
                f,
                "rank {rank} (below 2): biases, norms and scalars stay in full precision"
            ),
            SkipReason::Embedding => f.write_str("embedding (include it explicitly to quantize)"),
            SkipReason::Unfit(unfit) => unfit.fmt(f),
        }
    }
}

impl Selection {
    /// The default rule with no filters.
    pub fn new() -> Self {
        Selection::default()
    }

    /// Adds an include filter; with one or more, they replace the default
    /// name rule.
    pub fn include(mut self, filter: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        self.include.push(Arc::new(filter));
        self
    }

    /// Adds an exclude filter.
    pub fn exclude(mut self, filter: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        self.exclude.push(Arc::new(filter));
        self
    }

    /// Whether include filters replace the default rule.
    pub fn has_includes(&self) -> bool {
        !self.include.is_empty()
    }

    /// Decides for one tensor of dtype `kind` and `shape`.
    pub fn decide(&self, name: &str, kind: Kind, shape: &[i64], recipe: &Recipe) -> Decision {
        let decided = self.decide_with(
            name,
            Some(kind),
            kind_name(kind),
            shape.len(),
            || Ok::<_, std::convert::Infallible>(shape.to_vec()),
            recipe,
        );
        match decided {
            Ok(decision) => decision,
            Err(never) => match never {},
        }
    }

    /// [`decide`](Self::decide) where the dtype may be one libtorch cannot
    /// hold (`kind` `None`, shown as `dtype_name`) and the shape is converted
    /// only once the name rules have chosen the tensor (the conversion's
    /// error is returned).
    pub(crate) fn decide_with<E>(
        &self,
        name: &str,
        kind: Option<Kind>,
        dtype_name: &str,
        rank: usize,
        shape: impl FnOnce() -> std::result::Result<Vec<i64>, E>,
        recipe: &Recipe,
    ) -> std::result::Result<Decision, E> {
        let skip = |reason| Ok(Decision::Skip(reason));
        let named = self.has_includes();
        if named && !self.include.iter().any(|f| f(name)) {
            return skip(SkipReason::NotIncluded);
        }
        if self.exclude.iter().any(|f| f(name)) {
            return skip(SkipReason::Excluded);
        }
        if !named {
            if !name.ends_with("weight") {
                return skip(SkipReason::NotAWeight);
            }
            if rank < 2 {
                return skip(SkipReason::Rank(rank));
            }
            if is_embedding(name) {
                return skip(SkipReason::Embedding);
            }
        }
        if !kind.is_some_and(is_input_float) {
            return skip(SkipReason::Unfit(Unfit::Dtype(dtype_name.to_string())));
        }
        Ok(match recipe.check_shape(&shape()?) {
            Ok(block_size) => Decision::Quantize { block_size },
            Err(unfit) => Decision::Skip(SkipReason::Unfit(unfit)),
        })
    }
}

/// Names of embedding tables: `embed` anywhere (any case), or a `wte.` /
/// `wpe.` component (GPT-2's token and position embeddings).
fn is_embedding(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.contains("embed")
        || ["wte.", "wpe."]
            .iter()
            .any(|p| lower.starts_with(p) || lower.contains(&format!(".{p}")))
}

/// A model's tensors after [`quantize_tensors`].
#[derive(Debug, Default)]
pub struct QuantizedModel {
    /// The quantized tensors, by name.
    pub quantized: BTreeMap<String, AffineQuantizedTensor>,
    /// Every other tensor's name, with the reason it was left as it is.
    pub skipped: BTreeMap<String, SkipReason>,
}

/// Quantizes every tensor of `tensors` that `selection` chooses with
/// `recipe`, each on its own device, and says why the others were skipped.
///
/// # Errors
/// The recipe's own arguments ([`Recipe::validate`]), checked before any
/// tensor; a tensor that is not strided ([`Error::UnsupportedLayout`](crate::Error::UnsupportedLayout)
/// for the argument `tensors`); the first tensor whose quantization fails.
///
/// # Examples
/// ```
/// use tch::{Device, Kind, Tensor};
/// use tch_quant::{quantize_tensors, Recipe, Selection};
/// let w = Tensor::randn([32, 64], (Kind::Float, Device::Cpu));
/// let b = Tensor::zeros([32], (Kind::Float, Device::Cpu));
/// let model = quantize_tensors([("fc.weight", &w), ("fc.bias", &b)],
///                              &Recipe::Int8WeightOnly { group_size: None },
///                              &Selection::default())?;
/// assert_eq!(model.quantized.len(), 1);
/// assert!(model.skipped.contains_key("fc.bias"));
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn quantize_tensors<'a, N: AsRef<str>>(
    tensors: impl IntoIterator<Item = (N, &'a Tensor)>,
    recipe: &Recipe,
    selection: &Selection,
) -> Result<QuantizedModel> {
    recipe.validate()?;
    let mut model = QuantizedModel::default();
    for (name, tensor) in tensors {
        let name = name.as_ref();
        check_strided("quantize_tensors", "tensors", tensor)?;
        match selection.decide(name, tensor.kind(), &tensor.size(), recipe) {
            Decision::Quantize { .. } => {
                let q = AffineQuantizedTensor::quantize(tensor, recipe)?;
                model.quantized.insert(name.to_string(), q);
            }
            Decision::Skip(reason) => {
                model.skipped.insert(name.to_string(), reason);
            }
        }
    }
    Ok(model)
}

/// [`quantize_tensors`] over the variables of a `VarStore` (names as
/// `VarStore::variables` gives them, e.g. `encoder.layer.0.weight`), on the
/// store's device.
///
/// # Examples
/// ```
/// use tch::{nn, Device};
/// use tch_quant::{quantize_var_store, Recipe, Selection};
/// let vs = nn::VarStore::new(Device::Cpu);
/// let _fc = nn::linear(vs.root() / "fc", 64, 32, Default::default());
/// let model = quantize_var_store(&vs, &Recipe::Int4WeightOnly { group_size: 32, use_hqq: false },
///                                &Selection::default())?;
/// assert_eq!(model.quantized["fc.weight"].scale().size(), vec![32, 2]);
/// # Ok::<(), tch_quant::Error>(())
/// ```
pub fn quantize_var_store(
    vs: &tch::nn::VarStore,
    recipe: &Recipe,
    selection: &Selection,
) -> Result<QuantizedModel> {
    let variables: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    // Trainable variables require grad; the quantized copy does not.
    let detached = variables
        .iter()
        .map(|(name, t)| (name.as_str(), t.detach()))
        .collect::<Vec<_>>();
    quantize_tensors(detached.iter().map(|(n, t)| (*n, t)), recipe, selection)
}
