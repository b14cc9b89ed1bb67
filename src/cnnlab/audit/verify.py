"""Is this run what it claims to be? Re-hash its data and weights against provenance.json.

At the end of training, `Run.record_weights` stores the SHA-256 of each weights file; the data's
SHA-256 (pixels and labels of each split, exactly as trained on) is stored when the run starts.
`verify` recomputes both: a weights file changed after training, or a dataset whose files
changed on disk, no longer matches, and the run says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.files import file_sha256
from cnnlab.run import Run


def verify(path: str | Path, check_data: bool = True) -> dict[str, Any]:
    """{'ok': bool, 'checks': [{what, expected, found, ok}]} for the weights files and data splits."""
    from cnnlab.errors import CnnlabError

    run = Run.load(path, weights="none")
    checks: list[dict[str, Any]] = []
    recorded = run.provenance.get("weights")
    if not recorded:
        checks.append({"what": "weights", "expected": None, "found": None, "ok": False,
                       "note": "provenance.json records no weights hashes (run unfinished or trained before they were recorded)"})
    for name, expected in (recorded or {}).items():
        file = run.path / name
        found = file_sha256(file) if file.is_file() else None
        checks.append({"what": f"weights {name}", "expected": expected, "found": found, "ok": found == expected,
                       **({} if found else {"note": "file missing"})})
    if check_data:
        try:
            found_data = run.load_data(download=False, check=False).sha256()
        except CnnlabError as e:
            found_data, note = {}, f"the data could not be loaded: {e}"
        else:
            note = ""
        for split, expected in run.provenance["data"]["sha256"].items():
            found = found_data.get(split)
            checks.append({"what": f"data {run.config.data} {split}", "expected": expected, "found": found,
                           "ok": found == expected, **({"note": note} if note else {})})
    data = run.provenance["data"]
    return {
        "run": str(run.path),
        "ok": all(c["ok"] for c in checks),
        "checks": checks,
        "data_source": data.get("source", ""),
        "data_licence": data.get("licence", "unknown"),
        "seed": run.provenance.get("seed"),
        "versions": run.provenance.get("versions", {}),
        "git": run.provenance.get("git"),
    }
