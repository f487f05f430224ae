"""Loading what a run is made of: a runbook (its schema, templates and references checked),
its inventory (its windows, monitoring, keys and checklist policy checked), the redactor of
the run's secrets, and the preflight of its steps."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidInput
from engine.language import loader, schema, services
from engine.language import params as params_mod
from engine.language.model import Inventory, Runbook, build_runbook
from engine.language.render import check_templates
from engine.run import references
from engine.run.plan import Plan
from engine.steps import monitoring as analysis
from engine.trust import gates
from engine.trust.secrets import Redactor, environment_secrets

if TYPE_CHECKING:  # the commands that use them import them: a run needs none
    pass



def load_runbook(name_or_path: str) -> Runbook:
    doc = loader.load(loader.resolve(name_or_path, "runbooks"), "Runbook")
    schema.validate(doc, "runbook")
    runbook = build_runbook(doc, _load_fragment)
    check_templates(runbook)
    references.check(runbook)
    return runbook


def _load_fragment(path: Path) -> loader.Document:
    doc = loader.load(path, "Fragment")
    schema.validate(doc, "fragment")
    return doc


def load_inventory(name: str | None, runbook: Runbook | None = None) -> Inventory:
    """The inventory named, else ``$RUNBOOK_INVENTORY``, else the runbook's own."""
    name = name or os.environ.get("RUNBOOK_INVENTORY") or (runbook.inventory if runbook else None)
    return inventory_at(name)


def inventory_at(name: str | None) -> Inventory:
    if not name:
        return Inventory(name="", path=None, sha256=hashlib.sha256(b"").hexdigest())
    doc = loader.load(loader.resolve(name, "inventories"), "Inventory")
    schema.validate(doc, "inventory")
    for env, windows in (doc.data.get("maintenance_windows") or {}).items():
        for i, window in enumerate(windows):
            problem = gates.window_problem(window)
            if problem:
                at = ("maintenance_windows", env, i, problem[0])
                raise InvalidInput(problem[1], file=str(doc.path), line=doc.line_of(at),
                                   path=f"$.maintenance_windows.{env}[{i}].{problem[0]}")
    services.check(doc.data, str(doc.path), doc.line_of)
    for where, message in analysis.problems(doc.data):
        raise InvalidInput(message, file=str(doc.path), line=doc.line_of(where),
                           path="$." + ".".join(str(k) for k in where))
    from engine.trust import keys, signatures

    people_keys = keys.load(doc)
    signatures.apply_checklist_policy(doc.data)
    return Inventory(name=doc.path.stem, path=doc.path,
                     sha256=keys.inventory_sha(doc.sha256, people_keys), data=doc.data,
                     lines=doc.lines, keys=people_keys.keys)


def check_steps(the_plan: Plan) -> None:
    """A step that cannot even start (a command's program or folder that does not exist) is
    refused with the run, before it is recorded or takes a lock."""
    from engine.steps import STEP_TYPES

    for planned in the_plan.steps:
        kind = STEP_TYPES[planned.step.type]
        preflight = kind.preflight
        if planned.rendered is None or planned.when is False:
            continue
        if kind.check is not None:
            kind.check(planned.rendered, the_plan.inventory)
        if preflight is None:
            continue
        problem = preflight(planned.rendered)
        if problem:
            step = planned.step
            raise InvalidInput(the_plan.redactor.text(f"step {step.id} cannot run: {problem}"),
                               file=step.file or str(the_plan.runbook.path),
                               line=step.line_of(f"$.steps[{step.id}].{step.type}"))


def prepare(runbook: str | Runbook, params: Mapping[str, Any], inventory: str | None
             ) -> tuple[Runbook, Inventory, dict[str, Any], Redactor]:
    book = runbook if isinstance(runbook, Runbook) else load_runbook(runbook)
    inv = load_inventory(inventory, book)
    values = params_mod.coerce(book, params)
    return book, inv, values, redactor_for(book, values, inv)


def redactor_for(book: Runbook, values: Mapping[str, Any],
                 inventory: Inventory | None = None) -> Redactor:
    """Masks the run's secrets: secret params, and secret values of the environment."""
    secret_names = [p.name for p in book.params if p.secret]
    named = password_envs(inventory.data) if inventory else []
    redactor = Redactor((str(values[n]) for n in secret_names if n in values), secret_names)
    for value in environment_secrets(os.environ, named):
        redactor.add_value(value)
    from engine.steps import STEP_TYPES

    for kind in STEP_TYPES.values():
        for value in kind.secrets(inventory.data) if kind.secrets and inventory else ():
            redactor.add_value(value)
    return redactor


def password_envs(data: Any) -> list[str]:
    """Every ``password_env`` the inventory names, wherever it sits."""
    if isinstance(data, Mapping):
        found = [str(v) for k, v in data.items() if k == "password_env" and isinstance(v, str)]
        return found + [n for v in data.values() for n in password_envs(v)]
    if isinstance(data, list):
        return [n for v in data for n in password_envs(v)]
    return []


def kubeconfig_of(inv: Inventory) -> str:
    return inv.kubeconfig
