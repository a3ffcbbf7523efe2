"""`console`: the operator's console in a browser (bringup console:=true; lab.console)."""

from __future__ import annotations


def main(args: list[str] | None = None) -> None:
    from lab.console.server import main as serve

    serve(args)


if __name__ == "__main__":
    main()
