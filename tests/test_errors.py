"""Each error class carries its CLI exit code and its HTTP status, mapped once (cli._cli, the API's handler);
the API side is tested in test_api.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

from reviewops import errors
from reviewops.cli import _cli
from reviewops.cli import app as cli_app

EXIT_CODES = {errors.ReviewOpsError: 1, errors.InputError: 2, errors.ConfigError: 3, errors.StoreError: 4,
              errors.ModelArtifactError: 5, errors.RegistryError: 6, errors.NotFoundError: 6,
              errors.ConflictError: 6, errors.SourceError: 7, errors.StorageFullError: 8}


@pytest.mark.parametrize(("error", "code"), EXIT_CODES.items(), ids=lambda x: getattr(x, "__name__", str(x)))
def test_each_error_exits_with_its_code_and_one_line(error, code):
    app = typer.Typer()

    @app.command()
    @_cli
    def fail() -> None:
        raise error("what went wrong, and what to do")

    r = CliRunner().invoke(app, [])
    assert r.exit_code == code and error.exit_code == code
    assert "what went wrong, and what to do" in r.stderr and "Traceback" not in r.output


def test_every_error_class_has_a_status_and_an_exit_code():
    classes = {errors.ReviewOpsError, *(c for c in vars(errors).values()
                                       if isinstance(c, type) and issubclass(c, errors.ReviewOpsError))}
    assert classes == set(EXIT_CODES)
    assert all(400 <= c.http_status < 600 for c in classes)
    documented = {2, 3, 4, 5, 6, 7, 8}  # README, "The command line"
    assert {c.exit_code for c in classes} - {1} == documented


def test_a_crawl_where_every_source_failed_exits_with_the_source_error_code(monkeypatch, tmp_path):
    from reviewops.jobs import collect

    monkeypatch.setenv("REVIEWOPS_HOME", str(tmp_path))
    counts = {"movies": 0, "movies_failed": 0, "pages": 0, "fetched": 0, "new": 0, "duplicate": 0,
              "rejected": 0, "by_rule": {}, "errors": ["cgv: unreachable"]}
    failed = SimpleNamespace(source="cgv", batch_id=1, status="failed", counts=lambda: counts)
    monkeypatch.setattr(collect, "crawl", lambda *args, **kwargs: [failed])
    r = CliRunner().invoke(cli_app, ["crawl", "--source", "cgv", "--json"])
    assert r.exit_code == errors.SourceError.exit_code == 7, r.output
    assert "every source failed (cgv)" in r.stderr
