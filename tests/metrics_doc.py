"""docs/metrics.md's tables against what an endpoint serves: the trainer's worker pods and the operator."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
ROW = re.compile(r"^\| `(llmtj_[a-z_]+)` \| ([a-z ()]+) \| [^|]+ \| ([a-z, ]+) \|")


def documented(section: str) -> dict[str, tuple[str, set[str]]]:
    """name -> (type, labels) from the table under ``## <section>``."""
    out, current = {}, None
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
        m = ROW.match(line)
        if m and current == section:
            labels = m.group(3).replace(" ", "")
            out[m.group(1)] = (m.group(2), set() if labels == "none" else set(labels.split(",")))
    return out


def parse(text: str) -> dict[str, list]:
    """Sample name -> [(labels, value)]; each family's type under '#type:<family>'."""
    out: dict[str, list] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        out[f"#type:{family.name}"].append(family.type)
        for s in family.samples:
            out[s.name].append((s.labels, s.value))
    return out


def check(section: str, served: dict[str, list], prefix: str, skip: str = "(GPU)") -> None:
    """Every documented metric of ``section`` (but rows whose type mentions ``skip``) is served with its type and
    labels, and every served metric under ``prefix`` is documented."""
    doc = {n: row for n, row in documented(section).items() if skip not in row[0]}
    families = {k.removeprefix("#type:") for k in served if k.startswith("#type:") and k[6:].startswith(prefix)}
    # exposition names: a counter family "x" is served as x_total
    names = {n + "_total" if served[f"#type:{n}"][0] == "counter" else n for n in families}
    assert names == set(doc), (sorted(names - set(doc)), sorted(set(doc) - names))
    for name, (kind, labels) in doc.items():
        family = name.removesuffix("_total") if kind.startswith("counter") else name
        assert served[f"#type:{family}"] == [kind.split()[0]], name
        for sample_labels, _ in served[name + ("_count" if kind == "histogram" else "")]:
            assert set(sample_labels) == labels, (name, sample_labels)
