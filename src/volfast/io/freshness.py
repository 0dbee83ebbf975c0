"""The one freshness rule: when may a stage's earlier output be reused instead of recomputed?

Every stage that writes per-day outputs (``volfast snapshot``, ``volfast surfaces``, each stage of
``volfast build``, and through it ``volfast demo``) records in its ``_manifest.json``:

* ``status``: ``"running"`` from the moment the stage starts writing the day, ``"complete"`` once every
  output is in place (``"failed"`` when the day failed and its outputs were removed);
* ``config`` and ``config_hash``: the *full resolved settings* of the stage (every value that can change its
  output; the caller passes the whole settings object, so a setting added later takes part automatically);
* ``code``: the code identity (:func:`code_identity`: the volfast version, the git description of the
  source tree when the compiled core was built, and sha256 hashes of the compiled core and of the Python
  sources);
* ``inputs``: name, size, modification time and sha256 of every input file;
* ``outputs``: name and size of every file written.

:func:`check` reuses a day only when all of these match what a run would use now; otherwise it says why
(``Freshness.reason``), and the caller records that reason in what it returns.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Freshness",
    "StageRun",
    "check",
    "run_stage",
    "tree_inputs",
    "code_identity",
    "input_record",
    "settings_diff",
]

#: manifest ``status`` values
RUNNING, COMPLETE, FAILED = "running", "complete", "failed"


@functools.lru_cache(maxsize=1)
def code_identity() -> dict[str, str]:
    """What code produced an output: ``volfast`` (package version), ``git`` (``git describe`` of the source
    tree when ``_core`` was built; ``"unknown"`` outside a checkout), ``core_sha256`` (the compiled core
    file) and ``python_sha256`` (every ``.py`` file of the installed package, so an editable install's
    Python edits count too). Computed once per process (a few milliseconds)."""
    from volfast import __version__

    ident = {"volfast": __version__, "git": "unknown", "core_sha256": "missing", "python_sha256": ""}
    try:
        import volfast._core as core_mod

        ident["git"] = str(getattr(core_mod, "__git_describe__", "unknown"))
        ident["core_sha256"] = _sha256_file(Path(str(core_mod.__file__)))
    except ImportError:  # pragma: no cover - a broken install: every manifest then says "missing"
        pass
    pkg = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for p in sorted(pkg.rglob("*.py")):
        h.update(p.relative_to(pkg).as_posix().encode() + b"\0")
        h.update(p.read_bytes())
    ident["python_sha256"] = h.hexdigest()
    return ident


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def input_record(path: str | os.PathLike[str], *, name: str | None = None) -> dict[str, Any]:
    """``{"name", "size", "mtime_ns", "sha256"}`` of an input file (the sha256 from a valid
    ``.sha256.json`` sidecar when there is one, else hashed)."""
    from volfast.io.dbn import file_sha256, read_sha256_sidecar

    p = Path(path)
    st = p.stat()
    sha = read_sha256_sidecar(p) or file_sha256(p)
    return {"name": name or p.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}


@dataclass(frozen=True)
class Freshness:
    """The verdict of :func:`check`: ``reusable`` and, when not, ``reason`` (one line, for a user)."""

    reusable: bool
    reason: str
    manifest: dict[str, Any] | None = None

    def __bool__(self) -> bool:
        return self.reusable


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def settings_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``["lookback_s 600.0 -> 1.0", ...]``: the settings that differ (dotted keys), sorted."""
    a = _flat(json.loads(json.dumps(old, default=str)))
    b = _flat(json.loads(json.dumps(new, default=str)))
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k, "<unset>") != b.get(k, "<unset>"):
            out.append(f"{k} {a.get(k, '<unset>')} -> {b.get(k, '<unset>')}")
    return out


