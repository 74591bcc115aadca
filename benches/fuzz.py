"""Hostile inputs by category, each run as a fresh `shardcost` process: how many end
cleanly (exit 0, 1 or 2, at most one error line, no traceback), how many end in an
internal error (exit 3, or a traceback), and how many hang (past the time limit).

Run it against this checkout, or against another source tree to compare (the
categories are issue 15's):

    python benches/fuzz.py                      # this checkout
    python benches/fuzz.py --tree /path/to/old  # e.g. a git worktree of an older commit

Deterministic: the same inputs every run (a fixed random seed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 20.0  # seconds; issue 15 counted runs past 30 s as hangs, and asks for < 20


def _write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def _config(folder: Path, name: str, **changes: object) -> str:
    """Llama-3.2-1B's config (examples/configs) with ``changes``."""
    base = json.loads((ROOT / "examples" / "configs" / "llama-3.2-1b.json").read_text())
    return _write(folder, name, json.dumps({**base, **changes}))


def _hardware(folder: Path, name: str, field: str, raw: str) -> str:
    values = {
        "peak_tflops": "989",
        "memory_bandwidth_gb_s": "3350",
        "interconnect_bandwidth_gb_s": "450",
        "interconnect_latency_us": "1",
        field: raw,
    }
    lines = ["[[accelerator]]", 'name = "x"', *(f"{k} = {v}" for k, v in values.items())]
    return _write(folder, name, "\n".join(lines) + "\n")


def _layout(folder: Path, name: str, flops: str, comm: int = 1) -> str:
    comm_lines = "\n".join(f'c{i} = "S"' for i in range(comm))
    text = (
        '[layout]\nname = "fz"\nphase = "prefill"\nchips = "context_parallel"\n\n'
        f'[per_chip]\nflops = "{flops}"\nweight_bytes = "1"\nactivation_bytes = "1"\n'
        f'kv_cache_bytes = "1"\n\n[comm]\n{comm_lines}\n'
    )
    return _write(folder, name, text)


def cases(folder: Path) -> Iterator[tuple[str, list[str], str | None]]:
    """(category, argv, a file to send stdout to or None)."""
    rng = random.Random(15)
    for digits in (30, 45, 2200, 4300, 5000, 20000):
        yield "huge integers", ["metrics", "tp", "seq_len=" + "9" * digits], None
        yield (
            "huge integers",
            ["metrics", "tp", "--phase", "decode", f"past_seq_len={'7' * digits}"],
            None,
        )
    for raw in ("1e-400", "1e-320", "1e999999999", "١", "1_000", "nan", "-inf", "1/3"):
        yield (
            "hardware figures",
            ["metrics", "tp", "--hardware", "h100-sxm", f"peak_tflops={raw}"],
            None,
        )
        quoted = json.dumps(raw)
        toml = _hardware(folder, f"hw-{rng.random():.6f}.toml", "peak_tflops", quoted)
        yield "hardware figures", ["metrics", "tp", "--hardware", toml], None
    for n in (10_000, 20_000):  # longer lists pass the kernel's 128 KiB limit on one argument
        lengths = ",".join(str(rng.randint(1, 8192)) for _ in range(n))
        yield (
            "ragged batches",
            ["metrics", "tp", "--phase", "decode", f"past_seq_len={lengths}"],
            None,
        )
    for arch in (5, True, [["LlamaForCausalLM"]], [{"a": 1}], "LlamaForCausalLM"):
        cfg = _config(folder, f"a-{rng.random():.6f}.json", model_type=None, architectures=arch)
        yield "config.json shapes", ["model", cfg], None
    for dtype in (5, True, ["bfloat16"], {"a": 1}):
        yield (
            "config.json shapes",
            ["model", _config(folder, f"d-{rng.random():.6f}.json", torch_dtype=dtype)],
            None,
        )
    deep_json = _write(folder, "deep.json", "[" * 100_000 + "]" * 100_000)
    deep_toml = _write(folder, "deep.toml", "a = " + "[" * 30_000 + "]" * 30_000 + "\n")
    yield "deep nesting", ["model", deep_json], None
    yield "deep nesting", ["metrics", "tp", "--hardware", deep_toml], None
    yield "deep nesting", ["verify", "--file", deep_toml], None
    fifo = folder / "fifo"
    os.mkfifo(fifo)
    for special in ("/dev/zero", str(fifo), str(folder)):
        yield "special files", ["model", special], None
        yield "special files", ["verify", "--file", special], None
        yield (
            "special files",
            [
                "metrics",
                "tp",
                "--hardware",
                special + ".toml" if special == str(folder) else special,
            ],
            None,
        )
    yield (
        "formulas",
        [
            "verify",
            "--file",
            _layout(folder, "consts.toml", "*".join(["123456789012345678901234567890"] * 40)),
        ],
        None,
    )
    yield (
        "formulas",
        ["verify", "--file", _layout(folder, "div.toml", "S/(seq_len-hidden_size)")],
        None,
    )
    yield "formulas", ["verify", "--file", _layout(folder, "comm500.toml", "S", comm=500)], None
    yield "formulas", ["verify", "--file", _layout(folder, "comm200.toml", "S", comm=200)], None
    yield "sweep ranges", ["sweep", "tp", "batch_size=1:10000000000"], None
    yield "sweep ranges", ["sweep", "tp", f"seq_len=1:{2**64}:{2**63}"], None
    yield "sweep ranges", ["sweep", "tp", f"seq_len={2**64},{2**65}"], None
    yield "sweep ranges", ["sweep", "tp", "tensor_parallel=3,5,7", "num_heads=32"], None
    yield "output files", ["metrics", "tp"], "/dev/full"
    yield "output files", ["model", str(ROOT / "examples/configs/llama-3.2-1b.json")], "/dev/full"
    for text in ("a\nb", "\x1b[31mred", "\u2028", "tp\r"):
        yield "control characters", ["metrics", text], None
        yield "control characters", ["metrics", "tp", f"seq_len={text}"], None


