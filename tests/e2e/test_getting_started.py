"""docs/getting-started.md cannot rot: every ```sh block on the page runs, in order, in one
shell, against the local cluster (`make up` included), and must succeed."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from e2e_helpers import ROOT

PAGE = ROOT / "docs" / "getting-started.md"
_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def shell_blocks(markdown: str) -> list[str]:
    """The bodies of the page's ```sh fences, in order (```text blocks are output)."""
    return [m.group(1) for m in _BLOCK.finditer(markdown)]


def test_the_page_has_the_whole_path() -> None:
    script = "\n".join(shell_blocks(PAGE.read_text()))
    for step in ("make up", "publish", "search", "ban add", "rollout restart", "/metrics"):
        assert step in script, step
    assert shell_blocks("```sh\na\n```\n```text\nb\n```\n```sh\nc\nd\n```\n") == ["a\n", "c\nd\n"]


@pytest.mark.timeout(1200)
def test_every_command_of_getting_started_runs(kubeconfig: str) -> None:
    local = subprocess.run(
        [str(ROOT / "hack" / "cluster.sh"), "kubeconfig"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.strip()  # fmt: skip
    if Path(local).resolve() != Path(kubeconfig).resolve():
        pytest.skip("getting-started drives the local cluster (make up); KUBECONFIG is another")
    blocks = shell_blocks(PAGE.read_text())
    # ... and the publish once more, as a reader who follows the page a second time on the
    # same fleet does: an identical retry, answered with the package the first run stored
    (again,) = [b for b in blocks if "marketplace publish" in b]
    script = "set -euo pipefail\nset -x\n" + "\n".join([*blocks, again])
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}  # the page sets it
    # The author key lives where the page says (~/.config), under a config home that lives
    # as long as the cluster: a rerun on the same fleet finds the key that owns `hello`,
    # a new cluster starts with a new key, and the tester's own ~/.config is left alone.
    env["XDG_CONFIG_HOME"] = str(Path(local).parent / "reader-config")
    env.pop("MARKETPLACE_AUTHOR_KEY_FILE", None)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1100, check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, f"{out[-3000:]}\n{done.stderr[-3000:]}"
    assert re.search(r"^demo\s+market-a\s+Ready\s+True", out, re.MULTILINE), out
    published = re.findall(r"^published hello@1\.0\.0 as (\w+) ", out, re.MULTILINE)
    assert len(published) == 2, out
    assert published[0] == published[1], out
    assert re.search(r"^hello\s+1\.0\.0\s+tools", out, re.MULTILINE), out
    assert "banlist.marketplace.p2p.dev/abusers" in out
    assert "kind: BanList" in out  # the dry run printed a manifest
    assert "fleet 'demo' successfully rolled out (3 nodes)" in out
    assert re.search(r"^marketplace_node_peers 2\.0$", out, re.MULTILINE), out
    assert re.search(r"^marketplace_operator_managed_nodes\{phase=\"Ready\"\} 3\.0$", out, re.M)
    assert re.search(r"^wrote /tmp/marketplace-report\.tar\.gz \(\d+ files\)$", out, re.M)
