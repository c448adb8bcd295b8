"""Playbook loading: the shipped files validate; a bad file names file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from healer.decide import Playbook, find_playbook, load_playbooks
from healer.errors import PlaybookError
from healer.types import ActionKind, Cause, Mode, Signal

REPO_PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"

GOOD = """\
name: {name}
description: Restart leaking pods.
match:
  causes: [memory_leak]
  min_confidence: 0.6
action:
  kind: restart
verify:
  within_s: 600
  signals: [memory]
on_failure: {on_failure}
"""


def write(directory: Path, filename: str, text: str) -> Path:
    path = directory / filename
    path.write_text(text)
    return path


def good(name: str = "restart", on_failure: str = "escalate") -> str:
    return GOOD.format(name=name, on_failure=on_failure)


def load_error(directory: Path) -> str:
    with pytest.raises(PlaybookError) as caught:
        load_playbooks(directory)
    message = str(caught.value)
    assert "\n" not in message
    return message


# ---- the shipped playbooks --------------------------------------------------------------


def test_every_shipped_playbook_loads_and_validates() -> None:
    books = load_playbooks(REPO_PLAYBOOKS)

    files = sorted(p.name for p in REPO_PLAYBOOKS.iterdir() if p.suffix in (".yaml", ".yml"))
    assert len(books) == len(files) == 8
    assert all(book.description.strip() for book in books)
    assert all(book.verify.signals for book in books)


def test_shipped_playbooks_cover_every_remediable_cause() -> None:
    books = load_playbooks(REPO_PLAYBOOKS)

    by_cause = {cause: book for book in books for cause in book.match.causes}
    # A node's causes are healed by the node watch (settings nodes.*), not a playbook.
    node_causes = {Cause.NODE_NOT_READY, Cause.NODE_PRESSURE}
    assert set(by_cause) == set(Cause) - {Cause.UNKNOWN} - node_causes
    kinds = {cause: book.action.kind for cause, book in by_cause.items()}
    assert kinds == {
        Cause.MEMORY_LEAK: ActionKind.RESTART,
        Cause.CPU_HOG: ActionKind.RESTART,
        Cause.OVERLOAD: ActionKind.SCALE,
        Cause.BAD_RELEASE: ActionKind.ROLLBACK,
        Cause.CRASH_LOOP: ActionKind.ROLLBACK,
        Cause.POD_OUTLIER: ActionKind.EVICT,
    }
    scale = by_cause[Cause.OVERLOAD]
    assert (scale.action.params.headroom, scale.action.params.max_step_factor) == (1.25, 2.0)
    assert scale.verify.signals == (Signal.CPU, Signal.LATENCY_P99, Signal.ERROR_RATIO)
    assert by_cause[Cause.BAD_RELEASE].verify.signals == (Signal.ERROR_RATIO, Signal.LATENCY_P99)
    assert by_cause[Cause.CRASH_LOOP].match.min_confidence > 0.5  # an unsure one escalates


# ---- a good directory -------------------------------------------------------------------


def test_files_load_in_name_order_yaml_and_yml(tmp_path: Path) -> None:
    write(tmp_path, "b.yml", good("second"))
    write(tmp_path, "a.yaml", good("first"))
    write(tmp_path, "notes.txt", "not a playbook")

    assert [book.name for book in load_playbooks(tmp_path)] == ["first", "second"]


def test_defaults_and_dry_run_spelling(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", good() + "mode: dry-run\n")

    (book,) = load_playbooks(tmp_path)

    assert book.mode is Mode.DRY_RUN
    assert book.match.signals == ()
    assert book.match.namespaces == ()
    assert book.action.params.model_fields_set == set()


def test_mode_defaults_to_approval(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", good())

    assert load_playbooks(tmp_path)[0].mode is Mode.APPROVAL


def test_on_failure_may_name_another_playbook(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", good("first", on_failure="second"))
    write(tmp_path, "b.yaml", good("second"))

    books = load_playbooks(tmp_path)

    assert find_playbook(books, "first").on_failure == "second"


def test_find_playbook_by_name() -> None:
    books = load_playbooks(REPO_PLAYBOOKS)

    found = find_playbook(books, "restart-on-memory-leak")

    assert isinstance(found, Playbook)
    assert found.action.kind is ActionKind.RESTART
    with pytest.raises(KeyError, match="no-such"):
        find_playbook(books, "no-such")


def test_playbooks_are_frozen() -> None:
    book = load_playbooks(REPO_PLAYBOOKS)[0]

    with pytest.raises(ValueError, match="frozen"):
        book.name = "other"


# ---- bad files: file, line, field -------------------------------------------------------


def test_unknown_field(tmp_path: Path) -> None:
    write(
        tmp_path,
        "bad.yaml",
        good().replace("  kind: restart\n", "  kind: restart\n  force: true\n"),
    )

    message = load_error(tmp_path)

    assert message == f"{tmp_path}/bad.yaml:8: action.force: Extra inputs are not permitted"


def test_wrong_enum(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", good().replace("kind: restart", "kind: reboot"))

    message = load_error(tmp_path)

    assert message == (
        f"{tmp_path}/bad.yaml:7: action.kind: "
        "Input should be 'restart', 'scale', 'rollback', 'evict', 'cordon', 'drain' or "
        "'uncordon'"
    )


def test_wrong_item_in_a_list_names_its_index(tmp_path: Path) -> None:
    write(
        tmp_path,
        "bad.yaml",
        good().replace("signals: [memory]", "signals:\n    - memory\n    - disk"),
    )

    message = load_error(tmp_path)

    assert message.startswith(f"{tmp_path}/bad.yaml:12: verify.signals[1]: Input should be")


def test_out_of_range_value(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", good().replace("min_confidence: 0.6", "min_confidence: 1.5"))

    message = load_error(tmp_path)

    assert message == (
        f"{tmp_path}/bad.yaml:5: match.min_confidence: Input should be less than or equal to 1"
    )


def test_a_wrong_value_is_reported_before_missing_fields(tmp_path: Path) -> None:
    write(
        tmp_path,
        "bad.yaml",
        "name: bad\nmatch:\n  causes: [memory_leak]\naction:\n  kind: reboot\n",
    )

    message = load_error(tmp_path)

    assert message.startswith(f"{tmp_path}/bad.yaml:5: action.kind: Input should be")
    assert message.endswith("(and 3 more)")


def test_missing_field_points_at_its_mapping(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", good().replace("  min_confidence: 0.6\n", ""))

    message = load_error(tmp_path)

    assert message == f"{tmp_path}/bad.yaml:3: match.min_confidence: Field required"


def test_scale_params_on_another_action(tmp_path: Path) -> None:
    write(
        tmp_path,
        "bad.yaml",
        good().replace("kind: restart", "kind: restart\n  params:\n    headroom: 2"),
    )

    message = load_error(tmp_path)

    assert (
        message
        == f"{tmp_path}/bad.yaml:8: action.params: headroom apply to scale only, not to restart"
    )


def test_unknown_cause_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", good().replace("[memory_leak]", "[memory_leak, unknown]"))

    message = load_error(tmp_path)

    assert message.startswith(f"{tmp_path}/bad.yaml:4: match.causes: cause 'unknown' cannot")


def test_escalate_is_not_a_playbook_name(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", good("escalate"))

    assert load_error(tmp_path).startswith(f"{tmp_path}/bad.yaml:1: name: 'escalate' is reserved")


def test_yaml_syntax_error(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", "name: bad\nmatch:\n  causes: [memory_leak\naction: {}\n")

    message = load_error(tmp_path)

    assert message.startswith(f"{tmp_path}/bad.yaml:4: YAML syntax error: ")


def test_indentation_error(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", "name: bad\n  description: x\n")

    message = load_error(tmp_path)

    assert (
        message == f"{tmp_path}/bad.yaml:2: YAML syntax error: mapping values are not allowed here"
    )


def test_duplicate_key(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", good() + "on_failure: escalate\n")

    assert load_error(tmp_path) == f"{tmp_path}/bad.yaml:12: on_failure: duplicate key"


def test_empty_file(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", "# nothing yet\n")

    assert load_error(tmp_path) == f"{tmp_path}/bad.yaml:1: empty playbook file"


def test_not_a_mapping(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", "- restart\n")

    message = load_error(tmp_path)

    assert message == f"{tmp_path}/bad.yaml:1: a playbook must be a mapping"


def test_duplicate_name_across_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", good("same"))
    write(tmp_path, "b.yaml", good("same"))

    message = load_error(tmp_path)

    assert message == (
        f"{tmp_path}/b.yaml:1: name: playbook 'same' is already defined in {tmp_path}/a.yaml:1"
    )


def test_unknown_on_failure(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", good("first", on_failure="nope"))

    message = load_error(tmp_path)

    assert message == (
        f"{tmp_path}/a.yaml:11: on_failure: unknown playbook 'nope'; "
        "expected 'escalate' or one of: first"
    )


def test_on_failure_loop(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", good("first", on_failure="second"))
    write(tmp_path, "b.yaml", good("second", on_failure="first"))

    message = load_error(tmp_path)

    assert message == (
        f"{tmp_path}/a.yaml:11: on_failure: chain first -> second -> first never ends; "
        "end it with 'escalate'"
    )


def test_missing_directory(tmp_path: Path) -> None:
    assert load_error(tmp_path / "nope") == f"{tmp_path}/nope: no such playbook directory"


def test_empty_directory(tmp_path: Path) -> None:
    assert load_error(tmp_path) == f"{tmp_path}: no playbook files (*.yaml, *.yml)"


# ---- matching alerts ------------------------------------------------------------------


def test_a_playbook_may_match_alerts_instead_of_causes(tmp_path: Path) -> None:
    write(
        tmp_path, "a.yaml", good().replace("causes: [memory_leak]", "alerts: [KubePodCrashLooping]")
    )

    (playbook,) = load_playbooks(tmp_path)

    assert (playbook.match.causes, playbook.match.alerts) == ((), ("KubePodCrashLooping",))


def test_a_bad_alert_name_names_its_line_and_index(tmp_path: Path) -> None:
    write(
        tmp_path,
        "bad.yaml",
        good().replace(
            "causes: [memory_leak]",
            "causes: [memory_leak]\n  alerts:\n    - KubePodCrashLooping\n    - crash looping",
        ),
    )

    message = load_error(tmp_path)

    assert message.startswith(f"{tmp_path}/bad.yaml:7: match.alerts[1]: String should match")


def test_a_match_without_causes_or_alerts_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", good().replace("  causes: [memory_leak]\n", ""))

    message = load_error(tmp_path)

    assert message == (
        f"{tmp_path}/bad.yaml:3: match: causes: name at least one cause, or alerts to match"
    )


# ---- target kinds ------------------------------------------------------------------------

SCALE_FOR_KINDS = """\
name: scale-kinds
description: Scale up.
match:
  causes: [overload]
  min_confidence: 0.6
  kinds:
    - StatefulSet
    - {kind}
