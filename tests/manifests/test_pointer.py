"""One JSON-pointer escaping (chanops.pointer) for the manifests package and the engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from chanops import pointer
from chanops.engine import pointers
from chanops.engine.render import _field
from chanops.manifests import Manifest, SecretRef, SourceLocation
from chanops.manifests.secrets import iter_secret_refs, resolve_secret_values
from chanops.sensitive import SENSITIVE_VALUE


@pytest.mark.parametrize(
    ("key", "segment"),
    [("plain", "plain"), ("a/b", "a~1b"), ("a~b", "a~0b"), ("~1", "~01"), ("/~", "~1~0")],
)
def test_escape_and_unescape_are_inverse(key: str, segment: str) -> None:
    assert pointer.escape(key) == segment
    assert pointer.unescape(segment) == key


def test_parts_follows_rfc_6901() -> None:
    assert pointer.parts("") == []
    assert pointer.parts("/credentials/a~1b/c~0d") == ["credentials", "a/b", "c~d"]
    assert pointer.parts("/a//b") == ["a", "", "b"]


def test_the_engine_uses_the_same_functions() -> None:
    assert pointers.escape is pointer.escape and pointers.unescape is pointer.unescape
    assert _field("/settings/a~1b/c~0d") == "settings.a/b.c~d"
    assert _field("") == ""


def test_a_stray_secret_ref_is_named_by_an_escaped_pointer(tmp_path: Path) -> None:
    """The engine diffs escaped pointers: an unescaped one would miss the secret."""
    manifest = Manifest(
        name="m",
        driver="shopware6",
        display_name="m",
        source=SourceLocation("m.yaml", 1, 1),
        credentials={"odd/key": {"x~y": SecretRef(env="ODD_SECRET")}},
    )
    assert [p for p, _ in iter_secret_refs(manifest)] == ["/credentials/odd~1key/x~0y"]
    values = resolve_secret_values(
        manifest, secrets_dirs=[tmp_path], environ={"ODD_SECRET": "s3cret-value"}
    )
    assert values == {"/credentials/odd~1key/x~0y": "s3cret-value"}
    assert pointers.get({"credentials": {"odd/key": {"x~y": 1}}}, next(iter(values))) == 1


def test_one_sensitive_marker() -> None:
    """The log redactor and the plan renderer hide a secret behind the same text."""
    from chanops.engine.plan import FieldChange
    from chanops.engine.render import _change_line
    from chanops.observability.logging import Redactor

    assert SENSITIVE_VALUE == "(sensitive value)"
    assert Redactor(["a-long-secret"]).scrub("x a-long-secret y") == f"x {SENSITIVE_VALUE} y"
    change = FieldChange("/credentials/apiKey", "add", None, None, sensitive=True)
    assert _change_line(change, 20, lambda text, colour: text).endswith(SENSITIVE_VALUE)
