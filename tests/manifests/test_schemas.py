"""The schemas are the single source of truth: valid schemas, metadata, one answer."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from chanops.manifests import schemas
from chanops.manifests.drivers import DRIVER_NAMES, driver_info
from chanops.manifests.validation import is_valid_fast, schema_problems

EXAMPLES = Path(__file__).resolve().parents[2] / "connections.d"
CORPUS = Path(__file__).parent / "corpus"


def test_all_schemas_are_valid_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(schemas.connection_schema())
    jsonschema.Draft202012Validator.check_schema(schemas.bundled_schema())
    for name in DRIVER_NAMES:
        jsonschema.Draft202012Validator.check_schema(schemas.driver_schema(name))


def test_driver_metadata_from_x_chanops_keywords() -> None:
    assert DRIVER_NAMES == (
        "shopware6",
        "shopify",
        "sfcc",
        "amazon",
        "magento2",
        "tradebyte",
        "actindo-pos",
        "bigcommerce",
    )
    amazon = driver_info("amazon")
    assert amazon.title == "Amazon" and amazon.creatable
    assert amazon.immutable_paths == {"/credentials/marketplace"}
    assert amazon.oauth_paths == {"/credentials/accessToken"}
    assert amazon.labels["/credentials/marketplace"] == "Amazon marketplace"
    assert not driver_info("shopify").creatable and not driver_info("actindo-pos").creatable
    sfcc = driver_info("sfcc")
    assert "/credentials/staging/clientPassword" in sfcc.secret_paths
    assert "/credentials/production/userPassword" in sfcc.secret_paths
    assert driver_info("shopware6").title == "Shopware 6"
    assert driver_info("shopware6").secret_paths == {"/credentials/secretAccessKey"}
    with pytest.raises(KeyError):
        driver_info("nope")


def _documents(path: Path) -> list[object]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def test_bundle_fast_path_and_messages_agree_on_examples_and_corpus() -> None:
    """The editor bundle (one if/then schema) and our per-driver dispatch give one verdict."""
    bundle = jsonschema.Draft202012Validator(schemas.bundled_schema())
    checked = 0
    for path in [*EXAMPLES.glob("*.yaml"), *CORPUS.glob("*.yaml")]:
        try:
            docs = _documents(path)
        except yaml.YAMLError:
            continue
        for doc in docs:
            if not isinstance(doc, dict) or "a" in doc:
                continue
            spec = doc.get("spec") or {}
            driver = spec.get("driver") if spec.get("driver") in DRIVER_NAMES else None
            ours = is_valid_fast(doc, driver) and driver is not None
            assert ours == (schema_problems(doc, driver) == [] and driver is not None), path
            assert ours == bundle.is_valid(doc), path
            checked += 1
    assert checked >= 20


def test_sfcc_production_required_only_in_production_mode() -> None:
    staging = {
        "url": "https://s",
        "clientId": "c",
        "clientPassword": "p",
        "username": "a@b.de",
        "userPassword": "u",
        "accessToken": "t",
    }
    doc = {
        "apiVersion": "chanops/v1",
        "kind": "Connection",
        "metadata": {"name": "s"},
        "spec": {"driver": "sfcc", "credentials": {"productionMode": True, "staging": staging}},
    }
    assert [p.message for p in schema_problems(doc, "sfcc")] == [
        'missing required field "production" (Production)'
    ]
    doc["spec"]["credentials"]["productionMode"] = False  # type: ignore[index]
    assert is_valid_fast(doc, "sfcc")


def test_files_on_disk_resolve_their_relative_refs_like_an_editor() -> None:
    """yaml-language-server follows `drivers/<name>.schema.json` relative to the file."""
    import json

    from referencing import Registry, Resource

    root = Path(__file__).resolve().parents[2] / "schemas"

    def retrieve(uri: str) -> Resource:  # type: ignore[type-arg]
        return Resource.from_contents(json.loads(Path(uri.removeprefix("file://")).read_text()))

    schema = {"$id": (root / "connection.schema.json").as_uri(), **schemas.connection_schema()}
    validator = jsonschema.Draft202012Validator(schema, registry=Registry(retrieve=retrieve))
    for doc in _documents(EXAMPLES / "amazon.yaml"):
        assert validator.is_valid(doc)
    (bad,) = _documents(CORPUS / "amazon-access-token.yaml")
    assert not validator.is_valid(bad)
