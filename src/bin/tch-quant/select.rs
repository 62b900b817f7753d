//! Which tensors get quantized: the library's [`Selection`] built from
//! `--include` / `--exclude` regexes, and what the command makes of its
//! decisions.
//!
//! With `--include`, the user's regexes replace the default rule, and a
//! named tensor that cannot be quantized is an error rather than a silent
//! copy: the user asked for it.

use std::collections::BTreeMap;

use regex::Regex;
use tch_quant::checkpoint::Checkpoint;
use tch_quant::{Decision, Selection, SkipReason};

use crate::exit::{fail, Category, Result};
use crate::scheme::Scheme;

/// The selection the flags give.
pub fn selection(include: &[String], exclude: &[String]) -> Result<Selection> {
    let compile = |flag: &str, p: &String| -> Result<Regex> {
        match Regex::new(p) {
            Ok(r) => Ok(r),
            Err(e) => fail!(Category::Usage, "{flag} {p:?} is not a valid regex: {e}"),
        }
    };
    let mut selection = Selection::new();
    for p in include {
        let r = compile("--include", p)?;
        selection = selection.include(move |name| r.is_match(name));
    }
    for p in exclude {
        let r = compile("--exclude", p)?;
        selection = selection.exclude(move |name| r.is_match(name));
    }
    Ok(selection)
}

/// Decides for every tensor before any work, so that a tensor named with
/// `--include` that cannot be quantized fails the run at once, as does a
/// tensor whose outputs would take a name the checkpoint already uses.
pub fn decide_all(
    input: &Checkpoint,
    selection: &Selection,
    scheme: &Scheme,
) -> Result<BTreeMap<String, Decision>> {
    let decisions = input.decide(selection, &scheme.recipe)?;
    if selection.has_includes() {
        for entry in input.shards.iter().flat_map(|s| s.entries()) {
            if let Some(Decision::Skip(reason @ SkipReason::Unfit(_))) = decisions.get(&entry.name)
            {
                fail!(
                    Category::Tensor,
                    "tensor {} matches --include but {reason}",
                    entry.name
                );
            }
        }
    }
    Ok(decisions)
}

/// Why a tensor was copied, in the command's words (its flags named).
pub fn reason_text(reason: &SkipReason) -> String {
    match reason {
        SkipReason::NotIncluded => "not matched by --include".into(),
        SkipReason::Excluded => "matched by --exclude".into(),
        SkipReason::Embedding => "embedding (quantize it with --include)".into(),
        other => other.to_string(),
    }
}
