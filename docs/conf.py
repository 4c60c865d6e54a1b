"""Sphinx configuration of the site: the lectures executed, the API from the docstrings, math by a bundled MathJax."""
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

project = "denoisekit"
author = "the denoisekit authors"
copyright = "2026, the denoisekit authors"
release = version = "0.1.0"

# tqdm.auto warns once in a kernel without ipywidgets; the lectures show no progress bars
os.environ.setdefault("PYTHONWARNINGS", "ignore:IProgress not found")
# the lectures' kernels read an IPython profile inside the build folder: only errors logged (ipykernel warns of its
# unencrypted local TCP at every start), history kept out of the user's ~/.ipython
_profile = HERE / "_build" / "ipython" / "profile_default"
_profile.mkdir(parents=True, exist_ok=True)
(_profile / "ipython_kernel_config.py").write_text('c.IPKernelApp.log_level = "ERROR"\n')
os.environ["IPYTHONDIR"] = str(_profile.parent)

# Math is typeset by MathJax 3 with its fonts, bundled into the site from the sphinx-mathjax-offline package (which
# points sphinx.ext.mathjax at its copy): nothing is fetched when a page is viewed.
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.autosummary", "sphinx.ext.mathjax", "sphinx-mathjax-offline"]
html_theme = "furo"
html_title = "denoisekit"
templates_path = ["_templates"]
exclude_patterns = ["_build", "_templates", "conf.py", "**/.ipynb_checkpoints", "*.ipynb"]

# The tutorials are jupytext percent-format scripts; every cell runs at each build and an error fails it.
nb_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}
nb_execution_mode = os.environ.get("DOCS_EXECUTE", "force")
nb_execution_raise_on_error = False   # a failed cell is a warning with its traceback; -W fails the build
nb_execution_timeout = int(os.environ.get("DOCS_CELL_TIMEOUT", "600"))
nb_execution_show_tb = True
nb_ipywidgets_js = {}           # no widget scripts from a CDN
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

autosummary_generate = True
autodoc_typehints = "none"      # the signature carries them; torch's types have no local target
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}


def plain_docstring(app, what, name, obj, options, lines):
    """Docstrings are plain text in the papers' notation (|x|^2, a * b): escape the two characters RST reads as markup."""
    lines[:] = [line.replace("\\", "\\\\").replace("*", "\\*").replace("|", "\\|") for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", plain_docstring)
