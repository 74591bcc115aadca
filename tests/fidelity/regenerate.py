"""Measure real Hugging Face models and write tests/fidelity/expected.json.

This is an independent reference for shardcost: it builds every model in
``configs/`` with transformers on the ``meta`` device (nothing is allocated, so
even DeepSeek-V3 builds in seconds) and records what PyTorch itself counts:

* parameters: ``sum(p.numel() for p in model.parameters())`` plus a breakdown;
* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` for a 128-token prefill
  (``logits_to_keep=1`` and ``=0``) and for one decode step on the returned cache;
* KV cache: the bytes of every key and value tensor the cache holds after the
  prefill and after the decode step, with per-layer shapes.

It needs torch and transformers and is never imported by the test suite. Run it
from the repository root::

    python tests/fidelity/regenerate.py              # every family
    python tests/fidelity/regenerate.py --only llama # one family, merged into the file

A family that fails records ``{"error": ...}`` and the run goes on.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "configs"
EXPECTED = HERE / "expected.json"

BATCH = 1
PREFILL = 128
# Tokens past the largest sliding/chunked window for the window probe.
PROBE_EXTRA = 4


# --------------------------------------------------------------------------- helpers


def run_length(values: list[Any]) -> list[list[Any]]:
    """[a, a, b, a] -> [[0, 1, a], [2, 2, b], [3, 3, a]] (first, last, value)."""
    runs: list[list[Any]] = []
    for i, v in enumerate(values):
        if runs and runs[-1][2] == v:
            runs[-1][1] = i
        else:
            runs.append([i, i, v])
    return runs


def numel(module: Any) -> int:
    """Parameters of a module, each shared tensor counted once."""
    return sum(p.numel() for p in module.parameters())


def load_config(raw: dict[str, Any]) -> Any:
    import transformers
    from transformers import CONFIG_MAPPING

    if "model_type" in raw:
        cls = CONFIG_MAPPING[raw["model_type"]]
    else:  # AutoConfig refuses such a config: use the class its architectures name.
        cls = getattr(transformers, raw["architectures"][0]).config_class
    return cls.from_dict(raw)


def build(raw: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The model on meta, sdpa where the model accepts it, eager otherwise."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    dtype = getattr(torch, raw["torch_dtype"])
    info: dict[str, Any] = {}
    for attn in ("sdpa", "eager"):
        config = load_config(raw)
        kwargs = {
            "dtype": dtype,
            "attn_implementation": attn,
            "experts_implementation": "batched_mm",
        }
        try:
            with torch.device("meta"):
                if "model_type" in raw:
                    model = AutoModelForCausalLM.from_config(config, **kwargs)
                else:
                    cls = getattr(transformers, raw["architectures"][0])
                    model = cls._from_config(config, **kwargs)
        except ValueError as exc:
            if attn == "eager":
                raise
            info["sdpa_refused"] = str(exc).split(". ")[0] + "."
            continue
        break
    model.eval()
    info["attn_implementation"] = model.config._attn_implementation
    info["experts_implementation"] = getattr(model.config, "_experts_implementation", None)
    info["model_class"] = type(model).__name__
    return model, info


def decoder_layers(model: Any) -> tuple[str, Any]:
    """The ModuleList holding the decoder layers (name relative to the model)."""
    import torch

    n = model.config.get_text_config().num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return name, module
    raise RuntimeError("no ModuleList of num_hidden_layers decoder layers")


def layer_signature(layer: Any) -> tuple[Any, ...]:
    return tuple((n, type(c).__name__, numel(c)) for n, c in layer.named_children())


def representative_layers(model: Any, layers: Any) -> dict[int, str]:
    """Layer 0, the first layer of each distinct structure and of each layer type.

    Each is labelled with its feed-forward class (dense MLP or MoE block) and, where
    the config names layer types, its attention type.
    """
    layer_types = getattr(model.config.get_text_config(), "layer_types", None) or []
    picked = [0]
    seen = {layer_signature(layers[0])}
    for i, layer in enumerate(layers):
        sig = layer_signature(layer)
        if sig not in seen:
            seen.add(sig)
            picked.append(i)
    for kind in dict.fromkeys(layer_types):
        picked.append(layer_types.index(kind))
    reps = {}
    for i in sorted(set(picked)):
        ffn = getattr(layers[i], "mlp", None) or getattr(layers[i], "feed_forward", None)
        label = f"layer {i}: {type(ffn).__name__ if ffn is not None else '?'}"
        if i < len(layer_types):
            label += f", {layer_types[i]}"
        reps[i] = label
    return reps


# --------------------------------------------------------------------------- parameters


def decoder_stack(model: Any, layers_name: str) -> tuple[str, Any]:
    """The module that holds the decoder layers (``model``, ``transformer``, ...)."""
    parent = layers_name.rpartition(".")[0]
    return parent, model.get_submodule(parent)


def count_parameters(model: Any, layers_name: str, layers: Any, reps: dict[int, str]) -> dict:
    _, base = decoder_stack(model, layers_name)
    embed = model.get_input_embeddings()
    head = model.get_output_embeddings()
    embed_ids = {id(p) for p in embed.parameters()}
    head_own = (
        0 if head is None else sum(p.numel() for p in head.parameters() if id(p) not in embed_ids)
    )
    top_level = {}
    for name, child in base.named_children():
        if child is layers:
            continue
        top_level[name] = numel(child)
    per_layer = [numel(layer) for layer in layers]
    by_dtype: Counter[str] = Counter()
    for p in model.parameters():
        by_dtype[str(p.dtype).removeprefix("torch.")] += p.numel()
    return {
        "total": numel(model),
        "embedding": numel(embed),
        "lm_head": head_own,
        "tied": head is not None and head_own == 0,
        "decoder_stack_children": top_level,
        "layers_module": layers_name,
        "layers": run_length(per_layer),
        "layers_total": sum(per_layer),
        "representative_layers": {
            str(i): {
                "what": what,
                "total": per_layer[i],
                "children": {n: numel(c) for n, c in layers[i].named_children()},
                # Parameters whose dtype differs from the model's (e.g. fp32 routers).
                "other_dtype": {
                    n: str(p.dtype).removeprefix("torch.")
                    for n, p in layers[i].named_parameters()
                    if p.dtype != model.dtype
                },
                # Buffers are not parameters (e.g. DeepSeek-V3's e_score_correction_bias).
                "buffers": {n: b.numel() for n, b in layers[i].named_buffers()},
            }
            for i, what in reps.items()
        },
        "by_dtype": dict(sorted(by_dtype.items())),
    }


# --------------------------------------------------------------------------- FLOPs


def counted(model: Any, **inputs: Any) -> tuple[Any, int, dict[str, dict[str, int]]]:
    """Run the model under FlopCounterMode: output, total, per-module {op: flops}."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False, depth=None) as counter:
        out = model(**inputs)
    prefix = type(model).__name__
    per_module: dict[str, dict[str, int]] = {}
    for name, ops in counter.get_flop_counts().items():
        if name == "Global":
            continue
        path = "" if name == prefix else name.removeprefix(prefix + ".")
        per_module[path] = {str(op): int(n) for op, n in sorted(ops.items(), key=str)}
    return out, int(counter.get_total_flops()), per_module


