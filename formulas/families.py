"""Model families: what a Hugging Face ``config.json`` says, as layers.

Each family is a small adapter (``_FAMILIES``): it reads its config's keys and says, for
every decoder layer, which mixer (``attention`` or ``mla``) and which channel mixer
(``ffn`` or ``moe``) it runs, with the dimensions and conventions each takes, and the
weight vectors the layer holds beside its matrices (norm weights, biases, attention
sinks). Layers that are alike are grouped into ``Block``s with a count. Matrices are
counted by the layers' own derivations; vectors, which carry no matrix product, here.

Whatever a family does that is not modelled is named in a note (``notes``), never
dropped silently. A key the family needs and the config lacks, or a value of the wrong
kind, is an InputError naming the file and the key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shardcost.errors import InputError
from shardcost.files import printable, read_text

from .dtypes import DTYPES, quantized_dtype, torch_dtype

MAX_CONFIG_BYTES = 4 * 2**20  # a config.json is a few KB; a larger file is refused, unread

Params = tuple[tuple[str, object], ...]  # a layer's dimensions and conventions, by key


@dataclass(frozen=True)
class Vector:
    """Weights without a matrix product: ``size`` elements, split over TP ranks as
    ``shard`` says ("" replicated; "heads", "kv_heads", "ffn" or "vocab" sharded with
    those), in component ``group``; ``kernels`` launched for it (1 per norm)."""

    name: str
    size: int
    group: str = "norms"
    shard: str = ""
    kernels: int = 0


@dataclass(frozen=True)
class Part:
    """One layer of a decoder block: its name and the parameters it takes there."""

    layer: str
    params: Params = ()

    def get(self, key: str, default: object = None) -> object:
        """One parameter's value."""
        return dict(self.params).get(key, default)


@dataclass(frozen=True)
class Block:
    """Decoder layers that are alike: how many, their mixer and channel mixer, vectors."""

    kind: str  # in words, e.g. "sliding attention + MoE"
    count: int
    mixer: Part
    channel: Part
    vectors: tuple[Vector, ...]


@dataclass(frozen=True)
class ModelConfig:
    """A model as shardcost reads it from its config.json."""

    name: str
    family: str
    hidden_size: int
    vocab_size: int
    num_layers: int
    tie_word_embeddings: bool
    dtype: str  # the checkpoint's element type (bf16, fp16, fp32)
    blocks: tuple[Block, ...]
    final: tuple[Vector, ...]  # the final norm (and an LM-head bias)
    positions: int = 0  # rows of a learned position table (GPT-2), else 0
    weight_dtypes: tuple[tuple[str, str], ...] = ()  # layer -> quantized weight type
    shape: tuple[tuple[str, object], ...] = ()  # the headline shapes, for display
    notes: tuple[str, ...] = field(default=())
    order: tuple[int, ...] = ()  # each decoder layer's block, in depth order

    def layer_blocks(self) -> tuple[int, ...]:
        """Each decoder layer's block index, first layer first."""
        if self.order:
            return self.order
        return tuple(i for i, blk in enumerate(self.blocks) for _ in range(blk.count))

    @property
    def bytes_per_elem(self) -> int:
        """Bytes per element of the checkpoint's type."""
        return int(DTYPES[self.dtype].bytes)

    def to_dict(self) -> dict[str, Any]:
        """The shapes, JSON-ready."""
        return {
            "name": self.name,
            "family": self.family,
            "hidden_size": self.hidden_size,
            "vocab_size": self.vocab_size,
            "num_layers": self.num_layers,
            "tie_word_embeddings": self.tie_word_embeddings,
            "dtype": self.dtype,
            **dict(self.shape),
            "blocks": [
                {
                    "kind": blk.kind,
                    "count": blk.count,
                    "mixer": {"layer": blk.mixer.layer, **dict(blk.mixer.params)},
                    "channel": {"layer": blk.channel.layer, **dict(blk.channel.params)},
                }
                for blk in self.blocks
            ],
        }


# -- reading a config ---------------------------------------------------------------------


