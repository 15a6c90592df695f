"""Fixtures for tests against a real cluster: the local one (hack/cluster.sh) or $KUBECONFIG.

`make test-integration` starts the local cluster first; a missing cluster is
an error, never a skip.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config

from tests.support.poll import wait_for

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@pytest.fixture(scope="session")
def kubeconfig() -> Path:
    """The admin kubeconfig: $KUBECONFIG, else the local cluster's."""
    path = Path(
        os.environ.get("KUBECONFIG")
        or subprocess.run(
            [str(ROOT / "hack" / "cluster.sh"), "kubeconfig"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    if not path.is_file():
        pytest.fail(f"no kubeconfig at {path}: start the cluster with `make cluster`")
    return path


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig)
    )
    try:
        client.VersionApi(api).get_code()
    except Exception as exc:
        pytest.fail(f"the cluster at {kubeconfig} does not answer: {exc}")
    yield api
    api.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def namespace(core: Any) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace(body={"metadata": {"name": name, "labels": {"test": "integration"}}})
    yield name
    core.delete_namespace(name, body={"propagationPolicy": "Background"})


@pytest.fixture
def wait() -> Callable[..., Any]:
    """`wait(probe, timeout=..., what=...)`: see tests.support.poll.wait_for."""
    return wait_for
