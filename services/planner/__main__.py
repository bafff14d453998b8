"""``python -m services.planner`` (or ``hoist-planner``): serve, migrate or downgrade."""

import sys

from services.planner import SPEC
from shared.service.main import main as run


def main() -> None:
    sys.exit(run(SPEC))


if __name__ == "__main__":
    main()
