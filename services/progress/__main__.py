"""``python -m services.progress`` (or ``hoist-progress``): serve, migrate or downgrade."""

import sys

from services.progress import SPEC
from shared.service.main import main as run


def main() -> None:
    sys.exit(run(SPEC))


if __name__ == "__main__":
    main()
