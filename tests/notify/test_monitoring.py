"""deploy/monitoring/: the alert rules (promtool), their runbooks, and the dashboard.

promtool comes with Debian's `prometheus` package (.ci/run installs it): outside CI a
missing promtool skips those two tests with one line; in CI (CI=true) it fails them.
The dashboard and the rules may only name metrics a running chanops exports: the names
are read from the /metrics of a real daemon (with notifications configured) and from
the git source's collector.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from chanops.daemon._gitsource import GitSourceCollector
from daemon.helpers import DaemonProcess, manifest, write_atomic
from notify.receivers import http_receiver
from support.emulator import start_emulator

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "chanops-rules.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"
RUNBOOKS = "https://github.com/chanops/chanops/blob/main/docs/operations.md#"
_NAME = re.compile(r"\b((?:chanops|process)_[a-z0-9_]+)\b")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing in CI (.ci/run installs Debian's prometheus)")
        pytest.skip("promtool not installed (apt-get install prometheus); CI runs this")
    return found


def alerts() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_promtool_checks_the_rules_and_the_prometheusrule(tmp_path: Path) -> None:
    tool = promtool()
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    spec = tmp_path / "from-prometheusrule.yaml"
    spec.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    for path in (RULES, spec):
        done = subprocess.run(
            [tool, "check", "rules", str(path)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"SUCCESS: {len(alerts())} rules found" in done.stdout


def test_promtool_unit_tests_every_alert() -> None:
    tool = promtool()
    tests = MONITORING / "chanops-rules.test.yaml"
    done = subprocess.run(
        [tool, "test", "rules", tests.name],
        capture_output=True,
        text=True,
        check=False,
        cwd=MONITORING,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tested = {
        t["alertname"]
        for case in yaml.safe_load(tests.read_text())["tests"]
        for t in case["alert_rule_test"]
        if t["exp_alerts"]
    }
    assert tested == {a["alert"] for a in alerts()}


def test_every_alert_has_a_summary_a_description_and_a_runbook_section() -> None:
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    }
    assert len(alerts()) == 7
    for alert in alerts():
        notes = alert["annotations"]
        assert notes["summary"].strip() and notes["description"].strip(), alert["alert"]
        assert notes["runbook_url"] == RUNBOOKS + alert["alert"].lower()
        assert alert["alert"].lower() in headings, f"no runbook section for {alert['alert']}"
        assert alert["labels"]["severity"] in ("warning", "critical")


def test_the_prometheusrules_hold_the_same_rules() -> None:
    plain = yaml.safe_load(RULES.read_text())["groups"]
    shipped = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    component = ROOT / "deploy" / "kubernetes" / "monitoring" / "prometheusrule.yaml"
    in_component = yaml.safe_load(component.read_text())
    assert shipped["kind"] == in_component["kind"] == "PrometheusRule"
    assert shipped["spec"]["groups"] == plain
    assert in_component["spec"]["groups"] == plain
    kustomization = yaml.safe_load(component.with_name("kustomization.yaml").read_text())
    assert kustomization["kind"] == "Component"
    assert set(kustomization["resources"]) == {"servicemonitor.yaml", "prometheusrule.yaml"}
    monitor = yaml.safe_load(component.with_name("servicemonitor.yaml").read_text())
    assert monitor["kind"] == "ServiceMonitor"
    service = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "service.yaml").read_text())
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert monitor["spec"]["endpoints"][0]["port"] in ports
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def exposed_names(text: str) -> set[str]:
    """Every series name a /metrics text can have, from its TYPE lines."""
    names: set[str] = set()
    for line in text.splitlines():
        if not line.startswith("# TYPE "):
            continue
        _, _, name, kind = line.split()
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


class _Source:
    failures_total = 0
    failure_streak = 0


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    tmp = tmp_path_factory.mktemp("exported")
    with start_emulator(tmp / "emulator", time_scale=0.002) as emu, http_receiver() as http:
        (tmp / "hook-url").write_text(f"{http.url}/hook\n")
        (tmp / "hook-key").write_text("hook-key-0123456789abcdef\n")
        config = tmp / "chanops.yaml"
        config.write_text(
            "notifications:\n  providers:\n"
            "    - {name: hook, kind: webhook, urlFile: hook-url, secretFile: hook-key}\n"
        )
        write_atomic(tmp / "m" / "a.yaml", manifest("a", secret_env="SW_SECRET"))
        d = DaemonProcess(
            tmp,
            manifests=tmp / "m",
            platform=emu.url,
            token=emu.token,
            env={"SW_SECRET": "sw-secret-value-0123456789"},
            extra=["--config", str(config)],
        ).start()
        try:
            text = d.http("/metrics").text
        finally:
            d.kill()
    git = {m.name for m in GitSourceCollector(_Source()).collect()}  # type: ignore[arg-type]
    names = exposed_names(text)
    # A counter family's name in collect() lacks `_total`; as exposed, it has it.
    names |= {f"{n}_total" for n in git if n.endswith("_failures")} | git
    yield names


def test_every_dashboard_query_names_an_exported_metric(exported: set[str]) -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert "__inputs" not in dashboard  # importable as is: the data source is a variable
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    queries = [t["expr"] for p in panels for t in p["targets"]]
    assert queries and all(_NAME.search(q) for q in queries)
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for query in (t["expr"] for t in panel["targets"]):
            unknown = set(_NAME.findall(query)) - exported
            assert not unknown, f"panel {panel['title']!r} queries {unknown}, not exported"
    titles = " ".join(p["title"] for p in panels).lower()
    for subject in (
        "reconciles",
        "actions",
        "histogram",
        "queue",
        "platform",
        "sync",
        "rss",
        "cpu",
    ):
        assert subject in titles, subject


def test_every_alert_names_an_exported_metric(exported: set[str]) -> None:
    for alert in alerts():
        names = set(_NAME.findall(alert["expr"]))
        assert names, alert["alert"]
        assert names <= exported, f"{alert['alert']}: {names - exported} not exported"
