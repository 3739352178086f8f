"""First-use latency: a model meets five new input sizes, each process starting from an empty
kernel cache; prints the seconds of each first forward (eval mode) and the kernels built, with
generic kernels (the default: one build serves every size) and with static ones
(``DYNFILTER_TVM_SHAPES=static``: one build per size).

    python benchmarks/first_call.py [--model ddf_resnet50] [--sizes 224,200,160,97,256] [--batch 1]
                                    [--threads N] [--backward]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
import torch
from dynfilter_tvm import cache
from torch_bridge.models import get_model
model_name, sizes, batch, backward = sys.argv[1], [int(s) for s in sys.argv[2].split(",")], int(sys.argv[3]), sys.argv[4] == "1"
torch.manual_seed(0)
model = get_model(model_name).train(backward)
rows = []
for size in sizes:
    x = torch.randn(batch, 3, size, size, requires_grad=backward)
    built = cache.stats["built"]
    t = time.perf_counter()
    with torch.set_grad_enabled(backward):
        out = model(x)
        if backward:
            out.sum().backward()
    rows.append({"size": size, "seconds": round(time.perf_counter() - t, 3), "built": cache.stats["built"] - built})
print(json.dumps(rows))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ddf_resnet50")
    ap.add_argument("--sizes", default="224,200,160,97,256")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--backward", action="store_true", help="forward and backward (training mode)")
    a = ap.parse_args()
    results = {}
    for mode in ("generic", "static"):
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ, DYNFILTER_TVM_CACHE=d, DYNFILTER_TVM_SHAPES=mode)
            if a.threads:
                env.update(TVM_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
            out = subprocess.run([sys.executable, "-c", CHILD, a.model, a.sizes, str(a.batch), str(int(a.backward))],
                                 env=env, capture_output=True, text=True, check=True)
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{a.model}, batch {a.batch}, {'forward+backward' if a.backward else 'forward (eval)'}, "
          "empty cache; seconds of the first call at each size (kernels built)")
    print(f"{'size':>6} | {'generic':>16} | {'static':>16}")
    for g, s in zip(results["generic"], results["static"]):
        print(f"{g['size']:>6} | {g['seconds']:>8.2f} s ({g['built']:>3}) | {s['seconds']:>8.2f} s ({s['built']:>3})")


if __name__ == "__main__":
    main()
