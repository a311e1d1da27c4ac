"""Every damaged input of the corpus (``tests/corpus/make_corpus.py``) through ``cim convert``.

Each case runs the ``cim`` command in this process (``cli.main``, as a user's shell would, with
its exit code and stderr), under a time limit, and must end as its :class:`Case` says: one
``error:`` line naming the damaged file with exit 1, or exit 0 with a sound output and, where
data was lost, a warning that counts it. Never a traceback, never a hang.
"""

from __future__ import annotations

import gc
import io
import json
import signal
import traceback
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from tests.corpus.make_corpus import ANY, CASES, ERROR, LOSSY, OK, Case, Corpus

#: seconds one case may take (the slowest sound case takes well under one on an idle machine)
TIME_LIMIT = 30.0


class CaseTimeout(Exception):
    pass


def run_cim(args: list[str], limit: float = TIME_LIMIT) -> tuple[int | str, str]:
    """Run ``cim ARGS`` in this process: (exit code or ``"timeout"``/``"exception"``, stderr)."""
    from cim.cli.main import cli

    err = io.StringIO()

    def on_alarm(signum, frame):
        raise CaseTimeout

    def show(message, category, filename, lineno, file=None, line=None):  # as a shell shows them
        err.write(warnings.formatwarning(message, category, filename, lineno, line))

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    code: int | str
    try:
        with redirect_stderr(err), redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.resetwarnings()  # Python's own filters, as in a shell
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", category)
            warnings.showwarning = show
            try:
                cli.main(args=args, prog_name="cim", standalone_mode=True)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except CaseTimeout:
                code = "timeout"
            except BaseException:
                traceback.print_exc(file=err)
                code = "exception"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        gc.unfreeze()  # the command froze what was alive for its own exit; this process goes on
    return code, err.getvalue()


@pytest.fixture(scope="module")
def corpus(tiny_sources, tmp_path_factory) -> Corpus:
    from tests.helpers import REALDATA

    realdata = REALDATA if (REALDATA / "SOURCES.md").exists() else None
    return Corpus(tmp_path_factory.mktemp("corpus"), tiny_sources.root, realdata)


def check_output(out: Path, stderr: str) -> None:
    """A success's output: a city.json naming one layer with tiles, every tileset's content on
    disk, no temporary file left."""
    city = json.loads((out / "city.json").read_text())
    (layer,) = city["layers"]
    assert layer["stats"]["tiles"] > 0, stderr
    for ts in out.rglob("tileset.json"):
        _contents_exist(ts, json.loads(ts.read_text())["root"])
    leftovers = [p.name for p in out.rglob("*") if ".tmp" in p.name or p.name.startswith(".tmp")]
    assert not leftovers, leftovers


def _contents_exist(ts: Path, tile: dict) -> None:
    for c in tile.get("contents", [tile["content"]] if "content" in tile else []):
        uri = c["uri"]
        if "{" not in uri:
            assert (ts.parent / uri).exists(), f"{ts}: {uri} missing"
    for child in tile.get("children", []):
        _contents_exist(ts, child)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case, corpus: Corpus) -> None:
    if case.realdata and corpus.bases.realdata is None:
        pytest.skip("real third-party data not found (../shared/realdata)")
    made = corpus.make(case)
    out = made.out or case.folder(corpus.root) / "out"
    args = ["convert", case.kind, *map(str, made.sources), str(out), *made.args, "--workers", "1", "-q"]
    code, stderr = run_cim(args)
    assert code != "timeout", f"no answer in {TIME_LIMIT} s"
    assert "Traceback" not in stderr, stderr
    assert code in (0, 1), f"exit {code}: {stderr}"
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    warnings = [line for line in lines if line.startswith("warning")]
    if code == 1:
        assert case.expect != OK, f"a sound input failed: {stderr}"
        assert len(lines) == 1 and len(errors) == 1, f"not one error line: {stderr}"
        assert any(name in errors[0] for name in made.names), f"the error does not name {made.names}: {errors[0]}"
        assert not (out / "city.json").exists()
        return
    assert case.expect != ERROR, f"exit 0 on input that must be refused: {stderr or '(no word)'}"
    if case.expect == LOSSY:
        assert warnings, "exit 0 on a damaged input without a warning of what was lost"
    assert case.expect in (OK, LOSSY, ANY)
    check_output(out, stderr)
