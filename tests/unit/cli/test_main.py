"""`tickstrata`'s dispatch: the image's role (`TICKSTRATA_ROLE`) is the command when none is given."""

from __future__ import annotations

import pytest

from tickstrata.cli.main import main


def test_without_a_command_the_usage_is_printed_and_the_exit_is_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TICKSTRATA_ROLE", raising=False)
    assert main([]) == 2
    assert "usage: tickstrata <command>" in capsys.readouterr().out


def test_the_image_role_runs_when_no_command_is_given(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKSTRATA_ROLE", "version")
    assert main([]) == 0
    assert capsys.readouterr().out.startswith("tickstrata ")


def test_an_explicit_command_wins_over_the_image_role(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKSTRATA_ROLE", "writer")
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("tickstrata ")


def test_an_unknown_image_role_is_refused(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKSTRATA_ROLE", "miner")
    assert main([]) == 2
    assert "unknown command 'miner'" in capsys.readouterr().err
