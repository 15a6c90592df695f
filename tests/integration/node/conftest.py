import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from node_cluster import NodeCluster  # noqa: E402


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NodeCluster]:
    started = NodeCluster.start(tmp_path, 5)
    try:
        yield started
    finally:
        started.close()
        for node in started.nodes:
            if node.log.exists():
                sys.stderr.write(f"--- node {node.index} log tail ---\n{node.log.read_text()[-3000:]}\n")