@dataclass(frozen=True)
class Fields:
    """Typed reads of one config.json, each error naming the file and the key."""

    raw: Mapping[str, Any]
    where: str
    family: str

    def count(self, key: str, default: int | None = None, *aliases: str) -> int:
        """A positive integer (``default`` when absent; required when that is None)."""
        value = self.raw.get(key)
        for alias in aliases:
            if value is None:
                value = self.raw.get(alias)
        if value is None:
            if default is None:
                raise InputError(f"{self.where}: {key} is missing; a {self.family} config needs it")
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{self.where}: {key}={value!r} is not a positive integer")
        return value

    def maybe(self, key: str) -> int | None:
        """A positive integer, or None when absent or null."""
        return None if self.raw.get(key) is None else self.count(key)

    def flag(self, key: str, default: bool) -> bool:
        """True or false (``default`` when absent or null)."""
        value = self.raw.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InputError(f"{self.where}: {key}={value!r} is not true or false")
        return value

    def kinds(self, key: str, n: int) -> list[str] | None:
        """A list of ``n`` strings (``layer_types``), or None when absent."""
        value = self.raw.get(key)
        if value is None:
            return None
        if (
            not isinstance(value, list)
            or len(value) != n
            or not all(isinstance(v, str) for v in value)
        ):
            raise InputError(f"{self.where}: {key} is not a list of {n} layer kinds")
        return list(value)

    def layers(self, key: str, n: int) -> set[int]:
        """A list of layer indices below ``n`` (empty when absent)."""
        value = self.raw.get(key) or []
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n for v in value
        ):
            raise InputError(f"{self.where}: {key} is not a list of layer indices below {n}")
        return set(value)


def load_config(source: str | Path | Mapping[str, Any]) -> ModelConfig:
    """A ModelConfig from a config.json path or an already-parsed dict; InputError
    naming the problem for anything else."""
    if isinstance(source, Mapping):
        return parse_config(source, "config")
    if not isinstance(source, (str, Path)):
        raise InputError(
            f"a model is a config.json path or a parsed dict, not {type(source).__name__}"
        )
    path = Path(source)
    text = read_text(path, "a local config.json", MAX_CONFIG_BYTES)
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{printable(path)}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except RecursionError:
        raise InputError(f"{printable(path)}: nested too deeply to be a config.json") from None
    if not isinstance(raw, dict):
        raise InputError(f"{printable(path)}: expected a JSON object, got {type(raw).__name__}")
    name = path.parent.name if path.name == "config.json" and path.parent.name else path.stem
    return parse_config(raw, str(path), default_name=name)


