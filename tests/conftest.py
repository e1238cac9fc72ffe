"""Set-up shared by the whole test session.

The tests start some 2,000 Python processes (xdist's workers, mlserve, the stand-in `pulumi`).
Where PYTHONDONTWRITEBYTECODE is set, as on the project's machines, none of them may keep the
bytecode it compiles, so each compiled mlserve, the stand-in and (in every worker) the test
modules with pytest's assertion rewriting again: 40-70 ms of CPU a process, 1.5 s a worker.
The tests keep their bytecode whatever that variable says; it goes where Python puts it by
default (`__pycache__`, which git ignores). Read here, before xdist starts its workers.
"""

from __future__ import annotations

import os
import sys

os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False
