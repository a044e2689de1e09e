"""The plan file (DOMAIN §6): a whole plan as one JSON document, without ids.

`export_plan` writes it; `import_plan` creates the plan with its slug, or updates it, so that the
database then says exactly what the file says. A file is read completely before anything is
written: every error is reported at once, each naming where it is, and a file with any error
writes nothing.

`reading` checks a file and turns it into a PlanSpec, `importing` writes a PlanSpec, `exporting`
writes a plan back out.
"""

from __future__ import annotations

from .exporting import export_plan
from .importing import import_plan
from .reading import PlanFileError, load_plan_file

__all__ = ["PlanFileError", "export_plan", "import_plan", "load_plan_file"]