action:
  kind: scale
verify:
  within_s: 300
  signals: [cpu]
"""


def test_a_playbook_may_name_the_kinds_its_action_supports(tmp_path: Path) -> None:
    write(tmp_path, "scale.yaml", SCALE_FOR_KINDS.format(kind="Deployment"))
    (book,) = load_playbooks(tmp_path)
    assert [k.value for k in book.match.kinds] == ["StatefulSet", "Deployment"]


def test_an_action_a_kind_does_not_support_is_refused_naming_file_line_and_entry(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "scale.yaml", SCALE_FOR_KINDS.format(kind="DaemonSet"))
    message = load_error(tmp_path)
    assert message.startswith(f"{path}:8: match.kinds[1]: action scale does not support a ")
    assert "DaemonSet (it supports Deployment, StatefulSet)" in message


def test_an_unknown_kind_is_refused_naming_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "scale.yaml", SCALE_FOR_KINDS.format(kind="CronJob"))
    message = load_error(tmp_path)
    assert message.startswith(f"{path}:8: match.kinds[1]: Input should be 'Deployment', ")
    assert "StatefulSet" in message


def test_restart_and_rollback_may_name_a_daemonset(tmp_path: Path) -> None:
    for action in ("restart", "rollback"):
        text = SCALE_FOR_KINDS.format(kind="DaemonSet").replace("kind: scale", f"kind: {action}")
        write(tmp_path, "book.yaml", text)
        (book,) = load_playbooks(tmp_path)
        assert [k.value for k in book.match.kinds] == ["StatefulSet", "DaemonSet"]


def test_an_action_a_node_does_not_support_is_refused_naming_the_entry(tmp_path: Path) -> None:
    text = good().replace("  kind: restart\n", "  kind: scale\n")
    text = text.replace(
        "causes: [memory_leak]", "causes: [memory_leak]\n  kinds: [Deployment, Node]"
    )
    write(tmp_path, "bad.yaml", text)

    message = load_error(tmp_path)

    assert message.startswith(f"{tmp_path}/bad.yaml:")
    assert "match.kinds[1]: action scale does not support a Node" in message
    assert "(it supports Deployment, StatefulSet)" in message


@pytest.mark.parametrize("kind", ["cordon", "drain", "uncordon"])
def test_a_node_action_is_refused_in_a_playbook(tmp_path: Path, kind: str) -> None:
    write(tmp_path, "bad.yaml", good().replace("kind: restart", f"kind: {kind}"))

    message = load_error(tmp_path)

    assert message.startswith(f"{tmp_path}/bad.yaml:7: action.kind: ")
    assert "acts on nodes" in message and "nodes.*" in message
