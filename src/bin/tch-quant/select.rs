//! Which tensors get quantized, and why the others are copied unchanged.
//!
//! Default rule (no `--include`): float32/float16/bfloat16 tensors named
//! `...weight`, of rank 2 or more, that are not embeddings and whose block
//! divides them. This is what torchao's `quantize_` reaches through its
//! default `filter_fn` (linear layers), expressed on names because a
//! checkpoint has no module types. With `--include`, the user's regexes
//! replace that rule, and a named tensor that cannot be quantized is an error
//! rather than a silent copy: the user asked for it.

use regex::Regex;
use safetensors::Dtype;

use crate::convert::shape_i64;
use crate::dtypes::dtype_name;
use crate::exit::{fail, Category, Result};
use crate::scheme::Scheme;

/// Embedding tables: quantized by torchao only when the user asks
/// (`quantize_` targets linear layers), so not by default here either.
const EMBEDDING_PATTERN: &str = r"(?i)(embed|(^|\.)(wte|wpe)\.)";

/// What happens to one input tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Quantize with this block size.
    Quantize { block_size: Vec<i64> },
    /// Copy unchanged, for this reason (shown in the report).
    Copy { reason: String },
}

pub struct Selector {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
    embedding: Regex,
}

impl Selector {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Selector> {
        let compile = |flag: &str, patterns: &[String]| -> Result<Vec<Regex>> {
            patterns
                .iter()
                .map(|p| match Regex::new(p) {
                    Ok(r) => Ok(r),
                    Err(e) => fail!(Category::Usage, "{flag} {p:?} is not a valid regex: {e}"),
                })
                .collect()
        };
        Ok(Selector {
            include: compile("--include", include)?,
            exclude: compile("--exclude", exclude)?,
            embedding: Regex::new(EMBEDDING_PATTERN).expect("the embedding pattern is valid"),
        })
    }

