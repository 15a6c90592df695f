# marketplace-fleet: every entry point a user or CI needs. Each target installs
# what it needs itself (idempotently, cached outside git) and is fast when warm.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
export PATH := $(VENV)/bin:$(PATH)
PYTEST_ARGS ?=

.PHONY: help
help: ## list targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: venv
venv: ## create/refresh the virtualenv (.venv) from the lock (lock/dev.txt)
	@hack/venv.sh

.PHONY: lock
lock: ## re-resolve lock/ after editing dependencies in pyproject.toml (keeps what still fits)
	@hack/lock.sh

.PHONY: k8s-binaries
k8s-binaries: ## build (once, cached) etcd, kube-apiserver, controller-manager, scheduler, kubectl
	@hack/build-k8s.sh >/dev/null

.PHONY: go-binaries
go-binaries: ## build (once, cached) Prometheus, promtool and Flux's controllers from their Go modules
	@hack/build-prometheus.sh >/dev/null
	@hack/build-flux.sh >/dev/null

.PHONY: cluster
cluster: venv k8s-binaries ## start the local Kubernetes cluster (idempotent; NODES=N local Nodes, default 3; a network namespace per pod, POD_NETWORK=loopback for none)
	@hack/cluster.sh up

.PHONY: cluster-down
cluster-down: ## stop the local cluster (only the processes it started)
	@hack/cluster.sh down

.PHONY: kubeconfig
kubeconfig: ## print the admin kubeconfig path: export KUBECONFIG=$$(make -s kubeconfig)
	@hack/cluster.sh kubeconfig

.PHONY: kind-up
kind-up: ## for Docker users: a kind cluster with the images and chart (KUBECONFIG=$$(hack/kind-up.sh kubeconfig))
	@hack/kind-up.sh

.PHONY: up
up: cluster ## the main job: local cluster, the operator and a sample fleet
	@hack/up.sh

.PHONY: generate
generate: venv ## regenerate crds/ and docs/api-reference.md from the models
	$(PY) -m marketplace_operator.crdgen
	$(PY) -m marketplace_operator.apiref

.PHONY: lint
lint: venv ## ruff, mypy (strict), import contracts, dead code (vulture)
	ruff check .
	ruff format --check .
	mypy protocol/marketplace_protocol node/marketplace_node operator/marketplace_operator \
	  plugin/marketplace_kubectl hack/local_kubelet tests bench
	lint-imports
	vulture

.PHONY: fmt
fmt: venv ## format and autofix
	ruff format .
	ruff check --fix .

.PHONY: test-unit
test-unit: venv ## unit tests (no cluster), with coverage and its floor (pyproject.toml)
	pytest tests/unit --cov --cov-report=term $(PYTEST_ARGS)

.PHONY: test-lowest
test-lowest: ## unit tests with every direct dependency at its floor (lock/lowest.txt, .venv-lowest)
	@VENV=$(ROOT)/.venv-lowest REQUIREMENTS=$(ROOT)/lock/lowest.txt hack/venv.sh
	$(ROOT)/.venv-lowest/bin/pytest tests/unit -q $(PYTEST_ARGS)

.PHONY: test-integration
test-integration: cluster go-binaries ## integration tests against the local cluster and real node processes
	KUBECONFIG=$$(hack/cluster.sh kubeconfig) pytest tests/integration --durations=10 $(PYTEST_ARGS)

.PHONY: test-e2e
test-e2e: venv go-binaries ## end-to-end tests (Flux and Prometheus included); against KUBECONFIG if set, else the local cluster
	@if [[ -z "$${KUBECONFIG:-}" ]]; then $(MAKE) -s cluster; export KUBECONFIG=$$(hack/cluster.sh kubeconfig); fi; \
	pytest tests/e2e --durations=25 $(PYTEST_ARGS)

.PHONY: helm
helm: ## install helm (cached) and print its path
	@hack/helm.sh

.PHONY: images
images: venv ## build the node and operator container images (debootstrap base + buildah, cached)
	@hack/images.sh

