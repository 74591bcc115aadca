"""Spec cases: the seeds' test cases as data, each with the seed's expected values.

Expected numbers are copied from the seed documents in ``shared/seeds/``; where a
seed gives a number for the whole cluster and the case checks one chip, or gives a
rounded time, the hand arithmetic that links them is written beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from shardcost.errors import lookup

from .evaluate import Result, evaluate
from .inputs import resolve_inputs

SEED_MHA = "001_949be2d5f54ebeb9.txt"
SEED_TIMING = "000_e2edf87efce70075.txt"


@dataclass(frozen=True)
class SpecCase:
    """One seed test case: what it pins and what the seed expects."""

    name: str
    seed: str
    title: str
    layout: str
    phase: str
    params: Mapping[str, object]  # dimensions and conventions, as the CLI takes them
    metrics: Mapping[str, int]  # exact: the seed's "Expected results"
    collectives: Mapping[str, int] = field(default_factory=dict)  # exact payload bytes
    steps: Mapping[str, int] = field(default_factory=dict)  # exact per-chip step values
    timing: Mapping[str, str] = field(default_factory=dict)  # exact ms, from seed 000's formulas
    approx: Mapping[str, str] = field(default_factory=dict)  # the seed's rounded figures
    hardware: str | None = None
    layer: str = "attention"

    def result(self) -> Result:
        """This case evaluated by the model."""
        inputs = resolve_inputs(
            self.layout, self.phase, layer=self.layer, hardware=self.hardware, params=self.params
        )
        return evaluate(inputs)


@dataclass(frozen=True)
class Comparison:
    """One seed value next to the model's: exact, or within the seed's printed rounding."""

    case: str
    quantity: str
    expected: int | str  # an exact count, or the seed's decimal text
    got: object  # int, float, Fraction, or None when the model has no such value
    ok: bool
    approximate: bool = False


@dataclass(frozen=True)
class CaseCheck:
    """The outcome of checking one case: every comparison, and the result behind them."""

    case: SpecCase
    result: Result
    comparisons: tuple[Comparison, ...]

    @property
    def checked(self) -> int:
        """How many values were compared."""
        return len(self.comparisons)

    @property
    def mismatches(self) -> tuple[Comparison, ...]:
        """The comparisons that failed."""
        return tuple(c for c in self.comparisons if not c.ok)

    @property
    def ok(self) -> bool:
        """Whether every value matched."""
        return not self.mismatches


def _approx_ok(expected: str, got: float) -> bool:
    """Within one unit of the last digit the seed printed (seeds round intermediate sums)."""
    printed = Decimal(expected)
    unit = Decimal(1).scaleb(printed.as_tuple().exponent)
    return abs(Decimal(repr(got)) - printed) <= unit


def check_case(case: SpecCase) -> CaseCheck:
    """Recompute ``case`` and compare every expected value."""
    result = case.result()
    found: list[Comparison] = []

    def compare(
        quantity: str, expected: int | str, got: object, ok: bool, approx: bool = False
    ) -> None:
        found.append(Comparison(case.name, quantity, expected, got, ok, approx))

    metrics = result.to_dict()["metrics"]
    for name, expected in case.metrics.items():
        compare(name, expected, metrics[name], metrics[name] == expected)
    for name, expected in case.collectives.items():
        got = result.collectives.get(name)
        compare(f"collective {name}", expected, got, got == expected)
    for key, expected in case.steps.items():
        got = result.step_value(key)
        compare(f"step {key}", expected, got, got == expected)
    timing = result.to_dict().get("timing", {})
    for name, text in case.timing.items():
        got = timing.get(name)
        want = float(Fraction(text))
        compare(name, text, got, got is not None and abs(got - want) <= 1e-9 * abs(want))
    for key, text in case.approx.items():
        if key == "arithmetic_intensity":
            value: float = float(result.arithmetic_intensity)
        elif key in timing:
            value = timing[key]
        else:
            value = float(result.step_value(key))
        compare(f"{key} (≈)", text, value, _approx_ok(text, value), approx=True)
    return CaseCheck(case, result, tuple(found))


def check_all(cases: tuple[SpecCase, ...] | None = None) -> tuple[CaseCheck, ...]:
    """Check every spec case (or the given ones)."""
    return tuple(check_case(case) for case in (cases or SPEC_CASES))


_METRICS = ("flops", "weight_memory", "activation_memory", "kv_cache")


def _metrics(
    per_chip: tuple[int, int, int, int], total: tuple[int, int, int, int], communication: int
) -> dict[str, int]:
    """The seed's nine expected results: FLOPs, weight, activation and KV-cache bytes per
    chip, then the same four over all chips, then the communication bytes."""
    return {
        **{f"{name}_per_chip": value for name, value in zip(_METRICS, per_chip, strict=True)},
        **{f"{name}_total": value for name, value in zip(_METRICS, total, strict=True)},
        "communication_bytes": communication,
    }


def _timing(*, compute: str, load: str, communication: str, wall_clock: str) -> dict[str, str]:
    """Seed 000's four exact times (ms), in its order."""
    return {
        "compute_time_ms": compute,
        "load_time_ms": load,
        "communication_time_ms": communication,
        "wall_clock_time_ms": wall_clock,
    }


