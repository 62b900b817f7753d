//! `--scheme` and its flags: the library's [`Recipe`] they name, and the
//! arguments the output's metadata records (for a custom scheme, exactly the
//! flags given).

use serde_json::{json, Value};
use tch_quant::checkpoint::dtype::dtype_of;
use tch_quant::checkpoint::format::scheme_json;
use tch_quant::{
    kind_name, parse_kind, CustomRecipe, Granularity, MappingType, QParamsOptions, QuantDtype,
    Recipe, Semantics, ZeroPointDomain,
};

use crate::cli::{CustomArgs, QuantizeArgs, SchemeName};
use crate::exit::{fail, Category, Failure, Result};

/// Checkpoint tensors of more dims than this do not occur; a per-axis
/// granularity beyond them is a typo, not a request.
const MAX_AXIS_RANK: i64 = 16;

/// A recipe as the command line chose it.
#[derive(Debug, Clone)]
pub struct Scheme {
    pub recipe: Recipe,
    /// The recipe's name and arguments as the metadata and the report
    /// record them.
    pub args: Value,
}

impl Scheme {
    pub fn from_args(args: &QuantizeArgs) -> Result<Scheme> {
        let given = args.custom.given();
        if args.scheme != SchemeName::Custom && !given.is_empty() {
            fail!(
                Category::Usage,
                "{} only apply to --scheme custom (the {} preset fixes every argument)",
                given.join(", "),
                args.scheme.cli_name()
            );
        }
        if args.bits.is_some()
            && !matches!(
                args.scheme,
                SchemeName::UintxWeightOnly | SchemeName::IntxWeightOnly
            )
        {
            fail!(
                Category::Usage,
                "--bits only applies to --scheme uintx-weight-only and intx-weight-only"
            );
        }
        if args.hqq
            && !matches!(
                args.scheme,
                SchemeName::Int4WeightOnly | SchemeName::UintxWeightOnly
            )
        {
            fail!(
                Category::Usage,
                "--hqq only applies to --scheme int4-weight-only and uintx-weight-only (torchao's \
                 use_hqq), not to {}",
                args.scheme.cli_name()
            );
        }
        let recipe = match args.scheme {
            SchemeName::Int8WeightOnly => Recipe::Int8WeightOnly {
                group_size: args.group_size,
            },
            SchemeName::Int4WeightOnly => Recipe::Int4WeightOnly {
                group_size: args.group_size.unwrap_or(128),
                use_hqq: args.hqq,
            },
            SchemeName::UintxWeightOnly => {
                let Some(bits) = args.bits else {
                    fail!(
                        Category::Usage,
                        "--scheme uintx-weight-only needs --bits (1 to 8)"
                    );
                };
                Recipe::UIntXWeightOnly {
                    bits,
                    group_size: args.group_size.unwrap_or(64),
                    use_hqq: args.hqq,
                }
            }
            SchemeName::IntxWeightOnly => {
                if args.semantics != Semantics::Torchao0_18 {
                    fail!(
                        Category::Usage,
                        "--scheme intx-weight-only is torchao 0.18's IntxWeightOnlyConfig; it \
                         needs --semantics 0.18 (torchao 0.11's nearest is uintx-weight-only)"
                    );
                }
                let Some(bits) = args.bits else {
                    fail!(
                        Category::Usage,
                        "--scheme intx-weight-only needs --bits (1 to 8)"
                    );
                };
                Recipe::IntxWeightOnly {
                    bits,
                    granularity: args
                        .group_size
                        .map_or(Granularity::PerAxis(0), Granularity::PerGroup),
                    mapping: MappingType::Symmetric,
                }
            }
            SchemeName::Float8WeightOnly => {
                if args.group_size.is_some() {
                    fail!(
                        Category::Usage,
                        "--group-size does not apply to float8-weight-only (one scale per row)"
                    );
                }
                Recipe::Float8WeightOnly
            }
            SchemeName::Custom => {
                if args.semantics != Semantics::Torchao0_11 {
                    fail!(
                        Category::Usage,
                        "--semantics {}: --scheme custom has no torchao {} recipe in tch-quant \
                         yet (the library's CustomRecipe takes options.semantics; the command \
                         offers int8-weight-only and float8-weight-only under 0.18)",
                        args.semantics,
                        args.semantics.torchao_version()
                    );
                }
                if args.group_size.is_some() {
                    fail!(
                        Category::Usage,
                        "with --scheme custom, give the group size as --granularity per-group:N"
                    );
                }
                return custom(&args.custom);
            }
        };
        recipe.validate().map_err(flag_error)?;
        let recipe = match args.semantics {
            Semantics::Torchao0_11 => recipe,
            semantics => recipe
                .with_semantics(semantics)
                .map_err(|e| semantics_error(args.scheme, semantics, e))?,
        };
        Ok(Scheme {
            args: scheme_json(&recipe),
            recipe,
        })
    }
}