    /// Decides for one tensor. Errors only for tensors named by `--include`
    /// that cannot be quantized as asked.
    pub fn decide(
        &self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        scheme: &Scheme,
    ) -> Result<Decision> {
        let copy = |reason: String| Ok(Decision::Copy { reason });
        let named = !self.include.is_empty();
        if named && !self.include.iter().any(|r| r.is_match(name)) {
            return copy("not matched by --include".into());
        }
        if self.exclude.iter().any(|r| r.is_match(name)) {
            return copy("matched by --exclude".into());
        }
        if !named {
            if !name.ends_with("weight") {
                return copy("not a weight (name does not end in `weight`)".into());
            }
            if shape.len() < 2 {
                return copy(format!(
                    "rank {} (below 2): biases, norms and scalars stay in full precision",
                    shape.len()
                ));
            }
            if self.embedding.is_match(name) {
                return copy("embedding (quantize it with --include)".into());
            }
        }
        // A reason the tensor cannot be quantized: an error when the user
        // named it, a copy otherwise.
        let refuse = |category: Category, reason: String| -> Result<Decision> {
            if named {
                fail!(category, "tensor {name} matches --include but {reason}");
            }
            Ok(Decision::Copy { reason })
        };
        if !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return refuse(
                Category::Tensor,
                format!(
                    "has dtype {}; only float32, float16 and bfloat16 tensors can be quantized",
                    dtype_name(dtype)
                ),
            );
        }
        let shape = shape_i64(name, shape)?;
        if shape.contains(&0) {
            return refuse(Category::Tensor, format!("is empty (shape {shape:?})"));
        }
        let block_size = match scheme.granularity.block_size(&shape) {
            Ok(b) => b,
            Err(e) => return refuse(Category::Tensor, format!("has no block size: {e}")),
        };
        // The library validates a block size only inside its quantization
        // calls (its `BlockLayout` is private to it), after which they go
        // on to compute over the whole tensor; tch has no meta device to
        // make that call free. So the two rules it would refuse with are
        // restated here, to decide before any data is read (and to copy,
        // not fail, under the default rule); `codec::encode` still goes
        // through the library's own checks.
        let divides = block_size
            .iter()
            .zip(&shape)
            .all(|(&b, &s)| b >= 1 && b <= s && s % b == 0);
        if !divides {
            return refuse(
                Category::Tensor,
                format!("its shape {shape:?} is not divided by the block size {block_size:?}"),
            );
        }
        // torchao reduces exactly the dims whose block is larger than 1.
        let reduces = block_size.iter().any(|&b| b > 1);
        if !reduces && shape.iter().any(|&d| d > 1) {
            return refuse(
                Category::Tensor,
                format!(
                    "the block size {block_size:?} would give every element its own scale \
                     (torchao collapses that into one, pytorch/ao#3458)"
                ),
            );
        }
        if let Some(bits) = scheme.packing {
            let Some(&last) = shape.last() else {
                return refuse(
                    Category::Tensor,
                    format!("is 0-d, and packing {bits}-bit codes needs a last dim"),
                );
            };
            if last % 8 != 0 {
                return refuse(
                    Category::Tensor,
                    format!(
                        "its last dim ({last}) is not a multiple of 8, which packing {bits}-bit \
                         codes needs"
                    ),
                );
            }
        }
        Ok(Decision::Quantize { block_size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{CustomArgs, DeviceArg, OutputArgs, QuantizeArgs, SchemeName};

    fn scheme(name: SchemeName, group_size: Option<i64>) -> Scheme {
        Scheme::from_args(&QuantizeArgs {
            input: "in".into(),
            out: OutputArgs {
                output: "out".into(),
                force: false,
            },
            scheme: name,
            group_size,
            bits: None,
            custom: CustomArgs::default(),
            device: DeviceArg::Cpu,
            include: vec![],
            exclude: vec![],
            report: None,
        })
        .unwrap()
    }

    #[test]
    fn default_rule() {
        let s = scheme(SchemeName::Int4WeightOnly, Some(32));
        let sel = Selector::new(&[], &[]).unwrap();
        let q = |name: &str, dtype, shape: &[usize]| sel.decide(name, dtype, shape, &s).unwrap();
        assert_eq!(
            q("l.weight", Dtype::F32, &[8, 64]),
            Decision::Quantize {
                block_size: vec![1, 32]
            }
        );
        assert!(matches!(
            q("l.bias", Dtype::F32, &[8]),
            Decision::Copy { .. }
        ));
        assert!(matches!(
            q("ln.weight", Dtype::F32, &[8]),
            Decision::Copy { .. }
        ));
        assert!(matches!(
            q("embeddings.word_embeddings.weight", Dtype::F32, &[8, 64]),
            Decision::Copy { .. }
        ));
        assert!(matches!(
            q("l.weight", Dtype::I64, &[8, 64]),
            Decision::Copy { .. }
        ));
        assert!(matches!(
            q("l.weight", Dtype::F32, &[8, 48]),
            Decision::Copy { .. }
        ));
    }

    #[test]
    fn include_turns_refusals_into_errors() {
        let s = scheme(SchemeName::Int4WeightOnly, Some(32));
        let sel = Selector::new(&["^l\\.".into()], &["skip".into()]).unwrap();
        assert!(sel.decide("l.bias", Dtype::F32, &[64], &s).is_ok());
        assert!(sel.decide("l.weight", Dtype::F32, &[8, 48], &s).is_err());
        assert!(sel.decide("l.weight", Dtype::I32, &[8, 64], &s).is_err());
        assert!(matches!(
            sel.decide("l.skip", Dtype::I32, &[8, 64], &s).unwrap(),
            Decision::Copy { .. }
        ));
        assert!(matches!(
            sel.decide("other", Dtype::F32, &[8, 64], &s).unwrap(),
            Decision::Copy { .. }
        ));
    }

    #[test]
    fn bad_regex_is_a_usage_error() {
        let err = Selector::new(&["(".into()], &[]).err().unwrap();
        assert_eq!(err.category, Category::Usage);
    }

    #[test]
    fn scalars_and_huge_shapes_are_refused_not_panicked_on() {
        let custom = Scheme::from_args(&QuantizeArgs {
            input: "in".into(),
            out: OutputArgs {
                output: "out".into(),
                force: false,
            },
            scheme: SchemeName::Custom,
            group_size: None,
            bits: None,
            custom: CustomArgs {
                mapping: Some("asymmetric".into()),
                dtype: Some("uint4".into()),
                granularity: Some("per-tensor".into()),
                ..Default::default()
            },
            device: DeviceArg::Cpu,
            include: vec![],
            exclude: vec![],
            report: None,
        })
        .unwrap();
        let sel = Selector::new(&["^scalar$".into()], &[]).unwrap();
        let err = sel.decide("scalar", Dtype::F32, &[], &custom).unwrap_err();
        assert_eq!(err.category, Category::Tensor);
        assert!(err.to_string().contains("0-d"), "{err}");
        let int8 = scheme(SchemeName::Int8WeightOnly, None);
        let all = Selector::new(&[".".into()], &[]).unwrap();
        for shape in [vec![1usize << 62, 2, 0], vec![usize::MAX, 8]] {
            let err = all.decide("w", Dtype::F32, &shape, &int8).unwrap_err();
            assert_eq!(err.category, Category::Input, "{shape:?}");
        }
    }
}
