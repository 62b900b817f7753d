//! No file of `src/` but `src/scalar_ops.rs` calls a tch method that takes a
//! scalar argument.
//!
//! tch 0.26's ops with a `Scalar` argument panic when libtorch fails instead
//! of returning `Err` (the temporary `Scalar` is dropped, unwrapping the
//! pending error, before the op's error is checked; see `scalar_ops.rs`), so
//! the crate calls them only through `scalar_ops`.
//!
//! The methods checked are every function of tch's generated wrappers
//! (`src/wrappers/tensor_fallible_generated.rs` and `tensor_generated.rs`)
//! whose signature mentions `Scalar`: the fallible `f_*` forms, the
//! panicking plain forms and the `g_*_scalar` forms behind tch's operators.
//! They are read from the tch sources cargo built against (the registry
//! under `$CARGO_HOME`, the version from `Cargo.lock`, or `TCH_SRC_DIR`),
//! so the list follows tch. Calls are found in the source text with
//! comments, strings and doc examples left out: `.name(` for methods and
//! `Tensor::name(` for methods and associated functions (with `::<` in
//! place of `(` too).
//!
//! The plain names that std also uses for methods the crate calls on its
//! own numbers and slices ([`STD_NAMES`]: `f32::clamp`, `PartialOrd::lt`,
//! `<[T]>::fill`, `ChunksExact::remainder`, ...) are checked only as
//! `Tensor::name(`, since text alone cannot tell the receiver's type; their
//! `f_` forms are checked everywhere. Operators on tensors (`&t * 2.0`) are
//! not visible to this scan; the crate does not use them (style rule 3).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Plain tch names that are also std methods the crate calls on
/// non-tensors.
const STD_NAMES: [&str; 9] = [
    "clamp",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "fill",
    "remainder",
];

/// The only file allowed to call them.
const GUARD: &str = "src/scalar_ops.rs";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The version of tch in `Cargo.lock`.
fn tch_version() -> String {
    let lock = std::fs::read_to_string(manifest_dir().join("Cargo.lock")).expect("Cargo.lock");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"tch\"" {
            let version = lines.next().expect("a version line after the name");
            return version
                .trim()
                .strip_prefix("version = \"")
                .and_then(|v| v.strip_suffix('"'))
                .expect("version = \"...\"")
                .to_string();
        }
    }
    panic!("Cargo.lock has no tch package");
}

/// The directory of tch's sources.
fn tch_source() -> PathBuf {
    if let Some(dir) = std::env::var_os("TCH_SRC_DIR") {
        return PathBuf::from(dir);
    }
    let version = tch_version();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let registry = cargo_home.join("registry/src");
    let found = std::fs::read_dir(&registry)
        .into_iter()
        .flatten()
        .flatten()
        .map(|index| index.path().join(format!("tch-{version}")))
        .find(|dir| dir.join("src/wrappers").is_dir());
    found.unwrap_or_else(|| {
        panic!(
            "tch {version}'s sources are not under {}; set TCH_SRC_DIR to them",
            registry.display()
        )
    })
}

/// Rust source with comments and the contents of string and char literals
/// blanked out (newlines kept, so line numbers stay).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[u8]| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            let mut j = 0;
            while j < rest.len() {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &rest[..j]);
            i += j;
        } else if rest[0] == b'r'
            && (rest.starts_with(b"r\"") || rest.starts_with(b"r#"))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            if rest.get(1 + hashes) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let body = 2 + hashes;
            let end = rest[body..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(rest.len(), |p| body + p + close.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let end = if rest.get(1) == Some(&b'\\') {
                rest.get(3..)
                    .and_then(|r| r.iter().position(|&c| c == b'\''))
                    .map(|p| p + 4)
            } else {
                let len = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (rest.get(1 + len) == Some(&b'\'')).then_some(len + 2)
            };
            match end {
                Some(end) => {
                    blank(&mut out, &rest[..end]);
                    i += end;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let len = src[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&src[i..i + len]);
            i += len;
        }
    }
    out
}

/// How a call names its function.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Call {
    /// `receiver.name(`
    Method,
    /// `Tensor::name(` (or `tch::Tensor::name(`)
    Tensor,
    /// `other::path::name(`
    Path,
}

/// Every call site in `code`: (line, how, name) for each identifier right
/// after `.` or `::` and right before `(` or `::<`.
fn calls(code: &str) -> Vec<(usize, Call, String)> {
    let b = code.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut found = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !(is_ident(b[i]) && (i == 0 || !is_ident(b[i - 1]))) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        let before = code[..start].trim_end();
        let how = if before.ends_with('.') {
            Call::Method
        } else if before.ends_with("Tensor::") {
            Call::Tensor
        } else if before.ends_with("::") {
            Call::Path
        } else {
            continue;
        };
        let after = code[i..].trim_start();
        if after.starts_with('(') || after.starts_with("::<") {
            let line = code[..start].matches('\n').count() + 1;
            found.push((line, how, code[start..i].to_string()));
        }
    }
    found
}

