"""The whole-patient ICANS validation (docs/model.md 10.5, 10.6): ``python -m validation icans [options]``.

Kept as an entry point with the options of the check and ``--out`` for its
JSON-lines file; the check lives in :mod:`validation.icans`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation.icans import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
