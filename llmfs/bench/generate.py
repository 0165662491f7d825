"""Generation speed: prefill and decode tokens/s at batch 1 and 8, with and without the KV cache, side by side
with `transformers`' `generate` on the same weights, and against the memory-bandwidth floor.

    llmfs bench generate [--size small --size gpt2]      # or: python -m llmfs.bench.generate

Both libraries are timed end to end through their public call (`llmfs.infer.generate.complete`, HF
`model.generate(do_sample=False)`), greedy, same prompt, no stop token. For each call with N new tokens:
  prefill tok/s = B * prompt_len / t(1 new token)             (prefill + one sampling step + call overhead)
  decode tok/s  = B * (N - 1) / (t(N new tokens) - t(1))      (the marginal cost of a decode step)
Each time is the best of `repeats` runs, llmfs and transformers interleaved, so load from other processes
lands on both alike. The HF model is `llmfs export hf` of the llmfs weights, loaded with AutoModelForCausalLM
(GPT-2 for learned positions, Llama for rope), fp32; `tokens equal` says whether both greedy completions agree.

Bandwidth floor: a decode step at batch 1 reads every matmul weight once (fp32: 4 bytes per parameter of
`active_matmul_params`), so tokens/s <= matvec bandwidth / weight bytes. The bandwidth is measured on the spot
with a large fp32 matrix-vector product (on CPU a matrix of twice the last-level cache, at least 256 MiB; the
best of `a @ x` and generation's own row-block product, 8192 columns wide and as wide as the model's rows),
before and after each size's runs; the floor takes the higher of the two, because on a shared VM the bandwidth
moves by a fifth to a half between minutes (docs/bench/generate.md) and a floor from an unlucky moment would flatter the
decode. Since that highest measurement is also the floor's luckiest minute, batch-1 llmfs rows also report the
median of `pairs` pairs of (floor, decode) measured seconds apart ("of floor, paired"). Cached rows report the
bandwidth the decode achieves, weights plus KV cache read per step over the step time ("weights+KV GB/s"): on a GPU
the figure to set against the device's bandwidth.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import torch

from llmfs.bench import report as rep
from llmfs.bench.timing import sync
from llmfs.config import from_dict
from llmfs.infer.generate import complete
from llmfs.infer.sampling import SamplingConfig
from llmfs.model.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class Size:
    name: str
    model: dict
    prompt_len: int
    new_tokens: int  # cached decode steps
    uncached_new_tokens: int  # uncached steps re-run the whole sequence: fewer


SIZES = {
    "tiny": Size("tiny", dict(vocab_size=300, max_seq_len=64, d_model=32, n_layers=2, n_heads=4), 8, 6, 3),
    "small": Size("small", dict(vocab_size=4096, max_seq_len=512, d_model=256, n_layers=4, n_heads=4,
                                n_kv_heads=4), 64, 64, 16),
    "gpt2": Size("gpt2", dict(vocab_size=50257, max_seq_len=1024, d_model=768, n_layers=12, n_heads=12,
                              position="learned", norm="layernorm", mlp="gelu_tanh", bias=True), 64, 32, 4),
}


def build(size: Size, seed: int = 0):
    from llmfs.model.transformer import Transformer

    cfg = from_dict(ModelConfig, dict(size.model))
    return Transformer(cfg, generator=torch.Generator().manual_seed(seed)).eval()


def last_level_cache_bytes(sysfs: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int:
    """Size of the CPU's largest data cache (Linux sysfs: `index*/size`, e.g. "491520K"); 0 where not readable."""
    sizes = [0]
    for index in sysfs.glob("index*"):
        try:
            if (index / "type").read_text().strip() == "Instruction":
                continue
            text = (index / "size").read_text().strip().upper()
            sizes.append(int(text[:-1]) * {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[text[-1]] if text[-1] in "KMG"
                         else int(text))
        except (OSError, ValueError):
            continue
    return max(sizes)


def floor_matrix_rows(cols: int = 8192, cache_bytes: int | None = None) -> int:
    """Rows of the fp32 matrix the CPU bandwidth floor is measured with: at least 256 MiB and twice the last-level
    cache (capped at 2 GiB), so the product streams from memory as a large model's weights do. Why: on a VM that
    shows a 480 MiB L3, an 8192 x 8192 matrix (256 MiB) measured 39 GB/s and 512 MiB to 2 GiB ones 34 GB/s
    (docs/bench/generate.md): the smaller matrix partly ran from the cache and inflated the floor."""
    cache_bytes = last_level_cache_bytes() if cache_bytes is None else cache_bytes
    matrix_bytes = min(max(256 << 20, 2 * cache_bytes), 2 << 30)
    return -(-matrix_bytes // (4 * cols))


class MatvecProbe:
    """The floor's fp32 (rows x cols) @ (cols,) product, allocated once so it can be measured again and again
    (`measure`), e.g. between decode runs. On CPU it is timed two ways: `a @ x` in one call, and generation's own
    row-block product (`llmfs/infer/decode_linear.py`) over 4 MiB slices of the matrix. On a 2-core EPYC the
    first streams at about 20 GB/s (one core's worth of traffic), the second at 25-45 GB/s: a floor from the
    first alone would flatter a decode that uses the second. On CUDA the device is synchronised around each
    product. `rows` defaults to 8192 on accelerators and, on CPU, to `floor_matrix_rows` (a matrix bigger than
    the caches)."""

    def __init__(self, rows: int | None = None, cols: int = 8192, device: torch.device | str = "cpu"):
        from llmfs.infer.decode_linear import row_block_product

        self.device = torch.device(device)
        if rows is None:
            rows = floor_matrix_rows(cols) if self.device.type == "cpu" else 8192
        self.a = torch.full((rows, cols), 0.5, device=self.device)  # values do not matter to the timing
        x = torch.randn(cols, device=self.device)
        a = self.a
        self.ways = [lambda: a @ x]
        if self.device.type == "cpu":
            blocks = max(2, torch.get_num_threads())
            step = max(blocks, (4 << 20) // (4 * cols) // blocks * blocks)  # rows per 4 MiB slice, whole blocks
            slices = [a[i: i + step] for i in range(0, rows, step)]
            x_rows = x.view(1, cols)

            def row_blocks():
                for w in slices:
                    row_block_product(w, x_rows, blocks)
            self.ways.append(row_blocks)

    def measure(self, seconds: float = 0.6) -> float:
        """Bytes/s: matrix bytes over the fastest single product seen in `seconds` per way."""
        best = float("inf")
        for way in self.ways:
            for _ in range(3):
                way()
            sync(self.device)
            t_end = time.perf_counter() + seconds
            while time.perf_counter() < t_end:
                t0 = time.perf_counter()
                way()
                sync(self.device)
                best = min(best, time.perf_counter() - t0)
        return self.a.numel() * 4 / best


def matvec_bandwidth(seconds: float = 0.6, rows: int | None = None, cols: int = 8192,
                     device: torch.device | str = "cpu") -> float:
    """Bytes/s of the floor's matrix-vector product, measured once (`MatvecProbe`)."""
    return MatvecProbe(rows, cols, device).measure(seconds)


def kv_bytes_per_step(cfg, batch: int, prompt_len: int, new_tokens: int, *, slots: int | None = None,
                      element_bytes: int = 4) -> float:
    """Bytes of KV cache a decode step reads, averaged over the N - 1 decode steps of one call: step j (1..N-1)
    attends over prompt_len + j slots (keys and values, every layer, every row), so the mean is prompt_len + N / 2;
    a cache that always attends over a fixed number of `slots` (the compiled step's static cache,
    `engine_slots`) reads that many. A sliding window's mask hides slots but the kernels still read the slice they
    are given."""
    mean_slots = slots if slots is not None else prompt_len + new_tokens / 2
    return 2 * cfg.n_layers * cfg.kv_heads * cfg.head_dim * mean_slots * element_bytes * batch


def engine_slots(engine: str, cfg, prompt_len: int, new_tokens: int) -> int | None:
    """The fixed number of cache slots an engine's decode step attends over: the compiled step's static cache
    (sized to the call, `compiled_decode.cache_slots`); None for the growing caches of llmfs and transformers."""
    from llmfs.infer.compiled_decode import cache_slots

    return cache_slots(prompt_len + new_tokens - 1, cfg.max_seq_len) if engine == "llmfs compiled" else None


def _median(values: list[float]) -> float:
    """The median of the values that are numbers (a disturbed decode timing gives NaN); NaN if none is."""
    numbers = sorted(v for v in values if v == v)
    return statistics.median(numbers) if numbers else float("nan")


def _hf_model(model, workdir: Path):
    """The llmfs weights as a transformers model (through a checkpoint and `export_hf`)."""
    import transformers

    from llmfs import checkpoint as ck
    from llmfs.model.hf_files import export_hf
    from llmfs.tokenizer.byte import ByteTokenizer
    from llmfs.tokenizer.hf import save as save_tokenizer

    save_tokenizer(ByteTokenizer(), workdir / "tok")
    path = ck.save(workdir / "ckpt", kind="causal_lm", model_config=dataclasses.asdict(model.cfg),
                   state_dict=model.state_dict(), tokenizer_json=workdir / "tok" / "tokenizer.json")
    export_hf(path, workdir / "hf")
    return transformers.AutoModelForCausalLM.from_pretrained(workdir / "hf", dtype=torch.float32).eval()


def _llmfs_call(model, prompts: torch.Tensor, n: int, use_cache: bool, decoder=None):
    cfg = SamplingConfig(temperature=0, max_new_tokens=n)
    return lambda: [c.ids for c in complete(model, prompts.tolist(), cfg, use_cache=use_cache, decoder=decoder)]


def _hf_call(hf, prompts: torch.Tensor, n: int):
    def call():
        with torch.inference_mode():
            out = hf.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=n,
                              min_new_tokens=n, do_sample=False, use_cache=True, pad_token_id=0)
        return out[:, prompts.shape[1]:].tolist()
    return call


def decode_rate(batch: int, new_tokens: int, t1: float, tn: float) -> float:
    """Marginal decode tokens/s, batch * (N - 1) / (t(N) - t(1)); NaN when the difference is not positive (a
    call disturbed by other processes: no rate can be read from it)."""
    return batch * (new_tokens - 1) / (tn - t1) if tn > t1 else float("nan")


def _best(calls: dict, repeats: int) -> tuple[dict, dict]:
    """Best wall time of each call over `repeats` interleaved rounds (after one warm-up), and its last output."""
    outs = {k: f() for k, f in calls.items()}  # warm-up
    times = {k: float("inf") for k in calls}
    for _ in range(repeats):
        for k, f in calls.items():
            t0 = time.perf_counter()
            outs[k] = f()
            times[k] = min(times[k], time.perf_counter() - t0)
    return times, outs


def paired_utilization(call, t1: float, new_tokens: int, weight_bytes: int, probes, pairs: int,
                       seconds: float) -> float:
    """Batch-1 decode against a floor measured next to it: `pairs` times, the floor's bandwidth (the best of the
    probes over `seconds` each) and then one timed call of N new tokens; each pair gives decode tok/s / floor
    tok/s, and the median of the pairs is returned. On a shared VM the bandwidth moves by a third between
    minutes: the floor taken before and after a size's runs (its highest) compares the decode with the best
    minute of the floor; a pair compares both in the same few seconds."""
    utils = []
    for _ in range(pairs):
        floor_tok_s = max(p.measure(seconds) for p in probes) / weight_bytes
        t0 = time.perf_counter()
        call()
        utils.append(decode_rate(1, new_tokens, t1, time.perf_counter() - t0) / floor_tok_s)
    return _median(utils)


def run(sizes=("small", "gpt2"), *, batches=(1, 8), repeats: int = 3, new_tokens: int | None = None,
        hf: bool = True, progress=None, device: torch.device | str = "cpu", compile: bool = False,
        bandwidth_rows: int | None = None, pairs: int = 5, pair_seconds: float = 0.25) -> dict:
    """{"bandwidth_gb_s", "rows": one dict per (size, batch, engine)}. `progress(row)` sees each row.
    Batch-1 rows carry `bandwidth_util` = decode tok/s / the bandwidth floor (its highest measurement around
    the size's runs) and, for llmfs's engines, `bandwidth_util_paired` (`paired_utilization`, `pairs` pairs).
    Rows of cached engines carry `read_gb_s`: the bytes a decode step reads (the matmul weights once, plus
    every row's KV cache, `kv_bytes_per_step`) times decode steps per second, to set against the floor's
    bandwidth. Weights stay fp32 on every device (the floor counts 4 bytes per weight). `compile` adds the engine
    "llmfs compiled" (the compiled decode step of llmfs/infer/compiled_decode.py; its compilation happens in the
    warm-up call; its t(1) and t(N) calls may run on caches of different sizes, e.g. 64 and 128 slots, and the
    prefill attends over all of them, so its decode rate errs low by the difference). `bandwidth_rows`: rows of the floor's matrix (default: `MatvecProbe`'s; tests pass a small
    one)."""
    from llmfs.infer.compiled_decode import CompiledDecoder
    from llmfs.infer.decode_linear import use_decode_linears

    try:
        import transformers  # noqa: F401
    except ImportError:
        hf = False
    device = torch.device(device)
    bandwidths = []
    rows = []
    for name in sizes:
        size_rows = []
        size = SIZES[name]
        # the floor's matrix 8192 wide and as wide as the model's rows: the higher bandwidth of the two counts
        probes = [MatvecProbe(bandwidth_rows, c, device) for c in sorted({8192, size.model["d_model"]})]
        before = max(p.measure() for p in probes)
        model = build(size).to(device)
        weight_bytes = model.active_matmul_params() * 4
        n = new_tokens or size.new_tokens
        n_unc = min(n, size.uncached_new_tokens)
        with tempfile.TemporaryDirectory() as tmp:
            hf_model = _hf_model(model, Path(tmp)).to(device) if hf else None
            use_decode_linears(model)  # as `llmfs generate` runs it (after the export, which saves the weights)
            for B in batches:
                prompts = torch.randint(0, size.model["vocab_size"], (B, size.prompt_len),
                                        generator=torch.Generator().manual_seed(B)).to(device)
                engines = {"llmfs": lambda k: _llmfs_call(model, prompts, k, True),
                           "llmfs no-cache": lambda k: _llmfs_call(model, prompts, k, False)}
                if compile:
                    decoder = CompiledDecoder(model)
                    engines["llmfs compiled"] = lambda k: _llmfs_call(model, prompts, k, True, decoder)
                if hf_model is not None:
                    engines["transformers"] = lambda k: _hf_call(hf_model, prompts, k)
                steps = {e: (n_unc if e == "llmfs no-cache" else n) for e in engines}
                calls = {(e, k): engines[e](k) for e in engines for k in (1, steps[e])}
                times, outs = _best(calls, repeats)
                for _ in range(3):  # under load t(N) can come out below t(1): time those pairs again
                    again = {key: calls[key] for e in engines for key in ((e, 1), (e, steps[e]))
                             if times[(e, steps[e])] <= times[(e, 1)]}
                    if not again:
                        break
                    more, _ = _best(again, repeats)
                    times.update({key: min(times[key], t) for key, t in more.items()})
                paired = {e: paired_utilization(calls[(e, n)], times[(e, 1)], n, weight_bytes, probes, pairs,
                                                pair_seconds)
                          for e in engines if B == 1 and pairs and e in ("llmfs", "llmfs compiled")}
                for e in engines:
                    t1, tn, k = times[(e, 1)], times[(e, steps[e])], steps[e]
                    row = {"size": name, "batch": B, "engine": e, "params": model.num_params(),
                           "prompt_len": size.prompt_len, "new_tokens": k,
                           "prefill_tok_s": B * size.prompt_len / t1,
                           "decode_tok_s": decode_rate(B, k, t1, tn),
                           "same_tokens": outs[(e, k)] == outs[("llmfs", n)] if k == n else
                           all(a == b[:k] for a, b in zip(outs[(e, k)], outs[("llmfs", n)]))}
                    if e != "llmfs no-cache":  # the uncached path re-runs the sequence: no cache to read
                        read = weight_bytes + kv_bytes_per_step(model.cfg, B, size.prompt_len, k,
                                                                slots=engine_slots(e, model.cfg, size.prompt_len, k))
                        row["read_gb_s"] = row["decode_tok_s"] / B * read / 1e9
                    if e in paired:
                        row["bandwidth_util_paired"] = paired[e]
                    size_rows.append(row)
        # after this size: the floor takes the higher of the two
        after = max(p.measure() for p in probes)
        del probes
        bandwidths += [before, after]
        for row in size_rows:
            row["floor_tok_s"] = max(before, after) / weight_bytes
            if row["batch"] == 1:
                row["bandwidth_util"] = row["decode_tok_s"] / row["floor_tok_s"]
            rows.append(row)
            if progress is not None:
                progress(row)
    return {"bandwidth_gb_s": max(bandwidths) / 1e9, "bandwidth_gb_s_min": min(bandwidths) / 1e9, "rows": rows}


def summary(result: dict) -> list[str]:
    """The ratios the targets are about: decode at batch 1 vs transformers, and vs the bandwidth floor."""
    by = {(r["size"], r["batch"], r["engine"]): r for r in result["rows"]}
    lines = []
    for (size, batch, engine), r in by.items():
        if engine not in ("llmfs", "llmfs compiled"):
            continue
        hf = by.get((size, batch, "transformers"))
        vs_hf = f"{r['decode_tok_s'] / hf['decode_tok_s']:.2f}x transformers" if hf else "transformers not run"
        floor = ""
        if batch == 1:
            floor = f", {r['decode_tok_s'] / r['floor_tok_s']:.0%} of the bandwidth floor"
            if "bandwidth_util_paired" in r:
                floor += f" ({r['bandwidth_util_paired']:.0%} of a floor measured next to it)"
        lines.append(f"- {size}, batch {batch}: {engine} decode {r['decode_tok_s']:,.0f} tok/s = {vs_hf}{floor}")
    return lines


KEYS = ("size", "batch", "engine")
COLUMNS = (rep.Column("size", "size"), rep.Column("batch", "batch"), rep.Column("engine", "engine"),
           rep.Column("prompt_len", "prompt"), rep.Column("new_tokens", "new"),
           rep.Column("prefill_tok_s", "prefill tok/s", ",.0f"), rep.Column("decode_tok_s", "decode tok/s", ",.0f"),
           rep.Column("floor_tok_s", "floor tok/s (B=1)", ",.0f"),
           rep.Column("bandwidth_util", "of floor", ".0%"),
           rep.Column("bandwidth_util_paired", "of floor, paired", ".0%"),
           rep.Column("read_gb_s", "weights+KV GB/s", ".1f"),
           rep.Column("same_tokens", "tokens equal llmfs", lambda r: "yes" if r["same_tokens"] else "no"))
METRICS = ("prefill_tok_s", "decode_tok_s", "bandwidth_util", "bandwidth_util_paired", "read_gb_s")


def format_table(rows: list[dict]) -> str:
    return rep.markdown_table(rows, COLUMNS)


def report(sizes=None, *, quick: bool = False, new_tokens: int | None = None, hf: bool = True,
           device: torch.device | str = "cpu", progress=None, compile: bool = False) -> dict:
    """The generate report (report.py's shape): --quick = the tiny size, one repeat."""
    from llmfs.bench.timing import environment

    sizes = sizes or (["tiny"] if quick else ["small"])  # gpt2 (minutes on a CPU) on request: --size gpt2
    check_sizes(sizes)
    hf_installed = importlib.util.find_spec("transformers") is not None
    env = environment(torch.device(device), "float32")  # before the run: its load average is the other jobs'
    result = run(sizes, repeats=1 if quick else 3, new_tokens=new_tokens, hf=hf and hf_installed,
                 progress=progress, device=device, compile=compile, pairs=1 if quick else 5)
    env["bandwidth_gb_s"] = result["bandwidth_gb_s"]
    notes = [f"fp32 matvec bandwidth {result['bandwidth_gb_s_min']:.1f}-{result['bandwidth_gb_s']:.1f} GB/s, the best of "
             "one product and generation's row-block products, 8192 wide and model-wide, before and after each "
             "size; floor = the higher of the two / fp32 weight bytes; "
             f"best of {1 if quick else 3} interleaved runs; paired = the median over {1 if quick else 5} "
             "(floor, decode) pairs measured seconds apart",
             *(line.removeprefix("- ") for line in summary(result))]
    if hf and not hf_installed:
        notes.append("transformers is not installed: no peer comparison (pip install 'llmfs[hf]')")
    return rep.make("generate", env, KEYS, result["rows"], notes)


def check_sizes(sizes) -> None:
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        from llmfs.errors import LlmfsError

        raise LlmfsError(f"--size {unknown[0]}: use one of {', '.join(SIZES)}")


def main(argv=None) -> None:
    """`python -m llmfs.bench.generate [--size S ...]`: the same report as `llmfs bench generate`."""
    import argparse

    from llmfs.bench import suites

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", action="append", default=[], help="small, gpt2 or tiny (repeatable)")
    p.add_argument("--compile", action="store_true")
    a = p.parse_args(argv)
    suites.generate(sizes=a.size, compile=a.compile)


if __name__ == "__main__":
    main()
