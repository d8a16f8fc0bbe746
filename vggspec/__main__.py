"""``python -m vggspec`` and the ``vggspec`` program: the command line, with Ctrl-C during its imports (the
first second) as quiet as later: exit status 130, no traceback."""

import sys


def main() -> None:
    try:
        from .cli import run
    except KeyboardInterrupt:
        sys.exit(130)
    run()


if __name__ == "__main__":
    main()