/// tch's functions whose signature mentions `Scalar`, each with whether it
/// takes `self` (a method) or not (an associated function).
fn scalar_functions(tch: &Path) -> BTreeMap<String, bool> {
    let mut names = BTreeMap::new();
    for file in [
        "src/wrappers/tensor_fallible_generated.rs",
        "src/wrappers/tensor_generated.rs",
    ] {
        let text = std::fs::read_to_string(tch.join(file))
            .unwrap_or_else(|e| panic!("{}: {e}", tch.join(file).display()));
        for (at, _) in text.match_indices("pub fn ") {
            let rest = &text[at + "pub fn ".len()..];
            let name_end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let signature = &rest[..rest.find('{').unwrap_or(rest.len())];
            if signature.contains("Scalar") {
                names.insert(rest[..name_end].to_string(), signature.contains("self"));
            }
        }
    }
    names
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The calls of scalar-taking tch functions in one file's code.
fn offending(code: &str, scalar_fns: &BTreeMap<String, bool>) -> Vec<(usize, String)> {
    calls(code)
        .into_iter()
        .filter(|(_, how, name)| match scalar_fns.get(name) {
            None => false,
            Some(_) if STD_NAMES.contains(&name.as_str()) => *how == Call::Tensor,
            // A method may also be called as `Tensor::name(&t, ..)`; other
            // paths (`scalar_ops::clamp(`) are not tch's.
            Some(&method) => *how == Call::Tensor || (method && *how == Call::Method),
        })
        .map(|(line, _, name)| (line, name))
        .collect()
}

#[test]
fn only_scalar_ops_calls_tch_ops_that_take_a_scalar() {
    let tch = tch_source();
    let scalar_fns = scalar_functions(&tch);
    // The ones the crate needs must be among them, or the derivation broke.
    for needed in [
        "f_clamp",
        "f_clamp_min",
        "f_mul_scalar",
        "f_div_scalar",
        "f_add_scalar",
        "f_sub_scalar",
        "f_rsub_scalar",
        "f_full_like",
        "f_full",
        "f_ge",
        "f_le",
        "f_gt",
        "f_lt",
        "f_bitwise_and",
        "f_bitwise_left_shift_tensor_scalar",
        "f_bitwise_right_shift_tensor_scalar",
        "clamp",
        "g_mul_scalar",
    ] {
        assert!(scalar_fns.contains_key(needed), "{needed} not derived");
    }
    let root = manifest_dir();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut violations = Vec::new();
    let mut scanned = 0;
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel == GUARD {
            continue;
        }
        scanned += 1;
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        for (line, name) in offending(&code, &scalar_fns) {
            violations.push(format!("{rel}:{line}: {name}"));
        }
    }
    let methods: BTreeSet<_> = scalar_fns.keys().collect();
    println!(
        "scalar guard: {} tch functions with a Scalar argument (tch at {}), {scanned} files \
         of src/ scanned outside {GUARD}, {} calls",
        methods.len(),
        tch.display(),
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "tch ops with a Scalar argument panic on failure; call them through \
         src/scalar_ops.rs instead:\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn the_scan_sees_calls_and_skips_comments_and_strings() {
    let fns: BTreeMap<String, bool> = [
        ("f_clamp".to_string(), true),
        ("clamp".to_string(), true),
        ("f_full".to_string(), false),
        ("full".to_string(), false),
    ]
    .into();
    let code = code_only(
        "let a = t.f_clamp(0i64, 1i64)?;\n\
         // t.f_clamp(0, 1)\n\
         let s = \"x.f_clamp(1, 2)\"; let c = '\"';\n\
         let b = x\n    .f_clamp(lo, hi);\n\
         let f = Tensor::f_full(&[2], 1i64, o)?; let w = walk.full();\n\
         let y = 3.0f32.clamp(0.0, 1.0); let z = Tensor::clamp(&t, 0, 1);\n\
         /* t.f_clamp(0, 1) */ let r = r#\"t.f_clamp(0, 1)\"#; f32::clamp(y, 0.0, 1.0);\n\
         let u = tch::Tensor::f_clamp(&t, 0, 1); let v = x.full(); let l = 'a'; let q = b'\\'';\n\
         let e = t.f_clamp(0, 1); let g = scalar_ops::clamp(&t, 0, 1);",
    );
    let found = offending(&code, &fns);
    assert_eq!(
        found,
        [
            (1, "f_clamp".to_string()),
            (5, "f_clamp".to_string()),
            (6, "f_full".to_string()),
            (7, "clamp".to_string()),
            (9, "f_clamp".to_string()),
            (10, "f_clamp".to_string()),
        ]
    );
}
