# One entry point for people and CI. `make setup` then `make serve`; `make test` runs the suite
# (and sets up first if needed).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
REPO   := model_repository
MODELS := sd_img2img sd_depth sd_inpaint sd_upscale resnet_classifier
PYTEST_ARGS ?=
# Parallel workers (pytest-xdist): one file (or files sharing a server / store) per unit of work,
# slow units first (tests/conftest.py, docs/testing.md). PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= 3

.PHONY: setup venv weights weights-real serve stop test client-demo demo demo-gen package mme env loadtest bench serve-docker rehearse soak clean help browser export-venvs explore-venv prometheus

help:
	@echo "make setup      virtualenv (pinned), tritonserver from nvidia-pytriton, tiny weights"
	@echo "make serve      start tritonserver on $(REPO)/ (HTTP :8000, gRPC :8001, metrics :8002)"
	@echo "make stop       stop it"
	@echo "make client-demo  call every model once with serving.launch.client"
	@echo "make demo       the drift demo end to end: train, serve, replay 3 weeks, score, report"
	@echo "make demo-gen   the generative demo: sd_img2img prompt / settings / output drift per embedding space"
	@echo "make test       the test suite (sets up first if needed)"
	@echo "make weights-real  real checkpoints at pinned revisions, or SOURCE=folder|file.safetensors (networked GPU hosts)"
	@echo "make package    SageMaker MME tarballs in dist/ (+ manifest, checked)"
	@echo "make mme        local SageMaker-compatible MME endpoint on :8080 over dist/"
	@echo "make env        execution-environment tarball dist/python_env.tar.gz for the newest SageMaker image (TRITON_VERSION=, ENV_ARGS=)"
	@echo "make loadtest   concurrency / request-rate sweeps against the running server"
	@echo "make bench      benchmark suite -> bench/results/"
	@echo "make rehearse   stock SageMaker container rehearsal: 5 MME tarballs + env tarball, store on S3 (moto)"
	@echo "make soak       10 min of mixed traffic + injected faults -> bench/results/soak-<date>.md (docs/reliability.md)"

setup: $(STAMP) weights

venv: $(STAMP)

$(STAMP): env/requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==26.3"
	# torch==2.13.0 is the CPU build on this kind of machine; GPU hosts use deploy/docker.
	$(PY) -m pip install --quiet -r env/requirements.lock
	# nvidia-pytriton only for its bundled tritonserver binary; its numpy<2 pin is honoured by the lock.
	$(PY) -m pip install --quiet --no-deps "nvidia-pytriton==0.7.0"
	# The Triton stub runs Python isolated (PYTHONPATH ignored): a .pth puts this checkout's
	# serving/ and monitoring/ on its sys.path, like an editable install without a build step.
	$(PY) -c "import sysconfig; open(sysconfig.get_paths()['purelib'] + '/triton_sd_platform.pth', 'w').write('$(CURDIR)\n')"
	$(PY) -c "from serving.launch.server import backend_dir; print('triton python backend:', backend_dir())"
	touch $(STAMP)

# Builds the tiny checkpoints that are missing (one process: imports cost more than building).
weights: $(STAMP)
	$(PY) -m serving.runtime.checkpoints tiny --repo $(REPO)

# Real weights at the revisions pinned in serving/runtime/checkpoints/hub.py (docs/deploy.md#real-weights):
# FP16=1, REVISIONS="sd_depth=<sha> ...", or one model from a folder / single .safetensors file:
# MODEL=sd_img2img SOURCE=ckpt.safetensors CONFIG=<diffusers folder or hub id>.
weights-real: $(STAMP)
	$(PY) -m serving.runtime.checkpoints fetch --repo $(REPO) --force $(if $(FP16),--fp16,) \
	  $(foreach r,$(REVISIONS),--revision $(r)) $(if $(SOURCE),--models $(MODEL) --source $(SOURCE),) $(if $(CONFIG),--config $(CONFIG),)

# INSTANCES=1: one instance per model instead of two (a host that cannot hold two copies: docs/gpu.md).
serve: setup
	$(PY) -m serving.launch.server start $(if $(INSTANCES),--instances $(INSTANCES),)

stop:
	-$(PY) -m serving.launch.server stop

client-demo: $(STAMP)
	$(PY) -m serving.launch.demo_client

# The report test drives a real headless Chromium, the export tests validate with the Arize and
# Fiddler SDKs, the explore test runs Phoenix, each in its own venv: `make test` installs them
# first (about 8 min the first time, nothing after) and then requires them.
test: setup browser export-venvs explore-venv prometheus
	REQUIRE_BROWSER=1 REQUIRE_EXPORT_VENVS=1 REQUIRE_PROMETHEUS=1 $(PY) -m pytest \
	  -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Arize / Fiddler SDKs and Arize Phoenix pin what our lock cannot share: one venv each under
