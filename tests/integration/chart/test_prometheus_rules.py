"""The chart's PrometheusRule under the real promtool (built from the Prometheus Go module,
hack/build-prometheus.sh): the rendered rules pass `promtool check rules`, and every alert
has unit tests (rules/alerts_test.yaml) in which it fires on the series that should
trigger it and stays silent on the ones that should not."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import ROOT, Helm

TESTS = Path(__file__).parent / "rules" / "alerts_test.yaml"
VALUES = {"monitoring": {"prometheusRule": {"enabled": True}}}


@pytest.fixture(scope="session")
def promtool() -> Path:
    out = subprocess.run(
        [str(ROOT / "hack" / "build-prometheus.sh")],
        capture_output=True, text=True, timeout=3600, check=True,
    )  # fmt: skip
    return Path(out.stdout.strip()) / "promtool"


def _rule(helm: Helm) -> dict[str, Any]:
    objs = helm.template(VALUES, release="marketplace-operator")
    (rule,) = [o for o in objs if o["kind"] == "PrometheusRule"]
    return rule


def test_every_alert_has_a_firing_and_a_silent_case(helm: Helm) -> None:
    alerts = {r["alert"] for g in _rule(helm)["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert alerts == {
        "MarketplaceOperatorDown",
        "MarketplacePolicyPropagationSlow",
        "MarketplaceRolloutStuck",
        "MarketplaceNodeDegraded",
        "MarketplacePackagesUnderReplicated",
    }
    cases = [
        t for test in yaml.safe_load(TESTS.read_text())["tests"] for t in test["alert_rule_test"]
    ]
    for alert in alerts:
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert} never fires in a test"
        assert any(not c["exp_alerts"] for c in mine), f"{alert} is never tested silent"


def test_promtool_checks_and_unit_tests_the_rules(
    helm: Helm, promtool: Path, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": _rule(helm)["spec"]["groups"]}))
    shutil.copy(TESTS, tmp_path / TESTS.name)

    checked = subprocess.run(
        [str(promtool), "check", "rules", str(rules)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout + checked.stderr

    tested = subprocess.run(
        [str(promtool), "test", "rules", TESTS.name],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr
