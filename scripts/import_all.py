"""Import every module of denoisekit (what a runtime-only install must manage); exits 1 naming any that fail."""
import importlib, pkgutil, sys
import torch
import denoisekit
bad = []
names = [m.name for m in pkgutil.walk_packages(denoisekit.__path__, "denoisekit.") if not m.name.endswith("__main__")]
for name in names:
    try:
        importlib.import_module(name)
    except Exception as e:
        bad.append(f"{name}: {type(e).__name__}: {e}")
print(f"torch {torch.__version__}: imported {len(names) - len(bad)} of {len(names)} modules")
print("\n".join(bad))
sys.exit(1 if bad else 0)
