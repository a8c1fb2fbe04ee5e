"""The report's LaTeX tables compile with pdflatex + booktabs in a two-column article, without an
overfull box, with unique labels and human names."""
import re
import shutil
import subprocess

import pandas as pd
import pytest

from gapbench import report
from test_report import synthetic_rows

pytestmark = pytest.mark.skipif(shutil.which("pdflatex") is None,
                                reason="pdflatex not installed (Debian: texlive-latex-base texlive-latex-recommended)")


def _tables():
    runs = pd.DataFrame(synthetic_rows())
    # a wide one too: seven gaps, a lower-is-better metric in scientific notation
    wide = [dict(r, gap=g, run_id=f"{r['run_id']}-{g}") for r in synthetic_rows() if r["task"] == "adding"
            for g in (10, 20, 50, 100, 200, 500, 1000)]
    return ([rep for task in ("copy", "adding", "lm_word") for rep in report.tables(runs, task, n_boot=0)]
            + report.tables(pd.DataFrame(wide), "adding", n_boot=0))


def test_tables_compile_in_one_column_without_overfull_boxes(tmp_path):
    reps = _tables()
    texts = [report.latex_table(rep) for rep in reps]
    labels = [re.search(r"\\label\{([^}]*)\}", t).group(1) for t in texts]
    assert len(set(labels[:3])) == 3, labels  # one label per table
    for i, t in enumerate(texts):
        (tmp_path / f"t{i}.tex").write_text(t)
        assert "lstm\\_peephole" not in t and "recall\\_acc" not in t  # human names, not code names
    body = "".join(f"\\input{{t{i}}}\n\\clearpage\n" for i in range(len(texts)))
    (tmp_path / "doc.tex").write_text("\\documentclass[twocolumn]{article}\n\\usepackage{booktabs}\n"
                                      "\\begin{document}\n" + body + "\\end{document}\n")
    p = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert p.returncode == 0, log[-3000:]
    assert "Overfull \\hbox" not in log, re.findall(r"Overfull \\hbox.*", log)
    assert "LSTM (peephole)" in texts[1] and "recall accuracy" in texts[0]
