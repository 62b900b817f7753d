#!/usr/bin/env python3
"""Checks `tch-quant quantize --format compressed-tensors` exports with the real
clients: compressed-tensors 0.20.0 and transformers, bit for bit.

For each exported model directory (`--export DIR "FLAGS"`, FLAGS being the
`tch-quant quantize` flags that made it) and the original checkpoint:

- `config.json`'s `quantization_config` parses as compressed-tensors'
  `QuantizationConfig` and states the scheme the flags map onto (format,
  num_bits, type, symmetric, strategy, group size or block);
- every quantized weight's stored tensors are bit-identical to torchao 0.11's
  quantization of the original weight (`choose_qparams_affine` +
  `quantize_affine` with the recipe's arguments, via scripts/torchao_check.py)
  moved into compressed-tensors' conventions by compressed-tensors' own code:
  `pack_to_int32(q - o, b)` for `weight_packed` (o = 2^(b-1) for unsigned
  codes, 0 for signed ones), the zero point `zp - o` (packed along dim 0 with
  `pack_to_int32` for the group layout; none for symmetric schemes, whose
  torchao zero point is checked to be o everywhere), torchao's scale; int8
  codes `q - o` and float8 codes as they are; and compressed-tensors'
  `unpack_from_int32` reads torchao's codes back; custom recipes' arguments
  come from their flags (scripts/torchao_check.py's `args_from_flags`);
- the weight compressed-tensors' compressor decompresses (the registered
  compressor's `decompress`, which `ModelCompressor.decompress_model` runs
  per module) equals, bit for bit, compressed-tensors' own `dequantize` of the
  stored codes, and torchao's `dequantize_affine` of torchao's codes (the
  crate's dequantization, which scripts/torchao_check.py checks);
- every other tensor is copied unchanged, and the ignore list names the
  2-D weights left dense;
- transformers' `AutoModel.from_pretrained(DIR)` loads it on the CPU (except
  the group layout of asymmetric schemes, which compressed-tensors 0.20's
  loading path in transformers cannot take: it is checked to fail as such),
  holds exactly the stored tensors, decompresses on the first forward to
  the weights above, and its sentence embeddings (mean pooling, normalized)
  are compared with the float model's: the cosine is printed per scheme.

`--make-synthetic DIR` writes a small random bfloat16 BERT (config.json and
sharded safetensors with an index) to export and check.

Exits 1 on any difference.

    python scripts/compressed_tensors_check.py model/model.safetensors \\
        --export out-u4 "--scheme uintx-weight-only --bits 4 --group-size 32"
"""

import argparse
import io
import json
import logging
import os
import sys
import warnings
from contextlib import redirect_stderr, redirect_stdout

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torchao_check as tc  # noqa: E402

import compressed_tensors  # noqa: E402
from compressed_tensors.compressors import BaseCompressor  # noqa: E402
from compressed_tensors.compressors.pack_quantized.helpers import (  # noqa: E402
    pack_to_int32,
    unpack_from_int32,
)
from compressed_tensors.quantization import QuantizationConfig  # noqa: E402
from compressed_tensors.quantization.lifecycle.forward import dequantize  # noqa: E402

CT_VERSION = "0.20.0"
SENTENCES = [
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog.",
    "Quantized checkpoints load in transformers through compressed-tensors.",
    "Int4 weights with a zero point per group of 32 columns.",
]


def strategy_args(strategy, group):
    if strategy == "group":
        return dict(strategy="group", group_size=group)
    return dict(strategy=strategy, group_size=None)


def custom_scheme(flags, layout):
    """(format, weights args, offset) of a custom integer recipe (README's table): offset
    is what torchao's codes exceed compressed-tensors' signed ones by."""
    dtype = flags.dtype.strip().lower().removeprefix("torch.")
    bits = int(dtype.lstrip("uint"))
    offset = 1 << (bits - 1) if dtype.startswith("uint") else 0
    kind, _, n = flags.granularity.strip().lower().replace("_", "-").partition(":")
    strategy, group = {"per-tensor": ("tensor", None), "per-row": ("channel", None),
                       "per-token": ("channel", None), "per-axis": ("channel", None),
                       "per-group": ("group", n and int(n))}[kind]
    if kind == "per-axis" and int(n) not in (0, -2):
        raise ValueError(f"{flags.granularity} has no compressed-tensors strategy")
    domain = (flags.zero_point_domain or "int").lower()
    symmetric = flags.mapping.lower().startswith("symmetric") or domain == "none"
    args = dict(num_bits=bits, type="int", symmetric=symmetric)
    if not symmetric and strategy == "group" and layout == "block":
        args.update(strategy="block", block_structure=[1, group], group_size=None)
    else:
        args.update(strategy_args(strategy, group))
    fmt = "int-quantized" if symmetric and bits == 8 else "pack-quantized"
    return fmt, args, offset