def module_breakdown(
    model: Any, layers_name: str, layers: Any, reps: dict[int, str], per_module: dict
) -> dict[str, Any]:
    """Per-module FLOPs for the top-level children and the representative layers."""
    parent, stack = decoder_stack(model, layers_name)
    names = [n for n, _ in model.named_children()]
    prefix = f"{parent}." if parent else ""
    names += [prefix + n for n, c in stack.named_children() if c is not layers]
    for i in reps:
        names.append(f"{layers_name}.{i}")
        names += [f"{layers_name}.{i}.{n}" for n, _ in layers[i].named_children()]
    out = {}
    for name in names:
        ops = per_module.get(name)
        if ops is not None:
            out[name] = {"total": sum(ops.values()), "by_op": ops}
    return out


def cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


# --------------------------------------------------------------------------- KV cache


def describe_cache(cache: Any) -> dict[str, Any]:
    """Bytes of every key/value tensor held, and the shape of each kind of layer."""
    total = 0
    kinds: dict[tuple[Any, ...], int] = {}
    rows = []
    for i, layer in enumerate(cache.layers):
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        held = [t for t in (keys, values) if t is not None and hasattr(t, "numel")]
        total += sum(t.numel() * t.element_size() for t in held)
        row = {
            "class": type(layer).__name__,
            "key_shape": list(keys.shape) if keys is not None else None,
            "value_shape": list(values.shape) if values is not None else None,
            "dtype": str(keys.dtype).removeprefix("torch.") if keys is not None else None,
            "seq_len": int(keys.shape[-2]) if keys is not None else 0,
        }
        window = getattr(layer, "sliding_window", None)
        if window is not None:
            row["sliding_window"] = int(window)
        rows.append(row)
        kind = (row["class"], row.get("sliding_window"), row["dtype"])
        kinds.setdefault(kind, i)
    return {
        "bytes": total,
        "num_layers": len(rows),
        "seq_len_per_layer": run_length([r["seq_len"] for r in rows]),
        "first_layer_of_each_kind": {str(i): rows[i] for i in sorted(kinds.values())},
    }


def window_probe(model: Any) -> dict[str, Any] | None:
    """Prefill just past the largest window, then decode: shows the W - 1 convention."""
    import torch

    config = model.config.get_text_config()
    windows = [
        getattr(config, "sliding_window", None),
        getattr(config, "attention_chunk_size", None),
    ]
    windows = [w for w in windows if w]
    kinds = set(getattr(config, "layer_types", None) or ["sliding_attention"])
    if not windows or not kinds & {"sliding_attention", "chunked_attention"}:
        return None
    seq = max(windows) + PROBE_EXTRA
    ids = torch.zeros(BATCH, seq, dtype=torch.long, device="meta")
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        after_prefill = describe_cache(cache_of(out))
        step = torch.zeros(BATCH, 1, dtype=torch.long, device="meta")
        out = model(input_ids=step, cache=cache_of(out), use_cache=True, logits_to_keep=1)
        after_decode = describe_cache(cache_of(out))
    return {
        "prefill_tokens": seq,
        "windows": sorted(set(windows)),
        "after_prefill": after_prefill,
        "after_decode": after_decode,
    }


