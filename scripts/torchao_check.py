#!/usr/bin/env python3
"""Checks `tch-quant quantize` outputs against torchao itself, bit for bit.

For every quantized file given, and every tensor of the original
checkpoint:

- a quantized tensor W: the file's scale, zero point and codes (unpacked with
  torchao's own `bitpacking.unpack`) must equal, bit for bit (same dtype,
  shape and bits, NaN and signed zeros included), what torchao computes from
  the original W with the recipe's arguments (`choose_qparams_affine` +
  `quantize_affine`, including the int4 layout's `pre_process` padding);
  packed codes are compared after the `.to(torch.uint8)` that packing
  applies (torchao's int32 code for NaN, -2^31, packs as its low byte, 0);
  the packed shards must equal torchao's `bitpacking.pack` of those codes; and
  torchao's `dequantize_affine` of the file's tensors must equal torchao's
  quantize -> dequantize of W. For presets the recorded arguments must be the
  recipe's, which this script states independently from
  `torchao/quantization/quant_api.py` v0.11.0; where torchao's config path runs
  on this machine (int8, float8, uintx) its AffineQuantizedTensor is compared
  too (`get_plain()`, packed shards and `dequantize()`).
- any other tensor must be copied unchanged.

With `--expect QUANTIZED "FLAGS"`, the arguments are taken from the
`tch-quant quantize` flags that made QUANTIZED (`--scheme ...` and, for a
custom scheme, `--mapping`, `--dtype`, `--granularity`, ...), resolved here
as the CLI documents them and with torchao's own defaults for flags left out,
rather than from the file: the file's scheme and per-tensor records must then
state exactly those arguments. A custom scheme's file is only checked
against such flags (its own record would check nothing); a preset's file
without `--expect` is checked against the recipe its recorded scheme names.

With `--dequantized QUANTIZED RESTORED`, the output of `tch-quant dequantize`
on QUANTIZED must equal torchao's dequantization too.

A file quantized with `--semantics 0.18` (its metadata records
`tch_quant.torchao_version` 0.18.0) is checked with torchao 0.18.0 instead
(.venv-ao18, `make venv-ao18`): its qdata, scale and zero point must equal,
bit for bit, the tensor subclass torchao 0.18's version-2 config stores for
the original W (`Int8WeightOnlyConfig` -> `Int8Tensor`,
`Float8WeightOnlyConfig` -> `Float8Tensor`, `IntxWeightOnlyConfig` ->
`IntxUnpackedToInt8Tensor`, through the config's own `_..._quantize_tensor`),
its records must state that tensor's block size and dtypes, torchao's
`dequantize()` of the file's parts must equal its `dequantize()`, and
`--dequantized` outputs must equal it too. A file of the other release than
the running torchao's is reported, not checked.

Prints the counts per file and exits 1 on any difference. Needs torch 2.13.0
and torchao 0.11.0 (the project's .venv) or 0.18.0 (.venv-ao18).

    python scripts/torchao_check.py model.safetensors q-int4.safetensors q-int8.safetensors
    python scripts/torchao_check.py model.safetensors c.safetensors --expect c.safetensors \
        "--scheme custom --mapping symmetric --dtype int4 --granularity per-group:32"
"""

import argparse
import json
import math
import os
import shlex
import sys
from collections import Counter

import torch
import torchao
from safetensors import safe_open

TORCHAO_VERSIONS = ("0.11.0", "0.18.0")
if torchao.__version__ == "0.11.0":
    from torchao.dtypes.uintx.bitpacking import pack, unpack
    from torchao.dtypes.uintx.tensor_core_tiled_layout import TensorCoreTiledLayout
    from torchao.quantization.quant_primitives import (
        MappingType,
        _get_and_check_qmin_qmax,
        _quantize_affine_no_dtype_cast,
        ZeroPointDomain,
        choose_qparams_affine,
        choose_qparams_and_quantize_affine_hqq,
        dequantize_affine,
        quantize_affine,
    )

