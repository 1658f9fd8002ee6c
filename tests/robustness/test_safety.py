"""Safety by inspection of the code: checkpoints load weights only, nothing user-supplied is unpickled
or evaluated. (Escaping and offline reports are checked on real workflow output in test_bad_input.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CODE = sorted([*REPO.glob("src/quagga/**/*.py"), *REPO.glob("bench/*.py"), *REPO.glob("workflow/**/*.smk"),
               REPO / "workflow" / "Snakefile"])


def _python_files() -> list[Path]:
    return [p for p in CODE if p.suffix == ".py"]


def _calls(tree: ast.AST, module: str, name: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == name and isinstance(node.func.value, ast.Name) and node.func.value.id == module]


def test_there_is_code_to_inspect() -> None:
    assert len(_python_files()) > 30


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_torch_load_is_weights_only(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for call in _calls(tree, "torch", "load"):
        flags = {kw.arg: kw.value for kw in call.keywords}
        assert isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value is True, (
            f"{path.name}:{call.lineno}: torch.load without weights_only=True")
    for call in _calls(tree, "np", "load"):
        flags = {kw.arg: kw.value for kw in call.keywords}
        allow = flags.get("allow_pickle")
        assert allow is None or (isinstance(allow, ast.Constant) and allow.value is False), (
            f"{path.name}:{call.lineno}: np.load with allow_pickle")


UNSAFE = [
    (r"^\s*(import|from)\s+(pickle|cPickle|dill|joblib|shelve|marshal)\b", "unpickling module"),
    (r"\b(pickle|joblib|dill)\.(load|loads)\(", "unpickling"),
    (r"\bpd\.read_pickle\(|\.read_pickle\(", "read_pickle"),
    (r"(?<![\w.])(eval|exec)\(", "eval/exec"),
    (r"\byaml\.load\((?![^)]*Loader=yaml\.SafeLoader)", "yaml.load without SafeLoader"),
    (r"\byaml\.unsafe_load\(|\bFullLoader\b|\bUnsafeLoader\b", "unsafe YAML loader"),
    (r"allow_pickle\s*=\s*True", "allow_pickle=True"),
    (r"weights_only\s*=\s*False", "weights_only=False"),
    (r"\bload_from_checkpoint\(", "Lightning load_from_checkpoint (unpickles hyper-parameters)"),
    (r"shell\s*=\s*True", "subprocess with a shell"),
    (r"\bos\.system\(", "os.system"),
]


@pytest.mark.parametrize("path", CODE, ids=lambda p: str(p.relative_to(REPO)))
def test_no_unpickling_eval_or_shell_of_user_content(path: Path) -> None:
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("#", 1)[0]
        for pattern, what in UNSAFE:
            assert not re.search(pattern, code), f"{path.relative_to(REPO)}:{lineno}: {what}: {line.strip()}"


def test_shell_commands_quote_every_config_string() -> None:
    """Rules pass config-derived JSON with :q, so a path or label with spaces or quotes is one argument."""
    for rules in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for line in rules.read_text().splitlines():
            for field in re.findall(r"\{(params\.\w+(?::\w)?)\}", line):
                name = field.split(":")[0]
                if name not in ("params.out", "params.models", "params.results", "params.seed"):
                    assert field.endswith(":q"), f"{rules.name}: {{{field}}} is not quoted"