def parse_config(
    raw: Mapping[str, Any], where: str = "config", *, default_name: str = "model"
) -> ModelConfig:
    """Check a parsed config.json and read the shapes that cost anything."""
    family = _family(raw, where)
    f = Fields(raw, where, family)
    adapter = _FAMILIES[family]
    shape = adapter.read(f)
    dtype_key = "torch_dtype" if raw.get("torch_dtype") is not None else "dtype"
    dtype = torch_dtype(raw[dtype_key], where) if raw.get(dtype_key) is not None else "bf16"
    if dtype not in ("fp32", "bf16", "fp16"):
        raise InputError(f"{where}: {dtype_key}={raw[dtype_key]!r}: give a 16- or 32-bit type")
    notes = list(shape.notes)
    if raw.get(dtype_key) is None:
        notes.append(f"{where} names no torch_dtype: bf16 (2 bytes per element) assumed")
    weight_dtypes: tuple[tuple[str, str], ...] = ()
    quant = raw.get("quantization_config")
    if quant is not None:
        if not isinstance(quant, Mapping):
            raise InputError(f"{where}: quantization_config is not an object")
        kind = quantized_dtype(quant, where)
        present = {p.layer for lay in shape.layers for p in (lay.mixer, lay.channel)}
        layers = [layer for layer in adapter.quantized(quant) if layer in present]
        weight_dtypes = tuple((layer, kind) for layer in layers)
        notes.append(
            f"quantization_config: {', '.join(layers)} weights are {kind} "
            f"({DTYPES[kind].words}), their small router and bias tensors too, which "
            f"checkpoints keep in {dtype}; everything else is {dtype}; parameter counts "
            "are elements, whatever the type"
        )
    for key, words in adapter.unmodelled:
        if raw.get(key) not in (None, False, 0, []):
            notes.append(f"{key}={raw.get(key)!r}: {words}; not modelled (no matrix product)")
    return ModelConfig(
        name=str(raw.get("_name_or_path") or default_name),
        family=family,
        hidden_size=shape.hidden_size,
        vocab_size=shape.vocab_size,
        num_layers=shape.num_layers,
        tie_word_embeddings=f.flag("tie_word_embeddings", adapter.tied),
        dtype=dtype,
        blocks=_blocks(shape.layers),
        order=_order(shape.layers),
        final=shape.final,
        positions=shape.positions,
        weight_dtypes=weight_dtypes,
        shape=shape.shown,
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class Layer:
    """One decoder layer as a family reads it."""

    kind: str
    mixer: Part
    channel: Part
    vectors: tuple[Vector, ...]


@dataclass(frozen=True)
class Shape:
    """What a family adapter reads from a config."""

    hidden_size: int
    vocab_size: int
    num_layers: int
    layers: tuple[Layer, ...]
    final: tuple[Vector, ...]
    positions: int = 0
    shown: tuple[tuple[str, object], ...] = ()
    notes: tuple[str, ...] = ()


def _blocks(layers: tuple[Layer, ...]) -> tuple[Block, ...]:
    """Alike layers grouped, in order of first appearance, each with its count."""
    counts: dict[Layer, int] = {}
    for lay in layers:
        counts[lay] = counts.get(lay, 0) + 1
    return tuple(
        Block(lay.kind, n, lay.mixer, lay.channel, lay.vectors) for lay, n in counts.items()
    )


def _order(layers: tuple[Layer, ...]) -> tuple[int, ...]:
    """Each layer's index among the alike groups of ``_blocks``."""
    index: dict[Layer, int] = {}
    for lay in layers:
        index.setdefault(lay, len(index))
    return tuple(index[lay] for lay in layers)


@dataclass(frozen=True)
class Family:
    """A family's adapter: its config reader, its tie default (the transformers config
    class's), which layers a quantization_config covers, and the config keys it names in
    a note when set."""

    read: Callable[[Fields], Shape]
    architectures: tuple[str, ...]
    tied: bool = False
    quantized: Callable[[Mapping[str, Any]], tuple[str, ...]] = lambda q: (
        "attention",
        "mla",
        "ffn",
        "moe",
    )
    unmodelled: tuple[tuple[str, str], ...] = ()


# -- the pieces families share ------------------------------------------------------------


def _heads(f: Fields, *, kv_key: str = "num_key_value_heads") -> tuple[int, int, int, int]:
    """(d, h, h_kv, dh), checked: h_kv divides h; dh given or d / h."""
    d = f.count("hidden_size")
    h = f.count("num_attention_heads")
    h_kv = f.count(kv_key, h)
    if h % h_kv:
        raise InputError(f"{f.where}: num_attention_heads={h} is not a multiple of {kv_key}={h_kv}")
    if f.raw.get("head_dim") is None and d % h:
        raise InputError(
            f"{f.where}: hidden_size={d} is not divisible by num_attention_heads={h} "
            "and head_dim is not given"
        )
    dh = f.count("head_dim", d // h if d % h == 0 else None)
    return d, h, h_kv, dh


def _attention(
    h: int, h_kv: int, dh: int, window: tuple[str, int] | None = None, **extra: object
) -> Part:
    """The attention layer with these heads (and a window: kind, length)."""
    params: dict[str, object] = {"num_heads": h, "num_kv_heads": h_kv, "head_dim": dh}
    if window is not None:
        params |= {"attention_window": window[0], "sliding_window": window[1]}
    return Part("attention", tuple((params | extra).items()))


def _ffn(width: int, *, gated: bool = True) -> Part:
    return Part("ffn", (("intermediate_size", width), ("ffn_gated", gated)))


def _moe(
    experts: int,
    top_k: int,
    width: int,
    *,
    shared: int = 0,
    shared_gate: bool = False,
    bias: bool = False,
) -> Part:
    params: dict[str, object] = {
        "num_experts": experts,
        "experts_per_token": top_k,
        "moe_intermediate_size": width,
    }
    if shared:
        params |= {
            "shared_experts": "gated" if shared_gate else "plain",
            "shared_intermediate_size": shared,
        }
    if bias:
        params["expert_bias"] = True
    return Part("moe", tuple(params.items()))


def _rms(d: int, n: int) -> Vector:
    """``n`` RMSNorm weights of width d."""
    return Vector("norms", n * d, kernels=n)


def _layer_norm(d: int, n: int) -> Vector:
    """``n`` LayerNorms with weight and bias of width d."""
    return Vector("norms", 2 * n * d, kernels=n)


def _qkv_biases(h: int, h_kv: int, dh: int) -> tuple[Vector, ...]:
    return (
        Vector("q bias", h * dh, "biases", "heads"),
        Vector("k, v biases", 2 * h_kv * dh, "biases", "kv_heads"),
    )


def _mlp_biases(d: int, width: int, *, gated: bool) -> tuple[Vector, ...]:
    return (
        Vector(
            "gate, up biases" if gated else "up bias", (2 if gated else 1) * width, "biases", "ffn"
        ),
        Vector("down bias", d, "biases"),
    )


def _windows(f: Fields, n: int, sliding: Callable[[int], bool]) -> list[bool]:
    """Which of ``n`` layers slide: ``layer_types`` when the config gives it, else the
    family's rule."""
    kinds = f.kinds("layer_types", n)
    if kinds is not None:
        known = {"sliding_attention", "full_attention", "chunked_attention"}
        odd = sorted(set(kinds) - known)
        if odd:
            raise InputError(f"{f.where}: layer_types names {', '.join(odd)}; known: {known}")
        return [k != "full_attention" for k in kinds]
    return [sliding(i) for i in range(n)]


def _shown(d: int, h: int, h_kv: int, dh: int, **more: object) -> tuple[tuple[str, object], ...]:
    return tuple({"num_heads": h, "num_kv_heads": h_kv, "head_dim": dh, **more}.items())


def _dense(
    f: Fields,
    *,
    norms: Vector | None = None,
    gated: bool = True,
    qkv_bias: bool = False,
    o_bias: bool = False,
    mlp_bias: bool = False,
    extra: tuple[Vector, ...] = (),
    window: Callable[[int], tuple[str, int] | None] | None = None,
    width: int | None = None,
    kv_key: str = "num_key_value_heads",
    final: tuple[Vector, ...] | None = None,
    notes: tuple[str, ...] = (),
) -> Shape:
    """A decoder-only model of attention and a dense FFN in every layer (Llama's shape),
    with the family's norms, biases and windows."""
    d, h, h_kv, dh = _heads(f, kv_key=kv_key)
    n = f.count("num_hidden_layers")
    ff = width if width is not None else f.count("intermediate_size")
    vectors = [norms or _rms(d, 2), *extra]
    if qkv_bias:
        vectors += _qkv_biases(h, h_kv, dh)
    if o_bias:
        vectors.append(Vector("o bias", d, "biases"))
    if mlp_bias:
        vectors += _mlp_biases(d, ff, gated=gated)
    layers = []
    for i in range(n):
        win = window(i) if window is not None else None
        kind = "attention" if win is None else f"{win[0]} attention"
        layers.append(
            Layer(kind, _attention(h, h_kv, dh, win), _ffn(ff, gated=gated), tuple(vectors))
        )
    return Shape(
        d,
        f.count("vocab_size"),
        n,
        tuple(layers),
        final if final is not None else (_rms(d, 1),),
        shown=_shown(d, h, h_kv, dh, intermediate_size=ff),
        notes=notes,
    )


def _sliding_all(f: Fields, key: str = "sliding_window") -> Callable[[int], tuple[str, int] | None]:
    """Every layer slides over ``key`` positions when the config sets it."""
    w = f.maybe(key)
    return lambda i: ("sliding", w) if w is not None else None


# -- the families -------------------------------------------------------------------------


def _llama(f: Fields) -> Shape:
    bias = f.flag("attention_bias", False)
    return _dense(f, qkv_bias=bias, o_bias=bias, mlp_bias=f.flag("mlp_bias", False))


def _mistral(f: Fields) -> Shape:
    return _dense(f, window=_sliding_all(f))


def _qwen_window(f: Fields, n: int) -> Callable[[int], tuple[str, int] | None]:
    """Qwen2/Qwen3: with use_sliding_window, layers from max_window_layers on slide (or
    as layer_types says)."""
    if not f.flag("use_sliding_window", False):
        return lambda i: None
    w = f.count("sliding_window")
    first = f.count("max_window_layers", n) if f.raw.get("max_window_layers") else n
    slides = _windows(f, n, lambda i: i >= first)
    return lambda i: ("sliding", w) if slides[i] else None


def _qwen2(f: Fields) -> Shape:
    n = f.count("num_hidden_layers")
    return _dense(f, qkv_bias=True, window=_qwen_window(f, n))


def _qk_norms(h: int, h_kv: int, dh: int, *, full: bool = False) -> Vector:
    """Q and K RMSNorm weights: per head width (Qwen3, Gemma 3), or over every head's
    (OLMo 2: h·dh and h_kv·dh)."""
    size = (h + h_kv) * dh if full else 2 * dh
    return Vector("q, k norms", size, "norms", "heads" if full else "", kernels=2)


def _qwen3(f: Fields) -> Shape:
    _, h, h_kv, dh = _heads(f)
    n = f.count("num_hidden_layers")
    bias = f.flag("attention_bias", False)
    return _dense(
        f, qkv_bias=bias, o_bias=bias, extra=(_qk_norms(h, h_kv, dh),), window=_qwen_window(f, n)
    )


def _moe_model(
    f: Fields,
    mixer: Callable[[int], Part],
    channel: Callable[[int], tuple[str, Part]],
    vectors: Callable[[int], tuple[Vector, ...]],
    d: int,
    shown: tuple[tuple[str, object], ...],
    notes: tuple[str, ...] = (),
) -> Shape:
    """A model whose layers differ: mixer(i), (kind, channel)(i), vectors(i)."""
    n = f.count("num_hidden_layers")
    layers = []
    for i in range(n):
        kind, part = channel(i)
        mix = mixer(i)
        window = mix.get("attention_window")
        mix_kind = f"{window} {mix.layer}" if window else mix.layer
        layers.append(Layer(f"{mix_kind} + {kind}", mix, part, vectors(i)))
    return Shape(
        d, f.count("vocab_size"), n, tuple(layers), (_rms(d, 1),), shown=shown, notes=notes
    )


def _sparse(f: Fields, n: int) -> Callable[[int], bool]:
    """Qwen MoE: layer i is MoE unless in mlp_only_layers or off decoder_sparse_step."""
    only = f.layers("mlp_only_layers", n)
    step = f.count("decoder_sparse_step", 1)
    return lambda i: i not in only and (i + 1) % step == 0


def _qwen_moe(f: Fields, *, shared: bool, qk_norm: bool) -> Shape:
    d, h, h_kv, dh = _heads(f)
    n = f.count("num_hidden_layers")
    window = _qwen_window(f, n)
    sparse = _sparse(f, n)
    experts, top_k = f.count("num_experts"), f.count("num_experts_per_tok")
    width = f.count("moe_intermediate_size")
    moe = _moe(
        experts,
        top_k,
        width,
        shared=f.count("shared_expert_intermediate_size") if shared else 0,
        shared_gate=shared,
    )
    dense = _ffn(f.count("intermediate_size"))
    bias = f.flag("qkv_bias", True) if shared else f.flag("attention_bias", False)
    vectors = (_rms(d, 2), *(_qkv_biases(h, h_kv, dh) if bias else ()))
    if qk_norm:
        vectors += (_qk_norms(h, h_kv, dh),)
    if not shared and bias:
        vectors += (Vector("o bias", d, "biases"),)
    return _moe_model(
        f,
        lambda i: _attention(h, h_kv, dh, window(i)),
        lambda i: ("MoE", moe) if sparse(i) else ("FFN", dense),
        lambda i: vectors,
        d,
        _shown(d, h, h_kv, dh, num_experts=experts, experts_per_token=top_k),
    )


def _mixtral(f: Fields) -> Shape:
    d, h, h_kv, dh = _heads(f)
    experts, top_k = f.count("num_local_experts"), f.count("num_experts_per_tok")
    moe = _moe(experts, top_k, f.count("intermediate_size"))
    window = _sliding_all(f)
    return _moe_model(
        f,
        lambda i: _attention(h, h_kv, dh, window(i)),
        lambda i: ("MoE", moe),
        lambda i: (_rms(d, 2),),
        d,
        _shown(d, h, h_kv, dh, num_experts=experts, experts_per_token=top_k),
    )


def _deepseek(f: Fields) -> Shape:
    d = f.count("hidden_size")
    h = f.count("num_attention_heads")
    q_rank = f.maybe("q_lora_rank")
    mla: dict[str, object] = {
        "num_heads": h,
        "kv_lora_rank": f.count("kv_lora_rank"),
        "qk_nope_head_dim": f.count("qk_nope_head_dim"),
        "qk_rope_head_dim": f.count("qk_rope_head_dim"),
        "v_head_dim": f.count("v_head_dim"),
        "mla_q_compressed": q_rank is not None,
    }
    if q_rank is not None:
        mla["q_lora_rank"] = q_rank
    mixer = Part("mla", tuple(mla.items()))
    first_dense = f.raw.get("first_k_dense_replace") or 0
    freq = f.count("moe_layer_freq", 1)
    experts, top_k = f.count("n_routed_experts"), f.count("num_experts_per_tok")
    width = f.count("moe_intermediate_size")
    shared = (f.raw.get("n_shared_experts") or 0) * width
    moe = _moe(experts, top_k, width, shared=shared)
    dense = _ffn(f.count("intermediate_size"))
    notes = []
    if f.raw.get("num_nextn_predict_layers"):
        notes.append(
            "num_nextn_predict_layers: the multi-token-prediction module is not part of the "
            "model (as in transformers); its layer is not counted"
        )
    return _moe_model(
        f,
        lambda i: mixer,
        lambda i: ("MoE", moe) if i >= first_dense and i % freq == 0 else ("FFN", dense),
        lambda i: (_rms(d, 2),),
        d,
        tuple((mla | {"num_experts": experts, "experts_per_token": top_k}).items()),
        tuple(notes),
    )


def _gemma(f: Fields) -> Shape:
    return _dense(f)


def _gemma2(f: Fields) -> Shape:
    n = f.count("num_hidden_layers")
    w = f.count("sliding_window", 4096)
    slides = _windows(f, n, lambda i: i % 2 == 0)
    return _dense(f, norms=_rms(f.count("hidden_size"), 4), window=_window_of(slides, w))


def _window_of(
    slides: list[bool], w: int, kind: str = "sliding"
) -> Callable[[int], tuple[str, int] | None]:
    return lambda i: (kind, w) if slides[i] else None


def _gemma3(f: Fields) -> Shape:
    _, h, h_kv, dh = _heads(f)
    n = f.count("num_hidden_layers")
    w = f.count("sliding_window", 4096)
    pattern = f.count("sliding_window_pattern", 6)
    slides = _windows(f, n, lambda i: (i + 1) % pattern != 0)
    return _dense(
        f,
        norms=_rms(f.count("hidden_size"), 4),
        extra=(_qk_norms(h, h_kv, dh),),
        window=_window_of(slides, w),
    )


def _phi(f: Fields) -> Shape:
    d, _, _, dh = _heads(f)
    extra: tuple[Vector, ...] = ()
    if f.flag("qk_layernorm", False):
        extra = (Vector("q, k layer norms", 2 * 2 * dh, "norms", kernels=2),)
    return _dense(
        f,
        norms=_layer_norm(d, 1),
        gated=False,
        qkv_bias=True,
        o_bias=True,
        mlp_bias=True,
        extra=extra,
        final=(_layer_norm(d, 1), Vector("lm_head bias", f.count("vocab_size"), "biases", "vocab")),
    )


def _phi3(f: Fields) -> Shape:
    return _dense(f, window=_sliding_all(f))


def _olmo2(f: Fields) -> Shape:
    _, h, h_kv, dh = _heads(f)
    bias = f.flag("attention_bias", False)
    return _dense(f, extra=(_qk_norms(h, h_kv, dh, full=True),), qkv_bias=bias, o_bias=bias)


def _gpt_oss(f: Fields) -> Shape:
    d, h, h_kv, dh = _heads(f)
    n = f.count("num_hidden_layers")
    w = f.count("sliding_window")
    slides = _windows(f, n, lambda i: i % 2 == 0)
    experts, top_k = (
        f.count("num_local_experts"),
        f.count("num_experts_per_tok", None, "experts_per_token"),
    )
    moe = _moe(experts, top_k, f.count("intermediate_size"), bias=True)
    bias = f.flag("attention_bias", True)
    vectors = (
        _rms(d, 2),
        *(_qkv_biases(h, h_kv, dh) if bias else ()),
        *((Vector("o bias", d, "biases"),) if bias else ()),
        Vector("attention sinks", h, "sinks", "heads"),
    )
    return _moe_model(
        f,
        lambda i: _attention(h, h_kv, dh, ("sliding", w) if slides[i] else None),
        lambda i: ("MoE", moe),
        lambda i: vectors,
        d,
        _shown(d, h, h_kv, dh, num_experts=experts, experts_per_token=top_k),
    )


def _granite(f: Fields) -> Shape:
    bias = f.flag("attention_bias", False)
    return _dense(f, qkv_bias=bias, o_bias=bias, mlp_bias=f.flag("mlp_bias", False))


def _granitemoe(f: Fields) -> Shape:
    d, h, h_kv, dh = _heads(f)
    experts, top_k = f.count("num_local_experts"), f.count("num_experts_per_tok")
    moe = _moe(experts, top_k, f.count("intermediate_size"))
    bias = f.flag("attention_bias", False)
    vectors = (
        _rms(d, 2),
        *(_qkv_biases(h, h_kv, dh) if bias else ()),
        *((Vector("o bias", d, "biases"),) if bias else ()),
    )
    return _moe_model(
        f,
        lambda i: _attention(h, h_kv, dh),
        lambda i: ("MoE", moe),
        lambda i: vectors,
        d,
        _shown(d, h, h_kv, dh, num_experts=experts, experts_per_token=top_k),
    )


def _cohere(f: Fields) -> Shape:
    d, h, h_kv, dh = _heads(f)
    extra: tuple[Vector, ...] = ()
    if f.flag("use_qk_norm", False):
        extra = (Vector("q, k layer norms", (h + h_kv) * dh, "norms", "heads", kernels=2),)
    bias = f.flag("attention_bias", False)
    # one LayerNorm (weight only) per layer: attention and FFN run in parallel
    return _dense(f, norms=_rms(d, 1), extra=extra, qkv_bias=bias, o_bias=bias)


def _llama4(f: Fields) -> Shape:
    d, h, h_kv, dh = _heads(f)
    n = f.count("num_hidden_layers")
    chunk = f.maybe("attention_chunk_size")
    no_rope = f.raw.get("no_rope_layers")
    if isinstance(no_rope, list) and len(no_rope) == n:
        chunked = [bool(v) for v in no_rope]  # RoPE layers are the chunked ones
    else:
        chunked = _windows(f, n, lambda i: (i + 1) % 4 != 0)
    step = f.count("interleave_moe_layer_step", 1)
    moe_layers = (
        f.layers("moe_layers", n)
        if f.raw.get("moe_layers")
        else {i for i in range(n) if (i + 1) % step == 0}
    )
    experts, top_k = f.count("num_local_experts"), f.count("num_experts_per_tok")
    width = f.count("intermediate_size")
    moe = _moe(experts, top_k, width, shared=width)
    dense = _ffn(f.count("intermediate_size_mlp"))
    notes = (
        "Llama 4: the Hugging Face implementation runs every routed expert on every token "
        "(tokens × num_experts expert FLOPs); shardcost charges tokens × top-k, as serving "
        "engines run it",
    )
    return _moe_model(
        f,
        lambda i: _attention(h, h_kv, dh, ("chunked", chunk) if chunk and chunked[i] else None),
        lambda i: ("MoE", moe) if i in moe_layers else ("FFN", dense),
        lambda i: (_rms(d, 2),),
        d,
        _shown(d, h, h_kv, dh, num_experts=experts, experts_per_token=top_k),
        notes,
    )


def _gpt2(f: Fields) -> Shape:
    d = f.count("n_embd", None, "hidden_size")
    h = f.count("n_head", None, "num_attention_heads")
    if d % h:
        raise InputError(f"{f.where}: n_embd={d} is not divisible by n_head={h}")
    n = f.count("n_layer", None, "num_hidden_layers")
    width = f.count("n_inner", 4 * d)
    dh = d // h
    vectors = (
        _layer_norm(d, 2),
        *_qkv_biases(h, h, dh),
        Vector("o bias", d, "biases"),
        *_mlp_biases(d, width, gated=False),
    )
    layer = Layer("attention", _attention(h, h, dh), _ffn(width, gated=False), vectors)
    return Shape(
        d,
        f.count("vocab_size"),
        n,
        (layer,) * n,
        (_layer_norm(d, 1),),
        positions=f.count("n_positions", 1024),
        shown=_shown(d, h, h, dh, intermediate_size=width),
    )


def _gpt_neox(f: Fields) -> Shape:
    d = _heads(f)[0]
    bias = f.flag("attention_bias", True)
    return _dense(
        f,
        norms=_layer_norm(d, 2),
        gated=False,
        qkv_bias=bias,
        o_bias=bias,
        mlp_bias=True,
        kv_key="num_attention_heads",
        final=(_layer_norm(d, 1),),
    )


def _falcon(f: Fields) -> Shape:
    d = f.count("hidden_size")
    h = f.count("num_attention_heads", None, "n_head")
    new = f.flag("new_decoder_architecture", False)
    multi_query = f.flag("multi_query", True)
    h_kv = f.count("num_kv_heads", h) if new else 1 if multi_query else h
    if d % h:
        raise InputError(f"{f.where}: hidden_size={d} is not divisible by num_attention_heads={h}")
    dh = d // h
    bias = f.flag("bias", False)
    width = f.count("ffn_hidden_size", 4 * d)
    norms = _layer_norm(d, 2 if new or not f.flag("parallel_attn", True) else 1)
    vectors = [norms]
    if bias:
        vectors += [*_qkv_biases(h, h_kv, dh), Vector("o bias", d, "biases")]
        vectors += _mlp_biases(d, width, gated=False)
    layer = Layer("attention", _attention(h, h_kv, dh), _ffn(width, gated=False), tuple(vectors))
    n = f.count("num_hidden_layers", None, "n_layer")
    return Shape(
        d,
        f.count("vocab_size"),
        n,
        (layer,) * n,
        (_layer_norm(d, 1),),
        shown=_shown(d, h, h_kv, dh, intermediate_size=width),
    )


_SOFTCAP = ("final_logit_softcapping", "logits are soft-capped (a tanh per logit)")
_ATTN_SOFTCAP = ("attn_logit_softcapping", "attention scores are soft-capped (a tanh per score)")
_GPT_OSS_QUANT = ("moe",)
_FAMILIES: dict[str, Family] = {
    "llama": Family(_llama, ("LlamaForCausalLM",)),
    "mistral": Family(_mistral, ("MistralForCausalLM",)),
    "qwen2": Family(_qwen2, ("Qwen2ForCausalLM",)),
    "qwen2_moe": Family(
        lambda f: _qwen_moe(f, shared=True, qk_norm=False), ("Qwen2MoeForCausalLM",)
    ),
    "qwen3": Family(_qwen3, ("Qwen3ForCausalLM",)),
    "qwen3_moe": Family(
        lambda f: _qwen_moe(f, shared=False, qk_norm=True), ("Qwen3MoeForCausalLM",)
    ),
    "mixtral": Family(_mixtral, ("MixtralForCausalLM",)),
    "deepseek_v2": Family(_deepseek, ("DeepseekV2ForCausalLM",)),
    "deepseek_v3": Family(_deepseek, ("DeepseekV3ForCausalLM",)),
    "gemma": Family(_gemma, ("GemmaForCausalLM",), tied=True),
    "gemma2": Family(
        _gemma2, ("Gemma2ForCausalLM",), tied=True, unmodelled=(_SOFTCAP, _ATTN_SOFTCAP)
    ),
    "gemma3_text": Family(
        _gemma3, ("Gemma3ForCausalLM",), tied=True, unmodelled=(_SOFTCAP, _ATTN_SOFTCAP)
    ),
    "phi": Family(_phi, ("PhiForCausalLM",)),
    "phi3": Family(_phi3, ("Phi3ForCausalLM",)),
    "olmo2": Family(_olmo2, ("Olmo2ForCausalLM",)),
    "gpt_oss": Family(_gpt_oss, ("GptOssForCausalLM",), quantized=lambda q: _GPT_OSS_QUANT),
    "granite": Family(_granite, ("GraniteForCausalLM",)),
    "granitemoe": Family(_granitemoe, ("GraniteMoeForCausalLM",), tied=True),
    "cohere": Family(
        _cohere,
        ("CohereForCausalLM",),
        tied=True,
        unmodelled=(("logit_scale", "logits are scaled by a constant"),),
    ),
    "llama4_text": Family(_llama4, ("Llama4ForCausalLM",)),
    "gpt2": Family(_gpt2, ("GPT2LMHeadModel",), tied=True),
    "gpt_neox": Family(_gpt_neox, ("GPTNeoXForCausalLM",)),
    "falcon": Family(_falcon, ("FalconForCausalLM",), tied=True),
}
FAMILIES = tuple(_FAMILIES)
_ARCHITECTURES = {arch: name for name, fam in _FAMILIES.items() for arch in fam.architectures}


def _family(raw: Mapping[str, Any], where: str) -> str:
    model_type = raw.get("model_type")
    if isinstance(model_type, str) and model_type in _FAMILIES:
        return model_type
    architectures = raw.get("architectures")
    if architectures is not None and (
        not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures)
    ):
        shown = printable(repr(architectures))
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise InputError(f"{where}: architectures={shown} is not a list of names")
    for arch in architectures or ():
        if arch in _ARCHITECTURES:
            return _ARCHITECTURES[arch]
    shown = f"model_type={model_type!r}" if model_type is not None else "no model_type"
    raise InputError(f"{where}: {shown}; supported families: {', '.join(FAMILIES)}")