TORCHAO_VERSION = torchao.__version__
_SUB_BYTE_INT = {getattr(torch, f"int{b}") for b in range(1, 8)}
F32_EPS = torch.finfo(torch.float32).eps


def load(path):
    """All tensors and every file's metadata of a .safetensors or index."""
    if path.endswith(".json"):
        with open(path) as f:
            index = json.load(f)
        folder = os.path.dirname(path)
        files = [os.path.join(folder, f) for f in sorted(set(index["weight_map"].values()))]
    else:
        files = [path]
    tensors, metadata = {}, []
    for file in files:
        with safe_open(file, framework="pt") as f:
            metadata.append(f.metadata() or {})
            for name in f.keys():
                tensors[name] = f.get_tensor(name)
    return tensors, metadata


def same_bits(a, b):
    """Equal dtype, shape and bits (so NaN == NaN and -0.0 != 0.0)."""
    if a is None or b is None:
        return a is None and b is None
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    a, b = a.contiguous().cpu(), b.contiguous().cpu()
    if a.dtype.is_floating_point:
        view = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        a, b = a.view(view), b.view(view)
    return torch.equal(a, b)


def torch_dtype(name):
    return None if name is None else getattr(torch, name)


def recipe(scheme, w):
    """The arguments torchao 0.11's config passes for weight w (quant_api.py)."""
    name = scheme["name"]
    lead = (1,) * (w.dim() - 1)
    if name == "int8-weight-only":  # _int8_weight_only_quantize_tensor
        group = scheme.get("group_size") or w.shape[-1]
        return dict(mapping_type=MappingType.SYMMETRIC, block_size=lead + (group,),
                    target_dtype=torch.int8, quant_min=None, quant_max=None, eps=F32_EPS,
                    scale_dtype=None, zero_point_dtype=torch.int64, preserve_zero=True,
                    zero_point_domain=ZeroPointDomain.INT)
    if name == "int4-weight-only" and scheme.get("use_hqq"):
        # the same arguments; to_affine_quantized_intx(use_hqq=True) hands
        # HQQ the zero point dtype as compute dtype, which the scale gets too
        return dict(mapping_type=MappingType.ASYMMETRIC,
                    block_size=lead + (scheme["group_size"],), target_dtype=torch.int32,
                    quant_min=0, quant_max=15, eps=1e-6, scale_dtype=torch.bfloat16,
                    zero_point_dtype=torch.bfloat16, preserve_zero=False,
                    zero_point_domain=ZeroPointDomain.FLOAT)
    if name == "uintx-weight-only" and scheme.get("use_hqq"):  # _uintx_weight_only_transform, use_hqq
        return dict(mapping_type=MappingType.ASYMMETRIC, block_size=lead + (scheme["group_size"],),
                    target_dtype=torch.uint8, quant_min=0, quant_max=2 ** scheme["bits"] - 1,
                    eps=None, scale_dtype=None, zero_point_dtype=None, preserve_zero=False,
                    zero_point_domain=ZeroPointDomain.FLOAT)
    if name == "int4-weight-only":  # _int4_weight_only_quantize_tensor, TensorCoreTiledLayout
        return dict(mapping_type=MappingType.ASYMMETRIC,
                    block_size=lead + (scheme["group_size"],), target_dtype=torch.int32,
                    quant_min=0, quant_max=15, eps=1e-6, scale_dtype=None,
                    zero_point_dtype=torch.bfloat16, preserve_zero=False,
                    zero_point_domain=ZeroPointDomain.FLOAT)
    if name == "uintx-weight-only":  # _uintx_weight_only_transform, use_hqq=False
        # torchao writes block_size=(1, group_size): the same for the 2-D
        # weights it accepts.
        return dict(mapping_type=MappingType.ASYMMETRIC, block_size=lead + (scheme["group_size"],),
                    target_dtype=getattr(torch, f"uint{scheme['bits']}"), quant_min=None,
                    quant_max=None, eps=F32_EPS, scale_dtype=None,
                    zero_point_dtype=torch.int32, preserve_zero=True,
                    zero_point_domain=ZeroPointDomain.INT)
    if name == "float8-weight-only":  # from_hp_to_floatx -> from_hp_to_intx
        fp8 = torch.float8_e4m3fn
        return dict(mapping_type=MappingType.SYMMETRIC, block_size=lead + (w.shape[-1],),
                    target_dtype=fp8, quant_min=math.ceil(torch.finfo(fp8).min),
                    quant_max=math.ceil(torch.finfo(fp8).max), eps=F32_EPS, scale_dtype=None,
                    zero_point_dtype=None, preserve_zero=True,
                    zero_point_domain=ZeroPointDomain.NONE)
    raise ValueError(f"unknown preset {name}")


