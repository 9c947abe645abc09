"""The Grafana dashboards' JSON (one source each, in the chart) and the plain manifests made from them: the parts
Grafana needs to import them anywhere. tests/e2e/test_observability.py runs their queries against a real Prometheus."""

from __future__ import annotations

import json

from .dashboards import boards, panels, queries, variable_queries

UNITS = {"none", "short", "s", "percentunit", "bytes", "watt", "celsius", "hertz", "Bps"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def test_there_are_the_job_gpu_and_operator_dashboards_with_unique_uids():
    found = boards()
    assert set(found) == {"job", "gpu", "operator"}
    uids = [b["uid"] for b in found.values()]
    assert len(set(uids)) == len(uids) and all(u.startswith("llmtj-") for u in uids)


def test_panel_ids_are_unique_and_every_panel_has_a_title_description_and_unit():
    for name, board in boards().items():
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for p in panels(board):
            assert p["title"], f"{name}: panel {p['id']} has no title"
            if p["type"] == "row":
                continue
            assert p.get("description"), f"{name}/{p['title']}: no description"
            assert p["fieldConfig"]["defaults"].get("unit") in UNITS, f"{name}/{p['title']}: unit"
            assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), f"{name}/{p['title']}: no query"


def test_the_datasource_is_a_variable_never_a_hard_coded_uid():
    for name, board in boards().items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        text = json.dumps(board)
        assert text.count('"uid": "') == text.count('"uid": "${datasource}"') + 1, f"{name}: a fixed uid"  # + its own
        for p in panels(board):
            if p["type"] != "row":
                assert p["datasource"] == DATASOURCE, f"{name}/{p['title']}"
                assert all(t["datasource"] == DATASOURCE for t in p["targets"]), f"{name}/{p['title']}"
        for v in board["templating"]["list"]:
            if v["type"] == "query":
                assert v["datasource"] == DATASOURCE, f"{name}: variable {v['name']}"


def test_namespace_and_job_variables_select_every_training_query():
    expected = {"job": {"datasource", "namespace", "job"}, "gpu": {"datasource", "namespace", "job", "pod"},
                "operator": {"datasource", "namespace"}}
    for name, board in boards().items():
        assert {v["name"] for v in board["templating"]["list"]} == expected[name]
        assert [v for v, _, _ in variable_queries(board)] == [v for v in ("namespace", "job", "pod")
                                                              if v in expected[name]]
        for title, expr in queries(board):
            if any(own in expr for own in ("process_", "reconcile_duration", "queue_depth")):  # no namespace label
                continue
            assert 'namespace=~"$namespace"' in expr, f"{name}/{title}: {expr}"
            if name != "operator":
                assert 'job=~"$job"' in expr, f"{name}/{title}: {expr}"


