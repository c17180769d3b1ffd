"""One rank of a data-parallel calibration, for the tests (run by torchrun, or alone).

``python worker.py SPEC.json``: the spec names the tiny model, the method and
what to write.  Every rank writes its own quantized layers to
``<out>/rank<r>.safetensors`` (so the tests can check that the ranks agree bit
for bit); rank 0 also writes ``<out>/result.json`` (the summary and the
perplexity on held-out ids).  A test that wants a rank to fail gives
``nan_sample`` (that calibration sample becomes NaN in the embeddings, so
only the rank that owns it fails) or ``late_rank`` (that rank starts
``late_seconds`` late).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(spec_path: str) -> int:
    import torch
    import torch.distributed as dist
    from safetensors.torch import save_file

    import batquant
    from batquant.pipeline.checkpoint import layer_state
    from tests.batquant.conftest import tiny_qwen3, tiny_qwen3_moe, token_ids

    spec = json.loads(Path(spec_path).read_text())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        seconds = spec.get("group_timeout", 120)
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=seconds))
    rank = dist.get_rank() if world > 1 else 0
    torch.manual_seed(0)
    model = {"qwen3": tiny_qwen3, "moe": tiny_qwen3_moe}[spec["model"]]()
    ids = token_ids(samples=spec.get("samples", 8), seq_len=32, seed=1)
    if "nan_sample" in spec:
        # a token only that sample holds, whose embedding is NaN: only its rank sees it
        last = model.config.vocab_size - 1
        ids[ids == last] = 0
        ids[spec["nan_sample"], 0] = last
        with torch.no_grad():
            model.get_input_embeddings().weight[-1] = float("nan")
    if spec.get("late_rank") == rank:
        time.sleep(spec["late_seconds"])
    order = spec.get("gradient_order", "batch")
    calib = batquant.CalibSpec(epochs=spec["epochs"], gradient_order=order) \
        if spec.get("epochs") else None  # fmt: skip
    q = batquant.quantize_model(
        model, ids, method=spec["method"], config=spec["config"], calib=calib,
        seed=spec.get("seed", 0), progress=False, weight_quantizer=spec.get("weights", "rtn"),
        cache_dir=spec.get("cache_dir"), objective=spec.get("objective", "layer"),
    )
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    layers = q.model.layers
    state = {f"layers.{i}.{k}": v for i, layer in enumerate(layers)
             for k, v in layer_state(layer).items()}
    save_file(state, str(out / f"rank{rank}.safetensors"))
    if rank == 0:
        held_out = token_ids(samples=4, seq_len=32, seed=7).reshape(-1)
        ppl = batquant.perplexity(q, held_out, seq_len=32)
        result = {"ppl": ppl, "layers": q.batquant_info["layers"]}
        (out / "result.json").write_text(json.dumps(result))
    if world > 1:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