def parse_flags(text):
    """The `tch-quant quantize` flags that matter to the arguments (others ignored)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--scheme", required=True)
    p.add_argument("--group-size", type=int)
    p.add_argument("--bits", type=int)
    p.add_argument("--hqq", action="store_true")
    for flag in ("--mapping", "--dtype", "--granularity", "--preserve-zero",
                 "--zero-point-domain", "--scale-dtype", "--zero-point-dtype"):
        p.add_argument(flag)
    for flag in ("--quant-min", "--quant-max", "--eps"):
        p.add_argument(flag, type=float)
    flags, _ = p.parse_known_args(shlex.split(text))
    return flags


def scheme_from_flags(flags):
    """The scheme a preset's flags select, with the CLI's documented defaults."""
    name = flags.scheme
    if name == "int8-weight-only":
        return {"name": name, **({"group_size": flags.group_size} if flags.group_size else {})}
    hqq = {"use_hqq": True} if flags.hqq else {}
    if name == "int4-weight-only":
        return {"name": name, "group_size": flags.group_size or 128, **hqq}
    if name == "uintx-weight-only":
        return {"name": name, "bits": flags.bits, "group_size": flags.group_size or 64, **hqq}
    if name == "float8-weight-only":
        return {"name": name}
    raise ValueError(f"unknown preset {name}")


def torch_name(name):
    return getattr(torch, name.strip().lower().removeprefix("torch."))


def integral(v):
    """torchao's recipes pass ints for integer quant ranges."""
    return int(v) if v is not None and float(v).is_integer() else v


def args_from_flags(flags, w):
    """The custom scheme's arguments as its flags state them; a flag left out
    stays None (or takes choose_qparams_affine's default), for torchao to resolve."""
    granularity = flags.granularity.strip().lower().replace("_", "-")
    kind, _, n = granularity.partition(":")
    shape = tuple(w.shape)
    if kind == "per-tensor":
        block = shape
    elif kind == "per-row":
        block = (1,) * (w.dim() - 1) + shape[-1:]
    elif kind == "per-axis":
        block = list(shape)
        block[int(n)] = 1
        block = tuple(block)
    elif kind == "per-group":
        block = (1,) * (w.dim() - 1) + (int(n),)
    else:
        raise ValueError(f"unknown granularity {flags.granularity}")
    preserve_zero = {None: True, "true": True, "false": False}[
        flags.preserve_zero and flags.preserve_zero.lower()]
    domain = flags.zero_point_domain or "int"
    return dict(mapping_type=MappingType[flags.mapping.upper().replace("-", "_")],
                block_size=block, target_dtype=torch_name(flags.dtype),
                quant_min=integral(flags.quant_min), quant_max=integral(flags.quant_max),
                eps=flags.eps,
                scale_dtype=flags.scale_dtype and torch_name(flags.scale_dtype),
                zero_point_dtype=flags.zero_point_dtype and torch_name(flags.zero_point_dtype),
                preserve_zero=preserve_zero, zero_point_domain=ZeroPointDomain[domain.upper()])


def recorded_matches(args, r, w):
    """Whether the record states exactly these arguments (None resolved as torchao does)."""
    qmin, qmax = _get_and_check_qmin_qmax(args["target_dtype"], args["quant_min"], args["quant_max"])
    domain = args["zero_point_domain"]
    if domain == ZeroPointDomain.NONE:
        zp_dtype = None
    elif args["zero_point_dtype"] is not None:
        zp_dtype = args["zero_point_dtype"]
    elif args["mapping_type"] == MappingType.ASYMMETRIC and domain == ZeroPointDomain.INT:
        zp_dtype = torch.int32
    else:
        zp_dtype = w.dtype
    eps = args["eps"] if args["eps"] is not None else torch.finfo(w.dtype).eps
    expected = dict(block_size=list(args["block_size"]), mapping_type=args["mapping_type"].name.lower(),
                    target_dtype=str(args["target_dtype"]).removeprefix("torch."),
                    quant_min=qmin, quant_max=qmax, eps=eps,
                    preserve_zero=args["preserve_zero"], zero_point_domain=domain.name.lower(),
                    scale_dtype=str(args["scale_dtype"] or w.dtype).removeprefix("torch."),
                    zero_point_dtype=None if zp_dtype is None else str(zp_dtype).removeprefix("torch."),
                    shape=list(w.shape), dtype=str(w.dtype).removeprefix("torch."))
    return all(r[k] == v for k, v in expected.items()), expected


