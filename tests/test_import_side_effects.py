"""Issue 14: importing volfast (every module) changes nothing global: no ``matplotlib.use``, no torch / numba
thread counts, no environment variables, no warning filters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

_PROBE = textwrap.dedent(
    """
    import json, os, pkgutil, importlib, warnings, sys
    import matplotlib, torch, numba

    def state():
        return {
            "env": dict(os.environ),
            "torch_threads": torch.get_num_threads(),
            "torch_interop": torch.get_num_interop_threads(),
            "numba_threads": numba.get_num_threads(),
            "mpl_backend": matplotlib.rcParams._get_backend_or_none(),
            "filters": len(warnings.filters),
            "torch_dtype": str(torch.get_default_dtype()),
        }

    before = state()
    import volfast
    failed = []
    # an editable install's path also holds the checkout root (tests, benchmarks): only package folders
    paths = [p for p in volfast.__path__ if os.path.basename(os.path.normpath(p)) == "volfast"]
    for m in pkgutil.walk_packages(paths, "volfast."):
        if m.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(m.name)
        except ImportError as exc:  # an optional dependency (triton, dask) that is absent
            failed.append(f"{m.name}: {exc}")
    after = state()
    n = sum(name.startswith("volfast.") for name in sys.modules)
    print(json.dumps({"before": before, "after": after, "n": n, "failed": failed}))
    """
)


def test_importing_every_module_has_no_global_side_effect() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND",)}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, check=True, timeout=300
    ).stdout
    r = json.loads(out.strip().splitlines()[-1])
    before, after = r["before"], r["after"]
    keys = set(before["env"]) | set(after["env"])
    assert {k for k in keys if before["env"].get(k) != after["env"].get(k)} == set()
    assert r["n"] >= 60, r  # the walk really imported the package's modules
    del before["env"], after["env"]
    assert after == before


def test_one_name_one_thing() -> None:
    """Issue 14: ``volfast.snapshot`` the function shadowed ``volfast.snapshot`` the subpackage."""
    import types

    import volfast
    import volfast.snapshot

    assert isinstance(volfast.snapshot, types.ModuleType) and volfast.snapshot.__name__ == "volfast.snapshot"
    assert isinstance(volfast.take_snapshot, types.FunctionType)
    assert volfast.snapshot.take_snapshot is volfast.take_snapshot