.PHONY: test-images
test-images: images cluster ## run each image under containerd and check it reports healthy
	MARKETPLACE_TEST_IMAGES=1 KUBECONFIG=$$(hack/cluster.sh kubeconfig) pytest tests/integration/images $(PYTEST_ARGS)

.PHONY: node-binaries
node-binaries: ## build (once, cached) the real kubelet, containerd and the pause image
	@hack/build-node.sh >/dev/null

.PHONY: test-realnode
test-realnode: venv k8s-binaries ## smoke set on a real-kubelet Node (containerd, runc, CNI); says why when the machine cannot
	@if why=$$(hack/real-node.sh check); then \
	  REAL_NODE=1 hack/cluster.sh up; rc=0; \
	  MARKETPLACE_TEST_REAL_NODE=1 KUBECONFIG=$$(hack/cluster.sh kubeconfig) \
	    pytest tests/e2e/realnode $(PYTEST_ARGS) || rc=$$?; \
	  hack/real-node.sh down; exit $$rc; \
	else echo "test-realnode: NOT RUN: this machine cannot run a real kubelet: $$why"; fi

.PHONY: test-loopback
test-loopback: venv k8s-binaries ## the loopback pod network (POD_NETWORK=loopback, the node farm's) on a cluster of its own: a small set
	@hack/cluster.sh down >/dev/null 2>&1 || true
	@export CLUSTER_DIR=$${CLUSTER_DIR:-$(CURDIR)/.cluster}-loopback POD_NETWORK=loopback NODES=2; \
	  hack/cluster.sh up; rc=0; \
	  KUBECONFIG=$$(hack/cluster.sh kubeconfig) pytest $(LOOPBACK_SET) $(PYTEST_ARGS) || rc=$$?; \
	  hack/cluster.sh down; exit $$rc
# What leans on loopback pod addresses: a Deployment answering on its 127.N pod IP,
# host-network pods, two fleets peering, and clients bound to pods' addresses.
LOOPBACK_SET := tests/integration/cluster/test_cluster_workloads.py::test_deployment_of_http_server_gets_ready_and_answers_on_its_pod_ip \
  tests/integration/cluster/test_cluster_workloads.py::test_host_network_pods_get_the_node_address \
  tests/e2e/test_fleet_peering.py tests/e2e/test_proxy_protocol.py

.PHONY: test
test: lint test-unit test-lowest test-integration test-e2e test-images test-realnode test-loopback ## everything: lint, unit (also at the dependency floors), integration, end-to-end (pods in network namespaces), images, real kubelet, the loopback pod network

.PHONY: bench
bench: cluster ## benchmarks: numbers and ratios, written to docs/benchmarks.md with plots
	KUBECONFIG=$$(hack/cluster.sh kubeconfig) $(PY) -m bench

.PHONY: bench-scale
bench-scale: venv k8s-binaries ## the operator at 100/300/1,000 nodes on the node farm (restarts the local cluster with SIMULATE_NODES=1)
	hack/cluster.sh down
	export SIMULATE_NODES=1 KUBELET_MAX_PODS=1100 KUBELET_CPU=1000 KUBELET_MEMORY=4000Gi; \
	  hack/cluster.sh up && KUBECONFIG=$$(hack/cluster.sh kubeconfig) $(PY) -m bench scale

.PHONY: chaos
chaos: cluster ## the chaos suite: every fault x {rollout, policy change} under load, 20 operator kills mid-rollout; writes docs/benchmarks/chaos.md
	@results=$$(dirname $$(hack/cluster.sh kubeconfig))/chaos-results.jsonl; rm -f $$results; rc=0; \
	MARKETPLACE_CHAOS=full MARKETPLACE_CHAOS_RESULTS=$$results KUBECONFIG=$$(hack/cluster.sh kubeconfig) \
	  pytest tests/e2e/test_chaos.py tests/e2e/test_rollout_chaos.py $(PYTEST_ARGS) || rc=$$?; \
	$(PY) -m bench.chaos_report $$results || rc=$$?; exit $$rc

.PHONY: clean
clean: cluster-down ## stop the cluster and remove local state (keeps caches)
	rm -rf .cluster .cluster-netns .cluster-loopback
