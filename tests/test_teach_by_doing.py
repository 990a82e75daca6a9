"""Teach by doing: each notebook shows its technique in plain library calls, and the learner's
exercise code is used by the notebook afterwards.

- "In view": each notebook's technique appears at least once as plain TensorFlow / tfmot /
  NumPy / Optuna / tf2onnx / ONNX Runtime code, in a code cell that calls nothing from
  ``effcourse`` (no ``effcourse.`` and none of the names the notebook imported from it), so a
  learner can copy the cell onto their own Keras model.
- "Feeds the course": notebooks 01 onwards have at least one exercise (a cell tagged
  ``solution`` that defines a function) placed before the Summary, whose function a later
  code cell that is neither a check nor a solution calls or passes on.

A notebook still being rewritten is listed in ``PENDING``: its tests are strict xfails, so
they fail as soon as the notebook meets the rule and the entry must go.
"""

import ast
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).parent.parent
NOTEBOOKS = {p.name[:2]: p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))}

# Per notebook: regular expressions, each of which must match some plain code cell.
IN_VIEW = {
    "01": [r"tf\.GradientTape\(", r"\.assign_sub\(|apply_gradients\("],
    "02": [
        r"prune_low_magnitude\(",
        r"UpdatePruningStep\(",
        r"strip_pruning\(",
        r"PolynomialDecay\(|ConstantSparsity\(",
        r"\.from_config\(",  # the channel surgery, narrow_copy
    ],
    "03": [r"TFLiteConverter", r"Optimize\.DEFAULT", r"representative_dataset", r"quantize_model\("],
    "04": [
        r"cluster_weights\(",
        r"CentroidInitialization",
        r"strip_clustering\(",
        r"PreserveQuantizeScheme\(",
        r"\*\*\s*2",
    ],
    "05": [
        r"set_global_policy\(",
        r"LossScaleOptimizer\(",
        r"get_scaled_loss\(|scale_loss\(",
        r"clone_model\(",
        r"compute_dtype",
    ],
    "06": [
        r"Model\(",
        r"loss_weights\s*=",
        r"TFLiteConverter",
        r"Interpreter\(",
        r"stop_gradient\(",
        r"add_loss\(",
    ],
    "07": [
        r"MirroredStrategy\(",
        r"strategy\.run\(",
        r"experimental_distribute_dataset\(|distribute_datasets_from_function\(",
        r"TF_CONFIG",
        r"experimental_distribute_values_from_function\(",
        r"with tf\.device\(",
        r"output_gradients=",
        r"\.build\(stage\.trainable_variables\)",
    ],
    "08": [
        r"def objective\(trial",
        r"trial\.suggest_",
        r"create_study\(",
        r"constraints_func",
        r"trial\.report\(",
        r"should_prune\(",
    ],
    "09": [
        r"tf2onnx\.convert\.from_keras\(",
        r"InferenceSession\(",
        r"quantize_static\(",
        r"CalibrationDataReader",
    ],
    "10": [
        r"def decode_step\(",
        r"np\.round\(",
        r"np\.linalg\.cholesky\(",
        r"TFLiteConverter",
        r"tf2onnx\.convert\.from_keras\(",
        r"InferenceSession\(",
        r"quantize_dynamic\(",
    ],
}
# Notebooks whose exercises must feed the course (00's exercise is a prediction).
FEEDS = [k for k in NOTEBOOKS if k != "00"]
# Notebooks not yet rewritten: remove a number when its notebook meets both rules.
PENDING: set[str] = set()


def _cells(key):
    return nbformat.read(NOTEBOOKS[key], as_version=4).cells


def _effcourse_names(cells):
    """Every name a notebook binds from effcourse (``from effcourse import a, b as c``)."""
    names = {"effcourse"}
    for cell in cells:
        if cell.cell_type == "code":
            for m in re.finditer(r"^from effcourse(?:\.\w+)* import (.+)$", cell.source, re.M):
                for part in m.group(1).strip("()").split(","):
                    names.add(part.split(" as ")[-1].strip())
    return {n for n in names if n}


def plain_cells(cells):
    """The code cells that call nothing from effcourse."""
    names = _effcourse_names(cells)
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(names))) + r")\.")
    return [c.source for c in cells if c.cell_type == "code" and not pattern.search(c.source)]


def _is_solution(cell):
    return "solution" in cell.metadata.get("tags", [])


def _summary_index(cells):
    for i, cell in enumerate(cells):
        if cell.cell_type == "markdown" and re.search(
            r"^#{1,3} (\d+\. )?(Summary|Exercises)\b", cell.source, re.M
        ):
            return i
    return len(cells)


def exercises_that_feed(cells):
    """Functions defined in solution cells before the Summary and used by a later ordinary cell."""
    fed = []
    end = _summary_index(cells)
    for i, cell in enumerate(cells[:end]):
        if cell.cell_type != "code" or not _is_solution(cell):
            continue
        defined = [n.name for n in ast.parse(cell.source).body if isinstance(n, ast.FunctionDef)]
        for later in cells[i + 1 :]:
            if later.cell_type != "code" or _is_solution(later) or "checks." in later.source:
                continue
            try:
                used = {n.id for n in ast.walk(ast.parse(later.source)) if isinstance(n, ast.Name)}
            except SyntaxError:
                continue
            fed += [name for name in defined if name in used]
    return sorted(set(fed))


def _pending(key):
    return [pytest.mark.xfail(strict=True, reason="notebook not yet rewritten")] if key in PENDING else []


@pytest.mark.parametrize(
    "key", [pytest.param(k, marks=_pending(k), id=NOTEBOOKS[k].stem) for k in IN_VIEW if k in NOTEBOOKS]
)
def test_technique_in_plain_library_calls(key):
    plain = plain_cells(_cells(key))
    missing = [p for p in IN_VIEW[key] if not any(re.search(p, src) for src in plain)]
    assert not missing, f"{NOTEBOOKS[key].name}: no plain code cell (no effcourse call) matches {missing}"


@pytest.mark.parametrize("key", [pytest.param(k, marks=_pending(k), id=NOTEBOOKS[k].stem) for k in FEEDS])
def test_an_exercise_feeds_the_notebook(key):
    assert exercises_that_feed(_cells(key)), (
        f"{NOTEBOOKS[key].name}: no exercise before the Summary whose function a later ordinary cell uses"
    )


def test_the_rules_see_what_they_should():
    cells = [
        nbformat.v4.new_code_cell(
            "import effcourse\nfrom effcourse import prune, plots as pl\nprofile = effcourse.setup()"
        ),
        nbformat.v4.new_code_cell("m = tfmot.sparsity.keras.prune_low_magnitude(model)"),
        nbformat.v4.new_code_cell("m = prune.wrap(model)"),
        nbformat.v4.new_code_cell("pl.save(fig)"),
        nbformat.v4.new_code_cell("def mask(w, s):\n    return w", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("checks.nb02.mask(mask)"),
        nbformat.v4.new_code_cell("sweep = [mask(w, s) for s in sparsities]"),
        nbformat.v4.new_markdown_cell("## Summary"),
        nbformat.v4.new_code_cell("def late(x):\n    return x", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("late(1)"),
    ]
    assert plain_cells(cells) == [
        cells[1].source,
        cells[4].source,
        cells[5].source,
        cells[6].source,
        cells[8].source,
        cells[9].source,
    ]
    assert exercises_that_feed(cells) == ["mask"]
    assert exercises_that_feed(cells[:6]) == []
