//! Every refused input, with the exit code it documents; a refused run
//! leaves nothing behind and never touches its input.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::Dtype;

use crate::{
    assert_ok, assert_refused, f32_bytes, quantize, read_back, tch_quant, text, tiny, values, Work,
};

#[test]
fn bad_command_lines_exit_2() {
    let work = Work::new();
    let input = tiny(&work);
    let output = work.path("out.safetensors");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--scheme", "int8-weight-only", "--include", "("],
            "not a valid regex",
        ),
        (
            &["--scheme", "int8-weight-only", "--mapping", "symmetric"],
            "only apply to --scheme custom",
        ),
        (
            &["--scheme", "int4-weight-only", "--group-size", "48"],
            "32, 64, 128 or 256",
        ),
        (&["--scheme", "uintx-weight-only"], "needs --bits"),
        (
            &["--scheme", "float8-weight-only", "--hqq"],
            "--hqq only applies to --scheme int4-weight-only and uintx-weight-only",
        ),
        (
            &["--scheme", "uintx-weight-only", "--bits", "9"],
            "--bits must be 1 to 8",
        ),
        (
            &[
                "--scheme",
                "custom",
                "--dtype",
                "int8",
                "--granularity",
                "per-tensor",
            ],
            "needs --mapping",
        ),
        (
            &[
                "--scheme",
                "custom",
                "--mapping",
                "symmetric",
                "--dtype",
                "int8",
                "--granularity",
                "per-tensor",
                "--zero-point-domain",
                "float",
            ],
            "zero_point_domain",
        ),
        (
            &[
                "--scheme",
                "custom",
                "--mapping",
                "asymmetric",
                "--dtype",
                "uint4",
                "--granularity",
                "per-group:8",
                "--quant-max",
                "16",
            ],
            "quant_max",
        ),
        (
            &[
                "--scheme",
                "custom",
                "--mapping",
                "sideways",
                "--dtype",
                "int8",
                "--granularity",
                "per-tensor",
            ],
            "mapping_type",
        ),
    ];
    for (args, needle) in cases {
        assert_refused(&quantize(&input, &output, args), 2, needle);
    }
    assert_refused(
        &quantize(
            &input,
            &output,
            &[
                "--scheme",
                "custom",
                "--mapping",
                "symmetric",
                "--dtype",
                "float8_e4m3fnuz",
                "--granularity",
                "per-row",
                "--zero-point-domain",
                "none",
            ],
        ),
        2,
        "no dtype to store",
    );
    // clap's own usage errors share the code.
    assert_eq!(
        quantize(&input, &output, &["--scheme", "int3-magic"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        work.files(),
        BTreeSet::from(["tiny.safetensors".to_string()])
    );
}

/// Runs a refused quantization and checks that nothing but the inputs is
/// left in the directory and the input is byte for byte unchanged.
fn refused_leaves_nothing(
    work: &Work,
    input: &Path,
    output: &Path,
    scheme: &[&str],
    code: i32,
    needle: &str,
) {
    let before = work.files();
    let input_bytes = std::fs::read(input).ok();
    assert_refused(&quantize(input, output, scheme), code, needle);
    assert_eq!(work.files(), before, "a refused run left files behind");
    assert_eq!(std::fs::read(input).ok(), input_bytes, "the input changed");
}

#[test]
fn unreadable_inputs_exit_3() {
    let work = Work::new();
    let good = std::fs::read(tiny(&work)).unwrap();
    let output = work.path("out.safetensors");
    let int8 = ["--scheme", "int8-weight-only"];

    refused_leaves_nothing(
        &work,
        &work.path("missing.safetensors"),
        &output,
        &int8,
        3,
        "no such file",
    );

    let text_file = work.path("notes.safetensors");
    std::fs::write(&text_file, "these are not the tensors you are looking for").unwrap();
    refused_leaves_nothing(
        &work,
        &text_file,
        &output,
        &int8,
        3,
        "not a safetensors file",
    );

    let truncated = work.path("truncated.safetensors");
    std::fs::write(&truncated, &good[..good.len() - 100]).unwrap();
    refused_leaves_nothing(&work, &truncated, &output, &int8, 3, "truncated");

    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let mut corrupt = good.clone();
    // A control character is invalid JSON inside and outside strings.
    corrupt[8 + header_len / 2] = 0x01;
    let corrupt_path = work.path("corrupt.safetensors");
    std::fs::write(&corrupt_path, &corrupt).unwrap();
    refused_leaves_nothing(
        &work,
        &corrupt_path,
        &output,
        &int8,
        3,
        "corrupt safetensors header",
    );

    let cut_header = work.path("cut-header.safetensors");
    std::fs::write(&cut_header, &good[..8 + header_len / 2]).unwrap();
    refused_leaves_nothing(&work, &cut_header, &output, &int8, 3, "truncated");

    refused_leaves_nothing(&work, &work.path(""), &output, &int8, 3, "is a directory");

    let index = work.path("broken.safetensors.index.json");
    std::fs::write(
        &index,
        r#"{"weight_map": {"a.weight": "gone.safetensors"}}"#,
    )
    .unwrap();
    refused_leaves_nothing(&work, &index, &output, &int8, 3, "no such file");
    std::fs::write(
        &index,
        r#"{"weight_map": {"a.weight": "tiny.safetensors"}}"#,
    )
    .unwrap();
    refused_leaves_nothing(
        &work,
        &index,
        &work.path("o.safetensors.index.json"),
        &int8,
        3,
        "does not hold it",
    );
    std::fs::write(&index, "{ not json").unwrap();
    refused_leaves_nothing(
        &work,
        &index,
        &output,
        &int8,
        3,
        "not a valid safetensors index",
    );

    let quantized = work.path("q.safetensors");
    assert_ok(&quantize(&work.path("tiny.safetensors"), &quantized, &int8));
    refused_leaves_nothing(
        &work,
        &quantized,
        &output,
        &int8,
        3,
        "run tch-quant dequantize on it first",
    );
    std::fs::remove_file(&quantized).unwrap();

    let out = tch_quant([
        "dequantize".as_ref(),
        work.path("tiny.safetensors").as_os_str(),
        "-o".as_ref(),
        output.as_os_str(),
    ]);
    assert_refused(&out, 3, "not written by tch-quant");
    assert!(!output.exists());
}

/// Writes a safetensors file from a hand-written header, for inputs the
/// safetensors crate would not produce.
fn write_raw(path: &Path, header: &str, data: &[u8]) {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

/// Inputs crafted to make a careless reader panic, overflow or allocate
/// without bound: refused with a message and an exit code instead.
#[test]
fn crafted_inputs_are_refused_not_crashed_on() {
    let work = Work::new();
    let output = work.path("out.safetensors");

    // A 0-d tensor named for a scheme whose codes are packed along the
    // last dim, which it does not have.
    let scalar = work.path("scalar.safetensors");
    write_raw(
        &scalar,
        r#"{"scalar":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}"#,
        &1.5f32.to_le_bytes(),
    );
    refused_leaves_nothing(
        &work,
        &scalar,
        &output,
        &[
            "--scheme",
            "custom",
            "--dtype",
            "uint4",
            "--mapping",
            "asymmetric",
            "--granularity",
            "per-tensor",
            "--include",
            "^scalar$",
        ],
        4,
        "0-d",
    );

    // Dims whose product overflows i64 before a zero dim empties the tensor.
    let huge = work.path("huge.safetensors");
    write_raw(
        &huge,
        r#"{"huge.weight":{"dtype":"F32","shape":[4611686018427387904,2,0],"data_offsets":[0,0]}}"#,
        &[],
    );
    refused_leaves_nothing(
        &work,
        &huge,
        &output,
        &["--scheme", "int8-weight-only"],
        3,
        "cannot address",
    );

    // A tch-quant file whose record claims 10^11 packed shards: inspect and
    // dequantize refuse it before building a name per shard.
    let shards = work.path("shards.safetensors");
    let record = serde_json::json!({"w": {
        "shape": [4, 64], "dtype": "float32", "block_size": [1, 32],
        "mapping_type": "asymmetric", "target_dtype": "uint4", "quant_min": 0,
        "quant_max": 15, "eps": 1e-6, "preserve_zero": true, "zero_point_domain": "int",
        "scale_dtype": "float32", "zero_point_dtype": "int32",
        "codes": {"layout": "packed", "bits": 4, "dim": -1, "shards": 100_000_000_000u64}
    }});
    let metadata = serde_json::json!({
        "tch_quant.format": "1", "tch_quant.version": "0.1.0",
        "tch_quant.torchao_version": "0.11.0",
        "tch_quant.scheme": "{\"name\":\"custom\"}",
        "tch_quant.tensors": record.to_string(),
    });
    let header = serde_json::json!({
        "__metadata__": metadata,
        "w.qdata": {"dtype": "U8", "shape": [4, 32], "data_offsets": [0, 128]},
    });
    write_raw(&shards, &header.to_string(), &[0; 128]);
    let out = tch_quant(["inspect".as_ref(), shards.as_os_str()]);
    assert_refused(&out, 3, "shards");
    let out = tch_quant([
        "dequantize".as_ref(),
        shards.as_os_str(),
        "-o".as_ref(),
        output.as_os_str(),
    ]);
    assert_refused(&out, 3, "shards");

    // Granularity numbers from the command line never size an allocation:
    // a group of 10^10 is merely one that divides no tensor here...
    let input = tiny(&work);
    let custom = |granularity: &str| {
        quantize(
            &input,
            &output,
            &[
                "--scheme",
                "custom",
                "--mapping",
                "asymmetric",
                "--dtype",
                "uint8",
                "--granularity",
                granularity,
                "--force",
            ],
        )
    };
    let out = custom("per-group:10000000000");
    assert_ok(&out);
    assert!(text(&out.stdout).contains("not divided by the block size"));
    // ...and an axis beyond any tensor's rank is a usage error, however far.
    for axis in ["16", "-17", "9223372036854775807", "-9223372036854775808"] {
        assert_refused(&custom(&format!("per-axis:{axis}")), 2, "per-axis");
    }
}

/// Every name a quantized tensor's outputs take is checked against every
/// tensor of the input, including the later shards of 7-bit codes.
#[test]
fn output_names_never_collide_with_input_tensors() {
    let work = Work::new();
    let input = work.path("collide.safetensors");
    let weight: Vec<u8> = values(4 * 64, 3)
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let views = vec![
        (
            "a.weight",
            TensorView::new(Dtype::F32, vec![4, 64], &weight).unwrap(),
        ),
        (
            "a.weight.qdata.2",
            TensorView::new(Dtype::F32, vec![1], &weight[..4]).unwrap(),
        ),
    ];
    safetensors::serialize_to_file(views, &None, &input).unwrap();
    let output = work.path("out.safetensors");
    refused_leaves_nothing(
        &work,
        &input,
        &output,
        &[
            "--scheme",
            "uintx-weight-only",
            "--bits",
            "7",
            "--group-size",
            "32",
        ],
        4,
        "already has a tensor named a.weight.qdata.2",
    );
    // Four bits pack into one shard: no collision, and the tensor is kept.
    assert_ok(&quantize(
        &input,
        &output,
        &["--scheme", "uintx-weight-only", "--bits", "4"],
    ));
    assert!(read_back(&output).0.contains_key("a.weight.qdata.2"));
}

#[test]
fn tensors_that_cannot_be_processed_exit_4() {
    let work = Work::new();
    let input = tiny(&work);
    let output = work.path("out.safetensors");
    refused_leaves_nothing(
        &work,
        &input,
        &output,
        &[
            "--scheme",
            "int4-weight-only",
            "--group-size",
            "32",
            "--include",
            "^odd",
        ],
        4,
        "not divided by the block size",
    );
    refused_leaves_nothing(
        &work,
        &input,
        &output,
        &["--scheme", "int8-weight-only", "--include", "position_ids"],
        4,
        "only float32, float16 and bfloat16",
    );
    refused_leaves_nothing(
        &work,
        &input,
        &output,
        &[
            "--scheme",
            "uintx-weight-only",
            "--bits",
            "3",
            "--group-size",
            "4",
            "--include",
            "odd",
        ],
        4,
        "multiple of 8",
    );

    // A dtype safetensors itself does not know (a newer format's float8 scale type).
    let header = r#"{"scales":{"dtype":"F8_E8M0","shape":[4],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0; 4]);
    let exotic = work.path("exotic.safetensors");
    std::fs::write(&exotic, bytes).unwrap();
    refused_leaves_nothing(
        &work,
        &exotic,
        &output,
        &["--scheme", "int8-weight-only"],
        4,
        "F8_E8M0",
    );
}

#[test]
fn refused_outputs_exit_5_and_the_input_is_never_touched() {
    let work = Work::new();
    let input = tiny(&work);
    let int8 = ["--scheme", "int8-weight-only"];

    // Writing over the input: refused even with --force, through a link too.
    refused_leaves_nothing(
        &work,
        &input,
        &input,
        &["--scheme", "int8-weight-only", "--force"],
        5,
        "is the input",
    );
    #[cfg(unix)]
    {
        let link = work.path("link.safetensors");
        std::os::unix::fs::symlink(&input, &link).unwrap();
        refused_leaves_nothing(
            &work,
            &input,
            &link,
            &["--scheme", "int8-weight-only", "--force"],
            5,
            "is the input",
        );
    }

    // An existing output needs --force.
    let existing = work.path("existing.safetensors");
    std::fs::write(&existing, "keep me").unwrap();
    refused_leaves_nothing(&work, &input, &existing, &int8, 5, "pass --force");
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");
    let report = work.path("existing.json");
    std::fs::write(&report, "{}").unwrap();
    refused_leaves_nothing(
        &work,
        &input,
        &work.path("new.safetensors"),
        &[
            "--scheme",
            "int8-weight-only",
            "--report",
            report.to_str().unwrap(),
        ],
        5,
        "pass --force",
    );
    assert_ok(&quantize(
        &input,
        &existing,
        &["--scheme", "int8-weight-only", "--force"],
    ));
    assert!(read_back(&existing)
        .0
        .contains_key("layer.0.linear.weight.qdata"));

    // Directories that are missing, not directories, or not writable.
    refused_leaves_nothing(
        &work,
        &input,
        &work.path("no/such/dir/out.safetensors"),
        &int8,
        5,
        "does not exist",
    );
    refused_leaves_nothing(
        &work,
        &input,
        &work.path("existing.safetensors/out.safetensors"),
        &int8,
        5,
        "not a directory",
    );
    refused_leaves_nothing(&work, &input, &work.path(""), &int8, 5, "is a directory");
    let unwritable = unwritable_dir(&work);
    refused_leaves_nothing(
        &work,
        &input,
        &unwritable.join("out.safetensors"),
        &int8,
        5,
        "cannot write in directory",
    );

    // A single-file input cannot be written as an index.
    refused_leaves_nothing(
        &work,
        &input,
        &work.path("x.safetensors.index.json"),
        &int8,
        2,
        "names an index",
    );
}

/// A directory this process cannot create files in: a read-only one for an
/// ordinary user; root ignores permissions, but not sysfs's.
fn unwritable_dir(work: &Work) -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = work.path("read-only");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        if tempfile::tempfile_in(&dir).is_err() {
            return dir;
        }
        std::fs::remove_dir(&dir).unwrap();
        PathBuf::from("/sys")
    }
    #[cfg(not(unix))]
    {
        let _ = work;
        PathBuf::from("C:\\Windows\\System32\\config")
    }
}

