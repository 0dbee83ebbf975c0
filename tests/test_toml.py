"""One set of rules for config files and --set overrides (volfast._toml)."""

from __future__ import annotations

from pathlib import Path

import pytest

from volfast._toml import apply_overrides, parse_value, read_tables


def test_parse_value_toml_or_bare_word() -> None:
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5 and parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2] and parse_value('"x y"') == "x y"
    assert parse_value("cosine") == "cosine"  # a bare word is a string


def test_read_tables_errors_name_the_file(tmp_path: Path) -> None:
    assert read_tables(None, ("a",)) == {}
    with pytest.raises(KeyError, match="nope.toml: config file not found"):
        read_tables(tmp_path / "nope.toml", ("a",), error=KeyError)
    bad = tmp_path / "bad.toml"
    bad.write_text("[a\nx = 1")
    with pytest.raises(ValueError, match="bad.toml: invalid TOML"):
        read_tables(bad, ("a",))
    extra = tmp_path / "extra.toml"
    extra.write_text("[a]\nx = 1\n[b]\ny = 2\n")
    with pytest.raises(ValueError, match=r"extra.toml: unknown tables \['b'\]; expected a"):
        read_tables(extra, ("a",))
    assert read_tables(extra) == {"a": {"x": 1}, "b": {"y": 2}}  # any table when none are named


def test_apply_overrides_sections_and_default() -> None:
    sec: dict[str, dict[str, object]] = {"model": {}, "train": {"epochs": 5}}
    apply_overrides(sec, ["model.latent=4", "train.epochs=9", "train.schedule=cosine"])
    assert sec == {"model": {"latent": 4}, "train": {"epochs": 9, "schedule": "cosine"}}
    for bad in ("latent=4", "other.x=1", "model.latent", "model.a.b=1"):
        with pytest.raises(ValueError, match="expected model.KEY=VALUE or train.KEY=VALUE"):
            apply_overrides(sec, [bad])
    one: dict[str, dict[str, object]] = {"stress": {}}
    apply_overrides(one, ["steps=50", "stress.scale=2.0"], default_section="stress")
    assert one == {"stress": {"steps": 50, "scale": 2.0}}
    with pytest.raises(ValueError, match="or KEY=VALUE"):
        apply_overrides(one, ["scenarios.horizon=20"], default_section="stress")
