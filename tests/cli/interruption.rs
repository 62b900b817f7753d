//! Interrupted runs: SIGTERM once or twice stops a quantization with exit
//! 130 and removes its temporary files; the temporaries of a run killed
//! outright are removed by the next run; an input truncated under a run is
//! an error, not SIGBUS.

#[cfg(unix)]
use std::collections::BTreeSet;
use std::path::Path;
#[cfg(unix)]
use std::process::Command;

use safetensors::tensor::TensorView;
use safetensors::Dtype;

use crate::values;
#[cfg(unix)]
use crate::{text, Work, BIN};

/// A checkpoint of `n` float32 weights of `rows`x1024, all with the same
/// values: enough work to interrupt.
fn write_big_checkpoint(path: &Path, n: usize, rows: usize) {
    let bytes: Vec<u8> = values(rows * 1024, 7)
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let names: Vec<String> = (0..n).map(|i| format!("layer.{i}.weight")).collect();
    let views: Vec<(&str, TensorView)> = names
        .iter()
        .map(|name| {
            let view = TensorView::new(Dtype::F32, vec![rows, 1024], &bytes).unwrap();
            (name.as_str(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, &None, path).expect("the checkpoint writes");
}

/// Starts a quantization of a checkpoint large enough to take a while,
/// waits until its first temporary file appears in the output directory,
/// sends SIGTERM `signals` times, and checks that it exits with 130 and
/// leaves nothing but its input, unchanged. A run that finishes before the
/// signal lands is retried on a checkpoint four times larger; with two
/// signals, a run that stopped on the first before the second arrived
/// (the handler's own clean-up was not reached) is retried too. After four
/// tries the test gives up with a note (on a machine that fast the window
/// cannot be hit), but any other outcome fails it.
#[cfg(unix)]
fn interrupted_run_leaves_nothing(signals: usize, rows: usize) {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let work = Work::new();
    let input = work.path("big.safetensors");
    let output = work.path("big-u7.safetensors");
    let mut tensors = 8;
    for _ in 0..4 {
        write_big_checkpoint(&input, tensors, rows);
        let original = std::fs::read(&input).unwrap();
        let mut child = Command::new(BIN)
            .args(["quantize".as_ref(), input.as_os_str(), "-o".as_ref()])
            .arg(&output)
            .args(["--scheme", "uintx-weight-only", "--bits", "7"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let deadline = Instant::now() + Duration::from_secs(120);
        let temp_seen = loop {
            if work.files().iter().any(|f| f.starts_with(".tch-quant-")) {
                break true;
            }
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if temp_seen {
            for _ in 0..signals {
                let sent = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status()
                    .expect("kill runs");
                assert!(sent.success(), "kill -TERM failed");
            }
        }
        let out = child.wait_with_output().unwrap();
        let stderr = text(&out.stderr);
        match out.status.code() {
            Some(130) => {
                assert!(temp_seen);
                assert!(
                    stderr.contains("interrupted") || stderr.is_empty(),
                    "{stderr}"
                );
                assert_eq!(
                    work.files(),
                    BTreeSet::from(["big.safetensors".to_string()]),
                    "an interrupted run left files behind"
                );
                assert!(
                    std::fs::read(&input).unwrap() == original,
                    "the input changed"
                );
                eprintln!("{signals} SIGTERM: {}", stderr.trim());
                if signals == 1 || stderr.contains("interrupted again") {
                    return;
                }
            }
            Some(0) => {
                // Finished before the signal arrived: try a bigger run.
                assert!(output.exists());
                std::fs::remove_file(&output).unwrap();
                tensors *= 4;
            }
            code => panic!("exit {code:?} (temporary seen: {temp_seen}); stderr: {stderr}"),
        }
    }
    eprintln!("skipped: no run was interrupted as intended before it ended");
}

#[cfg(unix)]
#[test]
fn sigterm_stops_the_run_and_leaves_nothing() {
    interrupted_run_leaves_nothing(1, 1024);
}

/// A second signal exits without waiting for the tensor in progress; the
/// handler deletes the temporaries itself. Tensors of 16 MiB make the
/// second signal arrive while one is being quantized.
#[cfg(unix)]
#[test]
fn a_second_sigterm_exits_at_once_and_leaves_nothing() {
    interrupted_run_leaves_nothing(2, 4096);
}

/// Starts `tch-quant quantize input -o output --scheme uintx-weight-only
/// --bits 7` and waits until its first spill file appears in the output
/// directory; `None` when the run ended first.
#[cfg(unix)]
fn start_and_wait_for_a_spill(
    work: &Work,
    input: &Path,
    output: &Path,
) -> Option<std::process::Child> {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let mut child = Command::new(BIN)
        .args(["quantize".as_ref(), input.as_os_str(), "-o".as_ref()])
        .arg(output)
        .args(["--scheme", "uintx-weight-only", "--bits", "7"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if work.files().iter().any(|f| f.ends_with(".spill")) {
            return Some(child);
        }
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Calls `act` on a quantization caught in progress (its first spill file
/// is on disk), on checkpoints of 8, 32, 128 and 512 weights of `rows`x1024
/// in turn, until `act` says the run was caught as intended (`false`: it
/// ended too soon, try a bigger one); returns whether one was.
#[cfg(unix)]
fn catch_a_run(
    rows: usize,
    mut act: impl FnMut(&Work, &Path, &Path, std::process::Child) -> bool,
) -> bool {
    let work = Work::new();
    let input = work.path("big.safetensors");
    let output = work.path("big-u7.safetensors");
    let mut tensors = 8;
    for _ in 0..4 {
        write_big_checkpoint(&input, tensors, rows);
        if let Some(child) = start_and_wait_for_a_spill(&work, &input, &output) {
            if act(&work, &input, &output, child) {
                return true;
            }
        }
        let _ = std::fs::remove_file(&output);
        tensors *= 4;
    }
    false
}

/// SIGKILL leaves a run's temporaries behind; they carry its pid
/// (`.tch-quant-<pid>-*`), and the next run into the directory removes
/// them, saying so, and leaves nothing of its own.
#[cfg(unix)]
#[test]
fn temporaries_of_a_killed_run_are_removed_by_the_next_run() {
    use std::os::unix::process::ExitStatusExt;

    let caught = catch_a_run(256, |work, input, output, mut child| {
        let pid = child.id();
        child.kill().unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(9));
        let left: BTreeSet<String> = work
            .files()
            .into_iter()
            .filter(|f| f.starts_with(".tch-quant-"))
            .collect();
        assert!(!left.is_empty());
        for f in &left {
            assert!(f.starts_with(&format!(".tch-quant-{pid}-")), "{f}");
        }
        assert!(!output.exists());

        let out = Command::new(BIN)
            .args(["quantize".as_ref(), input.as_os_str(), "-o".as_ref()])
            .arg(output)
            .args(["--scheme", "int8-weight-only"])
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let n = left.len();
        assert!(
            stderr.contains(&format!("note: removed {n} temporary file")),
            "{stderr}"
        );
        assert_eq!(
            work.files(),
            BTreeSet::from([
                "big.safetensors".to_string(),
                "big-u7.safetensors".to_string()
            ])
        );
        true
    });
    if !caught {
        eprintln!("skipped: no run was killed before it ended");
    }
}

/// An input truncated by another process while a run reads it: with a
/// memory map this was SIGBUS, which killed the run with its spill file on
/// disk; the positional reads make it an unreadable input (exit 3), and the
/// run removes its temporaries as it fails.
#[cfg(unix)]
#[test]
fn an_input_truncated_under_a_run_is_an_error_not_sigbus() {
    let caught = catch_a_run(1024, |work, input, _, child| {
        // Keep the header and the first tensors; the rest is gone.
        let file = std::fs::OpenOptions::new().write(true).open(input).unwrap();
        file.set_len(file.metadata().unwrap().len() / 4).unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = text(&out.stderr);
        match out.status.code() {
            Some(3) => {
                assert!(stderr.contains("truncated"), "{stderr}");
                assert_eq!(
                    work.files(),
                    BTreeSet::from(["big.safetensors".to_string()]),
                    "the failed run left files behind"
                );
                true
            }
            // Every tensor was read before the truncation.
            Some(0) => false,
            code => panic!("exit {code:?} ({:?}); stderr: {stderr}", out.status),
        }
    });
    if !caught {
        eprintln!("skipped: no input was truncated before the run had read it all");
    }
}
