"""docs/manifests.md's driver reference is generated from the schemas and kept in step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from chanops.manifests.driverdocs import BEGIN, END, render_section, with_section
from chanops.manifests.drivers import DRIVER_NAMES

DOC = Path(__file__).resolve().parents[2] / "docs" / "manifests.md"


def test_the_driver_reference_is_in_step_with_the_schemas() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert with_section(text) == text, (
        "docs/manifests.md is out of step: python -m chanops.manifests.driverdocs docs/manifests.md"
    )


def test_the_reference_lists_every_driver_with_its_labels_and_rules() -> None:
    section = render_section()
    for name in DRIVER_NAMES:
        assert f"### `{name}`:" in section
    assert (
        "| `settings.orderStates.notifyCustomerAboutInvoice` | Notify customer about the "
        "invoice |  | boolean; default false; locked unless `createInvoiceWhenPaid` is true |"
    ) in section
    assert "| `settings.shippingProviderMapping` | UCS shipping provider |" in section
    assert "a change starts a sync" in section and "turning it on starts a sync" in section
    assert "| `credentials.storeHash` | Store hash | without spec.connectionId |" in section
    # a placeholder in a label is text, not an HTML tag
    assert 'Select Core1 tax class for Shopware 6 "&lt;class>"' in section


def test_check_fails_on_a_stale_copy_and_rewrite_fixes_it(tmp_path: Path) -> None:
    stale = tmp_path / "manifests.md"
    stale.write_text(f"# Doc\n\n{BEGIN}\nold table\n{END}\n\nafter\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "chanops.manifests.driverdocs"]
    check = subprocess.run([*cmd, "--check", str(stale)], capture_output=True, text=True)
    assert check.returncode == 1
    assert check.stdout.strip() == (
        f"{stale}: the driver reference is out of step with the schemas; regenerate it: "
        "python -m chanops.manifests.driverdocs docs/manifests.md"
    )
    assert subprocess.run([*cmd, str(stale)], check=False).returncode == 0
    fixed = stale.read_text(encoding="utf-8")
    assert fixed.startswith("# Doc\n\n" + BEGIN) and fixed.endswith(END + "\n\nafter\n")
    assert subprocess.run([*cmd, "--check", str(stale)], check=False).returncode == 0
    (tmp_path / "bare.md").write_text("no markers\n", encoding="utf-8")
    bare = subprocess.run([*cmd, str(tmp_path / "bare.md")], capture_output=True, text=True)
    assert bare.returncode == 1 and "markers" in bare.stdout and "Traceback" not in bare.stderr
    gone = subprocess.run([*cmd, str(tmp_path / "gone.md")], capture_output=True, text=True)
    assert (gone.returncode, gone.stderr) == (1, "")
    assert gone.stdout == f"{tmp_path / 'gone.md'}: No such file or directory\n"
    usage = subprocess.run([*cmd, "--help"], capture_output=True, text=True)
    assert usage.returncode == 0 and "--check" in usage.stdout
