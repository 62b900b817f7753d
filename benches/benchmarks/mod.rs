pub mod choose_qparams;
pub mod fused;
pub mod gguf_qqq;
pub mod hqq;
pub mod layouts;
pub mod linear;
pub mod observer;
pub mod quantize;

use tch::{Device, Kind, Tensor};
use tch_quant::{
    CustomRecipe, Granularity, MappingType, QParams, QParamsOptions, QuantDtype, QuantizeOptions,
};

/// One benchmarked configuration: an input and a scheme, with the scheme's
/// block size for that input.
pub struct Case {
    pub name: String,
    pub input: Tensor,
    pub recipe: CustomRecipe,
    pub block_size: Vec<i64>,
}

/// The shapes x dtypes x granularities every primitive is measured on:
/// 1x4096 and 4096x4096; f32 and bf16; per-tensor (int8 symmetric),
/// per-channel (int8 symmetric), group 128 (uint4 asymmetric) and group 32
/// (int8 asymmetric).
pub fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for &(rows, cols) in &[(1i64, 4096i64), (4096, 4096)] {
        for &kind in &[Kind::Float, Kind::BFloat16] {
            tch::manual_seed(0);
            let input = Tensor::randn([rows, cols], (kind, Device::Cpu));
            let schemes = [
                (
                    "per_tensor",
                    Granularity::PerTensor,
                    MappingType::Symmetric,
                    QuantDtype::Int8,
                ),
                (
                    "per_channel",
                    Granularity::PerRow,
                    MappingType::Symmetric,
                    QuantDtype::Int8,
                ),
                (
                    "group128",
                    Granularity::PerGroup(128),
                    MappingType::Asymmetric,
                    QuantDtype::UInt4,
                ),
                (
                    "group32",
                    Granularity::PerGroup(32),
                    MappingType::Asymmetric,
                    QuantDtype::Int8,
                ),
            ];
            for (scheme, granularity, mapping, dtype) in schemes {
                out.push(Case {
                    name: format!("{rows}x{cols}/{kind:?}/{scheme}"),
                    input: input.shallow_clone(),
                    block_size: granularity
                        .block_size(&input.size())
                        .expect("bench shapes have every dim"),
                    recipe: CustomRecipe {
                        mapping,
                        dtype,
                        granularity,
                        options: QParamsOptions::default(),
                    },
                });
            }
        }
    }
    out
}

impl Case {
    /// `choose_qparams_affine` of this case with the given options.
    pub fn choose(&self, options: &QParamsOptions) -> QParams {
        tch_quant::choose_qparams_affine(
            &self.input,
            self.recipe.mapping,
            &self.block_size,
            self.recipe.dtype,
            options,
        )
        .expect("bench case is valid")
    }

    /// `choose_qparams_and_quantize_affine` of this case with the given options.
    pub fn choose_and_quantize(&self, options: &QParamsOptions) -> (QParams, Tensor) {
        tch_quant::choose_qparams_and_quantize_affine(
            &self.input,
            self.recipe.mapping,
            &self.block_size,
            self.recipe.dtype,
            options,
        )
        .expect("bench case is valid")
    }

    /// The quantize options matching this case's qparams options.
    pub fn quantize_options(&self) -> QuantizeOptions {
        QuantizeOptions::from(&self.recipe.options)
    }
}