def run(tree: Path, argv: list[str], stdout: str | None, env: dict[str, str]) -> tuple[str, float]:
    start = time.perf_counter()
    target = Path(stdout).open("w") if stdout else subprocess.PIPE  # noqa: SIM115
    try:
        done = subprocess.run(
            [sys.executable, "-m", "shardcost", *argv],
            cwd=tree,
            stdout=target,
            stderr=subprocess.PIPE,
            text=True,
            timeout=LIMIT,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "hang", time.perf_counter() - start
    finally:
        if stdout:
            target.close()  # type: ignore[union-attr]
    seconds = time.perf_counter() - start
    err = done.stderr
    errors = [line for line in err.splitlines() if line.startswith("shardcost: error")]
    if done.returncode == 3 or "Traceback" in err or "internal error" in err:
        return "internal error", seconds
    if done.returncode not in (0, 1, 2) or len(errors) > 1 or "\x1b" in err:
        return "unclean", seconds
    return "clean", seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="the source tree to run")
    args = parser.parse_args()
    tree = args.tree.resolve()
    results: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = {
            **os.environ,
            "PYTHONPATH": str(tree),
            "SHARDCOST_CACHE_DIR": str(folder / "cache"),
        }
        for category, argv, stdout in cases(folder):
            verdict, _ = run(tree, argv, stdout, env)
            counts = results.setdefault(category, {"inputs": 0})
            counts["inputs"] += 1
            counts[verdict] = counts.get(verdict, 0) + 1
    print(f"tree: {tree}")
    print(
        f"{'category':22} {'inputs':>7} {'clean':>6} {'internal errors':>16} {'hangs':>6} "
        f"{'unclean':>8}"
    )
    total = {"inputs": 0, "clean": 0, "internal error": 0, "hang": 0, "unclean": 0}
    for category, counts in results.items():
        print(
            f"{category:22} {counts['inputs']:7} {counts.get('clean', 0):6} "
            f"{counts.get('internal error', 0):16} {counts.get('hang', 0):6} "
            f"{counts.get('unclean', 0):8}"
        )
        for k in total:
            total[k] += counts.get(k, 0)
    print(
        f"{'all':22} {total['inputs']:7} {total['clean']:6} {total['internal error']:16} "
        f"{total['hang']:6} {total['unclean']:8}"
    )


if __name__ == "__main__":
    main()
