"""The support bundle: secrets never leave, structure stays readable, failures are listed."""

from __future__ import annotations

import io
import tarfile

import yaml
from marketplace_kubectl import report
from marketplace_operator import errors

TOKEN = "s3cr3t-t0ken-value"


def test_secret_values_go_references_stay() -> None:
    secret = {
        "kind": "Secret",
        "metadata": {"name": "demo-admin", "managedFields": [{}]},
        "type": "Opaque",
        "data": {"token": "czNjcjN0"},
    }
    assert report.scrub(secret) == {
        "kind": "Secret",
        "metadata": {"name": "demo-admin"},
        "type": "Opaque",
        "data": {"token": "[REDACTED]"},
    }
    pod = {
        "kind": "Pod",
        "metadata": {"name": "a", "annotations": {"note": f"Authorization: Bearer {TOKEN}"}},
        "spec": {
            "automountServiceAccountToken": False,
            "volumes": [{"name": "admin", "secret": {"secretName": "demo-admin"}}],
            "containers": [
                {
                    "env": [
                        {"name": "ADMIN_TOKEN", "value": TOKEN},
                        {"name": "MARKETPLACE_NODE_FLEET", "value": "demo"},
                    ]
                }
            ],
        },
    }
    out = report.scrub(pod)
    assert TOKEN not in str(out)
    assert out["spec"]["automountServiceAccountToken"] is False
    assert out["spec"]["volumes"][0]["secret"] == {"secretName": "demo-admin"}
    assert out["spec"]["containers"][0]["env"][1]["value"] == "demo"


def test_as_list_is_a_kubectl_list() -> None:
    data = yaml.safe_load(report.as_list([{"metadata": {"name": "x"}}], "ConfigMap"))
    assert data == {
        "apiVersion": "v1",
        "kind": "List",
        "items": [{"kind": "ConfigMap", "metadata": {"name": "x"}}],
    }


def test_tarball_has_every_file_under_one_root_and_the_problems() -> None:
    bundle = report.Bundle("root")
    bundle.add_text("a.txt", "hello")

    def broken() -> str:
        raise errors.NotFound("pods x not found", status=404)

    bundle.collect("logs/x.log", broken)
    with tarfile.open(fileobj=io.BytesIO(bundle.tarball()), mode="r:gz") as tar:
        names = tar.getnames()
        assert names == ["root/a.txt", "root/errors.txt"]
        errors_file = tar.extractfile("root/errors.txt")
        assert errors_file is not None
        assert errors_file.read() == b"logs/x.log: pods x not found\n"
