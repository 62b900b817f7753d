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

/// Set in the child processes of [`thread_env_values_are_checked`]: the
/// variable is read once per process, so each value gets a process.
const CHILD: &str = "TCH_QUANT_TEST_THREAD_ENV_CHILD";

/// `TCH_QUANT_THREADS` values that do not parse are an error naming the
/// variable and the value, from `check_env` and from every fused call;
/// valid and empty values are taken.
#[test]
fn thread_env_values_are_checked() -> Result<()> {
    if std::env::var_os(CHILD).is_some() {
        return thread_env_child();
    }
    for value in [
        "torch:x", "omp", "torch:", "-2", "spawn:3", "single", "8", "", " ",
    ] {
        let out = std::process::Command::new(std::env::current_exe()?)
            .args(["--exact", "thread_env_values_are_checked", "--nocapture"])
            .env("TCH_QUANT_THREADS", value)
            .env(CHILD, "1")
            .output()?;
        assert!(
            out.status.success(),
            "TCH_QUANT_THREADS={value:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "TCH_QUANT_THREADS={value:?}: the child ran no test"
        );
    }
    Ok(())
}

fn thread_env_child() -> Result<()> {
    use tch_quant::threading::{check_env, num_threads, thread_policy};
    use tch_quant::Error;
    let value = std::env::var("TCH_QUANT_THREADS")?;
    let want = match value.trim() {
        "spawn:3" => Some((ThreadPolicy::Spawn, 3)),
        "single" => Some((ThreadPolicy::Single, tch::get_num_threads().max(1) as usize)),
        "8" => Some((ThreadPolicy::Torch, 8)),
        "" => Some((ThreadPolicy::Torch, tch::get_num_threads().max(1) as usize)),
        _ => None,
    };
    let x = &inputs()[0];
    let case = &CASES[2];
    if let Some(settings) = want {
        check_env()?;
        assert_eq!((thread_policy(), num_threads()), settings);
        assert!(outputs(x, case, false)? == outputs(x, case, true)?);
        return Ok(());
    }
    let is_env_error = |e: &Error, op: &str| {
        matches!(e, Error::InvalidEnvironment { op: o, var, value: v, .. }
            if *o == op && *var == "TCH_QUANT_THREADS" && *v == value)
            && e.to_string().contains(&format!("{value:?}"))
    };
    let e = check_env().expect_err("an invalid value is refused");
    assert!(is_env_error(&e, "threading::check_env"), "{e}");
    let block = case.granularity.block_size(&x.size())?;
    let options = QParamsOptions::default();
    let chosen = choose_qparams_affine(x, case.mapping, &block, QuantDtype::Int8, &options);
    let e = chosen.expect_err("a fused choose reports the value");
    assert!(is_env_error(&e, "choose_qparams_affine"), "{e}");
    let chained =
        choose_qparams_and_quantize_affine(x, case.mapping, &block, QuantDtype::Int8, &options);
    assert!(
        matches!(chained, Err(Error::InvalidEnvironment { .. })),
        "a fused choose+quantize reports the value"
    );
    // Set in full by the program, the settings no longer read the variable.
    set_thread_policy(ThreadPolicy::Spawn);
    set_num_threads(2);
    assert!(outputs(x, case, false)? == outputs(x, case, true)?);
    assert!(check_env().is_err(), "check_env still reports the variable");
    Ok(())
}
