# One entry point for people and CI. `make setup` then `make serve`; `make test` runs the suite
# (and sets up first if needed).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
REPO   := model_repository
MODELS := sd_img2img sd_depth sd_inpaint sd_upscale resnet_classifier
PYTEST_ARGS ?=

.PHONY: setup venv weights weights-real serve stop test client-demo package serve-docker clean help

help:
	@echo "make setup      virtualenv (pinned), tritonserver from nvidia-pytriton, tiny weights"
	@echo "make serve      start tritonserver on $(REPO)/ (HTTP :8000, gRPC :8001, metrics :8002)"
	@echo "make stop       stop it"
	@echo "make client-demo  call every model once with serving.client"
	@echo "make test       the test suite (sets up first if needed)"
	@echo "make weights-real  fetch real checkpoints from the hub (networked GPU hosts)"
	@echo "make package    SageMaker MME tarballs in dist/ (+ manifest, checked)"

setup: $(STAMP) weights

venv: $(STAMP)

$(STAMP): env/requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==26.3"
	# torch==2.13.0 is the CPU build on this kind of machine; GPU hosts use deploy/docker.
	$(PY) -m pip install --quiet -r env/requirements.lock
	# nvidia-pytriton only for its bundled tritonserver binary; its numpy<2 pin is honoured by the lock.
	$(PY) -m pip install --quiet --no-deps "nvidia-pytriton==0.7.0"
	$(PY) -c "from serving.server import backend_dir; print('triton python backend:', backend_dir())"
	touch $(STAMP)

# Builds the tiny checkpoints that are missing (one process: imports cost more than building).
weights: $(STAMP)
	$(PY) -m serving.checkpoints tiny --repo $(REPO)

weights-real: $(STAMP)
	$(PY) -m serving.checkpoints fetch --repo $(REPO) --force $(if $(FP16),--fp16,)

serve: setup
	$(PY) -m serving.server start

stop:
	-$(PY) -m serving.server stop

client-demo: $(STAMP)
	$(PY) -m serving.demo_client

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# SageMaker MME tarballs: dist/<model>.tar.gz + dist/manifest.json (ENV_TARBALL=dist/python_env.tar.gz
# ships the execution environment inside each tarball).
package: weights
	$(PY) -m deploy package $(if $(ENV_TARBALL),--env-tarball $(ENV_TARBALL),)
	$(PY) -m deploy check

# GPU hosts: NVIDIA's Triton container, same repository, all GPUs.
serve-docker:
	$(MAKE) -C deploy/docker serve

clean:
	rm -rf build var dist $(foreach m,$(MODELS),$(REPO)/$(m)/1/checkpoint)