def _attention_steps(projection: int, core: int) -> dict[str, int]:
    """The six attention FLOP steps when Q, K, V and O cost the same (``projection``) and
    so do the scores and P·V (``core``), in the seeds' order."""
    return {
        "q_proj": projection,
        "k_proj": projection,
        "v_proj": projection,
        "scores": core,
        "apply_v": core,
        "o_proj": projection,
    }


# Seed 001: d=1024, h=16, dh=64, B=2, BF16.
_MHA = {"hidden_size": 1024, "num_heads": 16, "head_dim": 64, "batch_size": 2}
_MHA_PREFILL = {**_MHA, "seq_len": 128}
_MHA_DECODE = {**_MHA, "past_seq_len": 128, "new_tokens": 1}

# Seed 000: d=4096, h=32, dh=128, on its test hardware (1 PFLOP/s, 1 TB/s, 100 GB/s, 1 µs).
_LLAMA = {"hidden_size": 4096, "num_heads": 32, "head_dim": 128}
# Seed 000's communication: one latency per layer plus the payload at link bandwidth.
_SEED_000 = {**_LLAMA, "collective_bytes": "payload"}

SPEC_CASES: tuple[SpecCase, ...] = (
    SpecCase(
        "MHA-1",
        SEED_MHA,
        "Standard attention prefill, single chip",
        "single",
        "prefill",
        _MHA_PREFILL,
        metrics=_metrics(
            per_chip=(2281701376, 8388608, 2621440, 1048576),
            total=(2281701376, 8388608, 2621440, 1048576),
            communication=0,
        ),
        steps={
            "tokens": 256,  # M = B*S = 2*128
            **_attention_steps(536_870_912, 67_108_864),
        },
    ),
    SpecCase(
        "MHA-2",
        SEED_MHA,
        "Standard attention prefill, TP = 4 over heads",
        "tp",
        "prefill",
        {**_MHA_PREFILL, "tensor_parallel": 4},
        metrics=_metrics(
            per_chip=(570425344, 2097152, 1441792, 262144),
            total=(2281701376, 8388608, 5767168, 1048576),
            communication=524288,
        ),
        collectives={"output_allreduce": 524_288},
        steps={
            "heads_local": 4,  # h_local = 16/4
            # X: 256*1024*2 = 524,288 B; QKV local: 196,608 elems * 2; Y: 524,288 B
            "act_input": 524_288,
            "act_projections": 393_216,
            "act_output": 524_288,
        },
    ),
    SpecCase(
        "MHA-3",
        SEED_MHA,
        "Standard attention decode (1 new token), KV length 128, TP = 4",
        "tp",
        "decode",
        {**_MHA_DECODE, "tensor_parallel": 4, "kv_includes_new_token": True},
        metrics=_metrics(
            per_chip=(4458496, 2097152, 11264, 264192),
            total=(17833984, 8388608, 45056, 1056768),
            communication=4096,
        ),
        collectives={"output_allreduce": 4_096},
        steps={
            "tokens": 2,  # M_q = B*T = 2*1
            "key_len": 129,  # S_total = 128 + 1
            "kv_len": 129,
            # The seed writes whole-layer values; one of tp=4 ranks does a quarter:
            "q_proj": 1_048_576,  # 4,194,304 / 4
            "scores": 132_096,  # 528,384 / 4
            "apply_v": 132_096,  # 528,384 / 4
            "o_proj": 1_048_576,  # 4,194,304 / 4
            "act_input": 4_096,
            "act_projections": 3_072,
            "act_output": 4_096,
        },
    ),
    SpecCase(
        "CP-1",
        SEED_MHA,
        "Attention prefill, CP = 4, KV-sharded",
        "cp-kv-sharded",
        "prefill",
        {**_MHA_PREFILL, "context_parallel": 4},
        metrics=_metrics(
            per_chip=(570425344, 8388608, 655360, 262144),
            total=(2281701376, 33554432, 2621440, 1048576),
            communication=139264,
        ),
        collectives={"softmax_stats_allreduce": 8_192, "output_allreduce": 131_072},
        steps={"seq_local": 32, "tokens_local": 64},
    ),
    SpecCase(
        "CP-2",
        SEED_MHA,
        "Attention prefill, CP = 4 via K/V all-gather",
        "cp-allgather",
        "prefill",
        {**_MHA_PREFILL, "context_parallel": 4},
        metrics=_metrics(
            per_chip=(570425344, 8388608, 655360, 262144),
            total=(2281701376, 33554432, 2621440, 1048576),
            communication=1048576,
        ),
        collectives={"kv_allgather": 1_048_576},
        steps={
            "seq_local": 32,
            "tokens_local": 64,
            **_attention_steps(134_217_728, 16_777_216),
        },
    ),
    SpecCase(
        "CP-3a",
        SEED_MHA,
        "Decode (1 token), KV-sharded CP = 4, attention core only",
        "cp-kv-sharded",
        "decode",
        {
            **_MHA_DECODE,
            "context_parallel": 4,
            "decode_projections": "o",
            "attention_keys_include_new_token": False,
        },
        metrics=_metrics(
            per_chip=(4456448, 8388608, 8192, 262144),
            total=(17825792, 33554432, 32768, 1048576),
            communication=4352,
        ),
        collectives={"softmax_stats_allreduce": 256, "output_allreduce": 4_096},
        steps={
            "key_len_local": 32,
            "kv_len_local": 32,
            "scores": 131_072,
            "apply_v": 131_072,
            "o_proj": 4_194_304,
            "act_input": 4_096,
            "act_output": 4_096,
        },
    ),
    SpecCase(
        "CP-4",
        SEED_MHA,
        "Hybrid TP x CP attention prefill",
        "tp-cp",
        "prefill",
        {**_MHA_PREFILL, "tensor_parallel": 4, "context_parallel": 4},
        metrics=_metrics(
            per_chip=(142606336, 2097152, 360448, 65536),
            total=(2281701376, 33554432, 5767168, 1048576),
            communication=165888,
        ),
        collectives={
            "softmax_stats_allreduce": 2_048,
            "output_allreduce": 32_768,
            "tp_allgather": 131_072,
        },
        steps={
            "heads_local": 4,
            "seq_local": 32,
            "tokens_local": 64,
            **_attention_steps(33_554_432, 4_194_304),
            "act_input": 131_072,
            "act_projections": 98_304,
            "act_output": 131_072,
        },
    ),
    SpecCase(
        "CP-5",
        SEED_MHA,
        "Hybrid TP x CP attention decode",
        "tp-cp",
        "decode",
        {
            **_MHA_DECODE,
            "tensor_parallel": 4,
            "context_parallel": 4,
            "decode_projections": "qo",
            "attention_keys_include_new_token": False,
        },
        metrics=_metrics(
            per_chip=(2162688, 2097152, 9216, 65536),
            total=(34603008, 33554432, 147456, 1048576),
            communication=5184,
        ),
        collectives={
            "softmax_stats_allreduce": 64,
            "output_allreduce": 1_024,
            "tp_allgather": 4_096,
        },
        steps={
            "heads_local": 4,
            "key_len_local": 32,
            "q_proj": 1_048_576,
            "scores": 32_768,
            "apply_v": 32_768,
            "o_proj": 1_048_576,
            "act_input": 4_096,
            "act_projections": 1_024,
            "act_output": 4_096,
        },
    ),
    SpecCase(
        "ATT-TIME-1",
        SEED_TIMING,
        "Prefill phase: compute-dominated",
        "single",
        "prefill",
        {**_SEED_000, "batch_size": 4, "seq_len": 2048},
        hardware="seed-test",
        metrics={
            "flops_per_chip": 1_374_389_534_720,
            "weight_memory_per_chip": 134_217_728,
            "kv_cache_per_chip": 134_217_728,
            "communication_bytes": 0,
        },
        steps={
            "tokens": 8192,  # M = 4 * 2048
            "q_proj": 274_877_906_944,
            "scores": 137_438_953_472,
            "apply_v": 137_438_953_472,
            "o_proj": 274_877_906_944,
        },
        timing=_timing(
            compute="1.37438953472",  # 1,374,389,534,720 / 10^15 * 1000
            load="0.134217728",  # 134,217,728 / 10^12 * 1000
            communication="0",
            wall_clock="1.37438953472",  # max(1.374..., 0.134...) + 0
        ),
        approx={
            "compute_time_ms": "1.374",
            "load_time_ms": "0.134",
            "communication_time_ms": "0",
            "wall_clock_time_ms": "1.374",
            "arithmetic_intensity": "10240",
        },
    ),
    SpecCase(
        "ATT-TIME-2",
        SEED_TIMING,
        "Decode phase: memory-dominated (KV-cache loading)",
        "single",
        "decode",
        {**_SEED_000, "batch_size": 1, "past_seq_len": 2048},
        hardware="seed-test",
        metrics={
            "flops_per_chip": 167_788_544,
            "weight_memory_per_chip": 134_217_728,
            "kv_cache_per_chip": 33_554_432,
            "communication_bytes": 0,
        },
        steps={
            "key_len": 2049,  # S_past + 1
            **_attention_steps(33_554_432, 16_785_408),
        },
        timing=_timing(
            compute="0.000167788544",  # 167,788,544 / 10^15 * 1000
            load="0.16777216",  # (134,217,728 + 33,554,432) / 10^12 * 1000
            communication="0",
            wall_clock="0.16777216",  # max(0.000168, 0.168) + 0
        ),
        approx={
            "compute_time_ms": "0.000168",
            "load_time_ms": "0.168",
            "weight_load_time": "0.134",
            "kv_load_time": "0.0336",
            "communication_time_ms": "0",
            "wall_clock_time_ms": "0.168",
            "arithmetic_intensity": "1.0",
        },
    ),
    SpecCase(
        "ATT-TIME-3",
        SEED_TIMING,
        "Decode with TP = 4: communication overhead",
        "tp",
        "decode",
        {**_SEED_000, "batch_size": 1, "past_seq_len": 2048, "tensor_parallel": 4},
        hardware="seed-test",
        metrics={
            "flops_per_chip": 41_947_136,
            "weight_memory_per_chip": 33_554_432,
            "kv_cache_per_chip": 8_388_608,
            "communication_bytes": 8_192,
        },
        steps={
            "heads_local": 8,
            "q_proj": 8_388_608,
            "k_proj": 8_388_608,
            "v_proj": 8_388_608,
            "o_proj": 8_388_608,
            "scores": 4_196_352,
            "apply_v": 4_196_352,
        },
        timing=_timing(
            compute="0.000041947136",  # 41,947,136 / 10^15 * 1000
            load="0.04194304",  # (33,554,432 + 8,388,608) / 10^12 * 1000
            communication="0.00108192",  # 1.0/1000 + 8,192 / 10^11 * 1000
            wall_clock="0.04302496",  # max(0.000042, 0.04194304) + 0.00108192
        ),
        # The seed sums rounded parts (0.0336 + 0.00839 = 0.0420; 0.0420 + 0.00108 = 0.0431),
        # within one unit of its last printed digit of the exact 0.041943 and 0.043025.
        approx={
            "compute_time_ms": "0.000042",
            "load_time_ms": "0.0420",
            "weight_load_time": "0.0336",
            "kv_load_time": "0.00839",
            "comm_transfer_time": "0.000082",
            "communication_time_ms": "0.00108",
            "wall_clock_time_ms": "0.0431",
        },
    ),
    SpecCase(
        "ATT-TIME-4",
        SEED_TIMING,
        "Prefill with TP = 4 and overlap",
        "tp",
        "prefill",
        {
            **_SEED_000,
            "batch_size": 2,
            "seq_len": 1024,
            "tensor_parallel": 4,
            "supports_overlap": True,
            # the seed's overlap hides the TP all-reduce behind the busy time
            "tensor_parallel_comm": "hidden",
        },
        hardware="seed-test",
        metrics={
            "flops_per_chip": 77_309_411_328,
            "weight_memory_per_chip": 33_554_432,
            "communication_bytes": 16_777_216,
        },
        steps={
            "q_proj": 17_179_869_184,
            "o_proj": 17_179_869_184,
            "scores": 4_294_967_296,
            "apply_v": 4_294_967_296,
        },
        timing=_timing(
            compute="0.077309411328",  # 77,309,411,328 / 10^15 * 1000
            load="0.033554432",  # 33,554,432 / 10^12 * 1000
            communication="0.16877216",  # 0.001 + 16,777,216 / 10^11 * 1000
            wall_clock="0.16877216",  # max(max(0.0773, 0.0336), 0.16877216)
        ),
        approx={
            "compute_time_ms": "0.0773",
            "load_time_ms": "0.0336",
            "comm_transfer_time": "0.168",
            "communication_time_ms": "0.169",
            "wall_clock_time_ms": "0.169",
        },
    ),
    SpecCase(
        "ATT-TIME-4-no-overlap",
        SEED_TIMING,
        "Prefill with TP = 4, without overlap",
        "tp",
        "prefill",
        {**_SEED_000, "batch_size": 2, "seq_len": 1024, "tensor_parallel": 4},
        hardware="seed-test",
        metrics={
            "flops_per_chip": 77_309_411_328,
            "weight_memory_per_chip": 33_554_432,
            "communication_bytes": 16_777_216,
        },
        timing={
            # max(0.077309411328, 0.033554432) + 0.16877216
            "wall_clock_time_ms": "0.246081571328",
        },
        approx={"wall_clock_time_ms": "0.246"},
    ),
    SpecCase(
        "ATT-TIME-5",
        SEED_TIMING,
        "Long-context decode (KV cache dominates)",
        "single",
        "decode",
        {**_SEED_000, "batch_size": 1, "past_seq_len": 32768},
        hardware="seed-test",
        metrics={
            "flops_per_chip": 671_105_024,
            "weight_memory_per_chip": 134_217_728,
            "kv_cache_per_chip": 536_870_912,
        },
        steps={"scores": 268_443_648, "apply_v": 268_443_648},  # 2*1*32*1*32769*128
        timing=_timing(
            compute="0.000671105024",  # 671,105,024 / 10^15 * 1000
            load="0.67108864",  # (134,217,728 + 536,870,912) / 10^12 * 1000
            communication="0",
            wall_clock="0.67108864",
        ),
        approx={
            "compute_time_ms": "0.000671",
            "load_time_ms": "0.671",
            "weight_load_time": "0.134",
            "kv_load_time": "0.537",
            "wall_clock_time_ms": "0.671",
            "arithmetic_intensity": "1.0",
        },
    ),
)

BY_NAME: dict[str, SpecCase] = {case.name: case for case in SPEC_CASES}


def spec_case(name: str) -> SpecCase:
    """The spec case called ``name``; UnknownNameError naming the cases."""
    return lookup(BY_NAME, name, "spec case")
