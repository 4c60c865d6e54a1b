# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH := torch==2.13.0
# Where the pinned torch comes from: empty means pip's own configuration (here, and in CI, the CPU build on disk). On a
# machine whose pip would fetch the multi-GB CUDA build, `make test TORCH_INDEX=https://download.pytorch.org/whl/cpu`.
TORCH_INDEX ?=
TORCH_FROM := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
BASE := $(VENV)/.installed-base
TESTDEPS := $(VENV)/.installed-test

.PHONY: demo test install docs bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Install the pinned CPU torch first (from TORCH_INDEX if given), so the open range in pyproject never pulls a CUDA
# build; the installs after it find the pin satisfied.
$(BASE): $(PY) pyproject.toml
	$(PIP) install -q $(TORCH_FROM) $(TORCH)
	$(PIP) install -q -e '.[data]' $(TORCH)
	touch $(BASE)

# Test-only extras (diffusers and k-diffusion, for parity tests), with torch held at the pin; k-diffusion without
# its dependencies, which would pull torchvision (tests load only its sampling module).
$(TESTDEPS): $(BASE) pyproject.toml
	$(PIP) install -q -e '.[test]' $(TORCH)
	$(PIP) install -q --no-deps k-diffusion==0.1.1.post1
	touch $(TESTDEPS)

install: $(BASE)

test: $(TESTDEPS)
	$(PY) -m pytest -q

# The site: every lecture executed (a cell error, a broken link or reference, or any warning fails the build), then
# headless Chromium (Debian's package chromium) reads three pages and writes their screenshots to docs/_build/. Without
# Chromium the check says so and skips; CI runs `make docs BROWSER_CHECK=required`, where a missing browser fails.
BROWSER_CHECK ?= auto
BAD_CHECK = BROWSER_CHECK: expected auto or required, got '$(BROWSER_CHECK)'
# OFFLINE: a command prefix that cuts the network while the site builds and is checked; CI gives
# scripts/offline.sh (a network namespace with loopback only), which proves the build fetches nothing.
OFFLINE ?=
BAD_OFFLINE = OFFLINE: expected an executable command prefix such as scripts/offline.sh, got '$(OFFLINE)'
docs: $(TESTDEPS)
	@$(if $(filter-out auto required,$(BROWSER_CHECK)),echo "$(BAD_CHECK)" >&2; exit 2,true)
	@$(if $(OFFLINE),command -v $(firstword $(OFFLINE)) > /dev/null || { echo "$(BAD_OFFLINE)" >&2; exit 2; },true)
	$(PIP) install -q -e '.[test,docs]' $(TORCH)
	rm -rf docs/_build docs/api/generated
	@start=$$(date +%s); \
	$(OFFLINE) $(PY) -m sphinx -W --keep-going -b html docs docs/_build/html && \
	echo "site built in $$(( $$(date +%s) - start )) s: docs/_build/html/index.html"
	DOCS_SITE_REQUIRED=$(filter required,$(BROWSER_CHECK)) $(OFFLINE) $(PY) -m pytest -q -rs -p no:cacheprovider \
		tests/test_docs_site.py
	@echo "screenshots: docs/_build/screenshots/{home,tutorial,api}.png"

demo: $(BASE)
	rm -rf runs/demo
	$(VENV)/bin/denoisekit train --config configs/demo.yaml --out runs/demo
	$(VENV)/bin/denoisekit eval runs/demo --n 500 --sampler dpmpp_2m_sde --steps 20 --record
	$(VENV)/bin/denoisekit eval runs/demo --n 500 --sampler dpmpp_2m --steps 20 --record
	$(VENV)/bin/denoisekit sample runs/demo --n 64 --out runs/demo/samples.png \
		--strip runs/demo/reverse_process.png --gif runs/demo/reverse_process.gif
	@echo ""
	@echo "Pictures:"
	@echo "  samples:          runs/demo/samples.png"
	@echo "  forward process:  runs/demo/forward_process.png"
	@echo "  reverse process:  runs/demo/reverse_process.png (and .gif)"
	@echo "  training curve:   runs/demo/metrics.csv; checkpoints in runs/demo/checkpoints/"
	@echo "  sampler scores:   runs/demo/checkpoints/step-0002000/sampler_scores.json (the picture used the best)"
	@echo "  post-hoc EMA:     .venv/bin/denoisekit ema runs/demo --sigma-rel 0.05 --out runs/demo-ema05"

# Every benchmark runs, whatever the others do; each prints a 'verdict:' line per stated goal or claim and exits non-zero
# when one is missed (or it fails); the summary at the end names them all, so `make bench` fails while any is missed.
bench: $(TESTDEPS)
	$(PIP) install -q -e '.[test,bench]' $(TORCH)
	$(PIP) install -q --no-deps denoising-diffusion-pytorch pytorch-fid
	@missed=""; \
	run() { echo "== $$*"; $(PY) "$$@" || missed="$$missed  $$*\n"; }; \
	run benchmarks/train_throughput.py; \
	run benchmarks/bf16_loss.py; \
	run benchmarks/sampler_overhead.py; \
	run benchmarks/attention_layout.py; \
	run benchmarks/sampler_accuracy.py; \
	run benchmarks/vs_ddpm_pytorch.py; \
	run benchmarks/quality_vs_nfe.py --run runs/vs_ddpm_pytorch --nfe 10,20,50; \
	run benchmarks/ddim_table.py --run runs/vs_ddpm_pytorch; \
	run benchmarks/guidance_tradeoff.py; \
	run benchmarks/guidance_tradeoff.py --sampler dpmpp_2m_sde --ws 0,1,2,3 --ss "" --figure "" --grid "" \
		--name guidance_tradeoff_sde; \
	run benchmarks/improved_ddpm.py; \
	run benchmarks/improved_ddpm.py --fd-seeds 0,1,2,3; \
	run benchmarks/score_based.py; \
	run benchmarks/pc_corrector.py; \
	run benchmarks/score_pictures.py; \
	run benchmarks/ablation.py; \
	run benchmarks/ode_gap.py --run runs/ablation/v; \
	run benchmarks/default_schedules.py --run runs/ablation/v; \
	run benchmarks/few_step.py --teacher runs/ablation/demo --work runs/few_step; \
	run benchmarks/trilemma.py; \
	run benchmarks/latent_cascade.py; \
	run benchmarks/flow_paths.py; \
	run benchmarks/cld_paths.py; \
	run benchmarks/processes_mnist.py; \
	run benchmarks/reflow_mnist.py; \
	run benchmarks/lsgm_mnist.py; \
	run benchmarks/text_mnist.py; \
	run benchmarks/imagen_mnist.py; \
	run benchmarks/unclip_mnist.py; \
	run benchmarks/report.py; \
	if [ -n "$$missed" ]; then printf "benchmarks that missed a goal or failed:\n%b" "$$missed"; exit 1; fi; \
	echo "every benchmark met its goal"

clean:
	rm -rf $(VENV) runs
