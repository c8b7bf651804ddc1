# m2mauth — the two commands are `make run` and `make test`; see README.md.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROTOS := $(wildcard protos/m2mauth/v1/*.proto)
# google.rpc.Status and its details, vendored (third_party/googleapis/README.md).
GOOGLEAPIS := third_party/googleapis
GOOGLE_RPC_PROTOS := google/rpc/status.proto google/rpc/error_details.proto
# The API and its error details as one FileDescriptorSet, for tools that take one.
DESCRIPTOR_SET := src/m2mauth/v1/m2mauth.binpb
# Everything `make gen` writes; `make gen-check` fails if it differs from the commit.
GENERATED := src/m2mauth/v1 clients/typescript/src/gen clients/go/m2mauth/v1

# What is installed, as two stamps: the server alone (make run), or the server with
# the dev extras (make test, lint, gen). Installing the extras makes both current,
# so either order of `make run` and `make test` installs each package once.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

# uv installs the same pinned packages as pip, several times faster (it downloads in
# parallel and links from its cache). It is itself a package on PyPI, installed into
# the venv by pip. It does not read pip's configuration (UV_INDEX_URL names another
# index); INSTALLER=pip uses pip alone.
INSTALLER ?= uv
UV_VERSION := 0.13.9
ifeq ($(INSTALLER),uv)
INSTALL := $(BIN)/uv pip install --python $(BIN)/python
INSTALLER_BIN := $(BIN)/uv
else ifeq ($(INSTALLER),pip)
INSTALL := $(BIN)/pip install
INSTALLER_BIN :=
else
$(error INSTALLER must be uv or pip, not '$(INSTALLER)')
endif

.PHONY: run test lint gen gen-check fmt bench clean client-toolchains

$(BIN)/python:
	@echo "==> creating $(VENV) with $$($(PYTHON) --version)"
	$(PYTHON) -m venv $(VENV)

$(BIN)/uv: | $(BIN)/python
	@echo "==> installing uv $(UV_VERSION) into $(VENV) (INSTALLER=pip does without it)"
	$(BIN)/pip install uv==$(UV_VERSION)

$(RUN_STAMP): pyproject.toml | $(BIN)/python $(INSTALLER_BIN)
	@echo "==> installing m2mauth and what it needs to run ($(INSTALLER))"
	$(INSTALL) -e .
	touch $@

# Playwright (a dev extra) drives Debian's chromium (scripts/test-browser): it must
# never download a browser of its own.
$(DEV_STAMP): pyproject.toml | $(BIN)/python $(INSTALLER_BIN)
	@echo "==> installing m2mauth with the dev extras: tests, lint, code generation ($(INSTALLER))"
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(INSTALL) -e '.[dev]'
	touch $@ $(RUN_STAMP)

NODE := node_modules/.installed

# buf, for `make lint`, pinned by package-lock.json. (The Node clients of the interop
# tests have their own package in tests/interop/node, installed by the tests.)
$(NODE): package.json package-lock.json
	@echo "==> installing buf from npm (for make lint)"
	npm ci --no-audit --no-fund
	touch $@

## run: migrate the embedded SQLite database under ./var and start the server
run: $(RUN_STAMP)
	@echo "==> migrating the SQLite database under ./var and starting the server"
	$(BIN)/m2mauth serve --dev

# The PostgreSQL suite runs against this server when it is reachable, and is
# skipped, loudly, when it is not. Each run creates and drops its own databases.
M2MAUTH_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
export M2MAUTH_TEST_POSTGRES_URL

## test: install what the tests need and run the whole suite
test: $(DEV_STAMP) $(NODE)
	scripts/client-toolchains auto
	scripts/test-browser auto
	$(BIN)/pytest

## lint: buf lint, buf breaking (scripts/buf-breaking), ruff, mypy and tsc
lint: $(DEV_STAMP) $(NODE)
	node_modules/.bin/buf lint
	scripts/buf-breaking
	node_modules/.bin/tsc -p clients/typescript --noEmit
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench
	$(BIN)/mypy

## bench: throughput, latency and memory of a real server (see bench/README.md)
bench: $(DEV_STAMP)
	$(BIN)/python -m bench

fmt: $(DEV_STAMP)
	$(BIN)/ruff check --fix src tests examples bench
	$(BIN)/ruff format src tests examples bench

## gen: regenerate from protos/: the Python code, the .proto copies and the descriptor
## set under src/m2mauth/v1 (all shipped in the wheel), and the TypeScript and Go
## clients' code under clients/ (buf.gen.yaml)
gen: $(DEV_STAMP) $(NODE)
	rm -f src/m2mauth/v1/*_pb2*.py src/m2mauth/v1/*_pb2*.pyi
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m grpc_tools.protoc -I protos \
		--python_out=src --grpc_python_out=src \
		--mypy_out=src --mypy_grpc_out=src $(PROTOS)
	rm -f src/m2mauth/v1/*.proto src/m2mauth/v1/*.binpb
	cp $(PROTOS) src/m2mauth/v1/
	$(BIN)/python -m grpc_tools.protoc -I protos -I $(GOOGLEAPIS) \
		--include_imports --include_source_info \
		--descriptor_set_out=$(DESCRIPTOR_SET) $(PROTOS) $(GOOGLE_RPC_PROTOS)
	scripts/client-toolchains require
	rm -rf clients/typescript/src/gen clients/go/m2mauth/v1
	node_modules/.bin/buf generate
	node_modules/.bin/buf generate --template $(GOOGLEAPIS)/buf.gen.yaml

## gen-check: fail if `make gen` would change the committed code
gen-check: gen
	git diff --exit-code --stat -- $(GENERATED) || \
		(echo "generated code is stale: run 'make gen' and commit" >&2; exit 1)
	test -z "$$(git status --porcelain -- $(GENERATED))" || \
		(echo "generated code is untracked: run 'make gen' and commit" >&2; exit 1)

## client-toolchains: install Go, its gRPC libraries and protoc from Debian (apt-get);
## without them the Go and Java client checks skip (CI installs them itself)
client-toolchains:
	scripts/client-toolchains install

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis
