"""examples/analyst.ipynb executes top to bottom against a real daily run (nbclient, this venv's
kernel), from the repo root and from examples/ (Jupyter's default: the notebook's own folder)."""
import os
import sys
from pathlib import Path

import pytest

from report_support import report_root

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "analyst.ipynb"


@pytest.mark.parametrize("folder", [REPO, REPO / "examples"], ids=["repo-root", "examples"])
def test_analyst_notebook_executes(tmp_path_factory, monkeypatch, folder):
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
                   resources={"metadata": {"path": str(folder)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the scatter was not drawn"
    assert str(root) in "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


@pytest.mark.parametrize("folder", [REPO, REPO / "examples"], ids=["repo-root", "examples"])
def test_data_root_comes_from_the_package_not_the_folder(monkeypatch, folder):
    """Without PIPELINE_DATA_DIR the notebook's data root is the checkout's data/ from either folder
    (the repo root's ./data is that same folder)."""
    import pipeline

    monkeypatch.delenv("PIPELINE_DATA_DIR", raising=False)
    monkeypatch.chdir(folder)
    assert pipeline.data_root() == Path(pipeline.__file__).resolve().parents[1] / "data"