def expected_weights_args(flags, layout):
    """The compressed-tensors scheme tch-quant's flags map onto (README's table), and
    the offset of its codes."""
    name = flags.scheme
    if name == "custom":
        return custom_scheme(flags, layout)
    if name == "uintx-weight-only":
        group = flags.group_size or 64
        args = dict(num_bits=flags.bits, type="int", symmetric=False)
        if layout == "group":
            args.update(strategy="group", group_size=group)
        else:
            args.update(strategy="block", block_structure=[1, group], group_size=None)
        return "pack-quantized", args, 1 << (flags.bits - 1)
    if name == "int8-weight-only":
        args = dict(num_bits=8, type="int", symmetric=True)
        args.update(strategy_args("group" if flags.group_size else "channel", flags.group_size))
        return "int-quantized", args, 0
    if name == "float8-weight-only":
        return "float-quantized", dict(num_bits=8, type="float", symmetric=True,
                                       strategy="channel", group_size=None), 0
    raise ValueError(f"{name} has no compressed-tensors export")


def module_tensors(tensors, module):
    prefix = module + "."
    return {k[len(prefix):]: v for k, v in tensors.items()
            if k.startswith(prefix) and "." not in k[len(prefix):]}


def check_export(original, export_dir, flags_text, layout, problems, embed_ref):
    flags = tc.parse_flags(flags_text)
    custom = flags.scheme == "custom"
    scheme_name = {"name": "custom"} if custom else tc.scheme_from_flags(flags)
    label = f"{os.path.basename(os.path.normpath(export_dir))} ({flags_text.strip()})"
    index = os.path.join(export_dir, "model.safetensors.index.json")
    path = index if os.path.exists(index) else os.path.join(export_dir, "model.safetensors")
    stored, _ = tc.load(path)
    with open(os.path.join(export_dir, "config.json")) as f:
        config = json.load(f)

    def fail(what):
        problems.append(f"{label}: {what}")

    qc_json = config["quantization_config"]
    qc = QuantizationConfig.model_validate(qc_json)
    if qc_json.get("version") != CT_VERSION or qc.quant_method != "compressed-tensors":
        fail(f"quant_method/version {qc.quant_method}/{qc_json.get('version')}")
    if qc.quantization_status != "compressed":
        fail(f"quantization_status {qc.quantization_status}")
    fmt, want, off = expected_weights_args(flags, layout)
    [scheme] = qc.config_groups.values()
    if qc.format != fmt or scheme.format != fmt:
        fail(f"format {qc.format}/{scheme.format}, expected {fmt}")
    if scheme.targets != ["Linear"] or scheme.input_activations or scheme.output_activations:
        fail(f"targets/activations {scheme.targets} {scheme.input_activations}")
    weights = scheme.weights
    for key, value in want.items():
        got = getattr(weights, key)
        got = getattr(got, "value", got)
        if got != value:
            fail(f"weights.{key} = {got!r}, expected {value!r}")
    if weights.dynamic is not False:
        fail("weights.dynamic is not false")
    compressor = BaseCompressor.get_value_from_registry(fmt)

    counts = {"quantized": 0, "copied": 0}
    decompressed = {}
    bits = weights.num_bits
    packed_zp = not weights.symmetric and layout == "group" and want["strategy"] != "tensor"
    quantized_modules = set()
    for name, w in original.items():
        module = name[: -len(".weight")] if name.endswith(".weight") else None
        mine = module_tensors(stored, module) if module else {}
        if not mine or "weight_scale" not in mine:
            if name not in stored or not tc.same_bits(stored[name], w):
                fail(f"{name}: not copied unchanged")
            counts["copied"] += 1
            if module and w.dim() == 2 and module not in (qc.ignore or []):
                fail(f"{name} is left dense but {module} is not in ignore")
            continue
        counts["quantized"] += 1
        quantized_modules.add(module)
        if module in (qc.ignore or []):
            fail(f"{module} is quantized and in ignore")
        args = tc.args_from_flags(flags, w) if custom else tc.recipe(scheme_name, w)
        q, s, zp = tc.torchao_reference(w, args, scheme_name["name"])
        rows = w.shape[0]
        s2 = s.reshape(1 if want["strategy"] == "tensor" else (rows, -1)).contiguous()
        if not tc.same_bits(mine["weight_scale"], s2):
            fail(f"{module}.weight_scale differs from torchao's scale")
        if fmt == "pack-quantized":
            signed = (q.to(torch.int32) - off).to(torch.int8)
            expect = {"weight_packed": pack_to_int32(signed, bits), "weight_shape": torch.tensor(w.shape)}
            zero_point = None
            if not weights.symmetric:
                zp_signed = (zp.to(torch.int32) - off).to(torch.int8).reshape(s2.shape).contiguous()
                expect["weight_zero_point"] = (pack_to_int32(zp_signed, bits, packed_dim=0)
                                               if packed_zp else zp_signed)
                zero_point = zp_signed
            elif zp is not None and not bool((zp.to(torch.int32) == off).all()):
                fail(f"{module}: torchao's zero point is not {off} everywhere, yet symmetric")
            for key, t in expect.items():
                if not tc.same_bits(mine.get(key), t):
                    fail(f"{module}.{key} differs from compressed-tensors' packing of torchao's")
            if not tc.same_bits(unpack_from_int32(mine["weight_packed"], bits, w.shape), signed):
                fail(f"{module}: unpack_from_int32 does not give torchao's codes - {off}")
            codes = signed
        else:
            want_codes = q if off == 0 else (q.to(torch.int32) - off).to(torch.int8)
            if not tc.same_bits(mine.get("weight"), want_codes):
                fail(f"{module}.weight differs from torchao's codes - {off}")
            codes, zero_point, expect = want_codes, None, {}
        allowed = set(expect) | {"weight_scale"} if fmt == "pack-quantized" else {"weight", "weight_scale"}
        if set(mine) - {"bias"} != allowed:
            fail(f"{module}: stored {sorted(mine)}, expected {sorted(allowed)}")
        state = {k: v for k, v in mine.items() if k.startswith("weight")}
        try:
            dense = compressor.decompress(state, scheme)["weight"]
            own = dequantize(x_q=codes, scale=s2, zero_point=zero_point, args=weights)
        except Exception as e:  # noqa: BLE001 - a file that does not fit its config
            fail(f"{module}: compressed-tensors cannot decompress it: {e}")
            continue
        if not tc.same_bits(dense, own):
            fail(f"{module}: decompressed weight differs from compressed-tensors' dequantize")
        ref = tc.dequantize(q, s, zp, args, w.dtype)
        if not tc.same_bits(dense.to(w.dtype), ref):
            diff = (dense.to(torch.float32) - ref.to(torch.float32)).abs().max().item()
            fail(f"{module}: decompressed weight differs from torchao's dequantize_affine "
                 f"(max |diff| {diff})")
        decompressed[module] = dense
    extra = set(stored) - set(original) - {
        f"{m}.{k}" for m in quantized_modules for k in module_tensors(stored, m)}
    if extra:
        fail(f"unexpected tensors {sorted(extra)[:5]}")
    if counts["quantized"] == 0:
        fail("nothing quantized")

    result = dict(counts)
    if packed_zp:
        result["transformers"] = check_group_refused(export_dir, fail)
    else:
        result.update(check_transformers(export_dir, stored, quantized_modules, decompressed,
                                         fail, embed_ref))
    return label, result


