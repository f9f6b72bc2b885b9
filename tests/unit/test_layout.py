"""The layout: a package per stage of the data flow, imports flowing one way (down), each package's
public names in its `__init__` (`__all__`), small modules that open by saying what they own, and
unit tests that mirror the tree."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "stream_detector"
# A stage imports only from lower levels (and from itself): messages/errors/credentials <- config <-
# capture, model, web <- detect, outputs <- daemon, offline <- cli. So capture, model, detect and
# outputs never import daemon, offline or cli, and neither stage of a level imports the other.
LEVELS = {
    "errors": 0, "messages": 0, "credentials": 0,
    "config": 1,
    "capture": 2, "model": 2, "web": 2,
    "detect": 3, "outputs": 3,
    "daemon": 4, "offline": 4,
    "arguments": 5, "cli": 6, "__main__": 7,
}
STAGES = [name for name in LEVELS if (PACKAGE / name).is_dir()]
MAX_LINES = 400


def modules() -> list[tuple[str, Path]]:
    """(stage, path) of every module; the top-level stream_detector/__init__.py has stage ""."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        out.append(("" if parts == ("__init__.py",) else parts[0].removesuffix(".py"), path))
    return out


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import in a file, function-level and TYPE_CHECKING ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "stream_detector" and len(parts) > 1 else None


def test_stages_import_only_downward() -> None:
    offenders = []
    for stage, path in modules():
        for module, _ in imports_of(path):
            other = stage_of(module)
            if other is None or other == stage or stage == "":
                continue
            assert other in LEVELS, f"{path.relative_to(ROOT)}: {other} has no level in LEVELS"
            if LEVELS[other] >= LEVELS[stage]:
                offenders.append(f"{path.relative_to(ROOT)} ({stage}) imports {module}")
    assert not offenders, offenders


def test_other_stages_are_used_through_their_public_names() -> None:
    """A package's modules are private to it: others import the package and what `__all__` lists."""
    offenders = []
    for stage, path in modules():
        for module, names in imports_of(path):
            other = stage_of(module)
            if other not in STAGES or other == stage:
                continue
            public = importlib.import_module(f"stream_detector.{other}").__all__
            if module != f"stream_detector.{other}":
                offenders.append(f"{path.relative_to(ROOT)} imports {module}, not stream_detector.{other}")
            offenders += [f"{path.relative_to(ROOT)} imports {n} from {module}: not in its __all__"
                          for n in names if n not in public]
    assert not offenders, offenders


def test_each_package_says_what_it_is_and_lists_its_public_names_and_modules() -> None:
    for stage in STAGES:
        package = importlib.import_module(f"stream_detector.{stage}")
        doc = package.__doc__ or ""
        assert doc.strip(), f"{stage}/__init__.py: say what the stage is"
        assert package.__all__ == sorted(package.__all__, key=lambda n: (not n.isupper(), n)), stage
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{stage}: {name} in __all__ but not there"
        files = sorted(p.name for p in (PACKAGE / stage).glob("*.py") if p.name != "__init__.py")
        missing = [f for f in files if f not in doc]
        assert not missing, f"{stage}/__init__.py: its docstring names no {missing}"


def test_every_module_opens_with_what_it_owns_in_at_most_three_lines() -> None:
    for _, path in modules():
        doc = ast.get_docstring(ast.parse(path.read_text()), clean=False)
        assert doc, f"{path.relative_to(ROOT)}: no module docstring"
        assert doc.strip("\n").split("\n\n")[0].count("\n") < 3, f"{path.relative_to(ROOT)}: over 3 lines"


def test_no_module_is_over_the_limit() -> None:
    long = {str(p.relative_to(ROOT)): n for _, p in modules()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_unit_tests_mirror_the_tree() -> None:
    """tests/unit/<stage>/test_<module>.py (or test_<module>_<topic>.py) for a module of that stage."""
    strays = []
    for test in sorted((ROOT / "tests" / "unit").glob("*/test_*.py")):
        stage, name = test.parent.name, test.stem.removeprefix("test_")
        stems = {p.stem for p in (PACKAGE / stage).glob("*.py")}
        if stage not in STAGES or not any(name == s or name.startswith(s + "_") for s in stems):
            strays.append(str(test.relative_to(ROOT)))
    assert not strays, f"no module of the package for: {strays}"