/// `--semantics S` with a scheme that has no recipe in torchao release S.
fn semantics_error(scheme: SchemeName, semantics: Semantics, e: tch_quant::Error) -> Failure {
    let why = match e {
        tch_quant::Error::InvalidArgument { reason, .. } => reason,
        other => other.to_string(),
    };
    Failure::new(
        Category::Usage,
        format!(
            "--semantics {semantics}: --scheme {} has no torchao {} recipe: {why}",
            scheme.cli_name(),
            semantics.torchao_version()
        ),
    )
}

/// A preset's argument refused by [`Recipe::validate`], in the words of the
/// flag that gave it (`--group-size must be ..., got 48`).
fn flag_error(e: tch_quant::Error) -> Failure {
    match e {
        tch_quant::Error::InvalidArgument {
            arg, value, reason, ..
        } => Failure::new(
            Category::Usage,
            format!("--{} {reason}, got {value}", arg.replace('_', "-")),
        ),
        other => Failure::new(Category::Usage, other),
    }
}

impl SchemeName {
    pub fn cli_name(self) -> &'static str {
        match self {
            SchemeName::Int8WeightOnly => "int8-weight-only",
            SchemeName::Int4WeightOnly => "int4-weight-only",
            SchemeName::UintxWeightOnly => "uintx-weight-only",
            SchemeName::IntxWeightOnly => "intx-weight-only",
            SchemeName::Float8WeightOnly => "float8-weight-only",
            SchemeName::Custom => "custom",
        }
    }
}

fn custom(flags: &CustomArgs) -> Result<Scheme> {
    let usage = |e: tch_quant::Error| Failure::new(Category::Usage, e);
    let Some(mapping) = &flags.mapping else {
        fail!(Category::Usage, "--scheme custom needs --mapping");
    };
    let Some(dtype) = &flags.dtype else {
        fail!(Category::Usage, "--scheme custom needs --dtype");
    };
    let Some(granularity) = &flags.granularity else {
        fail!(Category::Usage, "--scheme custom needs --granularity");
    };
    let mapping: MappingType = mapping.parse().map_err(usage)?;
    let target: QuantDtype = dtype.parse().map_err(usage)?;
    if dtype_of(target.storage_kind()).is_none() {
        fail!(
            Category::Usage,
            "--dtype {target}: safetensors has no dtype to store {target} codes in"
        );
    }
    let granularity = parse_granularity(granularity)?;
    if let Granularity::PerAxis(axis) = granularity {
        if !(-MAX_AXIS_RANK..MAX_AXIS_RANK).contains(&axis) {
            fail!(
                Category::Usage,
                "--granularity per-axis:{axis}: no checkpoint tensor has that many dims \
                 (axes from -{MAX_AXIS_RANK} to {} are accepted)",
                MAX_AXIS_RANK - 1
            );
        }
    }
    let zero_point_domain = match &flags.zero_point_domain {
        Some(d) => d.parse().map_err(usage)?,
        None => ZeroPointDomain::Int,
    };
    let kind = |flag: &str, name: &Option<String>| {
        name.as_deref()
            .map(|s| {
                parse_kind(s).map_err(|_| {
                    Failure::new(
                        Category::Usage,
                        format!(
                            "{flag} must be a float or integer torch dtype (float32, bfloat16, \
                             int32, ...), got {s:?}"
                        ),
                    )
                })
            })
            .transpose()
    };
    let options = QParamsOptions {
        quant_min: flags.quant_min,
        quant_max: flags.quant_max,
        eps: flags.eps,
        scale_dtype: kind("--scale-dtype", &flags.scale_dtype)?,
        zero_point_dtype: kind("--zero-point-dtype", &flags.zero_point_dtype)?,
        preserve_zero: flags.preserve_zero.unwrap_or(true),
        zero_point_domain,
        force_reference: false,
        ..Default::default()
    };
    let mut args = serde_json::Map::new();
    args.insert("name".into(), json!("custom"));
    args.insert("mapping".into(), json!(mapping.name()));
    args.insert("dtype".into(), json!(target.name()));
    args.insert("granularity".into(), json!(granularity.to_string()));
    let optional = [
        ("quant_min", flags.quant_min.map(|v| json!(v))),
        ("quant_max", flags.quant_max.map(|v| json!(v))),
        ("eps", flags.eps.map(|v| json!(v))),
        ("preserve_zero", flags.preserve_zero.map(|v| json!(v))),
        (
            "zero_point_domain",
            flags
                .zero_point_domain
                .as_ref()
                .map(|_| json!(zero_point_domain.name())),
        ),
        (
            "scale_dtype",
            options.scale_dtype.map(|k| json!(kind_name(k))),
        ),
        (
            "zero_point_dtype",
            options.zero_point_dtype.map(|k| json!(kind_name(k))),
        ),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            args.insert(key.into(), v);
        }
    }
    let recipe = Recipe::Custom(CustomRecipe {
        mapping,
        dtype: target,
        granularity,
        options,
    });
    recipe.validate().map_err(usage)?;
    Ok(Scheme {
        recipe,
        args: Value::Object(args),
    })
}

