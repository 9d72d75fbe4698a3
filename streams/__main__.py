"""`python -m streams worker` (and every other faust command) on the pipeline's app."""

from __future__ import annotations


def main() -> None:
    from streams.app import app

    app.main()


if __name__ == "__main__":
    main()
