"""The layout holds: few modules at the top, none too long, and process-wide effects only at the edge.

The library is called by other programs (and by the tests) in their own process: it must not print,
exit, read or write the standard streams, or change interpreter-wide state. Only ``cli.py`` and
``__main__.py`` may; they hand what the library needs (streams, tuning) in as parameters.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pixi_pack"
EDGE = {"cli.py", "__main__.py"}
MAX_TOP_LEVEL_MODULES = 8
MAX_LINES = 450

#: Attribute uses that touch the process rather than the values handed in: ``(module, attribute)``.
PROCESS_ATTRIBUTES = {
    ("sys", "stdin"),
    ("sys", "stdout"),
    ("sys", "stderr"),
    ("sys", "exit"),
    ("sys", "setswitchinterval"),
    ("sys", "setrecursionlimit"),
    ("sys", "excepthook"),
    ("gc", "disable"),
    ("gc", "enable"),
    ("gc", "freeze"),
    ("atexit", "register"),
    ("signal", "signal"),
    ("os", "chdir"),
    ("os", "_exit"),
    ("os", "umask"),
    ("logging", "basicConfig"),
}
PROCESS_BUILTINS = {"print", "exit", "quit", "input"}
#: Where the library may still touch the process, and why.
ALLOWED = {
    # Reading the umask where /proc does not tell it: set, and set back at once, under a lock.
    "io/tempfiles.py": {"os.umask"},
    # A forked install worker is a process of its own: it ignores Ctrl-C (its parent stops it) and
    # ends with os._exit, so none of the parent's clean-up runs in it. Only the CLI asks for workers.
    "install/workers.py": {"os._exit", "signal.signal"},
}


def _library_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).as_posix() not in EDGE)


def _process_effects(path: Path) -> Iterator[str]:
    """Each use of a process-wide effect in ``path``, as ``line: what``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in PROCESS_ATTRIBUTES:
                yield f"{node.lineno}: {node.value.id}.{node.attr}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in PROCESS_BUILTINS:
                yield f"{node.lineno}: {node.func.id}()"
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            for alias in node.names:
                if (node.module, alias.name) in PROCESS_ATTRIBUTES:
                    yield f"{node.lineno}: from {node.module} import {alias.name}"


def test_library_leaves_process_state_to_the_cli() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{effect}"
        for path in _library_modules()
        for effect in _process_effects(path)
        if effect.split(": ", 1)[1] not in ALLOWED.get(path.relative_to(PACKAGE).as_posix(), set())
    ]
    assert found == []


def test_the_check_sees_what_it_looks_for(tmp_path: Path) -> None:
    """The checker fails on each kind of effect, so its passing above means something."""
    module = tmp_path / "bad.py"
    module.write_text(
        "import sys, gc, atexit\n"
        "from sys import exit\n"
        "sys.stdout.write('x')\n"
        "gc.disable()\n"
        "atexit.register(print)\n"
        "print('x')\n"
        "text = 'sys.exit(main())'\n"
    )
    assert sorted(_process_effects(module)) == [
        "2: from sys import exit",
        "3: sys.stdout",
        "4: gc.disable",
        "5: atexit.register",
        "6: print()",
    ]


def test_few_modules_at_the_top() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_the_folders_read_as_the_pipeline() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders == {"lock", "pack", "install", "formats", "io"}


def test_no_module_is_too_long() -> None:
    lengths = {
        p.relative_to(PACKAGE).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
        for p in PACKAGE.rglob("*.py")
    }
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}
