//! Quantized linear layers that run on libtorch's own quantized kernels and
//! compute what torchao 0.11's `quantize_(nn.Linear, Config)` computes on
//! torch 2.13, bit for bit.
//!
//! | need | items | file |
//! | --- | --- | --- |
//! | which torchao config | [`LinearScheme`] | `scheme.rs` |
//! | a layer (`nn::Module`) | [`QuantizedLinear`] | `layer.rs` |
//! | the kernels' packed weights | [`Int4CpuWeight`], [`TensorCoreTiledWeight`], [`Int8Weight`] | `layout.rs` |
//! | int8 dynamic activations | (the forward of [`LinearScheme::Int8DynamicActivationInt8Weight`]) | `dynamic.rs` |
//! | a whole model in a `VarStore` | [`quantize_linears`], [`LinearSource`], [`DenseLinears`], [`QuantizedLinears`], [`Linear`] | `var_store.rs` |

mod dynamic;
mod layer;
mod layout;
mod scheme;
mod var_store;

pub use layer::QuantizedLinear;
pub use layout::{Int4CpuWeight, Int8Weight, TensorCoreTiledWeight};
pub use scheme::{LinearScheme, DEFAULT_INNER_K_TILES};
pub use var_store::{quantize_linears, DenseLinears, Linear, LinearSource, QuantizedLinears};
