"""The package's layout rules: imports point one way (cli → {paper, training, calibration} → {eval, efficiency} →
models → the patch), and a method's file is named after the method."""

import ast
from pathlib import Path

import llava_patch

PACKAGE = Path(llava_patch.__file__).resolve().parent
# group → rank: a module may import its own group or a group of lower rank; paper reads eval's records
# and efficiency times the toy on eval's easy-VQA questions (eval never imports efficiency).
RANKS = {"core": 0, "models": 1, "eval": 2, "efficiency": 2, "paper": 3, "training": 3, "calibration": 3, "cli": 4}
ALLOWED_SAME_RANK = {("paper", "eval"), ("efficiency", "eval")}
# The patch's own subpackages belong to core with the top-level modules (registry, tower, ...).
CORE_SUBPACKAGES = ("methods", "adapters", "encoders")


def _group(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "core"
    if parts[1] in RANKS:
        return parts[1]
    if (PACKAGE / parts[1]).is_dir() and parts[1] not in CORE_SUBPACKAGES:
        raise ValueError(f"subpackage llava_patch.{parts[1]} has no place in the layout: add it to RANKS or CORE_SUBPACKAGES")
    return "core"


def _module_name(path: Path) -> str:
    parts = ["llava_patch", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(source: str, module: str, is_package: bool = False) -> list[tuple[str, int]]:
    """(absolute llava_patch module, line) for every import of the package in `module`'s source."""
    package = module if is_package else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{alias.name}" for alias in node.names] if not node.module else [target]
            found += [(name, node.lineno) for name in names if name.startswith("llava_patch")]
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.startswith("llava_patch")]
    return found


def _violations(module: str, source: str, is_package: bool = False) -> list[str]:
    group = _group(module)
    wrong = []
    for target, line in _imports(source, module, is_package):
        destination = _group(target)
        if destination != group and (group, destination) not in ALLOWED_SAME_RANK and RANKS[destination] >= RANKS[group]:
            wrong.append(f"{module}:{line}: {group} imports {destination} ({target})")
    return wrong


def test_imports_point_one_way():
    wrong = [violation for path in sorted(PACKAGE.rglob("*.py"))
             for violation in _violations(_module_name(path), path.read_text(), path.name == "__init__.py")]
    assert wrong == []


def test_the_rule_catches_arrows_against_it():
    """Relative and absolute imports are resolved; each wrong arrow is reported with its line."""
    core = "from .eval.runner import run\nfrom .models import loading\nfrom . import budget\n"
    assert _violations("llava_patch.patch", core) == [
        "llava_patch.patch:1: core imports eval (llava_patch.eval.runner)",
        "llava_patch.patch:2: core imports models (llava_patch.models)"]
    assert _violations("llava_patch.eval.__main__", "from ..cli import main\n") == [
        "llava_patch.eval.__main__:1: eval imports cli (llava_patch.cli)"]
    assert _violations("llava_patch.eval.runner", "import llava_patch.paper.tables\n") == [
        "llava_patch.eval.runner:1: eval imports paper (llava_patch.paper.tables)"]
    assert _violations("llava_patch.models.loading", "from ..efficiency import cost\n") == [
        "llava_patch.models.loading:1: models imports efficiency (llava_patch.efficiency)"]
    # The patch's subpackages are core: they may not reach outward.
    assert _violations("llava_patch.encoders.dinov2", "from ..models.tiny import load\nfrom ..registry import register_encoder\n") == [
        "llava_patch.encoders.dinov2:1: core imports models (llava_patch.models.tiny)"]
    assert _violations("llava_patch.paper.tables", "from ..eval.benchmarks import BENCHMARKS\nfrom .. import apply\n") == []


def test_method_files_are_named_after_their_methods():
    files = sorted(p.stem for p in (PACKAGE / "methods").glob("*.py") if p.stem not in ("__init__", "base"))
    assert files == llava_patch.methods()


def test_nothing_points_outside_the_repository():
    """Users get this repository alone: no file may send them to the workspace around it."""
    root = PACKAGE.parent
    tracked = [p for p in root.rglob("*") if p.is_file() and ".venv" not in p.parts and ".git" not in p.parts
               and p.suffix in (".py", ".md", ".sh", ".ipynb", ".toml", ".yml")]
    needle = "../" + "shared"  # the workspace outside the repository, which users never have
    assert [str(p.relative_to(root)) for p in tracked if needle in p.read_text(errors="ignore")] == []
