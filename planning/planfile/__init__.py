"""The plan file (DOMAIN §6): a whole plan as one JSON document, without ids.

`export_plan` writes it; `import_plan` creates the plan with its slug, or updates it, so that the
database then says exactly what the file says. Every error of a file is reported at once, each
naming where it is, and a file with any error writes nothing.

`loading` turns a file into JSON within the file-level limits; `reading` knows the file's objects
and says a form's errors at their place in the file; `importing` puts each object through the
form the web app uses for it and writes it; `exporting` writes a plan back out; `uploads` starts
a plan from a file uploaded on the web.
"""

from __future__ import annotations

from .exporting import export_plan
from .importing import import_plan
from .loading import PlanFileError, load_plan_file
from .uploads import start_plan_from_file

__all__ = ["PlanFileError", "export_plan", "import_plan", "load_plan_file", "start_plan_from_file"]
