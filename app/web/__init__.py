"""The web process: the FastAPI app, its pages and websockets (app.web.app).

`pydantic.v1`, Pydantic's copy of its old major version, is kept out of this process.
FastAPI imports it (1.4 MiB of RSS, 23 modules) for one thing only: to check every
route parameter and response type against `pydantic.v1.BaseModel`, and to refuse such
a model. With the import blocked that check answers "no" (FastAPI catches the
ImportError), which is the truth: nothing here uses the old API, and no v1 model can
exist in a process that cannot import it. A process that had already imported it
keeps it (`setdefault`). tests/test_web_start_imports.py holds this.
"""

import sys

sys.modules.setdefault("pydantic.v1", None)  # type: ignore[arg-type]
