"""runbook plan --output html and runbook audit export --format html: a real promotion's plan
and change record in the sandbox as printable pages, rendered (and printed to PDF) by a real
headless chromium."""

from __future__ import annotations

import re
from pathlib import Path

from tests.browser import needs_chromium, parse, print_to_pdf, rendered_dom
from tests.runbooks.test_promote import checklist, soaked, start
from tests.world import deployment


@needs_chromium
def test_the_plan_and_change_record_pages(  # type: ignore[no-untyped-def]
        sandbox, runbook_cli, tmp_path: Path):
    soaked("uat1")
    planned = runbook_cli("plan", "promote", "--from", "uat1", "--to", "staging",
                          "--output", "html")
    assert planned.code == 0, planned.err
    plan_page = tmp_path / "plan.html"
    plan_page.write_text(planned.out)
    rows, whole, _ = parse(rendered_dom(plan_page, tmp_path / "chromium"))
    facts = {r[0]: r[1] for r in rows if len(r) == 2}
    assert facts["Parameters"] == "from=uat1, to=staging" and len(facts["Plan hash"]) == 64
    planned_steps = [r[1].split(" ")[0] for r in rows if len(r) == 5 and r[0].isdigit()]
    assert planned_steps[:1] == ["read-source"] and "checklist" in planned_steps
    assert "@media print" in planned.out

    run_id = start(runbook_cli, "uat1", "staging")
    items = checklist("staging")
    for n, (person, mine) in enumerate((("alice", items[:2]), ("bob", items[2:]))):
        attested = runbook_cli("approve", run_id, "--step", "checklist", "--by", person,
                               "--ticket", f"CHG-20{n}", "--note", "<b>seen</b>",
                               *(a for item in mine for a in ("--item", item)))
        assert attested.code == 0, attested.err
    assert runbook_cli("resume", run_id).code == 0
    page = tmp_path / "record.html"
    written = runbook_cli("audit", "export", "--run", run_id, "--format", "html",
                          "--file", str(page))
    assert written.code == 0, written.err
    source = page.read_text()
    assert "@media print" in source and "<script" not in source and "<link" not in source

    dom = rendered_dom(page, tmp_path / "chromium")
    rows, whole, elements = parse(dom)
    assert f"Change record: run {run_id}" in whole
    approvals = {r[0]: r for r in rows if len(r) == 7 and r[2] in ("alice", "bob")}
    assert set(approvals) == {f"step checklist / {item}" for item in items}
    for item in items:  # who, the ticket, the note as written (text, not markup)
        _, text, by, role, ticket, at, note = approvals[f"step checklist / {item}"]
        assert (by, ticket) == (("alice", "CHG-200") if item in items[:2] else
                                ("bob", "CHG-201"))
        assert text and "cab" in role and at.startswith("20") and note == "<b>seen</b>"
    assert "b" not in elements
    evidence = {r[0].split(" ")[0]: r for r in rows if len(r) == 3 and r[1] in ("✓", "✗")}
    assert set(evidence) == set(items)
    assert all(r[1] == "✓" and "attested by" in r[2] for r in evidence.values())
    steps = {r[0]: r for r in rows if len(r) == 7 and r[1] in ("ok", "skipped", "failed")}
    assert {"read-source", "checklist", "release-deploy", "record"} <= set(steps)
    assert all(r[1] == "ok" and r[5].endswith(" s") for r in steps.values())
    image = deployment("staging")["image"]  # what the promotion put there
    tag = image.rsplit(":", 1)[1]
    # The overlay diff, as the deploy step reported it.
    assert "kustomization.yaml" in dom and re.search(r"^-\s+newTag: \S+$", dom, re.M)
    assert re.search(rf"^\+\s+newTag: {re.escape(tag)}(</pre>)?$", dom, re.M)
    journal = [r for r in rows if len(r) == 4 and r[0].isdigit()]
    assert any(r[2].startswith("approval") for r in journal)
    assert any(r[2].startswith("run-status") and "done" in r[2] for r in journal)

    pdf = tmp_path / "record.pdf"
    print_to_pdf(page, tmp_path / "chromium", pdf)
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_an_unknown_run_is_refused(runbook_cli):  # type: ignore[no-untyped-def]
    missing = runbook_cli("audit", "export", "--run", "no-such-run", "--format", "html")
    assert missing.code == 2 and "no-such-run" in missing.err