def check(
    folder: str | os.PathLike[str],
    *,
    stage: str,
    config: Mapping[str, Any],
    inputs: Sequence[tuple[str, str | os.PathLike[str]]],
) -> Freshness:
    """Whether ``folder``'s manifest lets the day be reused by a run of ``stage`` with ``config`` over
    ``inputs`` (``(recorded name, path)`` pairs), and if not, why.

    Reusable only when the manifest is ``complete``, written by the same stage, with the same config hash and
    code identity, the same input names and contents (same size, and the same modification time or else the
    same sha256), and every output it lists is present at its recorded size.
    """
    from volfast.io.output import config_hash, read_manifest

    folder = Path(folder)
    m = read_manifest(folder)
    if m is None:
        return Freshness(False, "no manifest (never run, or unreadable)")
    status = m.get("status", COMPLETE)
    if status == RUNNING:
        started = m.get("created_utc")
        return Freshness(False, f"interrupted: an earlier run started {started} and never finished", m)
    if status != COMPLETE:
        return Freshness(False, f"earlier run {status}: {m.get('error') or 'no error recorded'}", m)
    if m.get("stage") != stage:
        return Freshness(False, f"manifest is of stage {m.get('stage')!r}, not {stage!r}", m)
    if m.get("config_hash") != config_hash(config):
        diff = settings_diff(m.get("config") or {}, config)
        return Freshness(False, "settings changed: " + ("; ".join(diff) or "(config hash differs)"), m)
    code = code_identity()
    old_code = m.get("code") or {"volfast": m.get("volfast_version")}
    if old_code != code:
        what = [k for k in code if old_code.get(k) != code[k]]
        old_git = old_code.get("git")
        return Freshness(False, f"code changed ({', '.join(what)}): {old_git} -> {code['git']}", m)
    have = {str(i.get("name")): i for i in m.get("inputs", [])}
    want = {name: Path(p) for name, p in inputs}
    if set(have) != set(want):
        gone, new = sorted(set(have) - set(want)), sorted(set(want) - set(have))
        return Freshness(False, f"inputs changed: removed {gone or '[]'}, added {new or '[]'}", m)
    for name, p in want.items():
        rec = have[name]
        try:
            st = p.stat()
        except OSError:
            return Freshness(False, f"input {p} is unreadable", m)
        if st.st_size != rec.get("size"):
            return Freshness(False, f"input {name} changed size ({rec.get('size')} -> {st.st_size} bytes)", m)
        if rec.get("mtime_ns") != st.st_mtime_ns:
            # touched, or from an older manifest without mtimes: the content decides
            if rec.get("sha256") != input_record(p, name=name)["sha256"]:
                return Freshness(False, f"input {name} changed content (sha256 differs)", m)
    for o in m.get("outputs", []):
        p = folder / str(o.get("name"))
        if not p.is_file():
            return Freshness(False, f"output {p} is missing", m)
        if p.stat().st_size != o.get("size"):
            return Freshness(False, f"output {p} changed size", m)
    return Freshness(True, "up to date", m)


# ------------------------------------------------------------------------- whole-folder stages
@dataclass(frozen=True)
class StageRun:
    """What :func:`run_stage` did: ``reused`` (the folder's outputs were up to date) or recomputed, and
    ``reason`` (``"up to date"``, or why the stage ran: ``"settings changed: train.lr 0.001 -> 0.01"``...)."""

    stage: str
    folder: Path
    reused: bool
    reason: str
    value: Any = None


def tree_inputs(
    root: str | os.PathLike[str], patterns: Iterable[str], *, prefix: str = ""
) -> list[tuple[str, Path]]:
    """``(name, path)`` input pairs for :func:`check` / :func:`run_stage`: every file under ``root`` that
    matches one of the glob ``patterns``, named ``prefix`` + its path relative to ``root`` (sorted)."""
    root = Path(root)
    found = {p for pat in patterns for p in root.glob(pat) if p.is_file()}
    return [(prefix + p.relative_to(root).as_posix(), p) for p in sorted(found)]


def run_stage(
    folder: str | os.PathLike[str],
    *,
    stage: str,
    config: Mapping[str, Any],
    inputs: Sequence[tuple[str, str | os.PathLike[str]]],
    outputs: Sequence[str],
    run: Callable[[], Any],
    force: bool = False,
) -> StageRun:
    """The freshness rule for a stage whose output is one folder (a trained model, a stress or hedge run, a
    backtest, a report): run ``run`` unless ``folder``'s manifest records the same stage, full resolved
    settings ``config``, code identity and input contents, and its outputs are in place.

    While ``run`` works the manifest says ``running`` (an interrupted run is redone and says so); when it
    returns, the manifest lists ``outputs`` (paths relative to ``folder``, which must exist) and records why
    the stage ran (``recomputed_because``); when it raises, the manifest says ``failed`` with the error.

    Parameters
    ----------
    folder : path
        The stage's output folder (holds ``_manifest.json``).
    stage : str
        The stage name recorded in the manifest.
    config : mapping
        Every setting that can change the outputs (JSON-able).
    inputs : sequence of (name, path)
        The input files (see :func:`tree_inputs`); compared by size, then modification time or sha256.
    outputs : sequence of str
        The files ``run`` writes, relative to ``folder``.
    run : callable
        Does the work; its return value is ``StageRun.value`` (None when reused).
    force : bool
        Run even when up to date.
    """
    from volfast.io.output import begin_manifest, fail_manifest, write_manifest

    folder = Path(folder)
    verdict = check(folder, stage=stage, config=config, inputs=inputs)
    if verdict.reusable and not force:
        return StageRun(stage, folder, True, verdict.reason)
    reason = "forced (--force)" if verdict.reusable else verdict.reason
    begin_manifest(folder, stage=stage, config=config)
    try:
        value = run()
    except Exception as exc:
        fail_manifest(folder, stage=stage, config=config, error=" ".join(str(exc).split()) or repr(exc))
        raise
    recs = []
    for o in outputs:
        p = folder / o
        st = p.stat()  # a missing output is a bug in the stage: let it raise
        recs.append({"name": o, "size": st.st_size})
    write_manifest(
        folder,
        stage=stage,
        config=config,
        inputs=[input_record(p, name=name) for name, p in inputs],
        outputs=recs,
        counts={},
        warnings=[],
        extra={"recomputed_because": reason},
    )
    return StageRun(stage, folder, False, reason, value)
