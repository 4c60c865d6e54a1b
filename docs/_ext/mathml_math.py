"""A Sphinx math renderer that writes MathML at build time (latex2mathml): pages typeset math with no script."""
from docutils import nodes
from latex2mathml.converter import convert
from sphinx.util import logging

logger = logging.getLogger(__name__)


def _mathml(self, node, latex: str, display: str) -> str:
    """The MathML of `latex`; a formula latex2mathml cannot read is a build warning (so a strict build fails)."""
    try:
        return convert(latex.strip(), display=display)
    except Exception as error:  # latex2mathml raises its own and plain exceptions alike
        logger.warning("math not rendered (%s): %s", error, latex, location=node)
        return f'<code class="math-error">{self.encode(latex)}</code>'


def visit_math(self, node):
    self.body.append(f'<span class="math">{_mathml(self, node, node.astext(), "inline")}</span>')
    raise nodes.SkipNode


def visit_displaymath(self, node):
    latex = node.astext()
    number = ""
    if node.get("number"):
        number = f'<span class="eqno">({node["number"]})</span>'
    self.body.append(f'<div class="math">{number}{_mathml(self, node, latex, "block")}</div>')
    raise nodes.SkipNode


def setup(app):
    app.add_html_math_renderer("mathml", (visit_math, None), (visit_displaymath, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
