//! TEMPORARY: the names of `tch_quant::linear` (dense only) until the lead's
//! module lands on main; deleted at the merge.

use tch::nn::{self, Module};
use tch::Tensor;

pub enum Linear {
    Dense(nn::Linear),
}

impl Linear {
    pub fn f_forward(&self, input: &Tensor) -> tch_quant::Result<Tensor> {
        match self {
            Linear::Dense(l) => Ok(l.forward(input)),
        }
    }
}

pub trait LinearSource {
    fn linear(&self, path: &nn::Path, in_dim: i64, out_dim: i64) -> tch_quant::Result<Linear>;
}

pub struct DenseLinears(pub nn::LinearConfig);

impl LinearSource for DenseLinears {
    fn linear(&self, path: &nn::Path, in_dim: i64, out_dim: i64) -> tch_quant::Result<Linear> {
        Ok(Linear::Dense(nn::linear(path, in_dim, out_dim, self.0)))
    }
}
