"""The layering that import-linter cannot see: references Django resolves from strings.

``lint-imports`` (``make lint``) checks Python imports against the contracts in
``pyproject.toml``. A ``ForeignKey("ingestion.Provider")``, ``apps.get_model("marketdata", ...)``
or a model relation built any other way is no import, so this test reads the same layer order
and checks (a) every model relation in the app registry and (b) every string model reference
in the apps' source, outside tests and migrations.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest
from django.apps import apps

ROOT = Path(__file__).resolve().parents[2]


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["id"] == "layers"]
    return list(reversed(contract["layers"]))  # lowest first


LAYERS = _layers()
APPS = [name for name in LAYERS if (ROOT / name / "apps.py").exists()]


def _rank(app_label: str) -> int | None:
    """The layer of a project app (by label), None for Django's and third-party apps."""
    return LAYERS.index(app_label) if app_label in LAYERS else None


def _reverse(importer: str, imported: str) -> bool:
    low, high = _rank(importer), _rank(imported)
    return low is not None and high is not None and high > low


def test_the_layer_order_names_every_app_and_the_base() -> None:
    assert LAYERS[0] == "core"
    assert set(APPS) == {"exchanges", "instruments", "accounts", "marketdata", "ingestion", "seedcompat"}
    assert LAYERS.index("marketapp") > max(LAYERS.index(app) for app in APPS)


def test_no_model_relation_points_up_a_layer() -> None:
    upward = [
        f"{model._meta.label}.{field.name} -> {field.related_model._meta.label}"
        for model in apps.get_models()
        for field in model._meta.get_fields(include_hidden=True)
        if field.is_relation
        and not field.auto_created
        and field.related_model is not None
        and _reverse(model._meta.app_label, field.related_model._meta.app_label)
    ]
    assert upward == []


def _string_model_references(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, app label) of ``"app.Model"`` relation targets and ``get_model("app", ...)`` calls."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        first = node.args[0] if node.args else None
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            continue
        if (name in {"ForeignKey", "OneToOneField", "ManyToManyField"} and "." in first.value) or name == "get_model":
            found.append((node.lineno, first.value.split(".")[0]))
    return found


def _app_sources() -> list[tuple[str, Path]]:
    sources = []
    for app in LAYERS:
        for path in sorted((ROOT / app).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if "tests" in parts or "migrations" in parts:
                continue
            sources.append((app, path))
    return sources


def test_no_string_model_reference_points_up_a_layer() -> None:
    upward = []
    for app, path in _app_sources():
        for line, label in _string_model_references(ast.parse(path.read_text(), str(path))):
            if _reverse(app, label):
                upward.append(f"{path.relative_to(ROOT)}:{line} -> {label}")
    assert upward == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('x = models.ForeignKey("ingestion.Provider", on_delete=models.CASCADE)', [(1, "ingestion")]),
        ('M = apps.get_model("marketdata", "PriceHistoryDaily")', [(1, "marketdata")]),
        ('M = apps.get_model("marketdata.PriceHistoryDaily")', [(1, "marketdata")]),
        ("x = models.ForeignKey(Instrument, on_delete=models.CASCADE)", []),
    ],
)
def test_the_scanner_finds_string_references(source: str, expected: list) -> None:
    """The check above would pass vacuously if the scanner found nothing: prove it finds them."""
    assert _string_model_references(ast.parse(source)) == expected


def test_an_upward_string_reference_is_reported() -> None:
    assert _reverse("marketdata", "ingestion")
    assert not _reverse("ingestion", "marketdata")
    assert not _reverse("marketdata", "auth")