# build/venvs/<name> (pins in env/venv-<name>.lock), used offline by the export and explore tests.
EXPORT_VENVS := arize fiddler
export-venvs: $(foreach v,$(EXPORT_VENVS),build/venvs/$(v)/.installed)

explore-venv: build/venvs/phoenix/.installed

build/venvs/%/.installed: env/venv-%.lock
	rm -rf build/venvs/$*
	$(PYTHON) -m venv build/venvs/$*
	build/venvs/$*/bin/python -m pip install --quiet -r env/venv-$*.lock
	touch $@

# Debian's chromium + chromium-driver for the headless-browser test (apt-get as root, else sudo).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then echo "chromium: $$(command -v chromium)"; \
	else SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; fi

# Debian's prometheus (prometheus + promtool) for the alert-rule tests (tests/deploy/test_prometheus_rules.py).
prometheus:
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null; then echo "prometheus: $$(command -v prometheus)"; \
	else SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus; fi

# SageMaker MME tarballs: dist/<model>.tar.gz + dist/manifest.json (ENV_TARBALL=dist/python_env.tar.gz
# ships the execution environment inside each tarball). The check fails on the tiny test weights
# (run `make weights-real`); DEPLOY_ALLOW_TEST_WEIGHTS=1 accepts them (local MME, tests).
package: weights
	$(PY) -m deploy package $(if $(ENV_TARBALL),--env-tarball $(ENV_TARBALL),)
	$(PY) -m deploy check

# Local SageMaker-compatible MME endpoint on :8080 serving dist/ (run `make package` first).
mme: setup
	$(PY) -m deploy.mme --model-data-url $(or $(MODEL_DATA_URL),dist) --port $(or $(MME_PORT),8080) $(if $(MEMORY_BUDGET_MB),--memory-budget-mb $(MEMORY_BUDGET_MB),)

# Execution environment tarball for EXECUTION_ENV_PATH, built for the target image's Python and
# platform (default: the newest SageMaker Triton release in deploy/images.py; TRITON_VERSION=local
# for the bundled tritonserver). ENV_ARGS="--variant no-torch" or "--resolve-only": see docs/env.md.
env: $(STAMP)
	$(PY) env/build_env.py $(if $(TRITON_VERSION),--triton-version $(TRITON_VERSION),) --out dist/python_env.tar.gz $(ENV_ARGS)

# The main job, offline: train a digits ResNet, serve it, replay clean/blurred/darkened weeks,
# score drift per week, write var/demo/report/report.html.
demo: setup
	$(PY) -m bench.demo

# The generative demo, offline: sd_img2img (tiny weights, in-process) serves a baseline + clean /
# prompts-moved / settings-changed weeks; scored per embedding space; var/demo-gen/report/report.html.
demo-gen: setup
	$(PY) -m bench.demo.generative

# Load test against a running server (`make serve`), e.g. MODEL=sd_depth LOADTEST_ARGS="--rate 1,2 --duration 20".
loadtest: setup
	$(PY) -m bench.loadtest $(or $(MODEL),resnet_classifier) $(LOADTEST_ARGS)

# The benchmark suite (P1-P5, P7), results in bench/results/<date>.{json,md}. P3 also installs the
# reference libraries (Evidently, alibi-detect) into their own venvs under build/bench-venvs/
# (their pins conflict with ours); BENCH_ARGS="--p3-args=" skips them. P7 writes up to ~9 GB
# under build/bench/fleet (deleted after each size); BENCH_ARGS="--p7-args=--sizes=10000,100000" skips 1M.
BENCH_ARGS ?= --p3-args=--with-references
bench: setup
	$(PY) bench/run.py $(BENCH_ARGS)

# Stock-container rehearsal: MME tarballs + env tarball as SageMaker's stock Triton image runs
# them, capture store on a moto S3; exits non-zero on any shortfall. The env tarball is cached
# in build/rehearse/ (keyed on the lock): CI should cache that directory.
rehearse: weights
	DEPLOY_ALLOW_TEST_WEIGHTS=1 $(PY) -m bench.rehearse

# Reliability soak (a benchmark): MINUTES=10 by default; the 1-minute version runs in `make test`.
MINUTES ?= 10
soak: setup
	$(PY) -m bench.soak --minutes $(MINUTES)

# GPU hosts: NVIDIA's Triton container, same repository, all GPUs.
serve-docker:
	$(MAKE) -C deploy/docker serve

clean:
	rm -rf build var dist $(foreach m,$(MODELS),$(REPO)/$(m)/1/checkpoint)
