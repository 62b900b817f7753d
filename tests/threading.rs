//! The thread policies (`tch_quant::threading`) against the reference path,
//! bit for bit: each policy and thread count alone, and many caller threads
//! at once under each policy.

use std::sync::Mutex;

use anyhow::Result;
use tch::{Device, Kind, Tensor};
use tch_quant::threading::{set_num_threads, set_thread_policy, ThreadPolicy};
use tch_quant::{
    choose_qparams_affine, choose_qparams_and_quantize_affine, Granularity, MappingType,
    QParamsOptions, QuantDtype,
};

const POLICIES: [ThreadPolicy; 3] = [
    ThreadPolicy::Torch,
    ThreadPolicy::Spawn,
    ThreadPolicy::Single,
];

/// The policy is process-wide: the tests of this file take turns.
static SETTINGS: Mutex<()> = Mutex::new(());

/// One call of each entry point on `x`: qparams and codes of the one-pass
/// call, and the qparams of choose alone.
struct Case {
    mapping: MappingType,
    granularity: Granularity,
}

const CASES: [Case; 3] = [
    Case {
        mapping: MappingType::Symmetric,
        granularity: Granularity::PerTensor,
    },
    Case {
        mapping: MappingType::Symmetric,
        granularity: Granularity::PerRow,
    },
    Case {
        mapping: MappingType::Asymmetric,
        granularity: Granularity::PerGroup(32),
    },
];

fn bytes(t: &Tensor) -> Result<Vec<u8>> {
    let flat = t.f_contiguous()?.f_reshape([-1])?;
    let flat = if flat.kind() == Kind::Uint8 {
        flat
    } else {
        flat.f_view_dtype(Kind::Uint8)?
    };
    Ok(Vec::<u8>::try_from(&flat)?)
}

fn outputs(x: &Tensor, case: &Case, force_reference: bool) -> Result<Vec<Vec<u8>>> {
    let options = QParamsOptions {
        force_reference,
        ..Default::default()
    };
    let block = case.granularity.block_size(&x.size())?;
    let (qp, codes) =
        choose_qparams_and_quantize_affine(x, case.mapping, &block, QuantDtype::Int8, &options)?;
    let chosen = choose_qparams_affine(x, case.mapping, &block, QuantDtype::Int8, &options)?;
    let mut out = vec![bytes(&qp.scale)?, bytes(&codes)?, bytes(&chosen.scale)?];
    for zp in [qp.zero_point, chosen.zero_point].iter().flatten() {
        out.push(bytes(zp)?);
    }
    Ok(out)
}

/// Inputs large enough to be cut into several jobs (2^17 elements each).
fn inputs() -> Vec<Tensor> {
    tch::manual_seed(14);
    let x = Tensor::randn([256, 2048], (Kind::Float, Device::Cpu));
    vec![x.to_kind(Kind::BFloat16), x]
}

#[test]
fn each_policy_and_thread_count_is_bit_identical() -> Result<()> {
    let _turn = SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
    for x in inputs() {
        for case in &CASES {
            let reference = outputs(&x, case, true)?;
            for policy in POLICIES {
                for threads in [1, 2, 4] {
                    set_thread_policy(policy);
                    set_num_threads(threads);
                    let got = outputs(&x, case, false)?;
                    assert!(
                        got == reference,
                        "{policy:?}, {threads} threads, {:?} {:?} {:?}",
                        x.kind(),
                        case.mapping,
                        case.granularity
                    );
                }
            }
        }
    }
    set_thread_policy(ThreadPolicy::default());
    set_num_threads(0);
    Ok(())
}

#[test]
fn concurrent_callers_get_correct_results() -> Result<()> {
    let _turn = SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
    let xs = inputs();
    let mut expected = Vec::new();
    for x in &xs {
        for case in &CASES {
            expected.push(outputs(x, case, true)?);
        }
    }
    for policy in POLICIES {
        set_thread_policy(policy);
        set_num_threads(2);
        std::thread::scope(|s| -> Result<()> {
            let callers: Vec<_> = (0..6)
                .map(|caller| {
                    let xs: Vec<Tensor> = xs.iter().map(Tensor::shallow_clone).collect();
                    let expected = &expected;
                    s.spawn(move || -> Result<()> {
                        for round in 0..2 {
                            // Each caller starts at another case, so that
                            // different calls overlap.
                            for k in 0..expected.len() {
                                let i = (k + caller + round) % expected.len();
                                let got =
                                    outputs(&xs[i / CASES.len()], &CASES[i % CASES.len()], false)?;
                                assert!(
                                    got == expected[i],
                                    "{policy:?}, caller {caller}, case {i}"
                                );
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            for c in callers {
                c.join().expect("a caller panicked")?;
            }
            Ok(())
        })?;
    }
    set_thread_policy(ThreadPolicy::default());
    set_num_threads(0);
    Ok(())
}
