"""The shipped condense.example.yaml lists every option with its default, and stays current."""

from __future__ import annotations

from pathlib import Path

from schema.settings import Settings, example_yaml, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "condense.example.yaml"


def test_example_file_is_generated_from_the_settings_model() -> None:
    assert EXAMPLE.read_text(encoding="utf-8") == example_yaml(), (
        "condense.example.yaml is stale: regenerate it with "
        "python -c 'from schema.settings import example_yaml; print(example_yaml(), end=\"\")' > condense.example.yaml"
    )


def test_example_file_loads_to_the_defaults() -> None:
    assert load_settings(EXAMPLE, environ={}) == Settings()


def test_every_option_is_documented() -> None:
    text = example_yaml()
    undocumented = []

    def walk(model: type, prefix: str) -> None:
        for name, info in model.model_fields.items():  # type: ignore[attr-defined]
            annotation = info.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                walk(annotation, f"{prefix}{name}.")
            elif not info.description:
                undocumented.append(prefix + name)

    walk(Settings, "")
    assert undocumented == []
    assert "# " in text