def hqq_reference(w, args, scheme_name):
    """torchao's codes, scale and zero point for w with use_hqq=True, as
    to_affine_quantized_intx computes them: the layout's pre_process, then
    choose_qparams_and_quantize_affine_hqq with nbits = log2(quant_max + 1),
    axis 1, group max(block_size), the zero point dtype (else the weight's) as
    compute dtype, on w's device; codes cast to the target dtype. Scale and
    zero point come back [numel / group, 1]; here they are [..., K / group],
    the shape tch-quant stores (the same values)."""
    x = w
    if scheme_name == "int4-weight-only":
        x = TensorCoreTiledLayout(inner_k_tiles=8).pre_process(w)
    block = args["block_size"]
    data, scale, zero, _ = choose_qparams_and_quantize_affine_hqq(
        x, nbits=int(math.log2(args["quant_max"] + 1)), group_size=max(block),
        axis=1 if block[0] == 1 else 0,
        compute_dtype=args["zero_point_dtype"] if args["zero_point_dtype"] is not None else x.dtype,
        device=x.device, verbose=False, raw_output=False)
    q = data.to(args["target_dtype"])
    grouped = x.shape[:-1] + (x.shape[-1] // block[-1],)
    scale, zero = scale.reshape(grouped), zero.reshape(grouped)
    if x is not w:
        rows, cols = w.shape[-2:]
        groups = cols // block[-1]
        q = q[..., :rows, :cols]
        scale, zero = scale[..., :rows, :groups], zero[..., :rows, :groups]
    return q, scale, zero


def torchao_reference(w, args, scheme_name, use_hqq=False, torch_threads=None):
    """torchao's codes, scale and zero point for w, as its recipe computes them.
    HQQ runs at the libtorch thread count the file records: its solver stops
    on a float32 mean that libtorch splits by thread count, so its bits
    depend on it."""
    if use_hqq:
        saved = torch.get_num_threads()
        torch.set_num_threads(torch_threads or saved)
        try:
            return hqq_reference(w, args, scheme_name)
        finally:
            torch.set_num_threads(saved)
    x = w
    if scheme_name == "int4-weight-only":
        # from_hp_to_intx runs the layout's pre_process first: the last two
        # dims zero-padded to multiples of 8 and 1024, sliced off again below.
        # Values are unchanged (the padding forms whole groups of its own),
        # but the scale keeps a dim of K / group_size entries even when one
        # group spans the whole row.
        x = TensorCoreTiledLayout(inner_k_tiles=8).pre_process(w)
    scale, zero_point = choose_qparams_affine(
        x, args["mapping_type"], args["block_size"], args["target_dtype"], args["quant_min"],
        args["quant_max"], args["eps"], args["scale_dtype"], args["zero_point_dtype"],
        args["preserve_zero"], args["zero_point_domain"])
    if args["zero_point_domain"] == ZeroPointDomain.NONE:
        zero_point = None
    if args["target_dtype"] in _SUB_BYTE_INT:
        # torchao 0.11's final `.to(torch.intN)` fails; tch-quant stores those
        # codes in int8, so compare with torchao's codes before that cast.
        qmin, qmax = _get_and_check_qmin_qmax(args["target_dtype"], args["quant_min"], args["quant_max"])
        q = _quantize_affine_no_dtype_cast(
            x, args["block_size"], scale, zero_point, qmin, qmax, args["target_dtype"],
            args["zero_point_domain"].name).to(torch.int8)
    else:
        q = quantize_affine(x, args["block_size"], scale, zero_point, args["target_dtype"],
                            args["quant_min"], args["quant_max"], args["zero_point_domain"])
    if x is not w:
        rows, cols = w.shape[-2:]
        groups = cols // args["block_size"][-1]
        q = q[..., :rows, :cols]
        scale, zero_point = scale[..., :rows, :groups], zero_point[..., :rows, :groups]
    return q, scale, zero_point


def dequantize(q, scale, zero_point, args, output_dtype):
    """torchao's dequantization, called as AffineQuantizedTensor.dequantize calls it,
    with the quant range the quantization used (a range left out resolves to the target
    dtype's, not to that of the dtype holding the codes: uint4 codes live in uint8)."""
    qmin, qmax = _get_and_check_qmin_qmax(args["target_dtype"], args["quant_min"], args["quant_max"])
    return dequantize_affine(q, tuple(args["block_size"]), scale, zero_point, q.dtype,
                             qmin, qmax, args["zero_point_domain"], output_dtype=output_dtype)


def config_path(scheme, w):
    """torchao's own config path where it runs here: (int_data, scale, zp, dequantized, shards)."""
    from torchao.quantization import quant_api

    name = scheme["name"]
    if name == "int8-weight-only":
        aqt = quant_api._int8_weight_only_quantize_tensor(
            w, quant_api.Int8WeightOnlyConfig(group_size=scheme.get("group_size"),
                                              set_inductor_config=False))
        shards = None
    elif name == "float8-weight-only":
        aqt = quant_api._float8_weight_only_quant_tensor(
            w, quant_api.Float8WeightOnlyConfig(set_inductor_config=False))
        shards = None
    elif name == "uintx-weight-only" and scheme.get("use_hqq") and w.dim() == 2:
        # PlainLayout: the codes as HQQ returns them, scale and zero point
        # [numel / group, 1] (compared as [..., K / group]); at the thread
        # count the file records (see torchao_reference)
        module = torch.nn.Module()
        module.weight = torch.nn.Parameter(w.clone(), requires_grad=False)
        saved = torch.get_num_threads()
        torch.set_num_threads(scheme.get("torch_threads") or saved)
        try:
            quant_api._uintx_weight_only_transform(module, quant_api.UIntXWeightOnlyConfig(
                dtype=getattr(torch, f"uint{scheme['bits']}"), group_size=scheme["group_size"],
                use_hqq=True, set_inductor_config=False))
        finally:
            torch.set_num_threads(saved)
        aqt = module.weight
        data, scale, zero_point = aqt.tensor_impl.get_plain()
        grouped = w.shape[:-1] + (w.shape[-1] // scheme["group_size"],)
        return (data, scale.reshape(grouped), zero_point.reshape(grouped), aqt.dequantize(),
                None)
    elif name == "uintx-weight-only" and scheme["bits"] < 8 and w.dim() == 2:
        module = torch.nn.Module()
        module.weight = torch.nn.Parameter(w.clone(), requires_grad=False)
        quant_api._uintx_weight_only_transform(module, quant_api.UIntXWeightOnlyConfig(
            dtype=getattr(torch, f"uint{scheme['bits']}"), group_size=scheme["group_size"],
            set_inductor_config=False))
        aqt = module.weight
        shards = aqt.tensor_impl.int_data.get_shards()
    else:
        # int4's TensorCoreTiledLayout repacks for the tinygemm kernel and
        # reads codes back through a matmul; it is checked above through the
        # recipe's own choose_qparams_affine + quantize_affine calls.
        return None
    data, scale, zero_point = aqt.tensor_impl.get_plain()
    return data, scale, zero_point, aqt.dequantize(), shards


def granularity_0_18(text):
    """A recorded granularity (`per-row`, `per-tensor`, `per-group:G`, `per-axis:A`) as torchao 0.18's."""
    from torchao.quantization import PerAxis, PerGroup, PerRow, PerTensor

    kind, _, n = text.partition(":")
    return {"per-row": PerRow, "per-tensor": PerTensor}[kind]() if not n else \
        {"per-group": PerGroup, "per-axis": PerAxis}[kind](int(n))


def config_0_18(scheme, w):
    """torchao 0.18's version-2 tensor for w under the recorded scheme."""
    from torchao.quantization import quant_api
    from torchao.quantization.quant_primitives import MappingType as MT

    name = scheme["name"]
    gran = granularity_0_18(scheme["granularity"])
    if name == "int8-weight-only-v2":
        return quant_api._int8_weight_only_quantize_tensor(
            w, quant_api.Int8WeightOnlyConfig(granularity=gran, set_inductor_config=False))
    if name == "float8-weight-only-v2":
        return quant_api._float8_weight_only_quant_tensor(
            w, quant_api.Float8WeightOnlyConfig(weight_dtype=torch_dtype(scheme["weight_dtype"]),
                                                granularity=gran, set_inductor_config=False))
    if name == "intx-weight-only":
        return quant_api._intx_weight_only_quantize_tensor(
            w, quant_api.IntxWeightOnlyConfig(weight_dtype=getattr(torch, f"int{scheme['bits']}"),
                                              granularity=gran,
                                              mapping_type=MT[scheme["mapping_type"].upper()]))
    raise ValueError(f"no torchao 0.18 config for scheme {name}")


def check_file_0_18(original, path, ours, records, scheme, restored):
    """A --semantics 0.18 file against torchao 0.18's own tensors."""
    counts, problems = Counter(), []

    def check(what, ok, name):
        counts[what, ok] += 1
        if not ok:
            problems.append(f"{path}: {name}: {what} differs")

    def name_of(dtype):
        return str(dtype).removeprefix("torch.")

    expected_names = set()
    for name, w in original.items():
        if name not in records:
            expected_names.add(name)
            check("copied", name in ours and same_bits(ours[name], w), name)
            continue
        r = records[name]
        t = config_0_18(scheme, w)
        zp = getattr(t, "zero_point", None)
        stated = dict(shape=list(w.shape), dtype=name_of(w.dtype), block_size=list(t.block_size),
                      scale_dtype=name_of(t.scale.dtype),
                      zero_point_dtype=None if zp is None else name_of(zp.dtype),
                      semantics="0.18", codes={"layout": "plain", "dtype": name_of(t.qdata.dtype)})
        ok = all(r.get(k) == v for k, v in stated.items())
        check("recorded args", ok, name)
        if not ok:
            problems.append(f"{path}: {name}: recorded {r}, torchao's tensor gives {stated}")
        names = [f"{name}.qdata", f"{name}.scale"] + ([f"{name}.zero_point"] if zp is not None else [])
        expected_names.update(names)
        our_q, our_scale = ours.get(names[0]), ours.get(names[1])
        our_zp = ours.get(names[2]) if zp is not None else None
        check("codes", same_bits(our_q, t.qdata), name)
        check("scale", same_bits(our_scale, t.scale), name)
        check("zero_point", same_bits(our_zp, zp), name)
        want = t.dequantize()
        ok = our_q is not None and our_scale is not None and (zp is None or our_zp is not None)
        if ok:
            # torchao's dequantize() of the file's parts: the same tensor
            # with them in place of its own.
            t.qdata, t.scale = our_q, our_scale
            if zp is not None:
                t.zero_point = our_zp
            ok = same_bits(t.dequantize(), want)
        check("dequantized", ok, name)
        if restored is not None:
            back = restored.get(name)
            ok = back is not None and (same_bits(back, want) if back.dtype == w.dtype
                                       else same_bits(back, t.dequantize(back.dtype)))
            check("tch-quant dequantize", ok, name)
    extra = set(ours) - expected_names
    if extra:
        problems.append(f"{path}: unexpected tensors {sorted(extra)[:5]}")
    return problems, counts, scheme


def check_file(original, path, restored_path, device, flags):
    ours, metadata = load(path)
    infos = [m for m in metadata if "tch_quant.format" in m]
    if len(infos) != len(metadata):
        return [f"{path}: a file without tch_quant metadata"], Counter(), "?"
    scheme = json.loads(infos[0]["tch_quant.scheme"])
    records = {}
    for m in infos:
        records.update(json.loads(m["tch_quant.tensors"]))
        if m["tch_quant.torchao_version"] != TORCHAO_VERSION:
            return [f"{path}: reproduces torchao {m['tch_quant.torchao_version']}; check it with "
                    f"that torchao (this one is {TORCHAO_VERSION})"], Counter(), "?"
    restored = load(restored_path)[0] if restored_path else None
    if TORCHAO_VERSION == "0.18.0":
        if flags is not None:
            return [f"{path}: --expect checks 0.11 files only"], Counter(), scheme
        return check_file_0_18(original, path, ours, records, scheme, restored)
    counts, problems = Counter(), []

    def check(what, ok, name):
        counts[what, ok] += 1
        if not ok:
            problems.append(f"{path}: {name}: {what} differs")

    preset = scheme["name"] != "custom"
    if flags is not None:
        custom = flags.scheme == "custom"
        stated = {"name": "custom"} if custom else scheme_from_flags(flags)
        recorded = {k: v for k, v in scheme.items() if k != "torch_threads"}
        ok = scheme["name"] == "custom" if custom else stated == recorded
        check("scheme", ok, path)
        if not ok:
            problems.append(f"{path}: the file records scheme {scheme}, the flags give {stated}")
            return problems, counts, scheme
    elif not preset:
        return [f"{path}: a custom scheme needs --expect {path} \"FLAGS\" (the flags "
                "that made it), to check its records against"], Counter(), scheme

    expected_names = set()
    for name, w in original.items():
        if name not in records:
            expected_names.add(name)
            check("copied", name in ours and same_bits(ours[name], w), name)
            continue
        r = records[name]
        w = w.to(device)
        args = recipe(scheme, w) if preset else args_from_flags(flags, w)
        ok, expected = recorded_matches(args, r, w)
        check("recorded args", ok, name)
        if not ok:
            problems.append(f"{path}: {name}: recorded {r} but the recipe gives {expected}")
        q, scale, zero_point = torchao_reference(w, args, scheme["name"],
                                                 use_hqq=scheme.get("use_hqq", False),
                                                 torch_threads=scheme.get("torch_threads"))
        dq = dequantize(q, scale, zero_point, args, w.dtype)

        codes = r["codes"]
        expected_q = q
        if codes["layout"] == "packed":
            shard_names = [f"{name}.qdata"] if codes["shards"] == 1 else \
                [f"{name}.qdata.{i}" for i in range(codes["shards"])]
            shards = [ours[n].to(device) for n in shard_names]
            our_q = unpack(shards, codes["bits"], dim=codes["dim"]).to(q.dtype)
            # What packing stores of torchao's codes: every code in the quant
            # range exactly; int4's int32 NaN code (-2^31) as its low byte.
            packed_q = q.to(torch.uint8)
            expected_q = packed_q.to(q.dtype)
            check("packed", all(same_bits(a, b) for a, b in
                                zip(shards, pack(packed_q, codes["bits"], dim=codes["dim"]))),
                  name)
        else:
            shard_names, shards = [f"{name}.qdata"], None
            our_q = ours[f"{name}.qdata"].to(device)
        our_scale = ours[f"{name}.scale"].to(device)
        zp_name = f"{name}.zero_point"
        our_zp = ours[zp_name].to(device) if r["zero_point_dtype"] is not None else None
        expected_names.update(shard_names + [f"{name}.scale"] + ([zp_name] if our_zp is not None else []))
        check("scale", same_bits(our_scale, scale), name)
        check("zero_point", same_bits(our_zp, zero_point), name)
        check("codes", same_bits(our_q, expected_q), name)
        our_dq = dequantize(our_q, our_scale, our_zp, args, w.dtype)
        check("dequantized", same_bits(our_dq, dq), name)
        if restored is not None:
            ok = name in restored
            if ok:
                back = restored[name].to(device)
                want = dq if back.dtype == w.dtype else dequantize(q, scale, zero_point, args, back.dtype)
                ok = same_bits(back, want)
            check("tch-quant dequantize", ok, name)
        if preset:
            reference = config_path(scheme, w)
            if reference is not None:
                data, c_scale, c_zp, c_dq, c_shards = reference
                plain_q = our_q if shards is None else unpack(shards, codes["bits"], dim=codes["dim"])
                ok = (same_bits(plain_q, data) and same_bits(our_scale, c_scale)
                      and same_bits(our_zp, c_zp) and same_bits(our_dq, c_dq))
                if c_shards is not None:
                    ok = ok and all(same_bits(a, b) for a, b in zip(shards, c_shards))
                check("torchao config path", ok, name)
    extra = set(ours) - expected_names
    if extra:
        problems.append(f"{path}: unexpected tensors {sorted(extra)[:5]}")
    return problems, counts, scheme


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("original", help="the checkpoint that was quantized")
    parser.add_argument("quantized", nargs="+", help="tch-quant quantize outputs")
    parser.add_argument("--dequantized", nargs=2, action="append", default=[],
                        metavar=("QUANTIZED", "RESTORED"),
                        help="also check `tch-quant dequantize QUANTIZED` output RESTORED")
    parser.add_argument("--expect", nargs=2, action="append", default=[],
                        metavar=("QUANTIZED", "FLAGS"),
                        help="the tch-quant quantize flags that made QUANTIZED, as one string; "
                             "required for custom schemes")
    parser.add_argument("--device", default="cpu", help="where torchao computes (cpu, cuda)")
    opts = parser.parse_args()
    assert torch.__version__.startswith("2.13.0"), torch.__version__
    assert torchao.__version__ in TORCHAO_VERSIONS, torchao.__version__
    original, _ = load(opts.original)
    restored_for = {q: r for q, r in opts.dequantized}
    flags_for = {q: parse_flags(f) for q, f in opts.expect}
    failed = False
    for path in opts.quantized:
        problems, counts, scheme = check_file(original, path, restored_for.get(path), opts.device,
                                              flags_for.get(path))
        kinds = sorted({k for k, _ in counts})
        summary = ", ".join(f"{k} {counts[k, True]}/{counts[k, True] + counts[k, False]}"
                            for k in kinds)
        label = scheme["name"] if isinstance(scheme, dict) else scheme
        print(f"{os.path.basename(path)} [{label}]: {summary or 'nothing checked'}")
        for p in problems[:20]:
            print(f"  MISMATCH {p}")
        failed |= bool(problems) or not counts
    print("torchao_check: " + ("FAILED" if failed else "all bit-identical"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
