"""YAML read with limits: an alias bomb, a self-referring alias or a deep nest is a one-line
error naming the file, for playbooks, scenarios and settings alike, never a hang."""

from __future__ import annotations

from pathlib import Path

import pytest

from healer.config import load_settings
from healer.decide import load_playbooks
from healer.errors import ConfigError, PlaybookError
from healer.sim.scenario import load_scenario
from healer.yamlfile import MAX_NODES, load_data


def laughs(levels: int = 9) -> str:
    """The "billion laughs": each level nine aliases of the one before (9^9 leaves)."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_in_a_playbook_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text("name: bomb\n" + laughs())

    with pytest.raises(PlaybookError) as caught:
        load_playbooks(tmp_path)

    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'bomb.yaml'}:")
    assert f"more than {MAX_NODES} YAML nodes" in message
    assert "\n" not in message


def test_alias_bomb_in_a_scenario_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(laughs())

    with pytest.raises(ConfigError, match=f"^{path}:.*aliases are expanded"):
        load_scenario(str(path))


def test_alias_bomb_in_settings_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "healer.yaml"
    path.write_text(laughs())

    with pytest.raises(ConfigError, match=f"^{path}:.*aliases are expanded"):
        load_settings(path)


def test_a_few_aliases_are_still_fine() -> None:
    text = "base: &base {cooldown_s: 60}\nguards: *base\nother: [*base, *base]\n"

    data = load_data(text, where="x.yaml", error=ConfigError)

    assert data["other"] == [{"cooldown_s": 60}, {"cooldown_s": 60}]


def test_just_under_the_limit_loads_just_over_is_refused() -> None:
    # A list of n scalars is n + 1 nodes, under the root mapping with its key: n + 3.
    under = "k: [" + ", ".join(["1"] * (MAX_NODES - 3)) + "]\n"
    over = "k: [" + ", ".join(["1"] * (MAX_NODES - 2)) + "]\n"

    assert len(load_data(under, where="x.yaml", error=ConfigError)["k"]) == MAX_NODES - 3
    with pytest.raises(ConfigError, match="more than"):
        load_data(over, where="x.yaml", error=ConfigError)


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    (tmp_path / "loop.yaml").write_text("name: loop\nmatch: &m {causes: [*m]}\n")

    with pytest.raises(PlaybookError, match=r"loop.yaml:2: a YAML alias refers to itself"):
        load_playbooks(tmp_path)


def test_nesting_too_deep_is_an_error_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "healer.yaml"
    path.write_text("guards: " + "[" * 5000 + "]" * 5000 + "\n")

    with pytest.raises(ConfigError, match=f"^{path}: YAML nested too deeply"):
        load_settings(path)
