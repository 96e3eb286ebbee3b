# imgproc: `make up` runs the whole stack on this machine; `make test` runs every test.
# Needs only python3 (3.11+), git and make: uv itself is installed into .tools/ on first use.

PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
ARGS ?=

.PHONY: up test lint typecheck typecheck-code typecheck-infra pytest bench synth install install-dev clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

# Runtime + dev tools (no CDK): what `make up` needs. --inexact keeps test-only extras.
# --compile-bytecode: every process (each service, each `imgproc` command, each stack a test
# starts) reads compiled modules instead of compiling moto, botocore... from source, also where
# PYTHONDONTWRITEBYTECODE is set and nothing would ever be cached (docs/FACTS.md, "Python
# start-up"). Later installs skip what is already compiled.
install: $(UV)
	$(UV) sync --frozen --inexact --compile-bytecode

# checkov (infra/checkov-requirements.txt) lives apart from .venv: it pins a boto3 that the
# workspace's aiobotocore cannot use.
CHECKOV := .tools/checkov/bin/checkov
$(CHECKOV): infra/checkov-requirements.txt | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) .tools/checkov
	$(UV) pip install --quiet --python .tools/checkov/bin/python -r infra/checkov-requirements.txt
	touch $@

# Everything, including the CDK app and linters for infra/, and the browser for web tests.
install-dev: $(UV) $(CHECKOV)
	$(UV) sync --frozen --all-groups --compile-bytecode
	@if [ -x tests/browser/install_chromium.sh ]; then tests/browser/install_chromium.sh; fi

up: install
	$(VENV)/bin/imgproc up $(ARGS)

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION = 20

typecheck: typecheck-code typecheck-infra

# The tests' shared helpers and harnesses (the tests themselves are not type-checked).
TEST_HELPERS = tests/helpers.py tests/stack_process.py tests/phone_photos.py \
	tests/rendition_checks.py tests/conftest.py tests/api/api_harness.py \
	tests/integration/workflow_harness.py tests/security/security_harness.py \
	tests/security/permission_probes.py

typecheck-code:
	$(VENV)/bin/mypy --strict shared/src services/extractor/src services/thumbnailer/src \
		services/tagger/src services/status-api/src cli/src bench
	$(VENV)/bin/mypy --strict --cache-dir=.mypy_cache/tests $(TEST_HELPERS)

# Apart, so that `make test` runs it beside the rest: aws-cdk-lib's typed modules take a cold
# mypy over a minute, most of the checks' time on a fresh clone. Its own cache, as two mypy
# processes writing one cache at once may collide.
typecheck-infra:
	$(VENV)/bin/mypy --strict --cache-dir=.mypy_cache/infra infra/src

pytest:
	$(VENV)/bin/pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=15

# Lint and both type checks run side by side (about 75 s instead of 100 s on a fresh clone),
# then the tests, which keep both cores busy themselves (`-n 2`).
test: install-dev
	$(MAKE) --jobs=3 --output-sync=target lint typecheck-code typecheck-infra
	$(MAKE) pytest

# The CloudFormation template(s) for AWS, into infra/cdk.out/ (no AWS account needed).
synth: install-dev
	$(VENV)/bin/python -m imgproc_infra --outdir infra/cdk.out

bench: install
	$(VENV)/bin/python -m bench.thumbnails $(ARGS)
	$(VENV)/bin/python -m bench.tagger $(ARGS)
	$(VENV)/bin/python -m bench.search
	$(VENV)/bin/python -m bench.snapshots

clean:
	rm -rf .tools $(VENV) .pytest_cache .mypy_cache .ruff_cache infra/cdk.out
