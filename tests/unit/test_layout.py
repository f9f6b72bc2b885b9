"""Imports flow one way: stages never import the wiring (pipeline, daemon) or the CLI."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "stream_detector"
# module -> modules allowed to import it
WIRING = {
    "stream_detector.daemon": {"stream_detector.cli"},
    "stream_detector.cli": {"stream_detector.__main__"},
}


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_stages_do_not_import_the_wiring_or_the_cli() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        for imported in imports_of(path):
            allowed = WIRING.get(imported)
            if allowed is not None and module not in allowed:
                offenders.append(f"{module} imports {imported}")
    assert not offenders, offenders


def test_messages_config_and_errors_import_no_stage() -> None:
    for path in [PACKAGE / "messages.py", PACKAGE / "errors.py", *(PACKAGE / "config").glob("*.py")]:
        own = {i for i in imports_of(path) if i.startswith("stream_detector")}
        assert own <= {"stream_detector.errors"} | {f"stream_detector.config.{p.stem}" for p in
                                                    (PACKAGE / "config").glob("*.py")}, (path, own)
