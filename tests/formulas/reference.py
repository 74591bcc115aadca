"""An independent numeric model of every attention layout, written from the seeds.

Plain Python integers, no SymPy, nothing shared with the library: tests compare the
library's symbolic results against it at random points.
"""

from __future__ import annotations

CP_LAYOUTS = ("cp-allgather", "cp-kv-sharded", "tp-cp", "ulysses", "ring")
TP_LAYOUTS = ("tp", "tp-cp")


def ceil_div(a: int, n: int) -> int:
    return -(-a // n)


def kept(conv: dict, n: int, window: int) -> int:
    """Of ``n`` positions written to a layer's cache, those it keeps."""
    if conv["attention_window"] == "none" or conv["sliding_window_kv"] == "full":
        return n
    return min(n, window - 1 if conv["sliding_window_kv"] == "window" else window)


def sees(conv: dict, query: int, key: int, window: int) -> bool:
    """Whether the query at position ``query`` attends the key at ``key`` (from 1)."""
    if key > query:
        return False
    if conv["attention_window"] == "sliding":
        return query - key < window
    if conv["attention_window"] == "chunked":
        return (query - 1) // window == (key - 1) // window
    return True


def attended(conv: dict, query: int, last: int, window: int) -> int:
    """How many of the keys 1..``last`` the query at ``query`` attends: those from the
    first it may see up to itself (``sees``, one key at a time, says the same)."""
    first = {
        "none": 1,
        "sliding": max(1, query - window + 1),
        "chunked": (query - 1) // window * window + 1,
    }[conv["attention_window"]]
    return max(0, min(query, last) - first + 1)


def pairs(conv: dict, queries: range, last: int, window: int) -> int:
    """Query-key pairs attended: each query in ``queries`` with the keys 1..``last`` its
    window lets it see."""
    return sum(attended(conv, q, last, window) for q in queries)


def share(n: int, parts: int, rank: int) -> int:
    """What rank ``rank`` of ``parts`` holds of ``n`` things, as torch.tensor_split cuts:
    the first ``n mod parts`` ranks one more than the rest."""
    return n // parts + (1 if rank < n % parts else 0)


def over_ranks(rank_metrics: list[dict], other: int) -> dict:
    """The nine metrics from each CP rank's own four quantities (and ``other`` ranks of the
    other degrees alike): per chip, the busiest rank's (rank 0 holds every larger share);
    totals, every chip's added up."""
    busiest = rank_metrics[0]
    assert all(busiest[k] >= m[k] for m in rank_metrics for k in busiest)
    metrics = {f"{k}_per_chip": v for k, v in busiest.items()}
    metrics |= {f"{k}_total": other * sum(m[k] for m in rank_metrics) for k in busiest}
    return metrics


def reference(layout: str, phase: str, p: dict, conv: dict | None = None) -> dict:
    """The nine metrics and each collective's bytes, as the seeds define them.

    In decode ``past_seq_len`` may be a list, one past length per request (a ragged
    batch): every length-dependent quantity is then summed sequence by sequence.
    """
    conv = {
        "attention_keys_include_new_token": True,
        "kv_includes_new_token": False,
        "decode_projections": "qkvo",
        "materialize_full_hidden_after_tp": True,
        "attention_window": "none",
        "sliding_window_kv": "window",
        "attention_flops": "dense",
        **(conv or {}),
    }
    if layout == "ulysses":
        return _ulysses(phase, p, conv)
    tp = p["tensor_parallel"] if layout in TP_LAYOUTS else 1
    cp = p["context_parallel"] if layout in CP_LAYOUTS else 1
    ranks = [_rank(layout, phase, p, conv, tp, cp, j) for j in range(cp)]
    metrics = over_ranks([r[0] for r in ranks], tp)
    comm = ranks[0][1]
    metrics["communication_bytes"] = sum(comm.values())
    return {"metrics": metrics, "collectives": comm, "chips": tp * cp}


def _rank(
    layout: str, phase: str, p: dict, conv: dict, tp: int, cp: int, j: int
) -> tuple[dict, dict]:
    """CP rank ``j``'s four quantities and the collectives' bytes per chip."""
    W = p.get("sliding_window", 4096)
    d, h, dh, B = p["hidden_size"], p["num_heads"], p["head_dim"], p["batch_size"]
    hkv = p.get("num_kv_heads", h)
    b, bs = p.get("bytes_per_elem", 2), p.get("softmax_stat_bytes", 4)
    h_loc = h // tp
    hkv_loc = ceil_div(hkv, tp)  # more TP ranks than KV heads: one replicated head each

    if phase == "prefill":
        S = p["seq_len"]
        q_len = share(S, cp, j)  # the rank's own positions (queries and KV slice)
        k_lens = [S] * B  # local queries see the whole context (gathered or shard by shard)
        cached = [share(kept(conv, S, W), cp, j)] * B  # the window's positions, shared out
        full_cached = [S] * B  # every position's K/V moves: every query meets every key
        M = B * q_len
        proj = "qkvo"
        attended_pairs = [pairs(conv, range(1, S + 1), S, W)] * B
    else:
        past = p["past_seq_len"]
        lengths = list(past) if isinstance(past, list) else [past] * B  # ragged: one each
        assert len(lengths) == B
        T = p.get("new_tokens", 1)
        with_new = conv["attention_keys_include_new_token"]
        # the cache as it stands (what a window kept of the past), then the new tokens
        S_k = [kept(conv, n, W) + T if with_new else kept(conv, n, W) for n in lengths]
        S_kv = [kept(conv, n + T if conv["kv_includes_new_token"] else n, W) for n in lengths]
        q_len = T  # new tokens are replicated on every CP rank
        sharded_keys = layout in ("cp-kv-sharded", "tp-cp", "ring")
        k_lens = [share(n, cp, j) if sharded_keys else n for n in S_k]
        cached = [share(n, cp, j) for n in S_kv]
        full_cached = S_kv
        M = B * T
        proj = conv["decode_projections"]
        attended_pairs = [
            pairs(conv, range(n + 1, n + T + 1), n + T if with_new else n, W) for n in lengths
        ]

    q, kv_proj = "q" in proj, "k" in proj
    if conv["attention_flops"] == "exact":  # single, tp: every pair of its heads, once
        core = sum(2 * 2 * h_loc * n * dh for n in attended_pairs)
    else:
        core = sum(2 * 2 * h_loc * q_len * k * dh for k in k_lens)  # scores, apply-V
    flops = (
        (2 * M * d * h_loc * dh if q else 0)
        + (2 * 2 * M * d * hkv_loc * dh if kv_proj else 0)
        + core
        + 2 * M * h_loc * dh * d  # output projection
    )
    weights = (2 * d * h_loc * dh + 2 * d * hkv_loc * dh) * b
    materialize = conv["materialize_full_hidden_after_tp"] or layout != "tp-cp"
    out_width = d if materialize else h_loc * dh
    acts = (
        M * d
        + (M * h_loc * dh if q else 0)
        + (2 * M * hkv_loc * dh if kv_proj else 0)
        + M * out_width
    ) * b
    kv = sum(2 * n * hkv_loc * dh * b for n in cached)

    comm: dict[str, int] = {}
    if layout == "tp":
        comm["output_allreduce"] = M * d * b if tp > 1 else 0
    elif layout == "cp-allgather":
        comm["kv_allgather"] = sum(2 * n * hkv * dh * b for n in full_cached) if cp > 1 else 0
    elif layout in ("cp-kv-sharded", "tp-cp"):
        comm["softmax_stats_allreduce"] = M * h_loc * 2 * bs if cp > 1 else 0
        comm["output_allreduce"] = M * h_loc * dh * b if cp > 1 else 0
        if layout == "tp-cp" and conv["materialize_full_hidden_after_tp"]:
            comm["tp_allgather"] = M * d * b if tp > 1 else 0
    elif layout == "ring" and phase == "prefill":  # each K/V block travels cp - 1 hops
        comm["kv_ring"] = (cp - 1) * B * 2 * q_len * hkv * dh * b
    elif layout == "ring":  # decode: statistics and partial outputs travel instead
        comm["partial_ring"] = (cp - 1) * (M * h * 2 * bs + M * h * dh * b)

    per_chip = {"flops": flops, "weight_memory": weights, "activation_memory": acts, "kv_cache": kv}
    return per_chip, comm


def _ulysses(phase: str, p: dict, conv: dict) -> dict:
    """DeepSpeed-Ulysses: each CP rank projects its share of the tokens with every head,
    an all-to-all gives it every token for h/cp heads, it attends them, and an all-to-all
    sends the outputs back to the tokens' ranks."""
    cp = p["context_parallel"]
    ranks = [_ulysses_rank(phase, p, conv, j) for j in range(cp)]
    metrics = over_ranks([r[0] for r in ranks], 1)
    comm = ranks[0][1]
    metrics["communication_bytes"] = sum(comm.values())
    return {"metrics": metrics, "collectives": comm, "chips": cp}


def _ulysses_rank(phase: str, p: dict, conv: dict, j: int) -> tuple[dict, dict]:
    """Ulysses CP rank ``j``'s four quantities and the collectives' bytes per chip."""
    d, h, dh, B = p["hidden_size"], p["num_heads"], p["head_dim"], p["batch_size"]
    hkv, b = p.get("num_kv_heads", h), p.get("bytes_per_elem", 2)
    cp, W = p["context_parallel"], p.get("sliding_window", 4096)
    if phase == "prefill":
        S = p["seq_len"]
        M, queries, k_lens, proj = B * share(S, cp, j), S, [S] * B, "qkvo"
        cached = [kept(conv, S, W)] * B
        attended_pairs = [pairs(conv, range(1, S + 1), S, W)] * B
    else:
        T, past = p.get("new_tokens", 1), p["past_seq_len"]
        lengths = list(past) if isinstance(past, list) else [past] * B
        with_new = conv["attention_keys_include_new_token"]
        k_lens = [kept(conv, n, W) + T if with_new else kept(conv, n, W) for n in lengths]
        cached = [kept(conv, n + T if conv["kv_includes_new_token"] else n, W) for n in lengths]
        attended_pairs = [
            pairs(conv, range(n + 1, n + T + 1), n + T if with_new else n, W) for n in lengths
        ]
        # the batch's new tokens, split over the ranks (one rank busy when B·T < cp)
        M, queries, proj = share(B * T, cp, j), T, conv["decode_projections"]
    heads, kv_heads = h // cp, ceil_div(hkv, cp)  # attended and cached per rank
    q, kv_proj = "q" in proj, "k" in proj
    width = (h * dh if q else 0) + (2 * hkv * dh if kv_proj else 0)
    if conv["attention_flops"] == "exact":  # its heads, every pair attended
        core = sum(2 * 2 * heads * n * dh for n in attended_pairs)
    else:
        core = sum(2 * 2 * heads * queries * k * dh for k in k_lens)
    flops = 2 * M * d * width + core + 2 * M * h * dh * d
    per_chip = {
        "flops": flops,
        "weight_memory": (2 * d * h * dh + 2 * d * hkv * dh) * b,
        "activation_memory": (M * d + M * width + M * d) * b,
        "kv_cache": sum(2 * n * kv_heads * dh * b for n in cached),
    }
    comm = {
        "qkv_alltoall": M * width * b if cp > 1 else 0,
        "output_alltoall": B * queries * heads * dh * b if cp > 1 else 0,
    }
    return per_chip, comm
