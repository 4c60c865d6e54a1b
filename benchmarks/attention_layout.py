"""The U-Net's self-attention with strided against contiguous q, k, v (issue 29, item 15): scaled_dot_product_attention
falls back to its math kernel on strided inputs. Times one attention block (64 channels, 4 heads, batch 8) at 32x32
and 64x64, forward and forward + backward, both layouts in alternating rounds, median; and checks they agree. Exits
non-zero unless the contiguous layout is faster at both sizes. Run it alone."""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import verdict, write_result  # noqa: E402


def attend(qkv: torch.Tensor, heads: int, contiguous: bool) -> torch.Tensor:
    """The block's attention on a qkv map (b, 3c, h, w): strided views (the old layout) or contiguous tensors."""
    b, c3, h, w = qkv.shape
    x = qkv.reshape(b, 3, heads, c3 // 3 // heads, h * w)
    q, k, v = x.permute(1, 0, 2, 4, 3).contiguous().unbind(0) if contiguous else x.transpose(-1, -2).unbind(1)
    return F.scaled_dot_product_attention(q, k, v)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    torch.set_num_threads(2)
    rows, ok = [], True
    for res in (32, 64):
        qkv = torch.randn(8, 3 * 64, res, res, generator=torch.Generator().manual_seed(0), requires_grad=True)
        with torch.no_grad():
            diff = float((attend(qkv, 4, False) - attend(qkv, 4, True)).abs().max())
        for mode in ("forward", "forward+backward"):
            def run(contiguous):
                if mode == "forward":
                    with torch.no_grad():
                        attend(qkv, 4, contiguous)
                else:
                    attend(qkv, 4, contiguous).sum().backward()
            times = {False: [], True: []}
            for _ in range(5 if res == 32 else 3):
                for contiguous in (False, True):
                    times[contiguous].append(timed(lambda: run(contiguous)))
            strided, contig = (statistics.median(times[c]) * 1000 for c in (False, True))
            ok &= contig < strided
            rows.append({"resolution": res, "mode": mode, "strided_ms": round(strided, 1),
                         "contiguous_ms": round(contig, 1), "speedup": round(strided / contig, 2), "max_diff": diff})
    print(f"{'size':>6} {'mode':>17} {'strided ms':>11} {'contiguous ms':>14} {'speedup':>8}")
    for r in rows:
        print(f"{r['resolution']:>4}^2 {r['mode']:>17} {r['strided_ms']:>11} {r['contiguous_ms']:>14} "
              f"{r['speedup']:>7}x   (max |diff| {r['max_diff']:.1e})")
    write_result("attention_layout", {"rows": rows, "contiguous_faster": ok})
    return verdict(claims(rows))


def claims(rows: list) -> list:
    """Contiguous q, k, v faster than the strided views at every size and mode."""
    slowest = min(rows, key=lambda r: r["speedup"])
    return [(f"contiguous q, k, v faster at every size and mode (least speed-up {slowest['speedup']}x, "
             f"{slowest['resolution']}^2 {slowest['mode']})", all(r["contiguous_ms"] < r["strided_ms"] for r in rows))]


if __name__ == "__main__":
    sys.exit(main())