def quiet(fn):
    """Runs fn with the clients' progress bars and warnings kept off stdout."""
    import transformers

    buf = io.StringIO()
    log = transformers.utils.logging
    handler = logging.StreamHandler(buf)
    log.disable_default_handler()
    log.add_handler(handler)
    try:
        with warnings.catch_warnings(), redirect_stdout(buf), redirect_stderr(buf):
            warnings.simplefilter("ignore")
            try:
                return fn(), buf.getvalue()
            except Exception as e:  # noqa: BLE001 - reported by the caller
                return e, buf.getvalue()
    finally:
        log.remove_handler(handler)
        log.enable_default_handler()


def check_group_refused(export_dir, fail):
    from transformers import AutoModel

    model, log = quiet(lambda: AutoModel.from_pretrained(export_dir))
    if not isinstance(model, Exception):
        fail("the group layout loads in transformers now: make it the default (README)")
        return "loaded"
    if "weight_zero_point" not in log or "size mismatch" not in log:
        fail(f"transformers failed otherwise than on the packed zero point: {model}")
    return "refused (packed zero point, as expected)"


def inputs_for(model_dir, config):
    from transformers import AutoTokenizer

    if os.path.exists(os.path.join(model_dir, "tokenizer.json")):
        tok = AutoTokenizer.from_pretrained(model_dir)
        return dict(tok(SENTENCES, padding=True, return_tensors="pt"))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, config.vocab_size, (4, 12), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def embeddings(model, inputs):
    with torch.no_grad():
        out = model(**inputs).last_hidden_state.to(torch.float32)
    mask = inputs["attention_mask"].unsqueeze(-1).to(torch.float32)
    pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def reference_embeddings(model_dir):
    from transformers import AutoModel

    model, log = quiet(lambda: AutoModel.from_pretrained(model_dir).eval())
    if isinstance(model, Exception):
        raise RuntimeError(f"the float model does not load: {model}\n{log}")
    inputs = inputs_for(model_dir, model.config)
    return inputs, embeddings(model, inputs)