# --------------------------------------------------------------------------- one family


def measure(name: str, raw: dict[str, Any], command: str) -> dict[str, Any]:
    import torch
    import transformers

    model, info = build(raw)
    layers_name, layers = decoder_layers(model)
    reps = representative_layers(model, layers)
    text_config = model.config.get_text_config()
    result: dict[str, Any] = {
        "config": f"configs/{name}.json",
        **info,
        "dtype": raw["torch_dtype"],
        "layer_types": run_length(list(getattr(text_config, "layer_types", None) or [])),
        "measured_with": {
            "command": command,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "parameters": count_parameters(model, layers_name, layers, reps),
    }

    ids = torch.zeros(BATCH, PREFILL, dtype=torch.long, device="meta")
    out, keep1, mods_keep1 = counted(model, input_ids=ids, use_cache=True, logits_to_keep=1)
    prefill_cache = cache_of(out)
    kv_prefill = describe_cache(prefill_cache)
    _, keep0, mods_keep0 = counted(model, input_ids=ids, use_cache=True, logits_to_keep=0)
    step = torch.zeros(BATCH, 1, dtype=torch.long, device="meta")
    out, decode, mods_decode = counted(
        model, input_ids=step, cache=prefill_cache, use_cache=True, logits_to_keep=1
    )
    kv_decode = describe_cache(cache_of(out))

    def breakdown(per_module: dict) -> dict:
        return module_breakdown(model, layers_name, layers, reps, per_module)

    result["flops"] = {
        "batch": BATCH,
        "prefill_tokens": PREFILL,
        "prefill_logits_to_keep_1": keep1,
        "prefill_logits_to_keep_0": keep0,
        "decode_step": decode,
        "modules": {
            "prefill_logits_to_keep_1": breakdown(mods_keep1),
            "prefill_logits_to_keep_0": breakdown(mods_keep0),
            "decode_step": breakdown(mods_decode),
        },
    }
    result["kv_bytes"] = {
        "after_prefill": kv_prefill["bytes"],
        "after_decode": kv_decode["bytes"],
        "cache_class": type(prefill_cache).__name__,
        "prefill": kv_prefill,
        "decode": kv_decode,
    }
    try:
        probe = window_probe(model)
    except Exception as exc:  # the probe is extra: never lose the main figures to it
        probe = {"error": f"{type(exc).__name__}: {exc}"}
    if probe is not None:
        result["window_probe"] = probe
    return result


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="run one family")
    parser.add_argument("--output", type=Path, default=EXPECTED)
    args = parser.parse_args(argv)

    import torch
    import transformers

    available = sorted(p.stem for p in CONFIGS.glob("*.json"))
    names = args.only or available
    unknown = sorted(set(names) - set(available))
    if unknown:
        parser.error(f"no config for {', '.join(unknown)} (have: {', '.join(available)})")

    script = Path(__file__).resolve()
    try:
        shown = script.relative_to(Path.cwd())
    except ValueError:
        shown = script
    command = shlex.join(["python", str(shown), *(sys.argv[1:] if argv is None else argv)])

    document: dict[str, Any] = {"families": {}}
    if args.only and args.output.exists():
        document = json.loads(args.output.read_text())
    document["generated_by"] = {
        "command": command,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": "meta",
        "batch": BATCH,
        "prefill_tokens": PREFILL,
        "decode_tokens": 1,
    }

    failures = 0
    for name in names:
        start = time.perf_counter()
        print(f"[{name}] measuring ...", flush=True)
        raw = json.loads((CONFIGS / f"{name}.json").read_text())
        try:
            entry = measure(name, raw, command)
        except Exception as exc:
            failures += 1
            entry = {
                "config": f"configs/{name}.json",
                "error": f"{type(exc).__name__}: {exc}",
                "measured_with": {
                    "command": command,
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                },
            }
            traceback.print_exc()
        document["families"][name] = entry
        took = time.perf_counter() - start
        if "error" in entry:
            print(f"[{name}] ERROR {entry['error']} ({took:.1f}s)", flush=True)
        else:
            f, k = entry["flops"], entry["kv_bytes"]
            keep1, keep0 = f["prefill_logits_to_keep_1"], f["prefill_logits_to_keep_0"]
            print(
                f"[{name}] {entry['attn_implementation']}: params {entry['parameters']['total']:,}"
                f" | prefill {keep1:.4e} / {keep0:.4e} | decode {f['decode_step']:.4e}"
                f" | kv {k['after_prefill']:,} -> {k['after_decode']:,} B ({took:.1f}s)",
                flush=True,
            )
        # Written after every family, so an interrupted run keeps what it measured.
        document["families"] = dict(sorted(document["families"].items()))
        args.output.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.output} ({len(names) - failures}/{len(names)} families measured)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
