"""Score GPU-trained few-step students (PD stages, CD) and the teacher over seeds; JSON to $OUT."""
import json, os, sys
from pathlib import Path
import torch
from denoisekit.data import load_dataset
from denoisekit.eval import Evaluator
from denoisekit.models import load_denoiser
from denoisekit.samplers import generate
from denoisekit.samplers.times import times_from_levels, level_range

dev = "cuda" if torch.cuda.is_available() else "cpu"
out = Path(os.environ.get("OUT", "/tmp"))
pd, cd = Path(sys.argv[1]), Path(sys.argv[2])
seeds = (0, 1, 2)
teacher, config = load_denoiser(".gpu/demo", device=dev)
shape = tuple(config["data"]["shape"])
ev = Evaluator(load_dataset("mnist"), device=dev, progress=False)
res = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "torch": torch.__version__, "rows": []}

def fd(model, seed, **kw):
    return float(ev.evaluate(generate(model, 1000, shape, seed=seed, **kw))["fd"])

def row(name, model, **kw):
    v = [fd(model, s, **kw) for s in seeds]
    r = {"name": name, "fd": v, "mean": sum(v) / len(v), **{k: (v_.tolist() if torch.is_tensor(v_) else v_) for k, v_ in kw.items()}}
    res["rows"].append(r)
    print(f"{name:40s} {' '.join(f'{x:.3f}' for x in v)}  mean {r['mean']:.3f}", flush=True)
    json.dump(res, open(out / "gpu_few_step.json", "w"), indent=1)

row("teacher unipc 20", teacher, steps=20, sampler="unipc")
row("teacher dpmpp_2m 20", teacher, steps=20, sampler="dpmpp_2m")
if (pd / "stages").exists():
    for st in sorted((pd / "stages").iterdir()):
        n = int(st.name.split("-")[1])
        if n in (4, 2, 1) and (st / "checkpoints" / "latest").exists():
            m, rec = load_denoiser(st, device=dev)
            row(f"PD {n} steps (step {rec.get('step')})", m, steps=n, sampler="ddim", schedule="trailing")
stages = sorted((cd / "stages").glob("*")) if (cd / "stages").exists() else []
if stages and (stages[-1] / "checkpoints" / "latest").exists():
    m, rec = load_denoiser(stages[-1], device=dev)
    row("CD 1 step", m, steps=1, sampler="consistency")
    row("CD 2 steps trailing", m, steps=2, sampler="consistency")
    lo, hi = level_range(m.process)
    scan = {}
    for mid in (0.3, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8):
        times = times_from_levels(m.process, torch.tensor([hi, mid, 0.0], dtype=torch.float64))
        scan[mid] = fd(m, 100, steps=2, sampler="consistency", times=times)
    res["cd_mid_scan_seed100"] = scan
    best = min(scan, key=scan.get)
    print("scan", scan, "best", best, flush=True)
    row(f"CD 2 steps at level {best:g}", m, steps=2, sampler="consistency",
        times=times_from_levels(m.process, torch.tensor([hi, best, 0.0], dtype=torch.float64)))
    mids = (best, best / 3)
    row(f"CD 3 steps at levels {mids[0]:g}, {mids[1]:.2g}", m, steps=3, sampler="consistency",
        times=times_from_levels(m.process, torch.tensor([hi, *mids, 0.0], dtype=torch.float64)))
