"""The eight mechanism checks of docs/model.md section 10: ``python -m validation mechanisms [options]``.

Kept as an entry point; the checks live in the package ``validation`` (see
``python -m validation --help`` and docs/validation.md).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["mechanisms", *sys.argv[1:]]))