def check_transformers(export_dir, stored, modules, decompressed, fail, embed_ref):
    from transformers import AutoModel

    model, log = quiet(lambda: AutoModel.from_pretrained(export_dir).eval())
    if isinstance(model, Exception):
        fail(f"transformers does not load it: {model}\n{log[-2000:]}")
        return {"transformers": "FAILED"}
    if "MISMATCH" in log or "UNEXPECTED" in log or "MISSING" in log:
        fail(f"transformers' load report: {log[-2000:]}")
    prefix = getattr(model, "base_model_prefix", "")
    named = dict(model.named_modules())

    def find(module):
        return named.get(module) or named.get(module.removeprefix(prefix + "."))

    for module in sorted(modules):
        m = find(module)
        if m is None:
            fail(f"transformers' model has no module {module}")
            continue
        for key, t in module_tensors(stored, module).items():
            if key == "bias":
                continue
            if not tc.same_bits(getattr(m, key, None), t):
                fail(f"transformers holds another {module}.{key} than the file's")
    inputs, ref = embed_ref
    emb, log = quiet(lambda: embeddings(model, inputs))
    if isinstance(emb, Exception):
        fail(f"forward failed: {emb}\n{log[-2000:]}")
        return {"transformers": "FAILED"}
    for module in sorted(modules):
        m = find(module)
        if m is None or module not in decompressed:
            continue
        if not tc.same_bits(m.weight.data, decompressed[module]):
            fail(f"transformers' decompressed {module}.weight differs from the compressor's")
    cos = (emb * ref).sum(-1)
    return {"transformers": "loaded", "cosine_min": cos.min().item(),
            "cosine_mean": cos.mean().item()}


def make_synthetic(out_dir):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=128, hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=128,
                        max_position_embeddings=64, initializer_range=0.2)
    model = BertModel(config).to(torch.bfloat16).eval()
    os.makedirs(out_dir, exist_ok=True)
    quiet(lambda: model.save_pretrained(out_dir, max_shard_size="60KB"))
    index = os.path.join(out_dir, "model.safetensors.index.json")
    if not os.path.exists(index):
        raise RuntimeError("save_pretrained wrote no sharded checkpoint")
    print(index)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("original", nargs="?", help="the float checkpoint (.safetensors or index)")
    p.add_argument("--export", nargs=2, action="append", default=[], metavar=("DIR", "FLAGS"))
    p.add_argument("--make-synthetic", metavar="DIR")
    a = p.parse_args()
    if a.make_synthetic:
        make_synthetic(a.make_synthetic)
        return 0
    if not a.original or not a.export:
        p.error("give the original checkpoint and at least one --export")
    assert compressed_tensors.__version__.startswith(CT_VERSION), compressed_tensors.__version__
    original, _ = tc.load(a.original)
    embed_ref = reference_embeddings(os.path.dirname(os.path.abspath(a.original)))
    problems = []
    for export_dir, flags in a.export:
        layout = "group" if "--ct-asymmetric group" in flags else "block"
        try:
            label, r = check_export(original, export_dir, flags, layout, problems, embed_ref)
        except Exception as e:  # noqa: BLE001 - reported as a mismatch
            problems.append(f"{export_dir} ({flags}): {type(e).__name__}: {e}")
            continue
        line = f"{label}: {r['quantized']} quantized, {r['copied']} copied; " \
               f"transformers: {r['transformers']}"
        if "cosine_min" in r:
            line += (f"; cosine to the float model's embeddings: min {r['cosine_min']:.6f}, "
                     f"mean {r['cosine_mean']:.6f}")
        print(line)
    for problem in problems:
        print("MISMATCH", problem)
    print("compressed-tensors check:", "FAILED" if problems else "all bit-identical")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
