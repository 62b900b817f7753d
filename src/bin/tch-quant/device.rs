//! `--device`: where tensors are quantized.

use tch::Device;

use crate::cli::DeviceArg;
use crate::exit::{fail, Category, Result};

/// The libtorch device for `--device`, or a clear refusal when CUDA is asked
/// for and libtorch sees none.
pub fn resolve(arg: DeviceArg) -> Result<Device> {
    match arg {
        DeviceArg::Cpu => Ok(Device::Cpu),
        DeviceArg::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        DeviceArg::Cuda => fail!(
            Category::Device,
            "--device cuda: no CUDA device is available to libtorch (no NVIDIA GPU or driver on \
             this machine, or a CPU-only libtorch); run with --device cpu, which gives the same \
             torchao semantics"
        ),
    }
}

/// Name for reports: `cpu`, `cuda:0`.
pub fn name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}
