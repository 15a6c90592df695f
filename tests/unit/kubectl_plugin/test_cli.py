"""The plugin's command line: kubectl's global flags anywhere, usage errors exit 2,
a cluster that cannot be reached is one `error:` line and exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from marketplace_kubectl import cli


@pytest.mark.parametrize(
    "argv",
    [
        ["-n", "ns", "--context", "c", "status", "demo"],
        ["status", "demo", "-n", "ns", "--context", "c"],
        ["--context", "c", "status", "--namespace", "ns", "demo"],
    ],
)
def test_global_flags_before_or_after_the_verb(argv: list[str]) -> None:
    args = cli.parser().parse_args(argv)
    assert (args.namespace, args.context, args.fleet) == ("ns", "c", "demo")


def test_defaults_and_choices() -> None:
    args = cli.parser().parse_args(["rollout", "status", "demo"])
    assert (args.watch, args.timeout, args.namespace, args.kubeconfig) == (
        "true",
        "10m",
        None,
        None,
    )
    args = cli.parser().parse_args(["ban", "add", "x", "--cidr", "10.0.0.0/8"])
    assert (args.dry_run, args.output, args.fleet) == ("none", None, None)


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "-o", "name"],
        ["ban", "add", "x"],  # a target is required
        ["ban", "add", "x", "--cidr", "10.0.0.0/8", "--peer", "mpabcdefgh"],
        ["ban", "add", "x", "--cidr", "10.0.0.0/8", "--duration", "1h", "--expires-at", "t"],
        ["rollout", "sideways", "demo"],
        ["why"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == cli.EXIT_USAGE
    assert "usage: kubectl marketplace" in capsys.readouterr().err


def test_an_unreadable_kubeconfig_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["status", "--kubeconfig", str(tmp_path / "missing")])
    assert exit_.value.code == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: cannot load kubeconfig")
    assert err.count("\n") == 1
