"""``python -m services.inventory`` (or ``hoist-inventory``): serve, migrate or downgrade."""

import sys

from services.inventory import SPEC
from shared.service.main import main as run


def main() -> None:
    sys.exit(run(SPEC))


if __name__ == "__main__":
    main()
