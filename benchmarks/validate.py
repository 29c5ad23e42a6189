"""Benchmark `chanops validate` as a whole process on N generated manifests.

    .venv/bin/python benchmarks/validate.py 10000 [--runs 5]

Generates N valid manifests (one per file, across the seven drivers) in a temporary
directory, times `chanops validate DIR` end to end (median of --runs), and, when
`check-jsonschema` is installed, times it on the same files with the equivalent single
schema (`chanops schema`: the connection schema with every driver inlined) and prints
the ratio. A figure, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

TEMPLATES = {
    "shopware6": """  credentials:
    url: https://shop-{i}.example.com
    accessKeyId: SWIA{i}
    secretAccessKey: {{secretRef: {{env: SHOPWARE_{i}}}}}
  settings:
    defaultLanguage: de-DE
    orders: {{importStatuses: [open], stateAfterImport: in_progress}}
    taxClasses: {{standard: "19"}}
""",
    "shopify": """  connectionId: {i}
  credentials:
    shopUrl: shop-{i}.myshopify.com
    apiKey: {{secretRef: {{env: SHOPIFY_{i}}}}}
  settings:
    orderNameAsShopId: true
    orderImport: {{defaultTaxClass: standard}}
""",
    "sfcc": """  credentials:
    productionMode: false
    staging:
      url: https://staging-{i}.example.net
      clientId: client-{i}
      clientPassword: {{secretRef: {{file: sfcc-{i}-client}}}}
      username: api-{i}@example.com
      userPassword: {{secretRef: {{file: sfcc-{i}-user}}}}
      accessToken: {{secretRef: {{file: sfcc-{i}-token}}}}
  settings:
    priceBooks: [{{id: eur-{i}, currency: EUR}}]
    uploadMode: {{mode: delayed, delayMinutes: 10}}
    parallelJobs: 2
""",
    "amazon": """  credentials:
    sellerId: A{i}SELLER
    marketplace: DE
  settings:
    offers: {{updateFbaStock: true}}
    orderImport: {{mfn: true, fba: true, fbaFrom: "2024-01-01"}}
""",
    "magento2": """  credentials:
    url: https://m2-{i}.example.com
    username: api
    password: {{secretRef: {{env: MAGENTO_{i}}}}}
  settings:
    storeViewLanguages: {{default: de}}
    orderStates: {{importStates: [processing], createInvoiceWhenPaid: true}}
""",
    "tradebyte": """  credentials:
    merchantNumber: "{i}"
    shopName: shop-{i}
    restUsername: api
    restPassword: {{secretRef: {{env: TB_REST_{i}}}}}
    sftpUsername: sftp
    sftpPassword: {{secretRef: {{env: TB_SFTP_{i}}}}}
  settings:
    salesChannels: [zalando]
    languages: [de, en]
""",
    "actindo-pos": """  connectionId: {i}
""",
}
HEADER = """apiVersion: chanops/v1
kind: Connection
metadata:
  name: {driver}-{i}
  labels: {{team: bench}}
spec:
  displayName: {driver} {i}
  driver: {driver}
  automation: {{orderDownload: 5m}}
  sync: {{interval: 30m, jitter: 1m}}
"""


def generate(directory: Path, count: int) -> None:
    drivers = list(TEMPLATES)
    for i in range(1, count + 1):
        driver = drivers[i % len(drivers)]
        text = HEADER.format(driver=driver, i=i) + TEMPLATES[driver].format(i=i)
        (directory / f"{driver}-{i}.yaml").write_text(text, "utf-8")


def timed(argv: list[str], runs: int) -> tuple[float, float, int]:
    """(median wall seconds, median CPU seconds (user+sys, all processes), exit code).

    CPU time is printed too because wall time on a shared machine depends on the
    neighbours; on an idle 2-core machine wall ~ CPU / 2 for the parallel path.
    """
    times = []
    cpus = []
    code = 0
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, cwd=HERE)
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        code = done.returncode
        if code != 0:
            print(f"  {argv[0]} exited {code}: {(done.stdout + done.stderr)[-500:]}")
            break
    return statistics.median(times), statistics.median(cpus), code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int, nargs="?", default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    chanops = shutil.which("chanops", path=str(BIN)) or "chanops"
    with tempfile.TemporaryDirectory(prefix="chanops-bench-") as tmp:
        root = Path(tmp) / "connections.d"
        root.mkdir()
        generate(root, args.count)
        print(f"{args.count} manifests, {os.cpu_count()} CPUs, median of {args.runs} runs")
        # One untimed run warms the compiled-validator cache and the page cache.
        subprocess.run([chanops, "validate", str(root)], capture_output=True, cwd=HERE)
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        ours, our_cpu, code = timed([chanops, "validate", str(root)], args.runs)
        print(f"chanops validate:  {ours:7.3f} s wall, {our_cpu:7.3f} s CPU (exit {code})")
        checker = shutil.which("check-jsonschema", path=str(BIN)) or shutil.which(
            "check-jsonschema"
        )
        if checker is None:
            print("check-jsonschema: not installed (pip install check-jsonschema to compare)")
            return
        schema = Path(tmp) / "connection.bundle.json"
        bundle = subprocess.run(
            [chanops, "schema"], capture_output=True, text=True, check=True, cwd=HERE
        ).stdout
        schema.write_text(bundle, "utf-8")
        json.loads(bundle)
        files = sorted(str(p) for p in root.iterdir())
        theirs, their_cpu, code = timed(
            [checker, "--schemafile", str(schema), *files], max(1, args.runs // 2)
        )
        print(f"check-jsonschema:  {theirs:7.3f} s wall, {their_cpu:7.3f} s CPU (exit {code})")
        print(f"ratio:             {theirs / ours:7.1f}x wall, {their_cpu / our_cpu:7.1f}x CPU")
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