#[test]
fn cuda_without_a_device_exits_6() {
    let work = Work::new();
    let input = tiny(&work);
    let output = work.path("out.safetensors");
    let args = [
        "--scheme",
        "int4-weight-only",
        "--group-size",
        "32",
        "--device",
        "cuda",
    ];
    if crate::common_cuda::cuda_or_skip(
        "cuda_without_a_device_exits_6: no CUDA device, so checking the refusal (exit 6)",
    ) {
        assert_ok(&quantize(&input, &output, &args));
        assert!(read_back(&output)
            .0
            .contains_key("layer.0.linear.weight.qdata"));
    } else {
        refused_leaves_nothing(&work, &input, &output, &args, 6, "no CUDA device");
    }
}

/// Runs the binary with `args`, failing the test if it has not exited
/// within 60 s (a FIFO input with no writer once blocked it forever).
#[cfg(unix)]
fn tch_quant_within<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> std::process::Output {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let mut child = Command::new(crate::BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("tch-quant blocked for 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status();
    assert!(made.unwrap().success(), "mkfifo {}", path.display());
}

#[cfg(unix)]
fn file_type(path: &Path) -> std::fs::FileType {
    std::fs::symlink_metadata(path).unwrap().file_type()
}

/// FIFOs, devices and sockets are refused by their type before they are
/// opened: as inputs with exit 3 (a FIFO with no writer once blocked the
/// run forever), as outputs with exit 5, and `--force` never replaces one
/// with a regular file (it once did, a device included).
#[cfg(unix)]
#[test]
fn fifos_devices_and_sockets_are_refused_before_they_are_opened() {
    use std::os::unix::fs::FileTypeExt;

    let work = Work::new();
    let input = tiny(&work);
    let output = work.path("out.safetensors");
    let fifo = work.path("fifo.safetensors");
    mkfifo(&fifo);
    let socket = work.path("socket.safetensors");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let index = work.path("fifo.safetensors.index.json");
    std::fs::write(
        &index,
        r#"{"weight_map": {"a.weight": "fifo.safetensors"}}"#,
    )
    .unwrap();
    let fifo_index = work.path("index-fifo.safetensors.index.json");
    mkfifo(&fifo_index);
    let before = work.files();
    for (path, kind) in [
        (&fifo, "FIFO"),
        (&socket, "socket"),
        (&index, "FIFO"),
        (&fifo_index, "FIFO"),
        (&PathBuf::from("/dev/null"), "character device"),
    ] {
        for command in [
            vec!["quantize".as_ref(), path.as_os_str(), "-o".as_ref()]
                .into_iter()
                .chain([
                    output.as_os_str(),
                    "--scheme".as_ref(),
                    "int8-weight-only".as_ref(),
                ])
                .collect::<Vec<_>>(),
            vec![
                "dequantize".as_ref(),
                path.as_os_str(),
                "-o".as_ref(),
                output.as_os_str(),
            ],
            vec!["inspect".as_ref(), path.as_os_str()],
        ] {
            let out = tch_quant_within(&command);
            assert_refused(&out, 3, kind);
            assert!(text(&out.stderr).contains("not a regular file"));
        }
    }
    assert_eq!(work.files(), before, "a refused run left files behind");

    // Outputs: a FIFO, a socket, a link to a device, the report; with
    // --force too.
    let link = work.path("null.safetensors");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    let before = work.files();
    for (path, kind) in [
        (&fifo, "FIFO"),
        (&socket, "socket"),
        (&link, "character device"),
    ] {
        for force in [false, true] {
            let mut args = vec!["--scheme", "int8-weight-only"];
            args.extend(force.then_some("--force"));
            refused_leaves_nothing(&work, &input, path, &args, 5, kind);
            args.extend(["--report", path.to_str().unwrap()]);
            refused_leaves_nothing(&work, &input, &output, &args, 5, kind);
        }
    }
    assert!(file_type(&fifo).is_fifo());
    assert!(file_type(&socket).is_socket());
    assert!(file_type(&link).is_symlink());
    assert_eq!(work.files(), before);

    // A device node in the output's place (root can make one).
    let device = work.path("device.safetensors");
    let made = std::process::Command::new("mknod")
        .arg(&device)
        .args(["c", "1", "3"])
        .stderr(std::process::Stdio::null())
        .status();
    if made.is_ok_and(|s| s.success()) {
        refused_leaves_nothing(
            &work,
            &input,
            &device,
            &["--scheme", "int8-weight-only", "--force"],
            5,
            "character device",
        );
        assert!(file_type(&device).is_char_device());
    } else {
        eprintln!("skipped the device node: mknod needs root");
    }
}

/// A weight of more than 64 dims (libtorch's limit) once failed inside
/// the packing with exit 1; the recipe finds it unfit when the tensors are
/// chosen, before any data is read: exit 4 when named, copied otherwise.
#[test]
fn weights_of_more_than_64_dims_exit_4() {
    let work = Work::new();
    let output = work.path("out.safetensors");
    let bytes = f32_bytes(8 * 64, 5);
    for rank in [65, 72] {
        let input = work.path(&format!("rank{rank}.safetensors"));
        let shape = [vec![1; rank - 2], vec![8, 64]].concat();
        let view = TensorView::new(Dtype::F32, shape, &bytes).unwrap();
        safetensors::serialize_to_file([("deep.weight", view)], &None, &input).unwrap();
        // Named with --include, it is an error decided before any data is
        // read...
        for scheme in [
            &["--scheme", "int4-weight-only", "--group-size", "32"][..],
            &["--scheme", "uintx-weight-only", "--bits", "3"],
            &["--scheme", "int8-weight-only"],
            &["--scheme", "float8-weight-only"],
        ] {
            let named = [scheme, &["--include", "deep"]].concat();
            refused_leaves_nothing(&work, &input, &output, &named, 4, "at most 64");
        }
        // ...and under the default rule it is copied, like any tensor the
        // recipe does not fit, with the reason in the summary.
        let out = quantize(
            &input,
            &output,
            &["--scheme", "int8-weight-only", "--force"],
        );
        assert_ok(&out);
        assert!(
            text(&out.stdout).contains("at most 64"),
            "{}",
            text(&out.stdout)
        );
        assert_eq!(read_back(&output).0["deep.weight"].1.len(), rank);
        std::fs::remove_file(&output).unwrap();
    }
}

/// A `TCH_QUANT_THREADS` that does not parse is a usage error naming the
/// variable and its value, before any file is read or written.
#[test]
fn an_invalid_thread_env_value_exits_2() {
    let work = Work::new();
    let input = tiny(&work);
    let output = work.path("out.safetensors");
    let out = std::process::Command::new(crate::BIN)
        .arg("quantize")
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .args(["--scheme", "int8-weight-only"])
        .env("TCH_QUANT_THREADS", "spawn:many")
        .output()
        .expect("the binary starts");
    assert_refused(&out, 2, "`TCH_QUANT_THREADS` = \"spawn:many\"");
    assert_eq!(
        work.files(),
        BTreeSet::from(["tiny.safetensors".to_string()])
    );
}
