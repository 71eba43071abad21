"""examples/analyst.ipynb executes top to bottom against a real daily run (nbclient, this venv's kernel)."""
import os
import sys
from pathlib import Path

import pytest

from report_support import report_root

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "analyst.ipynb"


def test_analyst_notebook_executes(tmp_path_factory, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient
    from jupyter_client.kernelspec import KernelSpecManager

    import pipeline

    root, _ = report_root(tmp_path_factory)
    monkeypatch.setenv("PIPELINE_DATA_DIR", str(root))
    # The kernel imports the same pipeline as the tests and runs this interpreter.
    repo = str(Path(pipeline.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("MPLBACKEND", raising=False)     # the kernel's inline backend, headless
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert Path(spec.argv[0]).resolve() == Path(sys.executable).resolve() or spec.argv[0] in ("python", "python3")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the scatter was not drawn"