/// `per-tensor`, `per-row`, `per-axis:N` or `per-group:N`.
pub fn parse_granularity(s: &str) -> Result<Granularity> {
    let norm = s.trim().to_ascii_lowercase().replace('_', "-");
    let (kind, arg) = match norm.split_once(':') {
        Some((k, a)) => (k.to_string(), Some(a.to_string())),
        None => (norm.clone(), None),
    };
    let number = |what: &str| -> Result<i64> {
        match arg.as_deref().map(str::parse::<i64>) {
            Some(Ok(n)) => Ok(n),
            _ => fail!(
                Category::Usage,
                "--granularity {kind}:N needs an integer {what}, got {s:?}"
            ),
        }
    };
    match (kind.as_str(), &arg) {
        ("per-tensor", None) => Ok(Granularity::PerTensor),
        ("per-row", None) => Ok(Granularity::PerRow),
        ("per-axis", Some(_)) => Ok(Granularity::PerAxis(number("axis")?)),
        ("per-group", Some(_)) => {
            let g = number("group size")?;
            if g < 1 {
                fail!(
                    Category::Usage,
                    "--granularity per-group:N needs N >= 1, got {g}"
                );
            }
            Ok(Granularity::PerGroup(g))
        }
        _ => fail!(
            Category::Usage,
            "--granularity must be per-tensor, per-row, per-axis:N or per-group:N, got {s:?}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granularities_parse() {
        assert_eq!(
            parse_granularity("per-tensor").unwrap(),
            Granularity::PerTensor
        );
        assert_eq!(
            parse_granularity("per_axis:-1").unwrap(),
            Granularity::PerAxis(-1)
        );
        assert_eq!(
            parse_granularity("per-group:32").unwrap(),
            Granularity::PerGroup(32)
        );
        assert!(parse_granularity("per-group:0").is_err());
        assert!(parse_granularity("per-group").is_err());
        assert!(parse_granularity("per-block:3").is_err());
    }

    fn custom_with(granularity: &str) -> Result<Scheme> {
        custom(&CustomArgs {
            mapping: Some("asymmetric".into()),
            dtype: Some("uint4".into()),
            granularity: Some(granularity.into()),
            ..Default::default()
        })
    }

    #[test]
    fn validation_does_not_grow_with_the_flags() {
        // Ten billion elements would not fit; nothing is allocated.
        let s = custom_with("per-group:10000000000").unwrap();
        assert_eq!(
            s.recipe.granularity(),
            Granularity::PerGroup(10_000_000_000)
        );
        assert!(custom_with("per-axis:15").is_ok());
        assert!(custom_with("per-axis:-16").is_ok());
        for axis in ["16", "-17", &i64::MAX.to_string(), &i64::MIN.to_string()] {
            let err = custom_with(&format!("per-axis:{axis}")).err().unwrap();
            assert_eq!(err.category, Category::Usage, "axis {axis}");
        }
    }

    #[test]
    fn preset_refusals_name_the_flag() {
        let err = flag_error(
            Recipe::Int4WeightOnly {
                group_size: 48,
                use_hqq: false,
            }
            .validate()
            .unwrap_err(),
        );
        assert!(err
            .to_string()
            .starts_with("--group-size must be 32, 64, 128 or 256"));
        assert!(err.to_string().ends_with("got 48"), "{err}");
    }
}
